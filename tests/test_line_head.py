"""Long rows written with ordinary stores go in two calls of their element-wise
primitive: the elements before the output's first cache-line boundary, then
the rest (fn_line_head in drivers/driver.c). Every element gets the same
operations wherever a call starts, so an output at any offset within a line
carries the same bits as a line-aligned one, on every target."""
import numpy as np
import pytest

import fastnorm as fn

ml_dtypes = pytest.importorskip("ml_dtypes")

DTYPES = [np.float32, np.float64, np.float16, ml_dtypes.bfloat16]
# rows at the length from which the head is split off (512), with a tail
# after the vectors, and longer than a streamed chunk
LENGTHS = [512, 515, 1031, 2055]
# the backward splits dx from rows of 2048 (FN_BWD_HEAD_MIN_N); a shorter row
# in one call at every offset as well
BACKWARD_LENGTHS = [1031, 2048, 2055, 4103]


def _data(shape, dt, seed, offset=0.0):
    rng = np.random.default_rng(seed)
    return (offset + rng.standard_normal(shape)).astype(dt)


def _at(shape, dt, offset):
    """An array of `shape` that starts `offset` elements past a 64-byte
    boundary, in a buffer filled with 7s around it."""
    size = int(np.prod(shape))
    per_line = 64 // np.dtype(dt).itemsize
    raw = np.full(size + 2 * per_line + 64, 7, dt)
    start = (-raw.ctypes.data % 64) // np.dtype(dt).itemsize + offset
    return raw, raw[start:start + size].reshape(shape), start


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", LENGTHS)
def test_outputs_at_every_offset_in_a_line_same_bits(isa, dt, n):
    shape = (3, n)
    pd = np.float32 if np.dtype(dt).itemsize == 2 else dt
    x = _data(shape, dt, 1, offset=3.0)
    r = _data(shape, dt, 2)
    w, b = _data((n,), pd, 3), _data((n,), pd, 4)
    calls = {
        "layer_norm": lambda out, s: fn.layer_norm(x, w, b, out=out),
        "layer_norm no params": lambda out, s: fn.layer_norm(x, out=out),
        "layer_norm weight": lambda out, s: fn.layer_norm(x, w, out=out),
        "rms_norm": lambda out, s: fn.rms_norm(x, w, out=out),
        "add_layer_norm": lambda out, s: fn.add_layer_norm(x, r, w, b, out=out, sum_out=s),
        "add_rms_norm": lambda out, s: fn.add_rms_norm(x, r, w, residual_bias=b, out=out,
                                                       sum_out=s),
    }
    per_line = 64 // np.dtype(dt).itemsize
    for name, call in calls.items():
        results = []
        for offset in range(per_line):
            raw_y, y, start = _at(shape, dt, offset)
            raw_s, s, _ = _at(shape, dt, (offset * 5) % per_line)
            call(y, s)
            results.append((y.view(np.uint8).tobytes(), s.view(np.uint8).tobytes()))
            assert (raw_y[:start] == 7).all() and (raw_y[start + y.size:] == 7).all(), name
        assert all(res[0] == results[0][0] for res in results), name
        if name.startswith("add"):
            assert all(res[1] == results[0][1] for res in results), name


def _backward_inputs(shape, dt, n):
    pd = np.float32 if np.dtype(dt).itemsize == 2 else dt
    x = _data(shape, dt, 1, offset=3.0)
    dy = _data(shape, dt, 5)
    ds = _data(shape, dt, 6)
    w = _data((n,), pd, 3)
    _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
    _, rms_rstd = fn.rms_norm(x, w, return_stats=True)
    return x, dy, ds, w, mean, rstd, rms_rstd


