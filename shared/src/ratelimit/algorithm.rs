//! The rate-limit policy of one counter and the operations on its state.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::quota::{Quota, QuotaPeriod};
use super::sliding_window::SlidingWindow;
use super::state::CounterState;
use super::token_bucket::TokenBucket;
use super::{Counter, Decision};

/// The largest integer a JavaScript number holds exactly: stored state stays below it.
const MAX_SAFE: u64 = (1 << 53) - 1;

/// A rate-limit algorithm with its parameters. Cheap to copy; compiled from config once and
/// then applied to a [`CounterState`] per request. Serialises as
/// `{"kind":"token_bucket","rate":10,"period_ms":1000,"burst":20}` (and `sliding_window`,
/// `quota`) so the worker can send it to the Durable Object that owns the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Algorithm {
    /// Refills `rate` tokens per `period_ms` continuously (exact integer math: the level is
    /// kept in 1/`period_ms` tokens, so nothing drifts), holds at most `burst` tokens
    /// (`burst` = capacity; `burst ≥ rate` is not required). Starts full.
    TokenBucket {
        /// Tokens added per `period_ms`.
        rate: u64,
        /// The refill period in milliseconds.
        period_ms: u64,
        /// The capacity: the most tokens that can be spent at once.
        burst: u64,
    },
    /// Sliding window counter: the previous fixed window's count weighted by its overlap with
    /// the sliding window, plus the current fixed window's count, must stay ≤ `limit` (state:
    /// two counts and the latest time, which gives the current window start; fixed windows
    /// are aligned to multiples of `window_ms` since the unix epoch).
    ///
    /// This is the standard approximation of a true sliding log, assuming the previous
    /// window's requests were spread evenly. By its own count it never admits more than
    /// `limit`, so no fixed window ever holds more than `limit`. Against a true sliding log:
    /// when the previous window's requests all came at its very end, a sliding interval of
    /// `window_ms` straddling the boundary can hold up to `2 × limit − 1`; when they all came
    /// at its start, it denies requests a sliding log would admit.
    SlidingWindow {
        /// The most units per window.
        limit: u64,
        /// The window length in milliseconds.
        window_ms: u64,
    },
    /// A durable quota per calendar period in UTC: resets at the start of each month or
    /// year. Exact: never more than `limit` units per period.
    Quota {
        /// The most units per period.
        limit: u64,
        /// The calendar period.
        period: QuotaPeriod,
    },
}

/// Why [`Algorithm::validate`] refused a configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidAlgorithm(pub &'static str);

impl fmt::Display for InvalidAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidAlgorithm {}

impl Algorithm {
    /// Checks the parameters; run it at config compile time. Refuses zero rates, periods,
    /// windows, bursts and limits, and values whose stored state would not fit a
    /// JavaScript number (token bucket: `burst × period_ms` ≥ 2^53; limits ≥ 2^53).
    /// The operations never panic on a configuration that fails this (a zero period or window
    /// counts as 1 ms, a zero limit denies everything), but their answers are then unhelpful.
    pub fn validate(&self) -> Result<(), InvalidAlgorithm> {
        let err = |m| Err(InvalidAlgorithm(m));
        match *self {
            Algorithm::TokenBucket {
                rate,
                period_ms,
                burst,
            } => {
                if rate == 0 || period_ms == 0 || burst == 0 {
                    return err("token bucket: rate, period_ms and burst must be at least 1");
                }
                if burst.checked_mul(period_ms).is_none_or(|v| v > MAX_SAFE) {
                    return err("token bucket: burst × period_ms must be below 2^53");
                }
            }
            Algorithm::SlidingWindow { limit, window_ms } => {
                if limit == 0 || window_ms == 0 {
                    return err("sliding window: limit and window_ms must be at least 1");
                }
                if limit > MAX_SAFE {
                    return err("sliding window: limit must be below 2^53");
                }
            }
            Algorithm::Quota { limit, .. } => {
                if limit == 0 {
                    return err("quota: limit must be at least 1");
                }
                if limit > MAX_SAFE {
                    return err("quota: limit must be below 2^53");
                }
            }
        }
        Ok(())
    }

    /// The policy's limit, as [`Decision::limit`] reports it (token bucket: burst).
    pub fn limit(&self) -> u64 {
        self.with_counter(|c| c.limit())
    }

    /// The `(q, w)` pair for the RateLimit-Policy field: the quota and its window in seconds
    /// (rounded up, at least 1). Token bucket: `burst` per the time a refill from empty takes
    /// (so `q/w` is the sustained rate and `q` the burst); sliding window: `limit` per window;
    /// quota: `limit` per the period's nominal length ([`QuotaPeriod::nominal_seconds`]).
    pub fn policy_quota_window(&self) -> (u64, u64) {
        let secs = |ms: u128| u64::try_from(ms.div_ceil(1000).max(1)).unwrap_or(u64::MAX);
        match *self {
            Algorithm::TokenBucket {
                rate,
                period_ms,
                burst,
            } => {
                let refill_ms = (u128::from(burst) * u128::from(period_ms.max(1)))
                    .div_ceil(u128::from(rate.max(1)));
                (burst, secs(refill_ms))
            }
            Algorithm::SlidingWindow { limit, window_ms } => (limit, secs(window_ms.into())),
            Algorithm::Quota { limit, period } => (limit, period.nominal_seconds()),
        }
    }

