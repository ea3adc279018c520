#!/usr/bin/env node
// The Registry snapshot (issue 4) in wasm under V8: decode time of a generated snapshot, the
// wasm linear memory the decoded index takes, and the per-request lookups. Targets: decode
// ≤ 100 ms in wasm, ≤ 16 MB, lookup ≤ 1 µs. Then the authorization decision over that snapshot
// (issue 4: ≤ 2 µs native without Cedar, ≤ 50 µs native with 20 Cedar policies; the wasm
// figures are reported beside them). The native figures come from
// `cargo bench -p edgegate-bench --bench snapshot` and `--bench authz`; this runs the same code
// compiled as the worker is (wasm32-unknown-unknown, the workspace's release profile:
// opt-level "s", fat LTO, Cedar's crates at "z").
//
// Builds bench/wasm-snapshot (crate edgegate-wasm-snapshot: plain `extern "C"` exports, no
// wasm-bindgen, no imports) and instantiates it twice from one compiled module:
// - a bench instance: `prepare` generates and encodes the snapshot (seed 42, as the native
//   bench) and keeps the probe keys (the native bench's: every n/1024-th subscription and
//   credential), then decodes, and runs the lookup loops;
// - a fresh instance, like an isolate reading the snapshot from KV: the encoded bytes are
//   copied into it and decoded once. This is the cold decode (the decode code has not run yet,
//   so V8 runs its baseline (Liftoff) code for the whole call, and the memory grows on demand),
//   and its linear memory holds only the bytes and the snapshot, so its growth is what the
//   decode costs (the high-water mark: the index, allocator overhead and decode temporaries).
// - an authorization instance: `authz_prepare` sets up what bench/benches/authz.rs measures
//   (its own generated snapshot, same --n and --seed; the callers and the 5-rule policy; the
//   20 Cedar policies and their caller and request), then the decision loops `authz_rules`
//   (`authorize/5-rules/100k-snapshot`) and `authz_abac` (`authorize/abac-20-policies`).
// Times with performance.now(); lookups as one wasm call of --iterations lookups (default
// 1,000,000), decisions as one call of --rules-iterations (default 500,000) or
// --abac-iterations (default 20,000) decisions; median of 5 calls after a warm-up call.
//
//   node bench/load/snapshot-wasm.mjs [--n 100000] [--seed 42] [--decodes 10]
//                                     [--iterations 1000000] [--rules-iterations 500000]
//                                     [--abac-iterations 20000] [--authz-only] [--no-build]
// or through env: BENCH_SNAPSHOT_N, BENCH_SNAPSHOT_SEED, BENCH_SNAPSHOT_DECODES,
// BENCH_SNAPSHOT_ITERATIONS, BENCH_AUTHZ_RULES_ITERATIONS, BENCH_AUTHZ_ABAC_ITERATIONS.
// --authz-only skips the decode, memory and lookup figures. Prints a report, then the figures
// as one JSON line.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ROOT, runMain, parseBenchArgs, numFlag, median, sha256, git, fmt } from "./lib.mjs";

const CRATE = "edgegate-wasm-snapshot";
const WASM = path.join(ROOT, "target/wasm32-unknown-unknown/release/edgegate_wasm_snapshot.wasm");
const NO_RESULT = 0xffff_ffff; // u32::MAX: the export had no snapshot or no probes

