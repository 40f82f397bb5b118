#!/usr/bin/env bash
# fuzz/run.sh — build params_fuzzer (libFuzzer + ASan + UBSan) and run it for a bounded time.
#
#   fuzz/run.sh [SECONDS]        default 60 (CI); e.g. fuzz/run.sh 3600 for a long run
#   FUZZ_JOBS=2 fuzz/run.sh 600  parallel workers (libFuzzer -fork)
#
# Needs clang with the fuzzer and sanitizer runtimes (Debian: apt-get install clang, which brings
# libclang-rt-*-dev). The run starts from the seed corpus fuzz/corpus/ (read-only here) and keeps
# what it finds in build/fuzz/corpus/; a crash or broken invariant stops it with the input saved
# as build/fuzz/crash-*: add that file to fuzz/corpus/ (so every later run replays it) and a
# Python regression test to tests/test_hostile_args.py. Replay one input:
#   build/fuzz/params_fuzzer build/fuzz/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_BUDGET=${1:-60}
CXX=${FUZZ_CXX:-$(command -v clang++ || true)}
if [ -z "$CXX" ]; then
  echo "fuzz/run.sh: clang++ not found (Debian: apt-get install clang)" >&2
  exit 1
fi
OUT=build/fuzz
mkdir -p "$OUT/corpus"
"$CXX" -std=c++17 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Icpp/include fuzz/params_fuzzer.cpp cpp/params.cpp -o "$OUT/params_fuzzer"
echo "fuzz/run.sh: $("$CXX" --version | head -1); running ${SECONDS_BUDGET} s"
args=(-max_total_time="$SECONDS_BUDGET" -print_final_stats=1 -artifact_prefix="$OUT/" -max_len=256)
if [ -n "${FUZZ_JOBS:-}" ]; then
  args+=(-fork="$FUZZ_JOBS")
fi
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  "$OUT/params_fuzzer" "${args[@]}" "$OUT/corpus" fuzz/corpus
