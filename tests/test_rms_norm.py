"""What only fastnorm.rms_norm has, against the float64 reference
(docs/numerics.md §0, §2 and §11), both kernel tables, both dtypes: its
default eps, no centering, large means, constant rows and rows of one element.
What it shares with layer_norm is in test_row_norms.py."""
import numpy as np
import pytest

import fastnorm as fn
from fastnorm import reference as ref
from conftest import assert_close, assert_rel_close, make_array, sum_scale


def _xhat(x, axis):
    return ref.rms_norm(x, axis=axis, eps=0.0)[0]


# --------------------------------------------------------------------------
# eps and centering
# --------------------------------------------------------------------------

def test_default_eps_is_machine_epsilon(isa, dtype, rng):
    x = make_array((4, 9), dtype, rng) * 1e-4  # small, so that eps matters
    y, rstd = fn.rms_norm(x, return_stats=True)
    eps = float(np.finfo(dtype).eps)
    ye, re = ref.rms_norm(x, eps=eps)
    assert_rel_close(rstd, re, dtype)
    assert np.array_equal(fn.rms_norm(x, eps=None), y)
    assert np.array_equal(fn.rms_norm(x, eps=eps), y)
    # and an explicit eps is used as given, inside the square root
    for e in (0.0, 1e-6, 0.5):
        y2, r2 = fn.rms_norm(x, eps=e, return_stats=True)
        assert_rel_close(r2, ref.rms_norm(x, eps=e)[1], dtype)
        assert_close(y2, ref.rms_norm(x, eps=e)[0], dtype)


def test_no_centering(isa, dtype, rng):
    """RMSNorm does not subtract the mean: a shifted row gives a different result."""
    x = make_array((3, 16), dtype, rng, loc=5.0, scale=1.0)
    y = fn.rms_norm(x)
    assert np.all(y > 0)
    assert_close(y, x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1,
                                        keepdims=True) + np.finfo(dtype).eps), dtype)


# --------------------------------------------------------------------------
# Adversarial inputs (docs/numerics.md §11)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("offset", [1e4, 1e5, 1e6])
@pytest.mark.parametrize("n", [37, 768, 1000])
def test_large_mean_float32(isa, offset, n, rng):
    x = (offset + rng.standard_normal((32, n))).astype(np.float32)
    y, rstd = fn.rms_norm(x, return_stats=True)
    ye, re = ref.rms_norm(x)
    assert np.all(np.isfinite(y))
    assert np.max(np.abs(y - ye)) <= 1e-5
    assert_rel_close(rstd, re, np.float32, factor=2)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = (1 + 0.5 * rng.standard_normal(n)).astype(np.float32)
    _, rstd = fn.rms_norm(x, w, return_stats=True)
    dx, dw = fn.rms_norm_backward(dy, x, rstd, w)
    dxe, dwe = ref.rms_norm_backward(dy, x, re, w)
    assert np.max(np.abs(dx - dxe)) <= 1e-4 * np.max(np.abs(dxe))
    assert np.max(np.abs(dw - dwe)) <= 1e-4 * sum_scale(dy * _xhat(x, -1), (0,))


def test_row_40000(isa):
    x = np.array([40000, 40001, 40002, 40003], dtype=np.float32)
    assert_close(fn.rms_norm(x), ref.rms_norm(x)[0], np.float32)


@pytest.mark.parametrize("value", [1234.0, 0.1, -3.3e5, 0.0])
@pytest.mark.parametrize("n", [1, 7, 768])
def test_constant_rows(isa, dtype, value, n, rng):
    x = np.full((5, n), value, dtype=dtype)
    w = (1 + rng.standard_normal(n)).astype(dtype)
    y, rstd = fn.rms_norm(x, w, return_stats=True)
    ye, re = ref.rms_norm(x, w)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(rstd))
    assert_close(y, ye, dtype)
    assert_rel_close(rstd, re, dtype)
    yp = fn.rms_norm(x)
    assert np.all(yp == yp[:, :1])  # a constant row stays constant
    dy = rng.standard_normal((5, n)).astype(dtype)
    dx, dw = fn.rms_norm_backward(dy, x, rstd, w)
    dxe, dwe = ref.rms_norm_backward(dy, x, rstd, w)
    assert np.all(np.isfinite(dx)) and np.all(np.isfinite(dw))
    assert_close(dx, dxe, dtype, factor=4, scale=np.max(np.abs(dxe)))
    assert_close(dw, dwe, dtype, factor=4)


def test_rows_of_length_one(isa, dtype, rng):
    x = make_array((6, 1), dtype, rng)
    w = rng.standard_normal(1).astype(dtype)
    y, rstd = fn.rms_norm(x, w, return_stats=True)
    ye, re = ref.rms_norm(x, w)
    assert_close(y, ye, dtype)
    assert_rel_close(rstd, re, dtype)
    dy = make_array((6, 1), dtype, rng)
    dx, dw = fn.rms_norm_backward(dy, x, rstd, w)
    dxe, dwe = ref.rms_norm_backward(dy, x, rstd, w)
    assert_close(dx, dxe, dtype, factor=4)
    assert_close(dw, dwe, dtype, factor=4)
    x3 = make_array((4, 1, 5), dtype, rng)
    assert_close(fn.rms_norm(x3, axis=1), ref.rms_norm(x3, axis=1)[0], dtype)
