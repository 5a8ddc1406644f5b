"""fastnorm.group_norm / instance_norm and their backward against the float64
reference (docs/numerics.md §0, §5, §6 and §11), both kernel tables, both dtypes."""
import itertools
import re
import warnings

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import (
    LAYOUTS,
    assert_close,
    assert_rel_close,
    make_array,
    random_params,
    sum_scale,
)
from params import (
    AFFINE,
    OUT_LAYOUTS,
    STRIDED_LAYOUTS,
    assert_grads_fd,
    assert_refused_untouched,
    channel_others,
    running_stats_bad_kwargs,
)

# (shape, channel axis): NCHW, channels-last, 3-D, 5-D and 2-D inputs
CASES = [
    ((2, 6, 3, 4), 1),
    ((2, 3, 4, 6), -1),
    ((3, 6, 5), 1),
    ((3, 5, 6), -1),
    ((2, 4, 2, 3, 2), 1),
    ((2, 2, 3, 2, 4), -1),
    ((5, 8), 1),
    ((5, 8), -1),
    ((2, 6, 4, 3), 2),     # a channel axis in the middle
]
CASE_IDS = [f"{s}-ax{a}" for s, a in CASES]


def _groups(C):
    """G = 1, a proper divisor, and G = C."""
    out = [1]
    out += [d for d in range(2, C) if C % d == 0][:1]
    out.append(C)
    return out


def _xhat_gn(x, G, axis):
    return ref.group_norm(x, G, axis=axis)[0]


def _dx_scale(dy, w, rstd, axis):
    """The size of the terms that dx is made of: rstd * |dy * w| (dx itself can be
    zero, e.g. with one element per group, where rstd = 1/sqrt(eps) is large)."""
    g = np.abs(np.asarray(dy, np.float64))
    if w is not None:
        shp = [1] * g.ndim
        shp[axis] = -1
        g = g * np.abs(np.asarray(w, np.float64)).reshape(shp)
    return float(g.max() * np.max(np.abs(rstd)))


# --------------------------------------------------------------------------
# Forward against the reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", CASES, ids=CASE_IDS)
def test_group_norm_forward_matches_reference(isa, dtype, shape, axis, rng):
    x = make_array(shape, dtype, rng)
    C = shape[axis]
    for (weight, bias), G in itertools.product(AFFINE, _groups(C)):
        w, b = random_params((C,), dtype, rng, weight, bias)
        what = f"G={G} weight={weight} bias={bias}"
        y, mean, rstd = fn.group_norm(x, G, w, b, axis=axis, return_stats=True)
        ye, me, re = ref.group_norm(x, G, w, b, axis=axis)
        assert y.shape == shape and y.dtype == dtype, what
        assert mean.shape == (shape[0], G) == rstd.shape, what
        assert mean.dtype == dtype and rstd.dtype == dtype, what
        assert_close(y, ye, dtype, what="y " + what)
        assert_close(mean, me, dtype, scale=np.abs(x).max(), what="mean " + what)
        assert_rel_close(rstd, re, dtype, what="rstd " + what)
        # the same bits without the statistics, and with num_threads given
        assert np.array_equal(fn.group_norm(x, G, w, b, axis=axis), y), what
        assert np.array_equal(fn.group_norm(x, G, w, b, axis=axis, num_threads=1), y), what


def test_group_norm_special_cases(isa, dtype, rng):
    """G = 1 is layer norm over (C, *spatial) with a per-channel affine; G = C is
    instance norm."""
    x = make_array((3, 4, 5, 2), dtype, rng)
    w, b = random_params((4,), dtype, rng, True, True)
    y1 = fn.group_norm(x, 1, w, b)
    ln = ref.layer_norm(x, axis=(1, 2, 3))[0] * w[:, None, None] + b[:, None, None]
    assert_close(y1, ln, dtype)
    yc = fn.group_norm(x, 4, w, b)
    assert np.array_equal(yc, fn.instance_norm(x, w, b))
    assert_close(yc, ref.instance_norm(x, w, b)[0], dtype)
    # and they differ (the groups matter)
    assert np.max(np.abs(y1.astype(np.float64) - yc)) > 1e-2


def test_group_norm_default_eps_and_axis(dtype, rng):
    x = make_array((2, 4, 3), dtype, rng) * 1e-3  # small variance: eps matters
    assert np.array_equal(fn.group_norm(x, 2), fn.group_norm(x, 2, eps=1e-5, axis=1))
    assert_close(fn.group_norm(x, 2), ref.group_norm(x, 2, eps=1e-5)[0], dtype)
    assert np.max(np.abs(fn.group_norm(x, 2, eps=0.0) - fn.group_norm(x, 2))) > 1e-2
    for eps in (0.0, 0.5, 3.0):
        assert_close(fn.group_norm(x, 2, eps=eps), ref.group_norm(x, 2, eps=eps)[0], dtype)


@pytest.mark.parametrize("layout", STRIDED_LAYOUTS)
def test_group_norm_layouts_give_identical_bits(isa, dtype, layout, rng):
    """Non-contiguous, negative-stride, Fortran-order, byte-swapped, ... x give
    the C layout's bits (x is copied into the C layout first)."""
    for shape, axis in [((3, 6, 5, 2), 1), ((3, 5, 2, 6), -1), ((4, 6), 1)]:
        _check_layout(layout, dtype, shape, axis, rng)


