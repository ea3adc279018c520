//! Backend pools and instance selection: smooth weighted round-robin or weighted random, and
//! the failover order after the first pick.
//!
//! # Round robin where instances are not reused
//!
//! Smooth weighted round-robin keeps a position (one number per instance). Where an instance
//! serves many requests ([`Instances::reuses_instances`]: Workers isolates) the position lives
//! in the [`Pool`], per isolate. Where every request runs in a fresh instance (Spin), a
//! position in memory would start over on every request and send every request to the same
//! instance; there [`Pool::choose`] keeps the position in the platform's [`SharedCache`] under
//! [`shared_position_key`], read and written once per pick:
//!
//! - sequential requests rotate exactly as they do in one isolate, weights respected;
//! - concurrent requests rotate approximately: two requests that read the same position pick
//!   the same instance and one write is lost. A lost update repeats an instance; it never
//!   fails a request;
//! - a position unused for [`SHARED_POSITION_TTL_S`] expires and the rotation starts over;
//! - a pool whose weights changed (a new config) starts over; instances whose URLs changed
//!   at the same weights carry on from the stored position (it is only a position);
//! - when the cache cannot be read or written, the pick is a weighted random one
//!   (as `balance: random`), and `balancer_state_unavailable` is logged.

use crate::access_log::event_line;
use crate::config::spec::BalanceSpec;
use crate::platform::{Clock, Instances, Log, PlatformError, Random, SharedCache};
use serde_json::json;
use std::cell::RefCell;

/// How long a pool's round-robin position stays in the [`SharedCache`] after its last pick
/// (fresh instances only). Short: an idle pool may start its rotation over.
pub const SHARED_POSITION_TTL_S: u64 = 300;

/// The [`SharedCache`] key of a pool's round-robin position (fresh instances only).
///
/// Keyed by the pool's name, not by config version: Spin's key-value cache never evicts an
/// expired entry, so a key per version would leave one key per pool behind for every
/// activated config. The stored value carries the pool's weights instead; a config that
/// changes them starts the rotation over.
pub fn shared_position_key(pool: &str) -> String {
    format!("edgegate:rr:{pool}")
}

/// A round-robin position as stored in the [`SharedCache`]: the weights it was built for
/// (`w`) and each instance's current value (`c`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SharedPosition {
    w: Vec<u32>,
    c: Vec<i64>,
}

/// A validated instance base URL: `http(s)://host[:port][/base]`, no trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceUrl {
    base: String,
}

impl InstanceUrl {
    /// Parses an instance URL.
    ///
    /// Errors: scheme other than http/https, no host, a bad port, user info, a query or
    /// fragment, or characters not allowed in a host or path.
    pub fn parse(url: &str) -> Result<InstanceUrl, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url:?} is not an absolute http(s) URL"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(format!("{url:?}: the scheme must be http or https"));
        }
        if rest.contains(['?', '#']) {
            return Err(format!("{url:?}: an instance URL has no query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "{url:?}: user info is not allowed in an instance URL"
            ));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '[' in the host"))?;
            if h.is_empty()
                || !h
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
            {
                return Err(format!("{url:?}: bad IPv6 address"));
            }
            (authority, after.strip_prefix(':'))
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{url:?}: no host"));
        }
        if !host.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(format!("{url:?}: bad host name"));
        }
        if let Some(p) = port {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => {}
                _ => return Err(format!("{url:?}: bad port {p:?}")),
            }
        }
        let path = path.trim_end_matches('/');
        if let Some(c) = path
            .chars()
            .find(|c| *c != '/' && !crate::route::is_pchar(*c))
        {
            return Err(format!("{url:?}: character {c:?} is not allowed in a path"));
        }
        Ok(InstanceUrl {
            base: format!("{scheme}://{authority}{path}"),
        })
    }

    /// The full upstream URL for a path (starting with `/`) and raw query.
    pub fn join(&self, path: &str, query: Option<&str>) -> String {
        let mut url =
            String::with_capacity(self.base.len() + path.len() + 1 + query.map_or(0, str::len));
        url.push_str(&self.base);
        url.push_str(path);
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    /// The base URL as configured (normalised).
    pub fn as_str(&self) -> &str {
        &self.base
    }
}

/// One backend instance of a pool.
#[derive(Debug)]
pub struct Instance {
    /// Where it is.
    pub url: InstanceUrl,
    /// Its relative share.
    pub weight: u32,
}

/// A compiled pool. Selection state is per isolate (interior mutability; never shared
/// across threads: Workers and Spin are single-threaded), or in the shared cache where
/// instances are not reused (see the module doc).
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    instances: Vec<Instance>,
    /// The smooth round-robin position: each instance's current value, in config order.
    position: RefCell<Vec<i64>>,
    balance: BalanceSpec,
    total_weight: i64,
    /// The pool's own timeout, if set.
    pub timeout_ms: Option<u64>,
}

