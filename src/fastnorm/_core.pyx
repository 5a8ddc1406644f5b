"""fastnorm._core: argument checking, array layout, and the calls into the C kernels.

Every public normalizer is a `def` here so that a call goes from Python to
the kernel through one compiled function: checks first (nothing is written
before they pass), then a (rows, n) view of each array with unit element
stride -- made without a copy whenever the layout allows it -- then one C
call with the GIL released.
"""
import os
import warnings

import numpy as np

cimport numpy as cnp
from libc.math cimport NAN, isfinite, isinf, sqrt
from libc.stdint cimport int64_t, uint16_t, uintptr_t
from libc.string cimport memcpy

cimport cython
from cpython.pycapsule cimport PyCapsule_New

cnp.import_array()

cdef extern from "fastnorm.h" nogil:
    int FASTNORM_VERSION_NUMBER
    int FASTNORM_OK
    int FASTNORM_ISA_SCALAR
    int FASTNORM_ISA_AVX2
    unsigned FASTNORM_CPU_AVX
    unsigned FASTNORM_CPU_AVX2
    unsigned FASTNORM_CPU_FMA
    unsigned FASTNORM_CPU_F16C
    unsigned FASTNORM_CPU_OS_AVX
    unsigned FASTNORM_CPU_AVX512F
    unsigned FASTNORM_CPU_AVX512VL
    unsigned FASTNORM_CPU_AVX512DQ
    unsigned FASTNORM_CPU_AVX512_BF16
    unsigned FASTNORM_CPU_OS_AVX512
    unsigned FASTNORM_CPU_AVX512BW

    unsigned fastnorm_cpu_features()
    int fastnorm_isa_available(int isa)
    int fastnorm_set_isa(int isa)
    int fastnorm_get_isa()
    int fastnorm_bf16_convert_in_use()
    int fastnorm_avx512_in_use()
    int fastnorm_has_threads()
    int fastnorm_max_threads()
    int fastnorm_num_procs()
    int fastnorm_serial_after_fork()
    ctypedef struct fastnorm_api_table:
        pass
    const fastnorm_api_table *fastnorm_get_api_table()

    int fastnorm_layer_norm_f32(int64_t rows, int64_t n, const float *x, int64_t ldx,
                                float *y, int64_t ldy, const float *weight, const float *bias,
                                double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_f64(int64_t rows, int64_t n, const double *x, int64_t ldx,
                                double *y, int64_t ldy, const double *weight,
                                const double *bias, double eps, double *mean, double *rstd,
                                int num_threads)
    int fastnorm_layer_norm_backward_f32(int64_t rows, int64_t n, const float *dy,
                                         int64_t lddy, const float *x, int64_t ldx,
                                         const float *mean, const float *rstd,
                                         const float *weight, float *dx, int64_t lddx,
                                         float *dweight, float *dbias, int num_threads)
    int fastnorm_layer_norm_backward_f64(int64_t rows, int64_t n, const double *dy,
                                         int64_t lddy, const double *x, int64_t ldx,
                                         const double *mean, const double *rstd,
                                         const double *weight, double *dx, int64_t lddx,
                                         double *dweight, double *dbias, int num_threads)
    int fastnorm_rms_norm_f32(int64_t rows, int64_t n, const float *x, int64_t ldx, float *y,
                              int64_t ldy, const float *weight, double eps, float *rstd,
                              int num_threads)
    int fastnorm_rms_norm_f64(int64_t rows, int64_t n, const double *x, int64_t ldx,
                              double *y, int64_t ldy, const double *weight, double eps,
                              double *rstd, int num_threads)
    int fastnorm_add_layer_norm_f32(int64_t rows, int64_t n, const float *x, int64_t ldx,
                                    const float *residual, int64_t ldr,
                                    const float *residual_bias, float *sum_out, int64_t lds,
                                    float *y, int64_t ldy, const float *weight,
                                    const float *bias, double eps, float *mean, float *rstd,
                                    int num_threads)
    int fastnorm_add_layer_norm_f64(int64_t rows, int64_t n, const double *x, int64_t ldx,
                                    const double *residual, int64_t ldr,
                                    const double *residual_bias, double *sum_out, int64_t lds,
                                    double *y, int64_t ldy, const double *weight,
                                    const double *bias, double eps, double *mean,
                                    double *rstd, int num_threads)
    int fastnorm_add_rms_norm_f32(int64_t rows, int64_t n, const float *x, int64_t ldx,
                                  const float *residual, int64_t ldr, const float *residual_bias,
                                  float *sum_out, int64_t lds, float *y, int64_t ldy,
                                  const float *weight, double eps, float *rstd, int num_threads)
    int fastnorm_add_rms_norm_f64(int64_t rows, int64_t n, const double *x, int64_t ldx,
                                  const double *residual, int64_t ldr,
                                  const double *residual_bias, double *sum_out, int64_t lds,
                                  double *y, int64_t ldy, const double *weight, double eps,
                                  double *rstd, int num_threads)
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
        float *y, int64_t ldy, const float *weight, const float *bias, int64_t ldp, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_f64(
        int64_t samples, int64_t rows_per_sample, int64_t n, const double *x, int64_t ldx,
        double *y, int64_t ldy, const double *weight, const double *bias, int64_t ldp,
        double eps, double *mean, double *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_f32(
        int64_t samples, int64_t rows_per_sample, int64_t n, const float *dy, int64_t lddy,
        const float *x, int64_t ldx, const float *mean, const float *rstd, const float *weight,
        int64_t ldp, float *dx, int64_t lddx, float *dweight, float *dbias, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_f64(
        int64_t samples, int64_t rows_per_sample, int64_t n, const double *dy, int64_t lddy,
        const double *x, int64_t ldx, const double *mean, const double *rstd,
        const double *weight, int64_t ldp, double *dx, int64_t lddx, double *dweight,
        double *dbias, int num_threads)
    int fastnorm_rms_norm_backward_f32(int64_t rows, int64_t n, const float *dy, int64_t lddy,
                                       const float *x, int64_t ldx, const float *rstd,
                                       const float *weight, float *dx, int64_t lddx,
                                       float *dweight, int num_threads)
    int fastnorm_rms_norm_backward_f64(int64_t rows, int64_t n, const double *dy,
                                       int64_t lddy, const double *x, int64_t ldx,
                                       const double *rstd, const double *weight, double *dx,
                                       int64_t lddx, double *dweight, int num_threads)
    int fastnorm_layer_norm_axis_f32(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc, float *y,
        int64_t ldys, int64_t ldyc, const float *weight, const float *bias, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_axis_f64(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        double *y, int64_t ldys, int64_t ldyc, const double *weight, const double *bias,
        double eps, double *mean, double *rstd, int num_threads)
    int fastnorm_rms_norm_axis_f32(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc, float *y,
        int64_t ldys, int64_t ldyc, const float *weight, double eps, float *rstd,
        int num_threads)
    int fastnorm_rms_norm_axis_f64(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        double *y, int64_t ldys, int64_t ldyc, const double *weight, double eps, double *rstd,
        int num_threads)
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
        const double *x, int64_t ldxs, int64_t ldxc, const double *rstd, const double *weight,
        double *dx, int64_t lddxs, int64_t lddxc, double *dweight, int num_threads)
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
    int fastnorm_layer_norm_f16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                uint16_t *y, int64_t ldy, const float *weight, const float *bias,
                                double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_backward_f16(int64_t rows, int64_t n, const uint16_t *dy,
                                         int64_t lddy, const uint16_t *x, int64_t ldx,
                                         const float *mean, const float *rstd,
                                         const float *weight, uint16_t *dx, int64_t lddx,
                                         float *dweight, float *dbias, int num_threads)
    int fastnorm_rms_norm_f16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                              int64_t ldy, const float *weight, double eps, float *rstd,
                              int num_threads)
    int fastnorm_add_layer_norm_f16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                    const uint16_t *residual, int64_t ldr,
                                    const float *residual_bias, uint16_t *sum_out, int64_t lds,
                                    uint16_t *y, int64_t ldy, const float *weight,
                                    const float *bias, double eps, float *mean, float *rstd,
                                    int num_threads)
    int fastnorm_add_rms_norm_f16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                  const uint16_t *residual, int64_t ldr, const float *residual_bias,
                                  uint16_t *sum_out, int64_t lds, uint16_t *y, int64_t ldy,
                                  const float *weight, double eps, float *rstd, int num_threads)
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
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *x, int64_t ldx,
        uint16_t *y, int64_t ldy, const float *weight, const float *bias, int64_t ldp, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_f16(
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *dy, int64_t lddy,
        const uint16_t *x, int64_t ldx, const float *mean, const float *rstd, const float *weight,
        int64_t ldp, uint16_t *dx, int64_t lddx, float *dweight, float *dbias, int num_threads)
    int fastnorm_rms_norm_backward_f16(int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy,
                                       const uint16_t *x, int64_t ldx, const float *rstd,
                                       const float *weight, uint16_t *dx, int64_t lddx,
                                       float *dweight, int num_threads)
    int fastnorm_layer_norm_axis_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc, uint16_t *y,
        int64_t ldys, int64_t ldyc, const float *weight, const float *bias, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_rms_norm_axis_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc, uint16_t *y,
        int64_t ldys, int64_t ldyc, const float *weight, double eps, float *rstd,
        int num_threads)
    int fastnorm_layer_norm_axis_backward_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *mean, const float *rstd,
        const float *weight, uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_rms_norm_axis_backward_f16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *rstd, const float *weight,
        uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight, int num_threads)
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
    int fastnorm_layer_norm_bf16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                uint16_t *y, int64_t ldy, const float *weight, const float *bias,
                                double eps, float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_backward_bf16(int64_t rows, int64_t n, const uint16_t *dy,
                                         int64_t lddy, const uint16_t *x, int64_t ldx,
                                         const float *mean, const float *rstd,
                                         const float *weight, uint16_t *dx, int64_t lddx,
                                         float *dweight, float *dbias, int num_threads)
    int fastnorm_rms_norm_bf16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                              int64_t ldy, const float *weight, double eps, float *rstd,
                              int num_threads)
    int fastnorm_add_layer_norm_bf16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                    const uint16_t *residual, int64_t ldr,
                                    const float *residual_bias, uint16_t *sum_out, int64_t lds,
                                    uint16_t *y, int64_t ldy, const float *weight,
                                    const float *bias, double eps, float *mean, float *rstd,
                                    int num_threads)
    int fastnorm_add_rms_norm_bf16(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                                  const uint16_t *residual, int64_t ldr, const float *residual_bias,
                                  uint16_t *sum_out, int64_t lds, uint16_t *y, int64_t ldy,
                                  const float *weight, double eps, float *rstd, int num_threads)
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
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *x, int64_t ldx,
        uint16_t *y, int64_t ldy, const float *weight, const float *bias, int64_t ldp, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_layer_norm_per_sample_backward_bf16(
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *dy, int64_t lddy,
        const uint16_t *x, int64_t ldx, const float *mean, const float *rstd, const float *weight,
        int64_t ldp, uint16_t *dx, int64_t lddx, float *dweight, float *dbias, int num_threads)
    int fastnorm_rms_norm_backward_bf16(int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy,
                                       const uint16_t *x, int64_t ldx, const float *rstd,
                                       const float *weight, uint16_t *dx, int64_t lddx,
                                       float *dweight, int num_threads)
    int fastnorm_layer_norm_axis_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc, uint16_t *y,
        int64_t ldys, int64_t ldyc, const float *weight, const float *bias, double eps,
        float *mean, float *rstd, int num_threads)
    int fastnorm_rms_norm_axis_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc, uint16_t *y,
        int64_t ldys, int64_t ldyc, const float *weight, double eps, float *rstd,
        int num_threads)
    int fastnorm_layer_norm_axis_backward_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *mean, const float *rstd,
        const float *weight, uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight,
        float *dbias, int num_threads)
    int fastnorm_rms_norm_axis_backward_bf16(
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc,
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *rstd, const float *weight,
        uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight, int num_threads)
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


