//! The pipeline driver: one request through the stages, in a fixed order.
//!
//! | # | stage | decides | on failure |
//! |---|-------|---------|-----------|
//! | 0 | admin | requests for the admin API ([`crate::admin`]) are answered there, before anything below (the host asks [`Gateway::admin_match`]) | — |
//! | 1 | ids | request id (kept or new), `traceparent` (propagated or new) | — |
//! | 1b | emergency block | the client address against the overrides' block list ([`crate::control`]); audit line | 403 `ip_blocked` |
//! | 2 | config | the config version the whole request runs on | 503 `no_config` |
//! | 3 | path | normalized ([`crate::path::normalize`]): no dot or encoded-slash tricks | 400 `invalid_path` |
//! | 4 | route | API, version, environment, route, pool, upstream path | 404 / 405 + `Allow` |
//! | 4b | disabled route | the matched route against the overrides' disabled routes; audit line | 503 `route_disabled` |
//! | 5 | authentication | the caller ([`crate::auth`]): JWT, introspection, API key, mTLS, or anonymous | 401 / 503 |
//! | 6 | authorization | IP lists, subscription (Registry snapshot), environment, scopes, roles, Cedar ([`crate::authz`]); audit events | 403 (or 404 when hidden) / 503 |
//! | 6b | rate limits | every level's limits on the shared counters ([`crate::ratelimit`]); headers | 429 + `Retry-After` / 503 |
//! | 7 | upstream request | header hygiene, forwarding, identity and subscription headers, minted token, ids | 500 (no signing key) |
//! | 8 | upstream | instance choice, timeout, failover on connect errors | 502 / 504 |
//! | 9 | response | hop-by-hop removal, `X-Request-ID`, access log | — |
//!
//! Failed authentications count against a per-address limit when
//! `gateway.auth_failure_limit` is set (checked before stage 5). Later stages (cache,
//! transforms, breakers) slot in between 6b and 7 as functions returning `Result<_, LocalReply>`: a stage that ends a request returns
//! a [`LocalReply`]; the driver renders it once, as problem+json, and logs it.

use crate::access_log::{rfc3339_ms, AccessLogRecord};
use crate::auth::{mint, Authenticator, IdentityHeaders, Principal};
use crate::authz::{authorize, AuthzRequest, Deny, Grant};
use crate::config::{CompiledConfig, ResolvedRoute};
use crate::config_store::ConfigStore;
use crate::control::{ControlCache, ControlState};
use crate::headers::{
    hop_by_hop_edits, hop_by_hop_in, is_spoofable, set_forwarding, ClientHop, HeaderEdits,
    HeaderList, HeaderRead,
};
use crate::platform::{Platform, UpstreamError, UpstreamRequest, UpstreamResponse};
use crate::problem::{ErrorCode, LocalReply, PROBLEM_CONTENT_TYPE};
use crate::ratelimit::{response_headers, Limiter, RateOutcome, RateRequest};
use crate::route::{normalize_host, QueryView, RouteMiss, RouteRequest};
use crate::snapshot::{Snapshot, SnapshotStore};
use crate::trace::{self, RANDOM_BYTES};
use std::rc::Rc;

/// A request's head as the host hands it to the core.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method, as sent.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The `Host` (with port, if any).
    pub host: String,
    /// Raw path, percent-encoded as received.
    pub path: String,
    /// Raw query without `?`, if any.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderList,
    /// The client's address, as the platform reports it.
    pub client_ip: Option<String>,
}

/// The answer to the client.
#[derive(Debug)]
pub enum ResponseBody<B> {
    /// The backend's body, streamed through.
    Upstream(B),
    /// A body the gateway made (problem+json).
    Bytes(Vec<u8>),
}

/// The headers of the answer to the client.
#[derive(Debug)]
pub enum ResponseHeaders<H> {
    /// The backend's headers (the host's map) with the gateway's edits applied on top.
    Upstream(H, HeaderEdits),
    /// Headers the gateway made (local replies).
    Own(HeaderList),
}

