#!/usr/bin/env node
// Rate limits on Durable Objects (issue 5): what a limit adds to a request, and what one
// counter object serves, in local workerd (`workerd serve`, no wrangler dev in front).
//
//   node bench/load/ratelimit.mjs [--duration 5] [--rounds 3] [--warmup 2] [--connections 8]
//                                 [--hot-connections 32] [--lease 100] [--calls 20000]
//                                 [--storage disk|memory] [--backend-procs 2] [--out bench/out]
//
// One workerd process runs the built worker (worker/build) with the RateCounter Durable Object
// class it exports (SQLite storage on local disk in bench/out/ratelimit-work/do-storage, as
// Miniflare keeps it; `--storage memory`: workerd's in-memory storage), the
// in-memory KV of run.mjs, and a small driver worker (below) bound to the same namespace. The
// gateway config has, on one API, the same GET route several times under other paths:
//   n  /items/{id}          no limits (the baseline)
//   x  /exact/items/{id}    exact mode: one counter round trip per request
//   a  /approx/items/{id}   approximate mode, lease --lease units: a round trip per block
//   s1 s2 s4 s8 /s<k>/items/{id}  exact mode with shards k (the key split over k objects)
// Every limit is a sliding window of 10^12 per hour, keyed per route, so nothing is ever
// denied: the cost measured is the check, not a 429.
//
// Phase 1, added latency: rounds of n, x, a interleaved, each loaded for --duration s by
// autocannon (own process, µs histogram), first sequentially (1 connection), then with
// --connections. Reports p50 and p90 per target (merged histograms), the added p50/p90 of x
// and a over n (pooled, and the median of the per-round differences), and workerd CPU per
// request (the object runs in the same process, so its CPU is included).
// Phase 2, one counter object: rounds of n, s1, s2, s4, s8 at --hot-connections: requests/s
// and CPU per request through the gateway; in the same rounds d0 / d1, the driver worker
// (below) answering each request at once or after one counter call: what one call costs a
// request without the gateway. Then the driver makes --calls counter calls (consume 1) within
// one request, 32 in flight, over 1, 2, 4 or 8 keys (and 1 key with a new stub per call):
// calls/s of the objects themselves. Locally the gateway and every object share one workerd process (its
// JavaScript runs on one thread: workerd util stays ≤ 100% of a core), so sharding cannot add
// capacity here; on Cloudflare each object runs apart from the others and from the workers
// calling it. See bench/load/README.md.
//
// Output: tables on stdout and bench/out/ratelimit-<time>.json (also ratelimit-latest.json).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import {
  BUILD, COMPAT_DATE, BACKEND_BODY, CLK_TCK, runMain, boundRun, parseBenchArgs, numFlag, backendProcsOption, outDirOption,
  benchEnv, envLine, median, startBackend, writeEdgegateWorkerd, capnpString, startWorkerd, startLoadGen, warmUp, runRounds,
  summariseRounds, failed, warnFailed, writeResult, fmt, table, ensureBuild, procCpuMs, retrying, sleep, withTimeout, freePort,
} from "./lib.mjs";

const BIG = 1_000_000_000_000; // per hour: never reached
const SHARDS = [1, 2, 4, 8];
const ITEM = "/items/42";
const API_BASE = "/bench-api/v1";

// ---------------------------------------------------------------------------------- options

