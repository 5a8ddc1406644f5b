/*
 * kernels_avx512_bf16.c -- the BF16 rounding feature of the avx2 and avx512
 * targets: their bfloat16 primitives once more, each rounding its results
 * with AVX-512 BF16's VCVTNEPS2BF16 instead of integer instructions.
 *
 * The instruction rounds to nearest even and quiets a NaN: the integer
 * rounding's bits. It flushes float32 subnormals to zero, so a vector
 * holding one takes the integer rounding instead (VFPCLASSPS finds it).
 *
 * Compiled with the avx512 target's flags and -mavx512bf16 (setup.py);
 * nothing in it runs unless dispatch.c has seen AVX-512 F, VL, DQ, BW and
 * BF16 and the OS's support for the ZMM and opmask state (the avx2 target's
 * variant too: the compiler may use any of those extensions in it).
 */
#include <immintrin.h>

#include "fp16.h"
#include "prims.h"
#include "simd_avx2.h"
#include "simd_avx2_lanes.h"
#include "simd_avx512.h"
#include "simd_common.h"

#define FN_FPCLASS_SUBNORMAL 0x20

static FN_INLINE void fn_store_bf16_cvt(uint16_t *p, __m256 v) {
    if (_mm256_fpclass_ps_mask(v, FN_FPCLASS_SUBNORMAL)) {
        fn_store_bf16(p, v);
        return;
    }
    _mm_storeu_si128((__m128i *)p, (__m128i)_mm256_cvtneps_pbh(v));
}

static FN_INLINE __m256i fn_pack2_bf16_cvt(__m256 v0, __m256 v1) {
    const __m512 v = _mm512_insertf32x8(_mm512_castps256_ps512(v0), v1, 1);
    if (_mm512_fpclass_ps_mask(v, FN_FPCLASS_SUBNORMAL)) return fn_pack2_bf16(v0, v1, 0);
    return (__m256i)_mm512_cvtneps_pbh(v);
}

static FN_INLINE void fn_store2_bf16_cvt(uint16_t *p, __m256 v0, __m256 v1) {
    _mm256_storeu_si256((__m256i *)p, fn_pack2_bf16_cvt(v0, v1));
}

static FN_INLINE void fn_stream2_bf16_cvt(uint16_t *p, __m256 v0, __m256 v1) {
    _mm256_stream_si256((__m256i *)p, fn_pack2_bf16_cvt(v0, v1));
}

static FN_INLINE __m256i fn_pack16_bf16_cvt(__m512 v) {
    if (_mm512_fpclass_ps_mask(v, FN_FPCLASS_SUBNORMAL)) return fn_pack16_bf16(v, 0);
    return (__m256i)_mm512_cvtneps_pbh(v);
}

static FN_INLINE void fn_store16_bf16_cvt(uint16_t *p, __m512 v) {
    _mm256_storeu_si256((__m256i *)p, fn_pack16_bf16_cvt(v));
}

static FN_INLINE void fn_stream16_bf16_cvt(uint16_t *p, __m512 v) {
    _mm256_stream_si256((__m256i *)p, fn_pack16_bf16_cvt(v));
}

#define T uint16_t
#define VLOAD(p) fn_load_bf16(p)
#define VSTORE(p, v) fn_store_bf16_cvt(p, v)
#define SLOAD(p) fn_bf16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_bf16(a))
#define PRIMS_TYPE fn_prims_bf16

/* The avx2 target's loops: pairs of two 8-float vectors (the default pair) */
#define VSTORE2(p, v0, v1) fn_store2_bf16_cvt(p, v0, v1)
#define PSTORE_NT(p, v) fn_stream2_bf16_cvt(p, PLO(v), PHI(v))
#define NAME(f) fn_##f##_bf16_avx2cvt
#include "prims_impl.h"
#undef VSTORE2
#undef PSTORE_NT
#undef NAME

/* The avx512 target's loops: each pair in one 512-bit vector */
#include "simd_avx512_pairs.h"
#define PLOAD(p) fn_load16_bf16(p)
#define PSTORE(p, v) fn_store16_bf16_cvt(p, v)
#define PSTORE_NT(p, v) fn_stream16_bf16_cvt(p, v)
#define NAME(f) fn_##f##_bf16_avx512cvt
#include "prims_impl.h"

/* The bfloat16 tables alone: each replaces its target's bfloat16 table. */
const fn_prims fn_prims_avx2_bf16 = {NULL, NULL, NULL, &fn_table_bf16_avx2cvt, NULL, NULL};
const fn_prims fn_prims_avx512_bf16 = {NULL, NULL, NULL, &fn_table_bf16_avx512cvt, NULL, NULL};
