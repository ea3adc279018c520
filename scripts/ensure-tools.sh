#!/usr/bin/env bash
# Installs what building and testing edgegate needs, and skips whatever is already present:
# the wasm32 target, clippy/rustfmt, worker-build 0.8.7, wasm-bindgen-cli at the exact version
# in Cargo.lock, and the pinned npm packages (npm ci). Only package registries are used.
# First run on a fresh machine: ~20 min (two cargo installs); afterwards a few seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '[ensure-tools] %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding rust target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi
for comp in clippy rustfmt; do
  if ! rustup component list --installed | grep -q "^$comp"; then
    say "adding rustup component $comp"
    rustup component add "$comp"
  fi
done

worker_build_version=0.8.7
if [ "$(worker-build --version 2>/dev/null || true)" != "$worker_build_version" ]; then
  say "installing worker-build $worker_build_version (cold: ~12 min)"
  cargo install worker-build --version "$worker_build_version" --locked
fi

# wasm-bindgen-cli must match the wasm-bindgen crate exactly. Its own lock file names a crate
# version the index lacks, so no --locked here.
wbg_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wbg_version" ]; then
  say "installing wasm-bindgen-cli $wbg_version (cold: ~8 min)"
  cargo install wasm-bindgen-cli --version "$wbg_version"
fi

# npm ci when node_modules is missing or was installed from another lock file.
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat node_modules/.edgegate-lock 2>/dev/null || true)" != "$lock_hash" ]; then
  say "installing npm packages (npm ci)"
  npm ci --no-audit --no-fund
  echo "$lock_hash" > node_modules/.edgegate-lock
fi
say "tools ready"
