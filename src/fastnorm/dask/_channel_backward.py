"""The backwards of the channel normalizers over dask arrays: per-channel sums
merged over the chunks, then dx block by block."""
import dask
import dask.array as da
import numpy as np

from .. import _core, _family
from .._family import _grad_as_param, _param_dtype
from ._args import (
    _F64, _array, _hint, _known, _leaf, _like, _probe, _probe_shape, _rechunk_to, _same_shape,
    _token, _tuple_blocks, _vec,
)
from ._channels import _channel_setup, _per_channel, _samples_whole
from ._moments import _sums


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
