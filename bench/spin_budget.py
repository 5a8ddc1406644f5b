"""How long the pool's workers should spin after a call.

A worker that is still spinning when the next call comes joins it at once; a
sleeping one must be woken (a futex wake, then the scheduler), and by the time
it runs a small call may be over. The script times a 2-thread layer_norm on
(128, 768) float32 for several spin budgets, with the caller doing other work
(a busy wait) for a given gap between calls, and prints the p50 per budget and
gap, with the 1-thread p50 for reference. A budget pays where it covers the
gap; beyond that it only burns CPU. The pool's quiet periods (no spinning
while the CPUs are oversubscribed) are turned off during the measurement, so
that the numbers show the spin alone; on a busy machine they are noisy.

    python bench/spin_budget.py
"""
import os
import time

import numpy as np

import fastnorm as fn
from fastnorm import _core

BUDGETS_US = (0, 10, 25, 50, 100, 200)
GAPS_US = (0, 5, 20, 50, 100, 300)


def _p50(call, gap_us, calls):
    clock = time.perf_counter_ns
    times = []
    for _ in range(calls):
        t0 = clock()
        call()
        t1 = clock()
        times.append(t1 - t0)
        end = t1 + gap_us * 1000
        while clock() < end:
            pass
    return np.percentile(np.array(times) / 1000.0, 50)


def main(calls=2000):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((128, 768), dtype=np.float32)
    y = np.empty_like(x)
    one = lambda: fn.layer_norm(x, out=y, num_threads=1)  # noqa: E731
    two = lambda: fn.layer_norm(x, out=y, num_threads=2)  # noqa: E731
    old, old_quiet = _core._pool_spin_us(), _core._pool_quiet_ms()
    _core._pool_quiet_ms(0)
    try:
        print("p50 of layer_norm (128, 768) float32, out=, in microseconds; load average "
              + " ".join(f"{v:.1f}" for v in os.getloadavg()))
        print()
        print("| spin budget (us) | " + " | ".join(f"gap {g} us" for g in GAPS_US) + " |")
        print("|---:|" + "---:|" * len(GAPS_US))
        print("| 1 thread | " + " | ".join(f"{_p50(one, g, calls):.1f}" for g in GAPS_US)
              + " |")
        for budget in BUDGETS_US:
            _core._pool_spin_us(budget)
            two()
            print(f"| {budget} | "
                  + " | ".join(f"{_p50(two, g, calls):.1f}" for g in GAPS_US) + " |")
    finally:
        _core._pool_spin_us(old)
        _core._pool_quiet_ms(old_quiet)


if __name__ == "__main__":
    main()
