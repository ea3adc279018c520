//! API keys: read from a header or query parameter, looked up by their SHA-256 among the
//! Registry's credential records (keys are never stored or logged in clear).
//!
//! Records live in the key-value store under [`credential_key`] — the Registry sync writes
//! them — and are cached in the isolate: found records for [`FOUND_TTL_MS`], unknown keys for
//! [`UNKNOWN_TTL_MS`] (so a revocation takes effect within a minute, and guessing keys does not
//! cost a store read per request).

use super::token::{TokenClaims, TokenError};
use super::Principal;
use crate::bounded::BoundedMap;
use crate::headers::HeaderList;
use crate::platform::{Clock, Kv};
use crate::problem::ErrorCode;
use crate::route::QueryView;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::rc::Rc;

/// How long a found record is reused.
pub const FOUND_TTL_MS: u64 = 60_000;
/// How long "no such key" is reused.
pub const UNKNOWN_TTL_MS: u64 = 10_000;
/// Longer presented keys are not looked up.
const MAX_KEY_LEN: usize = 512;

/// The store key of the record for an API key: `credential:apikey:<hex SHA-256 of the key>`.
pub fn credential_key(api_key: &str) -> String {
    format!(
        "credential:apikey:{}",
        crate::trace::hex(&Sha256::digest(api_key.as_bytes()))
    )
}

/// Whether a credential may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialStatus {
    /// In use.
    Active,
    /// Withdrawn for good.
    Revoked,
    /// Withdrawn for now.
    Suspended,
}

/// A credential record as the Registry delivers it. Unknown members are ignored (newer
/// Registries may add some).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialRecord {
    /// The consumer the key belongs to.
    pub consumer_id: String,
    /// The application the key was issued to.
    #[serde(default)]
    pub application_id: Option<String>,
    /// Whether it may be used.
    pub status: CredentialStatus,
    /// Unix seconds after which it is expired.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Scopes granted with it.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The environment it is for (`production`, `sandbox`, ...), for environment isolation.
    #[serde(default)]
    pub environment: Option<String>,
}

impl CredentialRecord {
    /// The record of a snapshot credential (allocates; runs per API-key request when a
    /// snapshot is loaded).
    pub fn from_snapshot(c: &crate::snapshot::CredentialView<'_>) -> CredentialRecord {
        CredentialRecord {
            consumer_id: c.consumer_id().to_string(),
            application_id: c.application_id().map(str::to_string),
            status: c.status(),
            expires_at: c.expires_at(),
            scopes: c.scopes().map(str::to_string).collect(),
            environment: c.environment().map(str::to_string),
        }
    }
}

type Cached = (Option<Rc<CredentialRecord>>, u64);

/// The isolate's cache of credential lookups, by SHA-256 of the key.
pub struct CredentialCache {
    entries: BoundedMap<[u8; 32], Cached>,
}

impl CredentialCache {
    /// A cache of at most `capacity` lookups.
    pub fn new(capacity: usize) -> Self {
        CredentialCache {
            entries: BoundedMap::new(capacity),
        }
    }
}

/// The API key a request presents: the header first, then (if configured) the query.
///
/// Errors: several fields of the header (ambiguous).
pub fn presented_key<'a>(
    headers: &'a HeaderList,
    query: &QueryView<'a>,
    header: &'a str,
    query_param: Option<&str>,
) -> Result<Option<std::borrow::Cow<'a, str>>, TokenError> {
    let mut values = headers.get_all(header);
    if let Some(v) = values.next() {
        if values.next().is_some() {
            return Err(TokenError::new(
                ErrorCode::MalformedToken,
                "several API key headers",
            ));
        }
        return Ok(Some(std::borrow::Cow::Borrowed(v.trim())));
    }
    Ok(query_param.and_then(|q| query.get(q)))
}

/// Checks an API key against its credential record: the Registry snapshot's when one is
/// loaded and has the key (always current, no store read), else the per-key store record
/// (keys issued since the snapshot was built).
///
/// Errors: `unknown_api_key` (no record, or an implausible key), `key_revoked` (revoked or
/// suspended), `key_expired`, `credentials_unavailable` (the store cannot be read and nothing
/// is cached). Log details name the key only by a hash prefix.
pub async fn verify_api_key<P: Kv + Clock>(
    p: &P,
    cache: &CredentialCache,
    snapshot: Option<&crate::snapshot::Snapshot>,
    key: &str,
) -> Result<Principal, TokenError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.chars().any(|c| c.is_control()) {
        return Err(TokenError::new(ErrorCode::UnknownApiKey, "implausible key"));
    }
    let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    let tag = crate::trace::hex(&hash[..4]);
    let now = p.now_ms();
    let in_snapshot = snapshot
        .and_then(|s| s.credential_by_digest(crate::snapshot::CredentialKind::ApiKey, &hash))
        .map(|c| Rc::new(CredentialRecord::from_snapshot(&c)));
    let cached = || cache.entries.get(&hash).filter(|(_, until)| now < *until);
    let record = match (in_snapshot, cached()) {
        (Some(record), _) => Some(record),
        (None, Some((record, _))) => record,
        (None, None) => {
            let store_key = format!("credential:apikey:{}", crate::trace::hex(&hash));
            let text = p.get_text(&store_key).await.map_err(|e| {
                TokenError::new(
                    ErrorCode::CredentialsUnavailable,
                    format!("key {tag}…: {e}"),
                )
            })?;
            let record = match text {
                None => None,
                Some(t) => Some(Rc::new(
                    serde_json::from_str::<CredentialRecord>(&t).map_err(|e| {
                        TokenError::new(
                            ErrorCode::CredentialsUnavailable,
                            format!("record for key {tag}… is not valid: {e}"),
                        )
                    })?,
                )),
            };
            let ttl = if record.is_some() {
                FOUND_TTL_MS
            } else {
                UNKNOWN_TTL_MS
            };
            cache
                .entries
                .insert(hash, (record.clone(), now.saturating_add(ttl)));
            record
        }
    };
    let record =
        record.ok_or_else(|| TokenError::new(ErrorCode::UnknownApiKey, format!("key {tag}…")))?;
    match record.status {
        CredentialStatus::Active => {}
        CredentialStatus::Revoked | CredentialStatus::Suspended => {
            return Err(TokenError::new(
                ErrorCode::KeyRevoked,
                format!("key {tag}…: {:?}", record.status),
            ))
        }
    }
    if record
        .expires_at
        .is_some_and(|exp| (now / 1000) as i64 >= exp)
    {
        return Err(TokenError::new(
            ErrorCode::KeyExpired,
            format!("key {tag}…"),
        ));
    }
    let mut all = serde_json::Map::new();
    all.insert("consumer_id".into(), record.consumer_id.clone().into());
    if let Some(a) = &record.application_id {
        all.insert("application_id".into(), a.clone().into());
    }
    let claims = TokenClaims {
        issuer: None,
        subject: Some(record.consumer_id.clone()),
        audiences: Vec::new(),
        expires: record.expires_at,
        not_before: None,
        issued_at: None,
        application: record.application_id.clone(),
        scopes: record.scopes.clone(),
        all,
    };
    Ok(Principal {
        method: "api_key",
        claims: Some(Rc::new(claims)),
        environment: record.environment.clone(),
    })
}
