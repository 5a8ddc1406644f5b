# Included by _core.pyx: LayerNorm, RMSNorm and the fused residual add over
# one normalized axis that is not the last, on (S, C, L) views of the arrays
# (no transposing copy), forward and backward.

# --------------------------------------------------------------------------
# One normalized axis that is not the last: (S, C, L) views, no transposing copy
# --------------------------------------------------------------------------

cdef struct AxisView:
    char *data
    int64_t S, C, L
    int64_t ss, sc  # elements between consecutive samples, consecutive channels


cdef int _middle_axis(_Layout layout):
    """The normalized axis when the axis path applies -- one axis, with more
    than one element after it -- else -1."""
    if layout.k != 1 or layout.trailing:
        return -1
    cdef int k = layout.axes[0], j
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(layout.x)
    cdef int64_t n = 1
    for j in range(k + 1, layout.nd):
        n *= shape[j]
    return k if n > 1 else -1


cdef bint _axis_view(cnp.ndarray a, int k, AxisView *v):
    """Whether a is an (S, C, L) array around axis k: the axes after k collapse
    to L contiguous elements, those before it to one stride. Fills v if so."""
    cdef int nd = cnp.PyArray_NDIM(a), j
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(a)
    cdef cnp.npy_intp isz = cnp.PyArray_ITEMSIZE(a)
    cdef cnp.npy_intp expect = isz, ss = 0, sc
    cdef int64_t S = 1, C = shape[k], Ln = 1
    cdef bint have_ss = False, empty = False
    cdef char *data = <char *>cnp.PyArray_DATA(a)
    for j in range(nd):
        if shape[j] == 0:
            empty = True
    for j in range(nd - 1, k, -1):
        if shape[j] != 1:
            if strides[j] != expect and not empty:
                return False
            expect *= shape[j]
        Ln *= shape[j]
    sc = strides[k] if C > 1 else Ln * isz
    expect = sc * C
    for j in range(k - 1, -1, -1):
        S *= shape[j]
        if shape[j] == 1:
            continue
        if not have_ss:
            ss = strides[j]
            have_ss = True
        elif strides[j] != expect and not empty:
            return False
        expect = strides[j] * shape[j]
    if empty:  # nothing is read or written: any layout will do
        sc, ss, have_ss = Ln * isz, C * Ln * isz, True
    if not have_ss:
        ss = C * Ln * isz
    if sc % isz != 0 or ss % isz != 0 or (<uintptr_t>data) % isz != 0:
        return False
    v.data = data
    v.S = S
    v.C = C
    v.L = Ln
    v.ss = ss // isz
    v.sc = sc // isz
    return True


cdef cnp.ndarray _axis_view_of(cnp.ndarray a, int k, AxisView *v):
    """An (S, C, L) view of a into v; returns the array it points into (a C-ordered
    copy when a has no such view)."""
    if not _axis_view(a, k, v):
        a = a.copy(order="C")
        _axis_view(a, k, v)
    return a


cdef object _copy_if_shares_memory(object p, cnp.ndarray dest):
    """p, or a copy when it shares memory with dest (which is about to be written)."""
    if p is None or not np.may_share_memory(p, dest):
        return p
    return p.copy()


cdef bint _same_axis_view(AxisView *a, AxisView *b):
    return a.data == b.data and a.ss == b.ss and a.sc == b.sc


cdef cnp.ndarray _axis_dest(object arr, cnp.ndarray xa, int k, AxisView *v,
                            cnp.ndarray xw, AxisView *xv, cnp.ndarray rw, AxisView *rv):
    """Where an axis kernel writes a result (out, or the fused add's sum_out)
    while it reads x and residual (the fused add) or x twice (the plain norm):
    arr itself when it has an (S, C, L) view that is one of theirs exactly or
    shares no memory with them (each block is read before it is written),
    else a scratch array (returned; copied into arr afterwards). None: arr is
    written directly; a fresh array when arr is None."""
    if arr is not None and _axis_view(<cnp.ndarray>arr, k, v) and (
            (_same_axis_view(v, xv) or not np.may_share_memory(arr, xw)) and
            (_same_axis_view(v, rv) or not np.may_share_memory(arr, rw))):
        return None
    cdef cnp.ndarray d = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(xa), cnp.PyArray_DIMS(xa),
                                           cnp.PyArray_TYPE(xa), 0)
    _axis_view(d, k, v)
    return d


