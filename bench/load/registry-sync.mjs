// Registry sync, admin API and emergency overrides (issue 6): workerd CPU of a cron tick that
// syncs a new signed bundle, of the first request an isolate serves after the switch, of an
// admin call, and what IP blocks add per request; plus the wasm bundle size now.
//
//   node bench/load/registry-sync.mjs [--runs 5] [--sizes config,1000,100000] [--requests 20]
//        [--override-rounds 5] [--override-requests 200] [--blocks 1000] [--admin-calls 200]
//        [--no-wrangler] [--skip-sync] [--skip-overrides] [--out bench/out]
//
// Everything runs under Miniflare (workerd 2026-04-26, the options of tests/support/gateway.mjs)
// on a copy of worker/build (built first only if missing), with per-worker direct sockets
// (`unsafeDirectSockets`: no Miniflare entry worker in front of the measured requests). CPU is
// the workerd process's, all threads, from /proc/<pid>/task/*/schedstat (ns), as in
// cold-start.mjs: each reading once workerd is idle again (< 0.3 ms of CPU over 150 ms), so
// background work a step leaves (V8 tier-up compiles, GC) is charged to it. Measure CPU, not
// wall time: the machine is shared.
//
// 1. Sync (per size, `--runs` fresh Miniflare instances each, sizes interleaved): a mock
//    Registry on 127.0.0.1 (tests/support/registry.mjs: bearer token, ETag / If-None-Match)
//    serving bundles built and signed by the operator CLI (`edgegate bundle` with the snapshot
//    JSON, `edgegate sign` with `edgegate keygen` keys). Sizes: "config" (a config-only bundle),
//    and bundles whose snapshot has 1,000 or 100,000 subscriptions (generated below with the
//    ratios of edgegate_core::snapshot::generate: n/10 consumers, n/4 applications, an API key
//    per application, a client certificate for one in ten, IP lists, metadata …), plus the
//    benchmark's own credential and subscription. Three bundles per size (B0, B1, B2: other
//    label, config and snapshot), and B1 signed a second time with a rotation key (B1': other
//    bytes, so another ETag, same version id). Three workers share one KV namespace: "serve" (takes
//    the requests), "cron" (same script; only its scheduled() runs: another isolate, as on
//    Workers) and "noop" (a JS worker with an empty scheduled(): the floor of firing a cron
//    through Miniflare's proxy). Per run:
//      noop tick (floor); tick 1 syncs B0 (a cold isolate's first tick); serve: the first
//      request on B0 (loads config and snapshot), `--requests` more (V8 tiers up in this
//      window), `--requests` more = "unchanged version"; Registry → B1, tick 2 = **sync of a
//      new bundle**; tick 3 = **304**; Registry → B1', tick 4 = **unchanged** (200, verified,
//      same version: nothing written); Registry → B2, tick 5 = another new bundle in the warm
//      cron isolate; then after the serve isolate's refresh interval its **first request after
//      the switch** (it loads the new config and snapshot from KV; checked: access line on
//      B2's version and, with a snapshot, a snapshot_activated event), a second one, and
//      `--requests` more.
// 2. Admin API and overrides (one Miniflare): "serve" and "blocked", the same worker with their
//    own Control objects (their own Durable Object namespaces), one config (no auth) in KV,
//    EDGEGATE_ADMIN_TOKEN set and the admin rate limit at 100,000/min (every admin call still
//    makes its exact counter call). `--blocks` IP blocks (10.x.y.0/24, none matching the client
//    198.51.100.7, so every request scans them all) are added to "blocked" through
//    POST <prefix>/ip-blocks; EDGEGATE_CONTROL_REFRESH_MS is 600,000 so no background re-read
//    falls into the measured windows (the isolate that served the admin calls has the list).
//    Then `--override-rounds` interleaved rounds of `--override-requests` sequential GETs on
//    each; per round CPU ÷ requests; the difference blocked − serve per round. And GET
//    <prefix>/health: the first call, then `--admin-calls` more.
// 3. Sizes: index_bg.wasm and index.js raw and GNU gzip -9 for worker/build (default
//    features: Cedar) and worker/build-nocedar (--no-default-features; measured only if
//    present), and unless --no-wrangler wrangler's "Total Upload … / gzip …" from
//    `wrangler deploy --dry-run` on a temporary copy of the committed wrangler.toml (main → the
//    copy's shim, no [build]), as cold-start.mjs does.
//
// Output: a report on stdout, bench/out/registry-sync-<time>.json (also registry-sync-latest.json),
// and the summary as one JSON line (the last line).
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { Miniflare } from "miniflare";
import {
  ROOT, BUILD, COMPAT_DATE, REQUEST_PATH, BACKEND_BODY, children, runMain, boundRun, parseBenchArgs, numOption,
  outDirOption, ensureWorkerBuild, startBackend, median, sleep, withTimeout, sha256, git, benchEnv,
  envLine, fmt, table, writeResult, cpuDelta, settledReading, workerdChildren, snapshotBuild, wranglerSize,
} from "./lib.mjs";
import { LogCapture } from "../../tests/support/gateway.mjs";
import { MockRegistry } from "../../tests/support/registry.mjs";
import { versionId } from "../../tests/support/bundle.mjs";

const BUILD_NOCEDAR = path.join(ROOT, "worker/build-nocedar");
const CLI = process.env.EDGEGATE_CLI ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(ROOT, "target"), "debug/edgegate");
const REGISTRY_TOKEN = "bench-registry-token";
const ADMIN_TOKEN = "bench-admin-token-0123456789abcdef";
const ADMIN_PREFIX = "/__edgegate/admin";
const API_KEY = "bench-registry-sync-key";
const API_KEY_DIGEST = createHash("sha256").update(API_KEY).digest("hex");
const CLIENT_IP = "198.51.100.7";
const SERVE_REFRESH_MS = 1000; // the serve isolate re-reads the pointer at most every second

// ------------------------------------------------------------------------------- snapshots

