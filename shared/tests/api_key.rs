//! API-key authentication through the pipeline over the fake platform.

mod common;

use edgegate_core::auth::credential_key;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead};
use edgegate_core::platform::Clock;
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};

fn config(api_key: Value) -> Value {
    let mut auth = json!({ "accept": ["api_key"] });
    if !api_key.is_null() {
        auth["api_key"] = api_key;
    }
    json!({
        "gateway": { "identity_headers": { "issuer": "x-edgegate-issuer", "method": "x-edgegate-auth-method" } },
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{
            "name": "a", "base_path": "/a", "pool": "p",
            "policies": { "auth": auth },
            "routes": [{ "name": "r", "path": "/{*rest}" }]
        }]
    })
}

fn platform(doc: &Value) -> FakePlatform {
    let p = common::platform_with(doc);
    let in_a_day = (p.now_ms() / 1000) as i64 + 86_400;
    for (key, record) in [
        (
            "k-active",
            json!({"consumer_id": "acme", "application_id": "acme-web", "status": "active", "scopes": ["orders:read"]}),
        ),
        (
            "k-dated",
            json!({"consumer_id": "acme", "status": "active", "expires_at": in_a_day}),
        ),
        (
            "k-revoked",
            json!({"consumer_id": "acme", "status": "revoked"}),
        ),
        (
            "k-suspended",
            json!({"consumer_id": "acme", "status": "suspended"}),
        ),
        (
            "k-expired",
            json!({"consumer_id": "acme", "status": "active", "expires_at": 1_000}),
        ),
        ("k-corrupt", json!({"consumer": "no id"})),
    ] {
        p.kv_put(&credential_key(key), &record.to_string());
    }
    p
}

fn call(
    gw: &Gateway,
    p: &FakePlatform,
    headers: &[(&str, &str)],
    query: Option<&str>,
) -> GatewayResponse<FakeBody> {
    let head = RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: "/a/x".into(),
        query: query.map(str::to_string),
        headers: HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.to_string()))),
        client_ip: None,
    };
    block_on(gw.handle(p, head, FakeBody::Empty))
}

#[test]
fn record_table() {
    let cases = [
        ("k-active", 200, ""),
        ("k-dated", 200, ""),
        ("k-revoked", 401, "key_revoked"),
        ("k-suspended", 401, "key_revoked"),
        ("k-expired", 401, "key_expired"),
        ("no-such-key", 401, "unknown_api_key"),
        ("k-corrupt", 503, "credentials_unavailable"),
    ];
    for (key, status, want) in cases {
        let p = platform(&config(Value::Null));
        let gw = common::gateway();
        let resp = call(&gw, &p, &[("x-api-key", key)], None);
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (status, want),
            "{key}"
        );
        assert!(
            resp.header("www-authenticate").is_none(),
            "{key}: no Bearer challenge for API keys"
        );
        for line in p.take_logs() {
            assert!(!line.contains(key), "{key} logged in clear: {line}");
        }
    }
}

#[test]
fn the_backend_gets_the_identity_but_never_the_key() {
    let p = platform(&config(json!({"header": "X-Key", "query": "api_key"})));
    let gw = common::gateway();
    let resp = call(
        &gw,
        &p,
        &[("x-key", "k-active")],
        Some("q=1&api_key=k-other"),
    );
    assert_eq!(resp.status, 200);
    let sent = &p.sent()[0].0;
    assert_eq!(sent.headers.get("x-key"), None, "key header stripped");
    assert!(
        sent.url.ends_with("/x?q=1"),
        "key parameter stripped: {}",
        sent.url
    );
    assert_eq!(sent.headers.get("x-edgegate-subject"), Some("acme"));
    assert_eq!(sent.headers.get("x-edgegate-application"), Some("acme-web"));
    assert_eq!(sent.headers.get("x-edgegate-scopes"), Some("orders:read"));
    assert_eq!(sent.headers.get("x-edgegate-auth-method"), Some("api_key"));

    // In the query alone (the header wins when both are there).
    let resp = call(&gw, &p, &[], Some("api_key=k-active"));
    assert_eq!(resp.status, 200);
    assert!(p.sent()[1].0.url.ends_with("/x"), "{}", p.sent()[1].0.url);
    // Without a key at all.
    assert_eq!(
        common::problem_code(&call(&gw, &p, &[], None)),
        "missing_credentials"
    );
}

