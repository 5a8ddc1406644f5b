"""fastnorm's calls on PyTorch's OpenMP threads (fastnorm.torch.use_torch_threads):
the same bits as on fastnorm's own pool, at any thread count, and a way back."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastnorm as fn  # noqa: E402
import fastnorm.torch as ft  # noqa: E402
from fastnorm import _core  # noqa: E402

pytestmark = pytest.mark.torch
TORCH_THREADS = True  # conftest._restore_threads leaves the import's choice in force

OPENMP = "parallel backend: OpenMP" in torch.__config__.parallel_info()
needs_openmp = pytest.mark.skipif(not OPENMP or not _core._has_threads(),
                                  reason="PyTorch without OpenMP threads, or a serial build")


def _calls(rng):
    """name -> a function of the thread count returning a tuple of arrays,
    each threaded over its rows or channels at these sizes."""
    x = rng.standard_normal((517, 300)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.standard_normal(300).astype(np.float32)
    b = rng.standard_normal(300).astype(np.float32)
    _, mean, rstd = fn.layer_norm(x, w, b, return_stats=True)
    _, rrstd = fn.rms_norm(x, w, return_stats=True)
    img = rng.standard_normal((6, 12, 9, 31)).astype(np.float64)
    dimg = rng.standard_normal(img.shape)
    cw = rng.standard_normal(12)
    _, gmean, grstd = fn.group_norm(img, 4, cw, cw, return_stats=True)
    return {
        "layer_norm": lambda nt: fn.layer_norm(x, w, b, return_stats=True, num_threads=nt),
        "layer_norm_backward": lambda nt: fn.layer_norm_backward(dy, x, mean, rstd, w,
                                                                 num_threads=nt),
        "rms_norm_backward": lambda nt: fn.rms_norm_backward(dy, x, rrstd, w, num_threads=nt),
        "group_norm_backward": lambda nt: fn.group_norm_backward(dimg, img, gmean, grstd, cw,
                                                                 cw, num_threads=nt),
        "batch_norm": lambda nt: fn.batch_norm(img, None, None, cw, cw, training=True,
                                               return_stats=True, num_threads=nt),
    }


def _bits(arrays):
    return [np.asarray(a).tobytes() for a in arrays]


@needs_openmp
def test_use_torch_threads_switches_between_the_team_and_the_pool():
    assert ft.use_torch_threads(False) is False
    assert _core._host_team() == 0
    assert fn.get_config()["threads"] == "fastnorm pool"
    assert ft.use_torch_threads() is True
    assert _core._host_team() != 0
    assert fn.get_config()["threads"] == "host OpenMP threads"


@needs_openmp
@pytest.mark.parametrize("nt", [2, 3, 5])
def test_the_team_gives_the_pools_bits(nt):
    rng = np.random.default_rng(7)
    for name, call in _calls(rng).items():
        ft.use_torch_threads(False)
        want = _bits(call(1))
        pool = _bits(call(nt))
        ft.use_torch_threads(True)
        team = _bits(call(nt))
        assert pool == want, name
        assert team == want, name


@needs_openmp
def test_calls_on_the_team_start_no_pool_workers():
    """In a fresh process that imports fastnorm.torch, threaded calls run on
    PyTorch's threads: fastnorm's pool starts none of its own."""
    code = (
        "import numpy as np, fastnorm, fastnorm.torch\n"
        "x = np.ones((4096, 256), np.float32)\n"
        "for _ in range(3): fastnorm.layer_norm(x, num_threads=2)\n"
        "print(fastnorm._core._pool_workers())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[-1] == "0"


@needs_openmp
def test_a_forked_child_runs_its_calls():
    """A child forked while the team is set runs its calls on its own thread
    (the parent's OpenMP threads do not exist there)."""
    ft.use_torch_threads(True)
    x = np.random.default_rng(8).standard_normal((300, 200))
    want = fn.layer_norm(x, num_threads=2).tobytes()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether the bits match, and leave at once
        signal.alarm(60)  # a hang ends the child: the parent then reads nothing
        ok = fn.layer_norm(x, num_threads=2).tobytes() == want
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    assert status == 0 and got == b"1"


@needs_openmp
def test_a_child_forked_before_any_threaded_call_keeps_its_threads():
    """The import sets the team; moved back to the pool before any threaded
    call, a child forked then has nothing to lose and keeps its threads."""
    code = (
        "import os, fastnorm, fastnorm.torch as ft\n"
        "ft.use_torch_threads(False)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(3 if fastnorm._core._serial_after_fork() else 0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "print(os.waitstatus_to_exitcode(status))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.split()[-1] == "0"


@pytest.mark.parametrize("bad", [-1, 2 ** 64, True, 1.5, "x"])
def test_a_bad_team_address_is_refused(bad):
    before = _core._host_team()
    with pytest.raises(ValueError, match="address"):
        _core._host_team(bad)
    assert _core._host_team() == before
