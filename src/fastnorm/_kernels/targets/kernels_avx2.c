/*
 * kernels_avx2.c -- the avx2 target: the AVX2 + FMA instantiation of the row
 * primitives, every data type.
 *
 * Compiled with -mavx2 -mfma -mf16c (setup.py), and nothing else is in this
 * file: nothing in it runs unless dispatch.c has seen AVX2, FMA, F16C and the
 * OS's support for the YMM state, so the same binary still runs on older
 * CPUs. The avx512 target takes its float32 and float64 tables from here.
 */
#include <immintrin.h>
#include <string.h>

#include "fp16.h"
#include "prims.h"
#include "simd_avx2.h"
#include "simd_common.h"

#define PREFETCH(p) FN_PREFETCH(p)
#define PREFETCH_W(p) FN_PREFETCH_W(p)

/* float64 data, float64 accumulation, 4 lanes */
#define T double
#define A double
#define W double
#define SLOAD(p) ((A)*(p))
#define SSTORE(p, a) (*(p) = (T)(a))
#define WLOAD(p) VLOAD(p)
#define SWLOAD(p) SLOAD(p)
#define V __m256d
#define VN 4
#define VLOAD(p) _mm256_loadu_pd(p)
#define VSTORE(p, v) _mm256_storeu_pd(p, v)
#define VLOADA(p) _mm256_loadu_pd(p)
#define VSTOREA(p, v) _mm256_storeu_pd(p, v)
#define VSET1(a) _mm256_set1_pd(a)
#define VZERO() _mm256_setzero_pd()
#define VADD(a, b) _mm256_add_pd(a, b)
#define VSUB(a, b) _mm256_sub_pd(a, b)
#define VMUL(a, b) _mm256_mul_pd(a, b)
#define VFMA(a, b, c) _mm256_fmadd_pd(a, b, c)
#define VFNMA(a, b, c) _mm256_fnmadd_pd(a, b, c)
#define SFMA(a, b, c) fn_fma_f64(a, b, c)
#define SFNMA(a, b, c) fn_fnma_f64(a, b, c)
#define VHSUM(v) fn_hsum_pd(v)
#define PRIMS_TYPE fn_prims_f64
#define NAME(f) fn_##f##_f64_avx2
#define PSTORE_NT(p, v) (_mm256_stream_pd(p, PLO(v)), _mm256_stream_pd((p) + VN, PHI(v)))
#include "prims_impl.h"
#undef PSTORE_NT
#undef T
#undef A
#undef W
#undef SLOAD
#undef SSTORE
#undef WLOAD
#undef SWLOAD
#undef V
#undef VN
#undef VLOAD
#undef VSTORE
#undef VLOADA
#undef VSTOREA
#undef VSET1
#undef VZERO
#undef VADD
#undef VSUB
#undef VMUL
#undef VFMA
#undef VFNMA
#undef SFMA
#undef SFNMA
#undef VHSUM
#undef PRIMS_TYPE
#undef NAME

/* The types with float32 accumulation and parameters: 8 lanes of float. Each
 * of float32, float16 and bfloat16 then gives its loads and stores. */
#include "simd_avx2_lanes.h"

/* float32 data */
#define T float
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define SLOAD(p) (*(p))
#define SSTORE(p, a) (*(p) = (a))
#define PRIMS_TYPE fn_prims_f32
#define NAME(f) fn_##f##_f32_avx2
#define PSTORE_NT(p, v) (_mm256_stream_ps(p, PLO(v)), _mm256_stream_ps((p) + VN, PHI(v)))
#include "prims_impl.h"
#undef PSTORE_NT
#undef NAME
#undef PRIMS_TYPE

/* 16-bit data (float16, bfloat16): the float32 arithmetic, with a conversion
 * at each load and store */
#undef T
#undef VLOAD
#undef VSTORE
#undef SLOAD
#undef SSTORE
#define T uint16_t

#define VLOAD(p) fn_load_f16(p)
#define VSTORE(p, v) fn_store_f16(p, v)
#define SLOAD(p) fn_load1_f16(p)
#define SSTORE(p, a) fn_store1_f16(p, a)
#define PSTORE_NT(p, v) fn_stream2_f16(p, PLO(v), PHI(v))
#define PRIMS_TYPE fn_prims_f16
#define NAME(f) fn_##f##_f16_avx2
#include "prims_impl.h"
#undef PSTORE_NT
#undef VLOAD
#undef VSTORE
#undef SLOAD
#undef SSTORE
#undef PRIMS_TYPE
#undef NAME

#define VLOAD(p) fn_load_bf16(p)
#define VSTORE(p, v) fn_store_bf16(p, v)
#define VSTORE2(p, v0, v1) fn_store2_bf16(p, v0, v1, 0)
#define VSTORE2_NONAN(p, v0, v1) fn_store2_bf16(p, v0, v1, 1)
#define PSTORE_NT(p, v) fn_stream2_bf16(p, PLO(v), PHI(v))
#define SLOAD(p) fn_bf16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_bf16(a))
#define PRIMS_TYPE fn_prims_bf16
#define NAME(f) fn_##f##_bf16_avx2
#include "prims_impl.h"
#undef VSTORE
#undef VSTORE2
#undef VSTORE2_NONAN
#undef PSTORE_NT
#undef NAME

/* Streaming stores of whole 32-byte blocks, from the first 32-byte boundary
 * of dst; the unaligned head and the tail with ordinary stores. */
static void fn_stream_copy_avx2(void *dst, const void *src, size_t n) {
    char *d = (char *)dst;
    const char *s = (const char *)src;
    size_t head = (size_t)(-(uintptr_t)d & 31);
    if (head > n) head = n;
    memcpy(d, s, head);
    d += head, s += head, n -= head;
    for (; n >= 64; n -= 64, d += 64, s += 64) {
        const __m256i a = _mm256_loadu_si256((const __m256i *)s);
        const __m256i b = _mm256_loadu_si256((const __m256i *)(s + 32));
        _mm256_stream_si256((__m256i *)d, a);
        _mm256_stream_si256((__m256i *)(d + 32), b);
    }
    memcpy(d, s, n);
}

static void fn_stream_fence_avx2(void) { _mm_sfence(); }

const fn_prims fn_prims_avx2 = {&fn_table_f32_avx2, &fn_table_f64_avx2, &fn_table_f16_avx2,
                                &fn_table_bf16_avx2, fn_stream_copy_avx2, fn_stream_fence_avx2};
