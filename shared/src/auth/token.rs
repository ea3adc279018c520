//! JWT parsing and claim checks (no signatures here: see [`super::Authenticator`]).

use super::alg::JwsAlgorithm;
use crate::problem::ErrorCode;
use jwt_compact::UntrustedToken;
use serde_json::{Map, Value};

/// Why a token was refused, with internal detail for the log (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// The stable reason.
    pub code: ErrorCode,
    /// Detail for the log.
    pub detail: String,
}

impl TokenError {
    /// A refusal.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        TokenError {
            code,
            detail: detail.into(),
        }
    }
}

/// The claims the gateway reads, with the whole claim set for later stages.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClaims {
    /// `iss`.
    pub issuer: Option<String>,
    /// `sub`.
    pub subject: Option<String>,
    /// `aud` (a string becomes one element).
    pub audiences: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires: Option<i64>,
    /// `nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `iat`, Unix seconds.
    pub issued_at: Option<i64>,
    /// `azp` or else `client_id`: the client application.
    pub application: Option<String>,
    /// `scope` (space-separated) or `scp` (array or string).
    pub scopes: Vec<String>,
    /// Every claim.
    pub all: Map<String, Value>,
}

/// A token that parsed, before its signature is checked.
#[derive(Debug, Clone)]
pub struct ParsedToken {
    /// The header's `alg`.
    pub alg: JwsAlgorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The claims.
    pub claims: TokenClaims,
    /// The signature bytes.
    pub signature: Vec<u8>,
    /// Length of the signing input (`header.payload`) at the start of the token.
    pub signing_input_len: usize,
}

/// Parses a compact JWS. Runs before any key is looked up.
///
/// Errors: `token_too_large` over `max_bytes`; `malformed_token` for anything not a strict
/// compact JWS with a JSON claim set (base64url, three parts, duplicate header keys, claim
/// types); `algorithm_not_allowed` for `none` (any spelling) or an unknown `alg`;
/// `unsupported_critical_header` for any `crit` (none are implemented) or `b64`. The header's
/// `jku`, `jwk`, `x5u`, `x5c` are ignored: keys come only from the configured issuer.
pub fn parse_token(token: &str, max_bytes: u64) -> Result<ParsedToken, TokenError> {
    if token.len() as u64 > max_bytes {
        return Err(TokenError::new(
            ErrorCode::TokenTooLarge,
            format!("{} bytes", token.len()),
        ));
    }
    let untrusted = UntrustedToken::<Map<String, Value>>::try_from(token)
        .map_err(|e| TokenError::new(ErrorCode::MalformedToken, e.to_string()))?;
    let alg_name = untrusted.algorithm();
    let alg = JwsAlgorithm::parse(alg_name).ok_or_else(|| {
        TokenError::new(ErrorCode::AlgorithmNotAllowed, format!("alg {alg_name:?}"))
    })?;
    let extra = &untrusted.header().other_fields;
    if extra.contains_key("crit") || extra.contains_key("b64") {
        return Err(TokenError::new(
            ErrorCode::UnsupportedCriticalHeader,
            "crit or b64 header parameter",
        ));
    }
    let claims = untrusted
        .deserialize_claims_unchecked::<Map<String, Value>>()
        .map_err(|e| TokenError::new(ErrorCode::MalformedToken, format!("claims: {e}")))?;
    let claims = claims_from_map(
        claims.custom,
        claims.expiration.map(|t| t.timestamp()),
        claims.not_before.map(|t| t.timestamp()),
        claims.issued_at.map(|t| t.timestamp()),
    )?;
    let signing_input_len = token.rfind('.').unwrap_or(0);
    Ok(ParsedToken {
        alg,
        kid: untrusted.header().key_id.clone(),
        signature: untrusted.signature_bytes().to_vec(),
        claims,
        signing_input_len,
    })
}

