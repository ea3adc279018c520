// The Registry sync end to end: the built worker under Miniflare, the cron fired directly,
// a mock Registry (tests/support/registry.mjs) serving bundles encoded and signed in JS
// (tests/support/bundle.mjs, independent of the Rust encoder). First sync, 304, a new
// version, every kind of rejected bundle while the last good version serves, the Registry
// down while concurrent requests all succeed, config + snapshot switching together, and the
// activation latency.
import { describe, test, before, after } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { startGateway, versionKey, POINTER_KEY, onSpin } from "../support/gateway.mjs";

/** Options of the tests that drive the sync with the cron (gw.scheduled(); on Spin the lazy tick). */
const ON_CRON = {};
import { startBackend, closeAll } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { MockRegistry } from "../support/registry.mjs";
import { encodeBundle, signBundle, generateSigningKey, tamper, versionId } from "../support/bundle.mjs";
import { buildSnapshot, apiKeyDigest, MANIFEST_KEY } from "../support/snapshot.mjs";
import { delay } from "../support/util.mjs";

const TOKEN = "registry-e2e-token";
const signer = generateSigningKey();
const next = generateSigningKey();
const stranger = generateSigningKey();
let backendA, backendB;

function configFor(backend, extra = {}) {
  return {
    pools: { p: { instances: [{ url: backend.url }] } },
    apis: [{ name: "reg", base_path: "/reg", pool: "p", routes: [{ name: "any", methods: ["GET"], path: "/{*rest}" }] }],
    ...extra,
  };
}

const release = (label, config, opts = {}) => signBundle(encodeBundle({ label, config, ...opts }), signer);

before(async () => {
  backendA = await startBackend("a");
  backendB = await startBackend("b");
});
after(async () => {
  await closeAll(backendA, backendB);
});

/** Fires the cron and returns its config_check event and registry_sync(_failed) event. */
async function tick(gw) {
  const from = gw.logs.mark();
  await gw.scheduled();
  const check = await gw.logs.waitForEvent("config_check", () => true, { from });
  const sync = gw.logs.events("registry_sync", from)[0] ?? gw.logs.events("registry_sync_failed", from)[0] ?? null;
  return { check, sync, from };
}

/** GET /reg/x: { status, backend (a|b), version (config_version of the access line) }. */
async function probe(gw, headers = {}) {
  const { res, log } = await gw.requestLogged({ path: "/reg/x", headers });
  let backend = null;
  try {
    backend = JSON.parse(res.body.toString()).backend ?? null;
  } catch {
    // a problem+json reply
  }
  return { res, status: res.status, backend, version: log.config_version };
}

