"""fastnorm inside PyTorch: operators, ``torch.nn`` modules and a model swap.

Every normalizer is a PyTorch operator (``torch.ops.fastnorm.<name>``) made
with ``torch.library.custom_op``: its autograd formula calls fastnorm's
explicit backward (itself an operator, ``torch.ops.fastnorm.<name>_backward``),
and a fake implementation gives ``torch.compile`` and ``torch.export`` the
shapes and dtypes of the results without running the kernels.

The functions of this module call those operators with the arguments of
``torch.nn.functional``. In plain eager code (no ``torch.compile`` or
``torch.export`` tracing, no functorch transform, no dispatch mode, plain
tensors) they skip PyTorch's operator dispatch, which costs tens of
microseconds per call, and run the operator's own implementation directly,
under a ``torch.autograd.Function`` with the same backward when a gradient is
needed; under the profiler the call is recorded with the operator's name. The
results are the same bits either way; the classes (:class:`LayerNorm`, :class:`RMSNorm`,
:class:`GroupNorm`, :class:`BatchNorm1d` ...) are the ``torch.nn`` modules
with a forward that calls them; :func:`replace_norms` swaps the norm modules
of a model for those classes in place.

Tensors and NumPy arrays share memory: a contiguous CPU tensor is handed to
the kernels as ``tensor.numpy()`` (bfloat16 as an ``ml_dtypes.bfloat16``
view of its bits) and results come back through ``torch.from_numpy``,
without copies. A non-contiguous input is made contiguous first (one copy by
PyTorch); results are always contiguous.
Only CPU tensors of dtype float32, float64, float16 or bfloat16 are
accepted: any other tensor raises an error that names the argument. The
kernels use ``torch.get_num_threads()`` threads, as PyTorch's own operators.

PyTorch is an optional dependency: ``pip install "fastnorm-cpu[torch]"``.
"""
from collections import namedtuple
from typing import List, Optional

import numpy as np

try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'fastnorm.torch needs PyTorch (2.4 or later): pip install "fastnorm-cpu[torch]"'
    ) from exc

if not hasattr(torch, "library") or not hasattr(torch.library, "custom_op"):
    raise ImportError(
        f"fastnorm.torch needs PyTorch 2.4 or later (torch.library.custom_op), found "
        f'torch {torch.__version__}: pip install "fastnorm-cpu[torch]"'
    )

from torch import Tensor, nn

import fastnorm as _fn

__all__ = [
    "layer_norm",
    "rms_norm",
    "add_layer_norm",
    "add_rms_norm",
    "ada_layer_norm",
    "group_norm",
    "instance_norm",
    "batch_norm",
    "weight_norm",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "replace_norms",
    "Replacement",
]


# --------------------------------------------------------------------------
# Tensors to arrays and back
# --------------------------------------------------------------------------

_DTYPES = frozenset((torch.float32, torch.float64, torch.float16, torch.bfloat16))
_BF16 = None  # ml_dtypes.bfloat16, imported on the first bfloat16 tensor


def _bfloat16():
    global _BF16
    if _BF16 is None:
        try:
            import ml_dtypes
        except ImportError as exc:
            raise ImportError(
                'bfloat16 tensors need ml_dtypes: pip install "fastnorm-cpu[torch]"'
            ) from exc
        _BF16 = np.dtype(ml_dtypes.bfloat16)
    return _BF16


def _check_tensor(t, name):
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_cpu:
        raise ValueError(
            f"{name} is on device {t.device}: fastnorm computes on the CPU only "
            f"(move it with .cpu(), or use torch.nn.functional on that device)"
        )
    if t.dtype not in _DTYPES:
        raise TypeError(
            f"{name} must have dtype float32, float64, float16 or bfloat16, got {t.dtype}"
        )
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")


def _array(t, name):
    """The CPU tensor t as a NumPy array over the same memory, or over a
    contiguous copy when t is not contiguous (None stays None).

    fastnorm takes strided arrays too, but reads them through slower general
    paths; PyTorch's own copy is quicker (gradients arriving from a sum or a
    transpose are often expanded or permuted views)."""
    if t is None:
        return None
    _check_tensor(t, name)
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype is torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bfloat16())
    return t.numpy()


def _tensor(a):
    """A NumPy result as a contiguous CPU tensor over the same memory."""
    a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
    if a.dtype.itemsize == 2 and a.dtype.kind != "f":  # bfloat16 bits
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _calc(dtype):
    """The dtype of statistics for data of this dtype: its own, float32 for 16-bit."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _threads():
    return torch.get_num_threads()


def _empty(shape, like, dtype=None):
    """A contiguous tensor of this shape on like's device (the fake results)."""
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device)


def _grad_dtype(param, x):
    """The dtype fastnorm gives a parameter's gradient: the parameter's own,
    the computing dtype when there is no parameter."""
    return param.dtype if param is not None else _calc(x.dtype)


def _none_if_absent(grad, param):
    return grad if param is not None else None


def _trailing(x, normalized_shape, name="normalized_shape"):
    """The axes of x that normalized_shape names (its last len(...) axes)."""
    shape = tuple(normalized_shape)
    k = len(shape)
    if k == 0 or k > x.dim() or x.shape[x.dim() - k:] != shape:
        raise ValueError(
            f"{name} {list(shape)} must be the trailing dimensions of x of shape "
            f"{list(x.shape)}"
        )
    return tuple(range(-k, 0))


def _axes(k):
    return tuple(range(-k, 0))


