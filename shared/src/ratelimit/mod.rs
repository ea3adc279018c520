//! Rate limiting and throttling: the algorithms as pure functions over a small serialisable
//! state, and the response header fields that advertise them.
//!
//! # What runs where
//!
//! An [`Algorithm`] (token bucket, sliding window counter, calendar quota) is compiled from
//! config. The state of one counter key is a [`CounterState`] of a few numbers. Whoever owns
//! the key loads the state, runs [`Algorithm::consume`] with the current time, and stores the
//! state, as one atomic step:
//!
//! - **exact mode**: one Durable Object per counter key does it for every request (a Durable
//!   Object runs one request at a time, which serialises the calls per key); the worker pays
//!   one round trip per request and gets back a [`Decision`];
//! - **approximate mode**: an isolate [`lease`](Algorithm::lease)s a block of units from the
//!   Durable Object, spends them locally without round trips, and gives back what it did not
//!   spend with [`refund_leased`](Algorithm::refund_leased). Only where isolates are reused
//!   ([`crate::platform::Instances::reuses_instances`]); where every request runs in a fresh
//!   instance (Spin), a leased block's unspent units would die with the instance (a limit of
//!   100 leased 10 at a time would admit about 10), so there approximate mode takes exactly
//!   one unit per request with one counter call, like exact mode, and the bound below does
//!   not apply (it is as exact as the platform's counter);
//! - **tests and the fake platform** keep the state in memory and call the same functions.
//!
//! Nothing here does I/O or reads a clock: `now_ms` (unix milliseconds) is passed in. A clock
//! that goes backwards is treated as no time passing.
//!
//! # Exactness
//!
//! All arithmetic is on integers (`u64`, widened to `u128` where products could overflow):
//! no floats, no drift, no rounding that accumulates. In exact mode:
//! - the token bucket admits at most `burst + rate × elapsed / period_ms` over any interval;
//! - the calendar quota admits at most `limit` per UTC month or year;
//! - the sliding window counter admits at most `limit` per fixed window and by its weighted
//!   estimate, an approximation of a true sliding log (see [`Algorithm::SlidingWindow`] for
//!   its worst case: up to `2 × limit − 1` in a sliding interval straddling two windows).
//!
//! # The error bound of approximate leasing
//!
//! A lease never grants more than `consume` would admit one unit at a time at the lease time,
//! and refunds never credit more than was counted, so the Durable Object's count is never
//! below what was really spent. The error is in *when* units are spent: a unit is counted
//! when it is leased but may be spent up to the lease's lifetime `L` later. So, in approximate
//! mode, the units spent in any interval `[t0, t1]` are at most what exact mode admits in
//! `[t0 − L, t1]`; with `N` isolates holding blocks of `B` units:
//! - token bucket: at most `burst + rate × (t1 − t0 + L) / period_ms`;
//! - windows and quotas: a window or period can see at most `N × B` units more than its
//!   limit (blocks leased just before its start and spent in it), unless isolates drop their
//!   leased units when [`Decision::reset_ms`] says the window or period has rolled;
//! - in the other direction, units leased but not yet spent or refunded are unavailable to
//!   other isolates: up to `N × B` requests can be denied that exact mode would admit.
//!
//! Keep `L` a small fraction of the window and `N × B` a small fraction of the limit.

mod algorithm;
pub mod calendar;
mod decision;
pub mod headers;
mod limiter;
mod policy;
mod quota;
mod sliding_window;
mod state;
mod token_bucket;

pub use crate::config::MAX_QUEUE_MS;
pub use algorithm::{Algorithm, InvalidAlgorithm};
pub use decision::{most_restrictive, Decision};
pub use limiter::{
    response_headers, LimitResult, Limiter, RateOutcome, RateRequest, LEASE_MS, WARN_AT,
};
pub use policy::{ip_key, AuthFailureLimit, FailureMode, RateKey, RateLimit, RateMode};
pub use quota::QuotaPeriod;
pub use state::CounterState;

/// One algorithm's arithmetic over the generic [`CounterState`]. Every method is evaluated at
/// `state.last_ms` (the effective now) after the engine has brought the state there.
trait Counter {
    /// The state tag: algorithm kind, state version and the unit-defining parameters.
    fn tag(&self) -> u32;
    /// The limit reported in [`Decision::limit`].
    fn limit(&self) -> u64;
    /// Fills a freshly reset state (tag and time already set).
    fn init(&self, state: &mut CounterState);
    /// Adapts a state written under other limits of the same kind (e.g. a lowered burst).
    fn normalize(&self, state: &mut CounterState);
    /// Moves the counts from `state.last_ms` forward to `now_ms` (> `state.last_ms`); the
    /// engine then sets `last_ms`.
    fn advance(&self, state: &mut CounterState, now_ms: u64);
    /// How many units a run of single-unit `consume`s would admit right now.
    fn available(&self, state: &CounterState) -> u64;
    /// Counts `n` (≤ `available`) units as spent.
    fn take(&self, state: &mut CounterState, n: u64);
    /// Gives back `n` units leased at `leased_at_ms`, where they are still counted.
    fn give(&self, state: &mut CounterState, leased_at_ms: u64, n: u64);
    /// Milliseconds until `available` returns to the limit with nothing more consumed.
    fn reset_ms(&self, state: &CounterState) -> u64;
    /// Milliseconds until `cost` (> `available`, ≤ limit) would be admitted; `None`: never.
    fn retry_ms(&self, state: &CounterState, cost: u64) -> Option<u64>;
}
