"""Turn a pytest-benchmark JSON of bench/ into a markdown table and a plot.

Usage:
    python bench/report.py bench/runs/results.json --out bench/results
    python bench/report.py .benchmarks/            # the newest saved run under it

writes ``<out>/results.md`` (one table per op: median times of every
implementation, the ratios "peer / fastnorm" -- above 1 means fastnorm is
faster -- and fastnorm's effective bandwidth as a share of a plain copy's) and
``<out>/results.png`` (effective GB/s against array size, float32, one panel
per op and thread count, the copy floor dashed) for the row-wise normalizers,
``<out>/results-channels.png``, the same for the channel normalizers
(group / instance / batch norm) when the run has them, and
``<out>/results-family.png`` for the rest of the family (switch norm, batch
layer norm, weight norm).

"fastnorm" is fastnorm on its default kernel target (the best the CPU has);
fastnorm-scalar, on its portable target, is where "fastnorm" did not run.
The peers: torch, jax (the row ops; one thread count per run, that of JAX's
pool), onnxruntime, numpy.
Effective GB/s = bytes that must move (forward: read x + write y; fused
add_layer_norm: read x, residual + write s, y; backward: read x, dy + write dx)
/ median time. The copy floor of a shape, dtype and thread count is the fastest
"copy" measured for it (floor.py: the best copy, with streaming stores beyond
the cache); the row backward ops use the pass measured in their own groups,
which reads two arrays and writes one, the channel backward ops the forward
copy; the fused op's rows use the copy of its own groups, which moves its four
arrays. Its table also has "fastnorm-unfused / fastnorm": what
the fusion saves over np.add + fastnorm.layer_norm.

The channel normalizers' ops: group_norm (32 groups, NCHW), group_norm_nhwc
(channels-last, axis=-1; torch on a channels_last tensor), instance_norm,
batch_norm_train (batch statistics, running statistics updated),
batch_norm_eval (running statistics), the backward of each (instance_norm_backward,
batch_norm_backward of training mode, batch_norm_eval_backward), and the rest of
the family: switch_norm and batch_layer_norm (training mode; the torch peer is a
composition of torch ops) and weight_norm (v (out, ...), axis 0; torch._weight_norm),
with their backward. Their bytes are counted like the row-wise ops' (forward:
read x + write y; backward: read x, dy + write dx; weight norm: v, w, dw, dv).
"""
import argparse
import collections
import datetime
import glob
import json
import math
import os
import platform
import sys
import textwrap
from collections import defaultdict

ROW_OPS = ("layer_norm", "rms_norm", "add_layer_norm", "ada_layer_norm", "layer_norm_backward",
           "rms_norm_backward")
# the channel normalizers, in two figures: group / instance / batch norm, and the rest
NORM_CHANNEL_OPS = ("group_norm", "group_norm_backward", "group_norm_nhwc",
                    "group_norm_nhwc_backward", "instance_norm", "instance_norm_backward",
                    "batch_norm_train", "batch_norm_eval", "batch_norm_backward",
                    "batch_norm_eval_backward")
FAMILY_OPS = ("switch_norm", "switch_norm_backward", "batch_layer_norm",
              "batch_layer_norm_backward", "weight_norm", "weight_norm_backward")
CHANNEL_OPS = NORM_CHANNEL_OPS + FAMILY_OPS
OPS = ROW_OPS + CHANNEL_OPS
FUSED_OPS = ("add_layer_norm",)  # two inputs read, two outputs written
IMPLS = ("fastnorm", "fastnorm-scalar", "fastnorm-unfused", "numpy", "torch", "jax",
         "onnxruntime", "copy")
PEERS = ("torch", "jax", "onnxruntime", "numpy", "fastnorm-unfused")
STYLE = {  # colour, marker
    "fastnorm": ("tab:red", "o"),
    "fastnorm-scalar": ("tab:orange", "s"),
    "fastnorm-unfused": ("tab:brown", "X"),
    "numpy": ("tab:blue", "^"),
    "torch": ("tab:purple", "v"),
    "jax": ("tab:cyan", "h"),
    "onnxruntime": ("tab:green", "P"),
    "copy": ("black", None),
}
SLOWER_WITH_THREADS = 1.5  # a tN time over this multiple of the t1 time is flagged
NARROW_N = 256  # rows shorter than this (65536x64) are drawn as lone markers, not on the line
CHANNEL_PLOT_COLS = 4  # the channel ops' figure wraps its panels in rows of this many


