/*
 * driver_batch_layer_impl.h -- batch-layer normalization of (B, M, D) data
 * (B samples, M positions, D features): the row layer norm of driver_impl.h
 * over the features and the channel stages of driver_channel_impl.h over
 * the batch, with F = M * D columns; included by driver.c per data type,
 * after driver_channel_impl.h.
 */

/* (weight / sqrt(D)) * mix per feature, rounded to W (weight NULL: ones),
 * repeated `times` times. */
static void LOCAL(bln_scaled_weight)(const W *weight, int64_t D, double mix, int64_t times,
                                     W *out) {
    if (times <= 0) return; /* M = 0 positions: out has no room */
    const double sd = sqrt((double)D);
    for (int64_t d = 0; d < D; d++)
        out[d] = (W)(mix * ((weight ? (double)weight[d] : 1.0) / sd));
    for (int64_t t = 1; t < times; t++) memcpy(out + t * D, out, (size_t)D * sizeof(W));
}

/* The batch branch's statistics of batch_layer_norm for the columns
 * [first, last) (fn_parallel_columns): the running ones where given */
typedef struct {
    const double *running_mean, *running_var, *batch_center, *batch_var;
    double *batch_mean, *batch_rstd;
    double eps;
} LOCAL(bln_stats_ctx);

static void LOCAL(bln_stats)(void *vctx, int64_t first, int64_t last) {
    const LOCAL(bln_stats_ctx) k = *(const LOCAL(bln_stats_ctx) *)vctx;
    const double *mean = k.running_mean ? k.running_mean : k.batch_center;
    const double *var = k.running_var ? k.running_var : k.batch_var;
    for (int64_t f = first; f < last; f++) {
        k.batch_mean[f] = mean[f];
        k.batch_rstd[f] = 1.0 / sqrt(var[f] + k.eps);
    }
}

int NAME(batch_layer_norm)(int64_t B, int64_t M, int64_t D, const T *x, T *y, const W *weight,
                           const W *bias, int64_t batch_size, const double *running_mean,
                           const double *running_var, double eps, ST *feature_mean,
                           ST *feature_rstd, double *batch_mean, double *batch_rstd,
                           double *batch_center, double *batch_var, int num_threads) {
    if (B < 0 || M < 0 || D < 0) return FASTNORM_EINVAL;
    const int64_t F = M * D;
    double a_mix, b_mix;
    fn_batch_layer_mixing(batch_size, B, &a_mix, &b_mix);
    int rc = FASTNORM_OK;
    if (B > 0 && F > 0)
        rc = NAME(channel_moments)(1, B, F, 1, x, eps, batch_center, batch_var, num_threads);
    else
        for (int64_t f = 0; f < F; f++) batch_center[f] = batch_var[f] = NAN;
    if (rc != FASTNORM_OK) return rc;
    LOCAL(bln_stats_ctx) sc = {running_mean, running_var, batch_center, batch_var,
                               batch_mean, batch_rstd, eps};
    fn_parallel_columns(num_threads, F, 4 * (int64_t)sizeof(double), LOCAL(bln_stats), &sc);
    W *wf = (W *)fn_scratch_alloc((size_t)(D + F + 1) * sizeof(W));
    if (!wf) return FASTNORM_ENOMEM;
    W *wb = wf + D;
    /* the feature branch and the bias: y = a * weight / sqrt(D) * x_f + bias */
    LOCAL(bln_scaled_weight)(weight, D, a_mix, 1, wf);
    rc = NAME(layer_norm)(B * M, D, x, D, y, D, wf, bias, eps, feature_mean, feature_rstd,
                          num_threads);
    /* the batch branch, added: y += b * weight / sqrt(D) * x_b */
    if (rc == FASTNORM_OK) {
        LOCAL(bln_scaled_weight)(weight, D, b_mix, M, wb);
        rc = NAME(channel_normalize)(1, B, F, 1, x, y, batch_mean, batch_rstd, wb, NULL, 1,
                                     num_threads);
    }
    fn_scratch_free(wf);
    return rc;
}

/* The batch branch's per-column coefficients of batch_layer_norm_backward,
 * for the columns [first, last) (fn_parallel_columns) */
typedef struct {
    const double *gd, *batch_rstd, *sum_dy, *sum_dyx;
    double *ca, *rsx, *cb, *ck;
    int64_t D;
    double b_mix, cv, cm;
} LOCAL(bln_coef_ctx);

