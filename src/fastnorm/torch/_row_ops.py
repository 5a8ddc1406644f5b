"""The row normalizers as PyTorch operators: LayerNorm, RMSNorm, the fused residual add, AdaLN."""
from typing import List, Optional

import torch
from torch import Tensor

import fastnorm as _fn

from ._bridge import (
    _array, _axes, _calc, _call, _empty, _grad_dtype, _none_if_absent, _register_autograd,
    _tensor, _threads, _trailing,
)


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

def _residual_bias_grad(ds, residual_bias, normalized_ndim):
    """The gradient of residual_bias when only s = x + residual +
    residual_bias took part (x and residual get ds itself): ds summed over
    the leading axes; None without a residual_bias."""
    if residual_bias is None:
        return None
    lead = tuple(range(ds.dim() - normalized_ndim))
    return ds.sum(dim=lead, dtype=_calc(ds.dtype)).to(residual_bias.dtype)


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
    if dy is None:  # only s took part: y's parameters get no gradient
        drb = _residual_bias_grad(ds, residual_bias, ctx.normalized_ndim)
        return ds, ds, None, None, None, drb, None
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
    if dy is None:  # only s took part: y's weight gets no gradient
        drb = _residual_bias_grad(ds, residual_bias, ctx.normalized_ndim)
        return ds, ds, None, None, drb, None
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
