"""Layer classes in the style of ``torch.nn``: they hold parameters, keep what
their backward needs, and store parameter gradients.

    layer = fastnorm.nn.LayerNorm(768)
    y = layer(x)                 # forward, keeps x, mean, rstd
    dx = layer.backward(dy)      # sets layer.grad_weight, layer.grad_bias

Every layer has ``parameters()``, ``zero_grad()``, ``state_dict()`` /
``load_state_dict()`` (parameters, running statistics and
``num_batches_tracked``), ``train()`` / ``eval()``. ``backward(dy)`` uses the
input of the latest forward and *sets* (does not accumulate) the
``grad_<name>`` of each parameter, in the parameters' dtype.

Layers with running statistics (BatchNorm, InstanceNorm with
track_running_stats, SwitchNorm, BatchLayerNorm) update them in place on
each training forward and count those forwards in ``num_batches_tracked``;
``momentum=None`` makes the running statistics a cumulative average (the
functions get momentum = 1 / num_batches_tracked, as torch does).

``dtype=`` is float32 (the default), float64, float16 or bfloat16
(``ml_dtypes.bfloat16``; the name "bfloat16" where the optional ml_dtypes
package is installed); WeightNorm keeps its weight's dtype unless given one.
Parameters and their gradients are in the layer's dtype. Running statistics
are in the computing dtype: the layer's for float32 and float64, float32 for
a 16-bit layer (a running average rounded to 16 bits at every step would lose
the small updates). ``state_dict()`` returns each array in its own dtype, and
``load_state_dict`` converts parameters to the layer's dtype and running
statistics to theirs. The input need not have the layer's dtype: any dtype
the functions take works, and the output and dx have the input's dtype
(16-bit data computes in float32, with the parameters read as float32).
"""
import warnings

import numpy as np

from . import _core
from . import _family
from ._family import _is_int

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


def _shape_tuple(normalized_shape):
    """An int, or any iterable of ints (a tuple, a list, a range, a 1-d integer
    array, a torch.Size), as a tuple of ints."""
    if _is_int(normalized_shape):
        shape = (int(normalized_shape),)
    else:
        items = None
        # not a string, nor an array of more than one dimension (rows of ints)
        if (not isinstance(normalized_shape, (str, bytes))
                and getattr(normalized_shape, "ndim", 1) <= 1):
            try:
                items = tuple(normalized_shape)
            except TypeError:
                pass
        if items is None or not all(_is_int(s) for s in items):
            raise TypeError(
                f"normalized_shape must be an int or a tuple of ints, got {normalized_shape!r}"
            )
        shape = tuple(int(s) for s in items)
    if not shape or any(s < 0 for s in shape):
        raise ValueError(f"normalized_shape must be non-empty and non-negative, got {shape}")
    return shape


_LAYER_DTYPES = "float32, float64, float16 or bfloat16"


def _float_dtype(dtype):
    """A layer dtype: float32, float64, float16, or ml_dtypes.bfloat16 (the
    name "bfloat16" too, where the optional ml_dtypes package is installed)."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        if not (isinstance(dtype, str) and dtype == "bfloat16"):
            raise TypeError(f"dtype must be {_LAYER_DTYPES}, got {dtype!r}") from None
        try:  # NumPy knows the name once ml_dtypes is imported
            import ml_dtypes
        except ImportError:
            raise TypeError("dtype bfloat16 needs the optional ml_dtypes package "
                            '(pip install "fastnorm-cpu[bf16]")') from None
        dt = np.dtype(ml_dtypes.bfloat16)
    if dt not in (np.float32, np.float64, np.float16) and dt.name != "bfloat16":
        raise TypeError(f"dtype must be {_LAYER_DTYPES}, got {dt}")
    return dt


def _running_dtype(dt):
    """The dtype of the running statistics of a layer of dtype dt: the
    computing dtype, float32 for a 16-bit layer."""
    return np.dtype(np.float32) if dt.itemsize == 2 else dt


def _count(v, name):
    """A positive int constructor argument (num_features, num_groups, ...)."""
    if not _is_int(v):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    return int(v)


def _eps(eps):
    _core._eps_arg(eps)  # TypeError / ValueError naming eps
    return eps


def _momentum(momentum):
    """None (cumulative moving average) or a number in [0, 1], checked as the
    functions check it."""
    if momentum is not None:
        _family._momentum_number(momentum)  # TypeError / ValueError naming momentum
    return momentum


def _channel_axis(axis):
    if not _is_int(axis):
        raise TypeError(f"axis must be an int (the channel axis), got {type(axis).__name__}")
    if axis == 0:
        raise ValueError("axis is the channel axis and cannot be the batch axis 0")
    return int(axis)


def _state_value(name, value):
    """num_batches_tracked from a state dict: a non-negative integer scalar."""
    a = np.asarray(value)
    if a.shape != () or a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer scalar, got {a.dtype} of shape {a.shape}")
    if int(a) < 0:
        raise ValueError(f"{name} must be >= 0, got {int(a)}")
    return int(a)


def _state_array(name, value, shape, dtype):
    """A parameter or running statistic from a state dict: an array of real
    numbers (float, bfloat16, int or bool) of this shape, copied to dtype;
    anything else (strings, complex numbers, objects) is a TypeError naming
    the key."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers, got "
                        f"{type(value).__name__} that is not one") from exc
    if a.dtype.kind == "c":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {a.dtype} "
                        "(its imaginary part would be lost)")
    if a.dtype.kind not in "biuf" and a.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
    return np.array(a, dtype=dtype, copy=True)