/** SplitMix64 over BigInt (as edgegate_core::snapshot::generate's Rng). */
function rng(seed) {
  let s = BigInt.asUintN(64, BigInt(seed) ^ 0x5eed5eed5eed5eedn);
  const M = (1n << 64n) - 1n;
  const next = () => {
    s = (s + 0x9e3779b97f4a7c15n) & M;
    let z = s;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M;
    return z ^ (z >> 31n);
  };
  const below = (n) => Number(next() % BigInt(Math.max(1, n)));
  const hex = (x, w) => x.toString(16).padStart(w, "0");
  return {
    below,
    chance: (pct) => below(100) < pct,
    uuid: () => {
      const a = next(), b = next();
      return `${hex(a >> 32n, 8)}-${hex((a >> 16n) & 0xffffn, 4)}-4${hex(a & 0xfffn, 3)}-${hex(((b >> 48n) & 0x3fffn) | 0x8000n, 4)}-${hex(b & 0xffffffffffffn, 12)}`;
    },
    hex256: () => [0, 1, 2, 3].map(() => hex(next(), 16)).join(""),
    u32: () => Number(next() & 0xffffffffn),
  };
}

const APIS = ["orders", "payments", "customers", "catalog", "shipping", "invoices", "accounts", "notifications", "search", "reports", "identity", "inventory"];
const ENVS = ["production", "sandbox", "test"];
const SCOPES = ["read", "write", "admin", "orders:read", "orders:write", "payments:refund", "reports:export", "profile", "email", "offline_access"];
const TIERS = [["plan-free", "free", "rp-10-per-min"], ["plan-basic", "basic", "rp-100-per-min"], ["plan-pro", "pro", "rp-1000-per-min"], ["plan-gold", "gold", "rp-5000-per-min"], ["plan-enterprise", "enterprise", "rp-unlimited"], ["plan-internal", "internal", "rp-unlimited"]];
const ipv4 = (x) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255].join(".");

/**
 * A snapshot document with `n` generated subscriptions (the shape and ratios of
 * edgegate_core::snapshot::generate, not its exact data) plus the benchmark's consumer,
 * application, API key and a subscription to API "bench" (all versions, environment default).
 */
export function generateSnapshot(n, seed, version) {
  const r = rng(seed);
  const nc = Math.max(1, Math.floor(n / 10));
  const na = Math.max(1, Math.floor(n / 4));
  const base = 1_700_000_000;
  const pickScopes = () => {
    const k = 1 + r.below(4);
    const start = r.below(SCOPES.length);
    return Array.from({ length: k }, (_, j) => SCOPES[(start + j) % SCOPES.length]);
  };
  const consumers = Array.from({ length: nc }, (_, i) => ({ id: r.uuid(), name: `Consumer ${i}`, status: r.chance(5) ? "suspended" : "active" }));
  const applications = Array.from({ length: na }, (_, i) => ({ id: r.uuid(), consumer_id: consumers[r.below(nc)].id, name: `app ${i} (${["web", "mobile", "batch", "partner"][i % 4]})` }));
  const credentials = [];
  for (const app of applications) {
    const scopes = pickScopes();
    const status = ["revoked", "suspended"][r.below(40)] ?? "active";
    const cred = { kind: "api_key", key: r.hex256(), consumer_id: app.consumer_id, application_id: app.id, status, scopes };
    if (r.chance(33)) cred.expires_at = base + r.below(100_000_000);
    const env = r.below(5);
    if (env) cred.environment = env === 1 ? "sandbox" : "production";
    credentials.push(cred);
    if (r.chance(10)) credentials.push({ kind: "certificate", key: r.hex256(), consumer_id: app.consumer_id, application_id: app.id, status: "active", expires_at: base + 31_536_000, scopes: [], environment: "production" });
  }
  const subscriptions = [];
  for (let i = 0; i < n; i++) {
    const app = applications[i % na];
    const round = Math.floor(i / na);
    const v = r.below(5);
    const sub = {
      id: r.uuid(), application_id: app.id, api: APIS[(r.below(APIS.length) + round) % APIS.length],
      versions: v === 0 ? ["*"] : v === 1 ? ["v1", "v2"] : v === 2 ? ["v2", "v3"] : [`v${1 + r.below(3)}`],
      environment: ENVS[(round + i) % ENVS.length], plan_id: TIERS[r.below(TIERS.length)][0],
      status: ["suspended", "expired"][r.below(20)] ?? "active", scopes: pickScopes(),
    };
    if (r.chance(20)) {
      sub.ip_allow = Array.from({ length: 1 + r.below(3) }, () => {
        const p = [16, 24, 28, 32][r.below(4)];
        return `${ipv4(p === 32 ? r.u32() : (r.u32() & ~((2 ** (32 - p)) - 1)) >>> 0)}/${p}`;
      });
      if (r.chance(30)) sub.ip_allow.push(`2001:db8:${r.below(65536).toString(16)}::/48`);
      if (r.chance(40)) sub.ip_deny = [`${ipv4(r.u32())}/32`];
    }
    if (r.chance(33)) {
      sub.metadata = { cost_center: `cc-${r.below(200)}`, contract: `K-${String(r.below(1_000_000)).padStart(6, "0")}` };
      if (r.chance(30)) sub.metadata.region = ["eu", "us", "apac"][r.below(3)];
    }
    if (r.chance(50)) {
      sub.valid_from = base - r.below(50_000_000);
      if (r.chance(50)) sub.valid_until = base + 1 + r.below(100_000_000);
    }
    sub.flags = { pii_access: r.chance(10), priority: r.chance(2), ...(r.chance(5) && { canary_group: ["canary-a", "canary-b"][r.below(2)] }) };
    subscriptions.push(sub);
  }
  consumers.push({ id: "bench-consumer", name: "Bench", status: "active" });
  applications.push({ id: "bench-app", consumer_id: "bench-consumer", name: "bench app" });
  credentials.push({ kind: "api_key", key: API_KEY_DIGEST, consumer_id: "bench-consumer", application_id: "bench-app", status: "active", scopes: [] });
  subscriptions.push({ id: "bench-sub", application_id: "bench-app", api: "bench", versions: ["*"], environment: "default", plan_id: "plan-gold", status: "active", scopes: [] });
  return { version, consumers, applications, credentials, plans: TIERS.map(([id, tier, rate_plan]) => ({ id, tier, rate_plan })), subscriptions };
}

/** The gateway config: one GET route; with a snapshot, API keys and the subscription check. */
function syncConfig(backendUrl, withSnapshot, variant) {
  return {
    gateway: {
      strip_request_headers: [`x-bench-${variant}`],
      ...(withSnapshot && { policies: { auth: { accept: ["api_key"], api_key: { header: "x-api-key" } }, authorization: { subscription: {} } } }),
    },
    pools: { "bench-backend": { instances: [{ url: backendUrl }] } },
    apis: [{ name: "bench", base_path: "/bench-api", versions: [{ name: "v1", pool: "bench-backend" }], routes: [{ name: "get-item", methods: ["GET"], path: "/items/{id}" }] }],
  };
}

