# Included by _channel.pxi: the argument checks and the (S, R, C, L) layout
# every channel normalizer shares, and their Python-callable forms for the
# normalizers assembled in Python (fastnorm._family, nn and dask).
#
# The checks raise a ValueError or TypeError that names the argument; the
# normalizers run them all before anything is written.

# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------

cdef inline bint _is_index(object v):
    """An int or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


cdef object _param_dtype(cnp.ndarray x):
    """The dtype of parameters, statistics and running statistics for data x:
    x's own, float32 for 16-bit data (float16, bfloat16)."""
    if cnp.PyArray_ITEMSIZE(x) > 2:
        return (<object>x).dtype
    return cnp.PyArray_DescrFromType(cnp.NPY_FLOAT)


cdef int _channel_axis_of(object axis, int nd, object shape, str name) except -1:
    """The channel axis of an x of nd dimensions (of this shape, for messages),
    as a non-negative int: any axis but the batch axis 0."""
    cdef int k
    if type(axis) is int and -nd <= axis < nd:  # the common call
        k = <int>axis + nd if axis < 0 else <int>axis
    else:
        if not _is_index(axis):
            raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
        k = _normalize_axes(int(axis), nd)[0]
    if k == 0:
        raise ValueError(
            f"{name} is the channel axis and cannot be the batch axis 0 (x has shape {shape})"
        )
    return k


cdef int _moments_axis_of(object axis, int nd, object shape) except -1:
    """channel_moments' channel axis for an x of nd dimensions, as a
    non-negative int (any axis of an x of one axis or more)."""
    if nd < 1:
        raise ValueError(f"x must have at least one axis (the channel axis), got shape {shape}")
    if not _is_index(axis):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    return _normalize_axes(int(axis), nd)[0]


cdef bint _groups_split(object G, object C) except -1:
    """Whether G groups split C channels: 1 <= G <= C and G divides C. With no
    channels (C = 0) only one group, an empty one, does."""
    return 1 <= G <= max(C, 1) and C % G == 0


cdef int64_t _group_count(object num_groups, int64_t C) except -1:
    """num_groups checked against C channels (see _groups_split)."""
    if type(num_groups) is int and 1 <= num_groups <= C and C % <int64_t>num_groups == 0:
        return <int64_t>num_groups  # the common call
    if not _is_index(num_groups):
        raise TypeError(f"num_groups must be an int, got {type(num_groups).__name__}")
    G = int(num_groups)
    if G <= 0:
        raise ValueError(f"num_groups must be positive, got {G}")
    if not _groups_split(G, C):
        raise ValueError(
            f"num_groups={G} must divide the number of channels C={C} and be at most C"
            + (" (with no channels, num_groups must be 1)" if C == 0 else "")
        )
    return <int64_t>G


cdef bint _training_arg(object training) except -1:
    if training is True or training is False:
        return training is True
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"training must be a bool, got {type(training).__name__}")
    return bool(training)


cdef double _momentum_arg(object momentum) except -1.0:
    cdef double m
    if type(momentum) is float:
        m = <double>momentum
        if 0.0 <= m <= 1.0:
            return m
    if (isinstance(momentum, bool)
            or not isinstance(momentum, (int, float, np.floating, np.integer))):
        raise TypeError(
            f"momentum must be a number in [0, 1], got {type(momentum).__name__} "
            "(the layer classes turn momentum=None into a cumulative average)"
        )
    m = float(momentum)
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
    return m


cdef object _channel_param(object p, int64_t C, cnp.ndarray x, str name):
    """A per-channel parameter (weight, bias) as a C-contiguous, aligned,
    native array of shape (C,) in the parameter dtype of x; None stays None."""
    if p is None:
        return None
    cdef int t = _param_typenum(x)
    cdef cnp.ndarray a
    if type(p) is np.ndarray:
        a = <cnp.ndarray>p
        if (cnp.PyArray_NDIM(a) == 1 and cnp.PyArray_DIM(a, 0) == C
                and cnp.PyArray_TYPE(a) == t and cnp.PyArray_ISNOTSWAPPED(a)
                and cnp.PyArray_ISCARRAY_RO(a)):
            return a
    a = np.asarray(p)
    if not _has_float_dtype(a):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    if cnp.PyArray_NDIM(a) != 1 or cnp.PyArray_DIM(a, 0) != C:
        raise ValueError(
            f"{name} must have shape ({C},) (one value per channel), got {_shape(a)}"
        )
    return np.require(a, _param_dtype(x), ("C_CONTIGUOUS", "ALIGNED"))