function options() {
  const values = parseBenchArgs(["help"], {
    n: { type: "string" },
    seed: { type: "string" },
    decodes: { type: "string" },
    iterations: { type: "string" },
    "rules-iterations": { type: "string" },
    "abac-iterations": { type: "string" },
    "authz-only": { type: "boolean" },
    "no-build": { type: "boolean" },
  });
  if (values.help) {
    console.log(
      "usage: node bench/load/snapshot-wasm.mjs [--n subscriptions] [--seed s] [--decodes n] [--iterations n]\n" +
        "                                         [--rules-iterations n] [--abac-iterations n] [--authz-only] [--no-build]\n" +
        "env: BENCH_SNAPSHOT_N BENCH_SNAPSHOT_SEED BENCH_SNAPSHOT_DECODES BENCH_SNAPSHOT_ITERATIONS\n" +
        "     BENCH_AUTHZ_RULES_ITERATIONS BENCH_AUTHZ_ABAC_ITERATIONS\n" +
        "--authz-only runs only the authorization decisions (no decode, memory or lookup figures)\n" +
        "--no-build uses the existing target/wasm32-unknown-unknown/release/edgegate_wasm_snapshot.wasm",
    );
    process.exit(0);
  }
  return {
    n: Math.round(numFlag(values, "n", "BENCH_SNAPSHOT_N", 100_000, 1, 2_000_000)),
    seed: Math.round(numFlag(values, "seed", "BENCH_SNAPSHOT_SEED", 42, 0, 0xffff_ffff)),
    decodes: Math.round(numFlag(values, "decodes", "BENCH_SNAPSHOT_DECODES", 10, 1, 1000)),
    iterations: Math.round(numFlag(values, "iterations", "BENCH_SNAPSHOT_ITERATIONS", 1_000_000, 1000, 100_000_000)),
    rulesIterations: Math.round(numFlag(values, "rules-iterations", "BENCH_AUTHZ_RULES_ITERATIONS", 500_000, 100, 100_000_000)),
    abacIterations: Math.round(numFlag(values, "abac-iterations", "BENCH_AUTHZ_ABAC_ITERATIONS", 20_000, 10, 10_000_000)),
    authzOnly: Boolean(values["authz-only"]),
    build: !values["no-build"],
  };
}

function build() {
  console.log(`building ${CRATE} (cargo build --release --target wasm32-unknown-unknown) …`);
  const env = { ...process.env, PATH: `${path.join(process.env.HOME ?? "", ".cargo/bin")}:${process.env.PATH}` };
  const r = spawnSync("cargo", ["build", "--release", "-p", CRATE, "--target", "wasm32-unknown-unknown"], {
    cwd: ROOT, env, stdio: ["ignore", "inherit", "inherit"], timeout: 30 * 60_000,
  });
  if (r.status !== 0) throw new Error(`cargo build of ${CRATE} failed (${r.error?.message ?? r.status ?? r.signal})`);
}

/** An instance of `module` (no imports) → its exports. */
const instantiate = (module) => new WebAssembly.Instance(module, {}).exports;

/** `f()` timed with performance.now() → [result, ms]. */
function timed(f) {
  const t0 = performance.now();
  const result = f();
  return [result, performance.now() - t0];
}

const mb = (bytes) => `${fmt(bytes / 1e6, 1)} MB`;

/** Decodes in `wasm` (its kept bytes), timed; throws if they do not decode. → ms. */
function decode(wasm, what) {
  const [ok, ms] = timed(() => wasm.decode_once());
  if (ok !== 1) throw new Error(`${what}: the snapshot did not decode`);
  return ms;
}

/**
 * ns per iteration (lookup, decision) of export `name` of `wasm`: one warm-up call of
 * iterations/10, then the median of 5 calls of `iterations`. `check(result, iterations)`
 * validates each call's checksum.
 */
function perIterationNs(wasm, name, iterations, check) {
  const call = (k) => {
    const result = wasm[name](k);
    if (result === NO_RESULT || !check(result, k)) throw new Error(`${name}(${k}) returned ${result}`);
  };
  call(Math.max(1, Math.round(iterations / 10)));
  const runs = Array.from({ length: 5 }, () => (timed(() => call(iterations))[1] * 1e6) / iterations);
  return { median: median(runs), min: Math.min(...runs), max: Math.max(...runs) };
}

/**
 * The authorization decisions in a new instance of `module`: the fixtures of
 * bench/benches/authz.rs (`authz_prepare`), then µs per decision of the 5-rule policy and of the
 * 20 Cedar policies.
 */
function benchAuthz(module, opt) {
  const wasm = instantiate(module);
  const [allowed, prepareMs] = timed(() => wasm.authz_prepare(opt.n, opt.seed));
  if (allowed === NO_RESULT) throw new Error("authz_prepare failed (policies, or the checks of the Cedar caller)");
  const callers = wasm.authz_caller_count();
  if (!(allowed > 0 && allowed <= callers)) throw new Error(`authz_prepare: ${allowed} of ${callers} callers allowed`);
  const us = (r) => ({ median: r.median / 1000, min: r.min / 1000, max: r.max / 1000 });
  return {
    callers, allowed, prepareMs,
    rules: us(perIterationNs(wasm, "authz_rules", opt.rulesIterations, (ok, k) => ok > 0 && ok <= k)),
    abac: us(perIterationNs(wasm, "authz_abac", opt.abacIterations, (ok, k) => ok === k)),
  };
}

