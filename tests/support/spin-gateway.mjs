// The gateway under test on Spin: the edgegate Spin component (spin/) served by the test host
// (spin-host/, wasmtime), with config in the host's key-value store `default` (seeded and read
// through the host's admin port), the component's stdout captured into the same LogCapture the
// Miniflare gateway uses, and a private redis-server for exact rate limits and the overrides.
//
// startSpinGateway takes startGateway's options (see gateway.mjs) and returns a handle with
// the same interface as the Miniflare Gateway, except what has no Spin counterpart:
// `scheduled()` (no cron on Spin's HTTP trigger), `counter()` (Durable Object internals) and
// `mf` (Miniflare itself) throw a SpinUnsupported error naming the difference.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
// gateway.mjs imports this module too: its exports are used only at call time here.
import { LogCapture, POINTER_KEY, versionKey, registryBindings, kvValue, uniqueId, spinClientAddress } from "./gateway.mjs";
import { request } from "./client.mjs";
import { withTimeout, delay } from "./util.mjs";

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** Where scripts/ensure-spin-host.sh builds the host and the component. */
const SPIN_TARGET_DIR = process.env.SPIN_HOST_TARGET_DIR ?? path.join(REPO_ROOT, "target/spin-host");
/** The test host binary. */
export const SPIN_HOST = process.env.EDGEGATE_SPIN_HOST ?? path.join(SPIN_TARGET_DIR, "release/edgegate-spin-host");
/** The edgegate Spin component (wasm32-wasip2, release). */
export const SPIN_WASM =
  process.env.EDGEGATE_SPIN_WASM ?? path.join(SPIN_TARGET_DIR, "edgegate-spin/wasm32-wasip2/release/edgegate_spin.wasm");
/** redis-server to start privately (or EDGEGATE_TEST_REDIS=redis://… to use a running one). */
const REDIS_SERVER = process.env.EDGEGATE_REDIS_SERVER ?? "redis-server";
const STORE = "default";
/** The lazy tick's lease (shared/src/registry/tick.rs TICK_LEASE_KEY). */
const TICK_LEASE_KEY = "registry:tick-lease";
/** The harness's tick interval: a day, so that only scheduled() fires it. */
const TICK_INTERVAL_S = 86_400;
const VERBOSE = !!process.env.EDGEGATE_TEST_VERBOSE;

/** What a test asked for that the Spin platform does not have. */
export class SpinUnsupported extends Error {
  constructor(what) {
    super(`not available on Spin: ${what}`);
    this.name = "SpinUnsupported";
  }
}