class _Module:
    """Common machinery: parameters and buffers by name, state_dict, modes,
    the saved context."""

    _param_names = ()
    _buffer_names = ()
    training = True
    _saved = None
    num_batches_tracked = None  # an int where the layer counts training forwards

    def __call__(self, x):
        return self.forward(x)

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def _need_saved(self):
        if self._saved is None:
            raise RuntimeError("backward() called before forward()")
        return self._saved

    def _grad(self, g):
        """A gradient in the parameters' dtype."""
        return None if g is None else np.asarray(g).astype(self.dtype, copy=False)

    def parameters(self):
        return [getattr(self, n) for n in self._param_names if getattr(self, n) is not None]

    def zero_grad(self):
        for n in self._param_names:
            setattr(self, "grad_" + n, None)

    def _state_names(self):
        names = [n for n in self._param_names + self._buffer_names
                 if getattr(self, n) is not None]
        if self.num_batches_tracked is not None:
            names.append("num_batches_tracked")
        return names

    def state_dict(self):
        state = {}
        for n in self._state_names():
            if n == "num_batches_tracked":
                state[n] = np.array(self.num_batches_tracked, dtype=np.int64)
            else:
                state[n] = getattr(self, n).copy()
        return state

    def load_state_dict(self, state):
        """Loads the values, converted to the layer's dtype (running statistics:
        to float32 for a 16-bit layer), into the arrays the layer holds, as
        torch copies into its tensors: arrays taken from parameters() before
        the load see the loaded values. Checks every key, dtype and shape, and
        converts every value, before changing anything. A value that is not an
        array of real numbers (strings, complex numbers) is a TypeError naming
        its key."""
        names = self._state_names()
        expected = set(names)
        missing = expected - set(state)
        unexpected = set(state) - expected
        if missing or unexpected:
            raise KeyError(
                f"state_dict mismatch: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        new = {}
        for n in names:
            if n == "num_batches_tracked":
                new[n] = _state_value(n, state[n])
                continue
            dt = self.dtype if n in self._param_names else _running_dtype(self.dtype)
            new[n] = _state_array(n, state[n], getattr(self, n).shape, dt)
        for n, v in new.items():  # into the arrays the layer holds, as torch copies
            cur = getattr(self, n)  # (whoever holds parameters() sees the loaded values)
            if (isinstance(cur, np.ndarray) and cur.shape == v.shape and cur.dtype == v.dtype
                    and cur.flags.writeable):
                np.copyto(cur, v)
            else:
                setattr(self, n, v)

    def extra_repr(self):
        return ""

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


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


# --------------------------------------------------------------------------
# Channel normalizers: (N, C, *spatial), or channels-last with axis=-1
# --------------------------------------------------------------------------

class _ChannelNorm(_Module):
    """Per-channel weight / bias and, where tracked, running_mean / running_var
    of shape (C,), for x with the batch on axis 0 and channels on ``axis``."""

    _param_names = ("weight", "bias")
    _buffer_names = ("running_mean", "running_var")
    _ndims = None          # the input ndims a subclass accepts (None: any >= 2)
    _input_doc = "(N, C, *spatial)"
    _count_name = "num_features"

    def _init_common(self, C, eps, affine, axis, dtype):
        self.eps = _eps(eps)
        self.affine = bool(affine)
        self.axis = _channel_axis(axis)
        self.dtype = _float_dtype(dtype)
        self._C = C
        self.weight = np.ones(C, self.dtype) if self.affine else None
        self.bias = np.zeros(C, self.dtype) if self.affine else None
        self.grad_weight = None
        self.grad_bias = None
        self.running_mean = None
        self.running_var = None
        self._saved = None
        self.training = True

    def _init_running(self, shape):
        dt = _running_dtype(self.dtype)
        self.running_mean = np.zeros(shape, dt)
        self.running_var = np.ones(shape, dt)
        self.num_batches_tracked = 0

    def reset_running_stats(self):
        """running_mean = 0, running_var = 1, num_batches_tracked = 0 (where tracked)."""
        if self.running_mean is not None:
            self.running_mean[...] = 0.0
            self.running_var[...] = 1.0
        if self.num_batches_tracked is not None:
            self.num_batches_tracked = 0

    def reset_parameters(self):
        """Running statistics reset, weight = 1, bias = 0; gradients cleared."""
        self.reset_running_stats()
        if self.weight is not None:
            self.weight[...] = 1.0
        if self.bias is not None:
            self.bias[...] = 0.0
        self.zero_grad()

    # -- input checks -------------------------------------------------------

    def _check_ndim(self, x):
        if self._ndims is not None and x.ndim not in self._ndims:
            want = " or ".join(f"{d}-d" for d in self._ndims)
            raise ValueError(f"{type(self).__name__} expects a {want} input {self._input_doc}, "
                             f"got shape {x.shape}")
        if x.ndim < 2:
            raise ValueError(f"x must have a batch axis and a channel axis {self._input_doc}, "
                             f"got shape {x.shape}")

    def _channel_mismatch(self, x, C):
        raise ValueError(f"{type(self).__name__}: x has {C} channels on axis {self.axis}, "
                         f"expected {self._count_name}={self._C} (x has shape {x.shape})")

    def _check_input(self, x):
        x = _core._data_arg(x, "x")
        self._check_ndim(x)
        k = _family._channel_axis(self.axis, x.shape)
        if x.shape[k] != self._C:
            self._channel_mismatch(x, x.shape[k])
        return x

    # -- running statistics in the input's dtype ----------------------------

    def _running_for(self, x):
        """The running statistics as arrays of x's computing dtype (x's own, float32
        for 16-bit x) the functions may update in place: the layer's own, or
        copies written back by _store_running."""
        rm, rv = self.running_mean, self.running_var
        if rm is None:
            return None, None
        dt = _family._param_dtype(x)
        if rm.dtype != dt and rm.dtype != np.float64:  # float64 ones are updated as they are
            rm, rv = rm.astype(dt), rv.astype(dt)
        return rm, rv

    def _store_running(self, rm, rv):
        if rm is not None and rm is not self.running_mean:
            self.running_mean[...] = rm
            self.running_var[...] = rv

    def _factor(self):
        """The momentum of the next training forward (1 / count when momentum is None)."""
        if self.momentum is None:
            return 1.0 / (self.num_batches_tracked + 1)
        return float(self.momentum)

    def _counted(self):
        if self.num_batches_tracked is not None:
            self.num_batches_tracked += 1

    def _axis_repr(self):
        return "" if self.axis == 1 else f", axis={self.axis}"


class GroupNorm(_ChannelNorm):
    """Group normalization (as ``torch.nn.GroupNorm``; docs/numerics.md §5).

    Statistics per (sample, group of num_channels / num_groups channels);
    ``weight`` (ones) and ``bias`` (zeros) per channel when ``affine``.
    ``axis`` is the channel axis: 1 for ``(N, C, *spatial)``, -1 for channels-last.
    Same computation in training and evaluation.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> gn = nn.GroupNorm(4, 16)
    >>> x = np.random.default_rng(0).standard_normal((2, 16, 8, 8)).astype(np.float32)
    >>> gn(x).shape, gn.weight.shape
    ((2, 16, 8, 8), (16,))
    """

    _buffer_names = ()
    _count_name = "num_channels"

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, *, axis=1,
                 dtype=np.float32):
        G = _count(num_groups, "num_groups")
        C = _count(num_channels, "num_channels")
        if C % G:
            raise ValueError(f"num_channels={C} must be divisible by num_groups={G}")
        self.num_groups = G
        self.num_channels = C
        self._init_common(C, eps, affine, axis, dtype)

    def forward(self, x):
        x = self._check_input(x)
        y, mean, rstd = _family.group_norm(x, self.num_groups, self.weight, self.bias,
                                           eps=self.eps, axis=self.axis, return_stats=True)
        self._saved = (x, mean, rstd)
        return y

    def backward(self, dy):
        x, mean, rstd = self._need_saved()
        dx, dw, db = _family.group_norm_backward(dy, x, mean, rstd, self.weight, self.bias,
                                                 axis=self.axis)
        self.grad_weight = self._grad(dw)
        self.grad_bias = self._grad(db)
        return dx

    def extra_repr(self):
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"
                f"{self._axis_repr()}, dtype={self.dtype.name}")


