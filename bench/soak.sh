#!/usr/bin/env bash
# Soak benchmark: the daemon at twice its capacity for several minutes on
# loopback (memory, errors, latency stability). Builds and makes the demo
# models first. Arguments go to bench/soak.py, e.g. --minutes 10 --window 30.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/prepare.sh"
exec /usr/bin/python3 "$root/bench/soak.py" "$@"
