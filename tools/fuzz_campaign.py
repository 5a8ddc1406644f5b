#!/usr/bin/env python3
"""A long fuzz campaign over fastnorm's public API, in subprocesses.

Runs the seeded cases of tests/fuzz_cases.py (the generator and checker of
tests/test_fuzz.py) in chunks of consecutive seeds, each chunk in a fresh
Python process, several at a time. A chunk whose process dies (a signal, an
abort, a non-zero exit without a Python traceback, or a hang past the
timeout) does not stop the campaign: it is recorded with its seed range and
bisected, in fresh processes, down to the seed that crashes alone (or to
the smallest range that crashes only as a whole). Failing cases are grouped
by target and kind of problem.

Writes summary.json (every failure and crash), summary.md (a readable
digest with replay commands) and campaign.log to the output folder. The
duration bounds when chunks start: chunks in flight, and the bisection of a
crash, finish after it. The exit status is 1 when anything failed.

    python tools/fuzz_campaign.py --duration 120 --workers 2
    python tools/fuzz_campaign.py --cases 200000 --first-seed 0 --out /tmp/fuzz
    python tools/fuzz_campaign.py --duration 60 --huge-threads   # num_threads up to 10**6

Replay one seed with ``python tests/fuzz_cases.py SEED`` (add --huge-threads
for a campaign run with that option).
"""
import argparse
import collections
import json
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")


# --------------------------------------------------------------------------
# The worker: one process, one range of seeds, one JSON line per finding
# --------------------------------------------------------------------------

def worker(first, count, huge_threads, threads):
    sys.path.insert(0, TESTS)
    import fuzz_cases  # noqa: E402 - needs the tests folder on the path

    out = sys.stdout
    for seed in range(first, first + count):
        # the seed about to run, flushed: a crash leaves it as the last line
        out.write(json.dumps({"start": seed}) + "\n")
        out.flush()
        for p in fuzz_cases.seed_problems(seed, threads=threads, huge_threads=huge_threads):
            out.write(json.dumps({"failure": p}) + "\n")
        out.flush()
    out.write(json.dumps({"done": count}) + "\n")
    out.flush()
    return 0


# --------------------------------------------------------------------------
# The parent
# --------------------------------------------------------------------------

def _command(first, count, args):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", str(first), str(count),
           "--threads-check", args.threads_check]
    if args.huge_threads:
        cmd.append("--huge-threads")
    return cmd


