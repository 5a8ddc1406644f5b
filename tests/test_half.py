"""float16 and bfloat16 data: the float32 computation rounded once to 16 bits.

Every result is compared with the float64 reference of fastnorm.reference on
the same 16-bit inputs, rounded to the 16-bit type: at most one unit in the
last place of the 16-bit type apart, plus the float32 rounding of the
computation (1e-5 of the result's scale). Statistics and parameter gradients
are float32. The conversions are checked on every 16-bit pattern, on both
kernel tables. bfloat16 comes from ml_dtypes, an optional dependency: its
cases are skipped without it.
"""
import numpy as np
import pytest

import fastnorm
from fastnorm import reference as ref

try:
    import ml_dtypes

    BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - the bf16 extra is not installed
    BF16 = None

F16 = np.dtype(np.float16)
HALF = [
    pytest.param(F16, id="float16"),
    pytest.param(BF16, id="bfloat16",
                 marks=pytest.mark.skipif(BF16 is None, reason="ml_dtypes is not installed")),
]
# the machine epsilon of each type: RMSNorm's default eps
EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
# bits of significand, for the unit in the last place
MANT = {"float16": 11, "bfloat16": 8}
# float32 rounding of the computation, relative to the scale of the result
F32_TOL = 1e-5


def ulp(v, dt):
    """The unit in the last place of each value of v in the 16-bit type dt."""
    v = np.abs(np.asarray(v, np.float64))
    e = np.frexp(v)[1]
    u = np.ldexp(1.0, e - MANT[dt.name])
    if dt == F16:
        u = np.maximum(u, 2.0 ** -24)  # subnormals
    else:
        u = np.maximum(u, 2.0 ** -133)
    return u


def assert_rounded(actual, expected, dt, *, scale=None, what="result", composite=False):
    """actual (16-bit) within one 16-bit ulp of expected (float64), plus F32_TOL * scale.

    composite: a sum of terms each rounded to dt before they are added
    (batch_layer_norm, switch_norm): two ulps of the largest result."""
    assert actual.dtype == dt, f"{what}: dtype {actual.dtype}, expected {dt}"
    a = actual.astype(np.float64)
    e = np.asarray(expected, np.float64)
    assert np.array_equal(np.isnan(a), np.isnan(e)), f"{what}: NaNs differ"
    ok = ~np.isnan(e)
    if scale is None:
        scale = max(1.0, float(np.max(np.abs(e[ok]), initial=0.0)))
    err = np.abs(a - e)[ok]
    bound = ulp(e, dt)[ok] + F32_TOL * scale
    if composite:
        bound = 2 * ulp(scale, dt) + F32_TOL * scale
    worst = float(np.max(err - bound, initial=-1.0))
    assert worst <= 0, f"{what}: error exceeds one ulp + float32 rounding by {worst:.3g}"
    if composite:
        return
    # most elements are the correctly rounded value itself
    exact = np.mean(a[ok] == e[ok].astype(dt).astype(np.float64)) if ok.any() else 1.0
    assert exact > 0.97, f"{what}: only {exact:.3f} of the elements correctly rounded"


def assert_f32_close(actual, expected, *, what="result", factor=1.0):
    assert actual.dtype == np.float32, f"{what}: dtype {actual.dtype}, expected float32"
    e = np.asarray(expected, np.float64)
    scale = max(1.0, float(np.max(np.abs(e), initial=0.0)))
    err = float(np.max(np.abs(actual.astype(np.float64) - e), initial=0.0))
    assert err <= F32_TOL * factor * scale, f"{what}: error {err:.3g} (scale {scale:.3g})"


def data(shape, dt, seed=0, loc=0.5, scale=2.0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * scale + loc).astype(dt)


def params(n, seed=1):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n).astype(np.float32),
            rng.standard_normal(n).astype(np.float32))


# --------------------------------------------------------------------------
# Conversions, on every 16-bit pattern
# --------------------------------------------------------------------------

