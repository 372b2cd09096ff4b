#!/bin/sh
# Regenerate src/engine/caffe_subset.pb-c.[ch] from src/engine/caffe_subset.proto
# (the generated files are committed: building the package needs only the
# protobuf-c runtime library, not protoc-c). Debian: protobuf-c-compiler.
set -eu
cd "$(dirname "$0")/../src/engine"
command -v protoc-c >/dev/null 2>&1 || { echo "protoc-c not found (Debian: apt-get install protobuf-c-compiler)" >&2; exit 1; }
protoc-c --version
protoc-c --c_out=. caffe_subset.proto
echo "wrote src/engine/caffe_subset.pb-c.c and caffe_subset.pb-c.h"
