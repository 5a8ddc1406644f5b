"""fastnorm.nn: the layer classes against the functions, gradients,
state_dict round trips, modes and errors."""
import pickle
import warnings

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import nn
from fastnorm import reference as ref
from conftest import assert_close, make_array, numeric_grad


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def ldtype(request):
    return np.dtype(request.param)


def _randomize(layer, rng):
    """Non-trivial parameters, through load_state_dict."""
    state = {k: make_array(v.shape, v.dtype, rng) for k, v in layer.state_dict().items()}
    layer.load_state_dict(state)
    return state


# --------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------

def test_layer_norm_defaults(ldtype):
    layer = nn.LayerNorm(8, dtype=ldtype)
    assert layer.normalized_shape == (8,)
    assert layer.eps == 1e-5
    assert layer.training is True
    assert layer.weight.dtype == ldtype and layer.bias.dtype == ldtype
    assert np.array_equal(layer.weight, np.ones(8)) and np.array_equal(layer.bias, np.zeros(8))
    assert layer.grad_weight is None and layer.grad_bias is None
    assert len(layer.parameters()) == 2
    assert "LayerNorm" in repr(layer)


@pytest.mark.parametrize("shape", [8, (8,), (3, 8), [3, 8], np.int64(8)])
def test_layer_norm_matches_functions(isa, ldtype, shape, rng):
    layer = nn.LayerNorm(shape, dtype=ldtype)
    _randomize(layer, rng)
    k = len(layer.normalized_shape)
    axis = tuple(range(-k, 0))
    x = make_array((5, 2) + layer.normalized_shape, ldtype, rng)
    y = layer(x)
    y2, m, r = fn.layer_norm(x, layer.weight, layer.bias, axis=axis, return_stats=True)
    assert np.array_equal(y, y2)
    assert np.array_equal(layer.forward(x), y)
    dy = make_array(x.shape, ldtype, rng)
    dx = layer.backward(dy)
    dx2, dw2, db2 = fn.layer_norm_backward(dy, x, m, r, layer.weight, axis=axis)
    assert np.array_equal(dx, dx2)
    assert np.array_equal(layer.grad_weight, dw2) and np.array_equal(layer.grad_bias, db2)
    assert layer.grad_weight.shape == layer.normalized_shape
    # and against the reference
    assert_close(y, ref.layer_norm(x, layer.weight, layer.bias, axis=axis)[0], ldtype)


def test_layer_norm_gradients_finite_differences(rng):
    layer = nn.LayerNorm((3, 4), dtype=np.float64)
    state = _randomize(layer, rng)
    x = make_array((2, 3, 4), np.float64, rng)
    r = rng.standard_normal(x.shape)
    layer(x)
    dx = layer.backward(r)

    def loss_x(v):
        return float(np.sum(layer(v) * r))

    def loss_p(name):
        def f(v):
            other = nn.LayerNorm((3, 4), dtype=np.float64)
            other.load_state_dict({**state, name: v})
            return float(np.sum(other(x) * r))
        return f

    assert np.max(np.abs(dx - numeric_grad(loss_x, x))) < 1e-7
    gw = numeric_grad(loss_p("weight"), state["weight"])
    gb = numeric_grad(loss_p("bias"), state["bias"])
    assert np.max(np.abs(layer.grad_weight - gw)) < 1e-7
    assert np.max(np.abs(layer.grad_bias - gb)) < 1e-7


def test_layer_norm_without_affine(ldtype, rng):
    layer = nn.LayerNorm(6, elementwise_affine=False, dtype=ldtype)
    assert layer.weight is None and layer.bias is None
    assert layer.parameters() == [] and layer.state_dict() == {}
    x = make_array((4, 6), ldtype, rng)
    assert np.array_equal(layer(x), fn.layer_norm(x))
    dy = make_array((4, 6), ldtype, rng)
    _, m, r = fn.layer_norm(x, return_stats=True)
    assert np.array_equal(layer.backward(dy), fn.layer_norm_backward(dy, x, m, r)[0])
    assert layer.grad_weight is None and layer.grad_bias is None


def test_layer_norm_without_bias(ldtype, rng):
    layer = nn.LayerNorm(6, bias=False, dtype=ldtype)
    assert layer.bias is None and layer.weight is not None
    assert set(layer.state_dict()) == {"weight"}
    _randomize(layer, rng)
    x = make_array((4, 6), ldtype, rng)
    assert np.array_equal(layer(x), fn.layer_norm(x, layer.weight))
    layer.backward(np.ones_like(x))
    assert layer.grad_weight is not None and layer.grad_bias is None