# The entry points of fastnorm.h as a table, for other extension modules
# (fastnorm_capi.h, fastnorm/kernels.pxd): they call these kernels without
# linking them.
_C_API = PyCapsule_New(<void *>fastnorm_get_api_table(), "fastnorm._core._C_API", NULL)


# --------------------------------------------------------------------------
# Instruction set and threads
# --------------------------------------------------------------------------

include "_targets.pxi"


cdef extern from "dispatch.h":
    int64_t fn_stream_min_bytes() nogil
    int64_t fn_set_stream_min_bytes(int64_t nbytes) nogil


def _stream_bytes(nbytes=None):
    """The output size (bytes) from which the row normalizers write y and dx
    with streaming stores (-1: never). nbytes=None asks; an int sets it
    (negative: never) and returns the value before. For tests that compare
    the two stores (the same bits), and for measuring; FASTNORM_STREAM_BYTES
    in the environment sets it at the first call."""
    if nbytes is None:
        return fn_stream_min_bytes()
    return fn_set_stream_min_bytes(int(nbytes))


cdef extern from "pool.h":
    int fn_pool_spin_us(int us) nogil
    int fn_pool_quiet_ms(int ms) nogil
    int fn_pool_shuffle(int on) nogil
    int fn_pool_workers() nogil


def _has_threads():
    """Whether the kernels were built with fastnorm's thread pool (else serial)."""
    return bool(fastnorm_has_threads())


def _pool_spin_us(us=None):
    """The workers' spin after a call, in microseconds (for measurements)."""
    if us is not None and (isinstance(us, bool) or not isinstance(us, (int, np.integer))
                           or us < 0):
        raise ValueError(f"us must be a non-negative int, got {us!r}")
    return fn_pool_spin_us(-1 if us is None else min(int(us), 1000000))


def _pool_quiet_ms(ms=None):
    """How long the pool keeps quiet (calls on the caller alone, workers not
    spinning) once it sees the CPUs oversubscribed, in milliseconds; 0 turns
    that off (for measurements). Returns the value in force."""
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, (int, np.integer))
                           or ms < 0):
        raise ValueError(f"ms must be a non-negative int, got {ms!r}")
    return fn_pool_quiet_ms(-1 if ms is None else min(int(ms), 60000))


def _pool_shuffle(on=None):
    """For tests: True makes every threaded call claim its chunks in a random
    order, its workers pausing at random before each claim (the results must
    not change); False restores the normal order. Returns the setting."""
    return bool(fn_pool_shuffle(-1 if on is None else (1 if on else 0)))


def _pool_workers():
    """Worker threads the pool has started."""
    return fn_pool_workers()


cdef int _user_threads = 0  # 0: not set, follow the pool's default; < 0: count back from it


cdef int _check_threads(object n, str name) except 0:
    """A thread request as given (negative: count back), clamped to a C int; 0 is refused."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(n).__name__}")
    if n == 0:
        raise ValueError(
            f"{name} must be positive, or negative to count back from the number of "
            "usable threads (-1: all of them); got 0"
        )
    return max(-(1 << 20), min(int(n), 1 << 20))  # beyond any machine: clamp


cdef inline int _effective_threads(int request):
    """Threads for a checked request: 0 = the pool's default, < 0 counts back from it.

    Never more than the processors this process may run on (the CPU
    affinity): more threads than cores only wait for each other, and each
    costs an OS thread."""
    if not fastnorm_has_threads() or fastnorm_serial_after_fork():
        return 1
    cdef int cap = max(1, fastnorm_num_procs())
    if request > 0:
        return min(request, cap)
    cdef int available = min(max(1, fastnorm_max_threads()), cap)
    if request == 0:
        return available
    return max(1, available + 1 + request)


cdef inline int _resolve_threads(object num_threads) except -1:
    if num_threads is None:
        return _effective_threads(_user_threads)
    return _effective_threads(_check_threads(num_threads, "num_threads"))


def set_num_threads(n):
    """Set the default number of threads of fastnorm's kernels.

    Parameters
    ----------
    n : int or None
        ``n`` > 0 is the count; ``n`` < 0 counts back from the number of usable
        threads at each call (``-1``: all); ``None`` returns to the default,
        which follows the thread pool's default (threadpoolctl's limits, else
        ``OMP_NUM_THREADS``, else the CPU affinity). No call uses more threads
        than the processors this process may run on (its CPU affinity): a
        larger count runs with that many. A serial build always uses one
        thread.

    Examples
    --------
    >>> import fastnorm
    >>> fastnorm.set_num_threads(1)
    >>> fastnorm.get_num_threads()
    1
    >>> fastnorm.set_num_threads(None)  # back to the pool's default
    """
    global _user_threads
    _user_threads = 0 if n is None else _check_threads(n, "n")


def get_num_threads():
    """The number of threads a call with ``num_threads=None`` may use.

    Returns
    -------
    int
        1 in a process forked after fastnorm's threads ran: calls there run on
        one thread whatever they ask for (the same results).

    Examples
    --------
    >>> import fastnorm
    >>> fastnorm.get_num_threads() >= 1
    True
    """
    return _effective_threads(_user_threads)


def _num_procs():
    return fastnorm_num_procs()


def _serial_after_fork():
    """Whether this process was forked after fastnorm's threads ran (calls run on one thread)."""
    return bool(fastnorm_serial_after_fork())


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


cdef str _describe(object obj):
    return type(obj).__name__


# The data types of x: each has its own kernels. 16-bit data (float16, and
# bfloat16 from the optional ml_dtypes package, a NumPy user type) computes in
# float32, with float32 parameters and statistics.
cdef enum:
    K_F32 = 0
    K_F64 = 1
    K_F16 = 2
    K_BF16 = 3

_DATA_DTYPES = "float32, float64, float16 or bfloat16"


cdef extern from "numpy/arrayobject.h":
    int _NPY_HALF "NPY_HALF"
    int _NPY_USERDEF "NPY_USERDEF"


# The type number NumPy gave the first bfloat16 dtype seen: a user type's
# number stays the same for the process, and asking a dtype its name costs
# about half a microsecond, several times a call otherwise.
cdef int _bf16_typenum = -1


cdef int _kind(cnp.ndarray a):
    """The data kind (K_*) of a's dtype, or -1 for any other dtype."""
    global _bf16_typenum
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT:
        return K_F32
    if t == cnp.NPY_DOUBLE:
        return K_F64
    if t == _NPY_HALF:
        return K_F16
    if t < _NPY_USERDEF:
        return -1
    if t == _bf16_typenum:
        return K_BF16
    if a.dtype.name == "bfloat16":  # any other package's bfloat16 too, by name
        if _bf16_typenum < 0:
            _bf16_typenum = t
        return K_BF16
    return -1


cdef inline bint _is_float(cnp.ndarray a):
    """Whether a holds floating-point values fastnorm accepts as parameters."""
    return cnp.PyArray_ISFLOAT(a) or _kind(a) == K_BF16


cdef inline int _calc_type(cnp.ndarray x):
    """Type number of the parameters and statistics for data x: x's own, or
    float32 for 16-bit data."""
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
                f"{name} must be an array of {_DATA_DTYPES}, got {_describe(obj)}"
            ) from exc
    if _kind(a) < 0:
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
        raise TypeError(f"axis must be an int or a tuple of ints, got {_describe(axis)}")
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
            raise TypeError(f"eps must be a real number, got {_describe(eps)}")
        try:
            e = float(eps)
        except OverflowError as exc:
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}") from exc
        except (TypeError, ValueError) as exc:
            raise TypeError(f"eps must be a real number, got {_describe(eps)}") from exc
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
        raise TypeError(f"{name} must be a floating-point array, got {_describe(obj)}") from exc


cdef cnp.ndarray _as_typed(cnp.ndarray a, cnp.ndarray like, str name):
    """a as a C-contiguous, aligned, native array of the parameter type of data
    like (like's dtype, float32 for 16-bit data); no copy if it is one."""
    if not _is_float(a):
        raise TypeError(f"{name} must be a floating-point array, got dtype {a.dtype}")
    cdef int t = _calc_type(like)
    if (cnp.PyArray_TYPE(a) == t and cnp.PyArray_ISCARRAY_RO(a)
            and cnp.PyArray_ISNOTSWAPPED(a)):
        return a
    return np.array(a, dtype=cnp.PyArray_DescrFromType(t), order="C", copy=True)


cdef object _as_param(object p, _Layout L, str name, str xname="x"):
    """A parameter (weight, bias): the normalized axes' shape, x's dtype, C order."""
    if p is None:
        return None
    cdef cnp.ndarray a = _as_float_array(p, name)
    if _is_float(a) and not _has_dims(a, L.dims + L.nd - L.k, L.k):
        raise ValueError(
            f"{name} must have shape {L.nshape()} (the normalized axes of {xname}), "
            f"got {_shape(a)}"
        )
    return _as_typed(a, L.x, name)


cdef cnp.ndarray _as_stats(object s, _Layout L, str name, str xname="x"):
    """Per-row statistics (mean, rstd): x's shape without the normalized axes."""
    cdef cnp.ndarray a = _as_float_array(s, name)
    if _is_float(a) and not _has_dims(a, L.dims, L.nd - L.k):
        raise ValueError(
            f"{name} must have shape {L.stats_shape()} ({xname} without its normalized axes), "
            f"got {_shape(a)}"
        )
    return _as_typed(a, L.x, name)


cdef cnp.ndarray _check_out(object out, cnp.ndarray x, str name):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {_describe(out)}")
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
    """An array that must match x (named xname) in shape and dtype (dy)."""
    cdef cnp.ndarray a = _as_data(arr, name)
    if not _same_shape(a, x):
        raise ValueError(f"{name} must have the shape of {xname} {_shape(x)}, got {_shape(a)}")
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(x):
        raise TypeError(f"{name} must have dtype {x.dtype} like {xname}, got {a.dtype}")
    return a