def _check_layout(layout, dtype, shape, axis, rng):
    base = make_array(shape, dtype, rng)
    dy0 = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w, b = random_params((6,), dtype, rng, True, True)
    y0, m0, r0 = fn.group_norm(base, 3, w, b, axis=axis, return_stats=True)
    g0 = fn.group_norm_backward(dy0, base, m0, r0, w, b, axis=axis)
    x, dy = LAYOUTS[layout](base), LAYOUTS[layout](dy0)
    assert np.array_equal(x, base)
    y, m, r = fn.group_norm(x, 3, w, b, axis=axis, return_stats=True)
    assert y.dtype == dtype and y.dtype.isnative
    assert np.array_equal(y, y0) and np.array_equal(m, m0) and np.array_equal(r, r0)
    g = fn.group_norm_backward(dy, x, m, r, w, b, axis=axis)
    for got, want, nm in zip(g, g0, ("dx", "dweight", "dbias")):
        assert np.array_equal(got, want), nm
    # instance norm too (a 2-D x has one element per instance: an error in training)
    if len(shape) > 2:
        yi = fn.instance_norm(x, w, b, axis=axis)
        assert np.array_equal(yi, fn.instance_norm(base, w, b, axis=axis))


@pytest.mark.parametrize("which", ["x", "weight", "dy", "mean"])
def test_unaligned_inputs(dtype, which, rng):
    base = make_array((3, 6, 5), dtype, rng)
    dy0 = make_array((3, 6, 5), dtype, rng)
    w, b = random_params((6,), dtype, rng, True, True)
    y0, m0, r0 = fn.group_norm(base, 3, w, b, return_stats=True)
    g0 = fn.group_norm_backward(dy0, base, m0, r0, w, b)
    un = LAYOUTS["unaligned"]
    args = {"x": base, "weight": w, "dy": dy0, "mean": m0}
    args[which] = un(args[which])
    assert not args[which].flags.aligned
    y = fn.group_norm(args["x"], 3, args["weight"], b)
    assert np.array_equal(y, y0)
    g = fn.group_norm_backward(args["dy"], args["x"], args["mean"], r0, args["weight"], b)
    for got, want in zip(g, g0):
        assert np.array_equal(got, want)


def test_byteswapped_parameters_and_stats(isa, dtype, rng):
    x = make_array((2, 4, 5), dtype, rng)
    dy = make_array((2, 4, 5), dtype, rng)
    w, b = random_params((4,), dtype, rng, True, True)
    y0, m, r = fn.group_norm(x, 2, w, b, return_stats=True)
    sw = LAYOUTS["byteswapped"]
    assert np.array_equal(fn.group_norm(x, 2, sw(w), sw(b)), y0)
    g0 = fn.group_norm_backward(dy, x, m, r, w, b)
    g = fn.group_norm_backward(sw(dy), sw(x), sw(m), sw(r), sw(w), sw(b))
    for got, want in zip(g, g0):
        assert np.array_equal(got, want)


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", OUT_LAYOUTS)
def test_out_any_layout(isa, dtype, layout, rng):
    for axis in (1, -1):
        _check_out_layout(layout, dtype, axis, rng)


def _check_out_layout(layout, dtype, axis, rng):
    x = make_array((3, 6, 7) if axis == 1 else (3, 7, 6), dtype, rng)
    w, b = random_params((x.shape[axis],), dtype, rng, True, True)
    want = fn.group_norm(x, 3, w, b, axis=axis)
    out = LAYOUTS[layout](np.zeros_like(x))
    got, m, r = fn.group_norm(x, 3, w, b, axis=axis, out=out, return_stats=True)
    assert got is out
    assert np.array_equal(out, want)
    assert m.shape == (3, 3)
    out2 = LAYOUTS[layout](np.zeros_like(x))
    assert fn.instance_norm(x, w, b, axis=axis, out=out2) is out2
    assert np.array_equal(out2, fn.instance_norm(x, w, b, axis=axis))


@pytest.mark.parametrize("layout", ["C", "F", "sliced", "negstride", "padded"])
def test_out_is_x_in_place(isa, dtype, layout, rng):
    for axis in (1, -1):
        _check_in_place(layout, dtype, axis, rng)


def _check_in_place(layout, dtype, axis, rng):
    base = make_array((4, 6, 5) if axis == 1 else (4, 5, 6), dtype, rng)
    w, b = random_params((base.shape[axis],), dtype, rng, True, True)
    want, wm, wr = fn.group_norm(base, 2, w, b, axis=axis, return_stats=True)
    x = LAYOUTS[layout](base.copy())
    got, m, r = fn.group_norm(x, 2, w, b, axis=axis, out=x, return_stats=True)
    assert got is x
    assert np.array_equal(x, want)
    assert np.array_equal(m, wm) and np.array_equal(r, wr)
    # instance norm in place
    x = LAYOUTS[layout](base.copy())
    assert fn.instance_norm(x, w, b, axis=axis, out=x) is x
    assert np.array_equal(x, fn.instance_norm(base, w, b, axis=axis))


SHIFTS = {
    "forward": lambda buf: (buf[:-1], buf[1:]),
    "backward": lambda buf: (buf[1:], buf[:-1]),
    "by-two": lambda buf: (buf[:-2], buf[2:]),
    "reversed": lambda buf: (buf, buf[::-1]),
    "flat-shift": lambda buf: (buf.ravel()[:336].reshape(8, 6, 7),
                               buf.ravel()[5:341].reshape(8, 6, 7)),
    "flat-shift-back": lambda buf: (buf.ravel()[5:341].reshape(8, 6, 7),
                                    buf.ravel()[:336].reshape(8, 6, 7)),
}


@pytest.mark.parametrize("case", list(SHIFTS))
def test_out_overlapping_x(isa, dtype, case, rng):
    """out sharing memory with x in a shifted way gives the fresh-out result."""
    buf = make_array((9, 6, 7), dtype, rng)
    x, out = SHIFTS[case](buf)
    w, b = random_params((6,), dtype, rng, True, True)
    want = fn.group_norm(x.copy(), 3, w, b)
    got = fn.group_norm(x, 3, w, b, out=out)
    assert got is out
    assert np.array_equal(out, want)


