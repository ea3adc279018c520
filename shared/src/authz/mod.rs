//! The authorization stage: may this caller call this endpoint?
//!
//! Runs after authentication, for routes with an `authorization` policy. Rule sets are
//! evaluated in a fixed order — [`IpRule`], [`SubscriptionRule`], [`EnvironmentRule`],
//! [`ScopeRule`], [`RoleRule`], then Cedar ABAC (`cedar::AbacRule`, feature `cedar`) — each in its own [`RuleMode`]: `enforce` ends the request on
//! the first deny, `shadow` records the deny and goes on, `off` skips the rule set. The
//! subscription comes from the Registry snapshot held in the isolate
//! ([`crate::snapshot::Snapshot`]), so a decision takes microseconds and needs no I/O.
//!
//! [`authorize`] is pure: it returns the [`Verdict`] (the grant for the backend, the shadow
//! denies, and the enforced deny if any); the pipeline writes the audit events and answers.

#[cfg(feature = "cedar")]
pub mod cedar;
mod claims;
mod rules;

pub use claims::ClaimPath;
pub use rules::{
    AuthzPolicy, EnvironmentRule, IpRule, MethodClass, RoleRule, RuleMode, ScopeRule,
    SubscriptionRule,
};

use crate::auth::Principal;
use crate::problem::ErrorCode;
use crate::snapshot::{Cidr, ConsumerStatus, Snapshot, SubscriptionStatus};
use std::net::IpAddr;

/// Which rule set took a decision (the audit event's `rule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// [`IpRule`].
    Ip,
    /// [`SubscriptionRule`].
    Subscription,
    /// [`EnvironmentRule`].
    Environment,
    /// [`ScopeRule`].
    Scopes,
    /// [`RoleRule`].
    Roles,
    /// Cedar policies.
    Abac,
}

impl Rule {
    /// The rule's name in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Ip => "ip",
            Rule::Subscription => "subscription",
            Rule::Environment => "environment_isolation",
            Rule::Scopes => "scopes",
            Rule::Roles => "roles",
            Rule::Abac => "abac",
        }
    }
}

/// One rule's deny: the reason code and a detail for the audit log (no secrets: ids, rule
/// values and the client address only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    /// The rule set that denied.
    pub rule: Rule,
    /// The reason code (answered to the client when enforced).
    pub code: ErrorCode,
    /// What exactly failed, for the audit log.
    pub detail: String,
    /// For `insufficient_scope`: the scopes the route requires (for `WWW-Authenticate`).
    pub required_scopes: Option<String>,
}

impl Deny {
    fn new(rule: Rule, code: ErrorCode, detail: impl Into<String>) -> Deny {
        Deny {
            rule,
            code,
            detail: detail.into(),
            required_scopes: None,
        }
    }
}

/// What the backend and the access log learn from an allowed request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// The subscription that authorized the call.
    pub subscription_id: Option<String>,
    /// Its plan.
    pub plan_id: Option<String>,
    /// Its plan's rate plan (rate limits per plan).
    pub rate_plan: Option<String>,
    /// A priority subscription (rate limits do not apply).
    pub priority: bool,
    /// The caller's scopes together with the subscription's (sorted, no repeats); None when
    /// no subscription was matched (the caller's own scopes apply unchanged).
    pub scopes: Option<Vec<String>>,
}

/// The outcome of [`authorize`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The enforced deny that ends the request, if any.
    pub deny: Option<Deny>,
    /// Denies of rule sets in shadow mode (the request went on).
    pub shadow: Vec<Deny>,
    /// What to pass on when the request is allowed.
    pub grant: Grant,
}

/// What the authorization stage knows about a request.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The authenticated caller (None on routes without authentication).
    pub principal: Option<&'a Principal>,
    /// The API's name.
    pub api: &'a str,
    /// The API version, for versioned APIs.
    pub version: Option<&'a str>,
    /// The environment the request reached.
    pub environment: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The route's name.
    pub route: &'a str,
    /// The request headers (ABAC context).
    pub headers: &'a crate::headers::HeaderList,
    /// The client's country as the edge reports it (ABAC context).
    pub country: Option<&'a str>,
    /// The client's address (`CF-Connecting-IP` on Workers); None if the platform has none.
    pub client_ip: Option<IpAddr>,
    /// Now, unix seconds.
    pub now_s: i64,
    /// The Registry snapshot, if one is loaded.
    pub snapshot: Option<&'a Snapshot>,
}