function options() {
  const values = parseBenchArgs(["duration", "connections", "rounds", "warmup", "backend-procs", "out", "help"], {
    "hot-connections": { type: "string" },
    lease: { type: "string" },
    calls: { type: "string" },
    storage: { type: "string" },
  });
  if (values.help) {
    console.log(
      "usage: node bench/load/ratelimit.mjs [--duration s] [--rounds n] [--warmup s] [--connections n]\n" +
        "                                    [--hot-connections n] [--lease n] [--calls n] [--storage disk|memory]\n" +
        "                                    [--backend-procs n] [--out dir]\n" +
        "env: BENCH_DURATION BENCH_ROUNDS BENCH_WARMUP BENCH_CONNECTIONS BENCH_HOT_CONNECTIONS BENCH_LEASE BENCH_CALLS\n" +
        "     BENCH_STORAGE BENCH_BACKEND_PROCS BENCH_OUT\n" +
        "--storage: the objects' SQLite on local disk (default, as Miniflare) or in memory",
    );
    process.exit(0);
  }
  return {
    duration: numFlag(values, "duration", "BENCH_DURATION", 5, 1, 600),
    rounds: Math.round(numFlag(values, "rounds", "BENCH_ROUNDS", 3, 1, 50)),
    warmup: numFlag(values, "warmup", "BENCH_WARMUP", 2, 0, 120),
    connections: Math.round(numFlag(values, "connections", "BENCH_CONNECTIONS", 8, 2, 1000)),
    hotConnections: Math.round(numFlag(values, "hot-connections", "BENCH_HOT_CONNECTIONS", 32, 1, 1000)),
    lease: Math.round(numFlag(values, "lease", "BENCH_LEASE", 100, 1, 1_000_000)),
    calls: Math.round(numFlag(values, "calls", "BENCH_CALLS", 20_000, 100, 10_000_000)),
    backendProcs: backendProcsOption(values),
    storage: storageOption(values.storage ?? process.env.BENCH_STORAGE ?? "disk"),
    outDir: outDirOption(values),
  };
}

function storageOption(v) {
  if (v !== "disk" && v !== "memory") throw new Error(`--storage / BENCH_STORAGE: ${v} is not disk or memory`);
  return v;
}

// ------------------------------------------------------------------------- gateway config

const limit = (name, extra = {}) => ({ name, key: "route", algorithm: "sliding_window", limit: BIG, window_s: 3600, ...extra });

function gatewayConfig(backendUrl, lease) {
  const r = (name, prefix, limits) => ({
    name,
    methods: ["GET"],
    path: `${prefix}/items/{id}`,
    ...(limits && { policies: { rate_limits: limits } }),
  });
  return {
    pools: { "bench-backend": { instances: [{ url: backendUrl }] } },
    apis: [
      {
        name: "bench",
        base_path: "/bench-api",
        versions: [{ name: "v1", pool: "bench-backend" }],
        routes: [
          r("get-item", "", null),
          r("exact", "/exact", [limit("bench-exact")]),
          r("approx", "/approx", [limit("bench-approx", { mode: "approximate", lease })]),
          ...SHARDS.map((k) => r(`s${k}`, `/s${k}`, [limit(`bench-s${k}`, { shards: k })])),
        ],
      },
    ],
  };
}

// The driver: GET /?calls=N&c=C&keys=K&prefix=P[&fresh=1] makes N consume calls on the counter
// objects named P|0 … P|K−1 (round robin), C in flight, and answers {calls, ok, failed}; with
// fresh=1 each call gets a new id and stub (idFromName + get), as the gateway does per request.
const DRIVER = `
const algorithm = { kind: "sliding_window", limit: ${BIG}, window_ms: 3600000 };
export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const calls = Number(u.searchParams.get("calls"));
    const inFlight = Number(u.searchParams.get("c"));
    const keys = Number(u.searchParams.get("keys"));
    const prefix = u.searchParams.get("prefix");
    const fresh = u.searchParams.get("fresh") === "1";
    const targets = Array.from({ length: keys }, (_, i) => {
      const key = prefix + "|" + i;
      const body = JSON.stringify({ key, algorithm, op: { kind: "consume", cost: 1 } });
      return { key, stub: env.COUNTERS.get(env.COUNTERS.idFromName(key)), body };
    });
    let next = 0, ok = 0, failed = 0;
    const lane = async () => {
      for (;;) {
        const i = next++;
        if (i >= calls) return;
        const t = targets[i % keys];
        // fresh: a new id and stub for every call, as the gateway makes one per request.
        const stub = fresh ? env.COUNTERS.get(env.COUNTERS.idFromName(t.key)) : t.stub;
        const res = await stub.fetch("https://counter/", { method: "POST", body: t.body });
        const reply = await res.json();
        if (res.status === 200 && reply.granted === 1) ok++;
        else failed++;
      }
    };
    await Promise.all(Array.from({ length: inFlight }, lane));
    return Response.json({ calls, ok, failed });
  },
};
`;