describe("Registry sync on the cron", () => {
  let gw, registry;
  let b1, b2, id1, id2;

  before(async () => {
    b1 = release("release-1", configFor(backendA));
    b2 = release("release-2", configFor(backendB));
    id1 = versionId(b1);
    id2 = versionId(b2);
    registry = await new MockRegistry({ token: TOKEN, bundle: b1 }).start();
    gw = await startGateway({
      config: null,
      registry: {
        url: registry.url,
        token: TOKEN,
        keys: [signer.publicText, next.publicText],
        keepVersions: 3,
        timeoutMs: 1000,
        backoffMs: 1, // every tick retries (backoff is covered by shared/tests/registry.rs)
      },
    });
  });
  after(async () => {
    await gw?.close();
    await registry?.close();
  });

  test("first sync: the bundle is verified, stored and activated; this isolate serves it at once", ON_CRON, async () => {
    assertProblem((await gw.request({ path: "/reg/x" })), { status: 503, code: "no_config" });
    const { check, sync } = await tick(gw);
    assert.equal(check.registry.result, "activated", JSON.stringify(check));
    assert.equal(sync.version, id1);
    assert.equal(sync.label, "release-1");
    assert.equal(sync.key_id, signer.keyId);
    const p = await probe(gw);
    assert.deepEqual([p.status, p.backend, p.version], [200, "a", id1]);
    assert.equal(await gw.kv.get(POINTER_KEY), id1);
    assert.ok(await gw.kv.get(versionKey(id1)));
    const history = JSON.parse(await gw.kv.get("config:history"));
    assert.deepEqual(history.entries.map((e) => [e.id, e.source]), [[id1, "sync"]]);
    assert.equal(registry.requests[0].authorization, `Bearer ${TOKEN}`);
    assert.equal(registry.requests[0].ifNoneMatch, null);
  });

  test("304 Not Modified: nothing changes", ON_CRON, async () => {
    const before = registry.counts.notModified;
    const { check } = await tick(gw);
    assert.equal(check.registry.result, "not_modified");
    assert.equal(registry.counts.notModified, before + 1);
    assert.ok(registry.requests.at(-1).ifNoneMatch, "If-None-Match sent");
    const status = JSON.parse(await gw.kv.get("registry:status"));
    assert.equal(status.result, "not_modified");
    assert.equal((await probe(gw)).version, id1);
  });

  test("a new version is activated", ON_CRON, async () => {
    registry.setBundle(b2);
    const { check, sync } = await tick(gw);
    assert.equal(check.registry.result, "activated");
    assert.deepEqual([sync.version, sync.previous], [id2, id1]);
    const p = await probe(gw);
    assert.deepEqual([p.status, p.backend, p.version], [200, "b", id2]);
  });

  /** Fails validation: a route names a pool that does not exist. */
  function invalidConfig() {
    const c = configFor(backendA);
    c.apis[0].routes.push({ name: "broken", methods: ["GET"], path: "/broken", pool: "no-such-pool" });
    return c;
  }
  const rejections = () => [
    ["invalid config", release("broken", invalidConfig()), "config_invalid"],
    ["bad signature (tampered)", tamper(release("release-3", configFor(backendA))), "bundle_bad_signature"],
    ["signed by an unknown key", signBundle(encodeBundle({ label: "x", config: configFor(backendA) }), stranger), "bundle_unknown_key"],
    ["unsigned", encodeBundle({ label: "u", config: configFor(backendA) }), "bundle_unsigned"],
    ["not a bundle", Buffer.from("<html>maintenance</html>"), "bundle_malformed"],
  ];

  test("invalid, tampered, unknown-key, unsigned and malformed bundles are rejected; the last good version serves", ON_CRON, async () => {
    for (const [name, bundle, code] of rejections()) {
      registry.setBundle(bundle);
      const { check, sync } = await tick(gw);
      assert.equal(check.registry.result, "failed", name);
      assert.equal(check.registry.code, code, name);
      assert.equal(sync.event, "registry_sync_failed", name);
      assert.equal(sync.code, code, name);
      assert.equal(sync.serving, id2, name);
      const p = await probe(gw);
      assert.deepEqual([p.status, p.backend, p.version], [200, "b", id2], name);
      const status = JSON.parse(await gw.kv.get("registry:status"));
      assert.equal(status.error.code, code, name);
      assert.equal(await gw.kv.get(POINTER_KEY), id2, name);
    }
    const failed = gw.logs.events("registry_sync_failed");
    assert.ok(failed.every((e) => !JSON.stringify(e).includes(TOKEN)), "the token is never logged");
  });

  test("a bundle signed with the second (rotation) key is accepted", ON_CRON, async () => {
    const b = signBundle(encodeBundle({ label: "rotated", config: configFor(backendB, { gateway: { strip_request_headers: ["x-r"] } }) }), next);
    registry.setBundle(b);
    const { sync } = await tick(gw);
    assert.equal(sync.key_id, next.keyId);
    assert.equal((await probe(gw)).version, versionId(b));
    id2 = versionId(b);
  });

  test("Registry down (503, refused, hanging past the timeout): a stream of concurrent requests all succeed on the last good version", ON_CRON, async () => {
    registry.setBundle(release("release-4", configFor(backendA)));
    let stop = false;
    const results = [];
    const worker = async () => {
      while (!stop) {
        const res = await gw.request({ path: "/reg/x" }).catch((err) => ({ status: 0, body: Buffer.from(String(err)) }));
        results.push(res);
      }
    };
    const workers = Array.from({ length: 8 }, worker);
    const codes = [];
    for (const mode of ["503", "refused", "hang"]) {
      await registry.setOutage(mode);
      const started = performance.now();
      const { check } = await tick(gw);
      codes.push(check.registry.code);
      if (mode === "hang") assert.ok(performance.now() - started >= 900, "the hanging fetch ran into the 1 s timeout");
      await delay(100);
    }
    stop = true;
    await Promise.all(workers);
    await registry.setOutage(null);
    assert.deepEqual(codes, ["registry_status", "registry_unreachable", "registry_unreachable"]);
    assert.ok(results.length >= 50, `${results.length} requests`);
    const bad = results.filter((r) => r.status !== 200 || JSON.parse(r.body.toString()).backend !== "b");
    assert.equal(bad.length, 0, `${bad.length} of ${results.length} failed: ${bad.slice(0, 3).map((r) => r.body).join(" | ")}`);
    console.log(`Registry down: ${results.length} concurrent requests, all 200 on the last good version`);
    // Back up: the pending release activates.
    const { check } = await tick(gw);
    assert.equal(check.registry.result, "activated");
    assert.equal((await probe(gw)).backend, "a");
  });

  test("config and snapshot switch together with one pointer write", ON_CRON, async () => {
    const KEYV = `ak-reg-${process.pid}`;
    const snap = (version, status) => ({
      version,
      consumers: [{ id: "acme", name: "ACME", status: "active" }],
      applications: [{ id: "app", consumer_id: "acme", name: "app" }],
      credentials: [{ kind: "api_key", key: apiKeyDigest(KEYV), consumer_id: "acme", application_id: "app", status: "active", scopes: [] }],
      plans: [{ id: "gold", tier: "gold", rate_plan: "rp-gold" }],
      subscriptions: [{ id: "sub", application_id: "app", api: "reg", versions: ["*"], environment: "default", plan_id: "gold", status, scopes: [] }],
    });
    const guarded = (backend) =>
      configFor(backend, {
        gateway: { policies: { auth: { accept: ["api_key"] }, authorization: { subscription: {} } } },
      });
    const s1 = await buildSnapshot(snap("snap-active", "active"), { shardBytes: 64 });
    const s2 = await buildSnapshot(snap("snap-suspended", "suspended"), { shardBytes: 64 });
    assert.ok(s1.manifest.shards > 1, "several shards");
    const b3 = release("with-snapshot-1", guarded(backendA), { snapshot: s1 });
    const b4 = release("with-snapshot-2", guarded(backendB), { snapshot: s2 });

    registry.setBundle(b3);
    assert.equal((await tick(gw)).check.registry.result, "activated");
    let p = await probe(gw, { "x-api-key": KEYV });
    assert.deepEqual([p.status, p.backend, p.version], [200, "a", versionId(b3)]);

    registry.setBundle(b4);
    assert.equal((await tick(gw)).check.registry.result, "activated");
    p = await probe(gw, { "x-api-key": KEYV });
    assert.equal(p.version, versionId(b4));
    assertProblem(p.res, { status: 403, code: "subscription_suspended" });
    assert.equal(await gw.kv.get(MANIFEST_KEY), null, "no snapshot:manifest was ever needed");
  });

  test("retention keeps the last 3 versions in KV", ON_CRON, async () => {
    const { keys } = await gw.kv.list({ prefix: "config:version:" });
    assert.equal(keys.length, 3, keys.map((k) => k.name).join(", "));
    const history = JSON.parse(await gw.kv.get("config:history"));
    assert.deepEqual(history.entries.map((e) => versionKey(e.id)).sort(), keys.map((k) => k.name).sort());
  });
});