/// The claims the gateway reads from a claim set (a JWT payload or an introspection response);
/// `exp`, `nbf`, `iat` already as Unix seconds.
///
/// Errors: `malformed_token` when `iss`, `sub`, `azp`, `client_id` are not strings, or `aud`,
/// `scope`, `scp` have the wrong types.
pub fn claims_from_map(
    all: Map<String, Value>,
    expires: Option<i64>,
    not_before: Option<i64>,
    issued_at: Option<i64>,
) -> Result<TokenClaims, TokenError> {
    // These claims are sent to backends in headers: control characters (CR, LF, NUL, ...)
    // would break the header or smuggle another one, so such a token is malformed.
    let headerable = |name: &str, s: &str| -> Result<(), TokenError> {
        if s.chars().any(|c| c.is_control() && c != '\t') {
            return Err(TokenError::new(
                ErrorCode::MalformedToken,
                format!("claim {name} has control characters"),
            ));
        }
        Ok(())
    };
    let text = |name: &str| -> Result<Option<String>, TokenError> {
        match all.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => {
                headerable(name, s)?;
                Ok(Some(s.clone()))
            }
            Some(_) => Err(TokenError::new(
                ErrorCode::MalformedToken,
                format!("claim {name} is not a string"),
            )),
        }
    };
    let strings = |name: &str, split: bool| -> Result<Vec<String>, TokenError> {
        match all.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) if split => {
                Ok(s.split_whitespace().map(str::to_string).collect())
            }
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    TokenError::new(
                        ErrorCode::MalformedToken,
                        format!("claim {name} has a non-string"),
                    )
                }),
            Some(_) => Err(TokenError::new(
                ErrorCode::MalformedToken,
                format!("claim {name} has the wrong type"),
            )),
        }
    };
    let mut scopes = strings("scope", true)?;
    if scopes.is_empty() {
        scopes = strings("scp", true)?;
    }
    Ok(TokenClaims {
        issuer: text("iss")?,
        subject: text("sub")?,
        audiences: strings("aud", false)?,
        expires,
        not_before,
        issued_at,
        application: text("azp")?.or(text("client_id")?),
        scopes,
        all,
    })
}

/// What a route requires of a token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRules {
    /// `aud` must contain one of these (empty: not checked).
    pub audiences: Vec<String>,
    /// Clock skew allowed, seconds.
    pub leeway_s: i64,
    /// Claims that must be present.
    pub required: Vec<String>,
    /// `exp` must be present (JWTs; introspection results need not carry it).
    pub require_exp: bool,
}

/// Checks time and audience claims at `now_s` (Unix seconds, from the platform clock). Runs
/// on every request, also for tokens whose signature was verified earlier.
///
/// Errors: `token_expired` (or `missing_claim` without `exp`), `token_not_yet_valid` (`nbf`, or
/// `iat` in the future), `wrong_audience`, `missing_claim`.
pub fn check_claims(
    claims: &TokenClaims,
    rules: &ClaimRules,
    now_s: i64,
) -> Result<(), TokenError> {
    let leeway = rules.leeway_s;
    match claims.expires {
        None if rules.require_exp => return Err(TokenError::new(ErrorCode::MissingClaim, "exp")),
        Some(exp) if now_s > exp.saturating_add(leeway) => {
            return Err(TokenError::new(
                ErrorCode::TokenExpired,
                format!("exp {exp}, now {now_s}"),
            ))
        }
        _ => {}
    }
    if let Some(nbf) = claims.not_before {
        if now_s.saturating_add(leeway) < nbf {
            return Err(TokenError::new(
                ErrorCode::TokenNotYetValid,
                format!("nbf {nbf}, now {now_s}"),
            ));
        }
    }
    if let Some(iat) = claims.issued_at {
        if now_s.saturating_add(leeway) < iat {
            return Err(TokenError::new(
                ErrorCode::TokenNotYetValid,
                format!("iat {iat}, now {now_s}"),
            ));
        }
    }
    if !rules.audiences.is_empty() && !claims.audiences.iter().any(|a| rules.audiences.contains(a))
    {
        return Err(TokenError::new(
            ErrorCode::WrongAudience,
            format!("aud {:?}", claims.audiences),
        ));
    }
    if let Some(missing) = rules
        .required
        .iter()
        .find(|c| !claims.all.contains_key(c.as_str()))
    {
        return Err(TokenError::new(ErrorCode::MissingClaim, missing.clone()));
    }
    Ok(())
}