/** Runs the CLI; throws with its stderr on failure. */
function cli(args, cwd) {
  const r = spawnSync(CLI, args, { cwd, encoding: "utf8", timeout: 10 * 60_000, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`edgegate ${args.join(" ")} failed (${r.error?.message ?? r.status}): ${r.stderr}`);
  return r.stdout;
}

/**
 * Per size, the bundles B0, B1 (signed with key 1) and B1' (B1 signed again with key 2), built
 * with the CLI in `dir`; → { keys: [pub1, pub2], sizes: { name: { b0, b1, b1resigned, … } } }.
 */
function buildBundles(dir, sizes, backendUrl) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(CLI)) throw new Error(`no CLI at ${CLI} (cargo build -p edgegate-cli, or set EDGEGATE_CLI)`);
  cli(["keygen", "--out", "k1"], dir);
  cli(["keygen", "--out", "k2"], dir);
  const keys = ["k1.pub", "k2.pub"].map((f) => fs.readFileSync(path.join(dir, f), "utf8").trim());
  const out = {};
  for (const size of sizes) {
    const n = size === "config" ? 0 : Number(size);
    const made = {};
    for (const [variant, seed] of [["b0", 1], ["b1", 2], ["b2", 3]]) {
      const t0 = performance.now();
      const cfg = path.join(dir, `${size}-${variant}.config.json`);
      fs.writeFileSync(cfg, JSON.stringify(syncConfig(backendUrl, n > 0, variant)));
      const args = ["bundle", "--config", cfg, "--label", `bench-${size}-${variant}`, "--out", path.join(dir, `${size}-${variant}.egb`)];
      if (n > 0) {
        const snap = path.join(dir, `${size}-${variant}.snapshot.json`);
        fs.writeFileSync(snap, JSON.stringify(generateSnapshot(n, seed, `bench-${size}-${variant}`)));
        args.push("--snapshot", snap);
        made[`${variant}SnapshotJsonBytes`] = fs.statSync(snap).size;
      }
      cli(args, dir);
      cli(["sign", `${size}-${variant}.egb`, "--key", "k1.key"], dir);
      made[variant] = fs.readFileSync(path.join(dir, `${size}-${variant}.egb`));
      made[`${variant}BuildMs`] = performance.now() - t0;
    }
    cli(["sign", `${size}-b1.egb`, "--key", "k2.key", "--out", `${size}-b1r.egb`], dir);
    made.b1resigned = fs.readFileSync(path.join(dir, `${size}-b1r.egb`));
    if (versionId(made.b1resigned) !== versionId(made.b1) || made.b1resigned.equals(made.b1)) throw new Error("re-signed bundle: expected other bytes, same version id");
    out[size] = { subscriptions: n, ...made, bytes: made.b1.length, id0: versionId(made.b0), id1: versionId(made.b1), id2: versionId(made.b2) };
    console.log(`bundles ${size}: B1 ${fmt(made.b1.length)} bytes (id ${out[size].id1}), built in ${fmt(made.b1BuildMs / 1000, 1)} s (debug CLI)`);
  }
  return { keys, sizes: out };
}

// ------------------------------------------------------------------------------- Miniflare

/**
 * A Miniflare with edgegate workers `names` (the first one owns the Durable Object classes;
 * the others with `ownObjects` get their own, the rest bind the first one's), all on one KV
 * namespace, each with a direct socket; plus the "noop" JS worker. → { mf, pid, urls, logs, kv, close }.
 */
async function startMiniflare(build, { names, ownObjects = [], bindings }) {
  const before = new Set(workerdChildren().map((c) => c.pid));
  const logs = new LogCapture();
  const objects = (name) => {
    const own = name === names[0] || ownObjects.includes(name);
    const scriptName = own ? undefined : names[0];
    return {
      EDGEGATE_CONTROL: { className: "Control", useSQLite: true, ...(scriptName && { scriptName }) },
      EDGEGATE_COUNTERS: { className: "RateCounter", useSQLite: true, ...(scriptName && { scriptName }) },
    };
  };
  const workers = names.map((name) => ({
    name,
    modules: true,
    modulesRoot: build.root,
    scriptPath: build.shim,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: COMPAT_DATE,
    kvNamespaces: { EDGEGATE_CONFIG: "edgegate-config" },
    durableObjects: objects(name),
    bindings,
    unsafeDirectSockets: [{ host: "127.0.0.1", port: 0 }],
  }));
  workers.push({
    name: "noop",
    modulesRoot: build.root,
    modules: [{ type: "ESModule", path: path.join(build.root, "noop.mjs"), contents: "export default { async scheduled() {}, async fetch() { return new Response('ok'); } };" }],
    compatibilityDate: COMPAT_DATE,
  });
  const mf = new Miniflare({
    workers,
    cf: false,
    host: "127.0.0.1",
    port: 0,
    handleRuntimeStdio(stdout, stderr) {
      readline.createInterface({ input: stdout }).on("line", (l) => logs.push(l, "stdout"));
      readline.createInterface({ input: stderr }).on("line", (l) => logs.push(l, "stderr"));
    },
  });
  let entry;
  try {
    await withTimeout(mf.ready, 60_000, "Miniflare start");
    const fresh = workerdChildren().filter((c) => !before.has(c.pid)).sort((a, b) => b.start - a.start);
    if (!fresh.length) throw new Error("no new workerd child process found");
    const pid = fresh[0].pid;
    entry = { name: "workerd-miniflare", proc: { pid }, extraPids: [] };
    children.add(entry);
    const urls = {};
    for (const name of names) urls[name] = (await mf.unsafeGetDirectURL(name)).href;
    const kv = await mf.getKVNamespace("EDGEGATE_CONFIG", names[0]);
    const close = async () => {
      await withTimeout(mf.dispose(), 15_000, "Miniflare dispose").catch((e) => console.error(`dispose: ${e.message}`));
      children.delete(entry);
    };
    return { mf, pid, urls, logs, kv, close };
  } catch (e) {
    e.message += `\nworkerd output:\n${logs.dump(20)}`;
    await withTimeout(mf.dispose(), 15_000, "Miniflare dispose").catch(() => {});
    if (entry) children.delete(entry);
    throw e;
  }
}

