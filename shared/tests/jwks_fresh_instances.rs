//! JWKS keys where every request runs in a fresh instance (Spin: `reuses_instances() ==
//! false`), over the fake platform with a new `Gateway` per request as `spin/src/lib.rs`
//! builds it: the refetch throttle, stale serving through an IdP outage, remembered failed
//! attempts and single-flight all hold across instances through the shared cache, as they
//! hold within one reused instance (Workers, `shared/tests/auth.rs`).

use base64ct::{Base64, Base64UrlUnpadded, Encoding};
use edgegate_core::config_store::{version_key, POINTER_KEY};
use edgegate_core::control::ControlCache;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead, RuntimeSettings};
use edgegate_core::platform::{Clock, HttpResponse, PlatformError};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use futures::future::join_all;
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

const ISS: &str = "https://idp.example.com/";
const JWKS_URL: &str = "https://idp.example.com/.well-known/jwks.json";
const AUD: &str = "api://default";
const ED_JWK: &str = include_str!("fixtures/ed25519.jwk.json");
/// refetch_interval_s of the provider, in ms.
const INTERVAL_MS: u64 = 10_000;

fn signing_key() -> ed25519_dalek::SigningKey {
    let pem = include_str!("fixtures/ed25519.pem");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = Base64::decode_vec(&b64).expect("PEM base64");
    ed25519_dalek::SigningKey::from_pkcs8_der(&der).expect("ed25519 fixture")
}

/// The IdP's public key under `kid`.
fn jwk(kid: &str) -> Value {
    let mut v: Value = serde_json::from_str(ED_JWK).expect("JWK fixture");
    v["kid"] = kid.into();
    v
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    Base64UrlUnpadded::encode_string(bytes.as_ref())
}

/// A valid EdDSA token of the IdP under `kid` at the platform's time.
fn token(p: &FakePlatform, kid: &str) -> String {
    use ed25519_dalek::Signer;
    let now = (p.now_ms() / 1000) as i64;
    let header = json!({ "alg": "EdDSA", "kid": kid });
    let claims = json!({ "iss": ISS, "sub": "user-1", "aud": AUD, "exp": now + 600, "iat": now });
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let sig = signing_key().sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", b64(sig))
}

fn config() -> Value {
    json!({
        "pools": { "backend": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "identity_providers": {
            "idp": { "issuer": ISS, "jwks_uri": JWKS_URL, "jwks_min_ttl_s": 60,
                     "jwks_max_ttl_s": 3600, "max_stale_s": 600, "refetch_interval_s": 10 }
        },
        "apis": [{ "name": "api", "base_path": "/api", "pool": "backend", "routes": [{
            "name": "jwt", "path": "/jwt",
            "policies": { "auth": { "accept": ["jwt"],
                "jwt": { "providers": ["idp"], "audiences": [AUD], "algorithms": ["EdDSA"] } } }
        }] }]
    })
}

/// The fake IdP: the kids it publishes, and whether it is down.
struct Idp {
    kids: Vec<&'static str>,
    down: bool,
}

struct Env {
    p: FakePlatform,
    idp: Rc<RefCell<Idp>>,
}

type Resp = GatewayResponse<FakeBody>;

fn env(reuses_instances: bool) -> Env {
    let p = FakePlatform::new();
    p.kv_put(POINTER_KEY, "v1");
    p.kv_put(&version_key("v1"), &config().to_string());
    p.set_reuses_instances(reuses_instances);
    let idp = Rc::new(RefCell::new(Idp {
        kids: vec!["ed-1"],
        down: false,
    }));
    let state = idp.clone();
    p.on_http(move |req, _| {
        let s = state.borrow();
        if req.url != JWKS_URL {
            return Ok(HttpResponse {
                status: 404,
                headers: HeaderList::new(),
                body: Vec::new(),
            });
        }
        if s.down {
            return Err(PlatformError("connection refused".into()));
        }
        let keys: Vec<Value> = s.kids.iter().map(|k| jwk(k)).collect();
        Ok(HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: json!({ "keys": keys }).to_string().into_bytes(),
        })
    });
    Env { p, idp }
}

