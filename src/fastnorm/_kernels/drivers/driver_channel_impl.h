/*
 * driver_channel_impl.h -- the channel normalizers (group, instance and
 * batch norm, and the stages that switchable and batch-layer norm are
 * composed of); included by driver.c per data type, after driver_impl.h.
 *
 * Data is addressed as a C-ordered (S, R, C, L) array: S samples, R rows,
 * C channels and L contiguous elements per channel. NCHW group norm is
 * (N, 1, C, H*W); channels-last is (N, H*W, C, 1); batch norm merges the
 * batch into the rows: (1, N, C, H*W) or (1, N*H*W, C, 1).
 *
 * Every statistic goes through fixed partial entries, whatever the thread
 * count:
 *   - L > 1: one entry per segment (s, r, c) of L elements, from the row
 *     primitives (two passes over a segment that sits in L1/L2);
 *   - L == 1: one entry per block of rows (s, q, c), from the column
 *     primitives, vectorized along the contiguous channels.
 * Entries hold a mean and a centered sum of squares (or gradient sums) in
 * double, and are merged per unit in a fixed order: moments by the centered
 * two-pass formula over the entries' means, so a statistic over millions of
 * elements loses nothing to the length of the sum.
 */

#define FN_CTABLE() (fn_active_prims()->SUF)

typedef struct {
    const PRIMS_TYPE *P;
    int64_t S, R, C, L;
    int64_t RB, nq; /* rows per block and entries per (sample, channel) */
    int64_t CB, ncb; /* L == 1: columns per chunk of a block, chunks per row */
    /* L == 1, the apply stages (chan_apply_plan): columns per block (C: no
     * blocks), blocks per row, and items of FN_APPLY_BLOCK_ROWS rows per
     * sample */
    int64_t acb, anb, anq;
    const T *x, *dy;
    T *out; /* y or dx */
    double eps;
    double *part;                /* (S, nq, C) entries of `width` doubles */
    const A *mu, *r, *a, *b, *k; /* per (s, c) coefficients, S*C each */
    T *scaled;                    /* sum stage: also scaled = scale * dy, when not NULL */
    const A *scale, *zero;        /* ... with scale per (s, c) and C zeros */
    int accumulate;
    int failed; /* set when a thread could not allocate its scratch */
} LOCAL(chan_ctx);

static void LOCAL(chan_setup)(LOCAL(chan_ctx) *k, int64_t S, int64_t R, int64_t C, int64_t L) {
    memset(k, 0, sizeof(*k));
    k->P = FN_CTABLE();
    k->S = S, k->R = R, k->C = C, k->L = L;
    if (L > 1) {
        k->RB = 1, k->nq = R;
    } else {
        k->RB = fn_chan_block_rows(C, (int64_t)sizeof(T));
        k->nq = (R + k->RB - 1) / k->RB;
    }
    k->CB = fn_chan_block_cols(C, k->RB, (int64_t)sizeof(T));
    k->ncb = (C + k->CB - 1) / k->CB;
}

/* Elements behind entry q of a channel. */
static FN_DRIVER_INLINE int64_t LOCAL(chan_count)(const LOCAL(chan_ctx) *k, int64_t q) {
    if (k->L > 1) return k->L;
    return k->R - q * k->RB < k->RB ? k->R - q * k->RB : k->RB;
}

/* Number of work items of the entry stages, and their data size. */
static int64_t LOCAL(chan_entry_items)(const LOCAL(chan_ctx) *k) {
    return k->L > 1 ? k->S * k->R * k->C : k->S * k->nq * k->ncb;
}

/* Entry item `it` of channels-last data (L == 1): rows q*RB.. of sample s,
 * columns c0..c0+n; `entry` indexes its first (s, q, c0) entry in part and
 * `first` its first element. */
typedef struct {
    int64_t s, count, c0, n, entry, first;
} LOCAL(chan_chunk);

static FN_DRIVER_INLINE LOCAL(chan_chunk) LOCAL(chan_chunk_at)(const LOCAL(chan_ctx) *k,
                                                              int64_t it) {
    LOCAL(chan_chunk) b;
    const int64_t sq = it / k->ncb, q = sq % k->nq;
    b.s = sq / k->nq;
    b.c0 = (it % k->ncb) * k->CB;
    b.count = LOCAL(chan_count)(k, q);
    b.n = k->C - b.c0 < k->CB ? k->C - b.c0 : k->CB;
    b.entry = sq * k->C + b.c0;
    b.first = (b.s * k->R + q * k->RB) * k->C + b.c0;
    return b;
}

/* One entry's mean and centered sum of squares, from the fast sums about mu
 * (sd = sum(x - mu), sd2 = sum((x - mu)^2)). Falls back to plain double
 * loops when the fast sum of squares overflowed, or underflowed with an eps
 * too small to hide it (the exact-range rule of the row normalizers). */
static void LOCAL(finish_moments)(double *e, A mu, A sd, A sd2, int64_t count, double eps,
                                  const T *x, int64_t stride) {
    if (!isfinite(sd2) || (sd2 < (A)(FN_TINY * (double)count) && eps < FN_EPS_NEGLIGIBLE)) {
        double m = 0, q = 0;
        for (int64_t i = 0; i < count; i++) m += FN_TO_D(x[i * stride]);
        m /= (double)count;
        for (int64_t i = 0; i < count; i++) {
            const double d = FN_TO_D(x[i * stride]) - m;
            q += d * d;
        }
        e[0] = m, e[1] = q;
        return;
    }
    const double dsd = (double)sd;
    e[0] = (double)mu + dsd / (double)count;
    e[1] = (double)sd2 - dsd * dsd / (double)count;
    if (e[1] < 0) e[1] = 0;
}

