//! ABAC with Cedar through the pipeline over the fake platform: policies validated at config
//! compile time, decisions from the caller, the endpoint and the request context (IP, country,
//! headers, time), forbid over permit, shadow mode, and the audit line.

mod common;

use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RequestHead};
use edgegate_core::platform::HttpResponse;
use edgegate_core::testing::{FakeBody, FakePlatform};
use futures::executor::block_on;
use serde_json::{json, Value};

const POLICIES: &str = r#"
@id("readers")
permit(principal, action in [Edgegate::Action::"GET", Edgegate::Action::"HEAD"], resource)
when { principal.roles.contains("viewer") };

@id("editors")
permit(principal, action == Edgegate::Action::"POST", resource)
when { principal.roles.contains("editor") && resource.classification != "pii" };

@id("embargo")
forbid(principal, action, resource)
when { context has country && context.country == "KP" };

@id("office-only")
forbid(principal, action, resource)
when { resource.route == "internal" && !(context has ip && context.ip.isInRange(ip("10.0.0.0/8"))) };

@id("tenant")
forbid(principal, action, resource)
when { context.headers has "x-tenant" && principal.claims has "tenant"
       && context.headers["x-tenant"] != principal.claims["tenant"] };
"#;

fn config(abac: Value) -> Value {
    json!({
        "identity_providers": { "corp": { "issuer": "https://idp.example",
            "introspection_endpoint": "https://idp.example/introspect" } },
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{
            "name": "docs", "base_path": "/docs", "pool": "p",
            "policies": {
                "auth": { "accept": ["introspection"], "introspection": { "provider": "corp" } },
                "authorization": { "abac": abac }
            },
            "routes": [
                { "name": "pages", "path": "/pages" },
                { "name": "internal", "path": "/internal" },
                { "name": "records", "path": "/records",
                  "policies": { "authorization": { "classification": "pii" } } }
            ]
        }]
    })
}

fn abac(mode: &str) -> Value {
    json!({ "mode": mode, "policies": POLICIES, "claims": ["tenant"],
            "context_headers": ["X-Tenant"] })
}

fn platform(doc: &Value) -> FakePlatform {
    let p = common::platform_with(doc);
    p.on_http(|req, _| {
        let body = String::from_utf8_lossy(req.body.as_deref().unwrap_or_default()).to_string();
        let claims = match body.split('&').find_map(|kv| kv.strip_prefix("token=")) {
            Some("viewer") => json!({"roles": ["viewer"], "tenant": "t1"}),
            Some("editor") => json!({"roles": ["editor", "viewer"]}),
            _ => json!({"roles": []}),
        };
        let mut v = json!({"active": true, "sub": "alice", "client_id": "app1"});
        for (k, x) in claims.as_object().into_iter().flatten() {
            v[k] = x.clone();
        }
        Ok(HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: v.to_string().into_bytes(),
        })
    });
    p.on_upstream(|_, _, _| Ok(FakePlatform::ok(&[], b"ok")));
    p
}

fn call(
    gw: &Gateway,
    p: &FakePlatform,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
    ip: Option<&str>,
) -> GatewayResponse<FakeBody> {
    let mut headers = vec![("authorization", format!("Bearer {token}"))];
    headers.extend(extra.iter().map(|(n, v)| (*n, v.to_string())));
    let head = RequestHead {
        method: method.into(),
        scheme: "https".into(),
        host: "api.example.com".into(),
        path: path.into(),
        query: None,
        headers: HeaderList::from_pairs(headers),
        client_ip: ip.map(str::to_string),
    };
    block_on(gw.handle(p, head, FakeBody::Empty))
}

/// (name, method, path, token, extra headers, client IP, country, status)
type Case<'a> = (
    &'a str,
    &'a str,
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    Option<&'a str>,
    Option<&'a str>,
    u16,
);

