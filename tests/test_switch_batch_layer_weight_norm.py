"""fastnorm.switch_norm, batch_layer_norm and weight_norm with their backward,
against the float64 reference and central finite differences (docs/numerics.md
§8, §9, §10 and §11)."""
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
    make_array,
    numeric_grad,
    random_params,
)
from params import TRAINING, assert_fd, assert_refused_untouched, running_stats_bad_kwargs

# ==========================================================================
# Switchable Normalization (section 9)
# ==========================================================================

SN_CASES = [((3, 4, 2, 3), 1), ((3, 2, 3, 4), -1), ((4, 3, 5), 1), ((2, 5, 3), -1), ((6, 4), 1)]
SN_IDS = [f"{s}-ax{a}" for s, a in SN_CASES]


def _sn_params(C, dtype, rng):
    w, b = random_params((C,), dtype, rng, True, True)
    lm = rng.standard_normal(3)
    lv = rng.standard_normal(3)
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    return w, b, lm, lv, rm, rv


@pytest.mark.parametrize("shape,axis", SN_CASES, ids=SN_IDS)
@pytest.mark.parametrize("training", TRAINING)
def test_switch_norm_forward_matches_reference(isa, dtype, shape, axis, training, rng):
    x = make_array(shape, dtype, rng)
    C = shape[axis]
    w, b, lm, lv, rm, rv = _sn_params(C, dtype, rng)
    for affine, logits in itertools.product([True, False], [True, False]):
        ww, bb = (w, b) if affine else (None, None)
        mw, vw = (lm, lv) if logits else (None, None)
        rmc, rvc = rm.copy(), rv.copy()
        y, st = fn.switch_norm(x, ww, bb, mw, vw, rmc, rvc, training=training, axis=axis,
                               return_stats=True)
        ye = ref.switch_norm(x, ww, bb, mw, vw, axis=axis,
                             bn_mean=None if training else rm, bn_var=None if training else rv)
        what = f"affine={affine} logits={logits}"
        assert y.shape == shape and y.dtype == dtype
        assert isinstance(st, fn.SwitchNormStats)
        N = shape[0]
        assert st.mean.shape == (N, C) == st.rstd.shape == st.in_mean.shape == st.in_var.shape
        assert st.ln_mean.shape == (N,) == st.ln_var.shape
        assert st.bn_mean.shape == (C,) == st.bn_var.shape
        assert st.batch_stats is training
        assert_close(y, ye, dtype, factor=2, what="y " + what)
        assert np.array_equal(fn.switch_norm(x, ww, bb, mw, vw, rm.copy(), rv.copy(),
                                             training=training, axis=axis), y)
        if not training:
            assert np.array_equal(rmc, rm) and np.array_equal(rvc, rv)
            assert np.array_equal(st.bn_mean, rm.astype(np.float64))


def test_switch_norm_limits(isa, dtype, rng):
    """Logits that put all the weight on one statistic set give IN, LN or BN."""
    x = make_array((3, 4, 6), dtype, rng)
    big = 60.0
    for k, want in enumerate([ref.instance_norm(x)[0],
                              ref.layer_norm(x, axis=(1, 2))[0],
                              ref.batch_norm(x, training=True)[0]]):
        logit = np.full(3, -big)
        logit[k] = big
        y = fn.switch_norm(x, mean_weight=logit, var_weight=logit)
        assert_close(y, want, dtype, factor=2, what=f"set {k}")
    # equal weights (None) are softmax of equal logits
    assert np.array_equal(fn.switch_norm(x), fn.switch_norm(x, mean_weight=np.ones(3),
                                                             var_weight=np.full(3, 5.0)))
    assert fn.switch_norm(x, mean_weight=[1, 2, 3]).shape == x.shape  # lists, ints


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0])
def test_switch_norm_running_stats(isa, dtype, axis, momentum, rng):
    shape = (3, 4, 5) if axis == 1 else (3, 5, 4)
    rm = rng.standard_normal(4).astype(dtype)
    rv = rng.uniform(0.5, 2.0, 4).astype(dtype)
    want_m, want_v = rm.astype(np.float64), rv.astype(np.float64)
    for _ in range(3):
        x = make_array(shape, dtype, rng)
        fn.switch_norm(x, None, None, rng.standard_normal(3), rng.standard_normal(3), rm, rv,
                       training=True, momentum=momentum, axis=axis)
        xc = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, 4)
        want_m = (1 - momentum) * want_m + momentum * xc.mean(axis=0)
        want_v = (1 - momentum) * want_v + momentum * xc.var(axis=0, ddof=1)
        assert_close(rm, want_m, dtype, factor=2, what="running_mean")
        assert_close(rv, want_v, dtype, factor=2, what="running_var")


SN_FD = [((2, 3, 4), 1), ((3, 2, 3), -1), ((2, 2, 2, 2), 1), ((4, 3), 1)]


@pytest.mark.parametrize("shape,axis", SN_FD, ids=[f"{s}-ax{a}" for s, a in SN_FD])
@pytest.mark.parametrize("training", TRAINING)
def test_switch_norm_gradients_match_finite_differences(isa, shape, axis, training, rng):
    x = make_array(shape, np.float64, rng)
    C = shape[axis]
    w, b, lm, lv, rm, rv = _sn_params(C, np.float64, rng)
    r = rng.standard_normal(shape)

    def loss(x_=x, w_=w, b_=b, lm_=lm, lv_=lv):
        y = fn.switch_norm(x_, w_, b_, lm_, lv_, rm.copy(), rv.copy(), training=training,
                           axis=axis, eps=1e-3)
        return float(np.sum(y * r))

    _, st = fn.switch_norm(x, w, b, lm, lv, rm.copy(), rv.copy(), training=training, axis=axis,
                           eps=1e-3, return_stats=True)
    dx, dw, db, dlm, dlv = fn.switch_norm_backward(r, x, st, w, b, lm, lv, axis=axis)
    assert dx.shape == shape and dx.dtype == np.float64
    assert dw.shape == (C,) == db.shape and dlm.shape == (3,) == dlv.shape
    assert_fd(dx, numeric_grad(lambda v: loss(x_=v), x), "dx")
    assert_fd(dw, numeric_grad(lambda v: loss(w_=v), w), "dweight")
    assert_fd(db, numeric_grad(lambda v: loss(b_=v), b), "dbias")
    assert_fd(dlm, numeric_grad(lambda v: loss(lm_=v), lm), "dmean_weight")
    assert_fd(dlv, numeric_grad(lambda v: loss(lv_=v), lv), "dvar_weight")
    # softmax gradients sum to zero
    assert abs(dlm.sum()) < 1e-12 * max(1, np.abs(dlm).max())


