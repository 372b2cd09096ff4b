#!/usr/bin/env bash
# gpu-check.sh: the GPU check, for a machine with an NVIDIA GPU and no R.
#   1. says what the machine has (GPU, driver, nvcc, cuDNN, cuBLAS, NCCL,
#      oneDNN, PyTorch) and where each came from;
#   2. builds the engine's core and the CUDA backend (build-cuda/
#      alexnet_cuda.so, which the programs load on first use of a GPU), with
#      every core;
#   3. runs the loading tests (tests/engine/test_cuda_loader.c) and the
#      CPU-against-GPU tests (tests/engine/test_cuda.c);
#   4. runs the GPU benchmark against PyTorch in the same run (batch 16 and
#      128: features, full inference, training; in f32, then in bf16 against
#      PyTorch's bf16 autocast) and prints the ratios.
# It writes everything it prints to the results file too ($GPU_CHECK_RESULTS,
# else $OUT/gpu-check.txt where $OUT is set, else bench/results/gpu-check.txt).
#
# Exit status: 0 when every step passed, or when no GPU is visible and the
# tests said they skipped. Non-zero when a step failed, and whenever
# `nvidia-smi -L` lists a GPU but a GPU test or benchmark did not run.
# What the GPU machine lacks (oneDNN) comes from .gpu-deps/, packed on a
# development machine by tools/gpu-deps.sh; cuDNN, cuBLAS and NCCL come from
# the CUDA toolkit or from pip's nvidia/*/ packages beside PyTorch.
#
# Options: --no-bench (tests only), --steps N (benchmark steps, default 30).
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
bench=1
steps=30
while [ $# -gt 0 ]; do
  case "$1" in
    --no-bench) bench=0 ;;
    --steps) steps=$2; shift ;;
    *) echo "gpu-check.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "${GPU_CHECK_RESULTS:-}" ]; then results=$GPU_CHECK_RESULTS
elif [ -n "${OUT:-}" ]; then results=$OUT/gpu-check.txt
else results=$repo/bench/results/gpu-check.txt; fi
mkdir -p "$(dirname "$results")"
exec > >(tee "$results") 2>&1
t_start=$(date +%s)
failures=()
fail() { failures+=("$1"); echo "FAILED: $1"; }
elapsed() { echo "$(( $(date +%s) - t_start )) s"; }

# ---- 1. what this machine has
echo "== gpu-check $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), $(nproc) cores"
gpu_visible=0
if command -v nvidia-smi >/dev/null 2>&1; then
  smi=$(nvidia-smi -L 2>&1)
  echo "$smi" | sed 's/^/nvidia-smi: /'
  if echo "$smi" | grep -q '^GPU [0-9]'; then
    gpu_visible=1
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
  fi
else
  echo "nvidia-smi: not found"
fi
PY=${PYTHON:-}
for p in python3 /usr/bin/python3; do
  [ -z "$PY" ] && command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null && PY=$(command -v "$p")
done
PY=${PY:-python3}
if [ -z "${CUDA_HOME:-}" ]; then
  nvcc_path=$(command -v nvcc 2>/dev/null || true)
  if [ -n "$nvcc_path" ]; then CUDA_HOME=$(dirname "$(dirname "$(readlink -f "$nvcc_path")")")
  else CUDA_HOME=/usr/local/cuda; fi
fi
export CUDA_HOME
echo "nvcc: $("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | grep -o 'release [0-9.]*, V[0-9.]*' || echo "not found in $CUDA_HOME/bin")"
# pip's nvidia/* packages (cudnn, cublas, nccl, cuda_runtime), where PyTorch has them
wheels=$("$PY" -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null || true)
echo "python: $PY; pip's nvidia packages: ${wheels:-none}"
# where a header and a library come from, in the order the build looks
locate() {   # locate LABEL HEADER LIBNAME
  local h="" l="" d
  for d in "$CUDA_HOME/include" ${wheels:+"$wheels"/*/include} "$repo/.gpu-deps/include" \
           "$repo/.gpu-deps/include/cudnn-fallback" /usr/include; do
    [ -e "$d/$2" ] && { h="$d/$2"; break; }
  done
  for d in "$CUDA_HOME/lib64" "$repo/.gpu-deps/lib" ${wheels:+"$wheels"/*/lib} /usr/lib/x86_64-linux-gnu; do
    l=$(ls "$d/lib$3".so* 2>/dev/null | head -n 1)
    [ -n "$l" ] && break
  done
  echo "$1: header ${h:-not found}; library ${l:-not found}"
}
locate cuDNN cudnn.h cudnn
locate cuBLAS cublas_v2.h cublas
locate NCCL nccl.h nccl
locate "CUDA runtime" cuda_runtime.h cudart
locate oneDNN dnnl.h dnnl
for v in "$CUDA_HOME/include" ${wheels:+"$wheels"/*/include} "$repo/.gpu-deps/include/cudnn-fallback"; do
  if [ -e "$v/cudnn_version.h" ]; then
    echo "cuDNN header version: $(awk '/#define CUDNN_(MAJOR|MINOR|PATCHLEVEL) /{printf "%s%s", sep, $3; sep="."}' "$v/cudnn_version.h") ($v)"
    break
  fi
done
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.is_available())' 2>&1 | tail -n 1
[ "$gpu_visible" = 1 ] && export AN_REQUIRE_GPU=1

# ---- 2. build
echo "== build ($(nproc) jobs)"
make_args=(-C tests/engine -j"$(nproc)" CUDA_HOME="$CUDA_HOME" PYTHON="$PY")
test_cuda=tests/engine/build-cuda/test_cuda
test_loader=tests/engine/build-cuda/test_cuda_loader
bench_gpu=tests/engine/build-cuda/bench_gpu
build_log=$repo/tests/engine/build-cuda/build.log
mkdir -p "$(dirname "$build_log")"
if ! make "${make_args[@]}" build-cuda/test_cuda build-cuda/test_cuda_loader build-cuda/bench_gpu >"$build_log" 2>&1; then
  grep -E 'error|Error|undefined' "$build_log" | head -n 30
  fail "build ($build_log)"
  if [ -x .gpu-deps/prebuilt/test_cuda ]; then
    echo "running the programs prebuilt by tools/gpu-deps.sh instead"
    test_cuda=.gpu-deps/prebuilt/test_cuda
    test_loader=.gpu-deps/prebuilt/test_cuda_loader
    bench_gpu=.gpu-deps/prebuilt/bench_gpu
  fi
else
  echo "built in $(elapsed)$(grep -q 'DAN_HAVE_NCCL' $build_log && echo ', with NCCL')"
fi
# the wheels' libraries for a program or backend that cannot find one (its RPATH should)
wheel_libs=$(ls -d ${wheels:+"$wheels"/*/lib} "$repo/.gpu-deps/lib" "$repo/.gpu-deps/lib/gomp" 2>/dev/null | paste -sd: -)
run_program() {   # run_program LOG PROGRAM ARGS...: retried with LD_LIBRARY_PATH when a library is missing
  local log=$1; shift
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -ne 0 ] && grep -q 'error while loading shared libraries\|GPU backend.*did not load: lib' "$log"; then
    fail "$* found no library through its RPATH"
    LD_LIBRARY_PATH="$wheel_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
  fi
  return "$rc"
}

