# Included by _channel.pxi: batch-layer normalization and its backward, one
# C call each (fastnorm_batch_layer_norm_*, driver_batch_layer_impl.h).

cdef object _bln_stats_type = None  # fastnorm._family's BatchLayerNormStats, once imported


cdef object _batch_layer_stats_type():
    global _bln_stats_type
    if _bln_stats_type is None:
        from fastnorm._family import BatchLayerNormStats
        _bln_stats_type = BatchLayerNormStats
    return _bln_stats_type


cdef int64_t _mixing_batch_size(object batch_size, int64_t B) except -1:
    """The B of the mixing constants: batch_size (a positive int) or, for
    None, the batch's size."""
    if batch_size is None:
        return B
    if not _is_index(batch_size) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return min(int(batch_size), 9223372036854775807)


cdef bint _stat_source(object v, str name) except -1:
    if v not in ("population", "batch"):
        raise ValueError(f"{name} must be 'population' or 'batch', got {v!r}")
    return v == "population"


cdef object _running_shaped(object a, tuple shape, cnp.ndarray x, str name):
    """A running statistic of this shape, updated in place (see _running_arg)."""
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), "
                        f"got {type(a).__name__}")
    if _shape(<cnp.ndarray>a) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {_shape(<cnp.ndarray>a)}")
    _running_dtype_check(<cnp.ndarray>a, x, name)
    if not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a):
        raise ValueError(f"{name} is read-only")
    return a