def all_patterns(dt):
    return np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(dt)


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("n", [256, 7])  # vector loads and stores; scalar tails
def test_load_store_roundtrip_every_pattern(isa, dt, n):
    """s = x + (-0) stores every 16-bit value (x read and s written by the
    kernels' conversions) bit for bit; NaN stays NaN."""
    x = all_patterns(dt)
    x = np.resize(x, (-(-x.size // n), n))
    r = np.full(x.shape, -0.0, np.float32).astype(dt)
    _, s = fastnorm.add_rms_norm(x, r)
    xb, sb = x.view(np.uint16), s.view(np.uint16)
    nan = np.isnan(x.astype(np.float32))
    assert np.array_equal(np.isnan(s.astype(np.float32)), nan)
    assert np.array_equal(sb[~nan], xb[~nan])


@pytest.mark.parametrize("dt", HALF)
def test_load_exact_every_pattern(isa, dt):
    """The mean of a row of 8 copies of v is v: each finite value loads exactly."""
    v = all_patterns(dt)
    f = v.astype(np.float32)
    keep = np.isfinite(f) & (np.abs(f) < 1e37)
    v, f = v[keep], f[keep]
    x = np.repeat(v[:, None], 8, axis=1)
    _, mean, _ = fastnorm.layer_norm(x, return_stats=True)
    assert mean.dtype == np.float32
    assert np.array_equal(mean.view(np.uint32), f.view(np.uint32)) or np.array_equal(
        mean[f != 0], f[f != 0])
    # and row tails (one element per row)
    _, mean1, _ = fastnorm.layer_norm(v[:, None], return_stats=True)
    assert np.array_equal(mean1, f)


def float_cases(dt):
    """float32 values that probe rounding to dt: ties of neighbouring 16-bit
    values and their neighbours, subnormal and overflow boundaries, signed
    zeros, Inf, and random float32 bit patterns of every exponent."""
    h = all_patterns(dt)
    f = h.astype(np.float32)
    fin = np.isfinite(f)
    lo, hi = f[:-1], f[1:]
    pair = fin[:-1] & fin[1:] & (np.sign(lo) == np.sign(hi)) & (lo != hi)
    mid = ((lo[pair].astype(np.float64) + hi[pair]) / 2).astype(np.float32)  # exact ties
    above = np.nextafter(mid, np.float32(np.inf))
    below = np.nextafter(mid, np.float32(-np.inf))
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 1 << 32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    bits = bits[np.isfinite(bits)]
    special = np.array([0.0, -0.0, np.inf, -np.inf, 65504, 65519.996, 65520, 65536, 1e38,
                        -1e38, 3.4e38, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 1.5 * 2.0 ** -24,
                        2.0 ** -24, 2.0 ** -14, 2.0 ** -14 * (1 - 2.0 ** -11), 1e-45, 1e-40,
                        1.17549435e-38], np.float32)
    return np.concatenate([mid, above, below, bits, special, -special])


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("n", [64, 5])
def test_store_rounds_to_nearest_even(isa, dt, n):
    """s = (-0) + (-0) + residual_bias: the float32 residual_bias stored in dt."""
    vals = float_cases(dt)
    vals = np.resize(vals, (-(-vals.size // n), n))
    zero = np.full((1, n), -0.0, np.float32).astype(dt)
    got = np.empty(vals.shape, dt)
    for i in range(vals.shape[0]):
        _, s = fastnorm.add_rms_norm(zero, zero, residual_bias=vals[i])
        got[i] = s[0]
    with np.errstate(over="ignore"):
        want = vals.astype(dt)
    nan = np.isnan(vals)
    assert not nan.any()
    assert np.array_equal(got.view(np.uint16), want.view(np.uint16))
    # NaN stays NaN (quiet), whatever its payload
    nans = np.array([np.nan, -np.nan, np.float32(np.nan) * 0],
                    np.float32)
    nans = np.concatenate([nans, np.array([0x7f800001, 0xffa00000, 0x7fc00001], np.uint32)
                           .view(np.float32)])
    _, s = fastnorm.add_rms_norm(np.full((1, 6), -0.0, np.float32).astype(dt),
                                 np.full((1, 6), -0.0, np.float32).astype(dt),
                                 residual_bias=nans)
    assert np.isnan(s.astype(np.float32)).all()


# --------------------------------------------------------------------------
# Accuracy of every row normalizer, forward and backward
# --------------------------------------------------------------------------

SHAPES = [(37, 771), (3, 5, 64), (1, 3)]


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("shape", SHAPES)
def test_layer_norm(isa, dt, shape):
    x = data(shape, dt)
    w, b = params(shape[-1])
    y, mean, rstd = fastnorm.layer_norm(x, w, b, return_stats=True)
    ry, rm, rr = ref.layer_norm(x, w, b)
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(mean, rm, what="mean")
    assert_f32_close(rstd, rr, what="rstd", factor=2)
    dy = data(shape, dt, seed=3, loc=0.0, scale=1.0)
    dx, dw, db = fastnorm.layer_norm_backward(dy, x, mean, rstd, w)
    rdx, rdw, rdb = ref.layer_norm_backward(dy, x, mean, rstd, w)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dw, rdw, what="dweight")
    assert_f32_close(db, rdb, what="dbias")


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm(isa, dt, shape):
    x = data(shape, dt)
    w, _ = params(shape[-1])
    y, rstd = fastnorm.rms_norm(x, w, return_stats=True)
    ry, rr = ref.rms_norm(x, w, eps=EPS[dt.name])
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(rstd, rr, what="rstd", factor=2)
    dy = data(shape, dt, seed=3, loc=0.0, scale=1.0)
    dx, dw = fastnorm.rms_norm_backward(dy, x, rstd, w)
    rdx, rdw = ref.rms_norm_backward(dy, x, rstd, w)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dw, rdw, what="dweight")


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("n", [4096, 4101, 65536, 65543])
def test_row_lengths_around_the_widened_copy(isa, dt, n):
    """Rows are widened once into a per-thread float32 copy (forward, and the
    bfloat16 backward): on the stack up to 4096 elements, in scratch memory up
    to 65536, converted at every pass beyond; every regime against the reference."""
    x = data((2, n), dt)
    w, b = params(n)
    dy = data((2, n), dt, seed=3, loc=0.0, scale=1.0)
    y, mean, rstd = fastnorm.layer_norm(x, w, b, return_stats=True)
    ry, rm, rr = ref.layer_norm(x, w, b)
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(mean, rm, what="mean")
    dx, dw, db = fastnorm.layer_norm_backward(dy, x, mean, rstd, w)
    rdx, rdw, rdb = ref.layer_norm_backward(dy, x, mean, rstd, w)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dw, rdw, what="dweight")
    assert_f32_close(db, rdb, what="dbias")
    y, rstd = fastnorm.rms_norm(x, w, return_stats=True)
    assert_rounded(y, ref.rms_norm(x, w, eps=EPS[dt.name])[0], dt, what="rms y")
    dx, dw = fastnorm.rms_norm_backward(dy, x, rstd, w)
    rdx, rdw = ref.rms_norm_backward(dy, x, rstd, w)
    assert_rounded(dx, rdx, dt, what="rms dx")
    assert_f32_close(dw, rdw, what="rms dweight")


@pytest.mark.parametrize("dt", HALF)
def test_add_norms(isa, dt):
    shape = (33, 520)
    x, r = data(shape, dt), data(shape, dt, seed=5)
    w, b = params(shape[-1])
    rb = params(shape[-1], seed=9)[0]
    y, s, mean, rstd = fastnorm.add_layer_norm(x, r, w, b, residual_bias=rb, return_stats=True)
    s64 = x.astype(np.float64) + r.astype(np.float64) + rb
    assert_rounded(s, s64, dt, what="s")
    ry, rm, rr = ref.layer_norm(s, w, b)  # the norm of the stored (rounded) sum
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(mean, rm, what="mean")
    y2, s2, rstd2 = fastnorm.add_rms_norm(x, r, w, residual_bias=rb, return_stats=True)
    assert np.array_equal(s2.view(np.uint16), s.view(np.uint16))
    assert_rounded(y2, ref.rms_norm(s2, w, eps=EPS[dt.name])[0], dt, what="rms y")
    dy, ds = data(shape, dt, seed=11), data(shape, dt, seed=12)
    dsum, dw, db, drb = fastnorm.add_layer_norm_backward(dy, s, mean, rstd, w, ds=ds)
    rdx, rdw, rdb = ref.layer_norm_backward(dy, s, mean, rstd, w)
    dx = fastnorm.layer_norm_backward(dy, s, mean, rstd, w)[0]
    assert_rounded(dx, rdx, dt, what="dx")
    # dsum = dx + ds, each rounded to dt
    assert np.array_equal(dsum.view(np.uint16), np.add(dx, ds).view(np.uint16))
    assert_f32_close(dw, rdw, what="dweight")
    assert_f32_close(db, rdb, what="dbias")
    assert drb.dtype == np.float32
    assert_f32_close(drb, dsum.astype(np.float64).sum(axis=0), what="dresidual_bias")


@pytest.mark.parametrize("dt", HALF)
def test_ada_layer_norm(isa, dt):
    x = data((3, 17, 264), dt)
    shift = data((3, 264), dt, seed=2, loc=0, scale=0.5)
    scale = np.random.default_rng(4).standard_normal((3, 264)).astype(np.float32) * 0.3
    y, mean, rstd = fastnorm.ada_layer_norm(x, shift, scale, return_stats=True)
    ry, rm, rr = ref.ada_layer_norm(x, shift, scale)
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(mean, rm, what="mean")
    dy = data(x.shape, dt, seed=6, loc=0, scale=1)
    dx, dshift, dscale = fastnorm.ada_layer_norm_backward(dy, x, mean, rstd, scale)
    rdx, rdshift, rdscale = ref.ada_layer_norm_backward(dy, x, mean, rstd, scale)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dshift, rdshift, what="dshift")
    assert_f32_close(dscale, rdscale, what="dscale")


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("centered", [True, False])
def test_axis_path(isa, dt, centered):
    """LayerNorm / RMSNorm over axis 1 of NCHW data, without a transposing copy."""
    x = data((2, 24, 5, 13), dt)
    w, b = params(24)
    dy = data(x.shape, dt, seed=8, loc=0, scale=1)
    if centered:
        y, mean, rstd = fastnorm.layer_norm(x, w, b, axis=1, return_stats=True)
        ry, rm, rr = ref.layer_norm(x, w, b, axis=1)
        assert_f32_close(mean, rm, what="mean")
        dx, dw, db = fastnorm.layer_norm_backward(dy, x, mean, rstd, w, axis=1)
        rdx, rdw, rdb = ref.layer_norm_backward(dy, x, mean, rstd, w, axis=1)
        assert_f32_close(db, rdb, what="dbias")
    else:
        y, rstd = fastnorm.rms_norm(x, w, axis=1, return_stats=True)
        ry, rr = ref.rms_norm(x, w, axis=1, eps=EPS[dt.name])
        dx, dw = fastnorm.rms_norm_backward(dy, x, rstd, w, axis=1)
        rdx, rdw = ref.rms_norm_backward(dy, x, rstd, w, axis=1)
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(rstd, rr, what="rstd", factor=2)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dw, rdw, what="dweight")


@pytest.mark.parametrize("dt", HALF)
def test_large_mean_and_extreme_rows(dt):
    """Centered statistics in float32 keep a 16-bit row with a large mean right;
    NaN and Inf stay in their rows."""
    x = (np.float32(1000) + np.arange(512, dtype=np.float32) % 7).astype(dt)[None, :]
    x = np.concatenate([x, x, x])
    x[1, 3] = np.nan
    x[2, 5] = np.inf
    y = fastnorm.layer_norm(x)
    ry = ref.layer_norm(x[:1])[0]
    assert_rounded(y[:1], ry, dt, what="y")
    assert np.isnan(y[1].astype(np.float32)).all() and np.isnan(y[2].astype(np.float32)).all()


@pytest.mark.parametrize("dt", HALF)
def test_nonfinite_and_huge_parameters(isa, dt):
    """NaN, Inf and overflowing parameters: each element is the float32 path's
    result on the widened data, rounded once (NaN where it is NaN, Inf where
    it overflows)."""
    x = data((6, 200), dt)
    x[1, 7] = np.inf
    x32 = x.astype(np.float32)
    for k in range(4):
        w, b = params(200)
        if k == 0:
            w[13] = np.nan
        elif k == 1:
            b[50] = -np.inf
        elif k == 2:
            w[:] = 3e38
        else:
            w[::3] = 0.0
            b[::5] = 1e38
        for got, want in [
                (fastnorm.layer_norm(x, w, b), fastnorm.layer_norm(x32, w, b)),
                (fastnorm.layer_norm(x, w), fastnorm.layer_norm(x32, w)),
                (fastnorm.rms_norm(x, w, eps=1e-6), fastnorm.rms_norm(x32, w, eps=1e-6))]:
            with np.errstate(over="ignore"):
                want = want.astype(dt)
            nan = np.isnan(want.astype(np.float32))
            assert np.array_equal(np.isnan(got.astype(np.float32)), nan)
            assert np.array_equal(got.view(np.uint16)[~nan], want.view(np.uint16)[~nan])


# --------------------------------------------------------------------------
# Parameters, threads, errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dt", HALF)
def test_parameters_in_data_type(dt):
    """16-bit parameters are read as float32 values: the same result as their
    float32 copies; parameter gradients come back in the weight's dtype."""
    x = data((9, 40), dt)
    w, b = params(40)
    w16, b16 = w.astype(dt), b.astype(dt)
    y = fastnorm.layer_norm(x, w16, b16)
    assert np.array_equal(y.view(np.uint16),
                          fastnorm.layer_norm(x, w16.astype(np.float32),
                                              b16.astype(np.float32)).view(np.uint16))
    _, mean, rstd = fastnorm.layer_norm(x, return_stats=True)
    dx, dw, db = fastnorm.layer_norm_backward(x, x, mean, rstd, w16)
    assert dx.dtype == dt and dw.dtype == dt and db.dtype == dt
    _, dw32, _ = fastnorm.layer_norm_backward(x, x, mean, rstd, w16.astype(np.float32))
    assert dw32.dtype == np.float32
    assert np.array_equal(dw.view(np.uint16), dw32.astype(dt).view(np.uint16))
    _, dwn, dbn = fastnorm.layer_norm_backward(x, x, mean, rstd)
    assert dwn.dtype == np.float32 and dbn.dtype == np.float32


@pytest.mark.parametrize("dt", HALF)
def test_thread_count_does_not_change_bits(dt):
    if fastnorm.get_num_threads() < 2 and not fastnorm._core._has_openmp():
        pytest.skip("no OpenMP")
    x = data((512, 768), dt)  # 768 KiB: threaded
    w, b = params(768)
    dy = data(x.shape, dt, seed=2)
    outs = []
    for nt in (1, 2, 3):
        y, m, r = fastnorm.layer_norm(x, w, b, return_stats=True, num_threads=nt)
        dx, dw, db = fastnorm.layer_norm_backward(dy, x, m, r, w, num_threads=nt)
        y2, s2 = fastnorm.add_rms_norm(x, dy, w, num_threads=nt)
        outs.append([a.view(np.uint8) for a in (y, m, r, dx, dw, db, y2, s2)])
    for o in outs[1:]:
        for a, b_ in zip(outs[0], o):
            assert np.array_equal(a, b_)


@pytest.mark.parametrize("dt", HALF)
def test_bad_dtype_mixes(dt):
    x = data((4, 8), dt)
    _, m, r = fastnorm.layer_norm(x, return_stats=True)
    other = np.float32 if dt == F16 else np.float16
    with pytest.raises(TypeError, match="dy"):
        fastnorm.layer_norm_backward(x.astype(np.float32), x, m, r)
    with pytest.raises(TypeError, match="out"):
        fastnorm.layer_norm(x, out=np.empty(x.shape, np.float32))
    with pytest.raises(TypeError, match="residual"):
        fastnorm.add_layer_norm(x, x.astype(other))
    with pytest.raises(TypeError, match="weight"):
        fastnorm.layer_norm(x, np.ones(8, np.int16))
    with pytest.raises(TypeError, match="x"):
        fastnorm.layer_norm(np.ones((4, 8), np.longdouble))


def test_rms_default_eps_follows_dtype():
    x = np.full((1, 4), 1e-3, np.float16)
    _, r = fastnorm.rms_norm(x, return_stats=True)
    ms = float(np.float16(1e-3)) ** 2
    assert np.isclose(r[0], 1 / np.sqrt(ms + 2.0 ** -10), rtol=1e-6)


# --------------------------------------------------------------------------
# Channel normalizers: the same C stages, instantiated for 16-bit data
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("axis", [1, -1])
def test_group_and_instance_norm(isa, dt, axis):
    x = data((3, 8, 5, 7) if axis == 1 else (3, 5, 7, 8), dt)
    w, b = params(8)
    y, mean, rstd = fastnorm.group_norm(x, 2, w, b, axis=axis, return_stats=True)
    ry, rm, rr = ref.group_norm(x, 2, w, b, axis=axis)
    assert_rounded(y, ry, dt, what="y")
    assert mean.dtype == np.float32 and rstd.dtype == np.float32
    assert_f32_close(mean, rm, what="mean")
    assert_f32_close(rstd, rr, what="rstd", factor=2)
    dy = data(x.shape, dt, seed=4, loc=0, scale=1)
    dx, dw, db = fastnorm.group_norm_backward(dy, x, mean, rstd, w, b, axis=axis)
    rdx, rdw, rdb = ref.group_norm_backward(dy, x, mean, rstd, w, axis=axis)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dw, rdw, what="dweight")
    assert_f32_close(db, rdb, what="dbias")
    yi = fastnorm.instance_norm(x, w, b, axis=axis)
    assert_rounded(yi, ref.instance_norm(x, w, b, axis=axis)[0], dt, what="instance y")


