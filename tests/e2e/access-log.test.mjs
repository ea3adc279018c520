// Access log: exactly one `kind: "access"` JSON line per request, whatever the outcome, with
// every field of shared/src/access_log.rs (AccessLogRecord) typed and filled correctly.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startGateway, uniqueId, clientIp } from "../support/gateway.mjs";
import { startBackend, closeAll, closedPort, slow, download, byPath } from "../support/backends.mjs";
import { openRequest } from "../support/client.mjs";
import { assertAccessRecordShape } from "../support/assertions.mjs";
import { deterministicData, MB, withTimeout } from "../support/util.mjs";

let gw, be, dead;
const big = deterministicData(2 * MB, 11);

before(async () => {
  be = await startBackend(
    "log",
    byPath([
      ["/slow", slow(1500)],
      ["/big", download({ data: big.buf, contentLength: false })],
    ]),
  );
  dead = await closedPort();
  gw = await startGateway({
    config: {
      pools: { p: { instances: [{ url: be.url }] }, dead: { instances: [{ url: dead.url }] } },
      apis: [
        {
          name: "shop",
          base_path: "/shop",
          versions: [{ name: "v1", pool: "p" }],
          routes: [
            { name: "items", methods: ["GET", "POST"], path: "/items/{id}" },
            { name: "slow", methods: ["GET"], path: "/slow", policies: { upstream: { timeout_ms: 200 } } },
            { name: "big", methods: ["GET"], path: "/big" },
            { name: "dead", methods: ["GET"], path: "/dead", pool: "dead" },
          ],
        },
      ],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(be);
});

/** Sends every case, then a marker; once the marker's line is in, every earlier line is. */
test("exactly one access line per request, every field typed, values right", async () => {
  const host = "shop.example.test";
  const cases = [
    { name: "ok GET", method: "GET", path: "/shop/v1/items/1?secret=token", status: 200, route: "items", proxied: true },
    { name: "ok POST with body", method: "POST", path: "/shop/v1/items/2", body: "x".repeat(1234), status: 200, route: "items", proxied: true },
    { name: "HEAD", method: "HEAD", path: "/shop/v1/items/3", status: 200, route: "items", proxied: true },
    { name: "404", method: "GET", path: "/nowhere", status: 404, code: "route_not_found" },
    { name: "405", method: "DELETE", path: "/shop/v1/items/4", status: 405, code: "method_not_allowed" },
    { name: "504", method: "GET", path: "/shop/v1/slow", status: 504, code: "upstream_timeout", route: "slow", proxied: true },
    { name: "502", method: "GET", path: "/shop/v1/dead", status: 502, code: "upstream_unreachable", route: "dead", proxied: true },
  ];
  const from = gw.logs.mark();
  const sent = [];
  for (const c of cases) {
    const id = uniqueId("log");
    const headers = { host, "x-request-id": id, "cf-connecting-ip": "198.51.100.23" };
    if (c.body) headers["content-length"] = String(Buffer.byteLength(c.body));
    const t0 = Date.now();
    const res = await gw.request({ method: c.method, path: c.path, headers, body: c.body });
    sent.push({ ...c, id, res, t0, t1: Date.now() });
    assert.equal(res.status, c.status, `${c.name}: ${res.text}`);
  }
  const marker = uniqueId("marker");
  await gw.request({ path: "/marker", headers: { "x-request-id": marker } });
  await gw.logs.waitForAccess(marker, { from });

  const lines = gw.logs.access(from);
  assert.equal(lines.length, cases.length + 1, "one access line per request, no more");
  for (const s of sent) {
    const mine = lines.filter((l) => l.request_id === s.id);
    assert.equal(mine.length, 1, `${s.name}: exactly one access line`);
    const e = mine[0];
    assertAccessRecordShape(e);
    const t = Date.parse(e.time);
    assert.ok(t >= s.t0 - 1000 && t <= s.t1 + 1000, `${s.name}: time ${e.time} within the request`);
    assert.equal(e.method, s.method, s.name);
    assert.equal(e.host, host, s.name);
    assert.equal(e.path, s.path.split("?")[0], `${s.name}: path without query`);
    assert.equal(e.client_ip, clientIp("198.51.100.23"), s.name);
    assert.equal(e.status, s.status, s.name);
    assert.equal(e.config_version, "v1", s.name);
    assert.equal(e.trace_id.length, 32);
    assert.equal(e.error_code, s.code ?? null, s.name);
    if (s.route) {
      assert.equal(e.route, s.route, s.name);
      assert.equal(e.api, "shop", s.name);
      assert.equal(e.version, "v1", s.name);
      assert.equal(e.environment, "default", s.name);
    } else {
      assert.equal(e.route, null, s.name);
      assert.equal(e.api, null, s.name);
    }
    if (s.proxied) {
      assert.ok(e.attempts >= 1, `${s.name}: attempts`);
      assert.ok(Number.isInteger(e.backend_ms), `${s.name}: backend_ms is set when a backend was tried`);
      assert.ok(e.upstream, `${s.name}: upstream`);
    } else {
      assert.equal(e.attempts, 0, s.name);
      assert.equal(e.backend_ms, null, s.name);
      assert.equal(e.upstream, null, s.name);
    }
    if (s.body) assert.equal(e.bytes_in, Buffer.byteLength(s.body), `${s.name}: bytes_in`);
    const cl = s.res.headers["content-length"];
    if (cl !== undefined && s.method !== "HEAD") {
      assert.equal(e.bytes_out, Number(cl), `${s.name}: bytes_out = response Content-Length`);
      assert.equal(e.bytes_out, s.res.body.length, `${s.name}: bytes_out = body length`);
    }
    if (s.code === "upstream_timeout") {
      assert.ok(e.backend_ms >= 150, `${s.name}: backend_ms ${e.backend_ms} covers the wait`);
      assert.ok(e.gateway_ms < e.backend_ms, `${s.name}: gateway_ms excludes the backend wait`);
    }
  }
});

test("a streamed (chunked) response: one access line, logged with the head, bytes_out null", async () => {
  const id = uniqueId("big");
  const from = gw.logs.mark();
  const { req, response } = openRequest(gw.port, { path: "/shop/v1/big", headers: { "x-request-id": id } });
  req.end();
  const res = await withTimeout(response, 10_000, "response head");
  const hash = createHash("sha256");
  let n = 0;
  for await (const c of res) {
    hash.update(c);
    n += c.length;
  }
  assert.equal(n, big.buf.length);
  assert.equal(hash.digest("hex"), big.sha256);
  const marker = uniqueId("marker");
  await gw.request({ path: "/marker", headers: { "x-request-id": marker } });
  await gw.logs.waitForAccess(marker, { from });
  const mine = gw.logs.accessFor(id, from);
  assert.equal(mine.length, 1);
  assertAccessRecordShape(mine[0]);
  assert.equal(mine[0].status, 200);
  assert.equal(mine[0].bytes_out, null, "no Content-Length → bytes_out null");
});

test("the request id of the access line is the one returned to the client and sent upstream", async () => {
  const from = gw.logs.mark();
  const res = await gw.request({ path: "/shop/v1/items/9" });
  const id = res.headers["x-request-id"];
  const e = await gw.logs.waitForAccess(id, { from });
  assert.equal(be.byRequestId(id).length, 1);
  assert.equal(e.request_id, id);
  assert.equal(e.upstream, be.url);
  assert.equal(e.attempts, 1);
});
