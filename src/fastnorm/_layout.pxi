# Included by _core.pyx: how a call sees its arrays -- x with its normalized
# axes last, as (rows, n) views with unit element stride -- and where a kernel
# writes its results.

# --------------------------------------------------------------------------
# Layout: arrays as (rows, n) with unit element stride
# --------------------------------------------------------------------------

cdef struct RowsView:
    char *data
    int64_t rows
    int64_t n
    int64_t ld  # elements between the starts of consecutive rows


cdef bint _rows_view(cnp.ndarray a, int k, RowsView *v):
    """Whether a's last k axes collapse to n contiguous elements and its other
    axes to a single row stride; fills v if so (no copy is ever made)."""
    cdef int nd = cnp.PyArray_NDIM(a), j
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(a)
    cdef cnp.npy_intp isz = cnp.PyArray_ITEMSIZE(a)
    cdef cnp.npy_intp expect = isz, ld = 0
    cdef int64_t n = 1, rows = 1
    cdef bint have_ld = False
    for j in range(nd):
        if shape[j] == 0:  # nothing is read or written: any layout will do
            for j in range(nd - k, nd):
                n *= shape[j]
            for j in range(nd - k):
                rows *= shape[j]
            v.data = <char *>cnp.PyArray_DATA(a)
            v.rows = rows
            v.n = n
            v.ld = n
            return True
    for j in range(nd - 1, nd - k - 1, -1):
        if shape[j] != 1:
            if strides[j] != expect:
                return False
            expect *= shape[j]
        n *= shape[j]
    for j in range(nd - k - 1, -1, -1):
        if shape[j] == 1:
            continue
        if not have_ld:
            ld = strides[j]
            have_ld = True
        elif strides[j] != expect:
            return False
        expect = strides[j] * shape[j]
        rows *= shape[j]
    if not have_ld:
        ld = n * isz
    cdef char *data = <char *>cnp.PyArray_DATA(a)
    if ld % isz != 0 or (<uintptr_t>data) % isz != 0:
        return False
    v.data = data
    v.rows = rows
    v.n = n
    v.ld = ld // isz
    return True


cdef void _byte_range(RowsView *v, cnp.npy_intp isz, uintptr_t *lo, uintptr_t *hi):
    """The bytes [lo, hi) that the rows of v span (isz: the element size)."""
    cdef int64_t span = (v.rows - 1) * v.ld
    cdef uintptr_t base = <uintptr_t>v.data
    if span >= 0:
        lo[0] = base
        hi[0] = base + <uintptr_t>((span + v.n) * isz)
    else:
        lo[0] = base + <uintptr_t>(span * isz)
        hi[0] = base + <uintptr_t>(v.n * isz)


cdef bint _unsafe_overlap(RowsView *dst, RowsView *src, cnp.npy_intp isz):
    """Whether writing dst row by row could clobber src rows not yet read.
    Writing exactly over src (same start, same row stride) is safe."""
    cdef uintptr_t dlo, dhi, slo, shi
    if dst.rows == 0 or dst.n == 0:
        return False
    if dst.data == src.data and (dst.ld == src.ld or dst.rows == 1):
        return False
    _byte_range(dst, isz, &dlo, &dhi)
    _byte_range(src, isz, &slo, &shi)
    return dlo < shi and slo < dhi


@cython.freelist(4)
cdef class _Layout:
    """How one call sees x: the normalized axes, and (rows, n) views.

    `k` of x's `nd` axes are normalized (`axes`; `trailing` when they are
    the last k). `moved` is x with the normalized axes moved to the end (x
    itself when they already are); `work` is moved, copied to C order only
    when no (rows, n) view of it exists, and `x_rows` that view. `dims` are
    moved's dimensions: the first nd - k give the statistics' shape, the last
    k the parameters' shape.
    """
    cdef cnp.ndarray x, moved, work
    cdef tuple axes
    cdef bint trailing
    cdef int nd, k
    cdef cnp.npy_intp *dims
    cdef RowsView x_rows

    cdef cnp.ndarray to_moved(self, cnp.ndarray a):
        """Another array of x's shape, seen with the normalized axes last."""
        if self.trailing:
            return a
        return np.moveaxis(a, self.axes, tuple(range(self.nd - self.k, self.nd)))

    cdef cnp.ndarray rows_of(self, cnp.ndarray a, RowsView *v):
        """(rows, n) view of another array of x's shape (such as dy) into v;
        returns the array v points into (a copy when no view exists)."""
        cdef cnp.ndarray w = self.to_moved(a)
        if not _rows_view(w, self.k, v):
            # a fresh copy is C-contiguous and aligned, so the view exists
            # (np.ascontiguousarray would keep an unaligned array as it is)
            w = w.copy(order="C")
            _rows_view(w, self.k, v)
        return w

    cdef tuple param_shape(self):
        return _shape(self.moved)[self.nd - self.k:]

    cdef tuple stats_shape(self):
        return _shape(self.moved)[:self.nd - self.k]

    cdef cnp.ndarray empty_stats(self):
        return cnp.PyArray_EMPTY(self.nd - self.k, self.dims, _param_typenum(self.x), 0)

    cdef cnp.ndarray empty_params(self):
        return cnp.PyArray_EMPTY(self.k, self.dims + self.nd - self.k, _param_typenum(self.x), 0)


