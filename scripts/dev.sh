#!/usr/bin/env bash
# Runs edgegate locally: installs missing tools, starts the demo backend (examples/) and a mock
# API Registry serving examples/demo-config.json as a signed bundle (scripts/demo-publish.sh),
# starts `wrangler dev` (local workerd, offline) on 127.0.0.1:8787 and runs the cron once, so the
# gateway's Registry sync verifies, stores and activates the demo config. Ctrl-C stops everything.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH" WRANGLER_SEND_METRICS=false
port="${EDGEGATE_PORT:-8787}"
registry_port="${EDGEGATE_REGISTRY_PORT:-8788}"
random() { node -e 'console.log(require("crypto").randomBytes(24).toString("base64url"))'; }

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
bash scripts/demo-publish.sh     # makes the demo Registry key on first use (.dev/registry.pub)
# The Registry sync's and the admin API's secrets and settings (wrangler dev reads .dev.vars).
for name in EDGEGATE_REGISTRY_TOKEN EDGEGATE_ADMIN_TOKEN; do
  grep -qs "^$name=" .dev.vars || echo "$name=$(random)" >> .dev.vars
done
sed -i '/^EDGEGATE_REGISTRY_URL=/d; /^EDGEGATE_REGISTRY_KEYS=/d' .dev.vars
echo "EDGEGATE_REGISTRY_URL=http://127.0.0.1:$registry_port/bundle" >> .dev.vars
echo "EDGEGATE_REGISTRY_KEYS=$(cat .dev/registry.pub)" >> .dev.vars
registry_token=$(sed -n 's/^EDGEGATE_REGISTRY_TOKEN=//p' .dev.vars)
admin_token=$(sed -n 's/^EDGEGATE_ADMIN_TOKEN=//p' .dev.vars)
admin="http://127.0.0.1:$port/__edgegate/admin"

node tests/support/registry.mjs --bundle .dev/demo.egb --port "$registry_port" --token "$registry_token" &
registry=$!
trap 'kill $backend $registry 2>/dev/null || true' EXIT INT TERM

# The first sync as soon as wrangler dev listens (then every minute, wrangler.toml's cron).
node -e '
  const url = process.argv[1];
  const tick = (n) => fetch(url).then((r) => { if (!r.ok) throw r.status; })
    .catch(() => n > 0 && setTimeout(() => tick(n - 1), 1000));
  tick(120);' "http://127.0.0.1:$port/__scheduled?cron=*+*+*+*+*" &

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
The config comes from the mock Registry (127.0.0.1:$registry_port) as a signed bundle. The admin API:
  curl -s -H "authorization: Bearer $admin_token" $admin/health
  curl -s -H "authorization: Bearer $admin_token" $admin/config/versions
  curl -s -X POST -H "authorization: Bearer $admin_token" $admin/config/rollback
  curl -s -H "authorization: Bearer $admin_token" $admin/openapi.json
Edit examples/demo-config.json, run scripts/demo-publish.sh (a new signed release), then
  curl -s -X POST -H "authorization: Bearer $admin_token" $admin/sync      # or wait for the cron
Access-log lines appear below, one JSON object per request.

TXT
node_modules/.bin/wrangler dev --local --ip 127.0.0.1 --port "$port" --test-scheduled