/// A response head and body for the host to send. `H` is the host's header map.
#[derive(Debug)]
pub struct GatewayResponse<B, H = HeaderList> {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: ResponseHeaders<H>,
    /// Body.
    pub body: ResponseBody<B>,
}

impl<B> GatewayResponse<B, HeaderList> {
    /// Every response header as the client will see it (for hosts whose map is a
    /// [`HeaderList`]).
    pub fn header_list(&self) -> HeaderList {
        match &self.headers {
            ResponseHeaders::Own(list) => list.clone(),
            ResponseHeaders::Upstream(base, edits) => edits.apply(base),
        }
    }
}

impl<B, H: HeaderRead> GatewayResponse<B, H> {
    /// The value of a response header as the client will see it.
    pub fn header(&self, name: &str) -> Option<String> {
        match &self.headers {
            ResponseHeaders::Own(list) => list.get_header(name),
            ResponseHeaders::Upstream(base, edits) => {
                let name = name.to_ascii_lowercase();
                if let Some((_, v)) = edits.sets().iter().find(|(n, _)| *n == name) {
                    return Some(v.clone());
                }
                if edits.removals().contains(&name) {
                    return None;
                }
                base.get_header(&name)
            }
        }
    }
}

/// Settings that come from the deployment rather than the config document.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeSettings {
    /// How often an isolate re-reads the config pointer, in ms.
    pub config_refresh_ms: u64,
    /// How often an isolate re-reads the Registry snapshot's manifest, in ms.
    pub snapshot_refresh_ms: u64,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            config_refresh_ms: 5_000,
            snapshot_refresh_ms: 30_000,
        }
    }
}

/// How often an isolate re-reads the emergency overrides by default, in ms
/// (`EDGEGATE_CONTROL_REFRESH_MS`).
pub const DEFAULT_CONTROL_REFRESH_MS: u64 = 3_000;

/// The gateway of one isolate: the config cache and the pipeline.
pub struct Gateway {
    store: ConfigStore,
    auth: Authenticator,
    snapshots: SnapshotStore,
    limiter: Limiter,
    control: ControlCache,
    admin: crate::admin::AdminSettings,
    registry: Result<Option<crate::registry::RegistrySettings>, crate::registry::SettingsError>,
}

/// What the driver learns about a request as it goes, for the access log.
struct Trail {
    request_id: String,
    trace_id: String,
    config_version: Option<String>,
    route: Option<(String, String, Option<String>, String)>,
    upstream: Option<String>,
    attempts: u32,
    backend_ms: Option<u64>,
    principal: Option<Principal>,
    grant: Option<Grant>,
}

impl Gateway {
    /// A gateway with an empty config cache.
    pub fn new(settings: RuntimeSettings) -> Self {
        Gateway {
            store: ConfigStore::new(settings.config_refresh_ms)
                .with_admin(crate::admin::AdminSettings::default()),
            auth: Authenticator::default(),
            snapshots: SnapshotStore::new(settings.snapshot_refresh_ms),
            limiter: Limiter::default(),
            control: ControlCache::new(DEFAULT_CONTROL_REFRESH_MS),
            admin: crate::admin::AdminSettings::default(),
            registry: Ok(None),
        }
    }

    /// This gateway with its Registry sync settings (`Ok(None)`: sync off; `Err`: the
    /// deployment's variables are invalid, reported by every sync attempt and by the admin
    /// API's health). See [`crate::registry::RegistrySettings::from_vars`].
    pub fn with_registry(
        mut self,
        settings: Result<Option<crate::registry::RegistrySettings>, crate::registry::SettingsError>,
    ) -> Self {
        self.registry = settings;
        self
    }

    /// The Registry sync settings given by [`Gateway::with_registry`].
    pub fn registry_settings(
        &self,
    ) -> &Result<Option<crate::registry::RegistrySettings>, crate::registry::SettingsError> {
        &self.registry
    }

