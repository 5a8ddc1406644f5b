"""The example in examples/transformer_block.py: the fastnorm stack against the
float64 reference, the allocation-free forward, and main() on a tiny model."""
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "transformer_block.py"


@pytest.fixture(scope="module")
def tb():
    """The example module, imported by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("transformer_block_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


TINY = dict(batch=2, seq=8, d_model=32, heads=4, d_ff=64, layers=3)


def _input(stack, dtype, seed=1):
    shape = (stack.batch, stack.seq, stack.d_model)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 2e-5), (np.float64, 1e-12)])
@pytest.mark.parametrize("norms", ["fastnorm", "numpy"])
def test_stack_matches_reference(tb, norms, dtype, tol):
    stack = tb.EncoderStack(**TINY, dtype=dtype, norms=norms)
    x = _input(stack, dtype)
    x_before = x.copy()
    y = stack.forward(x)
    ref, ref_resid = tb.reference_forward(stack, x)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_array_equal(x, x_before)  # the input is not modified
    # The final output is layer-normalized (values of order 1); the residual
    # stream grows over the blocks, so compare it relative to its size.
    np.testing.assert_allclose(y, ref, rtol=0, atol=tol)
    scale = np.max(np.abs(ref_resid))
    np.testing.assert_allclose(stack.residual.reshape(ref_resid.shape), ref_resid,
                               rtol=0, atol=tol * scale)


def test_forward_repeats_and_reuses_its_buffer(tb):
    stack = tb.EncoderStack(**TINY)
    x = _input(stack, np.float32)
    y1 = stack.forward(x).copy()
    y2 = stack.forward(x)
    np.testing.assert_array_equal(y1, y2)  # no state leaks between calls
    assert np.shares_memory(y2, stack.out)


def test_forward_rejects_other_inputs(tb):
    stack = tb.EncoderStack(**TINY)
    x = _input(stack, np.float32)
    for bad in (x.astype(np.float64), x[:, ::-1], x[:1]):
        with pytest.raises(ValueError, match="x must be"):
            stack.forward(bad)


@pytest.mark.torch
def test_reference_with_torch_norms(tb):
    pytest.importorskip("torch")
    stack = tb.EncoderStack(**TINY, dtype=np.float64)
    x = _input(stack, np.float64)
    ref_np, _ = tb.reference_forward(stack, x, "numpy")
    ref_torch, _ = tb.reference_forward(stack, x, "torch")
    np.testing.assert_allclose(ref_torch, ref_np, rtol=0, atol=1e-12)
    stack.norms = tb.make_norms("torch")
    np.testing.assert_allclose(stack.forward(x), ref_np, rtol=0, atol=1e-12)


# Big enough that one activation buffer (1 MiB) dwarfs NumPy's fixed-size
# iteration buffers, small enough to run in a fraction of a second.
ALLOC = dict(batch=4, seq=128, d_model=512, heads=8, d_ff=1024, layers=2)


def test_forward_allocates_no_activations(tb):
    stack = tb.EncoderStack(**ALLOC)
    x = _input(stack, np.float32)
    stack.forward(x)  # warm-up
    peak = tb.traced_peak_bytes(stack.forward, x)
    assert peak < stack.activation_bytes / 8, (
        f"forward allocated {peak} bytes; one activation buffer is {stack.activation_bytes}")


def test_allocation_check_sees_an_allocation(tb, monkeypatch):
    """The check above fails when forward allocates: a GELU that builds a new
    array (and copies it back) instead of working in place."""
    stack = tb.EncoderStack(**ALLOC)
    x = _input(stack, np.float32)
    y_in_place = stack.forward(x).copy()

    def allocating_gelu(a):
        a[...] = 0.5 * a * (1.0 + np.tanh(tb.GELU_C * (a + tb.GELU_A * a ** 3)))

    monkeypatch.setattr(stack, "_gelu", allocating_gelu)
    stack.forward(x)
    peak = tb.traced_peak_bytes(stack.forward, x)
    assert peak >= stack.activation_bytes
    np.testing.assert_allclose(stack.forward(x), y_in_place, rtol=0, atol=2e-5)


def test_main_runs(tb, capsys, monkeypatch):
    monkeypatch.setattr(tb, "BLAS_IDLE_PAUSE", 0.0)
    argv = ["--batch", "2", "--seq", "8", "--d-model", "32", "--heads", "4", "--d-ff", "64",
            "--layers", "2", "--repeats", "2"]
    assert tb.main(argv) == 0
    out = capsys.readouterr().out
    assert "ok, tolerance" in out
    assert "| fastnorm" in out and "| none (residual add only)" in out


def test_main_without_torch(tb, capsys, monkeypatch):
    """The PyTorch comparison is optional: main() runs without it."""
    monkeypatch.setattr(tb, "torch", None)
    monkeypatch.setattr(tb, "BLAS_IDLE_PAUSE", 0.0)
    argv = ["--batch", "1", "--seq", "4", "--d-model", "16", "--heads", "2", "--d-ff", "32",
            "--layers", "1", "--repeats", "1", "--dtype", "float64"]
    assert tb.main(argv) == 0
    out = capsys.readouterr().out
    assert "numpy norms" in out and "torch" not in out