/// The gateway of one request, as `spin/src/lib.rs` builds it.
fn fresh_gateway() -> Gateway {
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 0,
        snapshot_refresh_ms: 0,
    })
    .with_control(ControlCache::new(0))
}

fn head(token: &str) -> RequestHead {
    let mut headers = HeaderList::new();
    headers.append("authorization", format!("Bearer {token}"));
    RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: "/api/jwt".into(),
        query: None,
        headers,
        client_ip: Some("203.0.113.7".into()),
    }
}

impl Env {
    /// One request with a token of `kid` on a fresh instance; its status and problem code.
    fn call(&self, kid: &str) -> (u16, String) {
        let resp =
            block_on(fresh_gateway().handle(&self.p, head(&token(&self.p, kid)), FakeBody::Empty));
        status_and_code(&resp)
    }

    /// JWKS fetch attempts so far.
    fn fetches(&self) -> usize {
        self.p.http_sent().len()
    }

    fn publish(&self, kid: &'static str) {
        self.idp.borrow_mut().kids.push(kid);
    }

    fn set_down(&self, down: bool) {
        self.idp.borrow_mut().down = down;
    }
}

fn status_and_code(resp: &Resp) -> (u16, String) {
    let code = match &resp.body {
        edgegate_core::pipeline::ResponseBody::Bytes(b) => serde_json::from_slice::<Value>(b)
            .ok()
            .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_string))
            .unwrap_or_default(),
        _ => String::new(),
    };
    (resp.status, code)
}

fn ok() -> (u16, String) {
    (200, String::new())
}

fn denied(code: &str) -> (u16, String) {
    (401, code.to_string())
}

#[test]
fn an_unknown_kid_refetches_once_per_interval_across_fresh_instances() {
    let e = env(false);
    assert_eq!(e.call("ed-1"), ok(), "first request fetches");
    assert_eq!(e.fetches(), 1);
    assert_eq!(
        e.call("ed-1"),
        ok(),
        "a fresh instance loads the shared keys"
    );
    assert_eq!(e.fetches(), 1);
    // Within the interval of the first fetch: an unknown kid does not refetch.
    assert_eq!(e.call("ed-2"), denied("unknown_key"));
    assert_eq!(e.fetches(), 1, "no refetch within refetch_interval");
    e.p.advance(INTERVAL_MS);
    assert_eq!(e.call("ed-2"), denied("unknown_key"));
    assert_eq!(e.fetches(), 2, "one refetch for the unknown kid");
    for kid in ["ed-2", "ed-3", "ed-2"] {
        assert_eq!(e.call(kid), denied("unknown_key"), "{kid}");
    }
    assert_eq!(
        e.fetches(),
        2,
        "no further fetch within the interval, on any instance"
    );
    assert_eq!(e.call("ed-1"), ok(), "known kids are unaffected");
    e.publish("ed-2");
    e.p.advance(INTERVAL_MS - 1);
    assert_eq!(
        e.call("ed-2"),
        denied("unknown_key"),
        "still within the interval"
    );
    assert_eq!(e.fetches(), 2);
    e.p.advance(1);
    assert_eq!(
        e.call("ed-2"),
        ok(),
        "published: accepted after the next window's refetch"
    );
    assert_eq!(e.fetches(), 3);
    assert_eq!(e.call("ed-1"), ok());
    assert_eq!(e.call("ed-2"), ok());
    assert_eq!(e.fetches(), 3, "known kids need no fetch");
}

