//! The authentication stage end to end over `FakePlatform`: every algorithm, the classic JWT
//! attacks, claim checks, credentials, anonymous routes, JWKS caching / refetch / outages /
//! OIDC discovery, single-flight, the verified-token cache, identity propagation, logs, and
//! the auth parts of config validation.
//!
//! Keys are fixed fixtures (`tests/fixtures/`, see its README: RSA keys are too slow to
//! generate in a debug build); tokens are built here: header JSON + claims JSON → base64url →
//! signature. Row tables are `#[rustfmt::skip]` so that they stay one row per line.

use base64ct::{Base64, Base64Unpadded, Base64UrlUnpadded, Encoding};
use edgegate_core::config::{compile, ConfigError};
use edgegate_core::config_store::{version_key, POINTER_KEY};
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{
    Gateway, GatewayResponse, RequestHead, ResponseBody, RuntimeSettings,
};
use edgegate_core::platform::{Clock, HttpResponse, PlatformError};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use futures::future::join_all;
use hmac::{Hmac, Mac};
use rsa::pkcs8::DecodePrivateKey;
use rsa::{pss::Pss, Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;

// === keys (fixtures) ===

/// The DER bytes of a PEM document.
fn der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Base64::decode_vec(&b64).expect("PEM base64")
}

macro_rules! fixture_key {
    ($name:ident, $ty:ty, $file:literal) => {
        fn $name() -> &'static $ty {
            static KEY: OnceLock<$ty> = OnceLock::new();
            KEY.get_or_init(|| {
                <$ty>::from_pkcs8_der(&der(include_str!(concat!("fixtures/", $file)))).expect($file)
            })
        }
    };
}

fixture_key!(rsa_key, RsaPrivateKey, "rsa2048.pem");
fixture_key!(rsa_b_key, RsaPrivateKey, "rsa2048_b.pem");
fixture_key!(rsa1024_key, RsaPrivateKey, "rsa1024.pem");
fixture_key!(p256_key, p256::ecdsa::SigningKey, "p256.pem");
fixture_key!(p256_b_key, p256::ecdsa::SigningKey, "p256_b.pem");
fixture_key!(attacker_key, p256::ecdsa::SigningKey, "p256_attacker.pem");
fixture_key!(p384_key, p384::ecdsa::SigningKey, "p384.pem");
fixture_key!(ed_key, ed25519_dalek::SigningKey, "ed25519.pem");

const RSA_JWK: &str = include_str!("fixtures/rsa2048.jwk.json");
const RSA_B_JWK: &str = include_str!("fixtures/rsa2048_b.jwk.json");
const RSA1024_JWK: &str = include_str!("fixtures/rsa1024.jwk.json");
const RSA_PUBLIC_PEM: &str = include_str!("fixtures/rsa2048.pub.pem");
const P256_JWK: &str = include_str!("fixtures/p256.jwk.json");
const P256_B_JWK: &str = include_str!("fixtures/p256_b.jwk.json");
const ATTACKER_JWK: &str = include_str!("fixtures/p256_attacker.jwk.json");
const P384_JWK: &str = include_str!("fixtures/p384.jwk.json");
const ED_JWK: &str = include_str!("fixtures/ed25519.jwk.json");

/// A public JWK fixture with a `kid`.
fn jwk(fixture: &str, kid: &str) -> Value {
    let mut v: Value = serde_json::from_str(fixture).expect("JWK fixture");
    v["kid"] = kid.into();
    v
}

/// What signs a token.
enum Key {
    /// An HMAC secret (the algorithm picks the hash).
    Hmac(Vec<u8>),
    /// RSA: `RS*` → PKCS#1 v1.5, `PS*` → PSS, with the algorithm's hash.
    Rsa(&'static RsaPrivateKey),
    P256(&'static p256::ecdsa::SigningKey),
    P384(&'static p384::ecdsa::SigningKey),
    Ed25519(&'static ed25519_dalek::SigningKey),
    /// These signature bytes, whatever the input.
    Sig(Vec<u8>),
}

fn signature(alg: &str, key: &Key, input: &[u8]) -> Vec<u8> {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8]) -> Vec<u8> {
        let mut m = <M as hmac::digest::KeyInit>::new_from_slice(key).expect("HMAC key");
        m.update(input);
        m.finalize().into_bytes().to_vec()
    }
    match key {
        Key::Hmac(secret) => match alg {
            "HS384" => mac::<Hmac<Sha384>>(secret, input),
            "HS512" => mac::<Hmac<Sha512>>(secret, input),
            _ => mac::<Hmac<Sha256>>(secret, input),
        },
        Key::Rsa(k) => {
            let mut rng = rand_core::OsRng;
            match alg {
                "RS384" => k.sign(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(input)),
                "RS512" => k.sign(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input)),
                "PS256" => k.sign_with_rng(&mut rng, Pss::new::<Sha256>(), &Sha256::digest(input)),
                "PS384" => k.sign_with_rng(&mut rng, Pss::new::<Sha384>(), &Sha384::digest(input)),
                "PS512" => k.sign_with_rng(&mut rng, Pss::new::<Sha512>(), &Sha512::digest(input)),
                _ => k.sign(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input)),
            }
            .expect("RSA signing")
        }
        Key::P256(k) => {
            use p256::ecdsa::signature::Signer;
            let s: p256::ecdsa::Signature = k.sign(input);
            s.to_bytes().to_vec()
        }
        Key::P384(k) => {
            use p384::ecdsa::signature::Signer;
            let s: p384::ecdsa::Signature = k.sign(input);
            s.to_bytes().to_vec()
        }
        Key::Ed25519(k) => {
            use ed25519_dalek::Signer;
            k.sign(input).to_bytes().to_vec()
        }
        Key::Sig(bytes) => bytes.clone(),
    }
}

// === tokens ===

fn b64(bytes: impl AsRef<[u8]>) -> String {
    Base64UrlUnpadded::encode_string(bytes.as_ref())
}

/// A compact JWS of this header and these claims, signed per the header's `alg`.
fn sign_token(header: &Value, claims: &Value, key: &Key) -> String {
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let alg = header["alg"].as_str().unwrap_or_default();
    let sig = signature(alg, key, input.as_bytes());
    format!("{input}.{}", b64(sig))
}

/// A token from raw header and claims text (any bytes, JSON or not) and signature bytes.
fn raw_token(header: &str, claims: &str, sig: &[u8]) -> String {
    format!("{}.{}.{}", b64(header), b64(claims), b64(sig))
}

/// The three segments of a compact token.
fn segments(token: &str) -> (&str, &str, &str) {
    let mut it = token.split('.');
    let (h, c, s) = (it.next(), it.next(), it.next());
    (h.unwrap(), c.unwrap(), s.unwrap())
}

/// The token with other claims but its original signature.
fn with_payload(token: &str, claims: &Value) -> String {
    let (h, _, s) = segments(token);
    format!("{h}.{}.{s}", b64(claims.to_string()))
}

/// The token with the last byte of its signature flipped.
fn with_flipped_signature(token: &str) -> String {
    let (h, c, s) = segments(token);
    let mut sig = Base64UrlUnpadded::decode_vec(s).unwrap();
    *sig.last_mut().unwrap() ^= 0x01;
    format!("{h}.{c}.{}", b64(sig))
}

/// Applies a JSON merge patch (null removes a member).
fn merge(base: &mut Value, patch: Value) {
    if let Value::Object(patch) = patch {
        let obj = base.as_object_mut().expect("an object to patch");
        for (k, v) in patch {
            if v.is_null() {
                obj.remove(&k);
            } else {
                obj.insert(k, v);
            }
        }
    }
}

fn now_s(p: &FakePlatform) -> i64 {
    (p.now_ms() / 1000) as i64
}

/// Valid claims for the JWKS provider at the platform's time, patched.
fn claims(p: &FakePlatform, patch: Value) -> Value {
    let now = now_s(p);
    let mut c = json!({
        "iss": IDP_ISS, "sub": "user-1", "aud": AUD, "exp": now + 600, "iat": now,
        "azp": "app-1", "scope": "read write"
    });
    merge(&mut c, patch);
    c
}

/// The IdP's signing key for `alg` (HS*: the 64-byte secret).
fn key_for(alg: &str) -> Key {
    match alg {
        a if a.starts_with("HS") => Key::Hmac(HS_SECRET.as_bytes().to_vec()),
        a if a.starts_with("RS") || a.starts_with("PS") => Key::Rsa(rsa_key()),
        "ES256" => Key::P256(p256_key()),
        "ES384" => Key::P384(p384_key()),
        _ => Key::Ed25519(ed_key()),
    }
}

/// A signature of the right size for `alg` that verifies nothing.
fn dummy_signature(alg: &str) -> Key {
    let len = match alg {
        "ES384" => 96,
        a if a.starts_with("RS") || a.starts_with("PS") => 256,
        a if a.starts_with("HS") => 32,
        _ => 64,
    };
    Key::Sig(vec![1; len])
}

/// The `kid` of the IdP's key for `alg` in [`default_jwks`] (none for HMAC).
fn kid_for(alg: &str) -> Option<&'static str> {
    match alg {
        a if a.starts_with("HS") => None,
        a if a.starts_with("RS") || a.starts_with("PS") => Some("rsa-1"),
        "ES256" => Some("ec-1"),
        "ES384" => Some("ec384-1"),
        _ => Some("ed-1"),
    }
}

/// A valid token of `alg` from the IdP's key, claims patched.
fn token(p: &FakePlatform, alg: &str, patch: Value) -> String {
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid_for(alg) {
        header["kid"] = kid.into();
    }
    sign_token(&header, &claims(p, patch), &key_for(alg))
}

/// A valid EdDSA token (the fastest to sign in a debug build), claims patched.
fn ed(p: &FakePlatform, patch: Value) -> String {
    token(p, "EdDSA", patch)
}

/// A token signed by the IdP's key for `alg` under this `kid`.
fn with_kid(p: &FakePlatform, alg: &str, kid: &str) -> String {
    sign_token(
        &json!({ "alg": alg, "kid": kid }),
        &claims(p, json!({})),
        &key_for(alg),
    )
}

// === config and platform ===

const HOST: &str = "api.example.com";
const IDP_ISS: &str = "https://idp.example.com/";
const JWKS_URL: &str = "https://idp.example.com/.well-known/jwks.json";
const HS_ISS: &str = "https://hs.example.com/";
const HS_SHORT_ISS: &str = "https://hs-short.example.com/";
const HS_UNSET_ISS: &str = "https://hs-unset.example.com/";
const DISC_ISS: &str = "https://login.example.org";
const DISC_URL: &str = "https://login.example.org/.well-known/openid-configuration";
const DISC_JWKS_URL: &str = "https://login.example.org/keys";
const AUD: &str = "api://default";
/// 64 bytes: long enough for HS512.
const HS_SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// 32 bytes: enough for HS256 only.
const HS_SHORT_SECRET: &str = "short-secret-of-thirty-two-bytes";
const ASYM: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];
const HS_ALGS: [&str; 3] = ["HS256", "HS384", "HS512"];