# --------------------------------------------------------------------------
# Layout: arrays as (rows, n) with unit element stride
# --------------------------------------------------------------------------

cdef struct Rows:
    char *data
    int64_t rows
    int64_t n
    int64_t ld  # elements between the starts of consecutive rows


cdef bint _rows_view(cnp.ndarray a, int k, Rows *v):
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


cdef void _extent(Rows *v, cnp.npy_intp isz, uintptr_t *lo, uintptr_t *hi):
    cdef int64_t span = (v.rows - 1) * v.ld
    cdef uintptr_t base = <uintptr_t>v.data
    if span >= 0:
        lo[0] = base
        hi[0] = base + <uintptr_t>((span + v.n) * isz)
    else:
        lo[0] = base + <uintptr_t>(span * isz)
        hi[0] = base + <uintptr_t>(v.n * isz)


cdef bint _unsafe_overlap(Rows *dst, Rows *src, cnp.npy_intp isz):
    """Whether writing dst row by row could clobber src rows not yet read.
    Writing exactly over src (same start, same row stride) is safe."""
    cdef uintptr_t dlo, dhi, slo, shi
    if dst.rows == 0 or dst.n == 0:
        return False
    if dst.data == src.data and (dst.ld == src.ld or dst.rows == 1):
        return False
    _extent(dst, isz, &dlo, &dhi)
    _extent(src, isz, &slo, &shi)
    return dlo < shi and slo < dhi


@cython.freelist(4)
cdef class _Layout:
    """How one call sees x: the normalized axes, and (rows, n) views.

    `moved` is x with the normalized axes moved to the end (x itself when they
    already are); `work` is moved, copied to C order only when no (rows, n)
    view of it exists. `dims` are moved's dimensions: the first nd - k give
    the statistics' shape, the last k the parameters' shape.
    """
    cdef cnp.ndarray x, moved, work
    cdef tuple axes
    cdef bint trailing
    cdef int nd, k
    cdef cnp.npy_intp *dims
    cdef Rows xv

    cdef cnp.ndarray to_moved(self, cnp.ndarray a):
        """Another array of x's shape, seen with the normalized axes last."""
        if self.trailing:
            return a
        return np.moveaxis(a, self.axes, tuple(range(self.nd - self.k, self.nd)))

    cdef cnp.ndarray rows_of(self, cnp.ndarray a, Rows *v):
        """(rows, n) view of another array of x's shape (such as dy) into v;
        returns the array v points into (a copy when no view exists)."""
        cdef cnp.ndarray w = self.to_moved(a)
        if not _rows_view(w, self.k, v):
            # a fresh copy is C-contiguous and aligned, so the view exists
            # (np.ascontiguousarray would keep an unaligned array as it is)
            w = w.copy(order="C")
            _rows_view(w, self.k, v)
        return w

    cdef tuple nshape(self):
        return _shape(self.moved)[self.nd - self.k:]

    cdef tuple stats_shape(self):
        return _shape(self.moved)[:self.nd - self.k]

    cdef cnp.ndarray empty_stats(self):
        return cnp.PyArray_EMPTY(self.nd - self.k, self.dims, _calc_type(self.x), 0)

    cdef cnp.ndarray empty_params(self):
        return cnp.PyArray_EMPTY(self.k, self.dims + self.nd - self.k, _calc_type(self.x), 0)


cdef _Layout _layout(cnp.ndarray x, object axis, bint rows=True):
    """x's layout for `axis`; rows=False leaves out the (rows, n) view of x
    (work, xv), which may need a transposing copy."""
    cdef _Layout L = _Layout.__new__(_Layout)
    cdef int nd = cnp.PyArray_NDIM(x)
    if nd == 0:
        raise ValueError("x must have at least one dimension")
    if type(axis) is int and axis == -1:
        L.k = 1
        L.trailing = True
    else:
        L.axes = _normalize_axes(axis, nd)
        L.k = len(L.axes)
        L.trailing = L.axes[0] == nd - L.k and L.axes[L.k - 1] == nd - 1
    L.nd = nd
    L.x = x
    L.moved = L.to_moved(x)
    L.dims = cnp.PyArray_DIMS(L.moved)
    if rows:
        L.work = L.rows_of(x, &L.xv)
    return L


@cython.freelist(4)
cdef class _Output:
    """Where a kernel writes an array of x's shape: straight into the
    destination when it has a (rows, n) view that is safe to write while the
    inputs are read, else into a scratch array copied over afterwards."""
    cdef cnp.ndarray dest, dest_moved, scratch
    cdef Rows v

    cdef void finish(self):
        if self.scratch is not None:
            np.copyto(self.dest_moved, self.scratch)


cdef _Output _output(_Layout L, object out, Rows *reads, int nreads, str name="out"):
    cdef _Output o = _Output.__new__(_Output)
    cdef cnp.ndarray x = L.x
    cdef cnp.npy_intp isz = cnp.PyArray_ITEMSIZE(x)
    cdef int i
    cdef bint direct
    if out is None:
        o.dest = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x),
                                   cnp.PyArray_TYPE(x), 0)
    else:
        o.dest = _check_out(out, x, name)
    o.dest_moved = L.to_moved(o.dest)
    direct = _rows_view(o.dest_moved, L.k, &o.v)
    if direct and out is not None:
        for i in range(nreads):
            if _unsafe_overlap(&o.v, &reads[i], isz):
                direct = False
                break
    if not direct:
        o.scratch = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(L.work), cnp.PyArray_DIMS(L.work),
                                      cnp.PyArray_TYPE(x), 0)
        _rows_view(o.scratch, L.k, &o.v)
    return o


cdef object _clear_of(object p, _Output o, cnp.ndarray x):
    """p, or a copy of it when it lies in memory the output will overwrite:
    every parameter must be read as it was before the call (out= semantics)."""
    cdef Rows pv
    cdef cnp.npy_intp isz = cnp.PyArray_ITEMSIZE(x)
    if p is None or o.scratch is not None:
        return p
    # p (C-contiguous) as one row of elements of x's size: float32 parameters
    # of 16-bit data span twice their count
    pv.data = <char *>cnp.PyArray_DATA(<cnp.ndarray>p)
    pv.rows = 1
    pv.n = cnp.PyArray_NBYTES(<cnp.ndarray>p) // isz
    pv.ld = pv.n
    if _unsafe_overlap(&o.v, &pv, isz) or pv.data == o.v.data:
        return p.copy()
    return p


cdef inline char *_ptr(object a):
    return NULL if a is None else <char *>cnp.PyArray_DATA(<cnp.ndarray>a)


cdef inline void _raise_kernel_error(int rc) except *:
    if rc != FASTNORM_OK:
        raise MemoryError("fastnorm could not allocate scratch memory")


# --------------------------------------------------------------------------
# The shared forward and backward of LayerNorm and RMSNorm
# --------------------------------------------------------------------------

cdef double _rms_eps(object eps, cnp.ndarray x) except -1.0:
    """RMSNorm's eps: None is the machine epsilon of the computing dtype -- x's
    for float32 and float64, float32's for 16-bit x -- as torch's RMSNorm on
    the CPU, which computes half and bfloat16 in float32 with float32's
    epsilon."""
    if eps is None:
        if _kind(x) == K_F64:
            return 2.220446049250313e-16
        return 1.1920928955078125e-07
    return _check_eps(eps)


# --------------------------------------------------------------------------
# One normalized axis that is not the last: (S, C, L) views, no transposing copy
# --------------------------------------------------------------------------

cdef struct Axis3:
    char *data
    int64_t S, C, L
    int64_t ss, sc  # elements between consecutive samples, consecutive channels


cdef int _mid_axis(_Layout L):
    """The normalized axis when the axis path applies -- one axis, with more
    than one element after it -- else -1."""
    if L.k != 1 or L.trailing:
        return -1
    cdef int k = L.axes[0], j
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(L.x)
    cdef int64_t n = 1
    for j in range(k + 1, L.nd):
        n *= shape[j]
    return k if n > 1 else -1


cdef bint _axis3_view(cnp.ndarray a, int k, Axis3 *v):
    """Whether a is an (S, C, L) array around axis k: the axes after k collapse
    to L contiguous elements, those before it to one stride. Fills v if so."""
    cdef int nd = cnp.PyArray_NDIM(a), j
    cdef cnp.npy_intp *shape = cnp.PyArray_DIMS(a)
    cdef cnp.npy_intp *strides = cnp.PyArray_STRIDES(a)
    cdef cnp.npy_intp isz = cnp.PyArray_ITEMSIZE(a)
    cdef cnp.npy_intp expect = isz, ss = 0, sc
    cdef int64_t S = 1, C = shape[k], Ln = 1
    cdef bint have_ss = False, empty = False
    cdef char *data = <char *>cnp.PyArray_DATA(a)
    for j in range(nd):
        if shape[j] == 0:
            empty = True
    for j in range(nd - 1, k, -1):
        if shape[j] != 1:
            if strides[j] != expect and not empty:
                return False
            expect *= shape[j]
        Ln *= shape[j]
    sc = strides[k] if C > 1 else Ln * isz
    expect = sc * C
    for j in range(k - 1, -1, -1):
        S *= shape[j]
        if shape[j] == 1:
            continue
        if not have_ss:
            ss = strides[j]
            have_ss = True
        elif strides[j] != expect and not empty:
            return False
        expect = strides[j] * shape[j]
    if empty:  # nothing is read or written: any layout will do
        sc, ss, have_ss = Ln * isz, C * Ln * isz, True
    if not have_ss:
        ss = C * Ln * isz
    if sc % isz != 0 or ss % isz != 0 or (<uintptr_t>data) % isz != 0:
        return False
    v.data = data
    v.S = S
    v.C = C
    v.L = Ln
    v.ss = ss // isz
    v.sc = sc // isz
    return True


cdef cnp.ndarray _axis3_of(cnp.ndarray a, int k, Axis3 *v):
    """An (S, C, L) view of a into v; returns the array it points into (a C-ordered
    copy when a has no such view)."""
    if not _axis3_view(a, k, v):
        a = a.copy(order="C")
        _axis3_view(a, k, v)
    return a


cdef object _clear_of_array(object p, cnp.ndarray dest):
    """p, or a copy when it shares memory with dest (which is about to be written)."""
    if p is None or not np.may_share_memory(p, dest):
        return p
    return p.copy()


cdef bint _axis3_same(Axis3 *a, Axis3 *b):
    return a.data == b.data and a.ss == b.ss and a.sc == b.sc


