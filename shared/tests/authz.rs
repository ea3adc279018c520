//! Authorization through the pipeline over the fake platform: a Registry snapshot in KV, API
//! keys and introspected tokens as callers, every rule and reason code, shadow mode, audit
//! events, outputs to the backend, and snapshot activation.

mod common;

use edgegate_core::auth::credential_key;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead};
use edgegate_core::platform::{Clock, HttpResponse};
use edgegate_core::snapshot::{encode, from_json, shard, MANIFEST_KEY, SHARD_PREFIX};
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn key_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The Registry snapshot of these tests; `now` is the platform's clock in unix seconds.
fn snapshot_json(version: &str, now: i64) -> Value {
    let cred = |key: &str, app: &str, consumer: &str, env: Option<&str>, scopes: Value| {
        let mut c = json!({"kind": "api_key", "key": key_hash(key), "consumer_id": consumer,
            "application_id": app, "status": "active", "scopes": scopes});
        if let Some(e) = env {
            c["environment"] = e.into();
        }
        c
    };
    let sub = |id: &str, app: &str, api: &str, env: &str, status: &str| {
        json!({"id": id, "application_id": app, "api": api, "versions": ["v1"],
            "environment": env, "plan_id": "gold", "status": status, "scopes": ["orders:write"]})
    };
    let mut expired = sub("s-billing", "app1", "billing", "production", "active");
    expired["valid_until"] = (now - 10).into();
    let mut later = sub("s-later", "app2", "billing", "production", "active");
    later["valid_from"] = (now + 3600).into();
    let mut geo = sub("s-geo", "app1", "geo", "production", "active");
    geo["ip_allow"] = json!(["2001:db8::/32", "203.0.113.0/24"]);
    geo["ip_deny"] = json!(["2001:db8::dead"]);
    json!({
        "version": version,
        "consumers": [
            {"id": "c1", "name": "Acme", "status": "active"},
            {"id": "c2", "name": "Late payer", "status": "suspended"}
        ],
        "applications": [
            {"id": "app1", "consumer_id": "c1", "name": "web"},
            {"id": "app2", "consumer_id": "c1", "name": "batch"},
            {"id": "app3", "consumer_id": "c2", "name": "old"}
        ],
        "credentials": [
            cred("k-prod", "app1", "c1", Some("production"), json!(["orders:read"])),
            cred("k-sandbox", "app1", "c1", Some("sandbox"), json!(["orders:read"])),
            cred("k-app2", "app2", "c1", Some("production"), json!([])),
            cred("k-noenv", "app1", "c1", None, json!(["orders:read"])),
            cred("k-app3", "app3", "c2", Some("production"), json!([]))
        ],
        "plans": [{"id": "gold", "tier": "gold", "rate_plan": "rp-gold"}],
        "subscriptions": [
            sub("s-prod", "app1", "orders", "production", "active"),
            sub("s-sandbox", "app1", "orders", "sandbox", "active"),
            sub("s-susp", "app2", "orders", "production", "suspended"),
            sub("s-app3", "app3", "orders", "production", "active"),
            expired, later, geo,
            sub("s-hidden", "app1", "hidden", "production", "suspended")
        ]
    })
}

/// Encodes, shards (small shards, so joining is exercised) and stores a snapshot.
fn put_snapshot(p: &FakePlatform, doc: &Value) {
    let doc = from_json(&doc.to_string()).expect("valid snapshot");
    let bytes = encode(&doc);
    let (manifest, parts) = shard(&bytes, 300);
    assert!(parts.len() > 1, "several shards");
    for (i, part) in parts.iter().enumerate() {
        p.kv_put_bytes(&manifest.shard_key(SHARD_PREFIX, i as u32), part);
    }
    p.kv_put(
        MANIFEST_KEY,
        &serde_json::to_string(&manifest).expect("json"),
    );
}