#[test]
fn decisions_from_caller_endpoint_and_context() {
    let p = platform(&config(abac("enforce")));
    let gw = common::gateway();
    #[rustfmt::skip]
    let cases: &[Case] = &[
        ("viewer reads", "GET", "/docs/pages", "viewer", &[], None, Some("DE"), 200),
        ("viewer may not write", "POST", "/docs/pages", "viewer", &[], None, None, 403),
        ("editor writes", "POST", "/docs/pages", "editor", &[], None, None, 200),
        ("editor may not write pii", "POST", "/docs/records", "editor", &[], None, None, 403),
        ("no role", "GET", "/docs/pages", "nobody", &[], None, None, 403),
        ("embargoed country", "GET", "/docs/pages", "viewer", &[], None, Some("KP"), 403),
        ("internal route from the office", "GET", "/docs/internal", "viewer", &[], Some("10.1.2.3"), None, 200),
        ("internal route from outside", "GET", "/docs/internal", "viewer", &[], Some("192.0.2.1"), None, 403),
        ("internal route, address unknown", "GET", "/docs/internal", "viewer", &[], None, None, 403),
        ("own tenant header", "GET", "/docs/pages", "viewer", &[("x-tenant", "t1")], None, None, 200),
        ("other tenant header", "GET", "/docs/pages", "viewer", &[("x-tenant", "t2")], None, None, 403),
        ("tenant header, no tenant claim", "GET", "/docs/pages", "editor", &[("x-tenant", "t2")], None, None, 200),
    ];
    for (name, method, path, token, extra, ip, country, status) in cases {
        p.set_country(*country);
        p.take_logs();
        let resp = call(&gw, &p, method, path, token, extra, *ip);
        assert_eq!(resp.status, *status, "{name}");
        if *status == 403 {
            assert_eq!(common::problem_code(&resp), "policy_denied", "{name}");
            let audit: Value = p
                .take_logs()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["kind"] == "audit")
                .unwrap_or_else(|| panic!("{name}: no audit line"));
            assert_eq!(
                (audit["rule"].as_str(), audit["reason"].as_str()),
                (Some("abac"), Some("policy_denied")),
                "{name}"
            );
            let detail = audit["detail"].as_str().unwrap_or_default();
            assert!(
                detail.starts_with("forbidden by ") || detail == "no policy permits",
                "{name}: {detail}"
            );
        }
    }
    p.set_country(Some("KP"));
    p.take_logs();
    call(&gw, &p, "GET", "/docs/pages", "viewer", &[], None);
    assert!(p
        .take_logs()
        .iter()
        .any(|l| l.contains("forbidden by embargo")));
}

#[test]
fn shadow_mode_logs_and_lets_through() {
    let p = platform(&config(abac("shadow")));
    let gw = common::gateway();
    p.take_logs();
    let resp = call(&gw, &p, "GET", "/docs/pages", "nobody", &[], None);
    assert_eq!(resp.status, 200);
    assert!(p
        .take_logs()
        .iter()
        .any(|l| l.contains("\"decision\":\"shadow\"") && l.contains("\"rule\":\"abac\"")));
}

#[test]
fn policies_that_do_not_parse_or_validate_are_config_errors() {
    let path = "$.apis[0].policies.authorization.abac.policies";
    #[rustfmt::skip]
    let cases: &[(&str, Value, &str)] = &[
        ("syntax", json!({"policies": "permit(principal, action, resource"}), path),
        ("unknown attribute", json!({"policies": "permit(principal, action, resource) when { principal.age > 3 };"}), path),
        ("unknown action", json!({"policies": r#"permit(principal, action == Edgegate::Action::"FETCH", resource);"#}), path),
        ("type error", json!({"policies": r#"permit(principal, action, resource) when { resource.api > 3 };"#}), path),
        ("undeclared header", json!({"policies": r#"permit(principal, action, resource) when { context.headers["x-other"] == "a" };"#}), path),
        ("no policies", json!({"policies": "  "}), path),
        ("bad claim path", json!({"policies": "permit(principal, action, resource);", "claims": ["a..b"]}), "$.apis[0].policies.authorization.abac.claims[0]"),
        ("bad header name", json!({"policies": "permit(principal, action, resource);", "context_headers": ["x y"]}), "$.apis[0].policies.authorization.abac.context_headers[0]"),
    ];
    for (name, abac, want) in cases {
        let (paths, errors) = common::config_errors(&config(abac.clone()));
        assert!(paths.iter().any(|p| p == want), "{name}: {errors:?}");
    }
    // The policies above compile when valid.
    edgegate_core::config::compile(&config(abac("enforce")).to_string(), "v")
        .unwrap_or_else(|e| panic!("{e:?}"));
}
