"""The row normalization layers: LayerNorm and RMSNorm over the trailing
``normalized_shape`` axes."""
import numpy as np

from .. import _core
from ._base import _Module, _eps, _float_dtype, _shape_tuple


class _Norm(_Module):
    """Normalization over the trailing ``normalized_shape`` axes."""

    def __init__(self, normalized_shape, eps, dtype, eps_none=False):
        self.normalized_shape = _shape_tuple(normalized_shape)
        # checked here, as by the channel layers (eps_none: None is a valid eps)
        self.eps = None if eps is None and eps_none else _eps(eps)
        self.dtype = _float_dtype(dtype)
        k = len(self.normalized_shape)
        # the last axis as the int -1, which the functions take without parsing
        self._axis = -1 if k == 1 else tuple(range(-k, 0))
        self._saved = None
        self.training = True

    def _check_input(self, x):
        x = np.asarray(x)
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(
                f"x must end with the normalized shape {self.normalized_shape}, got {x.shape}"
            )
        return x

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={getattr(self, 'elementwise_affine', None)}, "
                f"dtype={self.dtype.name}")


class LayerNorm(_Norm):
    """Layer normalization over the trailing ``normalized_shape`` axes (as ``torch.nn.LayerNorm``).

    Holds ``weight`` (ones) and ``bias`` (zeros) of ``normalized_shape`` when
    ``elementwise_affine`` (``bias=False`` drops the bias). ``backward(dy)``
    returns dx and sets ``grad_weight`` / ``grad_bias``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> ln = nn.LayerNorm(8)
    >>> x = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    >>> y = ln(x)
    >>> dx = ln.backward(np.ones_like(y))
    >>> dx.shape, ln.grad_weight.shape, sorted(ln.state_dict())
    ((4, 8), (8,), ['bias', 'weight'])
    """

    _param_names = ("weight", "bias")

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=np.float32):
        super().__init__(normalized_shape, eps, dtype)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = np.ones(self.normalized_shape, self.dtype) if elementwise_affine else None
        self.bias = (np.zeros(self.normalized_shape, self.dtype)
                     if elementwise_affine and bias else None)
        self.grad_weight = None
        self.grad_bias = None

    def forward(self, x):
        x = self._check_input(x)
        y, mean, rstd = _core.layer_norm(x, self.weight, self.bias, axis=self._axis,
                                         eps=self.eps, return_stats=True)
        self._saved = (x, mean, rstd)
        return y

    def backward(self, dy):
        x, mean, rstd = self._need_saved()
        dx, dw, db = _core.layer_norm_backward(dy, x, mean, rstd, self.weight, axis=self._axis)
        self.grad_weight = self._grad(dw) if self.weight is not None else None
        self.grad_bias = self._grad(db) if self.bias is not None else None
        return dx


class RMSNorm(_Norm):
    """Root-mean-square normalization over ``normalized_shape`` (as ``torch.nn.RMSNorm``).

    ``eps=None`` uses the machine epsilon of the input's computing dtype (the
    input's for float32 and float64, float32's for 16-bit input). Holds
    ``weight`` (ones) when ``elementwise_affine``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> norm = nn.RMSNorm((4, 8), dtype=np.float64)
    >>> y = norm(np.ones((2, 4, 8)))
    >>> float(y.max())
    1.0
    """

    _param_names = ("weight",)

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=np.float32):
        super().__init__(normalized_shape, eps, dtype, eps_none=True)
        self.elementwise_affine = bool(elementwise_affine)
        self.weight = np.ones(self.normalized_shape, self.dtype) if elementwise_affine else None
        self.grad_weight = None

    def forward(self, x):
        x = self._check_input(x)
        y, rstd = _core.rms_norm(x, self.weight, axis=self._axis, eps=self.eps,
                                 return_stats=True)
        self._saved = (x, rstd)
        return y

    def backward(self, dy):
        x, rstd = self._need_saved()
        dx, dw = _core.rms_norm_backward(dy, x, rstd, self.weight, axis=self._axis)
        self.grad_weight = self._grad(dw) if self.weight is not None else None
        return dx
