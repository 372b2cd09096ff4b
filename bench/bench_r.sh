#!/bin/sh
# bench_r.sh: the speed users get, in one run on the same machine: the
# package's calls from R on arrays (bench_r.R), the engine alone
# (bench_engine, bench_train) and PyTorch's best configuration (bench_torch.py,
# bench_train.py, with the BLAS it uses named), each on 2 threads, in f32 and,
# where the CPU has AVX512_BF16, in bf16 (PyTorch: its bf16 autocast); then
# the ratios. Needs the package installed (R_LIBS) and, for PyTorch, Debian's
# python3-torch with libopenblas0-pthread.
#   bench/bench_r.sh [--batches 16,32,64] [--budget 4]
set -e
cd "$(dirname "$0")"
batches=16,32,64
budget=4
while [ $# -gt 0 ]; do
  case "$1" in --batches) batches=$2; shift ;; --budget) budget=$2; shift ;; *) echo "unknown option $1" >&2; exit 2 ;; esac
  shift
done
export OMP_NUM_THREADS=2
make -s bench_engine bench_train
out=$(mktemp)
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) CPUs"
# bf16 where the CPU has AVX512_BF16 (the engine refuses it otherwise)
precisions=f32
if ./bench_engine --batches 1 --cases features --budget 0 --min-reps 1 --warmup 0 --precision bf16 >/dev/null 2>&1; then
  precisions="f32 bf16"
fi
{
  for p in $precisions; do
    ./bench_engine --batches "$batches" --cases features,full --threads 2 --precision $p
    ./bench_train 16 12 $p
    ./bench_train 64 6 $p
    Rscript bench_r.R --batches "$batches" --budget "$budget" --precision $p
  done
  if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
    /usr/bin/python3 -c 'import torch; print("# torch", torch.__version__, "BLAS:", [l.strip() for l in torch.__config__.show().splitlines() if "BLAS_INFO" in l])'
    ls -l /etc/alternatives/libblas.so.3-x86_64-linux-gnu 2>/dev/null | sed 's/.*-> /# libblas.so.3 -> /'
    for p in $precisions; do
      [ $p = bf16 ] && configs=autocast,autocast_cl || configs=eager_inference,eager_cl,jit_optimized
      /usr/bin/python3 bench_torch.py --batches "$batches" --cases features,full --threads 2 --budget "$budget" \
        --configs $configs --precision $p | grep '^torch '
      /usr/bin/python3 bench_train.py 16 12 $p
      /usr/bin/python3 bench_train.py 64 6 $p
    done
  else
    echo "# no PyTorch (python3-torch): its columns stay empty"
  fi
} | tee "$out" | grep -v '^engine_layer'
echo
echo "| case | batch | engine img/s | R img/s | R / engine | PyTorch img/s | R / PyTorch |"
echo "|---|---:|---:|---:|---:|---:|---:|"
awk '
  /^(engine|r|torch) (features|full|train)(_folder)?(_bf16)? / {
    split($3, b, "="); ips = ""; for (i = 4; i <= NF; i++) if ($i ~ /^ips=/) { split($i, v, "="); ips = v[2] }
    key = $2 " | " b[2]; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
    val[$1, key] = ips }
  # a folder case against the engine and PyTorch on input already decoded
  END { for (i = 1; i <= n; i++) { k = order[i]; base = k; sub(/_folder/, "", base)
          e = val["engine", base]; r = val["r", k]; t = val["torch", base]
          printf "| %s | %s | %s | %s | %s | %s |\n", k, e, r, (e > 0 && r > 0) ? sprintf("%.2f", r / e) : "-",
                 t == "" ? "-" : t, (t > 0 && r > 0) ? sprintf("%.2fx", r / t) : "-" } }' "$out"
rm -f "$out"