cdef cnp.ndarray _axis_dest(object arr, cnp.ndarray xa, int k, Axis3 *v,
                            cnp.ndarray xw, Axis3 *xv, cnp.ndarray rw, Axis3 *rv):
    """Where an axis kernel writes a result (out, or the fused add's sum_out)
    while it reads x and residual (the fused add) or x twice (the plain norm):
    arr itself when it has an (S, C, L) view that is one of theirs exactly or
    shares no memory with them (each block is read before it is written),
    else a scratch array (returned; copied into arr afterwards). None: arr is
    written directly; a fresh array when arr is None."""
    if arr is not None and _axis3_view(<cnp.ndarray>arr, k, v) and (
            (_axis3_same(v, xv) or not np.may_share_memory(arr, xw)) and
            (_axis3_same(v, rv) or not np.may_share_memory(arr, rw))):
        return None
    cdef cnp.ndarray d = cnp.PyArray_EMPTY(cnp.PyArray_NDIM(xa), cnp.PyArray_DIMS(xa),
                                           cnp.PyArray_TYPE(xa), 0)
    _axis3_view(d, k, v)
    return d


cdef object _axis_norm(bint centered, cnp.ndarray xa, _Layout L, int k, object w, object b,
                       double e, object out, bint return_stats, int nt):
    """layer_norm / rms_norm over the middle axis k of xa (checked arguments)."""
    cdef Axis3 xv, yv
    cdef cnp.ndarray xw = _axis3_of(xa, k, &xv)
    cdef cnp.ndarray dest = None if out is None else _check_out(out, xa, "out")
    cdef cnp.ndarray scratch = _axis_dest(dest, xa, k, &yv, xw, &xv, xw, &xv)
    if dest is None:  # a fresh array, written directly
        dest, scratch = scratch, None
    elif scratch is None:
        w = _clear_of_array(w, dest)
        b = _clear_of_array(b, dest)
    mean = rstd = None
    if return_stats:
        if centered:
            mean = L.empty_stats()
        rstd = L.empty_stats()
    cdef char *xp = xv.data
    cdef char *yp = yv.data
    cdef char *wp = _ptr(w)
    cdef char *bp = _ptr(b)
    cdef char *mp = _ptr(mean)
    cdef char *rp = _ptr(rstd)
    cdef int rc
    cdef int kind = _kind(xa)
    with nogil:
        if centered:
            if kind == K_F32:
                rc = fastnorm_layer_norm_axis_f32(
                    xv.S, xv.C, xv.L, <float *>xp, xv.ss, xv.sc, <float *>yp, yv.ss, yv.sc,
                    <float *>wp, <float *>bp, e, <float *>mp, <float *>rp, nt)
            elif kind == K_F64:
                rc = fastnorm_layer_norm_axis_f64(
                    xv.S, xv.C, xv.L, <double *>xp, xv.ss, xv.sc, <double *>yp, yv.ss, yv.sc,
                    <double *>wp, <double *>bp, e, <double *>mp, <double *>rp, nt)
            elif kind == K_F16:
                rc = fastnorm_layer_norm_axis_f16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>yp, yv.ss, yv.sc,
                    <float *>wp, <float *>bp, e, <float *>mp, <float *>rp, nt)
            else:
                rc = fastnorm_layer_norm_axis_bf16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>yp, yv.ss, yv.sc,
                    <float *>wp, <float *>bp, e, <float *>mp, <float *>rp, nt)
        else:
            if kind == K_F32:
                rc = fastnorm_rms_norm_axis_f32(
                    xv.S, xv.C, xv.L, <float *>xp, xv.ss, xv.sc, <float *>yp, yv.ss, yv.sc,
                    <float *>wp, e, <float *>rp, nt)
            elif kind == K_F64:
                rc = fastnorm_rms_norm_axis_f64(
                    xv.S, xv.C, xv.L, <double *>xp, xv.ss, xv.sc, <double *>yp, yv.ss, yv.sc,
                    <double *>wp, e, <double *>rp, nt)
            elif kind == K_F16:
                rc = fastnorm_rms_norm_axis_f16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>yp, yv.ss, yv.sc,
                    <float *>wp, e, <float *>rp, nt)
            else:
                rc = fastnorm_rms_norm_axis_bf16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>yp, yv.ss, yv.sc,
                    <float *>wp, e, <float *>rp, nt)
    _raise_kernel_error(rc)
    if scratch is not None:
        np.copyto(dest, scratch)
    if not return_stats:
        return dest
    if centered:
        return dest, mean, rstd
    return dest, rstd


cdef tuple _axis_norm_backward(bint centered, cnp.ndarray dya, cnp.ndarray xa, _Layout L,
                               int k, object m, cnp.ndarray r, object w, int nt):
    """The backward of _axis_norm: (dx, dweight, dbias or None) in x's dtype."""
    cdef Axis3 xv, dyv, dxv
    cdef cnp.ndarray xw = _axis3_of(xa, k, &xv)
    cdef cnp.ndarray dyw = _axis3_of(dya, k, &dyv)
    cdef cnp.ndarray dx = cnp.PyArray_EMPTY(L.nd, cnp.PyArray_DIMS(xa), cnp.PyArray_TYPE(xa), 0)
    _axis3_view(dx, k, &dxv)
    dw = L.empty_params()
    db = L.empty_params() if centered else None
    cdef char *xp = xv.data
    cdef char *dyp = dyv.data
    cdef char *dxp = dxv.data
    cdef char *mp = _ptr(m)
    cdef char *rp = _ptr(r)
    cdef char *wp = _ptr(w)
    cdef char *dwp = _ptr(dw)
    cdef char *dbp = _ptr(db)
    cdef int rc
    cdef int kind = _kind(xa)
    with nogil:
        if centered:
            if kind == K_F32:
                rc = fastnorm_layer_norm_axis_backward_f32(
                    xv.S, xv.C, xv.L, <float *>dyp, dyv.ss, dyv.sc, <float *>xp, xv.ss, xv.sc,
                    <float *>mp, <float *>rp, <float *>wp, <float *>dxp, dxv.ss, dxv.sc,
                    <float *>dwp, <float *>dbp, nt)
            elif kind == K_F64:
                rc = fastnorm_layer_norm_axis_backward_f64(
                    xv.S, xv.C, xv.L, <double *>dyp, dyv.ss, dyv.sc, <double *>xp, xv.ss, xv.sc,
                    <double *>mp, <double *>rp, <double *>wp, <double *>dxp, dxv.ss, dxv.sc,
                    <double *>dwp, <double *>dbp, nt)
            elif kind == K_F16:
                rc = fastnorm_layer_norm_axis_backward_f16(
                    xv.S, xv.C, xv.L, <uint16_t *>dyp, dyv.ss, dyv.sc, <uint16_t *>xp, xv.ss, xv.sc,
                    <float *>mp, <float *>rp, <float *>wp, <uint16_t *>dxp, dxv.ss, dxv.sc,
                    <float *>dwp, <float *>dbp, nt)
            else:
                rc = fastnorm_layer_norm_axis_backward_bf16(
                    xv.S, xv.C, xv.L, <uint16_t *>dyp, dyv.ss, dyv.sc, <uint16_t *>xp, xv.ss, xv.sc,
                    <float *>mp, <float *>rp, <float *>wp, <uint16_t *>dxp, dxv.ss, dxv.sc,
                    <float *>dwp, <float *>dbp, nt)
        else:
            if kind == K_F32:
                rc = fastnorm_rms_norm_axis_backward_f32(
                    xv.S, xv.C, xv.L, <float *>dyp, dyv.ss, dyv.sc, <float *>xp, xv.ss, xv.sc,
                    <float *>rp, <float *>wp, <float *>dxp, dxv.ss, dxv.sc, <float *>dwp, nt)
            elif kind == K_F64:
                rc = fastnorm_rms_norm_axis_backward_f64(
                    xv.S, xv.C, xv.L, <double *>dyp, dyv.ss, dyv.sc, <double *>xp, xv.ss, xv.sc,
                    <double *>rp, <double *>wp, <double *>dxp, dxv.ss, dxv.sc, <double *>dwp, nt)
            elif kind == K_F16:
                rc = fastnorm_rms_norm_axis_backward_f16(
                    xv.S, xv.C, xv.L, <uint16_t *>dyp, dyv.ss, dyv.sc, <uint16_t *>xp, xv.ss, xv.sc,
                    <float *>rp, <float *>wp, <uint16_t *>dxp, dxv.ss, dxv.sc, <float *>dwp, nt)
            else:
                rc = fastnorm_rms_norm_axis_backward_bf16(
                    xv.S, xv.C, xv.L, <uint16_t *>dyp, dyv.ss, dyv.sc, <uint16_t *>xp, xv.ss, xv.sc,
                    <float *>rp, <float *>wp, <uint16_t *>dxp, dxv.ss, dxv.sc, <float *>dwp, nt)
    _raise_kernel_error(rc)
    return dx, dw, db


cdef object _norm(bint centered, object x, object weight, object bias, object axis,
                  object eps, object out, bint return_stats, object num_threads):
    """layer_norm (centered) and rms_norm: checks, layout, one C call."""
    cdef cnp.ndarray xa = _as_data(x, "x")
    cdef _Layout L = _layout(xa, axis, False)
    cdef double e = _check_eps(eps) if centered else _rms_eps(eps, xa)
    cdef int nt = _resolve_threads(num_threads)
    w = _as_param(weight, L, "weight")
    b = _as_param(bias, L, "bias")
    cdef int mid = _mid_axis(L)
    if mid >= 0:
        return _axis_norm(centered, xa, L, mid, w, b, e, out, return_stats, nt)
    L.work = L.rows_of(xa, &L.xv)
    cdef _Output o = _output(L, out, &L.xv, 1)
    if out is not None:
        w = _clear_of(w, o, xa)
        b = _clear_of(b, o, xa)
    mean = rstd = None
    if return_stats:
        if centered:
            mean = L.empty_stats()
        rstd = L.empty_stats()
    cdef char *xp = L.xv.data
    cdef char *yp = o.v.data
    cdef char *wp = _ptr(w)
    cdef char *bp = _ptr(b)
    cdef char *mp = _ptr(mean)
    cdef char *rp = _ptr(rstd)
    cdef int64_t rows = L.xv.rows, n = L.xv.n, ldx = L.xv.ld, ldy = o.v.ld
    cdef int rc
    cdef int kind = _kind(xa)
    with nogil:
        if centered:
            if kind == K_F32:
                rc = fastnorm_layer_norm_f32(rows, n, <float *>xp, ldx, <float *>yp, ldy,
                                             <float *>wp, <float *>bp, e, <float *>mp,
                                             <float *>rp, nt)
            elif kind == K_F64:
                rc = fastnorm_layer_norm_f64(rows, n, <double *>xp, ldx, <double *>yp, ldy,
                                             <double *>wp, <double *>bp, e, <double *>mp,
                                             <double *>rp, nt)
            elif kind == K_F16:
                rc = fastnorm_layer_norm_f16(rows, n, <uint16_t *>xp, ldx, <uint16_t *>yp, ldy,
                                             <float *>wp, <float *>bp, e, <float *>mp,
                                             <float *>rp, nt)
            else:
                rc = fastnorm_layer_norm_bf16(rows, n, <uint16_t *>xp, ldx, <uint16_t *>yp, ldy,
                                             <float *>wp, <float *>bp, e, <float *>mp,
                                             <float *>rp, nt)
        else:
            if kind == K_F32:
                rc = fastnorm_rms_norm_f32(rows, n, <float *>xp, ldx, <float *>yp, ldy,
                                           <float *>wp, e, <float *>rp, nt)
            elif kind == K_F64:
                rc = fastnorm_rms_norm_f64(rows, n, <double *>xp, ldx, <double *>yp, ldy,
                                           <double *>wp, e, <double *>rp, nt)
            elif kind == K_F16:
                rc = fastnorm_rms_norm_f16(rows, n, <uint16_t *>xp, ldx, <uint16_t *>yp, ldy,
                                           <float *>wp, e, <float *>rp, nt)
            else:
                rc = fastnorm_rms_norm_bf16(rows, n, <uint16_t *>xp, ldx, <uint16_t *>yp, ldy,
                                           <float *>wp, e, <float *>rp, nt)
    _raise_kernel_error(rc)
    o.finish()
    if not return_stats:
        return o.dest
    if centered:
        return o.dest, mean, rstd
    return o.dest, rstd


