//! The isolate's cache of verified tokens: a repeated token costs a keyed hash, a comparison
//! of its text and the claim checks, not a signature check.
//!
//! The in-memory lookup hashes the token with SipHash-1-3 under a key drawn once per cache
//! from the platform's CSPRNG (so an attacker cannot aim tokens at one bucket), and a hit is a
//! hit only if the stored token text equals the presented one: two tokens with the same hash
//! never share an entry, they replace each other. No SHA-256 on this path (it is computed only
//! where a stable, cross-instance key is needed).

use super::alg::JwsAlgorithm;
use super::token::TokenClaims;
use crate::platform::Random;
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
        if *hit.token != *token {
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
}
