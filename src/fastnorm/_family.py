"""Group, instance, batch, batch-layer, switchable and weight normalization.

Each function checks its arguments (nothing is written before the checks
pass), views x as a C-contiguous (S, R, C, L) block -- samples, rows,
channels, contiguous elements per channel -- and calls the C stages of
fastnorm._core with the GIL released. NCHW and channels-last data are both
used in place: only a non-contiguous x is copied.

Running statistics are updated in place, and only after the kernels have
succeeded.
"""
from collections import namedtuple
import math

import numpy as np

from . import _core

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

def _carr(a, dtype=None):
    """a as a C-contiguous, aligned array (of dtype), copied only when needed."""
    if type(a) is np.ndarray and (dtype is None or a.dtype == dtype):
        f = a.flags
        if f.c_contiguous and f.aligned:
            return a
    return np.require(a, dtype, ("C_CONTIGUOUS", "ALIGNED"))


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _channel_axis(axis, shape, name="axis"):
    """The channel axis of an x of this shape, as a non-negative int: any axis
    but the batch axis 0."""
    if not _is_int(axis):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    (k,) = _core._axes_arg(int(axis), len(shape))
    if k == 0:
        raise ValueError(
            f"{name} is the channel axis and cannot be the batch axis 0 (x has shape {shape})"
        )
    return k


class _Block:
    """x as a C-contiguous (S, R, C, L) block around channel axis k."""

    __slots__ = ("x", "shape", "k", "C", "L", "S", "R", "dims")

    def __init__(self, x, k, per_sample):
        self.x = _carr(x)
        self.shape = shape = x.shape
        self.k = k
        self.C = shape[k]
        self.L = math.prod(shape[k + 1:])
        if per_sample:
            self.S, self.R = shape[0], math.prod(shape[1:k])
        else:
            self.S, self.R = 1, math.prod(shape[:k])
        self.dims = (self.S, self.R, self.C, self.L)

    @property
    def dtype(self):
        return self.x.dtype


def _calc(x):
    """The dtype of parameters, statistics and running statistics for data x:
    x's own, float32 for 16-bit data (float16, bfloat16)."""
    return x.dtype if x.dtype.itemsize > 2 else np.dtype(np.float32)


_BF16_SEEN = set()  # bfloat16 dtypes met: a dtype's name is built anew on each ask


def _is_float(dt):
    if dt.kind == "f" or dt in _BF16_SEEN:
        return True
    if dt.name == "bfloat16":
        _BF16_SEEN.add(dt)
        return True
    return False


def _ready(a, shape, dt):
    """Whether a is already what the kernels read: an exact ndarray of this
    shape and dtype (the dtype object itself), C-contiguous and aligned."""
    if type(a) is not np.ndarray or a.dtype is not dt or a.shape != shape:
        return False
    f = a.flags
    return f.c_contiguous and f.aligned


def _param(p, C, x, name):
    """A per-channel parameter (weight, bias) as a C-contiguous array of the
    parameter dtype of x (x's, float32 for 16-bit data)."""
    if p is None:
        return None
    if _ready(p, (C,), _calc(x)):
        return p
    a = np.asarray(p)
    if not _is_float(a.dtype):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    if a.shape != (C,):
        raise ValueError(f"{name} must have shape ({C},) (one value per channel), got {a.shape}")
    return _carr(a, _calc(x))


def _out(out, x, name="out", xname="x"):
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"{name} must have the shape of {xname} {x.shape}, got {out.shape}")
    if out.dtype != x.dtype or not out.dtype.isnative:
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname} (native byte order), "
                        f"got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return out


def _out_apart(out, running_mean, running_var):
    """A call that updates running statistics in place refuses an out that
    overlaps them: the statistics would end up holding values of y."""
    if out is not None and _core._bounds_overlap(out, (running_mean, running_var)):
        raise ValueError("out must not overlap running_mean or running_var (they are "
                         "updated in place by the same call)")


def _target(out, x, sources):
    """The array the kernel writes for data x (C-contiguous, what the kernel
    reads): out itself when it is C-contiguous and either is x or shares no
    memory with the inputs; otherwise a scratch array copied into out at the
    end."""
    if out is None:
        return np.empty(x.shape, x.dtype)
    if out.flags.c_contiguous and out.flags.aligned:
        # in place over x itself is fine (each element is read before it is
        # written); any other overlap (a shifted x, parameters or running
        # statistics living in out) goes through scratch
        skip = x if _core._same_data(out, x) else None
        if not _core._bounds_overlap(out, sources, skip):
            return out
    return np.empty(x.shape, x.dtype)


def _finish(target, out):
    if out is None or target is out:
        return target
    out[...] = target
    return out


def _dy_like(dy, x, name="dy", xname="x"):
    dy = _core._data_arg(dy, name)
    if dy.shape != x.shape:
        raise ValueError(f"{name} must have the shape of {xname} {x.shape}, got {dy.shape}")
    if dy.dtype != x.dtype:
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname}, got {dy.dtype}")
    return dy


def _stats(a, shape, dtype, name):
    """Statistics the forward returned (or a field of its stats tuple): a
    floating array of this shape, as a C-contiguous array of dtype."""
    if _ready(a, tuple(shape), dtype):  # the forward's own statistics
        return a
    a = np.asarray(a) if a is not None else None
    if a is None:
        raise TypeError(f"{name} is required (the statistics the forward returned)")
    if not _is_float(a.dtype):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")
    return _carr(a, dtype)


def _momentum(momentum):
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float, np.floating, np.integer)):
        raise TypeError(
            f"momentum must be a number in [0, 1], got {type(momentum).__name__} "
            "(the layer classes turn momentum=None into a cumulative average)"
        )
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    return m


def _running(a, C, x, name):
    """A running statistic, updated in place: shape (C,), the dtype of x's
    parameters (float32 for 16-bit data), writeable."""
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), "
                        f"got {type(a).__name__}")
    if a.shape != (C,):
        raise ValueError(f"{name} must have shape ({C},), got {a.shape}")
    _running_dtype(a, x, name)
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return a


def _running_dtype(a, x, name):
    """A running statistic is updated in place, so it cannot be converted (a
    copy would not be updated): it must have the computing dtype, or float64,
    which holds every value of it (the update is computed in float64 and
    rounded once to the statistic's dtype)."""
    if a.dtype == _calc(x) or a.dtype == np.float64:
        return
    if x.dtype.itemsize == 2:
        raise TypeError(
            f"{name} must have dtype float32 (or float64) for {x.dtype} x, got {a.dtype}: "
            "running statistics are updated in place, in the computing dtype, float32 for "
            "16-bit data, or in float64, so they cannot be converted"
        )
    raise TypeError(f"{name} must have dtype {x.dtype} like x (or float64; it is updated in "
                    f"place), got {a.dtype}")


