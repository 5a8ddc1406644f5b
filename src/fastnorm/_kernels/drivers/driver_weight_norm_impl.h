/*
 * driver_weight_norm_impl.h -- weight normalization of contiguous rows;
 * included by driver.c per data type, after driver_channel_impl.h.
 */

#define FN_CTABLE() (fn_active_prims()->SUF)

/* ---- weight normalization of contiguous rows ----------------------------
 * v viewed as C rows of L contiguous elements, one norm per row (axis 0 of a
 * C-contiguous weight). Each row is read from memory once: its sum of
 * squares, then its scaling (or its gradient sums, then dv) while it is in
 * cache. Rows are independent, so any thread split gives the same bits. */
typedef struct {
    const PRIMS_TYPE *P;
    int64_t L;
    const T *v, *dw;
    T *out;
    const double *g;
    double eps;
    double *dg;
} LOCAL(wn_ctx);

/* sqrt(sum v^2 + eps) of one row; plain double loops when the fast sum left
 * the range of A (overflow, or underflow that eps does not hide). */
static double LOCAL(wn_row_norm)(const PRIMS_TYPE *P, const T *v, int64_t L, double eps) {
    const A ss = P->sum_sq(v, L);
    double q = (double)ss;
    if (!isfinite(ss) || (ss < (A)(FN_TINY * (double)L) && eps < FN_EPS_NEGLIGIBLE)) {
        q = 0;
        for (int64_t i = 0; i < L; i++) q += FN_TO_D(v[i]) * FN_TO_D(v[i]);
    }
    return sqrt(q + eps);
}

/* Whether a coefficient keeps its digits as an A: finite and, unless 0,
 * normal. Out of that range (the norm of subnormal float32 or 16-bit data,
 * say) a row is computed in double instead, where its results are. */
static int LOCAL(wn_fits)(double a) {
    const double fa = fabs((double)(A)a);
    return isfinite(fa) && (a == 0 || fa >= (sizeof(A) == sizeof(float) ? FLT_MIN : DBL_MIN));
}

static void LOCAL(wn_forward_rows)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(wn_ctx) *k = (const LOCAL(wn_ctx) *)vctx;
    const int64_t L = k->L;
    for (int64_t c = begin; c < end; c++) {
        const T *v = k->v + c * L;
        T *w = k->out + c * L;
        const double norm = LOCAL(wn_row_norm)(k->P, v, L, k->eps);
        const double a = k->g[c] / norm;
        if (LOCAL(wn_fits)(a)) {
            k->P->scale_shift(v, w, L, (A)0, (A)a, (A)0, 0);
        } else {
            for (int64_t i = 0; i < L; i++) w[i] = FN_FROM_D(FN_TO_D(v[i]) * a);
        }
    }
}

/* dg = sum(dw * v) / norm; dv = (g / norm) dw - (g dg / norm) (v / norm). The
 * sum is taken of dw * (v / norm), finite wherever the result is. */
static void LOCAL(wn_backward_rows)(void *vctx, int64_t begin, int64_t end) {
    const LOCAL(wn_ctx) *k = (const LOCAL(wn_ctx) *)vctx;
    const int64_t L = k->L;
    for (int64_t c = begin; c < end; c++) {
        const T *v = k->v + c * L, *dw = k->dw + c * L;
        const double norm = LOCAL(wn_row_norm)(k->P, v, L, k->eps);
        const double rn = 1.0 / norm, a = k->g[c] / norm;
        if (LOCAL(wn_fits)(rn) && LOCAL(wn_fits)(a)) {
            const A r = (A)rn;
            A s3[3];
            k->P->backward_sums(dw, v, L, (A)0, r, NULL, s3);
            const double dg = (double)s3[1], b = -k->g[c] * dg / norm;
            if (LOCAL(wn_fits)(b)) {
                k->dg[c] = dg;
                k->P->affine_backward(dw, v, k->out + c * L, L, (A)0, r, (A)a, (A)b, (A)0, 0);
                continue;
            }
        }
        /* the row in double */
        double dg = 0;
        for (int64_t i = 0; i < L; i++) dg += FN_TO_D(dw[i]) * (FN_TO_D(v[i]) * rn);
        k->dg[c] = dg;
        const double b = -k->g[c] * dg / norm;
        for (int64_t i = 0; i < L; i++)
            k->out[c * L + i] = FN_FROM_D(a * FN_TO_D(dw[i]) + b * (FN_TO_D(v[i]) * rn));
    }
}

int NAME(weight_norm)(int64_t C, int64_t L, const T *v, const double *g, double eps, T *w,
                      int num_threads) {
    if (C <= 0 || L <= 0) return FASTNORM_OK;
    LOCAL(wn_ctx) k = {FN_CTABLE(), L, v, NULL, w, g, eps, NULL};
    fn_parallel_ranges(fn_threads_for(num_threads, C, 2 * C * L * (int64_t)sizeof(T)), C,
                       LOCAL(wn_forward_rows), &k);
    return FASTNORM_OK;
}

int NAME(weight_norm_backward)(int64_t C, int64_t L, const T *dw, const T *v, const double *g,
                               double eps, T *dv, double *dg, int num_threads) {
    if (C <= 0) return FASTNORM_OK;
    if (L <= 0) {
        for (int64_t c = 0; c < C; c++) dg[c] = 0;
        return FASTNORM_OK;
    }
    LOCAL(wn_ctx) k = {FN_CTABLE(), L, v, dw, dv, g, eps, dg};
    fn_parallel_ranges(fn_threads_for(num_threads, C, 3 * C * L * (int64_t)sizeof(T)), C,
                       LOCAL(wn_backward_rows), &k);
    return FASTNORM_OK;
}

#undef FN_CTABLE
