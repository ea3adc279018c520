//! What one `consume` decided, and how to pick the decision that binds when several policies
//! apply to one request.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// What one [`Algorithm::consume`](super::Algorithm::consume) (or `peek`/`lease`) decided.
/// Serialisable so a Durable Object can send it back to the worker as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// Whether the request (its `cost`) was admitted and consumed.
    pub allowed: bool,
    /// Tokens/requests left after this decision (0 when denied).
    pub remaining: u64,
    /// The policy's limit (token bucket: burst).
    pub limit: u64,
    /// Milliseconds until the counter is fully reset / replenished enough that `remaining`
    /// returns to `limit` if nothing more is consumed (0 when it already is); for the RateLimit
    /// `t` parameter and X-RateLimit-Reset. `u64::MAX` when it never will (a zero refill rate).
    pub reset_ms: u64,
    /// When denied: milliseconds until `cost` would be admitted if nothing else is consumed
    /// meanwhile (Retry-After); `None` when allowed or when it can never be (cost > limit, or a
    /// zero refill rate).
    pub retry_after_ms: Option<u64>,
}

/// The decision that binds among several policies applied to one request (for the legacy
/// X-RateLimit-* fields and Retry-After): `None` only for an empty slice.
///
/// Most restrictive means, in this order:
/// 1. a denied decision beats any allowed one;
/// 2. among denied ones, the longest `retry_after_ms` (`None`, never, is longest): the client
///    must wait for all of them, so the longest wait is the one to tell;
/// 3. the lowest `remaining / limit` (a limit of 0 counts as exhausted), compared exactly;
/// 4. the lowest `remaining`;
/// 5. the longest `reset_ms` (the one that takes longest to recover);
/// 6. the first in the slice.
pub fn most_restrictive<'a, 'n>(
    decisions: &'a [(&'n str, Decision)],
) -> Option<&'a (&'n str, Decision)> {
    let mut best: Option<&'a (&'n str, Decision)> = None;
    for entry in decisions {
        best = match best {
            Some(b) if restrictiveness(&entry.1, &b.1) != Ordering::Greater => Some(b),
            _ => Some(entry),
        };
    }
    best
}

/// `Greater` when `a` is more restrictive than `b` (see [`most_restrictive`]).
fn restrictiveness(a: &Decision, b: &Decision) -> Ordering {
    // `Option<u64>` with `None` (never) as the longest wait.
    let wait = |d: &Decision| d.retry_after_ms.map_or(u128::MAX, u128::from);
    (!a.allowed)
        .cmp(&!b.allowed)
        .then_with(|| {
            if a.allowed {
                Ordering::Equal
            } else {
                wait(a).cmp(&wait(b))
            }
        })
        // Lower fraction left is more restrictive: compare b's fraction with a's.
        .then_with(|| fraction_left(b).cmp_fraction(&fraction_left(a)))
        .then_with(|| b.remaining.cmp(&a.remaining))
        .then_with(|| a.reset_ms.cmp(&b.reset_ms))
}

/// `remaining / limit` as an exact fraction (limit 0: exhausted, 0/1).
struct Fraction {
    num: u128,
    den: u128,
}

impl Fraction {
    fn cmp_fraction(&self, other: &Fraction) -> Ordering {
        (self.num * other.den).cmp(&(other.num * self.den))
    }
}

fn fraction_left(d: &Decision) -> Fraction {
    if d.limit == 0 {
        Fraction { num: 0, den: 1 }
    } else {
        Fraction {
            num: u128::from(d.remaining.min(d.limit)),
            den: u128::from(d.limit),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(allowed: bool, remaining: u64, limit: u64, reset_ms: u64, retry: Option<u64>) -> Decision {
        Decision {
            allowed,
            remaining,
            limit,
            reset_ms,
            retry_after_ms: retry,
        }
    }

    #[test]
    fn picks_by_the_documented_order() {
        type Case = (
            &'static str,
            Vec<(&'static str, Decision)>,
            Option<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("empty", vec![], None),
            ("one", vec![("a", d(true, 5, 10, 0, None))], Some("a")),
            (
                "denied beats allowed",
                vec![
                    ("a", d(true, 0, 10, 9_000, None)),
                    ("b", d(false, 0, 1000, 10, Some(10))),
                ],
                Some("b"),
            ),
            (
                "longest retry among denied",
                vec![
                    ("a", d(false, 0, 10, 10, Some(500))),
                    ("b", d(false, 0, 10, 10, Some(2_000))),
                    ("c", d(false, 0, 10, 10, Some(1_000))),
                ],
                Some("b"),
            ),
            (
                "never beats any retry",
                vec![
                    ("a", d(false, 0, 10, 10, Some(u64::MAX))),
                    ("b", d(false, 0, 10, 10, None)),
                ],
                Some("b"),
            ),
            (
                "lowest fraction left",
                vec![
                    ("minute", d(true, 50, 100, 1_000, None)),
                    ("day", d(true, 400, 1_000, 1_000, None)),
                ],
                Some("day"),
            ),
            (
                "equal fraction: fewer left",
                vec![
                    ("a", d(true, 50, 100, 1_000, None)),
                    ("b", d(true, 5, 10, 1_000, None)),
                ],
                Some("b"),
            ),
            (
                "all equal but reset: longer reset",
                vec![
                    ("a", d(true, 5, 10, 1_000, None)),
                    ("b", d(true, 5, 10, 60_000, None)),
                ],
                Some("b"),
            ),
            (
                "full tie: first",
                vec![
                    ("a", d(true, 5, 10, 1_000, None)),
                    ("b", d(true, 5, 10, 1_000, None)),
                ],
                Some("a"),
            ),
            (
                "zero limit is exhausted",
                vec![
                    ("a", d(true, 1, 1_000, 0, None)),
                    ("b", d(true, 0, 0, 0, None)),
                ],
                Some("b"),
            ),
        ];
        for (name, decisions, want) in cases {
            let got = most_restrictive(&decisions).map(|(n, _)| *n);
            assert_eq!(got, want, "{name}");
        }
    }
}