cdef object _grad_as(object g, object param):
    """A parameter gradient g, computed in the computing dtype, in the floating
    dtype of the ndarray param (native byte order); as it is for a param given
    as a list (or None), which has no dtype of its own."""
    if g is None or not isinstance(param, np.ndarray) or not _is_float(<cnp.ndarray>param):
        return g
    dt = (<cnp.ndarray>param).dtype.newbyteorder("=")
    return g if g.dtype == dt else g.astype(dt)


cdef tuple _norm_backward(bint centered, object dy, object x, object mean, object rstd,
                          object weight, object axis, object num_threads, object ds=None,
                          str xname="x"):
    """layer_norm_backward (centered) and rms_norm_backward: (dx, dweight, dbias or None).
    ds (the fused add's backward): added to dx before its rounding."""
    cdef cnp.ndarray xa = _as_data(x, xname)
    cdef cnp.ndarray dya = _check_like(dy, xa, "dy", xname)
    cdef cnp.ndarray dsa = None if ds is None else _check_like(ds, xa, "ds", xname)
    cdef _Layout L = _layout(xa, axis, False)
    cdef int nt = _resolve_threads(num_threads)
    m = _as_stats(mean, L, "mean", xname) if centered else None
    cdef cnp.ndarray r = _as_stats(rstd, L, "rstd", xname)
    w = _as_param(weight, L, "weight", xname)
    cdef int mid = _mid_axis(L)
    cdef Rows dyv, dsv
    cdef cnp.ndarray dyw, dsw
    cdef _Output o
    if mid >= 0 and dsa is not None and _calc_type(xa) != cnp.PyArray_TYPE(xa):
        # 16-bit data over a non-last axis: dx + ds from the float32 path on the
        # widened data (the same dx before its rounding), rounded once
        f32 = np.float32
        dxa, dw, db = _norm_backward(centered, dya.astype(f32), xa.astype(f32), m, r, w, axis,
                                     nt, dsa.astype(f32))
        dxa = dxa.astype(xa.dtype)
    elif mid >= 0:
        dxa, dw, db = _axis_norm_backward(centered, dya, xa, L, mid, m, r, w, nt)
        if dsa is not None:
            np.add(dxa, dsa, out=dxa)
    else:
        L.work = L.rows_of(xa, &L.xv)
        dyw = L.rows_of(dya, &dyv)
        o = _output(L, None, NULL, 0)
        if dsa is None:
            dxa, dw, db = _rows_norm_backward(centered, L, dyv, o, m, r, w, nt, NULL)
        else:
            dsw = L.rows_of(dsa, &dsv)
            dxa, dw, db = _rows_norm_backward(centered, L, dyv, o, m, r, w, nt, &dsv)
    # parameter gradients in the weight's own floating dtype
    return dxa, _grad_as(dw, weight), _grad_as(db, weight)


cdef int _rows_add_backward(bint centered, int kind, int64_t rows, int64_t n, char *dyp,
                            int64_t lddy, char *sp, int64_t lds, char *dsp, int64_t ldds,
                            char *mp, char *rp, char *wp, char *dxp, int64_t lddx, char *dwp,
                            char *dbp, int nt) nogil:
    """The backward of the fused add with ds, over rows, for each dtype."""
    if centered:
        if kind == K_F32:
            return fastnorm_add_layer_norm_backward_f32(
                rows, n, <float *>dyp, lddy, <float *>sp, lds, <float *>dsp, ldds, <float *>mp,
                <float *>rp, <float *>wp, <float *>dxp, lddx, <float *>dwp, <float *>dbp, nt)
        if kind == K_F64:
            return fastnorm_add_layer_norm_backward_f64(
                rows, n, <double *>dyp, lddy, <double *>sp, lds, <double *>dsp, ldds,
                <double *>mp, <double *>rp, <double *>wp, <double *>dxp, lddx, <double *>dwp,
                <double *>dbp, nt)
        if kind == K_F16:
            return fastnorm_add_layer_norm_backward_f16(
                rows, n, <uint16_t *>dyp, lddy, <uint16_t *>sp, lds, <uint16_t *>dsp, ldds,
                <float *>mp, <float *>rp, <float *>wp, <uint16_t *>dxp, lddx, <float *>dwp,
                <float *>dbp, nt)
        return fastnorm_add_layer_norm_backward_bf16(
            rows, n, <uint16_t *>dyp, lddy, <uint16_t *>sp, lds, <uint16_t *>dsp, ldds,
            <float *>mp, <float *>rp, <float *>wp, <uint16_t *>dxp, lddx, <float *>dwp,
            <float *>dbp, nt)
    if kind == K_F32:
        return fastnorm_add_rms_norm_backward_f32(
            rows, n, <float *>dyp, lddy, <float *>sp, lds, <float *>dsp, ldds, <float *>rp,
            <float *>wp, <float *>dxp, lddx, <float *>dwp, nt)
    if kind == K_F64:
        return fastnorm_add_rms_norm_backward_f64(
            rows, n, <double *>dyp, lddy, <double *>sp, lds, <double *>dsp, ldds, <double *>rp,
            <double *>wp, <double *>dxp, lddx, <double *>dwp, nt)
    if kind == K_F16:
        return fastnorm_add_rms_norm_backward_f16(
            rows, n, <uint16_t *>dyp, lddy, <uint16_t *>sp, lds, <uint16_t *>dsp, ldds,
            <float *>rp, <float *>wp, <uint16_t *>dxp, lddx, <float *>dwp, nt)
    return fastnorm_add_rms_norm_backward_bf16(
        rows, n, <uint16_t *>dyp, lddy, <uint16_t *>sp, lds, <uint16_t *>dsp, ldds,
        <float *>rp, <float *>wp, <uint16_t *>dxp, lddx, <float *>dwp, nt)


cdef tuple _rows_norm_backward(bint centered, _Layout L, Rows dyv, _Output o, object m,
                               cnp.ndarray r, object w, int nt, Rows *dsv):
    """The row-wise backward kernels: (dx, dweight, dbias or None) in x's dtype; dsv
    (NULL: none) the rows of ds, added to dx before its rounding."""
    cdef cnp.ndarray xa = L.x
    dw = L.empty_params()
    db = L.empty_params() if centered else None
    cdef char *xp = L.xv.data
    cdef char *dyp = dyv.data
    cdef char *dxp = o.v.data
    cdef char *mp = _ptr(m)
    cdef char *rp = _ptr(r)
    cdef char *wp = _ptr(w)
    cdef char *dwp = _ptr(dw)
    cdef char *dbp = _ptr(db)
    cdef int64_t rows = L.xv.rows, n = L.xv.n
    cdef int64_t ldx = L.xv.ld, lddy = dyv.ld, lddx = o.v.ld
    cdef int rc
    cdef int kind = _kind(xa)
    cdef char *dsp = NULL
    cdef int64_t ldds = 0
    if dsv != NULL:
        dsp = dsv.data
        ldds = dsv.ld
        with nogil:
            rc = _rows_add_backward(centered, kind, rows, n, dyp, lddy, xp, ldx, dsp, ldds, mp,
                                    rp, wp, dxp, lddx, dwp, dbp, nt)
        _raise_kernel_error(rc)
        o.finish()
        return o.dest, dw, db
    with nogil:
        if centered:
            if kind == K_F32:
                rc = fastnorm_layer_norm_backward_f32(
                    rows, n, <float *>dyp, lddy, <float *>xp, ldx, <float *>mp, <float *>rp,
                    <float *>wp, <float *>dxp, lddx, <float *>dwp, <float *>dbp, nt)
            elif kind == K_F64:
                rc = fastnorm_layer_norm_backward_f64(
                    rows, n, <double *>dyp, lddy, <double *>xp, ldx, <double *>mp, <double *>rp,
                    <double *>wp, <double *>dxp, lddx, <double *>dwp, <double *>dbp, nt)
            elif kind == K_F16:
                rc = fastnorm_layer_norm_backward_f16(
                    rows, n, <uint16_t *>dyp, lddy, <uint16_t *>xp, ldx, <float *>mp, <float *>rp,
                    <float *>wp, <uint16_t *>dxp, lddx, <float *>dwp, <float *>dbp, nt)
            else:
                rc = fastnorm_layer_norm_backward_bf16(
                    rows, n, <uint16_t *>dyp, lddy, <uint16_t *>xp, ldx, <float *>mp, <float *>rp,
                    <float *>wp, <uint16_t *>dxp, lddx, <float *>dwp, <float *>dbp, nt)
        else:
            if kind == K_F32:
                rc = fastnorm_rms_norm_backward_f32(
                    rows, n, <float *>dyp, lddy, <float *>xp, ldx, <float *>rp, <float *>wp,
                    <float *>dxp, lddx, <float *>dwp, nt)
            elif kind == K_F64:
                rc = fastnorm_rms_norm_backward_f64(
                    rows, n, <double *>dyp, lddy, <double *>xp, ldx, <double *>rp, <double *>wp,
                    <double *>dxp, lddx, <double *>dwp, nt)
            elif kind == K_F16:
                rc = fastnorm_rms_norm_backward_f16(
                    rows, n, <uint16_t *>dyp, lddy, <uint16_t *>xp, ldx, <float *>rp, <float *>wp,
                    <uint16_t *>dxp, lddx, <float *>dwp, nt)
            else:
                rc = fastnorm_rms_norm_backward_bf16(
                    rows, n, <uint16_t *>dyp, lddy, <uint16_t *>xp, ldx, <float *>rp, <float *>wp,
                    <uint16_t *>dxp, lddx, <float *>dwp, nt)
    _raise_kernel_error(rc)
    o.finish()
    return o.dest, dw, db


