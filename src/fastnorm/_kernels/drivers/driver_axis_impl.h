/*
 * driver_axis_impl.h -- LayerNorm and RMSNorm over one axis that is not the
 * last (axis=1 of an (N, C, H, W) array, say), without a transposing copy;
 * included by driver.c per data type, after driver_impl.h.
 *
 * The data is an (S, C, L) array: element (s, c, l) lies at
 * s * lds + c * ldc + l, so the L elements of each (s, c) are contiguous.
 * Statistics are per (s, l), over the C elements ldc apart; weight and bias
 * are per c. A work item is (s, block of BL consecutive columns): C rows of
 * BL contiguous elements, which the column primitives process vectorized
 * along the columns. The forward reads a block three times (sums, centered
 * sums, normalization); BL keeps it near 192 KiB, so that the second and
 * third reads come from L2 when C allows it.
 *
 * Column sums are taken FN_AXIS_CHUNK rows at a time in the accumulation
 * type and the chunks added in double, so that their error does not grow
 * with C. BL, the chunks and the gradient groups depend on the shape alone:
 * results are bitwise identical for any thread count.
 */

#define FN_ATABLE() (fn_active_prims()->SUF)

typedef struct {
    const PRIMS_TYPE *P;
    int64_t S, C, L, BL, nblk, items, group; /* group: items per gradient partial */
    const T *x, *dy;
    int64_t xs, xc, dys, dyc, ys, yc;
    T *y; /* y, or dx */
    const W *weight, *bias;
    ST *mean, *rstd; /* forward: outputs (may be NULL); backward: inputs */
    const ST *mean_in, *rstd_in;
    double eps;
    int centered;
    A *part_w, *part_b; /* backward: one row of C per group, or NULL */
    /* fused residual add (res == NULL: none): s = x + res + res_bias[c] is
     * written to sum and normalized in place of x */
    const T *res;
    const W *res_bias;
    T *sum;
    int64_t rss, rsc, sss, ssc; /* strides of res and sum */
    int failed;
} LOCAL(axis_ctx);

static void LOCAL(axis_setup)(LOCAL(axis_ctx) *k, int64_t S, int64_t C, int64_t L) {
    memset(k, 0, sizeof(*k));
    k->P = FN_ATABLE();
    k->S = S, k->C = C, k->L = L;
    k->BL = fn_axis_block_cols(C, L, (int64_t)sizeof(T));
    k->nblk = (L + k->BL - 1) / k->BL;
    k->items = S * k->nblk;
    k->group = fn_axis_group_items(k->items);
}

/* Per column, over `rows` rows: tot_d = sum(x - mu), tot_d2 = sum((x - mu)^2)
 * (mu NULL: 0; tot_d2 NULL: not wanted), chunk by chunk. */
static void LOCAL(axis_col_sums)(const PRIMS_TYPE *P, const T *x, int64_t ld, int64_t rows,
                                 int64_t n, const A *mu, A *acc_d, A *acc_d2, double *tot_d,
                                 double *tot_d2) {
    memset(tot_d, 0, (size_t)n * sizeof(double));
    if (tot_d2) memset(tot_d2, 0, (size_t)n * sizeof(double));
    for (int64_t r0 = 0; r0 < rows; r0 += FN_AXIS_CHUNK) {
        const int64_t cnt = rows - r0 < FN_AXIS_CHUNK ? rows - r0 : FN_AXIS_CHUNK;
        memset(acc_d, 0, (size_t)n * sizeof(A));
        if (tot_d2) memset(acc_d2, 0, (size_t)n * sizeof(A));
        P->col_moments_acc(x + r0 * ld, ld, cnt, n, mu, acc_d, tot_d2 ? acc_d2 : NULL);
        for (int64_t i = 0; i < n; i++) {
            tot_d[i] += acc_d[i];
            if (tot_d2) tot_d2[i] += acc_d2[i];
        }
    }
}

