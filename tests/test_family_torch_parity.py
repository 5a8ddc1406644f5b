"""Parity of the channel normalizers' functions with PyTorch: F.group_norm,
F.instance_norm (with and without running statistics), F.batch_norm (training
and eval, running statistics after several steps), values and autograd
gradients. Channels-last inputs are compared with torch on the permuted
array. Skipped when torch is not importable."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastnorm as fn  # noqa: E402
from conftest import assert_close, make_array, sum_scale  # noqa: E402

pytestmark = pytest.mark.torch


def _t(a, grad=False):
    return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(grad)


def _to_nchw(a, axis):
    """x with its channel axis moved to 1 (what torch expects)."""
    return np.moveaxis(a, axis, 1) if axis != 1 else a


def _from_nchw(a, axis):
    return np.moveaxis(a, 1, axis) if axis != 1 else a


def _params(C, dtype, rng, affine):
    if not affine:
        return None, None
    return (make_array((C,), dtype, rng, loc=1.0, scale=0.5), make_array((C,), dtype, rng))


def _torch_grads(fwd, x, dy, w, b, axis):
    xt = _t(_to_nchw(x, axis), True)
    wt = _t(w, True) if w is not None else None
    bt = _t(b, True) if b is not None else None
    yt = fwd(xt, wt, bt)
    yt.backward(_t(_to_nchw(dy, axis)))
    grads = (_from_nchw(xt.grad.numpy(), axis),
             wt.grad.numpy() if wt is not None else None,
             bt.grad.numpy() if bt is not None else None)
    return _from_nchw(yt.detach().numpy(), axis), grads


def _check_grads(got, want, dy, xhat, axis, dtype):
    dx, dw, db = got
    dxe, dwe, dbe = want
    assert_close(dx, dxe, dtype, factor=16, what="dx")
    others = tuple(i for i in range(dy.ndim) if i != axis % dy.ndim)
    if dwe is not None:
        assert_close(dw, dwe, dtype, factor=16, scale=sum_scale(dy * xhat, others),
                     what="dweight")
    else:
        assert dw is None
    if dbe is not None:
        assert_close(db, dbe, dtype, factor=16, scale=sum_scale(dy, others), what="dbias")
    else:
        assert db is None


# (shape, channel axis)
CASES = [((4, 6, 5, 7), 1), ((3, 8, 33), 1), ((4, 5, 7, 6), -1), ((2, 9, 12), -1)]
IDS = ["nchw", "ncl", "nhwc", "nlc"]


@pytest.mark.parametrize("shape,axis", CASES, ids=IDS)
@pytest.mark.parametrize("affine", [False, True], ids=["plain", "affine"])
def test_group_norm_matches_torch(dtype, shape, axis, affine, rng):
    C = shape[axis]
    G = 3 if C % 3 == 0 else 2
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w, b = _params(C, dtype, rng, affine)
    y, mean, rstd = fn.group_norm(x, G, w, b, axis=axis, return_stats=True)
    ye, ge = _torch_grads(lambda xt, wt, bt: F.group_norm(xt, G, wt, bt, eps=1e-5),
                          x, dy, w, b, axis)
    assert_close(y, ye, dtype, factor=4, what="y")
    got = fn.group_norm_backward(dy, x, mean, rstd, w, b, axis=axis)
    xhat = fn.group_norm(x.astype(np.float64), G, axis=axis)
    _check_grads(got, ge, dy.astype(np.float64), xhat, axis, dtype)


@pytest.mark.parametrize("shape,axis", CASES, ids=IDS)
@pytest.mark.parametrize("affine", [False, True], ids=["plain", "affine"])
def test_instance_norm_matches_torch(dtype, shape, axis, affine, rng):
    C = shape[axis]
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w, b = _params(C, dtype, rng, affine)
    y, mean, rstd = fn.instance_norm(x, w, b, axis=axis, return_stats=True)
    ye, ge = _torch_grads(lambda xt, wt, bt: F.instance_norm(xt, weight=wt, bias=bt, eps=1e-5),
                          x, dy, w, b, axis)
    assert_close(y, ye, dtype, factor=4, what="y")
    got = fn.instance_norm_backward(dy, x, mean, rstd, w, b, axis=axis)
    xhat = fn.instance_norm(x.astype(np.float64), axis=axis)
    _check_grads(got, ge, dy.astype(np.float64), xhat, axis, dtype)


@pytest.mark.parametrize("shape,axis", CASES[:2], ids=IDS[:2])
def test_instance_norm_running_stats_match_torch(dtype, shape, axis, rng):
    """Three training steps update the running statistics as torch does; then
    eval with use_input_stats=False normalizes with them."""
    C = shape[axis]
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    rmt, rvt = torch.zeros(C, dtype=_t(rm).dtype), torch.ones(C, dtype=_t(rv).dtype)
    for step in range(3):
        x = make_array(shape, dtype, rng, loc=step - 1.0, scale=1.0 + step)
        y = fn.instance_norm(x, None, None, rm, rv, training=True, momentum=0.2)
        yt = F.instance_norm(_t(x), rmt, rvt, use_input_stats=True, momentum=0.2)
        assert_close(y, yt.numpy(), dtype, factor=4, what=f"y step {step}")
        assert_close(rm, rmt.numpy(), dtype, factor=4, what=f"running_mean step {step}")
        assert_close(rv, rvt.numpy(), dtype, factor=4, what=f"running_var step {step}")
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w, b = _params(C, dtype, rng, True)
    y, mean, rstd = fn.instance_norm(x, w, b, rm, rv, training=False, return_stats=True)
    ye, ge = _torch_grads(lambda xt, wt, bt: F.instance_norm(
        xt, torch.from_numpy(rm), torch.from_numpy(rv), wt, bt, use_input_stats=False),
        x, dy, w, b, axis)
    assert_close(y, ye, dtype, factor=4, what="eval y")
    got = fn.instance_norm_backward(dy, x, mean, rstd, w, b, axis=axis)
    shape_c = [1] * x.ndim
    shape_c[axis] = C
    xhat = (x.astype(np.float64) - rm.reshape(shape_c)) / np.sqrt(rv.reshape(shape_c) + 1e-5)
    _check_grads(got, ge, dy.astype(np.float64), xhat, axis, dtype)


BN_CASES = [((8, 5, 6, 7), 1), ((64, 12), 1), ((6, 5, 4, 9), -1), ((16, 7, 3), 1)]
BN_IDS = ["nchw", "nc", "nhwc", "ncl"]


@pytest.mark.parametrize("shape,axis", BN_CASES, ids=BN_IDS)
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_batch_norm_training_steps_match_torch(dtype, shape, axis, momentum, rng):
    """Several training steps: y, dx, dweight, dbias and the running statistics."""
    C = shape[axis]
    rm, rv = np.zeros(C, dtype), np.ones(C, dtype)
    rmt, rvt = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    w, b = _params(C, dtype, rng, True)
    for step in range(4):
        x = make_array(shape, dtype, rng, loc=2.0 * step, scale=1.0 + step)
        dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
        y, mean, rstd = fn.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum,
                                      axis=axis, return_stats=True)
        ye, ge = _torch_grads(lambda xt, wt, bt: F.batch_norm(
            xt, rmt, rvt, wt, bt, training=True, momentum=momentum, eps=1e-5),
            x, dy, w, b, axis)
        assert_close(y, ye, dtype, factor=4, what=f"y step {step}")
        assert_close(rm, rmt.numpy(), dtype, factor=4, what=f"running_mean step {step}")
        assert_close(rv, rvt.numpy(), dtype, factor=4, what=f"running_var step {step}")
        got = fn.batch_norm_backward(dy, x, mean, rstd, w, b, training=True, axis=axis)
        xhat = fn.batch_norm(x.astype(np.float64), None, None, training=True, axis=axis)
        _check_grads(got, ge, dy.astype(np.float64), xhat, axis, dtype)


@pytest.mark.parametrize("shape,axis", BN_CASES, ids=BN_IDS)
@pytest.mark.parametrize("affine", [False, True], ids=["plain", "affine"])
def test_batch_norm_eval_matches_torch(dtype, shape, axis, affine, rng):
    C = shape[axis]
    rm = make_array((C,), dtype, rng)
    rv = np.abs(make_array((C,), dtype, rng, loc=1.0, scale=0.5)) + 0.1
    x = make_array(shape, dtype, rng)
    dy = make_array(shape, dtype, rng, loc=0.0, scale=1.0)
    w, b = _params(C, dtype, rng, affine)
    y, mean, rstd = fn.batch_norm(x, rm, rv, w, b, training=False, axis=axis,
                                  return_stats=True)
    ye, ge = _torch_grads(lambda xt, wt, bt: F.batch_norm(
        xt, torch.from_numpy(rm), torch.from_numpy(rv), wt, bt, training=False),
        x, dy, w, b, axis)
    assert_close(y, ye, dtype, factor=4, what="y")
    got = fn.batch_norm_backward(dy, x, mean, rstd, w, b, training=False, axis=axis)
    shape_c = [1] * x.ndim
    shape_c[axis] = C
    xhat = (x.astype(np.float64) - rm.reshape(shape_c)) / np.sqrt(rv.reshape(shape_c) + 1e-5)
    _check_grads(got, ge, dy.astype(np.float64), xhat, axis, dtype)
