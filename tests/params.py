"""The parametrization the per-normalizer test modules share.

conftest.py holds the fixtures (``isa``, ``dtype``, ``rng``), the tolerances
per dtype (``TOL``, ``assert_close``) and the array generator (``LAYOUTS``,
``array_cases``, ``make_array``); this module holds what the test modules pass
to ``pytest.mark.parametrize`` and the checks they repeat:

- dtypes beyond float32/float64: ``F16``, ``BF16`` and ``ml_dtypes`` (None
  where ml_dtypes is not installed; imported on first use), ``HALF`` (their
  pytest params, bfloat16 skipped without ml_dtypes);
- affine choices (``AFFINE``), training/eval (``TRAINING``), layout subsets
  (``STRIDED_LAYOUTS``, ``OUT_LAYOUTS``, ``IN_PLACE_LAYOUTS``; ``ROW_LAYOUTS``
  adds rows in reverse memory order), out arrays
  overlapping x (``SHIFTS``), zero-size inputs (``ZERO_SIZE``, ``zero_size``);
- channel-axis helpers (``channel_others``, ``per_channel``);
- oracle checks: ``assert_fd`` and ``assert_grads_fd`` (gradients against
  finite differences),
  ``check_stats`` (statistics against the float64 reference);
- ``ROW_NORMS``: LayerNorm and RMSNorm described alike, so that the tests
  they share run once per normalizer (``row_norm_params``).

Test modules import it with ``from params import ...`` (pytest puts this
directory on sys.path).
"""
from dataclasses import dataclass, field

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import LAYOUTS, assert_close, assert_rel_close, norm_axes, numeric_grad, stats_shape

# --------------------------------------------------------------------------
# dtypes
# --------------------------------------------------------------------------

F16 = np.dtype(np.float16)


