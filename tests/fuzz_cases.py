"""Random calls of fastnorm's public normalizers and layers, one case per seed.

``make_case(seed)`` builds one call from ``numpy.random.default_rng(seed)``
alone, so a seed replays its case exactly: the target (a function of
``fastnorm.__all__`` or a ``fastnorm.nn`` layer), shapes (zero-size and
one-element axes included), axes, memory layouts, dtypes (float32, float64,
float16, bfloat16 when ml_dtypes is installed, and invalid ones), parameters,
``out=``, ``num_threads`` and the data (ordinary values, a large offset,
huge or subnormal magnitudes, NaN, Inf). At most one argument is made
invalid on purpose.

``run_case(case)`` calls it and returns a list of problems (empty: passed):

- an invalid argument must raise ValueError or TypeError naming it, with
  every array passed (inputs, ``out``, running statistics) byte for byte
  unchanged;
- a valid call must succeed; with finite data its results must match the
  float64 formulas of ``fastnorm.reference`` (or central differences of
  them for the backward passes that the reference has no formula for)
  within the suite's tolerances (float32 about 1e-5 of the result's scale,
  float64 about 1e-12, 16-bit data one unit in the last place more), the
  returned dtypes must be the documented ones, and the inputs must be
  unchanged (only ``out``, ``sum_out`` and running statistics are written).

``threads_problems(seed)`` re-runs a successful case with num_threads=1 and
num_threads=2 and compares every result bit for bit (NaN payloads
included): the kernels promise the same bits for any thread count.

Used by tests/test_fuzz.py and tools/fuzz_campaign.py; ``python
tests/fuzz_cases.py [--huge-threads] SEED [SEED...]`` replays cases and
prints their problems (--huge-threads: the thread counts of a campaign run
with that option).
"""
import math
import sys
import warnings

import numpy as np

import fastnorm
from fastnorm import nn
from fastnorm import reference as ref

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # bfloat16 cases become float16 ones
    BF16 = None

F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)

# tolerance per computing dtype, relative to the scale of the compared quantity
TOL = {F32: 1e-5, F64: 1e-12}
# central differences of float64 formulas are good to about this much
FD_TOL = {F32: 1e-5, F64: 1e-8}
MANT = {"float16": 11, "bfloat16": 8}

# Thread counts of valid calls. Counts far above the CPUs (10**6) are a
# separate, opt-in ingredient: a build that does not cap them can crash.
THREADS = (None, 1, 2, 3, -1)
HUGE_THREADS = (40_000, 10**6)

ROW_FUNCTIONS = (
    "layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
    "add_layer_norm", "add_layer_norm_backward", "add_rms_norm", "add_rms_norm_backward",
    "ada_layer_norm", "ada_layer_norm_backward",
)
CHANNEL_FUNCTIONS = (
    "group_norm", "group_norm_backward", "instance_norm", "instance_norm_backward",
    "batch_norm", "batch_norm_backward", "batch_layer_norm", "batch_layer_norm_backward",
    "switch_norm", "switch_norm_backward", "weight_norm", "weight_norm_backward",
)
FUNCTIONS = ROW_FUNCTIONS + CHANNEL_FUNCTIONS
LAYERS = tuple(nn.__all__)
TARGETS = FUNCTIONS + tuple("nn." + n for n in LAYERS)


def target_of(seed):
    """The function or layer a seed exercises: every target in turn."""
    return TARGETS[seed % len(TARGETS)]


def seeds_of(target, first, count):
    """The seeds in [first, first + count) that exercise target."""
    k = TARGETS.index(target)
    n = len(TARGETS)
    start = first + (k - first) % n
    return range(start, first + count, n)


# --------------------------------------------------------------------------
# Values and layouts
# --------------------------------------------------------------------------

def comp_dtype(dt):
    """The computing dtype of data of dtype dt: its own, float32 for 16-bit data."""
    return F64 if dt.kind == "f" and dt.itemsize == 8 else F32


def is_half(dt):
    return dt.itemsize == 2 and dt.kind != "i" and dt.kind != "u"


def ulp(v, dt):
    """One unit in the last place of |v| in the 16-bit type dt."""
    v = np.abs(np.asarray(v, np.float64))
    e = np.frexp(v)[1]
    u = np.ldexp(1.0, e - MANT[dt.name])
    return np.maximum(u, 2.0 ** -24 if dt == F16 else 2.0 ** -133)


def _byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


def _unaligned(a):
    buf = np.zeros(a.nbytes + a.itemsize, np.uint8)
    v = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    v[...] = a
    return v


def _sliced(a):
    big = np.zeros(tuple(2 * s + 1 for s in a.shape), a.dtype)
    v = big[tuple(slice(1, None, 2) for _ in a.shape)]
    v[...] = a
    return v


def _negstride(a):
    rev = tuple(slice(None, None, -1) for _ in a.shape)
    return np.ascontiguousarray(a[rev])[rev]


def _padded(a):
    if a.ndim == 0:
        return a.copy()
    big = np.zeros(a.shape[:-1] + (a.shape[-1] + 3,), a.dtype)
    v = big[..., 1:a.shape[-1] + 1]
    v[...] = a
    return v


LAYOUTS = {
    "C": np.ascontiguousarray,
    "F": np.asfortranarray,
    "transposed": lambda a: np.ascontiguousarray(a.T).T,
    "negstride": _negstride,
    "sliced": _sliced,
    "padded": _padded,
    "unaligned": _unaligned,
    "byteswapped": _byteswapped,
}


def describe(v):
    """A short description of an argument for failure messages."""
    if isinstance(v, np.ndarray):
        flags = "C" if v.flags.c_contiguous else ("F" if v.flags.f_contiguous else "strided")
        extra = "" if v.flags.aligned else ",unaligned"
        extra += "" if v.flags.writeable else ",readonly"
        return f"array{v.shape}:{v.dtype.str if v.dtype.kind != 'V' else v.dtype}:{flags}{extra}"
    if isinstance(v, tuple) and hasattr(v, "_fields"):
        return type(v).__name__ + "(" + ", ".join(
            f"{k}={describe(getattr(v, k))}" for k in v._fields) + ")"
    if isinstance(v, list):
        return f"list[{len(v)}]"
    r = repr(v)
    return r if len(r) < 40 else r[:37] + "..."


