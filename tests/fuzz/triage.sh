#!/bin/sh
# Re-run every artifact a fuzzer kept and print, for each, the sanitizer's
# verdict, where it is (inside libhdf5: HDF5's own fault on a hostile file,
# see known_hdf5_crashes/; anywhere else: ours to fix) and the top frames.
# Exit status 1 when any artifact still fails outside libhdf5.
#   tests/fuzz/triage.sh [FUZZER] [ARTIFACT_DIR]
cd "$(dirname "$0")" || exit 1
fuzzer=${1:-fuzz_weights}
dir=${2:-build/artifacts/weights}
ours=0
for f in "$dir"/*; do
    [ -f "$f" ] || continue
    out=$(LSAN_OPTIONS=suppressions=lsan_hdf5.supp ASAN_OPTIONS=fast_unwind_on_malloc=0 \
          timeout 120 ./build/"$fuzzer" -timeout=10 "$f" 2>&1)
    verdict=$(printf '%s\n' "$out" | grep -m1 -E "ERROR: |runtime error|broken promise|deadly signal" |
              sed 's/^==[0-9]*==//')
    frames=$(printf '%s\n' "$out" | grep -E "^ +#[0-9]+ " |
             grep -v -E "interceptor|sanitizer|asan|fuzzer::|libc\.so|libc_start|_start|in main |in malloc|in free|in calloc|in realloc|AlarmCallback|PrintStackTrace" |
             head -6 | sed -E 's/^ +#([0-9]+) 0x[0-9a-f]+ in /  #\1 /; s/^ +#([0-9]+) 0x[0-9a-f]+ +\(/  #\1 (/; s/ \(BuildId.*//')
    where=""
    if [ -z "$verdict" ] && printf '%s\n' "$out" | grep -q -E "^ +[0-9]+ +[0-9]+ +libhdf5"; then
        verdict="a leak inside libhdf5 (suppressed by lsan_hdf5.supp)"
    elif [ -n "$verdict" ]; then
        if printf '%s\n' "$frames" | head -1 | grep -q libhdf5; then where=" [inside libhdf5]"; else where=" [OURS]"; ours=$((ours + 1)); fi
    fi
    printf '%s (%s bytes): %s%s\n' "$(basename "$f")" "$(wc -c < "$f")" "${verdict:-no longer fails}" "$where"
    [ -n "$frames" ] && printf '%s\n' "$frames"
done
rm -f /dev/shm/an_fuzz_weights_*.h5 /dev/shm/an_fuzz_jpeg_*.jpg
echo "triage: $ours artifact(s) failing outside libhdf5"
[ "$ours" -eq 0 ]
