# Included by _core.pyx: the residual add fused with LayerNorm / RMSNorm over
# the last axes (a pre-norm transformer block), forward and backward; over one
# other axis the forward goes to _axis.pxi.

# --------------------------------------------------------------------------
# Fused residual add + LayerNorm / RMSNorm (pre-norm transformer block)
# --------------------------------------------------------------------------

cdef tuple _add_norm(bint centered, object x, object residual, object weight, object bias,
                     object residual_bias, object axis, object eps, object out, object sum_out,
                     bint return_stats, object num_threads):
    """add_layer_norm (centered) and add_rms_norm: checks, layout, one C call."""
    cdef cnp.ndarray xa = _as_data(x, "x")
    cdef cnp.ndarray ra = _check_like(residual, xa, "residual")
    cdef _Layout layout = _layout_of(xa, axis, False)
    cdef double e = _check_eps(eps) if centered else _rms_eps(eps, xa)
    cdef int nt = _resolve_threads(num_threads)
    w = _as_param(weight, layout, "weight")
    b = _as_param(bias, layout, "bias")
    rb = _as_param(residual_bias, layout, "residual_bias")
    cdef int middle = _middle_axis(layout)
    if middle >= 0:
        return _axis_add_norm(centered, xa, ra, layout, middle, w, b, rb, e, out, sum_out,
                              return_stats, nt)
    layout.work = layout.rows_of(xa, &layout.x_rows)
    cdef RowsView reads[2]
    reads[0] = layout.x_rows
    cdef cnp.ndarray rw = layout.rows_of(ra, &reads[1])
    cdef _Output os = _output_for(layout, sum_out, reads, 2, "sum_out")
    cdef _Output oy = _output_for(layout, out, reads, 2)
    if out is not None and sum_out is not None and _bytes_meet(oy.dest, os.dest):
        raise ValueError("out and sum_out must not overlap: y would overwrite the sum")
    cdef list params = [w, b, rb]
    for i in range(3):
        if out is not None:
            params[i] = _copy_if_overwritten(params[i], oy, xa)
        if sum_out is not None:
            params[i] = _copy_if_overwritten(params[i], os, xa)
    w, b, rb = params
    mean = rstd = None
    if return_stats:
        if centered:
            mean = layout.empty_stats()
        rstd = layout.empty_stats()
    cdef char *xp = layout.x_rows.data
    cdef char *resp = reads[1].data
    cdef char *sp = os.view.data
    cdef char *yp = oy.view.data
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(b)
    cdef char *rbp = _data_ptr(rb)
    cdef char *mp = _data_ptr(mean)
    cdef char *rp = _data_ptr(rstd)
    cdef int64_t rows = layout.x_rows.rows, n = layout.x_rows.n
    cdef int64_t ldx = layout.x_rows.ld, ldr = reads[1].ld, lds = os.view.ld, ldy = oy.view.ld
    cdef fn_dtype dtype = _data_dtype(xa)
    cdef int rc
    cdef bint fresh = oy.fresh  # y streams; s is read back by the call
    with nogil:
        if fresh:
            fn_set_output_fresh(1)
        if centered:
            rc = fn_add_layer_norm(dtype, rows, n, xp, ldx, resp, ldr, rbp, sp, lds, yp, ldy, wp,
                                   bp, e, mp, rp, nt)
        else:
            rc = fn_add_rms_norm(dtype, rows, n, xp, ldx, resp, ldr, rbp, sp, lds, yp, ldy, wp, e,
                                 rp, nt)
        if fresh:
            fn_set_output_fresh(0)
    _raise_kernel_error(rc)
    os.finish()
    oy.finish()
    if not return_stats:
        return oy.dest, os.dest
    if centered:
        return oy.dest, os.dest, mean, rstd
    return oy.dest, os.dest, rstd


