//! Token bucket over exact integers: the level is kept in units of 1/`period_ms` token, so
//! each elapsed millisecond adds exactly `rate` units and nothing is ever rounded.

use super::state::{self, CounterState};
use super::Counter;

/// `rate` tokens per `period_ms` (≥ 1), at most `burst` tokens. State: `a` = tokens ×
/// `period_ms` (capped at `burst × period_ms`).
pub(crate) struct TokenBucket {
    pub(crate) rate: u64,
    pub(crate) period_ms: u64,
    pub(crate) burst: u64,
}

impl TokenBucket {
    fn period(&self) -> u64 {
        self.period_ms.max(1)
    }

    /// `burst × period_ms`, saturating (configurations that validate stay below 2^53).
    fn cap(&self) -> u64 {
        self.burst.saturating_mul(self.period())
    }

    /// Milliseconds for the refill to add `units` (rounded up); `None` at a zero rate.
    fn time_for(&self, units: u64) -> Option<u64> {
        match self.rate {
            0 if units > 0 => None,
            0 => Some(0),
            rate => Some(units.div_ceil(rate)),
        }
    }
}

impl Counter for TokenBucket {
    fn tag(&self) -> u32 {
        state::tag(1, &[self.period()])
    }

    fn limit(&self) -> u64 {
        self.burst
    }

    fn init(&self, s: &mut CounterState) {
        s.a = self.cap();
    }

    fn normalize(&self, s: &mut CounterState) {
        // A lowered burst (same period) keeps the tokens, capped.
        s.a = s.a.min(self.cap());
    }

    fn advance(&self, s: &mut CounterState, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(s.last_ms);
        let refill = u128::from(elapsed) * u128::from(self.rate);
        let level = (u128::from(s.a) + refill).min(u128::from(self.cap()));
        // `level` ≤ cap, a u64.
        s.a = u64::try_from(level).unwrap_or(u64::MAX);
    }

    fn available(&self, s: &CounterState) -> u64 {
        s.a / self.period()
    }

    fn take(&self, s: &mut CounterState, n: u64) {
        s.a = s.a.saturating_sub(n.saturating_mul(self.period()));
    }

    fn give(&self, s: &mut CounterState, leased_at_ms: u64, n: u64) {
        if leased_at_ms > s.last_ms {
            return;
        }
        // Without the lease the bucket would hold more now, but by at most `n` tokens less
        // what it refilled since (a full bucket stops refilling): credit only that, or a
        // bucket that refilled meanwhile would get the tokens twice.
        let since = u128::from(s.last_ms - leased_at_ms) * u128::from(self.rate);
        let owed = u128::from(n) * u128::from(self.period());
        let credit = owed.saturating_sub(since);
        let level = (u128::from(s.a) + credit).min(u128::from(self.cap()));
        s.a = u64::try_from(level).unwrap_or(u64::MAX);
    }

    fn reset_ms(&self, s: &CounterState) -> u64 {
        self.time_for(self.cap().saturating_sub(s.a))
            .unwrap_or(u64::MAX)
    }

    fn retry_ms(&self, s: &CounterState, cost: u64) -> Option<u64> {
        let need = cost.saturating_mul(self.period());
        self.time_for(need.saturating_sub(s.a))
    }
}