    /// This gateway with the admin API's settings (prefix or host, rate limit). Configs
    /// whose routes reach the admin API's paths are refused from then on.
    pub fn with_admin(mut self, admin: crate::admin::AdminSettings) -> Self {
        self.store = self.store.with_admin(admin.clone());
        self.admin = admin;
        self
    }

    /// This gateway with its overrides cache (default: [`ControlCache::new`] with
    /// [`DEFAULT_CONTROL_REFRESH_MS`], re-reading inline).
    pub fn with_control(mut self, cache: ControlCache) -> Self {
        self.control = cache;
        self
    }

    /// The admin API's settings.
    pub fn admin_settings(&self) -> &crate::admin::AdminSettings {
        &self.admin
    }

    /// The isolate's copy of the emergency overrides.
    pub fn control(&self) -> &ControlCache {
        &self.control
    }

    /// Whether a request is for the admin API (host and path; see
    /// [`crate::admin::AdminSettings::matches`]). Hosts ask before [`Gateway::handle`] and
    /// send matches, with their body read, to [`Gateway::handle_admin`].
    pub fn admin_match(&self, req: &RequestHead) -> Option<crate::admin::AdminMatch> {
        self.admin.matches(&req.host, &req.path)
    }

    /// Answers an admin request ([`crate::admin::handle`]; `body` is read only for an
    /// authorized call). Never fails.
    pub async fn handle_admin<P: Platform>(
        &self,
        p: &P,
        req: &RequestHead,
        target: crate::admin::AdminMatch,
        body: impl std::future::Future<Output = Result<Vec<u8>, crate::admin::BodyError>>,
    ) -> GatewayResponse<P::Body, P::Headers> {
        crate::admin::handle(self, p, req, target, body).await
    }

    /// The rate-limit state (leases, counter failures).
    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    /// The Registry snapshot cache (the scheduled handler refreshes it).
    pub fn snapshot_store(&self) -> &SnapshotStore {
        &self.snapshots
    }

    /// The authentication state (key store, verified-token cache).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// The config cache (the scheduled handler refreshes it; admin reads it).
    pub fn config_store(&self) -> &ConfigStore {
        &self.store
    }