def test_out_overlapping_parameters(isa, dtype, rng):
    """out=x where weight and bias are views into x: read before overwritten."""
    x = make_array((3, 6, 6), dtype, rng)
    w, b = x[1, 2], x[2, 4]
    want = fn.group_norm(x.copy(), 2, w.copy(), b.copy())
    got = fn.group_norm(x, 2, w, b, out=x)
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------
# Backward against the reference and finite differences
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", CASES, ids=CASE_IDS)
def test_group_norm_backward_matches_reference(isa, dtype, shape, axis, rng):
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    C = shape[axis]
    others = channel_others(shape, axis)
    for (weight, bias), G in itertools.product(AFFINE, _groups(C)):
        w, b = random_params((C,), dtype, rng, weight, bias)
        what = f"G={G} weight={weight} bias={bias}"
        _, mean, rstd = fn.group_norm(x, G, w, b, axis=axis, return_stats=True)
        dx, dw, db = fn.group_norm_backward(dy, x, mean, rstd, w, b, axis=axis)
        dxe, dwe, dbe = ref.group_norm_backward(dy, x, mean, rstd, w, axis=axis)
        assert dx.shape == shape and dx.dtype == dtype, what
        assert_close(dx, dxe, dtype, factor=4, scale=_dx_scale(dy, w, rstd, axis),
                     what="dx " + what)
        if weight:
            assert dw.shape == (C,) and dw.dtype == dtype, what
            xh = _xhat_gn(x, G, axis)
            assert_close(dw, dwe, dtype, factor=4,
                         scale=sum_scale(dy.astype(np.float64) * xh, others),
                         what="dweight " + what)
        else:
            assert dw is None, what
        if bias:
            assert db.shape == (C,) and db.dtype == dtype, what
            assert_close(db, dbe, dtype, factor=4, scale=sum_scale(dy, others),
                         what="dbias " + what)
        else:
            assert db is None, what


FD_CASES = [
    ((2, 4, 3), 1, 2),
    ((2, 3, 4), -1, 2),
    ((3, 4), 1, 2),
    ((2, 2, 2, 3), 1, 1),
    ((2, 2, 2, 2, 2), -1, 2),
    ((2, 3, 3), 1, 3),
]


@pytest.mark.parametrize("shape,axis,G", FD_CASES, ids=[f"{s}-ax{a}-G{g}" for s, a, g in FD_CASES])
def test_group_norm_gradients_match_finite_differences(isa, shape, axis, G, rng):
    x = make_array(shape, np.float64, rng)
    C = shape[axis]
    w, b = random_params((C,), np.float64, rng, True, True)
    r = rng.standard_normal(shape)

    def loss(x_, w_, b_):
        return float(np.sum(fn.group_norm(x_, G, w_, b_, axis=axis, eps=1e-3) * r))

    _, mean, rstd = fn.group_norm(x, G, w, b, axis=axis, eps=1e-3, return_stats=True)
    dx, dw, db = fn.group_norm_backward(r, x, mean, rstd, w, b, axis=axis)
    assert_grads_fd(loss, (x, w, b), (dx, dw, db), ("dx", "dweight", "dbias"))


def test_instance_norm_gradients_match_finite_differences(isa, rng):
    shape = (2, 3, 4)
    x = make_array(shape, np.float64, rng)
    w, b = random_params((3,), np.float64, rng, True, True)
    r = rng.standard_normal(shape)

    def loss(x_, w_, b_):
        return float(np.sum(fn.instance_norm(x_, w_, b_) * r))

    _, mean, rstd = fn.instance_norm(x, w, b, return_stats=True)
    assert mean.shape == (2, 3)
    dx, dw, db = fn.instance_norm_backward(r, x, mean, rstd, w, b)
    assert_grads_fd(loss, (x, w, b), (dx, dw, db), ("dx", "dweight", "dbias"))


def test_parameter_gradients_are_none_without_parameters(isa, dtype, rng):
    x = make_array((2, 4, 3), dtype, rng)
    dy = make_array((2, 4, 3), dtype, rng)
    w, b = random_params((4,), dtype, rng, True, True)
    _, m, r = fn.group_norm(x, 2, return_stats=True)
    assert fn.group_norm_backward(dy, x, m, r)[1:] == (None, None)
    dx_w, dw, db = fn.group_norm_backward(dy, x, m, r, w)
    assert dw is not None and db is None
    dx_b, dw, db = fn.group_norm_backward(dy, x, m, r, None, b)
    assert dw is None and db is not None
    assert_close(db, dy.astype(np.float64).sum(axis=(0, 2)), dtype, scale=2 * 3 * 4)
    # bias does not change dx; weight does
    assert np.array_equal(dx_b, fn.group_norm_backward(dy, x, m, r)[0])
    assert not np.allclose(dx_w, dx_b)
    _, mi, ri = fn.instance_norm(x, return_stats=True)
    assert fn.instance_norm_backward(dy, x, mi, ri)[1:] == (None, None)
    _, dw, db = fn.instance_norm_backward(dy, x, mi, ri, w, b)
    assert dw.shape == (4,) and db.shape == (4,)


def test_backward_with_reference_statistics(isa, dtype, rng):
    """The backward works from the exact (float64) statistics as well."""
    x = make_array((3, 6, 10), dtype, rng)
    dy = make_array((3, 6, 10), dtype, rng)
    w, _ = random_params((6,), dtype, rng, True, False)
    _, me, re = ref.group_norm(x, 3)
    dx, dw, db = fn.group_norm_backward(dy, x, me, re, w, w)
    dxe, dwe, dbe = ref.group_norm_backward(dy, x, me, re, w)
    assert_close(dx, dxe, dtype, factor=4)
    assert_close(dw, dwe, dtype, factor=4, scale=30 * 4)
    assert_close(db, dbe, dtype, factor=4, scale=30 * 4)


