"""layer_norm_backward and rms_norm_backward writing dx into a given out=:
the same bits as a new array, in any layout, with out sharing memory with
dy or x, and with streaming stores; a bad out is refused before anything is
written."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core
from params import BF16

DTYPES = [np.float32, np.float64, np.float16, BF16]


def _case(norm, shape, dt, axis, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) + 2.0).astype(dt)
    dy = rng.standard_normal(shape).astype(dt)
    pshape = tuple(np.array(shape)[list(np.atleast_1d(axis))])
    w = (rng.standard_normal(pshape) + 1.0).astype(np.float32 if np.dtype(dt).itemsize == 2 else dt)
    if norm == "layer_norm":
        _, mean, rstd = fn.layer_norm(x, w, axis=axis, return_stats=True)

        def backward(dy_, x_, **kw):
            return fn.layer_norm_backward(dy_, x_, mean, rstd, w, axis=axis, **kw)
    else:
        _, rstd = fn.rms_norm(x, w, axis=axis, return_stats=True)

        def backward(dy_, x_, **kw):
            return fn.rms_norm_backward(dy_, x_, rstd, w, axis=axis, **kw)
    return x, dy, backward


def _same(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("axis", [-1, 1], ids=["last", "middle"])
def test_out_gives_the_bits_of_a_new_array(isa, norm, dt, axis):
    x, dy, backward = _case(norm, (6, 33, 40), dt, axis)
    want = backward(dy, x)
    out = np.full_like(x, 7)
    got = backward(dy, x, out=out)
    assert got[0] is out
    _same(out, want[0])
    for g, w in zip(got[1:], want[1:]):
        _same(g, w)


@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
def test_out_strided_and_sharing_memory_with_the_inputs(norm):
    x, dy, backward = _case(norm, (64, 48), np.float32, -1, seed=1)
    want = backward(dy, x)[0]
    big = np.zeros((64, 96), np.float32)
    got = backward(dy, x, out=big[:, ::2])[0]
    _same(np.ascontiguousarray(got), want)
    assert not big[:, 1::2].any()  # nothing written between the elements of out
    dy2, x2 = dy.copy(), x.copy()
    _same(backward(dy2, x2, out=dy2)[0], want)  # out is dy: dy read as it was
    dy3, x3 = dy.copy(), x.copy()
    _same(backward(dy3, x3, out=x3)[0], want)
    dy4 = dy.copy()
    got = backward(dy4, x, out=dy4[::-1, ::-1])[0]  # out overlaps dy, in reverse
    _same(np.ascontiguousarray(got), want)


@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
def test_out_over_a_middle_axis_in_any_layout(norm):
    """Over axis 1 dx goes straight into an out whose layout the axis kernel
    takes (every axis after the normalized one contiguous), through a new
    array into any other, and through a new array where out is an input:
    the bits of a new array each time, nothing written beside out."""
    import tracemalloc
    x, dy, backward = _case(norm, (6, 33, 40), np.float32, 1, seed=5)
    want = backward(dy, x)[0]
    big = np.zeros((12, 33, 40), np.float32)
    tracemalloc.start()
    try:
        got = backward(dy, x, out=big[::2])[0]  # samples apart: the kernel's layout
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes // 4  # written in place: no array of dx's size (numpy traces its data)
    assert got.base is big
    _same(np.ascontiguousarray(got), want)
    assert not big[1::2].any()
    wide = np.zeros((6, 33, 80), np.float32)
    got = backward(dy, x, out=wide[..., ::2])[0]  # the last axis strided: not its layout
    _same(np.ascontiguousarray(got), want)
    assert not wide[..., 1::2].any()
    dy2, x2 = dy.copy(), x.copy()
    _same(backward(dy2, x2, out=dy2)[0], want)  # out is dy: dy read as it was
    dy3, x3 = dy.copy(), x.copy()
    _same(backward(dy3, x3, out=x3)[0], want)


@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
def test_out_with_streaming_stores(norm):
    x, dy, backward = _case(norm, (37, 1031), np.float32, -1, seed=2)
    want = backward(dy, x)[0]
    before, rows_before = _core._stream_bytes(0), _core._stream_row_bytes(0)
    try:
        out = np.empty_like(x)
        _same(backward(dy, x, out=out)[0], want)
    finally:
        _core._stream_bytes(before)
        _core._stream_row_bytes(rows_before)


@pytest.mark.parametrize("norm", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("bad, error", [
    (lambda x: np.empty(x.shape[:-1] + (x.shape[-1] + 1,), x.dtype), ValueError),
    (lambda x: np.empty(x.shape, np.float64), TypeError),
    (lambda x: np.empty(x.shape, x.dtype).astype(x.dtype.newbyteorder()), TypeError),
    (lambda x: [[0.0] * x.shape[-1]] * x.shape[0], TypeError),
], ids=["shape", "dtype", "byteorder", "list"])
def test_bad_out_is_refused_and_nothing_written(norm, bad, error):
    x, dy, backward = _case(norm, (8, 16), np.float32, -1, seed=3)
    out = bad(x)
    snap = [np.array(a, copy=True) for a in (x, dy, out)]
    with pytest.raises(error, match="out"):
        backward(dy, x, out=out)
    # the same bytes (an empty out may hold NaNs, which compare unequal)
    for a, b in zip((x, dy, out), snap):
        assert np.asarray(a).tobytes() == b.tobytes()


def test_read_only_out_is_refused():
    x, dy, backward = _case("layer_norm", (8, 16), np.float32, -1, seed=4)
    out = np.zeros_like(x)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        backward(dy, x, out=out)
    assert not out.any()
