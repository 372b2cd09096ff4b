#!/usr/bin/env bash
# The tests under the memory and undefined-behaviour checkers.
#
#   bash tools/sanitize.sh --engine     engine C tests, ASan + UBSan + LSan
#                                       (make -C tests/engine asan)
#   bash tools/sanitize.sh --valgrind   engine C tests under valgrind memcheck
#                                       (make -C tests/engine valgrind; slow:
#                                       VALGRIND_FILTER picks test_engine's groups)
#   bash tools/sanitize.sh --r          the R package built with ASan + UBSan,
#                                       its testthat suite run in an R that
#                                       preloads the sanitizer runtimes
#   bash tools/sanitize.sh --all        all three
#
# Several options may be given. Each stage prints its own "N passed, M failed"
# and the script ends with their sum as "sanitizers: N passed, M failed, K
# skipped"; it exits non-zero when any stage fails or reports an error.
# Needs gcc (its libasan / libubsan), valgrind for --valgrind, and what the
# package needs (tools/install-deps.sh).
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

engine=0 vg=0 r=0
[ $# -gt 0 ] || set -- --all
for a in "$@"; do
  case "$a" in
    --engine) engine=1 ;;
    --valgrind) vg=1 ;;
    --r) r=1 ;;
    --all) engine=1 vg=1 r=1 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "sanitize.sh: unknown option '$a' (--engine, --valgrind, --r, --all)" >&2; exit 2 ;;
  esac
done

total_p=0 total_f=0 total_s=0
# add a stage's "N passed, M failed[, K skipped]" line to the totals; a stage
# without such a line (it died) counts as one failure
tally() {
  local name=$1 line=$2 secs=$3
  if [[ "$line" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
    total_p=$((total_p + BASH_REMATCH[1])); total_f=$((total_f + BASH_REMATCH[2]))
    total_s=$((total_s + ${BASH_REMATCH[4]:-0}))
  else
    line="no summary (the stage died): 1 failure"; total_f=$((total_f + 1))
  fi
  echo "== $name: $line (${secs} s)"
}

if [ $engine = 1 ]; then
  echo "== engine tests under ASan + UBSan (make -C tests/engine asan)"
  t0=$SECONDS
  make -C tests/engine asan 2>&1 | tee /tmp/alexnet-asan.log
  tally "engine, ASan + UBSan" "$(grep -E '^[0-9]+ passed, [0-9]+ failed$' /tmp/alexnet-asan.log | tail -1)" $((SECONDS - t0))
fi

if [ $vg = 1 ]; then
  echo "== engine tests under valgrind (make -C tests/engine valgrind)"
  t0=$SECONDS
  make -C tests/engine valgrind ${VALGRIND_FILTER+VALGRIND_FILTER="$VALGRIND_FILTER"} 2>&1 | tee /tmp/alexnet-valgrind.log
  tally "engine, valgrind" "$(grep -E '^[0-9]+ passed, [0-9]+ failed$' /tmp/alexnet-valgrind.log | tail -1)" $((SECONDS - t0))
fi

if [ $r = 1 ]; then
  echo "== R package built with ASan + UBSan, testthat suite"
  t0=$SECONDS
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # a copy of the sources (tracked and untracked, not ignored files): the
  # instrumented objects must not land in src/, where a normal build lives
  mkdir -p "$work/alexnet" "$work/lib"
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -c -o --exclude-standard | tar --null -T - -cf - 2>/dev/null | tar -xf - -C "$work/alexnet"
  else
    tar --exclude=./tests/engine/build\* --exclude=./bench/build -cf - . | tar -xf - -C "$work/alexnet"
  fi
  rm -f "$work"/alexnet/src/*.o "$work"/alexnet/src/engine/*.o "$work"/alexnet/src/*.so
  # a private Makevars (not ~/.R/Makevars): R's own flags plus the sanitizers
  san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
  cat > "$work/Makevars" <<EOF
CFLAGS = -g -O1 $san
LDFLAGS += $san
EOF
  asan_rt=$(gcc -print-file-name=libasan.so) ubsan_rt=$(gcc -print-file-name=libubsan.so)
  # R itself is not instrumented: the runtimes are preloaded into R (ASan
  # must come first). Leak detection is off: R does not free its heap,
  # its parsed code or its loaded packages at exit (it leaves that to the
  # process's end), so LeakSanitizer would report R, not this package; the
  # engine's leaks are checked by --engine (LSan) and --valgrind.
  # (no --test-load: the load test's R would lack the preloaded runtime)
  if R_MAKEVARS_USER="$work/Makevars" R CMD INSTALL --no-test-load --no-docs --no-html \
       -l "$work/lib" "$work/alexnet" > "$work/install.log" 2>&1; then
    grep -E 'fsanitize' "$work/install.log" | head -n 2
    (cd "$work/alexnet/tests/testthat" &&
     LD_PRELOAD="$asan_rt $ubsan_rt" \
     ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=0:detect_odr_violation=0:allow_user_segv_handler=1 \
     UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
     R_LIBS="$work/lib" NOT_CRAN=true \
     "$(R RHOME)/bin/Rscript" --vanilla -e '
       library(testthat)
       r <- as.data.frame(test_dir(".", package = "alexnet", load_package = "installed",
                                   reporter = ProgressReporter$new(show_praise = FALSE),
                                   stop_on_failure = FALSE))
       cat(sprintf("%d passed, %d failed, %d skipped\n", sum(r$passed),
                   sum(r$failed) + sum(r$error), sum(r$skipped)))') 2>&1 | tee "$work/tests.log"
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$work/tests.log" | tail -1)
    if grep -qE '^(==[0-9]+==ERROR: |SUMMARY: (Address|UndefinedBehavior)Sanitizer)|runtime error: ' "$work/tests.log"; then
      echo "sanitizer error in the R run"; line=""
    fi
  else
    tail -n 40 "$work/install.log"; line=""
  fi
  tally "R package, ASan + UBSan" "$line" $((SECONDS - t0))
fi

echo "sanitizers: $total_p passed, $total_f failed, $total_s skipped"
[ $total_f -eq 0 ]
