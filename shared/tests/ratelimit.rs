//! Rate-limit algorithms (`edgegate_core::ratelimit`) over a manual clock: table-driven
//! scenarios per algorithm (refill, rounding, windows, calendar boundaries, clocks going
//! backwards), state round trips and resets, leasing equivalence and seeded random
//! interleavings checked against independent models, and the header fields parsed back
//! with `sfv`.

use edgegate_core::ratelimit::headers::{
    legacy_fields, ratelimit_field, ratelimit_field_for, ratelimit_list_field,
    ratelimit_policy_field, retry_after_value, sanitize_policy_name, validate_policy_name,
    InvalidPolicyName, RETRY_AFTER, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
use edgegate_core::ratelimit::{most_restrictive, Algorithm, CounterState, Decision, QuotaPeriod};

// === helpers ===

fn tb(rate: u64, period_ms: u64, burst: u64) -> Algorithm {
    Algorithm::TokenBucket {
        rate,
        period_ms,
        burst,
    }
}

fn sw(limit: u64, window_ms: u64) -> Algorithm {
    Algorithm::SlidingWindow { limit, window_ms }
}

fn quota(limit: u64, period: QuotaPeriod) -> Algorithm {
    Algorithm::Quota { limit, period }
}

/// One consume at `now` of `cost` and what it must decide:
/// (now_ms, cost, allowed, remaining, reset_ms, retry_after_ms).
type Step = (u64, u64, bool, u64, u64, Option<u64>);

/// Runs the steps in order on one fresh state; a step of cost 0 is also checked against
/// `peek` (which must agree and change nothing).
fn run(name: &str, alg: Algorithm, steps: &[Step]) {
    let mut state = CounterState::new();
    for (i, &(now, cost, allowed, remaining, reset_ms, retry)) in steps.iter().enumerate() {
        let want = Decision {
            allowed,
            remaining,
            limit: alg.limit(),
            reset_ms,
            retry_after_ms: retry,
        };
        if cost == 0 && !state.is_empty() {
            let before = state;
            assert_eq!(alg.peek(&state, now), want, "{name} step {i} (peek)");
            assert_eq!(state, before, "{name} step {i}: peek changed the state");
        }
        let got = alg.consume(&mut state, now, cost);
        assert_eq!(got, want, "{name} step {i}: consume({now}, {cost})");
        if let Some(wait) = got.retry_after_ms {
            check_retry_is_exact(name, i, alg, &state, now, cost, wait);
        }
    }
}

/// `retry_after_ms` is exact: one millisecond earlier the cost is still denied, at the
/// retry time it is admitted (on copies of the state: nothing else consumed meanwhile).
fn check_retry_is_exact(
    name: &str,
    i: usize,
    alg: Algorithm,
    state: &CounterState,
    now: u64,
    cost: u64,
    wait: u64,
) {
    let eff = now.max(state.last_seen_ms());
    if wait > 0 {
        let mut early = *state;
        let d = alg.consume(&mut early, eff + wait - 1, cost);
        assert!(
            !d.allowed,
            "{name} step {i}: admitted 1 ms before retry_after"
        );
    }
    let mut on_time = *state;
    let d = alg.consume(&mut on_time, eff + wait, cost);
    assert!(
        d.allowed,
        "{name} step {i}: denied at retry_after ({wait} ms)"
    );
}

// Calendar instants (from `date -u -d ... +%s%3N`).
const JAN_1_2024: u64 = 1_704_067_200_000;
const JAN_31_2024_LAST_MS: u64 = 1_706_745_599_999;
const FEB_1_2024: u64 = 1_706_745_600_000;
const FEB_29_2024_NOON: u64 = 1_709_208_000_000;
const MAR_1_2024: u64 = 1_709_251_200_000;
const DEC_31_2024_LAST_MS: u64 = 1_735_689_599_999;
const JAN_1_2025: u64 = 1_735_689_600_000;
const FEB_1_2025: u64 = 1_738_368_000_000;
const FEB_1_2023: u64 = 1_675_209_600_000;
const FEB_28_2023_LAST_MS: u64 = 1_677_628_799_999;
const MAR_1_2023: u64 = 1_677_628_800_000;
const JUN_1_2024: u64 = 1_717_200_000_000;
const JUN_15_2024_0830: u64 = 1_718_440_200_000;
const JUL_1_2024: u64 = 1_719_792_000_000;
const FEB_1_2000: u64 = 949_363_200_000;
const FEB_29_2000: u64 = 951_782_400_000;
const MAR_1_2000: u64 = 951_868_800_000;
const JAN_1_2000: u64 = 946_684_800_000;
const JAN_1_2001: u64 = 978_307_200_000;
const JAN_1_2100: u64 = 4_102_444_800_000;
const FEB_1_2100: u64 = 4_105_123_200_000;
const FEB_28_2100: u64 = 4_107_456_000_000;
const MAR_1_2100: u64 = 4_107_542_400_000;
const JAN_1_2101: u64 = 4_133_980_800_000;
const DAY: u64 = 86_400_000;

// === token bucket ===

#[test]
fn token_bucket_scenarios() {
    let cases: &[(&str, Algorithm, &[Step])] = &[
        (
            "burst then refill (1/s, burst 3)",
            tb(1, 1000, 3),
            &[
                (0, 1, true, 2, 1000, None),
                (0, 2, true, 0, 3000, None),
                (0, 1, false, 0, 3000, Some(1000)),
                (999, 1, false, 0, 2001, Some(1)),
                (1000, 1, true, 0, 3000, None),
                (2500, 0, true, 1, 1500, None),
                (5000, 0, true, 3, 0, None),
                (9_000_000, 3, true, 0, 3000, None),
            ],
        ),
        (
            "partial refill rounds down tokens, up times (3 per 1000 ms)",
            tb(3, 1000, 3),
            &[
                (0, 3, true, 0, 1000, None),
                // 333 ms refill 999 of the 1000 units a token needs.
                (333, 1, false, 0, 667, Some(1)),
                (334, 1, true, 0, 1000, None),
                (1000, 2, true, 0, 1000, None),
                (1001, 0, true, 0, 999, None),
            ],
        ),
        (
            "cost > 1 and cost > burst (10/s, burst 5)",
            tb(10, 1000, 5),
            &[
                (0, 6, false, 0, 0, None),
                (0, 5, true, 0, 500, None),
                (100, 2, false, 0, 400, Some(100)),
                (200, 2, true, 0, 500, None),
                (200, 6, false, 0, 500, None),
            ],
        ),
        (
            "burst below rate (100 per 1000 ms, burst 2)",
            tb(100, 1000, 2),
            &[
                (0, 2, true, 0, 20, None),
                (5, 1, false, 0, 15, Some(5)),
                (10, 1, true, 0, 20, None),
                (1000, 0, true, 2, 0, None),
            ],
        ),
        (
            "clock going backwards never refills",
            tb(1, 1000, 2),
            &[
                (10_000, 2, true, 0, 2000, None),
                (5_000, 1, false, 0, 2000, Some(1000)),
                (0, 0, true, 0, 2000, None),
                (10_999, 1, false, 0, 1001, Some(1)),
                (11_000, 1, true, 0, 2000, None),
            ],
        ),
        (
            "huge elapsed time and huge rate saturate, never overflow",
            tb(u64::MAX, 1, 4),
            &[(0, 4, true, 0, 1, None), (u64::MAX, 4, true, 0, 1, None)],
        ),
    ];
    for (name, alg, steps) in cases {
        run(name, *alg, steps);
    }
}

// === sliding window ===

#[test]
fn sliding_window_scenarios() {
    let cases: &[(&str, Algorithm, &[Step])] = &[
        (
            "rollover and weighting (10 per 1000 ms)",
            sw(10, 1000),
            &[
                (0, 4, true, 6, 2000, None),
                (500, 6, true, 0, 1500, None),
                // Next window: the 10 weigh ⌈10 × (1000 − e)/1000⌉ ≤ 9 from e = 100.
                (999, 1, false, 0, 1001, Some(101)),
                (1000, 1, false, 0, 1000, Some(100)),
                (1100, 1, true, 0, 1900, None),
                (1500, 4, true, 0, 1500, None),
                // 4.99 of the previous window rounds up to 5: full until e = 600.
                (1501, 1, false, 0, 1499, Some(99)),
                (1600, 1, true, 0, 1400, None),
                (2000, 0, true, 4, 1000, None),
                (2999, 0, true, 9, 1, None),
                (3000, 0, true, 10, 0, None),
            ],
        ),
        (
            "window boundary exactly (2 per 1000 ms)",
            sw(2, 1000),
            &[
                (999, 2, true, 0, 1001, None),
                (1000, 1, false, 0, 1000, Some(500)),
                (1499, 1, false, 0, 501, Some(1)),
                (1500, 1, true, 0, 1500, None),
                (1999, 1, false, 0, 1001, Some(1)),
                (2000, 1, true, 0, 2000, None),
            ],
        ),
        (
            "long idle forgets both windows (5 per 1000 ms)",
            sw(5, 1000),
            &[
                (0, 5, true, 0, 2000, None),
                (2000, 0, true, 5, 0, None),
                (1_000_000, 5, true, 0, 2000, None),
                (1_000_999, 1, false, 0, 1001, Some(201)),
            ],
        ),
        (
            "cost > limit never admitted",
            sw(3, 1000),
            &[(0, 4, false, 0, 0, None), (0, 3, true, 0, 2000, None)],
        ),
        (
            "clock going backwards neither rolls back nor forward (3 per 1000 ms)",
            sw(3, 1000),
            &[
                (1500, 3, true, 0, 1500, None),
                (900, 1, false, 0, 1500, Some(834)),
                (0, 0, true, 0, 1500, None),
                (2333, 1, false, 0, 667, Some(1)),
                (2334, 1, true, 0, 1666, None),
            ],
        ),
    ];
    for (name, alg, steps) in cases {
        run(name, *alg, steps);
    }
}

// === quota ===

#[test]
fn quota_period_boundaries() {
    use QuotaPeriod::{Month, Year};
    // (period, instant, start, next start)
    let cases = [
        (Month, JAN_31_2024_LAST_MS, JAN_1_2024, FEB_1_2024),
        (Month, FEB_1_2024, FEB_1_2024, MAR_1_2024),
        (Month, FEB_29_2024_NOON, FEB_1_2024, MAR_1_2024),
        (
            Month,
            DEC_31_2024_LAST_MS,
            DEC_31_2024_LAST_MS - 31 * DAY + 1,
            JAN_1_2025,
        ),
        (Month, JAN_1_2025, JAN_1_2025, FEB_1_2025),
        (Month, FEB_28_2023_LAST_MS, FEB_1_2023, MAR_1_2023),
        (Month, FEB_29_2000, FEB_1_2000, MAR_1_2000),
        (Month, FEB_28_2100, FEB_1_2100, MAR_1_2100),
        (Month, 0, 0, 31 * DAY),
        (Year, JUN_15_2024_0830, JAN_1_2024, JAN_1_2025),
        (Year, DEC_31_2024_LAST_MS, JAN_1_2024, JAN_1_2025),
        (Year, JAN_1_2025, JAN_1_2025, JAN_1_2025 + 365 * DAY),
        (Year, FEB_29_2000, JAN_1_2000, JAN_1_2001),
        (Year, MAR_1_2100, JAN_1_2100, JAN_1_2101),
    ];
    for (period, at, start, next) in cases {
        assert_eq!(period.start_ms(at), start, "{period:?} start of {at}");
        assert_eq!(period.next_start_ms(at), next, "{period:?} next of {at}");
    }
    // Month lengths, leap rules included.
    assert_eq!(MAR_1_2024 - FEB_1_2024, 29 * DAY);
    assert_eq!(MAR_1_2023 - FEB_1_2023, 28 * DAY);
    assert_eq!(MAR_1_2100 - FEB_1_2100, 28 * DAY);
    assert_eq!(JUL_1_2024 - JUN_1_2024, 30 * DAY);
}

#[test]
fn quota_scenarios() {
    use QuotaPeriod::{Month, Year};
    let cases: &[(&str, Algorithm, &[Step])] = &[
        (
            "Jan 31 → Feb 1, leap Feb 29 → Mar 1 (3 per month)",
            quota(3, Month),
            &[
                (JAN_31_2024_LAST_MS, 3, true, 0, 1, None),
                (JAN_31_2024_LAST_MS, 1, false, 0, 1, Some(1)),
                (FEB_1_2024, 1, true, 2, 29 * DAY, None),
                (FEB_29_2024_NOON, 2, true, 0, DAY / 2, None),
                (
                    FEB_29_2024_NOON + 1,
                    1,
                    false,
                    0,
                    DAY / 2 - 1,
                    Some(DAY / 2 - 1),
                ),
                (MAR_1_2024, 0, true, 3, 0, None),
            ],
        ),
        (
            "Dec 31 → Jan 1 (3 per month)",
            quota(3, Month),
            &[
                (DEC_31_2024_LAST_MS, 3, true, 0, 1, None),
                (JAN_1_2025, 3, true, 0, 31 * DAY, None),
                (FEB_1_2025 - 1, 1, false, 0, 1, Some(1)),
            ],
        ),
        (
            "non-leap Feb 28 → Mar 1 (1 per month)",
            quota(1, Month),
            &[
                (FEB_28_2023_LAST_MS, 1, true, 0, 1, None),
                (MAR_1_2023, 1, true, 0, 31 * DAY, None),
            ],
        ),
        (
            "year boundary (2 per year)",
            quota(2, Year),
            &[
                (
                    JUN_15_2024_0830,
                    2,
                    true,
                    0,
                    JAN_1_2025 - JUN_15_2024_0830,
                    None,
                ),
                (DEC_31_2024_LAST_MS, 1, false, 0, 1, Some(1)),
                (JAN_1_2025, 1, true, 1, 365 * DAY, None),
            ],
        ),
        (
            "cost > limit never admitted, even in a new period",
            quota(3, Month),
            &[
                (FEB_1_2024, 4, false, 0, 0, None),
                (MAR_1_2024, 4, false, 0, 0, None),
            ],
        ),
        (
            "clock going backwards does not reopen the old period",
            quota(3, Month),
            &[
                (FEB_1_2024, 3, true, 0, 29 * DAY, None),
                (JAN_31_2024_LAST_MS, 1, false, 0, 29 * DAY, Some(29 * DAY)),
                (0, 0, true, 0, 29 * DAY, None),
                (MAR_1_2024, 1, true, 2, 31 * DAY, None),
            ],
        ),
    ];
    for (name, alg, steps) in cases {
        run(name, *alg, steps);
    }
}

// === state: serde, resets, limit changes ===

fn all_algorithms() -> Vec<(&'static str, Algorithm)> {
    vec![
        ("token bucket", tb(3, 1000, 5)),
        ("token bucket, other period", tb(3, 2000, 5)),
        ("sliding window", sw(10, 1000)),
        ("sliding window, other window", sw(10, 60_000)),
        ("monthly quota", quota(10, QuotaPeriod::Month)),
        ("yearly quota", quota(10, QuotaPeriod::Year)),
    ]
}

#[test]
fn state_round_trips_through_json() {
    for (name, alg) in all_algorithms() {
        let mut state = CounterState::new();
        let t0 = FEB_29_2024_NOON;
        for (dt, cost) in [(0, 2), (100, 1), (1_500, 3), (1_501, 1)] {
            alg.consume(&mut state, t0 + dt, cost);
        }
        let json = serde_json::to_string(&state).unwrap();
        let mut back: CounterState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state, "{name}: {json}");
        // Both go on identically.
        for (dt, cost) in [(1_600, 1), (2_900, 2), (70_000, 4)] {
            assert_eq!(
                alg.consume(&mut back, t0 + dt, cost),
                alg.consume(&mut state, t0 + dt, cost),
                "{name}"
            );
        }
        assert!(json.len() < 64, "{name}: {json} is not compact");
    }
}