class InstanceNorm(_ChannelNorm):
    """Instance normalization (as ``torch.nn.InstanceNorm{1,2,3}d``; docs/numerics.md §6).

    Statistics per (sample, channel) over the other axes. With
    ``track_running_stats``, training forwards update running_mean /
    running_var (C,) with the batch average of the instance statistics, and
    evaluation uses them; otherwise the input's statistics are always used.
    ``affine`` adds a per-channel weight and bias. ``InstanceNorm`` itself
    takes any (N, C, ...) input; the 1d/2d/3d classes check the ndim.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> inorm = nn.InstanceNorm2d(3, affine=True)
    >>> x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    >>> y = inorm(x)
    >>> bool(np.allclose(y.mean(axis=(2, 3)), 0, atol=1e-5))
    True
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=False,
                 track_running_stats=False, *, axis=1, dtype=np.float32):
        self.num_features = _count(num_features, "num_features")
        self.momentum = _momentum(momentum)
        self.track_running_stats = bool(track_running_stats)
        self._init_common(self.num_features, eps, affine, axis, dtype)
        self.num_batches_tracked = None
        if self.track_running_stats:
            self._init_running(self.num_features)

    def _channel_mismatch(self, x, C):
        if self.affine or self.track_running_stats:
            super()._channel_mismatch(x, C)
        # as torch: without affine parameters or running statistics, num_features is unused
        warnings.warn(f"{type(self).__name__}: x has {C} channels, num_features is "
                      f"{self.num_features} (unused: affine=False, track_running_stats=False)",
                      stacklevel=5)

    def forward(self, x):
        x = self._check_input(x)
        use_input_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        rm, rv = self._running_for(x) if self.track_running_stats else (None, None)
        y, mean, rstd = _family.instance_norm(
            x, self.weight, self.bias, rm, rv, training=use_input_stats,
            momentum=self._factor() if update else 0.0, eps=self.eps, axis=self.axis,
            return_stats=True)
        if update:
            self._store_running(rm, rv)
            self._counted()
        self._saved = (x, mean, rstd)
        return y

    def backward(self, dy):
        x, mean, rstd = self._need_saved()
        dx, dw, db = _family.instance_norm_backward(dy, x, mean, rstd, self.weight, self.bias,
                                                    axis=self.axis)
        self.grad_weight = self._grad(dw)
        self.grad_bias = self._grad(db)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}"
                f"{self._axis_repr()}, dtype={self.dtype.name}")


class InstanceNorm1d(InstanceNorm):
    """InstanceNorm of (N, C, L) input (the unbatched (C, L) form is refused)."""

    _ndims = (3,)
    _input_doc = "(N, C, L)"

    def _check_ndim(self, x):
        if x.ndim == 2:
            raise ValueError(f"InstanceNorm1d expects a 3-d input (N, C, L), got shape "
                             f"{x.shape}; unbatched (C, L) input is not supported: pass x[None]")
        super()._check_ndim(x)


class InstanceNorm2d(InstanceNorm):
    """InstanceNorm of (N, C, H, W) input."""

    _ndims = (4,)
    _input_doc = "(N, C, H, W)"


class InstanceNorm3d(InstanceNorm):
    """InstanceNorm of (N, C, D, H, W) input."""

    _ndims = (5,)
    _input_doc = "(N, C, D, H, W)"


class BatchNorm(_ChannelNorm):
    """Batch normalization (as ``torch.nn.BatchNorm{1,2,3}d``; docs/numerics.md §7).

    Training normalizes with the batch statistics per channel and, with
    ``track_running_stats``, updates running_mean / running_var in place and
    counts the forward in ``num_batches_tracked``; evaluation then uses the
    running statistics. Without tracking, the batch statistics are used in
    evaluation too. ``momentum=None``: cumulative moving average.
    ``BatchNorm`` itself takes any (N, C, ...) input; 1d/2d/3d check the ndim.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> bn = nn.BatchNorm2d(3)
    >>> x = np.random.default_rng(0).standard_normal((16, 3, 4, 4)).astype(np.float32)
    >>> y = bn(x)                          # training: batch statistics, running ones updated
    >>> bn.num_batches_tracked
    1
    >>> y_eval = bn.eval()(x)              # evaluation: the running statistics
    >>> bn.training
    False
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, axis=1, dtype=np.float32):
        self.num_features = _count(num_features, "num_features")
        self.momentum = _momentum(momentum)
        self.track_running_stats = bool(track_running_stats)
        self._init_common(self.num_features, eps, affine, axis, dtype)
        self.num_batches_tracked = None
        if self.track_running_stats:
            self._init_running(self.num_features)

    def forward(self, x):
        x = self._check_input(x)
        batch_stats = self.training or not self.track_running_stats
        update = self.training and self.track_running_stats
        rm, rv = self._running_for(x) if self.track_running_stats else (None, None)
        y, mean, rstd = _family.batch_norm(
            x, rm, rv, self.weight, self.bias, training=batch_stats,
            momentum=self._factor() if update else 0.0, eps=self.eps, axis=self.axis,
            return_stats=True)
        if update:
            self._store_running(rm, rv)
            self._counted()
        self._saved = (x, mean, rstd, batch_stats)
        return y

    def backward(self, dy):
        x, mean, rstd, batch_stats = self._need_saved()
        dx, dw, db = _family.batch_norm_backward(dy, x, mean, rstd, self.weight, self.bias,
                                                 training=batch_stats, axis=self.axis)
        self.grad_weight = self._grad(dw)
        self.grad_bias = self._grad(db)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}"
                f"{self._axis_repr()}, dtype={self.dtype.name}")


