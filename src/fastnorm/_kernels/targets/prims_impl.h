/*
 * prims_impl.h -- the one source of the row primitives (see prims.h).
 *
 * Included once per (instruction set, data type) with these macros defined:
 *   T, A          storage and accumulation types
 *   V, VN         vector type of A and its number of lanes (1 for scalar)
 *   VLOAD(p)      load VN elements of T as a vector of A; VSTORE(p, v) the reverse
 *   VLOADA(p), VSTOREA(p, v)   the same for arrays of A
 *   VSET1(a), VZERO(), VADD, VSUB, VMUL
 *   VFMA(a, b, c) = a * b + c;  VFNMA(a, b, c) = c - a * b
 *   VHSUM(v)      sum of the lanes, in a fixed order
 *   SLOAD(p), SSTORE(p, a)     one element of T to A and back (tails)
 *   SFMA(a, b, c) VFMA of one A: the same rounding as a lane of VFMA
 *   PSTORE_NT(p, v) (optional) a pair stored with aligned streaming stores:
 *                 the table then has normalize_stream
 *   W, WLOAD(p), SWLOAD(p)     the parameters' type (weight, bias), and the
 *                 loads of VN of them as a vector of A and of one as an A
 *   PREFETCH(p)   hint that the cache line at p is read soon (may do nothing)
 *   NAME(f)       the name of primitive f in this instantiation
 *   PRIMS_TYPE    the table type it fills (fn_prims_f32, _f64, _f16 or _bf16)
 *
 * Data is read and written only through VLOAD / VSTORE / SLOAD / SSTORE
 * (16-bit data is converted there), parameters only through WLOAD / SWLOAD.
 *
 * Every reduction keeps several independent accumulators (latency hiding and
 * a shorter summation chain), combines them in a fixed order, then adds the
 * scalar tail: the result depends only on the row, never on the thread.
 */

/* VSTORE2(p, v0, v1): v0 to p[0..VN-1], v1 to p[VN..2VN-1]; VSTORE2_NONAN the
 * same for values that are not NaN (an instantiation may then skip its NaN
 * handling). Both default to two VSTOREs. */
#ifndef VSTORE2
#define VSTORE2(p, v0, v1) (VSTORE(p, v0), VSTORE((p) + VN, v1))
#define FN_DEFAULT_VSTORE2
#endif
#ifndef VSTORE2_NONAN
#define VSTORE2_NONAN(p, v0, v1) VSTORE2(p, v0, v1)
#define FN_DEFAULT_VSTORE2_NONAN
#endif

/* The main loops step over two vectors (2 VN elements) at a time, through the
 * pair type P and its operations (PLOAD, PADD, ...; the same names as V's,
 * with PWLOAD for WLOAD, PLO / PHI for its halves). By default P is a struct
 * of two V, each operation done on both; an instantiation that has a vector
 * of 2 VN lanes (AVX-512 for AVX2's 8) defines P as that vector instead.
 * Either way every lane gets the same operations in the same order, so the
 * results are the same bits. */
#ifndef P
typedef struct {
    V lo, hi;
} NAME(pair);
#define P NAME(pair)
#define FN_DEFAULT_PAIR
static FN_INLINE P NAME(p_join)(V lo, V hi) {
    P r;
    r.lo = lo;
    r.hi = hi;
    return r;
}
static FN_INLINE P NAME(p_load)(const T *p) { return NAME(p_join)(VLOAD(p), VLOAD(p + VN)); }
static FN_INLINE P NAME(p_loada)(const A *p) { return NAME(p_join)(VLOADA(p), VLOADA(p + VN)); }
static FN_INLINE P NAME(p_wload)(const W *p) { return NAME(p_join)(WLOAD(p), WLOAD(p + VN)); }
static FN_INLINE void NAME(p_store)(T *p, P v) { VSTORE2(p, v.lo, v.hi); }
static FN_INLINE void NAME(p_store_nonan)(T *p, P v) { VSTORE2_NONAN(p, v.lo, v.hi); }
static FN_INLINE void NAME(p_storea)(A *p, P v) {
    VSTOREA(p, v.lo);
    VSTOREA(p + VN, v.hi);
}
static FN_INLINE P NAME(p_add)(P a, P b) { return NAME(p_join)(VADD(a.lo, b.lo), VADD(a.hi, b.hi)); }
static FN_INLINE P NAME(p_sub)(P a, P b) { return NAME(p_join)(VSUB(a.lo, b.lo), VSUB(a.hi, b.hi)); }
static FN_INLINE P NAME(p_mul)(P a, P b) { return NAME(p_join)(VMUL(a.lo, b.lo), VMUL(a.hi, b.hi)); }
static FN_INLINE P NAME(p_fma)(P a, P b, P c) {
    return NAME(p_join)(VFMA(a.lo, b.lo, c.lo), VFMA(a.hi, b.hi, c.hi));
}
static FN_INLINE P NAME(p_fnma)(P a, P b, P c) {
    return NAME(p_join)(VFNMA(a.lo, b.lo, c.lo), VFNMA(a.hi, b.hi, c.hi));
}
#define PLO(v) ((v).lo)
#define PHI(v) ((v).hi)
#define PLOAD(p) NAME(p_load)(p)
#define PLOADA(p) NAME(p_loada)(p)
#define PWLOAD(p) NAME(p_wload)(p)
#define PSTORE(p, v) NAME(p_store)(p, v)
#define PSTORE_NONAN(p, v) NAME(p_store_nonan)(p, v)
#define PSTOREA(p, v) NAME(p_storea)(p, v)
#define PSET1(a) NAME(p_join)(VSET1(a), VSET1(a))
#define PZERO() NAME(p_join)(VZERO(), VZERO())
#define PADD(a, b) NAME(p_add)(a, b)
#define PSUB(a, b) NAME(p_sub)(a, b)
#define PMUL(a, b) NAME(p_mul)(a, b)
#define PFMA(a, b, c) NAME(p_fma)(a, b, c)
#define PFNMA(a, b, c) NAME(p_fnma)(a, b, c)
#ifdef FN_DEFAULT_VSTORE2_NONAN
#define FN_DEFAULT_PSTORE_NONAN /* no store of its own for values that are not NaN */
#endif
#endif
/* PSTORE_NONAN: PSTORE for values that are not NaN; an instantiation with its
 * own P may leave it out (then it is PSTORE). */
