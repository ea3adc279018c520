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
    /// Token issuers by name; `auth.jwt.providers` refers to them.
    #[serde(default)]
    pub identity_providers: BTreeMap<String, IdentityProviderSpec>,
    /// The APIs the gateway serves.
    pub apis: Vec<ApiSpec>,
    /// The Registry snapshot this config runs with (its shard manifest, as the Registry sync
    /// or `edgegate snapshot build` writes it). When set, isolates load exactly this snapshot
    /// with this config, so one pointer write switches both; when absent, the snapshot named
    /// by the `snapshot:manifest` key serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<crate::snapshot::ShardManifest>,
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
    /// Failed authentications per client address (brute-force protection): when set, a
    /// client over this limit gets 429 before its credentials are checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_failure_limit: Option<AuthFailureLimitSpec>,
    /// Request headers that carry the authenticated identity to backends. Whatever the client
    /// sends in these is always removed first.
    #[serde(default)]
    pub identity_headers: IdentityHeadersSpec,
}

/// The per-address limit on failed authentications.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthFailureLimitSpec {
    /// Failures allowed per window.
    pub limit: u64,
    /// The window in seconds (sliding window).
    pub window_s: u64,
    /// When the counter cannot be reached: `open` (default) or `closed`.
    #[serde(default)]
    pub on_error: FailureModeSpec,
}

/// Header names for the authenticated identity sent to backends (empty string: not sent).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityHeadersSpec {
    /// The token subject (`sub`). Default `x-edgegate-subject`.
    #[serde(default = "default_subject_header")]
    pub subject: String,
    /// The token issuer (`iss`). Default: not sent (each identity header costs the request
    /// about 1.4 µs of CPU on Workers); set e.g. `x-edgegate-issuer`.
    #[serde(default)]
    pub issuer: String,
    /// The client application (`azp` or `client_id`). Default `x-edgegate-application`.
    #[serde(default = "default_application_header")]
    pub application: String,
    /// The granted scopes, space-separated (with the subscription's, when one authorized the
    /// call). Default `x-edgegate-scopes`.
    #[serde(default = "default_scopes_header")]
    pub scopes: String,
    /// How the caller authenticated (`jwt`, `introspection`, `api_key`, `mtls`, `anonymous`).
    /// Default: not sent; set e.g. `x-edgegate-auth-method`.
    #[serde(default)]
    pub method: String,
    /// The id of the subscription that authorized the call. Default
    /// `x-edgegate-subscription`.
    #[serde(default = "default_subscription_header")]
    pub subscription: String,
}

fn default_subscription_header() -> String {
    "x-edgegate-subscription".into()
}

fn default_subject_header() -> String {
    "x-edgegate-subject".into()
}
fn default_application_header() -> String {
    "x-edgegate-application".into()
}
fn default_scopes_header() -> String {
    "x-edgegate-scopes".into()
}

impl Default for IdentityHeadersSpec {
    fn default() -> Self {
        IdentityHeadersSpec {
            subject: default_subject_header(),
            issuer: String::new(),
            application: default_application_header(),
            scopes: default_scopes_header(),
            method: String::new(),
            subscription: default_subscription_header(),
        }
    }
}

