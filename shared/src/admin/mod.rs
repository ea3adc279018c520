//! The Gateway Admin API: matched before routing, on its own path prefix
//! (`EDGEGATE_ADMIN_PREFIX`, default `/__edgegate/admin`) or hostname (`EDGEGATE_ADMIN_HOST`),
//! and never reachable through API routes ([`AdminSettings::check_config`] refuses configs
//! whose routes would reach it).
//!
//! Every call, in this order:
//!
//! | # | step | on failure |
//! |---|------|-----------|
//! | 1 | the token secret `EDGEGATE_ADMIN_TOKEN` is set (≥ 16 bytes) | 404 `route_not_found` (the API is off) |
//! | 2 | per-client limit (exact counter `rl\|admin\|admin\|ip\|<address>`, `EDGEGATE_ADMIN_RATE_LIMIT` calls per minute) | 429 `rate_limited` + `Retry-After` |
//! | 3 | `Authorization: Bearer <token>`, compared in constant time ([`check_bearer`]) | 401 `admin_unauthorized` + `WWW-Authenticate` |
//! | 4 | endpoint ([`router::ROUTES`]) | 404 `route_not_found` / 405 + `Allow` |
//! | 5 | body (at most [`MAX_BODY_BYTES`]) | 413 `admin_body_too_large` |
//! | 6 | the endpoint (bad input: 400 `invalid_admin_request`, nothing changed) | 400 / 404 / 503 |
//!
//! Each call writes one audit line (`{"kind":"audit","decision":"admin",...}`: client
//! address, method, path, endpoint, status, outcome; never the token). Answers are JSON
//! (`application/json`), errors problem+json, all `Cache-Control: no-store`. The API
//! describes itself in OpenAPI 3.1 at `<prefix>/openapi.json` ([`openapi`]).
//!
//! Blocked addresses and disabled routes do not apply to the admin API (an operator cannot
//! lock themselves out with it; the token and its own limit guard it).

mod auth;
mod handlers;
pub mod router;
mod settings;

pub use auth::{check_bearer, TokenCheck};
pub use settings::{
    AdminMatch, AdminSettings, DEFAULT_CALLS_PER_MINUTE, DEFAULT_PREFIX, MIN_TOKEN_BYTES,
    TOKEN_SECRET,
};

use crate::access_log::rfc3339_ms;
use crate::headers::HeaderList;
use crate::pipeline::{
    local_response, Gateway, GatewayResponse, RequestHead, ResponseBody, ResponseHeaders,
};
use crate::platform::Platform;
use crate::problem::{ErrorCode, LocalReply};
use crate::ratelimit::{response_headers, RateRequest};
use crate::trace::{self, RANDOM_BYTES};

/// The largest request body the admin API reads (a config document to validate).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Why the host could not hand over an admin request's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Longer than [`MAX_BODY_BYTES`].
    TooLarge,
    /// The stream broke (detail for the log).
    Unreadable(String),
}

/// The OpenAPI 3.1 document of the admin API, with `servers` set to `prefix`.
pub fn openapi(prefix: &str) -> serde_json::Value {
    let mut doc: serde_json::Value =
        serde_json::from_str(include_str!("openapi.json")).unwrap_or_default();
    let url = if prefix.is_empty() { "/" } else { prefix };
    doc["servers"] = serde_json::json!([{ "url": url }]);
    doc
}

