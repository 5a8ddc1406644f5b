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
    """Returns (dx, dweight, dbias) in float64, by the NB formula of docs/numerics.md §0."""
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


def _rms_eps(dtype):
    """RMSNorm's default eps: the machine epsilon of the computing dtype (float64
    for float64 data, float32 for float32 and 16-bit data)."""
    f64 = np.dtype(dtype).newbyteorder("=") == np.float64
    return float(np.finfo(np.float64 if f64 else np.float32).eps)


def rms_norm(x, weight=None, axis=-1, eps=None):
    """Returns (y, rstd) in float64. eps=None: the machine epsilon of the
    computing dtype (float32's for float16 and bfloat16 x)."""
    x_in = np.asarray(x)
    if eps is None:
        eps = _rms_eps(x_in.dtype)
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
    """Returns (y, s, rstd) in float64. eps=None: as in rms_norm, from x's dtype."""
    if eps is None:
        eps = _rms_eps(np.asarray(x).dtype)
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
    """Returns (dx, dshift, dscale) in float64, by docs/numerics.md §4."""
    x = np.asarray(x, dtype=np.float64)
    dy = np.asarray(dy, dtype=np.float64)
    per_sample = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    g = dy * (1.0 + np.asarray(scale, dtype=np.float64).reshape(per_sample))
    dx, _, _ = layer_norm_backward(g, x, mean, rstd, axis=-1)
    xhat = (x - _expand(mean, (x.ndim - 1,))) * _expand(rstd, (x.ndim - 1,))
    xhat = xhat - xhat.mean(axis=-1, keepdims=True)
    middle = tuple(range(1, x.ndim - 1))
    return dx, dy.sum(axis=middle), (dy * xhat).sum(axis=middle)


# --------------------------------------------------------------------------
# The channel normalizers (docs/numerics.md §5 to §10)
# --------------------------------------------------------------------------

def _channels_first(x, axis):
    """x (float64) with the channel axis moved to 1, and the axis as given."""
    x = np.asarray(x, dtype=np.float64)
    return np.moveaxis(x, axis, 1)


def _per_channel(p, ndim):
    return np.asarray(p, dtype=np.float64).reshape((1, -1) + (1,) * (ndim - 2))


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5, axis=1):
    """Returns (y, mean, rstd); mean and rstd of shape (N, num_groups)."""
    xc = _channels_first(x, axis)
    N, C = xc.shape[:2]
    xg = xc.reshape(N, num_groups, -1)
    mean = xg.mean(axis=2)
    var = ((xg - mean[..., None]) ** 2).mean(axis=2)
    rstd = 1.0 / np.sqrt(var + eps)
    y = ((xg - mean[..., None]) * rstd[..., None]).reshape(xc.shape)
    if weight is not None:
        y = y * _per_channel(weight, xc.ndim)
    if bias is not None:
        y = y + _per_channel(bias, xc.ndim)
    return np.moveaxis(y, 1, axis), mean, rstd


def group_norm_backward(dy, x, mean, rstd, weight=None, axis=1):
    """Returns (dx, dweight, dbias) by the NB formula per (sample, group)."""
    xc = _channels_first(x, axis)
    dyc = _channels_first(dy, axis)
    N, C = xc.shape[:2]
    G = np.shape(mean)[1]
    mean = np.asarray(mean, np.float64)
    rstd = np.asarray(rstd, np.float64)
    xhat = ((xc.reshape(N, G, -1) - mean[..., None]) * rstd[..., None])
    xhat = xhat - xhat.mean(axis=2, keepdims=True)
    g = dyc * _per_channel(weight, xc.ndim) if weight is not None else dyc
    g = g.reshape(N, G, -1)
    dx = rstd[..., None] * (g - g.mean(axis=2, keepdims=True)
                            - xhat * (g * xhat).mean(axis=2, keepdims=True))
    xhat = xhat.reshape(xc.shape)
    others = (0,) + tuple(range(2, xc.ndim))
    dweight = (dyc * xhat).sum(axis=others)
    dbias = dyc.sum(axis=others)
    return np.moveaxis(dx.reshape(xc.shape), 1, axis), dweight, dbias


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5, axis=1):
    """Returns (y, mean, rstd, new_running_mean, new_running_var) (the last two
    None when not given); mean and rstd per channel, as used."""
    xc = _channels_first(x, axis)
    others = (0,) + tuple(range(2, xc.ndim))
    M = xc.size // max(xc.shape[1], 1)
    new_rm = new_rv = None
    if training:
        mean = xc.mean(axis=others)
        var = ((xc - _per_channel(mean, xc.ndim)) ** 2).mean(axis=others)
        if running_mean is not None:
            new_rm = (1 - momentum) * np.asarray(running_mean, np.float64) + momentum * mean
        if running_var is not None:
            new_rv = ((1 - momentum) * np.asarray(running_var, np.float64)
                      + momentum * var * M / (M - 1))
    else:
        mean = np.asarray(running_mean, np.float64)
        var = np.asarray(running_var, np.float64)
    rstd = 1.0 / np.sqrt(var + eps)
    y = (xc - _per_channel(mean, xc.ndim)) * _per_channel(rstd, xc.ndim)
    if weight is not None:
        y = y * _per_channel(weight, xc.ndim)
    if bias is not None:
        y = y + _per_channel(bias, xc.ndim)
    return np.moveaxis(y, 1, axis), mean, rstd, new_rm, new_rv