class Gen:
    """Random ingredients of a case."""

    def __init__(self, seed, huge_threads=False):
        self.rng = np.random.default_rng(seed)
        self.huge_threads = huge_threads
        # the data's character for the whole case
        r = self.rng.random()
        self.mode = ("normal" if r < 0.68 else "offset" if r < 0.78 else "huge" if r < 0.84
                     else "tiny" if r < 0.89 else "nan" if r < 0.95 else "inf")
        self.loc = float(self.rng.uniform(-3, 3))
        # some cases large enough for the kernels to use several threads
        # (they stay on one below about 128 KiB of data)
        self.big = bool(self.rng.random() < 0.06)
        # with huge thread counts, some long thin arrays: many rows to split
        self.thin = huge_threads and bool(self.rng.random() < 0.15)

    def p(self, prob):
        return bool(self.rng.random() < prob)

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def int(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    @property
    def finite(self):
        return self.mode not in ("nan", "inf")

    def dtype(self):
        r = self.rng.random()
        if r < 0.4:
            return F32
        if r < 0.7:
            return F64
        if r < 0.85 or BF16 is None:
            return F16
        return BF16

    def dim(self):
        if self.big:
            return self.int(1, 96) if self.rng.random() < 0.97 else 0
        r = self.rng.random()
        if r < 0.04:
            return 0
        if r < 0.2:
            return 1
        if r < 0.92:
            return self.int(2, 9)
        return self.int(10, 40)

    def shape(self, ndim_lo, ndim_hi, cap=2000):
        if self.thin:
            ndim = self.int(max(ndim_lo, 2), max(ndim_hi, 2))
            return (self.int(20000, 60000),) + tuple(self.int(1, 4) for _ in range(ndim - 1))
        if self.big:
            cap = max(cap, 70000)
        shape = [self.dim() for _ in range(self.int(ndim_lo, ndim_hi))]
        while math.prod(shape) > cap:
            i = int(np.argmax(shape))
            shape[i] //= 2
        return tuple(shape)

    def values(self, shape, dt, loc=None, scale=None, special=True):
        """Random values of dtype dt (C order) in the case's mode."""
        loc = self.loc if loc is None else loc
        scale = float(self.rng.uniform(0.5, 2.0)) if scale is None else scale
        v = np.array(loc + scale * self.rng.standard_normal(shape))
        if special is True and self.mode == "offset":
            v = v + (self.pick((-1, 1)) * (60.0 if is_half(dt) else 1e4))
        elif special is True and self.mode == "huge":
            v = v * {F64: 1e150, F16: 1e3}.get(dt, 1e30)  # squares stay in range
        elif special is True and self.mode == "tiny":
            # subnormal for float32, bfloat16 and float16 (whose squares the
            # kernels must not lose); float64 squares stay normal for the oracle
            v = v * {F64: 1e-150, F16: 1e-6}.get(dt, 1e-40)
        elif (special is True or (special == "grad" and self.p(0.4))) and self.mode in (
                "nan", "inf") and v.size:
            # one to three NaN (either sign) or infinite values
            pool = (np.nan, -np.nan, np.inf, -np.inf) if self.mode == "nan" else (np.inf,
                                                                                   -np.inf)
            for _ in range(self.int(1, 3)):
                idx = tuple(int(self.rng.integers(s)) for s in shape)
                v[idx] = self.pick(pool)
        return v.astype(dt)

    def layout(self, a):
        if a.ndim == 0:
            return np.array(a, copy=True)
        names = list(LAYOUTS)
        if a.dtype == BF16 or a.dtype.kind not in "f":
            names.remove("byteswapped")  # no byte-swapped form of this dtype
        w = np.array([0.35 if n == "C" else 0.65 / (len(names) - 1) for n in names])
        name = names[int(self.rng.choice(len(names), p=w / w.sum()))]
        v = LAYOUTS[name](a)
        return v

    def data(self, shape, dt, **kw):
        return self.layout(self.values(shape, dt, **kw))

    def param(self, shape, comp, loc=1.0, scale=0.5, none=0.25):
        """A parameter: None, an array of a float dtype in any layout, or a list."""
        if self.p(none):
            return None
        v = loc + scale * self.rng.standard_normal(shape)
        r = self.rng.random()
        if r < 0.05 and len(shape) == 1:
            return [float(t) for t in v]
        dt = comp if r < 0.7 else self.pick([F32, F64, F16] + ([BF16] if BF16 else []))
        return self.layout(v.astype(dt))

    def threads(self):
        if self.huge_threads and self.p(0.3):
            return self.pick(HUGE_THREADS)
        return self.pick(THREADS)

    def eps(self, default):
        if self.p(0.7):
            return default
        return float(self.pick([1e-3, 1e-6, 0.1]))


# --------------------------------------------------------------------------
# Invalid arguments
# --------------------------------------------------------------------------

BAD_DTYPES = (np.int32, np.int64, np.complex64, np.complex128, object, np.bool_, np.uint8)
BAD_THREADS = (0, 1.5, "2", True)
BAD_EPS = (-1.0, "1e-5", float("nan"), float("inf"), True, [1e-5])


def bad_array(g, a, shape_too=True):
    """An invalid stand-in for the array a: a wrong dtype, a wrong shape, None."""
    a = np.asarray(a)
    r = g.rng.random()
    if r < 0.45 or not shape_too:
        dt = g.pick(BAD_DTYPES)
        if dt is object:
            return np.array(a.astype(np.float64), dtype=object)
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(a.astype(np.float64)).astype(dt)
    if r < 0.85:
        shape = list(a.shape) or [1]
        i = g.int(0, len(shape) - 1)
        shape[i] += g.pick((1, 2))
        if g.p(0.3):
            shape.append(2)
        return np.ones(tuple(shape), a.dtype if a.dtype.kind == "f" or a.dtype == BF16 else F32)
    return None


def bad_param(g, p, comp, shape):
    r = g.rng.random()
    if r < 0.3:
        return np.ones(tuple(shape) + (2,), comp)
    if r < 0.5:
        return np.ones((max(1, math.prod(shape)) + 1,), comp)
    if r < 0.65:
        return ["a"] * max(1, math.prod(shape))
    dt = g.pick(BAD_DTYPES)
    return np.ones(shape, dt)


class Case:
    """One call: the target, its arguments, what a valid call must return."""

    def __init__(self, seed, target):
        self.seed = seed
        self.target = target
        self.args = []
        self.kw = {}
        self.bad = None        # names, one of which an error must name
        self.maybe = None      # names an error may name: success is fine too
        self.mutable = set()   # argument names a successful call writes
        self.check = None      # (case, result) -> None; raises AssertionError
        self.invoke = None     # () -> result; default: call the target
        self.state = None      # () -> dict of arrays of other state (layers)
        self.exact = True      # finite data: compare with the oracle
        self.notes = []

    def arrays(self):
        """Every array passed, by argument name (stats fields as stats.<field>)."""
        out = {}

        def add(name, v):
            if isinstance(v, np.ndarray):
                out[name] = v
            elif isinstance(v, tuple) and hasattr(v, "_fields"):
                for f in v._fields:
                    add(f"{name}.{f}", getattr(v, f))

        for i, v in enumerate(self.args):
            add(self.argnames[i] if i < len(self.argnames) else f"arg{i}", v)
        for k, v in self.kw.items():
            add(k, v)
        if self.state is not None:
            for k, v in self.state().items():
                add(k, v)
        return out

    argnames = ()

    def call(self):
        if self.invoke is not None:
            return self.invoke()
        fn = getattr(fastnorm, self.target)
        return fn(*self.args, **self.kw)

    def describe(self):
        parts = []
        for i, v in enumerate(self.args):
            n = self.argnames[i] if i < len(self.argnames) else f"arg{i}"
            parts.append(f"{n}={describe(v)}")
        parts += [f"{k}={describe(v)}" for k, v in self.kw.items()]
        head = f"{self.target}({', '.join(parts)})"
        if self.notes:
            head += " [" + "; ".join(self.notes) + "]"
        return head


# --------------------------------------------------------------------------
# Comparison with the oracle
# --------------------------------------------------------------------------

def expect(what, got, want, comp, *, scale=None, factor=4.0, floor=1.0, composite=False,
           dtype=None, tol=None):
    """got within tolerance of want (float64): tol(comp) * factor * max(floor, scale),
    plus one 16-bit ulp (two of the scale for composite results) for 16-bit got;
    NaNs at the same places; values beyond got's dtype's range must be infinite."""
    assert isinstance(got, np.ndarray), f"{what}: got {type(got).__name__}, expected an array"
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if dtype is not None:
        assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    a = got.astype(np.float64)
    if a.size == 0:
        return
    nan_a, nan_e = np.isnan(a), np.isnan(want)
    assert np.array_equal(nan_a, nan_e), (
        f"{what}: NaN at {np.argwhere(nan_a != nan_e)[:3].tolist()} "
        f"(got NaN {int(nan_a.sum())}, expected {int(nan_e.sum())})")
    ok = ~nan_e
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = want.astype(got.dtype).astype(np.float64)
    over = ok & np.isinf(rounded) & np.isfinite(want)
    assert np.array_equal(a[over], rounded[over]), f"{what}: overflowing values differ"
    inf_e = ok & np.isinf(want)
    assert np.array_equal(a[inf_e], want[inf_e]), f"{what}: infinities differ"
    ok &= np.isfinite(want) & ~over
    if not ok.any():
        return
    if scale is None:
        scale = float(np.max(np.abs(want[ok])))
    if got.dtype.kind == "f" and got.dtype.itemsize <= 4:
        comp = F32  # a float32 result (a float32 parameter's gradient) holds no more
    elif comp == F64:
        factor *= _ORACLE_COND[0]
    t = (tol if tol is not None else TOL[comp]) * factor * max(floor, float(scale))
    err = np.abs(a[ok] - want[ok])
    bound = np.full(err.shape, t)
    if is_half(got.dtype):
        bound = bound + (2 * ulp(scale, got.dtype) if composite else ulp(want[ok], got.dtype))
    worst = int(np.argmax(err - bound))
    assert np.all(err <= bound), (
        f"{what}: error {err[worst]:.3e} > bound {bound[worst]:.3e} at element {worst} "
        f"(got {a[ok][worst]!r}, expected {want[ok][worst]!r}, scale {scale:.3e}, "
        f"dtype {got.dtype})")


# The float64 oracle's own rounding, relative to float64 results: data with a
# large offset (1e4 over a spread of 1) loses log10(1e4) digits in x - mean in
# the oracle too. Set per case by run_case.
_ORACLE_COND = [1.0]


def sum_scale(terms, others):
    """The largest sum of |terms| over the axes others: a sum's rounding scale."""
    t = np.abs(np.asarray(terms, np.float64))
    if t.size == 0:
        return 0.0
    with np.errstate(over="ignore"):
        return float(np.max(t.sum(axis=others))) if others else float(np.max(t))


def amax(a):
    if a is None:
        return 0.0
    a = np.abs(np.asarray(a, np.float64))
    return float(np.max(a)) if a.size else 0.0


def grad_dtype(param, comp):
    """The documented dtype of a parameter's gradient: the parameter's own
    floating dtype (native order), else the computing dtype."""
    if isinstance(param, np.ndarray) and (param.dtype.kind == "f" or param.dtype == BF16):
        return param.dtype.newbyteorder("=")
    return comp


def f64(a):
    return None if a is None else np.array(a, dtype=np.float64)


def keep(a):
    """A pristine copy of an argument for the oracle (None and lists as they are)."""
    if isinstance(a, np.ndarray):
        return np.array(a, copy=True)
    return a


def norm_axes(axis, ndim):
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


# --------------------------------------------------------------------------
# Common argument ingredients
# --------------------------------------------------------------------------

def row_axis(g, ndim):
    """An axis argument for a row normalizer of ndim dimensions."""
    r = g.rng.random()
    if r < 0.45 or ndim == 1:
        return -1
    if r < 0.6:
        return g.int(-ndim, ndim - 1)
    k = g.int(1, ndim)
    axes = list(g.rng.choice(ndim, size=k, replace=False))
    axes = [int(a) - (ndim if g.p(0.3) else 0) for a in axes]
    if g.p(0.3):
        return list(axes) if g.p(0.2) else tuple(axes)
    return tuple(axes) if len(axes) > 1 else axes[0]


def bad_row_axis(g, ndim):
    return g.pick([ndim, -ndim - 1, 1.0, "1", (), (-1, ndim - 1), None])


def make_out(g, case, x, like_shape=None, name="out"):
    """An out= argument for data x: None, a fresh array in some layout, x itself,
    a view overlapping x or a parameter; or an invalid one (marks case.bad)."""
    shape = x.shape if like_shape is None else like_shape
    r = g.rng.random()
    if r < 0.55:
        return None
    dt = x.dtype.newbyteorder("=")
    if r < 0.75:
        o = g.layout(np.full(shape, 7, dt)) if dt.kind == "f" or dt == BF16 else None
        if o is not None and not o.dtype.isnative:
            o = np.full(shape, 7, dt)
        case.mutable.add(name)
        return o
    if r < 0.82 and isinstance(x, np.ndarray) and x.dtype.isnative and x.flags.writeable:
        case.mutable.add(name)
        case.notes.append(f"{name} is x")
        return x
    if r < 0.88:
        case.mutable.add(name)
        return "overlap"  # resolved by the caller, which owns the buffers
    # invalid
    kind = g.pick(["shape", "dtype", "readonly", "byteorder", "list"])
    case.bad = (name,)
    if kind == "shape":
        return np.zeros(tuple(shape) + (1,), dt)
    if kind == "dtype":
        return np.zeros(shape, F64 if dt != F64 else F32)
    if kind == "readonly":
        o = np.zeros(shape, dt)
        o.flags.writeable = False
        return o
    if kind == "byteorder" and dt.kind == "f":
        return np.zeros(shape, dt.newbyteorder())
    return np.zeros(shape, dt).tolist()


def out_holding(g, case, shape, dt, p):
    """An out= of this shape and dtype whose first elements are the parameter
    p (an array of dt of its own shape, which this returns as a view of out),
    or (None, p) most of the time."""
    if (case.bad is not None or not isinstance(p, np.ndarray) or not g.p(0.08)
            or dt.kind != "f" and dt != BF16 or not 0 < p.size <= math.prod(shape)):
        return None, p
    buf = np.zeros(math.prod(shape), dt.newbyteorder("="))
    view = buf[:p.size].reshape(p.shape)
    view[...] = p
    case.maybe = ("out",)
    case.mutable.add("out")
    case.notes.append("out holds weight")
    return buf.reshape(shape), view


def overlapping_pair(g, x_values):
    """x (C order, the given values) and an out of its shape and dtype that
    overlaps it, shifted by a few elements, inside one buffer."""
    n = x_values.size
    k = g.int(1, 3)
    buf = np.zeros(n + k, x_values.dtype)
    if g.p(0.5):
        x = buf[k:].reshape(x_values.shape)
        out = buf[:n].reshape(x_values.shape)
    else:
        x = buf[:n].reshape(x_values.shape)
        out = buf[k:].reshape(x_values.shape)
    x[...] = x_values
    return x, out


# --------------------------------------------------------------------------
# Row normalizers: layer_norm, rms_norm, the fused add, AdaLN
# --------------------------------------------------------------------------

def _row_common(g, case, ndim_lo=1, ndim_hi=4):
    dt = g.dtype()
    shape = g.shape(ndim_lo, ndim_hi)
    axis = row_axis(g, len(shape))
    return dt, shape, axis


def _x_or_overlap(g, case, shape, dt, out_choice_fn):
    """x and out, with out possibly overlapping x (then x is a C view of a buffer)."""
    xv = g.values(shape, dt)
    x = g.layout(xv)
    out = out_choice_fn(x)
    if isinstance(out, str) and out == "overlap":
        x, out = overlapping_pair(g, xv)
        case.maybe = ("out",)
        case.notes.append("out overlaps x")
    return x, xv, out


def gen_layer_norm(g, case, rms=False):
    dt, shape, axis = _row_common(g, case)
    comp = comp_dtype(dt)
    axes = norm_axes(axis, len(shape))
    pshape = tuple(shape[a] for a in axes)
    x, xv, out = _x_or_overlap(g, case, shape, dt, lambda x: make_out(g, case, x))
    w = g.param(pshape, comp)
    b = None if rms else g.param(pshape, comp, loc=0.0, scale=1.0)
    if out is None:
        out, w = out_holding(g, case, shape, x.dtype, w)
    eps = None if rms and g.p(0.6) else g.eps(1e-5)
    rs = g.p(0.6)
    nt = g.threads()
    case.argnames = ("x", "weight") if rms else ("x", "weight", "bias")
    case.args = [x, w] if rms else [x, w, b]
    case.kw = dict(axis=axis, eps=eps, out=out, return_stats=rs, num_threads=nt)
    P = dict(x=keep(xv), w=keep(w), b=keep(b), eps=eps, axis=axis, out=out)
    _row_errors(g, case, shape, pshape, comp, rms_eps=rms)

    def check(case, res):
        y, stats = (res[0], res[1:]) if rs else (res, ())
        if P["out"] is not None:
            assert y is P["out"], "the result is not out"
        assert y.dtype == dt and y.shape == shape, f"y: {y.dtype}{y.shape}"
        others = tuple(a for a in range(len(shape)) if a not in axes)
        sshape = tuple(shape[a] for a in others)
        for s in stats:
            assert s.dtype == comp and s.shape == sshape, f"stats: {s.dtype}{s.shape}"
        if not case.exact:
            return
        if rms:
            ye, re = ref.rms_norm(P["x"], f64(P["w"]), axis=axis, eps=eps)
            me = None
        else:
            ye, me, re = ref.layer_norm(P["x"], f64(P["w"]), f64(P["b"]), axis=axis,
                                        eps=1e-5 if eps is None else eps)
        expect("y", y, ye, comp)
        if rs:
            if not rms:
                expect("mean", stats[0], me, comp, scale=amax(P["x"]))
            expect("rstd", stats[-1], re, comp, floor=0.0)

    case.check = check


def _row_errors(g, case, shape, pshape, comp, rms_eps=False, data=("x",), params=None):
    """With probability 0.25, one argument of a row normalizer made invalid."""
    if case.bad is not None or not g.p(0.25):
        return
    names = list(data) + [n for n in case.argnames if n not in data] + ["axis", "eps",
                                                                          "num_threads"]
    if params is not None:
        names = list(data) + list(params) + ["num_threads"]
    name = g.pick(names)
    if name in data:
        i = case.argnames.index(name)
        case.args[i] = bad_array(g, case.args[i], shape_too=(name != data[0]))
    elif name in case.argnames:
        i = case.argnames.index(name)
        case.args[i] = bad_param(g, case.args[i], comp, pshape)
    elif name == "axis":
        case.kw["axis"] = bad_row_axis(g, len(shape))
    elif name == "eps":
        if "eps" not in case.kw:
            return
        case.kw["eps"] = g.pick([e for e in BAD_EPS if not (rms_eps and e is None)])
    elif name == "num_threads":
        case.kw["num_threads"] = g.pick(BAD_THREADS)
    else:
        case.kw[name] = bad_array(g, case.kw[name])
    case.bad = (name,)
    case.maybe = None


def _ln_stats(xv, axis, rms, eps, comp):
    if rms:
        _, r = ref.rms_norm(xv, axis=axis, eps=eps)
        return None, np.array(r, dtype=comp)
    _, m, r = ref.layer_norm(xv, axis=axis, eps=eps)
    return np.array(m, dtype=comp), np.array(r, dtype=comp)


def gen_layer_norm_backward(g, case, rms=False, add=False):
    dt, shape, axis = _row_common(g, case)
    comp = comp_dtype(dt)
    axes = norm_axes(axis, len(shape))
    others = tuple(a for a in range(len(shape)) if a not in axes)
    pshape = tuple(shape[a] for a in axes)
    xv = g.values(shape, dt)
    x = g.layout(xv)
    dyv = g.values(shape, dt, loc=0.0, scale=1.0, special="grad")
    dy = g.layout(dyv)
    w = g.param(pshape, comp)
    eps = 1e-5
    with np.errstate(all="ignore"):
        mean, rstd = _ln_stats(xv, axis, rms, None if rms else eps, comp)
    ds = g.values(shape, dt, loc=0.0, scale=1.0, special=False) if add and g.p(0.6) else None
    dsl = g.layout(ds) if ds is not None else None
    nt = g.threads()
    xname = "s" if add else "x"
    if rms:
        case.argnames = ("dy", xname, "rstd", "weight")
        case.args = [dy, x, g.layout(rstd), w]
    else:
        case.argnames = ("dy", xname, "mean", "rstd", "weight")
        case.args = [dy, x, g.layout(mean), g.layout(rstd), w]
    case.kw = dict(axis=axis, num_threads=nt)
    if add:
        case.kw["ds"] = dsl
    stats = ("rstd",) if rms else ("mean", "rstd")
    if g.p(0.3):
        name = g.pick(["dy", xname, *stats, "weight", "axis", "num_threads"]
                      + (["ds"] if add else []))
        if name in ("dy", xname, "ds"):
            if name == "ds":
                case.kw["ds"] = bad_array(g, dyv)
                if case.kw["ds"] is None:  # None is a valid ds
                    case.kw["ds"] = np.zeros((1,), dt)
            else:
                i = case.argnames.index(name)
                case.args[i] = bad_array(g, case.args[i], shape_too=(name == "dy"))
        elif name in stats:
            i = case.argnames.index(name)
            case.args[i] = bad_array(g, case.args[i])
        elif name == "weight":
            case.args[-1] = bad_param(g, w, comp, pshape)
        elif name == "axis":
            case.kw["axis"] = bad_row_axis(g, len(shape))
        else:
            case.kw["num_threads"] = g.pick(BAD_THREADS)
        case.bad = (name,)
    P = dict(x=keep(xv), dy=keep(dyv), w=keep(w), mean=mean, rstd=rstd, ds=keep(ds))

    def check(case, res):
        n = (2 if rms else 3) + (1 if add else 0)
        assert isinstance(res, tuple) and len(res) == n, f"result: {describe(res)}"
        dx = res[0]
        assert dx.dtype == dt and dx.shape == shape, f"dx: {dx.dtype}{dx.shape}"
        gd = grad_dtype(P["w"], comp)
        assert res[1].dtype == gd and res[1].shape == pshape, f"dweight: {describe(res[1])}"
        if not rms:
            assert res[2].dtype == gd and res[2].shape == pshape, f"dbias: {describe(res[2])}"
        if add:
            assert res[-1].dtype == comp and res[-1].shape == pshape, (
                f"dresidual_bias: {describe(res[-1])}")
        if not case.exact:
            return
        wv = f64(P["w"])
        if rms:
            dxe, dwe = ref.rms_norm_backward(P["dy"], P["x"], P["rstd"], wv, axis=axis)
            xh = P["x"].astype(np.float64) * np.expand_dims(P["rstd"].astype(np.float64), axes)
        else:
            dxe, dwe, dbe = ref.layer_norm_backward(P["dy"], P["x"], P["mean"], P["rstd"], wv,
                                                    axis=axis)
            xh = ((P["x"].astype(np.float64) - np.expand_dims(P["mean"].astype(np.float64),
                                                               axes))
                  * np.expand_dims(P["rstd"].astype(np.float64), axes))
        dy64 = P["dy"].astype(np.float64)
        gabs = np.abs(dy64) if wv is None else np.abs(dy64 * _bcast(wv, axes, len(shape)))
        dxs = amax(gabs) * amax(P["rstd"])
        if add and P["ds"] is not None:
            dxe = dxe + P["ds"].astype(np.float64)
            dxs += amax(P["ds"])
        expect("dx", dx, dxe, comp, scale=max(dxs, amax(dxe)), factor=10)
        expect("dweight", res[1], dwe, comp, scale=sum_scale(dy64 * xh, others), factor=8)
        if not rms:
            expect("dbias", res[2], dbe, comp, scale=sum_scale(dy64, others), factor=8)
        if add:
            # the sum of dsum as returned (rounded to 16 bits for 16-bit data)
            d = dx.astype(np.float64)
            drb = d.sum(axis=others) if others else d
            expect("dresidual_bias", res[-1], drb, comp, scale=sum_scale(d, others), factor=8)

    case.check = check


def _bcast(p, axes, ndim):
    shape = [1] * ndim
    p = np.asarray(p, np.float64)
    for a, s in zip(axes, p.shape):
        shape[a] = s
    return p.reshape(shape)


def gen_add_norm(g, case, rms=False):
    dt, shape, axis = _row_common(g, case)
    comp = comp_dtype(dt)
    axes = norm_axes(axis, len(shape))
    pshape = tuple(shape[a] for a in axes)
    xv = g.values(shape, dt)
    rv = g.values(shape, dt, loc=0.0, special=False)
    x = g.layout(xv)
    res = g.layout(rv)
    w = g.param(pshape, comp)
    b = None if rms else g.param(pshape, comp, loc=0.0, scale=1.0)
    rb = g.param(pshape, comp, loc=0.0, scale=1.0, none=0.5)
    out = make_out(g, case, x)
    sum_out = make_out(g, case, x, name="sum_out") if case.bad is None else None
    if isinstance(sum_out, np.ndarray) and sum_out is x and g.p(0.5):
        sum_out = res if res.dtype.isnative and res.flags.writeable else sum_out
    for nm, o in (("out", out), ("sum_out", sum_out)):
        if isinstance(o, str):  # overlap: the residual stream updated in place, or x
            x, ov = overlapping_pair(g, xv)
            if nm == "out":
                out = ov
            else:
                sum_out = ov
            case.maybe = (nm,)
            case.notes.append(f"{nm} overlaps x")
    if (isinstance(out, np.ndarray) and isinstance(sum_out, np.ndarray) and out.size
            and np.shares_memory(out, sum_out)):
        case.maybe = ("out", "sum_out")
    eps = None if rms and g.p(0.6) else g.eps(1e-5)
    rs = g.p(0.6)
    nt = g.threads()
    case.argnames = ("x", "residual", "weight") if rms else ("x", "residual", "weight", "bias")
    case.args = [x, res, w] if rms else [x, res, w, b]
    case.kw = dict(residual_bias=rb, axis=axis, eps=eps, out=out, sum_out=sum_out,
                   return_stats=rs, num_threads=nt)
    _row_errors(g, case, shape, pshape, comp, rms_eps=rms, data=("x", "residual"))
    if case.bad is None and g.p(0.05):
        case.kw["residual_bias"] = bad_param(g, rb, comp, pshape)
        case.bad = ("residual_bias",)
        case.maybe = None
    P = dict(x=keep(xv), r=keep(rv), w=keep(w), b=keep(b), rb=keep(rb), out=out,
             sum_out=sum_out)

    def check(case, result):
        n = (2 + (1 if rms else 2)) if rs else 2
        assert isinstance(result, tuple) and len(result) == n, f"result: {describe(result)}"
        y, s = result[:2]
        if isinstance(P["out"], np.ndarray):
            assert y is P["out"], "y is not out"
        if isinstance(P["sum_out"], np.ndarray):
            assert s is P["sum_out"], "s is not sum_out"
        for nm, a in (("y", y), ("s", s)):
            assert a.dtype == dt and a.shape == shape, f"{nm}: {a.dtype}{a.shape}"
        if not case.exact:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            if rms:
                ye, se, re = ref.add_rms_norm(P["x"], P["r"], f64(P["w"]), f64(P["rb"]),
                                              axis=axis, eps=eps)
            else:
                ye, se, me, re = ref.add_layer_norm(P["x"], P["r"], f64(P["w"]), f64(P["b"]),
                                                    f64(P["rb"]), axis=axis,
                                                    eps=1e-5 if eps is None else eps)
        if not np.all(np.isfinite(se)):
            return
        expect("s", s, se, comp, scale=amax(P["x"]) + amax(P["r"]) + amax(P["rb"]))
        # y is the norm of the stored (rounded) sum
        s_stored = s.astype(np.float64)
        if rms:
            ye, re = ref.rms_norm(s_stored, f64(P["w"]), axis=axis,
                                  eps=ref._rms_eps(dt) if eps is None else eps)
        else:
            ye, me, re = ref.layer_norm(s_stored, f64(P["w"]), f64(P["b"]), axis=axis,
                                        eps=1e-5 if eps is None else eps)
        expect("y", y, ye, comp)
        if rs:
            if not rms:
                expect("mean", result[2], me, comp, scale=amax(se))
            expect("rstd", result[-1], re, comp, floor=0.0)

    case.check = check


def gen_ada(g, case):
    dt = g.dtype()
    comp = comp_dtype(dt)
    shape = g.shape(2, 4)
    N, D = shape[0], shape[-1]
    x, xv, out = _x_or_overlap(g, case, shape, dt, lambda x: make_out(g, case, x))
    shift = g.param((N, D), comp, loc=0.0, scale=1.0, none=0.0)
    scale = g.param((N, D), comp, loc=0.0, scale=0.5, none=0.0)
    eps = g.eps(1e-6)
    rs = g.p(0.6)
    nt = g.threads()
    case.argnames = ("x", "shift", "scale")
    case.args = [x, shift, scale]
    case.kw = dict(eps=eps, out=out, return_stats=rs, num_threads=nt)
    if case.bad is None and g.p(0.3):
        name = g.pick(["x", "shift", "scale", "eps", "num_threads"])
        if name == "x":
            case.args[0] = g.pick([bad_array(g, xv, shape_too=False), xv.reshape(-1)])
        elif name in ("shift", "scale"):
            case.args[case.argnames.index(name)] = bad_param(g, shift, comp, (N, D))
        elif name == "eps":
            case.kw["eps"] = g.pick(BAD_EPS)
        else:
            case.kw["num_threads"] = g.pick(BAD_THREADS)
        case.bad = (name,)
        case.maybe = None
    P = dict(x=keep(xv), shift=keep(shift), scale=keep(scale), out=out)

    def check(case, res):
        y = res[0] if rs else res
        if isinstance(P["out"], np.ndarray):
            assert y is P["out"], "y is not out"
        assert y.dtype == dt and y.shape == shape, f"y: {describe(y)}"
        if rs:
            for s in res[1:]:
                assert s.dtype == comp and s.shape == shape[:-1], f"stats: {describe(s)}"
        if not case.exact:
            return
        ye, me, re = ref.ada_layer_norm(P["x"], f64(P["shift"]), f64(P["scale"]), eps=eps)
        expect("y", y, ye, comp)
        if rs:
            expect("mean", res[1], me, comp, scale=amax(P["x"]))
            expect("rstd", res[2], re, comp, floor=0.0)

    case.check = check


def gen_ada_backward(g, case):
    dt = g.dtype()
    comp = comp_dtype(dt)
    shape = g.shape(2, 4)
    N, D = shape[0], shape[-1]
    xv = g.values(shape, dt)
    dyv = g.values(shape, dt, loc=0.0, scale=1.0, special="grad")
    scale = g.param((N, D), comp, loc=0.0, scale=0.5, none=0.0)
    with np.errstate(all="ignore"):
        _, m, r = ref.layer_norm(xv, axis=-1, eps=1e-6)
    mean, rstd = np.asarray(m).astype(comp), np.asarray(r).astype(comp)
    nt = g.threads()
    case.argnames = ("dy", "x", "mean", "rstd", "scale")
    case.args = [g.layout(dyv), g.layout(xv), g.layout(mean), g.layout(rstd), scale]
    case.kw = dict(num_threads=nt)
    if g.p(0.3):
        name = g.pick(list(case.argnames) + ["num_threads"])
        i = case.argnames.index(name) if name in case.argnames else None
        if name == "scale":
            case.args[i] = bad_param(g, scale, comp, (N, D))
        elif name == "num_threads":
            case.kw["num_threads"] = g.pick(BAD_THREADS)
        else:
            case.args[i] = bad_array(g, case.args[i], shape_too=(name != "x"))
        case.bad = (name,)
    P = dict(x=keep(xv), dy=keep(dyv), scale=keep(scale), mean=mean, rstd=rstd)

    def check(case, res):
        assert isinstance(res, tuple) and len(res) == 3, f"result: {describe(res)}"
        dx, dshift, dscale = res
        assert dx.dtype == dt and dx.shape == shape, f"dx: {describe(dx)}"
        gd = grad_dtype(P["scale"], comp)
        for nm, a in (("dshift", dshift), ("dscale", dscale)):
            assert a.dtype == gd and a.shape == (N, D), f"{nm}: {describe(a)}"
        if not case.exact:
            return
        dxe, dse, dce = ref.ada_layer_norm_backward(P["dy"], P["x"], P["mean"], P["rstd"],
                                                    f64(P["scale"]))
        dy64 = P["dy"].astype(np.float64)
        per = (N,) + (1,) * (len(shape) - 2) + (D,)
        gabs = np.abs(dy64 * (1 + np.asarray(P["scale"], np.float64).reshape(per)))
        expect("dx", dx, dxe, comp, scale=max(amax(gabs) * amax(P["rstd"]), amax(dxe)),
               factor=10)
        middle = tuple(range(1, len(shape) - 1))
        xh = ((P["x"].astype(np.float64) - P["mean"].astype(np.float64)[..., None])
              * P["rstd"].astype(np.float64)[..., None])
        expect("dshift", dshift, dse, comp, scale=sum_scale(dy64, middle), factor=8)
        expect("dscale", dscale, dce, comp, scale=sum_scale(dy64 * xh, middle), factor=8)

    case.check = check


# --------------------------------------------------------------------------
# Channel normalizers
# --------------------------------------------------------------------------

def channel_axis(g, ndim):
    r = g.rng.random()
    if r < 0.55:
        return 1
    if r < 0.85:
        return -1
    return g.pick([k for k in range(1, ndim)] + [-k for k in range(1, ndim)])


def bad_channel_axis(g, ndim):
    return g.pick([0, -ndim, ndim, 1.0, None, (1,)])


def _channel_common(g, ndim_lo=2, ndim_hi=4):
    dt = g.dtype()
    shape = g.shape(ndim_lo, ndim_hi)
    axis = channel_axis(g, len(shape))
    return dt, shape, axis, axis % len(shape)


def _per_channel(p, ndim, k):
    shape = [1] * ndim
    shape[k] = -1
    return np.asarray(p, np.float64).reshape(shape)


def _running(g, C, comp, shape=None):
    shape = (C,) if shape is None else shape
    rdt = comp if g.p(0.85) else F64
    rm = (g.rng.standard_normal(shape) * 0.5).astype(rdt)
    rv = g.rng.uniform(0.5, 2.0, shape).astype(rdt)
    return rm, rv


def _channel_errors(g, case, C, comp, names, data="x"):
    """With probability 0.22 one argument of a channel function made invalid."""
    if case.bad is not None or not g.p(0.22):
        return
    name = g.pick(list(names))
    ndim = np.ndim(case.args[0]) if case.args else 2
    if name == data:
        case.args[0] = bad_array(g, case.args[0], shape_too=False)
    elif name in ("weight", "bias", "mean_weight", "var_weight"):
        i = case.argnames.index(name) if name in case.argnames else None
        shp = (3,) if name.endswith("_weight") else (C,)
        v = bad_param(g, None, comp, shp)
        if name.endswith("_weight") and isinstance(v, np.ndarray) and v.dtype.kind in "iub":
            v = np.ones((4,), comp)  # integer logits are fine: a wrong shape instead
        if i is not None:
            case.args[i] = v
        else:
            case.kw[name] = v
    elif name in ("running_mean", "running_var"):
        cur = case.kw.get(name, case.args[case.argnames.index(name)]
                          if name in case.argnames else None)
        r = g.rng.random()
        if r < 0.3 and cur is not None:
            v = cur.tolist()
        elif r < 0.55 and cur is not None:
            v = np.array(cur, copy=True)
            v.flags.writeable = False
        elif r < 0.8 and cur is not None:
            v = np.zeros(cur.shape + (1,), cur.dtype)
        else:
            v = np.zeros(np.shape(cur) if cur is not None else (C,), F16)
        if name in case.argnames:
            case.args[case.argnames.index(name)] = v
        else:
            case.kw[name] = v
    elif name == "axis":
        case.kw["axis"] = bad_channel_axis(g, ndim)
    elif name == "eps":
        case.kw["eps"] = g.pick(BAD_EPS)
    elif name == "momentum":
        case.kw["momentum"] = g.pick([-0.1, 1.5, "0.1", None, float("nan")])
    elif name == "training":
        case.kw["training"] = g.pick(["yes", 1, None])
    elif name == "num_threads":
        case.kw["num_threads"] = g.pick(BAD_THREADS)
    elif name == "num_groups":
        case.args[1] = g.pick([0, -1, 1.5, True, "2"])
    elif name == "return_stats":
        return
    else:
        raise AssertionError(name)
    case.bad = (name,)
    case.maybe = None


def _channel_out(g, case, x, xv):
    """out for a channel function; overlapping x, a parameter or a running statistic."""
    out = make_out(g, case, x)
    if isinstance(out, str):
        x, out = overlapping_pair(g, xv)
        case.maybe = ("out",)
        case.notes.append("out overlaps x")
    return x, out


def gen_group_norm(g, case):
    dt, shape, axis, k = _channel_common(g)
    if g.p(0.06):  # no channels: which num_groups are accepted
        shape = shape[:k] + (0,) + shape[k + 1:]
    comp = comp_dtype(dt)
    C = shape[k]
    xv = g.values(shape, dt)
    x = g.layout(xv)
    if C == 0:
        G = g.pick([1, 3, 2 ** 40])
    else:
        divs = [d for d in range(1, C + 1) if C % d == 0]
        G = g.pick(divs)
    x, out = _channel_out(g, case, x, xv)
    w = g.param((C,), comp)
    b = g.param((C,), comp, loc=0.0, scale=1.0)
    if out is None:
        out, w = out_holding(g, case, shape, x.dtype, w)
    eps = g.eps(1e-5)
    rs = g.p(0.6)
    case.argnames = ("x", "num_groups", "weight", "bias")
    case.args = [x, G, w, b]
    case.kw = dict(eps=eps, axis=axis, out=out, return_stats=rs, num_threads=g.threads())
    if C == 0 and G != 1:  # with no channels, only one (empty) group is accepted
        case.bad = ("num_groups",) + tuple(case.bad or ())
        case.maybe = None
    if C > 1 and g.p(0.05) and case.bad is None:
        case.args[1] = g.pick([d for d in range(2, C + 2) if C % d])  # not a divisor
        case.bad = ("num_groups",)
        case.maybe = None
    _channel_errors(g, case, C, comp, ["x", "num_groups", "weight", "bias", "axis", "eps",
                                       "num_threads"])
    P = dict(x=keep(xv), w=keep(w), b=keep(b), out=out)

    def check(case, res):
        y = res[0] if rs else res
        if isinstance(P["out"], np.ndarray):
            assert y is P["out"], "y is not out"
        assert y.dtype == dt and y.shape == shape, f"y: {describe(y)}"
        if rs:
            for s in res[1:]:
                assert s.dtype == comp and s.shape == (shape[0], G), f"stats: {describe(s)}"
        if not case.exact or C == 0 or y.size == 0:
            return
        ye, me, re = ref.group_norm(P["x"], G, f64(P["w"]), f64(P["b"]), eps=eps, axis=axis)
        expect("y", y, ye, comp)
        if rs:
            expect("mean", res[1], me, comp, scale=amax(P["x"]))
            expect("rstd", res[2], re, comp, floor=0.0)

    case.check = check


def _nb_scale(dy64, w, rstd, k, ndim):
    gabs = np.abs(dy64)
    if w is not None:
        gabs = gabs * np.abs(_per_channel(w, ndim, k))
    return amax(gabs) * amax(rstd)


def gen_group_backward(g, case, kind):
    """group_norm_backward, instance_norm_backward (instance or running
    statistics), batch_norm_backward (training or not)."""
    dt, shape, axis, k = _channel_common(g)
    comp = comp_dtype(dt)
    C, N = shape[k], shape[0]
    ndim = len(shape)
    xv = g.values(shape, dt)
    dyv = g.values(shape, dt, loc=0.0, scale=1.0, special="grad")
    w = g.param((C,), comp)
    b = g.param((C,), comp, loc=0.0, scale=1.0)
    training = True
    frozen = False
    empty = math.prod(shape) == 0
    if kind == "group":
        G = g.pick([d for d in range(1, C + 1) if C % d == 0]) if C else 1
        with np.errstate(all="ignore"):
            _, m, r = (None, np.zeros((N, G)), np.ones((N, G))) if empty else ref.group_norm(
                xv, G, eps=1e-5, axis=axis)
    elif kind == "instance":
        frozen = g.p(0.3)
        if frozen:
            m, r = _running(g, C, comp)
            r = 1.0 / np.sqrt(r.astype(np.float64) + 1e-5)
        else:
            with np.errstate(all="ignore"):
                _, m, r = (None, np.zeros((N, C)), np.ones((N, C))) if empty else (
                    ref.group_norm(xv, C, eps=1e-5, axis=axis))
    else:
        training = g.p(0.6)
        frozen = not training
        if training:
            with np.errstate(all="ignore"):
                _, m, r, _, _ = (None, np.zeros(C), np.ones(C), None, None) if empty else (
                    ref.batch_norm(xv, training=True, axis=axis))
        else:
            m, r = _running(g, C, comp)
            r = 1.0 / np.sqrt(r.astype(np.float64) + 1e-5)
    mean, rstd = np.asarray(m).astype(comp), np.asarray(r).astype(comp)
    case.argnames = ("dy", "x", "mean", "rstd", "weight", "bias")
    case.args = [g.layout(dyv), g.layout(xv), g.layout(mean), g.layout(rstd), w, b]
    case.kw = dict(axis=axis, num_threads=g.threads())
    if kind == "batch":
        case.kw["training"] = training
    if kind == "group" and C == 0:
        case.maybe = ("mean", "num_groups")
    if g.p(0.3):
        name = g.pick(["dy", "x", "mean", "rstd", "weight", "bias", "axis", "num_threads"]
                      + (["training"] if kind == "batch" else []))
        if name in ("dy", "x", "mean", "rstd"):
            i = case.argnames.index(name)
            case.args[i] = bad_array(g, case.args[i], shape_too=(name != "x"))
            if name in ("mean", "rstd"):
                # the statistics disagree with each other: either may be named
                name = ("mean", "rstd")
        elif name in ("weight", "bias"):
            case.args[case.argnames.index(name)] = bad_param(g, None, comp, (C,))
        elif name == "axis":
            case.kw["axis"] = bad_channel_axis(g, ndim)
        elif name == "training":
            case.kw["training"] = g.pick(["yes", 1, None])
        else:
            case.kw["num_threads"] = g.pick(BAD_THREADS)
        case.bad = name if isinstance(name, tuple) else (name,)
        case.maybe = None
    P = dict(x=keep(xv), dy=keep(dyv), w=keep(w), b=keep(b), mean=mean, rstd=rstd)

    def check(case, res):
        assert isinstance(res, tuple) and len(res) == 3, f"result: {describe(res)}"
        dx, dw, db = res
        assert dx.dtype == dt and dx.shape == shape, f"dx: {describe(dx)}"
        for nm, gr, p in (("dweight", dw, P["w"]), ("dbias", db, P["b"])):
            if p is None:
                assert gr is None, f"{nm}: {describe(gr)} for a None parameter"
            else:
                gd = grad_dtype(p, comp)
                assert gr is not None and gr.dtype == gd and gr.shape == (C,), (
                    f"{nm}: {describe(gr)}, expected {gd}({C},)")
        if not case.exact or C == 0 or dx.size == 0:
            return
        wv = f64(P["w"])
        dy64 = P["dy"].astype(np.float64)
        others = tuple(a for a in range(ndim) if a != k)
        if frozen:
            dxe, dwe, dbe = ref.batch_norm_backward(P["dy"], P["x"], P["mean"], P["rstd"], wv,
                                                    training=False, axis=axis)
            xh = ((P["x"].astype(np.float64) - _per_channel(P["mean"], ndim, k))
                  * _per_channel(P["rstd"], ndim, k))
        elif kind == "batch":
            dxe, dwe, dbe = ref.batch_norm_backward(P["dy"], P["x"], P["mean"], P["rstd"], wv,
                                                    training=True, axis=axis)
            xh = ((P["x"].astype(np.float64) - _per_channel(P["mean"], ndim, k))
                  * _per_channel(P["rstd"], ndim, k))
        else:
            dxe, dwe, dbe = ref.group_norm_backward(P["dy"], P["x"], P["mean"], P["rstd"], wv,
                                                    axis=axis)
            Gn = P["mean"].shape[1]
            xc = np.moveaxis(P["x"].astype(np.float64), k, 1)
            xg = xc.reshape(N, Gn, -1)
            xh = np.moveaxis(((xg - P["mean"].astype(np.float64)[..., None])
                              * P["rstd"].astype(np.float64)[..., None]).reshape(xc.shape),
                             1, k)
        expect("dx", dx, dxe, comp, scale=max(_nb_scale(dy64, wv, P["rstd"], k, ndim),
                                              amax(dxe)), factor=10)
        if dw is not None:
            expect("dweight", dw, dwe, comp, scale=sum_scale(dy64 * xh, others), factor=8)
        if db is not None:
            expect("dbias", db, dbe, comp, scale=sum_scale(dy64, others), factor=8)

    case.check = check


def gen_batch_instance(g, case, kind):
    """batch_norm or instance_norm forward, training or not, with or without
    running statistics."""
    dt, shape, axis, k = _channel_common(g)
    comp = comp_dtype(dt)
    C, N = shape[k], shape[0]
    xv = g.values(shape, dt)
    x = g.layout(xv)
    training = g.p(0.6)
    with_running = kind == "batch" and (not training or g.p(0.8)) or (
        kind == "instance" and g.p(0.5))
    rm, rv = _running(g, C, comp) if with_running else (None, None)
    w = g.param((C,), comp)
    b = g.param((C,), comp, loc=0.0, scale=1.0)
    momentum = g.pick([0.1, 0.0, 1.0, float(g.rng.uniform(0, 1))])
    eps = g.eps(1e-5)
    rs = g.p(0.6)
    x, out = _channel_out(g, case, x, xv)
    # out holding a running statistic (defect class: the statistics corrupted)
    if (with_running and case.bad is None and g.p(0.08) and dt in (F32, F64)
            and rm.dtype == dt and 0 < C <= math.prod(shape)):
        buf = np.zeros(math.prod(shape), dt)
        out = buf.reshape(shape)
        rm = buf[:C]
        rm[...] = g.rng.standard_normal(C) * 0.5
        case.notes.append("out holds running_mean")
        case.mutable.add("out")
        case.maybe = None
        if training:
            case.bad = ("out",)
        else:
            case.maybe = ("out",)
    case.argnames = ("x", "running_mean", "running_var", "weight", "bias") if kind == "batch" \
        else ("x", "weight", "bias", "running_mean", "running_var")
    if kind == "batch":
        case.args = [x, rm, rv, w, b]
    else:
        case.args = [x, w, b, rm, rv]
    case.kw = dict(training=training if g.p(0.9) else np.bool_(training), momentum=momentum,
                   eps=eps, axis=axis, out=out, return_stats=rs, num_threads=g.threads())
    if with_running:
        case.mutable |= {"running_mean", "running_var"}
    L = math.prod(shape) // max(1, C) // max(1, N) if C and N else (
        math.prod(s for i, s in enumerate(shape) if i not in (0, k)))
    M = L * N
    one = (M == 1) if kind == "batch" else (L == 1)
    use_batch = training or (kind == "instance" and rm is None)
    if training and one:  # refused (naming x), whatever else is wrong
        case.bad = ("x",) + (case.bad or ())
        case.maybe = None
    if kind == "batch" and not training and rm is None and case.bad is None:
        case.bad = ("running_mean", "running_var")
    _channel_errors(g, case, C, comp, ["x", "weight", "bias", "running_mean", "running_var",
                                       "axis", "eps", "momentum", "training", "num_threads"])
    P = dict(x=keep(xv), w=keep(w), b=keep(b), rm=keep(rm), rv=keep(rv), out=out,
             rm_live=rm, rv_live=rv)

    def check(case, res):
        y = res[0] if rs else res
        if isinstance(P["out"], np.ndarray):
            assert y is P["out"], "y is not out"
        assert y.dtype == dt and y.shape == shape, f"y: {describe(y)}"
        sshape = ((N, C) if kind == "instance" else (C,)) if use_batch else (C,)
        if rs:
            for s in res[1:]:
                assert s.dtype == comp and s.shape == sshape, f"stats: {describe(s)}"
        if x_size == 0:
            if P["rm"] is not None:
                assert P["rm_live"].tobytes() == P["rm"].tobytes(), "running_mean changed"
                assert P["rv_live"].tobytes() == P["rv"].tobytes(), "running_var changed"
            return
        if not case.exact:
            return
        wv, bv = f64(P["w"]), f64(P["b"])
        if use_batch:
            if kind == "batch":
                ye, me, re, _, _ = ref.batch_norm(P["x"], None, None, wv, bv, training=True,
                                                  eps=eps, axis=axis)
                ve = 1.0 / re ** 2 - eps
                mb, vb, cnt = me, ve, M
            else:
                ye, me, re = ref.group_norm(P["x"], C, wv, bv, eps=eps, axis=axis)
                ve = 1.0 / re ** 2 - eps
                mb, vb, cnt = me.mean(axis=0), ve.mean(axis=0), L
        else:
            ye, me, re, _, _ = ref.batch_norm(P["x"], P["rm"], P["rv"], wv, bv, training=False,
                                              eps=eps, axis=axis)
        expect("y", y, ye, comp)
        if rs:
            expect("mean", res[1], me, comp, scale=amax(P["x"]) + amax(P["rm"] if P["rm"]
                                                                       is not None else 0))
            expect("rstd", res[2], re, comp, floor=0.0)
        if training and P["rm"] is not None:
            m = float(momentum)
            rme = (1 - m) * P["rm"].astype(np.float64) + m * mb
            rve = (1 - m) * P["rv"].astype(np.float64) + m * vb * cnt / (cnt - 1)
            if amax(vb) * cnt / (cnt - 1) > float(np.finfo(comp).max):
                return  # the batch variance itself overflows the statistics' dtype
            cdt = comp_dtype(P["rm"].dtype)
            expect("running_mean", P["rm_live"], rme, cdt if cdt == comp else comp,
                   scale=amax(P["rm"]) + amax(mb), factor=4)
            expect("running_var", P["rv_live"], rve, cdt if cdt == comp else comp,
                   scale=amax(P["rv"]) + amax(vb) * cnt / (cnt - 1), factor=4)

    x_size = math.prod(shape)
    case.check = check


