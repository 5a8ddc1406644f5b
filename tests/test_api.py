"""The public API: argument checking (errors name the argument, nothing is
written on error), dtype rules, configuration, threads settings, ISA choice,
and the release of the GIL."""
import re
import sys
import threading
import time

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core
from fastnorm import reference as ref
from conftest import assert_close, make_array, run_python

F32, F64 = np.float32, np.float64


def _x(shape=(4, 6), dtype=F32, seed=0):
    return make_array(shape, dtype, np.random.default_rng(seed))


def _stats(x, axis=-1):
    _, m, r = fn.layer_norm(x, axis=axis, return_stats=True)
    return m, r


def test_public_names():
    for name in ("layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
                 "set_num_threads", "get_num_threads", "show_config", "get_config",
                 "nn", "reference", "__version__"):
        assert hasattr(fn, name), name
        assert name in fn.__all__


# --------------------------------------------------------------------------
# Bad input: the right exception, naming the argument
# --------------------------------------------------------------------------

def _bad_calls():
    """(id, callable, exception, argument name) for every checked argument."""
    x = _x()
    x64 = _x(dtype=F64)
    m, r = _stats(x)
    w = np.ones(6, F32)
    dy = np.ones_like(x)
    calls = []

    def add(name, fn_, exc, arg):
        calls.append(pytest.param(fn_, exc, arg, id=name))

    for fname, func in (("layer_norm", fn.layer_norm), ("rms_norm", fn.rms_norm)):
        add(f"{fname}-x-longdouble", lambda f=func: f(x.astype(np.longdouble)), TypeError, "x")
        add(f"{fname}-x-int", lambda f=func: f(np.ones((3, 4), np.int64)), TypeError, "x")
        add(f"{fname}-x-int32", lambda f=func: f(np.ones((3, 4), np.int32)), TypeError, "x")
        add(f"{fname}-x-bool", lambda f=func: f(np.ones((3, 4), bool)), TypeError, "x")
        add(f"{fname}-x-complex", lambda f=func: f(np.ones((3, 4), np.complex128)),
            TypeError, "x")
        add(f"{fname}-x-object", lambda f=func: f(np.array([[1.0, None]], dtype=object)),
            TypeError, "x")
        add(f"{fname}-x-None", lambda f=func: f(None), TypeError, "x")
        add(f"{fname}-x-str", lambda f=func: f("abc"), TypeError, "x")
        add(f"{fname}-x-0d", lambda f=func: f(np.float32(2.0)), ValueError, "x")
        add(f"{fname}-weight-shape", lambda f=func: f(x, np.ones(5, F32)), ValueError, "weight")
        add(f"{fname}-weight-2d", lambda f=func: f(x, np.ones((1, 6), F32)), ValueError,
            "weight")
        add(f"{fname}-weight-int", lambda f=func: f(x, np.ones(6, np.int64)), TypeError,
            "weight")
        add(f"{fname}-weight-str", lambda f=func: f(x, "abc"), TypeError, "weight")
        add(f"{fname}-eps-negative", lambda f=func: f(x, eps=-1e-5), ValueError, "eps")
        add(f"{fname}-eps-nan", lambda f=func: f(x, eps=float("nan")), ValueError, "eps")
        add(f"{fname}-eps-inf", lambda f=func: f(x, eps=float("inf")), ValueError, "eps")
        add(f"{fname}-eps-str", lambda f=func: f(x, eps="1e-5"), TypeError, "eps")
        add(f"{fname}-eps-list", lambda f=func: f(x, eps=[1e-5]), TypeError, "eps")
        add(f"{fname}-eps-bool", lambda f=func: f(x, eps=True), TypeError, "eps")
        add(f"{fname}-axis-range", lambda f=func: f(x, axis=2), ValueError, "axis")
        add(f"{fname}-axis-range-neg", lambda f=func: f(x, axis=-3), ValueError, "axis")
        add(f"{fname}-axis-repeat", lambda f=func: f(x, axis=(1, -1)), ValueError, "axis")
        add(f"{fname}-axis-empty", lambda f=func: f(x, axis=()), ValueError, "axis")
        add(f"{fname}-axis-float", lambda f=func: f(x, axis=1.0), TypeError, "axis")
        add(f"{fname}-axis-None", lambda f=func: f(x, axis=None), TypeError, "axis")
        add(f"{fname}-axis-bool", lambda f=func: f(x, axis=True), TypeError, "axis")
        add(f"{fname}-axis-tuple-str", lambda f=func: f(x, axis=(0, "1")), TypeError, "axis")
        add(f"{fname}-threads-zero", lambda f=func: f(x, num_threads=0), ValueError,
            "num_threads")
        add(f"{fname}-threads-float", lambda f=func: f(x, num_threads=2.0), TypeError,
            "num_threads")
        add(f"{fname}-threads-str", lambda f=func: f(x, num_threads="2"), TypeError,
            "num_threads")
        add(f"{fname}-out-dtype", lambda f=func: f(x, out=np.empty((4, 6), F64)), TypeError,
            "out")
        add(f"{fname}-out-shape", lambda f=func: f(x, out=np.empty((4, 5), F32)), ValueError,
            "out")
        add(f"{fname}-out-list", lambda f=func: f(x, out=[[0.0] * 6] * 4), TypeError, "out")
        add(f"{fname}-out-swapped",
            lambda f=func: f(x, out=np.empty((4, 6), np.dtype(F32).newbyteorder())),
            TypeError, "out")
        add(f"{fname}-out-readonly",
            lambda f=func: f(x, out=np.broadcast_to(np.zeros(6, F32), (4, 6))),
            ValueError, "out")

    add("layer_norm-bias-shape", lambda: fn.layer_norm(x, w, np.ones(7, F32)), ValueError,
        "bias")
    add("layer_norm-bias-int", lambda: fn.layer_norm(x, w, np.ones(6, int)), TypeError, "bias")

    # backward functions
    add("lnb-dy-dtype", lambda: fn.layer_norm_backward(dy.astype(F64), x, m, r), TypeError, "dy")
    add("lnb-dy-shape", lambda: fn.layer_norm_backward(dy[:, :5], x, m, r), ValueError, "dy")
    add("lnb-dy-None", lambda: fn.layer_norm_backward(None, x, m, r), TypeError, "dy")
    add("lnb-dy-int", lambda: fn.layer_norm_backward(dy.astype(int), x, m, r), TypeError, "dy")
    add("lnb-x-int", lambda: fn.layer_norm_backward(dy, x.astype(int), m, r), TypeError, "x")
    add("lnb-x-longdouble", lambda: fn.layer_norm_backward(dy, x.astype(np.longdouble), m, r),
        TypeError, "x")
    add("lnb-mean-shape", lambda: fn.layer_norm_backward(dy, x, m[:3], r), ValueError, "mean")
    add("lnb-mean-None", lambda: fn.layer_norm_backward(dy, x, None, r), TypeError, "mean")
    add("lnb-mean-int", lambda: fn.layer_norm_backward(dy, x, m.astype(int), r), TypeError,
        "mean")
    add("lnb-rstd-shape", lambda: fn.layer_norm_backward(dy, x, m, r[None]), ValueError, "rstd")
    add("lnb-rstd-None", lambda: fn.layer_norm_backward(dy, x, m, None), TypeError, "rstd")
    add("lnb-weight-shape", lambda: fn.layer_norm_backward(dy, x, m, r, w[:4]), ValueError,
        "weight")
    add("lnb-weight-int", lambda: fn.layer_norm_backward(dy, x, m, r, np.ones(6, int)),
        TypeError, "weight")
    add("lnb-axis", lambda: fn.layer_norm_backward(dy, x, m, r, axis=3), ValueError, "axis")
    add("lnb-axis-stats", lambda: fn.layer_norm_backward(dy, x, m, r, axis=0), ValueError,
        "mean")
    add("lnb-threads", lambda: fn.layer_norm_backward(dy, x, m, r, num_threads=0), ValueError,
        "num_threads")
    add("rnb-dy-dtype", lambda: fn.rms_norm_backward(dy.astype(F64), x, r), TypeError, "dy")
    add("rnb-dy-shape", lambda: fn.rms_norm_backward(dy.T, x, r), ValueError, "dy")
    add("rnb-x-int", lambda: fn.rms_norm_backward(dy, x.astype(int), r), TypeError, "x")
    add("rnb-rstd-shape", lambda: fn.rms_norm_backward(dy, x, r[:2]), ValueError, "rstd")
    add("rnb-rstd-None", lambda: fn.rms_norm_backward(dy, x, None), TypeError, "rstd")
    add("rnb-rstd-int", lambda: fn.rms_norm_backward(dy, x, r.astype(int)), TypeError, "rstd")
    add("rnb-weight-shape", lambda: fn.rms_norm_backward(dy, x, r, np.ones(3, F32)), ValueError,
        "weight")
    add("rnb-axis", lambda: fn.rms_norm_backward(dy, x, r, axis=(0, 0)), ValueError, "axis")
    add("rnb-threads", lambda: fn.rms_norm_backward(dy, x, r, num_threads=1.5), TypeError,
        "num_threads")
    # x64 with float32 dy
    add("lnb-dy-mixed", lambda: fn.layer_norm_backward(dy, x64, *_stats(x64)), TypeError, "dy")
    return calls


