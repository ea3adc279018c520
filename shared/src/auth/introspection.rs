//! OAuth 2.0 token introspection (RFC 7662) for opaque bearer tokens, with a bounded cache of
//! results (active and inactive) by the SHA-256 of the token, and, where instances are not
//! reused (Spin), a second tier in the platform's shared cache ([`SharedIntrospection`]).

use super::cache::hex_key;
use super::policy::IntrospectionEndpoint;
use super::token::{claims_from_map, TokenClaims, TokenError};
use crate::bounded::BoundedMap;
use crate::platform::{Http, HttpRequest, Secrets, SharedCache};
use crate::problem::ErrorCode;
use base64ct::{Base64, Encoding};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
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
    result_from_doc(doc)
}

/// The result an introspection response document stands for (also a shared-cache record,
/// which is the response document itself).
///
/// Errors: `idp_unavailable` without a boolean `active`; `malformed_token` for an active
/// response whose members have the wrong types.
fn result_from_doc(doc: Map<String, Value>) -> Result<Option<TokenClaims>, TokenError> {
    match doc.get("active") {
        Some(Value::Bool(false)) => Ok(None),
        Some(Value::Bool(true)) => {
            let int = |name: &str| doc.get(name).and_then(Value::as_i64);
            let (exp, nbf, iat) = (int("exp"), int("nbf"), int("iat"));
            claims_from_map(doc, exp, nbf, iat).map(Some)
        }
        _ => Err(TokenError::new(
            ErrorCode::IdpUnavailable,
            "introspection response has no boolean `active`",
        )),
    }
}

/// An introspection result in the platform's shared cache, for hosts that run every request
/// in a fresh instance (Spin): under `introspection:v1:` and the hex SHA-256 of the endpoint
/// URL and the token (a result holds only for the endpoint that gave it), the response
/// document (`{"active":false}` for an inactive token), until the same time the in-memory
/// cache keeps it.
pub struct SharedIntrospection {
    key: String,
}

impl SharedIntrospection {
    /// The record's key for `token` at `endpoint`. Never fails.
    pub fn new(endpoint: &IntrospectionEndpoint, token: &str) -> SharedIntrospection {
        let mut h = Sha256::new();
        h.update(endpoint.url.as_bytes());
        h.update([0u8]);
        h.update(token.as_bytes());
        SharedIntrospection {
            key: hex_key("introspection:v1:", &h.finalize()),
        }
    }

    /// The cached result: `Some(Some(claims))` active, `Some(None)` inactive, `None` when
    /// there is none, it cannot be read, or it does not parse (the caller introspects).
    pub async fn read<P: SharedCache>(&self, p: &P) -> Option<Option<TokenClaims>> {
        let bytes = p.shared_get(&self.key).await.ok()??;
        let doc: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
        result_from_doc(doc).ok()
    }

    /// Stores `result` until `until_ms` (whole seconds from `now_ms`, so never longer); nothing
    /// when less than a second is left. A write error is ignored.
    pub async fn write<P: SharedCache>(
        &self,
        p: &P,
        result: Option<&TokenClaims>,
        now_ms: u64,
        until_ms: u64,
    ) {
        let ttl_s = until_ms.saturating_sub(now_ms) / 1000;
        if ttl_s == 0 {
            return;
        }
        let doc = match result {
            Some(claims) => Value::Object(claims.all.clone()),
            None => serde_json::json!({ "active": false }),
        };
        let _ = p
            .shared_put(&self.key, doc.to_string().as_bytes(), ttl_s)
            .await;
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
