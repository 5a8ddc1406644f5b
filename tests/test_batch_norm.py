"""fastnorm.batch_norm and batch_norm_backward against the float64 reference
(docs/numerics.md §0, §7 and §11): training and eval, running statistics,
errors that leave the running statistics untouched, determinism across
thread counts and accuracy over long channels."""
import itertools
import re
import warnings

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import (
    LAYOUTS,
    assert_close,
    assert_rel_close,
    make_array,
    random_params,
    sum_scale,
)
from params import (
    AFFINE,
    STRIDED_LAYOUTS,
    TRAINING,
    assert_grads_fd,
    channel_others,
    per_channel,
)

# (shape, channel axis): NCHW, channels-last, (N, C), (N, C, L), (N, L, C)
CASES = [
    ((4, 3, 5, 2), 1),
    ((4, 5, 2, 3), -1),
    ((7, 3), 1),
    ((7, 3), -1),
    ((3, 4, 6), 1),
    ((3, 6, 4), -1),
    ((2, 3, 2, 2, 3), 1),
]
CASE_IDS = [f"{s}-ax{a}" for s, a in CASES]


def _running(C, dtype, rng):
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    return rm, rv


# --------------------------------------------------------------------------
# Forward
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", CASES, ids=CASE_IDS)
def test_training_forward_matches_reference(isa, dtype, shape, axis, rng):
    x = make_array(shape, dtype, rng)
    C = shape[axis]
    for weight, bias in AFFINE:
        w, b = random_params((C,), dtype, rng, weight, bias)
        rm, rv = _running(C, dtype, rng)
        rm0, rv0 = rm.copy(), rv.copy()
        y, mean, rstd = fn.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, axis=axis,
                                      return_stats=True)
        ye, me, re, rme, rve = ref.batch_norm(x, rm0, rv0, w, b, training=True, momentum=0.1,
                                              axis=axis)
        what = f"weight={weight} bias={bias}"
        assert y.shape == shape and y.dtype == dtype
        assert mean.shape == (C,) == rstd.shape and mean.dtype == dtype == rstd.dtype
        assert_close(y, ye, dtype, what="y " + what)
        assert_close(mean, me, dtype, scale=np.abs(x).max(), what="mean " + what)
        assert_rel_close(rstd, re, dtype, what="rstd " + what)
        assert rm.dtype == dtype and rv.dtype == dtype
        assert_close(rm, rme, dtype, what="running_mean " + what)
        assert_close(rv, rve, dtype, what="running_var " + what)
        # the same bits without statistics and without running statistics
        assert np.array_equal(fn.batch_norm(x, None, None, w, b, training=True, axis=axis), y)


@pytest.mark.parametrize("shape,axis", CASES, ids=CASE_IDS)
def test_eval_forward_matches_reference(isa, dtype, shape, axis, rng):
    x = make_array(shape, dtype, rng)
    C = shape[axis]
    for weight, bias in AFFINE:
        w, b = random_params((C,), dtype, rng, weight, bias)
        rm, rv = _running(C, dtype, rng)
        rm0, rv0 = rm.copy(), rv.copy()
        y, mean, rstd = fn.batch_norm(x, rm, rv, w, b, axis=axis, return_stats=True)
        ye, me, re, _, _ = ref.batch_norm(x, rm, rv, w, b, training=False, axis=axis)
        assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)  # eval: untouched
        assert mean.shape == (C,) == rstd.shape and mean.dtype == dtype == rstd.dtype
        assert_close(y, ye, dtype)
        assert np.array_equal(mean, rm)
        assert_rel_close(rstd, re, dtype)
        # eval is an affine map per channel: y = x * a_c + b_c
        a = (re * (1.0 if w is None else w.astype(np.float64)))
        bb = (0.0 if b is None else b.astype(np.float64)) - rm.astype(np.float64) * a
        assert_close(y, x * per_channel(a, x.ndim, axis) + per_channel(bb, x.ndim, axis), dtype,
                     scale=np.abs(x * per_channel(a, x.ndim, axis)).max() + np.abs(bb).max())


def test_training_is_default_false(rng):
    x = make_array((4, 3), np.float64, rng)
    rm, rv = _running(3, np.float64, rng)
    assert np.array_equal(fn.batch_norm(x, rm, rv), fn.batch_norm(x, rm, rv, training=False))
    assert not np.allclose(fn.batch_norm(x, rm, rv), fn.batch_norm(x, rm, rv, training=True))


@pytest.mark.parametrize("N, C", [(2048, 64), (7, 5003), (130, 2100)],
                         ids=["many_rows", "many_channels", "both"])
def test_large_2d_column_path(isa, dtype, N, C, rng):
    """The channels-contiguous (column) kernels: (2048, 64), many row blocks;
    (7, 5003), more channels than one block of the apply stages'
    coefficients holds (fn_apply_block_cols), applied a block of columns
    at a time over the rows, with a ragged last block; (130, 2100), blocks
    of columns over three chunks of rows (64, 64 and 2)."""
    x = make_array((N, C), dtype, rng)
    x += np.linspace(-50, 50, C).astype(dtype)  # a different mean per column
    dy = make_array((N, C), dtype, rng, loc=0.3, scale=1.0)
    w, b = random_params((C,), dtype, rng, True, True)
    rm, rv = _running(C, dtype, rng)
    rm0, rv0 = rm.copy(), rv.copy()
    y, mean, rstd = fn.batch_norm(x, rm, rv, w, b, training=True, return_stats=True)
    ye, me, re, rme, rve = ref.batch_norm(x, rm0, rv0, w, b, training=True)
    assert_close(y, ye, dtype, factor=2)
    assert_close(mean, me, dtype, scale=np.abs(x).max())
    assert_rel_close(rstd, re, dtype, factor=2)
    assert_close(rm, rme, dtype, scale=np.abs(rme).max())
    assert_rel_close(rv, rve, dtype, factor=2)
    dx, dw, db = fn.batch_norm_backward(dy, x, mean, rstd, w, b, training=True)
    dxe, dwe, dbe = ref.batch_norm_backward(dy, x, me, re, w, training=True)
    assert_rel_close(dx, dxe, dtype, factor=10, what="dx")
    xh = ye if b is None else (ye - b) / w
    assert_close(dw, dwe, dtype, factor=4, scale=sum_scale(dy * xh, (0,)), what="dweight")
    assert_close(db, dbe, dtype, factor=4, scale=sum_scale(dy, (0,)), what="dbias")
    # eval on the same data
    ye2 = ref.batch_norm(x, rm, rv, w, b, training=False)[0]
    assert_close(fn.batch_norm(x, rm, rv, w, b), ye2, dtype, factor=2)