@pytest.mark.parametrize("call,exc,arg", _bad_calls())
def test_bad_input_names_the_argument(call, exc, arg):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    assert re.search(rf"\b{arg}\b", msg), f"message does not name {arg!r}: {msg!r}"


def test_axis_error_is_numpy_axis_error():
    with pytest.raises(np.exceptions.AxisError):
        fn.layer_norm(_x(), axis=5)
    with pytest.raises(np.exceptions.AxisError):
        fn.rms_norm(_x(), axis=(0, -3))


@pytest.mark.parametrize("func", ["layer_norm", "rms_norm"])
@pytest.mark.parametrize("huge", [2**70, -(2**70)], ids=["big", "big-negative"])
def test_huge_num_threads(func, huge):
    """A thread count beyond C's long is either clamped (the documented upper bound /
    count back to 1) or refused with a ValueError naming num_threads -- never an
    OverflowError that names nothing."""
    f = getattr(fn, func)
    x = _x((8, 32))
    try:
        y = f(x, num_threads=huge)
    except (ValueError, TypeError) as exc:
        assert "num_threads" in str(exc)
    else:
        assert np.array_equal(y, f(x, num_threads=1))


@pytest.mark.parametrize("func", ["layer_norm", "rms_norm"])
def test_huge_integer_eps(func):
    """eps=10**400 is not a finite float: a ValueError/TypeError naming eps."""
    with pytest.raises((ValueError, TypeError)) as info:
        getattr(fn, func)(_x(), eps=10**400)
    assert "eps" in str(info.value)