# ---- 3. loading the backend, and CPU-against-GPU tests
echo "== loading the CUDA backend ($(elapsed))"
tests_log=$(mktemp)
if [ -x "$test_loader" ]; then
  run_program "$tests_log" timeout 120 "$test_loader"
  rc=$?
  [ "$rc" -ne 0 ] && fail "loading tests (exit status $rc, $(grep -E '^[0-9]+ passed' "$tests_log" | tail -n 1))"
else
  fail "no test_cuda_loader program to run"
fi
echo "== CPU-against-GPU tests ($(elapsed))"
if [ -x "$test_cuda" ]; then
  run_program "$tests_log" timeout 300 "$test_cuda"
  rc=$?
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tests_log" | tail -n 1)
  passed=${summary%% passed*}
  [ "$rc" -ne 0 ] && fail "CPU-against-GPU tests (exit status $rc${summary:+, $summary})"
  if [ "$gpu_visible" = 1 ] && [ "${passed:-0}" -eq 0 ]; then
    fail "nvidia-smi lists a GPU but no CPU-against-GPU test passed"
  fi
else
  fail "no test_cuda program to run"
fi

# ---- 4. benchmark
if [ "$bench" = 1 ] && [ "$gpu_visible" = 0 ]; then
  echo "== SKIP the GPU benchmark: no GPU visible (nvidia-smi lists none)"
elif [ "$bench" = 1 ]; then
  echo "== GPU benchmark: engine against PyTorch, median of $steps steps after 5 warm-up ($(elapsed))"
  bench_log=$(mktemp)
  for precision in f32 bf16; do
    if [ -x "$bench_gpu" ]; then
      run_program "$bench_log.engine.$precision" timeout 240 env OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}" "$bench_gpu" \
        --batches 16,128 --steps "$steps" --precision $precision
      rc=$?
      [ "$rc" -ne 0 ] && { [ "$gpu_visible" = 1 ] || [ "$rc" -ne 3 ]; } && fail "engine benchmark, $precision (exit status $rc)"
    else
      fail "no bench_gpu program to run"
    fi
    (cd bench && timeout 300 "$PY" bench_gpu.py --batches 16,128 --steps "$steps" --precision $precision) 2>&1 |
      tee "$bench_log.torch.$precision"
    rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && { [ "$gpu_visible" = 1 ] || [ "$rc" -ne 3 ]; } && fail "PyTorch benchmark, $precision (exit status $rc)"
  done
  echo "== engine / PyTorch (images per second; above 1: the engine is faster)"
  cat "$bench_log".engine.* "$bench_log".torch.* 2>/dev/null | awk '
    /^(engine|torch)_gpu (features|inference|train)(_bf16)? / {
      split($3, b, "="); split($4, r, "="); key = $2 " batch " b[2]
      if ($1 == "engine_gpu") e[key] = r[2]; else t[key] = r[2]; if (!(key in seen)) { seen[key] = 1; order[++n] = key } }
    END { for (i = 1; i <= n; i++) { k = order[i]
            if ((k in e) && (k in t) && t[k] > 0) printf "%-22s engine %8.1f  torch %8.1f  ratio %.2f\n", k, e[k], t[k], e[k] / t[k]
            else printf "%-22s missing: %s\n", k, (k in e) ? "torch" : "engine" } }' | tee "$bench_log.ratios"
  cases=$(grep -c ' ratio ' "$bench_log.ratios")
  if [ "$gpu_visible" = 1 ] && [ "$cases" -ne 12 ]; then fail "benchmark: $cases of 12 cases measured on both"; fi
fi

echo "== done in $(elapsed)"
if [ ${#failures[@]} -gt 0 ]; then
  echo "GPU CHECK FAILED (${#failures[@]}):"
  printf '  - %s\n' "${failures[@]}"
  exit 1
fi
if [ "$gpu_visible" = 1 ]; then echo "GPU CHECK PASSED"; else echo "GPU CHECK SKIPPED: no GPU visible (nvidia-smi lists none)"; fi
