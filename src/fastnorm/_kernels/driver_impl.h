/*
 * driver_impl.h -- the per-dtype drivers; included by driver.c with
 * T, A, SUF, PRIMS_TYPE, FN_TINY, FN_EPS_NEGLIGIBLE, NAME(f) and LOCAL(f).
 */

#define FN_TABLE() (fn_active_prims()->SUF)
#define FN_EXACT LOCAL(exact_moments)

/* Mean and rstd of one row by the corrected two-pass algorithm: mu from the
 * first pass, then sum(d) and sum(d^2) with d = x - mu. c = mean(d) is the
 * rounding error of mu; var = mean(d^2) - c^2. The row is normalized by
 * (x - mu) - c, which keeps the digits that mu + c would lose. */
static void LOCAL(layer_norm_row_stats)(const PRIMS_TYPE *P, const T *x, int64_t n, double eps,
                                        A *mu_out, A *c_out, A *rstd_out) {
    const A mu = P->sum(x, n) / (A)n;
    A sd, sq;
    P->centered_sums(x, n, mu, &sd, &sq);
    if (!isfinite(sq) || (sq < (A)(FN_TINY * (double)n) && eps < FN_EPS_NEGLIGIBLE)) {
        double m, r;
        FN_EXACT(x, n, 1, eps, &m, &r);
        *mu_out = (A)m;
        *c_out = 0;
        *rstd_out = (A)r;
        return;
    }
    const A c = sd / (A)n;
    A var = sq / (A)n - c * c;
    if (var < 0) var = 0;
    *mu_out = mu;
    *c_out = c;
    *rstd_out = (A)(1.0 / sqrt((double)var + eps));
}

static A LOCAL(rms_norm_row_rstd)(const PRIMS_TYPE *P, const T *x, int64_t n, double eps) {
    const A sq = P->sum_sq(x, n);
    if (!isfinite(sq) || (sq < (A)(FN_TINY * (double)n) && eps < FN_EPS_NEGLIGIBLE)) {
        double m, r;
        FN_EXACT(x, n, 0, eps, &m, &r);
        return (A)r;
    }
    return (A)(1.0 / sqrt((double)(sq / (A)n) + eps));
}

int NAME(layer_norm)(int64_t rows, int64_t n, const T *x, int64_t ldx, T *y, int64_t ldy,
                     const T *weight, const T *bias, double eps, T *mean, T *rstd,
                     int num_threads) {
    if (rows <= 0) return FASTNORM_OK;
    if (n <= 0) {
        for (int64_t i = 0; i < rows; i++) {
            if (mean) mean[i] = (T)NAN;
            if (rstd) rstd[i] = (T)NAN;
        }
        return FASTNORM_OK;
    }
    const PRIMS_TYPE *P = FN_TABLE();
    const int nt = fn_threads_for(num_threads, rows, rows * n * (int64_t)sizeof(T));
    (void)nt;
    FN_PRAGMA(omp parallel for schedule(static) num_threads(nt) if (nt > 1))
    for (int64_t i = 0; i < rows; i++) {
        const T *xr = x + i * ldx;
        A mu, c, r;
        LOCAL(layer_norm_row_stats)(P, xr, n, eps, &mu, &c, &r);
        P->normalize(xr, y + i * ldy, n, mu, c, r, weight, bias, i + 1 < rows ? xr + ldx : NULL);
        if (mean) mean[i] = (T)(mu + c);
        if (rstd) rstd[i] = (T)r;
    }
    return FASTNORM_OK;
}

int NAME(rms_norm)(int64_t rows, int64_t n, const T *x, int64_t ldx, T *y, int64_t ldy,
                   const T *weight, double eps, T *rstd, int num_threads) {
    if (rows <= 0) return FASTNORM_OK;
    if (n <= 0) {
        if (rstd)
            for (int64_t i = 0; i < rows; i++) rstd[i] = (T)NAN;
        return FASTNORM_OK;
    }
    const PRIMS_TYPE *P = FN_TABLE();
    const int nt = fn_threads_for(num_threads, rows, rows * n * (int64_t)sizeof(T));
    (void)nt;
    FN_PRAGMA(omp parallel for schedule(static) num_threads(nt) if (nt > 1))
    for (int64_t i = 0; i < rows; i++) {
        const T *xr = x + i * ldx;
        const A r = LOCAL(rms_norm_row_rstd)(P, xr, n, eps);
        P->normalize(xr, y + i * ldy, n, 0, 0, r, weight, NULL, i + 1 < rows ? xr + ldx : NULL);
        if (rstd) rstd[i] = (T)r;
    }
    return FASTNORM_OK;
}

/* Adds the nblocks partial rows of `part` (each n long) into part[0..n) by a
 * fixed pairwise tree, one column band per thread. */
