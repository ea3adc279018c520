//! The isolate's cache of verified tokens: a repeated token costs a keyed hash, a comparison
//! of its text and the claim checks, not a signature check.
//!
//! The in-memory lookup hashes the token with SipHash-1-3 under a key drawn once per cache
//! from the platform's CSPRNG (so an attacker cannot aim tokens at one bucket), and a hit is a
//! hit only if the stored token text equals the presented one: two tokens with the same hash
//! never share an entry, they replace each other. No SHA-256 on this path (it is computed only
//! where a stable, cross-instance key is needed: see [`shared_key`]).

use super::alg::JwsAlgorithm;
use super::jwk::PublicKey;
use super::policy::IdentityProvider;
use super::token::TokenClaims;
use crate::platform::{Random, SharedCache};
use sha2::{Digest, Sha256};
use siphasher::sip::SipHasher13;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

/// A token whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    /// The token text (a lookup compares it in full: a hash match alone is never a hit).
    pub token: Box<str>,
    /// Its algorithm.
    pub alg: JwsAlgorithm,
    /// Index of its identity provider in the config it was verified under.
    pub provider_store_id: String,
    /// The verifying key's `cache_id` (the entry is dropped when the key leaves the JWKS).
    pub key_id: String,
    /// Its claims.
    pub claims: Rc<TokenClaims>,
}

/// The keyed hash of a token text: where it goes in a [`TokenCache`]. Only meaningful for the
/// cache that computed it ([`TokenCache::slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenSlot(u64);

/// A `Hasher` for keys that are already keyed hashes ([`TokenSlot`]): it passes the `u64`
/// through instead of hashing it again.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `TokenSlot`'s derived `Hash`; fold anything else.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Verified tokens by keyed hash of the token text, bounded in count and in stored token
/// bytes (oldest out first). Entries are kept only while the token's `exp` (plus the largest
/// leeway) has not passed. Interior mutability: borrows never outlive a call.
pub struct TokenCache {
    capacity: usize,
    max_bytes: usize,
    sip_key: Cell<Option<(u64, u64)>>,
    entries: RefCell<HashMap<TokenSlot, Rc<VerifiedToken>, BuildHasherDefault<PassThrough>>>,
    order: RefCell<VecDeque<TokenSlot>>,
    bytes: Cell<usize>,
    /// Tests: every token hashes to this slot (to exercise collisions).
    #[cfg(test)]
    fixed_slot: Option<u64>,
}

/// The largest leeway a route may configure (s): entries outlive `exp` by this much.
pub const MAX_LEEWAY_S: i64 = 300;

/// Token text bytes a [`TokenCache`] holds at most per entry of capacity, on average (1 KiB:
/// 4,096 entries hold at most 4 MiB of tokens, whatever their size).
pub const BYTES_PER_ENTRY: usize = 1024;

impl TokenCache {
    /// A cache of at most `capacity` tokens and `capacity` KiB of token text.
    pub fn new(capacity: usize) -> Self {
        TokenCache {
            capacity,
            max_bytes: capacity.saturating_mul(BYTES_PER_ENTRY),
            sip_key: Cell::new(None),
            entries: RefCell::new(HashMap::default()),
            order: RefCell::new(VecDeque::new()),
            bytes: Cell::new(0),
            #[cfg(test)]
            fixed_slot: None,
        }
    }

    /// Where `token` goes: SipHash-1-3 of its text under this cache's key, which is drawn from
    /// `random` on the first call (once per isolate). Never fails.
    pub fn slot(&self, random: &impl Random, token: &str) -> TokenSlot {
        #[cfg(test)]
        if let Some(fixed) = self.fixed_slot {
            return TokenSlot(fixed);
        }
        let (k0, k1) = match self.sip_key.get() {
            Some(k) => k,
            None => {
                let k = (random.next_u64(), random.next_u64());
                self.sip_key.set(Some(k));
                k
            }
        };
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write(token.as_bytes());
        TokenSlot(h.finish())
    }

