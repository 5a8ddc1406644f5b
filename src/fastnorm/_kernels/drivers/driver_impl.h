/*
 * driver_impl.h -- the per-dtype drivers; included by driver.c with
 * T, A, W, ST, FN_TO_D, FN_FROM_D, SUF, PRIMS_TYPE, FN_TINY,
 * FN_EPS_NEGLIGIBLE, FN_WIDE, FN_WIDE_BACKWARD, FN_WIDE_RMS,
 * FN_BWD_TOGETHER, NAME(f) and LOCAL(f) (see driver.c). Data (T) is read
 * here only through FN_TO_D and the primitives.
 */

/* the limits of the rows taken several at a time (see forward_rows) */
#define FN_STAT_ROWS_MAX_N 1024 /* their other widened copies are on the stack: */
#if FN_STAT_ROWS_MAX_N > FN_WIDE_STACK
#error "FN_STAT_ROWS_MAX_N must not exceed FN_WIDE_STACK"
#endif
#define FN_STAT_ROWS_MAX_BYTES ((int64_t)8 * 1024 * 1024)
/* ...except for rows of up to FN_STAT_ROWS_ANY_N elements, taken several at a
 * time whatever the size of the data (bench/choices.md, "Several rows'
 * statistics at once") */
#define FN_STAT_ROWS_ANY_N 512
/* whether rows of n elements, `bytes` of them in all, go several at a time */
#define FN_STAT_ROWS_PAY(n, bytes)                                                          \
    ((n) <= FN_STAT_ROWS_MAX_N &&                                                           \
     ((n) <= FN_STAT_ROWS_ANY_N || (bytes) <= FN_STAT_ROWS_MAX_BYTES))
/* The row drivers' table for rows of n elements in direction dir
 * (FN_FORWARD, FN_BACKWARD): the target's choice by row length (dispatch.c) */
#define FN_ROW_TABLE(n, dir) (fn_row_prims(FN_DT(SUF), dir, n)->SUF)
#define FN_EXACT LOCAL(exact_moments)
#define FN_EXACT_NORMALIZE LOCAL(exact_normalize)

/* The exact-range path (see fn_exact_stats in driver.c). */
static fn_exact_stats LOCAL(exact_moments)(const T *x, int64_t n, int centered, double eps) {
    fn_exact_stats st = {1.0, 0.0, 0.0, 0.0};
    double m0 = 0.0, q = 0.0;
    int has_nan = 0;
    for (int64_t i = 0; i < n; i++) {
        const double v = fabs(FN_TO_D(x[i]));
        if (isnan(v)) has_nan = 1;
        else if (v > m0) m0 = v;
    }
    if (has_nan || (isinf(m0) && centered)) { /* NaN, or Inf - Inf: a NaN row */
        st.mean_scaled = st.rstd = st.rstd_scaled = NAN;
        return st;
    }
    if (isinf(m0)) { /* RMSNorm: mean(x^2) = Inf, rstd = 0 (as PyTorch) */
        st.rstd = 0.0;
        return st;
    }
    if (m0 == 0.0) {
        st.rstd = st.rstd_scaled = 1.0 / sqrt(eps);
        return st;
    }
    st.scale = m0;
    if (centered) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++) s += FN_TO_D(x[i]) / m0;
        st.mean_scaled = s / (double)n;
    }
    for (int64_t i = 0; i < n; i++) {
        const double d = FN_TO_D(x[i]) / m0 - st.mean_scaled;
        q += d * d;
    }
    /* var = m0^2 q / n; rstd = 1 / sqrt(var + eps) without forming m0^2 */
    st.rstd_scaled = 1.0 / sqrt(q / (double)n + (eps / m0) / m0);
    st.rstd = q > 0.0 ? st.rstd_scaled / m0 : 1.0 / sqrt(eps);
    return st;
}

/* y = (x - mean) * rstd * w + b, as (x / scale - mean / scale) * (rstd * scale) */
static void LOCAL(exact_normalize)(const T *x, T *y, int64_t n, fn_exact_stats st, const W *w,
                                   const W *b) {
    for (int64_t i = 0; i < n; i++) {
        const double d = FN_TO_D(x[i]) / st.scale - st.mean_scaled;
        double v = d == 0.0 ? 0.0 : d * st.rstd_scaled;
        if (w) v *= (double)w[i];
        if (b) v += (double)b[i];
        y[i] = FN_FROM_D(v);
    }
}

/* Mean and rstd of one row by the corrected two-pass algorithm: mu from the
 * first pass (its sum is given), then sum(d) and sum(d^2) with d = x - mu.
 * c = mean(d) is the rounding error of mu; var = mean(d^2) - c^2. The row is
 * normalized by (x - mu) - c, which keeps the digits that mu + c would lose.
 * Returns 0, or 1 when the row needs the exact-range path (*exact filled). */
static int LOCAL(layer_norm_row_finish)(const T *x, int64_t n, A mu, A sd, A sq, double eps,
                                        A *mu_out, A *c_out, A *rstd_out, A *sq_out,
                                        fn_exact_stats *exact) {
    if (!isfinite(sq) || (sq < (A)(FN_TINY * (double)n) && eps < FN_EPS_NEGLIGIBLE)) {
        *exact = FN_EXACT(x, n, 1, eps);
        return 1;
    }
    const A c = sd / (A)n;
    A var = sq / (A)n - c * c;
    if (var < 0) var = 0;
    *mu_out = mu;
    *c_out = c;
    *sq_out = sq;
    *rstd_out = (A)(1.0 / sqrt((double)var + eps));
    return 0;
}

static int LOCAL(layer_norm_row_stats)(const PRIMS_TYPE *P, const T *x, const A *xa, int64_t n,
                                       A sum, double eps, A *mu_out, A *c_out, A *rstd_out,
                                       A *sq_out, fn_exact_stats *exact) {
    const A mu = sum / (A)n;
    A sd, sq;
    if (xa) P->centered_sums_wide(xa, n, mu, &sd, &sq); /* the same sums, from x widened */
    else P->centered_sums(x, n, mu, &sd, &sq);
    return LOCAL(layer_norm_row_finish)(x, n, mu, sd, sq, eps, mu_out, c_out, rstd_out, sq_out,
                                        exact);
}

/* rstd of one RMSNorm row from its sum of squares; 1 when the row needs the
 * exact-range path (*exact filled). */
static int LOCAL(rms_norm_row_rstd)(const T *x, int64_t n, A sq, double eps, A *rstd_out,
                                    fn_exact_stats *exact) {
    if (!isfinite(sq) || (sq < (A)(FN_TINY * (double)n) && eps < FN_EPS_NEGLIGIBLE)) {
        *exact = FN_EXACT(x, n, 0, eps);
        return 1;
    }
    *rstd_out = (A)(1.0 / sqrt((double)(sq / (A)n) + eps));
    return 0;
}

/* ---- forward ----------------------------------------------------------- */

typedef struct {
    const PRIMS_TYPE *P;
    int64_t rows, n, ldx, ldy;
    const T *x;
    const W *weight, *bias;
    T *y;
    ST *mean, *rstd;
    double eps;
    int centered; /* 1: LayerNorm; 0: RMSNorm (no mean, no bias) */
    /* fused residual add (res == NULL: none): s = x + res + res_bias is
     * written to s and normalized in place of x */
    const T *res;
    const W *res_bias;
    T *s;
    int64_t ldr, lds;
    /* per-sample parameters (AdaLN): row i uses the parameter row
     * i / rows_per_param, ldp elements apart; rows_per_param = 0: one row */
    int64_t rows_per_param, ldp;
    int params_finite; /* every weight and bias element is finite */
    int64_t ahead;     /* rows between a row and the row prefetched meanwhile */
    /* y written with streaming stores through this copy and fence (see
     * fn_stream_for; from one read of the kernel table), or NULL: ordinary stores */
    void (*stream)(void *dst, const void *src, size_t n);
    void (*fence)(void);
} LOCAL(forward_ctx);

/* Rows written with streaming stores go FN_STREAM_CHUNK elements at a time
 * through the thread's fn_stream_writer (driver.c). Each element gets the
 * same arithmetic wherever a chunk starts (prims.h), so the bits are those of
 * a whole-row call. */

/* Whether the n elements of p (NULL: none) are all finite. */
static int LOCAL(all_finite)(const W *p, int64_t n) {
    if (!p) return 1;
    int bad = 0;
    for (int64_t j = 0; j < n; j++) bad |= !isfinite(p[j]);
    return !bad;
}

/* Whether no element of a row normalized with these statistics can be NaN:
 * its data is finite (the statistics are), so |t| = |(x - mu) * rstd - c *
 * rstd| <= sqrt(sq) * rstd + |c * rstd| stays far from overflow, and with
 * finite parameters t * w + b is finite or an infinity, never NaN. */
