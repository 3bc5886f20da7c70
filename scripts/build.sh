#!/usr/bin/env bash
# Configures and builds fairserve into build/ (Release, ccache when present).
# Extra arguments go to the configure step, e.g. -DTorch_DIR=/path/to/libtorch.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_dir=${BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build_dir" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} "$@" >/dev/null
cmake --build "$build_dir" -j"$(nproc)"
