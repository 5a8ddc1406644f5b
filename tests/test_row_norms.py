"""What LayerNorm and RMSNorm share, checked once for each (params.ROW_NORMS):
the forward and backward against the float64 reference in every layout and
axis choice (docs/numerics.md §0, §1, §2), finite differences, extreme
magnitudes and non-finite values (§11), zero-size arrays, out= and unaligned
arrays. What only one of them has is in test_layer_norm.py / test_rms_norm.py."""
import warnings

import numpy as np
import pytest

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
    sum_scale,
)
from params import (
    AFFINE,
    AFFINE_IDS,
    IN_PLACE_LAYOUTS,
    NON_C_LAYOUTS,
    OUT_LAYOUTS,
    SHIFTS,
    ZERO_SIZE,
    ZERO_SIZE_IDS,
    assert_fd,
    check_stats,
    row_norm_params,
    zero_size,
)

ALL = row_norm_params()


def _affine(norm):
    """(weight, bias) choices of the normalizer: bias only where it takes one."""
    if norm.has_bias:
        return AFFINE
    return [(False, False), (True, False)]


def _affine_id(values):
    return AFFINE_IDS[AFFINE.index(values)]


# --------------------------------------------------------------------------
# Forward and backward against the reference, every layout and axis choice
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("norm,weight,bias", row_norm_params(_affine, _affine_id))
def test_forward_matches_reference(isa, dtype, norm, weight, bias, layout):
    rng_seed, array_seed = norm.seeds["forward"]
    rng = np.random.default_rng(rng_seed)
    checked = 0
    for label, _, x in array_cases(dtype, seed=array_seed, layouts=[layout]):
        for axis in axis_choices(x.ndim):
            what = f"{label} axis={axis}"
            w, b = random_params(param_shape(x.shape, axis), dtype, rng, weight, bias)
            y, stats = norm(x, w, b, axis=axis, return_stats=True)
            ye, se = norm.ref(x, w, b, axis=axis)
            assert y.dtype == dtype and y.shape == x.shape, what
            assert_close(y, ye, dtype, what="y " + what)
            check_stats(norm.stats, stats, se, x, axis, dtype, what)
            # the same bits without the statistics
            assert np.array_equal(norm(x, w, b, axis=axis), y), what
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("norm", ALL)
def test_backward_matches_reference(isa, dtype, norm, weight, layout):
    rng_seed, array_seed = norm.seeds["backward"]
    rng = np.random.default_rng(rng_seed)
    for label, layout_fn, x in array_cases(dtype, seed=array_seed, layouts=[layout]):
        dy = layout_fn(make_array(x.shape, dtype, rng, loc=0.0, scale=1.0))
        for axis in axis_choices(x.ndim):
            what = f"{label} axis={axis}"
            pshape = param_shape(x.shape, axis)
            w, _ = random_params(pshape, dtype, rng, weight, False)
            _, stats = norm(x, w, axis=axis, return_stats=True)
            grads = norm.backward(dy, x, stats, w, axis=axis)
            want = norm.ref_backward(dy, x, stats, w, axis=axis)
            dx, dxe = grads[0], want[0]
            assert dx.shape == x.shape and dx.dtype == dtype, what
            for g in grads[1:]:
                assert g.shape == pshape and g.dtype == dtype, what
            assert_close(dx, dxe, dtype, factor=4, what="dx " + what)
            others = other_axes(axis, x.ndim)
            scales = {"dweight": sum_scale(dy.astype(np.float64) * norm.xhat(x, axis, stats),
                                           others),
                      "dbias": sum_scale(dy, others)}
            for nm, g, e in zip(norm.grads[1:], grads[1:], want[1:]):
                assert_close(g, e, dtype, factor=4, scale=scales[nm], what=f"{nm} {what}")


