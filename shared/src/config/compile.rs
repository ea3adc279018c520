//! `compile`: config text → [`CompiledConfig`], or every error with its JSON path.
//!
//! Two passes. Structure: serde with `deny_unknown_fields`; when the whole document does not
//! deserialize, each pool, API and route is deserialized on its own so that every element
//! reports its first structural error. Semantics: every rule is checked and every failure
//! collected; route conflicts come from the router builder.

use super::compiled::{Api, CompiledConfig, Environment, GatewaySettings, Route, UpstreamPolicy};
use super::error::{ConfigError, ConfigErrors};
use super::spec::{
    ApiSpec, ConfigDocument, GatewaySpec, Policies, PoolSpec, PredicateSpec, RouteSpec,
};
use crate::balancer::{InstanceUrl, Pool};
use crate::route::router::{ApiHosts, RouterBuilder, RouterEntry, Target};
use crate::route::{Condition, HostPattern, MethodSet, PathTemplate, Predicate, Segment, Source};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Compiles config text. `version` is the id it is activated under (logged with every request).
///
/// Errors: every problem found, each with its JSON path; nothing is partially activated.
pub fn compile(text: &str, version: &str) -> Result<CompiledConfig, ConfigErrors> {
    compile_with(text, version, Validation::Full)
}

/// How much of the checking a compile repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validation {
    /// Every check: for every version not known to be valid (activation, the Registry sync,
    /// the admin API's and the CLI's validate).
    Full,
    /// For text that compiled with [`Validation::Full`] before (a fresh-instance host
    /// recompiling its last good version per request): the same config, minus the checks
    /// that cannot change the result for the same text — today the strict validation of Cedar
    /// policies against their schema (they are still parsed).
    PreviouslyValidated,
}

/// [`compile`] with the given [`Validation`].
///
/// Errors: as [`compile`].
pub fn compile_with(
    text: &str,
    version: &str,
    validation: Validation,
) -> Result<CompiledConfig, ConfigErrors> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| ConfigErrors(vec![ConfigError::new("$", format!("not valid JSON: {e}"))]))?;
    // `Value` keeps only the last of repeated keys; such a document is ambiguous (RFC 8259
    // §4), so repeats are errors of their own, reported beside everything else.
    let mut errors = super::duplicates::repeated_keys(text);
    let doc = match serde_path_to_error::deserialize::<_, ConfigDocument>(&value) {
        Ok(doc) => doc,
        Err(first) => {
            let structural = structural_errors(&value);
            if structural.is_empty() {
                errors.push(ConfigError::new(
                    json_path("$", &first.path().to_string()),
                    first.inner().to_string(),
                ));
            }
            errors.extend(structural);
            return Err(ConfigErrors(errors));
        }
    };
    match compile_document_with(&doc, version, validation) {
        Ok(cfg) if errors.is_empty() => Ok(cfg),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(ConfigErrors(more)) => {
            errors.extend(more);
            Err(ConfigErrors(errors))
        }
    }
}

// === structural pass ===

fn json_path(base: &str, serde_path: &str) -> String {
    match serde_path {
        "." | "" => base.to_string(),
        p if p.starts_with('[') => format!("{base}{p}"),
        p => format!("{base}.{p}"),
    }
}

fn check<T: DeserializeOwned>(value: &Value, base: &str, errors: &mut Vec<ConfigError>) {
    if let Err(e) = serde_path_to_error::deserialize::<_, T>(value) {
        errors.push(ConfigError::new(
            json_path(base, &e.path().to_string()),
            e.inner().to_string(),
        ));
    }
}