fn config() -> Value {
    let auth = json!({"accept": ["api_key", "introspection"],
        "api_key": {"header": "x-api-key"}, "introspection": {"provider": "corp"}});
    let envs = json!([
        {"name": "production", "hosts": ["api.example.com"]},
        {"name": "sandbox", "hosts": ["sandbox.example.com"]}
    ]);
    let sub_env = json!({"subscription": {}, "environment_isolation": {}});
    json!({
        "identity_providers": { "corp": { "issuer": "https://idp.example",
            "introspection_endpoint": "https://idp.example/introspect" } },
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "gateway": { "policies": { "auth": auth } },
        "apis": [
            {
                "name": "orders", "base_path": "/orders",
                "versions": [{"name": "v1", "pool": "p"}, {"name": "v2", "pool": "p"}],
                "environments": envs,
                "policies": { "authorization": sub_env },
                "routes": [
                    { "name": "list", "methods": ["GET"], "path": "/items",
                      "policies": { "authorization": { "scopes": { "required": ["orders:read"] } } } },
                    { "name": "create", "methods": ["POST"], "path": "/items",
                      "policies": { "authorization": {
                          "scopes": { "required": ["orders:write"] },
                          "roles": { "write": ["editor"] } } } },
                    { "name": "admin", "path": "/admin",
                      "policies": { "authorization": {
                          "roles": { "claim": "realm.roles", "admin": ["admin"], "class": "admin" } } } },
                    { "name": "mixed", "path": "/mixed",
                      "policies": { "authorization": {
                          "scopes": { "required": ["orders:read"], "claim": "permissions" } } } },
                    { "name": "shadow", "path": "/shadow",
                      "policies": { "authorization": {
                          "subscription": { "mode": "shadow" },
                          "environment_isolation": { "mode": "off" },
                          "scopes": { "mode": "shadow", "required": ["nope"] } } } }
                ]
            },
            { "name": "billing", "base_path": "/billing", "versions": [{"name": "v1", "pool": "p"}],
              "environments": envs, "policies": { "authorization": sub_env },
              "routes": [{ "name": "r", "path": "/{*rest}" }] },
            { "name": "geo", "base_path": "/geo", "versions": [{"name": "v1", "pool": "p"}],
              "environments": envs,
              "policies": { "authorization": { "subscription": {},
                  "ip": { "deny": ["198.51.100.0/24"] } } },
              "routes": [{ "name": "r", "path": "/{*rest}" }] },
            { "name": "hidden", "base_path": "/hidden", "versions": [{"name": "v1", "pool": "p"}],
              "environments": envs,
              "policies": { "authorization": { "subscription": {}, "hide_with_404": true } },
              "routes": [{ "name": "r", "path": "/{*rest}" }] },
            { "name": "open", "base_path": "/open", "pool": "p",
              "policies": { "auth": { "accept": ["anonymous"] },
                  "authorization": { "ip": { "allow": ["10.0.0.0/8"], "deny": ["10.9.9.9"] } } },
              "routes": [{ "name": "r", "path": "/{*rest}" }] }
        ]
    })
}

/// Introspection answers by token: `tok-<name>` → these claims (all active, app1 unless set).
fn introspection(req: &edgegate_core::platform::HttpRequest) -> Value {
    let body = String::from_utf8_lossy(req.body.as_deref().unwrap_or_default()).to_string();
    let token = body
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or_default();
    let base = json!({"active": true, "sub": "alice", "client_id": "app1", "env": "production"});
    let extra = match token {
        "tok-reader" => json!({"scope": "orders:read"}),
        "tok-editor" => json!({"scope": "orders:read", "roles": ["editor"]}),
        "tok-admin" => json!({"realm": {"roles": ["admin"]}}),
        "tok-sandbox" => json!({"scope": "orders:read", "env": "sandbox"}),
        "tok-noenv" => json!({"scope": "orders:read", "env": null}),
        "tok-noapp" => json!({"scope": "orders:read", "client_id": null}),
        "tok-perms" => json!({"permissions": ["orders:read"]}),
        _ => json!({"active": false}),
    };
    let mut v = base;
    for (k, x) in extra.as_object().into_iter().flatten() {
        if x.is_null() {
            v.as_object_mut().map(|o| o.remove(k));
        } else {
            v[k] = x.clone();
        }
    }
    v
}

fn platform() -> FakePlatform {
    let p = common::platform_with(&config());
    let now = (p.now_ms() / 1000) as i64;
    put_snapshot(&p, &snapshot_json("snap-1", now));
    p.on_http(|req, _| {
        Ok(HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: introspection(req).to_string().into_bytes(),
        })
    });
    p
}

struct Call<'a> {
    method: &'a str,
    host: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, String)>,
    client_ip: Option<&'a str>,
}

fn key(k: &str) -> Vec<(&'static str, String)> {
    vec![("x-api-key", k.to_string())]
}