/** Fires `worker`'s scheduled() and waits for its config_check event → the event. */
async function tick(g, worker) {
  const from = g.logs.mark();
  const w = await g.mf.getWorker(worker);
  await withTimeout(w.scheduled({ cron: "* * * * *", scheduledTime: new Date() }), 120_000, `${worker} scheduled()`);
  if (worker === "noop") return null;
  return g.logs.waitForEvent("config_check", () => true, { from, timeoutMs: 30_000 });
}

let reqCounter = 0;
/** GET `path` on `url` with `headers`, waiting for its access line → { status, body, log }. */
async function get(g, url, pathname, headers = {}, { accessLine = true } = {}) {
  reqCounter += 1;
  const id = `rs-${process.pid}-${reqCounter}`;
  const res = await fetch(new URL(pathname, url), { headers: { "x-request-id": id, "cf-connecting-ip": CLIENT_IP, ...headers }, signal: AbortSignal.timeout(60_000) });
  const body = await res.text();
  const log = accessLine ? await g.logs.waitForAccess(id, { timeoutMs: 30_000 }) : null;
  return { status: res.status, body, log };
}

// ------------------------------------------------------------------------------ 1. the sync

async function syncRun({ build, bundles, keys, size, requests, registry }) {
  const b = bundles[size];
  registry.setBundle(b.b0);
  const g = await startMiniflare(build, {
    names: ["serve", "cron"],
    bindings: {
      EDGEGATE_CONFIG_REFRESH_MS: String(SERVE_REFRESH_MS),
      EDGEGATE_REGISTRY_URL: registry.url,
      EDGEGATE_REGISTRY_TOKEN: REGISTRY_TOKEN,
      EDGEGATE_REGISTRY_KEYS: keys.join(","),
      EDGEGATE_REGISTRY_BACKOFF_MS: "1",
      EDGEGATE_REGISTRY_TIMEOUT_MS: "60000",
    },
  });
  const failures = [];
  const headers = b.subscriptions ? { "x-api-key": API_KEY } : {};
  const expectOk = (r, id, what) => {
    if (r.status !== 200 || r.body !== BACKEND_BODY || r.log?.config_version !== id) failures.push(`${what}: HTTP ${r.status} on ${r.log?.config_version} (want ${id}): ${r.body.slice(0, 200)}`);
  };
  const expectTick = (ev, result, what) => {
    if (ev?.registry?.result !== result) failures.push(`${what}: ${JSON.stringify(ev?.registry)} (want ${result})`);
  };
  try {
    const c0 = await settledReading(g.pid, 8000);
    await tick(g, "noop");
    const c1 = await settledReading(g.pid, 8000);
    expectTick(await tick(g, "cron"), "activated", "tick 1 (B0)");
    const c2 = await settledReading(g.pid, 8000);
    const first0 = await get(g, g.urls.serve, REQUEST_PATH, headers);
    expectOk(first0, b.id0, "first request on B0");
    const c3 = await settledReading(g.pid, 8000);
    for (let i = 0; i < requests; i++) expectOk(await get(g, g.urls.serve, REQUEST_PATH, headers), b.id0, "request on B0");
    const c3b = await settledReading(g.pid, 8000);
    for (let i = 0; i < requests; i++) expectOk(await get(g, g.urls.serve, REQUEST_PATH, headers), b.id0, "request on B0");
    const c4 = await settledReading(g.pid, 8000);
    registry.setBundle(b.b1);
    const syncMark = g.logs.mark();
    const sync = await tick(g, "cron");
    const syncEvent = g.logs.events("registry_sync", syncMark)[0] ?? null;
    expectTick(sync, "activated", "tick 2 (B1)");
    const c5 = await settledReading(g.pid, 8000);
    expectTick(await tick(g, "cron"), "not_modified", "tick 3 (304)");
    const c6 = await settledReading(g.pid, 8000);
    registry.setBundle(b.b1resigned);
    expectTick(await tick(g, "cron"), "unchanged", "tick 4 (B1 re-signed)");
    const c7 = await settledReading(g.pid, 8000);
    registry.setBundle(b.b2);
    const sync2Mark = g.logs.mark();
    expectTick(await tick(g, "cron"), "activated", "tick 5 (B2)");
    const sync2Event = g.logs.events("registry_sync", sync2Mark)[0] ?? null;
    const c7b = await settledReading(g.pid, 8000);
    // The serve isolate notices the new pointer on its first request after its refresh interval.
    await sleep(SERVE_REFRESH_MS + 300);
    const c8 = await settledReading(g.pid, 8000);
    const mark = g.logs.mark();
    const first1 = await get(g, g.urls.serve, REQUEST_PATH, headers);
    expectOk(first1, b.id2, "first request after the switch");
    const c9 = await settledReading(g.pid, 8000);
    if (b.subscriptions && !g.logs.events("snapshot_activated", mark).length) failures.push(`no snapshot_activated event on the first request after the switch`);
    expectOk(await get(g, g.urls.serve, REQUEST_PATH, headers), b.id2, "second request after the switch");
    const c10 = await settledReading(g.pid, 8000);
    for (let i = 0; i < requests; i++) expectOk(await get(g, g.urls.serve, REQUEST_PATH, headers), b.id2, "request on B2");
    const c11 = await settledReading(g.pid, 8000);
    const all = [c0, c1, c2, c3, c3b, c4, c5, c6, c7, c7b, c8, c9, c10, c11];
    const unsettled = all.filter((c) => !c.settled).length;
    if (unsettled) failures.push(`${unsettled} readings taken before workerd was idle (8 s bound)`);
    const idleMs = cpuDelta(c7b, c8).ms; // the wait before the first request: what idling costs
    return {
      pid: g.pid,
      noopTick: cpuDelta(c0, c1),
      firstTick: cpuDelta(c1, c2),
      firstRequestB0: cpuDelta(c2, c3),
      tierUpWindowUsPerReq: (cpuDelta(c3, c3b).ms * 1000) / requests,
      unchangedVersionUsPerReq: (cpuDelta(c3b, c4).ms * 1000) / requests,
      unchangedVersionMainUsPerReq: (cpuDelta(c3b, c4).mainMs * 1000) / requests,
      syncTick: cpuDelta(c4, c5),
      notModifiedTick: cpuDelta(c5, c6),
      unchangedTick: cpuDelta(c6, c7),
      syncAgainTick: cpuDelta(c7, c7b),
      syncAgainReportedMs: sync2Event?.ms ?? null,
      idleMs,
      firstAfterSwitch: cpuDelta(c8, c9),
      secondAfterSwitch: cpuDelta(c9, c10),
      afterSwitchUsPerReq: (cpuDelta(c10, c11).ms * 1000) / requests,
      afterSwitchMainUsPerReq: (cpuDelta(c10, c11).mainMs * 1000) / requests,
      syncEvent,
      syncReportedMs: syncEvent?.ms ?? null,
      failures,
    };
  } catch (e) {
    e.message += `\nworkerd output:\n${g.logs.dump(20)}`;
    throw e;
  } finally {
    await g.close();
  }
}

