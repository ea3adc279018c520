//! The authorization decision (issue 4) against a generated 100k-subscription snapshot:
//! IP lists, subscription, environment isolation, scopes and roles, as one route would run
//! them. Target: ≤ 2 µs native per decision without Cedar.
//!
//! Run: `cargo bench -p edgegate-bench --bench authz -- --warm-up-time 1 --measurement-time 3`

use criterion::{criterion_group, criterion_main, Criterion};
use edgegate_core::auth::{Principal, TokenClaims};
use edgegate_core::authz::{
    authorize, AuthzPolicy, AuthzRequest, ClaimPath, EnvironmentRule, IpRule, RoleRule, RuleMode,
    ScopeRule, SubscriptionRule,
};
use edgegate_core::snapshot::{decode, encode, generate, SubscriptionStatus};
use std::hint::black_box;
use std::rc::Rc;

fn path(p: &str) -> ClaimPath {
    ClaimPath::parse(p).unwrap_or_else(|e| panic!("{e}"))
}

fn authz(c: &mut Criterion) {
    let doc = generate(100_000, 42);
    let snap = decode(&encode(&doc)).unwrap_or_else(|e| panic!("generated snapshot: {e}"));
    // Callers with an active subscription (no window, no IP lists); a few are denied all the
    // same (suspended consumer), as in real traffic.
    let callers: Vec<(Principal, &str, &str, &str)> = doc
        .subscriptions
        .iter()
        .filter(|s| {
            s.status == SubscriptionStatus::Active
                && s.valid_from.is_none()
                && s.valid_until.is_none()
                && s.ip_allow.is_empty()
                && s.ip_deny.is_empty()
        })
        .step_by(50)
        .take(1024)
        .map(|s| {
            let mut all = serde_json::Map::new();
            all.insert("roles".into(), serde_json::json!(["viewer", "editor"]));
            let claims = TokenClaims {
                issuer: Some("https://idp.example".into()),
                subject: Some("alice".into()),
                audiences: vec!["orders".into()],
                expires: None,
                not_before: None,
                issued_at: None,
                application: Some(s.application_id.clone()),
                scopes: vec!["read".into(), "orders:read".into()],
                all,
            };
            let principal = Principal {
                method: "jwt",
                claims: Some(Rc::new(claims)),
                environment: Some(s.environment.clone()),
            };
            let version = if s.versions[0] == "*" {
                "v1"
            } else {
                &s.versions[0]
            };
            (principal, s.api.as_str(), s.environment.as_str(), version)
        })
        .collect();
    let policy = AuthzPolicy {
        ip: Some(IpRule {
            mode: RuleMode::Enforce,
            allow: Vec::new(),
            deny: vec!["198.51.100.0/24".parse().unwrap_or_else(|_| unreachable!())],
        }),
        subscription: Some(SubscriptionRule {
            mode: RuleMode::Enforce,
        }),
        environment: Some(EnvironmentRule {
            mode: RuleMode::Enforce,
            claim: path("env"),
        }),
        scopes: Some(ScopeRule {
            mode: RuleMode::Shadow,
            required: vec!["read".into()],
            claim: None,
        }),
        roles: Some(RoleRule {
            mode: RuleMode::Enforce,
            claim: path("roles"),
            read: vec!["viewer".into()],
            write: vec!["editor".into()],
            admin: Vec::new(),
            class: None,
        }),
        hide_with_404: false,
        classification: "internal".into(),
        abac: None,
    };
    let ip = "203.0.113.7".parse().ok();
    let headers = edgegate_core::headers::HeaderList::new();
    let mut allowed = 0;
    for (principal, api, env, version) in &callers {
        let v = authorize(
            &policy,
            &AuthzRequest {
                principal: Some(principal),
                api,
                version: Some(version),
                environment: env,
                method: "GET",
                route: "list",
                headers: &headers,
                country: Some("DE"),
                client_ip: ip,
                now_s: 1_700_000_000,
                snapshot: Some(&snap),
            },
        );
        allowed += usize::from(v.deny.is_none());
    }
    eprintln!("{allowed} of {} sample callers allowed", callers.len());

    let mut i = 0;
    c.bench_function("authorize/5-rules/100k-snapshot", |b| {
        b.iter(|| {
            let (principal, api, env, version) = &callers[i % callers.len()];
            i += 1;
            authorize(
                black_box(&policy),
                &AuthzRequest {
                    principal: Some(principal),
                    api,
                    version: Some(version),
                    environment: env,
                    method: "GET",
                    route: "list",
                    headers: &headers,
                    country: Some("DE"),
                    client_ip: ip,
                    now_s: 1_700_000_000,
                    snapshot: Some(black_box(&snap)),
                },
            )
        })
    });
}