class BatchNorm1d(BatchNorm):
    """BatchNorm of (N, C) or (N, C, L) input."""

    _ndims = (2, 3)
    _input_doc = "(N, C) or (N, C, L)"


class BatchNorm2d(BatchNorm):
    """BatchNorm of (N, C, H, W) input."""

    _ndims = (4,)
    _input_doc = "(N, C, H, W)"


class BatchNorm3d(BatchNorm):
    """BatchNorm of (N, C, D, H, W) input."""

    _ndims = (5,)
    _input_doc = "(N, C, D, H, W)"


class SwitchNorm(_ChannelNorm):
    """Switchable Normalization (Luo et al., 2018; docs/numerics.md §9).

    Mixes instance, layer and batch statistics with softmax(mean_weight) and
    softmax(var_weight) (3 logits each, initialised to ones). Parameters:
    ``weight`` / ``bias`` per channel (when ``affine``), ``mean_weight``,
    ``var_weight``; running_mean / running_var (C,) for the batch part,
    updated by training forwards and used in evaluation.
    ``backward`` sets the gradients of all four parameters.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> sn = nn.SwitchNorm(3)
    >>> x = np.random.default_rng(0).standard_normal((4, 3, 5, 5)).astype(np.float32)
    >>> dx = sn.backward(np.ones_like(sn(x)))
    >>> sn.grad_mean_weight.shape, sn.grad_var_weight.shape
    ((3,), (3,))
    """

    _param_names = ("weight", "bias", "mean_weight", "var_weight")

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, *, axis=1,
                 dtype=np.float32):
        self.num_features = _count(num_features, "num_features")
        self.momentum = _momentum(momentum)
        self._init_common(self.num_features, eps, affine, axis, dtype)
        self.mean_weight = np.ones(3, self.dtype)
        self.var_weight = np.ones(3, self.dtype)
        self.grad_mean_weight = None
        self.grad_var_weight = None
        self._init_running(self.num_features)

    def reset_parameters(self):
        super().reset_parameters()
        self.mean_weight[...] = 1.0
        self.var_weight[...] = 1.0

    def forward(self, x):
        x = self._check_input(x)
        rm, rv = self._running_for(x)
        y, stats = _family.switch_norm(
            x, self.weight, self.bias, self.mean_weight, self.var_weight, rm, rv,
            training=self.training, momentum=self._factor() if self.training else 0.0,
            eps=self.eps, axis=self.axis, return_stats=True)
        if self.training:
            self._store_running(rm, rv)
            self._counted()
        self._saved = (x, stats)
        return y

    def backward(self, dy):
        x, stats = self._need_saved()
        dx, dw, db, dmw, dvw = _family.switch_norm_backward(
            dy, x, stats, self.weight, self.bias, self.mean_weight, self.var_weight,
            axis=self.axis)
        self.grad_weight = self._grad(dw)
        self.grad_bias = self._grad(db)
        self.grad_mean_weight = self._grad(dmw)
        self.grad_var_weight = self._grad(dvw)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}{self._axis_repr()}, dtype={self.dtype.name}")


