#!/usr/bin/env bash
# Set-up, build, and the demo model repository (build/demo-models, made once):
# what the demo and the benchmarks start from.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/setup.sh"
"$root/scripts/build.sh"
if [ ! -f "$root/build/demo-models/mlp_large/1/model.pt" ]; then
  "$root/scripts/make-demo-models.sh" "$root/build/demo-models"
fi
