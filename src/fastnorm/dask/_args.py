"""Argument checks, chunking and the graph helpers the dask normalizers share."""
import dask
import dask.array as da
from dask.highlevelgraph import HighLevelGraph
import numpy as np

from .. import _core


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


def _row_axes(axis, ndim):
    return tuple(_core._axes_arg(axis, ndim))


def _like(a, x, name, xname="x"):
    """An array of x's shape and dtype (residual, dy, ds), chunked as x."""
    a = _data(a, name)
    if not _same_shape(a.shape, x.shape):
        raise ValueError(f"{name} must have the shape of {xname} {x.shape}, got {a.shape}"
                         + _hint(x.shape, xname))
    if a.dtype != x.dtype:
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname}, got {a.dtype}")
    return _rechunk_to(a, x.chunks, name, xname)
