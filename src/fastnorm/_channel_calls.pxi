# Included by _channel.pxi: the channel stages of the C library, and one
# function per stage that picks the entry point of the data's dtype. These
# are the only places the channel code calls into C.

cdef extern from "fastnorm.h" nogil:
    int FASTNORM_EINVAL
    int fastnorm_group_norm_f32(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                                const float *x, float *y, const float *weight,
                                const float *bias, double eps, float *mean, float *rstd,
                                float *var, int num_threads)
    int fastnorm_group_norm_f64(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                                const double *x, double *y, const double *weight,
                                const double *bias, double eps, double *mean, double *rstd,
                                double *var, int num_threads)
    int fastnorm_group_norm_backward_f32(int64_t S, int64_t R, int64_t C, int64_t L,
                                         int64_t G, const float *dy, const float *x,
                                         const float *mean, const float *rstd,
                                         const float *weight, float *dx, float *dweight,
                                         float *dbias, int num_threads)
    int fastnorm_group_norm_backward_f64(int64_t S, int64_t R, int64_t C, int64_t L,
                                         int64_t G, const double *dy, const double *x,
                                         const double *mean, const double *rstd,
                                         const double *weight, double *dx, double *dweight,
                                         double *dbias, int num_threads)
    int fastnorm_channel_moments_f32(int64_t S, int64_t R, int64_t C, int64_t L,
                                     const float *x, double eps, double *mean, double *var,
                                     int num_threads)
    int fastnorm_channel_moments_f64(int64_t S, int64_t R, int64_t C, int64_t L,
                                     const double *x, double eps, double *mean, double *var,
                                     int num_threads)
    int fastnorm_channel_normalize_f32(int64_t S, int64_t R, int64_t C, int64_t L,
                                       const float *x, float *y, const double *mean,
                                       const double *rstd, const float *weight,
                                       const float *bias, int accumulate, int num_threads)
    int fastnorm_channel_normalize_f64(int64_t S, int64_t R, int64_t C, int64_t L,
                                       const double *x, double *y, const double *mean,
                                       const double *rstd, const double *weight,
                                       const double *bias, int accumulate, int num_threads)
    int fastnorm_channel_sums_f32(int64_t S, int64_t R, int64_t C, int64_t L,
                                  const float *dy, const float *x, const double *mu,
                                  double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_sums_f64(int64_t S, int64_t R, int64_t C, int64_t L,
                                  const double *dy, const double *x, const double *mu,
                                  double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_affine_backward_f32(int64_t S, int64_t R, int64_t C, int64_t L,
                                             const float *dy, const float *x, float *dx,
                                             const double *mu, const double *r,
                                             const double *a, const double *b,
                                             const double *k, int accumulate,
                                             int num_threads)
    int fastnorm_channel_affine_backward_f64(int64_t S, int64_t R, int64_t C, int64_t L,
                                             const double *dy, const double *x, double *dx,
                                             const double *mu, const double *r,
                                             const double *a, const double *b,
                                             const double *k, int accumulate,
                                             int num_threads)
    int fastnorm_channel_sums_scale_f32(int64_t S, int64_t R, int64_t C, int64_t L,
                                        const float *dy, const float *x, const double *mu,
                                        double *sum_dy, double *sum_dyx, float *dx,
                                        const double *a, int num_threads)
    int fastnorm_channel_sums_scale_f64(int64_t S, int64_t R, int64_t C, int64_t L,
                                        const double *dy, const double *x, const double *mu,
                                        double *sum_dy, double *sum_dyx, double *dx,
                                        const double *a, int num_threads)
    int fastnorm_channel_sums_scale_f16(int64_t S, int64_t R, int64_t C, int64_t L,
                                        const uint16_t *dy, const uint16_t *x,
                                        const double *mu, double *sum_dy, double *sum_dyx,
                                        uint16_t *dx, const double *a, int num_threads)
    int fastnorm_weight_norm_f16(int64_t C, int64_t L, const uint16_t *v, const double *g,
                                 double eps, uint16_t *w, int num_threads)
    int fastnorm_weight_norm_backward_f16(int64_t C, int64_t L, const uint16_t *dw,
                                          const uint16_t *v, const double *g, double eps,
                                          uint16_t *dv, double *dg, int num_threads)
    int fastnorm_channel_sums_scale_bf16(int64_t S, int64_t R, int64_t C, int64_t L,
                                        const uint16_t *dy, const uint16_t *x,
                                        const double *mu, double *sum_dy, double *sum_dyx,
                                        uint16_t *dx, const double *a, int num_threads)
    int fastnorm_weight_norm_bf16(int64_t C, int64_t L, const uint16_t *v, const double *g,
                                 double eps, uint16_t *w, int num_threads)
    int fastnorm_weight_norm_backward_bf16(int64_t C, int64_t L, const uint16_t *dw,
                                          const uint16_t *v, const double *g, double eps,
                                          uint16_t *dv, double *dg, int num_threads)
    int fastnorm_weight_norm_f32(int64_t C, int64_t L, const float *v, const double *g,
                                 double eps, float *w, int num_threads)
    int fastnorm_weight_norm_f64(int64_t C, int64_t L, const double *v, const double *g,
                                 double eps, double *w, int num_threads)
    int fastnorm_weight_norm_backward_f32(int64_t C, int64_t L, const float *dw,
                                          const float *v, const double *g, double eps,
                                          float *dv, double *dg, int num_threads)
    int fastnorm_weight_norm_backward_f64(int64_t C, int64_t L, const double *dw,
                                          const double *v, const double *g, double eps,
                                          double *dv, double *dg, int num_threads)
    int fastnorm_group_norm_f16(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                                const uint16_t *x, uint16_t *y, const float *weight,
                                const float *bias, double eps, float *mean, float *rstd,
                                float *var, int num_threads)
    int fastnorm_group_norm_backward_f16(int64_t S, int64_t R, int64_t C, int64_t L,
                                         int64_t G, const uint16_t *dy, const uint16_t *x,
                                         const float *mean, const float *rstd,
                                         const float *weight, uint16_t *dx, float *dweight,
                                         float *dbias, int num_threads)
    int fastnorm_channel_moments_f16(int64_t S, int64_t R, int64_t C, int64_t L,
                                     const uint16_t *x, double eps, double *mean, double *var,
                                     int num_threads)
    int fastnorm_channel_normalize_f16(int64_t S, int64_t R, int64_t C, int64_t L,
                                       const uint16_t *x, uint16_t *y, const double *mean,
                                       const double *rstd, const float *weight,
                                       const float *bias, int accumulate, int num_threads)
    int fastnorm_channel_sums_f16(int64_t S, int64_t R, int64_t C, int64_t L,
                                  const uint16_t *dy, const uint16_t *x, const double *mu,
                                  double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_affine_backward_f16(int64_t S, int64_t R, int64_t C, int64_t L,
                                             const uint16_t *dy, const uint16_t *x, uint16_t *dx,
                                             const double *mu, const double *r,
                                             const double *a, const double *b,
                                             const double *k, int accumulate,
                                             int num_threads)
    int fastnorm_group_norm_bf16(int64_t S, int64_t R, int64_t C, int64_t L, int64_t G,
                                const uint16_t *x, uint16_t *y, const float *weight,
                                const float *bias, double eps, float *mean, float *rstd,
                                float *var, int num_threads)
    int fastnorm_group_norm_backward_bf16(int64_t S, int64_t R, int64_t C, int64_t L,
                                         int64_t G, const uint16_t *dy, const uint16_t *x,
                                         const float *mean, const float *rstd,
                                         const float *weight, uint16_t *dx, float *dweight,
                                         float *dbias, int num_threads)
    int fastnorm_channel_moments_bf16(int64_t S, int64_t R, int64_t C, int64_t L,
                                     const uint16_t *x, double eps, double *mean, double *var,
                                     int num_threads)
    int fastnorm_channel_normalize_bf16(int64_t S, int64_t R, int64_t C, int64_t L,
                                       const uint16_t *x, uint16_t *y, const double *mean,
                                       const double *rstd, const float *weight,
                                       const float *bias, int accumulate, int num_threads)
    int fastnorm_channel_sums_bf16(int64_t S, int64_t R, int64_t C, int64_t L,
                                  const uint16_t *dy, const uint16_t *x, const double *mu,
                                  double *sum_dy, double *sum_dyx, int num_threads)
    int fastnorm_channel_affine_backward_bf16(int64_t S, int64_t R, int64_t C, int64_t L,
                                             const uint16_t *dy, const uint16_t *x, uint16_t *dx,
                                             const double *mu, const double *r,
                                             const double *a, const double *b,
                                             const double *k, int accumulate,
                                             int num_threads)



cdef struct ChannelDims:
    # a C-contiguous block of S samples, R rows, C channels and L contiguous
    # elements per channel
    int64_t S, R, C, L


cdef int _call_group_norm(int kind, ChannelDims d, int64_t G, char *x, char *y, char *w,
                          char *b, double eps, char *mean, char *rstd, char *var,
                          int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_group_norm_f32(d.S, d.R, d.C, d.L, G, <float *>x, <float *>y,
                                       <float *>w, <float *>b, eps, <float *>mean,
                                       <float *>rstd, <float *>var, nt)
    if kind == K_F64:
        return fastnorm_group_norm_f64(d.S, d.R, d.C, d.L, G, <double *>x, <double *>y,
                                       <double *>w, <double *>b, eps, <double *>mean,
                                       <double *>rstd, <double *>var, nt)
    if kind == K_F16:
        return fastnorm_group_norm_f16(d.S, d.R, d.C, d.L, G, <uint16_t *>x, <uint16_t *>y,
                                       <float *>w, <float *>b, eps, <float *>mean,
                                       <float *>rstd, <float *>var, nt)
    return fastnorm_group_norm_bf16(d.S, d.R, d.C, d.L, G, <uint16_t *>x, <uint16_t *>y,
                                    <float *>w, <float *>b, eps, <float *>mean,
                                    <float *>rstd, <float *>var, nt)


cdef int _call_group_norm_backward(int kind, ChannelDims d, int64_t G, char *dy, char *x,
                                   char *mean, char *rstd, char *w, char *dx, char *dw,
                                   char *db, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_group_norm_backward_f32(d.S, d.R, d.C, d.L, G, <float *>dy,
                                                <float *>x, <float *>mean, <float *>rstd,
                                                <float *>w, <float *>dx, <float *>dw,
                                                <float *>db, nt)
    if kind == K_F64:
        return fastnorm_group_norm_backward_f64(d.S, d.R, d.C, d.L, G, <double *>dy,
                                                <double *>x, <double *>mean, <double *>rstd,
                                                <double *>w, <double *>dx, <double *>dw,
                                                <double *>db, nt)
    if kind == K_F16:
        return fastnorm_group_norm_backward_f16(d.S, d.R, d.C, d.L, G, <uint16_t *>dy,
                                                <uint16_t *>x, <float *>mean, <float *>rstd,
                                                <float *>w, <uint16_t *>dx, <float *>dw,
                                                <float *>db, nt)
    return fastnorm_group_norm_backward_bf16(d.S, d.R, d.C, d.L, G, <uint16_t *>dy,
                                             <uint16_t *>x, <float *>mean, <float *>rstd,
                                             <float *>w, <uint16_t *>dx, <float *>dw,
                                             <float *>db, nt)


cdef int _call_channel_moments(int kind, ChannelDims d, char *x, double eps, double *mean,
                               double *var, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_channel_moments_f32(d.S, d.R, d.C, d.L, <float *>x, eps, mean, var, nt)
    if kind == K_F64:
        return fastnorm_channel_moments_f64(d.S, d.R, d.C, d.L, <double *>x, eps, mean, var,
                                            nt)
    if kind == K_F16:
        return fastnorm_channel_moments_f16(d.S, d.R, d.C, d.L, <uint16_t *>x, eps, mean, var,
                                            nt)
    return fastnorm_channel_moments_bf16(d.S, d.R, d.C, d.L, <uint16_t *>x, eps, mean, var, nt)


cdef int _call_channel_normalize(int kind, ChannelDims d, char *x, char *y, double *mean,
                                 double *rstd, char *w, char *b, bint accumulate,
                                 int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_channel_normalize_f32(d.S, d.R, d.C, d.L, <float *>x, <float *>y,
                                              mean, rstd, <float *>w, <float *>b, accumulate,
                                              nt)
    if kind == K_F64:
        return fastnorm_channel_normalize_f64(d.S, d.R, d.C, d.L, <double *>x, <double *>y,
                                              mean, rstd, <double *>w, <double *>b,
                                              accumulate, nt)
    if kind == K_F16:
        return fastnorm_channel_normalize_f16(d.S, d.R, d.C, d.L, <uint16_t *>x,
                                              <uint16_t *>y, mean, rstd, <float *>w,
                                              <float *>b, accumulate, nt)
    return fastnorm_channel_normalize_bf16(d.S, d.R, d.C, d.L, <uint16_t *>x, <uint16_t *>y,
                                           mean, rstd, <float *>w, <float *>b, accumulate, nt)


cdef int _call_channel_sums(int kind, ChannelDims d, char *dy, char *x, double *mu,
                            double *sum_dy, double *sum_dyx, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_channel_sums_f32(d.S, d.R, d.C, d.L, <float *>dy, <float *>x, mu,
                                         sum_dy, sum_dyx, nt)
    if kind == K_F64:
        return fastnorm_channel_sums_f64(d.S, d.R, d.C, d.L, <double *>dy, <double *>x, mu,
                                         sum_dy, sum_dyx, nt)
    if kind == K_F16:
        return fastnorm_channel_sums_f16(d.S, d.R, d.C, d.L, <uint16_t *>dy, <uint16_t *>x,
                                         mu, sum_dy, sum_dyx, nt)
    return fastnorm_channel_sums_bf16(d.S, d.R, d.C, d.L, <uint16_t *>dy, <uint16_t *>x, mu,
                                      sum_dy, sum_dyx, nt)


cdef int _call_channel_sums_scale(int kind, ChannelDims d, char *dy, char *x, double *mu,
                                  double *sum_dy, double *sum_dyx, char *dx, double *a,
                                  int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_channel_sums_scale_f32(d.S, d.R, d.C, d.L, <float *>dy, <float *>x, mu,
                                               sum_dy, sum_dyx, <float *>dx, a, nt)
    if kind == K_F64:
        return fastnorm_channel_sums_scale_f64(d.S, d.R, d.C, d.L, <double *>dy, <double *>x,
                                               mu, sum_dy, sum_dyx, <double *>dx, a, nt)
    if kind == K_F16:
        return fastnorm_channel_sums_scale_f16(d.S, d.R, d.C, d.L, <uint16_t *>dy,
                                               <uint16_t *>x, mu, sum_dy, sum_dyx,
                                               <uint16_t *>dx, a, nt)
    return fastnorm_channel_sums_scale_bf16(d.S, d.R, d.C, d.L, <uint16_t *>dy, <uint16_t *>x,
                                            mu, sum_dy, sum_dyx, <uint16_t *>dx, a, nt)


cdef int _call_channel_affine_backward(int kind, ChannelDims d, char *dy, char *x, char *dx,
                                       double *mu, double *r, double *a, double *b, double *k,
                                       bint accumulate, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_channel_affine_backward_f32(d.S, d.R, d.C, d.L, <float *>dy,
                                                    <float *>x, <float *>dx, mu, r, a, b, k,
                                                    accumulate, nt)
    if kind == K_F64:
        return fastnorm_channel_affine_backward_f64(d.S, d.R, d.C, d.L, <double *>dy,
                                                    <double *>x, <double *>dx, mu, r, a, b, k,
                                                    accumulate, nt)
    if kind == K_F16:
        return fastnorm_channel_affine_backward_f16(d.S, d.R, d.C, d.L, <uint16_t *>dy,
                                                    <uint16_t *>x, <uint16_t *>dx, mu, r, a,
                                                    b, k, accumulate, nt)
    return fastnorm_channel_affine_backward_bf16(d.S, d.R, d.C, d.L, <uint16_t *>dy,
                                                 <uint16_t *>x, <uint16_t *>dx, mu, r, a, b,
                                                 k, accumulate, nt)


cdef int _call_weight_norm(int kind, int64_t C, int64_t L, char *v, double *g, double eps,
                           char *w, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_weight_norm_f32(C, L, <float *>v, g, eps, <float *>w, nt)
    if kind == K_F64:
        return fastnorm_weight_norm_f64(C, L, <double *>v, g, eps, <double *>w, nt)
    if kind == K_F16:
        return fastnorm_weight_norm_f16(C, L, <uint16_t *>v, g, eps, <uint16_t *>w, nt)
    return fastnorm_weight_norm_bf16(C, L, <uint16_t *>v, g, eps, <uint16_t *>w, nt)


cdef int _call_weight_norm_backward(int kind, int64_t C, int64_t L, char *dw, char *v,
                                    double *g, double eps, char *dv, double *dg,
                                    int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_weight_norm_backward_f32(C, L, <float *>dw, <float *>v, g, eps,
                                                 <float *>dv, dg, nt)
    if kind == K_F64:
        return fastnorm_weight_norm_backward_f64(C, L, <double *>dw, <double *>v, g, eps,
                                                 <double *>dv, dg, nt)
    if kind == K_F16:
        return fastnorm_weight_norm_backward_f16(C, L, <uint16_t *>dw, <uint16_t *>v, g, eps,
                                                 <uint16_t *>dv, dg, nt)
    return fastnorm_weight_norm_backward_bf16(C, L, <uint16_t *>dw, <uint16_t *>v, g, eps,
                                              <uint16_t *>dv, dg, nt)


cdef inline void _channel_error(int rc) except *:
    if rc == FASTNORM_EINVAL:
        raise ValueError("the number of channels must be divisible by the number of groups")
    _raise_kernel_error(rc)


# Switchable and batch-layer normalization (fastnorm.h: their own block of
# entry points).
cdef extern from "fastnorm.h" nogil:
    int fastnorm_switch_norm_f32(int64_t N, int64_t R, int64_t C, int64_t L, const float *x,
                                 float *y, const float *weight, const float *bias,
                                 const double *mean_weight, const double *var_weight,
                                 const double *running_mean, const double *running_var,
                                 double eps, double *mean, double *rstd, double *in_mean,
                                 double *in_var, double *ln_mean, double *ln_var,
                                 double *bn_mean, double *bn_var, int num_threads)
    int fastnorm_switch_norm_f64(int64_t N, int64_t R, int64_t C, int64_t L, const double *x,
                                 double *y, const double *weight, const double *bias,
                                 const double *mean_weight, const double *var_weight,
                                 const double *running_mean, const double *running_var,
                                 double eps, double *mean, double *rstd, double *in_mean,
                                 double *in_var, double *ln_mean, double *ln_var,
                                 double *bn_mean, double *bn_var, int num_threads)
    int fastnorm_switch_norm_f16(int64_t N, int64_t R, int64_t C, int64_t L,
                                 const uint16_t *x, uint16_t *y, const float *weight,
                                 const float *bias, const double *mean_weight,
                                 const double *var_weight, const double *running_mean,
                                 const double *running_var, double eps, double *mean,
                                 double *rstd, double *in_mean, double *in_var,
                                 double *ln_mean, double *ln_var, double *bn_mean,
                                 double *bn_var, int num_threads)
    int fastnorm_switch_norm_bf16(int64_t N, int64_t R, int64_t C, int64_t L,
                                  const uint16_t *x, uint16_t *y, const float *weight,
                                  const float *bias, const double *mean_weight,
                                  const double *var_weight, const double *running_mean,
                                  const double *running_var, double eps, double *mean,
                                  double *rstd, double *in_mean, double *in_var,
                                  double *ln_mean, double *ln_var, double *bn_mean,
                                  double *bn_var, int num_threads)
    int fastnorm_switch_norm_backward_f32(
        int64_t N, int64_t R, int64_t C, int64_t L, const float *dy, const float *x,
        const float *weight, const double *mean_weight, const double *var_weight,
        const double *mean, const double *rstd, const double *in_mean, const double *in_var,
        const double *ln_mean, const double *ln_var, const double *bn_mean,
        const double *bn_var, int batch_stats, const double *rstd_cubed, float *dx,
        double *dweight, double *dbias, double *dmean_weight, double *dvar_weight,
        int num_threads)
    int fastnorm_switch_norm_backward_f64(
        int64_t N, int64_t R, int64_t C, int64_t L, const double *dy, const double *x,
        const double *weight, const double *mean_weight, const double *var_weight,
        const double *mean, const double *rstd, const double *in_mean, const double *in_var,
        const double *ln_mean, const double *ln_var, const double *bn_mean,
        const double *bn_var, int batch_stats, const double *rstd_cubed, double *dx,
        double *dweight, double *dbias, double *dmean_weight, double *dvar_weight,
        int num_threads)
    int fastnorm_switch_norm_backward_f16(
        int64_t N, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        const float *weight, const double *mean_weight, const double *var_weight,
        const double *mean, const double *rstd, const double *in_mean, const double *in_var,
        const double *ln_mean, const double *ln_var, const double *bn_mean,
        const double *bn_var, int batch_stats, const double *rstd_cubed, uint16_t *dx,
        double *dweight, double *dbias, double *dmean_weight, double *dvar_weight,
        int num_threads)
    int fastnorm_switch_norm_backward_bf16(
        int64_t N, int64_t R, int64_t C, int64_t L, const uint16_t *dy, const uint16_t *x,
        const float *weight, const double *mean_weight, const double *var_weight,
        const double *mean, const double *rstd, const double *in_mean, const double *in_var,
        const double *ln_mean, const double *ln_var, const double *bn_mean,
        const double *bn_var, int batch_stats, const double *rstd_cubed, uint16_t *dx,
        double *dweight, double *dbias, double *dmean_weight, double *dvar_weight,
        int num_threads)
    int fastnorm_batch_layer_norm_f32(int64_t B, int64_t M, int64_t D, const float *x,
                                      float *y, const float *weight, const float *bias,
                                      int64_t batch_size, const double *running_mean,
                                      const double *running_var, double eps,
                                      float *feature_mean, float *feature_rstd,
                                      double *batch_mean, double *batch_rstd,
                                      double *batch_center, double *batch_var, int num_threads)
    int fastnorm_batch_layer_norm_f64(int64_t B, int64_t M, int64_t D, const double *x,
                                      double *y, const double *weight, const double *bias,
                                      int64_t batch_size, const double *running_mean,
                                      const double *running_var, double eps,
                                      double *feature_mean, double *feature_rstd,
                                      double *batch_mean, double *batch_rstd,
                                      double *batch_center, double *batch_var, int num_threads)
    int fastnorm_batch_layer_norm_f16(int64_t B, int64_t M, int64_t D, const uint16_t *x,
                                      uint16_t *y, const float *weight, const float *bias,
                                      int64_t batch_size, const double *running_mean,
                                      const double *running_var, double eps,
                                      float *feature_mean, float *feature_rstd,
                                      double *batch_mean, double *batch_rstd,
                                      double *batch_center, double *batch_var, int num_threads)
    int fastnorm_batch_layer_norm_bf16(int64_t B, int64_t M, int64_t D, const uint16_t *x,
                                       uint16_t *y, const float *weight, const float *bias,
                                       int64_t batch_size, const double *running_mean,
                                       const double *running_var, double eps,
                                       float *feature_mean, float *feature_rstd,
                                       double *batch_mean, double *batch_rstd,
                                       double *batch_center, double *batch_var,
                                       int num_threads)
    int fastnorm_batch_layer_norm_backward_f32(
        int64_t B, int64_t M, int64_t D, const float *dy, const float *x, const float *weight,
        int64_t batch_size, const float *feature_mean, const float *feature_rstd,
        const double *batch_mean, const double *batch_rstd, const double *batch_center,
        int frozen_mean, int frozen_var, float *dx, float *dweight, float *dbias,
        int num_threads)
    int fastnorm_batch_layer_norm_backward_f64(
        int64_t B, int64_t M, int64_t D, const double *dy, const double *x,
        const double *weight, int64_t batch_size, const double *feature_mean,
        const double *feature_rstd, const double *batch_mean, const double *batch_rstd,
        const double *batch_center, int frozen_mean, int frozen_var, double *dx,
        double *dweight, double *dbias, int num_threads)
    int fastnorm_batch_layer_norm_backward_f16(
        int64_t B, int64_t M, int64_t D, const uint16_t *dy, const uint16_t *x,
        const float *weight, int64_t batch_size, const float *feature_mean,
        const float *feature_rstd, const double *batch_mean, const double *batch_rstd,
        const double *batch_center, int frozen_mean, int frozen_var, uint16_t *dx,
        float *dweight, float *dbias, int num_threads)
    int fastnorm_batch_layer_norm_backward_bf16(
        int64_t B, int64_t M, int64_t D, const uint16_t *dy, const uint16_t *x,
        const float *weight, int64_t batch_size, const float *feature_mean,
        const float *feature_rstd, const double *batch_mean, const double *batch_rstd,
        const double *batch_center, int frozen_mean, int frozen_var, uint16_t *dx,
        float *dweight, float *dbias, int num_threads)


cdef struct SwitchStats:
    # the statistics of switchable normalization (fastnorm.h), all double
    double *mean
    double *rstd
    double *in_mean
    double *in_var
    double *ln_mean
    double *ln_var
    double *bn_mean
    double *bn_var


cdef int _call_switch_norm(int kind, ChannelDims d, char *x, char *y, char *w, char *b,
                           double *wm, double *wv, double *rm, double *rv, double eps,
                           SwitchStats s, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_switch_norm_f32(d.S, d.R, d.C, d.L, <float *>x, <float *>y,
                                        <float *>w, <float *>b, wm, wv, rm, rv, eps, s.mean,
                                        s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var,
                                        s.bn_mean, s.bn_var, nt)
    if kind == K_F64:
        return fastnorm_switch_norm_f64(d.S, d.R, d.C, d.L, <double *>x, <double *>y,
                                        <double *>w, <double *>b, wm, wv, rm, rv, eps,
                                        s.mean, s.rstd, s.in_mean, s.in_var, s.ln_mean,
                                        s.ln_var, s.bn_mean, s.bn_var, nt)
    if kind == K_F16:
        return fastnorm_switch_norm_f16(d.S, d.R, d.C, d.L, <uint16_t *>x, <uint16_t *>y,
                                        <float *>w, <float *>b, wm, wv, rm, rv, eps, s.mean,
                                        s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var,
                                        s.bn_mean, s.bn_var, nt)
    return fastnorm_switch_norm_bf16(d.S, d.R, d.C, d.L, <uint16_t *>x, <uint16_t *>y,
                                     <float *>w, <float *>b, wm, wv, rm, rv, eps, s.mean,
                                     s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var,
                                     s.bn_mean, s.bn_var, nt)


cdef int _call_switch_norm_backward(int kind, ChannelDims d, char *dy, char *x, char *w,
                                    double *wm, double *wv, SwitchStats s, bint batch_stats,
                                    double *rstd_cubed, char *dx, double *dw, double *db,
                                    double *dwm, double *dwv, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_switch_norm_backward_f32(
            d.S, d.R, d.C, d.L, <float *>dy, <float *>x, <float *>w, wm, wv, s.mean, s.rstd,
            s.in_mean, s.in_var, s.ln_mean, s.ln_var, s.bn_mean, s.bn_var, batch_stats,
            rstd_cubed, <float *>dx, dw, db, dwm, dwv, nt)
    if kind == K_F64:
        return fastnorm_switch_norm_backward_f64(
            d.S, d.R, d.C, d.L, <double *>dy, <double *>x, <double *>w, wm, wv, s.mean,
            s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var, s.bn_mean, s.bn_var,
            batch_stats, rstd_cubed, <double *>dx, dw, db, dwm, dwv, nt)
    if kind == K_F16:
        return fastnorm_switch_norm_backward_f16(
            d.S, d.R, d.C, d.L, <uint16_t *>dy, <uint16_t *>x, <float *>w, wm, wv, s.mean,
            s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var, s.bn_mean, s.bn_var,
            batch_stats, rstd_cubed, <uint16_t *>dx, dw, db, dwm, dwv, nt)
    return fastnorm_switch_norm_backward_bf16(
        d.S, d.R, d.C, d.L, <uint16_t *>dy, <uint16_t *>x, <float *>w, wm, wv, s.mean,
        s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var, s.bn_mean, s.bn_var, batch_stats,
        rstd_cubed, <uint16_t *>dx, dw, db, dwm, dwv, nt)



cdef struct BatchLayerStats:
    # the statistics of batch-layer normalization (fastnorm.h)
    char *feature_mean  # the parameter type
    char *feature_rstd
    double *batch_mean
    double *batch_rstd
    double *batch_center
    double *batch_var


cdef int _call_batch_layer_norm(int kind, int64_t B, int64_t M, int64_t D, char *x, char *y,
                                char *w, char *b, int64_t batch_size, double *rm, double *rv,
                                double eps, BatchLayerStats s, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_batch_layer_norm_f32(B, M, D, <float *>x, <float *>y, <float *>w,
                                             <float *>b, batch_size, rm, rv, eps,
                                             <float *>s.feature_mean, <float *>s.feature_rstd,
                                             s.batch_mean, s.batch_rstd, s.batch_center,
                                             s.batch_var, nt)
    if kind == K_F64:
        return fastnorm_batch_layer_norm_f64(B, M, D, <double *>x, <double *>y, <double *>w,
                                             <double *>b, batch_size, rm, rv, eps,
                                             <double *>s.feature_mean,
                                             <double *>s.feature_rstd, s.batch_mean,
                                             s.batch_rstd, s.batch_center, s.batch_var, nt)
    if kind == K_F16:
        return fastnorm_batch_layer_norm_f16(B, M, D, <uint16_t *>x, <uint16_t *>y,
                                             <float *>w, <float *>b, batch_size, rm, rv, eps,
                                             <float *>s.feature_mean, <float *>s.feature_rstd,
                                             s.batch_mean, s.batch_rstd, s.batch_center,
                                             s.batch_var, nt)
    return fastnorm_batch_layer_norm_bf16(B, M, D, <uint16_t *>x, <uint16_t *>y, <float *>w,
                                          <float *>b, batch_size, rm, rv, eps,
                                          <float *>s.feature_mean, <float *>s.feature_rstd,
                                          s.batch_mean, s.batch_rstd, s.batch_center,
                                          s.batch_var, nt)


cdef int _call_batch_layer_norm_backward(int kind, int64_t B, int64_t M, int64_t D, char *dy,
                                         char *x, char *w, int64_t batch_size,
                                         BatchLayerStats s, bint frozen_mean, bint frozen_var,
                                         char *dx, char *dw, char *db, int nt) noexcept nogil:
    if kind == K_F32:
        return fastnorm_batch_layer_norm_backward_f32(
            B, M, D, <float *>dy, <float *>x, <float *>w, batch_size, <float *>s.feature_mean,
            <float *>s.feature_rstd, s.batch_mean, s.batch_rstd, s.batch_center, frozen_mean,
            frozen_var, <float *>dx, <float *>dw, <float *>db, nt)
    if kind == K_F64:
        return fastnorm_batch_layer_norm_backward_f64(
            B, M, D, <double *>dy, <double *>x, <double *>w, batch_size,
            <double *>s.feature_mean, <double *>s.feature_rstd, s.batch_mean, s.batch_rstd,
            s.batch_center, frozen_mean, frozen_var, <double *>dx, <double *>dw, <double *>db,
            nt)
    if kind == K_F16:
        return fastnorm_batch_layer_norm_backward_f16(
            B, M, D, <uint16_t *>dy, <uint16_t *>x, <float *>w, batch_size,
            <float *>s.feature_mean, <float *>s.feature_rstd, s.batch_mean, s.batch_rstd,
            s.batch_center, frozen_mean, frozen_var, <uint16_t *>dx, <float *>dw, <float *>db,
            nt)
    return fastnorm_batch_layer_norm_backward_bf16(
        B, M, D, <uint16_t *>dy, <uint16_t *>x, <float *>w, batch_size,
        <float *>s.feature_mean, <float *>s.feature_rstd, s.batch_mean, s.batch_rstd,
        s.batch_center, frozen_mean, frozen_var, <uint16_t *>dx, <float *>dw, <float *>db, nt)
