"""The layers' common machinery (parameters and buffers by name, state_dict,
modes, the saved context) and the checks of constructor arguments and state."""
import numpy as np

from .. import _core
from .. import _family
from .._family import _is_int


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