    /// Runs one request through the pipeline and returns the response to send.
    ///
    /// Never fails: every failure becomes a problem+json reply, and exactly one access-log
    /// line is written per request.
    pub async fn handle<P: Platform>(
        &self,
        p: &P,
        req: RequestHead,
        body: P::Body,
    ) -> GatewayResponse<P::Body, P::Headers> {
        let start_ms = p.now_ms();
        let mut random = [0u8; RANDOM_BYTES];
        p.fill(&mut random);
        let (rid_bytes, trace_bytes) = random.split_at(16);
        let request_id = trace::request_id(
            req.headers.get("x-request-id"),
            rid_bytes.try_into().unwrap_or(&[0; 16]),
        );
        let traceparent = trace::traceparent(
            req.headers.get("traceparent"),
            trace_bytes.try_into().unwrap_or(&[0; 24]),
        );
        let mut trail = Trail {
            request_id,
            trace_id: traceparent.get(3..35).unwrap_or_default().to_string(),
            config_version: None,
            route: None,
            upstream: None,
            attempts: 0,
            backend_ms: None,
            principal: None,
            grant: None,
        };

        let control = self.control.current(p).await;
        let blocked = control
            .as_deref()
            .and_then(|c| blocked_reply(p, c, &req, &trail));
        let outcome = match (blocked, self.store.current(p).await) {
            (Some(reply), _) => Err(reply),
            (None, None) => Err(LocalReply::new(
                ErrorCode::NoConfig,
                "no valid config has been loaded",
            )),
            (None, Some(config)) => {
                trail.config_version = Some(config.version().to_string());
                self.proxy(
                    p,
                    &config,
                    control.as_deref(),
                    &req,
                    body,
                    &traceparent,
                    &mut trail,
                )
                .await
            }
        };

        let bytes_in = req
            .headers
            .get("content-length")
            .and_then(|v| v.trim().parse().ok());
        let (response, error) = match outcome {
            Ok(resp) => (resp, None),
            Err(reply) => (local_response(&reply, &trail.request_id), Some(reply)),
        };
        let record = AccessLogRecord {
            kind: "access",
            time: rfc3339_ms(start_ms),
            request_id: trail.request_id.clone(),
            trace_id: trail.trace_id.clone(),
            method: req.method.clone(),
            host: req.host.clone(),
            path: req.path.clone(),
            client_ip: req.client_ip.clone(),
            route: trail.route.as_ref().map(|r| r.1.clone()),
            api: trail.route.as_ref().map(|r| r.0.clone()),
            version: trail.route.as_ref().and_then(|r| r.2.clone()),
            environment: trail.route.as_ref().map(|r| r.3.clone()),
            status: response.status,
            error_code: error.as_ref().map(|e| e.code.as_str()),
            error_detail: error.map(|e| e.log_detail).filter(|d| !d.is_empty()),
            bytes_in,
            bytes_out: response
                .header("content-length")
                .and_then(|v| v.trim().parse().ok()),
            upstream: trail.upstream.clone(),
            attempts: trail.attempts,
            gateway_ms: p
                .now_ms()
                .saturating_sub(start_ms)
                .saturating_sub(trail.backend_ms.unwrap_or(0)),
            backend_ms: trail.backend_ms,
            config_version: trail.config_version.clone(),
            auth_method: trail.principal.as_ref().map(|p| p.method),
            subject: trail
                .principal
                .as_ref()
                .and_then(|p| p.subject().map(str::to_string)),
            application: trail
                .principal
                .as_ref()
                .and_then(|p| p.application().map(str::to_string)),
            subscription: trail.grant.as_ref().and_then(|g| g.subscription_id.clone()),
            scopes: trail
                .grant
                .as_ref()
                .and_then(|g| g.scopes.as_ref().map(|s| s.join(" "))),
        };
        p.log_line(&record.to_line());
        response
    }