fn jwt_auth(providers: &[&str], algorithms: &[&str], patch: Value) -> Value {
    let mut jwt = json!({ "providers": providers, "audiences": [AUD], "algorithms": algorithms });
    merge(&mut jwt, patch);
    json!({ "accept": ["jwt"], "jwt": jwt })
}

/// Route `name` at `/api/{name}` with this auth policy.
fn route(name: &str, auth: Value) -> Value {
    json!({ "name": name, "path": format!("/{name}"), "policies": { "auth": auth } })
}

/// The config most tests run on: one JWKS IdP, HMAC IdPs, a discovery IdP, and a route per
/// policy variant.
fn config() -> Value {
    let mut mixed = jwt_auth(&["idp"], &ASYM, json!({}));
    mixed["accept"] = json!(["jwt", "anonymous"]);
    #[rustfmt::skip]
    let routes = json!([
        route("jwt", jwt_auth(&["idp"], &ASYM, json!({}))),
        route("strict", jwt_auth(&["idp"], &ASYM, json!({ "leeway_s": 0 }))),
        route("rs-only", jwt_auth(&["idp"], &["RS256"], json!({}))),
        route("confused", jwt_auth(&["idp"], &["HS256", "RS256", "ES256"], json!({}))),
        route("other-aud", jwt_auth(&["idp"], &ASYM, json!({ "audiences": ["api://other"] }))),
        route("any-aud", jwt_auth(&["idp"], &ASYM, json!({ "audiences": [] }))),
        route("jti", jwt_auth(&["idp"], &ASYM, json!({ "required_claims": ["jti"] }))),
        route("small", jwt_auth(&["idp"], &ASYM, json!({ "max_token_bytes": 256 }))),
        route("hs", jwt_auth(&["hs", "hs_short", "hs_unset"], &HS_ALGS, json!({}))),
        route("disc", jwt_auth(&["disc"], &["ES256"], json!({}))),
        route("anon", json!({ "accept": ["anonymous"] })),
        route("mixed", mixed),
        { "name": "open", "path": "/open" }
    ]);
    json!({
        // Issuer and method headers are off by default; these tests check all five.
        "gateway": { "identity_headers": { "issuer": "x-edgegate-issuer", "method": "x-edgegate-auth-method" } },
        "pools": { "backend": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "identity_providers": {
            "idp": { "issuer": IDP_ISS, "jwks_uri": JWKS_URL, "jwks_min_ttl_s": 60,
                     "jwks_max_ttl_s": 3600, "max_stale_s": 600, "refetch_interval_s": 10 },
            "hs": { "issuer": HS_ISS, "hmac_secret": "HS_SECRET" },
            "hs_short": { "issuer": HS_SHORT_ISS, "hmac_secret": "HS_SHORT" },
            "hs_unset": { "issuer": HS_UNSET_ISS, "hmac_secret": "HS_UNSET" },
            "disc": { "issuer": DISC_ISS, "discovery_url": DISC_URL, "refetch_interval_s": 10 }
        },
        "apis": [{ "name": "api", "base_path": "/api", "pool": "backend", "routes": routes }]
    })
}

/// How the fake IdP answers key fetches.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outage {
    Up,
    ConnectError,
    Status500,
    NotJson,
}

/// The fake IdP: what its JWKS and discovery URLs serve (tests change it as they go).
struct IdpState {
    jwks: Value,
    cache_control: Option<String>,
    outage: Outage,
    discovery: Value,
}

/// The IdP's published keys: one per family.
fn default_jwks() -> Value {
    json!({ "keys": [
        jwk(RSA_JWK, "rsa-1"),
        jwk(P256_JWK, "ec-1"),
        jwk(P384_JWK, "ec384-1"),
        jwk(ED_JWK, "ed-1"),
    ] })
}

fn http(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> HttpResponse {
    HttpResponse {
        status,
        headers: HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.to_string()))),
        body: body.into(),
    }
}

/// A gateway over a platform whose KV holds a config, with the secrets set and the IdP
/// scripted.
struct Env {
    p: FakePlatform,
    gw: Gateway,
    idp: Rc<RefCell<IdpState>>,
}

fn env() -> Env {
    env_with(&config())
}

fn env_with(doc: &Value) -> Env {
    if let Err(e) = compile(&doc.to_string(), "test") {
        panic!("the test config does not compile: {e:#?}");
    }
    let p = FakePlatform::new();
    p.kv_put(POINTER_KEY, "v1");
    p.kv_put(&version_key("v1"), &doc.to_string());
    p.set_secret("HS_SECRET", HS_SECRET);
    p.set_secret("HS_SHORT", HS_SHORT_SECRET);
    let idp = Rc::new(RefCell::new(IdpState {
        jwks: default_jwks(),
        cache_control: None,
        outage: Outage::Up,
        discovery: json!({ "issuer": DISC_ISS, "jwks_uri": DISC_JWKS_URL }),
    }));
    let state = idp.clone();
    p.on_http(move |req, _| {
        let s = state.borrow();
        match req.url.as_str() {
            JWKS_URL | DISC_JWKS_URL => {
                let cc: Vec<(&str, &str)> = s
                    .cache_control
                    .as_deref()
                    .map(|v| ("cache-control", v))
                    .into_iter()
                    .collect();
                match s.outage {
                    Outage::Up => Ok(http(200, &cc, s.jwks.to_string())),
                    Outage::ConnectError => Err(PlatformError("connection refused".into())),
                    Outage::Status500 => Ok(http(500, &[], "internal error")),
                    Outage::NotJson => Ok(http(200, &[], "<html>maintenance</html>")),
                }
            }
            DISC_URL => Ok(http(200, &[], s.discovery.to_string())),
            _ => Ok(http(404, &[], "")),
        }
    });
    let gw = Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    });
    Env { p, gw, idp }
}

type Resp = GatewayResponse<FakeBody>;

impl Env {
    fn head(&self, path: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut h = RequestHead {
            method: "GET".into(),
            scheme: "https".into(),
            host: HOST.into(),
            path: path.into(),
            query: None,
            headers: HeaderList::new(),
            client_ip: Some("203.0.113.7".into()),
        };
        for (n, v) in headers {
            h.headers.append(n, *v);
        }
        h
    }

    fn send(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        block_on(
            self.gw
                .handle(&self.p, self.head(path, headers), FakeBody::Empty),
        )
    }

    fn bearer(&self, path: &str, token: &str) -> Resp {
        self.send(path, &[("authorization", &format!("Bearer {token}"))])
    }

    /// Many requests at once (each `Authorization` value one request), interleaved at their
    /// control-plane fetches.
    fn concurrently(&self, path: &str, authorizations: &[String]) -> Vec<Resp> {
        self.p.set_http_yields(true);
        let all = authorizations.iter().map(|a| {
            let head = self.head(path, &[("authorization", a.as_str())]);
            self.gw.handle(&self.p, head, FakeBody::Empty)
        });
        let out = block_on(join_all(all));
        self.p.set_http_yields(false);
        out
    }

    /// Control-plane requests made so far (JWKS and discovery fetches).
    fn fetches(&self) -> usize {
        self.p.http_sent().len()
    }

    fn urls(&self) -> Vec<String> {
        self.p.http_sent().into_iter().map(|r| r.url).collect()
    }

    /// The headers of the last request the backend received.
    fn last_sent(&self) -> HeaderList {
        let sent = self.p.sent();
        sent.last()
            .expect("a request reached the backend")
            .0
            .headers
            .clone()
    }

    /// Drained log lines, parsed.
    fn logs(&self) -> Vec<Value> {
        self.p
            .take_logs()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }
}

// === expectations ===

