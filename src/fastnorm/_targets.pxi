# The kernel targets of dispatch.c's registry, seen from Python: their
# names, their selection (here, and FASTNORM_ISA at import), and the CPU
# features they need. Included by _core.pyx.

cdef extern from "targets/dispatch.h" nogil:
    ctypedef struct fn_target_info:
        int isa
        const char *name
        int built
        unsigned need
    int fn_target_at(int i, fn_target_info *info)
    unsigned fn_hide_cpu_features(unsigned bits)
    int fn_set_bf16_convert(int on)


# The FASTNORM_CPU_* bits, by the names _cpu_features() and the error
# messages give them
_CPU_BITS = {
    "avx": FASTNORM_CPU_AVX,
    "avx2": FASTNORM_CPU_AVX2,
    "fma": FASTNORM_CPU_FMA,
    "f16c": FASTNORM_CPU_F16C,
    "os_avx": FASTNORM_CPU_OS_AVX,
    "avx512f": FASTNORM_CPU_AVX512F,
    "avx512vl": FASTNORM_CPU_AVX512VL,
    "avx512dq": FASTNORM_CPU_AVX512DQ,
    "avx512bw": FASTNORM_CPU_AVX512BW,
    "avx512_bf16": FASTNORM_CPU_AVX512_BF16,
    "os_avx512": FASTNORM_CPU_OS_AVX512,
}


def _read_registry():
    """The registry's targets, best first: (name, FASTNORM_ISA_* code, built,
    the FASTNORM_CPU_* bits needed) each."""
    cdef fn_target_info info
    cdef int i = 0
    out = []
    while fn_target_at(i, &info):
        out.append((info.name.decode("ascii"), info.isa, bool(info.built), info.need))
        i += 1
    return out


_TARGETS = _read_registry()
_TARGET_CODES = {name: code for name, code, _, _ in _TARGETS}
_TARGET_NAMES = {code: name for name, code, _, _ in _TARGETS}


def _unavailable_because(name):
    """Why the target `name` cannot be selected here, or None when it can."""
    for target, code, built, need in _TARGETS:
        if target == name:
            break
    else:
        raise ValueError(f"unknown kernel target {name!r}")
    if not built:
        return "this build of fastnorm does not include them"
    missing = need & ~fastnorm_cpu_features()
    if missing:
        return "the CPU or OS lacks " + ", ".join(
            feature for feature, bit in _CPU_BITS.items() if missing & bit)
    return None


def _targets():
    """Every kernel target, best first: (name, available, why not or None) each."""
    out = []
    for name, _, _, _ in _TARGETS:
        why = _unavailable_because(name)
        out.append((name, why is None, why))
    return out


def _available_isas():
    """The targets this build and CPU can run, best last."""
    return [name for name, code, _, _ in reversed(_TARGETS) if fastnorm_isa_available(code)]


def _set_isa(name):
    """Select the kernel target by name ("avx512", "avx2", "scalar", or "auto"
    for the best available); returns the name in use.

    A target this build or CPU lacks raises ValueError saying why, and the
    target in use stays. Meant for tests and benchmarks that compare the
    targets in one process; the environment variable FASTNORM_ISA does the
    same at import.
    """
    if name == "auto":
        name = next(n for n, code, _, _ in _TARGETS if fastnorm_isa_available(code))
    elif name not in _TARGET_CODES:
        expected = ", ".join(repr(n) for n in _TARGET_CODES)
        raise ValueError(f"unknown kernel target {name!r}; expected {expected} or 'auto'")
    why = _unavailable_because(name)
    if why is not None:
        raise ValueError(f"the {name} kernels are not available: {why}")
    code = fastnorm_set_isa(_TARGET_CODES[name])
    if code < 0:
        raise ValueError(f"the {name} kernels are not available")
    return _TARGET_NAMES[code]


def _get_isa():
    """Name of the kernel target in use."""
    return _TARGET_NAMES[fastnorm_get_isa()]


def _cpu_features():
    cdef unsigned f = fastnorm_cpu_features()
    return {name: bool(f & bit) for name, bit in _CPU_BITS.items()}


def _hide_cpu_features(names=()):
    """For tests: the target selection treats these CPU features (names of
    _cpu_features()) as absent, as on a CPU without them; () shows them all
    again. The target in use stays. Returns the names hidden before."""
    cdef unsigned bits = 0
    for name in names:
        if name not in _CPU_BITS:
            raise ValueError(f"unknown CPU feature {name!r}")
        bits |= _CPU_BITS[name]
    before = fn_hide_cpu_features(bits)
    return [name for name, bit in _CPU_BITS.items() if before & bit]


def _bf16_convert(on=None):
    """Whether the target in use rounds bfloat16 with the AVX-512 BF16 instruction.

    on=None asks; True / False allows / forbids it (the avx2 and avx512
    targets use it where the build and the CPU have it; both roundings give
    the same bits), for the target in use and any selected later. For tests
    that compare the two. Returns whether it is in use.
    """
    if on is None:
        return bool(fastnorm_bf16_convert_in_use())
    return bool(fn_set_bf16_convert(1 if on else 0))


def _select_isa_from_environment():
    """FASTNORM_ISA=<target> selects the kernels at import ("auto" or unset:
    the best available); an unknown target, or one this build or CPU lacks,
    fails the import with the reason."""
    requested = os.environ.get("FASTNORM_ISA", "").strip().lower() or "auto"
    try:
        return _set_isa(requested)
    except ValueError as exc:
        raise ImportError(f"FASTNORM_ISA={requested!r}: {exc}") from None


_select_isa_from_environment()