def _sentinel_out(shape=(4, 6), dtype=F32):
    out = np.full(shape, 7.25, dtype)
    return out, out.copy()


def _bad_with_out():
    x = _x()
    cases = []

    def add(name, f):
        cases.append(pytest.param(f, id=name))

    for fname, func in (("ln", fn.layer_norm), ("rms", fn.rms_norm)):
        add(f"{fname}-eps", lambda out, f=func: f(x, eps=-1.0, out=out))
        add(f"{fname}-eps-type", lambda out, f=func: f(x, eps="x", out=out))
        add(f"{fname}-axis", lambda out, f=func: f(x, axis=7, out=out))
        add(f"{fname}-weight", lambda out, f=func: f(x, np.ones(3, F32), out=out))
        add(f"{fname}-weight-type", lambda out, f=func: f(x, np.ones(6, int), out=out))
        add(f"{fname}-threads", lambda out, f=func: f(x, num_threads=0, out=out))
        add(f"{fname}-x", lambda out, f=func: f(x.astype(np.float16), out=out))
    add("ln-bias", lambda out: fn.layer_norm(x, None, np.ones(5, F32), out=out))
    add("ln-bias-type", lambda out: fn.layer_norm(x, None, "b", out=out))
    return cases


@pytest.mark.parametrize("call", _bad_with_out())
def test_out_unchanged_after_error(call):
    out, before = _sentinel_out()
    with pytest.raises((ValueError, TypeError)):
        call(out)
    assert np.array_equal(out, before)


@pytest.mark.parametrize("func", [fn.layer_norm, fn.rms_norm], ids=["ln", "rms"])
def test_in_place_x_unchanged_after_error(func):
    x = _x()
    before = x.copy()
    with pytest.raises(ValueError):
        func(x, np.ones(5, F32), out=x)
    with pytest.raises(ValueError):
        func(x, eps=-1.0, out=x)
    assert np.array_equal(x, before)


def test_inputs_never_modified(isa):
    rng = np.random.default_rng(5)
    x = make_array((8, 12), F32, rng)
    w, b = make_array((12,), F32, rng), make_array((12,), F32, rng)
    dy = make_array((8, 12), F32, rng)
    copies = [a.copy() for a in (x, w, b, dy)]
    _, m, r = fn.layer_norm(x, w, b, return_stats=True)
    mc, rc = m.copy(), r.copy()
    fn.layer_norm_backward(dy, x, m, r, w)
    _, r2 = fn.rms_norm(x, w, return_stats=True)
    r2c = r2.copy()
    fn.rms_norm_backward(dy, x, r2, w)
    for a, c in zip((x, w, b, dy, m, r, r2), copies + [mc, rc, r2c]):
        assert np.array_equal(a, c)


# --------------------------------------------------------------------------
# Dtype rules
# --------------------------------------------------------------------------

@pytest.mark.parametrize("xdt,wdt", [(F32, F64), (F64, F32), (F32, np.float16),
                                     (F64, np.float16)])
