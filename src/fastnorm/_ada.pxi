# Included by _core.pyx: adaptive LayerNorm (per-sample shift and scale, as in
# diffusion transformers), forward and backward.

# --------------------------------------------------------------------------
# Adaptive LayerNorm (AdaLN, diffusion transformers)
# --------------------------------------------------------------------------

cdef _Layout _ada_layout(cnp.ndarray x):
    """x as N samples of T rows of D: (N, T, D), or (N, D) with T = 1, or
    (N, ..., D) with T the product of the middle axes."""
    if cnp.PyArray_NDIM(x) < 2:
        raise ValueError(f"x must have shape (N, T, D) or (N, D), got {_shape(x)}")
    return _layout_of(x, -1)


cdef cnp.ndarray _ada_param(object p, cnp.ndarray x, str name):
    """shift or scale: one row of D per sample, shape (N, D), in x's dtype."""
    cdef cnp.ndarray a = _as_float_array(p, name)
    cdef cnp.npy_intp dims[2]
    dims[0] = cnp.PyArray_DIMS(x)[0]
    dims[1] = cnp.PyArray_DIMS(x)[cnp.PyArray_NDIM(x) - 1]
    if _has_float_dtype(a) and not _has_dims(a, dims, 2):
        raise ValueError(
            f"{name} must have shape (N, D) = ({dims[0]}, {dims[1]}) for x of shape "
            f"{_shape(x)}, got {_shape(a)}"
        )
    return _as_param_array(a, x, name)


def ada_layer_norm(x, shift, scale, *, eps=1e-6, out=None, bint return_stats=False,
                   num_threads=None):
    """Adaptive layer normalization (AdaLN), as in diffusion transformers.

    y = layer_norm(x) * (1 + scale[:, None, :]) + shift[:, None, :]: x of
    shape (N, T, D) is normalized over D without affine parameters of its
    own, then scaled and shifted per sample. x may also be (N, D), or
    (N, ..., D) with every middle axis counted as T.

    Parameters
    ----------
    x : array of float32, float64, float16 or bfloat16, (N, T, D)
    shift, scale : arrays of shape (N, D), converted to the computing dtype
        (x's, float32 for 16-bit x)
    eps : float >= 0, default 1e-6
    out : ndarray of x's shape and dtype, optional (may be x)
    return_stats : bool
        Also return ``mean`` and ``rstd`` of shape x.shape[:-1], for
        :func:`ada_layer_norm_backward`.
    num_threads : int, optional

    Returns
    -------
    y, or ``(y, mean, rstd)`` when ``return_stats`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 16, 8)).astype(np.float32)     # (N, T, D)
    >>> shift = rng.standard_normal((2, 8)).astype(np.float32)     # (N, D)
    >>> scale = rng.standard_normal((2, 8)).astype(np.float32)
    >>> y = fastnorm.ada_layer_norm(x, shift, scale)
    >>> expected = fastnorm.layer_norm(x, eps=1e-6) * (1 + scale[:, None]) + shift[:, None]
    >>> bool(np.allclose(y, expected, atol=1e-5))
    True
    """
    cdef cnp.ndarray xa = _as_data(x, "x")
    cdef _Layout layout = _ada_layout(xa)
    cdef cnp.ndarray sh = _ada_param(shift, xa, "shift")
    cdef cnp.ndarray sc = _ada_param(scale, xa, "scale")
    cdef double e = _check_eps(eps)
    cdef int nt = _resolve_threads(num_threads)
    cdef _Output o = _output_for(layout, out, &layout.x_rows, 1)
    if out is not None:
        sh = _copy_if_overwritten(sh, o, xa)
    cdef cnp.ndarray w = np.add(sc, 1, dtype=sc.dtype)  # the per-sample weight 1 + scale
    mean = rstd = None
    if return_stats:
        mean = layout.empty_stats()
        rstd = layout.empty_stats()
    cdef int64_t samples = cnp.PyArray_DIMS(xa)[0]
    cdef int64_t rows = layout.x_rows.rows, n = layout.x_rows.n
    cdef int64_t ldx = layout.x_rows.ld, ldy = o.view.ld
    cdef int64_t per_sample = rows // samples if samples > 0 else 0
    cdef char *xp = layout.x_rows.data
    cdef char *yp = o.view.data
    cdef char *wp = _data_ptr(w)
    cdef char *bp = _data_ptr(sh)
    cdef char *mp = _data_ptr(mean)
    cdef char *rp = _data_ptr(rstd)
    cdef fn_dtype dtype = _data_dtype(xa)
    cdef int rc
    cdef bint fresh = o.fresh
    with nogil:
        if fresh:
            fn_set_output_fresh(1)
        rc = fn_layer_norm_per_sample(dtype, samples, per_sample, n, xp, ldx, yp, ldy, wp, bp, n,
                                      e, mp, rp, nt)
        if fresh:
            fn_set_output_fresh(0)
    _raise_kernel_error(rc)
    o.finish()
    if return_stats:
        return o.dest, mean, rstd
    return o.dest


