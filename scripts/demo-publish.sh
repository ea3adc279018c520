#!/usr/bin/env bash
# Publishes examples/demo-config.json as a signed Registry bundle for the local demo: builds
# the bundle with the operator CLI, signs it with the demo Registry key (made on first use in
# .dev/, never committed), and writes it where the demo's mock Registry serves it
# (.dev/demo.egb; the mock re-reads the file on every request, so this is a new release).
# The gateway picks it up on its next cron tick, or at once with the admin API's sync:
#   curl -X POST -H "authorization: Bearer $EDGEGATE_ADMIN_TOKEN" \
#     http://127.0.0.1:8787/__edgegate/admin/sync
# Usage: scripts/demo-publish.sh [label]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -q -p edgegate-cli
edgegate="${CARGO_TARGET_DIR:-$root/target}/debug/edgegate"
mkdir -p .dev
if [ ! -f .dev/registry.key ]; then
  "$edgegate" keygen --out .dev/registry >/dev/null
fi
label="${1:-demo-$(date -u +%Y%m%dT%H%M%SZ)}"
"$edgegate" bundle --config examples/demo-config.json --label "$label" --out .dev/demo.egb.new >/dev/null
"$edgegate" sign .dev/demo.egb.new --key .dev/registry.key >/dev/null
mv .dev/demo.egb.new .dev/demo.egb
echo "published $label ($(wc -c < .dev/demo.egb) bytes, .dev/demo.egb)"
