"""WeightNorm: a reparameterised weight, not a layer over activations."""
import numpy as np

from .. import _core
from .. import _family
from .._family import _is_int
from ._base import _Module, _float_dtype


class WeightNorm(_Module):
    """Weight normalization (Salimans & Kingma, 2016; docs/numerics.md §10):
    w = g * v / ||v||, the norm over every axis but ``axis`` (None: over all).

    Built from a weight array of float32, float64, float16 or bfloat16, whose
    dtype the layer keeps (``dtype=`` converts it first): ``v`` is a copy of
    it and ``g`` its norm, shaped like
    ``torch.nn.utils.parametrizations.weight_norm``'s (size 1 on every axis
    but ``axis``; 0-d for axis=None), so that ``compute_weight()`` starts out
    equal to the weight. ``axis`` is a NumPy axis: -1 is the last axis (torch's
    dim=-1 means the whole tensor; use axis=None for that). The norm is
    sqrt(sum(v^2) + eps); eps=0 is torch's definition.

        wn = WeightNorm(w)
        w = wn()                         # compute_weight()
        grad_g, grad_v = wn.backward(dw) # also sets wn.grad_g, wn.grad_v

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> w = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    >>> wn = nn.WeightNorm(w)
    >>> wn.g.shape, bool(np.allclose(wn(), w))
    ((4, 1), True)
    >>> grad_g, grad_v = wn.backward(np.ones_like(w))
    >>> grad_g.shape, grad_v.shape
    ((4, 1), (4, 3))
    """

    _param_names = ("g", "v")

    def __init__(self, weight, axis=0, eps=0.0, *, dtype=None):
        v = _core._data_arg(weight, "weight")
        e = _core._eps_arg(eps)
        if dtype is not None:
            v = v.astype(_float_dtype(dtype), copy=False)
        if axis is None:
            others = None
        else:
            if not _is_int(axis):
                raise TypeError(f"axis must be an int or None, got {type(axis).__name__}")
            if v.ndim == 0:
                raise ValueError("a 0-d weight needs axis=None")
            (k,) = _core._axes_arg(int(axis), v.ndim)
            others = tuple(i for i in range(v.ndim) if i != k)
            axis = int(axis)
        self.axis = axis
        self.eps = eps
        self.dtype = v.dtype
        v64 = v.astype(np.float64)
        norm = np.sqrt(np.sum(v64 * v64, axis=others, keepdims=others is not None) + e)
        self.g = np.asarray(norm, dtype=self.dtype)
        self.v = np.array(v, dtype=self.dtype, copy=True)
        self.grad_g = None
        self.grad_v = None
        self.training = True

    def compute_weight(self):
        """w = g * v / ||v||, like v."""
        return _family.weight_norm(self.v, self.g, axis=self.axis, eps=self.eps)

    forward = compute_weight

    def __call__(self):
        return self.compute_weight()

    @property
    def weight(self):
        return self.compute_weight()

    def backward(self, dw):
        """Sets and returns (grad_g, grad_v) for the gradient dw of the weight,
        at the current g and v."""
        dv, dg = _family.weight_norm_backward(dw, self.v, self.g, axis=self.axis, eps=self.eps)
        self.grad_g = self._grad(dg)
        self.grad_v = self._grad(dv)
        return self.grad_g, self.grad_v

    def extra_repr(self):
        return (f"shape={self.v.shape}, axis={self.axis}, eps={self.eps}, "
                f"dtype={self.dtype.name}")