def test_layer_norm_eps_is_used(rng):
    layer = nn.LayerNorm(6, eps=0.5, dtype=np.float64)
    x = make_array((3, 6), np.float64, rng)
    assert np.array_equal(layer(x), fn.layer_norm(x, np.ones(6), np.zeros(6), eps=0.5))
    assert not np.array_equal(layer(x), fn.layer_norm(x))


def test_layer_norm_keeps_the_last_forward(rng):
    """backward uses the input of the latest forward."""
    layer = nn.LayerNorm(6, dtype=np.float64)
    x1, x2 = make_array((3, 6), np.float64, rng), make_array((3, 6), np.float64, rng)
    dy = make_array((3, 6), np.float64, rng)
    layer(x1)
    layer(x2)
    _, m, r = fn.layer_norm(x2, return_stats=True)
    assert np.array_equal(layer.backward(dy), fn.layer_norm_backward(dy, x2, m, r)[0])


# --------------------------------------------------------------------------
# RMSNorm
# --------------------------------------------------------------------------

def test_rms_norm_defaults(ldtype):
    layer = nn.RMSNorm(8, dtype=ldtype)
    assert layer.normalized_shape == (8,) and layer.eps is None
    assert layer.weight.dtype == ldtype and np.array_equal(layer.weight, np.ones(8))
    assert layer.grad_weight is None
    assert set(layer.state_dict()) == {"weight"}
    assert "RMSNorm" in repr(layer)


@pytest.mark.parametrize("shape", [8, (3, 8)])
@pytest.mark.parametrize("eps", [None, 1e-3])
def test_rms_norm_matches_functions(isa, ldtype, shape, eps, rng):
    layer = nn.RMSNorm(shape, eps=eps, dtype=ldtype)
    _randomize(layer, rng)
    k = len(layer.normalized_shape)
    axis = tuple(range(-k, 0))
    x = make_array((4,) + layer.normalized_shape, ldtype, rng)
    y = layer(x)
    y2, r = fn.rms_norm(x, layer.weight, axis=axis, eps=eps, return_stats=True)
    assert np.array_equal(y, y2)
    dy = make_array(x.shape, ldtype, rng)
    dx = layer.backward(dy)
    dx2, dw2 = fn.rms_norm_backward(dy, x, r, layer.weight, axis=axis)
    assert np.array_equal(dx, dx2) and np.array_equal(layer.grad_weight, dw2)
    assert_close(y, ref.rms_norm(x, layer.weight, axis=axis, eps=eps)[0], ldtype)


def test_rms_norm_eps_none_follows_input_dtype(rng):
    """eps=None: the machine epsilon of the input's dtype (as torch.nn.RMSNorm)."""
    layer = nn.RMSNorm(5, dtype=np.float64)
    x = make_array((3, 5), np.float64, rng) * 1e-5
    assert np.array_equal(layer(x), fn.rms_norm(x, layer.weight, eps=np.finfo(np.float64).eps))
    x32 = x.astype(np.float32)
    y32 = layer(x32)
    assert y32.dtype == np.float32
    assert np.array_equal(y32, fn.rms_norm(x32, layer.weight.astype(np.float32),
                                           eps=float(np.finfo(np.float32).eps)))


def test_rms_norm_without_affine(rng):
    layer = nn.RMSNorm(5, elementwise_affine=False)
    assert layer.weight is None and layer.parameters() == []
    x = make_array((3, 5), np.float32, rng)
    assert np.array_equal(layer(x), fn.rms_norm(x))
    layer.backward(np.ones_like(x))
    assert layer.grad_weight is None


def test_rms_norm_gradients_finite_differences(rng):
    layer = nn.RMSNorm(7, eps=1e-3, dtype=np.float64)
    state = _randomize(layer, rng)
    x = make_array((3, 7), np.float64, rng)
    r = rng.standard_normal(x.shape)
    layer(x)
    dx = layer.backward(r)
    assert np.max(np.abs(dx - numeric_grad(lambda v: float(np.sum(layer(v) * r)), x))) < 1e-7

    def loss_w(v):
        other = nn.RMSNorm(7, eps=1e-3, dtype=np.float64)
        other.load_state_dict({"weight": v})
        return float(np.sum(other(x) * r))

    assert np.max(np.abs(layer.grad_weight - numeric_grad(loss_w, state["weight"]))) < 1e-7


