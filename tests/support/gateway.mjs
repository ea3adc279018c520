// The gateway under test: the built worker (worker/build) in Miniflare, with config in KV,
// workerd's stdout captured and parsed, and a real HTTP URL for node:http clients.
import { Miniflare } from "miniflare";
import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import readline from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { withTimeout } from "./util.mjs";
import { request } from "./client.mjs";
import { startSpinGateway } from "./spin-gateway.mjs";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * The platform the suite runs against: `workers` (default: the worker build in Miniflare) or
 * `spin` (the Spin component under the test host, spin-gateway.mjs), from
 * EDGEGATE_TEST_PLATFORM. Tests that cannot run on a platform say so with
 * `{ skip: onSpin && "spin: <why>" }`; a missing feature is `{ todo: onSpin && "spin: …" }`.
 */
export const PLATFORM = process.env.EDGEGATE_TEST_PLATFORM ?? "workers";
if (PLATFORM !== "workers" && PLATFORM !== "spin") {
  throw new Error(`EDGEGATE_TEST_PLATFORM=${PLATFORM}: expected workers or spin`);
}
export const onSpin = PLATFORM === "spin";
export const onWorkers = PLATFORM === "workers";

/**
 * The client address the gateway sees for a test client "at" `ip`. Tests say where a request
 * comes from with a `cf-connecting-ip` header: on Workers that is how Cloudflare reports the
 * client, and Miniflare passes it through. On Spin the client address is the socket's peer,
 * so the Spin harness takes that header off and connects from a loopback address instead:
 * IPv4 `a.b.c.d` → `127.b.c.d` (spinClientAddress). Compare logs and blocks with this.
 */
export function clientIp(ip) {
  return onSpin ? spinClientAddress(ip) : ip;
}

/** `a.b.c.d` → `127.b.c.d`; null for anything else (IPv6: the test host listens on IPv4 only). */
export function spinClientAddress(ip) {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(String(ip ?? "").trim());
  return m ? `127.${m[2]}.${m[3]}.${m[4]}` : null;
}

const SHIM = path.join(REPO_ROOT, "worker/build/worker/shim.mjs");
const VERBOSE = !!process.env.EDGEGATE_TEST_VERBOSE;

const COMPATIBILITY_DATE = "2026-04-26";
/** The rate-limit counters' Durable Object binding and class (wrangler.toml). */
export const COUNTER_BINDING = "EDGEGATE_COUNTERS";
export const COUNTER_CLASS = "RateCounter";
/** The emergency overrides' Durable Object binding and class (wrangler.toml). */
export const CONTROL_BINDING = "EDGEGATE_CONTROL";
export const CONTROL_CLASS = "Control";

export const POINTER_KEY = "config:active";
export const versionKey = (id) => `config:version:${id}`;

/**
 * workerd's output, line by line. JSON lines (the worker's access lines and events) are
 * parsed into `entries` (each with `_seq`, its position); other lines go to `other`.
 * Emits `entry` for each parsed line.
 */
export class LogCapture extends EventEmitter {
  constructor() {
    super();
    this.setMaxListeners(100);
    this.entries = [];
    this.other = [];
  }

  push(line, stream) {
    if (VERBOSE) process.stderr.write(`[workerd ${stream}] ${line}\n`);
    const trimmed = line.trim();
    if (trimmed.startsWith("{")) {
      try {
        const entry = JSON.parse(trimmed);
        entry._seq = this.entries.length;
        this.entries.push(entry);
        this.emit("entry", entry);
        return;
      } catch {
        // not JSON after all
      }
    }
    this.other.push({ stream, line });
  }

  /** A position; pass as `from` to look only at lines after it. */
  mark() {
    return this.entries.length;
  }

  access(from = 0) {
    return this.entries.slice(from).filter((e) => e.kind === "access");
  }

  events(name, from = 0) {
    return this.entries.slice(from).filter((e) => e.kind === "event" && (!name || e.event === name));
  }

  /** Authorization audit lines (`kind: "audit"`), optionally only those of one request id. */
  audits(requestId, from = 0) {
    return this.entries
      .slice(from)
      .filter((e) => e.kind === "audit" && (requestId === undefined || e.request_id === requestId));
  }

