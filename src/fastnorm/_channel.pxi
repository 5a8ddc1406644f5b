# Included by _core.pyx: the calls into the channel normalizers' C stages.
#
# These take arrays already checked and laid out by fastnorm._family (a
# C-contiguous (S, R, C, L) block of x's dtype, statistics of the sizes the C
# entry points expect) and release the GIL around the C call. They still
# verify dtype, contiguity and size, so that no call can reach the C code
# with a buffer that is too small.

# The entry points it calls are declared in _entry_points.pxi (generated),
# which _core.pyx includes first.


cdef class _Block:
    """The (S, R, C, L) shape of a channel call, and the typed checks of its arrays."""
    cdef int64_t S, R, C, L
    cdef int typenum, ptype  # data; parameters and statistics
    cdef int kind

    def __init__(self, cnp.ndarray x not None, int64_t S, int64_t R, int64_t C, int64_t L):
        if S < 0 or R < 0 or C < 0 or L < 0:
            raise ValueError("negative block dimension")
        self.S, self.R, self.C, self.L = S, R, C, L
        self.typenum = cnp.PyArray_TYPE(x)
        self.kind = _kind(x)
        if self.kind < 0:
            raise TypeError(f"channel kernels take {_DATA_DTYPES} data")
        self.ptype = _calc_type(x)
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
        return self.check(a, self.typenum, self.S * self.R * self.C * self.L, name)

    cdef char *typed(self, object a, int64_t size, str name) except? NULL:
        """Parameters and their gradients, and statistics in the parameter type."""
        return self.check(a, self.ptype, size, name)

    cdef char *stats(self, object a, str name) except? NULL:
        return self.check(a, cnp.NPY_DOUBLE, self.S * self.C, name)


cdef inline void _chan_error(int rc) except *:
    if rc == FASTNORM_EINVAL:
        raise ValueError("the number of channels must be divisible by the number of groups")
    _raise_kernel_error(rc)


