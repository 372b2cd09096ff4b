#!/bin/sh
# Foreign weights benchmark: how long alexnet(weights = FILE) takes in R for a
# full-size torchvision .pth (61.1M parameters) and Caffe .caffemodel
# (bvlc_alexnet layout, 60.97M), against PyTorch's own loading.
#
#   bench/bench_foreign.sh [ROUNDS]        (default 3)
#
# Makes $AN_BENCH_DIR (default ${TMPDIR:-/tmp}/alexnet_bench_foreign) once:
# alexnet.pth (torch.save of a seeded torchvision alexnet's state dict),
# alexnet.caffemodel (bvlc_alexnet's layers and blob shapes, seeded values,
# written with tools/make_caffe_fixtures.py, parsed back with the protobuf
# library compiled from src/engine/caffe_subset.proto), alexnet.h5
# (save_weights() of the net loaded from the .pth), a random 224x224 image and
# PyTorch's model.features output for it (bench_foreign.py make).
#
# Checks that the R net loaded from the .pth (and the .h5) gives PyTorch's
# features (convpool_5, 9216 values) to 1e-4 relative, then for each of ROUNDS
# rounds runs every route once, each in its own process under
# /usr/bin/time -v (peak RSS: "Maximum resident set size"), after waiting (up
# to 20 s) for idle CPUs. Also times, for the breakdown, alexnet(arch =
# "torchvision") alone (net creation, no file) and load_weights(net, FILE)
# into an existing net (the load alone) and weights_info(FILE) (the look at the
# file that alexnet(weights = ) makes before it creates the net). The time is measured inside the process around the
# call alone (R: system.time(alexnet(weights = FILE)), so not R's start-up or
# library(alexnet)). The files are in the page cache (warm): each is read once
# before the rounds. Raw JSON lines: $AN_BENCH_DIR/raw.jsonl.
#
# Needs R with the package installed (R_LIBS), /usr/bin/python3 with torch,
# torchvision, numpy and protobuf, protoc, and GNU time (/usr/bin/time).
set -e
cd "$(dirname "$0")"
rounds=${1:-3}
dir=${AN_BENCH_DIR:-${TMPDIR:-/tmp}/alexnet_bench_foreign}
py=/usr/bin/python3
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$dir"
raw=$dir/raw.jsonl
tv=$dir/time.txt

echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
echo "# R: $(Rscript -e 'cat(R.version.string)') ; alexnet $(Rscript -e 'cat(format(packageVersion("alexnet")))') from R_LIBS=${R_LIBS:-}"
echo "# Python: $($py -c 'import sys, torch, torchvision, google.protobuf as g; from google.protobuf.internal import api_implementation as a; print(sys.version.split()[0], "torch", torch.__version__, "torchvision", torchvision.__version__, "protobuf", g.__version__, a.Type())') ; OMP_NUM_THREADS=$OMP_NUM_THREADS"

if [ ! -f "$dir/features.f32" ] || [ ! -f "$dir/alexnet.caffemodel" ]; then
  $py bench_foreign.py make "$dir"
fi
[ -f "$dir/alexnet.h5" ] || Rscript bench_foreign.R save_h5 "$dir/alexnet.pth" "$dir/alexnet.h5"
ls -l "$dir"/alexnet.* | awk '{printf "# %s %d bytes\n", $NF, $5}'

Rscript bench_foreign.R check "$dir"

# warm the page cache
cat "$dir/alexnet.pth" "$dir/alexnet.caffemodel" "$dir/alexnet.h5" > /dev/null

# one measurement: its own process under /usr/bin/time -v; the JSON line it
# prints with rss_kb and the process's wall time added
measure() {
  $py bench_foreign.py quiet >> "$raw"
  out=$(/usr/bin/time -v -o "$tv" "$@" | grep '^{' || true)
  if [ -z "$out" ]; then echo "failed: $*" >&2; cat "$tv" >&2; exit 1; fi
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$tv")
  wall=$(awk '/Elapsed \(wall clock\)/ {print $NF}' "$tv")
  line="${out%\}}, \"rss_kb\": $rss, \"process_wall\": \"$wall\"}"
  echo "$line" >> "$raw"
  echo "$line"
}

: > "$raw"
i=1
while [ "$i" -le "$rounds" ]; do
  echo "# round $i"
  measure Rscript bench_foreign.R time r_pth "$dir/alexnet.pth"
  measure $py bench_foreign.py torch "$dir"
  measure Rscript bench_foreign.R time r_caffe "$dir/alexnet.caffemodel"
  measure $py bench_foreign.py parse "$dir"
  measure Rscript bench_foreign.R time r_h5 "$dir/alexnet.h5"
  measure Rscript bench_foreign.R create
  measure Rscript bench_foreign.R load r_load_pth torchvision "$dir/alexnet.pth"
  measure Rscript bench_foreign.R load r_load_caffe caffe "$dir/alexnet.caffemodel"
  measure Rscript bench_foreign.R info r_info_pth "$dir/alexnet.pth"
  measure Rscript bench_foreign.R info r_info_caffe "$dir/alexnet.caffemodel"
  i=$((i + 1))
done
echo "# baselines (RSS only)"
measure Rscript bench_foreign.R baseline
measure $py bench_foreign.py baseline
echo
$py bench_foreign.py table "$raw"
