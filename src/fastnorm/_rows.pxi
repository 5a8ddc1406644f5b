# Included by _core.pyx: LayerNorm and RMSNorm over the last axes, as rows
# (their calls over one other axis go to _axis.pxi), forward and backward.

# --------------------------------------------------------------------------
# The shared forward and backward of LayerNorm and RMSNorm
# --------------------------------------------------------------------------

cdef object _norm(bint centered, object x, object weight, object bias, object axis,
                  object eps, object out, bint return_stats, object num_threads):
    """layer_norm (centered) and rms_norm: checks, layout, one C call."""
    cdef cnp.ndarray xa = _as_data(x, "x")
    cdef _Layout layout = _layout_of(xa, axis, False)
    cdef double e = _check_eps(eps) if centered else _rms_eps(eps, xa)
    cdef int nt = _resolve_threads(num_threads)
    w = _as_param(weight, layout, "weight")
    b = _as_param(bias, layout, "bias")
    cdef int middle = _middle_axis(layout)
    if middle >= 0:
        return _axis_norm(centered, xa, layout, middle, w, b, e, out, return_stats, nt)
    layout.work = layout.rows_of(xa, &layout.x_rows)
    cdef _Output o = _output_for(layout, out, &layout.x_rows, 1)
    if out is not None:
        w = _copy_if_overwritten(w, o, xa)
        b = _copy_if_overwritten(b, o, xa)
    mean = rstd = None
    if return_stats:
        if centered:
            mean = layout.empty_stats()
        rstd = layout.empty_stats()
    cdef char *xp = layout.x_rows.data
    cdef char *yp = o.view.data
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    cdef char *mp = _data_ptr(mean)
    cdef char *rp = _data_ptr(rstd)
    cdef int64_t rows = layout.x_rows.rows, n = layout.x_rows.n
    cdef int64_t ldx = layout.x_rows.ld, ldy = o.view.ld
    cdef fn_dtype dtype = _data_dtype(xa)
    cdef int rc
    cdef bint fresh = o.fresh
    with nogil:
        if fresh:
            fn_set_output_fresh(1)
        if centered:
            rc = fn_layer_norm(dtype, rows, n, xp, ldx, yp, ldy, wp, bp, e, mp, rp, nt)
        else:
            rc = fn_rms_norm(dtype, rows, n, xp, ldx, yp, ldy, wp, e, rp, nt)
        if fresh:
            fn_set_output_fresh(0)
    _raise_kernel_error(rc)
    o.finish()
    if not return_stats:
        return o.dest
    if centered:
        return o.dest, mean, rstd
    return o.dest, rstd


cdef tuple _norm_backward(bint centered, object dy, object x, object mean, object rstd,
                          object weight, object axis, object num_threads, object ds=None,
                          str xname="x", object out=None):
    """layer_norm_backward (centered) and rms_norm_backward: (dx, dweight, dbias or None).
    ds (the fused add's backward): added to dx before its rounding. out: where
    dx goes (None: a new array)."""
    cdef cnp.ndarray xa = _as_data(x, xname)
    cdef cnp.ndarray dya = _check_like(dy, xa, "dy", xname)
    cdef cnp.ndarray dsa = None if ds is None else _check_like(ds, xa, "ds", xname)
    cdef _Layout layout = _layout_of(xa, axis, False)
    cdef int nt = _resolve_threads(num_threads)
    mean_a = _as_stats(mean, layout, "mean", xname) if centered else None
    cdef cnp.ndarray rstd_a = _as_stats(rstd, layout, "rstd", xname)
    w = _as_param(weight, layout, "weight", xname)
    cdef cnp.ndarray outa = None if out is None else _check_out(out, xa, "out")
    # dx is written straight into out unless out shares memory with an input
    # (dx must not overlap what the kernel reads): then into a new array,
    # copied over after the call
    direct = outa
    if outa is not None and _any_overlap(outa, (xa, dya, dsa, mean_a, rstd_a, w), None):
        direct = None
    cdef int middle = _middle_axis(layout)
    cdef RowsView dyv, dsv
    cdef cnp.ndarray dyw, dsw
    cdef _Output o
    if middle >= 0 and dsa is not None and _param_typenum(xa) != cnp.PyArray_TYPE(xa):
        # 16-bit data over a non-last axis: dx + ds from the float32 path on the
        # widened data (the same dx before its rounding), rounded once
        f32 = np.float32
        dxa, dw, db = _norm_backward(centered, dya.astype(f32), xa.astype(f32), mean_a, rstd_a,
                                     w, axis, nt, dsa.astype(f32))
        dxa = dxa.astype(xa.dtype)
    elif middle >= 0:
        dxa, dw, db = _axis_norm_backward(centered, dya, xa, layout, middle, mean_a, rstd_a, w,
                                          nt, direct)
        if dsa is not None:
            np.add(dxa, dsa, out=dxa)
    else:
        layout.work = layout.rows_of(xa, &layout.x_rows)
        dyw = layout.rows_of(dya, &dyv)
        o = _output_for(layout, direct, NULL, 0)
        if dsa is None:
            dxa, dw, db = _rows_norm_backward(centered, layout, dyv, o, mean_a, rstd_a, w, nt,
                                              NULL)
        else:
            dsw = layout.rows_of(dsa, &dsv)
            dxa, dw, db = _rows_norm_backward(centered, layout, dyv, o, mean_a, rstd_a, w, nt,
                                              &dsv)
    if outa is not None and dxa is not outa:
        np.copyto(outa, dxa)
        dxa = outa
    # parameter gradients in the weight's own floating dtype
    return dxa, _grad_in_dtype_of(dw, weight), _grad_in_dtype_of(db, weight)


