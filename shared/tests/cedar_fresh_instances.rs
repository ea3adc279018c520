//! Cedar policies where every request runs in a fresh instance (Spin: `reuses_instances()`
//! false, a new `Gateway` per request as `spin/src/lib.rs` builds it). The config store
//! recompiles the last good version on every request; the text it validated before (the
//! marker `config:serving` records its SHA-256 as `validated`) is recompiled without Cedar's
//! schema and strict validation ([`Validation::PreviouslyValidated`]), which must accept the
//! same configs and decide the same. Every other text — a new version, or other text under a
//! validated id — gets every check.

mod common;

use edgegate_core::authz::cedar::{compile_policies, parse_validated_policies};
use edgegate_core::authz::ClaimPath;
use edgegate_core::config::{compile, compile_with, Validation};
use edgegate_core::config_store::{version_key, POINTER_KEY, SERVING_KEY};
use edgegate_core::control::ControlCache;
use edgegate_core::headers::HeaderList;
use edgegate_core::pipeline::{Gateway, GatewayResponse, RuntimeSettings};
use edgegate_core::platform::HttpResponse;
use edgegate_core::testing::{FakeBody, FakePlatform};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const POLICIES: &str = r#"
@id("tenant-t1")
permit(principal, action in [Edgegate::Action::"GET", Edgegate::Action::"HEAD"], resource)
when { context.headers has "x-tenant" && context.headers["x-tenant"] == "t1" };

@id("embargo")
forbid(principal, action, resource)
when { context.headers has "x-tenant" && context.headers["x-tenant"] == "t1"
       && resource.route == "secret" };
"#;

/// Parses, but does not validate: `Caller` has no attribute `nope`.
const INVALID: &str = r#"permit(principal, action, resource) when { principal.nope == "x" };"#;

/// Anonymous routes `/docs/pages` and `/docs/secret` under one ABAC rule.
fn config(policies: &str) -> Value {
    json!({
        "pools": { "p": { "instances": [{ "url": "http://10.0.0.1:8080" }] } },
        "apis": [{
            "name": "docs", "base_path": "/docs", "pool": "p",
            "policies": { "authorization": { "abac": {
                "mode": "enforce", "policies": policies, "context_headers": ["X-Tenant"]
            } } },
            "routes": [
                { "name": "pages", "path": "/pages" },
                { "name": "secret", "path": "/secret" }
            ]
        }]
    })
}

fn platform(reuses_instances: bool) -> FakePlatform {
    let p = common::platform_with(&config(POLICIES));
    p.set_reuses_instances(reuses_instances);
    p.on_http(|_, _| {
        Ok(HttpResponse {
            status: 200,
            headers: HeaderList::new(),
            body: b"upstream".to_vec(),
        })
    });
    p
}

/// The gateway of one request, as `spin/src/lib.rs` builds it.
fn fresh_gateway() -> Gateway {
    Gateway::new(RuntimeSettings {
        config_refresh_ms: 0,
        snapshot_refresh_ms: 0,
    })
    .with_control(ControlCache::new(0))
}

fn fresh(p: &FakePlatform, path: &str, headers: &[(&str, &str)]) -> GatewayResponse<FakeBody> {
    common::send(&fresh_gateway(), p, common::get(path, headers, None))
}

/// The requests every decision test sends, with the tenant header or not.
const CASES: [(&str, Option<&str>); 6] = [
    ("/docs/pages", Some("t1")),
    ("/docs/pages", Some("t2")),
    ("/docs/pages", None),
    ("/docs/secret", Some("t1")),
    ("/docs/secret", Some("t2")),
    ("/docs/secret", None),
];

fn statuses(p: &FakePlatform, send: impl Fn(&str, &[(&str, &str)]) -> u16) -> Vec<u16> {
    let _ = p;
    CASES
        .iter()
        .map(|(path, tenant)| match tenant {
            Some(t) => send(path, &[("x-tenant", t)]),
            None => send(path, &[]),
        })
        .collect()
}

fn events(p: &FakePlatform, name: &str) -> Vec<Value> {
    p.take_logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == "event" && v["event"] == name)
        .collect()
}

