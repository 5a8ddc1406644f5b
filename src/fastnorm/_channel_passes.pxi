# Included by _channel.pxi: the passes the channel normalizers share --
# statistics of the input, the forward and backward with given statistics,
# the backward with statistics of the input, and the per-channel moments.
# They take x already checked and viewed as a C-contiguous (S, R, C, L)
# block, and call the C stages with the GIL released.

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
