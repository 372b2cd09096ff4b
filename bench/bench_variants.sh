#!/bin/sh
# bench_variants.sh: the ImageNet variants (Caffe's and torchvision's AlexNet)
# at the user's call from R (bench_variants.R) against PyTorch's best
# configuration on the same networks (bench_variants.py: torchvision's own
# model), one run, same machine, 2 threads each, f32 and, where the CPU has
# AVX512_BF16, bf16 (PyTorch: its bf16 autocast). Needs the package installed
# (R_LIBS) and Debian's python3-torch, python3-torchvision with
# libopenblas0-pthread.
#   bench/bench_variants.sh [--budget 3]
set -e
cd "$(dirname "$0")"
budget=3
[ "$1" = --budget ] && budget=$2
export OMP_NUM_THREADS=2
out=$(mktemp)
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs"
{
  Rscript bench_variants.R --budget "$budget"
  /usr/bin/python3 -c 'import torch; print("# torch", torch.__version__, "BLAS:", [l.strip() for l in torch.__config__.show().splitlines() if "BLAS_INFO" in l])'
  ls -l /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed 's/.*-> /# libblas.so.3 -> /'
  /usr/bin/python3 bench_variants.py --budget "$budget" --precision f32
  if grep -q avx512_bf16 /proc/cpuinfo; then /usr/bin/python3 bench_variants.py --budget "$budget" --precision bf16; fi
} | tee "$out"
echo
echo "| case | batch | R img/s | PyTorch img/s (config) | R / PyTorch |"
echo "|---|---:|---:|---:|---:|"
awk '
  /^(r|torch) / { split($3, b, "="); split($4, v, "="); cfg = ""; if (NF >= 5) { split($5, c, "="); cfg = c[2] }
    key = $2 " | " b[2]; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    val[$1, key] = v[2]; conf[key] = cfg }
  END { for (i = 1; i <= n; i++) { k = order[i]; r = val["r", k]; t = val["torch", k]
          printf "| %s | %s | %s (%s) | %s |\n", k, r, t, conf[k], (t > 0 && r > 0) ? sprintf("%.2fx", r / t) : "-" } }' "$out"
rm -f "$out"
