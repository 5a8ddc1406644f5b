"""``torch.nn`` modules computed by fastnorm, and the swap of a model's norm modules."""
from collections import namedtuple

import torch
from torch import Tensor, nn

from ._bridge import _DTYPES, _calc
from ._channel_ops import batch_norm, group_norm, instance_norm
from ._row_ops import layer_norm, rms_norm


# --------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------

def _served(x, *tensors):
    """Whether fastnorm computes this call: x and every given parameter and
    buffer are CPU tensors of a dtype fastnorm has, and float32 or float64 x
    has their dtype (torch.nn refuses mixed float32/float64 calls: they go
    to its forward, which raises as it always does; 16-bit x with float32
    parameters is served, as torch.nn serves it)."""
    if not isinstance(x, Tensor) or not x.is_cpu or x.dtype not in _DTYPES:
        return False
    if x.layout != torch.strided or x.is_nested:
        return False
    wide = x.dtype in (torch.float32, torch.float64)
    for t in tensors:
        if t is None:
            continue
        if not t.is_cpu or t.dtype not in _DTYPES or (wide and t.dtype != x.dtype):
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
