"""Shared fixtures and helpers of fastnorm's test suite.

- ``isa``: runs a test once per kernel target this build and CPU offer
  (``fastnorm._core._available_isas()``: scalar, avx2, avx512), restoring
  "auto" afterwards.
- ``array_cases``: arrays of 1 to 4 dimensions in many memory layouts (C,
  Fortran, sliced, negative strides, byte-swapped, transposed, permuted,
  padded rows, unaligned), in the spirit of bottleneck's array generator.
- ``assert_close`` and friends: the tolerances of the suite (float32 about
  1e-5 relative to the size of the result, float64 about 1e-12).

Test modules import the helpers with ``from conftest import ...`` (pytest puts
this directory on sys.path).
"""
import zlib

import numpy as np
import pytest

import fastnorm
from fastnorm import _core

DTYPES = (np.float32, np.float64)

# Tolerance per dtype, relative to the scale of the quantity compared
# (max(1, max|expected|) unless a test passes a scale of its own).
TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def tol(dtype):
    return TOL[np.dtype(dtype)]


def max_abs_err(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected)))


def assert_close(actual, expected, dtype, *, scale=None, factor=1.0, what="result"):
    """max|actual - expected| <= tol(dtype) * factor * max(1, scale).

    scale defaults to max|expected|. NaNs must sit at the same places.
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape} != expected {expected.shape}"
    )
    a64 = actual.astype(np.float64)
    nan_a, nan_e = np.isnan(a64), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), f"{what}: NaNs at different places"
    if actual.size == 0:
        return
    ok = ~nan_e
    if scale is None:
        scale = float(np.max(np.abs(expected[ok]))) if ok.any() else 0.0
    bound = tol(dtype) * factor * max(1.0, float(scale))
    err = max_abs_err(a64[ok], expected[ok]) if ok.any() else 0.0
    assert err <= bound, f"{what}: max abs error {err:.3e} > {bound:.3e} (dtype {np.dtype(dtype)})"


def assert_rel_close(actual, expected, dtype, *, factor=1.0, what="result"):
    """Error relative to the largest element of expected (no floor at 1)."""
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape, what
    if expected.size == 0:
        return
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    err = max_abs_err(actual, expected)
    bound = tol(dtype) * factor * scale
    assert err <= bound, f"{what}: max abs error {err:.3e} > {bound:.3e} (scale {scale:.3e})"


def sum_scale(terms, others):
    """Largest sum of |terms| over the axes `others`: the scale of a sum's rounding error."""
    terms = np.abs(np.asarray(terms, dtype=np.float64))
    if terms.size == 0:
        return 0.0
    return float(np.max(terms.sum(axis=others))) if others else float(np.max(terms))


def norm_axes(axis, ndim):
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    return tuple(sorted(a % ndim for a in axes))


def other_axes(axis, ndim):
    axes = norm_axes(axis, ndim)
    return tuple(a for a in range(ndim) if a not in axes)


def param_shape(shape, axis):
    return tuple(shape[a] for a in norm_axes(axis, len(shape)))


def stats_shape(shape, axis):
    axes = norm_axes(axis, len(shape))
    return tuple(s for a, s in enumerate(shape) if a not in axes)


def axis_choices(ndim):
    """Axis arguments worth testing for an array of ndim dimensions:
    the default, a leading axis, trailing tuples, non-trailing tuples, all axes."""
    choices = [-1]
    if ndim >= 2:
        choices += [0, (-2, -1), tuple(range(ndim))]
    if ndim >= 3:
        choices += [(0, 2), 1, (2, 0)]
    if ndim >= 4:
        choices += [(1, 3), (0, 1, 3)]
    out = []
    for c in choices:
        if c not in out:
            out.append(c)
    return out


# --------------------------------------------------------------------------
# Array generator: the same values in many memory layouts
# --------------------------------------------------------------------------

SHAPES = [
    (1,), (7,), (33,),
    (1, 1), (3, 8), (5, 17), (16, 9),
    (2, 1, 40), (4, 3, 9),
    (2, 3, 4, 5), (3, 1, 2, 7),
]


def _c(a):
    return np.ascontiguousarray(a)


def _fortran(a):
    return np.asfortranarray(a)


