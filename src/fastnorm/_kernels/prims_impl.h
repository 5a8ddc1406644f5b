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
/* elements reduced in registers before a partial sum is added in double */
#define FN_CHUNK ((int64_t)1024)

/* Each reduction reads its row either as T (x, through VLOAD) or, with the
 * compile-time flag `wide`, as A from a widened copy (xa, through VLOADA);
 * the widened values are those VLOAD gives, so both read the same numbers
 * and add them in the same order. `widen` (sum, sum_sq) also writes the
 * widened row to xa while summing it. */
#define FN_LOAD(x, xa, i, wide) ((wide) ? VLOADA((xa) + (i)) : VLOAD((x) + (i)))
#define FN_PLOAD(x, xa, i, wide) ((wide) ? PLOADA((xa) + (i)) : PLOAD((x) + (i)))
#define FN_SLOAD(x, xa, i, wide) ((wide) ? (xa)[i] : SLOAD((x) + (i)))

/* The sum of x (sq = 0) or of x^2 (sq = 1) over one chunk of up to FN_CHUNK
 * elements, of R rows at once (R = 1, 2 or FN_MAX_ROWS: out[k] for the row
 * x[k]); `widen` also writes each row, widened to A, to xa[k]. The rows share
 * the loop, not their accumulators: each row's sum is the same as alone.
 * Several rows give the processor independent chains of additions to
 * interleave. */
static FN_INLINE void NAME(sum_chunk_rows)(const T *const *x, A *const *xa, int64_t n,
                                           const int widen, const int sq, const int R,
                                           A *out) {
#define FN_SUM_STEP(Q, a, v) ((sq) ? Q##FMA(v, v, a) : Q##ADD(a, v))
    /* four accumulators of VN lanes per row: a01 holds a0 and a1, a23 a2 and a3 */
    P a01[FN_MAX_ROWS], a23[FN_MAX_ROWS];
    for (int k = 0; k < R; k++) a01[k] = a23[k] = PZERO();
    int64_t i = 0;
    for (; i + 4 * VN <= n; i += 4 * VN) {
        for (int k = 0; k < R; k++) {
            const P v01 = PLOAD(x[k] + i), v23 = PLOAD(x[k] + i + 2 * VN);
            if (widen) {
                PSTOREA(xa[k] + i, v01);
                PSTOREA(xa[k] + i + 2 * VN, v23);
            }
            a01[k] = FN_SUM_STEP(P, a01[k], v01);
            a23[k] = FN_SUM_STEP(P, a23[k], v23);
        }
    }
    for (int k = 0; k < R; k++) {
        int64_t j = i;
        V a0 = PLO(a01[k]);
        const V a1 = PHI(a01[k]), a2 = PLO(a23[k]), a3 = PHI(a23[k]);
        for (; j + VN <= n; j += VN) {
            V v = VLOAD(x[k] + j);
            if (widen) VSTOREA(xa[k] + j, v);
            a0 = FN_SUM_STEP(V, a0, v);
        }
        A s = VHSUM(VADD(VADD(a0, a1), VADD(a2, a3)));
        for (; j < n; j++) {
            A v = SLOAD(x[k] + j);
            if (widen) xa[k][j] = v;
            s += sq ? v * v : v;
        }
        out[k] = s;
    }
#undef FN_SUM_STEP
}

/* The sums of d = x - mu[k] and of d^2 over one chunk of R rows at once (as
 * sum_chunk_rows), reading x[k] or (wide) its widened copy xa[k]. */
static FN_INLINE void NAME(centered_chunk_rows)(const T *const *x, const A *const *xa,
                                                int64_t n, const A *mu, A *sum_d, A *sum_d2,
                                                const int wide, const int R) {
    /* s01 holds the accumulators s0 and s1, and so on */
    P s01[FN_MAX_ROWS], s23[FN_MAX_ROWS], q01[FN_MAX_ROWS], q23[FN_MAX_ROWS], pmu[FN_MAX_ROWS];
    for (int k = 0; k < R; k++) {
        s01[k] = s23[k] = q01[k] = q23[k] = PZERO();
        pmu[k] = PSET1(mu[k]);
    }
    int64_t i = 0;
    for (; i + 4 * VN <= n; i += 4 * VN) {
        for (int k = 0; k < R; k++) {
            const P d01 = PSUB(FN_PLOAD(x[k], xa[k], i, wide), pmu[k]);
            const P d23 = PSUB(FN_PLOAD(x[k], xa[k], i + 2 * VN, wide), pmu[k]);
            s01[k] = PADD(s01[k], d01);
            s23[k] = PADD(s23[k], d23);
            q01[k] = PFMA(d01, d01, q01[k]);
            q23[k] = PFMA(d23, d23, q23[k]);
        }
    }
    for (int k = 0; k < R; k++) {
        const V vmu = VSET1(mu[k]);
        int64_t j = i;
        V s0 = PLO(s01[k]), q0 = PLO(q01[k]);
        const V s1 = PHI(s01[k]), s2 = PLO(s23[k]), s3 = PHI(s23[k]);
        const V q1 = PHI(q01[k]), q2 = PLO(q23[k]), q3 = PHI(q23[k]);
        for (; j + VN <= n; j += VN) {
            V d = VSUB(FN_LOAD(x[k], xa[k], j, wide), vmu);
            s0 = VADD(s0, d);
            q0 = VFMA(d, d, q0);
        }
        A s = VHSUM(VADD(VADD(s0, s1), VADD(s2, s3)));
        A q = VHSUM(VADD(VADD(q0, q1), VADD(q2, q3)));
        for (; j < n; j++) {
            A d = FN_SLOAD(x[k], xa[k], j, wide) - mu[k];
            s += d;
            q += d * d;
        }
        sum_d[k] = s;
        sum_d2[k] = q;
    }
}

/* Chunk k of R rows' pointers, i elements on (a NULL row stays NULL) */
#define FN_ROWS_AT(dst, src, i, R)                                                          \
    for (int k_ = 0; k_ < (R); k_++) (dst)[k_] = (src)[k_] ? (src)[k_] + (i) : NULL

/* Whole rows, R at once (out[k] for the row x[k]): FN_CHUNK elements at a time
 * with the vector accumulators above, the chunk results added in double, so
 * that the error of a long row (a LayerNorm over (C, H, W), say) does not grow
 * with its length. A row's sums are the same whatever R. */
static FN_INLINE void NAME(sum_rows_r)(const T *const *x, A *const *xa, int64_t n,
                                       const int widen, const int sq, const int R, A *out) {
    if (n <= FN_CHUNK) { /* the same, sooner */
        NAME(sum_chunk_rows)(x, xa, n, widen, sq, R, out);
        return;
    }
    double total[FN_MAX_ROWS] = {0};
    for (int64_t i = 0; i < n; i += FN_CHUNK) {
        const T *xc[FN_MAX_ROWS];
        A *xac[FN_MAX_ROWS], part[FN_MAX_ROWS];
        FN_ROWS_AT(xc, x, i, R);
        FN_ROWS_AT(xac, xa, i, R);
        NAME(sum_chunk_rows)(xc, xac, n - i < FN_CHUNK ? n - i : FN_CHUNK, widen, sq, R, part);
        for (int k = 0; k < R; k++) total[k] += part[k];
    }
    for (int k = 0; k < R; k++) out[k] = (A)total[k];
}

static FN_INLINE A NAME(sum_row)(const T *x, A *xa, const int64_t n, const int widen,
                                 const int sq) {
    A s;
    NAME(sum_rows_r)(&x, &xa, n, widen, sq, 1, &s);
    return s;
}

static A NAME(sum)(const T *x, int64_t n) { return NAME(sum_row)(x, NULL, n, 0, 0); }

static A NAME(widen_sum)(const T *x, A *xa, int64_t n) { return NAME(sum_row)(x, xa, n, 1, 0); }

static A NAME(sum_sq)(const T *x, int64_t n) { return NAME(sum_row)(x, NULL, n, 0, 1); }

