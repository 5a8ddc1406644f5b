# Type stubs of fastnorm.nn: layer classes holding parameters, running
# statistics and gradients.
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

_Array = NDArray[Any]
_Source = Literal["population", "batch"]

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

class _Module:
    training: bool
    num_batches_tracked: int | None
    dtype: np.dtype[Any]
    def __call__(self, x: ArrayLike) -> _Array: ...
    def train(self, mode: bool = ...) -> Any: ...
    def eval(self) -> Any: ...
    def parameters(self) -> list[_Array]: ...
    def zero_grad(self) -> None: ...
    def state_dict(self) -> dict[str, _Array]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
    def extra_repr(self) -> str: ...

class _Norm(_Module):
    normalized_shape: tuple[int, ...]
    eps: float | None
    elementwise_affine: bool
    weight: _Array | None
    bias: _Array | None
    grad_weight: _Array | None
    grad_bias: _Array | None
    def __init__(self, normalized_shape: int | Iterable[int], eps: float | None,
                 dtype: DTypeLike, eps_none: bool = ...) -> None: ...

class LayerNorm(_Norm):
    eps: float
    def __init__(self, normalized_shape: int | Iterable[int], eps: float = ...,
                 elementwise_affine: bool = ..., bias: bool = ...,
                 dtype: DTypeLike = ...) -> None: ...
    def forward(self, x: ArrayLike) -> _Array: ...
    def backward(self, dy: ArrayLike) -> _Array: ...

class RMSNorm(_Norm):
    def __init__(self, normalized_shape: int | Iterable[int], eps: float | None = ...,
                 elementwise_affine: bool = ..., dtype: DTypeLike = ...) -> None: ...
    def forward(self, x: ArrayLike) -> _Array: ...
    def backward(self, dy: ArrayLike) -> _Array: ...

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

class WeightNorm(_Module):
    g: _Array
    v: _Array
    axis: int | None
    eps: float
    grad_g: _Array | None
    grad_v: _Array | None
    def __init__(self, weight: ArrayLike, axis: int | None = ..., eps: float = ..., *,
                 dtype: DTypeLike | None = ...) -> None: ...
    def compute_weight(self) -> _Array: ...
    def forward(self) -> _Array: ...
    def __call__(self) -> _Array: ...  # type: ignore[override]
    @property
    def weight(self) -> _Array: ...
    def backward(self, dw: ArrayLike) -> tuple[_Array, _Array]: ...