# --------------------------------------------------------------------------
# LayerNorm and RMSNorm
# --------------------------------------------------------------------------

def layer_norm(x, weight=None, bias=None, *, axis=-1, eps=1e-5, out=None,
               bint return_stats=False, num_threads=None):
    """Layer normalization (Ba et al., 2016) over the given axes.

    y = (x - mean) / sqrt(var + eps) * weight + bias, with the mean and the
    biased variance taken over ``axis`` (an int, or a tuple of axes; PyTorch's
    ``normalized_shape`` of length k is ``axis=tuple(range(-k, 0))``).

    Parameters
    ----------
    x : array of float32, float64, float16 or bfloat16
    weight, bias : arrays of the shape of the normalized axes, in x's order, optional.
        Converted to the computing dtype: x's, float32 for 16-bit x.
    axis : int or tuple of ints, default -1
    eps : float >= 0, default 1e-5 (inside the square root)
    out : ndarray of x's shape and dtype, optional. Written in place; may be x.
    return_stats : bool
        Also return ``mean`` and ``rstd`` = 1/sqrt(var + eps), with the shape of
        x without the normalized axes and the computing dtype: the inputs of
        :func:`layer_norm_backward`.
    num_threads : int, optional
        Upper bound on threads (default :func:`get_num_threads`; negative counts back).

    Returns
    -------
    y, or ``(y, mean, rstd)`` when ``return_stats`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.array([[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 6.0]], dtype=np.float32)
    >>> y, mean, rstd = fastnorm.layer_norm(x, return_stats=True)
    >>> y.round(3)
    array([[-1.342, -0.447,  0.447,  1.342],
           [-0.577, -0.577, -0.577,  1.732]], dtype=float32)
    >>> mean, rstd.round(3)
    (array([2.5, 3. ], dtype=float32), array([0.894, 0.577], dtype=float32))

    A PyTorch ``normalized_shape`` of two axes, with weight and bias, written into
    a preallocated array:

    >>> x = np.random.default_rng(0).standard_normal((8, 4, 16)).astype(np.float32)
    >>> w, b = np.ones((4, 16), np.float32), np.zeros((4, 16), np.float32)
    >>> out = np.empty_like(x)
    >>> y = fastnorm.layer_norm(x, w, b, axis=(-2, -1), out=out)
    >>> y is out, y.shape
    (True, (8, 4, 16))
    """
    return _norm(True, x, weight, bias, axis, eps, out, return_stats, num_threads)


def layer_norm_backward(dy, x, mean, rstd, weight=None, *, axis=-1, num_threads=None):
    """Gradients of :func:`layer_norm`.

    With ``xhat = (x - mean) * rstd`` and ``g = dy * weight``,
    ``dx = rstd * (g - mean(g) - xhat * mean(g * xhat))`` over the normalized
    axes (docs/numerics.md §0, NB); ``dweight = sum(dy * xhat)`` and
    ``dbias = sum(dy)`` over every non-normalized axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    mean, rstd : ndarray, shape of x without the normalized axes
        What :func:`layer_norm` returned with ``return_stats=True``.
    weight : ndarray, optional
        The forward's weight (None: no weight).
    axis : int or tuple of ints, default -1
        The forward's axes.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dweight, dbias : ndarray, shape of the normalized axes
        Computed whether or not the forward had the parameters; in the
        weight's floating dtype when the weight is an array, else (no weight,
        or a list) in the computing dtype: x's, float32 for 16-bit x.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    >>> w = np.ones(64, np.float32)
    >>> y, mean, rstd = fastnorm.layer_norm(x, w, return_stats=True)
    >>> dx, dweight, dbias = fastnorm.layer_norm_backward(np.ones_like(y), x, mean, rstd, w)
    >>> dx.shape, dweight.shape, dbias.shape
    ((32, 64), (64,), (64,))
    >>> bool(np.abs(dx).max() < 1e-5)  # a constant dy has no effect through the mean
    True
    """
    return _norm_backward(True, dy, x, mean, rstd, weight, axis, num_threads)


def rms_norm(x, weight=None, *, axis=-1, eps=None, out=None, bint return_stats=False,
             num_threads=None):
    """Root-mean-square normalization (Zhang & Sennrich, 2019) over the given axes.

    y = x / sqrt(mean(x**2) + eps) * weight.

    Parameters
    ----------
    x : array of float32, float64, float16 or bfloat16
    weight : array of the shape of the normalized axes, in x's order, optional.
        Converted to the computing dtype: x's, float32 for 16-bit x.
    axis : int or tuple of ints, default -1
    eps : float >= 0 or None, default None: the machine epsilon of the
        computing dtype (x's; float32's for float16 and bfloat16 x), as
        ``torch.nn.RMSNorm``.
    out : ndarray of x's shape and dtype, optional. Written in place; may be x.
    return_stats : bool
        Also return ``rstd`` = 1/sqrt(mean(x**2) + eps), the shape of x without
        the normalized axes: the input of :func:`rms_norm_backward`.
    num_threads : int, optional

    Returns
    -------
    y, or ``(y, rstd)`` when ``return_stats`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.array([[3.0, 4.0]], dtype=np.float32)
    >>> y, rstd = fastnorm.rms_norm(x, eps=0.0, return_stats=True)
    >>> y.round(4), rstd.round(4)
    (array([[0.8485, 1.1314]], dtype=float32), array([0.2828], dtype=float32))
    """
    return _norm(False, x, weight, None, axis, eps, out, return_stats, num_threads)


def rms_norm_backward(dy, x, rstd, weight=None, *, axis=-1, num_threads=None):
    """Gradients of :func:`rms_norm`.

    With ``xhat = x * rstd`` and ``g = dy * weight``,
    ``dx = rstd * (g - xhat * mean(g * xhat))`` over the normalized axes;
    ``dweight = sum(dy * xhat)`` over every non-normalized axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: x's shape and dtype.
    x : ndarray
        The forward's input.
    rstd : ndarray, shape of x without the normalized axes
        What :func:`rms_norm` returned with ``return_stats=True``.
    weight : ndarray, optional
        The forward's weight.
    axis : int or tuple of ints, default -1
        The forward's axes.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dx : ndarray
        x's shape and dtype.
    dweight : ndarray, shape of the normalized axes
        In the dtype :func:`layer_norm_backward` gives it.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> x = np.random.default_rng(0).standard_normal((16, 32)).astype(np.float32)
    >>> w = np.ones(32, np.float32)
    >>> y, rstd = fastnorm.rms_norm(x, w, return_stats=True)
    >>> dx, dweight = fastnorm.rms_norm_backward(np.ones_like(y), x, rstd, w)
    >>> dx.shape, dweight.shape
    ((16, 32), (32,))
    """
    dx, dw, _ = _norm_backward(False, dy, x, None, rstd, weight, axis, num_threads)
    return dx, dw


# --------------------------------------------------------------------------
# Fused residual add + LayerNorm / RMSNorm (pre-norm transformer block)
# --------------------------------------------------------------------------

cdef tuple _add_norm(bint centered, object x, object residual, object weight, object bias,
                     object residual_bias, object axis, object eps, object out, object sum_out,
                     bint return_stats, object num_threads):
    """add_layer_norm (centered) and add_rms_norm: checks, layout, one C call."""
    cdef cnp.ndarray xa = _as_data(x, "x")
    cdef cnp.ndarray ra = _check_like(residual, xa, "residual")
    cdef _Layout L = _layout(xa, axis, False)
    cdef double e = _check_eps(eps) if centered else _rms_eps(eps, xa)
    cdef int nt = _resolve_threads(num_threads)
    w = _as_param(weight, L, "weight")
    b = _as_param(bias, L, "bias")
    rb = _as_param(residual_bias, L, "residual_bias")
    cdef int mid = _mid_axis(L)
    if mid >= 0:
        return _axis_add_norm(centered, xa, ra, L, mid, w, b, rb, e, out, sum_out,
                              return_stats, nt)
    L.work = L.rows_of(xa, &L.xv)
    cdef Rows reads[2]
    reads[0] = L.xv
    cdef cnp.ndarray rw = L.rows_of(ra, &reads[1])
    cdef _Output os = _output(L, sum_out, reads, 2, "sum_out")
    cdef _Output oy = _output(L, out, reads, 2)
    if out is not None and sum_out is not None and np.may_share_memory(oy.dest, os.dest):
        raise ValueError("out and sum_out must not overlap: y would overwrite the sum")
    cdef list params = [w, b, rb]
    for i in range(3):
        if out is not None:
            params[i] = _clear_of(params[i], oy, xa)
        if sum_out is not None:
            params[i] = _clear_of(params[i], os, xa)
    w, b, rb = params
    mean = rstd = None
    if return_stats:
        if centered:
            mean = L.empty_stats()
        rstd = L.empty_stats()
    cdef char *xp = L.xv.data
    cdef char *rp = reads[1].data
    cdef char *sp = os.v.data
    cdef char *yp = oy.v.data
    cdef char *wp = _ptr(w)
    cdef char *bp = _ptr(b)
    cdef char *rbp = _ptr(rb)
    cdef char *mp = _ptr(mean)
    cdef char *dp = _ptr(rstd)
    cdef int64_t rows = L.xv.rows, n = L.xv.n
    cdef int64_t ldx = L.xv.ld, ldr = reads[1].ld, lds = os.v.ld, ldy = oy.v.ld
    cdef int rc
    cdef int kind = _kind(xa)
    with nogil:
        if centered:
            if kind == K_F32:
                rc = fastnorm_add_layer_norm_f32(
                    rows, n, <float *>xp, ldx, <float *>rp, ldr, <float *>rbp, <float *>sp, lds,
                    <float *>yp, ldy, <float *>wp, <float *>bp, e, <float *>mp, <float *>dp, nt)
            elif kind == K_F64:
                rc = fastnorm_add_layer_norm_f64(
                    rows, n, <double *>xp, ldx, <double *>rp, ldr, <double *>rbp, <double *>sp, lds,
                    <double *>yp, ldy, <double *>wp, <double *>bp, e, <double *>mp, <double *>dp,
                    nt)
            elif kind == K_F16:
                rc = fastnorm_add_layer_norm_f16(
                    rows, n, <uint16_t *>xp, ldx, <uint16_t *>rp, ldr, <float *>rbp,
                    <uint16_t *>sp, lds,
                    <uint16_t *>yp, ldy, <float *>wp, <float *>bp, e, <float *>mp, <float *>dp, nt)
            else:
                rc = fastnorm_add_layer_norm_bf16(
                    rows, n, <uint16_t *>xp, ldx, <uint16_t *>rp, ldr, <float *>rbp,
                    <uint16_t *>sp, lds,
                    <uint16_t *>yp, ldy, <float *>wp, <float *>bp, e, <float *>mp, <float *>dp, nt)
        else:
            if kind == K_F32:
                rc = fastnorm_add_rms_norm_f32(
                    rows, n, <float *>xp, ldx, <float *>rp, ldr, <float *>rbp, <float *>sp, lds,
                    <float *>yp, ldy, <float *>wp, e, <float *>dp, nt)
            elif kind == K_F64:
                rc = fastnorm_add_rms_norm_f64(
                    rows, n, <double *>xp, ldx, <double *>rp, ldr, <double *>rbp, <double *>sp, lds,
                    <double *>yp, ldy, <double *>wp, e, <double *>dp, nt)
            elif kind == K_F16:
                rc = fastnorm_add_rms_norm_f16(
                    rows, n, <uint16_t *>xp, ldx, <uint16_t *>rp, ldr, <float *>rbp,
                    <uint16_t *>sp, lds,
                    <uint16_t *>yp, ldy, <float *>wp, e, <float *>dp, nt)
            else:
                rc = fastnorm_add_rms_norm_bf16(
                    rows, n, <uint16_t *>xp, ldx, <uint16_t *>rp, ldr, <float *>rbp,
                    <uint16_t *>sp, lds,
                    <uint16_t *>yp, ldy, <float *>wp, e, <float *>dp, nt)
    _raise_kernel_error(rc)
    os.finish()
    oy.finish()
    if not return_stats:
        return oy.dest, os.dest
    if centered:
        return oy.dest, os.dest, mean, rstd
    return oy.dest, os.dest, rstd