    #[allow(clippy::too_many_arguments)]
    async fn proxy<P: Platform>(
        &self,
        p: &P,
        config: &Rc<CompiledConfig>,
        control: Option<&ControlState>,
        req: &RequestHead,
        body: P::Body,
        traceparent: &str,
        trail: &mut Trail,
    ) -> Result<GatewayResponse<P::Body, P::Headers>, LocalReply> {
        let RequestHead {
            method,
            scheme,
            host,
            path,
            query,
            headers,
            client_ip,
        } = req;
        let query = query.as_deref();
        let path = &*crate::path::normalize(path, config.settings().allow_encoded_slashes)
            .map_err(|why| LocalReply::new(ErrorCode::InvalidPath, why))?;

        let host_key = normalize_host(host);
        let route_req = RouteRequest {
            method,
            host: &host_key,
            path,
            headers,
            query: QueryView::new(query.unwrap_or("")),
        };
        let resolved = config.resolve(&route_req).map_err(|miss| match miss {
            RouteMiss::NotFound => LocalReply::new(ErrorCode::RouteNotFound, ""),
            RouteMiss::MethodNotAllowed(allowed) => {
                let allow = allowed.allow_header();
                LocalReply::new(ErrorCode::MethodNotAllowed, "")
                    .with_public_detail(format!("allowed methods: {allow}"))
                    .with_header("allow", allow)
            }
        })?;
        trail.route = Some((
            resolved.api.name.clone(),
            resolved.route.name.clone(),
            resolved.version.map(str::to_string),
            resolved.environment.to_string(),
        ));

        if let Some(off) =
            control.and_then(|c| c.disabled(&resolved.api.name, &resolved.route.name))
        {
            p.log_line(&override_audit_line(
                p.now_ms(),
                "route_disabled",
                ErrorCode::RouteDisabled,
                &format!("{}: {}", off.route, off.reason),
                req,
                trail,
                control.map(|c| c.revision),
            ));
            return Err(LocalReply::new(
                ErrorCode::RouteDisabled,
                format!("{} disabled by an operator: {}", off.route, off.reason),
            ));
        }

        let route = resolved.route;
        let wants_snapshot = route.authz.as_ref().is_some_and(|a| a.needs_snapshot())
            || route.auth.as_ref().is_some_and(|a| a.api_key.is_some());
        let snapshot = if wants_snapshot {
            self.snapshots
                .current_for(p, config.snapshot_manifest())
                .await
        } else {
            None
        };
        let client_addr: Option<std::net::IpAddr> =
            client_ip.as_deref().and_then(|ip| ip.trim().parse().ok());
        if let Some(policy) = &route.auth {
            // The attempt is counted first and given back unless it fails with 401: atomic,
            // so concurrent guesses cannot all pass before any is counted.
            let failure_limit = config.auth_failure_limit().zip(client_addr);
            let counted = match failure_limit {
                Some((limit, ip)) => self.limiter.admit_auth_attempt(p, limit, ip).await?,
                None => None,
            };
            let result = self
                .auth
                .authenticate(p, config, policy, snapshot.as_deref(), headers, query)
                .await;
            let failed = matches!(&result, Err(reply) if reply.code.status() == 401);
            if let (Some((limit, ip)), Some(at), false) = (failure_limit, counted, failed) {
                self.limiter.forgive_auth_attempt(p, limit, ip, at).await;
            }
            trail.principal = Some(result?);
        }
        if let Some(policy) = &route.authz {
            // Only Cedar policies look at the country (a read of `request.cf` on Workers).
            let country = policy.has_abac().then(|| p.client_country()).flatten();
            let areq = AuthzRequest {
                principal: trail.principal.as_ref(),
                api: &resolved.api.name,
                version: resolved.version,
                environment: resolved.environment,
                method,
                route: &route.name,
                headers,
                country: country.as_deref(),
                client_ip: client_addr,
                now_s: (p.now_ms() / 1000) as i64,
                snapshot: snapshot.as_deref(),
            };
            let verdict = authorize(policy, &areq);
            for d in &verdict.shadow {
                p.log_line(&audit_line(
                    p.now_ms(),
                    "shadow",
                    d,
                    &areq,
                    trail,
                    &snapshot,
                ));
            }
            if let Some(d) = verdict.deny {
                p.log_line(&audit_line(p.now_ms(), "deny", &d, &areq, trail, &snapshot));
                return Err(deny_reply(d, policy.hide_with_404));
            }
            trail.grant = Some(verdict.grant);
        }

        let rate = if route.rate_limits.is_empty() {
            RateOutcome::default()
        } else {
            let grant = trail.grant.as_ref();
            let rreq = RateRequest {
                api: &resolved.api.name,
                route: &route.name,
                subscription: grant.and_then(|g| g.subscription_id.as_deref()),
                rate_plan: grant.and_then(|g| g.rate_plan.as_deref()),
                application: trail.principal.as_ref().and_then(|p| p.application()),
                client_ip: client_addr,
                priority: grant.is_some_and(|g| g.priority),
                request_id: &trail.request_id,
            };
            self.limiter.check(p, &route.rate_limits, &rreq).await?
        };

        // (Later stages go here: cache, transforms.)

        let mut upstream_headers = upstream_headers(
            config,
            headers,
            scheme,
            host,
            client_ip.as_deref(),
            &trail.request_id,
            traceparent,
        );
        if let Some(principal) = &trail.principal {
            identity_edits(
                &mut upstream_headers,
                config.identity_headers(),
                principal,
                trail.grant.as_ref(),
            );
        }
        if let Some(m) = &resolved.route.mint {
            let token = mint(p, m, trail.principal.as_ref(), &trail.request_id)
                .await
                .map_err(|e| LocalReply::new(e.code, e.detail))?;
            let value = if m.header == "authorization" {
                format!("Bearer {token}")
            } else {
                token
            };
            upstream_headers.set(&m.header, value);
        }
        let content_length = headers
            .get("content-length")
            .and_then(|v| v.trim().parse::<u64>().ok());
        // API keys are credentials for the gateway: they never reach the backend.
        let mut query = query.map(std::borrow::Cow::Borrowed);
        if let Some(keys) = resolved
            .route
            .auth
            .as_ref()
            .and_then(|a| a.api_key.as_ref())
        {
            upstream_headers.remove(&keys.header);
            if let (Some(param), Some(raw)) = (&keys.query, query.as_deref()) {
                query = crate::route::without_param(raw, param).map(std::borrow::Cow::Owned);
            }
        }
        let response = send_with_failover(
            p,
            &resolved,
            method,
            query.as_deref(),
            headers,
            upstream_headers,
            content_length,
            body,
            trail,
        )
        .await?;

        let mut edits = HeaderEdits::new();
        hop_by_hop_edits(
            &mut edits,
            response.headers.get_header("connection").as_deref(),
        );
        edits.set("x-request-id", trail.request_id.clone());
        for (name, value) in response_headers(&rate) {
            edits.set(name, value);
        }
        Ok(GatewayResponse {
            status: response.status,
            headers: ResponseHeaders::Upstream(response.headers, edits),
            body: ResponseBody::Upstream(response.body),
        })
    }
}

