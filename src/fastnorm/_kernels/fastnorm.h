/*
 * fastnorm.h -- C entry points of the fastnorm normalization kernels.
 *
 * Plain C99, no Python. The same functions run under the Python package;
 * this header is installed with it (fastnorm.get_include() is its folder),
 * and docs/embedding.md says how to build a program or an extension on it.
 *
 * Types. Each normalizer comes as _f32 (float data) and _f64 (double data),
 * and as _f16 and _bf16 (16-bit data; see "16-bit data" below).
 * Sizes and strides are int64_t counts of elements, never bytes. Every
 * pointer must be aligned to its type (as any float * or double * in C);
 * no further alignment is needed.
 *
 * Row normalizers (layer norm, RMS norm and their fused and per-sample
 * forms) address an array as `rows` rows of `n` contiguous elements: row i
 * starts at p + i * ldp, where the `ld*` argument that goes with p is the
 * distance between the starts of two consecutive rows, of any sign (0
 * repeats one row; an input may do that, an output may not). Per-row
 * statistics (mean, rstd) are dense vectors of `rows` elements of the data
 * type; parameters (weight, bias, residual_bias) dense vectors of `n`
 * elements. rstd is 1 / sqrt(var + eps) with the biased variance.
 *
 * NULL: where an argument is marked "or NULL", NULL means "not wanted"
 * for an output (it is not computed) and "the identity" for a parameter
 * (weight = 1, bias = 0). Every other pointer must be valid whenever the
 * call has work to do (rows > 0 and n > 0).
 *
 * Aliasing: an output may be the corresponding input itself, with the
 * same stride (y == x, ldy == ldx, for a normalization in place) where an
 * entry point says so; apart from that, outputs must not overlap each
 * other or any input.
 *
 * Values: eps must be >= 0 and finite (not checked). A NaN in a row makes
 * that row's outputs NaN; an Inf makes a layer-norm row NaN and gives an
 * RMS-norm row rstd = 0. Rows whose float sums would overflow or underflow
 * are computed again in double precision, scaled, so that finite rows of
 * any magnitude give finite results.
 *
 * Return value: FASTNORM_OK (0) on success; FASTNORM_ENOMEM when scratch
 * memory could not be allocated (the outputs are then unspecified);
 * FASTNORM_EINVAL where an entry point lists a condition for it (nothing is
 * written then). Calls with no work (rows <= 0, or a zero dimension of a
 * channel array) return FASTNORM_OK and write only what their description
 * says.
 *
 * Threads. `num_threads` is an upper bound on the threads one call uses,
 * the calling thread included: <= 1 runs on the calling thread, and so does
 * any call on less than 128 KiB of data; a count above the CPUs the process
 * may run on (its CPU affinity) runs with that many. Calls run on
 * fastnorm's own thread pool (docs/threads.md): the work is cut into chunks
 * of whole rows (or channels, groups) that the caller and the pool's
 * workers claim from a shared counter, so that the caller never waits for a
 * worker that has not started. The results are bitwise identical for any
 * `num_threads` and any claim order: row results never depend on the split,
 * and gradient sums over rows are made per fixed block of rows and added in
 * a fixed order. A serial build always runs on the calling thread
 * (fastnorm_has_threads()).
 *
 * Re-entrancy. Every normalizer may be called concurrently from any number
 * of threads (each with its own num_threads) on outputs that do not
 * overlap. One call at a time has the pool; a call that finds it busy runs
 * on its calling thread alone (the same results). The process-wide settings
 * are the kernel table (fastnorm_set_isa; change it only while no call
 * runs) and the default thread count (fastnorm_set_max_threads).
 *
 * fork(). In a process forked after the pool started its threads, every
 * call runs on the calling thread (fastnorm_serial_after_fork() is 1): the
 * child has none of the parent's workers. The results are unchanged.
 */
#ifndef FASTNORM_H
#define FASTNORM_H

#include <stdint.h>

#define FASTNORM_VERSION_MAJOR 0
#define FASTNORM_VERSION_MINOR 1
#define FASTNORM_VERSION_PATCH 0
/* 10000 * major + 100 * minor + patch of this header; compare it with
 * fastnorm_version_number(), the version of the compiled kernels. */
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

/* Return codes. */
#define FASTNORM_OK 0
#define FASTNORM_ENOMEM 1 /* scratch memory could not be allocated */
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
#define FASTNORM_CPU_AVX512F 32u
#define FASTNORM_CPU_AVX512VL 64u
#define FASTNORM_CPU_AVX512DQ 128u
#define FASTNORM_CPU_AVX512_BF16 256u
#define FASTNORM_CPU_OS_AVX512 512u /* the OS saves the AVX-512 (ZMM, opmask) state */
#define FASTNORM_CPU_AVX512BW 1024u

/* ---- version, dispatch, threads ------------------------------------------ */

/* FASTNORM_VERSION_NUMBER of the sources the kernels were compiled from. */
FASTNORM_API int fastnorm_version_number(void);

/* FASTNORM_CPU_* bits of the CPU this runs on (0 off x86). */
FASTNORM_API unsigned fastnorm_cpu_features(void);
/* 1 when the kernels of `isa` (FASTNORM_ISA_*) are compiled in and the CPU
 * and OS can run them, else 0. The scalar kernels are always available. */
FASTNORM_API int fastnorm_isa_available(int isa);
/* Selects the kernels of every later call; returns the ISA actually
 * selected (AVX2 is refused, and scalar kept, where the CPU or the build
 * lacks it). Until it is called the first call picks the best available.
 * Process-wide: call it only while no normalizer runs. The two kernel
 * tables agree to rounding, not bit for bit. */
FASTNORM_API int fastnorm_set_isa(int isa);
/* The ISA in use (selecting the best available if none was chosen yet). */
FASTNORM_API int fastnorm_get_isa(void);
/* Within the AVX2 kernels, bfloat16 results are rounded by the AVX-512 BF16
 * conversion instruction where the build and the CPU have it (AVX-512 F, VL,
 * DQ, BW and BF16 with the OS's ZMM support), else by integer instructions; both
 * give the same bits (vectors holding a float32 subnormal, which the
 * instruction would flush, take the integer rounding). 1 when the
 * instruction is in use for the AVX2 kernels. */
FASTNORM_API int fastnorm_bf16_convert_in_use(void);
/* Within the AVX2 kernels, the float16 and bfloat16 loops that step over two
 * vectors of 8 floats hold them in one AVX-512 register where the build and
 * the CPU have it (AVX-512 F, VL, DQ and BW with the OS's ZMM support): the
 * same operations on every element, so the same results, converting 16
 * elements per instruction. Rows of more than 3072 elements (1536 for the
 * bfloat16 backward) keep the 8-float loops, faster there. 1 when this is in
 * use for the AVX2 kernels. */
FASTNORM_API int fastnorm_avx512_in_use(void);

/* 1 when the kernels were built with fastnorm's thread pool, else 0 (a
 * serial build: every call runs on the calling thread). */
FASTNORM_API int fastnorm_has_threads(void);
/* The same as fastnorm_has_threads (the name older programs use). */
FASTNORM_API int fastnorm_has_openmp(void);
/* The default thread count, a natural num_threads: the count set by
 * fastnorm_set_max_threads if any, else OMP_NUM_THREADS (its first value)
 * if it is a positive count, else the CPUs of the process's affinity; 1 in
 * a serial build. */
FASTNORM_API int fastnorm_max_threads(void);
/* Sets the default thread count (n >= 1) for the whole process, or returns
 * to OMP_NUM_THREADS and the affinity (n <= 0). No effect in a serial
 * build. */
FASTNORM_API void fastnorm_set_max_threads(int n);
/* The CPUs the process may run on (its CPU affinity, seen at the first
 * call that asks): the most threads one call uses. 1 in a serial build. */
FASTNORM_API int fastnorm_num_procs(void);
/* 1 in a process forked after fastnorm's pool started threads: every call
 * there runs on the calling thread; 0 otherwise. */
FASTNORM_API int fastnorm_serial_after_fork(void);

/* ---- row normalizers ------------------------------------------------------ */

/* LayerNorm forward, per row: y = (x - mean) * rstd * weight + bias.
 *   x      rows x n input, rows ldx apart.
 *   y      rows x n output, rows ldy apart; may be x itself (ldy == ldx).
 *   weight, bias   n elements each, or NULL.
 *   eps    added to the variance.
 *   mean, rstd     rows elements each (outputs), or NULL. With n <= 0 they
 *          are set to NaN and y is not touched. */
