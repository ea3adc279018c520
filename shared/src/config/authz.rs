//! Compiling `policies.authorization` sections. Each level (gateway, API, route) is checked
//! once at its own path; a route's policy then takes each rule set from the most specific
//! level that sets it.

use super::compile::Ctx;
use super::spec::{AuthorizationSpec, MethodClassSpec, RuleModeSpec};
use crate::authz::{
    AuthzPolicy, ClaimPath, EnvironmentRule, IpRule, MethodClass, RoleRule, RuleMode, ScopeRule,
    SubscriptionRule,
};
use crate::snapshot::Cidr;
use std::rc::Rc;

/// One level's rule sets, as set there (None: inherited).
#[derive(Debug, Clone, Default)]
pub(super) struct AuthzLevel {
    ip: Option<IpRule>,
    subscription: Option<SubscriptionRule>,
    environment: Option<EnvironmentRule>,
    scopes: Option<ScopeRule>,
    roles: Option<RoleRule>,
    classification: Option<String>,
    hide_with_404: Option<bool>,
    #[cfg(feature = "cedar")]
    abac: Option<crate::authz::cedar::AbacRule>,
    #[cfg(not(feature = "cedar"))]
    #[allow(dead_code)]
    abac: Option<()>,
}

fn mode(m: RuleModeSpec) -> RuleMode {
    match m {
        RuleModeSpec::Off => RuleMode::Off,
        RuleModeSpec::Shadow => RuleMode::Shadow,
        RuleModeSpec::Enforce => RuleMode::Enforce,
    }
}

fn claim_path(text: Option<&str>, default: &str, path: &str, cx: &mut Ctx) -> ClaimPath {
    let text = text.unwrap_or(default);
    ClaimPath::parse(text).unwrap_or_else(|e| {
        cx.err(path, e);
        ClaimPath::parse(default).unwrap_or_else(|_| unreachable!("defaults are valid paths"))
    })
}

fn words(list: &[String], path: &str, what: &str, cx: &mut Ctx) -> Vec<String> {
    for (i, w) in list.iter().enumerate() {
        if w.is_empty() || w.chars().any(|c| c.is_whitespace() || c.is_control()) {
            cx.err(
                format!("{path}[{i}]"),
                format!("{w:?} is not a {what} (non-empty, no spaces)"),
            );
        }
    }
    list.to_vec()
}

fn cidrs(list: &[String], path: &str, cx: &mut Ctx) -> Vec<Cidr> {
    list.iter()
        .enumerate()
        .filter_map(|(i, c)| match c.parse::<Cidr>() {
            Ok(c) => Some(c),
            Err(e) => {
                cx.err(format!("{path}[{i}]"), format!("CIDR {c:?}: {e}"));
                None
            }
        })
        .collect()
}

/// Checks one level's `authorization` section (at `path`) and compiles its rule sets.
pub(super) fn authz_level(spec: &AuthorizationSpec, path: &str, cx: &mut Ctx) -> AuthzLevel {
    let subscription = spec
        .subscription
        .as_ref()
        .map(|s| SubscriptionRule { mode: mode(s.mode) });
    let environment = spec
        .environment_isolation
        .as_ref()
        .map(|s| EnvironmentRule {
            mode: mode(s.mode),
            claim: claim_path(
                s.claim.as_deref(),
                "env",
                &format!("{path}.environment_isolation.claim"),
                cx,
            ),
        });
    let scopes = spec.scopes.as_ref().map(|s| {
        let p = format!("{path}.scopes");
        if s.required.is_empty() && s.mode != RuleModeSpec::Off {
            cx.err(
                format!("{p}.required"),
                "list at least one scope (or set `mode: off`)",
            );
        }
        ScopeRule {
            mode: mode(s.mode),
            required: words(&s.required, &format!("{p}.required"), "scope", cx),
            claim: s
                .claim
                .as_deref()
                .map(|c| claim_path(Some(c), "scope", &format!("{p}.claim"), cx)),
        }
    });
    let roles = spec.roles.as_ref().map(|s| {
        let p = format!("{path}.roles");
        let class = s.class.map(|c| match c {
            MethodClassSpec::Read => MethodClass::Read,
            MethodClassSpec::Write => MethodClass::Write,
            MethodClassSpec::Admin => MethodClass::Admin,
        });
        if s.mode != RuleModeSpec::Off {
            if s.read.is_empty() && s.write.is_empty() && s.admin.is_empty() {
                cx.err(
                    &p,
                    "list roles for `read`, `write` or `admin` (or set `mode: off`)",
                );
            }
            if class == Some(MethodClass::Admin) && s.admin.is_empty() {
                cx.err(
                    format!("{p}.admin"),
                    "`class: admin` needs the roles allowed to use these endpoints",
                );
            }
        }
        RoleRule {
            mode: mode(s.mode),
            claim: claim_path(s.claim.as_deref(), "roles", &format!("{p}.claim"), cx),
            read: words(&s.read, &format!("{p}.read"), "role", cx),
            write: words(&s.write, &format!("{p}.write"), "role", cx),
            admin: words(&s.admin, &format!("{p}.admin"), "role", cx),
            class,
        }
    });
    let ip = spec.ip.as_ref().map(|s| {
        let p = format!("{path}.ip");
        if s.allow.is_empty() && s.deny.is_empty() && s.mode != RuleModeSpec::Off {
            cx.err(
                &p,
                "list networks to `allow` or `deny` (or set `mode: off`)",
            );
        }
        IpRule {
            mode: mode(s.mode),
            allow: cidrs(&s.allow, &format!("{p}.allow"), cx),
            deny: cidrs(&s.deny, &format!("{p}.deny"), cx),
        }
    });
    if let Some(c) = &spec.classification {
        if c.is_empty() || c.chars().any(|ch| ch.is_control()) {
            cx.err(format!("{path}.classification"), "a non-empty label");
        }
    }
    AuthzLevel {
        ip,
        subscription,
        environment,
        scopes,
        roles,
        classification: spec.classification.clone(),
        hide_with_404: spec.hide_with_404,
        #[cfg(feature = "cedar")]
        abac: spec
            .abac
            .as_ref()
            .map(|a| abac(a, &format!("{path}.abac"), cx)),
        #[cfg(not(feature = "cedar"))]
        abac: spec.abac.as_ref().map(|_| {
            cx.err(
                format!("{path}.abac"),
                "this build has no Cedar support (build it with the `cedar` feature, on by default in the Workers and Spin builds)",
            );
        }),
    }
}

