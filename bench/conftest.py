"""pytest configuration of the benchmark suite (bench/ owns its own settings).

- Registers the `quick` marker; `-m quick` or BENCH_QUICK=1 keeps the smoke
  subset (norm_impls.is_quick) and shortens each measurement.
- Sizes JAX's thread pool (PJRT_NPROC) to the suite's thread count when it runs
  only one (norm_impls.configure_jax_threads): JAX reads it once per process.
- Adds to the JSON (--benchmark-json / --benchmark-autosave) what bench/report.py
  prints: the CPU model, the library versions, fastnorm's configuration and the
  command that reproduces the run.
"""
import os
import platform
import shlex
import sys

import pytest

from norm_impls import (JAX_THREAD_ENV, configure_jax_threads, jax_thread_setting, quick_mode,
                        thread_counts)

# JAX's thread count as the user set it (before configure_jax_threads): part of the command
_JAX_THREAD_ENV_SET = {n: os.environ[n] for n in JAX_THREAD_ENV if os.environ.get(n, "").strip()}


def pytest_configure(config):
    # before JAX starts: its thread pool is sized once per process
    configure_jax_threads(thread_counts())
    config.addinivalue_line(
        "markers", "quick: the smoke subset of the benchmarks (also selected by BENCH_QUICK=1)")
    config.addinivalue_line(
        "markers", "bench_forward: forward-pass benchmarks (layer_norm, rms_norm, add_layer_norm, "
                   "ada_layer_norm, group_norm, group_norm_nhwc, instance_norm, batch_norm_train, "
                   "batch_norm_eval, switch_norm, batch_layer_norm, weight_norm)")
    config.addinivalue_line(
        "markers", "bench_backward: backward-pass benchmarks")


def pytest_collection_modifyitems(config, items):
    if not quick_mode():
        return
    keep, drop = [], []
    for item in items:
        (keep if item.get_closest_marker("quick") else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions():
    out = {"python": platform.python_version()}
    for name in ("numpy", "fastnorm", "torch", "jax", "jaxlib", "onnxruntime", "onnx",
                 "pytest_benchmark"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # not installed: the benchmarks of that peer were skipped
            out[name] = None
    return out


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _strip_dirs(arg):
    """An absolute path in an argument made relative to the repository root:
    '--benchmark-json=/abs/repo/bench/runs/a.json' -> '--benchmark-json=bench/runs/a.json';
    a file outside the repository -> 'bench/runs/<name>', the folder for runs."""
    key, sep, value = arg.rpartition("=") if arg.startswith("--") else ("", "", arg)
    if os.path.isabs(value):
        rel = os.path.relpath(value, REPO)
        value = rel if not rel.startswith("..") else os.path.join("bench", "runs",
                                                                  os.path.basename(value))
    return key + sep + value


def _command():
    # file arguments by their name alone: the command is run from the repository root
    args = [_strip_dirs(a) for a in sys.argv[1:]]
    cmd = "python -m pytest " + shlex.join(args)
    if quick_mode():
        cmd = "BENCH_QUICK=1 " + cmd
    if os.environ.get("BENCH_THREADS"):
        cmd = f"BENCH_THREADS={os.environ['BENCH_THREADS']} " + cmd
    if os.environ.get("BENCH_TARGET_S"):
        cmd = f"BENCH_TARGET_S={os.environ['BENCH_TARGET_S']} " + cmd
    for name, value in _JAX_THREAD_ENV_SET.items():
        cmd = f"{name}={shlex.quote(value)} " + cmd
    return cmd


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["cpu_model"] = cpu_model()
    machine_info["cpu_count"] = os.cpu_count()


def pytest_benchmark_update_json(config, benchmarks, output_json):
    info = {"command": _command(), "quick": quick_mode(), "versions": _versions(),
            "cpu_model": cpu_model(), "cpu_count": os.cpu_count()}
    try:
        import fastnorm
        info["fastnorm_config"] = fastnorm.get_config()
    except Exception as exc:  # the report only prints it
        info["fastnorm_config"] = repr(exc)
    if sys.modules.get("jax") is not None:  # JAX ran: the one thread count of its cases in this run
        info["jax_threads"], info["jax_threads_from"] = jax_thread_setting()
    output_json["fastnorm_bench"] = info


@pytest.fixture(scope="session")
def checked():
    """(impl, op, dtype, threads, check shape) -> None if it matched fastnorm.reference,
    else the message."""
    return {}
