#!/bin/sh
# Engine vs PyTorch CPU throughput, 2 threads, one run. Builds bench_engine and peak_flops,
# then bench/runner.py runs peak_flops, bench_engine and bench_torch.py (alternating order,
# waiting for a quiet machine before each) and prints the markdown tables.
#
#   bench/run.sh [runner options]     e.g.  --batches 16,64 --rounds 2 --budget 4 --layers
# Results: bench/results/<date-time>/{raw.log,results.md}.
# Environment: OMP_NUM_THREADS is set to --threads (default 2) for every program;
# OPENBLAS_CORETYPE is left as it is (when set, torch is also measured without it).
set -e
cd "$(dirname "$0")"
export OMP_NUM_THREADS=2
env | grep '^OPENBLAS' || echo "# no OPENBLAS_* variable set"
make -s all
exec /usr/bin/python3 runner.py "$@"