def add_layer_norm(x, residual, weight=None, bias=None, *, residual_bias=None, axis=-1,
                   eps=1e-5, out=None, sum_out=None, bint return_stats=False, num_threads=None):
    """Residual add fused with layer normalization (the pre-norm transformer block).

    s = x + residual (+ residual_bias); y = layer_norm(s, weight, bias).
    x and residual are read once and s and y written once, in one pass over
    memory per row.

    Parameters
    ----------
    x, residual : arrays of the same shape and dtype (float32, float64, float16 or
        bfloat16)
    weight, bias, residual_bias : arrays of the normalized axes' shape, optional
    axis, eps, num_threads : as in :func:`layer_norm`
    out : ndarray for y, optional (may be x)
    sum_out : ndarray for s, optional (may be x or residual: the residual
        stream updated in place). out and sum_out must not overlap.
    return_stats : bool
        Also return the mean and rstd of s, for :func:`add_layer_norm_backward`.

    Returns
    -------
    ``(y, s)``, or ``(y, s, mean, rstd)`` when ``return_stats`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((4, 8)).astype(np.float32)
    >>> residual = rng.standard_normal((4, 8)).astype(np.float32)
    >>> y, s = fastnorm.add_layer_norm(x, residual)
    >>> bool(np.array_equal(s, x + residual))
    True
    >>> bool(np.allclose(y, fastnorm.layer_norm(x + residual)))
    True

    The residual stream updated in place:

    >>> y, s = fastnorm.add_layer_norm(x, residual, sum_out=residual)
    >>> s is residual
    True
    """
    return _add_norm(True, x, residual, weight, bias, residual_bias, axis, eps, out, sum_out,
                     return_stats, num_threads)


def add_rms_norm(x, residual, weight=None, *, residual_bias=None, axis=-1, eps=None,
                 out=None, sum_out=None, bint return_stats=False, num_threads=None):
    """Residual add fused with RMS normalization.

    ``s = x + residual (+ residual_bias)``; ``y = rms_norm(s, weight)``.

    Parameters
    ----------
    x, residual : ndarray
        The same shape and dtype (float32, float64, float16 or bfloat16).
    weight, residual_bias : ndarray, shape of the normalized axes, optional
    axis, num_threads :
        As in :func:`rms_norm`.
    eps : float or None, default None
        The machine epsilon of the computing dtype, as in :func:`rms_norm`.
    out, sum_out : ndarray, optional
        Receive y and s, as in :func:`add_layer_norm`.
    return_stats : bool, default False
        Also return ``rstd`` of s, for :func:`add_rms_norm_backward`.

    Returns
    -------
    y, s : ndarray
        x's shape and dtype.
    rstd : ndarray
        Only with ``return_stats``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x, r = rng.standard_normal((2, 4, 8)).astype(np.float32)
    >>> y, s, rstd = fastnorm.add_rms_norm(x, r, return_stats=True)
    >>> bool(np.allclose(y, fastnorm.rms_norm(x + r)))
    True
    >>> rstd.shape
    (4,)
    """
    return _add_norm(False, x, residual, weight, None, residual_bias, axis, eps, out, sum_out,
                     return_stats, num_threads)


cdef object _sum_over_rows(cnp.ndarray a, _Layout layout, object num_threads):
    """Sum of a over every non-normalized axis, in a's computing dtype: by the
    channel-sums kernel (blocks of rows in the computing dtype, merged in
    float64) when a is C-contiguous with the normalized axes last, else
    accumulated in float64 by NumPy."""
    cdef int64_t n, rows
    cdef int rc, nt
    cdef fn_dtype dtype
    cdef char *ap
    cdef char *mup
    cdef char *sp
    cdef char *sxp
    calc = cnp.PyArray_DescrFromType(_param_typenum(a))
    if (layout.trailing and cnp.PyArray_ISCARRAY_RO(a) and cnp.PyArray_ISNOTSWAPPED(a)
            and a.size):
        shape = layout.param_shape()
        n = int(np.prod(shape))
        rows = a.size // n
        # the sums of each column of the (rows, n) array: (1, rows, n, 1) channel data
        mu, sums, sums_dyx = np.zeros(n), np.empty(n), np.empty(n)
        ap, mup = _data_ptr(a), _data_ptr(mu)
        sp, sxp = _data_ptr(sums), _data_ptr(sums_dyx)
        dtype = _data_dtype(a)
        nt = _resolve_threads(num_threads)
        with nogil:
            rc = fn_channel_sums(dtype, 1, rows, n, 1, ap, ap, <double *>mup, <double *>sp,
                                 <double *>sxp, nt)
        _raise_kernel_error(rc)
        return sums.reshape(shape).astype(calc)
    if layout.trailing:
        others = tuple(range(layout.nd - layout.k))
    else:
        others = tuple(i for i in range(layout.nd) if i not in layout.axes)
    return a.sum(axis=others, dtype=np.float64).astype(calc)


