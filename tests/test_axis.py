"""layer_norm / rms_norm (and backward) over one axis that is not the last.

These run the column kernels, which normalize along the strided axis in place
(no transposing copy). Checked against the same call on the transposed copy,
the float64 reference, finite differences, large means, thread counts, odd
sizes, memory layouts and PyTorch's permute + layer_norm.
"""
import numpy as np
import pytest

import fastnorm as fn
import fastnorm.reference as ref
from conftest import LAYOUTS, assert_close, numeric_grad, sum_scale, tol

# (shape, axis): NCHW channels, a leading axis, middle axes, negative axes,
# C = 1, L from 2 to 17 and sizes that are not multiples of the vector width
CASES = [
    ((4, 96, 7, 9), 1),
    ((2, 5, 17), 1),
    ((3, 5, 17), 0),
    ((2, 3, 4, 5), 2),
    ((2, 3, 4, 5), -2),
    ((2, 3, 4, 5), -3),
    ((7, 1, 13), 1),
    ((5, 33, 2), 1),
    ((3, 9, 3, 3), 1),
    ((1, 70, 1, 23), -3),
    ((6, 4, 16), -2),
]
CASE_IDS = [f"{'x'.join(map(str, s))}-ax{a}" for s, a in CASES]


def _moved(x, axis):
    return np.ascontiguousarray(np.moveaxis(x, axis, -1))


def _params(C, dtype, rng):
    return ((1 + 0.5 * rng.standard_normal(C)).astype(dtype),
            rng.standard_normal(C).astype(dtype))


def _data(shape, dtype, rng, loc=0.5, scale=2.0):
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------
# Against the transposed copy (the row kernels) and the float64 reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape, axis", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_matches_transposed(isa, dtype, shape, axis, affine, rng):
    x = _data(shape, dtype, rng)
    w, b = _params(shape[axis], dtype, rng) if affine else (None, None)
    y, m, r = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
    yt, mt, rt = fn.layer_norm(_moved(x, axis), w, b, return_stats=True)
    assert y.shape == x.shape and m.shape == mt.shape and r.shape == rt.shape
    assert y.dtype == m.dtype == r.dtype == dtype
    f = 4 if dtype == np.float32 else 16
    assert_close(y, np.moveaxis(yt, -1, axis), dtype, factor=f, what="y")
    assert_close(m, mt, dtype, factor=f, what="mean")
    assert_close(r, rt, dtype, factor=f, scale=np.abs(rt).max(), what="rstd")
    ye, me, re_ = ref.layer_norm(x, w, b, axis=axis)
    assert_close(y, ye, dtype, factor=f, what="y vs reference")
    assert_close(r, re_, dtype, factor=f, scale=np.abs(re_).max(), what="rstd vs reference")

    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w, axis=axis)
    dxt, dwt, dbt = fn.layer_norm_backward(_moved(dy, axis), _moved(x, axis), m, r, w)
    assert dx.shape == x.shape and dw.shape == db.shape == (shape[axis],)
    assert_close(dx, np.moveaxis(dxt, -1, axis), dtype, factor=f, what="dx")
    others = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    xh = (x.astype(np.float64) - np.expand_dims(m, axis)) * np.expand_dims(r, axis)
    assert_close(dw, dwt, dtype, factor=f, scale=sum_scale(dy * xh, others), what="dweight")
    assert_close(db, dbt, dtype, factor=f, scale=sum_scale(dy, others), what="dbias")
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, m, r, w, axis=axis)
    assert_close(dx, dxe, dtype, factor=f, what="dx vs reference")
    assert_close(dw, dwe, dtype, factor=f, scale=sum_scale(dy * xh, others), what="dw vs ref")


