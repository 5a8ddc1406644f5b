"""The benchmark matrix and the implementations it times, in one place.

Every implementation is a *runner*: ``make_runner(impl, op, inputs, threads)``
does all the preparation (output buffers, tensors, ONNX sessions, io
bindings) and returns a zero-argument callable that does exactly the work
that is timed, and returns the outputs so that the same callable can be
checked against ``fastnorm.reference``.

Implementations
---------------
fastnorm, fastnorm-scalar
    ``fastnorm.layer_norm(x, w, b, out=y, num_threads=t)`` etc.: fastnorm on
    the kernel target it picks by default (the best the CPU has: what a user
    gets), and on its portable scalar target, set with
    ``fastnorm._core._set_isa`` (see :func:`fastnorm_isa`).
    ``fastnorm.layer_norm_backward(dy, x, mean, rstd, w, out=dx, num_threads=t)``
    and ``rms_norm_backward``: dx preallocated, as the forward's y (and as the
    floor's destination); they allocate dw (and db). The channel and the other
    backward functions allocate their outputs.
numpy
    Plain vectorized NumPy in the input dtype (below). Single-threaded, so it
    is only run with 1 thread.
torch
    ``torch.nn.functional.layer_norm`` / ``rms_norm`` on tensors that share
    memory with the NumPy inputs. Forward runs under ``torch.inference_mode()``
    (entered around the whole measurement, not per call) and allocates its
    output (the functional API has no ``out=``). Backward: the forward graph is
    built once, untimed; each timed call is
    ``torch.autograd.grad(y, (x, w[, b]), grad_outputs=dy, retain_graph=True)``,
    i.e. the autograd engine plus the backward kernels, producing dx, dw (, db).
    On the CPU, ``F.rms_norm`` is a composite of several ops (pow, mean, rsqrt,
    mul), so its backward walks several graph nodes.
jax
    The formulas in ``jax.numpy`` (:func:`jax_layer_norm`, :func:`jax_rms_norm`),
    ``jax.jit``-compiled, on JAX's CPU device (float64 enabled for the float64
    cases). The inputs are put on the device once, untimed; each function is
    compiled and run once before it is timed; a timed call is the jitted call
    followed by ``jax.block_until_ready``, and allocates its outputs. Backward:
    ``jax.jit`` of ``jax.vjp`` of the forward, called with dy (and x, w, b),
    returning dx, dw (, db); XLA compiles the forward's statistics into it (JAX
    keeps no graph between calls), where fastnorm and torch take saved ones.
    JAX's thread pool is sized once per process (PJRT_NPROC, else the CPUs of
    the affinity: :func:`jax_thread_setting`), so its cases run at that thread
    count only and are skipped, with the reason, at the others. The row ops
    only (layer_norm, rms_norm, add_layer_norm, ada_layer_norm and the two
    backward ops).
onnxruntime
    A model with one ``LayerNormalization`` node (opset 17) or one
    ``RMSNormalization`` node (opset 23), weight and bias as initializers,
    ``intra_op_num_threads = t``; x and y are bound with ``io_binding`` to
    preallocated NumPy buffers, so a timed call is ``run_with_iobinding``.
    Forward only (inference runtime).
copy
    The memory floor (``floor.py``): in the forward groups the best copy this
    machine can do, y = x with streaming stores for destinations beyond the
    cache and ordinary stores below, split over the same thread count; in the
    row backward groups the pass that reads x and dy and writes dx (dx = x ^
    dy). The report uses the forward copy as the floor of the channel backward
    ops. For add_layer_norm it moves the fused op's bytes: x copied to s and
    the residual to y (two arrays read, two written).

The fused residual add (op ``add_layer_norm``: s = x + residual, y =
layer_norm(s, w, b); float32 only, shapes FUSED_SHAPES_FLOAT32)
------------------------------------------------------------------------
fastnorm, fastnorm-scalar
    ``fastnorm.add_layer_norm(x, r, w, b, out=y, sum_out=s, num_threads=t)``,
    y and s preallocated.
fastnorm-unfused
    The same result from the unfused functions: ``np.add(x, r, out=s)`` (one
    thread: NumPy has no threads) then ``fastnorm.layer_norm(s, w, b, out=y,
    num_threads=t)``, fastnorm's default kernel target. Its
    time over fastnorm's is what the fusion saves.
numpy
    ``np.add(x, r, out=s)`` then the NumPy layer norm below into y.
torch
    ``s = x + r; y = F.layer_norm(s, ...)`` under ``torch.inference_mode()``
    (both outputs allocated by torch).
jax
    ``s = x + r`` and the JAX layer norm of s in one jitted function, returning
    (y, s).
onnxruntime
    One ``com.microsoft`` ``SkipLayerNormalization`` node (input, skip, gamma,
    beta; outputs y and the sum s as its 4th output), x, r, y and s bound to
    NumPy buffers with ``io_binding``; skipped when the installed onnxruntime
    cannot build or run it.

Adaptive LayerNorm (op ``ada_layer_norm``, forward: y = layer_norm(x) * (1 +
scale[:, None, :]) + shift[:, None, :], x of shape (N, T, D), shift and scale
(N, D), eps ADA_NORM_EPS; float32 only, DiT-like shapes ADA_SHAPES_FLOAT32)
------------------------------------------------------------------------
fastnorm, fastnorm-scalar
    ``fastnorm.ada_layer_norm(x, shift, scale, out=y, num_threads=t)``, y
    preallocated.
numpy
    The NumPy layer norm below without weight and bias, into y, then
    ``y *= 1 + scale[:, None]; y += shift[:, None]`` (all in the timed call).
torch
    ``F.layer_norm(x, (D,), eps=1e-6) * (1 + scale[:, None]) + shift[:, None]``
    under ``torch.inference_mode()`` (three allocated temporaries: the
    composition a DiT block runs).
jax
    The JAX layer norm without weight and bias, ``* (1 + scale[:, None]) +
    shift[:, None]``, in one jitted function (XLA fuses what it can).
copy
    ``np.copyto(y, x)`` as for the other forward ops, x and y seen as (N*T, D)
    so the threaded copy splits rows, not the few samples. Bytes moved: read
    x + write y (shift and scale are N x D, left out like the weights).
No onnxruntime: ONNX has no AdaLN node.

The channel normalizers (CHANNEL_OPS: x with the batch on axis 0, channels on
axis 1, or channels-last (N, H, W, C) with axis=-1 for the *_nhwc ops;
per-channel weight and bias; eps CHANNEL_NORM_EPS; no NumPy peer)
------------------------------------------------------------------------
group_norm, group_norm_nhwc, group_norm_backward, group_norm_nhwc_backward
    GN_GROUPS groups. fastnorm: ``fastnorm.group_norm(x, G, w, b, axis=a, out=y,
    num_threads=t)`` / ``fastnorm.group_norm_backward(dy, x, mean, rstd, w, b,
    axis=a, num_threads=t)``. torch: ``F.group_norm`` (inference mode) / autograd
    as for layer_norm; for the channels-last ops the NumPy (N, H, W, C) arrays
    are permuted to (N, C, H, W) tensors whose memory is channels_last (what a
    PyTorch user holds), so torch runs its channels-last kernels and returns
    channels-last outputs (permuted back, untimed, for the check: ``run.post``).
    onnxruntime: GroupNormalization (opset 21, per-channel scale and bias,
    stash_type = x's dtype), NCHW only.
instance_norm
    Instance statistics (training=True, no running statistics). fastnorm
    ``fastnorm.instance_norm(x, w, b, out=y, ...)``, torch ``F.instance_norm``,
    onnxruntime InstanceNormalization (float32 only in onnxruntime).
batch_norm_train, batch_norm_eval, batch_norm_backward
    ``fastnorm.batch_norm(x, rm, rv, w, b, training=..., momentum=BN_MOMENTUM,
    out=y, num_threads=t)``, ``F.batch_norm(...)`` (inference mode), and the
    backward of training mode (``fastnorm.batch_norm_backward(..., training=True)``,
    autograd through ``F.batch_norm(training=True)``). Training mode updates the
    running statistics in place on every call (fastnorm and torch): each runner
    gets its own copies of Inputs.running() (which is read-only), so neither the
    timing nor y depends on how often it ran; the check, which runs a fresh
    runner once, also compares the running statistics after that one update.
    onnxruntime: BatchNormalization (opset 15, training_mode=0) for
    batch_norm_eval only.
instance_norm_backward, batch_norm_eval_backward
    ``fastnorm.instance_norm_backward(dy, x, mean, rstd, w, b, ...)`` with the
    instance statistics (N, C), ``fastnorm.batch_norm_backward(..., training=False)``
    with the running statistics (mean, rstd); torch: autograd through
    ``F.instance_norm`` / ``F.batch_norm(training=False)``.
switch_norm, switch_norm_backward (NCHW; training mode, no running statistics)
    Mixing logits SN_MEAN_LOGITS, SN_VAR_LOGITS. fastnorm ``fastnorm.switch_norm(x, w,
    b, mean_weight, var_weight, out=y, ...)`` / ``fastnorm.switch_norm_backward(dy, x,
    stats, w, b, mean_weight, var_weight, ...)`` (dx, dweight, dbias and the logits'
    gradients). PyTorch has no such op: torch runs :func:`torch_switch_norm`, a
    composition of torch ops, and autograd through it.
batch_layer_norm, batch_layer_norm_backward (channels-last (B, ..., D); training mode,
no running statistics; eps BLN_EPS)
    fastnorm ``fastnorm.batch_layer_norm(x, w, b, out=y, ...)`` /
    ``fastnorm.batch_layer_norm_backward(dy, x, stats, w, b, ...)``; torch
    :func:`torch_batch_layer_norm` (F.layer_norm + F.batch_norm) and autograd.
weight_norm, weight_norm_backward (v = x of shape (out, ...), axis 0, g = the
per-channel weight, dw = dy)
    fastnorm ``fastnorm.weight_norm(v, g, axis=0)`` / ``weight_norm_backward(dw, v,
    g, axis=0)`` (no ``out=`` and no ``num_threads``: the thread count is set with
    ``fastnorm.set_num_threads``); torch ``torch._weight_norm(v, g, 0)`` (what
    ``torch.nn.utils.weight_norm`` runs, g of shape (out, 1, ...)) and autograd.
    Both allocate their outputs.
    The stats the backward passes take (SwitchNormStats, BatchLayerNormStats) are
    computed once in NumPy (float64), untimed, like the other ops' statistics.
copy
    ``np.copyto(y, x)``, split over the batch axis, as for the other forward ops.

Checks: every implementation is compared with ``fastnorm.reference`` (float64)
before it is timed. switch_norm_backward and batch_layer_norm_backward have no
reference formula: their expected gradients are fastnorm's own backward run in
float64 on the same values (:func:`_fastnorm64_backward`), so the torch
composition must agree with fastnorm to be timed.
"""
import contextlib
import functools
import os
import time