def _update_running(running_mean, running_var, mean, var, count, momentum):
    """PyTorch's convention: new = (1 - m) * old + m * batch, variance unbiased."""
    if running_mean is not None and running_var is not None:
        _core._running_update(running_mean, running_var, mean, var, count, momentum)


def _grad_like(grad, param, x):
    """A parameter's gradient in the parameter's own floating dtype, in native
    byte order (x's computing dtype -- float32 for 16-bit x -- for a parameter
    given as a list or in a non-float dtype); None stays None."""
    if grad is None or param is None:
        return None
    if isinstance(param, np.ndarray) and _is_float(param.dtype):
        if type(grad) is np.ndarray and grad.dtype is param.dtype:
            return grad  # the common case: nothing to convert
        dt = param.dtype.newbyteorder("=")
    else:
        dt = _calc(x)
    return np.asarray(grad).astype(dt, copy=False)


def _empty_result(out, x):
    return out if out is not None else np.empty(x.shape, x.dtype)


def _return(y, stats, return_stats):
    return (y, *stats) if return_stats else y


# --------------------------------------------------------------------------
# GroupNorm
# --------------------------------------------------------------------------

def _groups_fit(G, C):
    """Whether G groups split C channels: 1 <= G <= C and G divides C. With no
    channels (C = 0) only one group, an empty one, does."""
    return 1 <= G <= max(C, 1) and C % G == 0


def _group_count(num_groups, C):
    """num_groups checked against C channels (see _groups_fit)."""
    if not _is_int(num_groups):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    G = int(num_groups)
    if G <= 0:
        raise ValueError(f"num_groups must be positive, got {G}")
    if not _groups_fit(G, C):
        raise ValueError(
            f"num_groups={G} must divide the number of channels C={C} and be at most C"
            + (" (with no channels, num_groups must be 1)" if C == 0 else "")
        )
    return G


def group_norm(x, num_groups, weight=None, bias=None, *, eps=1e-5, axis=1, out=None,
               return_stats=False, num_threads=None):
    """Group normalization (docs/numerics.md §5).

    For each sample and each group of ``C / num_groups`` channels,
    ``y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]``, with the mean
    and the biased variance over the group's channels and every other axis
    but the batch.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *spatial)`` or channels-last ``(N, *spatial, C)``
        float32, float64, float16 or bfloat16; the batch is axis 0.
    num_groups : int
        Number of groups: from 1 to C, dividing C (1 when C = 0).
    weight, bias : ndarray, shape ``(C,)``, optional
        Per-channel scale and shift.
    eps : float, default 1e-5
        Added to the variance inside the square root.
    axis : int, default 1
        The channel axis: 1 for ``(N, C, *spatial)``, -1 for channels-last.
    out : ndarray, optional
        Receives y (x's shape and dtype); may be x.
    return_stats : bool, default False
        Also return ``mean`` and ``rstd``.
    num_threads : int, optional
        Upper bound on threads (default :func:`get_num_threads`).

    Returns
    -------
    y : ndarray
        x's shape and dtype.
    mean, rstd : ndarray, shape ``(N, num_groups)``
        Only with ``return_stats``: the inputs of :func:`group_norm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((2, 8, 4, 4)).astype(np.float32)
    >>> y, mean, rstd = fastnorm.group_norm(x, 4, return_stats=True)
    >>> y.shape, mean.shape
    ((2, 8, 4, 4), (2, 4))
    >>> g = y.reshape(2, 4, -1)  # each group of 2 channels has mean 0, variance 1
    >>> bool(np.allclose(g.mean(-1), 0, atol=1e-6)), bool(np.allclose(g.var(-1), 1, atol=1e-3))
    (True, True)

    Channels-last data, normalized in place of its layout:

    >>> y_nhwc = fastnorm.group_norm(np.moveaxis(x, 1, -1), 4, axis=-1)
    >>> bool(np.allclose(np.moveaxis(y_nhwc, -1, 1), y, atol=1e-6))
    True
    """
    # the common call (NCHW, no out) without the Python checks
    fast = _core._group_norm_fast(x, num_groups, weight, bias, eps, axis, out, return_stats,
                                  num_threads)
    if fast is not None:
        return fast
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _channel_axis(axis, x.shape)
    G = _group_count(num_groups, x.shape[k])
    e = _core._eps_arg(eps)
    nt = _core._threads_arg(num_threads)
    B = _Block(x, k, per_sample=True)
    w = _param(weight, B.C, x, "weight")
    b = _param(bias, B.C, x, "bias")
    out = _out(out, x)
    y = _target(out, B.x, (B.x, w, b))
    mean = np.empty((B.S, G), _calc(x))
    rstd = np.empty((B.S, G), _calc(x))
    _core._group_norm_kernel(B.x, y, *B.dims, G, w, b, e, mean, rstd, None, nt)
    return _return(_finish(y, out), (mean, rstd), return_stats)


def _group_backward(dy, x, mean, rstd, weight, bias, G, k, per_sample, num_threads,
                    stats_shape):
    B = _Block(x, k, per_sample)
    dy = _carr(_dy_like(dy, x))
    m = _stats(mean, stats_shape, _calc(x), "mean")
    r = _stats(rstd, stats_shape, _calc(x), "rstd")
    w = _param(weight, B.C, x, "weight")
    nt = _core._threads_arg(num_threads)
    dx = np.empty(B.shape, x.dtype)
    dw = np.empty(B.C, _calc(x))
    db = np.empty(B.C, _calc(x))
    if B.C == 0:  # no channels: nothing to compute
        return dx, _grad_like(dw, weight, x), _grad_like(db, bias, x)
    _core._group_norm_backward_kernel(dy, B.x, *B.dims, G, m, r, w, dx, dw, db, nt)
    return dx, _grad_like(dw, weight, x), _grad_like(db, bias, x)