/// What a request should get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// Proxied to the backend.
    Pass,
    /// 401 with this code.
    Deny(&'static str),
    /// Another status with this code (500, 503).
    Fail(u16, &'static str),
}
use Want::{Deny, Fail, Pass};

fn problem(resp: &Resp) -> Value {
    match &resp.body {
        ResponseBody::Bytes(b) => serde_json::from_slice(b).expect("problem+json"),
        ResponseBody::Upstream(_) => Value::Null,
    }
}

/// Asserts the outcome: status, the problem's `code`, and the `WWW-Authenticate` shape
/// (`Retry-After` on 503).
#[track_caller]
fn check(resp: &Resp, want: Want, row: &str) {
    let (status, code) = match want {
        Pass => {
            if let ResponseBody::Bytes(b) = &resp.body {
                panic!(
                    "[{row}] expected the backend's answer, got {} {}",
                    resp.status,
                    String::from_utf8_lossy(b)
                );
            }
            assert_eq!(resp.status, 200, "[{row}]");
            return;
        }
        Deny(code) => (401, code),
        Fail(status, code) => (status, code),
    };
    let body = problem(resp);
    assert_eq!(
        (resp.status, body["code"].as_str()),
        (status, Some(code)),
        "[{row}] {body}"
    );
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("application/problem+json"),
        "[{row}]"
    );
    let www = resp.header("www-authenticate");
    match status {
        401 if code == "missing_credentials" => {
            assert_eq!(
                www.as_deref(),
                Some(r#"Bearer realm="edgegate""#),
                "[{row}]"
            )
        }
        401 => assert_eq!(
            www,
            Some(format!(
                r#"Bearer realm="edgegate", error="invalid_token", error_description="{code}""#
            )),
            "[{row}]"
        ),
        _ => assert_eq!(www, None, "[{row}] WWW-Authenticate only on 401"),
    }
    if code == "idp_unavailable" {
        assert_eq!(resp.header("retry-after").as_deref(), Some("10"), "[{row}]");
    }
}

// === algorithms ===

#[test]
fn every_algorithm_verifies_and_tampering_is_a_bad_signature() {
    let e = env();
    for alg in HS_ALGS.iter().chain(ASYM.iter()) {
        let (path, iss) = if alg.starts_with("HS") {
            ("/api/hs", HS_ISS)
        } else {
            ("/api/jwt", IDP_ISS)
        };
        let t = token(
            &e.p,
            alg,
            json!({ "iss": iss, "sub": format!("sub-{alg}") }),
        );
        check(&e.bearer(path, &t), Pass, alg);
        let subject = e.last_sent().get("x-edgegate-subject").map(str::to_string);
        assert_eq!(subject, Some(format!("sub-{alg}")), "{alg}");

        let forged = with_payload(&t, &claims(&e.p, json!({ "iss": iss, "sub": "admin" })));
        let row = format!("{alg} tampered payload");
        check(&e.bearer(path, &forged), Deny("bad_signature"), &row);
        let row = format!("{alg} tampered signature");
        let flipped = with_flipped_signature(&t);
        check(&e.bearer(path, &flipped), Deny("bad_signature"), &row);
    }
    // One JWKS fetch served every asymmetric algorithm.
    assert_eq!(e.urls(), vec![JWKS_URL.to_string()]);
}

#[test]
fn hmac_secrets_must_be_as_long_as_the_hash() {
    let e = env();
    let hs = |alg: &str, iss: &str, key: Key| {
        let claims = claims(&e.p, json!({ "iss": iss }));
        sign_token(&json!({ "alg": alg, "typ": "JWT" }), &claims, &key)
    };
    let short = || Key::Hmac(HS_SHORT_SECRET.as_bytes().to_vec());
    let cut = |t: String, len: usize| {
        let (h, c, s) = segments(&t);
        let sig = Base64UrlUnpadded::decode_vec(s).unwrap();
        format!("{h}.{c}.{}", b64(&sig[..len]))
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, String, Want)> = vec![
        ("32-byte secret, HS256", hs("HS256", HS_SHORT_ISS, short()), Pass),
        ("32-byte secret, HS384", hs("HS384", HS_SHORT_ISS, short()), Fail(500, "internal_error")),
        ("32-byte secret, HS512", hs("HS512", HS_SHORT_ISS, short()), Fail(500, "internal_error")),
        ("secret not set", hs("HS256", HS_UNSET_ISS, short()), Fail(500, "internal_error")),
        ("signed with another secret", hs("HS256", HS_ISS, Key::Hmac(vec![b'x'; 64])), Deny("bad_signature")),
        ("HS512 signature cut to 32 bytes", cut(hs("HS512", HS_ISS, key_for("HS512")), 32), Deny("bad_signature")),
        ("HS256 with an empty signature", cut(hs("HS256", HS_ISS, key_for("HS256")), 0), Deny("bad_signature")),
    ];
    for (name, t, want) in rows {
        check(&e.bearer("/api/hs", &t), want, name);
    }
    assert_eq!(e.fetches(), 0, "HMAC providers fetch nothing");
}

// === classic attacks ===

#[test]
fn alg_none_in_any_spelling_and_unknown_algs_are_refused() {
    let e = env();
    let c = claims(&e.p, json!({})).to_string();
    let mut rows: Vec<(String, String)> = Vec::new();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({ "alg": alg, "typ": "JWT" }).to_string();
        rows.push((
            format!("alg {alg}, no signature"),
            raw_token(&header, &c, b""),
        ));
        let some = raw_token(&header, &c, &[7u8; 64]);
        rows.push((format!("alg {alg}, some signature"), some));
    }
    // `none` spelled with a JSON escape.
    let escaped = raw_token(r#"{"alg":"\u006eone"}"#, &c, b"");
    rows.push(("alg \\u006eone".into(), escaped));
    for alg in [
        "rs256",
        "ES512",
        "HS1",
        "RS256 ",
        "",
        "EdDSA25519",
        "PS256K",
    ] {
        let header = json!({ "alg": alg, "kid": "rsa-1" }).to_string();
        rows.push((format!("alg {alg:?}"), raw_token(&header, &c, &[7u8; 256])));
    }
    for (name, t) in &rows {
        for path in ["/api/jwt", "/api/mixed", "/api/hs"] {
            let row = format!("{name} on {path}");
            check(&e.bearer(path, t), Deny("algorithm_not_allowed"), &row);
        }
    }
    assert_eq!(e.fetches(), 0, "refused before any key lookup");
    assert_eq!(e.p.verifications(), 0);
}

#[test]
fn key_confusion_and_alg_allow_list_table() {
    let e = env();
    let n = {
        let v: Value = serde_json::from_str(RSA_JWK).unwrap();
        Base64UrlUnpadded::decode_vec(v["n"].as_str().unwrap()).unwrap()
    };
    let pem = RSA_PUBLIC_PEM.as_bytes();
    // HS256 keyed with public-key bytes, as a library that takes the key "as is" would verify.
    let hs_with = |secret: &[u8], kid: Option<&str>| {
        let mut header = json!({ "alg": "HS256", "typ": "JWT" });
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let claims = claims(&e.p, json!({}));
        sign_token(&header, &claims, &Key::Hmac(secret.to_vec()))
    };
    // The kid is refused before the signature matters: a right-sized dummy signature.
    let kid_of = |alg: &str, kid: &str| {
        let claims = claims(&e.p, json!({}));
        sign_token(
            &json!({ "alg": alg, "kid": kid }),
            &claims,
            &dummy_signature(alg),
        )
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, String)> = vec![
        // `confused` allows HS256 and RS256 from a JWKS provider.
        ("HS256 keyed with the PEM public key", "/api/confused", hs_with(pem, None)),
        ("HS256 keyed with the PEM, kid rsa-1", "/api/confused", hs_with(pem, Some("rsa-1"))),
        ("HS256 keyed with the JWK n", "/api/confused", hs_with(&n, Some("rsa-1"))),
        ("HS256 keyed with the JWK JSON", "/api/confused", hs_with(RSA_JWK.as_bytes(), Some("rsa-1"))),
        ("HS256 keyed with the PEM, HS not allowed", "/api/jwt", hs_with(pem, Some("rsa-1"))),
        // A kid naming a key of another family.
        ("RS256 with the EC key's kid", "/api/jwt", kid_of("RS256", "ec-1")),
        ("PS256 with the Ed25519 key's kid", "/api/jwt", kid_of("PS256", "ed-1")),
        ("ES256 with the RSA key's kid", "/api/jwt", kid_of("ES256", "rsa-1")),
        ("ES384 with the P-256 key's kid", "/api/jwt", kid_of("ES384", "ec-1")),
        ("ES256 with the P-384 key's kid", "/api/jwt", kid_of("ES256", "ec384-1")),
        ("EdDSA with the EC key's kid", "/api/jwt", kid_of("EdDSA", "ec-1")),
        // Algorithms outside the route's allow-list.
        ("ES256 on an RS256-only route", "/api/rs-only", token(&e.p, "ES256", json!({}))),
        ("EdDSA on an RS256-only route", "/api/rs-only", token(&e.p, "EdDSA", json!({}))),
        ("ES256 on an HS-only route", "/api/hs", token(&e.p, "ES256", json!({}))),
        ("HS256 on the JWKS route", "/api/jwt", token(&e.p, "HS256", json!({ "iss": IDP_ISS }))),
    ];
    for (name, path, t) in &rows {
        check(&e.bearer(path, t), Deny("algorithm_not_allowed"), name);
    }
    assert_eq!(e.p.verifications(), 0, "no signature was even checked");
    // The route itself works for a token that fits it.
    let t = token(&e.p, "ES256", json!({}));
    check(
        &e.bearer("/api/confused", &t),
        Pass,
        "ES256 on the confused route",
    );
}

#[test]
fn a_jwk_alg_member_restricts_its_key() {
    let e = env();
    let mut rsa = jwk(RSA_JWK, "rsa-rs256");
    rsa["alg"] = "RS256".into();
    e.idp.borrow_mut().jwks = json!({ "keys": [rsa, jwk(ED_JWK, "ed-1")] });
    let t = with_kid(&e.p, "RS256", "rsa-rs256");
    check(&e.bearer("/api/jwt", &t), Pass, "the JWK's own alg");
    let t = sign_token(
        &json!({ "alg": "PS256", "kid": "rsa-rs256" }),
        &claims(&e.p, json!({})),
        &dummy_signature("PS256"),
    );
    let row = "another alg of the same family";
    check(
        &e.bearer("/api/jwt", &t),
        Deny("algorithm_not_allowed"),
        row,
    );
}

#[test]
fn kid_injection_strings_are_unknown_keys_and_fetch_nothing_more() {
    let e = env();
    check(
        &e.bearer("/api/jwt", &ed(&e.p, json!({}))),
        Pass,
        "keys loaded",
    );
    assert_eq!(e.fetches(), 1);
    let long = "k".repeat(4000);
    let kids = [
        "../../etc/passwd",
        "/dev/null",
        "' OR 1=1 --",
        "\" OR \"\"=\"",
        "ed-1\u{0}",
        "ed-1 ",
        "ED-1",
        "https://attacker.example/jwks.json",
        "$(curl attacker.example)",
        "%2e%2e%2f",
        "",
        long.as_str(),
    ];
    // Validly signed by the IdP's own Ed25519 key: only the kid is wrong.
    let tokens: Vec<String> = kids.iter().map(|k| with_kid(&e.p, "EdDSA", k)).collect();
    let name = |kid: &str| format!("kid {:?}", &kid[..kid.len().min(40)]);
    for (kid, t) in kids.iter().zip(&tokens) {
        check(&e.bearer("/api/jwt", t), Deny("unknown_key"), &name(kid));
    }
    assert_eq!(e.fetches(), 1, "no fetch within the refetch interval");
    e.p.advance(10_000);
    for (kid, t) in kids.iter().zip(&tokens) {
        let row = format!("{} after the interval", name(kid));
        check(&e.bearer("/api/jwt", t), Deny("unknown_key"), &row);
    }
    assert_eq!(e.fetches(), 2, "one refetch for the whole batch");
    assert!(e.urls().iter().all(|u| u == JWKS_URL), "{:?}", e.urls());
}

#[test]
fn keys_named_in_the_token_header_are_never_used_or_fetched() {
    let e = env();
    let attacker = |header: Value| {
        let claims = claims(&e.p, json!({}));
        sign_token(&header, &claims, &Key::P256(attacker_key()))
    };
    let mut attacker_jwk = jwk(ATTACKER_JWK, "attacker-1");
    let evil_jku = "https://attacker.example/jwks.json";
    let rsa_b = sign_token(
        &json!({ "alg": "RS256", "kid": "rsa-1", "jwk": jwk(RSA_B_JWK, "rsa-1") }),
        &claims(&e.p, json!({})),
        &Key::Rsa(rsa_b_key()),
    );
    #[rustfmt::skip]
    let rows: Vec<(&str, String, Want)> = vec![
        ("embedded jwk, no kid", attacker(json!({ "alg": "ES256", "jwk": attacker_jwk })), Deny("bad_signature")),
        ("embedded jwk, its kid", attacker(json!({ "alg": "ES256", "kid": "attacker-1", "jwk": attacker_jwk })), Deny("unknown_key")),
        ("embedded jwk, the IdP's kid", attacker(json!({ "alg": "ES256", "kid": "ec-1", "jwk": attacker_jwk })), Deny("bad_signature")),
        ("embedded RSA jwk, the IdP's kid", rsa_b, Deny("bad_signature")),
        ("jku to the attacker, attacker's kid", attacker(json!({ "alg": "ES256", "kid": "attacker-1", "jku": evil_jku })), Deny("unknown_key")),
        ("jku to the attacker, the IdP's kid", attacker(json!({ "alg": "ES256", "kid": "ec-1", "jku": evil_jku })), Deny("bad_signature")),
        ("jku on the IdP's own host", attacker(json!({ "alg": "ES256", "kid": "attacker-1", "jku": "https://idp.example.com/upload/k.json" })), Deny("unknown_key")),
        ("x5u to the attacker", attacker(json!({ "alg": "ES256", "kid": "attacker-1", "x5u": "https://attacker.example/cert.pem" })), Deny("unknown_key")),
        ("x5c with the attacker's chain", attacker(json!({ "alg": "ES256", "x5c": ["MIIBszCCAVmgAwIBAgIUattacker"] })), Deny("bad_signature")),
    ];
    for (name, t, want) in &rows {
        check(&e.bearer("/api/jwt", t), *want, name);
    }
    // The same headers on a token the IdP really signed: ignored, so it passes.
    attacker_jwk["kid"] = "ec-1".into();
    let header = json!({ "alg": "ES256", "kid": "ec-1", "jku": evil_jku,
                         "x5u": "https://attacker.example/cert.pem", "jwk": attacker_jwk });
    let genuine = sign_token(&header, &claims(&e.p, json!({})), &key_for("ES256"));
    check(
        &e.bearer("/api/jwt", &genuine),
        Pass,
        "IdP-signed, with key headers",
    );
    assert_eq!(
        e.urls(),
        vec![JWKS_URL.to_string()],
        "only the configured JWKS"
    );
}

#[test]
fn critical_headers_are_refused() {
    let e = env();
    #[rustfmt::skip]
    let rows = [
        ("crit exp", json!({ "alg": "EdDSA", "kid": "ed-1", "crit": ["exp"], "exp": 1 })),
        ("crit empty", json!({ "alg": "EdDSA", "kid": "ed-1", "crit": [] })),
        ("crit b64", json!({ "alg": "EdDSA", "kid": "ed-1", "crit": ["b64"], "b64": false })),
        ("b64 false without crit", json!({ "alg": "EdDSA", "kid": "ed-1", "b64": false })),
    ];
    for (name, header) in rows {
        let t = sign_token(&header, &claims(&e.p, json!({})), &key_for("EdDSA"));
        check(
            &e.bearer("/api/jwt", &t),
            Deny("unsupported_critical_header"),
            name,
        );
    }
}

// === claims ===

#[test]
fn claim_checks_table() {
    let e = env();
    let now = now_s(&e.p);
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Value, Want)> = vec![
        ("valid", "/api/jwt", json!({}), Pass),
        // exp, with the default leeway of 60 s and with none
        ("expired beyond the leeway", "/api/jwt", json!({ "exp": now - 61 }), Deny("token_expired")),
        ("expired at the leeway's edge", "/api/jwt", json!({ "exp": now - 60 }), Pass),
        ("expired within the leeway", "/api/jwt", json!({ "exp": now - 30, "iat": now - 90 }), Pass),
        ("long expired", "/api/jwt", json!({ "exp": 1_000_000_000, "iat": null }), Deny("token_expired")),
        ("no exp", "/api/jwt", json!({ "exp": null }), Deny("missing_claim")),
        ("exp a string", "/api/jwt", json!({ "exp": "2099-01-01" }), Deny("malformed_token")),
        ("leeway 0: exp 1 s ago", "/api/strict", json!({ "exp": now - 1 }), Deny("token_expired")),
        ("leeway 0: exp now", "/api/strict", json!({ "exp": now }), Pass),
        // nbf and iat
        ("nbf beyond the leeway", "/api/jwt", json!({ "nbf": now + 61 }), Deny("token_not_yet_valid")),
        ("nbf within the leeway", "/api/jwt", json!({ "nbf": now + 60 }), Pass),
        ("nbf past", "/api/jwt", json!({ "nbf": now - 10 }), Pass),
        ("iat in the future", "/api/jwt", json!({ "iat": now + 61 }), Deny("token_not_yet_valid")),
        ("iat within the leeway", "/api/jwt", json!({ "iat": now + 60 }), Pass),
        ("leeway 0: nbf in 1 s", "/api/strict", json!({ "nbf": now + 1 }), Deny("token_not_yet_valid")),
        ("leeway 0: iat in 1 s", "/api/strict", json!({ "iat": now + 1 }), Deny("token_not_yet_valid")),
        // aud
        ("aud another API", "/api/jwt", json!({ "aud": "api://other" }), Deny("wrong_audience")),
        ("aud array without ours", "/api/jwt", json!({ "aud": ["api://a", "api://b"] }), Deny("wrong_audience")),
        ("aud array with ours", "/api/jwt", json!({ "aud": ["api://a", AUD] }), Pass),
        ("aud empty array", "/api/jwt", json!({ "aud": [] }), Deny("wrong_audience")),
        ("no aud", "/api/jwt", json!({ "aud": null }), Deny("wrong_audience")),
        ("aud with a trailing space", "/api/jwt", json!({ "aud": format!("{AUD} ") }), Deny("wrong_audience")),
        ("aud differing in case", "/api/jwt", json!({ "aud": AUD.to_uppercase() }), Deny("wrong_audience")),
        ("aud a number", "/api/jwt", json!({ "aud": 42 }), Deny("malformed_token")),
        ("route of another audience", "/api/other-aud", json!({}), Deny("wrong_audience")),
        ("route checking no audience", "/api/any-aud", json!({ "aud": null }), Pass),
        // iss
        ("another issuer", "/api/jwt", json!({ "iss": "https://evil.example.com/" }), Deny("wrong_issuer")),
        ("no issuer", "/api/jwt", json!({ "iss": null }), Deny("wrong_issuer")),
        ("issuer without the trailing slash", "/api/jwt", json!({ "iss": "https://idp.example.com" }), Deny("wrong_issuer")),
        ("issuer in upper case", "/api/jwt", json!({ "iss": IDP_ISS.to_uppercase() }), Deny("wrong_issuer")),
        ("issuer of a provider the route does not list", "/api/jwt", json!({ "iss": HS_ISS }), Deny("wrong_issuer")),
        ("issuer a number", "/api/jwt", json!({ "iss": 7 }), Deny("malformed_token")),
        // required claims and claim types
        ("required jti missing", "/api/jti", json!({}), Deny("missing_claim")),
        ("required jti present", "/api/jti", json!({ "jti": "j-1" }), Pass),
        ("sub a number", "/api/jwt", json!({ "sub": 42 }), Deny("malformed_token")),
        ("scope a number", "/api/jwt", json!({ "scope": 42 }), Deny("malformed_token")),
    ];
    for (name, path, patch, want) in rows {
        let t = ed(&e.p, patch);
        check(&e.bearer(path, &t), want, name);
    }
}