fn structural_errors(value: &Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let Some(obj) = value.as_object() else {
        return vec![ConfigError::new("$", "the config must be a JSON object")];
    };
    for required in ["pools", "apis"] {
        if !obj.contains_key(required) {
            errors.push(ConfigError::new("$", format!("missing field `{required}`")));
        }
    }
    for (key, v) in obj {
        let path = format!("$.{key}");
        match key.as_str() {
            "$schema" => check::<Option<String>>(v, &path, &mut errors),
            "gateway" => check::<GatewaySpec>(v, &path, &mut errors),
            "snapshot" => check::<crate::snapshot::ShardManifest>(v, &path, &mut errors),
            "identity_providers" => {
                check::<BTreeMap<String, super::spec::IdentityProviderSpec>>(v, &path, &mut errors)
            }
            "pools" => match v.as_object() {
                Some(pools) => {
                    for (name, p) in pools {
                        check::<PoolSpec>(p, &format!("$.pools.{name}"), &mut errors);
                    }
                }
                None => check::<BTreeMap<String, PoolSpec>>(v, &path, &mut errors),
            },
            "apis" => match v.as_array() {
                Some(apis) => {
                    for (i, api) in apis.iter().enumerate() {
                        let api_path = format!("$.apis[{i}]");
                        let mut api = api.clone();
                        if let Some(routes) = api.get_mut("routes").filter(|r| r.is_array()).map(Value::take) {
                            for (j, r) in routes.as_array().into_iter().flatten().enumerate() {
                                check::<RouteSpec>(r, &format!("{api_path}.routes[{j}]"), &mut errors);
                            }
                            api["routes"] = Value::Array(Vec::new());
                        }
                        check::<ApiSpec>(&api, &api_path, &mut errors);
                    }
                }
                None => check::<Vec<ApiSpec>>(v, &path, &mut errors),
            },
            other => errors.push(ConfigError::new(
                format!("$.{other}"),
                format!("unknown field `{other}`, expected one of `$schema`, `gateway`, `pools`, `identity_providers`, `apis`, `snapshot`"),
            )),
        }
    }
    errors
}

// === semantic pass ===

const MAX_TIMEOUT_MS: u64 = 300_000;
const MAX_REPLAY_BYTES: u64 = 1 << 20;
const DEFAULT_REPLAY_BYTES: u64 = 64 * 1024;

pub(super) struct Ctx {
    pub(super) errors: Vec<ConfigError>,
    /// Paths of the auth sections that accept mTLS (refused on platforms without it).
    pub(super) mtls_paths: Vec<String>,
    /// The text compiled with full validation before ([`Validation::PreviouslyValidated`]):
    /// checks that only reject (Cedar's strict validation) are skipped.
    pub(super) validated_before: bool,
}

impl Ctx {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }
}

/// `[A-Za-z0-9._-]{1,64}`: names of APIs, routes, pools and environments.
pub(super) fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// An HTTP field name (RFC 9110 token).
pub(super) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// Compiles an already-deserialized document (the CLI and tests use this directly).
///
/// Errors: every semantic problem and route conflict, each with its JSON path.
pub fn compile_document(
    doc: &ConfigDocument,
    version: &str,
) -> Result<CompiledConfig, ConfigErrors> {
    compile_document_with(doc, version, Validation::Full)
}

