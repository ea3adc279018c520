#!/usr/bin/env bash
# Builds the Rust worker into worker/build/ with no downloads: worker-build is told to use the
# installed wasm-bindgen, npm's binaryen wasm-opt and wrangler's esbuild (TOOLCHAIN.md).
# Usage: scripts/build-worker.sh [--dev]   (default: release)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="--release"
[ "${1:-}" = "--dev" ] && mode="--dev"
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/@esbuild/linux-x64/bin/esbuild}"
export WRANGLER_SEND_METRICS=false
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root/worker"
exec worker-build "$mode"
