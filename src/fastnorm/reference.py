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
    """LayerNorm in float64 (docs/numerics.md §1).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` over ``axis``, the
    variance biased.

    Parameters
    ----------
    x, weight, bias, axis, eps :
        As in :func:`fastnorm.layer_norm`; any float dtype, computed in float64.

    Returns
    -------
    y : ndarray
        x's shape, float64.
    mean, rstd : ndarray
        x's shape without the normalized axes, float64.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> from fastnorm import reference
    >>> x = np.random.default_rng(0).standard_normal((4, 16)).astype(np.float32)
    >>> y, mean, rstd = reference.layer_norm(x)
    >>> y.dtype, mean.shape
    (dtype('float64'), (4,))
    >>> bool(np.allclose(fastnorm.layer_norm(x), y, atol=1e-5))
    True
    """
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
    """Gradients of LayerNorm in float64, by the NB formula (docs/numerics.md §0).

    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` with ``g = dy * weight``;
    ``dweight = sum(dy * xhat)``, ``dbias = sum(dy)`` over the other axes.

    Parameters
    ----------
    dy, x, mean, rstd, weight, axis :
        As in :func:`fastnorm.layer_norm_backward`.

    Returns
    -------
    dx, dweight, dbias : ndarray
        float64; dx has x's shape, dweight and dbias the normalized axes' shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x = np.random.default_rng(0).standard_normal((4, 16))
    >>> y, mean, rstd = reference.layer_norm(x)
    >>> dx, dweight, dbias = reference.layer_norm_backward(np.ones_like(x), x, mean, rstd)
    >>> dx.shape, dweight.shape, bool(np.allclose(dx, 0))
    ((4, 16), (16,), True)
    """
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
    """RMSNorm in float64 (docs/numerics.md §2).

    ``y = x / sqrt(mean(x**2) + eps) * weight`` over ``axis``; ``eps=None`` is the
    machine epsilon of the computing dtype (float32's for float16 and bfloat16 x).

    Parameters
    ----------
    x, weight, axis, eps :
        As in :func:`fastnorm.rms_norm`.

    Returns
    -------
    y : ndarray
        x's shape, float64.
    rstd : ndarray
        x's shape without the normalized axes, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> y, rstd = reference.rms_norm(np.array([[3.0, 4.0]]), eps=0.0)
    >>> y.round(4), rstd.round(4)
    (array([[0.8485, 1.1314]]), array([0.2828]))
    """
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
    """Gradients of RMSNorm in float64 (docs/numerics.md §2).

    ``dx = rstd * (g - xhat * mean(g * xhat))`` with ``xhat = x * rstd`` and
    ``g = dy * weight``; ``dweight = sum(dy * xhat)`` over the other axes.

    Parameters
    ----------
    dy, x, rstd, weight, axis :
        As in :func:`fastnorm.rms_norm_backward`.

    Returns
    -------
    dx, dweight : ndarray
        float64; dx has x's shape, dweight the normalized axes' shape.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x = np.random.default_rng(0).standard_normal((4, 16))
    >>> y, rstd = reference.rms_norm(x)
    >>> dx, dweight = reference.rms_norm_backward(np.ones_like(x), x, rstd)
    >>> dx.shape, dweight.shape
    ((4, 16), (16,))
    """
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
    """Residual add and LayerNorm in float64 (docs/numerics.md §3).

    ``s = x + residual (+ residual_bias)``, ``y = layer_norm(s, weight, bias)``.

    Parameters
    ----------
    x, residual, weight, bias, residual_bias, axis, eps :
        As in :func:`fastnorm.add_layer_norm`.

    Returns
    -------
    y, s : ndarray
        x's shape, float64.
    mean, rstd : ndarray
        The statistics of s, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x, r = np.random.default_rng(0).standard_normal((2, 4, 8))
    >>> y, s, mean, rstd = reference.add_layer_norm(x, r)
    >>> bool(np.array_equal(s, x + r)), mean.shape
    (True, (4,))
    """
    s = np.asarray(x, dtype=np.float64) + np.asarray(residual, dtype=np.float64)
    if residual_bias is not None:
        s = s + _param(residual_bias, s, _axes(axis, s.ndim))
    y, mean, rstd = layer_norm(s, weight, bias, axis=axis, eps=eps)
    return y, s, mean, rstd


