#!/usr/bin/env bash
# Installs the Debian packages that building, testing and running alexnet need.
# Idempotent: does nothing when they are all there already. Run as root.
set -euo pipefail
packages=(
  r-base-dev r-cran-cli r-cran-testthat r-cran-e1071 r-cran-knitr r-cran-rmarkdown r-cran-roxygen2
  libdnnl-dev libhdf5-dev libjpeg-dev libzip-dev libprotobuf-c-dev pkg-config make gcc
  libopenmpi-dev openmpi-bin r-cran-future
  valgrind
  dataset-fashion-mnist
  # R's own matrix products (the experiments' 256-unit classifier) through
  # OpenBLAS instead of Debian's reference BLAS: measured 3-4x faster there
  libopenblas0-pthread
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