@pytest.mark.parametrize("layout", NON_C_LAYOUTS)
@pytest.mark.parametrize("norm", ALL)
def test_layouts_give_identical_bits(isa, dtype, norm, layout):
    """A row's result depends on the row only: every memory layout gives the C layout's bits."""
    rng = np.random.default_rng(norm.seeds["layouts"])
    for shape in [(5, 17), (4, 3, 9), (2, 3, 4, 5)]:
        base = make_array(shape, dtype, rng)
        dy0 = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        for axis in axis_choices(len(shape)):
            w, b = random_params(param_shape(shape, axis), dtype, rng, True, norm.has_bias)
            y0, s0 = norm(base, w, b, axis=axis, return_stats=True)
            g0 = norm.backward(dy0, base, s0, w, axis=axis)
            what = f"{shape} axis={axis} layout={layout}"
            x, dy = LAYOUTS[layout](base), LAYOUTS[layout](dy0)
            y, s = norm(x, w, b, axis=axis, return_stats=True)
            assert np.array_equal(y, y0), what
            for nm, got, want in zip(norm.stats, s, s0):
                assert np.array_equal(got, want), f"{nm} {what}"
            g = norm.backward(dy, x, s, w, axis=axis)
            for got, want, nm in zip(g, g0, norm.grads):
                assert np.array_equal(got, want), f"{nm} {what}"


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


def _fd_eps(norm):
    # RMSNorm's default eps (machine epsilon) and a larger one; LayerNorm's default
    return [None, 1e-3] if norm.name == "rms_norm" else [norm.default_eps]


@pytest.mark.parametrize("shape,axis", FD_CASES, ids=[f"{s}-{a}" for s, a in FD_CASES])
@pytest.mark.parametrize("norm,eps", row_norm_params(_fd_eps, lambda v: f"eps{v[0]}"))
def test_gradients_match_finite_differences(isa, norm, eps, shape, axis, rng):
    dt = np.float64
    x = make_array(shape, dt, rng)
    w, b = random_params(param_shape(shape, axis), dt, rng, True, norm.has_bias)
    params = (w, b)[:len(norm.params)]
    r = rng.standard_normal(shape)

    def loss(x_, *p_):
        return float(np.sum(norm(x_, *p_, axis=axis, eps=eps) * r))

    _, stats = norm(x, *params, axis=axis, eps=eps, return_stats=True)
    grads = norm.backward(r, x, stats, w, axis=axis)
    want = [numeric_grad(lambda v: loss(v, *params), x)]
    for i in range(len(params)):
        want.append(numeric_grad(
            lambda v, i=i: loss(x, *(v if j == i else p for j, p in enumerate(params))),
            params[i]))
    for got, wnt, nm in zip(grads, want, norm.grads):
        assert_fd(got, wnt, nm)


@pytest.mark.parametrize("norm", ALL)
def test_parameter_gradients_without_parameters(isa, norm, rng):
    """With weight=None, the parameter gradients are those at weight=1, bias=0."""
    x = make_array((4, 6), np.float64, rng)
    r = rng.standard_normal((4, 6))
    _, stats = norm(x, return_stats=True)
    grads = norm.backward(r, x, stats)
    defaults = norm.default_params(6)

    def loss(x_, *p_):
        return float(np.sum(norm(x_, *p_) * r))

    assert np.max(np.abs(grads[0] - numeric_grad(lambda v: loss(v), x))) < 1e-7
    for i, g in enumerate(grads[1:]):
        ng = numeric_grad(
            lambda v: loss(x, *(v if j == i else p for j, p in enumerate(defaults))),
            defaults[i])
        assert np.max(np.abs(g - ng)) < 1e-7, norm.grads[1 + i]


# --------------------------------------------------------------------------
# Adversarial inputs (docs/numerics.md §11)
# --------------------------------------------------------------------------

def _eps_id(values):
    return "eps0" if values[0] == 0.0 else "eps"


@pytest.mark.parametrize("magnitude", [1e-30, 1e30, 1e19, 3e37])
@pytest.mark.parametrize("centered", [True, False], ids=["offset", "zero-mean"])
@pytest.mark.parametrize("norm,eps", row_norm_params(lambda n: n.eps_choices, _eps_id))
@pytest.mark.parametrize("n", [33, 1024])
def test_extreme_magnitudes_float32(isa, norm, magnitude, centered, eps, n, rng):
    z = rng.standard_normal((8, n))
    x = (magnitude * ((1 + 0.25 * z) if centered else z)).astype(np.float32)
    assert np.all(np.isfinite(x)) and np.all(x != 0)
    y, stats = norm(x, eps=eps, return_stats=True)
    ye, se = norm.ref(x, eps=eps)
    assert np.all(np.isfinite(y)), "inf/nan in y"
    for nm, s in zip(norm.stats, stats):
        assert np.all(np.isfinite(s)), nm
    assert_close(y, ye, np.float32, factor=2)
    assert_rel_close(stats[-1], se[-1], np.float32, factor=2, what="rstd")
    dy = rng.standard_normal(x.shape).astype(np.float32)
    grads = norm.backward(dy, x, stats)
    dxe = norm.ref_backward(dy, x, se)[0]
    assert_rel_close(grads[0], dxe, np.float32, factor=10, what="dx")
    for nm, g in zip(norm.grads[1:], grads[1:]):
        assert np.all(np.isfinite(g)), nm


