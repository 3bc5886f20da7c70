#!/usr/bin/env bash
# fairserve's per-request overhead against a do-nothing gRPC server
# (build/bin/floor_server) and libtorch in-process, in one run, interleaved,
# 3 repetitions (bench/overhead.py). Extra arguments go to the script, e.g.
# --reps 1 --duration 3. Results: build/bench-results/overhead.{json,md}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/prepare.sh"
exec /usr/bin/python3 "$root/bench/overhead.py" "$@"
