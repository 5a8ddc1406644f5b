"""float16 and bfloat16 data: the float32 computation rounded once to 16 bits.

Every result is compared with the float64 reference of fastnorm.reference on
the same 16-bit inputs, rounded to the 16-bit type: at most one unit in the
last place of the 16-bit type apart, plus the float32 rounding of the
computation (1e-5 of the result's scale). Statistics and parameter gradients
are float32. The conversions are checked on every 16-bit pattern, on both
kernel tables. bfloat16 comes from ml_dtypes, an optional dependency: its
cases are skipped without it.

The fastnorm.nn layers of a 16-bit dtype hold 16-bit parameters and float32
running statistics: they are checked bit for bit against float32 layers
holding the same values and against the functions called with the same
arrays, and against the float64 reference.
"""
import numpy as np
import pytest

import fastnorm
from fastnorm import nn
from fastnorm import reference as ref

from params import BF16, F16, HALF, ml_dtypes

# RMSNorm's default eps for 16-bit data: the machine epsilon of the computing
# dtype, float32 (as torch on the CPU), not that of the 16-bit type
RMS_EPS = 2.0 ** -23
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

# Rows that are widened once into a per-thread float32 copy (forward rows of
# up to 512 elements, bfloat16 RMSNorm rows whose output is not streamed, the
# bfloat16 backward's rows up to the target's bf16_widen_max: 512 with
# AVX-512, 2048 with AVX2, any length on the scalar target) have it on the
# stack up to 4096 elements, in scratch memory up to 65536, and are converted
# at every pass beyond; the last four shapes are those regimes where a row is
# widened at all.
SHAPES = [(37, 771), (3, 5, 64), (1, 3), (2, 4096), (2, 4101), (2, 65536), (2, 65543)]


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
    ry, rr = ref.rms_norm(x, w, eps=RMS_EPS)
    assert_rounded(y, ry, dt, what="y")
    assert_f32_close(rstd, rr, what="rstd", factor=2)
    dy = data(shape, dt, seed=3, loc=0.0, scale=1.0)
    dx, dw = fastnorm.rms_norm_backward(dy, x, rstd, w)
    rdx, rdw = ref.rms_norm_backward(dy, x, rstd, w)
    assert_rounded(dx, rdx, dt, what="dx")
    assert_f32_close(dw, rdw, what="dweight")


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
    assert_rounded(y2, ref.rms_norm(s2, w, eps=RMS_EPS)[0], dt, what="rms y")
    dy, ds = data(shape, dt, seed=11), data(shape, dt, seed=12)
    dsum, dw, db, drb = fastnorm.add_layer_norm_backward(dy, s, mean, rstd, w, ds=ds)
    rdx, rdw, rdb = ref.layer_norm_backward(dy, s, mean, rstd, w)
    dx = fastnorm.layer_norm_backward(dy, s, mean, rstd, w)[0]
    assert_rounded(dx, rdx, dt, what="dx")
    # dsum = dx + ds added in float32 and rounded to dt once
    assert_rounded(dsum, rdx + ds.astype(np.float64), dt, what="dsum")
    assert_f32_close(dw, rdw, what="dweight")
    assert_f32_close(db, rdb, what="dbias")
    assert drb.dtype == np.float32
    assert_f32_close(drb, dsum.astype(np.float64).sum(axis=0), what="dresidual_bias")


@pytest.mark.parametrize("dt", HALF)
@pytest.mark.parametrize("axis", [-1, 1])
def test_add_norms_backward_with_ds_round_once(isa, dt, axis):
    """dsum = dx + ds is the float32 path's sum rounded once to 16 bits (not dx
    rounded, then the sum rounded again); dresidual_bias is dsum summed."""
    shape = (3, 6, 40)
    s, dy, ds = data(shape, dt), data(shape, dt, seed=3), data(shape, dt, seed=4)
    w = params(shape[axis])[0]
    _, mean, rstd = fastnorm.layer_norm(s, w, axis=axis, return_stats=True)
    f32 = [a.astype(np.float32) for a in (dy, s, ds)]
    others = tuple(i for i in range(3) if i != axis % 3)
    for got, want in [
            (fastnorm.add_layer_norm_backward(dy, s, mean, rstd, w, ds=ds, axis=axis),
             fastnorm.add_layer_norm_backward(f32[0], f32[1], mean, rstd, w, ds=f32[2],
                                              axis=axis)),
            (fastnorm.add_rms_norm_backward(dy, s, rstd, w, ds=ds, axis=axis),
             fastnorm.add_rms_norm_backward(f32[0], f32[1], rstd, w, ds=f32[2], axis=axis))]:
        assert got[0].dtype == dt
        assert np.array_equal(got[0].view(np.uint16), want[0].astype(dt).view(np.uint16))
        for g, wg in zip(got[1:-1], want[1:-1]):
            assert np.array_equal(g, wg)
        drb = got[-1]
        assert drb.dtype == np.float32
        assert_f32_close(drb, got[0].astype(np.float64).sum(axis=others), what="dresidual_bias")


@pytest.mark.parametrize("dt", HALF)
def test_add_norms_over_a_middle_axis(isa, dt):
    """The fused add over axis=1 of NCHW data: s = x + r + rb added in float32
    and rounded once, then normalized as layer_norm / rms_norm do, bit for bit."""
    shape = (2, 24, 5, 13)
    x, r = data(shape, dt), data(shape, dt, seed=5)
    w, b = params(24)
    rb = params(24, seed=9)[0]
    s_want = (x.astype(np.float32) + r.astype(np.float32) + rb[:, None, None]).astype(dt)
    y, s, mean, rstd = fastnorm.add_layer_norm(x, r, w, b, residual_bias=rb, axis=1,
                                               return_stats=True)
    assert np.array_equal(s.view(np.uint16), s_want.view(np.uint16))
    y_want, m_want, r_want = fastnorm.layer_norm(s_want, w, b, axis=1, return_stats=True)
    assert np.array_equal(y.view(np.uint16), y_want.view(np.uint16))
    assert np.array_equal(mean, m_want) and np.array_equal(rstd, r_want)
    assert_rounded(y, ref.layer_norm(s_want, w, b, axis=1)[0], dt, what="y")
    y, s, rstd = fastnorm.add_rms_norm(x, r, w, residual_bias=rb, axis=1, return_stats=True)
    assert np.array_equal(s.view(np.uint16), s_want.view(np.uint16))
    y_want, r_want = fastnorm.rms_norm(s_want, w, axis=1, return_stats=True)
    assert np.array_equal(y.view(np.uint16), y_want.view(np.uint16))
    assert np.array_equal(rstd, r_want)


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
        ry, rr = ref.rms_norm(x, w, axis=1, eps=RMS_EPS)
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
@pytest.mark.parametrize("n", [512, 513])
def test_rows_taken_together_at_any_size_give_each_rows_bits(isa, dt, n):
    """Rows of up to 512 elements go several at a time through their statistics
    whatever the size of the call (longer rows only in calls of up to 8 MiB):
    each row's results are those of the row normalized alone, forward and
    backward, fused or not, up to the last rows of the call."""
    rows = 8300  # over 8 MiB of 16-bit data at n = 512
    x = data((rows, n), dt)
    r = data((rows, n), dt, seed=4)
    w, b = params(n)
    dy = data(x.shape, dt, seed=2, loc=0.0, scale=1.0)
    y, m, rs = fastnorm.layer_norm(x, w, b, return_stats=True, num_threads=1)
    dx, _, _ = fastnorm.layer_norm_backward(dy, x, m, rs, w, num_threads=1)
    yr, rr = fastnorm.rms_norm(x, w, return_stats=True, num_threads=1)
    dxr, _ = fastnorm.rms_norm_backward(dy, x, rr, w, num_threads=1)
    ya, sa = fastnorm.add_layer_norm(x, r, w, b, num_threads=1)
    pick = np.r_[0:6, np.random.default_rng(5).integers(0, rows, 40), rows - 6:rows]
    for i in pick:
        s = slice(i, i + 1)
        y1, m1, rs1 = fastnorm.layer_norm(x[s], w, b, return_stats=True)
        assert np.array_equal(y[s].view(np.uint16), y1.view(np.uint16)), i
        assert np.array_equal(m[s], m1) and np.array_equal(rs[s], rs1), i
        dx1, _, _ = fastnorm.layer_norm_backward(dy[s], x[s], m1, rs1, w)
        assert np.array_equal(dx[s].view(np.uint16), dx1.view(np.uint16)), i
        yr1, rr1 = fastnorm.rms_norm(x[s], w, return_stats=True)
        assert np.array_equal(yr[s].view(np.uint16), yr1.view(np.uint16)), i
        dxr1, _ = fastnorm.rms_norm_backward(dy[s], x[s], rr1, w)
        assert np.array_equal(dxr[s].view(np.uint16), dxr1.view(np.uint16)), i
        ya1, sa1 = fastnorm.add_layer_norm(x[s], r[s], w, b)
        assert np.array_equal(ya[s].view(np.uint16), ya1.view(np.uint16)), i
        assert np.array_equal(sa[s].view(np.uint16), sa1.view(np.uint16)), i


