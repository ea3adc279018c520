#!/usr/bin/env node
// Throughput and JWT verification CPU of the edgegate Spin component under the test host, in
// one run with interleaved rounds (issue 7):
//
//   passthrough   the probe component's `GET /fetch?url=…` (spin-sdk 5.2.0: one outbound GET
//                 to the backend, the status and body sent back; no other logic)
//   noauth        edgegate, a route without auth → nginx
//   rs-first      edgegate, RS256 JWT, a different pre-signed token on every request
//                 (signature verified in wasm, then the record written to key-value)
//   rs-repeat     edgegate, RS256 JWT, the same token every time (the shared verified-token
//                 tier: one key-value read of `jwt:v1:<sha256>` instead of the signature check)
//   ed-first / ed-repeat   the same with EdDSA (Ed25519)
//
// Each case sends N sequential keep-alive requests per client (c=1, and c=4 clients sharing
// the N), measures req/s and the client-side p50, and reads the host process's CPU
// (/proc/<pid>/stat utime+stime, all threads) before and after: CPU per request. The
// "verification CPU" is a case's CPU/request minus noauth's in the same round and concurrency
// (median of the per-round differences); the signature check alone is first-seen minus
// repeated, paired the same way. Every response must be 200 (else the run stops).
//
// Backend: nginx on a free port. JWKS: two mock IdPs (tests/support/idp.mjs), one RS256 key
// and one Ed25519 key, Cache-Control max-age=300. Config: seeded into key-value with
// --kv-put-file / --kv-put (no Registry). Hosts: one for the probe, one for edgegate, both up
// for the whole run (the idle one costs nothing). The lazy tick stays at its default (60 s):
// with identity providers configured it reads its lease on every request, in every edgegate
// case alike.
//
// Usage: node spin/bench/auth.mjs [rounds (default 5)] [requests per case (default 1000)]
// Env: SPIN_HOST_BIN, EDGEGATE_SPIN_WASM, PASSTHROUGH_WASM (defaults: <repo>/target/spin-host/…)
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync, rmSync, statSync } from "node:fs";
import { tmpdir, loadavg } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";
import { gzipSync, constants as zc } from "node:zlib";
import http from "node:http";
import { createInterface } from "node:readline";
import { MockIdp } from "../../tests/support/idp.mjs";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const rounds = Number(process.argv[2] ?? 5);
const perCase = Number(process.argv[3] ?? 1000);
const target = process.env.SPIN_HOST_TARGET_DIR ?? join(root, "target/spin-host");
const hostBin = process.env.SPIN_HOST_BIN ?? join(target, "release/edgegate-spin-host");
const gwWasm = process.env.EDGEGATE_SPIN_WASM ?? join(target, "edgegate-spin/wasm32-wasip2/release/edgegate_spin.wasm");
const ptWasm = process.env.PASSTHROUGH_WASM ?? join(target, "probe/wasm32-wasip2/release/spin_probe.wasm");
for (const f of [hostBin, gwWasm, ptWasm]) {
  try { statSync(f); } catch { console.error(`missing ${f} (build it, or set the env variable)`); process.exit(1); }
}
const CONCURRENCY = [1, 4];
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim());
const AUD = "bench";

const work = mkdtempSync(join(tmpdir(), "edgegate-auth-bench-"));
const children = [];
let nginxPid = null;
function cleanup() {
  for (const c of children) {
    try { c.kill("SIGTERM"); } catch {}
  }
  if (nginxPid) {
    try { process.kill(nginxPid, "SIGTERM"); } catch {}
  }
  rmSync(work, { recursive: true, force: true });
}
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(130));

const log = (...a) => console.error(...a);

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
}

function sizes(file) {
  const buf = readFileSync(file);
  return { raw: buf.length, gz: gzipSync(buf, { level: zc.Z_BEST_COMPRESSION }).length };
}

// ---------------------------------------------------------------- backend: nginx

