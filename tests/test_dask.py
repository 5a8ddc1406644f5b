"""fastnorm.dask: the normalizers over dask arrays equal the in-memory ones
on the same data, for chunkings down to one row (or one element) per chunk
and uneven ones; split rows raise or are rechunked on request; statistics
that span chunks are merged exactly; fastnorm.channel_moments against
float64 NumPy; and a few calls on a two-process distributed cluster."""
import importlib
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
import dask  # noqa: E402

import fastnorm as fn  # noqa: E402
import fastnorm.dask as fd  # noqa: E402
from conftest import run_python  # noqa: E402

F32, F64 = np.float32, np.float64
TOL = {np.dtype(F32): 1e-6, np.dtype(F64): 1e-12}


@pytest.fixture(autouse=True)
def threaded():
    """The threaded scheduler (the cluster tests choose their client themselves)."""
    with dask.config.set(scheduler="threads"):
        yield


def check(actual, expected, what="result"):
    """max|actual - expected| <= tol * max(1, max|expected|), in expected's dtype's tolerance."""
    if isinstance(actual, da.Array):
        actual = actual.compute()
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    if expected.size == 0:
        return
    e64 = expected.astype(F64)
    scale = max(1.0, float(np.max(np.abs(e64))))
    err = float(np.max(np.abs(actual.astype(F64) - e64)))
    bound = TOL[np.dtype(expected.dtype)] * scale
    assert err <= bound, f"{what}: max abs error {err:.3e} > {bound:.3e}"


def data(shape, dtype, seed=0, loc=0.0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


# --------------------------------------------------------------------------
# The optional dependency
# --------------------------------------------------------------------------

def test_fastnorm_imports_without_dask():
    proc = run_python("import sys\nsys.modules['dask'] = None\nimport fastnorm\n"
                      "assert 'dask' not in dir(fastnorm)\nprint(fastnorm.channel_moments)")
    assert proc.returncode == 0, proc.stderr


def test_import_without_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "dask", None)  # "import dask" now fails
    monkeypatch.delitem(sys.modules, "fastnorm.dask")
    with pytest.raises(ImportError, match=r"fastnorm-cpu\[dask\]"):
        importlib.import_module("fastnorm.dask")


# --------------------------------------------------------------------------
# Row normalizers
# --------------------------------------------------------------------------

ROW_SHAPE = (11, 3, 8)
ROW_CHUNKS = {
    "one": (11, 3, 8),
    "rows": (1, 1, 8),         # one row per chunk
    "uneven": ((4, 6, 1), (2, 1), 8),
}


def _row_case(kind, dtype, chunks):
    x = data(ROW_SHAPE, dtype, seed=1, loc=3.0)
    r = data(ROW_SHAPE, dtype, seed=2)
    dy = data(ROW_SHAPE, dtype, seed=3)
    ds = data(ROW_SHAPE, dtype, seed=4)
    w = data(8, dtype, seed=5, loc=1.0)
    b = data(8, dtype, seed=6)
    X, R, DY, DS = (da.from_array(a, chunks=chunks) for a in (x, r, dy, ds))
    if kind == "layer_norm":
        got = fd.layer_norm(X, w, b, return_stats=True)
        ref = fn.layer_norm(x, w, b, return_stats=True)
        gb = fd.layer_norm_backward(DY, X, got[1], got[2], w)
        rb = fn.layer_norm_backward(dy, x, ref[1], ref[2], w)
    elif kind == "rms_norm":
        got = fd.rms_norm(X, w, return_stats=True)
        ref = fn.rms_norm(x, w, return_stats=True)
        gb = fd.rms_norm_backward(DY, X, got[1], w)
        rb = fn.rms_norm_backward(dy, x, ref[1], w)
    elif kind == "add_layer_norm":
        got = fd.add_layer_norm(X, R, w, b, residual_bias=b, return_stats=True)
        ref = fn.add_layer_norm(x, r, w, b, residual_bias=b, return_stats=True)
        gb = fd.add_layer_norm_backward(DY, got[1], got[2], got[3], w, ds=DS)
        rb = fn.add_layer_norm_backward(dy, ref[1], ref[2], ref[3], w, ds=ds)
    else:
        got = fd.add_rms_norm(X, R, w, residual_bias=b, return_stats=True)
        ref = fn.add_rms_norm(x, r, w, residual_bias=b, return_stats=True)
        gb = fd.add_rms_norm_backward(DY, got[1], got[2], w, ds=DS)
        rb = fn.add_rms_norm_backward(dy, ref[1], ref[2], w, ds=ds)
    return got, ref, gb, rb