static int LOCAL(row_nonan)(const LOCAL(forward_ctx) *k, A sq, A c, A r) {
    if (!k->params_finite) return 0;
    const double rr = (double)r;
    return (double)sq * rr * rr < 1e58 && fabs((double)c * rr) < 1e29; /* false for NaN */
}

/* One row's statistics: what its normalization needs. */
typedef struct {
    const T *src; /* the row normalized: x, or s = x + residual */
    A mu, c, r, sq;
    int exact_path;
    fn_exact_stats exact;
} LOCAL(row_stats);

/* The row normalized: x, or s = x + residual (written, then read back from
 * L1 by the same statistics as an unfused call would use). */
static FN_DRIVER_INLINE const T *LOCAL(row_source)(const LOCAL(forward_ctx) *k, int64_t i,
                                                   int64_t end) {
    const T *xr = k->x + i * k->ldx;
    if (!k->res) return xr;
    const int64_t fetch = i + k->ahead; /* its residual and s rows fetched meanwhile */
    const int more = fetch < end;
    T *sr = k->s + i * k->lds;
    const T *rr = k->res + i * k->ldr;
    /* the head, then the rest (fn_line_head) */
    const int64_t h = fn_line_head(sr, k->n, sizeof(T));
    if (h) k->P->residual_add(xr, rr, k->res_bias, sr, h, NULL, NULL);
    k->P->residual_add(xr + h, rr + h, k->res_bias ? k->res_bias + h : NULL, sr + h, k->n - h,
                       more ? k->res + fetch * k->ldr + h : NULL,
                       more ? k->s + fetch * k->lds + h : NULL);
    return sr;
}

/* mean and rstd (or the exact path) from the row's first sum: sum for
 * LayerNorm (its centered sums then computed, or given in sd_sq), the sum of
 * squares for RMSNorm */
static FN_DRIVER_INLINE void LOCAL(row_finish)(const LOCAL(forward_ctx) *k, const A *xa, A sum,
                                               const A *sd_sq, LOCAL(row_stats) *st) {
    const int64_t n = k->n;
    st->mu = st->c = st->r = 0;
    st->sq = sum;
    if (!k->centered)
        st->exact_path = LOCAL(rms_norm_row_rstd)(st->src, n, sum, k->eps, &st->r, &st->exact);
    else if (sd_sq)
        st->exact_path = LOCAL(layer_norm_row_finish)(st->src, n, sum / (A)n, sd_sq[0],
                                                      sd_sq[1], k->eps, &st->mu, &st->c,
                                                      &st->r, &st->sq, &st->exact);
    else
        st->exact_path = LOCAL(layer_norm_row_stats)(k->P, st->src, xa, n, sum, k->eps, &st->mu,
                                                     &st->c, &st->r, &st->sq, &st->exact);
}

/* Whether rows of n elements are short rows (FN_SHORT_ROW_N, FN_SHORT_ROW_BYTES) */
static FN_DRIVER_INLINE int LOCAL(short_rows)(int64_t n) {
    return n <= FN_SHORT_ROW_N && n * (int64_t)sizeof(T) <= FN_SHORT_ROW_BYTES &&
           fn_short_rows_mode() != 0;
}

/* LayerNorm statistics of a row read as T, in one pass where that is as
 * accurate: the sums of d = x - K and d^2 around K, the mean of the row's
 * first FN_SHIFT_SAMPLE elements, finished as the corrected two-pass
 * algorithm finishes its second pass (c = mean(d), var = mean(d^2) - c^2,
 * the row normalized as (x - K) - c; there K is the rounded mean). With K
 * near the mean, x - K is exact wherever x - mean would be (rows with a
 * large mean), and the rounding error of var grows only with c^2 / var, the
 * cancellation in mean(d^2) - c^2. The mean of 64 elements lies well within
 * a standard deviation of the row's mean on all but rare rows; a row where
 * c^2 > var (or anything is not finite) takes the two passes instead. Saves
 * the first pass over each row (bench/choices.md, "One pass for the
 * LayerNorm statistics"). */
#define FN_SHIFT_SAMPLE 64
static FN_DRIVER_INLINE A LOCAL(row_shift)(const LOCAL(forward_ctx) *k, const T *src) {
    const int64_t m = k->n < FN_SHIFT_SAMPLE ? k->n : FN_SHIFT_SAMPLE;
    return k->P->sum(src, m) / (A)m;
}

/* row_stats_one_pass from the row's sums around shift (centered_sums) */
static FN_DRIVER_INLINE void LOCAL(row_stats_shifted)(const LOCAL(forward_ctx) *k,
                                                      LOCAL(row_stats) *st, A shift,
                                                      const A sd_sq[2]) {
    const PRIMS_TYPE *P = k->P;
    const int64_t n = k->n;
    const A c = sd_sq[0] / (A)n;
    if (2 * c * c * (A)n <= sd_sq[1]) { /* c^2 <= var; false for NaN */
        st->mu = st->c = st->r = 0;
        st->sq = sd_sq[1];
        st->exact_path = LOCAL(layer_norm_row_finish)(st->src, n, shift, sd_sq[0], sd_sq[1],
                                                      k->eps, &st->mu, &st->c, &st->r, &st->sq,
                                                      &st->exact);
    } else {
        LOCAL(row_finish)(k, NULL, P->sum(st->src, n), NULL, st);
    }
}

static FN_DRIVER_INLINE void LOCAL(row_stats_one_pass)(const LOCAL(forward_ctx) *k,
                                                       LOCAL(row_stats) *st) {
    const A shift = LOCAL(row_shift)(k, st->src);
    A sd_sq[2];
    k->P->centered_sums(st->src, k->n, shift, &sd_sq[0], &sd_sq[1]);
    LOCAL(row_stats_shifted)(k, st, shift, sd_sq);
}

/* The next row's statistics pass, taken in the loops of a row's y where that
 * row is streamed from the registers (normalize_stream): the row, its shift
 * (LayerNorm, LOCAL(row_shift)) and its sums (around the shift, or of squares
 * for RMSNorm). */
typedef struct {
    const T *src;
    A shift;
    A sums[2];
} LOCAL(stats_job);

/* Elements [o, o + len) of a row normalized with its statistics (from xa
 * where not NULL) into dst; next and next_y (both or neither NULL) the same
 * elements of the rows fetched meanwhile. */
static FN_DRIVER_INLINE void LOCAL(normalize_span)(const PRIMS_TYPE *P, const LOCAL(row_stats) *st,
                                                   const A *xa, int64_t o, int64_t len, T *dst,
                                                   const W *w, const W *b, const T *next,
                                                   T *next_y, int nonan) {
    const W *wo = w ? w + o : NULL, *bo = b ? b + o : NULL;
    if (xa)
        P->normalize_wide(xa + o, dst, len, st->mu, st->c, st->r, wo, bo, next, next_y, nonan);
    else P->normalize(st->src + o, dst, len, st->mu, st->c, st->r, wo, bo, next, next_y);
}

/* normalize_span of elements [o, o + len) of row yr through the writer; next
 * (NULL: none) the row whose same elements are fetched meanwhile, not the
 * next y row (it is never read: its lines stay out of the cache) */
static FN_DRIVER_INLINE void LOCAL(normalize_streamed)(const PRIMS_TYPE *P,
                                                       const LOCAL(row_stats) *st, const A *xa,
                                                       int64_t o, int64_t len, T *yr,
                                                       const W *w, const W *b, const T *next,
                                                       int nonan, fn_stream_writer *out) {
    T *to = (T *)fn_stream_at(out, yr + o);
    LOCAL(normalize_span)(P, st, xa, o, len, to, w, b, next ? next + o : NULL, next ? to : NULL,
                          nonan);
    fn_stream_put(out, (size_t)len * sizeof(T));
}

/* Row i normalized with its statistics (from xa where not NULL); the x and
 * y rows `fetch` are prefetched meanwhile (none at or beyond `end`). sj (or
 * NULL): the next row, whose statistics pass is taken in the loops of this
 * row where its lines are streamed from the registers; returns whether it
 * was. */
