//! The compiled, immutable config that every request runs on.

use crate::auth::{AuthPolicy, IdentityHeaders, IdentityProvider, MintToken};
use crate::balancer::Pool;
use crate::route::{HostPattern, PathTemplate, RouteMiss, RouteRequest, Router};
use std::rc::Rc;

/// Gateway-wide settings after validation.
#[derive(Debug, Clone, Default)]
pub struct GatewaySettings {
    /// Extra header names (lower-case) that clients may not send to backends.
    pub strip_request_headers: Vec<String>,
    /// Append to the client's forwarding headers instead of replacing them.
    pub trust_forwarded: bool,
    /// Pass percent-encoded `/` and `\` in paths (else 400 `invalid_path`).
    pub allow_encoded_slashes: bool,
    /// The gateway-level timeout policy: used when neither route, API nor pool sets one.
    pub default_timeout_ms: Option<u64>,
}

/// An environment of an API, after validation.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The environment's name.
    pub name: String,
    /// Its hosts; empty = the API's default environment.
    pub hosts: Vec<HostPattern>,
    /// (base pool, replacement pool) pairs.
    pub pool_map: Vec<(usize, usize)>,
}

/// An API after validation.
#[derive(Debug, Clone)]
pub struct Api {
    /// The API's name.
    pub name: String,
    /// (version name, pool index), in config order.
    pub versions: Vec<(String, usize)>,
    /// The pool of an unversioned API.
    pub pool: Option<usize>,
    /// Environments; never empty (an implicit `default` environment on every host).
    pub environments: Vec<Environment>,
}

/// How requests go upstream, merged from gateway, API and route policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamPolicy {
    /// The timeout set by a route or API policy, overriding the pool's.
    pub timeout_ms: Option<u64>,
    /// Try other instances on connection failure for idempotent methods.
    pub failover: bool,
    /// Largest body kept for a replay.
    pub replay_buffer_bytes: u64,
}

/// The timeout used when neither a policy nor the pool sets one.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;

/// A route after validation.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name.
    pub name: String,
    /// Index of its API.
    pub api: usize,
    /// Its path template (relative to the API prefix).
    pub template: PathTemplate,
    /// The upstream path template, if set.
    pub upstream_path: Option<PathTemplate>,
    /// A pool replacing the version's, if set.
    pub pool: Option<usize>,
    /// Its upstream policy.
    pub upstream: UpstreamPolicy,
    /// Its authentication policy; None: anonymous.
    pub auth: Option<Rc<AuthPolicy>>,
    /// Its authorization policy; None: no rule set is on.
    pub authz: Option<Rc<crate::authz::AuthzPolicy>>,
    /// Its rate limits (every level's), in order.
    pub rate_limits: Rc<[crate::ratelimit::RateLimit]>,
    /// The token minted for the backend, if any.
    pub mint: Option<Rc<MintToken>>,
}

/// A validated config, ready to serve. Built only by [`super::compile`].
#[derive(Debug)]
pub struct CompiledConfig {
    pub(super) version: String,
    pub(super) settings: GatewaySettings,
    pub(super) pools: Vec<Pool>,
    pub(super) apis: Vec<Api>,
    pub(super) routes: Vec<Route>,
    pub(super) router: Router,
    pub(super) identity_providers: Vec<IdentityProvider>,
    pub(super) identity_headers: IdentityHeaders,
    pub(super) mtls_paths: Vec<String>,
    pub(super) auth_failure_limit: Option<crate::ratelimit::AuthFailureLimit>,
    pub(super) snapshot: Option<crate::snapshot::ShardManifest>,
}

/// Everything the proxy needs to know about the route a request matched.
#[derive(Debug)]
pub struct ResolvedRoute<'c> {
    /// The API.
    pub api: &'c Api,
    /// The route.
    pub route: &'c Route,
    /// The version name (None for an unversioned API).
    pub version: Option<&'c str>,
    /// The environment name.
    pub environment: &'c str,
    /// The pool to send to.
    pub pool: &'c Pool,
    /// The path to request upstream (raw, percent-encoded as received).
    pub upstream_path: String,
    /// The response-header timeout.
    pub timeout_ms: u64,
}

