/*
 * api_table.c -- every entry point of fastnorm.h in one table, for the hosts
 * that reach the kernels through a loaded copy rather than by linking them
 * (the Python package hands it out as the capsule fastnorm._core._C_API).
 */
#include "fastnorm.h"

static const fastnorm_api_table fn_api_table = {
    .table_version = FASTNORM_API_TABLE_VERSION,
    .table_size = (int)sizeof(fastnorm_api_table),
    .version_number = FASTNORM_VERSION_NUMBER,
    .cpu_features = fastnorm_cpu_features,
    .isa_available = fastnorm_isa_available,
    .set_isa = fastnorm_set_isa,
    .get_isa = fastnorm_get_isa,
    .has_openmp = fastnorm_has_openmp,
    .max_threads = fastnorm_max_threads,
    .num_procs = fastnorm_num_procs,
    .serial_after_fork = fastnorm_serial_after_fork,
    .layer_norm_f32 = fastnorm_layer_norm_f32,
    .layer_norm_f64 = fastnorm_layer_norm_f64,
    .layer_norm_backward_f32 = fastnorm_layer_norm_backward_f32,
    .layer_norm_backward_f64 = fastnorm_layer_norm_backward_f64,
    .rms_norm_f32 = fastnorm_rms_norm_f32,
    .rms_norm_f64 = fastnorm_rms_norm_f64,
    .rms_norm_backward_f32 = fastnorm_rms_norm_backward_f32,
    .rms_norm_backward_f64 = fastnorm_rms_norm_backward_f64,
    .add_layer_norm_f32 = fastnorm_add_layer_norm_f32,
    .add_layer_norm_f64 = fastnorm_add_layer_norm_f64,
    .add_rms_norm_f32 = fastnorm_add_rms_norm_f32,
    .add_rms_norm_f64 = fastnorm_add_rms_norm_f64,
    .layer_norm_per_sample_f32 = fastnorm_layer_norm_per_sample_f32,
    .layer_norm_per_sample_f64 = fastnorm_layer_norm_per_sample_f64,
    .layer_norm_per_sample_backward_f32 = fastnorm_layer_norm_per_sample_backward_f32,
    .layer_norm_per_sample_backward_f64 = fastnorm_layer_norm_per_sample_backward_f64,
    .group_norm_f32 = fastnorm_group_norm_f32,
    .group_norm_f64 = fastnorm_group_norm_f64,
    .group_norm_backward_f32 = fastnorm_group_norm_backward_f32,
    .group_norm_backward_f64 = fastnorm_group_norm_backward_f64,
    .channel_moments_f32 = fastnorm_channel_moments_f32,
    .channel_moments_f64 = fastnorm_channel_moments_f64,
    .channel_normalize_f32 = fastnorm_channel_normalize_f32,
    .channel_normalize_f64 = fastnorm_channel_normalize_f64,
    .channel_sums_f32 = fastnorm_channel_sums_f32,
    .channel_sums_f64 = fastnorm_channel_sums_f64,
    .channel_affine_backward_f32 = fastnorm_channel_affine_backward_f32,
    .channel_affine_backward_f64 = fastnorm_channel_affine_backward_f64,
    .layer_norm_axis_f32 = fastnorm_layer_norm_axis_f32,
    .layer_norm_axis_f64 = fastnorm_layer_norm_axis_f64,
    .rms_norm_axis_f32 = fastnorm_rms_norm_axis_f32,
    .rms_norm_axis_f64 = fastnorm_rms_norm_axis_f64,
    .layer_norm_axis_backward_f32 = fastnorm_layer_norm_axis_backward_f32,
    .layer_norm_axis_backward_f64 = fastnorm_layer_norm_axis_backward_f64,
    .rms_norm_axis_backward_f32 = fastnorm_rms_norm_axis_backward_f32,
    .rms_norm_axis_backward_f64 = fastnorm_rms_norm_axis_backward_f64,
};

const fastnorm_api_table *fastnorm_get_api_table(void) { return &fn_api_table; }