def test_switch_norm_gradients_default_parameters(isa, rng):
    """weight/bias/logits None: dweight and dbias are None; the logits' gradients
    are those at equal logits."""
    x = make_array((2, 3, 4), np.float64, rng)
    r = rng.standard_normal(x.shape)
    _, st = fn.switch_norm(x, return_stats=True)
    dx, dw, db, dlm, dlv = fn.switch_norm_backward(r, x, st)
    assert dw is None and db is None

    def loss(lm_=None, lv_=None, x_=x):
        return float(np.sum(fn.switch_norm(x_, mean_weight=lm_, var_weight=lv_) * r))

    zeros = np.zeros(3)
    assert_fd(dlm, numeric_grad(lambda v: loss(lm_=v, lv_=zeros), zeros), "dmean_weight")
    assert_fd(dlv, numeric_grad(lambda v: loss(lm_=zeros, lv_=v), zeros), "dvar_weight")
    assert_fd(dx, numeric_grad(lambda v: loss(x_=v), x), "dx")


@pytest.mark.parametrize("training", TRAINING)
def test_switch_norm_backward_float32(isa, training, rng):
    """float32 gradients agree with float64 ones on the same values."""
    x = make_array((4, 6, 10), np.float32, rng)
    r = make_array(x.shape, np.float32, rng, loc=0.0, scale=1.0)
    w, b, lm, lv, rm, rv = _sn_params(6, np.float32, rng)
    _, st = fn.switch_norm(x, w, b, lm, lv, rm.copy(), rv.copy(), training=training,
                           return_stats=True)
    g32 = fn.switch_norm_backward(r, x, st, w, b, lm, lv)
    x64, r64 = x.astype(np.float64), r.astype(np.float64)
    w64, b64 = w.astype(np.float64), b.astype(np.float64)
    _, st64 = fn.switch_norm(x64, w64, b64, lm, lv, rm.astype(np.float64),
                             rv.astype(np.float64), training=training, return_stats=True)
    g64 = fn.switch_norm_backward(r64, x64, st64, w64, b64, lm, lv)
    assert g32[0].dtype == np.float32 and g32[1].dtype == np.float32
    for got, want, nm in zip(g32, g64, ("dx", "dweight", "dbias", "dmw", "dvw")):
        assert_close(got, want, np.float32, factor=20, scale=np.abs(want).max(), what=nm)


def test_switch_norm_layouts_and_out(isa, dtype, rng):
    base = make_array((3, 4, 5), dtype, rng)
    w, b, lm, lv, rm, rv = _sn_params(4, dtype, rng)
    want = fn.switch_norm(base, w, b, lm, lv, rm.copy(), rv.copy())
    for name in ("F", "sliced", "negstride", "byteswapped"):
        assert np.array_equal(fn.switch_norm(LAYOUTS[name](base), w, b, lm, lv, rm.copy(),
                                             rv.copy()), want), name
        out = LAYOUTS[name](np.zeros_like(base)) if name != "byteswapped" else np.zeros_like(base)
        assert fn.switch_norm(base, w, b, lm, lv, rm.copy(), rv.copy(), out=out) is out
        assert np.array_equal(out, want), name
    x = base.copy()
    assert fn.switch_norm(x, w, b, lm, lv, rm.copy(), rv.copy(), out=x) is x
    assert np.array_equal(x, want)


def test_switch_norm_bad_input():
    x = make_array((3, 4, 5), np.float64, np.random.default_rng(0))
    rm, rv = np.full(4, 0.5), np.full(4, 2.0)
    with pytest.raises(ValueError, match="running"):
        fn.switch_norm(x, training=False)
    # one running statistic without the other: refused (as batch_norm), nothing updated
    for kw in (dict(running_mean=rm), dict(running_var=rv)):
        for training in (True, False):
            with pytest.raises(ValueError, match="must be given together"):
                fn.switch_norm(x, training=training, **kw)
            assert np.all(rm == 0.5) and np.all(rv == 2.0), kw
    with pytest.raises(ValueError, match="mean_weight"):
        fn.switch_norm(x, mean_weight=np.ones(2))
    with pytest.raises(ValueError, match="var_weight"):
        fn.switch_norm(x, var_weight=np.ones((3, 1)))
    with pytest.raises(TypeError, match="mean_weight"):
        fn.switch_norm(x, mean_weight=np.ones(3, bool))
    with pytest.raises(ValueError, match=re.escape(
            "x must have more than 1 value per channel when training, got shape (1, 3, 1)")):
        fn.switch_norm(np.ones((1, 3, 1)))
    with pytest.raises(TypeError, match="stats"):
        fn.switch_norm_backward(x, x, (1, 2))
    _, st = fn.switch_norm(x, return_stats=True)
    with pytest.raises(ValueError, match="stats"):
        fn.switch_norm_backward(x[:2], x[:2], st)
    bad = running_stats_bad_kwargs(x, 3) + [dict(var_weight=np.ones(4)), dict(axis=0)]
    assert_refused_untouched(lambda **kw: fn.switch_norm(x, running_mean=rm, running_var=rv, **kw),
                             bad, [rm, rv], out_like=x)
    assert np.all(rm == 0.5) and np.all(rv == 2.0)


