// Load balancing and failover. One Miniflare isolate, so the smooth weighted round-robin
// state is shared by every request: counts are exact. Each failover test has its own pool,
// used once, so its first pick is the pool's first instance (the closed port).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "../support/gateway.mjs";
import { startBackend, closeAll, closedPort } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { deterministicData } from "../support/util.mjs";

let gw, a, b, c, d, live, dead, dead2;

before(async () => {
  [a, b, c, d, live] = await Promise.all(["a", "b", "c", "d", "live"].map((n) => startBackend(n)));
  dead = await closedPort();
  dead2 = await closedPort();
  const failoverPool = { instances: [{ url: dead.url }, { url: live.url }] };
  gw = await startGateway({
    config: {
      pools: {
        rr11: { instances: [{ url: a.url }, { url: b.url }], balance: "round_robin" },
        rr31: { instances: [{ url: c.url, weight: 3 }, { url: d.url, weight: 1 }] },
        "fo-get": failoverPool,
        "fo-post": failoverPool,
        "fo-put": failoverPool,
        "fo-bigput": failoverPool,
        "fo-off": failoverPool,
        "fo-put-empty": failoverPool,
        "fo-delete-empty": failoverPool,
        "fo-put-chunked": failoverPool,
        "fo-three": { instances: [{ url: dead.url }, { url: dead2.url }, { url: live.url }] },
        "fo-all-dead": { instances: [{ url: dead.url }, { url: dead2.url }] },
      },
      apis: [
        {
          name: "lb",
          base_path: "/lb",
          pool: "rr11",
          routes: [
            { name: "rr11", methods: ["GET"], path: "/rr11" },
            { name: "rr31", methods: ["GET"], path: "/rr31", pool: "rr31" },
            { name: "fo-get", methods: ["GET"], path: "/fo-get", pool: "fo-get" },
            { name: "fo-post", methods: ["POST"], path: "/fo-post", pool: "fo-post" },
            { name: "fo-put", methods: ["PUT"], path: "/fo-put", pool: "fo-put" },
            { name: "fo-bigput", methods: ["PUT"], path: "/fo-bigput", pool: "fo-bigput" },
            {
              name: "fo-off",
              methods: ["GET"],
              path: "/fo-off",
              pool: "fo-off",
              policies: { upstream: { failover: false } },
            },
            { name: "fo-put-empty", methods: ["PUT"], path: "/fo-put-empty", pool: "fo-put-empty" },
            { name: "fo-delete-empty", methods: ["DELETE"], path: "/fo-delete-empty", pool: "fo-delete-empty" },
            { name: "fo-put-chunked", methods: ["PUT"], path: "/fo-put-chunked", pool: "fo-put-chunked" },
            { name: "fo-three", methods: ["GET"], path: "/fo-three", pool: "fo-three" },
            { name: "fo-all-dead", methods: ["GET"], path: "/fo-all-dead", pool: "fo-all-dead" },
          ],
        },
      ],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(a, b, c, d, live);
});

async function backendOf(path) {
  const res = await gw.request({ path });
  assert.equal(res.status, 200, res.text);
  return res.json().backend;
}

test("round-robin over 2 instances with weights 1:1 alternates", async () => {
  const picks = [];
  for (let i = 0; i < 10; i++) picks.push(await backendOf("/lb/rr11"));
  for (let i = 1; i < picks.length; i++) {
    assert.notEqual(picks[i], picks[i - 1], `picks alternate: ${picks.join(",")}`);
  }
  assert.deepEqual(new Set(picks), new Set(["a", "b"]));
  assert.equal(picks.filter((p) => p === "a").length, 5);
});

test("weights 3:1 over 40 requests → exactly 30/10, spread evenly (smooth)", async () => {
  const picks = [];
  for (let i = 0; i < 40; i++) picks.push(await backendOf("/lb/rr31"));
  const count = (n) => picks.filter((p) => p === n).length;
  assert.equal(count("c"), 30, `picks: ${picks.join("")}`);
  assert.equal(count("d"), 10, `picks: ${picks.join("")}`);
  // smooth WRR: d never twice in a row, every window of 4 has exactly one d
  for (let i = 0; i + 4 <= picks.length; i++) {
    assert.equal(picks.slice(i, i + 4).filter((p) => p === "d").length, 1, `window at ${i}: ${picks.join("")}`);
  }
  assert.equal(c.records.length, 30);
  assert.equal(d.records.length, 10);
});

test("failover: GET to [closed port, live] → 200 from the live one, access log attempts 2", async () => {
  const { res, log } = await gw.requestLogged({ path: "/lb/fo-get?x=1" });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json().backend, "live");
  assert.equal(res.json().url, "/fo-get?x=1");
  assert.equal(log.attempts, 2);
  assert.equal(log.upstream, live.url, "upstream is the last attempt's instance");
  assert.equal(log.status, 200);
  assert.equal(log.error_code, null);
});

test("no failover for non-idempotent POST → 502 upstream_unreachable, live backend untouched", async () => {
  const before = live.records.length;
  const { res, log } = await gw.requestLogged({
    method: "POST",
    path: "/lb/fo-post",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ order: 1 }),
  });
  assertProblem(res, { status: 502, code: "upstream_unreachable" });
  assert.equal(log.attempts, 1);
  assert.equal(log.upstream, dead.url);
  assert.equal(live.records.length, before, "the live backend got nothing");
});

