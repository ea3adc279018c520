#!/usr/bin/env bash
# Builds the Spin test host (spin-host/, wasmtime 48.0.8), its probe component and the edgegate
# Spin component (spin/) its gateway tests run, and installs
# redis-server when it is missing and apt-get can install it. Skips what is already there.
#
# The host is its own workspace with its own Cargo.lock and target dir (target/spin-host, or
# $SPIN_HOST_TARGET_DIR), so the gateway's build never compiles wasmtime. It builds niced.
# Cold: ~12 min wall (8.6 min CPU) on a loaded 2-core machine (wasmtime + cranelift), plus ~2 min
# for the probe and ~2 min for the edgegate component; afterwards a few seconds.
#
# Prints the host binary's path on the last line of stdout.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf '[ensure-spin-host] %s\n' "$*" >&2; }

target="${SPIN_HOST_TARGET_DIR:-$root/target/spin-host}"

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  say "adding rust target wasm32-wasip2"
  rustup target add wasm32-wasip2
fi

# redis-server: install when missing and possible; tests that need it skip otherwise.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing redis-server (apt-get)"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >&2; then
      apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server >&2 \
        || say "could not install redis-server: the Redis tests will be skipped"
    fi
  else
    say "redis-server is missing and cannot be installed here: the Redis tests will be skipped"
  fi
fi

start=$(date +%s)
say "building the host (release; cold ~12 min) into $target"
CARGO_TARGET_DIR="$target" nice -n 15 cargo build --release --locked \
  --manifest-path spin-host/Cargo.toml >&2
say "building the probe component (wasm32-wasip2; cold ~2 min)"
CARGO_TARGET_DIR="$target/probe" nice -n 15 cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path spin-host/tests/fixtures/probe/Cargo.toml >&2
say "building the edgegate Spin component for the host's gateway tests (cold ~2 min)"
CARGO_TARGET_DIR="$target/edgegate-spin" nice -n 15 cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path spin/Cargo.toml >&2
say "ready in $(( $(date +%s) - start )) s"
echo "$target/release/edgegate-spin-host"