def _sliced(a):
    """Every axis strided by 2 inside a larger buffer, starting at offset 1."""
    big = np.full(tuple(2 * s + 1 for s in a.shape), np.nan, dtype=a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def _negstride(a):
    rev = tuple(slice(None, None, -1) for _ in a.shape)
    return np.ascontiguousarray(a[rev])[rev]


def _byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


def _transposed(a):
    return np.ascontiguousarray(a.T).T


def _permuted(a):
    perm = np.random.default_rng(a.ndim * 7 + a.size).permutation(a.ndim)
    return np.ascontiguousarray(a.transpose(perm)).transpose(np.argsort(perm))


def _padded_rows(a):
    """Last axis contiguous, rows padded: a row stride larger than the row."""
    big = np.full(a.shape[:-1] + (a.shape[-1] + 3,), np.nan, dtype=a.dtype)
    view = big[..., 1:a.shape[-1] + 1]
    view[...] = a
    return view


def _unaligned(a):
    """Elements at an address that is not a multiple of the item size."""
    buf = np.zeros(a.nbytes + a.itemsize, dtype=np.uint8)
    view = buf[1:1 + a.nbytes].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


LAYOUTS = {
    "C": _c,
    "F": _fortran,
    "sliced": _sliced,
    "negstride": _negstride,
    "byteswapped": _byteswapped,
    "transposed": _transposed,
    "permuted": _permuted,
    "padded": _padded_rows,
    "unaligned": _unaligned,
}


def make_array(shape, dtype, rng, loc=None, scale=None):
    """Random values in a C-contiguous array; an offset and scale per array."""
    loc = rng.uniform(-3, 3) if loc is None else loc
    scale = rng.uniform(0.5, 2.0) if scale is None else scale
    return (loc + scale * rng.standard_normal(shape)).astype(dtype)


def array_cases(dtype, seed=0, shapes=SHAPES, layouts=None):
    """Yields (label, layout_fn, x): every shape in every layout.

    x holds the values of a C array in the named layout; apply layout_fn to
    another C array of the same shape (dy, say) to get it in the same layout.
    """
    rng = np.random.default_rng(seed)
    names = list(LAYOUTS) if layouts is None else list(layouts)
    for shape in shapes:
        base = make_array(shape, dtype, rng)
        for name in names:
            fn = LAYOUTS[name]
            x = fn(base)
            assert np.array_equal(x, base), name  # the layout keeps the values
            yield f"{shape}-{name}-{np.dtype(dtype).name}", fn, x


@pytest.fixture(name="array_cases")
def array_cases_fixture():
    return array_cases


def random_params(shape, dtype, rng, weight, bias):
    w = (1.0 + 0.5 * rng.standard_normal(shape)).astype(dtype) if weight else None
    b = rng.standard_normal(shape).astype(dtype) if bias else None
    return w, b


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

AVAILABLE_ISAS = _core._available_isas()


@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request):
    """Selects each available kernel target in turn; "auto" is restored after."""
    name = _core._set_isa(request.param)
    assert name == request.param
    assert _core._get_isa() == request.param
    try:
        yield request.param
    finally:
        _core._set_isa("auto")


@pytest.fixture
def shuffled():
    """Calls claim their chunks in a random order, workers pausing at random
    (and the pool takes part even in its quiet period)."""
    _core._pool_shuffle(True)
    try:
        yield
    finally:
        _core._pool_shuffle(False)


@pytest.fixture(params=DTYPES, ids=lambda d: np.dtype(d).name)
def dtype(request):
    return np.dtype(request.param)


@pytest.fixture(autouse=True)
def _restore_threads(request):
    """No test leaks a set_num_threads() into the next one. Each test runs its
    threads on fastnorm's own pool, unless its module sets TORCH_THREADS =
    True: importing fastnorm.torch (which the collection of its tests does)
    moves the process's calls onto PyTorch's threads."""
    team = _core._host_team()
    if not getattr(request.module, "TORCH_THREADS", False):
        _core._host_team(0)
    yield
    fastnorm.set_num_threads(None)
    _core._host_team(team)


@pytest.fixture
def rng(request):
    """A generator seeded by the test's id: stable across runs and processes."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def numeric_grad(f, a, h=1e-6):
    """Central finite differences of the scalar function f at the float64 array a."""
    a = np.array(a, dtype=np.float64, copy=True)
    g = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        orig = a[idx]
        a[idx] = orig + h
        fp = f(a)
        a[idx] = orig - h
        fm = f(a)
        a[idx] = orig
        g[idx] = (fp - fm) / (2 * h)
    return g


def run_python(code, env_extra=None, timeout=120):
    """Runs code in a fresh interpreter that imports the same fastnorm as this
    process; returns the CompletedProcess (a crash shows as a negative returncode)."""
    import os
    import subprocess
    import sys
    import tempfile

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fastnorm.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.pop("FASTNORM_ISA", None)
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True,
        timeout=timeout, cwd=tempfile.gettempdir(),
    )
