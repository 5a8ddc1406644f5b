"""Short rows (up to 64 elements and 256 bytes) go many at a time through the row kernels
that take them so: their statistics (or backward sums) in one call, then
their outputs in one. Every way gives the bits of the rows taken one at a
time: every length up to the limit and just past it, batches ending on and
off their size, rows apart in memory and in reverse order, one and two
threads, with and without parameters, with a residual's gradient, rows on
the exact-range path, constant rows and rows with NaN or infinities between
others, on every target. The rule applies where it should."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core
from params import BF16
from test_streaming import _bits, _param_dtype as _pdt

DTYPES = [np.float32, np.float64, np.float16, BF16]
ROWS = [1, 15, 16, 17, 40]


def _lengths(dt):
    """Row lengths around the limit: 1 to 9, vector and pair boundaries, the
    last short length and the first beyond it."""
    last = min(64, 256 // np.dtype(dt).itemsize)
    return sorted({1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, last - 1, last, last + 1})


@pytest.fixture
def both_ways():
    """Runs a call with short rows many at a time, then one at a time."""
    before = _core._short_rows()

    def run(call):
        out = []
        try:
            for on in (True, False):
                _core._short_rows(on)
                out.append(_bits(call()))
        finally:
            _core._short_rows(before)
        return out

    yield run
    _core._short_rows(before)


def _rows(rows, n, dt, seed, layout):
    """rows x n data with a few rows unlike the others: a large mean, one on
    the exact-range path, a constant one, and (odd seeds) a NaN and an
    infinity."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, n)) * 2 + rng.standard_normal((rows, 1)) * 5
    if rows > 3:
        a[1] += 1e6
        a[2] = 3.5
    if rows > 5 and np.dtype(dt) in (np.float32, np.float64):
        a[4] *= 1e30 if np.dtype(dt) == np.float32 else 1e300
    if rows > 8 and seed % 2:
        a[6, n // 2] = np.nan
        a[8, 0] = np.inf
    with np.errstate(over="ignore"):
        a = a.astype(dt)
    if layout == "apart":
        wide = np.zeros((rows, n + 5), dt)
        wide[:, 2:n + 2] = a
        return wide[:, 2:n + 2]
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1])[::-1]
    return a


LAYOUTS = ["c", "apart", "reversed"]


def _shapes(dt):
    """(rows, n, layout) of every case"""
    for rows in ROWS:
        for n in _lengths(dt):
            for layout in LAYOUTS:
                yield rows, n, layout


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_forward_same_bits(isa, both_ways, dt):
    pd = _pdt(dt)
    for rows, n, layout in _shapes(dt):
        x = _rows(rows, n, dt, rows + n, layout)
        w = np.linspace(-1.5, 2, n).astype(pd)
        b = np.linspace(0.5, -1, n).astype(pd)
        for threads in (1, 2):
            for params in ((w, b), (w, None), (None, b), (None, None)):
                def ln():
                    return fn.layer_norm(x, *params, return_stats=True,
                                         num_threads=threads)
                first, second = both_ways(ln)
                assert first == second, ("layer_norm", rows, n, layout, threads)
            first, second = both_ways(lambda: fn.rms_norm(
                x, w, return_stats=True, num_threads=threads))
            assert first == second, ("rms_norm", rows, n, layout, threads)


