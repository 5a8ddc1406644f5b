"""fastnorm.layer_norm and layer_norm_backward against the float64 reference
(docs/numerics.md §0, §1 and §11), both kernel tables, both dtypes."""
import warnings

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import (
    LAYOUTS,
    array_cases,
    assert_close,
    assert_rel_close,
    axis_choices,
    make_array,
    numeric_grad,
    run_python,
    other_axes,
    param_shape,
    random_params,
    stats_shape,
    sum_scale,
)

AFFINE = [(False, False), (True, False), (False, True), (True, True)]
AFFINE_IDS = ["plain", "weight", "bias", "weight+bias"]


def _xhat(x, axis):
    return ref.layer_norm(x, axis=axis)[0]


# --------------------------------------------------------------------------
# Forward and backward against the reference, every layout and axis choice
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("weight,bias", AFFINE, ids=AFFINE_IDS)
def test_forward_matches_reference(isa, dtype, weight, bias, layout):
    rng = np.random.default_rng(11)
    checked = 0
    for label, _, x in array_cases(dtype, seed=1, layouts=[layout]):
        for axis in axis_choices(x.ndim):
            what = f"{label} axis={axis}"
            w, b = random_params(param_shape(x.shape, axis), dtype, rng, weight, bias)
            y, mean, rstd = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
            ye, me, re = ref.layer_norm(x, w, b, axis=axis)
            assert y.dtype == dtype and y.shape == x.shape, what
            assert mean.dtype == dtype and rstd.dtype == dtype, what
            assert mean.shape == stats_shape(x.shape, axis) == rstd.shape, what
            assert_close(y, ye, dtype, what="y " + what)
            assert_close(mean, me, dtype, scale=np.max(np.abs(x)), what="mean " + what)
            assert_rel_close(rstd, re, dtype, what="rstd " + what)
            # the same bits without the statistics
            assert np.array_equal(fn.layer_norm(x, w, b, axis=axis), y), what
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("weight", [False, True], ids=["noweight", "weight"])
def test_backward_matches_reference(isa, dtype, weight, layout):
    rng = np.random.default_rng(12)
    for label, layout_fn, x in array_cases(dtype, seed=2, layouts=[layout]):
        dy = layout_fn(make_array(x.shape, dtype, rng, loc=0.0, scale=1.0))
        for axis in axis_choices(x.ndim):
            what = f"{label} axis={axis}"
            w, _ = random_params(param_shape(x.shape, axis), dtype, rng, weight, False)
            _, mean, rstd = fn.layer_norm(x, w, axis=axis, return_stats=True)
            dx, dw, db = fn.layer_norm_backward(dy, x, mean, rstd, w, axis=axis)
            dxe, dwe, dbe = ref.layer_norm_backward(dy, x, mean, rstd, w, axis=axis)
            assert dx.shape == x.shape and dx.dtype == dtype, what
            pshape = param_shape(x.shape, axis)
            assert dw.shape == pshape == db.shape, what
            assert dw.dtype == dtype and db.dtype == dtype, what
            assert_close(dx, dxe, dtype, factor=4, what="dx " + what)
            others = other_axes(axis, x.ndim)
            xh = _xhat(x, axis)
            assert_close(dw, dwe, dtype, factor=4,
                         scale=sum_scale(dy.astype(np.float64) * xh, others),
                         what="dweight " + what)
            assert_close(db, dbe, dtype, factor=4, scale=sum_scale(dy, others),
                         what="dbias " + what)


