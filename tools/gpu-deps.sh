#!/usr/bin/env bash
# gpu-deps.sh: pack what a GPU machine without R or Debian's libraries lacks
# for `bash tools/gpu-check.sh` into .gpu-deps/ (ignored by git; carried to
# the GPU machine, at most 64 MiB):
#   include/  oneDNN's headers (dnnl*.h and oneapi/, which dnnl.h includes)
#             and, as a last resort, this machine's cuDNN headers
#   lib/      libdnnl.so.2 and the libOpenCL.so.1 it links to (x86-64 Debian
#             files; programs find the second through their RPATH), and
#             lib/gomp/libgomp.so.1

#   prebuilt/ test_cuda, test_cuda_loader, bench_gpu and the backend they
#             load, built here: what the check runs, saying so, when the
#             build there fails (--no-prebuilt: none)
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu-deps && mkdir -p .gpu-deps/include .gpu-deps/lib .gpu-deps/prebuilt
cp /usr/include/dnnl*.h /usr/include/dnnl*.hpp .gpu-deps/include/
cp -r /usr/include/oneapi .gpu-deps/include/
cp -L /usr/lib/x86_64-linux-gnu/libdnnl.so.2 /usr/lib/x86_64-linux-gnu/libOpenCL.so.1 .gpu-deps/lib/
# OpenMP's runtime, for a machine whose compiler is not GCC's (copied to lib/gomp/ so that it is
# found only where the machine has none: the check adds that folder last)
mkdir -p .gpu-deps/lib/gomp && cp -L /usr/lib/x86_64-linux-gnu/libgomp.so.1 .gpu-deps/lib/gomp/
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
if ls "$CUDA_HOME"/include/cudnn*.h >/dev/null 2>&1; then
  mkdir -p .gpu-deps/include/cudnn-fallback
  cp "$CUDA_HOME"/include/cudnn*.h .gpu-deps/include/cudnn-fallback/
fi
if [ -x "$CUDA_HOME/bin/nvcc" ] && [ "${1:-}" != "--no-prebuilt" ]; then
  make -s -C tests/engine -j"$(nproc)" build-cuda/test_cuda build-cuda/test_cuda_loader build-cuda/bench_gpu \
    CUDA_HOME="$CUDA_HOME" >/dev/null
  # the programs load the backend (and the loading test its fakes) from beside themselves
  cp tests/engine/build-cuda/test_cuda tests/engine/build-cuda/test_cuda_loader tests/engine/build-cuda/bench_gpu \
     tests/engine/build-cuda/alexnet_cuda.so tests/engine/build-cuda/fake_backend_*.so .gpu-deps/prebuilt/
fi
du -sh .gpu-deps