@pytest.mark.parametrize("dt", HALF)
def test_batch_norm(isa, dt):
    x = data((6, 8, 3, 5), dt)
    w, b = params(8)
    rm, rv = np.zeros(8, np.float32), np.ones(8, np.float32)
    y, mean, rstd = fastnorm.batch_norm(x, rm, rv, w, b, training=True, return_stats=True)
    ry, rmean, rrstd, new_rm, new_rv = ref.batch_norm(x, np.zeros(8), np.ones(8), w, b,
                                                      training=True)
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(mean, rmean, what="mean")
    assert_f32_close(rm, new_rm, what="running_mean")
    assert_f32_close(rv, new_rv, what="running_var")
    with pytest.raises(TypeError, match="running_mean"):
        fastnorm.batch_norm(x, rm.astype(np.float64), rv, training=True)
    dy = data(x.shape, dt, seed=4, loc=0, scale=1)
    dx, dw, db = fastnorm.batch_norm_backward(dy, x, mean, rstd, w, b, training=True)
    rdx, rdw, rdb = ref.batch_norm_backward(dy, x, mean, rstd, w, training=True)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dw, rdw, what="dweight")
    ye, me, re_ = fastnorm.batch_norm(x, rm, rv, w, b, return_stats=True)  # eval
    assert_rounded(ye, ref.batch_norm(x, rm, rv, w, b)[0], dt, what="eval y")
    dx, dw, db = fastnorm.batch_norm_backward(dy, x, me, re_, w, b, training=False)
    rdx, rdw, rdb = ref.batch_norm_backward(dy, x, me, re_, w, training=False)
    assert_rounded(dx, rdx, dt, what="eval dx")
    assert_f32_close(dw, rdw, what="eval dweight")
    assert_f32_close(db, rdb, what="eval dbias")


