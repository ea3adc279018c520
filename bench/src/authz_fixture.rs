//! The fixtures of the authorization decision benches (issue 4), one copy for the criterion
//! bench (`benches/authz.rs`, native) and the wasm crate (`wasm-snapshot`, driven by
//! `bench/load/snapshot-wasm.mjs`), so that both measure exactly the same decisions:
//!
//! - the 5-rule policy ([`rules_policy`]: IP lists, subscription, environment isolation,
//!   scopes in shadow mode, roles) over a generated snapshot, and the callers it is asked about
//!   ([`callers`]: every 50th plain active subscription, up to 1,024: 721 with
//!   [`SUBSCRIPTIONS`] and [`SEED`]);
//! - the 20 Cedar policies ([`policies_20`], [`abac_policy`]) and their one caller
//!   ([`abac_principal`]) and request ([`Authz::abac_request`]).
//!
//! [`Authz::build`] sets all of it up and checks it; it never panics (the wasm module has no
//! panic output to show), every failed check is a [`FixtureError`].

use edgegate_core::auth::{Principal, TokenClaims};
use edgegate_core::authz::cedar::{compile_policies, AbacRule};
use edgegate_core::authz::{
    authorize, AuthzPolicy, AuthzRequest, ClaimPath, EnvironmentRule, IpRule, RoleRule, RuleMode,
    ScopeRule, SubscriptionRule,
};
use edgegate_core::headers::HeaderList;
use edgegate_core::snapshot::{
    decode, encode, generate, Snapshot, SnapshotDoc, SubscriptionStatus,
};
use serde_json::json;
use std::fmt;
use std::net::IpAddr;
use std::rc::Rc;

/// Subscriptions in the generated snapshot the benches use.
pub const SUBSCRIPTIONS: usize = 100_000;

/// Seed of the generated snapshot the benches use.
pub const SEED: u64 = 42;

/// "Now" of every request, unix seconds.
pub const NOW_S: i64 = 1_700_000_000;

/// At most this many callers ([`callers`]).
pub const MAX_CALLERS: usize = 1024;

/// A setup step that failed: what it was, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureError(pub String);

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FixtureError {}

fn fail(what: impl Into<String>) -> FixtureError {
    FixtureError(what.into())
}

fn path(p: &str) -> Result<ClaimPath, FixtureError> {
    ClaimPath::parse(p).map_err(|e| fail(format!("claim path {p}: {e}")))
}

/// A caller of the 5-rule bench: its principal and the endpoint it calls.
#[derive(Debug, Clone)]
pub struct Caller {
    /// A JWT caller: application of the subscription, roles `viewer` and `editor`, scopes
    /// `read` and `orders:read`, the subscription's environment.
    pub principal: Principal,
    /// The subscription's API.
    pub api: String,
    /// The subscription's environment.
    pub environment: String,
    /// The subscription's first version (`v1` where it covers every version).
    pub version: String,
}

/// Callers with an active subscription (no validity window, no IP lists): every 50th such
/// subscription of `doc`, at most [`MAX_CALLERS`]. A few are denied all the same (suspended
/// consumer), as in real traffic.
pub fn callers(doc: &SnapshotDoc) -> Vec<Caller> {
    doc.subscriptions
        .iter()
        .filter(|s| {
            s.status == SubscriptionStatus::Active
                && s.valid_from.is_none()
                && s.valid_until.is_none()
                && s.ip_allow.is_empty()
                && s.ip_deny.is_empty()
        })
        .step_by(50)
        .take(MAX_CALLERS)
        .map(|s| {
            let mut all = serde_json::Map::new();
            all.insert("roles".into(), json!(["viewer", "editor"]));
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
            let version = if s.versions[0] == "*" {
                "v1"
            } else {
                &s.versions[0]
            };
            Caller {
                principal: Principal {
                    method: "jwt",
                    claims: Some(Rc::new(claims)),
                    environment: Some(s.environment.clone()),
                },
                api: s.api.clone(),
                environment: s.environment.clone(),
                version: version.to_string(),
            }
        })
        .collect()
}

/// The 5-rule policy: deny list 198.51.100.0/24, subscription, environment isolation (claim
/// `env`), scope `read` (shadow), roles (claim `roles`: `viewer` reads, `editor` writes).
pub fn rules_policy() -> Result<AuthzPolicy, FixtureError> {
    Ok(AuthzPolicy {
        ip: Some(IpRule {
            mode: RuleMode::Enforce,
            allow: Vec::new(),
            deny: vec!["198.51.100.0/24"
                .parse()
                .map_err(|_| fail("deny list CIDR"))?],
        }),
        subscription: Some(SubscriptionRule {
            mode: RuleMode::Enforce,
        }),
        environment: Some(EnvironmentRule {
            mode: RuleMode::Enforce,
            claim: path("env")?,
        }),
        scopes: Some(ScopeRule {
            mode: RuleMode::Shadow,
            required: vec!["read".into()],
            claim: None,
        }),
        roles: Some(RoleRule {
            mode: RuleMode::Enforce,
            claim: path("roles")?,
            read: vec!["viewer".into()],
            write: vec!["editor".into()],
            admin: Vec::new(),
            class: None,
        }),
        hide_with_404: false,
        classification: "internal".into(),
        abac: None,
    })
}