#[test]
fn state_of_another_algorithm_is_reset_not_misread() {
    let t = FEB_29_2024_NOON;
    let algorithms = all_algorithms();
    for (writer_name, writer) in &algorithms {
        // Leave the writer's state as used as possible.
        let mut state = CounterState::new();
        writer.consume(&mut state, t, writer.limit());
        for (reader_name, reader) in &algorithms {
            if writer_name == reader_name {
                continue;
            }
            let mut s = state;
            let fresh = reader.consume(&mut CounterState::new(), t + 1, 1);
            let got = reader.consume(&mut s, t + 1, 1);
            assert_eq!(got, fresh, "{writer_name} state read by {reader_name}");
        }
    }
    // Unknown tag (another state version, a corrupted value) and an empty object.
    for json in [r#"{"v":12345,"t":0,"a":999999,"b":7}"#, "{}"] {
        let mut s: CounterState = serde_json::from_str(json).unwrap();
        for (name, alg) in &algorithms {
            let fresh = alg.consume(&mut CounterState::new(), t, 1);
            let mut copy = s;
            assert_eq!(alg.consume(&mut copy, t, 1), fresh, "{name} on {json}");
        }
        s.reset();
        assert!(s.is_empty());
    }
}

#[test]
fn changing_a_limit_keeps_what_was_used() {
    let t = FEB_1_2024;
    // (name, before, after, cost used before, expected remaining after a cost-1 consume)
    let cases = [
        (
            "quota raised",
            quota(10, QuotaPeriod::Month),
            quota(20, QuotaPeriod::Month),
            4,
            15,
        ),
        (
            "quota lowered below the usage",
            quota(10, QuotaPeriod::Month),
            quota(3, QuotaPeriod::Month),
            4,
            0,
        ),
        ("window limit raised", sw(10, 1000), sw(20, 1000), 4, 15),
        (
            "burst lowered clamps the tokens",
            tb(1, 1000, 10),
            tb(1, 1000, 3),
            4,
            2,
        ),
        (
            "burst raised keeps the tokens",
            tb(1, 1000, 10),
            tb(1, 1000, 30),
            4,
            5,
        ),
    ];
    for (name, before, after, used, remaining) in cases {
        let mut s = CounterState::new();
        before.consume(&mut s, t, used);
        let d = after.consume(&mut s, t, 1);
        assert_eq!(d.remaining, remaining, "{name}: {d:?}");
    }
}

