//! The rate-limit stage: runs a route's limits for one request against the shared counters
//! ([`crate::platform::Counters`]: Durable Objects on Workers), and keeps the isolate's leases
//! for approximate mode.

use super::policy::{ip_key, AuthFailureLimit, FailureMode, RateKey, RateLimit, RateMode};
use super::{Algorithm, Decision};
use crate::access_log::event_line;
use crate::bounded::BoundedMap;
use crate::platform::{Clock, CounterCall, CounterOp, Counters, Instances, Log, Random};
use crate::problem::{ErrorCode, LocalReply};
use serde_json::json;
use std::cell::Cell;
use std::net::IpAddr;

/// Leases kept per isolate (approximate mode), one per counter key.
const MAX_LEASES: usize = 4096;
/// How long an isolate may spend a lease before giving back what is left: the `L` of the
/// error bound (see the module doc of [`super`]).
pub const LEASE_MS: u64 = 1_000;
/// Quota use that triggers a warning header and a log event, in percent.
pub const WARN_AT: [u64; 2] = [80, 90];

/// A unit an admitting limit took for the request, given back if a later limit refuses it.
#[derive(Debug, Clone)]
enum Spent {
    /// Consumed from the counter `key` (exact mode) at the counter's time `at_ms`.
    Counter {
        key: String,
        algorithm: Algorithm,
        at_ms: u64,
    },
    /// Spent from this isolate's lease on `key` (approximate mode).
    Lease { key: String },
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    left: u64,
    at_ms: u64,
    until_ms: u64,
    decision: Decision,
}

/// The isolate's rate-limit state: approximate-mode leases and the count of counter failures.
pub struct Limiter {
    leases: BoundedMap<String, Lease>,
    failures: Cell<u64>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            leases: BoundedMap::new(MAX_LEASES),
            failures: Cell::new(0),
        }
    }
}

/// Who and what a request is, for the limits' keys.
#[derive(Debug, Clone, Copy)]
pub struct RateRequest<'a> {
    /// The API.
    pub api: &'a str,
    /// The route.
    pub route: &'a str,
    /// The authorizing subscription.
    pub subscription: Option<&'a str>,
    /// Its plan's rate plan.
    pub rate_plan: Option<&'a str>,
    /// The client application.
    pub application: Option<&'a str>,
    /// The client address.
    pub client_ip: Option<IpAddr>,
    /// A priority subscription: limits are not applied.
    pub priority: bool,
    /// The request id (logs).
    pub request_id: &'a str,
}

/// One limit's decision for a request.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitResult {
    /// The limit's name.
    pub name: String,
    /// The policy's quota and window (seconds) for `RateLimit-Policy`.
    pub quota: (u64, u64),
    /// The decision.
    pub decision: Decision,
    /// Quota use crossed 80/90 % with this request (percent).
    pub warning: Option<u64>,
    /// A calendar quota (warned about from 80 % use).
    pub is_quota: bool,
}

/// The outcome of the stage for an admitted request: the enforced limits' decisions (for the
/// response headers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RateOutcome {
    /// Enforced limits, in config order.
    pub results: Vec<LimitResult>,
}

impl Limiter {
    /// Counter calls that failed in this isolate so far.
    pub fn failures(&self) -> u64 {
        self.failures.get()
    }

