#!/usr/bin/env bash
# Runs edgegate locally: installs missing tools, starts the demo backend (examples/), seeds the
# demo config into local KV and starts `wrangler dev` (local workerd, offline) on 127.0.0.1:8787.
# Ctrl-C stops everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH" WRANGLER_SEND_METRICS=false
port="${EDGEGATE_PORT:-8787}"

bash scripts/ensure-tools.sh
bash scripts/build-worker.sh

node examples/demo-backend.mjs &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT INT TERM

# The demo identity provider's HMAC secret: wrangler dev reads Worker secrets from .dev.vars.
if ! grep -qs '^DEMO_JWT_SECRET=' .dev.vars; then
  echo "DEMO_JWT_SECRET=$(node -e 'console.log(require("crypto").randomBytes(36).toString("base64url"))')" >> .dev.vars
fi
token=$(node examples/demo-token.mjs)

wrangler=node_modules/.bin/wrangler
"$wrangler" kv key put --binding EDGEGATE_CONFIG --local "config:version:demo" --path examples/demo-config.json >/dev/null
"$wrangler" kv key put --binding EDGEGATE_CONFIG --local "config:active" "demo" >/dev/null

cat <<TXT

edgegate is starting on http://127.0.0.1:$port (demo backend on 127.0.0.1:9101-9104). Try:
  curl -i http://127.0.0.1:$port/users-api/v2/users/42          # the spec's example → users-v2 /users/42
  curl -i http://127.0.0.1:$port/users-api/v2/users/me          # literal route, rewritten to /whoami
  curl -i -H 'x-beta: 1' http://127.0.0.1:$port/users-api/v2/users/42   # header-predicate route
  curl -i -X POST http://127.0.0.1:$port/users-api/v2/users/42  # 405 with Allow, problem+json
  curl -i http://127.0.0.1:$port/nope                           # 404 route_not_found
  curl -i http://127.0.0.1:$port/orders-api/v3/orders/7                 # 401 missing_credentials: orders needs a JWT
  curl -i -H "authorization: Bearer $token" http://127.0.0.1:$port/orders-api/v3/orders/7
                                                                # demo token (node examples/demo-token.mjs): the backend
                                                                # sees x-edgegate-subject, -scopes, -application
Access-log lines appear below, one JSON object per request. Edit examples/demo-config.json and
re-run this command to load a new config.

TXT
"$wrangler" dev --local --ip 127.0.0.1 --port "$port" --test-scheduled
