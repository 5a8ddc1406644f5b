#!/usr/bin/env bash
# Build fastnorm with AddressSanitizer and UndefinedBehaviorSanitizer into its
# own virtual environment, then run part of the test suite and a short fuzz run
# with the sanitizer runtimes preloaded into the (uninstrumented) interpreter.
# Any sanitizer report fails the run.
#
#   tools/sanitize.sh [pytest arguments]    (default: the subset below)
#
# Needs gcc (the runtimes are gcc's libasan and libubsan).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${FASTNORM_SANITIZE_VENV:-.venv-sanitize}
python3 -m venv "$venv"
# shellcheck disable=SC1091
. "$venv/bin/activate"

flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined"
rm -rf build
CC=gcc CFLAGS="$flags" LDFLAGS="-fsanitize=address,undefined" \
    python -m pip install --quiet --force-reinstall --no-deps ".[test]"
python -m pip install --quiet ".[test]"  # the test dependencies (the package is already there)
rm -rf build  # the next plain build must not reuse sanitized objects

runtimes="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
report_dir=$(mktemp -d)
# detect_leaks=0: the interpreter itself is not built for LeakSanitizer and keeps
# objects alive until exit (the leak check is tests/test_leaks.py, by RSS).
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$report_dir/asan"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$report_dir/ubsan"
export FASTNORM_FUZZ_CASES=${FASTNORM_FUZZ_CASES:-300}

if [ $# -eq 0 ]; then
    set -- tests/test_hostile_inputs.py tests/test_api.py tests/test_axis.py \
        tests/test_threads.py tests/test_reentrancy.py tests/test_half.py \
        tests/test_switch_batch_layer_weight_norm.py
    [ -f tests/test_fuzz.py ] && set -- "$@" tests/test_fuzz.py
    set -- "$@" -q -m "not slow and not torch" -p no:cacheprovider
fi

status=0
LD_PRELOAD="$runtimes" python -c "import fastnorm; fastnorm.show_config()" || status=$?
[ "$status" -eq 0 ] && { LD_PRELOAD="$runtimes" python -m pytest "$@" || status=$?; }

if compgen -G "$report_dir/*" > /dev/null; then
    echo "sanitizer reports:" >&2
    cat "$report_dir"/* >&2
    status=1
fi
rm -rf "$report_dir"
exit "$status"