def test_backward_with_reference_statistics(isa, dtype, rng):
    """The backward works from any (mean, rstd) close to the forward's, e.g. the reference's."""
    x = make_array((7, 50), dtype, rng)
    dy = make_array((7, 50), dtype, rng, loc=0.0, scale=1.0)
    w = make_array((50,), dtype, rng)
    _, me, re = ref.layer_norm(x)
    dx, dw, db = fn.layer_norm_backward(dy, x, me, re, w)
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, me, re, w)
    assert_close(dx, dxe, dtype, factor=4)
    assert_close(dw, dwe, dtype, factor=4, scale=7 * 4)
    assert_close(db, dbe, dtype, factor=4, scale=7 * 4)


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "C"])
def test_layouts_give_identical_bits(isa, dtype, layout):
    """A row's result depends on the row only: every memory layout gives the C layout's bits."""
    rng = np.random.default_rng(13)
    shapes = [(5, 17), (4, 3, 9), (2, 3, 4, 5)]
    for shape in shapes:
        base = make_array(shape, dtype, rng)
        dy0 = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        for axis in axis_choices(len(shape)):
            w, b = random_params(param_shape(shape, axis), dtype, rng, True, True)
            y0, m0, r0 = fn.layer_norm(base, w, b, axis=axis, return_stats=True)
            g0 = fn.layer_norm_backward(dy0, base, m0, r0, w, axis=axis)
            what = f"{shape} axis={axis} layout={layout}"
            x, dy = LAYOUTS[layout](base), LAYOUTS[layout](dy0)
            y, m, r = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
            assert np.array_equal(y, y0), what
            assert np.array_equal(m, m0) and np.array_equal(r, r0), what
            g = fn.layer_norm_backward(dy, x, m, r, w, axis=axis)
            for got, want, nm in zip(g, g0, ("dx", "dweight", "dbias")):
                assert np.array_equal(got, want), f"{nm} {what}"


def test_eps_is_inside_the_square_root(isa, dtype, rng):
    x = make_array((6, 10), dtype, rng)
    for eps in (0.0, 1e-5, 0.3, 7.0):
        y, _, rstd = fn.layer_norm(x, eps=eps, return_stats=True)
        ye, _, re = ref.layer_norm(x, eps=eps)
        assert_close(y, ye, dtype)
        assert_rel_close(rstd, re, dtype)
    # a larger eps shrinks the output
    assert np.abs(fn.layer_norm(x, eps=7.0)).max() < np.abs(fn.layer_norm(x, eps=0.0)).max()


def test_default_axis_is_last(dtype, rng):
    x = make_array((3, 4, 5), dtype, rng)
    assert np.array_equal(fn.layer_norm(x), fn.layer_norm(x, axis=-1))
    assert np.array_equal(fn.layer_norm(x), fn.layer_norm(x, axis=2))
    assert np.array_equal(fn.layer_norm(x), fn.layer_norm(x, axis=(2,)))
    assert np.array_equal(fn.layer_norm(x, axis=(0, 2)), fn.layer_norm(x, axis=[2, -3]))


# --------------------------------------------------------------------------
# Gradients against central finite differences (float64)
# --------------------------------------------------------------------------

FD_CASES = [
    ((3, 5), -1),
    ((4, 6), 0),
    ((1, 7), -1),
    ((9,), 0),
    ((2, 3, 4), (0, 2)),
    ((2, 3, 4), (-2, -1)),
    ((2, 2, 3), 1),
]


@pytest.mark.parametrize("shape,axis", FD_CASES, ids=[f"{s}-{a}" for s, a in FD_CASES])
def test_gradients_match_finite_differences(isa, shape, axis, rng):
    dt = np.float64
    x = make_array(shape, dt, rng)
    pshape = param_shape(shape, axis)
    w, b = random_params(pshape, dt, rng, True, True)
    r = rng.standard_normal(shape)

    def loss(x_, w_, b_):
        return float(np.sum(fn.layer_norm(x_, w_, b_, axis=axis) * r))

    _, mean, rstd = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
    dx, dw, db = fn.layer_norm_backward(r, x, mean, rstd, w, axis=axis)
    ndx = numeric_grad(lambda v: loss(v, w, b), x)
    ndw = numeric_grad(lambda v: loss(x, v, b), w)
    ndb = numeric_grad(lambda v: loss(x, w, v), b)
    for got, want, nm in ((dx, ndx, "dx"), (dw, ndw, "dweight"), (db, ndb, "dbias")):
        err = np.max(np.abs(got - want))
        assert err <= 1e-7 * max(1.0, np.max(np.abs(want))), f"{nm}: {err:.3e}"


