/*
 * driver_switch_impl.h -- switchable normalization of (N, R, C, L) data:
 * the channel stages of driver_channel_impl.h (moments, normalize, gradient
 * sums, affine backward) around the per-channel arithmetic of
 * driver_mixed.h; included by driver.c per data type, after
 * driver_channel_impl.h.
 */

/* The statistics of a call with no elements: NaN (as the per-sample,
 * per-channel statistics of an empty batch). */
static void LOCAL(switch_empty)(int64_t N, int64_t C, double *mean, double *rstd,
                                double *in_mean, double *in_var, double *ln_mean,
                                double *ln_var, double *bn_mean, double *bn_var) {
    for (int64_t i = 0; i < N * C; i++) mean[i] = rstd[i] = in_mean[i] = in_var[i] = NAN;
    for (int64_t n = 0; n < N; n++) ln_mean[n] = ln_var[n] = NAN;
    for (int64_t c = 0; c < C; c++) bn_mean[c] = bn_var[c] = NAN;
}

int NAME(switch_norm)(int64_t N, int64_t R, int64_t C, int64_t L, const T *x, T *y,
                      const W *weight, const W *bias, const double *mean_weight,
                      const double *var_weight, const double *running_mean,
                      const double *running_var, double eps, double *mean, double *rstd,
                      double *in_mean, double *in_var, double *ln_mean, double *ln_var,
                      double *bn_mean, double *bn_var, int num_threads) {
    if (N < 0 || R < 0 || C < 0 || L < 0) return FASTNORM_EINVAL;
    if (N == 0 || R == 0 || C == 0 || L == 0) {
        LOCAL(switch_empty)(N, C, mean, rstd, in_mean, in_var, ln_mean, ln_var, bn_mean,
                            bn_var);
        return FASTNORM_OK;
    }
    int rc = NAME(channel_moments)(N, R, C, L, x, eps, in_mean, in_var, num_threads);
    if (rc != FASTNORM_OK) return rc;
    double *scratch = (double *)fn_scratch_alloc((size_t)(N * C + C) * sizeof(double));
    if (!scratch) return FASTNORM_ENOMEM;
    fn_switch_statistics(N, C, mean_weight, var_weight, running_mean, running_var, eps,
                         in_mean, in_var, ln_mean, ln_var, bn_mean, bn_var, mean, rstd,
                         scratch, scratch + N * C);
    fn_scratch_free(scratch);
    return NAME(channel_normalize)(N, R, C, L, x, y, mean, rstd, weight, bias, 0,
                                   num_threads);
}

int NAME(switch_norm_backward)(int64_t N, int64_t R, int64_t C, int64_t L, const T *dy,
                               const T *x, const W *weight, const double *mean_weight,
                               const double *var_weight, const double *mean,
                               const double *rstd, const double *in_mean,
                               const double *in_var, const double *ln_mean,
                               const double *ln_var, const double *bn_mean,
                               const double *bn_var, int batch_stats,
                               const double *rstd_cubed, T *dx, double *dweight,
                               double *dbias, double *dmean_weight, double *dvar_weight,
                               int num_threads) {
    if (N < 0 || R < 0 || C < 0 || L < 0) return FASTNORM_EINVAL;
    if (N == 0 || R == 0 || C == 0 || L == 0) { /* nothing flows back */
        for (int64_t c = 0; c < C; c++) {
            if (dweight) dweight[c] = 0.0;
            if (dbias) dbias[c] = 0.0;
        }
        for (int j = 0; j < 3; j++) dmean_weight[j] = dvar_weight[j] = 0.0;
        return FASTNORM_OK;
    }
    const int64_t NC = N * C;
    /* sums (2 NC), a, b, k (3 NC), gamma (C), the coefficients' scratch */
    const size_t count = (size_t)(5 * NC + C + 4 * NC + 2 * N + 3 * C);
    double *s = (double *)fn_scratch_alloc(count * sizeof(double));
    if (!s) return FASTNORM_ENOMEM;
    double *sum_dy = s, *sum_dyx = s + NC, *a = s + 2 * NC, *b = s + 3 * NC, *k = s + 4 * NC;
    double *gamma = s + 5 * NC, *w = gamma + C;
    int rc = NAME(channel_sums)(N, R, C, L, dy, x, mean, sum_dy, sum_dyx, num_threads);
    if (rc == FASTNORM_OK) {
        for (int64_t c = 0; c < C; c++) gamma[c] = weight ? (double)weight[c] : 1.0;
        fn_switch_backward_coefficients(N, C, R * L, gamma, mean_weight, var_weight, rstd,
                                        rstd_cubed, in_mean, in_var, ln_mean, ln_var, bn_mean,
                                        bn_var, batch_stats, sum_dy, sum_dyx, a, b, k,
                                        dweight, dbias, dmean_weight, dvar_weight, w);
        rc = NAME(channel_affine_backward)(N, R, C, L, dy, x, dx, in_mean, rstd, a, b, k, 0,
                                           num_threads);
    }
    fn_scratch_free(s);
    return rc;
}