cdef int _bln_ndim_check(cnp.ndarray x) except -1:
    if cnp.PyArray_NDIM(x) < 2:
        raise ValueError(f"x must be (B, ..., D) with at least two axes, got shape {_shape(x)}")
    return 0


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    _bln_ndim_check(xa)
    cdef int nd = cnp.PyArray_NDIM(xa)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(xa)
    cdef int64_t samples = dims[0], D = dims[nd - 1], M = 1, F
    cdef int j
    for j in range(1, nd - 1):
        M *= dims[j]
    F = M * D
    fshape = _shape(xa)[1:]
    cdef bint train = _training_arg(training)
    cdef int64_t mix_n = _mixing_batch_size(batch_size, samples)
    w = _channel_param(weight, D, xa, "weight")
    b = _channel_param(bias, D, xa, "bias")
    rm = _running_shaped(running_mean, fshape, xa, "running_mean")
    rv = _running_shaped(running_var, fshape, xa, "running_var")
    cdef double m = _momentum_arg(momentum)
    cdef double e = _check_eps(eps)
    cdef int nt = _resolve_threads(num_threads)
    # checked in training too (as the layer checks them when built), used only in eval
    cdef bint pop_mean = _stat_source(inference_mean, "inference_mean")
    cdef bint pop_var = _stat_source(inference_var, "inference_var")
    cdef bint frozen_mean = False, frozen_var = False
    if not train:
        frozen_mean, frozen_var = pop_mean, pop_var
        if frozen_mean and rm is None:
            raise ValueError("inference_mean='population' needs running_mean")
        if frozen_var and rv is None:
            raise ValueError("inference_var='population' needs running_var")
    out = _out_arg(out, xa)
    if train:
        _out_apart(out, rm, rv)
    cdef cnp.ndarray xc = _c_block(xa)
    cdef cnp.ndarray y
    if (out is not None and cnp.PyArray_ISCARRAY(<cnp.ndarray>out)
            and not _any_overlap(<cnp.ndarray>out, (xc, w, b, rm, rv), None)):
        y = <cnp.ndarray>out
    else:
        y = _empty_data(xa)
    cdef cnp.ndarray fmean = cnp.PyArray_EMPTY(nd - 1, dims, _param_typenum(xa), 0)
    cdef cnp.ndarray frstd = cnp.PyArray_EMPTY(nd - 1, dims, _param_typenum(xa), 0)
    cdef cnp.ndarray mu_used = _new_doubles(1, F, 0), rstd_b = _new_doubles(1, F, 0)
    cdef cnp.ndarray center = _new_doubles(1, F, 0), bvar = _new_doubles(1, F, 0)
    cdef cnp.ndarray rm64 = None, rv64 = None
    if frozen_mean:
        rm64 = np.require(rm.reshape(-1), np.float64, ("C_CONTIGUOUS", "ALIGNED"))
    if frozen_var:
        rv64 = np.require(rv.reshape(-1), np.float64, ("C_CONTIGUOUS", "ALIGNED"))
    cdef BatchLayerStats s
    s.feature_mean, s.feature_rstd = _data(fmean), _data(frstd)
    s.batch_mean, s.batch_rstd = _doubles(mu_used), _doubles(rstd_b)
    s.batch_center, s.batch_var = _doubles(center), _doubles(bvar)
    cdef int kind = _dtype_code(xc), rc
    cdef char *xp = _data(xc)
    cdef char *yp = _data(y)
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    cdef double *rmp = NULL if rm64 is None else _doubles(rm64)
    cdef double *rvp = NULL if rv64 is None else _doubles(rv64)
    with nogil:
        rc = _call_batch_layer_norm(kind, samples, M, D, xp, yp, wp, bp, mix_n, rmp, rvp, e, s, nt)
    _channel_error(rc)
    if train and samples > 0:
        if rm is not None:
            rm[...] = ((1.0 - m) * rm.astype(np.float64) + m * center.reshape(fshape))
        if rv is not None and samples > 1:
            rv[...] = ((1.0 - m) * rv.astype(np.float64)
                       + m * (bvar * (samples / (samples - 1.0))).reshape(fshape))
    result = _finish(y, out)
    if not return_stats:
        return result
    stats_batch = samples if batch_size is None else int(batch_size)
    return result, _batch_layer_stats_type()(
        fmean, frstd, mu_used.reshape(fshape), rstd_b.reshape(fshape), center.reshape(fshape),
        frozen_mean, frozen_var, stats_batch)


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
    cdef cnp.ndarray xa = _as_data(x, "x")
    if not isinstance(stats, _batch_layer_stats_type()):
        raise TypeError("stats must be the BatchLayerNormStats that batch_layer_norm returned")
    _bln_ndim_check(xa)
    cdef int nd = cnp.PyArray_NDIM(xa)
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(xa)
    cdef int64_t samples = dims[0], D = dims[nd - 1], M = 1
    cdef int j
    for j in range(1, nd - 1):
        M *= dims[j]
    cdef cnp.ndarray dya = _c_block(_check_like(dy, xa, "dy"))
    w = _channel_param(weight, D, xa, "weight")
    _channel_param(bias, D, xa, "bias")
    cdef int nt = _resolve_threads(num_threads)
    bs = stats.batch_size
    if not _is_index(bs):
        raise TypeError(f"stats.batch_size must be an int, got {type(bs).__name__}")
    if bs < 0 or (bs == 0 and samples > 0):
        raise ValueError(f"stats.batch_size must be positive, got {bs!r}")
    cdef int64_t mix_n = min(int(bs), 9223372036854775807)
    shape = _shape(xa)
    fshape = shape[1:]
    cdef int ptype = _param_typenum(xa), f64 = cnp.NPY_DOUBLE
    cdef cnp.ndarray fmean = _stats_field(stats, "feature_mean", shape[:-1], ptype)
    cdef cnp.ndarray frstd = _stats_field(stats, "feature_rstd", shape[:-1], ptype)
    cdef cnp.ndarray mu = _stats_field(stats, "batch_mean", fshape, f64)
    cdef cnp.ndarray r = _stats_field(stats, "batch_rstd", fshape, f64)
    cdef cnp.ndarray center = _stats_field(stats, "batch_center", fshape, f64)
    cdef bint frozen_mean = _stats_flag(stats, "frozen_mean")
    cdef bint frozen_var = _stats_flag(stats, "frozen_var")
    if cnp.PyArray_SIZE(xa) == 0:  # as the other backward functions: empty dx, zero parameter gradients
        zero = np.zeros(D, _param_dtype(xa))
        return (_empty_data(xa),
                _grad_like(zero if weight is not None else None, weight, xa),
                _grad_like(zero.copy() if bias is not None else None, bias, xa))
    cdef cnp.ndarray xc = _c_block(xa)
    cdef cnp.ndarray dx = _empty_data(xc)
    cdef cnp.ndarray dwt = _empty_params(xc, 1, D, 0) if weight is not None else None
    cdef cnp.ndarray dbt = _empty_params(xc, 1, D, 0) if bias is not None else None
    cdef BatchLayerStats s
    s.feature_mean, s.feature_rstd = _data(fmean), _data(frstd)
    s.batch_mean, s.batch_rstd = _doubles(mu), _doubles(r)
    s.batch_center, s.batch_var = _doubles(center), NULL
    cdef int kind = _dtype_code(xc), rc
    cdef char *dyp = _data(dya)
    cdef char *xp = _data(xc)
    cdef char *wp = _data_ptr(w)
    cdef char *dxp = _data(dx)
    cdef char *dwp = _data_ptr(dwt)
    cdef char *dbp = _data_ptr(dbt)
    with nogil:
        rc = _call_batch_layer_norm_backward(kind, samples, M, D, dyp, xp, wp, mix_n, s, frozen_mean,
                                             frozen_var, dxp, dwp, dbp, nt)
    _channel_error(rc)
    return dx, _grad_like(dwt, weight, xa), _grad_like(dbt, bias, xa)