def add_layer_norm_backward(dy, s, mean, rstd, weight=None, *, ds=None, axis=-1,
                            num_threads=None):
    """Gradients of :func:`add_layer_norm`.

    ``dsum = NB(dy * weight) + ds`` is the gradient of x and of residual alike
    (``s = x + residual``); ``dresidual_bias`` is dsum summed over every
    non-normalized axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: s's shape and dtype.
    s : ndarray
        The sum the forward returned.
    mean, rstd : ndarray
        The statistics the forward returned with ``return_stats=True``.
    weight : ndarray, optional
        The forward's weight.
    ds : ndarray, optional
        A gradient arriving at s from later blocks (the residual stream).
    axis : int or tuple of ints, default -1
        The forward's axes.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dsum : ndarray
        s's shape and dtype.
    dweight, dbias : ndarray, shape of the normalized axes
        In the dtypes :func:`layer_norm_backward` gives them.
    dresidual_bias : ndarray, shape of the normalized axes
        In the computing dtype, x's or float32 for 16-bit data (residual_bias
        is not an argument).

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x, r = rng.standard_normal((2, 4, 8)).astype(np.float32)
    >>> y, s, mean, rstd = fastnorm.add_layer_norm(x, r, return_stats=True)
    >>> dy = rng.standard_normal(y.shape).astype(np.float32)
    >>> dsum, dweight, dbias, dresidual_bias = fastnorm.add_layer_norm_backward(
    ...     dy, s, mean, rstd, ds=np.ones_like(s))
    >>> dsum.shape, dweight.shape, dresidual_bias.shape
    ((4, 8), (8,), (8,))
    """
    dsum, dw, db = _norm_backward(True, dy, s, mean, rstd, weight, axis, num_threads, ds, "s")
    return dsum, dw, db, _sum_over_rows(dsum, _layout_of(dsum, axis, False), num_threads)


def add_rms_norm_backward(dy, s, rstd, weight=None, *, ds=None, axis=-1, num_threads=None):
    """Gradients of :func:`add_rms_norm`; see :func:`add_layer_norm_backward`.

    Parameters
    ----------
    dy, s, rstd, weight, ds, axis, num_threads :
        As in :func:`add_layer_norm_backward`, with the ``rstd`` that
        :func:`add_rms_norm` returned.

    Returns
    -------
    dsum : ndarray
        s's shape and dtype.
    dweight, dresidual_bias : ndarray, shape of the normalized axes

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x, r = rng.standard_normal((2, 4, 8)).astype(np.float32)
    >>> y, s, rstd = fastnorm.add_rms_norm(x, r, return_stats=True)
    >>> dsum, dweight, dresidual_bias = fastnorm.add_rms_norm_backward(np.ones_like(y), s, rstd)
    >>> dsum.shape, dweight.shape, dresidual_bias.shape
    ((4, 8), (8,), (8,))
    """
    dsum, dw, _ = _norm_backward(False, dy, s, None, rstd, weight, axis, num_threads, ds, "s")
    return dsum, dw, _sum_over_rows(dsum, _layout_of(dsum, axis, False), num_threads)
