"""Layer classes in the style of ``torch.nn``: they hold parameters, keep what
their backward needs, and store parameter gradients.

    layer = fastnorm.nn.LayerNorm(768)
    y = layer(x)                 # forward, keeps x, mean, rstd
    dx = layer.backward(dy)      # sets layer.grad_weight, layer.grad_bias

Every layer has ``parameters()``, ``zero_grad()``, ``state_dict()`` /
``load_state_dict()`` (parameters, running statistics and
``num_batches_tracked``), ``train()`` / ``eval()``. ``backward(dy)`` uses the
input of the latest forward and *sets* (does not accumulate) the
``grad_<name>`` of each parameter, in the parameters' dtype.

Layers with running statistics (BatchNorm, InstanceNorm with
track_running_stats, SwitchNorm, BatchLayerNorm) update them in place on
each training forward and count those forwards in ``num_batches_tracked``;
``momentum=None`` makes the running statistics a cumulative average (the
functions get momentum = 1 / num_batches_tracked, as torch does).

``dtype=`` is float32 (the default), float64, float16 or bfloat16
(``ml_dtypes.bfloat16``; the name "bfloat16" where the optional ml_dtypes
package is installed); WeightNorm keeps its weight's dtype unless given one.
Parameters and their gradients are in the layer's dtype. Running statistics
are in the computing dtype: the layer's for float32 and float64, float32 for
a 16-bit layer (a running average rounded to 16 bits at every step would lose
the small updates). ``state_dict()`` returns each array in its own dtype, and
``load_state_dict`` converts parameters to the layer's dtype and running
statistics to theirs. The input need not have the layer's dtype: any dtype
the functions take works, and the output and dx have the input's dtype
(16-bit data computes in float32, with the parameters read as float32).
"""
__all__ = [
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "InstanceNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "BatchNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "BatchLayerNorm",
    "SwitchNorm",
    "WeightNorm",
]

from ._channels import (
    BatchLayerNorm,
    BatchNorm,
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    SwitchNorm,
)
from ._rows import LayerNorm, RMSNorm
from ._weight_norm import WeightNorm

# The public classes belong to this module (their documentation, and the path
# under which pickle finds a layer's class).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