FASTNORM_API int fastnorm_layer_norm_f32(
    int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
    const float *weight, const float *bias, double eps, float *mean, float *rstd,
    int num_threads);
FASTNORM_API int fastnorm_layer_norm_f64(
    int64_t rows, int64_t n, const double *x, int64_t ldx, double *y, int64_t ldy,
    const double *weight, const double *bias, double eps, double *mean, double *rstd,
    int num_threads);

/* LayerNorm backward, from the forward's statistics.
 *   dy     rows x n gradient of y, rows lddy apart.
 *   x      the forward's input, rows ldx apart.
 *   mean, rstd     rows elements each, as the forward wrote them (required).
 *   weight n elements, or NULL (the forward had none).
 *   dx     rows x n output, rows lddx apart; must not overlap dy or x.
 *   dweight = sum over rows of dy * (x - mean) * rstd, n elements, or NULL.
 *   dbias   = sum over rows of dy, n elements, or NULL.
 * With rows <= 0 (and n > 0) dweight and dbias are set to zero. */
FASTNORM_API int fastnorm_layer_norm_backward_f32(
    int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *x, int64_t ldx,
    const float *mean, const float *rstd, const float *weight, float *dx, int64_t lddx,
    float *dweight, float *dbias, int num_threads);
FASTNORM_API int fastnorm_layer_norm_backward_f64(
    int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *x, int64_t ldx,
    const double *mean, const double *rstd, const double *weight, double *dx, int64_t lddx,
    double *dweight, double *dbias, int num_threads);

/* RMSNorm forward, per row: y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2)
 * + eps). Arguments as fastnorm_layer_norm_*, without bias and mean; y may be
 * x itself (ldy == ldx); rstd (rows elements) or NULL. */
FASTNORM_API int fastnorm_rms_norm_f32(
    int64_t rows, int64_t n, const float *x, int64_t ldx, float *y, int64_t ldy,
    const float *weight, double eps, float *rstd, int num_threads);
FASTNORM_API int fastnorm_rms_norm_f64(
    int64_t rows, int64_t n, const double *x, int64_t ldx, double *y, int64_t ldy,
    const double *weight, double eps, double *rstd, int num_threads);

/* RMSNorm backward, from the forward's rstd (rows elements, required).
 * Arguments as fastnorm_layer_norm_backward_*, without mean and dbias;
 * dweight = sum over rows of dy * x * rstd (n elements), or NULL. */
FASTNORM_API int fastnorm_rms_norm_backward_f32(
    int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *x, int64_t ldx,
    const float *rstd, const float *weight, float *dx, int64_t lddx, float *dweight,
    int num_threads);
FASTNORM_API int fastnorm_rms_norm_backward_f64(
    int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *x, int64_t ldx,
    const double *rstd, const double *weight, double *dx, int64_t lddx, double *dweight,
    int num_threads);

/* Fused residual add and norm (a pre-norm transformer block), per row:
 *   sum_out = x + residual (+ residual_bias), then y = LayerNorm(sum_out)
 *   (or RMSNorm(sum_out)) with weight and bias as in the plain forward.
 *   x, residual    rows x n inputs, rows ldx and ldr apart.
 *   residual_bias  n elements, or NULL.
 *   sum_out        rows x n output (required), rows lds apart; may be x or
 *                  residual itself (with the same stride), to update a
 *                  residual stream in place.
 *   y              rows x n output, rows ldy apart; must not overlap
 *                  sum_out, x or residual.
 *   mean, rstd     the statistics of sum_out, rows elements, or NULL.
 * x and residual are read once, sum_out and y written once. The backward is
 * fastnorm_layer_norm_backward_* (fastnorm_rms_norm_backward_*) with
 * x = sum_out. */
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

/* The backward of add_layer_norm / add_rms_norm over the last axis, with ds,
 * the gradient that reaches s = x + residual from later blocks: dsum = the
 * norm's dx + ds, added before the one rounding to T (for 16-bit data, dx + ds
 * in float32 then rounded), in rows lddsum apart; dweight and dbias as in
 * fastnorm_layer_norm_backward. dsum must not overlap dy, s or ds. */
FASTNORM_API int fastnorm_add_layer_norm_backward_f32(
    int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *s, int64_t lds,
    const float *ds, int64_t ldds, const float *mean, const float *rstd, const float *weight,
    float *dsum, int64_t lddsum, float *dweight, float *dbias, int num_threads);
FASTNORM_API int fastnorm_add_layer_norm_backward_f64(
    int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *s, int64_t lds,
    const double *ds, int64_t ldds, const double *mean, const double *rstd,
    const double *weight, double *dsum, int64_t lddsum, double *dweight, double *dbias,
    int num_threads);
FASTNORM_API int fastnorm_add_rms_norm_backward_f32(
    int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *s, int64_t lds,
    const float *ds, int64_t ldds, const float *rstd, const float *weight, float *dsum,
    int64_t lddsum, float *dweight, int num_threads);
FASTNORM_API int fastnorm_add_rms_norm_backward_f64(
    int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *s, int64_t lds,
    const double *ds, int64_t ldds, const double *rstd, const double *weight, double *dsum,
    int64_t lddsum, double *dweight, int num_threads);

/* LayerNorm with per-sample affine parameters (AdaLN of diffusion
 * transformers): x has samples * rows_per_sample rows (ldx apart), sample s
 * being rows s * rows_per_sample ... (s + 1) * rows_per_sample - 1, and
 * sample s uses parameter row s: weight + s * ldp and bias + s * ldp (n
 * elements each; weight and bias may each be NULL). AdaLN's
 * y = LN(x) * (1 + scale) + shift is weight = 1 + scale, bias = shift.
 * y (may be x itself, ldy == ldx), mean and rstd (samples * rows_per_sample
 * elements each, or NULL) as fastnorm_layer_norm_*. */
FASTNORM_API int fastnorm_layer_norm_per_sample_f32(
    int64_t samples, int64_t rows_per_sample, int64_t n, const float *x, int64_t ldx, float *y,
    int64_t ldy, const float *weight, const float *bias, int64_t ldp, double eps, float *mean,
    float *rstd, int num_threads);
FASTNORM_API int fastnorm_layer_norm_per_sample_f64(
    int64_t samples, int64_t rows_per_sample, int64_t n, const double *x, int64_t ldx,
    double *y, int64_t ldy, const double *weight, const double *bias, int64_t ldp, double eps,
    double *mean, double *rstd, int num_threads);

/* The backward of fastnorm_layer_norm_per_sample_*: each sample's rows are a
 * LayerNorm backward with that sample's weight row (weight + s * ldp, or
 * NULL). mean and rstd (samples * rows_per_sample elements) are required.
 * dweight and dbias are samples x n dense arrays (row s: the sums over sample
 * s's rows), or NULL. Samples run one after the other, each with up to
 * num_threads threads. */
FASTNORM_API int fastnorm_layer_norm_per_sample_backward_f32(
    int64_t samples, int64_t rows_per_sample, int64_t n, const float *dy, int64_t lddy,
    const float *x, int64_t ldx, const float *mean, const float *rstd, const float *weight,
    int64_t ldp, float *dx, int64_t lddx, float *dweight, float *dbias, int num_threads);
FASTNORM_API int fastnorm_layer_norm_per_sample_backward_f64(
    int64_t samples, int64_t rows_per_sample, int64_t n, const double *dy, int64_t lddy,
    const double *x, int64_t ldx, const double *mean, const double *rstd, const double *weight,
    int64_t ldp, double *dx, int64_t lddx, double *dweight, double *dbias, int num_threads);

/* ---- channel normalizers --------------------------------------------------
 * Data (x, y, dy, dx) is one C-contiguous (S, R, C, L) array: S samples, R
 * rows, C channels, L contiguous elements per channel; element (s, r, c, l)
 * is at index ((s * R + r) * C + c) * L + l. NCHW data with per-sample
 * statistics is (N, 1, C, H*W); channels-last (NHWC) data is (N, H*W, C, 1).
 * Batch statistics merge the batch into the rows: (1, N, C, H*W) or
 * (1, N*H*W, C, 1). Parameters (weight, bias) have one value per channel (C
 * elements, of the data type) or are NULL. Statistics are float64 partial
 * sums merged in a fixed order: bitwise identical for any num_threads, and
 * accurate over millions of elements. */

