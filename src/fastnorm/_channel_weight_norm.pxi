# Included by _channel.pxi: weight normalization and its backward.
#
# Each norm -- over every axis of v but `axis` -- is computed by the channel
# stages: with axis 0 (one contiguous row per norm) by the weight-norm stage in
# one pass, otherwise from the centered moments of the channel stage. Where
# the per-norm coefficients would lose digits in the computing dtype (the
# norm of subnormal float32 or 16-bit data, say) the call is computed in
# float64 by NumPy instead.

cdef tuple _weight_norm_layout(object v, object g, object axis, object eps, ChannelDims *d):
    """(v as data, eps, g as an array) after the checks of v, eps, axis and g,
    in this order; v's (1, R, C, L) block into d."""
    cdef cnp.ndarray va = _as_data(v, "v")
    cdef double e = _check_eps(eps)
    cdef int nd = cnp.PyArray_NDIM(va), k, j
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(va)
    d.S = 1
    if axis is None:
        d.R, d.C, d.L = 1, 1, cnp.PyArray_SIZE(va)
        count = 1
    else:
        if not _is_index(axis):
            raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
        if nd == 0:
            raise ValueError("v must have at least one axis when axis is not None")
        k = _normalize_axes(int(axis), nd, "v")[0]
        d.R, d.C, d.L = 1, shape[k], 1
        for j in range(k):
            d.R *= shape[j]
        for j in range(k + 1, nd):
            d.L *= shape[j]
        count = d.C
    if g is None:
        raise TypeError("g is required")
    cdef cnp.ndarray ga = np.asarray(g)
    if not _has_float_dtype(ga):
        raise TypeError(f"g must be a floating-point array, got dtype {ga.dtype}")
    if cnp.PyArray_SIZE(ga) != count:
        raise ValueError(
            f"g must have {count} element(s) (one per index of axis {axis}), got shape "
            f"{_shape(ga)}"
        )
    return va, e, ga


cdef cnp.ndarray _weight_norms(cnp.ndarray vc, ChannelDims d, double eps, int nt):
    """sqrt(sum(v^2) + eps) per index of the normalized axis, from the centered
    moments of the channel stage."""
    cdef cnp.npy_intp nc = d.C
    cdef cnp.ndarray mean = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray var = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef int kind = _dtype_code(vc), rc
    cdef char *vp = _data(vc)
    cdef double *mp = <double *>_data(mean)
    cdef double *sp = <double *>_data(var)
    with nogil:
        rc = _call_channel_moments(kind, d, vp, 0.0, mp, sp, nt)
    _channel_error(rc)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt((d.R * d.L) * (var + mean * mean) + eps)


cdef bint _fits_param_type(object coef, cnp.ndarray v) except -1:
    """Whether per-norm coefficients keep their digits in v's computing dtype
    (finite and, unless 0, normal)."""
    info = np.finfo(_param_dtype(v))
    a = np.abs(coef)
    return bool(np.all((a <= info.max) & ((a == 0) | (a >= info.tiny))))


cdef inline object _per_norm(object c):
    """Per-norm values c (C,) shaped to broadcast against v seen as its dims."""
    return np.asarray(c).reshape(1, 1, -1, 1)


