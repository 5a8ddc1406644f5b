"""fastnorm's C API: the installed header found with fastnorm.get_include(),
a C program that includes it and compiles the kernel sources in
(tests/embed/embed_check.c), and a Cython extension that cimports
fastnorm.kernels and calls the package's kernels without the GIL
(tests/embed/cimport_check.pyx). The builds run in temporary folders; they
skip when no C compiler (or Cython, setuptools, Python.h) is found."""
import ctypes
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap

import numpy as np
import pytest

import fastnorm as fn
from fastnorm import _core
from conftest import make_array

HERE = os.path.dirname(os.path.abspath(__file__))
EMBED = os.path.join(HERE, "embed")
# What a program compiles in: every kernel source but kernels_avx2.c, which
# needs AVX2 + FMA flags of its own (and FASTNORM_HAVE_AVX2 on the others).
SOURCES = ["targets/dispatch.c", "drivers/driver.c", "runtime/pool.c", "api/api_table.c",
           "targets/kernels_scalar.c"]
AVX2_SOURCE = "targets/kernels_avx2.c"
ISA_CODES = {"scalar": 0, "avx2": 1, "avx512": 2}

MAJOR, MINOR, PATCH = map(int, fn.__version__.split("."))
VERSION_NUMBER = 10000 * MAJOR + 100 * MINOR + PATCH

windows = pytest.mark.skipif(sys.platform == "win32", reason="the build commands are for cc")


def _cc():
    cc = os.environ.get("CC", "").split()[:1] or [
        c for c in (shutil.which("cc"), shutil.which("gcc"), shutil.which("clang")) if c
    ][:1]
    if not cc or not shutil.which(cc[0]):
        pytest.skip("no C compiler")
    return cc[0]


