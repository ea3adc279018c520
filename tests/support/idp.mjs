// A mock identity provider on 127.0.0.1 (random port) and JWS tooling for the auth suite.
//
// The IdP serves its published public keys at `/jwks` (each JWK with kid, alg, use) and an
// OIDC discovery document at `/.well-known/openid-configuration` (issuer + jwks_uri). Tests
// control the JWKS `Cache-Control`, rotate keys at runtime (add, publish, unpublish, remove),
// delay JWKS answers, and switch to an outage mode (connection refused, reset, 500, hang).
// Every request is recorded and counted (`counts.jwks`, `counts.discovery`).
//
// Signing uses node:crypto only: RSA 2048 (RS*/PS*), P-256 (ES256), P-384 (ES384), Ed25519
// (EdDSA) and HMAC secrets (HS*). The helpers at the end build malformed and attack tokens.
import http from "node:http";
import { EventEmitter } from "node:events";
import { promisify } from "node:util";
import {
  constants,
  createHmac,
  createPublicKey,
  generateKeyPair as generateKeyPairCb,
  randomBytes,
  sign as cryptoSign,
} from "node:crypto";
import { withTimeout } from "./util.mjs";

const generateKeyPair = promisify(generateKeyPairCb);

export const HMAC_ALGS = ["HS256", "HS384", "HS512"];
export const RSA_ALGS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"];
export const ASYMMETRIC_ALGS = [...RSA_ALGS, "ES256", "ES384", "EdDSA"];
export const ALL_ALGS = [...HMAC_ALGS, ...ASYMMETRIC_ALGS];

/** SHA-2 size of an algorithm (Ed25519 has its own). */
function hashBits(alg) {
  const m = /(\d{3})$/.exec(alg);
  return m ? Number(m[1]) : null;
}

// ------------------------------------------------------------------------------ encoding

/** base64url without padding of a Buffer / string. */
export function b64url(input) {
  return Buffer.from(input).toString("base64url");
}

/** base64url of a value's JSON. */
export function b64urlJson(value) {
  return b64url(JSON.stringify(value));
}

/** Splits a compact JWS: { header, payload (parsed, or null), signature (Buffer), parts }. */
export function decodeJws(token) {
  const parts = token.split(".");
  const parse = (s) => {
    try {
      return JSON.parse(Buffer.from(s, "base64url").toString("utf8"));
    } catch {
      return null;
    }
  };
  return {
    header: parse(parts[0] ?? ""),
    payload: parse(parts[1] ?? ""),
    signature: Buffer.from(parts[2] ?? "", "base64url"),
    parts,
  };
}

// ------------------------------------------------------------------------------ keys

/**
 * A signing key: { kid, alg, privateKey, publicKey (KeyObject), jwk (the public JWK with
 * kid, alg, use) }. RSA keys are 2048 bits unless `modulusLength` says otherwise (weak-key
 * tests).
 */
export async function generateSigningKey(
  alg,
  kid = `${alg.toLowerCase()}-${randomBytes(4).toString("hex")}`,
  { modulusLength = 2048 } = {},
) {
  let pair;
  if (alg.startsWith("RS") || alg.startsWith("PS")) {
    pair = await generateKeyPair("rsa", { modulusLength, publicExponent: 0x10001 });
  } else if (alg === "ES256") {
    pair = await generateKeyPair("ec", { namedCurve: "P-256" });
  } else if (alg === "ES384") {
    pair = await generateKeyPair("ec", { namedCurve: "P-384" });
  } else if (alg === "EdDSA") {
    pair = await generateKeyPair("ed25519");
  } else {
    throw new Error(`no key pair for ${alg}`);
  }
  const jwk = { ...pair.publicKey.export({ format: "jwk" }), kid, alg, use: "sig" };
  return { kid, alg, privateKey: pair.privateKey, publicKey: pair.publicKey, jwk };
}

/** An HMAC secret of `bytes` printable characters (the gateway uses a secret's UTF-8 bytes). */
export function hmacSecret(bytes = 64) {
  return randomBytes(bytes).toString("base64url").slice(0, bytes);
}

/**
 * The raw JWS signature of `input` with `alg`. `key` is a KeyObject (asymmetric) or the
 * secret (string / Buffer) for HS*. `dsaEncoding` lets tests produce DER ECDSA signatures.
 */
