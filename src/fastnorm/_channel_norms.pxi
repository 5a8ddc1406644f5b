# Included by _channel.pxi: the channel normalizers -- group, instance and
# batch normalization, their backwards, and channel_moments.
#
# Each function checks each argument once, in the order of its signature
# (nothing is written before the checks pass), views x as a C-contiguous
# (S, R, C, L) block -- samples, rows, channels, contiguous elements per
# channel -- and calls the C stages with the GIL released. NCHW and
# channels-last data are both used in place: only a non-contiguous x is
# copied. Running statistics are updated in place, and only after the kernels
# have succeeded.

# --------------------------------------------------------------------------
# The normalizers
# --------------------------------------------------------------------------

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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _ndim_check(xa)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa), "axis")
    cdef ChannelDims d = _channel_dims(xa, k, True)
    cdef int64_t G = _group_count(num_groups, d.C)
    cdef double e = _check_eps(eps)
    cdef int nt = _resolve_threads(num_threads)
    cdef cnp.ndarray xc = _c_block(xa)
    w = _channel_param(weight, d.C, xa, "weight")
    b = _channel_param(bias, d.C, xa, "bias")
    out = _out_arg(out, xa)
    cdef cnp.ndarray y = _write_target(out, xc, (xc, w, b))
    mean, rstd, _ = _input_statistics(xc, d, G, w, b, e, y, True, False, nt)
    return _result(_finish(y, out), mean, rstd, return_stats)


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _ndim_check(xa)
    shape = _shape(xa)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), shape, "axis")
    if mean is None:
        raise TypeError("mean is required (the statistics the forward returned)")
    ms = (<object>mean).shape if type(mean) is np.ndarray else np.shape(mean)
    if len(ms) != 2 or ms[0] != shape[0]:
        raise ValueError(f"mean must have shape (N, num_groups) = ({shape[0]}, G), got {ms}")
    C = shape[k]
    G = ms[1]
    if not _groups_split(G, C):
        raise ValueError(f"mean must have shape (N, num_groups) with num_groups in [1, C] "
                         f"dividing C={C}, got {ms}")
    _channel_param(bias, C, xa, "bias")
    return _group_backward(dy, xa, mean, rstd, weight, bias, G, k, True, num_threads,
                           (shape[0], G))


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _ndim_check(xa)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa), "axis")
    cdef ChannelDims d = _channel_dims(xa, k, False)
    cdef int64_t C = d.C
    cdef bint train = _training_arg(training)
    rm = _running_arg(running_mean, C, xa, "running_mean")
    rv = _running_arg(running_var, C, xa, "running_var")
    _running_pair(rm, rv)
    cdef double m = _momentum_arg(momentum)
    cdef double e = _check_eps(eps)
    cdef int nt = _resolve_threads(num_threads)
    cdef cnp.ndarray xc = _c_block(xa)
    w = _channel_param(weight, C, xa, "weight")
    b = _channel_param(bias, C, xa, "bias")
    out = _out_arg(out, xa)
    cdef int64_t M = d.R * d.L
    cdef cnp.ndarray y
    if not train:
        if rm is None or rv is None:
            raise ValueError("running_mean and running_var are required when training=False")
        return _frozen_forward(xa, xc, d, out, w, b, rm, rv, e, nt, return_stats)
    if M == 1:
        raise ValueError(
            f"x must have more than 1 value per channel when training, got shape {_shape(xa)}"
        )
    _out_apart(out, rm, rv)
    if cnp.PyArray_SIZE(xa) == 0:  # as PyTorch: an empty result, running statistics untouched
        nan = np.full(C, np.nan, _param_dtype(xa))
        return _result(out if out is not None else _empty_data(xa), nan, nan, return_stats)
    y = _write_target(out, xc, (xc, w, b, rm, rv))
    mean, rstd, var = _input_statistics(xc, d, C, w, b, e, y, False, True, nt)
    if rm is not None:  # in float64 from the float32 statistics
        _update_running_stats(rm, rv, mean, var, M, m)
    return _result(_finish(y, out), mean, rstd, return_stats)


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _ndim_check(xa)
    cdef bint train = _training_arg(training)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa), "axis")
    cdef int64_t C = cnp.PyArray_DIMS(xa)[k]
    _channel_param(bias, C, xa, "bias")
    if train:
        return _group_backward(dy, xa, mean, rstd, weight, bias, C, k, False, num_threads,
                               (C,))
    return _frozen_backward_checked(dy, xa, k, mean, rstd, weight, bias, num_threads)


