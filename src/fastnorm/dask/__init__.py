"""fastnorm over dask arrays: normalization of arrays larger than memory.

Every function takes dask arrays (NumPy arrays are wrapped) and returns dask
arrays; each block goes through fastnorm's kernels. Results equal those of
the in-memory functions on the same data, whatever the chunking.

Row normalizers (layer_norm, rms_norm, add_layer_norm, add_rms_norm) need
every row whole in one chunk: chunks that split a normalized axis raise a
ValueError naming the chunking and the fix, unless ``rechunk=True`` asks for
the normalized axes to be merged into one chunk each (the other axes then
take dask's "auto" chunk size). A rechunk across the normalized axes moves
every element between tasks, which can cost more than the normalization
itself, so it is done only when asked (as dask's own ``apply_gufunc`` asks
for ``allow_rechunk``). The parameter gradients of the backward functions
are summed over the blocks in float64 by dask's tree reduction: the same
chunking gives the same bits.

Channel normalizers (batch_norm in training, group_norm and instance_norm
when a sample is split over chunks) take per-block partial statistics
(count, mean, centered sum of squares, by fastnorm's channel kernels), merge
them in float64 with Chan's parallel formula in a dask tree reduction, then
normalize each block with the merged statistics. The statistics are computed
when the function is called (``dask.compute``, one pass over x): running
statistics are then updated in place on return, as fastnorm.batch_norm does,
and the result's graph reads x once more and holds no block waiting for the
reduction (a lazy graph would keep every block of x in memory between the
two passes). The backward of these takes its two per-channel sums (of dy and
of dy * xhat) the same way, then computes dx block by block.

Arrays whose chunk sizes are unknown (NaN, as boolean indexing makes them)
work wherever only the known axes matter: row normalizers with known
normalized axes, channel_moments, batch_norm and its backward, group_norm and
instance_norm over whole samples. Elsewhere a ValueError asks for
``x.compute_chunk_sizes()``.

Each block runs ``num_threads`` fastnorm threads, 1 by default: dask's
workers provide the parallelism, and more threads per task would compete
with them for the cores.
"""

try:
    import dask
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        "fastnorm.dask needs dask: pip install 'fastnorm-cpu[dask]' (dask[array]; "
        "distributed for clusters)"
    ) from e

__all__ = [
    "layer_norm",
    "layer_norm_backward",
    "rms_norm",
    "rms_norm_backward",
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_backward",
    "channel_moments",
    "batch_norm",
    "batch_norm_backward",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
]

from ._channel_backward import batch_norm_backward, group_norm_backward, instance_norm_backward
from ._channels import batch_norm, group_norm, instance_norm
from ._moments import channel_moments
from ._rows import (
    add_layer_norm,
    add_layer_norm_backward,
    add_rms_norm,
    add_rms_norm_backward,
    layer_norm,
    layer_norm_backward,
    rms_norm,
    rms_norm_backward,
)

# The public functions belong to this module (their documentation, and the
# path under which pickle finds them).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