def group_norm_backward(dy, x, mean, rstd, weight=None, bias=None, *, axis=1, num_threads=None):
    """Gradients of :func:`group_norm`.

    ``dx = NB(dy * weight)`` per (sample, group) (docs/numerics.md §0),
    ``dweight = sum(dy * xhat)`` and ``dbias = sum(dy)`` over every axis but
    the channel axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    mean, rstd : ndarray, shape ``(N, num_groups)``
        What :func:`group_norm` returned; the number of groups is read from them.
    weight, bias : ndarray, shape ``(C,)``, optional
        The forward's parameters.
    axis : int, default 1
        The forward's channel axis.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dweight, dbias : ndarray of shape ``(C,)``, or None
        None where the forward's weight (bias) was None.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((2, 8, 4, 4)).astype(np.float32)
    >>> w, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    >>> y, mean, rstd = fastnorm.group_norm(x, 4, w, b, return_stats=True)
    >>> dx, dweight, dbias = fastnorm.group_norm_backward(np.ones_like(y), x, mean, rstd, w, b)
    >>> dx.shape, dweight.shape, dbias.shape
    ((2, 8, 4, 4), (8,), (8,))
    """
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _channel_axis(axis, x.shape)
    if mean is None:
        raise TypeError("mean is required (the statistics the forward returned)")
    ms = np.shape(mean)
    if len(ms) != 2 or ms[0] != x.shape[0]:
        raise ValueError(f"mean must have shape (N, num_groups) = ({x.shape[0]}, G), got {ms}")
    C = x.shape[k]
    G = ms[1]
    if not _groups_fit(G, C):
        raise ValueError(f"mean must have shape (N, num_groups) with num_groups in [1, C] "
                         f"dividing C={C}, got {ms}")
    _param(bias, x.shape[k], x, "bias")
    return _group_backward(dy, x, mean, rstd, weight, bias, G, k, True, num_threads,
                           (x.shape[0], G))


# --------------------------------------------------------------------------
# Frozen statistics (batch norm and instance norm in eval mode)
# --------------------------------------------------------------------------

def _frozen_forward(B, out, w, b, rm, rv, eps, nt, return_stats):
    """y normalized per channel with the running statistics (batch norm and
    instance norm in eval mode), written to out when given; with the stats
    (rm as it was, rstd) when return_stats."""
    y = _target(out, B.x, (B.x, w, b, rm, rv))
    mean64, rstd64 = _core._frozen_stats(rm, rv, eps)
    _core._channel_normalize_kernel(B.x, y, *B.dims, mean64, rstd64, w, b, False, nt)
    mean = rstd = None
    if return_stats:  # y is scratch where out holds rm: rm is as it was
        mean, rstd = rm.astype(_calc(B.x)), rstd64.astype(_calc(B.x))
    return _return(_finish(y, out), (mean, rstd), return_stats)


def _frozen_backward(dy, B, mean, rstd, weight, bias, nt, weight_param):
    """dx = dy * weight * rstd; dweight = sum(dy * xhat); dbias = sum(dy), with
    per-channel statistics (batch norm / instance norm in eval mode)."""
    dx = np.empty(B.shape, B.dtype)
    # the sums and dx = dy * weight * rstd in one pass over dy
    dw, db = _core._frozen_backward_kernel(dy, B.x, *B.dims, mean, rstd, weight, dx,
                                           weight is not None, bias is not None, nt)
    return dx, _grad_like(dw, weight_param, B.x), _grad_like(db, bias, B.x)


# --------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------

