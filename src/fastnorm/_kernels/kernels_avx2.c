/*
 * kernels_avx2.c -- the AVX2 + FMA instantiation of the row primitives.
 *
 * This is the only file compiled with AVX2/FMA/F16C flags. Nothing in it
 * runs unless dispatch.c has seen AVX2, FMA, F16C and the OS's support for
 * the YMM state, so the same binary still runs on older CPUs.
 */
#include <immintrin.h>
#include <string.h>

#include "fp16.h"
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

/* 16-bit data: 8 elements widened to 8 floats, and rounded back (to
 * nearest, ties to even; a NaN stays a quiet NaN, as fp16.h). */
static inline __m256 fn_load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline void fn_store_f16(uint16_t *p, __m256 v) {
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

static inline __m256 fn_load_bf16(const uint16_t *p) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* Eight floats rounded to bfloat16, each in the low 16 bits of its lane: add
 * half an ulp less one, plus the lowest kept bit (ties to even), and drop the
 * low half; a NaN is quieted instead. nonan = 1: the caller guarantees that no
 * lane is a NaN, and the NaN blend is left out. */
static FN_INLINE __m256i fn_round_bf16(__m256 v, const int nonan) {
    const __m256i u = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
    if (!nonan) {
        const __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x400000));
        const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        r = _mm256_blendv_epi8(r, quiet, nan);
    }
    return _mm256_srli_epi32(r, 16);
}

static inline void fn_store_bf16(uint16_t *p, __m256 v) {
    const __m256i r = fn_round_bf16(v, 0);
    /* the eight 16-bit results, in order (each fits: packus does not saturate) */
    _mm_storeu_si128((__m128i *)p, _mm_packus_epi32(_mm256_castsi256_si128(r),
                                                    _mm256_extracti128_si256(r, 1)));
}

/* Sixteen elements at once: v0 to p[0..7], v1 to p[8..15]. The same bits as two
 * fn_store_bf16, with one 256-bit pack, reorder and store instead of two
 * extracts, packs and 128-bit stores. */
static FN_INLINE void fn_store2_bf16(uint16_t *p, __m256 v0, __m256 v1, const int nonan) {
    /* packus interleaves the two vectors' 128-bit halves; vpermq restores the order */
    const __m256i h = _mm256_packus_epi32(fn_round_bf16(v0, nonan), fn_round_bf16(v1, nonan));
    _mm256_storeu_si256((__m256i *)p, _mm256_permute4x64_epi64(h, 0xd8));
}

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
#define VHSUM(v) fn_hsum_pd(v)
#define PRIMS_TYPE fn_prims_f64
#define NAME(f) fn_##f##_f64_avx2
#include "prims_impl.h"
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
#undef VHSUM
#undef PRIMS_TYPE
#undef NAME

/* The types with float32 accumulation and parameters: 8 lanes of float. Each
 * of float32, float16 and bfloat16 then gives its loads and stores. */
#define A float
#define W float
#define V __m256
#define VN 8
#define VLOADA(p) _mm256_loadu_ps(p)
#define VSTOREA(p, v) _mm256_storeu_ps(p, v)
#define WLOAD(p) _mm256_loadu_ps(p)
#define SWLOAD(p) (*(p))
#define VSET1(a) _mm256_set1_ps(a)
#define VZERO() _mm256_setzero_ps()
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VFNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define VHSUM(v) fn_hsum_ps(v)

/* float32 data */
#define T float
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define SLOAD(p) (*(p))
#define SSTORE(p, a) (*(p) = (a))
#define PRIMS_TYPE fn_prims_f32
#define NAME(f) fn_##f##_f32_avx2
#include "prims_impl.h"
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
#define SLOAD(p) fn_f16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_f16(a))
#define PRIMS_TYPE fn_prims_f16
#define NAME(f) fn_##f##_f16_avx2
#include "prims_impl.h"
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
#define SLOAD(p) fn_bf16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_bf16(a))
#define PRIMS_TYPE fn_prims_bf16
#define NAME(f) fn_##f##_bf16_avx2
#include "prims_impl.h"
#undef VSTORE
#undef VSTORE2
#undef VSTORE2_NONAN
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

