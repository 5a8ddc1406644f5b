"""Records the bits of thousands of random calls, and compares a build with a record.

A refactoring of the front end, the generated declarations or the kernel
targets must not change one bit of any result. This tool makes that
checkable across builds:

    FASTNORM_ISA=avx2 python tools/bitcompare.py record before-avx2.json
    ... rebuild ...
    FASTNORM_ISA=avx2 python tools/bitcompare.py compare before-avx2.json

Each case is one seed of tests/fuzz_cases.py (a public normalizer or layer,
its shapes, layouts, dtypes, data and thread count drawn from the seed).
For a call that succeeds the record keeps a SHA-256 of every result and of
every array the call may write (``out``, running statistics), NaN payloads
included; for a call that raises, the exception's class. ``compare`` prints
every seed whose record differs and exits with 1 if any does.

The kernel target is whatever FASTNORM_ISA selects (the record names it);
compare a build with a record of the same target.
"""
import argparse
import hashlib
import json
import os
import sys
import warnings

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import fastnorm  # noqa: E402
import fuzz_cases  # noqa: E402


def _digest(parts):
    """SHA-256 of fuzz_cases.fingerprint's parts: (dtype, shape, bytes) of each
    result, (name, bytes) of each written array, None for an absent result."""
    h = hashlib.sha256()
    for p in parts:
        if p is None:
            h.update(b"<none>")
        else:
            h.update(repr(p[:-1]).encode())
            h.update(p[-1])
    return h.hexdigest()


def outcome(seed):
    """What the seed's call gives: ["ok", digest] or ["error", class name]."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            try:
                case = fuzz_cases.make_case(seed)
            except Exception as exc:  # noqa: BLE001 - a forward the case needs failed
                return ["build-error", type(exc).__name__]
            try:
                result = case.call()
            except Exception as exc:  # noqa: BLE001
                return ["error", type(exc).__name__]
            return ["ok", _digest(fuzz_cases.fingerprint(case, result))]


def _seeds(spec):
    first, _, last = spec.partition(":")
    return range(int(first), int(last)) if last else range(int(first))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("record", "compare"))
    ap.add_argument("file")
    ap.add_argument("--seeds", default="0:4000", help="FIRST:END or COUNT (default 0:4000)")
    args = ap.parse_args(argv)
    isa = fastnorm.get_config()["isa"]
    if args.mode == "record":
        rec = {"isa": isa, "cases": {str(s): outcome(s) for s in _seeds(args.seeds)}}
        with open(args.file, "w") as f:
            json.dump(rec, f)
        ok = sum(v[0] == "ok" for v in rec["cases"].values())
        print(f"recorded {len(rec['cases'])} cases ({ok} successful calls) on {isa}")
        return 0
    with open(args.file) as f:
        rec = json.load(f)
    if rec["isa"] != isa:
        print(f"note: the record was made on {rec['isa']}, this run is on {isa}")
    bad = 0
    for s, want in rec["cases"].items():
        got = outcome(int(s))
        if got != want:
            bad += 1
            print(f"seed {s} {fuzz_cases.target_of(int(s))}: was {want}, now {got}")
    n = len(rec["cases"])
    print(f"{n - bad} of {n} cases identical on {isa}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