/// Takes the authorization decision for one request. Runs per request; pure (no I/O); the
/// cost is a few hash probes and list scans.
///
/// Never fails: every problem is a [`Deny`] with its reason code (a subscription rule with
/// no snapshot loaded denies `snapshot_unavailable`).
pub fn authorize(policy: &AuthzPolicy, req: &AuthzRequest<'_>) -> Verdict {
    let mut verdict = Verdict::default();
    // Each step: Some(deny) → enforced ends, shadowed is recorded.
    macro_rules! step {
        ($mode:expr, $result:expr) => {
            if let Some(deny) = $result {
                match $mode {
                    RuleMode::Enforce => {
                        verdict.deny = Some(deny);
                        return verdict;
                    }
                    _ => verdict.shadow.push(deny),
                }
            }
        };
    }
    if let Some(rule) = policy.ip.as_ref().filter(|r| r.mode != RuleMode::Off) {
        step!(rule.mode, check_ip(rule, req.client_ip));
    }
    let mut sub_scopes: Option<Vec<&str>> = None;
    if let Some(rule) = policy
        .subscription
        .as_ref()
        .filter(|r| r.mode != RuleMode::Off)
    {
        match check_subscription(req) {
            Ok(found) => {
                verdict.grant.subscription_id = Some(found.id);
                verdict.grant.plan_id = Some(found.plan_id);
                verdict.grant.rate_plan = found.rate_plan;
                verdict.grant.priority = found.priority;
                sub_scopes = Some(found.scopes);
            }
            Err(deny) => step!(rule.mode, Some(deny)),
        }
    }
    if let Some(rule) = policy
        .environment
        .as_ref()
        .filter(|r| r.mode != RuleMode::Off)
    {
        step!(rule.mode, check_environment(rule, req));
    }
    // A configured claim applies to tokens; API keys and certificates carry their scopes in
    // their credential record.
    let scope_claim = policy.scopes.as_ref().and_then(|r| r.claim.as_ref());
    let caller_scopes = || -> Vec<String> {
        let mut out: Vec<String> = match (scope_claim, req.principal) {
            (_, None) => Vec::new(),
            (Some(path), Some(p)) if matches!(p.method, "jwt" | "introspection") => p
                .claims
                .as_ref()
                .map(|c| path.strings(&c.all))
                .unwrap_or_default(),
            (_, Some(p)) => p.scopes().to_vec(),
        };
        out.extend(sub_scopes.iter().flatten().map(|s| s.to_string()));
        out.sort();
        out.dedup();
        out
    };
    if let Some(rule) = policy.scopes.as_ref().filter(|r| r.mode != RuleMode::Off) {
        let have = caller_scopes();
        let missing: Vec<&str> = rule
            .required
            .iter()
            .filter(|s| !have.iter().any(|h| h == *s))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let mut deny = Deny::new(
                Rule::Scopes,
                ErrorCode::InsufficientScope,
                format!("missing scopes: {}", missing.join(" ")),
            );
            deny.required_scopes = Some(rule.required.join(" "));
            step!(rule.mode, Some(deny));
        }
    }
    if sub_scopes.is_some() {
        verdict.grant.scopes = Some(caller_scopes());
    }
    if let Some(rule) = policy.roles.as_ref().filter(|r| r.mode != RuleMode::Off) {
        step!(rule.mode, check_roles(rule, req));
    }
    #[cfg(feature = "cedar")]
    if let Some(rule) = policy.abac.as_ref().filter(|r| r.mode != RuleMode::Off) {
        let scopes = caller_scopes();
        step!(
            rule.mode,
            cedar::evaluate(rule, req, &scopes, &policy.classification)
        );
    }
    verdict
}

fn check_ip(rule: &IpRule, ip: Option<IpAddr>) -> Option<Deny> {
    ip_lists(&rule.allow, &rule.deny, ip)
        .map(|why| Deny::new(Rule::Ip, ErrorCode::IpDenied, format!("API IP list: {why}")))
}

/// Why `ip` fails the lists, if it does: deny first, then allow (an empty allow list lets
/// everyone in). An unknown client address fails a non-empty allow list.
fn ip_lists(allow: &[Cidr], deny: &[Cidr], ip: Option<IpAddr>) -> Option<String> {
    match ip {
        None if allow.is_empty() => None,
        None => Some("client address unknown".into()),
        Some(ip) => {
            if let Some(net) = deny.iter().find(|c| c.contains(ip)) {
                Some(format!("{ip} is in denied {net}"))
            } else if !allow.is_empty() && !allow.iter().any(|c| c.contains(ip)) {
                Some(format!("{ip} is in no allowed network"))
            } else {
                None
            }
        }
    }
}

struct Found<'a> {
    id: String,
    plan_id: String,
    rate_plan: Option<String>,
    priority: bool,
    scopes: Vec<&'a str>,
}

