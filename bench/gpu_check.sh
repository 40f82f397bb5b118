#!/usr/bin/env bash
# One pass over everything that needs a GPU, for a lent machine whose image already holds CuPy,
# PyTorch (CUDA) and pytest: build with CUDA forced on, run the GPU tests, compute-sanitizer,
# the cuDNN benchmark and (optionally) cnn1's full training. Logs and JSON go to $OUT (default
# ./gpu_out). Steps are chosen by name: bench/gpu_check.sh build tests sanitize racecheck bench train
# epoch (graph-mode tests + bench/train_epoch_cuda.py: fastconv eager / CUDA graph vs PyTorch).
#   FASTCONV_DATA   folder with mnist/ (for the train, epoch steps and the data tests)
#   CUDAARCHS       architectures to build (default 90-real: only the GPU at hand, quick build)
# Time budget: a lent H100 session has 15 minutes of device time, machine start-up included, so the
# prepared run must fit in about 11. `bench/gpu_check.sh quick` runs, most informative first:
#   build (~2 min: one architecture, 16 cores) -> tests (~0.5 min, 240 s cap) -> emu (~0.3 min, 90 s
#   cap: the CPU emulator's model against the GPU, cuda/dev/emu_vs_gpu.cu) -> epoch (~2.5 min:
#   graph tests, the bench, a cnn1 graph memcheck and cnn1's 30 epochs in graph mode; caps
#   EPOCH_TIMEOUT 180 s each for the first two, 90 s for the memcheck, 75 s for the training;
#   EPOCH_MEMCHECK=0 / EPOCH_TRAIN=0 skip those) -> bench (~3 min, 200 s cap: the large layers
#   also with each kernel family forced; its JSON is rewritten after every layer)
#   -> sanitize (~3 min: 150 s cap, then 60 s for the forced-only conv families)
#   -> racecheck (~1.5 min, 120 s cap)
# about 11 minutes if each step takes its estimate; the caps alone add up to more, so a step that
# runs long costs the ones after it. The estimates come from earlier H100 runs (docs/CUDA.md)
# except epoch's, which has not run on a GPU yet. Every step writes to $OUT as it goes.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FASTCONV_CUDA=ON CUDAARCHS=${CUDAARCHS:-90-real}
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
PY=${PY:-python3}
steps=${*:-build tests sanitize bench overhead train}
[ "$steps" = quick ] && steps="build tests emu epoch bench sanitize racecheck"
# The device tool runs at most 10 minutes per command, so a lent session runs quick as two calls
# (docs/CUDA.md "A lent GPU session, step by step"); call2 rebuilds only if the machine is fresh.
[ "$steps" = call1 ] && steps="build tests emu overhead epoch"
[ "$steps" = call2 ] && steps="ensure bench sanitize racecheck"
# MNIST travels with the working tree as shared/data when the session copied it there
[ -z "${FASTCONV_DATA:-}" ] && [ -d shared/data ] && export FASTCONV_DATA=$PWD/shared/data

step() { echo "=== $1 ($(date +%T))"; }