# --------------------------------------------------------------------------
# InstanceNorm: statistics, running statistics, eval mode
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((3, 4, 5, 2), 1), ((3, 5, 2, 4), -1), ((2, 4, 7), 1),
                                        ((2, 3, 2, 2, 4), -1)],
                         ids=["nchw", "nhwc", "ncl", "5d-last"])
@pytest.mark.parametrize("weight,bias", [(False, False), (True, True)], ids=["plain", "affine"])
def test_instance_norm_forward_and_backward(isa, dtype, shape, axis, weight, bias, rng):
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    C = shape[axis]
    w, b = random_params((C,), dtype, rng, weight, bias)
    y, m, r = fn.instance_norm(x, w, b, axis=axis, return_stats=True)
    ye, me, re = ref.instance_norm(x, w, b, axis=axis)
    assert m.shape == (shape[0], C) == r.shape and m.dtype == dtype
    assert_close(y, ye, dtype)
    assert_close(m, me, dtype, scale=np.abs(x).max())
    assert_rel_close(r, re, dtype)
    dx, dw, db = fn.instance_norm_backward(dy, x, m, r, w, b, axis=axis)
    dxe, dwe, dbe = ref.group_norm_backward(dy, x, m, r, w, axis=axis)
    assert_close(dx, dxe, dtype, factor=4)
    if weight:
        assert_close(dw, dwe, dtype, factor=4, scale=np.abs(dy).sum() + 1)
        assert_close(db, dbe, dtype, factor=4, scale=np.abs(dy).sum() + 1)


def _torch_like_update(rm, rv, x, axis, momentum):
    """PyTorch's instance norm update: batch average of the instance means and of
    the unbiased instance variances (factor L/(L-1))."""
    xc = np.moveaxis(np.asarray(x, np.float64), axis, 1)
    N, C = xc.shape[:2]
    flat = xc.reshape(N, C, -1)
    mean = flat.mean(axis=2).mean(axis=0)
    var = flat.var(axis=2, ddof=1).mean(axis=0)
    return ((1 - momentum) * np.asarray(rm, np.float64) + momentum * mean,
            (1 - momentum) * np.asarray(rv, np.float64) + momentum * var)


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0, 0.37])
def test_instance_norm_running_stats_training(isa, dtype, axis, momentum, rng):
    shape = (3, 4, 5, 2) if axis == 1 else (3, 5, 2, 4)
    rm = rng.standard_normal(4).astype(dtype)
    rv = rng.uniform(0.5, 2.0, 4).astype(dtype)
    w, b = random_params((4,), dtype, rng, True, True)
    want_m, want_v = rm.astype(np.float64), rv.astype(np.float64)
    rm_id, rv_id = id(rm), id(rv)
    for step in range(3):
        x = make_array(shape, dtype, rng)
        y, m, r = fn.instance_norm(x, w, b, rm, rv, training=True, momentum=momentum,
                                   axis=axis, return_stats=True)
        # training normalizes with the instance statistics (not the running ones)
        assert m.shape == (3, 4)
        assert_close(y, ref.instance_norm(x, w, b, axis=axis)[0], dtype)
        want_m, want_v = _torch_like_update(want_m, want_v, x, axis, momentum)
        assert rm.dtype == dtype and rv.dtype == dtype
        assert_close(rm, want_m, dtype, factor=2, what=f"running_mean step {step}")
        assert_close(rv, want_v, dtype, factor=2, what=f"running_var step {step}")
    assert id(rm) == rm_id and id(rv) == rv_id
    if momentum == 0.0:
        assert np.array_equal(rm, want_m.astype(dtype))


@pytest.mark.parametrize("axis", [1, -1])
def test_instance_norm_eval_uses_running_stats(isa, dtype, axis, rng):
    shape = (3, 4, 5, 2) if axis == 1 else (3, 5, 2, 4)
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    rm = rng.standard_normal(4).astype(dtype)
    rv = rng.uniform(0.5, 2.0, 4).astype(dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    w, b = random_params((4,), dtype, rng, True, True)
    y, m, r = fn.instance_norm(x, w, b, rm, rv, training=False, axis=axis, return_stats=True)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)  # eval leaves them alone
    assert m.shape == (4,) == r.shape and m.dtype == dtype and r.dtype == dtype
    ye, me, re, _, _ = ref.batch_norm(x, rm, rv, w, b, training=False, axis=axis)
    assert_close(y, ye, dtype)
    assert_close(m, me, dtype)
    assert_rel_close(r, re, dtype)
    # backward from (C,) statistics: dx = dy * w * rstd
    dx, dw, db = fn.instance_norm_backward(dy, x, m, r, w, b, axis=axis)
    shp = [1] * len(shape)
    shp[axis] = 4
    assert_close(dx, dy.astype(np.float64) * (w.astype(np.float64) * re).reshape(shp), dtype)
    dxe, dwe, dbe = ref.batch_norm_backward(dy, x, m, r, w, training=False, axis=axis)
    assert_close(dx, dxe, dtype)
    others = channel_others(shape, axis)
    assert_close(dw, dwe, dtype, factor=4, scale=sum_scale(dy * ((x - rm.reshape(shp)) *
                                                                 r.reshape(shp)), others))
    assert_close(db, dbe, dtype, factor=4, scale=sum_scale(dy, others))
    assert fn.instance_norm_backward(dy, x, m, r, axis=axis)[1:] == (None, None)


def test_instance_norm_eval_without_running_stats_uses_input(isa, dtype, rng):
    x = make_array((2, 3, 6), dtype, rng)
    y, m, r = fn.instance_norm(x, training=False, return_stats=True)
    assert m.shape == (2, 3)
    assert np.array_equal(y, fn.instance_norm(x, training=True))


# --------------------------------------------------------------------------
# Adversarial inputs (docs/numerics.md §11)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis,G", [((4, 8, 5, 7), 1, 2), ((4, 5, 7, 8), -1, 4),
                                          ((3, 16, 100), 1, 4), ((3, 100, 16), -1, 16),
                                          ((64, 32), 1, 1)],
                         ids=["nchw", "nhwc", "ncl", "nlc", "2d"])
