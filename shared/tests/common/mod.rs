//! Helpers shared by the per-method authentication test files (introspection, mTLS, API keys,
//! minted tokens): a platform with a config active, a gateway, requests, and problem codes.
#![allow(dead_code)]

pub mod registry;

use edgegate_core::config_store::{version_key, POINTER_KEY};
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{
    Gateway, GatewayResponse, RequestHead, ResponseBody, RuntimeSettings,
};
use edgegate_core::testing::{FakeBody, FakePlatform};
use serde_json::Value;

/// A fake platform whose KV holds `doc` as the active version `v1`.
pub fn platform_with(doc: &Value) -> FakePlatform {
    let p = FakePlatform::new();
    p.kv_put(POINTER_KEY, "v1");
    p.kv_put(&version_key("v1"), &doc.to_string());
    p
}

/// A gateway re-reading the config pointer every second.
pub fn gateway() -> Gateway {
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    })
}

/// A GET to `https://api.example.com{path}` with these headers and query.
pub fn get(path: &str, headers: &[(&str, &str)], query: Option<&str>) -> RequestHead {
    RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: path.into(),
        query: query.map(str::to_string),
        headers: HeaderList::from_pairs(headers.iter().map(|(n, v)| (*n, v.to_string()))),
        client_ip: None,
    }
}

/// Runs one request through the gateway.
pub fn send(gw: &Gateway, p: &FakePlatform, head: RequestHead) -> GatewayResponse<FakeBody> {
    futures::executor::block_on(gw.handle(p, head, FakeBody::Empty))
}

/// The problem+json `code` of a reply the gateway made ("" for a proxied response).
pub fn problem_code(resp: &GatewayResponse<FakeBody>) -> String {
    match &resp.body {
        ResponseBody::Bytes(b) => serde_json::from_slice::<Value>(b)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default(),
        ResponseBody::Upstream(_) => String::new(),
    }
}

/// The errors of a config that must not compile, and their JSON paths (panics if it compiles).
pub fn config_errors(doc: &Value) -> (Vec<String>, Vec<edgegate_core::config::ConfigError>) {
    let errors = match edgegate_core::config::compile(&doc.to_string(), "v") {
        Ok(_) => panic!("the config compiled, but errors were expected"),
        Err(e) => e.0,
    };
    (errors.iter().map(|e| e.path.clone()).collect(), errors)
}
