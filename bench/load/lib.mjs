// Shared pieces of the load benchmarks (run.mjs, auth.mjs, profile*.mjs): option parsing, the
// main/cleanup wrapper and the child-process registry, the backend, workerd with generated capnp
// configs, the JWT-auth gateway config and JWKS mock, the load-generator child, the measured
// round loop and its per-target summary, CPU counters from /proc, a minimal inspector (CDP)
// client, and output helpers.

import { spawn, spawnSync, fork } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import zlib from "node:zlib";

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

/**
 * Runs a script's `main` with the cleanup handlers installed; then ends every child process and
 * exits 0, or on an error prints it and exits 1 (unless cleanup has already begun).
 */
export async function runMain(main) {
  installCleanupHandlers();
  try {
    await main();
    await cleanupAndExit(0);
  } catch (e) {
    if (!isCleaningUp()) {
      console.error(e?.stack || e);
      await cleanupAndExit(1, "error");
    }
  }
}

/** Global bound on the whole run, whatever happens: exits 2 after twice the estimate + 120 s. */
export function boundRun(estimateS) {
  const limitS = estimateS * 2 + 120;
  setTimeout(() => cleanupAndExit(2, `run exceeded ${Math.round(limitS)} s`), limitS * 1000).unref();
}

// ---------------------------------------------------------------------------------- options

// The flags several scripts share, by name (each script picks the ones it accepts).
const COMMON_FLAGS = {
  duration: { type: "string", short: "d" },
  connections: { type: "string", short: "c" },
  rounds: { type: "string", short: "r" },
  warmup: { type: "string", short: "w" },
  "backend-procs": { type: "string" },
  "no-identity-headers": { type: "boolean" },
  out: { type: "string" },
  help: { type: "boolean", short: "h" },
};

/** parseArgs of the command line: the COMMON_FLAGS named in `common`, plus `extra`; → values. */
export function parseBenchArgs(common, extra = {}) {
  const options = Object.fromEntries(common.map((name) => [name, COMMON_FLAGS[name]]));
  return parseArgs({ options: { ...options, ...extra } }).values;
}

/**
 * A numeric option: `raw` (a string from a flag or the environment; undefined → `def`) as a
 * number in [min, max], or an error "`label`: raw is not in [min, max]".
 */
export function numOption(raw, def, min, max, label) {
  const v = raw === undefined ? def : Number(raw);
  if (!Number.isFinite(v) || v < min || v > max) throw new Error(`${label}: ${raw} is not in [${min}, ${max}]`);
  return v;
}

/** numOption from --`flag`, else the environment variable `env` (error label "--flag / ENV"). */
export const numFlag = (values, flag, env, def, min, max) => numOption(values[flag] ?? process.env[env], def, min, max, `--${flag} / ${env}`);

/** --backend-procs / BENCH_BACKEND_PROCS: default 2 (fewer on a 1-CPU machine). */
export const backendProcsOption = (values) => Math.round(numFlag(values, "backend-procs", "BENCH_BACKEND_PROCS", Math.min(2, os.cpus().length), 1, 64));

/** --no-identity-headers / BENCH_NO_IDENTITY_HEADERS=1 → false. */
export const identityHeadersOption = (values) => !values["no-identity-headers"] && process.env.BENCH_NO_IDENTITY_HEADERS !== "1";

/** --out / BENCH_OUT, default bench/out, as an absolute path. */
export const outDirOption = (values) => path.resolve(values.out ?? process.env.BENCH_OUT ?? path.join(ROOT, "bench/out"));

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

/** `git args…` in the repository → trimmed stdout. */
export const git = (args) => spawnSync("git", args, { cwd: ROOT, encoding: "utf8" }).stdout?.trim();

/** The machine and versions a run reports (JSON `env`): node, workerd, CPUs, load, git state. */
export function benchEnv() {
  const workerdVersion = spawnSync(WORKERD, ["--version"], { encoding: "utf8" }).stdout.trim();
  return {
    node: process.version,
    workerd: workerdVersion,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    loadavgAtStart: os.loadavg().map((x) => +x.toFixed(2)),
    gitHead: git(["rev-parse", "--short", "HEAD"]),
    gitDirty: Boolean(git(["status", "--porcelain", "--", "worker", "shared"])),
  };
}

/** The line that shows benchEnv(): workerd version, node, CPUs, load average. */
export const envLine = (env) => `${env.workerd}, node ${env.node}, ${env.cpus} CPUs, load average at start ${env.loadavgAtStart.join(" ")}`;

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