/* Group norm: the C channels form G groups of C / G consecutive channels,
 * and each unit (s, g) -- sample s, group g -- is normalized with the mean
 * and biased variance of its R x C/G x L elements:
 *   y = (x - mean[s, g]) * rstd[s, g] * weight[c] + bias[c].
 * Instance norm is G = C; batch-norm training is S = 1 (the batch merged
 * into R, see above) with G = C.
 *   x, y   (S, R, C, L) arrays; y may be x itself.
 *   weight, bias   C elements each, or NULL.
 *   mean, rstd, var  S * G elements each (outputs, in the data type; unit
 *          (s, g) at index s * G + g; var is the biased variance), or NULL.
 *          With R, C or L zero (and S > 0) they are set to NaN.
 * Returns FASTNORM_EINVAL, writing nothing, when S > 0 and G < 1 or C is
 * not a multiple of G. */
FASTNORM_API int fastnorm_group_norm_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const float *x, float *y,
    const float *weight, const float *bias, double eps, float *mean, float *rstd, float *var,
    int num_threads);
FASTNORM_API int fastnorm_group_norm_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const double *x, double *y,
    const double *weight, const double *bias, double eps, double *mean, double *rstd,
    double *var, int num_threads);

/* Group norm backward, from the forward's statistics.
 *   dy, x  (S, R, C, L): the gradient of y and the forward's input.
 *   mean, rstd     S * G elements each, as the forward wrote them (required).
 *   weight C elements, or NULL (the forward had none).
 *   dx     (S, R, C, L) output; must not overlap dy or x.
 *   dweight = sum of dy * (x - mean) * rstd per channel (over S, R, L),
 *   dbias   = sum of dy per channel; C elements each, or NULL. With S, R or
 *          L zero (and C > 0) they are set to zero.
 * Returns FASTNORM_EINVAL, writing nothing, when G < 1 or C is not a
 * multiple of G. */
FASTNORM_API int fastnorm_group_norm_backward_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const float *dy, const float *x,
    const float *mean, const float *rstd, const float *weight, float *dx, float *dweight,
    float *dbias, int num_threads);
FASTNORM_API int fastnorm_group_norm_backward_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const double *dy, const double *x,
    const double *mean, const double *rstd, const double *weight, double *dx, double *dweight,
    double *dbias, int num_threads);

/* The stages the other channel normalizers (batch norm and instance norm
 * with given statistics, switchable norm, batch layer norm) are composed of.
 * Per-(s, c) vectors are double arrays of S * C elements, (s, c) at index
 * s * C + c; all of them are required (none may be NULL). */

/* Moments: mean and biased var of each (s, c) over its R x L elements
 * (outputs, S * C doubles each). eps is not added; it only decides whether
 * sums that underflowed are computed again in double. With R or L zero (and
 * S, C > 0) both are set to NaN. */
FASTNORM_API int fastnorm_channel_moments_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *x, double eps, double *mean,
    double *var, int num_threads);
FASTNORM_API int fastnorm_channel_moments_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *x, double eps, double *mean,
    double *var, int num_threads);

/* Normalize with given statistics: y = (x - mean) * rstd * weight + bias,
 * mean and rstd per (s, c) (S * C doubles each), weight and bias per channel
 * (C elements each, or NULL). accumulate = 0 writes y (which may then be x
 * itself); accumulate != 0 adds to y (y += ...; y must not overlap x). */
FASTNORM_API int fastnorm_channel_normalize_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *x, float *y, const double *mean,
    const double *rstd, const float *weight, const float *bias, int accumulate,
    int num_threads);
FASTNORM_API int fastnorm_channel_normalize_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *x, double *y,
    const double *mean, const double *rstd, const double *weight, const double *bias,
    int accumulate, int num_threads);

/* Gradient sums about given means: per (s, c), over its R x L elements,
 * sum_dy = sum(dy) and sum_dyx = sum(dy * (x - mu)) (outputs, S * C doubles
 * each; mu: S * C doubles). With R or L zero both are set to zero. */
FASTNORM_API int fastnorm_channel_sums_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x,
    const double *mu, double *sum_dy, double *sum_dyx, int num_threads);
FASTNORM_API int fastnorm_channel_sums_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x,
    const double *mu, double *sum_dy, double *sum_dyx, int num_threads);

/* channel_sums and, in the same pass over dy, dx = a * dy with a per
 * (s, c) (S * C doubles): the backward of a normalization with constant
 * statistics (batch norm in eval mode: a = weight * rstd). dx must not
 * overlap dy or x. */
FASTNORM_API int fastnorm_channel_sums_scale_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x,
    const double *mu, double *sum_dy, double *sum_dyx, float *dx, const double *a,
    int num_threads);
FASTNORM_API int fastnorm_channel_sums_scale_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x,
    const double *mu, double *sum_dy, double *sum_dyx, double *dx, const double *a,
    int num_threads);

/* The input gradient of an affine-in-dy form, per (s, c):
 *   dx = a * dy + b * ((x - mu) * r) + k      (accumulate = 0), or
 *   dx += a * dy + b * ((x - mu) * r) + k     (accumulate != 0),
 * with mu, r, a, b and k S * C doubles each. dx must not overlap dy or x.
 * Batch-norm backward with batch statistics is a = weight * rstd,
 * b = -a * mean(dy * xhat), k = -a * mean(dy), r = rstd. */
FASTNORM_API int fastnorm_channel_affine_backward_f32(
    int64_t S, int64_t R, int64_t C, int64_t L, const float *dy, const float *x, float *dx,
    const double *mu, const double *r, const double *a, const double *b, const double *k,
    int accumulate, int num_threads);
FASTNORM_API int fastnorm_channel_affine_backward_f64(
    int64_t S, int64_t R, int64_t C, int64_t L, const double *dy, const double *x, double *dx,
    const double *mu, const double *r, const double *a, const double *b, const double *k,
    int accumulate, int num_threads);

/* ---- weight normalization --------------------------------------------
 * v is C rows of L contiguous elements (axis 0 of a C-contiguous weight of
 * shape (C, ...)), g one double per row. Forward: w = g * v / sqrt(sum(v^2) +
 * eps) per row (w may be v itself; eps = 0 is the usual definition, and a
 * zero row then gives NaN). Backward, for the gradient dw of w: dg (C
 * doubles) = sum(dw * v) / norm and dv = (g / norm) dw - (g dg / norm^2) v;
 * dv must not overlap dw or v. Each row is read from memory once. */
FASTNORM_API int fastnorm_weight_norm_f32(int64_t C, int64_t L, const float *v, const double *g,
                                          double eps, float *w, int num_threads);
FASTNORM_API int fastnorm_weight_norm_f64(int64_t C, int64_t L, const double *v,
                                          const double *g, double eps, double *w,
                                          int num_threads);
FASTNORM_API int fastnorm_weight_norm_backward_f32(int64_t C, int64_t L, const float *dw,
                                                   const float *v, const double *g, double eps,
                                                   float *dv, double *dg, int num_threads);
FASTNORM_API int fastnorm_weight_norm_backward_f64(int64_t C, int64_t L, const double *dw,
                                                   const double *v, const double *g,
                                                   double eps, double *dv, double *dg,
                                                   int num_threads);

/* ---- LayerNorm / RMSNorm over an axis that is not the last --------------
 * x is an (S, C, L) array normalized over C: element (s, c, l) at
 * s * lds + c * ldc + l (the L elements of each (s, c) contiguous; strides in
 * elements). axis=1 of a C-contiguous (N, C, H, W) array is S = N, L = H*W,
 * ldc = L, lds = C*L. Statistics (mean, rstd) are dense (S, L) arrays, one
 * per (s, l), or NULL; weight, bias (and dweight, dbias) have C elements or
 * are NULL. y (dx) may be x itself when it has x's strides. Computed along
 * the contiguous L, with no transposing copy. */
FASTNORM_API int fastnorm_layer_norm_axis_f32(
    int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc, float *y,
    int64_t ldys, int64_t ldyc, const float *weight, const float *bias, double eps,
    float *mean, float *rstd, int num_threads);
FASTNORM_API int fastnorm_layer_norm_axis_f64(
    int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc, double *y,
    int64_t ldys, int64_t ldyc, const double *weight, const double *bias, double eps,
    double *mean, double *rstd, int num_threads);
FASTNORM_API int fastnorm_rms_norm_axis_f32(
    int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc, float *y,
    int64_t ldys, int64_t ldyc, const float *weight, double eps, float *rstd,
    int num_threads);
