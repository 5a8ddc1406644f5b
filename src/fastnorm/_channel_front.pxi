# Included by _channel.pxi: the channel normalizers -- group, instance and
# batch normalization, their backwards, and channel_moments -- and the
# argument checks every channel normalizer shares (fastnorm._family, nn and
# dask use them too).
#
# Each function checks each argument once, in the order of its signature
# (nothing is written before the checks pass), views x as a C-contiguous
# (S, R, C, L) block -- samples, rows, channels, contiguous elements per
# channel -- and calls the C stages with the GIL released. NCHW and
# channels-last data are both used in place: only a non-contiguous x is
# copied. Running statistics are updated in place, and only after the kernels
# have succeeded.

# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------

cdef inline bint _is_index(object v):
    """An int or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


cdef object _param_dtype(cnp.ndarray x):
    """The dtype of parameters, statistics and running statistics for data x:
    x's own, float32 for 16-bit data (float16, bfloat16)."""
    if cnp.PyArray_ITEMSIZE(x) > 2:
        return (<object>x).dtype
    return cnp.PyArray_DescrFromType(cnp.NPY_FLOAT)


cdef int _channel_axis_of(object axis, int nd, object shape, str name) except -1:
    """The channel axis of an x of nd dimensions (of this shape, for messages),
    as a non-negative int: any axis but the batch axis 0."""
    cdef int k
    if type(axis) is int and -nd <= axis < nd:  # the common call
        k = <int>axis + nd if axis < 0 else <int>axis
    else:
        if not _is_index(axis):
            raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
        k = _normalize_axes(int(axis), nd)[0]
    if k == 0:
        raise ValueError(
            f"{name} is the channel axis and cannot be the batch axis 0 (x has shape {shape})"
        )
    return k


cdef int _moments_axis_of(object axis, int nd, object shape) except -1:
    """channel_moments' channel axis for an x of nd dimensions, as a
    non-negative int (any axis of an x of one axis or more)."""
    if nd < 1:
        raise ValueError(f"x must have at least one axis (the channel axis), got shape {shape}")
    if not _is_index(axis):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    return _normalize_axes(int(axis), nd)[0]


cdef bint _groups_split(object G, object C) except -1:
    """Whether G groups split C channels: 1 <= G <= C and G divides C. With no
    channels (C = 0) only one group, an empty one, does."""
    return 1 <= G <= max(C, 1) and C % G == 0


cdef int64_t _group_count(object num_groups, int64_t C) except -1:
    """num_groups checked against C channels (see _groups_split)."""
    if type(num_groups) is int and 1 <= num_groups <= C and C % <int64_t>num_groups == 0:
        return <int64_t>num_groups  # the common call
    if not _is_index(num_groups):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    G = int(num_groups)
    if G <= 0:
        raise ValueError(f"num_groups must be positive, got {G}")
    if not _groups_split(G, C):
        raise ValueError(
            f"num_groups={G} must divide the number of channels C={C} and be at most C"
            + (" (with no channels, num_groups must be 1)" if C == 0 else "")
        )
    return <int64_t>G


cdef bint _training_arg(object training) except -1:
    if training is True or training is False:
        return training is True
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    return bool(training)


cdef double _momentum_arg(object momentum) except -1.0:
    cdef double m
    if type(momentum) is float:
        m = <double>momentum
        if 0.0 <= m <= 1.0:
            return m
    if (isinstance(momentum, bool)
            or not isinstance(momentum, (int, float, np.floating, np.integer))):
        raise TypeError(
            f"momentum must be a number in [0, 1], got {type(momentum).__name__} "
            "(the layer classes turn momentum=None into a cumulative average)"
        )
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    return m


cdef object _channel_param(object p, int64_t C, cnp.ndarray x, str name):
    """A per-channel parameter (weight, bias) as a C-contiguous, aligned,
    native array of shape (C,) in the parameter dtype of x; None stays None."""
    if p is None:
        return None
    cdef int t = _param_typenum(x)
    cdef cnp.ndarray a
    if type(p) is np.ndarray:
        a = <cnp.ndarray>p
        if (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_DIM(a, 0) == C
                and cnp.PyArray_TYPE(a) == t and cnp.PyArray_ISNOTSWAPPED(a)
                and cnp.PyArray_ISCARRAY_RO(a)):
            return a
    a = np.asarray(p)
    if not _has_float_dtype(a):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    if cnp.PyArray_NDIM(a) != 1 or cnp.PyArray_DIM(a, 0) != C:
        raise ValueError(
            f"{name} must have shape ({C},) (one value per channel), got {_shape(a)}"
        )
    return np.require(a, _param_dtype(x), ("C_CONTIGUOUS", "ALIGNED"))


