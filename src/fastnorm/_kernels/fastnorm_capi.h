/*
 * fastnorm_capi.h -- fastnorm's kernels for other Python extension modules,
 * without linking them: the entry points of fastnorm.h are reached through
 * the table that the installed fastnorm package exports as the capsule
 * fastnorm._core._C_API. The calls run the package's own compiled kernels
 * (its kernel selection, its thread pool).
 *
 * Use: include this header after Python.h (fastnorm.get_include() is its
 * folder), call fastnorm_import() once with the GIL held -- at module
 * initialization, say -- and then call the fastnorm_* functions of
 * fastnorm.h by their names, with or without the GIL. fastnorm/kernels.pxd
 * declares the same for Cython.
 *
 * fastnorm_import() returns 0, or -1 with a Python exception set (fastnorm
 * not importable, or older than this header). A call made before it imports
 * the table on the spot (taking the GIL for that moment) and ends the
 * process with a message if that fails.
 *
 * Every name below is a macro: a translation unit that includes this header
 * cannot also define or take the address of a fastnorm_* function as a
 * linked symbol. Each translation unit holds its own table pointer.
 */
#ifndef FASTNORM_CAPI_H
#define FASTNORM_CAPI_H

#include <Python.h>

#include "fastnorm.h"

#define FASTNORM_CAPSULE_NAME "fastnorm._core._C_API"

static const fastnorm_api_table *fastnorm_capi_table = NULL;

static inline int fastnorm_import(void) {
    const fastnorm_api_table *t;
    if (fastnorm_capi_table) return 0;
    t = (const fastnorm_api_table *)PyCapsule_Import(FASTNORM_CAPSULE_NAME, 0);
    if (!t) return -1;
    if (t->table_version != FASTNORM_API_TABLE_VERSION ||
        t->table_size < (int)sizeof(fastnorm_api_table)) {
        PyErr_Format(PyExc_ImportError,
                     "the installed fastnorm (C API table version %d, %d bytes, release %d) "
                     "does not provide what this module was compiled for (version %d, %d "
                     "bytes, release %d): install a newer fastnorm",
                     t->table_version, t->table_size, t->version_number,
                     FASTNORM_API_TABLE_VERSION, (int)sizeof(fastnorm_api_table),
                     FASTNORM_VERSION_NUMBER);
        return -1;
    }
    fastnorm_capi_table = t;
    return 0;
}

/* The table, imported on first use when fastnorm_import() was not called. */
static inline const fastnorm_api_table *fastnorm_capi(void) {
    PyGILState_STATE gil;
    if (fastnorm_capi_table) return fastnorm_capi_table;
    gil = PyGILState_Ensure();
    if (fastnorm_import() < 0) {
        PyErr_Print();
        Py_FatalError("fastnorm: the C API capsule " FASTNORM_CAPSULE_NAME
                      " could not be imported (call fastnorm_import() at module "
                      "initialization to get a Python exception instead)");
    }
    PyGILState_Release(gil);
    return fastnorm_capi_table;
}

#define fastnorm_version_number() (fastnorm_capi()->version_number)
#define fastnorm_cpu_features (fastnorm_capi()->cpu_features)
#define fastnorm_isa_available (fastnorm_capi()->isa_available)
#define fastnorm_set_isa (fastnorm_capi()->set_isa)
#define fastnorm_get_isa (fastnorm_capi()->get_isa)
#define fastnorm_has_openmp (fastnorm_capi()->has_openmp)
#define fastnorm_max_threads (fastnorm_capi()->max_threads)
#define fastnorm_num_procs (fastnorm_capi()->num_procs)
#define fastnorm_serial_after_fork (fastnorm_capi()->serial_after_fork)
#define fastnorm_layer_norm_f32 (fastnorm_capi()->layer_norm_f32)
#define fastnorm_layer_norm_f64 (fastnorm_capi()->layer_norm_f64)
#define fastnorm_layer_norm_backward_f32 (fastnorm_capi()->layer_norm_backward_f32)
#define fastnorm_layer_norm_backward_f64 (fastnorm_capi()->layer_norm_backward_f64)
#define fastnorm_rms_norm_f32 (fastnorm_capi()->rms_norm_f32)
#define fastnorm_rms_norm_f64 (fastnorm_capi()->rms_norm_f64)
#define fastnorm_rms_norm_backward_f32 (fastnorm_capi()->rms_norm_backward_f32)
#define fastnorm_rms_norm_backward_f64 (fastnorm_capi()->rms_norm_backward_f64)
#define fastnorm_add_layer_norm_f32 (fastnorm_capi()->add_layer_norm_f32)
#define fastnorm_add_layer_norm_f64 (fastnorm_capi()->add_layer_norm_f64)
#define fastnorm_add_rms_norm_f32 (fastnorm_capi()->add_rms_norm_f32)
#define fastnorm_add_rms_norm_f64 (fastnorm_capi()->add_rms_norm_f64)
#define fastnorm_layer_norm_per_sample_f32 (fastnorm_capi()->layer_norm_per_sample_f32)
#define fastnorm_layer_norm_per_sample_f64 (fastnorm_capi()->layer_norm_per_sample_f64)
#define fastnorm_layer_norm_per_sample_backward_f32 \
    (fastnorm_capi()->layer_norm_per_sample_backward_f32)