def gen_batch_layer_norm(g, case):
    dt = g.dtype()
    comp = comp_dtype(dt)
    shape = g.shape(2, 4)
    Bn, D = shape[0], shape[-1]
    fshape = shape[1:]
    xv = g.values(shape, dt)
    x = g.layout(xv)
    training = g.p(0.6)
    im = g.pick(["population", "batch"])
    iv = g.pick(["population", "batch"])
    need = (not training) and (im == "population" or iv == "population")
    with_running = need or g.p(0.6)
    rm, rv = _running(g, None, comp, shape=fshape) if with_running else (None, None)
    w = g.param((D,), comp)
    b = g.param((D,), comp, loc=0.0, scale=1.0)
    bs = None if g.p(0.8) else g.int(1, 8)
    momentum = g.pick([0.1, 0.0, 1.0, float(g.rng.uniform(0, 1))])
    eps = g.eps(1e-3)
    rs = g.p(0.5)
    x, out = _channel_out(g, case, x, xv)
    if (with_running and case.bad is None and g.p(0.08) and dt in (F32, F64)
            and rm.dtype == dt and 0 < rm.size <= math.prod(shape)):
        buf = np.zeros(math.prod(shape), dt)
        out = buf.reshape(shape)
        rm = buf[:rm.size].reshape(fshape)
        rm[...] = g.rng.standard_normal(fshape) * 0.5
        case.notes.append("out holds running_mean")
        case.mutable.add("out")
        case.bad, case.maybe = (("out",), None) if training else (None, ("out",))
    case.argnames = ("x", "weight", "bias", "running_mean", "running_var")
    case.args = [x, w, b, rm, rv]
    case.kw = dict(training=training, batch_size=bs, momentum=momentum, eps=eps,
                   inference_mean=im, inference_var=iv, out=out, return_stats=rs,
                   num_threads=g.threads())
    if with_running:
        case.mutable |= {"running_mean", "running_var"}
    if case.bad is None and g.p(0.3):
        name = g.pick(["batch_size", "inference_mean", "inference_var"])
        case.kw[name] = g.pick([0, -2, 1.5, "3"]) if name == "batch_size" else g.pick(
            ["pop", None, "Batch"])
        case.bad = (name,)
        case.maybe = None
    _channel_errors(g, case, D, comp, ["x", "weight", "bias", "running_mean", "running_var",
                                       "eps", "momentum", "training", "num_threads"])
    P = dict(x=keep(xv), w=keep(w), b=keep(b), rm=keep(rm), rv=keep(rv), out=out,
             rm_live=rm, rv_live=rv)

    def check(case, res):
        y = res[0] if rs else res
        if isinstance(P["out"], np.ndarray):
            assert y is P["out"], "y is not out"
        assert y.dtype == dt and y.shape == shape, f"y: {describe(y)}"
        if rs:
            st = res[1]
            assert isinstance(st, fastnorm.BatchLayerNormStats), f"stats: {describe(st)}"
        if not case.exact or y.size == 0:
            return
        frozen_m = not training and im == "population"
        frozen_v = not training and iv == "population"
        ye = ref.batch_layer_norm(P["x"], f64(P["w"]), f64(P["b"]), eps=eps, batch_size=bs,
                                  batch_mean=P["rm"] if frozen_m else None,
                                  batch_var=P["rv"] if frozen_v else None)
        expect("y", y, ye, comp, composite=True)
        if training and P["rm"] is not None:
            m = float(momentum)
            x64 = P["x"].astype(np.float64)
            c = x64.mean(axis=0)
            v = ((x64 - c) ** 2).mean(axis=0)
            expect("running_mean", P["rm_live"], (1 - m) * P["rm"].astype(np.float64) + m * c,
                   comp, scale=amax(P["rm"]) + amax(c))
            rve = P["rv"].astype(np.float64)
            if Bn > 1:
                rve = (1 - m) * rve + m * v * Bn / (Bn - 1)
            expect("running_var", P["rv_live"], rve, comp, scale=amax(P["rv"]) + amax(rve))

    case.check = check