def is_narrow(op, shape):
    """A row-wise op on rows shorter than NARROW_N (65536x64)."""
    return op in ROW_OPS and shape[-1] < NARROW_N


def is_batch_norm_1d(op, shape):
    """A BatchNorm op on 2-D x (4096x1024)."""
    return op.startswith("batch_norm_") and len(shape) == 2


def is_lone(op, shape):
    """Drawn as a lone marker off its op's line (a kernel shape unlike the line's at
    similar bytes): rows shorter than NARROW_N (65536x64), BatchNorm1d's 2-D x (4096x1024)."""
    return is_narrow(op, shape) or is_batch_norm_1d(op, shape)


def arrays_moved(op):
    """Arrays of x's size that must move (as bench/norm_impls.arrays_moved)."""
    if op in FUSED_OPS:
        return 4
    return 3 if "backward" in op else 2


def find_json(path):
    """A JSON file, or the newest *.json under a directory such as .benchmarks/."""
    if os.path.isdir(path):
        files = glob.glob(os.path.join(path, "**", "*.json"), recursive=True)
        if not files:
            sys.exit(f"no *.json under {path}")
        return max(files, key=os.path.getmtime)
    return path


def load(path, stat="median"):
    with open(path) as f:
        data = json.load(f)
    results = {}  # (op, shape, dtype, threads) -> impl -> record
    for b in data.get("benchmarks", []):
        ei = b.get("extra_info") or {}
        if "op" in ei:
            op, impl = ei["op"], ei["impl"]
            shape, dtype, threads = tuple(ei["shape"]), ei["dtype"], int(ei["threads"])
        else:  # a run without extra_info: parse group "op|RxC|dtype|tN" and the param id
            op, shape_s, dtype, t = b["group"].split("|")
            shape = tuple(int(s) for s in shape_s.split("x"))
            threads = int(t[1:])
            impl = b["name"].rsplit(f"-t{threads}-", 1)[1].rstrip("]")
        itemsize = 8 if dtype == "float64" else 4
        nbytes = ei.get("array_bytes", math.prod(shape) * itemsize)
        moved = ei.get("bytes_moved", arrays_moved(op) * nbytes)
        results.setdefault((op, shape, dtype, threads), {})[impl] = {
            "median": b["stats"][stat], "iqr": b["stats"].get("iqr"),
            "rounds": b["stats"].get("rounds"), "array_bytes": nbytes, "bytes_moved": moved,
            "stalled": bool(ei.get("stalled_before") or ei.get("stalled_after")),
            "stall_wait_s": float(ei.get("stall_wait_s") or 0.0),
        }
    return data, results


def combine(runs):
    """Several runs of the suite -> one: per benchmark, the run with the lowest time.

    On a noisy machine a disturbance only ever adds time, so the best of a few
    runs is the closest to what the code does; flags of the chosen run are kept."""
    out = {}
    for results in runs:
        for key, impls in results.items():
            dest = out.setdefault(key, {})
            for impl, rec in impls.items():
                if impl not in dest or rec["median"] < dest[impl]["median"]:
                    dest[impl] = rec
    return out


ROW_BACKWARD_OPS = ("layer_norm_backward", "rms_norm_backward")


def floor_kind(op):
    """Which copy is an op's floor: the fused ops' own (four arrays), the row
    backward ops' own (read two, write one), else the plain one."""
    if op in FUSED_OPS:
        return "fused"
    return "backward" if op in ROW_BACKWARD_OPS else "plain"


def copy_floor(results):
    """(kind, shape, dtype, threads) -> GB/s of the fastest copy measured for it;
    kind is floor_kind(op) of the groups the copy ran in."""
    best = {}
    for (op, shape, dtype, threads), impls in results.items():
        if "copy" in impls:
            r = impls["copy"]
            gbs = r["bytes_moved"] / r["median"] / 1e9
            k = (floor_kind(op), shape, dtype, threads)
            best[k] = max(best.get(k, 0.0), gbs)
    return best


def floor_of(floors, op, shape, dtype, threads):
    """The copy floor of a row: its own kind of copy, else the plain copy of the shape."""
    own = floors.get((floor_kind(op), shape, dtype, threads))
    return own if own is not None else floors.get(("plain", shape, dtype, threads))


def fmt_time(s):
    if s is None:
        return ""
    if s < 1e-3:
        return f"{s * 1e6:.3g} µs"
    if s < 1:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_ratio(r):
    return "" if r is None else f"{r:.2f}"