# --------------------------------------------------------------------------
# Dtypes, modes, state_dict
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_input_of_other_dtype(cls, rng):
    layer = cls(6, dtype=np.float32)
    _randomize(layer, rng)
    x = make_array((3, 6), np.float64, rng)
    y = layer(x)
    assert y.dtype == np.float64
    layer.backward(np.ones_like(x))
    assert layer.grad_weight.dtype == np.float32  # gradients in the parameters' dtype


@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_train_eval_same_computation(cls, rng):
    layer = cls(6)
    _randomize(layer, rng)
    x = make_array((3, 6), np.float32, rng)
    y_train = layer(x)
    assert layer.eval() is layer and layer.training is False
    assert np.array_equal(layer(x), y_train)
    assert layer.train() is layer and layer.training is True
    assert layer.train(False).training is False


@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_state_dict_round_trip(cls, ldtype, rng):
    layer = cls((2, 5), dtype=ldtype)
    state = _randomize(layer, rng)
    sd = layer.state_dict()
    assert set(sd) == set(state)
    for k in sd:
        assert np.array_equal(sd[k], state[k]) and sd[k].dtype == ldtype
    # the dict holds copies: changing it does not change the layer
    for v in sd.values():
        v[...] = 123.0
    assert all(np.array_equal(layer.state_dict()[k], state[k]) for k in state)
    # a fresh layer loaded from the state computes the same
    other = cls((2, 5), dtype=ldtype)
    other.load_state_dict(layer.state_dict())
    x = make_array((3, 2, 5), ldtype, rng)
    assert np.array_equal(other(x), layer(x))
    # loading copies too, and converts to the layer's dtype
    src = {k: v.astype(np.float64) for k, v in state.items()}
    other.load_state_dict(src)
    for k, v in src.items():
        v[...] = -1.0
        assert getattr(other, k).dtype == ldtype
        assert np.array_equal(getattr(other, k), state[k].astype(ldtype))


@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_load_state_dict_errors_leave_layer_unchanged(cls, rng):
    layer = cls(4)
    state = _randomize(layer, rng)
    bad_states = [
        ({}, KeyError),
        ({**state, "extra": np.ones(4, np.float32)}, KeyError),
        ({k: np.ones(5, np.float32) for k in state}, ValueError),
        ({k: np.ones((1, 4), np.float32) for k in state}, ValueError),
    ]
    if "bias" in state:
        bad_states.append(({"weight": state["weight"]}, KeyError))
        # the first parameter is fine, the second is not: nothing is loaded
        bad_states.append(({"weight": np.zeros(4), "bias": np.zeros(3)}, ValueError))
    # not real numbers: a TypeError naming the key, no ComplexWarning
    bad_states += [({**state, "weight": ["a"] * 4}, TypeError),
                   ({**state, "weight": np.ones(4, np.complex128)}, TypeError),
                   ({**state, "weight": "abcd"}, TypeError)]
    for bad, exc in bad_states:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(exc) as info:
                layer.load_state_dict(bad)
        if exc is TypeError:
            assert "weight" in str(info.value)
        for k in state:
            assert np.array_equal(getattr(layer, k), state[k])
    # integer and bool arrays are real numbers: converted
    layer.load_state_dict({k: np.arange(4) for k in state})
    assert layer.weight.dtype == np.float32 and np.array_equal(layer.weight, np.arange(4))


def test_zero_grad(rng):
    layer = nn.LayerNorm(4)
    layer(make_array((2, 4), np.float32, rng))
    layer.backward(np.ones((2, 4), np.float32))
    assert layer.grad_weight is not None
    layer.zero_grad()
    assert layer.grad_weight is None and layer.grad_bias is None


def test_layer_classes_belong_to_fastnorm_nn():
    for name in nn.__all__:
        assert getattr(nn, name).__module__ == "fastnorm.nn", name


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.LayerNorm(5), (3, 4, 5)), (lambda: nn.RMSNorm(5), (3, 4, 5)),
    (lambda: nn.GroupNorm(2, 4), (3, 4, 5)),
    (lambda: nn.InstanceNorm1d(4, track_running_stats=True), (3, 4, 5)),
    (lambda: nn.BatchNorm1d(4), (3, 4, 5)), (lambda: nn.SwitchNorm(4), (3, 4, 5)),
    (lambda: nn.BatchLayerNorm(4), (3, 4)),
    (lambda: nn.WeightNorm(np.arange(1.0, 13.0).reshape(3, 4)), None),
], ids=["LayerNorm", "RMSNorm", "GroupNorm", "InstanceNorm1d", "BatchNorm1d", "SwitchNorm",
        "BatchLayerNorm", "WeightNorm"])