/// The first subscription of the caller's application to this API and environment that is
/// active, in its validity window, covers the version and admits the client address.
/// Otherwise the deny for the closest miss: an IP list beats a status, a status beats a
/// window, a window beats a version.
fn check_subscription<'a>(req: &AuthzRequest<'a>) -> Result<Found<'a>, Deny> {
    let deny = |code, detail: String| Deny::new(Rule::Subscription, code, detail);
    let snapshot = req.snapshot.ok_or_else(|| {
        deny(
            ErrorCode::SnapshotUnavailable,
            "no Registry snapshot is loaded".into(),
        )
    })?;
    let app = req.principal.and_then(|p| p.application()).ok_or_else(|| {
        deny(
            ErrorCode::NoSubscription,
            "the caller has no application".into(),
        )
    })?;
    if let Some(consumer) = snapshot.application(app).and_then(|a| a.consumer()) {
        if consumer.status() == ConsumerStatus::Suspended {
            return Err(deny(
                ErrorCode::ConsumerSuspended,
                format!(
                    "consumer {} of application {app} is suspended",
                    consumer.id()
                ),
            ));
        }
    }
    let mut best: Option<(u8, Deny)> = None;
    let mut miss = |rank: u8, d: Deny| {
        if best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, d));
        }
    };
    for sub in snapshot.subscriptions_for(app, req.api, req.environment) {
        let id = sub.id();
        if let Some(v) = req.version {
            if !sub.covers_version(v) {
                miss(
                    1,
                    deny(
                        ErrorCode::NoSubscription,
                        format!("subscription {id} does not cover version {v}"),
                    ),
                );
                continue;
            }
        }
        let before = sub.valid_from().is_some_and(|t| req.now_s < t);
        let after = sub.valid_until().is_some_and(|t| req.now_s >= t);
        match sub.status() {
            SubscriptionStatus::Active if !before && !after => {}
            SubscriptionStatus::Active => {
                miss(
                    2,
                    deny(
                        ErrorCode::SubscriptionExpired,
                        format!(
                            "subscription {id} is {} its validity window",
                            if before { "before" } else { "past" }
                        ),
                    ),
                );
                continue;
            }
            SubscriptionStatus::Expired => {
                miss(
                    2,
                    deny(
                        ErrorCode::SubscriptionExpired,
                        format!("subscription {id} has expired"),
                    ),
                );
                continue;
            }
            SubscriptionStatus::Suspended => {
                miss(
                    3,
                    deny(
                        ErrorCode::SubscriptionSuspended,
                        format!("subscription {id} is suspended"),
                    ),
                );
                continue;
            }
        }
        if let Some(why) = ip_lists(sub.ip_allow(), sub.ip_deny(), req.client_ip) {
            miss(
                4,
                Deny::new(
                    Rule::Subscription,
                    ErrorCode::IpDenied,
                    format!("subscription {id}: {why}"),
                ),
            );
            continue;
        }
        return Ok(Found {
            id: id.to_string(),
            plan_id: sub.plan_id().to_string(),
            rate_plan: sub.plan().map(|p| p.rate_plan().to_string()),
            priority: sub.priority(),
            scopes: sub.scopes().collect(),
        });
    }
    Err(best.map(|(_, d)| d).unwrap_or_else(|| {
        deny(
            ErrorCode::NoSubscription,
            format!(
                "application {app} has no subscription to {} in {}",
                req.api, req.environment
            ),
        )
    }))
}

fn check_environment(rule: &EnvironmentRule, req: &AuthzRequest<'_>) -> Option<Deny> {
    let deny = |detail: String| Deny::new(Rule::Environment, ErrorCode::WrongEnvironment, detail);
    let Some(p) = req.principal else {
        return Some(deny("anonymous callers have no environment".into()));
    };
    let from_claim;
    let env = match p.environment.as_deref() {
        Some(e) => Some(e),
        None => {
            from_claim = p
                .claims
                .as_ref()
                .and_then(|c| rule.claim.get(&c.all))
                .and_then(|v| v.as_str().map(str::to_string));
            from_claim.as_deref()
        }
    };
    match env {
        Some(e) if e == req.environment => None,
        Some(e) => Some(deny(format!(
            "a {e} credential called the {} environment",
            req.environment
        ))),
        None => Some(deny(format!(
            "the credential names no environment (claim {})",
            rule.claim
        ))),
    }
}

fn check_roles(rule: &RoleRule, req: &AuthzRequest<'_>) -> Option<Deny> {
    let class = rule.class.unwrap_or_else(|| MethodClass::of(req.method));
    let needed = rule.roles_for(class);
    if needed.is_empty() {
        return None;
    }
    let have = req
        .principal
        .and_then(|p| p.claims.as_ref())
        .map(|c| rule.claim.strings(&c.all))
        .unwrap_or_default();
    if needed.iter().any(|r| have.iter().any(|h| h == r)) {
        None
    } else {
        Some(Deny::new(
            Rule::Roles,
            ErrorCode::RoleDenied,
            format!(
                "{} needs one of the roles [{}]",
                class.as_str(),
                needed.join(", ")
            ),
        ))
    }
}
