# fastnorm.kernels: the C entry points of fastnorm.h for other Cython modules.
#
#     from fastnorm cimport kernels as fk
#     fk.fastnorm_import()                        # once, at import (recommended)
#     with nogil:
#         rc = fk.fastnorm_layer_norm_f32(rows, n, x, n, y, n, w, b, 1e-5,
#                                         NULL, NULL, 4)
#
# Compile the extension with include_dirs=[fastnorm.get_include()]; nothing
# is linked. The calls go through the table that the installed fastnorm
# exports (fastnorm_capi.h), so they run the package's own kernels with its
# kernel selection and OpenMP threads. Every kernel may be called without
# the GIL. fastnorm.h documents the arguments, layouts and return codes; a
# return value other than FASTNORM_OK is an error code, not an exception.
#
# fastnorm_import() imports the table (raising ImportError when fastnorm is
# missing or older than this file); a kernel called before it imports the
# table itself, taking the GIL for that moment, and ends the process if it
# cannot.

from libc.stdint cimport int64_t, uint16_t

cdef extern from "fastnorm_capi.h":
    int fastnorm_import() except -1

cdef extern from "fastnorm_capi.h" nogil:
    int FASTNORM_VERSION_MAJOR
    int FASTNORM_VERSION_MINOR
    int FASTNORM_VERSION_PATCH
    int FASTNORM_VERSION_NUMBER
    int FASTNORM_API_TABLE_VERSION

    int FASTNORM_OK
    int FASTNORM_ENOMEM
    int FASTNORM_EINVAL

    int FASTNORM_ISA_SCALAR
    int FASTNORM_ISA_AVX2
    unsigned FASTNORM_CPU_AVX
    unsigned FASTNORM_CPU_AVX2
    unsigned FASTNORM_CPU_FMA
    unsigned FASTNORM_CPU_F16C
    unsigned FASTNORM_CPU_OS_AVX

    # version, dispatch, threads
    int fastnorm_version_number()
    unsigned fastnorm_cpu_features()
    int fastnorm_isa_available(int isa)
    int fastnorm_set_isa(int isa)
    int fastnorm_get_isa()
    int fastnorm_bf16_convert_in_use()
    int fastnorm_avx512_in_use()
    int fastnorm_has_openmp()
    int fastnorm_max_threads()
    int fastnorm_num_procs()
    int fastnorm_serial_after_fork()

    # row normalizers
    int fastnorm_layer_norm_f32(
        int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
        const float *weight, const float *bias, double eps, float *mean, float *rstd,
        int num_threads)
    int fastnorm_layer_norm_f64(
        int64_t rows, int64_t n, const double *x, int64_t ldx, double *y, int64_t ldy,
        const double *weight, const double *bias, double eps, double *mean, double *rstd,
        int num_threads)
    int fastnorm_layer_norm_backward_f32(
        int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *x, int64_t ldx,
        const float *mean, const float *rstd, const float *weight, float *dx, int64_t lddx,
        float *dweight, float *dbias, int num_threads)
    int fastnorm_layer_norm_backward_f64(
        int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *x,
        int64_t ldx, const double *mean, const double *rstd, const double *weight,
        double *dx, int64_t lddx, double *dweight, double *dbias, int num_threads)
    int fastnorm_rms_norm_f32(
        int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
        const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_rms_norm_f64(
        int64_t rows, int64_t n, const double *x, int64_t ldx, double *y, int64_t ldy,
        const double *weight, double eps, double *rstd, int num_threads)
    int fastnorm_rms_norm_backward_f32(
        int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *x, int64_t ldx,
        const float *rstd, const float *weight, float *dx, int64_t lddx, float *dweight,
        int num_threads)
    int fastnorm_rms_norm_backward_f64(
        int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *x,
        int64_t ldx, const double *rstd, const double *weight, double *dx, int64_t lddx,
        double *dweight, int num_threads)
    int fastnorm_add_layer_norm_f32(
        int64_t rows, int64_t n, const float *x, int64_t ldx, const float *residual,
        int64_t ldr, const float *residual_bias, float *sum_out, int64_t lds, float *y,
        int64_t ldy, const float *weight, const float *bias, double eps, float *mean,
        float *rstd, int num_threads)
    int fastnorm_add_layer_norm_f64(
        int64_t rows, int64_t n, const double *x, int64_t ldx, const double *residual,
        int64_t ldr, const double *residual_bias, double *sum_out, int64_t lds, double *y,
        int64_t ldy, const double *weight, const double *bias, double eps, double *mean,
        double *rstd, int num_threads)
    int fastnorm_add_rms_norm_f32(
        int64_t rows, int64_t n, const float *x, int64_t ldx, const float *residual,
        int64_t ldr, const float *residual_bias, float *sum_out, int64_t lds, float *y,
        int64_t ldy, const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_add_rms_norm_f64(
        int64_t rows, int64_t n, const double *x, int64_t ldx, const double *residual,
        int64_t ldr, const double *residual_bias, double *sum_out, int64_t lds, double *y,
        int64_t ldy, const double *weight, double eps, double *rstd, int num_threads)
    int fastnorm_add_layer_norm_backward_f32(
        int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *s,
        int64_t lds, const float *ds, int64_t ldds, const float *mean, const float *rstd,
        const float *weight, float *dsum, int64_t lddsum, float *dweight, float *dbias,
        int num_threads)
    int fastnorm_add_rms_norm_backward_f32(
        int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *s,
        int64_t lds, const float *ds, int64_t ldds, const float *rstd, const float *weight,
        float *dsum, int64_t lddsum, float *dweight, int num_threads)
    int fastnorm_add_layer_norm_backward_f64(
        int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *s,
        int64_t lds, const double *ds, int64_t ldds, const double *mean,
        const double *rstd, const double *weight, double *dsum, int64_t lddsum,
        double *dweight, double *dbias, int num_threads)
    int fastnorm_add_rms_norm_backward_f64(
        int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *s,
        int64_t lds, const double *ds, int64_t ldds, const double *rstd,
        const double *weight, double *dsum, int64_t lddsum, double *dweight,
        int num_threads)
    int fastnorm_layer_norm_per_sample_f32(
        int64_t samples, int64_t rows_per_sample, int64_t n, const float *x, int64_t ldx,
        float *y, int64_t ldy, const float *weight, const float *bias, int64_t ldp,
        double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_f64(
        int64_t samples, int64_t rows_per_sample, int64_t n, const double *x, int64_t ldx,
        double *y, int64_t ldy, const double *weight, const double *bias, int64_t ldp,
        double eps, double *mean, double *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_f32(
        int64_t samples, int64_t rows_per_sample, int64_t n, const float *dy, int64_t lddy,
        const float *x, int64_t ldx, const float *mean, const float *rstd,
        const float *weight, int64_t ldp, float *dx, int64_t lddx, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_f64(
        int64_t samples, int64_t rows_per_sample, int64_t n, const double *dy, int64_t lddy,
        const double *x, int64_t ldx, const double *mean, const double *rstd,
        const double *weight, int64_t ldp, double *dx, int64_t lddx, double *dweight,
        double *dbias, int num_threads)

    # channel normalizers: C-contiguous (S, R, C, L) data
    int fastnorm_group_norm_f32(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const float *x, float *y,
        const float *weight, const float *bias, double eps, float *mean, float *rstd,
        float *var, int num_threads)
    int fastnorm_group_norm_f64(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const double *x, double *y,
        const double *weight, const double *bias, double eps, double *mean, double *rstd,
        double *var, int num_threads)
    int fastnorm_group_norm_backward_f32(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const float *dy,
        const float *x, const float *mean, const float *rstd, const float *weight,
        float *dx, float *dweight, float *dbias, int num_threads)
    int fastnorm_group_norm_backward_f64(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const double *dy,
        const double *x, const double *mean, const double *rstd, const double *weight,
        double *dx, double *dweight, double *dbias, int num_threads)
    int fastnorm_channel_moments_f32(
        int64_t S, int64_t R, int64_t C, int64_t L, const float *x, double eps,
        double *mean, double *var, int num_threads)
    int fastnorm_channel_moments_f64(
        int64_t S, int64_t R, int64_t C, int64_t L, const double *x, double eps,
        double *mean, double *var, int num_threads)
    int fastnorm_channel_normalize_f32(
        int64_t S, int64_t R, int64_t C, int64_t L, const float *x, float *y,
        const double *mean, const double *rstd, const float *weight, const float *bias,
        int accumulate, int num_threads)
    int fastnorm_channel_normalize_f64(
        int64_t S, int64_t R, int64_t C, int64_t L, const double *x, double *y,
        const double *mean, const double *rstd, const double *weight, const double *bias,
        int accumulate, int num_threads)
    int fastnorm_channel_sums_f32(
        int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x,
        const double *mu, double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_sums_f64(
        int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x,
        const double *mu, double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_affine_backward_f32(
        int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x,
        float *dx, const double *mu, const double *r, const double *a, const double *b,
        const double *k, int accumulate, int num_threads)
    int fastnorm_channel_affine_backward_f64(
        int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x,
        double *dx, const double *mu, const double *r, const double *a, const double *b,
        const double *k, int accumulate, int num_threads)
    int fastnorm_layer_norm_axis_f32(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
        float *y, int64_t ldys, int64_t ldyc, const float *weight, const float *bias,
        double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_axis_f64(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        double *y, int64_t ldys, int64_t ldyc, const double *weight, const double *bias,
        double eps, double *mean, double *rstd, int num_threads)
    int fastnorm_rms_norm_axis_f32(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
        float *y, int64_t ldys, int64_t ldyc, const float *weight, double eps, float *rstd,
        int num_threads)
    int fastnorm_rms_norm_axis_f64(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        double *y, int64_t ldys, int64_t ldyc, const double *weight, double eps,
        double *rstd, int num_threads)
    int fastnorm_layer_norm_axis_backward_f32(
        int64_t S, int64_t C, int64_t L, const float *dy, int64_t lddys, int64_t lddyc,
        const float *x, int64_t ldxs, int64_t ldxc, const float *mean, const float *rstd,
        const float *weight, float *dx, int64_t lddxs, int64_t lddxc, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_layer_norm_axis_backward_f64(
        int64_t S, int64_t C, int64_t L, const double *dy, int64_t lddys, int64_t lddyc,
        const double *x, int64_t ldxs, int64_t ldxc, const double *mean, const double *rstd,
        const double *weight, double *dx, int64_t lddxs, int64_t lddxc, double *dweight,
        double *dbias, int num_threads)
    int fastnorm_rms_norm_axis_backward_f32(
        int64_t S, int64_t C, int64_t L, const float *dy, int64_t lddys, int64_t lddyc,
        const float *x, int64_t ldxs, int64_t ldxc, const float *rstd, const float *weight,
        float *dx, int64_t lddxs, int64_t lddxc, float *dweight, int num_threads)
    int fastnorm_rms_norm_axis_backward_f64(
        int64_t S, int64_t C, int64_t L, const double *dy, int64_t lddys, int64_t lddyc,
        const double *x, int64_t ldxs, int64_t ldxc, const double *rstd,
        const double *weight, double *dx, int64_t lddxs, int64_t lddxc, double *dweight,
        int num_threads)
    int fastnorm_add_layer_norm_axis_f32(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
        const float *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        float *sum_out, int64_t ldss, int64_t ldsc, float *y, int64_t ldys, int64_t ldyc,
        const float *weight, const float *bias, double eps, float *mean, float *rstd,
        int num_threads)
    int fastnorm_add_rms_norm_axis_f32(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
        const float *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        float *sum_out, int64_t ldss, int64_t ldsc, float *y, int64_t ldys, int64_t ldyc,
        const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_add_layer_norm_axis_f64(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        const double *residual, int64_t ldrs, int64_t ldrc, const double *residual_bias,
        double *sum_out, int64_t ldss, int64_t ldsc, double *y, int64_t ldys, int64_t ldyc,
        const double *weight, const double *bias, double eps, double *mean, double *rstd,
        int num_threads)
    int fastnorm_add_rms_norm_axis_f64(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        const double *residual, int64_t ldrs, int64_t ldrc, const double *residual_bias,
        double *sum_out, int64_t ldss, int64_t ldsc, double *y, int64_t ldys, int64_t ldyc,
        const double *weight, double eps, double *rstd, int num_threads)
    int fastnorm_weight_norm_f32(
        int64_t C, int64_t L, const float *v, const double *g, double eps, float *w,
        int num_threads)
    int fastnorm_weight_norm_f64(
        int64_t C, int64_t L, const double *v, const double *g, double eps, double *w,
        int num_threads)
    int fastnorm_weight_norm_backward_f32(
        int64_t C, int64_t L, const float *dw, const float *v, const double *g, double eps,
        float *dv, double *dg, int num_threads)
    int fastnorm_weight_norm_backward_f64(
        int64_t C, int64_t L, const double *dw, const double *v, const double *g,
        double eps, double *dv, double *dg, int num_threads)
    int fastnorm_channel_sums_scale_f32(
        int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x,
        const double *mu, double *sum_dy, double *sum_dyx, float *dx, const double *a,
        int num_threads)
    int fastnorm_channel_sums_scale_f64(
        int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x,
        const double *mu, double *sum_dy, double *sum_dyx, double *dx, const double *a,
        int num_threads)
    # 16-bit data (float16, bfloat16): uint16_t bit patterns, float32 parameters and statistics
    int fastnorm_layer_norm_f16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy,
        const float *weight, const float *bias, double eps, float *mean, float *rstd,
        int num_threads)
    int fastnorm_layer_norm_backward_f16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *x,
        int64_t ldx, const float *mean, const float *rstd, const float *weight,
        uint16_t *dx, int64_t lddx, float *dweight, float *dbias, int num_threads)
    int fastnorm_rms_norm_f16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy,
        const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_rms_norm_backward_f16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *x,
        int64_t ldx, const float *rstd, const float *weight, uint16_t *dx, int64_t lddx,
        float *dweight, int num_threads)
    int fastnorm_add_layer_norm_f16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, const uint16_t *residual,
        int64_t ldr, const float *residual_bias, uint16_t *sum_out, int64_t lds,
        uint16_t *y, int64_t ldy, const float *weight, const float *bias, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_add_rms_norm_f16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, const uint16_t *residual,
        int64_t ldr, const float *residual_bias, uint16_t *sum_out, int64_t lds,
        uint16_t *y, int64_t ldy, const float *weight, double eps, float *rstd,
        int num_threads)
    int fastnorm_add_layer_norm_backward_f16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *mean,
        const float *rstd, const float *weight, uint16_t *dsum, int64_t lddsum,
        float *dweight, float *dbias, int num_threads)
    int fastnorm_add_rms_norm_backward_f16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *rstd,
        const float *weight, uint16_t *dsum, int64_t lddsum, float *dweight,
        int num_threads)
    int fastnorm_layer_norm_per_sample_f16(
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *x,
        int64_t ldx, uint16_t *y, int64_t ldy, const float *weight, const float *bias,
        int64_t ldp, double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_f16(
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *dy,
        int64_t lddy, const uint16_t *x, int64_t ldx, const float *mean, const float *rstd,
        const float *weight, int64_t ldp, uint16_t *dx, int64_t lddx, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_group_norm_f16(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const uint16_t *x,
        uint16_t *y, const float *weight, const float *bias, double eps, float *mean,
        float *rstd, float *var, int num_threads)
    int fastnorm_group_norm_backward_f16(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const uint16_t *dy,
        const uint16_t *x, const float *mean, const float *rstd, const float *weight,
        uint16_t *dx, float *dweight, float *dbias, int num_threads)
    int fastnorm_channel_moments_f16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x, double eps,
        double *mean, double *var, int num_threads)
    int fastnorm_channel_normalize_f16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x, uint16_t *y,
        const double *mean, const double *rstd, const float *weight, const float *bias,
        int accumulate, int num_threads)
    int fastnorm_channel_sums_f16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        const double *mu, double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_affine_backward_f16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        uint16_t *dx, const double *mu, const double *r, const double *a, const double *b,
        const double *k, int accumulate, int num_threads)
    int fastnorm_layer_norm_axis_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight, const float *bias,
        double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_rms_norm_axis_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight, double eps,
        float *rstd, int num_threads)
    int fastnorm_layer_norm_axis_backward_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *mean, const float *rstd,
        const float *weight, uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_rms_norm_axis_backward_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *rstd,
        const float *weight, uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight,
        int num_threads)
    int fastnorm_add_layer_norm_axis_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, const float *bias, double eps, float *mean,
        float *rstd, int num_threads)
    int fastnorm_add_rms_norm_axis_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_channel_sums_scale_f16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        const double *mu, double *sum_dy, double *sum_dyx, uint16_t *dx, const double *a,
        int num_threads)
    int fastnorm_weight_norm_f16(
        int64_t C, int64_t L, const uint16_t *v, const double *g, double eps, uint16_t *w,
        int num_threads)
    int fastnorm_weight_norm_backward_f16(
        int64_t C, int64_t L, const uint16_t *dw, const uint16_t *v, const double *g,
        double eps, uint16_t *dv, double *dg, int num_threads)
    int fastnorm_layer_norm_bf16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy,
        const float *weight, const float *bias, double eps, float *mean, float *rstd,
        int num_threads)
    int fastnorm_layer_norm_backward_bf16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *x,
        int64_t ldx, const float *mean, const float *rstd, const float *weight,
        uint16_t *dx, int64_t lddx, float *dweight, float *dbias, int num_threads)
    int fastnorm_rms_norm_bf16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy,
        const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_rms_norm_backward_bf16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *x,
        int64_t ldx, const float *rstd, const float *weight, uint16_t *dx, int64_t lddx,
        float *dweight, int num_threads)
    int fastnorm_add_layer_norm_bf16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, const uint16_t *residual,
        int64_t ldr, const float *residual_bias, uint16_t *sum_out, int64_t lds,
        uint16_t *y, int64_t ldy, const float *weight, const float *bias, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_add_rms_norm_bf16(
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, const uint16_t *residual,
        int64_t ldr, const float *residual_bias, uint16_t *sum_out, int64_t lds,
        uint16_t *y, int64_t ldy, const float *weight, double eps, float *rstd,
        int num_threads)
    int fastnorm_add_layer_norm_backward_bf16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *mean,
        const float *rstd, const float *weight, uint16_t *dsum, int64_t lddsum,
        float *dweight, float *dbias, int num_threads)
    int fastnorm_add_rms_norm_backward_bf16(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *rstd,
        const float *weight, uint16_t *dsum, int64_t lddsum, float *dweight,
        int num_threads)
    int fastnorm_layer_norm_per_sample_bf16(
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *x,
        int64_t ldx, uint16_t *y, int64_t ldy, const float *weight, const float *bias,
        int64_t ldp, double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_bf16(
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *dy,
        int64_t lddy, const uint16_t *x, int64_t ldx, const float *mean, const float *rstd,
        const float *weight, int64_t ldp, uint16_t *dx, int64_t lddx, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_group_norm_bf16(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const uint16_t *x,
        uint16_t *y, const float *weight, const float *bias, double eps, float *mean,
        float *rstd, float *var, int num_threads)
    int fastnorm_group_norm_backward_bf16(
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const uint16_t *dy,
        const uint16_t *x, const float *mean, const float *rstd, const float *weight,
        uint16_t *dx, float *dweight, float *dbias, int num_threads)
    int fastnorm_channel_moments_bf16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x, double eps,
        double *mean, double *var, int num_threads)
    int fastnorm_channel_normalize_bf16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x, uint16_t *y,
        const double *mean, const double *rstd, const float *weight, const float *bias,
        int accumulate, int num_threads)
    int fastnorm_channel_sums_bf16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        const double *mu, double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_affine_backward_bf16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        uint16_t *dx, const double *mu, const double *r, const double *a, const double *b,
        const double *k, int accumulate, int num_threads)
    int fastnorm_layer_norm_axis_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight, const float *bias,
        double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_rms_norm_axis_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight, double eps,
        float *rstd, int num_threads)
    int fastnorm_layer_norm_axis_backward_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *mean, const float *rstd,
        const float *weight, uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_rms_norm_axis_backward_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *rstd,
        const float *weight, uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight,
        int num_threads)
    int fastnorm_add_layer_norm_axis_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, const float *bias, double eps, float *mean,
        float *rstd, int num_threads)
    int fastnorm_add_rms_norm_axis_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_channel_sums_scale_bf16(
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        const double *mu, double *sum_dy, double *sum_dyx, uint16_t *dx, const double *a,
        int num_threads)
    int fastnorm_weight_norm_bf16(
        int64_t C, int64_t L, const uint16_t *v, const double *g, double eps, uint16_t *w,
        int num_threads)
    int fastnorm_weight_norm_backward_bf16(
        int64_t C, int64_t L, const uint16_t *dw, const uint16_t *v, const double *g,
        double eps, uint16_t *dv, double *dg, int num_threads)