  /** Every access line for one request id. */
  accessFor(requestId, from = 0) {
    return this.access(from).filter((e) => e.request_id === requestId);
  }

  /** Waits (event-based, bounded) for the first entry at or after `from` matching `pred`. */
  waitFor(pred, { from = 0, timeoutMs = 5000, what = "a log line" } = {}) {
    const found = this.entries.slice(from).find(pred);
    if (found) return Promise.resolve(found);
    let on;
    return withTimeout(
      new Promise((resolve) => {
        on = (e) => {
          if (e._seq >= from && pred(e)) resolve(e);
        };
        this.on("entry", on);
      }),
      timeoutMs,
      what,
    ).finally(() => this.off("entry", on));
  }

  waitForAccess(requestId, opts = {}) {
    return this.waitFor((e) => e.kind === "access" && e.request_id === requestId, {
      what: `the access line of request ${requestId}`,
      ...opts,
    });
  }

  waitForEvent(name, pred = () => true, opts = {}) {
    return this.waitFor((e) => e.kind === "event" && e.event === name && pred(e), {
      what: `a ${name} event`,
      ...opts,
    });
  }

  /** Everything captured, for failure messages. */
  dump(last = 40) {
    return [
      ...this.entries.slice(-last).map((e) => JSON.stringify(e)),
      ...this.other.slice(-last).map((o) => `[${o.stream}] ${o.line}`),
    ].join("\n");
  }
}

/**
 * Starts the gateway on the platform under test (PLATFORM): the worker in Miniflare, or the
 * Spin component under the test host (spin-gateway.mjs, same options and handle interface;
 * there, `bindings` and `registry` become Spin variables, `persistDir` the host's key-value
 * directory and a Redis kept for the run, `control: false` and `counters: "unreachable"` a
 * Redis address nothing listens on; `counters: { script }`, `scheduled()`, `counter()` and
 * `mf` throw SpinUnsupported).
 *
 * On Workers: starts the worker in Miniflare.
 *
 * options:
 *   config      config document (object or raw string) stored as version `version` (default
 *               "v1") and made active; `null` stores nothing (no pointer).
 *   version     id of that first version.
 *   refreshMs   EDGEGATE_CONFIG_REFRESH_MS (default 200).
 *   kv          extra { key: value } pairs written to KV before the first request, in
 *               order; a value is a string or binary (Buffer / Uint8Array / ArrayBuffer),
 *               e.g. Registry snapshot shards (see kvValue).
 *   bindings    extra Worker bindings { NAME: "string" } (vars and secrets, e.g. an HMAC
 *               key named by an identity provider's `hmac_secret`).
 *   counters    the Durable Object namespace bound as EDGEGATE_COUNTERS (rate limits):
 *               - default: the worker's own `RateCounter` class with SQLite storage, as in
 *                 wrangler.toml (the class is exported by the same wasm);
 *               - `false`: no binding at all (every counter call fails);
 *               - { className, script }: a class of a second worker, named "counters", whose
 *                 ES module source is `script` (a stand-in counter, e.g. one that throws).
 *   control     bind the worker's own `Control` class as EDGEGATE_CONTROL (default true);
 *               `false`: no binding (every control call fails).
 *   registry    Registry sync settings, passed as the worker's vars/secrets:
 *               { url, token, keys: ["ed25519:…"], allowUnsigned, keepVersions, timeoutMs,
 *               backoffMs } → EDGEGATE_REGISTRY_URL, EDGEGATE_REGISTRY_TOKEN (a secret in
 *               production), EDGEGATE_REGISTRY_KEYS, …; omitted fields stay unset.
 *   persistDir  a directory for Durable Object storage (`<dir>/do`) and KV (`<dir>/kv`): a
 *               gateway started again with the same directory continues with the stored
 *               counters (restart tests). Default: nothing outlives `close()`.
 *
 * Returns a Gateway handle (see below). Always `await gw.close()`.
 */