static FN_DRIVER_INLINE int LOCAL(row_apply)(const LOCAL(forward_ctx) *k, int64_t i,
                                             int64_t fetch, int64_t end, const A *xa,
                                             const LOCAL(row_stats) *st, fn_stream_writer *out,
                                             LOCAL(stats_job) *sj) {
    const PRIMS_TYPE *P = k->P;
    const int64_t n = k->n;
    const int more = fetch < end;
    T *yr = k->y + i * k->ldy;
    const T *next = more ? k->x + fetch * k->ldx : NULL;
    T *next_y = more ? k->y + fetch * k->ldy : NULL;
    const int64_t p = k->rows_per_param ? (i / k->rows_per_param) * k->ldp : 0;
    const W *w = k->weight ? k->weight + p : NULL, *b = k->bias ? k->bias + p : NULL;
    const int nonan = xa ? LOCAL(row_nonan)(k, st->sq, st->c, st->r) : 0;
    const int64_t to_line = k->stream ? fn_to_line(yr, sizeof(T)) : -1;
    A mu = st->mu, r = st->r;
    int taken = 0;
    if (st->exact_path) {
        FN_EXACT_NORMALIZE(st->src, yr, n, st->exact, w, b);
        mu = (A)(st->exact.mean_scaled * st->exact.scale);
        r = (A)st->exact.rstd;
    } else if (k->stream && !xa && P->normalize_stream && to_line >= 0) {
        /* the row's whole lines straight from the registers with streaming
         * stores; its partial first and last lines through the writer, which
         * joins the last line of a row to the first of the next into one
         * streamed line where the rows are contiguous (and writes the others
         * with ordinary stores: no line gets both kinds of store). The next x
         * row is fetched meanwhile, not the next y row (bench/choices.md,
         * "Streaming stores from the registers"). */
        const int64_t line = FN_STREAM_LINE / (int64_t)sizeof(T);
        const int64_t h = to_line < n ? to_line : n;
        const int64_t body = (n - h) / line * line, t = h + body;
        if (h) LOCAL(normalize_streamed)(P, st, NULL, 0, h, yr, w, b, NULL, 0, out);
        if (body)
            P->normalize_stream(st->src + h, yr + h, body, st->mu, st->c, st->r,
                                w ? w + h : NULL, b ? b + h : NULL, next ? next + h : NULL,
                                sj ? sj->src : NULL, n, sj ? sj->shift : 0,
                                k->centered ? 2 : 1, sj ? sj->sums : NULL);
        taken = sj && body;
        if (t < n) LOCAL(normalize_streamed)(P, st, NULL, t, n - t, yr, w, b, NULL, 0, out);
    } else if (k->stream) {
        /* chunks through the writer */
        for (int64_t o = 0; o < n; o += FN_STREAM_CHUNK) {
            const int64_t len = n - o < FN_STREAM_CHUNK ? n - o : FN_STREAM_CHUNK;
            LOCAL(normalize_streamed)(P, st, xa, o, len, yr, w, b, next, nonan, out);
        }
    } else {
        const int64_t h = fn_line_head(yr, n, sizeof(T)); /* the head, then the rest */
        if (h) LOCAL(normalize_span)(P, st, xa, 0, h, yr, w, b, NULL, NULL, nonan);
        LOCAL(normalize_span)(P, st, xa, h, n - h, yr + h, w, b, next ? next + h : NULL,
                              next ? next_y + h : NULL, nonan);
    }
    if (k->mean) k->mean[i] = (ST)(mu + st->c);
    if (k->rstd) k->rstd[i] = (ST)r;
    return taken;
}

