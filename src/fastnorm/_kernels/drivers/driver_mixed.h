/*
 * driver_mixed.h -- the per-channel arithmetic of switchable and batch-layer
 * normalization, shared by every data type (included once by driver.c,
 * before the per-type drivers of driver_switch_impl.h and
 * driver_batch_layer_impl.h).
 *
 * Its statistics and coefficients are float64 values of (N, C) arrays, and
 * the documented results are those of the NumPy expressions they were
 * specified with (docs/numerics.md): each sum is added in NumPy's order, so
 * that the bits are the same --
 *   - a sum along a contiguous axis (sum(axis=-1), or of a whole array) is
 *     NumPy's pairwise sum: eight interleaved partial sums per block of at
 *     most 128 values, halved recursively above that, added to 0.0;
 *   - a column sum of an (N, C) array (sum(axis=0)) adds the rows one after
 *     another to 0.0, except with one column, where it is the pairwise sum;
 * every product and quotient is formed in the order the expressions write
 * it (no fused multiply-add: the package builds with -ffp-contract=off), and
 * a NaN is passed on as NumPy passes it (fn_add and the others below).
 */
#ifndef FASTNORM_DRIVER_MIXED_H
#define FASTNORM_DRIVER_MIXED_H

#define FN_NP_BLOCK 128

/* The NaN an operation passes on, as NumPy's loops give it on x86: a NaN
 * operand, quieted (the first one when both are); an invalid operation of
 * numbers gives the processor's default NaN. A compiler may swap the
 * operands of a commutative operation, so the choice is made here. */
static inline double fn_quiet(double a) {
    uint64_t u;
    memcpy(&u, &a, sizeof u);
    u |= (uint64_t)1 << 51;
    memcpy(&a, &u, sizeof u);
    return a;
}
#define FN_NAN_FIRST(a, b, expr) (isnan(a) ? fn_quiet(a) : isnan(b) ? fn_quiet(b) : (expr))
static inline double fn_add(double a, double b) { return FN_NAN_FIRST(a, b, a + b); }
static inline double fn_sub(double a, double b) { return FN_NAN_FIRST(a, b, a - b); }
static inline double fn_mul(double a, double b) { return FN_NAN_FIRST(a, b, a * b); }
static inline double fn_div(double a, double b) { return FN_NAN_FIRST(a, b, a / b); }

/* NumPy's pairwise sum of n values a[0], a[stride], ... */
static double fn_np_pairwise(const double *a, int64_t n, int64_t stride) {
    if (n < 8) {
        double res = 0.;
        for (int64_t i = 0; i < n; i++) res = fn_add(res, a[i * stride]);
        return res;
    }
    if (n <= FN_NP_BLOCK) {
        double r[8];
        for (int j = 0; j < 8; j++) r[j] = a[j * stride];
        int64_t i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++) r[j] = fn_add(r[j], a[(i + j) * stride]);
        double res = fn_add(fn_add(fn_add(r[0], r[1]), fn_add(r[2], r[3])),
                            fn_add(fn_add(r[4], r[5]), fn_add(r[6], r[7])));
        for (; i < n; i++) res = fn_add(res, a[i * stride]);
        return res;
    }
    int64_t n2 = n / 2;
    n2 -= n2 % 8;
    return fn_add(fn_np_pairwise(a, n2, stride), fn_np_pairwise(a + n2 * stride, n - n2, stride));
}

/* NumPy's sum of n contiguous values. */
static double fn_np_sum(const double *a, int64_t n) { return fn_add(0.0, fn_np_pairwise(a, n, 1)); }

/* NumPy's sum(axis=0) of the C-ordered (N, C) array a into out (C values). */
static void fn_np_column_sums(const double *a, int64_t N, int64_t C, double *out) {
    if (C == 1) {
        out[0] = fn_np_sum(a, N);
        return;
    }
    for (int64_t c = 0; c < C; c++) out[c] = 0.0;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) out[c] = fn_add(out[c], a[n * C + c]);
}

/* Switchable normalization's statistics from the instance moments in_mean,
 * in_var (N, C): the layer moments ln_* (N) over the channels, the batch
 * moments bn_* (C) over the samples (or the running statistics given as
 * running_*), and the mixed mean and rstd (N, C):
 *   ln_mean = mean(in_mean, axis=1)
 *   ln_var  = mean(in_var, axis=1) + mean((in_mean - ln_mean)**2, axis=1)
 *   bn_mean = mean(in_mean, axis=0)
 *   bn_var  = mean(in_var, axis=0) + mean((in_mean - bn_mean)**2, axis=0)
 *   mean = wm[0] * in_mean + wm[1] * ln_mean + wm[2] * bn_mean
 *   var  = wv[0] * in_var + wv[1] * ln_var + wv[2] * bn_var
 *   rstd = 1.0 / sqrt(var + eps)
 * sq holds N * C doubles of scratch, col C. */