static A NAME(widen_sum_sq)(const T *x, A *xa, int64_t n) {
    return NAME(sum_row)(x, xa, n, 1, 1);
}

/* centered sums of whole rows, R at once, as sum_rows_r: x[k] as T or (wide)
 * its widened copy xa[k] */
static FN_INLINE void NAME(centered_rows_r)(const T *const *x, const A *const *xa, int64_t n,
                                            const A *mu, A *sum_d, A *sum_d2, const int wide,
                                            const int R) {
    if (n <= FN_CHUNK) {
        NAME(centered_chunk_rows)(x, xa, n, mu, sum_d, sum_d2, wide, R);
        return;
    }
    double td[FN_MAX_ROWS] = {0}, tq[FN_MAX_ROWS] = {0};
    for (int64_t i = 0; i < n; i += FN_CHUNK) {
        const T *xc[FN_MAX_ROWS];
        const A *xac[FN_MAX_ROWS];
        A d[FN_MAX_ROWS], q[FN_MAX_ROWS];
        FN_ROWS_AT(xc, x, i, R);
        FN_ROWS_AT(xac, xa, i, R);
        NAME(centered_chunk_rows)(xc, xac, n - i < FN_CHUNK ? n - i : FN_CHUNK, mu, d, q, wide,
                                  R);
        for (int k = 0; k < R; k++) {
            td[k] += d[k];
            tq[k] += q[k];
        }
    }
    for (int k = 0; k < R; k++) {
        sum_d[k] = (A)td[k];
        sum_d2[k] = (A)tq[k];
    }
}

/* `rows` rows (2 or FN_MAX_ROWS) widened and summed at once: the sums and the
 * copies widen_sum (sq = 0) or widen_sum_sq (sq = 1) give each row alone. */
static void NAME(widen_sums_rows)(const T *const *x, A *const *xa, int rows, int64_t n, int sq,
                                  A *out) {
    if (rows == FN_MAX_ROWS) {
        if (sq) NAME(sum_rows_r)(x, xa, n, 1, 1, FN_MAX_ROWS, out);
        else NAME(sum_rows_r)(x, xa, n, 1, 0, FN_MAX_ROWS, out);
    } else {
        if (sq) NAME(sum_rows_r)(x, xa, n, 1, 1, 2, out);
        else NAME(sum_rows_r)(x, xa, n, 1, 0, 2, out);
    }
}

#ifndef FN_DEFAULT_PAIR
/* centered_sums_wide of `rows` rows at once (2 or FN_MAX_ROWS; row k: xa[k],
 * mu[k], into sum_d[k] and sum_d2[k]), each the same as alone. Only where a
 * pair is one vector: with pairs of 8-lane vectors (the default pair) two
 * rows' centered sums need 16 accumulators, all of AVX2's registers, and the
 * float16 LayerNorm measured slower; so do backward_sums2's six. */
static void NAME(centered_sums_wide_rows)(const A *const *xa, int rows, int64_t n, const A *mu,
                                          A *sum_d, A *sum_d2) {
    const T *const x[FN_MAX_ROWS] = {NULL};
    if (rows == FN_MAX_ROWS)
        NAME(centered_rows_r)(x, xa, n, mu, sum_d, sum_d2, 1, FN_MAX_ROWS);
    else NAME(centered_rows_r)(x, xa, n, mu, sum_d, sum_d2, 1, 2);
}
#define FN_CENTERED_SUMS_WIDE_ROWS NAME(centered_sums_wide_rows)
#define FN_STAT_ROWS FN_MAX_ROWS
#define FN_BACKWARD_SUMS2 NAME(backward_sums2)
#else
#define FN_CENTERED_SUMS_WIDE_ROWS NULL
#define FN_STAT_ROWS 2
#define FN_BACKWARD_SUMS2 NULL
#endif

static void NAME(centered_sums)(const T *x, int64_t n, A mu, A *sum_d, A *sum_d2) {
    const A *none = NULL;
    NAME(centered_rows_r)(&x, &none, n, &mu, sum_d, sum_d2, 0, 1);
}

static void NAME(centered_sums_wide)(const A *xa, int64_t n, A mu, A *sum_d, A *sum_d2) {
    const T *none = NULL;
    NAME(centered_rows_r)(&none, &xa, n, &mu, sum_d, sum_d2, 1, 1);
}

static FN_INLINE void NAME(residual_add_body)(const T *x, const T *r, const W *bias, T *s,
                                              int64_t n, const T *next_r, T *next_s,
                                              const int has_bias) {
    int64_t i = 0;
    for (; i + 2 * VN <= n; i += 2 * VN) {
        if (next_r && i % FN_LINE_ELEMS == 0) {
            PREFETCH(next_r + i);
            PREFETCH_W(next_s + i);
        }
        P v = PADD(PLOAD(x + i), PLOAD(r + i));
        if (has_bias) v = PADD(v, PWLOAD(bias + i));
        PSTORE(s + i, v);
    }
    for (; i + VN <= n; i += VN) {
        V v = VADD(VLOAD(x + i), VLOAD(r + i));
        if (has_bias) v = VADD(v, WLOAD(bias + i));
        VSTORE(s + i, v);
    }
    for (; i < n; i++) {
        A v = SLOAD(x + i) + SLOAD(r + i);
        if (has_bias) v += SWLOAD(bias + i);
        SSTORE(s + i, v);
    }
}

static void NAME(residual_add)(const T *x, const T *r, const W *bias, T *s, int64_t n,
                               const T *next_r, T *next_s) {
    if (bias) NAME(residual_add_body)(x, r, bias, s, n, next_r, next_s, 1);
    else NAME(residual_add_body)(x, r, bias, s, n, next_r, next_s, 0);
}

/* The loop bodies below take their optional operands as compile-time flags:
 * each caller passes constants, so every combination becomes its own
 * branch-free loop. */

/* t * w + b for a vector (Q = V) or a pair (Q = P) t of normalized values */
#define FN_DEFINE_AFFINE(FNAME, Q)                                                          \
    static FN_INLINE Q FNAME(Q t, const W *w, const W *b, const int has_w, const int has_b) { \
        if (has_w && has_b) return Q##FMA(t, Q##WLOAD(w), Q##WLOAD(b));                      \
        if (has_w) return Q##MUL(t, Q##WLOAD(w));                                             \
        if (has_b) return Q##ADD(t, Q##WLOAD(b));                                             \
        return t;                                                                             \
    }
FN_DEFINE_AFFINE(NAME(affine), V)
FN_DEFINE_AFFINE(NAME(affine_pair), P)
#undef FN_DEFINE_AFFINE

static FN_INLINE void NAME(normalize_body)(const T *x, const A *xa, T *y, int64_t n, A mu, A c,
                                           A rstd, const W *w, const W *b, const T *next,
                                           T *next_y, const int has_w, const int has_b,
                                           const int wide, const int nonan) {
    /* ((x - mu) - c) * rstd as (x - mu) * rstd - c * rstd: x - mu is exact for
     * the large-mean rows where it matters, and one fma replaces two operations */
    const A cr = c * rstd;
    const V vmu = VSET1(mu), vr = VSET1(rstd), vcr = VSET1(-cr);
    const P pmu = PSET1(mu), pr = PSET1(rstd), pcr = PSET1(-cr);
    int64_t i = 0;
    /* one cache line of the rows `next` and `next_y` (some rows ahead, see
     * fn_fetch_rows) is fetched per 64 bytes of this one: their loads and their
     * stores' line fills (read for ownership) overlap this row's arithmetic */
    for (; i + 2 * VN <= n; i += 2 * VN) {
        if (next && i % FN_LINE_ELEMS == 0) {
            PREFETCH(next + i);
            PREFETCH_W(next_y + i);
        }
        P t = PFMA(PSUB(FN_PLOAD(x, xa, i, wide), pmu), pr, pcr);
        t = NAME(affine_pair)(t, w + i, b + i, has_w, has_b);
        if (nonan) PSTORE_NONAN(y + i, t);
        else PSTORE(y + i, t);
    }
    for (; i + VN <= n; i += VN) {
        V t = VFMA(VSUB(FN_LOAD(x, xa, i, wide), vmu), vr, vcr);
        VSTORE(y + i, NAME(affine)(t, w + i, b + i, has_w, has_b));
    }
    for (; i < n; i++) {
        A t = (FN_SLOAD(x, xa, i, wide) - mu) * rstd - cr;
        if (has_w) t *= SWLOAD(w + i);
        if (has_b) t += SWLOAD(b + i);
        SSTORE(y + i, t);
    }
}