def test_large_mean_float32(isa, shape, axis, G, rng):
    for offset in (1e4, 1e5, 1e6):
        _check_large_mean(offset, shape, axis, G, rng)


def _check_large_mean(offset, shape, axis, G, rng):
    x = (offset + rng.standard_normal(shape)).astype(np.float32)
    C = shape[axis]
    w, b = random_params((C,), np.float32, rng, True, True)
    y, mean, rstd = fn.group_norm(x, G, w, b, axis=axis, return_stats=True)
    ye, me, re = ref.group_norm(x, G, w, b, axis=axis)  # float64 on the same inputs
    assert np.all(np.isfinite(y))
    assert_close(y, ye, np.float32, factor=2, what=f"y, mean {offset:g}")
    # the stored mean is within an ulp of the exact one
    assert np.all(np.abs(mean - me) <= np.spacing(np.float32(offset)))
    assert_rel_close(rstd, re, np.float32, factor=2)
    dy = rng.standard_normal(shape).astype(np.float32)
    dx, dw, db = fn.group_norm_backward(dy, x, mean, rstd, w, b, axis=axis)
    _, me0, re0 = ref.group_norm(x, G, axis=axis)
    dxe, dwe, _ = ref.group_norm_backward(dy, x, me0, re0, w, axis=axis)  # exact statistics
    assert_rel_close(dx, dxe, np.float32, factor=10, what="dx")
    scale = sum_scale(dy.astype(np.float64) * _xhat_gn(x, G, axis), channel_others(shape, axis))
    assert np.max(np.abs(dw - dwe)) <= 1e-4 * scale
    # instance norm too
    if len(shape) > 2:
        yi = fn.instance_norm(x, w, b, axis=axis)
        assert_close(yi, ref.instance_norm(x, w, b, axis=axis)[0], np.float32, factor=2)


@pytest.mark.parametrize("axis", [1, -1])
def test_constant_groups(isa, dtype, axis, rng):
    for value in (1234.0, 0.1, -3.3e5, 1e6):
        _check_constant_group(dtype, value, axis, rng)


def _check_constant_group(dtype, value, axis, rng):
    shape = (3, 6, 7) if axis == 1 else (3, 7, 6)
    x = make_array(shape, dtype, rng)
    sl = [slice(None)] * 3
    sl[0], sl[axis] = 1, slice(2, 4)  # group 1 of sample 1
    x[tuple(sl)] = value
    w, b = random_params((6,), dtype, rng, True, True)
    y, mean, rstd = fn.group_norm(x, 3, w, b, axis=axis, return_stats=True)
    assert np.all(np.isfinite(y))
    ye = ref.group_norm(x, 3, w, b, axis=axis)[0]
    assert_close(y, ye, dtype)
    bias_b = np.broadcast_to(b.reshape((6, 1) if axis == 1 else (6,)), y[1].shape)
    assert_close(y[tuple(sl)], bias_b[tuple(sl[1:])], dtype, scale=1.0)  # y = bias there
    assert_close(mean[1, 1], np.float64(dtype.type(value)), dtype, scale=abs(value))
    assert_rel_close(rstd[1, 1], 1 / np.sqrt(1e-5), dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw, db = fn.group_norm_backward(dy, x, mean, rstd, w, b, axis=axis)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw))
    dxe, dwe, dbe = ref.group_norm_backward(dy, x, mean, rstd, w, axis=axis)
    assert_close(dx, dxe, dtype, factor=4, scale=np.abs(dxe).max())
    assert_close(dw, dwe, dtype, factor=4, scale=3 * 7 * 4)
    # an entirely constant input: y == bias
    xc = np.full(shape, value, dtype)
    assert_close(fn.group_norm(xc, 3, w, b, axis=axis), np.broadcast_to(
        b.reshape((6, 1) if axis == 1 else (6,)), shape), dtype, scale=1.0)
    assert_close(fn.instance_norm(xc, axis=axis), np.zeros(shape), dtype, scale=1.0)


@pytest.mark.parametrize("magnitude", [1e30, 1e-30])
@pytest.mark.parametrize("centered", [True, False], ids=["offset", "zero-mean"])
@pytest.mark.parametrize("shape,axis", [((3, 16, 100), 1), ((3, 100, 16), -1)],
                         ids=["ncl", "nlc"])
def test_extreme_magnitudes_float32(isa, magnitude, centered, shape, axis, rng):
    for eps in (1e-5, 0.0):
        _check_extreme(magnitude, centered, eps, shape, axis, rng)


def _check_extreme(magnitude, centered, eps, shape, axis, rng):
    z = rng.standard_normal(shape)
    x = (magnitude * ((1 + 0.25 * z) if centered else z)).astype(np.float32)
    assert np.all(np.isfinite(x)) and np.all(x != 0)
    y, mean, rstd = fn.group_norm(x, 4, axis=axis, eps=eps, return_stats=True)
    ye, me, re = ref.group_norm(x, 4, axis=axis, eps=eps)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(mean)) and np.all(np.isfinite(rstd))
    assert_close(y, ye, np.float32, factor=2)
    assert_rel_close(rstd, re, np.float32, factor=2)
    dy = rng.standard_normal(shape).astype(np.float32)
    w = np.ones(shape[axis], np.float32)
    dx, dw, db = fn.group_norm_backward(dy, x, mean, rstd, w, w, axis=axis)
    dxe, dwe, _ = ref.group_norm_backward(dy, x, me, re, w, axis=axis)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw)) and np.all(np.isfinite(db))
    assert_rel_close(dx, dxe, np.float32, factor=10, what="dx")
    assert_close(dw, dwe, np.float32, factor=10, scale=np.abs(dy).sum(), what="dweight")