cdef cnp.ndarray _statistics_arg(object a, tuple shape, int typenum, str name):
    """Statistics the forward returned (or a field of its stats tuple): a
    floating array of this shape, as a C-contiguous, aligned, native array of
    the type typenum."""
    cdef cnp.ndarray s
    if type(a) is np.ndarray:  # the forward's own statistics
        s = <cnp.ndarray>a
        if (cnp.PyArray_TYPE(s) == typenum and cnp.PyArray_ISNOTSWAPPED(s)
                and cnp.PyArray_ISCARRAY_RO(s) and _shape(s) == shape):
            return s
    if a is None:
        raise TypeError(f"{name} is required (the statistics the forward returned)")
    s = np.asarray(a)
    if not _has_float_dtype(s):
        raise TypeError(f"{name} must be a floating-point array, got dtype {s.dtype}")
    if _shape(s) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {_shape(s)}")
    return np.require(s, cnp.PyArray_DescrFromType(typenum), ("C_CONTIGUOUS", "ALIGNED"))


cdef int _running_dtype_check(cnp.ndarray a, cnp.ndarray x, str name) except -1:
    """A running statistic is updated in place, so it cannot be converted (a
    copy would not be updated): it must have the computing dtype, or float64,
    which holds every value of it (the update is computed in float64 and
    rounded once to the statistic's dtype)."""
    cdef int t = cnp.PyArray_TYPE(a)
    if cnp.PyArray_ISNOTSWAPPED(a) and (t == _param_typenum(x) or t == cnp.NPY_DOUBLE):
        return 0
    if cnp.PyArray_ITEMSIZE(x) == 2:
        raise TypeError(
            f"{name} must have dtype float32 (or float64) for {x.dtype} x, got {a.dtype}: "
            "running statistics are updated in place, in the computing dtype, float32 for "
            "16-bit data, or in float64, so they cannot be converted"
        )
    raise TypeError(f"{name} must have dtype {x.dtype} like x (or float64; it is updated in "
                    f"place), got {a.dtype}")


cdef object _running_arg(object a, int64_t C, cnp.ndarray x, str name):
    """A running statistic, updated in place: shape (C,), the dtype of x's
    parameters (float32 for 16-bit data) or float64, writeable."""
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), "
                        f"got {type(a).__name__}")
    cdef cnp.ndarray r = <cnp.ndarray>a
    if cnp.PyArray_NDIM(r) != 1 or cnp.PyArray_DIM(r, 0) != C:
        raise ValueError(f"{name} must have shape ({C},), got {_shape(r)}")
    _running_dtype_check(r, x, name)
    if not cnp.PyArray_ISWRITEABLE(r):
        raise ValueError(f"{name} is read-only")
    return a


cdef int _running_pair(object rm, object rv) except -1:
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together")
    return 0


