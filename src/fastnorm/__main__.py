"""``python -m fastnorm``: the configuration, an accuracy check, and a quick speed table.

The accuracy check compares LayerNorm and RMSNorm on awkward float32 rows (mean
1e4, standard deviation 1) with the float64 reference and prints PASS or FAIL;
the exit status is 1 on FAIL. Then it times LayerNorm and RMSNorm forward (float32; fastnorm and NumPy write into a
preallocated output, PyTorch returns a new tensor as it always does) against a
plain NumPy implementation and, when importable, PyTorch, at the same thread
count. Medians of repeated runs; ratios > 1 mean fastnorm is faster. For the
full comparison use the benchmark suite in bench/. With more than one thread,
fastnorm is also timed on one thread, and a threaded time far above it (the
threads stalled, as on a busy or virtual machine) gets a warning saying what to do.
"""
import argparse
import sys
import time

import numpy as np

import fastnorm
from fastnorm import reference

SHAPES = [(1, 768), (128, 768), (4096, 768), (1024, 4096)]

# Largest |error| against the float64 reference that the check accepts. The
# centered kernels stay near 1e-6 on rows with mean 1e4; an uncentered variance
# would be off by whole units there.
ACCURACY_TOLERANCE = 1e-4

# A threaded time above this multiple of the one-thread time means the threads
# waited for each other (or for a core) instead of working.
STALL_FACTOR = 3.0


def check_accuracy(rng=None):
    """Max |error| of float32 layer_norm and rms_norm against the float64 reference.

    Returns ``(passed, lines)``: whether every error is within
    ``ACCURACY_TOLERANCE``, and one line per function to print.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    x = (rng.standard_normal((64, 768)) + 1e4).astype(np.float32)
    errors = {
        "layer_norm": float(np.abs(fastnorm.layer_norm(x) - reference.layer_norm(x)[0]).max()),
        "rms_norm": float(np.abs(fastnorm.rms_norm(x) - reference.rms_norm(x)[0]).max()),
    }
    passed = all(np.isfinite(e) and e <= ACCURACY_TOLERANCE for e in errors.values())
    lines = [f"  {name:<11} max |error| = {err:.2e}" for name, err in errors.items()]
    return passed, lines


def stalled(threaded_seconds, one_thread_seconds, factor=STALL_FACTOR):
    """Whether a threaded time is more than `factor` times the one-thread time."""
    return threaded_seconds > factor * one_thread_seconds


def _median_seconds(fn, budget=0.25):
    fn()
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    number = max(1, min(10000, int(0.02 / once)))
    samples = []
    deadline = time.perf_counter() + budget
    while len(samples) < 5 or (time.perf_counter() < deadline and len(samples) < 50):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - t0) / number)
    return float(np.median(samples))


def _numpy_layer_norm(x, w, b, eps, out):
    mean = x.mean(axis=-1, keepdims=True)
    xc = x - mean
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    np.multiply(xc / np.sqrt(var + eps), w, out=out)
    out += b
    return out


def _numpy_rms_norm(x, w, eps, out):
    ms = np.mean(x * x, axis=-1, keepdims=True)
    np.multiply(x / np.sqrt(ms + eps), w, out=out)
    return out


def _format_us(seconds):
    return f"{seconds * 1e6:9.1f}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastnorm", description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for every implementation (default: fastnorm.get_num_threads())")
    parser.add_argument("--quick", action="store_true", help="two small shapes only")
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be a positive number of threads")

    fastnorm.show_config()
    threads = args.threads if args.threads is not None else fastnorm.get_num_threads()
    try:
        import torch
        import torch.nn.functional as F

        torch.set_num_threads(threads)
    except ImportError:
        torch = None

    # The accuracy check on awkward rows before any timing.
    rng = np.random.default_rng(0)
    passed, lines = check_accuracy(rng)
    print("\naccuracy check, float32 rows with mean 1e4 against the float64 reference "
          f"(tolerance {ACCURACY_TOLERANCE:.0e}):")
    print("\n".join(lines))
    print(f"  {'PASS' if passed else 'FAIL'}")

    shapes = SHAPES[:2] if args.quick else SHAPES
    threaded = threads > 1
    print(f"\nfloat32 forward, out= preallocated, {threads} thread(s); median microseconds")
    head = f"{'op':<11}{'shape':<13}{'fastnorm':>9}"
    if threaded:
        head += f"{'1 thread':>10}"
    head += f"{'numpy':>10}{'numpy/fn':>10}"
    if torch is not None:
        head += f"{'torch':>10}{'torch/fn':>10}"
    print(head)
    stalls = []
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal(shape[-1]).astype(np.float32)
        b = rng.standard_normal(shape[-1]).astype(np.float32)
        out = np.empty_like(x)
        cases = {
            "layer_norm": (
                lambda nt=threads: fastnorm.layer_norm(x, w, b, out=out, num_threads=nt),
                lambda: _numpy_layer_norm(x, w, b, 1e-5, out),
                None if torch is None else (lambda tx=torch.from_numpy(x), tw=torch.from_numpy(w),
                                            tb=torch.from_numpy(b):
                                            F.layer_norm(tx, (shape[-1],), tw, tb)),
            ),
            "rms_norm": (
                lambda nt=threads: fastnorm.rms_norm(x, w, out=out, num_threads=nt),
                lambda: _numpy_rms_norm(x, w, 1.1920929e-07, out),
                None if torch is None else (lambda tx=torch.from_numpy(x), tw=torch.from_numpy(w):
                                            F.rms_norm(tx, (shape[-1],), tw)),
            ),
        }
        for op, (fn_fast, fn_numpy, fn_torch) in cases.items():
            t_fast = _median_seconds(fn_fast)
            row = f"{op:<11}{str(shape):<13}{_format_us(t_fast)}"
            if threaded:
                t_one = _median_seconds(lambda: fn_fast(1))
                mark = "!" if stalled(t_fast, t_one) else " "
                if mark == "!":
                    stalls.append((op, shape, t_fast / t_one))
                row = row + mark + _format_us(t_one)
            t_numpy = _median_seconds(fn_numpy)
            row += f"{_format_us(t_numpy)} {t_numpy / t_fast:8.1f}x"
            if fn_torch is not None:
                with torch.inference_mode():
                    t_torch = _median_seconds(fn_torch)
                row += f"{_format_us(t_torch)} {t_torch / t_fast:8.1f}x"
            print(row)
    if torch is None:
        print("(PyTorch is not installed: its columns are left out)")
    if stalls:
        worst = max(ratio for _, _, ratio in stalls)
        print(f"\nWARNING: {len(stalls)} threaded time(s) marked ! took up to {worst:.0f}x the "
              f"one-thread time (more than {STALL_FACTOR:.0f}x): the threads stalled, waiting "
              "for each other or for a core. On a busy or virtual machine run fastnorm on one "
              "thread: pass num_threads=1, call fastnorm.set_num_threads(1), or set "
              "OMP_NUM_THREADS=1 (OMP_WAIT_POLICY=passive may also help).")
    if not passed:
        print("\nFAIL: the accuracy check is outside its tolerance", file=sys.stderr)
        return 1
    return 0



if __name__ == "__main__":
    sys.exit(main())