def test_many_channels_any_threads(isa, dtype, rng, shuffled):
    """(5, 40000) in eval mode: enough channels for the per-channel loops of
    the frozen-statistics backward (channel_sums_scale's, around its sums) to
    run on the pool by blocks, claimed in a random order; the same bits on 1
    and 2 threads, and dx and dweight against the float64 reference."""
    C = 40000
    x = make_array((5, C), dtype, rng)
    dy = make_array((5, C), dtype, rng, loc=0.3, scale=1.0)
    w, b = random_params((C,), dtype, rng, True, True)
    rm, rv = _running(C, dtype, rng)
    runs = []
    for nt in (1, 2):
        y, mean, rstd = fn.batch_norm(x, rm, rv, w, b, training=False, return_stats=True,
                                      num_threads=nt)
        runs.append((y,) + tuple(fn.batch_norm_backward(dy, x, mean, rstd, w, b,
                                                        training=False, num_threads=nt)))
    for a, c in zip(*runs):
        assert a.tobytes() == c.tobytes()
    dxe, dwe, _ = ref.batch_norm_backward(dy, x, mean, rstd, w, training=False)
    assert_rel_close(runs[0][1], dxe, dtype, factor=4, what="dx")
    xh = (x.astype(np.float64) - mean.astype(np.float64)) * rstd.astype(np.float64)
    assert_close(runs[0][2], dwe, dtype, factor=4, scale=sum_scale(dy * xh, (0,)),
                 what="dweight")


@pytest.mark.parametrize("layout", STRIDED_LAYOUTS)
def test_layouts_give_identical_bits(isa, dtype, layout, rng):
    for shape, axis in [((4, 3, 5, 2), 1), ((4, 5, 2, 3), -1), ((9, 3), 1)]:
        base = make_array(shape, dtype, rng)
        dy0 = make_array(shape, dtype, rng)
        w, b = random_params((3,), dtype, rng, True, True)
        rm, rv = _running(3, dtype, rng)
        rm2, rv2 = rm.copy(), rv.copy()
        y0, m0, r0 = fn.batch_norm(base, rm, rv, w, b, training=True, axis=axis,
                                   return_stats=True)
        g0 = fn.batch_norm_backward(dy0, base, m0, r0, w, b, training=True, axis=axis)
        x, dy = LAYOUTS[layout](base), LAYOUTS[layout](dy0)
        y, m, r = fn.batch_norm(x, rm2, rv2, w, b, training=True, axis=axis, return_stats=True)
        assert np.array_equal(y, y0) and np.array_equal(m, m0) and np.array_equal(r, r0)
        assert np.array_equal(rm, rm2) and np.array_equal(rv, rv2)
        g = fn.batch_norm_backward(dy, x, m, r, w, b, training=True, axis=axis)
        for got, want in zip(g, g0):
            assert np.array_equal(got, want)
        assert np.array_equal(fn.batch_norm(x, rm, rv, w, b, axis=axis),
                              fn.batch_norm(base, rm, rv, w, b, axis=axis))


@pytest.mark.parametrize("training", TRAINING)
def test_unaligned_x(dtype, training, rng):
    x = make_array((4, 3, 5), dtype, rng)
    rm, rv = _running(3, dtype, rng)
    want = fn.batch_norm(x, rm.copy(), rv.copy(), training=training)
    got = fn.batch_norm(LAYOUTS["unaligned"](x), rm, rv, training=training)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("training", TRAINING)
def test_out(isa, dtype, training, rng):
    x = make_array((4, 3, 6), dtype, rng)
    w, b = random_params((3,), dtype, rng, True, True)
    rm, rv = _running(3, dtype, rng)
    want = fn.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)
    for layout in ("C", "F", "sliced", "negstride"):
        rmc, rvc = rm.copy(), rv.copy()
        out = LAYOUTS[layout](np.zeros_like(x))
        assert fn.batch_norm(x, rmc, rvc, w, b, training=training, out=out) is out
        assert np.array_equal(out, want), layout
        # in place
        xc = LAYOUTS[layout](x.copy())
        rmc, rvc = rm.copy(), rv.copy()
        assert fn.batch_norm(xc, rmc, rvc, w, b, training=training, out=xc) is xc
        assert np.array_equal(xc, want), layout
    # out overlapping x, shifted by one sample
    buf = np.concatenate([x, x[:1]])
    got = fn.batch_norm(buf[:-1], rm.copy(), rv.copy(), w, b, training=training, out=buf[1:])
    assert np.array_equal(got, want)
    # out=x where the running statistics are views into x (read before written)
    xs = x.copy()
    xs[0, 0, :3] = np.abs(xs[0, 0, :3]) + 0.5
    rm_view, rv_view = xs[1, 1, :3], xs[0, 0, :3]
    want = fn.batch_norm(xs.copy(), rm_view.copy(), rv_view.copy(), w, b, training=False)
    got = fn.batch_norm(xs, rm_view, rv_view, w, b, training=False, out=xs)
    assert np.array_equal(got, want)


