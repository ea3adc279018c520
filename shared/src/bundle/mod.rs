//! Registry bundles: one file that carries a config version and its subscription snapshot,
//! signed by the Registry (Ed25519), as the Registry sync fetches it and the operator CLI
//! builds, signs and pushes it.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! "EGB1"                        magic
//! u32 H                         header length
//! H bytes                       header JSON ([`BundleHeader`])
//! config_len bytes              the config document (JSON); when the bundle has a snapshot,
//!                               its top-level "snapshot" field is the snapshot's ShardManifest
//! shard bytes                   the snapshot shards, in order (lengths in the header)
//! trailer (optional)            "EGS1", u8 n, n × (u8 key id length, key id, 64-byte signature)
//! ```
//!
//! The signed part is every byte before the trailer; its SHA-256 names the version
//! ([`version_id`]). Because the config embeds the snapshot's SHA-256, one signature covers
//! both, and one pointer write activates both.

mod format;
mod keys;
mod verify;

pub use format::{
    decode, version_id, with_signature, Bundle, BundleHeader, BundleSignature, DecodedBundle,
    MAX_HEADER_LEN, MAX_SHARDS,
};
pub use keys::{key_id, PublicKeyEntry};
pub use verify::{verify, Verified};

use std::fmt;

/// Why a bundle was refused. Each kind has a stable code ([`BundleError::code`]) for logs,
/// the sync status and the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// Not a well-formed bundle (magic, lengths, header, trailer, UTF-8).
    Malformed(String),
    /// No signature, and unsigned bundles are not allowed.
    Unsigned,
    /// Signed only by keys that are not configured.
    UnknownKey(Vec<String>),
    /// A signature by a configured key does not verify (the bundle was altered, or signed
    /// with another key under that id).
    BadSignature(String),
    /// A configured public key could not be used (bad text, or the host refused it).
    BadKey(String),
}

impl BundleError {
    /// The stable code: `bundle_malformed`, `bundle_unsigned`, `bundle_unknown_key`,
    /// `bundle_bad_signature`, `bundle_bad_key`.
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::Malformed(_) => "bundle_malformed",
            BundleError::Unsigned => "bundle_unsigned",
            BundleError::UnknownKey(_) => "bundle_unknown_key",
            BundleError::BadSignature(_) => "bundle_bad_signature",
            BundleError::BadKey(_) => "bundle_bad_key",
        }
    }
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Malformed(m) => write!(f, "malformed bundle: {m}"),
            BundleError::Unsigned => write!(f, "the bundle is not signed"),
            BundleError::UnknownKey(ids) => {
                write!(f, "signed only by unknown keys: {}", ids.join(", "))
            }
            BundleError::BadSignature(id) => {
                write!(f, "the signature by key {id} does not verify")
            }
            BundleError::BadKey(m) => write!(f, "unusable public key: {m}"),
        }
    }
}

impl std::error::Error for BundleError {}
