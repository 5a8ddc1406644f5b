"""fastnorm: fast, accurate normalization layers for NumPy on the CPU.

Functions take and return NumPy arrays and follow PyTorch's names and
defaults; every forward has an explicit backward. See ``fastnorm.nn`` for
layer classes that hold parameters and gradients, ``fastnorm.reference`` for
the plain float64 NumPy formulas the kernels are tested against, and
``fastnorm.show_config()`` for what this build and CPU use, and
``fastnorm.get_include()`` for the C header of the kernels.
"""
from ._core import (
    ada_layer_norm,
    ada_layer_norm_backward,
    add_layer_norm,
    add_layer_norm_backward,
    add_rms_norm,
    add_rms_norm_backward,
    get_num_threads,
    layer_norm,
    layer_norm_backward,
    rms_norm,
    rms_norm_backward,
    set_num_threads,
)
from ._family import (
    BatchLayerNormStats,
    SwitchNormStats,
    batch_layer_norm,
    batch_layer_norm_backward,
    batch_norm,
    batch_norm_backward,
    channel_moments,
    group_norm,
    group_norm_backward,
    instance_norm,
    instance_norm_backward,
    switch_norm,
    switch_norm_backward,
    weight_norm,
    weight_norm_backward,
)
from ._config import get_config, show_config
from . import _family, nn, reference


def _register_with_threadpoolctl() -> None:
    """Lets threadpoolctl see and limit fastnorm's thread pool, where it is installed."""
    try:
        from . import _threadpoolctl
    except ImportError:  # threadpoolctl not installed
        return
    _threadpoolctl.register()


_register_with_threadpoolctl()


def get_include() -> str:
    """The folder of fastnorm's C header ``fastnorm.h``, for building against it.

    It holds the kernels' C sources too, and ``fastnorm_capi.h``; like
    ``numpy.get_include()``, pass it as an include directory. A C program
    includes ``fastnorm.h`` and compiles the sources in; a Cython extension
    does ``from fastnorm cimport kernels`` and links nothing (see
    docs/embedding.md).

    Returns
    -------
    str
        An absolute path.

    Examples
    --------
    >>> import os
    >>> import fastnorm
    >>> os.path.isfile(os.path.join(fastnorm.get_include(), "fastnorm.h"))
    True
    """
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "_kernels")


from ._version import __version__

__all__ = [
    "layer_norm",
    "layer_norm_backward",
    "rms_norm",
    "rms_norm_backward",
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_backward",
    "ada_layer_norm",
    "ada_layer_norm_backward",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "batch_norm",
    "batch_norm_backward",
    "batch_layer_norm",
    "batch_layer_norm_backward",
    "switch_norm",
    "switch_norm_backward",
    "weight_norm",
    "weight_norm_backward",
    "BatchLayerNormStats",
    "SwitchNormStats",
    "channel_moments",
    "set_num_threads",
    "get_num_threads",
    "show_config",
    "get_config",
    "get_include",
    "nn",
    "reference",
    "__version__",
]
