// API keys end to end: credential records seeded in KV (as the Registry sync will write them),
// looked up by the SHA-256 of the key; keys never reach the backend or the logs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startGateway } from "../support/gateway.mjs";
import { startBackend, closeAll } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";

const credentialKey = (key) => `credential:apikey:${crypto.createHash("sha256").update(key).digest("hex")}`;
const KEYS = {
  "ak-live-1": { consumer_id: "acme", application_id: "acme-web", status: "active", scopes: ["orders:read", "orders:write"] },
  "ak-revoked": { consumer_id: "acme", status: "revoked" },
  "ak-expired": { consumer_id: "acme", status: "active", expires_at: 1_000_000_000 },
};

let gw, backend;

before(async () => {
  backend = await startBackend("orders");
  gw = await startGateway({
    config: {
      gateway: { identity_headers: { method: "x-edgegate-auth-method" } },
      pools: { orders: { instances: [{ url: backend.url }] } },
      apis: [
        {
          name: "orders",
          base_path: "/orders",
          pool: "orders",
          policies: { auth: { accept: ["api_key"], api_key: { header: "x-api-key", query: "api_key" } } },
          routes: [{ name: "all", path: "/{*rest}" }],
        },
      ],
    },
    kv: Object.fromEntries(Object.entries(KEYS).map(([k, v]) => [credentialKey(k), JSON.stringify(v)])),
  });
});

after(async () => {
  await gw?.close();
  await closeAll(backend);
});

test("a live key passes; the backend gets the identity, never the key (header or query)", async () => {
  const { res, log } = await gw.requestLogged({ path: "/orders/7?x=1", headers: { "x-api-key": "ak-live-1" } });
  assert.equal(res.status, 200);
  const seen = res.json();
  assert.equal(seen.headers["x-api-key"], undefined);
  assert.equal(seen.headers["x-edgegate-subject"], "acme");
  assert.equal(seen.headers["x-edgegate-application"], "acme-web");
  assert.equal(seen.headers["x-edgegate-scopes"], "orders:read orders:write");
  assert.equal(seen.headers["x-edgegate-auth-method"], "api_key");
  assert.equal(log.auth_method, "api_key");
  assert.equal(log.subject, "acme");

  const viaQuery = await gw.requestLogged({ path: "/orders/7?api_key=ak-live-1&x=1" });
  assert.equal(viaQuery.res.status, 200);
  assert.equal(viaQuery.res.json().url, "/7?x=1", "the key parameter is removed");
  const everything = [...gw.logs.entries.map((e) => JSON.stringify(e)), ...gw.logs.other.map((o) => o.line)];
  assert.ok(everything.every((l) => !l.includes("ak-live-1")), "no key in any log line");
});

test("revoked, expired, unknown and missing keys → 401 with their codes", async () => {
  for (const [key, code] of [["ak-revoked", "key_revoked"], ["ak-expired", "key_expired"], ["ak-nope", "unknown_api_key"], [null, "missing_credentials"]]) {
    const headers = key ? { "x-api-key": key } : {};
    const { res } = await gw.requestLogged({ path: "/orders/7", headers });
    assertProblem(res, { status: 401, code });
  }
});