impl Pool {
    /// Builds a pool from validated instances (at least one).
    pub fn new(
        name: String,
        instances: Vec<(InstanceUrl, u32)>,
        balance: BalanceSpec,
        timeout_ms: Option<u64>,
    ) -> Pool {
        let total_weight = instances.iter().map(|(_, w)| i64::from(*w)).sum();
        let position = RefCell::new(vec![0; instances.len()]);
        let instances = instances
            .into_iter()
            .map(|(url, weight)| Instance { url, weight })
            .collect();
        Pool {
            name,
            instances,
            position,
            balance,
            total_weight,
            timeout_ms,
        }
    }

    /// The instances in config order.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Picks the instance for a request's first attempt from the pool's in-memory state.
    /// `random` is a uniform `u64` from the platform (used by the `random` algorithm only).
    /// Where instances are not reused, use [`Pool::choose`]. Never fails.
    pub fn pick(&self, random: u64) -> usize {
        match self.balance {
            BalanceSpec::RoundRobin => {
                let mut position = self.position.borrow_mut();
                self.smooth_step(&mut position)
            }
            BalanceSpec::Random => self.pick_random(random),
        }
    }

    /// Picks the instance for a request's first attempt on platform `p`: `random` draws from
    /// the platform; round robin uses the pool's in-memory position where instances are
    /// reused, and the position in the platform's [`SharedCache`] where they are not (one read
    /// and one write; see the module doc). Never fails: a cache error makes it a weighted
    /// random pick, logged as `balancer_state_unavailable`.
    pub async fn choose<P: Instances + SharedCache + Random + Log + Clock>(&self, p: &P) -> usize {
        match self.balance {
            BalanceSpec::Random => self.pick_random(p.next_u64()),
            BalanceSpec::RoundRobin if p.reuses_instances() || self.instances.len() < 2 => {
                self.pick(0)
            }
            BalanceSpec::RoundRobin => match self.pick_shared(p).await {
                Ok(i) => i,
                Err(e) => {
                    p.log_line(&event_line(
                        "balancer_state_unavailable",
                        p.now_ms(),
                        json!({"pool": self.name, "error": e.0, "fallback": "random"}),
                    ));
                    self.pick_random(p.next_u64())
                }
            },
        }
    }

    /// Round robin over the position in the shared cache: read, one smooth step, write back.
    /// A missing, unreadable or foreign (other weights) position starts from zero.
    ///
    /// Errors: the cache could not be read or written, or the position not encoded.
    async fn pick_shared<P: SharedCache>(&self, p: &P) -> Result<usize, PlatformError> {
        let key = shared_position_key(&self.name);
        let weights: Vec<u32> = self.instances.iter().map(|i| i.weight).collect();
        let stored = p
            .shared_get(&key)
            .await?
            .and_then(|raw| serde_json::from_slice::<SharedPosition>(&raw).ok())
            .filter(|s| s.w == weights && self.is_position(&s.c));
        let mut current = match stored {
            Some(s) => s.c,
            None => vec![0; self.instances.len()],
        };
        let best = self.smooth_step(&mut current);
        let value = serde_json::to_vec(&SharedPosition {
            w: weights,
            c: current,
        })
        .map_err(|e| PlatformError(format!("round-robin position: {e}")))?;
        p.shared_put(&key, &value, SHARED_POSITION_TTL_S).await?;
        Ok(best)
    }

    /// True if `c` can be a position of this pool: one value per instance, summing to zero
    /// (every step adds the total weight and takes it away again), each within the total
    /// weight times the number of instances (so a step cannot overflow).
    fn is_position(&self, c: &[i64]) -> bool {
        let bound = self
            .total_weight
            .saturating_mul(self.instances.len() as i64);
        c.len() == self.instances.len()
            && c.iter().all(|v| v.unsigned_abs() <= bound.unsigned_abs())
            && c.iter().map(|v| i128::from(*v)).sum::<i128>() == 0
    }

    /// One step of nginx's smooth weighted round-robin over `current` (one value per
    /// instance): every instance gains its weight, the largest wins and loses the total.
    fn smooth_step(&self, current: &mut [i64]) -> usize {
        let mut best = 0;
        for (i, inst) in self.instances.iter().enumerate() {
            if let Some(c) = current.get_mut(i) {
                *c = c.saturating_add(i64::from(inst.weight));
            }
            if current.get(i) > current.get(best) {
                best = i;
            }
        }
        if let Some(c) = current.get_mut(best) {
            *c = c.saturating_sub(self.total_weight);
        }
        best
    }

    /// A weighted random pick from a uniform `random`.
    fn pick_random(&self, random: u64) -> usize {
        let mut r = (random % self.total_weight.max(1) as u64) as i64;
        for (i, inst) in self.instances.iter().enumerate() {
            r -= i64::from(inst.weight);
            if r < 0 {
                return i;
            }
        }
        0
    }