@pytest.mark.parametrize("dt", HALF)
def test_thread_count_does_not_change_bits(dt):
    if not fastnorm._core._has_threads():
        pytest.skip("serial build")
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


@pytest.mark.parametrize("dt", HALF)
def test_rms_default_eps_follows_dtype(dt):
    """eps=None is the machine epsilon of the computing dtype: float32's for
    16-bit data (torch's F.rms_norm and nn.RMSNorm give 1.995 on this row;
    the 16-bit type's epsilon would give 0.32 for float16, 0.11 for bfloat16),
    in rms_norm, add_rms_norm and nn.RMSNorm alike."""
    x = np.array([[1e-2, 0, 0, 0]], dt)
    ms = float(x[0, 0]) ** 2 / 4
    y, r = fastnorm.rms_norm(x, return_stats=True)
    assert np.isclose(r[0], 1 / np.sqrt(ms + 2.0 ** -23), rtol=1e-6)
    assert same_bits(y, fastnorm.rms_norm(x, eps=2.0 ** -23))
    assert abs(float(y[0, 0]) - 1.995) < 0.01
    ya, _, ra = fastnorm.add_rms_norm(x, np.zeros_like(x), return_stats=True)
    assert same_bits(ya, y) and np.array_equal(ra, r)
    assert same_bits(nn.RMSNorm(4, dtype=dt)(x), y)
    assert same_bits(nn.RMSNorm(4)(x), y)  # a float32 layer: the input decides
    # float32 and float64 data keep their own machine epsilon
    for xdt in (np.float32, np.float64):
        x2 = x.astype(xdt)
        assert np.array_equal(fastnorm.rms_norm(x2),
                              fastnorm.rms_norm(x2, eps=float(np.finfo(xdt).eps)))


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
@pytest.mark.parametrize("shape, groups", [((2, 8, 60, 60), 2), ((1, 2, 260, 260), 2),
                                           ((4, 4, 9, 9), 4)])
def test_group_norm_units_widened_or_not(isa, dt, shape, groups):
    """The per-group NCHW path widens a group's channels once into a float32
    copy when it holds up to 65536 elements ((2, 8, 60, 60) with 2 groups: 14400,
    (4, 4, 9, 9) with 4: 81), and converts at each pass beyond ((1, 2, 260, 260):
    67600): every case against the reference, on one and on two threads (the
    same bits)."""
    x = data(shape, dt)
    w, b = params(shape[1])
    y, mean, rstd = fastnorm.group_norm(x, groups, w, b, return_stats=True, num_threads=1)
    assert_rounded(y, ref.group_norm(x, groups, w, b)[0], dt, what="y")
    y2 = fastnorm.group_norm(x, groups, w, b, num_threads=2)
    assert np.array_equal(y.view(np.uint16), y2.view(np.uint16))
    dy = data(shape, dt, seed=4, loc=0, scale=1)
    dx = fastnorm.group_norm_backward(dy, x, mean, rstd, w, b, num_threads=1)[0]
    assert_rounded(dx, ref.group_norm_backward(dy, x, mean, rstd, w)[0], dt, what="dx")


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
        fastnorm.batch_norm(x, rm.astype(dt), rv, training=True)
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
def test_16bit_running_statistics_are_refused(dt):
    """Running statistics are updated in place in the computing dtype (or in
    float64), so for 16-bit data they must be float32 or float64: one of x's
    own dtype is a TypeError naming it and saying why, in training and in
    eval, for every function that takes them; nothing is written."""
    x = data((6, 8, 3), dt)
    rm, rv = np.zeros(8, np.float32), np.ones(8, np.float32)
    calls = {
        "batch_norm": lambda m, v, t: fastnorm.batch_norm(x, m, v, training=t),
        "instance_norm": lambda m, v, t: fastnorm.instance_norm(x, None, None, m, v, training=t),
        "switch_norm": lambda m, v, t: fastnorm.switch_norm(x, running_mean=m, running_var=v,
                                                            training=t),
    }
    xl = data((6, 3, 8), dt)
    for bad_dt in (dt,):
        bad = np.zeros(8, bad_dt)
        for name, call in calls.items():
            for training in (True, False):
                for m, v, arg in ((bad, rv, "running_mean"), (rm, bad.copy(), "running_var")):
                    before = bad.copy()
                    with pytest.raises(TypeError) as info:
                        call(m, v, training)
                    msg = str(info.value)
                    assert msg.startswith(arg) and "float32" in msg, (name, msg)
                    assert "updated in place" in msg, (name, msg)
                    assert f"got {np.dtype(bad_dt).name}" in msg, (name, msg)
                    assert np.array_equal(rm, np.zeros(8)) and np.array_equal(rv, np.ones(8))
                    assert np.array_equal(bad, before), (name, arg)
        badl = np.zeros((3, 8), bad_dt)
        with pytest.raises(TypeError, match="running_mean must have dtype float32.*updated "
                                            "in place"):
            fastnorm.batch_layer_norm(xl, running_mean=badl,
                                      running_var=np.ones((3, 8), np.float32))
    # float32 and float64 data: the statistics have x's dtype, also said plainly
    x32 = x.astype(np.float32)
    with pytest.raises(TypeError, match="running_mean must have dtype float32 like x"):
        fastnorm.batch_norm(x32, rm.astype(np.float16), rv, training=True)


