/*
 * simd_avx512.h -- the AVX-512 helpers of the avx512 target: the 16-bit
 * loads and stores of 16 lanes.
 *
 * Included only by sources compiled with the AVX-512 F, VL, DQ and BW flags
 * (kernels_avx512.c, kernels_avx512_bf16.c).
 */
#ifndef FASTNORM_SIMD_AVX512_H
#define FASTNORM_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "simd_common.h"

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

static FN_INLINE __m256i fn_pack16_bf16(__m512 v, const int nonan) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)));
    if (!nonan) {
        const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
        r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(u, _mm512_set1_epi32(0x400000)));
    }
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}

static FN_INLINE void fn_store16_bf16(uint16_t *p, __m512 v, const int nonan) {
    _mm256_storeu_si256((__m256i *)p, fn_pack16_bf16(v, nonan));
}

/* fn_store16_f16 and fn_store16_bf16 with one streaming store (p 32-byte aligned) */
static FN_INLINE void fn_stream16_f16(uint16_t *p, __m512 v) {
    _mm256_stream_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

static FN_INLINE void fn_stream16_bf16(uint16_t *p, __m512 v) {
    _mm256_stream_si256((__m256i *)p, fn_pack16_bf16(v, 0));
}

#endif