def add_rms_norm(x, residual, weight=None, residual_bias=None, axis=-1, eps=None):
    """Residual add and RMSNorm in float64 (docs/numerics.md §3).

    ``s = x + residual (+ residual_bias)``, ``y = rms_norm(s, weight)``; ``eps=None``
    as in :func:`rms_norm`, from x's dtype.

    Parameters
    ----------
    x, residual, weight, residual_bias, axis, eps :
        As in :func:`fastnorm.add_rms_norm`.

    Returns
    -------
    y, s : ndarray
        x's shape, float64.
    rstd : ndarray
        The statistic of s, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x, r = np.random.default_rng(0).standard_normal((2, 4, 8))
    >>> y, s, rstd = reference.add_rms_norm(x, r)
    >>> y.shape, rstd.shape
    ((4, 8), (4,))
    """
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
    """Gradients of the residual add and LayerNorm in float64 (docs/numerics.md §3).

    ``dsum = NB(dy * weight) + ds``, the gradient of x and of residual;
    ``dresidual_bias = sum(dsum)`` over the other axes.

    Parameters
    ----------
    dy, s, mean, rstd, weight, ds, axis :
        As in :func:`fastnorm.add_layer_norm_backward`.

    Returns
    -------
    dsum, dweight, dbias, dresidual_bias : ndarray
        float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x, r = np.random.default_rng(0).standard_normal((2, 4, 8))
    >>> y, s, mean, rstd = reference.add_layer_norm(x, r)
    >>> grads = reference.add_layer_norm_backward(np.ones_like(y), s, mean, rstd, ds=np.ones_like(s))
    >>> [g.shape for g in grads]
    [(4, 8), (8,), (8,), (8,)]
    """
    dsum, dweight, dbias = layer_norm_backward(dy, s, mean, rstd, weight, axis=axis)
    if ds is not None:
        dsum = dsum + np.asarray(ds, dtype=np.float64)
    return dsum, dweight, dbias, _sum_others(dsum, axis)


def add_rms_norm_backward(dy, s, rstd, weight=None, ds=None, axis=-1):
    """Gradients of the residual add and RMSNorm in float64 (docs/numerics.md §3).

    ``dsum = dx_rms(dy * weight) + ds``; ``dresidual_bias = sum(dsum)`` over the
    other axes.

    Parameters
    ----------
    dy, s, rstd, weight, ds, axis :
        As in :func:`fastnorm.add_rms_norm_backward`.

    Returns
    -------
    dsum, dweight, dresidual_bias : ndarray
        float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x, r = np.random.default_rng(0).standard_normal((2, 4, 8))
    >>> y, s, rstd = reference.add_rms_norm(x, r)
    >>> [g.shape for g in reference.add_rms_norm_backward(np.ones_like(y), s, rstd)]
    [(4, 8), (8,), (8,)]
    """
    dsum, dweight = rms_norm_backward(dy, s, rstd, weight, axis=axis)
    if ds is not None:
        dsum = dsum + np.asarray(ds, dtype=np.float64)
    return dsum, dweight, _sum_others(dsum, axis)


def ada_layer_norm(x, shift, scale, eps=1e-6):
    """Adaptive LayerNorm in float64 (docs/numerics.md §4).

    ``y = layer_norm(x) * (1 + scale[:, None, :]) + shift[:, None, :]``.

    Parameters
    ----------
    x : array, shape ``(N, ..., D)``
    shift, scale : array, shape ``(N, D)``
    eps : float, default 1e-6

    Returns
    -------
    y : ndarray
        x's shape, float64.
    mean, rstd : ndarray
        ``x.shape[:-1]``, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> rng = np.random.default_rng(0)
    >>> y, mean, rstd = reference.ada_layer_norm(rng.standard_normal((2, 3, 8)),
    ...                                          np.zeros((2, 8)), np.zeros((2, 8)))
    >>> y.shape, mean.shape
    ((2, 3, 8), (2, 3))
    """
    x = np.asarray(x, dtype=np.float64)
    y, mean, rstd = layer_norm(x, axis=-1, eps=eps)
    per_sample = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
    scale = np.asarray(scale, dtype=np.float64).reshape(per_sample)
    shift = np.asarray(shift, dtype=np.float64).reshape(per_sample)
    return y * (1.0 + scale) + shift, mean, rstd


