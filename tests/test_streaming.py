"""Outputs written with streaming stores (large calls) carry the same bits as
with ordinary stores: only the store instruction differs. The threshold is
lowered to 0 here, and short rows and the outputs a call allocates itself
are allowed to stream, so that small arrays take the streaming path with or
without out=."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core

ml_dtypes = pytest.importorskip("ml_dtypes")

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
# rows shorter than, equal to and longer than one streamed chunk (1024), odd
# lengths (tails), and a row of a few elements
SHAPES = [(37, 5), (9, 1024), (5, 1031), (3, 2500), (64, 96), (2, 3077)]


@pytest.fixture
def streaming():
    """A function that runs a call with streaming stores on, then off."""
    before = _core._stream_bytes()
    fresh_before = _core._stream_fresh(True)
    rows_before = _core._stream_row_bytes(0)

    def both(call):
        try:
            _core._stream_bytes(0)
            on = call()
            _core._stream_bytes(-1)
            off = call()
        finally:
            _core._stream_bytes(before)
        return on, off

    yield both
    _core._stream_bytes(before)
    _core._stream_fresh(fresh_before)
    _core._stream_row_bytes(rows_before)


def _bits(result):
    arrays = result if isinstance(result, tuple) else (result,)
    return [np.asarray(a).view(np.uint8).tobytes() for a in arrays if a is not None]


def _data(shape, dt, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    return (offset + rng.standard_normal(shape)).astype(dt)


def _param_dtype(dt):
    return np.float32 if np.dtype(dt).itemsize == 2 else dt


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_row_normalizers_same_bits_streamed(isa, streaming, shape, dt):
    x = _data(shape, dt, 1, offset=3.0)
    r = _data(shape, dt, 2)
    dy = _data(shape, dt, 3)
    pd = _param_dtype(dt)
    w = _data(shape[-1:], pd, 4)
    b = _data(shape[-1:], pd, 5)
    _, m, rs = fn.layer_norm(x, w, b, return_stats=True)
    _, rr = fn.rms_norm(x, w, return_stats=True)
    calls = {
        "layer_norm": lambda: fn.layer_norm(x, w, b, return_stats=True),
        "rms_norm": lambda: fn.rms_norm(x, w, return_stats=True),
        "layer_norm no params": lambda: fn.layer_norm(x),
        "add_layer_norm": lambda: fn.add_layer_norm(x, r, w, b, return_stats=True),
        "add_rms_norm": lambda: fn.add_rms_norm(x, r, w, return_stats=True),
        "layer_norm_backward": lambda: fn.layer_norm_backward(dy, x, m, rs, w),
        "rms_norm_backward": lambda: fn.rms_norm_backward(dy, x, rr, w),
        "add_layer_norm_backward": lambda: fn.add_layer_norm_backward(dy, x, m, rs, w, ds=r),
    }
    for name, call in calls.items():
        on, off = streaming(call)
        assert _bits(on) == _bits(off), name


def test_ada_layer_norm_and_strided_rows_same_bits_streamed(isa, streaming):
    x = _data((3, 7, 1100), np.float32, 6)
    shift, scale = _data((3, 1100), np.float32, 7), _data((3, 1100), np.float32, 8)
    on, off = streaming(lambda: fn.ada_layer_norm(x, shift, scale, return_stats=True))
    assert _bits(on) == _bits(off)
    # rows apart in memory (y's rows not contiguous with each other), unaligned out
    big = _data((40, 1300), np.float32, 9)
    xs = big[::2, 3:1290]
    buf = np.zeros(20 * 1287 + 1, np.float32)
    out = buf[1:].reshape(20, 1287)

    def strided():
        fn.layer_norm(xs, out=out)
        return out.copy()
    on, off = streaming(strided)
    assert _bits(on) == _bits(off)
    assert buf[0] == 0  # nothing written before out


def test_nan_and_inf_rows_same_bits_streamed(streaming):
    x = _data((6, 2050), np.float32, 10)
    x[1, 7] = np.nan
    x[2, 2049] = np.inf
    x[3] = 1e30  # exact-range path
    on, off = streaming(lambda: fn.layer_norm(x, return_stats=True))
    assert _bits(on) == _bits(off)


@pytest.mark.parametrize("dt", [np.float32, np.float64, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(37, 5), (9, 1024), (6, 1031), (3, 2500)], ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_outputs_at_every_offset_in_a_line_same_bits_streamed(streaming, dt, shape, threads):
    """Streamed output goes out in whole cache lines, the partial lines at the
    ends of a run of memory with ordinary stores: every start offset within a
    line, rows shorter than a line, a row written by the exact-range path in
    the middle, and two threads' ranges meeting inside a line give the same
    bits, and nothing outside out is written."""
    x = _data(shape, dt, 11, offset=2.0)
    if np.dtype(dt).itemsize >= 4 and shape[0] > 3:
        x[2] = np.finfo(dt).max / 4  # exact-range path (overflowing sums)
    per_line = 64 // np.dtype(dt).itemsize
    size = shape[0] * shape[1]
    for offset in sorted({0, 1, per_line // 2, per_line - 1}):
        buf = np.full(size + offset + per_line, 7, dt)
        out = buf[offset:offset + size].reshape(shape)

        def call():
            fn.layer_norm(x, out=out, num_threads=threads)
            return out.copy()
        on, off = streaming(call)
        assert _bits(on) == _bits(off), offset
        assert (buf[:offset] == 7).all() and (buf[offset + size:] == 7).all(), offset


def test_threshold_setting_round_trips():
    before = _core._stream_bytes()
    try:
        assert _core._stream_bytes(12345) == before
        assert _core._stream_bytes() == 12345
        _core._stream_bytes(-7)
        assert _core._stream_bytes() == -1
    finally:
        _core._stream_bytes(before)


def test_isa_switch_during_streamed_calls_does_not_crash():
    """A call takes its streaming copy and fence from one read of the kernel
    table: another thread changing the ISA meanwhile cannot leave it with a
    copy and no fence (run in a fresh interpreter: a crash fails the test)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import threading, numpy as np, fastnorm as fn
        from fastnorm import _core
        if len(_core._available_isas()) < 2:
            raise SystemExit(0)
        _core._stream_bytes(0)
        _core._stream_fresh(True)
        x = np.random.default_rng(0).standard_normal((64, 4096)).astype(np.float32)
        stop = False
        def flip():
            while not stop:
                _core._set_isa("scalar"); _core._set_isa("auto")
        t = threading.Thread(target=flip); t.start()
        try:
            for _ in range(1500):
                fn.layer_norm(x, num_threads=1)
                fn.rms_norm_backward(x, x, np.ones(64, np.float32), num_threads=1)
        finally:
            stop = True; t.join()
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_only_outputs_the_caller_provides_stream_by_default():
    before = _core._stream_bytes(0)
    try:
        assert _core._stream_fresh() is False
        streams = _core._get_isa() != "scalar"  # the scalar target has no streaming copy
        assert _core._streams(1 << 20, fresh=False) is streams
        assert _core._streams(1 << 20, fresh=True) is False
        _core._stream_fresh(True)
        assert _core._streams(1 << 20, fresh=True) is streams
        _core._stream_fresh(False)
        # rows shorter than 1 KiB never stream by default
        assert _core._stream_row_bytes() == 1024
        assert _core._streams(1 << 20, fresh=False, row_bytes=1023) is False
        assert _core._streams(1 << 20, fresh=False, row_bytes=1024) is streams
        # rows of 1-2 KiB from twice the threshold, longer rows from the threshold
        _core._stream_bytes(1 << 20)
        assert _core._streams(1 << 20, fresh=False, row_bytes=2048) is streams
        assert _core._streams(1 << 20, fresh=False, row_bytes=2047) is False
        assert _core._streams(2 << 20, fresh=False, row_bytes=1024) is streams
        _core._stream_bytes(-1)
        assert _core._streams(1 << 40, fresh=False) is False
    finally:
        _core._stream_fresh(False)
        _core._stream_bytes(before)


def test_the_default_threshold_streams_large_outputs_the_caller_provides():
    # the default is a size, on every CPU: half the L3 on AMD, 24 MiB elsewhere
    assert _core._stream_bytes() > 0 or "FASTNORM_STREAM_BYTES" in __import__("os").environ