// === leasing ===

/// Small seeded generator (SplitMix64): reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

#[test]
fn lease_is_consume_one_by_one() {
    // From many reachable states, lease(want) grants what single consumes would admit and
    // leaves the same state.
    for (name, alg) in all_algorithms() {
        let mut rng = Rng(7);
        let mut state = CounterState::new();
        let mut now = JAN_31_2024_LAST_MS - 5_000;
        for _ in 0..2_000 {
            now += rng.upto(700);
            alg.consume(&mut state, now, rng.upto(3));
            let want = rng.upto(12);
            let mut leased = state;
            let (granted, after) = alg.lease(&mut leased, now, want);
            let mut single = state;
            let mut admitted = 0;
            while admitted < want && alg.consume(&mut single, now, 1).allowed {
                admitted += 1;
            }
            assert_eq!(granted, admitted, "{name} at {now}, want {want}");
            assert_eq!(leased, single, "{name} at {now}, want {want}");
            assert_eq!(after.remaining, alg.peek(&leased, now).remaining, "{name}");
            assert_eq!(after.allowed, granted > 0 || want == 0, "{name}");
            if granted == 0 && want > 0 {
                let wait = after
                    .retry_after_ms
                    .expect("a unit is always admitted again");
                let mut later = leased;
                assert!(alg.consume(&mut later, now + wait, 1).allowed, "{name}");
            }
            state = leased;
        }
    }
}

