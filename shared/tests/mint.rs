//! Tokens the gateway mints for backends (service-to-service authentication).

mod common;

use base64ct::{Base64UrlUnpadded, Encoding};
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{
    Gateway, GatewayResponse, RequestHead, ResponseBody, RuntimeSettings,
};
use edgegate_core::platform::HttpResponse;
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};

const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-minting";
const SEED: [u8; 32] = [7; 32];

fn config(mint: Value) -> Value {
    json!({
        "identity_providers": { "corp": { "issuer": "https://idp.example", "introspection_endpoint": "https://idp.example/i" } },
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{
            "name": "orders", "base_path": "/o", "pool": "p",
            "policies": {
                "auth": { "accept": ["introspection", "anonymous"], "introspection": { "provider": "corp" } },
                "mint_token": mint
            },
            "routes": [{ "name": "r", "path": "/{*rest}" }]
        }]
    })
}

fn platform(doc: &Value) -> FakePlatform {
    let p = common::platform_with(doc);
    p.set_secret("MINT_HS", HS_SECRET);
    p.set_secret("MINT_ED", &Base64UrlUnpadded::encode_string(&SEED));
    p.on_http(|_, _| {
        Ok(HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: br#"{"active":true,"sub":"alice","client_id":"app-1","scope":"read"}"#.to_vec(),
        })
    });
    p
}

fn call(p: &FakePlatform, headers: &[(&str, &str)]) -> GatewayResponse<FakeBody> {
    let gw = Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    });
    let head = RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: "/o/x".into(),
        query: None,
        headers: HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.to_string()))),
        client_ip: None,
    };
    block_on(gw.handle(p, head, FakeBody::Empty))
}

/// (header JSON, claims JSON, signing input, signature)
fn split(token: &str) -> (Value, Value, String, Vec<u8>) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let dec = |s: &str| Base64UrlUnpadded::decode_vec(s).unwrap();
    (
        serde_json::from_slice(&dec(parts[0])).unwrap(),
        serde_json::from_slice(&dec(parts[1])).unwrap(),
        format!("{}.{}", parts[0], parts[1]),
        dec(parts[2]),
    )
}

#[test]
fn hs256_token_carries_the_caller_and_verifies() {
    let p = platform(&config(
        json!({"algorithm": "HS256", "key_secret": "MINT_HS", "key_id": "k1", "ttl_s": 120}),
    ));
    let resp = call(
        &p,
        &[
            ("authorization", "Bearer opaque"),
            ("x-edgegate-token", "forged"),
        ],
    );
    assert_eq!(resp.status, 200);
    let sent = &p.sent()[0].0;
    let token = sent.headers.get("x-edgegate-token").unwrap();
    assert_ne!(token, "forged", "the client's copy is replaced");
    let (header, claims, input, sig) = split(token);
    assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
    assert_eq!(claims["iss"], "edgegate");
    assert_eq!(claims["aud"], "orders", "default audience: the API's name");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["azp"], "app-1");
    assert_eq!(claims["scope"], "read");
    assert_eq!(claims["auth_method"], "introspection");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    assert_eq!(
        claims["jti"].as_str(),
        resp.header("x-request-id").as_deref()
    );
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::digest::KeyInit>::new_from_slice(HS_SECRET.as_bytes())
            .unwrap();
    mac.update(input.as_bytes());
    assert!(mac.verify_slice(&sig).is_ok());
}

#[test]
fn eddsa_token_verifies_with_the_public_key_and_can_go_in_authorization() {
    let p = platform(&config(
        json!({"algorithm": "EdDSA", "key_secret": "MINT_ED", "header": "Authorization", "audience": "orders-backend"}),
    ));
    let resp = call(&p, &[]);
    assert_eq!(resp.status, 200);
    let value = p.sent()[0]
        .0
        .headers
        .get("authorization")
        .unwrap()
        .to_string();
    let token = value.strip_prefix("Bearer ").expect("Bearer prefix");
    let (header, claims, input, sig) = split(token);
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["aud"], "orders-backend");
    assert_eq!(claims["auth_method"], "anonymous");
    assert!(claims.get("sub").is_none());
    let public = ed25519_dalek::SigningKey::from_bytes(&SEED).verifying_key();
    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
    assert!(public.verify_strict(input.as_bytes(), &sig).is_ok());
}

#[test]
fn a_missing_or_bad_key_is_500_and_nothing_is_sent() {
    for (mint, name) in [
        (
            json!({"algorithm": "HS256", "key_secret": "NOT_SET"}),
            "missing secret",
        ),
        (
            json!({"algorithm": "EdDSA", "key_secret": "MINT_HS"}),
            "not a 32-byte seed",
        ),
    ] {
        let p = platform(&config(mint));
        let resp = call(&p, &[]);
        assert_eq!(resp.status, 500, "{name}");
        let code = match &resp.body {
            ResponseBody::Bytes(b) => serde_json::from_slice::<Value>(b).unwrap()["code"].clone(),
            _ => Value::Null,
        };
        assert_eq!(code, "internal_error", "{name}");
        assert!(p.sent().is_empty(), "{name}");
        assert!(
            p.take_logs().iter().all(|l| !l.contains(HS_SECRET)),
            "{name}: no secret in logs"
        );
    }
}

#[test]
fn mint_config_errors_have_paths() {
    let doc = config(
        json!({"algorithm": "RS256", "key_secret": "bad-name!", "ttl_s": 0, "header": "bad header"}),
    );
    let (paths, errors) = common::config_errors(&doc);
    for want in ["algorithm", "key_secret", "ttl_s", "header"] {
        assert!(
            paths
                .iter()
                .any(|p| *p == format!("$.apis[0].policies.mint_token.{want}").as_str()),
            "{want}: {errors:#?}"
        );
    }
}