def __getattr__(name):
    """ml_dtypes, BF16 and HALF import ml_dtypes (slow to import) on first use."""
    if name not in ("ml_dtypes", "BF16", "HALF"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - the bf16 extra is not installed
        ml_dtypes = None
    bf16 = None if ml_dtypes is None else np.dtype(ml_dtypes.bfloat16)
    values = {
        "ml_dtypes": ml_dtypes,
        "BF16": bf16,
        "HALF": [
            pytest.param(F16, id="float16"),
            pytest.param(bf16, id="bfloat16",
                         marks=pytest.mark.skipif(bf16 is None,
                                                  reason="ml_dtypes is not installed")),
        ],
    }
    globals().update(values)
    return values[name]


# --------------------------------------------------------------------------
# Switches of the calls
# --------------------------------------------------------------------------

# (weight, bias) given or not
AFFINE = [(False, False), (True, False), (False, True), (True, True)]
AFFINE_IDS = ["plain", "weight", "bias", "weight+bias"]
WEIGHT = [pytest.param(False, id="noweight"), pytest.param(True, id="weight")]
TRAINING = [pytest.param(True, id="train"), pytest.param(False, id="eval")]

# --------------------------------------------------------------------------
# Layouts (conftest.LAYOUTS) by what a test does with them
# --------------------------------------------------------------------------

# every layout but C: compared bit for bit with the C layout's result
NON_C_LAYOUTS = [n for n in LAYOUTS if n != "C"]
# the same without unaligned (run apart where an unaligned x is a test of its own)
STRIDED_LAYOUTS = [n for n in LAYOUTS if n not in ("C", "unaligned")]
# every layout an out may have (a byte-swapped out is refused: test_api)
OUT_LAYOUTS = [n for n in LAYOUTS if n != "byteswapped"]
# layouts of an x that is its own out
IN_PLACE_LAYOUTS = ["C", "F", "sliced", "negstride", "padded", "unaligned"]

def rows_reversed(a):
    """Rows in reverse order in memory: a negative row stride, contiguous rows."""
    return np.ascontiguousarray(a[::-1])[::-1]


# the layouts plus one whose rows view has a negative leading stride
ROW_LAYOUTS = dict(LAYOUTS, rowsrev=rows_reversed)

# out overlapping x: name -> (buffer -> (x, out), buffer shape)
SHIFTS = {
    "1d-forward": (lambda buf: (buf[:-1], buf[1:]), (101,)),
    "1d-backward": (lambda buf: (buf[1:], buf[:-1]), (101,)),
    "rows-forward": (lambda buf: (buf[:-1], buf[1:]), (65, 40)),
    "rows-backward": (lambda buf: (buf[1:], buf[:-1]), (65, 40)),
    "cols-forward": (lambda buf: (buf[:, :-1], buf[:, 1:]), (30, 41)),
    "cols-backward": (lambda buf: (buf[:, 1:], buf[:, :-1]), (30, 41)),
    "rows-by-two": (lambda buf: (buf[:-2], buf[2:]), (66, 40)),
    "reversed": (lambda buf: (buf, buf[::-1]), (64, 40)),
    "flat-shift": (lambda buf: (buf.ravel()[:-5].reshape(-1, 43),
                                buf.ravel()[5:].reshape(-1, 43)), (43 * 20 + 5,)),
}

# --------------------------------------------------------------------------
# Zero-size inputs
# --------------------------------------------------------------------------

# (shape, normalized axis) of a row normalizer
ZERO_SIZE = [
    ((0, 8), -1), ((0, 8), 0), ((4, 0), -1), ((4, 0), 0), ((0,), 0),
    ((2, 0, 3), (0, 2)), ((2, 0, 3), 1), ((3, 4, 0), -1), ((0, 3, 4), (-2, -1)),
]
ZERO_SIZE_IDS = [f"{s}-{a}" for s, a in ZERO_SIZE]


def zero_size(shape, dtype, how):
    """A zero-size array: a new one ("new") or a slice of a non-empty one with
    its ordinary strides ("slice")."""
    if how == "new":
        return np.zeros(shape, dtype=dtype)
    full = np.ones(tuple(s if s else 3 for s in shape), dtype=dtype)
    return full[tuple(slice(0, s) for s in shape)]


# --------------------------------------------------------------------------
# Channel axes
# --------------------------------------------------------------------------

def channel_others(shape, axis):
    """Every axis of shape but the channel axis: what a per-channel sum runs over."""
    k = axis % len(shape)
    return tuple(a for a in range(len(shape)) if a != k)


def per_channel(v, ndim, axis):
    """A per-channel vector as float64, shaped to broadcast along the channel axis."""
    shp = [1] * ndim
    shp[axis] = -1
    return np.asarray(v, np.float64).reshape(shp)


# --------------------------------------------------------------------------
# Oracle checks
# --------------------------------------------------------------------------

# a float64 gradient against central differences with h = 1e-6
FD_TOL = 1e-7


def assert_fd(got, want, what, tol=FD_TOL):
    """max|got - want| <= tol * max(1, max|want|), got taken in want's shape."""
    got = np.asarray(got, np.float64).reshape(np.shape(want))
    err = float(np.max(np.abs(got - want), initial=0.0))
    bound = tol * max(1.0, float(np.max(np.abs(want), initial=0.0)))
    assert err <= bound, f"{what}: error {err:.3e}"


def check_stats(names, got, want, x, axis, dtype, what):
    """Statistics of a row normalizer against the reference's: the dtype of x,
    one per row; a mean to the tolerance of x's scale, an rstd relative to itself."""
    for name, g, e in zip(names, got, want):
        assert g.dtype == dtype and g.shape == stats_shape(x.shape, axis), f"{name} {what}"
        if name == "mean":
            assert_close(g, e, dtype, scale=np.max(np.abs(x), initial=0.0),
                         what=f"{name} {what}")
        else:
            assert_rel_close(g, e, dtype, what=f"{name} {what}")


# --------------------------------------------------------------------------
# Row normalizers: LayerNorm and RMSNorm described alike
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class RowNorm:
    """One row normalizer: its functions, the reference's, and what they take and give.

    params: the parameters beside x (weight, and bias for LayerNorm); stats:
    what return_stats adds and the backward takes; grads: what the backward
    gives. eps_choices: the eps arguments its tests take (None: the default).
    seeds: the fixed seeds of the tests that draw their data from one."""

    name: str
    forward_fn: object
    backward_fn: object
    ref_forward_fn: object
    ref_backward_fn: object
    params: tuple
    stats: tuple
    default_eps: object
    eps_choices: tuple
    xhat_fn: object
    seeds: dict = field(default_factory=dict)

    @property
    def has_bias(self):
        return "bias" in self.params

    @property
    def grads(self):
        return ("dx",) + tuple("d" + p for p in self.params)

    def _args(self, w, b):
        if not self.has_bias:
            assert b is None, f"{self.name} takes no bias"
            return (w,)
        return (w, b)

    def __call__(self, x, w=None, b=None, **kw):
        """The forward; with return_stats=True, (y, (stat, ...))."""
        res = self.forward_fn(x, *self._args(w, b), **kw)
        if kw.get("return_stats"):
            return res[0], tuple(res[1:])
        return res

    def backward(self, dy, x, stats, w=None, **kw):
        return tuple(self.backward_fn(dy, x, *stats, w, **kw))

    def ref(self, x, w=None, b=None, **kw):
        """The float64 reference: (y, (stat, ...))."""
        res = self.ref_forward_fn(x, *self._args(w, b), **kw)
        return res[0], tuple(res[1:])

    def ref_backward(self, dy, x, stats, w=None, **kw):
        return tuple(self.ref_backward_fn(dy, x, *stats, w, **kw))

    def xhat(self, x, axis, stats):
        """The normalized x (before weight and bias) in float64: the scale of
        dweight's sum."""
        return self.xhat_fn(x, axis, stats)

    def default_params(self, n):
        """The parameters that change nothing: weight 1, bias 0."""
        return (np.ones(n), np.zeros(n))[:len(self.params)]


def _layer_norm_xhat(x, axis, stats):
    """From the reference's own statistics."""
    return ref.layer_norm(x, axis=axis)[0]


def _rms_norm_xhat(x, axis, stats):
    """x times the given rstd."""
    (rstd,) = stats
    return x.astype(np.float64) * np.expand_dims(rstd.astype(np.float64), norm_axes(axis, x.ndim))


LAYER_NORM = RowNorm(
    "layer_norm", fn.layer_norm, fn.layer_norm_backward, ref.layer_norm, ref.layer_norm_backward,
    params=("weight", "bias"), stats=("mean", "rstd"), default_eps=1e-5,
    eps_choices=(1e-5, 0.0), xhat_fn=_layer_norm_xhat,
    seeds={"forward": (11, 1), "backward": (12, 2), "layouts": 13},
)
RMS_NORM = RowNorm(
    "rms_norm", fn.rms_norm, fn.rms_norm_backward, ref.rms_norm, ref.rms_norm_backward,
    params=("weight",), stats=("rstd",), default_eps=None,
    eps_choices=(None, 0.0), xhat_fn=_rms_norm_xhat,
    seeds={"forward": (21, 3), "backward": (22, 4), "layouts": 23},
)
ROW_NORMS = [LAYER_NORM, RMS_NORM]


def row_norm_params(per_norm=None, ids=None):
    """pytest params of (norm, *values) for every row normalizer.

    per_norm(norm) gives the list of value tuples of that normalizer (none:
    the normalizer alone); ids(values) names one (none: str of each value)."""
    out = []
    for norm in ROW_NORMS:
        if per_norm is None:
            out.append(pytest.param(norm, id=norm.name))
            continue
        for values in per_norm(norm):
            values = values if isinstance(values, tuple) else (values,)
            name = ids(values) if ids else "-".join(str(v) for v in values)
            out.append(pytest.param(norm, *values, id=f"{norm.name}-{name}"))
    return out


def assert_grads_fd(loss, args, grads, names, tol=FD_TOL):
    """Each gradient in grads against central differences of the scalar
    loss(*args) in the argument of the same place (float64 args)."""
    for i, (got, name) in enumerate(zip(grads, names)):
        def partial(v, i=i):
            return loss(*args[:i], v, *args[i + 1:])

        assert_fd(got, numeric_grad(partial, args[i]), name, tol)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------

def running_stats_bad_kwargs(x, n_params):
    """Keyword arguments that a normalizer with running statistics refuses
    (x of that normalizer; n_params: a parameter length it does not take)."""
    return [
        dict(weight=np.ones(n_params, x.dtype)),
        dict(eps=-1.0),
        dict(momentum=1.5),
        dict(momentum=2.0),
        dict(momentum=None),
        dict(out=np.zeros(x.shape[:-1] + (x.shape[-1] + 1,), x.dtype)),
        dict(training="yes"),
    ]


def assert_refused_untouched(call, bad_kwargs, keep, out_like=None):
    """call(**kw) raises ValueError or TypeError for each kw of bad_kwargs and
    leaves the arrays of keep (running statistics, say) as they were. With
    out_like, a call whose kw names no out gets a fresh out (out_like's shape
    and dtype, filled with 7), which must stay so."""
    before = [a.copy() for a in keep]
    for kw in bad_kwargs:
        kw = dict(kw)
        out = None
        if out_like is not None and "out" not in kw:
            out = kw["out"] = np.full_like(out_like, 7.0)
        with pytest.raises((ValueError, TypeError)):
            call(**kw)
        for a, b in zip(keep, before):
            assert np.array_equal(a, b, equal_nan=True), f"{kw}: an array was modified"
        if out is not None:
            assert np.all(out == 7.0), f"{kw}: out was written"
