//! Compiled rate limits (from `policies.rate_limits` and `gateway.auth_failure_limit`), and
//! the counter keys they count under.

use super::Algorithm;
use std::net::IpAddr;

/// What a limit counts separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    /// Per authorizing subscription (skipped when none).
    Subscription,
    /// Per client application (skipped when unknown).
    Application,
    /// Per API.
    Api,
    /// Per route.
    Route,
    /// Per client address (IPv6 per /64; skipped when unknown).
    Ip,
}

impl RateKey {
    /// The config name.
    pub fn as_str(self) -> &'static str {
        match self {
            RateKey::Subscription => "subscription",
            RateKey::Application => "application",
            RateKey::Api => "api",
            RateKey::Route => "route",
            RateKey::Ip => "ip",
        }
    }
}

/// How a limit is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateMode {
    /// One atomic counter call per request.
    Exact,
    /// Leased blocks spent in the isolate, where isolates are reused
    /// ([`crate::platform::Instances::reuses_instances`]: Workers). Where every request runs in
    /// a fresh instance (Spin) no lease is kept: each request takes exactly its one unit with
    /// one counter call, as [`RateMode::Exact`] does, because the unspent units of a block
    /// would die with the instance. (On Spin without Redis the counter itself is approximate:
    /// see spin/README.md.)
    Approximate,
    /// Counted and logged; never blocks.
    Shadow,
}

/// What to do when a counter cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Let the request through (logged).
    Open,
    /// Answer 503 `rate_limit_unavailable` (logged).
    Closed,
}

/// One rate limit of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    /// Its name (headers, logs).
    pub name: String,
    /// Where it was defined (`gateway`, `api:orders`, `route:orders/list`): part of the
    /// counter key, so a limit overridden on one route counts apart from the broader one.
    pub scope: String,
    /// What is counted separately.
    pub key: RateKey,
    /// The algorithm with the default limit.
    pub algorithm: Algorithm,
    /// Per rate plan (subscription keys): the algorithm with that plan's limit.
    pub plans: Vec<(String, Algorithm)>,
    /// Exact, approximate or shadow.
    pub mode: RateMode,
    /// Counter unreachable: open or closed.
    pub on_error: FailureMode,
    /// Counters the key is split over (≥ 1); each gets `limit / shards`.
    pub shards: u32,
    /// Approximate mode: units leased at once (only where instances are reused; one unit per
    /// request otherwise).
    pub lease: u64,
    /// Wait up to this long for capacity before denying.
    pub queue_ms: u64,
}

impl RateLimit {
    /// The algorithm for a caller on `rate_plan` (the plan's limit if listed), split for
    /// `shards` counters.
    pub fn algorithm_for(&self, rate_plan: Option<&str>) -> Algorithm {
        let base = rate_plan
            .and_then(|plan| self.plans.iter().find(|(p, _)| p == plan))
            .map_or(self.algorithm, |(_, a)| *a);
        base.split(self.shards)
    }

    /// The counter key for this limit and a key value (the caller decides that the request
    /// has one). `shard` is in `0..shards`.
    pub fn counter_key(&self, value: &str, shard: u32) -> String {
        let mut key = format!(
            "rl|{}|{}|{}|{}",
            self.scope,
            self.name,
            self.key.as_str(),
            value
        );
        if self.shards > 1 {
            key.push_str(&format!("|{shard}"));
        }
        key
    }
}

/// The per-address limit on failed authentications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailureLimit {
    /// A sliding window of failures.
    pub algorithm: Algorithm,
    /// Counter unreachable: open or closed.
    pub on_error: FailureMode,
}

impl AuthFailureLimit {
    /// The counter key of a client address.
    pub fn counter_key(ip: IpAddr) -> String {
        format!("authfail|ip|{}", ip_key(ip))
    }
}

/// A client address as a counter key value: IPv4 as is (also when written IPv4-mapped,
/// `::ffff:a.b.c.d`), IPv6 as its /64 (a client usually holds a whole /64, so counting single
/// IPv6 addresses would be trivially evaded).
pub fn ip_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => a
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        IpAddr::V6(a) => {
            let s = a.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

impl Algorithm {
    /// This algorithm with its limit (and burst) divided over `shards` counters (rounded
    /// down, at least 1). `shards` ≤ 1 gives it unchanged.
    pub fn split(self, shards: u32) -> Algorithm {
        if shards <= 1 {
            return self;
        }
        let part = |n: u64| (n / u64::from(shards)).max(1);
        match self {
            Algorithm::TokenBucket {
                rate,
                period_ms,
                burst,
            } => Algorithm::TokenBucket {
                rate: part(rate),
                period_ms,
                burst: part(burst),
            },
            Algorithm::SlidingWindow { limit, window_ms } => Algorithm::SlidingWindow {
                limit: part(limit),
                window_ms,
            },
            Algorithm::Quota { limit, period } => Algorithm::Quota {
                limit: part(limit),
                period,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_per_64_and_splits_round_down() {
        let table = [
            ("192.0.2.7", "192.0.2.7"),
            ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
            ("2001:db8:1:2::9", "2001:db8:1:2::/64"),
            ("::ffff:203.0.113.1", "203.0.113.1"),
        ];
        for (ip, want) in table {
            assert_eq!(ip_key(ip.parse().expect("ip")), want);
        }
        let a = Algorithm::SlidingWindow {
            limit: 100,
            window_ms: 1000,
        };
        assert_eq!(
            a.split(3),
            Algorithm::SlidingWindow {
                limit: 33,
                window_ms: 1000
            }
        );
        assert_eq!(a.split(1), a);
    }
}