# --------------------------------------------------------------------------
# Running statistics
# --------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("momentum", [0.1, 0.0, 1.0, 0.25])
def test_running_stats_over_several_steps(isa, dtype, axis, momentum, rng):
    shape = (5, 3, 4) if axis == 1 else (5, 4, 3)
    rm, rv = _running(3, dtype, rng)
    rm_id, rv_id = rm.ctypes.data, rv.ctypes.data
    want_m, want_v = rm.astype(np.float64), rv.astype(np.float64)
    M = 20
    for step in range(4):
        x = make_array(shape, dtype, rng)
        fn.batch_norm(x, rm, rv, training=True, momentum=momentum, axis=axis)
        xc = np.moveaxis(x.astype(np.float64), axis, -1).reshape(-1, 3)
        want_m = (1 - momentum) * want_m + momentum * xc.mean(axis=0)
        want_v = (1 - momentum) * want_v + momentum * xc.var(axis=0) * M / (M - 1)
        assert_close(rm, want_m, dtype, factor=2, what=f"running_mean step {step}")
        assert_close(rv, want_v, dtype, factor=2, what=f"running_var step {step}")
    assert rm.ctypes.data == rm_id and rv.ctypes.data == rv_id  # updated in place
    if momentum == 1.0:  # the last batch's statistics, variance unbiased
        assert_close(rv, xc.var(axis=0, ddof=1), dtype)


def test_momentum_zero_leaves_running_stats(isa, dtype, rng):
    x = make_array((6, 3, 4), dtype, rng)
    rm, rv = _running(3, dtype, rng)
    rm0, rv0 = rm.copy(), rv.copy()
    fn.batch_norm(x, rm, rv, training=True, momentum=0.0)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)


def test_running_stats_views(isa, rng):
    """Non-contiguous running statistics are updated in place."""
    x = make_array((6, 3, 4), np.float64, rng)
    store = np.zeros((2, 6))
    store[1] = 1.0
    rm, rv = store[0, ::2], store[1, ::2]
    fn.batch_norm(x, rm, rv, training=True, momentum=0.5)
    want = ref.batch_norm(x, np.zeros(3), np.ones(3), training=True, momentum=0.5)
    assert_close(store[0, ::2], want[3], np.float64)
    assert_close(store[1, ::2], want[4], np.float64)
    assert np.all(store[0, 1::2] == 0) and np.all(store[1, 1::2] == 1)


def _odd_layout(a, how):
    """a's values in a strided or an unaligned array (writeable)."""
    if how == "strided":
        v = np.zeros(2 * a.size, a.dtype)[::2]
    else:
        buf = np.zeros(a.nbytes + 1, np.uint8)
        v = buf[1:].view(a.dtype)
        assert not v.flags.aligned
    v[...] = a
    return v


@pytest.mark.parametrize("how", ["strided", "unaligned"])
@pytest.mark.parametrize("training", TRAINING)
def test_running_stats_any_layout_same_bits(isa, dtype, how, training, rng):
    """Strided and unaligned running statistics give the bits of contiguous
    ones, in y, in the statistics returned and in the update; the update is
    the float64 formula rounded once, the frozen rstd 1 / sqrt(var + eps) in
    float64 rounded once."""
    x = make_array((6, 5, 4), dtype, rng)
    w, b = random_params((5,), dtype, rng, True, True)
    rm, rv = _running(5, dtype, rng)
    om, ov = _odd_layout(rm, how), _odd_layout(rv, how)
    want = fn.batch_norm(x, rm, rv, w, b, training=training, momentum=0.3, eps=1e-3,
                         return_stats=True)
    got = fn.batch_norm(x, om, ov, w, b, training=training, momentum=0.3, eps=1e-3,
                        return_stats=True)
    for g, e in zip(got, want):
        assert g.dtype == e.dtype and np.array_equal(g, e)
    assert np.array_equal(om, rm) and np.array_equal(ov, rv)
    if training:
        m0 = _running(5, dtype, np.random.default_rng(rng.integers(1 << 30)))[0]
        m1 = m0.copy()
        fn.batch_norm(x, m1, np.ones(5, dtype), training=True, momentum=0.3)
        mean = want[1].astype(np.float64)
        assert np.array_equal(m1, (0.7 * m0.astype(np.float64) + 0.3 * mean).astype(dtype))
    else:
        assert np.array_equal(want[1], om)
        r64 = 1.0 / np.sqrt(ov.astype(np.float64) + 1e-3)
        assert np.array_equal(want[2], r64.astype(dtype))


@pytest.mark.parametrize("training", TRAINING)
def test_running_stats_inside_out(isa, dtype, training, rng):
    """Running statistics that are reversed views into out's memory: read as if
    out were a separate array in eval; refused in training, where the same
    call would update them (they could not hold both y and the statistics)."""
    x = make_array((4, 5, 6), dtype, rng)
    rm, rv = _running(5, dtype, rng)
    out = np.zeros_like(x)
    flat = out.reshape(-1)
    om, ov = flat[14:9:-1], flat[61:51:-2]  # negative strides, inside out's bytes
    om[...], ov[...] = rm, rv
    if training:
        before = out.copy()
        with pytest.raises(ValueError, match="out"):
            fn.batch_norm(x, om, ov, training=True, momentum=0.5, out=out)
        assert np.array_equal(out, before)
        return
    want = fn.batch_norm(x, rm, rv, training=training, momentum=0.5, return_stats=True)
    got = fn.batch_norm(x, om, ov, training=training, momentum=0.5, out=out,
                        return_stats=True)
    assert got[0] is out
    for g, e in zip(got, want):
        assert np.array_equal(g, e)