@pytest.mark.parametrize("dt", [np.dtype(np.float32)] + HALF, ids=lambda d: np.dtype(d).name)
def test_float64_running_statistics_kept_in_float64(dt):
    """float64 running statistics of float32 or 16-bit data are updated in
    float64 (never rounded to float32) and used as they are in eval; y and
    the returned statistics are those of float32 running statistics holding
    the same values."""
    x = data((6, 8, 3), dt)
    m64 = np.full(8, 0.1)  # not a float32 value
    v64 = np.full(8, 1.0 + 1e-12)
    y, mean, rstd = fastnorm.batch_norm(x, m64, v64, training=True, momentum=0.25,
                                        return_stats=True)
    xf = x.astype(np.float64).transpose(1, 0, 2).reshape(8, -1)
    want_m = 0.75 * 0.1 + 0.25 * mean.astype(np.float64)
    assert np.array_equal(m64, want_m)  # the float64 formula, not rounded to float32
    assert m64.dtype == np.float64 and not np.array_equal(m64, m64.astype(np.float32))
    np.testing.assert_allclose(v64, 0.75 * (1 + 1e-12) + 0.25 * xf.var(axis=1, ddof=1),
                               rtol=1e-5)
    y32, mean32, rstd32 = fastnorm.batch_norm(x, np.full(8, 0.1, np.float32),
                                              np.ones(8, np.float32), training=True,
                                              return_stats=True)
    assert same_bits(y, y32) and same_bits(mean, mean32) and same_bits(rstd, rstd32)
    ye, me, re = fastnorm.batch_norm(x, m64, v64, return_stats=True)
    assert me.dtype == np.float32 and np.array_equal(me, m64.astype(np.float32))
    assert np.array_equal(re, (1 / np.sqrt(v64 + 1e-5)).astype(np.float32))
    yi = fastnorm.instance_norm(x, running_mean=m64, running_var=v64, training=False)
    assert same_bits(ye, yi)
    ys = fastnorm.switch_norm(x, running_mean=m64.copy(), running_var=v64.copy())
    assert ys.dtype == x.dtype


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


# --------------------------------------------------------------------------
# Layer classes of dtype float16 / bfloat16
# --------------------------------------------------------------------------

# name: (constructor taking the layer dtype, x shape)
LAYERS = {
    "LayerNorm": (lambda dt: nn.LayerNorm((3, 8), dtype=dt), (4, 3, 8)),
    "RMSNorm": (lambda dt: nn.RMSNorm(8, dtype=dt), (4, 3, 8)),
    "GroupNorm": (lambda dt: nn.GroupNorm(2, 6, dtype=dt), (3, 6, 5)),
    "GroupNorm-last": (lambda dt: nn.GroupNorm(3, 6, axis=-1, dtype=dt), (3, 5, 6)),
    "InstanceNorm": (lambda dt: nn.InstanceNorm(6, affine=True, track_running_stats=True,
                                                dtype=dt), (3, 6, 2, 3)),
    "InstanceNorm1d": (lambda dt: nn.InstanceNorm1d(6, affine=True, track_running_stats=True,
                                                    dtype=dt), (3, 6, 7)),
    "InstanceNorm2d": (lambda dt: nn.InstanceNorm2d(6, affine=True, track_running_stats=True,
                                                    dtype=dt), (2, 6, 3, 4)),
    "InstanceNorm3d": (lambda dt: nn.InstanceNorm3d(6, affine=True, track_running_stats=True,
                                                    dtype=dt), (2, 6, 2, 3, 2)),
    "BatchNorm": (lambda dt: nn.BatchNorm(6, dtype=dt), (5, 6, 3)),
    "BatchNorm1d": (lambda dt: nn.BatchNorm1d(6, dtype=dt), (7, 6)),
    "BatchNorm2d": (lambda dt: nn.BatchNorm2d(6, dtype=dt), (3, 6, 2, 3)),
    "BatchNorm3d": (lambda dt: nn.BatchNorm3d(6, axis=-1, dtype=dt), (2, 2, 2, 3, 6)),
    "BatchLayerNorm": (lambda dt: nn.BatchLayerNorm(8, (3, 8), dtype=dt), (5, 3, 8)),
    "SwitchNorm": (lambda dt: nn.SwitchNorm(6, dtype=dt), (4, 6, 5)),
}
RUNNING = ("running_mean", "running_var")


def same_bits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.array_equal(np.ascontiguousarray(a).reshape(-1).view(np.uint8),
                               np.ascontiguousarray(b).reshape(-1).view(np.uint8)))


def assert_half_close(actual, expected, dt, *, what="result"):
    """A 16-bit result of a float32 sum within one 16-bit ulp of the float64
    value plus float32 rounding (few elements: no count of exact ones)."""
    assert actual.dtype == dt, f"{what}: dtype {actual.dtype}, expected {dt}"
    a = actual.astype(np.float64)
    e = np.asarray(expected, np.float64).reshape(a.shape)
    scale = max(1.0, float(np.max(np.abs(e), initial=0.0)))
    err = float(np.max(np.abs(a - e) - ulp(e, dt) - F32_TOL * scale, initial=-1.0))
    assert err <= 0, f"{what}: error exceeds one ulp + float32 rounding by {err:.3g}"


def param_names(layer):
    return [k for k in layer.state_dict() if k not in RUNNING + ("num_batches_tracked",)]


def check_layer_backward(name, layer, dt, dx, want, reference):
    """A 16-bit layer's dx and grad_weight / grad_bias (as many as `want` has
    after dx) are the function's `want` bit for bit, and within 16-bit rounding
    of the float64 `reference`."""
    assert same_bits(dx, want[0])
    assert_rounded(dx, reference[0], dt, what=f"{name} dx")
    for pname, g, r in zip(("weight", "bias"), want[1:], reference[1:]):
        got = getattr(layer, "grad_" + pname)
        assert same_bits(got, g), f"{name} grad_{pname}"
        assert_half_close(got, r, dt, what=f"{name} grad_{pname}")


def half_state(layer, dt, seed=2):
    """A state of non-trivial values: parameters of dt (16-bit values), running
    statistics float32, num_batches_tracked 3."""
    rng = np.random.default_rng(seed)
    state = {}
    for k, v in layer.state_dict().items():
        if k == "num_batches_tracked":
            state[k] = np.array(3, np.int64)
        elif k == "running_var":
            state[k] = rng.uniform(0.5, 2.0, v.shape).astype(np.float32)
        elif k == "running_mean":
            state[k] = rng.standard_normal(v.shape).astype(np.float32)
        else:
            state[k] = (rng.standard_normal(v.shape) * 0.5 + 1.0).astype(dt)
    return state


def as_f32(state):
    return {k: v if v.dtype.kind == "i" else v.astype(np.float32) for k, v in state.items()}