static void fn_switch_statistics(int64_t N, int64_t C, const double *wm, const double *wv,
                                 const double *running_mean, const double *running_var,
                                 double eps, const double *in_mean, const double *in_var,
                                 double *ln_mean, double *ln_var, double *bn_mean,
                                 double *bn_var, double *mean, double *rstd, double *sq,
                                 double *col) {
    const double dc = (double)C, dn = (double)N;
    for (int64_t n = 0; n < N; n++) {
        const double *mi = in_mean + n * C;
        ln_mean[n] = fn_div(fn_np_sum(mi, C), dc);
        const double v = fn_div(fn_np_sum(in_var + n * C, C), dc);
        for (int64_t c = 0; c < C; c++) {
            const double d = fn_sub(mi[c], ln_mean[n]);
            sq[c] = fn_mul(d, d);
        }
        ln_var[n] = fn_add(v, fn_div(fn_np_sum(sq, C), dc));
    }
    if (running_mean) {
        for (int64_t c = 0; c < C; c++) bn_mean[c] = running_mean[c], bn_var[c] = running_var[c];
    } else {
        fn_np_column_sums(in_mean, N, C, col);
        for (int64_t c = 0; c < C; c++) bn_mean[c] = fn_div(col[c], dn);
        for (int64_t i = 0; i < N * C; i++) {
            const double d = fn_sub(in_mean[i], bn_mean[i % C]);
            sq[i] = fn_mul(d, d);
        }
        fn_np_column_sums(in_var, N, C, bn_var);
        fn_np_column_sums(sq, N, C, col);
        for (int64_t c = 0; c < C; c++)
            bn_var[c] = fn_add(fn_div(bn_var[c], dn), fn_div(col[c], dn));
    }
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t i = n * C + c;
            mean[i] = fn_add(fn_add(fn_mul(wm[0], in_mean[i]), fn_mul(wm[1], ln_mean[n])),
                             fn_mul(wm[2], bn_mean[c]));
            const double var = fn_add(fn_add(fn_mul(wv[0], in_var[i]), fn_mul(wv[1], ln_var[n])),
                                      fn_mul(wv[2], bn_var[c]));
            rstd[i] = fn_div(1.0, sqrt(fn_add(var, eps)));
        }
}

/* Switchable normalization's backward coefficients, from the gradient sums
 * sum_dy, sum_dyx (N, C) about the mixed mean, M = R * L values per (n, c):
 * a, b and k of dx = a * dy + b * ((x - in_mean) * rstd) + k, and dweight,
 * dbias (C; where not NULL) and the mixing weights' gradients dwm, dwv (3):
 *   dmu  = -rstd * gamma * sum_dy
 *   dvar = -0.5 * rstd**3 * gamma * sum_dyx
 *   dmu_in, dmu_ln, dmu_bn = wm[0] * dmu, wm[1] * sum(dmu, axis=1),
 *                            bn * wm[2] * sum(dmu, axis=0)
 *   (dv_* alike with wv and dvar; bn = 1 for batch statistics, else 0)
 *   cin, cln, cbn = 1 / M, 1 / (C * M), 1 / (N * M)
 *   Q = 2 * (dv_in * cin + dv_ln * cln + dv_bn * cbn)
 *   k = dmu_in * cin + dmu_ln * cln + dmu_bn * cbn
 *       + 2 * (dv_ln * (in_mean - ln_mean) * cln + dv_bn * (in_mean - bn_mean) * cbn)
 *   a = gamma * rstd;  b = Q / rstd
 *   dweight = sum(rstd * sum_dyx, axis=0);  dbias = sum(sum_dy, axis=0)
 *   gm = (sum(dmu * in_mean), sum(dmu * ln_mean), sum(dmu * bn_mean)), gv alike
 *   dwm = wm * (gm - sum(wm * gm)), dwv alike.
 * rstd3 is rstd**3 as the caller computed it, or NULL: pow(rstd, 3).
 * Scratch: w holds 4 * N * C + 2 * N + 3 * C doubles. */
