//! The config document as operators write it: one JSON document, deserialized with serde.
//!
//! These types are the published format (the JSON Schema in `schema/` is generated from them).
//! They are only read by [`super::compile`], which validates every field and produces the
//! immutable [`super::CompiledConfig`]; nothing at request time looks at them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole gateway config: settings, backend pools and APIs.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// The schema this document follows (ignored by the gateway; for editors).
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Gateway-wide settings.
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// Backend pools by name; versions and routes refer to them.
    pub pools: BTreeMap<String, PoolSpec>,
    /// The APIs the gateway serves.
    pub apis: Vec<ApiSpec>,
}

/// Gateway-wide settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// Extra request header names that clients may not send to backends (removed before
    /// proxying). Always removed besides these: `x-edgegate-*`, `x-forwarded-*`, `forwarded`,
    /// `cf-*`, `x-real-ip`, `true-client-ip`, `x-client-ip`, `x-cluster-client-ip`.
    #[serde(default)]
    pub strip_request_headers: Vec<String>,
    /// Append to the client's `X-Forwarded-For` / `Forwarded` instead of replacing them. Only
    /// for deployments behind another proxy that sets them; default false.
    #[serde(default)]
    pub trust_forwarded: bool,
    /// Pass percent-encoded `/` and `\` in request paths through to backends. Default false:
    /// such requests are answered 400 `invalid_path`, because a backend that decodes them
    /// would see different segments than the router matched.
    #[serde(default)]
    pub allow_encoded_slashes: bool,
    /// Policies that apply to every API unless an API or route sets its own.
    #[serde(default)]
    pub policies: Policies,
}

/// A set of interchangeable backend instances.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// The instances, each a base URL (`http(s)://host[:port][/base-path]`).
    pub instances: Vec<InstanceSpec>,
    /// How an instance is picked for each request.
    #[serde(default)]
    pub balance: BalanceSpec,
    /// Time to wait for response headers, in ms (1 to 300000); routes may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// One backend instance.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    /// Base URL: `http(s)://host[:port][/base-path]`, no query or fragment.
    pub url: String,
    /// Relative share of traffic (1 to 1000); default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Load-balancing algorithm of a pool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BalanceSpec {
    /// Smooth weighted round-robin (nginx's): deterministic, spreads each weight evenly.
    #[default]
    RoundRobin,
    /// Weighted random choice.
    Random,
}

/// An API: a base path, versions (each served by a pool), environments and routes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiSpec {
    /// Unique API name (letters, digits, `-`, `_`, `.`), used in logs and metrics.
    pub name: String,
    /// The path prefix of the API, e.g. `/users-api` (or `/` for none).
    pub base_path: String,
    /// The versions; each is a path segment after the base path (`/users-api/v2/...`).
    /// Empty means unversioned: then `pool` names the pool.
    #[serde(default)]
    pub versions: Vec<VersionSpec>,
    /// The pool of an unversioned API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Environments, told apart by host. Empty means one environment, `default`, on every host.
    #[serde(default)]
    pub environments: Vec<EnvironmentSpec>,
    /// Policies for every route of this API (a route's own policies override them).
    #[serde(default)]
    pub policies: Policies,
    /// The routes, relative to base path and version.
    pub routes: Vec<RouteSpec>,
}

/// One version of an API.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionSpec {
    /// The path segment, e.g. `v2`.
    pub name: String,
    /// The pool that serves this version.
    pub pool: String,
}

/// An environment of an API (e.g. `production`, `sandbox`), selected by the request host.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentSpec {
    /// The environment's name.
    pub name: String,
    /// Hosts of this environment: exact (`api.example.com`) or wildcard (`*.example.com`).
    /// Empty means every host not claimed by another environment (at most one may be empty).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Pool replacements in this environment: `{ "users-v2": "users-v2-sandbox" }`.
    #[serde(default)]
    pub pools: BTreeMap<String, String>,
}

/// A route: methods, a path template and optional host, header and query predicates.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Route name, unique within the API (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// Methods (`GET`, `POST`, ...; `GET` also serves `HEAD`). Empty or `["*"]`: any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Path template relative to base path and version: literal segments, `{param}` segments
    /// and a final `{*rest}` wildcard (matches the rest of the path, possibly empty).
    pub path: String,
    /// Only the versions named here serve this route; default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<String>>,
    /// Only requests to this host: exact or `*.suffix` wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Header predicates that must all hold.
    #[serde(default)]
    pub headers: Vec<PredicateSpec>,
    /// Query-parameter predicates that must all hold.
    #[serde(default)]
    pub query: Vec<PredicateSpec>,
    /// The upstream path template, using the route's parameters (`/accounts/{id}`). Default:
    /// the request path after base path and version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_path: Option<String>,
    /// A pool for this route instead of the version's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Policies for this route (override the API's).
    #[serde(default)]
    pub policies: Policies,
}

/// A condition on one header or query parameter. Exactly one of `equals`, `present` holds.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredicateSpec {
    /// Header name (case-insensitive) or query parameter name (case-sensitive).
    pub name: String,
    /// The value must equal this exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// `true`: must be present; `false`: must be absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

/// Policy sections, set at gateway, API or route level; the most specific level wins per
/// field. Later pipeline stages (auth, rate limits, caching, ...) add their sections here.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// How requests are sent to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamPolicySpec>,
}

/// How requests are sent to the backend.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPolicySpec {
    /// Time to wait for response headers, in ms (1 to 300000). Overrides the pool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Try the next instance when one cannot be reached, for idempotent methods only
    /// (GET, HEAD, OPTIONS, PUT, DELETE, TRACE). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<bool>,
    /// The largest request body (by `Content-Length`) kept in memory so that a failover can
    /// send it again (0 to 1048576 bytes, default 65536). Larger or chunked bodies stream
    /// straight through and are not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_buffer_bytes: Option<u64>,
}
