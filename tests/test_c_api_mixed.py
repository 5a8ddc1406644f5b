"""The C entry points of switchable and batch-layer normalization
(fastnorm_switch_norm_*, fastnorm_batch_layer_norm_* and their backwards in
fastnorm.h), called through ctypes from the package's own extension module:
the forward against fastnorm.reference (float64), the backward against
central differences of the reference, and both against the Python
functions, which make the same calls (the same bits)."""
import ctypes

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core
from fastnorm import reference as ref

LIB = ctypes.CDLL(_core.__file__)
I64, DBL, INT = ctypes.c_int64, ctypes.c_double, ctypes.c_int
PTR = ctypes.c_void_p
TYPES = {np.float32: "f32", np.float64: "f64"}


def _p(a):
    return None if a is None else a.ctypes.data_as(PTR)


def _entry(name, dtype, *argtypes):
    f = getattr(LIB, f"fastnorm_{name}_{TYPES[dtype]}")
    f.restype = INT
    f.argtypes = list(argtypes)
    return f


def _switch_forward(x, w, b, wm, wv, eps, running=None):
    """fastnorm_switch_norm_* on NCHW x: y and the eight statistics."""
    N, C = x.shape[:2]
    L = int(np.prod(x.shape[2:]))
    f = _entry("switch_norm", x.dtype.type, I64, I64, I64, I64, PTR, PTR, PTR, PTR, PTR, PTR,
               PTR, PTR, DBL, *[PTR] * 8, INT)
    y = np.empty_like(x)
    st = [np.empty((N, C)) for _ in range(4)] + [np.empty(N), np.empty(N), np.empty(C),
                                                 np.empty(C)]
    rm, rv = running if running is not None else (None, None)
    rc = f(N, 1, C, L, _p(x), _p(y), _p(w), _p(b), _p(wm), _p(wv), _p(rm), _p(rv), eps,
           *[_p(s) for s in st], 2)
    assert rc == 0
    return y, st


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_switch_norm_entry_point(dtype, training):
    rng = np.random.default_rng(11)
    N, C = 3, 5
    x = (rng.standard_normal((N, C, 4, 3)) * 2 + 1).astype(dtype)
    w = rng.standard_normal(C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    lm, lv = rng.standard_normal(3), rng.standard_normal(3)
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2.0, C)
    running = None if training else (rm, rv)
    y, st = _switch_forward(x, w, b, _softmax(lm), _softmax(lv), 1e-5, running)
    want = ref.switch_norm(x, w, b, lm, lv, eps=1e-5,
                           **({} if training else dict(bn_mean=rm, bn_var=rv)))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    # the Python function makes the same call: the same bits
    rmc, rvc = rm.astype(dtype), rv.astype(dtype)
    y2, st2 = fn.switch_norm(x, w, b, lm, lv, rmc, rvc, training=training, momentum=0.0,
                             return_stats=True)
    if not training:  # the running statistics went in as they were rounded
        y, st = _switch_forward(x, w, b, _softmax(lm), _softmax(lv), 1e-5,
                                (rmc.astype(np.float64), rvc.astype(np.float64)))
    assert np.array_equal(y, y2)
    for got, e in zip(st, st2[:8]):
        assert np.array_equal(got, e)

    # backward: dx, dweight, dbias, and the logits' gradients
    dy = rng.standard_normal(x.shape).astype(dtype)
    f = _entry("switch_norm_backward", dtype, I64, I64, I64, I64, PTR, PTR, PTR, PTR, PTR,
               *[PTR] * 8, INT, PTR, PTR, PTR, PTR, PTR, PTR, INT)
    N, C, L = x.shape[0], x.shape[1], 12
    dx = np.empty_like(x)
    dw, db, dmw, dvw = np.empty(C), np.empty(C), np.empty(3), np.empty(3)
    st64 = [np.ascontiguousarray(s, np.float64) for s in st2[:8]]
    r3 = st64[1] ** 3
    rc = f(N, 1, C, L, _p(dy), _p(x), _p(w), _p(_softmax(lm)), _p(_softmax(lv)),
           *[_p(s) for s in st64], int(training), _p(r3), _p(dx), _p(dw), _p(db), _p(dmw),
           _p(dvw), 2)
    assert rc == 0
    got = fn.switch_norm_backward(dy, x, st2, w, b, lm, lv)
    assert np.array_equal(dx, got[0])
    assert np.array_equal(dw.astype(dtype), got[1]) and np.array_equal(db.astype(dtype), got[2])
    assert np.array_equal(dmw, got[3]) and np.array_equal(dvw, got[4])
    if dtype == np.float64:  # central differences of the reference
        bn = {} if training else dict(bn_mean=rm, bn_var=rv)

        def loss(xx=x, ww=w, mm=lm):
            return float(np.sum(ref.switch_norm(xx, ww, b, mm, lv, eps=1e-5, **bn) * dy))
        h = 1e-6
        for idx in [(0, 0, 0, 0), (2, 4, 3, 2), (1, 2, 1, 1)]:
            xp, xm = x.copy(), x.copy()
            xp[idx] += h
            xm[idx] -= h
            assert dx[idx] == pytest.approx((loss(xx=xp) - loss(xx=xm)) / (2 * h), rel=1e-5,
                                            abs=1e-7)
        for c in range(C):
            wp, wq = w.copy(), w.copy()
            wp[c] += h
            wq[c] -= h
            assert dw[c] == pytest.approx((loss(ww=wp) - loss(ww=wq)) / (2 * h), rel=1e-5,
                                          abs=1e-7)
        for j in range(3):
            mp, mq = lm.copy(), lm.copy()
            mp[j] += h
            mq[j] -= h
            assert dmw[j] == pytest.approx((loss(mm=mp) - loss(mm=mq)) / (2 * h), rel=1e-5,
                                           abs=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("frozen", [False, True])
def test_batch_layer_norm_entry_point(dtype, frozen):
    rng = np.random.default_rng(12)
    B, M, D = 6, 4, 5
    x = (rng.standard_normal((B, M, D)) * 2 + 1).astype(dtype)
    w = rng.standard_normal(D).astype(dtype)
    b = rng.standard_normal(D).astype(dtype)
    rm, rv = rng.standard_normal((M, D)), rng.uniform(0.5, 2.0, (M, D))
    f = _entry("batch_layer_norm", dtype, I64, I64, I64, PTR, PTR, PTR, PTR, I64, PTR, PTR,
               DBL, *[PTR] * 6, INT)
    y = np.empty_like(x)
    fm, fr = np.empty((B, M), dtype), np.empty((B, M), dtype)
    bm, br, bc, bv = (np.empty(M * D) for _ in range(4))
    rmc, rvc = rm.astype(dtype), rv.astype(dtype)
    run = (rmc.astype(np.float64), rvc.astype(np.float64)) if frozen else (None, None)
    rc = f(B, M, D, _p(x), _p(y), _p(w), _p(b), 0, _p(run[0]), _p(run[1]), 1e-3, _p(fm),
           _p(fr), _p(bm), _p(br), _p(bc), _p(bv), 2)
    assert rc == 0
    want = ref.batch_layer_norm(x, w, b, eps=1e-3,
                                **(dict(batch_mean=rmc, batch_var=rvc) if frozen else {}))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
    y2, st = fn.batch_layer_norm(x, w, b, rmc.copy(), rvc.copy(), training=not frozen,
                                 momentum=0.0, return_stats=True)
    assert np.array_equal(y, y2)
    for got, e in zip((fm, fr, bm, br, bc), st[:5]):
        assert np.array_equal(got.reshape(np.shape(e)), e)

    dy = rng.standard_normal(x.shape).astype(dtype)
    fb = _entry("batch_layer_norm_backward", dtype, I64, I64, I64, PTR, PTR, PTR, I64, PTR, PTR,
                PTR, PTR, PTR, INT, INT, PTR, PTR, PTR, INT)
    dx, dw, db = np.empty_like(x), np.empty(D, dtype), np.empty(D, dtype)
    rc = fb(B, M, D, _p(dy), _p(x), _p(w), B, _p(fm), _p(fr), _p(bm), _p(br), _p(bc),
            int(frozen), int(frozen), _p(dx), _p(dw), _p(db), 2)
    assert rc == 0
    got = fn.batch_layer_norm_backward(dy, x, st, w, b)
    for g, e in zip((dx, dw, db), got):
        assert np.array_equal(g, e)
    if dtype == np.float64:  # central differences of the reference
        pop = dict(batch_mean=rm, batch_var=rv) if frozen else {}

        def loss(xx=x, ww=w):
            return float(np.sum(ref.batch_layer_norm(xx, ww, b, eps=1e-3, **pop) * dy))
        h = 1e-6
        for idx in [(0, 0, 0), (5, 3, 4), (2, 1, 3)]:
            xp, xm = x.copy(), x.copy()
            xp[idx] += h
            xm[idx] -= h
            assert dx[idx] == pytest.approx((loss(xx=xp) - loss(xx=xm)) / (2 * h), rel=1e-5,
                                            abs=1e-7)
        for d in range(D):
            wp, wq = w.copy(), w.copy()
            wp[d] += h
            wq[d] -= h
            assert dw[d] == pytest.approx((loss(ww=wp) - loss(ww=wq)) / (2 * h), rel=1e-5,
                                          abs=1e-7)


def test_empty_calls_write_nan_statistics_and_zero_gradients():
    f = _entry("switch_norm", np.float64, I64, I64, I64, I64, PTR, PTR, PTR, PTR, PTR, PTR,
               PTR, PTR, DBL, *[PTR] * 8, INT)
    N, C = 2, 3
    st = [np.zeros((N, C)) for _ in range(4)] + [np.zeros(N), np.zeros(N), np.zeros(C),
                                                 np.zeros(C)]
    x = np.empty((N, C, 0))
    wm = np.full(3, 1 / 3)
    assert f(N, 1, C, 0, _p(x), _p(x), None, None, _p(wm), _p(wm), None, None, 1e-5,
             *[_p(s) for s in st], 1) == 0
    assert all(np.isnan(s).all() for s in st)
    fb = _entry("batch_layer_norm_backward", np.float32, I64, I64, I64, PTR, PTR, PTR, I64, PTR,
                PTR, PTR, PTR, PTR, INT, INT, PTR, PTR, PTR, INT)
    dw, db = np.ones(4, np.float32), np.ones(4, np.float32)
    x32 = np.empty((0, 2, 4), np.float32)
    assert fb(0, 2, 4, _p(x32), _p(x32), None, 0, None, None, None, None, None, 0, 0, _p(x32),
              _p(dw), _p(db), 1) == 0
    assert not dw.any() and not db.any()
