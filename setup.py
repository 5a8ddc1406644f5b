"""Build of fastnorm's extension module.

What needs more than a plain Extension:
- The kernels run on fastnorm's own thread pool (pool.c, POSIX threads).
  FASTNORM_DISABLE_THREADS=1 (or its older name FASTNORM_DISABLE_OPENMP=1)
  builds them serial, as do platforms without POSIX threads; then
  fastnorm.show_config() says "serial".
- The kernel targets (dispatch.c's registry) are kernel files compiled
  with flags of their own, each only after a probe shows that the compiler
  accepts those flags: kernels_avx2.c (-mavx2 -mfma -mf16c), kernels_avx512.c
  (those and -mavx512f -mavx512vl -mavx512dq -mavx512bw) and
  kernels_avx512_bf16.c (those and -mavx512bf16: the AVX-512 BF16 rounding of
  bfloat16 in the avx2 and avx512 targets). Each needs the one before it;
  every other source has baseline flags, so the binary still runs on CPUs
  without them, and dispatch.c picks the best target the CPU has at import.
  FASTNORM_DISABLE_AVX2=1 builds the scalar kernels alone;
  FASTNORM_DISABLE_AVX512=1 builds without the avx512 target and the BF16
  rounding; FASTNORM_DISABLE_BF16_CONVERT=1 without the BF16 rounding alone.
- The sources compile in parallel, one compiler call per source (the slow
  kernel files beside the others); FASTNORM_BUILD_JOBS sets the number of
  compilers run at once (default: the number of processors).
- Release builds carry no debug information and are stripped at link time;
  FASTNORM_DEBUG=1 keeps the debug information (-g, no stripping).
- The user's CFLAGS and LDFLAGS come after the project's own flags, so they
  override them (CFLAGS="-O0 -g" or a sanitizer build works as written).
No flag here ties the binary to the build machine's CPU (no -march=native).
"""
import os
import platform
import shlex
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = os.path.join("src", "fastnorm", "_kernels")
# The public headers at the top of KERNELS; the entry tables (api/), the
# drivers (drivers/), the kernel targets (targets/) and the thread pool
# (runtime/) in folders of their own.
HEADERS = sorted(
    os.path.join(folder, name)
    for folder, _, names in os.walk(KERNELS)
    for name in names
    if name.endswith(".h")
)


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _user_flags(name):
    """The user's CFLAGS or LDFLAGS as a list, to append after the project's flags."""
    return shlex.split(os.environ.get(name, ""))


def _probe(compiler, source, compile_args, link_args=(), link=True):
    """None if `source` compiles (and links) with the given flags, else the error."""
    tmp = tempfile.mkdtemp(prefix="fastnorm-probe-")
    try:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        objects = compiler.compile([path], output_dir=tmp, extra_postargs=list(compile_args))
        if link:
            # The executable's link line has neither CFLAGS nor LDFLAGS of its own:
            # objects compiled with -fsanitize=... need them to link.
            compiler.link_executable(
                objects, "probe", output_dir=tmp,
                extra_postargs=list(link_args) + _user_flags("CFLAGS") + _user_flags("LDFLAGS"),
            )
        return None
    except Exception as exc:
        return str(exc) or type(exc).__name__
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compiles(compiler, source, compile_args, link_args=(), link=True):
    """Whether `source` compiles (and links) with the given flags."""
    return _probe(compiler, source, compile_args, link_args, link) is None


# Either builds the kernels serial (no thread pool).
SERIAL_FLAGS = ("FASTNORM_DISABLE_THREADS", "FASTNORM_DISABLE_OPENMP")


AVX2_PROBE = r"""
#include <immintrin.h>
int main(void) {
    __m256 a = _mm256_set1_ps(1.0f);
    a = _mm256_fmadd_ps(a, a, a);
    a = _mm256_cvtph_ps(_mm256_cvtps_ph(a, 0));
    const float s = _cvtsh_ss(_cvtss_sh(_mm256_cvtss_f32(a), 0));
    return (int)s == 2 ? 0 : 1;
}
"""