def test_degenerate_running_stats_follow_numpy_errstate(rng):
    """A zero or negative running variance, or an infinite running mean, warn
    (or raise under np.errstate) as NumPy's ufuncs do on the same formulas."""
    x = make_array((4, 3), np.float32, rng)
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError):
        fn.batch_norm(x, np.zeros(3, np.float32), np.zeros(3, np.float32), eps=0.0)
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        fn.batch_norm(x, np.zeros(3, np.float32), -np.ones(3, np.float32), eps=0.0)
    rm = np.array([np.inf, 0, 0], np.float32)
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
        fn.batch_norm(x, rm, np.ones(3, np.float32), training=True, momentum=1.0)
    assert rm[0] == np.inf  # untouched by the failed update


def test_self_overlapping_running_stats_update_as_one_assignment(rng):
    """A running statistic whose elements share memory (stride 0) gets the
    update of one whole-array assignment: every new value computed from the
    old ones, then stored in order (the last wins)."""
    x = make_array((4, 3), np.float32, rng)
    a = np.ones(1, np.float32)
    z = np.lib.stride_tricks.as_strided(a, (3,), (0,), writeable=True)
    _, mean, _ = fn.batch_norm(x, z, np.ones(3, np.float32), training=True, momentum=0.5,
                               return_stats=True)
    assert a[0] == np.float32(0.5 * 1.0 + 0.5 * np.float64(mean[2]))


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_eval_zero_variance_and_eps():
    """running_var 0 with eps=0: rstd is inf (NumPy's divide-by-zero warning,
    no error), as 1 / sqrt(0), and y not finite."""
    x = np.ones((2, 3), np.float32)
    y, m, r = fn.batch_norm(x, np.ones(3, np.float32), np.zeros(3, np.float32), eps=0.0,
                            return_stats=True)
    assert np.all(np.isinf(r)) and np.all(np.isnan(y))
    y, m, r = fn.instance_norm(x[:, :, None], running_mean=np.zeros(3, np.float32),
                               running_var=np.zeros(3, np.float32), training=False, eps=0.0,
                               return_stats=True)
    assert np.all(np.isinf(r)) and not np.isfinite(y).any()


@pytest.mark.parametrize("training", TRAINING)
def test_one_running_statistic_without_the_other_is_refused(training, rng):
    """As torch: running_mean and running_var come together or not at all; the
    one given is left as it was."""
    x = make_array((6, 3, 4), np.float64, rng)
    for rm, rv in ((np.zeros(3), None), (None, np.ones(3))):
        given = rm if rm is not None else rv
        before = given.copy()
        with pytest.raises(ValueError, match="running_mean and running_var must be given "
                                             "together"):
            fn.batch_norm(x, rm, rv, training=training, momentum=0.5)
        assert np.array_equal(given, before)


def test_cumulative_average_via_momentum(isa, rng):
    """momentum=None is the layer classes' business: the functional refuses it, and
    momentum = 1/num_batches_tracked gives the plain average of the batches' statistics."""
    x0 = make_array((5, 3, 4), np.float64, rng)
    with pytest.raises(TypeError, match="momentum"):
        fn.batch_norm(x0, np.zeros(3), np.ones(3), training=True, momentum=None)
    rm, rv = np.zeros(3), np.ones(3)
    means, vars_ = [], []
    for n in range(1, 5):
        x = make_array((5, 3, 4), np.float64, rng)
        fn.batch_norm(x, rm, rv, training=True, momentum=1.0 / n)
        means.append(x.mean(axis=(0, 2)))
        vars_.append(x.var(axis=(0, 2), ddof=1))
    assert_close(rm, np.mean(means, axis=0), np.float64)
    assert_close(rv, np.mean(vars_, axis=0), np.float64)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("axis", [1, -1])
def test_non_finite_value_stays_in_its_channel(isa, dtype, bad, axis, rng):
    shape = (4, 3, 5) if axis == 1 else (4, 5, 3)
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng)
    w, b = random_params((3,), dtype, rng, True, True)
    rm, rv = _running(3, dtype, rng)
    rm0, rv0 = rm.copy(), rv.copy()
    y0, m0, r0 = fn.batch_norm(x, rm0, rv0, w, b, training=True, return_stats=True, axis=axis)
    g0 = fn.batch_norm_backward(dy, x, m0, r0, w, b, training=True, axis=axis)
    xb = x.copy()
    xb[(2, 1, 3) if axis == 1 else (2, 3, 1)] = bad
    y, m, r = fn.batch_norm(xb, rm, rv, w, b, training=True, return_stats=True, axis=axis)
    chan = np.zeros(shape, bool)
    sl = [slice(None)] * 3
    sl[axis] = 1
    chan[tuple(sl)] = True
    assert np.all(np.isnan(y[chan]))
    assert np.array_equal(y[~chan], y0[~chan])
    assert np.isnan(rm[1]) or np.isinf(rm[1])
    assert np.isnan(rv[1])
    assert np.array_equal(rm[[0, 2]], rm0[[0, 2]]) and np.array_equal(rv[[0, 2]], rv0[[0, 2]])
    g = fn.batch_norm_backward(dy, xb, m, r, w, b, training=True, axis=axis)
    assert not np.any(np.isfinite(g[0][chan]))
    assert np.array_equal(g[0][~chan], g0[0][~chan])
    assert np.array_equal(g[1][[0, 2]], g0[1][[0, 2]])
    assert np.array_equal(g[2], g0[2])


