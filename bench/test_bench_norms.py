"""LayerNorm / RMSNorm, forward and backward, the fused residual add +
LayerNorm (add_layer_norm), AdaLN (ada_layer_norm), and the channel normalizers
(GroupNorm NCHW and channels-last, InstanceNorm, BatchNorm in training and eval
mode, SwitchNorm, Batch Layer Norm, weight norm, each with its backward pass):
fastnorm against its peers.

One benchmark per op x shape x dtype x threads x implementation, grouped as
``op|shape|dtype|tN`` so each pytest-benchmark table compares peers side by
side. What exactly each implementation's timed call does is documented in
norm_impls.py. Run with ``pytest bench`` (see bench/README.md).
"""
import math
import os
import time

import pytest

import norm_impls

# Seconds of measurement per benchmark (after calibration and one warm-up round).
TARGET_S = float(os.environ.get("BENCH_TARGET_S", "0.1" if norm_impls.quick_mode() else "0.3"))
MIN_ROUND_S = 5e-4  # loop calls inside a round until it lasts this long (timer resolution)
MAX_ROUNDS = 300
PAUSE_S = 0.02  # let the previous benchmark's spinning threads (fastnorm, OpenMP, onnxruntime) go to sleep
# Before a multi-threaded benchmark, wait at most this long for a stall phase to pass
# (norm_impls.StallProbe), and at most SESSION_STALL_WAIT_S over the whole run.
STALL_WAIT_S = float(os.environ.get("BENCH_STALL_WAIT_S", "5"))
SESSION_STALL_WAIT_S = float(os.environ.get("BENCH_SESSION_STALL_WAIT_S", "120"))
_stall_waited = [0.0]


def _params():
    for op, shape, dtype, threads, impl, quick in norm_impls.cases():
        marks = [pytest.mark.bench_forward if op in norm_impls.FORWARD_OPS
                 else pytest.mark.bench_backward]
        if quick:
            marks.append(pytest.mark.quick)
        yield pytest.param(op, shape, dtype, threads, impl, marks=marks,
                           id=f"{op}-{norm_impls.shape_label(shape)}-{dtype}-t{threads}-{impl}")


def _plan(run):
    """(rounds, iterations) that fill about TARGET_S, from the time of one warm call."""
    run()  # first call: page faults, lazy initialization
    t0 = time.perf_counter()
    run()
    t = time.perf_counter() - t0
    if t < 1e-3:  # too short to trust one sample
        k = max(1, int(1e-3 / max(t, 1e-7)))
        t0 = time.perf_counter()
        for _ in range(k):
            run()
        t = (time.perf_counter() - t0) / k
    iterations = max(1, math.ceil(MIN_ROUND_S / t))
    rounds = int(TARGET_S / (t * iterations))
    min_rounds = 3 if t > 0.2 else 5
    return max(min_rounds, min(MAX_ROUNDS, rounds)), iterations


@pytest.fixture(scope="session")
def stall_probe():
    return norm_impls.StallProbe()


@pytest.mark.parametrize("op, shape, dtype, threads, impl", list(_params()))
def test_norm(benchmark, checked, stall_probe, op, shape, dtype, threads, impl):
    cshape = norm_impls.check_shape(op, shape)
    key = (impl, op, dtype, threads, cshape)
    try:
        if key not in checked:
            checked[key] = norm_impls.check(impl, op, dtype, threads, shape=cshape)
        inputs = norm_impls.get_inputs(shape, dtype)
        run, context = norm_impls.make_runner(impl, op, inputs, threads)
    except norm_impls.Unavailable as exc:
        pytest.skip(str(exc))
    if checked[key] is not None:
        pytest.fail(f"{impl} disagrees with fastnorm.reference on {op} {dtype} "
                    f"t{threads} {norm_impls.shape_label(cshape)}: "
                    f"{checked[key]} -- not timed")

    benchmark.group = norm_impls.group_name(op, shape, dtype, threads)
    benchmark.extra_info.update(
        op=op, impl=impl, shape=list(shape), dtype=dtype, threads=threads,
        array_bytes=int(inputs.x.nbytes),
        bytes_moved=norm_impls.bytes_moved(op, shape, dtype))
    time.sleep(PAUSE_S)
    if threads > 1:
        budget = max(0.0, min(STALL_WAIT_S, SESSION_STALL_WAIT_S - _stall_waited[0]))
        waited, stalled = stall_probe.wait(threads, budget)
        _stall_waited[0] += waited
        benchmark.extra_info.update(stall_wait_s=round(waited, 3), stalled_before=stalled)
    with context:
        rounds, iterations = _plan(run)
        benchmark.extra_info.update(rounds=rounds, iterations=iterations)
        benchmark.pedantic(run, rounds=rounds, iterations=iterations, warmup_rounds=1)
    if threads > 1:
        benchmark.extra_info["stalled_after"] = stall_probe.stalled(threads)