#define fastnorm_layer_norm_per_sample_backward_f64 \
    (fastnorm_capi()->layer_norm_per_sample_backward_f64)
#define fastnorm_group_norm_f32 (fastnorm_capi()->group_norm_f32)
#define fastnorm_group_norm_f64 (fastnorm_capi()->group_norm_f64)
#define fastnorm_group_norm_backward_f32 (fastnorm_capi()->group_norm_backward_f32)
#define fastnorm_group_norm_backward_f64 (fastnorm_capi()->group_norm_backward_f64)
#define fastnorm_channel_moments_f32 (fastnorm_capi()->channel_moments_f32)
#define fastnorm_channel_moments_f64 (fastnorm_capi()->channel_moments_f64)
#define fastnorm_channel_normalize_f32 (fastnorm_capi()->channel_normalize_f32)
#define fastnorm_channel_normalize_f64 (fastnorm_capi()->channel_normalize_f64)
#define fastnorm_channel_sums_f32 (fastnorm_capi()->channel_sums_f32)
#define fastnorm_channel_sums_f64 (fastnorm_capi()->channel_sums_f64)
#define fastnorm_channel_affine_backward_f32 (fastnorm_capi()->channel_affine_backward_f32)
#define fastnorm_channel_affine_backward_f64 (fastnorm_capi()->channel_affine_backward_f64)
#define fastnorm_layer_norm_axis_f32 (fastnorm_capi()->layer_norm_axis_f32)
#define fastnorm_layer_norm_axis_f64 (fastnorm_capi()->layer_norm_axis_f64)
#define fastnorm_rms_norm_axis_f32 (fastnorm_capi()->rms_norm_axis_f32)
#define fastnorm_rms_norm_axis_f64 (fastnorm_capi()->rms_norm_axis_f64)
#define fastnorm_layer_norm_axis_backward_f32 (fastnorm_capi()->layer_norm_axis_backward_f32)
#define fastnorm_layer_norm_axis_backward_f64 (fastnorm_capi()->layer_norm_axis_backward_f64)
#define fastnorm_rms_norm_axis_backward_f32 (fastnorm_capi()->rms_norm_axis_backward_f32)
#define fastnorm_rms_norm_axis_backward_f64 (fastnorm_capi()->rms_norm_axis_backward_f64)
#define fastnorm_weight_norm_f32 (fastnorm_capi()->weight_norm_f32)
#define fastnorm_weight_norm_f64 (fastnorm_capi()->weight_norm_f64)
#define fastnorm_weight_norm_backward_f32 (fastnorm_capi()->weight_norm_backward_f32)
#define fastnorm_weight_norm_backward_f64 (fastnorm_capi()->weight_norm_backward_f64)
#define fastnorm_channel_sums_scale_f32 (fastnorm_capi()->channel_sums_scale_f32)
#define fastnorm_channel_sums_scale_f64 (fastnorm_capi()->channel_sums_scale_f64)
#define fastnorm_layer_norm_f16 (fastnorm_capi()->layer_norm_f16)
#define fastnorm_layer_norm_backward_f16 (fastnorm_capi()->layer_norm_backward_f16)
#define fastnorm_rms_norm_f16 (fastnorm_capi()->rms_norm_f16)
#define fastnorm_rms_norm_backward_f16 (fastnorm_capi()->rms_norm_backward_f16)
#define fastnorm_add_layer_norm_f16 (fastnorm_capi()->add_layer_norm_f16)
#define fastnorm_add_rms_norm_f16 (fastnorm_capi()->add_rms_norm_f16)
#define fastnorm_layer_norm_per_sample_f16 (fastnorm_capi()->layer_norm_per_sample_f16)
#define fastnorm_layer_norm_per_sample_backward_f16 (fastnorm_capi()->layer_norm_per_sample_backward_f16)
#define fastnorm_group_norm_f16 (fastnorm_capi()->group_norm_f16)
#define fastnorm_group_norm_backward_f16 (fastnorm_capi()->group_norm_backward_f16)
#define fastnorm_channel_moments_f16 (fastnorm_capi()->channel_moments_f16)
#define fastnorm_channel_normalize_f16 (fastnorm_capi()->channel_normalize_f16)
#define fastnorm_channel_sums_f16 (fastnorm_capi()->channel_sums_f16)
#define fastnorm_channel_affine_backward_f16 (fastnorm_capi()->channel_affine_backward_f16)
#define fastnorm_layer_norm_axis_f16 (fastnorm_capi()->layer_norm_axis_f16)
#define fastnorm_rms_norm_axis_f16 (fastnorm_capi()->rms_norm_axis_f16)
#define fastnorm_layer_norm_axis_backward_f16 (fastnorm_capi()->layer_norm_axis_backward_f16)
#define fastnorm_rms_norm_axis_backward_f16 (fastnorm_capi()->rms_norm_axis_backward_f16)
#define fastnorm_channel_sums_scale_f16 (fastnorm_capi()->channel_sums_scale_f16)
#define fastnorm_weight_norm_f16 (fastnorm_capi()->weight_norm_f16)
#define fastnorm_weight_norm_backward_f16 (fastnorm_capi()->weight_norm_backward_f16)
#define fastnorm_layer_norm_bf16 (fastnorm_capi()->layer_norm_bf16)
#define fastnorm_layer_norm_backward_bf16 (fastnorm_capi()->layer_norm_backward_bf16)
#define fastnorm_rms_norm_bf16 (fastnorm_capi()->rms_norm_bf16)
#define fastnorm_rms_norm_backward_bf16 (fastnorm_capi()->rms_norm_backward_bf16)
#define fastnorm_add_layer_norm_bf16 (fastnorm_capi()->add_layer_norm_bf16)
#define fastnorm_add_rms_norm_bf16 (fastnorm_capi()->add_rms_norm_bf16)
#define fastnorm_layer_norm_per_sample_bf16 (fastnorm_capi()->layer_norm_per_sample_bf16)
#define fastnorm_layer_norm_per_sample_backward_bf16 (fastnorm_capi()->layer_norm_per_sample_backward_bf16)
#define fastnorm_group_norm_bf16 (fastnorm_capi()->group_norm_bf16)
#define fastnorm_group_norm_backward_bf16 (fastnorm_capi()->group_norm_backward_bf16)
#define fastnorm_channel_moments_bf16 (fastnorm_capi()->channel_moments_bf16)
#define fastnorm_channel_normalize_bf16 (fastnorm_capi()->channel_normalize_bf16)
#define fastnorm_channel_sums_bf16 (fastnorm_capi()->channel_sums_bf16)
#define fastnorm_channel_affine_backward_bf16 (fastnorm_capi()->channel_affine_backward_bf16)
#define fastnorm_layer_norm_axis_bf16 (fastnorm_capi()->layer_norm_axis_bf16)
#define fastnorm_rms_norm_axis_bf16 (fastnorm_capi()->rms_norm_axis_bf16)
#define fastnorm_layer_norm_axis_backward_bf16 (fastnorm_capi()->layer_norm_axis_backward_bf16)
#define fastnorm_rms_norm_axis_backward_bf16 (fastnorm_capi()->rms_norm_axis_backward_bf16)
#define fastnorm_channel_sums_scale_bf16 (fastnorm_capi()->channel_sums_scale_bf16)
#define fastnorm_weight_norm_bf16 (fastnorm_capi()->weight_norm_bf16)
#define fastnorm_weight_norm_backward_bf16 (fastnorm_capi()->weight_norm_backward_bf16)
#define fastnorm_add_layer_norm_axis_f32 (fastnorm_capi()->add_layer_norm_axis_f32)
#define fastnorm_add_rms_norm_axis_f32 (fastnorm_capi()->add_rms_norm_axis_f32)
#define fastnorm_add_layer_norm_axis_f64 (fastnorm_capi()->add_layer_norm_axis_f64)
#define fastnorm_add_rms_norm_axis_f64 (fastnorm_capi()->add_rms_norm_axis_f64)
#define fastnorm_add_layer_norm_axis_f16 (fastnorm_capi()->add_layer_norm_axis_f16)
#define fastnorm_add_rms_norm_axis_f16 (fastnorm_capi()->add_rms_norm_axis_f16)
#define fastnorm_add_layer_norm_axis_bf16 (fastnorm_capi()->add_layer_norm_axis_bf16)
#define fastnorm_add_rms_norm_axis_bf16 (fastnorm_capi()->add_rms_norm_axis_bf16)
#define fastnorm_bf16_convert_in_use (fastnorm_capi()->bf16_convert_in_use)
#define fastnorm_add_layer_norm_backward_f32 (fastnorm_capi()->add_layer_norm_backward_f32)
#define fastnorm_add_rms_norm_backward_f32 (fastnorm_capi()->add_rms_norm_backward_f32)
#define fastnorm_add_layer_norm_backward_f64 (fastnorm_capi()->add_layer_norm_backward_f64)
#define fastnorm_add_rms_norm_backward_f64 (fastnorm_capi()->add_rms_norm_backward_f64)
#define fastnorm_add_layer_norm_backward_f16 (fastnorm_capi()->add_layer_norm_backward_f16)
#define fastnorm_add_rms_norm_backward_f16 (fastnorm_capi()->add_rms_norm_backward_f16)
#define fastnorm_add_layer_norm_backward_bf16 (fastnorm_capi()->add_layer_norm_backward_bf16)
#define fastnorm_add_rms_norm_backward_bf16 (fastnorm_capi()->add_rms_norm_backward_bf16)
#define fastnorm_avx512_in_use (fastnorm_capi()->avx512_in_use)

#endif /* FASTNORM_CAPI_H */
