// ABAC with Cedar end to end: the gateway (the worker or the Spin component, both built with
// their default `cedar` feature) evaluates the config's policies against the caller (API key
// record), the endpoint and the request context taken from `request.cf` (country, Workers
// only), the client address and chosen headers.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { startGateway, onSpin } from "../support/gateway.mjs";
import { NO_CLIENT_GEO } from "../support/spin-gaps.mjs";
import { startBackend, closeAll } from "../support/backends.mjs";

const credentialKey = (key) => `credential:apikey:${crypto.createHash("sha256").update(key).digest("hex")}`;

// The office network. On Spin a test client "at" 10.20.30.40 connects from 127.20.30.40
// (gateway.mjs clientIp), so the office is that loopback range there.
const OFFICE = onSpin ? "127.20.0.0/16" : "10.0.0.0/8";

const POLICIES = `
@id("partners-read")
permit(principal, action in [Edgegate::Action::"GET", Edgegate::Action::"HEAD"], resource)
when { principal.consumer == "acme" };

@id("embargo")
forbid(principal, action, resource)
when { context has country && ["KP", "IR"].contains(context.country) };

@id("office-only")
forbid(principal, action, resource)
when { resource.route == "internal" && !(context has ip && context.ip.isInRange(ip("${OFFICE}"))) };

@id("tenant-match")
forbid(principal, action, resource)
when { context.headers has "x-tenant" && context.headers["x-tenant"] != principal.application };
`;

let gw, backend;

before(async () => {
  backend = await startBackend("docs");
  const abac = { policies: POLICIES, context_headers: ["x-tenant"] };
  gw = await startGateway({
    config: {
      pools: { docs: { instances: [{ url: backend.url }] } },
      apis: [
        {
          name: "docs",
          base_path: "/docs",
          pool: "docs",
          policies: { auth: { accept: ["api_key"], api_key: { header: "x-api-key" } }, authorization: { abac } },
          routes: [
            { name: "pages", path: "/pages" },
            { name: "internal", path: "/internal" },
            { name: "shadowed", path: "/shadowed", policies: { authorization: { abac: { ...abac, mode: "shadow" } } } },
          ],
        },
      ],
    },
    kv: {
      [credentialKey("ak-acme")]: JSON.stringify({ consumer_id: "acme", application_id: "acme-web", status: "active" }),
      [credentialKey("ak-other")]: JSON.stringify({ consumer_id: "globex", application_id: "globex-app", status: "active" }),
    },
  });
});

after(async () => {
  await gw?.close();
  await closeAll(backend);
});

/**
 * A request through Miniflare's dispatchFetch, which can set `request.cf`; on Spin (no
 * request.cf: `cf` is refused) an ordinary request.
 */
async function call(path, { key = "ak-acme", method = "GET", headers = {}, cf } = {}) {
  if (onSpin) {
    if (cf) throw new Error("spin: no request.cf (test bug: guard this call)");
    const res = await gw.request({ method, path, headers: { "x-api-key": key, ...headers } });
    return { status: res.status, body: res.text.startsWith("{") ? res.json() : res.text };
  }
  const res = await gw.mf.dispatchFetch(new URL(path, gw.url), {
    method,
    headers: { "x-api-key": key, ...headers },
    ...(cf ? { cf } : {}),
  });
  const body = await res.text();
  return { status: res.status, body: body.startsWith("{") ? JSON.parse(body) : body };
}

test("Cedar permits and forbids on the caller and the endpoint", async () => {
  assert.equal((await call("/docs/pages")).status, 200);
  const other = await call("/docs/pages", { key: "ak-other" });
  assert.equal(other.status, 403);
  assert.equal(other.body.code, "policy_denied");
  const write = await call("/docs/pages", { method: "POST" });
  assert.equal(write.status, 403, "no policy permits POST");
  assert.ok(!JSON.stringify(gw.logs.entries).includes("ak-acme"), "no API key in the logs");
});

test("Cedar forbids on cf.country", { skip: onSpin && NO_CLIENT_GEO }, async () => {
  assert.equal((await call("/docs/pages", { cf: { country: "DE" } })).status, 200);
  const embargo = await call("/docs/pages", { cf: { country: "KP" } });
  assert.equal(embargo.status, 403);
  assert.equal(embargo.body.code, "policy_denied");
  const audit = await gw.logs.waitFor((e) => e.kind === "audit" && /embargo/.test(e.detail ?? ""), {
    what: "the audit line naming the embargo policy",
  });
  assert.equal(audit.rule, "abac");
  assert.equal(audit.decision, "deny");
  assert.ok(!JSON.stringify(gw.logs.entries).includes("ak-acme"), "no API key in the logs");
});

test("context: the client address and a chosen header", async () => {
  assert.equal((await call("/docs/internal", { headers: { "cf-connecting-ip": "10.20.30.40" } })).status, 200);
  // Outside the office: an IPv6 client on Workers; on Spin (IPv4 clients only) 127.21.0.1.
  const outside = onSpin ? "10.21.0.1" : "2001:db8::1";
  assert.equal((await call("/docs/internal", { headers: { "cf-connecting-ip": outside } })).status, 403);
  assert.equal((await call("/docs/pages", { headers: { "x-tenant": "acme-web" } })).status, 200);
  assert.equal((await call("/docs/pages", { headers: { "x-tenant": "globex-app" } })).status, 403);
});

test("shadow mode lets the call through and logs what it would deny", async () => {
  const from = gw.logs.mark();
  assert.equal((await call("/docs/shadowed", { key: "ak-other" })).status, 200);
  const audit = await gw.logs.waitFor((e) => e.kind === "audit" && e.decision === "shadow", { from });
  assert.equal(audit.rule, "abac");
  assert.equal(audit.reason, "policy_denied");
});
