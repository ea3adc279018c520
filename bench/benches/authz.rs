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
    };
    let ip = "203.0.113.7".parse().ok();
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
                    client_ip: ip,
                    now_s: 1_700_000_000,
                    snapshot: Some(black_box(&snap)),
                },
            )
        })
    });
}

criterion_group!(benches, authz);
criterion_main!(benches);