    /// The verified token `token` (in `slot`), if cached and not long expired. A different
    /// token in the same slot is not a hit.
    pub fn get(&self, slot: TokenSlot, token: &str, now_s: i64) -> Option<Rc<VerifiedToken>> {
        let hit = self.entries.borrow().get(&slot).cloned()?;
        if !same_text(hit.token.as_bytes(), token.as_bytes()) {
            return None;
        }
        if hit
            .claims
            .expires
            .is_none_or(|exp| now_s > exp.saturating_add(MAX_LEEWAY_S))
        {
            self.remove(slot);
            return None;
        }
        Some(hit)
    }

    /// Caches a verified token in `slot` (replacing whatever was there), evicting the oldest
    /// entries while over the count or byte bound. A token larger than the whole byte bound
    /// is not cached.
    pub fn insert(&self, slot: TokenSlot, token: VerifiedToken) {
        let size = token.token.len();
        if self.capacity == 0 || size > self.max_bytes {
            return;
        }
        let mut entries = self.entries.borrow_mut();
        let mut order = self.order.borrow_mut();
        let mut bytes = self.bytes.get() + size;
        match entries.insert(slot, Rc::new(token)) {
            Some(old) => bytes -= old.token.len(),
            None => order.push_back(slot),
        }
        while entries.len() > self.capacity || bytes > self.max_bytes {
            let Some(old) = order.pop_front() else { break };
            if let Some(gone) = entries.remove(&old) {
                bytes -= gone.token.len();
            }
        }
        self.bytes.set(bytes);
    }

    /// Forgets the token in `slot` (its key was revoked, or it expired).
    pub fn remove(&self, slot: TokenSlot) {
        if let Some(gone) = self.entries.borrow_mut().remove(&slot) {
            self.bytes.set(self.bytes.get() - gone.token.len());
            self.order.borrow_mut().retain(|s| *s != slot);
        }
    }

    /// The number of cached tokens.
    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of token text held.
    pub fn bytes(&self) -> usize {
        self.bytes.get()
    }
}

/// `a == b`, 8 bytes at a time and without an early exit. On wasm32 a slice comparison is a
/// byte-by-byte `memcmp` loop (~0.3 µs for a 660-byte token under V8; this is ~0.03 µs).
fn same_text(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tails_equal = wa.remainder() == wb.remainder();
    let word = |c: &[u8]| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        u64::from_ne_bytes(w)
    };
    let diff = wa.zip(wb).fold(0u64, |d, (x, y)| d | (word(x) ^ word(y)));
    diff == 0 && tails_equal
}

/// The cross-instance key of a verified token in the platform's shared cache (used where
/// instances are not reused, e.g. Spin): `jwt:v1:` and the hex SHA-256 of the token text.
/// Computed only after an in-memory miss.
pub fn shared_key(token: &str) -> String {
    hex_key("jwt:v1:", &Sha256::digest(token.as_bytes()))
}

/// `prefix` followed by `digest` in lower-case hex.
pub(super) fn hex_key(prefix: &str, digest: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut key = String::with_capacity(prefix.len() + 2 * digest.len());
    key.push_str(prefix);
    for b in digest {
        key.push(char::from(HEX[usize::from(b >> 4)]));
        key.push(char::from(HEX[usize::from(b & 15)]));
    }
    key
}

/// How long a shared-cache record of a verification lives at most (s), whatever the token's
/// `exp`.
pub const SHARED_TTL_CAP_S: i64 = 300;

/// A token's verification as one instance records it in the platform's shared cache for the
/// next ones (hosts that run every request in a fresh instance: Spin's key-value store). The
/// key is [`shared_key`] (SHA-256 of the token text); the value names the algorithm, the
/// provider and the key (`cache_id`, a digest of the key material) that verified it. A record
/// counts only for the same algorithm, provider and key material the request has just looked
/// up by the token's `kid`: a revoked or rotated-out key is not found, so its records are dead.
/// It stands in for the signature check only; the token is still parsed and every claim
/// checked on each request.
pub struct SharedAttestation {
    key: String,
    value: String,
}

