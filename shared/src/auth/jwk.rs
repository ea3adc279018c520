//! Verification keys: parsing a JWKS (RFC 7517) into keys the platform's crypto can use.

use super::alg::{JwsAlgorithm, KeyFamily};
use jwt_compact::jwk::JsonWebKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The smallest RSA modulus accepted (bits). Runtimes accept far smaller keys; a 1024-bit key
/// is breakable, so such keys are skipped.
pub const MIN_RSA_BITS: usize = 2048;

/// The public part of a verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// RSA modulus and exponent (big-endian).
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// An EC point on P-256 or P-384 (uncompressed coordinates).
    Ec {
        /// Which curve.
        family: KeyFamily,
        /// x coordinate.
        x: Vec<u8>,
        /// y coordinate.
        y: Vec<u8>,
    },
    /// An Ed25519 public key.
    Ed25519 {
        /// The 32-byte key.
        x: Vec<u8>,
    },
    /// An HMAC secret.
    Hmac(Vec<u8>),
}

/// A key that tokens may be verified with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Stable id of the key material (hex SHA-256 of its minimal JWK): the platform caches its
    /// imported form under it.
    pub cache_id: String,
    /// The JWK `kid`.
    pub kid: Option<String>,
    /// The `alg` the JWK declares: tokens must then use exactly it.
    pub alg: Option<JwsAlgorithm>,
    /// The key.
    pub material: KeyMaterial,
    /// The minimal public JWK as JSON (what WebCrypto imports).
    pub jwk: String,
}

impl PublicKey {
    /// The family of the key.
    pub fn family(&self) -> KeyFamily {
        match &self.material {
            KeyMaterial::Rsa { .. } => KeyFamily::Rsa,
            KeyMaterial::Ec { family, .. } => *family,
            KeyMaterial::Ed25519 { .. } => KeyFamily::Ed25519,
            KeyMaterial::Hmac(_) => KeyFamily::Hmac,
        }
    }

    /// True if a token signed with `alg` may be verified with this key: the families match and
    /// the JWK's own `alg`, if any, is `alg`.
    pub fn fits(&self, alg: JwsAlgorithm) -> bool {
        self.family() == alg.family() && self.alg.is_none_or(|a| a == alg)
    }

    /// An HMAC key from a secret (no JWK form: HMAC is verified inside the core).
    pub fn hmac(secret: &[u8]) -> PublicKey {
        PublicKey {
            cache_id: hex_sha256(secret),
            kid: None,
            alg: None,
            material: KeyMaterial::Hmac(secret.to_vec()),
            jwk: String::new(),
        }
    }
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct JwkEntry {
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
}

/// Parses a JWKS document. Returns the usable keys and, for each key skipped, why (for the
/// log). Keys are skipped, not fatal: encryption keys, keys whose `key_ops` exclude `verify`,
/// private keys, unknown types or curves, RSA moduli under 2048 bits, unknown `alg`.
///
/// Errors: the document is not JSON with a `keys` array.
pub fn parse_jwks(json: &[u8]) -> Result<(Vec<PublicKey>, Vec<String>), String> {
    let doc: JwksDocument =
        serde_json::from_slice(json).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = Vec::new();
    let mut skipped = Vec::new();
    for (i, value) in doc.keys.iter().enumerate() {
        match parse_key(value) {
            Ok(k) => keys.push(k),
            Err(why) => skipped.push(format!("keys[{i}]: {why}")),
        }
    }
    Ok((keys, skipped))
}

fn parse_key(value: &serde_json::Value) -> Result<PublicKey, String> {
    let entry: JwkEntry = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    if entry.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("not a signature key (`use`)".into());
    }
    if entry
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Err("`key_ops` does not allow verify".into());
    }
    let alg = match entry.alg.as_deref() {
        None => None,
        Some(a) => Some(JwsAlgorithm::parse(a).ok_or_else(|| format!("unsupported alg {a:?}"))?),
    };
    let jwk: JsonWebKey<'_> =
        serde_json::from_value(value.clone()).map_err(|e| format!("bad key: {e}"))?;
    let material = match &jwk {
        JsonWebKey::Rsa {
            modulus,
            public_exponent,
            private_parts,
        } => {
            if private_parts.is_some() {
                return Err("a private key in a public JWKS".into());
            }
            let n: Vec<u8> = modulus.iter().copied().skip_while(|b| *b == 0).collect();
            if n.len() * 8 < MIN_RSA_BITS {
                return Err(format!(
                    "RSA key of {} bits (minimum {MIN_RSA_BITS})",
                    n.len() * 8
                ));
            }
            let e: Vec<u8> = public_exponent
                .iter()
                .copied()
                .skip_while(|b| *b == 0)
                .collect();
            if e.is_empty() || e.len() > 4 || e == [1] || e.last().is_some_and(|b| b % 2 == 0) {
                return Err("bad RSA public exponent".into());
            }
            KeyMaterial::Rsa { n, e }
        }
        JsonWebKey::EllipticCurve {
            curve,
            x,
            y,
            secret,
        } => {
            if secret.is_some() {
                return Err("a private key in a public JWKS".into());
            }
            let (family, len) = match curve.as_ref() {
                "P-256" => (KeyFamily::P256, 32),
                "P-384" => (KeyFamily::P384, 48),
                other => return Err(format!("unsupported curve {other:?}")),
            };
            if x.len() != len || y.len() != len {
                return Err("EC coordinates of the wrong length".into());
            }
            KeyMaterial::Ec {
                family,
                x: x.to_vec(),
                y: y.to_vec(),
            }
        }
        JsonWebKey::KeyPair { curve, x, secret } => {
            if secret.is_some() {
                return Err("a private key in a public JWKS".into());
            }
            if curve != "Ed25519" || x.len() != 32 {
                return Err(format!("unsupported OKP key {curve:?}"));
            }
            KeyMaterial::Ed25519 { x: x.to_vec() }
        }
        JsonWebKey::Symmetric { .. } => return Err("a symmetric key in a public JWKS".into()),
        _ => return Err("unsupported key type".into()),
    };
    let minimal = jwk.to_verifying_key().to_string();
    let key = PublicKey {
        cache_id: hex_sha256(minimal.as_bytes()),
        kid: entry.kid,
        alg,
        material,
        jwk: minimal,
    };
    if let Some(a) = alg {
        if a.family() != key.family() {
            return Err(format!("alg {} does not fit the key type", a.as_str()));
        }
    }
    Ok(key)
}

fn hex_sha256(bytes: &[u8]) -> String {
    crate::trace::hex(&Sha256::digest(bytes))
}
