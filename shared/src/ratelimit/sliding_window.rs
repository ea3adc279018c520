//! Sliding window counter: two fixed-window counts, the previous one weighted by how much of
//! it the sliding window still overlaps. Exact integer comparisons (no floats).

use super::state::{self, CounterState};
use super::Counter;

/// At most `limit` per sliding `window_ms` (≥ 1). Fixed windows are aligned to multiples of
/// `window_ms` since the unix epoch; the current one is the one containing `last_ms`.
/// State: `a` = count in the current fixed window, `b` = count in the previous one.
pub(crate) struct SlidingWindow {
    pub(crate) limit: u64,
    pub(crate) window_ms: u64,
}

impl SlidingWindow {
    fn w(&self) -> u64 {
        self.window_ms.max(1)
    }

    fn start(&self, ms: u64) -> u64 {
        ms - ms % self.w()
    }

    /// How far `last_ms` is into its fixed window: 0..w.
    fn elapsed(&self, s: &CounterState) -> u64 {
        s.last_ms % self.w()
    }

    /// The previous window's count weighted by the overlap, rounded up:
    /// ⌈b × (w − e) / w⌉. Rounding up makes `available` exactly the number of single units
    /// that `b × (w − e) + (a + k) × w ≤ limit × w` admits.
    fn weighted_previous(&self, s: &CounterState) -> u64 {
        let w = u128::from(self.w());
        let overlap = w - u128::from(self.elapsed(s));
        let weighted = (u128::from(s.b) * overlap).div_ceil(w);
        u64::try_from(weighted).unwrap_or(u64::MAX)
    }

    /// The smallest offset `e'` into a window at which a previous count `prev` weighs at most
    /// `room`: ⌈prev × (w − e') / w⌉ ≤ room ⇔ w − e' ≤ ⌊room × w / prev⌋.
    fn offset_where_previous_fits(&self, prev: u64, room: u64) -> u64 {
        if prev == 0 {
            return 0;
        }
        let w = u128::from(self.w());
        let max_overlap = (u128::from(room) * w / u128::from(prev)).min(w);
        // ≤ w, a u64.
        u64::try_from(w - max_overlap).unwrap_or(u64::MAX)
    }
}

impl Counter for SlidingWindow {
    fn tag(&self) -> u32 {
        state::tag(2, &[self.w()])
    }

    fn limit(&self) -> u64 {
        self.limit
    }

    fn init(&self, _s: &mut CounterState) {}

    fn normalize(&self, _s: &mut CounterState) {}

    fn advance(&self, s: &mut CounterState, now_ms: u64) {
        let (old, new) = (self.start(s.last_ms), self.start(now_ms));
        if new == old {
            return;
        }
        s.b = if new - old == self.w() { s.a } else { 0 };
        s.a = 0;
    }

    fn available(&self, s: &CounterState) -> u64 {
        self.limit
            .saturating_sub(s.a)
            .saturating_sub(self.weighted_previous(s))
    }

    fn take(&self, s: &mut CounterState, n: u64) {
        s.a = s.a.saturating_add(n);
    }

    fn give(&self, s: &mut CounterState, leased_at_ms: u64, n: u64) {
        if leased_at_ms > s.last_ms {
            return;
        }
        let (leased, current) = (self.start(leased_at_ms), self.start(s.last_ms));
        if leased == current {
            s.a = s.a.saturating_sub(n);
        } else if current - leased == self.w() {
            // The units were counted in what is now the previous window.
            s.b = s.b.saturating_sub(n);
        }
        // Older: those units no longer count anywhere; nothing to give back.
    }

    fn reset_ms(&self, s: &CounterState) -> u64 {
        let to_next = self.w() - self.elapsed(s);
        if s.a > 0 {
            // The current count weighs until the end of the next window.
            to_next.saturating_add(self.w())
        } else if s.b > 0 {
            to_next
        } else {
            0
        }
    }

    fn retry_ms(&self, s: &CounterState, cost: u64) -> Option<u64> {
        if cost > self.limit {
            return None;
        }
        let e = self.elapsed(s);
        if let Some(room) = self
            .limit
            .checked_sub(s.a)
            .and_then(|r| r.checked_sub(cost))
        {
            // Fits beside the current count once the previous window has slid out enough
            // (at the latest at the next window start, where it weighs the current count).
            let at = self.offset_where_previous_fits(s.b, room);
            Some(at.saturating_sub(e))
        } else {
            // Only in the next window, where the current count becomes the previous one.
            let at = self.offset_where_previous_fits(s.a, self.limit - cost);
            Some((self.w() - e).saturating_add(at))
        }
    }
}