def test_mixed_parameter_dtypes(isa, xdt, wdt):
    rng = np.random.default_rng(6)
    x = make_array((6, 10), xdt, rng)
    w = make_array((10,), wdt, rng)
    b = make_array((10,), wdt, rng)
    wx, bx = w.astype(xdt), b.astype(xdt)
    # forward: converted to x's dtype, result in x's dtype
    y, m, r = fn.layer_norm(x, w, b, return_stats=True)
    assert y.dtype == xdt and m.dtype == xdt and r.dtype == xdt
    assert np.array_equal(y, fn.layer_norm(x, wx, bx))
    yr, rr = fn.rms_norm(x, w, return_stats=True)
    assert yr.dtype == xdt and rr.dtype == xdt
    assert np.array_equal(yr, fn.rms_norm(x, wx))
    # backward: dweight/dbias in the weight's dtype, with the values of the x-dtype computation
    dy = make_array((6, 10), xdt, rng)
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w)
    dx2, dw2, db2 = fn.layer_norm_backward(dy, x, m, r, wx)
    assert dx.dtype == xdt and dw.dtype == wdt and db.dtype == wdt
    assert np.array_equal(dx, dx2)
    assert np.array_equal(dw, dw2.astype(wdt)) and np.array_equal(db, db2.astype(wdt))
    dx, dw = fn.rms_norm_backward(dy, x, rr, w)
    dx2, dw2 = fn.rms_norm_backward(dy, x, rr, wx)
    assert dx.dtype == xdt and dw.dtype == wdt
    assert np.array_equal(dx, dx2) and np.array_equal(dw, dw2.astype(wdt))


def test_parameter_gradients_in_x_dtype_without_weight():
    for dt in (F32, F64):
        x = _x(dtype=dt)
        m, r = _stats(x)
        _, dw, db = fn.layer_norm_backward(np.ones_like(x), x, m, r)
        assert dw.dtype == dt and db.dtype == dt
        _, r2 = fn.rms_norm(x, return_stats=True)
        _, dw = fn.rms_norm_backward(np.ones_like(x), x, r2)
        assert dw.dtype == dt


@pytest.mark.parametrize("xdt", [F32, F64, np.float16])
def test_parameter_gradients_of_a_list_weight_in_the_computing_dtype(xdt):
    """A weight given as a list has no dtype of its own: its gradients come back
    in the computing dtype (x's, float32 for 16-bit x), with the values of the
    same call given the weight as an array of that dtype."""
    cdt = np.float32 if xdt == np.float16 else xdt
    x = _x((4, 5), xdt)
    dy = _x((4, 5), xdt, seed=1)
    wl = [1.0, 0.5, 2.0, -1.0, 1.5]
    wa = np.array(wl, cdt)
    _, m, r = fn.layer_norm(x, wl, return_stats=True)
    got = fn.layer_norm_backward(dy, x, m, r, wl)
    want = fn.layer_norm_backward(dy, x, m, r, wa)
    assert got[1].dtype == cdt and got[2].dtype == cdt
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and np.array_equal(g, w)
    _, r2 = fn.rms_norm(x, wl, return_stats=True)
    got = fn.rms_norm_backward(dy, x, r2, wl)
    assert got[1].dtype == cdt
    assert np.array_equal(got[1], fn.rms_norm_backward(dy, x, r2, wa)[1])
    _, s, m, r = fn.add_layer_norm(x, x, wl, return_stats=True)
    got = fn.add_layer_norm_backward(dy, s, m, r, wl)
    assert all(g.dtype == cdt for g in got[1:])
    _, s, r2 = fn.add_rms_norm(x, x, wl, return_stats=True)
    got = fn.add_rms_norm_backward(dy, s, r2, wl)
    assert all(g.dtype == cdt for g in got[1:])
    # over a middle axis too (the axis kernels)
    x3 = _x((2, 5, 3), xdt)
    _, m, r = fn.layer_norm(x3, wl, axis=1, return_stats=True)
    got = fn.layer_norm_backward(x3, x3, m, r, wl, axis=1)
    assert got[1].dtype == cdt and got[2].dtype == cdt


def test_statistics_of_another_float_dtype_are_converted():
    x = _x(dtype=F32)
    dy = _x(dtype=F32, seed=1)
    m, r = _stats(x)
    want = fn.layer_norm_backward(dy, x, m, r)
    got = fn.layer_norm_backward(dy, x, m.astype(F64), r.astype(F64))
    for g, w in zip(got, want):
        assert np.array_equal(g, w)
    # byte-swapped statistics and parameters too
    sw = np.dtype(F32).newbyteorder()
    got = fn.layer_norm_backward(dy, x, m.astype(sw), r.astype(sw))
    for g, w in zip(got, want):
        assert np.array_equal(g, w)


