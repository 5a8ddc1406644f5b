"""fastnorm._core: argument checking, array layout, and the calls into the C kernels.

Every public normalizer is a `def` here so that a call goes from Python to
the kernel through one compiled function: checks first (nothing is written
before they pass), then a (rows, n) view of each array with unit element
stride -- made without a copy whenever the layout allows it -- then one C
call with the GIL released.
"""
import os

import numpy as np

cimport numpy as cnp
from libc.math cimport NAN, isfinite, isinf, sqrt
from libc.stdint cimport int64_t, uint16_t, uintptr_t
from libc.string cimport memcpy

cimport cython
from cpython.pycapsule cimport PyCapsule_New

cnp.import_array()

# The C declarations: every entry point of fastnorm.h, and dtype_generic.h's
# functions that take the data type as an argument (generated from the list
# of operations, tools/api_spec.py).
include "_entry_points.pxi"


# The entry points of fastnorm.h as a table, for other extension modules
# (fastnorm_capi.h, fastnorm/kernels.pxd): they call these kernels without
# linking them.
_C_API = PyCapsule_New(<void *>fastnorm_get_api_table(), "fastnorm._core._C_API", NULL)


# --------------------------------------------------------------------------
# Instruction set and threads
# --------------------------------------------------------------------------

include "_targets.pxi"


cdef extern from "targets/dispatch.h":
    int64_t fn_stream_min_bytes() nogil
    int64_t fn_set_stream_min_bytes(int64_t nbytes) nogil
    void fn_set_output_fresh(int fresh) nogil
    int fn_set_stream_fresh(int on) nogil
    void *fn_stream_for(int64_t nbytes, int64_t row_bytes, void **fence) nogil
    int64_t fn_set_stream_min_row_bytes(int64_t nbytes) nogil
    int fn_set_backward_rows(int mode) nogil
    int64_t fn_set_backward_widen_max(int64_t n) nogil
    int fn_set_next_row_sums(int on) nogil
    int64_t fn_take_next_row_sums_count() nogil
    int fn_set_short_rows(int on) nogil
    int fn_set_row_min(int on) nogil
    int64_t fn_take_short_rows_count() nogil
    int64_t fn_cache_bytes() nogil


def _stream_bytes(nbytes=None):
    """The output size (bytes) from which the row normalizers write y and dx
    with streaming stores, in rows of 2 KiB or more (shorter rows: from twice
    this; -1: never). nbytes=None asks; an int sets it
    (negative: never) and returns the value before. For tests that compare
    the two stores (the same bits), and for measuring; FASTNORM_STREAM_BYTES
    in the environment sets it at the first call. It applies to outputs the
    caller passes (out=); the arrays a call allocates itself are written
    with ordinary stores (see _stream_fresh)."""
    if nbytes is None:
        return fn_stream_min_bytes()
    return fn_set_stream_min_bytes(int(nbytes))


def _stream_fresh(on=None):
    """Whether the outputs a call allocates itself (fresh pages) may be written
    with streaming stores too (by the threshold alone). False by default: the
    OS zeroes fresh pages through the cache, where ordinary stores then find
    them. on=None asks; True / False sets it and returns the setting before.
    For tests that run the streaming path without out=, and for measuring."""
    return bool(fn_set_stream_fresh(-1 if on is None else (1 if on else 0)))


def _stream_row_bytes(nbytes=None):
    """The shortest row (bytes) whose outputs stream; nbytes=None asks, an int
    >= 0 sets it and returns the value before. For tests that take the
    streaming path with short rows."""
    return fn_set_stream_min_row_bytes(-1 if nbytes is None else max(int(nbytes), 0))


def _backward_rows(mode=None):
    """Whether the row backward takes several rows' dx together: None asks,
    -1 by its rule (the default), 0 never, 1 wherever it can (rows read as
    stored, any length and dtype); a setting returns the one before. For
    tests that compare the two ways (the same bits)."""
    if mode is None:
        return fn_set_backward_rows(-2)
    if mode not in (-1, 0, 1):
        raise ValueError(f"mode must be -1, 0 or 1, not {mode!r}")
    return fn_set_backward_rows(mode)


def _rule_switch(setter, on):
    """A kernel rule's switch for tests: on=None asks, True / False sets it;
    a setting returns the one before."""
    if on is None:
        return bool(setter(-1))
    if not isinstance(on, (bool, np.bool_)):
        raise ValueError(f"on must be True or False, not {on!r}")
    return bool(setter(1 if on else 0))


