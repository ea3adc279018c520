// Shared pieces of the load benchmarks (run.mjs, auth.mjs, profile*.mjs): the child-process
// registry and cleanup, the backend, workerd with generated capnp configs, the load-generator
// child, CPU counters from /proc, a minimal inspector (CDP) client, and output helpers.

import { spawn, spawnSync, fork } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, "../..");
export const WORKERD = path.join(ROOT, "node_modules/workerd/bin/workerd");
export const BUILD = path.join(ROOT, "worker/build");
// auth.mjs: the worker built with the `wasm-crypto` feature (RSA/EC/EdDSA verified in wasm).
export const BUILD_WASM_CRYPTO = path.join(ROOT, "worker/build-wasm-crypto");
// Target e (run.mjs --rust-baseline): the minimal Rust pass-through worker and its build output.
export const RS_PASSTHROUGH = path.join(ROOT, "bench/rs-passthrough");
export const RS_BUILD = path.join(RS_PASSTHROUGH, "build");
export const COMPAT_DATE = "2026-04-26"; // wrangler.toml's compatibility_date
export const REQUEST_PATH = "/bench-api/v1/items/42";
// Must equal the body backend.mjs sends (every target is checked against it before the rounds).
export const BACKEND_BODY = JSON.stringify({ id: "42", name: "bench item", price: 9.5, tags: ["a", "b"], ok: true });

// ------------------------------------------------------------------- child process registry

export const children = new Set(); // { name, proc, extraPids: [] }
let cleaningUp = false;

export function track(name, proc) {
  const entry = { name, proc, extraPids: [] };
  children.add(entry);
  proc.on("exit", () => children.delete(entry));
  return entry;
}

export function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function pidsOf(entry) {
  return [entry.proc.pid, ...entry.extraPids].filter((p) => p !== undefined);
}

/** Ends every process this script started: SIGTERM, then SIGKILL after `graceMs`. Bounded. */
export async function killAll(graceMs = 1000) {
  const pids = [...children].flatMap(pidsOf);
  for (const pid of pids) try { process.kill(pid, "SIGTERM"); } catch {}
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && pids.some(alive)) await sleep(50);
  for (const pid of pids) if (alive(pid)) try { process.kill(pid, "SIGKILL"); } catch {}
  children.clear(); // all gone: never signal these (possibly reused) pids again
}

export function killAllSync() {
  for (const entry of children) for (const pid of pidsOf(entry)) try { process.kill(pid, "SIGKILL"); } catch {}
}

/** True once cleanup has begun (errors from children going away are then expected). */
export const isCleaningUp = () => cleaningUp;

export async function cleanupAndExit(code, why) {
  if (cleaningUp) return;
  cleaningUp = true;
  if (why) console.error(`\n${why}; stopping all child processes`);
  await killAll();
  process.exit(code);
}

/** Installs the handlers that end every child process on exit, signals and errors. */
export function installCleanupHandlers() {
  process.on("exit", killAllSync);
  process.on("SIGINT", () => cleanupAndExit(130, "SIGINT"));
  process.on("SIGTERM", () => cleanupAndExit(143, "SIGTERM"));
  process.on("SIGHUP", () => cleanupAndExit(129, "SIGHUP"));
  process.on("uncaughtException", (e) => { console.error(e); cleanupAndExit(1, "error"); });
  process.on("unhandledRejection", (e) => { console.error(e); cleanupAndExit(1, "error"); });
}

// -------------------------------------------------------------------------------- utilities

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const CLK_TCK = (() => {
  const r = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const v = Number(r.stdout?.trim());
  return Number.isFinite(v) && v > 0 ? v : 100;
})();

/** CPU time (user+system, all threads) of a process so far, in ms; 0 if it is gone. */
export function procCpuMs(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK; // utime, stime
  } catch {
    return 0;
  }
}

/** Whole-machine CPU counters from /proc/stat, in ms. */
export function machineCpu() {
  const line = fs.readFileSync("/proc/stat", "utf8").split("\n")[0];
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = v[3] + v[4];
  return { totalMs: (total * 1000) / CLK_TCK, busyMs: ((total - idle) * 1000) / CLK_TCK };
}

export const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export function sha256(file) {
  return createHash("sha256").update(fs.readFileSync(file)).digest("hex").slice(0, 16);
}

// ---------------------------------------------------------------------------------- backend