class Chunk:
    def __init__(self, first, count, args):
        self.first, self.count = first, count
        self.started = time.monotonic()
        self.proc = subprocess.Popen(_command(first, count, args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)

    def finish(self, timeout):
        """(returncode, lines, stderr, timed_out)."""
        timed_out = False
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            timed_out = True
        lines = []
        for line in out.splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return self.proc.returncode, lines, err, timed_out


def _outcome(rc, lines, err, timed_out):
    """'ok', 'crash' (signal, abort, hang, exit without a Python failure) or
    'error' (the worker itself raised: a harness bug, with its traceback)."""
    done = any("done" in r for r in lines)
    if rc == 0 and done and not timed_out:
        return "ok"
    if not timed_out and rc > 0 and "Traceback (most recent call last)" in err:
        return "error"
    return "crash"


def _describe_exit(rc, timed_out):
    if timed_out:
        return "hung (killed after the timeout)"
    if rc < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def run_range(first, count, args):
    """Runs [first, first + count) in one fresh process, waits for it."""
    ch = Chunk(first, count, args)
    rc, lines, err, timed_out = ch.finish(args.timeout)
    return _outcome(rc, lines, err, timed_out), rc, lines, err, timed_out


def bisect_crash(first, count, args, log):
    """The smallest seed range that still crashes, found by halving in fresh
    processes: a single seed when it crashes alone."""
    steps = []
    while count > 1:
        half = count // 2
        for lo, n in ((first, half), (first + half, count - half)):
            kind, rc, _, _, timed_out = run_range(lo, n, args)
            steps.append({"range": [lo, lo + n], "outcome": kind,
                          "exit": _describe_exit(rc, timed_out) if kind != "ok" else "ok"})
            log(f"  bisect [{lo}, {lo + n}): {kind}")
            if kind == "crash":
                first, count = lo, n
                break
        else:
            break  # neither half crashes alone: the range as a whole does
    return first, count, steps


def signature(p):
    """A failure's kind: the target and the problem with numbers, shapes and
    quoted values taken out."""
    prob = p["problem"]
    prob = re.sub(r"\(got .*", "", prob)
    prob = re.sub(r"<grad, u> = .*", "<grad, u> differs from central differences", prob)
    prob = re.sub(r"array\([^)]*\)", "array", prob)
    prob = re.sub(r"\[[^\]]*\]", "[..]", prob)
    prob = re.sub(r"'[^']*'|\"[^\"]*\"", "'..'", prob)
    prob = re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", prob)
    return f"{p['target']}: {prob[:160]}"


def campaign(args):
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "campaign.log")
    log_file = open(log_path, "w")

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    t0 = time.monotonic()
    deadline = t0 + args.duration if args.duration else None
    last_seed = args.first_seed + args.cases if args.cases else None
    next_seed = args.first_seed
    running = []
    failures = []
    crashes = []
    errors = []
    ran_per_target = collections.Counter()
    seeds_done = 0
    sys.path.insert(0, TESTS)
    import fuzz_cases  # for target_of in the tallies

    def more():
        if last_seed is not None and next_seed >= last_seed:
            return False
        return deadline is None or time.monotonic() < deadline

    log(f"campaign: seeds from {args.first_seed}, chunks of {args.chunk}, {args.workers} "
        f"worker(s), {'duration %ds' % args.duration if args.duration else ''}"
        f"{' cases %d' % args.cases if args.cases else ''}"
        f"{', huge thread counts' if args.huge_threads else ''}")
    while running or more():
        while more() and len(running) < args.workers:
            n = args.chunk if last_seed is None else min(args.chunk, last_seed - next_seed)
            running.append(Chunk(next_seed, n, args))
            next_seed += n
        # wait for the oldest chunk (chunks take about the same time)
        ch = running.pop(0)
        rc, lines, err, timed_out = ch.finish(args.timeout)
        kind = _outcome(rc, lines, err, timed_out)
        started = [r["start"] for r in lines if "start" in r]
        for r in lines:
            if "failure" in r:
                failures.append(r["failure"])
        done_seeds = range(ch.first, ch.first + ch.count) if kind == "ok" else range(
            ch.first, started[-1] if started else ch.first)
        for s in done_seeds:
            ran_per_target[fuzz_cases.target_of(s)] += 1
        seeds_done += len(done_seeds)
        if kind == "error":
            errors.append({"range": [ch.first, ch.first + ch.count], "stderr": err[-3000:]})
            log(f"worker error in [{ch.first}, {ch.first + ch.count}): {err.strip()[-300:]}")
        elif kind == "crash":
            last = started[-1] if started else None
            log(f"crash in [{ch.first}, {ch.first + ch.count}): {_describe_exit(rc, timed_out)}; "
                f"last seed started {last}; bisecting")
            lo, n, steps = bisect_crash(ch.first, ch.count, args, log)
            sole = n == 1
            crash = {
                "range": [ch.first, ch.first + ch.count],
                "exit": _describe_exit(rc, timed_out),
                "last_seed_started": last,
                "bisected_to": [lo, lo + n],
                "crashes_alone": sole,
                "target": fuzz_cases.target_of(lo) if sole else None,
                "stderr_tail": err.strip()[-1500:],
                "bisection": steps,
            }
            if sole:
                try:
                    crash["call"] = fuzz_cases.make_case(
                        lo, huge_threads=args.huge_threads).describe()
                except Exception as exc:  # noqa: BLE001
                    crash["call"] = f"(could not rebuild: {exc})"
            crashes.append(crash)
            log(f"  -> crashing seed(s) [{lo}, {lo + n})"
                + (f": {crash['target']}" if sole else " (only together)"))
            # the rest of the chunk after the crashing seed still runs
            rest = (last + 1) if (last is not None and sole and last == lo) else None
            if rest is not None and rest < ch.first + ch.count:
                running.append(Chunk(rest, ch.first + ch.count - rest, args))
    elapsed = time.monotonic() - t0
    log(f"done: {seeds_done} cases in {elapsed:.0f} s, {len(failures)} failing, "
        f"{len(crashes)} crash(es), {len(errors)} worker error(s)")
    summary = write_summary(args, failures, crashes, errors, ran_per_target, seeds_done,
                            elapsed)
    log_file.close()
    return summary


