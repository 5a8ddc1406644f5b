"""Per-call cost of small calls, where argument handling and not arithmetic is the time.

    python bench/call_cost.py [--repeat 7] [--json FILE]

Each call below is timed in rounds of 2000 calls, the rounds of all calls
interleaved, and the median of `--repeat` rounds is reported in
microseconds per call (1 thread, float32). To compare two builds, run this
script against each alternately (PYTHONPATH pointing at each installed
copy) several times and compare the lowest medians: the machine's noise
shifts both alike.
"""
import argparse
import json
import statistics
import time

import numpy as np

import fastnorm
from fastnorm import nn


def _calls():
    rng = np.random.default_rng(0)
    f32 = np.float32
    x768 = rng.standard_normal((1, 768)).astype(f32)
    w768, b768 = np.ones(768, f32), np.zeros(768, f32)
    y768 = np.empty_like(x768)
    xb = rng.standard_normal((2, 32, 1, 1)).astype(f32)
    rm, rv = np.zeros(32, f32), np.ones(32, f32)
    wb, bb = np.ones(32, f32), np.zeros(32, f32)
    xg = rng.standard_normal((2, 16, 2, 2)).astype(f32)
    wg, bg = np.ones(16, f32), np.zeros(16, f32)
    xm = rng.standard_normal((8, 32, 16, 16)).astype(f32)
    dyg = rng.standard_normal(xg.shape).astype(f32)
    _, mg, rg = fastnorm.group_norm(xg, 4, wg, bg, return_stats=True)
    ln_layer = nn.LayerNorm(768)
    bn_layer = nn.BatchNorm2d(32)
    bn_layer.eval()
    one = dict(num_threads=1)
    return {
        "layer_norm (1, 768) w, b, out=": lambda: fastnorm.layer_norm(
            x768, w768, b768, out=y768, **one),
        "rms_norm (1, 768) w, out=": lambda: fastnorm.rms_norm(x768, w768, out=y768, **one),
        "batch_norm eval (2, 32, 1, 1)": lambda: fastnorm.batch_norm(
            xb, rm, rv, wb, bb, training=False, **one),
        "batch_norm eval (8, 32, 16, 16)": lambda: fastnorm.batch_norm(
            xm, rm, rv, wb, bb, training=False, **one),
        "group_norm (2, 16, 2, 2) G=4": lambda: fastnorm.group_norm(xg, 4, wg, bg, **one),
        "group_norm_backward (2, 16, 2, 2)": lambda: fastnorm.group_norm_backward(
            dyg, xg, mg, rg, wg, **one),
        "instance_norm (2, 16, 2, 2)": lambda: fastnorm.instance_norm(xg, wg, bg, **one),
        "nn.LayerNorm(768) (1, 768)": lambda: ln_layer(x768),
        "nn.BatchNorm2d eval (2, 32, 1, 1)": lambda: bn_layer(xb),
    }


def measure(repeat=7, number=2000):
    calls = _calls()
    times = {k: [] for k in calls}
    for fn in calls.values():  # warm up
        for _ in range(200):
            fn()
    for _ in range(repeat):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            times[name].append((time.perf_counter() - t0) / number * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", help="also write the medians to this file")
    args = ap.parse_args()
    res = measure(args.repeat)
    for k, v in res.items():
        print(f"{k:38s} {v:7.2f} us")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
