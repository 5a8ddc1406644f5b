"""The row normalizers over dask arrays and their backwards: every row whole
in one chunk, one task per block."""
import dask.array as da
import numpy as np

from .. import _core
from .._family import _param_dtype
from ._args import (
    _F64, _array, _data, _hint, _known, _leaf, _like, _probe, _probe_shape, _rechunk_to,
    _row_axes, _same_shape, _threads, _token, _tuple_blocks, _unknown,
)


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