def test_forward_nan_parameters(isa, both_ways):
    """A NaN weight and bias of either sign at the same element, or an
    infinite weight and a NaN bias (a constant row's deviation times the
    weight is NaN too): NaN there either way (which of two NaN operands an
    addition returns is the compiled code's choice), the same bits everywhere
    else."""
    for dt in (np.float32, np.float64):
        x = _rows(40, 24, dt, 2, "c")  # row 2 constant
        w = np.ones(24, dt)
        b = np.zeros(24, dt)
        w[3] = np.nan
        b[3] = -np.nan
        w[5] = -np.nan
        b[5] = np.nan
        w[7] = np.inf
        b[7] = np.nan
        ys = []
        for on in (True, False):
            _core._short_rows(on)
            ys.append(fn.layer_norm(x, w, b))
        assert np.isnan(ys[0][:, [3, 5, 7]]).all() and np.isnan(ys[1][:, [3, 5, 7]]).all()
        keep = np.ones(24, bool)
        keep[[3, 5, 7]] = False
        assert ys[0][:, keep].tobytes() == ys[1][:, keep].tobytes()


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
def test_backward_same_bits(isa, both_ways, dt):
    pd = _pdt(dt)
    for rows, n, layout in _shapes(dt):
        seed = rows * 7 + n
        x = _rows(rows, n, dt, seed, layout)
        dy = _rows(rows, n, dt, seed + 1, layout)
        ds = _rows(rows, n, dt, seed + 2, "c")
        w = np.linspace(-1.5, 2, n).astype(pd)
        _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
        _, rrstd = fn.rms_norm(x, w, return_stats=True)
        for threads in (1, 2):
            calls = {
                "layer_norm_backward": lambda: fn.layer_norm_backward(
                    dy, x, mean, rstd, w, num_threads=threads),
                "no weight": lambda: fn.layer_norm_backward(
                    dy, x, mean, rstd, num_threads=threads),
                "rms_norm_backward": lambda: fn.rms_norm_backward(
                    dy, x, rrstd, w, num_threads=threads),
                "add_layer_norm_backward": lambda: fn.add_layer_norm_backward(
                    dy, x, mean, rstd, w, ds=ds, num_threads=threads),
                "add_rms_norm_backward": lambda: fn.add_rms_norm_backward(
                    dy, x, rrstd, w, ds=ds, num_threads=threads),
            }
            for name, call in calls.items():
                first, second = both_ways(call)
                assert first == second, (name, rows, n, layout, threads)


def test_the_rule_applies(isa):
    """The rows counted as taken many at a time: every short row on one
    thread, but a row on the exact-range path; none beyond the limit, with
    the setting off, or where the output is streamed."""
    before = (_core._short_rows(), _core._stream_bytes(), _core._stream_row_bytes())
    try:
        _core._short_rows_taken()
        for dt, n in ((np.float32, 64), (np.float64, 32), (np.float16, 64), (BF16, 64)):
            a = np.random.default_rng(2).standard_normal((40, n))
            wide = np.dtype(dt).itemsize > 2
            if wide:
                a[4] *= 1e30 if np.dtype(dt) == np.float32 else 1e300  # the exact-range path
            with np.errstate(over="ignore"):
                x = a.astype(dt)
            w = np.ones(n, _pdt(dt))
            normal = 39 if wide else 40
            _, mean, rstd = fn.layer_norm(x, w, return_stats=True, num_threads=1)
            assert _core._short_rows_taken() == normal
            fn.rms_norm(x, w, num_threads=1)
            assert _core._short_rows_taken() == normal
            fn.layer_norm_backward(x, x, mean, rstd, w, num_threads=1)
            assert _core._short_rows_taken() == 40
            fn.layer_norm(np.ones((40, n + 1), dt), num_threads=1)
            assert _core._short_rows_taken() == 0
            _core._short_rows(False)
            fn.layer_norm(x, w, num_threads=1)
            fn.layer_norm_backward(x, x, mean, rstd, w, num_threads=1)
            assert _core._short_rows_taken() == 0
            _core._short_rows(True)
            _core._stream_bytes(0)
            _core._stream_row_bytes(0)
            if _core._streams(x.nbytes, False, x.shape[1] * x.itemsize):
                # (not on the scalar target, which has no streaming stores)
                fn.layer_norm(x, w, out=np.empty_like(x), num_threads=1)
                fn.layer_norm_backward(x, x, mean, rstd, w, out=np.empty_like(x),
                                       num_threads=1)
                assert _core._short_rows_taken() == 0
            _core._stream_bytes(before[1])
            _core._stream_row_bytes(before[2])
    finally:
        _core._short_rows(before[0])
        _core._stream_bytes(before[1])
        _core._stream_row_bytes(before[2])


def test_short_rows_setting_checks_its_argument():
    with pytest.raises(ValueError, match="on"):
        _core._short_rows(2)