    /// Runs `limits` for one request, in order; stops at the first enforced deny. A request
    /// refused by a later limit was never served, so the units the earlier enforced limits took
    /// for it are given back (a refund call per exact limit, the unit back into the lease for
    /// approximate ones): a client over one limit does not use up the others. Shadow limits
    /// keep their count (they report what they would have done).
    ///
    /// Approximate limits lease blocks of units only where instances are reused
    /// ([`Instances::reuses_instances`]); on fresh instances they take one unit per request
    /// from the counter, as exact mode does (see [`RateMode::Approximate`]).
    ///
    /// Errors: 429 `rate_limited` (with `Retry-After` and the rate-limit headers), or 503
    /// `rate_limit_unavailable` when a fail-closed limit's counter cannot be reached. Shadow
    /// denies and counter failures are logged.
    pub async fn check<P: Counters + Clock + Log + Random + Instances>(
        &self,
        p: &P,
        limits: &[RateLimit],
        req: &RateRequest<'_>,
    ) -> Result<RateOutcome, LocalReply> {
        let mut out = RateOutcome::default();
        if req.priority {
            return Ok(out);
        }
        // One request waits at most MAX_QUEUE_MS in all, however many limits queue it.
        let mut queue_left = crate::ratelimit::MAX_QUEUE_MS;
        let mut spent: Vec<Spent> = Vec::new();
        for limit in limits {
            let value = match limit.key {
                RateKey::Subscription => req.subscription.map(str::to_string),
                RateKey::Application => req.application.map(str::to_string),
                RateKey::Api => Some(req.api.to_string()),
                RateKey::Route => Some(format!("{}/{}", req.api, req.route)),
                RateKey::Ip => req.client_ip.map(ip_key),
            };
            let Some(value) = value else { continue };
            let shard = if limit.shards > 1 {
                (p.next_u64() % u64::from(limit.shards)) as u32
            } else {
                0
            };
            let key = limit.counter_key(&value, shard);
            let algorithm = limit.algorithm_for(req.rate_plan);
            let (decision, taken) = match self
                .decide(p, limit, &key, algorithm, &mut queue_left)
                .await
            {
                Ok(d) => d,
                Err(error) => {
                    let n = self.failures.get() + 1;
                    self.failures.set(n);
                    p.log_line(&event_line(
                        "rate_limit_unavailable",
                        p.now_ms(),
                        json!({"limit": limit.name, "key": limit.key.as_str(),
                            "on_error": if limit.on_error == FailureMode::Open { "open" } else { "closed" },
                            "error": error, "failures": n, "request_id": req.request_id}),
                    ));
                    match limit.on_error {
                        FailureMode::Open => continue,
                        FailureMode::Closed => {
                            self.give_back(p, &spent, req).await;
                            return Err(LocalReply::new(
                                ErrorCode::RateLimitUnavailable,
                                format!("limit {}: {error}", limit.name),
                            ));
                        }
                    }
                }
            };
            let warning = quota_warning(&algorithm, &decision);
            if let Some(pct) = warning {
                p.log_line(&event_line(
                    "quota_warning",
                    p.now_ms(),
                    json!({"limit": limit.name, "key": limit.key.as_str(), "value": value,
                        "used_percent": pct, "remaining": decision.remaining,
                        "request_id": req.request_id}),
                ));
            }
            if limit.mode != RateMode::Shadow {
                spent.extend(taken);
            }
            if limit.mode == RateMode::Shadow {
                if !decision.allowed {
                    p.log_line(&event_line(
                        "rate_limit_shadow",
                        p.now_ms(),
                        json!({"limit": limit.name, "key": limit.key.as_str(), "value": value,
                            "request_id": req.request_id}),
                    ));
                }
                continue;
            }
            let result = LimitResult {
                name: limit.name.clone(),
                // With shards, the stated policy is the shard's (what this counter enforces).
                quota: algorithm.policy_quota_window(),
                decision,
                warning,
                is_quota: matches!(algorithm, Algorithm::Quota { .. }),
            };
            let denied = !result.decision.allowed;
            out.results.push(result);
            if denied {
                self.give_back(p, &spent, req).await;
                let mut reply = LocalReply::new(
                    ErrorCode::RateLimited,
                    format!("limit {} ({} {})", limit.name, limit.key.as_str(), value),
                )
                .with_public_detail(format!("rate limit {} exceeded", limit.name));
                for (n, v) in response_headers(&out) {
                    reply = reply.with_header(n, v);
                }
                return Err(reply);
            }
        }
        Ok(out)
    }

    /// One limit's decision: a counter call (exact, shadow, and approximate on fresh
    /// instances), or a local lease (approximate where instances are reused); when denied, an
    /// enforced limit waits up to its `queue_ms` (and what is left of the request's
    /// `queue_left`) for capacity, once. With the decision, the unit it took (when it
    /// admitted). Errors: the counter's.
    async fn decide<P: Counters + Clock + Instances>(
        &self,
        p: &P,
        limit: &RateLimit,
        key: &str,
        algorithm: Algorithm,
        queue_left: &mut u64,
    ) -> Result<(Decision, Option<Spent>), String> {
        let mut waited = false;
        loop {
            // A lease outlives the request only in an instance that serves the next one: on a
            // fresh instance per request (Spin) the unspent units of a block would die with
            // it, so a limit of 100 leased 10 at a time would admit about 10. There the
            // request takes its one unit from the counter (and refunds it to the counter).
            let leases = limit.mode == RateMode::Approximate && p.reuses_instances();
            let (decision, taken) = match limit.mode {
                RateMode::Approximate if leases => {
                    let d = self.spend_lease(p, limit, key, algorithm).await?;
                    let taken = d.allowed.then(|| Spent::Lease {
                        key: key.to_string(),
                    });
                    (d, taken)
                }
                RateMode::Approximate | RateMode::Exact | RateMode::Shadow => {
                    let call = CounterCall {
                        key: key.to_string(),
                        algorithm,
                        op: CounterOp::Consume { cost: 1 },
                    };
                    let reply = p.counter(&call).await.map_err(|e| e.0)?;
                    let taken = reply.decision.allowed.then(|| Spent::Counter {
                        key: key.to_string(),
                        algorithm,
                        at_ms: reply.at_ms,
                    });
                    (reply.decision, taken)
                }
            };
            match decision.retry_after_ms {
                Some(ms)
                    if !decision.allowed
                        && !waited
                        && limit.mode != RateMode::Shadow
                        && ms <= limit.queue_ms.min(*queue_left) =>
                {
                    waited = true;
                    *queue_left -= ms;
                    p.sleep_ms(ms).await;
                }
                _ => return Ok((decision, taken)),
            }
        }
    }