static void LOCAL(reduce_partials)(const PRIMS_TYPE *P, A *part, int64_t nblocks, int64_t n,
                                   int num_threads) {
    const int64_t bands = (n + FN_TREE_COLUMNS - 1) / FN_TREE_COLUMNS;
    const int nt =
        fn_threads_for(num_threads, bands, nblocks * n * (int64_t)sizeof(A));
    (void)nt;
    FN_PRAGMA(omp parallel for schedule(static) num_threads(nt) if (nt > 1))
    for (int64_t band = 0; band < bands; band++) {
        const int64_t c0 = band * FN_TREE_COLUMNS;
        const int64_t len = n - c0 < FN_TREE_COLUMNS ? n - c0 : FN_TREE_COLUMNS;
        for (int64_t step = 1; step < nblocks; step *= 2)
            for (int64_t b = 0; b + step < nblocks; b += 2 * step)
                P->add(part + b * n + c0, part + (b + step) * n + c0, len);
    }
}

/* The backward of one normalized group (NORMS.md, NB), for every row.
 * centered = 1: LayerNorm (mean given); 0: RMSNorm (no mean, no mean(g)). */
static int LOCAL(norm_backward)(int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *x,
                                int64_t ldx, const T *mean, const T *rstd, const T *weight,
                                T *dx, int64_t lddx, T *dweight, T *dbias, int centered,
                                int num_threads) {
    const int want_params = dweight || dbias;
    if (rows <= 0 || n <= 0) {
        if (n > 0) {
            if (dweight) memset(dweight, 0, (size_t)n * sizeof(T));
            if (dbias) memset(dbias, 0, (size_t)n * sizeof(T));
        }
        return FASTNORM_OK;
    }
    const PRIMS_TYPE *P = FN_TABLE();
    const int64_t block_rows = fn_grad_block_rows(rows);
    const int64_t nblocks = (rows + block_rows - 1) / block_rows;
    const int64_t per_block = centered ? 2 : 1; /* dw (and db) partials */
    A *part = NULL;
    if (want_params) {
        part = (A *)malloc((size_t)(nblocks * n * per_block) * sizeof(A));
        if (!part) return FASTNORM_ENOMEM;
    }
    A *const part_w = part;
    A *const part_b = (part && centered) ? part + nblocks * n : NULL;

    const int nt = fn_threads_for(num_threads, nblocks, 2 * rows * n * (int64_t)sizeof(T));
    (void)nt;
    FN_PRAGMA(omp parallel for schedule(static) num_threads(nt) if (nt > 1))
    for (int64_t blk = 0; blk < nblocks; blk++) {
        A *acc_w = part_w ? part_w + blk * n : NULL;
        A *acc_b = part_b ? part_b + blk * n : NULL;
        if (acc_w) memset(acc_w, 0, (size_t)n * sizeof(A));
        if (acc_b) memset(acc_b, 0, (size_t)n * sizeof(A));
        const int64_t end = (blk + 1) * block_rows < rows ? (blk + 1) * block_rows : rows;
        for (int64_t i = blk * block_rows; i < end; i++) {
            const T *xr = x + i * ldx, *dyr = dy + i * lddy;
            const A mu = centered ? (A)mean[i] : 0, r = (A)rstd[i];
            A s[3];
            P->backward_sums(dyr, xr, n, mu, r, weight, s);
            /* c = mean(xh') undoes the rounding of the stored mean (NORMS.md 0) */
            const A c = centered ? s[2] / (A)n : 0;
            const A mg = centered ? s[0] / (A)n : 0;
            const A mgx = s[1] / (A)n - c * mg;
            const int more = i + 1 < end;
            P->backward_apply(dyr, xr, dx + i * lddx, n, mu, c, r, weight, mg, mgx, acc_w,
                              acc_b, more ? dyr + lddy : NULL, more ? xr + ldx : NULL);
        }
    }
    if (want_params) {
        LOCAL(reduce_partials)(P, part_w, nblocks, n, num_threads);
        if (part_b) LOCAL(reduce_partials)(P, part_b, nblocks, n, num_threads);
        for (int64_t j = 0; j < n; j++) {
            if (dweight) dweight[j] = (T)part_w[j];
            if (dbias) dbias[j] = (T)part_b[j];
        }
        free(part);
    }
    return FASTNORM_OK;
}

int NAME(layer_norm_backward)(int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *x,
                              int64_t ldx, const T *mean, const T *rstd, const T *weight, T *dx,
                              int64_t lddx, T *dweight, T *dbias, int num_threads) {
    return LOCAL(norm_backward)(rows, n, dy, lddy, x, ldx, mean, rstd, weight, dx, lddx,
                                dweight, dbias, 1, num_threads);
}

int NAME(rms_norm_backward)(int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *x,
                            int64_t ldx, const T *rstd, const T *weight, T *dx, int64_t lddx,
                            T *dweight, int num_threads) {
    return LOCAL(norm_backward)(rows, n, dy, lddy, x, ldx, NULL, rstd, weight, dx, lddx,
                                dweight, NULL, 0, num_threads);
}

#undef FN_TABLE
#undef FN_EXACT