AVX512_PROBE = r"""
#include <immintrin.h>
int probe(const float *x, unsigned short *y) {
    __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x), _mm512_loadu_ps(x), _mm512_setzero_ps());
    _mm256_storeu_si256((__m256i *)y, _mm512_cvtps_ph(v, 0));
    _mm256_storeu_si256((__m256i *)y, _mm512_cvtepi32_epi16(_mm512_castps_si512(v)));
    __m256 h = _mm512_extractf32x8_ps(v, 1);
    return (int)_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) + (int)_mm256_cvtss_f32(h);
}
int main(void) { return 0; }
"""


BF16_CVT_PROBE = r"""
#include <immintrin.h>
int probe(float *x, unsigned short *y) {
    __m512 v = _mm512_loadu_ps(x);
    _mm256_storeu_si256((__m256i *)y, (__m256i)_mm512_cvtneps_pbh(v));
    return (int)_mm256_fpclass_ps_mask(_mm256_loadu_ps(x), 0x20);
}
int main(void) { return 0; }
"""


class KernelFile:
    """A kernel file compiled with flags of its own (a target of dispatch.c's
    registry, or a feature of one). It is built where the machine is x86,
    none of `switches` is set, the file before it in KERNEL_FILES is built
    and the compiler accepts `probe` with the flags; then `macro` is defined
    on every source. Its flags are the file before it's and `flags`."""

    def __init__(self, source, macro, flags, msvc_flags, probe, switches):
        self.source = os.path.join(KERNELS, "targets", source)
        self.macro = macro
        self.flags = flags
        self.msvc_flags = msvc_flags
        self.probe = probe
        self.switches = switches


KERNEL_FILES = [
    KernelFile("kernels_avx2.c", "FASTNORM_HAVE_AVX2", ["-mavx2", "-mfma", "-mf16c"],
               ["/arch:AVX2"], AVX2_PROBE, ("FASTNORM_DISABLE_AVX2",)),
    KernelFile("kernels_avx512.c", "FASTNORM_HAVE_AVX512",
               ["-mavx512f", "-mavx512vl", "-mavx512dq", "-mavx512bw"],
               ["/arch:AVX512"], AVX512_PROBE, ("FASTNORM_DISABLE_AVX512",)),
    KernelFile("kernels_avx512_bf16.c", "FASTNORM_HAVE_BF16_CVT", ["-mavx512bf16"],
               [], BF16_CVT_PROBE,
               ("FASTNORM_DISABLE_AVX512", "FASTNORM_DISABLE_BF16_CONVERT")),
]


