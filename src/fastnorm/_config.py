"""What this build of fastnorm and this CPU give: kernel targets, features, threads."""
import platform

from . import _core


def get_config():
    """The configuration as a dict (what :func:`show_config` prints).

    Returns
    -------
    dict
        ``version``; ``isa``, the kernel target in use (``"avx512"``,
        ``"avx2"`` or ``"scalar"``), and ``isas_available``, the targets this
        build and CPU can run, best last; ``targets``, every target, best
        first, each a dict of ``available``, ``in_use`` and ``reason`` (why
        it is not available: the CPU features it lacks, or a build without
        it; None when available); ``bf16_rounding`` (``"avx512_bf16"`` or
        ``"integer"``); ``cpu_features`` (name to bool); ``machine``;
        ``threads`` (``"fastnorm pool"``; ``"host OpenMP threads"`` while
        calls run on another library's OpenMP threads, as
        ``fastnorm.torch`` sets; ``"serial"`` for a build without threads);
        ``num_threads`` (:func:`get_num_threads`); ``num_procs``.

    Examples
    --------
    >>> import fastnorm
    >>> cfg = fastnorm.get_config()
    >>> cfg["version"] == fastnorm.__version__, cfg["isa"] in cfg["isas_available"]
    (True, True)
    """
    from . import __version__

    isa = _core._get_isa()
    return {
        "version": __version__,
        "isa": isa,
        "isas_available": _core._available_isas(),
        "targets": {name: {"available": available, "in_use": name == isa, "reason": reason}
                    for name, available, reason in _core._targets()},
        "bf16_rounding": _bf16_rounding(),
        "cpu_features": _core._cpu_features(),
        "machine": platform.machine(),
        "threads": ("serial" if not _core._has_threads() else
                    "host OpenMP threads" if _core._host_team() else "fastnorm pool"),
        "num_threads": _core.get_num_threads(),
        "num_procs": _core._num_procs(),
    }


def _bf16_rounding():
    """How the kernels in use round float32 results to bfloat16."""
    if _core._bf16_convert():
        return "avx512_bf16"
    return "integer"


def show_config():
    """Print the version, the kernel targets, the CPU features seen and the threads.

    Examples
    --------
    >>> import fastnorm
    >>> fastnorm.show_config()  # doctest: +ELLIPSIS
    fastnorm ...
      kernels in use : ...
      threads        : ...
    """
    cfg = get_config()
    feats = cfg["cpu_features"]
    seen = [name for name, on in feats.items() if on]
    print(f"fastnorm {cfg['version']}")
    print(f"  kernels in use : {cfg['isa']}")
    width = max(len(name) for name in cfg["targets"])
    for i, (name, t) in enumerate(cfg["targets"].items()):
        state = ("in use" if t["in_use"] else "available" if t["available"]
                 else f"unavailable: {t['reason']}")
        label = "  kernel targets : " if i == 0 else " " * 19
        print(f"{label}{name:<{width}}  {state}")
    print(f"  bf16 rounding  : {cfg['bf16_rounding']}")
    print(f"  machine        : {cfg['machine']}")
    print(f"  cpu features   : {', '.join(seen) if seen else 'none of avx/avx2/fma/f16c'}")
    print(f"  threads        : {cfg['threads']}, {cfg['num_threads']} by default "
          f"(of {cfg['num_procs']} processors)")
