"""Determinism across thread counts (docs/numerics.md §0: bitwise identical
results for any number of threads and any order in which the pool's threads
claim the chunks of a call) and the thread settings' interplay with
threadpoolctl. Shapes are above the 128 KiB serial threshold."""
import os
import threading

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core
from fastnorm import reference as ref
from conftest import assert_close, make_array, run_python

THREADED = fn.get_config()["threads"] != "serial"
needs_threads = pytest.mark.skipif(not THREADED, reason="serial build")

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
        assert fn.get_num_threads() == (min(nt, fn.get_config()["num_procs"]) if THREADED else 1)
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


@needs_threads
@pytest.mark.parametrize("shape,axis,dt", CASES[:4] + CASES[5:6], ids=IDS[:4] + IDS[5:6])
def test_random_claim_order_gives_the_same_bits(shape, axis, dt, shuffled):
    x, dy, w, b = _inputs(shape, axis, dt, seed=7)
    _core._pool_shuffle(False)
    base = _layer_norm_all(x, dy, w, b, axis, 1)
    base_rms = _rms_norm_all(x, dy, w, axis, 1)
    _core._pool_shuffle(True)
    for _ in range(4):
        res = _layer_norm_all(x, dy, w, b, axis, 2)
        res_rms = _rms_norm_all(x, dy, w, axis, 2)
        for key in base:
            assert np.array_equal(res[key], base[key]), key
        for key in base_rms:
            assert np.array_equal(res_rms[key], base_rms[key]), key


@needs_threads
def test_random_claim_order_channel_norms(shuffled):
    rng = np.random.default_rng(8)
    x = make_array((8, 32, 24, 24), np.float32, rng)
    dy = make_array(x.shape, np.float32, rng, loc=0.0, scale=1.0)
    w = make_array((32,), np.float32, rng, loc=1.0)
    b = make_array((32,), np.float32, rng)

    def run(nt):
        y, m, r = fn.group_norm(x, 8, w, b, return_stats=True, num_threads=nt)
        g = fn.group_norm_backward(dy, x, m, r, w, b, num_threads=nt)
        rm, rv = np.zeros(32, np.float32), np.ones(32, np.float32)
        yb = fn.batch_norm(x, rm, rv, w, b, training=True, num_threads=nt)
        yi = fn.instance_norm(x, w, b, num_threads=nt)
        return [y, m, r, *g, yb, rm, rv, yi]

    _core._pool_shuffle(False)
    base = run(1)
    _core._pool_shuffle(True)
    for _ in range(3):
        for k, (got, want) in enumerate(zip(run(2), base)):
            assert np.array_equal(got, want), k


@needs_threads
def test_threads_above_the_cpus_run_on_the_cpus():
    """A request above the CPUs of the affinity runs with that many threads:
    the pool never starts more workers than the other CPUs."""
    x, dy, w, b = _inputs((512, 768), -1, np.float32, seed=9)
    base = _layer_norm_all(x, dy, w, b, -1, 1)
    res = _layer_norm_all(x, dy, w, b, -1, 1000)
    for key in base:
        assert np.array_equal(res[key], base[key]), key
    assert _core._pool_workers() <= max(1, fn.get_config()["num_procs"] - 1)


@needs_threads
def test_pool_sizing_follows_affinity_and_environment():
    """OMP_NUM_THREADS sets the default count; the affinity caps the pool."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity control here")
    script = """
import os
os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
import numpy as np
import fastnorm as fn
from fastnorm import _core
cfg = fn.get_config()
assert cfg["num_procs"] == 1, cfg
assert fn.get_num_threads() == 1, fn.get_num_threads()  # OMP_NUM_THREADS=3, capped at 1 CPU
x = np.random.default_rng(0).standard_normal((512, 768)).astype(np.float32)
assert np.array_equal(fn.layer_norm(x, num_threads=4), fn.layer_norm(x, num_threads=1))
assert _core._pool_workers() == 0, _core._pool_workers()  # one CPU: no worker
print("sizing ok")
"""
    proc = run_python(script, env_extra={"OMP_NUM_THREADS": "3,2"}, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sizing ok" in proc.stdout
    # below the CPU count, OMP_NUM_THREADS is the default
    proc = run_python("import fastnorm as fn; print(fn.get_num_threads())",
                      env_extra={"OMP_NUM_THREADS": "1"}, timeout=60)
    assert proc.returncode == 0 and proc.stdout.split() == ["1"], proc.stdout + proc.stderr


@needs_threads
def test_concurrent_python_threads_with_shuffled_claims(shuffled):
    """Python threads share (or take turns on) the pool: every call is right."""
    x, dy, w, b = _inputs((256, 768), -1, np.float32, seed=10)
    base = _layer_norm_all(x, dy, w, b, -1, 1)
    errors = []

    def worker():
        try:
            for _ in range(10):
                res = _layer_norm_all(x, dy, w, b, -1, 2)
                for key in base:
                    assert np.array_equal(res[key], base[key]), key
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert not errors, errors


@needs_threads
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_thread_start_failure_runs_with_the_threads_that_exist():
    """No address space left for a thread's stack: pthread_create fails, and
    calls run on the calling thread (right results, no abort)."""
    script = """
