/*
 * kernels_scalar.c -- the portable instantiation of the row primitives.
 * Compiled with the baseline flags of the target; runs on any CPU.
 * A "vector" here is one element, so the template's unrolled loops become
 * plain loops with several independent accumulators.
 */
#include "prims.h"
#include "simd_common.h"

#define VN 1
#define VLOAD(p) ((A)*(p))
#define VSTORE(p, v) (*(p) = (T)(v))
#define VLOADA(p) (*(p))
#define VSTOREA(p, v) (*(p) = (v))
#define VSET1(a) (a)
#define VZERO() ((A)0)
#define VADD(a, b) ((a) + (b))
#define VSUB(a, b) ((a) - (b))
#define VMUL(a, b) ((a) * (b))
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VFNMA(a, b, c) ((c) - (a) * (b))
#define VHSUM(v) (v)
#define SLOAD(p) ((A)*(p))
#define SSTORE(p, a) (*(p) = (T)(a))
#define PREFETCH(p) FN_PREFETCH(p)
#define PREFETCH_W(p) FN_PREFETCH_W(p)

#define T float
#define A float
#define V float
#define PRIMS_TYPE fn_prims_f32
#define NAME(f) fn_##f##_f32_scalar
#include "prims_impl.h"
#undef T
#undef A
#undef V
#undef PRIMS_TYPE
#undef NAME

#define T double
#define A double
#define V double
#define PRIMS_TYPE fn_prims_f64
#define NAME(f) fn_##f##_f64_scalar
#include "prims_impl.h"

const fn_prims fn_prims_scalar = {&fn_table_f32_scalar, &fn_table_f64_scalar};
