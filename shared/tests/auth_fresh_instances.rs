//! Authentication on a host that runs every request in a fresh instance (Spin): a new
//! `Gateway` per request, as `spin/src/lib.rs` builds it, over one `FakePlatform` whose shared
//! cache outlives the instances. The in-memory verified-token and introspection caches never
//! hit there; the second tier in the shared cache must: a repeated RS256 token is verified
//! once, and no check is skipped (expiry, revoked or re-pointed keys, tampering, claims).
//! Where instances are reused (Workers), nothing goes to the shared cache.

mod common;

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use edgegate_core::auth::shared_key;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RuntimeSettings};
use edgegate_core::platform::{Clock, HttpResponse, PlatformError, SharedCache};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::OnceLock;

const ISS: &str = "https://idp.example.com/";
const JWKS_URL: &str = "https://idp.example.com/jwks";
const INTROSPECT_URL: &str = "https://idp.example.com/introspect";
const AUD: &str = "api://default";

fn rsa_key(pem: &str) -> RsaPrivateKey {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    RsaPrivateKey::from_pkcs8_der(&Base64::decode_vec(&b64).expect("PEM")).expect("RSA key")
}

fn key_a() -> &'static RsaPrivateKey {
    static K: OnceLock<RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| rsa_key(include_str!("fixtures/rsa2048.pem")))
}

fn key_b() -> &'static RsaPrivateKey {
    static K: OnceLock<RsaPrivateKey> = OnceLock::new();
    K.get_or_init(|| rsa_key(include_str!("fixtures/rsa2048_b.pem")))
}

fn jwk(fixture: &str, kid: &str) -> Value {
    let mut v: Value = serde_json::from_str(fixture).expect("JWK fixture");
    v["kid"] = kid.into();
    v
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    Base64UrlUnpadded::encode_string(bytes.as_ref())
}

/// An RS256 token with kid `rsa-1` signed by `key`, claims patched.
fn token_by(p: &FakePlatform, key: &RsaPrivateKey, patch: Value) -> String {
    let now = (p.now_ms() / 1000) as i64;
    let mut claims = json!({
        "iss": ISS, "sub": "user-1", "aud": AUD, "exp": now + 3600, "iat": now,
        "azp": "app-1", "scope": "read"
    });
    if let (Some(c), Value::Object(patch)) = (claims.as_object_mut(), patch) {
        for (k, v) in patch {
            c.insert(k, v);
        }
    }
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "rsa-1" });
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = key
        .sign(
            Pkcs1v15Sign::new::<Sha256>(),
            &Sha256::digest(input.as_bytes()),
        )
        .expect("RSA signing");
    format!("{input}.{}", b64(sig))
}

fn token(p: &FakePlatform, patch: Value) -> String {
    token_by(p, key_a(), patch)
}

fn config() -> Value {
    json!({
        "identity_providers": {
            "idp": { "issuer": ISS, "jwks_uri": JWKS_URL, "jwks_min_ttl_s": 60,
                     "jwks_max_ttl_s": 3600, "refetch_interval_s": 10,
                     "introspection_endpoint": INTROSPECT_URL, "introspection_cache_ttl_s": 30 }
        },
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{
            "name": "a", "base_path": "/a", "pool": "p",
            "routes": [
                { "name": "jwt", "path": "/jwt", "policies": { "auth": {
                    "accept": ["jwt"],
                    "jwt": { "providers": ["idp"], "audiences": [AUD], "algorithms": ["RS256"] }
                } } },
                { "name": "other-aud", "path": "/other-aud", "policies": { "auth": {
                    "accept": ["jwt"],
                    "jwt": { "providers": ["idp"], "audiences": ["api://other"], "algorithms": ["RS256"] }
                } } },
                { "name": "opaque", "path": "/opaque", "policies": { "auth": {
                    "accept": ["introspection"],
                    "introspection": { "provider": "idp" }
                } } }
            ]
        }]
    })
}

/// The platform (Spin-like unless `reuses`), the IdP's JWKS (changeable) and a count of
/// introspection calls; the introspection endpoint says `active` for tokens starting with
/// `live-`.
struct Env {
    p: FakePlatform,
    jwks: Rc<RefCell<Value>>,
    introspections: Rc<Cell<u32>>,
}

