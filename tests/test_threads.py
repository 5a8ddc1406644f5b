"""Determinism across thread counts (docs/numerics.md §0: bitwise identical
results for any number of threads) and the thread settings' interplay with
OpenMP / threadpoolctl. Shapes are above the 128 KiB serial threshold."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import assert_close, make_array

THREADS = (1, 2, 3, 4)

# (shape, axis, dtype): all above the serial threshold of 128 KiB
CASES = [
    ((512, 768), -1, np.float32),      # 1.5 MiB, typical transformer rows
    ((300, 1000), -1, np.float64),     # rows not a multiple of anything
    ((10000, 64), -1, np.float32),     # many short rows: many gradient blocks
    ((2049, 33), -1, np.float64),      # odd row count and length
    ((8, 64, 96), (-2, -1), np.float32),
    ((768, 512), 0, np.float32),       # a non-trailing axis (copied layout)
    ((4, 200, 96), (0, 2), np.float64),
    ((3, 12000), -1, np.float32),      # few rows, long ones
    ((64, 4100), -1, np.float32),      # several column bands in the gradient tree
]
IDS = [f"{s}-{a}-{np.dtype(d).name}" for s, a, d in CASES]


def _inputs(shape, axis, dtype, seed):
    rng = np.random.default_rng(seed)
    x = make_array(shape, dtype, rng)
    assert x.nbytes > 128 * 1024
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    axes = (axis,) if np.ndim(axis) == 0 else axis
    pshape = tuple(shape[a] for a in sorted(a % len(shape) for a in axes))
    w = make_array(pshape, dtype, rng, loc=1.0, scale=0.5)
    b = make_array(pshape, dtype, rng)
    return x, dy, w, b


def _layer_norm_all(x, dy, w, b, axis, nt):
    y, m, r = fn.layer_norm(x, w, b, axis=axis, return_stats=True, num_threads=nt)
    dx, dw, db = fn.layer_norm_backward(dy, x, m, r, w, axis=axis, num_threads=nt)
    return {"y": y, "mean": m, "rstd": r, "dx": dx, "dweight": dw, "dbias": db}


def _rms_norm_all(x, dy, w, axis, nt):
    y, r = fn.rms_norm(x, w, axis=axis, return_stats=True, num_threads=nt)
    dx, dw = fn.rms_norm_backward(dy, x, r, w, axis=axis, num_threads=nt)
    return {"y": y, "rstd": r, "dx": dx, "dweight": dw}


def _assert_same_bits(results, label):
    first = results[0][1]
    for nt, res in results[1:]:
        for key in first:
            assert np.array_equal(res[key], first[key]), (
                f"{label}: {key} differs between 1 and {nt} threads "
                f"(max diff {np.max(np.abs(res[key] - first[key])):.3e})"
            )


@pytest.mark.parametrize("shape,axis,dt", CASES, ids=IDS)
def test_layer_norm_bitwise_identical_for_any_thread_count(isa, shape, axis, dt):
    x, dy, w, b = _inputs(shape, axis, dt, seed=1)
    results = [(nt, _layer_norm_all(x, dy, w, b, axis, nt)) for nt in THREADS]
    _assert_same_bits(results, "layer_norm")
    # and the common result is right
    ye = ref.layer_norm(x, w, b, axis=axis)[0]
    assert_close(results[0][1]["y"], ye, dt)


@pytest.mark.parametrize("shape,axis,dt", CASES, ids=IDS)
def test_rms_norm_bitwise_identical_for_any_thread_count(isa, shape, axis, dt):
    x, dy, w, _ = _inputs(shape, axis, dt, seed=2)
    results = [(nt, _rms_norm_all(x, dy, w, axis, nt)) for nt in THREADS]
    _assert_same_bits(results, "rms_norm")
    assert_close(results[0][1]["y"], ref.rms_norm(x, w, axis=axis)[0], dt)


def test_set_num_threads_gives_the_same_bits(isa):
    x, dy, w, b = _inputs((512, 768), -1, np.float32, seed=3)
    results = []
    for nt in THREADS:
        fn.set_num_threads(nt)
        cfg = fn.get_config()
        assert fn.get_num_threads() == (min(nt, cfg["num_procs"]) if cfg["openmp"] else 1)
        results.append((nt, _layer_norm_all(x, dy, w, b, -1, None)))
    _assert_same_bits(results, "set_num_threads")


def test_more_threads_than_rows():
    x, dy, w, b = _inputs((3, 20000), -1, np.float32, seed=4)
    base = _layer_norm_all(x, dy, w, b, -1, 1)
    for nt in (2, 3, 7, 64):
        res = _layer_norm_all(x, dy, w, b, -1, nt)
        for key in base:
            assert np.array_equal(res[key], base[key]), key


def test_parameter_gradients_accurate_over_many_rows(isa):
    """dweight over many rows: blocked / pairwise partial sums keep the error small."""
    rng = np.random.default_rng(5)
    x = make_array((20000, 48), np.float32, rng)
    dy = make_array((20000, 48), np.float32, rng, loc=0.5, scale=1.0)
    _, m, r = fn.layer_norm(x, return_stats=True)
    _, dw, db = fn.layer_norm_backward(dy, x, m, r)
    _, dwe, dbe = ref.layer_norm_backward(dy, x, m, r)
    # error relative to the sums of |terms| (~ 20000 * 0.8): naive float32
    # accumulation would reach about 1e-3 of it
    scale_b = np.abs(dy.astype(np.float64)).sum(axis=0).max()
    assert np.max(np.abs(db - dbe)) <= 1e-5 * scale_b
    assert np.max(np.abs(dw - dwe)) <= 1e-5 * scale_b


def test_threadpoolctl_limits_are_respected():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fn.get_config()["openmp"]:
        pytest.skip("single-threaded build")
    fn.set_num_threads(None)
    before = fn.get_num_threads()
    with threadpoolctl.threadpool_limits(limits=1):
        assert fn.get_num_threads() == 1
        assert fn.get_config()["num_threads"] == 1
        x, dy, w, b = _inputs((512, 768), -1, np.float32, seed=6)
        limited = _layer_norm_all(x, dy, w, b, -1, None)
        # an explicit count still applies inside the limits
        assert fn.layer_norm(x, num_threads=2).shape == x.shape
        # set_num_threads overrides (up to the processors there are)
        fn.set_num_threads(2)
        assert fn.get_num_threads() == min(2, fn.get_config()["num_procs"])
        fn.set_num_threads(None)
        assert fn.get_num_threads() == 1
    assert fn.get_num_threads() == before
    free = _layer_norm_all(x, dy, w, b, -1, None)
    for key in free:
        assert np.array_equal(free[key], limited[key]), key


def test_threadpoolctl_sees_fastnorms_openmp():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    if not fn.get_config()["openmp"]:
        pytest.skip("single-threaded build")
    apis = {info["internal_api"] for info in threadpoolctl.threadpool_info()}
    assert "openmp" in apis
