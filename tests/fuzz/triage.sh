#!/bin/sh
# Re-run every artifact fuzz_weights (or fuzz_jpeg) kept and print, for each,
# the sanitizer's verdict and the top frames: inside libhdf5 (HDF5's own bug
# on a hostile file) or in the engine (ours to fix).
#   tests/fuzz/triage.sh [FUZZER] [ARTIFACT_DIR]
cd "$(dirname "$0")" || exit 1
fuzzer=${1:-fuzz_weights}
dir=${2:-build/artifacts/weights}
for f in "$dir"/*; do
    [ -f "$f" ] || continue
    out=$(LSAN_OPTIONS=suppressions=lsan_hdf5.supp ASAN_OPTIONS=fast_unwind_on_malloc=0 \
          timeout 60 ./build/"$fuzzer" "$f" 2>&1)
    verdict=$(printf '%s\n' "$out" | grep -m1 -E "ERROR: |runtime error|broken promise|deadly signal|Timeout" |
              sed 's/^==[0-9]*==//')
    frames=$(printf '%s\n' "$out" | grep -E "^ +#[0-9]+ " | grep -v -E "interceptor|fuzzer::|libc_start|_start|in main " |
             head -6 | sed -E 's/^ +#([0-9]+) 0x[0-9a-f]+ in /  #\1 /; s/^ +#([0-9]+) 0x[0-9a-f]+ +\(/  #\1 (/; s/ \(BuildId.*//')
    if [ -z "$verdict" ] && printf '%s\n' "$out" | grep -q -E "^ +[0-9]+ +[0-9]+ +libhdf5"; then
        verdict="a leak inside libhdf5 (suppressed by lsan_hdf5.supp)"
    fi
    printf '%s (%s bytes): %s\n' "$(basename "$f")" "$(wc -c < "$f")" "${verdict:-no longer fails}"
    [ -n "$frames" ] && printf '%s\n' "$frames"
done
