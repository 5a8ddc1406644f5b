"""16-bit data against float32: layer_norm and rms_norm, forward and backward, at (4096, 768).

One benchmark per op x dtype x threads x implementation, grouped as
``op|4096x768|dtype|tN`` like the main suite (report.py reads the same
extra_info). fastnorm: float32 weight and bias, ``out=`` preallocated.
PyTorch: ``F.layer_norm`` / ``F.rms_norm`` on tensors sharing memory with the
NumPy arrays, parameters in the data's dtype (its CPU kernels take float16
and bfloat16), under ``torch.inference_mode()``. The backward ops take dy and the
forward's statistics: fastnorm ``layer_norm_backward`` / ``rms_norm_backward``
(float32 parameter gradients); PyTorch ``torch.autograd.grad`` through a
graph built once (``retain_graph=True``), as in the main suite. bytes_moved:
read x and write y (backward: read x, dy and write dx), so GB/s compare
across dtypes: a 16-bit call that keeps the float32 bytes per second takes
half the time.
"""
import numpy as np
import pytest

import fastnorm

try:
    import ml_dtypes
except ImportError:  # pragma: no cover
    ml_dtypes = None

try:
    import torch
except ImportError:  # pragma: no cover
    torch = None

SHAPE = (4096, 768)
# float32 at this shape is in the main suite (test_bench_norms.py): the report puts these
# rows in the same tables, next to it
DTYPES = ["float16", "bfloat16"]


def _dtype(name):
    if name == "bfloat16":
        if ml_dtypes is None:
            pytest.skip("ml_dtypes is not installed")
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _params():
    for op in ("layer_norm", "rms_norm", "layer_norm_backward", "rms_norm_backward"):
        for dt in DTYPES:
            for threads in (1, 2):
                for impl in ("fastnorm", "torch"):
                    marks = [pytest.mark.bench_backward if op.endswith("_backward")
                             else pytest.mark.bench_forward]
                    if threads == 2:
                        marks.append(pytest.mark.quick)
                    yield pytest.param(op, dt, threads, impl, marks=marks,
                                       id=f"{op}-4096x768-{dt}-t{threads}-{impl}")


def _torch_view(a):
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


@pytest.mark.parametrize("op, dtype, threads, impl", list(_params()))
def test_half(benchmark, op, dtype, threads, impl):
    dt = _dtype(dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SHAPE).astype(np.float32).astype(dt)
    w = rng.uniform(0.5, 1.5, SHAPE[-1]).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, SHAPE[-1]).astype(np.float32)
    out = np.empty_like(x)
    dy = rng.standard_normal(SHAPE).astype(np.float32).astype(dt)
    moved = 2 * x.nbytes
    if op.endswith("_backward"):
        moved = 3 * x.nbytes
        if impl == "fastnorm":
            call = _fastnorm_backward(op, x, dy, w, threads)
        else:
            call = _torch_backward(op, x, dy, w, b, dt, threads)
    elif impl == "fastnorm":
        if op == "layer_norm":
            def call():
                fastnorm.layer_norm(x, w, b, out=out, num_threads=threads)
        else:
            def call():
                fastnorm.rms_norm(x, w, out=out, num_threads=threads)
    else:
        if torch is None:
            pytest.skip("torch is not installed")
        F = torch.nn.functional
        xt = _torch_view(x)
        wt = _torch_view(w.astype(dt))
        bt = _torch_view(b.astype(dt))
        torch.set_num_threads(threads)
        if op == "layer_norm":
            def call():
                with torch.inference_mode():
                    F.layer_norm(xt, (SHAPE[-1],), wt, bt, 1e-5)
        else:
            if not hasattr(F, "rms_norm"):
                pytest.skip("this torch has no F.rms_norm")

            def call():
                with torch.inference_mode():
                    F.rms_norm(xt, (SHAPE[-1],), wt)
    benchmark.group = f"{op}|4096x768|{dtype}|t{threads}"
    # named as in the main suite, so that report.py tabulates both alike
    name = f"fastnorm-{fastnorm.get_config()['isa']}" if impl == "fastnorm" else impl
    benchmark.extra_info.update(op=op, impl=name, shape=list(SHAPE), dtype=dtype,
                                threads=threads, bytes_moved=moved)
    benchmark(call)


def _fastnorm_backward(op, x, dy, w, threads):
    if op == "layer_norm_backward":
        _, mean, rstd = fastnorm.layer_norm(x, w, return_stats=True)
        return lambda: fastnorm.layer_norm_backward(dy, x, mean, rstd, w, num_threads=threads)
    _, rstd = fastnorm.rms_norm(x, w, return_stats=True)
    return lambda: fastnorm.rms_norm_backward(dy, x, rstd, w, num_threads=threads)


def _torch_backward(op, x, dy, w, b, dt, threads):
    if torch is None:
        pytest.skip("torch is not installed")
    F = torch.nn.functional
    torch.set_num_threads(threads)
    xg = _torch_view(x).clone().requires_grad_()
    wg = _torch_view(w.astype(dt)).clone().requires_grad_()
    dyt = _torch_view(dy)
    if op == "layer_norm_backward":
        bg = _torch_view(b.astype(dt)).clone().requires_grad_()
        leaves = (xg, wg, bg)
        y = F.layer_norm(xg, (SHAPE[-1],), wg, bg, 1e-5)
    else:
        if not hasattr(F, "rms_norm"):
            pytest.skip("this torch has no F.rms_norm")
        leaves = (xg, wg)
        y = F.rms_norm(xg, (SHAPE[-1],), wg)
    return lambda: torch.autograd.grad(y, leaves, grad_outputs=dyt, retain_graph=True)