def test_layers_pickle(make, shape, rng):
    layer = make()
    if shape is not None:
        x = make_array(shape, np.float32, rng)
        layer(x)  # a training forward: running statistics updated
    other = pickle.loads(pickle.dumps(layer))
    assert type(other) is type(layer)
    state = layer.state_dict()
    assert set(other.state_dict()) == set(state)
    assert all(np.array_equal(v, state[k]) for k, v in other.state_dict().items())
    if shape is None:
        assert np.array_equal(other(), layer())
    else:
        assert np.array_equal(other.eval()(x), layer.eval()(x))


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_constructor_errors(cls):
    with pytest.raises(TypeError):
        cls(None)
    with pytest.raises(TypeError):
        cls(4.0)
    with pytest.raises(ValueError):
        cls(())
    with pytest.raises(ValueError):
        cls((4, -1))
    with pytest.raises(TypeError):
        cls(4, dtype=np.complex64)
    with pytest.raises(TypeError):
        cls(4, dtype=np.int32)


@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_bad_eps_is_refused_at_construction(cls):
    """eps is checked by the constructor, as by the channel layers, with the
    functions' errors naming it; RMSNorm's eps=None (the default) stays allowed."""
    for bad, exc in ((-1, ValueError), (-1e-5, ValueError), (float("nan"), ValueError),
                     (float("inf"), ValueError), ("a", TypeError), (True, TypeError),
                     ([1e-5], TypeError)):
        with pytest.raises(exc, match="eps"):
            cls(4, eps=bad)
    if cls is nn.LayerNorm:
        with pytest.raises(TypeError, match="eps"):
            cls(4, eps=None)
    else:
        assert cls(4, eps=None).eps is None and cls(4).eps is None
    # valid values are kept as given
    assert cls(4, eps=0).eps == 0 and cls(4, eps=np.float32(1e-3)).eps == np.float32(1e-3)


@pytest.mark.parametrize("bad", ["abc", (4.5,), (4, 2.5)], ids=["str", "float", "float2"])
@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_non_integer_normalized_shape(cls, bad):
    """Sizes must be ints (torch.nn raises TypeError): a string is not a shape, and
    4.5 is not silently truncated to 4; the message names normalized_shape."""
    with pytest.raises((TypeError, ValueError)) as info:
        cls(bad)
    assert "normalized_shape" in str(info.value)


@pytest.mark.parametrize("shape", [np.array([2, 5]), range(2, 6, 3), (np.int64(2), 5),
                                   [2, 5]], ids=["ndarray", "range", "np-int", "list"])
@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_normalized_shape_from_any_iterable_of_ints(cls, shape):
    """As torch.nn: any iterable of ints is a shape (a 1-d integer array, a range)."""
    layer = cls(shape)
    assert layer.normalized_shape == (2, 5) and layer.weight.shape == (2, 5)
    with pytest.raises(TypeError, match="normalized_shape"):
        cls(np.array([[2, 5]]))


@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm, nn.BatchNorm1d])
def test_load_state_dict_copies_into_the_layers_arrays(cls, rng):
    """As torch's load_state_dict (copy_ into the tensors): arrays taken from
    parameters() before the load hold the loaded values afterwards."""
    layer = cls(4)
    held = layer.parameters()
    buffers = [layer.running_mean, layer.running_var] if cls is nn.BatchNorm1d else []
    state = {k: rng.standard_normal(v.shape).astype(np.float64)
             for k, v in layer.state_dict().items() if k != "num_batches_tracked"}
    if cls is nn.BatchNorm1d:
        state["running_var"] = np.abs(state["running_var"])
        state["num_batches_tracked"] = np.array(7)
    layer.load_state_dict(state)
    for a, name in zip(held + buffers,
                       list(layer._param_names) + ["running_mean", "running_var"]):
        assert a is getattr(layer, name)
        assert np.array_equal(a, state[name].astype(a.dtype))
    if cls is nn.BatchNorm1d:
        assert layer.num_batches_tracked == 7


@pytest.mark.parametrize("cls", [nn.LayerNorm, nn.RMSNorm])
def test_forward_backward_errors(cls, rng):
    layer = cls((3, 4))
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="x"):
        layer(np.ones((2, 4, 3), np.float32))
    with pytest.raises(ValueError, match="x"):
        layer(np.ones((4,), np.float32))
    with pytest.raises(TypeError, match="x"):
        layer(np.ones((2, 3, 4), np.int32))
    layer(make_array((2, 3, 4), np.float32, rng))
    with pytest.raises(ValueError, match="dy"):
        layer.backward(np.ones((2, 3, 5), np.float32))
