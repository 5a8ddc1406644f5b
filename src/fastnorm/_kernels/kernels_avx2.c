/*
 * kernels_avx2.c -- the AVX2 + FMA instantiation of the row primitives.
 *
 * This is the only file compiled with AVX2/FMA flags. Nothing in it runs
 * unless dispatch.c has seen AVX2, FMA and the OS's support for the YMM
 * state, so the same binary still runs on older CPUs.
 */
#include <immintrin.h>

#include "prims.h"
#include "simd_common.h"

/* Lane sums in a fixed order: (lo + hi) halves, then pairs. */
static inline float fn_hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline double fn_hsum_pd(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    s = _mm_add_sd(s, _mm_unpackhi_pd(s, s));
    return _mm_cvtsd_f64(s);
}

#define SLOAD(p) ((A)*(p))
#define SSTORE(p, a) (*(p) = (T)(a))
#define PREFETCH(p) FN_PREFETCH(p)
#define PREFETCH_W(p) FN_PREFETCH_W(p)

/* float32 data, float32 accumulation, 8 lanes */
#define T float
#define A float
#define V __m256
#define VN 8
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VLOADA(p) _mm256_loadu_ps(p)
#define VSTOREA(p, v) _mm256_storeu_ps(p, v)
#define VSET1(a) _mm256_set1_ps(a)
#define VZERO() _mm256_setzero_ps()
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VFNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define VHSUM(v) fn_hsum_ps(v)
#define PRIMS_TYPE fn_prims_f32
#define NAME(f) fn_##f##_f32_avx2
#include "prims_impl.h"
#undef T
#undef A
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
#undef VHSUM
#undef PRIMS_TYPE
#undef NAME

/* float64 data, float64 accumulation, 4 lanes */
#define T double
#define A double
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
#define VHSUM(v) fn_hsum_pd(v)
#define PRIMS_TYPE fn_prims_f64
#define NAME(f) fn_##f##_f64_avx2
#include "prims_impl.h"

const fn_prims fn_prims_avx2 = {&fn_table_f32_avx2, &fn_table_f64_avx2};
