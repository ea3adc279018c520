// Cedar (ABAC, issue 4): what the `cedar` cargo feature costs in bundle size and in a cold
// isolate's first request.
//
//   node bench/load/cold-start.mjs [--runs 5] [--steady 50] [--warm 1000] [--no-wrangler] [--build] [--out dir]
//
// Two builds: `worker/build` (default features, Cedar compiled in) and `worker/build-nocedar`
// (`scripts/build-worker.sh --out-dir build-nocedar --no-default-features`), each built first
// only if missing (or with --build), then copied into bench/out/cold-start-work/ (a concurrent
// rebuild cannot change what is measured). For each: the size of index_bg.wasm and index.js
// (raw and GNU gzip -9) and, unless --no-wrangler, wrangler's own "Total Upload … / gzip …" from
// `wrangler deploy --dry-run` (offline; a temporary copy of the committed wrangler.toml outside
// the repo with `main` pointing at the copy's worker/shim.mjs and without the [build] command,
// so nothing is rebuilt).
//
// Then, per combination, `--runs` times, interleaved, a fresh Miniflare (the options of
// tests/support/gateway.mjs startGateway, on the copied build) and the CPU of its workerd
// process (per thread from /proc/<pid>/task/*/schedstat, ns; cross-check: utime+stime of
// /proc/<pid>/stat), split into the event-loop thread that runs the isolates ("main") and V8's
// worker threads ("V8 bg": background TurboFan compiles, GC helpers). Each reading is taken once
// workerd is idle again, so work a request leaves running in the background is charged to it:
//   after `mf.ready` (startup: workerd boot, Miniflare's internal workers, loading the worker:
//     the wasm module is decoded and index.js instantiates it at top level; V8 compiles wasm
//     functions lazily, on first call),
//   after seeding KV (config pointer + document, the API-key record) = "before",
//   after the first request (an API-key GET the config allows), after a second one, after
//   `--steady` more (sequential, keep-alive), and after `--warm` more again. The `--steady`
//   window still pays much of V8's tier-up; the `--warm` one is closer to steady state.
//   Sequential requests under Miniflare cost ~0.5 ms of workerd CPU even for a trivial JS
//   worker, so the per-request CPU of a loaded gateway comes from run.mjs/auth.mjs.
// Combinations: cedar × plain (API-key route, no authorization), cedar × abac (the same route
// with `authorization.abac`, 21 Cedar policies), nocedar × plain, nocedar × abac (refused by
// design: 503 no_config and a config_rejected event naming Cedar; checked), and a baseline: the
// JS pass-through worker (passthrough-worker.mjs) under the same Miniflare, to show what a cold
// start costs without edgegate. One unmeasured start per build first (page cache, JIT of node).
//
// Output: a table on stdout and bench/out/cold-start-<time>.json (also cold-start-latest.json).
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { Miniflare } from "miniflare";
import {
  ROOT, HERE, BUILD, COMPAT_DATE, REQUEST_PATH, BACKEND_BODY, children, runMain, boundRun, parseBenchArgs, numOption,
  outDirOption, ensureWorkerBuild, startBackend, CLK_TCK, median, sleep, withTimeout, sha256, git, benchEnv,
  envLine, fmt, table, writeResult, cpuReading, cpuDelta, settledReading, workerdChildren, snapshotBuild, wranglerSize,
} from "./lib.mjs";
import { LogCapture } from "../../tests/support/gateway.mjs";

const BUILD_NOCEDAR = path.join(ROOT, "worker/build-nocedar");
const BUILDS = {
  cedar: { dir: BUILD, args: [] },
  nocedar: { dir: BUILD_NOCEDAR, args: ["--out-dir", "build-nocedar", "--no-default-features"] },
};
const API_KEY = "bench-cold-start-key-acme";
const CREDENTIAL_KEY = `credential:apikey:${createHash("sha256").update(API_KEY).digest("hex")}`;
const CREDENTIAL = JSON.stringify({ consumer_id: "acme", application_id: "acme-web", status: "active" });
// As wrangler.toml: the gateway re-reads the config pointer at most every 5 s, so the steady
// requests read no KV.
const REFRESH_MS = "5000";

