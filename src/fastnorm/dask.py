"""fastnorm over dask arrays: normalization of arrays larger than memory.

Every function takes dask arrays (NumPy arrays are wrapped) and returns dask
arrays; each block goes through fastnorm's kernels. Results equal those of
the in-memory functions on the same data, whatever the chunking.

Row normalizers (layer_norm, rms_norm, add_layer_norm, add_rms_norm) need
every row whole in one chunk: chunks that split a normalized axis raise a
ValueError naming the chunking and the fix, unless ``rechunk=True`` asks for
the normalized axes to be merged into one chunk each (the other axes then
take dask's "auto" chunk size). A rechunk across the normalized axes moves
every element between tasks, which can cost more than the normalization
itself, so it is done only when asked (as dask's own ``apply_gufunc`` asks
for ``allow_rechunk``). The parameter gradients of the backward functions
are summed over the blocks in float64 by dask's tree reduction: the same
chunking gives the same bits.

Channel normalizers (batch_norm in training, group_norm and instance_norm
when a sample is split over chunks) take per-block partial statistics
(count, mean, centered sum of squares, by fastnorm's channel kernels), merge
them in float64 with Chan's parallel formula in a dask tree reduction, then
normalize each block with the merged statistics. The statistics are computed
when the function is called (``dask.compute``, one pass over x): running
statistics are then updated in place on return, as fastnorm.batch_norm does,
and the result's graph reads x once more and holds no block waiting for the
reduction (a lazy graph would keep every block of x in memory between the
two passes). The backward of these takes its two per-channel sums (of dy and
of dy * xhat) the same way, then computes dx block by block.

Arrays whose chunk sizes are unknown (NaN, as boolean indexing makes them)
work wherever only the known axes matter: row normalizers with known
normalized axes, channel_moments, batch_norm and its backward, group_norm and
instance_norm over whole samples. Elsewhere a ValueError asks for
``x.compute_chunk_sizes()``.

Each block runs ``num_threads`` fastnorm threads, 1 by default: dask's
workers provide the parallelism, and more threads per task would compete
with them for the cores.
"""

try:
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastnorm.dask needs dask: pip install 'fastnorm-cpu[dask]' (dask[array]; "
        "distributed for clusters)"
    ) from e

import numpy as np

from . import _core, _family
from ._family import _grad_as_param, _param_dtype

__all__ = [
    "layer_norm",
    "layer_norm_backward",
    "rms_norm",
    "rms_norm_backward",
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_backward",
    "channel_moments",
    "batch_norm",
    "batch_norm_backward",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
]

_F64 = np.dtype(np.float64)


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------

def _array(a, name):
    """a as a dask array: NumPy arrays are wrapped in chunks of dask's
    default size, except that an array of fewer than two axes is one chunk."""
    if isinstance(a, da.Array):
        return a
    if a is None or not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be a dask or NumPy array, got {type(a).__name__}")
    return da.from_array(a, chunks=-1 if np.ndim(a) < 2 else "auto")


def _data(a, name, whole=None):
    """A data array (float16, float32, float64 or bfloat16) as a dask array;
    a NumPy one is wrapped with the axes of `whole` (an axis argument) in one
    chunk each."""
    if whole is not None and not isinstance(a, da.Array) and hasattr(a, "ndim"):
        try:
            axes = _row_axes(whole, a.ndim)
        except (TypeError, ValueError):
            axes = ()
        a = da.from_array(a, chunks={i: (-1 if i in axes else "auto") for i in range(a.ndim)})
    a = _array(a, name)
    dt = a.dtype
    if not ((dt.kind == "f" and dt.itemsize in (2, 4, 8)) or dt.name == "bfloat16"):
        raise TypeError(f"{name} must have a float16, float32, float64 or bfloat16 dtype, "
                        f"got {dt}")
    return a


def _threads(num_threads):
    """A per-task thread count, checked here rather than inside the tasks."""
    _core._threads_arg(num_threads)
    return num_threads


def _probe_shape(shape, keep):
    """x's shape with the axes in keep whole and every other at most 2 long
    (2 where its size is unknown): a small array that meets the same
    argument checks as x. The axes in keep must have known sizes."""
    return tuple(n if i in keep else (2 if _unknown(n) else min(n, 2))
                 for i, n in enumerate(shape))


def _unknown(n):
    """Whether a size (or a chunk's size) is dask's unknown one, NaN."""
    return n != n


def _known(x, axes, what, name="x"):
    """A ValueError naming the fix unless x's axes in `axes` have known sizes
    (an array made by boolean indexing, for one, does not know its chunks)."""
    for a in axes:
        if _unknown(x.shape[a]):
            raise ValueError(f"{name} has unknown chunk sizes along axis {a}, {what}; "
                             f"call {name}.compute_chunk_sizes() first")


def _hint(shape, xname="x"):
    """The end of a shape error: how to learn x's unknown sizes, if any."""
    if any(_unknown(n) for n in shape):
        return (f" ({xname} has unknown chunk sizes: call {xname}.compute_chunk_sizes() "
                f"first)")
    return ""


def _rechunk_to(a, chunks, name, xname="x"):
    """a chunked as chunks (x's, on the same axes): as it is when it already
    is (an unknown chunk size matching an unknown one), else rechunked, which
    needs the sizes of both known."""
    if all(_same_shape(p, q) for p, q in zip(a.chunks, chunks)):
        return a
    if any(_unknown(c) for cs in (*a.chunks, *chunks) for c in cs):
        raise ValueError(
            f"{name} is chunked {a.chunks}, not as {xname} {chunks}, and chunks of unknown "
            f"size cannot be rechunked; call {xname}.compute_chunk_sizes() and "
            f"{name}.compute_chunk_sizes() first")
    return a.rechunk(chunks)


def _probe(dtype, shape):
    a = np.zeros(shape, np.float64)
    a.reshape(-1)[::2] = 1.0  # not constant: a spread in every row of two or more
    return a.astype(dtype)


def _flat_keys(a):
    return list(dask.core.flatten(a.__dask_keys__()))


def _vec(a, dtype=np.float64):
    """a flattened, C-contiguous and aligned in dtype (blocks that travelled
    between processes may arrive unaligned)."""
    if a is None:
        return None
    return np.require(np.asarray(a, dtype).reshape(-1), dtype, ("C_CONTIGUOUS", "ALIGNED"))


def _pick(t, i):
    return t[i]


def _pick_part(t, i, shape):
    """Item i of a block's result, in float64, shaped as one block of a partial array."""
    return np.asarray(t[i], np.float64).reshape(shape)