@pytest.mark.parametrize("chunks", list(ROW_CHUNKS))
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("kind", ["layer_norm", "rms_norm", "add_layer_norm", "add_rms_norm"])
def test_row_norms_match_in_memory(kind, dtype, chunks):
    got, ref, gb, rb = _row_case(kind, dtype, ROW_CHUNKS[chunks])
    assert len(got) == len(ref) and len(gb) == len(rb)
    assert all(isinstance(g, da.Array) for g in (*got, *gb))
    for i, (g, r) in enumerate(zip(dask.compute(*got), ref)):
        check(g, r, f"{kind} output {i}")
    for i, (g, r) in enumerate(zip(dask.compute(*gb), rb)):
        check(g, r, f"{kind} backward output {i}")


@pytest.mark.parametrize("axis", [1, (1, 2), -2])
def test_layer_norm_other_axes(axis):
    x = data((6, 5, 4), F64, seed=7)
    dy = data((6, 5, 4), F64, seed=8)
    axes = (axis,) if isinstance(axis, int) else axis
    chunks = tuple(-1 if (i in axes or i - 3 in axes) else 1 for i in range(3))
    X, DY = da.from_array(x, chunks=chunks), da.from_array(dy, chunks=chunks)
    y, m, r = fd.layer_norm(X, axis=axis, return_stats=True)
    y0, m0, r0 = fn.layer_norm(x, axis=axis, return_stats=True)
    check(y, y0)
    check(m, m0)
    grads = fd.layer_norm_backward(DY, X, m, r, axis=axis)
    for g, g0 in zip(grads, fn.layer_norm_backward(dy, x, m0, r0, axis=axis)):
        check(g, g0)


def test_split_rows_raise_or_rechunk():
    x = data((10, 12), F64, seed=9)
    X = da.from_array(x, chunks=(3, 5))  # every row split over three chunks
    with pytest.raises(ValueError, match=r"normalized axis 1.*rechunk"):
        fd.layer_norm(X)
    with pytest.raises(ValueError, match="rechunk"):
        fd.rms_norm_backward(X, X, np.ones(10), rechunk=False)
    y, m, r = fd.layer_norm(X, rechunk=True, return_stats=True)
    assert y.chunks[1] == (12,)
    y0, m0, r0 = fn.layer_norm(x, return_stats=True)
    check(y, y0)
    grads = fd.layer_norm_backward(X, X, m, r, rechunk=True)
    for g, g0 in zip(grads, fn.layer_norm_backward(x, x, m0, r0)):
        check(g, g0)


def test_numpy_input_is_wrapped_with_whole_rows():
    x = data((300, 40), F32, seed=15)
    y = fd.rms_norm(x)
    assert isinstance(y, da.Array) and y.chunks[1] == (40,)
    check(y, fn.rms_norm(x))
    with pytest.raises(TypeError, match="rechunk"):
        fd.rms_norm(x, rechunk="yes")


def _masked(a, mask, chunks):
    """a[mask] as dask makes it: rows selected by a boolean dask array, chunk
    sizes along axis 0 unknown (NaN)."""
    return da.from_array(a, chunks=chunks)[da.from_array(mask, chunks=chunks[0])]


