//! ABAC with Cedar (feature `cedar`): policies that come with the config, validated at config
//! compile time against a schema the gateway generates, and evaluated in-process per request.
//!
//! The model the policies see (namespace `Edgegate`):
//!
//! ```text
//! entity Caller   = { subject, consumer, application, auth_method: String,
//!                     roles, scopes: Set<String>, claims: { "<configured claim>"?: String } };
//! entity Endpoint = { api, version, route, environment, classification: String };
//! action "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"
//!   appliesTo { principal: Caller, resource: Endpoint,
//!               context: { method: String, time: Long, ip?: ipaddr, country?: String,
//!                          headers: { "<configured header>"?: String } } };
//! ```
//!
//! Missing identity fields are empty strings (anonymous callers have subject ""); `time` is
//! unix seconds. Nothing here runs for routes without an `abac` rule, so a deployment whose
//! config has no policies never touches Cedar code (its lazily compiled wasm stays cold).

use super::{AuthzRequest, ClaimPath, Deny, Rule, RuleMode};
use crate::problem::ErrorCode;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

/// The HTTP methods policies can name as actions.
pub const ACTIONS: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// A compiled ABAC rule: the validated policy set and what to expose to it.
#[derive(Debug, Clone)]
pub struct AbacRule {
    /// Its mode.
    pub mode: RuleMode,
    /// The validated policies.
    pub policies: PolicySet,
    /// Claims exposed as `principal.claims["<path>"]` (string claims only).
    pub claims: Vec<ClaimPath>,
    /// Request headers exposed as `context.headers["<name>"]` (lower-case names).
    pub headers: Vec<String>,
    /// Where the caller's roles are.
    pub roles_claim: ClaimPath,
}

impl PartialEq for AbacRule {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode
            && self.policies.to_string() == other.policies.to_string()
            && self.claims == other.claims
            && self.headers == other.headers
            && self.roles_claim == other.roles_claim
    }
}