def test_parameter_gradients_without_parameters(isa, rng):
    """With weight=None, dweight/dbias are the gradients at weight=1, bias=0."""
    x = make_array((4, 6), np.float64, rng)
    r = rng.standard_normal((4, 6))
    _, mean, rstd = fn.layer_norm(x, return_stats=True)
    dx, dw, db = fn.layer_norm_backward(r, x, mean, rstd)
    ones, zeros = np.ones(6), np.zeros(6)

    def loss(x_, w_, b_):
        return float(np.sum(fn.layer_norm(x_, w_, b_) * r))

    assert np.max(np.abs(dx - numeric_grad(lambda v: loss(v, None, None), x))) < 1e-7
    assert np.max(np.abs(dw - numeric_grad(lambda v: loss(x, v, zeros), ones))) < 1e-7
    assert np.max(np.abs(db - numeric_grad(lambda v: loss(x, ones, v), zeros))) < 1e-7


# --------------------------------------------------------------------------
# Adversarial inputs (docs/numerics.md §11)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6])
@pytest.mark.parametrize("n", [37, 768, 1000])
def test_large_mean_forward_float32(isa, offset, n, rng):
    x = (offset + rng.standard_normal((32, n))).astype(np.float32)
    y, mean, rstd = fn.layer_norm(x, return_stats=True)
    ye, me, re = ref.layer_norm(x)  # float64 arithmetic on the same float32 inputs
    assert np.all(np.isfinite(y))
    err = np.max(np.abs(y - ye))
    assert err <= 1e-5, f"max abs error of y {err:.3e} for mean {offset:g}"
    # the stored mean is the float32 nearest the exact one, give or take an ulp
    assert np.all(np.abs(mean - me) <= np.spacing(np.float32(offset)) * 1.5)
    assert_rel_close(rstd, re, np.float32, factor=2)
    # with the affine transform too
    w = (1 + 0.5 * rng.standard_normal(n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    assert_close(fn.layer_norm(x, w, b), ref.layer_norm(x, w, b)[0], np.float32)


def _accurate_layer_norm64(x, eps=1e-5):
    """Row-wise layer norm of a 2-D float64 array with correctly rounded sums
    (math.fsum), accurate where the plain float64 reference is not (huge means)."""
    import math

    y = np.empty_like(x)
    for i, row in enumerate(x):
        mu = math.fsum(row) / row.size
        d = row - mu  # exact: every x is within a factor 2 of mu
        c = math.fsum(d) / row.size
        d = d - c
        var = math.fsum(d * d) / row.size
        y[i] = d / math.sqrt(var + eps)
    return y


@pytest.mark.parametrize("offset", [1e8, 1e12])
def test_large_mean_forward_float64(isa, offset, rng):
    x = offset + rng.standard_normal((16, 513))
    y = fn.layer_norm(x)
    ye = _accurate_layer_norm64(x)
    err = np.max(np.abs(y - ye))
    assert err <= 1e-12, f"max abs error of y {err:.3e} for mean {offset:g}"


@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6])
@pytest.mark.parametrize("n", [37, 768])
def test_large_mean_backward_float32(isa, offset, n, rng):
    """dx from the float32 (rounded) mean and rstd is still right: the kernel
    removes the offset that the rounded mean leaves in xhat."""
    x = (offset + rng.standard_normal((32, n))).astype(np.float32)
    dy = rng.standard_normal((32, n)).astype(np.float32)
    w = (1 + 0.5 * rng.standard_normal(n)).astype(np.float32)
    _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
    assert mean.dtype == np.float32
    dx, dw, db = fn.layer_norm_backward(dy, x, mean, rstd, w)
    _, me, re = ref.layer_norm(x)  # exact statistics
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, me, re, w)
    err = np.max(np.abs(dx - dxe)) / np.max(np.abs(dxe))
    assert err <= 1e-4, f"dx relative error {err:.3e}"
    others = (0,)
    scale = sum_scale(dy.astype(np.float64) * _xhat(x, -1), others)
    assert np.max(np.abs(dw - dwe)) <= 1e-4 * scale
    assert np.max(np.abs(db - dbe)) <= 1e-5 * sum_scale(dy, others)


