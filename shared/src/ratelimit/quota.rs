//! A durable quota per UTC calendar month or year.

use serde::{Deserialize, Serialize};

use super::calendar;
use super::state::{self, CounterState};
use super::Counter;

/// The calendar period a [`Algorithm::Quota`](super::Algorithm::Quota) resets on, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaPeriod {
    /// From the first instant of a UTC month to the first instant of the next.
    Month,
    /// From 1 January 00:00 UTC to the next 1 January.
    Year,
}

impl QuotaPeriod {
    /// Unix ms at which the period containing `now_ms` started. Never fails.
    pub fn start_ms(self, now_ms: u64) -> u64 {
        match self {
            QuotaPeriod::Month => calendar::month_start_ms(now_ms),
            QuotaPeriod::Year => calendar::year_start_ms(now_ms),
        }
    }

    /// Unix ms at which the period after the one containing `now_ms` starts (the reset
    /// time). Saturates at `u64::MAX`; never fails.
    pub fn next_start_ms(self, now_ms: u64) -> u64 {
        match self {
            QuotaPeriod::Month => calendar::next_month_start_ms(now_ms),
            QuotaPeriod::Year => calendar::next_year_start_ms(now_ms),
        }
    }

    /// A nominal length in seconds for the RateLimit-Policy `w` parameter, which wants one
    /// fixed number: 30 days for a month, 365 days for a year.
    pub fn nominal_seconds(self) -> u64 {
        match self {
            QuotaPeriod::Month => 30 * 86_400,
            QuotaPeriod::Year => 365 * 86_400,
        }
    }

    fn code(self) -> u64 {
        match self {
            QuotaPeriod::Month => 1,
            QuotaPeriod::Year => 2,
        }
    }
}

/// At most `limit` units per calendar `period`. State: `a` = used in the period containing
/// `last_ms`.
pub(crate) struct Quota {
    pub(crate) limit: u64,
    pub(crate) period: QuotaPeriod,
}

impl Counter for Quota {
    fn tag(&self) -> u32 {
        state::tag(3, &[self.period.code()])
    }

    fn limit(&self) -> u64 {
        self.limit
    }

    fn init(&self, _s: &mut CounterState) {}

    fn normalize(&self, _s: &mut CounterState) {}

    fn advance(&self, s: &mut CounterState, now_ms: u64) {
        if self.period.start_ms(now_ms) != self.period.start_ms(s.last_ms) {
            s.a = 0;
        }
    }

    fn available(&self, s: &CounterState) -> u64 {
        self.limit.saturating_sub(s.a)
    }

    fn take(&self, s: &mut CounterState, n: u64) {
        s.a = s.a.saturating_add(n);
    }

    fn give(&self, s: &mut CounterState, leased_at_ms: u64, n: u64) {
        // Only units of the current period can be given back.
        if leased_at_ms <= s.last_ms
            && self.period.start_ms(leased_at_ms) == self.period.start_ms(s.last_ms)
        {
            s.a = s.a.saturating_sub(n);
        }
    }

    fn reset_ms(&self, s: &CounterState) -> u64 {
        if s.a == 0 {
            0
        } else {
            self.period
                .next_start_ms(s.last_ms)
                .saturating_sub(s.last_ms)
        }
    }

    fn retry_ms(&self, s: &CounterState, cost: u64) -> Option<u64> {
        (cost <= self.limit).then(|| {
            self.period
                .next_start_ms(s.last_ms)
                .saturating_sub(s.last_ms)
        })
    }
}