@pytest.mark.parametrize("magnitude,shape,axis", [(1e36, (2, 4, 1000), 1),
                                                  (3e37, (2, 64, 4), -1)],
                         ids=["nchw-1e36", "nlc-3e37"])
def test_huge_values_backward_does_not_overflow_float32(magnitude, shape, axis, rng):
    x = (magnitude * rng.standard_normal(shape)).astype(np.float32)
    dy = np.sign(x).astype(np.float32)
    w = np.ones(4, np.float32)
    y, mean, rstd = fn.group_norm(x, 4, axis=axis, return_stats=True)
    assert np.all(np.isfinite(y))
    dx, dw, db = fn.group_norm_backward(dy, x, mean, rstd, w, axis=axis)
    _, me, re = ref.group_norm(x, 4, axis=axis)
    dxe, dwe, _ = ref.group_norm_backward(dy, x, me, re, w, axis=axis)
    assert np.all(np.isfinite(dw)), f"dweight {dw} (expected {dwe})"
    assert np.all(np.isfinite(dx))
    assert_close(dw, dwe, np.float32, factor=10, scale=np.abs(dy).sum())
    assert_rel_close(dx, dxe, np.float32, factor=10)


@pytest.mark.parametrize("axis", [1, -1])
def test_non_finite_value_stays_in_its_group(isa, dtype, axis, rng):
    for bad in (np.nan, np.inf, -np.inf):
        _check_non_finite(dtype, bad, axis, rng)


def _check_non_finite(dtype, bad, axis, rng):
    shape = (3, 6, 7) if axis == 1 else (3, 7, 6)
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng)
    w, b = random_params((6,), dtype, rng, True, True)
    y0, m0, r0 = fn.group_norm(x, 3, w, b, axis=axis, return_stats=True)
    dx0, dw0, db0 = fn.group_norm_backward(dy, x, m0, r0, w, b, axis=axis)
    xb = x.copy()
    idx = (1, 2, 3) if axis == 1 else (1, 3, 2)  # sample 1, channel 2: group 1
    xb[idx] = bad
    bad_group = np.zeros(shape, bool)
    sl = [slice(None)] * 3
    sl[0], sl[axis] = 1, slice(2, 4)
    bad_group[tuple(sl)] = True
    y, m, r = fn.group_norm(xb, 3, w, b, axis=axis, return_stats=True)
    assert np.all(np.isnan(y[bad_group])), "the bad group becomes NaN (as in PyTorch)"
    assert np.array_equal(y[~bad_group], y0[~bad_group])
    keep = np.ones((3, 3), bool)
    keep[1, 1] = False
    assert np.array_equal(m[keep], m0[keep]) and np.array_equal(r[keep], r0[keep])
    dx, dw, db = fn.group_norm_backward(dy, xb, m, r, w, b, axis=axis)
    assert not np.any(np.isfinite(dx[bad_group]))
    assert np.array_equal(dx[~bad_group], dx0[~bad_group])
    # dweight of the bad group's channels is poisoned, the others are not
    assert np.array_equal(dw[[0, 1, 4, 5]], dw0[[0, 1, 4, 5]])
    assert np.array_equal(db, db0)
    # instance norm: only that (sample, channel)
    yi0 = fn.instance_norm(x, w, b, axis=axis)
    yi = fn.instance_norm(xb, w, b, axis=axis)
    inst = np.zeros(shape, bool)
    sl[axis] = 2
    inst[tuple(sl)] = True
    assert np.all(np.isnan(yi[inst]))
    assert np.array_equal(yi[~inst], yi0[~inst])


ZERO_SIZE = [
    ((0, 4, 3), 1), ((0, 3, 4), -1), ((2, 4, 0), 1), ((2, 0, 4), -1), ((0, 4), 1),
    ((2, 4, 0, 3), 1),
]


