"""16-bit data against float32: layer_norm and rms_norm, forward and backward, at (4096, 768).

One benchmark per op x dtype x threads x implementation, grouped as
``op|4096x768|dtype|tN`` like the main suite (report.py reads the same
extra_info). fastnorm: float32 weight and bias, ``out=`` preallocated.
PyTorch: ``F.layer_norm`` / ``F.rms_norm`` on tensors sharing memory with the
NumPy arrays, parameters in the data's dtype (its CPU kernels take float16
and bfloat16), under ``torch.inference_mode()``. The backward ops take dy and the
forward's statistics: fastnorm ``layer_norm_backward`` / ``rms_norm_backward``
(float32 parameter gradients); PyTorch ``torch.autograd.grad`` through a
graph built once (``retain_graph=True``), as in the main suite. JAX: the
main suite's jitted formulas (norm_impls.jax_function) with float32 weight
and bias, statistics and affine in float32 and the result in the data's
dtype (as Flax's LayerNorm with dtype set to the data's), fastnorm's eps;
inputs put on the device once; compiled, and checked against fastnorm's
result (within a few units in the last place of the dtype), before it is
timed; only at the thread count of JAX's pool in this process
(norm_impls.jax_thread_skip). bytes_moved:
read x and write y (backward: read x, dy and write dx), so GB/s compare
across dtypes: a 16-bit call that keeps the float32 bytes per second takes
half the time.
"""
import numpy as np
import pytest

import fastnorm
import norm_impls

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
                for impl in ("fastnorm", "torch", "jax"):
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
    if impl == "jax":
        if op.endswith("_backward"):
            moved = 3 * x.nbytes
        call = _jax_call(op, x, dy, w, b, threads)
    elif op.endswith("_backward"):
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
    # named as in the main suite ("fastnorm": the default kernel target), so that
    # report.py tabulates both alike
    benchmark.extra_info.update(op=op, impl=impl, shape=list(SHAPE), dtype=dtype,
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


# fastnorm's eps for 16-bit data: layer_norm's default, and rms_norm's (float32's machine
# epsilon, the computing dtype's)
HALF_EPS = {"layer_norm": 1e-5, "rms_norm": float(np.finfo(np.float32).eps)}
# the check's tolerance, in units of the data dtype's machine epsilon, on
# max |jax - fastnorm| / max(1, max |fastnorm|) of every output
HALF_TOL_EPS = 4


def _jax_call(op, x, dy, w, b, threads):
    """The JAX call, compiled and checked against fastnorm's result (untimed)."""
    try:
        norm_impls.jax_thread_skip(threads)
        fn, names = norm_impls.jax_function(op, eps=HALF_EPS[op.replace("_backward", "")])
    except norm_impls.Unavailable as exc:
        pytest.skip(str(exc))
    args = {"x": x, "dy": dy, "w": w, "b": b}
    run = norm_impls.jax_runner(fn, [args[n] for n in names])
    got = run()
    got = got if isinstance(got, tuple) else (got,)
    if op.endswith("_backward"):
        want = _fastnorm_backward(op, x, dy, w, 1)()
    elif op == "layer_norm":
        want = (fastnorm.layer_norm(x, w, b),)
    else:
        want = (fastnorm.rms_norm(x, w),)
    tol = HALF_TOL_EPS * float(np.finfo(x.dtype).eps)
    for i, (g, r) in enumerate(zip(got, want)):
        g = np.asarray(g)
        if g.dtype != r.dtype or g.shape != r.shape:
            pytest.fail(f"jax output {i}: {g.dtype}{g.shape}, fastnorm's {r.dtype}{r.shape}")
        r64 = r.astype(np.float64)
        err = float(np.max(np.abs(g.astype(np.float64) - r64)) / max(1.0, np.max(np.abs(r64))))
        if not err <= tol:
            pytest.fail(f"jax disagrees with fastnorm on {op} {x.dtype} (output {i}): "
                        f"relative error {err:.3g} > {tol:.3g} -- not timed")
    if len(got) != len(want):
        pytest.fail(f"jax gave {len(got)} outputs, fastnorm {len(want)}")
    return run