def test_large_mean_backward_float32_tuple_axis(isa, rng):
    x = (1e6 + rng.standard_normal((8, 24, 32))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, mean, rstd = fn.layer_norm(x, axis=(0, 2), return_stats=True)
    dx, _, _ = fn.layer_norm_backward(dy, x, mean, rstd, axis=(0, 2))
    _, me, re = ref.layer_norm(x, axis=(0, 2))
    dxe = ref.layer_norm_backward(dy, x, me, re, axis=(0, 2))[0]
    assert np.max(np.abs(dx - dxe)) <= 1e-4 * np.max(np.abs(dxe))


def test_row_40000(isa):
    """The row on which the uncentered variance formula fails."""
    x = np.array([40000, 40001, 40002, 40003], dtype=np.float32)
    y, mean, rstd = fn.layer_norm(x, return_stats=True)
    ye, me, re = ref.layer_norm(x)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y - ye)) <= 1e-5
    assert mean == np.float32(me)
    assert abs(rstd - re) <= 1e-5 * re
    # output is symmetric and has unit variance (up to eps)
    assert np.allclose(y, -y[::-1], atol=1e-6)
    # many such rows in a batch, with offsets, and the backward
    xb = (40000 + np.arange(16)[:, None] * 1000 + np.arange(4)[None, :]).astype(np.float32)
    yb, mb, rb = fn.layer_norm(xb, return_stats=True)
    assert_close(yb, ref.layer_norm(xb)[0], np.float32)
    dy = np.random.default_rng(3).standard_normal(xb.shape).astype(np.float32)
    dx, _, _ = fn.layer_norm_backward(dy, xb, mb, rb)
    _, me, re = ref.layer_norm(xb)
    assert_rel_close(dx, ref.layer_norm_backward(dy, xb, me, re)[0], np.float32, factor=10)


def test_long_integer_ramp_float32(isa):
    x = np.arange(40000, 40000 + 768, dtype=np.float32)[None, :].repeat(3, axis=0)
    assert_close(fn.layer_norm(x), ref.layer_norm(x)[0], np.float32)


@pytest.mark.parametrize("value", [1234.0, 0.1, -3.3e5, 1e6])
@pytest.mark.parametrize("n", [1, 7, 768])
def test_constant_rows(isa, dtype, value, n, rng):
    x = np.full((5, n), value, dtype=dtype)
    w = (1 + rng.standard_normal(n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    y, mean, rstd = fn.layer_norm(x, w, b, return_stats=True)
    assert np.all(np.isfinite(y))
    assert np.array_equal(y, np.broadcast_to(b, x.shape))  # y == bias exactly
    assert np.array_equal(fn.layer_norm(x), np.zeros_like(x))
    assert_close(mean, np.full(5, np.float64(dtype.type(value))), dtype, scale=abs(value))
    assert_rel_close(rstd, np.full(5, 1 / np.sqrt(1e-5)), dtype)
    # a constant row among ordinary rows changes nothing in them
    mixed = make_array((5, n), dtype, rng)
    mixed[2] = value
    ym = fn.layer_norm(mixed, w, b)
    assert np.array_equal(ym[2], b)
    assert_close(ym, ref.layer_norm(mixed, w, b)[0], dtype)
    # backward: finite, and as the reference (xhat = 0)
    dy = rng.standard_normal((5, n)).astype(dtype)
    dx, dw, db = fn.layer_norm_backward(dy, x, mean, rstd, w)
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, mean, rstd, w)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw))
    assert_close(dx, dxe, dtype, factor=4)
    assert_close(dw, dwe, dtype, factor=4)
    assert_close(db, dbe, dtype, factor=4, scale=5 * 4)


