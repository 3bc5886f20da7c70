#!/usr/bin/env bash
# Writes the demo model repository into DIR: add_one, mlp, mlp_large
# (DIR/<model>/config.yaml and DIR/<model>/1/model.pt), made locally with
# Debian's python3-torch. Nothing is downloaded.
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 [--with-test-models] DIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
# The pyenv python3 on PATH has no torch; Debian's has python3-torch. PYTHON=
# overrides (scripts/gpu-check.sh: the GPU machine's python3 with PyTorch).
PY=${PYTHON:-/usr/bin/python3}
if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "make-demo-models: $PY cannot import torch; run scripts/setup.sh first" >&2
  exit 1
fi
echo "make-demo-models: writing ${@: -1}"
OMP_NUM_THREADS=1 "$PY" "$here/make_demo_models.py" "$@"