def test_row_norms_with_unknown_chunk_sizes():
    x = da.ones((12, 6), chunks=(4, 6))
    y = fd.layer_norm(x[x[:, 0] > 0])
    assert np.isnan(y.shape[0])
    check(y, np.zeros((12, 6)))
    a, dya = data((30, 8), F64, seed=40, loc=2.0), data((30, 8), F64, seed=41)
    mask = a[:, 0] > 2.0
    X, DY = _masked(a, mask, (7, 8)), _masked(dya, mask, (7, 8))
    x, dy, w = a[mask], dya[mask], data(8, F64, seed=42)
    got = fd.layer_norm(X, w, w, return_stats=True)
    for g, e in zip(got, fn.layer_norm(x, w, w, return_stats=True)):
        check(g, e)
    grads = fd.layer_norm_backward(DY, X, got[1], got[2], w)
    for g, e in zip(grads, fn.layer_norm_backward(dy, x, *fn.layer_norm(x, w, w,
                                                  return_stats=True)[1:], w)):
        check(g, e)
    got = fd.add_rms_norm(X, DY, w, return_stats=True)
    for g, e in zip(got, fn.add_rms_norm(x, dy, w, return_stats=True)):
        check(g, e)
    grads = fd.add_rms_norm_backward(DY, got[1], got[2], w, ds=DY)
    _, s0, r0 = fn.add_rms_norm(x, dy, w, return_stats=True)
    for g, e in zip(grads, fn.add_rms_norm_backward(dy, s0, r0, w, ds=dy)):
        check(g, e)
    # a split row is merged on request; the unknown axis keeps its chunks
    y = fd.rms_norm(_masked(a, mask, (7, 3)), rechunk=True)
    assert y.chunks[1] == (8,) and len(y.chunks[0]) == 5
    check(y, fn.rms_norm(x))


def test_row_norms_need_the_normalized_axes_known():
    a = data((12, 6), F32, seed=43)
    X = _masked(a, a[:, 0] > 0, (4, 6))
    for call in (lambda: fd.layer_norm(X, axis=0), lambda: fd.rms_norm(X.T, rechunk=True),
                 lambda: fd.layer_norm(X, axis=(0, 1)),
                 lambda: fd.layer_norm_backward(X, X, X[:, 0], X[:, 0], axis=0)):
        with pytest.raises(ValueError, match=r"x has unknown chunk sizes along axis \d, a "
                                             r"normalized axis; call x.compute_chunk_sizes\(\)"):
            call()
    with pytest.raises(ValueError, match=r"residual must have the shape of x \(nan, 6\), got "
                                         r"\(12, 6\) \(x has unknown chunk sizes: call "
                                         r"x.compute_chunk_sizes\(\) first\)"):
        fd.add_layer_norm(X, da.from_array(a, chunks=(4, 6)))


def _layer_norm_grads(seed):
    x = data((64, 8), F32, seed=seed, loc=5.0)
    dy = data((64, 8), F32, seed=seed + 1)
    X, DY = da.from_array(x, chunks=(3, 8)), da.from_array(dy, chunks=(3, 8))
    _, m, r = fd.layer_norm(X, return_stats=True)
    return fd.layer_norm_backward(DY, X, m, r, np.ones(8, F32), split_every=3)[1:]


def test_parameter_gradients_are_the_same_bits_for_the_same_chunking():
    # the tasks finish in a different order on two threads than on one: the
    # tree, not the order, fixes the sums
    grads = _layer_norm_grads(10)
    first = dask.compute(*grads, scheduler="synchronous")
    again = dask.compute(*grads, scheduler="threads", num_workers=2)
    for a, b in zip(first, again):
        assert a.tobytes() == b.tobytes()


def test_row_bad_arguments_raise_before_any_graph():
    X = da.zeros((4, 6), chunks=(2, 6))
    with pytest.raises(ValueError, match="weight"):
        fd.layer_norm(X, np.ones(5))
    with pytest.raises(TypeError, match="x"):
        fd.layer_norm(da.zeros((4, 6), dtype=np.int32))
    with pytest.raises(TypeError, match="x"):
        fd.layer_norm([[1.0, 2.0]])
    with pytest.raises(ValueError, match="residual"):
        fd.add_rms_norm(X, da.zeros((4, 5)))
    with pytest.raises(ValueError, match="rstd"):
        fd.rms_norm_backward(X, X, np.ones(3))
    with pytest.raises(ValueError, match="num_threads"):
        fd.rms_norm(X, num_threads=0)


# --------------------------------------------------------------------------
# channel_moments
# --------------------------------------------------------------------------

