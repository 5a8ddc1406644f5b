/*
 * simd_avx2.h -- the AVX2 helpers of the kernel targets built on the AVX2
 * loops: lane sums and the 16-bit loads and stores of 8 lanes.
 *
 * Included only by sources compiled with at least the AVX2 flags
 * (-mavx2 -mfma -mf16c): kernels_avx2.c and the AVX-512 targets' sources,
 * whose 8-lane loops and scalar tails are the AVX2 target's.
 */
#ifndef FASTNORM_SIMD_AVX2_H
#define FASTNORM_SIMD_AVX2_H

#include <immintrin.h>

#include "fp16.h"
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

/* a * b + c of one float or one double, rounded once: what VFMA does in each
 * lane, for the scalar heads and tails of the element-wise loops (the same
 * bits as the vector body). */
static FN_INLINE float fn_fma_f32(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

static FN_INLINE double fn_fma_f64(double a, double b, double c) {
    return _mm_cvtsd_f64(_mm_fmadd_sd(_mm_set_sd(a), _mm_set_sd(b), _mm_set_sd(c)));
}

/* c - a * b rounded once, by the instruction the vector loops' VFNMA uses:
 * the same value as fma(-a, b, c), and the sign of a NaN operand kept as the
 * vector lanes keep it (fma(-a, b, c) flips the sign of a NaN `a`) */
static FN_INLINE float fn_fnma_f32(float a, float b, float c) {
    return _mm_cvtss_f32(_mm_fnmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

static FN_INLINE double fn_fnma_f64(double a, double b, double c) {
    return _mm_cvtsd_f64(_mm_fnmadd_sd(_mm_set_sd(a), _mm_set_sd(b), _mm_set_sd(c)));
}

/* 16-bit data: 8 elements widened to 8 floats, and rounded back (to
 * nearest, ties to even; a NaN stays a quiet NaN, as fp16.h). */
static inline __m256 fn_load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline void fn_store_f16(uint16_t *p, __m256 v) {
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/* One float16 element, by the F16C instructions: the bits of fp16.h's
 * portable conversions for every input (checked exhaustively), in one
 * instruction instead of a dozen, for the scalar tails of rows whose length
 * is not a multiple of the vector. */
static FN_INLINE float fn_load1_f16(const uint16_t *p) { return _cvtsh_ss(*p); }

static FN_INLINE void fn_store1_f16(uint16_t *p, float a) {
    *p = (uint16_t)_cvtss_sh(a, _MM_FROUND_TO_NEAREST_INT);
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
static FN_INLINE __m256i fn_pack2_bf16(__m256 v0, __m256 v1, const int nonan) {
    /* packus interleaves the two vectors' 128-bit halves; vpermq restores the order */
    const __m256i h = _mm256_packus_epi32(fn_round_bf16(v0, nonan), fn_round_bf16(v1, nonan));
    return _mm256_permute4x64_epi64(h, 0xd8);
}

static FN_INLINE void fn_store2_bf16(uint16_t *p, __m256 v0, __m256 v1, const int nonan) {
    _mm256_storeu_si256((__m256i *)p, fn_pack2_bf16(v0, v1, nonan));
}

/* The same sixteen elements with one streaming store (p 32-byte aligned) */
static FN_INLINE void fn_stream2_bf16(uint16_t *p, __m256 v0, __m256 v1) {
    _mm256_stream_si256((__m256i *)p, fn_pack2_bf16(v0, v1, 0));
}

/* Sixteen float16 results, v0 then v1, with one streaming store (p 32-byte
 * aligned): the conversions of fn_store_f16 */
static FN_INLINE void fn_stream2_f16(uint16_t *p, __m256 v0, __m256 v1) {
    const __m128i lo = _mm256_cvtps_ph(v0, _MM_FROUND_TO_NEAREST_INT);
    const __m128i hi = _mm256_cvtps_ph(v1, _MM_FROUND_TO_NEAREST_INT);
    _mm256_stream_si256((__m256i *)p, _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1));
}

#endif