# --------------------------------------------------------------------------
# Backward
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("training", TRAINING)
def test_backward_matches_reference(isa, dtype, shape, axis, training, rng):
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    C = shape[axis]
    others = channel_others(shape, axis)
    for weight, bias in AFFINE:
        w, b = random_params((C,), dtype, rng, weight, bias)
        rm, rv = _running(C, dtype, rng)
        _, mean, rstd = fn.batch_norm(x, rm, rv, w, b, training=training, axis=axis,
                                      return_stats=True)
        dx, dw, db = fn.batch_norm_backward(dy, x, mean, rstd, w, b, training=training,
                                            axis=axis)
        dxe, dwe, dbe = ref.batch_norm_backward(dy, x, mean, rstd, w, training=training,
                                                axis=axis)
        what = f"weight={weight} bias={bias}"
        assert dx.shape == shape and dx.dtype == dtype
        assert_close(dx, dxe, dtype, factor=4, what="dx " + what)
        if training:
            xh = ref.batch_norm(x, training=True, axis=axis)[0]
        else:
            xh = (x - per_channel(mean, x.ndim, axis)) * per_channel(rstd, x.ndim, axis)
        if weight:
            assert dw.shape == (C,) and dw.dtype == dtype
            assert_close(dw, dwe, dtype, factor=4, scale=sum_scale(dy * xh, others),
                         what="dweight " + what)
        else:
            assert dw is None
        if bias:
            assert db.shape == (C,) and db.dtype == dtype
            assert_close(db, dbe, dtype, factor=4, scale=sum_scale(dy, others),
                         what="dbias " + what)
        else:
            assert db is None
        if not training:  # dx = dy * weight * rstd
            g = dy * (1.0 if w is None else per_channel(w, x.ndim, axis))
            assert_close(dx, g * per_channel(rstd, x.ndim, axis), dtype, factor=2)


FD_CASES = [((4, 3), 1), ((3, 2, 3), 1), ((3, 2, 2), -1), ((2, 2, 2, 2), 1), ((2, 3, 2), 2)]


@pytest.mark.parametrize("shape,axis", FD_CASES, ids=[f"{s}-ax{a}" for s, a in FD_CASES])
@pytest.mark.parametrize("training", TRAINING)
def test_gradients_match_finite_differences(isa, shape, axis, training, rng):
    x = make_array(shape, np.float64, rng)
    C = shape[axis]
    w, b = random_params((C,), np.float64, rng, True, True)
    rm, rv = _running(C, np.float64, rng)
    r = rng.standard_normal(shape)

    def loss(x_, w_, b_):
        y = fn.batch_norm(x_, rm.copy(), rv.copy(), w_, b_, training=training, axis=axis,
                          eps=1e-3)
        return float(np.sum(y * r))

    _, mean, rstd = fn.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training, axis=axis,
                                  eps=1e-3, return_stats=True)
    dx, dw, db = fn.batch_norm_backward(r, x, mean, rstd, w, b, training=training, axis=axis)
    assert_grads_fd(loss, (x, w, b), (dx, dw, db), ("dx", "dweight", "dbias"))


def test_large_mean_float32(isa, rng):
    for offset, (shape, axis) in itertools.product((1e4, 1e6), [((16, 4, 50), 1),
                                                               ((400, 8), -1)]):
        x = (offset + rng.standard_normal(shape)).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        C = shape[axis]
        rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
        y, m, r = fn.batch_norm(x, rm, rv, training=True, momentum=1.0, axis=axis,
                                return_stats=True)
        ye, me, re, rme, rve = ref.batch_norm(x, np.zeros(C), np.ones(C), training=True,
                                              momentum=1.0, axis=axis)
        assert np.all(np.isfinite(y))
        assert_close(y, ye, np.float32, factor=2)
        assert np.all(np.abs(m - me) <= np.spacing(np.float32(offset)))
        assert_rel_close(r, re, np.float32, factor=2)
        assert_rel_close(rv, rve, np.float32, factor=2)
        dx, _, _ = fn.batch_norm_backward(dy, x, m, r, training=True, axis=axis)
        dxe = ref.batch_norm_backward(dy, x, me, re, training=True, axis=axis)[0]
        assert_rel_close(dx, dxe, np.float32, factor=10)
        # constant channels: y = bias, finite
        xc = np.full(shape, offset + 0.5, np.float32)
        b = np.arange(C, dtype=np.float32)
        yc = fn.batch_norm(xc, None, None, None, b, training=True, axis=axis)
        assert_close(yc, np.broadcast_to(per_channel(b, len(shape), axis), shape), np.float32)


