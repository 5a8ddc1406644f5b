"""The fused residual add + normalization: fastnorm.add_layer_norm, add_rms_norm
and their backward functions, against the float64 reference, the unfused
composition, central finite differences and PyTorch; in-place use of the
residual stream (sum_out=, out=), memory layouts, adversarial rows, bad input,
and determinism across thread counts. Both kernel tables, both dtypes."""
import warnings

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import (
    assert_close,
    assert_rel_close,
    axis_choices,
    make_array,
    norm_axes,
    numeric_grad,
    other_axes,
    param_shape,
    random_params,
    stats_shape,
    sum_scale,
)
from params import ROW_LAYOUTS, assert_fd

OPS = ("layer", "rms")

# (weight, bias, residual_bias); RMSNorm has no bias, so its rows ignore the second flag
PARAMS = [(False, False, False), (True, True, False), (False, False, True), (True, True, True)]
PARAM_IDS = ["plain", "affine", "resbias", "affine+resbias"]

SHAPES = [(7,), (5, 17), (4, 3, 9), (2, 3, 4, 5)]


# --------------------------------------------------------------------------
# Helpers: one call signature for both ops
# --------------------------------------------------------------------------

def fwd(op, x, r, w=None, b=None, rb=None, *, axis=-1, **kw):
    """(y, s, mean, rstd) of the fused forward; mean is None for RMSNorm."""
    if op == "layer":
        y, s, mean, rstd = fn.add_layer_norm(x, r, w, b, residual_bias=rb, axis=axis,
                                             return_stats=True, **kw)
        return y, s, mean, rstd
    assert b is None
    y, s, rstd = fn.add_rms_norm(x, r, w, residual_bias=rb, axis=axis, return_stats=True, **kw)
    return y, s, None, rstd


def fwd_plain(op, x, r, w=None, b=None, rb=None, *, axis=-1, **kw):
    """(y, s) without statistics."""
    if op == "layer":
        return fn.add_layer_norm(x, r, w, b, residual_bias=rb, axis=axis, **kw)
    return fn.add_rms_norm(x, r, w, residual_bias=rb, axis=axis, **kw)


def ref_fwd(op, x, r, w=None, b=None, rb=None, *, axis=-1, **kw):
    if op == "layer":
        return ref.add_layer_norm(x, r, w, b, rb, axis=axis, **kw)
    y, s, rstd = ref.add_rms_norm(x, r, w, rb, axis=axis, **kw)
    return y, s, None, rstd


def bwd(op, dy, s, mean, rstd, w=None, ds=None, *, axis=-1, **kw):
    """(dsum, dweight, dbias, dresidual_bias); dbias is None for RMSNorm."""
    if op == "layer":
        return fn.add_layer_norm_backward(dy, s, mean, rstd, w, ds=ds, axis=axis, **kw)
    dsum, dw, drb = fn.add_rms_norm_backward(dy, s, rstd, w, ds=ds, axis=axis, **kw)
    return dsum, dw, None, drb


def ref_bwd(op, dy, s, mean, rstd, w=None, ds=None, *, axis=-1):
    if op == "layer":
        return ref.add_layer_norm_backward(dy, s, mean, rstd, w, ds, axis=axis)
    dsum, dw, drb = ref.add_rms_norm_backward(dy, s, rstd, w, ds, axis=axis)
    return dsum, dw, None, drb


def unfused(op, x, r, w=None, b=None, rb=None, *, axis=-1):
    """The same computation from the unfused functions: (y, s, mean, rstd)."""
    s = x + r
    if rb is not None:
        s = s + _broadcast_param(rb, x.ndim, axis)
    if op == "layer":
        y, mean, rstd = fn.layer_norm(s, w, b, axis=axis, return_stats=True)
        return y, s, mean, rstd
    y, rstd = fn.rms_norm(s, w, axis=axis, return_stats=True)
    return y, s, None, rstd


def _broadcast_param(p, ndim, axis):
    shape = [1] * ndim
    for a, n in zip(norm_axes(axis, ndim), p.shape):
        shape[a] = n
    return p.reshape(shape)


def params_for(op, pshape, dtype, rng, flags):
    weight, bias, resbias = flags
    w, b = random_params(pshape, dtype, rng, weight, bias and op == "layer")
    rb = rng.standard_normal(pshape).astype(dtype) if resbias else None
    return w, b, rb


def inputs(shape, dtype, rng):
    """x and residual: different offsets and scales, as make_array draws them."""
    return make_array(shape, dtype, rng), make_array(shape, dtype, rng)


def _same(got, want, what):
    for name, g, w_ in zip(("y", "s", "mean", "rstd"), got, want):
        if w_ is None:
            assert g is None, f"{name} {what}"
            continue
        assert np.array_equal(g, w_, equal_nan=True), f"{name} differs: {what}"


# --------------------------------------------------------------------------
# Forward and backward against the float64 reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("flags", PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize("op", OPS)
def test_forward_matches_reference(isa, dtype, op, flags):
    rng = np.random.default_rng(21)
    checked = 0
    for shape in SHAPES:
        x, r = inputs(shape, dtype, rng)
        for axis in axis_choices(len(shape)):
            what = f"{op} {shape} axis={axis}"
            w, b, rb = params_for(op, param_shape(shape, axis), dtype, rng, flags)
            y, s, mean, rstd = fwd(op, x, r, w, b, rb, axis=axis)
            ye, se, me, re = ref_fwd(op, x, r, w, b, rb, axis=axis)
            for a in (y, s, rstd) + ((mean,) if op == "layer" else ()):
                assert a.dtype == dtype, what
            assert y.shape == s.shape == shape, what
            assert rstd.shape == stats_shape(shape, axis), what
            assert_close(s, se, dtype, what="s " + what)
            assert_close(y, ye, dtype, what="y " + what)
            assert_rel_close(rstd, re, dtype, what="rstd " + what)
            if op == "layer":
                assert mean.shape == stats_shape(shape, axis), what
                assert_close(mean, me, dtype, scale=np.max(np.abs(se)), what="mean " + what)
            # the same bits without the statistics
            y2, s2 = fwd_plain(op, x, r, w, b, rb, axis=axis)
            assert np.array_equal(y2, y) and np.array_equal(s2, s), what
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("op", OPS)
def test_forward_eps(isa, dtype, op, rng):
    x, r = inputs((6, 24), dtype, rng)
    for eps in (0.0, 1e-5, 0.3, 7.0) + ((None,) if op == "rms" else ()):
        y, s, mean, rstd = fwd(op, x, r, eps=eps)
        ye, se, me, re = ref_fwd(op, x, r, eps=eps)
        assert_close(y, ye, dtype, what=f"y eps={eps}")
        assert_rel_close(rstd, re, dtype, what=f"rstd eps={eps}")
    if op == "layer":  # the default eps is 1e-5, as in layer_norm
        assert np.array_equal(fn.add_layer_norm(x, r)[0], fn.add_layer_norm(x, r, eps=1e-5)[0])
    else:  # the default eps is the machine epsilon of x's dtype, as in rms_norm
        eps = float(np.finfo(dtype).eps)
        assert np.array_equal(fn.add_rms_norm(x, r)[0], fn.add_rms_norm(x, r, eps=eps)[0])