fn env(reuses: bool) -> Env {
    let p = common::platform_with(&config());
    p.set_reuses_instances(reuses);
    let jwks = Rc::new(RefCell::new(json!({ "keys": [
        jwk(include_str!("fixtures/rsa2048.jwk.json"), "rsa-1")
    ] })));
    let introspections = Rc::new(Cell::new(0));
    let (keys, calls) = (jwks.clone(), introspections.clone());
    p.on_http(move |req, p| {
        let ok = |body: String| HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: body.into_bytes(),
        };
        match req.url.as_str() {
            JWKS_URL => Ok(ok(keys.borrow().to_string())),
            INTROSPECT_URL => {
                calls.set(calls.get() + 1);
                let body = String::from_utf8_lossy(req.body.as_deref().unwrap_or_default());
                let now = (p.now_ms() / 1000) as i64;
                Ok(ok(if body.starts_with("token=live-") {
                    json!({ "active": true, "sub": "svc-1", "exp": now + 600 }).to_string()
                } else {
                    json!({ "active": false }).to_string()
                }))
            }
            _ => Err(PlatformError("unreachable".into())),
        }
    });
    Env {
        p,
        jwks,
        introspections,
    }
}

impl Env {
    /// One request in a fresh instance: a new gateway, as Spin builds one per request.
    fn fresh(&self, path: &str, token: &str) -> GatewayResponse<FakeBody> {
        let gw = Gateway::new(RuntimeSettings {
            config_refresh_ms: 0,
            snapshot_refresh_ms: 0,
        });
        self.with(&gw, path, token)
    }

    fn with(&self, gw: &Gateway, path: &str, token: &str) -> GatewayResponse<FakeBody> {
        let auth = format!("Bearer {token}");
        let head = common::get(path, &[("authorization", auth.as_str())], None);
        common::send(gw, &self.p, head)
    }

    fn shared(&self, key: &str) -> Option<Vec<u8>> {
        block_on(self.p.shared_get(key)).expect("the fake shared cache reads")
    }
}

/// "pass" for a proxied response, else the problem code.
fn outcome(resp: &GatewayResponse<FakeBody>) -> String {
    match common::problem_code(resp) {
        code if code.is_empty() => "pass".into(),
        code => code,
    }
}

#[test]
fn a_repeated_token_is_verified_once_across_fresh_instances() {
    let e = env(false);
    let t = token(&e.p, json!({}));
    for i in 0..4 {
        assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass", "request {i}");
        e.p.advance(1000);
    }
    assert_eq!(
        e.p.verifications(),
        1,
        "one signature check for four instances"
    );
    let record = e.shared(&shared_key(&t)).expect("a shared record");
    let record: Value = serde_json::from_slice(&record).expect("JSON record");
    assert_eq!(record["alg"], "RS256");
    // Claims are still checked on a shared hit.
    assert_eq!(
        outcome(&e.fresh("/a/other-aud", &t)),
        "wrong_audience",
        "claims are checked on a hit"
    );
    assert_eq!(e.p.verifications(), 1);
}

#[test]
fn where_instances_are_reused_nothing_goes_to_the_shared_cache() {
    let e = env(true);
    let t = token(&e.p, json!({}));
    let gw = common::gateway();
    for _ in 0..3 {
        assert_eq!(outcome(&e.with(&gw, "/a/jwt", &t)), "pass");
    }
    assert_eq!(e.p.verifications(), 1, "the in-memory cache serves");
    assert_eq!(e.shared(&shared_key(&t)), None, "no shared record");
    // A first-seen token per isolate costs no shared-cache read either: fresh gateways on a
    // reusing platform each verify.
    assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass");
    assert_eq!(e.p.verifications(), 2);
    assert_eq!(e.shared(&shared_key(&t)), None);
}

#[test]
fn shared_records_expire_with_the_cap_and_the_token() {
    #[rustfmt::skip]
    let rows: [(&str, i64, u64, &str, u32); 5] = [
        // (row, token lifetime s, wait s, outcome of the second request, verifications)
        ("long-lived token, within the 300 s cap", 3600, 299, "pass", 1),
        ("long-lived token, past the 300 s cap", 3600, 301, "pass", 2),
        ("short-lived token, within exp", 100, 99, "pass", 1),
        // The record lived until exp; within the leeway the token is verified again.
        ("short-lived token, past exp within the leeway", 100, 101, "pass", 2),
        ("short-lived token, past exp and the leeway", 100, 100 + 61, "token_expired", 1),
    ];
    for (row, life, wait, want, verifications) in rows {
        let e = env(false);
        let exp = (e.p.now_ms() / 1000) as i64 + life;
        let t = token(&e.p, json!({ "exp": exp }));
        assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass", "{row}: first");
        e.p.advance(wait * 1000);
        assert_eq!(outcome(&e.fresh("/a/jwt", &t)), want, "{row}: second");
        assert_eq!(e.p.verifications(), verifications, "{row}");
    }
}