static void NAME(normalize)(const T *x, T *y, int64_t n, A mu, A c, A rstd, const W *w,
                            const W *b, const T *next, T *next_y) {
#define FN_NORM(HAS_W, HAS_B)                                                               \
    NAME(normalize_body)(x, NULL, y, n, mu, c, rstd, w, b, next, next_y, HAS_W, HAS_B, 0, 0)
    if (w && b) FN_NORM(1, 1);
    else if (w) FN_NORM(1, 0);
    else if (b) FN_NORM(0, 1);
    else FN_NORM(0, 0);
#undef FN_NORM
}

static void NAME(normalize_wide)(const A *xa, T *y, int64_t n, A mu, A c, A rstd, const W *w,
                                 const W *b, const T *next, T *next_y, int nonan) {
#define FN_NORM(HAS_W, HAS_B, NONAN)                                                        \
    NAME(normalize_body)(NULL, xa, y, n, mu, c, rstd, w, b, next, next_y, HAS_W, HAS_B, 1, NONAN)
#define FN_NORM_WB(NONAN)                                                                   \
    do {                                                                                    \
        if (w && b) FN_NORM(1, 1, NONAN);                                                   \
        else if (w) FN_NORM(1, 0, NONAN);                                                   \
        else if (b) FN_NORM(0, 1, NONAN);                                                   \
        else FN_NORM(0, 0, NONAN);                                                          \
    } while (0)
#ifdef FN_DEFAULT_PSTORE_NONAN
    (void)nonan; /* the same store either way */
    FN_NORM_WB(0);
#else
    if (nonan) FN_NORM_WB(1);
    else FN_NORM_WB(0);
#endif
#undef FN_NORM_WB
#undef FN_NORM
}

/* The backward reads dy and x as T, or (`wide`) from widened copies dya and xa
 * (dy and x unused); `widen` (backward_sums_wide) also writes those copies
 * while summing. The widened values are those VLOAD gives: the same sums and
 * the same dx either way. */
static FN_INLINE void NAME(backward_sums_rows)(const T *const *dy, const T *const *x,
                                               A *const *dya, A *const *xa, int64_t n,
                                               const A *mu, const A *rstd, const W *w,
                                               A (*sums)[3], const int has_w, const int widen,
                                               const int R) {
    /* per row, two accumulators of VN lanes per sum, as one pair; R = 2 rows
     * share the loop (as sum_chunk_rows), each with its own sums */
    P pmu[2], pr[2], g[2], pp[2], h[2];
    for (int k = 0; k < R; k++) {
        pmu[k] = PSET1(mu[k]);
        pr[k] = PSET1(rstd[k]);
        g[k] = pp[k] = h[k] = PZERO();
    }
    int64_t i = 0;
    for (; i + 2 * VN <= n; i += 2 * VN) {
        for (int k = 0; k < R; k++) {
            const P vx = PLOAD(x[k] + i);
            P gg = PLOAD(dy[k] + i);
            if (widen) {
                PSTOREA(xa[k] + i, vx);
                PSTOREA(dya[k] + i, gg);
            }
            const P xh = PMUL(PSUB(vx, pmu[k]), pr[k]);
            if (has_w) gg = PMUL(gg, PWLOAD(w + i));
            g[k] = PADD(g[k], gg);
            pp[k] = PFMA(gg, xh, pp[k]);
            h[k] = PADD(h[k], xh);
        }
    }
    for (int k = 0; k < R; k++) {
        A sg = VHSUM(VADD(PLO(g[k]), PHI(g[k]))), sp = VHSUM(VADD(PLO(pp[k]), PHI(pp[k]))),
          sh = VHSUM(VADD(PLO(h[k]), PHI(h[k])));
        for (int64_t j = i; j < n; j++) {
            const A xv = SLOAD(x[k] + j);
            A gj = SLOAD(dy[k] + j);
            if (widen) {
                xa[k][j] = xv;
                dya[k][j] = gj;
            }
            A xh = (xv - mu[k]) * rstd[k];
            if (has_w) gj *= SWLOAD(w + j);
            sg += gj;
            sp += gj * xh;
            sh += xh;
        }
        sums[k][0] = sg;
        sums[k][1] = sp;
        sums[k][2] = sh;
    }
}

/* backward_sums of whole rows, R at once, by chunks as sum_rows_r; dya[0]
 * not NULL: also the widened copies (backward_sums_wide) */
static FN_INLINE void NAME(backward_sums_r)(const T *const *dy, const T *const *x,
                                            A *const *dya, A *const *xa, int64_t n,
                                            const A *mu, const A *rstd, const W *w,
                                            A (*sums)[3], const int R) {
#define FN_BWD_SUMS(DY, X, DYA, XA, LEN, WO, OUT)                                          \
    do {                                                                                   \
        if (dya[0] && (WO))                                                                \
            NAME(backward_sums_rows)(DY, X, DYA, XA, LEN, mu, rstd, WO, OUT, 1, 1, R);      \
        else if (dya[0])                                                                   \
            NAME(backward_sums_rows)(DY, X, DYA, XA, LEN, mu, rstd, WO, OUT, 0, 1, R);      \
        else if (WO)                                                                       \
            NAME(backward_sums_rows)(DY, X, DYA, XA, LEN, mu, rstd, WO, OUT, 1, 0, R);      \
        else                                                                               \
            NAME(backward_sums_rows)(DY, X, DYA, XA, LEN, mu, rstd, WO, OUT, 0, 0, R);      \
    } while (0)
    if (n <= FN_CHUNK) {
        FN_BWD_SUMS(dy, x, dya, xa, n, w, sums);
        return;
    }
    double total[2][3] = {{0, 0, 0}, {0, 0, 0}};
    for (int64_t i = 0; i < n; i += FN_CHUNK) {
        const int64_t len = n - i < FN_CHUNK ? n - i : FN_CHUNK;
        const T *dyc[2], *xc[2];
        A *dyac[2], *xac[2], part[2][3];
        FN_ROWS_AT(dyc, dy, i, R);
        FN_ROWS_AT(xc, x, i, R);
        FN_ROWS_AT(dyac, dya, i, R);
        FN_ROWS_AT(xac, xa, i, R);
        FN_BWD_SUMS(dyc, xc, dyac, xac, len, w ? w + i : NULL, part);
        for (int k = 0; k < R; k++)
            for (int j = 0; j < 3; j++) total[k][j] += part[k][j];
    }
    for (int k = 0; k < R; k++)
        for (int j = 0; j < 3; j++) sums[k][j] = (A)total[k][j];
#undef FN_BWD_SUMS
}

#ifndef FN_DEFAULT_PAIR
/* backward_sums (dya0 NULL) or backward_sums_wide of two rows at once, each
 * row's sums (and copies) the same as alone */
static void NAME(backward_sums2)(const T *dy0, const T *x0, const T *dy1, const T *x1, A *dya0,
                                 A *xa0, A *dya1, A *xa1, int64_t n, const A mu[2],
                                 const A rstd[2], const W *w, A sums[2][3]) {
    const T *dy[2] = {dy0, dy1}, *x[2] = {x0, x1};
    A *dya[2] = {dya0, dya1}, *xa[2] = {xa0, xa1};
    NAME(backward_sums_r)(dy, x, dya, xa, n, mu, rstd, w, sums, 2);
}
#endif

