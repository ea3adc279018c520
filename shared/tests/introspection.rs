//! OAuth 2.0 token introspection (RFC 7662) through the pipeline over the fake platform.

mod common;

use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead};
use edgegate_core::platform::{HttpResponse, PlatformError};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};

fn config() -> Value {
    json!({
        "identity_providers": {
            "corp": {
                "issuer": "https://idp.example",
                "introspection_endpoint": "https://idp.example/introspect",
                "client_id": "edge gateway",
                "client_secret": "INTROSPECTION_SECRET",
                "introspection_cache_ttl_s": 30
            },
            "keys": { "issuer": "https://keys.example", "jwks_uri": "https://keys.example/jwks" }
        },
        "gateway": { "identity_headers": { "issuer": "x-edgegate-issuer", "method": "x-edgegate-auth-method" } },
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{
            "name": "a", "base_path": "/a", "pool": "p",
            "policies": { "auth": {
                "accept": ["introspection"],
                "introspection": { "provider": "corp", "audiences": ["api-a"] }
            } },
            "routes": [
                { "name": "r", "path": "/{*rest}" },
                { "name": "both", "path": "/both/{*rest}", "policies": { "auth": {
                    "accept": ["jwt", "introspection"],
                    "jwt": { "providers": ["keys"] },
                    "introspection": { "provider": "corp" }
                } } }
            ]
        }]
    })
}

fn platform() -> FakePlatform {
    let p = common::platform_with(&config());
    p.set_secret("INTROSPECTION_SECRET", "s3cr:et");
    p
}

fn respond(status: u16, body: Value) -> Result<HttpResponse, PlatformError> {
    Ok(HttpResponse {
        status,
        headers: HeaderList::new(),
        body: body.to_string().into_bytes(),
    })
}

fn call(gw: &Gateway, p: &FakePlatform, path: &str, token: &str) -> GatewayResponse<FakeBody> {
    let head = RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: path.into(),
        query: None,
        headers: HeaderList::from_pairs([("authorization", format!("Bearer {token}"))]),
        client_ip: Some("203.0.113.1".into()),
    };
    block_on(gw.handle(p, head, FakeBody::Empty))
}

fn now_s(p: &FakePlatform) -> i64 {
    use edgegate_core::platform::Clock;
    (p.now_ms() / 1000) as i64
}

#[test]
fn active_token_passes_with_its_identity_and_the_request_is_rfc7662() {
    let p = platform();
    let exp = now_s(&p) + 600;
    p.on_http(move |_, _| {
        respond(200, json!({"active": true, "sub": "alice", "client_id": "app-1", "scope": "read write", "aud": "api-a", "exp": exp}))
    });
    let gw = common::gateway();
    let resp = call(&gw, &p, "/a/x", "opaque-token.1");
    assert_eq!(resp.status, 200);
    let sent = &p.sent()[0].0;
    assert_eq!(sent.headers.get("x-edgegate-subject"), Some("alice"));
    assert_eq!(sent.headers.get("x-edgegate-application"), Some("app-1"));
    assert_eq!(sent.headers.get("x-edgegate-scopes"), Some("read write"));
    assert_eq!(
        sent.headers.get("x-edgegate-auth-method"),
        Some("introspection")
    );

    let req = &p.http_sent()[0];
    assert_eq!(
        (req.method.as_str(), req.url.as_str()),
        ("POST", "https://idp.example/introspect")
    );
    let body = String::from_utf8(req.body.clone().unwrap()).unwrap();
    assert_eq!(body, "token=opaque-token.1&token_type_hint=access_token");
    let header = |n: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    // RFC 6749 §2.3.1: client id and secret form-encoded, then Basic.
    use base64ct::Encoding;
    let basic = base64ct::Base64::encode_string(b"edge+gateway:s3cr%3Aet");
    assert_eq!(header("authorization"), Some(format!("Basic {basic}")));
    // The token never reaches a log line.
    assert!(p.take_logs().iter().all(|l| !l.contains("opaque-token.1")));
}

#[test]
fn results_are_cached_for_the_ttl_but_never_beyond_exp() {
    let p = platform();
    let exp = now_s(&p) + 10;
    let calls = std::rc::Rc::new(std::cell::Cell::new(0));
    let seen = calls.clone();
    p.on_http(move |_, _| {
        seen.set(seen.get() + 1);
        // The IdP answers inactive once the token has expired.
        respond(
            200,
            if seen.get() == 1 {
                json!({"active": true, "sub": "bob", "aud": ["api-a"], "exp": exp})
            } else {
                json!({"active": false})
            },
        )
    });
    let gw = common::gateway();
    for _ in 0..3 {
        assert_eq!(call(&gw, &p, "/a/x", "tok").status, 200);
    }
    assert_eq!(calls.get(), 1, "reused from the cache");
    p.advance(11_000); // past exp (10 s), well before the 30 s TTL
    let resp = call(&gw, &p, "/a/x", "tok");
    assert_eq!(calls.get(), 2, "asked again after exp, not at the TTL");
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (401, "token_inactive")
    );

    // Without exp, the TTL (30 s) bounds the reuse.
    let p = platform();
    p.on_http(|_, _| respond(200, json!({"active": true, "sub": "bob", "aud": "api-a"})));
    let gw = common::gateway();
    call(&gw, &p, "/a/x", "tok");
    p.advance(29_000);
    call(&gw, &p, "/a/x", "tok");
    assert_eq!(p.http_sent().len(), 1);
    p.advance(2_000);
    call(&gw, &p, "/a/x", "tok");
    assert_eq!(p.http_sent().len(), 2);
}