#[test]
fn a_revoked_key_invalidates_the_record() {
    let e = env(false);
    let t = token(&e.p, json!({}));
    assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass");
    // The IdP drops rsa-1; once the cached JWKS is stale (60 s), instances refetch it.
    *e.jwks.borrow_mut() =
        json!({ "keys": [jwk(include_str!("fixtures/rsa2048_b.jwk.json"), "rsa-2")] });
    e.p.advance(61_000);
    assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "unknown_key");
    assert_eq!(e.p.verifications(), 1, "refused before any signature check");
}

#[test]
fn a_kid_re_pointed_at_another_key_does_not_inherit_the_record() {
    let e = env(false);
    let t = token(&e.p, json!({}));
    assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass");
    // Same kid, other key material: the record names the old key, so the signature is
    // checked again (and fails against the new key).
    *e.jwks.borrow_mut() =
        json!({ "keys": [jwk(include_str!("fixtures/rsa2048_b.jwk.json"), "rsa-1")] });
    e.p.advance(61_000);
    assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "bad_signature");
    assert_eq!(e.p.verifications(), 2);
    // A token the new key signed verifies and gets its own record.
    let t2 = token_by(&e.p, key_b(), json!({}));
    assert_eq!(outcome(&e.fresh("/a/jwt", &t2)), "pass");
    assert_eq!(outcome(&e.fresh("/a/jwt", &t2)), "pass");
    assert_eq!(e.p.verifications(), 3);
}

#[test]
fn a_tampered_token_with_the_same_prefix_is_not_a_hit() {
    let e = env(false);
    let t = token(&e.p, json!({}));
    assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass");
    let (input, sig) = t.rsplit_once('.').expect("three parts");
    let mut bytes = Base64UrlUnpadded::decode_vec(sig).expect("signature");
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    let (header, _) = input.split_once('.').expect("three parts");
    let other_claims = b64(json!({ "iss": ISS, "sub": "admin", "aud": AUD,
        "exp": (e.p.now_ms() / 1000) as i64 + 3600 })
    .to_string());
    #[rustfmt::skip]
    let rows = [
        ("flipped signature bit", format!("{input}.{}", b64(&bytes))),
        ("other claims, same signature", format!("{header}.{other_claims}.{sig}")),
    ];
    for (i, (row, forged)) in rows.iter().enumerate() {
        assert_eq!(
            outcome(&e.fresh("/a/jwt", forged)),
            "bad_signature",
            "{row}"
        );
        assert_eq!(
            e.p.verifications(),
            2 + i as u32,
            "{row}: verified, not a hit"
        );
    }
    assert_eq!(
        outcome(&e.fresh("/a/jwt", &t)),
        "pass",
        "the original still hits"
    );
    assert_eq!(e.p.verifications(), 3);
}

#[test]
fn an_unreadable_record_still_verifies_and_is_replaced() {
    let e = env(false);
    let t = token(&e.p, json!({}));
    let key = shared_key(&t);
    for junk in [&b"not json"[..], b"{\"alg\":\"RS256\"}", b""] {
        block_on(e.p.shared_put(&key, junk, 300)).expect("fake put");
        let before = e.p.verifications();
        assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass");
        assert_eq!(e.p.verifications(), before + 1, "verified despite {junk:?}");
        assert_eq!(outcome(&e.fresh("/a/jwt", &t)), "pass");
        assert_eq!(e.p.verifications(), before + 1, "the record was rewritten");
    }
}

#[test]
fn introspection_results_are_shared_across_fresh_instances() {
    let e = env(false);
    for i in 0..3 {
        assert_eq!(
            outcome(&e.fresh("/a/opaque", "live-abc")),
            "pass",
            "active {i}"
        );
        assert_eq!(
            outcome(&e.fresh("/a/opaque", "dead-abc")),
            "token_inactive",
            "inactive {i}"
        );
    }
    assert_eq!(e.introspections.get(), 2, "one call per token");
    // Past the 30 s TTL the endpoint is asked again.
    e.p.advance(31_000);
    assert_eq!(outcome(&e.fresh("/a/opaque", "live-abc")), "pass");
    assert_eq!(e.introspections.get(), 3);
    // Where instances are reused, nothing is shared.
    let reusing = env(true);
    assert_eq!(outcome(&reusing.fresh("/a/opaque", "live-abc")), "pass");
    assert_eq!(outcome(&reusing.fresh("/a/opaque", "live-abc")), "pass");
    assert_eq!(reusing.introspections.get(), 2);
}