def ada_layer_norm_backward(dy, x, mean, rstd, scale):
    """Gradients of adaptive LayerNorm in float64 (docs/numerics.md §4).

    ``dx = NB(dy * (1 + scale))``, ``dshift[n] = sum_t dy``,
    ``dscale[n] = sum_t dy * xhat``.

    Parameters
    ----------
    dy, x, mean, rstd, scale :
        As in :func:`fastnorm.ada_layer_norm_backward`.

    Returns
    -------
    dx, dshift, dscale : ndarray
        float64; dshift and dscale of shape ``(N, D)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> rng = np.random.default_rng(0)
    >>> x, scale = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 8))
    >>> y, mean, rstd = reference.ada_layer_norm(x, np.zeros((2, 8)), scale)
    >>> [g.shape for g in reference.ada_layer_norm_backward(np.ones_like(y), x, mean, rstd, scale)]
    [(2, 3, 8), (2, 8), (2, 8)]
    """
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
    """GroupNorm in float64 (docs/numerics.md §5).

    Per sample and group of channels, ``(x - mean) / sqrt(var + eps)``, then
    ``* weight[c] + bias[c]``.

    Parameters
    ----------
    x, num_groups, weight, bias, eps, axis :
        As in :func:`fastnorm.group_norm`.

    Returns
    -------
    y : ndarray
        x's shape, float64.
    mean, rstd : ndarray
        Shape ``(N, num_groups)``, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> y, mean, rstd = reference.group_norm(np.ones((2, 4, 3, 3)), 2, eps=1.0)
    >>> float(np.abs(y).max()), mean.shape
    (0.0, (2, 2))
    """
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
    """Gradients of GroupNorm in float64, by the NB formula per (sample, group).

    ``dx = NB(dy * weight[c])`` per group; ``dweight[c] = sum(dy * xhat)``,
    ``dbias[c] = sum(dy)``.

    Parameters
    ----------
    dy, x, mean, rstd, weight, axis :
        As in :func:`fastnorm.group_norm_backward`.

    Returns
    -------
    dx, dweight, dbias : ndarray
        float64; dweight and dbias per channel.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x = np.random.default_rng(0).standard_normal((2, 4, 3, 3))
    >>> y, mean, rstd = reference.group_norm(x, 2)
    >>> [g.shape for g in reference.group_norm_backward(np.ones_like(x), x, mean, rstd)]
    [(2, 4, 3, 3), (4,), (4,)]
    """
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
    """BatchNorm in float64 (docs/numerics.md §7).

    ``y = (x - mean[c]) / sqrt(var[c] + eps) * weight[c] + bias[c]`` with the batch's
    statistics (training) or the running ones; training also computes the
    updated running statistics (momentum as in PyTorch, the variance unbiased).

    Parameters
    ----------
    x, running_mean, running_var, weight, bias, training, momentum, eps, axis :
        As in :func:`fastnorm.batch_norm`; the running statistics are not modified.

    Returns
    -------
    y : ndarray
        x's shape, float64.
    mean, rstd : ndarray
        Per channel, as used.
    new_running_mean, new_running_var : ndarray or None
        The updated running statistics; None when not given.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x = np.random.default_rng(0).standard_normal((8, 3, 2, 2))
    >>> y, mean, rstd, rm, rv = reference.batch_norm(x, np.zeros(3), np.ones(3), training=True)
    >>> bool(np.allclose(rm, 0.1 * mean)), rv.shape
    (True, (3,))
    """
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
    """Gradients of BatchNorm in float64 (docs/numerics.md §7).

    Training: ``dx = NB(dy * weight[c])`` per channel; eval:
    ``dx = dy * weight[c] * rstd[c]``. ``dweight[c] = sum(dy * xhat)``,
    ``dbias[c] = sum(dy)``.

    Parameters
    ----------
    dy, x, mean, rstd, weight, training, axis :
        As in :func:`fastnorm.batch_norm_backward`.

    Returns
    -------
    dx, dweight, dbias : ndarray
        float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> x = np.random.default_rng(0).standard_normal((8, 3, 2, 2))
    >>> y, mean, rstd, _, _ = reference.batch_norm(x, training=True)
    >>> grads = reference.batch_norm_backward(np.ones_like(x), x, mean, rstd, training=True)
    >>> [g.shape for g in grads]
    [(8, 3, 2, 2), (3,), (3,)]
    """
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
    """InstanceNorm with the input's statistics, in float64 (docs/numerics.md §6).

    GroupNorm with one group per channel.

    Parameters
    ----------
    x, weight, bias, eps, axis :
        As in :func:`fastnorm.instance_norm`.

    Returns
    -------
    y : ndarray
        x's shape, float64.
    mean, rstd : ndarray
        Shape ``(N, C)``, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> y, mean, rstd = reference.instance_norm(np.random.default_rng(0).standard_normal((2, 3, 4, 4)))
    >>> mean.shape
    (2, 3)
    """
    C = np.shape(x)[axis]
    return group_norm(x, C, weight, bias, eps=eps, axis=axis)


