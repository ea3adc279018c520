//! JWS signature algorithms (RFC 7518) and the keys each one may use.

/// A JWS algorithm the gateway verifies. `none` is not one: it never verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    /// HMAC SHA-256.
    Hs256,
    /// HMAC SHA-384.
    Hs384,
    /// HMAC SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    Rs512,
    /// RSASSA-PSS SHA-256 (salt = hash length).
    Ps256,
    /// RSASSA-PSS SHA-384.
    Ps384,
    /// RSASSA-PSS SHA-512.
    Ps512,
    /// ECDSA P-256 SHA-256 (raw r‖s signature).
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

/// The kind of key an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// A shared secret.
    Hmac,
    /// An RSA public key.
    Rsa,
    /// An EC public key on P-256.
    P256,
    /// An EC public key on P-384.
    P384,
    /// An Ed25519 public key.
    Ed25519,
}

const ALL: [(JwsAlgorithm, &str); 12] = [
    (JwsAlgorithm::Hs256, "HS256"),
    (JwsAlgorithm::Hs384, "HS384"),
    (JwsAlgorithm::Hs512, "HS512"),
    (JwsAlgorithm::Rs256, "RS256"),
    (JwsAlgorithm::Rs384, "RS384"),
    (JwsAlgorithm::Rs512, "RS512"),
    (JwsAlgorithm::Ps256, "PS256"),
    (JwsAlgorithm::Ps384, "PS384"),
    (JwsAlgorithm::Ps512, "PS512"),
    (JwsAlgorithm::Es256, "ES256"),
    (JwsAlgorithm::Es384, "ES384"),
    (JwsAlgorithm::EdDsa, "EdDSA"),
];

impl JwsAlgorithm {
    /// The algorithm for a JOSE `alg` value (case-sensitive, as RFC 7515 says). `None` for
    /// `none` and anything unknown.
    pub fn parse(name: &str) -> Option<JwsAlgorithm> {
        ALL.iter().find(|(_, n)| *n == name).map(|(a, _)| *a)
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        ALL.iter().find(|(a, _)| *a == self).map_or("", |(_, n)| n)
    }

    /// The key family it verifies with.
    pub fn family(self) -> KeyFamily {
        use JwsAlgorithm::*;
        match self {
            Hs256 | Hs384 | Hs512 => KeyFamily::Hmac,
            Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512 => KeyFamily::Rsa,
            Es256 => KeyFamily::P256,
            Es384 => KeyFamily::P384,
            EdDsa => KeyFamily::Ed25519,
        }
    }

    /// The SHA-2 size in bits (256, 384 or 512; Ed25519 reports 512).
    pub fn hash_bits(self) -> u16 {
        use JwsAlgorithm::*;
        match self {
            Hs256 | Rs256 | Ps256 | Es256 => 256,
            Hs384 | Rs384 | Ps384 | Es384 => 384,
            Hs512 | Rs512 | Ps512 | EdDsa => 512,
        }
    }

    /// The exact signature length for fixed-size signatures (HMAC, ECDSA, Ed25519); RSA
    /// signatures are as long as the modulus.
    pub fn signature_len(self) -> Option<usize> {
        use JwsAlgorithm::*;
        match self {
            Hs256 => Some(32),
            Hs384 => Some(48),
            Hs512 => Some(64),
            Es256 => Some(64),
            Es384 => Some(96),
            EdDsa => Some(64),
            _ => None,
        }
    }

    fn bit(self) -> u16 {
        1 << ALL.iter().position(|(a, _)| *a == self).unwrap_or(0)
    }
}

/// A set of algorithms (a route's allow-list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AlgorithmSet(u16);

impl AlgorithmSet {
    /// Adds an algorithm.
    pub fn insert(&mut self, alg: JwsAlgorithm) {
        self.0 |= alg.bit();
    }

    /// True if `alg` is in the set.
    pub fn contains(self, alg: JwsAlgorithm) -> bool {
        self.0 & alg.bit() != 0
    }

    /// True if some algorithm of the set needs a key of `family`.
    pub fn any_of_family(self, family: KeyFamily) -> bool {
        ALL.iter()
            .any(|(a, _)| self.contains(*a) && a.family() == family)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_none_is_not_an_algorithm() {
        for (alg, name) in ALL {
            assert_eq!(JwsAlgorithm::parse(name), Some(alg));
            assert_eq!(alg.as_str(), name);
        }
        for bad in ["none", "None", "NONE", "nOnE", "rs256", "HS1", "ES512", ""] {
            assert_eq!(JwsAlgorithm::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn families_and_sets() {
        assert_eq!(JwsAlgorithm::Ps384.family(), KeyFamily::Rsa);
        assert_eq!(JwsAlgorithm::Es384.family(), KeyFamily::P384);
        let mut set = AlgorithmSet::default();
        set.insert(JwsAlgorithm::Rs256);
        assert!(set.contains(JwsAlgorithm::Rs256) && !set.contains(JwsAlgorithm::Hs256));
        assert!(set.any_of_family(KeyFamily::Rsa) && !set.any_of_family(KeyFamily::Hmac));
    }
}