fn bearer(t: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {t}"))]
}

fn send(gw: &Gateway, p: &FakePlatform, c: &Call<'_>) -> GatewayResponse<FakeBody> {
    let head = RequestHead {
        method: c.method.into(),
        scheme: "https".into(),
        host: c.host.into(),
        path: c.path.into(),
        query: None,
        headers: HeaderList::from_pairs(c.headers.iter().map(|(n, v)| (*n, v.clone()))),
        client_ip: c.client_ip.map(str::to_string),
    };
    block_on(gw.handle(p, head, FakeBody::Empty))
}

const PROD: &str = "api.example.com";
const SANDBOX: &str = "sandbox.example.com";

#[test]
fn every_rule_and_reason_code() {
    let p = platform();
    let gw = common::gateway();
    p.on_upstream(|_, _, _| Ok(FakePlatform::ok(&[], b"ok")));
    #[rustfmt::skip]
    let cases: Vec<(&str, Call, u16, &str)> = vec![
        ("key with subscription and scope", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: key("k-prod"), client_ip: None }, 200, ""),
        ("sandbox key on sandbox", Call { method: "GET", host: SANDBOX, path: "/orders/v1/items", headers: key("k-sandbox"), client_ip: None }, 200, ""),
        ("sandbox key on production", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: key("k-sandbox"), client_ip: None }, 403, "wrong_environment"),
        ("production key on sandbox", Call { method: "GET", host: SANDBOX, path: "/orders/v1/items", headers: key("k-prod"), client_ip: None }, 403, "wrong_environment"),
        ("key without environment", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: key("k-noenv"), client_ip: None }, 403, "wrong_environment"),
        ("version not subscribed", Call { method: "GET", host: PROD, path: "/orders/v2/items", headers: key("k-prod"), client_ip: None }, 403, "no_subscription"),
        ("suspended subscription", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: key("k-app2"), client_ip: None }, 403, "subscription_suspended"),
        ("suspended consumer", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: key("k-app3"), client_ip: None }, 403, "consumer_suspended"),
        ("window passed", Call { method: "GET", host: PROD, path: "/billing/v1/x", headers: key("k-prod"), client_ip: None }, 403, "subscription_expired"),
        ("window not begun", Call { method: "GET", host: PROD, path: "/billing/v1/x", headers: key("k-app2"), client_ip: None }, 403, "subscription_expired"),
        ("no subscription to the API", Call { method: "GET", host: SANDBOX, path: "/billing/v1/x", headers: key("k-sandbox"), client_ip: None }, 403, "no_subscription"),
        ("token: missing scope", Call { method: "POST", host: PROD, path: "/orders/v1/items", headers: bearer("tok-admin"), client_ip: None }, 403, "role_denied"),
        ("token: editor writes (scope from the subscription)", Call { method: "POST", host: PROD, path: "/orders/v1/items", headers: bearer("tok-editor"), client_ip: None }, 200, ""),
        ("token: reader may not write", Call { method: "POST", host: PROD, path: "/orders/v1/items", headers: bearer("tok-reader"), client_ip: None }, 403, "role_denied"),
        ("token: admin class, nested claim", Call { method: "GET", host: PROD, path: "/orders/v1/admin", headers: bearer("tok-admin"), client_ip: None }, 200, ""),
        ("token: admin class without the role", Call { method: "GET", host: PROD, path: "/orders/v1/admin", headers: bearer("tok-editor"), client_ip: None }, 403, "role_denied"),
        ("token: env claim sandbox on production", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: bearer("tok-sandbox"), client_ip: None }, 403, "wrong_environment"),
        ("token: no env claim", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: bearer("tok-noenv"), client_ip: None }, 403, "wrong_environment"),
        ("token: no application", Call { method: "GET", host: PROD, path: "/orders/v1/items", headers: bearer("tok-noapp"), client_ip: None }, 403, "no_subscription"),
        ("IPv6 in the subscription's allow list", Call { method: "GET", host: PROD, path: "/geo/v1/x", headers: key("k-prod"), client_ip: Some("2001:db8::1") }, 200, ""),
        ("IPv4 in the subscription's allow list", Call { method: "GET", host: PROD, path: "/geo/v1/x", headers: key("k-prod"), client_ip: Some("203.0.113.9") }, 200, ""),
        ("IPv6 outside the allow list", Call { method: "GET", host: PROD, path: "/geo/v1/x", headers: key("k-prod"), client_ip: Some("2001:db9::1") }, 403, "ip_denied"),
        ("IPv6 in the deny list", Call { method: "GET", host: PROD, path: "/geo/v1/x", headers: key("k-prod"), client_ip: Some("2001:db8::dead") }, 403, "ip_denied"),
        ("no client address with an allow list", Call { method: "GET", host: PROD, path: "/geo/v1/x", headers: key("k-prod"), client_ip: None }, 403, "ip_denied"),
        ("API deny list before the subscription", Call { method: "GET", host: PROD, path: "/geo/v1/x", headers: key("k-app2"), client_ip: Some("198.51.100.7") }, 403, "ip_denied"),
        ("anonymous route, allowed network", Call { method: "GET", host: PROD, path: "/open/x", headers: vec![], client_ip: Some("10.1.2.3") }, 200, ""),
        ("anonymous route, denied host", Call { method: "GET", host: PROD, path: "/open/x", headers: vec![], client_ip: Some("10.9.9.9") }, 403, "ip_denied"),
        ("anonymous route, outside the allow list", Call { method: "GET", host: PROD, path: "/open/x", headers: vec![], client_ip: Some("192.0.2.1") }, 403, "ip_denied"),
        ("hidden API answers 404", Call { method: "GET", host: PROD, path: "/hidden/v1/x", headers: key("k-prod"), client_ip: None }, 404, "route_not_found"),
        ("claim-path scopes: token", Call { method: "GET", host: PROD, path: "/orders/v1/mixed", headers: bearer("tok-perms"), client_ip: None }, 200, ""),
        ("claim-path scopes: token without the claim", Call { method: "GET", host: PROD, path: "/orders/v1/mixed", headers: bearer("tok-reader"), client_ip: None }, 403, "insufficient_scope"),
        ("claim-path scopes: an API key uses its record's", Call { method: "GET", host: PROD, path: "/orders/v1/mixed", headers: key("k-prod"), client_ip: None }, 200, ""),
        ("shadow rules let through", Call { method: "GET", host: PROD, path: "/orders/v1/shadow", headers: key("k-app2"), client_ip: None }, 200, ""),
    ];
    for (name, call, status, code) in &cases {
        p.take_logs();
        let resp = send(&gw, &p, call);
        assert_eq!(
            (resp.status, common::problem_code(&resp).as_str()),
            (*status, *code),
            "{name}"
        );
        let logs = p.take_logs();
        let audits: Vec<Value> = logs
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "audit")
            .collect();
        if *status == 403 || *status == 404 {
            let deny = audits
                .iter()
                .find(|a| a["decision"] == "deny")
                .unwrap_or_else(|| panic!("{name}: no audit deny in {logs:?}"));
            let want = if *status == 404 {
                "subscription_suspended"
            } else {
                code
            };
            assert_eq!(deny["reason"], *want, "{name}");
            assert!(
                deny["rule"].is_string() && deny["detail"].is_string(),
                "{name}"
            );
            // Routes without a subscription rule or API keys do not consult the snapshot.
            let consulted = !call.path.starts_with("/open");
            assert_eq!(deny["snapshot_version"] == "snap-1", consulted, "{name}");
        }
        for line in &logs {
            assert!(
                !line.contains("k-prod") && !line.contains("tok-"),
                "{name}: a credential in the log: {line}"
            );
        }
    }
}

