/*
 * kernels_avx512.c -- the avx512 target's float16 and bfloat16 primitives:
 * the AVX2 loops with each main loop's two vectors of 8 floats held in one
 * 512-bit vector (prims_impl.h's pair type P).
 *
 * Every lane gets the operations it gets in the avx2 target, so the results
 * are the same bits, and 16 elements are converted per instruction instead
 * of 8. float32 and float64 data keep the avx2 target's tables (dispatch.c
 * composes the target): their 512-bit pairs made the float32 backward slower
 * (bench/choices.md, "float32 and float64 stay on 8-lane loops").
 *
 * Compiled with -mavx2 -mfma -mf16c -mavx512f -mavx512vl -mavx512dq
 * -mavx512bw (setup.py); nothing in it runs unless dispatch.c has seen
 * AVX-512 F, VL, DQ and BW and the OS's support for the ZMM and opmask state.
 */
#include <immintrin.h>

#include "fp16.h"
#include "prims.h"
#include "simd_avx2.h"
#include "simd_avx2_lanes.h"
#include "simd_avx512.h"
#include "simd_avx512_pairs.h"
#include "simd_common.h"

#define T uint16_t

#define VLOAD(p) fn_load_f16(p)
#define VSTORE(p, v) fn_store_f16(p, v)
#define SLOAD(p) fn_load1_f16(p)
#define SSTORE(p, a) fn_store1_f16(p, a)
#define PLOAD(p) fn_load16_f16(p)
#define PSTORE(p, v) fn_store16_f16(p, v)
#define PSTORE_NT(p, v) fn_stream16_f16(p, v)
#define PRIMS_TYPE fn_prims_f16
#define NAME(f) fn_##f##_f16_avx512
#include "prims_impl.h"
#undef PSTORE_NT
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
#define PSTORE_NT(p, v) fn_stream16_bf16(p, v)
#define PRIMS_TYPE fn_prims_bf16
#define NAME(f) fn_##f##_bf16_avx512
#include "prims_impl.h"

/* The 16-bit tables alone: the rest of the target is the avx2 target's. */
const fn_prims fn_prims_avx512 = {NULL, NULL, &fn_table_f16_avx512, &fn_table_bf16_avx512,
                                  NULL, NULL};
