//! OAuth 2.0 token introspection (RFC 7662) for opaque bearer tokens, with a bounded cache of
//! results (active and inactive) by the SHA-256 of the token.

use super::policy::IntrospectionEndpoint;
use super::token::{claims_from_map, TokenClaims, TokenError};
use crate::bounded::BoundedMap;
use crate::platform::{Http, HttpRequest, Secrets};
use crate::problem::ErrorCode;
use base64ct::{Base64, Encoding};
use serde_json::{Map, Value};
use std::rc::Rc;

const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A cached result: the claims of an active token, or `None` for an inactive one.
type Entry = (Option<Rc<TokenClaims>>, u64);

/// Introspection results by token hash, each until min(TTL, the token's `exp`).
pub struct IntrospectionCache {
    entries: BoundedMap<[u8; 32], Entry>,
}

impl IntrospectionCache {
    /// A cache of at most `capacity` results.
    pub fn new(capacity: usize) -> Self {
        IntrospectionCache {
            entries: BoundedMap::new(capacity),
        }
    }

    /// The cached result for `hash`: `Some(Some(claims))` active, `Some(None)` inactive.
    pub fn get(&self, hash: &[u8; 32], now_ms: u64) -> Option<Option<Rc<TokenClaims>>> {
        let (claims, until) = self.entries.get(hash)?;
        if now_ms >= until {
            self.entries.remove(hash);
            return None;
        }
        Some(claims)
    }

    /// Caches a result until `until_ms`, evicting the oldest when full.
    pub fn insert(&self, hash: [u8; 32], claims: Option<Rc<TokenClaims>>, until_ms: u64) {
        self.entries.insert(hash, (claims, until_ms));
    }
}

/// Asks the endpoint about `token`. Returns the response's claims when `active`, `None`
/// when inactive.
///
/// Errors: `idp_unavailable` for any failure to get a valid answer (network, timeout,
/// non-200, not JSON, no boolean `active`): an outage is not the caller's fault, so never 401;
/// `internal_error` when the client secret is not set; `malformed_token` for an active
/// response whose members have the wrong types.
pub async fn introspect<P: Http + Secrets>(
    p: &P,
    endpoint: &IntrospectionEndpoint,
    timeout_ms: u64,
    token: &str,
) -> Result<Option<TokenClaims>, TokenError> {
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("accept".to_string(), "application/json".to_string()),
    ];
    if let Some(client_id) = &endpoint.client_id {
        let secret = match &endpoint.client_secret {
            Some(name) => p.secret(name).ok_or_else(|| {
                TokenError::new(
                    ErrorCode::InternalError,
                    format!("secret {name} is not set"),
                )
            })?,
            None => String::new(),
        };
        // RFC 6749 §2.3.1: both parts form-encoded, then Basic.
        let credentials = format!("{}:{}", form_encode(client_id), form_encode(&secret));
        headers.push((
            "authorization".to_string(),
            format!("Basic {}", Base64::encode_string(credentials.as_bytes())),
        ));
    }
    let body = format!("token={}&token_type_hint=access_token", form_encode(token));
    let req = HttpRequest {
        method: "POST".into(),
        url: endpoint.url.clone(),
        headers,
        body: Some(body.into_bytes()),
        timeout_ms,
    };
    let unavailable = |why: String| TokenError::new(ErrorCode::IdpUnavailable, why);
    let resp = p
        .fetch_buffered(&req, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| unavailable(format!("introspection: {e}")))?;
    if resp.status != 200 {
        return Err(unavailable(format!(
            "introspection: status {}",
            resp.status
        )));
    }
    let doc: Map<String, Value> = serde_json::from_slice(&resp.body)
        .map_err(|e| unavailable(format!("introspection response: {e}")))?;
    match doc.get("active") {
        Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => {
            let int = |name: &str| doc.get(name).and_then(Value::as_i64);
            let (exp, nbf, iat) = (int("exp"), int("nbf"), int("iat"));
            claims_from_map(doc, exp, nbf, iat).map(Some)
        }
        _ => Err(unavailable(
            "introspection response has no boolean `active`".into(),
        )),
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding() {
        assert_eq!(form_encode("a b+c/d=e&f~"), "a+b%2Bc%2Fd%3De%26f%7E");
        assert_eq!(form_encode("gateway:1"), "gateway%3A1");
    }

    #[test]
    fn cache_expires_and_evicts() {
        let c = IntrospectionCache::new(2);
        c.insert([1; 32], None, 100);
        assert_eq!(c.get(&[1; 32], 50), Some(None));
        assert_eq!(c.get(&[1; 32], 100), None);
        c.insert([2; 32], None, 1000);
        c.insert([3; 32], None, 1000);
        c.insert([4; 32], None, 1000);
        assert_eq!(c.get(&[2; 32], 0), None, "oldest evicted");
        assert!(c.get(&[4; 32], 0).is_some());
    }
}