cdef object _axis_norm(bint centered, cnp.ndarray xa, _Layout layout, int k, object w,
                       object b, double e, object out, bint return_stats, int nt):
    """layer_norm / rms_norm over the middle axis k of xa (checked arguments)."""
    cdef AxisView xv, yv
    cdef cnp.ndarray xw = _axis_view_of(xa, k, &xv)
    cdef cnp.ndarray dest = None if out is None else _check_out(out, xa, "out")
    cdef cnp.ndarray scratch = _axis_dest(dest, xa, k, &yv, xw, &xv, xw, &xv)
    if dest is None:  # a fresh array, written directly
        dest, scratch = scratch, None
    elif scratch is None:
        w = _copy_if_shares_memory(w, dest)
        b = _copy_if_shares_memory(b, dest)
    mean = rstd = None
    if return_stats:
        if centered:
            mean = layout.empty_stats()
        rstd = layout.empty_stats()
    cdef char *xp = xv.data
    cdef char *yp = yv.data
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    cdef char *mp = _data_ptr(mean)
    cdef char *rp = _data_ptr(rstd)
    cdef fn_dtype dtype = _data_dtype(xa)
    cdef int rc
    with nogil:
        if centered:
            rc = fn_layer_norm_axis(dtype, xv.S, xv.C, xv.L, xp, xv.ss, xv.sc, yp, yv.ss, yv.sc,
                                    wp, bp, e, mp, rp, nt)
        else:
            rc = fn_rms_norm_axis(dtype, xv.S, xv.C, xv.L, xp, xv.ss, xv.sc, yp, yv.ss, yv.sc,
                                  wp, e, rp, nt)
    _raise_kernel_error(rc)
    if scratch is not None:
        np.copyto(dest, scratch)
    if not return_stats:
        return dest
    if centered:
        return dest, mean, rstd
    return dest, rstd


cdef tuple _axis_norm_backward(bint centered, cnp.ndarray dya, cnp.ndarray xa, _Layout layout,
                               int k, object mean, cnp.ndarray rstd, object w, int nt,
                               cnp.ndarray out=None):
    """The backward of _axis_norm: (dx, dweight, dbias or None) in x's dtype.
    dx is written into out where out (checked, sharing no memory with the
    inputs) has an (S, C, L) view, else into a new array."""
    cdef AxisView xv, dyv, dxv
    cdef cnp.ndarray xw = _axis_view_of(xa, k, &xv)
    cdef cnp.ndarray dyw = _axis_view_of(dya, k, &dyv)
    cdef cnp.ndarray dx
    if out is not None and _axis_view(out, k, &dxv):
        dx = out
    else:
        dx = cnp.PyArray_EMPTY(layout.nd, cnp.PyArray_DIMS(xa), cnp.PyArray_TYPE(xa), 0)
        _axis_view(dx, k, &dxv)
    dw = layout.empty_params()
    db = layout.empty_params() if centered else None
    cdef char *xp = xv.data
    cdef char *dyp = dyv.data
    cdef char *dxp = dxv.data
    cdef char *mp = _data_ptr(mean)
    cdef char *rp = _data_ptr(rstd)
    cdef char *wp = _data_ptr(w)
    cdef char *dwp = _data_ptr(dw)
    cdef char *dbp = _data_ptr(db)
    cdef fn_dtype dtype = _data_dtype(xa)
    cdef int rc
    with nogil:
        if centered:
            rc = fn_layer_norm_axis_backward(dtype, xv.S, xv.C, xv.L, dyp, dyv.ss, dyv.sc, xp,
                                             xv.ss, xv.sc, mp, rp, wp, dxp, dxv.ss, dxv.sc, dwp,
                                             dbp, nt)
        else:
            rc = fn_rms_norm_axis_backward(dtype, xv.S, xv.C, xv.L, dyp, dyv.ss, dyv.sc, xp,
                                           xv.ss, xv.sc, rp, wp, dxp, dxv.ss, dxv.sc, dwp, nt)
    _raise_kernel_error(rc)
    return dx, dw, db


