#!/usr/bin/env bash
# The end-to-end suite (tests/e2e/) against the Spin build: the edgegate Spin component under
# the test host (spin-host/), instead of the worker under Miniflare. The same tests; where Spin
# cannot do something they skip with the reason, and what Spin still lacks is reported as todo
# (tests/support/spin-gaps.mjs lists both).
#
# Builds nothing. It needs, built beforehand:
#   - the test host and the component: bash scripts/ensure-spin-host.sh
#     (or point EDGEGATE_SPIN_HOST / EDGEGATE_SPIN_WASM at other builds);
#   - redis-server on PATH (ensure-spin-host.sh installs it), or EDGEGATE_TEST_REDIS=redis://…;
#     each gateway gets a private redis-server on 127.0.0.1 for its exact rate limits;
#   - the operator CLI (authz builds Registry snapshots with it): cargo build -p edgegate-cli
#     (or EDGEGATE_CLI).
# Each test file starts its hosts (one per gateway) and Redis servers itself and stops them.
#
# Usage: scripts/e2e-spin.sh [node --test arguments; default: tests/e2e/]
#   e.g. scripts/e2e-spin.sh tests/e2e/routing.test.mjs
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

spin_target="${SPIN_HOST_TARGET_DIR:-$root/target/spin-host}"
export EDGEGATE_SPIN_HOST="${EDGEGATE_SPIN_HOST:-$spin_target/release/edgegate-spin-host}"
export EDGEGATE_SPIN_WASM="${EDGEGATE_SPIN_WASM:-$spin_target/edgegate-spin/wasm32-wasip2/release/edgegate_spin.wasm}"
cli="${EDGEGATE_CLI:-${CARGO_TARGET_DIR:-$root/target}/debug/edgegate}"

missing=0
need() { # what, path, how to build it
  if [ ! -e "$2" ]; then
    printf '[e2e-spin] %s missing: %s\n[e2e-spin]   build it: %s\n' "$1" "$2" "$3" >&2
    missing=1
  fi
}
need "the Spin test host" "$EDGEGATE_SPIN_HOST" "bash scripts/ensure-spin-host.sh (or set EDGEGATE_SPIN_HOST)"
need "the edgegate Spin component" "$EDGEGATE_SPIN_WASM" "bash scripts/ensure-spin-host.sh (or set EDGEGATE_SPIN_WASM)"
need "the operator CLI" "$cli" "cargo build -p edgegate-cli (or set EDGEGATE_CLI)"
if [ -z "${EDGEGATE_TEST_REDIS:-}" ] && ! command -v redis-server >/dev/null 2>&1; then
  printf '[e2e-spin] redis-server missing\n[e2e-spin]   install it (bash scripts/ensure-spin-host.sh does) or set EDGEGATE_TEST_REDIS=redis://HOST:PORT\n' >&2
  missing=1
fi
[ "$missing" = 0 ] || exit 2

export EDGEGATE_TEST_PLATFORM=spin
[ -n "${EDGEGATE_CLI:-}" ] || export EDGEGATE_CLI="$cli"
if [ "$#" -eq 0 ]; then set -- tests/e2e/; fi
exec node --test --test-force-exit --test-concurrency=1 "$@"
