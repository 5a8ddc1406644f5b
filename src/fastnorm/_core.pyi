# Type stubs of the compiled module fastnorm._core (the row normalizers and the
# thread settings). The underscore helpers are listed where fastnorm's Python
# modules use them.
from typing import Any, Literal, overload

from numpy.typing import ArrayLike, NDArray

_Array = NDArray[Any]
_Axis = int | tuple[int, ...]

def set_num_threads(n: int | None) -> None: ...
def get_num_threads() -> int: ...
@overload
def layer_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *,
    axis: _Axis = ..., eps: float = ..., out: _Array | None = ...,
    return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> _Array: ...
@overload
def layer_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *,
    axis: _Axis = ..., eps: float = ..., out: _Array | None = ...,
    return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def layer_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., bias: ArrayLike | None = ..., *,
    axis: _Axis = ..., eps: float = ..., out: _Array | None = ...,
    return_stats: bool, num_threads: int | None = ...,
) -> _Array | tuple[_Array, _Array, _Array]: ...
def layer_norm_backward(
    dy: ArrayLike, x: ArrayLike, mean: ArrayLike, rstd: ArrayLike,
    weight: ArrayLike | None = ..., *, axis: _Axis = ..., out: _Array | None = ...,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def rms_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., *, axis: _Axis = ...,
    eps: float | None = ..., out: _Array | None = ..., return_stats: Literal[False] = ...,
    num_threads: int | None = ...,
) -> _Array: ...
@overload
def rms_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., *, axis: _Axis = ...,
    eps: float | None = ..., out: _Array | None = ..., return_stats: Literal[True],
    num_threads: int | None = ...,
) -> tuple[_Array, _Array]: ...
@overload
def rms_norm(
    x: ArrayLike, weight: ArrayLike | None = ..., *, axis: _Axis = ...,
    eps: float | None = ..., out: _Array | None = ..., return_stats: bool,
    num_threads: int | None = ...,
) -> _Array | tuple[_Array, _Array]: ...
def rms_norm_backward(
    dy: ArrayLike, x: ArrayLike, rstd: ArrayLike, weight: ArrayLike | None = ..., *,
    axis: _Axis = ..., out: _Array | None = ..., num_threads: int | None = ...,
) -> tuple[_Array, _Array]: ...
@overload
def add_layer_norm(
    x: ArrayLike, residual: ArrayLike, weight: ArrayLike | None = ...,
    bias: ArrayLike | None = ..., *, residual_bias: ArrayLike | None = ..., axis: _Axis = ...,
    eps: float = ..., out: _Array | None = ..., sum_out: _Array | None = ...,
    return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> tuple[_Array, _Array]: ...
@overload
def add_layer_norm(
    x: ArrayLike, residual: ArrayLike, weight: ArrayLike | None = ...,
    bias: ArrayLike | None = ..., *, residual_bias: ArrayLike | None = ..., axis: _Axis = ...,
    eps: float = ..., out: _Array | None = ..., sum_out: _Array | None = ...,
    return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array, _Array]: ...
@overload
def add_layer_norm(
    x: ArrayLike, residual: ArrayLike, weight: ArrayLike | None = ...,
    bias: ArrayLike | None = ..., *, residual_bias: ArrayLike | None = ..., axis: _Axis = ...,
    eps: float = ..., out: _Array | None = ..., sum_out: _Array | None = ...,
    return_stats: bool, num_threads: int | None = ...,
) -> tuple[_Array, _Array] | tuple[_Array, _Array, _Array, _Array]: ...
def add_layer_norm_backward(
    dy: ArrayLike, s: ArrayLike, mean: ArrayLike, rstd: ArrayLike,
    weight: ArrayLike | None = ..., *, ds: ArrayLike | None = ..., axis: _Axis = ...,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array, _Array]: ...
@overload
def add_rms_norm(
    x: ArrayLike, residual: ArrayLike, weight: ArrayLike | None = ..., *,
    residual_bias: ArrayLike | None = ..., axis: _Axis = ..., eps: float | None = ...,
    out: _Array | None = ..., sum_out: _Array | None = ..., return_stats: Literal[False] = ...,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array]: ...
@overload
def add_rms_norm(
    x: ArrayLike, residual: ArrayLike, weight: ArrayLike | None = ..., *,
    residual_bias: ArrayLike | None = ..., axis: _Axis = ..., eps: float | None = ...,
    out: _Array | None = ..., sum_out: _Array | None = ..., return_stats: Literal[True],
    num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def add_rms_norm(
    x: ArrayLike, residual: ArrayLike, weight: ArrayLike | None = ..., *,
    residual_bias: ArrayLike | None = ..., axis: _Axis = ..., eps: float | None = ...,
    out: _Array | None = ..., sum_out: _Array | None = ..., return_stats: bool,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array] | tuple[_Array, _Array, _Array]: ...
def add_rms_norm_backward(
    dy: ArrayLike, s: ArrayLike, rstd: ArrayLike, weight: ArrayLike | None = ..., *,
    ds: ArrayLike | None = ..., axis: _Axis = ..., num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def ada_layer_norm(
    x: ArrayLike, shift: ArrayLike, scale: ArrayLike, *, eps: float = ...,
    out: _Array | None = ..., return_stats: Literal[False] = ..., num_threads: int | None = ...,
) -> _Array: ...
@overload
def ada_layer_norm(
    x: ArrayLike, shift: ArrayLike, scale: ArrayLike, *, eps: float = ...,
    out: _Array | None = ..., return_stats: Literal[True], num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...
@overload
def ada_layer_norm(
    x: ArrayLike, shift: ArrayLike, scale: ArrayLike, *, eps: float = ...,
    out: _Array | None = ..., return_stats: bool, num_threads: int | None = ...,
) -> _Array | tuple[_Array, _Array, _Array]: ...
def ada_layer_norm_backward(
    dy: ArrayLike, x: ArrayLike, mean: ArrayLike, rstd: ArrayLike, scale: ArrayLike, *,
    num_threads: int | None = ...,
) -> tuple[_Array, _Array, _Array]: ...

# Used by fastnorm._config.
def _set_isa(name: str) -> str: ...
def _get_isa() -> str: ...
def _available_isas() -> list[str]: ...
def _cpu_features() -> dict[str, bool]: ...
def _targets() -> list[tuple[str, bool, str | None]]: ...
def _bf16_convert(on: bool | None = ...) -> bool: ...
def _has_threads() -> bool: ...
def _num_procs() -> int: ...

# The channel normalizers, defined in this module and re-exported by
# fastnorm._family (whose stubs give their signatures).
from fastnorm._family import (
    batch_layer_norm as batch_layer_norm,
    batch_layer_norm_backward as batch_layer_norm_backward,
    batch_norm as batch_norm,
    batch_norm_backward as batch_norm_backward,
    channel_moments as channel_moments,
    group_norm as group_norm,
    group_norm_backward as group_norm_backward,
    instance_norm as instance_norm,
    instance_norm_backward as instance_norm_backward,
    switch_norm as switch_norm,
    switch_norm_backward as switch_norm_backward,
    weight_norm as weight_norm,
    weight_norm_backward as weight_norm_backward,
)
