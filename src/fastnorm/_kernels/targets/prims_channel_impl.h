/*
 * prims_channel_impl.h -- the channel primitives of prims_impl.h's template:
 * per-segment and per-column scale-shift and its backward, column moments and
 * gradient sums, and columns normalized over the rows. Included by
 * prims_impl.h only, with its macros in force.
 */

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
 * coefficient loads makes four streams, and 4 KiB aliasing between a row's
 * stores and the next row's loads when a row is a multiple of 4 KiB:
 * bench/choices.md, "Channels-last rows one at a time"); the reductions take
 * four rows per read-modify-write of their accumulators. Per column, the rows
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