static void NAME(backward_sums)(const T *dy, const T *x, int64_t n, A mu, A rstd, const W *w,
                                A sums[3]) {
    A *none = NULL;
    NAME(backward_sums_r)(&dy, &x, &none, &none, n, &mu, &rstd, w, (A(*)[3])sums, 1);
}

static void NAME(backward_sums_wide)(const T *dy, const T *x, A *dya, A *xa, int64_t n, A mu,
                                     A rstd, const W *w, A sums[3]) {
    NAME(backward_sums_r)(&dy, &x, &dya, &xa, n, &mu, &rstd, w, (A(*)[3])sums, 1);
}

/* dx of one vector (Q = V) or pair (Q = P) at element i, returned for the
 * caller to store, with the dy (d) and normalized x (xh) it used. */
#define FN_DEFINE_BACKWARD_APPLY_VEC(FNAME, Q)                                              \
    static FN_INLINE Q FNAME(const T *dy, const T *x, const A *dya, const A *xa, const T *ds,  \
                             int64_t i, const W *w, Q vmu, Q vc, Q vr, Q vmg, Q vmgx, Q *d,  \
                             Q *xh, const int has_w, const int wide, const int has_ds) {     \
        const Q vx = wide ? Q##LOADA(xa + i) : Q##LOAD(x + i);                               \
        *d = wide ? Q##LOADA(dya + i) : Q##LOAD(dy + i);                                     \
        *xh = Q##SUB(Q##MUL(Q##SUB(vx, vmu), vr), vc);                                       \
        const Q g = has_w ? Q##MUL(*d, Q##WLOAD(w + i)) : *d;                                \
        const Q r = Q##MUL(vr, Q##FNMA(*xh, vmgx, Q##SUB(g, vmg)));                          \
        return has_ds ? Q##ADD(r, Q##LOAD(ds + i)) : r;                                      \
    }
FN_DEFINE_BACKWARD_APPLY_VEC(NAME(backward_apply_vec), V)
FN_DEFINE_BACKWARD_APPLY_VEC(NAME(backward_apply_pair), P)
#undef FN_DEFINE_BACKWARD_APPLY_VEC

/* The parameter partials of one vector: dw_acc += d * xh, db_acc += d (acc:
 * 0 neither, 1 dw_acc, 2 both). */
static FN_INLINE void NAME(backward_acc_vec)(A *dw_acc, A *db_acc, V d, V xh, const int acc) {
    if (acc >= 1) VSTOREA(dw_acc, VFMA(d, xh, VLOADA(dw_acc)));
    if (acc >= 2) VSTOREA(db_acc, VADD(VLOADA(db_acc), d));
}

/* The same for a pair, as one vector, or (split) as its two halves: where the
 * partials do not stay in the L1 cache next to the rows, their read-modify-
 * write as one 512-bit vector measured 1.3x slower than as two 256-bit halves,
 * and faster where they do stay. The same sums either way. */
static FN_INLINE void NAME(backward_acc_pair)(A *dw_acc, A *db_acc, P d, P xh, const int acc,
                                              const int split) {
    if (split) {
        NAME(backward_acc_vec)(dw_acc, db_acc, PLO(d), PLO(xh), acc);
        NAME(backward_acc_vec)(dw_acc + VN, db_acc + VN, PHI(d), PHI(xh), acc);
        return;
    }
    if (acc >= 1) PSTOREA(dw_acc, PFMA(d, xh, PLOADA(dw_acc)));
    if (acc >= 2) PSTOREA(db_acc, PADD(PLOADA(db_acc), d));
}

/* Bytes of partials above which they are updated split (see backward_acc_pair) */
#define FN_ACC_SPLIT_BYTES (16 * 1024)

static FN_INLINE void NAME(backward_apply_body)(const T *dy, const T *x, const A *dya,
                                                const A *xa, T *dx, int64_t n, A mu, A c,
                                                A rstd, const W *w, A mg, A mgx, A *dw_acc,
                                                A *db_acc, const T *ds, const T *next_dy,
                                                const T *next_x, T *next_dx, const int has_w,
                                                const int acc, const int wide,
                                                const int has_ds, const int split) {
    const V vmu = VSET1(mu), vc = VSET1(c), vr = VSET1(rstd), vmg = VSET1(mg),
            vmgx = VSET1(mgx);
    const P pmu = PSET1(mu), pc = PSET1(c), pr = PSET1(rstd), pmg = PSET1(mg),
            pmgx = PSET1(mgx);
    int64_t i = 0;
    /* one cache line of the rows next_dy, next_x and next_dx (some rows ahead)
     * per 64 bytes of these */
    for (; i + 2 * VN <= n; i += 2 * VN) {
        if (next_x && i % FN_LINE_ELEMS == 0) {
            PREFETCH(next_x + i);
            PREFETCH(next_dy + i);
            PREFETCH_W(next_dx + i);
        }
        P d, xh;
        PSTORE(dx + i, NAME(backward_apply_pair)(dy, x, dya, xa, ds, i, w, pmu, pc, pr, pmg, pmgx,
                                                 &d, &xh, has_w, wide, has_ds));
        NAME(backward_acc_pair)(dw_acc + i, db_acc + i, d, xh, acc, split);
    }
    for (; i + VN <= n; i += VN) {
        V d, xh;
        VSTORE(dx + i, NAME(backward_apply_vec)(dy, x, dya, xa, ds, i, w, vmu, vc, vr, vmg, vmgx,
                                                &d, &xh, has_w, wide, has_ds));
        NAME(backward_acc_vec)(dw_acc + i, db_acc + i, d, xh, acc);
    }
    for (; i < n; i++) {
        A xh = (FN_SLOAD(x, xa, i, wide) - mu) * rstd - c;
        A d = FN_SLOAD(dy, dya, i, wide);
        A g = has_w ? d * SWLOAD(w + i) : d;
        A v = rstd * ((g - mg) - xh * mgx);
        if (has_ds) v += SLOAD(ds + i);
        SSTORE(dx + i, v);
        if (acc >= 1) dw_acc[i] += d * xh;
        if (acc >= 2) db_acc[i] += d;
    }
}

static void NAME(backward_apply_any)(const T *dy, const T *x, const A *dya, const A *xa, T *dx,
                                     int64_t n, A mu, A c, A rstd, const W *w, A mg, A mgx,
                                     A *dw_acc, A *db_acc, const T *ds, const T *next_dy,
                                     const T *next_x, T *next_dx) {
#define FN_BWD_APPLY_DS(HAS_W, ACC, WIDE, SPLIT)                                           \
    do {                                                                                   \
        if (ds)                                                                            \
            NAME(backward_apply_body)(dy, x, dya, xa, dx, n, mu, c, rstd, w, mg, mgx, dw_acc, \
                                      db_acc, ds, next_dy, next_x, next_dx, HAS_W, ACC, WIDE, \
                                      1, SPLIT);                                           \
        else                                                                               \
            NAME(backward_apply_body)(dy, x, dya, xa, dx, n, mu, c, rstd, w, mg, mgx, dw_acc, \
                                      db_acc, ds, next_dy, next_x, next_dx, HAS_W, ACC, WIDE, \
                                      0, SPLIT);                                           \
    } while (0)
#ifdef FN_DEFAULT_PAIR
/* a pair is two vectors already */
#define FN_BWD_APPLY(HAS_W, ACC, WIDE) FN_BWD_APPLY_DS(HAS_W, ACC, WIDE, 0)
#else
#define FN_BWD_APPLY(HAS_W, ACC, WIDE)                                                     \
    do {                                                                                   \
        if (split) FN_BWD_APPLY_DS(HAS_W, ACC, WIDE, 1);                                   \
        else FN_BWD_APPLY_DS(HAS_W, ACC, WIDE, 0);                                         \
    } while (0)
#endif
#define FN_BWD_APPLY_ACC(HAS_W, WIDE)                                                      \
    do {                                                                                   \
        if (acc == 2) FN_BWD_APPLY(HAS_W, 2, WIDE);                                        \
        else if (acc == 1) FN_BWD_APPLY(HAS_W, 1, WIDE);                                   \
        else FN_BWD_APPLY(HAS_W, 0, WIDE);                                                 \
    } while (0)
    const int acc = db_acc ? 2 : (dw_acc ? 1 : 0);
    const int split = n * acc * (int64_t)sizeof(A) > FN_ACC_SPLIT_BYTES;
    (void)split;
    if (xa) {
        if (w) FN_BWD_APPLY_ACC(1, 1);
        else FN_BWD_APPLY_ACC(0, 1);
    } else {
        if (w) FN_BWD_APPLY_ACC(1, 0);
        else FN_BWD_APPLY_ACC(0, 0);
    }
#undef FN_BWD_APPLY_ACC
#undef FN_BWD_APPLY
#undef FN_BWD_APPLY_DS
}