// 21 policies: the permit that lets the measured request through, 16 permits for other APIs and
// callers, 4 forbids (none applies to the measured request).
export const ABAC_POLICIES = [
  `@id("acme-read")
permit(principal, action in [Edgegate::Action::"GET", Edgegate::Action::"HEAD"], resource)
when { principal.consumer == "acme" };`,
  ...Array.from({ length: 16 }, (_, i) => {
    const n = i + 1;
    return n % 2
      ? `@id("api${n}-partner-read")
permit(principal, action in [Edgegate::Action::"GET", Edgegate::Action::"HEAD"], resource)
when { resource.api == "api${n}" && principal.consumer == "partner${n}" && resource.route == "items-${n}" };`
      : `@id("api${n}-writers")
permit(principal, action, resource)
when { resource.api == "api${n}" && principal.roles.contains("writer") && principal.scopes.contains("api${n}:write") };`;
  }),
  `@id("embargo")
forbid(principal, action, resource)
when { context has country && ["KP", "IR", "SY", "CU"].contains(context.country) };`,
  `@id("blocked-network")
forbid(principal, action, resource)
when { context has ip && context.ip.isInRange(ip("192.0.2.0/24")) };`,
  `@id("tenant-match")
forbid(principal, action, resource)
when { context.headers has "x-tenant" && context.headers["x-tenant"] != principal.application };`,
  `@id("suspended")
forbid(principal, action, resource)
when { principal.consumer == "suspended" || principal.roles.contains("suspended") };`,
].join("\n\n");

/** The gateway config: one API-key route; with `abac`, also the Cedar rule on that route. */
export function coldStartConfig(backendUrl, abac) {
  return {
    pools: { "bench-backend": { instances: [{ url: backendUrl }] } },
    apis: [
      {
        name: "bench",
        base_path: "/bench-api",
        versions: [{ name: "v1", pool: "bench-backend" }],
        routes: [
          {
            name: "get-item",
            methods: ["GET"],
            path: "/items/{id}",
            policies: {
              auth: { accept: ["api_key"], api_key: { header: "x-api-key" } },
              ...(abac && { authorization: { abac: { policies: ABAC_POLICIES, context_headers: ["x-tenant"] } } }),
            },
          },
        ],
      },
    ],
  };
}

// ------------------------------------------------------------------------- one cold start

/**
 * One fresh Miniflare running `scriptPath` (modules under `root`), KV seeded with `kv`, and the
 * sequence of requests; → the CPU deltas and what the gateway answered. `expect`: "ok" (200 and
 * the backend's body) or "no_config" (503 no_config and a config_rejected event naming Cedar).
 */