static void LOCAL(bln_coefs)(void *vctx, int64_t first, int64_t last) {
    const LOCAL(bln_coef_ctx) k = *(const LOCAL(bln_coef_ctx) *)vctx;
    for (int64_t f = first, d = first % k.D; f < last; f++) {
        const double g = k.gd[d], r = k.batch_rstd[f];
        const double ca = fn_mul(fn_mul(g, r), k.b_mix), rsx = fn_mul(r, k.sum_dyx[f]);
        k.ca[f] = ca;
        k.rsx[f] = rsx;
        k.cb[f] = fn_mul(fn_mul(ca, rsx), k.cv);
        k.ck[f] = fn_mul(fn_mul(ca, k.sum_dy[f]), k.cm);
        if (++d == k.D) d = 0;
    }
}

int NAME(batch_layer_norm_backward)(int64_t B, int64_t M, int64_t D, const T *dy, const T *x,
                                    const W *weight, int64_t batch_size,
                                    const ST *feature_mean, const ST *feature_rstd,
                                    const double *batch_mean, const double *batch_rstd,
                                    const double *batch_center, int frozen_mean,
                                    int frozen_var, T *dx, W *dweight, W *dbias,
                                    int num_threads) {
    if (B < 0 || M < 0 || D < 0) return FASTNORM_EINVAL;
    const int64_t F = M * D;
    if (B == 0 || F == 0) { /* nothing flows back */
        for (int64_t d = 0; d < D; d++) {
            if (dweight) dweight[d] = 0;
            if (dbias) dbias[d] = 0;
        }
        return FASTNORM_OK;
    }
    double a_mix, b_mix;
    fn_batch_layer_mixing(batch_size, B, &a_mix, &b_mix);
    double *s = (double *)fn_scratch_alloc((size_t)(6 * F + 2 * D) * sizeof(double));
    W *wp = (W *)fn_scratch_alloc((size_t)(3 * D) * sizeof(W));
    if (!s || !wp) {
        fn_scratch_free(s);
        fn_scratch_free(wp);
        return FASTNORM_ENOMEM;
    }
    double *sum_dy = s, *sum_dyx = s + F, *ca = s + 2 * F, *cb = s + 3 * F, *ck = s + 4 * F;
    double *rsx = s + 5 * F, *dwb = s + 6 * F, *gd = dwb + D;
    W *wf = wp, *dwf = wp + D, *db = dbias ? dbias : wp + 2 * D;
    /* the feature branch: a * NB_features(dy * weight / sqrt(D)) */
    LOCAL(bln_scaled_weight)(weight, D, a_mix, 1, wf);
    int rc = NAME(layer_norm_backward)(B * M, D, dy, D, x, D, feature_mean, feature_rstd, wf,
                                       dx, D, dwf, db, num_threads);
    if (rc == FASTNORM_OK)
        rc = NAME(channel_sums)(1, B, F, 1, dy, x, batch_mean, sum_dy, sum_dyx, num_threads);
    if (rc == FASTNORM_OK) {
        /* the batch branch, added into dx: per column, with g = weight / sqrt(D),
         *   dx += ca dy + cb r (x - center) + ck,  ca = g r b_mix,
         *   cb = -(vb / B) ca r sum_dyx,  ck = -(mb / B) ca sum_dy
         * (vb, mb: whether the variance / mean are the mini-batch's); the
         * variance term is centered on the mini-batch mean */
        const double sd = sqrt((double)D), n = (double)B;
        const double cv = -(frozen_var ? 0.0 : 1.0) / n, cm = -(frozen_mean ? 0.0 : 1.0) / n;
        for (int64_t d = 0; d < D; d++) gd[d] = (weight ? (double)weight[d] : 1.0) / sd;
        LOCAL(bln_coef_ctx) co = {gd, batch_rstd, sum_dy, sum_dyx, ca, rsx, cb, ck,
                                  D, b_mix, cv, cm};
        fn_parallel_columns(num_threads, F, 8 * (int64_t)sizeof(double), LOCAL(bln_coefs), &co);
        rc = NAME(channel_affine_backward)(1, B, F, 1, dy, x, dx, batch_center, batch_rstd, ca,
                                           cb, ck, 1, num_threads);
    }
    if (rc == FASTNORM_OK && dweight) {
        fn_np_column_sums(rsx, M, D, dwb);
        const double sd = sqrt((double)D);
        for (int64_t d = 0; d < D; d++)
            dweight[d] = (W)fn_div(fn_add(fn_mul(a_mix, (double)dwf[d]), fn_mul(b_mix, dwb[d])),
                                   sd);
    }
    fn_scratch_free(s);
    fn_scratch_free(wp);
    return rc;
}
