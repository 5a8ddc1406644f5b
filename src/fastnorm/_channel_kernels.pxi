# Included by _channel.pxi: checked calls of single channel stages, for
# fastnorm.dask's partial passes over the chunks of an array.
#
# They take arrays already laid out (a C-contiguous (S, R, C, L) block of x's
# dtype, statistics of the sizes the C entry points expect) and release the
# GIL around the C call. They still verify dtype, contiguity and size, so that
# no call can reach the C code with a buffer that is too small.

cdef class _KernelArrays:
    """The (S, R, C, L) dimensions of one stage call, and the typed checks of its arrays."""
    cdef ChannelDims d
    cdef int typenum, param_type  # data; parameters and statistics
    cdef int kind

    def __init__(self, cnp.ndarray x not None, int64_t S, int64_t R, int64_t C, int64_t L):
        if S < 0 or R < 0 or C < 0 or L < 0:
            raise ValueError("negative block dimension")
        self.d.S, self.d.R, self.d.C, self.d.L = S, R, C, L
        self.typenum = cnp.PyArray_TYPE(x)
        self.kind = _dtype_code(x)
        if self.kind < 0:
            raise TypeError(f"channel kernels take {_DATA_DTYPES} data")
        self.param_type = _param_typenum(x)
        self.data(x, "x")

    cdef char *check(self, object a, int typenum, int64_t size, str name) except? NULL:
        """The data pointer of a (NULL for None) after checking its type and layout;
        arrays the kernel writes are named with a trailing '!'."""
        if a is None:
            return NULL
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be an ndarray")
        cdef cnp.ndarray arr = <cnp.ndarray>a
        cdef bint write = name.endswith("!")
        cdef bint layout_ok = (cnp.PyArray_ISCARRAY(arr) if write
                               else cnp.PyArray_ISCARRAY_RO(arr))
        if (cnp.PyArray_TYPE(arr) != typenum or not layout_ok or not cnp.PyArray_ISNOTSWAPPED(arr)
                or cnp.PyArray_SIZE(arr) != size):
            raise ValueError(f"{name.rstrip('!')}: expected a C-contiguous, aligned, native "
                             f"{'writeable ' if write else ''}array of {size} elements "
                             f"of type number {typenum}")
        return <char *>cnp.PyArray_DATA(arr)

    cdef char *data(self, object a, str name) except? NULL:
        return self.check(a, self.typenum, self.d.S * self.d.R * self.d.C * self.d.L, name)

    cdef char *typed(self, object a, int64_t size, str name) except? NULL:
        """Parameters and their gradients, and statistics in the parameter type."""
        return self.check(a, self.param_type, size, name)

    cdef double *stats(self, object a, str name) except? NULL:
        return <double *>self.check(a, cnp.NPY_DOUBLE, self.d.S * self.d.C, name)




def _channel_normalize_kernel(cnp.ndarray x, cnp.ndarray y, int64_t S, int64_t R, int64_t C,
                              int64_t L, mean, rstd, weight, bias, bint accumulate,
                              int num_threads):
    cdef _KernelArrays K = _KernelArrays(x, S, R, C, L)
    cdef char *xp = K.data(x, "x")
    cdef char *yp = K.data(y, "y!")
    cdef double *mp = K.stats(mean, "mean")
    cdef double *rp = K.stats(rstd, "rstd")
    cdef char *wp = K.typed(weight, C, "weight")
    cdef char *bp = K.typed(bias, C, "bias")
    if mp == NULL or rp == NULL:
        raise ValueError("mean and rstd are required")
    cdef int rc
    with nogil:
        rc = _call_channel_normalize(K.kind, K.d, xp, yp, mp, rp, wp, bp, accumulate,
                                     num_threads)
    _channel_error(rc)


def _channel_sums_kernel(cnp.ndarray dy, cnp.ndarray x, int64_t S, int64_t R, int64_t C,
                         int64_t L, mu, sum_dy, sum_dyx, int num_threads):
    cdef _KernelArrays K = _KernelArrays(x, S, R, C, L)
    cdef char *dyp = K.data(dy, "dy")
    cdef char *xp = K.data(x, "x")
    cdef double *mp = K.stats(mu, "mu")
    cdef double *sp = K.stats(sum_dy, "sum_dy!")
    cdef double *sxp = K.stats(sum_dyx, "sum_dyx!")
    if mp == NULL or sp == NULL or sxp == NULL:
        raise ValueError("mu, sum_dy and sum_dyx are required")
    cdef int rc
    with nogil:
        rc = _call_channel_sums(K.kind, K.d, dyp, xp, mp, sp, sxp, num_threads)
    _channel_error(rc)


def _channel_sums_scale_kernel(cnp.ndarray dy, cnp.ndarray x, int64_t S, int64_t R, int64_t C,
                               int64_t L, mu, sum_dy, sum_dyx, cnp.ndarray dx, a,
                               int num_threads):
    """The gradient sums about mu and dx = a * dy, in one pass over dy."""
    cdef _KernelArrays K = _KernelArrays(x, S, R, C, L)
    cdef char *dyp = K.data(dy, "dy")
    cdef char *xp = K.data(x, "x")
    cdef char *dxp = K.data(dx, "dx!")
    cdef double *mp = K.stats(mu, "mu")
    cdef double *sp = K.stats(sum_dy, "sum_dy!")
    cdef double *sxp = K.stats(sum_dyx, "sum_dyx!")
    cdef double *ap = K.stats(a, "a")
    if mp == NULL or sp == NULL or sxp == NULL or ap == NULL:
        raise ValueError("mu, sum_dy, sum_dyx and a are required")
    cdef int rc
    with nogil:
        rc = _call_channel_sums_scale(K.kind, K.d, dyp, xp, mp, sp, sxp, dxp, ap, num_threads)
    _channel_error(rc)


def _channel_affine_backward_kernel(cnp.ndarray dy, cnp.ndarray x, cnp.ndarray dx, int64_t S,
                                    int64_t R, int64_t C, int64_t L, mu, r, a, b, k,
                                    bint accumulate, int num_threads):
    cdef _KernelArrays K = _KernelArrays(x, S, R, C, L)
    cdef char *dyp = K.data(dy, "dy")
    cdef char *xp = K.data(x, "x")
    cdef char *dxp = K.data(dx, "dx!")
    cdef double *mp = K.stats(mu, "mu")
    cdef double *rp = K.stats(r, "r")
    cdef double *ap = K.stats(a, "a")
    cdef double *bp = K.stats(b, "b")
    cdef double *kp = K.stats(k, "k")
    if mp == NULL or rp == NULL or ap == NULL or bp == NULL or kp == NULL:
        raise ValueError("mu, r, a, b and k are required")
    cdef int rc
    with nogil:
        rc = _call_channel_affine_backward(K.kind, K.d, dyp, xp, dxp, mp, rp, ap, bp, kp,
                                           accumulate, num_threads)
    _channel_error(rc)
