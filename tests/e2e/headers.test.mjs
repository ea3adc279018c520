// Header hygiene: hop-by-hop and spoofable request headers never reach the backend as sent;
// the gateway sets the forwarding headers, keeps or makes X-Request-ID and propagates or
// starts a W3C trace. Requests go through node:http so Connection/TE/Upgrade/Host are sent.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway, clientIp, onSpin } from "../support/gateway.mjs";
import { WASI_HIDES_CONNECTION, IPV4_CLIENTS_ONLY } from "../support/spin-gaps.mjs";
import { startBackend, closeAll, echo, byPath, fixed } from "../support/backends.mjs";
import { TRACEPARENT } from "../support/assertions.mjs";

let gw, be;

before(async () => {
  be = await startBackend(
    "echo",
    byPath([
      [
        "/hop-response",
        echo({
          headers: {
            connection: "x-resp-hop",
            "x-resp-hop": "secret",
            "keep-alive": "timeout=5",
            "proxy-authenticate": "Basic realm=x",
            upgrade: "h2c",
            "x-normal-response": "kept",
          },
        }),
      ],
      [
        "/cookies",
        fixed({
          headers: { "set-cookie": ["a=1; Path=/; HttpOnly", "b=2; Path=/", "c=3, with comma; Path=/"] },
          body: "ok",
        }),
      ],
      ["/own-id", echo({ headers: { "x-request-id": "from-backend" } })],
    ]),
  );
  gw = await startGateway({
    config: {
      gateway: { strip_request_headers: ["x-internal-user", "X-Tenant-Override"] },
      pools: { p: { instances: [{ url: be.url }] } },
      apis: [{ name: "h", base_path: "/h", pool: "p", routes: [{ name: "any", path: "/{*rest}" }] }],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(be);
});

/** Sends through the gateway; returns { res, log, seen } where seen = backend's headers. */
async function send(headers, path = "/h/x") {
  const { res, log } = await gw.requestLogged({ path, headers });
  assert.equal(res.status, 200, res.text);
  const rec = be.byRequestId(res.headers["x-request-id"]);
  assert.equal(rec.length, 1, "backend got exactly one request with this id");
  return { res, log, seen: rec[0].headers, rawSeen: rec[0].rawHeaders };
}

test("hop-by-hop request headers (Connection and the fields it names, Keep-Alive, TE, Upgrade, Proxy-*) are not forwarded", async () => {
  const { seen } = await send({
    connection: "keep-alive, X-Hop-Named, x-hop-two",
    "x-hop-named": "must-not-pass",
    "x-hop-two": "must-not-pass",
    "keep-alive": "timeout=5, max=100",
    te: "trailers",
    upgrade: "h2c",
    "proxy-authorization": "Basic dXNlcjpwYXNz",
    "proxy-connection": "keep-alive",
    "x-end-to-end": "kept",
  });
  assert.equal(seen["x-end-to-end"], "kept", "ordinary headers are forwarded");
  // On Spin the fields the client's Connection names are checked in their own test (skipped
  // there): wasi:http hides the Connection header from the component.
  const named = onSpin ? [] : ["x-hop-named", "x-hop-two"];
  for (const h of [...named, "keep-alive", "te", "upgrade", "proxy-authorization", "proxy-connection"]) {
    assert.equal(seen[h], undefined, `${h} must not reach the backend (saw ${JSON.stringify(seen[h])})`);
  }
  assert.ok(
    !String(seen.connection ?? "").toLowerCase().includes("x-hop"),
    `the client's Connection value is not forwarded (saw ${seen.connection})`,
  );
});

test("fields the client's Connection header names are not forwarded", { skip: onSpin && WASI_HIDES_CONNECTION }, async () => {
  const { seen } = await send({ connection: "X-Hop-Named, x-hop-two", "x-hop-named": "must-not-pass", "x-hop-two": "must-not-pass" });
  assert.equal(seen["x-hop-named"], undefined);
  assert.equal(seen["x-hop-two"], undefined);
});

test("client-sent forwarding/identity headers and configured strip_request_headers are not forwarded as sent", async () => {
  const { seen, log } = await send({
    host: "gw.example.test:8443",
    "cf-connecting-ip": "203.0.113.7",
    "x-forwarded-for": "6.6.6.6",
    "x-forwarded-host": "evil.example",
    "x-forwarded-proto": "https",
    "x-forwarded-prefix": "/evil",
    forwarded: "for=6.6.6.6;host=evil.example;proto=https",
    "x-real-ip": "6.6.6.6",
    "true-client-ip": "6.6.6.6",
    "x-client-ip": "6.6.6.6",
    "x-cluster-client-ip": "6.6.6.6",
    "x-edgegate-foo": "spoof",
    "x-edgegate-consumer": "admin",
    "x-internal-user": "root",
    "x-tenant-override": "other",
    authorization: "Bearer kept",
  });
  for (const h of [
    "x-forwarded-prefix",
    "x-real-ip",
    "true-client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-edgegate-foo",
    "x-edgegate-consumer",
    "x-internal-user",
    "x-tenant-override",
    "cf-connecting-ip",
  ]) {
    assert.equal(seen[h], undefined, `${h} must not reach the backend (saw ${JSON.stringify(seen[h])})`);
  }
  assert.equal(seen.authorization, "Bearer kept", "end-to-end credentials are forwarded");
  // Set by the gateway, from what it knows (client ip = CF-Connecting-IP on Workers, the
  // socket's peer on Spin), not from the client.
  const ip = clientIp("203.0.113.7");
  assert.equal(log.client_ip, ip);
  assert.equal(seen["x-forwarded-for"], ip);
  assert.equal(seen["x-forwarded-proto"], "http");
  assert.equal(seen["x-forwarded-host"], "gw.example.test:8443");
  assert.equal(seen.forwarded, `for=${ip};host="gw.example.test:8443";proto=http`);
});

test("forwarding headers are set when the client sends none; XFF is the client ip the gateway logged", async () => {
  const { seen, log } = await send({ host: "plain.test" });
  assert.ok(log.client_ip, "Miniflare gives a client ip");
  assert.equal(seen["x-forwarded-for"], log.client_ip);
  assert.equal(seen["x-forwarded-proto"], "http");
  assert.equal(seen["x-forwarded-host"], "plain.test");
  assert.match(seen.forwarded, /^for=("\[[0-9a-f:]+\]"|[0-9.]+);host=plain\.test;proto=http$/);
});

test("IPv6 client address is quoted and bracketed in Forwarded", {
  skip: onSpin && IPV4_CLIENTS_ONLY,
}, async () => {
  const { seen } = await send({ host: "v6.test", "cf-connecting-ip": "2001:db8::1" });
  assert.equal(seen["x-forwarded-for"], "2001:db8::1");
  assert.equal(seen.forwarded, 'for="[2001:db8::1]";host=v6.test;proto=http');
});

test("X-Request-ID: a sane client id is kept, sent upstream and returned", async () => {
  for (const id of ["req-abc.123:x/y+z=", "A".repeat(128)]) {
    const { res, seen, log } = await send({ "x-request-id": id });
    assert.equal(res.headers["x-request-id"], id);
    assert.equal(seen["x-request-id"], id);
    assert.equal(log.request_id, id);
  }
});

test("X-Request-ID: generated when absent or not sane; the backend and client see the same one", async () => {
  const cases = [null, "has space", "<script>alert(1)</script>", "x".repeat(129), ""];
  const ids = new Set();
  for (const sent of cases) {
    const headers = sent === null ? {} : { "x-request-id": sent };
    const res = await gw.request({ path: "/h/gen", headers });
    assert.equal(res.status, 200);
    const id = res.headers["x-request-id"];
    assert.match(id, /^[0-9a-f]{32}$/, `generated id for ${JSON.stringify(sent)}`);
    assert.notEqual(id, sent);
    const rec = be.byRequestId(id);
    assert.equal(rec.length, 1, "backend saw the generated id");
    await gw.logs.waitForAccess(id);
    ids.add(id);
  }
  assert.equal(ids.size, cases.length, "every generated id is different");
});

test("traceparent: same trace id and flags, new parent id when the client sends a valid one", async () => {
  const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  for (const flags of ["01", "00"]) {
    const sent = `00-${trace}-00f067aa0ba902b7-${flags}`;
    const { seen, log } = await send({ traceparent: sent });
    const m = TRACEPARENT.exec(seen.traceparent ?? "");
    assert.ok(m, `valid traceparent upstream: ${seen.traceparent}`);
    assert.equal(m[1], trace, "trace id kept");
    assert.notEqual(m[2], "00f067aa0ba902b7", "new parent (span) id");
    assert.notEqual(m[2], "0".repeat(16));
    assert.equal(m[3], flags, "flags kept");
    assert.equal(log.trace_id, trace, "access log trace_id");
  }
});

test("traceparent: a new valid W3C trace when absent or invalid", async () => {
  const seenTraces = new Set();
  for (const sent of [null, "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"]) {
    const headers = sent === null ? {} : { traceparent: sent };
    const { seen, log } = await send(headers);
    const m = TRACEPARENT.exec(seen.traceparent ?? "");
    assert.ok(m, `valid traceparent upstream for ${JSON.stringify(sent)}: ${seen.traceparent}`);
    assert.notEqual(m[1], "0".repeat(32));
    assert.notEqual(m[2], "0".repeat(16));
    assert.equal(m[3], "01", "a new trace is sampled");
    assert.notEqual(m[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.equal(log.trace_id, m[1]);
    seenTraces.add(m[1]);
  }
  assert.equal(seenTraces.size, 4, "each new trace id is different");
});

test("response: hop-by-hop headers from the backend (and fields its Connection names) do not reach the client", async () => {
  const res = await gw.request({ path: "/h/hop-response" });
  assert.equal(res.status, 200);
  assert.equal(res.headers["x-normal-response"], "kept");
  if (!onSpin) assert.equal(res.headers["x-resp-hop"], undefined, "field named by the backend's Connection header");
  assert.equal(res.headers["proxy-authenticate"], undefined);
  assert.equal(res.headers.upgrade, undefined);
  assert.ok(!String(res.headers["keep-alive"] ?? "").includes("timeout=5"), "backend's Keep-Alive");
});

test("response: a field the backend's Connection header names does not reach the client", { skip: onSpin && WASI_HIDES_CONNECTION }, async () => {
  const res = await gw.request({ path: "/h/hop-response" });
  assert.equal(res.status, 200);
  assert.equal(res.headers["x-resp-hop"], undefined);
});

test("response: several Set-Cookie headers reach the client as separate fields, unchanged", async () => {
  const res = await gw.request({ path: "/h/cookies" });
  assert.equal(res.status, 200);
  assert.deepEqual(res.headers["set-cookie"], ["a=1; Path=/; HttpOnly", "b=2; Path=/", "c=3, with comma; Path=/"]);
});

test("response: X-Request-ID is the gateway's, even when the backend sends its own", async () => {
  const res = await gw.request({ path: "/h/own-id", headers: { "x-request-id": "client-chosen-1" } });
  assert.equal(res.status, 200);
  assert.equal(res.headers["x-request-id"], "client-chosen-1");
  const raw = [];
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    if (res.rawHeaders[i].toLowerCase() === "x-request-id") raw.push(res.rawHeaders[i + 1]);
  }
  assert.deepEqual(raw, ["client-chosen-1"], "exactly one X-Request-ID");
});

describe("gateway.trust_forwarded: true (behind another proxy)", () => {
  let gw2;
  before(async () => {
    gw2 = await startGateway({
      config: {
        gateway: { trust_forwarded: true },
        pools: { p: { instances: [{ url: be.url }] } },
        apis: [{ name: "h", base_path: "/h", pool: "p", routes: [{ name: "any", path: "/{*rest}" }] }],
      },
    });
  });
  after(async () => {
    await gw2?.close();
  });

  test("the client's X-Forwarded-For / Forwarded are kept and this hop appended", async () => {
    const res = await gw2.request({
      path: "/h/trusted",
      headers: {
        host: "edge.test",
        "cf-connecting-ip": "203.0.113.9",
        "x-forwarded-for": "198.51.100.1",
        forwarded: "for=198.51.100.1",
        "x-real-ip": "6.6.6.6",
      },
    });
    assert.equal(res.status, 200);
    const seen = be.byRequestId(res.headers["x-request-id"])[0].headers;
    const ip = clientIp("203.0.113.9");
    assert.equal(seen["x-forwarded-for"], `198.51.100.1, ${ip}`);
    assert.equal(seen.forwarded, `for=198.51.100.1, for=${ip};host=edge.test;proto=http`);
    assert.equal(seen["x-real-ip"], undefined, "other spoofable headers are still removed");
  });
});