def test_byteswapped_inputs_everywhere(isa):
    rng = np.random.default_rng(7)
    for dt in (F32, F64):
        sw = np.dtype(dt).newbyteorder()
        x = make_array((5, 9), dt, rng)
        w, b, dy = make_array((9,), dt, rng), make_array((9,), dt, rng), make_array((5, 9), dt, rng)
        y, m, r = fn.layer_norm(x, w, b, return_stats=True)
        ys, ms, rs = fn.layer_norm(x.astype(sw), w.astype(sw), b.astype(sw), return_stats=True)
        assert ys.dtype.isnative
        assert np.array_equal(ys, y) and np.array_equal(ms, m) and np.array_equal(rs, r)
        g = fn.layer_norm_backward(dy, x, m, r, w)
        gs = fn.layer_norm_backward(dy.astype(sw), x.astype(sw), m.astype(sw), r.astype(sw),
                                    w.astype(sw))
        for a, c in zip(gs, g):
            assert np.array_equal(a, c)
        yr, rr = fn.rms_norm(x, w, return_stats=True)
        assert np.array_equal(fn.rms_norm(x.astype(sw), w.astype(sw)), yr)
        g = fn.rms_norm_backward(dy, x, rr, w)
        gs = fn.rms_norm_backward(dy.astype(sw), x.astype(sw), rr.astype(sw), w.astype(sw))
        for a, c in zip(gs, g):
            assert np.array_equal(a, c)


def test_array_likes_and_integer_axis_types():
    x = _x(dtype=F64)
    assert np.array_equal(fn.layer_norm(x.tolist()), fn.layer_norm(x))
    assert np.array_equal(fn.layer_norm(x, axis=np.int64(0)), fn.layer_norm(x, axis=0))
    assert np.array_equal(fn.rms_norm(x, axis=[np.int32(0), 1]), fn.rms_norm(x, axis=(0, 1)))
    w = list(np.linspace(0.5, 1.5, 6))
    assert np.array_equal(fn.layer_norm(x, w), fn.layer_norm(x, np.array(w)))
    assert np.array_equal(fn.layer_norm(x, eps=np.float32(0.5)), fn.layer_norm(x, eps=0.5))
    assert np.array_equal(fn.layer_norm(x, eps=1), fn.layer_norm(x, eps=1.0))
    assert np.array_equal(fn.layer_norm(x, num_threads=np.int64(1)), fn.layer_norm(x))


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_ndarray_subclass_input():
    x = _x(dtype=F64)
    m = np.asmatrix(x)
    assert np.allclose(np.asarray(fn.layer_norm(m)), fn.layer_norm(x))


# --------------------------------------------------------------------------
# Zero-size arrays through the API
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dt", [F32, F64])
def test_zero_rows_results(dt):
    """A batch of zero rows: empty outputs; parameter gradients are sums over no rows."""
    base = np.ones((3, 8), dt)
    for x in (np.empty((0, 8), dt), base[:0]):
        y, m, r = fn.layer_norm(x, return_stats=True)
        assert y.shape == (0, 8) and m.shape == (0,) and r.shape == (0,)
        dx, dw, db = fn.layer_norm_backward(x, x, m, r, np.ones(8, dt))
        assert dx.shape == (0, 8)
        assert np.array_equal(dw, np.zeros(8)) and np.array_equal(db, np.zeros(8)), (dw, db)
        _, r2 = fn.rms_norm(x, return_stats=True)
        dx, dw = fn.rms_norm_backward(x, x, r2)
        assert np.array_equal(dw, np.zeros(8)), dw


# --------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------

TARGETS = [name for name, _, _ in _core._targets()]
BUILT = {name: built for name, _, built, _ in _core._TARGETS}
# The FASTNORM_CPU_* bits each target needs, by the names of _cpu_features()
TARGET_FEATURES = {
    "scalar": [],
    "avx2": ["avx", "avx2", "fma", "f16c", "os_avx"],
    "avx512": ["avx", "avx2", "fma", "f16c", "os_avx", "avx512f", "avx512vl", "avx512dq",
               "avx512bw", "os_avx512"],
}


