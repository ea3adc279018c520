//! One table from gateway errors to HTTP answers (RFC 9457 `application/problem+json`).
//!
//! Everything the gateway answers itself goes through [`LocalReply::render`]. The client sees a
//! stable `code`, a fixed title, the request id and, only where it is safe, a public detail;
//! the internal detail (upstream addresses, parse errors) goes to the log only.

use serde::Serialize;

/// The stable error codes of replies the gateway makes itself.
///
/// The string of each code (`as_str`) is part of the public API: clients and dashboards key on
/// it, so a code is never renamed, only added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No route matches the request's path (and host, headers, query).
    RouteNotFound,
    /// A route matches the path but not the method; the reply carries `Allow`.
    MethodNotAllowed,
    /// The request target is not an absolute path, or contains dot segments.
    InvalidPath,
    /// The request body could not be read (client aborted, or it was larger than it said).
    InvalidRequestBody,
    /// No valid config has been loaded yet in this isolate.
    NoConfig,
    /// Every instance tried failed to connect, or the connection broke before a response.
    UpstreamUnreachable,
    /// The backend did not send response headers within the route's timeout.
    UpstreamTimeout,
    /// A bug or an unexpected platform failure; details are in the log.
    InternalError,
    /// The route needs a credential and the request has none.
    MissingCredentials,
    /// The token is not a well-formed JWS (structure, base64url, JSON, claim types).
    MalformedToken,
    /// The token is larger than the route's `max_token_bytes`.
    TokenTooLarge,
    /// The token's `alg` is not in the route's allow-list (or is `none`), or does not fit the key.
    AlgorithmNotAllowed,
    /// The token has a `crit` header parameter the gateway does not implement.
    UnsupportedCriticalHeader,
    /// No key of the issuer matches the token's `kid` (after one refetch).
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` has passed (beyond the leeway), or is missing.
    TokenExpired,
    /// `nbf` (or `iat`) is in the future (beyond the leeway).
    TokenNotYetValid,
    /// The token's `iss` is not one of the route's providers.
    WrongIssuer,
    /// The token's `aud` contains none of the route's audiences.
    WrongAudience,
    /// A claim the route requires is missing.
    MissingClaim,
    /// The introspection endpoint says the token is not active (revoked, expired, unknown).
    TokenInactive,
    /// The client certificate was not verified by the edge, or is revoked.
    CertificateInvalid,
    /// The client certificate is valid but not one the route accepts.
    UnknownCertificate,
    /// No credential record has this API key.
    UnknownApiKey,
    /// The API key's record is revoked (or suspended).
    KeyRevoked,
    /// The API key's record has expired.
    KeyExpired,
    /// The credential records could not be read (and none is cached).
    CredentialsUnavailable,
    /// The identity provider could not be reached and no usable cached keys are left.
    IdpUnavailable,
    /// The caller's application has no subscription to this API, version and environment.
    NoSubscription,
    /// The caller's subscription is suspended.
    SubscriptionSuspended,
    /// The caller's subscription has expired (or its validity window has not begun).
    SubscriptionExpired,
    /// The consumer owning the caller's application is suspended.
    ConsumerSuspended,
    /// The credential belongs to another environment (production vs sandbox).
    WrongEnvironment,
    /// The caller lacks a scope the route requires.
    InsufficientScope,
    /// The caller has none of the roles the route requires for this method.
    RoleDenied,
    /// The client address is not allowed (API or subscription IP lists).
    IpDenied,
    /// No Registry snapshot is loaded, so subscriptions cannot be checked.
    SnapshotUnavailable,
    /// The API's Cedar policies do not permit the call.
    PolicyDenied,
    /// A rate limit or quota is exhausted; `Retry-After` says when to come back.
    RateLimited,
    /// A fail-closed rate limit's counter cannot be reached.
    RateLimitUnavailable,
    /// Too many failed authentications from this client address.
    TooManyAuthFailures,
    /// The client address is on the emergency block list (admin API).
    IpBlocked,
    /// The route was taken out of service by an operator (admin API).
    RouteDisabled,
    /// An admin API call without a valid bearer token; the reply carries `WWW-Authenticate`.
    AdminUnauthorized,
    /// An admin API call whose body, query or path parameters are not valid; nothing changed.
    InvalidAdminRequest,
    /// An admin API call names something that does not exist (a route, a block, a limit).
    AdminNotFound,
    /// An admin API call's body is larger than the admin API accepts.
    AdminBodyTooLarge,
    /// The emergency-override store cannot be reached; nothing changed.
    ControlUnavailable,
}

impl ErrorCode {
    /// The stable code string sent as the problem's `code` member.
    pub fn as_str(self) -> &'static str {
        self.entry().0
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> u16 {
        self.entry().1
    }

    /// The human title of the problem type (constant per code, as RFC 9457 asks).
    pub fn title(self) -> &'static str {
        self.entry().2
    }

    fn entry(self) -> (&'static str, u16, &'static str) {
        match self {
            ErrorCode::RouteNotFound => ("route_not_found", 404, "No route matches this request"),
            ErrorCode::MethodNotAllowed => (
                "method_not_allowed",
                405,
                "The route does not accept this method",
            ),
            ErrorCode::InvalidPath => ("invalid_path", 400, "The request path is not valid"),
            ErrorCode::InvalidRequestBody => (
                "invalid_request_body",
                400,
                "The request body could not be read",
            ),
            ErrorCode::NoConfig => (
                "no_config",
                503,
                "The gateway has no valid configuration yet",
            ),
            ErrorCode::UpstreamUnreachable => (
                "upstream_unreachable",
                502,
                "The backend could not be reached",
            ),
            ErrorCode::UpstreamTimeout => (
                "upstream_timeout",
                504,
                "The backend did not answer in time",
            ),
            ErrorCode::InternalError => ("internal_error", 500, "Internal gateway error"),
            ErrorCode::MissingCredentials => {
                ("missing_credentials", 401, "Credentials are required")
            }
            ErrorCode::MalformedToken => ("malformed_token", 401, "The token is malformed"),
            ErrorCode::TokenTooLarge => ("token_too_large", 401, "The token is too large"),
            ErrorCode::AlgorithmNotAllowed => (
                "algorithm_not_allowed",
                401,
                "The token's signature algorithm is not accepted",
            ),
            ErrorCode::UnsupportedCriticalHeader => (
                "unsupported_critical_header",
                401,
                "The token has a critical header the gateway does not support",
            ),
            ErrorCode::UnknownKey => ("unknown_key", 401, "The token's signing key is unknown"),
            ErrorCode::BadSignature => ("bad_signature", 401, "The token's signature is invalid"),
            ErrorCode::TokenExpired => ("token_expired", 401, "The token has expired"),
            ErrorCode::TokenNotYetValid => {
                ("token_not_yet_valid", 401, "The token is not valid yet")
            }
            ErrorCode::WrongIssuer => ("wrong_issuer", 401, "The token's issuer is not accepted"),
            ErrorCode::WrongAudience => {
                ("wrong_audience", 401, "The token is not meant for this API")
            }
            ErrorCode::MissingClaim => ("missing_claim", 401, "The token lacks a required claim"),
            ErrorCode::TokenInactive => ("token_inactive", 401, "The token is not active"),
            ErrorCode::CertificateInvalid => (
                "certificate_invalid",
                401,
                "The client certificate is not valid",
            ),
            ErrorCode::UnknownCertificate => (
                "unknown_certificate",
                401,
                "The client certificate is not accepted here",
            ),
            ErrorCode::UnknownApiKey => ("unknown_api_key", 401, "The API key is not known"),
            ErrorCode::KeyRevoked => ("key_revoked", 401, "The API key has been revoked"),
            ErrorCode::KeyExpired => ("key_expired", 401, "The API key has expired"),
            ErrorCode::CredentialsUnavailable => (
                "credentials_unavailable",
                503,
                "Credentials cannot be checked right now",
            ),
            ErrorCode::IdpUnavailable => (
                "idp_unavailable",
                503,
                "The identity provider cannot be reached",
            ),
            ErrorCode::NoSubscription => (
                "no_subscription",
                403,
                "The application is not subscribed to this API",
            ),
            ErrorCode::SubscriptionSuspended => (
                "subscription_suspended",
                403,
                "The subscription is suspended",
            ),
            ErrorCode::SubscriptionExpired => (
                "subscription_expired",
                403,
                "The subscription is not valid now",
            ),
            ErrorCode::ConsumerSuspended => {
                ("consumer_suspended", 403, "The consumer is suspended")
            }
            ErrorCode::WrongEnvironment => (
                "wrong_environment",
                403,
                "The credential belongs to another environment",
            ),
            ErrorCode::InsufficientScope => (
                "insufficient_scope",
                403,
                "The credential lacks a required scope",
            ),
            ErrorCode::RoleDenied => ("role_denied", 403, "The caller's roles do not allow this"),
            ErrorCode::IpDenied => ("ip_denied", 403, "Calls from this address are not allowed"),
            ErrorCode::SnapshotUnavailable => (
                "snapshot_unavailable",
                503,
                "Subscriptions cannot be checked right now",
            ),
            ErrorCode::PolicyDenied => ("policy_denied", 403, "The access policy denies this call"),
            ErrorCode::RateLimited => ("rate_limited", 429, "Too many requests"),
            ErrorCode::RateLimitUnavailable => (
                "rate_limit_unavailable",
                503,
                "Rate limits cannot be checked right now",
            ),
            ErrorCode::TooManyAuthFailures => (
                "too_many_auth_failures",
                429,
                "Too many failed authentications from this address",
            ),
            ErrorCode::IpBlocked => ("ip_blocked", 403, "Calls from this address are blocked"),
            ErrorCode::RouteDisabled => (
                "route_disabled",
                503,
                "This endpoint is temporarily disabled",
            ),
            ErrorCode::AdminUnauthorized => {
                ("admin_unauthorized", 401, "A valid admin token is required")
            }
            ErrorCode::InvalidAdminRequest => (
                "invalid_admin_request",
                400,
                "The admin request is not valid",
            ),
            ErrorCode::AdminNotFound => ("admin_not_found", 404, "No such item"),
            ErrorCode::AdminBodyTooLarge => {
                ("admin_body_too_large", 413, "The request body is too large")
            }
            ErrorCode::ControlUnavailable => (
                "control_unavailable",
                503,
                "The emergency-override store cannot be reached",
            ),
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 48] = [
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::InvalidPath,
        ErrorCode::InvalidRequestBody,
        ErrorCode::NoConfig,
        ErrorCode::UpstreamUnreachable,
        ErrorCode::UpstreamTimeout,
        ErrorCode::InternalError,
        ErrorCode::MissingCredentials,
        ErrorCode::MalformedToken,
        ErrorCode::TokenTooLarge,
        ErrorCode::AlgorithmNotAllowed,
        ErrorCode::UnsupportedCriticalHeader,
        ErrorCode::UnknownKey,
        ErrorCode::BadSignature,
        ErrorCode::TokenExpired,
        ErrorCode::TokenNotYetValid,
        ErrorCode::WrongIssuer,
        ErrorCode::WrongAudience,
        ErrorCode::MissingClaim,
        ErrorCode::TokenInactive,
        ErrorCode::CertificateInvalid,
        ErrorCode::UnknownCertificate,
        ErrorCode::UnknownApiKey,
        ErrorCode::KeyRevoked,
        ErrorCode::KeyExpired,
        ErrorCode::CredentialsUnavailable,
        ErrorCode::IdpUnavailable,
        ErrorCode::NoSubscription,
        ErrorCode::SubscriptionSuspended,
        ErrorCode::SubscriptionExpired,
        ErrorCode::ConsumerSuspended,
        ErrorCode::WrongEnvironment,
        ErrorCode::InsufficientScope,
        ErrorCode::RoleDenied,
        ErrorCode::IpDenied,
        ErrorCode::SnapshotUnavailable,
        ErrorCode::PolicyDenied,
        ErrorCode::RateLimited,
        ErrorCode::RateLimitUnavailable,
        ErrorCode::TooManyAuthFailures,
        ErrorCode::IpBlocked,
        ErrorCode::RouteDisabled,
        ErrorCode::AdminUnauthorized,
        ErrorCode::InvalidAdminRequest,
        ErrorCode::AdminNotFound,
        ErrorCode::AdminBodyTooLarge,
        ErrorCode::ControlUnavailable,
    ];
}

/// An answer the gateway makes itself instead of proxying (Envoy's `sendLocalReply`).
///
/// Built by any stage that ends a request; rendered once by the driver, which adds the request
/// id. `log_detail` is for operators and never reaches the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    /// What went wrong, as a stable code.
    pub code: ErrorCode,
    /// A detail that is safe to show the client (for example the allowed methods).
    pub public_detail: Option<String>,
    /// Internal detail for the access log only (addresses, parse errors).
    pub log_detail: String,
    /// Extra response headers (for example `Allow` on 405).
    pub headers: Vec<(String, String)>,
}

impl LocalReply {
    /// A reply with no public detail and no extra headers.
    pub fn new(code: ErrorCode, log_detail: impl Into<String>) -> Self {
        LocalReply {
            code,
            public_detail: None,
            log_detail: log_detail.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a detail that the client may see.
    pub fn with_public_detail(mut self, detail: impl Into<String>) -> Self {
        self.public_detail = Some(detail.into());
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The problem+json body for this reply, naming the request id.
    ///
    /// Never fails: every member is a plain string or number.
    pub fn render(&self, request_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Problem<'a> {
            #[serde(rename = "type")]
            kind: String,
            title: &'static str,
            status: u16,
            code: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
            request_id: &'a str,
        }
        let problem = Problem {
            kind: format!("urn:edgegate:problem:{}", self.code.as_str()),
            title: self.code.title(),
            status: self.code.status(),
            code: self.code.as_str(),
            detail: self.public_detail.as_deref(),
            request_id,
        };
        serde_json::to_vec(&problem).unwrap_or_default()
    }
}

/// The media type of every reply the gateway makes itself.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert!(
                code.status() >= 400,
                "{} is not an error status",
                code.as_str()
            );
        }
    }

    #[test]
    fn render_hides_log_detail() {
        let reply = LocalReply::new(
            ErrorCode::UpstreamUnreachable,
            "connect 10.0.0.7:8080 refused",
        );
        let body: serde_json::Value = serde_json::from_slice(&reply.render("req-1")).unwrap();
        assert_eq!(body["status"], 502);
        assert_eq!(body["code"], "upstream_unreachable");
        assert_eq!(body["request_id"], "req-1");
        assert_eq!(body["type"], "urn:edgegate:problem:upstream_unreachable");
        assert!(body.get("detail").is_none());
        assert!(!String::from_utf8(reply.render("x"))
            .unwrap()
            .contains("10.0.0.7"));
    }

    #[test]
    fn public_detail_is_shown() {
        let reply = LocalReply::new(ErrorCode::MethodNotAllowed, "")
            .with_public_detail("allowed: GET, HEAD")
            .with_header("allow", "GET, HEAD");
        let body: serde_json::Value = serde_json::from_slice(&reply.render("r")).unwrap();
        assert_eq!(body["detail"], "allowed: GET, HEAD");
        assert_eq!(
            reply.headers,
            vec![("allow".to_string(), "GET, HEAD".to_string())]
        );
    }
}