def _np_moments(x, k):
    x64 = x.astype(F64)
    others = tuple(i for i in range(x.ndim) if i != k)
    mean = x64.mean(axis=others)
    m2 = ((x64 - np.expand_dims(mean, others)) ** 2).sum(axis=others)
    return np.full(x.shape[k], x.size / x.shape[k]), mean, m2


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("axis", [1, -1])
def test_channel_moments_against_numpy_with_a_large_offset(dtype, axis):
    x = data((9, 4, 6, 5), dtype, seed=12, loc=1e6)
    k = axis % x.ndim
    count, mean, m2 = fn.channel_moments(x, axis=axis)
    c0, mean0, m20 = _np_moments(x, k)
    assert count.dtype == mean.dtype == m2.dtype == F64
    np.testing.assert_array_equal(count, c0)
    np.testing.assert_allclose(mean, mean0, rtol=1e-15, atol=0)
    # M2 of unit-variance data next to a mean of 1e6: centered, nothing is lost
    np.testing.assert_allclose(m2, m20, rtol=1e-9)
    np.testing.assert_allclose(m2 / count, x.astype(F64).var(axis=tuple(
        i for i in range(4) if i != k)), rtol=1e-9)


def test_channel_moments_merge_like_a_streaming_scaler():
    x = data((50, 3), F64, seed=13, loc=1e6)
    n, mean, m2 = fn.channel_moments(x[:17], axis=1)
    nb, meanb, m2b = fn.channel_moments(x[17:], axis=1)
    d = meanb - mean
    tot = n + nb
    merged_mean = mean + d * nb / tot
    merged_m2 = m2 + m2b + d * d * n * nb / tot
    _, mean0, m20 = _np_moments(x, 1)
    np.testing.assert_allclose(merged_mean, mean0, rtol=1e-15)
    np.testing.assert_allclose(merged_m2, m20, rtol=1e-9)


def test_channel_moments_arguments():
    x = data((4, 3), F64)
    with pytest.raises(TypeError, match="x"):
        fn.channel_moments(np.ones((4, 3), np.int64))
    with pytest.raises(TypeError, match="axis"):
        fn.channel_moments(x, axis="1")
    with pytest.raises(TypeError, match="axis"):
        fn.channel_moments(x, axis=1.0)
    with pytest.raises(ValueError, match="axis"):
        fn.channel_moments(x, axis=2)
    with pytest.raises(ValueError, match="x"):
        fn.channel_moments(np.float64(1.0))
    count, mean, m2 = fn.channel_moments(np.empty((0, 3)))
    assert np.all(count == 0) and np.all(np.isnan(mean)) and np.all(m2 == 0)


@pytest.mark.parametrize("chunks", [(9, 4, 6, 5), (1, 1, 1, 1), ((2, 7), (1, 3), (5, 1), 5)])
def test_dask_channel_moments_any_chunking(chunks):
    x = data((9, 4, 6, 5), F64, seed=14, loc=1e6)
    got = dask.compute(*fd.channel_moments(da.from_array(x, chunks=chunks), axis=1))
    c0, mean0, m20 = _np_moments(x, 1)
    np.testing.assert_array_equal(got[0], c0)
    np.testing.assert_allclose(got[1], mean0, rtol=1e-15)
    np.testing.assert_allclose(got[2], m20, rtol=1e-9)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_dask_channel_moments_of_one_chunk_are_the_in_memory_bits(axis):
    x = data((5, 4, 3), F32, seed=15, loc=3.0)
    got = dask.compute(*fd.channel_moments(da.from_array(x, chunks=-1), axis=axis))
    for g, e in zip(got, fn.channel_moments(x, axis=axis)):
        assert g.tobytes() == e.tobytes()


@pytest.mark.parametrize("axis, error", [("1", TypeError), (1.0, TypeError), (3, ValueError)])
def test_dask_channel_moments_arguments_are_the_in_memory_ones(axis, error):
    x = data((4, 3, 2), F64)
    with pytest.raises(error) as mem:
        fn.channel_moments(x, axis=axis)
    with pytest.raises(error) as lazy:
        fd.channel_moments(da.from_array(x), axis=axis)
    assert str(lazy.value) == str(mem.value)


# --------------------------------------------------------------------------
# Channel normalizers
# --------------------------------------------------------------------------