@pytest.mark.parametrize("shape,axis", ZERO_SIZE, ids=[f"{s}-ax{a}" for s, a in ZERO_SIZE])
def test_group_norm_zero_size(isa, dtype, shape, axis):
    x = np.zeros(shape, dtype)
    w, b = np.ones(4, dtype), np.zeros(4, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y, mean, rstd = fn.group_norm(x, 2, w, b, axis=axis, return_stats=True)
        assert y.shape == shape and y.dtype == dtype
        assert mean.shape == (shape[0], 2) == rstd.shape
        if shape[0]:
            assert np.all(np.isnan(mean)) and np.all(np.isnan(rstd))  # empty groups
        out = np.empty_like(x)
        assert fn.group_norm(x, 2, axis=axis, out=out) is out
        dx, dw, db = fn.group_norm_backward(np.zeros_like(x), x, mean, rstd, w, b, axis=axis)
    assert dx.shape == shape
    assert np.array_equal(dw, np.zeros(4)) and np.array_equal(db, np.zeros(4))


@pytest.mark.parametrize("shape,axis", [((0, 4, 3), 1), ((0, 3, 4), -1)],
                         ids=["N0-nchw", "N0-nhwc"])
def test_instance_norm_zero_batch(isa, dtype, shape, axis):
    x = np.zeros(shape, dtype)
    y, m, r = fn.instance_norm(x, axis=axis, return_stats=True)
    assert y.shape == shape and m.shape == (0, 4)
    rm, rv = np.zeros(4, dtype), np.ones(4, dtype)
    y = fn.instance_norm(x, None, None, rm, rv, training=False, axis=axis)
    assert y.shape == shape


@pytest.mark.parametrize("shape", [(2, 0, 3), (2, 4, 0)], ids=["C0", "L0"])
def test_instance_norm_zero_size_channels_or_spatial(shape):
    x = np.zeros(shape, np.float32)
    y = fn.instance_norm(x)
    assert y.shape == shape


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------

def _x(shape=(2, 4, 3), dtype=np.float32):
    return make_array(shape, dtype, np.random.default_rng(0))


def test_num_groups_must_divide_channels():
    x = _x()
    with pytest.raises(ValueError, match="num_groups"):
        fn.group_norm(x, 3)
    with pytest.raises(ValueError, match="num_groups"):
        fn.group_norm(x, 8)
    with pytest.raises(ValueError, match="num_groups"):
        fn.group_norm(x, 0)
    with pytest.raises(ValueError, match="num_groups"):
        fn.group_norm(x, -2)
    for bad in (2.0, "2", None, True, np.float64(2.0)):
        with pytest.raises(TypeError, match="num_groups"):
            fn.group_norm(x, bad)
    # numpy integers are ints
    assert np.array_equal(fn.group_norm(x, np.int64(2)), fn.group_norm(x, 2))


@pytest.mark.parametrize("func", ["group_norm", "instance_norm"])
def test_bad_arguments(func):
    x = _x()
    call = ((lambda *a, **k: fn.group_norm(a[0], 2, *a[1:], **k)) if func == "group_norm"
            else fn.instance_norm)
    with pytest.raises(ValueError, match="weight"):
        call(x, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="weight"):
        call(x, np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match="bias"):
        call(x, None, np.ones(5, np.float32))
    with pytest.raises(TypeError, match="weight"):
        call(x, np.ones(4, np.int64))
    with pytest.raises(TypeError, match="x"):
        call(np.ones((2, 4, 3), np.int64))
    with pytest.raises(TypeError, match="x"):
        call(np.ones((2, 4, 3), np.longdouble))
    # the message shows x's shape
    with pytest.raises(ValueError, match=re.escape(
            f"axis is the channel axis and cannot be the batch axis 0 (x has shape {x.shape})")):
        call(x, axis=0)
    with pytest.raises(ValueError, match="axis"):
        call(x, axis=-3)
    with pytest.raises(np.exceptions.AxisError):
        call(x, axis=3)
    with pytest.raises(TypeError, match="axis"):
        call(x, axis=(1,))
    with pytest.raises(ValueError):
        call(np.ones(4, np.float32))
    with pytest.raises(ValueError, match="eps"):
        call(x, eps=-1.0)
    with pytest.raises(TypeError, match="eps"):
        call(x, eps=None)
    if func == "instance_norm":  # one value per (sample, channel): no statistics to train on
        with pytest.raises(ValueError, match=re.escape(
                "x must have more than 1 spatial element per channel when training, "
                "got shape (2, 4, 1)")):
            call(np.ones((2, 4, 1), np.float32), training=True)


@pytest.mark.parametrize("func", ["group_norm", "instance_norm"])
def test_out_is_not_modified_on_error(func):
    x = _x()
    call = ((lambda *a, **k: fn.group_norm(a[0], 2, *a[1:], **k)) if func == "group_norm"
            else fn.instance_norm)
    bad_calls = [
        lambda out: call(x, np.ones(3, np.float32), out=out),
        lambda out: call(x, eps=-1.0, out=out),
        lambda out: call(x, axis=0, out=out),
        lambda out: call(x, num_threads="two", out=out),
    ]
    if func == "group_norm":
        bad_calls.append(lambda out: fn.group_norm(x, 3, out=out))
    else:
        bad_calls.append(lambda out: fn.instance_norm(x, None, None, np.zeros(4, np.float32),
                                                      None, out=out))
        bad_calls.append(lambda out: fn.instance_norm(x, None, None, np.zeros(3, np.float32),
                                                      np.ones(3, np.float32), out=out))
    for i, bad in enumerate(bad_calls):
        out = np.full_like(x, 7.0)
        with pytest.raises((ValueError, TypeError)):
            bad(out)
        assert np.all(out == 7.0), f"call {i} wrote to out"
    # bad out itself
    with pytest.raises(ValueError, match="out"):
        call(x, out=np.empty((2, 4, 4), np.float32))
    with pytest.raises(TypeError, match="out"):
        call(x, out=np.empty((2, 4, 3), np.float64))
    with pytest.raises(TypeError, match="out"):
        call(x, out=np.empty((2, 4, 3), np.dtype(np.float32).newbyteorder()))
    ro = np.zeros_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        call(x, out=ro)
    assert np.all(ro == 0)


def test_instance_norm_running_stats_errors_leave_them_untouched():
    x = _x()
    rm, rv = np.full(4, 0.5, np.float32), np.full(4, 2.0, np.float32)
    assert_refused_untouched(lambda **kw: fn.instance_norm(x, running_mean=rm, running_var=rv,
                                                           **kw),
                             running_stats_bad_kwargs(x, 3), [rm, rv])
    assert np.all(rm == 0.5) and np.all(rv == 2.0)
    with pytest.raises(ValueError, match="running_var"):
        fn.instance_norm(x, None, None, rm, np.ones(3, np.float32))
    with pytest.raises(TypeError, match="running_mean"):
        fn.instance_norm(x, None, None, rm.astype(np.float16), rv)
    with pytest.raises(ValueError, match="spatial"):
        fn.instance_norm(np.ones((2, 4, 1), np.float32), None, None, rm, rv)
    assert np.all(rm == 0.5) and np.all(rv == 2.0)


def test_backward_bad_arguments():
    x = _x()
    dy = np.ones_like(x)
    _, m, r = fn.group_norm(x, 2, return_stats=True)
    with pytest.raises(ValueError, match="mean"):
        fn.group_norm_backward(dy, x, m[:1], r[:1])
    with pytest.raises(ValueError, match="mean"):
        fn.group_norm_backward(dy, x, m.ravel(), r.ravel())
    with pytest.raises(ValueError, match="num_groups"):
        fn.group_norm_backward(dy, x, np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="rstd"):
        fn.group_norm_backward(dy, x, m, r[:, :1])
    with pytest.raises(ValueError, match="dy"):
        fn.group_norm_backward(dy[:1], x, m, r)
    with pytest.raises(TypeError, match="dy"):
        fn.group_norm_backward(dy.astype(np.float64), x, m, r)
    with pytest.raises(ValueError, match="weight"):
        fn.group_norm_backward(dy, x, m, r, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="bias"):
        fn.group_norm_backward(dy, x, m, r, None, np.ones(3, np.float32))
    with pytest.raises(ValueError, match="mean"):
        fn.instance_norm_backward(dy, x, np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="mean"):
        fn.instance_norm_backward(dy, x, np.zeros(3, np.float32), np.ones(3, np.float32))


# --------------------------------------------------------------------------
# One path: the common call and its other spellings
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 6), (3, 6, 5), (2, 6, 4, 3), (1, 6, 1, 1)])
@pytest.mark.parametrize("G", [1, 2, 6])
@pytest.mark.parametrize("affine", AFFINE)
def test_common_call_and_its_other_spellings_agree(isa, dtype, shape, G, affine, rng):
    """The common call gives the bits of the same call spelt otherwise (a
    NumPy integer axis and group count), writes out in place (x itself too),
    and an out holding the weight reads the weight as it was."""
    x = make_array(shape, dtype, rng)
    w, b = random_params((6,), dtype, rng, *affine)
    for rs in (False, True):
        got = fn.group_norm(x, G, w, b, return_stats=rs)
        want = fn.group_norm(x, np.int64(G), w, b, axis=np.int64(1), return_stats=rs)
        for g, e in zip(got if rs else (got,), want if rs else (want,)):
            assert g.dtype == e.dtype and np.array_equal(g, e, equal_nan=True)
    want = fn.group_norm(x, G, w, b)
    out = np.empty_like(x)
    assert fn.group_norm(x, G, w, b, out=out) is out
    assert np.array_equal(out, want, equal_nan=True)
    xc = x.copy()
    assert fn.group_norm(xc, G, w, b, out=xc) is xc
    assert np.array_equal(xc, want, equal_nan=True)
    if w is not None:  # an out holding the weight: the result of a separate weight
        big = np.zeros(x.size + 6, x.dtype)
        out = big[6:].reshape(x.shape)
        big[6:12] = w
        wv = big[6:12]
        assert fn.group_norm(x, G, wv, b, out=out) is out
        assert np.array_equal(out, want, equal_nan=True)