async function startNginx() {
  const port = await freePort();
  const conf = join(work, "nginx.conf");
  writeFileSync(conf, `worker_processes 1;
pid ${work}/nginx.pid;
error_log ${work}/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${work}/nb; proxy_temp_path ${work}/np; fastcgi_temp_path ${work}/nf;
  uwsgi_temp_path ${work}/nu; scgi_temp_path ${work}/ns;
  server { listen 127.0.0.1:${port}; location / { return 200 "a"; } }
}
`);
  execFileSync("nginx", ["-c", conf, "-p", work]);
  nginxPid = Number(readFileSync(join(work, "nginx.pid"), "utf8").trim());
  return `http://127.0.0.1:${port}`;
}

// ---------------------------------------------------------------- the host

async function startHost(wasm, extra) {
  const args = ["--component", wasm, "--allowed-outbound-hosts", "http://127.0.0.1:*", ...extra];
  const child = spawn(hostBin, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stderr = "";
  child.stderr.on("data", (d) => { stderr += d; if (stderr.length > 1e5) stderr = stderr.slice(-5e4); });
  const lines = createInterface({ input: child.stdout });
  const first = await new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`host did not start: ${stderr}`)), 60000);
    lines.once("line", (l) => { clearTimeout(t); res(l); });
    child.once("exit", (code) => rej(new Error(`host exited ${code}: ${stderr}`)));
  });
  // The rest of stdout is the component's access log: drained, counted.
  const host = { child, pid: child.pid, ...JSON.parse(first), lines: 0, stderr: () => stderr };
  lines.on("line", () => { host.lines += 1; });
  return host;
}

function cpuTicks(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
}

// ---------------------------------------------------------------- client

function get(agent, addr, path, headers) {
  return new Promise((res, rej) => {
    const req = http.get({ host: addr.split(":")[0], port: Number(addr.split(":")[1]), path, headers, agent }, (r) => {
      const chunks = [];
      r.on("data", (c) => chunks.push(c));
      r.on("end", () => res({ status: r.statusCode, body: Buffer.concat(chunks).toString() }));
      r.on("error", rej);
    });
    req.on("error", rej);
  });
}

/** N requests over `c` keep-alive connections, each sequential; token(i) gives request i's token. */
async function run(addr, path, token, n, c, pid) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: c });
  // One request per connection first (outside the window), so the window has no connects.
  await Promise.all(Array.from({ length: c }, () => get(agent, addr, path, token ? { authorization: `Bearer ${token(-1)}` } : {})));
  const lat = new Float64Array(n);
  const bad = new Map();
  let next = 0;
  const cpu0 = cpuTicks(pid);
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: c }, async () => {
    for (;;) {
      const i = next++;
      if (i >= n) return;
      const headers = token ? { authorization: `Bearer ${token(i)}` } : {};
      const s = process.hrtime.bigint();
      const r = await get(agent, addr, path, headers);
      lat[i] = Number(process.hrtime.bigint() - s) / 1e6;
      if (r.status !== 200) bad.set(r.status, (bad.get(r.status) ?? 0) + 1);
    }
  }));
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu1 = cpuTicks(pid);
  agent.destroy();
  if (bad.size) throw new Error(`${path}: non-200 answers ${JSON.stringify([...bad])}`);
  lat.sort();
  return { rps: n / wall, p50: lat[Math.floor(n / 2)], cpuMs: ((cpu1 - cpu0) * 1000) / CLK_TCK / n };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

// ---------------------------------------------------------------- main

log(`host ${hostBin}\nedgegate ${gwWasm}\npass-through ${ptWasm}`);
const backend = await startNginx();
const rsIdp = await new MockIdp({ name: "rs" }).start();
const edIdp = await new MockIdp({ name: "ed" }).start();
await rsIdp.addKey("RS256");
await edIdp.addKey("EdDSA");

