# cython: language_level=3
"""An extension module on fastnorm.kernels (tests/test_c_api.py builds it):
it calls fastnorm's kernels without the GIL and without linking them."""
from libc.stdint cimport int64_t, uintptr_t

from fastnorm cimport kernels as fk

import numpy as np


cdef inline void *_ptr(a):
    return <void *><uintptr_t>a.ctypes.data


def import_api():
    """The recommended start; a kernel called before it imports the table itself."""
    fk.fastnorm_import()


def info():
    return {
        "header_version": fk.FASTNORM_VERSION_NUMBER,
        "kernels_version": fk.fastnorm_version_number(),
        "isa": fk.fastnorm_get_isa(),
        "openmp": fk.fastnorm_has_openmp(),
    }


def layer_norm(x, w, b, double eps, int num_threads):
    """y, mean, rstd of a float32 (rows, n) array, computed with the GIL released."""
    x = np.ascontiguousarray(x, np.float32)
    w = np.ascontiguousarray(w, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    cdef int64_t rows = x.shape[0], n = x.shape[1]
    if w.shape != (n,) or b.shape != (n,):
        raise ValueError("weight and bias must have x.shape[1] elements")
    y = np.empty_like(x)
    mean = np.empty(rows, np.float32)
    rstd = np.empty(rows, np.float32)
    cdef const float *px = <const float *>_ptr(x)
    cdef const float *pw = <const float *>_ptr(w)
    cdef const float *pb = <const float *>_ptr(b)
    cdef float *py = <float *>_ptr(y)
    cdef float *pm = <float *>_ptr(mean)
    cdef float *pr = <float *>_ptr(rstd)
    cdef int rc
    with nogil:
        rc = fk.fastnorm_layer_norm_f32(rows, n, px, n, py, n, pw, pb, eps, pm, pr, num_threads)
    if rc != fk.FASTNORM_OK:
        raise RuntimeError(f"fastnorm_layer_norm_f32 returned {rc}")
    return y, mean, rstd


def group_norm(x, int64_t groups, double eps, int num_threads):
    """y, mean, rstd of a float64 (N, C, *spatial) array, without the GIL; the
    return code itself when it is not FASTNORM_OK."""
    x = np.ascontiguousarray(x, np.float64)
    cdef int64_t S = x.shape[0], C = x.shape[1], L = x.size // max(1, S * C)
    y = np.empty_like(x)
    mean = np.empty(S * groups if groups > 0 else 0, np.float64)
    rstd = np.empty_like(mean)
    cdef const double *px = <const double *>_ptr(x)
    cdef double *py = <double *>_ptr(y)
    cdef double *pm = <double *>_ptr(mean)
    cdef double *pr = <double *>_ptr(rstd)
    cdef int rc
    with nogil:
        rc = fk.fastnorm_group_norm_f64(S, 1, C, L, groups, px, py, NULL, NULL, eps, pm, pr,
                                        NULL, num_threads)
    if rc != fk.FASTNORM_OK:
        return rc
    return y, mean.reshape(S, groups), rstd.reshape(S, groups)


def einval_code():
    return fk.FASTNORM_EINVAL