/// A token issuer: where its verification keys come from and how long they are trusted, and/or
/// where its opaque tokens are introspected. At most one of `jwks_uri`, `discovery_url` and
/// `hmac_secret` is set; a provider has one of them or an `introspection_endpoint` (or both).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderSpec {
    /// The `iss` its tokens carry (compared exactly).
    pub issuer: String,
    /// The JWKS URL (https, or http to a loopback address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// OIDC discovery document URL (`…/.well-known/openid-configuration`); its `jwks_uri`
    /// is used, and its `issuer` must equal `issuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery_url: Option<String>,
    /// For HS256/384/512: the name of the secret (a Worker secret) holding the shared key; its
    /// UTF-8 bytes are the key and must be at least as long as the hash (32/48/64 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_secret: Option<String>,
    /// Keys are trusted at least this long after a fetch, even if `Cache-Control` says less
    /// (seconds, default 60).
    #[serde(default = "default_min_ttl")]
    pub jwks_min_ttl_s: u64,
    /// … and at most this long, whatever `Cache-Control` says (seconds, default 86400).
    #[serde(default = "default_max_ttl")]
    pub jwks_max_ttl_s: u64,
    /// While the IdP cannot be reached, expired keys keep serving this long (seconds, default
    /// 86400); after that requests get 503 `idp_unavailable`.
    #[serde(default = "default_max_stale")]
    pub max_stale_s: u64,
    /// At most one key fetch per this interval per isolate, whatever asks for it (unknown
    /// `kid`s, expiry, failures) (seconds, default 10).
    #[serde(default = "default_refetch_interval")]
    pub refetch_interval_s: u64,
    /// Timeout of a key, discovery or introspection request in ms (default 5000).
    #[serde(default = "default_idp_timeout")]
    pub timeout_ms: u64,
    /// RFC 7662 token introspection endpoint, for opaque (non-JWT) tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<String>,
    /// The gateway's client id at the introspection endpoint (HTTP Basic authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The name of the secret (a Worker secret) holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// How long an introspection result is reused, in seconds (1 to 3600, default 60); never
    /// beyond the token's `exp`.
    #[serde(default = "default_introspection_ttl")]
    pub introspection_cache_ttl_s: u64,
}

fn default_introspection_ttl() -> u64 {
    60
}

fn default_min_ttl() -> u64 {
    60
}
fn default_max_ttl() -> u64 {
    86_400
}
fn default_max_stale() -> u64 {
    86_400
}
fn default_refetch_interval() -> u64 {
    10
}
fn default_idp_timeout() -> u64 {
    5_000
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

/// Policy sections, set at gateway, API or route level. `upstream`: the most specific level
/// wins per field; `auth`: the most specific level that sets it wins as a whole. Later
/// pipeline stages (rate limits, caching, ...) add their sections here.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policies {
    /// How requests are sent to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamPolicySpec>,
    /// Who may call: the accepted authentication methods. Without an `auth` section at any
    /// level, routes are anonymous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthPolicySpec>,
    /// Mint a short-lived signed token for the backend (service-to-service authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mint_token: Option<MintTokenSpec>,
    /// What an authenticated caller may call: subscription, environment, scopes, roles, IP
    /// lists. Each rule set is taken from the most specific level that sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<AuthorizationSpec>,
    /// Rate limits and quotas. Limits of every level apply together (a request must pass all
    /// of them); a limit with the same `name` at a more specific level replaces the broader
    /// one (`"mode": "off"` removes it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rate_limits: Vec<RateLimitSpec>,
}

/// One rate limit or quota.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Name, unique per route (letters, digits, `-`, `_`, `.`); shown in the `RateLimit`
    /// headers and logs.
    pub name: String,
    /// What is counted separately: `subscription` (per authorizing subscription; skipped when
    /// none), `application`, `api` (the API's global capacity), `route`, `ip` (per client
    /// address; IPv6 per /64).
    pub key: RateKeySpec,
    /// `token_bucket`, `sliding_window` or `quota`.
    pub algorithm: RateAlgorithmSpec,
    /// Requests per window (token bucket: refill per window; quota: per period).
    pub limit: u64,
    /// Window in seconds (1, 60, 3600, 86400, ...) for `token_bucket` and `sliding_window`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_s: Option<u64>,
    /// Token bucket capacity (default: `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Quota period, calendar-aligned in UTC: `month` or `year`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<QuotaPeriodSpec>,
    /// With `key: subscription`: the limit per rate plan (the subscription's plan's
    /// `rate_plan` in the Registry snapshot); `limit` applies to plans not listed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plans: BTreeMap<String, u64>,
    /// `exact` (default: never admits over the limit; one counter round trip per request),
    /// `approximate` (isolates lease blocks of `lease` units; bounded over-admission),
    /// `shadow` (counts and logs, never blocks) or `off`.
    #[serde(default)]
    pub mode: RateModeSpec,
    /// When the counter cannot be reached: `open` (default: let the request through) or
    /// `closed` (503 `rate_limit_unavailable`). Logged either way.
    #[serde(default)]
    pub on_error: FailureModeSpec,
    /// Split a hot key over this many counters (1-64, default 1), each with `limit / shards`:
    /// more throughput, and a caller may be limited when its shard is spent before the total.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u32>,
    /// Approximate mode: units leased at once (default: 1% of the limit, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<u64>,
    /// Wait up to this many ms for capacity before answering 429 (default 0, at most 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ms: Option<u64>,
}