export async function startGateway({
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
  if (counters === "unreachable" && !onSpin) {
    throw new Error('counters: "unreachable" (a dead Redis) is a Spin option');
  }
  if (onSpin) {
    return startSpinGateway({ config, version, refreshMs, kv: extraKv, bindings, counters, control, registry, persistDir });
  }
  if (!existsSync(SHIM)) {
    throw new Error(
      `worker build missing (${SHIM}); build it first: bash scripts/build-worker.sh`,
    );
  }
  const logs = new LogCapture();
  const gateway = {
    name: "edgegate",
    modules: true,
    modulesRoot: REPO_ROOT,
    scriptPath: SHIM,
    modulesRules: [
      { type: "ESModule", include: ["**/*.js", "**/*.mjs"] },
      { type: "CompiledWasm", include: ["**/*.wasm"] },
    ],
    compatibilityDate: COMPATIBILITY_DATE,
    kvNamespaces: ["EDGEGATE_CONFIG"],
    bindings: { ...bindings, ...registryBindings(registry), EDGEGATE_CONFIG_REFRESH_MS: String(refreshMs) },
  };
  const workers = [gateway];
  if (control) {
    gateway.durableObjects = { [CONTROL_BINDING]: { className: CONTROL_CLASS, useSQLite: true } };
  }
  if (counters) {
    const { className = COUNTER_CLASS, script } = counters;
    gateway.durableObjects = {
      ...gateway.durableObjects,
      [COUNTER_BINDING]: { className, useSQLite: true, ...(script !== undefined && { scriptName: "counters" }) },
    };
    if (script !== undefined) {
      workers.push({
        name: "counters",
        modules: [{ type: "ESModule", path: path.join(REPO_ROOT, "counters-stand-in.mjs"), contents: script }],
        compatibilityDate: COMPATIBILITY_DATE,
      });
    }
  }
  const mf = new Miniflare({
    workers,
    cf: false,
    host: "127.0.0.1",
    port: 0,
    ...(persistDir !== undefined && {
      durableObjectsPersist: path.join(persistDir, "do"),
      kvPersist: path.join(persistDir, "kv"),
    }),
    handleRuntimeStdio(stdout, stderr) {
      readline.createInterface({ input: stdout }).on("line", (l) => logs.push(l, "stdout"));
      readline.createInterface({ input: stderr }).on("line", (l) => logs.push(l, "stderr"));
    },
  });
  let url;
  try {
    url = await mf.ready;
  } catch (err) {
    await new Promise((r) => setTimeout(r, 100));
    await mf.dispose().catch(() => {});
    err.message += `\nworkerd output:\n${logs.dump()}`;
    throw err;
  }
  const kv = await mf.getKVNamespace("EDGEGATE_CONFIG");
  const gw = new Gateway(mf, url, kv, logs, refreshMs);
  for (const [k, v] of Object.entries(extraKv)) await kv.put(k, kvValue(v));
  if (config !== null && config !== undefined) {
    await gw.putVersion(version, config);
    await gw.activate(version);
  }
  return gw;
}

export class Gateway {
  constructor(mf, url, kv, logs, refreshMs) {
    this.platform = "workers";
    this.mf = mf;
    /** The gateway's base URL (a URL object), e.g. http://127.0.0.1:PORT/ */
    this.url = url;
    this.port = Number(url.port);
    this.origin = url.origin;
    /** Default Host header value clients send. */
    this.hostHeader = url.host;
    this.kv = kv;
    this.logs = logs;
    this.refreshMs = refreshMs;
  }

  /** Stores a config document (object → JSON, string as is) under `config:version:<id>`. */
  async putVersion(id, doc) {
    await this.kv.put(versionKey(id), typeof doc === "string" ? doc : JSON.stringify(doc));
  }

  /** Moves the pointer `config:active` to `id`. */
  async activate(id) {
    await this.kv.put(POINTER_KEY, id);
  }

  /** Writes one KV value: a string, or binary (Buffer / Uint8Array / ArrayBuffer). */
  async putKv(key, value) {
    await this.kv.put(key, kvValue(value));
  }

  async deleteKey(key) {
    await this.kv.delete(key);
  }

  /** Fires the cron (scheduled) handler. */
  async scheduled(cron = "* * * * *") {
    const worker = await this.mf.getWorker();
    return worker.scheduled({ cron, scheduledTime: new Date() });
  }

  /** node:http request to the gateway; see client.request. */
  request(opts) {
    return request(this.port, opts);
  }

  /**
   * Sends a request with a fresh x-request-id (unless the caller sets one) and waits for its
   * access line. Returns { res, log }.
   */
  async requestLogged(opts, { logTimeoutMs = 5000 } = {}) {
    const headers = { ...(opts.headers ?? {}) };
    const hasId = Object.keys(headers).some((k) => k.toLowerCase() === "x-request-id");
    if (!hasId) headers["x-request-id"] = uniqueId();
    const res = await this.request({ ...opts, headers });
    const id = res.headers["x-request-id"];
    const log = await this.logs.waitForAccess(id, { timeoutMs: logTimeoutMs });
    return { res, log };
  }

  /**
   * Calls a rate-limit counter object directly, as the worker does (the RateCounter protocol:
   * POST a CounterCall as JSON): `key` as `counterKey` builds it, `algorithm` as the counter's
   * JSON (e.g. { kind: "sliding_window", limit: 50, window_ms: 60000 }), `op` default
   * { kind: "peek" } (reads without changing). Returns the CounterReply
   * { granted, decision: { allowed, remaining, limit, reset_ms, retry_after_ms }, at_ms }.
   */
  async counter(key, algorithm, op = { kind: "peek" }) {
    const ns = await this.mf.getDurableObjectNamespace(COUNTER_BINDING);
    const stub = ns.get(ns.idFromName(key));
    const res = await stub.fetch("https://counter/", {
      method: "POST",
      body: JSON.stringify({ key, algorithm, op }),
    });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`counter ${key} answered ${res.status}: ${text}`);
    return JSON.parse(text);
  }

  async close() {
    await this.mf.dispose();
  }
}