impl CompiledConfig {
    /// The version id this config was compiled as (from the KV pointer).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Gateway-wide settings.
    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    /// The APIs in config order.
    pub fn apis(&self) -> &[Api] {
        &self.apis
    }

    /// The routes in config order (across APIs).
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The pools in name order.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// The identity providers (in name order; auth rules refer to them by index).
    pub fn identity_providers(&self) -> &[IdentityProvider] {
        &self.identity_providers
    }

    /// The paths of the `auth` sections that accept mTLS: a platform without client
    /// certificates must refuse such a config (see [`crate::config_store`]).
    pub fn mtls_paths(&self) -> &[String] {
        &self.mtls_paths
    }

    /// The per-address limit on failed authentications, if configured.
    pub fn auth_failure_limit(&self) -> Option<&crate::ratelimit::AuthFailureLimit> {
        self.auth_failure_limit.as_ref()
    }

    /// The Registry snapshot this config embeds (`snapshot`), if any: requests on this config
    /// use exactly that snapshot ([`crate::snapshot::SnapshotStore::current_for`]).
    pub fn snapshot_manifest(&self) -> Option<&crate::snapshot::ShardManifest> {
        self.snapshot.as_ref()
    }

    /// The identity header names.
    pub fn identity_headers(&self) -> &IdentityHeaders {
        &self.identity_headers
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Routes a request and resolves version, environment, pool, upstream path and timeout.
    ///
    /// Runs once per request, first in the pipeline. Returns a miss (404/405) when no route
    /// fits; never fails otherwise (everything was validated at compile time).
    pub fn resolve<'c>(&'c self, req: &RouteRequest<'_>) -> Result<ResolvedRoute<'c>, RouteMiss> {
        let m = self.router.find(req)?;
        let t = m.target;
        let route = &self.routes[t.route as usize];
        let api = &self.apis[t.api as usize];
        let env = select_environment(api, req.host);
        let (version, base_pool) = match t.version {
            Some(v) => {
                let (name, pool) = &api.versions[v as usize];
                (Some(name.as_str()), *pool)
            }
            None => (None, api.pool.unwrap_or(0)),
        };
        let base_pool = route.pool.unwrap_or(base_pool);
        let pool_idx = env
            .pool_map
            .iter()
            .find(|(from, _)| *from == base_pool)
            .map_or(base_pool, |(_, to)| *to);
        let pool = &self.pools[pool_idx];
        let upstream_path = match &route.upstream_path {
            Some(tpl) => {
                let names: Vec<&str> = route.template.param_names().collect();
                tpl.render(|name| {
                    names
                        .iter()
                        .position(|n| *n == name)
                        .and_then(|i| m.params.get(i))
                        .map_or("", |&(s, e)| &req.path[s..e])
                })
            }
            None => {
                let rest = &req.path[(t.prefix_len as usize).min(req.path.len())..];
                if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                }
            }
        };
        let timeout_ms = route
            .upstream
            .timeout_ms
            .or(pool.timeout_ms)
            .or(self.settings.default_timeout_ms)
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        Ok(ResolvedRoute {
            api,
            route,
            version,
            environment: &env.name,
            pool,
            upstream_path,
            timeout_ms,
        })
    }
}

/// The environment for a host: an exact host match, else the longest wildcard, else the
/// default environment. The router only matches APIs that serve the host, so one exists.
fn select_environment<'a>(api: &'a Api, host: &str) -> &'a Environment {
    let mut best: Option<(&Environment, (u8, usize))> = None;
    for env in &api.environments {
        for h in &env.hosts {
            if h.matches(host) && best.is_none_or(|(_, r)| h.rank() > r) {
                best = Some((env, h.rank()));
            }
        }
    }
    best.map(|(e, _)| e)
        .or_else(|| api.environments.iter().find(|e| e.hosts.is_empty()))
        .unwrap_or(&api.environments[0])
}