/// What a rate limit counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateKeySpec {
    /// Per authorizing subscription.
    Subscription,
    /// Per client application.
    Application,
    /// Per API.
    Api,
    /// Per route.
    Route,
    /// Per client address.
    Ip,
}

/// A rate-limit algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateAlgorithmSpec {
    /// Continuous refill with a burst capacity.
    TokenBucket,
    /// Sliding window counter.
    SlidingWindow,
    /// Calendar quota (month or year, UTC), durable.
    Quota,
}

/// A quota's period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriodSpec {
    /// Calendar month, UTC.
    Month,
    /// Calendar year, UTC.
    Year,
}

/// How a rate limit is enforced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RateModeSpec {
    /// One atomic counter call per request: never over the limit.
    #[default]
    Exact,
    /// Leased blocks spent locally: fast, bounded over-admission.
    Approximate,
    /// Counted and logged, never blocks.
    Shadow,
    /// Removed.
    Off,
}

/// What to do when a counter cannot be reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureModeSpec {
    /// Let the request through.
    #[default]
    Open,
    /// Answer 503.
    Closed,
}

/// How a rule set is applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleModeSpec {
    /// Not evaluated (turns off a rule set inherited from a broader level).
    Off,
    /// Evaluated; a deny is logged as an audit event and the request goes on.
    Shadow,
    /// Evaluated; a deny ends the request with 403.
    #[default]
    Enforce,
}

/// Authorization rule sets. Evaluated after authentication, in this order: `ip`,
/// `subscription`, `environment_isolation`, `scopes`, `roles`; the first enforced deny
/// answers. Every deny (enforced or shadow) is an audit log event.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationSpec {
    /// The caller's application must hold an active, unexpired subscription (from the
    /// Registry snapshot) to this API, version and environment; its IP lists apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<SubscriptionRuleSpec>,
    /// Credentials of one environment cannot call another (`production` keys never reach
    /// `sandbox` and the reverse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_isolation: Option<EnvironmentRuleSpec>,
    /// Scopes the route requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<ScopeRuleSpec>,
    /// Roles the route requires, per method class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<RoleRuleSpec>,
    /// Client networks allowed or denied for the API or route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpRuleSpec>,
    /// Cedar policies (ABAC), evaluated last. Needs a build with the `cedar` feature (the
    /// worker's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abac: Option<AbacRuleSpec>,
    /// The data classification of these endpoints, seen by Cedar policies as
    /// `resource.classification` (e.g. `public`, `internal`, `pii`). Default `internal`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classification: Option<String>,
    /// Answer an enforced deny with 404 `route_not_found` instead of 403, so callers cannot
    /// tell the endpoint exists (the audit event keeps the real reason). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hide_with_404: Option<bool>,
}