static void fn_switch_backward_coefficients(
    int64_t N, int64_t C, int64_t M, const double *gamma, const double *wm, const double *wv,
    const double *rstd, const double *rstd3, const double *in_mean, const double *in_var,
    const double *ln_mean, const double *ln_var, const double *bn_mean, const double *bn_var,
    int batch_stats, const double *sum_dy, const double *sum_dyx, double *a, double *b,
    double *k, double *dweight, double *dbias, double *dwm, double *dwv, double *w) {
    const int64_t NC = N * C;
    double *dmu = w, *dvar = w + NC, *tmp = w + 2 * NC, *tmp2 = w + 3 * NC;
    double *dmu_ln = w + 4 * NC, *dv_ln = dmu_ln + N;
    double *dmu_bn = dv_ln + N, *dv_bn = dmu_bn + C, *col = dv_bn + C;
    for (int64_t i = 0; i < NC; i++) {
        const double g = gamma[i % C], r = rstd[i];
        const double r3 = rstd3 ? rstd3[i] : pow(r, 3.0);
        dmu[i] = fn_mul(fn_mul(-r, g), sum_dy[i]);
        dvar[i] = fn_mul(fn_mul(fn_mul(-0.5, r3), g), sum_dyx[i]);
    }
    const double bn = batch_stats ? 1.0 : 0.0;
    for (int64_t n = 0; n < N; n++) {
        dmu_ln[n] = fn_mul(wm[1], fn_np_sum(dmu + n * C, C));
        dv_ln[n] = fn_mul(wv[1], fn_np_sum(dvar + n * C, C));
    }
    fn_np_column_sums(dmu, N, C, col);
    for (int64_t c = 0; c < C; c++) dmu_bn[c] = fn_mul(fn_mul(bn, wm[2]), col[c]);
    fn_np_column_sums(dvar, N, C, col);
    for (int64_t c = 0; c < C; c++) dv_bn[c] = fn_mul(fn_mul(bn, wv[2]), col[c]);
    const double cin = 1.0 / (double)M, cln = 1.0 / (double)(C * M),
                 cbn = 1.0 / (double)(N * M);
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const int64_t i = n * C + c;
            const double q = fn_mul(
                2.0, fn_add(fn_add(fn_mul(fn_mul(wv[0], dvar[i]), cin), fn_mul(dv_ln[n], cln)),
                            fn_mul(dv_bn[c], cbn)));
            const double spread = fn_add(
                fn_mul(fn_mul(dv_ln[n], fn_sub(in_mean[i], ln_mean[n])), cln),
                fn_mul(fn_mul(dv_bn[c], fn_sub(in_mean[i], bn_mean[c])), cbn));
            k[i] = fn_add(fn_add(fn_add(fn_mul(fn_mul(wm[0], dmu[i]), cin),
                                        fn_mul(dmu_ln[n], cln)),
                                 fn_mul(dmu_bn[c], cbn)),
                          fn_mul(2.0, spread));
            a[i] = fn_mul(gamma[c], rstd[i]);
            b[i] = fn_div(q, rstd[i]);
        }
    if (dweight) {
        for (int64_t i = 0; i < NC; i++) tmp[i] = fn_mul(rstd[i], sum_dyx[i]);
        fn_np_column_sums(tmp, N, C, dweight);
    }
    if (dbias) fn_np_column_sums(sum_dy, N, C, dbias);
    double gm[3], gv[3], p[3];
    for (int64_t i = 0; i < NC; i++) {
        tmp[i] = fn_mul(dmu[i], in_mean[i]);
        tmp2[i] = fn_mul(dvar[i], in_var[i]);
    }
    gm[0] = fn_np_sum(tmp, NC), gv[0] = fn_np_sum(tmp2, NC);
    for (int64_t i = 0; i < NC; i++) {
        tmp[i] = fn_mul(dmu[i], ln_mean[i / C]);
        tmp2[i] = fn_mul(dvar[i], ln_var[i / C]);
    }
    gm[1] = fn_np_sum(tmp, NC), gv[1] = fn_np_sum(tmp2, NC);
    for (int64_t i = 0; i < NC; i++) {
        tmp[i] = fn_mul(dmu[i], bn_mean[i % C]);
        tmp2[i] = fn_mul(dvar[i], bn_var[i % C]);
    }
    gm[2] = fn_np_sum(tmp, NC), gv[2] = fn_np_sum(tmp2, NC);
    for (int j = 0; j < 3; j++) p[j] = fn_mul(wm[j], gm[j]);
    const double sm = fn_np_sum(p, 3);
    for (int j = 0; j < 3; j++) p[j] = fn_mul(wv[j], gv[j]);
    const double sv = fn_np_sum(p, 3);
    for (int j = 0; j < 3; j++) {
        dwm[j] = fn_mul(wm[j], fn_sub(gm[j], sm));
        dwv[j] = fn_mul(wv[j], fn_sub(gv[j], sv));
    }
}

/* Batch-layer normalization's mixing constants for batch_size (> 0) or, with
 * batch_size <= 0, the batch's size B: a = 1/B - 1e-4, b = 1 - 1/B - 1e-4
 * (both 0 for an empty batch). */
static void fn_batch_layer_mixing(int64_t batch_size, int64_t B, double *a, double *b) {
    const int64_t n = batch_size > 0 ? batch_size : B;
    if (n <= 0) {
        *a = *b = 0.0;
        return;
    }
    *a = 1.0 / (double)n - 1e-4;
    *b = 1.0 - 1.0 / (double)n - 1e-4;
}

#endif /* FASTNORM_DRIVER_MIXED_H */