static void LOCAL(forward_rows)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(forward_ctx) *k = (const LOCAL(forward_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t n = k->n;
    /* 16-bit rows of up to FN_STAT_ROWS_ANY_N elements, and longer bfloat16
     * RMSNorm rows whose y is not streamed (`widen`, below): each row is
     * widened once into this thread's copy, which the later passes read
     * instead of converting the row again (same results).
     * Rows then go several at a time through their statistics: stat_rows of
     * them (4 with AVX-512 pairs, 2 otherwise), then 2, then one. Those passes
     * are chains of dependent additions, and the rows' chains interleave.
     * That is faster on short rows and on data that stays in the cache, and
     * slower on long rows over more data, hence the limits (bench/choices.md,
     * "Several rows' statistics at once"). (Not where the rows of s overlap
     * each other either: a row's sums must be read before the next row's
     * residual add writes s.) Every other LayerNorm row is read as T, its
     * statistics in one pass (row_stats_one_pass), which measured faster for
     * longer 16-bit rows than their widened copies' two passes, at every size
     * (bench/choices.md, "One pass for the LayerNorm statistics"). Which way a
     * LayerNorm row goes depends on its length alone, so a row has the same
     * bits in any call. Longer 16-bit RMSNorm rows are read as stored in both
     * passes (the same bits as from the copy), except bfloat16 rows whose y
     * is not streamed (FN_WIDE_RMS): in the cache the copy measured faster,
     * beyond it slower, and the streaming threshold stands for that line
     * (bench/choices.md, "RMSNorm rows of 16 bits as stored"). */
    /* Short rows read as stored, with ordinary stores, without a residual and
     * with one weight and bias: FN_SHORT_BATCH rows at a time through one call
     * of their statistics and one of their normalize, whose per-row calls and
     * setup are most of a short row's time. Each row's statistics finish here
     * as below (16-bit LayerNorm rows in two passes, as from their copies); a
     * row on the exact path goes alone through row_apply. The same
     * primitives' arithmetic, so the same bits. */
    const int short_rows = !k->res && !k->stream && !k->rows_per_param && P->stats_rows &&
                           LOCAL(short_rows)(n);
    const int widen = !short_rows && FN_WIDE &&
                      (n <= FN_STAT_ROWS_ANY_N || (!k->centered && FN_WIDE_RMS && !k->stream));
    const int group = widen && end - begin > 1 &&
                      FN_STAT_ROWS_PAY(n, k->rows * n * (int64_t)sizeof(T)) &&
                      (!k->res || k->lds >= n);
    FN_ALIGNED_SCRATCH(A, stack_xa,
                       FN_WIDE ? FN_WIDE_STACK + (FN_MAX_ROWS - 1) * FN_STAT_ROWS_MAX_N : 1);
    A *xa = NULL, *heap_xa = NULL;
    if (widen && n <= FN_WIDE_STACK) {
        xa = stack_xa;
    } else if (widen && n <= FN_WIDE_MAX) {
        xa = heap_xa = (A *)fn_scratch_alloc((size_t)n * sizeof(A));
    }
    /* the rows' copies: xa, then FN_STAT_ROWS_MAX_N apart past the first */
    A *xas[FN_MAX_ROWS] = {xa};
    for (int q = 1; q < FN_MAX_ROWS; q++)
        xas[q] = group ? stack_xa + FN_WIDE_STACK + (q - 1) * FN_STAT_ROWS_MAX_N : NULL;
    LOCAL(row_stats) st[FN_MAX_ROWS];
    FN_ALIGNED_SCRATCH(char, stream_buf, FN_STREAM_BUF_BYTES);
    fn_stream_writer out = {k->stream, stream_buf, NULL, 0};
    int64_t i = begin;
    while (group && end - i >= 2) {
        const int g = end - i >= P->stat_rows ? P->stat_rows : 2;
        const T *srcs[FN_MAX_ROWS];
        for (int q = 0; q < g; q++) srcs[q] = st[q].src = LOCAL(row_source)(k, i + q, end);
        A sums[FN_MAX_ROWS];
        P->widen_sums_rows(srcs, xas, g, n, !k->centered, sums);
        if (k->centered && P->centered_sums_wide_rows) {
            A mu[FN_MAX_ROWS], sd[FN_MAX_ROWS], sq[FN_MAX_ROWS];
            for (int q = 0; q < g; q++) mu[q] = sums[q] / (A)n;
            P->centered_sums_wide_rows((const A *const *)xas, g, n, mu, sd, sq);
            for (int q = 0; q < g; q++) {
                const A sd_sq[2] = {sd[q], sq[q]};
                LOCAL(row_finish)(k, xas[q], sums[q], sd_sq, &st[q]);
            }
        } else {
            for (int q = 0; q < g; q++) LOCAL(row_finish)(k, xas[q], sums[q], NULL, &st[q]);
        }
        const int64_t ahead = k->ahead > g ? k->ahead : g; /* not a row of this group */
        for (int q = 0; q < g; q++)
            LOCAL(row_apply)(k, i + q, i + q + ahead, end, xas[q], &st[q], &out, NULL);
        i += g;
    }
    /* short rows (above) */
    const int two_pass = k->centered && FN_WIDE;
    int64_t short_taken = 0;
    while (short_rows && i < end) {
        const int64_t g = end - i < FN_SHORT_BATCH ? end - i : FN_SHORT_BATCH;
        const int64_t m = n < FN_SHIFT_SAMPLE ? n : FN_SHIFT_SAMPLE;
        const T *x0 = k->x + i * k->ldx;
        T *y0 = k->y + i * k->ldy;
        A first[FN_SHORT_BATCH], sums[FN_SHORT_BATCH][2];
        A mu[FN_SHORT_BATCH], c[FN_SHORT_BATCH], r[FN_SHORT_BATCH];
        P->stats_rows(x0, k->ldx, g, n, m, two_pass ? 2 : k->centered, first, sums, k->ahead,
                      end - i);
        int64_t done = 0; /* rows normalized */
        for (int64_t q = 0; q < g; q++) {
            st[0].src = x0 + q * k->ldx;
            if (two_pass) LOCAL(row_finish)(k, NULL, first[q], sums[q], &st[0]);
            else if (k->centered) LOCAL(row_stats_shifted)(k, &st[0], first[q], sums[q]);
            else LOCAL(row_finish)(k, NULL, sums[q][0], NULL, &st[0]);
            if (st[0].exact_path) {
                if (q > done)
                    P->normalize_rows(x0 + done * k->ldx, k->ldx, y0 + done * k->ldy, k->ldy,
                                      q - done, n, mu + done, c + done, r + done, k->weight,
                                      k->bias, k->ahead, end - i - done);
                short_taken += q - done;
                LOCAL(row_apply)(k, i + q, end, end, NULL, &st[0], &out, NULL);
                done = q + 1;
                continue;
            }
            mu[q] = st[0].mu;
            c[q] = st[0].c;
            r[q] = st[0].r;
            if (k->mean) k->mean[i + q] = (ST)(mu[q] + c[q]);
            if (k->rstd) k->rstd[i + q] = (ST)r[q];
        }
        if (g > done)
            P->normalize_rows(x0 + done * k->ldx, k->ldx, y0 + done * k->ldy, k->ldy, g - done, n,
                              mu + done, c + done, r + done, k->weight, k->bias, k->ahead,
                              end - i - done);
        short_taken += g - done;
        i += g;
    }
    if (short_taken) fn_count_short_rows(short_taken);
    /* Streamed rows read as stored, without a residual (whose next row of s
     * is not written yet): each row's statistics pass in the loops of the row
     * before where that row's lines stream from the registers. The loads of
     * the next row, which come from memory, then spread over the whole time
     * of a row (bench/choices.md, "The next row's statistics in the loops of
     * a row"). The same sums, so the same bits. */
    const int fused = k->stream && !xa && !k->res && P->normalize_stream &&
                      fn_next_row_sums_mode() != 0;
    int have_next = 0; /* st[0] holds row i's statistics already */
    int64_t fused_rows = 0;
    for (; i < end; i++) {
        if (!have_next) {
            st[0].src = LOCAL(row_source)(k, i, end);
            const T *src = st[0].src;
            if (!xa && k->centered) {
                LOCAL(row_stats_one_pass)(k, &st[0]);
            } else {
                A sum;
                if (xa) sum = k->centered ? P->widen_sum(src, xa, n) : P->widen_sum_sq(src, xa, n);
                else sum = P->sum_sq(src, n);
                LOCAL(row_finish)(k, xa, sum, NULL, &st[0]);
            }
        }
        const int with_next = fused && i + 1 < end;
        LOCAL(stats_job) sj = {NULL, 0, {0, 0}};
        if (with_next) {
            sj.src = k->x + (i + 1) * k->ldx;
            sj.shift = k->centered ? LOCAL(row_shift)(k, sj.src) : 0;
        }
        /* with the next row's statistics, the rows fetched are one further on */
        have_next = LOCAL(row_apply)(k, i, i + k->ahead + with_next, end, xa, &st[0], &out,
                                     with_next ? &sj : NULL);
        if (have_next) {
            fused_rows++;
            st[0].src = sj.src;
            if (k->centered) LOCAL(row_stats_shifted)(k, &st[0], sj.shift, sj.sums);
            else LOCAL(row_finish)(k, NULL, sj.sums[0], NULL, &st[0]);
        }
    }
    if (fused_rows) fn_count_next_row_sums(fused_rows);
    if (k->stream) {
        fn_stream_flush(&out);
        k->fence();
    }
    fn_scratch_free(heap_xa);
}

static int LOCAL(forward)(LOCAL(forward_ctx) *k, int num_threads) {
    if (k->rows <= 0) return FASTNORM_OK;
    if (k->n <= 0) { /* statistics of empty rows */
        for (int64_t i = 0; i < k->rows; i++) {
            if (k->mean) k->mean[i] = (ST)NAN;
            if (k->rstd) k->rstd[i] = (ST)NAN;
        }
        return FASTNORM_OK;
    }
    k->P = FN_ROW_TABLE(k->n, FN_FORWARD);
    k->ahead = fn_fetch_rows(k->n * (int64_t)sizeof(T));
    k->stream = fn_stream_for(k->rows * k->n * (int64_t)sizeof(T), k->n * (int64_t)sizeof(T),
                              &k->fence);
    k->params_finite = 0;
    if (FN_WIDE) {
        const int64_t prows = k->rows_per_param ? (k->rows - 1) / k->rows_per_param + 1 : 1;
        int ok = 1;
        for (int64_t q = 0; q < prows && ok; q++) {
            const int64_t p = k->rows_per_param ? q * k->ldp : 0;
            ok = LOCAL(all_finite)(k->weight ? k->weight + p : NULL, k->n) &&
                 LOCAL(all_finite)(k->bias ? k->bias + p : NULL, k->n);
        }
        k->params_finite = ok;
    }
    const int nt = fn_threads_for(num_threads, k->rows, k->rows * k->n * (int64_t)sizeof(T));
    fn_parallel_ranges(nt, k->rows, LOCAL(forward_rows), k);
    return FASTNORM_OK;
}

int NAME(layer_norm)(int64_t rows, int64_t n, const T *x, int64_t ldx, T *y, int64_t ldy,
                     const W *weight, const W *bias, double eps, ST *mean, ST *rstd,
                     int num_threads) {
    LOCAL(forward_ctx) k = {NULL, rows, n, ldx, ldy, x, weight, bias, y, mean, rstd, eps, 1,
                            NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL, NULL};
    return LOCAL(forward)(&k, num_threads);
}

int NAME(rms_norm)(int64_t rows, int64_t n, const T *x, int64_t ldx, T *y, int64_t ldy,
                   const W *weight, double eps, ST *rstd, int num_threads) {
    LOCAL(forward_ctx) k = {NULL, rows, n, ldx, ldy, x, weight, NULL, y, NULL, rstd, eps, 0,
                            NULL, NULL, NULL, 0, 0, 0, 0, 0, 0, NULL, NULL};
    return LOCAL(forward)(&k, num_threads);
}

int NAME(add_layer_norm)(int64_t rows, int64_t n, const T *x, int64_t ldx, const T *residual,
                         int64_t ldr, const W *residual_bias, T *sum_out, int64_t lds, T *y,
                         int64_t ldy, const W *weight, const W *bias, double eps, ST *mean,
                         ST *rstd, int num_threads) {
    LOCAL(forward_ctx) k = {NULL, rows, n, ldx, ldy, x, weight, bias, y, mean, rstd, eps, 1,
                            residual, residual_bias, sum_out, ldr, lds, 0, 0, 0, 0, NULL, NULL};
    return LOCAL(forward)(&k, num_threads);
}

int NAME(add_rms_norm)(int64_t rows, int64_t n, const T *x, int64_t ldx, const T *residual,
                       int64_t ldr, const W *residual_bias, T *sum_out, int64_t lds, T *y,
                       int64_t ldy, const W *weight, double eps, ST *rstd, int num_threads) {
    LOCAL(forward_ctx) k = {NULL, rows, n, ldx, ldy, x, weight, NULL, y, NULL, rstd, eps, 0,
                            residual, residual_bias, sum_out, ldr, lds, 0, 0, 0, 0, NULL, NULL};
    return LOCAL(forward)(&k, num_threads);
}

/* ---- backward ---------------------------------------------------------- */

typedef struct {
    const PRIMS_TYPE *P;
    int64_t rows, n, lddy, ldx, lddx, block_rows;
    const T *dy, *x;
    const ST *mean, *rstd;
    const W *weight;
    T *dx;
    A *part_w, *part_b; /* nblocks rows of n partial sums, ldpart apart, or NULL */
    int centered;       /* 1: LayerNorm; 0: RMSNorm (no mean, no mean(g)) */
    const T *ds;        /* added to dx before its rounding (fused residual add), or NULL */
    int64_t ldds;
    int64_t ahead; /* rows between a row and the row prefetched meanwhile */
    /* dx written with streaming stores through this copy and fence, or NULL
     * (as the forward's y, FN_STREAM_CHUNK elements at a time) */
    void (*stream)(void *dst, const void *src, size_t n);
    void (*fence)(void);
    int64_t ldpart; /* elements between two rows of partials */
    int64_t head;   /* every dx row's head (fn_line_head), or 0: one call per row */
    int64_t widen_max; /* bfloat16 rows up to this length widened (fn_backward_widen_max) */
    /* streamed rows read as stored whose whole lines go straight from the
     * registers (backward_row_apply) */
    int direct;
} LOCAL(backward_ctx);

/* One row of the backward as backward_row_apply hands it on: its dy and x
 * rows (or their copies dya, xa where not NULL), its ds row or NULL, the
 * row's constants and the partials its terms are added to. */
typedef struct {
    const T *dy, *x;
    const A *dya, *xa;
    const T *ds;
    A mu, c, r, mg, mgx;
    A *acc_w, *acc_b;
} LOCAL(backward_row);

/* The next row's sums (backward_sums), taken in the loops of a row's dx
 * where that row is streamed (backward_apply_stream): its dy and x rows, its
 * mean and rstd, and the sums. */
typedef struct {
    const T *dy, *x;
    A mu, r;
    A sums[3];
} LOCAL(sums_job);

/* Elements [o, o + len) of a row's dx into dst, their parameter terms added
 * to the partials from element o; ndy, nx and ndx (all or none NULL) the same
 * elements of the rows fetched meanwhile. */
static FN_DRIVER_INLINE void LOCAL(backward_span)(const LOCAL(backward_ctx) *k,
                                                  const LOCAL(backward_row) *rw, int64_t o,
                                                  int64_t len, T *dst, const T *ndy,
                                                  const T *nx, T *ndx) {
    const W *w = k->weight ? k->weight + o : NULL;
    A *aw = rw->acc_w ? rw->acc_w + o : NULL, *ab = rw->acc_b ? rw->acc_b + o : NULL;
    const T *ds = rw->ds ? rw->ds + o : NULL;
    if (rw->xa)
        k->P->backward_apply_wide(rw->dya + o, rw->xa + o, dst, len, rw->mu, rw->c, rw->r, w,
                                  rw->mg, rw->mgx, aw, ab, ds, ndy, nx, ndx);
    else
        k->P->backward_apply(rw->dy + o, rw->x + o, dst, len, rw->mu, rw->c, rw->r, w, rw->mg,
                             rw->mgx, aw, ab, ds, ndy, nx, ndx);
}

/* Row i as its dx is computed from its sums s (backward_sums): dy and x read
 * from the copies dya and xa where not NULL, its parameter terms added to
 * acc_w / acc_b. */
static FN_DRIVER_INLINE LOCAL(backward_row) LOCAL(backward_row_at)(const LOCAL(backward_ctx) *k,
                                                                 int64_t i, const A s[3],
                                                                 const A *dya, const A *xa,
                                                                 A *acc_w, A *acc_b) {
    const int64_t n = k->n;
    LOCAL(backward_row) rw;
    rw.dy = k->dy + i * k->lddy;
    rw.x = k->x + i * k->ldx;
    rw.dya = dya;
    rw.xa = xa;
    rw.ds = k->ds ? k->ds + i * k->ldds : NULL;
    rw.mu = k->centered ? (A)k->mean[i] : 0;
    rw.r = (A)k->rstd[i];
    /* c = mean(xh') undoes the rounding of the stored mean (docs/numerics.md §0) */
    rw.c = k->centered ? s[2] / (A)n : 0;
    rw.mg = k->centered ? s[0] / (A)n : 0;
    rw.mgx = s[1] / (A)n - rw.c * rw.mg;
    rw.acc_w = acc_w;
    rw.acc_b = acc_b;
    return rw;
}

/* Whether row rw's constants are all finite. Any NaN or infinity in the
 * row's x, dy, weight, mean or rstd makes one of them non-finite (and so
 * does an overflow of its terms); where they are all finite, no operation of
 * the row meets a NaN operand. */
static FN_DRIVER_INLINE int LOCAL(row_finite)(const LOCAL(backward_row) *rw) {
    return isfinite(rw->mu) && isfinite(rw->c) && isfinite(rw->r) && isfinite(rw->mg) &&
           isfinite(rw->mgx);
}

/* Every NaN of the n elements at p replaced by the one quiet NaN FN_FROM_D
 * gives. In a row whose constants are not all finite, an operation may meet
 * two NaN operands, and which of the two the processor returns (its sign)
 * depends on the order the compiler gave them, which differs between the
 * loops a row may go through (the vector pairs, single vectors, one element
 * at a time, streamed or not, with or without the next row's sums): the one
 * NaN keeps the bits the same whichever way an element went. */
static void LOCAL(canonical_nans)(T *p, int64_t n) {
    for (int64_t j = 0; j < n; j++)
        if (isnan(FN_TO_D(p[j]))) p[j] = FN_FROM_D(NAN);
}

/* Row rw's dx elements [h, h + body), whole lines from a line boundary of
 * dxr, straight from the registers with streaming stores
 * (backward_apply_stream); with sj, the next row's sums in the same loops. A
 * call takes up to FN_CHUNK elements of the sums (as backward_sums's chunks,
 * from element 0) and the dx elements FN_CHUNK at a time from h; the sums of
 * the chunks are added in double as backward_sums adds them. */
static FN_DRIVER_INLINE void LOCAL(backward_body_stream)(const LOCAL(backward_ctx) *k,
                                                         const LOCAL(backward_row) *rw, T *dxr,
                                                         int64_t h, int64_t body,
                                                         const T *ndy, const T *nx,
                                                         LOCAL(sums_job) *sj) {
    const int64_t n = k->n;
    const W *w = k->weight;
    double total[3] = {0, 0, 0};
    const int64_t end = sj ? n : body;
    for (int64_t o = 0; o < end; o += FN_CHUNK) {
        /* the sums' last chunks may come after dx's last element */
        const int64_t at = h + (o < body ? o : body);
        const int64_t len = o < body ? (body - o < FN_CHUNK ? body - o : FN_CHUNK) : 0;
        const int64_t slen = !sj ? 0 : (n - o < FN_CHUNK ? n - o : FN_CHUNK);
        A part[3] = {0, 0, 0};
        k->P->backward_apply_stream(
            rw->dy + at, rw->x + at, dxr + at, len, rw->mu, rw->c, rw->r, w ? w + at : NULL,
            rw->mg, rw->mgx, rw->acc_w ? rw->acc_w + at : NULL, rw->acc_b ? rw->acc_b + at : NULL,
            rw->ds ? rw->ds + at : NULL, ndy ? ndy + at : NULL, ndy ? nx + at : NULL,
            sj ? sj->dy + o : NULL, sj ? sj->x + o : NULL, slen, w && sj ? w + o : NULL,
            sj ? sj->mu : 0, sj ? sj->r : 0, part);
        for (int j = 0; j < 3; j++) total[j] += (double)part[j];
        if (sj && n <= FN_CHUNK)
            for (int j = 0; j < 3; j++) sj->sums[j] = part[j];
    }
    if (sj && n > FN_CHUNK)
        for (int j = 0; j < 3; j++) sj->sums[j] = (A)total[j];
}

/* dx of row i from its sums s (backward_sums), with its parameter partials
 * added to acc_w / acc_b; dy and x read from the copies dya and xa where not
 * NULL. The rows `fetch` (none at or beyond `stop`) are prefetched meanwhile.
 * sj (or NULL): the next row, whose sums are taken in the loops of this row's
 * dx where it is streamed from the registers; returns whether they were. */
static FN_DRIVER_INLINE int LOCAL(backward_row_apply)(const LOCAL(backward_ctx) *k, int64_t i,
                                                      int64_t fetch, int64_t stop,
                                                      const A s[3], const A *dya,
                                                      const A *xa, A *acc_w, A *acc_b,
                                                      fn_stream_writer *out,
                                                      LOCAL(sums_job) *sj) {
    const int64_t n = k->n;
    const LOCAL(backward_row) rw = LOCAL(backward_row_at)(k, i, s, dya, xa, acc_w, acc_b);
    const int more = fetch < stop;
    T *dxr = k->dx + i * k->lddx;
    const T *ndy = more ? k->dy + fetch * k->lddy : NULL, *nx = more ? k->x + fetch * k->ldx : NULL;
    T *ndx = more ? k->dx + fetch * k->lddx : NULL;
    if (!LOCAL(row_finite)(&rw)) {
        /* with ordinary stores in one call, the waiting bytes of the row
         * before written first, then its NaNs made one (canonical_nans) */
        if (k->stream) fn_stream_flush(out);
        LOCAL(backward_span)(k, &rw, 0, n, dxr, NULL, NULL, NULL);
        LOCAL(canonical_nans)(dxr, n);
        return 0;
    }
    const int64_t to_line = k->direct && !xa ? fn_to_line(dxr, sizeof(T)) : -1;
    if (to_line >= 0) {
        /* the row's whole lines straight from the registers (streaming
         * stores), its partial first and last lines through the writer, as
         * the forward's rows (LOCAL(row_apply)); the next dy and x rows
         * fetched meanwhile, not the next dx row */
        const int64_t line = FN_STREAM_LINE / (int64_t)sizeof(T);
        const int64_t h = to_line < n ? to_line : n;
        const int64_t body = (n - h) / line * line, t = h + body;
        if (h) {
            T *to = (T *)fn_stream_at(out, dxr);
            LOCAL(backward_span)(k, &rw, 0, h, to, NULL, NULL, NULL);
            fn_stream_put(out, (size_t)h * sizeof(T));
        }
        LOCAL(backward_body_stream)(k, &rw, dxr, h, body, ndy, nx, sj);
        if (t < n) {
            T *to = (T *)fn_stream_at(out, dxr + t);
            LOCAL(backward_span)(k, &rw, t, n - t, to, NULL, NULL, NULL);
            fn_stream_put(out, (size_t)(n - t) * sizeof(T));
        }
        return sj != NULL;
    }
    if (k->stream) {
        /* chunks through the writer; the next dy and x rows fetched
         * meanwhile, not the next dx row */
        for (int64_t o = 0; o < n; o += FN_STREAM_CHUNK) {
            const int64_t len = n - o < FN_STREAM_CHUNK ? n - o : FN_STREAM_CHUNK;
            T *to = (T *)fn_stream_at(out, dxr + o);
            LOCAL(backward_span)(k, &rw, o, len, to, ndy ? ndy + o : NULL, ndy ? nx + o : NULL,
                                 ndy ? to : NULL);
            fn_stream_put(out, (size_t)len * sizeof(T));
        }
        return 0;
    }
    /* the head, then the rest (fn_line_head; the partials start a line at
     * the same element, see LOCAL(backward)) */
    const int64_t h = k->head;
    if (h) LOCAL(backward_span)(k, &rw, 0, h, dxr, NULL, NULL, NULL);
    LOCAL(backward_span)(k, &rw, h, n - h, dxr + h, more ? ndy + h : NULL, more ? nx + h : NULL,
                         more ? ndx + h : NULL);
    return 0;
}

/* dx of the FN_MAX_ROWS rows from row i on (backward_apply_rows) from their
 * sums s, with their parameter partials added to acc_w / acc_b; ordinary
 * stores (the head, fn_line_head, in a call of its own). */
static FN_DRIVER_INLINE void LOCAL(backward_rows_apply)(const LOCAL(backward_ctx) *k, int64_t i,
                                                        A s[FN_MAX_ROWS][3], A *acc_w,
                                                        A *acc_b) {
    enum { R = FN_MAX_ROWS };
    const int64_t n = k->n;
    A mu[R], c[R], r[R], mg[R], mgx[R];
    LOCAL(backward_row) rw[R];
    for (int j = 0; j < R; j++) {
        rw[j] = LOCAL(backward_row_at)(k, i + j, s[j], NULL, NULL, acc_w, acc_b);
        mu[j] = rw[j].mu, c[j] = rw[j].c, r[j] = rw[j].r, mg[j] = rw[j].mg, mgx[j] = rw[j].mgx;
    }
    /* the head's elements [0, h), then the rest [h, n) */
    const int64_t h = k->head;
    for (int part = h ? 0 : 1; part < 2; part++) {
        const int64_t o = part ? h : 0, len = part ? n - h : h;
        const T *dyo[R], *xo[R], *dso[R];
        T *dxo[R];
        for (int j = 0; j < R; j++) {
            dyo[j] = rw[j].dy + o;
            xo[j] = rw[j].x + o;
            dso[j] = k->ds ? rw[j].ds + o : NULL;
            dxo[j] = k->dx + (i + j) * k->lddx + o;
        }
        k->P->backward_apply_rows(dyo, xo, dxo, len, mu, c, r, k->weight ? k->weight + o : NULL,
                                  mg, mgx, acc_w ? acc_w + o : NULL, acc_b ? acc_b + o : NULL,
                                  k->ds ? dso : NULL);
    }
    for (int j = 0; j < R; j++)
        if (!LOCAL(row_finite)(&rw[j])) LOCAL(canonical_nans)(k->dx + (i + j) * k->lddx, n);
}

/* dx of rows i + from to i + to (short rows, backward_apply_block) with their
 * constants at [from, to) of mu ... mgx, their parameter terms added to acc_w
 * and acc_b; the rows fetched meanwhile no further than row `stop`. Returns
 * the rows. */
static FN_DRIVER_INLINE int64_t LOCAL(backward_short_apply)(const LOCAL(backward_ctx) *k,
                                                            int64_t i, int64_t from, int64_t to,
                                                            const A *mu, const A *c, const A *r,
                                                            const A *mg, const A *mgx, A *acc_w,
                                                            A *acc_b, int64_t stop) {
    if (to <= from) return 0;
    const int64_t at = i + from;
    k->P->backward_apply_block(k->dy + at * k->lddy, k->lddy, k->x + at * k->ldx, k->ldx,
                               k->dx + at * k->lddx, k->lddx, k->ds ? k->ds + at * k->ldds : NULL,
                               k->ldds, to - from, k->n, mu + from, c + from, r + from,
                               k->weight, mg + from, mgx + from, acc_w, acc_b, k->ahead,
                               stop - at);
    return to - from;
}

/* Whether rows go FN_MAX_ROWS at a time through their dx (backward_apply_rows):
 * float32 and bfloat16 rows (FN_BWD_TOGETHER) read as stored, of
 * FN_BWD_ROWS_MIN_N elements or more, whose dx is written with ordinary
 * stores and whose data (dy, x and dx) stays in the last-level cache
 * (fn_cache_bytes). For streamed dx, data beyond the cache, shorter rows,
 * and float64 and float16 rows the rows one at a time measured faster
 * (bench/choices.md, "Rows of the backward together"). fn_set_backward_rows
 * overrides the rule (not the stores or the copies) for tests. */
static FN_DRIVER_INLINE int LOCAL(backward_rows_together)(const LOCAL(backward_ctx) *k,
                                                          int wide) {
    const int mode = fn_backward_rows_mode();
    if (wide || k->stream || mode == 0) return 0;
    if (mode == 1) return 1;
    return FN_BWD_TOGETHER && k->n >= FN_BWD_ROWS_MIN_N &&
           3 * k->rows * k->n * (int64_t)sizeof(T) < fn_cache_bytes();
}

/* Whether each row's dx takes the next row's sums in the same loops
 * (backward_apply_stream): the rows whose lines go straight from the
 * registers (k->direct: streamed, read as stored). Their loads of the next
 * row, which come from memory, then spread over the whole time of the row
 * instead of its sums pass alone (bench/choices.md, "The backward of long
 * rows"). The same sums, so the same bits. fn_set_next_row_sums turns it
 * off for tests. */
static FN_DRIVER_INLINE int LOCAL(backward_rows_fused)(const LOCAL(backward_ctx) *k) {
    return k->direct && fn_next_row_sums_mode() != 0;
}

/* Whether the bfloat16 rows' dy and x are widened into copies (FN_WIDE_BACKWARD,
 * up to k->widen_max elements, and no more than FN_WIDE_MAX: the copies'
 * space) */
static FN_DRIVER_INLINE int LOCAL(backward_widens)(const LOCAL(backward_ctx) *k) {
    return FN_WIDE_BACKWARD && k->n <= k->widen_max && k->n <= FN_WIDE_MAX;
}

/* The backward of one normalized group (docs/numerics.md §0, NB) for every row of the
 * blocks [begin, end), each block's parameter partials in its own row of
 * part_w / part_b. */
static void LOCAL(backward_blocks)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(backward_ctx) *k = (const LOCAL(backward_ctx) *)vctx;
    const PRIMS_TYPE *P = k->P;
    const int64_t n = k->n;
    /* Short rows (LOCAL(short_rows)) read as stored, with ordinary stores, go
     * FN_SHORT_BATCH at a time, instead of through the copies or two at a
     * time (below): the same sums either way. */
    const int brief = !k->stream && P->backward_sums_block && LOCAL(short_rows)(n);
    /* Where the table has backward_sums2, rows go two at a time through their
     * sums (as the forward's statistics, and within the same limits); each
     * row's dx and partials are then added in row order, as one at a time. */
    const int two = !brief && P->backward_sums2 != NULL &&
                    FN_STAT_ROWS_PAY(n, k->rows * n * (int64_t)sizeof(T));
    /* bfloat16 rows up to k->widen_max elements (FN_WIDE_BACKWARD):
     * the sums widen dy and x once into this thread's copies (dya, then xa; a
     * second pair for two rows), which the second pass reads instead of
     * converting again */
    FN_ALIGNED_SCRATCH(A, stack_wide,
                       FN_WIDE_BACKWARD ? 2 * FN_WIDE_STACK + 2 * FN_STAT_ROWS_MAX_N : 1);
    const int widen = !brief && LOCAL(backward_widens)(k);
    A *dya = NULL, *heap_wide = NULL;
    if (widen && n <= FN_WIDE_STACK) {
        dya = stack_wide;
    } else if (widen) {
        dya = heap_wide = (A *)fn_scratch_alloc((size_t)(2 * n) * sizeof(A));
    }
    A *const xa = dya ? dya + n : NULL;
    /* two implies n <= FN_STAT_ROWS_MAX_N: the stack copies */
    A *const dya1 = dya && two ? stack_wide + 2 * FN_WIDE_STACK : NULL;
    A *const xa1 = dya1 ? dya1 + FN_STAT_ROWS_MAX_N : NULL;
    /* long rows read as stored: FN_MAX_ROWS rows' sums, then their dx together */
    const int together = LOCAL(backward_rows_together)(k, xa != NULL);
    /* streamed rows read as stored: the next row's sums in the loops of this
     * row's dx (LOCAL(backward_rows_fused)) */
    const int fused = LOCAL(backward_rows_fused)(k);
    FN_ALIGNED_SCRATCH(char, stream_buf, FN_STREAM_BUF_BYTES);
    fn_stream_writer out = {k->stream, stream_buf, NULL, 0};
    /* the prefetches run on into the next block, up to this thread's last row */
    const int64_t stop = end * k->block_rows < k->rows ? end * k->block_rows : k->rows;
    /* with `fused`, a row's sums taken in the loops of the row before (next,
     * where have_next); from one block into the next (whose partials they do
     * not touch) where the rows go one at a time (`carry`) */
    const int carry = fused && !two && !together;
    int64_t short_taken = 0;
    A next[3] = {0, 0, 0};
    int have_next = 0;
    int64_t fused_rows = 0;
    for (int64_t blk = begin; blk < end; blk++) {
        A *acc_w = k->part_w ? k->part_w + blk * k->ldpart : NULL;
        A *acc_b = k->part_b ? k->part_b + blk * k->ldpart : NULL;
        if (acc_w) memset(acc_w, 0, (size_t)n * sizeof(A));
        if (acc_b) memset(acc_b, 0, (size_t)n * sizeof(A));
        const int64_t first = blk * k->block_rows;
        const int64_t last = first + k->block_rows < k->rows ? first + k->block_rows : k->rows;
        int64_t i = first;
        /* short rows, FN_SHORT_BATCH at a time: their sums in one call, then
         * their dx in one; a row whose constants are not all finite goes alone
         * through backward_row_apply, in its turn (the same bits: see
         * LOCAL(forward_rows)) */
        while (brief && i < last) {
            const int64_t g = last - i < FN_SHORT_BATCH ? last - i : FN_SHORT_BATCH;
            A mu[FN_SHORT_BATCH], c[FN_SHORT_BATCH], r[FN_SHORT_BATCH], mg[FN_SHORT_BATCH],
                mgx[FN_SHORT_BATCH], s[FN_SHORT_BATCH][3];
            for (int64_t q = 0; q < g; q++) {
                mu[q] = k->centered ? (A)k->mean[i + q] : 0;
                r[q] = (A)k->rstd[i + q];
            }
            P->backward_sums_block(k->dy + i * k->lddy, k->lddy, k->x + i * k->ldx, k->ldx, g, n,
                                   mu, r, k->weight, s, k->ahead, stop - i);
            int64_t done = 0;
            for (int64_t q = 0; q < g; q++) {
                const LOCAL(backward_row) rw =
                    LOCAL(backward_row_at)(k, i + q, s[q], NULL, NULL, acc_w, acc_b);
                if (!LOCAL(row_finite)(&rw)) {
                    short_taken += LOCAL(backward_short_apply)(k, i, done, q, mu, c, r, mg,
                                                               mgx, acc_w, acc_b, stop);
                    LOCAL(backward_row_apply)(k, i + q, stop, stop, s[q], NULL, NULL, acc_w,
                                              acc_b, &out, NULL);
                    done = q + 1;
                    continue;
                }
                c[q] = rw.c;
                mg[q] = rw.mg;
                mgx[q] = rw.mgx;
            }
            short_taken += LOCAL(backward_short_apply)(k, i, done, g, mu, c, r, mg, mgx, acc_w,
                                                       acc_b, stop);
            i += g;
        }
        for (; together && i + FN_MAX_ROWS <= last; i += FN_MAX_ROWS) {
            A s[FN_MAX_ROWS][3];
            for (int j = 0; j < FN_MAX_ROWS; j++) {
                const int64_t row = i + j;
                P->backward_sums(k->dy + row * k->lddy, k->x + row * k->ldx, n,
                                 k->centered ? (A)k->mean[row] : 0, (A)k->rstd[row], k->weight,
                                 s[j]);
            }
            LOCAL(backward_rows_apply)(k, i, s, acc_w, acc_b);
        }
        if (two) {
            for (; i + 1 < last; i += 2) {
                const A mu[2] = {k->centered ? (A)k->mean[i] : 0,
                                 k->centered ? (A)k->mean[i + 1] : 0};
                const A r[2] = {(A)k->rstd[i], (A)k->rstd[i + 1]};
                A s[2][3];
                P->backward_sums2(k->dy + i * k->lddy, k->x + i * k->ldx,
                                  k->dy + (i + 1) * k->lddy, k->x + (i + 1) * k->ldx, dya, xa,
                                  dya1, xa1, n, mu, r, k->weight, s);
                const int64_t ahead = k->ahead > 2 ? k->ahead : 2;
                LOCAL(backward_row_apply)(k, i, i + ahead, stop, s[0], dya, xa, acc_w, acc_b,
                                          &out, NULL);
                LOCAL(backward_row_apply)(k, i + 1, i + 1 + ahead, stop, s[1], dya1, xa1, acc_w,
                                          acc_b, &out, NULL);
            }
        }
        for (; i < last; i++) {
            const T *xr = k->x + i * k->ldx, *dyr = k->dy + i * k->lddy;
            const A mu = k->centered ? (A)k->mean[i] : 0, r = (A)k->rstd[i];
            A s[3];
            if (have_next) memcpy(s, next, sizeof s);
            else if (xa) P->backward_sums_wide(dyr, xr, dya, xa, n, mu, r, k->weight, s);
            else P->backward_sums(dyr, xr, n, mu, r, k->weight, s);
            LOCAL(sums_job) sj = {NULL, NULL, 0, 0, {0, 0, 0}};
            const int with_next = fused && i + 1 < (carry ? stop : last);
            if (with_next) {
                sj.dy = dyr + k->lddy;
                sj.x = xr + k->ldx;
                sj.mu = k->centered ? (A)k->mean[i + 1] : 0;
                sj.r = (A)k->rstd[i + 1];
            }
            /* with the next row's sums, the rows fetched are one further on */
            have_next = LOCAL(backward_row_apply)(k, i, i + k->ahead + with_next, stop, s, dya,
                                                  xa, acc_w, acc_b, &out,
                                                  with_next ? &sj : NULL);
            memcpy(next, sj.sums, sizeof next);
            fused_rows += have_next;
        }
    }
    if (fused_rows) fn_count_next_row_sums(fused_rows);
    if (short_taken) fn_count_short_rows(short_taken);
    if (k->stream) {
        fn_stream_flush(&out);
        k->fence();
    }
    fn_scratch_free(heap_wide);
}