import numpy as np

import fastnorm
import fastnorm.reference as reference

try:  # run as part of the bench folder (pytest puts it on sys.path) or imported as bench.*
    import floor
except ImportError:  # pragma: no cover
    from . import floor

FUSED_OPS = ("add_layer_norm",)  # residual add + norm: two inputs (x, residual), two outputs (s, y)
ADA_OPS = ("ada_layer_norm",)  # per-sample shift and scale: x (N, T, D), shift, scale (N, D)
# The row-wise normalizers: statistics over the last axis.
ROW_FORWARD_OPS = ("layer_norm", "rms_norm") + FUSED_OPS + ADA_OPS
ROW_BACKWARD_OPS = ("layer_norm_backward", "rms_norm_backward")
ROW_OPS = ROW_FORWARD_OPS + ROW_BACKWARD_OPS

# The channel normalizers: x (N, C, *spatial) with the channels on axis 1, or
# channels-last (N, H, W, C) with axis=-1 (the *_nhwc ops); per-channel weight and bias.
GN_OPS = ("group_norm", "group_norm_nhwc")
GN_BACKWARD_OPS = ("group_norm_backward", "group_norm_nhwc_backward")
IN_OPS = ("instance_norm",)
IN_BACKWARD_OPS = ("instance_norm_backward",)  # of instance_norm (instance statistics)
BN_OPS = ("batch_norm_train", "batch_norm_eval")  # batch statistics / running statistics
# the backward of batch_norm_train (batch statistics) and of batch_norm_eval (running ones)
BN_BACKWARD_OPS = ("batch_norm_backward", "batch_norm_eval_backward")
NHWC_OPS = ("group_norm_nhwc", "group_norm_nhwc_backward")
# The normalizers PyTorch has no op for: its peer is a composition of torch ops
# (torch_switch_norm, torch_batch_layer_norm below); and weight normalization
# (torch._weight_norm), whose "channels" are the output channels of a weight (axis 0).
SN_OPS, SN_BACKWARD_OPS = ("switch_norm",), ("switch_norm_backward",)
BLN_OPS, BLN_BACKWARD_OPS = ("batch_layer_norm",), ("batch_layer_norm_backward",)
WN_OPS, WN_BACKWARD_OPS = ("weight_norm",), ("weight_norm_backward",)
BLN_ALL_OPS = BLN_OPS + BLN_BACKWARD_OPS  # channels-last (B, ..., D): the features on axis -1
WN_ALL_OPS = WN_OPS + WN_BACKWARD_OPS  # v (out, ...): the norm per index of axis 0
CHANNEL_FORWARD_OPS = GN_OPS + IN_OPS + BN_OPS + SN_OPS + BLN_OPS + WN_OPS
CHANNEL_BACKWARD_OPS = (GN_BACKWARD_OPS + IN_BACKWARD_OPS + BN_BACKWARD_OPS + SN_BACKWARD_OPS
                        + BLN_BACKWARD_OPS + WN_BACKWARD_OPS)
CHANNEL_OPS = ("group_norm", "group_norm_backward", "group_norm_nhwc", "group_norm_nhwc_backward",
               "instance_norm", "instance_norm_backward", "batch_norm_train", "batch_norm_eval",
               "batch_norm_backward", "batch_norm_eval_backward",
               "switch_norm", "switch_norm_backward", "batch_layer_norm",
               "batch_layer_norm_backward", "weight_norm", "weight_norm_backward")
# the channel ops with a one-node ONNX model (channels-first, inference): GroupNormalization
# opset 21, InstanceNormalization, BatchNormalization opset 15 with training_mode=0
ONNX_CHANNEL_OPS = ("group_norm", "instance_norm", "batch_norm_eval")

# LayerNorm over the channels of an (N, C, H, W) array (axis=1, as ConvNeXt): statistics
# per pixel over C values H*W apart; weight and bias per channel
AXIS_OPS = ("layer_norm_axis1", "layer_norm_axis1_backward")

FORWARD_OPS = ROW_FORWARD_OPS + CHANNEL_FORWARD_OPS + AXIS_OPS[:1]
BACKWARD_OPS = ROW_BACKWARD_OPS + CHANNEL_BACKWARD_OPS + AXIS_OPS[1:]
OPS = ROW_OPS + CHANNEL_OPS + AXIS_OPS  # the order they run in

FASTNORM_IMPLS = ("fastnorm", "fastnorm-scalar")
UNFUSED_IMPL = "fastnorm-unfused"  # np.add + fastnorm.layer_norm: the fused ops only
IMPLS = FASTNORM_IMPLS + (UNFUSED_IMPL, "numpy", "torch", "jax", "onnxruntime", "copy")
# the ops JAX runs: the row normalizers written out in jax.numpy (below)
JAX_OPS = ROW_OPS

SHAPES_FLOAT32 = [(1, 768), (8, 768), (128, 768), (4096, 768), (1024, 4096), (8192, 4096),
                  (65536, 64)]
SHAPES_FLOAT64 = [(128, 768), (4096, 768)]
FUSED_SHAPES_FLOAT32 = [(8, 768), (4096, 768), (1024, 4096)]
# DiT-like (N, T, D): DiT-XL/2 has D = 1152; 256 tokens (256x256 images), 1024 (512x512)
ADA_SHAPES_FLOAT32 = [(8, 256, 1152), (2, 1024, 1152)]

# GroupNorm (and InstanceNorm) as in a ResNet-50 / diffusion UNet stage: 64 channels in 32
# groups of 2; the small shape keeps C and the groups (per-call overhead at 512 KB).
GN_GROUPS = 32
GN_SHAPES_FLOAT32 = [(8, 64, 16, 16), (32, 64, 56, 56)]
GN_SHAPES_FLOAT64 = [(8, 64, 16, 16)]
# BatchNorm: a small conv activation, a ResNet stage (64, 256, 28, 28), BatchNorm1d (4096, 1024)
BN_SHAPES_FLOAT32 = [(8, 32, 16, 16), (64, 256, 28, 28), (4096, 1024)]
BN_SHAPES_FLOAT64 = [(8, 32, 16, 16)]
# SwitchNorm: the GroupNorm shapes. Batch Layer Norm: a transformer activation (B, T, D) and
# an MLP's (B, D). Weight norm: a linear layer's weight (out, in) and a 3x3 conv's (out, in, 3, 3).
SN_SHAPES_FLOAT32 = GN_SHAPES_FLOAT32
BLN_SHAPES_FLOAT32 = [(8, 128, 768), (4096, 1024)]
WN_SHAPES_FLOAT32 = [(4096, 1024), (256, 256, 3, 3)]
# LayerNorm over axis 1: a ConvNeXt-T stage-1 activation (96 channels at 56x56) and a
# stage-3-like one (768 channels at 14x14, batch 8)
AXIS_SHAPES_FLOAT32 = [(32, 96, 56, 56), (8, 768, 14, 14)]


def nhwc(shape):
    """(N, C, H, W) -> the channels-last (N, H, W, C)."""
    return (shape[0],) + tuple(shape[2:]) + (shape[1],)


# The smoke-run subset (`-m quick` or BENCH_QUICK=1): one tiny, one large, one float64,
# the smaller AdaLN shape; and one case of every channel op: the small GroupNorm shape
# (group_norm, group_norm_backward, instance_norm), its channels-last twin and BatchNorm1d.
# (switch_norm and instance_norm_backward take the GroupNorm shape, batch_norm_eval_backward
# BatchNorm1d's.) QUICK_BY_OP replaces QUICK for the ops named in it, whose shapes would
# otherwise pick up a large case of another op: one case each.
QUICK = {((8, 768), "float32"), ((1024, 4096), "float32"), ((128, 768), "float64"),
         ((8, 256, 1152), "float32"),
         ((8, 64, 16, 16), "float32"), ((8, 16, 16, 64), "float32"), ((4096, 1024), "float32")}
QUICK_BY_OP = {op: {(shape, "float32")} for ops, shape in (
    (BLN_ALL_OPS, (8, 128, 768)), (WN_ALL_OPS, (256, 256, 3, 3))) for op in ops}


def is_quick(op, shape, dtype):
    """Whether a case is in the smoke subset."""
    return (tuple(shape), dtype) in QUICK_BY_OP.get(op, QUICK)

LAYER_NORM_EPS = 1e-5
RMS_NORM_EPS = 1e-6  # explicit: the libraries' defaults differ
ADA_NORM_EPS = 1e-6  # fastnorm.ada_layer_norm's default, as in DiT
CHANNEL_NORM_EPS = 1e-5  # group, instance and batch norm: every library's default
BN_MOMENTUM = 0.1  # batch_norm_train's running-statistics update (PyTorch's default)
BLN_EPS = 1e-3  # fastnorm.batch_layer_norm's default (the paper's)
# switch_norm's mixing logits (order: instance, layer, batch), unequal so that every
# statistic set weighs differently
SN_MEAN_LOGITS = (0.4, -0.3, 0.1)
SN_VAR_LOGITS = (-0.2, 0.5, 0.0)

# Where every implementation is checked once: tails (n % 8 != 0) and enough
# bytes (1 MB in float32) for fastnorm's threaded path.
CHECK_SHAPE = (257, 1000)
# AdaLN's: (N, T, D), 258 rows of 1000 (1 MB in float32) in three samples
ADA_CHECK_SHAPE = (3, 86, 1000)
# The channel ops': about 1 MB in float32, odd spatial sizes (tails), GN_GROUPS groups
# of 2 channels; BatchNorm's 2-D benchmark shapes are checked on a 2-D one (C = 257).
GN_CHECK_SHAPE = (3, 64, 37, 37)
BN_CHECK_SHAPE = (5, 32, 41, 41)
BN_CHECK_SHAPE_2D = (1031, 257)
# Batch Layer Norm's (B, T, D) (D = 771: tails) and weight norm's (out, in, 3, 3); their 2-D
# shapes are checked on BN_CHECK_SHAPE_2D.
BLN_CHECK_SHAPE = (5, 67, 771)
WN_CHECK_SHAPE = (257, 97, 3, 3)


