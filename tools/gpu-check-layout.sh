#!/usr/bin/env bash
# gpu-check-layout.sh: tools/gpu-check.sh on a machine without a GPU, laid
# out like the lent GPU machine: a CUDA toolkit without cuDNN or NCCL, those
# two from a pip-like nvidia/*/{include,lib} tree beside a Python (as
# PyTorch's wheels put them), oneDNN's library from .gpu-deps/. Shows that
#   1. it finds them there, builds everything, and without a GPU skips
#      saying so (exit status 0);
#   2. with an nvidia-smi that lists a GPU it fails (the tests cannot run),
#      rather than passing.
# Prints "N passed, M failed" (tools/test.sh adds it up). Needs a CUDA
# toolkit with cuDNN and NCCL (CUDA_HOME, default /usr/local/cuda) to build
# the layout from; without one it says so and skips.
set -uo pipefail
cd "$(dirname "$0")/.."
real=${CUDA_HOME:-/usr/local/cuda}
if [ ! -x "$real/bin/nvcc" ] || ! ls "$real"/lib*/libcudnn.so* >/dev/null 2>&1; then
  echo "SKIP the GPU check's layout test: no CUDA toolkit with cuDNN in $real"
  echo "0 passed, 0 failed"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
check() {   # check NAME CONDITION-EXIT-STATUS DETAIL
  if [ "$2" -eq 0 ]; then passed=$((passed + 1)); echo "PASS $1"
  else failed=$((failed + 1)); echo "FAIL $1${3:+: $3}"; fi
}

# a toolkit without cuDNN and NCCL: links to everything else
target=$real/targets/x86_64-linux
tk=$work/cuda
mkdir -p "$tk/bin" "$tk/targets/x86_64-linux/include" "$tk/lib64"
for f in "$real"/bin/*; do ln -s "$f" "$tk/bin/"; done
ln -s "$real/nvvm" "$tk/nvvm"
for f in "$target"/include/* "$real"/include/*; do
  case $(basename "$f") in cudnn*|nccl*) ;; *) ln -sf "$f" "$tk/targets/x86_64-linux/include/" ;; esac
done
ln -s targets/x86_64-linux/include "$tk/include"
for f in "$real"/lib64/* "$target"/lib/*; do
  case $(basename "$f") in libcudnn*|libnccl*) ;; *) ln -sf "$f" "$tk/lib64/" ;; esac
done
ln -s lib64 "$tk/lib"
# pip's layout: site-packages/nvidia/<package>/{include,lib}, no __init__.py
site=$work/site
for p in cudnn nccl; do mkdir -p "$site/nvidia/$p/include" "$site/nvidia/$p/lib"; done
for f in "$real"/include/cudnn*.h "$target"/include/cudnn*.h; do [ -e "$f" ] && ln -sf "$f" "$site/nvidia/cudnn/include/"; done
for f in "$real"/include/nccl*.h "$target"/include/nccl*.h; do [ -e "$f" ] && ln -sf "$f" "$site/nvidia/nccl/include/"; done
for f in "$real"/lib64/libcudnn*.so.* "$target"/lib/libcudnn*.so.*; do [ -e "$f" ] && ln -sf "$f" "$site/nvidia/cudnn/lib/"; done
for f in "$real"/lib64/libnccl*.so.* "$target"/lib/libnccl*.so.*; do [ -e "$f" ] && ln -sf "$f" "$site/nvidia/nccl/lib/"; done
echo '#include <cudnn.h>' > "$work/probe.cu"
"$tk/bin/nvcc" -E "$work/probe.cu" -o /dev/null >/dev/null 2>&1
[ $? -ne 0 ]; check "the layout's toolkit has no cuDNN of its own" $?

# what the GPU machine lacks, packed as tools/gpu-deps.sh packs it
if [ ! -e .gpu-deps/lib/libdnnl.so.2 ]; then bash tools/gpu-deps.sh --no-prebuilt >/dev/null; fi
rm -rf tests/engine/build-cuda
export CUDA_HOME=$tk PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}

# 1. no GPU: builds, skips, exit 0
GPU_CHECK_RESULTS=$work/skip.txt bash tools/gpu-check.sh --no-bench >/dev/null 2>&1
rc=$?
check "no GPU: the check exits 0" "$rc" "exit status $rc"
grep -q "^cuDNN: header $site/nvidia/cudnn/include/cudnn.h; library $site/nvidia/cudnn/lib/libcudnn.so" "$work/skip.txt"
check "it reports cuDNN from pip's nvidia/cudnn" $? "$(grep '^cuDNN' "$work/skip.txt")"
grep -q "^oneDNN: header .*; library $PWD/.gpu-deps/lib/libdnnl.so.2" "$work/skip.txt"
check "it reports oneDNN from .gpu-deps" $? "$(grep '^oneDNN' "$work/skip.txt")"
grep -q "^built in .*, with NCCL" "$work/skip.txt"
check "it builds the engine and the CUDA backend, with NCCL from pip's nvidia/nccl" $? \
  "$(grep -A3 '^== build' "$work/skip.txt" | tr '\n' ' ')"
readelf -d tests/engine/build-cuda/alexnet_cuda.so | grep -q "(RPATH).*$site/nvidia/cudnn/lib"
check "the backend (alexnet_cuda.so) finds cuDNN through its RPATH" $?
! readelf -d tests/engine/build-cuda/test_cuda | grep -q "NEEDED.*\(cudnn\|cublas\|cudart\|nccl\)"
check "test_cuda links no CUDA library: it loads the backend" $?
grep -q "^== loading the CUDA backend" "$work/skip.txt" && grep -q "^[1-9][0-9]* passed, 0 failed" "$work/skip.txt"
check "the loading tests run and pass without a GPU" $? "$(grep -E '^[0-9]+ passed' "$work/skip.txt" | head -n 1)"
grep -q "^SKIP all CPU-vs-GPU checks" "$work/skip.txt" && grep -q "^GPU CHECK SKIPPED" "$work/skip.txt"
check "without a GPU the tests say they skip, and so does the check" $?

# 2. an nvidia-smi that lists a GPU: the check must fail
mkdir -p "$work/smi"
cat > "$work/smi/nvidia-smi" <<'EOF'
#!/bin/sh
case "$1" in -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-00000000-layout-test)" ;; *) echo "NVIDIA H200, 143771 MiB, 580.00, 9.0" ;; esac
EOF
chmod +x "$work/smi/nvidia-smi"
PATH=$work/smi:$PATH GPU_CHECK_RESULTS=$work/claimed.txt bash tools/gpu-check.sh --no-bench >/dev/null 2>&1
rc=$?
[ "$rc" -ne 0 ]; check "a GPU listed but not usable: the check fails (exit status $rc)" $?
grep -q "^GPU CHECK FAILED" "$work/claimed.txt" && grep -q "nvidia-smi lists a GPU but no CPU-against-GPU test passed" "$work/claimed.txt"
check "it says why: no GPU test ran" $?
rm -rf tests/engine/build-cuda   # built against the temporary layout
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