impl SharedAttestation {
    /// The record for `token` verified by `key` of `idp` with `alg` (computes the SHA-256 of
    /// the token; call it only after an in-memory miss). Never fails.
    pub fn new(
        token: &str,
        alg: JwsAlgorithm,
        idp: &IdentityProvider,
        key: &PublicKey,
    ) -> SharedAttestation {
        let value = serde_json::json!({
            "alg": alg.as_str(),
            "provider": idp.store_id(),
            "key": key.cache_id,
        })
        .to_string();
        SharedAttestation {
            key: shared_key(token),
            value,
        }
    }

    /// True if the shared cache holds exactly this record (not expired). A read error or any
    /// other value is `false`: the caller verifies the signature itself.
    pub async fn read<P: SharedCache>(&self, p: &P) -> bool {
        matches!(p.shared_get(&self.key).await, Ok(Some(v)) if v == self.value.as_bytes())
    }

    /// Records the verification for min(`exp` − `now_s`, [`SHARED_TTL_CAP_S`]) seconds;
    /// nothing for a token without `exp` or already past it. A write error is ignored (the
    /// next instance verifies again).
    pub async fn write<P: SharedCache>(&self, p: &P, exp: Option<i64>, now_s: i64) {
        let Some(exp) = exp else { return };
        let ttl = exp.saturating_sub(now_s).min(SHARED_TTL_CAP_S);
        if let Ok(ttl @ 1..) = u64::try_from(ttl) {
            let _ = p.shared_put(&self.key, self.value.as_bytes(), ttl).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakePlatform;

    fn claims(exp: Option<i64>) -> Rc<TokenClaims> {
        Rc::new(TokenClaims {
            issuer: Some("iss".into()),
            subject: Some("sub".into()),
            audiences: Vec::new(),
            expires: exp,
            not_before: None,
            issued_at: None,
            application: None,
            scopes: Vec::new(),
            all: serde_json::Map::new(),
        })
    }

    fn verified(token: &str, exp: Option<i64>) -> VerifiedToken {
        VerifiedToken {
            token: token.into(),
            alg: JwsAlgorithm::Rs256,
            provider_store_id: "p".into(),
            key_id: format!("key of {token}"),
            claims: claims(exp),
        }
    }

    /// Looks `token` up as the pipeline does (slot, then get).
    fn lookup(c: &TokenCache, token: &str, now_s: i64) -> Option<String> {
        let slot = c.slot(&FakePlatform::new(), token);
        c.get(slot, token, now_s).map(|v| v.key_id.clone())
    }

    fn put(c: &TokenCache, token: &str, exp: Option<i64>) {
        let slot = c.slot(&FakePlatform::new(), token);
        c.insert(slot, verified(token, exp));
    }

    /// (cached tokens with exp, probe, now, expected hit)
    type Case<'a> = (&'a [(&'a str, Option<i64>)], &'a str, i64, Option<&'a str>);

    #[test]
    fn lookup_table() {
        let cases: &[Case] = &[
            (&[("a.b.c", Some(1000))], "a.b.c", 999, Some("key of a.b.c")),
            (&[("a.b.c", Some(1000))], "a.b.d", 999, None),
            (&[("a.b.c", Some(1000))], "a.b.c ", 999, None),
            (&[("a.b.c", Some(1000))], "a.b", 999, None),
            // Kept up to exp + the largest leeway (the route's claim checks refuse it sooner).
            (
                &[("a.b.c", Some(1000))],
                "a.b.c",
                1000 + MAX_LEEWAY_S,
                Some("key of a.b.c"),
            ),
            (&[("a.b.c", Some(1000))], "a.b.c", 1001 + MAX_LEEWAY_S, None),
            // No exp: never served from the cache.
            (&[("a.b.c", None)], "a.b.c", 0, None),
            (
                &[("x.y.z", Some(9)), ("a.b.c", Some(9))],
                "x.y.z",
                0,
                Some("key of x.y.z"),
            ),
        ];
        for (cached, probe, now, want) in cases {
            let c = TokenCache::new(8);
            for (t, exp) in *cached {
                put(&c, t, *exp);
            }
            assert_eq!(
                lookup(&c, probe, *now).as_deref(),
                *want,
                "{cached:?} {probe}"
            );
        }
    }

    #[test]
    fn same_text_table() {
        let long = "0123456789abcdef0123456789abcdef!";
        for (a, b, want) in [
            ("", "", true),
            ("a", "a", true),
            ("a", "b", false),
            ("a", "", false),
            ("12345678", "12345678", true),
            ("12345678", "12345679", false),
            ("123456789", "123456789", true),
            ("123456789", "123456780", false),
            ("x23456789", "123456789", false),
            (long, long, true),
            (long, "0123456789abcdef0123456789abcdef?", false),
            (long, "0123456789abcdef0123456789abcdeX!", false),
            (long, "0123456789abcdef0123456789abcdef", false),
        ] {
            assert_eq!(same_text(a.as_bytes(), b.as_bytes()), want, "{a:?} {b:?}");
        }
    }

    #[test]
    fn tokens_with_the_same_hash_never_share_an_entry() {
        let mut c = TokenCache::new(8);
        c.fixed_slot = Some(42); // every token collides
        put(&c, "first.token.sig", Some(1000));
        assert_eq!(
            lookup(&c, "first.token.sig", 0).as_deref(),
            Some("key of first.token.sig")
        );
        assert_eq!(
            lookup(&c, "other.token.sig", 0),
            None,
            "collision is a miss"
        );
        put(&c, "other.token.sig", Some(1000));
        assert_eq!(
            lookup(&c, "other.token.sig", 0).as_deref(),
            Some("key of other.token.sig")
        );
        assert_eq!(
            lookup(&c, "first.token.sig", 0),
            None,
            "replaced, not shared"
        );
        assert_eq!((c.len(), c.bytes()), (1, "other.token.sig".len()));
    }

    #[test]
    fn the_hash_is_keyed_per_cache() {
        let (a, b) = (TokenCache::new(1), TokenCache::new(1));
        let p = FakePlatform::new();
        let sa = a.slot(&p, "a.b.c");
        assert_eq!(sa, a.slot(&p, "a.b.c"), "stable within a cache");
        // The fake's random stream moved on, so b drew another key.
        assert_ne!(sa, b.slot(&p, "a.b.c"));
    }

    #[test]
    fn bounded_in_count_and_bytes_oldest_out_first() {
        let c = TokenCache::new(2);
        for t in ["t1", "t2", "t3"] {
            put(&c, t, Some(100));
        }
        assert_eq!(
            ["t1", "t2", "t3"].map(|t| lookup(&c, t, 0).is_some()),
            [false, true, true]
        );
        // 2 entries may hold 2 KiB of token text.
        let (big, mid) = ("b".repeat(1536), "m".repeat(1000));
        put(&c, &big, Some(100)); // evicts t2 (count)
        assert_eq!((c.len(), c.bytes()), (2, 1538));
        put(&c, &mid, Some(100)); // evicts t3 (count), then big (bytes)
        assert_eq!((c.len(), c.bytes()), (1, 1000));
        assert!(lookup(&c, &mid, 0).is_some());
        // Larger than the whole bound: not cached, nothing evicted.
        put(&c, &"h".repeat(2049), Some(100));
        assert_eq!((c.len(), c.bytes()), (1, 1000));
        c.remove(c.slot(&FakePlatform::new(), &mid));
        assert_eq!((c.len(), c.bytes()), (0, 0));
        let none = TokenCache::new(0);
        put(&none, "t", Some(100));
        assert!(none.is_empty());
    }

    #[test]
    fn removal_and_replacement_keep_the_byte_count() {
        let c = TokenCache::new(4);
        put(&c, "aaaa", Some(100));
        put(&c, "aaaa", Some(200));
        assert_eq!((c.len(), c.bytes()), (1, 4));
        let slot = c.slot(&FakePlatform::new(), "aaaa");
        c.remove(slot);
        c.remove(slot);
        assert_eq!((c.len(), c.bytes()), (0, 0));
    }

    /// A shared cache that fails every call, or (when `up`) keeps what it is given.
    struct Shared {
        up: bool,
        stored: RefCell<Option<(Vec<u8>, u64)>>,
    }

    impl SharedCache for Shared {
        async fn shared_get(
            &self,
            _: &str,
        ) -> Result<Option<Vec<u8>>, crate::platform::PlatformError> {
            match self.up {
                true => Ok(self.stored.borrow().as_ref().map(|(v, _)| v.clone())),
                false => Err(crate::platform::PlatformError("down".into())),
            }
        }
        async fn shared_put(
            &self,
            _: &str,
            value: &[u8],
            ttl_s: u64,
        ) -> Result<(), crate::platform::PlatformError> {
            match self.up {
                true => {
                    *self.stored.borrow_mut() = Some((value.to_vec(), ttl_s));
                    Ok(())
                }
                false => Err(crate::platform::PlatformError("down".into())),
            }
        }
    }

    #[test]
    fn shared_attestations_table() {
        use crate::auth::{KeyMaterial, KeySource};
        let idp = |issuer: &str| IdentityProvider {
            name: "idp".into(),
            issuer: issuer.into(),
            source: KeySource::Jwks("https://idp/jwks".into()),
            min_ttl_ms: 0,
            max_ttl_ms: 0,
            max_stale_ms: 0,
            refetch_interval_ms: 0,
            timeout_ms: 0,
            introspection: None,
            store_id: IdentityProvider::make_store_id(
                issuer,
                &KeySource::Jwks("https://idp/jwks".into()),
            ),
        };
        let key = |id: &str| PublicKey {
            kid: Some("k".into()),
            alg: None,
            material: KeyMaterial::Hmac(Vec::new()),
            cache_id: id.into(),
            jwk: String::new(),
        };
        let rs = JwsAlgorithm::Rs256;
        let written = SharedAttestation::new("t", rs, &idp("a"), &key("k1"));
        // (row, read back with, expected)
        #[rustfmt::skip]
        let rows = [
            ("same token, alg, provider, key", SharedAttestation::new("t", rs, &idp("a"), &key("k1")), true),
            ("other token", SharedAttestation::new("u", rs, &idp("a"), &key("k1")), false),
            ("other key material", SharedAttestation::new("t", rs, &idp("a"), &key("k2")), false),
            ("other provider", SharedAttestation::new("t", rs, &idp("b"), &key("k1")), false),
            ("other algorithm", SharedAttestation::new("t", JwsAlgorithm::Ps256, &idp("a"), &key("k1")), false),
        ];
        for (row, probe, want) in rows {
            let up = Shared {
                up: true,
                stored: RefCell::new(None),
            };
            futures::executor::block_on(written.write(&up, Some(1_000), 900));
            assert_eq!(
                up.stored.borrow().as_ref().map(|(_, t)| *t),
                Some(100),
                "{row}"
            );
            // The fake ignores keys: a different key is simulated by a different value.
            let same_key = probe.key == written.key;
            let hit = futures::executor::block_on(probe.read(&up));
            assert_eq!(hit && same_key, want, "{row}");
        }
        // TTL: min(exp − now, 300); nothing without exp or at / past it.
        for (exp, now, ttl) in [
            (Some(10_000), 0, Some(300)),
            (Some(1), 0, Some(1)),
            (Some(5), 5, None),
            (Some(4), 5, None),
            (None, 5, None),
        ] {
            let up = Shared {
                up: true,
                stored: RefCell::new(None),
            };
            futures::executor::block_on(written.write(&up, exp, now));
            assert_eq!(
                up.stored.borrow().as_ref().map(|(_, t)| *t),
                ttl,
                "{exp:?} {now}"
            );
        }
        // A failing cache: not a hit, and writing does not fail.
        let down = Shared {
            up: false,
            stored: RefCell::new(None),
        };
        assert!(!futures::executor::block_on(written.read(&down)));
        futures::executor::block_on(written.write(&down, Some(1_000), 900));
    }

    #[test]
    fn shared_keys_are_namespaced_hex_sha256() {
        let k = shared_key("abc");
        assert_eq!(
            k,
            "jwt:v1:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(shared_key("abd"), k);
    }
}
