# Included by _channel.pxi: switchable normalization and its backward, one
# C call each (fastnorm_switch_norm_*, driver_switch_impl.h).

cdef object _stats_types = None  # fastnorm._family's SwitchNormStats, once imported


cdef object _switch_stats_type():
    global _stats_types
    if _stats_types is None:
        from fastnorm._family import SwitchNormStats
        _stats_types = SwitchNormStats
    return _stats_types


cdef cnp.ndarray _softmax(cnp.ndarray v):
    e = np.exp(v - v.max())
    return e / e.sum()


cdef cnp.ndarray _logits(object v, str name):
    """Mixing logits (IN, LN, BN) as three float64 values; None: equal weights."""
    if v is None:
        return np.zeros(3)  # equal weights (softmax of ones)
    cdef cnp.ndarray a = np.asarray(v)
    if not (_has_float_dtype(a) or a.dtype.kind in "iu"):
        raise TypeError(f"{name} must be a real array of 3 values, got dtype {a.dtype}")
    if _shape(a) != (3,):
        raise ValueError(f"{name} must have shape (3,) (IN, LN, BN), got {_shape(a)}")
    return a.astype(np.float64)


cdef object _logit_grad(object grad, object logits, cnp.ndarray x):
    """The mixing logits' gradient: in the logits' dtype, or x's computing
    dtype when they were left at None (the gradient at equal logits)."""
    if logits is None:
        return np.asarray(grad).astype(_param_dtype(x))
    return _grad_like(grad, logits, x)


cdef cnp.ndarray _stats_field(object stats, str field, tuple shape, int typenum):
    """One array field of a stats tuple, checked as the forward's statistics
    are; messages name stats.<field>."""
    return _statistics_arg(getattr(stats, field), shape, typenum, f"stats.{field}")


cdef bint _stats_flag(object stats, str field) except -1:
    v = getattr(stats, field)
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"stats.{field} must be a bool, got {type(v).__name__}")
    return bool(v)


cdef inline double *_doubles(cnp.ndarray a):
    return <double *>cnp.PyArray_DATA(a)