def write_summary(args, failures, crashes, errors, ran_per_target, seeds_done, elapsed):
    groups = collections.OrderedDict()
    for p in sorted(failures, key=lambda p: p["seed"]):
        groups.setdefault(signature(p), []).append(p)
    summary = {
        "first_seed": args.first_seed,
        "cases_run": seeds_done,
        "seconds": round(elapsed, 1),
        "workers": args.workers,
        "huge_threads": args.huge_threads,
        "threads_check": args.threads_check,
        "cases_per_target": dict(sorted(ran_per_target.items())),
        "failures": len(failures),
        "kinds": [{"signature": k, "count": len(v), "seeds": [p["seed"] for p in v[:50]],
                   "example": v[0]} for k, v in groups.items()],
        "crashes": crashes,
        "worker_errors": errors,
    }
    with open(os.path.join(args.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    flag = " --huge-threads" if args.huge_threads else ""
    md = [
        "# fastnorm fuzz campaign",
        "",
        f"{seeds_done} cases (seeds from {args.first_seed}) in {elapsed:.0f} s on "
        f"{args.workers} worker(s){'; thread counts up to 10**6' if args.huge_threads else ''}.",
        f"{len(failures)} failing case(s) of {len(groups)} kind(s); {len(crashes)} crash(es); "
        f"{len(errors)} worker error(s).",
        "",
        f"Replay a seed: `python tests/fuzz_cases.py{flag} SEED`.",
        "",
    ]
    if crashes:
        md += ["## Crashes", ""]
        for c in crashes:
            where = (f"seed {c['bisected_to'][0]} ({c['target']})" if c["crashes_alone"]
                     else f"seeds [{c['bisected_to'][0]}, {c['bisected_to'][1]}) together")
            md += [f"- chunk [{c['range'][0]}, {c['range'][1]}): {c['exit']}; bisected to "
                   f"{where}"]
            if c.get("call"):
                md += [f"  - call: `{c['call'][:400]}`"]
            if c["stderr_tail"]:
                tail = c["stderr_tail"].strip().splitlines()[-1][:200]
                md += [f"  - stderr: `{tail}`"]
        md.append("")
    if groups:
        md += ["## Failures by kind", ""]
        for k, v in groups.items():
            seeds = ", ".join(str(p["seed"]) for p in v[:8]) + (" ..." if len(v) > 8 else "")
            md += [f"- **{k}** -- {len(v)} case(s), seeds {seeds}",
                   f"  - e.g. seed {v[0]['seed']}: {v[0]['problem'][:300]}",
                   f"  - call: `{v[0]['call'][:400]}`"]
        md.append("")
    if errors:
        md += ["## Worker errors", ""]
        for e in errors:
            md += [f"- seeds [{e['range'][0]}, {e['range'][1]}):", "", "```",
                   e["stderr"][-1500:], "```"]
    md += ["## Cases per target", "", "| target | cases |", "|---|---|"]
    md += [f"| {t} | {n} |" for t, n in sorted(ran_per_target.items())]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    return summary


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "fuzz-results"),
                    help="folder for summary.json, summary.md and campaign.log "
                         "(default: fuzz-results/ in the checkout, git-ignored)")
    ap.add_argument("--duration", type=float, default=None,
                    help="stop starting chunks after this many seconds (default 120 "
                         "unless --cases is given)")
    ap.add_argument("--cases", type=int, default=None, help="number of seeds to run")
    ap.add_argument("--first-seed", type=int, default=1_000_000,
                    help="first seed (default 1000000, past the test suite's seeds)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--chunk", type=int, default=200, help="seeds per subprocess")
    ap.add_argument("--timeout", type=float, default=600,
                    help="seconds before a chunk's process counts as hung")
    ap.add_argument("--threads-check", choices=["sample", "all", "none"], default="sample",
                    help="which cases are re-run with 1 and 2 threads and compared bitwise")
    ap.add_argument("--huge-threads", action="store_true",
                    help="also draw num_threads of 40000 and 10**6 (a build that does not "
                         "cap them can crash: the campaign survives and bisects)")
    ap.add_argument("--worker", nargs=2, type=int, metavar=("FIRST", "COUNT"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    threads = {"sample": "sample", "all": True, "none": False}[args.threads_check]
    if args.worker:
        return worker(args.worker[0], args.worker[1], args.huge_threads, threads)
    if args.duration is None and args.cases is None:
        args.duration = 120
    if args.workers < 1 or args.chunk < 1:
        ap.error("--workers and --chunk must be positive")
    summary = campaign(args)
    print(f"summary: {os.path.join(args.out, 'summary.md')}")
    return 1 if (summary["failures"] or summary["crashes"] or summary["worker_errors"]) else 0


if __name__ == "__main__":
    sys.exit(main())
