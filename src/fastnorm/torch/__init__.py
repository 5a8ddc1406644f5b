"""fastnorm inside PyTorch: operators, ``torch.nn`` modules and a model swap.

Every normalizer is a PyTorch operator (``torch.ops.fastnorm.<name>``) made
with ``torch.library.custom_op``: its autograd formula calls fastnorm's
explicit backward (itself an operator, ``torch.ops.fastnorm.<name>_backward``),
and a fake implementation gives ``torch.compile`` and ``torch.export`` the
shapes and dtypes of the results without running the kernels.

The functions of this module call those operators with the arguments of
``torch.nn.functional``. In plain eager code (no ``torch.compile`` or
``torch.export`` tracing, no functorch transform, no dispatch mode, plain
tensors) they skip PyTorch's operator dispatch, which costs tens of
microseconds per call, and run the operator's own implementation directly,
under a ``torch.autograd.Function`` with the same backward when a gradient is
needed; under the profiler the call is recorded with the operator's name. The
results are the same bits either way; the classes (:class:`LayerNorm`, :class:`RMSNorm`,
:class:`GroupNorm`, :class:`BatchNorm1d` ...) are the ``torch.nn`` modules
with a forward that calls them; :func:`replace_norms` swaps the norm modules
of a model for those classes in place.

Tensors and NumPy arrays share memory: a contiguous CPU tensor is handed to
the kernels as ``tensor.numpy()`` (bfloat16 as an ``ml_dtypes.bfloat16``
view of its bits) and results come back through ``torch.from_numpy``,
without copies. A non-contiguous input is made contiguous first (one copy by
PyTorch); results are always contiguous.
Only CPU tensors of dtype float32, float64, float16 or bfloat16 are
accepted: any other tensor raises an error that names the argument. The
kernels use ``torch.get_num_threads()`` threads, as PyTorch's own operators,
and, from the import of this module on, run on PyTorch's own intra-op threads
where those are OpenMP's (:func:`use_torch_threads`).

PyTorch is an optional dependency: ``pip install "fastnorm-cpu[torch]"``.
"""
try:
    import torch
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'fastnorm.torch needs PyTorch (2.4 or later): pip install "fastnorm-cpu[torch]"'
    ) from exc

if not hasattr(torch, "library") or not hasattr(torch.library, "custom_op"):
    raise ImportError(
        f"fastnorm.torch needs PyTorch 2.4 or later (torch.library.custom_op), found "
        f'torch {torch.__version__}: pip install "fastnorm-cpu[torch]"'
    )

__all__ = [
    "layer_norm",
    "rms_norm",
    "add_layer_norm",
    "add_rms_norm",
    "ada_layer_norm",
    "group_norm",
    "instance_norm",
    "batch_norm",
    "weight_norm",
    "LayerNorm",
    "RMSNorm",
    "GroupNorm",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "replace_norms",
    "Replacement",
    "use_torch_threads",
]

from ._bridge import use_torch_threads
from ._channel_ops import batch_norm, group_norm, instance_norm, weight_norm
from ._modules import (
    BatchNorm1d,
    BatchNorm2d,
    BatchNorm3d,
    GroupNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    LayerNorm,
    Replacement,
    RMSNorm,
    replace_norms,
)
from ._row_ops import add_layer_norm, add_rms_norm, ada_layer_norm, layer_norm, rms_norm

use_torch_threads()

# The public objects belong to this module (their documentation, and the
# path under which pickle finds a module's class).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