/**
 * The key of a rate-limit counter object (edgegate_core::ratelimit::RateLimit::counter_key):
 * `scope` is where the limit is defined ("gateway", "api:<api>", "route:<api>/<route>"), `key`
 * its config key kind ("api", "route", "ip", ...), `value` the request's value for it (an API
 * name, "<api>/<route>", an address); `shard` only for limits with shards > 1.
 */
export function counterKey({ scope, name, key, value, shard }) {
  return `rl|${scope}|${name}|${key}|${value}${shard === undefined ? "" : `|${shard}`}`;
}

/** The worker bindings of startGateway's `registry` option (see there). */
export function registryBindings(registry) {
  if (!registry) return {};
  const vars = {
    EDGEGATE_REGISTRY_URL: registry.url,
    EDGEGATE_REGISTRY_TOKEN: registry.token,
    EDGEGATE_REGISTRY_KEYS: registry.keys?.join(","),
    EDGEGATE_REGISTRY_ALLOW_UNSIGNED: registry.allowUnsigned === undefined ? undefined : String(registry.allowUnsigned),
    EDGEGATE_KEEP_VERSIONS: registry.keepVersions,
    EDGEGATE_REGISTRY_TIMEOUT_MS: registry.timeoutMs,
    EDGEGATE_REGISTRY_BACKOFF_MS: registry.backoffMs,
  };
  return Object.fromEntries(
    Object.entries(vars)
      .filter(([, v]) => v !== undefined && v !== null)
      .map(([k, v]) => [k, String(v)]),
  );
}

/**
 * A value for Miniflare's KV `put`: strings as they are; binary as a standalone ArrayBuffer
 * holding exactly the view's bytes (a Buffer may be a slice of a larger pooled buffer).
 */
export function kvValue(value) {
  if (typeof value === "string" || value instanceof ArrayBuffer) return value;
  if (ArrayBuffer.isView(value)) {
    return value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength);
  }
  throw new TypeError(`KV value must be a string or binary, got ${typeof value}`);
}

let counter = 0;
/** A request id unique within the run (sane per the gateway's rules). */
export function uniqueId(prefix = "t") {
  counter += 1;
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter}`;
}