    /// Gives back the units `spent` for a request a later limit refused. A refund that fails
    /// is logged and dropped (the unit stays counted: the safe side). A lease that has since
    /// ended gets nothing (its rest was already given back without this unit).
    async fn give_back<P: Counters + Log + Clock>(
        &self,
        p: &P,
        spent: &[Spent],
        req: &RateRequest<'_>,
    ) {
        for s in spent {
            match s {
                Spent::Counter {
                    key,
                    algorithm,
                    at_ms,
                } => {
                    let call = CounterCall {
                        key: key.clone(),
                        algorithm: *algorithm,
                        op: CounterOp::Refund {
                            n: 1,
                            leased_at_ms: *at_ms,
                        },
                    };
                    if let Err(e) = p.counter(&call).await {
                        p.log_line(&event_line(
                            "rate_limit_refund_failed",
                            p.now_ms(),
                            json!({"key": key, "error": e.0, "request_id": req.request_id}),
                        ));
                    }
                }
                Spent::Lease { key } => {
                    if let Some(mut lease) = self.leases.get(key) {
                        lease.left = lease.left.saturating_add(1);
                        self.leases.insert(key.clone(), lease);
                    }
                }
            }
        }
    }

    /// Approximate mode: spends one unit of this isolate's lease on `key`, leasing a new block
    /// (and giving back an expired one's rest) when needed.
    async fn spend_lease<P: Counters + Clock>(
        &self,
        p: &P,
        limit: &RateLimit,
        key: &str,
        algorithm: Algorithm,
    ) -> Result<Decision, String> {
        let now = p.now_ms();
        let key_s = key.to_string();
        if let Some(mut lease) = self.leases.get(&key_s) {
            if now < lease.until_ms && lease.left > 0 {
                lease.left -= 1;
                self.leases.insert(key_s, lease);
                let mut d = lease.decision;
                d.remaining = d.remaining.saturating_add(lease.left);
                return Ok(d);
            }
            self.leases.remove(&key_s);
            if lease.left > 0 {
                let refund = CounterCall {
                    key: key_s.clone(),
                    algorithm,
                    op: CounterOp::Refund {
                        n: lease.left,
                        leased_at_ms: lease.at_ms,
                    },
                };
                p.counter(&refund).await.map_err(|e| e.0)?;
            }
        }
        let call = CounterCall {
            key: key_s.clone(),
            algorithm,
            op: CounterOp::Lease {
                want: limit.lease.max(1),
            },
        };
        let reply = p.counter(&call).await.map_err(|e| e.0)?;
        if reply.granted == 0 {
            return Ok(reply.decision);
        }
        let mut lease = Lease {
            left: reply.granted - 1,
            at_ms: reply.at_ms,
            until_ms: now.saturating_add(LEASE_MS.min(reply.decision.reset_ms.max(1))),
            decision: Decision {
                allowed: true,
                ..reply.decision
            },
        };
        // Concurrent requests of this isolate that all found no lease each leased a block:
        // keep every block's units (one lease with the earliest time, so a refund never
        // credits a window the units were not counted in).
        if let Some(other) = self.leases.get(&key_s) {
            lease.left = lease.left.saturating_add(other.left);
            lease.at_ms = lease.at_ms.min(other.at_ms);
            lease.until_ms = lease.until_ms.min(other.until_ms);
        }
        self.leases.insert(key_s, lease);
        let mut d = lease.decision;
        d.remaining = d.remaining.saturating_add(lease.left);
        Ok(d)
    }

    /// Brute-force protection, before authentication: counts this attempt against the client
    /// address's limit on failed authentications, atomically (so concurrent guesses cannot all
    /// pass a check before any is counted). The caller gives the unit back with
    /// [`Limiter::forgive_auth_attempt`] when the attempt did not fail. Returns the counter's
    /// time of the count (for the refund), or None when the counter could not be reached and
    /// the limit fails open.
    ///
    /// Errors: 429 `too_many_auth_failures` with `Retry-After` (when the next attempt will be
    /// counted again), 503 `rate_limit_unavailable` when the counter cannot be reached and the
    /// limit fails closed.
    pub async fn admit_auth_attempt<P: Counters + Clock + Log>(
        &self,
        p: &P,
        limit: &AuthFailureLimit,
        ip: IpAddr,
    ) -> Result<Option<u64>, LocalReply> {
        let call = CounterCall {
            key: AuthFailureLimit::counter_key(ip),
            algorithm: limit.algorithm,
            op: CounterOp::Consume { cost: 1 },
        };
        match p.counter(&call).await {
            Ok(reply) if reply.decision.allowed => Ok(Some(reply.at_ms)),
            Ok(reply) => {
                let d = reply.decision;
                let wait =
                    super::headers::reset_seconds(d.retry_after_ms.unwrap_or(d.reset_ms)).max(1);
                Err(LocalReply::new(
                    ErrorCode::TooManyAuthFailures,
                    format!("{ip}: {} failed authentications", d.limit),
                )
                .with_header("retry-after", wait.to_string()))
            }
            Err(e) => self
                .counter_failure(p, "auth_failures", limit.on_error, &e.0)
                .map(|()| None),
        }
    }