def test_rows_of_length_one(isa, dtype, rng):
    x = make_array((6, 1), dtype, rng)
    b = rng.standard_normal(1).astype(dtype)
    w = rng.standard_normal(1).astype(dtype)
    y, mean, rstd = fn.layer_norm(x, w, b, return_stats=True)
    assert np.array_equal(y, np.broadcast_to(b, x.shape))
    assert np.array_equal(mean, x[:, 0])
    assert_rel_close(rstd, ref.layer_norm(x)[2], dtype)
    dy = make_array((6, 1), dtype, rng)
    dx, dw, db = fn.layer_norm_backward(dy, x, mean, rstd, w)
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, mean, rstd, w)
    assert_close(dx, dxe, dtype)
    assert_close(dw, dwe, dtype)
    assert_close(db, dbe, dtype)
    # 1-D of length one, and a length-one axis that is not the last
    x1 = np.array([3.5], dtype=dtype)
    assert np.array_equal(fn.layer_norm(x1), np.zeros(1, dtype))
    x3 = make_array((4, 1, 5), dtype, rng)
    assert np.array_equal(fn.layer_norm(x3, axis=1), np.zeros_like(x3))


@pytest.mark.parametrize("magnitude", [1e-30, 1e30, 1e19, 3e37])
@pytest.mark.parametrize("centered", [True, False], ids=["offset", "zero-mean"])
@pytest.mark.parametrize("eps", [1e-5, 0.0], ids=["eps", "eps0"])
@pytest.mark.parametrize("n", [33, 1024])
def test_extreme_magnitudes_float32(isa, magnitude, centered, eps, n, rng):
    z = rng.standard_normal((8, n))
    x = (magnitude * ((1 + 0.25 * z) if centered else z)).astype(np.float32)
    assert np.all(np.isfinite(x)) and np.all(x != 0)
    y, mean, rstd = fn.layer_norm(x, eps=eps, return_stats=True)
    ye, me, re = ref.layer_norm(x, eps=eps)
    assert np.all(np.isfinite(y)), "inf/nan in y"
    assert np.all(np.isfinite(rstd)) and np.all(np.isfinite(mean))
    assert_close(y, ye, np.float32, factor=2)
    assert_rel_close(rstd, re, np.float32, factor=2)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw, db = fn.layer_norm_backward(dy, x, mean, rstd)
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, me, re)
    assert_rel_close(dx, dxe, np.float32, factor=10, what="dx")
    assert np.all(np.isfinite(dw)) and np.all(np.isfinite(db))


