# Included by _core.pyx: the checks of the public functions' arguments, and
# the data types. Every check raises a TypeError or ValueError naming the
# argument before anything is written.

# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------

cdef inline tuple _shape(cnp.ndarray a):
    return (<object>a).shape


cdef bint _same_shape(cnp.ndarray a, cnp.ndarray b):
    cdef int nd = cnp.PyArray_NDIM(a), j
    if nd != cnp.PyArray_NDIM(b):
        return False
    cdef cnp.npy_intp *da = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *db = cnp.PyArray_DIMS(b)
    for j in range(nd):
        if da[j] != db[j]:
            return False
    return True


cdef bint _has_dims(cnp.ndarray a, cnp.npy_intp *dims, int nd):
    """Whether a has exactly the nd dimensions dims."""
    if cnp.PyArray_NDIM(a) != nd:
        return False
    cdef cnp.npy_intp *da = cnp.PyArray_DIMS(a)
    cdef int j
    for j in range(nd):
        if da[j] != dims[j]:
            return False
    return True


cdef str _type_name(object obj):
    return type(obj).__name__


# The data types of x: each has its own kernels, reached through the
# dtype-generic entry points of dtype_generic.h with the code fn_dtype (FN_F32,
# FN_F64, FN_F16, FN_BF16). 16-bit data (float16, and bfloat16 from the
# optional ml_dtypes package, a NumPy user type) computes in float32, with
# float32 parameters and statistics.
_DATA_DTYPES = "float32, float64, float16 or bfloat16"


cdef extern from "numpy/arrayobject.h":
    int _NPY_HALF "NPY_HALF"
    int _NPY_USERDEF "NPY_USERDEF"


# The type number NumPy gave the first bfloat16 dtype seen: a user type's
# number stays the same for the process, and asking a dtype its name costs
# about half a microsecond, several times a call otherwise.
cdef int _bf16_typenum = -1


cdef int _dtype_code(cnp.ndarray a):
    """The fn_dtype code of a's dtype, or -1 for a dtype with no kernels."""
    global _bf16_typenum
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT:
        return FN_F32
    if t == cnp.NPY_DOUBLE:
        return FN_F64
    if t == _NPY_HALF:
        return FN_F16
    if t < _NPY_USERDEF:
        return -1
    if t == _bf16_typenum:
        return FN_BF16
    if a.dtype.name == "bfloat16":  # any other package's bfloat16 too, by name
        if _bf16_typenum < 0:
            _bf16_typenum = t
        return FN_BF16
    return -1


cdef inline fn_dtype _data_dtype(cnp.ndarray x):
    """The fn_dtype of data x that has passed _as_data."""
    return <fn_dtype>_dtype_code(x)


cdef inline bint _has_float_dtype(cnp.ndarray a):
    """Whether a holds floating-point values fastnorm accepts as parameters."""
    return cnp.PyArray_ISFLOAT(a) or _dtype_code(a) == FN_BF16


cdef inline int _param_typenum(cnp.ndarray x):
    """NumPy type number of the parameters and statistics for data x (the
    computing dtype): x's own, or float32 for 16-bit data."""
    cdef int t = cnp.PyArray_TYPE(x)
    return t if t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE else cnp.NPY_FLOAT


cdef cnp.ndarray _as_data(object obj, str name):
    """obj as a native-byte-order ndarray of a data dtype, or a TypeError naming it."""
    cdef cnp.ndarray a
    if type(obj) is np.ndarray:
        a = <cnp.ndarray>obj
    elif obj is None:
        raise TypeError(f"{name} must be an array of {_DATA_DTYPES}, got None")
    else:
        try:
            a = np.asarray(obj)
        except Exception as exc:
            raise TypeError(
                f"{name} must be an array of {_DATA_DTYPES}, got {_type_name(obj)}"
            ) from exc
    if _dtype_code(a) < 0:
        raise TypeError(f"{name} must have dtype {_DATA_DTYPES}, got {a.dtype}")
    if not cnp.PyArray_ISNOTSWAPPED(a):
        a = a.astype(a.dtype.newbyteorder("="))
    return a


cdef tuple _normalize_axes(object axis, int ndim, str xname="x"):
    """Sorted, non-negative, distinct axes of an array of ndim dimensions (the
    array named xname in messages)."""
    if type(axis) is int and -ndim <= axis < ndim:  # one axis in range: the common call
        return (axis + ndim if axis < 0 else axis,)
    cdef list axes
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        axes = [axis]
    elif isinstance(axis, (tuple, list)):
        axes = list(axis)
        if not axes:
            raise ValueError("axis must name at least one axis, got an empty tuple")
    else:
        raise TypeError(f"axis must be an int or a tuple of ints, got {_type_name(axis)}")
    cdef list out = []
    for a in axes:
        if isinstance(a, bool) or not isinstance(a, (int, np.integer)):
            raise TypeError(f"axis must be an int or a tuple of ints, got {axis!r}")
        v = int(a)
        if v < -ndim or v >= ndim:
            raise np.exceptions.AxisError(
                f"axis {v} is out of bounds for {xname} with {ndim} dimension(s)"
            )
        out.append(v + ndim if v < 0 else v)
    out.sort()
    for i in range(1, len(out)):
        if out[i] == out[i - 1]:
            raise ValueError(f"axis contains a repeated axis: {axis!r}")
    return tuple(out)