#ifndef PSTORE_NONAN
#define PSTORE_NONAN(p, v) PSTORE(p, v)
#define FN_DEFAULT_PSTORE_NONAN
#define FN_PSTORE_NONAN_IS_PSTORE
#endif
/* V's parameter load under the name the Q##-generic bodies below use */
#define VWLOAD(p) WLOAD(p)

/* elements of T in a 64-byte cache line: the prefetch stride */
#define FN_LINE_ELEMS ((int64_t)(64 / sizeof(T)))
/* The address `off` elements of T from p, for a prefetch only: the column
 * primitives fetch rows ahead of the one they work on, which near the end of
 * the data (or before its start, for a negative stride) lie outside it. The
 * address is formed in integers, where that is defined, and a prefetch of
 * any address never faults. */
#define FN_AHEAD(p, off)                                                                    \
    ((const void *)((uintptr_t)(p) + (uintptr_t)((off) * (int64_t)sizeof(T))))

/* Each reduction reads its row either as T (x, through VLOAD) or, with the
 * compile-time flag `wide`, as A from a widened copy (xa, through VLOADA);
 * the widened values are those VLOAD gives, so both read the same numbers
 * and add them in the same order. `widen` (sum, sum_sq) also writes the
 * widened row to xa while summing it. */
#define FN_LOAD(x, xa, i, wide) ((wide) ? VLOADA((xa) + (i)) : VLOAD((x) + (i)))
#define FN_PLOAD(x, xa, i, wide) ((wide) ? PLOADA((xa) + (i)) : PLOAD((x) + (i)))
#define FN_SLOAD(x, xa, i, wide) ((wide) ? (xa)[i] : SLOAD((x) + (i)))

/* The primitives, then the table of this instantiation. */
#include "prims_rows_impl.h"
#include "prims_channel_impl.h"

static const PRIMS_TYPE NAME(table) = {
    NAME(sum),           NAME(centered_sums),  NAME(sum_sq), NAME(residual_add),
    NAME(normalize),     NAME(backward_sums),  NAME(backward_apply), NAME(add),
    NAME(scale_shift),   NAME(scale_shift_cols), NAME(affine_backward),
    NAME(affine_backward_cols), NAME(col_moments_acc), NAME(col_backward_acc),
    NAME(normalize_cols), NAME(backward_apply_cols), NAME(widen_sum),
    NAME(widen_sum_sq), NAME(centered_sums_wide), NAME(normalize_wide),
    NAME(backward_sums_wide), NAME(backward_apply_wide), NAME(scale_shift_wide),
    NAME(widen_sums_rows), FN_CENTERED_SUMS_WIDE_ROWS, FN_BACKWARD_SUMS2, FN_STAT_ROWS,
    FN_NORMALIZE_STREAM, NAME(backward_apply_rows), FN_BACKWARD_APPLY_STREAM,
    NAME(stats_rows), NAME(normalize_rows), NAME(backward_sums_block),
    NAME(backward_apply_block),
};
#undef FN_NORMALIZE_STREAM
#undef FN_BACKWARD_APPLY_STREAM
#ifdef FN_PSTORE_NT_NONE
#undef PSTORE_NT
#undef FN_PSTORE_NT_NONE
#endif
#undef FN_CENTERED_SUMS_WIDE_ROWS
#undef FN_STAT_ROWS
#undef FN_BACKWARD_SUMS2

#undef FN_LINE_ELEMS
#undef FN_AHEAD
#undef FN_ROWS_AT
#undef FN_ACC_SPLIT_BYTES
#undef FN_LOAD
#undef FN_PLOAD
#undef VWLOAD
#ifdef FN_DEFAULT_PAIR
#undef P
#undef PLO
#undef PHI
#undef PLOAD
#undef PLOADA
#undef PWLOAD
#undef PSTORE
#undef PSTORE_NONAN
#undef PSTOREA
#undef PSET1
#undef PZERO
#undef PADD
#undef PSUB
#undef PMUL
#undef PFMA
#undef PFNMA
#undef FN_DEFAULT_PAIR
#endif
#ifdef FN_DEFAULT_VSTORE2
#undef VSTORE2
#undef FN_DEFAULT_VSTORE2
#endif
#ifdef FN_DEFAULT_PSTORE_NONAN
#undef FN_DEFAULT_PSTORE_NONAN
#endif
#ifdef FN_PSTORE_NONAN_IS_PSTORE
#undef PSTORE_NONAN
#undef FN_PSTORE_NONAN_IS_PSTORE
#endif
#ifdef FN_DEFAULT_VSTORE2_NONAN
#undef VSTORE2_NONAN
#undef FN_DEFAULT_VSTORE2_NONAN
#endif
#undef FN_SLOAD