/**
 * The capnp config: edgegate (index.js + index_bg.wasm) with EDGEGATE_COUNTERS → its own
 * RateCounter class (SQLite, local disk), the KV worker of run.mjs, the driver on a second
 * socket at `driverPort` (startWorkerd learns only the first socket's ephemeral port).
 */
function capnp(storageDir, driverPort, storage) {
  return `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = .worker),
    (name = "kv", worker = .kv),
    (name = "driver", worker = .driver),
    (name = "do-disk", disk = (path = ${capnpString(storageDir)}, writable = true)),
    (name = "internet", network = (allow = ["public", "private", "local"])),
  ],
  sockets = [
    (name = "http", address = "127.0.0.1:0", http = (), service = "main"),
    (name = "driver", address = "127.0.0.1:${driverPort}", http = (), service = "driver"),
  ],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "index.js"),
    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),
  ],
  compatibilityDate = ${capnpString(COMPAT_DATE)},
  bindings = [
    (name = "EDGEGATE_CONFIG", kvNamespace = "kv"),
    (name = "EDGEGATE_CONFIG_REFRESH_MS", text = "5000"),
    (name = "EDGEGATE_COUNTERS", durableObjectNamespace = (className = "RateCounter")),
  ],
  durableObjectNamespaces = [
    (className = "RateCounter", uniqueKey = "edgegate-bench-RateCounter", enableSql = true),
  ],
  durableObjectStorage = ${storage === "memory" ? "(inMemory = void)" : '(localDisk = "do-disk")'},
  globalOutbound = "internet",
);
const kv :Workerd.Worker = (
  modules = [
    (name = "kv-worker.mjs", esModule = embed "kv-worker.mjs"),
    (name = "kv-seed.json", json = embed "kv-seed.json"),
  ],
  compatibilityDate = ${capnpString(COMPAT_DATE)},
);
const driver :Workerd.Worker = (
  modules = [(name = "driver.mjs", esModule = embed "driver.mjs")],
  compatibilityDate = ${capnpString(COMPAT_DATE)},
  bindings = [(name = "COUNTERS", durableObjectNamespace = (className = "RateCounter", serviceName = "main"))],
);
`;
}

// ------------------------------------------------------------------------------- checks

/** GET `url` → 200 with the backend's body, through the gateway; `limited`: with RateLimit. */
async function checkTarget(t) {
  return retrying(async () => {
    const res = await fetch(t.url, { signal: AbortSignal.timeout(5000) });
    const body = await res.text();
    if (res.status !== 200 || body !== BACKEND_BODY) throw new Error(`${t.name}: HTTP ${res.status}: ${body.slice(0, 300)}`);
    if (!res.headers.get("x-request-id")) throw new Error(`${t.name}: no x-request-id: not the gateway?`);
    const rl = res.headers.get("ratelimit");
    if (t.limited && !rl) throw new Error(`${t.name}: no RateLimit header: the limit did not run`);
    if (!t.limited && rl) throw new Error(`${t.name}: unexpected RateLimit header ${rl}`);
    return rl;
  });
}

// -------------------------------------------------------------------------------- main