/// The ABAC rule: Cedar policies over the caller, the endpoint and the request context.
///
/// Principal `Edgegate::Caller` (`subject`, `consumer`, `application`, `auth_method`,
/// `roles`, `scopes`, `claims`), action `Edgegate::Action::"GET"` etc., resource
/// `Edgegate::Endpoint` (`api`, `version`, `route`, `environment`, `classification`), context
/// (`method`, `time` in unix seconds, optional `ip` (ipaddr) and `country`, `headers`).
/// Policies are validated against that schema when the config is compiled.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbacRuleSpec {
    /// `off`, `shadow` or `enforce` (default).
    #[serde(default)]
    pub mode: RuleModeSpec,
    /// The Cedar policies (text). Without a `permit` that applies, a call is denied.
    pub policies: String,
    /// String claims exposed as `principal.claims["<name>"]` (claim paths, e.g. `dept` or
    /// `org.unit`).
    #[serde(default)]
    pub claims: Vec<String>,
    /// Request headers exposed as `context.headers["<name>"]` (lower-case in policies).
    #[serde(default)]
    pub context_headers: Vec<String>,
    /// The claim with the caller's roles (`principal.roles`). Default `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles_claim: Option<String>,
}

/// The subscription rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRuleSpec {
    /// `off`, `shadow` or `enforce` (default).
    #[serde(default)]
    pub mode: RuleModeSpec,
}

/// The environment isolation rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentRuleSpec {
    /// `off`, `shadow` or `enforce` (default).
    #[serde(default)]
    pub mode: RuleModeSpec,
    /// The token claim (dot path) naming the credential's environment. Default `env`. API
    /// keys and certificates take it from their credential record. A credential without an
    /// environment is denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
}

/// The scope rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeRuleSpec {
    /// `off`, `shadow` or `enforce` (default).
    #[serde(default)]
    pub mode: RuleModeSpec,
    /// Every one of these scopes is required.
    pub required: Vec<String>,
    /// The claim (dot path, e.g. `permissions` or `realm_access.scopes`; an array or a
    /// space-separated string) holding the caller's scopes. Default: `scope` / `scp`. Scopes
    /// granted by the caller's subscription count too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
}

/// The role rule: which roles may use each class of method.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRuleSpec {
    /// `off`, `shadow` or `enforce` (default).
    #[serde(default)]
    pub mode: RuleModeSpec,
    /// The claim (dot path, e.g. `roles` or `realm_access.roles`; an array or a
    /// space-separated string) holding the caller's roles. Default `roles`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// Roles that may use read methods (`GET`, `HEAD`, `OPTIONS`). Empty: no role needed.
    #[serde(default)]
    pub read: Vec<String>,
    /// Roles that may use write methods (every other method). Empty: no role needed.
    #[serde(default)]
    pub write: Vec<String>,
    /// Roles that may use routes whose `class` is `admin`. Empty: no role needed.
    #[serde(default)]
    pub admin: Vec<String>,
    /// The method class of this API's or route's endpoints, overriding the method's:
    /// `read`, `write` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<MethodClassSpec>,
}

/// A class of endpoint for role checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MethodClassSpec {
    /// Reads.
    Read,
    /// Changes.
    Write,
    /// Administration.
    Admin,
}

/// The IP rule: CIDRs (`10.0.0.0/8`, `2001:db8::/32`, or a bare address).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpRuleSpec {
    /// `off`, `shadow` or `enforce` (default).
    #[serde(default)]
    pub mode: RuleModeSpec,
    /// When not empty, only clients in these networks pass.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Clients in these networks never pass (checked first).
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A token the gateway signs for each proxied request: the backend verifies the gateway (and
/// the caller the gateway authenticated) without trusting plain headers.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MintTokenSpec {
    /// `EdDSA` (the secret holds the base64url 32-byte Ed25519 seed) or `HS256` (the secret's
    /// UTF-8 bytes, at least 32).
    pub algorithm: String,
    /// The name of the secret (a Worker secret) with the signing key.
    pub key_secret: String,
    /// `kid` of the header, so backends can rotate keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// `iss` of the minted tokens. Default `edgegate`.
    #[serde(default = "default_mint_issuer")]
    pub issuer: String,
    /// `aud` of the minted tokens. Default: the API's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Lifetime in seconds (1 to 3600, default 60).
    #[serde(default = "default_mint_ttl")]
    pub ttl_s: u64,
    /// The request header that carries it (`Bearer ` is prepended for `authorization`).
    /// Default `x-edgegate-token`.
    #[serde(default = "default_mint_header")]
    pub header: String,
}