CH_SHAPE = (7, 6, 5, 3)
CH_CHUNKS = {
    "one": CH_SHAPE,
    "samples": (2, 6, 5, 3),             # whole samples per chunk
    "split": ((3, 4), (2, 4), (1, 4), 3),  # samples and channels split, unevenly
    "elements": (1, 1, 1, 1),
}


def _channel_inputs(dtype, chunks):
    x = data(CH_SHAPE, dtype, seed=20, loc=100.0, scale=2.0)
    dy = data(CH_SHAPE, dtype, seed=21)
    w = data(6, dtype, seed=22, loc=1.0)
    b = data(6, dtype, seed=23)
    return x, dy, w, b, da.from_array(x, chunks=chunks), da.from_array(dy, chunks=chunks)


@pytest.mark.parametrize("chunks", list(CH_CHUNKS))
@pytest.mark.parametrize("dtype", [F32, F64])
def test_batch_norm_training_matches_in_memory(dtype, chunks):
    x, dy, w, b, X, DY = _channel_inputs(dtype, CH_CHUNKS[chunks])
    rm, rv = np.zeros(6, dtype), np.ones(6, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, m, r = fd.batch_norm(X, rm, rv, w, b, training=True, momentum=0.2, return_stats=True)
    y0, m0, r0 = fn.batch_norm(x, rm0, rv0, w, b, training=True, momentum=0.2,
                               return_stats=True)
    check(y, y0, "y")
    check(m, m0, "mean")
    check(r, r0, "rstd")
    check(rm, rm0, "running_mean")  # updated in place on return
    check(rv, rv0, "running_var")
    grads = fd.batch_norm_backward(DY, X, m, r, w, b, training=True)
    for g, g0, what in zip(grads, fn.batch_norm_backward(dy, x, m0, r0, w, b, training=True),
                           ("dx", "dweight", "dbias")):
        check(g, g0, what)


@pytest.mark.parametrize("chunks", ["one", "split"])
def test_batch_norm_eval_and_channels_last(chunks):
    x, dy, w, b, X, DY = _channel_inputs(F32, CH_CHUNKS[chunks])
    rm, rv = data(6, F32, seed=24, loc=100.0), data(6, F32, seed=25, loc=4.0)
    y, m, r = fd.batch_norm(X, rm, rv, w, b, return_stats=True)
    y0, m0, r0 = fn.batch_norm(x, rm, rv, w, b, return_stats=True)
    check(y, y0)
    for g, g0 in zip(fd.batch_norm_backward(DY, X, m, r, w, b),
                     fn.batch_norm_backward(dy, x, m0, r0, w, b)):
        check(g, g0)
    # channels last: the channel axis -1, statistics over the other three
    xl = np.moveaxis(x, 1, -1).copy()
    XL = da.from_array(xl, chunks=(2, 3, 2, 4))
    rm1, rv1 = rm.copy(), rv.copy()
    rm2, rv2 = rm.copy(), rv.copy()
    check(fd.batch_norm(XL, rm1, rv1, w, b, training=True, axis=-1),
          fn.batch_norm(xl, rm2, rv2, w, b, training=True, axis=-1))
    check(rv1, rv2)


@pytest.mark.parametrize("chunks", list(CH_CHUNKS))
@pytest.mark.parametrize("dtype", [F32, F64])
def test_group_norm_matches_in_memory(dtype, chunks):
    x, dy, w, b, X, DY = _channel_inputs(dtype, CH_CHUNKS[chunks])
    y, m, r = fd.group_norm(X, 3, w, b, return_stats=True)
    y0, m0, r0 = fn.group_norm(x, 3, w, b, return_stats=True)
    check(y, y0, "y")
    check(m, m0, "mean")
    check(r, r0, "rstd")
    for g, g0 in zip(fd.group_norm_backward(DY, X, m, r, w, b),
                     fn.group_norm_backward(dy, x, m0, r0, w, b)):
        check(g, g0)


@pytest.mark.parametrize("chunks", ["samples", "split"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_instance_norm_matches_in_memory(dtype, chunks):
    x, dy, w, b, X, DY = _channel_inputs(dtype, CH_CHUNKS[chunks])
    rm, rv = np.zeros(6, dtype), np.ones(6, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, m, r = fd.instance_norm(X, w, b, rm, rv, return_stats=True)
    y0, m0, r0 = fn.instance_norm(x, w, b, rm0, rv0, return_stats=True)
    check(y, y0)
    check(m, m0)
    check(rm, rm0)
    check(rv, rv0)
    for g, g0 in zip(fd.instance_norm_backward(DY, X, m, r, w, b),
                     fn.instance_norm_backward(dy, x, m0, r0, w, b)):
        check(g, g0)
    # eval with the running statistics
    y, m, r = fd.instance_norm(X, w, b, rm, rv, training=False, return_stats=True)
    y0, m0, r0 = fn.instance_norm(x, w, b, rm, rv, training=False, return_stats=True)
    check(y, y0)
    for g, g0 in zip(fd.instance_norm_backward(DY, X, m, r, w, b),
                     fn.instance_norm_backward(dy, x, m0, r0, w, b)):
        check(g, g0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_sixteen_bit_data(dtype):
    if dtype == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    x, dy, w, b, X, DY = _channel_inputs(F32, CH_CHUNKS["split"])
    x, dy = x.astype(dtype), dy.astype(dtype)
    X, DY = da.from_array(x, chunks=X.chunks), da.from_array(dy, chunks=X.chunks)
    rm, rv = np.zeros(6, F32), np.ones(6, F32)
    rm0, rv0 = rm.copy(), rv.copy()
    y, m, r = fd.batch_norm(X, rm, rv, w, b, training=True, return_stats=True)
    y0, m0, r0 = fn.batch_norm(x, rm0, rv0, w, b, training=True, return_stats=True)
    assert y.dtype == x.dtype and m.dtype == F32
    # 16-bit results may differ by one rounding of the output (relative 2^-8)
    np.testing.assert_allclose(y.compute().astype(F64), y0.astype(F64), rtol=0,
                               atol=2.0 ** -7 * np.abs(y0.astype(F64)).max())
    check(rv, rv0)
    dx, dw, db = fd.batch_norm_backward(DY, X, m, r, w, b, training=True)
    dx0, dw0, db0 = fn.batch_norm_backward(dy, x, m0, r0, w, b, training=True)
    np.testing.assert_allclose(dx.compute().astype(F64), dx0.astype(F64), rtol=0,
                               atol=2.0 ** -7 * np.abs(dx0.astype(F64)).max())
    check(dw, dw0)
    check(db, db0)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_channel_norms_with_an_unknown_batch_size(dtype):
    # whole samples per chunk, the number of samples in each unknown
    a, dya = data((20, 6, 5, 3), dtype, seed=44, loc=3.0), data((20, 6, 5, 3), dtype, seed=45)
    mask = a[:, 0, 0, 0] > 2.5
    X, DY = _masked(a, mask, (6, 6, 5, 3)), _masked(dya, mask, (6, 6, 5, 3))
    x, dy = a[mask], dya[mask]
    w, b = data(6, dtype, seed=46, loc=1.0), data(6, dtype, seed=47)
    for g, e in zip(dask.compute(*fd.channel_moments(X)), fn.channel_moments(x)):
        np.testing.assert_allclose(g, e, rtol=1e-12 if dtype == F64 else 1e-6)
    for training in (True, False):
        rm, rv = np.zeros(6, dtype), np.ones(6, dtype)
        rm0, rv0 = rm.copy(), rv.copy()
        y, m, r = fd.batch_norm(X, rm, rv, w, b, training=training, return_stats=True)
        y0, m0, r0 = fn.batch_norm(x, rm0, rv0, w, b, training=training, return_stats=True)
        for g, e in ((y, y0), (m, m0), (r, r0), (rm, rm0), (rv, rv0)):
            check(g, e)
        grads = fd.batch_norm_backward(DY, X, m, r, w, b, training=training)
        for g, e in zip(grads, fn.batch_norm_backward(dy, x, m0, r0, w, b, training=training)):
            check(g, e)
    for kind, args in (("group_norm", (3, w, b)), ("instance_norm", (w, b))):
        y, m, r = getattr(fd, kind)(X, *args, return_stats=True)
        y0, m0, r0 = getattr(fn, kind)(x, *args, return_stats=True)
        for g, e in ((y, y0), (m, m0), (r, r0)):
            check(g, e)
        grads = getattr(fd, kind + "_backward")(DY, X, m, r, w, b)
        for g, e in zip(grads, getattr(fn, kind + "_backward")(dy, x, m0, r0, w, b)):
            check(g, e)


def test_channel_norms_that_need_the_sizes_say_so():
    a = data((20, 6, 5, 3), F32, seed=48, loc=3.0)
    mask = a[:, 0, 0, 0] > 2.5
    split = _masked(a, mask, (6, 3, 5, 3))  # samples split: per-sample statistics over chunks
    unknown = r"x has unknown chunk sizes along axis 0, .*; call x.compute_chunk_sizes\(\) first"
    rm, rv = np.zeros(6, F32), np.ones(6, F32)
    with pytest.raises(ValueError, match=unknown):
        fd.group_norm(split, 3)
    with pytest.raises(ValueError, match=unknown):
        fd.instance_norm(split)
    m = np.zeros((int(mask.sum()), 3), F32)
    with pytest.raises(ValueError, match=r"mean must have shape .*x has unknown chunk sizes"):
        fd.group_norm_backward(split, split, m, m)
    whole = _masked(a, mask, (6, 6, 5, 3))
    with pytest.raises(ValueError, match=unknown):
        fd.instance_norm(whole, running_mean=rm, running_var=rv, training=True)
    # a channel axis of unknown size
    channels = da.from_array(a, chunks=(6, 3, 5, 3))[:, da.from_array(a[0, :, 0, 0] > 3)]
    with pytest.raises(ValueError, match=r"unknown chunk sizes along axis 1, the channel axis"):
        fd.batch_norm(channels, None, None, training=True)
    # known only once computed: one value per channel
    one = _masked(a[:, :, :1, :1], a[:, 0, 0, 0] == a[0, 0, 0, 0], (6, 6, 1, 1))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        fd.batch_norm(one, rm, rv, training=True)
    assert np.all(rm == 0) and np.all(rv == 1)


def test_channel_bad_arguments_leave_running_statistics_alone():
    X = da.from_array(data(CH_SHAPE, F32), chunks=(2, 3, 5, 3))
    rm, rv = np.zeros(6, F32), np.ones(6, F32)
    with pytest.raises(ValueError, match="weight"):
        fd.batch_norm(X, rm, rv, np.ones(5, F32), training=True)
    with pytest.raises(ValueError, match="momentum"):
        fd.batch_norm(X, rm, rv, training=True, momentum=2.0)
    with pytest.raises(TypeError, match="running_mean"):
        fd.batch_norm(X, rm.astype(np.float16), rv, training=True)
    with pytest.raises(ValueError, match="num_groups"):
        fd.group_norm(X, 4)
    with pytest.raises(ValueError, match="axis"):
        fd.batch_norm(X, rm, rv, training=True, axis=0)
    assert np.all(rm == 0) and np.all(rv == 1)
    with pytest.raises(ValueError, match="more than 1"):
        fd.batch_norm(da.zeros((1, 6), dtype=F32, chunks=1), rm, rv, training=True)


@pytest.mark.parametrize("chunks", ["samples", "split"])
def test_group_backward_names_the_statistic_of_the_wrong_shape(chunks):
    x, dy, w, b, X, DY = _channel_inputs(F64, CH_CHUNKS[chunks])
    _, m, r = fn.group_norm(x, 2, w, b, return_stats=True)
    with pytest.raises(ValueError, match=r"rstd must have shape .*\(7, 2\), got shape \(7, 3\)"):
        fd.group_norm_backward(DY, X, m, np.ones((7, 3)), w, b)
    with pytest.raises(ValueError, match=r"rstd must have shape .*got shape \(2,\)"):
        fd.group_norm_backward(DY, X, m, r[0], w, b)
    with pytest.raises(ValueError, match=r"mean must have shape .*got shape \(6, 2\)"):
        fd.group_norm_backward(DY, X, m[:6], r, w, b)
    with pytest.raises(TypeError, match="rstd is required"):
        fd.group_norm_backward(DY, X, m, None, w, b)
    _, m, r = fn.instance_norm(x, w, b, return_stats=True)
    with pytest.raises(ValueError, match=r"rstd must have shape \(N, C\) = \(7, 6\), got shape "
                                         r"\(7, 5\)"):
        fd.instance_norm_backward(DY, X, m, da.from_array(r[:, :5]), w, b)
    with pytest.raises(ValueError, match=r"mean must have shape .*got shape \(7, 5\)"):
        fd.instance_norm_backward(DY, X, m[:, :5], r, w, b)


def test_threads_per_task_do_not_change_results():
    # blocks of 256 KiB: fastnorm runs a call on less than 128 KiB on one thread
    shape, chunks = (4, 8, 64, 64), (2, 4, 64, 64)
    x = data(shape, F64, seed=24, loc=3.0)
    dy = data(shape, F64, seed=25)
    w, b = data(8, F64, seed=26), data(8, F64, seed=27)
    X, DY = da.from_array(x, chunks=chunks), da.from_array(dy, chunks=chunks)
    assert X.blocks[0, 0].nbytes >= 2 * 128 * 1024
    results = []
    for nt in (1, 2):
        y, m, r = fd.group_norm(X, 4, w, b, return_stats=True, num_threads=nt)
        grads = fd.group_norm_backward(DY, X, m, r, w, b, num_threads=nt)
        rows = fd.layer_norm(X.rechunk((2, 4, 64, -1)), axis=(2, 3), num_threads=nt)
        results.append(dask.compute(y, *grads, rows))
    for a, c in zip(*results):
        assert a.tobytes() == c.tobytes()


# --------------------------------------------------------------------------
# A distributed cluster of two worker processes
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


def test_cluster_layer_norm_forward_and_backward(client):
    x = data((40, 16), F32, seed=30, loc=2.0)
    dy = data((40, 16), F32, seed=31)
    w = data(16, F32, seed=32)
    X, DY = da.from_array(x, chunks=((7, 13, 20), 16)), da.from_array(dy, chunks=(9, 16))
    y, m, r = fd.layer_norm(X, w, w, return_stats=True)
    grads = fd.layer_norm_backward(DY, X, m, r, w)
    got = client.compute([y, *grads], sync=True)
    y0, m0, r0 = fn.layer_norm(x, w, w, return_stats=True)
    for g, g0 in zip(got, (y0, *fn.layer_norm_backward(dy, x, m0, r0, w))):
        check(g, g0)


def test_cluster_parameter_gradients_are_the_same_bits_as_in_process(client):
    grads = _layer_norm_grads(33)
    local = dask.compute(*grads, scheduler="synchronous")
    for a, b in zip(local, client.compute(list(grads), sync=True)):
        assert a.tobytes() == b.tobytes()


def test_cluster_batch_norm_training(client):
    x, dy, w, b, X, DY = _channel_inputs(F64, CH_CHUNKS["split"])
    rm, rv = np.zeros(6), np.ones(6)
    rm0, rv0 = rm.copy(), rv.copy()
    y, m, r = fd.batch_norm(X, rm, rv, w, b, training=True, return_stats=True)
    y0, m0, r0 = fn.batch_norm(x, rm0, rv0, w, b, training=True, return_stats=True)
    check(client.compute(y, sync=True), y0)
    check(rv, rv0)
    grads = client.compute(list(fd.batch_norm_backward(DY, X, m, r, w, b, training=True)),
                           sync=True)
    for g, g0 in zip(grads, fn.batch_norm_backward(dy, x, m0, r0, w, b, training=True)):
        check(g, g0)


# --------------------------------------------------------------------------
# The example
# --------------------------------------------------------------------------

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "dask_out_of_core.py"


def test_out_of_core_example_runs(capsys):
    spec = importlib.util.spec_from_file_location("dask_out_of_core_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for norm in ("layer", "batch"):
        result = module.main(["--gib", "0.002", "--features", "64", "--norm", norm,
                              "--quiet"])
        assert result["max_abs_err"] < 1e-5
    assert "GB/s" in capsys.readouterr().out


def test_group_backward_names_mean_for_a_group_count_that_does_not_divide_c():
    x = da.ones((2, 5, 3), chunks=(1, 5, 3))
    with pytest.raises(ValueError, match="mean"):
        fd.group_norm_backward(x, x, np.zeros((2, 2)), np.ones((2, 2)))