def check_shape(op, shape=None):
    """The shape an op's implementations are checked on (for BatchNorm, Batch Layer Norm
    and weight norm, one of the rank of the benchmark's `shape`)."""
    two_d = shape is not None and len(shape) == 2
    if op in ADA_OPS:
        return ADA_CHECK_SHAPE
    if op in (GN_OPS + GN_BACKWARD_OPS + IN_OPS + IN_BACKWARD_OPS + SN_OPS + SN_BACKWARD_OPS
              + AXIS_OPS):
        return nhwc(GN_CHECK_SHAPE) if op in NHWC_OPS else GN_CHECK_SHAPE
    if op in BLN_ALL_OPS:
        return BN_CHECK_SHAPE_2D if two_d else BLN_CHECK_SHAPE
    if op in WN_ALL_OPS:
        return BN_CHECK_SHAPE_2D if two_d else WN_CHECK_SHAPE
    if op in BN_OPS + BN_BACKWARD_OPS:
        return BN_CHECK_SHAPE_2D if two_d else BN_CHECK_SHAPE
    return CHECK_SHAPE


def channel_axis(op):
    """The channel axis of a channel op: -1 for the channels-last ops (and Batch Layer
    Norm's features), 0 for weight norm (its output channels), else 1."""
    if op in WN_ALL_OPS:
        return 0
    return -1 if op in NHWC_OPS + BLN_ALL_OPS else 1


def base_op(op):
    """The fastnorm function family of an op: group_norm_nhwc -> group_norm."""
    return op.replace("_nhwc", "")


def quick_mode():
    """BENCH_QUICK=1: the same selection as `-m quick`, with shorter measurements."""
    return os.environ.get("BENCH_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def all_threads():
    return os.cpu_count() or 1


def thread_counts():
    """1 and all cores (BENCH_THREADS="1,4" overrides)."""
    env = os.environ.get("BENCH_THREADS", "").strip()
    if env:
        return sorted({int(t) for t in env.split(",") if t.strip()})
    return sorted({1, all_threads()})


def shape_label(shape):
    return "x".join(str(s) for s in shape)


def group_name(op, shape, dtype, threads):
    return f"{op}|{shape_label(shape)}|{dtype}|t{threads}"


def arrays_moved(op):
    """How many arrays of x's size must cross the memory bus: forward reads x and
    writes y; the fused forward reads x and residual and writes s and y;
    backward reads x and dy and writes dx."""
    if op in FUSED_OPS:
        return 4
    return 2 if op in FORWARD_OPS else 3


def bytes_moved(op, shape, dtype):
    """The bytes that must cross the memory bus, parameters and statistics left out."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return arrays_moved(op) * nbytes


def applies(impl, op, threads):
    """Whether a combination is meaningful (not whether its peer is installed)."""
    if impl == UNFUSED_IMPL and op not in FUSED_OPS:
        return False  # the unfused composition of a fused op
    if impl == "numpy" and threads != 1:
        return False  # NumPy has no threads: its time would be the 1-thread time again
    if impl == "jax" and op not in JAX_OPS:
        return False  # the row normalizers only
    if impl == "onnxruntime" and op not in FORWARD_OPS:
        return False
    if impl == "copy" and op not in FORWARD_OPS + ROW_BACKWARD_OPS:
        return False  # the read-two-write-one floor runs in the row backward groups
    if impl == "onnxruntime" and op in ADA_OPS:
        return False  # ONNX has no AdaLN node
    if impl in ("numpy", "onnxruntime") and op in AXIS_OPS:
        return False  # fastnorm, torch's permute + layer_norm and the copy floor only
    if impl == "numpy" and op in CHANNEL_OPS:
        return False  # no NumPy peer for the channel normalizers
    if impl == "onnxruntime" and op in CHANNEL_OPS and op not in ONNX_CHANNEL_OPS:
        return False  # channels-last, training mode: no one-node ONNX model
    return True


def op_shapes(op):
    """(shape, dtype) pairs an op is measured on."""
    if op in FUSED_OPS:
        return [(s, "float32") for s in FUSED_SHAPES_FLOAT32]
    if op in AXIS_OPS:
        return [(s, "float32") for s in AXIS_SHAPES_FLOAT32]
    if op in ADA_OPS:
        return [(s, "float32") for s in ADA_SHAPES_FLOAT32]
    if op in NHWC_OPS:
        return [(nhwc(s), "float32") for s in GN_SHAPES_FLOAT32]
    if op in IN_OPS + IN_BACKWARD_OPS:
        return [(s, "float32") for s in GN_SHAPES_FLOAT32]
    if op in SN_OPS + SN_BACKWARD_OPS:
        return [(s, "float32") for s in SN_SHAPES_FLOAT32]
    if op in BLN_ALL_OPS:
        return [(s, "float32") for s in BLN_SHAPES_FLOAT32]
    if op in WN_ALL_OPS:
        return [(s, "float32") for s in WN_SHAPES_FLOAT32]
    if op in GN_OPS + GN_BACKWARD_OPS:
        return ([(s, "float32") for s in GN_SHAPES_FLOAT32]
                + [(s, "float64") for s in GN_SHAPES_FLOAT64])
    if op in BN_OPS + BN_BACKWARD_OPS:
        return ([(s, "float32") for s in BN_SHAPES_FLOAT32]
                + [(s, "float64") for s in BN_SHAPES_FLOAT64])
    return [(s, "float32") for s in SHAPES_FLOAT32] + [(s, "float64") for s in SHAPES_FLOAT64]


def cases():
    """(op, shape, dtype, threads, impl, quick), in the order they run: group by group."""
    for op in OPS:
        for shape, dtype in op_shapes(op):
            for threads in thread_counts():
                for impl in IMPLS:
                    if applies(impl, op, threads):
                        yield op, shape, dtype, threads, impl, is_quick(op, shape, dtype)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

class Inputs:
    """x, dy, weight, bias and the forward statistics, all in one dtype; and
    ``residual`` (the second input of the fused ops, made on first use).

    The statistics are computed in float64 from x and rounded to the dtype,
    like the ones a forward pass with return_stats=True would hand back.
    """

    def __init__(self, shape, dtype, seed=0):
        rng = np.random.default_rng(seed)
        dt = np.dtype(dtype)
        n = shape[-1]
        self.seed = seed
        self._residual = None
        self._ada = None
        self.shape, self.dtype = tuple(shape), dt
        self.x = rng.standard_normal(shape, dtype=dt)
        self.x *= 2.0
        self.x += 0.5  # a non-zero mean, so the layer_norm centering matters
        self.dy = rng.standard_normal(shape, dtype=dt)
        self.weight = rng.uniform(0.5, 1.5, n).astype(dt)
        self.bias = rng.uniform(-0.5, 0.5, n).astype(dt)
        mean = self.x.mean(axis=-1, dtype=np.float64)
        sq = np.einsum("...j,...j->...", self.x, self.x, dtype=np.float64) / n
        var = np.maximum(sq - mean * mean, 0.0)
        self.ln_mean = mean.astype(dt)
        self.ln_rstd = (1.0 / np.sqrt(var + LAYER_NORM_EPS)).astype(dt)
        self.rms_rstd = (1.0 / np.sqrt(sq + RMS_NORM_EPS)).astype(dt)

    @property
    def residual(self):
        """The residual stream: larger than x and off-centre, as in a transformer."""
        if self._residual is None:
            rng = np.random.default_rng(self.seed + 1000)
            r = rng.standard_normal(self.shape, dtype=self.dtype)
            r *= 3.0
            r -= 1.0
            self._residual = r
        return self._residual

    @property
    def ada(self):
        """AdaLN's (shift, scale), one row of D per sample (x's first axis), as a
        DiT's conditioning MLP would produce them."""
        if self._ada is None:
            rng = np.random.default_rng(self.seed + 2000)
            pshape = (self.shape[0], self.shape[-1])
            shift = rng.standard_normal(pshape, dtype=self.dtype)
            shift *= 0.5
            scale = rng.standard_normal(pshape, dtype=self.dtype)
            scale *= 0.5
            self._ada = shift, scale
        return self._ada


    # ---- the channel normalizers' parameters and statistics (made on first use) ----

    def _cached(self, key, make):
        cache = self.__dict__.setdefault("_channel_cache", {})
        if key not in cache:
            cache[key] = make()
        return cache[key]

    def _channels_first64(self, axis):
        """x in float64 with the channels on axis 1 (a view for axis=1)."""
        return np.moveaxis(self.x, axis, 1).astype(np.float64, copy=False)

    def channel_params(self, axis):
        """(weight, bias), one value per channel (x.shape[axis])."""
        def make():
            rng = np.random.default_rng(self.seed + 3000)
            C = self.shape[axis]
            return (rng.uniform(0.5, 1.5, C).astype(self.dtype),
                    rng.uniform(-0.5, 0.5, C).astype(self.dtype))
        return self._cached(("params", axis), make)

    def group_stats(self, groups, axis):
        """(mean, rstd) per (sample, group), shape (N, groups), computed in float64 and
        rounded to the dtype, as group_norm(return_stats=True) would return them."""
        def make():
            xc = self._channels_first64(axis)
            xg = xc.reshape(xc.shape[0], groups, -1)
            mean = xg.mean(axis=2)
            var = xg.var(axis=2)
            return (mean.astype(self.dtype),
                    (1.0 / np.sqrt(var + CHANNEL_NORM_EPS)).astype(self.dtype))
        return self._cached(("group", groups, axis), make)

    def _batch_moments(self, axis):
        def make():
            xc = self._channels_first64(axis)
            others = (0,) + tuple(range(2, xc.ndim))
            return xc.mean(axis=others), xc.var(axis=others)
        return self._cached(("moments", axis), make)

    def bn_stats(self, axis):
        """(mean, rstd) per channel of the batch (batch_norm training's statistics)."""
        def make():
            mean, var = self._batch_moments(axis)
            return (mean.astype(self.dtype),
                    (1.0 / np.sqrt(var + CHANNEL_NORM_EPS)).astype(self.dtype))
        return self._cached(("bn", axis), make)

    def running(self, axis):
        """(running_mean, running_var) per channel, near the batch's: what a model
        in training would hold. Read-only: every runner takes its own copies
        (training updates them in place; fastnorm wants them writeable)."""
        def make():
            rng = np.random.default_rng(self.seed + 4000)
            mean, var = self._batch_moments(axis)
            rm = (mean + 0.1 * rng.standard_normal(mean.shape)).astype(self.dtype)
            rv = (var * rng.uniform(0.7, 1.3, var.shape)).astype(self.dtype)
            rm.flags.writeable = rv.flags.writeable = False
            return rm, rv
        return self._cached(("running", axis), make)

    def running_stats(self, axis):
        """(mean, rstd) per channel of the running statistics, as
        batch_norm(training=False, return_stats=True) returns them (eval backward's)."""
        def make():
            rm, rv = self.running(axis)
            rstd = 1.0 / np.sqrt(rv.astype(np.float64) + CHANNEL_NORM_EPS)
            return rm, rstd.astype(self.dtype)
        return self._cached(("running_stats", axis), make)

    @property
    def switch_logits(self):
        """switch_norm's (mean_weight, var_weight) logits, in x's dtype."""
        return tuple(np.array(v, self.dtype) for v in (SN_MEAN_LOGITS, SN_VAR_LOGITS))

    def switch_stats(self, axis):
        """The SwitchNormStats of x (training: batch statistics), computed in NumPy."""
        return self._cached(("switch", axis), lambda: switch_stats_of(
            self.x, axis, *self.switch_logits, CHANNEL_NORM_EPS))

    def bln_stats(self):
        """The BatchLayerNormStats of x (training: mini-batch statistics), computed in NumPy."""
        return self._cached(("bln",), lambda: bln_stats_of(self.x, BLN_EPS))


