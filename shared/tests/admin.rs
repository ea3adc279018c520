//! The admin API over the fake platform: the call order (off, limit, token, endpoint, body),
//! every endpoint, bad input changes nothing, audit lines, and the OpenAPI document against
//! the route table.

mod common;

use common::platform_with;
use common::registry::{
    bundle, id_of, parse_settings, registry_vars, serve_on, settings, sign, snapshot, tamper, Mode,
    Registry, REGISTRY_TOKEN, REGISTRY_URL,
};
use edgegate_core::admin::{router::ROUTES, AdminMatch, AdminSettings, BodyError, TOKEN_SECRET};
use edgegate_core::bundle::version_id;
use edgegate_core::config_store::{version_key, ConfigStore, POINTER_KEY};
use edgegate_core::control::ControlCall;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{
    Gateway, GatewayResponse, RequestHead, ResponseBody, RuntimeSettings,
};
use edgegate_core::platform::Clock;
use edgegate_core::registry::{sync, HISTORY_KEY, STATUS_KEY};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;

const TOKEN: &str = "admin-token-0123456789abcdef";
const PREFIX: &str = "/__edgegate/admin";

fn config() -> Value {
    json!({
        "pools": {"p": {"instances": [{"url": "http://10.0.0.1:8080"}]}},
        "apis": [{"name": "shop", "base_path": "/shop", "pool": "p", "routes": [
            {"name": "items", "methods": ["GET"], "path": "/items"},
            {"name": "limited", "methods": ["GET"], "path": "/limited", "policies": {"rate_limits": [
                {"name": "per-ip", "key": "ip", "algorithm": "sliding_window", "limit": 2, "window_s": 60},
                {"name": "sharded", "key": "api", "algorithm": "sliding_window", "limit": 10, "window_s": 60, "shards": 2}
            ]}}
        ]}]
    })
}

fn setup(vars: &[(&str, &str)]) -> (FakePlatform, Gateway) {
    let p = platform_with(&config());
    p.set_secret(TOKEN_SECRET, TOKEN);
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (admin, problems) =
        AdminSettings::from_vars(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()));
    assert!(problems.is_empty(), "{problems:?}");
    let gw = Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    })
    .with_admin(admin);
    (p, gw)
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    token: Option<&'a str>,
    ip: &'a str,
    body: Result<Vec<u8>, BodyError>,
}

fn call(method: &'static str, path: &'static str) -> Call<'static> {
    Call {
        method,
        path,
        token: Some(TOKEN),
        ip: "192.0.2.1",
        body: Ok(Vec::new()),
    }
}

impl<'a> Call<'a> {
    fn body(mut self, v: &str) -> Self {
        self.body = Ok(v.as_bytes().to_vec());
        self
    }
    fn token(mut self, t: Option<&'a str>) -> Self {
        self.token = t;
        self
    }
    fn ip(mut self, ip: &'a str) -> Self {
        self.ip = ip;
        self
    }
}

fn send(gw: &Gateway, p: &FakePlatform, c: Call<'_>) -> (u16, Value, GatewayResponse<FakeBody>) {
    let (path, query) = match c.path.split_once('?') {
        Some((a, q)) => (a, Some(q.to_string())),
        None => (c.path, None),
    };
    let mut headers = HeaderList::new();
    if let Some(t) = c.token {
        headers.set("authorization", format!("Bearer {t}"));
    }
    let head = RequestHead {
        method: c.method.into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: format!("{PREFIX}{path}"),
        query,
        headers,
        client_ip: Some(c.ip.into()),
    };
    let target = gw.admin_match(&head).expect("an admin path");
    let body = c.body;
    let resp = block_on(gw.handle_admin(p, &head, target, async move { body }));
    let json = match &resp.body {
        ResponseBody::Bytes(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        ResponseBody::Upstream(_) => Value::Null,
    };
    (resp.status, json, resp)
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[test]
fn call_order_table() {
    let (p, gw) = setup(&[("EDGEGATE_ADMIN_RATE_LIMIT", "100")]);
    // (call, status, code)
    let table: Vec<(Call<'_>, u16, &str)> = vec![
        (call("GET", "/health"), 200, ""),
        (
            call("GET", "/health").token(None),
            401,
            "admin_unauthorized",
        ),
        (
            call("GET", "/health").token(Some("admin-token-0123456789abcdeX")),
            401,
            "admin_unauthorized",
        ),
        (call("GET", "/nope"), 404, "route_not_found"),
        (call("GET", "/nope").token(None), 401, "admin_unauthorized"),
        (call("PUT", "/ip-blocks"), 405, "method_not_allowed"),
        (call("POST", "/config/validate").body("{}"), 200, ""),
        (
            Call {
                body: Err(BodyError::TooLarge),
                ..call("POST", "/config/validate")
            },
            413,
            "admin_body_too_large",
        ),
    ];
    for (i, (c, status, want)) in table.into_iter().enumerate() {
        let (got, body, resp) = send(&gw, &p, c);
        assert_eq!((got, code(&body)), (status, want), "row {i}: {body}");
        if got == 401 {
            assert!(resp
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Bearer realm=\"edgegate-admin\"")));
        }
        assert_eq!(resp.header("cache-control").as_deref(), Some("no-store"));
    }
}

