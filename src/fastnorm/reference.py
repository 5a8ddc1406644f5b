"""Plain float64 NumPy formulas of every fastnorm normalizer: the test oracle.

Written for clarity, not speed. Inputs of any float dtype are computed in
float64; results are float64. Axes follow the public functions: ``axis`` is
an int or a tuple of axes; statistics have x's shape without those axes.
"""
import numpy as np


def _axes(axis, ndim):
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise np.exceptions.AxisError(f"axis {a} is out of bounds for {ndim} dimension(s)")
    return tuple(sorted(a % ndim for a in axes))


def _expand(stat, axes):
    """Stats without the normalized axes -> broadcastable against x."""
    return np.expand_dims(np.asarray(stat, dtype=np.float64), axes)


def _param(p, x, axes):
    """A parameter of the normalized axes' shape, broadcastable against x."""
    p = np.asarray(p, dtype=np.float64)
    shape = [1] * x.ndim
    for a, s in zip(axes, p.shape):
        shape[a] = s
    return p.reshape(shape)


def layer_norm(x, weight=None, bias=None, axis=-1, eps=1e-5):
    """Returns (y, mean, rstd) in float64."""
    x = np.asarray(x, dtype=np.float64)
    axes = _axes(axis, x.ndim)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * _param(weight, x, axes)
    if bias is not None:
        y = y + _param(bias, x, axes)
    return y, np.squeeze(mean, axes), np.squeeze(rstd, axes)


def layer_norm_backward(dy, x, mean, rstd, weight=None, axis=-1):
    """Returns (dx, dweight, dbias) in float64, by NORMS.md's NB formula."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    axes = _axes(axis, x.ndim)
    others = tuple(a for a in range(x.ndim) if a not in axes)
    mean = _expand(mean, axes)
    rstd = _expand(rstd, axes)
    xhat = (x - mean) * rstd
    xhat = xhat - xhat.mean(axis=axes, keepdims=True)  # exact zero mean
    g = dy * _param(weight, x, axes) if weight is not None else dy
    dx = rstd * (g - g.mean(axis=axes, keepdims=True)
                 - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    dweight = (dy * xhat).sum(axis=others)
    dbias = dy.sum(axis=others)
    return dx, dweight, dbias


def rms_norm(x, weight=None, axis=-1, eps=None):
    """Returns (y, rstd) in float64. eps=None: the machine epsilon of x's dtype."""
    x_in = np.asarray(x)
    if eps is None:
        eps = float(np.finfo(x_in.dtype).eps)
    x = x_in.astype(np.float64)
    axes = _axes(axis, x.ndim)
    rstd = 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + eps)
    y = x * rstd
    if weight is not None:
        y = y * _param(weight, x, axes)
    return y, np.squeeze(rstd, axes)


def rms_norm_backward(dy, x, rstd, weight=None, axis=-1):
    """Returns (dx, dweight) in float64."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    axes = _axes(axis, x.ndim)
    others = tuple(a for a in range(x.ndim) if a not in axes)
    rstd = _expand(rstd, axes)
    xhat = x * rstd
    g = dy * _param(weight, x, axes) if weight is not None else dy
    dx = rstd * (g - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    dweight = (dy * xhat).sum(axis=others)
    return dx, dweight


def add_layer_norm(x, residual, weight=None, bias=None, residual_bias=None, axis=-1, eps=1e-5):
    """Returns (y, s, mean, rstd) in float64, s = x + residual (+ residual_bias)."""
    s = np.asarray(x, dtype=np.float64) + np.asarray(residual, dtype=np.float64)
    if residual_bias is not None:
        s = s + _param(residual_bias, s, _axes(axis, s.ndim))
    y, mean, rstd = layer_norm(s, weight, bias, axis=axis, eps=eps)
    return y, s, mean, rstd


def add_rms_norm(x, residual, weight=None, residual_bias=None, axis=-1, eps=None):
    """Returns (y, s, rstd) in float64. eps=None: the machine epsilon of x's dtype."""
    if eps is None:
        eps = float(np.finfo(np.asarray(x).dtype).eps)
    s = np.asarray(x, dtype=np.float64) + np.asarray(residual, dtype=np.float64)
    if residual_bias is not None:
        s = s + _param(residual_bias, s, _axes(axis, s.ndim))
    y, rstd = rms_norm(s, weight, axis=axis, eps=eps)
    return y, s, rstd


def _sum_others(a, axis):
    axes = _axes(axis, a.ndim)
    return a.sum(axis=tuple(i for i in range(a.ndim) if i not in axes))


def add_layer_norm_backward(dy, s, mean, rstd, weight=None, ds=None, axis=-1):
    """Returns (dsum, dweight, dbias, dresidual_bias) in float64."""
    dsum, dweight, dbias = layer_norm_backward(dy, s, mean, rstd, weight, axis=axis)
    if ds is not None:
        dsum = dsum + np.asarray(ds, dtype=np.float64)
    return dsum, dweight, dbias, _sum_others(dsum, axis)


def add_rms_norm_backward(dy, s, rstd, weight=None, ds=None, axis=-1):
    """Returns (dsum, dweight, dresidual_bias) in float64."""
    dsum, dweight = rms_norm_backward(dy, s, rstd, weight, axis=axis)
    if ds is not None:
        dsum = dsum + np.asarray(ds, dtype=np.float64)
    return dsum, dweight, _sum_others(dsum, axis)


def ada_layer_norm(x, shift, scale, eps=1e-6):
    """Returns (y, mean, rstd) in float64; x (N, ..., D), shift and scale (N, D)."""
    x = np.asarray(x, dtype=np.float64)
    y, mean, rstd = layer_norm(x, axis=-1, eps=eps)
    per_sample = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    scale = np.asarray(scale, dtype=np.float64).reshape(per_sample)
    shift = np.asarray(shift, dtype=np.float64).reshape(per_sample)
    return y * (1.0 + scale) + shift, mean, rstd


def ada_layer_norm_backward(dy, x, mean, rstd, scale):
    """Returns (dx, dshift, dscale) in float64, by NORMS.md section 4."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    per_sample = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    g = dy * (1.0 + np.asarray(scale, dtype=np.float64).reshape(per_sample))
    dx, _, _ = layer_norm_backward(g, x, mean, rstd, axis=-1)
    xhat = (x - _expand(mean, (x.ndim - 1,))) * _expand(rstd, (x.ndim - 1,))
    xhat = xhat - xhat.mean(axis=-1, keepdims=True)
    middle = tuple(range(1, x.ndim - 1))
    return dx, dy.sum(axis=middle), (dy * xhat).sum(axis=middle)
