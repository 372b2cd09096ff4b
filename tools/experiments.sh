#!/usr/bin/env bash
# The main job: the seed's three experiments (AlexNet from scratch,
# layer-wise fine-tuning, convpool_5 features into SVMs and a small
# classifier) on Fashion-MNIST, in one command. On a fresh Debian machine
# (as root) it installs what it needs, builds and installs the package, and
# runs inst/experiments/run.R with the options given, for example
#
#   bash tools/experiments.sh                  # quick: about 6 minutes on 2 CPU cores
#   bash tools/experiments.sh --full           # the seed's protocol (hours on a CPU)
#   bash tools/experiments.sh --dir=out --weights=alexnet_weights.h5   # or bvlc_alexnet.caffemodel,
#                                              # alexnet-owt-7be5be79.pth (any format alexnet() reads)
#   bash tools/experiments.sh --help
#
# It prints the results table beside the seed's and writes the plots (PNG)
# and tables to the results folder (default: alexnet-results).
# The package goes to R's default library when run as root, else to
# $ALEXNET_LIB (default: .rlib under the repository).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
for a in "$@"; do
  if [ "$a" = "--help" ] || [ "$a" = "-h" ]; then
    sed -n '2,/^[^#]/p' inst/experiments/run.R | sed -n 's/^# \{0,1\}//p'
    exit 0
  fi
done

echo "== installing what is needed (Debian packages)"
bash tools/install-deps.sh

echo "== building and installing the R package alexnet (with its vignette)"
lib=${ALEXNET_LIB:-}
if [ -z "$lib" ] && [ "$(id -u)" != 0 ]; then lib="$repo/.rlib"; fi
if [ -n "$lib" ]; then
  mkdir -p "$lib"
  export R_LIBS="$lib${R_LIBS:+:$R_LIBS}"
fi
# R CMD build makes the vignette, so that vignette("alexnet-experiments")
# is there after the install
build=$(mktemp -d)
trap 'rm -rf "$build"' EXIT
(cd "$build" && R CMD build "$repo") > /tmp/alexnet-install.log 2>&1 ||
  { cat /tmp/alexnet-install.log; exit 1; }
R CMD INSTALL --no-multiarch ${lib:+-l "$lib"} "$build"/alexnet_*.tar.gz >> /tmp/alexnet-install.log 2>&1 ||
  { cat /tmp/alexnet-install.log; exit 1; }
tail -n 1 /tmp/alexnet-install.log
Rscript -e 'v <- vignette(package = "alexnet")$results[, "Item"]
  if (!"alexnet-experiments" %in% v) stop("the vignette alexnet-experiments was not installed")'

echo "== running the experiments"
start=$(date +%s)
export ALEXNET_COMMAND="bash tools/experiments.sh $*"
Rscript inst/experiments/run.R "$@"
echo "== done in $(( ($(date +%s) - start) / 60 )) min $(( ($(date +%s) - start) % 60 )) s"
