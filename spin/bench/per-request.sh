#!/usr/bin/env bash
# The per-request-instance measurements of spin/README.md: the edgegate Spin component under
# the test host, configs and snapshots as Registry bundles (operator CLI), activated through
# the admin API's POST /sync from the mock Registry, then `hey -c 1` per case.
#
# Needs: the host and the component (scripts/ensure-spin-host.sh), the operator CLI
# (cargo build -p edgegate-cli; or EDGEGATE_CLI), node, nginx, hey, python3; redis-server for
# the Redis rows (skipped without it).
#
# Usage: spin/bench/per-request.sh [rounds (default 3)] [seconds per case (default 4)]
# Env: SPIN_HOST_TARGET_DIR (default <repo>/target/spin-host), EDGEGATE_CLI.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
rounds="${1:-3}"
secs="${2:-4}"
target="${SPIN_HOST_TARGET_DIR:-$root/target/spin-host}"
host_bin="$target/release/edgegate-spin-host"
wasm="$target/edgegate-spin/wasm32-wasip2/release/edgegate_spin.wasm"
cli="${EDGEGATE_CLI:-$root/target/debug/edgegate}"
for f in "$host_bin" "$wasm" "$cli"; do
  [ -x "$f" ] || [ -f "$f" ] || { echo "missing $f" >&2; exit 1; }
done
work="$(mktemp -d)"
token="bench-admin-token-0123456789"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

# Backends: nginx on two ports ("a" and "b").
cat > nginx.conf <<EOF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nb; proxy_temp_path $work/np; fastcgi_temp_path $work/nf;
  uwsgi_temp_path $work/nu; scgi_temp_path $work/ns;
  server { listen 127.0.0.1:18081; location / { return 200 "a"; } }
  server { listen 127.0.0.1:18082; location / { return 200 "b"; } }
}
EOF
nginx -c "$work/nginx.conf" -p "$work"

redis_url=""
if command -v redis-server >/dev/null; then
  redis-server --bind 127.0.0.1 --port 16399 --save "" --appendonly no >/dev/null &
  pids+=($!)
  redis_url="redis://127.0.0.1:16399"
  for _ in $(seq 50); do redis-cli -p 16399 ping >/dev/null 2>&1 && break; sleep 0.1; done
fi

# Snapshots: n subscriptions, n/4 applications each with one API key "key-<i>".
python3 - <<'EOF'
import hashlib
for n, name in ((1000, "s1k"), (100000, "s100k")):
    apps = n // 4
    with open(f"{name}-subs.csv", "w") as f:
        f.write("subscription_id,application_id,consumer_id,api,versions,environment,plan_id,status\n")
        for i in range(n):
            a = i % apps
            f.write(f"sub-{i},app-{a},cons-{a % (apps // 2)},users,v2,production,gold,active\n")
    with open(f"{name}-creds.csv", "w") as f:
        f.write("kind,key,consumer_id,status,application_id\n")
        for a in range(apps):
            k = hashlib.sha256(f"key-{a}".encode()).hexdigest()
            f.write(f"api_key,{k},cons-{a % (apps // 2)},active,app-{a}\n")
EOF
cat > c.json <<'EOF'
{"pools":{"p":{"instances":[{"url":"http://127.0.0.1:18081"}]}},"apis":[
 {"name":"users","base_path":"/users-api","versions":[{"name":"v2","pool":"p"}],
  "policies":{"auth":{"accept":["api_key"],"api_key":{"header":"x-api-key"}}},
  "routes":[{"name":"get-user","methods":["GET"],"path":"/users/{id}"}]},
 {"name":"open","base_path":"/open","pool":"p","routes":[{"name":"all","path":"/{*rest}"}]}]}
EOF
cat > rr.json <<'EOF'
{"pools":{"p":{"instances":[{"url":"http://127.0.0.1:18081"},{"url":"http://127.0.0.1:18082"}]}},
 "apis":[{"name":"open","base_path":"/open","pool":"p","routes":[{"name":"all","path":"/{*rest}"}]}]}
EOF
cat > lease.json <<'EOF'
{"pools":{"p":{"instances":[{"url":"http://127.0.0.1:18081"}]}},"apis":[
 {"name":"open","base_path":"/open","pool":"p","policies":{"rate_limits":[{"name":"per-api",
  "key":"api","algorithm":"sliding_window","limit":100,"window_s":600,"mode":"approximate",
  "lease":10,"on_error":"closed"}]},"routes":[{"name":"all","path":"/{*rest}"}]}]}