/// What happened to the units: `(effective time counted at, signed units)`. Refunds are
/// recorded at the time of their lease, so the log is what was really spent when.
type Log = Vec<(u64, i64)>;

struct Lease {
    at: u64,
    left: u64,
}

/// Random interleavings of consume / lease / refund (and, in `refunds` mode, refunds of
/// leases old and new) with a clock that mostly moves forward, sometimes jumps, and sometimes
/// goes backwards. Without refunds, every decision is also checked against [`ExactModel`].
/// Returns the log of what was spent when.
fn simulate(alg: Algorithm, seed: u64, steps: usize, step_ms: u64, refunds: bool) -> Log {
    let mut rng = Rng(seed);
    let mut state = CounterState::new();
    let mut now = JAN_31_2024_LAST_MS - 10 * step_ms;
    // The effective time: the latest time any operation was given.
    let mut eff = 0;
    let mut log: Log = Vec::new();
    let mut leases: Vec<Lease> = Vec::new();
    let mut model = ExactModel::new(alg);
    for _ in 0..steps {
        match rng.upto(19) {
            0 => now = now.saturating_sub(rng.upto(step_ms * 3)),
            1 => now += rng.upto(step_ms * 40),
            _ => now += rng.upto(step_ms),
        }
        let op = rng.upto(9);
        if op <= 7 || (refunds && !leases.is_empty()) {
            eff = eff.max(now);
        }
        match op {
            0..=4 => {
                let cost = rng.upto(3);
                let d = alg.consume(&mut state, now, cost);
                if !refunds {
                    model.check(eff, cost, d.allowed);
                }
                if d.allowed && cost > 0 {
                    log.push((eff, cost as i64));
                }
            }
            5..=7 => {
                let want = rng.upto(6);
                let (granted, d) = alg.lease(&mut state, now, want);
                assert!(granted <= want);
                if !refunds {
                    model.check_lease(eff, want, granted);
                }
                assert_eq!(d.allowed, granted > 0 || want == 0);
                if granted > 0 {
                    log.push((eff, granted as i64));
                    // The time the units were counted at, for refund_leased: the state's
                    // effective time (later than `now` when the clock went backwards).
                    leases.push(Lease {
                        at: state.last_seen_ms(),
                        left: granted,
                    });
                }
                // Give part back at once (plain refund: same instant, same window).
                if refunds && granted > 0 && rng.upto(2) == 0 {
                    let n = rng.upto(granted);
                    alg.refund(&mut state, now, n);
                    log.push((eff, -(n as i64)));
                    if let Some(l) = leases.last_mut() {
                        l.left -= n;
                    }
                }
            }
            _ if refunds && !leases.is_empty() => {
                let i = rng.upto(leases.len() as u64 - 1) as usize;
                let lease = leases.swap_remove(i);
                let n = rng.upto(lease.left);
                alg.refund_leased(&mut state, now, lease.at, n);
                log.push((lease.at, -(n as i64)));
            }
            _ => {}
        }
        assert_eq!(
            state.last_seen_ms(),
            eff,
            "the clock went back in the state"
        );
    }
    log
}

