//! Signature verification in Rust (feature `soft-crypto`): for hosts without WebCrypto (the
//! fake platform, Spin). On Workers, WebCrypto does this 20-50 times faster.

use super::alg::JwsAlgorithm;
use super::jwk::{KeyMaterial, PublicKey};
use crate::platform::PlatformError;

/// Verifies an RSA, ECDSA or Ed25519 JWS signature. False for a wrong signature.
///
/// Errors: the key does not fit the algorithm, or is not a valid key.
pub fn verify(
    alg: JwsAlgorithm,
    key: &PublicKey,
    input: &[u8],
    sig: &[u8],
) -> Result<bool, PlatformError> {
    use sha2::{Digest, Sha256, Sha384, Sha512};
    let bad = |what: &str| PlatformError(format!("{what} for {}", alg.as_str()));
    match (&key.material, alg) {
        (KeyMaterial::Rsa { n, e }, _) => {
            use rsa::{pss::Pss, BigUint, Pkcs1v15Sign, RsaPublicKey};
            let pk = RsaPublicKey::new(BigUint::from_bytes_be(n), BigUint::from_bytes_be(e))
                .map_err(|_| bad("bad RSA key"))?;
            let r = match alg {
                JwsAlgorithm::Rs256 => {
                    pk.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(input), sig)
                }
                JwsAlgorithm::Rs384 => {
                    pk.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(input), sig)
                }
                JwsAlgorithm::Rs512 => {
                    pk.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(input), sig)
                }
                JwsAlgorithm::Ps256 => pk.verify(Pss::new::<Sha256>(), &Sha256::digest(input), sig),
                JwsAlgorithm::Ps384 => pk.verify(Pss::new::<Sha384>(), &Sha384::digest(input), sig),
                JwsAlgorithm::Ps512 => pk.verify(Pss::new::<Sha512>(), &Sha512::digest(input), sig),
                _ => return Err(bad("an RSA key")),
            };
            Ok(r.is_ok())
        }
        (KeyMaterial::Ec { x, y, .. }, JwsAlgorithm::Es256) => {
            use p256::ecdsa::{signature::Verifier, Signature, VerifyingKey};
            let vk =
                VerifyingKey::from_sec1_bytes(&sec1(x, y)).map_err(|_| bad("bad P-256 key"))?;
            Ok(Signature::from_slice(sig).is_ok_and(|s| vk.verify(input, &s).is_ok()))
        }
        (KeyMaterial::Ec { x, y, .. }, JwsAlgorithm::Es384) => {
            use p384::ecdsa::{signature::Verifier, Signature, VerifyingKey};
            let vk =
                VerifyingKey::from_sec1_bytes(&sec1(x, y)).map_err(|_| bad("bad P-384 key"))?;
            Ok(Signature::from_slice(sig).is_ok_and(|s| vk.verify(input, &s).is_ok()))
        }
        (KeyMaterial::Ed25519 { x }, JwsAlgorithm::EdDsa) => {
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| bad("bad Ed25519 key"))?;
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| bad("bad Ed25519 key"))?;
            let Ok(sig) = <[u8; 64]>::try_from(sig) else {
                return Ok(false);
            };
            Ok(vk
                .verify_strict(input, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_ok())
        }
        _ => Err(bad("a key of another type")),
    }
}

fn sec1(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + x.len() + y.len());
    v.push(4);
    v.extend_from_slice(x);
    v.extend_from_slice(y);
    v
}

/// Signs with Ed25519 (minted tokens on hosts without WebCrypto).
pub fn sign_ed25519(seed: &[u8; 32], message: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer;
    ed25519_dalek::SigningKey::from_bytes(seed)
        .sign(message)
        .to_bytes()
        .to_vec()
}

/// The platform [`crate::platform::Crypto`] of hosts without WebCrypto (the CLI, Spin, the
/// fake platform): [`verify`] and [`sign_ed25519`] in Rust. Never fails but for unusable keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoftCrypto;

impl crate::platform::Crypto for SoftCrypto {
    async fn verify_signature(
        &self,
        alg: JwsAlgorithm,
        key: &PublicKey,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<bool, PlatformError> {
        verify(alg, key, signing_input, signature)
    }

    async fn sign_ed25519(
        &self,
        _key_id: &str,
        seed: &[u8; 32],
        message: &[u8],
    ) -> Result<Vec<u8>, PlatformError> {
        Ok(sign_ed25519(seed, message))
    }
}