// === structure, size, credentials ===

#[test]
fn malformed_tokens_table() {
    let e = env();
    let valid = ed(&e.p, json!({}));
    let (h, c, s) = segments(&valid);
    let c_json = claims(&e.p, json!({})).to_string();
    let sig = [0xfbu8; 64];
    let std_sig = Base64Unpadded::encode_string(&sig);
    assert!(std_sig.contains('+') && std_sig.contains('/'));
    // A header whose standard base64 has a '/' in it.
    let h_json = r#"{"alg":"EdDSA","kid":"ed-1","x":"???"}"#;
    let std_header = Base64Unpadded::encode_string(h_json.as_bytes());
    assert!(std_header.contains('/'), "{std_header}");
    let hdr = |text: &str| raw_token(text, &c_json, &sig);
    let cl = |text: &str| raw_token(r#"{"alg":"EdDSA","kid":"ed-1"}"#, text, &sig);
    #[rustfmt::skip]
    let rows: Vec<(&str, String)> = vec![
        ("one part", h.to_string()),
        ("two parts", format!("{h}.{c}")),
        ("four parts", format!("{h}.{c}.{s}.{s}")),
        ("five parts (JWE)", format!("{h}.{c}.{s}.{s}.{s}")),
        ("empty parts", "..".into()),
        ("a dot", ".".into()),
        ("padded header", format!("{h}==.{c}.{s}")),
        ("padded payload", format!("{h}.{c}=.{s}")),
        ("padded signature", format!("{h}.{c}.{s}==")),
        ("standard base64 signature (+/)", format!("{h}.{c}.{std_sig}")),
        ("standard base64 header (/)", format!("{std_header}.{c}.{s}")),
        ("'!' in the token", format!("{h}.{c}.{s}!")),
        ("'*' in the token", format!("{h}*.{c}.{s}")),
        ("'%' in the token", format!("{h}.{c}%2E.{s}")),
        ("non-ASCII in the token", format!("{h}.{c}é.{s}")),
        ("a comma in the token", format!("{h},{c}.{s}")),
        ("header not JSON", hdr("not json")),
        ("header a JSON array", hdr(r#"["EdDSA"]"#)),
        ("header without alg", hdr(r#"{"kid":"ed-1"}"#)),
        ("alg a number", hdr(r#"{"alg":256,"kid":"ed-1"}"#)),
        ("alg null", hdr(r#"{"alg":null}"#)),
        ("alg twice (none, then EdDSA)", hdr(r#"{"alg":"none","alg":"EdDSA","kid":"ed-1"}"#)),
        ("kid twice", hdr(r#"{"alg":"EdDSA","kid":"x","kid":"ed-1"}"#)),
        ("kid a number", hdr(r#"{"alg":"EdDSA","kid":1}"#)),
        ("cty not JSON", hdr(r#"{"alg":"EdDSA","kid":"ed-1","cty":"JWE"}"#)),
        ("header bytes not UTF-8", format!("{}.{c}.{s}", b64([0xff, 0xfe, 0x7b]))),
        ("claims not JSON", cl("claims")),
        ("claims a JSON array", cl("[1,2]")),
        ("claims a JSON string", cl(r#""sub""#)),
        ("claims truncated", cl(&c_json[..c_json.len() - 1])),
    ];
    for (name, t) in &rows {
        check(&e.bearer("/api/jwt", t), Deny("malformed_token"), name);
        let row = format!("{name} (mixed route)");
        check(&e.bearer("/api/mixed", t), Deny("malformed_token"), &row);
    }
    assert_eq!(e.fetches(), 0, "malformed tokens never reach the key store");
    // Well-formed, but the signature is empty or of the wrong length: a bad signature.
    let empty = format!("{h}.{c}.");
    check(
        &e.bearer("/api/jwt", &empty),
        Deny("bad_signature"),
        "empty signature",
    );
    let short = format!("{h}.{c}.{}", b64([1u8; 63]));
    check(
        &e.bearer("/api/jwt", &short),
        Deny("bad_signature"),
        "63-byte EdDSA signature",
    );
}

/// Request header fields of a row.
type Headers = Vec<(&'static str, String)>;

#[test]
fn credentials_and_size_table() {
    let e = env();
    let valid = ed(&e.p, json!({}));
    let big = ed(&e.p, json!({ "pad": "x".repeat(9000) }));
    assert!(big.len() > 8192);
    let bearer = format!("Bearer {valid}");
    let basic = "Basic dXNlcjpwYXNz".to_string();
    let one = |v: String| vec![("authorization", v)];
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Headers, Want)> = vec![
        ("no Authorization", "/api/jwt", vec![], Deny("missing_credentials")),
        ("Basic", "/api/jwt", one(basic.clone()), Deny("missing_credentials")),
        ("Digest", "/api/jwt", one("Digest username=\"u\"".into()), Deny("missing_credentials")),
        ("token in another scheme", "/api/jwt", one(format!("Token {valid}")), Deny("missing_credentials")),
        ("bare token, no scheme", "/api/jwt", one(valid.clone()), Deny("missing_credentials")),
        ("Bearer without a token", "/api/jwt", one("Bearer".into()), Deny("malformed_token")),
        ("Bearer and spaces", "/api/jwt", one("Bearer    ".into()), Deny("malformed_token")),
        ("two Authorization fields", "/api/jwt", vec![("authorization", bearer.clone()), ("authorization", bearer.clone())], Deny("malformed_token")),
        ("Bearer and Basic fields", "/api/jwt", vec![("authorization", bearer.clone()), ("authorization", basic.clone())], Deny("malformed_token")),
        ("two tokens in one field", "/api/jwt", one(format!("{bearer}, {bearer}")), Deny("malformed_token")),
        ("lower-case scheme", "/api/jwt", one(format!("bearer {valid}")), Pass),
        ("upper-case scheme, extra spaces", "/api/jwt", one(format!("  BEARER   {valid}  ")), Pass),
        ("token over 8192 bytes", "/api/jwt", one(format!("Bearer {big}")), Deny("token_too_large")),
        ("junk over 8192 bytes", "/api/jwt", one(format!("Bearer {}", "a".repeat(8193))), Deny("token_too_large")),
        ("normal token over a 256-byte limit", "/api/small", one(bearer.clone()), Deny("token_too_large")),
        ("oversized on a mixed route", "/api/mixed", one(format!("Bearer {big}")), Deny("token_too_large")),
    ];
    for (name, path, headers, want) in &rows {
        let hs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        check(&e.send(path, &hs), *want, name);
    }
}

/// The auth method the backend is told (`x-edgegate-auth-method`).
type Method = Option<&'static str>;

#[test]
fn anonymous_and_mixed_routes() {
    let e = env();
    let valid = ed(&e.p, json!({}));
    let expired = ed(&e.p, json!({ "exp": now_s(&e.p) - 3600 }));
    let forged = with_flipped_signature(&valid);
    let none = raw_token(
        r#"{"alg":"none"}"#,
        &claims(&e.p, json!({})).to_string(),
        b"",
    );
    let unknown = with_kid(&e.p, "EdDSA", "nope");
    let b = |t: &str| Some(format!("Bearer {t}"));
    let basic = Some("Basic dXNlcjpwYXNz".to_string());
    // (name, path, Authorization, outcome, the auth method the backend is told)
    #[rustfmt::skip]
    let rows: Vec<(&str, &str, Option<String>, Want, Method)> = vec![
        ("anonymous route, no token", "/api/anon", None, Pass, Some("anonymous")),
        ("anonymous route, junk JWT ignored", "/api/anon", b("not.a.jwt"), Pass, Some("anonymous")),
        ("anonymous route, expired token ignored", "/api/anon", b(&expired), Pass, Some("anonymous")),
        ("anonymous route, valid token not used", "/api/anon", b(&valid), Pass, Some("anonymous")),
        ("anonymous route, Basic", "/api/anon", basic.clone(), Pass, Some("anonymous")),
        ("route without auth, token ignored", "/api/open", b(&valid), Pass, None),
        ("mixed, no token", "/api/mixed", None, Pass, Some("anonymous")),
        ("mixed, Basic", "/api/mixed", basic.clone(), Pass, Some("anonymous")),
        ("mixed, valid token", "/api/mixed", b(&valid), Pass, Some("jwt")),
        ("mixed, expired token", "/api/mixed", b(&expired), Deny("token_expired"), None),
        ("mixed, forged signature", "/api/mixed", b(&forged), Deny("bad_signature"), None),
        ("mixed, alg none", "/api/mixed", b(&none), Deny("algorithm_not_allowed"), None),
        ("mixed, unknown kid", "/api/mixed", b(&unknown), Deny("unknown_key"), None),
        ("mixed, junk", "/api/mixed", b("not.a.jwt"), Deny("malformed_token"), None),
        ("jwt only, no token", "/api/jwt", None, Deny("missing_credentials"), None),
    ];
    for (i, (name, path, auth, want, method)) in rows.iter().enumerate() {
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        let before = e.p.sent().len();
        check(&e.send(path, &headers), *want, name);
        if *want == Pass {
            let sent = e.last_sent();
            assert_eq!(sent.get("x-edgegate-auth-method"), *method, "[{name}]");
            let jwt = *method == Some("jwt");
            assert_eq!(sent.get("x-edgegate-subject").is_some(), jwt, "[{name}]");
            let passed_on = sent.get("authorization");
            assert_eq!(
                passed_on,
                auth.as_deref(),
                "[{name}] Authorization is passed on"
            );
        } else {
            assert_eq!(
                e.p.sent().len(),
                before,
                "[{name}] nothing reached the backend"
            );
        }
        if i < 6 {
            assert_eq!(e.fetches(), 0, "[{name}] anonymous routes fetch no keys");
        }
    }
}

#[test]
fn an_anonymous_only_route_ignores_even_a_malformed_authorization() {
    let e = env();
    let rows: [(&str, &[(&str, &str)]); 4] = [
        (
            "bearer token with a space",
            &[("authorization", "Bearer a b")],
        ),
        ("Bearer without a token", &[("authorization", "Bearer")]),
        ("bearer token with '!'", &[("authorization", "Bearer abc!")]),
        (
            "two Authorization fields",
            &[
                ("authorization", "Bearer a.b.c"),
                ("authorization", "Bearer d.e.f"),
            ],
        ),
    ];
    for (name, headers) in rows {
        check(&e.send("/api/anon", headers), Pass, name);
        let method = e
            .last_sent()
            .get("x-edgegate-auth-method")
            .map(str::to_string);
        assert_eq!(method.as_deref(), Some("anonymous"), "[{name}]");
        // A route without an auth policy passes them through as well.
        check(&e.send("/api/open", headers), Pass, name);
    }
}

// === JWKS ===

#[test]
fn keys_are_fetched_once_and_reused() {
    let e = env();
    for (i, alg) in ["EdDSA", "ES256", "ES384", "EdDSA", "ES256"]
        .iter()
        .enumerate()
    {
        let t = token(&e.p, alg, json!({ "sub": format!("u{i}") }));
        check(&e.bearer("/api/jwt", &t), Pass, alg);
    }
    let sent = e.p.http_sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].method.as_str(), sent[0].url.as_str()),
        ("GET", JWKS_URL)
    );
    assert_eq!(sent[0].timeout_ms, 5000);
    let logs = e.logs();
    let fetched: Vec<&Value> = logs
        .iter()
        .filter(|l| l["event"] == "jwks_fetched")
        .collect();
    assert_eq!(fetched.len(), 1);
    assert_eq!(
        (&fetched[0]["provider"], &fetched[0]["keys"]),
        (&json!("idp"), &json!(4))
    );
}

#[test]
fn cache_control_max_age_is_clamped_to_the_provider_ttl() {
    // (Cache-Control, effective TTL in s) with jwks_min_ttl_s 60 and jwks_max_ttl_s 3600.
    let rows: [(Option<&str>, u64); 6] = [
        (Some("max-age=300"), 300),
        (Some("public, max-age=120, must-revalidate"), 120),
        (Some("max-age=10"), 60),
        (Some("max-age=99999"), 3600),
        (Some("no-store"), 60),
        (None, 60),
    ];
    for (cc, ttl) in rows {
        let row = format!("{cc:?}");
        let e = env();
        e.idp.borrow_mut().cache_control = cc.map(str::to_string);
        // A new token each time: a cached verified token needs no key.
        let mut n = 0;
        let mut fresh = |e: &Env| {
            n += 1;
            ed(&e.p, json!({ "jti": format!("t{n}") }))
        };
        check(&e.bearer("/api/jwt", &fresh(&e)), Pass, &row);
        assert_eq!(e.fetches(), 1, "{row}");
        e.p.advance(ttl * 1000 - 1000);
        check(&e.bearer("/api/jwt", &fresh(&e)), Pass, &row);
        assert_eq!(e.fetches(), 1, "{row}: still fresh 1 s before the TTL");
        e.p.advance(1000);
        check(&e.bearer("/api/jwt", &fresh(&e)), Pass, &row);
        assert_eq!(e.fetches(), 2, "{row}: refetched at the TTL");
    }
}

#[test]
fn unknown_kid_refetches_at_most_once_per_interval() {
    let e = env();
    let unknown = |kid: &str| e.bearer("/api/jwt", &with_kid(&e.p, "EdDSA", kid));
    check(&e.bearer("/api/jwt", &ed(&e.p, json!({}))), Pass, "load");
    assert_eq!(e.fetches(), 1);

    e.p.advance(10_000);
    check(&unknown("a"), Deny("unknown_key"), "unknown kid a");
    assert_eq!(e.fetches(), 2, "exactly one refetch for an unknown kid");
    e.p.advance(1_000);
    check(&unknown("b"), Deny("unknown_key"), "unknown kid b");
    check(&unknown("a"), Deny("unknown_key"), "unknown kid a again");
    assert_eq!(e.fetches(), 2, "no fetch within the interval");
    e.p.advance(8_999);
    check(
        &unknown("c"),
        Deny("unknown_key"),
        "1 ms before the interval",
    );
    assert_eq!(e.fetches(), 2);
    e.p.advance(1);
    check(&unknown("c"), Deny("unknown_key"), "at the interval");
    assert_eq!(e.fetches(), 3, "one fetch once the interval has passed");
    // Known keys kept working throughout, without fetches.
    let t = ed(&e.p, json!({ "jti": "x" }));
    check(&e.bearer("/api/jwt", &t), Pass, "known kid");
    assert_eq!(e.fetches(), 3);
}

#[test]
fn key_rotation_new_kid_accepted_removed_kid_refused() {
    let e = env();
    e.idp.borrow_mut().jwks = json!({ "keys": [jwk(P256_JWK, "ec-1")] });
    let es = |kid: &str, key: Key, jti: &str| {
        let claims = claims(&e.p, json!({ "jti": jti, "exp": now_s(&e.p) + 3600 }));
        sign_token(&json!({ "alg": "ES256", "kid": kid }), &claims, &key)
    };
    let old = es("ec-1", Key::P256(p256_key()), "old");
    check(&e.bearer("/api/jwt", &old), Pass, "old key");
    assert_eq!((e.fetches(), e.p.verifications()), (1, 1));

    // The IdP adds a key: a token of the new kid causes one refetch and passes.
    e.p.advance(10_000);
    let both = json!({ "keys": [jwk(P256_JWK, "ec-1"), jwk(P256_B_JWK, "ec-2")] });
    e.idp.borrow_mut().jwks = both;
    let new = es("ec-2", Key::P256(p256_b_key()), "new");
    check(
        &e.bearer("/api/jwt", &new),
        Pass,
        "new key after one refetch",
    );
    assert_eq!(e.fetches(), 2);
    check(&e.bearer("/api/jwt", &old), Pass, "old token still cached");
    assert_eq!(e.p.verifications(), 2, "the old token came from the cache");

    // The IdP drops the old key; the next fetch (TTL over) learns it.
    e.idp.borrow_mut().jwks = json!({ "keys": [jwk(P256_B_JWK, "ec-2")] });
    e.p.advance(60_000);
    let newer = es("ec-2", Key::P256(p256_b_key()), "n2");
    check(&e.bearer("/api/jwt", &newer), Pass, "refetch on TTL");
    assert_eq!(e.fetches(), 3);
    // The cached old token is verified again, and its key is gone.
    check(
        &e.bearer("/api/jwt", &old),
        Deny("unknown_key"),
        "old token after removal",
    );
    assert_eq!(e.fetches(), 3, "no extra fetch within the interval");
    check(
        &e.bearer("/api/jwt", &new),
        Pass,
        "new token still accepted",
    );
}

#[test]
fn idp_outage_serves_cached_keys_up_to_max_stale() {
    for outage in [Outage::ConnectError, Outage::Status500, Outage::NotJson] {
        let row = format!("{outage:?}");
        let e = env();
        let mut n = 0;
        let mut fresh = |e: &Env| {
            n += 1;
            ed(&e.p, json!({ "jti": format!("t{n}") }))
        };
        check(&e.bearer("/api/jwt", &fresh(&e)), Pass, &row);
        e.idp.borrow_mut().outage = outage;
        // TTL (60 s) over: a fetch is tried, fails, and the cached keys keep serving.
        e.p.advance(61_000);
        check(
            &e.bearer("/api/jwt", &fresh(&e)),
            Pass,
            &format!("{row}: stale keys"),
        );
        assert_eq!(e.fetches(), 2, "{row}");
        let logs = e.logs();
        let failed: Vec<&Value> = logs
            .iter()
            .filter(|l| l["event"] == "jwks_fetch_failed")
            .collect();
        assert_eq!(failed.len(), 1, "{row}");
        assert_eq!(failed[0]["serving_cached"], true, "{row}");
        // max_stale is 600 s past the TTL: 1 s before, still served; then 503.
        e.p.advance(598_000);
        let at = format!("{row}: max_stale - 1 s");
        check(&e.bearer("/api/jwt", &fresh(&e)), Pass, &at);
        e.p.advance(1_000);
        let past = format!("{row}: past max_stale");
        check(
            &e.bearer("/api/jwt", &fresh(&e)),
            Fail(503, "idp_unavailable"),
            &past,
        );
        // The IdP comes back: after the refetch interval the keys are fetched again.
        e.idp.borrow_mut().outage = Outage::Up;
        e.p.advance(10_000);
        check(
            &e.bearer("/api/jwt", &fresh(&e)),
            Pass,
            &format!("{row}: recovered"),
        );
    }
}

#[test]
fn a_cached_token_is_refused_once_keys_are_past_max_stale() {
    let e = env();
    let t = ed(&e.p, json!({ "exp": now_s(&e.p) + 7200 }));
    check(&e.bearer("/api/jwt", &t), Pass, "verified");
    e.idp.borrow_mut().outage = Outage::ConnectError;
    e.p.advance(61_000 + 600_000);
    let fresh = ed(&e.p, json!({ "jti": "fresh" }));
    let row = "a new token past max_stale";
    check(
        &e.bearer("/api/jwt", &fresh),
        Fail(503, "idp_unavailable"),
        row,
    );
    let row = "the cached token past max_stale";
    check(&e.bearer("/api/jwt", &t), Fail(503, "idp_unavailable"), row);
}

#[test]
fn idp_down_with_no_keys_ever_is_503() {
    for outage in [Outage::ConnectError, Outage::Status500, Outage::NotJson] {
        let row = format!("{outage:?}");
        let e = env();
        e.idp.borrow_mut().outage = outage;
        let t = ed(&e.p, json!({}));
        check(
            &e.bearer("/api/jwt", &t),
            Fail(503, "idp_unavailable"),
            &row,
        );
        check(
            &e.bearer("/api/jwt", &t),
            Fail(503, "idp_unavailable"),
            &row,
        );
        assert_eq!(e.fetches(), 1, "{row}: one try per refetch interval");
        e.p.advance(10_000);
        check(
            &e.bearer("/api/jwt", &t),
            Fail(503, "idp_unavailable"),
            &row,
        );
        assert_eq!(e.fetches(), 2, "{row}");
        // Refusals that need no key are still 401s.
        let t = ed(&e.p, json!({ "aud": "x" }));
        check(&e.bearer("/api/jwt", &t), Deny("wrong_audience"), &row);
    }
}

#[test]
fn oidc_discovery_table() {
    let unavailable = Fail(503, "idp_unavailable");
    #[rustfmt::skip]
    let rows: Vec<(&str, Value, Want, Vec<&str>)> = vec![
        ("discovery, then the JWKS", json!({ "issuer": DISC_ISS, "jwks_uri": DISC_JWKS_URL }), Pass, vec![DISC_URL, DISC_JWKS_URL]),
        ("issuer mismatch", json!({ "issuer": "https://evil.example.com", "jwks_uri": DISC_JWKS_URL }), unavailable, vec![DISC_URL]),
        ("issuer with a trailing slash", json!({ "issuer": format!("{DISC_ISS}/"), "jwks_uri": DISC_JWKS_URL }), unavailable, vec![DISC_URL]),
        ("no issuer", json!({ "jwks_uri": DISC_JWKS_URL }), unavailable, vec![DISC_URL]),
        ("no jwks_uri", json!({ "issuer": DISC_ISS }), unavailable, vec![DISC_URL]),
        ("http jwks_uri", json!({ "issuer": DISC_ISS, "jwks_uri": "http://login.example.org/keys" }), unavailable, vec![DISC_URL]),
    ];
    for (name, discovery, want, urls) in rows {
        let e = env();
        e.idp.borrow_mut().discovery = discovery;
        let t = token(&e.p, "ES256", json!({ "iss": DISC_ISS }));
        check(&e.bearer("/api/disc", &t), want, name);
        assert_eq!(e.urls(), urls, "{name}");
        if want == Pass {
            // A later refetch goes straight to the known jwks_uri.
            e.p.advance(60_000);
            let t = token(&e.p, "ES256", json!({ "iss": DISC_ISS, "jti": "2" }));
            check(&e.bearer("/api/disc", &t), Pass, name);
            let want_urls = vec![DISC_URL, DISC_JWKS_URL, DISC_JWKS_URL];
            assert_eq!(e.urls(), want_urls, "{name}");
        }
    }
}

#[test]
fn unusable_jwks_entries_are_skipped_and_the_rest_serve() {
    let e = env();
    let with = |mut key: Value, patch: Value| {
        merge(&mut key, patch);
        key
    };
    let ec_d = b64(p256_key().to_bytes());
    let ed_d = b64(ed_key().to_bytes());
    #[rustfmt::skip]
    let keys = json!([
        with(jwk(RSA_JWK, "enc-1"), json!({ "use": "enc" })),
        jwk(RSA1024_JWK, "small-1"),
        with(jwk(P256_JWK, "priv-1"), json!({ "d": ec_d })),
        with(jwk(ED_JWK, "priv-ed"), json!({ "d": ed_d })),
        with(jwk(P256_JWK, "ops-1"), json!({ "key_ops": ["encrypt"] })),
        with(jwk(P256_JWK, "alg-1"), json!({ "alg": "RS256" })),
        with(jwk(P256_JWK, "alg-2"), json!({ "alg": "ES999" })),
        { "kty": "XYZ", "kid": "weird-1", "x": "abc" },
        { "kty": "oct", "kid": "oct-1", "k": b64(HS_SECRET) },
        { "kty": "EC", "crv": "P-521", "kid": "p521-1", "x": "AA", "y": "AA" },
        "not an object",
        jwk(ED_JWK, "ed-1"),
        jwk(P256_JWK, "ec-1"),
    ]);
    e.idp.borrow_mut().jwks = json!({ "keys": keys });
    let signed = |alg: &str, kid: &str, key: Key| {
        sign_token(
            &json!({ "alg": alg, "kid": kid }),
            &claims(&e.p, json!({})),
            &key,
        )
    };
    let p256 = || Key::P256(p256_key());
    #[rustfmt::skip]
    let rows: Vec<(&str, String, Want)> = vec![
        ("ed-1 usable", signed("EdDSA", "ed-1", Key::Ed25519(ed_key())), Pass),
        ("ec-1 usable", signed("ES256", "ec-1", p256()), Pass),
        ("use: enc", signed("RS256", "enc-1", Key::Rsa(rsa_key())), Deny("unknown_key")),
        ("RSA 1024", signed("RS256", "small-1", Key::Rsa(rsa1024_key())), Deny("unknown_key")),
        ("EC private key", signed("ES256", "priv-1", p256()), Deny("unknown_key")),
        ("Ed25519 private key", signed("EdDSA", "priv-ed", Key::Ed25519(ed_key())), Deny("unknown_key")),
        ("key_ops without verify", signed("ES256", "ops-1", p256()), Deny("unknown_key")),
        ("alg of another family", signed("ES256", "alg-1", p256()), Deny("unknown_key")),
        ("unknown alg", signed("ES256", "alg-2", p256()), Deny("unknown_key")),
        ("unknown kty", signed("ES256", "weird-1", p256()), Deny("unknown_key")),
        ("oct key", signed("ES256", "oct-1", p256()), Deny("unknown_key")),
        ("P-521", signed("ES256", "p521-1", p256()), Deny("unknown_key")),
    ];
    for (name, t, want) in &rows {
        check(&e.bearer("/api/jwt", t), *want, name);
    }
    assert_eq!(e.fetches(), 1);
    let logs = e.logs();
    let fetched = logs
        .iter()
        .find(|l| l["event"] == "jwks_fetched")
        .expect("a jwks_fetched event");
    assert_eq!(fetched["keys"], 2, "{fetched}");
    let skipped = fetched["skipped"].as_array().map(Vec::len);
    assert_eq!(skipped, Some(11), "{fetched}");
}

#[test]
fn a_jwks_that_is_not_a_key_set_is_an_outage() {
    for body in [
        json!({ "keys": "nope" }),
        json!([]),
        json!({ "no_keys": [] }),
    ] {
        let e = env();
        e.idp.borrow_mut().jwks = body.clone();
        let t = ed(&e.p, json!({}));
        check(
            &e.bearer("/api/jwt", &t),
            Fail(503, "idp_unavailable"),
            &body.to_string(),
        );
    }
    // An empty key set is a key set: every kid is unknown.
    let e = env();
    e.idp.borrow_mut().jwks = json!({ "keys": [] });
    let t = ed(&e.p, json!({}));
    check(&e.bearer("/api/jwt", &t), Deny("unknown_key"), "empty set");
}

// === single-flight ===

#[test]
fn fifty_concurrent_requests_with_a_new_kid_share_one_fetch() {
    let e = env();
    e.idp.borrow_mut().jwks = json!({ "keys": [jwk(ED_JWK, "ed-1")] });
    check(&e.bearer("/api/jwt", &ed(&e.p, json!({}))), Pass, "load");
    assert_eq!(e.fetches(), 1);
    e.p.advance(10_000);
    // The IdP publishes kid ed-2; 50 requests with it arrive at once.
    let both = json!({ "keys": [jwk(ED_JWK, "ed-1"), jwk(ED_JWK, "ed-2")] });
    e.idp.borrow_mut().jwks = both;
    let auths: Vec<String> = (0..50)
        .map(|i| {
            let claims = claims(&e.p, json!({ "sub": format!("u{i}") }));
            let header = json!({ "alg": "EdDSA", "kid": "ed-2" });
            format!("Bearer {}", sign_token(&header, &claims, &key_for("EdDSA")))
        })
        .collect();
    let responses = e.concurrently("/api/jwt", &auths);
    for (i, r) in responses.iter().enumerate() {
        check(r, Pass, &format!("request {i}"));
    }
    assert_eq!(
        e.fetches(),
        2,
        "exactly one fetch for 50 concurrent requests"
    );
    assert_eq!(e.p.sent().len(), 51);
}

#[test]
fn concurrent_requests_share_a_failing_fetch_too() {
    let e = env();
    e.idp.borrow_mut().outage = Outage::Status500;
    let auths = vec![format!("Bearer {}", ed(&e.p, json!({}))); 20];
    for r in e.concurrently("/api/jwt", &auths) {
        check(&r, Fail(503, "idp_unavailable"), "shared failure");
    }
    assert_eq!(e.fetches(), 1);
}

#[test]
fn a_thousand_random_unknown_kids_over_30_s_fetch_once_per_interval() {
    let e = env();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut random_kid = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        format!("kid-{x:016x}")
    };
    let mut refused = 0;
    // 100 batches of 10 concurrent requests, 300 ms apart: 30 s. The kid is looked up before
    // the signature is checked, so the tokens need no real signature.
    for _ in 0..100 {
        let auths: Vec<String> = (0..10)
            .map(|_| {
                let header = json!({ "alg": "EdDSA", "kid": random_kid() }).to_string();
                let claims = claims(&e.p, json!({})).to_string();
                format!("Bearer {}", raw_token(&header, &claims, &[0u8; 64]))
            })
            .collect();
        for r in e.concurrently("/api/jwt", &auths) {
            check(&r, Deny("unknown_key"), "random kid");
            refused += 1;
        }
        e.p.advance(300);
    }
    assert_eq!(refused, 1000);
    let fetches = e.fetches();
    assert!(
        (3..=4).contains(&fetches),
        "{fetches} fetches in 30 s with a 10 s refetch interval"
    );
    assert_eq!(e.p.verifications(), 0);
}

// === verified-token cache ===

#[test]
fn verified_tokens_are_cached_but_claims_are_checked_every_time() {
    let e = env();
    let exp = now_s(&e.p) + 120;
    let t = token(&e.p, "ES256", json!({ "exp": exp }));
    check(&e.bearer("/api/jwt", &t), Pass, "first");
    assert_eq!(e.p.verifications(), 1);
    check(&e.bearer("/api/jwt", &t), Pass, "second");
    check(
        &e.bearer("/api/mixed", &t),
        Pass,
        "another route, same rules",
    );
    assert_eq!(e.p.verifications(), 1, "the signature is checked once");

    let rows: [(&str, Want); 4] = [
        ("/api/other-aud", Deny("wrong_audience")),
        ("/api/rs-only", Deny("algorithm_not_allowed")),
        ("/api/jti", Deny("missing_claim")),
        ("/api/hs", Deny("algorithm_not_allowed")),
    ];
    for (path, want) in rows {
        check(
            &e.bearer(path, &t),
            want,
            &format!("cached token on {path}"),
        );
    }
    assert_eq!(e.p.verifications(), 1);

    // exp + leeway (60 s) passes: refused, cached or not.
    e.p.advance((120 + 60) * 1000);
    check(&e.bearer("/api/jwt", &t), Pass, "at exp + leeway");
    e.p.advance(1000);
    check(
        &e.bearer("/api/jwt", &t),
        Deny("token_expired"),
        "after exp + leeway",
    );
    e.p.advance(3_600_000);
    check(
        &e.bearer("/api/jwt", &t),
        Deny("token_expired"),
        "long after exp",
    );
    assert_eq!(e.p.verifications(), 1);
}

#[test]
fn a_token_that_failed_is_not_cached() {
    let e = env();
    let forged = with_flipped_signature(&token(&e.p, "ES256", json!({})));
    for i in 0..3 {
        let row = format!("try {i}");
        check(&e.bearer("/api/jwt", &forged), Deny("bad_signature"), &row);
    }
    assert_eq!(e.p.verifications(), 3, "each try is verified (and fails)");
}

// === identity propagation and logs ===

const IDENTITY: [&str; 5] = [
    "x-edgegate-subject",
    "x-edgegate-issuer",
    "x-edgegate-application",
    "x-edgegate-scopes",
    "x-edgegate-auth-method",
];

#[test]
fn identity_headers_from_the_claims() {
    let e = env();
    // (name, claims patch, the values of IDENTITY the backend receives)
    #[rustfmt::skip]
    let rows: Vec<(&str, Value, [Option<&str>; 5])> = vec![
        ("scope string, azp", json!({}),
         [Some("user-1"), Some(IDP_ISS), Some("app-1"), Some("read write"), Some("jwt")]),
        ("scp array, client_id",
         json!({ "scope": null, "azp": null, "scp": ["orders:read", "orders:write"], "client_id": "cli-9" }),
         [Some("user-1"), Some(IDP_ISS), Some("cli-9"), Some("orders:read orders:write"), Some("jwt")]),
        ("scp string", json!({ "scope": null, "scp": "a b" }),
         [Some("user-1"), Some(IDP_ISS), Some("app-1"), Some("a b"), Some("jwt")]),
        ("azp wins over client_id", json!({ "client_id": "cli-9" }),
         [Some("user-1"), Some(IDP_ISS), Some("app-1"), Some("read write"), Some("jwt")]),
        ("no sub, no scopes, no application", json!({ "sub": null, "scope": null, "azp": null }),
         [None, Some(IDP_ISS), None, None, Some("jwt")]),
    ];
    let spoofed: Vec<(&str, &str)> = IDENTITY.iter().map(|n| (*n, "spoofed")).collect();
    for (name, patch, expect) in rows {
        let auth = format!("Bearer {}", ed(&e.p, patch));
        let mut headers = spoofed.clone();
        headers.push(("authorization", auth.as_str()));
        check(&e.send("/api/jwt", &headers), Pass, name);
        let sent = e.last_sent();
        for (header, want) in IDENTITY.iter().zip(expect) {
            assert_eq!(sent.get(header), want, "[{name}] {header}");
            let count = sent.get_all(header).count();
            assert_eq!(count, want.is_some() as usize, "[{name}] {header}");
        }
    }
}

#[test]
fn client_identity_headers_are_removed_on_every_route() {
    let e = env();
    let spoofed: Vec<(&str, &str)> = IDENTITY
        .iter()
        .map(|n| (*n, "admin"))
        .chain([("X-EdgeGate-Subject", "admin")])
        .collect();
    for (path, method) in [
        ("/api/anon", Some("anonymous")),
        ("/api/mixed", Some("anonymous")),
        ("/api/open", None),
    ] {
        check(&e.send(path, &spoofed), Pass, path);
        let sent = e.last_sent();
        for h in IDENTITY {
            let want = if h == "x-edgegate-auth-method" {
                method
            } else {
                None
            };
            assert_eq!(sent.get(h), want, "[{path}] {h}");
        }
    }
}

#[test]
fn custom_identity_header_names() {
    let mut doc = config();
    doc["gateway"] = json!({ "identity_headers": {
        "subject": "X-User", "issuer": "", "application": "x-client",
        "scopes": "x-scopes", "method": "x-auth"
    } });
    let e = env_with(&doc);
    let spoof = [
        ("x-user", "admin"),
        ("x-auth", "jwt"),
        ("x-scopes", "admin"),
        ("x-edgegate-subject", "admin"),
    ];
    // Anonymous: the client's copies are gone, only the method is set.
    check(&e.send("/api/anon", &spoof), Pass, "anonymous");
    let sent = e.last_sent();
    let names = ["x-user", "x-auth", "x-scopes", "x-edgegate-subject"];
    let got: Vec<Option<&str>> = names.iter().map(|n| sent.get(n)).collect();
    assert_eq!(got, vec![None, Some("anonymous"), None, None]);
    // JWT: the configured names carry the identity; the defaults and the issuer are not sent.
    let auth = format!("Bearer {}", ed(&e.p, json!({})));
    let mut headers = spoof.to_vec();
    headers.push(("authorization", auth.as_str()));
    check(&e.send("/api/jwt", &headers), Pass, "jwt");
    let sent = e.last_sent();
    assert_eq!(sent.get("x-user"), Some("user-1"));
    assert_eq!(sent.get("x-client"), Some("app-1"));
    assert_eq!(sent.get("x-scopes"), Some("read write"));
    assert_eq!(sent.get("x-auth"), Some("jwt"));
    for h in IDENTITY {
        assert_eq!(sent.get(h), None, "{h} is not configured");
    }
}

#[test]
fn access_log_names_the_caller_and_no_log_holds_a_token() {
    let e = env();
    let valid = ed(&e.p, json!({}));
    let c = claims(&e.p, json!({})).to_string();
    let tokens = [
        valid.clone(),
        ed(&e.p, json!({ "exp": now_s(&e.p) - 3600 })),
        with_flipped_signature(&token(&e.p, "ES256", json!({ "sub": "s2" }))),
        ed(&e.p, json!({ "iss": "https://evil.example.com/" })),
        with_kid(&e.p, "EdDSA", "nope"),
        raw_token(r#"{"alg":"none"}"#, &c, b""),
        format!("{valid}.extra"),
        ed(&e.p, json!({ "aud": "api://other" })),
    ];
    let none = Value::Null;
    // (path, token, auth_method, subject, application)
    #[rustfmt::skip]
    let rows: Vec<(&str, Option<&str>, Value, Value, Value)> = vec![
        ("/api/jwt", Some(&valid), json!("jwt"), json!("user-1"), json!("app-1")),
        ("/api/anon", Some(&valid), json!("anonymous"), none.clone(), none.clone()),
        ("/api/anon", None, json!("anonymous"), none.clone(), none.clone()),
        ("/api/mixed", None, json!("anonymous"), none.clone(), none.clone()),
        ("/api/open", Some(&valid), none.clone(), none.clone(), none.clone()),
    ];
    for (path, t, method, subject, application) in rows {
        let auth = t.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("authorization", a.as_str())).collect();
        check(&e.send(path, &headers), Pass, path);
        let logs = e.logs();
        let access: Vec<&Value> = logs.iter().filter(|l| l["kind"] == "access").collect();
        assert_eq!(access.len(), 1);
        let a = access[0];
        assert_eq!(
            (&a["auth_method"], &a["subject"], &a["application"]),
            (&method, &subject, &application),
            "{path}"
        );
    }
    // Refusals are logged with their code, and no log line holds token text.
    let mut lines = Vec::new();
    for t in &tokens {
        let _ = e.bearer("/api/jwt", t);
        let _ = e.bearer("/api/mixed", t);
        lines.extend(e.p.take_logs());
    }
    let access: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "access")
        .collect();
    assert_eq!(access.len(), 2 * tokens.len());
    for a in access.iter().skip(2) {
        assert!(a["status"] == 401 && a["error_code"].is_string(), "{a}");
    }
    for t in &tokens {
        let (_, c, s) = segments(t);
        for line in &lines {
            assert!(
                !line.contains(t.as_str()),
                "a log line holds a token: {line}"
            );
            assert!(
                !line.contains(c),
                "a log line holds a token's claims: {line}"
            );
            let holds_sig = s.len() >= 8 && line.contains(s);
            assert!(!holds_sig, "a log line holds a signature: {line}");
        }
    }
}

// === config validation ===

fn auth_doc(providers: Value, auth: Value) -> String {
    json!({
        "pools": { "p": { "instances": [{ "url": "http://backend:8080" }] } },
        "identity_providers": providers,
        "apis": [{ "name": "a", "base_path": "/a", "pool": "p",
                   "routes": [{ "name": "r", "path": "/r", "policies": { "auth": auth } }] }]
    })
    .to_string()
}

fn idp_spec() -> Value {
    json!({ "idp": { "issuer": IDP_ISS, "jwks_uri": JWKS_URL },
            "hs": { "issuer": HS_ISS, "hmac_secret": "HS_SECRET" } })
}

/// Provider `idp` from this spec (beside `hs`).
fn idp_with(spec: Value) -> Value {
    let mut p = json!({ "issuer": IDP_ISS });
    merge(&mut p, spec);
    json!({ "idp": p, "hs": { "issuer": HS_ISS, "hmac_secret": "HS_SECRET" } })
}

fn jwt_policy(patch: Value) -> Value {
    let mut jwt = json!({ "providers": ["idp"], "algorithms": ["RS256"] });
    merge(&mut jwt, patch);
    json!({ "accept": ["jwt"], "jwt": jwt })
}

const AUTH: &str = "$.apis[0].routes[0].policies.auth";
const JWT: &str = "$.apis[0].routes[0].policies.auth.jwt";
const IDP: &str = "$.identity_providers.idp";

/// Expected config errors: (JSON path, message substring).
type Errors = Vec<(String, &'static str)>;

#[test]
fn auth_config_errors_table() {
    let p = |suffix: &str, base: &str| format!("{base}{suffix}");
    let doc = auth_doc;
    let anonymous = json!({ "accept": ["anonymous"] });
    // The message names the three key sources (and, where supported, introspection).
    const SOURCES: &str = "`jwks_uri`, `discovery_url`, `hmac_secret`";
    let bad_header_name = {
        let mut d: Value =
            serde_json::from_str(&doc(idp_spec(), json!({ "accept": ["anonymous"] }))).unwrap();
        d["gateway"] = json!({ "identity_headers": { "subject": "x user" } });
        d.to_string()
    };
    #[rustfmt::skip]
    let rows: Vec<(&str, String, Errors)> = vec![
        ("unknown provider", doc(idp_spec(), jwt_policy(json!({ "providers": ["idp", "nobody"] }))),
         vec![(p(".providers[1]", JWT), "no identity provider named \"nobody\"")]),
        ("none in algorithms", doc(idp_spec(), jwt_policy(json!({ "algorithms": ["RS256", "none"] }))),
         vec![(p(".algorithms[1]", JWT), "`none` never is")]),
        ("lower-case algorithm", doc(idp_spec(), jwt_policy(json!({ "algorithms": ["rs256"] }))),
         vec![(p(".algorithms[0]", JWT), "not a supported algorithm"), (p(".providers[0]", JWT), "a JWKS provider needs")]),
        ("no algorithms", doc(idp_spec(), jwt_policy(json!({ "algorithms": [] }))),
         vec![(p(".algorithms", JWT), "at least one algorithm"), (p(".providers[0]", JWT), "a JWKS provider needs")]),
        ("jwt accepted without a jwt section", doc(idp_spec(), json!({ "accept": ["jwt"] })),
         vec![(AUTH.into(), "a `jwt` section is required")]),
        ("jwt section without jwt accepted", doc(idp_spec(), json!({ "accept": ["anonymous"], "jwt": { "providers": ["idp"] } })),
         vec![(JWT.into(), "`jwt` is not in `accept`")]),
        ("nothing accepted", doc(idp_spec(), json!({ "accept": [] })),
         vec![(p(".accept", AUTH), "at least one method")]),
        ("a method twice", doc(idp_spec(), json!({ "accept": ["anonymous", "anonymous"] })),
         vec![(p(".accept[1]", AUTH), "listed twice")]),
        ("hmac provider with only RS/PS algorithms", doc(idp_spec(), jwt_policy(json!({ "providers": ["hs"], "algorithms": ["RS256", "PS256"] }))),
         vec![(p(".providers[0]", JWT), "an hmac_secret provider needs an HS* algorithm")]),
        ("JWKS provider with only HS algorithms", doc(idp_spec(), jwt_policy(json!({ "algorithms": ["HS256", "HS512"] }))),
         vec![(p(".providers[0]", JWT), "a JWKS provider needs an RS*, PS*, ES* or EdDSA algorithm")]),
        ("no providers", doc(idp_spec(), jwt_policy(json!({ "providers": [] }))),
         vec![(p(".providers", JWT), "at least one identity provider")]),
        ("leeway over 300", doc(idp_spec(), jwt_policy(json!({ "leeway_s": 301 }))),
         vec![(p(".leeway_s", JWT), "at most 300")]),
        ("max_token_bytes out of range", doc(idp_spec(), jwt_policy(json!({ "max_token_bytes": 100 }))),
         vec![(p(".max_token_bytes", JWT), "256 to 65536")]),
        ("http jwks_uri", doc(idp_with(json!({ "jwks_uri": "http://idp.example.com/jwks" })), jwt_policy(json!({}))),
         vec![(p(".jwks_uri", IDP), "must be an https URL")]),
        ("http discovery_url", doc(idp_with(json!({ "discovery_url": "http://10.0.0.5/.well-known/openid-configuration" })), jwt_policy(json!({}))),
         vec![(p(".discovery_url", IDP), "must be an https URL")]),
        // (The provider is not referenced by a route: no follow-on errors about its keys.)
        ("two key sources", doc(idp_with(json!({ "jwks_uri": JWKS_URL, "hmac_secret": "S" })), anonymous.clone()),
         vec![(IDP.into(), SOURCES)]),
        ("jwks_uri and discovery_url", doc(idp_with(json!({ "jwks_uri": JWKS_URL, "discovery_url": DISC_URL })), anonymous.clone()),
         vec![(IDP.into(), SOURCES)]),
        ("no key source", doc(idp_with(json!({})), anonymous.clone()),
         vec![(IDP.into(), SOURCES)]),
        ("empty issuer", doc(idp_with(json!({ "issuer": "", "jwks_uri": JWKS_URL })), jwt_policy(json!({}))),
         vec![(p(".issuer", IDP), "must not be empty")]),
        ("bad secret name", doc(json!({ "hs": { "issuer": HS_ISS, "hmac_secret": "my-secret" } }), jwt_policy(json!({ "providers": ["hs"], "algorithms": ["HS256"] }))),
         vec![("$.identity_providers.hs.hmac_secret".into(), "letters, digits and '_'")]),
        ("ttl bounds", doc(idp_with(json!({ "jwks_uri": JWKS_URL, "jwks_min_ttl_s": 600, "jwks_max_ttl_s": 60, "refetch_interval_s": 0 })), jwt_policy(json!({}))),
         vec![(p(".jwks_min_ttl_s", IDP), "must not exceed jwks_max_ttl_s"), (p(".refetch_interval_s", IDP), "must be 1 to 3600")]),
        ("bad identity header name", bad_header_name,
         vec![("$.gateway.identity_headers.subject".into(), "is not a header name")]),
    ];
    for (name, text, expected) in &rows {
        let errors: Vec<ConfigError> = match compile(text, "test") {
            Ok(_) => panic!("[{name}] compiled, but errors were expected"),
            Err(e) => e.0,
        };
        let mut unmatched: Vec<&ConfigError> = errors.iter().collect();
        for (path, substring) in expected {
            let pos = unmatched
                .iter()
                .position(|e| e.path == *path && e.message.contains(substring));
            match pos {
                Some(i) => {
                    unmatched.remove(i);
                }
                None => {
                    panic!("[{name}] no error at {path} containing {substring:?}; got {errors:#?}")
                }
            }
        }
        assert!(
            unmatched.is_empty(),
            "[{name}] unexpected errors: {unmatched:#?}"
        );
    }
}

#[test]
fn auth_configs_that_compile() {
    let loopback = idp_with(json!({ "jwks_uri": "http://127.0.0.1:9000/jwks" }));
    let gateway_level = json!({
        "pools": { "p": { "instances": [{ "url": "http://backend:8080" }] } },
        "identity_providers": idp_spec(),
        "gateway": { "policies": { "auth": jwt_policy(json!({})) } },
        "apis": [{ "name": "a", "base_path": "/a", "pool": "p",
                   "routes": [{ "name": "r", "path": "/r" }] }]
    });
    let both_kinds = json!({ "providers": ["idp", "hs"], "algorithms": ["RS256", "HS256"] });
    #[rustfmt::skip]
    let rows: Vec<(&str, String)> = vec![
        ("http jwks_uri to a loopback host", auth_doc(loopback, jwt_policy(json!({})))),
        ("HS and RS algorithms with both provider kinds", auth_doc(idp_spec(), jwt_policy(both_kinds))),
        ("anonymous only", auth_doc(idp_spec(), json!({ "accept": ["anonymous"] }))),
        ("leeway 300", auth_doc(idp_spec(), jwt_policy(json!({ "leeway_s": 300 })))),
        ("gateway-level auth", gateway_level.to_string()),
    ];
    for (name, text) in rows {
        if let Err(e) = compile(&text, "test") {
            panic!("[{name}] {e:#?}");
        }
    }
}

#[test]
fn auth_errors_at_gateway_and_api_level_name_their_paths() {
    let doc = json!({
        "pools": { "p": { "instances": [{ "url": "http://backend:8080" }] } },
        "identity_providers": idp_spec(),
        "gateway": { "policies": { "auth": { "accept": ["jwt"] } } },
        "apis": [{ "name": "a", "base_path": "/a", "pool": "p",
                   "policies": { "auth": jwt_policy(json!({ "leeway_s": 999 })) },
                   "routes": [{ "name": "r", "path": "/r" }] }]
    });
    let errors = compile(&doc.to_string(), "test").expect_err("invalid").0;
    let mut paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        vec![
            "$.apis[0].policies.auth.jwt.leeway_s",
            "$.gateway.policies.auth"
        ],
        "{errors:#?}"
    );
}

/// The isolates of one location share a provider's JWKS through the shared cache (the Cache
/// API on Workers): a second isolate verifies without asking the IdP; a refetch for an unknown
/// kid still goes to the IdP.
#[test]
fn a_second_isolate_takes_the_jwks_from_the_shared_cache() {
    let e = env();
    let t = token(&e.p, "RS256", json!({ "iss": IDP_ISS, "sub": "shared" }));
    check(&e.bearer("/api/jwt", &t), Pass, "first isolate");
    assert_eq!(e.fetches(), 1);

    // Another isolate of the same location: a new Gateway on the same platform.
    let second = Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    });
    let head = e.head("/api/jwt", &[("authorization", &format!("Bearer {t}"))]);
    let resp = block_on(second.handle(&e.p, head, FakeBody::Empty));
    check(&resp, Pass, "second isolate");
    assert_eq!(
        e.fetches(),
        1,
        "keys came from the shared cache, not the IdP"
    );

    // Once the shared entry has expired (jwks_min_ttl_s 60 here), a cold isolate asks the IdP.
    e.p.advance(61_000);
    let third = Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    });
    let head = e.head("/api/jwt", &[("authorization", &format!("Bearer {t}"))]);
    check(
        &block_on(third.handle(&e.p, head, FakeBody::Empty)),
        Pass,
        "third isolate",
    );
    assert_eq!(e.fetches(), 2);
}