    /// Gives back the unit [`Limiter::admit_auth_attempt`] counted, for an attempt that did not
    /// fail (authenticated, or the gateway could not check). Never fails the request; a
    /// counter error is logged.
    pub async fn forgive_auth_attempt<P: Counters + Clock + Log>(
        &self,
        p: &P,
        limit: &AuthFailureLimit,
        ip: IpAddr,
        counted_at_ms: u64,
    ) {
        let call = CounterCall {
            key: AuthFailureLimit::counter_key(ip),
            algorithm: limit.algorithm,
            op: CounterOp::Refund {
                n: 1,
                leased_at_ms: counted_at_ms,
            },
        };
        if let Err(e) = p.counter(&call).await {
            let _ = self.counter_failure(p, "auth_failures", FailureMode::Open, &e.0);
        }
    }

    fn counter_failure<P: Clock + Log>(
        &self,
        p: &P,
        limit: &str,
        mode: FailureMode,
        error: &str,
    ) -> Result<(), LocalReply> {
        let n = self.failures.get() + 1;
        self.failures.set(n);
        p.log_line(&event_line(
            "rate_limit_unavailable",
            p.now_ms(),
            json!({"limit": limit, "error": error, "failures": n,
                "on_error": if mode == FailureMode::Open { "open" } else { "closed" }}),
        ));
        match mode {
            FailureMode::Open => Ok(()),
            FailureMode::Closed => Err(LocalReply::new(
                ErrorCode::RateLimitUnavailable,
                format!("limit {limit}: {error}"),
            )),
        }
    }
}

/// For quotas: the 80/90 % threshold this request crossed, if any.
fn quota_warning(algorithm: &Algorithm, d: &Decision) -> Option<u64> {
    if !matches!(algorithm, Algorithm::Quota { .. }) || !d.allowed || d.limit == 0 {
        return None;
    }
    let used_after = d.limit.saturating_sub(d.remaining);
    let used_before = used_after.saturating_sub(1);
    WARN_AT
        .iter()
        .rev()
        .find(|&&pct| {
            let at = (u128::from(d.limit) * u128::from(pct)).div_ceil(100);
            u128::from(used_before) < at && u128::from(used_after) >= at
        })
        .copied()
}

/// The response headers for the enforced limits: `RateLimit-Policy` (every limit),
/// `RateLimit` and `X-RateLimit-*` (the most restrictive), `Retry-After` when denied, and
/// `x-edgegate-quota-warning` when a quota is at 80 % or more. Empty when no limit applied.
pub fn response_headers(outcome: &RateOutcome) -> Vec<(&'static str, String)> {
    use super::headers::{
        legacy_fields, ratelimit_field_for, ratelimit_policy_field, retry_after_value, RATELIMIT,
        RATELIMIT_POLICY, RETRY_AFTER,
    };
    let mut out = Vec::new();
    if outcome.results.is_empty() {
        return out;
    }
    let policies: Vec<(&str, u64, u64)> = outcome
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.quota.0, r.quota.1))
        .collect();
    out.push((RATELIMIT_POLICY, ratelimit_policy_field(&policies)));
    let pairs: Vec<(&str, Decision)> = outcome
        .results
        .iter()
        .map(|r| (r.name.as_str(), r.decision))
        .collect();
    if let Some((name, d)) = super::most_restrictive(&pairs) {
        out.push((RATELIMIT, ratelimit_field_for(name, d)));
        out.extend(legacy_fields(d));
        if let Some(v) = retry_after_value(d) {
            out.push((RETRY_AFTER, v));
        }
    }
    let warnings: Vec<String> = outcome
        .results
        .iter()
        .filter_map(|r| {
            let d = &r.decision;
            let used = d.limit.saturating_sub(d.remaining);
            let pct = (u128::from(used) * 100 / u128::from(d.limit.max(1))) as u64;
            (r.is_quota && pct >= WARN_AT[0]).then(|| format!("{};used={pct}", r.name))
        })
        .collect();
    if !warnings.is_empty() {
        out.push(("x-edgegate-quota-warning", warnings.join(", ")));
    }
    out
}