/// Twenty Cedar policies (16 permits, one per API, and 4 forbids), as an API platform might
/// write them; the caller is allowed by one permit and checked by every forbid.
fn policies_20() -> String {
    let mut out = String::new();
    for i in 0..16 {
        out.push_str(&format!(
            "@id(\"read-api{i}\")\npermit(principal, action in [Edgegate::Action::\"GET\", \
             Edgegate::Action::\"HEAD\"], resource) when {{ resource.api == \"api{i}\" && \
             principal.roles.contains(\"viewer\") && context.time > 0 }};\n"
        ));
    }
    out.push_str(
        "@id(\"embargo\")\nforbid(principal, action, resource) when { context has country && \
         [\"KP\", \"IR\"].contains(context.country) };\n\
         @id(\"pii\")\nforbid(principal, action, resource) when { resource.classification == \"pii\" \
         && !principal.scopes.contains(\"pii:read\") };\n\
         @id(\"office-net\")\nforbid(principal, action, resource) when { resource.environment == \
         \"internal\" && !(context has ip && context.ip.isInRange(ip(\"10.0.0.0/8\"))) };\n\
         @id(\"tenant\")\nforbid(principal, action, resource) when { context.headers has \"x-tenant\" \
         && principal.claims has \"tenant\" && context.headers[\"x-tenant\"] != principal.claims[\"tenant\"] };\n",
    );
    out
}

fn abac(c: &mut Criterion) {
    use edgegate_core::authz::cedar::{compile_policies, AbacRule};
    let claims = vec![path("tenant")];
    let headers_exposed = vec!["x-tenant".to_string()];
    let policies = compile_policies(&policies_20(), &claims, &headers_exposed)
        .unwrap_or_else(|e| panic!("policies: {e:?}"));
    assert_eq!(policies.policies().count(), 20);
    let policy = AuthzPolicy {
        abac: Some(AbacRule {
            mode: RuleMode::Enforce,
            policies,
            claims,
            headers: headers_exposed,
            roles_claim: path("roles"),
        }),
        classification: "internal".into(),
        ..AuthzPolicy::default()
    };
    let mut all = serde_json::Map::new();
    all.insert("roles".into(), serde_json::json!(["viewer"]));
    all.insert("tenant".into(), serde_json::json!("t1"));
    let principal = Principal {
        method: "jwt",
        claims: Some(Rc::new(TokenClaims {
            issuer: Some("https://idp.example".into()),
            subject: Some("alice".into()),
            audiences: vec![],
            expires: None,
            not_before: None,
            issued_at: None,
            application: Some("app1".into()),
            scopes: vec!["read".into()],
            all,
        })),
        environment: None,
    };
    let headers = edgegate_core::headers::HeaderList::from_pairs([("x-tenant", "t1".to_string())]);
    let req = AuthzRequest {
        principal: Some(&principal),
        api: "api7",
        version: Some("v1"),
        environment: "production",
        method: "GET",
        route: "list",
        headers: &headers,
        country: Some("DE"),
        client_ip: "203.0.113.7".parse().ok(),
        now_s: 1_700_000_000,
        snapshot: None,
    };
    let verdict = authorize(&policy, &req);
    assert!(verdict.deny.is_none(), "{verdict:?}");
    let denied = authorize(
        &policy,
        &AuthzRequest {
            country: Some("KP"),
            ..req
        },
    );
    assert!(denied.deny.is_some());
    c.bench_function("authorize/abac-20-policies", |b| {
        b.iter(|| authorize(black_box(&policy), black_box(&req)))
    });
}

criterion_group!(benches, authz, abac);
criterion_main!(benches);