/// The headers sent upstream, as edits to the client's: hop-by-hop and spoofable fields,
/// `host` and `content-length` removed; forwarding headers, the request id and the trace
/// context set.
fn upstream_headers(
    config: &CompiledConfig,
    client: &HeaderList,
    scheme: &str,
    host: &str,
    client_ip: Option<&str>,
    request_id: &str,
    traceparent: &str,
) -> HeaderEdits {
    let settings = config.settings();
    let (prior_for, prior_fwd) = if settings.trust_forwarded {
        (
            client.get_header("x-forwarded-for"),
            client.get_header("forwarded"),
        )
    } else {
        (None, None)
    };
    // Only fields the client sent are removed: each edit costs the host a call.
    let mut edits = HeaderEdits::new();
    let is_hop = hop_by_hop_in(client);
    for (name, _) in client.iter() {
        if is_hop(name)
            || name == "host"
            || name == "content-length"
            || is_spoofable(name, &settings.strip_request_headers)
        {
            edits.remove(name);
        }
    }
    set_forwarding(
        &mut edits,
        ClientHop {
            client_ip,
            proto: scheme,
            host,
        },
        prior_for.as_deref(),
        prior_fwd.as_deref(),
    );
    edits.set("x-request-id", request_id);
    edits.set("traceparent", traceparent);
    edits
}

/// Sets the identity headers for the backend (the client's copies were removed with the
/// spoofable fields). Fields the principal lacks are not sent; with a subscription grant, the
/// scopes are the granted ones and the subscription id is sent.
fn identity_edits(
    edits: &mut HeaderEdits,
    names: &IdentityHeaders,
    principal: &Principal,
    grant: Option<&Grant>,
) {
    let scopes = match grant.and_then(|g| g.scopes.as_ref()) {
        Some(granted) => granted.join(" "),
        None => principal.scopes().join(" "),
    };
    let values = [
        (
            &names.subscription,
            grant.and_then(|g| g.subscription_id.as_deref()),
        ),
        (&names.method, Some(principal.method)),
        (&names.subject, principal.subject()),
        (&names.issuer, principal.issuer()),
        (&names.application, principal.application()),
        (
            &names.scopes,
            (!scopes.is_empty()).then_some(scopes.as_str()),
        ),
    ];
    for (name, value) in values {
        if let (Some(name), Some(value)) = (name, value) {
            edits.set(name, value);
        }
    }
}

fn is_idempotent(method: &str) -> bool {
    matches!(
        method,
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE"
    )
}

