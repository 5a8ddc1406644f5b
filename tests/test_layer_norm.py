"""What only fastnorm.layer_norm has, against the float64 reference
(docs/numerics.md §0, §1 and §11), both kernel tables, both dtypes: the
backward from other statistics, eps and the default axis, large means,
constant rows and rows of one element. What it shares with rms_norm is in
test_row_norms.py."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import assert_close, assert_rel_close, make_array, sum_scale


def _xhat(x, axis):
    return ref.layer_norm(x, axis=axis)[0]


# --------------------------------------------------------------------------
# Statistics, eps and axis
# --------------------------------------------------------------------------


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


@pytest.mark.parametrize("n", [65, 768, 4096])
@pytest.mark.parametrize("start", [50.0, 1e3, 1e4])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_rows_whose_start_is_unlike_the_rest(isa, dtype, n, start, offset, rng):
    """float32 and float64 rows take their statistics in one pass around the mean
    of their first 64 elements (docs/numerics.md); a row whose start is far from
    its mean takes the two passes instead and keeps their accuracy: in float32
    within a tenth of the usual tolerance (a single pass around the sample's
    mean loses up to a hundred times more on these rows)."""
    x = rng.standard_normal((6, n))
    x[:, :64] += start
    x[3, :] = rng.standard_normal(n)  # a row with a typical start, between them
    x = (offset + x).astype(dtype)
    y, mean, rstd = fn.layer_norm(x, return_stats=True)
    ye, me, re = ref.layer_norm(x)
    f = 0.1 if dtype == np.float32 else 1.0
    assert_close(y, ye, dtype, factor=f, what="y")
    assert_rel_close(rstd, re, dtype, factor=f / 2, what="rstd")
    assert_close(mean, me, dtype, scale=float(np.max(np.abs(x))), what="mean")


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
