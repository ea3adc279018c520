// A node:http client for the gateway: raw headers as sent, the whole answer as a Buffer,
// bounded by a timeout. (node:http, not fetch: fetch forbids Connection, TE, Upgrade, Host.)
import http from "node:http";
import { performance } from "node:perf_hooks";

/**
 * request(port, { method, path, headers, body, timeoutMs }) →
 *   { status, headers, rawHeaders, body: Buffer, text, json(), elapsedMs }
 *
 * `headers` are sent as given (set `host` to route by host). No Accept-Encoding is sent
 * unless given, so bodies come back as the backend sent them. `localAddress` binds the
 * client socket (e.g. 127.51.100.23: any 127/8 address is local on Linux).
 */
export function request(port, { method = "GET", path = "/", headers = {}, body, timeoutMs = 15_000, localAddress } = {}) {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: "127.0.0.1", port, method, path, headers, agent: false, setHost: !hasHeader(headers, "host"), localAddress },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("error", fail);
        res.on("end", () => {
          clearTimeout(timer);
          const buf = Buffer.concat(chunks);
          resolve({
            status: res.statusCode,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: buf,
            text: buf.toString("utf8"),
            json: () => JSON.parse(buf.toString("utf8")),
            elapsedMs: performance.now() - start,
          });
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy(new Error(`request ${method} ${path} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    function fail(err) {
      clearTimeout(timer);
      reject(err);
    }
    req.on("error", fail);
    req.end(body);
  });
}

function hasHeader(headers, name) {
  return Object.keys(headers).some((k) => k.toLowerCase() === name);
}

/**
 * Starts a request and returns the live objects for streaming tests:
 * { req, response: Promise<http.IncomingMessage> }. The caller writes/ends `req` itself.
 */
export function openRequest(port, { method = "GET", path = "/", headers = {} } = {}) {
  const req = http.request({ host: "127.0.0.1", port, method, path, headers, agent: false });
  const response = new Promise((resolve, reject) => {
    req.on("response", resolve);
    req.on("error", reject);
  });
  return { req, response };
}

/** Writes `buf` to a writable in `chunkSize` pieces, honouring backpressure. */
export async function writeAll(stream, buf, chunkSize = 64 * 1024) {
  for (let off = 0; off < buf.length; off += chunkSize) {
    if (stream.destroyed) throw new Error("request stream destroyed while writing");
    const ok = stream.write(buf.subarray(off, Math.min(off + chunkSize, buf.length)));
    if (!ok) {
      await new Promise((resolve, reject) => {
        const done = () => {
          stream.off("drain", done);
          stream.off("close", closed);
          resolve();
        };
        const closed = () => {
          stream.off("drain", done);
          reject(new Error("request stream closed while writing"));
        };
        stream.on("drain", done);
        stream.on("close", closed);
      });
    }
  }
}

/** Asserts the RFC 9457 problem shape the gateway uses; returns the parsed body. */
export function problemOf(res) {
  return JSON.parse(res.text);
}