async function main() {
  const opt = options();
  const startedAt = new Date();
  const lat = 3;
  const hot = 3 + SHARDS.length;
  const estimateS =
    2 * opt.rounds * lat * (opt.duration + 0.7) + opt.rounds * hot * (opt.duration + 0.7) +
    (2 * lat + hot) * opt.warmup + opt.rounds * (SHARDS.length + 1) * (opt.calls / 1500) + 20;
  boundRun(estimateS);
  ensureBuild();

  const backend = await startBackend(opt.backendProcs);
  const workDir = path.join(opt.outDir, "ratelimit-work");
  const { build } = writeEdgegateWorkerd(workDir, { gatewayConfig: gatewayConfig(backend.url, opt.lease) });
  const storageDir = path.join(workDir, "do-storage");
  fs.mkdirSync(storageDir, { recursive: true });
  fs.writeFileSync(path.join(workDir, "driver.mjs"), DRIVER);
  const configPath = path.join(workDir, "ratelimit.capnp");
  const driverPort = await freePort();
  fs.writeFileSync(configPath, capnp(storageDir, driverPort, opt.storage));

  const env = { ...benchEnv(), worker: build };
  console.log(
    `rate limits on Durable Objects: latency ${opt.rounds} rounds × 3 targets × ${opt.duration} s at 1 and ${opt.connections} connections; ` +
      `one counter object: ${opt.rounds} rounds × ${hot} targets at ${opt.hotConnections} connections, then ${opt.calls} direct calls × ${SHARDS.length + 1} variants; ` +
      `lease ${opt.lease}; ~${Math.round(estimateS)} s`,
  );
  console.log(envLine(env));

  const wd = await startWorkerd("ratelimit", configPath);
  wd.driverUrl = `http://127.0.0.1:${driverPort}`;
  const loadgen = await startLoadGen();
  const url = (prefix) => `${wd.url}${API_BASE}${prefix}${ITEM}`;
  const latTargets = [
    { key: "n", name: "no limit", url: url(""), workerdPid: wd.pid, limited: false },
    { key: "x", name: "exact", url: url("/exact"), workerdPid: wd.pid, limited: true },
    { key: "a", name: `approximate (lease ${opt.lease})`, url: url("/approx"), workerdPid: wd.pid, limited: true },
  ];
  const driverBody = (calls) => JSON.stringify({ calls, ok: calls, failed: 0 });
  const hotTargets = [
    { key: "n", name: "no limit", url: url(""), workerdPid: wd.pid, limited: false },
    ...SHARDS.map((k) => ({ key: `s${k}`, name: `exact, shards ${k}`, url: url(`/s${k}`), workerdPid: wd.pid, limited: true, shards: k })),
    // Without the gateway: the JS driver answering at once (d0), or after one counter call (d1).
    { key: "d0", name: "driver, no call", url: `${wd.driverUrl}/?calls=0&c=1&keys=1&prefix=d0`, workerdPid: wd.pid, body: driverBody(0) },
    { key: "d1", name: "driver, one call", url: `${wd.driverUrl}/?calls=1&c=1&keys=1&prefix=d1`, workerdPid: wd.pid, body: driverBody(1) },
  ];
  for (const t of [...latTargets, ...hotTargets.slice(1, 1 + SHARDS.length)]) await checkTarget(t);

  // ------------------------------------------------------------ phase 1: added latency
  const phases = {};
  for (const [label, connections] of [["sequential", 1], [`${opt.connections} connections`, opt.connections]]) {
    console.log(`\n== added latency, ${label}`);
    const params = (t, duration) => ({ url: t.url, connections, duration, timeout: 10, expectBody: BACKEND_BODY });
    await warmUp(loadgen, latTargets, params, opt.warmup, (t) => t.key);
    const rounds = await runRounds({
      rounds: opt.rounds, targets: latTargets, loadgen, backendPids: backend.pids, params, duration: opt.duration, pauseMs: 300, pad: [22, 6],
    });
    phases[connections] = { label, connections, rounds, summary: summariseRounds(rounds, latTargets, { cpuByRound: true }), p90: mergedPercentile(rounds, latTargets, 90) };
  }

  // ------------------------------------------------- phase 2: one counter object, sharded
  console.log(`\n== one counter object, ${opt.hotConnections} connections (through the gateway, then the driver alone)`);
  const hotParams = (t, duration) => ({ url: t.url, connections: opt.hotConnections, duration, timeout: 10, expectBody: t.body ?? BACKEND_BODY });
  await warmUp(loadgen, hotTargets, hotParams, opt.warmup, (t) => t.key);
  const hotRounds = await runRounds({
    rounds: opt.rounds, targets: hotTargets, loadgen, backendPids: backend.pids, params: hotParams, duration: opt.duration, pauseMs: 300, pad: [16, 6],
  });
  const hotSummary = summariseRounds(hotRounds, hotTargets, { cpuByRound: true });

  console.log(`\n== counter objects called directly (driver worker, 32 in flight, ${opt.calls} calls per run)`);
  const direct = [];
  await driverRun(wd, { calls: Math.min(opt.calls, 2000), keys: 8, prefix: "warm" });
  const variants = [...SHARDS.map((keys) => ({ keys, fresh: false })), { keys: 1, fresh: true }];
  const variantName = (v) => `${v.keys}${v.fresh ? ", new stub per call" : ""}`;
  for (let round = 1; round <= opt.rounds; round++) {
    for (const v of variants) {
      await sleep(300);
      const r = await driverRun(wd, { calls: opt.calls, keys: v.keys, fresh: v.fresh, prefix: `direct-r${round}-k${v.keys}${v.fresh ? "f" : ""}` });
      direct.push({ round, keys: v.keys, ...r });
      console.log(`round ${round} keys ${variantName(v)}  ${fmt(r.callsPerS)} calls/s  workerd ${fmt(r.workerdCpuUsPerCall, 1)} µs/call${r.failed ? `  FAILED ${r.failed}` : ""}`);
    }
  }
  const directSummary = variants.map(({ keys, fresh }) => {
    const mine = direct.filter((d) => d.keys === keys && d.fresh === fresh);
    return {
      keys,
      fresh,
      callsPerSMedian: median(mine.map((d) => d.callsPerS)),
      callsPerSMin: Math.min(...mine.map((d) => d.callsPerS)),
      callsPerSMax: Math.max(...mine.map((d) => d.callsPerS)),
      workerdCpuUsPerCall: median(mine.map((d) => d.workerdCpuUsPerCall)),
      failed: mine.reduce((s, d) => s + d.failed, 0),
    };
  });

  // --------------------------------------------------------------------------- report
  const added = {};
  for (const ph of Object.values(phases)) {
    const s = ph.summary;
    const perRound = (key, q) =>
      median(Array.from({ length: opt.rounds }, (_, i) => {
        const rec = (k) => ph.rounds.find((x) => x.rec.round === i + 1 && x.rec.target === k).rec;
        return rec(key).latencyMs[q] - rec("n").latencyMs[q];
      }));
    const cpuPerRound = (key) =>
      median(s[key].workerdCpuUsPerReqByRound.map((v, i) => v - s.n.workerdCpuUsPerReqByRound[i]));
    added[ph.connections] = Object.fromEntries(
      ["x", "a"].map((key) => [
        key,
        {
          p50Ms: s[key].p50Ms - s.n.p50Ms,
          p90Ms: ph.p90[key] - ph.p90.n,
          p50MsRoundMedian: perRound(key, "p50"),
          p90MsRoundMedian: perRound(key, "p90"),
          workerdCpuUs: s[key].workerdCpuUsPerReq - s.n.workerdCpuUsPerReq,
          workerdCpuUsRoundMedian: cpuPerRound(key),
        },
      ]),
    );
    console.log(`\nadded latency, ${ph.label} (workerd CPU includes the counter object's)`);
    console.log(
      table(
        ["target", "req/s", "p50 ms", "p90 ms", "p99 ms", "workerd CPU µs/req", "added p50 ms (rounds)", "added p90 ms (rounds)", "added CPU µs (rounds)", "errors"],
        latTargets.map((t) => {
          const x = s[t.key];
          const d = added[ph.connections][t.key];
          const sg = (v, digits) => `${v >= 0 ? "+" : ""}${fmt(v, digits)}`;
          return [
            `${t.key} ${t.name}`, fmt(x.rpsMedian), fmt(x.p50Ms, 3), fmt(ph.p90[t.key], 3), fmt(x.p99Ms, 3), fmt(x.workerdCpuUsPerReq),
            d ? `${sg(d.p50Ms, 3)} (${sg(d.p50MsRoundMedian, 3)})` : "-",
            d ? `${sg(d.p90Ms, 3)} (${sg(d.p90MsRoundMedian, 3)})` : "-",
            d ? `${sg(d.workerdCpuUs, 0)} (${sg(d.workerdCpuUsRoundMedian, 0)})` : "-",
            String(failed(x)),
          ];
        }),
        ["l"],
      ),
    );
  }

  console.log(`\none counter object, ${opt.hotConnections} connections (n, s*: through the gateway; d*: the driver worker, no gateway)`);
  console.log(
    table(
      ["target", "req/s (median)", "min–max", "p50 ms", "p99 ms", "workerd CPU µs/req", "workerd util", "errors"],
      hotTargets.map((t) => {
        const s = hotSummary[t.key];
        return [`${t.key} ${t.name}`, fmt(s.rpsMedian), `${fmt(s.rpsMin)}–${fmt(s.rpsMax)}`, fmt(s.p50Ms, 2), fmt(s.p99Ms, 2), fmt(s.workerdCpuUsPerReq), `${fmt(s.workerdUtilPct)}%`, String(failed(s))];
      }),
      ["l"],
    ),
  );
  console.log(`\ncounter objects called directly (driver worker in the same process, 32 calls in flight)`);
  console.log(
    table(
      ["keys (objects)", "calls/s (median)", "min–max", "workerd CPU µs/call", "failed"],
      directSummary.map((d) => [variantName(d), fmt(d.callsPerSMedian), `${fmt(d.callsPerSMin)}–${fmt(d.callsPerSMax)}`, fmt(d.workerdCpuUsPerCall, 1), String(d.failed)]),
      ["l"],
    ),
  );

  const seq = added[1];
  const targetsMet = {
    exactMedianAddedLe0_5Ms: seq.x.p50MsRoundMedian <= 0.5,
    approximateMedianAddedLe0_05Ms: seq.a.p50MsRoundMedian <= 0.05,
  };
  console.log(
    `\ntargets (sequential, median of per-round differences): exact ≤ 0.5 ms added p50: ${targetsMet.exactMedianAddedLe0_5Ms ? "YES" : "NO"} ` +
      `(${fmt(seq.x.p50MsRoundMedian, 3)} ms); approximate ≤ 0.05 ms: ${targetsMet.approximateMedianAddedLe0_05Ms ? "YES" : "NO"} (${fmt(seq.a.p50MsRoundMedian, 3)} ms)`,
  );
  for (const ph of Object.values(phases)) warnFailed(ph.summary);
  warnFailed(hotSummary);

  const result = {
    kind: "edgegate-ratelimit",
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    method:
      "workerd serve (one process: edgegate + RateCounter objects with SQLite on local disk + in-memory KV + a driver worker); " +
      "autocannon in a child process; node:http cluster backend; interleaved rounds; CPU from /proc/<pid>/stat utime+stime",
    options: { ...opt, outDir: undefined },
    env: { ...env, loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)), clkTck: CLK_TCK },
    gatewayConfig: JSON.parse(fs.readFileSync(path.join(workDir, "gateway-config.json"), "utf8")),
    latency: Object.fromEntries(
      Object.values(phases).map((ph) => [ph.label, { connections: ph.connections, summary: ph.summary, p90Ms: ph.p90, added: added[ph.connections], rounds: ph.rounds.map((x) => x.rec) }]),
    ),
    oneObject: { connections: opt.hotConnections, summary: hotSummary, rounds: hotRounds.map((x) => x.rec) },
    direct: { inFlight: 32, calls: opt.calls, summary: directSummary, runs: direct },
    targetsMet,
  };
  writeResult(opt.outDir, "ratelimit", startedAt, result);
}

