"""fastnorm.nn's channel normalizers (GroupNorm, InstanceNorm, BatchNorm,
BatchLayerNorm, SwitchNorm) and WeightNorm: the layers against the functions,
running statistics, modes, state_dict round trips, errors, and PyTorch where
it is importable."""
import warnings

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import nn
from conftest import make_array, numeric_grad


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def ldtype(request):
    return np.dtype(request.param)


def _randomize(layer, rng):
    """Non-trivial parameters (and running statistics), through load_state_dict."""
    state = {}
    for k, v in layer.state_dict().items():
        if k == "num_batches_tracked":
            state[k] = np.array(3, np.int64)
        elif k == "running_var":
            state[k] = rng.uniform(0.5, 2.0, v.shape).astype(v.dtype)
        else:
            state[k] = make_array(v.shape, v.dtype, rng)
    layer.load_state_dict(state)
    return state


def _snapshot(layer):
    return {k: np.array(v, copy=True) for k, v in layer.state_dict().items()}


def _same_state(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _torch():
    return pytest.importorskip("torch")


# --------------------------------------------------------------------------
# Defaults, repr, constructor errors
# --------------------------------------------------------------------------

def test_defaults_follow_torch():
    g = nn.GroupNorm(2, 6)
    assert (g.num_groups, g.num_channels, g.eps, g.affine, g.axis) == (2, 6, 1e-5, True, 1)
    assert np.array_equal(g.weight, np.ones(6)) and np.array_equal(g.bias, np.zeros(6))
    assert set(g.state_dict()) == {"weight", "bias"} and g.num_batches_tracked is None
    assert repr(g) == "GroupNorm(2, 6, eps=1e-05, affine=True, dtype=float32)"

    i = nn.InstanceNorm2d(4)
    assert (i.eps, i.momentum, i.affine, i.track_running_stats) == (1e-5, 0.1, False, False)
    assert i.weight is None and i.running_mean is None and i.num_batches_tracked is None
    assert i.parameters() == [] and i.state_dict() == {}
    assert repr(i) == ("InstanceNorm2d(4, eps=1e-05, momentum=0.1, affine=False, "
                       "track_running_stats=False, dtype=float32)")

    b = nn.BatchNorm2d(4, dtype=np.float64)
    assert (b.eps, b.momentum, b.affine, b.track_running_stats) == (1e-5, 0.1, True, True)
    assert b.running_mean.dtype == np.float64 and np.array_equal(b.running_mean, np.zeros(4))
    assert np.array_equal(b.running_var, np.ones(4)) and b.num_batches_tracked == 0
    assert list(b.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                    "num_batches_tracked"]
    assert b.state_dict()["num_batches_tracked"].dtype == np.int64
    assert "BatchNorm2d(4, eps=1e-05, momentum=0.1" in repr(b)
    assert list(nn.BatchNorm1d(3, affine=False).state_dict()) == [
        "running_mean", "running_var", "num_batches_tracked"]

    s = nn.SwitchNorm(5)
    assert [p.shape for p in s.parameters()] == [(5,), (5,), (3,), (3,)]
    assert np.array_equal(s.mean_weight, np.ones(3)) and np.array_equal(s.var_weight, np.ones(3))
    assert s.running_mean.shape == (5,) and "SwitchNorm(5" in repr(s)

    bl = nn.BatchLayerNorm(4, (3, 4))
    assert bl.eps == 1e-3 and bl.running_mean.shape == (3, 4) and bl.weight.shape == (4,)
    assert nn.BatchLayerNorm(4).feature_shape == (4,) and "BatchLayerNorm(4" in repr(bl)

    for name in ["GroupNorm", "InstanceNorm", "InstanceNorm1d", "InstanceNorm2d",
                 "InstanceNorm3d", "BatchNorm", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d",
                 "BatchLayerNorm", "SwitchNorm", "WeightNorm"]:
        assert name in nn.__all__ and hasattr(nn, name)


@pytest.mark.parametrize("make, exc", [
    (lambda: nn.GroupNorm(3, 4), ValueError),          # not divisible
    (lambda: nn.GroupNorm(0, 4), ValueError),
    (lambda: nn.GroupNorm(2.0, 4), TypeError),
    (lambda: nn.GroupNorm(2, 4, eps=-1.0), ValueError),
    (lambda: nn.GroupNorm(2, 4, eps="a"), TypeError),
    (lambda: nn.GroupNorm(2, 4, axis=0), ValueError),
    (lambda: nn.GroupNorm(2, 4, axis=1.0), TypeError),
    (lambda: nn.GroupNorm(2, 4, dtype=np.int32), TypeError),
    (lambda: nn.BatchNorm2d(0), ValueError),
    (lambda: nn.BatchNorm2d(True), TypeError),
    (lambda: nn.BatchNorm2d(4, momentum=1.5), ValueError),
    (lambda: nn.BatchNorm2d(4, momentum="0.1"), TypeError),
    (lambda: nn.InstanceNorm2d(4, momentum=-0.1), ValueError),
    (lambda: nn.SwitchNorm(4, momentum=True), TypeError),
    (lambda: nn.BatchLayerNorm(4, (3, 5)), ValueError),  # must end with D
    (lambda: nn.BatchLayerNorm(4, (3.0, 4)), TypeError),
    (lambda: nn.BatchLayerNorm(4, batch_size=0), ValueError),
    (lambda: nn.BatchLayerNorm(4, inference_mean="running"), ValueError),
    (lambda: nn.WeightNorm(np.ones((3, 2), np.int64)), TypeError),
    (lambda: nn.WeightNorm(np.ones((3, 2)), axis=2), np.exceptions.AxisError),
    (lambda: nn.WeightNorm(np.ones((3, 2)), axis=0.5), TypeError),
    (lambda: nn.WeightNorm(np.ones((3, 2)), eps=-1.0), ValueError),
])
def test_constructor_errors(make, exc):
    with pytest.raises(exc):
        make()


def test_group_norm_divisibility_message():
    with pytest.raises(ValueError, match="num_channels=6 must be divisible by num_groups=4"):
        nn.GroupNorm(4, 6)


# --------------------------------------------------------------------------
# Layers against the functions, forward and backward
# --------------------------------------------------------------------------

@pytest.mark.parametrize("axis", [1, -1])
def test_group_norm_matches_functions(ldtype, axis, rng):
    layer = nn.GroupNorm(2, 6, axis=axis, dtype=ldtype)
    _randomize(layer, rng)
    shape = (3, 6, 5) if axis == 1 else (3, 5, 6)
    x = make_array(shape, ldtype, rng)
    dy = make_array(shape, ldtype, rng)
    for mode in (True, False):  # the same computation in both modes
        layer.train(mode)
        y = layer(x)
        y2, m, r = fn.group_norm(x, 2, layer.weight, layer.bias, axis=axis, return_stats=True)
        assert np.array_equal(y, y2)
        dx = layer.backward(dy)
        dx2, dw2, db2 = fn.group_norm_backward(dy, x, m, r, layer.weight, layer.bias, axis=axis)
        assert np.array_equal(dx, dx2)
        assert np.array_equal(layer.grad_weight, dw2) and np.array_equal(layer.grad_bias, db2)


def test_group_norm_without_affine(rng):
    layer = nn.GroupNorm(3, 3, affine=False, dtype=np.float64)
    x = make_array((2, 3, 4), np.float64, rng)
    assert np.array_equal(layer(x), fn.group_norm(x, 3))
    layer.backward(np.ones_like(x))
    assert layer.grad_weight is None and layer.grad_bias is None and layer.parameters() == []


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("track", [False, True])
def test_instance_norm_matches_functions(ldtype, affine, track, rng):
    layer = nn.InstanceNorm2d(3, affine=affine, track_running_stats=track, dtype=ldtype)
    _randomize(layer, rng)
    rm = None if not track else layer.running_mean.copy()
    rv = None if not track else layer.running_var.copy()
    x = make_array((2, 3, 4, 5), ldtype, rng)
    dy = make_array(x.shape, ldtype, rng)
    for training in (True, False):
        layer.train(training)
        y = layer(x)
        y2, m, r = fn.instance_norm(x, layer.weight, layer.bias, rm, rv,
                                    training=training or not track, return_stats=True)
        assert np.array_equal(y, y2)
        if track:
            assert np.array_equal(layer.running_mean, rm)
            assert np.array_equal(layer.running_var, rv)
        dx = layer.backward(dy)
        dx2, dw2, db2 = fn.instance_norm_backward(dy, x, m, r, layer.weight, layer.bias)
        assert np.array_equal(dx, dx2)
        if affine:
            assert np.array_equal(layer.grad_weight, dw2)
            assert np.array_equal(layer.grad_bias, db2)
        else:
            assert layer.grad_weight is None and layer.grad_bias is None
    # eval uses the running statistics only when tracked (torch's semantics)
    assert np.array_equal(layer(x), y2)
    assert np.array_equal(layer(x), layer.train()(x)) is (not track)


@pytest.mark.parametrize("shape, axis, cls", [
    ((6, 3), 1, nn.BatchNorm1d), ((4, 3, 5), 1, nn.BatchNorm1d),
    ((2, 3, 4, 5), 1, nn.BatchNorm2d), ((2, 4, 5, 3), -1, nn.BatchNorm2d),
    ((2, 3, 2, 2, 3), 1, nn.BatchNorm3d), ((3, 4, 3), -1, nn.BatchNorm),
])
def test_batch_norm_matches_functions(ldtype, shape, axis, cls, rng):
    layer = cls(3, axis=axis, dtype=ldtype)
    _randomize(layer, rng)
    rm, rv = layer.running_mean.copy(), layer.running_var.copy()
    dy = make_array(shape, ldtype, rng)
    for training in (True, True, False):
        x = make_array(shape, ldtype, rng)
        layer.train(training)
        y = layer(x)
        y2, m, r = fn.batch_norm(x, rm, rv, layer.weight, layer.bias, training=training,
                                 axis=axis, return_stats=True)
        assert np.array_equal(y, y2)
        assert np.array_equal(layer.running_mean, rm) and np.array_equal(layer.running_var, rv)
        dx = layer.backward(dy)
        dx2, dw2, db2 = fn.batch_norm_backward(dy, x, m, r, layer.weight, layer.bias,
                                               training=training, axis=axis)
        assert np.array_equal(dx, dx2)
        assert np.array_equal(layer.grad_weight, dw2) and np.array_equal(layer.grad_bias, db2)
    assert layer.num_batches_tracked == 3 + 2  # _randomize loaded 3


@pytest.mark.parametrize("fshape", [(4,), (3, 4)])
@pytest.mark.parametrize("inference", [("population", "population"), ("batch", "population"),
                                       ("batch", "batch")])
def test_batch_layer_norm_matches_functions(ldtype, fshape, inference, rng):
    layer = nn.BatchLayerNorm(4, fshape, inference_mean=inference[0],
                              inference_var=inference[1], dtype=ldtype)
    _randomize(layer, rng)
    rm, rv = layer.running_mean.copy(), layer.running_var.copy()
    dy = make_array((5,) + fshape, ldtype, rng)
    for training in (True, False):
        layer.train(training)
        x = make_array((5,) + fshape, ldtype, rng)
        y = layer(x)
        y2, st = fn.batch_layer_norm(x, layer.weight, layer.bias, rm, rv, training=training,
                                     inference_mean=inference[0], inference_var=inference[1],
                                     return_stats=True)
        assert np.array_equal(y, y2)
        assert np.array_equal(layer.running_mean, rm) and np.array_equal(layer.running_var, rv)
        dx = layer.backward(dy)
        dx2, dw2, db2 = fn.batch_layer_norm_backward(dy, x, st, layer.weight, layer.bias)
        assert np.array_equal(dx, dx2)
        assert np.array_equal(layer.grad_weight, dw2) and np.array_equal(layer.grad_bias, db2)


def test_batch_layer_norm_fixed_batch_size(rng):
    layer = nn.BatchLayerNorm(4, batch_size=32, dtype=np.float64)
    x = make_array((5, 4), np.float64, rng)
    rm, rv = np.zeros(4), np.ones(4)
    assert np.array_equal(layer(x), fn.batch_layer_norm(x, np.ones(4), np.zeros(4), rm, rv,
                                                        batch_size=32))
    assert not np.array_equal(layer(x), fn.batch_layer_norm(x, np.ones(4), np.zeros(4)))


@pytest.mark.parametrize("axis", [1, -1])
def test_switch_norm_matches_functions(ldtype, axis, rng):
    layer = nn.SwitchNorm(3, axis=axis, dtype=ldtype)
    _randomize(layer, rng)
    rm, rv = layer.running_mean.copy(), layer.running_var.copy()
    shape = (4, 3, 5) if axis == 1 else (4, 5, 3)
    dy = make_array(shape, ldtype, rng)
    for training in (True, False):
        layer.train(training)
        x = make_array(shape, ldtype, rng)
        y = layer(x)
        y2, st = fn.switch_norm(x, layer.weight, layer.bias, layer.mean_weight,
                                layer.var_weight, rm, rv, training=training, axis=axis,
                                return_stats=True)
        assert np.array_equal(y, y2)
        assert np.array_equal(layer.running_mean, rm) and np.array_equal(layer.running_var, rv)
        dx = layer.backward(dy)
        dx2, dw2, db2, dmw, dvw = fn.switch_norm_backward(
            dy, x, st, layer.weight, layer.bias, layer.mean_weight, layer.var_weight, axis=axis)
        assert np.array_equal(dx, dx2)
        assert np.array_equal(layer.grad_weight, dw2) and np.array_equal(layer.grad_bias, db2)
        assert layer.grad_mean_weight.dtype == ldtype and layer.grad_mean_weight.shape == (3,)
        assert np.array_equal(layer.grad_mean_weight, dmw.astype(ldtype))
        assert np.array_equal(layer.grad_var_weight, dvw.astype(ldtype))


@pytest.mark.parametrize("training", [True, False])
def test_switch_norm_mixing_grads_finite_differences(training, rng):
    """grad_mean_weight / grad_var_weight of the layer against central differences
    of the functional switch_norm, float64."""
    layer = nn.SwitchNorm(3, dtype=np.float64).train(training)
    state = _randomize(layer, rng)
    x = make_array((2, 3, 4), np.float64, rng)
    r = rng.standard_normal(x.shape)
    layer(x)
    dx = layer.backward(r)

    def loss(mw, vw, xv=x):
        y = fn.switch_norm(xv, state["weight"], state["bias"], mw, vw,
                           state["running_mean"].copy(), state["running_var"].copy(),
                           training=training)
        return float(np.sum(y * r))

    gm = numeric_grad(lambda v: loss(v, state["var_weight"]), state["mean_weight"])
    gv = numeric_grad(lambda v: loss(state["mean_weight"], v), state["var_weight"])
    assert np.abs(layer.grad_mean_weight).max() > 1e-6  # a real signal, not zeros
    assert np.max(np.abs(layer.grad_mean_weight - gm)) < 1e-7
    assert np.max(np.abs(layer.grad_var_weight - gv)) < 1e-7
    gx = numeric_grad(lambda v: loss(state["mean_weight"], state["var_weight"], v), x)
    assert np.max(np.abs(dx - gx)) < 1e-7


# --------------------------------------------------------------------------
# Running statistics, modes, num_batches_tracked
# --------------------------------------------------------------------------

def test_batch_norm_running_stats_evolve_and_count(rng):
    layer = nn.BatchNorm2d(3, dtype=np.float64)
    x = make_array((4, 3, 2, 2), np.float64, rng)
    layer.eval()
    layer(x)
    assert layer.num_batches_tracked == 0  # eval forwards do not count or update
    assert np.array_equal(layer.running_mean, np.zeros(3))
    layer.train()
    layer(x)
    mu = x.mean(axis=(0, 2, 3))
    var = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.running_mean, 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, 0.9 + 0.1 * var, rtol=1e-12)
    layer(x)
    assert layer.num_batches_tracked == 2
    np.testing.assert_allclose(layer.running_mean, 0.19 * mu, rtol=1e-12)
    assert int(layer.state_dict()["num_batches_tracked"]) == 2


