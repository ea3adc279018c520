// Mock backends on 127.0.0.1 (random ports) that record every request they get.
//
// Each backend records, per request: method, url, headers (+ raw header pairs), the body's
// sha256 and length, and timestamps (arrival, first body chunk, body end; performance.now()).
// What it answers is its `behaviour`, a function (req, res, record, backend); the builders
// below cover echo JSON, slow answers (timeouts), a big streamed download with a pause the
// test controls, and an upload sink. `backend.behaviour` may be swapped between requests.
import http from "node:http";
import net from "node:net";
import { EventEmitter } from "node:events";
import { createHash } from "node:crypto";
import { performance } from "node:perf_hooks";
import { withTimeout } from "./util.mjs";

export class Backend extends EventEmitter {
  constructor(name, behaviour) {
    super();
    this.name = name;
    this.behaviour = behaviour;
    /** Every request received, in arrival order. */
    this.records = [];
    this.timers = new Set();
    this.server = http.createServer((req, res) => this.#handle(req, res));
    // Large uploads: never time out a slow test client.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 60_000;
  }

  async listen() {
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, "127.0.0.1", resolve);
    });
    this.port = this.server.address().port;
    /** Base URL for a config's pool instance. */
    this.url = `http://127.0.0.1:${this.port}`;
    /** host:port, to check that it does not leak to clients. */
    this.address = `127.0.0.1:${this.port}`;
    return this;
  }

  #handle(req, res) {
    const hash = createHash("sha256");
    let bodyDoneResolve;
    const record = {
      backend: this.name,
      method: req.method,
      url: req.url,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      receivedAt: performance.now(),
      firstChunkAt: null,
      endAt: null,
      bodyLength: 0,
      bodySha256: null,
      aborted: false,
      bodyDone: new Promise((resolve) => (bodyDoneResolve = resolve)),
    };
    this.records.push(record);
    this.emit("request", record);
    req.on("data", (chunk) => {
      if (record.firstChunkAt === null) {
        record.firstChunkAt = performance.now();
        record.firstChunkLength = chunk.length;
        this.emit("first-chunk", record);
      }
      record.bodyLength += chunk.length;
      hash.update(chunk);
    });
    req.on("end", () => {
      record.endAt = performance.now();
      record.bodySha256 = hash.digest("hex");
      bodyDoneResolve(record);
      this.emit("body-complete", record);
    });
    req.on("error", () => {
      record.aborted = true;
      bodyDoneResolve(record);
    });
    req.on("aborted", () => (record.aborted = true));
    res.on("error", () => {});
    Promise.resolve()
      .then(() => this.behaviour(req, res, record, this))
      .catch((err) => {
        if (!res.headersSent) {
          res.statusCode = 599;
          res.end(String(err));
        } else {
          res.destroy(err);
        }
      });
  }

  /** A timer that close() clears (for slow behaviours). */
  setTimer(fn, ms) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
    return t;
  }

  /** Waits for the next request matching `pred` (already received ones count). */
  waitForRequest(pred = () => true, timeoutMs = 10_000) {
    const found = this.records.find(pred);
    if (found) return Promise.resolve(found);
    return withTimeout(
      new Promise((resolve) => {
        const on = (r) => {
          if (pred(r)) {
            this.off("request", on);
            resolve(r);
          }
        };
        this.on("request", on);
      }),
      timeoutMs,
      `a request at backend ${this.name}`,
    );
  }

  /** Resolves with the record once a request matching `pred` has sent its first body chunk. */
  waitForFirstChunk(pred = () => true, timeoutMs = 10_000) {
    const found = this.records.find((r) => pred(r) && r.firstChunkAt !== null);
    if (found) return Promise.resolve(found);
    let on;
    return withTimeout(
      new Promise((resolve) => {
        on = (r) => {
          if (pred(r)) resolve(r);
        };
        this.on("first-chunk", on);
      }),
      timeoutMs,
      `the first upload chunk at backend ${this.name}`,
    ).finally(() => this.off("first-chunk", on));
  }

  /** Records whose request id (x-request-id as the backend saw it) is `id`. */
  byRequestId(id) {
    return this.records.filter((r) => r.headers["x-request-id"] === id);
  }

  reset() {
    this.records = [];
  }

  async close() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.server.closeAllConnections?.();
    await new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Starts a backend named `name` with `behaviour` (default: echo). */
export async function startBackend(name, behaviour = echo()) {
  return new Backend(name, behaviour).listen();
}

