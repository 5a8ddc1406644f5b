"""Batch-layer, switchable and weight normalization, assembled from the
channel stages of fastnorm._core; group, instance and batch normalization
and channel_moments, which are single calls of fastnorm._core, are
re-exported here.

Each function checks its arguments with the checks the channel normalizers
share (nothing is written before the checks pass), views x as a C-contiguous
(S, R, C, L) block -- samples, rows, channels, contiguous elements per
channel -- and calls the C stages of fastnorm._core with the GIL released.

Running statistics are updated in place, and only after the kernels have
succeeded.
"""
from collections import namedtuple
import math

import numpy as np

from . import _core
from ._core import (  # noqa: F401  (re-exported; the checks are shared with dask and nn)
    _block_dims,
    _channel_axis,
    _finish_target,
    _grad_as_param,
    _groups_fit,
    _kernel_target,
    _like_arg,
    _moments_axis,
    _momentum_number,
    _out_check,
    _out_clear_of_running,
    _param_arg,
    _param_dtype_of as _param_dtype,
    _running_dtype_arg,
    _running_stat_arg,
    _stats_arg,
    _stats_field_arg as _stats_field,
    _stats_flag_arg as _stats_flag,
    _training_flag,
    batch_norm,
    batch_norm_backward,
    channel_moments,
    group_norm,
    group_norm_backward,
    instance_norm,
    instance_norm_backward,
    switch_norm,
    switch_norm_backward,
    weight_norm,
    weight_norm_backward,
)

__all__ = [
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "batch_norm",
    "batch_norm_backward",
    "batch_layer_norm",
    "batch_layer_norm_backward",
    "switch_norm",
    "switch_norm_backward",
    "weight_norm",
    "weight_norm_backward",
    "BatchLayerNormStats",
    "SwitchNormStats",
]


# --------------------------------------------------------------------------
# Argument checks and layout
# --------------------------------------------------------------------------

def _c_contiguous(a, dtype=None):
    """a as a C-contiguous, aligned array (of dtype), copied only when needed."""
    if type(a) is np.ndarray and (dtype is None or a.dtype == dtype):
        f = a.flags
        if f.c_contiguous and f.aligned:
            return a
    return np.require(a, dtype, ("C_CONTIGUOUS", "ALIGNED"))


class _ChannelBlock:
    """x as a C-contiguous (S, R, C, L) block around channel axis k: per
    sample (S the batch) or as one block (S = 1)."""

    __slots__ = ("x", "shape", "k", "S", "R", "C", "L", "dims")

    def __init__(self, x, k, per_sample):
        self.x = _c_contiguous(x)
        self.shape = x.shape
        self.k = k
        self.dims = _block_dims(self.x, k, per_sample)
        self.S, self.R, self.C, self.L = self.dims

    @property
    def dtype(self):
        return self.x.dtype


def _block_moments(B, nt):
    """(count, mean, M2) of block B (a _ChannelBlock) per channel, or per
    (sample, channel) for a per-sample block: float64 vectors of length S * C."""
    return _core._block_moments(B.x, *B.dims, nt)


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


_BF16_SEEN = set()  # bfloat16 dtypes met: a dtype's name is built anew on each ask


def _is_float(dt):
    if dt.kind == "f" or dt in _BF16_SEEN:
        return True
    if dt.name == "bfloat16":
        _BF16_SEEN.add(dt)
        return True
    return False


def _update_running(running_mean, running_var, mean, var, count, momentum):
    """PyTorch's convention: new = (1 - m) * old + m * batch, variance unbiased."""
    if running_mean is not None and running_var is not None:
        _core._running_update(running_mean, running_var, mean, var, count, momentum)


def _empty_result(out, x):
    return out if out is not None else np.empty(x.shape, x.dtype)


# --------------------------------------------------------------------------
# Batch Layer Normalization
# --------------------------------------------------------------------------

BatchLayerNormStats = namedtuple(
    "BatchLayerNormStats",
    ["feature_mean", "feature_rstd", "batch_mean", "batch_rstd", "batch_center",
     "frozen_mean", "frozen_var", "batch_size"],
)
BatchLayerNormStats.__doc__ = """What batch_layer_norm_backward needs from the forward.

feature_mean, feature_rstd: per position (x's shape without the last axis),
x's dtype. batch_mean, batch_rstd: the batch branch's statistics as used
(population or mini-batch), one per element of x.shape[1:], float64.
batch_center: the mini-batch mean. frozen_mean / frozen_var: whether the
batch branch used population statistics (constants for the backward).
batch_size: the B of the mixing constants."""