def batch_norm_backward(dy, x, mean, rstd, weight=None, training=False, axis=1):
    """Returns (dx, dweight, dbias): NB per channel (training) or dy * weight * rstd."""
    xc = _channels_first(x, axis)
    dyc = _channels_first(dy, axis)
    others = (0,) + tuple(range(2, xc.ndim))
    m = _per_channel(mean, xc.ndim)
    r = _per_channel(rstd, xc.ndim)
    xhat = (xc - m) * r
    g = dyc * _per_channel(weight, xc.ndim) if weight is not None else dyc
    if training:
        xhat = xhat - xhat.mean(axis=others, keepdims=True)
        dx = r * (g - g.mean(axis=others, keepdims=True)
                  - xhat * (g * xhat).mean(axis=others, keepdims=True))
    else:
        dx = g * r
    return np.moveaxis(dx, 1, axis), (dyc * xhat).sum(axis=others), dyc.sum(axis=others)


def instance_norm(x, weight=None, bias=None, eps=1e-5, axis=1):
    """Instance statistics: returns (y, mean, rstd) with (N, C) statistics."""
    C = np.shape(x)[axis]
    return group_norm(x, C, weight, bias, eps=eps, axis=axis)


def batch_layer_norm(x, weight=None, bias=None, eps=1e-3, batch_size=None,
                     batch_mean=None, batch_var=None):
    """y of Batch Layer Normalization for x (B, ..., D), float64. batch_mean /
    batch_var replace the mini-batch statistics of the batch branch when given
    (population statistics)."""
    x = np.asarray(x, dtype=np.float64)
    B, D = x.shape[0], x.shape[-1]
    Bc = B if batch_size is None else batch_size
    a, b = 1.0 / Bc - 1e-4, 1.0 - 1.0 / Bc - 1e-4
    mf = x.mean(axis=-1, keepdims=True)
    vf = ((x - mf) ** 2).mean(axis=-1, keepdims=True)
    xf = (x - mf) / np.sqrt(vf + eps)
    mb = x.mean(axis=0) if batch_mean is None else np.asarray(batch_mean, np.float64)
    vb = (((x - x.mean(axis=0)) ** 2).mean(axis=0) if batch_var is None
          else np.asarray(batch_var, np.float64))
    xb = (x - mb) / np.sqrt(vb + eps)
    gamma = np.ones(D) if weight is None else np.asarray(weight, np.float64)
    beta = np.zeros(D) if bias is None else np.asarray(bias, np.float64)
    return gamma * (a * xf + b * xb) / np.sqrt(D) + beta


def switch_norm(x, weight=None, bias=None, mean_weight=None, var_weight=None, eps=1e-5,
                axis=1, bn_mean=None, bn_var=None):
    """y of Switchable Normalization, float64; bn_mean / bn_var (per channel)
    replace the batch statistics when given (eval mode)."""
    xc = _channels_first(x, axis)
    N, C = xc.shape[:2]
    flat = xc.reshape(N, C, -1)
    m_in = flat.mean(axis=2)
    v_in = ((flat - m_in[..., None]) ** 2).mean(axis=2)
    m_ln = flat.reshape(N, -1).mean(axis=1)
    v_ln = ((flat.reshape(N, -1) - m_ln[:, None]) ** 2).mean(axis=1)
    per_c = np.moveaxis(flat, 1, 0).reshape(C, -1)
    m_bn = per_c.mean(axis=1) if bn_mean is None else np.asarray(bn_mean, np.float64)
    v_bn = (((per_c - per_c.mean(axis=1, keepdims=True)) ** 2).mean(axis=1) if bn_var is None
            else np.asarray(bn_var, np.float64))

    def softmax(v):
        v = np.zeros(3) if v is None else np.asarray(v, np.float64)
        e = np.exp(v - v.max())
        return e / e.sum()

    wm, wv = softmax(mean_weight), softmax(var_weight)
    mu = wm[0] * m_in + wm[1] * m_ln[:, None] + wm[2] * m_bn
    var = wv[0] * v_in + wv[1] * v_ln[:, None] + wv[2] * v_bn
    y = (flat - mu[..., None]) / np.sqrt(var[..., None] + eps)
    y = y.reshape(xc.shape)
    if weight is not None:
        y = y * _per_channel(weight, xc.ndim)
    if bias is not None:
        y = y + _per_channel(bias, xc.ndim)
    return np.moveaxis(y, 1, axis)


def weight_norm(v, g, axis=0, eps=0.0):
    """w = g * v / sqrt(sum(v^2) + eps), the sum over every axis but `axis`."""
    v = np.asarray(v, dtype=np.float64)
    if axis is None:
        norm = np.sqrt((v ** 2).sum() + eps)
        return np.asarray(g, np.float64).reshape(()) * v / norm
    axis = axis % v.ndim
    others = tuple(a for a in range(v.ndim) if a != axis)
    norm = np.sqrt((v ** 2).sum(axis=others, keepdims=True) + eps)
    shape = [1] * v.ndim
    shape[axis] = -1
    return np.asarray(g, np.float64).reshape(shape) * v / norm


def weight_norm_backward(dw, v, g, axis=0, eps=0.0):
    """(dv, dg) by docs/numerics.md §10, dg flat (one per index of axis)."""
    v = np.asarray(v, dtype=np.float64)
    dw = np.asarray(dw, dtype=np.float64)
    if axis is None:
        others, shape = tuple(range(v.ndim)), [1] * v.ndim
    else:
        axis = axis % v.ndim
        others = tuple(a for a in range(v.ndim) if a != axis)
        shape = [1] * v.ndim
        shape[axis] = -1
    norm = np.sqrt((v ** 2).sum(axis=others, keepdims=True) + eps)
    gg = np.asarray(g, np.float64).reshape(shape)
    dg = (dw * v).sum(axis=others, keepdims=True) / norm
    dv = gg / norm * dw - gg * dg / norm ** 2 * v
    return dv, dg.reshape(-1)