#[test]
fn off_without_a_token_and_with_a_short_one() {
    for token in [None, Some("short")] {
        let (p, gw) = setup(&[]);
        match token {
            None => p.set_secret(TOKEN_SECRET, ""),
            Some(t) => p.set_secret(TOKEN_SECRET, t),
        }
        let (status, body, _) = send(&gw, &p, call("GET", "/health"));
        assert_eq!((status, code(&body)), (404, "route_not_found"), "{token:?}");
    }
}

#[test]
fn the_admin_limit_counts_every_call_per_address() {
    let (p, gw) = setup(&[("EDGEGATE_ADMIN_RATE_LIMIT", "3")]);
    for i in 0..3 {
        let c =
            call("GET", "/health")
                .ip("203.0.113.1")
                .token(if i == 1 { None } else { Some(TOKEN) });
        assert_ne!(send(&gw, &p, c).0, 429, "call {i}");
    }
    let (status, body, resp) = send(&gw, &p, call("GET", "/health").ip("203.0.113.1"));
    assert_eq!((status, code(&body)), (429, "rate_limited"));
    assert!(resp.header("retry-after").is_some());
    assert_eq!(
        send(&gw, &p, call("GET", "/health").ip("203.0.113.2")).0,
        200
    );
    p.advance(60_000 * 2);
    assert_eq!(
        send(&gw, &p, call("GET", "/health").ip("203.0.113.1")).0,
        200
    );
}