for s in $steps; do
  case $s in
  build)
    step build
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
    $PY -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)" | tee -a "$OUT/gpu.txt"
    $PY -m pip install -q --no-build-isolation --no-deps . >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    (cd /tmp && $PY -c "import fastconv, json; print(json.dumps(fastconv.info(), default=str))") | tee -a "$OUT/gpu.txt"
    ;;
  ensure)
    # a fresh machine (the previous one went back) has no fastconv: build it as `build` does
    if (cd /tmp && $PY -c "import fastconv, sys; sys.exit(0 if fastconv.info()['cuda_built'] else 1)") 2>/dev/null; then
      step "ensure (already built)"
    else
      step "ensure: building"
      $PY -m pip install -q --no-build-isolation --no-deps . >"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    fi
    ;;
  tests)
    step tests
    timeout ${TESTS_TIMEOUT:-240} $PY -m pytest -q -p no:cacheprovider -m "gpu and not slow" \
      tests/test_cuda.py tests/test_nn_cuda.py tests/test_maxpool2d.py tests/test_cuda_build.py \
      2>&1 | tee "$OUT/tests.log" | tail -60
    # the CPU test doubles' CuPy names and facts against the real CuPy of this image (seconds)
    timeout 60 $PY -m pytest -q -p no:cacheprovider tests/test_fake_cupy.py -k real_cupy \
      2>&1 | tee "$OUT/fake_cupy.log" | tail -3
    ;;
  emu)
    # The CPU emulator's model (warp shuffles, cp.async, TF32 mma fragments, float4, dynamic shared
    # memory) against this GPU: cuda/dev/emu_vs_gpu.cu, ~20 s with its nvcc build.
    step emu
    ARCH=${CUDAARCHS%%-*}
    timeout ${EMU_TIMEOUT:-90} bash -c "${CUDACXX:-nvcc} -std=c++17 -arch=sm_${ARCH} -diag-suppress 177 -Icpp/include -Icuda \
      cuda/dev/emu_vs_gpu.cu -o '$OUT/emu_vs_gpu' && '$OUT/emu_vs_gpu'" 2>&1 | tee "$OUT/emu_vs_gpu.log" | tail -10
    ;;
  slow)
    step slow
    timeout ${SLOW_TIMEOUT:-150} $PY -m pytest -q -p no:cacheprovider -m "gpu and slow" tests/test_cuda.py \
      2>&1 | tee "$OUT/slow.log" | tail -30
    ;;
  sanitize)
    step sanitize
    timeout ${SAN_TIMEOUT:-150} compute-sanitizer --tool memcheck --error-exitcode 99 \
      $PY -m pytest -q -p no:cacheprovider -x tests/test_cuda.py -m "gpu and not slow" \
      -k "not cudnn and not forced_family" >"$OUT/sanitize.log" 2>&1
    echo "compute-sanitizer exit: $?"; grep -E "ERROR SUMMARY|passed|failed" "$OUT/sanitize.log" | tail -5
    # the forced-only families (tiled128, tf32) in a run of their own, so they cannot push the
    # run above past its cap; SAN_FAMILY_TIMEOUT=0 skips it
    if [ "${SAN_FAMILY_TIMEOUT:-60}" != 0 ]; then
      timeout ${SAN_FAMILY_TIMEOUT:-60} compute-sanitizer --tool memcheck --error-exitcode 99 \
        $PY -m pytest -q -p no:cacheprovider -x tests/test_cuda.py -m "gpu and not slow" \
        -k "forced_family" >"$OUT/sanitize_families.log" 2>&1
      echo "compute-sanitizer (forced families) exit: $?"
      grep -E "ERROR SUMMARY|passed|failed" "$OUT/sanitize_families.log" | tail -5
    fi
    ;;
  racecheck)
    step racecheck
    timeout ${RACE_TIMEOUT:-120} compute-sanitizer --tool racecheck --error-exitcode 99 \
      $PY -m pytest -q -p no:cacheprovider -x tests/test_cuda.py -m "gpu and not slow" \
      -k "backward_cuda and (tiled or auto or tf32)" >"$OUT/racecheck.log" 2>&1
    echo "racecheck exit: $?"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/racecheck.log" | tail -5
    ;;
  bench)
    step bench
    timeout ${BENCH_TIMEOUT:-200} $PY bench/conv_cuda.py --json "$OUT/conv_cuda.json" --tf32 2>&1 | tee "$OUT/bench.log" | tail -50
    ;;
  overhead)
    step overhead
    timeout ${OVERHEAD_TIMEOUT:-120} $PY bench/cuda_host_overhead.py --json "$OUT/overhead.json" 2>&1 \
      | tee "$OUT/overhead.log" | tail -25
    ;;
  train)
    step train
    timeout ${TRAIN_TIMEOUT:-200} $PY -m fastconv train cnn1 --device cuda --quiet --out "$OUT/train_cnn1" 2>&1 \
      | tee "$OUT/train.log" | tail -40
    ;;
  epoch)
    step epoch
    # graph-mode correctness first (graph steps vs eager steps), then the epoch comparison
    [ -f tests/test_nn_cuda_graph.py ] && timeout ${EPOCH_TIMEOUT:-180} $PY -m pytest -q -p no:cacheprovider \
      -m gpu tests/test_nn_cuda_graph.py 2>&1 | tee "$OUT/epoch_tests.log" | tail -20
    timeout ${EPOCH_TIMEOUT:-180} $PY bench/train_epoch_cuda.py --models cnn1,keras_cnn \
      --images ${EPOCH_IMAGES:-12000} --epochs ${EPOCH_EPOCHS:-4} --json "$OUT/train_epoch_cuda.json" \
      2>&1 | tee "$OUT/epoch.log" | tail -20
    # the captured graph's memory (private pool, buffers kept alive) under memcheck: cnn1 only
    if [ "${EPOCH_MEMCHECK:-1}" = 1 ] && [ -f tests/test_nn_cuda_graph.py ]; then
      timeout ${EPOCH_MEMCHECK_TIMEOUT:-90} compute-sanitizer --tool memcheck --error-exitcode 99 \
        $PY -m pytest -q -p no:cacheprovider -m gpu tests/test_nn_cuda_graph.py -k "replays and cnn1" \
        >"$OUT/epoch_memcheck.log" 2>&1
      echo "graph memcheck exit: $?"; grep -E "ERROR SUMMARY|passed|failed" "$OUT/epoch_memcheck.log" | tail -3
    fi
    # issue 21's schedule goal: cnn1's 30 epochs in graph mode (< 10 s at the published accuracy)
    [ "${EPOCH_TRAIN:-1}" = 1 ] && timeout ${EPOCH_TRAIN_TIMEOUT:-75} $PY -m fastconv train cnn1 --device cuda \
      --cuda-graph --quiet --out "$OUT/train_cnn1_graph" 2>&1 | tee "$OUT/train_graph.log" | tail -4
    ;;
  *) echo "unknown step $s"; exit 2 ;;
  esac
done