#[test]
fn insufficient_scope_says_which_scopes_in_www_authenticate() {
    let p = platform();
    let gw = common::gateway();
    let mut doc = config();
    doc["apis"][0]["routes"][0]["policies"]["authorization"]["scopes"]["required"] =
        json!(["orders:read", "orders:export"]);
    p.kv_put(
        &edgegate_core::config_store::version_key("v1"),
        &doc.to_string(),
    );
    let resp = send(
        &gw,
        &p,
        &Call {
            method: "GET",
            host: PROD,
            path: "/orders/v1/items",
            headers: bearer("tok-reader"),
            client_ip: None,
        },
    );
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (403, "insufficient_scope")
    );
    assert_eq!(
        resp.header("www-authenticate").as_deref(),
        Some(r#"Bearer error="insufficient_scope", scope="orders:read orders:export""#)
    );
}

#[test]
fn the_backend_and_the_access_log_get_the_subscription_and_granted_scopes() {
    let p = platform();
    let gw = common::gateway();
    p.on_upstream(|_, _, _| Ok(FakePlatform::ok(&[], b"ok")));
    let mut headers = key("k-prod");
    headers.push(("x-edgegate-subscription", "forged".into()));
    let resp = send(
        &gw,
        &p,
        &Call {
            method: "GET",
            host: PROD,
            path: "/orders/v1/items",
            headers,
            client_ip: None,
        },
    );
    assert_eq!(resp.status, 200);
    let sent = p.sent();
    let (req, _) = sent.last().expect("proxied");
    let h = |n: &str| req.headers.get(n).map(str::to_string);
    assert_eq!(h("x-edgegate-subscription").as_deref(), Some("s-prod"));
    assert_eq!(
        h("x-edgegate-scopes").as_deref(),
        Some("orders:read orders:write")
    );
    let access: Value = p
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["kind"] == "access")
        .expect("access line");
    assert_eq!(access["subscription"], "s-prod");
    assert_eq!(access["scopes"], "orders:read orders:write");
}