def _softmax64(logits):
    e = np.exp(np.asarray(logits, np.float64) - np.max(logits))
    return e / e.sum()


def switch_stats_of(x, axis, mean_logits, var_logits, eps):
    """What switch_norm(training=True, return_stats=True) hands its backward, in float64:
    instance moments per (sample, channel), the layer and batch moments from them (the
    variance of equal-sized parts: the mean of their variances plus the variance of their
    means), mixed by the softmax of the logits."""
    xc = np.moveaxis(x, axis, 1).astype(np.float64)
    N, C = xc.shape[:2]
    flat = xc.reshape(N, C, -1)
    m_in, v_in = flat.mean(axis=2), flat.var(axis=2)
    m_ln = m_in.mean(axis=1)
    v_ln = v_in.mean(axis=1) + ((m_in - m_ln[:, None]) ** 2).mean(axis=1)
    m_bn = m_in.mean(axis=0)
    v_bn = v_in.mean(axis=0) + ((m_in - m_bn) ** 2).mean(axis=0)
    wm, wv = _softmax64(mean_logits), _softmax64(var_logits)
    mu = wm[0] * m_in + wm[1] * m_ln[:, None] + wm[2] * m_bn
    var = wv[0] * v_in + wv[1] * v_ln[:, None] + wv[2] * v_bn
    return fastnorm.SwitchNormStats(mu, 1.0 / np.sqrt(var + eps), m_in, v_in, m_ln, v_ln,
                                    m_bn, v_bn, True)


def bln_stats_of(x, eps):
    """What batch_layer_norm(training=True, return_stats=True) hands its backward: the
    feature statistics over the last axis (rounded to x's dtype) and the batch statistics
    over axis 0 (float64)."""
    x64 = x.astype(np.float64)
    fmean, fvar = x64.mean(axis=-1), x64.var(axis=-1)
    bmean, bvar = x64.mean(axis=0), x64.var(axis=0)
    return fastnorm.BatchLayerNormStats(
        fmean.astype(x.dtype), (1.0 / np.sqrt(fvar + eps)).astype(x.dtype),
        bmean, 1.0 / np.sqrt(bvar + eps), bmean.copy(), False, False, x.shape[0])


@functools.lru_cache(maxsize=1)  # the largest inputs take ~0.5 GB; keep one set alive
def get_inputs(shape, dtype):
    return Inputs(shape, dtype)


# --------------------------------------------------------------------------
# NumPy peer: the straightforward vectorized formulas, in the input dtype
# --------------------------------------------------------------------------

def numpy_layer_norm(x, weight, bias, eps, out):
    mean = x.mean(axis=-1, keepdims=True)
    xc = x - mean
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    np.multiply(xc, rstd, out=out)
    out *= weight
    out += bias
    return out


def numpy_add_layer_norm(x, residual, weight, bias, eps, out, sum_out):
    np.add(x, residual, out=sum_out)
    numpy_layer_norm(sum_out, weight, bias, eps, out)
    return out, sum_out


def numpy_ada_layer_norm(x, shift, scale, eps, out):
    mean = x.mean(axis=-1, keepdims=True)
    xc = x - mean
    var = np.mean(xc * xc, axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(var + eps)
    np.multiply(xc, rstd, out=out)
    mid = (slice(None),) + (None,) * (x.ndim - 2)
    out *= (1 + scale)[mid]
    out += shift[mid]
    return out


def numpy_rms_norm(x, weight, eps, out):
    rstd = 1.0 / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
    np.multiply(x, rstd, out=out)
    out *= weight
    return out


def numpy_layer_norm_backward(dy, x, mean, rstd, weight):
    rstd = rstd[:, None]
    xhat = (x - mean[:, None]) * rstd
    g = dy * weight
    dx = (g - g.mean(axis=-1, keepdims=True)
          - xhat * np.mean(g * xhat, axis=-1, keepdims=True)) * rstd
    return dx, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def numpy_rms_norm_backward(dy, x, rstd, weight):
    rstd = rstd[:, None]
    xhat = x * rstd
    g = dy * weight
    dx = (g - xhat * np.mean(g * xhat, axis=-1, keepdims=True)) * rstd
    return dx, (dy * xhat).sum(axis=0)


# --------------------------------------------------------------------------
# Copy: the memory floor
# --------------------------------------------------------------------------

# floor.make_copy: y = x by the best copy (streaming stores for destinations
# beyond the cache); floor.make_read2_write1: the backward's floor, dx = x ^ dy.
make_copy = floor.make_copy
make_read2_write1 = floor.make_read2_write1


# --------------------------------------------------------------------------
# Peers that may be missing
# --------------------------------------------------------------------------

class Unavailable(Exception):
    """The implementation cannot run here (not installed, no such ISA, op unsupported)."""


def _import(name):
    try:
        return __import__(name)
    except ImportError as exc:
        raise Unavailable(f"{name} is not installed ({exc})") from exc


def _impl_isa(impl):
    """The kernel target of a fastnorm implementation: "auto" (the default
    choice) for "fastnorm", the suffix for "fastnorm-<target>"."""
    return impl.split("-", 1)[1] if "-" in impl else "auto"


@contextlib.contextmanager
def fastnorm_isa(name):
    """Run fastnorm's kernels of one target ("auto": the default choice);
    restores the previous one."""
    from fastnorm import _core
    if name != "auto" and name not in _core._available_isas():
        raise Unavailable(f"fastnorm's {name} kernels are not available here")
    before = _core._get_isa()
    _core._set_isa(name)
    try:
        yield
    finally:
        _core._set_isa(before)


@contextlib.contextmanager
def torch_threads(threads):
    torch = _import("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def fastnorm_threads(threads):
    """fastnorm's default thread count (weight_norm has no num_threads argument);
    restores the default (the suite sets it nowhere else)."""
    fastnorm.set_num_threads(threads)
    try:
        yield
    finally:
        fastnorm.set_num_threads(None)


# --------------------------------------------------------------------------
# PyTorch compositions: the normalizers torch has no op for
# --------------------------------------------------------------------------

def torch_switch_norm(torch, x, weight, bias, mean_logits, var_logits, eps):
    """Switchable Normalization (training: batch statistics) of x (N, C, *spatial)
    from torch ops, differentiable by autograd.

    The instance moments per (sample, channel) come from two passes over x (the mean,
    then the norm of the deviations from it); the layer (per sample) and batch (per
    channel) moments follow from them, as in the authors' PyTorch code, with the
    variance of equal-sized parts written as the mean of their variances plus the
    variance of their means. The three sets are mixed by the softmax of the logits, and
    y = x * scale + shift is a single addcmul with scale = weight * rstd and shift =
    bias - mean * scale, per (sample, channel).

    Not torch.var / torch.var_mean over the spatial axes: on the CPU their kernel
    (Welford) took 30 ms for (32, 64, 56, 56) float32 on one core where the two passes
    take a few ms, and the peer should be the best plain composition; the norm rather
    than the mean of squares saves a temporary of x's size.
    """
    N, C = x.shape[:2]
    flat = x.reshape(N, C, -1)
    m_in = flat.mean(dim=2, keepdim=True)
    v_in = torch.linalg.vector_norm(flat - m_in, dim=2).square() / flat.shape[2]  # (N, C)
    m_in = m_in.squeeze(2)
    m_ln = m_in.mean(dim=1, keepdim=True)  # (N, 1)
    v_ln = v_in.mean(dim=1, keepdim=True) + (m_in - m_ln).square().mean(dim=1, keepdim=True)
    m_bn = m_in.mean(dim=0, keepdim=True)  # (1, C)
    v_bn = v_in.mean(dim=0, keepdim=True) + (m_in - m_bn).square().mean(dim=0, keepdim=True)
    wm, wv = torch.softmax(mean_logits, dim=0), torch.softmax(var_logits, dim=0)
    mean = wm[0] * m_in + wm[1] * m_ln + wm[2] * m_bn
    var = wv[0] * v_in + wv[1] * v_ln + wv[2] * v_bn
    scale = torch.rsqrt(var + eps) * weight
    shift = bias - mean * scale
    return torch.addcmul(shift.unsqueeze(2), flat, scale.unsqueeze(2)).reshape(x.shape)


def torch_batch_layer_norm(torch, x, weight, bias, eps):
    """Batch Layer Normalization (training: mini-batch statistics) of channels-last x
    (B, ..., D) from torch's fused kernels, differentiable by autograd:

        y = weight * (a * x_f + b * x_b) / sqrt(D) + bias,  a = 1/B - 1e-4, b = 1 - 1/B - 1e-4

    x_f (normalized over the last axis) is F.layer_norm with weight a * weight / sqrt(D)
    and the bias; x_b (normalized over the batch, one statistic per element of
    x.shape[1:]) is F.batch_norm of x seen as (B, features) with batch statistics and
    weight b * weight / sqrt(D) repeated over the features; y is their sum.
    """
    F = torch.nn.functional
    B, D = x.shape[0], x.shape[-1]
    a_mix, b_mix = 1.0 / B - 1e-4, 1.0 - 1.0 / B - 1e-4
    g = weight / D ** 0.5
    y_f = F.layer_norm(x, (D,), g * a_mix, bias, eps)
    x2 = x.reshape(B, -1)
    y_b = F.batch_norm(x2, None, None, (g * b_mix).repeat(x2.shape[1] // D), None,
                       training=True, eps=eps)
    return y_f + y_b.reshape(x.shape)


def _onnx_model(op, dtype, n, weight, bias):
    onnx = _import("onnx")
    from onnx import TensorProto, helper, numpy_helper
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}[dtype]
    inits = [numpy_helper.from_array(weight, "weight")]
    if op == "layer_norm":
        inits.append(numpy_helper.from_array(bias, "bias"))
        node = helper.make_node("LayerNormalization", ["x", "weight", "bias"], ["y"], axis=-1,
                                epsilon=LAYER_NORM_EPS)
        opset = 17
    else:
        node = helper.make_node("RMSNormalization", ["x", "weight"], ["y"], axis=-1,
                                epsilon=RMS_NORM_EPS)
        opset = 23
    if opset > onnx.defs.onnx_opset_version():
        raise Unavailable(f"onnx {onnx.__version__} has no opset {opset} ({node.op_type})")
    graph = helper.make_graph(
        [node], f"fastnorm_bench_{op}",
        [helper.make_tensor_value_info("x", elem, ["rows", n])],
        [helper.make_tensor_value_info("y", elem, ["rows", n])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastnorm-bench")
    model.ir_version = min(model.ir_version, 10)  # what current onnxruntime releases accept
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _onnx_skip_layer_norm_model(dtype, n, weight, bias):
    """One com.microsoft SkipLayerNormalization node: y = LayerNorm(x + skip), and
    the sum x + skip as its 4th output (input_skip_bias_sum)."""
    _import("onnx")
    from onnx import TensorProto, helper, numpy_helper
    if dtype != np.dtype(np.float32):
        raise Unavailable("SkipLayerNormalization is benchmarked in float32 only")
    node = helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta"],
                            ["y", "", "", "s"], domain="com.microsoft", epsilon=LAYER_NORM_EPS)
    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["rows", n])
            for name in ("x", "skip", "y", "s")]
    graph = helper.make_graph(
        [node], "fastnorm_bench_add_layer_norm", info[:2], info[2:],
        initializer=[numpy_helper.from_array(weight, "gamma"),
                     numpy_helper.from_array(bias, "beta")])
    model = helper.make_model(graph, producer_name="fastnorm-bench", opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = min(model.ir_version, 10)
    return model.SerializeToString()  # no onnx.checker: it does not know contrib ops


def _onnx_channel_model(op, dtype, shape, weight, bias, running=None):
    """One channels-first node over x of the given shape: GroupNormalization (opset 21,
    per-channel scale and bias, num_groups GN_GROUPS, statistics in x's dtype),
    InstanceNormalization (opset 17),
    BatchNormalization (opset 15, training_mode=0: running = (mean, var) as initializers)."""
    onnx = _import("onnx")
    from onnx import TensorProto, helper, numpy_helper
    elem = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}[dtype]
    inits = [numpy_helper.from_array(weight, "scale"), numpy_helper.from_array(bias, "bias")]
    if op == "group_norm":
        # stash_type: the statistics in x's precision (the default, 1, is float32 even
        # for double inputs)
        node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"],
                                num_groups=GN_GROUPS, epsilon=CHANNEL_NORM_EPS, stash_type=elem)
        opset = 21
    elif op == "instance_norm":
        node = helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["y"],
                                epsilon=CHANNEL_NORM_EPS)
        opset = 17
    elif op == "batch_norm_eval":
        rm, rv = running
        inits += [numpy_helper.from_array(np.ascontiguousarray(rm), "mean"),
                  numpy_helper.from_array(np.ascontiguousarray(rv), "var")]
        node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["y"],
                                epsilon=CHANNEL_NORM_EPS, training_mode=0)
        opset = 15
    else:
        raise Unavailable(f"no one-node ONNX model of {op}")
    if opset > onnx.defs.onnx_opset_version():
        raise Unavailable(f"onnx {onnx.__version__} has no opset {opset} ({node.op_type})")
    dims = list(shape)
    graph = helper.make_graph(
        [node], f"fastnorm_bench_{op}",
        [helper.make_tensor_value_info("x", elem, dims)],
        [helper.make_tensor_value_info("y", elem, dims)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fastnorm-bench")
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _onnx_session(op, dtype, n, weight, bias, threads, build=None):
    """An InferenceSession of the op's one-node model (`build()` makes it when given)
    with intra_op_num_threads = threads; Unavailable where onnxruntime cannot run it."""
    ort = _import("onnxruntime")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        if build is not None:
            model = build()
        else:
            model = (_onnx_skip_layer_norm_model(dtype, n, weight, bias) if op in FUSED_OPS
                     else _onnx_model(op, dtype, n, weight, bias))
        return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    except Unavailable:
        raise
    except Exception as exc:  # e.g. an onnxruntime without RMSNormalization
        raise Unavailable(f"onnxruntime {ort.__version__} cannot run {op}: "
                          f"{str(exc).splitlines()[0][:200]}") from exc


# --------------------------------------------------------------------------
# JAX: the formulas in jax.numpy, jax.jit-compiled, on the CPU
# --------------------------------------------------------------------------

# JAX sizes its CPU thread pool (XLA's "XLAEigen" pool, which runs the compiled
# computations) once, when its CPU client starts: PJRT_NPROC threads, else NPROC, else
# the CPUs of the process's affinity (taskset). No flag changes it afterwards:
# --xla_cpu_multi_thread_eigen=false only affects Eigen's matrix products and
# convolutions, and intra_op_parallelism_threads is no XLA_FLAGS flag (jaxlib aborts
# on it). So one process measures JAX at one thread count: jax_threads().
JAX_THREAD_ENV = ("PJRT_NPROC", "NPROC")


def jax_thread_setting():
    """(threads, where from): the size of the pool JAX's CPU client makes when it
    starts, from the environment and affinity of this moment."""
    for name in JAX_THREAD_ENV:
        try:  # what the client reads: an integer, else the next source
            return max(0, int(os.environ.get(name, "").strip())), f"{name}={os.environ[name]}"
        except ValueError:
            continue
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)), "the CPUs of the process's affinity"
    return os.cpu_count() or 1, "the CPU count"