@pytest.mark.parametrize("shape, axis", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("affine", [True, False])
def test_rms_norm_matches_transposed(isa, dtype, shape, axis, affine, rng):
    x = _data(shape, dtype, rng)
    w = _params(shape[axis], dtype, rng)[0] if affine else None
    y, r = fn.rms_norm(x, w, axis=axis, return_stats=True)
    yt, rt = fn.rms_norm(_moved(x, axis), w, return_stats=True)
    f = 4 if dtype == np.float32 else 16
    assert r.shape == rt.shape
    assert_close(y, np.moveaxis(yt, -1, axis), dtype, factor=f, what="y")
    assert_close(r, rt, dtype, factor=f, scale=np.abs(rt).max(), what="rstd")
    ye, re_ = ref.rms_norm(x, w, axis=axis)
    assert_close(y, ye, dtype, factor=f, what="y vs reference")

    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw = fn.rms_norm_backward(dy, x, r, w, axis=axis)
    dxt, dwt = fn.rms_norm_backward(_moved(dy, axis), _moved(x, axis), r, w)
    others = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    xh = x.astype(np.float64) * np.expand_dims(r, axis)
    assert_close(dx, np.moveaxis(dxt, -1, axis), dtype, factor=f, what="dx")
    assert_close(dw, dwt, dtype, factor=f, scale=sum_scale(dy * xh, others), what="dweight")
    dxe, dwe = ref.rms_norm_backward(dy, x, r, w, axis=axis)
    assert_close(dx, dxe, dtype, factor=f, what="dx vs reference")


@pytest.mark.parametrize("C", [1, 2, 3, 7, 8, 9, 31, 513, 1100])
@pytest.mark.parametrize("L", list(range(2, 18)) + [40, 1031])
def test_odd_sizes(C, L, rng):
    """Every tail: C from 1 to past a sum chunk (512 rows), L from 2 to 17 and
    past a column block."""
    if C * L > 200_000:
        pytest.skip("large enough")
    x = _data((2, C, L), np.float32, rng)
    w, b = _params(C, np.float32, rng)
    y, m, r = fn.layer_norm(x, w, b, axis=1, return_stats=True)
    ye, me, re_ = ref.layer_norm(x, w, b, axis=1)
    assert_close(y, ye, np.float32, factor=4, what="y")
    assert_close(m, me, np.float32, factor=4, what="mean")
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w, axis=1)
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, m, r, w, axis=1)
    assert_close(dx, dxe, np.float32, factor=4, what="dx")
    assert_close(db, dbe, np.float32, scale=sum_scale(dy, (0, 2)), factor=4, what="db")
    yr, rr = fn.rms_norm(x, w, axis=1, return_stats=True)
    assert_close(yr, ref.rms_norm(x, w, axis=1)[0], np.float32, factor=4, what="rms y")


