//! Registry signing keys as operators configure them: `ed25519:<base64url 32-byte key>`.

use super::BundleError;
use crate::auth::PublicKey;
use base64ct::{Base64UrlUnpadded, Encoding};
use sha2::{Digest, Sha256};

/// The id of a raw Ed25519 public key: the first 16 hex characters of its SHA-256. Signatures
/// name the key they were made with by this id, so a gateway configured with two keys (during
/// a rotation) knows which one to check.
pub fn key_id(raw: &[u8; 32]) -> String {
    let mut id = crate::trace::hex(&Sha256::digest(raw));
    id.truncate(16);
    id
}

/// A configured public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyEntry {
    /// [`key_id`] of the key.
    pub key_id: String,
    /// The raw key.
    pub raw: [u8; 32],
}

impl PublicKeyEntry {
    /// Parses `ed25519:<base64url key>` (padding and surrounding spaces allowed). Runs when
    /// the sync settings are read.
    ///
    /// Errors: another prefix, bad base64url, or not 32 bytes.
    pub fn parse(text: &str) -> Result<PublicKeyEntry, BundleError> {
        let text = text.trim();
        let b64 = text
            .strip_prefix("ed25519:")
            .ok_or_else(|| BundleError::BadKey("expected `ed25519:<base64url key>`".into()))?;
        let bytes = Base64UrlUnpadded::decode_vec(b64.trim_end_matches('='))
            .map_err(|_| BundleError::BadKey("the key is not base64url".into()))?;
        let raw: [u8; 32] = bytes
            .try_into()
            .map_err(|_| BundleError::BadKey("an Ed25519 public key has 32 bytes".into()))?;
        Ok(PublicKeyEntry {
            key_id: key_id(&raw),
            raw,
        })
    }

    /// The key in its configured text form (`ed25519:<base64url>`).
    pub fn to_text(&self) -> String {
        format!("ed25519:{}", Base64UrlUnpadded::encode_string(&self.raw))
    }

    /// The key in the form the platform's `Crypto` verifies with.
    ///
    /// Errors: none in practice (the JWK is built from 32 valid bytes); reported as `BadKey`.
    pub fn to_public_key(&self) -> Result<PublicKey, BundleError> {
        let jwks = serde_json::json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": Base64UrlUnpadded::encode_string(&self.raw),
            "kid": self.key_id,
        }]})
        .to_string();
        let (mut keys, skipped) =
            crate::auth::parse_jwks(jwks.as_bytes()).map_err(BundleError::BadKey)?;
        keys.pop()
            .ok_or_else(|| BundleError::BadKey(skipped.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let good = format!("ed25519:{}", Base64UrlUnpadded::encode_string(&[7u8; 32]));
        let cases: &[(&str, bool)] = &[
            (&good, true),
            (&format!("  {good}= "), true),
            ("ed25519:", false),
            ("rsa:AAAA", false),
            ("ed25519:!!!!", false),
            (
                &format!("ed25519:{}", Base64UrlUnpadded::encode_string(&[7u8; 31])),
                false,
            ),
        ];
        for (text, ok) in cases {
            assert_eq!(PublicKeyEntry::parse(text).is_ok(), *ok, "{text}");
        }
        let k = PublicKeyEntry::parse(&good).unwrap();
        assert_eq!(k.key_id.len(), 16);
        assert_eq!(k.to_text(), good);
        assert!(k.to_public_key().is_ok());
    }
}