static void NAME(backward_apply)(const T *dy, const T *x, T *dx, int64_t n, A mu, A c, A rstd,
                                 const W *w, A mg, A mgx, A *dw_acc, A *db_acc, const T *ds,
                                 const T *next_dy, const T *next_x, T *next_dx) {
    NAME(backward_apply_any)(dy, x, NULL, NULL, dx, n, mu, c, rstd, w, mg, mgx, dw_acc, db_acc,
                             ds, next_dy, next_x, next_dx);
}

static void NAME(backward_apply_wide)(const A *dya, const A *xa, T *dx, int64_t n, A mu, A c,
                                      A rstd, const W *w, A mg, A mgx, A *dw_acc, A *db_acc,
                                      const T *ds, const T *next_dy, const T *next_x,
                                      T *next_dx) {
    NAME(backward_apply_any)(NULL, NULL, dya, xa, dx, n, mu, c, rstd, w, mg, mgx, dw_acc,
                             db_acc, ds, next_dy, next_x, next_dx);
}

static void NAME(add)(A *dst, const A *src, int64_t n) {
    int64_t i = 0;
    for (; i + VN <= n; i += VN) VSTOREA(dst + i, VADD(VLOADA(dst + i), VLOADA(src + i)));
    for (; i < n; i++) dst[i] += src[i];
}

/* ---- channel primitives ----------------------------------------------- */

/* Segments (channels-first): scalar coefficients over contiguous elements. */

/* x as T, or (wide) its widened copy xa */
static FN_INLINE void NAME(scale_shift_body)(const T *x, const A *xa, T *y, int64_t n, A mu, A a,
                                             A b, const int acc, const int wide) {
    const V vmu = VSET1(mu), va = VSET1(a), vb = VSET1(b);
    int64_t i = 0;
    if (!acc) {
        const P pmu = PSET1(mu), pa = PSET1(a), pb = PSET1(b);
        for (; i + 2 * VN <= n; i += 2 * VN)
            PSTORE(y + i, PFMA(PSUB(FN_PLOAD(x, xa, i, wide), pmu), pa, pb));
    }
    for (; i + VN <= n; i += VN) {
        V v = VFMA(VSUB(FN_LOAD(x, xa, i, wide), vmu), va, vb);
        if (acc) v = VADD(v, VLOAD(y + i));
        VSTORE(y + i, v);
    }
    for (; i < n; i++) {
        A v = (FN_SLOAD(x, xa, i, wide) - mu) * a + b;
        if (acc) v += SLOAD(y + i);
        SSTORE(y + i, v);
    }
}

static void NAME(scale_shift)(const T *x, T *y, int64_t n, A mu, A a, A b, int accumulate) {
    if (accumulate) NAME(scale_shift_body)(x, NULL, y, n, mu, a, b, 1, 0);
    else NAME(scale_shift_body)(x, NULL, y, n, mu, a, b, 0, 0);
}

static void NAME(scale_shift_wide)(const A *xa, T *y, int64_t n, A mu, A a, A b) {
    NAME(scale_shift_body)(NULL, xa, y, n, mu, a, b, 0, 1);
}

/* One vector of dx = a * dy + (b * ((x - mu) * r) + k): (x - mu) * r first, the
 * normalized value, which neither overflows nor underflows where b * r or
 * (x - mu) * b could. Segments and rows of channels alike. */
#define FN_DEFINE_AFFINE_BACKWARD_VEC(FNAME, Q)                                            \
    static FN_INLINE Q FNAME(Q dy, Q x, Q mu, Q r, Q a, Q b, Q k) {                           \
        return Q##FMA(a, dy, Q##FMA(b, Q##MUL(Q##SUB(x, mu), r), k));                         \
    }
FN_DEFINE_AFFINE_BACKWARD_VEC(NAME(affine_backward_vec), V)
FN_DEFINE_AFFINE_BACKWARD_VEC(NAME(affine_backward_pair), P)
#undef FN_DEFINE_AFFINE_BACKWARD_VEC

static FN_INLINE void NAME(affine_backward_body)(const T *dy, const T *x, T *dx, int64_t n, A mu,
                                                 A r, A a, A b, A k, const int acc) {
    const V vmu = VSET1(mu), vr = VSET1(r), va = VSET1(a), vb = VSET1(b), vk = VSET1(k);
    int64_t i = 0;
    if (!acc) {
        const P pmu = PSET1(mu), pr = PSET1(r), pa = PSET1(a), pb = PSET1(b), pk = PSET1(k);
        for (; i + 2 * VN <= n; i += 2 * VN)
            PSTORE(dx + i, NAME(affine_backward_pair)(PLOAD(dy + i), PLOAD(x + i), pmu, pr, pa,
                                                       pb, pk));
    }
    for (; i + VN <= n; i += VN) {
        V v = NAME(affine_backward_vec)(VLOAD(dy + i), VLOAD(x + i), vmu, vr, va, vb, vk);
        if (acc) v = VADD(v, VLOAD(dx + i));
        VSTORE(dx + i, v);
    }
    for (; i < n; i++) {
        A xh = (SLOAD(x + i) - mu) * r;
        A v = a * SLOAD(dy + i) + (b * xh + k);
        if (acc) v += SLOAD(dx + i);
        SSTORE(dx + i, v);
    }
}

static void NAME(affine_backward)(const T *dy, const T *x, T *dx, int64_t n, A mu, A r, A a,
                                  A b, A k, int accumulate) {
    if (accumulate) NAME(affine_backward_body)(dy, x, dx, n, mu, r, a, b, k, 1);
    else NAME(affine_backward_body)(dy, x, dx, n, mu, r, a, b, k, 0);
}

/* Rows of channels (channels-last): coefficient vectors indexed by column.
 * The element-wise ones go one row at a time (pairing rows to share the
 * coefficient loads measured slower: four streams, and 4 KiB aliasing between
 * a row's stores and the next row's loads when a row is a multiple of 4 KiB);
 * the reductions take four rows per read-modify-write of their accumulators. Per column, the rows
 * are combined in the same order whatever the row count, so a result never
 * depends on how a caller splits its rows into calls of whole blocks. */

static FN_INLINE void NAME(scale_shift_cols_body)(const T *x, T *y, int64_t rows, int64_t n,
                                                  const A *mu, const A *a, const A *b,
                                                  const int acc) {
    int64_t r = 0;
    /* rows D on fetched meanwhile (see col_moments_acc_body); none for a single
     * row, which may be a part of a wider one */
    const int64_t D = rows > 1 ? fn_fetch_rows(n * (int64_t)sizeof(T)) : 0;
    for (; r < rows; r++) {
        const T *x0 = x + r * n;
        T *y0 = y + r * n;
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (D && i % FN_LINE_ELEMS == 0) {
                PREFETCH(FN_AHEAD(x0, D * n + i));
                PREFETCH_W(FN_AHEAD(y0, D * n + i));
            }
            V v0 = VFMA(VSUB(VLOAD(x0 + i), VLOADA(mu + i)), VLOADA(a + i), VLOADA(b + i));
            if (acc) v0 = VADD(v0, VLOAD(y0 + i));
            VSTORE(y0 + i, v0);
        }
        for (; i < n; i++) {
            A v0 = (SLOAD(x0 + i) - mu[i]) * a[i] + b[i];
            if (acc) v0 += SLOAD(y0 + i);
            SSTORE(y0 + i, v0);
        }
    }
}