    /// The failover order after `first`: the other instances, each once, in config order
    /// starting after `first`.
    pub fn failover_order(&self, first: usize) -> impl Iterator<Item = usize> + '_ {
        let n = self.instances.len();
        (1..n).map(move |k| (first + k) % n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::SharedCache;

    fn pool(weights: &[u32], balance: BalanceSpec) -> Pool {
        let instances = weights
            .iter()
            .enumerate()
            .map(|(i, w)| (InstanceUrl::parse(&format!("http://b{i}:80")).unwrap(), *w))
            .collect();
        Pool::new("p".into(), instances, balance, None)
    }

    #[test]
    fn url_table() {
        for (input, base) in [
            (
                "http://users-service-v2:8080",
                "http://users-service-v2:8080",
            ),
            (
                "HTTPS://api.example.com/base/",
                "https://api.example.com/base",
            ),
            ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
            ("http://[::1]:9000/x", "http://[::1]:9000/x"),
        ] {
            assert_eq!(InstanceUrl::parse(input).unwrap().as_str(), base, "{input}");
        }
        for bad in [
            "users:8080",
            "ftp://x",
            "http://",
            "http://a:0",
            "http://a:99999",
            "http://a/b?c",
            "http://u@a",
            "http://a b",
            "http://[zz]:1",
        ] {
            assert!(InstanceUrl::parse(bad).is_err(), "{bad}");
        }
        let u = InstanceUrl::parse("http://svc:8080/base").unwrap();
        assert_eq!(
            u.join("/users/42", Some("a=1")),
            "http://svc:8080/base/users/42?a=1"
        );
    }

    #[test]
    fn round_robin_is_even_and_weighted_is_smooth() {
        let p = pool(&[1, 1, 1], BalanceSpec::RoundRobin);
        let picks: Vec<usize> = (0..6).map(|_| p.pick(0)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);

        let p = pool(&[5, 1, 1], BalanceSpec::RoundRobin);
        let picks: Vec<usize> = (0..7).map(|_| p.pick(0)).collect();
        // nginx's documented sequence for weights 5,1,1: a a b a c a a
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn random_follows_weights() {
        let p = pool(&[3, 1], BalanceSpec::Random);
        let counts = (0..400u64).fold([0; 2], |mut c, r| {
            c[p.pick(r)] += 1;
            c
        });
        assert_eq!(counts, [300, 100]);
    }

    /// Picks from fresh copies of the pool (a fresh instance per request) on `p`.
    fn fresh_picks(weights: &[u32], p: &crate::testing::FakePlatform, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| futures::executor::block_on(pool(weights, BalanceSpec::RoundRobin).choose(p)))
            .collect()
    }

    #[test]
    fn round_robin_on_fresh_instances_rotates_through_the_shared_cache() {
        let p = crate::testing::FakePlatform::new();
        p.set_reuses_instances(false);
        assert_eq!(fresh_picks(&[1, 1, 1], &p, 6), vec![0, 1, 2, 0, 1, 2]);
        // Another pool name would be another key; the same name with other weights starts over.
        assert_eq!(fresh_picks(&[5, 1, 1], &p, 7), vec![0, 0, 1, 0, 2, 0, 0]);
        // Expired: starts over.
        assert_eq!(fresh_picks(&[5, 1, 1], &p, 1), vec![0]);
        p.advance(SHARED_POSITION_TTL_S * 1000);
        assert_eq!(fresh_picks(&[5, 1, 1], &p, 2), vec![0, 0]);
        // Where instances are reused, a fresh pool starts at zero and the cache is not used.
        let q = crate::testing::FakePlatform::new();
        assert_eq!(fresh_picks(&[1, 1], &q, 3), vec![0, 0, 0]);
        assert!(
            futures::executor::block_on(q.shared_get(&shared_position_key("p")))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_position_that_is_not_one_starts_over() {
        let p = crate::testing::FakePlatform::new();
        p.set_reuses_instances(false);
        let key = shared_position_key("p");
        for bad in [
            &b"not json"[..],
            br#"{"w":[1,1],"c":[5,5]}"#,
            br#"{"w":[1,1],"c":[9223372036854775807,-9223372036854775807]}"#,
            br#"{"w":[1,1],"c":[0]}"#,
            br#"{"w":[2,1],"c":[1,-1]}"#,
        ] {
            futures::executor::block_on(p.shared_put(&key, bad, 60)).unwrap();
            assert_eq!(
                fresh_picks(&[1, 1], &p, 2),
                vec![0, 1],
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn failover_visits_every_other_instance_once() {
        let p = pool(&[1, 1, 1, 1], BalanceSpec::RoundRobin);
        assert_eq!(p.failover_order(2).collect::<Vec<_>>(), vec![3, 0, 1]);
        assert_eq!(
            pool(&[1], BalanceSpec::RoundRobin)
                .failover_order(0)
                .count(),
            0
        );
    }
}
