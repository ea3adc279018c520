// What the backend answers is what the client gets: statuses without bodies, redirects (not
// followed), backend errors (not replaced by problem+json), encoded bodies; and a connection
// that breaks before the response head is upstream_unreachable (failed over for GET).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import { startGateway } from "../support/gateway.mjs";
import { startBackend, closeAll, byPath, fixed } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";

let gw, be, reset;
const gz = gzipSync(Buffer.from("hello, compressed world\n".repeat(50)));

before(async () => {
  be = await startBackend(
    "be",
    byPath([
      ["/s204", fixed({ status: 204, headers: { "x-kind": "no-content" } })],
      [
        "/s304",
        async (req, res, record) => {
          await record.bodyDone;
          res.writeHead(304, { etag: '"v1"' });
          res.end();
        },
      ],
      ["/s302", fixed({ status: 302, headers: { location: "http://elsewhere.example/next?a=1" }, body: "moved" })],
      ["/s503", fixed({ status: 503, headers: { "content-type": "text/plain", "retry-after": "5" }, body: "backend busy" })],
      ["/s404", fixed({ status: 404, headers: { "content-type": "application/json" }, body: '{"error":"no such user"}' })],
      ["/gzip", fixed({ headers: { "content-type": "text/plain", "content-encoding": "gzip" }, body: gz })],
    ]),
  );
  // Accepts the connection, then drops it before any response.
  reset = await startBackend("reset", (req) => req.socket.destroy());
  gw = await startGateway({
    config: {
      pools: {
        p: { instances: [{ url: be.url }] },
        "reset-only": { instances: [{ url: reset.url }] },
        "reset-then-live": { instances: [{ url: reset.url }, { url: be.url }] },
      },
      apis: [
        {
          name: "pt",
          base_path: "/pt",
          pool: "p",
          routes: [
            { name: "any", methods: ["*"], path: "/{*rest}" },
            { name: "reset-only", methods: ["GET"], path: "/reset-only", pool: "reset-only" },
            { name: "reset-then-live", methods: ["GET"], path: "/reset-then-live", pool: "reset-then-live" },
          ],
        },
      ],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(be, reset);
});

test("204 and 304 pass through without a body", async () => {
  const a = await gw.requestLogged({ path: "/pt/s204" });
  assert.equal(a.res.status, 204);
  assert.equal(a.res.body.length, 0);
  assert.equal(a.res.headers["x-kind"], "no-content");
  assert.equal(a.log.status, 204);
  const b = await gw.requestLogged({ path: "/pt/s304", headers: { "if-none-match": '"v1"' } });
  assert.equal(b.res.status, 304);
  assert.equal(b.res.body.length, 0);
  assert.equal(b.res.headers.etag, '"v1"');
  assert.equal(be.byRequestId(b.log.request_id)[0].headers["if-none-match"], '"v1"');
});

test("redirects are passed back, never followed", async () => {
  const { res, log } = await gw.requestLogged({ path: "/pt/s302" });
  assert.equal(res.status, 302);
  assert.equal(res.headers.location, "http://elsewhere.example/next?a=1");
  assert.equal(res.text, "moved");
  assert.equal(log.attempts, 1);
});

test("backend error statuses pass through with the backend's body (not problem+json)", async () => {
  const a = await gw.requestLogged({ path: "/pt/s503" });
  assert.equal(a.res.status, 503);
  assert.equal(a.res.text, "backend busy");
  assert.equal(a.res.headers["retry-after"], "5");
  assert.equal(a.res.headers["content-type"], "text/plain");
  assert.equal(a.log.error_code, null);
  const b = await gw.requestLogged({ path: "/pt/s404" });
  assert.equal(b.res.status, 404);
  assert.equal(b.res.text, '{"error":"no such user"}');
  assert.equal(b.log.error_code, null);
  assert.equal(b.log.route, "any");
});

test("a gzip-encoded backend body reaches the client decodable and consistent with Content-Encoding", async () => {
  const res = await gw.request({ path: "/pt/gzip", headers: { "accept-encoding": "gzip" } });
  assert.equal(res.status, 200);
  const text =
    res.headers["content-encoding"] === "gzip" ? gunzipSync(res.body).toString() : res.body.toString();
  assert.equal(text, "hello, compressed world\n".repeat(50));
});

test("connection dropped before the response head → 502 upstream_unreachable", async () => {
  const { res, log } = await gw.requestLogged({ path: "/pt/reset-only" });
  assertProblem(res, { status: 502, code: "upstream_unreachable" });
  assert.ok(!res.text.includes(reset.address));
  assert.ok(log.error_detail?.includes(reset.address), log.error_detail);
});

test("connection dropped before the response head on the first instance → GET fails over (attempts 2)", async () => {
  const { res, log } = await gw.requestLogged({ path: "/pt/reset-then-live" });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json().backend, "be");
  assert.equal(log.attempts, 2);
  assert.equal(log.upstream, be.url);
});
