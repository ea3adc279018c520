#!/usr/bin/env bash
# Builds the Spin test host (spin-host/, wasmtime 48.0.8), its probe component and the edgegate
# Spin component (spin/) its gateway tests run, and installs
# redis-server when it is missing and apt-get can install it. Skips what is already there.
#
# The host is its own workspace with its own Cargo.lock and target dir (target/spin-host, or
# $SPIN_HOST_TARGET_DIR), so the gateway's build never compiles wasmtime. It builds niced.
# Cold, measured on the shared 2-core machine under a load average of 7-10 (other builds):
#   host: 17 min wall, 9.2 min CPU (was 21 min wall, 10.8 min CPU before the host dropped
#     wasmtime's cache/addr2line/pooling, wasi p1 and rustls; cranelift-codegen alone is ~1/4);
#     on an idle 2-core runner roughly CPU/2 plus the cranelift-codegen tail (estimate: ~6 min);
#   the edgegate component (spin/): under 2.5 min CPU (8 min wall under that load; the whole
#     test run, both component builds included, used 2.6 min CPU);
#   the probe: built into the component's target dir, it reuses its dependencies: 6 s CPU;
#   the host's test binaries afterwards (cargo test --release --no-run): 1.4 min CPU.
# When nothing changed since the last complete run: no cargo call, under a second.
#
# Prints the host binary's path on the last line of stdout. Exit status 3 (and a line starting
# with SKIPPED on stderr): the host cannot be built on this machine (a Rust older than
# wasmtime 48's 1.95); callers skip the Spin tests and say so.
#
# SPIN_HOST_PROFILE: the host's cargo profile, `release` (default, for benchmarks) or
# `test-host` (no optimization: about half the CPU; what scripts/test.sh builds).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PATH="$HOME/.cargo/bin:$PATH"
say() { printf '[ensure-spin-host] %s\n' "$*" >&2; }

target="${SPIN_HOST_TARGET_DIR:-$root/target/spin-host}"
profile="${SPIN_HOST_PROFILE:-release}"

# wasmtime 48 declares rust-version 1.95 (spin-host/Cargo.toml).
rustc_minor="$(rustc -V | sed -E 's/^rustc 1\.([0-9]+).*/\1/')"
if ! [ "$rustc_minor" -ge 95 ] 2>/dev/null; then
  printf 'SKIPPED: the Spin test host needs Rust >= 1.95 (wasmtime 48); this is %s\n' "$(rustc -V)" >&2
  exit 3
fi

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

# Fast path: nothing under the three crates' sources changed since the last complete run with
# this toolchain, and all three artifacts are there: no cargo at all (well under a second).
components="$target/edgegate-spin"
host_bin="$target/$profile/edgegate-spin-host"
artifacts=("$host_bin" "$components/wasm32-wasip2/release/edgegate_spin.wasm"
  "$components/wasm32-wasip2/release/spin_probe.wasm")
stamp="$target/.ensure-spin-host.stamp"
toolchain="$(rustc -V) $(cargo -V) $profile"
inputs=(spin-host spin shared)
# Starts the host once per component so that its compile cache (component-cache/ beside the
# binary) holds the compiled component before tests start hosts in parallel: an unoptimized
# host (test-host profile) takes ~45 s of cranelift for the edgegate component, a cached
# start ~0.1 s.
warm() {
  local bin="$1" wasm out pid i
  for wasm in "${@:2}"; do
    out="$(mktemp)"
    "$bin" --component "$wasm" --kv-store default >"$out" 2>&1 &
    pid=$!
    for i in $(seq 3000); do
      grep -q '"http"' "$out" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if ! grep -q '"http"' "$out"; then
      say "the host did not start with $wasm:"; cat "$out" >&2
      kill "$pid" 2>/dev/null || true; rm -f "$out"; return 1
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$out"
  done
}

fresh=1
for a in "${artifacts[@]}"; do [ -f "$a" ] || fresh=0; done
if [ "$fresh" = 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$toolchain" ] \
  && [ -z "$(find "${inputs[@]}" -path '*/target' -prune -o -newer "$stamp" -print -quit)" ]; then
  say "up to date (no source newer than $stamp)"
  warm "$host_bin" "${artifacts[@]:1}"
  echo "$host_bin"
  exit 0
fi

start=$(date +%s)
# Stamped before building: an edit made while cargo runs is seen by the next run.
mkdir -p "$target"
printf '%s\n' "$toolchain" > "$stamp.new"
# The components build without RUSTFLAGS, exactly as the tests build them
# (spin-host/tests/support/mod.rs), so neither invalidates the other's fingerprints.
say "building the host (profile $profile) into $target"
CARGO_TARGET_DIR="$target" nice -n 15 cargo build --profile "$profile" --locked \
  --manifest-path spin-host/Cargo.toml >&2
say "building the edgegate Spin component (wasm32-wasip2) into $components"
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR="$components" nice -n 15 \
  cargo build --release --locked --target wasm32-wasip2 --manifest-path spin/Cargo.toml >&2
say "building the probe component (same target dir: reuses the component's dependencies)"
env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS CARGO_TARGET_DIR="$components" nice -n 15 \
  cargo build --release --locked --target wasm32-wasip2 \
  --manifest-path spin-host/tests/fixtures/probe/Cargo.toml >&2
say "compiling the components once into the host's compile cache"
warm "$host_bin" "${artifacts[@]:1}"
mv "$stamp.new" "$stamp"
say "ready in $(( $(date +%s) - start )) s"
echo "$host_bin"
