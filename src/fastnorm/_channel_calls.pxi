# Included by _channel.pxi: one function per channel stage of the C library,
# taking the data's dtype code (dtype_generic.h picks the entry point once,
# in C). These are the only places the channel code calls into C.

cdef struct ChannelDims:
    # a C-contiguous block of S samples, R rows, C channels and L contiguous
    # elements per channel
    int64_t S, R, C, L


cdef int _call_group_norm(int kind, ChannelDims d, int64_t G, char *x, char *y, char *w,
                          char *b, double eps, char *mean, char *rstd, char *var,
                          int nt) noexcept nogil:
    return fn_group_norm(<fn_dtype>kind, d.S, d.R, d.C, d.L, G, x, y, w, b, eps, mean, rstd,
                         var, nt)


cdef int _call_group_norm_backward(int kind, ChannelDims d, int64_t G, char *dy, char *x,
                                   char *mean, char *rstd, char *w, char *dx, char *dw,
                                   char *db, int nt) noexcept nogil:
    return fn_group_norm_backward(<fn_dtype>kind, d.S, d.R, d.C, d.L, G, dy, x, mean, rstd, w,
                                  dx, dw, db, nt)


cdef int _call_channel_moments(int kind, ChannelDims d, char *x, double eps, double *mean,
                               double *var, int nt) noexcept nogil:
    return fn_channel_moments(<fn_dtype>kind, d.S, d.R, d.C, d.L, x, eps, mean, var, nt)


cdef int _call_channel_normalize(int kind, ChannelDims d, char *x, char *y, double *mean,
                                 double *rstd, char *w, char *b, bint accumulate,
                                 int nt) noexcept nogil:
    return fn_channel_normalize(<fn_dtype>kind, d.S, d.R, d.C, d.L, x, y, mean, rstd, w, b,
                                accumulate, nt)


cdef int _call_channel_sums(int kind, ChannelDims d, char *dy, char *x, double *mu,
                            double *sum_dy, double *sum_dyx, int nt) noexcept nogil:
    return fn_channel_sums(<fn_dtype>kind, d.S, d.R, d.C, d.L, dy, x, mu, sum_dy, sum_dyx, nt)


cdef int _call_channel_sums_scale(int kind, ChannelDims d, char *dy, char *x, double *mu,
                                  double *sum_dy, double *sum_dyx, char *dx, double *a,
                                  int nt) noexcept nogil:
    return fn_channel_sums_scale(<fn_dtype>kind, d.S, d.R, d.C, d.L, dy, x, mu, sum_dy, sum_dyx,
                                 dx, a, nt)


cdef int _call_channel_affine_backward(int kind, ChannelDims d, char *dy, char *x, char *dx,
                                       double *mu, double *r, double *a, double *b, double *k,
                                       bint accumulate, int nt) noexcept nogil:
    return fn_channel_affine_backward(<fn_dtype>kind, d.S, d.R, d.C, d.L, dy, x, dx, mu, r, a,
                                      b, k, accumulate, nt)


cdef int _call_weight_norm(int kind, int64_t C, int64_t L, char *v, double *g, double eps,
                           char *w, int nt) noexcept nogil:
    return fn_weight_norm(<fn_dtype>kind, C, L, v, g, eps, w, nt)


cdef int _call_weight_norm_backward(int kind, int64_t C, int64_t L, char *dw, char *v,
                                    double *g, double eps, char *dv, double *dg,
                                    int nt) noexcept nogil:
    return fn_weight_norm_backward(<fn_dtype>kind, C, L, dw, v, g, eps, dv, dg, nt)


cdef inline void _channel_error(int rc) except *:
    if rc == FASTNORM_EINVAL:
        raise ValueError("the number of channels must be divisible by the number of groups")
    _raise_kernel_error(rc)


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
    return fn_switch_norm(<fn_dtype>kind, d.S, d.R, d.C, d.L, x, y, w, b, wm, wv, rm, rv, eps,
                          s.mean, s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var, s.bn_mean,
                          s.bn_var, nt)


cdef int _call_switch_norm_backward(int kind, ChannelDims d, char *dy, char *x, char *w,
                                    double *wm, double *wv, SwitchStats s, bint batch_stats,
                                    double *rstd_cubed, char *dx, double *dw, double *db,
                                    double *dwm, double *dwv, int nt) noexcept nogil:
    return fn_switch_norm_backward(<fn_dtype>kind, d.S, d.R, d.C, d.L, dy, x, w, wm, wv, s.mean,
                                   s.rstd, s.in_mean, s.in_var, s.ln_mean, s.ln_var, s.bn_mean,
                                   s.bn_var, batch_stats, rstd_cubed, dx, dw, db, dwm, dwv, nt)


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
    return fn_batch_layer_norm(<fn_dtype>kind, B, M, D, x, y, w, b, batch_size, rm, rv, eps,
                               s.feature_mean, s.feature_rstd, s.batch_mean, s.batch_rstd,
                               s.batch_center, s.batch_var, nt)


cdef int _call_batch_layer_norm_backward(int kind, int64_t B, int64_t M, int64_t D, char *dy,
                                         char *x, char *w, int64_t batch_size,
                                         BatchLayerStats s, bint frozen_mean, bint frozen_var,
                                         char *dx, char *dw, char *db, int nt) noexcept nogil:
    return fn_batch_layer_norm_backward(<fn_dtype>kind, B, M, D, dy, x, w, batch_size,
                                        s.feature_mean, s.feature_rstd, s.batch_mean,
                                        s.batch_rstd, s.batch_center, frozen_mean, frozen_var,
                                        dx, dw, db, nt)
