"""``python -m fastnorm``: the configuration, a correctness check, and a quick speed table.

Times LayerNorm and RMSNorm forward (float32; fastnorm and NumPy write into a
preallocated output, PyTorch returns a new tensor as it always does) against a
plain NumPy implementation and, when importable, PyTorch, at the same thread
count. Medians of repeated runs; ratios > 1 mean fastnorm is faster. For the
full comparison use the benchmark suite in bench/.
"""
import argparse
import sys
import time

import numpy as np

import fastnorm
from fastnorm import reference

SHAPES = [(1, 768), (128, 768), (4096, 768), (1024, 4096)]


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

    # A correctness check on awkward rows before any timing.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((64, 768)) + 1e4).astype(np.float32)
    err = np.abs(fastnorm.layer_norm(x) - reference.layer_norm(x)[0]).max()
    print(f"\nlayer_norm check, float32 rows with mean 1e4: max |error| = {err:.2e}")

    shapes = SHAPES[:2] if args.quick else SHAPES
    print(f"\nfloat32 forward, out= preallocated, {threads} thread(s); median microseconds")
    head = f"{'op':<11}{'shape':<13}{'fastnorm':>9}{'numpy':>10}{'numpy/fn':>10}"
    if torch is not None:
        head += f"{'torch':>10}{'torch/fn':>10}"
    print(head)
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        w = rng.standard_normal(shape[-1]).astype(np.float32)
        b = rng.standard_normal(shape[-1]).astype(np.float32)
        out = np.empty_like(x)
        cases = {
            "layer_norm": (
                lambda: fastnorm.layer_norm(x, w, b, out=out, num_threads=threads),
                lambda: _numpy_layer_norm(x, w, b, 1e-5, out),
                None if torch is None else (lambda tx=torch.from_numpy(x), tw=torch.from_numpy(w),
                                            tb=torch.from_numpy(b):
                                            F.layer_norm(tx, (shape[-1],), tw, tb)),
            ),
            "rms_norm": (
                lambda: fastnorm.rms_norm(x, w, out=out, num_threads=threads),
                lambda: _numpy_rms_norm(x, w, 1.1920929e-07, out),
                None if torch is None else (lambda tx=torch.from_numpy(x), tw=torch.from_numpy(w):
                                            F.rms_norm(tx, (shape[-1],), tw)),
            ),
        }
        for op, (fn_fast, fn_numpy, fn_torch) in cases.items():
            t_fast = _median_seconds(fn_fast)
            t_numpy = _median_seconds(fn_numpy)
            row = f"{op:<11}{str(shape):<13}{_format_us(t_fast)}{_format_us(t_numpy)} {t_numpy / t_fast:8.1f}x"
            if fn_torch is not None:
                with torch.inference_mode():
                    t_torch = _median_seconds(fn_torch)
                row += f"{_format_us(t_torch)} {t_torch / t_fast:8.1f}x"
            print(row)
    if torch is None:
        print("(PyTorch is not installed: its columns are left out)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
