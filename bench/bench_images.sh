#!/bin/sh
# Images benchmark: the engine's decode + resize (+ augment) against PIL and
# torchvision on the same folder of photo-like JPEGs.
#
#   bench/bench_images.sh [ROUNDS]        (default 3 alternations)
#
# Makes $AN_BENCH_DIR/photos (default ${TMPDIR:-/tmp}/alexnet_bench_images)
# once: 200 JPEGs, 500x375 (1 in 5 portrait), quality 90 (bench_images.py
# photos). Builds bench_images from the engine's image sources, then
# alternates engine and Python runs, each after waiting (up to 60 s) for the
# other processes to leave the CPUs idle, and prints the table (best of the
# rounds). Raw JSON lines: $AN_BENCH_DIR/raw.jsonl.
# Needs cc, libjpeg (jpeglib.h), and /usr/bin/python3 with PIL, numpy and
# torchvision.
set -e
cd "$(dirname "$0")"
rounds=${1:-3}
dir=${AN_BENCH_DIR:-${TMPDIR:-/tmp}/alexnet_bench_images}
py=/usr/bin/python3
mkdir -p "$dir"
[ -f "$dir/photos/photo_199.jpg" ] || $py bench_images.py photos "$dir/photos" --n 200
src=../src/engine
cflags=$(pkg-config --cflags libjpeg 2>/dev/null || true)
libs=$(pkg-config --libs libjpeg 2>/dev/null || echo -ljpeg)
cc -O2 -fopenmp -std=gnu11 -Wall -Wextra -I$src $cflags -o "$dir/bench_images" bench_images.c \
  $src/jpeg.c $src/files.c $src/augment.c $src/loader.c $src/pixels.c $src/backend.c $src/signals.c $src/rng.c $src/error.c \
  $libs -lpthread -lm
raw=$dir/raw.jsonl
: > "$raw"
uname -m > /dev/null
grep -m1 "model name" /proc/cpuinfo || true
echo "# $(nproc) CPUs; $(date)"
i=1
while [ "$i" -le "$rounds" ]; do
  $py bench_images.py quiet >> "$raw"
  "$dir/bench_images" "$dir/photos" 5 >> "$raw"
  $py bench_images.py quiet >> "$raw"
  $py bench_images.py time "$dir/photos" --rounds 5 >> "$raw"
  i=$((i + 1))
done
$py bench_images.py table "$raw"