FASTNORM_API int fastnorm_rms_norm_axis_f64(
    int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc, double *y,
    int64_t ldys, int64_t ldyc, const double *weight, double eps, double *rstd,
    int num_threads);
FASTNORM_API int fastnorm_layer_norm_axis_backward_f32(
    int64_t S, int64_t C, int64_t L, const float *dy, int64_t lddys, int64_t lddyc,
    const float *x, int64_t ldxs, int64_t ldxc, const float *mean, const float *rstd,
    const float *weight, float *dx, int64_t lddxs, int64_t lddxc, float *dweight,
    float *dbias, int num_threads);
FASTNORM_API int fastnorm_layer_norm_axis_backward_f64(
    int64_t S, int64_t C, int64_t L, const double *dy, int64_t lddys, int64_t lddyc,
    const double *x, int64_t ldxs, int64_t ldxc, const double *mean, const double *rstd,
    const double *weight, double *dx, int64_t lddxs, int64_t lddxc, double *dweight,
    double *dbias, int num_threads);
FASTNORM_API int fastnorm_rms_norm_axis_backward_f32(
    int64_t S, int64_t C, int64_t L, const float *dy, int64_t lddys, int64_t lddyc,
    const float *x, int64_t ldxs, int64_t ldxc, const float *rstd, const float *weight,
    float *dx, int64_t lddxs, int64_t lddxc, float *dweight, int num_threads);
FASTNORM_API int fastnorm_rms_norm_axis_backward_f64(
    int64_t S, int64_t C, int64_t L, const double *dy, int64_t lddys, int64_t lddyc,
    const double *x, int64_t ldxs, int64_t ldxc, const double *rstd, const double *weight,
    double *dx, int64_t lddxs, int64_t lddxc, double *dweight, int num_threads);

/* The fused residual add of add_layer_norm / add_rms_norm over a non-last
 * axis: s = x + residual (+ residual_bias[c]) is written to sum_out (strides
 * ldss, ldsc), all of it, and then normalized as by fastnorm_layer_norm_axis /
 * fastnorm_rms_norm_axis; residual_bias has C elements or is NULL. sum_out may
 * be x or residual (the same memory and strides) but must not overlap them
 * otherwise; y may be x or residual likewise, and must not overlap sum_out. */
FASTNORM_API int fastnorm_add_layer_norm_axis_f32(
    int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
    const float *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
    float *sum_out, int64_t ldss, int64_t ldsc, float *y, int64_t ldys, int64_t ldyc,
    const float *weight, const float *bias, double eps, float *mean, float *rstd,
    int num_threads);
FASTNORM_API int fastnorm_add_layer_norm_axis_f64(
    int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
    const double *residual, int64_t ldrs, int64_t ldrc, const double *residual_bias,
    double *sum_out, int64_t ldss, int64_t ldsc, double *y, int64_t ldys, int64_t ldyc,
    const double *weight, const double *bias, double eps, double *mean, double *rstd,
    int num_threads);
FASTNORM_API int fastnorm_add_rms_norm_axis_f32(
    int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
    const float *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
    float *sum_out, int64_t ldss, int64_t ldsc, float *y, int64_t ldys, int64_t ldyc,
    const float *weight, double eps, float *rstd, int num_threads);
FASTNORM_API int fastnorm_add_rms_norm_axis_f64(
    int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
    const double *residual, int64_t ldrs, int64_t ldrc, const double *residual_bias,
    double *sum_out, int64_t ldss, int64_t ldsc, double *y, int64_t ldys, int64_t ldyc,
    const double *weight, double eps, double *rstd, int num_threads);

/* ---- 16-bit data: float16 and bfloat16 -------------------------------------
 * Every normalizer above also comes as _f16 (IEEE 754 binary16 data) and
 * _bf16 (bfloat16 data: the upper 16 bits of a float32), with the same
 * arguments except for their types:
 *   - data (x, y, dy, dx, residual, sum_out) is uint16_t bit patterns;
 *   - parameters (weight, bias, residual_bias) are float;
 *   - statistics (mean, rstd, var) are float;
 *   - parameter gradients (dweight, dbias) are float;
 *   - the channel stages' double vectors stay double.
 * Statistics and sums are accumulated in float32 (double where the float32
 * and float64 kernels use double), and each output element is the float32
 * result rounded once to 16 bits, to nearest with ties to even. The
 * declarations are generated per format by the macro below. */
#define FASTNORM_DECLARE_16BIT(SUF)                                                       \
    FASTNORM_API int fastnorm_layer_norm_##SUF(                                          \
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy, \
        const float *weight, const float *bias, double eps, float *mean, float *rstd,     \
        int num_threads);                                                                 \
    FASTNORM_API int fastnorm_layer_norm_backward_##SUF(                                 \
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *x,     \
        int64_t ldx, const float *mean, const float *rstd, const float *weight,           \
        uint16_t *dx, int64_t lddx, float *dweight, float *dbias, int num_threads);       \
    FASTNORM_API int fastnorm_rms_norm_##SUF(                                            \
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy, \
        const float *weight, double eps, float *rstd, int num_threads);                   \
    FASTNORM_API int fastnorm_rms_norm_backward_##SUF(                                   \
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *x,     \
        int64_t ldx, const float *rstd, const float *weight, uint16_t *dx, int64_t lddx,  \
        float *dweight, int num_threads);                                                 \
    FASTNORM_API int fastnorm_add_layer_norm_##SUF(                                      \
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, const uint16_t *residual, \
        int64_t ldr, const float *residual_bias, uint16_t *sum_out, int64_t lds,          \
        uint16_t *y, int64_t ldy, const float *weight, const float *bias, double eps,      \
        float *mean, float *rstd, int num_threads);                                       \
    FASTNORM_API int fastnorm_add_rms_norm_##SUF(                                        \
        int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, const uint16_t *residual, \
        int64_t ldr, const float *residual_bias, uint16_t *sum_out, int64_t lds,          \
        uint16_t *y, int64_t ldy, const float *weight, double eps, float *rstd,           \
        int num_threads);                                                                 \
    FASTNORM_API int fastnorm_add_layer_norm_backward_##SUF(                             \
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,    \
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *mean,                \
        const float *rstd, const float *weight, uint16_t *dsum, int64_t lddsum,          \
        float *dweight, float *dbias, int num_threads);                                  \
    FASTNORM_API int fastnorm_add_rms_norm_backward_##SUF(                               \
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,    \
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *rstd,                \
        const float *weight, uint16_t *dsum, int64_t lddsum, float *dweight,             \
        int num_threads);                                                                \
    FASTNORM_API int fastnorm_layer_norm_per_sample_##SUF(                               \
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *x,           \
        int64_t ldx, uint16_t *y, int64_t ldy, const float *weight, const float *bias,    \
        int64_t ldp, double eps, float *mean, float *rstd, int num_threads);              \
    FASTNORM_API int fastnorm_layer_norm_per_sample_backward_##SUF(                      \
        int64_t samples, int64_t rows_per_sample, int64_t n, const uint16_t *dy,          \
        int64_t lddy, const uint16_t *x, int64_t ldx, const float *mean, const float *rstd, \
        const float *weight, int64_t ldp, uint16_t *dx, int64_t lddx, float *dweight,     \
        float *dbias, int num_threads);                                                   \
    FASTNORM_API int fastnorm_group_norm_##SUF(                                          \
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const uint16_t *x,         \
        uint16_t *y, const float *weight, const float *bias, double eps, float *mean,     \
        float *rstd, float *var, int num_threads);                                        \
    FASTNORM_API int fastnorm_group_norm_backward_##SUF(                                 \
        int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const uint16_t *dy,        \
        const uint16_t *x, const float *mean, const float *rstd, const float *weight,     \
        uint16_t *dx, float *dweight, float *dbias, int num_threads);                     \
    FASTNORM_API int fastnorm_channel_moments_##SUF(                                     \
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x, double eps,        \
        double *mean, double *var, int num_threads);                                      \
    FASTNORM_API int fastnorm_channel_normalize_##SUF(                                   \
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x, uint16_t *y,       \
        const double *mean, const double *rstd, const float *weight, const float *bias,   \
        int accumulate, int num_threads);                                                 \
    FASTNORM_API int fastnorm_channel_sums_##SUF(                                        \
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x, \
        const double *mu, double *sum_dy, double *sum_dyx, int num_threads);              \
    FASTNORM_API int fastnorm_channel_affine_backward_##SUF(                             \
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x, \
        uint16_t *dx, const double *mu, const double *r, const double *a, const double *b, \
        const double *k, int accumulate, int num_threads);                                \
    FASTNORM_API int fastnorm_layer_norm_axis_##SUF(                                     \
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,   \
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight, const float *bias,  \
        double eps, float *mean, float *rstd, int num_threads);                           \
    FASTNORM_API int fastnorm_rms_norm_axis_##SUF(                                       \
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,   \
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight, double eps,         \
        float *rstd, int num_threads);                                                    \
    FASTNORM_API int fastnorm_layer_norm_axis_backward_##SUF(                            \
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc, \
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *mean,                 \
        const float *rstd, const float *weight, uint16_t *dx, int64_t lddxs,              \
        int64_t lddxc, float *dweight, float *dbias, int num_threads);                    \
    FASTNORM_API int fastnorm_rms_norm_axis_backward_##SUF(                              \
        int64_t S, int64_t C, int64_t L, const uint16_t *dy, int64_t lddys, int64_t lddyc, \
        const uint16_t *x, int64_t ldxs, int64_t ldxc, const float *rstd,                 \
        const float *weight, uint16_t *dx, int64_t lddxs, int64_t lddxc, float *dweight,  \
        int num_threads);                                                                 \
    FASTNORM_API int fastnorm_add_layer_norm_axis_##SUF(                                 \
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,  \
        const uint16_t *residual, int64_t ldrs, int64_t ldrc,                            \
        const float *residual_bias, uint16_t *sum_out, int64_t ldss, int64_t ldsc,       \
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight,                    \
        const float *bias, double eps, float *mean, float *rstd, int num_threads);       \
    FASTNORM_API int fastnorm_add_rms_norm_axis_##SUF(                                   \
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,  \
        const uint16_t *residual, int64_t ldrs, int64_t ldrc,                            \
        const float *residual_bias, uint16_t *sum_out, int64_t ldss, int64_t ldsc,       \
        uint16_t *y, int64_t ldys, int64_t ldyc, const float *weight, double eps,        \
        float *rstd, int num_threads);                                                   \
    FASTNORM_API int fastnorm_channel_sums_scale_##SUF(                                  \
        int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x, \
        const double *mu, double *sum_dy, double *sum_dyx, uint16_t *dx, const double *a,  \
        int num_threads);                                                                 \
    FASTNORM_API int fastnorm_weight_norm_##SUF(int64_t C, int64_t L, const uint16_t *v,  \
                                                const double *g, double eps, uint16_t *w,  \
                                                int num_threads);                          \
    FASTNORM_API int fastnorm_weight_norm_backward_##SUF(                                \
        int64_t C, int64_t L, const uint16_t *dw, const uint16_t *v, const double *g,     \
        double eps, uint16_t *dv, double *dg, int num_threads);

