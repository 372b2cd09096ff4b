#!/usr/bin/env bash
# gpu-deps.sh: pack what a GPU machine may lack for `make -C tests/engine
# gpu-check` (oneDNN's headers and library, cuDNN's headers) from this
# machine into .gpu-deps/ (ignored by git; carried to the GPU machine).
# x86-64 Debian files: libdnnl.so.2 (and the libOpenCL.so.1 it links to).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu-deps && mkdir -p .gpu-deps/include .gpu-deps/lib
cp /usr/include/dnnl*.h /usr/include/dnnl*.hpp .gpu-deps/include/
cp -L /usr/lib/x86_64-linux-gnu/libdnnl.so.2 /usr/lib/x86_64-linux-gnu/libOpenCL.so.1 .gpu-deps/lib/
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
cp "$CUDA_HOME"/include/cudnn*.h .gpu-deps/include/
du -sh .gpu-deps