def test_batch_norm_momentum_none_is_cumulative_average(rng):
    layer = nn.BatchNorm1d(3, momentum=None, dtype=np.float64)
    _randomize(layer, rng)          # start from nonzero statistics and count 3
    layer.reset_running_stats()
    assert layer.num_batches_tracked == 0
    means, variances = [], []
    for _ in range(5):
        x = make_array((6, 3, 4), np.float64, rng)
        layer(x)
        means.append(x.mean(axis=(0, 2)))
        variances.append(x.var(axis=(0, 2), ddof=1))
    assert layer.num_batches_tracked == 5
    np.testing.assert_allclose(layer.running_mean, np.mean(means, axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, np.mean(variances, axis=0), rtol=1e-12)


def test_untracked_layers_use_batch_stats_in_eval(rng):
    x = make_array((4, 3, 5), np.float32, rng)
    for layer in (nn.BatchNorm1d(3, track_running_stats=False), nn.InstanceNorm1d(3)):
        assert layer.running_mean is None and layer.num_batches_tracked is None
        y = layer(x)
        assert np.array_equal(layer.eval()(x), y)
        assert "running_mean" not in layer.state_dict()


def test_instance_norm_running_stats(rng):
    layer = nn.InstanceNorm1d(3, track_running_stats=True, momentum=None, dtype=np.float64)
    xs = [make_array((2, 3, 6), np.float64, rng) for _ in range(3)]
    for x in xs:
        layer(x)
    assert layer.num_batches_tracked == 3
    np.testing.assert_allclose(layer.running_mean,
                               np.mean([x.mean(axis=(0, 2)) for x in xs], axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var,
                               np.mean([x.var(axis=2, ddof=1).mean(axis=0) for x in xs], axis=0),
                               rtol=1e-12)
    layer.eval()
    x = xs[0]
    expected = (x - layer.running_mean[:, None]) / np.sqrt(layer.running_var[:, None] + 1e-5)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_switch_and_batch_layer_norm_running_stats(rng):
    s = nn.SwitchNorm(3, dtype=np.float64)
    x = make_array((4, 3, 5), np.float64, rng)
    s(x)
    assert s.num_batches_tracked == 1
    np.testing.assert_allclose(s.running_mean, 0.1 * x.mean(axis=(0, 2)), rtol=1e-12)
    y_eval = s.eval()(x)
    assert not np.array_equal(y_eval, s.train()(x))  # eval uses the running BN statistics

    b = nn.BatchLayerNorm(4, (2, 4), momentum=None, dtype=np.float64)
    xs = [make_array((5, 2, 4), np.float64, rng) for _ in range(2)]
    for xb in xs:
        b(xb)
    assert b.num_batches_tracked == 2
    np.testing.assert_allclose(b.running_mean, np.mean([v.mean(axis=0) for v in xs], axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(b.running_var,
                               np.mean([v.var(axis=0, ddof=1) for v in xs], axis=0), rtol=1e-12)


def test_layer_of_other_input_dtype(rng):
    """A float32 layer takes float64 input: the running statistics are updated
    in their float32 arrays, gradients come in the parameters' dtype."""
    for layer in (nn.BatchNorm2d(3), nn.SwitchNorm(3),
                  nn.InstanceNorm2d(3, affine=True, track_running_stats=True)):
        rm = layer.running_mean
        x = make_array((2, 3, 2, 3), np.float64, rng)
        y = layer(x)
        assert y.dtype == np.float64
        assert layer.running_mean is rm and rm.dtype == np.float32
        assert np.abs(rm).max() > 0
        layer.backward(np.ones_like(x))
        assert layer.grad_weight.dtype == np.float32


def test_train_eval_switching_returns_self():
    for layer in (nn.GroupNorm(1, 2), nn.BatchNorm1d(2), nn.InstanceNorm1d(2),
                  nn.SwitchNorm(2), nn.BatchLayerNorm(2), nn.WeightNorm(np.ones((2, 2)))):
        assert layer.training is True
        assert layer.eval() is layer and layer.training is False
        assert layer.train() is layer and layer.training is True
        assert layer.train(False).training is False


def test_reset_and_zero_grad(rng):
    layer = nn.SwitchNorm(3, dtype=np.float64)
    _randomize(layer, rng)
    layer(make_array((2, 3, 4), np.float64, rng))
    layer.backward(np.ones((2, 3, 4)))
    assert all(getattr(layer, "grad_" + n) is not None for n in layer._param_names)
    layer.zero_grad()
    assert all(getattr(layer, "grad_" + n) is None for n in layer._param_names)
    layer.reset_parameters()
    fresh = nn.SwitchNorm(3, dtype=np.float64)
    assert _same_state(layer.state_dict(), fresh.state_dict())


# --------------------------------------------------------------------------
# state_dict
# --------------------------------------------------------------------------

FACTORIES = {
    "group": (lambda dt: nn.GroupNorm(2, 4, dtype=dt), (3, 4, 5)),
    "instance": (lambda dt: nn.InstanceNorm2d(4, affine=True, track_running_stats=True,
                                              dtype=dt), (3, 4, 2, 3)),
    "batch": (lambda dt: nn.BatchNorm1d(4, dtype=dt), (3, 4, 5)),
    "switch": (lambda dt: nn.SwitchNorm(4, dtype=dt), (3, 4, 5)),
    "bln": (lambda dt: nn.BatchLayerNorm(4, (5, 4), dtype=dt), (3, 5, 4)),
}


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_state_dict_round_trip(kind, ldtype, rng):
    make, shape = FACTORIES[kind]
    layer = make(ldtype)
    _randomize(layer, rng)
    for _ in range(2):
        layer(make_array(shape, ldtype, rng))  # moves running statistics and the count
    sd = layer.state_dict()
    for k, v in sd.items():
        if k != "num_batches_tracked":
            assert v.dtype == ldtype
        v[...] = 7  # copies: the layer is not changed through the dict
    assert not _same_state(layer.state_dict(), sd)
    other = make(ldtype)
    other.load_state_dict(layer.state_dict())
    assert _same_state(other.state_dict(), layer.state_dict())
    if layer.num_batches_tracked is not None:
        assert other.num_batches_tracked == layer.num_batches_tracked == 5
        assert isinstance(other.num_batches_tracked, int)
    x = make_array(shape, ldtype, rng)
    layer.eval(), other.eval()
    assert np.array_equal(other(x), layer(x))
    # loading converts to the layer's dtype and copies
    src = {k: (v if k == "num_batches_tracked" else v.astype(np.float64))
           for k, v in layer.state_dict().items()}
    other.load_state_dict(src)
    for k, v in src.items():
        if k != "num_batches_tracked":
            v[...] = -1.0
            assert getattr(other, k).dtype == ldtype
    assert _same_state(other.state_dict(), layer.state_dict())


@pytest.mark.parametrize("kind", list(FACTORIES))
def test_load_state_dict_errors_leave_layer_unchanged(kind, rng):
    layer = FACTORIES[kind][0](np.float32)
    state = _randomize(layer, rng)
    before = _snapshot(layer)
    first = next(iter(state))
    bad_states = [
        ({}, KeyError),
        ({**state, "extra": np.ones(4)}, KeyError),
        ({k: v for k, v in state.items() if k != first}, KeyError),
        # the first entry is fine, the last has a wrong shape: nothing is loaded
        ({**state, list(state)[-2 if "num_batches_tracked" in state else -1]: np.ones(9)},
         ValueError),
    ]
    if "num_batches_tracked" in state:
        bad_states += [({**state, "num_batches_tracked": np.array(-1)}, ValueError),
                       ({**state, "num_batches_tracked": 2.5}, TypeError),
                       ({**state, "num_batches_tracked": np.array([2])}, TypeError)]
    if "running_mean" in state:
        bad_states.append(({**state, "running_mean": state["running_mean"][None]}, ValueError))
    # values that are not real numbers: a TypeError naming the key, before anything
    # is loaded (a complex array would lose its imaginary part)
    last = [k for k in state if k != "num_batches_tracked"][-1]
    shape = np.shape(state[last])
    bad_states += [
        ({**state, last: np.full(shape, "a")}, TypeError, last),
        ({**state, last: np.full(shape, "1.5")}, TypeError, last),
        ({**state, last: np.ones(shape, np.complex64)}, TypeError, last),
        ({**state, last: np.full(shape, None, object)}, TypeError, last),
    ]
    for bad, exc, *name in bad_states:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(exc, match=name[0] if name else None):
                layer.load_state_dict(bad)
        assert _same_state(_snapshot(layer), before)
    layer.load_state_dict({**state, **({"num_batches_tracked": 4}
                                       if "num_batches_tracked" in state else {})})


# --------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------

def test_alias_ndim_checks():
    f = np.ones
    nn.BatchNorm1d(3)(f((4, 3), np.float32))
    nn.BatchNorm1d(3)(f((4, 3, 2), np.float32))
    with pytest.raises(ValueError, match="2-d or 3-d"):
        nn.BatchNorm1d(3)(f((4, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="4-d"):
        nn.BatchNorm2d(3)(f((4, 3, 2), np.float32))
    with pytest.raises(ValueError, match="5-d"):
        nn.BatchNorm3d(3)(f((4, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="unbatched"):
        nn.InstanceNorm1d(3)(f((3, 4), np.float32))
    with pytest.raises(ValueError, match="4-d"):
        nn.InstanceNorm2d(3)(f((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="5-d"):
        nn.InstanceNorm3d(3)(f((2, 3, 4, 4), np.float32))
    nn.InstanceNorm3d(3)(np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 2, 2, 2))


def test_input_errors(rng):
    x = make_array((2, 4, 3), np.float32, rng)
    with pytest.raises(ValueError, match="channels"):
        nn.GroupNorm(2, 6)(x)
    with pytest.raises(ValueError, match="channels"):
        nn.BatchNorm1d(3)(x)
    with pytest.raises(ValueError, match="channels"):
        nn.InstanceNorm1d(3, affine=True)(x)
    with pytest.warns(UserWarning, match="num_features"):
        nn.InstanceNorm1d(3)(x)  # torch warns too: num_features is unused
    with pytest.raises(TypeError, match="x"):
        nn.BatchNorm1d(4)(x.astype(np.int32))
    with pytest.raises(ValueError, match="shape"):
        nn.BatchLayerNorm(4, (3, 4))(x)
    with pytest.raises(ValueError, match="more than 1"):
        nn.BatchNorm1d(4)(x[:1, :, :1])
    for layer in (nn.GroupNorm(2, 4), nn.BatchNorm1d(4), nn.InstanceNorm1d(4),
                  nn.SwitchNorm(4), nn.BatchLayerNorm(3, (4, 3))):
        with pytest.raises(RuntimeError):
            layer.backward(x)


def test_failed_forward_leaves_running_stats(rng):
    layer = nn.BatchNorm1d(4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError):
            layer(np.ones((1, 4), np.float32))  # one value per channel
    assert layer.num_batches_tracked == 0 and np.array_equal(layer.running_mean, np.zeros(4))


# --------------------------------------------------------------------------
# WeightNorm
# --------------------------------------------------------------------------

@pytest.mark.parametrize("axis, gshape", [(0, (4, 1, 1)), (1, (1, 3, 1)), (-1, (1, 1, 2)),
                                          (None, ())])
def test_weight_norm_matches_functions(ldtype, axis, gshape, rng):
    w0 = make_array((4, 3, 2), ldtype, rng)
    wn = nn.WeightNorm(w0, axis=axis)
    assert wn.g.shape == gshape and wn.v.dtype == ldtype and wn.g.dtype == ldtype
    assert np.array_equal(wn.v, w0) and wn.v is not w0
    np.testing.assert_allclose(wn(), w0, rtol=1e-6 if ldtype == np.float32 else 1e-14)
    _randomize(wn, rng)
    w = wn()
    assert np.array_equal(w, fn.weight_norm(wn.v, wn.g, axis=axis))
    assert np.array_equal(wn.weight, w) and np.array_equal(wn.compute_weight(), w)
    dw = make_array(w0.shape, ldtype, rng)
    gg, gv = wn.backward(dw)
    dv, dg = fn.weight_norm_backward(dw, wn.v, wn.g, axis=axis)
    assert gg is wn.grad_g and gv is wn.grad_v
    assert np.array_equal(gv, dv) and np.array_equal(gg, dg) and gg.shape == gshape
    assert [p.shape for p in wn.parameters()] == [gshape, w0.shape]
    wn.zero_grad()
    assert wn.grad_g is None and wn.grad_v is None
    with pytest.raises(ValueError):
        wn.load_state_dict({"g": np.ones(4), "v": wn.v})


def test_weight_norm_eps(rng):
    w0 = make_array((3, 5), np.float64, rng)
    wn = nn.WeightNorm(w0, eps=0.25)
    np.testing.assert_allclose(wn.g[:, 0], np.sqrt((w0 ** 2).sum(axis=1) + 0.25), rtol=1e-14)
    np.testing.assert_allclose(wn(), w0, rtol=1e-14)
    assert "eps=0.25" in repr(wn)


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------

@pytest.mark.torch
def test_batch_norm_momentum_none_matches_torch(rng):
    torch = _torch()
    layer = nn.BatchNorm2d(3, momentum=None, dtype=np.float64)
    state = _randomize(layer, rng)
    layer.num_batches_tracked = 0
    tl = torch.nn.BatchNorm2d(3, momentum=None, dtype=torch.float64)
    with torch.no_grad():
        for k in ("weight", "bias", "running_mean", "running_var"):
            getattr(tl, k).copy_(torch.from_numpy(state[k]))
    for step in range(4):
        x = make_array((2, 3, 3, 2), np.float64, rng)
        dy = make_array(x.shape, np.float64, rng)
        if step == 3:
            layer.eval(), tl.eval()
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = tl(xt)
        yt.backward(torch.from_numpy(dy))
        y = layer(x)
        dx = layer.backward(dy)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.grad_weight, tl.weight.grad.numpy(), rtol=1e-10,
                                   atol=1e-12)
        tl.weight.grad = tl.bias.grad = None
    assert layer.num_batches_tracked == int(tl.num_batches_tracked) == 3
    np.testing.assert_allclose(layer.running_mean, tl.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(layer.running_var, tl.running_var.numpy(), rtol=1e-12)
    tsd = tl.state_dict()
    sd = layer.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        np.testing.assert_allclose(sd[k], tsd[k].numpy(), rtol=1e-12)


@pytest.mark.torch
def test_instance_norm_tracking_matches_torch(rng):
    torch = _torch()
    layer = nn.InstanceNorm1d(3, affine=True, track_running_stats=True, dtype=np.float64)
    _randomize(layer, rng)
    tl = torch.nn.InstanceNorm1d(3, affine=True, track_running_stats=True, dtype=torch.float64)
    with torch.no_grad():
        for k in ("weight", "bias", "running_mean", "running_var"):
            getattr(tl, k).copy_(torch.from_numpy(getattr(layer, k)))
    for training in (True, False):
        layer.train(training), tl.train(training)
        x = make_array((2, 3, 5), np.float64, rng)
        dy = make_array(x.shape, np.float64, rng)
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = tl(xt)
        yt.backward(torch.from_numpy(dy))
        np.testing.assert_allclose(layer(x), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.backward(dy), xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.running_var, tl.running_var.numpy(), rtol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("axis", [0, 1, None])
def test_weight_norm_matches_torch(axis, rng):
    torch = _torch()
    w0 = make_array((4, 3, 2, 2), np.float64, rng)
    conv = torch.nn.Conv2d(3, 4, 2, bias=False, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w0))
    conv = torch.nn.utils.parametrizations.weight_norm(conv, dim=axis)
    tg = conv.parametrizations.weight.original0
    tv = conv.parametrizations.weight.original1
    wn = nn.WeightNorm(w0, axis=axis)
    assert wn.g.shape == tuple(tg.shape)
    np.testing.assert_allclose(wn.g, tg.detach().numpy(), rtol=1e-14)
    # new values for both, then forward and backward
    g = rng.uniform(0.5, 2.0, wn.g.shape)
    v = make_array(w0.shape, np.float64, rng)
    wn.load_state_dict({"g": g, "v": v})
    with torch.no_grad():
        tg.copy_(torch.from_numpy(g))
        tv.copy_(torch.from_numpy(v))
    dw = make_array(w0.shape, np.float64, rng)
    wt = conv.weight
    wt.backward(torch.from_numpy(dw))
    np.testing.assert_allclose(wn(), wt.detach().numpy(), rtol=1e-12, atol=1e-14)
    gg, gv = wn.backward(dw)
    np.testing.assert_allclose(gg, tg.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gv, tv.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [nn.BatchNorm1d, nn.InstanceNorm1d])
def test_float64_layer_keeps_float64_running_stats_for_float32_input(cls):
    """A float64 layer given float32 data updates its float64 running
    statistics in float64: momentum 0 leaves 0.1 exactly (no float32 rounding
    at each step), and a step is the float64 formula."""
    kw = {"track_running_stats": True} if cls is nn.InstanceNorm1d else {}
    layer = cls(2, momentum=0.0, dtype=np.float64, **kw)
    layer.running_mean[:] = 0.1
    x = np.random.default_rng(0).standard_normal((4, 2, 5)).astype(np.float32)
    layer(x)
    assert layer.running_mean.dtype == np.float64 and np.all(layer.running_mean == 0.1)
    layer.momentum = 0.5
    held = layer.running_mean
    layer(x)
    assert layer.running_mean is held and not np.array_equal(
        held, held.astype(np.float32).astype(np.float64))