def ada_layer_norm_backward(dy, x, mean, rstd, scale, *, num_threads=None):
    """Gradients of :func:`ada_layer_norm`.

    ``dx = NB(dy * (1 + scale))``; ``dshift[n] = sum over T of dy``;
    ``dscale[n] = sum over T of dy * xhat``.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray, shape ``(N, T, D)``
        The forward's input.
    mean, rstd : ndarray, shape ``x.shape[:-1]``
        What :func:`ada_layer_norm` returned.
    scale : ndarray, shape ``(N, D)``
        The forward's scale.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dshift, dscale : ndarray, shape ``(N, D)``
        Computed in the computing dtype (x's, float32 for 16-bit x) and
        returned in scale's floating dtype when scale is an array (a float16
        scale gives float16, a float64 scale with float32 x float64), else (a
        list) in the computing dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((2, 16, 8)).astype(np.float32)
    >>> shift, scale = rng.standard_normal((2, 2, 8)).astype(np.float32)
    >>> y, mean, rstd = fastnorm.ada_layer_norm(x, shift, scale, return_stats=True)
    >>> dx, dshift, dscale = fastnorm.ada_layer_norm_backward(np.ones_like(y), x, mean, rstd, scale)
    >>> dx.shape, dshift.shape, dscale.shape
    ((2, 16, 8), (2, 8), (2, 8))
    """
    cdef cnp.ndarray xa = _as_data(x, "x")
    cdef cnp.ndarray dya = _check_like(dy, xa, "dy")
    cdef _Layout layout = _ada_layout(xa)
    cdef cnp.ndarray sc = _ada_param(scale, xa, "scale")
    cdef cnp.ndarray mean_a = _as_stats(mean, layout, "mean")
    cdef cnp.ndarray rstd_a = _as_stats(rstd, layout, "rstd")
    cdef int nt = _resolve_threads(num_threads)
    cdef RowsView dyv
    cdef cnp.ndarray dyw = layout.rows_of(dya, &dyv)
    cdef _Output o = _output_for(layout, None, NULL, 0)
    cdef cnp.ndarray w = np.add(sc, 1, dtype=sc.dtype)
    cdef cnp.ndarray dshift = np.empty_like(w)
    cdef cnp.ndarray dscale = np.empty_like(w)
    cdef int64_t samples = cnp.PyArray_DIMS(xa)[0]
    cdef int64_t rows = layout.x_rows.rows, n = layout.x_rows.n
    cdef int64_t per_sample = rows // samples if samples > 0 else 0
    cdef int64_t ldx = layout.x_rows.ld, lddy = dyv.ld, lddx = o.view.ld
    cdef char *xp = layout.x_rows.data
    cdef char *dyp = dyv.data
    cdef char *dxp = o.view.data
    cdef char *mp = _data_ptr(mean_a)
    cdef char *rp = _data_ptr(rstd_a)
    cdef char *wp = _data_ptr(w)
    cdef char *dscp = _data_ptr(dscale)
    cdef char *dshp = _data_ptr(dshift)
    cdef fn_dtype dtype = _data_dtype(xa)
    cdef int rc
    cdef bint fresh = o.fresh
    with nogil:
        if fresh:
            fn_set_output_fresh(1)
        # dscale and dshift are the per-sample weight's and bias's gradients
        rc = fn_layer_norm_per_sample_backward(dtype, samples, per_sample, n, dyp, lddy, xp, ldx,
                                               mp, rp, wp, n, dxp, lddx, dscp, dshp, nt)
        if fresh:
            fn_set_output_fresh(0)
    _raise_kernel_error(rc)
    o.finish()
    return o.dest, _grad_in_dtype_of(dshift, scale), _grad_in_dtype_of(dscale, scale)
