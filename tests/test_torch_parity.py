"""Parity with PyTorch (docs/numerics.md: where it is silent, match PyTorch 2.x):
F.layer_norm / F.rms_norm and their autograd gradients, torch.nn.LayerNorm /
RMSNorm against fastnorm.nn. Skipped when torch is not importable."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastnorm as fn  # noqa: E402
from fastnorm import nn  # noqa: E402
from conftest import assert_close, make_array, sum_scale  # noqa: E402

pytestmark = pytest.mark.torch

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
# (input shape, normalized_shape)
SHAPES = [((6, 32), (32,)), ((2, 5, 17), (17,)), ((3, 4, 9), (4, 9)), ((2, 3, 5, 6), (5, 6))]
SHAPE_IDS = [f"{s}-{n}" for s, n in SHAPES]


def _t(a, grad=False):
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.requires_grad_(grad)


@pytest.mark.parametrize("shape,nshape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("affine", ["none", "weight", "weight+bias"])
def test_layer_norm_matches_torch(isa, dtype, shape, nshape, affine, rng):
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w = make_array(nshape, dtype, rng, loc=1.0, scale=0.5) if affine != "none" else None
    b = make_array(nshape, dtype, rng) if affine == "weight+bias" else None
    axis = tuple(range(-len(nshape), 0))

    xt = _t(x, True)
    wt = _t(w, True) if w is not None else None
    bt = _t(b, True) if b is not None else None
    yt = F.layer_norm(xt, nshape, wt, bt, eps=1e-5)
    yt.backward(_t(dy))

    y, mean, rstd = fn.layer_norm(x, w, b, axis=axis, eps=1e-5, return_stats=True)
    assert_close(y, yt.detach().numpy(), dtype, factor=2, what="y")
    # the statistics are those of torch.native_layer_norm
    _, mt, rt = torch.native_layer_norm(_t(x), nshape, None, None, 1e-5)
    assert_close(mean, mt.reshape(mean.shape).numpy(), dtype, scale=np.abs(x).max(), what="mean")
    assert_close(rstd, rt.reshape(rstd.shape).numpy(), dtype,
                 scale=np.abs(rt.numpy()).max(), what="rstd")

    dx, dw, db = fn.layer_norm_backward(dy, x, mean, rstd, w, axis=axis)
    dxe = xt.grad.numpy()
    assert_close(dx, dxe, dtype, factor=8, what="dx")
    others = tuple(range(x.ndim - len(nshape)))
    if w is not None:
        xh = fn.layer_norm(x.astype(np.float64), axis=axis)
        assert_close(dw, wt.grad.numpy(), dtype, factor=8,
                     scale=sum_scale(dy.astype(np.float64) * xh, others), what="dweight")
    if b is not None:
        assert_close(db, bt.grad.numpy(), dtype, factor=8, scale=sum_scale(dy, others),
                     what="dbias")


@pytest.mark.parametrize("shape,nshape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("weight", [False, True], ids=["noweight", "weight"])
@pytest.mark.parametrize("eps", [None, 1e-6])
def test_rms_norm_matches_torch(isa, dtype, shape, nshape, weight, eps, rng):
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w = make_array(nshape, dtype, rng, loc=1.0, scale=0.5) if weight else None
    axis = tuple(range(-len(nshape), 0))

    xt = _t(x, True)
    wt = _t(w, True) if w is not None else None
    yt = F.rms_norm(xt, nshape, wt, eps=eps)
    yt.backward(_t(dy))

    y, rstd = fn.rms_norm(x, w, axis=axis, eps=eps, return_stats=True)
    assert_close(y, yt.detach().numpy(), dtype, factor=2, what="y")
    dx, dw = fn.rms_norm_backward(dy, x, rstd, w, axis=axis)
    assert_close(dx, xt.grad.numpy(), dtype, factor=8, what="dx")
    if w is not None:
        others = tuple(range(x.ndim - len(nshape)))
        xh = fn.rms_norm(x.astype(np.float64), axis=axis, eps=0.0)
        assert_close(dw, wt.grad.numpy(), dtype, factor=8,
                     scale=sum_scale(dy.astype(np.float64) * xh, others), what="dweight")


def test_rms_norm_default_eps_matches_torch(dtype, rng):
    """eps=None is the dtype's machine epsilon in both libraries: visible on tiny inputs."""
    x = make_array((4, 16), dtype, rng) * np.sqrt(np.finfo(dtype).eps)
    yt = F.rms_norm(_t(x), (16,), None, eps=None).numpy()
    assert_close(fn.rms_norm(x), yt, dtype, factor=2)
    # and it matters: eps=0 gives something else
    assert np.max(np.abs(fn.rms_norm(x, eps=0.0) - yt)) > 1e-3


def _half_dtypes():
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - the bf16 extra is not installed
        bf16 = None
    else:
        bf16 = np.dtype(ml_dtypes.bfloat16)
    return [
        pytest.param(np.dtype(np.float16), torch.float16, id="float16"),
        pytest.param(bf16, torch.bfloat16, id="bfloat16",
                     marks=pytest.mark.skipif(bf16 is None, reason="ml_dtypes is not installed")),
    ]