cdef inline cnp.ndarray _new_doubles(int nd, cnp.npy_intp d0, cnp.npy_intp d1):
    cdef cnp.npy_intp dims[2]
    dims[0] = d0
    dims[1] = d1
    return cnp.PyArray_EMPTY(nd, dims, cnp.NPY_DOUBLE, 0)


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _ndim_check(xa)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa), "axis")
    cdef ChannelDims d = _channel_dims(xa, k, True)
    cdef int64_t C = d.C, N = d.S
    cdef bint train = _training_arg(training)
    cdef cnp.ndarray wm = _softmax(_logits(mean_weight, "mean_weight"))
    cdef cnp.ndarray wv = _softmax(_logits(var_weight, "var_weight"))
    w = _channel_param(weight, C, xa, "weight")
    b = _channel_param(bias, C, xa, "bias")
    rm = _running_arg(running_mean, C, xa, "running_mean")
    rv = _running_arg(running_var, C, xa, "running_var")
    _running_pair(rm, rv)
    if not train and rm is None:
        raise ValueError("running_mean and running_var are required when training=False")
    cdef double m = _momentum_arg(momentum)
    cdef double e = _check_eps(eps)
    cdef int nt = _resolve_threads(num_threads)
    out = _out_arg(out, xa)
    cdef cnp.ndarray xc = _c_block(xa)
    cdef int64_t M = d.R * d.L  # values per (sample, channel)
    if train and N * M == 1:
        raise ValueError(
            f"x must have more than 1 value per channel when training, got shape {_shape(xa)}"
        )
    if train:
        _out_apart(out, rm, rv)
    stats_type = _switch_stats_type()
    if cnp.PyArray_SIZE(xa) == 0:  # as batch and instance norm: an empty result, running statistics untouched
        y = out if out is not None else _empty_data(xa)
        if not return_stats:
            return y
        def nan(*shape):
            return np.full(shape, np.nan)
        return y, stats_type(nan(N, C), nan(N, C), nan(N, C), nan(N, C), nan(N), nan(N),
                             nan(C), nan(C), bool(train))
    cdef cnp.ndarray yt = _write_target(out, xc, (xc, w, b, rm, rv))
    cdef cnp.ndarray mean = _new_doubles(2, N, C), rstd = _new_doubles(2, N, C)
    cdef cnp.ndarray m_in = _new_doubles(2, N, C), v_in = _new_doubles(2, N, C)
    cdef cnp.ndarray m_ln = _new_doubles(1, N, 0), v_ln = _new_doubles(1, N, 0)
    cdef cnp.ndarray m_bn = _new_doubles(1, C, 0), v_bn = _new_doubles(1, C, 0)
    cdef cnp.ndarray rm64 = None, rv64 = None
    if not train:
        rm64, rv64 = rm.astype(np.float64), rv.astype(np.float64)
    cdef SwitchStats s
    s.mean, s.rstd = _doubles(mean), _doubles(rstd)
    s.in_mean, s.in_var = _doubles(m_in), _doubles(v_in)
    s.ln_mean, s.ln_var = _doubles(m_ln), _doubles(v_ln)
    s.bn_mean, s.bn_var = _doubles(m_bn), _doubles(v_bn)
    cdef int kind = _dtype_code(xc), rc
    cdef char *xp = _data(xc)
    cdef char *yp = _data(yt)
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    cdef double *wmp = _doubles(wm)
    cdef double *wvp = _doubles(wv)
    cdef double *rmp = NULL if rm64 is None else _doubles(rm64)
    cdef double *rvp = NULL if rv64 is None else _doubles(rv64)
    with nogil:
        rc = _call_switch_norm(kind, d, xp, yp, wp, bp, wmp, wvp, rmp, rvp, e, s, nt)
    _channel_error(rc)
    if train and rm is not None:
        _update_running_stats(rm, rv, m_bn, v_bn, N * M, m)
    y = _finish(yt, out)
    if not return_stats:
        return y
    return y, stats_type(mean, rstd, m_in, v_in, m_ln, v_ln, m_bn, v_bn, bool(train))


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    if not isinstance(stats, _switch_stats_type()):
        raise TypeError("stats must be the SwitchNormStats that switch_norm returned")
    _ndim_check(xa)
    cdef int k = _channel_axis_of(axis, cnp.PyArray_NDIM(xa), _shape(xa), "axis")
    cdef ChannelDims d = _channel_dims(xa, k, True)
    cdef int64_t C = d.C, N = d.S
    cdef cnp.ndarray xc = _c_block(xa)
    cdef cnp.ndarray dya = _c_block(_check_like(dy, xa, "dy"))
    w = _channel_param(weight, C, xa, "weight")
    _channel_param(bias, C, xa, "bias")
    cdef cnp.ndarray wm = _softmax(_logits(mean_weight, "mean_weight"))
    cdef cnp.ndarray wv = _softmax(_logits(var_weight, "var_weight"))
    cdef int nt = _resolve_threads(num_threads)
    cdef int f64 = cnp.NPY_DOUBLE
    cdef SwitchStats s
    cdef cnp.ndarray mean = _stats_field(stats, "mean", (N, C), f64)
    cdef cnp.ndarray rstd = _stats_field(stats, "rstd", (N, C), f64)
    cdef cnp.ndarray m_in = _stats_field(stats, "in_mean", (N, C), f64)
    cdef cnp.ndarray v_in = _stats_field(stats, "in_var", (N, C), f64)
    cdef cnp.ndarray m_ln = _stats_field(stats, "ln_mean", (N,), f64)
    cdef cnp.ndarray v_ln = _stats_field(stats, "ln_var", (N,), f64)
    cdef cnp.ndarray m_bn = _stats_field(stats, "bn_mean", (C,), f64)
    cdef cnp.ndarray v_bn = _stats_field(stats, "bn_var", (C,), f64)
    cdef bint batch_stats = _stats_flag(stats, "batch_stats")
    if cnp.PyArray_SIZE(xa) == 0:  # nothing flows back: zero parameter gradients
        zc = np.zeros(C)
        return (_empty_data(xa), _grad_like(zc, weight, xa), _grad_like(zc, bias, xa),
                _logit_grad(np.zeros(3), mean_weight, xa),
                _logit_grad(np.zeros(3), var_weight, xa))
    s.mean, s.rstd = _doubles(mean), _doubles(rstd)
    s.in_mean, s.in_var = _doubles(m_in), _doubles(v_in)
    s.ln_mean, s.ln_var = _doubles(m_ln), _doubles(v_ln)
    s.bn_mean, s.bn_var = _doubles(m_bn), _doubles(v_bn)
    # rstd**3 by NumPy's power, whose result (a SIMD library's on some
    # machines) C's pow does not reproduce bit for bit
    cdef cnp.ndarray rstd3 = rstd ** 3
    cdef cnp.ndarray dx = _empty_data(xc)
    cdef cnp.ndarray dwd = _new_doubles(1, C, 0) if weight is not None else None
    cdef cnp.ndarray dbd = _new_doubles(1, C, 0) if bias is not None else None
    cdef cnp.ndarray dwm = _new_doubles(1, 3, 0), dwv = _new_doubles(1, 3, 0)
    cdef int kind = _dtype_code(xc), rc
    cdef char *dyp = _data(dya)
    cdef char *xp = _data(xc)
    cdef char *wp = _data_ptr(w)
    cdef char *dxp = _data(dx)
    cdef double *wmp = _doubles(wm)
    cdef double *wvp = _doubles(wv)
    cdef double *r3p = _doubles(rstd3)
    cdef double *dwp = NULL if dwd is None else _doubles(dwd)
    cdef double *dbp = NULL if dbd is None else _doubles(dbd)
    cdef double *dwmp = _doubles(dwm)
    cdef double *dwvp = _doubles(dwv)
    with nogil:
        rc = _call_switch_norm_backward(kind, d, dyp, xp, wp, wmp, wvp, s, batch_stats, r3p,
                                        dxp, dwp, dbp, dwmp, dwvp, nt)
    _channel_error(rc)
    pt = _param_dtype(xa)
    dweight = dwd.astype(pt) if dwd is not None else None
    dbias = dbd.astype(pt) if dbd is not None else None
    return (dx, _grad_like(dweight, weight, xa), _grad_like(dbias, bias, xa),
            _logit_grad(dwm, mean_weight, xa), _logit_grad(dwv, var_weight, xa))