# --------------------------------------------------------------------------
# Eager calls without the operator dispatch
# --------------------------------------------------------------------------

_EAGER: dict = {}  # operator -> its torch.autograd.Function for eager calls
_PLAIN = (Tensor, torch.nn.Parameter)


def _register_autograd(op, grad, setup):
    """op.register_autograd(grad, setup), and the same formula as an
    autograd.Function for eager calls (see _call)."""
    op.register_autograd(grad, setup_context=setup)
    impl = op._init_fn

    # forward(ctx, ...): a Function with a separate setup_context binds its
    # arguments to forward's signature at every call, which costs more than a
    # small kernel
    def forward(ctx, *args):
        output = impl(*args)
        setup(ctx, args, output)
        return output

    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):  # fastnorm's backward has no gradient of its own
        return grad(ctx, *grads)

    _EAGER[op] = type(f"{op._name}_eager", (torch.autograd.Function,),
                      {"forward": staticmethod(forward), "backward": staticmethod(backward)})


def _eager(args):
    """Whether a call may skip the operator dispatch: plain eager code on
    plain tensors, where the operator would only call its implementation."""
    if (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch._C._are_functorch_transforms_active()
            or torch._C._len_torch_dispatch_stack() > 0):
        return False
    return all(type(a) in _PLAIN for a in args if isinstance(a, Tensor))


def _call(op, *args):
    """op(*args): directly in eager code (through its autograd.Function when a
    gradient is needed), through the operator dispatch otherwise."""
    if not _eager(args):
        return op(*args)
    grad = torch.is_grad_enabled() and any(
        isinstance(a, Tensor) and a.requires_grad for a in args)
    run = _EAGER[op].apply if grad and op in _EAGER else op._init_fn
    if torch.autograd._profiler_enabled():
        with torch.profiler.record_function(op._qualname):
            return run(*args)
    return run(*args)


# --------------------------------------------------------------------------
# LayerNorm and RMSNorm
# --------------------------------------------------------------------------