static void NAME(scale_shift_cols)(const T *x, T *y, int64_t rows, int64_t n, const A *mu,
                                   const A *a, const A *b, int accumulate) {
    if (accumulate) NAME(scale_shift_cols_body)(x, y, rows, n, mu, a, b, 1);
    else NAME(scale_shift_cols_body)(x, y, rows, n, mu, a, b, 0);
}

static FN_INLINE void NAME(affine_backward_cols_body)(const T *dy, const T *x, T *dx,
                                                      int64_t rows, int64_t n, const A *mu,
                                                      const A *rs, const A *a, const A *b,
                                                      const A *k, const int acc) {
    int64_t r = 0;
    /* rows D on fetched meanwhile (see col_moments_acc_body) */
    const int64_t D = rows > 1 ? fn_fetch_rows(n * (int64_t)sizeof(T)) : 0;
    for (; r < rows; r++) {
        const T *x0 = x + r * n, *g0 = dy + r * n;
        T *d0 = dx + r * n;
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (D && i % FN_LINE_ELEMS == 0) {
                PREFETCH(FN_AHEAD(x0, D * n + i));
                PREFETCH(FN_AHEAD(g0, D * n + i));
                PREFETCH_W(FN_AHEAD(d0, D * n + i));
            }
            V v0 = NAME(affine_backward_vec)(VLOAD(g0 + i), VLOAD(x0 + i), VLOADA(mu + i),
                                             VLOADA(rs + i), VLOADA(a + i), VLOADA(b + i),
                                             VLOADA(k + i));
            if (acc) v0 = VADD(v0, VLOAD(d0 + i));
            VSTORE(d0 + i, v0);
        }
        for (; i < n; i++) {
            A v0 = a[i] * SLOAD(g0 + i) + (b[i] * ((SLOAD(x0 + i) - mu[i]) * rs[i]) + k[i]);
            if (acc) v0 += SLOAD(d0 + i);
            SSTORE(d0 + i, v0);
        }
    }
}

static void NAME(affine_backward_cols)(const T *dy, const T *x, T *dx, int64_t rows, int64_t n,
                                       const A *mu, const A *r, const A *a, const A *b,
                                       const A *k, int accumulate) {
    if (accumulate) NAME(affine_backward_cols_body)(dy, x, dx, rows, n, mu, r, a, b, k, 1);
    else NAME(affine_backward_cols_body)(dy, x, dx, rows, n, mu, r, a, b, k, 0);
}

/* Column sums over rows (ld elements apart), four rows per update of the
 * accumulators: acc += ((d0 + d1) + (d2 + d3)), acc2 = fma chain d0..d3;
 * leftover rows one at a time. */
static FN_INLINE void NAME(col_moments_acc_body)(const T *x, int64_t ld, int64_t rows, int64_t n,
                                                 const A *mu, A *acc_d, A *acc_d2,
                                                 const int has_mu, const int has_d2) {
    int64_t r = 0;
    /* Rows D on (fn_fetch_rows, at least the 4 rows of a step: none of this
     * step's) are fetched meanwhile. The last rows of the block fetch past its
     * end: the next block's rows where the block spans whole rows, otherwise
     * lines that may go unused, and past the data nothing (FN_AHEAD). */
    int64_t D = fn_fetch_rows(n * (int64_t)sizeof(T));
    if (D < 4) D = 4;
    for (; r + 4 <= rows; r += 4) {
        const T *x0 = x + r * ld, *x1 = x0 + ld, *x2 = x1 + ld, *x3 = x2 + ld;
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (i % FN_LINE_ELEMS == 0) {
                PREFETCH(FN_AHEAD(x0, D * ld + i));
                PREFETCH(FN_AHEAD(x1, D * ld + i));
                PREFETCH(FN_AHEAD(x2, D * ld + i));
                PREFETCH(FN_AHEAD(x3, D * ld + i));
            }
            V d0 = VLOAD(x0 + i), d1 = VLOAD(x1 + i), d2 = VLOAD(x2 + i), d3 = VLOAD(x3 + i);
            if (has_mu) {
                const V vmu = VLOADA(mu + i);
                d0 = VSUB(d0, vmu), d1 = VSUB(d1, vmu), d2 = VSUB(d2, vmu), d3 = VSUB(d3, vmu);
            }
            VSTOREA(acc_d + i, VADD(VLOADA(acc_d + i), VADD(VADD(d0, d1), VADD(d2, d3))));
            if (has_d2)
                VSTOREA(acc_d2 + i,
                        VFMA(d3, d3, VFMA(d2, d2, VFMA(d1, d1, VFMA(d0, d0, VLOADA(acc_d2 + i))))));
        }
        for (; i < n; i++) {
            A m = has_mu ? mu[i] : 0;
            A d0 = SLOAD(x0 + i) - m, d1 = SLOAD(x1 + i) - m, d2 = SLOAD(x2 + i) - m,
              d3 = SLOAD(x3 + i) - m;
            acc_d[i] += (d0 + d1) + (d2 + d3);
            if (has_d2) acc_d2[i] = d3 * d3 + (d2 * d2 + (d1 * d1 + (d0 * d0 + acc_d2[i])));
        }
    }
    for (; r < rows; r++) {
        const T *x0 = x + r * ld;
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            V d = VLOAD(x0 + i);
            if (has_mu) d = VSUB(d, VLOADA(mu + i));
            VSTOREA(acc_d + i, VADD(VLOADA(acc_d + i), d));
            if (has_d2) VSTOREA(acc_d2 + i, VFMA(d, d, VLOADA(acc_d2 + i)));
        }
        for (; i < n; i++) {
            A d = SLOAD(x0 + i);
            if (has_mu) d -= mu[i];
            acc_d[i] += d;
            if (has_d2) acc_d2[i] += d * d;
        }
    }
}

static void NAME(col_moments_acc)(const T *x, int64_t ld, int64_t rows, int64_t n, const A *mu,
                                  A *acc_d, A *acc_d2) {
    if (mu && acc_d2) NAME(col_moments_acc_body)(x, ld, rows, n, mu, acc_d, acc_d2, 1, 1);
    else if (mu) NAME(col_moments_acc_body)(x, ld, rows, n, mu, acc_d, acc_d2, 1, 0);
    else if (acc_d2) NAME(col_moments_acc_body)(x, ld, rows, n, mu, acc_d, acc_d2, 0, 1);
    else NAME(col_moments_acc_body)(x, ld, rows, n, mu, acc_d, acc_d2, 0, 0);
}

