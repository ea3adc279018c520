// Registry bundles in JavaScript: a second, independent implementation of the bundle format
// (edgegate_core::bundle) and its Ed25519 signatures with node:crypto, so the tests do not
// check the Rust encoder against itself.
//
//   "EGB1" | u32le header length | header JSON | config | shards… | optional trailer
//   trailer: "EGS1" | u8 n | n × (u8 key id length, key id, 64-byte Ed25519 signature)
//
// The signed part is everything before the trailer; the version id is the first 16 hex
// characters of its SHA-256; a key id is the first 16 hex characters of the SHA-256 of the
// raw 32-byte public key; configured public keys are `ed25519:<base64url>`.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign } from "node:crypto";

const MAGIC = Buffer.from("EGB1");
const TRAILER = Buffer.from("EGS1");

const sha256hex = (buf) => createHash("sha256").update(buf).digest("hex");

/**
 * Encodes an unsigned bundle.
 *   label        the Registry's label (header `label`)
 *   config       the config document: an object (serialised here) or raw JSON text
 *   snapshot     optional { manifest, shards: [Buffer] }, e.g. the result of
 *                snapshot.mjs `buildSnapshot` ({ manifest, entries }); the manifest is put
 *                into the config as its first field, `"snapshot"` (an object config only)
 *   createdAtMs  header `created_at_ms` (default Date.now())
 * Returns a Buffer.
 */
export function encodeBundle({ label, config, snapshot, createdAtMs = Date.now() }) {
  let shards = [];
  let text;
  if (snapshot) {
    if (typeof config === "string") throw new TypeError("a bundle with a snapshot needs a config object");
    shards = snapshot.shards ?? snapshot.entries.filter((e) => Buffer.isBuffer(e.value)).map((e) => e.value);
    text = JSON.stringify({ snapshot: snapshot.manifest, ...config });
  } else {
    text = typeof config === "string" ? config : JSON.stringify(config);
  }
  const configBytes = Buffer.from(text, "utf8");
  const header = Buffer.from(
    JSON.stringify({
      format: 1,
      label,
      created_at_ms: createdAtMs,
      config_len: configBytes.length,
      shard_lens: shards.map((s) => s.length),
    }),
    "utf8",
  );
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return Buffer.concat([MAGIC, len, header, configBytes, ...shards]);
}

/** The signed part of a bundle (everything before the trailer): parses the lengths. */
export function signedPart(bundle) {
  if (!bundle.subarray(0, 4).equals(MAGIC)) throw new Error("not a bundle");
  const headerLen = bundle.readUInt32LE(4);
  const header = JSON.parse(bundle.subarray(8, 8 + headerLen).toString("utf8"));
  const end = 8 + headerLen + header.config_len + header.shard_lens.reduce((a, b) => a + b, 0);
  return bundle.subarray(0, end);
}

/** The version id the gateway gives this bundle (16 hex of SHA-256 of the signed part). */
export function versionId(bundle) {
  return sha256hex(signedPart(bundle)).slice(0, 16);
}

/**
 * A new Ed25519 signing key: { privateKey (KeyObject), publicText ("ed25519:<base64url>"),
 * keyId }.
 */
export function generateSigningKey() {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return describeKey(privateKey, publicKey);
}

function describeKey(privateKey, publicKey) {
  const raw = Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url");
  return { privateKey, publicText: `ed25519:${raw.toString("base64url")}`, keyId: sha256hex(raw).slice(0, 16) };
}

/** A signing key from a private JWK ({kty:"OKP", crv:"Ed25519", d, x}), e.g. the CLI's keygen. */
export function signingKeyFromJwk(jwk) {
  const privateKey = createPrivateKey({ key: jwk, format: "jwk" });
  return describeKey(privateKey, createPublicKey(privateKey));
}

/**
 * Adds signatures to a bundle's trailer (the existing trailer is replaced by one holding the
 * given keys' signatures, in order). `keyId` may be overridden per key to forge a claim.
 */
export function signBundle(bundle, ...keys) {
  const part = signedPart(bundle);
  const entries = keys.map((k) => {
    const id = Buffer.from(k.keyId, "ascii");
    return Buffer.concat([Buffer.from([id.length]), id, sign(null, part, k.privateKey)]);
  });
  return Buffer.concat([part, TRAILER, Buffer.from([entries.length]), ...entries]);
}

/** The bundle with one bit of its config flipped, trailer kept (a bad signature). */
export function tamper(bundle) {
  const out = Buffer.from(bundle);
  const headerLen = out.readUInt32LE(4);
  out[8 + headerLen] ^= 0x01;
  return out;
}