def half_layer(name, dt):
    """The layer of dtype dt and its float32 twin, holding the same values."""
    make, shape = LAYERS[name]
    layer = make(dt)
    state = half_state(layer, dt)
    layer.load_state_dict(state)
    twin = make(np.float32)
    twin.load_state_dict(as_f32(state))
    return layer, twin, state, shape


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dt", HALF)
def test_16bit_layer_equals_float32_layer_with_the_same_values(isa, dt, name):
    """A 16-bit layer computes as the float32 layer holding its (16-bit) values:
    the same output, dx and running statistics bit for bit, and the float32
    parameter gradients rounded once to its dtype; in training and evaluation."""
    layer, twin, state, shape = half_layer(name, dt)
    params = param_names(layer)
    assert params and all(getattr(layer, n).dtype == dt for n in params)
    assert all(same_bits(getattr(layer, n), state[n]) for n in params)
    running = getattr(layer, "running_mean", None) is not None
    if running:
        assert layer.running_mean.dtype == np.float32 and layer.running_var.dtype == np.float32
    x = data(shape, dt)
    dy = data(shape, dt, seed=5, loc=0.0, scale=1.0)
    for training in (True, False):
        layer.train(training)
        twin.train(training)
        before = {n: getattr(layer, n).copy() for n in RUNNING} if running else {}
        y, yt = layer(x), twin(x)
        assert y.dtype == dt and np.all(np.isfinite(y.astype(np.float32))), training
        assert same_bits(y, yt), training
        dx, dxt = layer.backward(dy), twin.backward(dy)
        assert dx.dtype == dt and same_bits(dx, dxt), training
        for n in params:
            g, gt = getattr(layer, "grad_" + n), getattr(twin, "grad_" + n)
            assert g.dtype == dt and gt.dtype == np.float32, n
            assert np.any(gt != 0), n
            assert same_bits(g, gt.astype(dt)), n
        for n in before:
            r = getattr(layer, n)
            assert r.dtype == np.float32 and same_bits(r, getattr(twin, n)), n
            # updated by the training forward only
            assert np.all(r != before[n]) if training else same_bits(r, before[n]), n
        if running:
            assert layer.num_batches_tracked == twin.num_batches_tracked == 4


@pytest.mark.parametrize("dt", HALF)
def test_16bit_row_layers_match_functions_and_float64(isa, dt):
    """LayerNorm and RMSNorm of dtype dt: the functions called with the layers'
    16-bit arrays, bit for bit, and the float64 reference within one ulp."""
    x = data((6, 5, 16), dt)
    dy = data(x.shape, dt, seed=5, loc=0.0, scale=1.0)
    ln = nn.LayerNorm(16, dtype=dt)
    ln.load_state_dict(half_state(ln, dt))
    y = ln(x)
    want, mean, rstd = fastnorm.layer_norm(x, ln.weight, ln.bias, return_stats=True)
    assert same_bits(y, want)
    assert_rounded(y, ref.layer_norm(x, ln.weight, ln.bias)[0], dt, what="LayerNorm y")
    check_layer_backward("LayerNorm", ln, dt, ln.backward(dy),
                         fastnorm.layer_norm_backward(dy, x, mean, rstd, ln.weight),
                         ref.layer_norm_backward(dy, x, mean, rstd, ln.weight))

    # eps=None: the machine epsilon of the computing dtype, float32
    rms = nn.RMSNorm(16, dtype=dt)
    rms.load_state_dict(half_state(rms, dt))
    y = rms(x)
    want, rstd = fastnorm.rms_norm(x, rms.weight, eps=RMS_EPS, return_stats=True)
    assert same_bits(y, want)
    assert_rounded(y, ref.rms_norm(x, rms.weight, eps=RMS_EPS)[0], dt, what="RMSNorm y")
    check_layer_backward("RMSNorm", rms, dt, rms.backward(dy),
                         fastnorm.rms_norm_backward(dy, x, rstd, rms.weight),
                         ref.rms_norm_backward(dy, x, rstd, rms.weight))


@pytest.mark.parametrize("dt", HALF)
def test_16bit_channel_layers_match_functions_and_float64(isa, dt):
    """GroupNorm, BatchNorm2d (training, evaluation), SwitchNorm and
    BatchLayerNorm of dtype dt against the functions called with the same
    arrays (bit for bit) and the float64 reference."""
    x = data((4, 6, 3, 5), dt)
    dy = data(x.shape, dt, seed=5, loc=0.0, scale=1.0)

    gn = nn.GroupNorm(3, 6, dtype=dt)
    gn.load_state_dict(half_state(gn, dt))
    y = gn(x)
    want, mean, rstd = fastnorm.group_norm(x, 3, gn.weight, gn.bias, return_stats=True)
    assert same_bits(y, want)
    assert_rounded(y, ref.group_norm(x, 3, gn.weight, gn.bias)[0], dt, what="GroupNorm y")
    check_layer_backward("GroupNorm", gn, dt, gn.backward(dy),
                         fastnorm.group_norm_backward(dy, x, mean, rstd, gn.weight, gn.bias),
                         ref.group_norm_backward(dy, x, mean, rstd, gn.weight))

    bn = nn.BatchNorm2d(6, dtype=dt)
    state = half_state(bn, dt)
    bn.load_state_dict(state)
    rm, rv = state["running_mean"].copy(), state["running_var"].copy()
    y = bn(x)
    want, mean, rstd = fastnorm.batch_norm(x, rm, rv, bn.weight, bn.bias, training=True,
                                           momentum=0.1, return_stats=True)
    assert same_bits(y, want)
    assert same_bits(bn.running_mean, rm) and same_bits(bn.running_var, rv)
    ry, _, _, rrm, rrv = ref.batch_norm(x, state["running_mean"], state["running_var"],
                                        bn.weight, bn.bias, training=True)
    assert_rounded(y, ry, dt, what="BatchNorm y")
    assert_f32_close(bn.running_mean, rrm, what="running_mean")
    assert_f32_close(bn.running_var, rrv, what="running_var")
    check_layer_backward("BatchNorm", bn, dt, bn.backward(dy),
                         fastnorm.batch_norm_backward(dy, x, mean, rstd, bn.weight, bn.bias,
                                                      training=True),
                         ref.batch_norm_backward(dy, x, mean, rstd, bn.weight, training=True))
    bn.eval()
    y = bn(x)
    assert same_bits(y, fastnorm.batch_norm(x, rm, rv, bn.weight, bn.bias))
    assert_rounded(y, ref.batch_norm(x, rm, rv, bn.weight, bn.bias)[0], dt,
                   what="BatchNorm eval y")
    assert same_bits(bn.running_mean, rm) and same_bits(bn.running_var, rv)

    sn = nn.SwitchNorm(6, dtype=dt)
    state = half_state(sn, dt)
    sn.load_state_dict(state)
    rm, rv = state["running_mean"].copy(), state["running_var"].copy()
    p = (sn.weight, sn.bias, sn.mean_weight, sn.var_weight)
    y = sn(x)
    want, stats = fastnorm.switch_norm(x, *p, rm, rv, training=True, momentum=0.1,
                                       return_stats=True)
    assert same_bits(y, want) and same_bits(sn.running_mean, rm)
    assert_rounded(y, ref.switch_norm(x, *p), dt, what="SwitchNorm y", composite=True)
    dx = sn.backward(dy)
    wdx, *wgrads = fastnorm.switch_norm_backward(dy, x, stats, *p)
    assert same_bits(dx, wdx)
    for n, g in zip(("weight", "bias", "mean_weight", "var_weight"), wgrads):
        assert g.dtype == dt and same_bits(getattr(sn, "grad_" + n), g), n

    xl = data((5, 3, 8), dt)
    bl = nn.BatchLayerNorm(8, (3, 8), dtype=dt)
    state = half_state(bl, dt)
    bl.load_state_dict(state)
    rm, rv = state["running_mean"].copy(), state["running_var"].copy()
    y = bl(xl)
    want, stats = fastnorm.batch_layer_norm(xl, bl.weight, bl.bias, rm, rv, training=True,
                                            momentum=0.1, eps=1e-3, return_stats=True)
    assert same_bits(y, want) and same_bits(bl.running_var, rv)
    assert_rounded(y, ref.batch_layer_norm(xl, bl.weight, bl.bias), dt,
                   what="BatchLayerNorm y", composite=True)
    dyl = data(xl.shape, dt, seed=6, loc=0.0, scale=1.0)
    dx = bl.backward(dyl)
    wdx, wdw, wdb = fastnorm.batch_layer_norm_backward(dyl, xl, stats, bl.weight, bl.bias)
    assert same_bits(dx, wdx) and same_bits(bl.grad_weight, wdw)
    assert same_bits(bl.grad_bias, wdb)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dt", HALF)
