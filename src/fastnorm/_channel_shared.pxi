# Included by _channel.pxi: helpers the channel normalizers share with the
# Python modules that assemble normalizers from the channel stages.

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


cdef bint _bytes_meet(cnp.ndarray a, object b):
    """Whether the bytes of a and of b (an ndarray, or None: no) meet."""
    if b is None:
        return False
    cdef uintptr_t alo, ahi, blo, bhi
    _bounds(a, &alo, &ahi)
    _bounds(<cnp.ndarray>b, &blo, &bhi)
    return alo < ahi and blo < bhi and alo < bhi and blo < ahi


cdef bint _any_overlap(cnp.ndarray out, tuple sources, object skip) except -1:
    """Whether the bytes out spans meet those of any array in sources (None
    entries and `skip` left out): np.may_share_memory's bounds test, without
    its cost per call."""
    for s in sources:
        if s is not None and s is not skip and _bytes_meet(out, <cnp.ndarray?>s):
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
    """_frozen_statistics for Python callers."""
    return _frozen_statistics(running_mean, running_var, eps)


cdef tuple _frozen_statistics(cnp.ndarray running_mean, cnp.ndarray running_var, double eps):
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
    """_update_running_stats for Python callers."""
    _update_running_stats(running_mean, running_var, mean, var, count, momentum)


cdef int _update_running_stats(cnp.ndarray running_mean, cnp.ndarray running_var,
                               cnp.ndarray mean, cnp.ndarray var, double count,
                               double momentum) except -1:
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
        return 0
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
    return 0