/// An independent exact model for runs without refunds: recomputes each decision from the
/// log of admissions and checks the algorithm agreed (no over- and no under-admission).
struct ExactModel {
    alg: Algorithm,
    admitted: Vec<(u64, u64)>,
}

impl ExactModel {
    fn new(alg: Algorithm) -> Self {
        ExactModel {
            alg,
            admitted: Vec::new(),
        }
    }

    /// How many more single units the model admits at `t` (token bucket: not modelled here).
    fn room(&self, t: u64) -> Option<u64> {
        // `admitted` is in time order (effective times never decrease): scan back from the end.
        let in_range = |from: u64, to: u64| -> u64 {
            self.admitted
                .iter()
                .rev()
                .take_while(|(at, _)| *at >= from)
                .filter(|(at, _)| *at < to)
                .map(|(_, n)| n)
                .sum()
        };
        match self.alg {
            Algorithm::Quota { limit, period } => {
                let used = in_range(period.start_ms(t), u64::MAX);
                Some(limit.saturating_sub(used))
            }
            Algorithm::SlidingWindow {
                limit,
                window_ms: w,
            } => {
                let start = t - t % w;
                let cur = in_range(start, u64::MAX);
                let prev = if start >= w {
                    in_range(start - w, start)
                } else {
                    0
                };
                // Largest k with prev × (w − e) + (cur + k) × w ≤ limit × w.
                let budget = i128::from(limit) * i128::from(w)
                    - i128::from(prev) * i128::from(w - t % w)
                    - i128::from(cur) * i128::from(w);
                Some(u64::try_from(budget.max(0) / i128::from(w)).unwrap())
            }
            Algorithm::TokenBucket { .. } => None,
        }
    }

    fn check(&mut self, t: u64, cost: u64, allowed: bool) {
        if let Some(room) = self.room(t) {
            assert_eq!(
                allowed,
                cost <= room,
                "{:?} at {t}: cost {cost}, room {room}",
                self.alg
            );
        }
        if allowed && cost > 0 {
            self.admitted.push((t, cost));
        }
    }

    fn check_lease(&mut self, t: u64, want: u64, granted: u64) {
        if let Some(room) = self.room(t) {
            assert_eq!(granted, want.min(room), "{:?} lease at {t}", self.alg);
        }
        if granted > 0 {
            self.admitted.push((t, granted));
        }
    }
}

/// Net units per fixed bucket of time (`bucket(t)` → key).
fn per_bucket(log: &Log, bucket: impl Fn(u64) -> u64) -> std::collections::BTreeMap<u64, i64> {
    let mut m = std::collections::BTreeMap::new();
    for (t, n) in log {
        *m.entry(bucket(*t)).or_insert(0) += n;
    }
    m
}

#[test]
fn leasing_never_over_grants_quota() {
    for (alg, step_ms) in [
        (quota(20, QuotaPeriod::Month), DAY / 2),
        (quota(150, QuotaPeriod::Year), 4 * DAY),
        (quota(1, QuotaPeriod::Month), DAY),
    ] {
        let Algorithm::Quota { limit, period } = alg else {
            unreachable!()
        };
        for seed in 0..8 {
            for refunds in [false, true] {
                let log = simulate(alg, seed, 3_000, step_ms, refunds);
                for (start, net) in per_bucket(&log, |t| period.start_ms(t)) {
                    assert!(net >= 0, "{alg:?} seed {seed}: refunded more than leased");
                    assert!(
                        net <= limit as i64,
                        "{alg:?} seed {seed} refunds {refunds}: {net} in the period from {start}"
                    );
                }
            }
        }
    }
}