#[test]
fn stale_keys_are_served_through_an_outage_within_max_stale() {
    let e = env(false);
    assert_eq!(e.call("ed-1"), ok());
    e.set_down(true);
    e.p.advance(61_000); // past jwks_min_ttl_s: the keys are stale
    assert_eq!(
        e.call("ed-1"),
        ok(),
        "stale keys serve while the IdP is down"
    );
    assert_eq!(e.fetches(), 2, "one failed refetch");
    let failed =
        e.p.take_logs()
            .into_iter()
            .filter(|l| l.contains("jwks_fetch_failed"))
            .collect::<Vec<_>>();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("\"serving_cached\":true"),
        "{}",
        failed[0]
    );
    assert_eq!(e.call("ed-1"), ok());
    assert_eq!(e.fetches(), 2, "the failed attempt throttles the next one");
    e.p.advance(INTERVAL_MS);
    assert_eq!(e.call("ed-1"), ok());
    assert_eq!(e.fetches(), 3, "one attempt per interval");
    // fresh_until (60 s) + max_stale (600 s) has passed.
    e.p.advance(600_000);
    assert_eq!(e.call("ed-1"), (503, "idp_unavailable".into()));
    e.set_down(false);
    e.p.advance(INTERVAL_MS);
    assert_eq!(e.call("ed-1"), ok(), "recovers once the IdP is back");
}

#[test]
fn failed_fetches_are_remembered_across_fresh_instances() {
    let e = env(false);
    e.set_down(true);
    let unavailable = (503, "idp_unavailable".to_string());
    assert_eq!(e.call("ed-1"), unavailable);
    assert_eq!(e.fetches(), 1);
    for _ in 0..5 {
        assert_eq!(e.call("ed-1"), unavailable);
    }
    assert_eq!(e.fetches(), 1, "no new attempt within the interval");
    e.p.advance(INTERVAL_MS);
    assert_eq!(e.call("ed-1"), unavailable);
    assert_eq!(e.fetches(), 2, "one attempt per interval");
    e.set_down(false);
    assert_eq!(
        e.call("ed-1"),
        unavailable,
        "the IdP is back, but within the interval"
    );
    assert_eq!(e.fetches(), 2);
    e.p.advance(INTERVAL_MS);
    assert_eq!(e.call("ed-1"), ok());
    assert_eq!(e.fetches(), 3);
}

#[test]
fn concurrent_fresh_instances_wait_for_one_fetch() {
    let e = env(false);
    assert_eq!(e.call("ed-1"), ok());
    e.publish("ed-2");
    e.p.advance(INTERVAL_MS);
    e.p.set_http_yields(true);
    let tokens: Vec<String> = (0..20).map(|_| token(&e.p, "ed-2")).collect();
    let gateways: Vec<Gateway> = (0..20).map(|_| fresh_gateway()).collect();
    let all = gateways
        .iter()
        .zip(&tokens)
        .map(|(gw, t)| gw.handle(&e.p, head(t), FakeBody::Empty));
    let out = block_on(join_all(all));
    e.p.set_http_yields(false);
    for resp in &out {
        assert_eq!(status_and_code(resp), ok());
    }
    assert_eq!(
        e.fetches(),
        2,
        "one fetch for 20 concurrent fresh instances"
    );
}

#[test]
fn reused_instances_keep_their_in_memory_throttle() {
    // Workers: one gateway serves every request; the shared cache only seeds a cold isolate.
    let e = env(true);
    let gw = fresh_gateway();
    let call = |kid: &str| {
        status_and_code(&block_on(gw.handle(
            &e.p,
            head(&token(&e.p, kid)),
            FakeBody::Empty,
        )))
    };
    assert_eq!(call("ed-1"), ok());
    e.p.advance(INTERVAL_MS);
    assert_eq!(call("ed-2"), denied("unknown_key"));
    assert_eq!(e.fetches(), 2);
    assert_eq!(call("ed-2"), denied("unknown_key"));
    assert_eq!(e.fetches(), 2);
    // A second (cold) isolate adopts the fresh shared keys without fetching.
    let cold = fresh_gateway();
    let resp = block_on(cold.handle(&e.p, head(&token(&e.p, "ed-1")), FakeBody::Empty));
    assert_eq!(status_and_code(&resp), ok());
    assert_eq!(e.fetches(), 2);
}
