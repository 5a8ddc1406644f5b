"""Property-based tests (hypothesis): random shapes, axes, layouts, dtypes,
offsets and scales against the float64 reference, plus invariances."""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnorm as fn  # noqa: E402
from fastnorm import _core  # noqa: E402
from fastnorm import reference as ref  # noqa: E402
from conftest import LAYOUTS, assert_close, assert_rel_close, sum_scale  # noqa: E402

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw, max_dims=4, max_side=9):
    ndim = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, max_side), min_size=ndim, max_size=ndim)))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    # the axis argument in any of its spellings: negative, unsorted, int or tuple
    spelled = [a - ndim if draw(st.booleans()) else a for a in axes]
    axis = spelled[0] if len(spelled) == 1 and draw(st.booleans()) else tuple(spelled)
    dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
    layout = draw(st.sampled_from(sorted(LAYOUTS)))
    seed = draw(st.integers(0, 2**32 - 1))
    loc = draw(st.sampled_from([0.0, 1.0, -20.0, 300.0]))
    scale = draw(st.sampled_from([1e-2, 1.0, 30.0]))
    weight = draw(st.booleans())
    bias = draw(st.booleans())
    isa = draw(st.sampled_from(_core._available_isas()))
    return dict(shape=shape, axis=axis, dtype=dtype, layout=layout, seed=seed, loc=loc,
                scale=scale, weight=weight, bias=bias, isa=isa)


def _setup(p):
    rng = np.random.default_rng(p["seed"])
    dt = p["dtype"]
    base = (p["loc"] + p["scale"] * rng.standard_normal(p["shape"])).astype(dt)
    ax = p["axis"]
    axes = sorted(a % len(p["shape"]) for a in ((ax,) if np.ndim(ax) == 0 else ax))
    pshape = tuple(p["shape"][a] for a in axes)
    others = tuple(a for a in range(len(p["shape"])) if a not in axes)
    w = (1 + 0.5 * rng.standard_normal(pshape)).astype(dt) if p["weight"] else None
    b = rng.standard_normal(pshape).astype(dt) if p["bias"] else None
    dy = rng.standard_normal(p["shape"]).astype(dt)
    layout = LAYOUTS[p["layout"]]
    if p["layout"] == "unaligned":
        layout = LAYOUTS["C"]  # unaligned arrays have tests of their own (a known bug)
    return layout(base), layout(dy), w, b, pshape, others


def _with_isa(p, func):
    _core._set_isa(p["isa"])
    try:
        return func()
    finally:
        _core._set_isa("auto")


@SETTINGS
@given(problems())
def test_layer_norm_property(p):
    x, dy, w, b, pshape, others = _setup(p)
    dt, axis = p["dtype"], p["axis"]

    def run():
        y, m, r = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
        return (y, m, r), fn.layer_norm_backward(dy, x, m, r, w, axis=axis)

    (y, m, r), (dx, dw, db) = _with_isa(p, run)
    ye, me, re = ref.layer_norm(x, w, b, axis=axis)
    assert y.shape == x.shape and m.shape == me.shape and dw.shape == pshape
    f = 1.0
    assert_close(y, ye, dt, factor=2 * f, what="y")
    assert_rel_close(r, re, dt, factor=2 * f, what="rstd")
    dxe, dwe, dbe = ref.layer_norm_backward(dy, x, me, re, w, axis=axis)
    assert_close(dx, dxe, dt, factor=8 * f, what="dx")
    xh = ref.layer_norm(x, axis=axis)[0]
    assert_close(dw, dwe, dt, factor=8 * f, scale=sum_scale(dy.astype(float) * xh, others),
                 what="dweight")
    assert_close(db, dbe, dt, factor=8, scale=sum_scale(dy, others), what="dbias")


@SETTINGS
@given(problems())
def test_rms_norm_property(p):
    x, dy, w, _, pshape, others = _setup(p)
    dt, axis = p["dtype"], p["axis"]

    def run():
        y, r = fn.rms_norm(x, w, axis=axis, return_stats=True)
        return (y, r), fn.rms_norm_backward(dy, x, r, w, axis=axis)

    (y, r), (dx, dw) = _with_isa(p, run)
    ye, re = ref.rms_norm(x, w, axis=axis)
    assert y.shape == x.shape and r.shape == re.shape and dw.shape == pshape
    assert_close(y, ye, dt, factor=2, what="y")
    assert_rel_close(r, re, dt, factor=2, what="rstd")
    dxe, dwe = ref.rms_norm_backward(dy, x, re, w, axis=axis)
    assert_close(dx, dxe, dt, factor=8, what="dx")
    xh = ref.rms_norm(x, axis=axis, eps=0.0)[0]
    assert_close(dw, dwe, dt, factor=8, scale=sum_scale(dy.astype(float) * xh, others),
                 what="dweight")


@SETTINGS
@given(problems(max_dims=3), st.integers(-4, 4))
def test_layer_norm_scale_invariance(p, k):
    """layer_norm(2^k x, eps=4^k eps) == layer_norm(x, eps): scaling by a power of two is exact."""
    x, _, w, b, _, _ = _setup(p)
    axis = p["axis"]
    s = 2.0 ** k
    x2 = (x * s).astype(p["dtype"])
    y1 = _with_isa(p, lambda: fn.layer_norm(x, w, b, axis=axis, eps=1e-3))
    y2 = _with_isa(p, lambda: fn.layer_norm(x2, w, b, axis=axis, eps=1e-3 * s * s))
    assert_close(y1, y2, p["dtype"], factor=2)


@SETTINGS
@given(problems(max_dims=3), st.integers(-4, 4))
def test_rms_norm_scale_invariance(p, k):
    """rms_norm(2^k x, eps=4^k eps) == rms_norm(x, eps): scaling by a power of two is exact."""
    x, _, w, _, _, _ = _setup(p)
    axis = p["axis"]
    s = 2.0 ** k
    x2 = (x * s).astype(p["dtype"])
    y1 = _with_isa(p, lambda: fn.rms_norm(x, w, axis=axis, eps=1e-3))
    y2 = _with_isa(p, lambda: fn.rms_norm(x2, w, axis=axis, eps=1e-3 * s * s))
    assert_close(y1, y2, p["dtype"], factor=2)


@SETTINGS
@given(problems(max_dims=3))
def test_permuting_rows_permutes_results(p):
    """Rows are independent: reversing the non-normalized axes reverses the outputs."""
    x, dy, w, b, _, others = _setup(p)
    axis = p["axis"]
    if not others:
        return
    flip = tuple(slice(None, None, -1) if a in others else slice(None)
                 for a in range(x.ndim))
    y, m, r = fn.layer_norm(x, w, b, axis=axis, return_stats=True)
    yf, mf, rf = fn.layer_norm(np.ascontiguousarray(x[flip]), w, b, axis=axis,
                               return_stats=True)
    assert np.array_equal(yf, y[flip])
    sflip = tuple(slice(None, None, -1) for _ in range(m.ndim))
    assert np.array_equal(mf, m[sflip]) and np.array_equal(rf, r[sflip])