cdef tuple _rows_norm_backward(bint centered, _Layout layout, RowsView dyv, _Output o,
                               object mean, cnp.ndarray rstd, object w, int nt, RowsView *dsv):
    """The row-wise backward kernels: (dx, dweight, dbias or None) in x's dtype; dsv
    (NULL: none) the rows of ds, added to dx before its rounding (the fused add's
    backward)."""
    dw = layout.empty_params()
    db = layout.empty_params() if centered else None
    cdef char *xp = layout.x_rows.data
    cdef char *dyp = dyv.data
    cdef char *dxp = o.view.data
    cdef char *mp = _data_ptr(mean)
    cdef char *rp = _data_ptr(rstd)
    cdef char *wp = _data_ptr(w)
    cdef char *dwp = _data_ptr(dw)
    cdef char *dbp = _data_ptr(db)
    cdef int64_t rows = layout.x_rows.rows, n = layout.x_rows.n
    cdef int64_t ldx = layout.x_rows.ld, lddy = dyv.ld, lddx = o.view.ld
    cdef char *dsp = NULL
    cdef int64_t ldds = 0
    if dsv != NULL:
        dsp = dsv.data
        ldds = dsv.ld
    cdef fn_dtype dtype = _data_dtype(layout.x)
    cdef int rc
    cdef bint fresh = o.fresh
    with nogil:
        if fresh:
            fn_set_output_fresh(1)
        if dsv != NULL and centered:
            rc = fn_add_layer_norm_backward(dtype, rows, n, dyp, lddy, xp, ldx, dsp, ldds, mp,
                                            rp, wp, dxp, lddx, dwp, dbp, nt)
        elif dsv != NULL:
            rc = fn_add_rms_norm_backward(dtype, rows, n, dyp, lddy, xp, ldx, dsp, ldds, rp, wp,
                                          dxp, lddx, dwp, nt)
        elif centered:
            rc = fn_layer_norm_backward(dtype, rows, n, dyp, lddy, xp, ldx, mp, rp, wp, dxp,
                                        lddx, dwp, dbp, nt)
        else:
            rc = fn_rms_norm_backward(dtype, rows, n, dyp, lddy, xp, ldx, rp, wp, dxp, lddx, dwp,
                                      nt)
        if fresh:
            fn_set_output_fresh(0)
    _raise_kernel_error(rc)
    o.finish()
    return o.dest, dw, db


# --------------------------------------------------------------------------
# LayerNorm and RMSNorm
# --------------------------------------------------------------------------

def layer_norm(x, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None,
               bint return_stats=False, num_threads=None):
    """Layer normalization (Ba et al., 2016) over the given axes.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the
    biased variance taken over ``axis`` (an int, or a tuple of axes; PyTorch's
    ``normalized_shape`` of length k is ``axis=tuple(range(-k, 0))``).

    Parameters
    ----------
    x : array of float32, float64, float16 or bfloat16
    weight, bias : arrays of the shape of the normalized axes, in x's order, optional.
        Converted to the computing dtype: x's, float32 for 16-bit x.
    axis : int or tuple of ints, default -1
    eps : float >= 0, default 1e-5 (inside the square root)
    out : ndarray of x's shape and dtype, optional. Written in place; may be x.
    return_stats : bool
        Also return ``mean`` and ``rstd`` = 1/sqrt(var + eps), with the shape of
        x without the normalized axes and the computing dtype: the inputs of
        :func:`layer_norm_backward`.
    num_threads : int, optional
        Upper bound on threads (default :func:`get_num_threads`; negative counts back).

    Returns
    -------
    y, or ``(y, mean, rstd)`` when ``return_stats`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 6.0]], dtype=np.float32)
    >>> y, mean, rstd = fastnorm.layer_norm(x, return_stats=True)
    >>> y.round(3)
    array([[-1.342, -0.447,  0.447,  1.342],
           [-0.577, -0.577, -0.577,  1.732]], dtype=float32)
    >>> mean, rstd.round(3)
    (array([2.5, 3. ], dtype=float32), array([0.894, 0.577], dtype=float32))

    A PyTorch ``normalized_shape`` of two axes, with weight and bias, written into
    a preallocated array:

    >>> x = np.random.default_rng(0).standard_normal((8, 4, 16)).astype(np.float32)
    >>> w, b = np.ones((4, 16), np.float32), np.zeros((4, 16), np.float32)
    >>> out = np.empty_like(x)
    >>> y = fastnorm.layer_norm(x, w, b, axis=(-2, -1), out=out)
    >>> y is out, y.shape
    (True, (8, 4, 16))
    """
    return _norm(True, x, weight, bias, axis, eps, out, return_stats, num_threads)


