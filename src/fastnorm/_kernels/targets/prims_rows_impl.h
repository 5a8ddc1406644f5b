/*
 * prims_rows_impl.h -- the row primitives of prims_impl.h's template: sums,
 * centered sums, the residual add, normalize, and the two passes of the
 * backward. Included by prims_impl.h only, with its macros in force.
 */

/* The sum of x (sq = 0) or of x^2 (sq = 1) over one chunk of up to FN_CHUNK
 * elements, of R rows at once (R = 1, 2 or FN_MAX_ROWS: out[k] for the row
 * x[k]); `widen` also writes each row, widened to A, to xa[k]. The rows share
 * the loop, not their accumulators: each row's sum is the same as alone.
 * Several rows give the processor independent chains of additions to
 * interleave. */
#define FN_SUM_STEP(Q, a, v) ((sq) ? Q##FMA(v, v, a) : Q##ADD(a, v))

/* The end of sum_chunk_rows's chunk of one row after its loop of four
 * vectors, from element i on, with that loop's accumulators a01 and a23 */
static FN_INLINE A NAME(sum_chunk_finish)(P a01, P a23, const T *x, A *xa, int64_t i, int64_t n,
                                          const int widen, const int sq) {
    int64_t j = i;
    V a0 = PLO(a01);
    const V a1 = PHI(a01), a2 = PLO(a23), a3 = PHI(a23);
    for (; j + VN <= n; j += VN) {
        V v = VLOAD(x + j);
        if (widen) VSTOREA(xa + j, v);
        a0 = FN_SUM_STEP(V, a0, v);
    }
    A s = VHSUM(VADD(VADD(a0, a1), VADD(a2, a3)));
    for (; j < n; j++) {
        A v = SLOAD(x + j);
        if (widen) xa[j] = v;
        s += sq ? v * v : v;
    }
    return s;
}

static FN_INLINE void NAME(sum_chunk_rows)(const T *const *x, A *const *xa, int64_t n,
                                           const int widen, const int sq, const int R,
                                           A *out) {
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
    for (int k = 0; k < R; k++)
        out[k] = NAME(sum_chunk_finish)(a01[k], a23[k], x[k], widen ? xa[k] : NULL, i, n, widen,
                                        sq);
}
#undef FN_SUM_STEP

/* One step of centered_chunk_rows's loop for one row at element i: its four
 * vectors' terms added to the accumulators s01, s23 (d) and q01, q23 (d^2) */
static FN_INLINE void NAME(centered_step)(P d01, P d23, P *s01, P *s23, P *q01, P *q23) {
    *s01 = PADD(*s01, d01);
    *s23 = PADD(*s23, d23);
    *q01 = PFMA(d01, d01, *q01);
    *q23 = PFMA(d23, d23, *q23);
}

/* The end of centered_chunk_rows's chunk of one row after its loop of four
 * vectors, from element i on */
static FN_INLINE void NAME(centered_chunk_finish)(P s01, P s23, P q01, P q23, const T *x,
                                                  const A *xa, int64_t i, int64_t n, A mu,
                                                  const int wide, A *sum_d, A *sum_d2) {
    const V vmu = VSET1(mu);
    int64_t j = i;
    V s0 = PLO(s01), q0 = PLO(q01);
    const V s1 = PHI(s01), s2 = PLO(s23), s3 = PHI(s23);
    const V q1 = PHI(q01), q2 = PLO(q23), q3 = PHI(q23);
    for (; j + VN <= n; j += VN) {
        V d = VSUB(FN_LOAD(x, xa, j, wide), vmu);
        s0 = VADD(s0, d);
        q0 = VFMA(d, d, q0);
    }
    A s = VHSUM(VADD(VADD(s0, s1), VADD(s2, s3)));
    A q = VHSUM(VADD(VADD(q0, q1), VADD(q2, q3)));
    for (; j < n; j++) {
        A d = FN_SLOAD(x, xa, j, wide) - mu;
        s += d;
        q += d * d;
    }
    *sum_d = s;
    *sum_d2 = q;
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
            NAME(centered_step)(d01, d23, &s01[k], &s23[k], &q01[k], &q23[k]);
        }
    }
    for (int k = 0; k < R; k++)
        NAME(centered_chunk_finish)(s01[k], s23[k], q01[k], q23[k], x[k], xa[k], i, n, mu[k],
                                    wide, &sum_d[k], &sum_d2[k]);
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
 * rows' centered sums need 16 accumulators, all of AVX2's registers, which
 * made the float16 LayerNorm slower; so do backward_sums2's six
 * (bench/choices.md, "Two rows' centered sums with 8-lane pairs"). */
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

