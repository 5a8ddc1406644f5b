/*
 * fastnorm.h -- C entry points of the fastnorm normalization kernels.
 *
 * Plain C, no Python. Every array is addressed as `rows` rows of `n`
 * contiguous elements; `ld*` arguments are the distance between the starts of
 * two consecutive rows, in elements (any sign). Per-row statistics (mean,
 * rstd) are dense vectors of `rows` elements and may be NULL when not wanted.
 * Parameters (weight, bias) are dense vectors of `n` elements or NULL.
 *
 * Return value: 0 on success, FASTNORM_ENOMEM when scratch memory could not be
 * allocated (outputs are then unspecified).
 *
 * `num_threads` is an upper bound; small calls run on one thread. Results are
 * bitwise identical for any `num_threads`.
 */
#ifndef FASTNORM_H
#define FASTNORM_H

#include <stdint.h>

#define FASTNORM_VERSION_MAJOR 0
#define FASTNORM_VERSION_MINOR 1
#define FASTNORM_VERSION_PATCH 0
#define FASTNORM_VERSION_NUMBER \
    (FASTNORM_VERSION_MAJOR * 10000 + FASTNORM_VERSION_MINOR * 100 + FASTNORM_VERSION_PATCH)

#if defined(_WIN32) && defined(FASTNORM_BUILDING_DLL)
#define FASTNORM_API __declspec(dllexport)
#elif defined(__GNUC__)
#define FASTNORM_API __attribute__((visibility("default")))
#else
#define FASTNORM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define FASTNORM_OK 0
#define FASTNORM_ENOMEM 1
#define FASTNORM_EINVAL 2 /* an argument outside its domain (C not divisible by G) */

/* Instruction sets a kernel table can be built for. */
#define FASTNORM_ISA_SCALAR 0
#define FASTNORM_ISA_AVX2 1

/* CPU feature bits reported by fastnorm_cpu_features(). */
#define FASTNORM_CPU_AVX 1u
#define FASTNORM_CPU_AVX2 2u
#define FASTNORM_CPU_FMA 4u
#define FASTNORM_CPU_F16C 8u
#define FASTNORM_CPU_OS_AVX 16u /* the OS saves the AVX (YMM) state */

FASTNORM_API int fastnorm_version_number(void);

/* Runtime dispatch. fastnorm_set_isa returns the ISA actually selected
 * (AVX2 is refused, and scalar kept, where the CPU or the build lacks it). */
FASTNORM_API unsigned fastnorm_cpu_features(void);
FASTNORM_API int fastnorm_isa_available(int isa);
FASTNORM_API int fastnorm_set_isa(int isa);
FASTNORM_API int fastnorm_get_isa(void);

/* Threads: whether the build has OpenMP, and OpenMP's current default. */
FASTNORM_API int fastnorm_has_openmp(void);
FASTNORM_API int fastnorm_max_threads(void);
FASTNORM_API int fastnorm_num_procs(void);
/* 1 in a process forked after fastnorm started OpenMP threads: every call
 * there runs on the calling thread (a parallel region in such a child can
 * hang); 0 otherwise. */
FASTNORM_API int fastnorm_serial_after_fork(void);

/* LayerNorm forward: y = (x - mean) * rstd * weight + bias, per row. */
FASTNORM_API int fastnorm_layer_norm_f32(
    int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
    const float *weight, const float *bias, double eps, float *mean, float *rstd,
    int num_threads);
FASTNORM_API int fastnorm_layer_norm_f64(
    int64_t rows, int64_t n, const double *x, int64_t ldx, double *y, int64_t ldy,
    const double *weight, const double *bias, double eps, double *mean, double *rstd,
    int num_threads);

/* LayerNorm backward from the forward's mean and rstd. dweight and dbias
 * (n elements each) may be NULL when not wanted. */
FASTNORM_API int fastnorm_layer_norm_backward_f32(
    int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *x, int64_t ldx,
    const float *mean, const float *rstd, const float *weight, float *dx, int64_t lddx,
    float *dweight, float *dbias, int num_threads);