async function coldStart({ root, scriptPath, kv, bindings, steady, warm, expect, gateway }) {
  const before = new Set(workerdChildren().map((c) => c.pid));
  const logs = new LogCapture();
  const mf = new Miniflare({
    modules: true,
    modulesRoot: root,
    scriptPath,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    cf: false,
    compatibilityDate: COMPAT_DATE,
    kvNamespaces: ["EDGEGATE_CONFIG"],
    bindings,
    host: "127.0.0.1",
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      readline.createInterface({ input: stdout }).on("line", (l) => logs.push(l, "stdout"));
      readline.createInterface({ input: stderr }).on("line", (l) => logs.push(l, "stderr"));
    },
  });
  let entry;
  try {
    const url = await withTimeout(mf.ready, 60_000, "Miniflare start");
    const fresh = workerdChildren().filter((c) => !before.has(c.pid)).sort((a, b) => b.start - a.start);
    if (!fresh.length) throw new Error("no new workerd child process found");
    const pid = fresh[0].pid;
    // Registered with lib.mjs's child registry: ended on error and signals like the others.
    entry = { name: "workerd-miniflare", proc: { pid }, extraPids: [] };
    children.add(entry);
    const cpu0 = await settledReading(pid); // after startup
    const ns = await mf.getKVNamespace("EDGEGATE_CONFIG");
    for (const [k, v] of Object.entries(kv)) await ns.put(k, v);
    const cpu1 = await settledReading(pid); // before the first request
    let n = 0;
    const failures = [];
    const target = new URL(REQUEST_PATH, url).href;
    const one = async () => {
      n += 1;
      const id = `cold-${process.pid}-${Date.now().toString(36)}-${n}`;
      const t0 = performance.now();
      const res = await fetch(target, { headers: { "x-api-key": API_KEY, "x-request-id": id }, signal: AbortSignal.timeout(30_000) });
      const body = await res.text();
      const wallMs = performance.now() - t0;
      // The request is done for workerd once its access line is out (edgegate logs one per
      // request; the JS baseline logs nothing).
      if (gateway) await logs.waitForAccess(id, { timeoutMs: 10_000 });
      const ok = expect === "ok"
        ? res.status === 200 && body === BACKEND_BODY && (!gateway || res.headers.get("x-request-id") === id)
        : res.status === 503 && /"no_config"/.test(body);
      if (!ok) failures.push(`request ${n}: HTTP ${res.status} ${body.slice(0, 200)}`);
      return { status: res.status, body, wallMs };
    };
    // Each reading once the process is idle again (see settledReading).
    const first = await one();
    const cpu2 = await settledReading(pid);
    const second = await one();
    const cpu3 = await settledReading(pid);
    for (let i = 0; i < steady; i++) await one();
    const cpu4 = await settledReading(pid);
    for (let i = 0; i < warm; i++) await one();
    const cpu5 = await settledReading(pid);
    const unsettled = [cpu0, cpu1, cpu2, cpu3, cpu4, cpu5].filter((c) => !c.settled).length;
    if (unsettled) failures.push(`${unsettled} readings taken before workerd was idle (5 s bound)`);
    const rejected = logs.events("config_rejected");
    if (expect === "no_config" && !rejected.some((e) => /cedar/i.test(JSON.stringify(e.errors ?? e)))) {
      failures.push(`no config_rejected event naming Cedar; events: ${JSON.stringify(logs.events()).slice(0, 600)}`);
    }
    if (expect === "ok" && rejected.length) failures.push(`config rejected: ${JSON.stringify(rejected[0]).slice(0, 600)}`);
    return {
      pid,
      startupMs: cpu0.ms, startupMainMs: cpu0.mainMs, startupV8Ms: cpu0.v8Ms, startupStatMs: cpu0.statMs,
      settleMs: { first: cpu2.settleMs, second: cpu3.settleMs, steady: cpu4.settleMs, warm: cpu5.settleMs },
      seedMs: cpuDelta(cpu0, cpu1).ms,
      first: cpuDelta(cpu1, cpu2), second: cpuDelta(cpu2, cpu3),
      steadyTotal: cpuDelta(cpu3, cpu4), steadyUsPerReq: (cpuDelta(cpu3, cpu4).ms * 1000) / steady,
      warmTotal: cpuDelta(cpu4, cpu5), warmUsPerReq: warm ? (cpuDelta(cpu4, cpu5).ms * 1000) / warm : null,
      firstWallMs: first.wallMs, secondWallMs: second.wallMs,
      firstStatus: first.status, firstBody: first.body.slice(0, 300),
      configRejected: rejected.length ? { count: rejected.length, errors: rejected[0].errors } : null,
      failures,
    };
  } catch (e) {
    e.message += `\nworkerd output:\n${logs.dump(20)}`;
    throw e;
  } finally {
    await withTimeout(mf.dispose(), 15_000, "Miniflare dispose").catch((e) => console.error(`dispose: ${e.message}`));
    if (entry) children.delete(entry);
  }
}

