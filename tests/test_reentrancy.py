"""Re-entrancy: many Python threads calling fastnorm at once (the GIL is
released around every kernel), and processes forked after fastnorm's pool
started threads (the child, which has none of them, runs its calls on one
thread). Fork tests run in a fresh interpreter under a timeout, and
every forked child arms an alarm, so that a hang fails the test instead of
stalling the suite."""
import os
import textwrap
import threading

import numpy as np
import pytest

import fastnorm as fn
from conftest import make_array, run_python

def _calls(seed):
    """Inputs for one thread: layer norm, group norm and batch norm (training,
    with its own running statistics), all above the 128 KiB serial threshold."""
    rng = np.random.default_rng(seed)
    x2 = make_array((256, 384), np.float32, rng)
    w2 = make_array((384,), np.float32, rng, loc=1.0)
    b2 = make_array((384,), np.float32, rng)
    x4 = make_array((4, 16, 24, 24), np.float64, rng)
    w4 = make_array((16,), np.float64, rng, loc=1.0)
    b4 = make_array((16,), np.float64, rng)
    return x2, w2, b2, x4, w4, b4


def _run(inputs, nt):
    x2, w2, b2, x4, w4, b4 = inputs
    rm, rv = np.zeros(16), np.ones(16)
    y_ln, m_ln, r_ln = fn.layer_norm(x2, w2, b2, return_stats=True, num_threads=nt)
    dx_ln = fn.layer_norm_backward(np.ones_like(x2), x2, m_ln, r_ln, w2, num_threads=nt)[0]
    y_gn = fn.group_norm(x4, 4, w4, b4, num_threads=nt)
    y_bn = fn.batch_norm(x4, rm, rv, w4, b4, training=True, num_threads=nt)
    return [y_ln, m_ln, r_ln, dx_ln, y_gn, y_bn, rm, rv]


def test_python_threads_get_serial_results():
    n_threads, rounds = 8, 3
    inputs = [_calls(seed) for seed in range(n_threads)]
    expected = [_run(inp, 1) for inp in inputs]
    results = [[] for _ in range(n_threads)]
    errors = []
    start = threading.Barrier(n_threads)

    def worker(i):
        try:
            start.wait()
            for _ in range(rounds):
                results[i].append(_run(inputs[i], 2))
        except BaseException as exc:  # reported below, with the thread's index
            errors.append((i, exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert not errors, errors
    for i in range(n_threads):
        assert len(results[i]) == rounds
        for got in results[i]:
            for k, (a, b) in enumerate(zip(got, expected[i])):
                assert np.array_equal(a, b), f"thread {i}: result {k} differs from the serial one"


FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, signal, sys, warnings
    import numpy as np
    import fastnorm as fn
    from fastnorm import _core

    # Python warns about fork() in a process that has threads; fastnorm's
    # pool threads are what this script is about.
    warnings.simplefilter("ignore", DeprecationWarning)
    THREADS = fn.get_config()["threads"] != "serial"
    rng = np.random.default_rng(1)
    x = rng.standard_normal((512, 512)).astype(np.float32)  # 1 MiB: threads start
    x4 = rng.standard_normal((4, 8, 64, 64))                # 1 MiB
    w = rng.standard_normal(512).astype(np.float32)

    def compute():
        return (fn.layer_norm(x, w, num_threads=2), fn.group_norm(x4, 4, num_threads=2))

    def check_in_child():
        signal.alarm(30)  # a hang kills the child, and the parent sees it
        y, g = compute()
        ok = np.array_equal(y, y_ref) and np.array_equal(g, g_ref)
        ok = ok and _core._serial_after_fork() == (THREADS and parent_used_threads)
        ok = ok and (fn.get_num_threads() == 1 or not parent_used_threads)
        return ok

    def fork_and_check():
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if check_in_child() else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    def pool_worker(i):
        return check_in_child()

    # A child forked before fastnorm started any thread keeps its threads.
    parent_used_threads = False
    y_ref = fn.layer_norm(x, w, num_threads=1)
    g_ref = fn.group_norm(x4, 4, num_threads=1)
    assert not _core._serial_after_fork()
    code = fork_and_check()
    assert code == 0, f"child forked before any thread: exit code {code}"

    # Threads in the parent, then fork: os.fork and a multiprocessing pool.
    for _ in range(3):
        y, g = compute()
        assert np.array_equal(y, y_ref) and np.array_equal(g, g_ref)
    parent_used_threads = True
    assert not _core._serial_after_fork()
    code = fork_and_check()
    assert code == 0, f"os.fork child: exit code {code}"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        oks = pool.map_async(pool_worker, range(4)).get(timeout=60)
    assert all(oks), f"multiprocessing fork workers: {oks}"
    # The parent keeps its threads.
    assert not _core._serial_after_fork() and np.array_equal(compute()[0], y_ref)
    print("fork ok")
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_fork_after_threads():
    proc = run_python(FORK_SCRIPT, timeout=90)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fork ok" in proc.stdout