def gen_switch_norm(g, case):
    dt, shape, axis, k = _channel_common(g)
    comp = comp_dtype(dt)
    C, N = shape[k], shape[0]
    xv = g.values(shape, dt)
    x = g.layout(xv)
    training = g.p(0.6)
    with_running = (not training) or g.p(0.6)
    rm, rv = _running(g, C, comp) if with_running else (None, None)
    w = g.param((C,), comp)
    b = g.param((C,), comp, loc=0.0, scale=1.0)
    mw = g.param((3,), comp, loc=0.0, scale=1.0, none=0.3)
    vw = g.param((3,), comp, loc=0.0, scale=1.0, none=0.3)
    momentum = g.pick([0.1, 0.0, 1.0, float(g.rng.uniform(0, 1))])
    eps = g.eps(1e-5)
    rs = g.p(0.5)
    x, out = _channel_out(g, case, x, xv)
    if (with_running and case.bad is None and g.p(0.08) and dt in (F32, F64)
            and rm.dtype == dt and 0 < C <= math.prod(shape)):
        buf = np.zeros(math.prod(shape), dt)
        out = buf.reshape(shape)
        rm = buf[:C]
        rm[...] = g.rng.standard_normal(C) * 0.5
        case.notes.append("out holds running_mean")
        case.mutable.add("out")
        case.bad, case.maybe = (("out",), None) if training else (None, ("out",))
    case.argnames = ("x", "weight", "bias", "mean_weight", "var_weight", "running_mean",
                     "running_var")
    case.args = [x, w, b, mw, vw, rm, rv]
    case.kw = dict(training=training, momentum=momentum, eps=eps, axis=axis, out=out,
                   return_stats=rs, num_threads=g.threads())
    if with_running:
        case.mutable |= {"running_mean", "running_var"}
    L = math.prod(s for i, s in enumerate(shape) if i not in (0, k))
    if training and N * L == 1:
        case.bad, case.maybe = ("x",) + (case.bad or ()), None
    _channel_errors(g, case, C, comp, ["x", "weight", "bias", "mean_weight", "var_weight",
                                       "running_mean", "running_var", "axis", "eps",
                                       "momentum", "training", "num_threads"])
    P = dict(x=keep(xv), w=keep(w), b=keep(b), mw=keep(mw), vw=keep(vw), rm=keep(rm),
             rv=keep(rv), out=out, rm_live=rm, rv_live=rv)

    def check(case, res):
        y = res[0] if rs else res
        if isinstance(P["out"], np.ndarray):
            assert y is P["out"], "y is not out"
        assert y.dtype == dt and y.shape == shape, f"y: {describe(y)}"
        if rs:
            assert isinstance(res[1], fastnorm.SwitchNormStats), f"stats: {describe(res[1])}"
        if not case.exact or y.size == 0:
            return
        ye = ref.switch_norm(P["x"], f64(P["w"]), f64(P["b"]), f64(P["mw"]), f64(P["vw"]),
                             eps=eps, axis=axis,
                             bn_mean=None if training else P["rm"],
                             bn_var=None if training else P["rv"])
        expect("y", y, ye, comp, composite=True, factor=8)
        if training and P["rm"] is not None:
            m = float(momentum)
            xc = np.moveaxis(P["x"].astype(np.float64), k, 0).reshape(C, -1)
            mb, vb, cnt = xc.mean(axis=1), xc.var(axis=1), xc.shape[1]
            expect("running_mean", P["rm_live"], (1 - m) * P["rm"].astype(np.float64) + m * mb,
                   comp, scale=amax(P["rm"]) + amax(mb))
            rve = (1 - m) * P["rv"].astype(np.float64) + m * vb * cnt / (cnt - 1)
            expect("running_var", P["rv_live"], rve, comp, scale=amax(P["rv"]) + amax(rve))

    case.check = check


