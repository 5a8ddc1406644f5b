"""Partial statistics over chunks: per-block channel moments and sums, merged
in float64 by dask tree reductions (Chan's parallel formula for the moments)."""
import dask.array as da
import numpy as np

from .. import _core, _family
from ._args import _F64, _data, _threads, _vec


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