@torch.library.custom_op("fastnorm::layer_norm", mutates_args=())
def _layer_norm_op(x: Tensor, normalized_shape: List[int], weight: Optional[Tensor],
                   bias: Optional[Tensor], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    axis = _trailing(x, normalized_shape)
    y, mean, rstd = _fn.layer_norm(
        _array(x, "x"), _array(weight, "weight"), _array(bias, "bias"), axis=axis, eps=eps,
        return_stats=True, num_threads=_threads())
    return _tensor(y), _tensor(mean), _tensor(rstd)


@_layer_norm_op.register_fake
def _(x, normalized_shape, weight, bias, eps):
    _trailing(x, normalized_shape)
    stats = x.shape[:x.dim() - len(normalized_shape)]
    return _empty(x.shape, x), _empty(stats, x, _calc(x.dtype)), _empty(stats, x, _calc(x.dtype))


@torch.library.custom_op("fastnorm::layer_norm_backward", mutates_args=())
def _layer_norm_backward_op(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                            weight: Optional[Tensor],
                            normalized_ndim: int) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = _fn.layer_norm_backward(
        _array(dy, "dy"), _array(x, "x"), _array(mean, "mean"), _array(rstd, "rstd"),
        _array(weight, "weight"), axis=_axes(normalized_ndim), num_threads=_threads())
    return _tensor(dx), _tensor(dw), _tensor(db)


@_layer_norm_backward_op.register_fake
def _(dy, x, mean, rstd, weight, normalized_ndim):
    nshape = x.shape[x.dim() - normalized_ndim:]
    gdt = _grad_dtype(weight, x)
    return _empty(x.shape, x), _empty(nshape, x, gdt), _empty(nshape, x, gdt)


def _layer_norm_setup(ctx, inputs, output):
    x, normalized_shape, weight, bias, _ = inputs
    _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(x, weight, mean, rstd)
    ctx.normalized_ndim = len(normalized_shape)
    ctx.has_bias = bias is not None


def _layer_norm_grad(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = _call(_layer_norm_backward_op, dy, x, mean, rstd, weight, ctx.normalized_ndim)
    return dx, None, _none_if_absent(dw, weight), db if ctx.has_bias else None, None


_register_autograd(_layer_norm_op, _layer_norm_grad, _layer_norm_setup)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.layer_norm`` on fastnorm's kernels (op ``fastnorm::layer_norm``)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return _call(_layer_norm_op, x, list(normalized_shape), weight, bias, float(eps))[0]


@torch.library.custom_op("fastnorm::rms_norm", mutates_args=())
def _rms_norm_op(x: Tensor, normalized_shape: List[int], weight: Optional[Tensor],
                 eps: Optional[float]) -> tuple[Tensor, Tensor]:
    axis = _trailing(x, normalized_shape)
    y, rstd = _fn.rms_norm(_array(x, "x"), _array(weight, "weight"), axis=axis, eps=eps,
                           return_stats=True, num_threads=_threads())
    return _tensor(y), _tensor(rstd)


@_rms_norm_op.register_fake
def _(x, normalized_shape, weight, eps):
    _trailing(x, normalized_shape)
    stats = x.shape[:x.dim() - len(normalized_shape)]
    return _empty(x.shape, x), _empty(stats, x, _calc(x.dtype))


@torch.library.custom_op("fastnorm::rms_norm_backward", mutates_args=())
def _rms_norm_backward_op(dy: Tensor, x: Tensor, rstd: Tensor, weight: Optional[Tensor],
                          normalized_ndim: int) -> tuple[Tensor, Tensor]:
    dx, dw = _fn.rms_norm_backward(
        _array(dy, "dy"), _array(x, "x"), _array(rstd, "rstd"), _array(weight, "weight"),
        axis=_axes(normalized_ndim), num_threads=_threads())
    return _tensor(dx), _tensor(dw)


@_rms_norm_backward_op.register_fake
def _(dy, x, rstd, weight, normalized_ndim):
    nshape = x.shape[x.dim() - normalized_ndim:]
    return _empty(x.shape, x), _empty(nshape, x, _grad_dtype(weight, x))


def _rms_norm_setup(ctx, inputs, output):
    x, normalized_shape, weight, _ = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(x, weight, output[1])
    ctx.normalized_ndim = len(normalized_shape)


def _rms_norm_grad(ctx, dy, _drstd):
    x, weight, rstd = ctx.saved_tensors
    dx, dw = _call(_rms_norm_backward_op, dy, x, rstd, weight, ctx.normalized_ndim)
    return dx, None, _none_if_absent(dw, weight), None


_register_autograd(_rms_norm_op, _rms_norm_grad, _rms_norm_setup)


def rms_norm(x, normalized_shape, weight=None, eps=None):
    """``torch.nn.functional.rms_norm`` on fastnorm's kernels (op ``fastnorm::rms_norm``).

    ``eps=None`` is the machine epsilon of the computing dtype (float32's for
    16-bit x)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    return _call(_rms_norm_op, x, list(normalized_shape), weight,
                        None if eps is None else float(eps))[0]


# --------------------------------------------------------------------------
# Residual add fused with LayerNorm / RMSNorm
# --------------------------------------------------------------------------

@torch.library.custom_op("fastnorm::add_layer_norm", mutates_args=())
def _add_layer_norm_op(x: Tensor, residual: Tensor, normalized_shape: List[int],
                       weight: Optional[Tensor], bias: Optional[Tensor],
                       residual_bias: Optional[Tensor],
                       eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    axis = _trailing(x, normalized_shape)
    y, s, mean, rstd = _fn.add_layer_norm(
        _array(x, "x"), _array(residual, "residual"), _array(weight, "weight"),
        _array(bias, "bias"), residual_bias=_array(residual_bias, "residual_bias"), axis=axis,
        eps=eps, return_stats=True, num_threads=_threads())
    return _tensor(y), _tensor(s), _tensor(mean), _tensor(rstd)


@_add_layer_norm_op.register_fake
def _(x, residual, normalized_shape, weight, bias, residual_bias, eps):
    _trailing(x, normalized_shape)
    stats = x.shape[:x.dim() - len(normalized_shape)]
    calc = _calc(x.dtype)
    return (_empty(x.shape, x), _empty(x.shape, x), _empty(stats, x, calc),
            _empty(stats, x, calc))


@torch.library.custom_op("fastnorm::add_layer_norm_backward", mutates_args=())
def _add_layer_norm_backward_op(
        dy: Tensor, ds: Optional[Tensor], s: Tensor, mean: Tensor, rstd: Tensor,
        weight: Optional[Tensor],
        normalized_ndim: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    dsum, dw, db, drb = _fn.add_layer_norm_backward(
        _array(dy, "dy"), _array(s, "s"), _array(mean, "mean"), _array(rstd, "rstd"),
        _array(weight, "weight"), ds=_array(ds, "ds"), axis=_axes(normalized_ndim),
        num_threads=_threads())
    return _tensor(dsum), _tensor(dw), _tensor(db), _tensor(drb)


@_add_layer_norm_backward_op.register_fake
def _(dy, ds, s, mean, rstd, weight, normalized_ndim):
    nshape = s.shape[s.dim() - normalized_ndim:]
    gdt = _grad_dtype(weight, s)
    return (_empty(s.shape, s), _empty(nshape, s, gdt), _empty(nshape, s, gdt),
            _empty(nshape, s, _calc(s.dtype)))


def _add_layer_norm_setup(ctx, inputs, output):
    _, _, normalized_shape, weight, bias, residual_bias, _ = inputs
    _, s, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(s, weight, mean, rstd, residual_bias)
    ctx.normalized_ndim = len(normalized_shape)
    ctx.has_bias = bias is not None


def _add_layer_norm_grad(ctx, dy, ds, _dmean, _drstd):
    s, weight, mean, rstd, residual_bias = ctx.saved_tensors
    dsum, dw, db, drb = _call(_add_layer_norm_backward_op, dy, ds, s, mean, rstd, weight,
                                                    ctx.normalized_ndim)
    if residual_bias is not None:
        drb = drb.to(residual_bias.dtype)
    return (dsum, dsum, None, _none_if_absent(dw, weight), db if ctx.has_bias else None,
            _none_if_absent(drb, residual_bias), None)


_register_autograd(_add_layer_norm_op, _add_layer_norm_grad, _add_layer_norm_setup)


def add_layer_norm(x, residual, normalized_shape, weight=None, bias=None, residual_bias=None,
                   eps=1e-5):
    """s = x + residual (+ residual_bias); y = layer_norm(s). Returns ``(y, s)``.

    One pass over memory (op ``fastnorm::add_layer_norm``); x and residual have
    the same shape and dtype; both get the gradient of s."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    y, s, _, _ = _call(_add_layer_norm_op, x, residual, list(normalized_shape), weight, bias,
                                    residual_bias, float(eps))
    return y, s


@torch.library.custom_op("fastnorm::add_rms_norm", mutates_args=())
def _add_rms_norm_op(x: Tensor, residual: Tensor, normalized_shape: List[int],
                     weight: Optional[Tensor], residual_bias: Optional[Tensor],
                     eps: Optional[float]) -> tuple[Tensor, Tensor, Tensor]:
    axis = _trailing(x, normalized_shape)
    y, s, rstd = _fn.add_rms_norm(
        _array(x, "x"), _array(residual, "residual"), _array(weight, "weight"),
        residual_bias=_array(residual_bias, "residual_bias"), axis=axis, eps=eps,
        return_stats=True, num_threads=_threads())
    return _tensor(y), _tensor(s), _tensor(rstd)


@_add_rms_norm_op.register_fake
def _(x, residual, normalized_shape, weight, residual_bias, eps):
    _trailing(x, normalized_shape)
    stats = x.shape[:x.dim() - len(normalized_shape)]
    return _empty(x.shape, x), _empty(x.shape, x), _empty(stats, x, _calc(x.dtype))


@torch.library.custom_op("fastnorm::add_rms_norm_backward", mutates_args=())
def _add_rms_norm_backward_op(dy: Tensor, ds: Optional[Tensor], s: Tensor, rstd: Tensor,
                              weight: Optional[Tensor],
                              normalized_ndim: int) -> tuple[Tensor, Tensor, Tensor]:
    dsum, dw, drb = _fn.add_rms_norm_backward(
        _array(dy, "dy"), _array(s, "s"), _array(rstd, "rstd"), _array(weight, "weight"),
        ds=_array(ds, "ds"), axis=_axes(normalized_ndim), num_threads=_threads())
    return _tensor(dsum), _tensor(dw), _tensor(drb)


@_add_rms_norm_backward_op.register_fake
def _(dy, ds, s, rstd, weight, normalized_ndim):
    nshape = s.shape[s.dim() - normalized_ndim:]
    return (_empty(s.shape, s), _empty(nshape, s, _grad_dtype(weight, s)),
            _empty(nshape, s, _calc(s.dtype)))


def _add_rms_norm_setup(ctx, inputs, output):
    _, _, normalized_shape, weight, residual_bias, _ = inputs
    _, s, rstd = output
    ctx.mark_non_differentiable(rstd)
    ctx.save_for_backward(s, weight, rstd, residual_bias)
    ctx.normalized_ndim = len(normalized_shape)


def _add_rms_norm_grad(ctx, dy, ds, _drstd):
    s, weight, rstd, residual_bias = ctx.saved_tensors
    dsum, dw, drb = _call(_add_rms_norm_backward_op, dy, ds, s, rstd, weight, ctx.normalized_ndim)
    if residual_bias is not None:
        drb = drb.to(residual_bias.dtype)
    return (dsum, dsum, None, _none_if_absent(dw, weight),
            _none_if_absent(drb, residual_bias), None)


_register_autograd(_add_rms_norm_op, _add_rms_norm_grad, _add_rms_norm_setup)


def add_rms_norm(x, residual, normalized_shape, weight=None, residual_bias=None, eps=None):
    """s = x + residual (+ residual_bias); y = rms_norm(s). Returns ``(y, s)``
    (op ``fastnorm::add_rms_norm``)."""
    if isinstance(normalized_shape, int):
        normalized_shape = (normalized_shape,)
    y, s, _ = _call(_add_rms_norm_op, x, residual, list(normalized_shape), weight, residual_bias,
                               None if eps is None else float(eps))
    return y, s


# --------------------------------------------------------------------------
# Adaptive LayerNorm
# --------------------------------------------------------------------------

@torch.library.custom_op("fastnorm::ada_layer_norm", mutates_args=())
def _ada_layer_norm_op(x: Tensor, shift: Tensor, scale: Tensor,
                       eps: float) -> tuple[Tensor, Tensor, Tensor]:
    y, mean, rstd = _fn.ada_layer_norm(
        _array(x, "x"), _array(shift, "shift"), _array(scale, "scale"), eps=eps,
        return_stats=True, num_threads=_threads())
    return _tensor(y), _tensor(mean), _tensor(rstd)


@_ada_layer_norm_op.register_fake
def _(x, shift, scale, eps):
    stats = x.shape[:-1]
    return _empty(x.shape, x), _empty(stats, x, _calc(x.dtype)), _empty(stats, x, _calc(x.dtype))


@torch.library.custom_op("fastnorm::ada_layer_norm_backward", mutates_args=())
def _ada_layer_norm_backward_op(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                                scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    dx, dshift, dscale = _fn.ada_layer_norm_backward(
        _array(dy, "dy"), _array(x, "x"), _array(mean, "mean"), _array(rstd, "rstd"),
        _array(scale, "scale"), num_threads=_threads())
    return _tensor(dx), _tensor(dshift), _tensor(dscale)


@_ada_layer_norm_backward_op.register_fake
def _(dy, x, mean, rstd, scale):
    return _empty(x.shape, x), _empty(scale.shape, scale), _empty(scale.shape, scale)


def _ada_layer_norm_setup(ctx, inputs, output):
    x, shift, scale, _ = inputs
    _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(x, scale, mean, rstd)
    ctx.shift_dtype = shift.dtype


def _ada_layer_norm_grad(ctx, dy, _dmean, _drstd):
    x, scale, mean, rstd = ctx.saved_tensors
    dx, dshift, dscale = _call(_ada_layer_norm_backward_op, dy, x, mean, rstd, scale)
    return dx, dshift.to(ctx.shift_dtype), dscale, None


_register_autograd(_ada_layer_norm_op, _ada_layer_norm_grad, _ada_layer_norm_setup)


def ada_layer_norm(x, shift, scale, eps=1e-6):
    """Adaptive LayerNorm: layer_norm(x) * (1 + scale[:, None]) + shift[:, None]
    for x of shape (N, T, D) or (N, D), shift and scale (N, D) (op
    ``fastnorm::ada_layer_norm``)."""
    return _call(_ada_layer_norm_op, x, shift, scale, float(eps))[0]


# --------------------------------------------------------------------------
# GroupNorm
# --------------------------------------------------------------------------

def _channel_grads(x, dx, dw, db):
    """A channel normalizer's (dx, dweight, dbias) as tensors. The kernels ran
    with a bias (_some_bias), so dbias is there; dweight of a forward without
    weight is zeros, for the operator's fixed result types."""
    if dw is None:
        assert db is not None
        dw = np.zeros(x.shape[1], dtype=db.dtype)
    return _tensor(dx), _tensor(dw), _tensor(db)


def _channel_grads_fake(x, weight):
    C = x.shape[1]
    return (_empty(x.shape, x), _empty((C,), x, _grad_dtype(weight, x)),
            _empty((C,), x, _calc(x.dtype)))


@torch.library.custom_op("fastnorm::group_norm", mutates_args=())
def _group_norm_op(x: Tensor, num_groups: int, weight: Optional[Tensor],
                   bias: Optional[Tensor], eps: float) -> tuple[Tensor, Tensor, Tensor]:
    y, mean, rstd = _fn.group_norm(
        _array(x, "x"), num_groups, _array(weight, "weight"), _array(bias, "bias"), eps=eps,
        return_stats=True, num_threads=_threads())
    return _tensor(y), _tensor(mean), _tensor(rstd)


@_group_norm_op.register_fake
def _(x, num_groups, weight, bias, eps):
    stats = (x.shape[0], num_groups)
    return _empty(x.shape, x), _empty(stats, x, _calc(x.dtype)), _empty(stats, x, _calc(x.dtype))


@torch.library.custom_op("fastnorm::group_norm_backward", mutates_args=())
def _group_norm_backward_op(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                            weight: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = _fn.group_norm_backward(
        _array(dy, "dy"), _array(x, "x"), _array(mean, "mean"), _array(rstd, "rstd"),
        _array(weight, "weight"), _some_bias(x), num_threads=_threads())
    return _channel_grads(x, dx, dw, db)


@_group_norm_backward_op.register_fake
def _(dy, x, mean, rstd, weight):
    return _channel_grads_fake(x, weight)


def _group_norm_setup(ctx, inputs, output):
    x, _, weight, bias, _ = inputs
    _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(x, weight, mean, rstd)
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _group_norm_grad(ctx, dy, _dmean, _drstd):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = _call(_group_norm_backward_op, dy, x, mean, rstd, weight)
    db = db.to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
    return dx, None, _none_if_absent(dw, weight), db, None


_register_autograd(_group_norm_op, _group_norm_grad, _group_norm_setup)


def group_norm(x, num_groups, weight=None, bias=None, eps=1e-5):
    """``torch.nn.functional.group_norm`` on fastnorm's kernels (op
    ``fastnorm::group_norm``): x of shape (N, C, *)."""
    return _call(_group_norm_op, x, int(num_groups), weight, bias, float(eps))[0]


# --------------------------------------------------------------------------
# BatchNorm and InstanceNorm (running statistics updated in place)
# --------------------------------------------------------------------------
#
# An operator that mutates its arguments cannot carry an autograd formula
# (torch.library refuses it), so these operators are functional, as
# PyTorch's own functional form of batch norm is: they return the updated
# running statistics (empty tensors when there is no update), and the
# Python functions copy them into the given buffers in place. torch.compile
# and torch.export see that copy as an ordinary in-place copy_.

def _updated_running(t, name):
    """A running statistic as a new array that fastnorm updates (the tensor
    itself is written by the caller); None stays None."""
    if t is None:
        return None
    return np.array(_array(t, name), copy=True)


def _running_result(a, t):
    """The updated statistic as a tensor, or an empty one when there is none."""
    if a is None:
        return torch.empty(0, dtype=t.dtype if t is not None else torch.float32)
    return _tensor(a)


def _running_fake(x, t, updated):
    if updated and t is not None:
        return _empty(t.shape, t)
    return _empty((0,), x, t.dtype if t is not None else torch.float32)


def _some_bias(x):
    """A bias for the channel backward functions, which compute dbias only
    when the forward had one: the operators always return it (the autograd
    formula drops it when there was none). Of the computing dtype, so that
    dbias keeps its precision."""
    return np.zeros(x.shape[1], np.float64 if x.dtype == torch.float64 else np.float32)


def _copy_running(running_mean, running_var, new_mean, new_var):
    """Write the updated running statistics into the buffers (in place)."""
    if running_mean is not None and new_mean.numel():
        with torch.no_grad():
            running_mean.copy_(new_mean)
            running_var.copy_(new_var)


@torch.library.custom_op("fastnorm::batch_norm", mutates_args=())
def _batch_norm_op(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                   weight: Optional[Tensor], bias: Optional[Tensor], training: bool,
                   momentum: float,
                   eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    xa = _array(x, "x")
    if training:
        rm = _updated_running(running_mean, "running_mean")
        rv = _updated_running(running_var, "running_var")
    else:
        rm, rv = _array(running_mean, "running_mean"), _array(running_var, "running_var")
    y, mean, rstd = _fn.batch_norm(
        xa, rm, rv, _array(weight, "weight"), _array(bias, "bias"), training=training,
        momentum=momentum, eps=eps, return_stats=True, num_threads=_threads())
    if not training:
        rm = rv = None
    return (_tensor(y), _tensor(mean), _tensor(rstd), _running_result(rm, running_mean),
            _running_result(rv, running_var))


@_batch_norm_op.register_fake
def _(x, running_mean, running_var, weight, bias, training, momentum, eps):
    C = x.shape[1]
    calc = _calc(x.dtype)
    return (_empty(x.shape, x), _empty((C,), x, calc), _empty((C,), x, calc),
            _running_fake(x, running_mean, training), _running_fake(x, running_var, training))


@torch.library.custom_op("fastnorm::batch_norm_backward", mutates_args=())
def _batch_norm_backward_op(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                            weight: Optional[Tensor],
                            training: bool) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = _fn.batch_norm_backward(
        _array(dy, "dy"), _array(x, "x"), _array(mean, "mean"), _array(rstd, "rstd"),
        _array(weight, "weight"), _some_bias(x), training=training, num_threads=_threads())
    return _channel_grads(x, dx, dw, db)


@_batch_norm_backward_op.register_fake
def _(dy, x, mean, rstd, weight, training):
    return _channel_grads_fake(x, weight)


def _batch_norm_setup(ctx, inputs, output):
    x, _, _, weight, bias, training, _, _ = inputs
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.training = training
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _batch_norm_grad(ctx, dy, *_):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = _call(_batch_norm_backward_op, dy, x, mean, rstd, weight, ctx.training)
    db = db.to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
    return dx, None, None, _none_if_absent(dw, weight), db, None, None, None


_register_autograd(_batch_norm_op, _batch_norm_grad, _batch_norm_setup)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """``torch.nn.functional.batch_norm`` on fastnorm's kernels (op
    ``fastnorm::batch_norm``), x of shape (N, C, *).

    With ``training=True`` the batch statistics normalize x and
    running_mean / running_var, when given, are updated in place (the
    variance unbiased), as PyTorch does; with ``training=False`` the running
    statistics normalize x. They must have the computing dtype (x's, float32
    for 16-bit x) or float64.
    """
    training = bool(training)
    y, _, _, new_mean, new_var = _call(_batch_norm_op, x, running_mean, running_var, weight, bias,
                                                training, float(momentum), float(eps))
    _copy_running(running_mean, running_var, new_mean, new_var)
    return y


@torch.library.custom_op("fastnorm::instance_norm", mutates_args=())
def _instance_norm_op(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor],
                      running_mean: Optional[Tensor], running_var: Optional[Tensor],
                      use_input_stats: bool, momentum: float,
                      eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    if use_input_stats:
        rm = _updated_running(running_mean, "running_mean")
        rv = _updated_running(running_var, "running_var")
    else:
        rm, rv = _array(running_mean, "running_mean"), _array(running_var, "running_var")
    y, mean, rstd = _fn.instance_norm(
        _array(x, "x"), _array(weight, "weight"), _array(bias, "bias"), rm, rv,
        training=use_input_stats, momentum=momentum, eps=eps, return_stats=True,
        num_threads=_threads())
    if not use_input_stats:
        rm = rv = None
    return (_tensor(y), _tensor(mean), _tensor(rstd), _running_result(rm, running_mean),
            _running_result(rv, running_var))


@_instance_norm_op.register_fake
def _(x, weight, bias, running_mean, running_var, use_input_stats, momentum, eps):
    if use_input_stats or running_mean is None:
        shape = (x.shape[0], x.shape[1])
    else:
        shape = (x.shape[1],)
    calc = _calc(x.dtype)
    return (_empty(x.shape, x), _empty(shape, x, calc), _empty(shape, x, calc),
            _running_fake(x, running_mean, use_input_stats),
            _running_fake(x, running_var, use_input_stats))


@torch.library.custom_op("fastnorm::instance_norm_backward", mutates_args=())
def _instance_norm_backward_op(dy: Tensor, x: Tensor, mean: Tensor, rstd: Tensor,
                               weight: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    dx, dw, db = _fn.instance_norm_backward(
        _array(dy, "dy"), _array(x, "x"), _array(mean, "mean"), _array(rstd, "rstd"),
        _array(weight, "weight"), _some_bias(x), num_threads=_threads())
    return _channel_grads(x, dx, dw, db)


@_instance_norm_backward_op.register_fake
def _(dy, x, mean, rstd, weight):
    return _channel_grads_fake(x, weight)


def _instance_norm_setup(ctx, inputs, output):
    x, weight, bias = inputs[:3]
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.bias_dtype = bias.dtype if bias is not None else None


def _instance_norm_grad(ctx, dy, *_):
    x, weight, mean, rstd = ctx.saved_tensors
    dx, dw, db = _call(_instance_norm_backward_op, dy, x, mean, rstd, weight)
    db = db.to(ctx.bias_dtype) if ctx.bias_dtype is not None else None
    return dx, _none_if_absent(dw, weight), db, None, None, None, None, None


_register_autograd(_instance_norm_op, _instance_norm_grad, _instance_norm_setup)


def instance_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """``torch.nn.functional.instance_norm`` on fastnorm's kernels (op
    ``fastnorm::instance_norm``), x of shape (N, C, *).

    With ``use_input_stats`` (or without running statistics) each (sample,
    channel) is normalized by its own statistics, and running_mean /
    running_var, when given, are updated in place with their batch average;
    otherwise the running statistics normalize x."""
    use_input_stats = bool(use_input_stats)
    y, _, _, new_mean, new_var = _call(_instance_norm_op, x, weight, bias, running_mean, running_var,
                                                   use_input_stats, float(momentum),
                                                   float(eps))
    _copy_running(running_mean, running_var, new_mean, new_var)
    return y


# --------------------------------------------------------------------------
# Weight normalization
# --------------------------------------------------------------------------

@torch.library.custom_op("fastnorm::weight_norm", mutates_args=())
def _weight_norm_op(v: Tensor, g: Tensor, dim: Optional[int]) -> Tensor:
    w = _fn.weight_norm(_array(v, "v"), _array(g, "g"), axis=dim, num_threads=_threads())
    return _tensor(w)


@_weight_norm_op.register_fake
def _(v, g, dim):
    return _empty(v.shape, v)


@torch.library.custom_op("fastnorm::weight_norm_backward", mutates_args=())
def _weight_norm_backward_op(dw: Tensor, v: Tensor, g: Tensor,
                             dim: Optional[int]) -> tuple[Tensor, Tensor]:
    dv, dg = _fn.weight_norm_backward(_array(dw, "dw"), _array(v, "v"), _array(g, "g"),
                                      axis=dim, num_threads=_threads())
    return _tensor(dv), _tensor(dg)


@_weight_norm_backward_op.register_fake
def _(dw, v, g, dim):
    return _empty(v.shape, v), _empty(g.shape, g)


def _weight_norm_setup(ctx, inputs, output):
    v, g, dim = inputs
    ctx.save_for_backward(v, g)
    ctx.dim = dim


def _weight_norm_grad(ctx, dw):
    v, g = ctx.saved_tensors
    dv, dg = _call(_weight_norm_backward_op, dw, v, g, ctx.dim)
    return dv, dg, None


_register_autograd(_weight_norm_op, _weight_norm_grad, _weight_norm_setup)


def weight_norm(v, g, dim=0):
    """w = g * v / ||v||, the norm over every dimension but ``dim`` (None: over
    all of v), as ``torch._weight_norm`` (op ``fastnorm::weight_norm``).

    g has one value per index of ``dim`` in any shape of that size (PyTorch
    keeps it as (out, 1, ...)). dim=-1 means all dimensions, as in
    ``torch._weight_norm``; dim=None too. Other negative dims are refused."""
    if dim is not None:
        dim = int(dim)
        if dim < -1:
            raise ValueError(f"dim must be a dimension of v (0 or more), or -1 or None for all "
                             f"of them (as torch._weight_norm), got {dim}")
    return _call(_weight_norm_op, v, g, None if dim in (None, -1) else dim)


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------

def _served(x, *tensors):
    """Whether fastnorm computes this call: x and every given parameter and
    buffer are CPU tensors of a dtype fastnorm has, and float32 or float64 x
    has their dtype (torch.nn refuses mixed float32/float64 calls: they go
    to its forward, which raises as it always does; 16-bit x with float32
    parameters is served, as torch.nn serves it)."""
    if not isinstance(x, Tensor) or x.device.type != "cpu" or x.dtype not in _DTYPES:
        return False
    if x.layout != torch.strided or x.is_nested:
        return False
    wide = x.dtype in (torch.float32, torch.float64)
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu" or t.dtype not in _DTYPES or (wide and t.dtype != x.dtype):
            return False
    return True


def _running_fits(module, x):
    """Whether fastnorm can update the module's running statistics in place
    for data x: they have x's computing dtype or float64."""
    for t in (module.running_mean, module.running_var):
        if t is not None and t.dtype not in (_calc(x.dtype), torch.float64):
            return False
    return True


class LayerNorm(nn.LayerNorm):
    """``torch.nn.LayerNorm`` computed by fastnorm: the same constructor,
    parameters and state-dict keys. Inputs fastnorm cannot take (not on the
    CPU, another dtype) go to ``torch.nn.LayerNorm.forward``."""

    def forward(self, input):
        if not _served(input, self.weight, self.bias):
            return super().forward(input)
        return layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.RMSNorm):
    """``torch.nn.RMSNorm`` computed by fastnorm (falls back to the parent's
    forward as :class:`LayerNorm` does)."""

    def forward(self, x):
        if not _served(x, self.weight):
            return super().forward(x)
        return rms_norm(x, self.normalized_shape, self.weight, self.eps)


class GroupNorm(nn.GroupNorm):
    """``torch.nn.GroupNorm`` computed by fastnorm (falls back to the parent's
    forward as :class:`LayerNorm` does)."""

    def forward(self, input):
        if not _served(input, self.weight, self.bias):
            return super().forward(input)
        return group_norm(input, self.num_groups, self.weight, self.bias, self.eps)


class _BatchNormForward:
    """The forward of the BatchNorm classes: torch.nn's logic for momentum,
    num_batches_tracked and which statistics to use, around fastnorm's
    batch_norm. Falls back to the parent's forward where fastnorm cannot
    serve the call (not on the CPU, another dtype, running statistics of a
    dtype fastnorm cannot update in place)."""

    def forward(self, input):
        if not (_served(input, self.weight, self.bias, self.running_mean, self.running_var)
                and _running_fits(self, input)):
            return super().forward(input)
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:  # a cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or (self.running_mean is None
                                            and self.running_var is None)
        # the running statistics are passed when they are used or updated
        keep = not self.training or self.track_running_stats
        return batch_norm(input, self.running_mean if keep else None,
                          self.running_var if keep else None, self.weight, self.bias,
                          use_batch_stats, momentum, self.eps)


class BatchNorm1d(_BatchNormForward, nn.BatchNorm1d):
    """``torch.nn.BatchNorm1d`` computed by fastnorm; input (N, C) or (N, C, L)."""


class BatchNorm2d(_BatchNormForward, nn.BatchNorm2d):
    """``torch.nn.BatchNorm2d`` computed by fastnorm; input (N, C, H, W)."""


class BatchNorm3d(_BatchNormForward, nn.BatchNorm3d):
    """``torch.nn.BatchNorm3d`` computed by fastnorm; input (N, C, D, H, W)."""


class _InstanceNormApply:
    """torch.nn's InstanceNorm forward checks the input and adds the batch
    axis of an unbatched input, then applies the norm: the last step is
    fastnorm's (falling back to the parent as the BatchNorm classes do)."""

    def _apply_instance_norm(self, input):
        if not (_served(input, self.weight, self.bias, self.running_mean, self.running_var)
                and _running_fits(self, input)):
            return super()._apply_instance_norm(input)
        return instance_norm(input, self.running_mean, self.running_var, self.weight,
                             self.bias, self.training or not self.track_running_stats,
                             0.0 if self.momentum is None else self.momentum, self.eps)


class InstanceNorm1d(_InstanceNormApply, nn.InstanceNorm1d):
    """``torch.nn.InstanceNorm1d`` computed by fastnorm; input (N, C, L) or (C, L)."""


class InstanceNorm2d(_InstanceNormApply, nn.InstanceNorm2d):
    """``torch.nn.InstanceNorm2d`` computed by fastnorm; input (N, C, H, W) or (C, H, W)."""


class InstanceNorm3d(_InstanceNormApply, nn.InstanceNorm3d):
    """``torch.nn.InstanceNorm3d`` computed by fastnorm; input (N, C, D, H, W) or (C, D, H, W)."""


# --------------------------------------------------------------------------
# Swapping the norms of a model
# --------------------------------------------------------------------------

_SWAPS = {
    nn.LayerNorm: LayerNorm,
    nn.RMSNorm: RMSNorm,
    nn.GroupNorm: GroupNorm,
    nn.BatchNorm1d: BatchNorm1d,
    nn.BatchNorm2d: BatchNorm2d,
    nn.BatchNorm3d: BatchNorm3d,
    nn.InstanceNorm1d: InstanceNorm1d,
    nn.InstanceNorm2d: InstanceNorm2d,
    nn.InstanceNorm3d: InstanceNorm3d,
}

# every torch.nn norm module, for reporting the ones left alone
_NORM_BASES = (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)

Replacement = namedtuple("Replacement", ["replaced", "skipped"])
Replacement.__doc__ = """What :func:`replace_norms` did.

replaced: the qualified names (as in ``model.named_modules()``; "" for the
model itself) of the modules now computed by fastnorm. skipped: ``(name,
reason)`` pairs for the norm modules left as they were."""


def _why_not(module):
    """Why fastnorm cannot serve this norm module, or None when it can."""
    for name, t in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)):
        if name == "num_batches_tracked":
            continue
        if t.device.type != "cpu":
            return f"{name} is on device {t.device} (fastnorm computes on the CPU)"
        if t.dtype not in _DTYPES:
            return f"{name} has dtype {t.dtype} (fastnorm: float32, float64, float16, bfloat16)"
    for name in ("running_mean", "running_var"):
        t = getattr(module, name, None)
        if t is not None and t.dtype in (torch.float16, torch.bfloat16):
            return (f"{name} has dtype {t.dtype}: fastnorm updates running statistics in "
                    "float32 or float64")
    return None


def replace_norms(model):
    """Swap the ``torch.nn`` norm modules of ``model`` for fastnorm's, in place.

    Modules of exactly the types ``torch.nn.LayerNorm``, ``RMSNorm``,
    ``GroupNorm``, ``BatchNorm1d/2d/3d`` and ``InstanceNorm1d/2d/3d`` take
    the matching class of this module: each keeps its identity, its
    parameters and buffers (the same objects), its hooks and its
    training/eval mode; only its forward changes. Norm modules fastnorm
    cannot serve are left alone: parameters or buffers off the CPU or of
    another dtype, 16-bit running statistics, and other norm classes
    (subclasses of those, ``SyncBatchNorm``, the lazy variants: their forward
    may differ).

    Returns a :class:`Replacement` ``(replaced, skipped)``: the qualified
    names swapped, and ``(name, reason)`` for each norm module left alone.
    Modules that already are fastnorm's are in neither list.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    replaced, skipped = [], []
    served = tuple(_SWAPS.values())
    for name, module in model.named_modules():
        if isinstance(module, served):
            continue  # already fastnorm's
        target = _SWAPS.get(type(module))
        if target is None:
            if isinstance(module, _NORM_BASES):
                skipped.append((name, f"{type(module).__name__} is not one of the torch.nn "
                                      "classes fastnorm replaces (its forward may differ)"))
            continue
        reason = _why_not(module)
        if reason is not None:
            skipped.append((name, reason))
            continue
        module.__class__ = target
        replaced.append(name)
    return Replacement(replaced, skipped)