#[test]
fn leasing_never_over_grants_sliding_window() {
    for (alg, step_ms) in [
        (sw(10, 1000), 120),
        (sw(3, 250), 40),
        (sw(50, 60_000), 2_000),
    ] {
        let Algorithm::SlidingWindow {
            limit,
            window_ms: w,
        } = alg
        else {
            unreachable!()
        };
        for seed in 0..8 {
            for refunds in [false, true] {
                let log = simulate(alg, seed, 3_000, step_ms, refunds);
                let windows = per_bucket(&log, |t| t - t % w);
                for (start, net) in &windows {
                    assert!(
                        *net <= limit as i64,
                        "{alg:?} seed {seed}: {net} at {start}"
                    );
                }
                // Net per instant, in time order.
                let log: Vec<(u64, i64)> = per_bucket(&log, |t| t).into_iter().collect();
                // The weighted estimate, recomputed from what was really spent up to each
                // instant, never exceeds the limit.
                let mut cur = 0i128;
                for (i, &(t, n)) in log.iter().enumerate() {
                    let start = t - t % w;
                    if i == 0 || log[i - 1].0 < start {
                        cur = 0;
                    }
                    cur += i128::from(n);
                    let prev = windows.get(&(start.wrapping_sub(w))).copied().unwrap_or(0);
                    let est = i128::from(prev) * i128::from(w - t % w) + cur * i128::from(w);
                    assert!(
                        est <= i128::from(limit * w),
                        "{alg:?} seed {seed} refunds {refunds} at {t}"
                    );
                }
                // Against a true sliding log: fewer than 2 × limit in any interval of w.
                let mut from = 0;
                let mut sum = 0i64;
                for to in 0..log.len() {
                    sum += log[to].1;
                    while log[to].0 - log[from].0 >= w {
                        sum -= log[from].1;
                        from += 1;
                    }
                    assert!(
                        sum < 2 * limit as i64,
                        "{alg:?} seed {seed}: {sum} within {w} ms"
                    );
                }
            }
        }
    }
}