cdef cnp.ndarray _statistics_arg(object a, tuple shape, int typenum, str name):
    """Statistics the forward returned (or a field of its stats tuple): a
    floating array of this shape, as a C-contiguous, aligned, native array of
    the type typenum."""
    cdef cnp.ndarray s
    if type(a) is np.ndarray:  # the forward's own statistics
        s = <cnp.ndarray>a
        if (cnp.PyArray_TYPE(s) == typenum and cnp.PyArray_ISNOTSWAPPED(s)
                and cnp.PyArray_ISCARRAY_RO(s) and _shape(s) == shape):
            return s
    if a is None:
        raise TypeError(f"{name} is required (the statistics the forward returned)")
    s = np.asarray(a)
    if not _has_float_dtype(s):
        raise TypeError(f"{name} must be a floating-point array, got dtype {s.dtype}")
    if _shape(s) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {_shape(s)}")
    return np.require(s, cnp.PyArray_DescrFromType(typenum), ("C_CONTIGUOUS", "ALIGNED"))


cdef int _running_dtype_check(cnp.ndarray a, cnp.ndarray x, str name) except -1:
    """A running statistic is updated in place, so it cannot be converted (a
    copy would not be updated): it must have the computing dtype, or float64,
    which holds every value of it (the update is computed in float64 and
    rounded once to the statistic's dtype)."""
    cdef int t = cnp.PyArray_TYPE(a)
    if cnp.PyArray_ISNOTSWAPPED(a) and (t == _param_typenum(x) or t == cnp.NPY_DOUBLE):
        return 0
    if cnp.PyArray_ITEMSIZE(x) == 2:
        raise TypeError(
            f"{name} must have dtype float32 (or float64) for {x.dtype} x, got {a.dtype}: "
            "running statistics are updated in place, in the computing dtype, float32 for "
            "16-bit data, or in float64, so they cannot be converted"
        )
    raise TypeError(f"{name} must have dtype {x.dtype} like x (or float64; it is updated in "
                    f"place), got {a.dtype}")


cdef object _running_arg(object a, int64_t C, cnp.ndarray x, str name):
    """A running statistic, updated in place: shape (C,), the dtype of x's
    parameters (float32 for 16-bit data) or float64, writeable."""
    if a is None:
        return None
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (it is updated in place), "
                        f"got {type(a).__name__}")
    cdef cnp.ndarray r = <cnp.ndarray>a
    if cnp.PyArray_NDIM(r) != 1 or cnp.PyArray_DIM(r, 0) != C:
        raise ValueError(f"{name} must have shape ({C},), got {_shape(r)}")
    _running_dtype_check(r, x, name)
    if not cnp.PyArray_ISWRITEABLE(r):
        raise ValueError(f"{name} is read-only")
    return a


cdef int _running_pair(object rm, object rv) except -1:
    if (rm is None) != (rv is None):
        raise ValueError("running_mean and running_var must be given together")
    return 0


cdef object _out_arg(object out, cnp.ndarray x, str name="out", str xname="x"):
    """out checked against data x (named xname): x's shape and dtype, native,
    writeable; None stays None."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not _same_shape(o, x):
        raise ValueError(f"{name} must have the shape of {xname} {_shape(x)}, got {_shape(o)}")
    if cnp.PyArray_TYPE(o) != cnp.PyArray_TYPE(x) or not cnp.PyArray_ISNOTSWAPPED(o):
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname} (native byte order), "
                        f"got {o.dtype}")
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError(f"{name} is read-only")
    return out


cdef int _out_apart(object out, object running_mean, object running_var) except -1:
    """A call that updates running statistics in place refuses an out that
    overlaps them: the statistics would end up holding values of y."""
    if out is not None and (_bytes_meet(<cnp.ndarray>out, running_mean)
                            or _bytes_meet(<cnp.ndarray>out, running_var)):
        raise ValueError("out must not overlap running_mean or running_var (they are "
                         "updated in place by the same call)")
    return 0


cdef object _grad_like(object grad, object param, cnp.ndarray x):
    """A parameter's gradient in the parameter's own floating dtype, in native
    byte order (x's computing dtype -- float32 for 16-bit x -- for a parameter
    given as a list or in a non-float dtype); None stays None."""
    if grad is None or param is None:
        return None
    if isinstance(param, np.ndarray) and _has_float_dtype(<cnp.ndarray>param):
        if type(grad) is np.ndarray and (<object>grad).dtype is (<object>param).dtype:
            return grad  # the common case: nothing to convert
        dt = (<object>param).dtype.newbyteorder("=")
    else:
        dt = _param_dtype(x)
    return np.asarray(grad).astype(dt, copy=False)


# --------------------------------------------------------------------------
# Layout: x as a C-contiguous (S, R, C, L) block
# --------------------------------------------------------------------------

cdef ChannelDims _channel_dims(cnp.ndarray x, int k, bint per_sample):
    """The (S, R, C, L) block of x around channel axis k: per sample (S = the
    batch) or one block (S = 1, the batch among the rows)."""
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(x)
    cdef int nd = cnp.PyArray_NDIM(x), j
    cdef ChannelDims d
    d.C = shape[k]
    d.L = 1
    for j in range(k + 1, nd):
        d.L *= shape[j]
    d.S = shape[0] if per_sample else 1
    d.R = 1
    for j in range(1 if per_sample else 0, k):
        d.R *= shape[j]
    return d


cdef inline cnp.ndarray _c_block(cnp.ndarray x):
    """x as the C-contiguous, aligned array the kernels read, copied only when needed."""
    if cnp.PyArray_ISCARRAY_RO(x):
        return x
    return (<object>x).copy(order="C")


cdef inline char *_data(cnp.ndarray a):
    return <char *>cnp.PyArray_DATA(a)


cdef cnp.ndarray _empty_data(cnp.ndarray x):
    """A new C-contiguous array of x's shape and dtype (its metadata kept)."""
    cdef int t = cnp.PyArray_TYPE(x)
    if <object>cnp.PyArray_DESCR(x) is cnp.PyArray_DescrFromType(t):
        return cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x), t, 0)
    return np.empty(_shape(x), (<object>x).dtype)


