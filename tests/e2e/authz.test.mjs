// Authorization end to end: a Registry snapshot built by the operator CLI (`edgegate snapshot
// build`) and uploaded to KV as binary shards + manifest; API keys looked up in it; the
// subscription, environment, scope, role and IP rules; shadow mode; hide-with-404; audit
// lines (never a key); and a corrupted snapshot that is refused while the previous one keeps
// serving.
//
// One gateway serves every case, in order: it starts with no snapshot (the first test checks
// `snapshot_unavailable`, then uploads V1 and activates it through the cron); the cases after
// it all see V1; the last test uploads corrupted snapshots and then V2. The refresh interval is
// short (EDGEGATE_SNAPSHOT_REFRESH_MS), but activations are driven by the cron so every wait is
// for an event, never a sleep.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startGateway, clientIp, onSpin } from "../support/gateway.mjs";
import { IPV4_CLIENTS_ONLY } from "../support/spin-gaps.mjs";
import { startBackend, closeAll } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { signCompact, hmacSecret } from "../support/idp.mjs";
import { sha256 } from "../support/util.mjs";
import { MANIFEST_KEY, apiKeyDigest, buildSnapshot, shardKey, uploadSnapshot } from "../support/snapshot.mjs";

const PROD = "api.example.com";
const SANDBOX = "sandbox.example.com";
const V1 = "authz-e2e-1";
const V2 = "authz-e2e-2";
const AUD = "edgegate-tests";
const HS_ISS = "https://hs.authz.edgegate.test";
const HS_SECRET_NAME = "E2E_AUTHZ_HS_KEY";
const hsSecret = hmacSecret(48);
const NOW = Math.floor(Date.now() / 1000);
const JWT_RULES = { providers: ["hs"], audiences: [AUD], algorithms: ["HS256"] };

// API keys with a random part, so "never in a log line" means something.
const salt = crypto.randomBytes(6).toString("hex");
const KEY = Object.fromEntries(
  ["web", "nosub", "susp", "exp", "v6", "dorm"].map((n) => [n, `ak-${n}-${salt}`]),
);

let gw, backend;

// ------------------------------------------------------------------------------ snapshot

/** The Registry snapshot: one application per situation, each with one production key. */
function snapshotDoc(version, { nosubSubscribed = false } = {}) {
  const app = (id, consumer_id = "acme") => ({ id, consumer_id, name: id });
  const key = (name, app_id, extra = {}) => ({
    kind: "api_key",
    key: apiKeyDigest(KEY[name]),
    consumer_id: app_id === "app-dorm" ? "dormant" : "acme",
    application_id: app_id,
    status: "active",
    scopes: [],
    environment: "production",
    ...extra,
  });
  const sub = (id, application_id, extra = {}) => ({
    id,
    application_id,
    api: "orders",
    versions: ["*"],
    environment: "production",
    plan_id: "gold",
    status: "active",
    scopes: [],
    ip_allow: [],
    ip_deny: [],
    flags: {},
    metadata: {},
    ...extra,
  });
  const subscriptions = [
    sub("sub-web-prod", "app-web", { versions: ["v1"], scopes: ["orders:history"] }),
    sub("sub-web-sandbox", "app-web", { environment: "sandbox" }),
    sub("sub-susp", "app-susp", { status: "suspended" }),
    sub("sub-exp", "app-exp", { valid_from: NOW - 7200, valid_until: NOW - 3600 }),
    sub("sub-v6", "app-v6", { ip_allow: ["2001:db8::/32"], scopes: ["orders:read"] }),
    sub("sub-dorm", "app-dorm"),
  ];
  if (nosubSubscribed) subscriptions.push(sub("sub-nosub-new", "app-nosub"));
  return {
    version,
    consumers: [
      { id: "acme", name: "ACME", status: "active" },
      { id: "dormant", name: "Dormant Ltd", status: "suspended" },
    ],
    applications: [app("app-web"), app("app-nosub"), app("app-susp"), app("app-exp"), app("app-v6"), app("app-dorm", "dormant")],
    credentials: [
      key("web", "app-web", { scopes: ["orders:read"] }),
      key("nosub", "app-nosub", { scopes: ["orders:read"] }),
      key("susp", "app-susp", { scopes: ["orders:read"] }),
      key("exp", "app-exp", { scopes: ["orders:read"] }),
      key("v6", "app-v6"), // no scopes of its own: its subscription grants orders:read
      key("dorm", "app-dorm", { scopes: ["orders:read"] }),
    ],
    plans: [{ id: "gold", tier: "gold", rate_plan: "rp-gold" }],
    subscriptions,
  };
}