class BatchLayerNorm(_ChannelNorm):
    """Batch Layer Normalization (Ziaee & Cano, 2022; docs/numerics.md §8) of
    channels-last x ``(B, *feature_shape)``, feature_shape ending with D = num_features.

    ``weight`` / ``bias`` of shape (D,) when ``affine``; running_mean /
    running_var of ``feature_shape`` (default (D,)), updated by training
    forwards. In evaluation, ``inference_mean`` / ``inference_var`` choose
    'population' (running) or 'batch' (current mini-batch) statistics for the
    batch branch. ``batch_size`` fixes the B of the mixing constants (default:
    the runtime batch size).

    Examples
    --------
    >>> import numpy as np
    >>> from fastnorm import nn
    >>> bln = nn.BatchLayerNorm(16)
    >>> x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    >>> bln(x).shape, bln.running_mean.shape
    ((8, 16), (16,))
    """

    _input_doc = "(B, *feature_shape)"

    def __init__(self, num_features, feature_shape=None, eps=1e-3, momentum=0.1, affine=True,
                 batch_size=None, inference_mean="population", inference_var="population", *,
                 dtype=np.float32):
        D = _count(num_features, "num_features")
        if feature_shape is None:
            fshape = (D,)
        else:
            if _is_int(feature_shape):
                feature_shape = (feature_shape,)
            if not isinstance(feature_shape, (tuple, list)) or not all(
                    _is_int(s) for s in feature_shape):
                raise TypeError(f"feature_shape must be a tuple of ints, got {feature_shape!r}")
            fshape = tuple(int(s) for s in feature_shape)
            if not fshape or any(s <= 0 for s in fshape) or fshape[-1] != D:
                raise ValueError(f"feature_shape must be positive sizes ending with "
                                 f"num_features={D}, got {fshape}")
        if batch_size is not None and (not _is_int(batch_size) or batch_size <= 0):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        for name, v in (("inference_mean", inference_mean), ("inference_var", inference_var)):
            if v not in ("population", "batch"):
                raise ValueError(f"{name} must be 'population' or 'batch', got {v!r}")
        self.num_features = D
        self.feature_shape = fshape
        self.momentum = _momentum(momentum)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.inference_mean = inference_mean
        self.inference_var = inference_var
        self._init_common(D, eps, affine, -1, dtype)
        self._init_running(fshape)

    def _check_input(self, x):
        x = _core._data_arg(x, "x")
        if x.ndim != 1 + len(self.feature_shape) or tuple(x.shape[1:]) != self.feature_shape:
            raise ValueError(f"BatchLayerNorm expects x of shape (B, *{self.feature_shape}), "
                             f"got {x.shape}")
        return x

    def forward(self, x):
        x = self._check_input(x)
        rm, rv = self._running_for(x)
        y, stats = _family.batch_layer_norm(
            x, self.weight, self.bias, rm, rv, training=self.training,
            batch_size=self.batch_size, momentum=self._factor() if self.training else 0.0,
            eps=self.eps, inference_mean=self.inference_mean, inference_var=self.inference_var,
            return_stats=True)
        if self.training:
            self._store_running(rm, rv)
            self._counted()
        self._saved = (x, stats)
        return y

    def backward(self, dy):
        x, stats = self._need_saved()
        dx, dw, db = _family.batch_layer_norm_backward(dy, x, stats, self.weight, self.bias)
        self.grad_weight = self._grad(dw)
        self.grad_bias = self._grad(db)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, feature_shape={self.feature_shape}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine}, "
                f"batch_size={self.batch_size}, inference_mean={self.inference_mean!r}, "
                f"inference_var={self.inference_var!r}, dtype={self.dtype.name}")


# --------------------------------------------------------------------------
# Weight normalization: a reparameterised weight, not a layer over activations
# --------------------------------------------------------------------------

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