def _leaf(tmp, i, keep, chunks, dtype, part_shape=None):
    """Item i of each block of tmp (a dask array whose blocks are tuples) as a
    dask array over tmp's axes in keep (the others have one chunk each); with
    part_shape, each item is reshaped to it in float64 (a partial sum)."""
    name = f"{tmp.name}-{i}"
    dsk = {}
    for key in _flat_keys(tmp):
        new = (name,) + tuple(key[1 + a] for a in keep)
        if part_shape is None:
            dsk[new] = (_pick, key, i)
        else:
            dsk[new] = (_pick_part, key, i, part_shape)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[tmp])
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(chunks), dtype))


def _tuple_blocks(func, x, args, name, **kwargs):
    """func over x's blocks and the aligned blocks of args ((array, index)
    pairs, with x's axes numbered 0..ndim-1); returns a dask array whose
    blocks are func's tuples."""
    ind = tuple(range(x.ndim))
    flat = [x, ind]
    for a, ai in args:
        flat += [a, ai]
    return da.blockwise(func, ind, *flat, name=name, dtype=x.dtype,
                        meta=np.empty((0,) * x.ndim, x.dtype), concatenate=True, **kwargs)


def _token(*parts):
    return dask.base.tokenize(*parts)


def _same_shape(a, b):
    """Whether two shapes (or chunks of one axis) are equal, an unknown (NaN)
    size matching an unknown one."""
    return len(a) == len(b) and all(
        p == q or (p != p and q != q) for p, q in zip(a, b))


# --------------------------------------------------------------------------
# Row normalizers
# --------------------------------------------------------------------------

def _row_axes(axis, ndim):
    return tuple(_core._axes_arg(axis, ndim))


def _whole_rows(x, axes, rechunk, name="x"):
    """x with every normalized axis in one chunk: as it is, rechunked when
    rechunk is true, or a ValueError naming the chunking and the fix."""
    if not isinstance(rechunk, (bool, np.bool_)):
        raise TypeError(f"rechunk must be a bool, got {type(rechunk).__name__}")
    split = [a for a in axes if len(x.chunks[a]) > 1]
    if not split:
        return x
    if not rechunk:
        spec = ", ".join(f"{a}: -1" for a in axes)
        raise ValueError(
            f"{name} is split along the normalized axis {split[0]} into chunks "
            f"{x.chunks[split[0]]}; each row must lie whole in one chunk. Rechunk first, "
            f"{name}.rechunk({{{spec}}}), or pass rechunk=True"
        )
    if any(_unknown(n) for n in x.shape):  # the unknown axes kept as they are
        return x.rechunk({a: -1 for a in axes})
    return x.rechunk({a: (-1 if a in axes else "auto") for a in range(x.ndim)})


def _like(a, x, name, xname="x"):
    """An array of x's shape and dtype (residual, dy, ds), chunked as x."""
    a = _data(a, name)
    if not _same_shape(a.shape, x.shape):
        raise ValueError(f"{name} must have the shape of {xname} {x.shape}, got {a.shape}"
                         + _hint(x.shape, xname))
    if a.dtype != x.dtype:
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname}, got {a.dtype}")
    return _rechunk_to(a, x.chunks, name, xname)


def _ln_block(xb, *extra, kind, weight, bias, residual_bias, axis, eps, nt):
    if kind == "layer_norm":
        return _core.layer_norm(xb, weight, bias, axis=axis, eps=eps, return_stats=True,
                                num_threads=nt)
    if kind == "rms_norm":
        return _core.rms_norm(xb, weight, axis=axis, eps=eps, return_stats=True, num_threads=nt)
    if kind == "add_layer_norm":
        return _core.add_layer_norm(xb, extra[0], weight, bias, residual_bias=residual_bias,
                                    axis=axis, eps=eps, return_stats=True, num_threads=nt)
    return _core.add_rms_norm(xb, extra[0], weight, residual_bias=residual_bias, axis=axis,
                              eps=eps, return_stats=True, num_threads=nt)


def _row_forward(kind, x, residual, weight, bias, residual_bias, axis, eps, return_stats,
                 rechunk, num_threads):
    x = _data(x, "x", whole=axis)
    if x.ndim < 1:
        raise ValueError("x must have at least one axis")
    axes = _row_axes(axis, x.ndim)
    _known(x, axes, "a normalized axis")
    nt = _threads(num_threads)
    fused = kind.startswith("add_")
    if fused:
        residual = _data(residual, "residual")
        if not _same_shape(residual.shape, x.shape):
            raise ValueError(f"residual must have the shape of x {x.shape}, got {residual.shape}"
                             + _hint(x.shape))
    # the arguments checked by the in-memory function on a small array of x's
    # kind: the errors, and the results' dtypes, are the in-memory call's
    p = _probe(x.dtype, _probe_shape(x.shape, axes))
    kw = dict(kind=kind, weight=weight, bias=bias, residual_bias=residual_bias, axis=axes,
              eps=eps, nt=1)
    extra = (_probe(residual.dtype, p.shape),) if fused else ()
    with np.errstate(all="ignore"):
        res = _ln_block(p, *extra, **kw)
    # the parameters as the kernels take them, sent once with the graph
    calc = _param_dtype(np.empty(0, x.dtype))
    for key, v in (("weight", weight), ("bias", bias), ("residual_bias", residual_bias)):
        if v is not None:
            kw[key] = np.ascontiguousarray(np.asarray(v), calc)
    kw["nt"] = nt
    x = _whole_rows(x, axes, rechunk)
    extra = (_like(residual, x, "residual"),) if fused else ()
    tmp = _tuple_blocks(_ln_block, x, [(a, tuple(range(x.ndim))) for a in extra],
                        f"fastnorm-{kind}-" + _token(x, *extra, kw), **kw)
    rows = tuple(i for i in range(x.ndim) if i not in axes)
    row_chunks = tuple(x.chunks[i] for i in rows)
    n_full = 2 if fused else 1
    outs = [_leaf(tmp, i, tuple(range(x.ndim)), x.chunks, res[i].dtype) for i in range(n_full)]
    if not return_stats:
        return outs[0] if n_full == 1 else tuple(outs)
    stats = [_leaf(tmp, i, rows, row_chunks, res[i].dtype) for i in range(n_full, len(res))]
    return (*outs, *stats)