// ------------------------------------------------------------------ JWT auth (auth*.mjs)

export const ISSUER = "https://idp.bench.example/";
export const AUDIENCE = "edgegate-bench";
/** Per algorithm, the path prefix of its auth route: /bench-api/v1/<prefix>/items/{id}. */
export const ROUTE_PREFIX = { RS256: "rs", ES256: "es", EdDSA: "ed" };

/**
 * The gateway config of the auth benchmarks: the no-auth route /items/{id} and, per algorithm
 * in `algs`, a route /<prefix>/items/{id} that requires a JWT from the mock IdP at `jwksUrl`.
 */
export function authGatewayConfig(backendUrl, jwksUrl, identityHeaders, algs) {
  const authRoute = (alg) => ({
    name: `get-item-${ROUTE_PREFIX[alg]}`,
    methods: ["GET"],
    path: `/${ROUTE_PREFIX[alg]}/items/{id}`,
    policies: { auth: { accept: ["jwt"], jwt: { providers: ["bench-idp"], audiences: [AUDIENCE], algorithms: [alg] } } },
  });
  return {
    // Default identity headers (x-edgegate-subject, -issuer, -application, -scopes, -auth-method)
    // unless --no-identity-headers.
    ...(!identityHeaders && { gateway: { identity_headers: { subject: "", issuer: "", application: "", scopes: "", method: "" } } }),
    pools: { "bench-backend": { instances: [{ url: backendUrl }] } },
    identity_providers: { "bench-idp": { issuer: ISSUER, jwks_uri: jwksUrl } },
    apis: [
      {
        name: "bench",
        base_path: "/bench-api",
        versions: [{ name: "v1", pool: "bench-backend" }],
        routes: [{ name: "get-item", methods: ["GET"], path: "/items/{id}" }, ...algs.map(authRoute)],
      },
    ],
  };
}