// ------------------------------------------------------------------------------------ main

async function main() {
  const values = parseBenchArgs(["out", "help"], {
    runs: { type: "string" },
    steady: { type: "string" },
    warm: { type: "string" },
    "no-wrangler": { type: "boolean" },
    build: { type: "boolean" },
  });
  if (values.help) {
    console.log("node bench/load/cold-start.mjs [--runs 5] [--steady 50] [--warm 1000] [--no-wrangler] [--build] [--out bench/out]");
    return;
  }
  const runs = Math.round(numOption(values.runs, 5, 1, 50, "--runs"));
  const steady = Math.round(numOption(values.steady, 50, 1, 10_000, "--steady"));
  const warm = Math.round(numOption(values.warm, 1000, 0, 100_000, "--warm"));
  const outDir = outDirOption(values);
  const combos = [
    { key: "cedar/plain", build: "cedar", abac: false, expect: "ok" },
    { key: "cedar/abac", build: "cedar", abac: true, expect: "ok" },
    { key: "nocedar/plain", build: "nocedar", abac: false, expect: "ok" },
    { key: "nocedar/abac", build: "nocedar", abac: true, expect: "no_config" },
    { key: "js-baseline", build: null, abac: false, expect: "ok" },
  ];
  boundRun((combos.length * runs + 2) * (3 + (steady + warm) * 0.004) + 20);
  const startedAt = new Date();
  const env = benchEnv();
  console.log(`cold start: ${envLine(env)}; git ${env.gitHead}${env.gitDirty ? " (worker/ or shared/ modified)" : ""}`);
  console.log(`CPU from /proc/<workerd>/task/*/schedstat (ns); cross-check /proc/<pid>/stat utime+stime (CLK_TCK ${CLK_TCK})`);

  // Builds: snapshot, sizes, wrangler's figure.
  const work = path.join(outDir, "cold-start-work");
  const builds = {};
  for (const [name, b] of Object.entries(BUILDS)) {
    ensureWorkerBuild(b.dir, b.args, { force: !!values.build });
    builds[name] = snapshotBuild(b.dir, path.join(work, name));
    // Commits after the build that touch what it is built from (it may be stale; --build).
    const later = git(["log", `--since=${builds[name].builtAt}`, "--format=%h", "--", "worker/src", "worker/Cargo.toml", "shared", "Cargo.toml", "Cargo.lock"]);
    if (later) console.log(`note: commits after ${builds[name].dir} was built (${builds[name].builtAt}) touch its sources (${later.split("\n").join(" ")}): if they changed the worker, rerun with --build`);
  }
  if (!values["no-wrangler"]) {
    const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "edgegate-cold-start-wrangler-"));
    try {
      for (const [name, b] of Object.entries(builds)) b.wrangler = wranglerSize(b.shim, path.join(tmpRoot, name));
    } finally {
      fs.rmSync(tmpRoot, { recursive: true, force: true });
    }
  }
  console.log(`\nbundle sizes (bytes; ${builds.cedar.wasm.gzipTool}):`);
  console.log(table(
    ["build", "wasm raw", "wasm gzip -9", "index.js raw", "index.js gzip -9", "wrangler Total Upload", "wrangler gzip", "wasm sha256"],
    Object.entries(builds).map(([name, b]) => [
      `${name} (${b.dir})`, fmt(b.wasm.raw), fmt(b.wasm.gzip9), fmt(b.indexJs.raw), fmt(b.indexJs.gzip9),
      b.wrangler?.totalKiB ? `${fmt(b.wrangler.totalKiB, 2)} KiB` : "-", b.wrangler?.gzipKiB ? `${fmt(b.wrangler.gzipKiB, 2)} KiB` : "-", b.wasmSha256,
    ]),
    ["l"],
  ));
  for (const b of Object.values(builds)) if (b.wrangler?.error) console.log(`wrangler (${b.dir}): ${b.wrangler.error}`);

  const backend = await startBackend(1);
  const baselineRoot = path.join(work, "js-baseline");
  fs.rmSync(baselineRoot, { recursive: true, force: true });
  fs.mkdirSync(baselineRoot, { recursive: true });
  fs.copyFileSync(path.join(HERE, "passthrough-worker.mjs"), path.join(baselineRoot, "passthrough-worker.mjs"));
  const setup = (c) => {
    if (!c.build) {
      return { root: baselineRoot, scriptPath: path.join(baselineRoot, "passthrough-worker.mjs"), kv: {}, bindings: { BACKEND: backend.url }, gateway: false };
    }
    const config = JSON.stringify(coldStartConfig(backend.url, c.abac));
    return {
      root: builds[c.build].root,
      scriptPath: builds[c.build].shim,
      kv: { [CREDENTIAL_KEY]: CREDENTIAL, "config:version:cold-1": config, "config:active": "cold-1" },
      bindings: { EDGEGATE_CONFIG_REFRESH_MS: REFRESH_MS },
      gateway: true,
    };
  };

  console.log(`\nunmeasured start per build …`);
  for (const c of [combos[0], combos[2]]) await coldStart({ ...setup(c), steady: 2, warm: 0, expect: c.expect });

  const results = [];
  for (let run = 1; run <= runs; run++) {
    // Interleaved, the order rotated per run.
    const order = combos.map((_, i) => combos[(i + run - 1) % combos.length]);
    for (const c of order) {
      const r = await coldStart({ ...setup(c), steady, warm, expect: c.expect });
      results.push({ run, combo: c.key, ...r });
      console.log(
        `run ${run} ${c.key.padEnd(13)} startup ${fmt(r.startupMs, 1).padStart(6)} ms  first ${fmt(r.first.ms, 1).padStart(5)} ms` +
          ` (main ${fmt(r.first.mainMs, 1)}, V8 ${fmt(r.first.v8Ms, 1)}; stat ${fmt(r.first.statMs)})  second ${fmt(r.second.ms, 2).padStart(5)} ms` +
          `  next ${steady} ${fmt(r.steadyUsPerReq).padStart(5)} µs/req` +
          (warm ? `  next ${warm} ${fmt(r.warmUsPerReq).padStart(5)} µs/req` : "") +
          `  first HTTP ${r.firstStatus} in ${fmt(r.firstWallMs, 1)} ms` +
          (r.first.threads || r.second.threads || r.steadyTotal.threads || r.warmTotal.threads ? "  (thread count changed)" : "") +
          (r.failures.length ? `  FAILED: ${r.failures.join("; ")}` : ""),
      );
    }
  }

  const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
  const summary = {};
  for (const c of combos) {
    const mine = results.filter((r) => r.combo === c.key);
    summary[c.key] = {
      build: c.build ? builds[c.build].dir : "bench/load/passthrough-worker.mjs",
      config: c.build ? (c.abac ? "abac (21 Cedar policies)" : "plain (API key)") : "-",
      answers: c.expect === "ok" ? "200" : "503 no_config",
      runs: mine.length,
      failures: mine.reduce((s, r) => s + r.failures.length, 0),
      startupMs: stats(mine.map((r) => r.startupMs)),
      firstMs: stats(mine.map((r) => r.first.ms)),
      firstMainMs: stats(mine.map((r) => r.first.mainMs)),
      firstV8Ms: stats(mine.map((r) => r.first.v8Ms)),
      firstStatMs: stats(mine.map((r) => r.first.statMs)),
      secondMs: stats(mine.map((r) => r.second.ms)),
      secondMainMs: stats(mine.map((r) => r.second.mainMs)),
      steadyUsPerReq: stats(mine.map((r) => r.steadyUsPerReq)),
      steadyMainUsPerReq: stats(mine.map((r) => (r.steadyTotal.mainMs * 1000) / steady)),
      warmUsPerReq: warm ? stats(mine.map((r) => r.warmUsPerReq)) : null,
      warmMainUsPerReq: warm ? stats(mine.map((r) => (r.warmTotal.mainMs * 1000) / warm)) : null,
      firstWallMs: stats(mine.map((r) => r.firstWallMs)),
    };
  }
  const mr = (s, d = 1, scale = 1) => `${fmt(s.median * scale, d)} (${fmt(s.min * scale, d)}–${fmt(s.max * scale, d)})`;
  console.log(`\nworkerd CPU, median (min–max) of ${runs} fresh Miniflare instances each:`);
  console.log(table(
    [
      "combination", "answers", "startup ms", "1st req ms", "1st: main", "1st: V8 bg", "2nd req ms", "2nd: main",
      `next ${steady} µs/req`, `next ${steady}: main`, ...(warm ? [`next ${warm} µs/req`, `next ${warm}: main`] : []), "1st req wall ms",
    ],
    combos.map((c) => {
      const s = summary[c.key];
      return [
        c.key, s.answers, mr(s.startupMs), mr(s.firstMs), mr(s.firstMainMs), mr(s.firstV8Ms), mr(s.secondMs, 2), mr(s.secondMainMs, 2),
        mr(s.steadyUsPerReq, 0), mr(s.steadyMainUsPerReq, 0), ...(warm ? [mr(s.warmUsPerReq, 0), mr(s.warmMainUsPerReq, 0)] : []), mr(s.firstWallMs),
      ];
    }),
    ["l", "l"],
  ));
  const rej = results.find((r) => r.combo === "nocedar/abac")?.configRejected;
  if (rej) console.log(`\nnocedar/abac: config_rejected ${JSON.stringify(rej.errors)}`);
  console.log(`
- startup: workerd boot, Miniflare's own workers, and loading the worker: for edgegate, decoding
  the wasm module and instantiating it (index.js does so at top level), before any request.
  workerd's V8 compiles wasm functions lazily, on their first call. Miniflare's KV seeding is
  not in it.
- 1st request: an API-key GET the config allows. Besides the request it reads the config
  pointer and document from KV and compiles the config (for abac: parses the 21 Cedar policies
  and validates them against the generated schema), reads the API-key record from KV, opens the
  connection, and runs every function on its path for the first time (Liftoff compile of each
  wasm function, JS glue). For nocedar/abac the config is refused: 503 no_config and a
  config_rejected event. "main thread" is workerd's event-loop thread (the worker's isolate,
  and Miniflare's entry worker and KV simulator); "V8 background" is V8's worker threads,
  mostly compiling the hot wasm again with TurboFan (dynamic tiering), which goes on after
  the response: every reading is taken once workerd is idle again.
- 2nd request: the same GET again (config and credential cached in the isolate).
- next ${steady} / next ${warm}: sequential requests after that, CPU (all threads) ÷ count. The first
  window still includes much of V8's tier-up; the second is closer to steady state. All include Miniflare's entry worker in the same workerd process; js-baseline is a
  plain JS pass-through under the same Miniflare.`);
  const failures = Object.values(summary).reduce((s, x) => s + x.failures, 0);
  if (failures) console.log(`WARNING: ${failures} failed checks (see JSON)`);
  const maxDiff = Math.max(...results.map((r) => Math.abs(r.first.ms - r.first.statMs)));
  console.log(`schedstat vs stat (10 ms ticks) on the first request: largest difference ${fmt(maxDiff, 1)} ms`);

  writeResult(outDir, "cold-start", startedAt, {
    startedAt: startedAt.toISOString(),
    env,
    options: { runs, steady, warm, refreshMs: Number(REFRESH_MS) },
    builds: Object.fromEntries(Object.entries(builds).map(([k, b]) => [k, { ...b, shim: undefined, root: undefined }])),
    abacPolicies: ABAC_POLICIES,
    summary,
    results,
  });
  if (failures) throw new Error(`${failures} failed checks`);
}

await runMain(main);