def _next_row_sums(on=None):
    """Whether streamed rows take the next row's statistics (the forward) or
    sums (the backward) in the loops of their output where the kernels' rule
    says so: None asks, True (the default) or False; a setting returns the
    one before. For tests that compare the two ways (the same bits)."""
    return _rule_switch(lambda v: fn_set_next_row_sums(v), on)


def _next_row_sums_taken():
    """The rows whose statistics or sums were taken in the loops of the row
    before (_next_row_sums) since this was last asked. For tests."""
    return fn_take_next_row_sums_count()


def _short_rows(on=None):
    """Whether short rows go many at a time through the row kernels that take
    them so, where the kernels' rule says so: None asks, True (the default)
    or False; a setting returns the one before. For tests that compare the
    two ways (the same bits)."""
    return _rule_switch(lambda v: fn_set_short_rows(v), on)


def _row_min(on=None):
    """Whether short rows take the tables the kernel registry gives them
    (another target's where it measured faster): None asks, True (the
    default) or False (the target's own tables); a setting returns the one
    before. For tests that keep every target's short-row code tested."""
    return _rule_switch(lambda v: fn_set_row_min(v), on)


def _short_rows_taken():
    """The rows that went many at a time (_short_rows) since this was last
    asked. For tests."""
    return fn_take_short_rows_count()


def _backward_widen_max(n=None):
    """The longest bfloat16 rows whose backward widens dy and x into float32
    copies: None asks, -1 the target's choice (the default), 0 <= n < 2**62
    sets it (0: never); a setting returns the one before. For tests that compare the
    two ways (the same bits)."""
    if n is None:
        return fn_set_backward_widen_max(-2)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not -1 <= n < 2**62:
        raise ValueError(f"n must be an int from -1 to 2**62 - 1, not {n!r}")
    return fn_set_backward_widen_max(n)


def _cache_bytes():
    """The bytes of data a call's arrays may take and still stay in the
    last-level cache by the kernels' estimate."""
    return fn_cache_bytes()


def _streams(nbytes, fresh, row_bytes=1 << 20):
    """Whether a row output of nbytes bytes, in rows of row_bytes, would be
    written with streaming stores now, into fresh memory (fresh=True) or
    into the caller's."""
    cdef void *fence = NULL
    cdef void *copy
    fn_set_output_fresh(1 if fresh else 0)
    copy = fn_stream_for(int(nbytes), int(row_bytes), &fence)
    fn_set_output_fresh(0)
    return copy != NULL


cdef extern from "runtime/pool.h":
    int fn_pool_spin_us(int us) nogil
    int fn_pool_quiet_ms(int ms) nogil
    int fn_pool_shuffle(int on) nogil
    int fn_pool_workers() nogil
    int fn_pool_oversubscribed() nogil
    long fn_pool_runnable() nogil
    ctypedef void (*fn_team_runner)(void (*fn)(void *), void *data, unsigned nthreads,
                                    unsigned flags)
    void fn_pool_set_team(fn_team_runner run) nogil
    fn_team_runner fn_pool_team() nogil


def _has_threads():
    """Whether the kernels were built with fastnorm's thread pool (else serial)."""
    return bool(fastnorm_has_threads())


def _pool_spin_us(us=None):
    """The workers' spin after a call, in microseconds (for measurements)."""
    if us is not None and (isinstance(us, bool) or not isinstance(us, (int, np.integer))
                           or us < 0):
        raise ValueError(f"us must be a non-negative int, got {us!r}")
    return fn_pool_spin_us(-1 if us is None else min(int(us), 1000000))


def _pool_quiet_ms(ms=None):
    """How long the pool keeps quiet (calls on the caller alone, workers not
    spinning) once it sees the CPUs oversubscribed, in milliseconds; 0 turns
    that off (for measurements). Returns the value in force."""
    if ms is not None and (isinstance(ms, bool) or not isinstance(ms, (int, np.integer))
                           or ms < 0):
        raise ValueError(f"ms must be a non-negative int, got {ms!r}")
    return fn_pool_quiet_ms(-1 if ms is None else min(int(ms), 60000))


def _pool_oversubscribed():
    """Whether the pool's test for oversubscribed CPUs, which a call that
    looked stalled must pass before the pool keeps quiet, says so now."""
    return bool(fn_pool_oversubscribed())


def _pool_runnable():
    """The runnable-thread count that test reads (-1: it cannot be read)."""
    return int(fn_pool_runnable())