#[test]
fn lookups_are_cached_and_revocation_takes_effect_within_a_minute() {
    let p = platform(&config(Value::Null));
    let gw = common::gateway();
    for _ in 0..5 {
        assert_eq!(
            call(&gw, &p, &[("x-api-key", "k-active")], None).status,
            200
        );
    }
    assert_eq!(
        p.kv_reads(),
        4,
        "pointer, config, snapshot manifest (none), one credential read"
    );
    p.kv_put(
        &credential_key("k-active"),
        &json!({"consumer_id": "acme", "status": "revoked"}).to_string(),
    );
    p.advance(59_000);
    assert_eq!(
        call(&gw, &p, &[("x-api-key", "k-active")], None).status,
        200,
        "cached"
    );
    p.advance(2_000);
    assert_eq!(
        common::problem_code(&call(&gw, &p, &[("x-api-key", "k-active")], None)),
        "key_revoked"
    );

    // Unknown keys are remembered for 10 s: guessing costs no store read per request.
    let before = p.kv_reads();
    for _ in 0..20 {
        call(&gw, &p, &[("x-api-key", "guess")], None);
    }
    assert!(
        p.kv_reads() - before <= 3,
        "{} reads (config refresh included)",
        p.kv_reads() - before
    );
}

#[test]
fn a_store_outage_is_503_not_401() {
    let p = platform(&config(Value::Null));
    let gw = common::gateway();
    call(&gw, &p, &[("x-api-key", "k-active")], None); // loads the config
    p.set_kv_down(true);
    let resp = call(&gw, &p, &[("x-api-key", "another-key")], None);
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (503, "credentials_unavailable")
    );
    assert_eq!(resp.header("retry-after").as_deref(), Some("10"));
    // A cached record keeps working through the outage.
    assert_eq!(
        call(&gw, &p, &[("x-api-key", "k-active")], None).status,
        200
    );
}

#[test]
fn api_key_config_errors_have_paths() {
    let mut doc = config(json!({"header": "bad header", "query": ""}));
    doc["apis"][0]["routes"][0]["policies"] =
        json!({"auth": {"accept": ["anonymous"], "api_key": {"header": "x-k"}}});
    let (paths, errors) = common::config_errors(&doc);
    assert_eq!(
        paths,
        vec![
            "$.apis[0].policies.auth.api_key.header",
            "$.apis[0].policies.auth.api_key.query",
            "$.apis[0].routes[0].policies.auth.api_key"
        ],
        "{errors:#?}"
    );
}

/// By default the backend gets the identity the issue names — consumer/subject, application,
/// scopes — and not the issuer or method headers (each header costs ~1.4 µs on Workers); a
/// client's copies of all of them are stripped either way.
#[test]
fn default_identity_headers_are_subject_application_and_scopes() {
    let mut doc = config(Value::Null);
    doc.as_object_mut().unwrap().remove("gateway");
    let p = platform(&doc);
    let gw = common::gateway();
    let resp = call(
        &gw,
        &p,
        &[
            ("x-api-key", "k-active"),
            ("x-edgegate-issuer", "forged"),
            ("x-edgegate-auth-method", "forged"),
        ],
        None,
    );
    assert_eq!(resp.status, 200);
    let sent = &p.sent()[0].0;
    assert_eq!(sent.headers.get("x-edgegate-subject"), Some("acme"));
    assert_eq!(sent.headers.get("x-edgegate-application"), Some("acme-web"));
    assert_eq!(sent.headers.get("x-edgegate-scopes"), Some("orders:read"));
    assert_eq!(sent.headers.get("x-edgegate-issuer"), None);
    assert_eq!(sent.headers.get("x-edgegate-auth-method"), None);
}