def _bln_constants(batch_size, B):
    if batch_size is None:
        Bc = B
        if Bc == 0:  # an empty batch: nothing is mixed
            return 0.0, 0.0
    else:
        if not _is_int(batch_size) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        Bc = int(batch_size)
    return 1.0 / Bc - 1e-4, 1.0 - 1.0 / Bc - 1e-4


def _stat_source(v, name):
    if v not in ("population", "batch"):
        raise ValueError(f"{name} must be 'population' or 'batch', got {v!r}")
    return v == "population"


def batch_layer_norm(x, weight=None, bias=None, running_mean=None, running_var=None, *,
                     training=True, batch_size=None, momentum=0.1, eps=1e-3,
                     inference_mean="population", inference_var="population", out=None,
                     return_stats=False, num_threads=None):
    """Batch Layer Normalization (docs/numerics.md §8) of channels-last x.

    ``y = weight * (a * x_f + b * x_b) / sqrt(D) + bias``: ``x_f`` normalized
    over the last axis, ``x_b`` over the batch axis 0 (one statistic per
    element of ``x.shape[1:]``), ``a = 1/B - 1e-4``, ``b = 1 - 1/B - 1e-4``
    with B the runtime batch size, or ``batch_size`` when given.

    Parameters
    ----------
    x : ndarray, shape ``(B, ..., D)``
        float32, float64, float16 or bfloat16.
    weight, bias : ndarray, shape ``(D,)``, optional
        Scale and shift.
    running_mean, running_var : ndarray of shape ``x.shape[1:]``, optional
        Population statistics of the batch branch, updated in place by
        training like batch norm's.
    training : bool, default True
        Use the mini-batch statistics and update the running ones.
    batch_size : int, optional
        A fixed B for the mixing constants.
    momentum : float, default 0.1
        Weight of the new statistics in the running-statistics update.
    eps : float, default 1e-3
        Added to the variances inside the square roots.
    inference_mean, inference_var : {'population', 'batch'}
        With ``training=False``, each chooses the running statistics or the
        current mini-batch's for the batch branch.
    out : ndarray, optional
        Receives y (x's shape and dtype); may be x.
    return_stats : bool, default False
        Also return the statistics the backward needs.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    y : ndarray
        x's shape and dtype.
    stats : BatchLayerNormStats
        Only with ``return_stats``: for :func:`batch_layer_norm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((8, 5, 16)).astype(np.float32)  # (B, T, D)
    >>> y, stats = fastnorm.batch_layer_norm(x, return_stats=True)
    >>> y.shape, stats.batch_mean.shape, stats.batch_size
    ((8, 5, 16), (5, 16), 8)
    """
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must be (B, ..., D) with at least two axes, got shape {x.shape}")
    Bn, D = x.shape[0], x.shape[-1]
    F = math.prod(x.shape[1:])
    fshape = x.shape[1:]
    training = _training_flag(training)
    a_mix, b_mix = _bln_constants(batch_size, Bn)
    w = _param_arg(weight, D, x, "weight")
    b = _param_arg(bias, D, x, "bias")
    rm = _running_shaped(running_mean, fshape, x, "running_mean")
    rv = _running_shaped(running_var, fshape, x, "running_var")
    m = _momentum_number(momentum)
    e = _core._eps_arg(eps)
    nt = _core._threads_arg(num_threads)
    # checked in training too (as the layer checks them when built), used only in eval
    pop_mean = _stat_source(inference_mean, "inference_mean")
    pop_var = _stat_source(inference_var, "inference_var")
    frozen_mean = frozen_var = False
    if not training:
        frozen_mean, frozen_var = pop_mean, pop_var
        if frozen_mean and rm is None:
            raise ValueError("inference_mean='population' needs running_mean")
        if frozen_var and rv is None:
            raise ValueError("inference_var='population' needs running_var")
    out = _out_check(out, x)
    if training:
        _out_clear_of_running(out, rm, rv)
    xc = _c_contiguous(x)
    blk = _ChannelBlock(xc.reshape(Bn, F), 1, per_sample=False)  # (1, B, F, 1)
    y = out if (out is not None and out.flags.c_contiguous and out.flags.aligned
                and not any(np.may_share_memory(out, s) for s in (xc, w, b, rm, rv)
                            if s is not None)) else np.empty(x.shape, x.dtype)
    center = np.empty(F)
    bvar = np.empty(F)
    if Bn > 0 and F > 0:
        _core._channel_moments_kernel(blk.x, *blk.dims, e, center, bvar, nt)
    else:
        center[...] = np.nan
        bvar[...] = np.nan
    mu_used = rm.reshape(-1).astype(np.float64) if frozen_mean else center
    var_used = rv.reshape(-1).astype(np.float64) if frozen_var else bvar
    rstd_b = 1.0 / np.sqrt(var_used + e)
    gd = (np.ones(D) if w is None else w.astype(np.float64)) / math.sqrt(D)
    # feature branch and bias: y = a * weight/sqrt(D) * x_f + bias
    y, fmean, frstd = _core.layer_norm(xc, (a_mix * gd).astype(_param_dtype(x)), b, axis=-1, eps=e,
                                       out=y, return_stats=True, num_threads=num_threads)
    # batch branch, added: y += b * weight/sqrt(D) * x_b
    yb = y.reshape(Bn, F)
    _core._channel_normalize_kernel(blk.x, yb, *blk.dims, mu_used, rstd_b,
                                    np.tile(b_mix * gd, F // D if D else 0).astype(_param_dtype(x)),
                                    None, True, nt)
    if training and Bn > 0:
        if rm is not None:
            rm[...] = ((1.0 - m) * rm.astype(np.float64) + m * center.reshape(fshape))
        if rv is not None and Bn > 1:
            rv[...] = ((1.0 - m) * rv.astype(np.float64)
                       + m * (bvar * (Bn / (Bn - 1.0))).reshape(fshape))
    y = _finish_target(y, out)
    if not return_stats:
        return y
    Bc = Bn if batch_size is None else int(batch_size)
    return y, BatchLayerNormStats(fmean, frstd, mu_used.reshape(fshape), rstd_b.reshape(fshape),
                                  center.reshape(fshape), frozen_mean, frozen_var, Bc)


def _running_shaped(a, shape, x, name):
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), "
                        f"got {type(a).__name__}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    _running_dtype_arg(a, x, name)
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return a


