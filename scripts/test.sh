#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run): tools, formatting, lints, the core's unit and
# pipeline tests, the real wasm build, and the end-to-end tests under Miniflare.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n=== %s ===\n' "$*"; }

step "tools"
bash scripts/ensure-tools.sh

step "format"
cargo fmt --all -- --check

step "lint (host crates, then the worker for wasm32)"
cargo clippy -p edgegate-core -p edgegate-bench -p edgegate-cli --all-targets -- -D warnings
cargo clippy -p edgegate-worker -p edgegate-durable-objects --target wasm32-unknown-unknown -- -D warnings

step "core: unit, config, routing and pipeline tests; the operator CLI"
cargo test -p edgegate-core -p edgegate-bench -p edgegate-worker -p edgegate-cli

step "build the worker (release wasm)"
bash scripts/build-worker.sh

step "end-to-end: the built worker under Miniflare"
# The operator CLI builds the Registry snapshots the authorization tests upload
# (tests/support/snapshot.mjs runs target/debug/edgegate).
cargo build -p edgegate-cli
node --test --test-force-exit --test-concurrency=1 tests/e2e/
