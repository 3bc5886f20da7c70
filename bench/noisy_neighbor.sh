#!/usr/bin/env bash
# Noisy-neighbour and fairness benchmarks: builds, makes the demo models, then
# runs bench/noisy_neighbor.py (the daemon + fairserve-loadgen, three runs of
# each scenario). Extra arguments go to the Python script, e.g. --reps 1 or
# --only noisy. Results: build/bench-results/ (summary.json, noisy_neighbor.png).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/prepare.sh"
exec /usr/bin/python3 "$root/bench/noisy_neighbor.py" "$@"