def batch_layer_norm_backward(dy, x, stats, weight=None, bias=None, *, num_threads=None):
    """Gradients of :func:`batch_layer_norm`.

    With ``g = dy * weight / sqrt(D)``, ``dx = a * NB_last(g) + b * NB_batch(g)``
    (the two NB terms of docs/numerics.md §8); a population mean or variance
    is a constant, and its branch's terms drop out accordingly.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray, shape ``(B, ..., D)``
        The forward's input.
    stats : BatchLayerNormStats
        What :func:`batch_layer_norm` returned.
    weight, bias : ndarray, shape ``(D,)``, optional
        The forward's parameters.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dweight, dbias : ndarray of shape ``(D,)``, or None
        None where the forward's weight (bias) was None.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    >>> w, b = np.ones(16, np.float32), np.zeros(16, np.float32)
    >>> y, stats = fastnorm.batch_layer_norm(x, w, b, return_stats=True)
    >>> dx, dweight, dbias = fastnorm.batch_layer_norm_backward(np.ones_like(y), x, stats, w, b)
    >>> dx.shape, dweight.shape, dbias.shape
    ((8, 16), (16,), (16,))
    """
    x = _core._data_arg(x, "x")
    if not isinstance(stats, BatchLayerNormStats):
        raise TypeError("stats must be the BatchLayerNormStats that batch_layer_norm returned")
    if x.ndim < 2:
        raise ValueError(f"x must be (B, ..., D) with at least two axes, got shape {x.shape}")
    Bn, D = x.shape[0], x.shape[-1]
    F = math.prod(x.shape[1:])
    dy = _c_contiguous(_like_arg(dy, x))
    w = _param_arg(weight, D, x, "weight")
    _param_arg(bias, D, x, "bias")
    nt = _core._threads_arg(num_threads)
    if not _is_int(stats.batch_size):
        raise TypeError(f"stats.batch_size must be an int, got {type(stats.batch_size).__name__}")
    if stats.batch_size < 0 or (stats.batch_size == 0 and Bn > 0):
        raise ValueError(f"stats.batch_size must be positive, got {stats.batch_size!r}")
    a_mix, b_mix = _bln_constants(None if stats.batch_size == Bn else stats.batch_size, Bn)
    fshape = x.shape[1:]
    fmean = _stats_field(stats, "feature_mean", x.shape[:-1], _param_dtype(x))
    frstd = _stats_field(stats, "feature_rstd", x.shape[:-1], _param_dtype(x))
    mu = _stats_field(stats, "batch_mean", fshape, np.float64).reshape(-1)
    r = _stats_field(stats, "batch_rstd", fshape, np.float64).reshape(-1)
    center = _stats_field(stats, "batch_center", fshape, np.float64).reshape(-1)
    frozen_mean = _stats_flag(stats, "frozen_mean")
    frozen_var = _stats_flag(stats, "frozen_var")
    if x.size == 0:  # as the other backward functions: empty dx, zero parameter gradients
        zero = np.zeros(D, _param_dtype(x))
        return (np.empty(x.shape, x.dtype),
                _grad_as_param(zero if weight is not None else None, weight, x),
                _grad_as_param(zero.copy() if bias is not None else None, bias, x))
    gd = (np.ones(D) if w is None else w.astype(np.float64)) / math.sqrt(D)
    xc = _c_contiguous(x)
    # feature branch: a * NB_last-axis(dy * weight / sqrt(D))
    dx, dwf, db = _core.layer_norm_backward(dy, xc, fmean, frstd,
                                            (a_mix * gd).astype(_param_dtype(x)), axis=-1,
                                            num_threads=num_threads)
    # batch branch, added into dx
    blk = _ChannelBlock(xc.reshape(Bn, F), 1, per_sample=False)
    sum_dy = np.empty(F)
    sum_dyx = np.empty(F)
    dy2 = dy.reshape(Bn, F)
    _core._channel_sums_kernel(dy2, blk.x, *blk.dims, mu, sum_dy, sum_dyx, nt)
    # per column, with g = weight / sqrt(D) and the batch branch's weight b_mix:
    #   dx += A dy + Bc r (x - center) + K,
    #   A = b_mix r g,  Bc = -(vb / n) A r sum_dyx,  K = -(mb / n) A sum_dy
    # (vb, mb: whether the variance / mean are the mini-batch's). The variance
    # term is centered on the mini-batch mean, the center of the variance, so
    # that no two terms of the size of (x - mu) r cancel when mu is the
    # population mean (docs: the gradients are formed from centered values).
    # In place: these arrays have one element per feature.
    vb = 0.0 if frozen_var else 1.0
    mb = 0.0 if frozen_mean else 1.0
    n = float(Bn)
    A = np.tile(gd, F // D if D else 0)
    A *= r
    A *= b_mix
    rsx = r * sum_dyx                 # also the batch branch's dweight terms
    Bc = A * rsx
    Bc *= -vb / n
    K = A * sum_dy
    K *= -mb / n
    _core._channel_affine_backward_kernel(dy2, blk.x, dx.reshape(Bn, F), *blk.dims, center, r,
                                          A, Bc, K, True, nt)
    dwb = rsx.reshape(-1, D).sum(axis=0)
    dweight = None
    if weight is not None:
        dweight = ((a_mix * dwf.astype(np.float64) + b_mix * dwb) / math.sqrt(D)).astype(_param_dtype(x))
    dbias = db if bias is not None else None
    return dx, _grad_as_param(dweight, weight, x), _grad_as_param(dbias, bias, x)


# --------------------------------------------------------------------------
# Switchable Normalization
# --------------------------------------------------------------------------

SwitchNormStats = namedtuple(
    "SwitchNormStats",
    ["mean", "rstd", "in_mean", "in_var", "ln_mean", "ln_var", "bn_mean", "bn_var",
     "batch_stats"],
)
SwitchNormStats.__doc__ = """What switch_norm_backward needs from the forward (float64).

mean, rstd: the mixed statistics, (N, C). in_*: (N, C); ln_*: (N,); bn_*:
(C,). batch_stats: whether the BN statistics came from the batch (training)
rather than from the running statistics."""
