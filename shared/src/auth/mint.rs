//! Minting short-lived tokens for backends (service-to-service authentication): the gateway
//! signs who called, for whom, and when, so backends need not trust plain identity headers.

use super::token::TokenError;
use super::Principal;
use crate::platform::{Clock, Crypto, Secrets};
use crate::problem::ErrorCode;
use base64ct::{Base64UrlUnpadded, Encoding};
use hmac::{Hmac, Mac};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// How minted tokens are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MintAlgorithm {
    /// Ed25519 (the secret is a base64url 32-byte seed).
    EdDsa,
    /// HMAC SHA-256 (the secret's bytes, at least 32).
    Hs256,
}

/// A compiled `mint_token` policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintToken {
    /// Signature algorithm.
    pub algorithm: MintAlgorithm,
    /// Secret holding the key.
    pub key_secret: String,
    /// `kid` header.
    pub key_id: Option<String>,
    /// `iss`.
    pub issuer: String,
    /// `aud`.
    pub audience: String,
    /// Lifetime, seconds.
    pub ttl_s: u64,
    /// Request header to carry it (lower-case).
    pub header: String,
}

/// Signs a token for one request: `iss`, `aud`, `iat`, `exp`, `jti` (the request id) and, when
/// the caller authenticated, `sub`, `azp`, `scope`, `auth_method`. Runs after authentication,
/// once per proxied request.
///
/// Errors: `internal_error` when the key secret is missing or unusable (a deployment fault,
/// logged; the request is not sent unauthenticated).
pub async fn mint<P: Crypto + Secrets + Clock>(
    p: &P,
    m: &MintToken,
    principal: Option<&Principal>,
    request_id: &str,
) -> Result<String, TokenError> {
    let internal = |why: String| TokenError::new(ErrorCode::InternalError, why);
    let secret = p
        .secret(&m.key_secret)
        .ok_or_else(|| internal(format!("secret {} is not set", m.key_secret)))?;
    let now = (p.now_ms() / 1000) as i64;
    let mut claims = Map::new();
    claims.insert("iss".into(), m.issuer.clone().into());
    claims.insert("aud".into(), m.audience.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + m.ttl_s as i64).into());
    claims.insert("jti".into(), request_id.into());
    if let Some(pr) = principal {
        claims.insert("auth_method".into(), pr.method.into());
        if let Some(s) = pr.subject() {
            claims.insert("sub".into(), s.into());
        }
        if let Some(a) = pr.application() {
            claims.insert("azp".into(), a.into());
        }
        if !pr.scopes().is_empty() {
            claims.insert("scope".into(), pr.scopes().join(" ").into());
        }
    }
    let alg = match m.algorithm {
        MintAlgorithm::EdDsa => "EdDSA",
        MintAlgorithm::Hs256 => "HS256",
    };
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = &m.key_id {
        header["kid"] = kid.clone().into();
    }
    let input = format!(
        "{}.{}",
        Base64UrlUnpadded::encode_string(header.to_string().as_bytes()),
        Base64UrlUnpadded::encode_string(Value::Object(claims).to_string().as_bytes())
    );
    let signature = match m.algorithm {
        MintAlgorithm::Hs256 => {
            if secret.len() < 32 {
                return Err(internal(
                    "HS256 minting secret shorter than 32 bytes".into(),
                ));
            }
            let mut mac =
                <Hmac<Sha256> as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes())
                    .map_err(|_| internal("bad HMAC key".into()))?;
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        MintAlgorithm::EdDsa => {
            let seed: [u8; 32] = Base64UrlUnpadded::decode_vec(secret.trim())
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| {
                    internal("EdDSA minting secret is not a base64url 32-byte seed".into())
                })?;
            let key_id = crate::trace::hex(&Sha256::digest(seed)[..16]);
            p.sign_ed25519(&key_id, &seed, input.as_bytes())
                .await
                .map_err(|e| internal(format!("sign: {e}")))?
        }
    };
    Ok(format!(
        "{input}.{}",
        Base64UrlUnpadded::encode_string(&signature)
    ))
}