/** Closes every backend given (ignores nulls). */
export async function closeAll(...backends) {
  await Promise.all(backends.flat().filter(Boolean).map((b) => b.close()));
}

// ---------------------------------------------------------------------------- behaviours

function sendJson(res, status, obj, extraHeaders = {}) {
  const body = Buffer.from(JSON.stringify(obj));
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": body.length,
    ...extraHeaders,
  });
  res.end(body);
}

/**
 * Echo: waits for the whole request body, then answers JSON describing what arrived:
 * { backend, method, url, headers, bodyLength, bodySha256 }. `headers` are extra response
 * headers (e.g. to test response header hygiene).
 */
export function echo({ status = 200, headers = {} } = {}) {
  return async (req, res, record, backend) => {
    await record.bodyDone;
    sendJson(
      res,
      status,
      {
        backend: backend.name,
        method: record.method,
        url: record.url,
        headers: record.headers,
        bodyLength: record.bodyLength,
        bodySha256: record.bodySha256,
      },
      headers,
    );
  };
}

/** Waits `delayMs` before doing `then` (default echo): response headers come late. */
export function slow(delayMs, then = echo()) {
  return (req, res, record, backend) =>
    new Promise((resolve) => {
      backend.setTimer(() => {
        if (res.destroyed || res.writableEnded) return resolve();
        record.respondedAt = performance.now();
        resolve(then(req, res, record, backend));
      }, delayMs);
    });
}

/**
 * Upload sink: reads the whole body (hash + length) and answers JSON with them and the
 * framing headers the backend saw. First-chunk arrival is reported by the backend's
 * `first-chunk` event (see Backend.waitForFirstChunk).
 */
export function uploadSink() {
  return async (req, res, record, backend) => {
    await record.bodyDone;
    sendJson(res, 200, {
      backend: backend.name,
      bodyLength: record.bodyLength,
      bodySha256: record.bodySha256,
      contentLength: record.headers["content-length"] ?? null,
      transferEncoding: record.headers["transfer-encoding"] ?? null,
    });
  };
}

/**
 * A big streamed download of `data` (a Buffer, e.g. from deterministicData) with
 * `content-length`. After `pauseAfter` bytes it stops, sets `record.pausedAt`, emits
 * `paused` on the backend and waits for `gate` (see util.createGate) before sending the rest.
 * Honours backpressure; sets `record.sentAll` when everything was written.
 */
export function download({ data, pauseAfter = 0, gate = null, chunkSize = 64 * 1024, contentLength = true }) {
  return async (req, res, record, backend) => {
    await record.bodyDone;
    const headers = { "content-type": "application/octet-stream" };
    if (contentLength) headers["content-length"] = data.length;
    res.writeHead(200, headers);
    res.flushHeaders();
    const write = async (from, to) => {
      for (let off = from; off < to; off += chunkSize) {
        if (res.destroyed) throw new Error("client went away");
        const ok = res.write(data.subarray(off, Math.min(off + chunkSize, to)));
        if (!ok) {
          await new Promise((resolve) => {
            const done = () => {
              res.off("drain", done);
              res.off("close", done);
              resolve();
            };
            res.on("drain", done);
            res.on("close", done);
          });
        }
      }
    };
    const first = Math.min(pauseAfter, data.length);
    await write(0, first);
    if (gate) {
      record.pausedAt = performance.now();
      record.bytesBeforePause = first;
      backend.emit("paused", record);
      await gate.promise;
    }
    record.resumedAt = performance.now();
    await write(first, data.length);
    record.sentAll = performance.now();
    res.end();
  };
}

/** A fixed answer: status, headers, body (string or Buffer). */
export function fixed({ status = 200, headers = {}, body = "" } = {}) {
  return async (req, res, record) => {
    await record.bodyDone;
    const buf = Buffer.from(body);
    res.writeHead(status, { "content-length": buf.length, ...headers });
    res.end(buf);
  };
}

/**
 * Dispatches on the request path: `routes` is a list of [prefix, behaviour]; the first whose
 * prefix starts the URL wins, else `fallback`.
 */
export function byPath(routes, fallback = echo()) {
  return (req, res, record, backend) => {
    const hit = routes.find(([prefix]) => record.url.startsWith(prefix));
    return (hit ? hit[1] : fallback)(req, res, record, backend);
  };
}

/**
 * A 127.0.0.1 port that refuses connections: binds a server on port 0, closes it, returns
 * the port. Returns { port, url, address }.
 */
export async function closedPort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", resolve);
  });
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return { port, url: `http://127.0.0.1:${port}`, address: `127.0.0.1:${port}` };
}