export async function startBackend(procs) {
  const port = await freePort();
  const proc = fork(path.join(HERE, "backend.mjs"), [String(port), String(procs)], {
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const entry = track("backend", proc);
  const ready = await withTimeout(
    new Promise((resolve, reject) => {
      proc.on("message", (m) => m?.type === "ready" && resolve(m));
      proc.on("exit", (code) => reject(new Error(`backend exited early (${code})`)));
    }),
    15_000,
    "backend start",
  );
  entry.extraPids = ready.pids.filter((p) => p !== proc.pid);
  return { url: `http://127.0.0.1:${port}`, port, pids: ready.pids };
}

// ---------------------------------------------------------------------------------- workerd

/** Checks for workerd and builds the worker (scripts/build-worker.sh) if worker/build lacks it. */
export function ensureBuild() {
  if (!fs.existsSync(WORKERD)) throw new Error(`no workerd at ${WORKERD} (npm ci?)`);
  if (!fs.existsSync(path.join(BUILD, "index.js")) || !fs.existsSync(path.join(BUILD, "index_bg.wasm"))) {
    console.log("worker/build is missing: running scripts/build-worker.sh …");
    const r = spawnSync("bash", [path.join(ROOT, "scripts/build-worker.sh")], { cwd: ROOT, stdio: "inherit", timeout: 30 * 60_000 });
    if (r.status !== 0) throw new Error("scripts/build-worker.sh failed");
  }
}

/**
 * Checks for workerd and builds the worker into `buildDir` (worker/<name>) with
 * scripts/build-worker.sh and `buildArgs` when `force`, or when index.js or index_bg.wasm is
 * missing there. E.g. (BUILD_WASM_CRYPTO, ["--out-dir", "build-wasm-crypto", "--features", "wasm-crypto"]).
 */
export function ensureWorkerBuild(buildDir, buildArgs = [], { force = false } = {}) {
  if (!fs.existsSync(WORKERD)) throw new Error(`no workerd at ${WORKERD} (npm ci?)`);
  const missing = !fs.existsSync(path.join(buildDir, "index.js")) || !fs.existsSync(path.join(buildDir, "index_bg.wasm"));
  if (!force && !missing) return;
  const rel = path.relative(ROOT, buildDir);
  console.log(`${missing ? `${rel} is missing` : `rebuilding ${rel}`}: running scripts/build-worker.sh ${buildArgs.join(" ")} …`);
  const r = spawnSync("bash", [path.join(ROOT, "scripts/build-worker.sh"), ...buildArgs], { cwd: ROOT, stdio: "inherit", timeout: 30 * 60_000 });
  if (r.status !== 0) throw new Error(`scripts/build-worker.sh ${buildArgs.join(" ")} failed`);
}

/**
 * Builds target e, the minimal Rust pass-through worker (bench/rs-passthrough), into
 * bench/rs-passthrough/build/ with worker-build, exactly as scripts/build-worker.sh builds
 * edgegate (release profile of the workspace, installed wasm-bindgen, npm's wasm-opt and
 * esbuild, no downloads). Always runs: cargo and wasm-opt make an up-to-date rebuild cheap
 * (~10 s), and the measured build then matches the source.
 */
export function buildRustPassthrough() {
  if (!fs.existsSync(WORKERD)) throw new Error(`no workerd at ${WORKERD} (npm ci?)`);
  console.log("building the Rust pass-through worker (bench/rs-passthrough, worker-build --release) …");
  const env = {
    ...process.env,
    WASM_BINDGEN_BIN: process.env.WASM_BINDGEN_BIN ?? "wasm-bindgen",
    WASM_OPT_BIN: process.env.WASM_OPT_BIN ?? path.join(ROOT, "node_modules/.bin/wasm-opt"),
    ESBUILD_BIN: process.env.ESBUILD_BIN ?? path.join(ROOT, "node_modules/@esbuild/linux-x64/bin/esbuild"),
    WRANGLER_SEND_METRICS: "false",
    PATH: `${path.join(process.env.HOME ?? "", ".cargo/bin")}:${process.env.PATH}`,
  };
  const r = spawnSync("worker-build", ["--release"], { cwd: RS_PASSTHROUGH, env, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8", maxBuffer: 64 << 20, timeout: 20 * 60_000 });
  if (r.status !== 0 || !fs.existsSync(path.join(RS_BUILD, "index.js")) || !fs.existsSync(path.join(RS_BUILD, "index_bg.wasm"))) {
    throw new Error(`worker-build in ${RS_PASSTHROUGH} failed (${r.error?.message ?? r.status ?? r.signal}):\n${(r.stderr ?? "").slice(-4000)}`);
  }
}

export function capnpString(s) {
  return JSON.stringify(s); // plain ASCII paths/URLs: JSON's escaping is valid Cap'n Proto text
}

/**
 * Writes the workerd configs and the files they embed into `dir`; returns the config paths.
 * With `rustPassthrough`, also target e's config (needs bench/rs-passthrough/build).
 */
export function writeWorkerdConfigs(dir, backendUrl, { rustPassthrough = false } = {}) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  // Snapshot the built worker so a concurrent rebuild cannot mix index.js and index_bg.wasm.
  fs.copyFileSync(path.join(BUILD, "index.js"), path.join(dir, "index.js"));
  fs.copyFileSync(path.join(BUILD, "index_bg.wasm"), path.join(dir, "index_bg.wasm"));
  fs.copyFileSync(path.join(HERE, "passthrough-worker.mjs"), path.join(dir, "passthrough-worker.mjs"));
  fs.copyFileSync(path.join(HERE, "kv-worker.mjs"), path.join(dir, "kv-worker.mjs"));
  if (rustPassthrough) {
    // Same module names as edgegate's (index.js imports "./index_bg.wasm"), other files on disk.
    fs.mkdirSync(path.join(dir, "rs-passthrough"));
    fs.copyFileSync(path.join(RS_BUILD, "index.js"), path.join(dir, "rs-passthrough/index.js"));
    fs.copyFileSync(path.join(RS_BUILD, "index_bg.wasm"), path.join(dir, "rs-passthrough/index_bg.wasm"));
  }

  const gatewayConfig = {
    pools: { "bench-backend": { instances: [{ url: backendUrl }] } },
    apis: [
      {
        name: "bench",
        base_path: "/bench-api",
        versions: [{ name: "v1", pool: "bench-backend" }],
        routes: [{ name: "get-item", methods: ["GET"], path: "/items/{id}" }],
      },
    ],
  };
  fs.writeFileSync(path.join(dir, "gateway-config.json"), JSON.stringify(gatewayConfig, null, 2));
  fs.writeFileSync(
    path.join(dir, "kv-seed.json"),
    JSON.stringify({ "config:active": "bench-1", "config:version:bench-1": JSON.stringify(gatewayConfig) }),
  );

  const header = 'using Workerd = import "/workerd/workerd.capnp";\n';
  // Loopback and private addresses must be allowed explicitly; the default outbound is public only.
  const internet = '(name = "internet", network = (allow = ["public", "private", "local"]))';
  const socket = '(name = "http", address = "127.0.0.1:0", http = (), service = "main")';

  const passthrough = `${header}
const config :Workerd.Config = (
  services = [(name = "main", worker = .worker), ${internet}],
  sockets = [${socket}],
);
const worker :Workerd.Worker = (
  modules = [(name = "worker.mjs", esModule = embed "passthrough-worker.mjs")],
  compatibilityDate = ${capnpString(COMPAT_DATE)},
  bindings = [(name = "BACKEND", text = ${capnpString(backendUrl)})],
  globalOutbound = "internet",
);
`;
  const edgegate = edgegateCapnp();
  fs.writeFileSync(path.join(dir, "passthrough.capnp"), passthrough);
  // The same pass-through worker, also logging an access-log-like line per request.
  fs.writeFileSync(
    path.join(dir, "passthrough-log.capnp"),
    passthrough.replace(`bindings = [(name = "BACKEND"`, `bindings = [(name = "LOG", text = "1"), (name = "BACKEND"`),
  );
  fs.writeFileSync(path.join(dir, "edgegate.capnp"), edgegate);
  // Target e: the Rust pass-through, loaded like edgegate (index.js + index_bg.wasm), with the
  // same BACKEND binding as the JS pass-through.
  const rsPassthrough = `${header}
const config :Workerd.Config = (
  services = [(name = "main", worker = .worker), ${internet}],
  sockets = [${socket}],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "rs-passthrough/index.js"),
    (name = "index_bg.wasm", wasm = embed "rs-passthrough/index_bg.wasm"),
  ],
  compatibilityDate = ${capnpString(COMPAT_DATE)},
  bindings = [(name = "BACKEND", text = ${capnpString(backendUrl)})],
  globalOutbound = "internet",
);
`;
  if (rustPassthrough) fs.writeFileSync(path.join(dir, "rs-passthrough.capnp"), rsPassthrough);
  return {
    passthrough: path.join(dir, "passthrough.capnp"),
    passthroughLog: path.join(dir, "passthrough-log.capnp"),
    edgegate: path.join(dir, "edgegate.capnp"),
    rsPassthrough: rustPassthrough ? path.join(dir, "rs-passthrough.capnp") : null,
  };
}

const CAPNP_HEADER = 'using Workerd = import "/workerd/workerd.capnp";\n';
const CAPNP_INTERNET = '(name = "internet", network = (allow = ["public", "private", "local"]))';
const CAPNP_SOCKET = '(name = "http", address = "127.0.0.1:0", http = (), service = "main")';

/**
 * The capnp config of an edgegate workerd process: the worker (index.js + index_bg.wasm next to
 * the config) and, as a second worker in the same process, the in-memory KV namespace
 * (kv-worker.mjs serving workerd's KV binding protocol from kv-seed.json). The gateway reads
 * KV once per refresh interval. `textBindings`: extra `text` bindings (Worker vars/secrets).
 */
export function edgegateCapnp(textBindings = {}) {
  const extra = Object.entries(textBindings)
    .map(([name, value]) => `\n    (name = ${capnpString(name)}, text = ${capnpString(value)}),`)
    .join("");
  return `${CAPNP_HEADER}
const config :Workerd.Config = (
  services = [(name = "main", worker = .worker), (name = "kv", worker = .kv), ${CAPNP_INTERNET}],
  sockets = [${CAPNP_SOCKET}],
);
const worker :Workerd.Worker = (
  modules = [
    (name = "index.js", esModule = embed "index.js"),
    (name = "index_bg.wasm", wasm = embed "index_bg.wasm"),
  ],
  compatibilityDate = ${capnpString(COMPAT_DATE)},
  bindings = [
    (name = "EDGEGATE_CONFIG", kvNamespace = "kv"),
    (name = "EDGEGATE_CONFIG_REFRESH_MS", text = "5000"),${extra}
  ],
  globalOutbound = "internet",
);
const kv :Workerd.Worker = (
  modules = [
    (name = "kv-worker.mjs", esModule = embed "kv-worker.mjs"),
    (name = "kv-seed.json", json = embed "kv-seed.json"),
  ],
  compatibilityDate = ${capnpString(COMPAT_DATE)},
);
`;
}

/**
 * Writes one edgegate workerd process's directory `dir` (emptied first): copies of the build's
 * index.js and index_bg.wasm (a snapshot, so a concurrent rebuild cannot mix files), the KV
 * worker seeded with `gatewayConfig` as the active version, and edgegate.capnp. Returns the
 * config path and the hashes of the files measured.
 */
export function writeEdgegateWorkerd(dir, { buildDir = BUILD, gatewayConfig, textBindings = {} }) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(buildDir, "index.js"), path.join(dir, "index.js"));
  fs.copyFileSync(path.join(buildDir, "index_bg.wasm"), path.join(dir, "index_bg.wasm"));
  fs.copyFileSync(path.join(HERE, "kv-worker.mjs"), path.join(dir, "kv-worker.mjs"));
  fs.writeFileSync(path.join(dir, "gateway-config.json"), JSON.stringify(gatewayConfig, null, 2));
  fs.writeFileSync(
    path.join(dir, "kv-seed.json"),
    JSON.stringify({ "config:active": "bench-1", "config:version:bench-1": JSON.stringify(gatewayConfig) }),
  );
  const config = path.join(dir, "edgegate.capnp");
  fs.writeFileSync(config, edgegateCapnp(textBindings));
  return {
    config,
    build: {
      dir: path.relative(ROOT, buildDir),
      indexJsSha256: sha256(path.join(dir, "index.js")),
      wasmSha256: sha256(path.join(dir, "index_bg.wasm")),
      wasmBytes: fs.statSync(path.join(dir, "index_bg.wasm")).size,
      builtAt: fs.statSync(path.join(buildDir, "index_bg.wasm")).mtime.toISOString(),
    },
  };
}

/**
 * Starts `workerd serve <config>` with its socket on an ephemeral port, learned from the
 * control fd. stdout (the workers' console.log, e.g. edgegate's access log) goes to /dev/null;
 * the last stderr lines are kept for error messages.
 */
export async function startWorkerd(name, configPath, { inspector = false } = {}) {
  const args = ["serve", "--control-fd=3", ...(inspector ? ["--inspector-addr=127.0.0.1:0"] : []), configPath];
  const proc = spawn(WORKERD, args, {
    cwd: path.dirname(configPath),
    stdio: ["ignore", "ignore", "pipe", "pipe"],
  });
  track(`workerd-${name}`, proc);
  const stderrTail = [];
  proc.stderr.setEncoding("utf8").on("data", (d) => {
    stderrTail.push(d);
    while (stderrTail.length > 20) stderrTail.shift();
  });
  let inspectorPort = null;
  const port = await withTimeout(
    new Promise((resolve, reject) => {
      let buf = "";
      proc.stdio[3].setEncoding("utf8").on("data", (d) => {
        buf += d;
        for (const line of buf.split("\n").slice(0, -1)) {
          try {
            const m = JSON.parse(line);
            if (m.event === "listen-inspector") inspectorPort = m.port;
            if (m.event === "listen" && m.socket === "http") resolve(m.port);
          } catch {}
        }
        buf = buf.slice(buf.lastIndexOf("\n") + 1);
      });
      proc.on("exit", (code, sig) => reject(new Error(`workerd ${name} exited (${code ?? sig}): ${stderrTail.join("")}`)));
    }),
    30_000,
    `workerd ${name} start`,
  );
  return { pid: proc.pid, url: `http://127.0.0.1:${port}`, inspectorPort, stderrTail };
}

// ------------------------------------------------------------------------ inspector (CDP)

/**
 * A minimal Chrome DevTools protocol client over an inspector WebSocket (workerd
 * `--inspector-addr`; the `ws` package from node_modules): `send(method, params)` → result.
 */
export async function inspector(url) {
  const WebSocket = createRequire(import.meta.url)("ws");
  const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 30 });
  await withTimeout(new Promise((res, rej) => { ws.once("open", res); ws.once("error", rej); }), 10_000, `connect ${url}`);
  let nextId = 1;
  const pending = new Map();
  ws.on("message", (data) => {
    const m = JSON.parse(data.toString());
    const p = m.id !== undefined && pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    m.error ? p.reject(new Error(`${p.method}: ${JSON.stringify(m.error)}`)) : p.resolve(m.result);
  });
  return {
    send(method, params = {}) {
      const id = nextId++;
      const p = new Promise((resolve, reject) => pending.set(id, { resolve, reject, method }));
      ws.send(JSON.stringify({ id, method, params }));
      return withTimeout(p, 60_000, method);
    },
    close: () => ws.close(),
  };
}

