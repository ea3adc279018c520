#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): tools, formatting, lints, the core's unit and
# pipeline tests, the real wasm build, the end-to-end tests under Miniflare, and the same
# end-to-end tests against the Spin component under the Spin test host (spin-host/), whose
# build (wasmtime, the longest) runs in the background, niced, while the Workers steps run.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n=== %s ===\n' "$*"; }

step "tools"
bash scripts/ensure-tools.sh

# The Spin test host and the Spin component: built meanwhile (see the Spin steps below).
mkdir -p target
spin_log="$root/target/ensure-spin-host.log"
SPIN_HOST_PROFILE=test-host nice -n 10 bash scripts/ensure-spin-host.sh >"$spin_log" 2>&1 &
spin_pid=$!
# A failing step ends the script: do not leave the background build running.
trap 'kill "$spin_pid" 2>/dev/null || true' EXIT
printf 'building the Spin test host in the background (log: %s)\n' "$spin_log"

step "format"
cargo fmt --all -- --check
cargo fmt --manifest-path spin/Cargo.toml --all -- --check
cargo fmt --manifest-path spin-host/Cargo.toml --all -- --check

step "lint (host crates, then the worker for wasm32)"
cargo clippy -p edgegate-core -p edgegate-bench -p edgegate-cli --all-targets -- -D warnings
cargo clippy -p edgegate-worker -p edgegate-durable-objects --target wasm32-unknown-unknown -- -D warnings

step "core: unit, config, routing and pipeline tests; the operator CLI"
cargo test -p edgegate-core -p edgegate-bench -p edgegate-worker -p edgegate-cli

step "build the worker (release wasm)"
bash scripts/build-worker.sh

step "end-to-end: the built worker under Miniflare"
# The operator CLI builds the Registry snapshots the authorization tests upload
# (tests/support/snapshot.mjs runs target/debug/edgegate): `cargo test` above built it.
test -x target/debug/edgegate || cargo build -p edgegate-cli
node --test --test-force-exit --test-concurrency=1 tests/e2e/

step "Spin: the test host and the component (built in the background since the start)"
spin_status=0
wait "$spin_pid" || spin_status=$?
tail -n 4 "$spin_log"
if [ "$spin_status" = 3 ]; then
  printf '\n*** SKIPPED: the Spin tests (%s) ***\n' "$(grep -m1 '^SKIPPED' "$spin_log" || echo 'see the log')"
  exit 0
elif [ "$spin_status" != 0 ]; then
  cat "$spin_log"
  exit "$spin_status"
fi
EDGEGATE_SPIN_HOST="$(tail -n 1 "$spin_log")"
export EDGEGATE_SPIN_HOST

step "Spin: lint the component (wasm32-wasip2)"
CARGO_TARGET_DIR="$root/target/spin-host/edgegate-spin" \
  cargo clippy --locked --manifest-path spin/Cargo.toml --target wasm32-wasip2 -- -D warnings

step "Spin: the test host's own tests (key-value, variables, Redis, outbound checks; the gateway on it)"
(cd spin-host && CARGO_TARGET_DIR="$root/target/spin-host" EDGEGATE_CLI="$root/target/debug/edgegate" \
  cargo test --profile test-host --locked)

step "end-to-end on Spin: the same tests against the Spin component under the test host"
bash scripts/e2e-spin.sh
