"""fastnorm.rms_norm and rms_norm_backward against the float64 reference
(docs/numerics.md §0, §2 and §11), both kernel tables, both dtypes."""
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
    other_axes,
    param_shape,
    random_params,
    run_python,
    stats_shape,
    sum_scale,
)


def _xhat(x, axis):
    return ref.rms_norm(x, axis=axis, eps=0.0)[0]


# --------------------------------------------------------------------------
# Forward and backward against the reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("weight", [False, True], ids=["noweight", "weight"])
def test_forward_matches_reference(isa, dtype, weight, layout):
    rng = np.random.default_rng(21)
    checked = 0
    for label, _, x in array_cases(dtype, seed=3, layouts=[layout]):
        for axis in axis_choices(x.ndim):
            what = f"{label} axis={axis}"
            w, _ = random_params(param_shape(x.shape, axis), dtype, rng, weight, False)
            y, rstd = fn.rms_norm(x, w, axis=axis, return_stats=True)
            ye, re = ref.rms_norm(x, w, axis=axis)
            assert y.dtype == dtype and y.shape == x.shape, what
            assert rstd.dtype == dtype and rstd.shape == stats_shape(x.shape, axis), what
            assert_close(y, ye, dtype, what="y " + what)
            assert_rel_close(rstd, re, dtype, what="rstd " + what)
            assert np.array_equal(fn.rms_norm(x, w, axis=axis), y), what
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("weight", [False, True], ids=["noweight", "weight"])
def test_backward_matches_reference(isa, dtype, weight, layout):
    rng = np.random.default_rng(22)
    for label, layout_fn, x in array_cases(dtype, seed=4, layouts=[layout]):
        dy = layout_fn(make_array(x.shape, dtype, rng, loc=0.0, scale=1.0))
        for axis in axis_choices(x.ndim):
            what = f"{label} axis={axis}"
            pshape = param_shape(x.shape, axis)
            w, _ = random_params(pshape, dtype, rng, weight, False)
            _, rstd = fn.rms_norm(x, w, axis=axis, return_stats=True)
            dx, dw = fn.rms_norm_backward(dy, x, rstd, w, axis=axis)
            dxe, dwe = ref.rms_norm_backward(dy, x, rstd, w, axis=axis)
            assert dx.shape == x.shape and dx.dtype == dtype, what
            assert dw.shape == pshape and dw.dtype == dtype, what
            assert_close(dx, dxe, dtype, factor=4, what="dx " + what)
            others = other_axes(axis, x.ndim)
            xh = x.astype(np.float64) * np.expand_dims(rstd.astype(np.float64),
                                                        tuple(a for a in range(x.ndim)
                                                              if a not in others))
            assert_close(dw, dwe, dtype, factor=4,
                         scale=sum_scale(dy.astype(np.float64) * xh, others),
                         what="dweight " + what)


@pytest.mark.parametrize("layout", [name for name in LAYOUTS if name != "C"])
def test_layouts_give_identical_bits(isa, dtype, layout):
    rng = np.random.default_rng(23)
    for shape in [(5, 17), (4, 3, 9), (2, 3, 4, 5)]:
        base = make_array(shape, dtype, rng)
        dy0 = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        for axis in axis_choices(len(shape)):
            w, _ = random_params(param_shape(shape, axis), dtype, rng, True, False)
            y0, r0 = fn.rms_norm(base, w, axis=axis, return_stats=True)
            g0 = fn.rms_norm_backward(dy0, base, r0, w, axis=axis)
            what = f"{shape} axis={axis} layout={layout}"
            x, dy = LAYOUTS[layout](base), LAYOUTS[layout](dy0)
            y, r = fn.rms_norm(x, w, axis=axis, return_stats=True)
            assert np.array_equal(y, y0) and np.array_equal(r, r0), what
            g = fn.rms_norm_backward(dy, x, r, w, axis=axis)
            for got, want, nm in zip(g, g0, ("dx", "dweight")):
                assert np.array_equal(got, want), f"{nm} {what}"


