"""Group, instance, batch, batch-layer, switchable and weight normalization.

The functions are compiled (fastnorm._core, _channel*.pxi): each checks its
arguments once and makes one C call with the GIL released. This module
re-exports them with their statistics' named tuples, and keeps the pieces
fastnorm.dask and fastnorm.nn build on: the shared argument checks, and x
as a C-contiguous (S, R, C, L) block -- samples, rows, channels, contiguous
elements per channel.
"""
from collections import namedtuple
import numpy as np

from . import _core
from ._core import (  # noqa: F401  (re-exported; the checks are shared with dask and nn)
    _block_dims,
    _channel_axis,
    _grad_as_param,
    _groups_fit,
    _moments_axis,
    _momentum_number,
    _param_arg,
    _param_dtype_of as _param_dtype,
    _running_stat_arg,
    batch_layer_norm,
    batch_layer_norm_backward,
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


def _update_running(running_mean, running_var, mean, var, count, momentum):
    """PyTorch's convention: new = (1 - m) * old + m * batch, variance unbiased."""
    if running_mean is not None and running_var is not None:
        _core._running_update(running_mean, running_var, mean, var, count, momentum)


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