cdef tuple _frozen_backward_checked(object dy, cnp.ndarray xa, int k, object mean,
                                    object rstd, object weight, object bias,
                                    object num_threads):
    """The backward with running statistics, after x, axis and bias are checked."""
    cdef ChannelDims d = _channel_dims(xa, k, False)
    cdef cnp.ndarray xc = _c_block(xa)
    cdef cnp.ndarray dya = _c_block(_check_like(dy, xa, "dy"))
    cdef int ptype = _param_typenum(xa)
    cdef cnp.ndarray m = _statistics_arg(mean, (d.C,), ptype, "mean")
    cdef cnp.ndarray r = _statistics_arg(rstd, (d.C,), ptype, "rstd")
    w = _channel_param(weight, d.C, xa, "weight")
    return _frozen_backward(dya, xa, xc, d, m, r, w, weight, bias,
                            _resolve_threads(num_threads))


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _ndim_check(xa)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa), "axis")
    cdef ChannelDims d = _channel_dims(xa, k, True)
    cdef int64_t C = d.C
    cdef bint train = _training_arg(training)
    rm = _running_arg(running_mean, C, xa, "running_mean")
    rv = _running_arg(running_var, C, xa, "running_var")
    _running_pair(rm, rv)
    cdef double m = _momentum_arg(momentum)
    cdef double e = _check_eps(eps)
    cdef int nt = _resolve_threads(num_threads)
    w = _channel_param(weight, C, xa, "weight")
    b = _channel_param(bias, C, xa, "bias")
    out = _out_arg(out, xa)
    cdef cnp.ndarray xc = _c_block(xa)
    if not (train or rm is None):
        return _frozen_forward(xa, xc, d, out, w, b, rm, rv, e, nt, return_stats)
    cdef int64_t M = d.R * d.L  # values per (sample, channel)
    if train and M == 1:
        raise ValueError(
            f"x must have more than 1 spatial element per channel when training, "
            f"got shape {_shape(xa)}"
        )
    if train:
        _out_apart(out, rm, rv)
    if cnp.PyArray_SIZE(xa) == 0:  # as PyTorch: an empty result, running statistics untouched
        nan = np.full((d.S, C), np.nan, _param_dtype(xa))
        return _result(out if out is not None else _empty_data(xa), nan, nan, return_stats)
    cdef cnp.ndarray y = _write_target(out, xc, (xc, w, b, rm, rv))
    mean, rstd, var = _input_statistics(xc, d, C, w, b, e, y, True, True, nt)
    if train and rm is not None:
        _update_running_stats(rm, rv, mean.astype(np.float64).mean(axis=0),
                              var.astype(np.float64).mean(axis=0), M, m)
    return _result(_finish(y, out), mean, rstd, return_stats)


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _ndim_check(xa)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa), "axis")
    cdef int64_t C = cnp.PyArray_DIMS(xa)[k]
    _channel_param(bias, C, xa, "bias")
    if np.ndim(mean) == 2:
        return _group_backward(dy, xa, mean, rstd, weight, bias, C, k, True, num_threads,
                               (cnp.PyArray_DIMS(xa)[0], C))
    return _frozen_backward_checked(dy, xa, k, mean, rstd, weight, bias, num_threads)


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    cdef int k = _moments_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa))
    cdef int nt = _resolve_threads(num_threads)
    return _moments_of(_c_block(xa), _channel_dims(xa, k, False), nt)
