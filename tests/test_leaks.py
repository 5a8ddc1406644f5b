"""No memory grows with the number of calls: resident memory stays flat over
many calls of every public normalizer and layer, valid calls and calls that
raise alike.

The calls are cases of tests/fuzz_cases.py (random shapes, layouts, dtypes,
out=, running statistics, invalid arguments), each called again and again.
Resident memory is read from /proc/self/statm; the test is skipped where
that does not exist.
"""
import gc
import os
import warnings

import numpy as np
import pytest

import fuzz_cases

STATM = "/proc/self/statm"

# Calls per target: warm-up, then rounds of CALLS; growth is measured from the
# end of the first round to the end of the last.
WARMUP = 500
CALLS = 2500
ROUNDS = 3
# Allowed growth per target over (ROUNDS - 1) * CALLS = 5000 calls: 512 KiB.
# A leak of about 100 bytes per call or more (any leaked array, object or
# reference to one: the smallest leaked array of these cases is larger) goes
# past it, while malloc's arena and page granularity and NumPy's small-block
# caches, which level off after the warm-up, stay well under it.
BOUND = 512 * 1024
# Allowed growth of the whole process over a second pass over every target.
TOTAL_BOUND = 2 * 1024 * 1024

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(STATM), reason="no /proc/self/statm here"),
]


def rss():
    with open(STATM) as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cases(target, valid=8, invalid=4):
    """Some valid and some invalid calls of target, none of the large ones."""
    out_valid, out_invalid = [], []
    n = len(fuzz_cases.TARGETS)
    for seed in fuzz_cases.seeds_of(target, 0, 400 * n):
        try:
            case = fuzz_cases.make_case(seed)
        except Exception:  # noqa: BLE001 - a case whose forward refused: not needed here
            continue
        if case.big:
            continue
        if case.bad is None and case.maybe is None and len(out_valid) < valid:
            out_valid.append(case)
        elif case.bad is not None and len(out_invalid) < invalid:
            out_invalid.append(case)
        if len(out_valid) == valid and len(out_invalid) == invalid:
            break
    return out_valid + out_invalid


def _call_all(cases, times):
    for i in range(times):
        case = cases[i % len(cases)]
        try:
            case.call()
        except Exception:  # noqa: BLE001 - the invalid calls raise, as they should
            pass


@pytest.fixture(scope="module")
def all_cases():
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return {t: _cases(t) for t in fuzz_cases.TARGETS}


@pytest.mark.parametrize("target", fuzz_cases.TARGETS)
def test_rss_flat(target, all_cases):
    cases = all_cases[target]
    assert cases, f"no cases for {target}"
    assert any(c.bad is not None for c in cases), f"no error-raising case for {target}"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        _call_all(cases, WARMUP)
        marks = []
        for _ in range(ROUNDS):
            _call_all(cases, CALLS)
            gc.collect()
            marks.append(rss())
    growth = marks[-1] - marks[0]
    assert growth <= BOUND, (
        f"{target}: resident memory grew by {growth / 1024:.0f} KiB over "
        f"{(ROUNDS - 1) * CALLS} calls (rounds end at {[m // 1024 for m in marks]} KiB)")


def test_rss_flat_over_everything(all_cases):
    """Every target in turn, twice: the second pass adds (almost) nothing."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for cases in all_cases.values():
            _call_all(cases, 200)
        gc.collect()
        before = rss()
        for cases in all_cases.values():
            _call_all(cases, 200)
        gc.collect()
        after = rss()
    assert after - before <= TOTAL_BOUND, (
        f"resident memory grew by {(after - before) / 1024:.0f} KiB over a second pass")