typedef struct {
    const PRIMS_TYPE *P;
    A *part;
    int64_t nblocks, n, ld;
} LOCAL(tree_ctx);

/* Adds the nblocks partial rows of `part` (ld elements apart) into its first
 * row by a fixed pairwise tree, for the column bands [begin, end). */
static void LOCAL(tree_bands)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(tree_ctx) *k = (const LOCAL(tree_ctx) *)vctx;
    for (int64_t band = begin; band < end; band++) {
        const int64_t c0 = band * FN_TREE_COLUMNS;
        const int64_t len = k->n - c0 < FN_TREE_COLUMNS ? k->n - c0 : FN_TREE_COLUMNS;
        for (int64_t step = 1; step < k->nblocks; step *= 2)
            for (int64_t b = 0; b + step < k->nblocks; b += 2 * step)
                k->P->add(k->part + b * k->ld + c0, k->part + (b + step) * k->ld + c0, len);
    }
}

static void LOCAL(reduce_partials)(const PRIMS_TYPE *P, A *part, int64_t nblocks, int64_t n,
                                   int64_t ld, int num_threads) {
    LOCAL(tree_ctx) k = {P, part, nblocks, n, ld};
    const int64_t bands = (n + FN_TREE_COLUMNS - 1) / FN_TREE_COLUMNS;
    const int nt = fn_threads_for(num_threads, bands, nblocks * n * (int64_t)sizeof(A));
    fn_parallel_ranges(nt, bands, LOCAL(tree_bands), &k);
}