FASTNORM_DECLARE_16BIT(f16)
FASTNORM_DECLARE_16BIT(bf16)

/* ==== switchable and batch-layer normalization ==============================
 * Per data type, as the entry points above; declared by the two macros
 * below. */

/* ---- switchable normalization ---------------------------------------------
 * x is a C-ordered (N, R, C, L) array: N samples, R rows, C channels and L
 * contiguous elements per channel ((N, 1, C, H*W) for NCHW data,
 * (N, H*W, C, 1) for channels-last). The instance moments in_mean, in_var
 * (N, C) are mixed with the layer moments ln_mean, ln_var (N) and the batch
 * moments bn_mean, bn_var (C) by the softmaxed weights mean_weight and
 * var_weight (3 doubles each: IN, LN, BN):
 *   mean = mw[0] in_mean + mw[1] ln_mean + mw[2] bn_mean, var alike,
 *   y = (x - mean) / sqrt(var + eps) * weight + bias,
 * every statistic in double (docs/numerics.md §9; the sums in NumPy's order,
 * driver_mixed.h). The batch moments come from the batch, or, where
 * running_mean and running_var (C doubles) are not NULL, are those. mean and
 * rstd (N, C) are the mixed statistics the backward takes, with the other
 * seven arrays. weight and bias (C, the parameter type: float for 16-bit
 * data) may be NULL. With no elements nothing is written to y and every
 * statistic is NaN. y may be x itself, and must not otherwise overlap the
 * inputs.
 *
 * The backward writes dx (x's shape; it must not overlap dy or x), dweight
 * and dbias (C doubles each, either may be NULL; weight NULL means ones) and
 * the gradients of the mixing weights dmean_weight, dvar_weight (3 doubles
 * each, with respect to the softmaxed weights' logits). batch_stats is
 * whether the forward used the batch's moments (else they are constants).
 * rstd_cubed (N, C) is rstd**3 as the caller computed it, or NULL:
 * pow(rstd, 3). With no elements the gradients are zero. */
#define FASTNORM_DECLARE_SWITCH_NORM(SUF, T, W)                                          \
    FASTNORM_API int fastnorm_switch_norm_##SUF(                                         \
        int64_t N, int64_t R, int64_t C, int64_t L, const T *x, T *y, const W *weight,    \
        const W *bias, const double *mean_weight, const double *var_weight,               \
        const double *running_mean, const double *running_var, double eps, double *mean,  \
        double *rstd, double *in_mean, double *in_var, double *ln_mean, double *ln_var,   \
        double *bn_mean, double *bn_var, int num_threads);                                \
    FASTNORM_API int fastnorm_switch_norm_backward_##SUF(                                \
        int64_t N, int64_t R, int64_t C, int64_t L, const T *dy, const T *x,              \
        const W *weight, const double *mean_weight, const double *var_weight,             \
        const double *mean, const double *rstd, const double *in_mean,                    \
        const double *in_var, const double *ln_mean, const double *ln_var,                \
        const double *bn_mean, const double *bn_var, int batch_stats,                     \
        const double *rstd_cubed, T *dx, double *dweight, double *dbias,                  \
        double *dmean_weight, double *dvar_weight, int num_threads);

FASTNORM_DECLARE_SWITCH_NORM(f32, float, float)
FASTNORM_DECLARE_SWITCH_NORM(f64, double, double)
FASTNORM_DECLARE_SWITCH_NORM(f16, uint16_t, float)
FASTNORM_DECLARE_SWITCH_NORM(bf16, uint16_t, float)

/* ---- batch-layer normalization --------------------------------------------
 * x is a C-ordered (B, M, D) array: B samples, M positions and D features
 * (x.shape[1:-1] merged into M), F = M * D columns. With g = weight /
 * sqrt(D) (weight NULL: ones) and a = 1/n - 1e-4, b = 1 - 1/n - 1e-4 for n
 * = batch_size, or B where batch_size <= 0 (a = b = 0 for an empty batch):
 *   y = a * g * LN_features(x) + b * g * (x - batch_mean) * batch_rstd + bias
 * (docs/numerics.md §8). The feature branch's statistics feature_mean and
 * feature_rstd (B * M, the parameter type W: float for 16-bit data) are
 * those of a layer norm over the last axis; the batch branch's, per column
 * (F doubles each): batch_center and batch_var, the mini-batch's mean and
 * biased variance (NaN for an empty batch), and batch_mean and batch_rstd,
 * the ones used -- running_mean and 1 / sqrt(running_var + eps) where those
 * (F doubles) are not NULL, else the mini-batch's. bias (D) may be NULL.
 * y must not overlap x or the parameters.
 *
 * The backward takes the forward's statistics; frozen_mean and frozen_var
 * say whether batch_mean and batch_rstd came from the running statistics
 * (constants, then). It writes dx (x's shape; it must not overlap dy or
 * x), dweight and dbias (D, the parameter type; either may be NULL). With
 * no elements the gradients are zero. */
#define FASTNORM_DECLARE_BATCH_LAYER_NORM(SUF, T, W)                                     \
    FASTNORM_API int fastnorm_batch_layer_norm_##SUF(                                    \
        int64_t B, int64_t M, int64_t D, const T *x, T *y, const W *weight, const W *bias, \
        int64_t batch_size, const double *running_mean, const double *running_var,       \
        double eps, W *feature_mean, W *feature_rstd, double *batch_mean,                 \
        double *batch_rstd, double *batch_center, double *batch_var, int num_threads);    \
    FASTNORM_API int fastnorm_batch_layer_norm_backward_##SUF(                           \
        int64_t B, int64_t M, int64_t D, const T *dy, const T *x, const W *weight,        \
        int64_t batch_size, const W *feature_mean, const W *feature_rstd,                 \
        const double *batch_mean, const double *batch_rstd, const double *batch_center,   \
        int frozen_mean, int frozen_var, T *dx, W *dweight, W *dbias, int num_threads);

