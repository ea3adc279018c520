//! Splitting an encoded snapshot across KV values (Workers KV holds at most 25 MiB per value)
//! and joining it back.
//!
//! The Registry sync writes the shards first and the [`ShardManifest`] (JSON) last, so an
//! isolate that reads the manifest finds every shard it lists. [`join`] checks the shard count,
//! the total length and the SHA-256 of the whole before anything is decoded.

use super::codec::SnapshotError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Workers KV's largest value: 25 MiB.
pub const KV_VALUE_LIMIT: usize = 25 * 1024 * 1024;

/// What a sharded snapshot consists of; stored beside the shards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShardManifest {
    /// How many shards, in order.
    pub shards: u32,
    /// Total length in bytes of the encoded snapshot.
    pub len: u64,
    /// Lowercase hex SHA-256 of the whole encoded snapshot.
    pub sha256: String,
}

impl ShardManifest {
    /// Why this manifest cannot name a snapshot, if it cannot: `sha256` must be 64 lowercase
    /// hex digits and `shards` at least 1 (an empty snapshot is one empty shard). Checked
    /// where a config embeds a manifest, so a typo is a config error, not a failed load.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let hex = self.sha256.len() == 64
            && self
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            out.push(("sha256", "must be 64 lowercase hex digits".to_string()));
        }
        if self.shards == 0 {
            out.push(("shards", "must be at least 1".to_string()));
        }
        out
    }

    /// The KV key of shard `i` under `prefix`: `<prefix>:<sha256>:<i>`. Content-addressed, so
    /// a new snapshot never overwrites the shards an isolate may still be reading.
    pub fn shard_key(&self, prefix: &str, i: u32) -> String {
        format!("{prefix}:{}:{i}", self.sha256)
    }
}

/// Why the shards of a manifest could not be read from KV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardReadError {
    /// This shard's key is not in the store (not written yet, or deleted).
    Missing(String),
    /// The store failed reading this key.
    Store(String, crate::platform::PlatformError),
}

/// Reads the shards `manifest` lists from KV, in order (`snapshot:<sha256>:<i>`). Runs when
/// an isolate loads a snapshot and when the Registry sync checks a stored version.
///
/// Errors: the first shard that is missing or cannot be read. The bytes are not checked
/// here ([`join`] does that).
pub async fn read_shards<P: crate::platform::Kv>(
    p: &P,
    manifest: &ShardManifest,
) -> Result<Vec<Vec<u8>>, ShardReadError> {
    let mut shards = Vec::with_capacity(manifest.shards.min(64) as usize);
    for i in 0..manifest.shards {
        let key = manifest.shard_key(super::SHARD_PREFIX, i);
        match p.get_bytes(&key).await {
            Ok(Some(b)) => shards.push(b),
            Ok(None) => return Err(ShardReadError::Missing(key)),
            Err(e) => return Err(ShardReadError::Store(key, e)),
        }
    }
    Ok(shards)
}

/// Splits `bytes` into shards of at most `limit` bytes (a `limit` of 0 counts as 1) and
/// describes them. Never fails; an empty input gives one empty shard.
pub fn shard(bytes: &[u8], limit: usize) -> (ShardManifest, Vec<&[u8]>) {
    let parts: Vec<&[u8]> = if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(limit.max(1)).collect()
    };
    let manifest = ShardManifest {
        shards: parts.len() as u32,
        len: bytes.len() as u64,
        sha256: crate::trace::hex(&Sha256::digest(bytes)),
    };
    (manifest, parts)
}

/// Joins shards read back from KV, in manifest order.
///
/// Errors: `ShardCount` (not as many shards as listed), `ShardLength`, `ShardDigest` (a shard
/// was altered, truncated, reordered or belongs to another snapshot). The result still has to
/// go through [`super::codec::decode`].
pub fn join<B: AsRef<[u8]>>(
    manifest: &ShardManifest,
    shards: &[B],
) -> Result<Vec<u8>, SnapshotError> {
    if shards.len() != manifest.shards as usize {
        return Err(SnapshotError::ShardCount {
            expected: manifest.shards,
            found: shards.len(),
        });
    }
    let found: u64 = shards.iter().map(|s| s.as_ref().len() as u64).sum();
    if found != manifest.len {
        return Err(SnapshotError::ShardLength {
            expected: manifest.len,
            found,
        });
    }
    let mut out = Vec::with_capacity(found as usize);
    let mut hasher = Sha256::new();
    for s in shards {
        hasher.update(s.as_ref());
        out.extend_from_slice(s.as_ref());
    }
    if crate::trace::hex(&hasher.finalize()) != manifest.sha256 {
        return Err(SnapshotError::ShardDigest);
    }
    Ok(out)
}