describe("activation latency (refresh interval 1000 ms)", () => {
  const REFRESH_MS = 1000;
  let gw, registry;
  before(async () => {
    registry = await new MockRegistry({ token: TOKEN, bundle: release("l-0", configFor(backendA)) }).start();
    gw = await startGateway({
      config: null,
      refreshMs: REFRESH_MS,
      registry: { url: registry.url, token: TOKEN, keys: [signer.publicText], backoffMs: 1 },
    });
    if (!onSpin) assert.equal((await tick(gw)).check.registry.result, "activated");
  });
  after(async () => {
    await gw?.close();
    await registry?.close();
  });

  /** Requests every 10 ms until one runs on `id`; returns the wall-clock ms it was first seen. */
  async function firstSeen(id, timeoutMs = 10_000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const sent = Date.now();
      const p = await probe(gw);
      if (p.version === id) return sent;
      await delay(10);
    }
    throw new Error(`version ${id} not seen within ${timeoutMs} ms`);
  }

  test("the cron's isolate serves the new version right after the pointer write; others within the refresh interval", ON_CRON, async () => {
    const cron = [];
    const other = [];
    for (let i = 1; i <= 5; i++) {
      // (a) The isolate that runs the sync refreshes right after its pointer write.
      const b = release(`l-${i}`, configFor(i % 2 ? backendB : backendA));
      registry.setBundle(b);
      const { sync } = await tick(gw);
      assert.equal(sync.version, versionId(b));
      cron.push((await firstSeen(versionId(b))) - sync.activated_at_ms);
      // (b) An isolate that did not run the sync: the pointer moves in KV (what the sync in
      // another isolate writes) and this isolate notices on its next refresh.
      const c = release(`m-${i}`, configFor(i % 2 ? backendA : backendB));
      const id = versionId(c);
      await gw.kv.put(versionKey(id), JSON.stringify(configFor(i % 2 ? backendA : backendB)));
      await delay(Math.floor(Math.random() * REFRESH_MS));
      await gw.kv.put(POINTER_KEY, id);
      const written = Date.now();
      other.push((await firstSeen(id)) - written);
    }
    const fmt = (xs) => `max ${Math.max(...xs)} ms, median ${[...xs].sort((a, b) => a - b)[2]} ms (${xs.join(", ")})`;
    console.log(`activation latency, cron isolate (pointer write → first request on the new version): ${fmt(cron)}`);
    console.log(`activation latency, other isolates, EDGEGATE_CONFIG_REFRESH_MS=${REFRESH_MS}: ${fmt(other)}`);
    assert.ok(Math.max(...cron) < 500, `cron isolate: ${cron}`);
    assert.ok(Math.max(...other) <= REFRESH_MS + 500, `other isolates: ${other}`);
  });
});