/// Twenty Cedar policies (16 permits, one per API, and 4 forbids), as an API platform might
/// write them; the caller is allowed by one permit and checked by every forbid.
pub fn policies_20() -> String {
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

/// The [`policies_20`] Cedar policies (claim `tenant` and header `x-tenant` exposed to them,
/// roles from claim `roles`) and no other rule.
pub fn abac_policy() -> Result<AuthzPolicy, FixtureError> {
    let claims = vec![path("tenant")?];
    let headers = vec!["x-tenant".to_string()];
    let policies = compile_policies(&policies_20(), &claims, &headers)
        .map_err(|e| fail(format!("policies: {}", e.join("; "))))?;
    let count = policies.policies().count();
    if count != 20 {
        return Err(fail(format!("{count} policies compiled, not 20")));
    }
    Ok(AuthzPolicy {
        abac: Some(AbacRule {
            mode: RuleMode::Enforce,
            policies,
            claims,
            headers,
            roles_claim: path("roles")?,
        }),
        classification: "internal".into(),
        ..AuthzPolicy::default()
    })
}

/// The caller the Cedar policies see: a JWT of application `app1`, role `viewer`, scope
/// `read`, claim `tenant` = `t1`.
pub fn abac_principal() -> Principal {
    let mut all = serde_json::Map::new();
    all.insert("roles".into(), json!(["viewer"]));
    all.insert("tenant".into(), json!("t1"));
    Principal {
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
    }
}

/// Everything the two decision benches run on.
pub struct Authz {
    /// The decoded snapshot the 5-rule policy checks subscriptions against.
    pub snapshot: Snapshot,
    /// Callers with an active subscription ([`callers`]), cycled by the 5-rule bench.
    pub callers: Vec<Caller>,
    /// [`rules_policy`].
    pub rules: AuthzPolicy,
    /// [`abac_policy`].
    pub abac: AuthzPolicy,
    /// [`abac_principal`].
    pub abac_principal: Principal,
    /// `x-tenant: t1`, exposed to the Cedar policies.
    pub abac_headers: HeaderList,
    /// No headers (the 5-rule requests).
    pub no_headers: HeaderList,
    /// 203.0.113.7: not in the 5-rule policy's deny list, nor in the Cedar `office-net` range.
    pub client_ip: Option<IpAddr>,
}

impl Authz {
    /// Sets up the benches over a generated snapshot of `n` subscriptions with `seed` (the
    /// benches: [`SUBSCRIPTIONS`], [`SEED`]) and checks the Cedar request: allowed from DE,
    /// denied from KP. Err if there are no callers or a check fails.
    pub fn build(n: usize, seed: u64) -> Result<Authz, FixtureError> {
        let doc = generate(n, seed);
        let snapshot =
            decode(&encode(&doc)).map_err(|e| fail(format!("generated snapshot: {e}")))?;
        let callers = callers(&doc);
        drop(doc);
        if callers.is_empty() {
            return Err(fail("no callers"));
        }
        let authz = Authz {
            snapshot,
            callers,
            rules: rules_policy()?,
            abac: abac_policy()?,
            abac_principal: abac_principal(),
            abac_headers: HeaderList::from_pairs([("x-tenant", "t1".to_string())]),
            no_headers: HeaderList::new(),
            client_ip: "203.0.113.7".parse().ok(),
        };
        let req = authz.abac_request();
        let verdict = authorize(&authz.abac, &req);
        if verdict.deny.is_some() {
            return Err(fail(format!("Cedar request denied: {verdict:?}")));
        }
        let from_kp = AuthzRequest {
            country: Some("KP"),
            ..req
        };
        if authorize(&authz.abac, &from_kp).deny.is_none() {
            return Err(fail("Cedar request from KP allowed"));
        }
        Ok(authz)
    }

    /// The 5-rule request of `caller` (GET list from DE, no headers) against `snapshot`
    /// (normally [`Authz::snapshot`]; a parameter so that a bench can pass it through
    /// `black_box`).
    pub fn rules_request<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        caller: &'a Caller,
    ) -> AuthzRequest<'a> {
        AuthzRequest {
            principal: Some(&caller.principal),
            api: &caller.api,
            version: Some(&caller.version),
            environment: &caller.environment,
            method: "GET",
            route: "list",
            headers: &self.no_headers,
            country: Some("DE"),
            client_ip: self.client_ip,
            now_s: NOW_S,
            snapshot: Some(snapshot),
        }
    }

    /// The Cedar request: [`Authz::abac_principal`] calls GET api7 v1 `list` in production
    /// from DE with `x-tenant: t1`, no snapshot.
    pub fn abac_request(&self) -> AuthzRequest<'_> {
        AuthzRequest {
            principal: Some(&self.abac_principal),
            api: "api7",
            version: Some("v1"),
            environment: "production",
            method: "GET",
            route: "list",
            headers: &self.abac_headers,
            country: Some("DE"),
            client_ip: self.client_ip,
            now_s: NOW_S,
            snapshot: None,
        }
    }

    /// How many of the callers the 5-rule policy allows.
    pub fn rules_allowed(&self) -> usize {
        self.callers
            .iter()
            .filter(|c| {
                let req = self.rules_request(&self.snapshot, c);
                authorize(&self.rules, &req).deny.is_none()
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_snapshot_builds_and_allows_most_callers() {
        let authz = Authz::build(10_000, SEED).unwrap_or_else(|e| panic!("{e}"));
        assert!(!authz.callers.is_empty());
        let allowed = authz.rules_allowed();
        assert!(allowed > 0 && allowed <= authz.callers.len());
        assert_eq!(policies_20().matches("@id(").count(), 20);
    }
}