fn compile_document_with(
    doc: &ConfigDocument,
    version: &str,
    validation: Validation,
) -> Result<CompiledConfig, ConfigErrors> {
    let mut cx = Ctx {
        errors: Vec::new(),
        mtls_paths: Vec::new(),
        validated_before: validation == Validation::PreviouslyValidated,
    };

    let mut settings = compile_gateway(&doc.gateway, &mut cx);
    if let Some(manifest) = &doc.snapshot {
        for (field, why) in manifest.problems() {
            cx.errors
                .push(ConfigError::new(format!("$.snapshot.{field}"), why));
        }
    }
    let (identity_providers, idp_index) =
        super::auth::identity_providers(&doc.identity_providers, &mut cx);
    let identity_headers = super::auth::identity_headers(&doc.gateway.identity_headers, &mut cx);
    // Whatever a client sends in the identity headers is removed before the gateway sets them.
    for name in identity_headers.names() {
        if !settings.strip_request_headers.iter().any(|n| n == name) {
            settings.strip_request_headers.push(name.to_string());
        }
    }
    let auth_of = |policies: &Policies, path: &str, cx: &mut Ctx| {
        policies.auth.as_ref().map(|a| {
            super::auth::auth_policy(
                a,
                &format!("{path}.auth"),
                &identity_providers,
                &idp_index,
                cx,
            )
        })
    };
    let gateway_auth = auth_of(&doc.gateway.policies, "$.gateway.policies", &mut cx);
    let authz_of = |policies: &Policies, path: &str, cx: &mut Ctx| {
        policies
            .authorization
            .as_ref()
            .map(|a| super::authz::authz_level(a, &format!("{path}.authorization"), cx))
    };
    let gateway_authz = authz_of(&doc.gateway.policies, "$.gateway.policies", &mut cx);
    let gateway_limits = super::ratelimit::rate_level(
        &doc.gateway.policies.rate_limits,
        "gateway",
        "$.gateway.policies.rate_limits",
        &mut cx,
    );
    let auth_failure_limit = doc
        .gateway
        .auth_failure_limit
        .as_ref()
        .and_then(|s| super::ratelimit::auth_failure_limit(s, &mut cx));
    // Validated once here; compiled again per API below for its default audience.
    if let Some(m) = &doc.gateway.policies.mint_token {
        super::auth::mint_token(m, "$.gateway.policies.mint_token", "", &mut cx);
    }
    for m in std::iter::once(&doc.gateway.policies)
        .chain(doc.apis.iter().map(|a| &a.policies))
        .chain(
            doc.apis
                .iter()
                .flat_map(|a| a.routes.iter().map(|r| &r.policies)),
        )
        .filter_map(|p| p.mint_token.as_ref())
    {
        let h = m.header.to_ascii_lowercase();
        // Clients may not send the minted header (authorization is replaced anyway).
        if h != "authorization" && !settings.strip_request_headers.contains(&h) {
            settings.strip_request_headers.push(h);
        }
    }

    // Pools: BTreeMap order, so indices are stable for a given document.
    let mut pool_index: HashMap<&str, usize> = HashMap::new();
    let mut pools = Vec::new();
    for (name, spec) in &doc.pools {
        let path = format!("$.pools.{name}");
        if !is_name(name) {
            cx.err(
                &path,
                "pool names are 1-64 characters of letters, digits, '.', '_', '-'",
            );
        }
        if spec.instances.is_empty() {
            cx.err(
                format!("{path}.instances"),
                "a pool needs at least one instance",
            );
        }
        let mut instances = Vec::new();
        for (i, inst) in spec.instances.iter().enumerate() {
            match InstanceUrl::parse(&inst.url) {
                Ok(url) => instances.push((url, inst.weight)),
                Err(e) => cx.err(format!("{path}.instances[{i}].url"), e),
            }
            if !(1..=1000).contains(&inst.weight) {
                cx.err(
                    format!("{path}.instances[{i}].weight"),
                    "weight must be 1 to 1000",
                );
            }
        }
        check_timeout(spec.timeout_ms, &format!("{path}.timeout_ms"), &mut cx);
        pool_index.insert(name.as_str(), pools.len());
        pools.push(Pool::new(
            name.clone(),
            instances,
            spec.balance,
            spec.timeout_ms,
        ));
    }

    let mut apis = Vec::new();
    let mut routes: Vec<Route> = Vec::new();
    let mut api_names = HashSet::new();
    // (api index, route index, prefix segments, template, entry) to insert once all APIs are known.
    let mut pending: Vec<(Vec<String>, PathTemplate, RouterEntry)> = Vec::new();
    let mut api_hosts: Vec<ApiHosts> = Vec::new();

    // The gateway's timeout sits below the pool's (route > API > pool > gateway), so it is kept
    // in the settings; failover and replay size inherit normally.
    let mut gateway_upstream = merge_upstream(
        &UpstreamPolicy {
            timeout_ms: None,
            failover: true,
            replay_buffer_bytes: DEFAULT_REPLAY_BYTES,
        },
        &doc.gateway.policies,
        "$.gateway.policies",
        &mut cx,
    );
    let default_timeout_ms = gateway_upstream.timeout_ms.take();

    for (ai, api) in doc.apis.iter().enumerate() {
        let ap = format!("$.apis[{ai}]");
        if !is_name(&api.name) {
            cx.err(
                format!("{ap}.name"),
                "API names are 1-64 characters of letters, digits, '.', '_', '-'",
            );
        } else if !api_names.insert(api.name.as_str()) {
            cx.err(
                format!("{ap}.name"),
                format!("API name {:?} is used twice", api.name),
            );
        }
        let prefix: Vec<String> = match PathTemplate::parse(&api.base_path) {
            Ok(t) if t.is_literal() => t
                .segments()
                .iter()
                .filter_map(|s| match s {
                    Segment::Literal(l) => Some(l.clone()),
                    _ => None,
                })
                .collect(),
            Ok(_) => {
                cx.err(
                    format!("{ap}.base_path"),
                    "the base path cannot contain parameters",
                );
                Vec::new()
            }
            Err(e) => {
                cx.err(format!("{ap}.base_path"), e);
                Vec::new()
            }
        };

        let pool_ref = |name: &str, path: String, cx: &mut Ctx| -> Option<usize> {
            let idx = pool_index.get(name).copied();
            if idx.is_none() {
                cx.err(path, format!("no pool named {name:?}"));
            }
            idx
        };

        let mut versions = Vec::new();
        let mut version_names = HashSet::new();
        for (vi, v) in api.versions.iter().enumerate() {
            let vp = format!("{ap}.versions[{vi}]");
            if v.name.is_empty()
                || !v.name.chars().all(crate::route::is_pchar)
                || v.name.contains('%')
            {
                cx.err(
                    format!("{vp}.name"),
                    "a version is one path segment (letters, digits, '.', '-', '_' ...)",
                );
            } else if !version_names.insert(v.name.as_str()) {
                cx.err(
                    format!("{vp}.name"),
                    format!("version {:?} is listed twice", v.name),
                );
            }
            if let Some(p) = pool_ref(&v.pool, format!("{vp}.pool"), &mut cx) {
                versions.push((v.name.clone(), p));
            }
        }
        let api_pool = match (&api.pool, api.versions.is_empty()) {
            (Some(p), true) => pool_ref(p, format!("{ap}.pool"), &mut cx),
            (None, true) => {
                cx.err(
                    &ap,
                    "an API needs `versions` or, when unversioned, a `pool`",
                );
                None
            }
            (Some(_), false) => {
                cx.err(
                    format!("{ap}.pool"),
                    "`pool` is for unversioned APIs; each version names its pool",
                );
                None
            }
            (None, false) => None,
        };

        // Environments.
        let mut environments = Vec::new();
        let mut env_names = HashSet::new();
        let mut seen_hosts: HashSet<HostPattern> = HashSet::new();
        let mut defaults = 0;
        for (ei, env) in api.environments.iter().enumerate() {
            let ep = format!("{ap}.environments[{ei}]");
            if !is_name(&env.name) {
                cx.err(
                    format!("{ep}.name"),
                    "environment names are 1-64 characters of letters, digits, '.', '_', '-'",
                );
            } else if !env_names.insert(env.name.as_str()) {
                cx.err(
                    format!("{ep}.name"),
                    format!("environment {:?} is listed twice", env.name),
                );
            }
            if env.hosts.is_empty() {
                defaults += 1;
                if defaults > 1 {
                    cx.err(
                        format!("{ep}.hosts"),
                        "only one environment may leave `hosts` empty (the default)",
                    );
                }
            }
            let mut hosts = Vec::new();
            for (hi, h) in env.hosts.iter().enumerate() {
                match HostPattern::parse(h) {
                    Ok(p) => {
                        if !seen_hosts.insert(p.clone()) {
                            cx.err(
                                format!("{ep}.hosts[{hi}]"),
                                format!("host {h:?} belongs to two environments"),
                            );
                        }
                        hosts.push(p);
                    }
                    Err(e) => cx.err(format!("{ep}.hosts[{hi}]"), e),
                }
            }
            let mut pool_map = Vec::new();
            for (from, to) in &env.pools {
                let pp = format!("{ep}.pools.{from}");
                if let (Some(f), Some(t)) = (
                    pool_ref(from, pp.clone(), &mut cx),
                    pool_ref(to, pp, &mut cx),
                ) {
                    pool_map.push((f, t));
                }
            }
            environments.push(Environment {
                name: env.name.clone(),
                hosts,
                pool_map,
            });
        }
        if environments.is_empty() {
            environments.push(Environment {
                name: "default".into(),
                hosts: Vec::new(),
                pool_map: Vec::new(),
            });
        }
        api_hosts.push(if environments.iter().any(|e| e.hosts.is_empty()) {
            None
        } else {
            Some(
                environments
                    .iter()
                    .flat_map(|e| e.hosts.iter().cloned())
                    .collect(),
            )
        });

        let api_upstream = merge_upstream(
            &gateway_upstream,
            &api.policies,
            &format!("{ap}.policies"),
            &mut cx,
        );
        let api_auth = auth_of(&api.policies, &format!("{ap}.policies"), &mut cx)
            .or_else(|| gateway_auth.clone());
        let api_authz = authz_of(&api.policies, &format!("{ap}.policies"), &mut cx);
        let api_limits = super::ratelimit::rate_level(
            &api.policies.rate_limits,
            &format!("api:{}", api.name),
            &format!("{ap}.policies.rate_limits"),
            &mut cx,
        );
        // The gateway's section was validated above; here it only gets the API's audience.
        let api_mint = match (&api.policies.mint_token, &doc.gateway.policies.mint_token) {
            (Some(m), _) => Some(super::auth::mint_token(
                m,
                &format!("{ap}.policies.mint_token"),
                &api.name,
                &mut cx,
            )),
            (None, Some(m)) => Some(super::auth::mint_token(
                m,
                "$.gateway.policies.mint_token",
                &api.name,
                &mut Ctx {
                    errors: Vec::new(),
                    mtls_paths: Vec::new(),
                    validated_before: cx.validated_before,
                },
            )),
            (None, None) => None,
        };

        // Routes.
        let mut route_names = HashSet::new();
        for (ri, r) in api.routes.iter().enumerate() {
            let rp = format!("{ap}.routes[{ri}]");
            if !is_name(&r.name) {
                cx.err(
                    format!("{rp}.name"),
                    "route names are 1-64 characters of letters, digits, '.', '_', '-'",
                );
            } else if !route_names.insert(r.name.as_str()) {
                cx.err(
                    format!("{rp}.name"),
                    format!("route name {:?} is used twice in this API", r.name),
                );
            }
            let methods = MethodSet::parse(&r.methods).unwrap_or_else(|e| {
                cx.err(format!("{rp}.methods"), e);
                MethodSet::EMPTY
            });
            let template = match PathTemplate::parse(&r.path) {
                Ok(t) => Some(t),
                Err(e) => {
                    cx.err(format!("{rp}.path"), e);
                    None
                }
            };
            let host = r.host.as_ref().and_then(|h| match HostPattern::parse(h) {
                Ok(p) => Some(p),
                Err(e) => {
                    cx.err(format!("{rp}.host"), e);
                    None
                }
            });
            let mut predicates = Vec::new();
            for (pi, p) in r.headers.iter().enumerate() {
                if let Some(pred) =
                    compile_predicate(p, Source::Header, &format!("{rp}.headers[{pi}]"), &mut cx)
                {
                    predicates.push(pred);
                }
            }
            for (pi, p) in r.query.iter().enumerate() {
                if let Some(pred) =
                    compile_predicate(p, Source::Query, &format!("{rp}.query[{pi}]"), &mut cx)
                {
                    predicates.push(pred);
                }
            }
            predicates.sort();
            for w in predicates.windows(2) {
                if w[0].source == w[1].source && w[0].name == w[1].name {
                    cx.err(&rp, format!("two predicates on {:?}: use one", w[0].name));
                }
            }
            let upstream_path =
                r.upstream_path
                    .as_ref()
                    .and_then(|u| match PathTemplate::parse(u) {
                        Ok(t) => {
                            if let Some(tpl) = &template {
                                let known: Vec<&str> = tpl.param_names().collect();
                                for n in t.param_names() {
                                    if !known.contains(&n) {
                                        cx.err(
                                            format!("{rp}.upstream_path"),
                                            format!("{{{n}}} is not a parameter of the route path"),
                                        );
                                    }
                                }
                            }
                            Some(t)
                        }
                        Err(e) => {
                            cx.err(format!("{rp}.upstream_path"), e);
                            None
                        }
                    });
            let pool = r
                .pool
                .as_ref()
                .and_then(|p| pool_ref(p, format!("{rp}.pool"), &mut cx));
            let upstream = merge_upstream(
                &api_upstream,
                &r.policies,
                &format!("{rp}.policies"),
                &mut cx,
            );
            let auth = auth_of(&r.policies, &format!("{rp}.policies"), &mut cx)
                .or_else(|| api_auth.clone());
            let route_level = authz_of(&r.policies, &format!("{rp}.policies"), &mut cx);
            let route_limits = super::ratelimit::rate_level(
                &r.policies.rate_limits,
                &format!("route:{}/{}", api.name, r.name),
                &format!("{rp}.policies.rate_limits"),
                &mut cx,
            );
            let rate_limits: std::rc::Rc<[crate::ratelimit::RateLimit]> =
                super::ratelimit::route_limits([&gateway_limits, &api_limits, &route_limits])
                    .into();
            let authz = super::authz::route_authz(
                [
                    route_level.as_ref(),
                    api_authz.as_ref(),
                    gateway_authz.as_ref(),
                ],
                auth.is_some(),
                &rp,
                &mut cx,
            );
            let mint = match &r.policies.mint_token {
                Some(m) => Some(super::auth::mint_token(
                    m,
                    &format!("{rp}.policies.mint_token"),
                    &api.name,
                    &mut cx,
                )),
                None => api_mint.clone(),
            };

            // Which versions serve this route.
            let version_idx: Vec<Option<u16>> = if api.versions.is_empty() {
                if r.versions.is_some() {
                    cx.err(format!("{rp}.versions"), "the API is unversioned");
                }
                vec![None]
            } else {
                match &r.versions {
                    None => (0..api.versions.len() as u16).map(Some).collect(),
                    Some(list) => {
                        if list.is_empty() {
                            cx.err(
                                format!("{rp}.versions"),
                                "an empty list serves no version; leave it out for all",
                            );
                        }
                        let mut chosen: Vec<Option<u16>> = Vec::new();
                        for (i, v) in list.iter().enumerate() {
                            match api.versions.iter().position(|x| &x.name == v) {
                                None => cx.err(
                                    format!("{rp}.versions[{i}]"),
                                    format!("the API has no version {v:?}"),
                                ),
                                Some(x) if chosen.contains(&Some(x as u16)) => cx.err(
                                    format!("{rp}.versions[{i}]"),
                                    format!("version {v:?} is listed twice"),
                                ),
                                Some(x) => chosen.push(Some(x as u16)),
                            }
                        }
                        chosen
                    }
                }
            };

            let route_idx = routes.len();
            if let Some(tpl) = template {
                for v in version_idx {
                    let mut full_prefix = prefix.clone();
                    if let Some(v) = v {
                        full_prefix.push(api.versions[v as usize].name.clone());
                    }
                    let prefix_len: usize = full_prefix.iter().map(|s| s.len() + 1).sum();
                    let entry = RouterEntry {
                        target: Target {
                            api: ai as u16,
                            route: route_idx as u32,
                            version: v,
                            prefix_len: prefix_len as u32,
                        },
                        methods,
                        host: host.clone(),
                        predicates: predicates.clone(),
                        config_path: rp.clone(),
                    };
                    pending.push((full_prefix, tpl.clone(), entry));
                }
                routes.push(Route {
                    name: r.name.clone(),
                    api: ai,
                    template: tpl,
                    upstream_path,
                    pool,
                    upstream,
                    auth,
                    authz: authz.clone(),
                    rate_limits: rate_limits.clone(),
                    mint,
                });
            } else {
                routes.push(Route {
                    name: r.name.clone(),
                    api: ai,
                    template: PathTemplate::parse("/").unwrap_or_else(|_| unreachable!()),
                    upstream_path,
                    pool,
                    upstream,
                    auth,
                    authz,
                    rate_limits,
                    mint,
                });
            }
        }
        apis.push(Api {
            name: api.name.clone(),
            versions,
            pool: api_pool,
            environments,
        });
    }

    if apis.len() > u16::MAX as usize || routes.len() > u32::MAX as usize {
        cx.err("$.apis", "too many APIs or routes");
    }

    let mut builder = RouterBuilder::new(api_hosts);
    for (prefix, tpl, entry) in pending {
        let refs: Vec<&str> = prefix.iter().map(String::as_str).collect();
        builder.insert(&refs, &tpl, entry);
    }
    let router = match builder.build() {
        Ok(r) => Some(r),
        Err(conflicts) => {
            for c in conflicts {
                cx.err(c.path, c.message);
            }
            None
        }
    };

    match router {
        Some(router) if cx.errors.is_empty() => Ok(CompiledConfig {
            version: version.to_string(),
            settings: GatewaySettings {
                default_timeout_ms,
                ..settings
            },
            pools,
            apis,
            routes,
            router,
            identity_providers,
            identity_headers,
            mtls_paths: cx.mtls_paths,
            auth_failure_limit,
            snapshot: doc.snapshot.clone(),
        }),
        _ => Err(ConfigErrors(cx.errors)),
    }
}