def configure_jax_threads(counts):
    """Before JAX starts: when the suite runs a single thread count and nothing sets
    JAX's pool size, size it to that count (PJRT_NPROC), so that the JAX cases run."""
    if len(counts) == 1 and not any(os.environ.get(n, "").strip() for n in JAX_THREAD_ENV):
        os.environ["PJRT_NPROC"] = str(counts[0])


@functools.lru_cache(maxsize=1)
def _jax():
    """jax, its CPU client started (float64 enabled, the CPU platform only), and the
    thread count of that client with where it came from."""
    jax = _import("jax")
    jax.config.update("jax_enable_x64", True)  # float64 cases; float32 stays float32
    if not os.environ.get("JAX_PLATFORMS"):
        jax.config.update("jax_platforms", "cpu")
    setting = jax_thread_setting()  # read when the client starts, just below
    try:
        device = jax.devices("cpu")[0]
    except RuntimeError as exc:  # JAX_PLATFORMS without the CPU
        raise Unavailable(f"jax has no CPU device here ({exc})") from exc
    return jax, device, setting


def jax_threads():
    """The size of JAX's CPU thread pool in this process (starts JAX); None without JAX."""
    try:
        return _jax()[2][0]
    except Unavailable:
        return None


def _jax_stat_dtype(jnp, x):
    """The dtype a JAX model computes normalization statistics in: float32 for 16-bit
    x (as Flax's LayerNorm and RMSNorm do, and the normalization after them), else
    x's own."""
    return jnp.float32 if jnp.dtype(x.dtype).itemsize < 4 else x.dtype


def jax_layer_norm(x, weight, bias, eps):
    """LayerNorm over the last axis as JAX code writes it: mean, biased variance,
    (x - mean) * rsqrt(var + eps) * weight + bias, in x's dtype (the statistics and
    the affine in float32 for 16-bit x), the result cast to x's dtype."""
    jax = _jax()[0]
    jnp = jax.numpy
    xs = x.astype(_jax_stat_dtype(jnp, x))
    mean = jnp.mean(xs, axis=-1, keepdims=True)
    xc = xs - mean
    var = jnp.mean(xc * xc, axis=-1, keepdims=True)
    y = xc * jax.lax.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y.astype(x.dtype)


def jax_rms_norm(x, weight, eps):
    """RMSNorm over the last axis: x * rsqrt(mean(x * x) + eps) * weight, statistics
    as in jax_layer_norm."""
    jax = _jax()[0]
    jnp = jax.numpy
    xs = x.astype(_jax_stat_dtype(jnp, x))
    ms = jnp.mean(xs * xs, axis=-1, keepdims=True)
    return (xs * jax.lax.rsqrt(ms + eps) * weight).astype(x.dtype)


def jax_backward(forward):
    """jax.jit of jax.vjp: (dy, *primals) -> the gradients of forward(*primals)
    against dy. XLA compiles the forward's statistics into the same computation."""
    jax = _jax()[0]

    def grads(dy, *primals):
        _, pullback = jax.vjp(forward, *primals)
        return pullback(dy)
    return jax.jit(grads)


def jax_function(op, eps=None):
    """(the jitted function of a row op, the names of the Inputs it takes); eps: the
    suite's for the op unless given."""
    jax = _jax()[0]
    ln_eps = LAYER_NORM_EPS if eps is None else eps
    rms_eps = RMS_NORM_EPS if eps is None else eps
    if op == "layer_norm":
        return jax.jit(lambda x, w, b: jax_layer_norm(x, w, b, ln_eps)), ("x", "w", "b")
    if op == "rms_norm":
        return jax.jit(lambda x, w: jax_rms_norm(x, w, rms_eps)), ("x", "w")
    if op == "add_layer_norm":
        def add_layer_norm(x, r, w, b):
            s = x + r
            return jax_layer_norm(s, w, b, LAYER_NORM_EPS), s
        return jax.jit(add_layer_norm), ("x", "r", "w", "b")
    if op == "ada_layer_norm":
        def ada_layer_norm(x, shift, scale):
            mid = (slice(None),) + (None,) * (x.ndim - 2)
            y = jax_layer_norm(x, None, None, ADA_NORM_EPS)
            return y * (1 + scale[mid]) + shift[mid]
        return jax.jit(ada_layer_norm), ("x", "shift", "scale")
    if op == "layer_norm_backward":
        return (jax_backward(lambda x, w, b: jax_layer_norm(x, w, b, ln_eps)),
                ("dy", "x", "w", "b"))
    if op == "rms_norm_backward":
        return jax_backward(lambda x, w: jax_rms_norm(x, w, rms_eps)), ("dy", "x", "w")
    raise Unavailable(f"jax does not run {op}")


