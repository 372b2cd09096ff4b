#!/usr/bin/env bash
# The project's tests on a fresh Debian machine: installs what it needs, runs
# the engine's C tests (against PyTorch fixtures), then builds the R package
# and runs R CMD check, which runs the testthat suite.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
bash tools/install-deps.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== engine tests (C, no R)"
make -C tests/engine check | tee /tmp/alexnet-engine-tests.log
engine=$(grep -E '^[0-9]+ passed, [0-9]+ failed' /tmp/alexnet-engine-tests.log | tail -1)

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
rs=$(sed -E 's/.*SKIP ([0-9]+).*/\1/' <<<"$r")
ep=$(sed -E 's/^([0-9]+) passed.*/\1/' <<<"$engine"); ef=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$engine")
echo "engine tests: $engine"
echo "$((ep + rp)) passed, $((ef + rf)) failed, $rs skipped"