def layer_norm(x, weight=None, bias=None, *, axis=-1, eps=1e-5, return_stats=False,
               rechunk=False, num_threads=1):
    """fastnorm.layer_norm over a dask array, block by block.

    The normalized axes (``axis``, an int or a tuple) must each lie in one
    chunk; otherwise a ValueError, or with ``rechunk=True`` x is rechunked
    (those axes whole, the others "auto"). weight and bias are NumPy arrays
    of the normalized axes' shape, sent once with the graph. Returns y, or
    (y, mean, rstd) with return_stats, all dask arrays. ``num_threads``:
    fastnorm threads per task (default 1)."""
    return _row_forward("layer_norm", x, None, weight, bias, None, axis, eps, return_stats,
                        rechunk, num_threads)


def rms_norm(x, weight=None, *, axis=-1, eps=None, return_stats=False, rechunk=False,
             num_threads=1):
    """fastnorm.rms_norm over a dask array; see :func:`layer_norm`. Returns y,
    or (y, rstd)."""
    return _row_forward("rms_norm", x, None, weight, None, None, axis, eps, return_stats,
                        rechunk, num_threads)


def add_layer_norm(x, residual, weight=None, bias=None, *, residual_bias=None, axis=-1,
                   eps=1e-5, return_stats=False, rechunk=False, num_threads=1):
    """fastnorm.add_layer_norm over dask arrays: (y, s), or (y, s, mean, rstd).
    residual is rechunked as x; see :func:`layer_norm`."""
    return _row_forward("add_layer_norm", x, residual, weight, bias, residual_bias, axis, eps,
                        return_stats, rechunk, num_threads)


def add_rms_norm(x, residual, weight=None, *, residual_bias=None, axis=-1, eps=None,
                 return_stats=False, rechunk=False, num_threads=1):
    """fastnorm.add_rms_norm over dask arrays: (y, s), or (y, s, rstd)."""
    return _row_forward("add_rms_norm", x, residual, weight, None, residual_bias, axis, eps,
                        return_stats, rechunk, num_threads)


def _lnb_block(dyb, xb, *rest, kind, weight, axis, nt, has_ds):
    if kind in ("layer_norm", "add_layer_norm"):
        mean, rstd, rest = rest[0], rest[1], rest[2:]
    else:
        mean, rstd, rest = None, rest[0], rest[1:]
    ds = rest[0] if has_ds else None
    if kind == "layer_norm":
        return _core.layer_norm_backward(dyb, xb, mean, rstd, weight, axis=axis,
                                         num_threads=nt)
    if kind == "rms_norm":
        return _core.rms_norm_backward(dyb, xb, rstd, weight, axis=axis, num_threads=nt)
    if kind == "add_layer_norm":
        return _core.add_layer_norm_backward(dyb, xb, mean, rstd, weight, ds=ds, axis=axis,
                                             num_threads=nt)
    return _core.add_rms_norm_backward(dyb, xb, rstd, weight, ds=ds, axis=axis, num_threads=nt)


def _row_backward(kind, dy, x, mean, rstd, weight, ds, axis, rechunk, num_threads,
                  split_every, xname="x"):
    x = _data(x, xname, whole=axis)
    if x.ndim < 1:
        raise ValueError(f"{xname} must have at least one axis")
    axes = _row_axes(axis, x.ndim)
    _known(x, axes, "a normalized axis", xname)
    nt = _threads(num_threads)
    centered = kind in ("layer_norm", "add_layer_norm")
    dy = _data(dy, "dy")
    if not _same_shape(dy.shape, x.shape):
        raise ValueError(f"dy must have the shape of {xname} {x.shape}, got {dy.shape}"
                         + _hint(x.shape, xname))
    rows = tuple(i for i in range(x.ndim) if i not in axes)
    rshape = tuple(x.shape[i] for i in rows)
    if centered and mean is None:
        raise TypeError("mean is required (the statistics the forward returned)")
    if rstd is None:
        raise TypeError("rstd is required (the statistics the forward returned)")
    # the checks of the in-memory function, on a small array of x's kind
    pshape = _probe_shape(x.shape, axes)
    p = _probe(x.dtype, pshape)
    prow = tuple(pshape[i] for i in rows)
    st = []
    for nm, a in (("mean", mean), ("rstd", rstd)) if centered else (("rstd", rstd),):
        a = _array(a, nm)
        if not _same_shape(a.shape, rshape):
            raise ValueError(f"{nm} must have shape {rshape} ({xname}'s without the normalized "
                             f"axes), got {a.shape}" + _hint(rshape, xname))
        st.append(a)
    kw = dict(kind=kind, weight=weight, axis=axes, nt=1, has_ds=ds is not None)
    pst = [np.ones(prow, a.dtype) for a in st]
    pds = (_probe(x.dtype, pshape),) if ds is not None else ()
    if ds is not None:
        ds = _data(ds, "ds")
        if not _same_shape(ds.shape, x.shape):
            raise ValueError(f"ds must have the shape of {xname} {x.shape}, got {ds.shape}"
                             + _hint(x.shape, xname))
    with np.errstate(all="ignore"):
        res = _lnb_block(_probe(dy.dtype, pshape), p, *pst, *pds, **kw)
    if weight is not None:
        kw["weight"] = np.ascontiguousarray(np.asarray(weight))
    kw["nt"] = nt
    x = _whole_rows(x, axes, rechunk, xname)
    dy = _like(dy, x, "dy", xname)
    row_chunks = tuple(x.chunks[i] for i in rows)
    st = [_rechunk_to(a, row_chunks, nm, xname) for a, nm in zip(st, ("mean", "rstd")[-len(st):])]
    args = [(x, tuple(range(x.ndim)))] + [(a, rows) for a in st]
    if ds is not None:
        args.append((_like(ds, x, "ds", xname), tuple(range(x.ndim))))
    tmp = _tuple_blocks(_lnb_block, dy, args, f"fastnorm-{kind}-backward-" +
                        _token(dy, x, *st, ds, kw), **kw)
    dx = _leaf(tmp, 0, tuple(range(x.ndim)), x.chunks, res[0].dtype)
    # parameter gradients: a float64 partial per block, summed by a fixed tree
    pchunks = tuple((x.shape[i],) if i in axes else (1,) * len(x.chunks[i])
                    for i in range(x.ndim))
    part_shape = tuple(x.shape[i] if i in axes else 1 for i in range(x.ndim))
    grads = []
    for i in range(1, len(res)):
        if res[i] is None:
            grads.append(None)
            continue
        part = _leaf(tmp, i, tuple(range(x.ndim)), pchunks, _F64, part_shape)
        total = da.sum(part, axis=rows, split_every=split_every, dtype=np.float64)
        grads.append(total.astype(res[i].dtype))
    return (dx, *grads)


