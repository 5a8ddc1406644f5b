# Type stubs of fastnorm.nn._channels: the channel normalization layers.
from collections.abc import Iterable
from typing import Literal

from numpy.typing import ArrayLike, DTypeLike

from ._base import _Array, _Module

_Source = Literal["population", "batch"]

class _ChannelNorm(_Module):
    eps: float
    affine: bool
    axis: int
    weight: _Array | None
    bias: _Array | None
    grad_weight: _Array | None
    grad_bias: _Array | None
    running_mean: _Array | None
    running_var: _Array | None
    def reset_running_stats(self) -> None: ...
    def reset_parameters(self) -> None: ...

class GroupNorm(_ChannelNorm):
    num_groups: int
    num_channels: int
    def __init__(self, num_groups: int, num_channels: int, eps: float = ...,
                 affine: bool = ..., *, axis: int = ..., dtype: DTypeLike = ...) -> None: ...
    def forward(self, x: ArrayLike) -> _Array: ...
    def backward(self, dy: ArrayLike) -> _Array: ...

class InstanceNorm(_ChannelNorm):
    num_features: int
    momentum: float | None
    track_running_stats: bool
    def __init__(self, num_features: int, eps: float = ..., momentum: float | None = ...,
                 affine: bool = ..., track_running_stats: bool = ..., *, axis: int = ...,
                 dtype: DTypeLike = ...) -> None: ...
    def forward(self, x: ArrayLike) -> _Array: ...
    def backward(self, dy: ArrayLike) -> _Array: ...

class InstanceNorm1d(InstanceNorm): ...
class InstanceNorm2d(InstanceNorm): ...
class InstanceNorm3d(InstanceNorm): ...

class BatchNorm(_ChannelNorm):
    num_features: int
    momentum: float | None
    track_running_stats: bool
    def __init__(self, num_features: int, eps: float = ..., momentum: float | None = ...,
                 affine: bool = ..., track_running_stats: bool = ..., *, axis: int = ...,
                 dtype: DTypeLike = ...) -> None: ...
    def forward(self, x: ArrayLike) -> _Array: ...
    def backward(self, dy: ArrayLike) -> _Array: ...

class BatchNorm1d(BatchNorm): ...
class BatchNorm2d(BatchNorm): ...
class BatchNorm3d(BatchNorm): ...

class SwitchNorm(_ChannelNorm):
    num_features: int
    momentum: float | None
    mean_weight: _Array
    var_weight: _Array
    grad_mean_weight: _Array | None
    grad_var_weight: _Array | None
    def __init__(self, num_features: int, eps: float = ..., momentum: float | None = ...,
                 affine: bool = ..., *, axis: int = ..., dtype: DTypeLike = ...) -> None: ...
    def forward(self, x: ArrayLike) -> _Array: ...
    def backward(self, dy: ArrayLike) -> _Array: ...

class BatchLayerNorm(_ChannelNorm):
    num_features: int
    feature_shape: tuple[int, ...]
    momentum: float | None
    batch_size: int | None
    inference_mean: _Source
    inference_var: _Source
    def __init__(self, num_features: int, feature_shape: int | Iterable[int] | None = ...,
                 eps: float = ..., momentum: float | None = ..., affine: bool = ...,
                 batch_size: int | None = ..., inference_mean: _Source = ...,
                 inference_var: _Source = ..., *, dtype: DTypeLike = ...) -> None: ...
    def forward(self, x: ArrayLike) -> _Array: ...
    def backward(self, dy: ArrayLike) -> _Array: ...