/// Sends to the pool: the balancer's pick first, then (idempotent methods, failover on, body
/// replayable) each other instance once on connection failure. A timeout is never retried.
#[allow(clippy::too_many_arguments)]
async fn send_with_failover<P: Platform>(
    p: &P,
    resolved: &ResolvedRoute<'_>,
    method: &str,
    query: Option<&str>,
    inbound: &HeaderList,
    headers: HeaderEdits,
    content_length: Option<u64>,
    body: P::Body,
    trail: &mut Trail,
) -> Result<UpstreamResponse<P::Body, P::Headers>, LocalReply> {
    let pool = resolved.pool;
    let policy = resolved.route.upstream;
    let failover = policy.failover && is_idempotent(method) && pool.instances().len() > 1;

    // A declared-empty body is sent as no body: it is then replayable like any empty body
    // (hosts may hand over an empty stream, which could be sent only once).
    let mut body = Some(if content_length == Some(0) {
        p.empty_body()
    } else {
        body
    });
    if failover {
        if let (Some(len @ 1..), Some(b)) = (content_length, body.as_ref()) {
            if len <= policy.replay_buffer_bytes && p.try_clone_body(b).is_none() {
                let taken = body.take().unwrap_or_else(|| p.empty_body());
                body = Some(
                    p.buffer_body(taken, policy.replay_buffer_bytes)
                        .await
                        .map_err(|e| {
                            LocalReply::new(
                                ErrorCode::InvalidRequestBody,
                                format!("buffering for failover: {e}"),
                            )
                        })?,
                );
            }
        }
    }

    let first = pool.choose(p).await;
    let order: Vec<usize> = if failover {
        std::iter::once(first)
            .chain(pool.failover_order(first))
            .collect()
    } else {
        vec![first]
    };
    let mut request = UpstreamRequest {
        method: method.to_string(),
        url: String::new(),
        headers,
        content_length,
        timeout_ms: resolved.timeout_ms,
    };
    let mut failures = Vec::new();
    for (k, &idx) in order.iter().enumerate() {
        let instance = &pool.instances()[idx];
        request.url = instance.url.join(&resolved.upstream_path, query);
        let is_last = k + 1 == order.len();
        let Some(current) = body.take() else { break };
        let this_body = if is_last {
            current
        } else {
            match p.try_clone_body(&current) {
                Some(copy) => {
                    body = Some(current);
                    copy
                }
                None => current, // a stream can be sent once: this is the last attempt
            }
        };
        trail.attempts += 1;
        trail.upstream = Some(instance.url.as_str().to_string());
        let sent_at = p.now_ms();
        let result = p.send(inbound, &request, this_body).await;
        *trail.backend_ms.get_or_insert(0) += p.now_ms().saturating_sub(sent_at);
        match result {
            Ok(resp) => return Ok(resp),
            Err(UpstreamError::Timeout) => {
                return Err(LocalReply::new(
                    ErrorCode::UpstreamTimeout,
                    format!(
                        "{} gave no response head within {} ms",
                        instance.url.as_str(),
                        resolved.timeout_ms
                    ),
                ))
            }
            Err(UpstreamError::Invalid(detail)) => {
                return Err(LocalReply::new(
                    ErrorCode::InternalError,
                    format!("request to {} not built: {detail}", instance.url.as_str()),
                ))
            }
            Err(UpstreamError::Connect(detail)) => {
                failures.push(format!("{}: {detail}", instance.url.as_str()))
            }
        }
    }
    Err(LocalReply::new(
        ErrorCode::UpstreamUnreachable,
        failures.join("; "),
    ))
}

/// The reply for an enforced deny: 403 with its reason code (and `WWW-Authenticate` for
/// missing scopes, RFC 6750 §3.1), or 404 `route_not_found` where the policy hides denials.
fn deny_reply(d: Deny, hide: bool) -> LocalReply {
    if hide {
        return LocalReply::new(ErrorCode::RouteNotFound, d.detail);
    }
    let reply = LocalReply::new(d.code, d.detail);
    match d.required_scopes {
        Some(scope) => reply.with_header(
            "www-authenticate",
            format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\""),
        ),
        None => reply,
    }
}