/** Every child process started here, killed when the test process exits. */
const children = new Set();
process.on("exit", () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** Redis servers kept for a persistDir (a restarted gateway keeps its counters). */
const persistentRedis = new Map();

/**
 * Spin variable names for Workers vars/secrets: lower case (spin/README.md "Deployment
 * settings"). Settings with no meaning on Spin (the refresh intervals: every request is a
 * fresh instance) are dropped.
 */
const NO_MEANING_ON_SPIN = new Set(["EDGEGATE_CONFIG_REFRESH_MS", "EDGEGATE_SNAPSHOT_REFRESH_MS", "EDGEGATE_CONTROL_REFRESH_MS"]);
const VALID_VARIABLE = /^[a-z](?:[a-z0-9]|_(?!_))*[a-z0-9]$|^[a-z]$/;

export function spinVariables(bindings) {
  const out = {};
  for (const [name, value] of Object.entries(bindings)) {
    if (NO_MEANING_ON_SPIN.has(name)) continue;
    const lower = name.toLowerCase();
    if (!VALID_VARIABLE.test(lower)) {
      throw new Error(`binding ${name}: ${lower} is not a valid Spin variable name`);
    }
    out[lower] = String(value);
  }
  return out;
}

/** Starts the Spin gateway; the options are startGateway's (gateway.mjs). */
export async function startSpinGateway({
  config,
  version = "v1",
  refreshMs = 200,
  kv: extraKv = {},
  bindings = {},
  counters = {},
  control = true,
  registry,
  persistDir,
} = {}) {
  for (const [what, file, how] of [
    ["test host", SPIN_HOST, "bash scripts/ensure-spin-host.sh (or set EDGEGATE_SPIN_HOST)"],
    ["Spin component", SPIN_WASM, "cargo build --release --target wasm32-wasip2 --manifest-path spin/Cargo.toml (or set EDGEGATE_SPIN_WASM)"],
  ]) {
    if (!existsSync(file)) throw new Error(`${what} missing (${file}); build it first: ${how}`);
  }
  if (counters && counters.script !== undefined) {
    throw new SpinUnsupported("a stand-in counter class (a second Worker's Durable Object)");
  }

  // Exact rate limits and the overrides: a private Redis unless `counters: false` (no
  // counters at all: every counter call fails, as with no EDGEGATE_COUNTERS binding).
  let redis = null;
  if (!control || counters === "unreachable") {
    // No binding to leave out on Spin (the overrides live in Redis, else key-value): an
    // unreachable store instead — a Redis address nothing listens on. Counters fail too, as
    // `counters: "unreachable"` asks (the counters' store down).
    const port = await freePort();
    redis = { url: `redis://127.0.0.1:${port}`, stop: async () => {} };
  } else if (counters) {
    if (persistDir !== undefined) {
      redis = persistentRedis.get(persistDir);
      if (!redis) {
        redis = await startRedis();
        persistentRedis.set(persistDir, redis);
      }
    } else {
      redis = await startRedis();
    }
  }

  const variables = spinVariables({ ...bindings, ...registryBindings(registry) });
  // The lazy tick (the Spin stand-in for the Workers cron) runs only when a test fires it
  // (scheduled() below): a day-long interval, and a lease that says a tick just finished.
  variables.edgegate_sync_interval_s ??= String(TICK_INTERVAL_S);
  if (redis) variables.redis_address = redis.url;
  const args = ["--component", SPIN_WASM, "--kv-store", STORE, "--allowed-outbound-hosts", "http://127.0.0.1:*"];
  if (redis) args.push("--redis", redis.url);
  if (persistDir !== undefined) args.push("--kv-dir", path.join(persistDir, "kv"));
  for (const [k, v] of Object.entries(variables)) args.push("--variable", `${k}=${v}`);

  const logs = new LogCapture();
  const child = spawn(SPIN_HOST, args, { stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  exited.then(() => children.delete(child));
  readline.createInterface({ input: child.stderr }).on("line", (l) => logs.push(l, "stderr"));
  const lines = readline.createInterface({ input: child.stdout });
  let addresses;
  const ready = new Promise((resolve) => {
    lines.on("line", (l) => {
      if (!addresses) {
        try {
          const v = JSON.parse(l);
          if (v.http && v.admin) {
            addresses = v;
            resolve(v);
            return;
          }
        } catch {
          // fall through: an ordinary line
        }
      }
      logs.push(l, "stdout");
    });
  });
  let ports;
  try {
    ports = await withTimeout(
      Promise.race([
        ready,
        exited.then(({ code, signal }) => {
          throw new Error(`the test host exited (${code ?? signal}) before listening`);
        }),
      ]),
      120_000,
      "the Spin test host's address line",
    );
  } catch (err) {
    child.kill("SIGKILL");
    if (redis && persistDir === undefined) redis.stop();
    err.message += `\nhost output:\n${logs.dump()}`;
    throw err;
  }
  const gw = new SpinGateway({ child, exited, ports, logs, refreshMs, redis, ownsRedis: persistDir === undefined });
  const now = Date.now();
  await gw.putKv(TICK_LEASE_KEY, JSON.stringify({ owner: "test-harness", started_ms: now, expires_ms: now, finished_ms: now }));
  for (const [k, v] of Object.entries(extraKv)) await gw.putKv(k, v);
  if (config !== null && config !== undefined) {
    await gw.putVersion(version, config);
    await gw.activate(version);
  }
  return gw;
}

/** The host's key-value store `default`, through its admin port, shaped like a Workers KV binding. */
class AdminKv {
  constructor(admin) {
    this.base = `http://${admin}/kv/${STORE}`;
  }

  async #call(method, key, body) {
    const url = key === undefined ? this.base : `${this.base}/${encodeURIComponent(key)}`;
    const res = await fetch(url, { method, body });
    if (!res.ok && res.status !== 404) {
      throw new Error(`host admin ${method} ${key ?? ""}: ${res.status} ${await res.text()}`);
    }
    return res;
  }

  async get(key, type = "text") {
    const res = await this.#call("GET", key);
    if (res.status === 404) return null;
    if (type === "arrayBuffer") return res.arrayBuffer();
    if (type === "json") return res.json();
    return res.text();
  }

  async put(key, value) {
    const body = typeof value === "string" ? value : Buffer.from(kvValue(value));
    await this.#call("PUT", key, body);
  }

  async delete(key) {
    await this.#call("DELETE", key);
  }

  /** Like Workers KV's list: { keys: [{ name }] }, sorted, filtered by prefix. */
  async list({ prefix = "" } = {}) {
    const res = await this.#call("GET");
    const names = (await res.json()).filter((k) => k.startsWith(prefix)).sort();
    return { keys: names.map((name) => ({ name })), list_complete: true };
  }
}

export class SpinGateway {
  constructor({ child, exited, ports, logs, refreshMs, redis, ownsRedis }) {
    this.platform = "spin";
    this.child = child;
    this.exited = exited;
    /** The gateway's base URL (a URL object), e.g. http://127.0.0.1:PORT/ */
    this.url = new URL(`http://${ports.http}/`);
    this.port = Number(this.url.port);
    this.origin = this.url.origin;
    this.hostHeader = this.url.host;
    /** The host's admin endpoint (key-value seeding and inspection), host:port. */
    this.admin = ports.admin;
    this.kv = new AdminKv(ports.admin);
    this.logs = logs;
    this.refreshMs = refreshMs;
    this.redis = redis;
    this.ownsRedis = ownsRedis;
  }

  get mf() {
    throw new SpinUnsupported("Miniflare (dispatchFetch, request.cf, Durable Object namespaces)");
  }

  async putVersion(id, doc) {
    await this.kv.put(versionKey(id), typeof doc === "string" ? doc : JSON.stringify(doc));
  }

  async activate(id) {
    await this.kv.put(POINTER_KEY, id);
  }

  async putKv(key, value) {
    await this.kv.put(key, value);
  }

  async deleteKey(key) {
    await this.kv.delete(key);
  }

  /**
   * The Workers cron's stand-in on Spin: makes the lazy tick due (deletes its lease), sends
   * one request (the tick runs after its response) and waits for the tick's `config_check`
   * line, as the cron's scheduled() resolves once the run is done. Returns that event.
   */
  async scheduled() {
    const from = this.logs.mark();
    await this.kv.delete(TICK_LEASE_KEY);
    await request(this.port, { path: "/__edgegate-test/tick" });
    return this.logs.waitForEvent("config_check", () => true, { from, timeoutMs: 30_000 });
  }

  async counter() {
    throw new SpinUnsupported("reading a rate-limit counter's Durable Object directly");
  }

  /**
   * node:http request to the gateway. A `cf-connecting-ip` header (the Workers tests' way of
   * saying where the client is) is taken off and becomes the socket's source address
   * (gateway.mjs clientIp); an address that cannot be mapped (IPv6) throws SpinUnsupported.
   */
  request(opts = {}) {
    const headers = { ...(opts.headers ?? {}) };
    const name = Object.keys(headers).find((k) => k.toLowerCase() === "cf-connecting-ip");
    if (name === undefined || opts.localAddress !== undefined) return request(this.port, opts);
    const ip = headers[name];
    delete headers[name];
    const localAddress = spinClientAddress(ip);
    if (!localAddress) {
      return Promise.reject(new SpinUnsupported(`a client at ${ip} (the test host listens on 127.0.0.1 only)`));
    }
    return request(this.port, { ...opts, headers, localAddress });
  }

  async requestLogged(opts, { logTimeoutMs = 5000 } = {}) {
    const headers = { ...(opts.headers ?? {}) };
    const hasId = Object.keys(headers).some((k) => k.toLowerCase() === "x-request-id");
    if (!hasId) headers["x-request-id"] = uniqueId();
    const res = await this.request({ ...opts, headers });
    const id = res.headers["x-request-id"];
    const log = await this.logs.waitForAccess(id, { timeoutMs: logTimeoutMs });
    return { res, log };
  }

  async close() {
    this.child.kill("SIGTERM");
    await withTimeout(this.exited, 5000, "the Spin test host to exit").catch(() => this.child.kill("SIGKILL"));
    if (this.redis && this.ownsRedis) await this.redis.stop();
  }
}

async function freePort() {
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * A private redis-server on 127.0.0.1 (no persistence), or the one EDGEGATE_TEST_REDIS names
 * (then shared: counters of different gateways may meet). Returns { url, stop }.
 */
async function startRedis() {
  if (process.env.EDGEGATE_TEST_REDIS) return { url: process.env.EDGEGATE_TEST_REDIS, stop: async () => {} };
  if (spawnSync(REDIS_SERVER, ["--version"]).status !== 0) {
    throw new Error(`${REDIS_SERVER} not found: install redis-server or set EDGEGATE_TEST_REDIS=redis://host:port`);
  }
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const child = spawn(REDIS_SERVER, ["--bind", "127.0.0.1", "--port", String(port), "--save", "", "--appendonly", "no"], {
      stdio: ["ignore", VERBOSE ? "inherit" : "ignore", VERBOSE ? "inherit" : "ignore"],
    });
    children.add(child);
    const exited = new Promise((resolve) => child.once("exit", resolve));
    exited.then(() => children.delete(child));
    const stop = async () => {
      child.kill("SIGKILL");
      await exited;
    };
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null) {
      if (await ping(port)) return { url: `redis://127.0.0.1:${port}`, stop };
      await delay(30);
    }
    await stop();
  }
  throw new Error("redis-server did not start");
}

function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.setTimeout(500);
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => {
      s.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}