export function rawSign(alg, key, input, { dsaEncoding = "ieee-p1363" } = {}) {
  const data = Buffer.from(input);
  const bits = hashBits(alg);
  if (alg.startsWith("HS")) return createHmac(`sha${bits}`, key).update(data).digest();
  if (alg.startsWith("RS")) return cryptoSign(`sha${bits}`, data, key);
  if (alg.startsWith("PS")) {
    return cryptoSign(`sha${bits}`, data, {
      key,
      padding: constants.RSA_PKCS1_PSS_PADDING,
      saltLength: bits / 8,
    });
  }
  if (alg === "ES256" || alg === "ES384") return cryptoSign(`sha${bits}`, data, { key, dsaEncoding });
  if (alg === "EdDSA") return cryptoSign(null, data, key);
  throw new Error(`cannot sign with ${alg}`);
}

/**
 * Builds a compact JWS from a header object and claims (objects, or raw strings used as the
 * exact JSON text), signed with `signAlg` (default header.alg) and `key`.
 */
export function signCompact(header, claims, key, { signAlg = header.alg, dsaEncoding } = {}) {
  const h = typeof header === "string" ? b64url(header) : b64urlJson(header);
  const p = typeof claims === "string" ? b64url(claims) : b64urlJson(claims);
  const input = `${h}.${p}`;
  return `${input}.${b64url(rawSign(signAlg, key, input, { dsaEncoding }))}`;
}

// ------------------------------------------------------------------------------ the IdP

/**
 * The mock IdP. `await new MockIdp({ name }).start()`, then `addKeys(...)` / `addKey(...)`.
 *
 * Fields tests set: `cacheControl` (JWKS Cache-Control, null: none), `jwksDelayMs` (hold
 * each JWKS answer), `discoveryOverrides` (merged into the discovery document),
 * `jwksBodyOverride` (a raw JWKS body instead of the keys), `jwksRedirect` (answer /jwks
 * with a 302 to this URL). `issuer` is the server's URL
 * unless given.
 */
export class MockIdp extends EventEmitter {
  constructor({ name = "idp", issuer = null, cacheControl = "max-age=300" } = {}) {
    super();
    this.setMaxListeners(200);
    this.name = name;
    this.fixedIssuer = issuer;
    this.cacheControl = cacheControl;
    this.jwksDelayMs = 0;
    this.discoveryOverrides = {};
    this.jwksBodyOverride = null;
    /** When set, /jwks answers 302 to this URL. */
    this.jwksRedirect = null;
    this.hmacSecret = hmacSecret(64);
    /** kid → signing key (published or not). */
    this.keys = new Map();
    /** kids served in /jwks, in order. */
    this.published = [];
    this.counts = { jwks: 0, discovery: 0, other: 0 };
    /** Every request: { method, url, path, headers, at (Date.now()), done (bool) }. */
    this.requests = [];
    this.mode = null;
    this.hung = new Set();
    this.timers = new Set();
    this.sockets = new Set();
    this.server = this.#createServer();
  }

  #createServer() {
    const server = http.createServer((req, res) => this.#handle(req, res));
    server.on("connection", (socket) => {
      this.sockets.add(socket);
      socket.on("close", () => this.sockets.delete(socket));
    });
    return server;
  }

  async start() {
    await this.#listen(0);
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
    this.issuer = this.fixedIssuer ?? this.url;
    this.jwksUri = `${this.url}/jwks`;
    this.discoveryUrl = `${this.url}/.well-known/openid-configuration`;
    return this;
  }

