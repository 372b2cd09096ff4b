#!/usr/bin/env bash
# gpu_check.sh (make -C tests/engine gpu-check): on a machine with an NVIDIA
# GPU and no R: list what it has, build the engine's core with the CUDA
# backend, run the CPU-vs-GPU tests, then the GPU benchmark against PyTorch
# (same network, same GPU, same run). Everything it prints goes into
# BENCHMARKS.md. Missing oneDNN or cuDNN headers come from ../.gpu-deps,
# packed on the development machine by tools/gpu-deps.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
# the Python that has PyTorch
PY=${PYTHON:-}
for p in python3 /usr/bin/python3; do
  [ -z "$PY" ] && "$p" -c 'import torch' 2>/dev/null && PY=$(command -v "$p")
done
PY=${PY:-python3}
echo "== what this machine has"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /'
echo "nvcc: $("$CUDA_HOME/bin/nvcc" --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not found')"
for h in cudnn.h cublas_v2.h dnnl.h; do
  where=$(ls "$CUDA_HOME/include/$h" /usr/include/$h "$repo/.gpu-deps/include/$h" 2>/dev/null | head -n 1)
  echo "$h: ${where:-not found}"
done
echo "libdnnl: $(ls /usr/lib/x86_64-linux-gnu/libdnnl.so* "$repo"/.gpu-deps/lib/libdnnl.so* 2>/dev/null | head -n 1)"
echo "libcudnn: $(ls "$CUDA_HOME"/lib64/libcudnn.so* 2>/dev/null | head -n 1) $("$PY" -c 'import os,nvidia.cudnn as c; print(os.path.dirname(list(c.__path__)[0]))' 2>/dev/null)"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), "gpu", torch.cuda.is_available())' 2>&1 | tail -n 1
echo "== CPU-vs-GPU engine tests"
make -C tests/engine cuda-check PYTHON="$PY" CUDA_HOME="$CUDA_HOME" 2>&1 | grep -v '^\(cc\|/\|  -\)' ; tests=${PIPESTATUS[0]}
echo "== GPU benchmark: engine vs PyTorch (median of 30 steps after 5 warm-up)"
make -C tests/engine build-cuda/engine/ops_cuda.o >/dev/null 2>&1
objs=$(ls tests/engine/build-cuda/engine/*.o)
libs=$(make -s -C tests/engine --no-print-directory -f Makefile -f - print-cuda-libs <<<'print-cuda-libs: ; @echo $(DEPS_LDFLAGS) $(DNNL_LDLIB) $(CUDA_LDLIBS)')
cc -O2 -fopenmp -std=gnu11 -Isrc/engine -o tests/engine/build-cuda/bench_gpu bench/bench_gpu.c $objs $libs -lm \
  && OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} tests/engine/build-cuda/bench_gpu --batches 16,128
(cd bench && "$PY" bench_gpu.py --batches 16,128)
exit "$tests"