def jax_runner(fn, args):
    """The timed call of a jitted function: the arguments (NumPy arrays) put on JAX's
    CPU device once, here; a call dispatches the compiled computation and waits for
    it (block_until_ready). Compiled and run once here, outside the timing."""
    jax, device, _ = _jax()
    args = tuple(jax.device_put(a, device) for a in args)
    run = lambda: jax.block_until_ready(fn(*args))
    run()
    return run


def jax_thread_skip(threads):
    """Unavailable unless JAX's pool in this process has `threads` threads."""
    have, source = _jax()[2]
    if threads != have:
        raise Unavailable(
            f"JAX sizes its CPU thread pool once per process; this one has {have} "
            f"thread(s) ({source}); a process started with PJRT_NPROC={threads} (which "
            f"BENCH_THREADS={threads} alone sets) measures JAX with {threads}")


def _make_jax_runner(op, inp, threads):
    """make_runner for jax: the row ops, at the thread count of JAX's pool only."""
    jax_thread_skip(threads)
    fn, names = jax_function(op)
    shift, scale = inp.ada if op in ADA_OPS else (None, None)
    arrays = {"x": inp.x, "dy": inp.dy, "w": inp.weight, "b": inp.bias,
              "r": inp.residual if op in FUSED_OPS else None, "shift": shift, "scale": scale}
    return jax_runner(fn, [arrays[n] for n in names])


# --------------------------------------------------------------------------
# Runners
# --------------------------------------------------------------------------

def make_runner(impl, op, inp, threads):
    """(run, context): a zero-argument callable doing the timed work, and the
    context manager to hold open around it (ISA, torch threads, inference mode).

    Raises Unavailable when the implementation cannot run here.
    """
    x, dy, w, b = inp.x, inp.dy, inp.weight, inp.bias
    stack = contextlib.ExitStack()

    if impl == "jax":
        return _make_jax_runner(op, inp, threads), stack
    if op in FUSED_OPS:
        return _make_fused_runner(impl, op, inp, threads, stack)
    if op in ADA_OPS:
        return _make_ada_runner(impl, op, inp, threads, stack)
    if op in CHANNEL_OPS:
        return _make_channel_runner(impl, op, inp, threads, stack)
    if op in AXIS_OPS:
        return _make_axis_runner(impl, op, inp, threads, stack)

    if impl == "copy" and op in ROW_BACKWARD_OPS:
        return make_read2_write1(x, dy, np.zeros_like(x), threads), stack

    if impl in FASTNORM_IMPLS:
        stack.enter_context(fastnorm_isa(_impl_isa(impl)))
        if op == "layer_norm":
            y = np.zeros_like(x)
            run = lambda: fastnorm.layer_norm(x, w, b, eps=LAYER_NORM_EPS, out=y,
                                              num_threads=threads)
        elif op == "rms_norm":
            y = np.zeros_like(x)
            run = lambda: fastnorm.rms_norm(x, w, eps=RMS_NORM_EPS, out=y, num_threads=threads)
        elif op == "layer_norm_backward":
            mean, rstd = inp.ln_mean, inp.ln_rstd
            dx = np.zeros_like(x)
            run = lambda: fastnorm.layer_norm_backward(dy, x, mean, rstd, w, out=dx,
                                                       num_threads=threads)
        else:
            rstd = inp.rms_rstd
            dx = np.zeros_like(x)
            run = lambda: fastnorm.rms_norm_backward(dy, x, rstd, w, out=dx,
                                                     num_threads=threads)
        return run, stack

    if impl == "numpy":
        if op == "layer_norm":
            y = np.zeros_like(x)
            run = lambda: numpy_layer_norm(x, w, b, LAYER_NORM_EPS, y)
        elif op == "rms_norm":
            y = np.zeros_like(x)
            run = lambda: numpy_rms_norm(x, w, RMS_NORM_EPS, y)
        elif op == "layer_norm_backward":
            run = lambda: numpy_layer_norm_backward(dy, x, inp.ln_mean, inp.ln_rstd, w)
        else:
            run = lambda: numpy_rms_norm_backward(dy, x, inp.rms_rstd, w)
        return run, stack

    if impl == "torch":
        torch = _import("torch")
        F = torch.nn.functional
        if "rms_norm" in op and not hasattr(F, "rms_norm"):
            raise Unavailable(f"torch {torch.__version__} has no F.rms_norm")
        stack.enter_context(torch_threads(threads))
        n = (x.shape[-1],)
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        if op in FORWARD_OPS:
            stack.enter_context(torch.inference_mode())
            if op == "layer_norm":
                run = lambda: F.layer_norm(xt, n, wt, bt, LAYER_NORM_EPS)
            else:
                run = lambda: F.rms_norm(xt, n, wt, RMS_NORM_EPS)
            return run, stack
        dyt = torch.from_numpy(dy)
        xg, wg = xt.detach().requires_grad_(), wt.detach().requires_grad_()
        if op == "layer_norm_backward":
            bg = bt.detach().requires_grad_()
            y = F.layer_norm(xg, n, wg, bg, LAYER_NORM_EPS)
            leaves = (xg, wg, bg)
        else:
            y = F.rms_norm(xg, n, wg, RMS_NORM_EPS)
            leaves = (xg, wg)
        run = lambda: torch.autograd.grad(y, leaves, grad_outputs=dyt, retain_graph=True)
        return run, stack

    if impl == "onnxruntime":
        if op not in FORWARD_OPS:
            raise Unavailable("onnxruntime has no backward here (inference runtime)")
        sess = _onnx_session(op, inp.dtype, x.shape[-1], w, b, threads)
        y = np.zeros_like(x)
        binding = sess.io_binding()
        binding.bind_input("x", "cpu", 0, x.dtype, x.shape, x.ctypes.data)
        binding.bind_output("y", "cpu", 0, y.dtype, y.shape, y.ctypes.data)
        # keep the arrays the binding points into alive with the closure
        run = lambda: (sess.run_with_iobinding(binding), y, x)[1]
        stack.callback(lambda: binding.clear_binding_inputs())
        return run, stack

    if impl == "copy":
        if op not in FORWARD_OPS:
            raise Unavailable("copy is the floor of the forward ops only")
        return make_copy(x, np.zeros_like(x), threads), stack

    raise ValueError(f"unknown implementation {impl!r}")


def axis_stats(inp):
    """(mean, rstd) over axis 1 in float64, rounded to the dtype (what layer_norm(axis=1,
    return_stats=True) returns): the inputs of the axis-1 backward."""
    def make():
        _, mean, rstd = reference.layer_norm(inp.x, axis=1, eps=LAYER_NORM_EPS)
        return mean.astype(inp.dtype), rstd.astype(inp.dtype)
    return inp._cached(("axis1",), make)


def _make_axis_runner(impl, op, inp, threads, stack):
    """make_runner for LayerNorm over axis 1 of (N, C, H, W): fastnorm's column kernels,
    torch's permute + F.layer_norm (+ permute back to a contiguous NCHW result), the copy."""
    x, dy = inp.x, inp.dy
    w, b = inp.channel_params(1)
    C = x.shape[1]
    if impl in FASTNORM_IMPLS:
        stack.enter_context(fastnorm_isa(_impl_isa(impl)))
        if op == "layer_norm_axis1":
            y = np.zeros_like(x)
            run = lambda: fastnorm.layer_norm(x, w, b, axis=1, eps=LAYER_NORM_EPS, out=y,
                                              num_threads=threads)
        else:
            mean, rstd = axis_stats(inp)
            run = lambda: fastnorm.layer_norm_backward(dy, x, mean, rstd, w, axis=1,
                                                       num_threads=threads)
        return run, stack
    if impl == "torch":
        torch = _import("torch")
        F = torch.nn.functional
        stack.enter_context(torch_threads(threads))
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        if op == "layer_norm_axis1":
            stack.enter_context(torch.inference_mode())
            run = lambda: F.layer_norm(xt.permute(0, 2, 3, 1), (C,), wt, bt,
                                       LAYER_NORM_EPS).permute(0, 3, 1, 2).contiguous()
            return run, stack
        xg, wg, bg = (t.detach().requires_grad_() for t in (xt, wt, bt))
        y = F.layer_norm(xg.permute(0, 2, 3, 1), (C,), wg, bg, LAYER_NORM_EPS).permute(0, 3, 1, 2)
        dyt = torch.from_numpy(dy)
        run = lambda: torch.autograd.grad(y, (xg, wg, bg), grad_outputs=dyt, retain_graph=True)
        return run, stack
    if impl == "copy":
        if op != "layer_norm_axis1":
            raise Unavailable("copy is the floor of the forward ops only")
        return make_copy(x, np.zeros_like(x), threads), stack
    raise Unavailable(f"{impl} does not run {op}")


def _make_fused_runner(impl, op, inp, threads, stack):
    """make_runner for add_layer_norm: every runner returns (y, s)."""
    assert op == "add_layer_norm", op
    x, r, w, b = inp.x, inp.residual, inp.weight, inp.bias
    y, s = np.zeros_like(x), np.zeros_like(x)

    if impl in FASTNORM_IMPLS:
        stack.enter_context(fastnorm_isa(_impl_isa(impl)))
        run = lambda: fastnorm.add_layer_norm(x, r, w, b, eps=LAYER_NORM_EPS, out=y, sum_out=s,
                                              num_threads=threads)
        return run, stack

    if impl == UNFUSED_IMPL:
        stack.enter_context(fastnorm_isa("auto"))

        def run():
            np.add(x, r, out=s)
            fastnorm.layer_norm(s, w, b, eps=LAYER_NORM_EPS, out=y, num_threads=threads)
            return y, s
        return run, stack

    if impl == "numpy":
        return (lambda: numpy_add_layer_norm(x, r, w, b, LAYER_NORM_EPS, y, s)), stack

    if impl == "torch":
        torch = _import("torch")
        F = torch.nn.functional
        stack.enter_context(torch_threads(threads))
        stack.enter_context(torch.inference_mode())
        n = (x.shape[-1],)
        xt, rt = torch.from_numpy(x), torch.from_numpy(r)
        wt, bt = torch.from_numpy(w), torch.from_numpy(b)

        def run():
            st = xt + rt
            return F.layer_norm(st, n, wt, bt, LAYER_NORM_EPS), st
        return run, stack

    if impl == "onnxruntime":
        sess = _onnx_session(op, inp.dtype, x.shape[-1], w, b, threads)
        binding = sess.io_binding()
        for name, arr in (("x", x), ("skip", r)):
            binding.bind_input(name, "cpu", 0, arr.dtype, arr.shape, arr.ctypes.data)
        for name, arr in (("y", y), ("s", s)):
            binding.bind_output(name, "cpu", 0, arr.dtype, arr.shape, arr.ctypes.data)
        run = lambda: (sess.run_with_iobinding(binding), (y, s), x, r)[1]
        try:
            run()  # a contrib op may build and still refuse these shapes at run time
        except Exception as exc:
            ort = _import("onnxruntime")
            raise Unavailable(f"onnxruntime {ort.__version__} cannot run SkipLayerNormalization: "
                              f"{str(exc).splitlines()[0][:200]}") from exc
        stack.callback(lambda: binding.clear_binding_inputs())
        return run, stack

    if impl == "copy":
        # the fused op's bytes: two arrays read (x, residual), two written
        return make_copy(x, s, threads, x2=r, y2=y), stack

    raise ValueError(f"unknown implementation {impl!r}")