def test_get_config():
    cfg = fn.get_config()
    assert set(cfg) == {"version", "isa", "isas_available", "targets", "bf16_rounding",
                        "cpu_features", "machine", "threads", "num_threads", "num_procs"}
    assert cfg["version"] == fn.__version__
    assert cfg["isa"] == _core._get_isa()
    assert cfg["isa"] in cfg["isas_available"]
    assert "scalar" in cfg["isas_available"]
    assert set(cfg["isas_available"]) <= {"scalar", "avx2", "avx512"}
    # every target of the registry, best first, the available ones those listed
    targets = cfg["targets"]
    assert list(targets) == ["avx512", "avx2", "scalar"]
    assert [name for name, t in targets.items() if t["available"]] == \
        cfg["isas_available"][::-1]
    assert [name for name, t in targets.items() if t["in_use"]] == [cfg["isa"]]
    for t in targets.values():
        assert set(t) == {"available", "in_use", "reason"}
        assert (t["reason"] is None) == t["available"]
    assert cfg["threads"] in ("fastnorm pool", "serial")
    assert cfg["threads"] == ("fastnorm pool" if _core._has_threads() else "serial")
    assert cfg["num_threads"] == fn.get_num_threads() >= 1
    assert cfg["num_procs"] >= 1
    feats = cfg["cpu_features"]
    assert set(feats) == {"avx", "avx2", "fma", "f16c", "os_avx", "avx512f", "avx512vl",
                          "avx512dq", "avx512bw", "avx512_bf16", "os_avx512"}
    assert all(isinstance(v, bool) for v in feats.values())
    if "avx2" in cfg["isas_available"]:
        assert feats["avx2"] and feats["fma"] and feats["avx"] and feats["os_avx"]
    if "avx512" in cfg["isas_available"]:
        assert all(feats[k] for k in ("avx512f", "avx512vl", "avx512dq", "avx512bw",
                                      "os_avx512"))
    # the AVX-512 BF16 rounding only in the avx2 and avx512 targets, on a CPU that has it
    assert cfg["bf16_rounding"] in ("integer", "avx512_bf16")
    if cfg["bf16_rounding"] == "avx512_bf16":
        assert cfg["isa"] in ("avx2", "avx512")
        assert all(feats[k] for k in ("avx512f", "avx512vl", "avx512dq", "avx512bw",
                                      "avx512_bf16", "os_avx512"))
    assert isinstance(cfg["machine"], str)


def test_get_config_follows_settings():
    fn.set_num_threads(1)
    assert fn.get_config()["num_threads"] == 1
    try:
        for name in _core._available_isas():
            _core._set_isa(name)
            cfg = fn.get_config()
            assert cfg["isa"] == name
            assert cfg["targets"][name]["in_use"]
            assert sum(t["in_use"] for t in cfg["targets"].values()) == 1
            if name == "scalar":
                assert cfg["bf16_rounding"] == "integer"  # the scalar kernels' own
    finally:
        _core._set_isa("auto")
    assert fn.get_config()["isa"] == fn.get_config()["isas_available"][-1]


def test_show_config(capsys):
    assert fn.show_config() is None
    text = capsys.readouterr().out
    cfg = fn.get_config()
    assert cfg["version"] in text
    assert f"kernels in use : {cfg['isa']}\n" in text
    assert str(cfg["num_threads"]) in text
    assert cfg["threads"] in text
    # one line per target, best first, saying whether it is in use or available
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("  kernel targets : "))
    rows = [line[len("  kernel targets : "):].split(None, 1)
            for line in lines[first:first + len(cfg["targets"])]]
    assert [name for name, _ in rows] == list(cfg["targets"])
    for name, state in rows:
        t = cfg["targets"][name]
        want = ("in use" if t["in_use"] else "available" if t["available"]
                else f"unavailable: {t['reason']}")
        assert state == want
    assert f"bf16 rounding  : {cfg['bf16_rounding']}" in text


def test_show_config_says_why_a_target_is_unavailable(capsys):
    _core._set_isa("scalar")
    before = _core._hide_cpu_features(["avx2"])
    try:
        fn.show_config()
        cfg = fn.get_config()
    finally:
        _core._hide_cpu_features(before)
        _core._set_isa("auto")
    text = capsys.readouterr().out
    assert cfg["isas_available"] == ["scalar"]
    for name in ("avx2", "avx512"):
        t = cfg["targets"][name]
        assert not t["available"] and not t["in_use"]
        assert t["reason"] == ("the CPU or OS lacks avx2" if BUILT[name]
                               else "this build of fastnorm does not include them")
        assert re.search(rf"^ +(kernel targets : )?{name} +unavailable: {re.escape(t['reason'])}$", text, re.M)


# --------------------------------------------------------------------------
# Kernel target selection
# --------------------------------------------------------------------------

def test_set_isa():
    assert TARGETS == ["avx512", "avx2", "scalar"]
    needs = {name: [f for f, bit in _core._CPU_BITS.items() if need & bit]
             for name, _, _, need in _core._TARGETS}
    assert needs == TARGET_FEATURES
    try:
        for name in _core._available_isas():
            assert _core._set_isa(name) == name
            assert _core._get_isa() == name
        auto = _core._set_isa("auto")
        assert auto == _core._available_isas()[-1]
        with pytest.raises(ValueError, match="unknown kernel target 'sse9'"):
            _core._set_isa("sse9")
        assert _core._get_isa() == auto  # unchanged after the error
    finally:
        _core._set_isa("auto")