# --------------------------------------------------------------------------
# Finite differences
# --------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [0, 1, -2])
def test_layer_norm_backward_finite_differences(isa, axis, rng):
    shape = (3, 4, 5)
    x = rng.standard_normal(shape)
    w, b = _params(shape[axis], np.float64, rng)
    dy = rng.standard_normal(shape)

    def loss_x(a):
        return float(np.sum(fn.layer_norm(a, w, b, axis=axis) * dy))

    def loss_w(p):
        return float(np.sum(fn.layer_norm(x, p, b, axis=axis) * dy))

    def loss_b(p):
        return float(np.sum(fn.layer_norm(x, w, p, axis=axis) * dy))

    _, m, r = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w, axis=axis)
    np.testing.assert_allclose(dx, numeric_grad(loss_x, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numeric_grad(loss_w, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numeric_grad(loss_b, b), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("axis", [0, 1])
def test_rms_norm_backward_finite_differences(isa, axis, rng):
    shape = (4, 3, 6)
    x = rng.standard_normal(shape)
    w = _params(shape[axis], np.float64, rng)[0]
    dy = rng.standard_normal(shape)
    _, r = fn.rms_norm(x, w, axis=axis, eps=1e-6, return_stats=True)
    dx, dw = fn.rms_norm_backward(dy, x, r, w, axis=axis)
    gx = numeric_grad(lambda a: float(np.sum(fn.rms_norm(a, w, axis=axis, eps=1e-6) * dy)), x)
    gw = numeric_grad(lambda p: float(np.sum(fn.rms_norm(x, p, axis=axis, eps=1e-6) * dy)), w)
    np.testing.assert_allclose(dx, gx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, gw, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------
# Numerics: large means, long axes, range, NaN
# --------------------------------------------------------------------------

@pytest.mark.parametrize("loc", [1e4, 1e5, 1e6])
def test_large_mean_float32(isa, loc, rng):
    """Centered two-pass statistics: no cancellation for columns with a large
    mean (errors against float64 arithmetic on the same float32 inputs)."""
    x = (loc + rng.standard_normal((3, 64, 5, 7))).astype(np.float32)
    y, m, r = fn.layer_norm(x, axis=1, return_stats=True)
    ye, me, re_ = ref.layer_norm(x, axis=1)
    assert np.abs(y - ye).max() < 3e-6 * (1 + np.log10(loc))
    np.testing.assert_allclose(r, re_, rtol=1e-5)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, axis=1)
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, m, r, axis=1)
    assert np.abs(dx - dxe).max() < 1e-4


def test_long_axis_float32(rng):
    """C of 5000 (ten sum chunks): the error does not grow with C."""
    x = (3.0 + rng.standard_normal((2, 5000, 24))).astype(np.float32)
    y, m, r = fn.layer_norm(x, axis=1, return_stats=True)
    ye, me, re_ = ref.layer_norm(x, axis=1)
    assert np.abs(m - me).max() < 2e-6
    np.testing.assert_allclose(r, re_, rtol=2e-6)
    assert np.abs(y - ye).max() < 5e-6


def test_range_and_nan_columns_match_rows(isa, dtype):
    """Columns whose sums overflow or underflow take the exact-range path, and
    NaN / Inf stay in their column: the same as the row kernels."""
    big = np.finfo(dtype).max / 4
    tiny = np.finfo(dtype).tiny * 4
    x = np.ones((2, 6, 5), dtype)
    x[0, :, 0] = np.linspace(-big, big, 6)
    x[0, :, 1] = np.linspace(0, 5, 6) * tiny
    x[1, 2, 2] = np.nan
    x[1, 3, 3] = np.inf
    x[1, :, 4] = np.arange(6)
    for eps in (0.0, 1e-5):
        y, m, r = fn.layer_norm(x, axis=1, eps=eps, return_stats=True)
        yt, mt, rt = fn.layer_norm(_moved(x, 1), eps=eps, return_stats=True)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(np.moveaxis(yt, -1, 1)))
        np.testing.assert_allclose(y, np.moveaxis(yt, -1, 1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(m, mt, rtol=1e-6)
        np.testing.assert_allclose(r, rt, rtol=1e-5)
        yr, rr = fn.rms_norm(x, axis=1, eps=eps, return_stats=True)
        yrt, rrt = fn.rms_norm(_moved(x, 1), eps=eps, return_stats=True)
        np.testing.assert_allclose(yr, np.moveaxis(yrt, -1, 1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(rr, rrt, rtol=1e-5)
    assert np.isfinite(y[0]).all()


# --------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 96, 30, 31), (2, 700, 9, 11), (1, 40, 4000)])
def test_bitwise_identical_for_any_thread_count(isa, dtype, shape, rng):
    x = _data(shape, dtype, rng)
    w, b = _params(shape[1], dtype, rng)
    dy = rng.standard_normal(shape).astype(dtype)
    base = None
    for nt in range(1, 9):
        y, m, r = fn.layer_norm(x, w, b, axis=1, return_stats=True, num_threads=nt)
        dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w, axis=1, num_threads=nt)
        yr, rr = fn.rms_norm(x, w, axis=1, return_stats=True, num_threads=nt)
        dxr, dwr = fn.rms_norm_backward(dy, x, rr, w, axis=1, num_threads=nt)
        got = [y, m, r, dx, dw, db, yr, rr, dxr, dwr]
        if base is None:
            base = got
        else:
            for a, e in zip(got, base):
                assert np.array_equal(a, e), f"num_threads={nt} differs"


# --------------------------------------------------------------------------
# Layouts and out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_input_layouts(isa, dtype, layout, rng):
    base = _data((3, 6, 5, 7), dtype, rng)
    x = LAYOUTS[layout](base)
    w, b = _params(6, dtype, rng)
    y, m, r = fn.layer_norm(x, w, b, axis=1, return_stats=True)
    ye, me, re_ = fn.layer_norm(base, w, b, axis=1, return_stats=True)
    assert_close(y, ye, dtype, factor=2, what="y")
    dy = LAYOUTS[layout](rng.standard_normal(base.shape).astype(dtype))
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w, axis=1)
    dxe, dwe, dbe = fn.layer_norm_backward(np.ascontiguousarray(dy), base, me, re_, w, axis=1)
    assert_close(dx, dxe, dtype, factor=2, what="dx")
    assert_close(dw, dwe, dtype, factor=2, scale=sum_scale(dy, (0, 2, 3)) * 4, what="dw")


def test_out_layouts_and_in_place(isa, dtype, rng):
    x = _data((3, 8, 5, 6), dtype, rng)
    w, b = _params(8, dtype, rng)
    expected = fn.layer_norm(x, w, b, axis=1)
    # C-ordered out, sliced out, Fortran out, a channel-strided out
    outs = [np.empty_like(x), np.empty((3, 8, 5, 12), dtype)[..., ::2],
            np.asfortranarray(np.empty_like(x)), np.empty((3, 16, 5, 6), dtype)[:, ::2]]
    for out in outs:
        res = fn.layer_norm(x, w, b, axis=1, out=out)
        assert res is out
        np.testing.assert_array_equal(out, expected)
    # in place
    xi = x.copy()
    res = fn.layer_norm(xi, w, b, axis=1, out=xi)
    assert res is xi
    np.testing.assert_array_equal(xi, expected)
    xi = x.copy()
    fn.rms_norm(xi, w, axis=1, out=xi)
    np.testing.assert_array_equal(xi, fn.rms_norm(x, w, axis=1))
    # out overlapping x with other strides: still the result on the original x
    buf = np.concatenate([x.ravel(), np.zeros(6, dtype)])
    xo = buf[:x.size].reshape(x.shape)
    out = buf[6:].reshape(x.shape)
    fn.layer_norm(xo, w, b, axis=1, out=out)
    np.testing.assert_array_equal(out, expected)
    # a weight inside out is read before out is written
    big = np.empty(x.size + 8, dtype)
    out = big[:x.size].reshape(x.shape)
    wv = big[:8]
    wv[...] = w
    fn.layer_norm(x, wv, b, axis=1, out=out)
    np.testing.assert_array_equal(out, expected)


def test_stats_shape_and_errors(rng):
    x = _data((2, 3, 4, 5), np.float32, rng)
    _, m, r = fn.layer_norm(x, axis=1, return_stats=True)
    assert m.shape == r.shape == (2, 4, 5)
    with pytest.raises(ValueError, match="weight"):
        fn.layer_norm(x, np.ones(4, np.float32), axis=1)
    with pytest.raises(ValueError, match="mean"):
        fn.layer_norm_backward(x, x, m[:, :2], r, axis=1)
    out = np.zeros_like(x)
    with pytest.raises(ValueError, match="weight"):
        fn.layer_norm(x, np.ones(5, np.float32), axis=1, out=out)
    assert not out.any()


def test_zero_size(dtype):
    x = np.zeros((2, 0, 3), dtype)
    y, m, r = fn.layer_norm(x, axis=1, return_stats=True)
    assert y.shape == x.shape and m.shape == (2, 3) and np.isnan(m).all()
    dx, dw, db = fn.layer_norm_backward(x, x, m, r, axis=1)
    assert dx.shape == x.shape and dw.shape == (0,)
    x = np.zeros((0, 4, 3), dtype)
    y, m, r = fn.layer_norm(x, np.ones(4, dtype), axis=1, return_stats=True)
    assert y.shape == x.shape and m.shape == (0, 3)
    dx, dw, db = fn.layer_norm_backward(x, x, m, r, np.ones(4, dtype), axis=1)
    assert np.array_equal(dw, np.zeros(4)) and np.array_equal(db, np.zeros(4))


def test_add_norms_with_axis(dtype, rng):
    x = _data((2, 6, 4, 5), dtype, rng)
    res = _data((2, 6, 4, 5), dtype, rng)
    w, b = _params(6, dtype, rng)
    y, s, m, r = fn.add_layer_norm(x, res, w, b, axis=1, return_stats=True)
    np.testing.assert_array_equal(s, x + res)
    assert_close(y, fn.layer_norm(x + res, w, b, axis=1), dtype, what="y")
    dy = rng.standard_normal(x.shape).astype(dtype)
    dsum, dw, db, drb = fn.add_layer_norm_backward(dy, s, m, r, w, axis=1)
    dx, dwe, dbe = fn.layer_norm_backward(dy, s, m, r, w, axis=1)
    np.testing.assert_array_equal(dsum, dx)
    yr, sr = fn.add_rms_norm(x, res, w, axis=1)
    assert_close(yr, fn.rms_norm(x + res, w, axis=1), dtype, what="rms y")


# --------------------------------------------------------------------------
# PyTorch: permute + layer_norm over the last dimension
# --------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("shape", [(2, 96, 7, 9), (3, 17, 5, 3)])
def test_torch_permute_layer_norm(dtype, shape, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _data(shape, dtype, rng)
    w, b = _params(shape[1], dtype, rng)
    dy = rng.standard_normal(shape).astype(dtype)
    xt = torch.from_numpy(x.copy()).requires_grad_()
    wt = torch.from_numpy(w.copy()).requires_grad_()
    bt = torch.from_numpy(b.copy()).requires_grad_()
    yt = F.layer_norm(xt.permute(0, 2, 3, 1), (shape[1],), wt, bt, 1e-5).permute(0, 3, 1, 2)
    yt.backward(torch.from_numpy(dy))
    y, m, r = fn.layer_norm(x, w, b, axis=1, return_stats=True)
    f = 4 if dtype == np.float32 else 16
    assert_close(y, yt.detach().numpy(), dtype, factor=f, what="y")
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w, axis=1)
    assert_close(dx, xt.grad.numpy(), dtype, factor=f, what="dx")
    assert_close(dw, wt.grad.numpy(), dtype, factor=f, scale=np.abs(dy).sum((0, 2, 3)).max() * 3,
                 what="dweight")
    assert_close(db, bt.grad.numpy(), dtype, factor=f, scale=np.abs(dy).sum((0, 2, 3)).max(),
                 what="dbias")
    assert tol(dtype) > 0