@pytest.mark.parametrize("dt,tdt", _half_dtypes())
def test_rms_norm_default_eps_16bit_matches_torch(dt, tdt, rng):
    """For float16 and bfloat16 data torch's default eps is float32's machine
    epsilon (the computing dtype's), not the 16-bit type's: rows small enough
    for eps to matter give torch's values, by F.rms_norm and by nn.RMSNorm."""
    x = (rng.standard_normal((6, 16)) * np.array([1e-2, 3e-3, 1e-3, 1e-1, 1.0, 3e-2])[:, None])
    x = x.astype(dt)
    x[0] = 0
    x[0, 0] = 1e-2
    xt = torch.from_numpy(x.astype(np.float32)).to(tdt)  # exact
    yt = F.rms_norm(xt, (16,), None, eps=None).float().numpy()
    y = fn.rms_norm(x)
    assert y.dtype == dt
    # each result is the float32 computation rounded once: torch's within one 16-bit ulp
    ulp = np.spacing(np.abs(yt).astype(dt)).astype(np.float64)
    assert np.all(np.abs(y.astype(np.float64) - yt) <= ulp), (y, yt)
    v = float(x[0, 0])
    want = v / np.sqrt(v * v / 16 + 2.0 ** -23)  # 3.96; 0.32 (float16) or 0.11 with 16-bit eps
    assert abs(float(y[0, 0]) - want) < 0.01 * want
    tl = torch.nn.RMSNorm(16, dtype=tdt)
    with torch.no_grad():
        yl = tl(xt).float().numpy()
    assert np.array_equal(yl, yt)
    assert np.array_equal(nn.RMSNorm(16, dtype=dt)(x).astype(np.float32),
                          y.astype(np.float32))


@pytest.mark.parametrize("value", [1234.0, 1e6])
def test_adversarial_rows_match_torch_float64(value, rng):
    """Constant and large-mean rows: fastnorm in float32 against torch in float64."""
    x = np.concatenate([np.full((2, 64), value),
                        value + rng.standard_normal((3, 64))]).astype(np.float32)
    yt = F.layer_norm(_t(x.astype(np.float64)), (64,)).numpy()
    assert np.max(np.abs(fn.layer_norm(x) - yt)) <= 1e-5


@pytest.mark.parametrize("nshape", [(16,), (4, 8)], ids=["1d", "2d"])
@pytest.mark.parametrize("kind", ["affine", "no-bias", "no-affine"])
def test_nn_layer_norm_matches_torch(dtype, nshape, kind, rng):
    affine = kind != "no-affine"
    bias = kind == "affine"
    tl = torch.nn.LayerNorm(nshape, eps=1e-5, elementwise_affine=affine, bias=bias,
                            dtype=TORCH_DTYPE[dtype])
    with torch.no_grad():
        for p in tl.parameters():
            p.copy_(_t(make_array(tuple(p.shape), dtype, rng)))
    fl = nn.LayerNorm(nshape, eps=1e-5, elementwise_affine=affine, bias=bias, dtype=dtype)
    fl.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    assert set(fl.state_dict()) == set(tl.state_dict())

    x = make_array((5,) + nshape, dtype, rng)
    dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    xt = _t(x, True)
    yt = tl(xt)
    yt.backward(_t(dy))
    y = fl(x)
    dx = fl.backward(dy)
    assert_close(y, yt.detach().numpy(), dtype, factor=2, what="y")
    assert_close(dx, xt.grad.numpy(), dtype, factor=8, what="dx")
    if affine:
        xh = fn.layer_norm(x.astype(np.float64), axis=tuple(range(-len(nshape), 0)))
        assert_close(fl.grad_weight, tl.weight.grad.numpy(), dtype, factor=8,
                     scale=sum_scale(dy.astype(np.float64) * xh, (0,)), what="grad_weight")
    else:
        assert fl.grad_weight is None
    if bias:
        assert_close(fl.grad_bias, tl.bias.grad.numpy(), dtype, factor=8,
                     scale=sum_scale(dy, (0,)), what="grad_bias")
    else:
        assert fl.grad_bias is None


@pytest.mark.parametrize("nshape", [(16,), (4, 8)], ids=["1d", "2d"])
@pytest.mark.parametrize("eps", [None, 1e-4])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_nn_rms_norm_matches_torch(dtype, nshape, eps, affine, rng):
    tl = torch.nn.RMSNorm(nshape, eps=eps, elementwise_affine=affine, dtype=TORCH_DTYPE[dtype])
    with torch.no_grad():
        for p in tl.parameters():
            p.copy_(_t(make_array(tuple(p.shape), dtype, rng)))
    fl = nn.RMSNorm(nshape, eps=eps, elementwise_affine=affine, dtype=dtype)
    fl.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})

    x = make_array((6,) + nshape, dtype, rng)
    dy = make_array(x.shape, dtype, rng, loc=0.0, scale=1.0)
    xt = _t(x, True)
    yt = tl(xt)
    yt.backward(_t(dy))
    assert_close(fl(x), yt.detach().numpy(), dtype, factor=2, what="y")
    assert_close(fl.backward(dy), xt.grad.numpy(), dtype, factor=8, what="dx")
    if affine:
        xh = fn.rms_norm(x.astype(np.float64), axis=tuple(range(-len(nshape), 0)), eps=0.0)
        assert_close(fl.grad_weight, tl.weight.grad.numpy(), dtype, factor=8,
                     scale=sum_scale(dy.astype(np.float64) * xh, (0,)), what="grad_weight")
    else:
        assert fl.grad_weight is None


def test_nn_defaults_match_torch():
    tl, fl = torch.nn.LayerNorm(8), nn.LayerNorm(8)
    assert fl.eps == tl.eps
    assert np.array_equal(fl.weight, tl.weight.detach().numpy())
    assert np.array_equal(fl.bias, tl.bias.detach().numpy())
    tr, fr = torch.nn.RMSNorm(8), nn.RMSNorm(8)
    assert fr.eps == tr.eps  # None for both
    assert np.array_equal(fr.weight, tr.weight.detach().numpy())
