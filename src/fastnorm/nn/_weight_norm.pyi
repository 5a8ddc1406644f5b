# Type stubs of fastnorm.nn._weight_norm: a reparameterised weight.
from numpy.typing import ArrayLike, DTypeLike

from ._base import _Array, _Module

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
