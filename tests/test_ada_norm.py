"""Adaptive LayerNorm (AdaLN, diffusion transformers): fastnorm.ada_layer_norm
and ada_layer_norm_backward, against the float64 reference, central finite
differences and PyTorch; out= (in place, strided, overlapping a parameter),
memory layouts, zero-size and adversarial rows, bad input, and determinism
across thread counts. Both kernel tables, both dtypes."""
import warnings

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import (
    assert_close,
    assert_rel_close,
    make_array,
    sum_scale,
)
from params import ROW_LAYOUTS, assert_grads_fd

# (N, T, D); (N, D) is T = 1; (N, ..., D) counts every middle axis as T
SHAPES = [(2, 5, 7), (3, 64, 96), (4, 9), (2, 3, 4, 16)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


def pshape(shape):
    """shift and scale: one row of D per sample."""
    return (shape[0], shape[-1])


def middle(shape):
    """The T axes, summed over by dshift and dscale."""
    return tuple(range(1, len(shape) - 1))


def inputs(shape, dtype, rng):
    """x with an offset and scale of its own; shift, scale of DiT-like size."""
    x = make_array(shape, dtype, rng)
    shift = (0.5 * rng.standard_normal(pshape(shape))).astype(dtype)
    scale = (0.5 * rng.standard_normal(pshape(shape))).astype(dtype)
    return x, shift, scale


def grads_scales(dy, x, mean, rstd, dtype):
    """The scales of dshift's and dscale's rounding: the largest sums of |terms|."""
    dy64 = np.asarray(dy, dtype=np.float64)
    xhat = (x.astype(np.float64) - mean[..., None]) * rstd[..., None]
    mid = middle(x.shape)
    return sum_scale(dy64, mid), sum_scale(dy64 * xhat, mid)


def check_backward(dx, dsh, dsc, dy, x, mean, rstd, scale, dtype, what=""):
    dxe, dshe, dsce = ref.ada_layer_norm_backward(dy, x, mean, rstd, scale)
    s_sh, s_sc = grads_scales(dy, x, mean, rstd, dtype)
    assert dx.dtype == dsh.dtype == dsc.dtype == dtype
    assert dsh.shape == dsc.shape == pshape(x.shape)
    assert_close(dx, dxe, dtype, factor=8, what=f"dx {what}")
    assert_close(dsh, dshe, dtype, factor=4, scale=s_sh, what=f"dshift {what}")
    assert_close(dsc, dsce, dtype, factor=8, scale=s_sc, what=f"dscale {what}")


# --------------------------------------------------------------------------
# Forward and backward against the float64 reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_forward_matches_reference(isa, dtype, shape, rng):
    x, sh, sc = inputs(shape, dtype, rng)
    y, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    ye, me, re = ref.ada_layer_norm(x, sh, sc)
    assert y.shape == shape and y.dtype == dtype
    assert mean.shape == rstd.shape == shape[:-1]
    assert mean.dtype == rstd.dtype == dtype
    assert_close(y, ye, dtype, factor=2, what="y")
    assert_close(mean, me, dtype, what="mean")
    assert_close(rstd, re, dtype, what="rstd")
    # without statistics: y alone, the same bits
    y2 = fn.ada_layer_norm(x, sh, sc)
    assert isinstance(y2, np.ndarray) and np.array_equal(y2, y)
    # eps is passed through
    y3 = fn.ada_layer_norm(x, sh, sc, eps=0.25)
    assert_close(y3, ref.ada_layer_norm(x, sh, sc, eps=0.25)[0], dtype, factor=2, what="eps")


@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_backward_matches_reference(isa, dtype, shape, rng):
    x, sh, sc = inputs(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    _, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    dx, dsh, dsc = fn.ada_layer_norm_backward(dy, x, mean, rstd, sc)
    assert dx.shape == shape
    check_backward(dx, dsh, dsc, dy, x, mean, rstd, sc, dtype, what=str(shape))


def test_samples_use_their_own_parameters(isa, dtype, rng):
    """Sample n is LayerNorm of its rows with weight 1 + scale[n] and bias shift[n]."""
    x, sh, sc = inputs((5, 11, 24), dtype, rng)
    y = fn.ada_layer_norm(x, sh, sc)
    for n in range(5):
        yn = fn.layer_norm(x[n], (1 + sc[n]).astype(dtype), sh[n], eps=1e-6)
        assert_close(y[n], yn, dtype, factor=2, what=f"sample {n}")


def test_large_mean_rows(isa, rng):
    """Rows offset by 1e4 .. 1e6 in float32: no cancellation in the variance."""
    dtype = np.dtype(np.float32)
    offsets = np.array([1e4, -3e4, 1e5, 5e5, -1e6, 1e6])
    x = (offsets[None, :, None] + rng.standard_normal((3, 6, 200))).astype(dtype)
    sh = rng.standard_normal((3, 200)).astype(dtype)
    sc = rng.standard_normal((3, 200)).astype(dtype)
    y, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    ye, me, re = ref.ada_layer_norm(x, sh, sc)
    assert_rel_close(y, ye, dtype, what="y")
    assert_rel_close(mean, me, dtype, what="mean")
    assert_rel_close(rstd, re, dtype, factor=10, what="rstd")
    dy = rng.standard_normal(x.shape).astype(dtype)
    dx, dsh, dsc = fn.ada_layer_norm_backward(dy, x, mean, rstd, sc)
    dxe, dshe, dsce = ref.ada_layer_norm_backward(dy, x, mean, rstd, sc)
    assert_rel_close(dx, dxe, dtype, factor=20, what="dx")
    assert_close(dsc, dsce, dtype, factor=8, scale=grads_scales(dy, x, mean, rstd, dtype)[1],
                 what="dscale")


# --------------------------------------------------------------------------
# Central finite differences (float64)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 6), (2, 2, 2, 4)], ids=str)
def test_finite_differences(isa, shape, rng):
    dt = np.float64
    x, sh, sc = inputs(shape, dt, rng)
    dy = make_array(shape, dt, rng, loc=0.0, scale=1.0)
    _, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    dx, dsh, dsc = fn.ada_layer_norm_backward(dy, x, mean, rstd, sc)

    def loss(xa, sha, sca):
        return float(np.sum(fn.ada_layer_norm(xa, sha, sca) * dy))

    assert_grads_fd(loss, (x, sh, sc), (dx, dsh, dsc), ("dx", "dshift", "dscale"), tol=1e-6)


# --------------------------------------------------------------------------
# out=
# --------------------------------------------------------------------------

def test_out_contiguous_and_in_place(isa, dtype, rng):
    x, sh, sc = inputs((3, 10, 40), dtype, rng)
    want, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    out = np.full_like(x, 7.0)
    y = fn.ada_layer_norm(x, sh, sc, out=out)
    assert y is out and np.array_equal(out, want)
    y, m2, r2 = fn.ada_layer_norm(x, sh, sc, out=out, return_stats=True)
    assert y is out and np.array_equal(m2, mean) and np.array_equal(r2, rstd)
    # out=x: x overwritten with y
    xc = x.copy()
    y, m3, r3 = fn.ada_layer_norm(xc, sh, sc, out=xc, return_stats=True)
    assert y is xc and np.array_equal(xc, want)
    assert np.array_equal(m3, mean) and np.array_equal(r3, rstd)


@pytest.mark.parametrize("layout", ["sliced", "F", "negstride", "padded", "unaligned", "rowsrev"])
def test_out_non_contiguous(isa, dtype, layout, rng):
    x, sh, sc = inputs((3, 10, 40), dtype, rng)
    want = fn.ada_layer_norm(x, sh, sc)
    out = ROW_LAYOUTS[layout](np.full_like(x, 7.0))
    y = fn.ada_layer_norm(x, sh, sc, out=out)
    assert y is out and np.array_equal(out, want), layout
    # in place on a non-contiguous x
    xl = ROW_LAYOUTS[layout](x)
    if xl.dtype.isnative:
        y = fn.ada_layer_norm(xl, sh, sc, out=xl)
        assert y is xl
        assert_close(xl, ref.ada_layer_norm(x, sh, sc)[0], dtype, factor=2, what=layout)


@pytest.mark.parametrize("shape", [(2, 6, 8), (3, 8), (2, 1, 8)], ids=str)
@pytest.mark.parametrize("which", ["shift", "scale", "both"])
def test_out_overlapping_parameters(isa, dtype, shape, which, rng):
    """shift / scale living in out's memory (out a fresh buffer, or out=x) are
    read as they were before the call ("both": one array passed as both)."""
    x, sh, sc = inputs(shape, dtype, rng)
    if which == "both":
        sc = sh
    n, d = pshape(shape)
    for offset in sorted({0, min(3, x.size - n * d), x.size - n * d}):
        for in_place in (False, True):
            out = x.copy() if in_place else np.zeros_like(x)
            view = out.reshape(-1)[offset:offset + n * d].reshape(n, d)
            view[...] = sc if which == "scale" else sh
            xin = out if in_place else x
            exp = ref.ada_layer_norm(xin.copy(), sh, sc)[0]
            shift = sh if which == "scale" else view
            scale = view if which != "shift" else sc
            y = fn.ada_layer_norm(xin, shift, scale, out=out)
            assert y is out
            assert_close(out, exp, dtype, factor=2,
                         what=f"{which} at {offset}, in place {in_place}")


def test_out_partially_overlapping_x(isa, dtype, rng):
    """out one row before or after x in the same buffer: x is read before it is overwritten."""
    x, sh, sc = inputs((3, 5, 24), dtype, rng)
    want = ref.ada_layer_norm(x, sh, sc)[0]
    for lead in (True, False):
        buf = np.zeros(x.size + 24, dtype)
        xv = (buf[24:] if lead else buf[:-24]).reshape(x.shape)
        ov = (buf[:-24] if lead else buf[24:]).reshape(x.shape)
        xv[...] = x
        assert fn.ada_layer_norm(xv, sh, sc, out=ov) is ov
        assert_close(ov, want, dtype, factor=2, what=f"out {'before' if lead else 'after'} x")


# --------------------------------------------------------------------------
# Layouts of x, dy and the parameters
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(ROW_LAYOUTS))
def test_layouts(isa, dtype, layout, rng):
    shape = (3, 5, 24)
    x, sh, sc = inputs(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    f = ROW_LAYOUTS[layout]
    xl, dyl, shl, scl = f(x), f(dy), f(sh), f(sc)
    ye, me, re = ref.ada_layer_norm(x, sh, sc)
    y, mean, rstd = fn.ada_layer_norm(xl, shl, scl, return_stats=True)
    assert y.dtype == dtype or (layout == "byteswapped" and y.dtype == xl.dtype.newbyteorder("="))
    assert_close(y, ye, dtype, factor=2, what=f"y {layout}")
    assert_close(mean, me, dtype, what=f"mean {layout}")
    assert_close(rstd, re, dtype, what=f"rstd {layout}")
    # the parameters alone in the layout (x contiguous): the same bits as all contiguous
    assert np.array_equal(fn.ada_layer_norm(x, shl, scl), fn.ada_layer_norm(x, sh, sc))
    # backward with x, dy, stats and scale in the layout
    ml, rl = f(mean.astype(dtype)), f(rstd.astype(dtype))
    dx, dsh, dsc = fn.ada_layer_norm_backward(dyl, xl, ml, rl, scl)
    check_backward(dx, dsh, dsc, dy, x, mean.astype(dtype), rstd.astype(dtype), sc,
                   dtype, what=layout)


def test_negative_strides_and_views(isa, dtype, rng):
    """Reversed samples, reversed T, every other T row, a (N, T, D) view of a bigger array."""
    big, bsh, bsc = inputs((6, 12, 40), dtype, rng)
    cases = {
        "samples reversed": (big[::-1], bsh[::-1], bsc[::-1]),
        "T reversed": (big[:, ::-1], bsh, bsc),
        "T strided": (big[:, ::3], bsh, bsc),
        "samples strided": (big[::2], bsh[::2], bsc[1::2]),
        "D sliced": (big[:, :, 3:35], bsh[:, 3:35], bsc[:, ::-1][:, :32]),
        "N/T swapped": (big.transpose(1, 0, 2)[:6], bsh, bsc),
        "D reversed": (big[..., ::-1], bsh[:, ::-1], bsc),
    }
    for label, (x, sh, sc) in cases.items():
        y, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
        ye, me, re = ref.ada_layer_norm(x, sh, sc)
        assert_close(y, ye, dtype, factor=2, what=f"y {label}")
        assert_close(rstd, re, dtype, what=f"rstd {label}")
        dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
        dx, dsh, dsc = fn.ada_layer_norm_backward(dy[::-1][::-1], x, mean, rstd, sc)
        check_backward(dx, dsh, dsc, dy, x, mean, rstd, sc, dtype, what=label)


def test_broadcast_inputs(isa, dtype, rng):
    """Zero strides (np.broadcast_to) over N, over T, over everything; dy and scale too."""
    x, sh, sc = inputs((3, 5, 24), dtype, rng)
    dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    for label, idx in (("N", np.s_[:1]), ("T", np.s_[:, :1]), ("all", np.s_[:1, :1])):
        xb = np.broadcast_to(x[idx], x.shape)
        dyb = np.broadcast_to(dy[idx], x.shape)
        scb = np.broadcast_to(sc[:1], sc.shape)
        y, mean, rstd = fn.ada_layer_norm(xb, sh, scb, return_stats=True)
        assert_close(y, ref.ada_layer_norm(xb, sh, scb)[0], dtype, factor=2, what=label)
        dx, dsh, dsc = fn.ada_layer_norm_backward(dyb, xb, mean, rstd, scb)
        check_backward(dx, dsh, dsc, dyb, xb, mean, rstd, scb, dtype, what=label)


def test_mixed_layouts_backward(isa, dtype, rng):
    """dy, x and the statistics each in a layout of their own."""
    x, sh, sc = inputs((4, 6, 20), dtype, rng)
    dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    _, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    names = list(ROW_LAYOUTS)
    for i, name in enumerate(names):
        fx, fdy = ROW_LAYOUTS[name], ROW_LAYOUTS[names[(i + 3) % len(names)]]
        fst = ROW_LAYOUTS[names[(i + 5) % len(names)]]
        dx, dsh, dsc = fn.ada_layer_norm_backward(fdy(dy), fx(x), fst(mean), fst(rstd),
                                                  ROW_LAYOUTS[names[(i + 1) % len(names)]](sc))
        check_backward(dx, dsh, dsc, dy, x, mean, rstd, sc, dtype, what=name)


def test_parameter_dtypes(isa, rng):
    """shift and scale of another float dtype are converted to x's dtype."""
    x, sh, sc = inputs((2, 4, 16), np.float32, rng)
    sh64, sc64 = sh.astype(np.float64), sc.astype(np.float64)
    y = fn.ada_layer_norm(x, sh64, sc64)
    assert y.dtype == np.float32
    assert np.array_equal(y, fn.ada_layer_norm(x, sh, sc))
    # lists are arrays too
    assert np.array_equal(fn.ada_layer_norm(x, sh.tolist(), sc.tolist()), y)
    _, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    dx, dsh, dsc = fn.ada_layer_norm_backward(x, x, mean, rstd, sc)
    # dshift and dscale in scale's floating dtype, with the values of the
    # computation in x's dtype; dx in x's dtype
    g = fn.ada_layer_norm_backward(x, x, mean, rstd, sc64)
    assert g[0].dtype == np.float32 and g[1].dtype == g[2].dtype == np.float64
    assert np.array_equal(g[0], dx)
    assert np.array_equal(g[1], dsh.astype(np.float64))
    assert np.array_equal(g[2], dsc.astype(np.float64))
    # a byte-swapped scale: its dtype in native byte order
    g = fn.ada_layer_norm_backward(x, x, mean, rstd, sc.astype(sc.dtype.newbyteorder()))
    assert g[1].dtype == g[2].dtype == np.float32
    assert np.array_equal(g[1], dsh) and np.array_equal(g[2], dsc)
    # a list has no dtype of its own: the computing dtype
    g = fn.ada_layer_norm_backward(x, x, mean, rstd, sc.tolist())
    assert all(a.dtype == np.float32 for a in g)
    assert np.array_equal(g[1], dsh) and np.array_equal(g[2], dsc)


def test_16bit_parameter_gradients(isa, rng):
    """16-bit x computes in float32: dshift and dscale are float32 sums, rounded
    once to a 16-bit scale's dtype; float32 for a float32 scale or a list."""
    x = make_array((2, 4, 16), np.float16, rng)
    sh = (0.5 * rng.standard_normal((2, 16))).astype(np.float16)
    sc = (0.5 * rng.standard_normal((2, 16))).astype(np.float16)
    _, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    dx, dsh, dsc = fn.ada_layer_norm_backward(x, x, mean, rstd, sc.astype(np.float32))
    assert dx.dtype == np.float16 and dsh.dtype == dsc.dtype == np.float32
    g = fn.ada_layer_norm_backward(x, x, mean, rstd, sc)
    assert g[0].dtype == g[1].dtype == g[2].dtype == np.float16
    assert np.array_equal(g[0], dx)
    assert np.array_equal(g[1], dsh.astype(np.float16))
    assert np.array_equal(g[2], dsc.astype(np.float16))
    g = fn.ada_layer_norm_backward(x, x, mean, rstd, sc.tolist())
    assert g[1].dtype == g[2].dtype == np.float32


# --------------------------------------------------------------------------
# Zero-size and adversarial rows
# --------------------------------------------------------------------------

ZERO_SHAPES = [(0, 5, 7), (3, 0, 7), (0, 7), (0, 0, 7), (2, 0, 3, 4), (2, 3, 0, 4)]


@pytest.mark.parametrize("shape", ZERO_SHAPES, ids=str)
def test_zero_size(isa, dtype, shape):
    x = np.zeros(shape, dtype)
    sh = np.ones(pshape(shape), dtype)
    sc = np.ones(pshape(shape), dtype)
    y, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    assert y.shape == shape and y.dtype == dtype
    assert mean.shape == rstd.shape == shape[:-1]
    out = np.empty_like(x)
    assert fn.ada_layer_norm(x, sh, sc, out=out) is out
    # dshift and dscale over no rows: zero (not left uninitialized)
    for _ in range(3):  # after freeing dirty memory: np.empty would hand it back
        np.full(4 * sh.size + 1, 123.0, dtype)
        dx, dsh, dsc = fn.ada_layer_norm_backward(np.ones_like(x), x, mean, rstd, sc)
        assert dx.shape == shape
        assert dsh.shape == dsc.shape == pshape(shape)
        assert np.array_equal(dsh, np.zeros(pshape(shape))), "dshift over no rows"
        assert np.array_equal(dsc, np.zeros(pshape(shape))), "dscale over no rows"


def test_nan_stays_in_its_row(isa, dtype, rng):
    x, sh, sc = inputs((3, 7, 33), dtype, rng)
    dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    y0, m0, r0 = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    g0 = fn.ada_layer_norm_backward(dy, x, m0, r0, sc)
    xn = x.copy()
    xn[1, 4, 10] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        y, m, r = fn.ada_layer_norm(xn, sh, sc, return_stats=True)
        dx, dsh, dsc = fn.ada_layer_norm_backward(dy, xn, m, r, sc)
    bad = np.zeros(x.shape[:-1], bool)
    bad[1, 4] = True
    assert np.all(np.isnan(y[bad])) and np.isnan(m[1, 4]) and np.isnan(r[1, 4])
    keep = ~bad
    assert np.array_equal(y[keep], y0[keep]), "a NaN leaked into another row of y"
    assert np.array_equal(m[keep], m0[keep]) and np.array_equal(r[keep], r0[keep])
    assert np.all(np.isnan(dx[bad]))
    assert np.array_equal(dx[keep], g0[0][keep]), "a NaN leaked into another row of dx"
    # dshift does not see x; dscale of the other samples is untouched
    assert np.array_equal(dsh, g0[1])
    assert np.array_equal(dsc[[0, 2]], g0[2][[0, 2]])
    assert np.all(np.isnan(dsc[1]))


def test_constant_rows(isa, dtype):
    """A constant row normalizes to 0: y = shift, and no NaN or inf anywhere."""
    x = np.full((2, 3, 16), 5.0, dtype)
    sh = np.arange(32, dtype=dtype).reshape(2, 16)
    sc = np.full((2, 16), 2.0, dtype)
    y, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    assert np.array_equal(y, np.broadcast_to(sh[:, None, :], x.shape))
    dx, dsh, dsc = fn.ada_layer_norm_backward(np.ones_like(x), x, mean, rstd, sc)
    assert np.all(np.isfinite(dx)) and np.all(dsh == 3) and np.all(dsc == 0)


# --------------------------------------------------------------------------
# Bad input: the argument is named, and nothing is written
# --------------------------------------------------------------------------

def test_bad_input_names_the_argument_and_writes_nothing(dtype, rng):
    x, sh, sc = inputs((4, 6, 40), dtype, rng)
    other = np.float64 if dtype == np.float32 else np.float32
    ro = np.zeros_like(x)
    ro.flags.writeable = False
    bad = [
        ("x 1-d", ValueError, "x", dict(x=np.zeros(40, dtype))),
        ("x int", TypeError, "x", dict(x=np.zeros(x.shape, np.int32))),
        ("x None", TypeError, "x", dict(x=None)),
        ("shift wrong D", ValueError, "shift", dict(shift=sh[:, :-1])),
        ("shift wrong N", ValueError, "shift", dict(shift=sh[:-1])),
        ("shift 1-d", ValueError, "shift", dict(shift=sh[0])),
        ("shift 3-d", ValueError, "shift", dict(shift=sh[:, None, :])),
        ("shift int", TypeError, "shift", dict(shift=sh.astype(np.int64))),
        ("shift None", TypeError, "shift", dict(shift=None)),
        ("scale wrong D", ValueError, "scale", dict(scale=sc[:, :5])),
        ("scale transposed", ValueError, "scale", dict(scale=np.zeros((40, 4), dtype))),
        ("scale int", TypeError, "scale", dict(scale=sc.astype(np.int32))),
        ("scale None", TypeError, "scale", dict(scale=None)),
        ("eps negative", ValueError, "eps", dict(eps=-1.0)),
        ("eps nan", ValueError, "eps", dict(eps=float("nan"))),
        ("num_threads zero", ValueError, "num_threads", dict(num_threads=0)),
        ("out wrong shape", ValueError, "out", dict(out=np.zeros((4, 6, 41), dtype))),
        ("out wrong dtype", TypeError, "out", dict(out=np.zeros(x.shape, other))),
        ("out list", TypeError, "out", dict(out=np.zeros(x.shape, dtype).tolist())),
        ("out read-only", ValueError, "out", dict(out=ro)),
    ]
    snapshot = [a.copy() for a in (x, sh, sc)]
    for label, exc, name, kw in bad:
        args = dict(x=x, shift=sh, scale=sc, out=np.full_like(x, 7.0))
        args.update(kw)
        out = args["out"]
        with pytest.raises(exc, match=rf"\b{name}\b") as info:
            fn.ada_layer_norm(args.pop("x"), args.pop("shift"), args.pop("scale"), **args)
        assert str(info.value).startswith(name), f"{label}: {info.value}"
        if "out" not in kw:
            assert np.all(out == 7.0), f"{label}: out was written"
            # in place: x survives
            xc = x.copy()
            a2 = dict(x=xc, shift=sh, scale=sc)
            a2.update({k: v for k, v in kw.items() if k != "x"})
            if "x" not in kw:
                with pytest.raises(exc, match=rf"\b{name}\b"):
                    fn.ada_layer_norm(a2.pop("x"), a2.pop("shift"), a2.pop("scale"),
                                      out=xc, **a2)
                assert np.array_equal(xc, x), f"{label}: x (out=x) was written"
        for a, k in zip((x, sh, sc), snapshot):
            assert np.array_equal(a, k), f"{label}: an input was written"


def test_bad_backward_input(dtype, rng):
    x, sh, sc = inputs((4, 6, 40), dtype, rng)
    dy = make_array(x.shape, dtype, rng)
    _, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    other = np.float64 if dtype == np.float32 else np.float32
    snapshot = [a.copy() for a in (dy, x, mean, rstd, sc)]
    bad = [
        ("dy wrong shape", ValueError, "dy", dict(dy=dy[:, :5])),
        ("dy wrong dtype", TypeError, "dy", dict(dy=dy.astype(other))),
        ("dy None", TypeError, "dy", dict(dy=None)),
        ("x 1-d", ValueError, "x", dict(x=x[0, 0], dy=dy[0, 0])),
        ("x int", TypeError, "x", dict(x=x.astype(np.int64))),
        ("mean wrong shape", ValueError, "mean", dict(mean=mean[:3])),
        ("mean of (N, D)", ValueError, "mean", dict(mean=mean[:, 0])),
        ("mean int", TypeError, "mean", dict(mean=mean.astype(np.int32))),
        ("rstd wrong shape", ValueError, "rstd", dict(rstd=rstd[:, :2])),
        ("rstd None", TypeError, "rstd", dict(rstd=None)),
        ("scale wrong shape", ValueError, "scale", dict(scale=sc[:, :5])),
        ("scale None", TypeError, "scale", dict(scale=None)),
        ("num_threads zero", ValueError, "num_threads", dict(num_threads=0)),
    ]
    for label, exc, name, kw in bad:
        args = dict(dy=dy, x=x, mean=mean, rstd=rstd, scale=sc)
        args.update(kw)
        with pytest.raises(exc, match=rf"\b{name}\b") as info:
            fn.ada_layer_norm_backward(args.pop("dy"), args.pop("x"), args.pop("mean"),
                                       args.pop("rstd"), args.pop("scale"), **args)
        assert str(info.value).startswith(name), f"{label}: {info.value}"
        for a, k in zip((dy, x, mean, rstd, sc), snapshot):
            assert np.array_equal(a, k), f"{label}: an input was written"


def test_keyword_only_arguments(rng):
    x, sh, sc = inputs((2, 3, 8), np.float64, rng)
    with pytest.raises(TypeError):
        fn.ada_layer_norm(x, sh, sc, 1e-5)  # eps is keyword-only
    _, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    with pytest.raises(TypeError):
        fn.ada_layer_norm_backward(x, x, mean, rstd, sc, 2)  # num_threads is keyword-only


# --------------------------------------------------------------------------
# Threads: bitwise identical for any thread count
# --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(8, 256, 384), (2048, 384)], ids=str)
def test_bitwise_identical_for_any_thread_count(isa, shape):
    rng = np.random.default_rng(31)
    dt = np.float32
    x, sh, sc = inputs(shape, dt, rng)
    dy = make_array(shape, dt, rng, loc=0.0, scale=1.0)
    results = []
    for nt in (1, 2, 3, 4):
        y, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True, num_threads=nt)
        xi = x.copy()
        fn.ada_layer_norm(xi, sh, sc, out=xi, num_threads=nt)
        g = fn.ada_layer_norm_backward(dy, x, mean, rstd, sc, num_threads=nt)
        results.append((nt, [y, mean, rstd, xi] + list(g)))
    names = ["y", "mean", "rstd", "y in place", "dx", "dshift", "dscale"]
    first = results[0][1]
    for nt, res in results[1:]:
        for name, a, a1 in zip(names, res, first):
            assert np.array_equal(a, a1), f"{name} differs between 1 and {nt} threads"
    assert np.array_equal(first[0], first[3])
    assert_close(first[0], ref.ada_layer_norm(x, sh, sc)[0], dt, factor=2)
    check_backward(*first[4:], dy, x, first[1], first[2], sc, dt, what="threads")


# --------------------------------------------------------------------------
# PyTorch parity
# --------------------------------------------------------------------------

TORCH_SHAPES = [(2, 5, 7), (3, 16, 64), (4, 9), (2, 3, 4, 16)]


@pytest.mark.torch
@pytest.mark.parametrize("shape", TORCH_SHAPES, ids=str)
def test_matches_torch(isa, dtype, shape, rng):
    """y = F.layer_norm(x, (D,), eps=1e-6) * (1 + scale) + shift, per sample;
    loss = sum(y * dy): fastnorm's y and gradients against autograd's."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, sh, sc = inputs(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    per_sample = (shape[0],) + (1,) * (len(shape) - 2) + (shape[-1],)

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_()

    xt, sht, sct = t(x), t(sh), t(sc)
    yt = (F.layer_norm(xt, (shape[-1],), eps=1e-6) * (1 + sct.reshape(per_sample))
          + sht.reshape(per_sample))
    (yt * torch.from_numpy(dy)).sum().backward()

    y, mean, rstd = fn.ada_layer_norm(x, sh, sc, return_stats=True)
    assert_close(y, yt.detach().numpy(), dtype, factor=4, what="y")
    dx, dsh, dsc = fn.ada_layer_norm_backward(dy, x, mean, rstd, sc)
    s_sh, s_sc = grads_scales(dy, x, mean, rstd, dtype)
    assert_close(dx, xt.grad.numpy(), dtype, factor=8, what="dx vs x.grad")
    assert_close(dsh, sht.grad.numpy(), dtype, factor=8, scale=s_sh, what="dshift")
    assert_close(dsc, sct.grad.numpy(), dtype, factor=8, scale=s_sc, what="dscale")