FASTNORM_DECLARE_BATCH_LAYER_NORM(f32, float, float)
FASTNORM_DECLARE_BATCH_LAYER_NORM(f64, double, double)
FASTNORM_DECLARE_BATCH_LAYER_NORM(f16, uint16_t, float)
FASTNORM_DECLARE_BATCH_LAYER_NORM(bf16, uint16_t, float)

/* ==== end of switchable and batch-layer normalization ====================== */

/* ---- the entry points as a table -----------------------------------------
 * For hosts that reach the kernels through an already loaded copy instead
 * of linking them: the Python package hands this table to other extension
 * modules in the capsule fastnorm._core._C_API (fastnorm_capi.h and
 * fastnorm/kernels.pxd use it). Members are only ever appended: a user
 * compiled with this header needs table_version == FASTNORM_API_TABLE_VERSION
 * and table_size >= sizeof(fastnorm_api_table). Each member is the entry
 * point of the same name with the fastnorm_ prefix. */
#define FASTNORM_API_TABLE_VERSION 1

typedef struct fastnorm_api_table {
    int table_version;  /* FASTNORM_API_TABLE_VERSION of the kernels' build */
    int table_size;     /* sizeof(fastnorm_api_table) there */
    int version_number; /* FASTNORM_VERSION_NUMBER there */
    unsigned (*cpu_features)(void);
    int (*isa_available)(int isa);
    int (*set_isa)(int isa);
    int (*get_isa)(void);
    int (*has_openmp)(void); /* fastnorm_has_threads */
    int (*max_threads)(void);
    int (*num_procs)(void);
    int (*serial_after_fork)(void);
    int (*layer_norm_f32)(int64_t, int64_t, const float *, int64_t, float *, int64_t,
                          const float *, const float *, double, float *, float *, int);
    int (*layer_norm_f64)(int64_t, int64_t, const double *, int64_t, double *, int64_t,
                          const double *, const double *, double, double *, double *, int);
    int (*layer_norm_backward_f32)(int64_t, int64_t, const float *, int64_t, const float *,
                                   int64_t, const float *, const float *, const float *,
                                   float *, int64_t, float *, float *, int);
    int (*layer_norm_backward_f64)(int64_t, int64_t, const double *, int64_t, const double *,
                                   int64_t, const double *, const double *, const double *,
                                   double *, int64_t, double *, double *, int);
    int (*rms_norm_f32)(int64_t, int64_t, const float *, int64_t, float *, int64_t,
                        const float *, double, float *, int);
    int (*rms_norm_f64)(int64_t, int64_t, const double *, int64_t, double *, int64_t,
                        const double *, double, double *, int);
    int (*rms_norm_backward_f32)(int64_t, int64_t, const float *, int64_t, const float *,
                                 int64_t, const float *, const float *, float *, int64_t,
                                 float *, int);
    int (*rms_norm_backward_f64)(int64_t, int64_t, const double *, int64_t, const double *,
                                 int64_t, const double *, const double *, double *, int64_t,
                                 double *, int);
    int (*add_layer_norm_f32)(int64_t, int64_t, const float *, int64_t, const float *,
                              int64_t, const float *, float *, int64_t, float *, int64_t,
                              const float *, const float *, double, float *, float *, int);
    int (*add_layer_norm_f64)(int64_t, int64_t, const double *, int64_t, const double *,
                              int64_t, const double *, double *, int64_t, double *, int64_t,
                              const double *, const double *, double, double *, double *,
                              int);
    int (*add_rms_norm_f32)(int64_t, int64_t, const float *, int64_t, const float *, int64_t,
                            const float *, float *, int64_t, float *, int64_t, const float *,
                            double, float *, int);
    int (*add_rms_norm_f64)(int64_t, int64_t, const double *, int64_t, const double *,
                            int64_t, const double *, double *, int64_t, double *, int64_t,
                            const double *, double, double *, int);
    int (*layer_norm_per_sample_f32)(int64_t, int64_t, int64_t, const float *, int64_t,
                                     float *, int64_t, const float *, const float *, int64_t,
                                     double, float *, float *, int);
    int (*layer_norm_per_sample_f64)(int64_t, int64_t, int64_t, const double *, int64_t,
                                     double *, int64_t, const double *, const double *,
                                     int64_t, double, double *, double *, int);
    int (*layer_norm_per_sample_backward_f32)(int64_t, int64_t, int64_t, const float *,
                                              int64_t, const float *, int64_t, const float *,
                                              const float *, const float *, int64_t, float *,
                                              int64_t, float *, float *, int);
    int (*layer_norm_per_sample_backward_f64)(int64_t, int64_t, int64_t, const double *,
                                              int64_t, const double *, int64_t,
                                              const double *, const double *, const double *,
                                              int64_t, double *, int64_t, double *, double *,
                                              int);
    int (*group_norm_f32)(int64_t, int64_t, int64_t, int64_t, int64_t, const float *, float *,
                          const float *, const float *, double, float *, float *, float *,
                          int);
    int (*group_norm_f64)(int64_t, int64_t, int64_t, int64_t, int64_t, const double *,
                          double *, const double *, const double *, double, double *,
                          double *, double *, int);
    int (*group_norm_backward_f32)(int64_t, int64_t, int64_t, int64_t, int64_t, const float *,
                                   const float *, const float *, const float *, const float *,
                                   float *, float *, float *, int);
    int (*group_norm_backward_f64)(int64_t, int64_t, int64_t, int64_t, int64_t,
                                   const double *, const double *, const double *,
                                   const double *, const double *, double *, double *,
                                   double *, int);
    int (*channel_moments_f32)(int64_t, int64_t, int64_t, int64_t, const float *, double,
                               double *, double *, int);
    int (*channel_moments_f64)(int64_t, int64_t, int64_t, int64_t, const double *, double,
                               double *, double *, int);
    int (*channel_normalize_f32)(int64_t, int64_t, int64_t, int64_t, const float *, float *,
                                 const double *, const double *, const float *, const float *,
                                 int, int);
    int (*channel_normalize_f64)(int64_t, int64_t, int64_t, int64_t, const double *,
                                 double *, const double *, const double *, const double *,
                                 const double *, int, int);
    int (*channel_sums_f32)(int64_t, int64_t, int64_t, int64_t, const float *, const float *,
                            const double *, double *, double *, int);
    int (*channel_sums_f64)(int64_t, int64_t, int64_t, int64_t, const double *,
                            const double *, const double *, double *, double *, int);
    int (*channel_affine_backward_f32)(int64_t, int64_t, int64_t, int64_t, const float *,
                                       const float *, float *, const double *, const double *,
                                       const double *, const double *, const double *, int,
                                       int);
    int (*channel_affine_backward_f64)(int64_t, int64_t, int64_t, int64_t, const double *,
                                       const double *, double *, const double *,
                                       const double *, const double *, const double *,
                                       const double *, int, int);
    /* LayerNorm / RMSNorm over a non-last axis */
    int (*layer_norm_axis_f32)(int64_t, int64_t, int64_t, const float *, int64_t, int64_t,
                               float *, int64_t, int64_t, const float *, const float *, double,
                               float *, float *, int);
    int (*layer_norm_axis_f64)(int64_t, int64_t, int64_t, const double *, int64_t, int64_t,
                               double *, int64_t, int64_t, const double *, const double *,
                               double, double *, double *, int);
    int (*rms_norm_axis_f32)(int64_t, int64_t, int64_t, const float *, int64_t, int64_t,
                             float *, int64_t, int64_t, const float *, double, float *, int);
    int (*rms_norm_axis_f64)(int64_t, int64_t, int64_t, const double *, int64_t, int64_t,
                             double *, int64_t, int64_t, const double *, double, double *, int);
    int (*layer_norm_axis_backward_f32)(int64_t, int64_t, int64_t, const float *, int64_t,
                                        int64_t, const float *, int64_t, int64_t, const float *,
                                        const float *, const float *, float *, int64_t, int64_t,
                                        float *, float *, int);
    int (*layer_norm_axis_backward_f64)(int64_t, int64_t, int64_t, const double *, int64_t,
                                        int64_t, const double *, int64_t, int64_t,
                                        const double *, const double *, const double *,
                                        double *, int64_t, int64_t, double *, double *, int);
    int (*rms_norm_axis_backward_f32)(int64_t, int64_t, int64_t, const float *, int64_t,
                                      int64_t, const float *, int64_t, int64_t, const float *,
                                      const float *, float *, int64_t, int64_t, float *, int);
    int (*rms_norm_axis_backward_f64)(int64_t, int64_t, int64_t, const double *, int64_t,
                                      int64_t, const double *, int64_t, int64_t, const double *,
                                      const double *, double *, int64_t, int64_t, double *,
                                      int);
    int (*weight_norm_f32)(int64_t, int64_t, const float *, const double *, double, float *,
                           int);
    int (*weight_norm_f64)(int64_t, int64_t, const double *, const double *, double, double *,
                           int);
    int (*weight_norm_backward_f32)(int64_t, int64_t, const float *, const float *,
                                    const double *, double, float *, double *, int);
    int (*weight_norm_backward_f64)(int64_t, int64_t, const double *, const double *,
                                    const double *, double, double *, double *, int);
    int (*channel_sums_scale_f32)(int64_t, int64_t, int64_t, int64_t, const float *,
                                  const float *, const double *, double *, double *, float *,
                                  const double *, int);
    int (*channel_sums_scale_f64)(int64_t, int64_t, int64_t, int64_t, const double *,
                                  const double *, const double *, double *, double *,
                                  double *, const double *, int);
    /* 16-bit data (float16, bfloat16) */
    int (*layer_norm_f16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                          int64_t ldy, const float *weight, const float *bias, double eps,
                          float *mean, float *rstd, int num_threads);
    int (*layer_norm_backward_f16)(int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy,
                                   const uint16_t *x, int64_t ldx, const float *mean,
                                   const float *rstd, const float *weight, uint16_t *dx,
                                   int64_t lddx, float *dweight, float *dbias, int num_threads);
    int (*rms_norm_f16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                        int64_t ldy, const float *weight, double eps, float *rstd,
                        int num_threads);
    int (*rms_norm_backward_f16)(int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy,
                                 const uint16_t *x, int64_t ldx, const float *rstd,
                                 const float *weight, uint16_t *dx, int64_t lddx,
                                 float *dweight, int num_threads);
    int (*add_layer_norm_f16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                              const uint16_t *residual, int64_t ldr, const float *residual_bias,
                              uint16_t *sum_out, int64_t lds, uint16_t *y, int64_t ldy,
                              const float *weight, const float *bias, double eps, float *mean,
                              float *rstd, int num_threads);
    int (*add_rms_norm_f16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                            const uint16_t *residual, int64_t ldr, const float *residual_bias,
                            uint16_t *sum_out, int64_t lds, uint16_t *y, int64_t ldy,
                            const float *weight, double eps, float *rstd, int num_threads);
    int (*layer_norm_per_sample_f16)(int64_t samples, int64_t rows_per_sample, int64_t n,
                                     const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy,
                                     const float *weight, const float *bias, int64_t ldp,
                                     double eps, float *mean, float *rstd, int num_threads);
    int (*layer_norm_per_sample_backward_f16)(int64_t samples, int64_t rows_per_sample,
                                              int64_t n, const uint16_t *dy, int64_t lddy,
                                              const uint16_t *x, int64_t ldx, const float *mean,
                                              const float *rstd, const float *weight,
                                              int64_t ldp, uint16_t *dx, int64_t lddx,
                                              float *dweight, float *dbias, int num_threads);
    int (*group_norm_f16)(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                          const uint16_t *x, uint16_t *y, const float *weight,
                          const float *bias, double eps, float *mean, float *rstd, float *var,
                          int num_threads);
    int (*group_norm_backward_f16)(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                                   const uint16_t *dy, const uint16_t *x, const float *mean,
                                   const float *rstd, const float *weight, uint16_t *dx,
                                   float *dweight, float *dbias, int num_threads);
    int (*channel_moments_f16)(int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x,
                               double eps, double *mean, double *var, int num_threads);
    int (*channel_normalize_f16)(int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x,
                                 uint16_t *y, const double *mean, const double *rstd,
                                 const float *weight, const float *bias, int accumulate,
                                 int num_threads);
    int (*channel_sums_f16)(int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy,
                            const uint16_t *x, const double *mu, double *sum_dy,
                            double *sum_dyx, int num_threads);
    int (*channel_affine_backward_f16)(int64_t S, int64_t R, int64_t C, int64_t L,
                                       const uint16_t *dy, const uint16_t *x, uint16_t *dx,
                                       const double *mu, const double *r, const double *a,
                                       const double *b, const double *k, int accumulate,
                                       int num_threads);
    int (*layer_norm_axis_f16)(int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs,
                               int64_t ldxc, uint16_t *y, int64_t ldys, int64_t ldyc,
                               const float *weight, const float *bias, double eps, float *mean,
                               float *rstd, int num_threads);
    int (*rms_norm_axis_f16)(int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs,
                             int64_t ldxc, uint16_t *y, int64_t ldys, int64_t ldyc,
                             const float *weight, double eps, float *rstd, int num_threads);
    int (*layer_norm_axis_backward_f16)(int64_t S, int64_t C, int64_t L, const uint16_t *dy,
                                        int64_t lddys, int64_t lddyc, const uint16_t *x,
                                        int64_t ldxs, int64_t ldxc, const float *mean,
                                        const float *rstd, const float *weight, uint16_t *dx,
                                        int64_t lddxs, int64_t lddxc, float *dweight,
                                        float *dbias, int num_threads);
    int (*rms_norm_axis_backward_f16)(int64_t S, int64_t C, int64_t L, const uint16_t *dy,
                                      int64_t lddys, int64_t lddyc, const uint16_t *x,
                                      int64_t ldxs, int64_t ldxc, const float *rstd,
                                      const float *weight, uint16_t *dx, int64_t lddxs,
                                      int64_t lddxc, float *dweight, int num_threads);
    int (*channel_sums_scale_f16)(int64_t S, int64_t R, int64_t C, int64_t L,
                                  const uint16_t *dy, const uint16_t *x, const double *mu,
                                  double *sum_dy, double *sum_dyx, uint16_t *dx,
                                  const double *a, int num_threads);
    int (*weight_norm_f16)(int64_t C, int64_t L, const uint16_t *v, const double *g, double eps,
                           uint16_t *w, int num_threads);
    int (*weight_norm_backward_f16)(int64_t C, int64_t L, const uint16_t *dw, const uint16_t *v,
                                    const double *g, double eps, uint16_t *dv, double *dg,
                                    int num_threads);
    int (*layer_norm_bf16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                           int64_t ldy, const float *weight, const float *bias, double eps,
                           float *mean, float *rstd, int num_threads);
    int (*layer_norm_backward_bf16)(int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy,
                                    const uint16_t *x, int64_t ldx, const float *mean,
                                    const float *rstd, const float *weight, uint16_t *dx,
                                    int64_t lddx, float *dweight, float *dbias,
                                    int num_threads);
    int (*rms_norm_bf16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx, uint16_t *y,
                         int64_t ldy, const float *weight, double eps, float *rstd,
                         int num_threads);
    int (*rms_norm_backward_bf16)(int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy,
                                  const uint16_t *x, int64_t ldx, const float *rstd,
                                  const float *weight, uint16_t *dx, int64_t lddx,
                                  float *dweight, int num_threads);
    int (*add_layer_norm_bf16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                               const uint16_t *residual, int64_t ldr,
                               const float *residual_bias, uint16_t *sum_out, int64_t lds,
                               uint16_t *y, int64_t ldy, const float *weight, const float *bias,
                               double eps, float *mean, float *rstd, int num_threads);
    int (*add_rms_norm_bf16)(int64_t rows, int64_t n, const uint16_t *x, int64_t ldx,
                             const uint16_t *residual, int64_t ldr, const float *residual_bias,
                             uint16_t *sum_out, int64_t lds, uint16_t *y, int64_t ldy,
                             const float *weight, double eps, float *rstd, int num_threads);
    int (*layer_norm_per_sample_bf16)(int64_t samples, int64_t rows_per_sample, int64_t n,
                                      const uint16_t *x, int64_t ldx, uint16_t *y, int64_t ldy,
                                      const float *weight, const float *bias, int64_t ldp,
                                      double eps, float *mean, float *rstd, int num_threads);
    int (*layer_norm_per_sample_backward_bf16)(int64_t samples, int64_t rows_per_sample,
                                               int64_t n, const uint16_t *dy, int64_t lddy,
                                               const uint16_t *x, int64_t ldx,
                                               const float *mean, const float *rstd,
                                               const float *weight, int64_t ldp, uint16_t *dx,
                                               int64_t lddx, float *dweight, float *dbias,
                                               int num_threads);
    int (*group_norm_bf16)(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                           const uint16_t *x, uint16_t *y, const float *weight,
                           const float *bias, double eps, float *mean, float *rstd, float *var,
                           int num_threads);
    int (*group_norm_backward_bf16)(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                                    const uint16_t *dy, const uint16_t *x, const float *mean,
                                    const float *rstd, const float *weight, uint16_t *dx,
                                    float *dweight, float *dbias, int num_threads);
    int (*channel_moments_bf16)(int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x,
                                double eps, double *mean, double *var, int num_threads);
    int (*channel_normalize_bf16)(int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *x,
                                  uint16_t *y, const double *mean, const double *rstd,
                                  const float *weight, const float *bias, int accumulate,
                                  int num_threads);
    int (*channel_sums_bf16)(int64_t S, int64_t R, int64_t C, int64_t L, const uint16_t *dy,
                             const uint16_t *x, const double *mu, double *sum_dy,
                             double *sum_dyx, int num_threads);
    int (*channel_affine_backward_bf16)(int64_t S, int64_t R, int64_t C, int64_t L,
                                        const uint16_t *dy, const uint16_t *x, uint16_t *dx,
                                        const double *mu, const double *r, const double *a,
                                        const double *b, const double *k, int accumulate,
                                        int num_threads);
    int (*layer_norm_axis_bf16)(int64_t S, int64_t C, int64_t L, const uint16_t *x,
                                int64_t ldxs, int64_t ldxc, uint16_t *y, int64_t ldys,
                                int64_t ldyc, const float *weight, const float *bias,
                                double eps, float *mean, float *rstd, int num_threads);
    int (*rms_norm_axis_bf16)(int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs,
                              int64_t ldxc, uint16_t *y, int64_t ldys, int64_t ldyc,
                              const float *weight, double eps, float *rstd, int num_threads);
    int (*layer_norm_axis_backward_bf16)(int64_t S, int64_t C, int64_t L, const uint16_t *dy,
                                         int64_t lddys, int64_t lddyc, const uint16_t *x,
                                         int64_t ldxs, int64_t ldxc, const float *mean,
                                         const float *rstd, const float *weight, uint16_t *dx,
                                         int64_t lddxs, int64_t lddxc, float *dweight,
                                         float *dbias, int num_threads);
    int (*rms_norm_axis_backward_bf16)(int64_t S, int64_t C, int64_t L, const uint16_t *dy,
                                       int64_t lddys, int64_t lddyc, const uint16_t *x,
                                       int64_t ldxs, int64_t ldxc, const float *rstd,
                                       const float *weight, uint16_t *dx, int64_t lddxs,
                                       int64_t lddxc, float *dweight, int num_threads);
    int (*channel_sums_scale_bf16)(int64_t S, int64_t R, int64_t C, int64_t L,
                                   const uint16_t *dy, const uint16_t *x, const double *mu,
                                   double *sum_dy, double *sum_dyx, uint16_t *dx,
                                   const double *a, int num_threads);
    int (*weight_norm_bf16)(int64_t C, int64_t L, const uint16_t *v, const double *g,
                            double eps, uint16_t *w, int num_threads);
    int (*weight_norm_backward_bf16)(int64_t C, int64_t L, const uint16_t *dw,
                                     const uint16_t *v, const double *g, double eps,
                                     uint16_t *dv, double *dg, int num_threads);
    /* appended: the fused residual add over a non-last axis */
    int (*add_layer_norm_axis_f32)(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
        const float *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        float *sum_out, int64_t ldss, int64_t ldsc, float *y, int64_t ldys, int64_t ldyc,
        const float *weight, const float *bias, double eps, float *mean, float *rstd,
        int num_threads);
    int (*add_rms_norm_axis_f32)(
        int64_t S, int64_t C, int64_t L, const float *x, int64_t ldxs, int64_t ldxc,
        const float *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        float *sum_out, int64_t ldss, int64_t ldsc, float *y, int64_t ldys, int64_t ldyc,
        const float *weight, double eps, float *rstd, int num_threads);
    int (*add_layer_norm_axis_f64)(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        const double *residual, int64_t ldrs, int64_t ldrc, const double *residual_bias,
        double *sum_out, int64_t ldss, int64_t ldsc, double *y, int64_t ldys, int64_t ldyc,
        const double *weight, const double *bias, double eps, double *mean, double *rstd,
        int num_threads);
    int (*add_rms_norm_axis_f64)(
        int64_t S, int64_t C, int64_t L, const double *x, int64_t ldxs, int64_t ldxc,
        const double *residual, int64_t ldrs, int64_t ldrc, const double *residual_bias,
        double *sum_out, int64_t ldss, int64_t ldsc, double *y, int64_t ldys, int64_t ldyc,
        const double *weight, double eps, double *rstd, int num_threads);
    int (*add_layer_norm_axis_f16)(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, const float *bias, double eps, float *mean,
        float *rstd, int num_threads);
    int (*add_rms_norm_axis_f16)(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, double eps, float *rstd, int num_threads);
    int (*add_layer_norm_axis_bf16)(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, const float *bias, double eps, float *mean,
        float *rstd, int num_threads);
    int (*add_rms_norm_axis_bf16)(
        int64_t S, int64_t C, int64_t L, const uint16_t *x, int64_t ldxs, int64_t ldxc,
        const uint16_t *residual, int64_t ldrs, int64_t ldrc, const float *residual_bias,
        uint16_t *sum_out, int64_t ldss, int64_t ldsc, uint16_t *y, int64_t ldys,
        int64_t ldyc, const float *weight, double eps, float *rstd, int num_threads);
    int (*bf16_convert_in_use)(void);
    /* appended: the fused residual add's backward with ds */
    int (*add_layer_norm_backward_f32)(
        int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *s, int64_t lds,
        const float *ds, int64_t ldds, const float *mean, const float *rstd,
        const float *weight, float *dsum, int64_t lddsum, float *dweight, float *dbias,
        int num_threads);
    int (*add_rms_norm_backward_f32)(
        int64_t rows, int64_t n, const float *dy, int64_t lddy, const float *s, int64_t lds,
        const float *ds, int64_t ldds, const float *rstd, const float *weight, float *dsum,
        int64_t lddsum, float *dweight, int num_threads);
    int (*add_layer_norm_backward_f64)(
        int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *s,
        int64_t lds, const double *ds, int64_t ldds, const double *mean, const double *rstd,
        const double *weight, double *dsum, int64_t lddsum, double *dweight, double *dbias,
        int num_threads);
    int (*add_rms_norm_backward_f64)(
        int64_t rows, int64_t n, const double *dy, int64_t lddy, const double *s,
        int64_t lds, const double *ds, int64_t ldds, const double *rstd,
        const double *weight, double *dsum, int64_t lddsum, double *dweight, int num_threads);
    int (*add_layer_norm_backward_f16)(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *mean, const float *rstd,
        const float *weight, uint16_t *dsum, int64_t lddsum, float *dweight, float *dbias,
        int num_threads);
    int (*add_rms_norm_backward_f16)(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *rstd,
        const float *weight, uint16_t *dsum, int64_t lddsum, float *dweight, int num_threads);
    int (*add_layer_norm_backward_bf16)(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *mean, const float *rstd,
        const float *weight, uint16_t *dsum, int64_t lddsum, float *dweight, float *dbias,
        int num_threads);
    int (*add_rms_norm_backward_bf16)(
        int64_t rows, int64_t n, const uint16_t *dy, int64_t lddy, const uint16_t *s,
        int64_t lds, const uint16_t *ds, int64_t ldds, const float *rstd,
        const float *weight, uint16_t *dsum, int64_t lddsum, float *dweight, int num_threads);
    int (*avx512_in_use)(void);
} fastnorm_api_table;

/* The table of this build's entry points (static storage, never NULL). */
FASTNORM_API const fastnorm_api_table *fastnorm_get_api_table(void);

#ifdef __cplusplus
}
#endif

#endif /* FASTNORM_H */