cdef tuple _axis_add_norm(bint centered, cnp.ndarray xa, cnp.ndarray ra, _Layout L, int k,
                          object w, object b, object rb, double e, object out, object sum_out,
                          bint return_stats, int nt):
    """add_layer_norm / add_rms_norm over the middle axis k of xa (checked
    arguments): x and residual read once, s and y written once, no transposing
    copy."""
    if sum_out is not None:
        sum_out = _check_out(sum_out, xa, "sum_out")
    if out is not None:
        out = _check_out(out, xa, "out")
        if sum_out is not None and np.may_share_memory(out, sum_out):
            raise ValueError("out and sum_out must not overlap: y would overwrite the sum")
    cdef Axis3 xv, rv, sv, yv
    cdef cnp.ndarray xw = _axis3_of(xa, k, &xv)
    cdef cnp.ndarray rw = _axis3_of(ra, k, &rv)
    cdef cnp.ndarray s_tmp = _axis_dest(sum_out, xa, k, &sv, xw, &xv, rw, &rv)
    cdef cnp.ndarray y_tmp = _axis_dest(out, xa, k, &yv, xw, &xv, rw, &rv)
    cdef cnp.ndarray s_arr = sum_out if s_tmp is None else s_tmp
    cdef cnp.ndarray y_arr = out if y_tmp is None else y_tmp
    # parameters are read as they were before the call
    if s_tmp is None:
        w, b, rb = (_clear_of_array(w, s_arr), _clear_of_array(b, s_arr),
                    _clear_of_array(rb, s_arr))
    if y_tmp is None:
        w, b, rb = (_clear_of_array(w, y_arr), _clear_of_array(b, y_arr),
                    _clear_of_array(rb, y_arr))
    mean = rstd = None
    if return_stats:
        if centered:
            mean = L.empty_stats()
        rstd = L.empty_stats()
    cdef char *xp = xv.data
    cdef char *rp = rv.data
    cdef char *sp = sv.data
    cdef char *yp = yv.data
    cdef char *wp = _ptr(w)
    cdef char *bp = _ptr(b)
    cdef char *rbp = _ptr(rb)
    cdef char *mp = _ptr(mean)
    cdef char *dp = _ptr(rstd)
    cdef int rc
    cdef int kind = _kind(xa)
    with nogil:
        if centered:
            if kind == K_F32:
                rc = fastnorm_add_layer_norm_axis_f32(
                    xv.S, xv.C, xv.L, <float *>xp, xv.ss, xv.sc, <float *>rp, rv.ss, rv.sc,
                    <float *>rbp, <float *>sp, sv.ss, sv.sc, <float *>yp, yv.ss, yv.sc,
                    <float *>wp, <float *>bp, e, <float *>mp, <float *>dp, nt)
            elif kind == K_F64:
                rc = fastnorm_add_layer_norm_axis_f64(
                    xv.S, xv.C, xv.L, <double *>xp, xv.ss, xv.sc, <double *>rp, rv.ss, rv.sc,
                    <double *>rbp, <double *>sp, sv.ss, sv.sc, <double *>yp, yv.ss, yv.sc,
                    <double *>wp, <double *>bp, e, <double *>mp, <double *>dp, nt)
            elif kind == K_F16:
                rc = fastnorm_add_layer_norm_axis_f16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>rp, rv.ss,
                    rv.sc, <float *>rbp, <uint16_t *>sp, sv.ss, sv.sc, <uint16_t *>yp, yv.ss,
                    yv.sc, <float *>wp, <float *>bp, e, <float *>mp, <float *>dp, nt)
            else:
                rc = fastnorm_add_layer_norm_axis_bf16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>rp, rv.ss,
                    rv.sc, <float *>rbp, <uint16_t *>sp, sv.ss, sv.sc, <uint16_t *>yp, yv.ss,
                    yv.sc, <float *>wp, <float *>bp, e, <float *>mp, <float *>dp, nt)
        else:
            if kind == K_F32:
                rc = fastnorm_add_rms_norm_axis_f32(
                    xv.S, xv.C, xv.L, <float *>xp, xv.ss, xv.sc, <float *>rp, rv.ss, rv.sc,
                    <float *>rbp, <float *>sp, sv.ss, sv.sc, <float *>yp, yv.ss, yv.sc,
                    <float *>wp, e, <float *>dp, nt)
            elif kind == K_F64:
                rc = fastnorm_add_rms_norm_axis_f64(
                    xv.S, xv.C, xv.L, <double *>xp, xv.ss, xv.sc, <double *>rp, rv.ss, rv.sc,
                    <double *>rbp, <double *>sp, sv.ss, sv.sc, <double *>yp, yv.ss, yv.sc,
                    <double *>wp, e, <double *>dp, nt)
            elif kind == K_F16:
                rc = fastnorm_add_rms_norm_axis_f16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>rp, rv.ss,
                    rv.sc, <float *>rbp, <uint16_t *>sp, sv.ss, sv.sc, <uint16_t *>yp, yv.ss,
                    yv.sc, <float *>wp, e, <float *>dp, nt)
            else:
                rc = fastnorm_add_rms_norm_axis_bf16(
                    xv.S, xv.C, xv.L, <uint16_t *>xp, xv.ss, xv.sc, <uint16_t *>rp, rv.ss,
                    rv.sc, <float *>rbp, <uint16_t *>sp, sv.ss, sv.sc, <uint16_t *>yp, yv.ss,
                    yv.sc, <float *>wp, e, <float *>dp, nt)
    _raise_kernel_error(rc)
    if sum_out is not None and s_tmp is not None:
        np.copyto(sum_out, s_tmp)
        s_arr = sum_out
    if out is not None and y_tmp is not None:
        np.copyto(out, y_tmp)
        y_arr = out
    if not return_stats:
        return y_arr, s_arr
    if centered:
        return y_arr, s_arr, mean, rstd
    return y_arr, s_arr, rstd


def add_layer_norm(x, residual, weight=None, bias=None, *, residual_bias=None, axis=-1,
                   eps=1e-5, out=None, sum_out=None, bint return_stats=False, num_threads=None):
    """Residual add fused with layer normalization (the pre-norm transformer block).

    s = x + residual (+ residual_bias); y = layer_norm(s, weight, bias).
    x and residual are read once and s and y written once, in one pass over
    memory per row.

    Parameters
    ----------
    x, residual : arrays of the same shape and dtype (float32, float64, float16 or
        bfloat16)
    weight, bias, residual_bias : arrays of the normalized axes' shape, optional
    axis, eps, num_threads : as in :func:`layer_norm`
    out : ndarray for y, optional (may be x)
    sum_out : ndarray for s, optional (may be x or residual: the residual
        stream updated in place). out and sum_out must not overlap.
    return_stats : bool
        Also return the mean and rstd of s, for :func:`add_layer_norm_backward`.

    Returns
    -------
    ``(y, s)``, or ``(y, s, mean, rstd)`` when ``return_stats`` is true.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((4, 8)).astype(np.float32)
    >>> residual = rng.standard_normal((4, 8)).astype(np.float32)
    >>> y, s = fastnorm.add_layer_norm(x, residual)
    >>> bool(np.array_equal(s, x + residual))
    True
    >>> bool(np.allclose(y, fastnorm.layer_norm(x + residual)))
    True

    The residual stream updated in place:

    >>> y, s = fastnorm.add_layer_norm(x, residual, sum_out=residual)
    >>> s is residual
    True
    """
    return _add_norm(True, x, residual, weight, bias, residual_bias, axis, eps, out, sum_out,
                     return_stats, num_threads)


def add_rms_norm(x, residual, weight=None, *, residual_bias=None, axis=-1, eps=None,
                 out=None, sum_out=None, bint return_stats=False, num_threads=None):
    """Residual add fused with RMS normalization.

    ``s = x + residual (+ residual_bias)``; ``y = rms_norm(s, weight)``.

    Parameters
    ----------
    x, residual : ndarray
        The same shape and dtype (float32, float64, float16 or bfloat16).
    weight, residual_bias : ndarray, shape of the normalized axes, optional
    axis, num_threads :
        As in :func:`rms_norm`.
    eps : float or None, default None
        The machine epsilon of the computing dtype, as in :func:`rms_norm`.
    out, sum_out : ndarray, optional
        Receive y and s, as in :func:`add_layer_norm`.
    return_stats : bool, default False
        Also return ``rstd`` of s, for :func:`add_rms_norm_backward`.

    Returns
    -------
    y, s : ndarray
        x's shape and dtype.
    rstd : ndarray
        Only with ``return_stats``.

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x, r = rng.standard_normal((2, 4, 8)).astype(np.float32)
    >>> y, s, rstd = fastnorm.add_rms_norm(x, r, return_stats=True)
    >>> bool(np.allclose(y, fastnorm.rms_norm(x + r)))
    True
    >>> rstd.shape
    (4,)
    """
    return _add_norm(False, x, residual, weight, None, residual_bias, axis, eps, out, sum_out,
                     return_stats, num_threads)