#[cfg(feature = "cedar")]
fn abac(
    spec: &super::spec::AbacRuleSpec,
    path: &str,
    cx: &mut Ctx,
) -> crate::authz::cedar::AbacRule {
    let claims: Vec<ClaimPath> = spec
        .claims
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match ClaimPath::parse(c) {
            Ok(p) => Some(p),
            Err(e) => {
                cx.err(format!("{path}.claims[{i}]"), e);
                None
            }
        })
        .collect();
    let headers: Vec<String> = spec
        .context_headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            if super::compile::is_token(h) {
                Some(h.to_ascii_lowercase())
            } else {
                cx.err(
                    format!("{path}.context_headers[{i}]"),
                    format!("{h:?} is not a header name"),
                );
                None
            }
        })
        .collect();
    let roles_claim = claim_path(
        spec.roles_claim.as_deref(),
        "roles",
        &format!("{path}.roles_claim"),
        cx,
    );
    let compiled = if cx.validated_before {
        crate::authz::cedar::parse_validated_policies(&spec.policies)
    } else {
        crate::authz::cedar::compile_policies(&spec.policies, &claims, &headers)
    };
    let policies = match compiled {
        Ok(set) => set,
        Err(errors) => {
            for e in errors {
                cx.err(format!("{path}.policies"), e);
            }
            cedar_policy::PolicySet::new()
        }
    };
    crate::authz::cedar::AbacRule {
        mode: mode(spec.mode),
        policies,
        claims,
        headers,
        roles_claim,
    }
}

/// A route's policy from its level, its API's and the gateway's (most specific first); None
/// when no rule set is on. `has_auth`: whether the route authenticates callers — rules about
/// the caller on a route that does not are an error at `route_path`.
pub(super) fn route_authz(
    levels: [Option<&AuthzLevel>; 3],
    has_auth: bool,
    route_path: &str,
    cx: &mut Ctx,
) -> Option<Rc<AuthzPolicy>> {
    fn pick<T: Clone>(
        levels: &[Option<&AuthzLevel>; 3],
        f: impl Fn(&AuthzLevel) -> Option<&T>,
    ) -> Option<T> {
        levels.iter().flatten().find_map(|l| f(l)).cloned()
    }
    let policy = AuthzPolicy {
        ip: pick(&levels, |l| l.ip.as_ref()),
        subscription: pick(&levels, |l| l.subscription.as_ref()),
        environment: pick(&levels, |l| l.environment.as_ref()),
        scopes: pick(&levels, |l| l.scopes.as_ref()),
        roles: pick(&levels, |l| l.roles.as_ref()),
        hide_with_404: pick(&levels, |l| l.hide_with_404.as_ref()).unwrap_or(false),
        classification: pick(&levels, |l| l.classification.as_ref())
            .unwrap_or_else(|| "internal".to_string()),
        #[cfg(feature = "cedar")]
        abac: pick(&levels, |l| l.abac.as_ref()),
    };
    if !policy.is_active() {
        return None;
    }
    let about_caller = [
        policy
            .subscription
            .as_ref()
            .map(|r| ("subscription", r.mode)),
        policy
            .environment
            .as_ref()
            .map(|r| ("environment_isolation", r.mode)),
        policy.scopes.as_ref().map(|r| ("scopes", r.mode)),
        policy.roles.as_ref().map(|r| ("roles", r.mode)),
    ];
    if !has_auth {
        for (name, m) in about_caller.into_iter().flatten() {
            if m != RuleMode::Off {
                cx.err(
                    format!("{route_path}.policies.authorization"),
                    format!("the `{name}` rule needs a caller, but the route has no `auth` policy"),
                );
            }
        }
    }
    Some(Rc::new(policy))
}
