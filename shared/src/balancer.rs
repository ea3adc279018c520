//! Backend pools and instance selection: smooth weighted round-robin or weighted random, and
//! the failover order after the first pick.

use crate::config::spec::BalanceSpec;
use std::cell::Cell;

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
    current: Cell<i64>,
}

/// A compiled pool. Selection state is per isolate (interior mutability; never shared
/// across threads: Workers and Spin are single-threaded).
#[derive(Debug)]
pub struct Pool {
    /// The pool's name.
    pub name: String,
    instances: Vec<Instance>,
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
        let instances = instances
            .into_iter()
            .map(|(url, weight)| Instance {
                url,
                weight,
                current: Cell::new(0),
            })
            .collect();
        Pool {
            name,
            instances,
            balance,
            total_weight,
            timeout_ms,
        }
    }

    /// The instances in config order.
    pub fn instances(&self) -> &[Instance] {
        &self.instances
    }

    /// Picks the instance for a request's first attempt. `random` is a uniform `u64` from the
    /// platform (used by the `random` algorithm only).
    pub fn pick(&self, random: u64) -> usize {
        match self.balance {
            BalanceSpec::RoundRobin => {
                // nginx's smooth weighted round-robin: each pick raises every instance by its
                // weight and lowers the winner by the total.
                let mut best = 0;
                for (i, inst) in self.instances.iter().enumerate() {
                    inst.current
                        .set(inst.current.get() + i64::from(inst.weight));
                    if inst.current.get() > self.instances[best].current.get() {
                        best = i;
                    }
                }
                let winner = &self.instances[best];
                winner.current.set(winner.current.get() - self.total_weight);
                best
            }
            BalanceSpec::Random => {
                let mut r = (random % self.total_weight.max(1) as u64) as i64;
                for (i, inst) in self.instances.iter().enumerate() {
                    r -= i64::from(inst.weight);
                    if r < 0 {
                        return i;
                    }
                }
                0
            }
        }
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