@pytest.mark.parametrize("dt", HALF)
def test_batch_layer_switch_weight_norm(isa, dt):
    xl = data((4, 6, 16), dt)
    w, b = params(16)
    y = fastnorm.batch_layer_norm(xl, w, b)
    assert_rounded(y, ref.batch_layer_norm(xl, w, b), dt, what="batch_layer_norm y",
                   composite=True)
    x = data((4, 8, 3, 5), dt)
    w8, b8 = params(8)
    ys = fastnorm.switch_norm(x, w8, b8)
    assert_rounded(ys, ref.switch_norm(x, w8, b8), dt, what="switch_norm y", composite=True)
    v = data((6, 5, 3), dt)
    g = params(6)[0]
    wn = fastnorm.weight_norm(v, g)
    assert_rounded(wn, ref.weight_norm(v, g), dt, what="weight_norm w")
    dwn = data(v.shape, dt, seed=3)
    dv, dg = fastnorm.weight_norm_backward(dwn, v, g)
    rdv, rdg = ref.weight_norm_backward(dwn, v, g)
    assert_rounded(dv, rdv, dt, what="weight_norm dv")
    assert_f32_close(dg, rdg, what="weight_norm dg")


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("layer_dtype", [np.float32, np.float64])
def test_layers_with_running_statistics_take_16bit_input(isa, dt, layer_dtype):
    """The layers keep their own running statistics (float32 or float64) and hand the
    functions float32 copies for 16-bit x; the result equals the functional call."""
    x = data((6, 3, 5), dt)
    dy = data(x.shape, dt, seed=5, loc=0, scale=1)
    layers = [fastnorm.nn.BatchNorm1d(3, dtype=layer_dtype),
              fastnorm.nn.InstanceNorm1d(3, track_running_stats=True, dtype=layer_dtype),
              fastnorm.nn.SwitchNorm(3, dtype=layer_dtype)]
    for layer in layers:
        name = type(layer).__name__
        y = layer(x)
        assert y.dtype == dt, name
        assert layer.running_mean.dtype == layer_dtype, name
        assert np.all(np.isfinite(layer.running_mean)) and np.any(layer.running_mean != 0), name
        dx = layer.backward(dy)
        assert dx.dtype == dt and np.all(np.isfinite(dx.astype(np.float32))), name
        layer.eval()
        assert layer(x).dtype == dt, name
    bn = fastnorm.nn.BatchNorm1d(3, dtype=layer_dtype)
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    want = fastnorm.batch_norm(x, rm, rv, bn.weight.astype(np.float32),
                               bn.bias.astype(np.float32), training=True)
    assert np.array_equal(bn(x), want)
    assert_f32_close(bn.running_mean.astype(np.float32), rm, what="running_mean")
    bl = fastnorm.nn.BatchLayerNorm(5, (3, 5), dtype=layer_dtype)
    assert bl(x).dtype == dt and bl.running_mean.dtype == layer_dtype