cdef object _out_arg(object out, cnp.ndarray x, str name="out", str xname="x"):
    """out checked against data x (named xname): x's shape and dtype, native,
    writeable; None stays None."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not _same_shape(o, x):
        raise ValueError(f"{name} must have the shape of {xname} {_shape(x)}, got {_shape(o)}")
    if cnp.PyArray_TYPE(o) != cnp.PyArray_TYPE(x) or not cnp.PyArray_ISNOTSWAPPED(o):
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname} (native byte order), "
                        f"got {o.dtype}")
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError(f"{name} is read-only")
    return out


cdef int _out_apart(object out, object running_mean, object running_var) except -1:
    """A call that updates running statistics in place refuses an out that
    overlaps them: the statistics would end up holding values of y."""
    if out is not None and (_bytes_meet(<cnp.ndarray>out, running_mean)
                            or _bytes_meet(<cnp.ndarray>out, running_var)):
        raise ValueError("out must not overlap running_mean or running_var (they are "
                         "updated in place by the same call)")
    return 0


cdef object _grad_like(object grad, object param, cnp.ndarray x):
    """A parameter's gradient in the parameter's own floating dtype, in native
    byte order (x's computing dtype -- float32 for 16-bit x -- for a parameter
    given as a list or in a non-float dtype); None stays None."""
    if grad is None or param is None:
        return None
    if isinstance(param, np.ndarray) and _has_float_dtype(<cnp.ndarray>param):
        if type(grad) is np.ndarray and (<object>grad).dtype is (<object>param).dtype:
            return grad  # the common case: nothing to convert
        dt = (<object>param).dtype.newbyteorder("=")
    else:
        dt = _param_dtype(x)
    return np.asarray(grad).astype(dt, copy=False)


# --------------------------------------------------------------------------
# Layout: x as a C-contiguous (S, R, C, L) block
# --------------------------------------------------------------------------

cdef ChannelDims _channel_dims(cnp.ndarray x, int k, bint per_sample):
    """The (S, R, C, L) block of x around channel axis k: per sample (S = the
    batch) or one block (S = 1, the batch among the rows)."""
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(x)
    cdef int nd = cnp.PyArray_NDIM(x), j
    cdef ChannelDims d
    d.C = shape[k]
    d.L = 1
    for j in range(k + 1, nd):
        d.L *= shape[j]
    d.S = shape[0] if per_sample else 1
    d.R = 1
    for j in range(1 if per_sample else 0, k):
        d.R *= shape[j]
    return d


cdef inline cnp.ndarray _c_block(cnp.ndarray x):
    """x as the C-contiguous, aligned array the kernels read, copied only when needed."""
    if cnp.PyArray_ISCARRAY_RO(x):
        return x
    return (<object>x).copy(order="C")


cdef inline char *_data(cnp.ndarray a):
    return <char *>cnp.PyArray_DATA(a)


cdef cnp.ndarray _empty_data(cnp.ndarray x):
    """A new C-contiguous array of x's shape and dtype (its metadata kept)."""
    cdef int t = cnp.PyArray_TYPE(x)
    if <object>cnp.PyArray_DESCR(x) is cnp.PyArray_DescrFromType(t):
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), t, 0)
    return np.empty(_shape(x), (<object>x).dtype)


cdef cnp.ndarray _empty_params(cnp.ndarray x, int nd, cnp.npy_intp d0, cnp.npy_intp d1):
    """A new array of shape (d0,) or (d0, d1) in the parameter type of x."""
    cdef cnp.npy_intp dims[2]
    dims[0] = d0
    dims[1] = d1
    return cnp.PyArray_EMPTY(nd, dims, _param_typenum(x), 0)


cdef cnp.ndarray _write_target(object out, cnp.ndarray xc, tuple sources):
    """The array the kernel writes for the block xc: out itself when it is
    C-contiguous and aligned and either is xc or shares no byte with the
    inputs (sources); otherwise a scratch array copied into out at the end."""
    if out is None:
        return _empty_data(xc)
    cdef cnp.ndarray o = <cnp.ndarray>out
    if cnp.PyArray_ISCARRAY(o):
        # in place over x itself is fine (each element is read before it is
        # written); any other overlap (a shifted x, parameters or running
        # statistics living in out) goes through scratch
        skip = xc if cnp.PyArray_DATA(o) == cnp.PyArray_DATA(xc) else None
        if not _any_overlap(o, sources, skip):
            return o
    return _empty_data(xc)


cdef object _finish(cnp.ndarray target, object out):
    if out is None or target is out:
        return target
    out[...] = target
    return out


cdef inline object _result(object y, object mean, object rstd, object return_stats):
    return (y, mean, rstd) if return_stats else y


# --------------------------------------------------------------------------
# Shared passes
# --------------------------------------------------------------------------

cdef tuple _input_statistics(cnp.ndarray xc, ChannelDims d, int64_t G, object w, object b,
                             double eps, cnp.ndarray y, bint per_sample, bint want_var, int nt):
    """y normalized with the block's own statistics, G groups per sample:
    (mean, rstd, var) in the parameter type, of shape (S, G) per sample, else
    (G,) (var None unless wanted)."""
    cdef cnp.ndarray mean, rstd, var = None
    cdef int nd = 2 if per_sample else 1
    mean = _empty_params(xc, nd, d.S if per_sample else G, G)
    rstd = _empty_params(xc, nd, d.S if per_sample else G, G)
    if want_var:
        var = _empty_params(xc, nd, d.S if per_sample else G, G)
    cdef int kind = _dtype_code(xc), rc
    cdef char *xp = _data(xc)
    cdef char *yp = _data(y)
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    cdef char *mp = _data(mean)
    cdef char *rp = _data(rstd)
    cdef char *vp = _data_ptr(var)
    with nogil:
        rc = _call_group_norm(kind, d, G, xp, yp, wp, bp, eps, mp, rp, vp, nt)
    _channel_error(rc)
    return mean, rstd, var