fn stored_marker(p: &FakePlatform) -> Value {
    serde_json::from_str(&p.kv_text(SERVING_KEY).expect("marker written")).expect("JSON")
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_previously_validated_compile_accepts_the_same_configs() {
    let text = config(POLICIES).to_string();
    let full = compile(&text, "v1").expect("compiles");
    let quick = compile_with(&text, "v1", Validation::PreviouslyValidated).expect("compiles");
    assert_eq!(full.version(), quick.version());
    // The same policy set, policy by policy.
    let claims: Vec<ClaimPath> = Vec::new();
    let headers = vec!["x-tenant".to_string()];
    let validated = compile_policies(POLICIES, &claims, &headers).expect("validates");
    let parsed = parse_validated_policies(POLICIES).expect("parses");
    assert_eq!(validated.to_string(), parsed.to_string());
    // A parse error or an empty set is refused in both modes.
    for bad in ["permit(principal, action, resource) when {", "// nothing"] {
        assert!(compile_policies(bad, &claims, &headers).is_err(), "{bad}");
        assert!(parse_validated_policies(bad).is_err(), "{bad}");
        let text = config(bad).to_string();
        assert!(compile_with(&text, "v1", Validation::PreviouslyValidated).is_err());
    }
}

#[test]
fn only_full_validation_refuses_a_policy_that_does_not_validate() {
    // Why the store uses the quick mode only for text it validated before.
    let text = config(INVALID).to_string();
    let errors = compile_with(&text, "v1", Validation::Full).expect_err("refused");
    assert!(
        errors
            .0
            .iter()
            .any(|e| e.to_string().contains("does not validate")),
        "{errors:?}"
    );
    assert!(compile_with(&text, "v1", Validation::PreviouslyValidated).is_ok());
}

#[test]
fn fresh_instances_decide_as_a_reused_instance_does() {
    let reused = platform(true);
    let gw = common::gateway();
    let expected = statuses(&reused, |path, h| {
        common::send(&gw, &reused, common::get(path, h, None)).status
    });
    assert_eq!(expected, [200, 403, 403, 403, 403, 403]);

    let p = platform(false);
    // The first request validates and records the digest; the rest compile quickly.
    let first = fresh(&p, "/docs/pages", &[("x-tenant", "t1")]).status;
    assert_eq!(first, 200);
    assert_eq!(
        stored_marker(&p)["validated"],
        sha256_hex(&config(POLICIES).to_string())
    );
    let writes = p.kv_writes();
    let got = statuses(&p, |path, h| fresh(&p, path, h).status);
    assert_eq!(got, expected);
    assert_eq!(p.kv_writes(), writes, "the steady state writes nothing");
}

#[test]
fn a_new_version_with_an_invalid_policy_is_refused_on_fresh_instances() {
    let p = platform(false);
    assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t1")]).status, 200);
    p.kv_put(&version_key("v2"), &config(INVALID).to_string());
    p.kv_put(POINTER_KEY, "v2");
    p.take_logs();
    for _ in 0..3 {
        // v1 keeps serving: its policies still decide.
        assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t2")]).status, 403);
        assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t1")]).status, 200);
    }
    let rejected = events(&p, "config_rejected");
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0]["version"], "v2");
    assert_eq!(rejected[0]["serving"], "v1");
    assert!(
        rejected[0]["errors"]
            .to_string()
            .contains("does not validate"),
        "{rejected:#?}"
    );
    let marker = stored_marker(&p);
    assert_eq!(marker["version"], "v1");
    assert_eq!(marker["rejected"], "v2");
    assert_eq!(
        marker["validated"],
        sha256_hex(&config(POLICIES).to_string())
    );
}

#[test]
fn other_text_under_a_validated_version_id_is_validated_again() {
    let p = platform(false);
    assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t1")]).status, 200);
    // The document of the active version is overwritten in place with a policy that does
    // not validate: its digest is not the one the marker records, so it gets every check.
    p.kv_put(&version_key("v1"), &config(INVALID).to_string());
    p.take_logs();
    let resp = fresh(&p, "/docs/pages", &[("x-tenant", "t1")]);
    assert_eq!(resp.status, 503);
    assert_eq!(common::problem_code(&resp), "no_config");
    assert_eq!(events(&p, "config_rejected").len(), 1);

    // Valid new text under the same id is validated and served (as the last good version of
    // an id the marker records as rejected: quietly, and validated on every request, since
    // the marker keeps the digest of the text it last activated).
    let other = POLICIES.replace("\"t1\"", "\"t2\"");
    p.kv_put(&version_key("v1"), &config(&other).to_string());
    assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t2")]).status, 200);
    assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t1")]).status, 403);
    assert_eq!(
        stored_marker(&p)["validated"],
        sha256_hex(&config(POLICIES).to_string())
    );
}

#[test]
fn a_marker_without_a_digest_gets_one_after_a_full_compile() {
    let p = platform(false);
    // As written before the marker recorded digests.
    p.kv_put(SERVING_KEY, r#"{"version":"v1","rejected":null}"#);
    assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t1")]).status, 200);
    assert_eq!(
        stored_marker(&p)["validated"],
        sha256_hex(&config(POLICIES).to_string())
    );
    assert!(events(&p, "config_activated").is_empty());
    let writes = p.kv_writes();
    assert_eq!(fresh(&p, "/docs/pages", &[("x-tenant", "t1")]).status, 200);
    assert_eq!(p.kv_writes(), writes);
}

#[test]
fn reused_instances_never_touch_the_marker() {
    let p = platform(true);
    let gw = common::gateway();
    for _ in 0..2 {
        common::send(
            &gw,
            &p,
            common::get("/docs/pages", &[("x-tenant", "t1")], None),
        );
    }
    assert_eq!(p.kv_text(SERVING_KEY), None);
}