@pytest.mark.parametrize("magnitude", [1e-300, 1e-150, 1e150, 1e300])
@pytest.mark.parametrize("centered", [True, False], ids=["offset", "zero-mean"])
@pytest.mark.parametrize("eps", [1e-5, 0.0], ids=["eps", "eps0"])
@pytest.mark.parametrize("norm", ALL)
def test_extreme_magnitudes_float64(isa, norm, magnitude, centered, eps, rng):
    z = rng.standard_normal((8, 1024))
    x = magnitude * ((1 + 0.25 * z) if centered else z)
    y = norm(x, eps=eps)
    assert np.all(np.isfinite(y)), "inf/nan in y"
    if eps > 0 and magnitude < 1:
        ye = norm.ref(x, eps=eps)[0]  # squares underflow next to eps: harmless
    else:
        # the plain reference would overflow/underflow: scale invariance,
        # f(x, eps) = f(x / s, eps / s^2)
        ye = norm.ref(x / magnitude, eps=eps / magnitude / magnitude)[0]
    assert_close(y, ye, np.float64, factor=4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("norm", ALL)
def test_non_finite_value_stays_in_its_row(isa, dtype, norm, bad, rng):
    x = make_array((6, 40), dtype, rng)
    dy = make_array((6, 40), dtype, rng)
    w, b = random_params((40,), dtype, rng, True, norm.has_bias)
    y0, s0 = norm(x, w, b, return_stats=True)
    dx0 = norm.backward(dy, x, s0, w)[0]
    xb = x.copy()
    xb[2, 5] = bad
    y, s = norm(xb, w, b, return_stats=True)
    if "mean" in norm.stats:
        assert np.all(np.isnan(y[2])), "the bad row becomes NaN (as in PyTorch)"
    else:
        # as PyTorch and the reference: NaN -> a NaN row; Inf -> rstd 0, NaN where the Inf was
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ye, _ = norm.ref(xb, w, b)
        assert_close(y[2], ye[2], dtype, what="bad row")
        assert not np.all(np.isfinite(y[2]))
    keep = [0, 1, 3, 4, 5]
    assert np.array_equal(y[keep], y0[keep])
    for nm, got, want in zip(norm.stats, s, s0):
        assert np.array_equal(got[keep], want[keep]), nm
    dx = norm.backward(dy, xb, s, w)[0]
    if "mean" in norm.stats:
        assert not np.any(np.isfinite(dx[2]))
    else:
        assert not np.all(np.isfinite(dx[2]))
    assert np.array_equal(dx[keep], dx0[keep])
    # a bad value in dy poisons only its row of dx, and the parameter gradients
    dyb = dy.copy()
    dyb[4, 0] = bad
    grads = norm.backward(dyb, x, s0, w)
    assert not np.all(np.isfinite(grads[0][4]))
    keep = [0, 1, 2, 3, 5]
    assert np.array_equal(grads[0][keep], dx0[keep])
    assert not np.isfinite(grads[-1][0]), norm.grads[-1]


@pytest.mark.parametrize("how", ["new", "slice"])
@pytest.mark.parametrize("shape,axis", ZERO_SIZE, ids=ZERO_SIZE_IDS)
@pytest.mark.parametrize("norm", ALL)
def test_zero_size(isa, dtype, norm, shape, axis, how):
    x = zero_size(shape, dtype, how)
    assert x.size == 0 and x.shape == shape
    pshape = param_shape(shape, axis)
    w, b = np.ones(pshape, dtype), np.zeros(pshape, dtype)
    if not norm.has_bias:
        b = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of empty rows
        ye, se = norm.ref(x, w, b, axis=axis)
        y, stats = norm(x, w, b, axis=axis, return_stats=True)
        assert y.shape == shape and y.dtype == dtype
        # rows with no elements have no statistics: NaN, as the reference (never garbage)
        for nm, got, want in zip(norm.stats, stats, se):
            assert got.shape == want.shape, nm
            assert_close(got, want, dtype, what=nm)
        out = np.empty_like(x)
        assert norm(x, axis=axis, out=out) is out
        dy = np.zeros_like(x)
        grads = norm.backward(dy, x, stats, w, axis=axis)
        want = norm.ref_backward(dy, x, se, w, axis=axis)
    assert grads[0].shape == shape
    # sums over no rows are zero
    for nm, got, wnt in zip(norm.grads[1:], grads[1:], want[1:]):
        assert got.shape == pshape, nm
        assert np.array_equal(got, wnt), f"{nm} {got} != {wnt}"


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", OUT_LAYOUTS)
@pytest.mark.parametrize("norm", ALL)
def test_out_any_layout(isa, dtype, norm, layout, rng):
    """Every writable layout of out (a byte-swapped out is refused: test_api)."""
    x = make_array((16, 33), dtype, rng)
    w, b = random_params((33,), dtype, rng, True, norm.has_bias)
    want = norm(x, w, b)
    out = LAYOUTS[layout](np.zeros_like(x))
    assert norm(x, w, b, out=out) is out
    assert np.array_equal(out, want)


@pytest.mark.parametrize("norm", ALL)
def test_out_with_stats_and_non_trailing_axis(isa, dtype, norm, rng):
    x = make_array((6, 5, 4), dtype, rng)
    out = np.zeros((4, 5, 6), dtype).T  # Fortran-ordered
    y, stats = norm(x, axis=(0, 2), out=out, return_stats=True)
    assert y is out
    ye, se = norm.ref(x, axis=(0, 2))
    assert_close(out, ye, dtype)
    check_stats(norm.stats, stats, se, x, (0, 2), dtype, "out=")


@pytest.mark.parametrize("layout", IN_PLACE_LAYOUTS)
@pytest.mark.parametrize("axis", [-1, 0, (0, 2)])
@pytest.mark.parametrize("norm", ALL)
def test_out_is_x_in_place(isa, dtype, norm, layout, axis, rng):
    base = make_array((4, 6, 9), dtype, rng)
    w, b = random_params(param_shape(base.shape, axis), dtype, rng, True, norm.has_bias)
    want = norm(base, w, b, axis=axis)
    x = LAYOUTS[layout](base)
    assert norm(x, w, b, axis=axis, out=x) is x
    assert np.array_equal(x, want)


@pytest.mark.parametrize("case", list(SHIFTS))
@pytest.mark.parametrize("norm", ALL)
def test_out_overlapping_x(isa, dtype, norm, case, rng):
    """out overlapping x in a shifted way still gives the result of a fresh out."""
    make, shape = SHIFTS[case]
    buf = make_array(shape, dtype, rng)
    x, out = make(buf)
    w, b = random_params((x.shape[-1],), dtype, rng, True, norm.has_bias)
    want = norm(x.copy(), w, b)
    assert norm(x, w, b, out=out) is out
    assert np.array_equal(out, want)


@pytest.mark.parametrize("norm,which", row_norm_params(lambda n: n.params))
def test_out_overlapping_parameters(isa, dtype, norm, which, rng):
    """out=x where weight or bias is a row of x: the parameters must be read
    before they are overwritten (NumPy's out= semantics)."""
    x = make_array((8, 32), dtype, rng)
    w, b = random_params((32,), dtype, rng, True, norm.has_bias)
    if which == "weight":
        w = x[3]
    else:
        b = x[3]
    want = norm(x.copy(), w.copy(), None if b is None else b.copy())
    got = norm(x, w, b, out=x)
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
    _, *stats = fn.{name}(x, return_stats=True)
    want = fn.{name}_backward(dy, x, *stats)
    got = fn.{name}_backward(unaligned(dy), x, *stats)
    for g, w in zip(got, want):
        assert np.array_equal(g, w), (g, w)
print("ok")
"""


@pytest.mark.parametrize("norm", ALL)
def test_unaligned_dy_in_a_subprocess(norm):
    """An unaligned dy with an aligned x: run apart, since it has crashed the interpreter."""
    proc = run_python(UNALIGNED_SCRIPT.replace("{name}", norm.name))
    assert proc.returncode == 0, f"exit status {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("norm", ALL)
def test_unaligned_x_forward(isa, dtype, norm, rng):
    x = make_array((8, 16), dtype, rng)
    xu = LAYOUTS["unaligned"](x)
    assert not xu.flags.aligned
    y0, s0 = norm(x, return_stats=True)
    y, s = norm(xu, return_stats=True)
    assert np.array_equal(y, y0)
    for got, want in zip(s, s0):
        assert np.array_equal(got, want)
