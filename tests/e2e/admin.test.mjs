// The Gateway Admin API and the emergency overrides on the built worker under Miniflare:
// bearer token (missing / wrong → 401 with WWW-Authenticate; unset → the API is off, 404),
// the per-client admin limit (429), validate (every error with its JSON path, nothing
// changes), disable / enable a route, IP blocks applied and lifted (with the time from the
// change until a request from the blocked address is refused, at the default refresh
// interval), rate-limit counters read and reset, the OpenAPI document, and the audit lines.
//
// Miniflare runs one isolate, and the isolate that serves an admin call applies the change at
// once. The bound for the other isolates is what the "propagation" test measures: the change
// is written straight into the Control object (as another isolate's admin call would), and
// this isolate must notice it by its own refresh: within EDGEGATE_CONTROL_REFRESH_MS (3000
// by default) plus one round trip to the object.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { performance } from "node:perf_hooks";
import { startGateway, CONTROL_BINDING, clientIp, onSpin } from "../support/gateway.mjs";
import { NO_CONTROL_OBJECT } from "../support/spin-gaps.mjs";
import { startBackend, closeAll } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { delay } from "../support/util.mjs";

const TOKEN = "test-admin-token-0123456789abcdef";
const PREFIX = "/__edgegate/admin";
const ADMIN_LIMIT = 40;

let gw, backend;
let ipSeq = 0;
/** A fresh client address per test, so the per-client admin limit never couples tests. */
const freshIp = () => `198.51.100.${++ipSeq}`;

function config(url) {
  return {
    pools: { p: { instances: [{ url }] } },
    apis: [
      {
        name: "shop",
        base_path: "/shop",
        pool: "p",
        routes: [
          { name: "items", methods: ["GET"], path: "/items" },
          { name: "orders", methods: ["GET", "POST"], path: "/orders" },
          {
            name: "limited",
            methods: ["GET"],
            path: "/limited",
            policies: {
              rate_limits: [{ name: "per-ip", key: "ip", algorithm: "sliding_window", limit: 3, window_s: 3600 }],
            },
          },
        ],
      },
    ],
  };
}