# ==========================================================================
# Batch Layer Normalization (section 8)
# ==========================================================================

# (8, 41, 97): more columns (positions x features) than one block of the
# apply stages' coefficients holds (fn_apply_block_cols)
BLN_SHAPES = [(5, 4), (3, 2, 4), (3, 2, 2, 3), (8, 41, 97)]
BLN_MODES = [(True, "population", "population")] + [
    (False, m, v) for m, v in itertools.product(("population", "batch"), repeat=2)]
BLN_MODE_IDS = ["train"] + [f"eval-{m[:3]}-{v[:3]}" for _, m, v in BLN_MODES[1:]]


def _bln_running(fshape, dtype, rng):
    return (rng.standard_normal(fshape).astype(dtype),
            rng.uniform(0.5, 2.0, fshape).astype(dtype))


def _bln_ref(x, w, b, rm, rv, training, im, iv, batch_size=None, eps=1e-3):
    pop_m = rm if (not training and im == "population") else None
    pop_v = rv if (not training and iv == "population") else None
    return ref.batch_layer_norm(x, w, b, eps=eps, batch_size=batch_size, batch_mean=pop_m,
                                batch_var=pop_v)


@pytest.mark.parametrize("shape", BLN_SHAPES, ids=[str(s) for s in BLN_SHAPES])
@pytest.mark.parametrize("mode", BLN_MODES, ids=BLN_MODE_IDS)
def test_batch_layer_norm_forward_matches_reference(isa, dtype, shape, mode, rng):
    training, im, iv = mode
    x = make_array(shape, dtype, rng)
    D = shape[-1]
    rm, rv = _bln_running(shape[1:], dtype, rng)
    for (weight, bias), bs in itertools.product([(True, True), (False, False)], [None, 8]):
        w, b = random_params((D,), dtype, rng, weight, bias)
        rmc, rvc = rm.copy(), rv.copy()
        y, st = fn.batch_layer_norm(x, w, b, rmc, rvc, training=training, batch_size=bs,
                                    inference_mean=im, inference_var=iv, return_stats=True)
        ye = _bln_ref(x, w, b, rm, rv, training, im, iv, batch_size=bs)
        what = f"weight={weight} batch_size={bs}"
        assert y.shape == shape and y.dtype == dtype
        assert_close(y, ye, dtype, factor=2, what=what)
        assert isinstance(st, fn.BatchLayerNormStats)
        assert st.batch_size == (shape[0] if bs is None else bs)
        assert st.frozen_mean == (not training and im == "population")
        assert st.frozen_var == (not training and iv == "population")
        assert st.feature_mean.shape == shape[:-1]
        assert np.shape(st.batch_mean) == shape[1:]
        if not training:
            assert np.array_equal(rmc, rm) and np.array_equal(rvc, rv)
        assert np.array_equal(fn.batch_layer_norm(x, w, b, rm.copy(), rv.copy(),
                                                  training=training, batch_size=bs,
                                                  inference_mean=im, inference_var=iv), y)


def test_batch_layer_norm_defaults(isa, rng):
    x = make_array((4, 3, 6), np.float64, rng)
    y = fn.batch_layer_norm(x)
    assert_close(y, ref.batch_layer_norm(x, eps=1e-3), np.float64)
    # eps defaults to the authors' 1e-3, not 1e-5
    assert not np.allclose(y, ref.batch_layer_norm(x * 0.01, eps=1e-5), atol=1e-6)
    assert_close(fn.batch_layer_norm(x * 0.01), ref.batch_layer_norm(x * 0.01), np.float64)
    # the constants a = 1/B - 1e-4, b = 1 - 1/B - 1e-4 by hand
    B, D = 4, 6
    xf = ref.layer_norm(x, eps=1e-3)[0]
    xb = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-3)
    want = ((1 / B - 1e-4) * xf + (1 - 1 / B - 1e-4) * xb) / np.sqrt(D)
    assert_close(y, want, np.float64)


@pytest.mark.parametrize("shape", [(1, 4), (1, 3, 5), (1, 2, 2, 3)], ids=str)
def test_batch_layer_norm_batch_of_one(isa, dtype, shape, rng):
    """B = 1 is not an error: x_b = 0, y = gamma * a * x_f / sqrt(D) + beta."""
    x = make_array(shape, dtype, rng)
    D = shape[-1]
    w, b = random_params((D,), dtype, rng, True, True)
    rm, rv = _bln_running(shape[1:], dtype, rng)
    rm0 = rm.copy()
    y, st = fn.batch_layer_norm(x, w, b, rm, rv, training=True, return_stats=True)
    xf = ref.layer_norm(x, eps=1e-3)[0]
    want = w.astype(np.float64) * (1 - 1e-4) * xf / np.sqrt(D) + b
    assert np.all(np.isfinite(y))
    assert_close(y, want, dtype, factor=2)
    # the running mean moves toward the single sample
    assert_close(rm, 0.9 * rm0.astype(np.float64) + 0.1 * x[0], dtype)
    # backward vs finite differences (float64)
    if dtype == np.float64:
        r = rng.standard_normal(shape)
        dx, dw, db = fn.batch_layer_norm_backward(r, x, st, w, b)

        def loss(x_=x, w_=w):
            return float(np.sum(fn.batch_layer_norm(x_, w_, b) * r))

        assert_fd(dx, numeric_grad(lambda v: loss(x_=v), x), "dx")
        assert_fd(dw, numeric_grad(lambda v: loss(w_=v), w), "dweight")