FASTNORM_API int fastnorm_layer_norm_backward_f64(
    int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *x, int64_t ldx,
    const double *mean, const double *rstd, const double *weight, double *dx, int64_t lddx,
    double *dweight, double *dbias, int num_threads);

/* RMSNorm forward: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps). */
FASTNORM_API int fastnorm_rms_norm_f32(
    int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
    const float *weight, double eps, float *rstd, int num_threads);
FASTNORM_API int fastnorm_rms_norm_f64(
    int64_t rows, int64_t n, const double *x, int64_t ldx, double *y, int64_t ldy,
    const double *weight, double eps, double *rstd, int num_threads);

/* Fused residual add (pre-norm transformer block): sum_out = x + residual
 * (+ residual_bias, n elements, may be NULL), then y = LayerNorm(sum_out) or
 * RMSNorm(sum_out); mean and rstd are those of sum_out. x and residual are read
 * once, sum_out and y written once. sum_out may be x or residual itself. */
FASTNORM_API int fastnorm_add_layer_norm_f32(
    int64_t rows, int64_t n, const float *x, int64_t ldx, const float *residual, int64_t ldr,
    const float *residual_bias, float *sum_out, int64_t lds, float *y, int64_t ldy,
    const float *weight, const float *bias, double eps, float *mean, float *rstd,
    int num_threads);
FASTNORM_API int fastnorm_add_layer_norm_f64(
    int64_t rows, int64_t n, const double *x, int64_t ldx, const double *residual,
    int64_t ldr, const double *residual_bias, double *sum_out, int64_t lds, double *y,
    int64_t ldy, const double *weight, const double *bias, double eps, double *mean,
    double *rstd, int num_threads);
FASTNORM_API int fastnorm_add_rms_norm_f32(
    int64_t rows, int64_t n, const float *x, int64_t ldx, const float *residual, int64_t ldr,
    const float *residual_bias, float *sum_out, int64_t lds, float *y, int64_t ldy,
    const float *weight, double eps, float *rstd, int num_threads);
FASTNORM_API int fastnorm_add_rms_norm_f64(
    int64_t rows, int64_t n, const double *x, int64_t ldx, const double *residual,
    int64_t ldr, const double *residual_bias, double *sum_out, int64_t lds, double *y,
    int64_t ldy, const double *weight, double eps, double *rstd, int num_threads);

/* LayerNorm with per-sample affine parameters (AdaLN): the rows come in
 * `samples` groups of `rows_per_sample`; group s uses weight and bias row s
 * (n elements each, rows ldp apart). AdaLN's y = LN(x) * (1 + scale) + shift
 * is weight = 1 + scale, bias = shift. The backward writes dweight and dbias
 * as samples x n dense arrays (per-sample sums over the group's rows). */
FASTNORM_API int fastnorm_layer_norm_per_sample_f32(
    int64_t samples, int64_t rows_per_sample, int64_t n, const float *x, int64_t ldx, float *y,
    int64_t ldy, const float *weight, const float *bias, int64_t ldp, double eps, float *mean,
    float *rstd, int num_threads);
FASTNORM_API int fastnorm_layer_norm_per_sample_f64(
    int64_t samples, int64_t rows_per_sample, int64_t n, const double *x, int64_t ldx,
    double *y, int64_t ldy, const double *weight, const double *bias, int64_t ldp, double eps,
    double *mean, double *rstd, int num_threads);
FASTNORM_API int fastnorm_layer_norm_per_sample_backward_f32(
    int64_t samples, int64_t rows_per_sample, int64_t n, const float *dy, int64_t lddy,
    const float *x, int64_t ldx, const float *mean, const float *rstd, const float *weight,
    int64_t ldp, float *dx, int64_t lddx, float *dweight, float *dbias, int num_threads);
FASTNORM_API int fastnorm_layer_norm_per_sample_backward_f64(
    int64_t samples, int64_t rows_per_sample, int64_t n, const double *dy, int64_t lddy,
    const double *x, int64_t ldx, const double *mean, const double *rstd, const double *weight,
    int64_t ldp, double *dx, int64_t lddx, double *dweight, double *dbias, int num_threads);

