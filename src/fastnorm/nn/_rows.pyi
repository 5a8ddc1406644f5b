# Type stubs of fastnorm.nn._rows: the row normalization layers.
from collections.abc import Iterable

from numpy.typing import ArrayLike, DTypeLike

from ._base import _Array, _Module

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
