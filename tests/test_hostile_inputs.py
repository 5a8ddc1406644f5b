"""Inputs a hostile or careless caller may pass, each once found to break a
contract: huge thread requests, cancelling gradient terms, outputs that alias
running statistics, absurd group counts, forged statistics, NaN bits that
followed the thread count."""
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnorm as fn


def _run(code):
    """Run code in a fresh interpreter: a crash there fails the test instead
    of ending the test run."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# --------------------------------------------------------------------------
# Thread requests far above the machine
# --------------------------------------------------------------------------

def test_huge_thread_requests_run_on_the_processors_there_are():
    out = _run("""
        import os, numpy as np, fastnorm as fn
        x = np.ones((100_000, 8), np.float32)
        w = np.ones(8, np.float32)
        ref = fn.layer_norm(x, w, num_threads=1)
        for n in (10**6, 40_000, 1000):
            assert np.array_equal(fn.layer_norm(x, w, num_threads=n), ref)
        fn.set_num_threads(10**6)
        procs = fn.get_config()["num_procs"]
        assert fn.get_num_threads() <= max(1, procs), fn.get_num_threads()
        xc = np.ones((64, 32, 64, 64), np.float32)
        fn.group_norm(xc, 8)
        fn.batch_norm(xc, np.zeros(32, np.float32), np.ones(32, np.float32), training=True)
        fn.weight_norm(np.ones((4096, 256), np.float32), np.ones(4096, np.float32))
        tasks = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 0
        print(procs, tasks)
    """)
    procs, tasks = map(int, out.split())
    # the threads the runtime keeps are about one per processor, never one per request
    assert tasks <= 2 * procs + 8, (procs, tasks)


# --------------------------------------------------------------------------
# Gradients from centered values (no cancellation of terms of the offset's size)
# --------------------------------------------------------------------------

def _bln(x):
    C = x.shape[1:]
    return fn.batch_layer_norm(x, None, None, np.zeros(C, x.dtype), np.ones(C, x.dtype),
                               training=False, batch_size=3, eps=1e-5,
                               inference_mean="population", inference_var="batch",
                               return_stats=True)


@pytest.mark.parametrize("batch", [1, 2, 4])
def test_batch_layer_norm_backward_population_mean_batch_variance(batch):
    rng = np.random.default_rng(batch)
    x32 = (30 + rng.standard_normal((batch, 2, 9))).astype(np.float32)
    dy32 = rng.standard_normal(x32.shape).astype(np.float32)
    x64, dy64 = x32.astype(np.float64), dy32.astype(np.float64)
    dx32 = fn.batch_layer_norm_backward(dy32, x32, _bln(x32)[1])[0]
    dx64 = fn.batch_layer_norm_backward(dy64, x64, _bln(x64)[1])[0]
    assert np.max(np.abs(dx32 - dx64)) <= 1e-5 * max(1.0, np.max(np.abs(dx64)))
    # the float64 gradient against central differences of the forward
    h = 1e-6
    for idx in [(0, 0, 0), (batch - 1, 1, 8), (0, 1, 4)]:
        xp, xm = x64.copy(), x64.copy()
        xp[idx] += h
        xm[idx] -= h
        fd = (np.sum(dy64 * _bln(xp)[0]) - np.sum(dy64 * _bln(xm)[0])) / (2 * h)
        assert abs(dx64[idx] - fd) <= 1e-6 * max(1.0, abs(fd)), (idx, dx64[idx], fd)


@pytest.mark.parametrize("offset", [1e4, -3e3])
def test_switch_norm_backward_eval_single_value(offset):
    rm, rv = np.array([0.3]), np.array([2.0])

    def f(v, dt=np.float64):
        x = np.array([[v]], dt)
        return fn.switch_norm(x, running_mean=rm.astype(dt), running_var=rv.astype(dt),
                              training=False, return_stats=True)

    h = 1e-3
    fd = (f(offset + h)[0].sum() - f(offset - h)[0].sum()) / (2 * h)
    for dt in (np.float32, np.float64):
        x = np.array([[offset]], dt)
        dx = fn.switch_norm_backward(np.ones_like(x), x, f(offset, dt)[1])[0]
        assert abs(float(dx[0, 0]) - fd) <= 1e-5 * max(1.0, abs(fd)), (dt, dx, fd)


def test_switch_norm_backward_error_independent_of_offset():
    rng = np.random.default_rng(7)
    noise = rng.standard_normal((3, 4, 5))
    dy = rng.standard_normal(noise.shape)
    mw, vw = rng.standard_normal(3), rng.standard_normal(3)
    for offset in (0.0, 1e4):
        x32 = (offset + noise).astype(np.float32)
        res = {}
        for dt in (np.float32, np.float64):
            x = x32.astype(dt)
            _, st = fn.switch_norm(x, mean_weight=mw, var_weight=vw, running_mean=np.zeros(4, dt),
                                   running_var=np.ones(4, dt), return_stats=True)
            res[dt] = fn.switch_norm_backward(dy.astype(dt), x, st, mean_weight=mw,
                                              var_weight=vw)[0].astype(np.float64)
        scale = np.max(np.abs(res[np.float64]))
        assert np.max(np.abs(res[np.float32] - res[np.float64])) <= 1e-5 * scale, offset


# --------------------------------------------------------------------------
# out aliasing running statistics that the same call updates
# --------------------------------------------------------------------------

def _aliased(shape, C):
    buf = np.zeros(int(np.prod(shape)), np.float32)
    out = buf.reshape(shape)
    rm, rv = buf[:C], buf[C:2 * C]
    rv[:] = 1
    return buf, out, rm, rv


CALLS = {
    "batch_norm": lambda x, out, rm, rv: fn.batch_norm(x, rm, rv, training=True, out=out),
    "instance_norm": lambda x, out, rm, rv: fn.instance_norm(x, running_mean=rm, running_var=rv,
                                                             training=True, out=out),
    "switch_norm": lambda x, out, rm, rv: fn.switch_norm(x, running_mean=rm, running_var=rv,
                                                         training=True, out=out),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_training_refuses_out_over_running_statistics(name):
    x = np.random.default_rng(3).standard_normal((8, 3, 4)).astype(np.float32)
    buf, out, rm, rv = _aliased(x.shape, 3)
    before, x_before = buf.copy(), x.copy()
    with pytest.raises(ValueError, match="out"):
        CALLS[name](x, out, rm, rv)
    assert np.array_equal(buf, before) and np.array_equal(x, x_before)


def test_batch_layer_norm_training_refuses_out_over_running_statistics():
    x = np.random.default_rng(4).standard_normal((4, 2, 3)).astype(np.float32)
    buf = np.zeros(x.size, np.float32)
    out = buf.reshape(x.shape)
    rm, rv = buf[:6].reshape(2, 3), buf[6:12].reshape(2, 3)
    rv[...] = 1
    before = buf.copy()
    with pytest.raises(ValueError, match="out"):
        fn.batch_layer_norm(x, None, None, rm, rv, training=True, out=out)
    assert np.array_equal(buf, before)


# --------------------------------------------------------------------------
# Group counts
# --------------------------------------------------------------------------

@pytest.mark.parametrize("G", [2, 2**27, 2**33, 2**70])
def test_group_norm_on_no_channels_takes_one_group(G):
    x = np.ones((2, 0, 3), np.float32)
    with pytest.raises(ValueError, match="num_groups"):
        fn.group_norm(x, G)
    y, mean, rstd = fn.group_norm(x, 1, return_stats=True)
    assert y.shape == x.shape and mean.shape == (2, 1) and np.isnan(mean).all()


@pytest.mark.parametrize("G", [8, 5, 2**40])
def test_group_norm_num_groups_at_most_channels(G):
    x = np.ones((2, 4, 3), np.float32)
    with pytest.raises(ValueError, match="num_groups"):
        fn.group_norm(x, G)
    with pytest.raises(ValueError, match="mean"):
        fn.group_norm_backward(x, x, np.zeros((2, 8), np.float32), np.ones((2, 8), np.float32))


# --------------------------------------------------------------------------
# Every field of a stats tuple is checked
# --------------------------------------------------------------------------

def _switch_stats():
    x = np.random.default_rng(5).standard_normal((3, 4, 5))
    _, st = fn.switch_norm(x, running_mean=np.zeros(4), running_var=np.ones(4), return_stats=True)
    return x, st


def _bln_stats():
    x = np.random.default_rng(6).standard_normal((3, 4, 5))
    _, st = fn.batch_layer_norm(x, return_stats=True)
    return x, st


def _backward(kind, x, st):
    if kind == "switch":
        return fn.switch_norm_backward(np.ones_like(x), x, st)
    return fn.batch_layer_norm_backward(np.ones_like(x), x, st)


ARRAY_FIELDS = [("switch", f) for f in ("mean", "rstd", "in_mean", "in_var", "ln_mean",
                                         "ln_var", "bn_mean", "bn_var")] + \
               [("bln", f) for f in ("feature_mean", "feature_rstd", "batch_mean", "batch_rstd",
                                      "batch_center")]
FLAG_FIELDS = [("switch", "batch_stats"), ("bln", "frozen_mean"), ("bln", "frozen_var")]


@pytest.mark.parametrize("kind,field", ARRAY_FIELDS)
def test_stats_array_fields_are_checked(kind, field):
    x, st = _switch_stats() if kind == "switch" else _bln_stats()
    good = np.asarray(getattr(st, field))
    wrong_shapes = [good[..., :1], good.reshape(-1)[:1], np.zeros(good.shape + (2,)),
                    good[0] if good.ndim > 1 else np.zeros((2,) + good.shape)]
    for bad in wrong_shapes:
        if bad.shape == good.shape:
            continue
        with pytest.raises(ValueError, match=rf"stats\.{field}\b"):
            _backward(kind, x, st._replace(**{field: bad}))
    with pytest.raises(TypeError, match=rf"stats\.{field}\b"):
        _backward(kind, x, st._replace(**{field: good.astype(np.int64)}))
    with pytest.raises(TypeError, match=rf"stats\.{field}\b"):
        _backward(kind, x, st._replace(**{field: np.full(good.shape, "a")}))


@pytest.mark.parametrize("kind,field", FLAG_FIELDS)
def test_stats_flags_are_checked(kind, field):
    x, st = _switch_stats() if kind == "switch" else _bln_stats()
    with pytest.raises(TypeError, match=rf"stats\.{field}\b"):
        _backward(kind, x, st._replace(**{field: "yes"}))


def test_stats_batch_size_is_checked():
    x, st = _bln_stats()
    with pytest.raises(TypeError, match=r"stats\.batch_size"):
        _backward("bln", x, st._replace(batch_size=2.5))
    with pytest.raises(ValueError, match=r"stats\.batch_size"):
        _backward("bln", x, st._replace(batch_size=-1))


# --------------------------------------------------------------------------
# NaN bits do not follow the thread count
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,G", [((2, 4, 5), 2), ((2, 4, 5), 4), ((1, 8, 300), 2),
                                     ((16, 8, 64), 4), ((3, 6, 2, 2), 3)])
def test_group_norm_nan_bits_independent_of_thread_count(shape, G):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape).astype(np.float32)
    x.reshape(-1)[x.size // 3] = np.nan
    dy = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal(shape[1]).astype(np.float32), np.zeros(shape[1], np.float32)
    results = []
    for nt in (1, 2, 3):
        y, m, r = fn.group_norm(x, G, w, b, return_stats=True, num_threads=nt)
        grads = fn.group_norm_backward(dy, x, m, r, w, b, num_threads=nt)
        results.append(b"".join(a.tobytes() for a in (y, m, r, *grads)))
    assert results[0] == results[1] == results[2]


# --------------------------------------------------------------------------
# Weight norm of data whose norm is subnormal
# --------------------------------------------------------------------------

@pytest.mark.parametrize("axis,shape", [(0, (3, 5)), (1, (2, 3, 4)), (None, (4, 6))])
def test_weight_norm_of_subnormal_data(axis, shape):
    rng = np.random.default_rng(9)
    v64 = rng.uniform(-1, 1, shape) * 1e-39
    v = v64.astype(np.float32)  # subnormal float32
    v64 = v.astype(np.float64)
    count = 1 if axis is None else shape[axis]
    g = np.ones(count, np.float32)
    dw = rng.standard_normal(shape).astype(np.float32)
    w = fn.weight_norm(v, g, axis=axis)
    w64 = fn.weight_norm(v64, g.astype(np.float64), axis=axis)
    assert np.all(np.isfinite(w)) and np.max(np.abs(w - w64)) <= 1e-6
    dv, dg = fn.weight_norm_backward(dw, v, g, axis=axis)
    dv64, dg64 = fn.weight_norm_backward(dw.astype(np.float64), v64, g.astype(np.float64),
                                         axis=axis)
    assert not np.isnan(dv).any() and not np.isnan(dg).any()
    assert np.max(np.abs(dg - dg64)) <= 1e-5 * max(1.0, np.max(np.abs(dg64)))
    # dv is of the size of 1 / norm (about 1e39): float32 holds it, or its infinity
    fits = np.abs(dv64) <= np.finfo(np.float32).max
    assert np.allclose(dv[fits], dv64[fits], rtol=1e-5, atol=0)
    assert np.array_equal(dv[~fits], np.sign(dv64[~fits]) * np.inf)