cdef object _sum_rows(cnp.ndarray a, _Layout L, object num_threads):
    """Sum of a over every non-normalized axis, in a's computing dtype: by the
    channel-sums kernel (blocks of rows in the computing dtype, merged in
    float64) when a is C-contiguous with the normalized axes last, else
    accumulated in float64 by NumPy."""
    cdef int64_t n, rows
    calc = cnp.PyArray_DescrFromType(_calc_type(a))
    if L.trailing and cnp.PyArray_ISCARRAY_RO(a) and cnp.PyArray_ISNOTSWAPPED(a) and a.size:
        shape = L.nshape()
        n = int(np.prod(shape))
        rows = a.size // n
        sums = np.empty(n)
        _channel_sums_kernel(a, a, 1, rows, n, 1, np.zeros(n), sums, np.empty(n),
                             _resolve_threads(num_threads))
        return sums.reshape(shape).astype(calc)
    if L.trailing:
        others = tuple(range(L.nd - L.k))
    else:
        others = tuple(i for i in range(L.nd) if i not in L.axes)
    return a.sum(axis=others, dtype=np.float64).astype(calc)


def add_layer_norm_backward(dy, s, mean, rstd, weight=None, *, ds=None, axis=-1,
                            num_threads=None):
    """Gradients of :func:`add_layer_norm`.

    ``dsum = NB(dy * weight) + ds`` is the gradient of x and of residual alike
    (``s = x + residual``); ``dresidual_bias`` is dsum summed over every
    non-normalized axis.

    Parameters
    ----------
    dy : ndarray
        Gradient of y: s's shape and dtype.
    s : ndarray
        The sum the forward returned.
    mean, rstd : ndarray
        The statistics the forward returned with ``return_stats=True``.
    weight : ndarray, optional
        The forward's weight.
    ds : ndarray, optional
        A gradient arriving at s from later blocks (the residual stream).
    axis : int or tuple of ints, default -1
        The forward's axes.
    num_threads : int, optional
        Upper bound on threads.

    Returns
    -------
    dsum : ndarray
        s's shape and dtype.
    dweight, dbias : ndarray, shape of the normalized axes
        In the dtypes :func:`layer_norm_backward` gives them.
    dresidual_bias : ndarray, shape of the normalized axes
        In the computing dtype, x's or float32 for 16-bit data (residual_bias
        is not an argument).

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x, r = rng.standard_normal((2, 4, 8)).astype(np.float32)
    >>> y, s, mean, rstd = fastnorm.add_layer_norm(x, r, return_stats=True)
    >>> dy = rng.standard_normal(y.shape).astype(np.float32)
    >>> dsum, dweight, dbias, dresidual_bias = fastnorm.add_layer_norm_backward(
    ...     dy, s, mean, rstd, ds=np.ones_like(s))
    >>> dsum.shape, dweight.shape, dresidual_bias.shape
    ((4, 8), (8,), (8,))
    """
    dsum, dw, db = _norm_backward(True, dy, s, mean, rstd, weight, axis, num_threads, ds, "s")
    return dsum, dw, db, _sum_rows(dsum, _layout(dsum, axis, False), num_threads)


def add_rms_norm_backward(dy, s, rstd, weight=None, *, ds=None, axis=-1, num_threads=None):
    """Gradients of :func:`add_rms_norm`; see :func:`add_layer_norm_backward`.

    Parameters
    ----------
    dy, s, rstd, weight, ds, axis, num_threads :
        As in :func:`add_layer_norm_backward`, with the ``rstd`` that
        :func:`add_rms_norm` returned.

    Returns
    -------
    dsum : ndarray
        s's shape and dtype.
    dweight, dresidual_bias : ndarray, shape of the normalized axes

    Examples
    --------
    >>> import numpy as np
    >>> import fastnorm
    >>> rng = np.random.default_rng(0)
    >>> x, r = rng.standard_normal((2, 4, 8)).astype(np.float32)
    >>> y, s, rstd = fastnorm.add_rms_norm(x, r, return_stats=True)
    >>> dsum, dweight, dresidual_bias = fastnorm.add_rms_norm_backward(np.ones_like(y), s, rstd)
    >>> dsum.shape, dweight.shape, dresidual_bias.shape
    ((4, 8), (8,), (8,))
    """
    dsum, dw, _ = _norm_backward(False, dy, s, None, rstd, weight, axis, num_threads, ds, "s")
    return dsum, dw, _sum_rows(dsum, _layout(dsum, axis, False), num_threads)


# --------------------------------------------------------------------------
# Adaptive LayerNorm (AdaLN, diffusion transformers)
# --------------------------------------------------------------------------

cdef _Layout _ada_layout(cnp.ndarray x):
    """x as N samples of T rows of D: (N, T, D), or (N, D) with T = 1, or
    (N, ..., D) with T the product of the middle axes."""
    if cnp.PyArray_NDIM(x) < 2:
        raise ValueError(f"x must have shape (N, T, D) or (N, D), got {_shape(x)}")
    return _layout(x, -1)


cdef cnp.ndarray _ada_param(object p, cnp.ndarray x, str name):
    """shift or scale: one row of D per sample, shape (N, D), in x's dtype."""
    cdef cnp.ndarray a = _as_float_array(p, name)
    cdef cnp.npy_intp dims[2]
    dims[0] = cnp.PyArray_DIMS(x)[0]
    dims[1] = cnp.PyArray_DIMS(x)[cnp.PyArray_NDIM(x) - 1]
    if _is_float(a) and not _has_dims(a, dims, 2):
        raise ValueError(
            f"{name} must have shape (N, D) = ({dims[0]}, {dims[1]}) for x of shape "
            f"{_shape(x)}, got {_shape(a)}"
        )
    return _as_typed(a, x, name)


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
    cdef _Layout L = _ada_layout(xa)
    cdef cnp.ndarray sh = _ada_param(shift, xa, "shift")
    cdef cnp.ndarray sc = _ada_param(scale, xa, "scale")
    cdef double e = _check_eps(eps)
    cdef int nt = _resolve_threads(num_threads)
    cdef _Output o = _output(L, out, &L.xv, 1)
    if out is not None:
        sh = _clear_of(sh, o, xa)
    cdef cnp.ndarray w = np.add(sc, 1, dtype=sc.dtype)  # the per-sample weight 1 + scale
    mean = rstd = None
    if return_stats:
        mean = L.empty_stats()
        rstd = L.empty_stats()
    cdef int64_t samples = cnp.PyArray_DIMS(xa)[0]
    cdef int64_t rows = L.xv.rows, n = L.xv.n, ldx = L.xv.ld, ldy = o.v.ld
    cdef int64_t per_sample = rows // samples if samples > 0 else 0
    cdef char *xp = L.xv.data
    cdef char *yp = o.v.data
    cdef char *wp = _ptr(w)
    cdef char *bp = _ptr(sh)
    cdef char *mp = _ptr(mean)
    cdef char *rp = _ptr(rstd)
    cdef int rc
    cdef int kind = _kind(xa)
    with nogil:
        if kind == K_F32:
            rc = fastnorm_layer_norm_per_sample_f32(
                samples, per_sample, n, <float *>xp, ldx, <float *>yp, ldy, <float *>wp,
                <float *>bp, n, e, <float *>mp, <float *>rp, nt)
        elif kind == K_F64:
            rc = fastnorm_layer_norm_per_sample_f64(
                samples, per_sample, n, <double *>xp, ldx, <double *>yp, ldy, <double *>wp,
                <double *>bp, n, e, <double *>mp, <double *>rp, nt)
        elif kind == K_F16:
            rc = fastnorm_layer_norm_per_sample_f16(
                samples, per_sample, n, <uint16_t *>xp, ldx, <uint16_t *>yp, ldy, <float *>wp,
                <float *>bp, n, e, <float *>mp, <float *>rp, nt)
        else:
            rc = fastnorm_layer_norm_per_sample_bf16(
                samples, per_sample, n, <uint16_t *>xp, ldx, <uint16_t *>yp, ldy, <float *>wp,
                <float *>bp, n, e, <float *>mp, <float *>rp, nt)
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
    cdef _Layout L = _ada_layout(xa)
    cdef cnp.ndarray sc = _ada_param(scale, xa, "scale")
    cdef cnp.ndarray m = _as_stats(mean, L, "mean")
    cdef cnp.ndarray r = _as_stats(rstd, L, "rstd")
    cdef int nt = _resolve_threads(num_threads)
    cdef Rows dyv
    cdef cnp.ndarray dyw = L.rows_of(dya, &dyv)
    cdef _Output o = _output(L, None, NULL, 0)
    cdef cnp.ndarray w = np.add(sc, 1, dtype=sc.dtype)
    cdef cnp.ndarray dshift = np.empty_like(w)
    cdef cnp.ndarray dscale = np.empty_like(w)
    cdef int64_t samples = cnp.PyArray_DIMS(xa)[0]
    cdef int64_t rows = L.xv.rows, n = L.xv.n
    cdef int64_t per_sample = rows // samples if samples > 0 else 0
    cdef int64_t ldx = L.xv.ld, lddy = dyv.ld, lddx = o.v.ld
    cdef char *xp = L.xv.data
    cdef char *dyp = dyv.data
    cdef char *dxp = o.v.data
    cdef char *mp = _ptr(m)
    cdef char *rp = _ptr(r)
    cdef char *wp = _ptr(w)
    cdef char *dsp = _ptr(dscale)
    cdef char *dhp = _ptr(dshift)
    cdef int rc
    cdef int kind = _kind(xa)
    with nogil:
        if kind == K_F32:
            rc = fastnorm_layer_norm_per_sample_backward_f32(
                samples, per_sample, n, <float *>dyp, lddy, <float *>xp, ldx, <float *>mp,
                <float *>rp, <float *>wp, n, <float *>dxp, lddx, <float *>dsp, <float *>dhp, nt)
        elif kind == K_F64:
            rc = fastnorm_layer_norm_per_sample_backward_f64(
                samples, per_sample, n, <double *>dyp, lddy, <double *>xp, ldx, <double *>mp,
                <double *>rp, <double *>wp, n, <double *>dxp, lddx, <double *>dsp,
                <double *>dhp, nt)
        elif kind == K_F16:
            rc = fastnorm_layer_norm_per_sample_backward_f16(
                samples, per_sample, n, <uint16_t *>dyp, lddy, <uint16_t *>xp, ldx, <float *>mp,
                <float *>rp, <float *>wp, n, <uint16_t *>dxp, lddx, <float *>dsp, <float *>dhp, nt)
        else:
            rc = fastnorm_layer_norm_per_sample_backward_bf16(
                samples, per_sample, n, <uint16_t *>dyp, lddy, <uint16_t *>xp, ldx, <float *>mp,
                <float *>rp, <float *>wp, n, <uint16_t *>dxp, lddx, <float *>dsp, <float *>dhp, nt)
    _raise_kernel_error(rc)
    o.finish()
    return o.dest, _grad_as(dshift, scale), _grad_as(dscale, scale)


# --------------------------------------------------------------------------
# The channel normalizers' C stages (group, instance, batch norm, ...)
# --------------------------------------------------------------------------

include "_channel.pxi"
