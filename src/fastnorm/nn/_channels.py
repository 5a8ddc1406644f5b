"""The channel normalization layers: GroupNorm, InstanceNorm, BatchNorm,
SwitchNorm and BatchLayerNorm, over (N, C, *spatial) data or channels-last
data with axis=-1."""
import warnings

import numpy as np

from .. import _core
from .. import _family
from .._family import _is_int
from ._base import (
    _Module, _channel_axis, _count, _eps, _float_dtype, _momentum, _running_dtype,
)


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