_MAX = {"float16": 65504.0, "bfloat16": 3.39e38, "float32": 3.4e38, "float64": 1.79e308}


def _fd(f, h):
    """d/dt f(t) at 0 by central differences with one Richardson step."""
    with np.errstate(all="ignore"):
        return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)


def _fd_expect(what, got, u, fwd, dy64, comp, scale, factor=10.0, h=1e-3, linear=None):
    """<got, u> against the directional derivative of sum(dy * fwd(t)) along u
    (or, for a parameter the forward is linear in, sum(dy * linear()) exactly)."""
    g64 = np.asarray(got, np.float64)
    lhs = float(np.sum(g64 * u))
    if not np.isfinite(lhs):
        if scale >= _MAX[np.asarray(got).dtype.name] / 16:
            return  # the gradient can overflow its dtype (a 16-bit parameter's)
        raise AssertionError(f"{what}: non-finite gradient")
    if linear is not None:
        with np.errstate(all="ignore"):
            rhs = float(np.sum(dy64 * linear()))
    else:
        rhs = _fd(lambda t: float(np.sum(dy64 * fwd(t))), h)
    bound = FD_TOL[comp] * factor * max(1.0, scale, abs(rhs))
    if is_half(np.asarray(got).dtype):
        bound += float(np.sum(ulp(g64, np.asarray(got).dtype) * np.abs(u)))
    assert abs(lhs - rhs) <= bound, (
        f"{what}: <grad, u> = {lhs!r}, central differences {rhs!r} "
        f"(error {abs(lhs - rhs):.3e} > {bound:.3e})")