static int LOCAL(backward)(LOCAL(backward_ctx) *k, W *dweight, W *dbias, int num_threads) {
    const int64_t rows = k->rows, n = k->n;
    if (rows <= 0 || n <= 0) {
        if (n > 0) {
            if (dweight) memset(dweight, 0, (size_t)n * sizeof(W));
            if (dbias) memset(dbias, 0, (size_t)n * sizeof(W));
        }
        return FASTNORM_OK;
    }
    k->P = FN_ROW_TABLE(n, FN_BACKWARD);
    k->widen_max = FN_WIDE_BACKWARD ? fn_backward_widen_max() : 0;
    k->block_rows = fn_grad_block_rows(rows);
    k->ahead = fn_fetch_rows(n * (int64_t)sizeof(T));
    k->stream = fn_stream_for(rows * n * (int64_t)sizeof(T), n * (int64_t)sizeof(T), &k->fence);
    /* Rows of FN_STREAM_DIRECT_MIN_BYTES or more, not widened: shorter rows
     * measured faster with every element through the writer (bench/choices.md,
     * "The backward of long rows") */
    k->direct = k->stream && k->P->backward_apply_stream &&
                n * (int64_t)sizeof(T) >= FN_STREAM_DIRECT_MIN_BYTES &&
                !LOCAL(backward_widens)(k);
    const int64_t nblocks = (rows + k->block_rows - 1) / k->block_rows;
    /* dx rows of FN_BWD_HEAD_MIN_N elements or more, written with ordinary
     * stores, that all start at one offset within a line go in two calls, the
     * head then the rest (fn_line_head). Streamed rows whose lines go
     * straight from the registers (k->direct, backward_row_apply) start their
     * lines at one element too where the rows are whole lines apart; other
     * streamed rows go through the writer's buffer in L1. The partials' rows
     * are whole lines apart and start `pad` elements into their first line,
     * so that the element where the dx rows' lines start (the head, or the
     * streamed rows' first line) starts a line of the partials as well: the
     * read-modify-writes of the partials beside those lines straddle no
     * line either. */
    const int lines_apart = k->lddx * (int64_t)sizeof(T) % FN_STREAM_LINE == 0;
    k->head = !k->stream && n >= FN_BWD_HEAD_MIN_N && lines_apart
                  ? fn_line_head(k->dx, n, sizeof(T))
                  : 0;
    const int64_t to_line = k->direct && lines_apart ? fn_to_line(k->dx, sizeof(T)) : -1;
    const int64_t pad_at = to_line > 0 && to_line < n ? to_line : k->head;
    const int64_t line = FN_STREAM_LINE / (int64_t)sizeof(A);
    const int64_t pad = (line - pad_at % line) % line;
    k->ldpart = (pad + n + line - 1) / line * line;
    A *part = NULL;
    if (dweight || dbias) {
        part = (A *)fn_scratch_alloc((size_t)(nblocks * k->ldpart * (k->centered ? 2 : 1)) *
                                     sizeof(A));
        if (!part) return FASTNORM_ENOMEM;
    }
    k->part_w = part ? part + pad : NULL;
    k->part_b = (part && k->centered) ? part + nblocks * k->ldpart + pad : NULL;
    const int nt = fn_threads_for(num_threads, nblocks, 2 * rows * n * (int64_t)sizeof(T));
    fn_parallel_ranges(nt, nblocks, LOCAL(backward_blocks), k);
    if (part) {
        LOCAL(reduce_partials)(k->P, k->part_w, nblocks, n, k->ldpart, num_threads);
        if (k->part_b)
            LOCAL(reduce_partials)(k->P, k->part_b, nblocks, n, k->ldpart, num_threads);
        /* NaNs made one, as in dx (LOCAL(canonical_nans)) */
        for (int64_t j = 0; j < n; j++) {
            if (dweight) dweight[j] = isnan(k->part_w[j]) ? (W)NAN : (W)k->part_w[j];
            if (dbias) dbias[j] = isnan(k->part_b[j]) ? (W)NAN : (W)k->part_b[j];
        }
        fn_scratch_free(part);
    }
    return FASTNORM_OK;
}