def test_accuracy_over_millions_of_elements(isa):
    """One channel of 2M float32 values, mean 1e3 and std 0.1: the statistics
    must match float64 (naive float32 accumulation loses several digits)."""
    rng = np.random.default_rng(7)
    for shape, axis in [((8, 1, 2 ** 18), 1), ((2 ** 21, 1), -1)]:
        x = (1e3 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        rm, rv = np.zeros(1, np.float32), np.ones(1, np.float32)
        y, m, r = fn.batch_norm(x, rm, rv, training=True, momentum=1.0, axis=axis,
                                return_stats=True)
        x64 = x.astype(np.float64).ravel()
        me = x64.mean()
        ve = ((x64 - me) ** 2).mean()
        assert abs(float(m[0]) - me) <= 0.5 * np.spacing(np.float32(1e3)) * 1.01
        assert abs(1.0 / float(r[0]) ** 2 - 1e-5 - ve) <= 2e-6 * ve
        assert abs(float(rv[0]) - ve * x64.size / (x64.size - 1)) <= 2e-6 * ve
        assert abs(float(rm[0]) - me) <= np.spacing(np.float32(1e3))
        assert np.max(np.abs(y.astype(np.float64).ravel() - (x64 - me) / np.sqrt(ve + 1e-5))) \
            <= 5e-6


# --------------------------------------------------------------------------
# Determinism across thread counts (shapes above the 128 KiB serial threshold)
# --------------------------------------------------------------------------

THREAD_CASES = [
    ((16, 32, 16, 16), 1, np.float32),     # NCHW, 512 KiB
    ((16, 16, 16, 32), -1, np.float32),    # channels-last
    ((2048, 64), 1, np.float64),           # (N, C): the column path, 1 MiB
    ((40, 17, 13, 24), -1, np.float64),    # odd sizes
]


@pytest.mark.parametrize("shape,axis,dt", THREAD_CASES,
                         ids=[f"{s}-ax{a}-{np.dtype(d).name}" for s, a, d in THREAD_CASES])
def test_bitwise_identical_for_any_thread_count(isa, shape, axis, dt):
    rng = np.random.default_rng(3)
    x = make_array(shape, dt, rng)
    assert x.nbytes > 128 * 1024
    dy = make_array(shape, dt, rng, loc=0.2, scale=1.0)
    C = shape[axis]
    w, b = random_params((C,), dt, rng, True, True)
    results = []
    for nt in (1, 2, 3, 4):
        rm, rv = np.zeros(C, dt), np.ones(C, dt)
        y, m, r = fn.batch_norm(x, rm, rv, w, b, training=True, axis=axis, return_stats=True,
                                num_threads=nt)
        g = fn.batch_norm_backward(dy, x, m, r, w, b, training=True, axis=axis, num_threads=nt)
        ye, me, re = fn.batch_norm(x, rm, rv, w, b, axis=axis, return_stats=True,
                                   num_threads=nt)
        ge = fn.batch_norm_backward(dy, x, me, re, w, b, axis=axis, num_threads=nt)
        results.append((y, m, r, rm, rv, *g, ye, *ge))
    names = ["y", "mean", "rstd", "running_mean", "running_var", "dx", "dweight", "dbias",
             "y_eval", "dx_eval", "dweight_eval", "dbias_eval"]
    for nt, res in zip((2, 3, 4), results[1:]):
        for nm, got, want in zip(names, res, results[0]):
            np.testing.assert_array_equal(got, want, err_msg=f"{nm}, {nt} threads vs 1")
    assert_close(results[0][0], ref.batch_norm(x, None, None, w, b, training=True,
                                               axis=axis)[0], dt, factor=2)


# --------------------------------------------------------------------------
# Bad input; the running statistics stay untouched after any error
# --------------------------------------------------------------------------

def _bad_calls(x, rm, rv, out=None):
    """Calls that must fail; with `out` given, every call (but those about out) passes it."""
    f32 = np.float32

    def bn(*a, **k):
        if out is not None:
            k.setdefault("out", out)
        return fn.batch_norm(*a, **k)

    ro = np.zeros_like(x)
    ro.flags.writeable = False
    rv_ro = rv.copy()
    rv_ro.flags.writeable = False
    return {
        "weight-shape": lambda: bn(x, rm, rv, np.ones(2, f32), training=True),
        "bias-shape": lambda: bn(x, rm, rv, None, np.ones(4, f32), training=True),
        "weight-int": lambda: bn(x, rm, rv, np.ones(3, int), training=True),
        "eps-negative": lambda: bn(x, rm, rv, training=True, eps=-1.0),
        "eps-nan": lambda: bn(x, rm, rv, training=True, eps=float("nan")),
        "eps-str": lambda: bn(x, rm, rv, training=True, eps="1e-5"),
        "out-shape": lambda: bn(x, rm, rv, training=True, out=np.zeros((4, 3, 4), f32)),
        "out-dtype": lambda: bn(x, rm, rv, training=True, out=np.zeros(x.shape)),
        "out-readonly": lambda: bn(x, rm, rv, training=True, out=ro),
        "out-list": lambda: bn(x, rm, rv, training=True, out=[0.0] * 60),
        "momentum-big": lambda: bn(x, rm, rv, training=True, momentum=1.5),
        "momentum-neg": lambda: bn(x, rm, rv, training=True, momentum=-0.1),
        "momentum-none": lambda: bn(x, rm, rv, training=True, momentum=None),
        "momentum-str": lambda: bn(x, rm, rv, training=True, momentum="0.1"),
        "threads": lambda: bn(x, rm, rv, training=True, num_threads="2"),
        "axis-out-of-range": lambda: bn(x, rm, rv, training=True, axis=3),
        "axis-tuple": lambda: bn(x, rm, rv, training=True, axis=(1,)),
        "training-int": lambda: bn(x, rm, rv, training=1),
        "one-value-per-channel": lambda: bn(x[:1, :, :1], rm, rv, training=True),
        "running-var-shape": lambda: bn(x, rm, np.ones(4, f32), training=True),
        "running-var-dtype": lambda: bn(x, rm, np.ones(3, np.float16), training=True),
        "running-var-readonly": lambda: bn(x, rm, rv_ro, training=True),
        "running-var-list": lambda: bn(x, rm, [1.0, 1.0, 1.0], training=True),
        "running-var-missing": lambda: bn(x, rm, None, training=True),
        "running-mean-missing": lambda: bn(x, None, rv, training=True),
        "x-int": lambda: bn(x.astype(np.int32), rm, rv, training=True),
        "x-longdouble": lambda: bn(x.astype(np.longdouble), rm, rv, training=True),
    }


BAD_NAMES = list(_bad_calls(np.zeros((4, 3, 5), np.float32), np.zeros(3, np.float32),
                            np.ones(3, np.float32)))


@pytest.mark.parametrize("name", BAD_NAMES)
def test_errors_leave_running_stats_and_out_untouched(name):
    x = make_array((4, 3, 5), np.float32, np.random.default_rng(0))
    rm = np.full(3, 0.5, np.float32)
    rv = np.full(3, 2.0, np.float32)
    with pytest.raises((ValueError, TypeError)):
        _bad_calls(x, rm, rv)[name]()
    assert np.all(rm == 0.5) and np.all(rv == 2.0), "running statistics were modified"
    # the same call with a valid out: out is not written either
    out = np.full_like(x, 7.0)
    with pytest.raises((ValueError, TypeError)):
        _bad_calls(x, rm, rv, out=out)[name]()
    assert np.all(out == 7.0), "out was written"
    assert np.all(rm == 0.5) and np.all(rv == 2.0), "running statistics were modified"
    # and the same arrays work in a valid call
    fn.batch_norm(x, rm, rv, training=True, out=out)
    assert not np.all(rm == 0.5) and not np.all(out == 7.0)


def test_error_messages():
    x = make_array((4, 3, 5), np.float32, np.random.default_rng(0))
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    with pytest.raises(ValueError, match=re.escape(
            "x must have more than 1 value per channel when training, got shape (1, 3)")):
        fn.batch_norm(np.ones((1, 3), np.float32), rm, rv, training=True)
    with pytest.raises(ValueError, match=re.escape(
            "x must have more than 1 value per channel when training, got shape (1, 3, 1, 1)")):
        fn.batch_norm(np.ones((1, 3, 1, 1), np.float32), None, None, training=True)
    # one value per channel is fine in eval
    assert fn.batch_norm(np.ones((1, 3), np.float32), rm, rv).shape == (1, 3)
    with pytest.raises(ValueError, match="running_mean"):
        fn.batch_norm(x, rm[:2], rv, training=True)
    with pytest.raises(TypeError, match="running_mean"):  # float64 would be kept as it is
        fn.batch_norm(x, rm.astype(np.float16), rv, training=True)
    with pytest.raises(ValueError, match="running_var"):
        ro = rv.copy()
        ro.flags.writeable = False
        fn.batch_norm(x, rm, ro, training=True)
    # eval needs both running statistics
    with pytest.raises(ValueError, match="running"):
        fn.batch_norm(x, None, None)
    with pytest.raises(ValueError, match="must be given together"):
        fn.batch_norm(x, rm, None)
    with pytest.raises(ValueError, match="must be given together"):
        fn.batch_norm(x, None, rv, training=False)
    with pytest.raises(ValueError, match="must be given together"):
        fn.batch_norm(x, rm, None, training=True)
    with pytest.raises(TypeError, match="momentum"):
        fn.batch_norm(x, rm, rv, training=True, momentum=None)


def test_batch_axis_is_not_a_channel_axis():
    """axis 0 is the batch, as in group_norm, instance_norm and the layers: refused
    (the message shows x's shape), in training, eval and the backward; a 1-d x has
    no channel axis."""
    x = make_array((4, 3, 5), np.float32, np.random.default_rng(0))
    msg = re.escape("axis is the channel axis and cannot be the batch axis 0 "
                    "(x has shape (4, 3, 5))")
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    for axis in (0, -3):
        with pytest.raises(ValueError, match=msg):
            fn.batch_norm(x, None, None, training=True, axis=axis)
        with pytest.raises(ValueError, match=msg):
            fn.batch_norm(x, rm, rv, training=True, axis=axis)
        with pytest.raises(ValueError, match=msg):
            fn.batch_norm(x, rm, rv, training=False, axis=axis)
        assert np.all(rm == 0) and np.all(rv == 1)
        for training in (True, False):
            with pytest.raises(ValueError, match=msg):
                fn.batch_norm_backward(x, x, rm, rv, training=training, axis=axis)
    with pytest.raises(ValueError, match="batch axis and a channel axis"):
        fn.batch_norm(np.ones(5, np.float32), None, None, training=True)
    with pytest.raises(ValueError, match="batch axis and a channel axis"):
        fn.batch_norm_backward(np.ones(5, np.float32), np.ones(5, np.float32),
                               np.zeros(5, np.float32), np.ones(5, np.float32))


def test_backward_bad_arguments():
    x = make_array((4, 3, 5), np.float32, np.random.default_rng(0))
    dy = np.ones_like(x)
    _, m, r = fn.batch_norm(x, None, None, training=True, return_stats=True)
    with pytest.raises(ValueError, match="mean"):
        fn.batch_norm_backward(dy, x, m[:2], r, training=True)
    with pytest.raises(ValueError, match="rstd"):
        fn.batch_norm_backward(dy, x, m, r[:2], training=False)
    with pytest.raises(ValueError, match="dy"):
        fn.batch_norm_backward(dy[:2], x, m, r, training=True)
    with pytest.raises(TypeError, match="dy"):
        fn.batch_norm_backward(dy.astype(np.float64), x, m, r, training=True)
    with pytest.raises(ValueError, match="weight"):
        fn.batch_norm_backward(dy, x, m, r, np.ones(4, np.float32), training=True)
    with pytest.raises(ValueError, match="bias"):
        fn.batch_norm_backward(dy, x, m, r, None, np.ones(4, np.float32))
    with pytest.raises(TypeError, match="mean"):
        fn.batch_norm_backward(dy, x, None, r)


# --------------------------------------------------------------------------
# Zero-size arrays
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((0, 3, 4), 1), ((2, 3, 0), 1), ((0, 3), 1),
                                        ((0, 4, 3), -1)], ids=["N0", "L0", "2d-N0", "nlc-N0"])