def gen_stats_backward(g, case, kind):
    """switch_norm_backward / batch_layer_norm_backward, with the stats of the
    forward (run here on copies), checked by central differences of the float64
    forward formula."""
    dt = g.dtype()
    comp = comp_dtype(dt)
    if kind == "switch":
        shape = g.shape(2, 4, cap=300)
        axis = channel_axis(g, len(shape))
        k = axis % len(shape)
        C = shape[k]
        pdim = C
    else:
        shape = g.shape(2, 4, cap=300)
        k = len(shape) - 1
        C = shape[-1]
        pdim = C
    N = shape[0]
    xv = g.values(shape, dt)
    dyv = g.values(shape, dt, loc=0.0, scale=1.0, special="grad")
    w = g.param((pdim,), comp)
    b = g.param((pdim,), comp, loc=0.0, scale=1.0)
    training = g.p(0.5)
    eps = 1e-5 if kind == "switch" else 1e-3
    fwd_kw = {}
    if kind == "switch":
        mw = g.param((3,), comp, loc=0.0, scale=1.0, none=0.3)
        vw = g.param((3,), comp, loc=0.0, scale=1.0, none=0.3)
        rm, rv = _running(g, C, comp)
        L = math.prod(s for i, s in enumerate(shape) if i not in (0, k))
        if training and N * L == 1:
            training = False
        try:
            with np.errstate(all="ignore"):
                _, stats = fastnorm.switch_norm(xv.copy(), w, b, mw, vw, rm.copy(), rv.copy(),
                                                training=training, axis=axis,
                                                return_stats=True, num_threads=1)
        except (ValueError, TypeError) as exc:
            raise AssertionError(f"switch_norm refused the forward of this case: {exc}")
        case.argnames = ("dy", "x", "stats", "weight", "bias", "mean_weight", "var_weight")
        case.args = [g.layout(dyv), g.layout(xv), stats, w, b, mw, vw]
        case.kw = dict(axis=axis, num_threads=g.threads())
    else:
        im = g.pick(["population", "batch"])
        iv = g.pick(["population", "batch"])
        fshape = shape[1:]
        rm, rv = _running(g, None, comp, shape=fshape)
        bs = None if g.p(0.8) else g.int(1, 8)
        with np.errstate(all="ignore"):
            _, stats = fastnorm.batch_layer_norm(xv.copy(), w, b, rm.copy(), rv.copy(),
                                                 training=training, batch_size=bs,
                                                 inference_mean=im, inference_var=iv,
                                                 return_stats=True, num_threads=1)
        fwd_kw = dict(batch_size=bs, eps=eps,
                      batch_mean=rm if not training and im == "population" else None,
                      batch_var=rv if not training and iv == "population" else None)
        case.argnames = ("dy", "x", "stats", "weight", "bias")
        case.args = [g.layout(dyv), g.layout(xv), stats, w, b]
        case.kw = dict(num_threads=g.threads())
        mw = vw = None
    case.notes.append("training" if training else "eval")
    if g.p(0.35):
        fields = [f for f in stats._fields if isinstance(getattr(stats, f), np.ndarray)]
        r = g.rng.random()
        if r < 0.5 and fields:
            # one field of the stats with a wrong shape or dtype
            f = g.pick(fields)
            cur = getattr(stats, f)
            bad = (np.zeros(cur.shape + (2,), cur.dtype) if g.p(0.5) else
                   np.array(cur, dtype=g.pick([np.complex128, object])))
            if bad.dtype == object:
                bad[...] = "x"
            case.args[2] = stats._replace(**{f: bad})
            case.bad = (f"stats.{f}",)
        else:
            names = ["dy", "x", "stats", "weight", "bias", "num_threads"] + (
                ["mean_weight", "var_weight", "axis"] if kind == "switch" else [])
            name = g.pick(names)
            if name in ("dy", "x"):
                i = case.argnames.index(name)
                case.args[i] = bad_array(g, case.args[i], shape_too=(name == "dy"))
            elif name == "stats":
                case.args[2] = g.pick([tuple(stats), None, dict(stats._asdict())])
            elif name in ("weight", "bias"):
                case.args[case.argnames.index(name)] = bad_param(g, None, comp, (pdim,))
            elif name in ("mean_weight", "var_weight"):
                case.args[case.argnames.index(name)] = np.ones(4, comp)
            elif name == "axis":
                case.kw["axis"] = bad_channel_axis(g, len(shape))
            else:
                case.kw["num_threads"] = g.pick(BAD_THREADS)
            case.bad = (name,)
    P = dict(x=keep(xv), dy=keep(dyv), w=keep(w), b=keep(b), mw=keep(mw), vw=keep(vw),
             rm=rm, rv=rv, stats=stats)

    def check(case, res):
        n = 5 if kind == "switch" else 3
        assert isinstance(res, tuple) and len(res) == n, f"result: {describe(res)}"
        dx = res[0]
        assert dx.dtype == dt and dx.shape == shape, f"dx: {describe(dx)}"
        for nm, gr, p, pshape in (("dweight", res[1], P["w"], (pdim,)),
                                  ("dbias", res[2], P["b"], (pdim,))):
            if p is None:
                assert gr is None, f"{nm}: {describe(gr)} for a None parameter"
            else:
                assert gr.dtype == grad_dtype(p, comp) and gr.shape == pshape, (
                    f"{nm}: {describe(gr)}")
        if kind == "switch":
            for nm, gr, p in (("dmean_weight", res[3], P["mw"]), ("dvar_weight", res[4],
                                                                   P["vw"])):
                assert gr.shape == (3,) and gr.dtype == grad_dtype(p, comp), (
                    f"{nm}: {describe(gr)}")
        if not case.exact or dx.size == 0:
            return
        rng = np.random.default_rng(case.seed + 1)
        x64 = P["x"].astype(np.float64)
        dy64 = P["dy"].astype(np.float64)
        w64 = None if P["w"] is None else np.asarray(P["w"], np.float64).astype(comp).astype(
            np.float64)
        b64 = None if P["b"] is None else np.asarray(P["b"], np.float64)
        if kind == "switch":
            mw64, vw64 = f64(P["mw"]), f64(P["vw"])
            bn = {} if training else dict(bn_mean=P["rm"], bn_var=P["rv"])

            def fwd(xx=x64, ww=w64, bb=b64, mm=mw64, vv=vw64):
                return ref.switch_norm(xx, ww, bb, mm, vv, eps=eps, axis=axis, **bn)
            rstd_max = amax(P["stats"].rstd)
        else:
            def fwd(xx=x64, ww=w64, bb=b64):
                return ref.batch_layer_norm(xx, ww, bb, **fwd_kw)
            rstd_max = max(amax(P["stats"].feature_rstd), amax(P["stats"].batch_rstd))
        gmax = amax(dy64) * (1.0 if w64 is None else max(1.0, amax(w64)))
        u = rng.standard_normal(shape)
        # a step on the scale of x's spread (the normalizers' nonlinearity)
        # (or of sqrt(eps), below which the normalizers are linear)
        hx = 1e-3 * max(float(np.std(x64)), math.sqrt(eps))
        _fd_expect("dx", res[0], u, lambda t: fwd(xx=x64 + t * u), dy64, comp,
                   scale=gmax * rstd_max * float(np.sum(np.abs(u))), h=hx)
        if w64 is not None:
            uw = rng.standard_normal(pdim)
            # the forward is linear in weight and bias: y(uw, no bias) is the derivative
            _fd_expect("dweight", res[1], uw, None, dy64, comp,
                       scale=float(np.sum(np.abs(dy64))) * max(1.0, amax(x64)) * rstd_max
                       * amax(uw), linear=lambda: fwd(ww=uw, bb=None))
        if b64 is not None:
            ub = rng.standard_normal(pdim)
            _fd_expect("dbias", res[2], ub, None, dy64, comp,
                       scale=float(np.sum(np.abs(dy64))) * amax(ub),
                       linear=lambda: fwd(ww=np.zeros(pdim), bb=ub))
        if kind == "switch":
            base_m = np.zeros(3) if mw64 is None else mw64
            base_v = np.zeros(3) if vw64 is None else vw64
            big = float(np.sum(np.abs(dy64))) * gmax * rstd_max * (1 + amax(x64)) ** 2
            um = rng.standard_normal(3)
            _fd_expect("dmean_weight", res[3], um, lambda t: fwd(mm=base_m + t * um), dy64,
                       comp, scale=big * gmax)
            uv = rng.standard_normal(3)
            _fd_expect("dvar_weight", res[4], uv, lambda t: fwd(vv=base_v + t * uv), dy64,
                       comp, scale=big * gmax)

    case.check = check