int NAME(layer_norm_backward)(int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *x,
                              int64_t ldx, const ST *mean, const ST *rstd, const W *weight, T *dx,
                              int64_t lddx, W *dweight, W *dbias, int num_threads) {
    LOCAL(backward_ctx) k = {NULL, rows, n, lddy, ldx, lddx, 0, dy, x, mean, rstd, weight,
                             dx, NULL, NULL, 1, NULL, 0, 0, NULL, NULL, 0, 0, 0};
    return LOCAL(backward)(&k, dweight, dbias, num_threads);
}

int NAME(rms_norm_backward)(int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *x,
                            int64_t ldx, const ST *rstd, const W *weight, T *dx, int64_t lddx,
                            W *dweight, int num_threads) {
    LOCAL(backward_ctx) k = {NULL, rows, n, lddy, ldx, lddx, 0, dy, x, NULL, rstd, weight,
                             dx, NULL, NULL, 0, NULL, 0, 0, NULL, NULL, 0, 0, 0};
    return LOCAL(backward)(&k, dweight, NULL, num_threads);
}

int NAME(add_layer_norm_backward)(int64_t rows, int64_t n, const T *dy, int64_t lddy,
                                  const T *s, int64_t lds, const T *ds, int64_t ldds,
                                  const ST *mean, const ST *rstd, const W *weight, T *dsum,
                                  int64_t lddsum, W *dweight, W *dbias, int num_threads) {
    LOCAL(backward_ctx) k = {NULL, rows, n, lddy, lds, lddsum, 0, dy, s, mean, rstd, weight,
                             dsum, NULL, NULL, 1, ds, ldds, 0, NULL, NULL, 0, 0, 0};
    return LOCAL(backward)(&k, dweight, dbias, num_threads);
}