static FN_INLINE void NAME(col_backward_acc_body)(const T *dy, int64_t lddy, const T *x,
                                                  int64_t ldx, int64_t rows, int64_t n,
                                                  const A *mu, const A *rs, const W *w,
                                                  A *acc_dy, A *acc_dyd, A *acc_d,
                                                  const int has_d, const int has_w) {
    int64_t r = 0;
    /* rows D on fetched meanwhile, as in col_moments_acc_body (2 rows a step) */
    int64_t D = fn_fetch_rows(n * (int64_t)sizeof(T));
    if (D < 2) D = 2;
    for (; r + 2 <= rows; r += 2) {
        const T *x0 = x + r * ldx, *x1 = x0 + ldx, *g0 = dy + r * lddy, *g1 = g0 + lddy;
        const A w0 = has_w ? SWLOAD(w + r) : 1, w1 = has_w ? SWLOAD(w + r + 1) : 1;
        const V vw0 = VSET1(w0), vw1 = VSET1(w1);
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (i % FN_LINE_ELEMS == 0) {
                PREFETCH(FN_AHEAD(x0, D * ldx + i));
                PREFETCH(FN_AHEAD(x1, D * ldx + i));
                PREFETCH(FN_AHEAD(g0, D * lddy + i));
                PREFETCH(FN_AHEAD(g1, D * lddy + i));
            }
            const V vmu = VLOADA(mu + i), vr = VLOADA(rs + i);
            V gg0 = VLOAD(g0 + i), gg1 = VLOAD(g1 + i);
            if (has_w) gg0 = VMUL(gg0, vw0), gg1 = VMUL(gg1, vw1);
            V d0 = VMUL(VSUB(VLOAD(x0 + i), vmu), vr), d1 = VMUL(VSUB(VLOAD(x1 + i), vmu), vr);
            VSTOREA(acc_dy + i, VADD(VLOADA(acc_dy + i), VADD(gg0, gg1)));
            VSTOREA(acc_dyd + i, VFMA(gg1, d1, VFMA(gg0, d0, VLOADA(acc_dyd + i))));
            if (has_d) VSTOREA(acc_d + i, VADD(VLOADA(acc_d + i), VADD(d0, d1)));
        }
        for (; i < n; i++) {
            A gg0 = SLOAD(g0 + i), gg1 = SLOAD(g1 + i);
            if (has_w) gg0 *= w0, gg1 *= w1;
            A d0 = (SLOAD(x0 + i) - mu[i]) * rs[i], d1 = (SLOAD(x1 + i) - mu[i]) * rs[i];
            acc_dy[i] += gg0 + gg1;
            acc_dyd[i] = gg1 * d1 + (gg0 * d0 + acc_dyd[i]);
            if (has_d) acc_d[i] += d0 + d1;
        }
    }
    for (; r < rows; r++) {
        const T *x0 = x + r * ldx, *g0 = dy + r * lddy;
        const A w0 = has_w ? SWLOAD(w + r) : 1;
        const V vw0 = VSET1(w0);
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            V g = VLOAD(g0 + i);
            if (has_w) g = VMUL(g, vw0);
            V d = VMUL(VSUB(VLOAD(x0 + i), VLOADA(mu + i)), VLOADA(rs + i));
            VSTOREA(acc_dy + i, VADD(VLOADA(acc_dy + i), g));
            VSTOREA(acc_dyd + i, VFMA(g, d, VLOADA(acc_dyd + i)));
            if (has_d) VSTOREA(acc_d + i, VADD(VLOADA(acc_d + i), d));
        }
        for (; i < n; i++) {
            A g = SLOAD(g0 + i), d = (SLOAD(x0 + i) - mu[i]) * rs[i];
            if (has_w) g *= w0;
            acc_dy[i] += g;
            acc_dyd[i] += g * d;
            if (has_d) acc_d[i] += d;
        }
    }
}

static void NAME(col_backward_acc)(const T *dy, int64_t lddy, const T *x, int64_t ldx,
                                   int64_t rows, int64_t n, const A *mu, const A *rs,
                                   const W *w, A *acc_dy, A *acc_dyd, A *acc_d) {
#define FN_COL_BWD(HAS_D, HAS_W)                                                           \
    NAME(col_backward_acc_body)(dy, lddy, x, ldx, rows, n, mu, rs, w, acc_dy, acc_dyd, acc_d, \
                                HAS_D, HAS_W)
    if (acc_d && w) FN_COL_BWD(1, 1);
    else if (acc_d) FN_COL_BWD(1, 0);
    else if (w) FN_COL_BWD(0, 1);
    else FN_COL_BWD(0, 0);
#undef FN_COL_BWD
}

/* Columns normalized over the rows: per-column statistics (vectors), per-row
 * parameters (scalars). The arithmetic of an element is that of normalize:
 * fma(x - mu, r, k), then the affine step. */
static FN_INLINE V NAME(affine_row)(V t, V vw, V vb, const int has_w, const int has_b) {
    if (has_w && has_b) return VFMA(t, vw, vb);
    if (has_w) return VMUL(t, vw);
    if (has_b) return VADD(t, vb);
    return t;
}

static FN_INLINE void NAME(normalize_cols_body)(const T *x, int64_t ldx, T *y, int64_t ldy,
                                                int64_t rows, int64_t n, const A *mu,
                                                const A *rs, const A *k, const W *w,
                                                const W *b, const T *next_x, T *next_y,
                                                const int has_w, const int has_b) {
    int64_t r = 0;
    /* two rows share each load of the column coefficients; the rows of the
     * next block are fetched meanwhile, a cache line per 64 bytes of these */
    for (; r + 2 <= rows; r += 2) {
        const T *x0 = x + r * ldx, *x1 = x0 + ldx;
        T *y0 = y + r * ldy, *y1 = y0 + ldy;
        const A w0 = has_w ? SWLOAD(w + r) : 1, w1 = has_w ? SWLOAD(w + r + 1) : 1;
        const A b0 = has_b ? SWLOAD(b + r) : 0, b1 = has_b ? SWLOAD(b + r + 1) : 0;
        const V vw0 = VSET1(w0), vw1 = VSET1(w1), vb0 = VSET1(b0), vb1 = VSET1(b1);
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (next_x && i % FN_LINE_ELEMS == 0) {
                PREFETCH(next_x + r * ldx + i);
                PREFETCH(next_x + (r + 1) * ldx + i);
                PREFETCH_W(next_y + r * ldy + i);
                PREFETCH_W(next_y + (r + 1) * ldy + i);
            }
            const V vmu = VLOADA(mu + i), vr = VLOADA(rs + i), vk = VLOADA(k + i);
            V t0 = VFMA(VSUB(VLOAD(x0 + i), vmu), vr, vk);
            V t1 = VFMA(VSUB(VLOAD(x1 + i), vmu), vr, vk);
            VSTORE(y0 + i, NAME(affine_row)(t0, vw0, vb0, has_w, has_b));
            VSTORE(y1 + i, NAME(affine_row)(t1, vw1, vb1, has_w, has_b));
        }
        for (; i < n; i++) {
            A t0 = (SLOAD(x0 + i) - mu[i]) * rs[i] + k[i];
            A t1 = (SLOAD(x1 + i) - mu[i]) * rs[i] + k[i];
            if (has_w) t0 *= w0, t1 *= w1;
            if (has_b) t0 += b0, t1 += b1;
            SSTORE(y0 + i, t0);
            SSTORE(y1 + i, t1);
        }
    }
    for (; r < rows; r++) {
        const T *x0 = x + r * ldx;
        T *y0 = y + r * ldy;
        const A w0 = has_w ? SWLOAD(w + r) : 1, b0 = has_b ? SWLOAD(b + r) : 0;
        const V vw0 = VSET1(w0), vb0 = VSET1(b0);
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (next_x && i % FN_LINE_ELEMS == 0) {
                PREFETCH(next_x + r * ldx + i);
                PREFETCH_W(next_y + r * ldy + i);
            }
            V t0 = VFMA(VSUB(VLOAD(x0 + i), VLOADA(mu + i)), VLOADA(rs + i), VLOADA(k + i));
            VSTORE(y0 + i, NAME(affine_row)(t0, vw0, vb0, has_w, has_b));
        }
        for (; i < n; i++) {
            A t0 = (SLOAD(x0 + i) - mu[i]) * rs[i] + k[i];
            if (has_w) t0 *= w0;
            if (has_b) t0 += b0;
            SSTORE(y0 + i, t0);
        }
    }
}

static void NAME(normalize_cols)(const T *x, int64_t ldx, T *y, int64_t ldy, int64_t rows,
                                 int64_t n, const A *mu, const A *rs, const A *k, const W *w,
                                 const W *b, const T *next_x, T *next_y) {
#define FN_NORM_COLS(HAS_W, HAS_B)                                                         \
    NAME(normalize_cols_body)(x, ldx, y, ldy, rows, n, mu, rs, k, w, b, next_x, next_y,     \
                              HAS_W, HAS_B)
    if (w && b) FN_NORM_COLS(1, 1);
    else if (w) FN_NORM_COLS(1, 0);
    else if (b) FN_NORM_COLS(0, 1);
    else FN_NORM_COLS(0, 0);
#undef FN_NORM_COLS
}

/* The NB step of columns normalized over the rows; the element arithmetic is
 * that of backward_apply. A row's parameter sums are kept in vector
 * accumulators over its n columns and added to dw_acc / db_acc once. */