@pytest.mark.parametrize("dt", HALF)
def test_16bit_parameters_get_gradients_of_their_dtype(isa, dt):
    x = data((4, 6, 5), dt)
    dy = data(x.shape, dt, seed=6, loc=0, scale=1)
    w = np.ones(6, dt)
    b = np.zeros(6, dt)
    y, m, r = fastnorm.group_norm(x, 3, w, b, return_stats=True)
    for g in fastnorm.group_norm_backward(dy, x, m, r, w, b)[1:]:
        assert g.dtype == dt
    lm = np.array([0.5, -1.0, 0.25], dt)
    y, st = fastnorm.switch_norm(x, w, b, lm, lm, return_stats=True)
    assert y.dtype == dt
    g = fastnorm.switch_norm_backward(dy, x, st, w, b, lm, lm)
    assert [a.dtype for a in g[1:]] == [dt] * 4
    # float32 parameters with 16-bit data: float32 gradients
    w32 = np.ones(6, np.float32)
    y, m, r = fastnorm.group_norm(x, 3, w32, w32, return_stats=True)
    assert fastnorm.group_norm_backward(dy, x, m, r, w32, w32)[1].dtype == np.float32


@pytest.mark.parametrize("shape", [(0, 4, 3), (2, 4, 0), (2, 0, 3)], ids=["N0", "L0", "C0"])
def test_switch_norm_zero_size(shape):
    x = np.zeros(shape, np.float32)
    rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
    y, st = fastnorm.switch_norm(x, running_mean=rm, running_var=rv, return_stats=True)
    assert y.shape == shape
    assert np.all(rm == 0) and np.all(rv == 1)
    w = np.ones(shape[1], np.float32)
    dx, dw, db, dmw, dvw = fastnorm.switch_norm_backward(x, x, st, w, w)
    assert dx.shape == shape and np.all(dw == 0) and np.all(db == 0)
    assert np.all(dmw == 0) and np.all(dvw == 0)
