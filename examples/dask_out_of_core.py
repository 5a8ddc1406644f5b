"""Normalize an array on disk, as large as you like, with fastnorm.dask.

The example writes a float32 NumPy memmap of --gib GiB (rows of --features
values) into a temporary folder, normalizes it chunk by chunk with dask into
a second memmap, with dask's progress bar, and reports the throughput next to
that of one in-memory fastnorm call on a slice that fits in memory.

--norm layer: layer norm of each row, one pass over the file (each chunk holds
whole rows). --norm batch: batch norm in training mode over the rows: the
per-feature statistics are merged over the chunks (a first pass), then each
chunk is normalized with them (a second pass).

    python examples/dask_out_of_core.py                  # 0.25 GiB, layer norm
    python examples/dask_out_of_core.py --gib 8 --norm batch
"""
import argparse
import os
import tempfile
import time

import numpy as np

import dask
import dask.array as da
from dask.diagnostics import ProgressBar

import fastnorm
import fastnorm.dask as fd


def write_input(path, rows, features, slab_rows, seed=0):
    """A float32 memmap of shape (rows, features), filled a slab at a time
    (memory use stays at one slab), values of mean 10 and spread 3."""
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(rows, features))
    rng = np.random.default_rng(seed)
    for start in range(0, rows, slab_rows):
        stop = min(rows, start + slab_rows)
        mm[start:stop] = 10.0 + 3.0 * rng.standard_normal((stop - start, features), np.float32)
    mm.flush()
    return mm


def normalize(x, norm, weight, bias, threads):
    """The dask result for --norm, and the statistics batch norm used."""
    if norm == "layer":
        return fd.layer_norm(x, weight, bias, num_threads=threads), None
    rm = np.zeros(x.shape[1], np.float32)
    rv = np.ones(x.shape[1], np.float32)
    y, mean, rstd = fd.batch_norm(x, rm, rv, weight, bias, training=True, return_stats=True,
                                  num_threads=threads)
    return y, (mean.compute(), rstd.compute())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=0.25, help="size of the array on disk (GiB)")
    ap.add_argument("--features", type=int, default=1024, help="values per row")
    ap.add_argument("--chunk-mib", type=float, default=32.0, help="size of a dask chunk (MiB)")
    ap.add_argument("--norm", choices=("layer", "batch"), default="layer")
    ap.add_argument("--threads", type=int, default=1,
                    help="fastnorm threads per dask task (dask's workers are the parallelism)")
    ap.add_argument("--workers", type=int, default=None,
                    help="dask worker threads (default: one per core)")
    ap.add_argument("--memory-gib", type=float, default=0.25,
                    help="size of the in-memory comparison's slice (GiB)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    if args.gib <= 0 or args.features <= 0 or args.chunk_mib <= 0:
        ap.error("--gib, --features and --chunk-mib must be positive")

    row_bytes = args.features * 4
    rows = max(2, int(args.gib * 2**30) // row_bytes)
    chunk_rows = max(1, int(args.chunk_mib * 2**20) // row_bytes)
    rng = np.random.default_rng(1)
    weight = (1.0 + 0.1 * rng.standard_normal(args.features)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(args.features)).astype(np.float32)
    workers = args.workers or os.cpu_count() or 1

    with tempfile.TemporaryDirectory() as tmp:
        src = write_input(os.path.join(tmp, "x.f32"), rows, args.features, chunk_rows)
        dst = np.memmap(os.path.join(tmp, "y.f32"), dtype=np.float32, mode="w+",
                        shape=src.shape)
        x = da.from_array(src, chunks=(chunk_rows, args.features))
        gib = src.nbytes / 2**30
        print(f"input: {gib:.3f} GiB float32, {rows} x {args.features}, "
              f"{x.numblocks[0]} chunks of {chunk_rows} rows")

        with dask.config.set(scheduler="threads", num_workers=workers):
            t0 = time.perf_counter()
            if args.quiet:
                y, stats = normalize(x, args.norm, weight, bias, args.threads)
                da.store(y, dst, lock=False)
            else:
                with ProgressBar():
                    y, stats = normalize(x, args.norm, weight, bias, args.threads)
                    da.store(y, dst, lock=False)
            t_dask = time.perf_counter() - t0
        dst.flush()

        # one in-memory call on a slice that fits
        n = max(2, min(rows, int(args.memory_gib * 2**30) // row_bytes))
        xs = np.array(src[:n])
        t0 = time.perf_counter()
        if args.norm == "layer":
            ys = fastnorm.layer_norm(xs, weight, bias)
        else:
            ys = fastnorm.batch_norm(xs, None, None, weight, bias, training=True)
        t_mem = time.perf_counter() - t0
        # the reference for the dask result on the same rows: the in-memory
        # call for layer norm; for batch norm, the statistics of the whole
        # file (which the slice's own differ from) applied in float64
        if args.norm == "layer":
            ref = ys
        else:
            mean, rstd = (s.astype(np.float64) for s in stats)
            ref = (xs - mean) * rstd * weight + bias
        err = float(np.max(np.abs(np.asarray(dst[:n], np.float64) - ref)))
        del src, dst, x, y

    rate_dask = gib * 2**30 / 1e9 / t_dask
    rate_mem = xs.nbytes / 1e9 / t_mem
    print(f"dask, fastnorm.dask.{args.norm}_norm ({workers} worker threads x {args.threads} "
          f"fastnorm thread(s)), disk to disk: {t_dask:.3f} s, {rate_dask:.2f} GB/s")
    print(f"in memory, one fastnorm.{args.norm}_norm call ({fastnorm.get_num_threads()} "
          f"threads) on {xs.nbytes / 2**30:.3f} GiB: {t_mem:.4f} s, {rate_mem:.2f} GB/s")
    print(f"max |dask - reference| on the first {n} rows: {err:.3g}")
    return {"seconds_dask": t_dask, "seconds_memory": t_mem, "gbps_dask": rate_dask,
            "gbps_memory": rate_mem, "max_abs_err": err}


if __name__ == "__main__":
    main()