#define FN_STREAM_AVX2 fn_stream_copy_avx2, fn_stream_fence_avx2

const fn_prims fn_prims_avx2 = {&fn_table_f32_avx2, &fn_table_f64_avx2, &fn_table_f16_avx2,
                                &fn_table_bf16_avx2, FN_STREAM_AVX2};
#undef T
#undef VLOAD
#undef SLOAD
#undef SSTORE
#undef PRIMS_TYPE

#ifdef FASTNORM_HAVE_BF16_CVT
/* The bfloat16 primitives once more, rounding with AVX-512 BF16's VCVTNEPS2BF16
 * (round to nearest even, NaN quieted: the integer rounding's bits). The
 * instruction flushes float32 subnormals to zero, so a vector holding one
 * takes the integer rounding instead (VFPCLASSPS finds it). Used only where
 * dispatch.c has seen the CPU and OS support; compiled for AVX-512 here only. */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16")
#endif

#define FN_FPCLASS_SUBNORMAL 0x20

static FN_INLINE void fn_store_bf16_cvt(uint16_t *p, __m256 v) {
    if (_mm256_fpclass_ps_mask(v, FN_FPCLASS_SUBNORMAL)) {
        fn_store_bf16(p, v);
        return;
    }
    _mm_storeu_si128((__m128i *)p, (__m128i)_mm256_cvtneps_pbh(v));
}

static FN_INLINE void fn_store2_bf16_cvt(uint16_t *p, __m256 v0, __m256 v1) {
    const __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(v0), v1, 1);
    if (_mm512_fpclass_ps_mask(v, FN_FPCLASS_SUBNORMAL)) {
        fn_store2_bf16(p, v0, v1, 0);
        return;
    }
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(v));
}

#define T uint16_t
#define VLOAD(p) fn_load_bf16(p)
#define SLOAD(p) fn_bf16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_bf16(a))
#define PRIMS_TYPE fn_prims_bf16
#define VSTORE(p, v) fn_store_bf16_cvt(p, v)
#define VSTORE2(p, v0, v1) fn_store2_bf16_cvt(p, v0, v1)
#define NAME(f) fn_##f##_bf16_avx2cvt
#include "prims_impl.h"
#undef T
#undef VLOAD
#undef VSTORE
#undef VSTORE2
#undef SLOAD
#undef SSTORE
#undef PRIMS_TYPE
#undef NAME

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

const fn_prims fn_prims_avx2_bf16cvt = {&fn_table_f32_avx2, &fn_table_f64_avx2,
                                        &fn_table_f16_avx2, &fn_table_bf16_avx2cvt,
                                        FN_STREAM_AVX2};
#endif /* FASTNORM_HAVE_BF16_CVT */

#ifdef FASTNORM_HAVE_AVX512
/* The 16-bit primitives once more, each main loop's two vectors of 8 floats
 * held in one 512-bit vector (prims_impl.h's pair type P). Every lane gets the
 * same operations as in fn_prims_avx2, so the results are the same bits (but
 * for the sign and payload of a NaN, which also differ between the compiler's
 * versions of a scalar tail), and 16 elements are converted per instruction
 * instead of 8. float32 data stays on the 8-lane loops: with them in 512-bit
 * registers its backward measured up to 1.15x slower at rows of 768, its
 * forward 0-10% faster. Used only where dispatch.c has seen AVX-512 F, VL, DQ
 * and BW and the OS's support for the ZMM state; these functions alone are
 * compiled for AVX-512. */
#define P __m512
#define PLO(v) _mm512_castps512_ps256(v)
#define PHI(v) _mm512_extractf32x8_ps(v, 1)
#define PLOADA(p) _mm512_loadu_ps(p)
#define PSTOREA(p, v) _mm512_storeu_ps(p, v)
#define PWLOAD(p) _mm512_loadu_ps(p)
#define PSET1(a) _mm512_set1_ps(a)
#define PZERO() _mm512_setzero_ps()
#define PADD(a, b) _mm512_add_ps(a, b)
#define PSUB(a, b) _mm512_sub_ps(a, b)
#define PMUL(a, b) _mm512_mul_ps(a, b)
#define PFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define PFNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw")
#endif

