# Type stubs of fastnorm._family: the channel normalizers.
from typing import Any, Literal, NamedTuple, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Array = NDArray[Any]
_Axis = int | tuple[int, ...]
_Source = Literal["population", "batch"]

__all__ = [
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "batch_norm",
    "batch_norm_backward",
    "batch_layer_norm",
    "batch_layer_norm_backward",
    "switch_norm",
    "switch_norm_backward",
    "weight_norm",
    "weight_norm_backward",
    "BatchLayerNormStats",
    "SwitchNormStats",
]

class BatchLayerNormStats(NamedTuple):
    feature_mean: _Array
    feature_rstd: _Array
    batch_mean: _Array
    batch_rstd: _Array
    batch_center: _Array
    frozen_mean: bool
    frozen_var: bool
    batch_size: int

class SwitchNormStats(NamedTuple):
    mean: _Array
    rstd: _Array
    in_mean: _Array
    in_var: _Array
    ln_mean: _Array
    ln_var: _Array
    bn_mean: _Array
    bn_var: _Array
    batch_stats: bool

@overload
def group_norm(
    x: ArrayLike, num_groups: int, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    *, eps: float = ..., axis: int = ..., out: _Array | None = ...,
    return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> _Array: ...
@overload
def group_norm(
    x: ArrayLike, num_groups: int, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    *, eps: float = ..., axis: int = ..., out: _Array | None = ...,
    return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def group_norm(
    x: ArrayLike, num_groups: int, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    *, eps: float = ..., axis: int = ..., out: _Array | None = ...,
    return_stats: bool, num_threads: int | None = ...,
) -> _Array | tuple[_Array, _Array, _Array]: ...
def group_norm_backward(
    dy: ArrayLike, x: ArrayLike, mean: ArrayLike, rstd: ArrayLike,
    weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *, axis: int = ...,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array | None, _Array | None]: ...
@overload
def batch_norm(
    x: ArrayLike, running_mean: _Array | None, running_var: _Array | None,
    weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *, training: bool = ...,
    momentum: float = ..., eps: float = ..., axis: int = ..., out: _Array | None = ...,
    return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> _Array: ...
@overload
def batch_norm(
    x: ArrayLike, running_mean: _Array | None, running_var: _Array | None,
    weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *, training: bool = ...,
    momentum: float = ..., eps: float = ..., axis: int = ..., out: _Array | None = ...,
    return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def batch_norm(
    x: ArrayLike, running_mean: _Array | None, running_var: _Array | None,
    weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *, training: bool = ...,
    momentum: float = ..., eps: float = ..., axis: int = ..., out: _Array | None = ...,
    return_stats: bool, num_threads: int | None = ...,
) -> _Array | tuple[_Array, _Array, _Array]: ...
def batch_norm_backward(
    dy: ArrayLike, x: ArrayLike, mean: ArrayLike, rstd: ArrayLike,
    weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *, training: bool = ...,
    axis: int = ..., num_threads: int | None = ...,
) -> tuple[_Array, _Array | None, _Array | None]: ...
@overload
def instance_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., momentum: float = ..., eps: float = ..., axis: int = ...,
    out: _Array | None = ..., return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> _Array: ...
@overload
def instance_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., momentum: float = ..., eps: float = ..., axis: int = ...,
    out: _Array | None = ..., return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def instance_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., momentum: float = ..., eps: float = ..., axis: int = ...,
    out: _Array | None = ..., return_stats: bool, num_threads: int | None = ...,
) -> _Array | tuple[_Array, _Array, _Array]: ...
def instance_norm_backward(
    dy: ArrayLike, x: ArrayLike, mean: ArrayLike, rstd: ArrayLike,
    weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *, axis: int = ...,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array | None, _Array | None]: ...
@overload
def batch_layer_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., batch_size: int | None = ..., momentum: float = ..., eps: float = ...,
    inference_mean: _Source = ..., inference_var: _Source = ..., out: _Array | None = ...,
    return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> _Array: ...
@overload
def batch_layer_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., batch_size: int | None = ..., momentum: float = ..., eps: float = ...,
    inference_mean: _Source = ..., inference_var: _Source = ..., out: _Array | None = ...,
    return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, BatchLayerNormStats]: ...
@overload
def batch_layer_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., batch_size: int | None = ..., momentum: float = ..., eps: float = ...,
    inference_mean: _Source = ..., inference_var: _Source = ..., out: _Array | None = ...,
    return_stats: bool, num_threads: int | None = ...,
) -> _Array | tuple[_Array, BatchLayerNormStats]: ...
def batch_layer_norm_backward(
    dy: ArrayLike, x: ArrayLike, stats: BatchLayerNormStats, weight: ArrayLike | None = ...,
    bias: ArrayLike | None = ..., *, num_threads: int | None = ...,
) -> tuple[_Array, _Array | None, _Array | None]: ...
@overload
def switch_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    mean_weight: ArrayLike | None = ..., var_weight: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., momentum: float = ..., eps: float = ..., axis: int = ...,
    out: _Array | None = ..., return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> _Array: ...
@overload
def switch_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    mean_weight: ArrayLike | None = ..., var_weight: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., momentum: float = ..., eps: float = ..., axis: int = ...,
    out: _Array | None = ..., return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, SwitchNormStats]: ...
@overload
def switch_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ...,
    mean_weight: ArrayLike | None = ..., var_weight: ArrayLike | None = ...,
    running_mean: _Array | None = ..., running_var: _Array | None = ..., *,
    training: bool = ..., momentum: float = ..., eps: float = ..., axis: int = ...,
    out: _Array | None = ..., return_stats: bool, num_threads: int | None = ...,
) -> _Array | tuple[_Array, SwitchNormStats]: ...
def switch_norm_backward(
    dy: ArrayLike, x: ArrayLike, stats: SwitchNormStats, weight: ArrayLike | None = ...,
    bias: ArrayLike | None = ..., mean_weight: ArrayLike | None = ...,
    var_weight: ArrayLike | None = ..., *, axis: int = ..., num_threads: int | None = ...,
) -> tuple[_Array, _Array | None, _Array | None, _Array, _Array]: ...
def weight_norm(
    v: ArrayLike, g: ArrayLike, *, axis: int | None = ..., eps: float = ...,
    out: _Array | None = ..., num_threads: int | None = ...,
) -> _Array: ...
def weight_norm_backward(
    dw: ArrayLike, v: ArrayLike, g: ArrayLike, *, axis: int | None = ..., eps: float = ...,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array]: ...

def channel_moments(
    x: ArrayLike, axis: int = ..., *, num_threads: int | None = ...,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]: ...

# The private helpers that fastnorm's own modules (fastnorm.dask) share.
def __getattr__(name: str) -> Any: ...
