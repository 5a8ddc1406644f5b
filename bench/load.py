"""Latency of threaded calls on a busy machine: p50 / p99 / max per call.

Runs each call many times on an idle machine, then again while N processes
(one per usable CPU by default) spin on every core, and prints a markdown
table. The spinning processes are started and stopped by this script and end
on their own after a deadline, whatever happens to it.

    python bench/load.py                  # about a minute
    python bench/load.py --seconds 0.3    # shorter
    python bench/load.py --no-torch       # fastnorm only

What it shows: with the work split over threads, a call can only finish when
every thread that took part has; on a loaded machine the OS deschedules
threads for milliseconds, and a runtime whose caller waits for a worker that
has not started yet inherits that delay. Compare each 2-thread p99 with the
1-thread p99 under the same load.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

import fastnorm as fn

SPIN = "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Load:
    """N processes spinning on the CPUs, for at most `limit` seconds."""

    def __init__(self, n, limit):
        self.n, self.limit, self.procs = n, limit, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(self.limit)])
                      for _ in range(self.n)]
        time.sleep(0.2)  # let them start spinning
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        for p in self.procs:
            p.wait()
        self.procs = []


def _stats(fn_call, seconds, max_calls=200000):
    """Per-call times in microseconds: p50, p99, max, and the call count. At
    least 200 calls, unless that takes 4 times `seconds` (slow calls)."""
    clock = time.perf_counter_ns
    start = clock()
    for _ in range(5):  # warm up (and start the threads)
        fn_call()
    times = []
    end, hard_end = clock() + int(seconds * 1e9), start + int(4 * seconds * 1e9)
    while len(times) < max_calls:
        t0 = clock()
        fn_call()
        t1 = clock()
        times.append(t1 - t0)
        if t1 > end and (len(times) >= 200 or t1 > hard_end):
            break
    t = np.array(times) / 1000.0
    return np.percentile(t, 50), np.percentile(t, 99), t.max(), len(t)


def _fastnorm_cases(rng):
    cases = []
    x = rng.standard_normal((128, 768), dtype=np.float32)
    w, b = np.ones(768, np.float32), np.zeros(768, np.float32)
    y = np.empty_like(x)
    cases.append(("layer_norm", "(128, 768)",
                  lambda nt, x=x, y=y: fn.layer_norm(x, w, b, out=y, num_threads=nt)))
    xl = rng.standard_normal((4096, 768), dtype=np.float32)
    yl = np.empty_like(xl)
    cases.append(("layer_norm", "(4096, 768)",
                  lambda nt: fn.layer_norm(xl, w, b, out=yl, num_threads=nt)))
    dy = rng.standard_normal((4096, 768), dtype=np.float32)
    _, r = fn.rms_norm(xl, w, return_stats=True)
    cases.append(("rms_norm_backward", "(4096, 768)",
                  lambda nt: fn.rms_norm_backward(dy, xl, r, w, num_threads=nt)))
    xg = rng.standard_normal((8, 64, 56, 56), dtype=np.float32)
    wg, bg = np.ones(64, np.float32), np.zeros(64, np.float32)
    yg = np.empty_like(xg)
    cases.append(("group_norm", "(8, 64, 56, 56)",
                  lambda nt: fn.group_norm(xg, 32, wg, bg, out=yg, num_threads=nt)))
    return cases, (x, xl, dy, xg)


def _torch_cases(arrays):
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return [], None
    x, xl, dy, xg = (torch.from_numpy(a) for a in arrays)
    w, b = torch.ones(768), torch.zeros(768)
    cases = []

    cases.append(("layer_norm", "(128, 768)", lambda: F.layer_norm(x, (768,), w, b)))
    cases.append(("layer_norm", "(4096, 768)", lambda: F.layer_norm(xl, (768,), w, b)))
    if hasattr(F, "rms_norm"):
        xr = xl.clone().requires_grad_(True)
        wr = w.clone().requires_grad_(True)
        out = F.rms_norm(xr, (768,), wr)
        cases.append(("rms_norm_backward", "(4096, 768)",
                      lambda: torch.autograd.grad(out, (xr, wr), dy, retain_graph=True)))
    wg, bg = torch.ones(64), torch.zeros(64)
    cases.append(("group_norm", "(8, 64, 56, 56)", lambda: F.group_norm(xg, 32, wg, bg)))
    return cases, torch


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measured cell")
    ap.add_argument("--load", type=int, default=None,
                    help="spinning processes (default: the usable CPUs)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    args = ap.parse_args(argv)
    n_load = args.load if args.load is not None else _usable_cpus()

    rng = np.random.default_rng(0)
    cases, arrays = _fastnorm_cases(rng)
    tcases, torch = ([], None) if args.no_torch else _torch_cases(arrays)
    cfg = fn.get_config()
    runtime = cfg.get("threads", "OpenMP" if cfg.get("openmp") else "serial")

    plan = [("fastnorm", op, shape, nt, (lambda call, nt: lambda: call(nt))(call, nt))
            for op, shape, call in cases for nt in (1, 2)]
    if torch is not None:
        for nt in (1, 2):
            plan += [("torch", op, shape, nt, call) for op, shape, call in tcases]

    def measure():
        out = {}
        for lib, op, shape, nt, call in plan:
            if lib == "torch":
                torch.set_num_threads(nt)
            out[(lib, op, shape, nt)] = _stats(call, args.seconds)
        return out

    # the smallest call, idle and on one thread: the fixed cost
    x1 = rng.standard_normal((1, 768), dtype=np.float32)
    w1, b1, y1 = np.ones(768, np.float32), np.zeros(768, np.float32), np.empty_like(x1)
    small = _stats(lambda: fn.layer_norm(x1, w1, b1, out=y1), args.seconds)

    ambient = os.getloadavg() if hasattr(os, "getloadavg") else None
    idle = measure()
    limit = 5 + 2 * args.seconds * len(plan) + 30  # the spinners' own deadline
    with Load(n_load, limit):
        loaded = measure()

    print(f"fastnorm {fn.__version__} ({runtime}, {cfg['isa']}), "
          f"{_usable_cpus()} usable CPUs, load: {n_load} spinning processes, "
          f"{args.seconds:g} s per cell; times in microseconds")
    if ambient is not None:
        print(f"load average before the idle run: {ambient[0]:.1f} {ambient[1]:.1f} "
              f"{ambient[2]:.1f} (above 0.5 or so, the 'idle' columns are not idle)")
    print()
    print("| call | shape | library | threads | idle p50 | idle p99 | idle max "
          "| load p50 | load p99 | load max | load p99 / 1-thread load p99 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in idle:
        lib, op, shape, nt = key
        i, l = idle[key], loaded[key]
        ratio = l[1] / loaded[(lib, op, shape, 1)][1]
        print(f"| {op} | {shape} | {lib} | {nt} | {i[0]:.1f} | {i[1]:.1f} | {i[2]:.0f} "
              f"| {l[0]:.1f} | {l[1]:.1f} | {l[2]:.0f} | {ratio:.2f} |")
    print()
    print(f"layer_norm (1, 768), out=, default threads, idle: p50 {small[0]:.2f} us, "
          f"p99 {small[1]:.2f} us")
    key = ("fastnorm", "layer_norm", "(128, 768)", 2)
    print(f"layer_norm (128, 768), 2 threads: load p99 / idle p50 = "
          f"{loaded[key][1] / idle[key][0]:.1f}")


if __name__ == "__main__":
    main()