// --------------------------------------------------------------------------- load generator

export async function startLoadGen() {
  const proc = fork(path.join(HERE, "load-child.mjs"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  track("loadgen", proc);
  const pending = new Map();
  let nextId = 1;
  proc.on("message", (m) => {
    const p = pending.get(m?.id);
    if (!p) return;
    pending.delete(m.id);
    m.type === "result" ? p.resolve(m) : p.reject(new Error(`load generator: ${m.error}`));
  });
  proc.on("exit", (code) => {
    for (const p of pending.values()) p.reject(new Error(`load generator exited (${code})`));
    pending.clear();
  });
  await withTimeout(new Promise((r) => proc.on("message", (m) => m?.type === "ready" && r())), 15_000, "load generator start");
  return {
    pid: proc.pid,
    run(params) {
      const id = nextId++;
      const p = new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
      proc.send({ type: "run", id, ...params });
      // Bounded: the run takes `duration` seconds; allow generous slack for the last requests.
      return withTimeout(p, (params.duration + params.timeout + 30) * 1000, `load run on ${params.url}`);
    },
  };
}


export async function check(target) {
  // Bounded retries: the first edgegate request also reads KV and compiles the config.
  let last;
  for (let i = 0; i < 10; i++) {
    try {
      const res = await fetch(target.url, { signal: AbortSignal.timeout(5000) });
      const body = await res.text();
      if (res.status === 200 && body === BACKEND_BODY) {
        if (target.key === "c" && !res.headers.get("x-request-id")) throw new Error("no x-request-id: not the gateway?");
        return;
      }
      last = new Error(`${target.name}: HTTP ${res.status}: ${body.slice(0, 300)}`);
    } catch (e) {
      last = e;
    }
    await sleep(300);
  }
  throw last;
}

export function fmt(n, digits = 0) {
  return n === undefined || n === null || Number.isNaN(n) ? "-" : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function table(headers, rows, align) {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => ((align?.[i] ?? "r") === "l" ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join("  ");
  return [line(headers), w.map((x) => "-".repeat(x)).join("  "), ...rows.map(line)].join("\n");
}

