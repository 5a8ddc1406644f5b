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