def test_zero_size_eval(isa, dtype, shape, axis):
    x = np.zeros(shape, dtype)
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    y, m, r = fn.batch_norm(x, rm, rv, axis=axis, return_stats=True)
    assert y.shape == shape and m.shape == (3,)
    dx, dw, db = fn.batch_norm_backward(x, x, m, r, np.ones(3, dtype), np.ones(3, dtype),
                                        axis=axis)
    assert dx.shape == shape
    assert np.array_equal(dw, np.zeros(3)) and np.array_equal(db, np.zeros(3))


def test_zero_size_backward_training(isa, dtype):
    x = np.zeros((0, 3, 4), dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m, r = np.full(3, np.nan, dtype), np.full(3, np.nan, dtype)
        dx, dw, db = fn.batch_norm_backward(x, x, m, r, np.ones(3, dtype), np.ones(3, dtype),
                                            training=True)
    assert dx.shape == x.shape
    assert np.array_equal(dw, np.zeros(3)) and np.array_equal(db, np.zeros(3))


@pytest.mark.parametrize("shape", [(0, 3, 4), (2, 3, 0), (2, 0, 4)], ids=["N0", "L0", "C0"])
def test_zero_size_training(shape):
    x = np.zeros(shape, np.float32)
    C = shape[1]
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    y = fn.batch_norm(x, rm, rv, training=True)
    assert y.shape == shape
    assert np.all(rm == 0) and np.all(rv == 1)


# --------------------------------------------------------------------------
# One path: the common inference call and its other spellings
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3), (4, 5, 6), (2, 3, 4, 5), (1, 7, 1, 1)])
@pytest.mark.parametrize("affine", AFFINE)
@pytest.mark.parametrize("stats64", [False, True])
def test_eval_common_call_and_its_other_spellings_agree(isa, dtype, shape, affine, stats64,
                                                        rng):
    """The common inference call gives the bits of the same call spelt
    otherwise (a NumPy integer axis, a NumPy bool training) and writes out in
    place (x itself too)."""
    x = make_array(shape, dtype, rng)
    C = shape[1]
    rm, rv = _running(C, dtype, rng)
    if stats64:
        rm, rv = rm.astype(np.float64), rv.astype(np.float64)
    w, b = random_params((C,), dtype, rng, *affine)
    for rs in (False, True):
        got = fn.batch_norm(x, rm, rv, w, b, return_stats=rs)
        want = fn.batch_norm(x, rm, rv, w, b, axis=np.int64(1), training=np.bool_(False),
                             return_stats=rs)
        for g, e in zip(got if rs else (got,), want if rs else (want,)):
            assert g.dtype == e.dtype and np.array_equal(g, e, equal_nan=True)
    out = np.empty_like(x)
    assert fn.batch_norm(x, rm, rv, w, b, out=out) is out
    want = fn.batch_norm(x, rm, rv, w, b)
    assert np.array_equal(out, want, equal_nan=True)
    xc = x.copy()
    assert fn.batch_norm(xc, rm, rv, w, b, out=xc) is xc
    assert np.array_equal(xc, want, equal_nan=True)