def gen_weight_norm(g, case, backward=False):
    dt = g.dtype()
    comp = comp_dtype(dt)
    shape = g.shape(1, 4) if g.p(0.95) else ()
    if shape == () or g.p(0.15):
        axis = None
    else:
        axis = g.pick([0, 0, -1, g.int(-len(shape), len(shape) - 1)])
    count = 1 if axis is None else shape[axis]
    vv = g.values(shape, dt)
    v = g.layout(vv) if shape else vv
    gshape = g.pick([(count,), (count, 1), (1, count)]) if axis is not None else g.pick(
        [(), (1,), (1, 1)])
    if axis is not None and axis % max(1, len(shape)) == 0 and g.p(0.5):
        gshape = (count,) + (1,) * (len(shape) - 1)
    gv = (1.0 + 0.5 * g.rng.standard_normal(gshape)).astype(
        comp if g.p(0.7) else g.pick([F32, F64, F16]))
    gg = g.layout(gv) if gv.ndim else gv
    if g.p(0.05):
        gg = gv.tolist()
    eps = 0.0 if g.p(0.6) else g.pick([1e-6, 1e-12])
    nt = g.threads()
    if backward:
        dwv = g.values(shape, dt, loc=0.0, scale=1.0, special="grad")
        case.argnames = ("dw", "v", "g")
        case.args = [g.layout(dwv) if shape else dwv, v, gg]
        case.kw = dict(axis=axis, eps=eps, num_threads=nt)
        names = ["dw", "v", "g", "axis", "eps", "num_threads"]
    else:
        case.argnames = ("v", "g")
        out = make_out(g, case, v) if shape else None
        if isinstance(out, str):
            v, out = overlapping_pair(g, vv)
            case.args = [v, gg]
            case.maybe = ("out",)
        case.args = [v, gg]
        case.kw = dict(axis=axis, eps=eps, out=out, num_threads=nt)
        names = ["v", "g", "axis", "eps", "num_threads"]
    if case.bad is None and g.p(0.3):
        name = g.pick(names)
        if name in ("v", "dw"):
            i = case.argnames.index(name)
            case.args[i] = bad_array(g, case.args[i], shape_too=(name == "dw"))
        elif name == "g":
            case.args[-1] = g.pick([np.ones(count + 1, comp), np.ones(gshape, np.int64),
                                    None, "g"])
        elif name == "axis":
            case.kw["axis"] = g.pick([len(shape) + 1, 1.0, "0", -len(shape) - 1])
        elif name == "eps":
            case.kw["eps"] = g.pick(BAD_EPS)
        else:
            case.kw["num_threads"] = g.pick(BAD_THREADS)
        case.bad = (name,)
        case.maybe = None
    P = dict(v=keep(vv), g=keep(gv), dw=keep(dwv) if backward else None,
             out=None if backward else case.kw["out"], glist=isinstance(gg, list))

    def check(case, res):
        if backward:
            assert isinstance(res, tuple) and len(res) == 2, f"result: {describe(res)}"
            dv, dg = res
            assert dv.dtype == dt and dv.shape == shape, f"dv: {describe(dv)}"
            gd = comp if P["glist"] else grad_dtype(P["g"], comp)
            assert dg.dtype == gd and dg.shape == gshape, f"dg: {describe(dg)}, expected {gd}"
        else:
            w = res
            if isinstance(P["out"], np.ndarray):
                assert w is P["out"], "w is not out"
            assert w.dtype == dt and w.shape == shape, f"w: {describe(w)}"
        if not case.exact or math.prod(shape) == 0:
            return
        g64 = P["g"].astype(np.float64)
        if backward:
            dve, dge = ref.weight_norm_backward(P["dw"], P["v"], g64, axis=axis, eps=eps)
            others = tuple(range(len(shape))) if axis is None else tuple(
                i for i in range(len(shape)) if i != axis % len(shape))
            with np.errstate(all="ignore"):
                v64 = P["v"].astype(np.float64)
                norm = np.sqrt((v64 ** 2).sum(axis=others, keepdims=True) + eps)
                dw64 = P["dw"].astype(np.float64)
                terms = np.abs(dw64 * v64) / norm
                bshape = [1] * len(shape)
                if axis is not None:
                    bshape[axis % len(shape)] = -1
                gb = np.abs(g64).reshape(bshape)
                dgb = np.abs(dge).reshape(bshape)
                # the two terms of dv, each of which can be much larger than dv
                parts = gb / norm * np.abs(dw64) + gb * dgb / norm ** 2 * np.abs(v64)
                parts = parts[np.isfinite(parts)]
            expect("dv", dv, dve, comp, scale=max(amax(dve[np.isfinite(dve)]), amax(parts)),
                   factor=8)
            expect("dg", np.ravel(dg), dge, comp, scale=sum_scale(terms, others), factor=8)
        else:
            we = ref.weight_norm(P["v"], g64, axis=axis, eps=eps)
            expect("w", w, we, comp)

    case.check = check


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------

def gen_layer(g, case, name):
    """A fastnorm.nn layer: built (possibly with one invalid constructor
    argument), given random state through load_state_dict, run forward and
    backward (training or eval) on random x; compared bit for bit with the
    functions called on the same arrays, and round-tripped through state_dict."""
    cls = getattr(nn, name)
    ldt = g.dtype()
    xdt = ldt if g.p(0.7) else g.dtype()
    kw = {}
    ctor = []
    bad = None
    if name in ("LayerNorm", "RMSNorm"):
        shape = g.shape(1, 4)
        shape = tuple(max(1, s) for s in shape)
        k = g.int(1, len(shape))
        nshape = shape[-k:]
        ctor = [nshape if g.p(0.7) else list(nshape)]
        if name == "LayerNorm":
            kw = dict(eps=g.eps(1e-5), elementwise_affine=g.p(0.8), bias=g.p(0.8))
        else:
            kw = dict(eps=None if g.p(0.6) else g.eps(1e-5), elementwise_affine=g.p(0.8))
    elif name == "WeightNorm":
        shape = tuple(max(1, s) for s in g.shape(1, 4))
        axis = None if g.p(0.2) else g.int(-len(shape), len(shape) - 1)
        ctor = [g.values(shape, ldt, special=False)]
        kw = dict(axis=axis, eps=g.pick([0.0, 1e-6]))
    elif name == "BatchLayerNorm":
        shape = tuple(max(1, s) for s in g.shape(2, 4))
        D = shape[-1]
        fs = None if (len(shape) == 2 and g.p(0.5)) else shape[1:]
        ctor = [D]
        kw = dict(feature_shape=fs, eps=g.eps(1e-3),
                  momentum=g.pick([0.1, None, 0.5]), affine=g.p(0.8),
                  batch_size=None if g.p(0.8) else g.int(1, 4),
                  inference_mean=g.pick(["population", "batch"]),
                  inference_var=g.pick(["population", "batch"]))
    else:
        nd = {"InstanceNorm1d": 3, "InstanceNorm2d": 4, "InstanceNorm3d": 5,
              "BatchNorm1d": g.pick([2, 3]), "BatchNorm2d": 4, "BatchNorm3d": 5}.get(name)
        nd = nd or g.int(2, 4)
        shape = list(g.shape(nd, nd, cap=1500))
        axis = 1 if g.p(0.7) else -1
        k = axis % nd
        shape[k] = max(1, shape[k])
        shape = tuple(shape)
        C = shape[k]
        if name == "GroupNorm":
            G = g.pick([d for d in range(1, C + 1) if C % d == 0])
            ctor = [G, C]
            kw = dict(eps=g.eps(1e-5), affine=g.p(0.8), axis=axis)
        else:
            ctor = [C]
            kw = dict(eps=g.eps(1e-5), momentum=g.pick([0.1, None, 0.5]), affine=g.p(0.7),
                      axis=axis)
            if name.startswith("InstanceNorm") or name.startswith("BatchNorm"):
                kw["track_running_stats"] = g.p(0.6) if name.startswith("Instance") else g.p(
                    0.85)
    kw["dtype"] = ldt
    if g.p(0.15):
        opts = [n for n in ("eps", "momentum", "axis", "dtype") if n in kw]
        bad = g.pick(opts + ["dtype"])
        kw[bad] = {"eps": g.pick([-1.0, "x", None if name != "RMSNorm" else -1.0]),
                   "momentum": g.pick([-0.5, 2.0, "0.1"]),
                   "axis": g.pick([0, 1.5, "1"]) if name != "WeightNorm" else g.pick(
                       [1.5, "1", len(shape)]),
                   "dtype": g.pick([np.int32, np.complex64, "float8", object])}[bad]
    training = g.p(0.6)
    xshape = shape
    if name == "WeightNorm":
        xdt = ldt  # dw has the weight's dtype
    xv = g.values(xshape, xdt)
    dyv = g.values(xshape, xdt, loc=0.0, scale=1.0, special="grad")
    x_bad = False
    if bad is None and name not in ("LayerNorm", "RMSNorm", "WeightNorm", "BatchLayerNorm",
                                    "GroupNorm"):
        # one value per channel with batch statistics: refused, naming x
        k = kw["axis"] % len(shape)
        per = math.prod(s for i, s in enumerate(shape) if i != k)
        if name.startswith("Instance"):
            per = math.prod(s for i, s in enumerate(shape) if i not in (0, k))
            batch = training or not kw["track_running_stats"]
        elif name.startswith("Batch"):
            batch = training or not kw["track_running_stats"]
        else:
            batch = training
        if batch and per == 1:
            x_bad = True
    if bad is None and not x_bad and name != "WeightNorm" and g.p(0.1):
        xv = xv.astype(g.pick([np.int64, np.complex128, np.bool_]))
        x_bad = True
    x = g.layout(xv) if xv.dtype.kind == "f" or xv.dtype == BF16 else xv
    dy = g.layout(dyv)
    state_rng = np.random.default_rng(case.seed + 7)
    case.argnames = ("x",)
    case.args = [x, dy]
    case.notes.append(f"{name}(*{describe(ctor)}, {', '.join(f'{k}={describe(v)}' for k, v in kw.items())})"
                      f" {'train' if training else 'eval'}")

    def build():
        return cls(*ctor, **kw)

    if bad is not None:
        case.bad = (bad,)
        case.invoke = build
        case.check = lambda case, res: None
        return

    try:
        layer0 = build()
    except (ValueError, TypeError) as exc:
        raise AssertionError(f"the layer refused valid arguments: {exc}")

    # random parameters and running statistics, through load_state_dict
    st = {}
    for kk, vv in layer0.state_dict().items():
        if kk == "num_batches_tracked":
            st[kk] = np.array(int(state_rng.integers(0, 5)), np.int64)
        elif kk == "running_var":
            st[kk] = state_rng.uniform(0.5, 2.0, vv.shape).astype(vv.dtype)
        elif kk in ("g",):
            st[kk] = (1 + 0.3 * state_rng.standard_normal(vv.shape)).astype(vv.dtype)
        else:
            st[kk] = (state_rng.standard_normal(vv.shape) * 0.5
                      + (1.0 if kk == "weight" else 0.0)).astype(vv.dtype)

    def fresh():
        layer = build()
        layer.load_state_dict({kk: np.array(vv, copy=True) for kk, vv in st.items()})
        layer.train(training)
        return layer

    layer = fresh()
    case.state = lambda: {f"layer.{kk}": vv for kk, vv in layer.state_dict().items()
                          if isinstance(vv, np.ndarray) and kk != "num_batches_tracked"}
    if x_bad:
        case.bad = ("x",)
        case.invoke = lambda: layer(x)
        case.check = lambda case, res: None
        return

    def invoke():
        if name == "WeightNorm":
            w = layer()
            gg, gv = layer.backward(dy)
            return (w, gg, gv)
        y = layer(x)
        dx = layer.backward(dy)
        grads = tuple(getattr(layer, "grad_" + n) for n in layer._param_names)
        return (y, dx) + grads + tuple(
            v for kk, v in sorted(layer.state_dict().items()))

    case.invoke = invoke
    case.mutable |= {f"layer.{kk}" for kk in st}
    xs = keep(x)
    dys = keep(dy)

    def check(case, res):
        ref_layer = fresh()  # the same layer, run through the functions by hand
        if name == "WeightNorm":
            we = fastnorm.weight_norm(ref_layer.v, ref_layer.g, axis=ref_layer.axis,
                                      eps=ref_layer.eps)
            dv, dg = fastnorm.weight_norm_backward(dys, ref_layer.v, ref_layer.g,
                                                   axis=ref_layer.axis, eps=ref_layer.eps)
            _same("w", res[0], we)
            _same("grad_g", res[1], np.asarray(dg).astype(ldt))
            _same("grad_v", res[2], np.asarray(dv).astype(ldt))
            return
        y, dx = res[:2]
        assert y.dtype == x.dtype.newbyteorder("=") and y.shape == x.shape, f"y: {describe(y)}"
        assert dx.dtype == y.dtype and dx.shape == x.shape, f"dx: {describe(dx)}"
        _layer_functional(name, ref_layer, xs, dys, res, training, ldt)
        # state_dict round trip: a fresh layer loaded from the state computes the same
        sd = layer.state_dict()
        other = build()
        other.load_state_dict(sd)
        other.eval()
        layer.eval()
        a = layer(xs)
        b2 = other(xs)
        _same("forward after load_state_dict", a, b2)

    case.check = check


def _same(what, a, b):
    if a is None or b is None:
        assert a is None and b is None, f"{what}: {describe(a)} vs {describe(b)}"
        return
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, f"{what}: {describe(a)} vs {describe(b)}"
    assert a.tobytes() == b.tobytes(), f"{what}: bits differ from the functions' result"