fn default_mint_issuer() -> String {
    "edgegate".into()
}
fn default_mint_ttl() -> u64 {
    60
}
fn default_mint_header() -> String {
    "x-edgegate-token".into()
}

/// Authentication of a route: the methods it accepts, tried in order until one applies.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthPolicySpec {
    /// Accepted methods. A request that presents a credential of an accepted method must pass
    /// it; a request that presents none passes only if `anonymous` is listed.
    pub accept: Vec<AuthMethodSpec>,
    /// Rules for `jwt` (required when `jwt` is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtPolicySpec>,
    /// Rules for `introspection` (required when `introspection` is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection: Option<IntrospectionPolicySpec>,
    /// Rules for `mtls` (required when `mtls` is accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<MtlsPolicySpec>,
    /// Where the API key is (when `api_key` is accepted; default: the `x-api-key` header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyPolicySpec>,
}

/// Where a route reads API keys. The key is removed before the request is proxied.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyPolicySpec {
    /// The request header with the key. Default `x-api-key`.
    #[serde(default = "default_api_key_header")]
    pub header: String,
    /// Also accept the key in this query parameter (keys in URLs leak into logs and
    /// histories: prefer the header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

fn default_api_key_header() -> String {
    "x-api-key".into()
}

/// Which verified client certificates are accepted, and as whom.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MtlsPolicySpec {
    /// Certificates and the consumer each one is. A certificate matches an entry by its
    /// SHA-256 fingerprint (hex, any case, `:` allowed) or by its subject DN (RFC 2253, exact).
    pub certificates: Vec<CertificateMappingSpec>,
}

/// One accepted client certificate. Exactly one of `fingerprint_sha256`, `subject_dn`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CertificateMappingSpec {
    /// The certificate's SHA-256 fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_sha256: Option<String>,
    /// The certificate's subject DN in RFC 2253 form (`CN=svc,O=Example`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_dn: Option<String>,
    /// The consumer the certificate authenticates as (sent as the subject).
    pub consumer: String,
}

/// What an opaque token must satisfy on a route (checked on the introspection response).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionPolicySpec {
    /// The identity provider whose `introspection_endpoint` is asked.
    pub provider: String,
    /// The response's `aud` must contain one of these. Empty: not checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Members the response must have (e.g. `sub`).
    #[serde(default)]
    pub required_claims: Vec<String>,
}

/// An authentication method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethodSpec {
    /// A signed JWT (`Authorization: Bearer …`) from one of the listed providers.
    Jwt,
    /// An opaque bearer token, checked at the provider's RFC 7662 introspection endpoint.
    /// When both are accepted, a token shaped like a compact JWS goes to `jwt`.
    Introspection,
    /// A client certificate the edge verified (mutual TLS), mapped to a consumer. Not
    /// available on every platform: configuring it where it is not is a config error.
    Mtls,
    /// An API key from a header or query parameter, looked up by its SHA-256 among the
    /// Registry's credential records.
    ApiKey,
    /// No credential needed.
    Anonymous,
}

/// What a JWT must satisfy on a route.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtPolicySpec {
    /// Identity providers whose tokens are accepted (by name); the token's `iss` picks one.
    pub providers: Vec<String>,
    /// The token's `aud` (string or array) must contain one of these. Empty: `aud` is not
    /// checked.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Accepted signature algorithms (`HS256`…`HS512`, `RS256`…`RS512`, `PS256`…`PS512`,
    /// `ES256`, `ES384`, `EdDSA`). Default `["RS256", "ES256"]`. `none` is never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds (0 to 300, default 60).
    #[serde(default = "default_leeway")]
    pub leeway_s: u64,
    /// Claims that must be present (e.g. `sub`, `jti`). `exp` is always required.
    #[serde(default)]
    pub required_claims: Vec<String>,
    /// The largest token accepted, in bytes (256 to 65536, default 8192).
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: u64,
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into()]
}
fn default_leeway() -> u64 {
    60
}
fn default_max_token_bytes() -> u64 {
    8192
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
