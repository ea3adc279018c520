//! The isolate's cache of verified tokens: a repeated token costs a hash and the claim checks,
//! not a signature check.

use super::alg::JwsAlgorithm;
use super::token::TokenClaims;
use crate::bounded::BoundedMap;
use std::rc::Rc;

/// A token whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// Its algorithm.
    pub alg: JwsAlgorithm,
    /// Index of its identity provider in the config it was verified under.
    pub provider_store_id: String,
    /// The verifying key's `cache_id` (the entry is dropped when the key leaves the JWKS).
    pub key_id: String,
    /// Its claims.
    pub claims: Rc<TokenClaims>,
}

/// Verified tokens by SHA-256 of the token text, bounded (oldest out first). Entries are kept
/// only while the token's `exp` (plus the largest leeway) has not passed.
pub struct TokenCache {
    entries: BoundedMap<[u8; 32], Rc<VerifiedToken>>,
}

/// The largest leeway a route may configure (s): entries outlive `exp` by this much.
pub const MAX_LEEWAY_S: i64 = 300;

impl TokenCache {
    /// A cache of at most `capacity` tokens.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            entries: BoundedMap::new(capacity),
        }
    }

    /// The verified token for `hash`, if cached and not long expired.
    pub fn get(&self, hash: &[u8; 32], now_s: i64) -> Option<Rc<VerifiedToken>> {
        let hit = self.entries.get(hash)?;
        if hit
            .claims
            .expires
            .is_none_or(|exp| now_s > exp.saturating_add(MAX_LEEWAY_S))
        {
            self.entries.remove(hash);
            return None;
        }
        Some(hit)
    }

    /// Caches a verified token, evicting the oldest entry when full.
    pub fn insert(&self, hash: [u8; 32], token: VerifiedToken) {
        self.entries.insert(hash, Rc::new(token));
    }

    /// Forgets a token (its key was revoked, or it expired).
    pub fn remove(&self, hash: &[u8; 32]) {
        self.entries.remove(hash);
    }

    /// The number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