@pytest.mark.parametrize("target", ["avx2", "avx512"])
def test_set_isa_refuses_an_unavailable_target(target):
    """Forcing a target this build or CPU lacks is a ValueError that names the
    target and the reason, and changes nothing; the C entry point returns -1.
    Where the machine has the target, its CPU features are hidden from the
    selection (as on a CPU without them)."""
    hidden = TARGET_FEATURES[target][-1:] if BUILT[target] else []
    _core._set_isa("scalar")
    before = _core._hide_cpu_features(hidden)
    try:
        assert target not in _core._available_isas()
        with pytest.raises(ValueError) as info:
            _core._set_isa(target)
        msg = str(info.value)
        assert f"the {target} kernels are not available" in msg
        if BUILT[target]:
            assert msg.endswith("the CPU or OS lacks " + ", ".join(hidden))
        else:
            assert "this build of fastnorm does not include them" in msg
        assert _core._get_isa() == "scalar"
        # the C API: -1, nothing changed
        import ctypes

        lib = ctypes.CDLL(_core.__file__)
        code = {"scalar": 0, "avx2": 1, "avx512": 2}
        assert lib.fastnorm_isa_available(code[target]) == 0
        assert lib.fastnorm_set_isa(code[target]) == -1
        assert lib.fastnorm_set_isa(99) == -1
        assert lib.fastnorm_get_isa() == code["scalar"] and _core._get_isa() == "scalar"
    finally:
        _core._hide_cpu_features(before)
        _core._set_isa("auto")


def test_hidden_features_leave_the_target_in_use():
    _core._set_isa("auto")
    best = _core._get_isa()
    before = _core._hide_cpu_features(list(_core._cpu_features()))
    try:
        assert _core._get_isa() == best
        assert _core._available_isas() == ["scalar"]
        assert not any(_core._cpu_features().values())
        assert _core._set_isa("auto") == "scalar"
    finally:
        assert set(_core._hide_cpu_features(before)) == set(_core._cpu_features())
        _core._set_isa("auto")
    assert _core._get_isa() == best
    with pytest.raises(ValueError, match="unknown CPU feature 'sse9'"):
        _core._hide_cpu_features(["sse9"])


@pytest.mark.skipif(len(_core._available_isas()) < 2, reason="one kernel table only")
def test_isas_agree_closely():
    rng = np.random.default_rng(8)
    x = make_array((16, 100), F32, rng)
    res = {}
    try:
        for name in _core._available_isas():
            _core._set_isa(name)
            res[name] = fn.layer_norm(x)
    finally:
        _core._set_isa("auto")
    assert_close(res["avx2"], res["scalar"], F32)
    assert_close(res["avx2"], ref.layer_norm(x)[0], F32)
    if "avx512" in res:  # float32 has the avx2 target's kernels there
        assert np.array_equal(res["avx512"].view(np.uint32), res["avx2"].view(np.uint32))


def test_environment_selects_the_target():
    import json

    code = "import fastnorm, json; print(json.dumps(fastnorm.get_config()))"
    for name in _core._available_isas():
        proc = run_python(code, {"FASTNORM_ISA": name})
        assert proc.returncode == 0, proc.stderr
        cfg = json.loads(proc.stdout.strip().splitlines()[-1])
        assert cfg["isa"] == name
        assert cfg["targets"][name]["in_use"]
    # and without the variable (or with auto), the best table is used
    for env in ({}, {"FASTNORM_ISA": "auto"}, {"FASTNORM_ISA": ""}):
        proc = run_python(code, env)
        assert proc.returncode == 0, proc.stderr
        cfg2 = json.loads(proc.stdout.strip().splitlines()[-1])
        assert cfg2["isa"] == cfg2["isas_available"][-1]


def test_environment_with_a_bad_target_fails_the_import(monkeypatch):
    proc = run_python("import fastnorm", {"FASTNORM_ISA": "bogus"})
    assert proc.returncode != 0
    assert "ImportError: FASTNORM_ISA='bogus': unknown kernel target 'bogus'" in proc.stderr
    # a target this CPU lacks: the import's selection, with the features hidden
    _core._set_isa("scalar")
    before = _core._hide_cpu_features(["avx2"])
    try:
        for target in ("avx2", "avx512"):
            monkeypatch.setenv("FASTNORM_ISA", target)
            with pytest.raises(ImportError) as info:
                _core._select_isa_from_environment()
            reason = ("the CPU or OS lacks avx2" if BUILT[target]
                      else "this build of fastnorm does not include them")
            assert str(info.value) == (
                f"FASTNORM_ISA='{target}': the {target} kernels are not available: {reason}")
            assert _core._get_isa() == "scalar"
        monkeypatch.setenv("FASTNORM_ISA", "auto")
        assert _core._select_isa_from_environment() == "scalar"
    finally:
        _core._hide_cpu_features(before)
        _core._set_isa("auto")