def test_default_eps_is_machine_epsilon(isa, dtype, rng):
    x = make_array((4, 9), dtype, rng) * 1e-4  # small, so that eps matters
    y, rstd = fn.rms_norm(x, return_stats=True)
    eps = float(np.finfo(dtype).eps)
    ye, re = ref.rms_norm(x, eps=eps)
    assert_rel_close(rstd, re, dtype)
    assert np.array_equal(fn.rms_norm(x, eps=None), y)
    assert np.array_equal(fn.rms_norm(x, eps=eps), y)
    # and an explicit eps is used as given, inside the square root
    for e in (0.0, 1e-6, 0.5):
        y2, r2 = fn.rms_norm(x, eps=e, return_stats=True)
        assert_rel_close(r2, ref.rms_norm(x, eps=e)[1], dtype)
        assert_close(y2, ref.rms_norm(x, eps=e)[0], dtype)


def test_no_centering(isa, dtype, rng):
    """RMSNorm does not subtract the mean: a shifted row gives a different result."""
    x = make_array((3, 16), dtype, rng, loc=5.0, scale=1.0)
    y = fn.rms_norm(x)
    assert np.all(y > 0)
    assert_close(y, x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1,
                                        keepdims=True) + np.finfo(dtype).eps), dtype)


# --------------------------------------------------------------------------
# Finite differences (float64)
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
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_gradients_match_finite_differences(isa, shape, axis, eps, rng):
    x = make_array(shape, np.float64, rng)
    w, _ = random_params(param_shape(shape, axis), np.float64, rng, True, False)
    r = rng.standard_normal(shape)

    def loss(x_, w_):
        return float(np.sum(fn.rms_norm(x_, w_, axis=axis, eps=eps) * r))

    _, rstd = fn.rms_norm(x, w, axis=axis, eps=eps, return_stats=True)
    dx, dw = fn.rms_norm_backward(r, x, rstd, w, axis=axis)
    ndx = numeric_grad(lambda v: loss(v, w), x)
    ndw = numeric_grad(lambda v: loss(x, v), w)
    for got, want, nm in ((dx, ndx, "dx"), (dw, ndw, "dweight")):
        err = np.max(np.abs(got - want))
        assert err <= 1e-7 * max(1.0, np.max(np.abs(want))), f"{nm}: {err:.3e}"


def test_parameter_gradient_without_weight(isa, rng):
    x = make_array((4, 6), np.float64, rng)
    r = rng.standard_normal((4, 6))
    _, rstd = fn.rms_norm(x, return_stats=True)
    dx, dw = fn.rms_norm_backward(r, x, rstd)
    ndw = numeric_grad(lambda v: float(np.sum(fn.rms_norm(x, v) * r)), np.ones(6))
    assert np.max(np.abs(dw - ndw)) < 1e-7
    ndx = numeric_grad(lambda v: float(np.sum(fn.rms_norm(v) * r)), x)
    assert np.max(np.abs(dx - ndx)) < 1e-7


# --------------------------------------------------------------------------
# Adversarial inputs (docs/numerics.md §11)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6])
@pytest.mark.parametrize("n", [37, 768, 1000])
def test_large_mean_float32(isa, offset, n, rng):
    x = (offset + rng.standard_normal((32, n))).astype(np.float32)
    y, rstd = fn.rms_norm(x, return_stats=True)
    ye, re = ref.rms_norm(x)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y - ye)) <= 1e-5
    assert_rel_close(rstd, re, np.float32, factor=2)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = (1 + 0.5 * rng.standard_normal(n)).astype(np.float32)
    _, rstd = fn.rms_norm(x, w, return_stats=True)
    dx, dw = fn.rms_norm_backward(dy, x, rstd, w)
    dxe, dwe = ref.rms_norm_backward(dy, x, re, w)
    assert np.max(np.abs(dx - dxe)) <= 1e-4 * np.max(np.abs(dxe))
    assert np.max(np.abs(dw - dwe)) <= 1e-4 * sum_scale(dy * _xhat(x, -1), (0,))


