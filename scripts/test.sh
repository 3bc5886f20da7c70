#!/usr/bin/env bash
# Set-up, build, and run every test (unit and integration) with ctest.
# This is what .ci/run calls.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
cd "${BUILD_DIR:-$root/build}"
# Each test that needs a server (the daemon, Prometheus, Redis) starts its
# own on loopback and stops it.
ctest --output-on-failure -j"$(nproc)" --timeout 600 "$@"