def fastnorm_of(impls):
    for name in ("fastnorm", "fastnorm-scalar"):
        if name in impls:
            return impls[name]
    return None


def row_order(key):
    op, shape, dtype, threads = key
    return (dtype != "float32", dtype, math.prod(shape), shape[-1], threads)


def geomean(xs):
    xs = [x for x in xs if x]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else None


def op_table(op, results, floors):
    keys = sorted((k for k in results if k[0] == op), key=row_order)
    if not keys:
        return [], {}
    present = [i for i in IMPLS if any(i in results[k] for k in keys)]
    peers = [p for p in PEERS if p in present]
    header = ["shape", "dtype", "threads"] + present
    header += [f"{p} / fastnorm" for p in peers]
    if "fastnorm" in present and "fastnorm-scalar" in present:
        header.append("scalar / default")
    header += ["fastnorm GB/s", "copy GB/s", "fastnorm % of copy"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ratios = defaultdict(list)
    flags = defaultdict(int)
    borrowed = False
    for k in keys:
        _, shape, dtype, threads = k
        impls = dict(results[k])
        shown = {}
        # NumPy is single-threaded: a tN row compares with its 1-thread time.
        if "numpy" not in impls and threads != 1:
            t1 = results.get((op, shape, dtype, 1), {})
            if "numpy" in t1:
                impls["numpy"] = t1["numpy"]
                shown["numpy"] = fmt_time(t1["numpy"]["median"]) + " †"
                borrowed = True
        fn = fastnorm_of(impls)
        t1 = results.get((op, shape, dtype, 1), {}) if threads != 1 else {}
        for i in present:
            if i in impls and i not in shown:
                mark = ""
                if impls[i]["stalled"]:
                    mark += " ⚠"
                    flags["stall"] += 1
                if i in t1 and impls[i]["median"] > SLOWER_WITH_THREADS * t1[i]["median"]:
                    mark += " §"
                    flags["slower"] += 1
                shown[i] = fmt_time(impls[i]["median"]) + mark
        cells = ["x".join(map(str, shape)), dtype, str(threads)]
        cells += [shown.get(i, "—") for i in present]
        for p in peers:
            r = impls[p]["median"] / fn["median"] if (fn and p in impls) else None
            ratios[p].append(r)
            cells.append(fmt_ratio(r) if r is not None else "—")
        if "scalar / default" in header:
            a, s = impls.get("fastnorm"), impls.get("fastnorm-scalar")
            r = s["median"] / a["median"] if a and s else None
            ratios["scalar / default"].append(r)
            cells.append(fmt_ratio(r) if r is not None else "—")
        gbs = fn["bytes_moved"] / fn["median"] / 1e9 if fn else None
        floor = floor_of(floors, op, shape, dtype, threads)
        cells.append(f"{gbs:.1f}" if gbs else "—")
        cells.append(f"{floor:.1f}" if floor else "—")
        cells.append(f"{100 * gbs / floor:.0f}%" if gbs and floor else "—")
        lines.append("| " + " | ".join(cells) + " |")
    notes = []
    if borrowed:
        notes.append("† NumPy is single-threaded: its 1-thread time, repeated for comparison.")
    if flags["stall"]:
        notes.append("⚠ the stall probe (a small multi-threaded call) was stalled just before "
                     "or after this measurement: the machine was descheduling spinning threads; "
                     "rerun before trusting it.")
    if flags["slower"]:
        notes.append(f"§ over {SLOWER_WITH_THREADS}x slower than the same implementation with 1 "
                     "thread: a stall of the machine or a real scaling problem.")
    if notes:
        lines.append("")
        lines += [n + "  " for n in notes[:-1]] + notes[-1:]
    summary = {name: geomean(v) for name, v in ratios.items()}
    return lines, summary


def plot(results, floors, path, dtype="float32", stat="median", ops=ROW_OPS, max_cols=None):
    """One panel per op (of `ops`) and thread count; with max_cols, each thread count's
    panels wrap in rows of max_cols. False when the run has none of the ops."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [op for op in ops if any(k[0] == op and k[2] == dtype for k in results)]
    threads = sorted({k[3] for k in results if k[2] == dtype and k[0] in ops})
    if not ops:
        return False
    ncols = min(len(ops), max_cols or len(ops))
    op_rows = math.ceil(len(ops) / ncols)
    nrows = op_rows * len(threads)
    # at least ~9 inches wide, so that a report of one or two ops (pytest -k) still has
    # room for the legend and the note below the panels
    width = max(4.6 * ncols, 9.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.9 * nrows),
                             squeeze=False, sharex=True)
    for i in range(len(ops), op_rows * ncols):  # empty places of the last row of panels
        for ti in range(len(threads)):
            axes[ti * op_rows + i // ncols][i % ncols].axis("off")
    for ti, t in enumerate(threads):
        for i, op in enumerate(ops):
            row, col = ti * op_rows + i // ncols, i % ncols
            ax = axes[row][col]
            keys = [k for k in results if k[0] == op and k[2] == dtype and k[3] == t]
            for impl in IMPLS:
                if impl == "copy":
                    continue
                pts = [(results[k][impl]["array_bytes"], k[1],
                        results[k][impl]["bytes_moved"] / results[k][impl]["median"] / 1e9)
                       for k in keys if impl in results[k]]
                if not pts:
                    continue
                color, marker = STYLE[impl]
                line = sorted((b, g) for b, s, g in pts if not is_lone(op, s))
                lone = [(b, g) for b, s, g in pts if is_lone(op, s)]
                if line:
                    ax.plot(*zip(*line), color=color, marker=marker, ms=4, lw=1.4, label=impl)
                if lone:
                    ax.plot(*zip(*lone), color=color, marker="D", ms=6, ls="none",
                            mfc="none", mew=1.5, label=None if line else impl)
                bad = [(results[k][impl]["array_bytes"],
                        results[k][impl]["bytes_moved"] / results[k][impl]["median"] / 1e9)
                       for k in keys if impl in results[k] and results[k][impl]["stalled"]]
                if bad:
                    ax.plot(*zip(*bad), marker="o", ms=11, ls="none", mfc="none",
                            mec="0.55", mew=1.0, label="stall flagged (⚠)")
            floor = sorted({(results[k].get("copy", next(iter(results[k].values())))["array_bytes"],
                             floor_of(floors, op, k[1], k[2], k[3]))
                            for k in keys if floor_of(floors, op, k[1], k[2], k[3])
                            and not is_lone(op, k[1])})  # 65536x64 shares 1024x4096's bytes
            if floor:  # a lone point (one shape run) gets a marker: a line needs two
                ax.plot(*zip(*floor), color="black", ls="--", lw=1.2, label="copy (floor)",
                        marker="_" if len(floor) == 1 else None, ms=14, mew=1.5, clip_on=False)
            # the floor of the channel ops' lone shapes (BatchNorm1d): a tick of its own
            lone_floor = sorted({(results[k].get("copy", next(iter(results[k].values())))["array_bytes"],
                                  floor_of(floors, op, k[1], k[2], k[3]))
                                 for k in keys if op in CHANNEL_OPS and is_lone(op, k[1])
                                 and floor_of(floors, op, k[1], k[2], k[3])})
            if lone_floor:
                ax.plot(*zip(*lone_floor), color="black", ls="none", marker="_", ms=14, mew=1.5,
                        clip_on=False, label=None if floor else "copy (floor)")
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            ax.set_title(f"{op}, {dtype}, {t} thread{'s' if t > 1 else ''}", fontsize=10)
            if row == nrows - 1 or (ti == len(threads) - 1 and i + ncols >= len(ops)):
                ax.set_xlabel("array bytes (x)")
            if col == 0:
                ax.set_ylabel(f"effective GB/s ({stat} time)")
            ax.set_ylim(bottom=0)
    handles = {}
    for ax in axes.flat:
        for h, l in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(l, h)
    ncol = min(len(handles), max(1, int(width / 1.7)))  # ~1.7 inches per legend entry
    legend_rows = math.ceil(len(handles) / ncol) if handles else 1
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
               ncol=ncol, frameon=False, fontsize=9)
    lone = sorted({"x".join(map(str, k[1])) for k in results
                   if k[0] in ops and k[2] == dtype and is_lone(k[0], k[1])})
    lone_what = []
    if any(is_narrow(k[0], k[1]) for k in results if k[0] in ops and k[2] == dtype):
        lone_what.append(f"rows shorter than {NARROW_N}")
    if any(is_batch_norm_1d(k[0], k[1]) for k in results if k[0] in ops and k[2] == dtype):
        lone_what.append("BatchNorm1d")
    narrow = (f"hollow diamonds: {' and '.join(lone_what)} ({', '.join(lone)}); " if lone else "")
    fused = "add_layer_norm: read x, residual + write s, y; " if "add_layer_norm" in ops else ""
    note = textwrap.fill(
        f"{narrow}grey rings: measurements flagged by the stall probe; effective "
        f"GB/s = (forward: read x + write y; {fused}"
        f"backward: read x, dy + write dx) / {stat} time", width=int(width * 17))
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8)
    height = fig.get_figheight()
    bottom = (0.2 + 0.14 * (note.count("\n") + 1)) / height  # inches -> figure fraction
    top = 1 - (0.15 + 0.25 * legend_rows) / height
    fig.tight_layout(rect=(0, bottom, 1, top))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("json", nargs="+",
                    help="pytest-benchmark JSON (--benchmark-json=FILE), a saved run, or a "
                         "directory (.benchmarks/) to take the newest run from; several runs "
                         "are combined by taking, per benchmark, the run with the lowest time")
    ap.add_argument("--stat", default="median", choices=("median", "min", "mean"),
                    help="the statistic of each benchmark's rounds to report (default median)")
    ap.add_argument("--out", default="bench/results", help="output folder (default bench/results)")
    ap.add_argument("--plot-dtype", default="float32")
    args = ap.parse_args(argv)

    paths = [find_json(p) for p in args.json]
    loaded = [load(p, args.stat) for p in paths]
    data = loaded[-1][0]
    results = combine([r for _, r in loaded])
    # how many of the runs most benchmarks were taken in (runs at other thread
    # counts hold other benchmarks)
    counts = collections.Counter(sum(1 for _, r in loaded if key in r and impl in r[key])
                                 for key, impls in results.items() for impl in impls)
    per_benchmark = counts.most_common(1)[0][0] if counts else 0
    if not results:
        sys.exit(f"{', '.join(paths)}: no benchmarks")
    floors = copy_floor(results)
    meta = data.get("fastnorm_bench", {})
    machine = data.get("machine_info", {})
    cpu = (meta.get("cpu_model") or machine.get("cpu_model")
           or (machine.get("cpu") or {}).get("brand_raw") or platform.processor() or "unknown")
    ncpu = meta.get("cpu_count") or machine.get("cpu_count") or (machine.get("cpu") or {}).get("count")
    date = ", ".join(d.get("datetime", "unknown") for d, _ in loaded)
    commands = [d.get("fastnorm_bench", {}).get("command") for d, _ in loaded]
    command = "; ".join(dict.fromkeys(c for c in commands if c)) or (
        "python -m pytest bench --benchmark-json=bench/runs/results.json")
    versions = meta.get("versions") or {}

    md = ["# fastnorm benchmarks", ""]
    md.append(f"- CPU: {cpu} ({ncpu} logical cores)")
    md.append(f"- run: {date}" + (" (quick mode)" if meta.get("quick") else ""))
    if versions:
        md.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items() if v))
    cfg = meta.get("fastnorm_config")
    if isinstance(cfg, dict):
        md.append(f"- fastnorm: default kernels {cfg.get('isa')}, available "
                  f"{', '.join(cfg.get('isas_available', []))}, threads: {cfg.get('threads', 'serial')}")
    waits = [r["stall_wait_s"] for impls in results.values() for r in impls.values()]
    stalled = sum(r["stalled"] for impls in results.values() for r in impls.values())
    if any(waits) or stalled:
        md.append(f"- stall gate: waited {sum(waits):.1f} s in all for multi-threaded calls to stop "
                  f"stalling; {stalled} measurement(s) flagged ⚠")
    run_metas = [d.get("fastnorm_bench") or {} for d, _ in loaded]
    jax_runs = sorted({(m["jax_threads"], m.get("jax_threads_from", "?"))
                       for m in run_metas if m.get("jax_threads") is not None})
    if jax_runs:
        md.append("- JAX: " + ", ".join(f"{n} thread(s) ({src})" for n, src in jax_runs)
                  + "; its thread pool is sized once per process, so a run has JAX at one "
                  "thread count (the others: run again with PJRT_NPROC=N or BENCH_THREADS=N "
                  "and pass both runs to the report)")
    md.append(f"- reproduce: `{command}`")
    stat_opt = f" --stat {args.stat}" if args.stat != "median" else ""
    md.append(f"- report: `python bench/report.py {' '.join('bench/runs/' + os.path.basename(p) for p in paths)}"
              f" --out {os.path.relpath(args.out)}{stat_opt}`" + (f" (best of {per_benchmark} runs per benchmark)"
                                                  if per_benchmark > 1 else ""))
    md.append("")
    md.append(f"{args.stat.capitalize()} time per call. Ratios are peer time / fastnorm time (above 1: fastnorm "
              "is faster); fastnorm runs its default kernel target. GB/s counts the bytes that "
              "must move (forward: read x + write y; add_layer_norm: read x, residual + write s, "
              "y; backward: read x, dy + write dx); the copy floor is the best copy of x "
              "(bench/floor.py: C, the same thread count, streaming stores for destinations "
              "from half the last-level cache on), measured in the forward groups (for "
              "add_layer_norm, x and the residual copied to two buffers); the row backward ops' "
              "floor reads x and dy and writes dx, measured in their own groups. fastnorm "
              "writes y (and s) into preallocated out= arrays, and the row backward ops' dx too "
              "(as the floor's destination); torch and jax allocate their outputs. "
              "fastnorm-unfused (add_layer_norm only) is np.add(x, r, out=s) then "
              "fastnorm.layer_norm(s, out=y). jax (the row ops) is jax.jit of the formulas in "
              "jax.numpy on the CPU, inputs already on the device, block_until_ready in the "
              "timed call; its backward is jax.jit of jax.vjp, which computes the forward's "
              "statistics again (fastnorm and torch take saved ones).")
    if any(k[0] in NORM_CHANNEL_OPS for k in results):
        md += ["", "Channel normalizers (x (N, C, H, W) with per-channel weight and bias; "
               "(4096, 1024) is BatchNorm1d): group_norm has 32 groups; the _nhwc ops take "
               "channels-last (N, H, W, C) x with axis=-1 (torch: the same memory as a "
               "channels_last tensor); batch_norm_train normalizes with the batch statistics and "
               "updates the running ones in place (torch too); batch_norm_eval normalizes with "
               "the running statistics; batch_norm_backward is the backward of training mode, "
               "batch_norm_eval_backward that of eval mode; instance_norm_backward uses the "
               "instance statistics. "
               "onnxruntime runs group_norm (GroupNormalization, opset 21), instance_norm "
               "(InstanceNormalization) and batch_norm_eval (BatchNormalization, opset 15), "
               "channels-first only. No NumPy peer."]
    if any(k[0] in FAMILY_OPS for k in results):
        md += ["", "The rest of the family (training mode, no running statistics): switch_norm "
               "(NCHW, unequal mixing logits; its backward also gives the logits' gradients) "
               "and batch_layer_norm (channels-last (B, ..., D), eps 1e-3) have no PyTorch op: "
               "their torch peer is a composition of torch ops (bench/norm_impls.py: "
               "torch_switch_norm, torch_batch_layer_norm) and autograd through it. "
               "weight_norm normalizes a weight v (out, ...) over all axes but 0 (torch: "
               "torch._weight_norm(v, g, 0)); its time includes allocating w (dv, dg) in "
               "both libraries. No NumPy or onnxruntime peer."]
    summaries = {}
    for op in OPS:
        lines, summary = op_table(op, results, floors)
        if not lines:
            continue
        summaries[op] = summary
        md += ["", f"## {op}", ""] + lines
    if summaries:
        names = [n for n in [f"{p}" for p in PEERS] + ["scalar / default"]
                 if any(s.get(n) for s in summaries.values())]
        md += ["", "## Geometric means of the ratios over all rows", "",
               "| op | " + " | ".join(n if n == "scalar / default" else f"{n} / fastnorm"
                                     for n in names) + " |",
               "|" + "---|" * (len(names) + 1)]
        for op, s in summaries.items():
            md.append(f"| {op} | " + " | ".join(fmt_ratio(s.get(n)) or "—" for n in names) + " |")

    os.makedirs(args.out, exist_ok=True)
    pngs = []
    for name, ops, cols, alt in (
            ("results.png", ROW_OPS, None, "effective bandwidth"),
            ("results-channels.png", NORM_CHANNEL_OPS, CHANNEL_PLOT_COLS,
             "effective bandwidth, channel normalizers"),
            ("results-family.png", FAMILY_OPS, CHANNEL_PLOT_COLS,
             "effective bandwidth, switch, batch layer and weight norm")):
        png = os.path.join(args.out, name)
        if plot(results, floors, png, args.plot_dtype, args.stat, ops=ops, max_cols=cols):
            md += ["", f"![{alt}]({name})"]
            pngs.append(png)
    md_path = os.path.join(args.out, "results.md")
    with open(md_path, "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"CPU: {cpu}")
    print(f"date of the run(s): {date}; report made {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"reproduce: {command}")
    print(f"wrote {' and '.join([md_path] + pngs)}")


if __name__ == "__main__":
    main()