def _bits(arrays):
    return tuple(None if a is None else a.view(np.uint8).tobytes() for a in arrays)


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", BACKWARD_LENGTHS)
def test_backward_out_at_every_offset_in_a_line_same_bits(isa, dt, n):
    """dx at every offset within a line, and rows that do not all start at
    one offset (a row stride off the line): the same dx, dweight and dbias.
    Nine rows make several blocks of parameter partials, so their reduction
    runs as well."""
    shape = (9, n)
    x, dy, ds, w, mean, rstd, rms_rstd = _backward_inputs(shape, dt, n)
    calls = {
        "layer_norm_backward": lambda out: fn.layer_norm_backward(dy, x, mean, rstd, w, out=out),
        "layer_norm_backward no weight": lambda out: fn.layer_norm_backward(dy, x, mean, rstd,
                                                                           out=out),
        "rms_norm_backward": lambda out: fn.rms_norm_backward(dy, x, rms_rstd, w, out=out),
        "rms_norm_backward no weight": lambda out: fn.rms_norm_backward(dy, x, rms_rstd,
                                                                       out=out),
    }
    per_line = 64 // np.dtype(dt).itemsize
    for name, call in calls.items():
        results = []
        for offset in range(per_line):
            raw, dx, start = _at(shape, dt, offset)
            got = call(dx)
            assert got[0] is dx, name
            results.append(_bits(got))
            assert (raw[:start] == 7).all() and (raw[start + dx.size:] == 7).all(), name
            # rows one element apart beyond n: every row at another offset
            raw, wide, start = _at((shape[0], n + 1), dt, offset)
            got = call(wide[:, :n])
            results.append(_bits(got))
            assert (raw[:start] == 7).all() and (raw[start + wide.size:] == 7).all(), name
            assert (wide[:, n] == 7).all(), name
        assert all(res == results[0] for res in results), name


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [8, 600] + BACKWARD_LENGTHS)
def test_backward_nan_row_same_bits_at_every_offset(isa, dt, n):
    """A row with a NaN in x gives a NaN dx row: the same NaN (sign and
    payload) in every element however the row is split (the head before a
    line boundary, vectors, the elements after them) and whether rows go
    through their dx one or four at a time."""
    from fastnorm import _core
    shape = (9, n)
    x, dy, ds, w, mean, rstd, rms_rstd = _backward_inputs(shape, dt, n)
    x[1, n // 2] = np.nan
    _, mean, rstd = fn.layer_norm(x, w, return_stats=True)
    _, rms_rstd = fn.rms_norm(x, w, return_stats=True)
    calls = {
        "layer_norm_backward": lambda out: fn.layer_norm_backward(dy, x, mean, rstd, w,
                                                                  out=out)[0],
        "rms_norm_backward": lambda out: fn.rms_norm_backward(dy, x, rms_rstd, out=out)[0],
    }
    per_line = 64 // np.dtype(dt).itemsize
    before = _core._backward_rows()
    try:
        for name, call in calls.items():
            results = []
            for mode in (0, 1):
                _core._backward_rows(mode)
                for offset in range(per_line):
                    _, dx, _ = _at(shape, dt, offset)
                    results.append(call(dx).view(np.uint8).tobytes())
            assert all(res == results[0] for res in results), name
            nan_row = np.frombuffer(results[0], dt).reshape(shape)[1]
            assert np.isnan(nan_row.astype(np.float64)).all(), name
            assert len({nan_row[i:i + 1].tobytes() for i in range(n)}) == 1, name
    finally:
        _core._backward_rows(before)


@pytest.mark.parametrize("dt", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", BACKWARD_LENGTHS)
def test_add_norm_backward_same_bits_wherever_dsum_starts(isa, dt, n):
    """The fused add's backward writes dsum into a new array, wherever the
    allocator puts it. In float32 and float64, dsum is layer_norm_backward's
    (rms_norm_backward's) dx, at any offset, plus ds. In every dtype, spacer
    allocations move dsum to other offsets within a line, and every offset
    seen gives the same bits (five rows: two blocks of partials; arrays small
    enough for the allocator not to put every one 16 bytes past a page)."""
    shape = (5, n)
    x, dy, ds, w, mean, rstd, rms_rstd = _backward_inputs(shape, dt, n)
    calls = {
        "add_layer_norm_backward": lambda: fn.add_layer_norm_backward(dy, x, mean, rstd, w,
                                                                      ds=ds),
        "add_rms_norm_backward": lambda: fn.add_rms_norm_backward(dy, x, rms_rstd, w, ds=ds),
    }
    if np.dtype(dt).itemsize >= 4:
        dsum = calls["add_layer_norm_backward"]()[0]
        rms_dsum = calls["add_rms_norm_backward"]()[0]
        for offset in range(64 // np.dtype(dt).itemsize):
            _, dx, _ = _at(shape, dt, offset)
            fn.layer_norm_backward(dy, x, mean, rstd, w, out=dx)
            assert (dx + ds).tobytes() == dsum.tobytes()
            fn.rms_norm_backward(dy, x, rms_rstd, w, out=dx)
            assert (dx + ds).tobytes() == rms_dsum.tobytes()
    for name, call in calls.items():
        by_offset = {}
        kept = []  # every result and spacer stays alive: no block is reused
        for trial in range(64):
            got = call()
            by_offset.setdefault(got[0].ctypes.data % 64, _bits(got))
            if len(by_offset) == 4:
                break
            kept += [got, np.empty(2048 + 16 * trial, np.uint8)]
        assert all(res == by_offset[min(by_offset)] for res in by_offset.values()), name
        if len(by_offset) < 2:
            pytest.skip("the allocator put every dsum at one offset within a line")