cdef cnp.ndarray _empty_params(cnp.ndarray x, int nd, cnp.npy_intp d0, cnp.npy_intp d1):
    """A new array of shape (d0,) or (d0, d1) in the parameter type of x."""
    cdef cnp.npy_intp dims[2]
    dims[0] = d0
    dims[1] = d1
    return cnp.PyArray_EMPTY(nd, dims, _param_typenum(x), 0)


cdef cnp.ndarray _write_target(object out, cnp.ndarray xc, tuple sources):
    """The array the kernel writes for the block xc: out itself when it is
    C-contiguous and aligned and either is xc or shares no byte with the
    inputs (sources); otherwise a scratch array copied into out at the end."""
    if out is None:
        return _empty_data(xc)
    cdef cnp.ndarray o = <cnp.ndarray>out
    if cnp.PyArray_ISCARRAY(o):
        # in place over x itself is fine (each element is read before it is
        # written); any other overlap (a shifted x, parameters or running
        # statistics living in out) goes through scratch
        skip = xc if cnp.PyArray_DATA(o) == cnp.PyArray_DATA(xc) else None
        if not _any_overlap(o, sources, skip):
            return o
    return _empty_data(xc)


cdef object _finish(cnp.ndarray target, object out):
    if out is None or target is out:
        return target
    out[...] = target
    return out


cdef inline object _result(object y, object mean, object rstd, object return_stats):
    return (y, mean, rstd) if return_stats else y


cdef int _ndim_check(cnp.ndarray x) except -1:
    if cnp.PyArray_NDIM(x) < 2:
        raise ValueError(f"x must have a batch axis and a channel axis, got shape {_shape(x)}")
    return 0


# --------------------------------------------------------------------------
# The shared checks, for the normalizers assembled in Python (fastnorm._family,
# fastnorm.nn, fastnorm.dask)
# --------------------------------------------------------------------------

def _channel_axis(axis, shape, name="axis"):
    """The channel axis of an x of this shape, as a non-negative int: any axis
    but the batch axis 0."""
    return _channel_axis_of(axis, len(shape), shape, name)


def _moments_axis(axis, shape):
    """channel_moments' channel axis for an x of this shape, as a
    non-negative int (any axis of an x of one axis or more)."""
    return _moments_axis_of(axis, len(shape), shape)


def _groups_fit(G, C):
    """Whether G groups split C channels: 1 <= G <= C and G divides C. With no
    channels (C = 0) only one group, an empty one, does."""
    return _groups_split(G, C)


def _block_dims(cnp.ndarray x not None, int k, bint per_sample):
    """(S, R, C, L) of x around channel axis k, per sample or as one block."""
    cdef ChannelDims d = _channel_dims(x, k, per_sample)
    return d.S, d.R, d.C, d.L


def _block_moments(cnp.ndarray x not None, int64_t S, int64_t R, int64_t C, int64_t L,
                   int num_threads):
    """(count, mean, M2) of the C-contiguous (S, R, C, L) block x per channel,
    or per (sample, channel): float64 vectors of length S * C."""
    cdef _KernelArrays K = _KernelArrays(x, S, R, C, L)
    return _moments_of(x, K.d, num_threads)


def _param_dtype_of(cnp.ndarray x not None):
    """The dtype of parameters, statistics and running statistics for data x."""
    return _param_dtype(x)


def _param_arg(p, int64_t C, cnp.ndarray x not None, str name):
    """A per-channel parameter of shape (C,) as the kernels read it."""
    return _channel_param(p, C, x, name)


def _running_stat_arg(a, int64_t C, cnp.ndarray x not None, str name):
    """A running statistic of shape (C,), updated in place."""
    return _running_arg(a, C, x, name)


def _momentum_number(momentum):
    """momentum checked: a real number in [0, 1], as a float."""
    return _momentum_arg(momentum)


def _grad_as_param(grad, param, cnp.ndarray x not None):
    """A parameter's gradient in the parameter's own floating dtype."""
    return _grad_like(grad, param, x)