#[test]
fn inactive_token_is_401_token_inactive_and_cached() {
    let p = platform();
    p.on_http(|_, _| respond(200, json!({"active": false})));
    let gw = common::gateway();
    for _ in 0..2 {
        let resp = call(&gw, &p, "/a/x", "revoked");
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (401, "token_inactive")
        );
        assert!(resp
            .header("www-authenticate")
            .unwrap()
            .contains("error=\"invalid_token\""));
    }
    assert_eq!(p.http_sent().len(), 1);
    assert!(p.sent().is_empty());
}

#[test]
fn outages_are_503_idp_unavailable_not_401() {
    type Script = Box<dyn Fn() -> Result<HttpResponse, PlatformError>>;
    let cases: Vec<(&str, Script)> = vec![
        (
            "network error",
            Box::new(|| Err(PlatformError("connection refused".into()))),
        ),
        ("status 500", Box::new(|| respond(500, json!({})))),
        (
            "not JSON",
            Box::new(|| {
                Ok(HttpResponse {
                    status: 200,
                    headers: HeaderList::new(),
                    body: b"<html>".to_vec(),
                })
            }),
        ),
        (
            "no boolean active",
            Box::new(|| respond(200, json!({"active": "yes"}))),
        ),
    ];
    for (name, script) in cases {
        let p = platform();
        p.on_http(move |_, _| script());
        let gw = common::gateway();
        let resp = call(&gw, &p, "/a/x", "tok");
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (503, "idp_unavailable"),
            "{name}"
        );
        assert_eq!(resp.header("retry-after").as_deref(), Some("10"), "{name}");
        // Not cached: the next request asks again.
        call(&gw, &p, "/a/x", "tok");
        assert_eq!(p.http_sent().len(), 2, "{name}");
    }
}

#[test]
fn claims_of_the_response_are_checked() {
    let p = platform();
    p.on_http(|_, _| {
        respond(
            200,
            json!({"active": true, "sub": "carol", "aud": "another-api"}),
        )
    });
    let gw = common::gateway();
    let resp = call(&gw, &p, "/a/x", "tok");
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (401, "wrong_audience")
    );
}

#[test]
fn a_jws_shaped_token_goes_to_jwt_when_both_are_accepted() {
    let p = platform();
    p.on_http(|_, _| respond(200, json!({"active": true, "sub": "dave"})));
    let gw = common::gateway();
    // Three dot-separated parts: treated as a JWT (here a malformed one), never introspected.
    let resp = call(&gw, &p, "/a/both/x", "not.a.jwt");
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (401, "malformed_token")
    );
    assert!(p
        .http_sent()
        .iter()
        .all(|r| !r.url.ends_with("/introspect")));
    // An opaque token on the same route is introspected.
    let resp = call(&gw, &p, "/a/both/x", "opaque");
    assert_eq!(resp.status, 200);
    assert_eq!(
        p.http_sent()
            .iter()
            .filter(|r| r.url.ends_with("/introspect"))
            .count(),
        1
    );
}

#[test]
fn introspection_config_errors_have_paths() {
    let mut doc = config();
    doc["identity_providers"]["keys"]["client_id"] = json!("x");
    doc["apis"][0]["routes"][0]["policies"] = json!({"auth": {"accept": ["introspection"]}});
    doc["apis"][0]["routes"][1]["policies"]["auth"]["introspection"]["provider"] = json!("keys");
    let (paths, errors) = common::config_errors(&doc);
    assert!(
        paths.iter().any(|p| p == "$.identity_providers.keys"),
        "{errors:#?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p == "$.apis[0].routes[0].policies.auth"),
        "{errors:#?}"
    );
    assert!(
        paths
            .iter()
            .any(|p| p == "$.apis[0].routes[1].policies.auth.introspection.provider"),
        "{errors:#?}"
    );
}

#[test]
fn a_config_cannot_name_the_gateways_own_secrets() {
    // It would send the admin or Registry token to an endpoint of its choosing.
    for name in [
        "EDGEGATE_ADMIN_TOKEN",
        "EDGEGATE_REGISTRY_TOKEN",
        "edgegate_admin_token",
    ] {
        let mut doc = config();
        doc["identity_providers"]["corp"]["client_secret"] = json!(name);
        let (paths, errors) = common::config_errors(&doc);
        assert!(
            paths
                .iter()
                .any(|p| p == "$.identity_providers.corp.client_secret"),
            "{name}: {errors:#?}"
        );
    }
    let mut doc = config();
    doc["identity_providers"]["corp"]["client_secret"] = json!("MY_EDGEGATE_SECRET");
    edgegate_core::config::compile(&doc.to_string(), "t").expect("another name is fine");
}