def batch_layer_norm(x, weight=None, bias=None, eps=1e-3, batch_size=None,
                     batch_mean=None, batch_var=None):
    """Batch Layer Normalization in float64 (docs/numerics.md §8).

    ``y = weight * (a * x_f + b * x_b) / sqrt(D) + bias`` for x of shape ``(B, ..., D)``;
    ``batch_mean`` / ``batch_var`` replace the mini-batch statistics of the batch
    branch when given (population statistics).

    Parameters
    ----------
    x, weight, bias, eps, batch_size :
        As in :func:`fastnorm.batch_layer_norm`.
    batch_mean, batch_var : array of shape ``x.shape[1:]``, optional
        Population statistics of the batch branch.

    Returns
    -------
    y : ndarray
        x's shape, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> reference.batch_layer_norm(np.random.default_rng(0).standard_normal((4, 8))).shape
    (4, 8)
    """
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
    """Switchable Normalization in float64 (docs/numerics.md §9).

    Instance, layer and batch statistics mixed by the softmax of the logits;
    ``bn_mean`` / ``bn_var`` (per channel) replace the batch statistics when given
    (eval mode).

    Parameters
    ----------
    x, weight, bias, mean_weight, var_weight, eps, axis :
        As in :func:`fastnorm.switch_norm`.
    bn_mean, bn_var : array of shape ``(C,)``, optional
        Running statistics for the BN part.

    Returns
    -------
    y : ndarray
        x's shape, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> reference.switch_norm(np.random.default_rng(0).standard_normal((2, 3, 4, 4))).shape
    (2, 3, 4, 4)
    """
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
    """Weight normalization in float64 (docs/numerics.md §10).

    ``w = g * v / sqrt(sum(v^2) + eps)``, the sum over every axis but ``axis``.

    Parameters
    ----------
    v, g, axis, eps :
        As in :func:`fastnorm.weight_norm`.

    Returns
    -------
    w : ndarray
        v's shape, float64.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> reference.weight_norm(np.array([[3.0, 4.0]]), np.array([10.0]))
    array([[6., 8.]])
    """
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
    """Gradients of weight normalization in float64 (docs/numerics.md §10).

    ``dg = sum(dw * v) / ||v||``, ``dv = (g / ||v||) * dw - (g * dg / ||v||^2) * v``.

    Parameters
    ----------
    dw, v, g, axis, eps :
        As in :func:`fastnorm.weight_norm_backward`.

    Returns
    -------
    dv : ndarray
        v's shape, float64.
    dg : ndarray
        Flat: one value per index of ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import reference
    >>> dv, dg = reference.weight_norm_backward(np.ones((1, 2)), np.array([[3.0, 4.0]]), np.array([1.0]))
    >>> dg
    array([1.4])
    """
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