static FN_INLINE void NAME(residual_add_one)(const T *x, const T *r, const W *bias, T *s,
                                             int64_t i, const int has_bias) {
    A v = SLOAD(x + i) + SLOAD(r + i);
    if (has_bias) v += SWLOAD(bias + i);
    SSTORE(s + i, v);
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
    for (; i < n; i++) NAME(residual_add_one)(x, r, bias, s, i, has_bias);
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

/* One element of normalize_body, with the operations each lane of its vectors
 * gets: a head or tail element has the bits it would have in a vector. */
static FN_INLINE void NAME(normalize_one)(const T *x, const A *xa, T *y, int64_t i, A mu, A rstd,
                                          A cr, const W *w, const W *b, const int has_w,
                                          const int has_b, const int wide) {
    A t = SFMA(FN_SLOAD(x, xa, i, wide) - mu, rstd, -cr);
    if (has_w && has_b) t = SFMA(t, SWLOAD(w + i), SWLOAD(b + i));
    else if (has_w) t *= SWLOAD(w + i);
    else if (has_b) t += SWLOAD(b + i);
    SSTORE(y + i, t);
}

/* One step of four vectors of another row's statistics pass at element j, as
 * its own pass takes it: its sum of squares (sums = 1, sum_chunk_rows's step)
 * into a01, a23, or its sums around the shift (sums = 2, centered_step) into
 * a01, a23 (d) and q01, q23 (d^2) */
static FN_INLINE void NAME(stats_step)(const T *sx, int64_t j, P pshift, P *a01, P *a23, P *q01,
                                       P *q23, const int sums) {
    const P v01 = PLOAD(sx + j), v23 = PLOAD(sx + j + 2 * VN);
    if (sums == 1) {
        *a01 = PFMA(v01, v01, *a01);
        *a23 = PFMA(v23, v23, *a23);
    } else {
        NAME(centered_step)(PSUB(v01, pshift), PSUB(v23, pshift), a01, a23, q01, q23);
    }
}

/* normalize's loop; nt: y written with streaming stores (the pairs' loop
 * alone runs: y on a line boundary, n whole lines), the next y row not
 * fetched. sums (with nt; 0: none) the statistics pass of another row's sn
 * elements from sx in the same loop, its steps of four vectors in the order
 * of its own pass: its sum of squares (sums = 1, as sum_sq) or its sums
 * around sshift (sums = 2, as centered_sums) into ssum[0] (and ssum[1]). */
static FN_INLINE void NAME(normalize_body)(const T *x, const A *xa, T *y, int64_t n, A mu, A c,
                                           A rstd, const W *w, const W *b, const T *next,
                                           T *next_y, const T *sx, int64_t sn, A sshift,
                                           A *ssum, const int has_w, const int has_b,
                                           const int wide, const int nonan, const int nt,
                                           const int sums) {
    /* ((x - mu) - c) * rstd as (x - mu) * rstd - c * rstd: x - mu is exact for
     * the large-mean rows where it matters, and one fma replaces two operations */
    const A cr = c * rstd;
    const V vmu = VSET1(mu), vr = VSET1(rstd), vcr = VSET1(-cr);
    const P pmu = PSET1(mu), pr = PSET1(rstd), pcr = PSET1(-cr);
    int64_t i = 0;
    /* one cache line of the rows `next` and `next_y` (some rows ahead, see
     * fn_fetch_rows) is fetched per 64 bytes of this one: their loads and their
     * stores' line fills (read for ownership) overlap this row's arithmetic.
     * Long streamed rows fetch into L2 (FN_STREAM_FETCH_L2_BYTES), as do rows
     * that take another row's statistics meanwhile: that row is read from L1
     * while the one after it is fetched (bench/choices.md, "The next row's
     * statistics in the loops of a row"). */
    const int to_l2 = nt && (sums || n * (int64_t)(sizeof(T) + (has_w + has_b) * sizeof(W)) >
                                         FN_STREAM_FETCH_L2_BYTES);
#define FN_NORM_PAIR()                                                                      \
    do {                                                                                    \
        if (next && i % FN_LINE_ELEMS == 0) {                                               \
            if (to_l2) FN_PREFETCH_L2(next + i);                                            \
            else PREFETCH(next + i);                                                        \
            if (!nt) PREFETCH_W(next_y + i);                                                \
        }                                                                                   \
        P t = PFMA(PSUB(FN_PLOAD(x, xa, i, wide), pmu), pr, pcr);                           \
        t = NAME(affine_pair)(t, w + i, b + i, has_w, has_b);                               \
        if (nt) PSTORE_NT(y + i, t);                                                        \
        else if (nonan) PSTORE_NONAN(y + i, t);                                             \
        else PSTORE(y + i, t);                                                              \
    } while (0)
    if (sums) {
        /* the other row by chunks of FN_CHUNK elements, as its own pass takes
         * them (sum_rows_r, centered_rows_r): in each, its steps of four
         * vectors beside this row's pairs at the same elements, then the
         * steps beyond this row's last pair and the chunk's last elements;
         * the chunks' sums added in double */
        const P pshift = PSET1(sshift);
        double total[2] = {0, 0};
        A part[2] = {0, 0};
        for (int64_t cs = 0; cs < sn; cs += FN_CHUNK) {
            const int64_t ce = sn - cs < FN_CHUNK ? sn : cs + FN_CHUNK;
            P a01 = PZERO(), a23 = PZERO(), q01 = PZERO(), q23 = PZERO();
            int64_t j = cs;
            for (; i + 2 * VN <= n && i < ce; i += 2 * VN) {
                if (i == j && j + 4 * VN <= ce) {
                    NAME(stats_step)(sx, j, pshift, &a01, &a23, &q01, &q23, sums);
                    j += 4 * VN;
                }
                FN_NORM_PAIR();
            }
            for (; j + 4 * VN <= ce; j += 4 * VN)
                NAME(stats_step)(sx, j, pshift, &a01, &a23, &q01, &q23, sums);
            if (sums == 1) part[0] = NAME(sum_chunk_finish)(a01, a23, sx, NULL, j, ce, 0, 1);
            else NAME(centered_chunk_finish)(a01, a23, q01, q23, sx, NULL, j, ce, sshift, 0,
                                             &part[0], &part[1]);
            total[0] += part[0];
            total[1] += part[1];
        }
        ssum[0] = sn <= FN_CHUNK ? part[0] : (A)total[0];
        ssum[1] = sn <= FN_CHUNK ? part[1] : (A)total[1];
    }
    for (; i + 2 * VN <= n; i += 2 * VN) FN_NORM_PAIR();
#undef FN_NORM_PAIR
    if (nt) return;
    for (; i + VN <= n; i += VN) {
        V t = VFMA(VSUB(FN_LOAD(x, xa, i, wide), vmu), vr, vcr);
        VSTORE(y + i, NAME(affine)(t, w + i, b + i, has_w, has_b));
    }
    for (; i < n; i++) NAME(normalize_one)(x, xa, y, i, mu, rstd, cr, w, b, has_w, has_b, wide);
}

/* normalize (nt = 0) or normalize_stream (nt = 1) */
static FN_INLINE void NAME(normalize_as)(const T *x, T *y, int64_t n, A mu, A c, A rstd,
                                         const W *w, const W *b, const T *next, T *next_y,
                                         const int nt) {
#define FN_NORM(HAS_W, HAS_B)                                                               \
    NAME(normalize_body)(x, NULL, y, n, mu, c, rstd, w, b, next, next_y, NULL, 0, 0, NULL,    \
                         HAS_W, HAS_B, 0, 0, nt, 0)
    if (w && b) FN_NORM(1, 1);
    else if (w) FN_NORM(1, 0);
    else if (b) FN_NORM(0, 1);
    else FN_NORM(0, 0);
#undef FN_NORM
}

static void NAME(normalize)(const T *x, T *y, int64_t n, A mu, A c, A rstd, const W *w,
                            const W *b, const T *next, T *next_y) {
    NAME(normalize_as)(x, y, n, mu, c, rstd, w, b, next, next_y, 0);
}

#ifdef PSTORE_NT
/* normalize with streaming stores: the pairs' loop alone runs, over whole
 * lines from a line boundary (prims.h), each pair in one or two aligned
 * streaming stores */
static void NAME(normalize_stream)(const T *x, T *y, int64_t n, A mu, A c, A rstd, const W *w,
                                   const W *b, const T *next, const T *sx, int64_t sn,
                                   A sshift, int sums, A ssum[2]) {
#define FN_NORM(HAS_W, HAS_B, SUMS)                                                         \
    NAME(normalize_body)(x, NULL, y, n, mu, c, rstd, w, b, next, NULL, sx, sn, sshift, ssum,  \
                         HAS_W, HAS_B, 0, 0, 1, SUMS)
#define FN_NORM_SUMS(HAS_W, HAS_B)                                                          \
    do {                                                                                    \
        if (sums == 1) FN_NORM(HAS_W, HAS_B, 1);                                            \
        else if (sums == 2) FN_NORM(HAS_W, HAS_B, 2);                                       \
        else FN_NORM(HAS_W, HAS_B, 0);                                                      \
    } while (0)
    if (!sx) sums = 0;
    if (w && b) FN_NORM_SUMS(1, 1);
    else if (w) FN_NORM_SUMS(1, 0);
    else if (b) FN_NORM_SUMS(0, 1);
    else FN_NORM_SUMS(0, 0);
#undef FN_NORM_SUMS
#undef FN_NORM
}
#define FN_NORMALIZE_STREAM NAME(normalize_stream)
#else
#define PSTORE_NT(p, v) PSTORE(p, v) /* not reached: no normalize_stream */
#define FN_PSTORE_NT_NONE
#define FN_NORMALIZE_STREAM NULL
#endif

/* Short rows' statistics and normalize, one call for many rows (prims.h):
 * the per-row calls and their setup are most of a short row's time */
static void NAME(stats_rows)(const T *x, int64_t ldx, int64_t rows, int64_t n, int64_t m,
                             int centered, A *first, A (*sums)[2], int64_t ahead,
                             int64_t avail) {
    for (int64_t k = 0; k < rows; k++) {
        const T *xr = x + k * ldx;
        if (k + ahead < avail)
            for (int64_t j = 0; j < n; j += FN_LINE_ELEMS) PREFETCH(xr + ahead * ldx + j);
        if (centered == 1) {
            first[k] = NAME(sum)(xr, m) / (A)m;
            NAME(centered_sums)(xr, n, first[k], &sums[k][0], &sums[k][1]);
        } else if (centered == 2) {
            first[k] = NAME(sum)(xr, n);
            NAME(centered_sums)(xr, n, first[k] / (A)n, &sums[k][0], &sums[k][1]);
        } else {
            sums[k][0] = NAME(sum_sq)(xr, n);
        }
    }
}

static void NAME(normalize_rows)(const T *x, int64_t ldx, T *y, int64_t ldy, int64_t rows,
                                 int64_t n, const A *mu, const A *c, const A *rstd, const W *w,
                                 const W *b, int64_t ahead, int64_t avail) {
#define FN_NORM(HAS_W, HAS_B)                                                               \
    do {                                                                                    \
        for (int64_t k = 0; k < rows; k++) {                                                \
        const int more = k + ahead < avail;                                                 \
        NAME(normalize_body)(x + k * ldx, NULL, y + k * ldy, n, mu[k], c[k], rstd[k], w, b,  \
                             more ? x + (k + ahead) * ldx : NULL,                          \
                             more ? y + (k + ahead) * ldy : NULL, NULL, 0, 0, NULL, HAS_W,  \
                             HAS_B, 0, 0, 0, 0);                                            \
        }                                                                                   \
    } while (0)
    if (w && b) FN_NORM(1, 1);
    else if (w) FN_NORM(1, 0);
    else if (b) FN_NORM(0, 1);
    else FN_NORM(0, 0);
#undef FN_NORM
}

static void NAME(normalize_wide)(const A *xa, T *y, int64_t n, A mu, A c, A rstd, const W *w,
                                 const W *b, const T *next, T *next_y, int nonan) {
#define FN_NORM(HAS_W, HAS_B, NONAN)                                                        \
    NAME(normalize_body)(NULL, xa, y, n, mu, c, rstd, w, b, next, next_y, NULL, 0, 0, NULL, HAS_W, \
                         HAS_B, 1, NONAN, 0, 0)
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

/* One pair of backward_sums's loop at element i, from the x (vx) and dy (gg)
 * loaded there: its terms added to the row's accumulators g, pp and h. */
static FN_INLINE void NAME(backward_sums_pair)(P vx, P gg, const W *w, int64_t i, P pmu, P pr,
                                               P *g, P *pp, P *h, const int has_w) {
    const P xh = PMUL(PSUB(vx, pmu), pr);
    if (has_w) gg = PMUL(gg, PWLOAD(w + i));
    *g = PADD(*g, gg);
    *pp = PFMA(gg, xh, *pp);
    *h = PADD(*h, xh);
}

/* The end of backward_sums's row after its pairs: the accumulators' halves
 * added, then a last whole vector of elements (the pairs' step on one
 * vector), the lanes added, and the elements left one at a time (all also
 * widened into dya and xa with `widen`). */
static FN_INLINE void NAME(backward_sums_finish)(P g, P pp, P h, const T *dy, const T *x,
                                                 A *dya, A *xa, int64_t i, int64_t n, A mu,
                                                 A rstd, const W *w, A sums[3],
                                                 const int has_w, const int widen) {
    V vg = VADD(PLO(g), PHI(g)), vp = VADD(PLO(pp), PHI(pp)), vh = VADD(PLO(h), PHI(h));
    if (i + VN <= n) {
        const V vx = VLOAD(x + i);
        V gj = VLOAD(dy + i);
        if (widen) {
            VSTOREA(xa + i, vx);
            VSTOREA(dya + i, gj);
        }
        const V xh = VMUL(VSUB(vx, VSET1(mu)), VSET1(rstd));
        if (has_w) gj = VMUL(gj, WLOAD(w + i));
        vg = VADD(vg, gj);
        vp = VFMA(gj, xh, vp);
        vh = VADD(vh, xh);
        i += VN;
    }
    A sg = VHSUM(vg), sp = VHSUM(vp), sh = VHSUM(vh);
    for (int64_t j = i; j < n; j++) {
        const A xv = SLOAD(x + j);
        A gj = SLOAD(dy + j);
        if (widen) {
            xa[j] = xv;
            dya[j] = gj;
        }
        A xh = (xv - mu) * rstd;
        if (has_w) gj *= SWLOAD(w + j);
        sg += gj;
        sp += gj * xh;
        sh += xh;
    }
    sums[0] = sg;
    sums[1] = sp;
    sums[2] = sh;
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
            const P gg = PLOAD(dy[k] + i);
            if (widen) {
                PSTOREA(xa[k] + i, vx);
                PSTOREA(dya[k] + i, gg);
            }
            NAME(backward_sums_pair)(vx, gg, w, i, pmu[k], pr[k], &g[k], &pp[k], &h[k], has_w);
        }
    }
    for (int k = 0; k < R; k++)
        NAME(backward_sums_finish)(g[k], pp[k], h[k], dy[k], x[k], widen ? dya[k] : NULL,
                                   widen ? xa[k] : NULL, i, n, mu[k], rstd[k], w, sums[k],
                                   has_w, widen);
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
 * write as one 512-bit vector is slower than as two 256-bit halves, and
 * faster where they do stay (bench/choices.md, "Parameter partials of a
 * 512-bit pair"). The same sums either way. */
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

/* One element of backward_apply_body, with the operations each lane of its
 * vectors gets (see normalize_one). */
static FN_INLINE void NAME(backward_apply_one)(const T *dy, const T *x, const A *dya,
                                               const A *xa, T *dx, int64_t i, A mu, A c,
                                               A rstd, const W *w, A mg, A mgx, A *dw_acc,
                                               A *db_acc, const T *ds, const int has_w,
                                               const int acc, const int wide,
                                               const int has_ds) {
    const A xh = (FN_SLOAD(x, xa, i, wide) - mu) * rstd - c;
    const A d = FN_SLOAD(dy, dya, i, wide);
    const A g = has_w ? d * SWLOAD(w + i) : d;
    A v = rstd * SFNMA(xh, mgx, g - mg);
    if (has_ds) v += SLOAD(ds + i);
    SSTORE(dx + i, v);
    if (acc >= 1) dw_acc[i] = SFMA(d, xh, dw_acc[i]);
    if (acc >= 2) db_acc[i] += d;
}

/* backward_apply's loop; nt: dx written with streaming stores (the pairs'
 * loop alone runs: dx on a line boundary, n whole lines), the next dx row not
 * fetched. with_sums (with nt): in the same loop, backward_sums's sums of the
 * sn elements of another row from sdy, sx (mean smu, rstd srstd, weight sw)
 * into sums, its pairs in the order backward_sums takes them. */
static FN_INLINE void NAME(backward_apply_body)(const T *dy, const T *x, const A *dya,
                                                const A *xa, T *dx, int64_t n, A mu, A c,
                                                A rstd, const W *w, A mg, A mgx, A *dw_acc,
                                                A *db_acc, const T *ds, const T *next_dy,
                                                const T *next_x, T *next_dx, const T *sdy,
                                                const T *sx, int64_t sn, const W *sw, A smu,
                                                A srstd, A *sums, const int has_w,
                                                const int acc, const int wide,
                                                const int has_ds, const int split,
                                                const int nt, const int with_sums) {
    const V vmu = VSET1(mu), vc = VSET1(c), vr = VSET1(rstd), vmg = VSET1(mg),
            vmgx = VSET1(mgx);
    const P pmu = PSET1(mu), pc = PSET1(c), pr = PSET1(rstd), pmg = PSET1(mg),
            pmgx = PSET1(mgx);
    P sg = PZERO(), spp = PZERO(), sh = PZERO();
    const P spmu = PSET1(smu), spr = PSET1(srstd);
    int64_t i = 0;
    /* one cache line of the rows next_dy, next_x and next_dx (some rows ahead)
     * per 64 bytes of these */
    for (; i + 2 * VN <= n; i += 2 * VN) {
        if (next_x && i % FN_LINE_ELEMS == 0) {
            PREFETCH(next_x + i);
            PREFETCH(next_dy + i);
            if (!nt) PREFETCH_W(next_dx + i);
        }
        if (with_sums && i + 2 * VN <= sn)
            NAME(backward_sums_pair)(PLOAD(sx + i), PLOAD(sdy + i), sw, i, spmu, spr, &sg, &spp,
                                     &sh, has_w);
        P d, xh;
        const P v = NAME(backward_apply_pair)(dy, x, dya, xa, ds, i, w, pmu, pc, pr, pmg, pmgx,
                                              &d, &xh, has_w, wide, has_ds);
        if (nt) PSTORE_NT(dx + i, v);
        else PSTORE(dx + i, v);
        NAME(backward_acc_pair)(dw_acc + i, db_acc + i, d, xh, acc, split);
    }
    if (with_sums) {
        /* the other row's pairs beyond dx's, then its last elements */
        int64_t j = sn - sn % (2 * VN);
        if (i < j) j = i;
        for (; j + 2 * VN <= sn; j += 2 * VN)
            NAME(backward_sums_pair)(PLOAD(sx + j), PLOAD(sdy + j), sw, j, spmu, spr, &sg, &spp,
                                     &sh, has_w);
        NAME(backward_sums_finish)(sg, spp, sh, sdy, sx, NULL, NULL, j, sn, smu, srstd, sw, sums,
                                   has_w, 0);
    }
    if (nt) return;
    for (; i + VN <= n; i += VN) {
        V d, xh;
        VSTORE(dx + i, NAME(backward_apply_vec)(dy, x, dya, xa, ds, i, w, vmu, vc, vr, vmg, vmgx,
                                                &d, &xh, has_w, wide, has_ds));
        NAME(backward_acc_vec)(dw_acc + i, db_acc + i, d, xh, acc);
    }
    for (; i < n; i++)
        NAME(backward_apply_one)(dy, x, dya, xa, dx, i, mu, c, rstd, w, mg, mgx, dw_acc, db_acc,
                                 ds, has_w, acc, wide, has_ds);
}

static void NAME(backward_apply_any)(const T *dy, const T *x, const A *dya, const A *xa, T *dx,
                                     int64_t n, A mu, A c, A rstd, const W *w, A mg, A mgx,
                                     A *dw_acc, A *db_acc, const T *ds, const T *next_dy,
                                     const T *next_x, T *next_dx, const int nt, const T *sdy,
                                     const T *sx, int64_t sn, const W *sw, A smu, A srstd,
                                     A *sums) {
#define FN_BWD_APPLY_BODY(HAS_W, ACC, WIDE, HAS_DS, SPLIT, NT, SUMS)                        \
    NAME(backward_apply_body)(dy, x, dya, xa, dx, n, mu, c, rstd, w, mg, mgx, dw_acc, db_acc, \
                              ds, next_dy, next_x, next_dx, sdy, sx, sn, sw, smu, srstd,    \
                              sums, HAS_W, ACC, WIDE, HAS_DS, SPLIT, NT, SUMS)
    /* streaming stores (and the other row's sums) with rows read as stored only */
#define FN_BWD_APPLY_SUMS(HAS_W, ACC, WIDE, HAS_DS, SPLIT)                                 \
    do {                                                                                   \
        if (!(WIDE) && nt && sdy) FN_BWD_APPLY_BODY(HAS_W, ACC, WIDE, HAS_DS, SPLIT, 1, 1);  \
        else if (!(WIDE) && nt) FN_BWD_APPLY_BODY(HAS_W, ACC, WIDE, HAS_DS, SPLIT, 1, 0);    \
        else FN_BWD_APPLY_BODY(HAS_W, ACC, WIDE, HAS_DS, SPLIT, 0, 0);                     \
    } while (0)
#define FN_BWD_APPLY_DS(HAS_W, ACC, WIDE, SPLIT)                                           \
    do {                                                                                   \
        if (ds) FN_BWD_APPLY_SUMS(HAS_W, ACC, WIDE, 1, SPLIT);                             \
        else FN_BWD_APPLY_SUMS(HAS_W, ACC, WIDE, 0, SPLIT);                                \
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
#undef FN_BWD_APPLY_SUMS
#undef FN_BWD_APPLY_BODY
}

static void NAME(backward_apply)(const T *dy, const T *x, T *dx, int64_t n, A mu, A c, A rstd,
                                 const W *w, A mg, A mgx, A *dw_acc, A *db_acc, const T *ds,
                                 const T *next_dy, const T *next_x, T *next_dx) {
    NAME(backward_apply_any)(dy, x, NULL, NULL, dx, n, mu, c, rstd, w, mg, mgx, dw_acc, db_acc,
                             ds, next_dy, next_x, next_dx, 0, NULL, NULL, 0, NULL, 0, 0, NULL);
}

static void NAME(backward_apply_wide)(const A *dya, const A *xa, T *dx, int64_t n, A mu, A c,
                                      A rstd, const W *w, A mg, A mgx, A *dw_acc, A *db_acc,
                                      const T *ds, const T *next_dy, const T *next_x,
                                      T *next_dx) {
    NAME(backward_apply_any)(NULL, NULL, dya, xa, dx, n, mu, c, rstd, w, mg, mgx, dw_acc,
                             db_acc, ds, next_dy, next_x, next_dx, 0, NULL, NULL, 0, NULL, 0, 0,
                             NULL);
}

#ifndef FN_PSTORE_NT_NONE
/* backward_apply with dx written by streaming stores, and the sums of another
 * row in the same loop (prims.h) */
static void NAME(backward_apply_stream)(const T *dy, const T *x, T *dx, int64_t n, A mu, A c,
                                        A rstd, const W *w, A mg, A mgx, A *dw_acc, A *db_acc,
                                        const T *ds, const T *next_dy, const T *next_x,
                                        const T *sdy, const T *sx, int64_t sn, const W *sw,
                                        A smu, A srstd, A sums[3]) {
    NAME(backward_apply_any)(dy, x, NULL, NULL, dx, n, mu, c, rstd, w, mg, mgx, dw_acc, db_acc,
                             ds, next_dy, next_x, NULL, 1, sdy, sx, sn, sw, smu, srstd, sums);
}
#define FN_BACKWARD_APPLY_STREAM NAME(backward_apply_stream)
#else
#define FN_BACKWARD_APPLY_STREAM NULL
#endif

/* BODY(HAS_W, ACC, HAS_DS) with compile-time flags for the w, the partials
 * dw_acc / db_acc (ACC: 0 neither, 1 dw_acc, 2 both) and the ds in scope */
#define FN_BWD_FLAGS_DS(BODY, HAS_W, ACC)                                                   \
    do {                                                                                    \
        if (ds) BODY(HAS_W, ACC, 1);                                                        \
        else BODY(HAS_W, ACC, 0);                                                           \
    } while (0)
#define FN_BWD_FLAGS_ACC(BODY, HAS_W)                                                       \
    do {                                                                                    \
        if (db_acc) FN_BWD_FLAGS_DS(BODY, HAS_W, 2);                                        \
        else if (dw_acc) FN_BWD_FLAGS_DS(BODY, HAS_W, 1);                                   \
        else FN_BWD_FLAGS_DS(BODY, HAS_W, 0);                                               \
    } while (0)
#define FN_BWD_FLAGS(BODY)                                                                  \
    do {                                                                                    \
        if (w) FN_BWD_FLAGS_ACC(BODY, 1);                                                   \
        else FN_BWD_FLAGS_ACC(BODY, 0);                                                     \
    } while (0)

/* Short rows' backward, many rows in one call (prims.h) */
static void NAME(backward_sums_block)(const T *dy, int64_t lddy, const T *x, int64_t ldx,
                                      int64_t rows, int64_t n, const A *mu, const A *rstd,
                                      const W *w, A (*sums)[3], int64_t ahead, int64_t avail) {
    for (int64_t k = 0; k < rows; k++) {
        if (k + ahead < avail) {
            for (int64_t j = 0; j < n; j += FN_LINE_ELEMS) {
                PREFETCH(dy + (k + ahead) * lddy + j);
                PREFETCH(x + (k + ahead) * ldx + j);
            }
        }
        /* backward_sums, inline */
        const T *dyk = dy + k * lddy, *xk = x + k * ldx;
        A *none = NULL;
        NAME(backward_sums_r)(&dyk, &xk, &none, &none, n, mu + k, rstd + k, w, sums + k, 1);
    }
}

static void NAME(backward_apply_block)(const T *dy, int64_t lddy, const T *x, int64_t ldx,
                                       T *dx, int64_t lddx, const T *ds, int64_t ldds,
                                       int64_t rows, int64_t n, const A *mu, const A *c,
                                       const A *rstd, const W *w, const A *mg, const A *mgx,
                                       A *dw_acc, A *db_acc, int64_t ahead, int64_t avail) {
    /* the partials updated as one vector per pair (split = 0: the same sums as
     * split, see backward_acc_pair; a short row's partials stay in L1) */
#define FN_BWD_BLOCK(HAS_W, ACC, HAS_DS)                                                    \
    do {                                                                                    \
        for (int64_t k = 0; k < rows; k++) {                                                \
            const int more = k + ahead < avail;                                             \
            NAME(backward_apply_body)(                                                      \
                dy + k * lddy, x + k * ldx, NULL, NULL, dx + k * lddx, n, mu[k], c[k],       \
                rstd[k], w, mg[k], mgx[k], dw_acc, db_acc, (HAS_DS) ? ds + k * ldds : NULL,  \
                more ? dy + (k + ahead) * lddy : NULL, more ? x + (k + ahead) * ldx : NULL,   \
                more ? dx + (k + ahead) * lddx : NULL, NULL, NULL, 0, NULL, 0, 0, NULL,     \
                HAS_W, ACC, 0, HAS_DS, 0, 0, 0);                                            \
        }                                                                                   \
    } while (0)
    FN_BWD_FLAGS(FN_BWD_BLOCK);
#undef FN_BWD_BLOCK
}

/* backward_apply of FN_MAX_ROWS rows at once, read as stored: row k's dy[k],
 * x[k], dx[k], ds[k] (ds NULL: none) and constants mu[k], c[k], rstd[k],
 * mg[k], mgx[k]. Column by column, the weight and the partials of a vector
 * are loaded once and take the rows' terms in row order, as backward_apply
 * called row after row adds them: every dx and partial has the bits it has
 * there. Long rows' partials and weight do not stay in L1 next to the row;
 * one read-modify-write of them per FN_MAX_ROWS rows instead of one per row
 * is what this saves (bench/choices.md, "Rows of the backward together").
 * The widest vector of one register steps: P where it is one, else V. */
#ifdef FN_DEFAULT_PAIR
#define FN_RQ V
#define FN_RQN VN
#define FN_RQOP(op) V##op
#define FN_RQAPPLY NAME(backward_apply_vec)
#else
#define FN_RQ P
#define FN_RQN (2 * VN)
#define FN_RQOP(op) P##op
#define FN_RQAPPLY NAME(backward_apply_pair)
#endif
static FN_INLINE void NAME(backward_apply_rows_body)(const T *const *dy, const T *const *x,
                                                     T *const *dx, int64_t n, const A *mu,
                                                     const A *c, const A *rstd, const W *w,
                                                     const A *mg, const A *mgx, A *dw_acc,
                                                     A *db_acc, const T *const *ds,
                                                     const int has_w, const int acc,
                                                     const int has_ds) {
    enum { R = FN_MAX_ROWS };
    FN_RQ qmu[R], qc[R], qr[R], qmg[R], qmgx[R];
    for (int k = 0; k < R; k++) {
        qmu[k] = FN_RQOP(SET1)(mu[k]);
        qc[k] = FN_RQOP(SET1)(c[k]);
        qr[k] = FN_RQOP(SET1)(rstd[k]);
        qmg[k] = FN_RQOP(SET1)(mg[k]);
        qmgx[k] = FN_RQOP(SET1)(mgx[k]);
    }
    int64_t i = 0;
    for (; i + FN_RQN <= n; i += FN_RQN) {
        FN_RQ aw = FN_RQOP(ZERO)(), ab = FN_RQOP(ZERO)();
        if (acc >= 1) aw = FN_RQOP(LOADA)(dw_acc + i);
        if (acc >= 2) ab = FN_RQOP(LOADA)(db_acc + i);
        /* every row's loads before the stores: a store to one row's dx could
         * be the same address as a later row's dy or x (or the weight) as far
         * as the compiler knows, and would have to wait for those loads */
        FN_RQ v[R];
        for (int k = 0; k < R; k++) {
            FN_RQ d, xh;
            v[k] = FN_RQAPPLY(dy[k], x[k], NULL, NULL, has_ds ? ds[k] : NULL, i, w, qmu[k],
                              qc[k], qr[k], qmg[k], qmgx[k], &d, &xh, has_w, 0, has_ds);
            if (acc >= 1) aw = FN_RQOP(FMA)(d, xh, aw);
            if (acc >= 2) ab = FN_RQOP(ADD)(ab, d);
        }
        for (int k = 0; k < R; k++) FN_RQOP(STORE)(dx[k] + i, v[k]);
        if (acc >= 1) FN_RQOP(STOREA)(dw_acc + i, aw);
        if (acc >= 2) FN_RQOP(STOREA)(db_acc + i, ab);
    }
    /* the rest one element at a time, the rows in order per element */
    for (; i < n; i++)
        for (int k = 0; k < R; k++)
            NAME(backward_apply_one)(dy[k], x[k], NULL, NULL, dx[k], i, mu[k], c[k], rstd[k], w,
                                     mg[k], mgx[k], dw_acc, db_acc, has_ds ? ds[k] : NULL,
                                     has_w, acc, 0, has_ds);
}
#undef FN_RQAPPLY
#undef FN_RQOP
#undef FN_RQN
#undef FN_RQ

static void NAME(backward_apply_rows)(const T *const *dy, const T *const *x, T *const *dx,
                                      int64_t n, const A *mu, const A *c, const A *rstd,
                                      const W *w, const A *mg, const A *mgx, A *dw_acc,
                                      A *db_acc, const T *const *ds) {
#define FN_BWD_ROWS(HAS_W, ACC, HAS_DS)                                                     \
    NAME(backward_apply_rows_body)(dy, x, dx, n, mu, c, rstd, w, mg, mgx, dw_acc, db_acc,  \
                                   ds, HAS_W, ACC, HAS_DS)
    FN_BWD_FLAGS(FN_BWD_ROWS);
#undef FN_BWD_ROWS
}
#undef FN_BWD_FLAGS
#undef FN_BWD_FLAGS_ACC
#undef FN_BWD_FLAGS_DS

static void NAME(add)(A *dst, const A *src, int64_t n) {
    int64_t i = 0;
    for (; i + VN <= n; i += VN) VSTOREA(dst + i, VADD(VLOADA(dst + i), VLOADA(src + i)));
    for (; i < n; i++) dst[i] += src[i];
}
