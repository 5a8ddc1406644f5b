/*
 * kernels_scalar.c -- the scalar target: the portable instantiation of the row
 * primitives.
 * Compiled with the baseline flags of the target; runs on any CPU.
 * A "vector" here is one element, so the template's unrolled loops become
 * plain loops with several independent accumulators.
 */
#include "fp16.h"
#include "prims.h"
#include "simd_common.h"

#define VN 1
#define VLOAD(p) SLOAD(p)
#define VSTORE(p, v) SSTORE(p, v)
#define WLOAD(p) SWLOAD(p)
#define VLOADA(p) (*(p))
#define VSTOREA(p, v) (*(p) = (v))
#define VSET1(a) (a)
#define VZERO() ((A)0)
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VFNMA(a, b, c) ((c) - (a) * (b))
#define SFMA(a, b, c) VFMA(a, b, c)
#define SFNMA(a, b, c) VFNMA(a, b, c)
#define VHSUM(v) (v)
#define SWLOAD(p) ((A)*(p))
#define PREFETCH(p) FN_PREFETCH(p)
#define PREFETCH_W(p) FN_PREFETCH_W(p)

#define SLOAD(p) ((A)*(p))
#define SSTORE(p, a) (*(p) = (T)(a))

#define T float
#define A float
#define W float
#define V float
#define PRIMS_TYPE fn_prims_f32
#define NAME(f) fn_##f##_f32_scalar
#include "prims_impl.h"
#undef T
#undef A
#undef W
#undef V
#undef PRIMS_TYPE
#undef NAME

#define T double
#define A double
#define W double
#define V double
#define PRIMS_TYPE fn_prims_f64
#define NAME(f) fn_##f##_f64_scalar
#include "prims_impl.h"
#undef T
#undef A
#undef W
#undef V
#undef PRIMS_TYPE
#undef NAME
#undef SLOAD
#undef SSTORE

/* 16-bit data: float32 arithmetic, converted at each load and store */
#define T uint16_t
#define A float
#define W float
#define V float
#define SLOAD(p) fn_f16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_f16(a))
#define PRIMS_TYPE fn_prims_f16
#define NAME(f) fn_##f##_f16_scalar
#include "prims_impl.h"
#undef SLOAD
#undef SSTORE
#undef PRIMS_TYPE
#undef NAME

#define SLOAD(p) fn_bf16_to_f32(*(p))
#define SSTORE(p, a) (*(p) = fn_f32_to_bf16(a))
#define PRIMS_TYPE fn_prims_bf16
#define NAME(f) fn_##f##_bf16_scalar
#include "prims_impl.h"

const fn_prims fn_prims_scalar = {&fn_table_f32_scalar, &fn_table_f64_scalar,
                                  &fn_table_f16_scalar, &fn_table_bf16_scalar, NULL, NULL};
