"""fastnorm: fast, accurate normalization layers for NumPy on the CPU.

Functions take and return NumPy arrays and follow PyTorch's names and
defaults; every forward has an explicit backward. See ``fastnorm.nn`` for
layer classes that hold parameters and gradients, ``fastnorm.reference`` for
the plain float64 NumPy formulas the kernels are tested against, and
``fastnorm.show_config()`` for what this build and CPU use.
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
from ._config import get_config, show_config
from . import nn, reference

__version__ = "0.1.0"

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
    "set_num_threads",
    "get_num_threads",
    "show_config",
    "get_config",
    "nn",
    "reference",
    "__version__",
]
