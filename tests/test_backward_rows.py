"""The row backward taking several rows' dx together (backward_apply_rows):
the same bits as one row at a time on every kernel target and dtype, with
and without parameters, with the fused add's ds, into out= (streamed or
not, off the cache line, dx over dy), and accurate against the float64
reference. The kernels' rule takes it for long float32 rows only; the tests
force it on and off everywhere."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core, reference
from conftest import assert_close
from params import BF16

DTYPES = [np.float32, np.float64, np.float16, BF16]
# rows that leave a remainder after groups of four and span several gradient
# blocks; rows shorter than a vector, with a tail, a multiple of the lines
SHAPES = [(13, 4099), (70, 2049), (9, 257), (6, 5), (8, 4096)]


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


@pytest.fixture(params=[False, True], ids=["stores", "streamed"])
def streamed(request):
    if not request.param:
        yield False
        return
    saved = _core._stream_bytes(0), _core._stream_fresh(True), _core._stream_row_bytes(0)
    try:
        yield True
    finally:
        _core._stream_bytes(saved[0])
        _core._stream_fresh(saved[1])
        _core._stream_row_bytes(saved[2])


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


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_rows_together_give_the_bits_of_one_at_a_time(isa, streamed, together, dt, shape):
    rng, x, dy, w = _case(shape, dt)
    _, mean, rstd = fn.layer_norm(x, w, w, return_stats=True)
    _, rms_rstd = fn.rms_norm(x, w, return_stats=True)
    residual = rng.standard_normal(shape).astype(dt)
    _, s, smean, srstd = fn.add_layer_norm(x, residual, w, w, return_stats=True)
    ds = rng.standard_normal(shape).astype(dt)
    calls = [
        lambda: fn.layer_norm_backward(dy, x, mean, rstd, w),
        lambda: fn.layer_norm_backward(dy, x, mean, rstd),
        lambda: fn.rms_norm_backward(dy, x, rms_rstd, w),
        lambda: fn.add_layer_norm_backward(dy, s, smean, srstd, w, ds=ds),
    ]
    for call in calls:
        on, off = together(call)
        assert len(on) == len(off)
        for a, b in zip(on, off):
            _same(a, b)


@pytest.mark.parametrize("dt", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
def test_rows_together_into_out(isa, streamed, together, dt):
    _, x, dy, w = _case((11, 4100), dt, seed=1)
    _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
    # rows off the cache line and apart in memory
    outs = [np.zeros((11, 4100 + 24), dt)[:, 3:4103] for _ in range(2)]
    on, off = together(lambda: fn.layer_norm_backward(
        dy, x, mean, rstd, w, out=outs[0] if _core._backward_rows() == 1 else outs[1]))
    assert on[0] is outs[0] and off[0] is outs[1]
    for a, b in zip(on, off):
        _same(a, b)
    # dx over dy: each row's dy read before its dx is written
    dys = [dy.copy(), dy.copy()]
    on, off = together(lambda: fn.layer_norm_backward(
        dys[0] if _core._backward_rows() == 1 else dys[1], x, mean, rstd, w,
        out=dys[0] if _core._backward_rows() == 1 else dys[1]))
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