// ------------------------------------------------------------------------------ gateway

before(async () => {
  backend = await startBackend("orders");
  const environments = [
    { name: "production", hosts: [PROD] },
    { name: "sandbox", hosts: [SANDBOX] },
  ];
  const config = {
    gateway: { identity_headers: { method: "x-edgegate-auth-method" } },
    identity_providers: { hs: { issuer: HS_ISS, hmac_secret: HS_SECRET_NAME } },
    pools: { orders: { instances: [{ url: backend.url }] } },
    apis: [
      {
        name: "orders",
        base_path: "/orders",
        versions: [
          { name: "v1", pool: "orders" },
          { name: "v2", pool: "orders" },
        ],
        environments,
        policies: {
          auth: { accept: ["api_key"], api_key: { header: "x-api-key" } },
          authorization: {
            ip: { mode: "enforce", deny: [clientIp("10.9.9.9")] },
            subscription: { mode: "enforce" },
            environment_isolation: { mode: "enforce" },
          },
        },
        routes: [
          { name: "read", methods: ["GET"], path: "/items/{id}", policies: { authorization: { scopes: { required: ["orders:read"] } } } },
          { name: "write", methods: ["POST"], path: "/items", policies: { authorization: { scopes: { required: ["orders:write", "orders:read"] } } } },
          {
            name: "beta",
            methods: ["GET"],
            path: "/beta",
            policies: { authorization: { subscription: { mode: "shadow" }, scopes: { mode: "shadow", required: ["orders:beta"] } } },
          },
          {
            // Both methods; the scope claim is for tokens. API keys carry their scopes in the
            // credential record (and the subscription's grant).
            name: "mixed",
            methods: ["GET"],
            path: "/mixed",
            policies: {
              auth: { accept: ["jwt", "api_key"], jwt: JWT_RULES, api_key: { header: "x-api-key" } },
              authorization: { scopes: { required: ["orders:read"], claim: "permissions" } },
            },
          },
          {
            name: "internal",
            methods: ["GET"],
            path: "/internal",
            policies: { authorization: { scopes: { required: ["orders:admin"] }, hide_with_404: true } },
          },
        ],
      },
      {
        name: "staff",
        base_path: "/staff",
        pool: "orders",
        environments,
        policies: {
          auth: { accept: ["jwt"], jwt: JWT_RULES },
          authorization: {
            environment_isolation: { claim: "env" },
            scopes: { required: ["staff:access"], claim: "permissions" },
            roles: { claim: "roles", read: ["viewer", "editor"], write: ["editor"] },
          },
        },
        routes: [
          { name: "docs", methods: ["GET", "POST"], path: "/docs" },
          { name: "admin", methods: ["GET"], path: "/admin", policies: { authorization: { roles: { claim: "realm.roles", admin: ["admin"], class: "admin" } } } },
        ],
      },
    ],
  };
  // No snapshot yet (the first test uploads it); one key has a per-key KV record, as the
  // Registry sync writes them for keys issued since the last snapshot.
  const record = { consumer_id: "acme", application_id: "app-web", status: "active", scopes: ["orders:read"], environment: "production" };
  gw = await startGateway({
    config,
    kv: { [`credential:apikey:${apiKeyDigest(KEY.web)}`]: JSON.stringify(record) },
    bindings: { [HS_SECRET_NAME]: hsSecret, EDGEGATE_SNAPSHOT_REFRESH_MS: "300" },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(backend);
});

// ------------------------------------------------------------------------------ helpers

/**
 * Makes the gateway read the snapshot now: the cron on Workers; on Spin, which has no cron,
 * every request reads it, so one request on a subscription route does.
 */
async function refreshSnapshot() {
  if (!onSpin) return gw.scheduled();
  await gw.request({ path: "/orders/v1/items/1", headers: { host: PROD, "x-api-key": KEY.web } });
}

/**
 * Sends a request and waits for its access line. Returns { res, log, seen (the backend's
 * record or null), audits (this request's audit lines) }.
 */
async function call(path, { key, token, host = PROD, ip = "203.0.113.5", method = "GET", headers = {} } = {}) {
  const h = { host, "cf-connecting-ip": ip, ...headers };
  if (key) h["x-api-key"] = key;
  if (token) h.authorization = `Bearer ${token}`;
  const { res, log } = await gw.requestLogged({ method, path, headers: h });
  const seen = backend.records.find((r) => r.headers["x-request-id"] === log.request_id) ?? null;
  return { res, log, seen, audits: gw.logs.audits(log.request_id) };
}

/** 200 through to the backend, no deny audited. */
async function expectOk(path, opts = {}) {
  const r = await call(path, opts);
  assert.equal(r.res.status, 200, `${path}: ${r.res.text}`);
  assert.ok(r.seen, `${path}: the backend got the request`);
  assert.deepEqual(r.audits, [], `${path}: no audit line for an allowed request`);
  return r;
}

/**
 * An enforced deny: `status` (403) problem+json with `code`, nothing sent to the backend, and
 * exactly one audit line `decision: deny` with `rule` and `reason` (= code unless hidden).
 */
async function expectDenied(path, { code, rule, reason = code, status = 403, ...opts }) {
  const r = await call(path, opts);
  assertProblem(r.res, { status, code });
  assert.equal(r.seen, null, `${path}: the backend never sees a denied request`);
  assert.equal(r.log.error_code, code);
  assert.equal(r.audits.length, 1, `one audit line: ${JSON.stringify(r.audits)}`);
  const a = r.audits[0];
  assert.equal(a.decision, "deny");
  assert.equal(a.rule, rule);
  assert.equal(a.reason, reason);
  assert.equal(typeof a.detail, "string");
  return { ...r, audit: a };
}

function hsToken(claims) {
  return signCompact(
    { alg: "HS256", typ: "JWT" },
    { iss: HS_ISS, aud: AUD, sub: "staff-1", iat: NOW, exp: NOW + 600, env: "production", ...claims },
    hsSecret,
  );
}

// ------------------------------------------------------------------------------ tests

test("before any snapshot is loaded a subscription rule answers 503 snapshot_unavailable; the CLI-built snapshot then activates from KV", async () => {
  // The key is found in its per-key record: authentication passes, authorization cannot.
  const { audit } = await expectDenied("/orders/v1/items/7", { key: KEY.web, code: "snapshot_unavailable", status: 503, rule: "subscription" });
  assert.equal(audit.snapshot_version, null);
  assert.equal(audit.application, "app-web");
  // Rules that need no snapshot still work meanwhile.
  await expectOk("/staff/docs", { token: hsToken({ roles: ["viewer"], permissions: ["staff:access"] }) });

  const v1 = await buildSnapshot(snapshotDoc(V1));
  assert.match(v1.summary, new RegExp(`^snapshot ${V1}: 6 subscriptions, \\d+ bytes in 1 shard, sha256 ${v1.manifest.sha256}`));
  assert.ok(Buffer.isBuffer(v1.entries[0].value), "shards are binary");
  const from = gw.logs.mark();
  await uploadSnapshot(gw, v1);
  await refreshSnapshot();
  const e = await gw.logs.waitForEvent("snapshot_activated", (ev) => ev.version === V1, { from });
  assert.equal(e.sha256, v1.manifest.sha256);
  assert.equal(e.previous, null);
  assert.equal(e.subscriptions, 6);
  assert.equal(e.credentials, 6);
});

test("an API key with an active subscription passes: the backend gets the subscription and the granted scopes; so does the access line", async () => {
  const { seen, log } = await expectOk("/orders/v1/items/7", { key: KEY.web });
  const h = seen.headers;
  assert.equal(h["x-edgegate-subscription"], "sub-web-prod");
  // The credential's orders:read with the subscription's orders:history, sorted.
  assert.equal(h["x-edgegate-scopes"], "orders:history orders:read");
  assert.equal(h["x-edgegate-application"], "app-web");
  assert.equal(h["x-edgegate-subject"], "acme");
  assert.equal(h["x-edgegate-auth-method"], "api_key");
  assert.equal(h["x-api-key"], undefined, "the key never reaches the backend");
  assert.equal(seen.url, "/items/7");
  assert.equal(log.subscription, "sub-web-prod");
  assert.equal(log.scopes, "orders:history orders:read");
  assert.equal(log.application, "app-web");
  assert.equal(log.version, "v1");
  assert.equal(log.environment, "production");
});

test("subscription problems → 403 with their reason code, one audit line each", async () => {
  const cases = [
    { what: "no subscription", key: KEY.nosub, code: "no_subscription", detail: /app-nosub has no subscription to orders in production/ },
    { what: "suspended", key: KEY.susp, code: "subscription_suspended", detail: /sub-susp is suspended/ },
    { what: "validity window past", key: KEY.exp, code: "subscription_expired", detail: /sub-exp is past its validity window/ },
    { what: "consumer suspended", key: KEY.dorm, code: "consumer_suspended", detail: /consumer dormant/ },
    { what: "version not covered", key: KEY.web, path: "/orders/v2/items/7", code: "no_subscription", detail: /does not cover version v2/ },
  ];
  for (const c of cases) {
    const { audit } = await expectDenied(c.path ?? "/orders/v1/items/7", { key: c.key, code: c.code, rule: "subscription" });
    assert.match(audit.detail, c.detail, c.what);
  }
});

test("environment isolation: a production key on the sandbox host → 403 wrong_environment, though its sandbox subscription would allow it", async () => {
  const { audit } = await expectDenied("/orders/v1/items/7", { key: KEY.web, host: SANDBOX, code: "wrong_environment", rule: "environment_isolation" });
  assert.equal(audit.environment, "sandbox");
  assert.match(audit.detail, /production credential called the sandbox environment/);
});

test("a missing scope → 403 insufficient_scope with the RFC 6750 challenge naming the required scopes", async () => {
  const { res, audit } = await expectDenied("/orders/v1/items", {
    key: KEY.web,
    method: "POST",
    code: "insufficient_scope",
    rule: "scopes",
  });
  assert.equal(res.headers["www-authenticate"], 'Bearer error="insufficient_scope", scope="orders:write orders:read"');
  assert.match(audit.detail, /missing scopes: orders:write$/);
});

test("IP rules: a subscription's IPv6 allow list admits 2001:db8::1 and refuses 2001:db9::1; the API's IPv4 deny list refuses 10.9.9.9", async (t) => {
  if (onSpin) {
    t.diagnostic(`IPv6 clients not sent (only the IPv4 cases run): ${IPV4_CLIENTS_ONLY}`);
  } else {
    // The key has no scopes of its own: the subscription's grant satisfies the route.
    const ok = await expectOk("/orders/v1/items/1", { key: KEY.v6, ip: "2001:db8::1" });
    assert.equal(ok.seen.headers["x-edgegate-subscription"], "sub-v6");
    assert.equal(ok.seen.headers["x-edgegate-scopes"], "orders:read");
    assert.equal(ok.log.client_ip, "2001:db8::1");
  }

  for (const ip of onSpin ? ["192.0.2.1"] : ["2001:db9::1", "192.0.2.1"]) {
    const { audit } = await expectDenied("/orders/v1/items/1", { key: KEY.v6, ip, code: "ip_denied", rule: "subscription" });
    assert.equal(audit.client_ip, clientIp(ip));
    assert.match(audit.detail, /sub-v6: .* is in no allowed network/);
  }

  const { audit } = await expectDenied("/orders/v1/items/1", { key: KEY.web, ip: "10.9.9.9", code: "ip_denied", rule: "ip" });
  const denied = clientIp("10.9.9.9").replaceAll(".", "\\.");
  assert.match(audit.detail, new RegExp(`${denied} is in denied ${denied}/32`));
  await expectOk("/orders/v1/items/1", { key: KEY.web, ip: "10.9.9.8" });
});

test("shadow mode: the request passes and each shadowed deny is an audit line with decision shadow", async () => {
  const r = await call("/orders/v1/beta", { key: KEY.nosub });
  assert.equal(r.res.status, 200, r.res.text);
  assert.ok(r.seen);
  assert.equal(r.seen.headers["x-edgegate-subscription"], undefined, "no subscription was found");
  assert.equal(r.log.subscription ?? null, null);
  const byRule = Object.fromEntries(r.audits.map((a) => [a.rule, a]));
  assert.deepEqual(Object.keys(byRule).sort(), ["scopes", "subscription"]);
  assert.ok(r.audits.every((a) => a.decision === "shadow"));
  assert.equal(byRule.subscription.reason, "no_subscription");
  assert.equal(byRule.scopes.reason, "insufficient_scope");
  assert.match(byRule.scopes.detail, /orders:beta/);

  // A caller that passes the subscription still has its scope shortfall shadowed.
  const web = await call("/orders/v1/beta", { key: KEY.web });
  assert.equal(web.res.status, 200);
  assert.equal(web.seen.headers["x-edgegate-subscription"], "sub-web-prod");
  assert.deepEqual(web.audits.map((a) => [a.decision, a.rule]), [["shadow", "scopes"]]);
});

test("hide_with_404: an enforced deny answers 404 route_not_found; the audit line keeps the real reason", async () => {
  const { res, audit } = await expectDenied("/orders/v1/internal", {
    key: KEY.web,
    code: "route_not_found",
    status: 404,
    rule: "scopes",
    reason: "insufficient_scope",
  });
  assert.equal(res.headers["www-authenticate"], undefined, "a hidden deny names no scope");
  assert.ok(!res.text.includes("orders:admin"), "nor in the body");
});

test("JWT callers: roles per method class and an admin class, scopes from a custom claim, environment from a claim", async () => {
  const viewer = hsToken({ roles: ["viewer"], permissions: ["staff:access"], realm: { roles: [] } });
  const editor = hsToken({ roles: ["editor"], permissions: "staff:access other" });
  const admin = hsToken({ roles: ["viewer"], permissions: ["staff:access"], realm: { roles: ["admin"] } });

  await expectOk("/staff/docs", { token: viewer });
  await expectOk("/staff/docs", { token: editor, method: "POST" });
  const w = await expectDenied("/staff/docs", { token: viewer, method: "POST", code: "role_denied", rule: "roles" });
  assert.match(w.audit.detail, /write needs one of the roles \[editor\]/);
  assert.equal(w.audit.auth_method, "jwt");
  assert.equal(w.audit.subject, "staff-1");
  assert.equal(w.audit.snapshot_version, null, "no snapshot needed for this API");

  await expectOk("/staff/admin", { token: admin });
  const a = await expectDenied("/staff/admin", { token: viewer, code: "role_denied", rule: "roles" });
  assert.match(a.audit.detail, /admin needs one of the roles \[admin\]/);

  const noScope = await expectDenied("/staff/docs", {
    token: hsToken({ roles: ["viewer"], permissions: ["other"] }),
    code: "insufficient_scope",
    rule: "scopes",
  });
  assert.equal(noScope.res.headers["www-authenticate"], 'Bearer error="insufficient_scope", scope="staff:access"');

  await expectDenied("/staff/docs", { token: viewer, host: SANDBOX, code: "wrong_environment", rule: "environment_isolation" });
  await expectDenied("/staff/docs", {
    token: hsToken({ env: undefined, roles: ["viewer"], permissions: ["staff:access"] }),
    code: "wrong_environment",
    rule: "environment_isolation",
  });
});

test("a route accepting tokens and keys: a token's scopes come from the configured claim and its azp is the subscribing application", async () => {
  const token = hsToken({ azp: "app-web", permissions: ["orders:read"] });
  const jwt = await expectOk("/orders/v1/mixed", { token });
  assert.equal(jwt.seen.headers["x-edgegate-subscription"], "sub-web-prod");
  assert.equal(jwt.seen.headers["x-edgegate-application"], "app-web");
  await expectDenied("/orders/v1/mixed", { token: hsToken({ azp: "app-web", permissions: ["orders:write"] }), code: "insufficient_scope", rule: "scopes" });
  await expectDenied("/orders/v1/mixed", { token: hsToken({ azp: "app-nosub", permissions: ["orders:read"] }), code: "no_subscription", rule: "subscription" });
});

test(
  "a route accepting tokens and keys: an API key keeps its credential's scopes when the scope rule names a token claim",
  async () => {
    // key-web's credential grants orders:read (its subscription adds orders:history); the same
    // key passes the `read` route, whose scope rule names no claim.
    const { res, audits } = await call("/orders/v1/mixed", { key: KEY.web });
    assert.equal(res.status, 200, `${res.text} ${JSON.stringify(audits)}`);
  },
);

test("audit lines say who, what, why and on which snapshot — and never carry an API key", async () => {
  const { audit, log } = await expectDenied("/orders/v1/items/9", { key: KEY.susp, ip: "198.51.100.4", code: "subscription_suspended", rule: "subscription" });
  assert.equal(audit.kind, "audit");
  assert.equal(audit.request_id, log.request_id);
  assert.equal(audit.api, "orders");
  assert.equal(audit.version, "v1");
  assert.equal(audit.environment, "production");
  assert.equal(audit.route, "read");
  assert.equal(audit.method, "GET");
  assert.equal(audit.client_ip, clientIp("198.51.100.4"));
  assert.equal(audit.auth_method, "api_key");
  assert.equal(audit.subject, "acme");
  assert.equal(audit.application, "app-susp");
  assert.equal(audit.snapshot_version, V1);
  assert.ok(!Number.isNaN(Date.parse(audit.time)));

  const everything = [...gw.logs.entries.map((e) => JSON.stringify(e)), ...gw.logs.other.map((o) => o.line)];
  assert.ok(gw.logs.audits().length >= 15, "the suite produced audit lines");
  for (const key of Object.values(KEY)) {
    assert.ok(everything.every((l) => !l.includes(key)), `no log line carries ${key}`);
  }
});

test("a corrupted snapshot is never activated (snapshot_rejected) and the previous one keeps serving; a good one then activates", async () => {
  const stillV1 = async () => {
    const ok = await expectOk("/orders/v1/items/1", { key: KEY.web });
    assert.equal(ok.log.subscription, "sub-web-prod");
    const no = await expectDenied("/orders/v1/items/1", { key: KEY.nosub, code: "no_subscription", rule: "subscription" });
    assert.equal(no.audit.snapshot_version, V1);
  };
  const rejected = async (sha, errorPattern) => {
    const from = gw.logs.mark();
    await refreshSnapshot();
    const e = await gw.logs.waitForEvent("snapshot_rejected", (ev) => ev.sha256 === sha, { from });
    assert.equal(e.serving, V1);
    assert.match(e.error, errorPattern);
    assert.deepEqual(gw.logs.events("snapshot_activated", from), []);
  };

  // 1. Garbage bytes under a manifest whose digest matches them: joins, does not decode.
  const garbage = crypto.randomBytes(600);
  const gsha = sha256(garbage);
  await gw.putKv(shardKey(gsha, 0), garbage);
  await gw.putKv(MANIFEST_KEY, JSON.stringify({ shards: 1, len: garbage.length, sha256: gsha }));
  await rejected(gsha, /bad magic/);
  await stillV1();

  // 2. A real (multi-shard) encoding with one byte of one shard flipped: the digest fails.
  const bad = await buildSnapshot(snapshotDoc(`${V2}-corrupt`, { nosubSubscribed: true }), { shardBytes: 256 });
  assert.ok(bad.manifest.shards > 2);
  const flipped = Buffer.from(bad.entries[1].value);
  flipped[17] ^= 0x40;
  bad.entries[1].value = flipped;
  await uploadSnapshot(gw, bad);
  await rejected(bad.manifest.sha256, /do not match the manifest's SHA-256/);
  await stillV1();

  // 3. A good snapshot activates, naming the one it replaces, and its subscription counts.
  const good = await buildSnapshot(snapshotDoc(V2, { nosubSubscribed: true }), { shardBytes: 256 });
  const from = gw.logs.mark();
  await uploadSnapshot(gw, good);
  await refreshSnapshot();
  const act = await gw.logs.waitForEvent("snapshot_activated", (e) => e.version === V2, { from });
  assert.equal(act.previous, V1);
  assert.equal(act.sha256, good.manifest.sha256);
  const now = await expectOk("/orders/v1/items/1", { key: KEY.nosub });
  assert.equal(now.seen.headers["x-edgegate-subscription"], "sub-nosub-new");
});
