/*
 * fastnorm.h -- C entry points of the fastnorm normalization kernels.
 *
 * Plain C99, no Python. The same functions run under the Python package;
 * this header is installed with it (fastnorm.get_include() is its folder),
 * and docs/embedding.md says how to build a program or an extension on it.
 *
 * Types. Each normalizer comes as _f32 (float data) and _f64 (double data),
 * and as _f16 and _bf16 (16-bit data): fastnorm_ops.h declares the four.
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

/* The kernel targets (fastnorm_set_isa). Each is a set of kernel files
 * compiled with their own flags; the best one the build and the CPU have is
 * the default. */
#define FASTNORM_ISA_SCALAR 0 /* portable C, any CPU */
#define FASTNORM_ISA_AVX2 1   /* AVX2, FMA, F16C */
/* the AVX2 kernels with the float16 and bfloat16 loops in AVX-512 registers
 * (AVX-512 F, VL, DQ, BW): the avx2 target's bits */
#define FASTNORM_ISA_AVX512 2

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
/* 1 when the kernels of target `isa` (FASTNORM_ISA_*) are compiled in and the
 * CPU and OS can run them, else 0 (an unknown `isa` too). The scalar
 * kernels are always available. */
FASTNORM_API int fastnorm_isa_available(int isa);
/* Selects the kernel target of every later call and returns `isa`; returns
 * -1 and changes nothing when the target is unknown or not available
 * (fastnorm_isa_available). Until a target is selected the first call
 * picks the best available (avx512, avx2, scalar, in that order).
 * Process-wide: call it only while no normalizer runs. The avx512 and avx2
 * targets give the same bits (NaN sign and payload aside); those and the
 * scalar target agree to rounding, not bit for bit. */
FASTNORM_API int fastnorm_set_isa(int isa);
/* The target in use (selecting the best available if none was chosen yet). */
FASTNORM_API int fastnorm_get_isa(void);
/* The avx2 and avx512 targets round bfloat16 results with the AVX-512 BF16
 * conversion instruction where the build and the CPU have it (AVX-512 F, VL,
 * DQ, BW and BF16 with the OS's ZMM support), else with integer instructions;
 * both give the same bits (vectors holding a float32 subnormal, which the
 * instruction would flush, take the integer rounding). 1 when the target in
 * use rounds with the instruction. */
FASTNORM_API int fastnorm_bf16_convert_in_use(void);
/* 1 when the target in use is avx512 (FASTNORM_ISA_AVX512): the float16 and
 * bfloat16 loops that step over two vectors of 8 floats hold them in one
 * AVX-512 register, the same operations on every element, so the same
 * results as avx2, converting 16 elements per instruction. float16 rows of
 * more than 3072 elements take the avx2 loops, faster there; bfloat16 rows of
 * any length the AVX-512 ones. */
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

/* ---- the normalizers ------------------------------------------------------
 * Their entry points in each data type, and the table of every entry point,
 * are generated from one list of the operations (tools/api_spec.py, written
 * out by tools/gen_api.py) into the two headers below. */
#include "fastnorm_ops.h"
#include "fastnorm_table.h"

#ifdef __cplusplus
}
#endif

#endif /* FASTNORM_H */