#[test]
fn leasing_never_over_grants_token_bucket() {
    for (alg, step_ms) in [
        (tb(3, 1000, 5), 150),
        (tb(1, 100, 1), 40),
        (tb(7, 60_000, 20), 3_000),
    ] {
        let Algorithm::TokenBucket {
            rate,
            period_ms,
            burst,
        } = alg
        else {
            unreachable!()
        };
        for seed in 0..6 {
            for refunds in [false, true] {
                let log = simulate(alg, seed, 1_500, step_ms, refunds);
                // Net per instant, in time order.
                let log: Vec<(u64, i64)> = per_bucket(&log, |t| t).into_iter().collect();
                // Net admitted within every [t_i, t_j] ≤ burst + rate × (t_j − t_i) / period.
                for i in 0..log.len() {
                    let mut net = 0i128;
                    for j in i..log.len() {
                        net += log[j].1 as i128;
                        let allowed = burst as i128 * period_ms as i128
                            + rate as i128 * (log[j].0 - log[i].0) as i128;
                        assert!(
                            net * period_ms as i128 <= allowed,
                            "{alg:?} seed {seed} refunds {refunds}: {net} in [{}, {}]",
                            log[i].0,
                            log[j].0
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn refunds_go_back_where_they_were_counted() {
    let t = 10_500; // in the window [10_000, 11_000)
                    // (name, algorithm, leased at, refunded at, want, expected remaining after refunding all)
    let cases = [
        ("bucket: tokens return", tb(1, 1000, 5), t, t, 5, 5),
        (
            "bucket: capped at burst",
            tb(1, 1000, 5),
            t,
            t + 4_000,
            5,
            5,
        ),
        ("window: same window", sw(5, 1000), t, t + 100, 5, 5),
        // Leased in the previous window: off the previous count (weighted 600/1000 at e=400).
        ("window: previous window", sw(5, 1000), t, t + 900, 5, 5),
        // Two windows on, the units no longer count anywhere.
        ("window: older", sw(5, 1000), t, t + 2_000, 5, 5),
        (
            "quota: same period",
            quota(5, QuotaPeriod::Month),
            FEB_1_2024,
            FEB_1_2024 + DAY,
            5,
            5,
        ),
        (
            "quota: next period drops it",
            quota(5, QuotaPeriod::Month),
            FEB_1_2024,
            MAR_1_2024,
            5,
            5,
        ),
    ];
    for (name, alg, leased_at, refund_at, want, remaining) in cases {
        let mut s = CounterState::new();
        let (granted, _) = alg.lease(&mut s, leased_at, want);
        assert_eq!(granted, want, "{name}");
        alg.refund_leased(&mut s, refund_at, leased_at, granted);
        assert_eq!(alg.peek(&s, refund_at).remaining, remaining, "{name}");
    }
    // A token bucket that refilled since the lease does not get those tokens twice: lease
    // all 5, spend the 1 token refilled a second later, give the 5 back: 4 left, exactly as
    // if the lease had never happened (not 5, which would let 5 + 5 through at once).
    let alg = tb(1, 1000, 5);
    let mut s = CounterState::new();
    alg.lease(&mut s, 0, 5);
    assert!(alg.consume(&mut s, 1000, 1).allowed);
    alg.refund_leased(&mut s, 1000, 0, 5);
    assert_eq!(alg.peek(&s, 1000).remaining, 4);
    let mut s = CounterState::new();
    alg.lease(&mut s, 0, 5);
    assert!(alg.consume(&mut s, 10_000, 5).allowed);
    alg.refund_leased(&mut s, 10_000, 0, 5);
    assert_eq!(alg.peek(&s, 10_000).remaining, 0);
    // A stale refund must not credit the current window.
    let alg = sw(5, 1000);
    let mut s = CounterState::new();
    alg.lease(&mut s, 10_500, 5);
    alg.consume(&mut s, 12_100, 5); // two windows on: the lease no longer counts
    alg.refund_leased(&mut s, 12_200, 10_500, 5);
    assert_eq!(alg.peek(&s, 12_200).remaining, 0);
    // Nor may a refund of a lease from the previous month credit this month.
    let alg = quota(5, QuotaPeriod::Month);
    let mut s = CounterState::new();
    alg.lease(&mut s, JAN_31_2024_LAST_MS, 5);
    alg.consume(&mut s, FEB_1_2024, 5);
    alg.refund_leased(&mut s, FEB_1_2024 + 1, JAN_31_2024_LAST_MS, 5);
    assert_eq!(alg.peek(&s, FEB_1_2024 + 1).remaining, 0);
    // A refund into a state of another algorithm is dropped (the state is reset).
    let mut s = CounterState::new();
    sw(5, 1000).lease(&mut s, t, 5);
    tb(1, 1000, 5).refund(&mut s, t, 5);
    assert_eq!(tb(1, 1000, 5).peek(&s, t).remaining, 5);
}

#[test]
fn validate_refuses_unusable_parameters() {
    let cases = [
        (tb(1, 1000, 1), true),
        (tb(0, 1000, 1), false),
        (tb(1, 0, 1), false),
        (tb(1, 1000, 0), false),
        (tb(1, 1 << 30, 1 << 23), false),
        (tb(1, 1 << 30, (1 << 23) - 1), true),
        (tb(1, u64::MAX, u64::MAX), false),
        (sw(1, 1), true),
        (sw(0, 1000), false),
        (sw(1, 0), false),
        (sw(1 << 53, 1000), false),
        (quota(1, QuotaPeriod::Year), true),
        (quota(0, QuotaPeriod::Month), false),
    ];
    for (alg, ok) in cases {
        assert_eq!(alg.validate().is_ok(), ok, "{alg:?}");
    }
    // Invalid parameters still never panic.
    for alg in [
        tb(0, 0, 0),
        tb(0, 1000, 5),
        sw(0, 0),
        quota(0, QuotaPeriod::Month),
    ] {
        let mut s = CounterState::new();
        for now in [0, 5, 3, u64::MAX] {
            let d = alg.consume(&mut s, now, 1);
            let _ = alg.lease(&mut s, now, 3);
            alg.refund(&mut s, now, 2);
            assert!(d.remaining <= d.limit.max(5), "{alg:?}: {d:?}");
        }
    }
    // A zero rate never refills: no retry, reset never.
    let mut s = CounterState::new();
    let alg = tb(0, 1000, 2);
    alg.consume(&mut s, 0, 2);
    let d = alg.consume(&mut s, 1_000_000, 1);
    assert_eq!(
        (d.allowed, d.retry_after_ms, d.reset_ms),
        (false, None, u64::MAX)
    );
}

#[test]
fn algorithm_serde_and_policy() {
    let cases = [
        (
            tb(10, 1000, 20),
            r#"{"kind":"token_bucket","rate":10,"period_ms":1000,"burst":20}"#,
            (20, 2),
        ),
        (
            sw(100, 60_000),
            r#"{"kind":"sliding_window","limit":100,"window_ms":60000}"#,
            (100, 60),
        ),
        (
            sw(5, 1_500),
            r#"{"kind":"sliding_window","limit":5,"window_ms":1500}"#,
            (5, 2),
        ),
        (
            quota(1000, QuotaPeriod::Month),
            r#"{"kind":"quota","limit":1000,"period":"month"}"#,
            (1000, 2_592_000),
        ),
        (
            quota(1000, QuotaPeriod::Year),
            r#"{"kind":"quota","limit":1000,"period":"year"}"#,
            (1000, 31_536_000),
        ),
    ];
    for (alg, json, policy) in cases {
        assert_eq!(serde_json::to_string(&alg).unwrap(), json);
        assert_eq!(serde_json::from_str::<Algorithm>(json).unwrap(), alg);
        assert_eq!(alg.policy_quota_window(), policy, "{json}");
    }
    let d = Decision {
        allowed: false,
        remaining: 0,
        limit: 5,
        reset_ms: 1500,
        retry_after_ms: Some(200),
    };
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Decision>(&json).unwrap(), d);
}

// === header fields ===

#[test]
fn header_fields_literal() {
    let cases: &[(&str, String, &str)] = &[
        (
            "policy, two",
            ratelimit_policy_field(&[("burst", 100, 60), ("daily", 1000, 86_400)]),
            r#""burst";q=100;w=60, "daily";q=1000;w=86400"#,
        ),
        ("policy, none", ratelimit_policy_field(&[]), ""),
        (
            "ratelimit, one",
            ratelimit_field("default", 42, 17),
            r#""default";r=42;t=17"#,
        ),
        (
            "ratelimit, several",
            ratelimit_list_field(&[("a", 0, 1), ("b", 9, 0)]),
            r#""a";r=0;t=1, "b";r=9;t=0"#,
        ),
        ("ratelimit, none", ratelimit_list_field(&[]), ""),
        (
            "escapes quote and backslash",
            ratelimit_field(r#"a"b\c"#, 1, 2),
            r#""a\"b\\c";r=1;t=2"#,
        ),
        (
            "sanitises non-ASCII and controls",
            ratelimit_field("día\n", 1, 2),
            r#""d_a_";r=1;t=2"#,
        ),
        (
            "clamps to the largest sf-integer",
            ratelimit_policy_field(&[("x", u64::MAX, 1_000_000_000_000_000)]),
            r#""x";q=999999999999999;w=999999999999999"#,
        ),
        (
            "empty name stays a valid string",
            ratelimit_field("", 1, 1),
            r#""";r=1;t=1"#,
        ),
        (
            "from a decision, reset rounded up",
            ratelimit_field_for(
                "minute",
                &Decision {
                    allowed: true,
                    remaining: 7,
                    limit: 10,
                    reset_ms: 16_001,
                    retry_after_ms: None,
                },
            ),
            r#""minute";r=7;t=17"#,
        ),
    ];
    for (name, got, want) in cases {
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn header_fields_parse_back_with_sfv() {
    use sfv::{BareItem, Integer, List, ListEntry, Parser};

    fn parse(field: &str) -> Vec<(String, Vec<(String, i64)>)> {
        let list: List = Parser::new(field).parse().expect(field);
        list.into_iter()
            .map(|entry| {
                let ListEntry::Item(item) = entry else {
                    panic!("inner list in {field}")
                };
                let BareItem::String(name) = item.bare_item else {
                    panic!("not a string in {field}")
                };
                let params = item
                    .params
                    .into_iter()
                    .map(|(k, v)| {
                        let BareItem::Integer(n) = v else {
                            panic!("not an integer in {field}")
                        };
                        (k.as_str().to_owned(), i64::from(n))
                    })
                    .collect();
                (name.as_str().to_owned(), params)
            })
            .collect()
    }

    let names = [
        "default",
        "per minute",
        r#"quo"te\"#,
        "tab\there",
        "ünï",
        "~!#$%&'()*+,-./:;<=>?@[]^_`{|}",
    ];
    for name in names {
        let policies = [(name, 100, 60), ("day", u64::MAX, 86_400)];
        let got = parse(&ratelimit_policy_field(&policies));
        let sane = sanitize_policy_name(name).into_owned();
        let max = i64::from(Integer::MAX);
        assert_eq!(
            got,
            vec![
                (sane.clone(), vec![("q".into(), 100), ("w".into(), 60)]),
                ("day".into(), vec![("q".into(), max), ("w".into(), 86_400)]),
            ],
            "{name:?}"
        );
        let got = parse(&ratelimit_field(name, 42, 17));
        assert_eq!(got, vec![(sane, vec![("r".into(), 42), ("t".into(), 17)])]);
    }
}

#[test]
fn policy_names_validate_or_sanitise() {
    // (name, validation, sanitised)
    let cases: &[(&str, Result<(), InvalidPolicyName>, &str)] = &[
        ("default", Ok(()), "default"),
        ("per minute", Ok(()), "per minute"),
        (r#"a"b\c"#, Ok(()), r#"a"b\c"#),
        ("", Err(InvalidPolicyName::Empty), ""),
        (
            "día",
            Err(InvalidPolicyName::Char {
                offset: 1, ch: 'í'
            }),
            "d_a",
        ),
        (
            "a\tb",
            Err(InvalidPolicyName::Char {
                offset: 1,
                ch: '\t',
            }),
            "a_b",
        ),
        (
            "x\u{7f}",
            Err(InvalidPolicyName::Char {
                offset: 1,
                ch: '\u{7f}',
            }),
            "x_",
        ),
        (
            "\r\n",
            Err(InvalidPolicyName::Char {
                offset: 0,
                ch: '\r',
            }),
            "__",
        ),
    ];
    for (name, valid, sane) in cases {
        assert_eq!(validate_policy_name(name), *valid, "{name:?}");
        assert_eq!(sanitize_policy_name(name), *sane, "{name:?}");
        if valid.is_ok() {
            assert!(matches!(
                sanitize_policy_name(name),
                std::borrow::Cow::Borrowed(_)
            ));
        }
    }
    assert!(InvalidPolicyName::Char {
        offset: 1, ch: 'í'
    }
    .to_string()
    .contains("printable ASCII"));
}

#[test]
fn legacy_fields_and_retry_after_from_the_most_restrictive() {
    let alg_minute = sw(10, 60_000);
    let alg_day = quota(3, QuotaPeriod::Month);
    let (mut minute, mut day) = (CounterState::new(), CounterState::new());
    let now = FEB_29_2024_NOON;
    let mut decisions = Vec::new();
    for _ in 0..4 {
        decisions = vec![
            ("minute", alg_minute.consume(&mut minute, now, 1)),
            ("month", alg_day.consume(&mut day, now, 1)),
        ];
    }
    // The month quota is exhausted and denies; the minute window still allows.
    let (name, binding) = most_restrictive(&decisions).unwrap();
    assert_eq!(*name, "month");
    assert!(!binding.allowed);
    let legacy = legacy_fields(binding);
    assert_eq!(
        legacy,
        [
            (X_RATELIMIT_LIMIT, "3".to_string()),
            (X_RATELIMIT_REMAINING, "0".to_string()),
            (X_RATELIMIT_RESET, "43200".to_string()),
        ]
    );
    assert_eq!(RETRY_AFTER, "retry-after");
    assert_eq!(retry_after_value(binding).as_deref(), Some("43200"));
    // Allowed or never admissible: no Retry-After.
    assert_eq!(retry_after_value(&decisions[0].1), None);
    let never = alg_day.consume(&mut day, now, 4);
    assert_eq!(retry_after_value(&never), None);
    // Rounded up: 1 ms → 1 s.
    let mut s = CounterState::new();
    let tight = tb(1, 1000, 1);
    tight.consume(&mut s, 0, 1);
    let d = tight.consume(&mut s, 999, 1);
    assert_eq!(retry_after_value(&d).as_deref(), Some("1"));
}