cdef _Layout _layout_of(cnp.ndarray x, object axis, bint with_x_rows=True):
    """x's layout for `axis`; with_x_rows=False leaves out the (rows, n) view
    of x (work, x_rows), which may need a transposing copy."""
    cdef _Layout layout = _Layout.__new__(_Layout)
    cdef int nd = cnp.PyArray_NDIM(x)
    if nd == 0:
        raise ValueError("x must have at least one dimension")
    if type(axis) is int and axis == -1:
        layout.k = 1
        layout.trailing = True
    else:
        layout.axes = _normalize_axes(axis, nd)
        layout.k = len(layout.axes)
        layout.trailing = layout.axes[0] == nd - layout.k and layout.axes[layout.k - 1] == nd - 1
    layout.nd = nd
    layout.x = x
    layout.moved = layout.to_moved(x)
    layout.dims = cnp.PyArray_DIMS(layout.moved)
    if with_x_rows:
        layout.work = layout.rows_of(x, &layout.x_rows)
    return layout


@cython.freelist(4)
cdef class _Output:
    """Where a kernel writes an array of x's shape: straight into the
    destination when it has a (rows, n) view that is safe to write while the
    inputs are read, else into a scratch array copied over afterwards.
    `view` is the (rows, n) view the kernel writes; `fresh` whether that
    memory was allocated here (no caller's out=), which the kernels then
    write with ordinary stores (fn_set_output_fresh)."""
    cdef cnp.ndarray dest, dest_moved, scratch
    cdef RowsView view
    cdef bint fresh

    cdef void finish(self):
        if self.scratch is not None:
            np.copyto(self.dest_moved, self.scratch)


cdef _Output _output_for(_Layout layout, object out, RowsView *reads, int nreads,
                         str name="out"):
    """Where to write a result of x's shape: `out` (checked; a new array when
    None), or a scratch array when writing out directly could overwrite rows
    of the nreads inputs `reads` before they are read."""
    cdef _Output o = _Output.__new__(_Output)
    cdef cnp.ndarray x = layout.x
    cdef cnp.npy_intp isz = cnp.PyArray_ITEMSIZE(x)
    cdef int i
    cdef bint direct
    if out is None:
        o.dest = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x),
                                   cnp.PyArray_TYPE(x), 0)
    else:
        o.dest = _check_out(out, x, name)
    o.dest_moved = layout.to_moved(o.dest)
    direct = _rows_view(o.dest_moved, layout.k, &o.view)
    if direct and out is not None:
        for i in range(nreads):
            if _unsafe_overlap(&o.view, &reads[i], isz):
                direct = False
                break
    o.fresh = out is None or not direct
    if not direct:
        o.scratch = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(layout.work),
                                      cnp.PyArray_DIMS(layout.work), cnp.PyArray_TYPE(x), 0)
        _rows_view(o.scratch, layout.k, &o.view)
    return o


cdef object _copy_if_overwritten(object p, _Output o, cnp.ndarray x):
    """p, or a copy of it when it lies in memory the output will overwrite:
    every parameter must be read as it was before the call (out= semantics)."""
    cdef RowsView pv
    cdef cnp.npy_intp isz = cnp.PyArray_ITEMSIZE(x)
    if p is None or o.scratch is not None:
        return p
    # p (C-contiguous) as one row of elements of x's size: float32 parameters
    # of 16-bit data span twice their count
    pv.data = <char *>cnp.PyArray_DATA(<cnp.ndarray>p)
    pv.rows = 1
    pv.n = cnp.PyArray_NBYTES(<cnp.ndarray>p) // isz
    pv.ld = pv.n
    if _unsafe_overlap(&o.view, &pv, isz) or pv.data == o.view.data:
        return p.copy()
    return p


cdef inline char *_data_ptr(object a):
    """The data of the ndarray a, or NULL for None (an argument left out)."""
    return NULL if a is None else <char *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline void _raise_kernel_error(int rc) except *:
    if rc != FASTNORM_OK:
        raise MemoryError("fastnorm could not allocate scratch memory")