@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0])
def test_batch_layer_norm_running_stats(isa, dtype, momentum, rng):
    shape = (5, 3, 4)
    rm, rv = _bln_running(shape[1:], dtype, rng)
    want_m, want_v = rm.astype(np.float64), rv.astype(np.float64)
    addr = rm.ctypes.data, rv.ctypes.data
    for _ in range(3):
        x = make_array(shape, dtype, rng)
        fn.batch_layer_norm(x, None, None, rm, rv, training=True, momentum=momentum)
        x64 = x.astype(np.float64)
        want_m = (1 - momentum) * want_m + momentum * x64.mean(axis=0)
        want_v = (1 - momentum) * want_v + momentum * x64.var(axis=0, ddof=1)
        assert_close(rm, want_m, dtype, factor=2, what="running_mean")
        assert_close(rv, want_v, dtype, factor=2, what="running_var")
    assert (rm.ctypes.data, rv.ctypes.data) == addr
    # eval with population statistics uses them
    x = make_array(shape, dtype, rng)
    assert_close(fn.batch_layer_norm(x, None, None, rm, rv, training=False),
                 ref.batch_layer_norm(x, batch_mean=rm, batch_var=rv), dtype, factor=2)


BLN_FD_SHAPES = [(3, 4), (3, 2, 3), (2, 2, 2, 2)]


@pytest.mark.parametrize("shape", BLN_FD_SHAPES, ids=[str(s) for s in BLN_FD_SHAPES])
@pytest.mark.parametrize("mode", BLN_MODES, ids=BLN_MODE_IDS)
def test_batch_layer_norm_gradients_match_finite_differences(isa, shape, mode, rng):
    training, im, iv = mode
    x = make_array(shape, np.float64, rng)
    D = shape[-1]
    w, b = random_params((D,), np.float64, rng, True, True)
    rm, rv = _bln_running(shape[1:], np.float64, rng)
    r = rng.standard_normal(shape)
    for bs in (None, 5):
        def loss(x_=x, w_=w, b_=b):
            y = fn.batch_layer_norm(x_, w_, b_, rm.copy(), rv.copy(), training=training,
                                    batch_size=bs, inference_mean=im, inference_var=iv)
            return float(np.sum(y * r))

        _, st = fn.batch_layer_norm(x, w, b, rm.copy(), rv.copy(), training=training,
                                    batch_size=bs, inference_mean=im, inference_var=iv,
                                    return_stats=True)
        dx, dw, db = fn.batch_layer_norm_backward(r, x, st, w, b)
        assert dx.shape == shape and dw.shape == (D,) == db.shape
        assert_fd(dx, numeric_grad(lambda v: loss(x_=v), x), f"dx batch_size={bs}")
        assert_fd(dw, numeric_grad(lambda v: loss(w_=v), w), f"dweight batch_size={bs}")
        assert_fd(db, numeric_grad(lambda v: loss(b_=v), b), f"dbias batch_size={bs}")
    # without parameters: None
    _, st = fn.batch_layer_norm(x, None, None, rm.copy(), rv.copy(), training=training,
                                inference_mean=im, inference_var=iv, return_stats=True)
    dx0, dw0, db0 = fn.batch_layer_norm_backward(r, x, st)
    assert dw0 is None and db0 is None


@pytest.mark.parametrize("shape", [(6, 5, 8), (8, 41, 97)], ids=str)
@pytest.mark.parametrize("mode", BLN_MODES, ids=BLN_MODE_IDS)
def test_batch_layer_norm_backward_float32(isa, mode, shape, rng):
    training, im, iv = mode
    x = make_array(shape, np.float32, rng)
    r = make_array(shape, np.float32, rng, loc=0.0, scale=1.0)
    w, b = random_params(shape[-1:], np.float32, rng, True, True)
    rm, rv = _bln_running(shape[1:], np.float32, rng)
    kw = dict(training=training, inference_mean=im, inference_var=iv)
    _, st = fn.batch_layer_norm(x, w, b, rm.copy(), rv.copy(), return_stats=True, **kw)
    g32 = fn.batch_layer_norm_backward(r, x, st, w, b)
    x64 = x.astype(np.float64)
    w64, b64 = w.astype(np.float64), b.astype(np.float64)
    _, st64 = fn.batch_layer_norm(x64, w64, b64, rm.astype(np.float64), rv.astype(np.float64),
                                  return_stats=True, **kw)
    g64 = fn.batch_layer_norm_backward(r.astype(np.float64), x64, st64, w64, b64)
    for got, want, nm in zip(g32, g64, ("dx", "dweight", "dbias")):
        assert got.dtype == np.float32
        assert_close(got, want, np.float32, factor=10, scale=np.abs(want).max(), what=nm)


@pytest.mark.parametrize("mode", BLN_MODES[:2], ids=BLN_MODE_IDS[:2])
def test_batch_layer_norm_many_columns_any_threads(isa, mode, rng, shuffled):
    """(3, 64, 600): 38400 columns, enough for the per-column coefficient
    loops to run on the pool by blocks, claimed in a random order; the same
    bits on 1 and 2 threads, and float32 close to float64."""
    training, im, iv = mode
    shape = (3, 64, 600)
    x = make_array(shape, np.float32, rng)
    r = make_array(shape, np.float32, rng, loc=0.0, scale=1.0)
    w, b = random_params(shape[-1:], np.float32, rng, True, True)
    rm, rv = _bln_running(shape[1:], np.float32, rng)
    kw = dict(training=training, inference_mean=im, inference_var=iv)
    runs = []
    for nt in (1, 2):
        y, st = fn.batch_layer_norm(x, w, b, rm.copy(), rv.copy(), return_stats=True,
                                    num_threads=nt, **kw)
        runs.append((y,) + tuple(fn.batch_layer_norm_backward(r, x, st, w, b, num_threads=nt)))
    for a, c in zip(*runs):
        assert np.array_equal(a.view(np.uint32), c.view(np.uint32))
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    y64, st64 = fn.batch_layer_norm(x64, w64, b64, rm.astype(np.float64),
                                    rv.astype(np.float64), return_stats=True, **kw)
    g64 = (y64,) + tuple(fn.batch_layer_norm_backward(r.astype(np.float64), x64, st64, w64,
                                                      b64))
    for got, want, nm in zip(runs[0], g64, ("y", "dx", "dweight", "dbias")):
        assert_close(got, want, np.float32, factor=10, scale=np.abs(want).max(), what=nm)


