#!/usr/bin/env bash
# The project's tests on a fresh Debian machine: installs what it needs, runs
# the engine's C tests (against PyTorch fixtures), then builds the R package
# and runs R CMD check, which runs the testthat suite.
#
# ALEXNET_SANITIZE=engine,valgrind,r (any of them, or all) adds a last stage:
# tools/sanitize.sh with those options (ASan + UBSan engine tests, the engine
# tests under valgrind, the R suite on an ASan + UBSan build). .ci/run sets it.
# Its tests count in the summary line; any sanitizer error fails the run.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash tools/install-deps.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== engine tests (C, no R)"
make -C tests/engine check | tee /tmp/alexnet-engine-tests.log
engine=$(grep -E '^[0-9]+ passed, [0-9]+ failed' /tmp/alexnet-engine-tests.log | tail -1)
# the GPU check (tools/gpu-check.sh: the CUDA backend against the CPU) on a
# layout like the lent GPU machine's, built wherever nvcc is; without a GPU
# its tests skip and say so, and a GPU that is listed but unusable fails it.
# Then two MPI ranks against one process.
extra_p=0 extra_f=0 extra_s=1   # the CPU-against-GPU tests: skipped, no GPU in CI
: > /tmp/alexnet-engine-extra.log
echo "== engine: the GPU check on the GPU machine's layout (tools/gpu-check-layout.sh)"
bash tools/gpu-check-layout.sh 2>&1 | tee -a /tmp/alexnet-engine-extra.log
if command -v mpicc >/dev/null 2>&1; then
  echo "== engine: data-parallel training over MPI (make mpi-check)"
  make -s -C tests/engine mpi-check 2>&1 | grep -v '^mpicc' | tee -a /tmp/alexnet-engine-extra.log
fi
while read -r p _ f _; do extra_p=$((extra_p + p)); extra_f=$((extra_f + f)); done \
  < <(grep -E '^[0-9]+ passed, [0-9]+ failed$' /tmp/alexnet-engine-extra.log)
engine="$(( $(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$engine") + extra_p )) passed, $(( $(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$engine") + extra_f )) failed"

echo "== R package: build and check"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && R CMD build "$repo")
(cd "$work" && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual alexnet_*.tar.gz) || {
  cat "$work"/alexnet.Rcheck/00check.log; tail -n 60 "$work"/alexnet.Rcheck/tests/testthat.Rout.fail 2>/dev/null; exit 1; }
if grep -qE "^Status: .*(ERROR|WARNING)" "$work/alexnet.Rcheck/00check.log"; then
  echo "R CMD check reported errors or warnings"; exit 1
fi
grep -E '^(\* checking|Status)' "$work/alexnet.Rcheck/00check.log" | grep -v '\.\.\. OK$' || true
# testthat's summary line: [ FAIL 0 | WARN 0 | SKIP 1 | PASS 57 ]
r=$(grep -hE '\[ FAIL [0-9]+ \| WARN [0-9]+ \| SKIP [0-9]+ \| PASS [0-9]+ \]' "$work"/alexnet.Rcheck/tests/testthat.Rout | tail -1)
echo "R tests: $r"
rp=$(sed -E 's/.*PASS ([0-9]+).*/\1/' <<<"$r"); rf=$(sed -E 's/.*FAIL ([0-9]+).*/\1/' <<<"$r")
rs=$(( $(sed -E 's/.*SKIP ([0-9]+).*/\1/' <<<"$r") + extra_s ))
ep=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$engine"); ef=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$engine")
echo "engine tests: $engine"

sp=0 sf=0 ss=0
if [ -n "${ALEXNET_SANITIZE:-}" ]; then
  echo "== sanitizers: $ALEXNET_SANITIZE"
  opts=()
  for o in ${ALEXNET_SANITIZE//,/ }; do opts+=("--$o"); done
  src=0
  bash tools/sanitize.sh "${opts[@]}" 2>&1 | tee /tmp/alexnet-sanitize.log || src=$?
  s=$(grep -E '^sanitizers: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' /tmp/alexnet-sanitize.log | tail -1 || true)
  if [ -n "$s" ]; then
    sp=$(sed -E 's/^sanitizers: ([0-9]+) passed.*/\1/' <<<"$s"); sf=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$s")
    ss=$(sed -E 's/.* ([0-9]+) skipped$/\1/' <<<"$s")
  fi
  # a failing stage always counts, even one that died before its summary
  if [ "$src" -ne 0 ] && [ "$sf" -eq 0 ]; then sf=1; fi
  echo "sanitizer tests: $sp passed, $sf failed, $ss skipped"
fi
echo "$((ep + rp + sp)) passed, $((ef + rf + sf)) failed, $((rs + ss)) skipped"
[ $((ef + rf + sf)) -eq 0 ]
