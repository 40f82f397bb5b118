#!/usr/bin/env bash
# fuzz/sanitize.sh — build the extension with AddressSanitizer + UndefinedBehaviorSanitizer and run
# a subset of the test suite on it.
#
#   fuzz/sanitize.sh                 the default subset below (CI)
#   fuzz/sanitize.sh tests/ -x       any pytest arguments instead (the whole suite: ~3x slower)
#
# The native code (CPU kernels, drivers, bindings; CUDA off) is compiled with
# -fsanitize=address,undefined -fno-sanitize-recover=undefined, so an out-of-bounds access,
# use-after-free or any undefined behaviour (signed overflow, misaligned access, bad shift ...)
# stops the run with a report. Python itself is not instrumented: the ASan runtime is preloaded
# (LD_PRELOAD) and leak detection is off (the interpreter's own allocations would all be
# reported). Optimisation is -O1 (ASan's advice; -O3 takes minutes per AVX-512 file with the
# instrumentation). The build goes to build/sanitize (incremental on a rerun), the package to a scratch
# directory put first on sys.path. Compiler: $CXX or g++ (GCC's libasan / libubsan).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python}
CXX=${CXX:-g++}
export FASTCONV_DATA="${FASTCONV_DATA:-$(realpath -m "$ROOT/../shared/data")}"
TMP=$(mktemp -d /tmp/fastconv-sanitize.XXXXXX)
trap 'rm -rf "$TMP"' EXIT

ASAN_RT=$("$CXX" -print-file-name=libasan.so)
UBSAN_RT=$("$CXX" -print-file-name=libubsan.so)
if [ ! -e "$ASAN_RT" ]; then
  echo "sanitize.sh: $CXX has no ASan runtime (libasan.so); install it (Debian: libasan8)" >&2
  exit 1
fi
FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
start=$(date +%s)
CXX="$CXX" FASTCONV_CUDA=OFF "$PY" -m pip wheel "$ROOT" --no-deps --no-build-isolation -q \
  -w "$TMP/wheel" -Cbuild-dir=build/sanitize -Ccmake.build-type=RelWithDebInfo \
  "-Ccmake.define.CMAKE_CXX_FLAGS=$FLAGS" "-Ccmake.define.FASTCONV_OPT_FLAGS=-O1;-fno-math-errno" \
  "-Ccmake.define.CMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined"
"$PY" -m pip install -q --no-deps --target "$TMP/site" "$TMP"/wheel/fastconv-*.whl
echo "sanitize.sh: sanitized build in $(( $(date +%s) - start )) s ($("$CXX" --version | head -1))"

if [ $# -eq 0 ]; then
  # Every entry point and pass on every kernel path, the argument and out= checks, threads,
  # the output cache and the training-step ops; the long training tests and the CLI stay out.
  set -- tests/test_hostile_args.py tests/test_errors.py tests/test_out.py tests/test_maxpool2d.py \
    tests/test_conv_relu_pool.py tests/test_dropout.py tests/test_adam.py tests/test_output_cache.py \
    tests/test_threads.py tests/test_fuzz_entry_points.py tests/test_conv2d.py -q -p no:cacheprovider
fi
# A development venv's editable install hooks `import fastconv` ahead of sys.path: drop that hook
# so the sanitized copy is the one imported (and check that it is).
# pytest must not capture file descriptor 2 (--capture=sys): a halted process never hands a
# captured report back. log_path keeps a copy of each report, printed again at the end.
start=$(date +%s)
status=0
LD_PRELOAD="$ASAN_RT $UBSAN_RT" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$TMP/report \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$TMP/report \
  FASTCONV_SANITIZED_SITE="$TMP/site" \
  "$PY" - "$@" <<'PYEOF' || status=$?
import os, sys
site = os.environ["FASTCONV_SANITIZED_SITE"]
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()]
sys.path.insert(0, site)
import fastconv
assert fastconv.__file__.startswith(site), fastconv.__file__
import pytest
sys.exit(pytest.main(["--capture=sys", *sys.argv[1:]]))
PYEOF
if ls "$TMP"/report.* >/dev/null 2>&1; then
  echo "sanitize.sh: sanitizer reports:" >&2
  cat "$TMP"/report.* >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize.sh: pytest failed (status $status)" >&2
  exit "$status"
fi
echo "sanitize.sh: tests ran clean under ASan + UBSan in $(( $(date +%s) - start )) s"