# --------------------------------------------------------------------------
# Threads settings
# --------------------------------------------------------------------------

def test_set_get_num_threads():
    default = fn.get_num_threads()
    assert default >= 1
    omp = fn.get_config()["threads"] != "serial"
    procs = fn.get_config()["num_procs"]
    fn.set_num_threads(3)
    assert fn.get_num_threads() == (min(3, procs) if omp else 1)
    fn.set_num_threads(np.int64(2))
    assert fn.get_num_threads() == (min(2, procs) if omp else 1)
    fn.set_num_threads(None)
    assert fn.get_num_threads() == default
    if omp:
        fn.set_num_threads(-1)
        assert fn.get_num_threads() == default
        fn.set_num_threads(-10**6)
        assert fn.get_num_threads() == 1
    else:
        fn.set_num_threads(4)
        assert fn.get_num_threads() == 1


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (1.5, TypeError), ("2", TypeError),
                                     (True, TypeError), (np.int64(0), ValueError)])
def test_set_num_threads_errors(bad, exc):
    fn.set_num_threads(2)
    before = fn.get_num_threads()
    with pytest.raises(exc) as info:
        fn.set_num_threads(bad)
    assert re.search(r"\bn\b", str(info.value)), str(info.value)
    assert fn.get_num_threads() == before  # unchanged


def test_negative_num_threads_in_calls():
    x = _x((64, 64))
    want = fn.layer_norm(x, num_threads=1)
    for nt in (-1, -2, -1000):
        assert np.array_equal(fn.layer_norm(x, num_threads=nt), want)
        assert np.array_equal(fn.rms_norm(x, num_threads=nt), fn.rms_norm(x, num_threads=1))


# --------------------------------------------------------------------------
# The GIL is released during the kernels
# --------------------------------------------------------------------------

def test_concurrent_calls_from_python_threads():
    rng = np.random.default_rng(9)
    xs = [make_array((1024, 1024), F32, rng) for _ in range(2)]
    ws = [make_array((1024,), F32, rng) for _ in range(2)]
    want = [fn.layer_norm(x, w, return_stats=True) for x, w in zip(xs, ws)]
    want_rms = [fn.rms_norm(x, w) for x, w in zip(xs, ws)]
    errors = []
    barrier = threading.Barrier(2)

    def work(i):
        try:
            barrier.wait()
            for _ in range(5):
                y, m, r = fn.layer_norm(xs[i], ws[i], return_stats=True)
                assert all(np.array_equal(a, b) for a, b in zip((y, m, r), want[i]))
                assert np.array_equal(fn.rms_norm(xs[i], ws[i]), want_rms[i])
                dx, dw, db = fn.layer_norm_backward(xs[1 - i], xs[i], m, r, ws[i])
                assert np.all(np.isfinite(dx))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors


def test_gil_is_released():
    """While one thread is inside a long kernel, another Python thread keeps running.

    The worker notes the time just before and just after one long call; the main
    thread notes the time at every turn of a loop. Were the GIL held inside the
    kernel, no turn could happen well inside that interval (the margins cover a
    switch just before the call and just after it). Checked to count 0 turns for
    a GIL-holding call (str.count on a long string) of similar length."""
    x = make_array((8192, 2048), F32, np.random.default_rng(10))  # 64 MiB
    out = np.empty_like(x)
    fn.layer_norm(x, out=out, num_threads=1)  # warm up (pages of out)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.001)
    try:
        _check_progress_during_kernel(x, out)
    finally:
        sys.setswitchinterval(old_interval)


def _check_progress_during_kernel(x, out):
    margin = 0.006  # a few switch intervals: the worker may switch just before/after the call
    seen = []
    for attempt in range(5):
        span = {}
        started = threading.Event()

        def worker():
            started.set()
            span["t0"] = time.perf_counter()
            fn.layer_norm(x, out=out, num_threads=1)
            span["t1"] = time.perf_counter()

        stamps = []
        t = threading.Thread(target=worker)
        t.start()
        started.wait()
        while t.is_alive():
            stamps.append(time.perf_counter())
        t.join()
        t0, t1 = span["t0"], span["t1"]
        inside = sum(1 for s in stamps if t0 + margin < s < t1 - margin)
        seen.append((round(t1 - t0, 4), inside))
        if t1 - t0 > 3 * margin:
            if inside > 10:
                return
        elif x.shape[0] < 65536:  # too fast a machine: a longer call
            x = np.concatenate([x, x])
            out = np.empty_like(x)
    pytest.fail(f"no Python progress during the kernel (duration s, turns inside): {seen}")