cdef inline tuple _dims_tuple(ChannelDims d):
    return (d.S, d.R, d.C, d.L)


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
    cdef cnp.ndarray va, ga
    cdef ChannelDims d
    cdef double e
    va, e, ga = _weight_norm_layout(v, g, axis, eps, &d)
    cdef int nt = _resolve_threads(num_threads)
    out = _out_arg(out, va, "out", "v")
    cdef cnp.ndarray vc = _c_block(va)
    cdef cnp.ndarray gg = np.require(ga.reshape(-1), np.float64, ("C_CONTIGUOUS", "ALIGNED"))
    cdef cnp.ndarray w = _write_target(out, vc, (vc, gg))
    if cnp.PyArray_SIZE(va) == 0:
        return _finish(w, out)
    cdef int kind = _dtype_code(vc), rc
    cdef char *vp = _data(vc)
    cdef char *wp = _data(w)
    cdef double *gp = <double *>_data(gg)
    cdef double *mp
    cdef double *sp
    if d.R == 1:  # one contiguous row per norm (axis 0): each row read once
        with nogil:
            rc = _call_weight_norm(kind, d.C, d.L, vp, gp, e, wp, nt)
        _channel_error(rc)
        return _finish(w, out)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = gg / _weight_norms(vc, d, e, nt)
    if not _fits_param_type(scale, va):
        with np.errstate(over="ignore", invalid="ignore"):
            w64 = vc.astype(np.float64).reshape(_dims_tuple(d)) * _per_norm(scale)
        w[...] = w64.reshape(_shape(va)).astype((<object>va).dtype)
        return _finish(w, out)
    cdef cnp.ndarray zeros = np.zeros(d.C)
    cdef cnp.ndarray sc = <cnp.ndarray>scale
    mp = <double *>_data(zeros)
    sp = <double *>_data(sc)
    with nogil:
        rc = _call_channel_normalize(kind, d, vp, wp, mp, sp, NULL, NULL, False, nt)
    _channel_error(rc)
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
    cdef cnp.ndarray va, ga
    cdef ChannelDims d
    cdef double e
    va, e, ga = _weight_norm_layout(v, g, axis, eps, &d)
    cdef int nt = _resolve_threads(num_threads)
    cdef cnp.ndarray dwa = _check_like(dw, va, "dw", "v")
    cdef cnp.ndarray vc = _c_block(va)
    cdef cnp.ndarray dwc = _c_block(dwa)
    cdef cnp.npy_intp C = d.C
    cdef cnp.ndarray dv = _empty_data(va)
    if cnp.PyArray_SIZE(va) == 0:
        return dv, _grad_like(np.zeros(_shape(ga)), g, va)
    cdef cnp.ndarray gg = np.require(ga.reshape(-1), np.float64, ("C_CONTIGUOUS", "ALIGNED"))
    cdef int kind = _dtype_code(vc), rc
    cdef char *dwp = _data(dwc)
    cdef char *vp = _data(vc)
    cdef char *dvp = _data(dv)
    cdef double *gp = <double *>_data(gg)
    cdef cnp.ndarray dg
    cdef double *dgp
    if d.R == 1:  # one contiguous row per norm (axis 0): each row read once
        dg = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
        dgp = <double *>_data(dg)
        with nogil:
            rc = _call_weight_norm_backward(kind, d.C, d.L, dwp, vp, gp, e, dvp, dgp, nt)
        _channel_error(rc)
        return dv, _grad_like(dg.reshape(_shape(ga)), g, va)
    norm = _weight_norms(vc, d, e, nt)
    cdef cnp.ndarray sum_dw = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray sum_dwv = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray zeros = np.zeros(C)
    cdef double *zp = <double *>_data(zeros)
    cdef double *s1 = <double *>_data(sum_dw)
    cdef double *s2 = <double *>_data(sum_dwv)
    with nogil:
        rc = _call_channel_sums(kind, d, dwp, vp, zp, s1, s2, nt)
    _channel_error(rc)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        dgo = sum_dwv / norm
        a = gg / norm
        b = -gg * dgo / norm ** 2
        if not (_fits_param_type(a, va) and _fits_param_type(b, va)):  # in float64
            vn = vc.astype(np.float64).reshape(_dims_tuple(d)) / _per_norm(norm)
            d64 = dwc.astype(np.float64).reshape(_dims_tuple(d))
            dgo = (d64 * vn).sum(axis=(0, 1, 3))
            dv64 = (_per_norm(a) * d64
                    - _per_norm(gg * dgo / norm) * vn)
            dv[...] = dv64.reshape(_shape(va)).astype((<object>va).dtype)
            return dv, _grad_like(dgo.reshape(_shape(ga)), g, va)
    cdef cnp.ndarray ones = np.ones(C)
    cdef cnp.ndarray aa = <cnp.ndarray>a
    cdef cnp.ndarray bb = <cnp.ndarray>b
    cdef double *op = <double *>_data(ones)
    cdef double *ap = <double *>_data(aa)
    cdef double *bp = <double *>_data(bb)
    with nogil:
        rc = _call_channel_affine_backward(kind, d, dwp, vp, dvp, zp, op, ap, bp, zp, False, nt)
    _channel_error(rc)
    return dv, _grad_like(dgo.reshape(_shape(ga)), g, va)