@pytest.mark.parametrize("with_ds", [False, True], ids=["no-ds", "ds"])
@pytest.mark.parametrize("weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("op", OPS)
def test_backward_matches_reference(isa, dtype, op, weight, with_ds):
    rng = np.random.default_rng(22)
    for shape in SHAPES:
        x, r = inputs(shape, dtype, rng)
        dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        ds = make_array(shape, dtype, rng, loc=0.0, scale=1.0) if with_ds else None
        for axis in axis_choices(len(shape)):
            what = f"{op} {shape} axis={axis}"
            pshape = param_shape(shape, axis)
            w, _, rb = params_for(op, pshape, dtype, rng, (weight, False, True))
            _, s, mean, rstd = fwd(op, x, r, w, None, rb, axis=axis)
            dsum, dw, db, drb = bwd(op, dy, s, mean, rstd, w, ds, axis=axis)
            dse, dwe, dbe, drbe = ref_bwd(op, dy, s, mean, rstd, w, ds, axis=axis)
            assert dsum.shape == shape and dsum.dtype == dtype, what
            for g in (dw, drb) + ((db,) if op == "layer" else ()):
                assert g.shape == pshape and g.dtype == dtype, what
            others = other_axes(axis, len(shape))
            assert_close(dsum, dse, dtype, factor=4, what="dsum " + what)
            xh = (ref.layer_norm(s, axis=axis)[0] if op == "layer"
                  else ref.rms_norm(s, axis=axis, eps=0.0)[0])
            assert_close(dw, dwe, dtype, factor=4,
                         scale=sum_scale(dy.astype(np.float64) * xh, others),
                         what="dweight " + what)
            if op == "layer":
                assert_close(db, dbe, dtype, factor=4, scale=sum_scale(dy, others),
                             what="dbias " + what)
            # dresidual_bias: the sum of dsum itself (accumulated in float64) ...
            own = dsum.astype(np.float64).sum(axis=others) if others else dsum.astype(np.float64)
            assert_close(drb, own, dtype, what="dresidual_bias vs sum(dsum) " + what)
            # ... and the reference's, within the summed errors of dsum
            n_summed = int(np.prod([shape[a] for a in others])) if others else 1
            assert_close(drb, drbe, dtype, factor=4 * n_summed,
                         scale=max(1.0, np.max(np.abs(dse))), what="dresidual_bias " + what)


@pytest.mark.parametrize("op", OPS)
def test_backward_ds_adds_to_dsum(isa, dtype, op, rng):
    """dsum with ds is dsum without it plus ds; dweight and dbias do not see ds;
    the backward leaves its inputs alone."""
    x, r = inputs((9, 40), dtype, rng)
    dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    ds = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    w = make_array((40,), dtype, rng, loc=1.0, scale=0.5)
    _, s, mean, rstd = fwd(op, x, r, w)
    keep = [a.copy() for a in (dy, s, ds, rstd)]
    base = bwd(op, dy, s, mean, rstd, w)
    got = bwd(op, dy, s, mean, rstd, w, ds)
    assert_close(got[0], base[0].astype(np.float64) + ds, dtype, what="dsum")
    assert np.array_equal(got[1], base[1])
    if op == "layer":
        assert np.array_equal(got[2], base[2])
    for a, k in zip((dy, s, ds, rstd), keep):
        assert np.array_equal(a, k)


# --------------------------------------------------------------------------
# The fused functions against the unfused composition
# --------------------------------------------------------------------------

@pytest.mark.parametrize("op", OPS)
def test_matches_unfused_composition(isa, dtype, op):
    """add_*(x, r, ...) == norm(x + r (+ rb), ...) up to rounding; s without a
    residual bias is exactly the float sum x + r."""
    rng = np.random.default_rng(23)
    for shape in SHAPES:
        x, r = inputs(shape, dtype, rng)
        dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        ds = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        for axis in axis_choices(len(shape)):
            for flags in PARAMS:
                what = f"{op} {shape} axis={axis} flags={flags}"
                w, b, rb = params_for(op, param_shape(shape, axis), dtype, rng, flags)
                y, s, mean, rstd = fwd(op, x, r, w, b, rb, axis=axis)
                yu, su, mu, ru = unfused(op, x, r, w, b, rb, axis=axis)
                if rb is None:
                    assert np.array_equal(s, su), "s != x + r: " + what
                else:
                    assert_close(s, su, dtype, what="s " + what)
                assert_close(y, yu, dtype, factor=2, what="y " + what)
                assert_rel_close(rstd, ru, dtype, factor=2, what="rstd " + what)
                if op == "layer":
                    assert_close(mean, mu, dtype, scale=np.max(np.abs(s)), what="mean " + what)
                # the backward is the unfused backward of s, plus ds
                if op == "layer":
                    dx, dw, db = fn.layer_norm_backward(dy, s, mean, rstd, w, axis=axis)
                    got = fn.add_layer_norm_backward(dy, s, mean, rstd, w, ds=ds, axis=axis)
                    assert np.array_equal(got[2], db), what
                else:
                    dx, dw = fn.rms_norm_backward(dy, s, rstd, w, axis=axis)
                    got = fn.add_rms_norm_backward(dy, s, rstd, w, ds=ds, axis=axis)
                assert_close(got[0], dx.astype(np.float64) + ds, dtype, what="dsum " + what)
                assert np.array_equal(got[1], dw), what


@pytest.mark.parametrize("op", OPS)
def test_bitwise_equal_to_unfused_without_residual_bias(isa, dtype, op, rng):
    """Without a residual bias, s is the very float sum x + r, so y and the
    statistics should be those of the unfused norm(x + r), bit for bit.

    Fails at 0bfaf25: the fused kernel takes the mean (LayerNorm) / the sum of
    squares (RMSNorm) from the sums that residual_add accumulates while it
    writes s (2 vector accumulators, 2*VN unroll), while layer_norm / rms_norm
    use the sum / sum_sq primitives (4 accumulators, 4*VN unroll): the
    statistics, and so y, differ from the unfused ones in the last bits.
    """
    x, r = inputs((16, 768), dtype, rng)
    w, b = random_params((768,), dtype, rng, True, op == "layer")
    y, s, mean, rstd = fwd(op, x, r, w, b)
    yu, su, mu, ru = unfused(op, x, r, w, b)
    assert np.array_equal(s, su)
    bad = {name: float(np.max(np.abs(g.astype(np.float64) - u)))
           for name, g, u in (("y", y, yu), ("mean", mean, mu), ("rstd", rstd, ru))
           if g is not None and not np.array_equal(g, u)}
    assert not bad, f"fused != unfused (max abs diff): {bad}"


SINGLE_AXIS_CASES = [((2, 24, 5, 13), 1), ((5, 6, 7), 0), ((2, 300, 3), -2), ((3, 4, 1, 9), 1)]


@pytest.mark.parametrize("shape,axis", SINGLE_AXIS_CASES,
                         ids=[f"{s}-{a}" for s, a in SINGLE_AXIS_CASES])
@pytest.mark.parametrize("op", OPS)
def test_single_axis_is_the_unfused_composition_bitwise(isa, dtype, op, shape, axis, rng):
    """One normalized axis that is not the last (axis=1 of NCHW): the fused
    kernel writes s = (x + r) + rb in the data's float arithmetic, as NumPy
    does, and normalizes it with layer_norm / rms_norm's axis kernel, so both
    results are those of the composition bit for bit."""
    x, r = inputs(shape, dtype, rng)
    pshape = param_shape(shape, axis)
    for flags in PARAMS:
        w, b, rb = params_for(op, pshape, dtype, rng, flags)
        y, s, mean, rstd = fwd(op, x, r, w, b, rb, axis=axis)
        s_want = x + r
        if rb is not None:
            s_want = s_want + _broadcast_param(rb, x.ndim, axis)
        assert np.array_equal(s, s_want), f"s {flags}"
        if op == "layer":
            y_want, m_want, r_want = fn.layer_norm(s_want, w, b, axis=axis, return_stats=True)
            assert np.array_equal(mean, m_want), f"mean {flags}"
        else:
            y_want, r_want = fn.rms_norm(s_want, w, axis=axis, return_stats=True)
        assert np.array_equal(y, y_want) and np.array_equal(rstd, r_want), f"y {flags}"


# --------------------------------------------------------------------------
# Gradients against central finite differences (float64)
# --------------------------------------------------------------------------

FD_CASES = [
    ((3, 5), -1),
    ((4, 6), 0),
    ((2, 3, 4), (0, 2)),
    ((2, 3, 4), (-2, -1)),
]


@pytest.mark.parametrize("shape,axis", FD_CASES, ids=[f"{s}-{a}" for s, a in FD_CASES])
@pytest.mark.parametrize("op", OPS)
def test_gradients_match_finite_differences(isa, op, shape, axis, rng):
    """loss = sum(y * r1) + sum(s * r2): the gradient reaches s through y and
    directly (ds = r2), as in a pre-norm block whose s feeds the next block."""
    dt = np.float64
    x, res = inputs(shape, dt, rng)
    pshape = param_shape(shape, axis)
    w, b, rb = params_for(op, pshape, dt, rng, (True, True, True))
    r1 = rng.standard_normal(shape)
    r2 = rng.standard_normal(shape)

    def loss(x_=x, res_=res, w_=w, b_=b, rb_=rb):
        y, s = fwd_plain(op, x_, res_, w_, b_, rb_, axis=axis)
        return float(np.sum(y * r1) + np.sum(s * r2))

    _, s, mean, rstd = fwd(op, x, res, w, b, rb, axis=axis)
    dsum, dw, db, drb = bwd(op, r1, s, mean, rstd, w, r2, axis=axis)
    checks = [
        ("dx", dsum, numeric_grad(lambda v: loss(x_=v), x)),
        ("dresidual", dsum, numeric_grad(lambda v: loss(res_=v), res)),
        ("dweight", dw, numeric_grad(lambda v: loss(w_=v), w)),
        ("dresidual_bias", drb, numeric_grad(lambda v: loss(rb_=v), rb)),
    ]
    if op == "layer":
        checks.append(("dbias", db, numeric_grad(lambda v: loss(b_=v), b)))
    for name, got, want in checks:
        assert_fd(got, want, name)


# --------------------------------------------------------------------------
# In place: the residual stream
# --------------------------------------------------------------------------

INPLACE = {
    "sum_out=residual": {"sum_out": "r"},
    "sum_out=x": {"sum_out": "x"},
    "out=x": {"out": "x"},
    "out=residual": {"out": "r"},
    "out=x,sum_out=residual": {"out": "x", "sum_out": "r"},
    "out=residual,sum_out=x": {"out": "r", "sum_out": "x"},
}


@pytest.mark.parametrize("single_axis", [False, True], ids=["rows", "axis1"])
@pytest.mark.parametrize("layout", ["C", "F", "sliced", "negstride", "rowsrev", "padded"])
@pytest.mark.parametrize("case", list(INPLACE))
@pytest.mark.parametrize("op", OPS)
def test_in_place(isa, dtype, op, case, layout, single_axis, rng):
    """single_axis: axis=1, normalized along the middle axis by the fused axis
    kernel (no transposing copy), with the same in-place rules."""
    shape, axis = (6, 5, 12), (-1 if layout != "F" else (0, 2))
    if single_axis:
        axis = 1
    base_x, base_r = inputs(shape, dtype, rng)
    w, b, rb = params_for(op, param_shape(shape, axis), dtype, rng, (True, True, True))
    for resbias in (None, rb):
        want = fwd(op, base_x, base_r, w, b, resbias, axis=axis)
        x, r = ROW_LAYOUTS[layout](base_x), ROW_LAYOUTS[layout](base_r)
        kw = {k: {"x": x, "r": r}[v] for k, v in INPLACE[case].items()}
        got = fwd(op, x, r, w, b, resbias, axis=axis, **kw)
        _same(got, want, f"{case} {layout} resbias={resbias is not None}")
        if "out" in kw:
            assert got[0] is kw["out"]
        if "sum_out" in kw:
            assert got[1] is kw["sum_out"]
        # what was not an output is untouched
        if "x" not in INPLACE[case].values():
            assert np.array_equal(x, base_x)
        if "r" not in INPLACE[case].values():
            assert np.array_equal(r, base_r)


@pytest.mark.parametrize("op", OPS)
def test_residual_stream_over_layers(isa, dtype, op, rng):
    """A pre-norm stack: r += x_l, y_l = norm(r), the residual updated in place
    each layer, equals the same stack with fresh arrays."""
    r_fresh = make_array((8, 64), dtype, rng)
    r = r_fresh.copy()
    w, b = random_params((64,), dtype, rng, True, op == "layer")
    y = np.empty_like(r)
    for layer in range(4):
        h = make_array((8, 64), dtype, rng, loc=0.0, scale=0.3)
        yf, r_fresh = fwd_plain(op, h, r_fresh, w, b)
        got = fwd_plain(op, h, r, w, b, out=y, sum_out=r)
        assert got[0] is y and got[1] is r
        assert np.array_equal(r, r_fresh) and np.array_equal(y, yf), f"layer {layer}"


@pytest.mark.parametrize("op", OPS)
def test_out_and_sum_out_must_not_overlap(isa, dtype, op, rng):
    x, r = inputs((6, 40), dtype, rng)
    buf = make_array((6, 80), dtype, rng)
    cases = {
        "same array": (x, x),
        "same buffer": (buf[:, :40], buf[:, :40]),
        "shifted": (buf[:, :40], buf[:, 1:41]),
        "out=residual,sum_out=residual": (r, r),
    }
    for name, (out, sum_out) in cases.items():
        keep = [a.copy() for a in (x, r, buf)]
        with pytest.raises(ValueError, match="overlap"):
            fwd_plain(op, x, r, out=out, sum_out=sum_out)
        for a, k in zip((x, r, buf), keep):
            assert np.array_equal(a, k), f"{name}: written before the error"


@pytest.mark.parametrize("target", ["x", "residual"])
@pytest.mark.parametrize("which", ["weight", "bias", "residual_bias"])
def test_parameters_in_overwritten_memory(isa, dtype, which, target, rng):
    """A parameter that is a row of the array the call overwrites (sum_out= or
    out=) is read as it was before the call."""
    x, r = inputs((8, 32), dtype, rng)
    w, b, rb = params_for("layer", (32,), dtype, rng, (True, True, True))
    p = {"weight": w, "bias": b, "residual_bias": rb}
    for kw_name in ("sum_out", "out"):
        xx, rr = x.copy(), r.copy()
        arr = xx if target == "x" else rr
        args = dict(p)
        args[which] = arr[3]
        want = fn.add_layer_norm(x.copy(), r.copy(), args["weight"].copy(), args["bias"].copy(),
                                 residual_bias=args["residual_bias"].copy())
        got = fn.add_layer_norm(xx, rr, args["weight"], args["bias"],
                                residual_bias=args["residual_bias"], **{kw_name: arr})
        assert np.array_equal(got[0], want[0]), f"y {kw_name}={target}"
        assert np.array_equal(got[1], want[1]), f"s {kw_name}={target}"


@pytest.mark.parametrize("op", OPS)
def test_outputs_overlapping_inputs_shifted(isa, dtype, op, rng):
    """sum_out or out overlapping x or residual one row or one element away:
    the result of fresh outputs."""
    buf = make_array((33, 41), dtype, rng)
    r0 = make_array((32, 40), dtype, rng)
    for kw_name in ("sum_out", "out"):
        for shift in ((1, 0), (0, 1), (1, 1)):
            for who in ("x", "r"):
                b2 = buf.copy()
                inp = b2[:32, :40]
                dest = b2[shift[0]:shift[0] + 32, shift[1]:shift[1] + 40]
                x, r = (inp, r0.copy()) if who == "x" else (r0.copy(), inp)
                want = fwd_plain(op, x.copy(), r.copy())
                got = fwd_plain(op, x, r, **{kw_name: dest})
                what = f"{kw_name} shifted {shift} over {who}"
                assert np.array_equal(got[0], want[0]), "y " + what
                assert np.array_equal(got[1], want[1]), "s " + what


# --------------------------------------------------------------------------
# Memory layouts: non-contiguous and negative-stride inputs and outputs
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", [n for n in ROW_LAYOUTS if n != "C"])
@pytest.mark.parametrize("op", OPS)
def test_layouts_give_identical_bits(isa, dtype, op, layout, rng):
    """Any layout of x, residual, dy, ds (each in a different one), and of out
    and sum_out, gives the bits of the C layout."""
    names = list(ROW_LAYOUTS)
    other = names[(names.index(layout) + 3) % len(names)]  # residual in another layout
    for shape in [(5, 17), (4, 3, 9), (2, 3, 4, 5)]:
        bx, br = inputs(shape, dtype, rng)
        bdy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        bds = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        for axis in axis_choices(len(shape)):
            what = f"{shape} axis={axis} x:{layout} r:{other}"
            w, b, rb = params_for(op, param_shape(shape, axis), dtype, rng, (True, True, True))
            want = fwd(op, bx, br, w, b, rb, axis=axis)
            gwant = bwd(op, bdy, want[1], want[2], want[3], w, bds, axis=axis)
            x, r = ROW_LAYOUTS[layout](bx), ROW_LAYOUTS[other](br)
            got = fwd(op, x, r, w, b, rb, axis=axis)
            _same(got, want, what)
            if layout != "byteswapped":  # a byte-swapped out is refused (as in layer_norm)
                out = ROW_LAYOUTS[layout](np.zeros(shape, dtype))
                sum_out = ROW_LAYOUTS[layout](np.zeros(shape, dtype))
                got = fwd(op, x, r, w, b, rb, axis=axis, out=out, sum_out=sum_out)
                assert got[0] is out and got[1] is sum_out
                _same(got, want, "out/sum_out " + what)
            dy, ds = ROW_LAYOUTS[layout](bdy), ROW_LAYOUTS[other](bds)
            s = ROW_LAYOUTS[other](want[1])
            g = bwd(op, dy, s, want[2], want[3], w, ds, axis=axis)
            for nm, gg, gw in zip(("dsum", "dweight", "dbias", "dresidual_bias"), g, gwant):
                if gw is None:
                    continue
                assert np.array_equal(gg, gw), f"{nm} {what}"


@pytest.mark.parametrize("resbias", [False, True], ids=["no-resbias", "resbias"])
@pytest.mark.parametrize("op", OPS)
def test_sum_out_next_to_x_gives_the_same_bits(isa, dtype, op, resbias):
    """sum_out right after x in one buffer (disjoint from it) gives the bits of
    a fresh sum_out: a row's result does not depend on where the output lies.

    Fails at 0bfaf25 for add_rms_norm with the avx2 kernels (rows of 4-7
    float32 / 2-3 float64, the scalar tail of residual_add): the compiler
    versions that loop on whether s may alias x; the copy run when s lies just
    after x accumulates the sum of squares with fused multiply-adds, the other
    copy with a multiply and an add, so rstd and y differ in the last bit."""
    rng = np.random.default_rng(25)
    mismatches = []
    for n in range(1, 10):
        for _ in range(40):
            buf = make_array((2 * n,), dtype, rng)
            x = buf[:n]
            r = make_array((n,), dtype, rng)
            rb = make_array((n,), dtype, rng) if resbias else None
            want = fwd(op, x.copy(), r, None, None, rb)
            got = fwd(op, x, r, None, None, rb, sum_out=buf[n:])
            if not all(w_ is None or np.array_equal(g, w_) for g, w_ in zip(got, want)):
                mismatches.append(n)
    assert not mismatches, (
        f"bits differ with sum_out next to x, row lengths {sorted(set(mismatches))}")


# --------------------------------------------------------------------------
# Adversarial inputs
# --------------------------------------------------------------------------

@pytest.mark.parametrize("carrier", ["x", "residual"])
@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6])
@pytest.mark.parametrize("n", [37, 768])
def test_large_mean_float32(isa, offset, n, carrier, rng):
    """Rows of s with a large mean (the residual stream of a deep model): y is
    the layer norm of s as stored, to 1e-5."""
    big = (offset + rng.standard_normal((32, n))).astype(np.float32)
    small = rng.standard_normal((32, n)).astype(np.float32)
    x, r = (big, small) if carrier == "x" else (small, big)
    w = (1 + 0.5 * rng.standard_normal(n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    y, s, mean, rstd = fn.add_layer_norm(x, r, return_stats=True)
    assert np.array_equal(s, x + r)
    ye, me, re = ref.layer_norm(s)  # float64 arithmetic on s as stored
    assert np.all(np.isfinite(y))
    err = np.max(np.abs(y - ye))
    assert err <= 1e-5, f"max abs error of y {err:.3e} for mean {offset:g}"
    assert np.all(np.abs(mean - me) <= np.spacing(np.float32(offset)) * 1.5)
    assert_rel_close(rstd, re, np.float32, factor=2)
    ya = fn.add_layer_norm(x, r, w, b)[0]
    assert np.max(np.abs(ya - ref.layer_norm(s, w, b)[0])) <= 1e-5 * np.max(np.abs(w) + np.abs(b))
    # RMSNorm of the same rows (no cancellation: only the rounding of s)
    yr, _, rr = fn.add_rms_norm(x, r, return_stats=True)
    assert_close(yr, ref.rms_norm(s)[0], np.float32)
    # the backward from the float32 statistics
    dy = rng.standard_normal((32, n)).astype(np.float32)
    ds = rng.standard_normal((32, n)).astype(np.float32)
    dsum = fn.add_layer_norm_backward(dy, s, mean, rstd, w, ds=ds)[0]
    dse = ref.add_layer_norm_backward(dy, s, me, re, w, ds)[0]
    assert np.max(np.abs(dsum - dse)) <= 1e-4 * np.max(np.abs(dse))


@pytest.mark.parametrize("magnitude", [1e-30, 1e30, 3e37])
@pytest.mark.parametrize("eps", [1e-5, 0.0], ids=["eps", "eps0"])
@pytest.mark.parametrize("op", OPS)
def test_extreme_magnitudes_float32(isa, op, magnitude, eps, rng):
    """The fused path's own sums (accumulated while s is written) under- or
    overflow without harm, as the unfused ones."""
    z = rng.standard_normal((8, 1024))
    x = (magnitude * (1 + 0.25 * z)).astype(np.float32)
    r = (magnitude * 0.1 * rng.standard_normal((8, 1024))).astype(np.float32)
    y, s, _, rstd = fwd(op, x, r, eps=eps)
    ye = (ref.layer_norm(s, eps=eps) if op == "layer" else ref.rms_norm(s, eps=eps))[0]
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(rstd))
    assert_close(y, ye, np.float32, factor=2)


@pytest.mark.parametrize("where", ["x", "residual", "residual_bias"])
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("op", OPS)
def test_non_finite_value_stays_in_its_row(isa, dtype, op, bad, where, rng):
    """A NaN or Inf in x or residual poisons its row only (a whole NaN row for
    LayerNorm; RMSNorm of an Inf: rstd 0, NaN where the Inf was, as in PyTorch);
    in residual_bias, its column of s in every row."""
    x, r = inputs((6, 40), dtype, rng)
    w, b, rb = params_for(op, (40,), dtype, rng, (True, True, True))
    dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    ds = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    y0, s0, m0, r0 = fwd(op, x, r, w, b, rb)
    g0 = bwd(op, dy, s0, m0, r0, w, ds)
    xb, rbad, rbb = x.copy(), r.copy(), rb.copy()
    if where == "x":
        xb[2, 5] = bad
    elif where == "residual":
        rbad[2, 5] = bad
    else:
        rbb[5] = bad
    y, s, m, rs = fwd(op, xb, rbad, w, b, rbb)
    bad_rows = list(range(6)) if where == "residual_bias" else [2]
    keep = [i for i in range(6) if i not in bad_rows]
    # s: non-finite exactly where the bad value went in
    assert not np.any(np.isfinite(s[bad_rows, 5]))
    assert np.array_equal(np.delete(s, 5, axis=1), np.delete(s0, 5, axis=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ye = (ref.layer_norm(s, w, b) if op == "layer" else ref.rms_norm(s, w))[0]
    assert_close(y[bad_rows], ye[bad_rows], dtype, what="bad rows")  # NaNs where torch has them
    if op == "layer":
        assert np.all(np.isnan(y[bad_rows])), "a bad row becomes NaN (as in PyTorch)"
    else:
        assert not np.any(np.isfinite(y[bad_rows, 5]))
    assert np.array_equal(y[keep], y0[keep]) and np.array_equal(rs[keep], r0[keep])
    if op == "layer":
        assert np.array_equal(m[keep], m0[keep])
    g = bwd(op, dy, s, m, rs, w, ds)
    for i in bad_rows:
        assert not np.all(np.isfinite(g[0][i]))
    assert np.array_equal(g[0][keep], g0[0][keep])


ZERO_SIZE = [
    ((0, 8), -1), ((0, 8), 0), ((4, 0), -1), ((4, 0), 0), ((0,), 0),
    ((2, 0, 3), (0, 2)), ((2, 0, 3), 1), ((3, 4, 0), -1), ((0, 3, 4), (-2, -1)),
]


@pytest.mark.parametrize("shape,axis", ZERO_SIZE, ids=[f"{s}-{a}" for s, a in ZERO_SIZE])
@pytest.mark.parametrize("op", OPS)
def test_zero_size(isa, dtype, op, shape, axis):
    x, r = np.zeros(shape, dtype), np.zeros(shape, dtype)
    pshape = param_shape(shape, axis)
    w, rb = np.ones(pshape, dtype), np.zeros(pshape, dtype)
    b = np.zeros(pshape, dtype) if op == "layer" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of empty rows
        ye, se, me, re = ref_fwd(op, x, r, w, b, rb, axis=axis)
        y, s, mean, rstd = fwd(op, x, r, w, b, rb, axis=axis)
        assert y.shape == s.shape == shape and y.dtype == s.dtype == dtype
        # rows with no elements have no statistics: NaN, as the reference
        assert_close(rstd, re, dtype, what="rstd")
        if op == "layer":
            assert_close(mean, me, dtype, what="mean")
        out, sum_out = np.empty_like(x), np.empty_like(x)
        got = fwd_plain(op, x, r, w, b, rb, axis=axis, out=out, sum_out=sum_out)
        assert got[0] is out and got[1] is sum_out
        dy = np.zeros_like(x)
        dsum, dw, db, drb = bwd(op, dy, s, mean, rstd, w, np.zeros_like(x), axis=axis)
        dse, dwe, dbe, drbe = ref_bwd(op, dy, s, me, re, w, np.zeros_like(x), axis=axis)
    assert dsum.shape == shape
    assert np.array_equal(dw, dwe) and np.array_equal(drb, drbe)  # sums over no rows: zero
    if op == "layer":
        assert np.array_equal(db, dbe)


# --------------------------------------------------------------------------
# Bad input: the argument is named, and nothing is written
# --------------------------------------------------------------------------

def _bad_forward_calls(op, x, r, w, b, rb, dtype):
    other = np.float64 if dtype == np.float32 else np.float32
    pshape = w.shape
    calls = [
        ("residual wrong shape", ValueError, "residual", dict(residual=r[:-1])),
        ("residual transposed", ValueError, "residual", dict(residual=np.zeros((40, 6), dtype))),
        ("residual wrong dtype", TypeError, "residual", dict(residual=r.astype(other))),
        ("residual int", TypeError, "residual", dict(residual=r.astype(np.int32))),
        ("residual None", TypeError, "residual", dict(residual=None)),
        ("residual_bias wrong shape", ValueError, "residual_bias",
         dict(residual_bias=np.zeros(pshape[0] + 1, dtype))),
        ("residual_bias 2-d", ValueError, "residual_bias",
         dict(residual_bias=np.zeros((1,) + pshape, dtype))),
        ("weight wrong shape", ValueError, "weight", dict(weight=np.ones(3, dtype))),
        ("eps negative", ValueError, "eps", dict(eps=-1.0)),
        ("num_threads zero", ValueError, "num_threads", dict(num_threads=0)),
        ("axis out of range", np.exceptions.AxisError, "axis", dict(axis=5)),
    ]
    if op == "layer":
        calls.append(("bias wrong shape", ValueError, "bias", dict(bias=np.zeros(3, dtype))))
    return calls


def _call_forward(op, x, r, w, b, rb, kw):
    args = dict(residual=r, weight=w, residual_bias=rb)
    if op == "layer":
        args["bias"] = b
    args.update(kw)
    res = args.pop("residual")
    weight = args.pop("weight")
    if op == "layer":
        bias = args.pop("bias")
        return fn.add_layer_norm(x, res, weight, bias, **args)
    return fn.add_rms_norm(x, res, weight, **args)


@pytest.mark.parametrize("op", OPS)
def test_bad_input_names_the_argument_and_writes_nothing(dtype, op, rng):
    x, r = inputs((6, 40), dtype, rng)
    w, b, rb = params_for(op, (40,), dtype, rng, (True, True, True))
    snapshot = [a.copy() for a in (x, r, w, rb)]
    for label, exc, name, kw in _bad_forward_calls(op, x, r, w, b, rb, dtype):
        out = np.full_like(x, 7.0)
        sum_out = np.full_like(x, 9.0)
        with pytest.raises(exc, match=name):
            _call_forward(op, x, r, w, b, rb, dict(kw, out=out, sum_out=sum_out))
        assert np.all(out == 7.0) and np.all(sum_out == 9.0), f"{label}: an output was written"
        for a, k in zip((x, r, w, rb), snapshot):
            assert np.array_equal(a, k), f"{label}: an input was written"
        # the in-place residual stream is not touched either
        with pytest.raises(exc, match=name):
            _call_forward(op, x, r, w, b, rb, dict(kw, out=x, sum_out=r)
                          if "residual" not in kw else dict(kw, out=x))
        for a, k in zip((x, r, w, rb), snapshot):
            assert np.array_equal(a, k), f"{label} (in place): an input was written"


@pytest.mark.parametrize("op", OPS)
def test_bad_outputs_write_nothing(dtype, op, rng):
    """A bad out= or sum_out= is refused before the other output is written."""
    x, r = inputs((6, 40), dtype, rng)
    other = np.float64 if dtype == np.float32 else np.float32
    ro = np.zeros_like(x)
    ro.flags.writeable = False
    bad = {
        "wrong shape": (ValueError, np.zeros((6, 41), dtype)),
        "wrong dtype": (TypeError, np.zeros((6, 40), other)),
        "not an array": (TypeError, [[0.0] * 40] * 6),
        "read-only": (ValueError, ro),
    }
    for label, (exc, arr) in bad.items():
        for bad_kw, good_kw in (("sum_out", "out"), ("out", "sum_out")):
            good = np.full_like(x, 5.0)
            xr = [x.copy(), r.copy()]
            with pytest.raises(exc):
                fwd_plain(op, x, r, **{bad_kw: arr, good_kw: good})
            assert np.all(good == 5.0), f"{bad_kw} {label}: {good_kw} was written"
            assert np.array_equal(x, xr[0]) and np.array_equal(r, xr[1])
            # in place: the residual stream survives a bad out=
            if bad_kw == "out":
                rc = r.copy()
                with pytest.raises(exc):
                    fwd_plain(op, x, rc, out=arr, sum_out=rc)
                assert np.array_equal(rc, r), f"out {label}: sum_out=residual was written"


def test_sum_out_errors_name_sum_out(dtype, rng):
    """An error about sum_out says sum_out, not out.

    Fails at 0bfaf25: _add_norm checks sum_out with _check_out, whose messages
    always say "out" ("out must have the shape of x ...", "out is read-only"),
    even when out= was not passed at all."""
    x, r = inputs((6, 40), dtype, rng)
    other = np.float64 if dtype == np.float32 else np.float32
    for arr in (np.zeros((6, 41), dtype), np.zeros((6, 40), other), [1.0]):
        with pytest.raises((TypeError, ValueError), match="sum_out"):
            fn.add_layer_norm(x, r, sum_out=arr)
        with pytest.raises((TypeError, ValueError), match="sum_out"):
            fn.add_rms_norm(x, r, sum_out=arr)


@pytest.mark.parametrize("op", OPS)
def test_bad_backward_input(dtype, op, rng):
    x, r = inputs((6, 40), dtype, rng)
    w = make_array((40,), dtype, rng)
    dy = make_array(x.shape, dtype, rng)
    ds = make_array(x.shape, dtype, rng)
    _, s, mean, rstd = fwd(op, x, r, w)
    other = np.float64 if dtype == np.float32 else np.float32
    snapshot = [a.copy() for a in (dy, s, ds, rstd, w)]
    bad = [
        ("ds wrong shape", ValueError, "ds", dict(ds=ds[:3])),
        ("ds transposed", ValueError, "ds", dict(ds=np.zeros((40, 6), dtype))),
        ("ds wrong dtype", TypeError, "ds", dict(ds=ds.astype(other))),
        ("ds int", TypeError, "ds", dict(ds=ds.astype(np.int64))),
        ("dy wrong shape", ValueError, "dy", dict(dy=dy[:, :5])),
        ("rstd wrong shape", ValueError, "rstd", dict(rstd=rstd[:3])),
        ("weight wrong shape", ValueError, "weight", dict(w=w[:5])),
    ]
    if op == "layer":
        bad.append(("mean wrong shape", ValueError, "mean", dict(mean=mean[:3])))
    for label, exc, name, kw in bad:
        args = dict(dy=dy, s=s, mean=mean, rstd=rstd, w=w, ds=ds)
        args.update(kw)
        with pytest.raises(exc, match=name):
            bwd(op, args["dy"], args["s"], args["mean"], args["rstd"], args["w"], args["ds"])
        for a, k in zip((dy, s, ds, rstd, w), snapshot):
            assert np.array_equal(a, k), f"{label}: an input was written"


def test_parameter_dtypes(isa, rng):
    """Parameters of another float dtype are converted to x's; dweight (and
    dbias) come back in weight's dtype, dresidual_bias in x's."""
    x, r = inputs((5, 16), np.float32, rng)
    w64, b64, rb64 = params_for("layer", (16,), np.float64, rng, (True, True, True))
    y, s, mean, rstd = fn.add_layer_norm(x, r, w64, b64, residual_bias=rb64, return_stats=True)
    w32, b32, rb32 = (a.astype(np.float32) for a in (w64, b64, rb64))
    y32, s32 = fn.add_layer_norm(x, r, w32, b32, residual_bias=rb32)
    assert y.dtype == s.dtype == np.float32
    assert np.array_equal(y, y32) and np.array_equal(s, s32)
    dsum, dw, db, drb = fn.add_layer_norm_backward(x, s, mean, rstd, w64)
    assert dsum.dtype == np.float32 and drb.dtype == np.float32
    assert dw.dtype == db.dtype == np.float64


# --------------------------------------------------------------------------
# Threads: bitwise identical for any thread count
# --------------------------------------------------------------------------

THREAD_CASES = [((512, 768), -1, np.float32), ((300, 1000), -1, np.float64),
                ((8, 64, 96), (-2, -1), np.float32)]


@pytest.mark.parametrize("shape,axis,dt", THREAD_CASES,
                         ids=[f"{s}-{a}-{np.dtype(d).name}" for s, a, d in THREAD_CASES])
@pytest.mark.parametrize("op", OPS)
def test_bitwise_identical_for_any_thread_count(isa, op, shape, axis, dt):
    rng = np.random.default_rng(24)
    x, r = inputs(shape, dt, rng)
    assert x.nbytes > 128 * 1024  # above the serial threshold
    dy = make_array(shape, dt, rng, loc=0.0, scale=1.0)
    ds = make_array(shape, dt, rng, loc=0.0, scale=1.0)
    w, b, rb = params_for(op, param_shape(shape, axis), dt, rng, (True, True, True))
    results = []
    for nt in (1, 2, 3, 4):
        f = fwd(op, x, r, w, b, rb, axis=axis, num_threads=nt)
        # in place too: the residual stream updated by nt threads
        rr = r.copy()
        fi = fwd(op, x, rr, w, b, rb, axis=axis, sum_out=rr, num_threads=nt)
        g = bwd(op, dy, f[1], f[2], f[3], w, ds, axis=axis, num_threads=nt)
        results.append((nt, list(f) + list(fi) + list(g)))
    names = ["y", "s", "mean", "rstd"] * 2 + ["dsum", "dweight", "dbias", "dresidual_bias"]
    first = results[0][1]
    for nt, res in results[1:]:
        for name, a, a1 in zip(names, res, first):
            if a1 is None:
                continue
            assert np.array_equal(a, a1), f"{name} differs between 1 and {nt} threads"
    assert_close(first[0], ref_fwd(op, x, r, w, b, rb, axis=axis)[0], dt)


# --------------------------------------------------------------------------
# PyTorch parity
# --------------------------------------------------------------------------

TORCH_SHAPES = [((6, 32), (32,)), ((2, 5, 17), (17,)), ((3, 4, 9), (4, 9))]


@pytest.mark.torch
@pytest.mark.parametrize("shape,nshape", TORCH_SHAPES, ids=[f"{s}-{n}" for s, n in TORCH_SHAPES])
@pytest.mark.parametrize("flags", PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize("op", OPS)
def test_matches_torch(isa, dtype, op, flags, shape, nshape, rng):
    """s = x + r (+ rb); y = F.layer_norm(s) / F.rms_norm(s); loss = sum(y * dy)
    + sum(s * ds): fastnorm's y, s and gradients against autograd's."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, r = inputs(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    ds = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w, b, rb = params_for(op, nshape, dtype, rng, flags)
    axis = tuple(range(-len(nshape), 0))

    def t(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).requires_grad_()

    xt, rt, wt, bt, rbt = t(x), t(r), t(w), t(b), t(rb)
    st = xt + rt if rbt is None else xt + rt + rbt
    if op == "layer":
        yt = F.layer_norm(st, nshape, wt, bt, eps=1e-5)
    else:
        yt = F.rms_norm(st, nshape, wt, eps=None)
    loss = (yt * torch.from_numpy(dy)).sum() + (st * torch.from_numpy(ds)).sum()
    loss.backward()

    y, s, mean, rstd = fwd(op, x, r, w, b, rb, axis=axis)
    if rb is None:
        assert np.array_equal(s, st.detach().numpy())  # the same float sum
    else:
        assert_close(s, st.detach().numpy(), dtype, what="s")
    assert_close(y, yt.detach().numpy(), dtype, factor=2, what="y")
    dsum, dw, db, drb = bwd(op, dy, s, mean, rstd, w, ds, axis=axis)
    assert_close(dsum, xt.grad.numpy(), dtype, factor=8, what="dsum vs x.grad")
    assert_close(dsum, rt.grad.numpy(), dtype, factor=8, what="dsum vs residual.grad")
    others = tuple(range(len(shape) - len(nshape)))
    if wt is not None:
        xh = (fn.layer_norm(s.astype(np.float64), axis=axis) if op == "layer"
              else fn.rms_norm(s.astype(np.float64), axis=axis, eps=0.0))
        assert_close(dw, wt.grad.numpy(), dtype, factor=8,
                     scale=sum_scale(dy.astype(np.float64) * xh, others), what="dweight")
    if bt is not None:
        assert_close(db, bt.grad.numpy(), dtype, factor=8, scale=sum_scale(dy, others),
                     what="dbias")
    if rbt is not None:
        assert_close(drb, rbt.grad.numpy(), dtype, factor=8 * int(np.prod(shape[:len(others)])),
                     scale=max(1.0, float(np.max(np.abs(dsum)))), what="dresidual_bias")


@pytest.mark.parametrize("op", ["layer", "rms"])
def test_backward_errors_name_s(op):
    """The fused backward takes s, not x: its messages say s."""
    s = np.zeros((4, 16), np.float32)
    r = np.ones(4, np.float32)
    bw = ((lambda dy, s_, st, ds=None: fn.add_layer_norm_backward(dy, s_, st, r, ds=ds))
          if op == "layer" else
          (lambda dy, s_, st, ds=None: fn.add_rms_norm_backward(dy, s_, st, ds=ds)))
    with pytest.raises(ValueError, match=r"dy must have the shape of s \(4, 16\)"):
        bw(s[:2], s, r)
    with pytest.raises(ValueError, match=r"ds must have the shape of s"):
        bw(s, s, r, ds=s[:2])
    with pytest.raises(TypeError, match=r"dy must have dtype float32 like s"):
        bw(s.astype(np.float64), s, r)
    with pytest.raises(ValueError, match=r"\(s without its normalized axes\)"):
        bw(s, s, r[:2])
