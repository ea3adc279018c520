// A mock API Registry: serves one bundle over HTTP on 127.0.0.1, as the gateway's Registry
// sync fetches it (bearer token, ETag / If-None-Match → 304), with switchable outages.
//
// In tests:
//   const reg = await new MockRegistry({ token: "t", bundle }).start();
//   reg.url                     → http://127.0.0.1:PORT/bundle (EDGEGATE_REGISTRY_URL)
//   reg.setBundle(buf)          → serve another bundle (new ETag)
//   reg.setOutage("503" | "refused" | "hang" | null)
//   reg.setOversized(bytes)     → answer 200 chunked (no Content-Length) with `bytes` zero
//                                 bytes; reg.oversized → { total, sent, complete, closed }
//   reg.counts / reg.requests   → what the gateway asked
// From the command line (the README demo serves signed bundles from examples/):
//   node tests/support/registry.mjs --bundle examples/demo.bundle [--port 8788] [--token T]
// The file is read on every request, so rebuilding it publishes a new version.
import http from "node:http";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** A quoted strong ETag for a body: its SHA-256 prefix. */
export function etagOf(body) {
  return `"${createHash("sha256").update(body).digest("hex").slice(0, 32)}"`;
}

export class MockRegistry {
  /**
   * token       the bearer token required (null: none required)
   * bundle      the bundle bytes to serve (Buffer)
   * bundleFile  or a file to read on every request
   * path        the URL path (default /bundle)
   */
  constructor({ token = null, bundle = null, bundleFile = null, path = "/bundle" } = {}) {
    this.token = token;
    this.bundle = bundle;
    this.bundleFile = bundleFile;
    this.path = path;
    this.outage = null;
    this.oversized = null;
    this.requests = [];
    this.counts = { requests: 0, ok: 0, notModified: 0, unauthorized: 0, outage: 0 };
    this.sockets = new Set();
    this.server = http.createServer((req, res) => this.#handle(req, res));
    this.server.on("connection", (s) => {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
    });
    this.port = 0;
  }

  /** Listens on 127.0.0.1 (`port` 0: any free port). Returns this. */
  async start(port = 0) {
    await new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port || this.port, "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.port = this.server.address().port;
    return this;
  }

  get url() {
    return `http://127.0.0.1:${this.port}${this.path}`;
  }

  /** Serves `bundle` from now on (its ETag changes with its bytes). */
  setBundle(bundle) {
    this.bundle = bundle;
    this.bundleFile = null;
  }

  /**
   * "503": answers 503; "refused": stops listening (connections are refused; the port is
   * kept and reopened by setOutage(null)); "hang": accepts requests and never answers;
   * null: serves again.
   */
  async setOutage(mode) {
    const was = this.outage;
    this.outage = mode;
    if (mode === "refused" && was !== "refused") {
      await new Promise((resolve) => {
        this.server.close(() => resolve());
        for (const s of this.sockets) s.destroy();
      });
    } else if (mode !== "refused" && was === "refused") {
      await this.start(this.port);
    }
    if (mode !== "hang") for (const res of this.#hanging.splice(0)) res.destroy();
  }

  #hanging = [];

  /**
   * From now on answers the bundle path with 200 and `total` zero bytes, chunked (no
   * Content-Length), written with backpressure; `this.oversized.sent` is how many were
   * accepted by the socket before the client closed it (`closed`) or all were (`complete`).
   * null: serves the bundle again.
   */
  setOversized(total) {
    this.oversized = total === null ? null : { total, sent: 0, complete: false, closed: false };
  }

  #streamOversized(res) {
    const state = this.oversized;
    const chunk = Buffer.alloc(1 << 20);
    res.writeHead(200, { "content-type": "application/octet-stream", "transfer-encoding": "chunked" });
    res.on("close", () => {
      state.closed = true;
    });
    const pump = () => {
      while (!state.closed && state.sent < state.total) {
        const n = Math.min(chunk.length, state.total - state.sent);
        state.sent += n;
        if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return res.once("drain", pump);
      }
      if (!state.closed) {
        state.complete = true;
        res.end();
      }
    };
    pump();
  }

  #current() {
    return this.bundleFile ? readFileSync(this.bundleFile) : this.bundle;
  }

  #handle(req, res) {
    const record = {
      at: Date.now(),
      method: req.method,
      url: req.url,
      authorization: req.headers.authorization ?? null,
      ifNoneMatch: req.headers["if-none-match"] ?? null,
      status: null,
    };
    this.requests.push(record);
    this.counts.requests += 1;
    const answer = (status, headers = {}, body) => {
      record.status = status;
      res.writeHead(status, headers);
      res.end(body);
    };
    if (this.outage === "hang") {
      this.counts.outage += 1;
      this.#hanging.push(res.socket);
      return;
    }
    if (this.outage === "503") {
      this.counts.outage += 1;
      return answer(503, { "content-type": "text/plain" }, "registry unavailable");
    }
    if (this.token !== null && req.headers.authorization !== `Bearer ${this.token}`) {
      this.counts.unauthorized += 1;
      return answer(401, { "www-authenticate": 'Bearer realm="registry"' }, "");
    }
    if (req.method !== "GET" || new URL(req.url, "http://x").pathname !== this.path) {
      return answer(404, {}, "");
    }
    if (this.oversized) {
      record.status = 200;
      this.counts.ok += 1;
      return this.#streamOversized(res);
    }
    const body = this.#current();
    if (!body) return answer(404, {}, "no bundle");
    const etag = etagOf(body);
    if (req.headers["if-none-match"] === etag) {
      this.counts.notModified += 1;
      return answer(304, { etag }, undefined);
    }
    this.counts.ok += 1;
    answer(200, { etag, "content-type": "application/octet-stream", "content-length": body.length }, body);
  }

  async close() {
    for (const s of this.#hanging.splice(0)) s.destroy();
    if (this.outage === "refused") return;
    await new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }
}

// Command line: serve a bundle file for the demo.
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const arg = (name, fallback) => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? process.argv[i + 1] : fallback;
  };
  const bundleFile = arg("bundle");
  if (!bundleFile) {
    console.error("usage: node tests/support/registry.mjs --bundle FILE [--port 8788] [--token T]");
    process.exit(2);
  }
  const reg = await new MockRegistry({ bundleFile, token: arg("token", null) }).start(Number(arg("port", 8788)));
  console.log(`mock Registry serving ${bundleFile} at ${reg.url}`);
}