  #listen(port) {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    });
  }

  #handle(req, res) {
    const path = new URL(req.url, "http://idp").pathname;
    const record = { method: req.method, url: req.url, path, headers: req.headers, at: Date.now() };
    this.requests.push(record);
    let kind = "other";
    if (path === "/jwks") kind = "jwks";
    else if (path === "/.well-known/openid-configuration") kind = "discovery";
    this.counts[kind] += 1;
    record.kind = kind;
    this.emit("request", record);
    res.on("error", () => {});
    if (this.mode === "reset") return req.socket.destroy();
    if (this.mode === "hang") {
      this.hung.add(res);
      res.on("close", () => this.hung.delete(res));
      return;
    }
    if (this.mode === "500") return this.#send(res, 500, { error: "idp down" });
    if (kind === "jwks" && this.jwksRedirect) {
      return this.#sendRaw(res, 302, "", { location: this.jwksRedirect });
    }
    if (kind === "jwks") {
      const answer = () => {
        const headers = {};
        if (this.cacheControl) headers["cache-control"] = this.cacheControl;
        if (this.jwksBodyOverride !== null) {
          return this.#sendRaw(res, 200, this.jwksBodyOverride, headers);
        }
        this.#send(res, 200, this.jwks(), headers);
        record.answeredAt = Date.now();
        this.emit("jwks-answered", record);
      };
      if (this.jwksDelayMs > 0) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          answer();
        }, this.jwksDelayMs);
        this.timers.add(t);
      } else {
        answer();
      }
      return;
    }
    if (kind === "discovery") {
      return this.#send(res, 200, {
        issuer: this.issuer,
        jwks_uri: this.jwksUri,
        id_token_signing_alg_values_supported: ASYMMETRIC_ALGS,
        ...this.discoveryOverrides,
      });
    }
    this.#send(res, 404, { error: "not found" });
  }

  #send(res, status, obj, headers = {}) {
    this.#sendRaw(res, status, JSON.stringify(obj), { "content-type": "application/json", ...headers });
  }

  #sendRaw(res, status, body, headers = {}) {
    if (res.destroyed || res.writableEnded) return;
    const buf = Buffer.from(body);
    res.writeHead(status, { "content-length": buf.length, ...headers });
    res.end(buf);
  }

  /** The JWKS document served now. */
  jwks() {
    return { keys: this.published.map((kid) => this.keys.get(kid).jwk) };
  }

  /** Generates a key for `alg` (kid optional) and publishes it unless `publish` is false. */
  async addKey(alg, { kid, publish = true } = {}) {
    const key = await generateSigningKey(alg, kid ?? `${this.name}-${alg.toLowerCase()}-${this.keys.size + 1}`);
    return this.addExistingKey(key, { publish });
  }

  /** Adds a key made elsewhere (e.g. generateSigningKey), published unless told otherwise. */
  addExistingKey(key, { publish = true } = {}) {
    if (this.keys.has(key.kid)) throw new Error(`kid ${key.kid} already exists`);
    this.keys.set(key.kid, key);
    if (publish) this.publish(key.kid);
    return key;
  }

  /** One key per algorithm (in parallel); returns { alg: key }. */
  async addKeys(algs = ASYMMETRIC_ALGS, { publish = true } = {}) {
    const first = this.keys.size;
    const keys = await Promise.all(
      algs.map((alg, i) => generateSigningKey(alg, `${this.name}-${alg.toLowerCase()}-${first + i + 1}`)),
    );
    for (const key of keys) this.addExistingKey(key, { publish });
    return Object.fromEntries(keys.map((k) => [k.alg, k]));
  }

  /** Serves the key in /jwks. */
  publish(kid) {
    if (!this.keys.has(kid)) throw new Error(`no key ${kid}`);
    if (!this.published.includes(kid)) this.published.push(kid);
  }

  /** Stops serving the key (it can still sign). */
  unpublish(kid) {
    this.published = this.published.filter((k) => k !== kid);
  }

  /** Forgets the key entirely. */
  removeKey(kid) {
    this.unpublish(kid);
    this.keys.delete(kid);
  }

  key(kid) {
    const key = this.keys.get(kid);
    if (!key) throw new Error(`no key ${kid} at ${this.name}`);
    return key;
  }

  /** The first key (published first) for `alg`. */
  keyFor(alg) {
    const kid = this.published.find((k) => this.keys.get(k).alg === alg) ??
      [...this.keys.keys()].find((k) => this.keys.get(k).alg === alg);
    if (!kid) throw new Error(`no ${alg} key at ${this.name}`);
    return this.keys.get(kid);
  }

  /**
   * Default claims: iss (this issuer), sub, aud, iat, exp (+10 min), jti (unique), merged with
   * `extra`; a claim set to undefined is left out.
   */
  claims(extra = {}) {
    const now = Math.floor(Date.now() / 1000);
    const base = {
      iss: this.issuer,
      sub: "user-1",
      aud: "edgegate-tests",
      iat: now,
      exp: now + 600,
      jti: randomBytes(8).toString("hex"),
    };
    return dropUndefined({ ...base, ...extra });
  }

  /**
   * A compact JWS. `alg` (default: the key's), `kid` (default: the key for alg; null: no kid
   * header), `claims` (merged over `this.claims()`; `rawClaims` replaces them wholly),
   * `header` (merged over { alg, typ, kid }; undefined values delete), `secret` for HS*
   * (default this.hmacSecret), `key` to sign with another key, `signAlg` to sign with another
   * algorithm than the header says, `dsaEncoding` ("der" for a DER ECDSA signature).
   */
  sign({ alg, kid, claims = {}, rawClaims, header = {}, secret, key, signAlg, dsaEncoding } = {}) {
    let signingKey;
    let headerKid;
    if (key) {
      signingKey = key.privateKey ?? key;
      alg ??= key.alg;
      headerKid = kid === undefined ? key.kid : kid;
    } else if ((alg ?? "").startsWith("HS") || (signAlg ?? "").startsWith("HS")) {
      signingKey = secret ?? this.hmacSecret;
      headerKid = kid ?? undefined;
    } else {
      const k = kid ? this.key(kid) : this.keyFor(alg);
      alg ??= k.alg;
      signingKey = k.privateKey;
      headerKid = kid === null ? undefined : k.kid;
    }
    const h = dropUndefined({ alg, typ: "JWT", kid: headerKid, ...header });
    const c = rawClaims ?? this.claims(claims);
    return signCompact(h, c, signingKey, { signAlg: signAlg ?? alg, dsaEncoding });
  }

  /**
   * Outage mode: "refused" (nothing listens on the port), "reset" (the connection is dropped
   * once the request has arrived: counted, never answered),
   * "500" (every answer is 500), "hang" (requests are never answered), or null (serving).
   */
  async setOutage(mode) {
    if (mode === this.mode) return;
    const wasRefused = this.mode === "refused";
    this.mode = mode;
    if (mode !== "hang") this.#releaseHung();
    if (mode === "refused") {
      await this.#stopListening();
    } else if (wasRefused) {
      this.server = this.#createServer();
      await this.#listen(this.port);
    }
  }

  #releaseHung() {
    for (const res of this.hung) res.destroy();
    this.hung.clear();
  }

  async #stopListening() {
    const server = this.server;
    const closed = new Promise((resolve) => server.close(() => resolve()));
    server.closeAllConnections?.();
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  /** JWKS requests received after `from` (a time from Date.now()). */
  jwksRequestsSince(from) {
    return this.requests.filter((r) => r.kind === "jwks" && r.at >= from);
  }

  /** Time (Date.now()) of the last request of `kind` (any kind by default), or 0. */
  lastRequestAt(kind = null) {
    for (let i = this.requests.length - 1; i >= 0; i--) {
      if (!kind || this.requests[i].kind === kind) return this.requests[i].at;
    }
    return 0;
  }

  /** Waits (bounded) until `counts[kind]` reaches `n`. */
  waitForCount(kind, n, timeoutMs = 5000) {
    if (this.counts[kind] >= n) return Promise.resolve();
    let on;
    return withTimeout(
      new Promise((resolve) => {
        on = () => {
          if (this.counts[kind] >= n) resolve();
        };
        this.on("request", on);
      }),
      timeoutMs,
      `${n} ${kind} requests at ${this.name}`,
    ).finally(() => this.off("request", on));
  }

  async close() {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.#releaseHung();
    if (this.mode === "refused") return;
    await this.#stopListening();
  }
}