describe("the admin API on the Registry versions: sync now, versions, activate, rollback", () => {
  const ADMIN_TOKEN = "registry-admin-token-0123456789";
  const PREFIX = "/__edgegate/admin";
  let gw, registry;
  let b1, b2, id1, id2;

  before(async () => {
    b1 = release("admin-1", configFor(backendA));
    b2 = release("admin-2", configFor(backendB));
    id1 = versionId(b1);
    id2 = versionId(b2);
    registry = await new MockRegistry({ token: TOKEN, bundle: b1 }).start();
    gw = await startGateway({
      config: null,
      bindings: { EDGEGATE_ADMIN_TOKEN: ADMIN_TOKEN },
      registry: { url: registry.url, token: TOKEN, keys: [signer.publicText], timeoutMs: 1000, backoffMs: 1 },
    });
  });
  after(async () => {
    await gw?.close();
    await registry?.close();
  });

  /** An admin call with the right token (`token: null` → none). */
  function admin(method, path, { token = ADMIN_TOKEN } = {}) {
    const headers = { "cf-connecting-ip": "192.0.2.10" };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    return gw.request({ method, path: `${PREFIX}${path}`, headers });
  }

  /** The admin audit lines after `from`, as [endpoint, status, outcome, detail]. */
  async function audits(from, n) {
    const pick = () => gw.logs.audits(undefined, from).filter((a) => a.decision === "admin");
    for (let i = 0; i < 100 && pick().length < n; i++) await delay(20);
    return pick().map((a) => [a.endpoint, a.status, a.outcome, a.detail]);
  }

  const endpoints = () => [
    ["GET", "/config/versions"],
    ["POST", `/config/versions/${id1}/activate`],
    ["POST", "/config/rollback"],
    ["POST", "/sync"],
  ];

  test("sync now through the admin API: the Registry's bundle is activated and this isolate serves it at once", async () => {
    assertProblem(await gw.request({ path: "/reg/x" }), { status: 503, code: "no_config" });
    const from = gw.logs.mark();
    const first = await admin("POST", "/sync");
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(
      [first.json().result, first.json().version, first.json().label, first.json().key_id],
      ["activated", id1, "admin-1", signer.keyId],
    );
    let p = await probe(gw);
    assert.deepEqual([p.status, p.backend, p.version], [200, "a", id1]);
    const again = await admin("POST", "/sync");
    assert.equal(again.json().result, "not_modified", again.text);

    registry.setBundle(b2);
    const second = await admin("POST", "/sync");
    assert.equal(second.status, 200, second.text);
    assert.deepEqual([second.json().result, second.json().version, second.json().previous], ["activated", id2, id1]);
    // No wait: the isolate that ran the sync serves the new version on its next request.
    p = await probe(gw);
    assert.deepEqual([p.status, p.backend, p.version], [200, "b", id2]);
    assert.equal(await gw.kv.get(POINTER_KEY), id2);
    assert.deepEqual(await audits(from, 3), [
      ["registry.sync", 200, "ok", "activated"],
      ["registry.sync", 200, "ok", "not_modified"],
      ["registry.sync", 200, "ok", "activated"],
    ]);
  });

  test("without a token or with a wrong one: 401 on versions, activate, rollback and sync now, and nothing changes", async () => {
    const before = { requests: registry.requests.length, pointer: await gw.kv.get(POINTER_KEY), history: await gw.kv.get("config:history") };
    registry.setBundle(release("never-fetched", configFor(backendA)));
    const from = gw.logs.mark();
    for (const [method, path] of endpoints()) {
      for (const token of [null, `${ADMIN_TOKEN}x`, "short"]) {
        const res = await admin(method, path, { token });
        assertProblem(res, { status: 401, code: "admin_unauthorized" });
        assert.match(res.headers["www-authenticate"], /^Bearer realm="edgegate-admin"/, `${method} ${path}`);
      }
    }
    assert.equal(registry.requests.length, before.requests, "sync now never ran");
    assert.equal(await gw.kv.get(POINTER_KEY), before.pointer);
    assert.equal(await gw.kv.get("config:history"), before.history);
    assert.equal((await probe(gw)).version, id2);
    const lines = await audits(from, 12);
    assert.equal(lines.length, 12);
    assert.ok(lines.every(([, status, outcome]) => status === 401 && outcome === "admin_unauthorized"), JSON.stringify(lines));
    for (const line of gw.logs.entries.slice(from)) {
      assert.ok(!JSON.stringify(line).includes(ADMIN_TOKEN), `no token in ${JSON.stringify(line)}`);
    }
    registry.setBundle(b2);
  });

  test("sync now with a bad signature: 502 registry_sync_failed led by bundle_bad_signature; the last good version serves", async () => {
    registry.setBundle(tamper(release("admin-3", configFor(backendA))));
    const res = await admin("POST", "/sync");
    const problem = assertProblem(res, { status: 502, code: "registry_sync_failed" });
    assert.match(problem.detail, /^bundle_bad_signature\b/, problem.detail);
    const p = await probe(gw);
    assert.deepEqual([p.status, p.backend, p.version], [200, "b", id2]);
    assert.equal(await gw.kv.get(POINTER_KEY), id2);
    const health = (await admin("GET", "/health")).json();
    assert.equal(health.registry.sync, "on");
    assert.equal(health.registry.last_sync.result, "failed");
    assert.equal(health.registry.last_sync.error.code, "bundle_bad_signature");
    assert.equal(health.config_version, id2);
    registry.setBundle(b2);
  });

  test("the version history lists the stored versions, newest activation first, and the active one", async () => {
    const res = await admin("GET", "/config/versions");
    assert.equal(res.status, 200, res.text);
    const v = res.json();
    assert.equal(v.active, id2);
    assert.deepEqual(
      v.versions.map((e) => [e.id, e.label, e.source, e.key_id]),
      [
        [id2, "admin-2", "sync", signer.keyId],
        [id1, "admin-1", "sync", signer.keyId],
      ],
    );
    assert.ok(v.versions.every((e) => e.activated_at_ms >= e.stored_at_ms && e.created_at_ms > 0), res.text);
  });

  test("rollback through the admin API: the previous version serves at once, and the next cron tick keeps it", ON_CRON, async () => {
    const from = gw.logs.mark();
    const res = await admin("POST", "/config/rollback");
    assert.equal(res.status, 200, res.text);
    assert.deepEqual([res.json().version, res.json().previous, res.json().source], [id1, id2, "rollback"]);
    let p = await probe(gw);
    assert.deepEqual([p.status, p.backend, p.version], [200, "a", id1]);
    assert.equal(await gw.kv.get(POINTER_KEY), id1);
    // The Registry still serves admin-2 with the ETag the last good sync saw: 304, no re-activation.
    const { check } = await tick(gw);
    assert.equal(check.registry.result, "not_modified", JSON.stringify(check));
    p = await probe(gw);
    assert.deepEqual([p.backend, p.version], ["a", id1]);
    // Activate a stored version by id; an unknown id is 404 and changes nothing.
    const act = await admin("POST", `/config/versions/${id2}/activate`);
    assert.equal(act.status, 200, act.text);
    assert.deepEqual([act.json().version, act.json().source], [id2, "activate"]);
    assert.equal((await probe(gw)).version, id2);
    const unknown = await admin("POST", "/config/versions/0123456789abcdef/activate");
    assert.match(assertProblem(unknown, { status: 404, code: "admin_not_found" }).detail, /^version_unknown\b/);
    // Roll back once more: to the version active before the activation.
    const back = await admin("POST", "/config/rollback");
    assert.deepEqual([back.status, back.json().version], [200, id1]);
    assert.equal((await probe(gw)).version, id1);
    const history = (await admin("GET", "/config/versions")).json();
    assert.deepEqual(history.versions.map((e) => [e.id, e.source]), [[id1, "rollback"], [id2, "activate"]]);
    assert.deepEqual(await audits(from, 5), [
      ["config.rollback", 200, "ok", `${id2} -> ${id1}`],
      ["config.activate", 200, "ok", `${id1} -> ${id2}`],
      ["config.activate", 404, "admin_not_found", unknown.json().detail],
      ["config.rollback", 200, "ok", `${id2} -> ${id1}`],
      ["config.versions", 200, "ok", "2 versions"],
    ]);
  });
});