// ------------------------------------------------------------------ 2. admin API, overrides

async function overridesRun({ build, backendUrl, blocks, rounds, preRoundsN, perRound, adminCalls }) {
  const g = await startMiniflare(build, {
    names: ["serve", "blocked"],
    ownObjects: ["blocked"],
    bindings: {
      EDGEGATE_CONFIG_REFRESH_MS: "5000",
      EDGEGATE_CONTROL_REFRESH_MS: "600000",
      EDGEGATE_ADMIN_TOKEN: ADMIN_TOKEN,
      EDGEGATE_ADMIN_RATE_LIMIT: "100000",
    },
  });
  const failures = [];
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };
  try {
    await g.kv.put("config:version:ovr-1", JSON.stringify(syncConfig(backendUrl, false, "ovr")));
    await g.kv.put("config:active", "ovr-1");
    const okReq = async (name) => {
      const r = await get(g, g.urls[name], REQUEST_PATH);
      if (r.status !== 200 || r.body !== BACKEND_BODY) failures.push(`${name}: HTTP ${r.status} ${r.body.slice(0, 200)}`);
    };
    // Warm both isolates (first request: config, control read, compile).
    for (const name of ["serve", "blocked"]) for (let i = 0; i < 50; i++) await okReq(name);
    const health = async (name) => {
      const r = await get(g, g.urls[name], `${ADMIN_PREFIX}/health`, admin, { accessLine: false });
      if (r.status !== 200) failures.push(`health: HTTP ${r.status} ${r.body.slice(0, 200)}`);
      return JSON.parse(r.body);
    };
    /** Interleaved rounds of `perRound` sequential requests on each isolate → rows (µs/req). */
    const measureRounds = async (n, label) => {
      const rows = [];
      for (let round = 1; round <= n; round++) {
        const order = round % 2 ? ["serve", "blocked"] : ["blocked", "serve"];
        const row = { round };
        for (const name of order) {
          const c0 = await settledReading(g.pid, 8000);
          for (let i = 0; i < perRound; i++) await okReq(name);
          const c1 = await settledReading(g.pid, 8000);
          row[name] = (cpuDelta(c0, c1).ms * 1000) / perRound;
          row[`${name}Main`] = (cpuDelta(c0, c1).mainMs * 1000) / perRound;
        }
        row.diff = row.blocked - row.serve;
        row.diffMain = row.blockedMain - row.serveMain;
        rows.push(row);
        console.log(`${label} round ${round}: serve ${fmt(row.serve)} µs/req, blocked ${fmt(row.blocked)} µs/req, blocked − serve ${fmt(row.diff, 1)} (main thread ${fmt(row.diffMain, 1)})`);
      }
      return rows;
    };
    // Control: both isolates without blocks (what the two isolates differ by anyway).
    const preRounds = await measureRounds(preRoundsN, "0 vs 0 blocks");
    // Admin GET health on "serve": a first call (the isolate has not served one yet), then more.
    const h0 = await settledReading(g.pid, 8000);
    await health("serve");
    const h1 = await settledReading(g.pid, 8000);
    for (let i = 0; i < adminCalls; i++) await health("serve");
    const h2 = await settledReading(g.pid, 8000);
    // The blocks, through the admin API of "blocked".
    const a0 = await settledReading(g.pid, 8000);
    for (let i = 0; i < blocks; i++) {
      const res = await fetch(new URL(`${ADMIN_PREFIX}/ip-blocks`, g.urls.blocked), {
        method: "POST",
        headers: { ...admin, "cf-connecting-ip": CLIENT_IP, "content-type": "application/json" },
        body: JSON.stringify({ cidr: `10.${i >> 8}.${i & 255}.0/24`, reason: "bench" }),
        signal: AbortSignal.timeout(30_000),
      });
      const text = await res.text();
      if (res.status >= 300) throw new Error(`POST ip-blocks ${i}: HTTP ${res.status} ${text.slice(0, 300)}`);
    }
    const a1 = await settledReading(g.pid, 8000);
    const h = await health("blocked");
    const blockCount = h.control?.blocks;
    if (blockCount !== blocks) failures.push(`health of "blocked" shows ${JSON.stringify(h.control)}, want ${blocks} blocks`);
    // A request from an address in a block must be refused (the list is live in this isolate).
    const refused = await fetch(new URL(REQUEST_PATH, g.urls.blocked), { headers: { "cf-connecting-ip": "10.0.1.9" }, signal: AbortSignal.timeout(30_000) });
    const refusedBody = await refused.text();
    if (refused.status !== 403 || !/ip_blocked/.test(refusedBody)) failures.push(`blocked address: HTTP ${refused.status} ${refusedBody.slice(0, 200)}`);
    for (const name of ["serve", "blocked"]) for (let i = 0; i < perRound; i++) await okReq(name); // warm-up after the adds
    const perRoundRows = await measureRounds(rounds, `0 vs ${blocks} blocks`);
    return {
      pid: g.pid,
      blockCount,
      addBlocksMs: cpuDelta(a0, a1),
      addBlockUsPerCall: (cpuDelta(a0, a1).ms * 1000) / blocks,
      rounds: perRoundRows,
      preRounds,
      healthFirst: cpuDelta(h0, h1),
      healthUsPerCall: (cpuDelta(h1, h2).ms * 1000) / adminCalls,
      healthMainUsPerCall: (cpuDelta(h1, h2).mainMs * 1000) / adminCalls,
      failures,
    };
  } catch (e) {
    e.message += `\nworkerd output:\n${g.logs.dump(20)}`;
    throw e;
  } finally {
    await g.close();
  }
}

