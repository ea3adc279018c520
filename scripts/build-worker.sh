#!/usr/bin/env bash
# Builds the Rust worker into worker/build/ with no downloads: worker-build is told to use the
# installed wasm-bindgen, npm's binaryen wasm-opt and wrangler's esbuild (TOOLCHAIN.md).
# Usage: scripts/build-worker.sh [--dev] [worker-build options...]
#   e.g. scripts/build-worker.sh --out-dir build-wasm-crypto --features wasm-crypto (the benchmark's
#   in-wasm verification variant). Default: a release build into worker/build.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode="--release"
if [ "${1:-}" = "--dev" ]; then mode="--dev"; shift; fi
export WASM_BINDGEN_BIN="${WASM_BINDGEN_BIN:-wasm-bindgen}"
export WASM_OPT_BIN="${WASM_OPT_BIN:-$root/node_modules/.bin/wasm-opt}"
export ESBUILD_BIN="${ESBUILD_BIN:-$root/node_modules/@esbuild/linux-x64/bin/esbuild}"
export WRANGLER_SEND_METRICS=false
export PATH="$HOME/.cargo/bin:$PATH"
cd "$root/worker"
exec worker-build "$mode" "$@"
