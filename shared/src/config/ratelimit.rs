//! Compiling `policies.rate_limits` and `gateway.auth_failure_limit`. Each level's list is
//! checked once at its own path; a route's limits are the gateway's, the API's and its own,
//! a more specific limit replacing a broader one of the same name.

use super::compile::{is_name, Ctx};
use super::spec::{
    AuthFailureLimitSpec, FailureModeSpec, QuotaPeriodSpec, RateAlgorithmSpec, RateKeySpec,
    RateLimitSpec, RateModeSpec,
};
use crate::ratelimit::headers::validate_policy_name;
use crate::ratelimit::{
    Algorithm, AuthFailureLimit, FailureMode, QuotaPeriod, RateKey, RateLimit, RateMode,
};
use std::collections::HashSet;

/// The most counters one key may be split over.
pub const MAX_SHARDS: u32 = 64;
/// The longest a request may wait for capacity.
pub const MAX_QUEUE_MS: u64 = 5_000;

/// One level's limits by name; `None`: turned off here (`"mode": "off"`).
pub(super) type RateLevel = Vec<(String, Option<RateLimit>)>;

fn failure(m: FailureModeSpec) -> FailureMode {
    match m {
        FailureModeSpec::Open => FailureMode::Open,
        FailureModeSpec::Closed => FailureMode::Closed,
    }
}

fn window_ms(spec: &RateLimitSpec, path: &str, cx: &mut Ctx) -> Option<u64> {
    match spec.window_s {
        Some(w @ 1..=31_622_400) => Some(w * 1000),
        Some(_) => {
            cx.err(
                format!("{path}.window_s"),
                "a window of 1 second to 366 days",
            );
            None
        }
        None => {
            cx.err(
                format!("{path}.window_s"),
                "this algorithm needs a window (seconds)",
            );
            None
        }
    }
}

fn algorithm(spec: &RateLimitSpec, limit: u64, path: &str, cx: &mut Ctx) -> Option<Algorithm> {
    let alg = match spec.algorithm {
        RateAlgorithmSpec::TokenBucket => Algorithm::TokenBucket {
            rate: limit,
            period_ms: window_ms(spec, path, cx)?,
            burst: spec.burst.unwrap_or(limit),
        },
        RateAlgorithmSpec::SlidingWindow => Algorithm::SlidingWindow {
            limit,
            window_ms: window_ms(spec, path, cx)?,
        },
        RateAlgorithmSpec::Quota => Algorithm::Quota {
            limit,
            period: match spec.period {
                Some(QuotaPeriodSpec::Month) => QuotaPeriod::Month,
                Some(QuotaPeriodSpec::Year) => QuotaPeriod::Year,
                None => {
                    cx.err(format!("{path}.period"), "a quota needs `month` or `year`");
                    return None;
                }
            },
        },
    };
    if let Err(e) = alg.validate() {
        cx.err(path, e.to_string());
        return None;
    }
    Some(alg)
}