/// Answers one admin request (the host has matched it with [`AdminSettings::matches`] and
/// read its body). Never fails: every failure is a problem+json reply; exactly one audit
/// line is written.
///
/// `body` reads the request body; it is awaited only once the call is authorized and matched
/// to an endpoint, so unauthenticated clients cannot make the gateway buffer anything.
pub async fn handle<P: Platform>(
    gw: &Gateway,
    p: &P,
    req: &RequestHead,
    target: AdminMatch,
    body: impl std::future::Future<Output = Result<Vec<u8>, BodyError>>,
) -> GatewayResponse<P::Body, P::Headers> {
    let mut random = [0u8; RANDOM_BYTES];
    p.fill(&mut random);
    let request_id = trace::request_id(
        req.headers.get("x-request-id"),
        random[..16].try_into().unwrap_or(&[0; 16]),
    );
    let mut endpoint_name = "";
    let mut extra = Vec::new();
    let result = run(
        gw,
        p,
        req,
        target,
        body,
        &request_id,
        &mut endpoint_name,
        &mut extra,
    )
    .await;
    let (response, outcome, detail) = match result {
        Ok(done) => {
            let bytes = serde_json::to_vec_pretty(&done.body).unwrap_or_default();
            let mut headers = HeaderList::new();
            headers.set("content-type", "application/json");
            headers.set("content-length", bytes.len().to_string());
            headers.set("cache-control", "no-store");
            headers.set("x-request-id", request_id.as_str());
            for (n, v) in &extra {
                headers.set(n, v.clone());
            }
            let resp = GatewayResponse {
                status: done.status,
                headers: ResponseHeaders::Own(headers),
                body: ResponseBody::Bytes(bytes),
            };
            (resp, "ok", done.detail)
        }
        Err(reply) => {
            let mut resp = local_response(&reply, &request_id);
            if let ResponseHeaders::Own(h) = &mut resp.headers {
                for (n, v) in &extra {
                    h.set(n, v.clone());
                }
            }
            (resp, reply.code.as_str(), reply.log_detail)
        }
    };
    p.log_line(
        &serde_json::json!({
            "kind": "audit",
            "decision": "admin",
            "time": rfc3339_ms(p.now_ms()),
            "request_id": request_id,
            "client_ip": req.client_ip,
            "method": req.method,
            "path": req.path,
            "endpoint": endpoint_name,
            "status": response.status,
            "outcome": outcome,
            "detail": detail,
        })
        .to_string(),
    );
    response
}

#[allow(clippy::too_many_arguments)]
async fn run<P: Platform>(
    gw: &Gateway,
    p: &P,
    req: &RequestHead,
    target: AdminMatch,
    body: impl std::future::Future<Output = Result<Vec<u8>, BodyError>>,
    request_id: &str,
    endpoint_name: &mut &'static str,
    extra: &mut Vec<(String, String)>,
) -> Result<handlers::Done, LocalReply> {
    let Some(token) = p
        .secret(TOKEN_SECRET)
        .filter(|t| t.len() >= MIN_TOKEN_BYTES)
    else {
        return Err(LocalReply::new(
            ErrorCode::RouteNotFound,
            "admin API off: EDGEGATE_ADMIN_TOKEN is not set (or shorter than 16 bytes)",
        ));
    };
    let client_ip = req
        .client_ip
        .as_deref()
        .and_then(|ip| ip.trim().parse().ok());
    let rreq = RateRequest {
        api: "admin",
        route: "admin",
        subscription: None,
        rate_plan: None,
        application: None,
        client_ip,
        priority: false,
        request_id,
    };
    let limits = std::slice::from_ref(gw.admin_settings().rate_limit());
    let rate = gw.limiter().check(p, limits, &rreq).await?;
    extra.extend(
        response_headers(&rate)
            .into_iter()
            .map(|(n, v)| (n.to_string(), v)),
    );
    match check_bearer(req.headers.get("authorization"), &token) {
        TokenCheck::Ok => {}
        TokenCheck::Missing => {
            return Err(
                LocalReply::new(ErrorCode::AdminUnauthorized, "no bearer token")
                    .with_header("www-authenticate", "Bearer realm=\"edgegate-admin\""),
            )
        }
        TokenCheck::Wrong => {
            return Err(
                LocalReply::new(ErrorCode::AdminUnauthorized, "wrong bearer token").with_header(
                    "www-authenticate",
                    "Bearer realm=\"edgegate-admin\", error=\"invalid_token\"",
                ),
            )
        }
    }
    let AdminMatch::Endpoint(path) = target else {
        return Err(LocalReply::new(
            ErrorCode::RouteNotFound,
            "outside the admin prefix",
        ));
    };
    let (endpoint, params) = router::find(&req.method, &path).map_err(|miss| match miss {
        router::Miss::NotFound => LocalReply::new(ErrorCode::RouteNotFound, "no admin endpoint"),
        router::Miss::Method(allowed) => {
            let allow = allowed.join(", ");
            LocalReply::new(ErrorCode::MethodNotAllowed, "")
                .with_public_detail(format!("allowed methods: {allow}"))
                .with_header("allow", allow)
        }
    })?;
    *endpoint_name = endpoint.name();
    let body = match body.await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err(LocalReply::new(
                ErrorCode::AdminBodyTooLarge,
                format!("body over {MAX_BODY_BYTES} bytes"),
            )
            .with_public_detail(format!("at most {MAX_BODY_BYTES} bytes")))
        }
        Err(BodyError::Unreadable(e)) => {
            return Err(LocalReply::new(ErrorCode::InvalidRequestBody, e))
        }
    };
    let call = handlers::Call {
        gw,
        p,
        req,
        params,
        body: &body,
    };
    handlers::dispatch(endpoint, &call).await
}
