"""The row backward taking several rows' dx together (backward_apply_rows):
the same bits as one row at a time on every kernel target and dtype read as
stored, with and without parameters, with the fused add's ds, into out=
(rows off the cache line, apart in memory), and accurate against the float64
reference. The kernels' rule takes it for long float32 and bfloat16 rows in the cache
written with ordinary stores; the tests force it on and off everywhere else
too (streamed dx and bfloat16 rows read through widened copies always go
one at a time). bfloat16 rows give the same bits widened or not."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core, reference
from conftest import assert_close
from params import BF16

DTYPES = [np.float32, np.float64, np.float16, BF16]
# rows that leave a remainder after groups of four, blocks with one group and
# rows one or two at a time beside it, several groups per block; rows shorter
# than a vector, with tails of every kind (float16's 16-lane avx512 pairs
# leave 8 elements or more at 269, 72 and 13), a multiple of the lines; rows
# of up to 64 elements go many at a time whatever the mode (test_short_rows.py),
# 72 just beyond
SHAPES = [(13, 4099), (70, 2049), (9, 257), (9, 269), (9, 13), (6, 5), (8, 4096),
          (170, 257), (200, 4099), (300, 64), (40, 72)]


@pytest.fixture
def together():
    """Runs f with the rows together (mode 1) and one at a time (mode 0)."""
    def both(f):
        before = _core._backward_rows(1)
        try:
            on = f()
            _core._backward_rows(0)
            off = f()
        finally:
            _core._backward_rows(before)
        return on, off
    return both


def _same(a, b):
    if a is None or b is None:
        assert a is None and b is None
        return
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def _case(shape, dt, seed=0):
    rng = np.random.default_rng(seed)
    pdt = np.float32 if np.dtype(dt).itemsize == 2 else dt
    x = (rng.standard_normal(shape) * 2 + 3).astype(dt)
    dy = rng.standard_normal(shape).astype(dt)
    w = (rng.standard_normal(shape[-1]) + 1).astype(pdt)
    return rng, x, dy, w


def _calls(shape, dt, seed=0):
    rng, x, dy, w = _case(shape, dt, seed)
    _, mean, rstd = fn.layer_norm(x, w, w, return_stats=True)
    _, rms_rstd = fn.rms_norm(x, w, return_stats=True)
    residual = rng.standard_normal(shape).astype(dt)
    _, s, smean, srstd = fn.add_layer_norm(x, residual, w, w, return_stats=True)
    _, s2, srstd2 = fn.add_rms_norm(x, residual, w, return_stats=True)
    ds = rng.standard_normal(shape).astype(dt)
    return [
        lambda: fn.layer_norm_backward(dy, x, mean, rstd, w),
        lambda: fn.layer_norm_backward(dy, x, mean, rstd),
        lambda: fn.rms_norm_backward(dy, x, rms_rstd, w),
        lambda: fn.rms_norm_backward(dy, x, rms_rstd),
        lambda: fn.add_layer_norm_backward(dy, s, smean, srstd, w, ds=ds),
        lambda: fn.add_rms_norm_backward(dy, s2, srstd2, w, ds=ds),
    ]


def _check(together, calls):
    for call in calls:
        on, off = together(call)
        assert len(on) == len(off)
        for a, b in zip(on, off):
            _same(a, b)


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_rows_together_give_the_bits_of_one_at_a_time(isa, together, dt, shape):
    _check(together, _calls(shape, dt))


def test_bfloat16_rows_read_as_stored(isa, together):
    """bfloat16 rows longer than any widened copies (64 Ki elements) are
    read as stored, and so can go together too."""
    _check(together, _calls((5, 65541), BF16)[:1])


@pytest.mark.parametrize("shape", [(9, 13), (9, 72), (70, 257), (13, 771), (6, 2049),
                                   (9, 4099), (3, 5000)],
                         ids=lambda s: "x".join(map(str, s)))
def test_bfloat16_widened_or_not(isa, shape):
    """The bfloat16 backward reads dy and x through float32 copies for rows
    up to the target's length and converts them at each pass beyond: the
    same bits either way, copies on the stack (up to 4096 elements) or not."""
    before = _core._backward_widen_max()
    assert before == -1
    for call in _calls(shape, BF16):
        outs = []
        try:
            for widen in (0, 1 << 20):
                _core._backward_widen_max(widen)
                outs.append(call())
        finally:
            _core._backward_widen_max(before)
        for a, b in zip(*outs):
            _same(a, b)


def test_backward_widen_max_checks_its_argument():
    before = _core._backward_widen_max()
    for bad in (-2, 1.5, True, "1", 2**62, 2**70):
        with pytest.raises(ValueError, match="n must be"):
            _core._backward_widen_max(bad)
    assert _core._backward_widen_max() == before


@pytest.mark.parametrize("dt", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("offset", [0, 1, 5, 12], ids=lambda o: f"at{o}")
def test_rows_together_into_out(isa, together, dt, offset):
    """dx rows a whole number of lines apart that all start `offset` elements
    into a line: the head before the first line boundary goes in a call of its
    own; nothing is written around out."""
    rows, n = 11, 4096
    _, x, dy, w = _case((rows, n), dt, seed=1)
    _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
    per_line = 64 // np.dtype(dt).itemsize
    pitch = n + 2 * per_line
    def at():
        raw = np.full(rows * pitch + 3 * per_line, 7, dt)
        start = (-raw.ctypes.data % 64) // np.dtype(dt).itemsize + offset
        return raw, start, raw[start:start + rows * pitch].reshape(rows, pitch)[:, :n]

    bufs = {1: at(), 0: at()}
    on, off = together(lambda: fn.layer_norm_backward(
        dy, x, mean, rstd, w, out=bufs[_core._backward_rows()][2]))
    assert on[0] is bufs[1][2] and off[0] is bufs[0][2]
    for a, b in zip(on, off):
        _same(a, b)
    for raw, start, _ in bufs.values():  # nothing written around and between the rows
        rest = raw.copy()
        rest[start:start + rows * pitch].reshape(rows, pitch)[:, :n] = 7
        assert (rest == 7).all()
    # out=dy: the call reads dy as it was (through a temporary)
    dys = {1: dy.copy(), 0: dy.copy()}
    on, off = together(lambda: fn.layer_norm_backward(
        dys[_core._backward_rows()], x, mean, rstd, w, out=dys[_core._backward_rows()]))
    for a, b in zip(on, off):
        _same(a, b)
    _same(on[0], fn.layer_norm_backward(dy, x, mean, rstd, w)[0])


def test_rows_together_against_the_reference(together):
    """A large row mean (NORMS.md's backward bar) and the float64 reference."""
    _, x, dy, w = _case((9, 4096), np.float32, seed=2)
    x = (x + np.float32(1e6)).astype(np.float32)
    _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
    want = reference.layer_norm_backward(dy.astype(np.float64), x.astype(np.float64),
                                         mean.astype(np.float64), rstd.astype(np.float64),
                                         w.astype(np.float64))
    on, _ = together(lambda: fn.layer_norm_backward(dy, x, mean, rstd, w))
    for got, ref, what in zip(on, want, ("dx", "dweight", "dbias")):
        assert_close(got, ref, np.float32, what=what)


def test_the_default_rule_gives_the_same_bits():
    """Under the default rule a long float32 row backward has the bits of
    both ways (which it takes is the kernels' choice, not visible here), and
    the mode setter refuses anything but -1, 0 and 1."""
    _, x, dy, w = _case((8, 4096), np.float32, seed=3)
    _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
    assert _core._backward_rows() == -1
    assert 3 * x.nbytes < _core._cache_bytes()
    default = fn.layer_norm_backward(dy, x, mean, rstd, w)
    before = _core._backward_rows(0)
    try:
        one = fn.layer_norm_backward(dy, x, mean, rstd, w)
    finally:
        _core._backward_rows(before)
    for a, b in zip(default, one):
        _same(a, b)
    with pytest.raises(ValueError, match="mode"):
        _core._backward_rows(2)
    assert _core._backward_rows() == -1
