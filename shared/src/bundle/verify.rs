//! Checking a bundle's signatures against the configured Registry keys.

use super::{BundleError, DecodedBundle, PublicKeyEntry};
use crate::auth::JwsAlgorithm;
use crate::platform::Crypto;

/// A bundle that passed [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The configured key whose signature verified; `None` for an unsigned bundle accepted
    /// because unsigned bundles are allowed.
    pub key_id: Option<String>,
}

/// Verifies `bundle`'s signatures with the platform's Ed25519 (WebCrypto on Workers). Runs in
/// the Registry sync and the CLI's `push`, before anything is stored.
///
/// Rules: an unsigned bundle passes only with `allow_unsigned` and no configured key (with
/// keys configured, a signature is required: otherwise stripping the trailer would turn a
/// tampered bundle into an accepted unsigned one). Otherwise every signature by a
/// configured key must verify and there must be at least one; signatures by other keys are
/// ignored (a Registry in the middle of a rotation signs with its old and new key), but a
/// bundle signed only by unknown keys is refused even when unsigned bundles are allowed: a
/// signature nobody can check is a claim, not a pass.
///
/// Errors: `Unsigned`, `UnknownKey` (the key ids found), `BadSignature` (the key id),
/// `BadKey` (the host could not use a configured key).
pub async fn verify<C: Crypto>(
    crypto: &C,
    bundle: &DecodedBundle<'_>,
    keys: &[PublicKeyEntry],
    allow_unsigned: bool,
) -> Result<Verified, BundleError> {
    if bundle.signatures.is_empty() {
        return if allow_unsigned && keys.is_empty() {
            Ok(Verified { key_id: None })
        } else {
            Err(BundleError::Unsigned)
        };
    }
    let mut verified_by = None;
    for sig in &bundle.signatures {
        let Some(key) = keys.iter().find(|k| k.key_id == sig.key_id) else {
            continue;
        };
        let public = key.to_public_key()?;
        let ok = crypto
            .verify_signature(
                JwsAlgorithm::EdDsa,
                &public,
                bundle.signed_part,
                &sig.signature,
            )
            .await
            .map_err(|e| BundleError::BadKey(format!("key {}: {e}", key.key_id)))?;
        if !ok {
            return Err(BundleError::BadSignature(sig.key_id.clone()));
        }
        verified_by.get_or_insert_with(|| sig.key_id.clone());
    }
    match verified_by {
        Some(id) => Ok(Verified { key_id: Some(id) }),
        None => Err(BundleError::UnknownKey(
            bundle.signatures.iter().map(|s| s.key_id.clone()).collect(),
        )),
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::super::{decode, key_id, with_signature, Bundle};
    use super::*;
    use crate::auth::soft_crypto::sign_ed25519;
    use crate::testing::FakePlatform;
    use base64ct::{Base64UrlUnpadded, Encoding};

    fn key(seed: u8) -> ([u8; 32], PublicKeyEntry) {
        let seed = [seed; 32];
        let public = ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .to_bytes();
        let text = format!("ed25519:{}", Base64UrlUnpadded::encode_string(&public));
        (seed, PublicKeyEntry::parse(&text).expect("key"))
    }

    fn signed(bytes: &[u8], seed: &[u8; 32], id: &str) -> Vec<u8> {
        let d = decode(bytes).expect("bundle");
        let sig: [u8; 64] = sign_ed25519(seed, d.signed_part)
            .try_into()
            .expect("64 bytes");
        with_signature(bytes, id, &sig).expect("sign")
    }

    /// (name, bundle, configured keys, allow unsigned, verified key id or error code)
    type Case<'a> = (
        &'a str,
        &'a [u8],
        Vec<PublicKeyEntry>,
        bool,
        Result<Option<&'a str>, &'a str>,
    );

    #[test]
    fn verify_table() {
        let p = FakePlatform::new();
        let (seed_a, a) = key(1);
        let (seed_b, b) = key(2);
        let (seed_c, c) = key(3);
        let plain = Bundle {
            label: "t".into(),
            created_at_ms: 1,
            config: b"{}".to_vec(),
            shards: vec![vec![9; 10]],
        }
        .encode();
        let by_a = signed(&plain, &seed_a, &a.key_id);
        let by_a_and_c = signed(&by_a, &seed_c, &c.key_id);
        let by_c = signed(&plain, &seed_c, &c.key_id);
        // Signed by b's seed but claiming a's id.
        let forged = signed(&plain, &seed_b, &a.key_id);
        let mut tampered = by_a.clone();
        let last_payload = decode(&by_a).expect("bundle").signed_part.len() - 1;
        tampered[last_payload] ^= 1;
        let cases: Vec<Case> = vec![
            (
                "signed, key a",
                &by_a,
                vec![a.clone()],
                false,
                Ok(Some(&a.key_id)),
            ),
            (
                "rotation: a and b configured",
                &by_a,
                vec![b.clone(), a.clone()],
                false,
                Ok(Some(&a.key_id)),
            ),
            (
                "also signed by an unknown key",
                &by_a_and_c,
                vec![a.clone()],
                false,
                Ok(Some(&a.key_id)),
            ),
            (
                "unsigned",
                &plain,
                vec![a.clone()],
                false,
                Err("bundle_unsigned"),
            ),
            ("unsigned allowed", &plain, vec![], true, Ok(None)),
            (
                "unsigned allowed, but keys configured",
                &plain,
                vec![a.clone()],
                true,
                Err("bundle_unsigned"),
            ),
            (
                "unknown key only",
                &by_c,
                vec![a.clone(), b.clone()],
                false,
                Err("bundle_unknown_key"),
            ),
            (
                "unknown key, unsigned allowed",
                &by_c,
                vec![a.clone()],
                true,
                Err("bundle_unknown_key"),
            ),
            (
                "forged key id",
                &forged,
                vec![a.clone()],
                false,
                Err("bundle_bad_signature"),
            ),
            (
                "tampered payload",
                &tampered,
                vec![a.clone()],
                false,
                Err("bundle_bad_signature"),
            ),
        ];
        for (name, bytes, keys, allow, want) in cases {
            let d = decode(bytes).expect(name);
            let got = futures::executor::block_on(verify(&p, &d, &keys, allow));
            match (got, want) {
                (Ok(v), Ok(id)) => assert_eq!(v.key_id.as_deref(), id, "{name}"),
                (Err(e), Err(code)) => assert_eq!(e.code(), code, "{name}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(key_id(&a.raw), a.key_id);
    }
}