def _make_ada_runner(impl, op, inp, threads, stack):
    """make_runner for ada_layer_norm: every runner returns y."""
    assert op == "ada_layer_norm", op
    x = inp.x
    shift, scale = inp.ada
    y = np.zeros_like(x)

    if impl in FASTNORM_IMPLS:
        stack.enter_context(fastnorm_isa(_impl_isa(impl)))
        run = lambda: fastnorm.ada_layer_norm(x, shift, scale, eps=ADA_NORM_EPS, out=y,
                                              num_threads=threads)
        return run, stack

    if impl == "numpy":
        return (lambda: numpy_ada_layer_norm(x, shift, scale, ADA_NORM_EPS, y)), stack

    if impl == "torch":
        torch = _import("torch")
        F = torch.nn.functional
        stack.enter_context(torch_threads(threads))
        stack.enter_context(torch.inference_mode())
        n = (x.shape[-1],)
        mid = (slice(None),) + (None,) * (x.ndim - 2)
        xt, sht, sct = torch.from_numpy(x), torch.from_numpy(shift), torch.from_numpy(scale)
        run = lambda: F.layer_norm(xt, n, eps=ADA_NORM_EPS) * (1 + sct[mid]) + sht[mid]
        return run, stack

    if impl == "onnxruntime":
        raise Unavailable("ONNX has no AdaLN node")

    if impl == "copy":
        # rows, not samples, split over the threads: x and y as (N*T, D)
        copy = make_copy(x.reshape(-1, x.shape[-1]), y.reshape(-1, x.shape[-1]), threads)
        return (lambda: (copy(), y)[1]), stack

    raise ValueError(f"unknown implementation {impl!r}")


def _make_channel_runner(impl, op, inp, threads, stack):
    """make_runner for the channel normalizers. Forward runners return y
    (batch_norm_train: (y, running_mean, running_var), the running statistics it
    updated); backward runners (dx, dweight, dbias). A runner whose outputs are
    not in x's layout (torch's channels-last tensors, seen as N, C, H, W) carries
    ``run.post``, applied by the check, untimed, to bring them back."""
    x, dy = inp.x, inp.dy
    axis = channel_axis(op)
    base = base_op(op)
    w, b = inp.channel_params(axis)
    eps, G = CHANNEL_NORM_EPS, GN_GROUPS

    def running_copies():  # every runner updates (or may update) its own
        return tuple(a.copy() for a in inp.running(axis))

    if impl in FASTNORM_IMPLS:
        stack.enter_context(fastnorm_isa(_impl_isa(impl)))
        y = np.zeros_like(x)
        if base == "group_norm":
            run = lambda: fastnorm.group_norm(x, G, w, b, eps=eps, axis=axis, out=y,
                                              num_threads=threads)
        elif base == "group_norm_backward":
            mean, rstd = inp.group_stats(G, axis)
            run = lambda: fastnorm.group_norm_backward(dy, x, mean, rstd, w, b, axis=axis,
                                                       num_threads=threads)
        elif base == "instance_norm":
            run = lambda: fastnorm.instance_norm(x, w, b, eps=eps, axis=axis, out=y,
                                                 num_threads=threads)
        elif base == "batch_norm_train":
            rm, rv = running_copies()

            def run():
                fastnorm.batch_norm(x, rm, rv, w, b, training=True, momentum=BN_MOMENTUM,
                                    eps=eps, axis=axis, out=y, num_threads=threads)
                return y, rm, rv
        elif base == "batch_norm_eval":
            rm, rv = running_copies()
            run = lambda: fastnorm.batch_norm(x, rm, rv, w, b, training=False, eps=eps, axis=axis,
                                              out=y, num_threads=threads)
        elif base == "batch_norm_backward":
            mean, rstd = inp.bn_stats(axis)
            run = lambda: fastnorm.batch_norm_backward(dy, x, mean, rstd, w, b, training=True,
                                                       axis=axis, num_threads=threads)
        elif base == "instance_norm_backward":
            mean, rstd = inp.group_stats(x.shape[axis], axis)  # (N, C): instance statistics
            run = lambda: fastnorm.instance_norm_backward(dy, x, mean, rstd, w, b, axis=axis,
                                                          num_threads=threads)
        elif base == "batch_norm_eval_backward":
            mean, rstd = inp.running_stats(axis)
            run = lambda: fastnorm.batch_norm_backward(dy, x, mean, rstd, w, b, training=False,
                                                       axis=axis, num_threads=threads)
        elif base in ("switch_norm", "switch_norm_backward"):
            mw, vw = inp.switch_logits
            if base == "switch_norm":
                run = lambda: fastnorm.switch_norm(x, w, b, mw, vw, eps=eps, axis=axis, out=y,
                                                   num_threads=threads)
            else:
                stats = inp.switch_stats(axis)
                run = lambda: fastnorm.switch_norm_backward(dy, x, stats, w, b, mw, vw,
                                                            axis=axis, num_threads=threads)
        elif base == "batch_layer_norm":
            run = lambda: fastnorm.batch_layer_norm(x, w, b, eps=BLN_EPS, out=y,
                                                    num_threads=threads)
        elif base == "batch_layer_norm_backward":
            stats = inp.bln_stats()
            run = lambda: fastnorm.batch_layer_norm_backward(dy, x, stats, w, b,
                                                             num_threads=threads)
        elif base in WN_ALL_OPS:  # v = x, g = w (one per output channel); allocates w / dv, dg
            stack.enter_context(fastnorm_threads(threads))
            if base == "weight_norm":
                run = lambda: fastnorm.weight_norm(x, w, axis=axis)
            else:
                run = lambda: fastnorm.weight_norm_backward(dy, x, w, axis=axis)
        else:
            raise ValueError(f"unknown op {op!r}")
        return run, stack

    if impl == "torch":
        torch = _import("torch")
        F = torch.nn.functional
        stack.enter_context(torch_threads(threads))
        nd = x.ndim
        if op in NHWC_OPS:
            # channels-last: the (N, H, W, C) arrays seen as (N, C, H, W) tensors whose
            # memory is channels_last, as a PyTorch user's would be; outputs come back
            # in that layout and are seen as (N, H, W, C) again for the check
            to_nchw = (0, nd - 1) + tuple(range(1, nd - 1))
            to_nhwc = (0,) + tuple(range(2, nd)) + (1,)
            view = lambda a: torch.from_numpy(a).permute(*to_nchw)
            post = lambda outs: tuple(o.permute(*to_nhwc) if o.ndim == nd else o for o in outs)
        else:
            view, post = torch.from_numpy, None
        xt, wt, bt = view(x), torch.from_numpy(w), torch.from_numpy(b)
        if base.startswith("batch_norm_"):
            # fresh running tensors: training-mode batch_norm updates them in place
            rmt, rvt = (torch.from_numpy(a) for a in running_copies())
        if base in SN_OPS + SN_BACKWARD_OPS:
            mwt, vwt = (torch.from_numpy(a) for a in inp.switch_logits)
        if base in WN_ALL_OPS:
            # g as torch.nn.utils.weight_norm keeps it, (out, 1, ...)
            wt = wt.reshape((-1,) + (1,) * (nd - 1))
            if base == "weight_norm_backward":  # dg flattened (untimed) like fastnorm's (out,)
                post = lambda outs: (outs[0], outs[1].reshape(-1))
        if op in FORWARD_OPS:
            stack.enter_context(torch.inference_mode())
            if base == "group_norm":
                run = lambda: F.group_norm(xt, G, wt, bt, eps)
            elif base == "instance_norm":
                run = lambda: F.instance_norm(xt, weight=wt, bias=bt, eps=eps)
            elif base == "batch_norm_train":
                run = lambda: (F.batch_norm(xt, rmt, rvt, wt, bt, training=True,
                                            momentum=BN_MOMENTUM, eps=eps), rmt, rvt)
            elif base == "batch_norm_eval":
                run = lambda: F.batch_norm(xt, rmt, rvt, wt, bt, training=False, eps=eps)
            elif base == "switch_norm":
                run = lambda: torch_switch_norm(torch, xt, wt, bt, mwt, vwt, eps)
            elif base == "batch_layer_norm":
                run = lambda: torch_batch_layer_norm(torch, xt, wt, bt, BLN_EPS)
            elif base == "weight_norm":
                run = lambda: torch._weight_norm(xt, wt, 0)
            else:
                raise ValueError(f"unknown op {op!r}")
        else:
            # the forward graph, built once (untimed); each call runs autograd through it
            dyt = view(dy)
            xg, wg, bg = (t.detach().requires_grad_() for t in (xt, wt, bt))
            leaves = (xg, wg, bg)
            if base == "group_norm_backward":
                yg = F.group_norm(xg, G, wg, bg, eps)
            elif base == "instance_norm_backward":
                yg = F.instance_norm(xg, weight=wg, bias=bg, eps=eps)
            elif base == "batch_norm_backward":
                yg = F.batch_norm(xg, rmt, rvt, wg, bg, training=True, momentum=BN_MOMENTUM,
                                  eps=eps)
            elif base == "batch_norm_eval_backward":
                yg = F.batch_norm(xg, rmt, rvt, wg, bg, training=False, eps=eps)
            elif base == "switch_norm_backward":
                mwg, vwg = (t.detach().requires_grad_() for t in (mwt, vwt))
                leaves = (xg, wg, bg, mwg, vwg)
                yg = torch_switch_norm(torch, xg, wg, bg, mwg, vwg, eps)
            elif base == "batch_layer_norm_backward":
                yg = torch_batch_layer_norm(torch, xg, wg, bg, BLN_EPS)
            elif base == "weight_norm_backward":
                leaves = (xg, wg)
                yg = torch._weight_norm(xg, wg, 0)
            else:
                raise ValueError(f"unknown op {op!r}")
            run = lambda: torch.autograd.grad(yg, leaves, grad_outputs=dyt, retain_graph=True)
        if post is not None:
            run.post = post
        return run, stack

    if impl == "onnxruntime":
        if op not in ONNX_CHANNEL_OPS:
            raise Unavailable(f"no one-node ONNX model of {op}")
        running = inp.running(axis) if base == "batch_norm_eval" else None
        sess = _onnx_session(op, inp.dtype, None, None, None, threads, build=lambda: (
            _onnx_channel_model(op, inp.dtype, x.shape, w, b, running)))
        y = np.zeros_like(x)
        binding = sess.io_binding()
        binding.bind_input("x", "cpu", 0, x.dtype, x.shape, x.ctypes.data)
        binding.bind_output("y", "cpu", 0, y.dtype, y.shape, y.ctypes.data)
        run = lambda: (sess.run_with_iobinding(binding), y, x)[1]
        try:
            run()  # a kernel may exist for the node and still refuse this dtype at run time
        except Exception as exc:
            ort = _import("onnxruntime")
            raise Unavailable(f"onnxruntime {ort.__version__} cannot run {op}: "
                              f"{str(exc).splitlines()[0][:200]}") from exc
        stack.callback(lambda: binding.clear_binding_inputs())
        return run, stack

    if impl == "copy":
        if op not in FORWARD_OPS:
            raise Unavailable("copy is the floor of the forward ops only")
        return make_copy(x, np.zeros_like(x), threads), stack

    raise ValueError(f"unknown implementation {impl!r}")