/* Sixteen 16-bit elements to 16 floats and back: the conversions of
 * fn_load_f16 / fn_store_f16 / fn_load_bf16 / fn_store2_bf16, 16 lanes wide. */
static FN_INLINE __m512 fn_load16_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static FN_INLINE void fn_store16_f16(uint16_t *p, __m512 v) {
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

static FN_INLINE __m512 fn_load16_bf16(const uint16_t *p) {
    const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}

static FN_INLINE void fn_store16_bf16(uint16_t *p, __m512 v, const int nonan) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    if (!nonan) {
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
    }
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
}

#define T uint16_t
#define VLOAD(p) fn_load_f16(p)
#define VSTORE(p, v) fn_store_f16(p, v)
#define SLOAD(p) fn_f16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_f16(a))
#define PLOAD(p) fn_load16_f16(p)
#define PSTORE(p, v) fn_store16_f16(p, v)
#define PRIMS_TYPE fn_prims_f16
#define NAME(f) fn_##f##_f16_avx512
#include "prims_impl.h"
#undef VLOAD
#undef VSTORE
#undef SLOAD
#undef SSTORE
#undef PLOAD
#undef PSTORE
#undef PRIMS_TYPE
#undef NAME

#define VLOAD(p) fn_load_bf16(p)
#define VSTORE(p, v) fn_store_bf16(p, v)
#define SLOAD(p) fn_bf16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_bf16(a))
#define PLOAD(p) fn_load16_bf16(p)
#define PSTORE(p, v) fn_store16_bf16(p, v, 0)
#define PSTORE_NONAN(p, v) fn_store16_bf16(p, v, 1)
#define PRIMS_TYPE fn_prims_bf16
#define NAME(f) fn_##f##_bf16_avx512
#include "prims_impl.h"
#undef VSTORE
#undef PLOAD
#undef PSTORE
#undef PSTORE_NONAN
#undef NAME

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

const fn_prims fn_prims_avx512 = {&fn_table_f32_avx2, &fn_table_f64_avx2,
                                  &fn_table_f16_avx512, &fn_table_bf16_avx512, FN_STREAM_AVX2};
#undef T
#undef VLOAD
#undef SLOAD
#undef SSTORE
#undef PRIMS_TYPE
#endif /* FASTNORM_HAVE_AVX512 */

#if defined(FASTNORM_HAVE_AVX512) && defined(FASTNORM_HAVE_BF16_CVT)
/* fn_prims_avx512's bfloat16 primitives rounding with VCVTNEPS2BF16, as above */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16")
#endif

static FN_INLINE void fn_store16_bf16_cvt(uint16_t *p, __m512 v) {
    if (_mm512_fpclass_ps_mask(v, FN_FPCLASS_SUBNORMAL)) {
        fn_store16_bf16(p, v, 0);
        return;
    }
    _mm256_storeu_si256((__m256i *)p, (__m256i)_mm512_cvtneps_pbh(v));
}

#define T uint16_t
#define VLOAD(p) fn_load_bf16(p)
#define VSTORE(p, v) fn_store_bf16_cvt(p, v)
#define SLOAD(p) fn_bf16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_bf16(a))
#define PLOAD(p) fn_load16_bf16(p)
#define PSTORE(p, v) fn_store16_bf16_cvt(p, v)
#define PRIMS_TYPE fn_prims_bf16
#define NAME(f) fn_##f##_bf16_avx512cvt
#include "prims_impl.h"
#undef T
#undef VLOAD
#undef VSTORE
#undef SLOAD
#undef SSTORE
#undef PLOAD
#undef PSTORE
#undef PRIMS_TYPE
#undef NAME

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

const fn_prims fn_prims_avx512_bf16cvt = {&fn_table_f32_avx2, &fn_table_f64_avx2,
                                          &fn_table_f16_avx512, &fn_table_bf16_avx512cvt,
                                          FN_STREAM_AVX2};
#endif

#ifdef FASTNORM_HAVE_AVX512
#undef P
#undef PLO
#undef PHI
#undef PLOADA
#undef PSTOREA
#undef PWLOAD
#undef PSET1
#undef PZERO
#undef PADD
#undef PSUB
#undef PMUL
#undef PFMA
#undef PFNMA
#endif
