"""The channel normalizers as PyTorch operators: GroupNorm, BatchNorm, InstanceNorm, weight normalization."""
from typing import Optional

import numpy as np
import torch
from torch import Tensor

import fastnorm as _fn

from ._bridge import (
    _array, _calc, _call, _empty, _grad_dtype, _none_if_absent, _register_autograd, _tensor,
    _threads,
)


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