#[test]
fn every_call_writes_one_audit_line_without_the_token() {
    let (p, gw) = setup(&[]);
    p.take_logs();
    send(&gw, &p, call("GET", "/health"));
    send(
        &gw,
        &p,
        call("POST", "/ip-blocks").body(r#"{"cidr":"10.0.0.0/8","reason":"r"}"#),
    );
    send(
        &gw,
        &p,
        call("GET", "/health").token(Some("wrong-token-0123456789")),
    );
    let logs = p.take_logs();
    assert!(logs
        .iter()
        .all(|l| !l.contains(TOKEN) && !l.contains("wrong-token")));
    let audits: Vec<Value> = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "audit")
        .collect();
    let got: Vec<(&str, &str, u64, &str, &str)> = audits
        .iter()
        .map(|a| {
            (
                a["method"].as_str().unwrap_or(""),
                a["endpoint"].as_str().unwrap_or(""),
                a["status"].as_u64().unwrap_or(0),
                a["outcome"].as_str().unwrap_or(""),
                a["client_ip"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET", "health", 200, "ok", "192.0.2.1"),
            ("POST", "ip_blocks.add", 200, "ok", "192.0.2.1"),
            ("GET", "", 401, "admin_unauthorized", "192.0.2.1"),
        ]
    );
    assert_eq!(audits[1]["detail"], "blocked 10.0.0.0/8");
}

#[test]
fn bad_input_changes_nothing() {
    let (p, gw) = setup(&[]);
    let bodies = [
        ("POST", "/ip-blocks", ""),
        ("POST", "/ip-blocks", "{"),
        ("POST", "/ip-blocks", r#"{"cidr":"10.0.0.1/8"}"#),
        ("POST", "/ip-blocks", r#"{"cidr":"10.0.0.0/8","ttl_s":0}"#),
        (
            "POST",
            "/ip-blocks",
            r#"{"cidr":"10.0.0.0/8","extra":true}"#,
        ),
        ("POST", "/routes/shop/items/disable", r#"{"reason":1}"#),
        ("POST", "/routes/shop/nope/disable", ""),
        ("DELETE", "/ip-blocks", ""),
        ("DELETE", "/ip-blocks?cidr=nope", ""),
        ("DELETE", "/ip-blocks?cidr=10.0.0.0/8", ""),
        ("POST", "/routes/shop/items/enable", ""),
    ];
    let reason = "x".repeat(300);
    let long = format!(r#"{{"cidr":"10.0.0.0/8","reason":"{reason}"}}"#);
    let before = p.control_state();
    for (method, path, body) in bodies
        .into_iter()
        .chain([("POST", "/ip-blocks", long.as_str())])
    {
        let c = Call {
            method,
            path,
            token: Some(TOKEN),
            ip: "192.0.2.1",
            body: Ok(body.as_bytes().to_vec()),
        };
        let (status, v, _) = send(&gw, &p, c);
        assert!(
            matches!(status, 400 | 404),
            "{method} {path} {body}: {status} {v}"
        );
        assert!(
            matches!(code(&v), "invalid_admin_request" | "admin_not_found"),
            "{v}"
        );
        assert_eq!(p.control_state(), before, "{method} {path} {body}");
    }
}

#[test]
fn overrides_through_the_admin_api_apply_at_once_in_this_isolate() {
    let (p, gw) = setup(&[]);
    let client = |ip: &str| {
        let mut h = common::get("/shop/items", &[], None);
        h.client_ip = Some(ip.into());
        block_on(gw.handle(&p, h, FakeBody::Empty)).status
    };
    assert_eq!(client("203.0.113.7"), 200);
    let (status, v, _) = send(
        &gw,
        &p,
        call("POST", "/ip-blocks").body(r#"{"cidr":"203.0.113.0/24","reason":"bots","ttl_s":60}"#),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["outcome"].as_str(), v["block"]["cidr"].as_str()),
        (Some("changed"), Some("203.0.113.0/24"))
    );
    assert_eq!(v["block"]["expires_ms"].as_u64(), Some(p.now_ms() + 60_000));
    assert_eq!(
        client("203.0.113.7"),
        403,
        "no refresh wait in the isolate that made the change"
    );
    // The admin API itself is not subject to blocks.
    assert_eq!(
        send(&gw, &p, call("GET", "/health").ip("203.0.113.7")).0,
        200
    );
    let (_, list, _) = send(&gw, &p, call("GET", "/ip-blocks"));
    assert_eq!(list["blocks"].as_array().map(Vec::len), Some(1));
    let (status, _, _) = send(&gw, &p, call("DELETE", "/ip-blocks?cidr=203.0.113.0%2F24"));
    assert_eq!(status, 200);
    assert_eq!(client("203.0.113.7"), 200);

    let (status, v, _) = send(
        &gw,
        &p,
        call("POST", "/routes/shop/items/disable").body(r#"{"reason":"maintenance"}"#),
    );
    assert_eq!((status, v["route"].as_str()), (200, Some("shop/items")));
    assert_eq!(client("198.51.100.1"), 503);
    let (_, routes, _) = send(&gw, &p, call("GET", "/routes"));
    let items = routes["routes"]
        .as_array()
        .and_then(|r| r.iter().find(|x| x["route"] == "shop/items").cloned());
    assert_eq!(
        items.map(|i| (i["disabled"].clone(), i["reason"].clone())),
        Some((json!(true), json!("maintenance")))
    );
    assert_eq!(
        send(&gw, &p, call("POST", "/routes/shop/items/enable")).0,
        200
    );
    assert_eq!(client("198.51.100.1"), 200);
}

#[test]
fn control_object_down_is_503_and_changes_nothing() {
    let (p, gw) = setup(&[]);
    p.set_control_down(true);
    let (status, v, _) = send(
        &gw,
        &p,
        call("POST", "/ip-blocks").body(r#"{"cidr":"10.0.0.0/8"}"#),
    );
    assert_eq!((status, code(&v)), (503, "control_unavailable"));
    p.set_control_down(false);
    assert!(p.control_state().blocks.is_empty());
}

#[test]
fn health_config_and_validate() {
    let (p, gw) = setup(&[]);
    p.control_apply(&ControlCall::DisableRoute {
        route: "shop/items".into(),
        reason: String::new(),
    });
    let (_, h, _) = send(&gw, &p, call("GET", "/health"));
    assert_eq!(
        (
            h["status"].as_str(),
            h["config_version"].as_str(),
            h["control"]["revision"].as_u64(),
            h["control"]["disabled_routes"].as_u64()
        ),
        (Some("ok"), Some("v1"), Some(1), Some(1))
    );
    assert!(h["snapshot_version"].is_null());
    let (_, c, _) = send(&gw, &p, call("GET", "/config"));
    assert_eq!(
        (c["version"].as_str(), c["document"].clone()),
        (Some("v1"), config())
    );

    let invalid = json!({"pools": {"p": {"instances": [{"url": "ftp://x"}]}},
        "apis": [{"name": "a", "base_path": "/a", "pool": "nope", "routes": [{"name": "r", "path": "/{x"}]}]});
    let (status, v, _) = send(
        &gw,
        &p,
        call("POST", "/config/validate").body(&invalid.to_string()),
    );
    assert_eq!((status, v["valid"].as_bool()), (200, Some(false)));
    let mut paths: Vec<&str> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["path"].as_str())
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "$.apis[0].pool",
            "$.apis[0].routes[0].path",
            "$.pools.p.instances[0].url"
        ]
    );
    assert_eq!(v["error_count"], 3);
    // Reaching the admin prefix is an error too (as at activation).
    let reaching = json!({"pools": {"p": {"instances": [{"url": "http://b:1"}]}},
        "apis": [{"name": "a", "base_path": "/__edgegate", "pool": "p", "routes": [{"name": "r", "path": "/{x}/{*y}"}]}]});
    let (_, v, _) = send(
        &gw,
        &p,
        call("POST", "/config/validate").body(&reaching.to_string()),
    );
    assert_eq!(v["errors"][0]["path"], "$.apis[0].routes[0].path");
    // mTLS on a platform without client certificates: refused as at activation.
    p.set_supports_client_certificates(false);
    let mtls = json!({"pools": {"p": {"instances": [{"url": "http://b:1"}]}},
        "apis": [{"name": "a", "base_path": "/a", "pool": "p", "policies": {"auth": {"accept": ["mtls"], "mtls": {"certificates": [{"fingerprint_sha256": "ab", "consumer": "c"}]}}},
        "routes": [{"name": "r", "path": "/x"}]}]});
    let (_, v, _) = send(
        &gw,
        &p,
        call("POST", "/config/validate").body(&mtls.to_string()),
    );
    assert_eq!(v["valid"], false, "{v}");
    let (_, v, _) = send(
        &gw,
        &p,
        Call {
            body: Ok(vec![0xff, 0xfe]),
            ..call("POST", "/config/validate")
        },
    );
    assert_eq!(
        (v["valid"].as_bool(), v["errors"][0]["path"].as_str()),
        (Some(false), Some("$"))
    );
    let (_, v, _) = send(
        &gw,
        &p,
        call("POST", "/config/validate").body(&config().to_string()),
    );
    assert_eq!(
        (v["valid"].as_bool(), v["routes"].as_u64()),
        (Some(true), Some(2))
    );
}

#[test]
fn a_config_reaching_the_admin_api_is_never_activated() {
    let (p, gw) = setup(&[]);
    let reaching = json!({"pools": {"p": {"instances": [{"url": "http://b:1"}]}},
        "apis": [{"name": "a", "base_path": "/", "pool": "p", "routes": [{"name": "all", "path": "/{*rest}"}]}]});
    p.kv_put(
        &edgegate_core::config_store::version_key("v2"),
        &reaching.to_string(),
    );
    p.kv_put(edgegate_core::config_store::POINTER_KEY, "v2");
    let outcome = block_on(gw.config_store().refresh(&p));
    assert_eq!(
        outcome,
        edgegate_core::config_store::RefreshOutcome::Rejected("v2".into(), 1)
    );
    let rejected = p
        .take_logs()
        .into_iter()
        .find(|l| l.contains("config_rejected"))
        .expect("logged");
    assert!(
        rejected.contains("$.apis[0].routes[0].path") && rejected.contains("admin API prefix"),
        "{rejected}"
    );
}

#[test]
fn counters_by_limit_name_and_key_value() {
    let (p, gw) = setup(&[]);
    let hit = |ip: &str| {
        let mut h = common::get("/shop/limited", &[], None);
        h.client_ip = Some(ip.into());
        block_on(gw.handle(&p, h, FakeBody::Empty)).status
    };
    assert_eq!(
        (hit("2001:db8::1"), hit("2001:db8::2"), hit("2001:db8::3")),
        (200, 200, 429),
        "one /64"
    );
    let (status, v, _) = send(
        &gw,
        &p,
        call(
            "GET",
            "/rate-limits/counters?limit=per-ip&value=2001:db8::99",
        ),
    );
    assert_eq!(status, 200, "{v}");
    let c = &v["counters"][0];
    assert_eq!(
        (
            c["value"].as_str(),
            c["counter"].as_str(),
            c["decision"]["remaining"].as_u64()
        ),
        (
            Some("2001:db8:0:0::/64"),
            Some("rl|route:shop/limited|per-ip|ip|2001:db8:0:0::/64"),
            Some(0)
        )
    );
    let (_, v, _) = send(
        &gw,
        &p,
        call("GET", "/rate-limits/counters?limit=sharded&value=shop"),
    );
    assert_eq!(
        v["counters"].as_array().map(Vec::len),
        Some(2),
        "every shard"
    );
    let (_, v, _) = send(
        &gw,
        &p,
        call(
            "DELETE",
            "/rate-limits/counters?limit=per-ip&value=2001:db8::1&scope=route:shop/limited",
        ),
    );
    assert_eq!(v["counters"][0]["decision"]["remaining"], 2);
    assert_eq!(hit("2001:db8::1"), 200);
    let (_, v, _) = send(&gw, &p, call("GET", "/rate-limits"));
    let names: Vec<&str> = v["rate_limits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(names, ["per-ip", "sharded"]);
    for (path, status) in [
        ("/rate-limits/counters?limit=nope&value=x", 404),
        (
            "/rate-limits/counters?limit=per-ip&value=x&scope=gateway",
            404,
        ),
        ("/rate-limits/counters?limit=per-ip&value=not-an-ip", 400),
        ("/rate-limits/counters?value=x", 400),
    ] {
        let c = Call {
            path,
            ..call("GET", "")
        };
        assert_eq!(send(&gw, &p, c).0, status, "{path}");
    }
}

#[test]
fn openapi_lists_exactly_the_routed_endpoints() {
    let (p, gw) = setup(&[("EDGEGATE_ADMIN_PREFIX", "/ops")]);
    let head = RequestHead {
        method: "GET".into(),
        scheme: "https".into(),
        host: "h".into(),
        path: "/ops/openapi.json".into(),
        query: None,
        headers: HeaderList::from_pairs([("authorization", format!("Bearer {TOKEN}"))]),
        client_ip: None,
    };
    let target = gw.admin_match(&head).expect("admin");
    assert_eq!(target, AdminMatch::Endpoint("/openapi.json".into()));
    let resp = block_on(gw.handle_admin(&p, &head, target, async { Ok(Vec::new()) }));
    let ResponseBody::Bytes(bytes) = &resp.body else {
        panic!("bytes")
    };
    let doc: Value = serde_json::from_slice(bytes).expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"], json!([{"url": "/ops"}]));
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            documented.push(format!("{} {path}", method.to_ascii_uppercase()));
            let op = &item[method];
            assert!(
                op["operationId"].is_string() && op["responses"]["200"].is_object(),
                "{method} {path}"
            );
        }
    }
    let mut routed: Vec<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    documented.sort();
    routed.sort();
    assert_eq!(documented, routed);
    // Every $ref resolves.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/").skip(1) {
        let pointer = format!("/{}", &r[..r.find('"').expect("end")]);
        assert!(doc.pointer(&pointer).is_some(), "{pointer}");
    }
}

// === versions, activate, rollback and sync now (the Registry functions) ===

/// A release whose one route, `GET /shop/<label>`, tells which version serves.
fn release(label: &str) -> Value {
    json!({
        "pools": {"p": {"instances": [{"url": "http://10.0.0.1:8080"}]}},
        "apis": [{"name": "shop", "base_path": "/shop", "pool": "p", "routes": [
            {"name": label, "methods": ["GET"], "path": format!("/{label}")}
        ]}]
    })
}

/// Release `label` with snapshot `s-<label>`, signed by key 1.
fn signed_release(label: &str) -> Vec<u8> {
    sign(
        &bundle(
            label,
            &release(label),
            Some(&snapshot(&format!("s-{label}"))),
        ),
        1,
    )
}

/// A platform whose Registry serves release `r1` (nothing stored yet) and a gateway with the
/// admin API and these Registry settings (`None`: sync off).
fn registry_setup(
    registry: Option<&[(&str, &str)]>,
) -> (FakePlatform, Gateway, Rc<RefCell<Registry>>) {
    let p = FakePlatform::new();
    p.set_secret(TOKEN_SECRET, TOKEN);
    let reg = serve_on(&p, signed_release("r1"));
    let (admin, problems) = AdminSettings::from_vars(|_| None);
    assert!(problems.is_empty(), "{problems:?}");
    let gw = Gateway::new(RuntimeSettings {
        config_refresh_ms: 1000,
        snapshot_refresh_ms: 1000,
    })
    .with_admin(admin)
    .with_registry(match registry {
        None => Ok(None),
        Some(overrides) => parse_settings(&registry_vars(overrides)),
    });
    (p, gw, reg)
}

/// The status of `GET /shop/<label>` through the gateway (200: that release serves).
fn serves(gw: &Gateway, p: &FakePlatform, label: &str) -> u16 {
    common::send(gw, p, common::get(&format!("/shop/{label}"), &[], None)).status
}

fn admin_call<'a>(method: &'static str, path: &'a str) -> Call<'a> {
    Call {
        path,
        ..call(method, "")
    }
}

#[test]
fn sync_now_versions_activate_and_rollback_serve_at_once() {
    let (p, gw, reg) = registry_setup(Some(&[]));
    let id1 = id_of(&signed_release("r1"));
    let id2 = id_of(&signed_release("r2"));

    let (status, v, _) = send(&gw, &p, call("POST", "/sync"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["result"].as_str(),
            v["version"].as_str(),
            v["label"].as_str()
        ),
        (Some("activated"), Some(id1.as_str()), Some("r1"))
    );
    assert!(v["previous"].is_null());
    assert_eq!(
        v["key_id"].as_str(),
        Some(common::registry::key(1).2.as_str())
    );
    assert_eq!(serves(&gw, &p, "r1"), 200);
    let (status, v, _) = send(&gw, &p, call("POST", "/sync"));
    assert_eq!((status, v["result"].as_str()), (200, Some("not_modified")));

    // A new release: sync now activates it, and this isolate serves it at once (the clock
    // does not move, so the config store's refresh interval has not passed).
    reg.borrow_mut().bundle = signed_release("r2");
    let (status, v, _) = send(&gw, &p, call("POST", "/sync"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["result"].as_str(),
            v["version"].as_str(),
            v["previous"].as_str()
        ),
        (Some("activated"), Some(id2.as_str()), Some(id1.as_str()))
    );
    assert_eq!((serves(&gw, &p, "r2"), serves(&gw, &p, "r1")), (200, 404));
    let (_, h, _) = send(&gw, &p, call("GET", "/health"));
    assert_eq!(
        (h["config_version"].as_str(), h["snapshot_version"].as_str()),
        (Some(id2.as_str()), Some("s-r2")),
        "config and snapshot switch together: {h}"
    );

    let listing = |want_active: &str, want: &[(&str, &str, &str)]| {
        let (status, v, _) = send(&gw, &p, call("GET", "/config/versions"));
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["active"].as_str(), Some(want_active), "{v}");
        let got: Vec<(&str, &str, &str)> = v["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["id"].as_str().unwrap_or(""),
                    e["label"].as_str().unwrap_or(""),
                    e["source"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(got, want);
        v
    };
    let v = listing(&id2, &[(&id2, "r2", "sync"), (&id1, "r1", "sync")]);
    assert_eq!(
        v["versions"][0]["snapshot"]["shards"]
            .as_u64()
            .map(|n| n > 0),
        Some(true)
    );

    // Activate the older stored version: served at once, config and snapshot.
    let path = format!("/config/versions/{id1}/activate");
    let (status, v, _) = send(&gw, &p, admin_call("POST", &path));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["version"].as_str(),
            v["previous"].as_str(),
            v["source"].as_str()
        ),
        (Some(id1.as_str()), Some(id2.as_str()), Some("activate"))
    );
    assert_eq!((serves(&gw, &p, "r1"), serves(&gw, &p, "r2")), (200, 404));
    let (_, h, _) = send(&gw, &p, call("GET", "/health"));
    assert_eq!(
        (h["config_version"].as_str(), h["snapshot_version"].as_str()),
        (Some(id1.as_str()), Some("s-r1"))
    );
    listing(&id1, &[(&id1, "r1", "activate"), (&id2, "r2", "sync")]);

    // Roll back: the version active before this one, served at once.
    let (status, v, _) = send(&gw, &p, call("POST", "/config/rollback"));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["version"].as_str(),
            v["previous"].as_str(),
            v["source"].as_str()
        ),
        (Some(id2.as_str()), Some(id1.as_str()), Some("rollback"))
    );
    assert_eq!((serves(&gw, &p, "r2"), serves(&gw, &p, "r1")), (200, 404));
    listing(&id2, &[(&id2, "r2", "rollback"), (&id1, "r1", "activate")]);
    // The Registry still serves r2 with the same ETag: the sync leaves the rollback alone.
    assert_eq!(p.kv_text(POINTER_KEY).as_deref(), Some(id2.as_str()));

    // One audit line per call, with what it did.
    let audits: Vec<(String, String, String)> = p
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "audit" && v["endpoint"] != "health")
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap_or("").to_string();
            (s("endpoint"), s("outcome"), s("detail"))
        })
        .collect();
    let row = |e: &str, d: String| (e.to_string(), "ok".to_string(), d);
    assert_eq!(
        audits,
        vec![
            row("registry.sync", "activated".into()),
            row("registry.sync", "not_modified".into()),
            row("registry.sync", "activated".into()),
            row("config.versions", "2 versions".into()),
            row("config.activate", format!("{id2} -> {id1}")),
            row("config.versions", "2 versions".into()),
            row("config.rollback", format!("{id1} -> {id2}")),
            row("config.versions", "2 versions".into()),
        ]
    );
}