def layer_norm_backward(dy, x, mean, rstd, weight=None, *, axis=-1, rechunk=False,
                        num_threads=1, split_every=None):
    """fastnorm.layer_norm_backward over dask arrays: (dx, dweight, dbias).

    dx is computed block by block; dweight and dbias are summed over the
    blocks in float64 by a tree reduction (``split_every`` as in dask's
    reductions) and rounded once to their dtype."""
    return _row_backward("layer_norm", dy, x, mean, rstd, weight, None, axis, rechunk,
                         num_threads, split_every)


def rms_norm_backward(dy, x, rstd, weight=None, *, axis=-1, rechunk=False, num_threads=1,
                      split_every=None):
    """fastnorm.rms_norm_backward over dask arrays: (dx, dweight)."""
    return _row_backward("rms_norm", dy, x, None, rstd, weight, None, axis, rechunk,
                         num_threads, split_every)


def add_layer_norm_backward(dy, s, mean, rstd, weight=None, *, ds=None, axis=-1,
                            rechunk=False, num_threads=1, split_every=None):
    """fastnorm.add_layer_norm_backward over dask arrays:
    (dsum, dweight, dbias, dresidual_bias)."""
    return _row_backward("add_layer_norm", dy, s, mean, rstd, weight, ds, axis, rechunk,
                         num_threads, split_every, xname="s")


def add_rms_norm_backward(dy, s, rstd, weight=None, *, ds=None, axis=-1, rechunk=False,
                          num_threads=1, split_every=None):
    """fastnorm.add_rms_norm_backward over dask arrays: (dsum, dweight, dresidual_bias)."""
    return _row_backward("add_rms_norm", dy, s, None, rstd, weight, ds, axis, rechunk,
                         num_threads, split_every, xname="s")


# --------------------------------------------------------------------------
# Partial statistics over chunks
# --------------------------------------------------------------------------