before(async () => {
  backend = await startBackend("shop");
  gw = await startGateway({
    config: config(backend.url),
    bindings: { EDGEGATE_ADMIN_TOKEN: TOKEN, EDGEGATE_ADMIN_RATE_LIMIT: String(ADMIN_LIMIT) },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(backend);
});

/** An admin call: `ip` is the client address, `token` the bearer (null: none). */
function admin(method, path, { ip = "192.0.2.1", token = TOKEN, body, headers = {} } = {}) {
  const h = { "cf-connecting-ip": ip, ...headers };
  if (token !== null) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h["content-type"] = "application/json";
  return gw.request({
    method,
    path: `${PREFIX}${path}`,
    headers: h,
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
}

const api = (path, ip, method = "GET") => gw.request({ method, path, headers: { "cf-connecting-ip": ip } });

test("without a token, or with a wrong one: 401 with WWW-Authenticate, and an audit line without the token", async () => {
  const ip = freshIp();
  const from = gw.logs.mark();
  const none = await admin("GET", "/health", { ip, token: null });
  assertProblem(none, { status: 401, code: "admin_unauthorized" });
  assert.equal(none.headers["www-authenticate"], 'Bearer realm="edgegate-admin"');
  const wrong = await admin("GET", "/health", { ip, token: `${TOKEN}x` });
  assertProblem(wrong, { status: 401, code: "admin_unauthorized" });
  assert.equal(wrong.headers["www-authenticate"], 'Bearer realm="edgegate-admin", error="invalid_token"');
  const basic = await admin("GET", "/health", { ip, token: null, headers: { authorization: `Basic ${TOKEN}` } });
  assertProblem(basic, { status: 401, code: "admin_unauthorized" });
  // The right token, and a JSON answer.
  const ok = await admin("GET", "/health", { ip });
  assert.equal(ok.status, 200, ok.text);
  assert.match(ok.headers["content-type"], /^application\/json/);
  const health = ok.json();
  assert.equal(health.status, "ok");
  assert.equal(health.config_version, "v1");
  // Spin reads the overrides on every request (a fresh instance each time): refresh 0.
  assert.equal(health.control.refresh_ms, onSpin ? 0 : 3000);
  const audits = await waitAudits(from, 4);
  assert.deepEqual(
    audits.map((a) => [a.status, a.outcome, a.client_ip, a.method, a.path]),
    [
      [401, "admin_unauthorized", clientIp(ip), "GET", `${PREFIX}/health`],
      [401, "admin_unauthorized", clientIp(ip), "GET", `${PREFIX}/health`],
      [401, "admin_unauthorized", clientIp(ip), "GET", `${PREFIX}/health`],
      [200, "ok", clientIp(ip), "GET", `${PREFIX}/health`],
    ],
  );
  for (const line of gw.logs.entries.slice(from)) {
    assert.ok(!JSON.stringify(line).includes(TOKEN.slice(0, 20)), `no token in ${JSON.stringify(line)}`);
  }
});

/** The next `n` admin audit lines after `from`. */
async function waitAudits(from, n) {
  const pick = () => gw.logs.entries.slice(from).filter((e) => e.kind === "audit" && e.decision === "admin");
  for (let i = 0; i < 100 && pick().length < n; i++) await delay(20);
  return pick().slice(0, n);
}

test("the admin API has its own per-client limit: 429 rate_limited with Retry-After, other clients unaffected", async () => {
  const ip = freshIp();
  for (let i = 0; i < ADMIN_LIMIT; i++) {
    // Unauthenticated calls count too: the limit is checked before the token.
    const res = await admin("GET", "/health", { ip, token: i % 2 ? TOKEN : null });
    assert.ok([200, 401].includes(res.status), `call ${i}: ${res.status}`);
  }
  const over = await admin("GET", "/health", { ip });
  assertProblem(over, { status: 429, code: "rate_limited" });
  assert.ok(Number(over.headers["retry-after"]) >= 1, "Retry-After");
  assert.equal((await admin("GET", "/health", { ip: freshIp() })).status, 200);
});

test("validate: every error with its JSON path; nothing is stored or activated", async () => {
  const ip = freshIp();
  const bad = {
    pools: { p: { instances: [{ url: "ftp://nope" }] } },
    apis: [
      { name: "a", base_path: "/a", pool: "missing", routes: [{ name: "r", path: "/{id" }] },
      { name: "b", base_path: "/", pool: "p", routes: [{ name: "all", path: "/{*rest}" }] },
    ],
  };
  const res = await admin("POST", "/config/validate", { ip, body: bad });
  assert.equal(res.status, 200, res.text);
  const out = res.json();
  assert.equal(out.valid, false);
  const paths = out.errors.map((e) => e.path);
  assert.equal(out.error_count, out.errors.length);
  for (const p of ["$.pools.p.instances[0].url", "$.apis[0].pool", "$.apis[0].routes[0].path"]) {
    assert.ok(paths.includes(p), `${p} in ${JSON.stringify(out.errors)}`);
  }
  // A config that compiles but whose route reaches the admin prefix is refused as well.
  const reaching = { pools: { p: { instances: [{ url: backend.url }] } }, apis: [bad.apis[1]] };
  const reach = (await admin("POST", "/config/validate", { ip, body: reaching })).json();
  assert.equal(reach.valid, false);
  assert.deepEqual(reach.errors.map((e) => e.path), ["$.apis[0].routes[0].path"]);
  assert.match(reach.errors[0].message, /admin API prefix/);
  const notJson = (await admin("POST", "/config/validate", { ip, body: "{nope" })).json();
  assert.equal(notJson.valid, false);
  assert.equal(notJson.errors.length, 1);
  const good = (await admin("POST", "/config/validate", { ip, body: config(backend.url) })).json();
  assert.deepEqual([good.valid, good.routes], [true, 3]);
  // Nothing changed: still v1.
  const current = (await admin("GET", "/config", { ip })).json();
  assert.equal(current.version, "v1");
  assert.deepEqual(current.document.apis[0].name, "shop");
});

test("disable and enable a route: 503 route_disabled with an audit line, then served again", async () => {
  const ip = freshIp();
  const client = "203.0.113.50";
  assert.equal((await api("/shop/orders", client)).status, 200);
  const res = await admin("POST", "/routes/shop/orders/disable", { ip, body: { reason: "incident 7" } });
  assert.equal(res.status, 200, res.text);
  assert.equal(res.json().outcome, "changed");
  const from = gw.logs.mark();
  const off = await api("/shop/orders", client);
  assertProblem(off, { status: 503, code: "route_disabled" });
  assert.ok(!off.text.includes("incident 7"), "the reason is for operators only");
  assert.equal((await api("/shop/orders", client, "POST")).status, 503);
  assert.equal((await api("/shop/items", client)).status, 200, "other routes serve");
  const audit = await gw.logs.waitFor((e) => e.kind === "audit" && e.rule === "route_disabled", { from });
  assert.deepEqual([audit.reason, audit.api, audit.route, audit.client_ip], ["route_disabled", "shop", "orders", clientIp(client)]);
  const listed = (await admin("GET", "/routes", { ip })).json().routes.find((r) => r.route === "shop/orders");
  assert.deepEqual([listed.disabled, listed.reason], [true, "incident 7"]);
  // Unknown routes and bad bodies change nothing.
  assertProblem(await admin("POST", "/routes/shop/nope/disable", { ip }), { status: 404, code: "admin_not_found" });
  assertProblem(await admin("POST", "/routes/shop/items/disable", { ip, body: { reason: 5 } }), {
    status: 400,
    code: "invalid_admin_request",
  });
  assert.equal((await api("/shop/items", client)).status, 200);
  assert.equal((await admin("POST", "/routes/shop/orders/enable", { ip })).status, 200);
  assert.equal((await api("/shop/orders", client)).status, 200);
  assertProblem(await admin("POST", "/routes/shop/orders/enable", { ip }), { status: 404, code: "admin_not_found" });
});

test("IP block through the admin API: refused before routing with 403 ip_blocked, then lifted", async () => {
  const ip = freshIp();
  const blocked = "203.0.113.77";
  const other = "203.0.113.78";
  assert.equal((await api("/shop/items", blocked)).status, 200);
  const t0 = performance.now();
  const seen = clientIp(blocked);
  const add = await admin("POST", "/ip-blocks", { ip, body: { cidr: seen, reason: "scraping", ttl_s: 600 } });
  assert.equal(add.status, 200, add.text);
  assert.equal(add.json().block.cidr, `${seen}/32`);
  const from = gw.logs.mark();
  const refused = await api("/shop/items", blocked);
  const ms = performance.now() - t0;
  console.log(`# block applied (same isolate as the admin call): ${ms.toFixed(0)} ms from the admin call`);
  assertProblem(refused, { status: 403, code: "ip_blocked" });
  // Before routing: even a path no route matches is refused.
  assertProblem(await api("/nowhere", blocked), { status: 403, code: "ip_blocked" });
  assert.equal((await api("/shop/items", other)).status, 200);
  const audit = await gw.logs.waitFor((e) => e.kind === "audit" && e.rule === "emergency_block", { from });
  assert.deepEqual([audit.reason, audit.client_ip], ["ip_blocked", seen]);
  const list = (await admin("GET", "/ip-blocks", { ip })).json();
  assert.deepEqual(list.blocks.map((b) => [b.cidr, b.reason]), [[`${seen}/32`, "scraping"]]);
  // Bad bodies change nothing.
  for (const body of [{ cidr: "10.0.0.1/8" }, { cidr: "nope" }, { reason: "x" }, { cidr: "10.0.0.0/8", extra: 1 }, "{"]) {
    assertProblem(await admin("POST", "/ip-blocks", { ip, body }), { status: 400, code: "invalid_admin_request" });
  }
  assert.equal((await admin("GET", "/ip-blocks", { ip })).json().blocks.length, 1);
  const del = await admin("DELETE", `/ip-blocks?cidr=${encodeURIComponent(`${seen}/32`)}`, { ip });
  assert.equal(del.status, 200, del.text);
  assert.equal((await api("/shop/items", blocked)).status, 200);
  assertProblem(await admin("DELETE", `/ip-blocks?cidr=${seen}`, { ip }), { status: 404, code: "admin_not_found" });
});

test("propagation: a block written by another isolate is applied here within the refresh interval + one round trip (≤ 10 s)", { skip: onSpin && NO_CONTROL_OBJECT }, async () => {
  const blocked = "2001:db8:77::5";
  assert.equal((await api("/shop/items", blocked)).status, 200);
  const ns = await gw.mf.getDurableObjectNamespace(CONTROL_BINDING);
  const stub = ns.get(ns.idFromName("global"));
  const control = async (call) => {
    const res = await stub.fetch("https://control/", { method: "POST", body: JSON.stringify(call) });
    assert.equal(res.status, 200);
    return res.json();
  };
  const t0 = performance.now();
  const reply = await control({ op: "block", cidr: "2001:db8:77::/48", reason: "elsewhere", ttl_s: null });
  assert.equal(reply.outcome, "changed");
  let status;
  do {
    status = (await api("/shop/items", blocked)).status;
    if (status !== 403) await delay(50);
  } while (status !== 403 && performance.now() - t0 < 15_000);
  const appliedMs = performance.now() - t0;
  console.log(`# block applied by refresh (another isolate's change): ${appliedMs.toFixed(0)} ms (EDGEGATE_CONTROL_REFRESH_MS 3000)`);
  assert.equal(status, 403);
  assert.ok(appliedMs <= 10_000, `applied after ${appliedMs} ms`);
  const t1 = performance.now();
  await control({ op: "unblock", cidr: "2001:db8:77::/48" });
  do {
    status = (await api("/shop/items", blocked)).status;
    if (status !== 200) await delay(50);
  } while (status !== 200 && performance.now() - t1 < 15_000);
  const liftedMs = performance.now() - t1;
  console.log(`# block lifted by refresh: ${liftedMs.toFixed(0)} ms`);
  assert.equal(status, 200);
  assert.ok(liftedMs <= 10_000, `lifted after ${liftedMs} ms`);
});

test("rate-limit counters: read and reset a rate-limited route's counter by limit name and key value", async () => {
  const ip = freshIp();
  const client = "192.0.2.200";
  for (let i = 0; i < 3; i++) assert.equal((await api("/shop/limited", client)).status, 200);
  assertProblem(await api("/shop/limited", client), { status: 429, code: "rate_limited" });
  const limits = (await admin("GET", "/rate-limits", { ip })).json().rate_limits;
  assert.deepEqual(limits.map((l) => [l.name, l.scope, l.key]), [["per-ip", "route:shop/limited", "ip"]]);
  const seen = clientIp(client);
  const q = `?limit=per-ip&value=${seen}`;
  const read = await admin("GET", `/rate-limits/counters${q}`, { ip });
  assert.equal(read.status, 200, read.text);
  const [c] = read.json().counters;
  assert.deepEqual([c.value, c.decision.remaining, c.decision.limit, c.counter], [seen, 0, 3, `rl|route:shop/limited|per-ip|ip|${seen}`]);
  // Reading changes nothing.
  assertProblem(await api("/shop/limited", client), { status: 429, code: "rate_limited" });
  const reset = await admin("DELETE", `/rate-limits/counters${q}`, { ip });
  assert.equal(reset.status, 200, reset.text);
  assert.equal(reset.json().counters[0].decision.remaining, 3);
  assert.equal((await api("/shop/limited", client)).status, 200);
  assertProblem(await admin("GET", "/rate-limits/counters?limit=nope&value=x", { ip }), { status: 404, code: "admin_not_found" });
  assertProblem(await admin("GET", "/rate-limits/counters?limit=per-ip&value=not-an-ip", { ip }), {
    status: 400,
    code: "invalid_admin_request",
  });
  assertProblem(await admin("GET", "/rate-limits/counters?limit=per-ip", { ip }), { status: 400, code: "invalid_admin_request" });
});

test("the OpenAPI 3.1 document parses and lists every endpoint; unknown endpoints 404, wrong methods 405", async () => {
  const ip = freshIp();
  const res = await admin("GET", "/openapi.json", { ip });
  assert.equal(res.status, 200);
  const doc = res.json();
  assert.equal(doc.openapi, "3.1.0");
  assert.deepEqual(doc.servers, [{ url: PREFIX }]);
  const ops = Object.entries(doc.paths).flatMap(([p, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${p}`));
  for (const op of [
    "GET /health",
    "GET /openapi.json",
    "GET /config",
    "POST /config/validate",
    "GET /routes",
    "POST /routes/{api}/{route}/disable",
    "POST /routes/{api}/{route}/enable",
    "GET /ip-blocks",
    "POST /ip-blocks",
    "DELETE /ip-blocks",
    "GET /rate-limits",
    "GET /rate-limits/counters",
    "DELETE /rate-limits/counters",
  ]) {
    assert.ok(ops.includes(op), `${op} in ${ops}`);
  }
  assertProblem(await admin("GET", "/nope", { ip }), { status: 404, code: "route_not_found" });
  const wrong = await admin("PUT", "/ip-blocks", { ip });
  assertProblem(wrong, { status: 405, code: "method_not_allowed" });
  assert.equal(wrong.headers.allow, "GET, POST, DELETE");
});

test("admin paths are never routed: an encoded spelling still reaches the admin API", async () => {
  const res = await gw.request({
    path: "/__edgegate/%61dmin/health",
    headers: { "cf-connecting-ip": freshIp(), authorization: `Bearer ${TOKEN}` },
  });
  assert.equal(res.status, 200, res.text);
});

test("a cold isolate does not serve before it has the overrides", { skip: onSpin && NO_CONTROL_OBJECT }, async () => {
  const cold = await startGateway({ config: config(backend.url) });
  try {
    // Written before the isolate's first request: the first request must already see it.
    const ns = await cold.mf.getDurableObjectNamespace(CONTROL_BINDING);
    const stub = ns.get(ns.idFromName("global"));
    const res = await stub.fetch("https://control/", {
      method: "POST",
      body: JSON.stringify({ op: "block", cidr: "192.0.2.0/24", reason: "cold", ttl_s: null }),
    });
    assert.equal(res.status, 200);
    const first = await Promise.all([1, 2, 3].map(() => cold.request({ path: "/shop/items", headers: { "cf-connecting-ip": "192.0.2.5" } })));
    for (const r of first) assertProblem(r, { status: 403, code: "ip_blocked" });
  } finally {
    await cold.close();
  }
});

// control: false is no Control binding on Workers; on Spin, a Redis address nothing listens on.
test("an unreachable control store fails open, logged", async () => {
  const unbound = await startGateway({ config: config(backend.url), control: false });
  try {
    const from = unbound.logs.mark();
    assert.equal((await unbound.request({ path: "/shop/items", headers: { "cf-connecting-ip": "192.0.2.5" } })).status, 200);
    const ev = await unbound.logs.waitForEvent("control_unavailable", () => true, { from });
    assert.equal(ev.failures, 1);
  } finally {
    await unbound.close();
  }
});

test("without EDGEGATE_ADMIN_TOKEN the admin API is off: its paths answer 404", async () => {
  const off = await startGateway({ config: config(backend.url) });
  try {
    const res = await off.request({
      path: `${PREFIX}/health`,
      headers: { authorization: `Bearer ${TOKEN}`, "cf-connecting-ip": "192.0.2.9" },
    });
    assertProblem(res, { status: 404, code: "route_not_found" });
    assert.equal((await off.request({ path: "/shop/items" })).status, 200);
  } finally {
    await off.close();
  }
});
