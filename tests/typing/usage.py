"""Typed use of fastnorm's public API, checked with ``mypy --strict``.

Also a plain script: ``python tests/typing/usage.py`` runs every call.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import fastnorm
from fastnorm import nn, reference


def rows() -> None:
    x: NDArray[np.float32] = np.ones((4, 8), np.float32)
    w = np.ones(8, np.float32)
    b = np.zeros(8, np.float32)

    y: NDArray[Any] = fastnorm.layer_norm(x, w, b)
    y, mean, rstd = fastnorm.layer_norm(x, w, b, return_stats=True)
    dx, dw, db = fastnorm.layer_norm_backward(np.ones_like(y), x, mean, rstd, w)

    out = np.empty_like(x)
    fastnorm.rms_norm(x, w, out=out, num_threads=1)
    y, rstd = fastnorm.rms_norm(x, w, eps=1e-6, return_stats=True)
    dx, dw = fastnorm.rms_norm_backward(np.ones_like(y), x, rstd, w)

    y, s = fastnorm.add_layer_norm(x, x, w, b, axis=-1)
    y, s, mean, rstd = fastnorm.add_layer_norm(x, x, w, b, return_stats=True)
    dsum, dw, db, drb = fastnorm.add_layer_norm_backward(np.ones_like(y), s, mean, rstd, w)
    y, s = fastnorm.add_rms_norm(x, x, w)

    x3 = np.ones((2, 3, 8), np.float32)
    shift = np.zeros((2, 8), np.float32)
    y = fastnorm.ada_layer_norm(x3, shift, shift)
    y, mean, rstd = fastnorm.ada_layer_norm(x3, shift, shift, return_stats=True)
    dx, dshift, dscale = fastnorm.ada_layer_norm_backward(np.ones_like(y), x3, mean, rstd, shift)

    flag: bool = len(y) > 0
    either = fastnorm.layer_norm(x, return_stats=flag)
    assert isinstance(either, (np.ndarray, tuple))


def channels() -> None:
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 3)).astype(np.float32)
    y = fastnorm.group_norm(x, 2)
    y, mean, rstd = fastnorm.group_norm(x, 2, return_stats=True)
    dx, dw, db = fastnorm.group_norm_backward(np.ones_like(y), x, mean, rstd)
    assert dw is None and db is None

    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    y = fastnorm.batch_norm(x, rm, rv, training=True)
    y = fastnorm.instance_norm(x)

    seq = np.ones((4, 3, 8), np.float32)
    y, stats = fastnorm.batch_layer_norm(seq, return_stats=True)
    bln: fastnorm.BatchLayerNormStats = stats
    dx, dw, db = fastnorm.batch_layer_norm_backward(np.ones_like(y), seq, bln)

    y, sn = fastnorm.switch_norm(x, return_stats=True)
    mixed: NDArray[Any] = sn.mean
    dx, dw, db, dmw, dvw = fastnorm.switch_norm_backward(np.ones_like(y), x, sn)

    v = np.ones((3, 4), np.float32)
    g = np.ones(3, np.float32)
    wn = fastnorm.weight_norm(v, g, axis=0)
    dv, dg = fastnorm.weight_norm_backward(np.ones_like(wn), v, g)
    assert mixed.shape == (2, 4)


def layers() -> None:
    ln = nn.LayerNorm(8)
    y = ln(np.ones((2, 8), np.float32))
    dx = ln.backward(np.ones_like(y))
    grads: list[NDArray[Any] | None] = [ln.grad_weight, ln.grad_bias]
    state: dict[str, NDArray[Any]] = ln.state_dict()
    ln.load_state_dict(state)

    bn = nn.BatchNorm2d(4, momentum=None).eval()
    assert isinstance(bn, nn.BatchNorm2d)
    y = bn(np.ones((2, 4, 3, 3), np.float32))

    layer: nn.GroupNorm = nn.GroupNorm(2, 4, dtype=np.float64)
    params: list[NDArray[Any]] = layer.parameters()

    wn = nn.WeightNorm(np.ones((3, 4), np.float32))
    w: NDArray[Any] = wn()
    grad_g, grad_v = wn.backward(np.ones_like(w))
    assert dx.shape == (2, 8) and len(grads) == 2 and len(params) == 2
    assert grad_g.shape[0] == 3 and grad_v.shape == (3, 4)


def config_and_reference() -> None:
    fastnorm.set_num_threads(None)
    n: int = fastnorm.get_num_threads()
    cfg: dict[str, Any] = fastnorm.get_config()
    include: str = fastnorm.get_include()
    version: str = fastnorm.__version__
    y, mean, rstd = reference.layer_norm(np.ones((2, 8)))
    y, rstd = reference.rms_norm(np.ones((2, 8)), eps=1e-6)
    assert n >= 1 and cfg["version"] == version and include


if __name__ == "__main__":
    rows()
    channels()
    layers()
    config_and_reference()