def test_row_40000(isa):
    x = np.array([40000, 40001, 40002, 40003], dtype=np.float32)
    assert_close(fn.rms_norm(x), ref.rms_norm(x)[0], np.float32)


@pytest.mark.parametrize("value", [1234.0, 0.1, -3.3e5, 0.0])
@pytest.mark.parametrize("n", [1, 7, 768])
def test_constant_rows(isa, dtype, value, n, rng):
    x = np.full((5, n), value, dtype=dtype)
    w = (1 + rng.standard_normal(n)).astype(dtype)
    y, rstd = fn.rms_norm(x, w, return_stats=True)
    ye, re = ref.rms_norm(x, w)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(rstd))
    assert_close(y, ye, dtype)
    assert_rel_close(rstd, re, dtype)
    yp = fn.rms_norm(x)
    assert np.all(yp == yp[:, :1])  # a constant row stays constant
    dy = rng.standard_normal((5, n)).astype(dtype)
    dx, dw = fn.rms_norm_backward(dy, x, rstd, w)
    dxe, dwe = ref.rms_norm_backward(dy, x, rstd, w)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw))
    assert_close(dx, dxe, dtype, factor=4, scale=np.max(np.abs(dxe)))
    assert_close(dw, dwe, dtype, factor=4)


def test_rows_of_length_one(isa, dtype, rng):
    x = make_array((6, 1), dtype, rng)
    w = rng.standard_normal(1).astype(dtype)
    y, rstd = fn.rms_norm(x, w, return_stats=True)
    ye, re = ref.rms_norm(x, w)
    assert_close(y, ye, dtype)
    assert_rel_close(rstd, re, dtype)
    dy = make_array((6, 1), dtype, rng)
    dx, dw = fn.rms_norm_backward(dy, x, rstd, w)
    dxe, dwe = ref.rms_norm_backward(dy, x, rstd, w)
    assert_close(dx, dxe, dtype, factor=4)
    assert_close(dw, dwe, dtype, factor=4)
    x3 = make_array((4, 1, 5), dtype, rng)
    assert_close(fn.rms_norm(x3, axis=1), ref.rms_norm(x3, axis=1)[0], dtype)


@pytest.mark.parametrize("magnitude", [1e-30, 1e30, 1e19, 3e37])
@pytest.mark.parametrize("centered", [True, False], ids=["offset", "zero-mean"])
@pytest.mark.parametrize("eps", [None, 0.0], ids=["eps", "eps0"])
@pytest.mark.parametrize("n", [33, 1024])
def test_extreme_magnitudes_float32(isa, magnitude, centered, eps, n, rng):
    z = rng.standard_normal((8, n))
    x = (magnitude * ((1 + 0.25 * z) if centered else z)).astype(np.float32)
    assert np.all(np.isfinite(x)) and np.all(x != 0)
    y, rstd = fn.rms_norm(x, eps=eps, return_stats=True)
    ye, re = ref.rms_norm(x, eps=eps)
    assert np.all(np.isfinite(y)), "inf/nan in y"
    assert np.all(np.isfinite(rstd))
    assert_close(y, ye, np.float32, factor=2)
    assert_rel_close(rstd, re, np.float32, factor=2)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw = fn.rms_norm_backward(dy, x, rstd)
    dxe, _ = ref.rms_norm_backward(dy, x, re)
    assert_rel_close(dx, dxe, np.float32, factor=10, what="dx")
    assert np.all(np.isfinite(dw))