// ------------------------------------------------------------------------------- 3. sizes

// ------------------------------------------------------------------------------------ main

async function main() {
  const values = parseBenchArgs(["out", "help"], {
    runs: { type: "string" },
    sizes: { type: "string" },
    requests: { type: "string" },
    "override-rounds": { type: "string" },
    "override-requests": { type: "string" },
    blocks: { type: "string" },
    "admin-calls": { type: "string" },
    "no-wrangler": { type: "boolean" },
    "skip-sync": { type: "boolean" },
    "skip-overrides": { type: "boolean" },
  });
  if (values.help) {
    console.log(
      "node bench/load/registry-sync.mjs [--runs 5] [--sizes config,1000,100000] [--requests 20]\n" +
        "     [--override-rounds 5] [--override-requests 200] [--blocks 1000] [--admin-calls 200]\n" +
        "     [--no-wrangler] [--skip-sync] [--skip-overrides] [--out bench/out]\n" +
        "Registry sync (issue 6) under Miniflare: workerd CPU of cron ticks (sync of a new signed bundle,\n" +
        "304, unchanged), of the first request another isolate serves after the switch, of admin GET\n" +
        "health, of 0 vs --blocks IP blocks per request; wasm bundle sizes. Needs worker/build (built if\n" +
        "missing) and the debug CLI target/debug/edgegate (or EDGEGATE_CLI).",
    );
    return;
  }
  const runs = Math.round(numOption(values.runs, 5, 1, 50, "--runs"));
  const sizeList = (values.sizes ?? "config,1000,100000").split(",").map((s) => s.trim()).filter(Boolean);
  for (const s of sizeList) if (s !== "config" && !(Number(s) >= 1 && Number(s) <= 1_000_000)) throw new Error(`--sizes: ${s} is not "config" or 1..1000000`);
  const requests = Math.round(numOption(values.requests, 20, 1, 10_000, "--requests"));
  const oRounds = Math.round(numOption(values["override-rounds"], 5, 1, 50, "--override-rounds"));
  const oPerRound = Math.round(numOption(values["override-requests"], 200, 1, 10_000, "--override-requests"));
  const blocks = Math.round(numOption(values.blocks, 1000, 1, 4096, "--blocks"));
  const adminCalls = Math.round(numOption(values["admin-calls"], 200, 1, 10_000, "--admin-calls"));
  const outDir = outDirOption(values);
  boundRun(120 + (values["skip-sync"] ? 0 : runs * sizeList.length * 25) + (values["skip-overrides"] ? 0 : blocks * 0.02 + oRounds * oPerRound * 0.01 * 2));
  const startedAt = new Date();
  const env = benchEnv();
  console.log(`registry sync: ${envLine(env)}; git ${env.gitHead}${env.gitDirty ? " (worker/ or shared/ modified)" : ""}; ${startedAt.toISOString()}`);
  console.log("CPU: workerd process, all threads, /proc/<pid>/task/*/schedstat, each reading once workerd is idle");

  const work = path.join(outDir, "registry-sync-work");
  ensureWorkerBuild(BUILD, []);
  const build = snapshotBuild(BUILD, path.join(work, "build"));
  const later = git(["log", `--since=${build.builtAt}`, "--format=%h", "--", "worker/src", "worker/Cargo.toml", "shared", "durable-objects", "Cargo.toml", "Cargo.lock"]);
  if (later) console.log(`note: commits after worker/build was built (${build.builtAt}) touch its sources (${later.split("\n").join(" ")})`);
  console.log(`worker/build: wasm sha256 ${build.wasmSha256}, built ${build.builtAt}`);

  // 3. sizes first (cheap).
  const bundleSizes = {};
  const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "edgegate-registry-sync-wrangler-"));
  try {
    for (const [name, dir] of [["cedar", BUILD], ["nocedar", BUILD_NOCEDAR]]) {
      if (!fs.existsSync(path.join(dir, "index_bg.wasm"))) {
        bundleSizes[name] = { missing: path.relative(ROOT, dir) };
        continue;
      }
      const copy = snapshotBuild(dir, path.join(work, `size-${name}`));
      bundleSizes[name] = { dir: path.relative(ROOT, dir), wasm: copy.wasm, indexJs: copy.indexJs, wasmSha256: copy.wasmSha256, builtAt: copy.builtAt };
      if (!values["no-wrangler"]) bundleSizes[name].wrangler = wranglerSize(copy.shim, path.join(tmpRoot, name));
    }
  } finally {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  }
  console.log(`\nbundle sizes (bytes):`);
  console.log(table(
    ["build", "wasm raw", "wasm gzip -9", "index.js raw", "index.js gzip -9", "wrangler Total Upload", "wrangler gzip", "built", "wasm sha256"],
    Object.entries(bundleSizes).map(([name, b]) => b.missing
      ? [`${name} (${b.missing}: missing)`, "-", "-", "-", "-", "-", "-", "-", "-"]
      : [`${name} (${b.dir})`, fmt(b.wasm.raw), fmt(b.wasm.gzip9), fmt(b.indexJs.raw), fmt(b.indexJs.gzip9),
        b.wrangler?.totalKiB ? `${fmt(b.wrangler.totalKiB, 2)} KiB` : "-", b.wrangler?.gzipKiB ? `${fmt(b.wrangler.gzipKiB, 2)} KiB` : "-", b.builtAt, b.wasmSha256]),
    ["l"],
  ));
  for (const b of Object.values(bundleSizes)) if (b.wrangler?.error) console.log(`wrangler: ${b.wrangler.error}`);

  const backend = await startBackend(1);
  const summary = { bundleSizes };
  const results = { sync: [], overrides: null };
  const stats = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
  const mr = (s, d = 1) => `${fmt(s.median, d)} (${fmt(s.min, d)}–${fmt(s.max, d)})`;

  if (!values["skip-sync"]) {
    console.log(`\nbuilding bundles with ${path.relative(ROOT, CLI)} …`);
    // The bundle files (~170 MB with 100k subscriptions) are deleted once read: they live in memory.
    const bundleDir = path.join(work, "bundles");
    let keys, bundles;
    try {
      ({ keys, sizes: bundles } = buildBundles(bundleDir, sizeList, backend.url));
    } finally {
      fs.rmSync(bundleDir, { recursive: true, force: true });
    }
    const registry = await new MockRegistry({ token: REGISTRY_TOKEN, bundle: bundles[sizeList[0]].b0 }).start();
    try {
      // One unmeasured run first (page cache, node's JIT).
      await syncRun({ build, bundles, keys, size: sizeList[0], requests: 2, registry });
      for (let run = 1; run <= runs; run++) {
        const order = sizeList.map((_, i) => sizeList[(i + run - 1) % sizeList.length]);
        for (const size of order) {
          const r = await syncRun({ build, bundles, keys, size, requests, registry });
          results.sync.push({ run, size, ...r });
          console.log(
            `run ${run} ${size.padEnd(7)} noop tick ${fmt(r.noopTick.ms, 1)} ms  1st tick (B0, cold) ${fmt(r.firstTick.ms, 1)}  sync B1 ${fmt(r.syncTick.ms, 1)} ms (main ${fmt(r.syncTick.mainMs, 1)}, V8 ${fmt(r.syncTick.v8Ms, 1)}; reported ${r.syncReportedMs} ms wall)` +
              `  304 ${fmt(r.notModifiedTick.ms, 2)}  unchanged ${fmt(r.unchangedTick.ms, 1)}  sync B2 ${fmt(r.syncAgainTick.ms, 1)} (main ${fmt(r.syncAgainTick.mainMs, 1)})  1st req after switch ${fmt(r.firstAfterSwitch.ms, 1)} ms (main ${fmt(r.firstAfterSwitch.mainMs, 1)})  2nd ${fmt(r.secondAfterSwitch.ms, 2)}` +
              `  steady ${fmt(r.unchangedVersionUsPerReq)} → ${fmt(r.afterSwitchUsPerReq)} µs/req` +
              (r.failures.length ? `  FAILED: ${r.failures.join("; ")}` : ""),
          );
        }
      }
    } finally {
      await registry.close();
    }
    summary.sync = {};
    for (const size of sizeList) {
      const mine = results.sync.filter((r) => r.size === size);
      const b = bundles[size];
      summary.sync[size] = {
        subscriptions: b.subscriptions, bundleBytes: b.bytes, runs: mine.length, failures: mine.reduce((s, r) => s + r.failures.length, 0),
        noopTickMs: stats(mine.map((r) => r.noopTick.ms)),
        firstTickMs: stats(mine.map((r) => r.firstTick.ms)),
        syncTickMs: stats(mine.map((r) => r.syncTick.ms)),
        syncTickMainMs: stats(mine.map((r) => r.syncTick.mainMs)),
        syncTickV8Ms: stats(mine.map((r) => r.syncTick.v8Ms)),
        syncReportedWallMs: stats(mine.map((r) => r.syncReportedMs ?? NaN)),
        notModifiedTickMs: stats(mine.map((r) => r.notModifiedTick.ms)),
        unchangedTickMs: stats(mine.map((r) => r.unchangedTick.ms)),
        syncAgainTickMs: stats(mine.map((r) => r.syncAgainTick.ms)),
        syncAgainTickMainMs: stats(mine.map((r) => r.syncAgainTick.mainMs)),
        syncAgainTickV8Ms: stats(mine.map((r) => r.syncAgainTick.v8Ms)),
        syncAgainReportedWallMs: stats(mine.map((r) => r.syncAgainReportedMs ?? NaN)),
        firstTickMainMs: stats(mine.map((r) => r.firstTick.mainMs)),
        notModifiedTickMainMs: stats(mine.map((r) => r.notModifiedTick.mainMs)),
        unchangedTickMainMs: stats(mine.map((r) => r.unchangedTick.mainMs)),
        secondAfterSwitchMainMs: stats(mine.map((r) => r.secondAfterSwitch.mainMs)),
        firstRequestB0MainMs: stats(mine.map((r) => r.firstRequestB0.mainMs)),
        tierUpWindowUsPerReq: stats(mine.map((r) => r.tierUpWindowUsPerReq)),
        unchangedVersionMainUsPerReq: stats(mine.map((r) => r.unchangedVersionMainUsPerReq)),
        afterSwitchMainUsPerReq: stats(mine.map((r) => r.afterSwitchMainUsPerReq)),
        firstRequestB0Ms: stats(mine.map((r) => r.firstRequestB0.ms)),
        firstAfterSwitchMs: stats(mine.map((r) => r.firstAfterSwitch.ms)),
        firstAfterSwitchMainMs: stats(mine.map((r) => r.firstAfterSwitch.mainMs)),
        firstAfterSwitchV8Ms: stats(mine.map((r) => r.firstAfterSwitch.v8Ms)),
        secondAfterSwitchMs: stats(mine.map((r) => r.secondAfterSwitch.ms)),
        unchangedVersionUsPerReq: stats(mine.map((r) => r.unchangedVersionUsPerReq)),
        afterSwitchUsPerReq: stats(mine.map((r) => r.afterSwitchUsPerReq)),
        idleMs: stats(mine.map((r) => r.idleMs)),
      };
    }
    const label = (size) => (size === "config" ? "config only" : `${fmt(Number(size))} subs`);
    const am = (all, main, d = 1) => `${mr(all, d)} / ${fmt(main.median, d)}`;
    console.log(`\ncron ticks, workerd CPU ms, all threads (median (min–max)) / main thread (median), ${runs} fresh Miniflare instances per size:`);
    console.log(table(
      ["bundle", "bytes", "noop tick", "1st tick: sync B0 (cold isolate)", "sync new B1", "  of which V8 bg", "304", "unchanged", "sync new B2 (after B1)", "  V8 bg", "sync wall (event ms) B1 / B2"],
      sizeList.map((size) => {
        const s = summary.sync[size];
        return [label(size), fmt(s.bundleBytes), mr(s.noopTickMs, 1), am(s.firstTickMs, s.firstTickMainMs), am(s.syncTickMs, s.syncTickMainMs), mr(s.syncTickV8Ms),
          am(s.notModifiedTickMs, s.notModifiedTickMainMs), am(s.unchangedTickMs, s.unchangedTickMainMs), am(s.syncAgainTickMs, s.syncAgainTickMainMs), mr(s.syncAgainTickV8Ms),
          `${fmt(s.syncReportedWallMs.median)} / ${fmt(s.syncAgainReportedWallMs.median)}`];
      }),
      ["l"],
    ));
    console.log(`\nthe serve isolate (did not run the sync), workerd CPU, all threads / main thread:`);
    console.log(table(
      ["bundle", "1st req on B0 ms", `next ${requests} µs/req (tier-up)`, `next ${requests} µs/req (unchanged version)`, "1st req after switch ms", "  V8 bg", "2nd req ms", `next ${requests} µs/req`],
      sizeList.map((size) => {
        const s = summary.sync[size];
        return [label(size), am(s.firstRequestB0Ms, s.firstRequestB0MainMs), mr(s.tierUpWindowUsPerReq, 0), am(s.unchangedVersionUsPerReq, s.unchangedVersionMainUsPerReq, 0),
          am(s.firstAfterSwitchMs, s.firstAfterSwitchMainMs), mr(s.firstAfterSwitchV8Ms), am(s.secondAfterSwitchMs, s.secondAfterSwitchMainMs, 2), am(s.afterSwitchUsPerReq, s.afterSwitchMainUsPerReq, 0)];
      }),
      ["l"],
    ));
  }

  if (!values["skip-overrides"]) {
    console.log(`\nadmin API and overrides: ${blocks} IP blocks via the admin API, ${oRounds} rounds × ${oPerRound} requests per isolate …`);
    const o = await overridesRun({ build, backendUrl: backend.url, blocks, rounds: oRounds, preRoundsN: Math.max(2, Math.ceil(oRounds / 2)), perRound: oPerRound, adminCalls });
    results.overrides = o;
    const diffs = o.rounds.map((r) => r.diff);
    summary.overrides = {
      blocks, blockCount: o.blockCount, rounds: oRounds, requestsPerRound: oPerRound, failures: o.failures.length,
      zeroBlocksUsPerReq: stats(o.rounds.map((r) => r.serve)),
      withBlocksUsPerReq: stats(o.rounds.map((r) => r.blocked)),
      diffUsPerReq: stats(diffs),
      diffMainUsPerReq: stats(o.rounds.map((r) => r.diffMain)),
      controlDiffUsPerReq: stats(o.preRounds.map((r) => r.diff)),
      controlDiffMainUsPerReq: stats(o.preRounds.map((r) => r.diffMain)),
      pooledDiffUsPerReq: o.rounds.reduce((s, r) => s + r.blocked, 0) / oRounds - o.rounds.reduce((s, r) => s + r.serve, 0) / oRounds,
      addBlockUsPerCall: o.addBlockUsPerCall,
      healthFirstMs: o.healthFirst.ms,
      healthFirstMainMs: o.healthFirst.mainMs,
      healthUsPerCall: o.healthUsPerCall,
      healthMainUsPerCall: o.healthMainUsPerCall,
      adminCalls,
    };
    const s = summary.overrides;
    console.log(table(
      ["measure", "value"],
      [
        [`request, 0 IP blocks, µs/req (median (min–max) of ${oRounds} rounds × ${oPerRound})`, mr(s.zeroBlocksUsPerReq, 0)],
        [`request, ${blocks} IP blocks (health: ${JSON.stringify(s.blockCount)}), µs/req`, mr(s.withBlocksUsPerReq, 0)],
        ["difference per round, µs/req (all threads)", mr(s.diffUsPerReq, 1)],
        ["difference per round, µs/req (main thread)", mr(s.diffMainUsPerReq, 1)],
        ["difference pooled, µs/req", fmt(s.pooledDiffUsPerReq, 1)],
        [`control: both isolates with 0 blocks, blocked − serve per round, µs/req (all / main)`, `${mr(s.controlDiffUsPerReq, 1)} / ${mr(s.controlDiffMainUsPerReq, 1)}`],
        [`POST ip-blocks while the list grows to ${blocks}, µs/call`, fmt(s.addBlockUsPerCall, 0)],
        ["GET health, first call, ms (all / main)", `${fmt(s.healthFirstMs, 2)} / ${fmt(s.healthFirstMainMs, 2)}`],
        [`GET health, next ${adminCalls}, µs/call (all / main)`, `${fmt(s.healthUsPerCall, 0)} / ${fmt(s.healthMainUsPerCall, 0)}`],
      ],
      ["l"],
    ));
    if (o.failures.length) console.log(`overrides FAILED: ${o.failures.join("; ")}`);
  }

  const failures = (results.sync.reduce((s, r) => s + r.failures.length, 0)) + (results.overrides?.failures.length ?? 0);
  console.log(`
- A tick is one scheduled() of the "cron" worker, fired through Miniflare's proxy (the "noop tick"
  is that floor: a JS worker with an empty scheduled()), up to its config_check event and idle.
  "sync new B1" = fetch B1 (200), decode, verify the Ed25519 signature, compile the config, join and
  decode the snapshot, write shards, version, history and pointer, serve it in that isolate
  (and the snapshot store's refresh for the new manifest); the KV simulator's CPU (a worker in
  the same workerd process) is included. "304": the Registry answered Not Modified. "unchanged":
  a 200 whose bundle (signed again, by the rotation key) has the active version id. "sync new
  B2": another new bundle right after, in the same cron isolate (V8 has tiered up the hot code by
  then: the steady cost of a sync). "V8 bg": V8's background threads, mostly TurboFan
  recompiling hot wasm once per isolate; which step pays it depends on when code turns hot.
- "1st tick (B0, cold isolate)": the first tick of a fresh cron isolate, which also syncs (there
  is no earlier version).
- "1st req after switch": the "serve" isolate (it did not run the sync) after its refresh
  interval: reads the pointer and the config, compiles it, loads and decodes the snapshot.`);
  if (failures) console.log(`WARNING: ${failures} failed checks (see JSON)`);

  writeResult(outDir, "registry-sync", startedAt, {
    startedAt: startedAt.toISOString(),
    env,
    loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)),
    build: { wasmSha256: build.wasmSha256, builtAt: build.builtAt },
    options: { runs, sizes: sizeList, requests, overrideRounds: oRounds, overrideRequests: oPerRound, blocks, adminCalls },
    summary,
    results: { ...results, sync: results.sync.map((r) => ({ ...r })) },
  });
  console.log(JSON.stringify({ bench: "registry-sync", startedAt: startedAt.toISOString(), git: env.gitHead, loadavg: env.loadavgAtStart, loadavgAtEnd: os.loadavg().map((x) => +x.toFixed(2)), wasmSha256: build.wasmSha256, summary }));
  if (failures) throw new Error(`${failures} failed checks`);
}

await runMain(main);