function printAuthz(a, opt) {
  console.log(
    `\nauthorization decision, µs per decision, median of 5 calls (min–max); ${fmt(a.allowed)} of ${fmt(a.callers)} callers ` +
      `allowed by the 5 rules (setup ${fmt(a.prepareMs)} ms, not a target)`,
  );
  const rows = [
    [`5 rules, ${fmt(opt.n)}-subscription snapshot (native target ≤ 2 µs), 5 × ${fmt(opt.rulesIterations)}`, a.rules, 3],
    [`20 Cedar policies (native target ≤ 50 µs), 5 × ${fmt(opt.abacIterations)}`, a.abac, 2],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, v, d] of rows) console.log(`  ${label.padEnd(width)}  ${fmt(v.median, d).padStart(7)} µs  (${fmt(v.min, d)}–${fmt(v.max, d)})`);
}

async function main() {
  const opt = options();
  if (opt.build) build();
  if (!fs.existsSync(WASM)) throw new Error(`no ${path.relative(ROOT, WASM)} (run without --no-build)`);
  const wasmBytes = fs.readFileSync(WASM);
  const env = {
    node: process.version, v8: process.versions.v8, cpus: os.cpus().length,
    loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)), gitHead: git(["rev-parse", "--short", "HEAD"]),
  };
  console.log(
    `${path.basename(WASM)}: ${fmt(wasmBytes.length)} bytes (sha256 ${sha256(WASM)}…), node ${env.node} (V8 ${env.v8}), ` +
      `${env.cpus} CPUs, load average at start ${env.loadavgAtStart.join(" ")}`,
  );
  const [module, compileMs] = timed(() => new WebAssembly.Module(wasmBytes));
  if (WebAssembly.Module.imports(module).length) throw new Error(`the module has imports: ${JSON.stringify(WebAssembly.Module.imports(module))}`);
  const round = (x, d = 2) => +x.toFixed(d);
  const authzJson = (a) => ({
    callers: a.callers, allowed: a.allowed, prepareMs: round(a.prepareMs),
    rulesIterations: opt.rulesIterations, abacIterations: opt.abacIterations,
    us: { rules5: round(a.rules.median, 3), abac20: round(a.abac.median, 2) },
    usMin: { rules5: round(a.rules.min, 3), abac20: round(a.abac.min, 2) },
  });

  if (opt.authzOnly) {
    const authz = benchAuthz(module, opt);
    console.log(`\nsnapshot: ${fmt(opt.n)} subscriptions (seed ${opt.seed}); module compile ${fmt(compileMs, 1)} ms`);
    printAuthz(authz, opt);
    const result = { n: opt.n, seed: opt.seed, wasmBytes: wasmBytes.length, authz: authzJson(authz), compileMs: round(compileMs), env };
    console.log(`\nJSON: ${JSON.stringify(result)}`);
    return;
  }

  // Bench instance: generate + encode, probes.
  const bench = instantiate(module);
  const benchMem = { beforePrepare: bench.memory.buffer.byteLength };
  const [encodedBytes, prepareMs] = timed(() => bench.prepare(opt.n, opt.seed));
  benchMem.afterPrepare = bench.memory.buffer.byteLength;

  // Fresh instance: the encoded bytes copied in, one (cold) decode.
  const fresh = instantiate(module);
  const freshMem = { beforeLoad: fresh.memory.buffer.byteLength };
  const dst = fresh.input_alloc(encodedBytes);
  new Uint8Array(fresh.memory.buffer, dst, encodedBytes).set(new Uint8Array(bench.memory.buffer, bench.bytes_ptr(), bench.bytes_len()));
  freshMem.afterLoad = fresh.memory.buffer.byteLength;
  const coldMs = decode(fresh, "fresh instance");
  freshMem.afterDecode = fresh.memory.buffer.byteLength;
  const freshMemoryBytes = fresh.memory_bytes();
  const subscriptions = fresh.subscription_count();
  if (subscriptions !== opt.n) throw new Error(`decoded ${subscriptions} subscriptions, expected ${opt.n}`);

  // Bench instance: one decode, then --decodes more (each drops the previous snapshot first).
  const firstMs = decode(bench, "bench instance");
  benchMem.afterFirstDecode = bench.memory.buffer.byteLength;
  const runs = Array.from({ length: opt.decodes }, () => decode(bench, "bench instance"));
  benchMem.afterDecodes = bench.memory.buffer.byteLength;
  const memoryBytes = bench.memory_bytes();
  if (memoryBytes !== freshMemoryBytes) throw new Error(`memory_bytes() differs: ${memoryBytes} vs ${freshMemoryBytes}`);

  const lookupNs = {
    subscriptionsForHit: perIterationNs(bench, "lookups", opt.iterations, (sum) => sum > 0),
    subscriptionsForMiss: perIterationNs(bench, "lookups_miss", opt.iterations, (sum) => sum === 0),
    credentialHit: perIterationNs(bench, "lookups_credential", opt.iterations, (found, k) => found === k),
    applicationHit: perIterationNs(bench, "lookups_application", opt.iterations, (sum, k) => sum > 0 && sum % k === 0),
  };
  const authz = benchAuthz(module, opt);

  const decodeMs = { cold: coldMs, firstInBenchInstance: firstMs, median: median(runs), min: Math.min(...runs), max: Math.max(...runs), runs };
  console.log(
    `\nsnapshot: ${fmt(opt.n)} subscriptions (seed ${opt.seed}), ${fmt(encodedBytes)} bytes encoded; ` +
      `module compile ${fmt(compileMs, 1)} ms, generate + encode ${fmt(prepareMs)} ms (not a target)`,
  );
  console.log("\ndecode (target ≤ 100 ms)");
  console.log(`  cold, fresh instance (first decode in the process)  ${fmt(coldMs, 1)} ms`);
  console.log(`  first decode in the bench instance                  ${fmt(firstMs, 1)} ms`);
  console.log(`  ${opt.decodes} further decodes: median ${fmt(decodeMs.median, 1)} ms, min ${fmt(decodeMs.min, 1)}, max ${fmt(decodeMs.max, 1)}`);
  console.log(`    (${runs.map((x) => fmt(x, 1)).join(" ")})`);

  console.log("\nmemory (target ≤ 16 MB)");
  console.log(`  memory_bytes() (heap bytes the decoded index holds)  ${fmt(memoryBytes)} bytes = ${mb(memoryBytes)} (${fmt(memoryBytes / opt.n)} per subscription)`);
  console.log(
    `  fresh instance, memory.buffer.byteLength: ${mb(freshMem.beforeLoad)} at start, ${mb(freshMem.afterLoad)} with the encoded bytes, ` +
      `${mb(freshMem.afterDecode)} after the decode (+${mb(freshMem.afterDecode - freshMem.afterLoad)}: index, allocator overhead, decode temporaries; high-water)`,
  );
  console.log(
    `  bench instance, memory.buffer.byteLength: ${mb(benchMem.beforePrepare)} before prepare, ${mb(benchMem.afterPrepare)} after ` +
      `(the generated document, freed), ${mb(benchMem.afterFirstDecode)} after the first decode, ${mb(benchMem.afterDecodes)} after ${opt.decodes} more`,
  );

  console.log(`\nlookups (target ≤ 1 µs), ns per lookup, median of 5 × ${fmt(opt.iterations)} (min–max)`);
  const label = { subscriptionsForHit: "subscriptions_for, hit", subscriptionsForMiss: "subscriptions_for, miss", credentialHit: "credential, hit", applicationHit: "application, hit" };
  for (const [k, v] of Object.entries(lookupNs)) console.log(`  ${label[k].padEnd(24)} ${fmt(v.median, 1).padStart(7)} ns  (${fmt(v.min, 1)}–${fmt(v.max, 1)})`);
  printAuthz(authz, opt);

  const result = {
    n: opt.n, seed: opt.seed, encodedBytes, wasmBytes: wasmBytes.length,
    decodeMs: { cold: round(coldMs), firstInBenchInstance: round(firstMs), median: round(decodeMs.median), min: round(decodeMs.min), max: round(decodeMs.max) },
    memoryBytes, freshInstanceMemory: freshMem, benchInstanceMemory: benchMem,
    lookupNs: Object.fromEntries(Object.entries(lookupNs).map(([k, v]) => [k, round(v.median, 1)])),
    authz: authzJson(authz),
    compileMs: round(compileMs), prepareMs: round(prepareMs), env,
  };
  console.log(`\nJSON: ${JSON.stringify(result)}`);
}

await runMain(main);
