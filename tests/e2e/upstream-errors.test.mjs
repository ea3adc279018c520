// Upstream failures: a slow backend → 504 upstream_timeout (not retried), a closed port →
// 502 upstream_unreachable; the client never sees the backend's address, the log does.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "../support/gateway.mjs";
import { startBackend, closeAll, closedPort, slow, uploadSink } from "../support/backends.mjs";
import { openRequest } from "../support/client.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { delay, withTimeout } from "../support/util.mjs";

const TIMEOUT_MS = 300;
const SLOW_MS = 2000;
let gw, slowA, slowB, slowBody, sink, dead;

/** Sends the head at once, then the body in two parts 2 × TIMEOUT_MS apart. */
async function slowBodyBehaviour(req, res, record, backend) {
  await record.bodyDone;
  res.writeHead(200, { "content-type": "text/plain", "content-length": 10 });
  res.flushHeaders();
  res.write("hello");
  await new Promise((resolve) => backend.setTimer(resolve, TIMEOUT_MS * 2));
  res.end("world");
}

before(async () => {
  slowA = await startBackend("slow-a", slow(SLOW_MS));
  slowB = await startBackend("slow-b", slow(SLOW_MS));
  slowBody = await startBackend("slow-body", slowBodyBehaviour);
  sink = await startBackend("sink", uploadSink());
  dead = await closedPort();
  gw = await startGateway({
    config: {
      pools: {
        slow: { instances: [{ url: slowA.url }] },
        "slow-pair": { instances: [{ url: slowA.url }, { url: slowB.url }] },
        dead: { instances: [{ url: dead.url }] },
        "slow-body": { instances: [{ url: slowBody.url }] },
        sink: { instances: [{ url: sink.url }] },
        // pool timeout, overridden by the route policy below
        "slow-pool-timeout": { instances: [{ url: slowA.url }], timeout_ms: 60000 },
      },
      apis: [
        {
          name: "err",
          base_path: "/err",
          pool: "slow",
          policies: { upstream: { timeout_ms: TIMEOUT_MS } },
          routes: [
            { name: "slow", methods: ["GET", "POST"], path: "/slow" },
            { name: "slow-pair", methods: ["GET"], path: "/slow-pair", pool: "slow-pair" },
            { name: "dead", methods: ["GET", "POST"], path: "/dead", pool: "dead" },
            { name: "slow-body", methods: ["GET"], path: "/slow-body", pool: "slow-body" },
            { name: "sink", methods: ["POST"], path: "/sink", pool: "sink" },
            {
              name: "route-timeout",
              methods: ["GET"],
              path: "/route-timeout",
              pool: "slow-pool-timeout",
              policies: { upstream: { timeout_ms: 250 } },
            },
          ],
        },
      ],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(slowA, slowB, slowBody, sink);
});

test("slow backend (2 s) with timeout_ms 300 → 504 upstream_timeout well before the backend answers", async () => {
  const { res, log } = await gw.requestLogged({ path: "/err/slow" });
  assertProblem(res, { status: 504, code: "upstream_timeout" });
  assert.ok(res.elapsedMs >= TIMEOUT_MS - 50, `answered after ${res.elapsedMs.toFixed(0)} ms, not before the timeout`);
  assert.ok(res.elapsedMs < SLOW_MS - 300, `answered after ${res.elapsedMs.toFixed(0)} ms, before the backend (${SLOW_MS} ms)`);
  assert.equal(slowA.byRequestId(log.request_id).length, 1, "the backend got the request");
  assert.equal(log.status, 504);
  assert.equal(log.error_code, "upstream_timeout");
  assert.equal(log.attempts, 1);
  assert.ok(!res.text.includes(slowA.address), "no backend address in the client body");
  assert.ok(log.error_detail?.includes(slowA.address), `log error_detail names the backend: ${log.error_detail}`);
});

test("route policy timeout overrides the pool's timeout_ms", async () => {
  const { res } = await gw.requestLogged({ path: "/err/route-timeout" });
  assertProblem(res, { status: 504, code: "upstream_timeout" });
  assert.ok(res.elapsedMs < SLOW_MS - 300, `answered after ${res.elapsedMs.toFixed(0)} ms`);
});

test("a timeout is not retried on another instance (GET, 2-instance pool)", async () => {
  const before = slowA.records.length + slowB.records.length;
  const { res, log } = await gw.requestLogged({ path: "/err/slow-pair" });
  assertProblem(res, { status: 504, code: "upstream_timeout" });
  assert.equal(log.attempts, 1);
  // Give a wrongly retried attempt time to arrive (bounded, short).
  await delay(TIMEOUT_MS);
  const after = slowA.records.length + slowB.records.length;
  assert.equal(after - before, 1, "exactly one instance was contacted");
});

test("backend down (closed port) → 502 upstream_unreachable; address only in the log", async () => {
  for (const method of ["GET", "POST"]) {
    const { res, log } = await gw.requestLogged({ method, path: "/err/dead", body: method === "POST" ? "{}" : undefined });
    const problem = assertProblem(res, { status: 502, code: "upstream_unreachable" });
    assert.ok(!res.text.includes(dead.address), `client body must not contain ${dead.address}: ${res.text}`);
    assert.ok(!res.text.includes(String(dead.port)), `client body must not contain the port: ${res.text}`);
    assert.ok(!JSON.stringify(res.headers).includes(dead.address), "nor any response header");
    assert.equal(problem.detail, undefined, "no detail for unreachable");
    assert.equal(log.status, 502);
    assert.equal(log.error_code, "upstream_unreachable");
    assert.equal(log.attempts, 1);
    assert.equal(log.upstream, dead.url);
    assert.ok(log.error_detail?.includes(dead.address), `log error_detail names ${dead.address}: ${log.error_detail}`);
  }
});

test("the timeout covers the response head only: a body slower than timeout_ms is not cut off", async () => {
  const { res, log } = await gw.requestLogged({ path: "/err/slow-body" });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.text, "helloworld");
  assert.ok(res.elapsedMs >= TIMEOUT_MS * 2 - 50, `body took ${res.elapsedMs.toFixed(0)} ms`);
  assert.equal(log.status, 200);
  assert.equal(log.error_code, null);
});

test("the timeout is for the backend's response head: a client upload slower than timeout_ms, answered at once by the backend → 200", async () => {
  // The client sends 3 parts TIMEOUT_MS + 100 ms apart; the backend answers as soon as the
  // body is complete. The gateway is never waiting on the backend for longer than the timeout.
  const { req, response } = openRequest(gw.port, {
    method: "POST",
    path: "/err/sink",
    headers: { "content-length": "30", "x-request-id": "slow-upload-1" },
  });
  response.catch(() => {});
  try {
    for (let i = 0; i < 3; i++) {
      req.write("x".repeat(10));
      await delay(TIMEOUT_MS + 100);
    }
    req.end();
    const res = await withTimeout(response, 10_000, "response");
    let text = "";
    for await (const c of res) text += c;
    assert.equal(
      res.statusCode,
      200,
      `a slow client upload must not count against the backend's response-head timeout; got ${res.statusCode} ${text}`,
    );
    assert.equal(JSON.parse(text).bodyLength, 30);
  } finally {
    req.destroy();
  }
});