def _merge_moments(p, axis, keepdims=True):
    """Chan's parallel formula over the given axes of p, whose axis 0 holds
    (count, mean, M2): the moments of the union of the parts, in float64.
    The mean is the count-weighted mean corrected once about itself, so that
    a large common offset does not cost accuracy."""
    if p.ndim == 0 or p.shape[0] != 3:  # dask's probe with an empty array
        return p
    ax = tuple(a - 1 for a in axis)
    n, m, M2 = (np.asarray(p[i], np.float64) for i in range(3))
    has = n > 0
    mz = np.where(has, m, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        N = n.sum(axis=ax, keepdims=True)
        mean = (n * mz).sum(axis=ax, keepdims=True) / N
        mean = mean + (n * np.where(has, mz - mean, 0.0)).sum(axis=ax, keepdims=True) / N
        d = np.where(has, mz - mean, 0.0)
        m2 = np.where(has, M2, 0.0).sum(axis=ax, keepdims=True) + (n * d * d).sum(
            axis=ax, keepdims=True)
    mean = np.where(N > 0, mean, np.nan)
    out = np.stack([N, mean, m2])
    if not keepdims:
        out = out.reshape((3,) + tuple(s for i, s in enumerate(N.shape) if i not in ax))
    return out


def _identity(a, axis=None, keepdims=True, **kwargs):
    return a


def _moments_block(xb, *, k, per_sample, nt):
    """(count, mean, M2) per channel (and per sample when per_sample) of one
    block, shaped (3, ...) with x's axes: 1 for every reduced axis."""
    B = _family._ChannelBlock(xb, k, per_sample)
    return _stack_part(_family._block_moments(B, nt), B, per_sample)


def _stack_part(vectors, B, per_sample):
    """Per-(sample,) channel vectors of block B stacked into one block of a
    partial array: shape (len(vectors), ...) with x's axes, 1 for every
    reduced one."""
    shape = [1] * len(B.shape)
    shape[B.k] = B.C
    if per_sample:
        shape[0] = B.S
    return np.stack(vectors).reshape([len(vectors)] + shape)


def _reduced_axes(ndim, k, per_sample):
    return tuple(i for i in range(ndim) if i != k and not (per_sample and i == 0))


def _moments(x, k, per_sample, nt, split_every):
    """The merged (count, mean, M2) of x per channel (shape (3, C)) or per
    (sample, channel) (shape (3, N, C)), a lazy dask array."""
    red = _reduced_axes(x.ndim, k, per_sample)
    ind = tuple(range(x.ndim))
    part = da.blockwise(_moments_block, (-1,) + ind, x, ind, new_axes={-1: 3},
                        adjust_chunks={i: (lambda c: 1) for i in red}, dtype=_F64,
                        meta=np.empty((0,) * (x.ndim + 1), _F64), k=k, per_sample=per_sample,
                        nt=nt)
    return da.reduction(part, _identity, _merge_moments, combine=_merge_moments,
                        axis=tuple(i + 1 for i in red), keepdims=False, dtype=_F64,
                        split_every=split_every, concatenate=True,
                        meta=np.empty((0,) * (x.ndim + 1 - len(red)), _F64))


def channel_moments(x, axis=1, *, num_threads=1, split_every=None):
    """fastnorm.channel_moments over a dask array, however it is chunked:
    (count, mean, M2) per channel, float64 dask arrays of shape (C,).

    Each block's moments come from fastnorm's channel kernels; they are
    merged in float64 by Chan's parallel formula in a dask tree reduction
    (``split_every`` as in dask's reductions), the same tree for the same
    chunking."""
    x = _data(x, "x")
    k = _family._moments_axis(axis, x.shape)
    nt = _threads(num_threads)
    m = _moments(x, k, False, nt, split_every)
    return m[0], m[1], m[2]


def _sums_block(dyb, xb, mu, *, k, per_sample, nt):
    """Per channel (and sample) of one block: sum(dy), sum(dy * (x - mu)),
    sum(x - mu), about the given mean mu, and the count of values, shaped as
    in _moments_block."""
    B = _family._ChannelBlock(xb, k, per_sample)
    dy = _family._c_contiguous(dyb)
    SC = B.S * B.C
    mu = _vec(mu)
    if not per_sample:
        mu = np.broadcast_to(mu, (B.S, B.C)).reshape(-1).copy()
    s_dy = np.zeros(SC)
    s_dyx = np.zeros(SC)
    s_x = np.zeros(SC)
    n = B.R * B.L
    if n > 0 and SC > 0:
        _core._channel_sums_kernel(dy, B.x, *B.dims, mu, s_dy, s_dyx, nt)
        # the rounding of a stored mean: sum(x - mu) from the block's own mean
        s_x = n * (_family._block_moments(B, nt)[1] - mu)
    return _stack_part([s_dy, s_dyx, s_x, np.full(SC, float(n))], B, per_sample)


def _sums(dy, x, mu, k, per_sample, nt, split_every):
    """sum(dy), sum(dy * (x - mu)), sum(x - mu) and the count of values per
    channel (or per (sample, channel)), summed over the blocks by a tree:
    shape (4, C) or (4, N, C)."""
    red = _reduced_axes(x.ndim, k, per_sample)
    ind = tuple(range(x.ndim))
    mu_ind = (0, k) if per_sample else (k,)
    part = da.blockwise(_sums_block, (-1,) + ind, dy, ind, x, ind, mu, mu_ind,
                        new_axes={-1: 4}, adjust_chunks={i: (lambda c: 1) for i in red},
                        dtype=_F64, meta=np.empty((0,) * (x.ndim + 1), _F64), k=k,
                        per_sample=per_sample, nt=nt)
    return da.sum(part, axis=tuple(i + 1 for i in red), split_every=split_every, dtype=_F64)


# --------------------------------------------------------------------------
# Channel normalizers
# --------------------------------------------------------------------------

def _per_channel(a, chunks):
    """A float64 vector per channel (or (N, C) per sample and channel) as a
    dask array chunked along x's channel (and batch) chunks."""
    return da.from_array(np.ascontiguousarray(a, np.float64), chunks=chunks)


def _normalize_block(xb, mean, rstd, *params, k, per_sample, has_w, has_b, nt):
    B = _family._ChannelBlock(xb, k, per_sample)
    w = _vec(params[0], params[0].dtype) if has_w else None
    b = _vec(params[-1], params[-1].dtype) if has_b else None
    mean, rstd = _vec(mean), _vec(rstd)
    y = np.empty(xb.shape, xb.dtype)
    if xb.size:
        _core._channel_normalize_kernel(B.x, y, *B.dims, mean, rstd, w, b, False, nt)
    return y


def _normalize(x, k, per_sample, mean, rstd, w, b, nt):
    """y = (x - mean) * rstd * w + b block by block; mean and rstd float64
    NumPy arrays of shape (C,) or (N, C)."""
    ind = tuple(range(x.ndim))
    sind = (0, k) if per_sample else (k,)
    schunks = (x.chunks[0], x.chunks[k]) if per_sample else (x.chunks[k],)
    args = [x, ind, _per_channel(mean, schunks), sind, _per_channel(rstd, schunks), sind]
    for p in (w, b):
        if p is not None:
            args += [da.from_array(p, chunks=(x.chunks[k],)), (k,)]
    return da.blockwise(_normalize_block, ind, *args, dtype=x.dtype,
                        meta=np.empty((0,) * x.ndim, x.dtype), k=k, per_sample=per_sample,
                        has_w=w is not None, has_b=b is not None, nt=nt)


def _channel_setup(x, axis, num_threads):
    x = _data(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _family._channel_axis(axis, x.shape)
    _known(x, (k,), "the channel axis")
    nt = _threads(num_threads)
    return x, k, nt


def _stats_out(a, dt, chunks):
    return da.from_array(np.asarray(a).astype(dt), chunks=chunks)


def _group_stats(x, k, G, nt, split_every, eps):
    """Per (sample, group) mean and variance (float64 (N, G)) of x, over
    chunks: the per-(sample, channel) moments merged over the blocks, then
    over each group's channels."""
    N, C = x.shape[0], x.shape[k]
    (m,) = dask.compute(_moments(x, k, True, nt, split_every))
    cpg = C // G
    g = _merge_moments(m.reshape(3, N, G, cpg), axis=(3,), keepdims=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        var = g[2] / g[0]
    return g[0], g[1], var


def _samples_whole(x, k):
    """Whether each block holds whole samples (only the batch axis is split)."""
    return all(len(c) == 1 for c in x.chunks[1:])


def _group_fast_block(xb, *params, G, k, eps, has_w, has_b, nt):
    w = params[0] if has_w else None
    b = params[-1] if has_b else None
    return _family.group_norm(xb, G, w, b, eps=eps, axis=k, return_stats=True,
                              num_threads=nt)


def group_norm(x, num_groups, weight=None, bias=None, *, eps=1e-5, axis=1,
               return_stats=False, num_threads=1, split_every=None):
    """fastnorm.group_norm over a dask array, however it is chunked.

    Where each chunk holds whole samples (only the batch axis split), each
    block is normalized on its own, lazily. Where a sample is split, the
    per-(sample, channel) moments are merged over the chunks (computed now,
    one pass over x) and each block is normalized with the merged statistics.
    Returns y, or (y, mean, rstd) of shape (N, num_groups)."""
    x, k, nt = _channel_setup(x, axis, num_threads)
    C = x.shape[k]
    p = _probe(x.dtype, _probe_shape(x.shape, (k,)))
    with np.errstate(all="ignore"):
        _family.group_norm(p, num_groups, weight, bias, eps=eps, axis=k, num_threads=1)
    G = int(num_groups)
    calc = _param_dtype(p)
    w = None if weight is None else _family._param_arg(weight, C, p, "weight")
    b = None if bias is None else _family._param_arg(bias, C, p, "bias")
    return _groups_forward(x, k, G, w, b, eps, return_stats, nt, split_every, calc)


def _groups_forward(x, k, G, w, b, eps, return_stats, nt, split_every, calc):
    C = x.shape[k]
    if _samples_whole(x, k):
        args = [(da.from_array(p), (k,)) for p in (w, b) if p is not None]
        tmp = _tuple_blocks(_group_fast_block, x, args, "fastnorm-group_norm-" +
                            _token(x, w, b, G, k, eps), G=G, k=k, eps=eps,
                            has_w=w is not None, has_b=b is not None, nt=nt)
        y = _leaf(tmp, 0, tuple(range(x.ndim)), x.chunks, x.dtype)
        if not return_stats:
            return y
        sch = (x.chunks[0], (G,))
        return (y, _leaf(tmp, 1, (0, k), sch, calc), _leaf(tmp, 2, (0, k), sch, calc))
    _known(x, range(x.ndim), "needed where a sample is split over chunks")
    e = _core._eps_arg(eps)
    _, mean, var = _group_stats(x, k, G, nt, split_every, e)
    rstd = 1.0 / np.sqrt(var + e)
    cpg = C // G
    y = _normalize(x, k, True, np.repeat(mean, cpg, axis=1), np.repeat(rstd, cpg, axis=1),
                   w, b, nt)
    if not return_stats:
        return y
    sch = (x.chunks[0], (G,))
    return y, _stats_out(mean, calc, sch), _stats_out(rstd, calc, sch)


def _check_running(running_mean, running_var, C, p):
    rm = _family._running_stat_arg(running_mean, C, p, "running_mean")
    rv = _family._running_stat_arg(running_var, C, p, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together")
    return rm, rv


def batch_norm(x, running_mean, running_var, weight=None, bias=None, *, training=False,
               momentum=0.1, eps=1e-5, axis=1, return_stats=False, num_threads=1,
               split_every=None):
    """fastnorm.batch_norm over a dask array, however it is chunked.

    training=True: per-channel statistics over the batch and every other
    axis, merged over the chunks (computed now, one pass over x); the running
    statistics, when given, are updated in place before this returns, with
    fastnorm.batch_norm's convention (momentum the weight of the new value,
    the variance stored unbiased). training=False: each block normalized with
    the running statistics. Returns y, or (y, mean, rstd) per channel."""
    x, k, nt = _channel_setup(x, axis, num_threads)
    C = x.shape[k]
    p = _probe(x.dtype, _probe_shape(x.shape, (k,)))
    rm, rv = _check_running(running_mean, running_var, C, p)
    with np.errstate(all="ignore"):  # the checks, on copies of the running statistics
        _family.batch_norm(p, None if rm is None else rm.copy(),
                           None if rv is None else rv.copy(), weight, bias, training=training,
                           momentum=momentum, eps=eps, axis=k, num_threads=1)
    calc = _param_dtype(p)
    w = None if weight is None else _family._param_arg(weight, C, p, "weight")
    b = None if bias is None else _family._param_arg(bias, C, p, "bias")
    e = _core._eps_arg(eps)
    m = _family._momentum_number(momentum)
    if not training:
        mean64, rstd64 = _core._frozen_stats(rm, rv, e)
        y = _normalize(x, k, False, mean64, rstd64, w, b, nt)
        if not return_stats:
            return y
        return (y, _stats_out(rm, calc, (x.chunks[k],)),
                _stats_out(rstd64, calc, (x.chunks[k],)))
    if x.size == 0:
        y = da.empty(x.shape, dtype=x.dtype, chunks=x.chunks)
        nan = np.full(C, np.nan, calc)
        return (y, da.from_array(nan), da.from_array(nan.copy())) if return_stats else y
    (mom,) = dask.compute(_moments(x, k, False, nt, split_every))
    count, mean, m2 = mom
    M = int(count[0]) if C else 0  # values per channel, known now where x's sizes were not
    if M == 1:
        raise ValueError(
            f"x must have more than 1 value per channel when training, got shape {x.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        var = m2 / count
    rstd = 1.0 / np.sqrt(var + e)
    y = _normalize(x, k, False, mean, rstd, w, b, nt)
    if rm is not None and M > 0:
        # as fastnorm.batch_norm: from the statistics in the computing dtype
        _family._update_running(rm, rv, mean.astype(calc), var.astype(calc), M, m)
    if not return_stats:
        return y
    ch = (x.chunks[k],)
    return y, _stats_out(mean, calc, ch), _stats_out(rstd, calc, ch)


def instance_norm(x, weight=None, bias=None, running_mean=None, running_var=None, *,
                  training=True, momentum=0.1, eps=1e-5, axis=1, return_stats=False,
                  num_threads=1, split_every=None):
    """fastnorm.instance_norm over a dask array, however it is chunked: the
    per-(sample, channel) statistics merged over the chunks where a sample is
    split (see :func:`group_norm`); running statistics, when given and
    training, updated in place before this returns. Returns y, or (y, mean,
    rstd): (N, C) instance statistics, or (C,) running ones."""
    x, k, nt = _channel_setup(x, axis, num_threads)
    C = x.shape[k]
    if training or running_mean is None:  # fastnorm.instance_norm checks the spatial size
        _known(x, range(1, x.ndim), "needed to normalize with the instance statistics")
    p = _probe(x.dtype, _probe_shape(x.shape, (k,)))
    rm, rv = _check_running(running_mean, running_var, C, p)
    with np.errstate(all="ignore"):
        _family.instance_norm(p, weight, bias, None if rm is None else rm.copy(),
                              None if rv is None else rv.copy(), training=training,
                              momentum=momentum, eps=eps, axis=k, num_threads=1)
    calc = _param_dtype(p)
    w = None if weight is None else _family._param_arg(weight, C, p, "weight")
    b = None if bias is None else _family._param_arg(bias, C, p, "bias")
    e = _core._eps_arg(eps)
    m = _family._momentum_number(momentum)
    if not training and rm is not None:
        mean64, rstd64 = _core._frozen_stats(rm, rv, e)
        y = _normalize(x, k, False, mean64, rstd64, w, b, nt)
        if not return_stats:
            return y
        return (y, _stats_out(rm, calc, (x.chunks[k],)),
                _stats_out(rstd64, calc, (x.chunks[k],)))
    update = training and rm is not None and not x.size == 0  # NaN: unknown sizes
    if not update:
        return _groups_forward(x, k, C, w, b, e, return_stats, nt, split_every, calc)
    _known(x, range(x.ndim), "needed to update the running statistics")
    L = x.size // (x.shape[0] * C)
    _, mean, var = _group_stats(x, k, C, nt, split_every, e)
    rstd = 1.0 / np.sqrt(var + e)
    y = _normalize(x, k, True, mean, rstd, w, b, nt)
    _family._update_running(rm, rv, mean.astype(calc).astype(np.float64).mean(axis=0),
                            var.astype(calc).astype(np.float64).mean(axis=0), L, m)
    if not return_stats:
        return y
    sch = (x.chunks[0], x.chunks[k])
    return y, _stats_out(mean, calc, sch), _stats_out(rstd, calc, sch)


# --------------------------------------------------------------------------
# Channel backward
# --------------------------------------------------------------------------

def _affine_block(dyb, xb, mu, r, a, bb, kk, *, k, per_sample, nt):
    B = _family._ChannelBlock(xb, k, per_sample)
    dy = _family._c_contiguous(dyb)
    dx = np.empty(xb.shape, xb.dtype)
    if xb.size:
        vec = [_vec(v) for v in (mu, r, a, bb, kk)]
        _core._channel_affine_backward_kernel(dy, B.x, dx, *B.dims, *vec, False, nt)
    return dx


def _nb_backward(dy, x, k, G, mean, rstd, w, per_sample, nt, split_every):
    """The NB backward per unit (a channel over the batch; or a (sample,
    group)) from the per-channel sums over the chunks: (dx, dw, db), dw and
    db float64 NumPy arrays of shape (C,)."""
    N, C = x.shape[0], x.shape[k]
    cpg = C // G
    mean = np.asarray(mean, np.float64)
    rstd = np.asarray(rstd, np.float64)
    if per_sample:
        _known(x, range(x.ndim), "needed for the gradient where a sample is split over chunks")
        mu = np.repeat(mean.reshape(N, G), cpg, axis=1)
        r = np.repeat(rstd.reshape(N, G), cpg, axis=1)
        schunks = (x.chunks[0], x.chunks[k])
        M = x.size / (N * G) if N * G else 0.0
    else:
        mu, r = mean.reshape(1, C), rstd.reshape(1, C)
        schunks = (x.chunks[k],)
    mu_arr = _per_channel(mu if per_sample else mu[0], schunks)
    (s,) = dask.compute(_sums(dy, x, mu_arr, k, per_sample, nt, split_every))
    s = s.reshape(4, -1, C)  # (4, S, C): S = N per sample, else 1
    if not per_sample:  # the count per channel, known now where x's sizes were not
        M = s[3, 0, 0] if C else 0.0
    wv = np.ones(C) if w is None else np.asarray(w, np.float64)
    e0, e1, e2 = s[0], r * s[1], r * s[2]  # sum dy, sum dy * xh, sum xh
    Su = e0.shape[0]
    sg = (wv * e0).reshape(Su, G, cpg).sum(axis=2)
    sgx = (wv * e1).reshape(Su, G, cpg).sum(axis=2)
    sd = e2.reshape(Su, G, cpg).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        cc = sd / M
        mg = sg / M
        mgx = sgx / M - cc * mg
    ccc = np.repeat(cc, cpg, axis=1)
    dw = (e1 - ccc * e0).sum(axis=0)
    db = e0.sum(axis=0)
    a = r * wv
    bcoef = -r * np.repeat(mgx, cpg, axis=1)
    kk = r * np.repeat(mgx * cc - mg, cpg, axis=1)
    if not per_sample:
        mu, r, a, bcoef, kk = (v[0] for v in (mu, r, a, bcoef, kk))
    ind = tuple(range(x.ndim))
    sind = (0, k) if per_sample else (k,)
    args = [dy, ind, x, ind]
    for v in (mu, r, a, bcoef, kk):
        args += [_per_channel(v, schunks), sind]
    dx = da.blockwise(_affine_block, ind, *args, dtype=x.dtype,
                      meta=np.empty((0,) * x.ndim, x.dtype), k=k, per_sample=per_sample, nt=nt)
    return dx, dw, db


def _frozen_block(dyb, xb, mu, a, *, k, nt):
    """dx = a * dy, with the gradient sums about mu in the same pass."""
    B = _family._ChannelBlock(xb, k, False)
    dy = _family._c_contiguous(dyb)
    dx = np.empty(xb.shape, xb.dtype)
    s_dy = np.zeros(B.C)
    s_dyx = np.zeros(B.C)
    if xb.size:
        _core._channel_sums_scale_kernel(dy, B.x, *B.dims, _vec(mu), s_dy, s_dyx, dx, _vec(a),
                                         nt)
    return dx, s_dy, s_dyx


def _frozen_backward(dy, x, k, mean, rstd, w, nt, split_every):
    """Backward with running statistics: dx = dy * w * rstd; dw = rstd *
    sum(dy * (x - mean)), db = sum(dy), summed by a tree over the blocks."""
    mean = np.asarray(mean, np.float64)
    rstd = np.asarray(rstd, np.float64)
    a = rstd * (1.0 if w is None else np.asarray(w, np.float64))
    ch = (x.chunks[k],)
    tmp = _tuple_blocks(_frozen_block, dy, [(x, tuple(range(x.ndim))),
                                            (_per_channel(mean, ch), (k,)),
                                            (_per_channel(a, ch), (k,))],
                        "fastnorm-frozen-backward-" + _token(dy, x, mean, a, k), k=k, nt=nt)
    dx = _leaf(tmp, 0, tuple(range(x.ndim)), x.chunks, x.dtype)
    pchunks = tuple(x.chunks[k] if i == k else (1,) * len(x.chunks[i]) for i in range(x.ndim))
    red = tuple(i for i in range(x.ndim) if i != k)
    sums = []
    for i in (1, 2):
        pshape = tuple(-1 if j == k else 1 for j in range(x.ndim))
        part = _leaf(tmp, i, tuple(range(x.ndim)), pchunks, _F64, pshape)
        sums.append(da.sum(part, axis=red, split_every=split_every, dtype=_F64))
    return dx, sums[1] * rstd, sums[0]


def _grads_out(dw, db, weight, bias, p, C, lazy=False):
    dwo = dbo = None
    if weight is not None:
        dt = _grad_as_param(np.zeros(0, _param_dtype(p)), weight, p).dtype
        dwo = dw.astype(dt) if lazy else da.from_array(np.asarray(dw).astype(dt))
    if bias is not None:
        dt = _grad_as_param(np.zeros(0, _param_dtype(p)), bias, p).dtype
        dbo = db.astype(dt) if lazy else da.from_array(np.asarray(db).astype(dt))
    return dwo, dbo


def _channel_backward_setup(dy, x, axis, num_threads):
    x, k, nt = _channel_setup(x, axis, num_threads)
    return _like(dy, x, "dy"), x, k, nt


def _small(a, name):
    """A statistic (small) as a NumPy array: dask arrays are computed."""
    if a is None:
        raise TypeError(f"{name} is required (the statistics the forward returned)")
    if isinstance(a, da.Array):
        (a,) = dask.compute(a)
    return np.asarray(a)


def batch_norm_backward(dy, x, mean, rstd, weight=None, bias=None, *, training=False, axis=1,
                        num_threads=1, split_every=None):
    """fastnorm.batch_norm_backward over dask arrays: (dx, dweight, dbias).

    training=True: the two per-channel sums (of dy and of dy * xhat) are
    taken over the chunks (computed now, one pass over dy and x), then dx is
    computed block by block. training=False: dx = dy * weight * rstd block by
    block, dweight and dbias summed lazily by a tree."""
    dy, x, k, nt = _channel_backward_setup(dy, x, axis, num_threads)
    C = x.shape[k]
    mean, rstd = _small(mean, "mean"), _small(rstd, "rstd")
    p = _probe(x.dtype, _probe_shape(x.shape, (k,)))
    with np.errstate(all="ignore"):
        _family.batch_norm_backward(_probe(x.dtype, p.shape), p, mean, rstd, weight, bias,
                                    training=training, axis=k, num_threads=1)
    w = None if weight is None else _family._param_arg(weight, C, p, "weight")
    if not training:
        dx, dw, db = _frozen_backward(dy, x, k, mean, rstd, w, nt, split_every)
        return (dx, *_grads_out(dw, db, weight, bias, p, C, lazy=True))
    dx, dw, db = _nb_backward(dy, x, k, C, mean, rstd, w, False, nt, split_every)
    return (dx, *_grads_out(dw, db, weight, bias, p, C))


def _group_fast_backward_block(dyb, xb, mean, rstd, *params, k, has_w, nt):
    """A block of whole samples: its own backward, and its parameter
    gradients (dweight zero without a weight) as partial sums."""
    w = params[0] if has_w else None
    one = np.ones(xb.shape[k], _param_dtype(xb))  # asks for dbias
    dx, dw, db = _family.group_norm_backward(dyb, xb, mean, rstd, w, one, axis=k,
                                             num_threads=nt)
    return dx, (dw if dw is not None else np.zeros_like(db)), db


def group_norm_backward(dy, x, mean, rstd, weight=None, bias=None, *, axis=1, num_threads=1,
                        split_every=None):
    """fastnorm.group_norm_backward over dask arrays: (dx, dweight, dbias).

    Where each chunk holds whole samples, each block's backward is its own
    and dweight and dbias are summed over the blocks by a tree (lazily).
    Where a sample is split, the per-unit sums are taken over the chunks
    (computed now) and dx is computed block by block."""
    dy, x, k, nt = _channel_backward_setup(dy, x, axis, num_threads)
    N, C = x.shape[0], x.shape[k]
    p = _probe(x.dtype, _probe_shape(x.shape, (k,)))
    ms = _stat_shape(mean, "mean")
    if len(ms) != 2 or not _same_shape(ms[:1], (N,)) or ms[1] < 1:
        raise ValueError(f"mean must have shape (N, num_groups) = ({N}, G) with G >= 1, "
                         f"got shape {ms}" + _hint((N,)))
    G = ms[1]
    if not _family._groups_fit(G, C):
        raise ValueError(f"mean must have shape (N, num_groups) with num_groups in [1, C] "
                         f"dividing C={C}, got shape {ms}")
    return _groups_backward(dy, x, k, G, mean, rstd, weight, bias, p, nt, split_every,
                            "(N, num_groups)")


def _stat_shape(a, name):
    """The shape of a statistic argument (a NumPy or dask array), or a
    TypeError naming it when it is missing."""
    if a is None:
        raise TypeError(f"{name} is required (the statistics the forward returned)")
    return tuple(a.shape) if hasattr(a, "shape") else np.shape(a)


def _check_stats(mean, rstd, shape, what):
    """A ValueError naming mean or rstd when either does not have this shape."""
    for name, a in (("mean", mean), ("rstd", rstd)):
        got = _stat_shape(a, name)
        if not _same_shape(got, shape):
            raise ValueError(f"{name} must have shape {what} = {shape}, got shape {got}"
                             + _hint(shape))


def _groups_backward(dy, x, k, G, mean, rstd, weight, bias, p, nt, split_every, what):
    N, C = x.shape[0], x.shape[k]
    _check_stats(mean, rstd, (N, G), what)
    pm = np.ones((p.shape[0], G), _param_dtype(p))
    with np.errstate(all="ignore"):
        _family.group_norm_backward(_probe(x.dtype, p.shape), p, pm, pm, weight, bias, axis=k,
                                    num_threads=1)
    w = None if weight is None else _family._param_arg(weight, C, p, "weight")
    if _samples_whole(x, k):
        mean = _array(mean, "mean")
        rstd = _array(rstd, "rstd")
        sch = (x.chunks[0], (G,))
        mean = _rechunk_to(mean, sch, "mean")
        rstd = _rechunk_to(rstd, sch, "rstd")
        # the group axis (-2) is not x's: one chunk, passed whole to every block
        args = [(x, tuple(range(x.ndim))), (mean, (0, -2)), (rstd, (0, -2))]
        if w is not None:
            args.append((da.from_array(w), (k,)))
        tmp = _tuple_blocks(_group_fast_backward_block, dy, args, "fastnorm-group-backward-" +
                            _token(dy, x, mean, rstd, w, k), k=k, has_w=w is not None, nt=nt)
        dx = _leaf(tmp, 0, tuple(range(x.ndim)), x.chunks, x.dtype)
        pchunks = tuple((C,) if i == k else (1,) * len(x.chunks[i]) for i in range(x.ndim))
        pshape = tuple(-1 if j == k else 1 for j in range(x.ndim))
        red = tuple(i for i in range(x.ndim) if i != k)
        dw, db = (da.sum(_leaf(tmp, i, tuple(range(x.ndim)), pchunks, _F64, pshape), axis=red,
                         split_every=split_every, dtype=_F64) for i in (1, 2))
        return (dx, *_grads_out(dw, db, weight, bias, p, C, lazy=True))
    mean, rstd = _small(mean, "mean"), _small(rstd, "rstd")
    dx, dw, db = _nb_backward(dy, x, k, G, mean, rstd, w, True, nt, split_every)
    return (dx, *_grads_out(dw, db, weight, bias, p, C))


def instance_norm_backward(dy, x, mean, rstd, weight=None, bias=None, *, axis=1,
                           num_threads=1, split_every=None):
    """fastnorm.instance_norm_backward over dask arrays: (dx, dweight, dbias).
    mean and rstd of shape (N, C) are instance statistics (see
    :func:`group_norm_backward`); of shape (C,), running ones (dx = dy *
    weight * rstd)."""
    dy, x, k, nt = _channel_backward_setup(dy, x, axis, num_threads)
    N, C = x.shape[0], x.shape[k]
    p = _probe(x.dtype, _probe_shape(x.shape, (k,)))
    ms = _stat_shape(mean, "mean")
    if len(ms) == 2:
        if not _same_shape(ms, (N, C)):
            raise ValueError(f"mean must have shape (N, C) = {(N, C)} (instance statistics) or "
                             f"(C,) = ({C},) (running ones), got shape {ms}" + _hint((N,)))
        return _groups_backward(dy, x, k, C, mean, rstd, weight, bias, p, nt, split_every,
                                "(N, C)")
    mean, rstd = _small(mean, "mean"), _small(rstd, "rstd")
    with np.errstate(all="ignore"):
        _family.instance_norm_backward(_probe(x.dtype, p.shape), p, mean, rstd, weight, bias,
                                       axis=k, num_threads=1)
    w = None if weight is None else _family._param_arg(weight, C, p, "weight")
    dx, dw, db = _frozen_backward(dy, x, k, mean, rstd, w, nt, split_every)
    return (dx, *_grads_out(dw, db, weight, bias, p, C, lazy=True))