/// One authorization decision as an audit log line: who (subject, application, auth method,
/// client address), what (API, version, environment, route, method, path), which rule and
/// why, and the snapshot it was taken on. Never a credential.
fn audit_line(
    now_ms: u64,
    decision: &str,
    d: &Deny,
    req: &AuthzRequest<'_>,
    trail: &Trail,
    snapshot: &Option<Rc<Snapshot>>,
) -> String {
    let principal = req.principal;
    serde_json::json!({
        "kind": "audit",
        "time": rfc3339_ms(now_ms),
        "decision": decision,
        "rule": d.rule.as_str(),
        "reason": d.code.as_str(),
        "detail": d.detail,
        "request_id": trail.request_id,
        "api": req.api,
        "version": req.version,
        "environment": req.environment,
        "route": trail.route.as_ref().map(|r| r.1.as_str()),
        "method": req.method,
        "client_ip": req.client_ip.map(|ip| ip.to_string()),
        "auth_method": principal.map(|p| p.method),
        "subject": principal.and_then(|p| p.subject()),
        "application": principal.and_then(|p| p.application()),
        "snapshot_version": snapshot.as_ref().map(|s| s.version()),
    })
    .to_string()
}

/// 403 `ip_blocked` (and its audit line) when the client's address is on the block list.
fn blocked_reply<P: Platform>(
    p: &P,
    control: &ControlState,
    req: &RequestHead,
    trail: &Trail,
) -> Option<LocalReply> {
    if control.blocks.is_empty() {
        return None;
    }
    let ip: std::net::IpAddr = req.client_ip.as_deref()?.trim().parse().ok()?;
    let now = p.now_ms();
    let block = control.blocked(ip, now)?;
    let detail = format!("{} blocked: {}", block.cidr, block.reason);
    p.log_line(&override_audit_line(
        now,
        "emergency_block",
        ErrorCode::IpBlocked,
        &detail,
        req,
        trail,
        Some(control.revision),
    ));
    Some(LocalReply::new(ErrorCode::IpBlocked, detail))
}

/// The audit line of a request refused by an emergency override (block or disabled route).
fn override_audit_line(
    now_ms: u64,
    rule: &str,
    code: ErrorCode,
    detail: &str,
    req: &RequestHead,
    trail: &Trail,
    revision: Option<u64>,
) -> String {
    let route = trail.route.as_ref();
    serde_json::json!({
        "kind": "audit",
        "time": rfc3339_ms(now_ms),
        "decision": "deny",
        "rule": rule,
        "reason": code.as_str(),
        "detail": detail,
        "request_id": trail.request_id,
        "api": route.map(|r| r.0.as_str()),
        "version": route.and_then(|r| r.2.as_deref()),
        "environment": route.map(|r| r.3.as_str()),
        "route": route.map(|r| r.1.as_str()),
        "method": req.method,
        "path": req.path,
        "client_ip": req.client_ip,
        "control_revision": revision,
    })
    .to_string()
}

/// The response for a local reply: problem+json with the request id.
pub(crate) fn local_response<B, H>(reply: &LocalReply, request_id: &str) -> GatewayResponse<B, H> {
    let body = reply.render(request_id);
    let mut headers = HeaderList::new();
    headers.set("content-type", PROBLEM_CONTENT_TYPE);
    headers.set("content-length", body.len().to_string());
    headers.set("cache-control", "no-store");
    headers.set("x-request-id", request_id);
    for (n, v) in &reply.headers {
        headers.set(n, v.clone());
    }
    GatewayResponse {
        status: reply.code.status(),
        headers: ResponseHeaders::Own(headers),
        body: ResponseBody::Bytes(body),
    }
}