static FN_INLINE V NAME(backward_col_vec)(const T *dy, const T *x, T *dx, V vw, V vmu, V vr, V vc,
                                          V vmg, V vmgx, V *sw, V *sb, const int has_w,
                                          const int acc) {
    V xh = VSUB(VMUL(VSUB(VLOAD(x), vmu), vr), vc);
    V d = VLOAD(dy);
    V g = has_w ? VMUL(d, vw) : d;
    VSTORE(dx, VMUL(vr, VFNMA(xh, vmgx, VSUB(g, vmg))));
    if (acc >= 1) *sw = VFMA(d, xh, *sw);
    if (acc >= 2) *sb = VADD(*sb, d);
    return d;
}

static FN_INLINE void NAME(backward_col_tail)(const T *dy, const T *x, T *dx, int64_t i, int64_t n,
                                              A wr, const A *mu, const A *rs, const A *c,
                                              const A *mg, const A *mgx, A *tw, A *tb,
                                              const int has_w, const int acc) {
    for (; i < n; i++) {
        A xh = (SLOAD(x + i) - mu[i]) * rs[i] - c[i];
        A d = SLOAD(dy + i);
        A g = has_w ? d * wr : d;
        SSTORE(dx + i, rs[i] * ((g - mg[i]) - xh * mgx[i]));
        if (acc >= 1) *tw += d * xh;
        if (acc >= 2) *tb += d;
    }
}

static FN_INLINE void NAME(backward_apply_cols_body)(const T *dy, int64_t lddy, const T *x,
                                                     int64_t ldx, T *dx, int64_t lddx,
                                                     int64_t rows, int64_t n, const A *mu,
                                                     const A *rs, const A *c, const A *mg,
                                                     const A *mgx, const W *w, A *dw_acc,
                                                     A *db_acc, const T *next_dy,
                                                     const T *next_x, T *next_dx,
                                                     const int has_w, const int acc) {
    int64_t r = 0;
    /* two rows share each load of the column coefficients */
    for (; r + 2 <= rows; r += 2) {
        const T *x0 = x + r * ldx, *x1 = x0 + ldx, *g0 = dy + r * lddy, *g1 = g0 + lddy;
        T *d0 = dx + r * lddx, *d1 = d0 + lddx;
        const A w0 = has_w ? SWLOAD(w + r) : 1, w1 = has_w ? SWLOAD(w + r + 1) : 1;
        const V vw0 = VSET1(w0), vw1 = VSET1(w1);
        V sw0 = VZERO(), sb0 = VZERO(), sw1 = VZERO(), sb1 = VZERO();
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (next_x && i % FN_LINE_ELEMS == 0) {
                PREFETCH(next_x + r * ldx + i);
                PREFETCH(next_x + (r + 1) * ldx + i);
                PREFETCH(next_dy + r * lddy + i);
                PREFETCH(next_dy + (r + 1) * lddy + i);
                PREFETCH_W(next_dx + r * lddx + i);
                PREFETCH_W(next_dx + (r + 1) * lddx + i);
            }
            const V vmu = VLOADA(mu + i), vr = VLOADA(rs + i), vc = VLOADA(c + i),
                    vmg = VLOADA(mg + i), vmgx = VLOADA(mgx + i);
            NAME(backward_col_vec)(g0 + i, x0 + i, d0 + i, vw0, vmu, vr, vc, vmg, vmgx, &sw0,
                                   &sb0, has_w, acc);
            NAME(backward_col_vec)(g1 + i, x1 + i, d1 + i, vw1, vmu, vr, vc, vmg, vmgx, &sw1,
                                   &sb1, has_w, acc);
        }
        A tw0 = acc >= 1 ? VHSUM(sw0) : 0, tb0 = acc >= 2 ? VHSUM(sb0) : 0;
        A tw1 = acc >= 1 ? VHSUM(sw1) : 0, tb1 = acc >= 2 ? VHSUM(sb1) : 0;
        NAME(backward_col_tail)(g0, x0, d0, i, n, w0, mu, rs, c, mg, mgx, &tw0, &tb0, has_w, acc);
        NAME(backward_col_tail)(g1, x1, d1, i, n, w1, mu, rs, c, mg, mgx, &tw1, &tb1, has_w, acc);
        if (acc >= 1) dw_acc[r] += tw0, dw_acc[r + 1] += tw1;
        if (acc >= 2) db_acc[r] += tb0, db_acc[r + 1] += tb1;
    }
    for (; r < rows; r++) {
        const T *x0 = x + r * ldx, *g0 = dy + r * lddy;
        T *d0 = dx + r * lddx;
        const A w0 = has_w ? SWLOAD(w + r) : 1;
        const V vw0 = VSET1(w0);
        V sw0 = VZERO(), sb0 = VZERO();
        int64_t i = 0;
        for (; i + VN <= n; i += VN) {
            if (next_x && i % FN_LINE_ELEMS == 0) {
                PREFETCH(next_x + r * ldx + i);
                PREFETCH(next_dy + r * lddy + i);
                PREFETCH_W(next_dx + r * lddx + i);
            }
            NAME(backward_col_vec)(g0 + i, x0 + i, d0 + i, vw0, VLOADA(mu + i), VLOADA(rs + i),
                                   VLOADA(c + i), VLOADA(mg + i), VLOADA(mgx + i), &sw0, &sb0,
                                   has_w, acc);
        }
        A tw0 = acc >= 1 ? VHSUM(sw0) : 0, tb0 = acc >= 2 ? VHSUM(sb0) : 0;
        NAME(backward_col_tail)(g0, x0, d0, i, n, w0, mu, rs, c, mg, mgx, &tw0, &tb0, has_w, acc);
        if (acc >= 1) dw_acc[r] += tw0;
        if (acc >= 2) db_acc[r] += tb0;
    }
}

static void NAME(backward_apply_cols)(const T *dy, int64_t lddy, const T *x, int64_t ldx,
                                      T *dx, int64_t lddx, int64_t rows, int64_t n,
                                      const A *mu, const A *rs, const A *c, const A *mg,
                                      const A *mgx, const W *w, A *dw_acc, A *db_acc,
                                      const T *next_dy, const T *next_x, T *next_dx) {
#define FN_BWD_COLS(HAS_W, ACC)                                                            \
    NAME(backward_apply_cols_body)(dy, lddy, x, ldx, dx, lddx, rows, n, mu, rs, c, mg, mgx, w, \
                                   dw_acc, db_acc, next_dy, next_x, next_dx, HAS_W, ACC)
    const int acc = db_acc ? 2 : (dw_acc ? 1 : 0);
    if (w) {
        if (acc == 2) FN_BWD_COLS(1, 2);
        else if (acc == 1) FN_BWD_COLS(1, 1);
        else FN_BWD_COLS(1, 0);
    } else {
        if (acc == 2) FN_BWD_COLS(0, 2);
        else if (acc == 1) FN_BWD_COLS(0, 1);
        else FN_BWD_COLS(0, 0);
    }
#undef FN_BWD_COLS
}

static const PRIMS_TYPE NAME(table) = {
    NAME(sum),           NAME(centered_sums),  NAME(sum_sq), NAME(residual_add),
    NAME(normalize),     NAME(backward_sums),  NAME(backward_apply), NAME(add),
    NAME(scale_shift),   NAME(scale_shift_cols), NAME(affine_backward),
    NAME(affine_backward_cols), NAME(col_moments_acc), NAME(col_backward_acc),
    NAME(normalize_cols), NAME(backward_apply_cols), NAME(widen_sum),
    NAME(widen_sum_sq), NAME(centered_sums_wide), NAME(normalize_wide),
    NAME(backward_sums_wide), NAME(backward_apply_wide), NAME(scale_shift_wide),
    NAME(widen_sums_rows), FN_CENTERED_SUMS_WIDE_ROWS, FN_BACKWARD_SUMS2, FN_STAT_ROWS,
};
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
#undef FN_CHUNK
