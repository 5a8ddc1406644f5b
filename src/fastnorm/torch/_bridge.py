"""Tensors to NumPy arrays and back, and eager calls that skip the operator dispatch."""
import numpy as np
import torch
from torch import Tensor

import fastnorm as _fn


# --------------------------------------------------------------------------
# Tensors to arrays and back
# --------------------------------------------------------------------------

_DTYPES = frozenset((torch.float32, torch.float64, torch.float16, torch.bfloat16))
_BF16 = None  # ml_dtypes.bfloat16, imported on the first bfloat16 tensor


def _bfloat16():
    global _BF16
    if _BF16 is None:
        try:
            import ml_dtypes
        except ImportError as exc:
            raise ImportError(
                'bfloat16 tensors need ml_dtypes: pip install "fastnorm-cpu[torch]"'
            ) from exc
        _BF16 = np.dtype(ml_dtypes.bfloat16)
    return _BF16


def _check_tensor(t, name):
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_cpu:
        raise ValueError(
            f"{name} is on device {t.device}: fastnorm computes on the CPU only "
            f"(move it with .cpu(), or use torch.nn.functional on that device)"
        )
    if t.dtype not in _DTYPES:
        raise TypeError(
            f"{name} must have dtype float32, float64, float16 or bfloat16, got {t.dtype}"
        )
    if t.layout != torch.strided:
        raise TypeError(f"{name} must be a dense (strided) tensor, got layout {t.layout}")


_NUMPY_DTYPES = frozenset((torch.float32, torch.float64, torch.float16))


def _array(t, name):
    """The CPU tensor t as a NumPy array over the same memory, or over a
    contiguous copy when t is not contiguous (None stays None).

    fastnorm takes strided arrays too, but reads them through slower general
    paths; PyTorch's own copy is quicker (gradients arriving from a sum or a
    transpose are often expanded or permuted views).

    Written for the common case first: every operation here runs on each
    call, after kernels that have just pushed the interpreter's data out of
    the cache, where each costs several times what it does in a loop."""
    if t is None:
        return None
    if not isinstance(t, Tensor) or not t.is_cpu or t.layout is not torch.strided \
            or t.dtype not in _DTYPES:
        _check_tensor(t, name)
    if t.requires_grad:
        t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype not in _NUMPY_DTYPES:  # bfloat16
        return t.view(torch.int16).numpy().view(_bfloat16())
    return t.numpy()


def _tensor(a):
    """A NumPy result as a contiguous CPU tensor over the same memory."""
    if type(a) is not np.ndarray:
        a = np.asarray(a)
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
    if a.dtype.kind != "f" and a.dtype.itemsize == 2:  # bfloat16 bits
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _calc(dtype):
    """The dtype of statistics for data of this dtype: its own, float32 for 16-bit."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def _threads():
    return torch.get_num_threads()


# --------------------------------------------------------------------------
# PyTorch's threads
# --------------------------------------------------------------------------

# The OpenMP runtimes PyTorch may run its intra-op threads on (GNU, Intel,
# LLVM), by the names they are loaded under; each has GOMP_parallel.
_OMP_LIBRARIES = ("libgomp.so.1", "libiomp5.so", "libomp.so", "libomp.dylib")
_OMP = None  # the loaded runtime's ctypes handle, kept while it is in use


def _omp_parallel():
    """The address of GOMP_parallel in the OpenMP runtime this process has
    loaded for PyTorch, or 0 when PyTorch's threads are not OpenMP's."""
    global _OMP
    import ctypes
    import os

    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return 0
    # first through PyTorch's own library, whose lookup finds the runtime it
    # links, whatever that is named; then by the runtimes' usual names
    lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
    names = [os.path.join(lib_dir, "libtorch_cpu" + ext) for ext in (".so", ".dylib")]
    for name in names + list(_OMP_LIBRARIES):
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_LAZY)
            address = ctypes.cast(lib.GOMP_parallel, ctypes.c_void_p).value
        except (OSError, AttributeError):
            continue
        if address:
            _OMP = lib
            return address
    return 0


def use_torch_threads(enabled=True):
    """Run fastnorm's threaded calls on PyTorch's intra-op threads (its
    OpenMP team) instead of fastnorm's own pool; ``False`` goes back to the
    pool. Returns whether the calls now run on PyTorch's threads.

    Importing ``fastnorm.torch`` turns this on. PyTorch's OpenMP threads keep
    spinning for a while after each of its operators, so in a model the
    pool's workers find the cores taken and fastnorm's calls ran at one
    thread's speed; on PyTorch's threads they start at once. It applies to
    every fastnorm call in the process, the NumPy ones too; results are the
    same bits either way. The cost: a call then waits at its end for every
    thread of the team, as PyTorch's operators do, where the pool never
    waits for a thread the OS has descheduled (docs/threads.md). Without
    OpenMP threads in PyTorch (another parallel backend) nothing changes.
    """
    address = _omp_parallel() if enabled else 0
    return _fn._core._host_team(address) != 0


def _empty(shape, like, dtype=None):
    """A contiguous tensor of this shape on like's device (the fake results)."""
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device=like.device)


