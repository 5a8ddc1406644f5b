"""Streamed rows (large calls) whose whole cache lines go straight from the
registers with streaming stores, their partial first and last lines through
the per-thread writer, and which take the next row's statistics (forward) or
sums (backward) in the loops of their output (normalize_stream,
backward_apply_stream). Every way gives the bits of the ordinary stores and
of the statistics taken on their own: every offset of the output within a
line, rows shorter and longer than a statistics chunk (1024 elements) with
every kind of tail, rows apart in memory, one and two threads, with and
without parameters, rows that take the exact-range path or the two-pass
statistics in between, on every target; and nothing outside the output is
written. The outputs a call allocates itself stream here too
(_stream_fresh)."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core
from params import BF16
from test_streaming import _bits, _data, _param_dtype as _pdt

DTYPES = [np.float32, np.float64, np.float16, BF16]
# a row of a few elements; rows around one statistics chunk (1023, 1024,
# 1025) and two (2080, 2071), beyond the avx512 target's limits (4100); a
# few rows (blocks of the backward's partials end on every few rows) and
# many
SHAPES = [(37, 5), (9, 1023), (8, 1024), (7, 1025), (5, 2080), (3, 2071), (3, 4100),
          (70, 300)]


@pytest.fixture
def ways():
    """Runs a call streamed with the next row's statistics (or sums) in a row's
    loops, streamed without, and with ordinary stores; the settings are
    restored after."""
    before = (_core._stream_bytes(), _core._stream_row_bytes(0), _core._next_row_sums(),
              _core._stream_fresh(True))

    def run(call):
        out = []
        try:
            for stream, fused in ((0, True), (0, False), (-1, True)):
                _core._stream_bytes(stream)
                _core._next_row_sums(fused)
                out.append(call())
        finally:
            _core._stream_bytes(before[0])
            _core._next_row_sums(before[2])
        return out

    yield run
    _core._stream_bytes(before[0])
    _core._stream_row_bytes(before[1])
    _core._next_row_sums(before[2])
    _core._stream_fresh(before[3])


def _same(results, what):
    first = _bits(results[0])
    for k, r in enumerate(results[1:], 1):
        assert _bits(r) == first, (what, k)


def _every_offset(ways, calls, shape, dt):
    """Each call(out, threads) into an out at several offsets within a line, on
    one and two threads: the same bits every way, nothing written outside."""
    per_line = 64 // np.dtype(dt).itemsize
    size = shape[0] * shape[1]
    for name, call in calls.items():
        for offset in sorted({0, 1, per_line // 2 + 1, per_line - 1}):
            for threads in (1, 2):
                buf = np.full(size + offset + per_line, 7, dt)
                out = buf[offset:offset + size].reshape(shape)

                def run():
                    got = call(out, threads)
                    assert (buf[:offset] == 7).all() and (buf[offset + size:] == 7).all()
                    rest = got[1:] if isinstance(got, tuple) else ()
                    return (out.copy(),) + tuple(np.copy(g) for g in rest)
                _same(ways(run), (name, offset, threads))


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_streamed_backward_same_bits_every_way(isa, ways, dt, shape):
    x = _data(shape, dt, 1, offset=3.0)
    dy = _data(shape, dt, 2)
    ds = _data(shape, dt, 3)
    w = _data(shape[-1:], _pdt(dt), 4)
    _, m, rs = fn.layer_norm(x, w, w, return_stats=True)
    _, rr = fn.rms_norm(x, w, return_stats=True)
    calls = {
        "layer_norm_backward": lambda out, t: fn.layer_norm_backward(
            dy, x, m, rs, w, out=out, num_threads=t),
        "layer_norm_backward no params": lambda out, t: fn.layer_norm_backward(
            dy, x, m, rs, out=out, num_threads=t),
        "rms_norm_backward": lambda out, t: fn.rms_norm_backward(
            dy, x, rr, w, out=out, num_threads=t),
        "rms_norm_backward no weight": lambda out, t: fn.rms_norm_backward(
            dy, x, rr, out=out, num_threads=t),
    }
    _every_offset(ways, calls, shape, dt)
    # the fused add's ds, into a dsum the call allocates (fresh memory streams too)
    for threads in (1, 2):
        _same(ways(lambda: fn.add_layer_norm_backward(dy, x, m, rs, w, ds=ds,
                                                      num_threads=threads)),
              ("add_layer_norm_backward", threads))
        _same(ways(lambda: fn.add_rms_norm_backward(dy, x, rr, w, ds=ds,
                                                    num_threads=threads)),
              ("add_rms_norm_backward", threads))


@pytest.mark.parametrize("shape", [(6, 1024), (5, 2071)], ids=lambda s: "x".join(map(str, s)))
def test_streamed_bfloat16_backward_read_as_stored(isa, ways, shape):
    """bfloat16 rows that the target would widen, read as stored instead."""
    before = _core._backward_widen_max(0)
    try:
        x = _data(shape, BF16, 21, offset=1.0)
        dy = _data(shape, BF16, 22)
        w = _data(shape[-1:], np.float32, 23)
        _, m, rs = fn.layer_norm(x, w, w, return_stats=True)
        for threads in (1, 2):
            _same(ways(lambda: fn.layer_norm_backward(dy, x, m, rs, w, num_threads=threads)),
                  threads)
    finally:
        _core._backward_widen_max(before)


@pytest.mark.parametrize("dt", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_streamed_outputs_off_their_element_size(isa, ways, dt):
    """An output whose elements are not at a multiple of their size: no line
    starts at an element, so every row goes through the writer."""
    shape = (5, 2071)
    x = _data(shape, dt, 24, offset=2.0)
    dy = _data(shape, dt, 25)
    w = _data(shape[-1:], dt, 26)
    _, m, rs = fn.layer_norm(x, w, w, return_stats=True)
    buf = np.zeros(x.nbytes + 1, np.uint8)
    out = buf[1:].view(dt).reshape(shape)
    _same(ways(lambda: (fn.layer_norm(x, w, w, out=out), out.copy())[1]), "forward")
    _same(ways(lambda: (fn.layer_norm_backward(dy, x, m, rs, w, out=out), out.copy())[1]),
          "backward")


def test_the_rule_takes_the_next_row_where_it_should():
    """Rows that stream from the registers take the next row's statistics and
    sums in their loops (rows - 1 on one thread: the backward's blocks of
    partials do not stop it); with the setting off, without streaming, or with
    a residual to add, none do."""
    if _core._get_isa() == "scalar":
        pytest.skip("the scalar target streams through the writer only")
    before = (_core._stream_bytes(), _core._stream_row_bytes(0), _core._next_row_sums(True))
    try:
        x = _data((40, 2048), np.float32, 27, offset=1.0)
        dy = _data((40, 2048), np.float32, 28)
        w = _data((2048,), np.float32, 29)
        _, m, rs = fn.layer_norm(x, w, w, return_stats=True)
        out = np.empty_like(x)
        calls = [lambda: fn.layer_norm(x, w, w, out=out, num_threads=1),
                 lambda: fn.rms_norm(x, w, out=out, num_threads=1),
                 lambda: fn.layer_norm_backward(dy, x, m, rs, w, out=out, num_threads=1),
                 lambda: fn.rms_norm_backward(dy, x, rs, w, out=out, num_threads=1)]
        _core._next_row_sums_taken()
        for call in calls:
            _core._stream_bytes(0)
            call()
            assert _core._next_row_sums_taken() == 39
            _core._stream_bytes(-1)
            call()
            assert _core._next_row_sums_taken() == 0
            _core._stream_bytes(0)
            _core._next_row_sums(False)
            call()
            assert _core._next_row_sums_taken() == 0
            _core._next_row_sums(True)
        fn.add_layer_norm(x, dy, w, w, out=out, num_threads=1)
        assert _core._next_row_sums_taken() == 0
    finally:
        _core._stream_bytes(before[0])
        _core._stream_row_bytes(before[1])
        _core._next_row_sums(before[2])


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_streamed_forward_same_bits_every_way(isa, ways, dt, shape):
    x = _data(shape, dt, 11, offset=3.0)
    if shape[0] > 4:
        x[1, :64] += 1000  # its shift far from its mean: the two-pass statistics
        x[2, shape[1] // 2] = np.nan
        if np.dtype(dt).itemsize >= 4:
            x[3] = np.finfo(dt).max / 4  # exact-range path (overflowing sums)
    res = _data(shape, dt, 12)
    pd = _pdt(dt)
    w, b = _data(shape[-1:], pd, 13), _data(shape[-1:], pd, 14)
    calls = {
        "layer_norm": lambda out, t: fn.layer_norm(x, w, b, out=out, num_threads=t,
                                                   return_stats=True),
        "layer_norm weight only": lambda out, t: fn.layer_norm(x, w, out=out, num_threads=t),
        "layer_norm no params": lambda out, t: fn.layer_norm(x, out=out, num_threads=t),
        "rms_norm": lambda out, t: fn.rms_norm(x, w, out=out, num_threads=t,
                                               return_stats=True),
        "add_layer_norm": lambda out, t: fn.add_layer_norm(x, res, w, b, out=out,
                                                           num_threads=t),
    }
    _every_offset(ways, calls, shape, dt)


def test_streamed_ada_layer_norm_same_bits_every_way(isa, ways):
    """Parameters per row (each batch entry its own shift and scale)."""
    x = _data((3, 5, 2071), np.float32, 15, offset=1.0)
    shift, scale = _data((3, 2071), np.float32, 16), _data((3, 2071), np.float32, 17)
    _same(ways(lambda: fn.ada_layer_norm(x, shift, scale, return_stats=True)), "ada")


@pytest.mark.parametrize("dt", [np.float32, BF16], ids=lambda d: np.dtype(d).name)
def test_streamed_rows_apart_in_memory(isa, ways, dt):
    """Output rows not whole lines apart (each row starts at its own offset in
    a line), and inputs that are column slices of larger arrays."""
    big_x = _data((12, 2100), dt, 5, offset=-2.0)
    big_dy = _data((12, 2100), dt, 6)
    x, dy = big_x[:, 3:2074], big_dy[:, 5:2076]
    w = _data((2071,), _pdt(dt), 7)
    _, m, rs = fn.layer_norm(x, w, w, return_stats=True)
    buf = np.full(12 * 2085, 7, dt)
    out = buf.reshape(12, 2085)[:, 2:2073]

    def run():
        grads = fn.layer_norm_backward(dy, x, m, rs, w, out=out, num_threads=2)
        assert (buf.reshape(12, 2085)[:, :2] == 7).all()
        assert (buf.reshape(12, 2085)[:, 2073:] == 7).all()
        return (out.copy(),) + tuple(np.copy(g) for g in grads[1:])
    _same(ways(run), "rows apart")

    def forward():
        got = fn.layer_norm(x, w, w, out=out, num_threads=2, return_stats=True)
        assert (buf.reshape(12, 2085)[:, :2] == 7).all()
        assert (buf.reshape(12, 2085)[:, 2073:] == 7).all()
        return (out.copy(),) + tuple(np.copy(g) for g in got[1:])
    _same(ways(forward), "rows apart, forward")


def test_next_row_sums_checks_its_argument():
    before = _core._next_row_sums()
    try:
        with pytest.raises(ValueError, match="on"):
            _core._next_row_sums(1)
        assert _core._next_row_sums(False) == before
        assert _core._next_row_sums() is False
    finally:
        _core._next_row_sums(before)


def _nan_rows(shape, dt, seed):
    """Rows with a NaN of each sign in x, NaNs of both signs in dy in
    different statistics chunks, an infinity in dy, and finite rows between."""
    x = _data(shape, dt, seed, offset=1.0)
    dy = _data(shape, dt, seed + 1)
    n = shape[1]
    x[0, 0] = -np.nan
    x[1, n // 2] = np.nan
    dy[2, 3] = -np.nan
    dy[2, n - 1] = np.nan
    dy[4, 1] = -np.inf
    x[5, 7], dy[5, 9] = np.nan, -np.nan
    return x, dy


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(8, 1100), (7, 2071), (6, 4100)],
                         ids=lambda s: "x".join(map(str, s)))
def test_backward_nans_one_bit_pattern_every_way(ways, dt, shape):
    """The backward's NaNs are one quiet NaN, whichever loops, stores, rows
    together or apart, offset of dx in a line and SIMD target their elements
    went through (which of two NaN operands an operation returns depends on
    the compiled code)."""
    x, dy = _nan_rows(shape, dt, 31)
    w = _data(shape[-1:], _pdt(dt), 33)
    w[5] = np.nan
    ds = _data(shape, dt, 34)
    per_line = 64 // np.dtype(dt).itemsize
    size = shape[0] * shape[1]
    # the SIMD targets give the same bits; a build without them, its own target
    targets = [t for t in ("avx2", "avx512") if t in _core._available_isas()]
    targets = targets or [_core._get_isa()]
    results = []
    try:
        for target in targets:
            _core._set_isa(target)
            _, m, rs = fn.layer_norm(x, return_stats=True)
            _, rr = fn.rms_norm(x, return_stats=True)
            for mode in (0, 1):
                before = _core._backward_rows(mode)
                try:
                    for offset in (0, per_line // 2 + 1):
                        buf = np.zeros(size + offset, dt)
                        out = buf[offset:].reshape(shape)

                        def run():
                            got = [fn.layer_norm_backward(dy, x, m, rs, w, out=out),
                                   fn.rms_norm_backward(dy, x, rr, w, out=out),
                                   fn.add_layer_norm_backward(dy, x, m, rs, w, ds=ds)]
                            return tuple(np.copy(a) for g in got for a in g)
                        results.extend(ways(run))
                finally:
                    _core._backward_rows(before)
    finally:
        _core._set_isa("auto")
    _same(results, "NaNs")
    dx = results[0][0]
    assert np.isnan(dx.astype(np.float32)).any()