def _layer_functional(name, L, x, dy, res, training, ldt):
    """The layer's forward/backward against the functions on the same arrays."""
    y, dx = res[:2]
    grads = res[2:2 + len(L._param_names)]
    fam = fastnorm
    if name == "LayerNorm":
        ye, m, r = fam.layer_norm(x, L.weight, L.bias, axis=L._axis, eps=L.eps,
                                  return_stats=True)
        dxe, dw, db = fam.layer_norm_backward(dy, x, m, r, L.weight, axis=L._axis)
        ge = (dw if L.weight is not None else None, db if L.bias is not None else None)
    elif name == "RMSNorm":
        ye, r = fam.rms_norm(x, L.weight, axis=L._axis, eps=L.eps, return_stats=True)
        dxe, dw = fam.rms_norm_backward(dy, x, r, L.weight, axis=L._axis)
        ge = (dw if L.weight is not None else None,)
    elif name == "GroupNorm":
        ye, m, r = fam.group_norm(x, L.num_groups, L.weight, L.bias, eps=L.eps, axis=L.axis,
                                  return_stats=True)
        dxe, dw, db = fam.group_norm_backward(dy, x, m, r, L.weight, L.bias, axis=L.axis)
        ge = (dw, db)
    elif name.startswith("InstanceNorm") or name.startswith("BatchNorm"):
        tracked = L.track_running_stats
        comp = comp_dtype(x.dtype)
        rm = rv = None
        if tracked:
            rm, rv = L.running_mean, L.running_var
            if rm.dtype != comp and rm.dtype != F64:
                rm, rv = rm.astype(comp), rv.astype(comp)
            else:
                rm, rv = rm.copy(), rv.copy()
        mom = (1.0 / (L.num_batches_tracked + 1) if L.momentum is None else L.momentum) \
            if (training and tracked) else 0.0
        batch = training or not tracked
        if name.startswith("Instance"):
            ye, m, r = fam.instance_norm(x, L.weight, L.bias, rm, rv, training=batch,
                                         momentum=mom, eps=L.eps, axis=L.axis,
                                         return_stats=True)
            dxe, dw, db = fam.instance_norm_backward(dy, x, m, r, L.weight, L.bias, axis=L.axis)
        else:
            ye, m, r = fam.batch_norm(x, rm, rv, L.weight, L.bias, training=batch, momentum=mom,
                                      eps=L.eps, axis=L.axis, return_stats=True)
            dxe, dw, db = fam.batch_norm_backward(dy, x, m, r, L.weight, L.bias,
                                                  training=batch, axis=L.axis)
        ge = (dw, db)
        if tracked:
            sd = dict(zip(sorted(L.state_dict()), res[2 + len(L._param_names):]))
            _same("running_mean", sd["running_mean"], rm.astype(L.running_mean.dtype))
            _same("running_var", sd["running_var"], rv.astype(L.running_var.dtype))
    elif name == "SwitchNorm":
        comp = comp_dtype(x.dtype)
        rm, rv = L.running_mean, L.running_var
        rm, rv = (rm.astype(comp), rv.astype(comp)) if rm.dtype != comp and rm.dtype != F64 \
            else (rm.copy(), rv.copy())
        mom = (1.0 / (L.num_batches_tracked + 1) if L.momentum is None else L.momentum) \
            if training else 0.0
        ye, st = fam.switch_norm(x, L.weight, L.bias, L.mean_weight, L.var_weight, rm, rv,
                                 training=training, momentum=mom, eps=L.eps, axis=L.axis,
                                 return_stats=True)
        dxe, dw, db, dmw, dvw = fam.switch_norm_backward(dy, x, st, L.weight, L.bias,
                                                         L.mean_weight, L.var_weight,
                                                         axis=L.axis)
        ge = (dw, db, dmw, dvw)
    elif name == "BatchLayerNorm":
        comp = comp_dtype(x.dtype)
        rm, rv = L.running_mean, L.running_var
        rm, rv = (rm.astype(comp), rv.astype(comp)) if rm.dtype != comp and rm.dtype != F64 \
            else (rm.copy(), rv.copy())
        mom = (1.0 / (L.num_batches_tracked + 1) if L.momentum is None else L.momentum) \
            if training else 0.0
        ye, st = fam.batch_layer_norm(x, L.weight, L.bias, rm, rv, training=training,
                                      batch_size=L.batch_size, momentum=mom, eps=L.eps,
                                      inference_mean=L.inference_mean,
                                      inference_var=L.inference_var, return_stats=True)
        dxe, dw, db = fam.batch_layer_norm_backward(dy, x, st, L.weight, L.bias)
        ge = (dw, db)
    else:
        raise AssertionError(name)
    _same("y", y, ye)
    _same("dx", dx, dxe)
    for n, gr, e in zip(L._param_names, grads, ge):
        _same("grad_" + n, gr, None if e is None else np.asarray(e).astype(ldt))


# --------------------------------------------------------------------------
# Building and running a case
# --------------------------------------------------------------------------

GENERATORS = {
    "layer_norm": gen_layer_norm,
    "rms_norm": lambda g, c: gen_layer_norm(g, c, rms=True),
    "layer_norm_backward": gen_layer_norm_backward,
    "rms_norm_backward": lambda g, c: gen_layer_norm_backward(g, c, rms=True),
    "add_layer_norm": gen_add_norm,
    "add_rms_norm": lambda g, c: gen_add_norm(g, c, rms=True),
    "add_layer_norm_backward": lambda g, c: gen_layer_norm_backward(g, c, add=True),
    "add_rms_norm_backward": lambda g, c: gen_layer_norm_backward(g, c, rms=True, add=True),
    "ada_layer_norm": gen_ada,
    "ada_layer_norm_backward": gen_ada_backward,
    "group_norm": gen_group_norm,
    "group_norm_backward": lambda g, c: gen_group_backward(g, c, "group"),
    "instance_norm": lambda g, c: gen_batch_instance(g, c, "instance"),
    "instance_norm_backward": lambda g, c: gen_group_backward(g, c, "instance"),
    "batch_norm": lambda g, c: gen_batch_instance(g, c, "batch"),
    "batch_norm_backward": lambda g, c: gen_group_backward(g, c, "batch"),
    "batch_layer_norm": gen_batch_layer_norm,
    "batch_layer_norm_backward": lambda g, c: gen_stats_backward(g, c, "bln"),
    "switch_norm": gen_switch_norm,
    "switch_norm_backward": lambda g, c: gen_stats_backward(g, c, "switch"),
    "weight_norm": gen_weight_norm,
    "weight_norm_backward": lambda g, c: gen_weight_norm(g, c, backward=True),
}


def make_case(seed, num_threads="as drawn", huge_threads=False):
    """The case of this seed; num_threads replaces the drawn thread count of a
    call whose thread count is valid (the determinism re-runs)."""
    target = target_of(seed)
    g = Gen(seed, huge_threads=huge_threads)
    case = Case(seed, target)
    if target.startswith("nn."):
        gen_layer(g, case, target[3:])
    else:
        GENERATORS[target](g, case)
    case.exact = g.finite
    case.mode = g.mode
    case.big = g.big
    if num_threads != "as drawn" and "num_threads" in case.kw and case.bad != ("num_threads",):
        case.kw["num_threads"] = num_threads
    return case


def _snapshot(arrays):
    return {k: (v.shape, v.dtype.str if v.dtype.kind != "V" else str(v.dtype),
                v.tobytes() if v.dtype != object else repr(v.tolist()))
            for k, v in arrays.items()}


def _changed(before, arrays, allowed):
    out = []
    for k, v in arrays.items():
        if k in allowed or k not in before:
            continue
        now = (v.shape, v.dtype.str if v.dtype.kind != "V" else str(v.dtype),
               v.tobytes() if v.dtype != object else repr(v.tolist()))
        if now != before[k]:
            out.append(k)
    return out


def run_case(case):
    """Calls the case; returns (problems, result). problems is a list of strings."""
    arrays = case.arrays()
    before = _snapshot(arrays)
    # what a successful call may write: out, sum_out, running statistics and
    # whatever shares memory with them
    allowed = set(case.mutable)
    for k, v in arrays.items():
        for m in case.mutable:
            mv = arrays.get(m)
            if mv is not None and v.size and mv.size and np.shares_memory(v, mv):
                allowed.add(k)
    problems = []
    result = None
    try:
        with np.errstate(all="ignore"):
            result = case.call()
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        names = case.bad or case.maybe
        if names is None:
            problems.append(f"{type(exc).__name__} on a valid call: {msg}")
        elif not any(n in msg for n in names):
            problems.append(f"{type(exc).__name__} does not name {' or '.join(names)}: {msg}")
        changed = _changed(before, case.arrays() if case.state else arrays, set())
        if changed:
            problems.append(f"the failed call changed {', '.join(changed)}")
        return problems, None
    except Exception as exc:  # noqa: BLE001 - any other exception is a finding
        problems.append(f"{type(exc).__name__} (not ValueError/TypeError): {exc}")
        return problems, None
    if case.bad is not None:
        problems.append(f"no error for the invalid {' / '.join(case.bad)}")
        return problems, result
    changed = _changed(before, arrays, allowed)
    if changed:
        problems.append(f"the call changed its input(s) {', '.join(changed)}")
    _ORACLE_COND[0] = 1e3 if case.mode == "offset" else 1.0
    try:
        with np.errstate(all="ignore"):
            case.check(case, result)
    except AssertionError as exc:
        problems.append(f"wrong result: {exc}")
    except Exception as exc:  # noqa: BLE001
        problems.append(f"checking raised {type(exc).__name__}: {exc}")
    return problems, result


def _flatten(v):
    """Every array in a result (tuples and stats namedtuples opened)."""
    if isinstance(v, np.ndarray):
        return [v]
    if isinstance(v, tuple):
        out = []
        for t in v:
            out += _flatten(t)
        return out
    return [np.asarray(v)] if v is not None else [None]


def fingerprint(case, result):
    """The bits of every result and of every array the call may write."""
    parts = []
    for a in _flatten(result):
        parts.append(None if a is None else (a.dtype.str, a.shape, a.tobytes()))
    arrays = case.arrays()
    for k in sorted(case.mutable):
        if k in arrays:
            parts.append((k, arrays[k].tobytes()))
    return parts


def threads_problems(seed, huge_threads=False):
    """The case run with num_threads=1 and num_threads=2 (and as drawn): the
    same bits, NaN payloads included. Empty when the case is an error case."""
    prints = {}
    for nt in ("as drawn", 1, 2):
        case = make_case(seed, num_threads=nt, huge_threads=huge_threads)
        if nt != "as drawn":  # the default too: layers take no num_threads
            fastnorm.set_num_threads(nt)
        try:
            with np.errstate(all="ignore"):
                res = case.call()
        except (ValueError, TypeError):
            return []
        finally:
            fastnorm.set_num_threads(None)
        prints[nt] = fingerprint(case, res)
    base = prints[1]
    out = []
    for nt in ("as drawn", 2):
        if prints[nt] != base:
            diff = [i for i, (a, b) in enumerate(zip(prints[nt], base)) if a != b]
            out.append(f"num_threads={nt!r} differs from num_threads=1 in result part(s) {diff}")
    return out


def wants_threads_check(case):
    """The sample of cases re-run with 1 and 2 threads: every fourth seed, every
    case large enough to run on several threads, every case with NaN or Inf."""
    return case.seed % 4 == 0 or case.big or case.mode in ("nan", "inf")


def check_seed(seed, threads="sample", huge_threads=False):
    """All problems of one seed, as strings that start with the seed. threads:
    True, False, or "sample" (wants_threads_check) for the determinism re-runs."""
    return [f"seed {p['seed']} {p['target']} [{p['mode']}]: {p['problem']} -- {p['call']}"
            for p in seed_problems(seed, threads, huge_threads)]


def seed_problems(seed, threads="sample", huge_threads=False):
    """The problems of one seed as dicts: seed, target, mode, problem, call."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN data and empty reductions of the oracle
        with np.errstate(all="ignore"):
            return _seed_problems(seed, threads, huge_threads)


def _seed_problems(seed, threads, huge_threads):
    try:
        case = make_case(seed, huge_threads=huge_threads)
    except Exception as exc:  # noqa: BLE001 - a forward the case needs, or the generator
        return [dict(seed=seed, target=target_of(seed), mode="?", call="",
                     problem=f"building the case raised {type(exc).__name__}: {exc}")]
    problems, _ = run_case(case)
    if threads == "sample":
        threads = wants_threads_check(case)
    if not problems and threads:
        problems = threads_problems(seed, huge_threads=huge_threads)
    return [dict(seed=seed, target=case.target, mode=case.mode, problem=p,
                 call=case.describe()) for p in problems]


def main(argv):
    huge = "--huge-threads" in argv
    seeds = [int(s) for s in argv if s != "--huge-threads"] or [0]
    bad = 0
    for s in seeds:
        probs = check_seed(s, threads=True, huge_threads=huge)
        if not probs:
            print(f"seed {s} {target_of(s)}: ok")
        for p in probs:
            bad += 1
            print(p)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