def test_eval_out_sharing_memory(rng):
    """An out that shares bytes with x (not x itself), with weight or bias, or
    with the running statistics is written after they are read: the results
    are those of separate arrays."""
    buf = make_array((5, 3, 4), np.float32, rng)
    rm, rv = _running(3, np.float32, rng)
    w = np.ones(3, np.float32)
    x, out = buf[:4], buf[1:]
    want = fn.batch_norm(x.copy(), rm, rv, w)
    assert np.array_equal(fn.batch_norm(x, rm, rv, w, out=out), want)
    x = make_array((4, 3, 4), np.float32, rng)
    out = np.zeros_like(x)
    flat = out.reshape(-1)
    flat[3:6] = 1.0
    assert np.array_equal(fn.batch_norm(x, rm, rv, flat[3:6], out=out),
                          fn.batch_norm(x, rm, rv, np.ones(3, np.float32)))
    out = np.zeros_like(x)
    flat = out.reshape(-1)
    sm, sv = flat[:3], flat[3:6]
    sm[...], sv[...] = rm, rv
    want = fn.batch_norm(x, rm, rv, w, return_stats=True)
    got = fn.batch_norm(x, sm, sv, w, out=out, return_stats=True)
    assert got[0] is out
    for g, e in zip(got, want):
        assert np.array_equal(g, e)


def test_eval_other_layouts_give_the_bits_of_the_common_call(rng):
    """Inputs, outs, parameters and running statistics of other layouts and
    types are read and written as the common call's arrays."""
    x = make_array((4, 3, 5), np.float32, rng)
    rm, rv = _running(3, np.float32, rng)
    w = rng.standard_normal(3).astype(np.float32)
    want = fn.batch_norm(x, rm, rv, w)
    for out in (np.asfortranarray(np.zeros_like(x)), np.zeros_like(x)[:, :, ::-1]):
        assert fn.batch_norm(x, rm, rv, w, out=out) is out and np.array_equal(out, want)
    for same_x in (np.asfortranarray(x), x.astype(">f4")):
        assert np.array_equal(fn.batch_norm(same_x, rm, rv, w), want)
    for same_w in (np.zeros(6, np.float32)[::2] + w, w.tolist(), w.astype(">f4")):
        assert np.array_equal(fn.batch_norm(x, rm, rv, same_w), want)
    ro = rv.copy()
    ro.flags.writeable = False  # read-only running statistics are refused, even in eval
    with pytest.raises(ValueError, match="running_var"):
        fn.batch_norm(x, rm, ro, w)
    with pytest.raises(ValueError, match="num_threads"):
        fn.batch_norm(x, rm, rv, w, num_threads=0)


def test_eval_returns_the_running_mean_as_it_is(rng):
    """The eval mean is the running mean's own bits (a signalling NaN stays
    one), through the fast path and the general one."""
    x = make_array((2, 4, 3), np.float32, rng)
    rm = np.zeros(4, np.float32)
    rm.view(np.uint32)[0] = 0x7F800001
    rv = np.ones(4, np.float32)
    for axis in (1, np.int64(1)):
        mean = fn.batch_norm(x, rm, rv, axis=axis, return_stats=True)[1]
        assert np.array_equal(mean.view(np.uint32), rm.view(np.uint32))
