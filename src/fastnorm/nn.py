"""Layer classes in the style of ``torch.nn``: they hold parameters, keep what
their backward needs, and store parameter gradients.

    layer = fastnorm.nn.LayerNorm(768)
    y = layer(x)                 # forward, keeps x, mean, rstd
    dx = layer.backward(dy)      # sets layer.grad_weight, layer.grad_bias
"""
import numpy as np

from . import _core

__all__ = ["LayerNorm", "RMSNorm"]


def _is_int(v):
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _shape_tuple(normalized_shape):
    if _is_int(normalized_shape):
        shape = (int(normalized_shape),)
    elif isinstance(normalized_shape, (tuple, list)) and all(_is_int(s) for s in normalized_shape):
        shape = tuple(int(s) for s in normalized_shape)
    else:
        raise TypeError(
            f"normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}"
        )
    if not shape or any(s < 0 for s in shape):
        raise ValueError(f"normalized_shape must be non-empty and non-negative, got {shape}")
    return shape


def _float_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


class _Norm:
    """Common machinery: parameters by name, state_dict, the saved context."""

    _param_names = ()

    def __init__(self, normalized_shape, eps, dtype):
        self.normalized_shape = _shape_tuple(normalized_shape)
        self.eps = eps
        self.dtype = _float_dtype(dtype)
        self._axis = tuple(range(-len(self.normalized_shape), 0))
        self._saved = None
        self.training = True

    def __call__(self, x):
        return self.forward(x)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def _check_input(self, x):
        x = np.asarray(x)
        k = len(self.normalized_shape)
        if x.ndim < k or tuple(x.shape[-k:]) != self.normalized_shape:
            raise ValueError(
                f"x must end with the normalized shape {self.normalized_shape}, got {x.shape}"
            )
        return x

    def _need_saved(self):
        if self._saved is None:
            raise RuntimeError("backward() called before forward()")
        return self._saved

    def parameters(self):
        return [getattr(self, n) for n in self._param_names if getattr(self, n) is not None]

    def zero_grad(self):
        for n in self._param_names:
            setattr(self, "grad_" + n, None)

    def state_dict(self):
        return {n: getattr(self, n).copy() for n in self._param_names
                if getattr(self, n) is not None}

    def load_state_dict(self, state):
        expected = {n for n in self._param_names if getattr(self, n) is not None}
        missing = expected - set(state)
        unexpected = set(state) - expected
        if missing or unexpected:
            raise KeyError(
                f"state_dict mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        new = {}
        for n in expected:
            v = np.asarray(state[n])
            if v.shape != self.normalized_shape:
                raise ValueError(f"{n} must have shape {self.normalized_shape}, got {v.shape}")
            new[n] = np.array(v, dtype=self.dtype, copy=True)
        for n, v in new.items():
            setattr(self, n, v)

    def __repr__(self):
        return (f"{type(self).__name__}({self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={getattr(self, 'elementwise_affine', None)}, "
                f"dtype={self.dtype.name})")


class LayerNorm(_Norm):
    """Layer normalization over the trailing ``normalized_shape`` axes (as ``torch.nn.LayerNorm``).

    Holds ``weight`` (ones) and ``bias`` (zeros) of ``normalized_shape`` when
    ``elementwise_affine`` (``bias=False`` drops the bias). ``backward(dy)``
    returns dx and sets ``grad_weight`` / ``grad_bias``.
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
        self.grad_weight = dw if self.weight is not None else None
        self.grad_bias = db if self.bias is not None else None
        return dx


class RMSNorm(_Norm):
    """Root-mean-square normalization over ``normalized_shape`` (as ``torch.nn.RMSNorm``).

    ``eps=None`` uses the machine epsilon of the input's dtype. Holds
    ``weight`` (ones) when ``elementwise_affine``.
    """

    _param_names = ("weight",)

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=np.float32):
        super().__init__(normalized_shape, eps, dtype)
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
        self.grad_weight = dw if self.weight is not None else None
        return dx