cdef object _frozen_forward(cnp.ndarray xa, cnp.ndarray xc, ChannelDims d, object out,
                            object w, object b, cnp.ndarray rm, cnp.ndarray rv, double eps,
                            int nt, object return_stats):
    """y normalized per channel with the running statistics (batch norm and
    instance norm in eval mode), written to out when given; with the stats
    (rm as it was, rstd) when return_stats."""
    cdef cnp.ndarray y = _write_target(out, xc, (xc, w, b, rm, rv))
    mean64, rstd64 = _frozen_statistics(rm, rv, eps)
    cdef int kind = _dtype_code(xc), rc
    cdef char *xp = _data(xc)
    cdef char *yp = _data(y)
    cdef double *mp = <double *>_data(mean64)
    cdef double *rp = <double *>_data(rstd64)
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    d.S, d.R = 1, d.S * d.R
    with nogil:
        rc = _call_channel_normalize(kind, d, xp, yp, mp, rp, wp, bp, False, nt)
    _channel_error(rc)
    mean = rstd = None
    if return_stats:  # y is scratch where out holds rm: rm is as it was
        dt = _param_dtype(xa)
        mean, rstd = rm.astype(dt), (<object>rstd64).astype(dt)
    return _result(_finish(y, out), mean, rstd, return_stats)


cdef tuple _frozen_backward(cnp.ndarray dya, cnp.ndarray xa, cnp.ndarray xc, ChannelDims d,
                            cnp.ndarray mean, cnp.ndarray rstd, object w, object weight,
                            object bias, int nt):
    """dx = dy * weight * rstd; dweight = rstd * sum(dy * (x - mean)), dbias =
    sum(dy), summed in float64 and rounded once to the parameter type, with
    per-channel statistics (batch norm / instance norm in eval mode), in one
    pass over dy."""
    cdef int64_t C = d.C, c
    cdef cnp.ndarray dx = _empty_data(xc)
    cdef cnp.npy_intp nc = C
    cdef cnp.ndarray mu = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray coef = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray sum_dy = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray sum_dyx = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef double *m64 = <double *>_data(mu)
    cdef double *c64 = <double *>_data(coef)
    cdef double *sdy = <double *>_data(sum_dy)
    cdef double *sdx = <double *>_data(sum_dyx)
    cdef bint f32 = _param_typenum(xc) == cnp.NPY_FLOAT
    cdef int64_t isz = sizeof(float) if f32 else sizeof(double)
    cdef char *mp = _data(mean)
    cdef char *rp = _data(rstd)
    cdef char *wp = _data_ptr(w)
    for c in range(C):
        m64[c] = _load_real(mp + c * isz, f32)
        c64[c] = _load_real(rp + c * isz, f32)
        if wp != NULL:
            c64[c] = _load_real(wp + c * isz, f32) * c64[c]
    cdef int kind = _dtype_code(xc), rc
    cdef char *dyp = _data(dya)
    cdef char *xp = _data(xc)
    cdef char *dxp = _data(dx)
    d.S, d.R = 1, d.S * d.R
    with nogil:
        rc = _call_channel_sums_scale(kind, d, dyp, xp, m64, sdy, sdx, dxp, c64, nt)
    _channel_error(rc)
    cdef cnp.ndarray dw = None, db = None
    if w is not None:
        dw = _empty_params(xc, 1, C, 0)
        for c in range(C):
            _store_real(_data(dw) + c * isz, f32, sdx[c] * _load_real(rp + c * isz, f32))
    if bias is not None:
        db = _empty_params(xc, 1, C, 0)
        for c in range(C):
            _store_real(_data(db) + c * isz, f32, sdy[c])
    return dx, _grad_like(dw, weight, xa), _grad_like(db, bias, xa)