def _grad_dtype(param, x):
    """The dtype fastnorm gives a parameter's gradient: the parameter's own,
    the computing dtype when there is no parameter."""
    return param.dtype if param is not None else _calc(x.dtype)


def _none_if_absent(grad, param):
    return grad if param is not None else None


def _trailing(x, normalized_shape, name="normalized_shape"):
    """The axes of x that normalized_shape names (its last len(...) axes)."""
    if len(normalized_shape) == 1 and x.dim() >= 1 and x.shape[-1] == normalized_shape[0]:
        return -1
    shape = tuple(normalized_shape)
    k = len(shape)
    if k == 0 or k > x.dim() or x.shape[x.dim() - k:] != shape:
        raise ValueError(
            f"{name} {list(shape)} must be the trailing dimensions of x of shape "
            f"{list(x.shape)}"
        )
    return tuple(range(-k, 0))


def _axes(k):
    return -1 if k == 1 else tuple(range(-k, 0))


# --------------------------------------------------------------------------
# Eager calls without the operator dispatch
# --------------------------------------------------------------------------

_EAGER: dict = {}  # operator -> its torch.autograd.Function for eager calls
_PLAIN = (Tensor, torch.nn.Parameter)


def _register_autograd(op, grad, setup):
    """op.register_autograd(grad, setup), and the same formula as an
    autograd.Function for eager calls (see _call).

    Under the Function, the gradients of outputs that did not take part are
    None (not zeros): grad replaces those it needs."""
    op.register_autograd(grad, setup_context=setup)
    impl = op._init_fn

    # forward(ctx, ...): a Function with a separate setup_context binds its
    # arguments to forward's signature at every call, which costs more than a
    # small kernel
    def forward(ctx, *args):
        output = impl(*args)
        # no zero tensors made for the statistics, which are never
        # differentiated; grad handles an absent gradient of its own
        ctx.set_materialize_grads(False)
        setup(ctx, args, output)
        return output

    once = torch.autograd.function.once_differentiable(grad)

    def backward(ctx, *grads):
        if grads[0] is None and all(g is None for g in grads):  # no output took part
            return (None,) * len(ctx.needs_input_grad)
        # fastnorm's backward has no gradient of its own: a backward that
        # records a graph (create_graph=True, the only way grad mode is on
        # here) gets results that refuse to be differentiated again
        if torch.is_grad_enabled():
            return once(ctx, *grads)
        return grad(ctx, *grads)

    _EAGER[op] = type(f"{op._name}_eager", (torch.autograd.Function,),
                      {"forward": staticmethod(forward), "backward": staticmethod(backward)})


def _traced():
    """Whether something above plain eager code sees this call: a compiler or
    tracer, a functorch transform, a dispatch mode."""
    return (torch.compiler.is_compiling() or torch.jit.is_tracing()
            or torch._C._are_functorch_transforms_active()
            or torch._C._len_torch_dispatch_stack() > 0)


def _call(op, *args):
    """op(*args): directly in eager code (through its autograd.Function when a
    gradient is needed), through the operator dispatch otherwise.

    A call skips the dispatch when the operator would only call its
    implementation: plain eager code on plain tensors."""
    grad = False
    for a in args:
        if isinstance(a, Tensor):
            if type(a) not in _PLAIN:  # a tensor subclass: it may override the op
                return op(*args)
            if a.requires_grad:
                grad = True
    if _traced():
        return op(*args)
    run = _EAGER[op].apply if grad and torch.is_grad_enabled() and op in _EAGER \
        else op._init_fn
    if torch.autograd._profiler_enabled():
        with torch.profiler.record_function(op._qualname):
            return run(*args)
    return run(*args)
