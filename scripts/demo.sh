#!/usr/bin/env bash
# Set-up, build, make the demo models, and run the daemon in the foreground on
# config/demo.yaml (CPU, SQLite ledger under build/demo-data). Ctrl-C stops it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/prepare.sh"
cat <<MSG

fairserve demo: gRPC on 127.0.0.1:8001, HTTP on 127.0.0.1:8000
  tenants: acme (key acme-demo-key), globex (key globex-demo-key)
  models:  add_one, mlp, mlp_large

Try it from another terminal:
  /usr/bin/python3 scripts/demo_client.py --key acme-demo-key --model mlp
  curl -s 127.0.0.1:8000/readyz

MSG
exec "$root/build/bin/fairserve" --config "$root/config/demo.yaml" "$@"