    /// Checks and consumes `cost` units at `now_ms` (unix ms); runs once per request, in the
    /// Durable Object that owns the counter (or in memory for the fake platform). Atomic with
    /// respect to the state it is given: the caller serialises calls per key and stores the
    /// state afterwards. Returns whether `cost` was admitted (then it is consumed; a denied
    /// request consumes nothing), what remains, and when to retry. A state left by another
    /// algorithm or window is reset first. A clock that goes backwards is treated as no time
    /// passing (never refills, never resets early, never panics). `cost` 0 is always
    /// admitted; a `cost` above the limit never is (`retry_after_ms: None`).
    pub fn consume(&self, state: &mut CounterState, now_ms: u64, cost: u64) -> Decision {
        self.with_counter(|c| {
            sync(c, state, now_ms);
            let available = c.available(state);
            if cost <= available {
                c.take(state, cost);
                decision(c, state, true, available - cost, None)
            } else {
                let retry = if cost > c.limit() {
                    None
                } else {
                    c.retry_ms(state, cost)
                };
                decision(c, state, false, 0, retry)
            }
        })
    }

    /// The decision `consume` would take for cost 0: the current remaining/reset, without
    /// changing anything (for headers on responses that cost nothing). Always `allowed`.
    pub fn peek(&self, state: &CounterState, now_ms: u64) -> Decision {
        let mut scratch = *state;
        self.consume(&mut scratch, now_ms, 0)
    }

    /// Takes up to `want` units at once (approximate mode: an isolate leases a block and
    /// spends it locally); returns how many were granted (`0..=want`) and the decision after.
    /// Never grants more than `consume` would admit one by one at `now_ms`. The decision is
    /// `allowed` when something was granted (or `want` was 0); when nothing was, its
    /// `retry_after_ms` says when one unit would be. Same atomicity and clock rules as
    /// [`consume`](Self::consume).
    pub fn lease(&self, state: &mut CounterState, now_ms: u64, want: u64) -> (u64, Decision) {
        self.with_counter(|c| {
            sync(c, state, now_ms);
            let available = c.available(state);
            let granted = want.min(available);
            c.take(state, granted);
            let retry = if granted == 0 && want > 0 && c.limit() > 0 {
                c.retry_ms(state, 1)
            } else {
                None
            };
            let allowed = granted > 0 || want == 0;
            (
                granted,
                decision(c, state, allowed, available - granted, retry),
            )
        })
    }

    /// Gives back `n` unused leased units at `now_ms`, taken to have been leased in the
    /// current window/period (best effort: never exceeds the limit — a full bucket stays
    /// full, a count never goes below 0). For units leased in an earlier window or period use
    /// [`refund_leased`](Self::refund_leased), which cannot credit the wrong window.
    pub fn refund(&self, state: &mut CounterState, now_ms: u64, n: u64) {
        self.with_counter(|c| {
            if sync(c, state, now_ms) {
                // The effective now: later than `now_ms` if the clock went backwards.
                c.give(state, state.last_ms, n);
            }
        });
    }

    /// Gives back `n` unused units leased at `leased_at_ms`, which must be the state's
    /// [`last_seen_ms`](CounterState::last_seen_ms) right after the lease (the time the units
    /// were counted at: the lease's `now_ms`, or later if the clock had gone backwards; a
    /// Durable Object returns it with the grant). Token bucket: the tokens return
    /// less what the bucket refilled since the lease (it would have been full either way),
    /// capped at `burst`. Sliding window: they come off the fixed window they were counted
    /// in (current or previous); older ones no longer count and are dropped. Quota: they come
    /// off only if leased in the current period. Dropped as well if the state was reset
    /// meanwhile (another algorithm) or `leased_at_ms` is later than any time the state has
    /// seen. Never credits more than was counted, so leasing plus refunds never admits more
    /// than exact consumption would.
    pub fn refund_leased(&self, state: &mut CounterState, now_ms: u64, leased_at_ms: u64, n: u64) {
        self.with_counter(|c| {
            if sync(c, state, now_ms) {
                c.give(state, leased_at_ms, n);
            }
        });
    }

    fn with_counter<R>(&self, f: impl FnOnce(&dyn Counter) -> R) -> R {
        match *self {
            Algorithm::TokenBucket {
                rate,
                period_ms,
                burst,
            } => f(&TokenBucket {
                rate,
                period_ms,
                burst,
            }),
            Algorithm::SlidingWindow { limit, window_ms } => f(&SlidingWindow { limit, window_ms }),
            Algorithm::Quota { limit, period } => f(&Quota { limit, period }),
        }
    }
}

/// Brings `state` to `now_ms`: resets it if it belongs to another algorithm (or is empty),
/// else moves time forward (never backward). Returns false when it was reset.
fn sync(c: &dyn Counter, state: &mut CounterState, now_ms: u64) -> bool {
    let tag = c.tag();
    if state.tag != tag {
        *state = CounterState {
            tag,
            last_ms: now_ms,
            ..CounterState::default()
        };
        c.init(state);
        return false;
    }
    c.normalize(state);
    if now_ms > state.last_ms {
        c.advance(state, now_ms);
        state.last_ms = now_ms;
    }
    true
}

fn decision(
    c: &dyn Counter,
    state: &CounterState,
    allowed: bool,
    remaining: u64,
    retry_after_ms: Option<u64>,
) -> Decision {
    Decision {
        allowed,
        remaining,
        limit: c.limit(),
        reset_ms: c.reset_ms(state),
        retry_after_ms,
    }
}