def layer_norm_backward(dy, x, mean, rstd, weight=None, *, axis=-1, out=None,
                        num_threads=None):
    """Gradients of :func:`layer_norm`.

    With ``xhat = (x - mean) * rstd`` and ``g = dy * weight``,
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` over the normalized
    axes (docs/numerics.md §0, NB); ``dweight = sum(dy * xhat)`` and
    ``dbias = sum(dy)`` over every non-normalized axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    mean, rstd : ndarray, shape of x without the normalized axes
        What :func:`layer_norm` returned with ``return_stats=True``.
    weight : ndarray, optional
        The forward's weight (None: no weight).
    axis : int or tuple of ints, default -1
        The forward's axes.
    out : ndarray of x's shape and dtype, optional
        Where dx is written (and returned). An array reused from call to call
        saves the page faults of a new one, and takes streaming stores when
        large (docs/guide/threads.md); it may share memory with dy or x, which
        are then read as they were before the call.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype (``out`` when given).
    dweight, dbias : ndarray, shape of the normalized axes
        Computed whether or not the forward had the parameters; in the
        weight's floating dtype when the weight is an array, else (no weight,
        or a list) in the computing dtype: x's, float32 for 16-bit x.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    >>> w = np.ones(64, np.float32)
    >>> y, mean, rstd = fastnorm.layer_norm(x, w, return_stats=True)
    >>> dx, dweight, dbias = fastnorm.layer_norm_backward(np.ones_like(y), x, mean, rstd, w)
    >>> dx.shape, dweight.shape, dbias.shape
    ((32, 64), (64,), (64,))
    >>> bool(np.abs(dx).max() < 1e-5)  # a constant dy has no effect through the mean
    True
    """
    return _norm_backward(True, dy, x, mean, rstd, weight, axis, num_threads, None, "x", out)


def rms_norm(x, weight=None, *, axis=-1, eps=None, out=None, bint return_stats=False,
             num_threads=None):
    """Root-mean-square normalization (Zhang & Sennrich, 2019) over the given axes.

    y = x / sqrt(mean(x**2) + eps) * weight.

    Parameters
    ----------
    x : array of float32, float64, float16 or bfloat16
    weight : array of the shape of the normalized axes, in x's order, optional.
        Converted to the computing dtype: x's, float32 for 16-bit x.
    axis : int or tuple of ints, default -1
    eps : float >= 0 or None, default None: the machine epsilon of the
        computing dtype (x's; float32's for float16 and bfloat16 x), as
        ``torch.nn.RMSNorm``.
    out : ndarray of x's shape and dtype, optional. Written in place; may be x.
    return_stats : bool
        Also return ``rstd`` = 1/sqrt(mean(x**2) + eps), the shape of x without
        the normalized axes: the input of :func:`rms_norm_backward`.
    num_threads : int, optional

    Returns
    -------
    y, or ``(y, rstd)`` when ``return_stats`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.array([[3.0, 4.0]], dtype=np.float32)
    >>> y, rstd = fastnorm.rms_norm(x, eps=0.0, return_stats=True)
    >>> y.round(4), rstd.round(4)
    (array([[0.8485, 1.1314]], dtype=float32), array([0.2828], dtype=float32))
    """
    return _norm(False, x, weight, None, axis, eps, out, return_stats, num_threads)


def rms_norm_backward(dy, x, rstd, weight=None, *, axis=-1, out=None, num_threads=None):
    """Gradients of :func:`rms_norm`.

    With ``xhat = x * rstd`` and ``g = dy * weight``,
    ``dx = rstd * (g - xhat * mean(g * xhat))`` over the normalized axes;
    ``dweight = sum(dy * xhat)`` over every non-normalized axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    rstd : ndarray, shape of x without the normalized axes
        What :func:`rms_norm` returned with ``return_stats=True``.
    weight : ndarray, optional
        The forward's weight.
    axis : int or tuple of ints, default -1
        The forward's axes.
    out : ndarray of x's shape and dtype, optional
        Where dx is written, as in :func:`layer_norm_backward`.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype (``out`` when given).
    dweight : ndarray, shape of the normalized axes
        In the dtype :func:`layer_norm_backward` gives it.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    >>> w = np.ones(32, np.float32)
    >>> y, rstd = fastnorm.rms_norm(x, w, return_stats=True)
    >>> dx, dweight = fastnorm.rms_norm_backward(np.ones_like(y), x, rstd, w)
    >>> dx.shape, dweight.shape
    ((16, 32), (32,))
    """
    dx, dw, _ = _norm_backward(False, dy, x, None, rstd, weight, axis, num_threads, None, "x",
                               out)
    return dx, dw