def _group_norm_kernel(cnp.ndarray x, cnp.ndarray y, int64_t S, int64_t R, int64_t C,
                       int64_t L, int64_t G, weight, bias, double eps, mean, rstd, var,
                       int num_threads):
    cdef _Block B = _Block(x, S, R, C, L)
    if G <= 0 or C % G:
        raise ValueError("the number of channels must be divisible by the number of groups")
    cdef char *xp = B.data(x, "x")
    cdef char *yp = B.data(y, "y!")
    cdef char *wp = B.typed(weight, C, "weight")
    cdef char *bp = B.typed(bias, C, "bias")
    cdef char *mp = B.typed(mean, S * G, "mean!")
    cdef char *rp = B.typed(rstd, S * G, "rstd!")
    cdef char *vp = B.typed(var, S * G, "var!")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_group_norm_f32(S, R, C, L, G, <float *>xp, <float *>yp, <float *>wp,
                                         <float *>bp, eps, <float *>mp, <float *>rp,
                                         <float *>vp, num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_group_norm_f64(S, R, C, L, G, <double *>xp, <double *>yp,
                                         <double *>wp, <double *>bp, eps, <double *>mp,
                                         <double *>rp, <double *>vp, num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_group_norm_f16(S, R, C, L, G, <uint16_t *>xp, <uint16_t *>yp, <float *>wp,
                                         <float *>bp, eps, <float *>mp, <float *>rp,
                                         <float *>vp, num_threads)
        else:
            rc = fastnorm_group_norm_bf16(S, R, C, L, G, <uint16_t *>xp, <uint16_t *>yp,
            <float *>wp,
                                         <float *>bp, eps, <float *>mp, <float *>rp,
                                         <float *>vp, num_threads)
    _chan_error(rc)


def _group_norm_backward_kernel(cnp.ndarray dy, cnp.ndarray x, int64_t S, int64_t R,
                                int64_t C, int64_t L, int64_t G, mean, rstd, weight,
                                cnp.ndarray dx, dweight, dbias, int num_threads):
    cdef _Block B = _Block(x, S, R, C, L)
    if G <= 0 or C % G:
        raise ValueError("the number of channels must be divisible by the number of groups")
    cdef char *dyp = B.data(dy, "dy")
    cdef char *xp = B.data(x, "x")
    cdef char *dxp = B.data(dx, "dx!")
    cdef char *mp = B.typed(mean, S * G, "mean")
    cdef char *rp = B.typed(rstd, S * G, "rstd")
    cdef char *wp = B.typed(weight, C, "weight")
    cdef char *dwp = B.typed(dweight, C, "dweight!")
    cdef char *dbp = B.typed(dbias, C, "dbias!")
    if mp == NULL or rp == NULL:
        raise ValueError("mean and rstd are required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_group_norm_backward_f32(S, R, C, L, G, <float *>dyp, <float *>xp,
                                                  <float *>mp, <float *>rp, <float *>wp,
                                                  <float *>dxp, <float *>dwp, <float *>dbp,
                                                  num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_group_norm_backward_f64(S, R, C, L, G, <double *>dyp, <double *>xp,
                                                  <double *>mp, <double *>rp, <double *>wp,
                                                  <double *>dxp, <double *>dwp, <double *>dbp,
                                                  num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_group_norm_backward_f16(S, R, C, L, G, <uint16_t *>dyp, <uint16_t *>xp,
                                                  <float *>mp, <float *>rp, <float *>wp,
                                                  <uint16_t *>dxp, <float *>dwp, <float *>dbp,
                                                  num_threads)
        else:
            rc = fastnorm_group_norm_backward_bf16(S, R, C, L, G, <uint16_t *>dyp, <uint16_t *>xp,
                                                  <float *>mp, <float *>rp, <float *>wp,
                                                  <uint16_t *>dxp, <float *>dwp, <float *>dbp,
                                                  num_threads)
    _chan_error(rc)


def _channel_moments_kernel(cnp.ndarray x, int64_t S, int64_t R, int64_t C, int64_t L,
                            double eps, mean, var, int num_threads):
    cdef _Block B = _Block(x, S, R, C, L)
    cdef char *xp = B.data(x, "x")
    cdef char *mp = B.stats(mean, "mean!")
    cdef char *vp = B.stats(var, "var!")
    if mp == NULL or vp == NULL:
        raise ValueError("mean and var are required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_channel_moments_f32(S, R, C, L, <float *>xp, eps, <double *>mp,
                                              <double *>vp, num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_channel_moments_f64(S, R, C, L, <double *>xp, eps, <double *>mp,
                                              <double *>vp, num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_channel_moments_f16(S, R, C, L, <uint16_t *>xp, eps, <double *>mp,
                                              <double *>vp, num_threads)
        else:
            rc = fastnorm_channel_moments_bf16(S, R, C, L, <uint16_t *>xp, eps, <double *>mp,
                                              <double *>vp, num_threads)
    _chan_error(rc)


def _channel_normalize_kernel(cnp.ndarray x, cnp.ndarray y, int64_t S, int64_t R, int64_t C,
                              int64_t L, mean, rstd, weight, bias, bint accumulate,
                              int num_threads):
    cdef _Block B = _Block(x, S, R, C, L)
    cdef char *xp = B.data(x, "x")
    cdef char *yp = B.data(y, "y!")
    cdef char *mp = B.stats(mean, "mean")
    cdef char *rp = B.stats(rstd, "rstd")
    cdef char *wp = B.typed(weight, C, "weight")
    cdef char *bp = B.typed(bias, C, "bias")
    if mp == NULL or rp == NULL:
        raise ValueError("mean and rstd are required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_channel_normalize_f32(S, R, C, L, <float *>xp, <float *>yp,
                                                <double *>mp, <double *>rp, <float *>wp,
                                                <float *>bp, accumulate, num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_channel_normalize_f64(S, R, C, L, <double *>xp, <double *>yp,
                                                <double *>mp, <double *>rp, <double *>wp,
                                                <double *>bp, accumulate, num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_channel_normalize_f16(S, R, C, L, <uint16_t *>xp, <uint16_t *>yp,
                                                <double *>mp, <double *>rp, <float *>wp,
                                                <float *>bp, accumulate, num_threads)
        else:
            rc = fastnorm_channel_normalize_bf16(S, R, C, L, <uint16_t *>xp, <uint16_t *>yp,
                                                <double *>mp, <double *>rp, <float *>wp,
                                                <float *>bp, accumulate, num_threads)
    _chan_error(rc)


def _channel_sums_kernel(cnp.ndarray dy, cnp.ndarray x, int64_t S, int64_t R, int64_t C,
                         int64_t L, mu, sum_dy, sum_dyx, int num_threads):
    cdef _Block B = _Block(x, S, R, C, L)
    cdef char *dyp = B.data(dy, "dy")
    cdef char *xp = B.data(x, "x")
    cdef char *mp = B.stats(mu, "mu")
    cdef char *sp = B.stats(sum_dy, "sum_dy!")
    cdef char *sxp = B.stats(sum_dyx, "sum_dyx!")
    if mp == NULL or sp == NULL or sxp == NULL:
        raise ValueError("mu, sum_dy and sum_dyx are required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_channel_sums_f32(S, R, C, L, <float *>dyp, <float *>xp, <double *>mp,
                                           <double *>sp, <double *>sxp, num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_channel_sums_f64(S, R, C, L, <double *>dyp, <double *>xp,
                                           <double *>mp, <double *>sp, <double *>sxp,
                                           num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_channel_sums_f16(S, R, C, L, <uint16_t *>dyp, <uint16_t *>xp,
            <double *>mp,
                                           <double *>sp, <double *>sxp, num_threads)
        else:
            rc = fastnorm_channel_sums_bf16(S, R, C, L, <uint16_t *>dyp, <uint16_t *>xp,
            <double *>mp,
                                           <double *>sp, <double *>sxp, num_threads)
    _chan_error(rc)


def _channel_sums_scale_kernel(cnp.ndarray dy, cnp.ndarray x, int64_t S, int64_t R, int64_t C,
                               int64_t L, mu, sum_dy, sum_dyx, cnp.ndarray dx, a,
                               int num_threads):
    """The gradient sums about mu and dx = a * dy, in one pass over dy."""
    cdef _Block B = _Block(x, S, R, C, L)
    cdef char *dyp = B.data(dy, "dy")
    cdef char *xp = B.data(x, "x")
    cdef char *dxp = B.data(dx, "dx!")
    cdef char *mp = B.stats(mu, "mu")
    cdef char *sp = B.stats(sum_dy, "sum_dy!")
    cdef char *sxp = B.stats(sum_dyx, "sum_dyx!")
    cdef char *ap = B.stats(a, "a")
    if mp == NULL or sp == NULL or sxp == NULL or ap == NULL:
        raise ValueError("mu, sum_dy, sum_dyx and a are required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_channel_sums_scale_f32(S, R, C, L, <float *>dyp, <float *>xp,
                                                 <double *>mp, <double *>sp, <double *>sxp,
                                                 <float *>dxp, <double *>ap, num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_channel_sums_scale_f64(S, R, C, L, <double *>dyp, <double *>xp,
                                                 <double *>mp, <double *>sp, <double *>sxp,
                                                 <double *>dxp, <double *>ap, num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_channel_sums_scale_f16(S, R, C, L, <uint16_t *>dyp, <uint16_t *>xp,
                                                 <double *>mp, <double *>sp, <double *>sxp,
                                                 <uint16_t *>dxp, <double *>ap, num_threads)
        else:
            rc = fastnorm_channel_sums_scale_bf16(S, R, C, L, <uint16_t *>dyp,
                                                  <uint16_t *>xp, <double *>mp, <double *>sp,
                                                  <double *>sxp, <uint16_t *>dxp,
                                                  <double *>ap, num_threads)
    _chan_error(rc)


def _channel_affine_backward_kernel(cnp.ndarray dy, cnp.ndarray x, cnp.ndarray dx, int64_t S,
                                    int64_t R, int64_t C, int64_t L, mu, r, a, b, k,
                                    bint accumulate, int num_threads):
    cdef _Block B = _Block(x, S, R, C, L)
    cdef char *dyp = B.data(dy, "dy")
    cdef char *xp = B.data(x, "x")
    cdef char *dxp = B.data(dx, "dx!")
    cdef char *mp = B.stats(mu, "mu")
    cdef char *rp = B.stats(r, "r")
    cdef char *ap = B.stats(a, "a")
    cdef char *bp = B.stats(b, "b")
    cdef char *kp = B.stats(k, "k")
    if mp == NULL or rp == NULL or ap == NULL or bp == NULL or kp == NULL:
        raise ValueError("mu, r, a, b and k are required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_channel_affine_backward_f32(
                S, R, C, L, <float *>dyp, <float *>xp, <float *>dxp, <double *>mp,
                <double *>rp, <double *>ap, <double *>bp, <double *>kp, accumulate,
                num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_channel_affine_backward_f64(
                S, R, C, L, <double *>dyp, <double *>xp, <double *>dxp, <double *>mp,
                <double *>rp, <double *>ap, <double *>bp, <double *>kp, accumulate,
                num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_channel_affine_backward_f16(
                S, R, C, L, <uint16_t *>dyp, <uint16_t *>xp, <uint16_t *>dxp, <double *>mp,
                <double *>rp, <double *>ap, <double *>bp, <double *>kp, accumulate,
                num_threads)
        else:
            rc = fastnorm_channel_affine_backward_bf16(
                S, R, C, L, <uint16_t *>dyp, <uint16_t *>xp, <uint16_t *>dxp, <double *>mp,
                <double *>rp, <double *>ap, <double *>bp, <double *>kp, accumulate,
                num_threads)
    _chan_error(rc)


def _weight_norm_kernel(cnp.ndarray v, cnp.ndarray w, int64_t C, int64_t L, g, double eps,
                        int num_threads):
    """w = g * v / norm per row of the (C, L) rows of v (g: C doubles)."""
    cdef _Block B = _Block(v, 1, 1, C, L)
    cdef char *vp = B.data(v, "v")
    cdef char *wp = B.data(w, "w!")
    cdef char *gp = B.stats(g, "g")
    if gp == NULL:
        raise ValueError("g is required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_weight_norm_f32(C, L, <float *>vp, <double *>gp, eps, <float *>wp,
                                          num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_weight_norm_f64(C, L, <double *>vp, <double *>gp, eps,
                                          <double *>wp, num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_weight_norm_f16(C, L, <uint16_t *>vp, <double *>gp, eps,
                                          <uint16_t *>wp, num_threads)
        else:
            rc = fastnorm_weight_norm_bf16(C, L, <uint16_t *>vp, <double *>gp, eps,
                                           <uint16_t *>wp, num_threads)
    _chan_error(rc)


def _weight_norm_backward_kernel(cnp.ndarray dw, cnp.ndarray v, cnp.ndarray dv, int64_t C,
                                 int64_t L, g, double eps, dg, int num_threads):
    """dv and dg (C doubles) of weight norm per row of the (C, L) rows of v."""
    cdef _Block B = _Block(v, 1, 1, C, L)
    cdef char *dwp = B.data(dw, "dw")
    cdef char *vp = B.data(v, "v")
    cdef char *dvp = B.data(dv, "dv!")
    cdef char *gp = B.stats(g, "g")
    cdef char *dgp = B.stats(dg, "dg!")
    if gp == NULL or dgp == NULL:
        raise ValueError("g and dg are required")
    cdef int rc
    with nogil:
        if B.kind == K_F32:
            rc = fastnorm_weight_norm_backward_f32(C, L, <float *>dwp, <float *>vp,
                                                   <double *>gp, eps, <float *>dvp,
                                                   <double *>dgp, num_threads)
        elif B.kind == K_F64:
            rc = fastnorm_weight_norm_backward_f64(C, L, <double *>dwp, <double *>vp,
                                                   <double *>gp, eps, <double *>dvp,
                                                   <double *>dgp, num_threads)
        elif B.kind == K_F16:
            rc = fastnorm_weight_norm_backward_f16(C, L, <uint16_t *>dwp, <uint16_t *>vp,
                                                   <double *>gp, eps, <uint16_t *>dvp,
                                                   <double *>dgp, num_threads)
        else:
            rc = fastnorm_weight_norm_backward_bf16(C, L, <uint16_t *>dwp, <uint16_t *>vp,
                                                    <double *>gp, eps, <uint16_t *>dvp,
                                                    <double *>dgp, num_threads)
    _chan_error(rc)


# Argument helpers shared with fastnorm._family, so that every function names
# its arguments in the same words.

def _data_arg(obj, name):
    return _as_data(obj, name)


def _eps_arg(eps):
    return _check_eps(eps)


def _threads_arg(num_threads):
    return _resolve_threads(num_threads)


def _axes_arg(axis, int ndim, str xname="x"):
    return _normalize_axes(axis, ndim, xname)


def _same_data(cnp.ndarray a not None, cnp.ndarray b not None):
    """Whether a and b start at the same address (an in-place call)."""
    return cnp.PyArray_DATA(a) == cnp.PyArray_DATA(b)


cdef void _bounds(cnp.ndarray a, uintptr_t *lo, uintptr_t *hi):
    """The bytes a's elements span, [lo, hi); empty (lo == hi) with no elements."""
    cdef int j
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(a)
    cdef cnp.npy_intp neg = 0, pos = 0, step
    lo[0] = hi[0] = <uintptr_t>cnp.PyArray_DATA(a)
    for j in range(cnp.PyArray_NDIM(a)):
        if shape[j] == 0:
            return
        step = (shape[j] - 1) * strides[j]
        if step < 0:
            neg += step
        else:
            pos += step
    lo[0] = <uintptr_t>(<char *>cnp.PyArray_DATA(a) + neg)
    hi[0] = <uintptr_t>(<char *>cnp.PyArray_DATA(a) + pos + cnp.PyArray_ITEMSIZE(a))


cdef bint _meets(cnp.ndarray a, object b):
    """Whether the bytes of a and of b (an ndarray, or None: no) meet."""
    if b is None:
        return False
    cdef uintptr_t alo, ahi, blo, bhi
    _bounds(a, &alo, &ahi)
    _bounds(<cnp.ndarray>b, &blo, &bhi)
    return alo < ahi and blo < bhi and alo < bhi and blo < ahi


def _bounds_overlap(cnp.ndarray out not None, tuple sources, cnp.ndarray skip=None):
    """Whether the bytes out spans meet those of any array in sources (None
    entries and `skip` left out): np.may_share_memory's bounds test, without
    its cost per call."""
    for s in sources:
        if s is not None and s is not skip and _meets(out, <cnp.ndarray?>s):
            return True
    return False


cdef inline double _load_real(char *p, bint f32) noexcept nogil:
    """One float32 or float64 value, at any alignment, as a double."""
    cdef float f
    cdef double d
    if f32:
        memcpy(&f, p, sizeof(float))
        return f
    memcpy(&d, p, sizeof(double))
    return d


cdef inline void _store_real(char *p, bint f32, double v) noexcept nogil:
    """v rounded to float32 (nearest even) or kept as float64, at any alignment."""
    cdef float f
    if f32:
        f = <float>v
        memcpy(p, &f, sizeof(float))
    else:
        memcpy(p, &v, sizeof(double))


cdef bint _is_real_vector(cnp.ndarray a, cnp.npy_intp C):
    return (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_DIM(a, 0) == C
            and cnp.PyArray_TYPE(a) in (cnp.NPY_FLOAT, cnp.NPY_DOUBLE)
            and cnp.PyArray_ISNOTSWAPPED(a))


def _frozen_stats(cnp.ndarray running_mean not None, cnp.ndarray running_var not None,
                  double eps):
    """Frozen per-channel statistics in float64 from float32 or float64 running
    statistics of shape (C,), any stride: (mean, 1 / sqrt(var + eps)). Where
    some var + eps is not positive, rstd comes from NumPy's ufuncs instead
    (the same values, with NumPy's warnings and np.errstate)."""
    if cnp.PyArray_NDIM(running_mean) != 1:
        raise ValueError("running statistics of a float dtype and shape (C,) are required")
    cdef cnp.npy_intp C = cnp.PyArray_DIM(running_mean, 0), c
    if not (_is_real_vector(running_mean, C) and _is_real_vector(running_var, C)):
        raise ValueError("running statistics of a float dtype and shape (C,) are required")
    cdef cnp.ndarray mean = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray rstd = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
    cdef double *m = <double *>cnp.PyArray_DATA(mean)
    cdef double *r = <double *>cnp.PyArray_DATA(rstd)
    cdef char *pm = <char *>cnp.PyArray_DATA(running_mean)
    cdef char *pv = <char *>cnp.PyArray_DATA(running_var)
    cdef cnp.npy_intp sm = cnp.PyArray_STRIDE(running_mean, 0)
    cdef cnp.npy_intp sv = cnp.PyArray_STRIDE(running_var, 0)
    cdef bint fm = cnp.PyArray_TYPE(running_mean) == cnp.NPY_FLOAT
    cdef bint fv = cnp.PyArray_TYPE(running_var) == cnp.NPY_FLOAT
    cdef double d
    cdef bint plain = True
    for c in range(C):  # at any alignment: the running statistics may be unaligned
        m[c] = _load_real(pm + c * sm, fm)
        d = _load_real(pv + c * sv, fv) + eps
        plain = plain and d > 0
        r[c] = 1.0 / sqrt(d)
    if not plain:  # a zero, negative or NaN variance
        rstd = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    return mean, rstd


def _running_update(cnp.ndarray running_mean not None, cnp.ndarray running_var not None,
                    cnp.ndarray mean not None, cnp.ndarray var not None, double count,
                    double momentum):
    """In place: running = (1 - momentum) * running + momentum * batch, in
    float64 and rounded once to the running statistics' dtype, the batch
    variance made unbiased (var * count / (count - 1); NaN for one value).
    All four arrays of shape (C,), float32 or float64, any stride. The new
    means are all computed before any is stored, then the variances (as two
    whole-array assignments, whatever the arrays' overlaps); where a value is
    infinite, NumPy's ufuncs do it (the same values, with NumPy's warnings and
    np.errstate)."""
    if cnp.PyArray_NDIM(running_mean) != 1:
        raise ValueError("running and batch statistics of shape (C,) and a float dtype "
                         "are required")
    cdef cnp.npy_intp C = cnp.PyArray_DIM(running_mean, 0), c
    if not (_is_real_vector(running_mean, C) and _is_real_vector(running_var, C)
            and _is_real_vector(mean, C) and _is_real_vector(var, C)
            and cnp.PyArray_ISWRITEABLE(running_mean) and cnp.PyArray_ISWRITEABLE(running_var)):
        raise ValueError("running and batch statistics of shape (C,) and a float dtype "
                         "are required")
    cdef char *pm = <char *>cnp.PyArray_DATA(running_mean)
    cdef char *pv = <char *>cnp.PyArray_DATA(running_var)
    cdef char *bm = <char *>cnp.PyArray_DATA(mean)
    cdef char *bv = <char *>cnp.PyArray_DATA(var)
    cdef cnp.npy_intp spm = cnp.PyArray_STRIDE(running_mean, 0)
    cdef cnp.npy_intp spv = cnp.PyArray_STRIDE(running_var, 0)
    cdef cnp.npy_intp sbm = cnp.PyArray_STRIDE(mean, 0)
    cdef cnp.npy_intp sbv = cnp.PyArray_STRIDE(var, 0)
    cdef bint fpm = cnp.PyArray_TYPE(running_mean) == cnp.NPY_FLOAT
    cdef bint fpv = cnp.PyArray_TYPE(running_var) == cnp.NPY_FLOAT
    cdef bint fbm = cnp.PyArray_TYPE(mean) == cnp.NPY_FLOAT
    cdef bint fbv = cnp.PyArray_TYPE(var) == cnp.NPY_FLOAT
    cdef double keep = 1.0 - momentum, unbias = NAN
    if count > 1:
        unbias = count / (count - 1.0)
    cdef bint finite = True
    for c in range(C):
        finite = (finite and isfinite(_load_real(pm + c * spm, fpm))
                  and isfinite(_load_real(pv + c * spv, fpv))
                  and isfinite(_load_real(bm + c * sbm, fbm))
                  and isfinite(_load_real(bv + c * sbv, fbv)))
    if not finite:
        running_mean[...] = (keep * running_mean.astype(np.float64)
                             + momentum * mean.astype(np.float64))
        unbiased = var.astype(np.float64) * unbias if count > 1 else np.full(C, np.nan)
        running_var[...] = keep * running_var.astype(np.float64) + momentum * unbiased
        return
    cdef cnp.ndarray tmp = cnp.PyArray_EMPTY(1, &C, cnp.NPY_DOUBLE, 0)
    cdef double *t = <double *>cnp.PyArray_DATA(tmp)
    for c in range(C):
        t[c] = keep * _load_real(pm + c * spm, fpm) + momentum * _load_real(bm + c * sbm, fbm)
    for c in range(C):
        _store_real(pm + c * spm, fpm, t[c])
    for c in range(C):
        t[c] = keep * _load_real(pv + c * spv, fpv) + momentum * (
            _load_real(bv + c * sbv, fbv) * unbias)
    for c in range(C):
        _store_real(pv + c * spv, fpv, t[c])


def _frozen_backward_kernel(cnp.ndarray dy, cnp.ndarray x, int64_t S, int64_t R, int64_t C,
                            int64_t L, cnp.ndarray mean, cnp.ndarray rstd, weight,
                            cnp.ndarray dx, bint want_dw, bint want_db, int num_threads):
    """The backward with frozen per-channel statistics (mean, rstd of shape
    (C,) in the parameter type): dx = dy * weight * rstd, and dweight =
    rstd * sum(dy * (x - mean)), dbias = sum(dy), summed in float64 and
    rounded once to the parameter type (None where not wanted)."""
    cdef _Block B = _Block(x, S, R, C, L)
    cdef char *mp = B.typed(mean, C, "mean")
    cdef char *rp = B.typed(rstd, C, "rstd")
    cdef char *wp = B.typed(weight, C, "weight")
    if mp == NULL or rp == NULL:
        raise ValueError("mean and rstd are required")
    cdef cnp.npy_intp nc = C
    cdef cnp.ndarray mu = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray coef = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray sum_dy = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef cnp.ndarray sum_dyx = cnp.PyArray_EMPTY(1, &nc, cnp.NPY_DOUBLE, 0)
    cdef double *m64 = <double *>cnp.PyArray_DATA(mu)
    cdef double *c64 = <double *>cnp.PyArray_DATA(coef)
    cdef bint f32 = B.ptype == cnp.NPY_FLOAT
    cdef int64_t c, isz = sizeof(float) if f32 else sizeof(double)
    for c in range(C):
        m64[c] = _load_real(mp + c * isz, f32)
        c64[c] = _load_real(rp + c * isz, f32)
        if wp != NULL:
            c64[c] = _load_real(wp + c * isz, f32) * c64[c]
    _channel_sums_scale_kernel(dy, x, S, R, C, L, mu, sum_dy, sum_dyx, dx, coef, num_threads)
    cdef cnp.ndarray dw = None, db = None
    cdef double *sdy = <double *>cnp.PyArray_DATA(sum_dy)
    cdef double *sdx = <double *>cnp.PyArray_DATA(sum_dyx)
    if want_dw:
        dw = cnp.PyArray_EMPTY(1, &nc, B.ptype, 0)
        for c in range(C):
            _store_real(<char *>cnp.PyArray_DATA(dw) + c * isz, f32,
                        sdx[c] * _load_real(rp + c * isz, f32))
    if want_db:
        db = cnp.PyArray_EMPTY(1, &nc, B.ptype, 0)
        for c in range(C):
            _store_real(<char *>cnp.PyArray_DATA(db) + c * isz, f32, sdy[c])
    return dw, db


cdef cnp.ndarray _fast_data(object x):
    """x for the channel fast paths -- an exact ndarray of a data dtype,
    C-contiguous, aligned, native, of two or more axes and some elements --
    or None."""
    if type(x) is not np.ndarray:
        return None
    cdef cnp.ndarray xa = <cnp.ndarray>x
    if (cnp.PyArray_NDIM(xa) < 2 or _kind(xa) < 0 or not cnp.PyArray_ISCARRAY_RO(xa)
            or not cnp.PyArray_ISNOTSWAPPED(xa) or cnp.PyArray_SIZE(xa) == 0):
        return None
    # the plain dtype of its type number (not one carrying metadata, which the
    # general path's results keep and arrays made from the number would not)
    plain = cnp.PyArray_DescrFromType(cnp.PyArray_TYPE(xa))
    if <object>cnp.PyArray_DESCR(xa) is not plain:
        return None
    return xa


cdef bint _fast_param(object p, int64_t C, int ptype):
    """Whether a parameter (None, or an exact C-contiguous native ndarray of
    shape (C,) in the computing dtype) needs none of the general path's work."""
    if p is None:
        return True
    if type(p) is not np.ndarray:
        return False
    cdef cnp.ndarray a = <cnp.ndarray>p
    return (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_DIM(a, 0) == C
            and cnp.PyArray_TYPE(a) == ptype and cnp.PyArray_ISCARRAY_RO(a)
            and cnp.PyArray_ISNOTSWAPPED(a))


cdef object _fast_target(object out, cnp.ndarray xa, object weight, object bias):
    """The array a fast path writes: a new one without out; out itself where it
    is a C-contiguous, aligned, native, writeable array of x's shape and dtype
    that is x itself or shares no byte with x, weight or bias; else None (the
    general path then handles out)."""
    if out is None:
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(xa), cnp.PyArray_DIMS(xa),
                                 cnp.PyArray_TYPE(xa), 0)
    if type(out) is not np.ndarray:
        return None
    cdef cnp.ndarray o = <cnp.ndarray>out
    if (not cnp.PyArray_ISCARRAY(o) or not cnp.PyArray_ISNOTSWAPPED(o)
            or cnp.PyArray_TYPE(o) != cnp.PyArray_TYPE(xa) or not _same_shape(o, xa)):
        return None
    if cnp.PyArray_DATA(o) != cnp.PyArray_DATA(xa) and _meets(o, xa):
        return None
    if _meets(o, weight) or _meets(o, bias):
        return None
    return o


cdef int64_t _trailing(cnp.ndarray a, int first):
    """The product of a's dimensions from `first` on."""
    cdef int64_t n = 1
    cdef int j
    for j in range(first, cnp.PyArray_NDIM(a)):
        n *= cnp.PyArray_DIMS(a)[j]
    return n


cdef object _groups_fast(cnp.ndarray xa, int64_t G, object weight, object bias, double eps,
                         object out, object return_stats, object num_threads):
    """The end of the group_norm and instance_norm fast paths, after their own
    checks: G groups per sample of x (NCHW, as _fast_data takes it), weight
    and bias as _fast_param takes them, out as _fast_target takes it; else
    None."""
    cdef int64_t S = cnp.PyArray_DIMS(xa)[0], C = cnp.PyArray_DIMS(xa)[1]
    cdef int ptype = _calc_type(xa)
    if not _fast_param(weight, C, ptype) or not _fast_param(bias, C, ptype):
        return None
    y = _fast_target(out, xa, weight, bias)
    if y is None:
        return None
    cdef int nt = _resolve_threads(num_threads)
    cdef cnp.npy_intp sdims[2]
    sdims[0] = S
    sdims[1] = G
    cdef cnp.ndarray mean = cnp.PyArray_EMPTY(2, sdims, ptype, 0)
    cdef cnp.ndarray rstd = cnp.PyArray_EMPTY(2, sdims, ptype, 0)
    _group_norm_kernel(xa, y, S, 1, C, _trailing(xa, 2), G, weight, bias, eps, mean, rstd,
                       None, nt)
    return (y, mean, rstd) if return_stats else y


def _group_norm_fast(x, num_groups, weight, bias, eps, axis, out, return_stats, num_threads):
    """fastnorm.group_norm for the common call, with no Python step between
    the checks and the kernel: x as _fast_data takes it, channels on axis 1,
    an int num_groups dividing them, no out or one _fast_target takes, a float
    eps, weight and bias as _fast_param takes them. Anything else returns
    None, and the caller's general path (which checks and names every
    argument) runs instead; what this computes is what that path computes."""
    if type(axis) is not int or axis != 1 or type(eps) is not float or type(num_groups) is not int:
        return None
    cdef cnp.ndarray xa = _fast_data(x)
    if xa is None:
        return None
    cdef double e = <double>eps
    cdef int64_t C = cnp.PyArray_DIMS(xa)[1]
    if not 0 < num_groups <= C:  # on the Python int, before it meets a C type
        return None
    cdef int64_t G = <int64_t>num_groups
    if not (e >= 0.0) or isinf(e) or C % G != 0:
        return None
    return _groups_fast(xa, G, weight, bias, e, out, return_stats, num_threads)


def _instance_norm_fast(x, weight, bias, running_mean, running_var, training, momentum, eps,
                        axis, out, return_stats, num_threads):
    """fastnorm.instance_norm with the input's statistics and no running
    statistics, for the common call: x as _fast_data takes it, channels on
    axis 1 (more than one element each when training), training an exact
    bool, float eps and momentum, no out or one _fast_target takes, weight and
    bias as _fast_param takes them. Anything else returns None, and the
    caller's general path (which checks and names every argument) runs
    instead; what this computes is what that path computes."""
    if (running_mean is not None or running_var is not None
            or (training is not True and training is not False)
            or type(axis) is not int or axis != 1 or type(eps) is not float
            or type(momentum) is not float):
        return None
    cdef cnp.ndarray xa = _fast_data(x)
    if xa is None:
        return None
    cdef double e = <double>eps, m = <double>momentum
    if (not (e >= 0.0) or isinf(e) or not (0.0 <= m <= 1.0)
            or (training and _trailing(xa, 2) == 1)):
        return None
    # one group per channel
    return _groups_fast(xa, cnp.PyArray_DIMS(xa)[1], weight, bias, e, out, return_stats,
                        num_threads)


def _batch_norm_eval_fast(x, running_mean, running_var, weight, bias, training, momentum,
                          eps, axis, out, return_stats, num_threads):
    """fastnorm.batch_norm in eval mode for the common inference call, with
    no Python step between the checks and the kernel: x a C-contiguous,
    aligned, native (N, C, ...) array, axis=1, training=False, no out or one
    _fast_target takes, float eps and momentum, running statistics of shape
    (C,) (the computing dtype or float64, native, writeable), weight and bias
    as _fast_param takes them. Anything else returns None, and the
    caller's general path (which checks and names every argument) runs
    instead; what this computes is what that path computes."""
    if (training is not False or type(axis) is not int or axis != 1
            or type(eps) is not float or type(momentum) is not float
            or type(running_mean) is not np.ndarray or type(running_var) is not np.ndarray):
        return None
    cdef cnp.ndarray xa = _fast_data(x)
    if xa is None:
        return None
    cdef cnp.ndarray rm = <cnp.ndarray>running_mean
    cdef cnp.ndarray rv = <cnp.ndarray>running_var
    cdef double e = <double>eps, m = <double>momentum
    if not (e >= 0.0) or isinf(e) or not (0.0 <= m <= 1.0):
        return None
    cdef cnp.npy_intp *dims = cnp.PyArray_DIMS(xa)
    cdef int64_t R = dims[0], C = dims[1], L = _trailing(xa, 2)
    cdef int ptype = _calc_type(xa)
    for a in (rm, rv):
        if (not _is_real_vector(<cnp.ndarray>a, C) or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>a)
                or (cnp.PyArray_TYPE(<cnp.ndarray>a) != ptype
                    and cnp.PyArray_TYPE(<cnp.ndarray>a) != cnp.NPY_DOUBLE)):
            return None
    if not _fast_param(weight, C, ptype) or not _fast_param(bias, C, ptype):
        return None
    y = _fast_target(out, xa, weight, bias)
    if y is None:
        return None
    if out is not None and (_meets(<cnp.ndarray>y, rm) or _meets(<cnp.ndarray>y, rv)):
        return None  # an out holding the running statistics: the general path
    cdef int nt = _resolve_threads(num_threads)
    mean64, rstd64 = _frozen_stats(rm, rv, e)
    _channel_normalize_kernel(xa, y, 1, R, C, L, mean64, rstd64, weight, bias, False, nt)
    if return_stats:  # asked only now, as the general path does
        dt = cnp.PyArray_DescrFromType(ptype)
        return y, rm.astype(dt), rstd64.astype(dt)
    return y