/* The item's (s, first column, column count). */
static FN_DRIVER_INLINE void LOCAL(axis_item)(const LOCAL(axis_ctx) *k, int64_t it, int64_t *s,
                                              int64_t *l0, int64_t *n) {
    *s = it / k->nblk;
    *l0 = (it % k->nblk) * k->BL;
    *n = k->L - *l0 < k->BL ? k->L - *l0 : k->BL;
}

static void LOCAL(axis_forward_items)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(axis_ctx) *k = (LOCAL(axis_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, BL = k->BL;
    A *co = (A *)fn_scratch_alloc((size_t)(5 * BL) * sizeof(A));
    double *tot = (double *)fn_scratch_alloc((size_t)(2 * BL) * sizeof(double));
    T *ex = NULL;         /* exact-range columns, normalized, C elements each */
    int64_t *exi = NULL;  /* ...and their column indices */
    if (!co || !tot) {
        k->failed = 1;
        fn_scratch_free(co);
        fn_scratch_free(tot);
        return;
    }
    A *acc_d = co, *acc_d2 = co + BL, *mu = co + 2 * BL, *r = co + 3 * BL, *kk = co + 4 * BL;
    for (int64_t it = begin; it < end; it++) {
        int64_t s, l0, n;
        LOCAL(axis_item)(k, it, &s, &l0, &n);
        const T *x0 = k->x + s * k->xs + l0;
        T *y0 = k->y + s * k->ys + l0;
        if (k->centered) {
            LOCAL(axis_col_sums)(P, x0, k->xc, C, n, NULL, acc_d, acc_d2, tot, NULL);
            for (int64_t i = 0; i < n; i++) mu[i] = (A)(tot[i] / (double)C);
            LOCAL(axis_col_sums)(P, x0, k->xc, C, n, mu, acc_d, acc_d2, tot, tot + BL);
        } else {
            LOCAL(axis_col_sums)(P, x0, k->xc, C, n, NULL, acc_d, acc_d2, tot, tot + BL);
        }
        int64_t nex = 0;
        for (int64_t i = 0; i < n; i++) {
            const A sq = (A)tot[BL + i];
            A mean_i, rstd_i;
            if (!isfinite(sq) || (sq < (A)(FN_TINY * (double)C) && k->eps < FN_EPS_NEGLIGIBLE)) {
                /* the exact-range path of the row normalizers, on the gathered
                 * column; written after normalize_cols (y may be x) */
                if (!ex) {
                    ex = (T *)fn_scratch_alloc((size_t)(BL * C) * sizeof(T));
                    exi = (int64_t *)fn_scratch_alloc((size_t)BL * sizeof(int64_t));
                    if (!ex || !exi) {
                        k->failed = 1;
                        break;
                    }
                }
                T *col = ex + nex * C;
                for (int64_t c = 0; c < C; c++) col[c] = x0[c * k->xc + i];
                const fn_exact_stats st = LOCAL(exact_moments)(col, C, k->centered, k->eps);
                LOCAL(exact_normalize)(col, col, C, st, k->weight, k->bias);
                exi[nex++] = i;
                mean_i = (A)(st.mean_scaled * st.scale);
                rstd_i = (A)st.rstd;
                mu[i] = r[i] = kk[i] = 0;
            } else if (k->centered) {
                const A c = (A)(tot[i] / (double)C);
                double var = tot[BL + i] / (double)C - (double)c * (double)c;
                if (var < 0) var = 0;
                r[i] = (A)(1.0 / sqrt(var + k->eps));
                kk[i] = -(c * r[i]);
                mean_i = mu[i] + c;
                rstd_i = r[i];
            } else {
                mu[i] = kk[i] = 0;
                r[i] = (A)(1.0 / sqrt(tot[BL + i] / (double)C + k->eps));
                mean_i = 0;
                rstd_i = r[i];
            }
            if (k->mean) k->mean[s * k->L + l0 + i] = (ST)mean_i;
            if (k->rstd) k->rstd[s * k->L + l0 + i] = (ST)rstd_i;
        }
        if (k->failed) break;
        /* the next item's block (same strides) is fetched while this one is
         * written (prefetches never fault: a narrower next block is harmless) */
        const T *nx = NULL;
        T *ny = NULL;
        if (it + 1 < end) {
            int64_t s1, l1, n1;
            LOCAL(axis_item)(k, it + 1, &s1, &l1, &n1);
            nx = k->x + s1 * k->xs + l1;
            ny = k->y + s1 * k->ys + l1;
        }
        P->normalize_cols(x0, k->xc, y0, k->yc, C, n, mu, r, kk, k->weight, k->bias, nx, ny);
        for (int64_t e = 0; e < nex; e++)
            for (int64_t c = 0; c < C; c++) y0[c * k->yc + exi[e]] = ex[e * C + c];
    }
    fn_scratch_free(co);
    fn_scratch_free(tot);
    fn_scratch_free(ex);
    fn_scratch_free(exi);
}

/* The fused residual add, s = x + residual + res_bias[c], over the (s, c) rows
 * [begin, end) of L contiguous elements, FN_AXIS_ADD_RUN at a time (the bias
 * repeated along a run). */
#define FN_AXIS_ADD_RUN 2048
static void LOCAL(axis_add_rows)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(axis_ctx) *k = (LOCAL(axis_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t L = k->L;
    FN_ALIGNED_SCRATCH(W, brun, FN_AXIS_ADD_RUN);
    int64_t filled_c = -1;
    for (int64_t row = begin; row < end; row++) {
        const int64_t s = row / k->C, c = row % k->C;
        const T *xr = k->x + s * k->xs + c * k->xc;
        const T *rr = k->res + s * k->rss + c * k->rsc;
        T *sr = k->sum + s * k->sss + c * k->ssc;
        if (k->res_bias && c != filled_c) {
            const int64_t m = L < FN_AXIS_ADD_RUN ? L : FN_AXIS_ADD_RUN;
            for (int64_t i = 0; i < m; i++) brun[i] = k->res_bias[c];
            filled_c = c;
        }
        for (int64_t i = 0; i < L; i += FN_AXIS_ADD_RUN) {
            const int64_t m = L - i < FN_AXIS_ADD_RUN ? L - i : FN_AXIS_ADD_RUN;
            P->residual_add(xr + i, rr + i, k->res_bias ? brun : NULL, sr + i, m, NULL, NULL);
        }
    }
}

/* Without a residual bias, x, residual and s that are each one dense (S, C, L)
 * block are added as one run, FN_AXIS_FLAT_RUN elements per work item. */
#define FN_AXIS_FLAT_RUN (16 * 1024)
static void LOCAL(axis_add_flat)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(axis_ctx) *k = (LOCAL(axis_ctx) *)vctx;
    const int64_t total = k->S * k->C * k->L;
    for (int64_t it = begin; it < end; it++) {
        const int64_t i = it * FN_AXIS_FLAT_RUN;
        const int64_t m = total - i < FN_AXIS_FLAT_RUN ? total - i : FN_AXIS_FLAT_RUN;
        k->P->residual_add(k->x + i, k->res + i, NULL, k->sum + i, m, NULL, NULL);
    }
}

/* Whether strides (ls, lc) lay an (S, C, L) array out densely. */
static int LOCAL(axis_dense)(const LOCAL(axis_ctx) *k, int64_t ls, int64_t lc) {
    return (k->C == 1 || lc == k->L) && (k->S == 1 || ls == k->C * k->L);
}

static int LOCAL(axis_forward)(LOCAL(axis_ctx) *k, int num_threads) {
    const int64_t S = k->S, C = k->C, L = k->L;
    if (S <= 0 || L <= 0) return FASTNORM_OK;
    if (k->res && C > 0) {
        /* the fused add first, streaming over whole rows (or the whole array),
         * then s normalized as x would be (faster than adding block by block:
         * bench/choices.md, "The fused add over an axis that is not the last") */
        const int64_t bytes = 3 * S * C * L * (int64_t)sizeof(T);
        if (!k->res_bias && LOCAL(axis_dense)(k, k->xs, k->xc) &&
            LOCAL(axis_dense)(k, k->rss, k->rsc) && LOCAL(axis_dense)(k, k->sss, k->ssc)) {
            const int64_t runs = (S * C * L + FN_AXIS_FLAT_RUN - 1) / FN_AXIS_FLAT_RUN;
            fn_parallel_ranges(fn_threads_for(num_threads, runs, bytes), runs,
                               LOCAL(axis_add_flat), k);
        } else {
            fn_parallel_ranges(fn_threads_for(num_threads, S * C, bytes), S * C,
                               LOCAL(axis_add_rows), k);
        }
        k->x = k->sum, k->xs = k->sss, k->xc = k->ssc;
    }
    if (C <= 0) { /* statistics of empty groups */
        for (int64_t i = 0; i < S * L; i++) {
            if (k->mean) k->mean[i] = (ST)NAN;
            if (k->rstd) k->rstd[i] = (ST)NAN;
        }
        return FASTNORM_OK;
    }
    const int nt = fn_threads_for(num_threads, k->items, S * C * L * (int64_t)sizeof(T));
    fn_parallel_ranges(nt, k->items, LOCAL(axis_forward_items), k);
    return k->failed ? FASTNORM_ENOMEM : FASTNORM_OK;
}

#undef FN_AXIS_ADD_RUN
#undef FN_AXIS_FLAT_RUN

int NAME(layer_norm_axis)(int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs,
                          int64_t ldxc, T *y, int64_t ldys, int64_t ldyc, const W *weight,
                          const W *bias, double eps, ST *mean, ST *rstd, int num_threads) {
    LOCAL(axis_ctx) k;
    LOCAL(axis_setup)(&k, S, C, L);
    k.x = x, k.xs = ldxs, k.xc = ldxc, k.y = y, k.ys = ldys, k.yc = ldyc;
    k.weight = weight, k.bias = bias, k.eps = eps, k.mean = mean, k.rstd = rstd;
    k.centered = 1;
    return LOCAL(axis_forward)(&k, num_threads);
}

int NAME(rms_norm_axis)(int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs,
                        int64_t ldxc, T *y, int64_t ldys, int64_t ldyc, const W *weight,
                        double eps, ST *rstd, int num_threads) {
    LOCAL(axis_ctx) k;
    LOCAL(axis_setup)(&k, S, C, L);
    k.x = x, k.xs = ldxs, k.xc = ldxc, k.y = y, k.ys = ldys, k.yc = ldyc;
    k.weight = weight, k.eps = eps, k.rstd = rstd;
    k.centered = 0;
    return LOCAL(axis_forward)(&k, num_threads);
}

int NAME(add_layer_norm_axis)(int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs,
                              int64_t ldxc, const T *residual, int64_t ldrs, int64_t ldrc,
                              const W *residual_bias, T *sum_out, int64_t ldss, int64_t ldsc,
                              T *y, int64_t ldys, int64_t ldyc, const W *weight, const W *bias,
                              double eps, ST *mean, ST *rstd, int num_threads) {
    LOCAL(axis_ctx) k;
    LOCAL(axis_setup)(&k, S, C, L);
    k.x = x, k.xs = ldxs, k.xc = ldxc, k.y = y, k.ys = ldys, k.yc = ldyc;
    k.res = residual, k.rss = ldrs, k.rsc = ldrc, k.res_bias = residual_bias;
    k.sum = sum_out, k.sss = ldss, k.ssc = ldsc;
    k.weight = weight, k.bias = bias, k.eps = eps, k.mean = mean, k.rstd = rstd;
    k.centered = 1;
    return LOCAL(axis_forward)(&k, num_threads);
}

int NAME(add_rms_norm_axis)(int64_t S, int64_t C, int64_t L, const T *x, int64_t ldxs,
                            int64_t ldxc, const T *residual, int64_t ldrs, int64_t ldrc,
                            const W *residual_bias, T *sum_out, int64_t ldss, int64_t ldsc, T *y,
                            int64_t ldys, int64_t ldyc, const W *weight, double eps, ST *rstd,
                            int num_threads) {
    LOCAL(axis_ctx) k;
    LOCAL(axis_setup)(&k, S, C, L);
    k.x = x, k.xs = ldxs, k.xc = ldxc, k.y = y, k.ys = ldys, k.yc = ldyc;
    k.res = residual, k.rss = ldrs, k.rsc = ldrc, k.res_bias = residual_bias;
    k.sum = sum_out, k.sss = ldss, k.ssc = ldsc;
    k.weight = weight, k.eps = eps, k.rstd = rstd;
    k.centered = 0;
    return LOCAL(axis_forward)(&k, num_threads);
}

/* ---- backward ---------------------------------------------------------- */

/* The NB step of every item of the groups [begin, end); a group's parameter
 * partials (its items in order) in its own row of part_w / part_b. */
static void LOCAL(axis_backward_groups)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(axis_ctx) *k = (LOCAL(axis_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, BL = k->BL;
    A *co = (A *)fn_scratch_alloc((size_t)(8 * BL) * sizeof(A));
    double *tot = (double *)fn_scratch_alloc((size_t)(3 * BL) * sizeof(double));
    if (!co || !tot) {
        k->failed = 1;
        fn_scratch_free(co);
        fn_scratch_free(tot);
        return;
    }
    A *acc_g = co, *acc_gx = co + BL, *acc_x = co + 2 * BL;
    A *mu = co + 3 * BL, *r = co + 4 * BL, *cc = co + 5 * BL, *mg = co + 6 * BL,
      *mgx = co + 7 * BL;
    double *tg = tot, *tgx = tot + BL, *tx = tot + 2 * BL;
    for (int64_t g = begin; g < end; g++) {
        A *pw = k->part_w ? k->part_w + g * C : NULL;
        A *pb = k->part_b ? k->part_b + g * C : NULL;
        if (pw) memset(pw, 0, (size_t)C * sizeof(A));
        if (pb) memset(pb, 0, (size_t)C * sizeof(A));
        const int64_t first = g * k->group;
        const int64_t last = first + k->group < k->items ? first + k->group : k->items;
        for (int64_t it = first; it < last; it++) {
            int64_t s, l0, n;
            LOCAL(axis_item)(k, it, &s, &l0, &n);
            const T *x0 = k->x + s * k->xs + l0, *dy0 = k->dy + s * k->dys + l0;
            T *dx0 = k->y + s * k->ys + l0;
            const int64_t st = s * k->L + l0;
            for (int64_t i = 0; i < n; i++) {
                mu[i] = k->centered ? (A)k->mean_in[st + i] : 0;
                r[i] = (A)k->rstd_in[st + i];
            }
            memset(tot, 0, (size_t)(3 * BL) * sizeof(double));
            for (int64_t r0 = 0; r0 < C; r0 += FN_AXIS_CHUNK) {
                const int64_t cnt = C - r0 < FN_AXIS_CHUNK ? C - r0 : FN_AXIS_CHUNK;
                memset(co, 0, (size_t)(3 * BL) * sizeof(A));
                P->col_backward_acc(dy0 + r0 * k->dyc, k->dyc, x0 + r0 * k->xc, k->xc, cnt, n, mu,
                                    r, k->weight ? k->weight + r0 : NULL, acc_g, acc_gx,
                                    k->centered ? acc_x : NULL);
                for (int64_t i = 0; i < n; i++) tg[i] += acc_g[i], tgx[i] += acc_gx[i], tx[i] += acc_x[i];
            }
            /* c = mean(xh') undoes the rounding of the stored mean (docs/numerics.md §0) */
            for (int64_t i = 0; i < n; i++) {
                const double c = k->centered ? tx[i] / (double)C : 0;
                const double m = k->centered ? tg[i] / (double)C : 0;
                cc[i] = (A)c;
                mg[i] = (A)m;
                mgx[i] = (A)(tgx[i] / (double)C - c * m);
            }
            const T *ndy = NULL, *nx = NULL;
            T *ndx = NULL;
            if (it + 1 < last) { /* the next block, fetched while this one is written */
                int64_t s1, l1, n1;
                LOCAL(axis_item)(k, it + 1, &s1, &l1, &n1);
                ndy = k->dy + s1 * k->dys + l1;
                nx = k->x + s1 * k->xs + l1;
                ndx = k->y + s1 * k->ys + l1;
            }
            P->backward_apply_cols(dy0, k->dyc, x0, k->xc, dx0, k->yc, C, n, mu, r, cc, mg, mgx,
                                   k->weight, pw, pb, ndy, nx, ndx);
        }
    }
    fn_scratch_free(co);
    fn_scratch_free(tot);
}

static int LOCAL(axis_backward)(LOCAL(axis_ctx) *k, W *dweight, W *dbias, int num_threads) {
    const int64_t S = k->S, C = k->C, L = k->L;
    if (C <= 0) return FASTNORM_OK;
    if (S <= 0 || L <= 0) {
        if (dweight) memset(dweight, 0, (size_t)C * sizeof(W));
        if (dbias) memset(dbias, 0, (size_t)C * sizeof(W));
        return FASTNORM_OK;
    }
    const int64_t groups = (k->items + k->group - 1) / k->group;
    A *part = NULL;
    if (dweight || dbias) {
        part = (A *)fn_scratch_alloc((size_t)(groups * C * 2) * sizeof(A));
        if (!part) return FASTNORM_ENOMEM;
        k->part_w = dweight ? part : NULL;
        k->part_b = (dbias && k->centered) ? part + groups * C : NULL;
    }
    const int nt = fn_threads_for(num_threads, groups, 2 * S * C * L * (int64_t)sizeof(T));
    fn_parallel_ranges(nt, groups, LOCAL(axis_backward_groups), k);
    if (k->failed) {
        fn_scratch_free(part);
        return FASTNORM_ENOMEM;
    }
    if (k->part_w) LOCAL(reduce_partials)(k->P, k->part_w, groups, C, C, num_threads);
    if (k->part_b) LOCAL(reduce_partials)(k->P, k->part_b, groups, C, C, num_threads);
    for (int64_t c = 0; c < C; c++) {
        if (dweight) dweight[c] = (W)k->part_w[c];
        if (dbias) dbias[c] = k->part_b ? (W)k->part_b[c] : 0;
    }
    fn_scratch_free(part);
    return FASTNORM_OK;
}

int NAME(layer_norm_axis_backward)(int64_t S, int64_t C, int64_t L, const T *dy, int64_t lddys,
                                   int64_t lddyc, const T *x, int64_t ldxs, int64_t ldxc,
                                   const ST *mean, const ST *rstd, const W *weight, T *dx,
                                   int64_t lddxs, int64_t lddxc, W *dweight, W *dbias,
                                   int num_threads) {
    LOCAL(axis_ctx) k;
    LOCAL(axis_setup)(&k, S, C, L);
    k.dy = dy, k.dys = lddys, k.dyc = lddyc, k.x = x, k.xs = ldxs, k.xc = ldxc;
    k.y = dx, k.ys = lddxs, k.yc = lddxc, k.weight = weight;
    k.mean_in = mean, k.rstd_in = rstd, k.centered = 1;
    return LOCAL(axis_backward)(&k, dweight, dbias, num_threads);
}

int NAME(rms_norm_axis_backward)(int64_t S, int64_t C, int64_t L, const T *dy, int64_t lddys,
                                 int64_t lddyc, const T *x, int64_t ldxs, int64_t ldxc,
                                 const ST *rstd, const W *weight, T *dx, int64_t lddxs,
                                 int64_t lddxc, W *dweight, int num_threads) {
    LOCAL(axis_ctx) k;
    LOCAL(axis_setup)(&k, S, C, L);
    k.dy = dy, k.dys = lddys, k.dyc = lddyc, k.x = x, k.xs = ldxs, k.xc = ldxc;
    k.y = dx, k.ys = lddxs, k.yc = lddxc, k.weight = weight;
    k.rstd_in = rstd, k.centered = 0;
    return LOCAL(axis_backward)(&k, dweight, NULL, num_threads);
}

#undef FN_ATABLE