def _env():
    """This process's environment, with the fastnorm under test importable."""
    env = dict(os.environ)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(fn.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [pkg_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env.pop("FASTNORM_ISA", None)
    return env


def _run(cmd, cwd, timeout=300, **kw):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout}\n{proc.stderr}"
    return proc


# --------------------------------------------------------------------------
# The installed header and sources
# --------------------------------------------------------------------------

def test_get_include_holds_the_header_and_sources():
    inc = fn.get_include()
    assert isinstance(inc, str) and os.path.isabs(inc)
    assert "get_include" in fn.__all__
    headers = ["fastnorm.h", "fastnorm_ops.h", "fastnorm_table.h", "fastnorm_capi.h",
               "fastnorm_capi_names.h"]
    for name in headers + [AVX2_SOURCE] + SOURCES:
        assert os.path.isfile(os.path.join(inc, name)), f"{name} is not installed"
    pkg = os.path.dirname(os.path.abspath(fn.__file__))
    assert os.path.isfile(os.path.join(pkg, "kernels.pxd"))


def test_header_version_and_no_python():
    with open(os.path.join(fn.get_include(), "fastnorm.h")) as f:
        text = f.read()
    parts = [
        int(re.search(rf"#define FASTNORM_VERSION_{k} (\d+)", text).group(1))
        for k in ("MAJOR", "MINOR", "PATCH")
    ]
    assert ".".join(map(str, parts)) == fn.__version__
    assert not re.search(r"#\s*include\s*[<\"]Python", text)
    assert not re.search(r"\bPy[A-Z_]\w*", text)


def test_capsule_table():
    """The capsule's table: its version, size and release, read with ctypes."""
    cap = _core._C_API
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    ptr = get(cap, b"fastnorm._core._C_API")
    assert ptr
    table_version, table_size, version_number = (ctypes.c_int * 3).from_address(ptr)
    assert table_version == 1
    # 3 ints, then 36 function pointers
    assert table_size >= 3 * ctypes.sizeof(ctypes.c_int) + 36 * ctypes.sizeof(ctypes.c_void_p)
    assert version_number == VERSION_NUMBER


# The members of fastnorm_api_table version 1 after its three ints, in order:
# the layout that compiled programs and extensions rely on. Members are only
# ever appended to it.
_FIRST_OPS = ["layer_norm", "layer_norm_backward", "rms_norm", "rms_norm_backward",
              "add_layer_norm", "add_rms_norm", "layer_norm_per_sample",
              "layer_norm_per_sample_backward", "group_norm", "group_norm_backward",
              "channel_moments", "channel_normalize", "channel_sums", "channel_affine_backward"]
_AXIS_WEIGHT_OPS = ["layer_norm_axis", "rms_norm_axis", "layer_norm_axis_backward",
                    "rms_norm_axis_backward"]
TABLE_V1 = (
    ["cpu_features", "isa_available", "set_isa", "get_isa", "has_openmp", "max_threads",
     "num_procs", "serial_after_fork"]
    + [f"{op}_{t}" for op in _FIRST_OPS + _AXIS_WEIGHT_OPS
       + ["weight_norm", "weight_norm_backward", "channel_sums_scale"] for t in ("f32", "f64")]
    + [f"{op}_{t}" for t in ("f16", "bf16") for op in _FIRST_OPS + _AXIS_WEIGHT_OPS
       + ["channel_sums_scale", "weight_norm", "weight_norm_backward"]]
    + [f"{op}_{t}" for t in ("f32", "f64", "f16", "bf16")
       for op in ("add_layer_norm_axis", "add_rms_norm_axis")]
    + ["bf16_convert_in_use"]
    + [f"{op}_{t}" for t in ("f32", "f64", "f16", "bf16")
       for op in ("add_layer_norm_backward", "add_rms_norm_backward")]
    + ["avx512_in_use"]
)


def test_capsule_table_layout_is_version_1():
    """Each member of the capsule's table, at its version-1 place, is the entry
    point of its name (found by the dynamic linker in the extension)."""
    try:
        lib = ctypes.CDLL(_core.__file__)
        lib.fastnorm_layer_norm_f32
    except (OSError, AttributeError):
        pytest.skip("the extension's symbols cannot be looked up here")

    class Table(ctypes.Structure):
        _fields_ = ([(name, ctypes.c_int) for name in ("table_version", "table_size",
                                                       "version_number")]
                    + [(name, ctypes.c_void_p) for name in TABLE_V1])

    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    table = Table.from_address(get(_core._C_API, b"fastnorm._core._C_API"))
    assert table.table_version == 1
    assert table.table_size >= ctypes.sizeof(Table)
    for name in TABLE_V1:
        entry = ctypes.cast(getattr(lib, f"fastnorm_{name}"), ctypes.c_void_p).value
        assert getattr(table, name) == entry, name


@windows
def test_header_compiles_as_strict_c(tmp_path):
    cc = _cc()
    src = tmp_path / "only_header.c"
    src.write_text('#include "fastnorm.h"\nint main(void) { return FASTNORM_OK; }\n')
    _run([cc, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-I", fn.get_include(),
          "-c", str(src), "-o", str(tmp_path / "only_header.o")], cwd=tmp_path)


# --------------------------------------------------------------------------
# A C program with the kernels compiled in
# --------------------------------------------------------------------------

def _build_c_program(tmp_path):
    cc = _cc()
    inc = fn.get_include()
    flags = ["-O2", "-fno-math-errno", "-ffp-contract=off", "-I", inc]
    objects, defines = [], []
    if "avx2" in _core._available_isas():
        obj = str(tmp_path / "kernels_avx2.o")
        _run([cc] + flags + ["-mavx2", "-mfma", "-mf16c", "-c", os.path.join(inc, AVX2_SOURCE), "-o", obj],
             cwd=tmp_path)
        objects.append(obj)
        defines.append("-DFASTNORM_HAVE_AVX2")
    exe = str(tmp_path / "embed_check")
    sources = [os.path.join(EMBED, "embed_check.c")] + [os.path.join(inc, s) for s in SOURCES]
    cmd = [cc] + flags + defines + sources + objects + ["-o", exe, "-lm"]
    if fn.get_config()["threads"] == "serial":
        cmd[1:1] = ["-DFASTNORM_SERIAL"]  # like the package
    else:
        cmd[1:1] = ["-pthread"]  # the package's thread pool
    _run(cmd, cwd=tmp_path)
    return exe


@windows
@pytest.mark.slow
def test_first_calls_from_many_threads_at_once_race_nothing(tmp_path):
    """Threads that make the first calls together (the target's selection and
    its tables set up on the fly) under ThreadSanitizer: no data race."""
    if fn.get_config()["threads"] == "serial":
        pytest.skip("a serial build")
    cc = _cc()
    probe = tmp_path / "probe.c"
    probe.write_text("int main(void) { return 0; }\n")
    ok = subprocess.run([cc, "-fsanitize=thread", "-pthread", str(probe), "-o",
                         str(tmp_path / "probe")], capture_output=True).returncode == 0
    if not ok or subprocess.run([str(tmp_path / "probe")], capture_output=True).returncode:
        pytest.skip("the compiler has no ThreadSanitizer here")
    inc = fn.get_include()
    exe = str(tmp_path / "first_call")
    sources = [os.path.join(EMBED, "first_call.c")] + [
        os.path.join(inc, s) for s in SOURCES if not s.endswith("api_table.c")]
    _run([cc, "-O1", "-fsanitize=thread", "-pthread", "-I", inc] + sources + ["-o", exe, "-lm"],
         cwd=tmp_path)
    for _ in range(3):
        proc = subprocess.run([exe], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TSAN_OPTIONS": "halt_on_error=1"})
        assert "ThreadSanitizer" not in proc.stderr, proc.stderr
        assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr


@windows
@pytest.mark.slow
def test_c_program_layer_norm_and_group_norm(tmp_path):
    exe = _build_c_program(tmp_path)
    rng = np.random.default_rng(5)
    rows, n = 300, 200                          # 234 KiB: threads run
    x = make_array((rows, n), np.float32, rng)
    w = make_array((n,), np.float32, rng, loc=1.0)
    b = make_array((n,), np.float32, rng)
    np.concatenate([x.ravel(), w, b]).tofile(tmp_path / "ln_in")
    S, C, L, G = 4, 8, 1024, 4                   # 256 KiB of float64
    xg = make_array((S, C, 32, 32), np.float64, rng)
    wg = make_array((C,), np.float64, rng, loc=1.0)
    bg = make_array((C,), np.float64, rng)
    np.concatenate([xg.ravel(), wg, bg]).tofile(tmp_path / "gn_in")

    proc = subprocess.run(
        [exe, "ln_in", "ln_out", str(rows), str(n), "gn_in", "gn_out", str(S), str(C), str(L),
         str(G)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = dict(kv.split("=") for kv in proc.stdout.splitlines()[0].split())
    assert int(info["version"]) == VERSION_NUMBER

    ln = np.fromfile(tmp_path / "ln_out", np.float32)
    y, mean, rstd = ln[: rows * n].reshape(rows, n), ln[rows * n: rows * n + rows], ln[-rows:]
    gn = np.fromfile(tmp_path / "gn_out", np.float64)
    gy = gn[: xg.size].reshape(xg.shape)
    gmean, grstd = gn[xg.size: xg.size + S * G].reshape(S, G), gn[-S * G:].reshape(S, G)

    ey, emean, erstd = fn.layer_norm(x, w, b, eps=1e-5, return_stats=True)
    gey, gemean, gerstd = fn.group_norm(xg, G, wg, bg, eps=1e-5, return_stats=True)
    if int(info["isa"]) == ISA_CODES[fn.get_config()["isa"]]:
        # the same kernels with the same flags: the same bits
        for got, want in [(y, ey), (mean, emean), (rstd, erstd), (gy, gey), (gmean, gemean),
                          (grstd, gerstd)]:
            assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(y, ey, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(gy, gey, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# A Cython extension that cimports fastnorm.kernels
# --------------------------------------------------------------------------

SETUP = textwrap.dedent(
    """
    import fastnorm
    from Cython.Build import cythonize
    from setuptools import Extension, setup

    ext = Extension("cimport_check", ["cimport_check.pyx"], include_dirs=[fastnorm.get_include()])
    setup(name="cimport-check", ext_modules=cythonize([ext], quiet=True),
          script_args=["build_ext", "--inplace", "--quiet"])
    """
)

USE = textwrap.dedent(
    """
    import threading
    import numpy as np
    import fastnorm as fn
    import cimport_check as cc

    rng = np.random.default_rng(3)
    x = (rng.standard_normal((400, 256)) * 2 + 1).astype(np.float32)
    w = rng.standard_normal(256).astype(np.float32)
    b = rng.standard_normal(256).astype(np.float32)
    want = fn.layer_norm(x, w, b, eps=1e-5, return_stats=True)

    # a kernel called before import_api() imports the table itself
    got = cc.layer_norm(x, w, b, 1e-5, 2)
    assert all(np.array_equal(g, e) for g, e in zip(got, want)), "layer norm (lazy import)"
    cc.import_api()
    info = cc.info()
    major, minor, patch = map(int, fn.__version__.split("."))
    assert info["header_version"] == info["kernels_version"] == 10000 * major + 100 * minor + patch, info
    assert info["isa"] == {"scalar": 0, "avx2": 1, "avx512": 2}[fn.get_config()["isa"]], info
    assert bool(info["openmp"]) == (fn.get_config()["threads"] != "serial"), info

    xg = rng.standard_normal((3, 6, 40, 40))
    gy, gm, gr = cc.group_norm(xg, 3, 1e-5, 2)
    ey, em, er = fn.group_norm(xg, 3, eps=1e-5, return_stats=True)
    assert np.array_equal(gy, ey) and np.array_equal(gm, em) and np.array_equal(gr, er)
    assert cc.group_norm(xg, 4, 1e-5, 1) == cc.einval_code() == 2

    # Python threads in the cimported kernels at once, the GIL released
    results = [None] * 6
    def work(i):
        xi = x + np.float32(i)
        results[i] = (cc.layer_norm(xi, w, b, 1e-5, 2)[0],
                      fn.layer_norm(xi, w, b, eps=1e-5, num_threads=1))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and np.array_equal(r[0], r[1]) for r in results)
    print("cimport ok")
    """
)


def _cython_build_tools():
    pytest.importorskip("Cython", reason="Cython is not installed")
    pytest.importorskip("setuptools", reason="setuptools is not installed")
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "").split()[:1]
    if not cc or not shutil.which(cc[0]):
        pytest.skip("no C compiler for extension modules")
    if not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        pytest.skip("Python.h is not installed")


@windows
@pytest.mark.slow
def test_cython_extension_cimports_the_kernels(tmp_path):
    _cython_build_tools()
    shutil.copy(os.path.join(EMBED, "cimport_check.pyx"), tmp_path)
    env = _env()
    _run([sys.executable, "-c", SETUP], cwd=tmp_path, env=env)
    proc = _run([sys.executable, "-c", USE], cwd=tmp_path, env=env, timeout=120)
    assert "cimport ok" in proc.stdout