/// An admin call that the gateway's state refuses: nothing changes, the version that served
/// before keeps serving.
struct Refusal {
    name: &'static str,
    /// The Registry settings (`None`: sync off).
    registry: Option<Vec<(&'static str, &'static str)>>,
    /// Prepares the store and the Registry after `r1` was synced (and, with `two`, `r2`).
    prepare: fn(&FakePlatform, &RefCell<Registry>),
    /// Whether `r2` is synced after `r1` before the call.
    two: bool,
    method: &'static str,
    /// The path; `{r1}` is replaced by r1's version id.
    path: &'static str,
    status: u16,
    code: &'static str,
    /// The detail starts with the Registry error's code.
    detail: &'static str,
}

#[test]
fn refused_calls_change_nothing_and_the_last_good_version_serves() {
    fn nothing(_: &FakePlatform, _: &RefCell<Registry>) {}
    let reaching = json!({"pools": {"p": {"instances": [{"url": "http://b:1"}]}},
        "apis": [{"name": "a", "base_path": "/__edgegate", "pool": "p",
            "routes": [{"name": "all", "path": "/{*rest}"}]}]});
    // Without the admin API's rule it compiles: the refusal below is that rule's.
    edgegate_core::config::compile(&reaching.to_string(), "v").expect("compiles alone");
    let rows = vec![
        Refusal {
            name: "activate an unknown id",
            registry: Some(vec![]),
            prepare: nothing,
            two: false,
            method: "POST",
            path: "/config/versions/0123456789abcdef/activate",
            status: 404,
            code: "admin_not_found",
            detail: "version_unknown",
        },
        Refusal {
            name: "activate a stored version that no longer compiles",
            registry: Some(vec![]),
            prepare: |p, _| {
                let id1 = id_of(&signed_release("r1"));
                p.kv_put(
                    &version_key(&id1),
                    r#"{"pools": {}, "apis": [], "extra": 1}"#,
                );
            },
            two: true,
            method: "POST",
            path: "/config/versions/{r1}/activate",
            status: 409,
            code: "admin_conflict",
            detail: "config_invalid",
        },
        Refusal {
            name: "activate while KV refuses writes",
            registry: Some(vec![]),
            prepare: |p, _| p.set_kv_writes_down(true),
            two: true,
            method: "POST",
            path: "/config/versions/{r1}/activate",
            status: 503,
            code: "store_unavailable",
            detail: "store_failed",
        },
        Refusal {
            name: "rollback with nothing before",
            registry: Some(vec![]),
            prepare: nothing,
            two: false,
            method: "POST",
            path: "/config/rollback",
            status: 409,
            code: "admin_conflict",
            detail: "no_previous_version",
        },
        Refusal {
            name: "sync now with the sync off",
            registry: None,
            prepare: |_, reg| reg.borrow_mut().bundle = signed_release("r2"),
            two: false,
            method: "POST",
            path: "/sync",
            status: 409,
            code: "admin_conflict",
            detail: "registry_off",
        },
        Refusal {
            name: "sync now with invalid settings",
            registry: Some(vec![(
                "EDGEGATE_REGISTRY_URL",
                "http://registry.example/bundle",
            )]),
            prepare: |_, reg| reg.borrow_mut().bundle = signed_release("r2"),
            two: false,
            method: "POST",
            path: "/sync",
            status: 409,
            code: "admin_conflict",
            detail: "settings_invalid",
        },
        Refusal {
            name: "sync now, bad signature",
            registry: Some(vec![]),
            prepare: |_, reg| reg.borrow_mut().bundle = tamper(&signed_release("r2")),
            two: false,
            method: "POST",
            path: "/sync",
            status: 502,
            code: "registry_sync_failed",
            detail: "bundle_bad_signature",
        },
        Refusal {
            name: "sync now, unknown key",
            registry: Some(vec![]),
            prepare: |_, reg| {
                reg.borrow_mut().bundle = sign(&bundle("r2", &release("r2"), None), 3)
            },
            two: false,
            method: "POST",
            path: "/sync",
            status: 502,
            code: "registry_sync_failed",
            detail: "bundle_unknown_key",
        },
        Refusal {
            name: "sync now, Registry down",
            registry: Some(vec![]),
            prepare: |_, reg| {
                let mut reg = reg.borrow_mut();
                reg.bundle = signed_release("r2");
                reg.mode = Mode::Refused;
            },
            two: false,
            method: "POST",
            path: "/sync",
            status: 502,
            code: "registry_sync_failed",
            detail: "registry_unreachable",
        },
        Refusal {
            name: "sync now, Registry 503",
            registry: Some(vec![]),
            prepare: |_, reg| {
                let mut reg = reg.borrow_mut();
                reg.bundle = signed_release("r2");
                reg.mode = Mode::Status(503);
            },
            two: false,
            method: "POST",
            path: "/sync",
            status: 502,
            code: "registry_sync_failed",
            detail: "registry_status",
        },
        Refusal {
            name: "sync now, a config with a route under the admin prefix",
            registry: Some(vec![]),
            prepare: |_, reg| {
                let reaching = json!({"pools": {"p": {"instances": [{"url": "http://b:1"}]}},
                    "apis": [{"name": "a", "base_path": "/__edgegate", "pool": "p",
                        "routes": [{"name": "all", "path": "/{*rest}"}]}]});
                reg.borrow_mut().bundle = sign(&bundle("r2", &reaching, None), 1);
            },
            two: false,
            method: "POST",
            path: "/sync",
            status: 502,
            code: "registry_sync_failed",
            detail: "config_invalid",
        },
    ];
    let id1 = id_of(&signed_release("r1"));
    for r in rows {
        let (p, gw, reg) = registry_setup(r.registry.as_deref());
        // The state before the call, stored by the sync itself (the gateway may have it off).
        let rules = ConfigStore::new(0);
        block_on(sync(&p, &rules, &settings(&[]), true)).expect("r1");
        let mut active = "r1";
        if r.two {
            reg.borrow_mut().bundle = signed_release("r2");
            block_on(sync(&p, &rules, &settings(&[]), true)).expect("r2");
            active = "r2";
        }
        let pointer = p.kv_text(POINTER_KEY);
        assert_eq!(serves(&gw, &p, active), 200, "{}", r.name);
        let history = p.kv_text(HISTORY_KEY);
        (r.prepare)(&p, &reg);
        let path = r.path.replace("{r1}", &id1);
        let (status, v, resp) = send(&gw, &p, admin_call(r.method, &path));
        p.set_kv_writes_down(false);
        assert_eq!((status, code(&v)), (r.status, r.code), "{}: {v}", r.name);
        let detail = v["detail"].as_str().unwrap_or("");
        assert!(detail.starts_with(r.detail), "{}: {detail}", r.name);
        assert!(!detail.contains(REGISTRY_TOKEN), "{}: {detail}", r.name);
        assert_eq!(
            resp.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            r.name
        );
        if r.name.contains("admin prefix") {
            assert!(detail.contains("$.apis[0].routes[0].path"), "{detail}");
        }
        assert_eq!(
            p.kv_text(POINTER_KEY),
            pointer,
            "{}: pointer unchanged",
            r.name
        );
        assert_eq!(
            p.kv_text(HISTORY_KEY),
            history,
            "{}: history unchanged",
            r.name
        );
        p.advance(5_000);
        assert_eq!(
            serves(&gw, &p, active),
            200,
            "{}: {active} still serves",
            r.name
        );
        let other = if active == "r1" { "r2" } else { "r1" };
        assert_eq!(
            serves(&gw, &p, other),
            404,
            "{}: {other} is not served",
            r.name
        );
    }
}