test("failover: PUT with a small body → the live backend gets the full body (attempts 2)", async () => {
  const data = deterministicData(20_000, 7);
  const { res, log } = await gw.requestLogged({
    method: "PUT",
    path: "/lb/fo-put",
    headers: { "content-type": "application/octet-stream", "content-length": String(data.buf.length) },
    body: data.buf,
  });
  assert.equal(res.status, 200, res.text);
  const echo = res.json();
  assert.equal(echo.backend, "live");
  assert.equal(echo.method, "PUT");
  assert.equal(echo.bodyLength, data.buf.length);
  assert.equal(echo.bodySha256, data.sha256);
  assert.equal(echo.headers["content-length"], String(data.buf.length));
  assert.equal(log.attempts, 2);
  assert.equal(log.bytes_in, data.buf.length);
});

test("PUT with a body larger than replay_buffer_bytes (64 KiB) streams once: no failover → 502", async () => {
  const data = deterministicData(200_000, 8);
  const before = live.records.length;
  const { res, log } = await gw.requestLogged({
    method: "PUT",
    path: "/lb/fo-bigput",
    headers: { "content-length": String(data.buf.length) },
    body: data.buf,
  });
  assertProblem(res, { status: 502, code: "upstream_unreachable" });
  assert.equal(log.attempts, 1);
  assert.equal(live.records.length, before);
});

test("failover: false in the route policy → GET is not retried", async () => {
  const { res, log } = await gw.requestLogged({ path: "/lb/fo-off" });
  assertProblem(res, { status: 502, code: "upstream_unreachable" });
  assert.equal(log.attempts, 1);
});

test("failover: an empty body sent with Content-Length: 0 (PUT, DELETE) is replayable → fails over", async () => {
  for (const [method, path] of [
    ["PUT", "/lb/fo-put-empty"],
    ["DELETE", "/lb/fo-delete-empty"],
  ]) {
    const { res, log } = await gw.requestLogged({ method, path, headers: { "content-length": "0" }, body: "" });
    assert.equal(
      res.status,
      200,
      `${method} with Content-Length: 0 should fail over to the live instance; got ${res.status} attempts=${log.attempts} ${log.error_detail}`,
    );
    assert.equal(res.json().backend, "live");
    assert.equal(res.json().bodyLength, 0);
    assert.equal(log.attempts, 2);
  }
});

test("a chunked PUT body (no Content-Length) streams once: no failover → 502", async () => {
  const { res, log } = await gw.requestLogged({
    method: "PUT",
    path: "/lb/fo-put-chunked",
    headers: { "transfer-encoding": "chunked" },
    body: "abc",
  });
  assertProblem(res, { status: 502, code: "upstream_unreachable" });
  assert.equal(log.attempts, 1);
});

test("failover tries each other instance once: [closed, closed, live] → attempts 3", async () => {
  const { res, log } = await gw.requestLogged({ path: "/lb/fo-three" });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json().backend, "live");
  assert.equal(log.attempts, 3);
});

test("every instance down → 502 after trying each once; the log names every address, the client none", async () => {
  const { res, log } = await gw.requestLogged({ path: "/lb/fo-all-dead" });
  assertProblem(res, { status: 502, code: "upstream_unreachable" });
  assert.equal(log.attempts, 2);
  for (const x of [dead, dead2]) {
    assert.ok(log.error_detail.includes(x.address), `log names ${x.address}: ${log.error_detail}`);
    assert.ok(!res.text.includes(x.address));
  }
});