import resource
import numpy as np
import fastnorm as fn
from fastnorm import _core
x = np.random.default_rng(0).standard_normal((512, 768)).astype(np.float32)
want = fn.layer_norm(x, num_threads=1)
got = np.empty_like(want)
with open("/proc/self/statm") as f:
    used = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + (4 << 20), resource.RLIM_INFINITY))
for _ in range(3):
    fn.layer_norm(x, out=got, num_threads=2)
    assert np.array_equal(got, want)
assert _core._pool_workers() == 0, _core._pool_workers()
print("start failure ok")
"""
    proc = run_python(script, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "start failure ok" in proc.stdout


def test_pool_quiet_setting():
    old = _core._pool_quiet_ms()
    try:
        assert _core._pool_quiet_ms(0) == 0
        x = np.ones((512, 768), np.float32)
        assert np.array_equal(fn.layer_norm(x, num_threads=2), fn.layer_norm(x, num_threads=1))
    finally:
        _core._pool_quiet_ms(old)
    assert _core._pool_quiet_ms() == old
    with pytest.raises(ValueError, match="ms"):
        _core._pool_quiet_ms(-1)


@pytest.mark.skipif(not _core._has_threads() or not os.path.exists("/proc/loadavg"),
                    reason="the pool's test of the CPUs reads /proc/loadavg")
def test_pool_reads_the_runnable_threads():
    """The pool's count of runnable threads is /proc/loadavg's, in any
    locale (the load averages before it may have a decimal comma there), and
    with more processes spinning than the CPUs the process may use it says
    the CPUs are oversubscribed (a stalled call then makes the pool keep
    quiet) within a few seconds of their start."""
    import locale
    import subprocess
    import sys
    import time

    def python_count():
        with open("/proc/loadavg") as f:
            return int(f.read().split()[3].split("/")[0])

    for _ in range(5):  # the count moves: the same reading once out of a few
        a = python_count()
        got = _core._pool_runnable()
        b = python_count()
        if min(a, b) <= got <= max(a, b):
            break
    assert got >= 1 and min(a, b) - 2 <= got <= max(a, b) + 2
    old = locale.setlocale(locale.LC_NUMERIC)
    try:
        for name in ("de_DE.UTF-8", "fr_FR.UTF-8", "de_DE", "C.UTF-8"):
            try:
                locale.setlocale(locale.LC_NUMERIC, name)
                break
            except locale.Error:
                continue
        assert _core._pool_runnable() >= 1
    finally:
        locale.setlocale(locale.LC_NUMERIC, old)
    spin = "import time\nend = time.monotonic() + 20\nwhile time.monotonic() < end:\n    pass\n"
    n = len(os.sched_getaffinity(0)) + 1
    procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(n)]
    try:
        deadline = time.monotonic() + 10
        seen = 0
        while seen <= n and time.monotonic() < deadline:
            time.sleep(0.1)
            seen = _core._pool_runnable()
        assert seen > n - 1 and _core._pool_oversubscribed()
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def test_pool_spin_setting():
    old = _core._pool_spin_us()
    try:
        assert _core._pool_spin_us(0) == 0
        x = np.ones((512, 768), np.float32)
        assert np.array_equal(fn.layer_norm(x, num_threads=2), fn.layer_norm(x, num_threads=1))
    finally:
        _core._pool_spin_us(old)
    with pytest.raises(ValueError, match="us"):
        _core._pool_spin_us(-1)


def test_threadpoolctl_limits_are_respected():
    threadpoolctl = pytest.importorskip("threadpoolctl", minversion="3.5")
    if not THREADED:
        pytest.skip("serial build")
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
    # limited through fastnorm's own user_api
    with threadpoolctl.threadpool_limits(limits=1, user_api="fastnorm"):
        assert fn.get_num_threads() == 1
    assert fn.get_num_threads() == before


def test_threadpoolctl_sees_fastnorms_pool():
    threadpoolctl = pytest.importorskip("threadpoolctl", minversion="3.5")
    infos = [i for i in threadpoolctl.threadpool_info() if i["internal_api"] == "fastnorm"]
    assert len(infos) == 1, threadpoolctl.threadpool_info()
    info = infos[0]
    assert info["user_api"] == "fastnorm"
    assert info["version"] == fn.__version__
    assert info["threads"] == fn.get_config()["threads"]
    assert os.path.realpath(info["filepath"]) == os.path.realpath(_core.__file__)
    fn.set_num_threads(None)
    assert info["num_threads"] == fn.get_num_threads()


def test_threadpoolctl_not_imported_without_need():
    """Importing fastnorm imports threadpoolctl only where it is installed:
    with it hidden, fastnorm imports and works."""
    script = """
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name == "threadpoolctl":
            raise ImportError("hidden")
sys.meta_path.insert(0, Hide())
import numpy as np
import fastnorm as fn
assert "threadpoolctl" not in sys.modules
x = np.ones((512, 768), np.float32)
assert np.array_equal(fn.layer_norm(x, num_threads=2), fn.layer_norm(x, num_threads=1))
print("no threadpoolctl ok")
"""
    proc = run_python(script, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no threadpoolctl ok" in proc.stdout