@pytest.mark.parametrize("magnitude", [1e-300, 1e-150, 1e150, 1e300])
@pytest.mark.parametrize("centered", [True, False], ids=["offset", "zero-mean"])
@pytest.mark.parametrize("eps", [1e-5, 0.0], ids=["eps", "eps0"])
def test_extreme_magnitudes_float64(isa, magnitude, centered, eps, rng):
    z = rng.standard_normal((8, 1024))
    x = magnitude * ((1 + 0.25 * z) if centered else z)
    y = fn.rms_norm(x, eps=eps)
    assert np.all(np.isfinite(y)), "inf/nan in y"
    if eps > 0 and magnitude < 1:
        ye = ref.rms_norm(x, eps=eps)[0]  # squares underflow next to eps: harmless
    else:
        # the plain reference would overflow/underflow: scale invariance,
        # f(x, eps) = f(x / s, eps / s^2)
        ye = ref.rms_norm(x / magnitude, eps=eps / magnitude / magnitude)[0]
    assert_close(y, ye, np.float64, factor=4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_value_stays_in_its_row(isa, dtype, bad, rng):
    x = make_array((6, 40), dtype, rng)
    dy = make_array((6, 40), dtype, rng)
    w, _ = random_params((40,), dtype, rng, True, False)
    y0, r0 = fn.rms_norm(x, w, return_stats=True)
    dx0, _ = fn.rms_norm_backward(dy, x, r0, w)
    xb = x.copy()
    xb[2, 5] = bad
    y, r = fn.rms_norm(xb, w, return_stats=True)
    # as PyTorch and the reference: NaN -> a NaN row; Inf -> rstd 0, NaN where the Inf was
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ye, re = ref.rms_norm(xb, w)
    assert_close(y[2], ye[2], dtype, what="bad row")
    assert not np.all(np.isfinite(y[2]))
    keep = [0, 1, 3, 4, 5]
    assert np.array_equal(y[keep], y0[keep]) and np.array_equal(r[keep], r0[keep])
    dx, _ = fn.rms_norm_backward(dy, xb, r, w)
    assert not np.all(np.isfinite(dx[2]))
    assert np.array_equal(dx[keep], dx0[keep])
    dyb = dy.copy()
    dyb[4, 0] = bad
    dx, dwb = fn.rms_norm_backward(dyb, x, r0, w)
    assert not np.all(np.isfinite(dx[4]))
    keep = [0, 1, 2, 3, 5]
    assert np.array_equal(dx[keep], dx0[keep])
    assert not np.isfinite(dwb[0])


ZERO_SIZE = [
    ((0, 8), -1), ((0, 8), 0), ((4, 0), -1), ((4, 0), 0), ((0,), 0),
    ((2, 0, 3), (0, 2)), ((2, 0, 3), 1), ((3, 4, 0), -1), ((0, 3, 4), (-2, -1)),
]


def _zero_size(shape, dtype, how):
    if how == "new":
        return np.zeros(shape, dtype=dtype)
    full = np.ones(tuple(s if s else 3 for s in shape), dtype=dtype)
    return full[tuple(slice(0, s) for s in shape)]


@pytest.mark.parametrize("how", ["new", "slice"])
@pytest.mark.parametrize("shape,axis", ZERO_SIZE, ids=[f"{s}-{a}" for s, a in ZERO_SIZE])
def test_zero_size(isa, dtype, shape, axis, how):
    x = _zero_size(shape, dtype, how)
    assert x.size == 0
    pshape = param_shape(shape, axis)
    w = np.ones(pshape, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ye, re = ref.rms_norm(x, w, axis=axis)
        y, rstd = fn.rms_norm(x, w, axis=axis, return_stats=True)
        assert y.shape == shape and y.dtype == dtype
        assert rstd.shape == re.shape
        assert_close(rstd, re, dtype, what="rstd")  # NaN for rows with no elements
        out = np.empty_like(x)
        assert fn.rms_norm(x, axis=axis, out=out) is out
        dy = np.zeros_like(x)
        dx, dw = fn.rms_norm_backward(dy, x, rstd, w, axis=axis)
        dxe, dwe = ref.rms_norm_backward(dy, x, re, w, axis=axis)
    assert dx.shape == shape and dw.shape == pshape
    assert np.array_equal(dw, dwe), f"dweight {dw} != {dwe}"


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", [n for n in LAYOUTS if n != "byteswapped"])
def test_out_any_layout(isa, dtype, layout, rng):
    x = make_array((16, 33), dtype, rng)
    w, _ = random_params((33,), dtype, rng, True, False)
    want = fn.rms_norm(x, w)
    out = LAYOUTS[layout](np.zeros_like(x))
    assert fn.rms_norm(x, w, out=out) is out
    assert np.array_equal(out, want)


def test_out_with_stats(isa, dtype, rng):
    x = make_array((6, 5, 4), dtype, rng)
    out = np.zeros((4, 5, 6), dtype).T
    y, rstd = fn.rms_norm(x, axis=(0, 2), out=out, return_stats=True)
    assert y is out
    ye, re = ref.rms_norm(x, axis=(0, 2))
    assert_close(out, ye, dtype)
    assert_rel_close(rstd, re, dtype)


@pytest.mark.parametrize("layout", ["C", "F", "sliced", "negstride", "padded", "unaligned"])
@pytest.mark.parametrize("axis", [-1, 0, (0, 2)])
def test_out_is_x_in_place(isa, dtype, layout, axis, rng):
    base = make_array((4, 6, 9), dtype, rng)
    w, _ = random_params(param_shape(base.shape, axis), dtype, rng, True, False)
    want = fn.rms_norm(base, w, axis=axis)
    x = LAYOUTS[layout](base)
    assert fn.rms_norm(x, w, axis=axis, out=x) is x
    assert np.array_equal(x, want)


SHIFTS = {
    "1d-forward": (lambda buf: (buf[:-1], buf[1:]), (101,)),
    "1d-backward": (lambda buf: (buf[1:], buf[:-1]), (101,)),
    "rows-forward": (lambda buf: (buf[:-1], buf[1:]), (65, 40)),
    "rows-backward": (lambda buf: (buf[1:], buf[:-1]), (65, 40)),
    "cols-forward": (lambda buf: (buf[:, :-1], buf[:, 1:]), (30, 41)),
    "cols-backward": (lambda buf: (buf[:, 1:], buf[:, :-1]), (30, 41)),
    "reversed": (lambda buf: (buf, buf[::-1]), (64, 40)),
}


@pytest.mark.parametrize("case", list(SHIFTS))
def test_out_overlapping_x(isa, dtype, case, rng):
    make, shape = SHIFTS[case]
    buf = make_array(shape, dtype, rng)
    x, out = make(buf)
    w, _ = random_params((x.shape[-1],), dtype, rng, True, False)
    want = fn.rms_norm(x.copy(), w)
    assert fn.rms_norm(x, w, out=out) is out
    assert np.array_equal(out, want)


def test_out_overlapping_weight(isa, dtype, rng):
    x = make_array((8, 32), dtype, rng)
    w = x[3]
    want = fn.rms_norm(x.copy(), w.copy())
    got = fn.rms_norm(x, w, out=x)
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------
# Unaligned arrays
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
    _, r = fn.rms_norm(x, return_stats=True)
    want = fn.rms_norm_backward(dy, x, r)
    got = fn.rms_norm_backward(unaligned(dy), x, r)
    for g, w in zip(got, want):
        assert np.array_equal(g, w), (g, w)
print("ok")
"""


def test_unaligned_dy_in_a_subprocess():
    proc = run_python(UNALIGNED_SCRIPT)
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "ok"


def test_unaligned_x_forward(isa, dtype, rng):
    x = make_array((8, 16), dtype, rng)
    xu = LAYOUTS["unaligned"](x)
    want = fn.rms_norm(x, return_stats=True)
    got = fn.rms_norm(xu, return_stats=True)
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