class BuildExt(build_ext):
    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        debug = _env_flag("FASTNORM_DEBUG")
        if msvc:
            self._base = ["/O2"] + (["/Zi"] if debug else [])
            strip = []
            threads_compile, threads_link = [], []
        else:
            # -ffp-contract=off: the compiler must not fuse a*b+c on its own. It
            # would do it in some versions of a loop and not in others (GCC
            # versions loops on whether arrays overlap), and a row's result would
            # depend on where its arrays lie. The kernels' explicit FMAs stay.
            # -g0 undoes the -g of Python's own CFLAGS: the debug information
            # is most of an unstripped extension's size.
            self._base = ["-O3", "-fno-math-errno", "-ffp-contract=off", "-Wno-unknown-pragmas",
                          "-g" if debug else "-g0"]
            if debug:
                strip = []
            elif sys.platform == "darwin":
                strip = ["-Wl,-S", "-Wl,-x"]
            else:
                strip = ["-s"]
            threads_compile, threads_link = ["-pthread"], ["-pthread"]

        self._threads = not any(_env_flag(v) for v in SERIAL_FLAGS)
        if not self._threads:
            threads_compile, threads_link = [], []
        machine = platform.machine().lower()
        x86 = machine in ("x86_64", "amd64", "i386", "i686", "x86")
        # The kernel files to build, with their flags: each only after the one before it.
        self._kernel_files = []
        flags = []
        for kf in KERNEL_FILES:
            flags = flags + (kf.msvc_flags if msvc else kf.flags)
            if not x86 or any(_env_flag(v) for v in kf.switches) or not _compiles(
                self.compiler, kf.probe, flags, link=False
            ):
                break
            self._kernel_files.append((kf, flags))
        built = {kf.macro for kf, _ in self._kernel_files}
        print(
            f"fastnorm build: threads={'pool' if self._threads else 'serial'}, "
            f"avx2 target={'on' if 'FASTNORM_HAVE_AVX2' in built else 'off'}, "
            f"avx512 target={'on' if 'FASTNORM_HAVE_AVX512' in built else 'off'}, "
            f"avx512 bf16 rounding={'on' if 'FASTNORM_HAVE_BF16_CVT' in built else 'off'}, "
            f"{'debug information kept' if debug else 'stripped'}",
            file=sys.stderr, flush=True,
        )
        if any(_env_flag(v) for v in SERIAL_FLAGS + ("FASTNORM_DISABLE_AVX2",
                                                     "FASTNORM_DISABLE_AVX512",
                                                     "FASTNORM_DISABLE_BF16_CONVERT",
                                                     "FASTNORM_DEBUG")):
            self.force = True  # objects of an earlier build may have other flags
        # The user's flags last: the compiler takes the last of conflicting flags.
        self._user_cflags = _user_flags("CFLAGS")
        for ext in self.extensions:
            ext.extra_compile_args = self._base + threads_compile + self._user_cflags
            ext.extra_link_args = threads_link + strip + _user_flags("LDFLAGS")
            if not self._threads:
                ext.define_macros = list(ext.define_macros or []) + [("FASTNORM_SERIAL", "1")]
        super().build_extensions()

    def _jobs(self):
        jobs = os.environ.get("FASTNORM_BUILD_JOBS", "").strip()
        if jobs:
            return max(1, int(jobs))
        if isinstance(self.parallel, int) and self.parallel > 1:
            return self.parallel
        return os.cpu_count() or 1

    def build_extension(self, ext):
        """Compile each source in its own compiler call, several at once.

        setuptools compiles an extension's sources one after the other; here
        its compile() call is answered by a thread pool, one source per call,
        with the kernel files (their own flags) submitted first since they
        take longest. The objects are then linked as usual.
        """
        pool = ThreadPoolExecutor(max_workers=self._jobs())
        lock = threading.Lock()
        compile_one = self.compiler.compile

        def compile_source(source, **kwargs):
            with lock:
                print(f"fastnorm build: compiling {source}", file=sys.stderr, flush=True)
            return compile_one([source], **kwargs)

        # Every source sees which kernel files are built (dispatch.c's registry).
        macros = [(kf.macro, "1") for kf, _ in self._kernel_files]
        ext.define_macros = list(ext.define_macros or []) + macros
        kernel_objects = []
        if self._kernel_files:
            self.compiler.mkpath(os.path.join(self.build_temp, KERNELS, "targets"))
        for kf, flags in self._kernel_files:
            kernel_objects.append(pool.submit(
                compile_source, kf.source,
                output_dir=self.build_temp,
                macros=macros,
                include_dirs=[KERNELS],
                extra_postargs=self._base + flags + self._user_cflags,
                depends=HEADERS,
            ))

        def compile_parallel(sources, output_dir=None, **kwargs):
            # Output folders first, one at a time; then the compilers together.
            for obj in self.compiler.object_filenames(sources, output_dir=output_dir or ""):
                self.compiler.mkpath(os.path.dirname(obj) or ".")
            futures = [pool.submit(compile_source, src, output_dir=output_dir, **kwargs)
                       for src in sources]
            objects = [obj for f in futures for obj in f.result()]
            return objects + [obj for f in kernel_objects for obj in f.result()]

        self.compiler.compile = compile_parallel
        try:
            super().build_extension(ext)
        finally:
            del self.compiler.compile  # the class's method again
            pool.shutdown(wait=True)


extension = Extension(
    "fastnorm._core",
    sources=[
        os.path.join("src", "fastnorm", "_core.pyx"),
        os.path.join(KERNELS, "targets", "dispatch.c"),
        os.path.join(KERNELS, "runtime", "pool.c"),
        os.path.join(KERNELS, "drivers", "driver.c"),
        os.path.join(KERNELS, "api", "api_table.c"),
        os.path.join(KERNELS, "targets", "kernels_scalar.c"),
    ],
    include_dirs=[KERNELS, numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    depends=HEADERS + [kf.source for kf in KERNEL_FILES],
)

setup(
    ext_modules=cythonize(
        [extension],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "embedsignature": True,
        },
    ),
    cmdclass={"build_ext": BuildExt},
)