def test_other_layouts_give_the_bits_of_the_common_call(rng):
    """Outs, inputs and weights of other layouts, dtypes and types are read
    and written as the common call's arrays."""
    x = make_array((4, 6, 5), np.float32, rng)
    w = rng.standard_normal(6).astype(np.float32)
    want = fn.group_norm(x, 2, w)
    for out in (np.asfortranarray(np.zeros_like(x)), np.zeros_like(x)[:, :, ::-1]):
        assert fn.group_norm(x, 2, w, out=out) is out and np.array_equal(out, want)
    for same_x in (np.asfortranarray(x), x.astype(">f4")):
        assert np.array_equal(fn.group_norm(same_x, 2, w), want)
    assert np.array_equal(fn.group_norm(x[:, :, ::2], 2, w),
                          fn.group_norm(x[:, :, ::2].copy(), 2, w))
    for same_w in (np.ones(12, np.float32)[::2] * 0 + w, w.tolist(), w.astype(">f4")):
        assert np.array_equal(fn.group_norm(x, 2, same_w), want)
    assert np.array_equal(fn.group_norm(x, 2, w, eps=np.float64(1e-5)), want)
    with pytest.raises(ValueError, match="num_threads"):
        fn.group_norm(x, 2, w, num_threads=0)


@pytest.mark.parametrize("shape", [(2, 6, 5), (2, 6, 4, 3), (3, 6, 1, 1)])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("training", [True, False])
def test_instance_norm_common_call_and_its_other_spellings_agree(isa, dtype, shape, affine,
                                                                 training, rng):
    x = make_array(shape, dtype, rng)
    w, b = random_params((6,), dtype, rng, *affine)
    one = int(np.prod(shape[2:])) == 1
    if training and one:
        with pytest.raises(ValueError, match="spatial"):
            fn.instance_norm(x, w, b)
        return
    for rs in (False, True):
        got = fn.instance_norm(x, w, b, training=training, return_stats=rs)
        want = fn.instance_norm(x, w, b, training=np.bool_(training), axis=np.int64(1),
                                return_stats=rs)
        for g, e in zip(got if rs else (got,), want if rs else (want,)):
            assert g.dtype == e.dtype and np.array_equal(g, e, equal_nan=True)
    out = np.empty_like(x)
    assert fn.instance_norm(x, w, b, training=training, out=out) is out
    assert np.array_equal(out, want if not isinstance(want, tuple) else want[0], equal_nan=True)


def test_fast_path_corner_arguments():
    """Arguments the fast path leaves alone behave as in the general path: a
    num_groups beyond any C integer is the general ValueError, a dtype with
    metadata keeps it, and return_stats is asked only after the work (an
    ambiguous one fails after out is written, as the general path does)."""
    x = np.random.default_rng(0).standard_normal((2, 4, 3)).astype(np.float32)
    for G in (2**64, -2**70):
        with pytest.raises(ValueError, match="num_groups"):
            fn.group_norm(x, G)
    dt = np.dtype(np.float32, metadata={"unit": "m"})
    xm = x.astype(dt)
    for y in (fn.group_norm(xm, 2, return_stats=True)[0], fn.instance_norm(xm)):
        assert y.dtype.metadata == {"unit": "m"}
    out = np.zeros_like(x)
    with pytest.raises(ValueError):
        fn.group_norm(x, 2, out=out, return_stats=np.array([1, 1]))
    assert np.array_equal(out, fn.group_norm(x, 2))