/* RMSNorm backward from the forward's rstd. dweight may be NULL. */
FASTNORM_API int fastnorm_rms_norm_backward_f32(
    int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *x, int64_t ldx,
    const float *rstd, const float *weight, float *dx, int64_t lddx, float *dweight,
    int num_threads);
FASTNORM_API int fastnorm_rms_norm_backward_f64(
    int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *x, int64_t ldx,
    const double *rstd, const double *weight, double *dx, int64_t lddx, double *dweight,
    int num_threads);

/* ---- channel normalizers ------------------------------------------------
 * Data is a C-contiguous (S, R, C, L) array: S samples, R rows, C channels,
 * L contiguous elements per channel. NCHW data with per-sample statistics
 * is (N, 1, C, H*W); channels-last (N, H*W, C, 1). Batch statistics merge
 * the batch into the rows: (1, N, C, H*W) or (1, N*H*W, C, 1). Parameters
 * (weight, bias) are per channel (C elements) or NULL. */

/* Group norm: statistics per unit (s, g) over R x C/G x L elements; G must
 * divide C. Instance norm is G = C; batch-norm training is S = 1, G = C.
 * mean, rstd and var (biased) are S*G elements each, or NULL. */
FASTNORM_API int fastnorm_group_norm_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const float *x, float *y,
    const float *weight, const float *bias, double eps, float *mean, float *rstd, float *var,
    int num_threads);
FASTNORM_API int fastnorm_group_norm_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const double *x, double *y,
    const double *weight, const double *bias, double eps, double *mean, double *rstd,
    double *var, int num_threads);

/* Group norm backward from the forward's mean and rstd (S*G each). dweight
 * and dbias (C each) may be NULL. */
FASTNORM_API int fastnorm_group_norm_backward_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const float *dy, const float *x,
    const float *mean, const float *rstd, const float *weight, float *dx, float *dweight,
    float *dbias, int num_threads);
FASTNORM_API int fastnorm_group_norm_backward_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const double *dy, const double *x,
    const double *mean, const double *rstd, const double *weight, double *dx, double *dweight,
    double *dbias, int num_threads);

/* The stages the other channel normalizers are composed of; statistics and
 * coefficients are double arrays of S*C elements, one per (s, c).
 * moments: mean and biased variance of each (s, c) over R x L elements (eps
 * only decides whether sums that underflowed are recomputed in double). */
FASTNORM_API int fastnorm_channel_moments_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *x, double eps, double *mean,
    double *var, int num_threads);
FASTNORM_API int fastnorm_channel_moments_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *x, double eps, double *mean,
    double *var, int num_threads);
/* y (+)= (x - mean) * rstd * weight + bias; accumulate = 1 adds to y. */
FASTNORM_API int fastnorm_channel_normalize_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *x, float *y, const double *mean,
    const double *rstd, const float *weight, const float *bias, int accumulate,
    int num_threads);
FASTNORM_API int fastnorm_channel_normalize_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *x, double *y,
    const double *mean, const double *rstd, const double *weight, const double *bias,
    int accumulate, int num_threads);
/* sum_dy = sum(dy), sum_dyx = sum(dy * (x - mu)) per (s, c). */
FASTNORM_API int fastnorm_channel_sums_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x,
    const double *mu, double *sum_dy, double *sum_dyx, int num_threads);
FASTNORM_API int fastnorm_channel_sums_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x,
    const double *mu, double *sum_dy, double *sum_dyx, int num_threads);
/* dx (+)= a * dy + b * ((x - mu) * r) + k per (s, c). */
FASTNORM_API int fastnorm_channel_affine_backward_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x, float *dx,
    const double *mu, const double *r, const double *a, const double *b, const double *k,
    int accumulate, int num_threads);
FASTNORM_API int fastnorm_channel_affine_backward_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x, double *dx,
    const double *mu, const double *r, const double *a, const double *b, const double *k,
    int accumulate, int num_threads);

#ifdef __cplusplus
}
#endif

#endif /* FASTNORM_H */