describe("a chunked Registry answer over the bundle size cap", () => {
  const ADMIN_TOKEN = "registry-admin-token-0123456789";
  const CAP = 64 * 1024 * 1024; // MAX_BUNDLE_BYTES
  let gw, registry, id1;

  before(async () => {
    const b1 = release("cap-1", configFor(backendA));
    id1 = versionId(b1);
    registry = await new MockRegistry({ token: TOKEN, bundle: b1 }).start();
    gw = await startGateway({
      config: null,
      bindings: { EDGEGATE_ADMIN_TOKEN: ADMIN_TOKEN },
      registry: { url: registry.url, token: TOKEN, keys: [signer.publicText], timeoutMs: 30000, backoffMs: 1 },
    });
  });
  after(async () => {
    await gw?.close();
    await registry?.close();
  });

  const sync = () =>
    gw.request({
      method: "POST",
      path: "/__edgegate/admin/sync",
      headers: { "cf-connecting-ip": "192.0.2.10", authorization: `Bearer ${ADMIN_TOKEN}` },
    });

  test("without a Content-Length, the body is cut off once past the cap (not buffered whole); the last good version serves", async () => {
    const first = await sync();
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json().version, id1);
    const total = 4 * CAP;
    registry.setOversized(total);
    const res = await sync();
    const problem = assertProblem(res, { status: 502, code: "registry_sync_failed" });
    assert.match(problem.detail, /^registry_unreachable\b/, problem.detail);
    assert.match(problem.detail, new RegExp(`body over ${CAP} bytes`), problem.detail);
    for (let i = 0; i < 100 && !registry.oversized.closed && !registry.oversized.complete; i++) await delay(20);
    assert.ok(!registry.oversized.complete, `the gateway stopped reading: ${registry.oversized.sent} of ${total} bytes sent`);
    assert.ok(registry.oversized.sent < 2 * CAP, `${registry.oversized.sent} bytes sent`);
    registry.setOversized(null);
    const p = await probe(gw);
    assert.deepEqual([p.status, p.backend, p.version], [200, "a", id1]);
  });
});