const jwt = (alg) => ({ accept: ["jwt"], jwt: { providers: [alg === "RS256" ? "rs" : "ed"], audiences: [AUD], algorithms: [alg] } });
const config = {
  identity_providers: {
    rs: { issuer: rsIdp.issuer, jwks_uri: rsIdp.jwksUri },
    ed: { issuer: edIdp.issuer, jwks_uri: edIdp.jwksUri },
  },
  pools: { p: { instances: [{ url: backend }] } },
  apis: [
    { name: "open", base_path: "/open", pool: "p", routes: [{ name: "all", path: "/{*rest}" }] },
    { name: "rs", base_path: "/rs", pool: "p", policies: { auth: jwt("RS256") }, routes: [{ name: "all", path: "/{*rest}" }] },
    { name: "ed", base_path: "/ed", pool: "p", policies: { auth: jwt("EdDSA") }, routes: [{ name: "all", path: "/{*rest}" }] },
  ],
};
const configFile = join(work, "config.json");
writeFileSync(configFile, JSON.stringify(config));

// Tokens: one per first-seen request of every round and concurrency, plus warm-ups.
const exp = Math.floor(Date.now() / 1000) + 6 * 3600;
const sign = (idp, alg) => idp.sign({ alg, claims: { aud: AUD, exp } });
const perRun = rounds * CONCURRENCY.length;
let t = Date.now();
const fresh = {
  RS256: Array.from({ length: perRun }, () => Array.from({ length: perCase }, () => sign(rsIdp, "RS256"))),
  EdDSA: Array.from({ length: perRun }, () => Array.from({ length: perCase }, () => sign(edIdp, "EdDSA"))),
};
const repeated = { RS256: sign(rsIdp, "RS256"), EdDSA: sign(edIdp, "EdDSA") };
log(`signed ${2 * perRun * perCase} tokens in ${((Date.now() - t) / 1000).toFixed(1)} s`);

const pt = await startHost(ptWasm, []);
const gw = await startHost(gwWasm, [
  "--kv-put-file", `default:config:version:bench=${configFile}`,
  "--kv-put", "default:config:active=bench",
]);

// Sanity: each path answers as it should, and a missing token is refused.
const once = async (host, path, token) => {
  const agent = new http.Agent();
  const r = await get(agent, host.http, path, token ? { authorization: `Bearer ${token}` } : {});
  agent.destroy();
  return r;
};
const ptPath = `/fetch?url=${encodeURIComponent(`${backend}/x`)}`;
const checks = [
  [pt, ptPath, null, 200], [gw, "/open/x", null, 200],
  [gw, "/rs/x", null, 401], [gw, "/ed/x", null, 401],
  [gw, "/rs/x", sign(edIdp, "EdDSA"), 401], [gw, "/ed/x", sign(rsIdp, "RS256"), 401],
  [gw, "/rs/x", repeated.RS256, 200], [gw, "/ed/x", repeated.EdDSA, 200],
];
for (const [h, p, tok, want] of checks) {
  const r = await once(h, p, tok);
  if (r.status !== want) throw new Error(`sanity ${p} (token: ${!!tok}): ${r.status} ${r.body}, want ${want}`);
}
log("sanity: pass-through 200, no auth 200, no/wrong-issuer token 401, valid RS256/EdDSA 200");

const CASES = [
  { name: "passthrough", label: "pass-through component (probe /fetch)", host: pt, path: ptPath },
  { name: "noauth", label: "edgegate, no auth", host: gw, path: "/open/x" },
  { name: "rs-first", label: "edgegate, RS256 first-seen", host: gw, path: "/rs/x", alg: "RS256", first: true },
  { name: "rs-repeat", label: "edgegate, RS256 repeated (key-value)", host: gw, path: "/rs/x", alg: "RS256" },
  { name: "ed-first", label: "edgegate, EdDSA first-seen", host: gw, path: "/ed/x", alg: "EdDSA", first: true },
  { name: "ed-repeat", label: "edgegate, EdDSA repeated (key-value)", host: gw, path: "/ed/x", alg: "EdDSA" },
];
const results = {}; // `${case}@${c}` → [{rps, p50, cpuMs}] per round
const loads = [];
let batch = 0;
for (let r = 0; r < rounds; r++) {
  loads.push(loadavg()[0]);
  log(`round ${r + 1}/${rounds} (load ${loadavg().map((x) => x.toFixed(2)).join(" ")})`);
  for (const c of CONCURRENCY) {
    const tokens = { RS256: fresh.RS256[batch], EdDSA: fresh.EdDSA[batch] };
    batch += 1;
    // Rotate the order every round so drift within a round spreads over all cases.
    const order = CASES.map((_, i) => CASES[(i + r) % CASES.length]);
    for (const k of order) {
      let token = null;
      if (k.alg && k.first) {
        const list = tokens[k.alg];
        const warm = sign(k.alg === "RS256" ? rsIdp : edIdp, k.alg);
        token = (i) => (i < 0 ? warm : list[i]);
      } else if (k.alg) {
        token = () => repeated[k.alg];
      }
      const m = await run(k.host.http, k.path, token, perCase, c, k.host.pid);
      (results[`${k.name}@${c}`] ??= []).push(m);
      log(`  c=${c} ${k.name.padEnd(12)} ${m.rps.toFixed(0).padStart(6)} req/s  p50 ${m.p50.toFixed(2)} ms  cpu ${(m.cpuMs * 1000).toFixed(0)} us/req`);
    }
  }
}
loads.push(loadavg()[0]);