# --------------------------------------------------------------------------
# Stall gate: wait out the phases in which multi-threaded calls stall
# --------------------------------------------------------------------------

class StallProbe:
    """Detects the phases in which a multi-threaded call stalls for milliseconds.

    On some virtual machines a thread that spin-waits (an OpenMP barrier,
    onnxruntime's pool) is descheduled by the hypervisor for a scheduler tick
    or two (pause-loop exiting): a 20 us call then takes 8 ms, for seconds at
    a time, for every library that spins. The probe is a small fastnorm call
    (below the work of any timed benchmark) with the given thread count: it is
    stalled when it takes STALL_FACTOR times its 1-thread time and over 1 ms.
    """

    STALL_FACTOR = 10.0

    def __init__(self):
        self.x = np.random.default_rng(2).standard_normal((256, 768), dtype=np.float32)
        self.y = np.empty_like(self.x)
        self.serial = min(self.time(1) for _ in range(3))

    def time(self, threads, calls=7):
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            fastnorm.layer_norm(self.x, out=self.y, num_threads=threads)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def stalled(self, threads):
        t = self.time(threads)
        return t > max(1e-3, self.STALL_FACTOR * self.serial)

    def wait(self, threads, budget_s, step_s=0.25):
        """Sleep until the probe is not stalled, at most budget_s; returns (waited_s, still_stalled)."""
        t0 = time.perf_counter()
        while self.stalled(threads):
            waited = time.perf_counter() - t0
            if waited >= budget_s:
                return waited, True
            time.sleep(step_s)
        return time.perf_counter() - t0, False


# --------------------------------------------------------------------------
# Sanity check: every implementation once against fastnorm.reference
# --------------------------------------------------------------------------

def _as_numpy(a):
    return a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)


def _expected_channel(op, inp):
    x, dy = inp.x, inp.dy
    axis, base = channel_axis(op), base_op(op)
    w, b = inp.channel_params(axis)
    eps = CHANNEL_NORM_EPS
    if base == "group_norm":
        return (reference.group_norm(x, GN_GROUPS, w, b, eps=eps, axis=axis)[0],)
    if base == "group_norm_backward":
        mean, rstd = inp.group_stats(GN_GROUPS, axis)
        return reference.group_norm_backward(dy, x, mean, rstd, w, axis=axis)
    if base == "instance_norm":
        return (reference.instance_norm(x, w, b, eps=eps, axis=axis)[0],)
    if base in ("batch_norm_train", "batch_norm_eval"):
        rm, rv = inp.running(axis)
        training = base == "batch_norm_train"
        y, _, _, new_rm, new_rv = reference.batch_norm(x, rm, rv, w, b, training=training,
                                                       momentum=BN_MOMENTUM, eps=eps, axis=axis)
        # training: the running statistics after exactly one call (the check makes one)
        return (y, new_rm, new_rv) if training else (y,)
    if base == "batch_norm_backward":
        mean, rstd = inp.bn_stats(axis)
        return reference.batch_norm_backward(dy, x, mean, rstd, w, training=True, axis=axis)
    if base == "batch_norm_eval_backward":
        mean, rstd = inp.running_stats(axis)
        return reference.batch_norm_backward(dy, x, mean, rstd, w, training=False, axis=axis)
    if base == "instance_norm_backward":  # group norm's with one group per channel
        mean, rstd = inp.group_stats(x.shape[axis], axis)
        return reference.group_norm_backward(dy, x, mean, rstd, w, axis=axis)
    if base == "switch_norm":
        return (reference.switch_norm(x, w, b, *inp.switch_logits, eps=eps, axis=axis),)
    if base == "batch_layer_norm":
        return (reference.batch_layer_norm(x, w, b, eps=BLN_EPS),)
    if base == "weight_norm":
        return (reference.weight_norm(x, w, axis=axis),)
    if base == "weight_norm_backward":
        return reference.weight_norm_backward(dy, x, w, axis=axis)
    if base in SN_BACKWARD_OPS + BLN_BACKWARD_OPS:
        return _fastnorm64_backward(op, inp)
    raise ValueError(f"unknown op {op!r}")


def _fastnorm64_backward(op, inp):
    """The expected gradients of switch_norm and batch_layer_norm, which have no float64
    formula in fastnorm.reference: fastnorm's own backward run in float64 on the same
    values (x, dy, parameters and statistics cast up), with the default kernels; the
    package's tests check it against finite differences and torch. So a peer is checked
    against fastnorm, and fastnorm's float32 kernels against its float64 ones."""
    axis = channel_axis(op)
    x, dy = inp.x.astype(np.float64), inp.dy.astype(np.float64)
    w, b = (p.astype(np.float64) for p in inp.channel_params(axis))
    if op == "switch_norm_backward":
        mw, vw = (p.astype(np.float64) for p in inp.switch_logits)
        stats = switch_stats_of(x, axis, mw, vw, CHANNEL_NORM_EPS)
        return fastnorm.switch_norm_backward(dy, x, stats, w, b, mw, vw, axis=axis)
    return fastnorm.batch_layer_norm_backward(dy, x, bln_stats_of(x, BLN_EPS), w, b)


def output_names(op):
    if op in FUSED_OPS:
        return ("y", "s")
    if op == "batch_norm_train":
        return ("y", "running_mean", "running_var")
    if op == "weight_norm":
        return ("w",)
    if op == "weight_norm_backward":
        return ("dv", "dg")
    if op == "switch_norm_backward":
        return ("dx", "dweight", "dbias") + SN_LOGIT_GRADS
    return ("y",) if op in FORWARD_OPS else ("dx", "dweight", "dbias")


# switch_norm_backward's gradients of the mixing logits: fastnorm returns them in float64
# whatever x's dtype, so the check takes float64 for them too
SN_LOGIT_GRADS = ("dmean_weight", "dvar_weight")


def _expected(op, inp):
    if op in CHANNEL_OPS:
        return _expected_channel(op, inp)
    if op in AXIS_OPS:
        w, b = inp.channel_params(1)
        if op == "layer_norm_axis1":
            return (reference.layer_norm(inp.x, w, b, axis=1, eps=LAYER_NORM_EPS)[0],)
        mean, rstd = axis_stats(inp)
        return reference.layer_norm_backward(inp.dy, inp.x, mean, rstd, w, axis=1)
    x, dy, w, b = inp.x, inp.dy, inp.weight, inp.bias
    if op == "layer_norm":
        return (reference.layer_norm(x, w, b, eps=LAYER_NORM_EPS)[0],)
    if op == "add_layer_norm":
        y, s, _, _ = reference.add_layer_norm(x, inp.residual, w, b, eps=LAYER_NORM_EPS)
        return y, s
    if op == "ada_layer_norm":
        shift, scale = inp.ada
        return (reference.ada_layer_norm(x, shift, scale, eps=ADA_NORM_EPS)[0],)
    if op == "rms_norm":
        return (reference.rms_norm(x, w, eps=RMS_NORM_EPS)[0],)
    if op == "layer_norm_backward":
        return reference.layer_norm_backward(dy, x, inp.ln_mean, inp.ln_rstd, w)
    return reference.rms_norm_backward(dy, x, inp.rms_rstd, w)


def check(impl, op, dtype, threads, shape=None):
    """Run one implementation once on `shape` (default check_shape(op)) and compare
    with fastnorm.reference.

    Returns None when it agrees, else a message. Raises Unavailable.
    Error measure: max |got - ref| / max(1, max |ref|) per output.
    """
    inp = Inputs(check_shape(op) if shape is None else shape, dtype, seed=1)
    run, ctx = make_runner(impl, op, inp, threads)
    with ctx:
        got = run()
        got = (got,) if not isinstance(got, (tuple, list)) else tuple(got)
        post = getattr(run, "post", None)
        if post is not None:  # back to x's layout (torch's channels-last outputs)
            got = post(got)
        got = tuple(_as_numpy(g) for g in got)
    if impl == "copy" and op in ROW_BACKWARD_OPS:
        want = np.bitwise_xor(inp.x.view(np.uint8), inp.dy.view(np.uint8))
        ok = len(got) == 1 and np.array_equal(got[0].view(np.uint8), want)
        return None if ok else "the read-two-write-one floor did not give x ^ dy"
    if impl == "copy":
        sources = (inp.x, inp.residual) if op in FUSED_OPS else (inp.x,)
        if len(got) != len(sources) or not all(np.array_equal(g, src)
                                               for g, src in zip(got, sources)):
            return "copy did not reproduce its inputs"
        return None
    want = _expected(op, inp)
    names = output_names(op)
    tol = 1e-9 if np.dtype(dtype) == np.float64 else (2e-5 if op in FORWARD_OPS else 2e-4)
    for name, g, r in zip(names, got, want):
        if g.shape != r.shape:
            return f"{name}: shape {g.shape}, expected {r.shape}"
        if g.dtype != np.dtype(dtype) and not (name in SN_LOGIT_GRADS and g.dtype == np.float64):
            return f"{name}: dtype {g.dtype}, expected {dtype}"
        err = float(np.max(np.abs(g.astype(np.float64) - r)) / max(1.0, np.max(np.abs(r))))
        if not err <= tol:
            return f"{name}: relative error {err:.3g} > {tol:g}"
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    return None
