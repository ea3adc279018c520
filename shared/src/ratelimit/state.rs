//! The stored state of one counter: what a Durable Object keeps per key between requests.

use serde::{Deserialize, Serialize};

/// Bumped when the meaning of the stored numbers changes: every older state then fails the
/// tag check and is reset instead of misread.
const STATE_VERSION: u8 = 1;

/// The stored state of one counter. Created empty ([`CounterState::new`]); filled by the
/// first [`Algorithm::consume`](super::Algorithm::consume) (or `peek`/`lease`/`refund`),
/// which sets it up for that algorithm at that time (a token bucket starts full, windows and
/// quotas start empty).
///
/// Serialises compactly (serde), e.g. `{"v":2840236394,"t":1767225600000,"a":3,"b":1}`:
/// `v` tags the algorithm, the state version and the parameters that give the numbers their
/// meaning (token bucket: `period_ms`; sliding window: `window_ms`; quota: the period); `t` is
/// the latest time seen; `a`/`b` are the algorithm's counts (zeros are omitted). A state
/// whose tag does not match the algorithm it is used with (another algorithm, another
/// window or period, an older state version, or an empty state) is reset, never misread.
/// Limits (`rate`, `burst`, `limit`) are deliberately not in the tag: changing a plan's limit
/// keeps what was already used in the current period rather than handing out a fresh one.
///
/// Every number fits in 53 bits for configurations that pass
/// [`Algorithm::validate`](super::Algorithm::validate), so the state survives a round trip
/// through JavaScript numbers (Durable Object storage).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CounterState {
    /// Algorithm + version + unit-defining parameters; 0 = empty.
    #[serde(rename = "v", default)]
    pub(crate) tag: u32,
    /// The latest time seen (unix ms): the clock never goes back past it.
    #[serde(rename = "t", default)]
    pub(crate) last_ms: u64,
    /// Token bucket: tokens × `period_ms`; sliding window: current window's count; quota: used.
    #[serde(rename = "a", default, skip_serializing_if = "is_zero")]
    pub(crate) a: u64,
    /// Sliding window: previous window's count; otherwise 0.
    #[serde(rename = "b", default, skip_serializing_if = "is_zero")]
    pub(crate) b: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl CounterState {
    /// An empty state: the next call of any algorithm on it starts that algorithm afresh.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (an operator reset): the next call starts afresh, so a token
    /// bucket is full again and a window or quota is empty.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// Whether this state is empty (new, reset, or never used).
    pub fn is_empty(&self) -> bool {
        self.tag == 0
    }

    /// The latest time (unix ms) this state has seen; 0 when empty.
    pub fn last_seen_ms(&self) -> u64 {
        self.last_ms
    }
}

/// The tag of an algorithm kind and its unit-defining parameters: FNV-1a (32 bits, stable
/// across platforms and Rust versions, unlike `std::hash`) over the version, the kind and the
/// parameters' little-endian bytes. Never 0 (0 means empty).
pub(crate) fn tag(kind: u8, params: &[u64]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |byte: u8| {
        h ^= u32::from(byte);
        h = h.wrapping_mul(0x0100_0193);
    };
    eat(STATE_VERSION);
    eat(kind);
    for p in params {
        for byte in p.to_le_bytes() {
            eat(byte);
        }
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_by_kind_and_params() {
        let tags = [
            tag(1, &[1000]),
            tag(1, &[1001]),
            tag(2, &[1000]),
            tag(3, &[0]),
        ];
        for (i, a) in tags.iter().enumerate() {
            assert_ne!(*a, 0);
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // Stable: a stored state must keep matching after a rebuild.
        assert_eq!(tag(1, &[1000]), tag(1, &[1000]));
    }

    #[test]
    fn empty_state_serialises_small() {
        let s = serde_json::to_string(&CounterState::new()).unwrap();
        assert_eq!(s, r#"{"v":0,"t":0}"#);
        let back: CounterState = serde_json::from_str("{}").unwrap();
        assert!(back.is_empty());
    }
}