function dropUndefined(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined));
}

// ------------------------------------------------------------------------------ attack tokens

/** `header.payload.signature` from raw strings (no encoding): for malformed tokens. */
export function rawToken(...parts) {
  return parts.join(".");
}

/** An unsigned token: alg `none` (or another spelling), empty signature unless given. */
export function unsignedToken(claims, { alg = "none", header = {}, signature = "" } = {}) {
  return `${b64urlJson(dropUndefined({ alg, typ: "JWT", ...header }))}.${b64urlJson(claims)}.${signature}`;
}

/** The token with one bit of its signature flipped (same length). */
export function tamperSignature(token) {
  const { parts, signature } = decodeJws(token);
  const sig = Buffer.from(signature);
  sig[Math.floor(sig.length / 2)] ^= 0x01;
  return `${parts[0]}.${parts[1]}.${b64url(sig)}`;
}

/** The token with its claims changed by `mutate(claims)` (returns the new claims), signature kept. */
export function tamperPayload(token, mutate) {
  const { parts, payload } = decodeJws(token);
  const next = mutate({ ...payload }) ?? payload;
  return `${parts[0]}.${b64urlJson(next)}.${parts[2]}`;
}

/** The token with its header changed by `mutate(header)`, signature kept. */
export function tamperHeader(token, mutate) {
  const { parts, header } = decodeJws(token);
  const next = mutate({ ...header }) ?? header;
  return `${b64urlJson(next)}.${parts[1]}.${parts[2]}`;
}

/**
 * The classic key-confusion token: HS* signed with the bytes of an RSA public key (its SPKI
 * PEM by default, or "der" / "jwk-n"), as a naive verifier that feeds the JWKS key to HMAC
 * would accept.
 */
export function hmacWithPublicKey(publicKey, header, claims, { form = "pem", alg = header.alg ?? "HS256" } = {}) {
  const pub = publicKey.type === "public" ? publicKey : createPublicKey(publicKey);
  let secret;
  if (form === "pem") secret = pub.export({ type: "spki", format: "pem" });
  else if (form === "der") secret = pub.export({ type: "spki", format: "der" });
  else if (form === "jwk-n") secret = Buffer.from(pub.export({ format: "jwk" }).n, "base64url");
  else throw new Error(`unknown form ${form}`);
  return signCompact({ ...header, alg }, claims, secret, { signAlg: alg });
}