def _pool_shuffle(on=None):
    """For tests: True makes every threaded call claim its chunks in a random
    order, its workers pausing at random before each claim (the results must
    not change); False restores the normal order. Returns the setting."""
    return bool(fn_pool_shuffle(-1 if on is None else (1 if on else 0)))


def _host_team(address=None):
    """The threads calls run on beside the caller: with address, the address
    of a function with the signature of the OpenMP runtime's GOMP_parallel
    (an int; 0 goes back to fastnorm's own pool), whose threads then run the
    calls' chunks. Returns the address in force (0: the pool). The function
    must stay loaded while it is set."""
    if address is not None:
        if isinstance(address, bool) or not isinstance(address, (int, np.integer)) \
                or not 0 <= address < 2 ** 63:
            raise ValueError(f"address must be a non-negative int, got {address!r}")
        fn_pool_set_team(<fn_team_runner><size_t>address)
    return <size_t>fn_pool_team()


def _pool_workers():
    """Worker threads the pool has started."""
    return fn_pool_workers()


cdef int _user_threads = 0  # 0: not set, follow the pool's default; < 0: count back from it


cdef int _check_threads(object n, str name) except 0:
    """A thread request as given (negative: count back), clamped to a C int; 0 is refused."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {type(n).__name__}")
    if n == 0:
        raise ValueError(
            f"{name} must be positive, or negative to count back from the number of "
            "usable threads (-1: all of them); got 0"
        )
    return max(-(1 << 20), min(int(n), 1 << 20))  # beyond any machine: clamp


cdef inline int _effective_threads(int request):
    """Threads for a checked request: 0 = the pool's default, < 0 counts back from it.

    Never more than the processors this process may run on (the CPU
    affinity): more threads than cores only wait for each other, and each
    costs an OS thread."""
    if not fastnorm_has_threads() or fastnorm_serial_after_fork():
        return 1
    cdef int cap = max(1, fastnorm_num_procs())
    if request > 0:
        return min(request, cap)
    cdef int available = min(max(1, fastnorm_max_threads()), cap)
    if request == 0:
        return available
    return max(1, available + 1 + request)


cdef inline int _resolve_threads(object num_threads) except -1:
    if num_threads is None:
        return _effective_threads(_user_threads)
    return _effective_threads(_check_threads(num_threads, "num_threads"))


def set_num_threads(n):
    """Set the default number of threads of fastnorm's kernels.

    Parameters
    ----------
    n : int or None
        ``n`` > 0 is the count; ``n`` < 0 counts back from the number of usable
        threads at each call (``-1``: all); ``None`` returns to the default,
        which follows the thread pool's default (threadpoolctl's limits, else
        ``OMP_NUM_THREADS``, else the CPU affinity). No call uses more threads
        than the processors this process may run on (its CPU affinity): a
        larger count runs with that many. A serial build always uses one
        thread.

    Examples
    --------
    >>> import fastnorm
    >>> fastnorm.set_num_threads(1)
    >>> fastnorm.get_num_threads()
    1
    >>> fastnorm.set_num_threads(None)  # back to the pool's default
    """
    global _user_threads
    _user_threads = 0 if n is None else _check_threads(n, "n")


def get_num_threads():
    """The number of threads a call with ``num_threads=None`` may use.

    Returns
    -------
    int
        1 in a process forked after fastnorm's threads ran: calls there run on
        one thread whatever they ask for (the same results).

    Examples
    --------
    >>> import fastnorm
    >>> fastnorm.get_num_threads() >= 1
    True
    """
    return _effective_threads(_user_threads)


def _num_procs():
    return fastnorm_num_procs()


def _serial_after_fork():
    """Whether this process was forked after fastnorm's threads ran (calls run on one thread)."""
    return bool(fastnorm_serial_after_fork())


# --------------------------------------------------------------------------
# The normalizers, one file per layer or family
# --------------------------------------------------------------------------

include "_args.pxi"            # argument checks and the data types
include "_layout.pxi"          # (rows, n) views of the arrays, where results go
include "_rows.pxi"            # LayerNorm, RMSNorm
include "_axis.pxi"            # ... over one axis that is not the last
include "_add_norm.pxi"        # the fused residual add + norm
include "_ada.pxi"             # adaptive LayerNorm (AdaLN)

# --------------------------------------------------------------------------
# The channel normalizers' C stages (group, instance, batch norm, ...)
# --------------------------------------------------------------------------

include "_channel.pxi"