def test_batch_layer_norm_layouts_and_out(isa, dtype, rng):
    base = make_array((4, 3, 5), dtype, rng)
    w, b = random_params((5,), dtype, rng, True, True)
    want = fn.batch_layer_norm(base, w, b)
    for name in ("F", "sliced", "negstride", "byteswapped", "permuted"):
        assert np.array_equal(fn.batch_layer_norm(LAYOUTS[name](base), w, b), want), name
    for name in ("C", "F", "sliced", "negstride"):
        out = LAYOUTS[name](np.zeros_like(base))
        assert fn.batch_layer_norm(base, w, b, out=out) is out
        assert np.array_equal(out, want), name
    x = base.copy()
    assert fn.batch_layer_norm(x, w, b, out=x) is x
    assert np.array_equal(x, want)
    buf = np.concatenate([base, base[:1]])
    got = fn.batch_layer_norm(buf[:-1], w, b, out=buf[1:])
    assert np.array_equal(got, want)


def test_batch_layer_norm_bad_input():
    x = make_array((4, 3, 5), np.float64, np.random.default_rng(0))
    rm, rv = np.full((3, 5), 0.5), np.full((3, 5), 2.0)
    with pytest.raises(ValueError, match="inference_mean"):
        fn.batch_layer_norm(x, None, None, rm, rv, training=False, inference_mean="foo")
    with pytest.raises(ValueError, match="inference_var"):
        fn.batch_layer_norm(x, None, None, rm, rv, training=False, inference_var="Batch")
    with pytest.raises(ValueError, match="running_mean"):
        fn.batch_layer_norm(x, training=False)
    with pytest.raises(ValueError, match="running_mean"):
        fn.batch_layer_norm(x, None, None, None, rv, training=False, inference_var="batch")
    with pytest.raises(ValueError, match="running_var"):
        fn.batch_layer_norm(x, None, None, rm, None, training=False, inference_mean="population")
    # batch statistics need no running statistics
    assert fn.batch_layer_norm(x, training=False, inference_mean="batch",
                               inference_var="batch").shape == x.shape
    with pytest.raises(ValueError, match="running_mean"):
        fn.batch_layer_norm(x, None, None, np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match="batch_size"):
        fn.batch_layer_norm(x, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        fn.batch_layer_norm(x, batch_size=2.0)
    with pytest.raises(ValueError):
        fn.batch_layer_norm(x[0, 0])
    with pytest.raises(TypeError, match="stats"):
        fn.batch_layer_norm_backward(x, x, (1, 2, 3))
    _, st = fn.batch_layer_norm(x, return_stats=True)
    with pytest.raises(ValueError, match="stats"):
        fn.batch_layer_norm_backward(x[:, :2], x[:, :2], st)
    bad = running_stats_bad_kwargs(x, 3) + [
        dict(running_var=np.ones((3, 5), np.float32)), dict(batch_size=-1),
        dict(training=False, inference_mean="foo")]
    assert_refused_untouched(lambda **kw: fn.batch_layer_norm(x, **{"running_mean": rm,
                                                                   "running_var": rv, **kw}),
                             bad, [rm, rv], out_like=x)
    assert np.all(rm == 0.5) and np.all(rv == 2.0)


def test_batch_layer_norm_empty_batch():
    x = np.zeros((0, 3, 5))
    assert fn.batch_layer_norm(x).shape == (0, 3, 5)


def test_batch_layer_norm_zero_size_positions(isa):
    x = np.zeros((2, 0, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y, st = fn.batch_layer_norm(x, np.ones(5), np.ones(5), return_stats=True)
        dx, dw, db = fn.batch_layer_norm_backward(x, x, st, np.ones(5), np.ones(5))
    assert y.shape == x.shape and dx.shape == x.shape
    assert np.array_equal(dw, np.zeros(5)) and np.array_equal(db, np.zeros(5))
    # a fixed batch_size makes an empty batch well defined
    assert fn.batch_layer_norm(np.zeros((0, 3, 5)), batch_size=4).shape == (0, 3, 5)


# ==========================================================================
# Weight Normalization (section 10)
# ==========================================================================

# (v shape, axis, g shape)
WN_CASES = [
    ((4, 3), 0, (4, 1)),
    ((4, 3), 0, (4,)),
    ((4, 3), 1, (3,)),
    ((4, 3), 1, (1, 3)),
    ((4, 3), -1, (3,)),
    ((5, 3, 2, 2), 0, (5, 1, 1, 1)),
    ((5, 3, 2, 2), 1, (1, 3, 1, 1)),
    ((4, 3, 2), -1, (2,)),
    ((4, 3, 2), None, ()),
    ((4, 3, 2), None, (1, 1, 1)),
    ((6,), 0, (6,)),
    ((6,), None, ()),
]
WN_IDS = [f"{v}-ax{a}-g{g}" for v, a, g in WN_CASES]


@pytest.mark.parametrize("vshape,axis,gshape", WN_CASES, ids=WN_IDS)
def test_weight_norm_matches_reference(isa, dtype, vshape, axis, gshape, rng):
    v = make_array(vshape, dtype, rng)
    g = rng.uniform(0.5, 2.0, gshape).astype(dtype)
    dw = make_array(vshape, dtype, rng, loc=0.0, scale=1.0)
    for eps in (0.0, 0.1):
        w = fn.weight_norm(v, g, axis=axis, eps=eps)
        we = ref.weight_norm(v, g, axis=axis, eps=eps)
        assert w.shape == vshape and w.dtype == dtype
        assert_close(w, we, dtype, factor=2, what=f"w eps={eps}")
        dv, dg = fn.weight_norm_backward(dw, v, g, axis=axis, eps=eps)
        dve, dge = ref.weight_norm_backward(dw, v, g, axis=axis, eps=eps)
        assert dv.shape == vshape and dv.dtype == dtype
        assert dg.shape == np.shape(g) and dg.dtype == dtype
        assert_close(dv, dve, dtype, factor=4, what=f"dv eps={eps}")
        assert_close(np.ravel(dg), dge, dtype, factor=4, scale=np.abs(dw).sum(),
                     what=f"dg eps={eps}")
    # the norm of each slice of w is |g| (eps = 0)
    w = fn.weight_norm(v, g, axis=axis).astype(np.float64)
    if axis is None:
        norms = np.sqrt((w ** 2).sum()).reshape(1)
    else:
        norms = np.sqrt((np.moveaxis(w, axis, 0).reshape(vshape[axis], -1) ** 2).sum(axis=1))
    assert_close(norms, np.abs(np.ravel(g)), dtype, factor=4)


def test_weight_norm_default_axis_is_zero(rng):
    v = make_array((4, 3), np.float64, rng)
    g = rng.uniform(0.5, 2.0, (4, 1))
    assert np.array_equal(fn.weight_norm(v, g), fn.weight_norm(v, g, axis=0))
    ones = np.ones((4, 1))
    # one norm per row, not one over the whole tensor
    assert not np.allclose(fn.weight_norm(v, ones), fn.weight_norm(v, np.ones(()), axis=None))
    assert_close(fn.weight_norm(v, ones), v / np.linalg.norm(v, axis=1, keepdims=True),
                 np.float64)


WN_FD = [((3, 4), 0, (3, 1)), ((3, 4), 1, (4,)), ((2, 3, 2), -1, (2,)), ((2, 3, 2), None, ()),
         ((3, 2, 2), 0, (3, 1, 1))]


@pytest.mark.parametrize("vshape,axis,gshape", WN_FD, ids=[f"{v}-ax{a}" for v, a, _ in WN_FD])
@pytest.mark.parametrize("eps", [0.0, 0.5])
def test_weight_norm_gradients_match_finite_differences(isa, vshape, axis, gshape, eps, rng):
    v = make_array(vshape, np.float64, rng)
    g = rng.uniform(0.5, 2.0, gshape)
    r = rng.standard_normal(vshape)

    def loss(v_=v, g_=g):
        return float(np.sum(fn.weight_norm(v_, g_, axis=axis, eps=eps) * r))

    dv, dg = fn.weight_norm_backward(r, v, g, axis=axis, eps=eps)
    assert_fd(dv, numeric_grad(lambda a: loss(v_=a), v), "dv")
    assert_fd(dg, numeric_grad(lambda a: loss(g_=a), g), "dg")


def test_weight_norm_zero_norm_row(isa, dtype):
    v = np.arange(12, dtype=dtype).reshape(3, 4) - 5
    v[1] = 0
    g = np.ones((3, 1), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        w = fn.weight_norm(v, g)
        dv, dg = fn.weight_norm_backward(np.ones_like(v), v, g)
    # PyTorch: 0 / 0 = NaN in that row only
    assert np.all(np.isnan(w[1])) and np.all(np.isfinite(w[[0, 2]]))
    assert np.all(np.isnan(dv[1])) and np.isnan(dg[1, 0])
    assert np.all(np.isfinite(dv[[0, 2]])) and np.all(np.isfinite(dg[[0, 2]]))
    # with eps: zeros, finite gradients
    w = fn.weight_norm(v, g, eps=1e-6)
    assert np.array_equal(w[1], np.zeros(4, dtype))
    assert_close(w, ref.weight_norm(v, g, eps=1e-6), dtype)
    dv, dg = fn.weight_norm_backward(np.ones_like(v), v, g, eps=1e-6)
    assert np.all(np.isfinite(dv)) and np.all(np.isfinite(dg))
    dve, dge = ref.weight_norm_backward(np.ones_like(v), v, g, eps=1e-6)
    assert_close(dv, dve, dtype, scale=np.abs(dve).max())


def test_weight_norm_extreme_magnitudes(isa, rng):
    """sum(v^2) must not overflow or underflow in float32 for |v| ~ 1e30 or 1e-30."""
    for mag in (1e30, 1e-30, 1e20):
        v = (mag * rng.standard_normal((4, 50))).astype(np.float32)
        g = np.ones((4, 1), np.float32)
        w = fn.weight_norm(v, g)
        assert np.all(np.isfinite(w)), mag
        assert_close(w, ref.weight_norm(v, g), np.float32, factor=4)


def test_weight_norm_layouts(isa, dtype, rng):
    v = make_array((5, 3, 4), dtype, rng)
    g = rng.uniform(0.5, 2.0, (5, 1, 1)).astype(dtype)
    dw = make_array((5, 3, 4), dtype, rng)
    want = fn.weight_norm(v, g)
    gw = fn.weight_norm_backward(dw, v, g)
    for name in ("F", "sliced", "negstride", "byteswapped", "transposed"):
        assert np.array_equal(fn.weight_norm(LAYOUTS[name](v), g), want), name
        got = fn.weight_norm_backward(LAYOUTS[name](dw), LAYOUTS[name](v), g)
        assert np.array_equal(got[0], gw[0]) and np.array_equal(got[1], gw[1]), name


def test_weight_norm_bad_input():
    v = np.ones((3, 4))
    with pytest.raises(ValueError, match="g"):
        fn.weight_norm(v, np.ones(4))
    with pytest.raises(ValueError, match="g"):
        fn.weight_norm(v, np.ones((3, 4)))
    with pytest.raises(TypeError, match="g"):
        fn.weight_norm(v, np.ones(3, int))
    with pytest.raises(TypeError, match="g"):
        fn.weight_norm(v, None)
    with pytest.raises(np.exceptions.AxisError):
        fn.weight_norm(v, np.ones(3), axis=2)
    with pytest.raises(TypeError, match="axis"):
        fn.weight_norm(v, np.ones(3), axis=1.0)
    with pytest.raises(ValueError, match="eps"):
        fn.weight_norm(v, np.ones(3), eps=-1.0)
    with pytest.raises(TypeError, match="v"):
        fn.weight_norm(np.ones((3, 4), int), np.ones(3))
    with pytest.raises(ValueError, match="dw"):
        fn.weight_norm_backward(np.ones((3, 3)), v, np.ones(3))
    with pytest.raises(TypeError, match="dw"):
        fn.weight_norm_backward(np.ones((3, 4), np.float32), v, np.ones(3))


def test_weight_norm_zero_size(isa):
    w = fn.weight_norm(np.zeros((0, 3)), np.ones((0, 1)))
    assert w.shape == (0, 3)
    dv, dg = fn.weight_norm_backward(np.zeros((0, 3)), np.zeros((0, 3)), np.ones((0, 1)))
    assert dv.shape == (0, 3) and dg.shape == (0, 1)


@pytest.mark.parametrize("vshape,axis,gshape", [((6, 5, 3), 0, (6, 1, 1)),
                                                 ((6, 5, 3), 1, (5,)),
                                                 ((6, 5, 3), None, ())],
                         ids=["rows", "middle", "all"])
def test_weight_norm_out_and_in_place(isa, dtype, vshape, axis, gshape, rng):
    v = make_array(vshape, dtype, rng)
    g = rng.uniform(0.5, 2.0, gshape).astype(dtype)
    want = fn.weight_norm(v, g, axis=axis)
    out = np.full_like(v, np.nan)
    assert fn.weight_norm(v, g, axis=axis, out=out) is out
    assert np.array_equal(out, want)
    vc = v.copy()
    assert fn.weight_norm(vc, g, axis=axis, out=vc) is vc
    assert np.array_equal(vc, want)
    # a non-contiguous out, and an out that shifts over v, go through scratch
    outF = np.asfortranarray(np.zeros_like(v))
    assert fn.weight_norm(v, g, axis=axis, out=outF) is outF
    assert np.array_equal(outF, want)
    buf = np.concatenate([v.reshape(-1), v.reshape(-1)[:1]])
    got = fn.weight_norm(buf[:-1].reshape(vshape), g, axis=axis,
                         out=buf[1:].reshape(vshape))
    assert np.array_equal(got, want)


def test_weight_norm_out_errors_leave_it_untouched(rng):
    v = make_array((4, 3), np.float64, rng)
    g = np.ones((4, 1))
    for bad in (np.zeros((4, 3), np.float32), np.zeros((3, 4)), np.zeros((4, 3))[::1, ::1]):
        before = bad.copy()
        if bad.shape == v.shape and bad.dtype == v.dtype:
            continue
        with pytest.raises((TypeError, ValueError), match="out"):
            fn.weight_norm(v, g, out=bad)
        assert np.array_equal(bad, before)
    ro = np.zeros((4, 3))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        fn.weight_norm(v, g, out=ro)


@pytest.mark.parametrize("vshape,axis,gshape", [((64, 40), 0, (64, 1)), ((40, 64), 1, (64,))],
                         ids=["rows", "columns"])
def test_weight_norm_thread_counts_give_the_same_bits(isa, dtype, vshape, axis, gshape, rng):
    v = make_array(vshape, dtype, rng)
    g = rng.uniform(0.5, 2.0, gshape).astype(dtype)
    dw = make_array(vshape, dtype, rng)
    w1 = fn.weight_norm(v, g, axis=axis, num_threads=1)
    dv1, dg1 = fn.weight_norm_backward(dw, v, g, axis=axis, num_threads=1)
    for nt in (2, 3, 8):
        assert np.array_equal(fn.weight_norm(v, g, axis=axis, num_threads=nt), w1)
        dv, dg = fn.weight_norm_backward(dw, v, g, axis=axis, num_threads=nt)
        assert np.array_equal(dv, dv1) and np.array_equal(dg, dg1)


def test_weight_norm_backward_extreme_magnitudes(isa, rng):
    """The gradient sums stay finite in float32 for |v| near the top of its range."""
    for mag in (1e36, 1e-30):
        v = (mag * rng.standard_normal((4, 500))).astype(np.float32)
        g = np.ones((4, 1), np.float32)
        dw = rng.standard_normal((4, 500)).astype(np.float32)
        dv, dg = fn.weight_norm_backward(dw, v, g)
        dve, dge = ref.weight_norm_backward(dw, v, g)
        assert np.all(np.isfinite(dv)) and np.all(np.isfinite(dg)), mag
        assert_close(dg.reshape(-1), np.reshape(dge, -1), np.float32, factor=8,
                     scale=np.abs(dw).sum(axis=1).max())
        assert_close(dv, dve, np.float32, factor=8, scale=np.abs(dve).max())


def test_parameter_gradients_keep_the_parameters_dtype(rng):
    """float32 data with float64 parameters (and the reverse): each parameter's
    gradient comes back in that parameter's dtype."""
    for xdt, pdt in ((np.float32, np.float64), (np.float64, np.float32)):
        x = make_array((4, 6, 5), xdt, rng)
        dy = make_array((4, 6, 5), xdt, rng)
        w = rng.uniform(0.5, 2.0, 6).astype(pdt)
        b = rng.standard_normal(6).astype(pdt)
        lm = np.array([0.1, -0.2, 0.3], pdt)
        lv = np.array([0.0, 0.5, -0.5], pdt)
        _, m, r = fn.group_norm(x, 3, w, b, return_stats=True)
        grads = [fn.group_norm_backward(dy, x, m, r, w, b)[1:]]
        rm, rv = np.zeros(6, xdt), np.ones(6, xdt)
        _, m, r = fn.batch_norm(x, rm, rv, w, b, training=True, return_stats=True)
        grads.append(fn.batch_norm_backward(dy, x, m, r, w, b, training=True)[1:])
        _, m, r = fn.batch_norm(x, rm, rv, w, b, training=False, return_stats=True)
        grads.append(fn.batch_norm_backward(dy, x, m, r, w, b, training=False)[1:])
        _, st = fn.switch_norm(x, w, b, lm, lv, return_stats=True)
        sg = fn.switch_norm_backward(dy, x, st, w, b, lm, lv)
        grads.append(sg[1:])
        xl = make_array((4, 3, 6), xdt, rng)
        _, st = fn.batch_layer_norm(xl, w, b, return_stats=True)
        grads.append(fn.batch_layer_norm_backward(xl, xl, st, w, b)[1:])
        for g in grads:
            for a in g:
                assert a.dtype == pdt, (xdt, pdt, [t.dtype for t in g])
        # logits left at None: their gradients in x's dtype
        _, st = fn.switch_norm(x, return_stats=True)
        g = fn.switch_norm_backward(dy, x, st)
        assert g[3].dtype == xdt and g[4].dtype == xdt


@pytest.mark.parametrize("vdt", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("vshape,axis,gshape", [((3, 5), 0, (3, 1)), ((3, 5), 1, (5,)),
                                                 ((0, 5), 0, (0,))],
                         ids=["rows", "columns", "empty"])
def test_weight_norm_gradient_of_a_list_g_in_the_computing_dtype(vdt, vshape, axis, gshape,
                                                                  rng):
    """g given as a (nested) list has no dtype of its own: dg comes back in v's
    computing dtype (float32 for 16-bit v), with the values of g as such an array."""
    cdt = np.float32 if vdt == np.float16 else vdt
    v = make_array(vshape, vdt, rng)
    dw = make_array(vshape, vdt, rng)
    ga = rng.uniform(0.5, 2.0, gshape).astype(cdt)
    dv, dg = fn.weight_norm_backward(dw, v, ga.tolist(), axis=axis)
    dv2, dg2 = fn.weight_norm_backward(dw, v, ga, axis=axis)
    assert dg.dtype == cdt and dg.shape == gshape
    assert np.array_equal(dv, dv2) and np.array_equal(dg, dg2)


# --------------------------------------------------------------------------
# Edge cases found by trying the functions as a new user would
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 8), (0, 3, 8), (2, 3, 0)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_layer_norm_backward_zero_size(shape, affine):
    """Zero-size x: an empty dx and zero parameter gradients, as every other
    backward, through the function and the layer."""
    x = np.zeros(shape, np.float32)
    D = shape[-1]
    w = np.ones(D, np.float32) if affine else None
    b = np.zeros(D, np.float32) if affine else None
    y, st = fn.batch_layer_norm(x, w, b, return_stats=True)
    dx, dw, db = fn.batch_layer_norm_backward(np.zeros_like(y), x, st, w, b)
    assert dx.shape == x.shape and dx.dtype == x.dtype
    if affine:
        assert dw.shape == (D,) and not dw.any() and db.shape == (D,) and not db.any()
    else:
        assert dw is None and db is None
    if D:  # a layer needs features
        layer = fn.nn.BatchLayerNorm(D, feature_shape=shape[1:])
        assert layer.backward(np.zeros_like(layer(x))).shape == x.shape


def test_batch_layer_norm_backward_names_stats(rng):
    x = make_array((4, 3, 8), np.float32, rng)
    _, st = fn.batch_layer_norm(x, return_stats=True)
    with pytest.raises(ValueError, match=r"stats\.feature_mean"):
        fn.batch_layer_norm_backward(x[:2], x[:2], st)


def test_batch_layer_norm_checks_inference_choices_in_training(rng):
    """inference_mean / inference_var are checked in training too (the layer
    checks them when it is built), though only eval uses them."""
    x = make_array((4, 8), np.float32, rng)
    for arg in ("inference_mean", "inference_var"):
        with pytest.raises(ValueError, match=arg):
            fn.batch_layer_norm(x, training=True, **{arg: "bogus"})


def test_batch_norm_backward_training_must_be_bool(rng):
    x = make_array((4, 3), np.float32, rng)
    _, m, r = fn.batch_norm(x, None, None, training=True, return_stats=True)
    with pytest.raises(TypeError, match="training must be a bool"):
        fn.batch_norm_backward(x, x, m, r, training=1)


def test_group_norm_backward_without_mean(rng):
    x = make_array((2, 4, 3), np.float32, rng)
    _, m, r = fn.group_norm(x, 2, return_stats=True)
    with pytest.raises(TypeError, match="mean is required"):
        fn.group_norm_backward(x, x, None, r)


def test_weight_norm_errors_name_v(rng):
    v = make_array((3, 4, 2), np.float32, rng)
    g = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="shape of v"):
        fn.weight_norm_backward(v[:2], v, g)
    with pytest.raises(TypeError, match="like v"):
        fn.weight_norm_backward(v.astype(np.float64), v, g)
    with pytest.raises(np.exceptions.AxisError, match="for v with 3"):
        fn.weight_norm(v, g, axis=3)
    with pytest.raises(ValueError, match="out must have the shape of v"):
        fn.weight_norm(v, g, out=np.empty((3, 4), np.float32))