def test_16bit_layer_state_dict(dt, name):
    """state_dict: parameters in dt, running statistics in float32; loading
    converts parameters to the layer's dtype and running statistics to theirs,
    and a bad state changes nothing."""
    layer, _, state, _ = half_layer(name, dt)
    sd = layer.state_dict()
    assert list(sd) == list(state)
    for k, v in sd.items():
        want = np.int64 if k == "num_batches_tracked" else np.float32 if k in RUNNING else dt
        assert v.dtype == want and same_bits(v, state[k]), k
    make = LAYERS[name][0]
    fresh = make(dt)
    fresh.load_state_dict(sd)
    assert all(same_bits(fresh.state_dict()[k], state[k]) for k in state)
    # float64 values: rounded to dt (parameters) and to float32 (running statistics)
    sd64 = {k: v if k == "num_batches_tracked" else v.astype(np.float64) / 3
            for k, v in state.items()}
    fresh.load_state_dict(sd64)
    for k, v in fresh.state_dict().items():
        if k != "num_batches_tracked":
            want = np.float32 if k in RUNNING else dt
            assert same_bits(v, sd64[k].astype(want)), k
    # the 16-bit layer's state into float32 and float64 layers: their own dtypes
    for ldt in (np.float32, np.float64):
        other = make(ldt)
        other.load_state_dict(sd)
        for k, v in other.state_dict().items():
            if k != "num_batches_tracked":
                assert same_bits(v, state[k].astype(ldt)), k
    # a float32 layer's state into the 16-bit layer
    fresh.load_state_dict(as_f32(state))
    assert all(same_bits(fresh.state_dict()[k], state[k]) for k in state)
    # a bad last entry: nothing changes
    before = fresh.state_dict()
    last = list(state)[-1] if list(state)[-1] != "num_batches_tracked" else list(state)[-2]
    bad = {**sd64, last: np.zeros(sd64[last].shape + (1,))}
    with pytest.raises(ValueError, match=last):
        fresh.load_state_dict(bad)
    assert all(same_bits(fresh.state_dict()[k], before[k]) for k in before)
    assert all(fresh.state_dict()[k].dtype == before[k].dtype for k in before)


@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("dt", HALF)
def test_16bit_layer_dtype_names_and_repr(dt, name):
    make = LAYERS[name][0]
    layer = make(dt)
    assert layer.dtype == dt and make(dt.name).dtype == dt and make(dt.type).dtype == dt
    assert repr(layer) == repr(make(np.float32)).replace("dtype=float32", f"dtype={dt.name}")
    assert f"dtype={dt.name})" in repr(layer)
    for n in param_names(layer):
        assert getattr(layer, n).dtype == dt, n
    if getattr(layer, "running_mean", None) is not None:
        assert layer.running_mean.dtype == np.float32 and layer.running_var.dtype == np.float32
        layer.running_var[...] = 3.0
        layer.reset_running_stats()
        assert np.all(layer.running_var == 1) and layer.running_var.dtype == np.float32


@pytest.mark.parametrize("bad", [np.int32, np.complex64, "complex128", "int8", "nonsense",
                                 "float8_e4m3fn", object],
                         ids=lambda b: getattr(b, "__name__", b))
@pytest.mark.parametrize("name", ["LayerNorm", "GroupNorm", "BatchNorm2d", "SwitchNorm",
                                  "BatchLayerNorm"])
def test_layer_dtype_errors(name, bad):
    if bad == "float8_e4m3fn" and BF16 is None:
        pytest.skip("ml_dtypes is not installed")
    with pytest.raises(TypeError, match="dtype"):
        LAYERS[name][0](bad)
    if name == "LayerNorm":
        with pytest.raises(TypeError, match="dtype"):
            nn.WeightNorm(np.ones((3, 2), np.float32), dtype=bad)


@pytest.mark.parametrize("installed", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(BF16 is None,
                                                reason="ml_dtypes is not installed"))],
    ids=["without-ml_dtypes", "ml_dtypes-not-imported"])