cdef tuple _group_backward(object dy, cnp.ndarray xa, object mean, object rstd, object weight,
                           object bias, int64_t G, int k, bint per_sample,
                           object num_threads, tuple stats_shape):
    """Gradients of normalization by the block's own statistics, G groups per
    sample (group norm, instance norm, batch norm in training)."""
    cdef ChannelDims d = _channel_dims(xa, k, per_sample)
    cdef cnp.ndarray xc = _c_block(xa)
    cdef cnp.ndarray dya = _c_block(_check_like(dy, xa, "dy"))
    cdef int ptype = _param_typenum(xa)
    cdef cnp.ndarray m = _statistics_arg(mean, stats_shape, ptype, "mean")
    cdef cnp.ndarray r = _statistics_arg(rstd, stats_shape, ptype, "rstd")
    w = _channel_param(weight, d.C, xa, "weight")
    cdef int nt = _resolve_threads(num_threads)
    cdef cnp.ndarray dx = _empty_data(xc)
    cdef cnp.ndarray dw = _empty_params(xc, 1, d.C, 0)
    cdef cnp.ndarray db = _empty_params(xc, 1, d.C, 0)
    if d.C == 0:  # no channels: nothing to compute
        return dx, _grad_like(dw, weight, xa), _grad_like(db, bias, xa)
    cdef int kind = _dtype_code(xc), rc
    cdef char *dyp = _data(dya)
    cdef char *xp = _data(xc)
    cdef char *mp = _data(m)
    cdef char *rp = _data(r)
    cdef char *wp = _data_ptr(w)
    cdef char *dxp = _data(dx)
    cdef char *dwp = _data(dw)
    cdef char *dbp = _data(db)
    with nogil:
        rc = _call_group_norm_backward(kind, d, G, dyp, xp, mp, rp, wp, dxp, dwp, dbp, nt)
    _channel_error(rc)
    return dx, _grad_like(dw, weight, xa), _grad_like(db, bias, xa)


cdef tuple _moments_of(cnp.ndarray xc, ChannelDims d, int nt):
    """(count, mean, M2) of the block per channel, or per (sample, channel)
    for a per-sample block: float64 vectors of length S * C."""
    cdef int64_t n = d.R * d.L
    cdef cnp.npy_intp SC = d.S * d.C
    count = np.full(SC, float(n))
    cdef cnp.ndarray mean = np.full(SC, np.nan)
    cdef cnp.ndarray var = np.zeros(SC)
    cdef int kind = _dtype_code(xc), rc
    cdef char *xp = _data(xc)
    cdef double *mp = <double *>_data(mean)
    cdef double *vp = <double *>_data(var)
    if n > 0 and SC > 0:
        # eps 0: sums of squares that underflow the computing dtype are always
        # computed again in double
        with nogil:
            rc = _call_channel_moments(kind, d, xp, 0.0, mp, vp, nt)
        _channel_error(rc)
    return count, mean, var * n


cdef int _ndim_check(cnp.ndarray x) except -1:
    if cnp.PyArray_NDIM(x) < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {_shape(x)}")
    return 0


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


# --------------------------------------------------------------------------
# The shared checks, for the normalizers assembled in Python (fastnorm._family,
# fastnorm.nn, fastnorm.dask)
# --------------------------------------------------------------------------

def _channel_axis(axis, shape, name="axis"):
    """The channel axis of an x of this shape, as a non-negative int: any axis
    but the batch axis 0."""
    return _channel_axis_of(axis, len(shape), shape, name)


def _moments_axis(axis, shape):
    """channel_moments' channel axis for an x of this shape, as a
    non-negative int (any axis of an x of one axis or more)."""
    return _moments_axis_of(axis, len(shape), shape)


def _groups_fit(G, C):
    """Whether G groups split C channels: 1 <= G <= C and G divides C. With no
    channels (C = 0) only one group, an empty one, does."""
    return _groups_split(G, C)


def _block_dims(cnp.ndarray x not None, int k, bint per_sample):
    """(S, R, C, L) of x around channel axis k, per sample or as one block."""
    cdef ChannelDims d = _channel_dims(x, k, per_sample)
    return d.S, d.R, d.C, d.L


def _block_moments(cnp.ndarray x not None, int64_t S, int64_t R, int64_t C, int64_t L,
                   int num_threads):
    """(count, mean, M2) of the C-contiguous (S, R, C, L) block x per channel,
    or per (sample, channel): float64 vectors of length S * C."""
    cdef _KernelArrays K = _KernelArrays(x, S, R, C, L)
    return _moments_of(x, K.d, num_threads)


def _param_dtype_of(cnp.ndarray x not None):
    """The dtype of parameters, statistics and running statistics for data x."""
    return _param_dtype(x)


def _param_arg(p, int64_t C, cnp.ndarray x not None, str name):
    """A per-channel parameter of shape (C,) as the kernels read it."""
    return _channel_param(p, C, x, name)




def _running_stat_arg(a, int64_t C, cnp.ndarray x not None, str name):
    """A running statistic of shape (C,), updated in place."""
    return _running_arg(a, C, x, name)




def _momentum_number(momentum):
    """momentum checked: a real number in [0, 1], as a float."""
    return _momentum_arg(momentum)














def _grad_as_param(grad, param, cnp.ndarray x not None):
    """A parameter's gradient in the parameter's own floating dtype."""
    return _grad_like(grad, param, x)