@pytest.mark.parametrize("magnitude", [1e-300, 1e-150, 1e150, 1e300])
@pytest.mark.parametrize("centered", [True, False], ids=["offset", "zero-mean"])
@pytest.mark.parametrize("eps", [1e-5, 0.0], ids=["eps", "eps0"])
def test_extreme_magnitudes_float64(isa, magnitude, centered, eps, rng):
    z = rng.standard_normal((8, 1024))
    x = magnitude * ((1 + 0.25 * z) if centered else z)
    y = fn.layer_norm(x, eps=eps)
    assert np.all(np.isfinite(y)), "inf/nan in y"
    if eps > 0 and magnitude < 1:
        ye = ref.layer_norm(x, eps=eps)[0]  # squares underflow next to eps: harmless
    else:
        # the plain reference would overflow/underflow: scale invariance,
        # f(x, eps) = f(x / s, eps / s^2)
        ye = ref.layer_norm(x / magnitude, eps=eps / magnitude / magnitude)[0]
    assert_close(y, ye, np.float64, factor=4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_value_stays_in_its_row(isa, dtype, bad, rng):
    x = make_array((6, 40), dtype, rng)
    dy = make_array((6, 40), dtype, rng)
    w, b = random_params((40,), dtype, rng, True, True)
    y0, m0, r0 = fn.layer_norm(x, w, b, return_stats=True)
    dx0, _, _ = fn.layer_norm_backward(dy, x, m0, r0, w)
    xb = x.copy()
    xb[2, 5] = bad
    y, m, r = fn.layer_norm(xb, w, b, return_stats=True)
    assert np.all(np.isnan(y[2])), "the bad row becomes NaN (as in PyTorch)"
    keep = [0, 1, 3, 4, 5]
    assert np.array_equal(y[keep], y0[keep]) and np.array_equal(m[keep], m0[keep])
    assert np.array_equal(r[keep], r0[keep])
    dx, _, _ = fn.layer_norm_backward(dy, xb, m, r, w)
    assert not np.any(np.isfinite(dx[2]))
    assert np.array_equal(dx[keep], dx0[keep])
    # a bad value in dy poisons only its row of dx
    dyb = dy.copy()
    dyb[4, 0] = bad
    dx, dwb, dbb = fn.layer_norm_backward(dyb, x, m0, r0, w)
    assert not np.all(np.isfinite(dx[4]))
    keep = [0, 1, 2, 3, 5]
    assert np.array_equal(dx[keep], dx0[keep])
    assert not np.isfinite(dbb[0])


ZERO_SIZE = [
    ((0, 8), -1), ((0, 8), 0), ((4, 0), -1), ((4, 0), 0), ((0,), 0),
    ((2, 0, 3), (0, 2)), ((2, 0, 3), 1), ((3, 4, 0), -1), ((0, 3, 4), (-2, -1)),
]


def _zero_size(shape, dtype, how):
    if how == "new":
        return np.zeros(shape, dtype=dtype)
    # a zero-size slice of a non-empty array (ordinary strides)
    full = np.ones(tuple(s if s else 3 for s in shape), dtype=dtype)
    return full[tuple(slice(0, s) for s in shape)]


@pytest.mark.parametrize("how", ["new", "slice"])
@pytest.mark.parametrize("shape,axis", ZERO_SIZE, ids=[f"{s}-{a}" for s, a in ZERO_SIZE])
def test_zero_size(isa, dtype, shape, axis, how):
    x = _zero_size(shape, dtype, how)
    assert x.size == 0 and x.shape == shape
    pshape = param_shape(shape, axis)
    w, b = np.ones(pshape, dtype), np.zeros(pshape, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of empty rows
        ye, me, re = ref.layer_norm(x, w, b, axis=axis)
        y, mean, rstd = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
        assert y.shape == shape and y.dtype == dtype
        assert mean.shape == me.shape and rstd.shape == re.shape
        # rows with no elements have no mean or rstd: NaN, as the reference (never garbage)
        assert_close(mean, me, dtype, what="mean")
        assert_close(rstd, re, dtype, what="rstd")
        out = np.empty_like(x)
        assert fn.layer_norm(x, axis=axis, out=out) is out
        dy = np.zeros_like(x)
        dx, dw, db = fn.layer_norm_backward(dy, x, mean, rstd, w, axis=axis)
        dxe, dwe, dbe = ref.layer_norm_backward(dy, x, me, re, w, axis=axis)
    assert dx.shape == shape
    assert dw.shape == pshape and db.shape == pshape
    # sums over no rows are zero
    assert np.array_equal(dw, dwe), f"dweight {dw} != {dwe}"
    assert np.array_equal(db, dbe), f"dbias {db} != {dbe}"


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

def _expected(x, w=None, b=None, axis=-1):
    return fn.layer_norm(np.array(x, copy=True), w, b, axis=axis)


@pytest.mark.parametrize("layout", [n for n in LAYOUTS if n != "byteswapped"])
def test_out_any_layout(isa, dtype, layout, rng):
    """Every writable layout of out (a byte-swapped out is refused: test_api)."""
    x = make_array((16, 33), dtype, rng)
    w, b = random_params((33,), dtype, rng, True, True)
    want = fn.layer_norm(x, w, b)
    out = LAYOUTS[layout](np.zeros_like(x))
    got = fn.layer_norm(x, w, b, out=out)
    assert got is out
    assert np.array_equal(out, want)


def test_out_with_stats_and_non_trailing_axis(isa, dtype, rng):
    x = make_array((6, 5, 4), dtype, rng)
    out = np.zeros((4, 5, 6), dtype).T  # Fortran-ordered
    y, mean, rstd = fn.layer_norm(x, axis=(0, 2), out=out, return_stats=True)
    assert y is out
    ye, me, re = ref.layer_norm(x, axis=(0, 2))
    assert_close(out, ye, dtype)
    assert_close(mean, me, dtype, scale=np.max(np.abs(x)))


@pytest.mark.parametrize("layout", ["C", "F", "sliced", "negstride", "padded", "unaligned"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2)])
def test_out_is_x_in_place(isa, dtype, layout, axis, rng):
    base = make_array((4, 6, 9), dtype, rng)
    w, b = random_params(param_shape(base.shape, axis), dtype, rng, True, True)
    want = fn.layer_norm(base, w, b, axis=axis)
    x = LAYOUTS[layout](base)
    got = fn.layer_norm(x, w, b, axis=axis, out=x)
    assert got is x
    assert np.array_equal(x, want)


SHIFTS = {
    "1d-forward": (lambda buf: (buf[:-1], buf[1:]), (101,)),
    "1d-backward": (lambda buf: (buf[1:], buf[:-1]), (101,)),
    "rows-forward": (lambda buf: (buf[:-1], buf[1:]), (65, 40)),
    "rows-backward": (lambda buf: (buf[1:], buf[:-1]), (65, 40)),
    "cols-forward": (lambda buf: (buf[:, :-1], buf[:, 1:]), (30, 41)),
    "cols-backward": (lambda buf: (buf[:, 1:], buf[:, :-1]), (30, 41)),
    "rows-by-two": (lambda buf: (buf[:-2], buf[2:]), (66, 40)),
    "reversed": (lambda buf: (buf, buf[::-1]), (64, 40)),
    "flat-shift": (lambda buf: (buf.ravel()[:-5].reshape(-1, 43),
                                buf.ravel()[5:].reshape(-1, 43)), (43 * 20 + 5,)),
}


@pytest.mark.parametrize("case", list(SHIFTS))
def test_out_overlapping_x(isa, dtype, case, rng):
    """out overlapping x in a shifted way still gives the result of a fresh out."""
    make, shape = SHIFTS[case]
    buf = make_array(shape, dtype, rng)
    x, out = make(buf)
    n = x.shape[-1]
    w, b = random_params((n,), dtype, rng, True, True)
    want = _expected(x, w, b)
    got = fn.layer_norm(x, w, b, out=out)
    assert got is out
    assert np.array_equal(out, want)


@pytest.mark.parametrize("which", ["weight", "bias"])
def test_out_overlapping_parameters(isa, dtype, which, rng):
    """out=x where weight or bias is a row of x: the parameters must be read
    before they are overwritten (NumPy's out= semantics)."""
    x = make_array((8, 32), dtype, rng)
    w, b = random_params((32,), dtype, rng, True, True)
    if which == "weight":
        w = x[3]
    else:
        b = x[3]
    want = fn.layer_norm(x.copy(), w.copy(), b.copy())
    got = fn.layer_norm(x, w, b, out=x)
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------
# Unaligned arrays (e.g. from np.frombuffer at an odd offset)
# --------------------------------------------------------------------------

UNALIGNED_SCRIPT = """
import numpy as np, fastnorm as fn

def unaligned(a):
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
    v = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    v[...] = a
    assert not v.flags.aligned
    return v

rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    x = rng.standard_normal((8, 16)).astype(dt)
    dy = rng.standard_normal((8, 16)).astype(dt)
    _, m, r = fn.layer_norm(x, return_stats=True)
    want = fn.layer_norm_backward(dy, x, m, r)
    got = fn.layer_norm_backward(unaligned(dy), x, m, r)
    for g, w in zip(got, want):
        assert np.array_equal(g, w), (g, w)
print("ok")
"""


def test_unaligned_dy_in_a_subprocess():
    """An unaligned dy with an aligned x: run apart, since it has crashed the interpreter."""
    proc = run_python(UNALIGNED_SCRIPT)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "ok"


def test_unaligned_x_forward(isa, dtype, rng):
    x = make_array((8, 16), dtype, rng)
    xu = LAYOUTS["unaligned"](x)
    assert not xu.flags.aligned
    want = fn.layer_norm(x, return_stats=True)
    got = fn.layer_norm(xu, return_stats=True)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