cdef double _check_eps(object eps) except -1.0:
    cdef double e
    if type(eps) is float:
        e = <double>eps
    else:
        if isinstance(eps, (bool, str, bytes)) or eps is None:
            raise TypeError(f"eps must be a real number, got {_type_name(eps)}")
        try:
            e = float(eps)
        except OverflowError as exc:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}") from exc
        except (TypeError, ValueError) as exc:
            raise TypeError(f"eps must be a real number, got {_type_name(eps)}") from exc
    if not (e >= 0.0) or isinf(e):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    return e


cdef cnp.ndarray _as_float_array(object obj, str name):
    if type(obj) is np.ndarray:
        return <cnp.ndarray>obj
    if obj is None:
        raise TypeError(f"{name} must be a floating-point array, got None")
    try:
        return np.asarray(obj)
    except Exception as exc:
        raise TypeError(f"{name} must be a floating-point array, got {_type_name(obj)}") from exc


cdef cnp.ndarray _as_param_array(cnp.ndarray a, cnp.ndarray x, str name):
    """a as a C-contiguous, aligned, native array of the parameter type of data
    x (x's dtype, float32 for 16-bit data); no copy if it is one."""
    if not _has_float_dtype(a):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    cdef int t = _param_typenum(x)
    if (cnp.PyArray_TYPE(a) == t and cnp.PyArray_ISCARRAY_RO(a)
            and cnp.PyArray_ISNOTSWAPPED(a)):
        return a
    return np.array(a, dtype=cnp.PyArray_DescrFromType(t), order="C", copy=True)


cdef object _as_param(object p, _Layout layout, str name, str xname="x"):
    """A parameter (weight, bias): the normalized axes' shape, in the
    parameter type, C order; None stays None."""
    if p is None:
        return None
    cdef cnp.ndarray a = _as_float_array(p, name)
    if _has_float_dtype(a) and not _has_dims(a, layout.dims + layout.nd - layout.k, layout.k):
        raise ValueError(
            f"{name} must have shape {layout.param_shape()} (the normalized axes of {xname}), "
            f"got {_shape(a)}"
        )
    return _as_param_array(a, layout.x, name)


cdef cnp.ndarray _as_stats(object s, _Layout layout, str name, str xname="x"):
    """Per-row statistics (mean, rstd): x's shape without the normalized axes."""
    cdef cnp.ndarray a = _as_float_array(s, name)
    if _has_float_dtype(a) and not _has_dims(a, layout.dims, layout.nd - layout.k):
        raise ValueError(
            f"{name} must have shape {layout.stats_shape()} ({xname} without its normalized "
            f"axes), got {_shape(a)}"
        )
    return _as_param_array(a, layout.x, name)


cdef cnp.ndarray _check_out(object out, cnp.ndarray x, str name):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {_type_name(out)}")
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not _same_shape(o, x):
        raise ValueError(f"{name} must have the shape of x {_shape(x)}, got {_shape(o)}")
    if cnp.PyArray_TYPE(o) != cnp.PyArray_TYPE(x) or not cnp.PyArray_ISNOTSWAPPED(o):
        raise TypeError(
            f"{name} must have dtype {x.dtype} like x (native byte order), got {o.dtype}"
        )
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError(f"{name} is read-only")
    return o


cdef cnp.ndarray _check_like(object arr, cnp.ndarray x, str name, str xname="x"):
    """An array that must match x (named xname) in shape and dtype (dy, residual)."""
    cdef cnp.ndarray a = _as_data(arr, name)
    if not _same_shape(a, x):
        raise ValueError(f"{name} must have the shape of {xname} {_shape(x)}, got {_shape(a)}")
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(x):
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname}, got {a.dtype}")
    return a


cdef double _rms_eps(object eps, cnp.ndarray x) except -1.0:
    """RMSNorm's eps: None is the machine epsilon of the computing dtype -- x's
    for float32 and float64, float32's for 16-bit x -- as torch's RMSNorm on
    the CPU, which computes half and bfloat16 in float32 with float32's
    epsilon."""
    if eps is None:
        if _dtype_code(x) == FN_F64:
            return 2.220446049250313e-16
        return 1.1920928955078125e-07
    return _check_eps(eps)


cdef object _grad_in_dtype_of(object g, object param):
    """A parameter gradient g, computed in the computing dtype, in the floating
    dtype of the ndarray param (native byte order); as it is for a param given
    as a list (or None), which has no dtype of its own."""
    if g is None or not isinstance(param, np.ndarray) or not _has_float_dtype(<cnp.ndarray>param):
        return g
    dt = (<cnp.ndarray>param).dtype.newbyteorder("=")
    return g if g.dtype == dt else g.astype(dt)