// The shared tier really holds the first-seen tokens: count jwt:v1 records in the store.
const keys = JSON.parse((await once({ http: gw.admin }, "/kv/default")).body);
const jwtKeys = keys.filter((k) => k.includes("jwt:v1:")).length;
const kinds = {};
for (const k of keys) {
  const kind = k.replace(/[0-9a-f]{16,}.*$/, "…");
  kinds[kind] = (kinds[kind] ?? 0) + 1;
}
log(`key-value keys by kind: ${JSON.stringify(kinds)}`);

const gs = sizes(gwWasm);
const ps = sizes(ptWasm);
const fmtInt = (x) => Math.round(x).toLocaleString("en-US");
const range = (xs, f) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
const out = [];
out.push(`Rounds: ${rounds}, ${perCase} requests per case and concurrency; load average (1 min) during the run ${range(loads, (x) => x.toFixed(1))}.`);
out.push(`Components: edgegate ${fmtInt(gs.raw)} B (${fmtInt(gs.gz)} B gzip -9); pass-through (probe) ${fmtInt(ps.raw)} B (${fmtInt(ps.gz)} B gzip -9).`);
out.push(`Key-value after the run: ${jwtKeys} jwt:v1 records (${2 * perRun * perCase} first-seen tokens sent, plus warm-ups and checks).`);
out.push(`JWKS fetches: RS256 IdP ${rsIdp.counts.jwks}, EdDSA IdP ${edIdp.counts.jwks}. Access-log lines: ${gw.lines}.`);
out.push("");
out.push("| case | c | req/s (median; range) | p50 ms | host CPU µs/req (median; range) | verification CPU µs/req (case − no auth, same round) | signature check µs/req (first-seen − repeated, same round) |");
out.push("|---|---|---|---|---|---|---|");
for (const c of CONCURRENCY) {
  for (const k of CASES) {
    const ms = results[`${k.name}@${c}`];
    const rps = ms.map((m) => m.rps);
    const cpu = ms.map((m) => m.cpuMs * 1000);
    let diff = "";
    if (k.alg) {
      const base = results[`noauth@${c}`];
      const d = ms.map((m, i) => (m.cpuMs - base[i].cpuMs) * 1000);
      diff = `${fmtInt(median(d))} (${range(d, fmtInt)})`;
    }
    let sig = "";
    if (k.alg && k.first) {
      const rep = results[`${k.name.replace("first", "repeat")}@${c}`];
      const d = ms.map((m, i) => (m.cpuMs - rep[i].cpuMs) * 1000);
      sig = `${fmtInt(median(d))} (${range(d, fmtInt)})`;
    }
    out.push(`| ${k.label} | ${c} | ${fmtInt(median(rps))} (${range(rps, fmtInt)}) | ${median(ms.map((m) => m.p50)).toFixed(2)} | ${fmtInt(median(cpu))} (${range(cpu, fmtInt)}) | ${diff} | ${sig} |`);
  }
}
console.log(out.join("\n"));
if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify({ rounds, perCase, loads, results, sizes: { gw: gs, pt: ps }, jwtKeys }, null, 1));
await Promise.all([rsIdp.close?.(), edIdp.close?.()]);
process.exit(0);
