"""Seeded random calls of every public normalizer and layer (tests/fuzz_cases.py).

Each seed is one call of one target, built from that seed alone; the targets
take turns, so FASTNORM_FUZZ_CASES seeds from FASTNORM_FUZZ_SEED on give each
of them about CASES / 34 calls. A case passes when

- an invalid argument raises ValueError or TypeError naming it, and every
  array passed (inputs, out, running statistics) is byte for byte as before;
- a valid call succeeds and, on finite data, matches the float64 formulas of
  fastnorm.reference within the suite's tolerances, with the documented
  dtypes, writing nothing but out, sum_out and running statistics;
- a sample of the calls (every fourth seed, every call large enough for
  several threads, every call with NaN or Inf) gives the same bits with
  num_threads=1 and num_threads=2.

A failure lists each failing seed with its problem and the call; replay one
with ``python tests/fuzz_cases.py SEED``. tools/fuzz_campaign.py runs the
same cases for longer, in subprocesses.
"""
import os

import pytest

import fuzz_cases

# about 30 s on two cores; the campaign script runs as many as one likes
CASES = int(os.environ.get("FASTNORM_FUZZ_CASES", "6000"))
SEED = int(os.environ.get("FASTNORM_FUZZ_SEED", "0"))


def _report(target, failures, ran):
    lines = [f"{len(failures)} of {ran} {target} cases failed "
             f"(FASTNORM_FUZZ_SEED={SEED}, FASTNORM_FUZZ_CASES={CASES}); "
             "replay one with: python tests/fuzz_cases.py SEED"]
    lines += [f[:1500] for f in failures[:12]]
    if len(failures) > 12:
        lines.append(f"... and {len(failures) - 12} more")
    return "\n".join(lines)


@pytest.mark.parametrize("target", fuzz_cases.TARGETS)
def test_fuzz(target):
    seeds = fuzz_cases.seeds_of(target, SEED, CASES)
    failures = []
    for seed in seeds:
        failures += fuzz_cases.check_seed(seed)
    assert not failures, _report(target, failures, len(seeds))


def test_seeds_cover_every_target():
    """The seeds of a run split evenly over the targets, each seed to one."""
    n = len(fuzz_cases.TARGETS)
    got = sorted(s for t in fuzz_cases.TARGETS for s in fuzz_cases.seeds_of(t, 5, 3 * n + 2))
    assert got == list(range(5, 5 + 3 * n + 2))
    assert all(fuzz_cases.target_of(s) == t for t in fuzz_cases.TARGETS
               for s in fuzz_cases.seeds_of(t, 5, 3 * n + 2))


def test_cases_replay_exactly():
    """A seed builds the same call every time (the failure messages rely on it)."""
    for seed in range(0, 3 * len(fuzz_cases.TARGETS), 5):
        a, b = fuzz_cases.make_case(seed), fuzz_cases.make_case(seed)
        assert a.describe() == b.describe()
        pa, pb = a.arrays(), b.arrays()
        assert pa.keys() == pb.keys()
        for k in pa:
            assert pa[k].dtype == pb[k].dtype and pa[k].shape == pb[k].shape
            if pa[k].dtype != object:
                assert pa[k].tobytes() == pb[k].tobytes(), (seed, k)


def test_checker_catches_a_wrong_result(monkeypatch):
    """The checker is not vacuous: layer_norm made to return y + 1e-3 fails,
    and one that refuses a valid call fails too."""
    import fastnorm

    seeds = [s for s in fuzz_cases.seeds_of("layer_norm", 0, 40 * len(fuzz_cases.TARGETS))
             if fuzz_cases.make_case(s).bad is None and fuzz_cases.make_case(s).exact][:5]
    real = fastnorm.layer_norm

    def off(*args, **kw):
        res = real(*args, **kw)
        y = res[0] if isinstance(res, tuple) else res
        if y.size:
            y[...] = (y.astype("float64") + 1e-3).astype(y.dtype)
        return res

    def refuse(*args, **kw):
        raise ValueError("x is not welcome")

    for fake in (off, refuse):
        monkeypatch.setattr(fastnorm, "layer_norm", fake)
        caught = [s for s in seeds if fuzz_cases.check_seed(s, threads=False)]
        assert caught, fake.__name__
    monkeypatch.setattr(fastnorm, "layer_norm", real)
    assert not any(fuzz_cases.check_seed(s, threads=False) for s in seeds
                   if fuzz_cases.make_case(s).mode == "normal")