cdef tuple _axis_add_norm(bint centered, cnp.ndarray xa, cnp.ndarray ra, _Layout layout, int k,
                          object w, object b, object rb, double e, object out, object sum_out,
                          bint return_stats, int nt):
    """add_layer_norm / add_rms_norm over the middle axis k of xa (checked
    arguments): x and residual read once, s and y written once, no transposing
    copy."""
    if sum_out is not None:
        sum_out = _check_out(sum_out, xa, "sum_out")
    if out is not None:
        out = _check_out(out, xa, "out")
        if sum_out is not None and np.may_share_memory(out, sum_out):
            raise ValueError("out and sum_out must not overlap: y would overwrite the sum")
    cdef AxisView xv, rv, sv, yv
    cdef cnp.ndarray xw = _axis_view_of(xa, k, &xv)
    cdef cnp.ndarray rw = _axis_view_of(ra, k, &rv)
    cdef cnp.ndarray s_tmp = _axis_dest(sum_out, xa, k, &sv, xw, &xv, rw, &rv)
    cdef cnp.ndarray y_tmp = _axis_dest(out, xa, k, &yv, xw, &xv, rw, &rv)
    cdef cnp.ndarray s_arr = sum_out if s_tmp is None else s_tmp
    cdef cnp.ndarray y_arr = out if y_tmp is None else y_tmp
    # parameters are read as they were before the call
    if s_tmp is None:
        w, b, rb = (_copy_if_shares_memory(w, s_arr), _copy_if_shares_memory(b, s_arr),
                    _copy_if_shares_memory(rb, s_arr))
    if y_tmp is None:
        w, b, rb = (_copy_if_shares_memory(w, y_arr), _copy_if_shares_memory(b, y_arr),
                    _copy_if_shares_memory(rb, y_arr))
    mean = rstd = None
    if return_stats:
        if centered:
            mean = layout.empty_stats()
        rstd = layout.empty_stats()
    cdef char *xp = xv.data
    cdef char *resp = rv.data
    cdef char *sp = sv.data
    cdef char *yp = yv.data
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    cdef char *rbp = _data_ptr(rb)
    cdef char *mp = _data_ptr(mean)
    cdef char *rp = _data_ptr(rstd)
    cdef fn_dtype dtype = _data_dtype(xa)
    cdef int rc
    with nogil:
        if centered:
            rc = fn_add_layer_norm_axis(dtype, xv.S, xv.C, xv.L, xp, xv.ss, xv.sc, resp, rv.ss,
                                        rv.sc, rbp, sp, sv.ss, sv.sc, yp, yv.ss, yv.sc, wp, bp,
                                        e, mp, rp, nt)
        else:
            rc = fn_add_rms_norm_axis(dtype, xv.S, xv.C, xv.L, xp, xv.ss, xv.sc, resp, rv.ss,
                                      rv.sc, rbp, sp, sv.ss, sv.sc, yp, yv.ss, yv.sc, wp, e, rp,
                                      nt)
    _raise_kernel_error(rc)
    if sum_out is not None and s_tmp is not None:
        np.copyto(sum_out, s_tmp)
        s_arr = sum_out
    if out is not None and y_tmp is not None:
        np.copyto(out, y_tmp)
        y_arr = out
    if not return_stats:
        return y_arr, s_arr
    if centered:
        return y_arr, s_arr, mean, rstd
    return y_arr, s_arr, rstd
