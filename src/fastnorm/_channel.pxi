# Included by _core.pyx: the channel normalizers and the channel stages of
# the C library.

include "_channel_calls.pxi"
include "_channel_shared.pxi"
include "_channel_kernels.pxi"
include "_channel_args.pxi"
include "_channel_passes.pxi"
include "_channel_norms.pxi"
include "_channel_weight_norm.pxi"
include "_channel_switch.pxi"
include "_channel_batch_layer.pxi"
