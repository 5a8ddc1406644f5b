"""Build of fastnorm's extension module.

What needs more than a plain Extension:
- The kernels run on fastnorm's own thread pool (pool.c, POSIX threads).
  FASTNORM_DISABLE_THREADS=1 (or its older name FASTNORM_DISABLE_OPENMP=1)
  builds them serial, as do platforms without POSIX threads; then
  fastnorm.show_config() says "serial".
- Only kernels_avx2.c is compiled with AVX2/FMA flags, so the binary still
  runs on CPUs without them; dispatch.c picks the kernels at import.
  FASTNORM_DISABLE_AVX2=1 builds the scalar kernels alone.
- The sources compile in parallel, one compiler call per source (the slow
  kernels_avx2.c beside the others); FASTNORM_BUILD_JOBS sets the number of
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
AVX2_SOURCE = os.path.join(KERNELS, "kernels_avx2.c")
HEADERS = [
    os.path.join(KERNELS, name)
    for name in sorted(os.listdir(KERNELS))
    if name.endswith(".h")
]


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
    return (int)_mm256_cvtss_f32(a) == 2 ? 0 : 1;
}
"""


# The AVX2 kernels' vector pairs in AVX-512 registers, compiled for the
# functions kernels_avx2.c marks (used only where the CPU has AVX-512)
AVX512_PROBE = r"""
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw")
#endif
int probe(const float *x, unsigned short *y) {
    __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x), _mm512_loadu_ps(x), _mm512_setzero_ps());
    _mm256_storeu_si256((__m256i *)y, _mm512_cvtps_ph(v, 0));
    _mm256_storeu_si256((__m256i *)y, _mm512_cvtepi32_epi16(_mm512_castps_si512(v)));
    __m256 h = _mm512_extractf32x8_ps(v, 1);
    return (int)_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) + (int)_mm256_cvtss_f32(h);
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
int main(void) { return 0; }
"""


# The AVX-512 BF16 rounding of bfloat16 results, compiled into the AVX2 kernels
# for the functions kernels_avx2.c marks (used only where the CPU has it)
BF16_CVT_PROBE = r"""
#include <immintrin.h>
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16"))), \
                             apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx512bf16")
#endif
int probe(float *x, unsigned short *y) {
    __m512 v = _mm512_loadu_ps(x);
    _mm256_storeu_si256((__m256i *)y, (__m256i)_mm512_cvtneps_pbh(v));
    return (int)_mm256_fpclass_ps_mask(_mm256_loadu_ps(x), 0x20);
}
#if defined(__clang__)
#pragma clang attribute pop
#endif
int main(void) { return 0; }
"""


class BuildExt(build_ext):
    def build_extensions(self):
        msvc = self.compiler.compiler_type == "msvc"
        debug = _env_flag("FASTNORM_DEBUG")
        if msvc:
            self._base = ["/O2"] + (["/Zi"] if debug else [])
            strip = []
            threads_compile, threads_link = [], []
            self._avx2_flags = ["/arch:AVX2"]
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
            self._avx2_flags = ["-mavx2", "-mfma", "-mf16c"]

        self._threads = not any(_env_flag(v) for v in SERIAL_FLAGS)
        if not self._threads:
            threads_compile, threads_link = [], []
        machine = platform.machine().lower()
        x86 = machine in ("x86_64", "amd64", "i386", "i686", "x86")
        if not x86 or _env_flag("FASTNORM_DISABLE_AVX2") or not _compiles(
            self.compiler, AVX2_PROBE, self._avx2_flags, link=False
        ):
            self._avx2_flags = None
        self._avx512 = bool(self._avx2_flags) and not _env_flag(
            "FASTNORM_DISABLE_AVX512") and _compiles(
            self.compiler, AVX512_PROBE, self._avx2_flags, link=False)
        self._bf16_cvt = bool(self._avx2_flags) and not _env_flag(
            "FASTNORM_DISABLE_BF16_CONVERT") and _compiles(
            self.compiler, BF16_CVT_PROBE, self._avx2_flags, link=False)
        print(
            f"fastnorm build: threads={'pool' if self._threads else 'serial'}, "
            f"avx2 kernels={'on' if self._avx2_flags else 'off'}, "
            f"avx512 vector pairs={'on' if self._avx512 else 'off'}, "
            f"avx512 bf16 rounding={'on' if self._bf16_cvt else 'off'}, "
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
        with kernels_avx2.c (its own flags) submitted first since it takes
        longest. The objects are then linked as usual.
        """
        pool = ThreadPoolExecutor(max_workers=self._jobs())
        lock = threading.Lock()
        compile_one = self.compiler.compile

        def compile_source(source, **kwargs):
            with lock:
                print(f"fastnorm build: compiling {source}", file=sys.stderr, flush=True)
            return compile_one([source], **kwargs)

        avx2 = None
        macros = []
        if self._avx2_flags:
            # The AVX2 kernels get their own flags: compile them apart and
            # link the object in.
            macros = [("FASTNORM_HAVE_AVX2", "1")]
            if self._avx512:
                macros.append(("FASTNORM_HAVE_AVX512", "1"))
            if self._bf16_cvt:
                macros.append(("FASTNORM_HAVE_BF16_CVT", "1"))
            self.compiler.mkpath(os.path.join(self.build_temp, KERNELS))
            avx2 = pool.submit(
                compile_source, AVX2_SOURCE,
                output_dir=self.build_temp,
                macros=macros,
                include_dirs=[KERNELS],
                extra_postargs=self._base + self._avx2_flags + self._user_cflags,
                depends=HEADERS,
            )
            ext.define_macros = list(ext.define_macros or []) + macros

        def compile_parallel(sources, output_dir=None, **kwargs):
            # Output folders first, one at a time; then the compilers together.
            for obj in self.compiler.object_filenames(sources, output_dir=output_dir or ""):
                self.compiler.mkpath(os.path.dirname(obj) or ".")
            futures = [pool.submit(compile_source, src, output_dir=output_dir, **kwargs)
                       for src in sources]
            objects = [obj for f in futures for obj in f.result()]
            if avx2 is not None:
                objects += avx2.result()
            return objects

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
        os.path.join(KERNELS, "dispatch.c"),
        os.path.join(KERNELS, "pool.c"),
        os.path.join(KERNELS, "driver.c"),
        os.path.join(KERNELS, "api_table.c"),
        os.path.join(KERNELS, "kernels_scalar.c"),
    ],
    include_dirs=[KERNELS, numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    depends=HEADERS + [AVX2_SOURCE],
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