/// Checks one level's `rate_limits` (at `path`, e.g. `$.apis[0].policies.rate_limits`);
/// `scope` names the level in counter keys.
pub(super) fn rate_level(
    specs: &[RateLimitSpec],
    scope: &str,
    path: &str,
    cx: &mut Ctx,
) -> RateLevel {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let p = format!("{path}[{i}]");
        if !is_name(&spec.name) || validate_policy_name(&spec.name).is_err() {
            cx.err(
                format!("{p}.name"),
                "names are 1-64 characters of letters, digits, '.', '_', '-'",
            );
        }
        if !seen.insert(spec.name.clone()) {
            cx.err(
                format!("{p}.name"),
                format!("{:?} is listed twice", spec.name),
            );
        }
        if spec.mode == RateModeSpec::Off {
            out.push((spec.name.clone(), None));
            continue;
        }
        if spec.limit == 0 {
            cx.err(format!("{p}.limit"), "at least 1");
        }
        match spec.algorithm {
            RateAlgorithmSpec::Quota if spec.window_s.is_some() => {
                cx.err(format!("{p}.window_s"), "a quota's window is its `period`");
            }
            RateAlgorithmSpec::TokenBucket | RateAlgorithmSpec::SlidingWindow
                if spec.period.is_some() =>
            {
                cx.err(format!("{p}.period"), "only quotas have a calendar period");
            }
            _ => {}
        }
        if spec.burst.is_some() && spec.algorithm != RateAlgorithmSpec::TokenBucket {
            cx.err(format!("{p}.burst"), "only a token bucket has a burst");
        }
        if !spec.plans.is_empty() && spec.key != RateKeySpec::Subscription {
            cx.err(
                format!("{p}.plans"),
                "per-plan limits need `key: subscription`",
            );
        }
        let shards = spec.shards.unwrap_or(1);
        if !(1..=MAX_SHARDS).contains(&shards) {
            cx.err(format!("{p}.shards"), format!("1 to {MAX_SHARDS}"));
        }
        if spec.lease.is_some() && spec.mode != RateModeSpec::Approximate {
            cx.err(format!("{p}.lease"), "only approximate mode leases");
        }
        if spec.lease == Some(0) {
            cx.err(format!("{p}.lease"), "at least 1");
        }
        let queue_ms = spec.queue_ms.unwrap_or(0);
        if queue_ms > MAX_QUEUE_MS {
            cx.err(format!("{p}.queue_ms"), format!("at most {MAX_QUEUE_MS}"));
        }
        let Some(base) = algorithm(spec, spec.limit.max(1), &p, cx) else {
            continue;
        };
        // Each shard enforces limit / shards (rounded down): at least 1 each, or the key would
        // admit more than its limit.
        let too_small = |a: &Algorithm| match *a {
            Algorithm::TokenBucket { rate, burst, .. } => rate.min(burst) < u64::from(shards),
            _ => a.limit() < u64::from(shards),
        };
        if (2..=MAX_SHARDS).contains(&shards) && too_small(&base) {
            cx.err(
                format!("{p}.shards"),
                "more shards than the limit (and burst) can be split over: each needs at least 1",
            );
        }
        let plans = spec
            .plans
            .iter()
            .filter_map(|(plan, &limit)| {
                if limit == 0 {
                    cx.err(format!("{p}.plans.{plan}"), "at least 1");
                    return None;
                }
                let alg = algorithm(spec, limit, &p, cx)?;
                if shards > 1 && too_small(&alg) {
                    cx.err(
                        format!("{p}.plans.{plan}"),
                        "less than the shards it is split over",
                    );
                }
                Some((plan.clone(), alg))
            })
            .collect();
        let lease = spec.lease.unwrap_or_else(|| (base.limit() / 100).max(1));
        out.push((
            spec.name.clone(),
            Some(RateLimit {
                name: spec.name.clone(),
                scope: scope.to_string(),
                key: match spec.key {
                    RateKeySpec::Subscription => RateKey::Subscription,
                    RateKeySpec::Application => RateKey::Application,
                    RateKeySpec::Api => RateKey::Api,
                    RateKeySpec::Route => RateKey::Route,
                    RateKeySpec::Ip => RateKey::Ip,
                },
                algorithm: base,
                plans,
                mode: match spec.mode {
                    RateModeSpec::Approximate => RateMode::Approximate,
                    RateModeSpec::Shadow => RateMode::Shadow,
                    _ => RateMode::Exact,
                },
                on_error: failure(spec.on_error),
                shards: shards.clamp(1, MAX_SHARDS),
                lease,
                queue_ms,
            }),
        ));
    }
    out
}

/// A route's limits: the broadest level's first, each replaced by a more specific level's
/// limit of the same name (or removed by one that is `off`), then the more specific levels'
/// new limits.
pub(super) fn route_limits(levels: [&RateLevel; 3]) -> Vec<RateLimit> {
    let mut merged: Vec<(String, Option<RateLimit>)> = Vec::new();
    for level in levels {
        for (name, limit) in level {
            match merged.iter_mut().find(|(n, _)| n == name) {
                Some(slot) => slot.1 = limit.clone(),
                None => merged.push((name.clone(), limit.clone())),
            }
        }
    }
    merged.into_iter().filter_map(|(_, l)| l).collect()
}

/// Checks `gateway.auth_failure_limit`.
pub(super) fn auth_failure_limit(
    spec: &AuthFailureLimitSpec,
    cx: &mut Ctx,
) -> Option<AuthFailureLimit> {
    let path = "$.gateway.auth_failure_limit";
    if spec.limit == 0 {
        cx.err(format!("{path}.limit"), "at least 1");
    }
    if !(1..=86_400).contains(&spec.window_s) {
        cx.err(format!("{path}.window_s"), "1 second to 1 day");
        return None;
    }
    let algorithm = Algorithm::SlidingWindow {
        limit: spec.limit.max(1),
        window_ms: spec.window_s * 1000,
    };
    Some(AuthFailureLimit {
        algorithm,
        on_error: failure(spec.on_error),
    })
}
