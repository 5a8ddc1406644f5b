"""The channel normalizers over dask arrays: statistics merged from partial
moments, then every block normalized with them."""
import dask
import dask.array as da
import numpy as np

from .. import _core, _family
from .._family import _param_dtype
from ._args import (
    _data, _known, _leaf, _probe, _probe_shape, _threads, _token, _tuple_blocks, _vec,
)
from ._moments import _merge_moments, _moments


def _per_channel(a, chunks):
    """A float64 vector per channel (or (N, C) per sample and channel) as a
    dask array chunked along x's channel (and batch) chunks."""
    return da.from_array(np.ascontiguousarray(a, np.float64), chunks=chunks)


def _affine_params(weight, bias, C, p):
    """weight and bias (either may be None) as the kernels take them, for data
    like the probe p: C-contiguous vectors of its computing dtype."""
    w = None if weight is None else _family._param_arg(weight, C, p, "weight")
    b = None if bias is None else _family._param_arg(bias, C, p, "bias")
    return w, b


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
    w, b = _affine_params(weight, bias, C, p)
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
    w, b = _affine_params(weight, bias, C, p)
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
    w, b = _affine_params(weight, bias, C, p)
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