fn compile_gateway(g: &GatewaySpec, cx: &mut Ctx) -> GatewaySettings {
    let mut strip = Vec::new();
    for (i, h) in g.strip_request_headers.iter().enumerate() {
        if is_token(h) {
            strip.push(h.to_ascii_lowercase());
        } else {
            cx.err(
                format!("$.gateway.strip_request_headers[{i}]"),
                format!("{h:?} is not a header name"),
            );
        }
    }
    GatewaySettings {
        strip_request_headers: strip,
        trust_forwarded: g.trust_forwarded,
        allow_encoded_slashes: g.allow_encoded_slashes,
        default_timeout_ms: None,
    }
}

fn check_timeout(t: Option<u64>, path: &str, cx: &mut Ctx) {
    if let Some(t) = t {
        if !(1..=MAX_TIMEOUT_MS).contains(&t) {
            cx.err(path, format!("a timeout is 1 to {MAX_TIMEOUT_MS} ms"));
        }
    }
}

fn merge_upstream(
    parent: &UpstreamPolicy,
    policies: &Policies,
    path: &str,
    cx: &mut Ctx,
) -> UpstreamPolicy {
    let Some(u) = &policies.upstream else {
        return *parent;
    };
    check_timeout(u.timeout_ms, &format!("{path}.upstream.timeout_ms"), cx);
    if let Some(b) = u.replay_buffer_bytes {
        if b > MAX_REPLAY_BYTES {
            cx.err(
                format!("{path}.upstream.replay_buffer_bytes"),
                format!("at most {MAX_REPLAY_BYTES} bytes"),
            );
        }
    }
    UpstreamPolicy {
        timeout_ms: u.timeout_ms.or(parent.timeout_ms),
        failover: u.failover.unwrap_or(parent.failover),
        replay_buffer_bytes: u.replay_buffer_bytes.unwrap_or(parent.replay_buffer_bytes),
    }
}

fn compile_predicate(
    p: &PredicateSpec,
    source: Source,
    path: &str,
    cx: &mut Ctx,
) -> Option<Predicate> {
    let name_ok = match source {
        Source::Header => is_token(&p.name),
        Source::Query => !p.name.is_empty(),
    };
    if !name_ok {
        cx.err(
            format!("{path}.name"),
            format!("{:?} is not a valid name", p.name),
        );
        return None;
    }
    let condition = match (&p.equals, p.present) {
        (Some(v), None) => Condition::Equals(v.clone()),
        (None, Some(true)) => Condition::Present,
        (None, Some(false)) => Condition::Absent,
        _ => {
            cx.err(path, "set exactly one of `equals` or `present`");
            return None;
        }
    };
    let name = match source {
        Source::Header => p.name.to_ascii_lowercase(),
        Source::Query => p.name.clone(),
    };
    Some(Predicate {
        source,
        name,
        condition,
    })
}