/** Per target, the `q` percentile (ms) of its rounds' merged µs histograms. */
function mergedPercentile(rounds, targets, q) {
  const hdr = createRequire(import.meta.url)("hdr-histogram-js");
  const out = {};
  for (const t of targets) {
    const merged = hdr.build({ bitBucketSize: 64, autoResize: true, lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
    for (const x of rounds.filter((r) => r.rec.target === t.key)) merged.add(hdr.decodeFromCompressedBase64(x.hist));
    out[t.key] = merged.getValueAtPercentile(q) / 1000;
  }
  return out;
}

/** One driver run: { calls, ok, failed, ms, callsPerS, workerdCpuUsPerCall }. */
async function driverRun(wd, { calls, keys, prefix, fresh = false }) {
  const cpu0 = procCpuMs(wd.pid);
  const t0 = performance.now();
  const res = await withTimeout(
    fetch(`${wd.driverUrl}/?calls=${calls}&c=32&keys=${keys}&prefix=${encodeURIComponent(prefix)}${fresh ? "&fresh=1" : ""}`),
    120_000,
    `driver run (${calls} calls, ${keys} keys)`,
  );
  const body = await res.json();
  const ms = performance.now() - t0;
  const cpu = procCpuMs(wd.pid) - cpu0;
  if (res.status !== 200) throw new Error(`driver: HTTP ${res.status}`);
  return { ...body, fresh, ms, callsPerS: (1000 * body.calls) / ms, workerdCpuUsPerCall: (cpu * 1000) / body.calls };
}

await runMain(main);
