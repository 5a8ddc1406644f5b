# Type stubs of fastnorm.nn: layer classes holding parameters, running
# statistics and gradients.
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