#[test]
fn shadow_mode_logs_what_it_would_deny() {
    let p = platform();
    let gw = common::gateway();
    p.on_upstream(|_, _, _| Ok(FakePlatform::ok(&[], b"ok")));
    p.take_logs();
    let resp = send(
        &gw,
        &p,
        &Call {
            method: "GET",
            host: PROD,
            path: "/orders/v1/shadow",
            headers: key("k-app2"),
            client_ip: None,
        },
    );
    assert_eq!(resp.status, 200);
    let shadows: Vec<(String, String)> = p
        .take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "audit" && v["decision"] == "shadow")
        .map(|v| {
            (
                v["rule"].as_str().unwrap_or_default().to_string(),
                v["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        shadows,
        [
            (
                "subscription".to_string(),
                "subscription_suspended".to_string()
            ),
            ("scopes".to_string(), "insufficient_scope".to_string())
        ]
    );
}

#[test]
fn snapshot_activation_rejection_and_outage() {
    let p = common::platform_with(&config());
    let gw = common::gateway();
    p.on_upstream(|_, _, _| Ok(FakePlatform::ok(&[], b"ok")));
    let prod = || Call {
        method: "GET",
        host: PROD,
        path: "/orders/v1/items",
        headers: key("k-prod"),
        client_ip: None,
    };

    // No snapshot yet: the subscription rule cannot be checked (and the key is unknown).
    p.kv_put(&credential_key("k-prod"), &json!({"consumer_id": "c1", "application_id": "app1", "status": "active", "environment": "production", "scopes": ["orders:read"]}).to_string());
    let resp = send(&gw, &p, &prod());
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (503, "snapshot_unavailable")
    );

    let now = (p.now_ms() / 1000) as i64;
    put_snapshot(&p, &snapshot_json("snap-1", now));
    p.advance(1_001);
    assert_eq!(send(&gw, &p, &prod()).status, 200);
    assert!(p
        .take_logs()
        .iter()
        .any(|l| l.contains("\"snapshot_activated\"") && l.contains("snap-1")));

    // A manifest whose shards are corrupt is refused once; the previous snapshot serves on.
    let mut bad = snapshot_json("snap-2", now);
    bad["subscriptions"] = json!([]);
    let bytes = encode(&from_json(&bad.to_string()).expect("valid"));
    let (manifest, _) = shard(&bytes, usize::MAX);
    p.kv_put_bytes(&manifest.shard_key(SHARD_PREFIX, 0), b"EGSN\x02garbage");
    p.kv_put(
        MANIFEST_KEY,
        &serde_json::to_string(&manifest).expect("json"),
    );
    p.advance(1_001);
    assert_eq!(send(&gw, &p, &prod()).status, 200, "snap-1 still serves");
    let logs = p.take_logs();
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("\"snapshot_rejected\""))
            .count(),
        1,
        "{logs:?}"
    );
    p.advance(1_001);
    send(&gw, &p, &prod());
    assert!(
        !p.take_logs()
            .iter()
            .any(|l| l.contains("\"snapshot_rejected\"")),
        "not retried"
    );

    // A store outage keeps the active snapshot.
    p.set_kv_down(true);
    p.advance(1_001);
    assert_eq!(send(&gw, &p, &prod()).status, 200);
    p.set_kv_down(false);

    // A good new snapshot (the subscription suspended) takes over.
    let mut next = snapshot_json("snap-3", now);
    next["subscriptions"][0]["status"] = "suspended".into();
    put_snapshot(&p, &next);
    p.advance(1_001);
    let resp = send(&gw, &p, &prod());
    assert_eq!(
        (resp.status, common::problem_code(&resp).as_str()),
        (403, "subscription_suspended")
    );
}