/* Moment entries: part[((s*nq + q)*C + c)*2 + {0: mean, 1: m2}]. */
static void LOCAL(chan_moment_items)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(chan_ctx) *k = (LOCAL(chan_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, L = k->L;
    if (L > 1) {
        for (int64_t it = begin; it < end; it++) { /* it = (s*R + r)*C + c */
            const T *seg = k->x + it * L;
            const A mu = P->sum(seg, L) / (A)L;
            A sd, sd2;
            P->centered_sums(seg, L, mu, &sd, &sd2);
            LOCAL(finish_moments)(k->part + 2 * it, mu, sd, sd2, L, k->eps, seg, 1);
        }
        return;
    }
    const int64_t CB = k->CB;
    A *mu = (A *)fn_scratch_alloc((size_t)(3 * CB) * sizeof(A));
    if (!mu) {
        k->failed = 1;
        return;
    }
    A *acc_d = mu + CB, *acc_d2 = mu + 2 * CB;
    for (int64_t it = begin; it < end; it++) {
        const LOCAL(chan_chunk) b = LOCAL(chan_chunk_at)(k, it);
        const int64_t n = b.n, count = b.count;
        const T *x0 = k->x + b.first;
        /* two passes over a block that stays in cache: the block's column
         * means, then the centered sums about them */
        memset(acc_d, 0, (size_t)n * sizeof(A));
        P->col_moments_acc(x0, C, count, n, NULL, acc_d, NULL);
        for (int64_t c = 0; c < n; c++) mu[c] = acc_d[c] / (A)count;
        memset(acc_d, 0, (size_t)(2 * CB) * sizeof(A));
        P->col_moments_acc(x0, C, count, n, mu, acc_d, acc_d2);
        double *e = k->part + 2 * b.entry;
        for (int64_t c = 0; c < n; c++)
            LOCAL(finish_moments)(e + 2 * c, mu[c], acc_d[c], acc_d2[c], count, k->eps, x0 + c,
                                  C);
    }
    fn_scratch_free(mu);
}

/* Gradient entries about mu, in units of r (per (s, c)), with
 * xh = (x - mu) * r: part[(...)*3 + {0: sum dy, 1: sum dy * xh, 2: sum xh}].
 * Scaling each element by r before it is summed keeps the sums finite in
 * float32 for data near the top of its range, as in layer norm. */
static void LOCAL(chan_sum_items)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(chan_ctx) *k = (LOCAL(chan_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, L = k->L, R = k->R;
    if (L > 1) {
        for (int64_t it = begin; it < end; it++) { /* it = (s*R + r)*C + c */
            const int64_t idx = (it / (R * C)) * C + it % C;
            A s3[3];
            P->backward_sums(k->dy + it * L, k->x + it * L, L, k->mu[idx], k->r[idx], NULL, s3);
            double *e = k->part + 3 * it;
            e[0] = s3[0], e[1] = s3[1], e[2] = s3[2];
            if (k->scaled) /* scale * dy while dy is in cache */
                P->scale_shift(k->dy + it * L, k->scaled + it * L, L, (A)0, k->scale[idx], (A)0,
                               0);
        }
        return;
    }
    const int64_t CB = k->CB;
    A *acc = (A *)fn_scratch_alloc((size_t)(3 * CB) * sizeof(A));
    if (!acc) {
        k->failed = 1;
        return;
    }
    for (int64_t it = begin; it < end; it++) {
        const LOCAL(chan_chunk) b = LOCAL(chan_chunk_at)(k, it);
        const int64_t s = b.s, c0 = b.c0, n = b.n, count = b.count, first = b.first;
        memset(acc, 0, (size_t)(3 * CB) * sizeof(A));
        P->col_backward_acc(k->dy + first, C, k->x + first, C, count, n, k->mu + s * C + c0,
                            k->r + s * C + c0, NULL, acc, acc + CB, acc + 2 * CB);
        double *e = k->part + 3 * b.entry;
        for (int64_t c = 0; c < n; c++)
            e[3 * c] = acc[c], e[3 * c + 1] = acc[CB + c], e[3 * c + 2] = acc[2 * CB + c];
        if (k->scaled) { /* scale * dy while the block of dy is in cache */
            const A *a = k->scale + s * C + c0, *zero = k->zero;
            if (n == C)
                P->scale_shift_cols(k->dy + first, k->scaled + first, count, n, zero, a, zero, 0);
            else
                for (int64_t row = 0; row < count; row++)
                    P->scale_shift_cols(k->dy + first + row * C, k->scaled + first + row * C, 1,
                                        n, zero, a, zero, 0);
        }
    }
    fn_scratch_free(acc);
}

/* The apply stages' items on channels-last data (L == 1): runs of rows of one
 * sample, or, where the coefficients of all C channels outgrow L1
 * (fn_apply_block_cols), blocks of columns over up to FN_APPLY_BLOCK_ROWS
 * rows (row chunk outer, column block inner), so that a block's coefficients
 * stay in L1 across its rows and few rows of many channels still give every
 * thread work. Elementwise: the items never change a result. */
#define FN_APPLY_BLOCK_ROWS 64
static void LOCAL(chan_apply_plan)(LOCAL(chan_ctx) *k, int coefs) {
    k->acb = k->L > 1 ? k->C : fn_apply_block_cols(k->C, coefs, (int64_t)sizeof(A));
    k->anb = (k->C + k->acb - 1) / k->acb;
    k->anq = (k->R + FN_APPLY_BLOCK_ROWS - 1) / FN_APPLY_BLOCK_ROWS;
}

typedef struct {
    int64_t s, r0, r1, c0, n, sc; /* sample, rows [r0, r1), columns [c0, c0 + n), s*C + c0 */
} LOCAL(apply_block);

static FN_DRIVER_INLINE LOCAL(apply_block) LOCAL(apply_block_at)(const LOCAL(chan_ctx) *k,
                                                               int64_t it) {
    LOCAL(apply_block) q;
    const int64_t per = k->anq * k->anb, rem = it % per;
    q.s = it / per;
    q.r0 = (rem / k->anb) * FN_APPLY_BLOCK_ROWS;
    q.r1 = q.r0 + FN_APPLY_BLOCK_ROWS < k->R ? q.r0 + FN_APPLY_BLOCK_ROWS : k->R;
    q.c0 = (rem % k->anb) * k->acb;
    q.n = k->C - q.c0 < k->acb ? k->C - q.c0 : k->acb;
    q.sc = q.s * k->C + q.c0;
    return q;
}

/* y (+)= (x - mu) * a + b with the (s, c) coefficients. Rows of channels
 * are passed on in runs within one sample, which share coefficients. */
static void LOCAL(chan_apply_items)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(chan_ctx) *k = (const LOCAL(chan_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, L = k->L, R = k->R;
    if (L > 1) {
        for (int64_t it = begin; it < end; it++) { /* a segment: it = (s*R + r)*C + c */
            const int64_t idx = (it / (R * C)) * C + it % C;
            P->scale_shift(k->x + it * L, k->out + it * L, L, k->mu[idx], k->a[idx], k->b[idx],
                           k->accumulate);
        }
        return;
    }
    if (k->acb == C) {
        for (int64_t it = begin; it < end;) { /* rows of channels: it = s*R + r */
            const int64_t s = it / R, stop = (s + 1) * R < end ? (s + 1) * R : end;
            P->scale_shift_cols(k->x + it * C, k->out + it * C, stop - it, C, k->mu + s * C,
                                k->a + s * C, k->b + s * C, k->accumulate);
            it = stop;
        }
        return;
    }
    for (int64_t it = begin; it < end; it++) { /* a block of columns over rows */
        LOCAL(apply_block) q = LOCAL(apply_block_at)(k, it);
        for (int64_t row = q.r0; row < q.r1; row++) {
            const int64_t o = (q.s * R + row) * C + q.c0;
            P->scale_shift_cols(k->x + o, k->out + o, 1, q.n, k->mu + q.sc, k->a + q.sc,
                                k->b + q.sc, k->accumulate);
        }
    }
}

/* dx (+)= a * dy + b * ((x - mu) * r) + k with the (s, c) coefficients. */
static void LOCAL(chan_backward_apply_items)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(chan_ctx) *k = (const LOCAL(chan_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, L = k->L, R = k->R;
    if (L > 1) {
        for (int64_t it = begin; it < end; it++) {
            const int64_t idx = (it / (R * C)) * C + it % C;
            P->affine_backward(k->dy + it * L, k->x + it * L, k->out + it * L, L, k->mu[idx],
                               k->r[idx], k->a[idx], k->b[idx], k->k[idx], k->accumulate);
        }
        return;
    }
    if (k->acb == C) {
        for (int64_t it = begin; it < end;) {
            const int64_t s = it / R, stop = (s + 1) * R < end ? (s + 1) * R : end, o = s * C;
            P->affine_backward_cols(k->dy + it * C, k->x + it * C, k->out + it * C, stop - it,
                                    C, k->mu + o, k->r + o, k->a + o, k->b + o, k->k + o,
                                    k->accumulate);
            it = stop;
        }
        return;
    }
    for (int64_t it = begin; it < end; it++) { /* a block of columns over rows */
        LOCAL(apply_block) q = LOCAL(apply_block_at)(k, it);
        for (int64_t row = q.r0; row < q.r1; row++) {
            const int64_t o = (q.s * R + row) * C + q.c0;
            P->affine_backward_cols(k->dy + o, k->x + o, k->out + o, 1, q.n, k->mu + q.sc,
                                    k->r + q.sc, k->a + q.sc, k->b + q.sc, k->k + q.sc,
                                    k->accumulate);
        }
    }
}

static int64_t LOCAL(chan_apply_items_count)(const LOCAL(chan_ctx) *k) {
    if (k->L > 1) return k->S * k->R * k->C;
    return k->acb == k->C ? k->S * k->R : k->S * k->anq * k->anb;
}

static int LOCAL(chan_run_entries)(LOCAL(chan_ctx) *k, fn_range_body body, int width,
                                   int reads, int num_threads) {
    const int64_t items = LOCAL(chan_entry_items)(k);
    k->part = (double *)fn_scratch_alloc((size_t)(k->S * k->nq * k->C * width) * sizeof(double));
    if (!k->part) return FASTNORM_ENOMEM;
    const int64_t bytes = reads * k->S * k->R * k->C * k->L * (int64_t)sizeof(T);
    fn_parallel_ranges(fn_threads_for(num_threads, items, bytes), items, body, k);
    if (k->failed) {
        fn_scratch_free(k->part);
        k->part = NULL;
        return FASTNORM_ENOMEM;
    }
    return FASTNORM_OK;
}

static void LOCAL(chan_run_apply)(LOCAL(chan_ctx) *k, fn_range_body body, int reads,
                                  int coefs, int num_threads) {
    LOCAL(chan_apply_plan)(k, coefs);
    const int64_t items = LOCAL(chan_apply_items_count)(k);
    const int64_t bytes = (reads + 1) * k->S * k->R * k->C * k->L * (int64_t)sizeof(T);
    fn_parallel_ranges(fn_threads_for(num_threads, items, bytes), items, body, k);
}

/* Moments of unit (s, g) -- channels [g*cpg, (g+1)*cpg) of sample s, all
 * their entries -- by the two-pass formula over the entries: the mean of the
 * entry means, then m2 = sum(m2_e + count_e * (mean_e - mean)^2). */
typedef struct {
    const LOCAL(chan_ctx) *k;
    int64_t G;
    double *mean, *var; /* S*G each */
} LOCAL(merge_ctx);

static void LOCAL(merge_units)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(merge_ctx) *m = (const LOCAL(merge_ctx) *)vctx;
    const LOCAL(chan_ctx) *k = m->k;
    const int64_t C = k->C, cpg = C / m->G;
    if (cpg == 1 && k->nq == 1) { /* one entry per unit: it is the unit's moments */
        const double count = (double)LOCAL(chan_count)(k, 0);
        for (int64_t u = begin; u < end; u++) {
            m->mean[u] = k->part[2 * u];
            m->var[u] = k->part[2 * u + 1] / count;
        }
        return;
    }
    /* Entries row by row (q outer), channels inner: each unit still adds its
     * entries in the order (q, channel), and the rows stream through memory. */
    const int64_t G = m->G;
    for (int64_t u = begin; u < end;) {
        const int64_t s = u / G, g0 = u % G, g1 = (s + 1) * G <= end ? G : end - s * G;
        double *mean = m->mean + s * G, *var = m->var + s * G;
        double total = 0;
        for (int64_t g = g0; g < g1; g++) mean[g] = 0, var[g] = 0;
        for (int64_t q = 0; q < k->nq; q++) {
            const double count = (double)LOCAL(chan_count)(k, q);
            const double *e = k->part + 2 * (s * k->nq + q) * C;
            for (int64_t g = g0; g < g1; g++)
                for (int64_t c = g * cpg; c < (g + 1) * cpg; c++) mean[g] += count * e[2 * c];
            total += count * (double)cpg;
        }
        for (int64_t g = g0; g < g1; g++) mean[g] /= total;
        for (int64_t q = 0; q < k->nq; q++) {
            const double count = (double)LOCAL(chan_count)(k, q);
            const double *e = k->part + 2 * (s * k->nq + q) * C;
            for (int64_t g = g0; g < g1; g++)
                for (int64_t c = g * cpg; c < (g + 1) * cpg; c++) {
                    const double d = e[2 * c] - mean[g];
                    var[g] += e[2 * c + 1] + count * d * d;
                }
        }
        for (int64_t g = g0; g < g1; g++) var[g] /= total;
        u = s * G + g1;
    }
}

/* The moment stage and the merge: mean and biased variance per unit. */
static int LOCAL(chan_moments)(LOCAL(chan_ctx) *k, int64_t G, double *mean, double *var,
                               int num_threads) {
    const int rc = LOCAL(chan_run_entries)(k, LOCAL(chan_moment_items), 2, 1, num_threads);
    if (rc != FASTNORM_OK) return rc;
    LOCAL(merge_ctx) m = {k, G, mean, var};
    const int64_t units = k->S * G;
    fn_parallel_ranges(fn_threads_for(num_threads, units, 16 * k->S * k->nq * k->C), units,
                       LOCAL(merge_units), &m);
    fn_scratch_free(k->part);
    k->part = NULL;
    return FASTNORM_OK;
}

/* The gradient-sum stage, merged per (s, c) over the entries in order:
 * sums[(s*C + c)*3 + j]. k->mu must be set. */
static int LOCAL(chan_sums)(LOCAL(chan_ctx) *k, double *sums, int num_threads) {
    const int rc = LOCAL(chan_run_entries)(k, LOCAL(chan_sum_items), 3, k->scaled ? 3 : 2,
                                           num_threads);
    if (rc != FASTNORM_OK) return rc;
    const int64_t C = k->C;
    for (int64_t s = 0; s < k->S; s++) { /* per (s, c), the entries added in q order */
        double *o = sums + 3 * s * C;
        for (int64_t i = 0; i < 3 * C; i++) o[i] = 0;
        for (int64_t q = 0; q < k->nq; q++) {
            const double *e = k->part + 3 * (s * k->nq + q) * C;
            for (int64_t i = 0; i < 3 * C; i++) o[i] += e[i];
        }
    }
    fn_scratch_free(k->part);
    k->part = NULL;
    return FASTNORM_OK;
}

/* Coefficients of y = (x - mean) * rstd * w + b per (s, c), from double
 * statistics per (s, c/cpg): mu is the statistic rounded to A, and b
 * absorbs the rounding, so that x - mu stays exact for large means. */
static void LOCAL(forward_coefficients)(int64_t S, int64_t C, int64_t cpg, const double *mean,
                                        const double *rstd, const W *weight, const W *bias,
                                        A *mu, A *a, A *b) {
    const int64_t G = C / cpg;
    for (int64_t s = 0; s < S; s++)
        for (int64_t c = 0, u = s * G, left = cpg; c < C; c++, left--) {
            if (left == 0) u++, left = cpg;
            const int64_t i = s * C + c;
            const double w = weight ? (double)weight[c] : 1.0;
            const double scale = rstd[u] * w;
            mu[i] = (A)mean[u];
            a[i] = (A)scale;
            b[i] = (A)((bias ? (double)bias[c] : 0.0) - (mean[u] - (double)mu[i]) * scale);
        }
}

/* The NB step of one unit from its channels' gradient sums (cpg entries of
 * {sum dy, sum dy * xh, sum xh}, xh = (x - mu) * rstd about the stored mean
 * mu): the
 * coefficients of dx = a * dy + b * ((x - mu) * rstd) + k per channel, and
 * the channels' parameter gradients added to dw and db. M is the unit's
 * element count; cc = mean(xhat') measures the rounding of the stored mean
 * (docs/numerics.md §0). */
static void LOCAL(unit_backward)(const double *sums, const W *weight, int64_t cpg, double rs,
                                 double M, A *a, A *b, A *kk, double *dw, double *db) {
    double sd = 0, sg = 0, sgx = 0;
    for (int64_t c = 0; c < cpg; c++) {
        const double *e = sums + 3 * c;
        const double w = weight ? (double)weight[c] : 1.0;
        sg += w * e[0];
        sgx += w * e[1];
        sd += e[2];
    }
    const double cc = sd / M;             /* mean(xhat') */
    const double mg = sg / M;             /* mean(g) */
    const double mgx = sgx / M - cc * mg; /* mean(g * xhat) */
    for (int64_t c = 0; c < cpg; c++) {
        const double *e = sums + 3 * c;
        const double w = weight ? (double)weight[c] : 1.0;
        dw[c] += e[1] - cc * e[0];
        db[c] += e[0];
        /* dx = rstd * (g - mg - xhat * mgx), xhat = (x - mu) * rstd - cc */
        a[c] = (A)(rs * w);
        b[c] = (A)(-rs * mgx);
        kk[c] = (A)(rs * (mgx * cc - mg));
    }
}

/* ---- group norm (and instance and batch norm in training) --------------- */



/* ---- group norm of contiguous units (NCHW) ----------------------------- */

/* With R == 1 and L > 1 each unit (s, g) is one contiguous run of cpg * L
 * elements. Its statistics and its normalization (or its gradient sums and
 * its dx) are then done back to back, while the run is still in cache, so the
 * data is read from memory once. The arithmetic is that of the staged path,
 * entry for entry and in the same order: the results are the same bits. */
typedef struct {
    const PRIMS_TYPE *P;
    int64_t S, C, L, G;
    const T *x, *dy;
    T *out;
    const W *weight, *bias;
    double eps;
    ST *mean, *rstd, *var;   /* forward outputs (may be NULL) */
    const ST *mean_in, *rstd_in; /* backward inputs */
    double *part;           /* backward: dweight then dbias partials, S*C each */
    int failed;
} LOCAL(unit_ctx);

static void LOCAL(unit_forward_items)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(unit_ctx) *k = (LOCAL(unit_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, L = k->L, G = k->G, cpg = C / G;
    double *e = (double *)fn_scratch_alloc((size_t)(2 * cpg) * sizeof(double));
    A *co = (A *)fn_scratch_alloc((size_t)(3 * cpg) * sizeof(A));
    if (!e || !co) {
        k->failed = 1;
        fn_scratch_free(e);
        fn_scratch_free(co);
        return;
    }
    /* 16-bit data: the unit widened once into this thread's float copy, which
     * the centered sums and the normalization read (the same results) */
    A *xa = NULL;
    if (FN_WIDE && cpg * L <= FN_WIDE_MAX) xa = (A *)fn_scratch_alloc((size_t)(cpg * L) * sizeof(A));
    LOCAL(chan_ctx) one; /* the unit as a one-unit, one-row channel block */
    LOCAL(chan_setup)(&one, 1, 1, cpg, L);
    one.part = e;
    for (int64_t u = begin; u < end; u++) {
        const int64_t s = u / G, c0 = (u % G) * cpg;
        const T *xu = k->x + (s * C + c0) * L;
        T *yu = k->out + (s * C + c0) * L;
        for (int64_t c = 0; c < cpg; c++) {
            const T *seg = xu + c * L;
            A mu, sd, sd2;
            if (xa) {
                mu = P->widen_sum(seg, xa + c * L, L) / (A)L;
                P->centered_sums_wide(xa + c * L, L, mu, &sd, &sd2);
            } else {
                mu = P->sum(seg, L) / (A)L;
                P->centered_sums(seg, L, mu, &sd, &sd2);
            }
            LOCAL(finish_moments)(e + 2 * c, mu, sd, sd2, L, k->eps, seg, 1);
        }
        double mean, var;
        LOCAL(merge_ctx) m = {&one, 1, &mean, &var};
        LOCAL(merge_units)(&m, 0, 1);
        const double rs = 1.0 / sqrt(var + k->eps);
        if (k->mean) k->mean[u] = (ST)mean;
        if (k->rstd) k->rstd[u] = (ST)rs;
        if (k->var) k->var[u] = (ST)var;
        LOCAL(forward_coefficients)(1, cpg, cpg, &mean, &rs, k->weight ? k->weight + c0 : NULL,
                                    k->bias ? k->bias + c0 : NULL, co, co + cpg, co + 2 * cpg);
        for (int64_t c = 0; c < cpg; c++) {
            if (xa)
                P->scale_shift_wide(xa + c * L, yu + c * L, L, co[c], co[cpg + c],
                                    co[2 * cpg + c]);
            else
                P->scale_shift(xu + c * L, yu + c * L, L, co[c], co[cpg + c], co[2 * cpg + c], 0);
        }
    }
    fn_scratch_free(xa);
    fn_scratch_free(e);
    fn_scratch_free(co);
}

static void LOCAL(unit_backward_items)(void *vctx, int64_t begin, int64_t end) {
    LOCAL(unit_ctx) *k = (LOCAL(unit_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t C = k->C, L = k->L, G = k->G, cpg = C / G, SC = k->S * C;
    double *e = (double *)fn_scratch_alloc((size_t)(3 * cpg) * sizeof(double));
    A *co = (A *)fn_scratch_alloc((size_t)(3 * cpg) * sizeof(A));
    if (!e || !co) {
        k->failed = 1;
        fn_scratch_free(e);
        fn_scratch_free(co);
        return;
    }
    /* (the segments are converted at each pass: widening dy and x once, as
     * the row backward does for bfloat16, gained nothing here; bench/choices.md,
     * "Widened copies in the backward") */
    for (int64_t u = begin; u < end; u++) {
        const int64_t s = u / G, c0 = (u % G) * cpg, o = (s * C + c0) * L;
        const A mu = (A)k->mean_in[u], r = (A)k->rstd_in[u];
        for (int64_t c = 0; c < cpg; c++) {
            A s3[3];
            P->backward_sums(k->dy + o + c * L, k->x + o + c * L, L, mu, r, NULL, s3);
            e[3 * c] = s3[0], e[3 * c + 1] = s3[1], e[3 * c + 2] = s3[2];
        }
        double *dw = k->part + s * C + c0, *db = dw + SC;
        for (int64_t c = 0; c < cpg; c++) dw[c] = db[c] = 0;
        LOCAL(unit_backward)(e, k->weight ? k->weight + c0 : NULL, cpg, (double)r,
                             (double)(cpg * L), co, co + cpg, co + 2 * cpg, dw, db);
        for (int64_t c = 0; c < cpg; c++)
            P->affine_backward(k->dy + o + c * L, k->x + o + c * L, k->out + o + c * L, L, mu, r,
                               co[c], co[cpg + c], co[2 * cpg + c], 0);
    }
    fn_scratch_free(e);
    fn_scratch_free(co);
}

/* Whether the fused per-unit path applies: contiguous channel segments and
 * enough units (sample, group) to share among threads. A function of the
 * shape alone, never of the thread count: the two paths give the same bits
 * for finite data, but not the same sign of a NaN (one path forms it from a
 * NaN input, the other from an invalid operation), and results must not
 * depend on the thread count, NaN bits included. */
#ifndef FN_UNITS_MIN
#define FN_UNITS_MIN 8
#endif
static int LOCAL(use_units)(int64_t S, int64_t R, int64_t L, int64_t G) {
    return R == 1 && L > 1 && S * G >= FN_UNITS_MIN;
}

int NAME(group_norm)(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G, const T *x, T *y,
                     const W *weight, const W *bias, double eps, ST *mean, ST *rstd, ST *var,
                     int num_threads) {
    if (S <= 0 || G <= 0 || C % G != 0) return S <= 0 ? FASTNORM_OK : FASTNORM_EINVAL;
    const int64_t units = S * G;
    if (R <= 0 || C <= 0 || L <= 0) { /* empty groups */
        for (int64_t u = 0; u < units; u++) {
            if (mean) mean[u] = (ST)NAN;
            if (rstd) rstd[u] = (ST)NAN;
            if (var) var[u] = (ST)NAN;
        }
        return FASTNORM_OK;
    }
    if (LOCAL(use_units)(S, R, L, G)) {
        LOCAL(unit_ctx) k = {FN_CTABLE(), S, C, L, G, x, NULL, y, weight, bias, eps,
                             mean, rstd, var, NULL, NULL, NULL, 0};
        const int nt = fn_threads_for(num_threads, units, S * C * L * (int64_t)sizeof(T));
        fn_parallel_ranges(nt, units, LOCAL(unit_forward_items), &k);
        return k.failed ? FASTNORM_ENOMEM : FASTNORM_OK;
    }
    LOCAL(chan_ctx) k;
    LOCAL(chan_setup)(&k, S, R, C, L);
    k.x = x, k.out = y, k.eps = eps;
    double *st = (double *)fn_scratch_alloc((size_t)(3 * units) * sizeof(double));
    A *co = (A *)fn_scratch_alloc((size_t)(3 * S * C) * sizeof(A));
    int rc = (st && co) ? FASTNORM_OK : FASTNORM_ENOMEM;
    if (rc == FASTNORM_OK) rc = LOCAL(chan_moments)(&k, G, st, st + units, num_threads);
    if (rc == FASTNORM_OK) {
        double *mu = st, *vr = st + units, *rs = st + 2 * units;
        for (int64_t u = 0; u < units; u++) {
            rs[u] = 1.0 / sqrt(vr[u] + eps);
            if (mean) mean[u] = (ST)mu[u];
            if (rstd) rstd[u] = (ST)rs[u];
            if (var) var[u] = (ST)vr[u];
        }
        LOCAL(forward_coefficients)(S, C, C / G, mu, rs, weight, bias, co, co + S * C,
                                    co + 2 * S * C);
        k.mu = co, k.a = co + S * C, k.b = co + 2 * S * C;
        LOCAL(chan_run_apply)(&k, LOCAL(chan_apply_items), 1, 3, num_threads);
    }
    fn_scratch_free(st);
    fn_scratch_free(co);
    return rc;
}

/* Parameter gradients (accumulated in double over samples, in order) and
 * the backward coefficients of the NB step per (s, c), given per unit the
 * rstd and the offset cc = mean(xhat') of the stored mean (docs/numerics.md §0). */
int NAME(group_norm_backward)(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                              const T *dy, const T *x, const ST *mean, const ST *rstd,
                              const W *weight, T *dx, W *dweight, W *dbias, int num_threads) {
    if (G <= 0 || C % G != 0) return FASTNORM_EINVAL;
    if (C <= 0) return FASTNORM_OK;
    if (S <= 0 || R <= 0 || L <= 0) {
        for (int64_t c = 0; c < C; c++) {
            if (dweight) dweight[c] = 0;
            if (dbias) dbias[c] = 0;
        }
        return FASTNORM_OK;
    }
    const int64_t cpg = C / G, SC = S * C;
    const double M = (double)(cpg * R * L);
    if (LOCAL(use_units)(S, R, L, G)) {
        double *part = (double *)fn_scratch_alloc((size_t)(2 * SC) * sizeof(double));
        if (!part) return FASTNORM_ENOMEM;
        LOCAL(unit_ctx) k = {FN_CTABLE(), S, C, L, G, x, dy, dx, weight, NULL, 0.0,
                             NULL, NULL, NULL, mean, rstd, part, 0};
        const int nt = fn_threads_for(num_threads, S * G, 2 * SC * L * (int64_t)sizeof(T));
        fn_parallel_ranges(nt, S * G, LOCAL(unit_backward_items), &k);
        if (!k.failed)
            for (int64_t c = 0; c < C; c++) { /* samples added in order, as the staged path */
                double dw = 0, db = 0;
                for (int64_t s = 0; s < S; s++) dw += part[s * C + c], db += part[SC + s * C + c];
                if (dweight) dweight[c] = (W)dw;
                if (dbias) dbias[c] = (W)db;
            }
        fn_scratch_free(part);
        return k.failed ? FASTNORM_ENOMEM : FASTNORM_OK;
    }
    LOCAL(chan_ctx) k;
    LOCAL(chan_setup)(&k, S, R, C, L);
    k.x = x, k.dy = dy, k.out = dx;
    double *sums = (double *)fn_scratch_alloc((size_t)(3 * SC + 2 * C) * sizeof(double));
    A *co = (A *)fn_scratch_alloc((size_t)(5 * SC) * sizeof(A));
    int rc = (sums && co) ? FASTNORM_OK : FASTNORM_ENOMEM;
    if (rc == FASTNORM_OK) {
        A *mu = co, *r = co + SC;
        for (int64_t i = 0, u = 0, left = cpg; i < SC; i++, left--) {
            if (left == 0) u++, left = cpg; /* channels of one unit, units in order */
            mu[i] = (A)mean[u];
            r[i] = (A)rstd[u];
        }
        k.mu = mu, k.r = r;
        rc = LOCAL(chan_sums)(&k, sums, num_threads);
    }
    if (rc == FASTNORM_OK) {
        A *a = co + 2 * SC, *b = co + 3 * SC, *kk = co + 4 * SC;
        double *dw = sums + 3 * SC, *db = dw + C;
        for (int64_t c = 0; c < C; c++) dw[c] = db[c] = 0;
        for (int64_t s = 0; s < S; s++)
            for (int64_t g = 0; g < G; g++) {
                const int64_t c0 = g * cpg, i0 = s * C + c0;
                LOCAL(unit_backward)(sums + 3 * i0, weight ? weight + c0 : NULL, cpg,
                                     (double)rstd[s * G + g], M, a + i0, b + i0, kk + i0,
                                     dw + c0, db + c0);
            }
        for (int64_t c = 0; c < C; c++) {
            if (dweight) dweight[c] = (W)dw[c];
            if (dbias) dbias[c] = (W)db[c];
        }
        k.r = co + SC, k.a = a, k.b = b, k.k = kk;
        LOCAL(chan_run_apply)(&k, LOCAL(chan_backward_apply_items), 2, 5, num_threads);
    }
    fn_scratch_free(sums);
    fn_scratch_free(co);
    return rc;
}

/* ---- stages with given statistics (eval modes, switchable and batch-layer
 * norm) --------------------------------------------------------------- */

int NAME(channel_moments)(int64_t S, int64_t R, int64_t C, int64_t L, const T *x, double eps,
                          double *mean, double *var, int num_threads) {
    if (S <= 0 || C <= 0) return FASTNORM_OK;
    if (R <= 0 || L <= 0) {
        for (int64_t i = 0; i < S * C; i++) mean[i] = var[i] = NAN;
        return FASTNORM_OK;
    }
    LOCAL(chan_ctx) k;
    LOCAL(chan_setup)(&k, S, R, C, L);
    k.x = x, k.eps = eps; /* decides only whether tiny sums are recomputed in double */
    return LOCAL(chan_moments)(&k, C, mean, var, num_threads);
}

int NAME(channel_normalize)(int64_t S, int64_t R, int64_t C, int64_t L, const T *x, T *y,
                            const double *mean, const double *rstd, const W *weight,
                            const W *bias, int accumulate, int num_threads) {
    if (S <= 0 || R <= 0 || C <= 0 || L <= 0) return FASTNORM_OK;
    LOCAL(chan_ctx) k;
    LOCAL(chan_setup)(&k, S, R, C, L);
    A *co = (A *)fn_scratch_alloc((size_t)(3 * S * C) * sizeof(A));
    if (!co) return FASTNORM_ENOMEM;
    LOCAL(forward_coefficients)(S, C, 1, mean, rstd, weight, bias, co, co + S * C,
                                co + 2 * S * C);
    k.x = x, k.out = y, k.accumulate = accumulate;
    k.mu = co, k.a = co + S * C, k.b = co + 2 * S * C;
    LOCAL(chan_run_apply)(&k, LOCAL(chan_apply_items), 1 + (accumulate != 0), 3, num_threads);
    fn_scratch_free(co);
    return FASTNORM_OK;
}

/* channel_sums_scale's per-channel loops for the channels [first, last)
 * (fn_parallel_columns): mu and a in A and the unit scale before the sums;
 * after them, the sums about mu itself, not its rounding */
typedef struct {
    const double *mu, *a;
    A *mu_a, *ones, *aa;
    const double *sums;
    double *sum_dy, *sum_dyx;
} LOCAL(sums_coef_ctx);

static void LOCAL(sums_coefs_in)(void *vctx, int64_t first, int64_t last) {
    const LOCAL(sums_coef_ctx) k = *(const LOCAL(sums_coef_ctx) *)vctx;
    for (int64_t i = first; i < last; i++) {
        k.mu_a[i] = (A)k.mu[i];
        k.ones[i] = 1;
    }
    if (k.aa)
        for (int64_t i = first; i < last; i++) k.aa[i] = (A)k.a[i];
}

static void LOCAL(sums_coefs_out)(void *vctx, int64_t first, int64_t last) {
    const LOCAL(sums_coef_ctx) k = *(const LOCAL(sums_coef_ctx) *)vctx;
    for (int64_t i = first; i < last; i++) {
        const double *e = k.sums + 3 * i;
        k.sum_dy[i] = e[0];
        k.sum_dyx[i] = e[1] - (k.mu[i] - (double)k.mu_a[i]) * e[0];
    }
}

/* The gradient sums about mu of channel_sums and, when dx is not NULL,
 * dx = a * dy per (s, c) in the same pass over dy. */
static int LOCAL(channel_sums_scale)(int64_t S, int64_t R, int64_t C, int64_t L, const T *dy,
                                     const T *x, const double *mu, double *sum_dy,
                                     double *sum_dyx, T *dx, const double *a, int num_threads) {
    if (S <= 0 || C <= 0) return FASTNORM_OK;
    const int64_t SC = S * C;
    if (R <= 0 || L <= 0) {
        for (int64_t i = 0; i < SC; i++) sum_dy[i] = sum_dyx[i] = 0;
        return FASTNORM_OK;
    }
    LOCAL(chan_ctx) k;
    LOCAL(chan_setup)(&k, S, R, C, L);
    double *sums = (double *)fn_scratch_alloc((size_t)(3 * SC) * sizeof(double));
    const int64_t nco = dx ? 3 * SC + C : 2 * SC;
    A *mu_a = (A *)fn_scratch_alloc((size_t)nco * sizeof(A));
    int rc = (sums && mu_a) ? FASTNORM_OK : FASTNORM_ENOMEM;
    if (rc == FASTNORM_OK) {
        A *ones = mu_a + SC; /* sums about mu, unscaled */
        LOCAL(sums_coef_ctx) cc = {mu, a, mu_a, ones, dx ? mu_a + 2 * SC : NULL, NULL,
                                   sum_dy, sum_dyx};
        fn_parallel_columns(num_threads, SC, 4 * (int64_t)sizeof(double),
                            LOCAL(sums_coefs_in), &cc);
        k.x = x, k.dy = dy, k.mu = mu_a, k.r = ones;
        if (dx) {
            A *aa = mu_a + 2 * SC, *zero = aa + SC;
            for (int64_t c = 0; c < C; c++) zero[c] = 0;
            k.scaled = dx, k.scale = aa, k.zero = zero;
        }
        rc = LOCAL(chan_sums)(&k, sums, num_threads);
        if (rc == FASTNORM_OK) {
            cc.sums = sums;
            fn_parallel_columns(num_threads, SC, 6 * (int64_t)sizeof(double),
                                LOCAL(sums_coefs_out), &cc);
        }
    }
    fn_scratch_free(sums);
    fn_scratch_free(mu_a);
    return rc;
}

int NAME(channel_sums)(int64_t S, int64_t R, int64_t C, int64_t L, const T *dy, const T *x,
                       const double *mu, double *sum_dy, double *sum_dyx, int num_threads) {
    return LOCAL(channel_sums_scale)(S, R, C, L, dy, x, mu, sum_dy, sum_dyx, NULL, NULL,
                                     num_threads);
}

int NAME(channel_sums_scale)(int64_t S, int64_t R, int64_t C, int64_t L, const T *dy,
                             const T *x, const double *mu, double *sum_dy, double *sum_dyx,
                             T *dx, const double *a, int num_threads) {
    return LOCAL(channel_sums_scale)(S, R, C, L, dy, x, mu, sum_dy, sum_dyx, dx, a,
                                     num_threads);
}

/* channel_affine_backward's coefficients in A for the channels [first, last)
 * (fn_parallel_columns): mu, r, a, b, then k with the rounding of mu */
typedef struct {
    const double *mu, *r, *a, *b, *kc;
    A *co;
    int64_t SC;
} LOCAL(affine_coef_ctx);

static void LOCAL(affine_coefs)(void *vctx, int64_t first, int64_t last) {
    const LOCAL(affine_coef_ctx) k = *(const LOCAL(affine_coef_ctx) *)vctx;
    A *const co = k.co;
    const int64_t SC = k.SC;
    for (int64_t i = first; i < last; i++) {
        const double mu = k.mu[i], r = k.r[i], b = k.b[i];
        const A mu_a = (A)mu;
        co[i] = mu_a;
        co[SC + i] = (A)r;
        co[2 * SC + i] = (A)k.a[i];
        co[3 * SC + i] = (A)b;
        /* the rounding of mu, moved into the constant */
        co[4 * SC + i] = (A)(k.kc[i] + b * r * ((double)mu_a - mu));
    }
}

int NAME(channel_affine_backward)(int64_t S, int64_t R, int64_t C, int64_t L, const T *dy,
                                  const T *x, T *dx, const double *mu, const double *r,
                                  const double *a, const double *b, const double *kc,
                                  int accumulate, int num_threads) {
    if (S <= 0 || R <= 0 || C <= 0 || L <= 0) return FASTNORM_OK;
    const int64_t SC = S * C;
    LOCAL(chan_ctx) k;
    LOCAL(chan_setup)(&k, S, R, C, L);
    A *co = (A *)fn_scratch_alloc((size_t)(5 * SC) * sizeof(A));
    if (!co) return FASTNORM_ENOMEM;
    LOCAL(affine_coef_ctx) cc = {mu, r, a, b, kc, co, SC};
    fn_parallel_columns(num_threads, SC, 5 * (int64_t)(sizeof(double) + sizeof(A)),
                        LOCAL(affine_coefs), &cc);
    k.x = x, k.dy = dy, k.out = dx, k.accumulate = accumulate;
    k.mu = co, k.r = co + SC, k.a = co + 2 * SC, k.b = co + 3 * SC, k.k = co + 4 * SC;
    LOCAL(chan_run_apply)(&k, LOCAL(chan_backward_apply_items), 2 + (accumulate != 0), 5,
                          num_threads);
    fn_scratch_free(co);
    return FASTNORM_OK;
}

#undef FN_CTABLE