int NAME(add_rms_norm_backward)(int64_t rows, int64_t n, const T *dy, int64_t lddy, const T *s,
                                int64_t lds, const T *ds, int64_t ldds, const ST *rstd,
                                const W *weight, T *dsum, int64_t lddsum, W *dweight,
                                int num_threads) {
    LOCAL(backward_ctx) k = {NULL, rows, n, lddy, lds, lddsum, 0, dy, s, NULL, rstd, weight,
                             dsum, NULL, NULL, 0, ds, ldds, 0, NULL, NULL, 0, 0, 0};
    return LOCAL(backward)(&k, dweight, NULL, num_threads);
}

/* ---- per-sample affine (AdaLN) ------------------------------------------ */

int NAME(layer_norm_per_sample)(int64_t samples, int64_t rows_per_sample, int64_t n,
                                const T *x, int64_t ldx, T *y, int64_t ldy, const W *weight,
                                const W *bias, int64_t ldp, double eps, ST *mean, ST *rstd,
                                int num_threads) {
    LOCAL(forward_ctx) k = {NULL, samples * rows_per_sample, n, ldx, ldy, x, weight, bias, y,
                            mean, rstd, eps, 1, NULL, NULL, NULL, 0, 0, rows_per_sample, ldp,
                            0, 0, NULL, NULL};
    if (rows_per_sample <= 0) return FASTNORM_OK;
    return LOCAL(forward)(&k, num_threads);
}

int NAME(layer_norm_per_sample_backward)(int64_t samples, int64_t rows_per_sample, int64_t n,
                                         const T *dy, int64_t lddy, const T *x, int64_t ldx,
                                         const ST *mean, const ST *rstd, const W *weight,
                                         int64_t ldp, T *dx, int64_t lddx, W *dweight,
                                         W *dbias, int num_threads) {
    /* each sample is a LayerNorm backward of its own rows with its own
     * parameters, whose gradients are that sample's rows of dweight, dbias */
    for (int64_t s = 0; s < samples; s++) {
        const int64_t r0 = s * rows_per_sample;
        const int rc = NAME(layer_norm_backward)(
            rows_per_sample, n, dy + r0 * lddy, lddy, x + r0 * ldx, ldx, mean + r0, rstd + r0,
            weight ? weight + s * ldp : NULL, dx + r0 * lddx, lddx,
            dweight ? dweight + s * n : NULL, dbias ? dbias + s * n : NULL, num_threads);
        if (rc != FASTNORM_OK) return rc;
    }
    return FASTNORM_OK;
}

#undef FN_ROW_TABLE
#undef FN_STAT_ROWS_MAX_N
#undef FN_STAT_ROWS_MAX_BYTES
#undef FN_STAT_ROWS_ANY_N
#undef FN_STAT_ROWS_PAY
#undef FN_EXACT
#undef FN_EXACT_NORMALIZE