def batch_norm(x, running_mean, running_var, weight=None, bias=None, *, training=False,
               momentum=0.1, eps=1e-5, axis=1, out=None, return_stats=False,
               num_threads=None):
    """Batch normalization (docs/numerics.md §7), in the argument order of
    ``torch.nn.functional.batch_norm``.

    ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]``, the
    statistics per channel over every other axis: those of the batch when
    ``training``, else the running statistics.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *spatial)``, ``(N, C)`` or channels-last
        float32, float64, float16 or bfloat16.
    running_mean, running_var : ndarray of shape ``(C,)``, or None
        Both or neither. With ``training`` they are updated in place
        (``momentum`` is the weight of the new value; the variance is stored
        unbiased); otherwise they normalize x.
    weight, bias : ndarray, shape ``(C,)``, optional
        Per-channel scale and shift.
    training : bool, default False
        Normalize with the batch's statistics and update the running ones.
    momentum : float, default 0.1
        Weight of the batch statistics in the running-statistics update.
    eps : float, default 1e-5
        Added to the variance inside the square root.
    axis : int, default 1
        The channel axis: 1 for ``(N, C, *spatial)``, -1 for channels-last.
    out : ndarray, optional
        Receives y (x's shape and dtype); may be x.
    return_stats : bool, default False
        Also return ``mean`` and ``rstd``.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    y : ndarray
        x's shape and dtype.
    mean, rstd : ndarray, shape ``(C,)``
        Only with ``return_stats``: the statistics used (of the batch, or the
        running ones), the inputs of :func:`batch_norm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((16, 3, 4, 4)).astype(np.float32)
    >>> running_mean, running_var = np.zeros(3, np.float32), np.ones(3, np.float32)
    >>> y = fastnorm.batch_norm(x, running_mean, running_var, training=True, momentum=0.1)
    >>> bool(np.allclose(running_mean, 0.1 * x.mean(axis=(0, 2, 3)), atol=1e-6))
    True
    >>> y_eval = fastnorm.batch_norm(x, running_mean, running_var)  # training=False
    >>> y_eval.shape
    (16, 3, 4, 4)
    """
    # the common inference call (eval, NCHW, no out) without the Python checks
    fast = _core._batch_norm_eval_fast(x, running_mean, running_var, weight, bias, training,
                                       momentum, eps, axis, out, return_stats, num_threads)
    if fast is not None:
        return fast
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _channel_axis(axis, x.shape)
    C = x.shape[k]
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    rm = _running(running_mean, C, x, "running_mean")
    rv = _running(running_var, C, x, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together")
    m = _momentum(momentum)
    e = _core._eps_arg(eps)
    nt = _core._threads_arg(num_threads)
    B = _Block(x, k, per_sample=False)
    w = _param(weight, C, x, "weight")
    b = _param(bias, C, x, "bias")
    out = _out(out, x)
    M = B.R * B.L
    if training:
        if M == 1:
            raise ValueError(
                f"x must have more than 1 value per channel when training, got shape {x.shape}"
            )
        _out_apart(out, rm, rv)
        if x.size == 0:  # as PyTorch: an empty result, running statistics untouched
            return _return(_empty_result(out, x), (np.full(C, np.nan, _calc(x)),) * 2,
                           return_stats)
        y = _target(out, B.x, (B.x, w, b, rm, rv))
        mean = np.empty(C, _calc(x))
        rstd = np.empty(C, _calc(x))
        var = np.empty(C, _calc(x))
        _core._group_norm_kernel(B.x, y, *B.dims, C, w, b, e, mean, rstd, var, nt)
        _update_running(rm, rv, mean, var, M, m)  # in float64 from the float32 statistics
    else:
        if rm is None or rv is None:
            raise ValueError("running_mean and running_var are required when training=False")
        return _frozen_forward(B, out, w, b, rm, rv, e, nt, return_stats)
    return _return(_finish(y, out), (mean, rstd), return_stats)


def batch_norm_backward(dy, x, mean, rstd, weight=None, bias=None, *, training=False, axis=1,
                        num_threads=None):
    """Gradients of :func:`batch_norm`.

    With batch statistics (``training=True``), ``dx = NB(dy * weight)`` per
    channel (docs/numerics.md §0); with running statistics,
    ``dx = dy * weight * rstd``. ``dweight = sum(dy * xhat)`` and
    ``dbias = sum(dy)`` over every axis but the channel axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    mean, rstd : ndarray, shape ``(C,)``
        What :func:`batch_norm` returned.
    weight, bias : ndarray, shape ``(C,)``, optional
        The forward's parameters.
    training : bool, default False
        Must match the forward.
    axis : int, default 1
        The forward's channel axis.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dweight, dbias : ndarray of shape ``(C,)``, or None
        None where the forward's weight (bias) was None.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((16, 3, 4, 4)).astype(np.float32)
    >>> rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    >>> w = np.ones(3, np.float32)
    >>> y, mean, rstd = fastnorm.batch_norm(x, rm, rv, w, training=True, return_stats=True)
    >>> dx, dweight, dbias = fastnorm.batch_norm_backward(np.ones_like(y), x, mean, rstd, w,
    ...                                                  training=True)
    >>> dx.shape, dweight.shape, dbias
    ((16, 3, 4, 4), (3,), None)
    """
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    k = _channel_axis(axis, x.shape)
    C = x.shape[k]
    _param(bias, C, x, "bias")
    if training:
        return _group_backward(dy, x, mean, rstd, weight, bias, C, k, False, num_threads, (C,))
    B = _Block(x, k, per_sample=False)
    dy = _carr(_dy_like(dy, x))
    m = _stats(mean, (C,), _calc(x), "mean")
    r = _stats(rstd, (C,), _calc(x), "rstd")
    w = _param(weight, C, x, "weight")
    return _frozen_backward(dy, B, m, r, w, bias, _core._threads_arg(num_threads), weight)


# --------------------------------------------------------------------------
# InstanceNorm
# --------------------------------------------------------------------------

def instance_norm(x, weight=None, bias=None, running_mean=None, running_var=None, *,
                  training=True, momentum=0.1, eps=1e-5, axis=1, out=None,
                  return_stats=False, num_threads=None):
    """Instance normalization (docs/numerics.md §6).

    ``y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]``, the statistics
    per (sample, channel) over the other axes. As in PyTorch, the input's
    statistics are used when training or when no running statistics are
    given; then ``running_mean`` / ``running_var``, if given, are updated in
    place with the batch average of the instance statistics (the variance
    unbiased). With ``training=False`` and running statistics, those are used.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *spatial)`` or channels-last
        float32, float64, float16 or bfloat16.
    weight, bias : ndarray, shape ``(C,)``, optional
        Per-channel scale and shift.
    running_mean, running_var : ndarray of shape ``(C,)``, optional
        Both or neither.
    training : bool, default True
        Use (and track) the input's statistics.
    momentum : float, default 0.1
        Weight of the new statistics in the running-statistics update.
    eps : float, default 1e-5
        Added to the variance inside the square root.
    axis : int, default 1
        The channel axis.
    out : ndarray, optional
        Receives y (x's shape and dtype); may be x.
    return_stats : bool, default False
        Also return ``mean`` and ``rstd``.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    y : ndarray
        x's shape and dtype.
    mean, rstd : ndarray
        Only with ``return_stats``: shape ``(N, C)`` for instance statistics,
        ``(C,)`` for running ones.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    >>> y, mean, rstd = fastnorm.instance_norm(x, return_stats=True)
    >>> mean.shape
    (2, 3)
    >>> bool(np.allclose(y, fastnorm.group_norm(x, 3), atol=1e-6))  # one group per channel
    True
    """
    # the common call (input statistics, NCHW) without the Python checks
    fast = _core._instance_norm_fast(x, weight, bias, running_mean, running_var, training,
                                     momentum, eps, axis, out, return_stats, num_threads)
    if fast is not None:
        return fast
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _channel_axis(axis, x.shape)
    C = x.shape[k]
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    rm = _running(running_mean, C, x, "running_mean")
    rv = _running(running_var, C, x, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together")
    m = _momentum(momentum)
    e = _core._eps_arg(eps)
    nt = _core._threads_arg(num_threads)
    w = _param(weight, C, x, "weight")
    b = _param(bias, C, x, "bias")
    out = _out(out, x)
    use_input_stats = training or rm is None
    if use_input_stats:
        B = _Block(x, k, per_sample=True)
        L = B.R * B.L
        if training and L == 1:
            raise ValueError(
                f"x must have more than 1 spatial element per channel when training, "
                f"got shape {x.shape}"
            )
        if training:
            _out_apart(out, rm, rv)
        if x.size == 0:  # as PyTorch: an empty result, running statistics untouched
            return _return(_empty_result(out, x), (np.full((B.S, C), np.nan, _calc(x)),) * 2,
                           return_stats)
        y = _target(out, B.x, (B.x, w, b, rm, rv))
        mean = np.empty((B.S, C), _calc(x))
        rstd = np.empty((B.S, C), _calc(x))
        var = np.empty((B.S, C), _calc(x))
        _core._group_norm_kernel(B.x, y, *B.dims, C, w, b, e, mean, rstd, var, nt)
        if training and rm is not None:
            _update_running(rm, rv, mean.astype(np.float64).mean(axis=0),
                            var.astype(np.float64).mean(axis=0), L, m)
    else:
        B = _Block(x, k, per_sample=False)
        return _frozen_forward(B, out, w, b, rm, rv, e, nt, return_stats)
    return _return(_finish(y, out), (mean, rstd), return_stats)


def instance_norm_backward(dy, x, mean, rstd, weight=None, bias=None, *, axis=1,
                           num_threads=None):
    """Gradients of :func:`instance_norm`.

    ``mean`` and ``rstd`` of shape ``(N, C)`` are instance statistics
    (``dx = NB(dy * weight)`` per instance, docs/numerics.md §0); of shape
    ``(C,)``, running statistics (``dx = dy * weight * rstd``).

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    mean, rstd : ndarray, shape ``(N, C)`` or ``(C,)``
        What :func:`instance_norm` returned.
    weight, bias : ndarray, shape ``(C,)``, optional
        The forward's parameters.
    axis : int, default 1
        The forward's channel axis.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dweight, dbias : ndarray of shape ``(C,)``, or None
        None where the forward's weight (bias) was None.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    >>> y, mean, rstd = fastnorm.instance_norm(x, return_stats=True)
    >>> dx, dweight, dbias = fastnorm.instance_norm_backward(np.ones_like(y), x, mean, rstd)
    >>> dx.shape, dweight, dbias
    ((2, 3, 8, 8), None, None)
    """
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _channel_axis(axis, x.shape)
    C = x.shape[k]
    _param(bias, C, x, "bias")
    if np.ndim(mean) == 2:
        return _group_backward(dy, x, mean, rstd, weight, bias, C, k, True, num_threads,
                               (x.shape[0], C))
    B = _Block(x, k, per_sample=False)
    dy = _carr(_dy_like(dy, x))
    m = _stats(mean, (C,), _calc(x), "mean")
    r = _stats(rstd, (C,), _calc(x), "rstd")
    w = _param(weight, C, x, "weight")
    return _frozen_backward(dy, B, m, r, w, bias, _core._threads_arg(num_threads), weight)


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


def _stats_field(stats, field, shape, dtype):
    """One array field of a stats tuple, checked as _stats checks statistics;
    messages name stats.<field>."""
    return _stats(getattr(stats, field), shape, np.dtype(dtype), f"stats.{field}")


def _stats_flag(stats, field):
    v = getattr(stats, field)
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"stats.{field} must be a bool, got {type(v).__name__}")
    return bool(v)


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
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    a_mix, b_mix = _bln_constants(batch_size, Bn)
    w = _param(weight, D, x, "weight")
    b = _param(bias, D, x, "bias")
    rm = _running_shaped(running_mean, fshape, x, "running_mean")
    rv = _running_shaped(running_var, fshape, x, "running_var")
    m = _momentum(momentum)
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
    out = _out(out, x)
    if training:
        _out_apart(out, rm, rv)
    xc = _carr(x)
    blk = _Block(xc.reshape(Bn, F), 1, per_sample=False)  # (1, B, F, 1)
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
    y, fmean, frstd = _core.layer_norm(xc, (a_mix * gd).astype(_calc(x)), b, axis=-1, eps=e,
                                       out=y, return_stats=True, num_threads=num_threads)
    # batch branch, added: y += b * weight/sqrt(D) * x_b
    yb = y.reshape(Bn, F)
    _core._channel_normalize_kernel(blk.x, yb, *blk.dims, mu_used, rstd_b,
                                    np.tile(b_mix * gd, F // D if D else 0).astype(_calc(x)),
                                    None, True, nt)
    if training and Bn > 0:
        if rm is not None:
            rm[...] = ((1.0 - m) * rm.astype(np.float64) + m * center.reshape(fshape))
        if rv is not None and Bn > 1:
            rv[...] = ((1.0 - m) * rv.astype(np.float64)
                       + m * (bvar * (Bn / (Bn - 1.0))).reshape(fshape))
    y = _finish(y, out)
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
    _running_dtype(a, x, name)
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
    dy = _carr(_dy_like(dy, x))
    w = _param(weight, D, x, "weight")
    _param(bias, D, x, "bias")
    nt = _core._threads_arg(num_threads)
    if not _is_int(stats.batch_size):
        raise TypeError(f"stats.batch_size must be an int, got {type(stats.batch_size).__name__}")
    if stats.batch_size < 0 or (stats.batch_size == 0 and Bn > 0):
        raise ValueError(f"stats.batch_size must be positive, got {stats.batch_size!r}")
    a_mix, b_mix = _bln_constants(None if stats.batch_size == Bn else stats.batch_size, Bn)
    fshape = x.shape[1:]
    fmean = _stats_field(stats, "feature_mean", x.shape[:-1], _calc(x))
    frstd = _stats_field(stats, "feature_rstd", x.shape[:-1], _calc(x))
    mu = _stats_field(stats, "batch_mean", fshape, np.float64).reshape(-1)
    r = _stats_field(stats, "batch_rstd", fshape, np.float64).reshape(-1)
    center = _stats_field(stats, "batch_center", fshape, np.float64).reshape(-1)
    frozen_mean = _stats_flag(stats, "frozen_mean")
    frozen_var = _stats_flag(stats, "frozen_var")
    if x.size == 0:  # as the other backward functions: empty dx, zero parameter gradients
        zero = np.zeros(D, _calc(x))
        return (np.empty(x.shape, x.dtype),
                _grad_like(zero if weight is not None else None, weight, x),
                _grad_like(zero.copy() if bias is not None else None, bias, x))
    gd = (np.ones(D) if w is None else w.astype(np.float64)) / math.sqrt(D)
    xc = _carr(x)
    # feature branch: a * NB_last-axis(dy * weight / sqrt(D))
    dx, dwf, db = _core.layer_norm_backward(dy, xc, fmean, frstd,
                                            (a_mix * gd).astype(_calc(x)), axis=-1,
                                            num_threads=num_threads)
    # batch branch, added into dx
    blk = _Block(xc.reshape(Bn, F), 1, per_sample=False)
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
        dweight = ((a_mix * dwf.astype(np.float64) + b_mix * dwb) / math.sqrt(D)).astype(_calc(x))
    dbias = db if bias is not None else None
    return dx, _grad_like(dweight, weight, x), _grad_like(dbias, bias, x)


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


def _softmax(v):
    e = np.exp(v - v.max())
    return e / e.sum()


def _logits(v, name):
    if v is None:
        return np.zeros(3)  # equal weights (softmax of ones)
    a = np.asarray(v)
    if not (_is_float(a.dtype) or a.dtype.kind in "iu"):
        raise TypeError(f"{name} must be a real array of 3 values, got dtype {a.dtype}")
    if a.shape != (3,):
        raise ValueError(f"{name} must have shape (3,) (IN, LN, BN), got {a.shape}")
    return a.astype(np.float64)


def switch_norm(x, weight=None, bias=None, mean_weight=None, var_weight=None,
                running_mean=None, running_var=None, *, training=True, momentum=0.1, eps=1e-5,
                axis=1, out=None, return_stats=False, num_threads=None):
    """Switchable Normalization (docs/numerics.md §9).

    ``mu = sum_k softmax(mean_weight)_k * mu_k`` and ``var`` likewise with
    ``var_weight``, over k = (instance, layer, batch) statistics;
    ``y = (x - mu) / sqrt(var + eps) * weight[c] + bias[c]``.

    Parameters
    ----------
    x : ndarray, shape ``(N, C, *spatial)`` or channels-last with ``axis=-1``
        float32, float64, float16 or bfloat16.
    weight, bias : ndarray, shape ``(C,)``, optional
        Per-channel scale and shift.
    mean_weight, var_weight : array of 3 values, optional
        The mixing logits in the order (IN, LN, BN); None: equal weights.
    running_mean, running_var : ndarray of shape ``(C,)``, optional
        Running statistics of the BN part, updated in place by training.
    training : bool, default True
        Use the batch's BN statistics; else the running ones.
    momentum : float, default 0.1
        Weight of the new statistics in the running-statistics update.
    eps : float, default 1e-5
        Added to the variance inside the square root.
    axis : int, default 1
        The channel axis.
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
    stats : SwitchNormStats
        Only with ``return_stats``: for :func:`switch_norm_backward`.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    >>> mean_logits = np.array([10.0, -10.0, -10.0])   # all weight on instance statistics
    >>> y = fastnorm.switch_norm(x, mean_weight=mean_logits, var_weight=mean_logits)
    >>> bool(np.allclose(y, fastnorm.instance_norm(x), atol=1e-4))
    True
    """
    x = _core._data_arg(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _channel_axis(axis, x.shape)
    C = x.shape[k]
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    wm = _softmax(_logits(mean_weight, "mean_weight"))
    wv = _softmax(_logits(var_weight, "var_weight"))
    w = _param(weight, C, x, "weight")
    b = _param(bias, C, x, "bias")
    rm = _running(running_mean, C, x, "running_mean")
    rv = _running(running_var, C, x, "running_var")
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together")
    if not training and rm is None:
        raise ValueError("running_mean and running_var are required when training=False")
    m = _momentum(momentum)
    e = _core._eps_arg(eps)
    nt = _core._threads_arg(num_threads)
    out = _out(out, x)
    B = _Block(x, k, per_sample=True)
    N, L = B.S, B.R * B.L
    if training and N * L == 1:
        raise ValueError(
            f"x must have more than 1 value per channel when training, got shape {x.shape}"
        )
    if training:
        _out_apart(out, rm, rv)
    if x.size == 0:  # as batch and instance norm: an empty result, running statistics untouched
        y = _empty_result(out, x)
        if not return_stats:
            return y
        def nan(*shape):
            return np.full(shape, np.nan)
        return y, SwitchNormStats(nan(N, C), nan(N, C), nan(N, C), nan(N, C), nan(N), nan(N),
                                  nan(C), nan(C), bool(training))
    y = _target(out, B.x, (B.x, w, b, rm, rv))
    m_in = np.empty((N, C))
    v_in = np.empty((N, C))
    _core._channel_moments_kernel(B.x, *B.dims, e, m_in, v_in, nt)
    with np.errstate(invalid="ignore", divide="ignore"):
        m_ln = m_in.mean(axis=1)
        v_ln = v_in.mean(axis=1) + ((m_in - m_ln[:, None]) ** 2).mean(axis=1)
        if training:
            m_bn = m_in.mean(axis=0)
            v_bn = v_in.mean(axis=0) + ((m_in - m_bn) ** 2).mean(axis=0)
        else:
            m_bn = rm.astype(np.float64)
            v_bn = rv.astype(np.float64)
        mu = wm[0] * m_in + wm[1] * m_ln[:, None] + wm[2] * m_bn
        var = wv[0] * v_in + wv[1] * v_ln[:, None] + wv[2] * v_bn
        rstd = 1.0 / np.sqrt(var + e)
    _core._channel_normalize_kernel(B.x, y, *B.dims, mu, rstd, w, b, False, nt)
    if training:
        _update_running(rm, rv, m_bn, v_bn, N * L, m)
    y = _finish(y, out)
    if not return_stats:
        return y
    return y, SwitchNormStats(mu, rstd, m_in, v_in, m_ln, v_ln, m_bn, v_bn, bool(training))


def switch_norm_backward(dy, x, stats, weight=None, bias=None, mean_weight=None,
                         var_weight=None, *, axis=1, num_threads=None):
    """Gradients of :func:`switch_norm`, through the three sets of statistics
    and the two softmaxes.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    stats : SwitchNormStats
        What :func:`switch_norm` returned.
    weight, bias, mean_weight, var_weight : optional
        The forward's parameters.
    axis : int, default 1
        The forward's channel axis.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dweight, dbias : ndarray of shape ``(C,)``, or None
        None where the forward's weight (bias) was None.
    dmean_weight, dvar_weight : ndarray, shape ``(3,)``
        Gradients of the logits (at equal logits where they were None).

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    >>> y, stats = fastnorm.switch_norm(x, return_stats=True)
    >>> dx, dw, db, dmean_weight, dvar_weight = fastnorm.switch_norm_backward(
    ...     np.ones_like(y), x, stats)
    >>> dx.shape, dmean_weight.shape, dvar_weight.shape
    ((4, 3, 5, 5), (3,), (3,))
    """
    x = _core._data_arg(x, "x")
    if not isinstance(stats, SwitchNormStats):
        raise TypeError("stats must be the SwitchNormStats that switch_norm returned")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {x.shape}")
    k = _channel_axis(axis, x.shape)
    C = x.shape[k]
    B = _Block(x, k, per_sample=True)
    N, L = B.S, B.R * B.L
    dy = _carr(_dy_like(dy, x))
    w = _param(weight, C, x, "weight")
    _param(bias, C, x, "bias")
    wm = _softmax(_logits(mean_weight, "mean_weight"))
    wv = _softmax(_logits(var_weight, "var_weight"))
    nt = _core._threads_arg(num_threads)
    f64 = np.float64
    mu = _stats_field(stats, "mean", (N, C), f64)
    rstd = _stats_field(stats, "rstd", (N, C), f64)
    m_in = _stats_field(stats, "in_mean", (N, C), f64)
    v_in = _stats_field(stats, "in_var", (N, C), f64)
    m_ln = _stats_field(stats, "ln_mean", (N,), f64)
    v_ln = _stats_field(stats, "ln_var", (N,), f64)
    m_bn = _stats_field(stats, "bn_mean", (C,), f64)
    v_bn = _stats_field(stats, "bn_var", (C,), f64)
    batch_stats = _stats_flag(stats, "batch_stats")
    if x.size == 0:  # nothing flows back: zero parameter gradients
        zc = np.zeros(C)
        return (np.empty(B.shape, x.dtype), _grad_like(zc, weight, x), _grad_like(zc, bias, x),
                _logit_grad(np.zeros(3), mean_weight, x), _logit_grad(np.zeros(3), var_weight, x))
    sum_dy = np.empty((N, C))
    sum_dyx = np.empty((N, C))
    _core._channel_sums_kernel(dy, B.x, *B.dims, mu, sum_dy, sum_dyx, nt)
    gamma = np.ones(C) if w is None else w.astype(np.float64)
    dmu = -rstd * gamma * sum_dy                 # dL/dmu per (n, c)
    dvar = -0.5 * rstd ** 3 * gamma * sum_dyx    # dL/dvar per (n, c)
    bn = 1.0 if batch_stats else 0.0             # running BN statistics are constants
    dmu_in, dmu_ln, dmu_bn = wm[0] * dmu, wm[1] * dmu.sum(axis=1), bn * wm[2] * dmu.sum(axis=0)
    dv_in, dv_ln, dv_bn = wv[0] * dvar, wv[1] * dvar.sum(axis=1), bn * wv[2] * dvar.sum(axis=0)
    cin, cln, cbn = 1.0 / L, 1.0 / (C * L), 1.0 / (N * L)
    # dx = gamma * rstd * dy + Q * (x - m_in) + K per (n, c). Each variance's
    # term 2 dv_k c_k (x - m_k) is centered on the instance mean, the center of
    # the (n, c) values, as 2 dv_k c_k ((x - m_in) + (m_in - m_k)): the
    # differences of means are spreads of the data, never its offset, so no two
    # large terms cancel (docs: the gradients are formed from centered values).
    Q = 2.0 * (dv_in * cin + dv_ln[:, None] * cln + dv_bn * cbn)
    K = (dmu_in * cin + dmu_ln[:, None] * cln + dmu_bn * cbn
         + 2.0 * (dv_ln[:, None] * (m_in - m_ln[:, None]) * cln + dv_bn * (m_in - m_bn) * cbn))
    dx = np.empty(B.shape, x.dtype)
    _core._channel_affine_backward_kernel(dy, B.x, dx, *B.dims, m_in, rstd,
                                          gamma * rstd, Q / rstd, K, False, nt)
    dweight = (rstd * sum_dyx).sum(axis=0).astype(_calc(x)) if weight is not None else None
    dbias = sum_dy.sum(axis=0).astype(_calc(x)) if bias is not None else None
    gm = np.array([(dmu * m_in).sum(), (dmu * m_ln[:, None]).sum(), (dmu * m_bn).sum()])
    gv = np.array([(dvar * v_in).sum(), (dvar * v_ln[:, None]).sum(), (dvar * v_bn).sum()])
    dmean_weight = wm * (gm - (wm * gm).sum())
    dvar_weight = wv * (gv - (wv * gv).sum())
    return (dx, _grad_like(dweight, weight, x), _grad_like(dbias, bias, x),
            _logit_grad(dmean_weight, mean_weight, x), _logit_grad(dvar_weight, var_weight, x))


def _logit_grad(grad, logits, x):
    """The mixing logits' gradient: in the logits' dtype, or x's computing
    dtype when they were left at None (the gradient at equal logits)."""
    if logits is None:
        return np.asarray(grad).astype(_calc(x))
    return _grad_like(grad, logits, x)


# --------------------------------------------------------------------------
# Weight Normalization
# --------------------------------------------------------------------------

def _wn_layout(v, g, axis, eps):
    v = _core._data_arg(v, "v")
    e = _core._eps_arg(eps)
    if axis is None:
        dims, gshape = (1, 1, 1, v.size), ()
        count = 1
    else:
        if not _is_int(axis):
            raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
        if v.ndim == 0:
            raise ValueError("v must have at least one axis when axis is not None")
        (k,) = _core._axes_arg(int(axis), v.ndim, "v")
        dims = (1, math.prod(v.shape[:k]), v.shape[k], math.prod(v.shape[k + 1:]))
        count = v.shape[k]
    ga = np.asarray(g) if g is not None else None
    if ga is None:
        raise TypeError("g is required")
    if not _is_float(ga.dtype):
        raise TypeError(f"g must be a floating-point array, got dtype {ga.dtype}")
    if ga.size != count:
        raise ValueError(
            f"g must have {count} element(s) (one per index of axis {axis}), got shape {ga.shape}"
        )
    return v, e, dims, ga


def _wn_norms(vc, dims, eps, nt):
    """sqrt(sum(v^2) + eps) per index of the normalized axis, from the centered
    moments of the channel stage (v as the (1, R, C, L) block dims)."""
    mean = np.empty(dims[2])
    var = np.empty(dims[2])
    _core._channel_moments_kernel(vc, *dims, 0.0, mean, var, nt)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(dims[1] * dims[3] * (var + mean * mean) + eps)


def _wn_fits(coef, v):
    """Whether per-norm coefficients keep their digits in v's computing dtype
    (finite and, unless 0, normal); otherwise (the norm of subnormal float32
    or 16-bit data, say) the call is computed in float64."""
    info = np.finfo(_calc(v))
    a = np.abs(coef)
    return bool(np.all((a <= info.max) & ((a == 0) | (a >= info.tiny))))


def _per_norm(c):
    """Per-norm values c (C,) shaped to broadcast against v seen as its dims."""
    return np.asarray(c).reshape(1, 1, -1, 1)


def weight_norm(v, g, *, axis=0, eps=0.0, out=None, num_threads=None):
    """Weight normalization (docs/numerics.md §10): ``w = g * v / ||v||``.

    The norm is over every axis but ``axis`` (None: over all of v), as
    ``sqrt(sum(v^2) + eps)``; ``eps=0`` keeps PyTorch's definition, where a
    zero norm gives NaN.

    Parameters
    ----------
    v : ndarray
        The direction, float32, float64, float16 or bfloat16.
    g : array
        One value per index of ``axis``, in any shape of that size (PyTorch
        keeps it ``(out, 1, ...)``).
    axis : int or None, default 0
        The axis that keeps one norm per index.
    eps : float, default 0.0
        Added to the sum of squares inside the square root.
    out : ndarray, optional
        Receives w (v's shape and dtype); may be v.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    w : ndarray
        v's shape and dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> v = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    >>> fastnorm.weight_norm(v, np.array([1.0, 10.0], np.float32))
    array([[ 0.6,  0.8],
           [ 0. , 10. ]], dtype=float32)
    """
    v, e, dims, ga = _wn_layout(v, g, axis, eps)
    nt = _core._threads_arg(num_threads)
    out = _out(out, v, xname="v")
    vc = _carr(v)
    gg = _carr(ga.reshape(-1), np.float64)
    w = _target(out, vc, (vc, gg))
    if v.size == 0:
        return _finish(w, out)
    if dims[1] == 1:  # one contiguous row per norm (axis 0): each row read once
        _core._weight_norm_kernel(vc, w, dims[2], dims[3], gg, e, nt)
        return _finish(w, out)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = gg / _wn_norms(vc, dims, e, nt)
    if not _wn_fits(scale, v):
        with np.errstate(over="ignore", invalid="ignore"):
            w64 = vc.astype(np.float64).reshape(dims) * _per_norm(scale)
        w[...] = w64.reshape(v.shape).astype(v.dtype)
        return _finish(w, out)
    _core._channel_normalize_kernel(vc, w, *dims, np.zeros(dims[2]), scale, None, None, False,
                                    nt)
    return _finish(w, out)


def weight_norm_backward(dw, v, g, *, axis=0, eps=0.0, num_threads=None):
    """Gradients of :func:`weight_norm`.

    ``dg = sum(dw * v) / ||v||`` and
    ``dv = (g / ||v||) * dw - (g * dg / ||v||^2) * v``.

    Parameters
    ----------
    dw : ndarray
        Gradient of w: v's shape.
    v, g : array
        The forward's arguments.
    axis : int or None, default 0
        The forward's axis.
    eps : float, default 0.0
        The forward's eps.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dv : ndarray
        v's shape and dtype.
    dg : ndarray
        g's shape and g's floating dtype (v's computing dtype, float32 for
        16-bit v, for a g given as a list).

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> v = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    >>> g = np.array([1.0, 10.0], np.float32)
    >>> dv, dg = fastnorm.weight_norm_backward(np.ones_like(v), v, g)
    >>> dg.round(4)
    array([1.4, 1. ], dtype=float32)
    """
    v, e, dims, ga = _wn_layout(v, g, axis, eps)
    nt = _core._threads_arg(num_threads)
    dw = _dy_like(dw, v, "dw", xname="v")
    vc = _carr(v)
    dwc = _carr(dw)
    C = dims[2]
    dv = np.empty(v.shape, v.dtype)
    if v.size == 0:
        return dv, _grad_like(np.zeros(ga.shape), g, v)
    gg = _carr(ga.reshape(-1), np.float64)
    if dims[1] == 1:  # one contiguous row per norm (axis 0): each row read once
        dg = np.empty(C)
        _core._weight_norm_backward_kernel(dwc, vc, dv, C, dims[3], gg, e, dg, nt)
        return dv, _grad_like(dg.reshape(ga.shape), g, v)
    norm = _wn_norms(vc, dims, e, nt)
    sum_dw = np.empty(C)
    sum_dwv = np.empty(C)
    zeros = np.zeros(C)
    _core._channel_sums_kernel(dwc, vc, *dims, zeros, sum_dw, sum_dwv, nt)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dg = sum_dwv / norm
        a = gg / norm
        b = -gg * dg / norm ** 2
        if not (_wn_fits(a, v) and _wn_fits(b, v)):  # in float64: see _wn_fits
            vn = vc.astype(np.float64).reshape(dims) / _per_norm(norm)
            d64 = dwc.astype(np.float64).reshape(dims)
            dg = (d64 * vn).sum(axis=(0, 1, 3))
            dv64 = (_per_norm(a) * d64
                    - _per_norm(gg * dg / norm) * vn)
            dv[...] = dv64.reshape(v.shape).astype(v.dtype)
            return dv, _grad_like(dg.reshape(ga.shape), g, v)
    _core._channel_affine_backward_kernel(dwc, vc, dv, *dims, zeros, np.ones(C), a, b, zeros,
                                          False, nt)
    return dv, _grad_like(dg.reshape(ga.shape), g, v)


# --------------------------------------------------------------------------
# Per-channel moments: partial statistics that merge
# --------------------------------------------------------------------------

def channel_moments(x, axis=1, *, num_threads=None):
    """Per-channel count, mean and centered sum of squares of x, in float64.

    For each index c of ``axis`` (1 for (N, C, *spatial); -1 for
    channels-last data or for the features of an (N, features) table), over
    every other axis of x: ``count``, the number of values; ``mean``; and
    ``M2`` = sum((x - mean)**2). Each is a float64 array of shape (C,). The
    variance is M2 / count (M2 / (count - 1) unbiased). A channel with no
    values has mean NaN and M2 0.

    One pass over x by the channel kernels batch_norm's statistics come from:
    the sums are centered about a per-block estimate of the mean and merged in
    float64, so a large offset (a mean of 1e6 with unit spread) costs no
    accuracy, as it would with sum(x**2) - count * mean**2.

    Moments of disjoint parts a and b of a dataset merge exactly (Chan, Golub
    and LeVeque's parallel formula)::

        n = na + nb;  d = mean_b - mean_a
        mean = mean_a + d * nb / n;  M2 = M2_a + M2_b + d * d * na * nb / n

    so statistics of data seen a batch at a time -- a streaming standard
    scaler, or the chunks of a dask array (``fastnorm.dask``) -- come out as
    if all of it had been in memory at once.
    """
    x = _core._data_arg(x, "x")
    k = _moments_axis(axis, x.shape)
    nt = _core._threads_arg(num_threads)
    return _block_moments(_Block(x, k, per_sample=False), nt)


def _moments_axis(axis, shape):
    """channel_moments' channel axis for an x of this shape, as a
    non-negative int (any axis of an x of one axis or more)."""
    if len(shape) < 1:
        raise ValueError(f"x must have at least one axis (the channel axis), got shape {shape}")
    if not _is_int(axis):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    (k,) = _core._axes_arg(int(axis), len(shape))
    return k


def _block_moments(B, nt):
    """(count, mean, M2) of block B (a _Block) per channel, or per (sample,
    channel) for a per-sample block: float64 vectors of length S * C."""
    n = B.R * B.L
    SC = B.S * B.C
    count = np.full(SC, float(n))
    mean = np.full(SC, np.nan)
    var = np.zeros(SC)
    if n > 0 and SC > 0:
        # eps 0: sums of squares that underflow the computing dtype are always
        # computed again in double
        _core._channel_moments_kernel(B.x, *B.dims, 0.0, mean, var, nt)
    return count, mean, var * n