impl Eq for AbacRule {}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The Cedar schema (human syntax) for a rule exposing these claims and headers.
pub fn schema_text(claims: &[ClaimPath], headers: &[String]) -> String {
    let optional = |names: Vec<String>| -> String {
        names
            .iter()
            .map(|n| format!("{}?: String", quoted(n)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let claim_attrs = optional(claims.iter().map(|c| c.to_string()).collect());
    let header_attrs = optional(headers.to_vec());
    let actions = ACTIONS.map(quoted).join(", ");
    format!(
        "namespace Edgegate {{\n\
         entity Caller = {{ subject: String, consumer: String, application: String, \
         auth_method: String, roles: Set<String>, scopes: Set<String>, claims: {{ {claim_attrs} }} }};\n\
         entity Endpoint = {{ api: String, version: String, route: String, environment: String, \
         classification: String }};\n\
         action {actions} appliesTo {{ principal: Caller, resource: Endpoint, context: {{ \
         method: String, time: Long, ip?: ipaddr, country?: String, headers: {{ {header_attrs} }} }} }};\n\
         }}\n"
    )
}

/// Parses `policies` and validates them (strict mode) against the schema for these claims
/// and headers. Runs at config compile time, for every version not validated before.
///
/// Errors: every parse or validation problem, as messages (each names the policy, e.g.
/// `policy0`, or its `@id` annotation).
pub fn compile_policies(
    policies: &str,
    claims: &[ClaimPath],
    headers: &[String],
) -> Result<PolicySet, Vec<String>> {
    let schema_src = schema_text(claims, headers);
    let (schema, _warnings) = Schema::from_cedarschema_str(&schema_src)
        .map_err(|e| vec![format!("claim or header names do not form a schema: {e}")])?;
    let set = parse_policies(policies)?;
    let result = Validator::new(schema).validate(&set, ValidationMode::Strict);
    if !result.validation_passed() {
        return Err(result
            .validation_errors()
            .map(|e| format!("does not validate: {e}"))
            .collect());
    }
    Ok(set)
}

/// Parses `policies` of a config version that [`compile_policies`] accepted before, without
/// building the schema or validating again (building the schema from its text is most of the
/// fixed cost of compiling a rule). Only for text already validated: a fresh-instance host
/// recompiles its last good version on every request.
///
/// Errors: the parse problems and the empty set, as [`compile_policies`] reports them.
pub fn parse_validated_policies(policies: &str) -> Result<PolicySet, Vec<String>> {
    parse_policies(policies)
}

fn parse_policies(policies: &str) -> Result<PolicySet, Vec<String>> {
    let set = PolicySet::from_str(policies).map_err(|e| {
        let mut out = vec![format!("does not parse: {e}")];
        if let Some(causes) = std::error::Error::source(&e) {
            out.push(causes.to_string());
        }
        out
    })?;
    if set.policies().next().is_none() {
        return Err(vec![
            "no policies (a rule without policies denies everything)".into(),
        ]);
    }
    Ok(set)
}

fn uid(type_name: &str, id: &str) -> Option<EntityUid> {
    Some(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(type_name).ok()?,
        EntityId::new(id),
    ))
}

fn string_set(items: impl IntoIterator<Item = String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.into_iter().map(RestrictedExpression::new_string))
}

/// Evaluates the rule for one request. `scopes` are the caller's effective scopes (with the
/// subscription's); `classification` is the endpoint's data classification.
///
/// Returns the deny (`policy_denied`) when no policy permits or one forbids; an error while
/// building the request or evaluating a policy also denies (Cedar skips erroring policies,
/// so a `forbid` that errors does not forbid — the detail names such errors).
pub fn evaluate(
    rule: &AbacRule,
    req: &AuthzRequest<'_>,
    scopes: &[String],
    classification: &str,
) -> Option<Deny> {
    let deny = |detail: String| Deny::new(Rule::Abac, ErrorCode::PolicyDenied, detail);
    let principal = req.principal;
    let claims = principal.and_then(|p| p.claims.as_ref());
    let s = |v: Option<&str>| RestrictedExpression::new_string(v.unwrap_or_default().to_string());
    let claim_record = RestrictedExpression::new_record(rule.claims.iter().filter_map(|path| {
        let v = claims.and_then(|c| path.get(&c.all))?.as_str()?;
        Some((
            path.to_string(),
            RestrictedExpression::new_string(v.to_string()),
        ))
    }));
    let roles = claims
        .map(|c| rule.roles_claim.strings(&c.all))
        .unwrap_or_default();
    let consumer = claims
        .and_then(|c| c.all.get("consumer_id"))
        .and_then(|v| v.as_str());
    let (Ok(claim_record), Some(caller_uid), Some(endpoint_uid), Some(action)) = (
        claim_record,
        uid(
            "Edgegate::Caller",
            principal.and_then(|p| p.subject()).unwrap_or_default(),
        ),
        uid("Edgegate::Endpoint", &format!("{}/{}", req.api, req.route)),
        uid("Edgegate::Action", req.method),
    ) else {
        return Some(deny("could not build the Cedar request".into()));
    };
    let caller = Entity::new(
        caller_uid.clone(),
        HashMap::from([
            ("subject".into(), s(principal.and_then(|p| p.subject()))),
            ("consumer".into(), s(consumer)),
            (
                "application".into(),
                s(principal.and_then(|p| p.application())),
            ),
            ("auth_method".into(), s(principal.map(|p| p.method))),
            ("roles".into(), string_set(roles)),
            ("scopes".into(), string_set(scopes.iter().cloned())),
            ("claims".into(), claim_record),
        ]),
        HashSet::new(),
    );
    let endpoint = Entity::new(
        endpoint_uid.clone(),
        HashMap::from([
            ("api".into(), s(Some(req.api))),
            ("version".into(), s(req.version)),
            ("route".into(), s(Some(req.route))),
            ("environment".into(), s(Some(req.environment))),
            ("classification".into(), s(Some(classification))),
        ]),
        HashSet::new(),
    );
    let headers = RestrictedExpression::new_record(rule.headers.iter().filter_map(|h| {
        let v = req.headers.get(h)?;
        Some((h.clone(), RestrictedExpression::new_string(v.to_string())))
    }));
    let mut context = vec![
        ("method".to_string(), s(Some(req.method))),
        (
            "time".to_string(),
            RestrictedExpression::new_long(req.now_s),
        ),
    ];
    if let Some(ip) = req.client_ip {
        context.push(("ip".into(), RestrictedExpression::new_ip(ip.to_string())));
    }
    if let Some(c) = req.country {
        context.push(("country".into(), s(Some(c))));
    }
    let built = (|| {
        let headers = headers.ok()?;
        context.push(("headers".into(), headers));
        let context = Context::from_pairs(context).ok()?;
        let entities = Entities::from_entities([caller.ok()?, endpoint.ok()?], None).ok()?;
        let request = Request::new(caller_uid, action, endpoint_uid, context, None).ok()?;
        Some((request, entities))
    })();
    let Some((request, entities)) = built else {
        return Some(deny("could not build the Cedar request".into()));
    };
    let response = Authorizer::new().is_authorized(&request, &rule.policies, &entities);
    if response.decision() == Decision::Allow {
        return None;
    }
    let reasons: Vec<String> = response
        .diagnostics()
        .reason()
        .map(|id| {
            rule.policies
                .policy(id)
                .and_then(|p| p.annotation("id").map(str::to_string))
                .unwrap_or_else(|| id.to_string())
        })
        .collect();
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|e| e.to_string())
        .collect();
    let mut detail = if reasons.is_empty() {
        "no policy permits".to_string()
    } else {
        format!("forbidden by {}", reasons.join(", "))
    };
    if !errors.is_empty() {
        detail.push_str(&format!("; policy errors: {}", errors.join("; ")));
    }
    Some(deny(detail))
}
