"""The memory floor of the benchmarks: the best copy this machine can do.

``floor.c`` is compiled on first use (with the C compiler in ``$CC``, else
``cc``; OpenMP when it links) into a git-ignored cache folder and loaded with
ctypes. Two passes:

- ``make_copy(x, y, threads)``: y = x, what a forward pass must at least do
  (read x, write y);
- ``make_read2_write1(a, b, out, threads)``: out = a ^ b, what a backward pass
  must at least do (read x and dy, write dx).

Each pass is the faster of two stores, chosen once per destination when the
callable is made: ordinary stores, and streaming (non-temporal) stores, which
write around the cache and skip the read of each destination line that an
ordinary store of data beyond the cache costs. Both are timed, interleaved, a
few times, and the faster kept (``FASTNORM_BENCH_STREAM_BYTES=N`` instead
streams exactly the destinations of at least N bytes). A glibc ``memcpy`` uses
ordinary stores at every size: on data beyond the cache it is not the floor.
"""
import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "floor.c")
CACHE = os.path.join(HERE, ".build")


def _compiler():
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("the benchmark floor needs a C compiler (set CC)")
    return cc.split()


@functools.lru_cache(maxsize=None)
def _lib():
    with open(SOURCE, "rb") as f:
        tag = hashlib.sha256(f.read()).hexdigest()[:12]
    os.makedirs(CACHE, exist_ok=True)
    path = os.path.join(CACHE, f"floor-{tag}{'.dll' if sys.platform == 'win32' else '.so'}")
    if not os.path.exists(path):
        base = _compiler() + ["-O2", "-fPIC", "-shared", SOURCE, "-o", path + ".tmp"]
        try:  # threaded when OpenMP links, else serial
            subprocess.run(base + ["-fopenmp"], check=True, capture_output=True)
        except subprocess.CalledProcessError:
            subprocess.run(base, check=True, capture_output=True)
        os.replace(path + ".tmp", path)
    lib = ctypes.CDLL(path)
    size_t, vp, c_int = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int
    lib.floor_copy.argtypes = [vp, vp, size_t, c_int, c_int]
    lib.floor_read2_write1.argtypes = [vp, vp, vp, size_t, c_int, c_int]
    lib.floor_streaming_available.restype = c_int
    return lib


def _choose_stream(run_with, nbytes):
    """1 to stream, 0 for ordinary stores: FASTNORM_BENCH_STREAM_BYTES's rule
    when set, else the faster of the two over a few interleaved runs."""
    if not _lib().floor_streaming_available():
        return 0
    env = os.environ.get("FASTNORM_BENCH_STREAM_BYTES")
    if env:
        return int(nbytes >= int(env))
    best = [float("inf"), float("inf")]
    reps = max(1, min(50, (64 << 20) // max(nbytes, 1)))
    for _ in range(3):
        for stream in (0, 1):
            t0 = time.perf_counter()
            for _ in range(reps):
                run_with(stream)
            best[stream] = min(best[stream], (time.perf_counter() - t0) / reps)
    return int(best[1] < best[0])


def _check(*arrays):
    for a in arrays:
        if not a.flags.c_contiguous:
            raise ValueError("the floor passes take C-contiguous arrays")


def make_copy(x, y, threads, x2=None, y2=None):
    """y = x (and y2 = x2: the two arrays of a fused op) by the best copy; the
    callable returns y (or (y, y2))."""
    pairs = [(x, y)] if x2 is None else [(x, y), (x2, y2)]
    for src, dst in pairs:
        _check(src, dst)
        if src.nbytes != dst.nbytes:
            raise ValueError("source and destination differ in size")
    lib = _lib()
    calls = [(src.ctypes.data, dst.ctypes.data, dst.nbytes, int(threads)) for src, dst in pairs]

    def run_with(stream):
        for args in calls:
            lib.floor_copy(*args, stream)

    stream = _choose_stream(run_with, sum(dst.nbytes for _, dst in pairs))
    result = y if x2 is None else (y, y2)

    def run():
        run_with(stream)
        return result
    run.streaming = bool(stream)
    return run


def make_read2_write1(a, b, out, threads):
    """out = a ^ b (bitwise), the pass that reads two arrays and writes one."""
    _check(a, b, out)
    if not (a.nbytes == b.nbytes == out.nbytes):
        raise ValueError("the three arrays differ in size")
    lib = _lib()
    args = (a.ctypes.data, b.ctypes.data, out.ctypes.data, out.nbytes, int(threads))

    def run_with(stream):
        lib.floor_read2_write1(*args, stream)

    stream = _choose_stream(run_with, out.nbytes)

    def run():
        run_with(stream)
        return out
    run.streaming = bool(stream)
    return run


if __name__ == "__main__":
    # Both passes at a few sizes, ordinary against streaming stores, and
    # np.copyto: python bench/floor.py [threads]
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    lib = _lib()
    print(f"threads {threads}; GB/s counts the bytes read and written")

    def gbs(f, nbytes):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            f()
            best = min(best, time.perf_counter() - t0)
        return nbytes / best / 1e9

    for mib in (1, 4, 16, 64, 256):
        x = np.random.default_rng(0).standard_normal(mib << 18).astype(np.float32)
        y = np.empty_like(x)
        rates = [gbs(lambda s=s: lib.floor_copy(x.ctypes.data, y.ctypes.data, y.nbytes,
                                                threads, s), 2 * x.nbytes) for s in (0, 1)]
        assert np.array_equal(x, y)
        chosen = make_copy(x, y, threads).streaming
        print(f"{mib:4d} MiB copy: ordinary {rates[0]:6.1f}, streaming {rates[1]:6.1f}, "
              f"np.copyto {gbs(lambda: np.copyto(y, x), 2 * x.nbytes):6.1f} GB/s; "
              f"chosen: {'streaming' if chosen else 'ordinary'}")