#[test]
fn health_reports_the_registry_sync() {
    let on: &[(&str, &str)] = &[];
    let bad_url: &[(&str, &str)] = &[("EDGEGATE_REGISTRY_URL", "http://registry.example/x")];
    // (name, settings, what happens first, checks of the `registry` object given r1's id)
    type Vars<'a> = Option<&'a [(&'a str, &'a str)]>;
    type Check = fn(&Value, &str);
    let rows: Vec<(&str, Vars<'_>, &str, Check)> = vec![
        ("off", None, "", |r, _| {
            assert_eq!(r, &json!({"sync": "off"}))
        }),
        ("misconfigured", Some(bad_url), "", |r, _| {
            assert_eq!(r["sync"], "misconfigured");
            let e = r["error"].as_str().unwrap_or("");
            assert!(e.starts_with("EDGEGATE_REGISTRY_URL:"), "{e}");
        }),
        ("on, never synced", Some(on), "", |r, _| {
            assert_eq!(
                (r["sync"].as_str(), r["url"].as_str()),
                (Some("on"), Some(REGISTRY_URL))
            );
            assert!(
                r["last_sync"]["result"].is_null() && r["last_sync"]["last_attempt_ms"].is_null(),
                "{r}"
            );
        }),
        ("on, synced", Some(on), "sync", |r, id1| {
            let s = &r["last_sync"];
            assert_eq!(
                (
                    s["result"].as_str(),
                    s["version"].as_str(),
                    s["consecutive_failures"].as_u64()
                ),
                (Some("activated"), Some(id1), Some(0)),
                "{r}"
            );
            // The mock Registry's ETag: the hash of every byte it served.
            let etag = format!("\"{}\"", version_id(&signed_release("r1")));
            assert_eq!(s["etag"].as_str(), Some(etag.as_str()));
            assert!(s["last_success_ms"].as_u64().is_some() && s["error"].is_null());
        }),
        (
            "on, the last sync failed",
            Some(on),
            "sync, then a bad signature",
            |r, _| {
                let s = &r["last_sync"];
                assert_eq!(
                    (
                        s["result"].as_str(),
                        s["error"]["code"].as_str(),
                        s["consecutive_failures"].as_u64()
                    ),
                    (Some("failed"), Some("bundle_bad_signature"), Some(1)),
                    "{r}"
                );
                assert!(s["next_attempt_ms"].as_u64().is_some());
            },
        ),
        (
            "on, status unreadable",
            Some(on),
            "garbage status",
            |r, _| {
                assert!(r["last_sync"].is_null(), "{r}");
                assert!(
                    r["error"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("store_failed"),
                    "{r}"
                );
            },
        ),
    ];
    let id1 = id_of(&signed_release("r1"));
    for (name, registry, first, check) in rows {
        let (p, gw, reg) = registry_setup(registry);
        if first.starts_with("sync") {
            assert_eq!(send(&gw, &p, call("POST", "/sync")).0, 200, "{name}");
        }
        if first.ends_with("bad signature") {
            reg.borrow_mut().bundle = tamper(&signed_release("r2"));
            assert_eq!(send(&gw, &p, call("POST", "/sync")).0, 502, "{name}");
        }
        if first == "garbage status" {
            p.kv_put(STATUS_KEY, "not json");
        }
        let (status, h, _) = send(&gw, &p, call("GET", "/health"));
        assert_eq!(status, 200, "{name}: {h}");
        check(&h["registry"], &id1);
        assert!(
            !h.to_string().contains(REGISTRY_TOKEN),
            "{name}: no token in health"
        );
    }
}
