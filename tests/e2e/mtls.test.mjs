// Client certificates (mTLS). On Workers the edge verifies the certificate and the worker reads
// the result from `request.cf.tlsClientAuth` (set here through Miniflare's dispatchFetch). Spin
// cannot see client certificates: there a config asking for them is refused with a clear error
// at the path that asks, and never activated (no route of it serves, nothing reaches a backend).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway, onSpin, onWorkers } from "../support/gateway.mjs";
import { startBackend, closeAll } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { NO_CLIENT_CERTIFICATES } from "../support/spin-gaps.mjs";

const FINGERPRINT = "ab".repeat(32);
const WORKERS_ONLY = { skip: onSpin && NO_CLIENT_CERTIFICATES };

let gw, backend;

before(async () => {
  backend = await startBackend("billing");
  gw = await startGateway({
    config: {
      pools: { p: { instances: [{ url: backend.url }] } },
      apis: [
        {
          name: "billing",
          base_path: "/billing",
          pool: "p",
          routes: [
            {
              name: "certs",
              path: "/certs",
              policies: {
                auth: { accept: ["mtls"], mtls: { certificates: [{ fingerprint_sha256: FINGERPRINT, consumer: "billing-svc" }] } },
              },
            },
            { name: "open", path: "/open" },
          ],
        },
      ],
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(backend);
});

/** The edge's view of a client certificate, as request.cf.tlsClientAuth carries it. */
function tlsClientAuth({ presented = true, verified = "SUCCESS", fingerprint = FINGERPRINT, revoked = false } = {}) {
  return {
    certPresented: presented ? "1" : "0",
    certVerified: presented ? verified : "NONE",
    certRevoked: revoked ? "1" : "0",
    certFingerprintSHA256: presented ? fingerprint : "",
    certSubjectDNRFC2253: presented ? "CN=billing-svc,O=Example" : "",
    certIssuerDNRFC2253: presented ? "CN=Example Client CA" : "",
  };
}

/** GET through Miniflare's dispatchFetch with `cert` as request.cf.tlsClientAuth (null: none). */
async function call(path, cert) {
  const res = await gw.mf.dispatchFetch(new URL(path, gw.url), {
    headers: { "x-request-id": `mtls-${Math.random().toString(36).slice(2)}` },
    ...(cert ? { cf: { tlsClientAuth: cert } } : {}),
  });
  const text = await res.text();
  return { status: res.status, headers: Object.fromEntries(res.headers), text, json: () => JSON.parse(text) };
}

test("a verified certificate with a known fingerprint passes as its consumer", WORKERS_ONLY, async () => {
  const before = backend.records.length;
  const res = await call("/billing/certs", tlsClientAuth());
  assert.equal(res.status, 200, res.text);
  const seen = backend.records.slice(before);
  assert.equal(seen.length, 1);
  assert.equal(seen[0].headers["x-edgegate-subject"], "billing-svc");
  const log = await gw.logs.waitForAccess(res.headers["x-request-id"]);
  assert.deepEqual([log.auth_method, log.subject], ["mtls", "billing-svc"]);
});

test("a certificate the edge could not verify, a revoked one and an unknown one are refused", WORKERS_ONLY, async () => {
  const before = backend.records.length;
  for (const [cert, code] of [
    [tlsClientAuth({ verified: "FAILED:self signed certificate" }), "certificate_invalid"],
    [tlsClientAuth({ revoked: true }), "certificate_invalid"],
    [tlsClientAuth({ fingerprint: "cd".repeat(32) }), "unknown_certificate"],
  ]) {
    const res = await call("/billing/certs", cert);
    assert.equal(res.json().code, code, res.text);
    assert.ok(res.status === 401 || res.status === 403, `${code}: ${res.status}`);
  }
  const none = await call("/billing/certs", null);
  assert.equal(none.status, 401, none.text);
  assert.equal(backend.records.length, before, "nothing refused reached the backend");
});

test("on Spin an mtls config is refused with a clear error at its path and never activated", {
  skip: onWorkers && "workers: client certificates are available (the tests above)",
}, async () => {
  // The whole config is refused, not just its mtls route: nothing serves, nothing is sent.
  // (Spin reads the config on each request: the first one logs the rejection.)
  for (const path of ["/billing/certs", "/billing/open"]) {
    assertProblem(await gw.request({ path }), { status: 503, code: "no_config" });
  }
  const rejected = await gw.logs.waitForEvent("config_rejected", (e) => e.version === "v1");
  assert.equal(rejected.serving, null);
  assert.deepEqual(rejected.errors.map((e) => e.path), ["$.apis[0].routes[0].policies.auth.accept"]);
  assert.match(rejected.errors[0].message, /`mtls` is not available on this platform: it cannot see client certificates/);
  assert.equal(backend.records.length, 0);
  assert.equal(gw.logs.events("config_activated").length, 0);
});