EOF
for n in 1k 100k; do
  "$cli" bundle --platform spin --config c.json --snapshot "s$n-subs.csv" --credentials "s$n-creds.csv" \
    --snapshot-version "v$n" --label "b$n" --out "b$n.egb" >&2
done
"$cli" bundle --platform spin --config c.json --label none --out none.egb >&2
"$cli" bundle --platform spin --config rr.json --label rr --out rr.egb >&2
"$cli" bundle --platform spin --config lease.json --label lease --out lease.egb >&2
record="{\"consumer_id\":\"cons-7\",\"application_id\":\"app-7\",\"status\":\"active\"}"
key7="$(printf key-7 | sha256sum | cut -d' ' -f1)"

host_pid=""
reg_pid=""
addr=""
# start BUNDLE [host flags...]: mock Registry + host, then POST /sync.
start() {
  local bundle="$1"; shift
  node "$root/tests/support/registry.mjs" --port 0 --bundle "$bundle" > reg.out 2>&1 &
  reg_pid=$!; pids+=("$reg_pid")
  for _ in $(seq 100); do grep -q " at " reg.out 2>/dev/null && break; sleep 0.1; done
  local url; url="$(sed -n 's/.* at //p' reg.out)"
  : > host.out
  "$host_bin" --component "$wasm" --variable "edgegate_admin_token=$token" \
    --variable "edgegate_registry_url=$url" --variable edgegate_registry_allow_unsigned=true \
    --allowed-outbound-hosts http://127.0.0.1:18081 --allowed-outbound-hosts http://127.0.0.1:18082 \
    --allowed-outbound-hosts "${url%/bundle}" "$@" > host.out 2> host.err &
  host_pid=$!; pids+=("$host_pid")
  for _ in $(seq 600); do [ -s host.out ] && break; sleep 0.1; done
  addr="$(head -1 host.out | python3 -c 'import json,sys;print(json.load(sys.stdin)["http"])')"
  local synced
  synced="$(curl -s -X POST -H "authorization: Bearer $token" "http://$addr/__edgegate/admin/sync")"
  case "$synced" in
    *'"result": "activated"'*) ;;
    *) echo "sync of $bundle failed: $synced" >&2; cat host.err >&2; exit 1 ;;
  esac
}
stop() { kill "$host_pid" "$reg_pid" 2>/dev/null || true; wait "$host_pid" "$reg_pid" 2>/dev/null || true; }
# measure LABEL PATH [HEADER]
measure() {
  local out
  if [ -n "${3:-}" ]; then out="$(hey -z "${secs}s" -c 1 -H "$3" "http://$addr$2")"
  else out="$(hey -z "${secs}s" -c 1 "http://$addr$2")"; fi
  printf '%-28s %8s req/s  p50 %6s ms  %s\n' "$1" \
    "$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')" \
    "$(echo "$out" | awk '/ 50% in/ {printf "%.2f", $3*1000}')" \
    "$(echo "$out" | sed -n '/Status code distribution/,/^$/p' | grep -o '\[[0-9]*\][^[]*responses' | tr -s ' \t' ' ' | paste -sd,)"
}

for r in $(seq "$rounds"); do
  echo "round $r (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  start b1k.egb; measure "1k snapshot: no auth" /open/x; measure "1k snapshot: API key" /users-api/v2/users/1 "x-api-key: key-7"; stop
  start b100k.egb; measure "100k snapshot: API key" /users-api/v2/users/1 "x-api-key: key-7"; stop
  start none.egb --kv-put "default:credential:apikey:$key7=$record"
  measure "no snapshot: no auth" /open/x; measure "no snapshot: KV key record" /users-api/v2/users/1 "x-api-key: key-7"; stop
  if [ -n "$redis_url" ]; then
    start none.egb --variable "redis_address=$redis_url" --redis "$redis_url"; measure "overrides in Redis: no auth" /open/x; stop
  fi
done

echo "round robin over two equal instances (12 requests):"
start rr.egb
for _ in $(seq 12); do printf '%s ' "$(curl -s "http://$addr/open/x")"; done; echo; stop
if [ -n "$redis_url" ]; then
  echo "approximate limit 100 with lease 10 (30 requests):"
  start lease.egb --variable "redis_address=$redis_url" --redis "$redis_url"
  for _ in $(seq 30); do printf '%s ' "$(curl -s -o /dev/null -w '%{http_code}' "http://$addr/open/x")"; done; echo; stop
fi