def test_bfloat16_name(installed):
    """dtype="bfloat16" in a fresh process: a bfloat16 layer where ml_dtypes is
    installed (not yet imported); without it a TypeError naming dtype and
    ml_dtypes, and float16 still works."""
    import os
    import subprocess
    import sys

    code = (
        ("" if installed else "import sys; sys.modules['ml_dtypes'] = None\n")
        + "import sys\n"
        "import numpy as np\n"
        "from fastnorm import nn\n"
        "assert 'ml_dtypes' not in sys.modules or sys.modules['ml_dtypes'] is None\n"
        "assert nn.BatchNorm1d(3, dtype='float16').running_mean.dtype == np.float32\n"
        "try:\n"
        "    print(repr(nn.LayerNorm(4, dtype='bfloat16')))\n"
        "except TypeError as e:\n"
        "    print(e)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    if installed:
        assert out.stdout.strip() == ("LayerNorm((4,), eps=1e-05, elementwise_affine=True, "
                                      "dtype=bfloat16)"), out.stdout
    else:
        assert "dtype" in out.stdout and "ml_dtypes" in out.stdout, out.stdout


@pytest.mark.parametrize("dt", HALF)
def test_16bit_layer_takes_float32_and_float64_input(dt):
    """The output follows x; the parameters stay 16-bit and get gradients of
    their dtype; running statistics stay float32 (float64 x: written back
    rounded to float32)."""
    for xdt in (np.float32, np.float64):
        x = data((7, 6, 3), xdt)
        dy = data(x.shape, xdt, seed=5, loc=0.0, scale=1.0)
        bn = nn.BatchNorm1d(6, dtype=dt)
        state = half_state(bn, dt)
        bn.load_state_dict(state)
        rm = state["running_mean"].astype(xdt)
        rv = state["running_var"].astype(xdt)
        y = bn(x)
        want, mean, rstd = fastnorm.batch_norm(x, rm, rv, bn.weight, bn.bias, training=True,
                                               return_stats=True)
        assert y.dtype == xdt and same_bits(y, want)
        assert same_bits(bn.running_mean, rm.astype(np.float32))
        assert same_bits(bn.running_var, rv.astype(np.float32))
        assert bn.weight.dtype == dt
        dx = bn.backward(dy)
        wdx, wdw, wdb = fastnorm.batch_norm_backward(dy, x, mean, rstd, bn.weight, bn.bias,
                                                     training=True)
        assert dx.dtype == xdt and same_bits(dx, wdx)
        assert bn.grad_weight.dtype == dt and same_bits(bn.grad_weight, wdw.astype(dt))
        assert bn.grad_bias.dtype == dt and same_bits(bn.grad_bias, wdb.astype(dt))

        ln = nn.LayerNorm(3, dtype=dt)
        ln.load_state_dict(half_state(ln, dt))
        w, b = ln.weight.astype(xdt), ln.bias.astype(xdt)
        y = ln(x)
        want, mean, rstd = fastnorm.layer_norm(x, w, b, return_stats=True)
        assert y.dtype == xdt and same_bits(y, want)
        dx = ln.backward(dy)
        wdx, wdw, wdb = fastnorm.layer_norm_backward(dy, x, mean, rstd, w)
        assert same_bits(dx, wdx)
        assert same_bits(ln.grad_weight, wdw.astype(dt))
        assert same_bits(ln.grad_bias, wdb.astype(dt))

        # RMSNorm's eps=None follows the input, not the layer
        rms = nn.RMSNorm(3, dtype=dt)
        assert same_bits(rms(x), fastnorm.rms_norm(x, eps=float(np.finfo(xdt).eps)))


@pytest.mark.parametrize("dt", HALF)
def test_16bit_running_statistics_keep_small_updates(dt):
    """Updates of about 2.5e-4 per step, below half a 16-bit ulp at 1: float32
    running statistics keep them (16-bit ones would stay 1)."""
    m = 2e-4
    bn = nn.BatchNorm1d(4, momentum=m, dtype=dt)
    twin = nn.BatchNorm1d(4, momentum=m)
    rv16 = np.ones(4, dt)  # the same average rounded to dt at every step
    for step in range(8):
        x = data((64, 4), dt, seed=10 + step, loc=0.0, scale=1.5)  # variance about 2.25
        bn(x)
        twin(x)
        var = x.astype(np.float64).var(axis=0, ddof=1)
        rv16 = ((1 - m) * rv16.astype(np.float64) + m * var).astype(dt)
    assert bn.running_var.dtype == np.float32
    assert same_bits(bn.running_var, twin.running_var)
    assert np.all(bn.running_var > 1.001)
    assert np.all(rv16 == 1)


@pytest.mark.parametrize("dt", HALF)
def test_16bit_weight_norm(isa, dt):
    """WeightNorm of a 16-bit weight keeps its dtype: v a copy, g its norm
    rounded to dt; the weight and gradients as the functions give them for
    the same arrays, within one ulp of the float64 reference."""
    w = data((6, 5, 3), dt)
    wn = nn.WeightNorm(w)
    assert wn.dtype == dt and wn.v.dtype == dt and wn.g.dtype == dt
    assert wn.g.shape == (6, 1, 1)
    assert same_bits(wn.v, w) and not np.shares_memory(wn.v, w)
    w64 = w.astype(np.float64)
    assert same_bits(wn.g, np.sqrt((w64 * w64).sum(axis=(1, 2), keepdims=True)).astype(dt))
    assert repr(wn) == f"WeightNorm(shape=(6, 5, 3), axis=0, eps=0.0, dtype={dt.name})"
    out = wn()
    assert same_bits(out, fastnorm.weight_norm(w, wn.g))
    assert_rounded(out, ref.weight_norm(w, wn.g), dt, what="w")
    assert_half_close(out, w64, dt, what="w at the start")  # g rounded: about the weight
    dw = data(w.shape, dt, seed=3)
    grad_g, grad_v = wn.backward(dw)
    assert grad_g is wn.grad_g and grad_v is wn.grad_v
    wdv, wdg = fastnorm.weight_norm_backward(dw, w, wn.g)
    assert same_bits(grad_v, wdv) and same_bits(grad_g, wdg)
    rdv, rdg = ref.weight_norm_backward(dw, w, wn.g)
    assert_rounded(grad_v, rdv, dt, what="grad_v")
    assert_half_close(grad_g, rdg, dt, what="grad_g")
    sd = wn.state_dict()
    assert sd["g"].dtype == dt and sd["v"].dtype == dt
    wn.load_state_dict({k: v.astype(np.float64) / 3 for k, v in sd.items()})
    assert same_bits(wn.v, (w64 / 3).astype(dt))

    # dtype= converts the weight first (the norm is the converted weight's)
    w32 = data((4, 7), np.float32, seed=4)
    for d in (dt, dt.name):
        wn = nn.WeightNorm(w32, axis=None, dtype=d)
        v = w32.astype(dt)
        assert wn.dtype == dt and same_bits(wn.v, v)
        v64 = v.astype(np.float64)
        assert same_bits(wn.g, np.array(np.sqrt((v64 * v64).sum()), dt))
    assert nn.WeightNorm(w, dtype=np.float32).v.dtype == np.float32


# --------------------------------------------------------------------------
# bfloat16 rounding by the AVX-512 BF16 instruction
# --------------------------------------------------------------------------

def _half_ops(x, dy, r, w, b):
    """16-bit results of every normalizer, forward and backward."""
    out = []
    y, m, s = fastnorm.layer_norm(x, w, b, return_stats=True)
    out += [y, *fastnorm.layer_norm_backward(dy, x, m, s, w)]
    y, s = fastnorm.rms_norm(x, w, return_stats=True)
    out += [y, *fastnorm.rms_norm_backward(dy, x, s, w)]
    y, sm, m, s = fastnorm.add_layer_norm(x, r, w, b, residual_bias=b, return_stats=True)
    out += [y, sm, *fastnorm.add_layer_norm_backward(dy, sm, m, s, w, ds=dy)]
    x4 = x.reshape(2, 12, 5, -1)
    y, m, s = fastnorm.layer_norm(x4, w[:12], b[:12], axis=1, return_stats=True)
    out += [y, *fastnorm.layer_norm_backward(dy.reshape(x4.shape), x4, m, s, w[:12], axis=1)]
    y, m, s = fastnorm.group_norm(x4, 4, w[:12], b[:12], return_stats=True)
    out += [y, *fastnorm.group_norm_backward(dy.reshape(x4.shape), x4, m, s, w[:12], b[:12])]
    rm, rv = np.zeros(12, np.float32), np.ones(12, np.float32)
    y, m, s = fastnorm.batch_norm(x4, rm, rv, w[:12], b[:12], training=True, return_stats=True)
    out += [y, rm, rv, *fastnorm.batch_norm_backward(dy.reshape(x4.shape), x4, m, s, w[:12],
                                                     b[:12], training=True)]
    out.append(fastnorm.batch_layer_norm(x, w, b, training=True))
    out.append(fastnorm.switch_norm(x4, w[:12], b[:12]))
    out.append(fastnorm.weight_norm(x, np.linspace(0.5, 2.0, x.shape[0]).astype(np.float32)))
    return out


@pytest.mark.skipif(BF16 is None, reason="ml_dtypes is not installed")
@pytest.mark.parametrize("target", ["avx2", "avx512"])
def test_bf16_rounding_instruction_gives_the_same_bits(target):
    """Where a target rounds bfloat16 with the AVX-512 BF16 instruction, every
    result has the bits of the integer rounding: ties to even, NaN quieted,
    and float32 subnormals (which the instruction flushes) rounded like any
    other value; every 16-bit pattern and the rounding cases are checked
    against ml_dtypes' conversion with each rounding."""
    from fastnorm import _core
    if target not in _core._available_isas():
        pytest.skip(f"the {target} target is not available here")
    _core._set_isa(target)
    if not _core._bf16_convert():
        _core._set_isa("auto")
        pytest.skip("the AVX-512 BF16 rounding is not available here")
    x = data((24, 5 * 16), BF16)
    x[3, :8] = np.float32(1e-39)  # subnormal results in a vector of their own
    x[4, 17] = np.nan
    dy = data(x.shape, BF16, seed=3, loc=0.0, scale=1.0)
    r = data(x.shape, BF16, seed=5)
    w, b = params(x.shape[-1])
    w[:40] *= np.float32(1e-38)  # y = xhat * w: float32 subnormals in the first columns
    vals = float_cases(BF16)
    vals = np.resize(vals, (-(-vals.size // 64), 64))
    zero = np.full((1, 64), -0.0, np.float32).astype(BF16)
    with np.errstate(over="ignore"):
        want = vals.astype(BF16)
    results = {}
    try:
        for cvt in (False, True):
            assert _core._bf16_convert(cvt) == cvt
            results[cvt] = _half_ops(x, dy, r, w, b)
            got = np.stack([fastnorm.add_rms_norm(zero, zero, residual_bias=v)[1][0]
                            for v in vals])
            assert np.array_equal(got.view(np.uint16), want.view(np.uint16)), cvt
    finally:
        _core._bf16_convert(True)
        _core._set_isa("auto")
    assert len(results[False]) == len(results[True])
    for i, (a, c) in enumerate(zip(results[False], results[True])):
        assert a.dtype == c.dtype and np.array_equal(
            np.ascontiguousarray(a).view(np.uint8), np.ascontiguousarray(c).view(np.uint8)), i
    assert any(r.dtype == BF16 and np.any((r.astype(np.float32) != 0)
                                          & (np.abs(r.astype(np.float32)) < 1.17549435e-38))
               for r in results[True]), "no subnormal result was produced"


# --------------------------------------------------------------------------
# The avx512 target: the AVX2 loops' vector pairs in AVX-512 registers
# --------------------------------------------------------------------------

def _same_results(a, b):
    """The same bits element by element, where a NaN matches any NaN (the sign
    and payload of a NaN made by the arithmetic, inf * 0 say, are not part of
    the results' contract: the compiler orders the operands of a commutative
    operation as it likes)."""
    assert len(a) == len(b)
    for i, (p, q) in enumerate(zip(a, b)):
        assert p.dtype == q.dtype and p.shape == q.shape, i
        pf, qf = p.astype(np.float64), q.astype(np.float64)
        nan = np.isnan(pf)
        assert np.array_equal(nan, np.isnan(qf)), i
        pb = np.ascontiguousarray(p).view(np.uint8).reshape(p.size, -1)
        qb = np.ascontiguousarray(q).view(np.uint8).reshape(q.size, -1)
        keep = ~nan.reshape(-1)
        assert np.array_equal(pb[keep], qb[keep]), i


def _row_ops(dt, n, threads):
    """Row normalizers at row length n, forward and backward; 7 rows (the
    forward takes them 4, 2 and 1 at a time)."""
    x = data((7, n), dt)
    x[1, n // 2] = np.nan
    x[3, (n - 1) // 3] = np.inf  # inf * 0 in the backward: NaN of either sign
    dy = data(x.shape, dt, seed=3, loc=0.0, scale=1.0)
    r = data(x.shape, dt, seed=5)
    w, b = params(n)
    out = []
    y, m, s = fastnorm.layer_norm(x, w, b, return_stats=True, num_threads=threads)
    out += [y, m, s, *fastnorm.layer_norm_backward(dy, x, m, s, w, num_threads=threads)]
    out += list(fastnorm.layer_norm_backward(dy, x, m, s, num_threads=threads))
    y, s = fastnorm.rms_norm(x, w, return_stats=True, num_threads=threads)
    out += [y, s, *fastnorm.rms_norm_backward(dy, x, s, w, num_threads=threads)]
    y, sm, m, s = fastnorm.add_layer_norm(x, r, w, b, residual_bias=b, return_stats=True,
                                          num_threads=threads)
    out += [y, sm, *fastnorm.add_layer_norm_backward(dy, sm, m, s, w, ds=dy,
                                                       num_threads=threads)]
    out += list(fastnorm.add_rms_norm(x, r, w, num_threads=threads))
    out += list(fastnorm.ada_layer_norm(x, np.tile(w, (7, 1)), np.tile(b, (7, 1)),
                                        return_stats=True, num_threads=threads))
    # a constant row with eps=0 takes the exact-range path, next to a row that does not
    xc = x.copy()
    xc[2] = xc[2, 0]
    out += list(fastnorm.layer_norm(xc, w, b, eps=0.0, return_stats=True, num_threads=threads))
    out += list(fastnorm.rms_norm(np.zeros_like(x), w, eps=0.0, return_stats=True,
                                  num_threads=threads))
    return out


@pytest.mark.parametrize("dt", HALF, ids=lambda d: d.name)
def test_avx512_target_gives_the_avx2_bits(dt):
    """The avx512 target (16-bit data: the AVX2 loops' vector pairs in AVX-512
    registers) gives every result the bits of the avx2 target (NaN aside: NaN
    is NaN): the rows at every tail length, the row lengths around the row
    drivers' limits (float16 rows back to the avx2 loops beyond 3072, short
    rows on them up to the registry's row_min, the bfloat16 backward's copies
    up to 512), every normalizer, 1 and 2 threads, both bfloat16 roundings.
    With them the forward takes four rows at a time through its statistics:
    odd row counts, rows on the exact-range path next to others. The avx512
    target runs once more with its own tables for the short rows too
    (_row_min(False)), so that its short-row code stays tested."""
    from fastnorm import _core
    if "avx512" not in _core._available_isas():
        pytest.skip("the avx512 target is not available here")
    x = data((24, 5 * 16), dt)
    x[4, 17] = np.nan
    dy = data(x.shape, dt, seed=3, loc=0.0, scale=1.0)
    r = data(x.shape, dt, seed=5)
    w, b = params(x.shape[-1])
    lengths = list(range(1, 70)) + [767, 768, 1023, 1024, 1025, 1535, 1536, 1537, 3071, 3072,
                                    3073, 4100]
    roundings = (False, True) if dt == BF16 and _core._bf16_convert() else (None,)
    try:
        for cvt in roundings:
            if cvt is not None:
                _core._bf16_convert(cvt)
            results = {}
            for target, row_min in (("avx2", True), ("avx512", True), ("avx512", False)):
                assert _core._set_isa(target) == target
                assert fastnorm.get_config()["isa"] == target
                if cvt is not None:
                    assert _core._bf16_convert() == cvt
                before = _core._row_min(row_min)
                try:
                    out = _half_ops(x, dy, r, w, b)
                    for threads in (1, 2):
                        for n in lengths:
                            out += _row_ops(dt, n, threads)
                finally:
                    _core._row_min(before)
                results[target, row_min] = out
            for key in (("avx512", True), ("avx512", False)):
                _same_results(results["avx2", True], results[key])
                assert any(np.isnan(o.astype(np.float32)).any() for o in results[key])
    finally:
        _core._bf16_convert(True)
        _core._set_isa("auto")


@pytest.mark.parametrize("dt", HALF, ids=lambda d: d.name)
def test_add_norm_sum_out_with_overlapping_rows(dt):
    """A sum_out whose rows overlap (stride 0: every row of s in one place)
    holds the last row's s; y is still each row's own normalization, as with
    a plain sum_out (the rows' statistics are read before the next row's s is
    written, whichever way the kernels group the rows)."""
    x = data((6, 40), dt)
    r = data(x.shape, dt, seed=5)
    w, b = params(x.shape[-1])
    want_y, want_s = fastnorm.add_layer_norm(x, r, w, b)
    buf = np.zeros(x.shape[-1], dt)
    s_out = np.lib.stride_tricks.as_strided(buf, x.shape, (0, buf.itemsize), writeable=True)
    y, s = fastnorm.add_layer_norm(x, r, w, b, sum_out=s_out)
    assert s is s_out
    assert same_bits(y, want_y)
    assert same_bits(buf, want_s[-1])



@pytest.mark.parametrize("dt", HALF, ids=lambda d: d.name)
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "add_layer_norm", "ada_layer_norm"])
@pytest.mark.parametrize("where", ["inside", "between_rows", "apart"])
def test_float32_parameters_in_the_memory_of_a_16bit_out(dt, op, where):
    """A float32 parameter whose bytes lie in the buffer of a 16-bit out is
    read as it was before the call. 'inside' shares bytes with the rows out
    writes, 'between_rows' lies in the gaps of a strided out, 'apart' in the
    same buffer past it: the results are the same bits as with a copy."""
    n, N = 32, 6
    x = data((N, n), dt)
    r = data(x.shape, dt, seed=5)
    w, b = params(n)
    buf = np.zeros((12, 3 * n), dt)
    flat = buf.reshape(-1)
    dest = buf[:N, :n]  # rows 3n elements apart
    if op == "ada_layer_norm" and where == "between_rows":
        pytest.skip("an (N, D) float32 shift does not fit in one row's gap")
    count = N * n if op == "ada_layer_norm" else n  # float32 values
    start = {"inside": 2 * 3 * n, "between_rows": 2 * 3 * n + n, "apart": 6 * 3 * n}[where]
    if op == "ada_layer_norm" and where == "inside":
        start = 0  # shift row 3 shares bytes with out's row 2, written before it is read
    p = flat[start:start + 2 * count].view(np.float32)
    if op == "ada_layer_norm":
        p = p.reshape(N, n)
        p[...] = np.random.default_rng(7).standard_normal(p.shape)
    else:
        p[...] = w
    before = p.copy()
    if op == "layer_norm":
        want = fastnorm.layer_norm(x, before, b)
        got = fastnorm.layer_norm(x, p, b, out=dest)
    elif op == "rms_norm":
        want = fastnorm.rms_norm(x, before)
        got = fastnorm.rms_norm(x, p, out=dest)
    elif op == "add_layer_norm":
        want = fastnorm.add_layer_norm(x, r, before, b)[0]
        got = fastnorm.add_layer_norm(x, r, p, b, out=dest)[0]
    else:
        scale = params(n, seed=3)[0][None, :].repeat(N, axis=0)
        want = fastnorm.ada_layer_norm(x, before, scale)
        got = fastnorm.ada_layer_norm(x, p, scale, out=dest)
    assert got is dest
    assert same_bits(dest, want)


@pytest.mark.skipif(BF16 is None, reason="ml_dtypes is not installed")
@pytest.mark.parametrize("other", ["float8_e4m3fn", "int4", "float8_e5m2"])
def test_other_user_dtypes_refused_around_bfloat16(other):
    """bfloat16 is told from NumPy's other user dtypes (ml_dtypes' float8 and
    int4) however often either has been seen: a TypeError naming the argument."""
    odt = np.dtype(getattr(ml_dtypes, other))
    w, _ = params(8)
    for _ in range(2):
        xb = data((4, 8), BF16)
        assert fastnorm.layer_norm(xb, w).dtype == BF16
        assert fastnorm.group_norm(xb.reshape(4, 8, 1), 2).dtype == BF16
        xo = data((4, 8), np.float32).astype(odt)
        with pytest.raises(TypeError, match="x must have dtype"):
            fastnorm.layer_norm(xo, w)
        with pytest.raises(TypeError, match="x"):
            fastnorm.group_norm(xo.reshape(4, 8, 1), 2)
        with pytest.raises(TypeError, match="weight"):
            fastnorm.layer_norm(xb, w.astype(odt))
        with pytest.raises(TypeError, match="out"):
            fastnorm.layer_norm(xb, w, out=np.empty(xb.shape, odt))


@pytest.mark.parametrize("dt", HALF, ids=lambda d: d.name)
def test_batch_norm_eval_spellings_bits(dt):
    """16-bit batch_norm eval (float32 or float64 running statistics, float32
    parameters) gives the same bits with a NumPy integer axis."""
    x = data((4, 6, 5, 3), dt)
    w, b = params(6)
    for sdt in (np.float32, np.float64):
        rm = np.linspace(-1, 1, 6).astype(sdt)
        rv = np.linspace(0.5, 2, 6).astype(sdt)
        for rs in (False, True):
            got = fastnorm.batch_norm(x, rm, rv, w, b, return_stats=rs)
            want = fastnorm.batch_norm(x, rm, rv, w, b, axis=np.int64(1), return_stats=rs)
            for g, e in zip(got if rs else (got,), want if rs else (want,)):
                assert same_bits(g, e)


@pytest.mark.parametrize("dt", HALF, ids=lambda d: d.name)
def test_group_norm_spellings_bits(dt):
    """16-bit group_norm gives the same bits with a NumPy integer axis."""
    x = data((3, 8, 5, 2), dt)
    w, b = params(8)
    for rs in (False, True):
        got = fastnorm.group_norm(x, 4, w, b, return_stats=rs)
        want = fastnorm.group_norm(x, 4, w, b, axis=np.int64(1), return_stats=rs)
        for g, e in zip(got if rs else (got,), want if rs else (want,)):
            assert same_bits(g, e)