#[test]
fn api_keys_come_from_the_snapshot_before_the_store() {
    let p = platform();
    let gw = common::gateway();
    p.on_upstream(|_, _, _| Ok(FakePlatform::ok(&[], b"ok")));
    // The store says revoked; the snapshot (newer, authoritative) says active.
    p.kv_put(
        &credential_key("k-prod"),
        &json!({"consumer_id": "c1", "status": "revoked"}).to_string(),
    );
    let call = Call {
        method: "GET",
        host: PROD,
        path: "/orders/v1/items",
        headers: key("k-prod"),
        client_ip: None,
    };
    assert_eq!(send(&gw, &p, &call).status, 200);
    // A key only in the store still works (issued after the snapshot).
    p.kv_put(&credential_key("k-new"), &json!({"consumer_id": "c1", "application_id": "app1", "status": "active", "environment": "production", "scopes": ["orders:read"]}).to_string());
    let call = Call {
        method: "GET",
        host: PROD,
        path: "/orders/v1/items",
        headers: key("k-new"),
        client_ip: None,
    };
    assert_eq!(send(&gw, &p, &call).status, 200);
}

#[test]
fn authorization_config_errors_have_paths() {
    let base = config();
    let mut cases: Vec<(&str, Value, &str)> = Vec::new();
    let mut d = base.clone();
    d["apis"][0]["routes"][0]["policies"]["authorization"]["scopes"]["required"] = json!([]);
    cases.push((
        "no scopes",
        d,
        "$.apis[0].routes[0].policies.authorization.scopes.required",
    ));
    let mut d = base.clone();
    d["apis"][0]["routes"][0]["policies"]["authorization"]["scopes"]["required"] = json!(["a b"]);
    cases.push((
        "scope with a space",
        d,
        "$.apis[0].routes[0].policies.authorization.scopes.required[0]",
    ));
    let mut d = base.clone();
    d["apis"][4]["policies"]["authorization"]["ip"]["allow"] = json!(["10.0.0.1/8"]);
    cases.push((
        "CIDR host bits",
        d,
        "$.apis[4].policies.authorization.ip.allow[0]",
    ));
    let mut d = base.clone();
    d["apis"][4]["policies"]["authorization"]["ip"] = json!({});
    cases.push(("empty IP rule", d, "$.apis[4].policies.authorization.ip"));
    let mut d = base.clone();
    d["apis"][0]["routes"][2]["policies"]["authorization"]["roles"] =
        json!({"class": "admin", "read": ["x"]});
    cases.push((
        "admin class without admin roles",
        d,
        "$.apis[0].routes[2].policies.authorization.roles.admin",
    ));
    let mut d = base.clone();
    d["apis"][0]["routes"][2]["policies"]["authorization"]["roles"]["claim"] =
        json!("realm..roles");
    cases.push((
        "bad claim path",
        d,
        "$.apis[0].routes[2].policies.authorization.roles.claim",
    ));
    let mut d = base.clone();
    d["apis"][4]["policies"]["authorization"]["subscription"] = json!({});
    d["apis"][4]["policies"]
        .as_object_mut()
        .map(|o| o.remove("auth"));
    d["gateway"]["policies"]
        .as_object_mut()
        .map(|o| o.remove("auth"));
    cases.push((
        "subscription rule without auth",
        d,
        "$.apis[4].routes[0].policies.authorization",
    ));
    let mut d = base.clone();
    d["apis"][0]["policies"]["authorization"]["subscription"] = json!({"mode": "sometimes"});
    cases.push((
        "unknown mode",
        d,
        "$.apis[0].policies.authorization.subscription.mode",
    ));
    for (name, doc, path) in cases {
        let (paths, errors) = common::config_errors(&doc);
        assert!(paths.iter().any(|p| p == path), "{name}: {errors:?}");
    }
}