/** GET `url`, with `Authorization: Bearer <token>` if a token → { status, body, headers }. */
export async function getWithToken(url, token) {
  const res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {}, signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

/**
 * The mock IdP on 127.0.0.1: GET /jwks and /jwks/<anything> → `jwks` (the JWK set),
 * max-age=3600; counts requests per path (`counts`; `total()` sums them).
 */
export async function startJwksServer(jwks) {
  const counts = {};
  const body = JSON.stringify(jwks);
  const server = http.createServer((req, res) => {
    counts[req.url] = (counts[req.url] ?? 0) + 1;
    if (req.method === "GET" && (req.url === "/jwks" || req.url.startsWith("/jwks/"))) {
      res.writeHead(200, { "content-type": "application/json", "cache-control": "public, max-age=3600" });
      res.end(body);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve, reject) => server.on("error", reject).listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    counts,
    total: () => Object.values(counts).reduce((a, b) => a + b, 0),
    close: () => withTimeout(new Promise((r) => { server.close(r); server.closeAllConnections(); }), 2000, "JWKS server close").catch(() => {}),
  };
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

// --------------------------------------------------------------------- rounds and summary

/** Warm-up, not measured: each target for `seconds`; prints "warm-up: <label> <req/s> req/s; …". */
export async function warmUp(loadgen, targets, params, seconds, label) {
  if (seconds <= 0) return;
  process.stdout.write("warm-up:");
  for (const t of targets) {
    const r = await loadgen.run(params(t, seconds));
    process.stdout.write(` ${label(t)} ${fmt(r.rps)} req/s;`);
  }
  process.stdout.write("\n");
}

/**
 * The measured rounds: `rounds` times, each target in turn (interleaved), after a `pauseMs` pause
 * (the previous run's connections close), loaded for `duration` s with `params(t, duration)`;
 * CPU of the target's workerd process (t.workerdPid; none: null fields), of the backend
 * (`backendPids`), of the load generator and of the machine around each run. Prints a line per
 * run (name and req/s padded to `pad`); calls `onRun(t, r)` with each load result.
 * Returns [{ rec, hist }]: the JSON record and the run's latency histogram.
 */
export async function runRounds({ rounds, targets, loadgen, backendPids, params, duration, pauseMs, pad: [namePad, rpsPad], onRun }) {
  const out = [];
  for (let round = 1; round <= rounds; round++) {
    for (const t of targets) {
      await sleep(pauseMs); // let the previous round's connections close
      const wd0 = t.workerdPid ? procCpuMs(t.workerdPid) : 0;
      const be0 = backendPids.reduce((s, p) => s + procCpuMs(p), 0);
      const m0 = machineCpu();
      const r = await loadgen.run(params(t, duration));
      const wd1 = t.workerdPid ? procCpuMs(t.workerdPid) : 0;
      const be1 = backendPids.reduce((s, p) => s + procCpuMs(p), 0);
      const m1 = machineCpu();
      const served = r.ok + r.non2xx;
      const wallMs = m1.totalMs - m0.totalMs; // all CPUs
      const ourMs = (wd1 - wd0) + (be1 - be0) + r.loadgenCpuMs;
      onRun?.(t, r);
      const rec = {
        round,
        target: t.key,
        name: t.name,
        ...r,
        histogram: undefined,
        workerdCpuMs: t.workerdPid ? wd1 - wd0 : null,
        workerdCpuUsPerReq: t.workerdPid ? ((wd1 - wd0) * 1000) / served : null,
        // Share of one core the workerd process used during the round (~100%: it is saturated,
        // and throughput ≈ 1 / CPU per request).
        workerdUtilPct: t.workerdPid ? (100 * (wd1 - wd0)) / (r.durationS * 1000) : null,
        backendCpuUsPerReq: ((be1 - be0) * 1000) / served,
        loadgenCpuUsPerReq: (r.loadgenCpuMs * 1000) / served,
        machineBusyPct: (100 * (m1.busyMs - m0.busyMs)) / wallMs,
        // Busy CPU not spent in our processes (other jobs on the machine, kernel work not
        // charged to a process), as % of all CPUs: a noise indicator.
        otherBusyPct: (100 * Math.max(0, m1.busyMs - m0.busyMs - ourMs)) / wallMs,
      };
      out.push({ rec, hist: r.histogram });
      console.log(
        `round ${round} ${t.key} ${t.name.padEnd(namePad)} ${fmt(r.rps).padStart(rpsPad)} req/s  p50 ${fmt(r.latencyMs.p50, 2)} ms  p99 ${fmt(r.latencyMs.p99, 2)} ms` +
          (t.workerdPid ? `  workerd ${fmt(rec.workerdCpuUsPerReq)} µs/req, ${fmt(rec.workerdUtilPct)}% of a core` : "") +
          `  machine busy ${fmt(rec.machineBusyPct)}%` +
          (r.errors || r.non2xx || r.timeouts || r.mismatches ? `  ERRORS ${r.errors} non2xx ${r.non2xx} timeouts ${r.timeouts} mismatches ${r.mismatches}` : ""),
      );
    }
  }
  return out;
}

/**
 * Per target (by key), the summary of its runRounds records: throughput median and range,
 * latency from the merged histograms, failures, CPU per request (workerd pooled over the rounds,
 * the rest medians). `describe(t)`: the fields that come first (default: the name);
 * `cpuByRound`: also workerdCpuUsPerReqByRound.
 */
export function summariseRounds(rounds, targets, { describe = (t) => ({ name: t.name }), cpuByRound = false } = {}) {
  const hdr = createRequire(import.meta.url)("hdr-histogram-js");
  const summary = {};
  for (const t of targets) {
    const mine = rounds.filter((x) => x.rec.target === t.key);
    const merged = hdr.build({ bitBucketSize: 64, autoResize: true, lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: 3 });
    for (const x of mine) merged.add(hdr.decodeFromCompressedBase64(x.hist));
    const served = mine.reduce((s, x) => s + x.rec.ok + x.rec.non2xx, 0);
    const sum = (k) => mine.reduce((s, x) => s + (x.rec[k] ?? 0), 0);
    summary[t.key] = {
      ...describe(t),
      rounds: mine.length,
      rpsMedian: median(mine.map((x) => x.rec.rps)),
      rpsMin: Math.min(...mine.map((x) => x.rec.rps)),
      rpsMax: Math.max(...mine.map((x) => x.rec.rps)),
      // Latency over all rounds' responses (merged histogram, µs resolution).
      p50Ms: merged.getValueAtPercentile(50) / 1000,
      p99Ms: merged.getValueAtPercentile(99) / 1000,
      requests: served,
      errors: sum("errors"), non2xx: sum("non2xx"), timeouts: sum("timeouts"), mismatches: sum("mismatches"),
      // Pooled over the rounds: all CPU / all responses.
      workerdCpuUsPerReq: t.workerdPid ? (sum("workerdCpuMs") * 1000) / served : null,
      ...(cpuByRound && { workerdCpuUsPerReqByRound: mine.map((x) => x.rec.workerdCpuUsPerReq) }),
      workerdUtilPct: t.workerdPid ? median(mine.map((x) => x.rec.workerdUtilPct)) : null,
      backendCpuUsPerReq: median(mine.map((x) => x.rec.backendCpuUsPerReq)),
      loadgenCpuUsPerReq: median(mine.map((x) => x.rec.loadgenCpuUsPerReq)),
      machineBusyPct: median(mine.map((x) => x.rec.machineBusyPct)),
      otherBusyPct: median(mine.map((x) => x.rec.otherBusyPct)),
    };
  }
  return summary;
}

/** Failed requests of a summary row (errors, non-2xx, timeouts, body mismatches). */
export const failed = (s) => s.errors + s.non2xx + s.timeouts + s.mismatches;

/** Prints a warning if any target of `summary` had failed requests. */
export function warnFailed(summary) {
  const totalErrors = Object.values(summary).reduce((s, x) => s + failed(x), 0);
  if (totalErrors) console.log(`WARNING: ${totalErrors} failed requests (see JSON)`);
}

/**
 * Writes `result` to <outDir>/<prefix>-<startedAt>.json and <prefix>-latest.json; prints
 * "JSON: <file> (also <prefix>-latest.json)" and `suffix`.
 */
export function writeResult(outDir, prefix, startedAt, result, suffix = "") {
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const outFile = path.join(outDir, `${prefix}-${stamp}.json`);
  fs.writeFileSync(outFile, JSON.stringify(result, null, 2) + "\n");
  fs.copyFileSync(outFile, path.join(outDir, `${prefix}-latest.json`));
  console.log(`\nJSON: ${path.relative(process.cwd(), outFile) || outFile} (also ${prefix}-latest.json)${suffix}`);
}

/**
 * Runs `attempt` until it resolves, at most `tries` times, 300 ms apart; throws the last error.
 * For start-up checks: the first edgegate request also reads KV and compiles the config.
 */
export async function retrying(attempt, tries = 10) {
  let last;
  for (let i = 0; i < tries; i++) {
    try {
      return await attempt();
    } catch (e) {
      last = e;
    }
    await sleep(300);
  }
  throw last;
}

export async function check(target) {
  return retrying(async () => {
    const res = await fetch(target.url, { signal: AbortSignal.timeout(5000) });
    const body = await res.text();
    if (res.status !== 200 || body !== BACKEND_BODY) throw new Error(`${target.name}: HTTP ${res.status}: ${body.slice(0, 300)}`);
    if (target.key === "c" && !res.headers.get("x-request-id")) throw new Error("no x-request-id: not the gateway?");
  });
}

export function fmt(n, digits = 0) {
  return n === undefined || n === null || Number.isNaN(n) ? "-" : n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function table(headers, rows, align) {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => ((align?.[i] ?? "r") === "l" ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join("  ");
  return [line(headers), w.map((x) => "-".repeat(x)).join("  "), ...rows.map(line)].join("\n");
}

// Shared by cold-start.mjs and registry-sync.mjs: workerd CPU readings and build copies.

// ------------------------------------------------------------------------- CPU of a process

/**
 * A CPU reading of `pid`, in ms: `ms` all live threads (first field of each
 * /proc/<pid>/task/<tid>/schedstat, ns), split into `mainMs` (the thread named "workerd": its
 * event loop, which runs every isolate — the worker's, Miniflare's entry worker, the KV
 * simulator), `v8Ms` (V8's platform worker threads, "V8 DefaultWorke…": background compilation
 * (wasm tier-up to TurboFan, JS optimisation) and GC helpers) and the rest (kj/tokio I/O
 * threads); `statMs` utime+stime of /proc/<pid>/stat (all threads, dead ones too, 1/CLK_TCK
 * resolution), a cross-check.
 */
export function cpuReading(pid) {
  const r = { ms: 0, mainMs: 0, v8Ms: 0, threads: 0 };
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const ms = Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
      const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
      r.ms += ms;
      if (comm === "workerd") r.mainMs += ms;
      else if (comm.startsWith("V8 ")) r.v8Ms += ms;
      r.threads += 1;
    } catch {} // the thread just exited
  }
  r.statMs = procCpuMs(pid);
  return r;
}

/** The differences b − a of two readings (and of the thread count). */
export const cpuDelta = (a, b) => ({
  ms: b.ms - a.ms, mainMs: b.mainMs - a.mainMs, v8Ms: b.v8Ms - a.v8Ms, statMs: b.statMs - a.statMs, threads: b.threads - a.threads,
});

/**
 * Waits until `pid` is idle — its CPU grew by less than 0.3 ms over the last 150 ms — so work a
 * request started in the background (V8 compiling the code it ran) is charged to it; bounded
 * (`boundMs`, 5 s by default). → the reading, and how long it waited.
 */
export async function settledReading(pid, boundMs = 5000) {
  const t0 = Date.now();
  let last = cpuReading(pid);
  for (;;) {
    await sleep(150);
    const now = cpuReading(pid);
    if (now.ms - last.ms < 0.3 || Date.now() - t0 > boundMs) return { ...now, settleMs: Date.now() - t0, settled: now.ms - last.ms < 0.3 };
    last = now;
  }
}

/** workerd processes whose parent is this node process → [{ pid, start }] (start in ticks). */
export function workerdChildren() {
  const out = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
    } catch {
      continue;
    }
    const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (comm === "workerd" && Number(f[1]) === process.pid) out.push({ pid: Number(d), start: Number(f[19]) });
  }
  return out;
}

// --------------------------------------------------------------------------- build copies

/**
 * Copies a build's files (index.js, index_bg.wasm, worker/shim.mjs, package.json) into `dir`,
 * so a concurrent rebuild cannot change what is measured; returns sizes and hashes.
 */
export function snapshotBuild(buildDir, dir) {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.join(dir, "worker"), { recursive: true });
  for (const f of ["index.js", "index_bg.wasm", "worker/shim.mjs", "package.json"]) {
    if (fs.existsSync(path.join(buildDir, f))) fs.copyFileSync(path.join(buildDir, f), path.join(dir, f));
  }
  const size = (f) => {
    const file = path.join(dir, f);
    // GNU gzip -9 (as `gzip -9 -c <file> | wc -c`); node's zlib at level 9 if there is no gzip
    // (its output is ~2% larger).
    const r = spawnSync("gzip", ["-9", "-c", file], { maxBuffer: 64 << 20 });
    const gnu = r.status === 0 ? r.stdout.length : null;
    return { raw: fs.statSync(file).size, gzip9: gnu ?? zlib.gzipSync(fs.readFileSync(file), { level: 9 }).length, gzipTool: gnu ? "gzip -9" : "node zlib level 9" };
  };
  return {
    dir: path.relative(ROOT, buildDir),
    builtAt: fs.statSync(path.join(buildDir, "index_bg.wasm")).mtime.toISOString(),
    wasmSha256: sha256(path.join(dir, "index_bg.wasm")),
    indexJsSha256: sha256(path.join(dir, "index.js")),
    wasm: size("index_bg.wasm"),
    indexJs: size("index.js"),
    shim: path.join(dir, "worker/shim.mjs"),
    root: dir,
  };
}

/**
 * wrangler's own size figure: `wrangler deploy --dry-run` on a temporary copy of wrangler.toml
 * (HEAD's, outside the repo) whose `main` is the snapshot's shim and which has no [build]
 * command (which would rebuild worker/build).
 */
export function wranglerSize(shim, dir) {
  fs.mkdirSync(dir, { recursive: true });
  const lines = [];
  let inBuild = false;
  // The committed wrangler.toml (HEAD), so uncommitted edits elsewhere in the tree do not count.
  const committed = git(["show", "HEAD:wrangler.toml"]);
  for (const line of (committed || fs.readFileSync(path.join(ROOT, "wrangler.toml"), "utf8")).split("\n")) {
    if (/^\s*\[/.test(line)) inBuild = /^\s*\[build\]\s*$/.test(line);
    if (inBuild) continue;
    lines.push(/^main\s*=/.test(line) ? `main = ${JSON.stringify(shim)}` : line);
  }
  const config = path.join(dir, "wrangler.toml");
  fs.writeFileSync(config, lines.join("\n"));
  const r = spawnSync(path.join(ROOT, "node_modules/.bin/wrangler"), ["deploy", "--dry-run", "--config", config, "--outdir", path.join(dir, "out")], {
    cwd: dir,
    encoding: "utf8",
    timeout: 120_000,
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
  });
  const text = `${r.stdout ?? ""}\n${r.stderr ?? ""}`;
  const m = text.match(/Total Upload:\s*([\d.,]+)\s*KiB\s*\/\s*gzip:\s*([\d.,]+)\s*KiB/);
  if (!m) return { error: `wrangler deploy --dry-run gave no size (${r.error?.message ?? r.status}): ${text.slice(-600)}` };
  return { totalKiB: Number(m[1].replace(/,/g, "")), gzipKiB: Number(m[2].replace(/,/g, "")), line: m[0] };
}
