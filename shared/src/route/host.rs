//! Host patterns: `api.example.com` or `*.example.com`.

/// A host pattern, compared against the request host without its port, lower-case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Exactly this host.
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com` (not `example.com` itself). Holds
    /// the suffix with its leading dot.
    Suffix(String),
}

impl HostPattern {
    /// Parses a pattern. Errors on empty labels, characters outside `[a-z0-9-.]` (after
    /// lower-casing; IPv4 literals are fine), a `*` that is not a whole leading label, or a port.
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.to_ascii_lowercase();
        let (suffix, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        if name.is_empty() || name.split('.').any(|l| l.is_empty()) {
            return Err(format!("{s:?} is not a host name"));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
        {
            return Err(format!(
                "{s:?}: character {c:?} is not allowed in a host pattern"
            ));
        }
        Ok(if suffix {
            HostPattern::Suffix(format!(".{name}"))
        } else {
            HostPattern::Exact(name.to_string())
        })
    }

    /// True if `host` (lower-case, no port) matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Suffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
        }
    }

    /// How specific the pattern is: exact hosts beat wildcards, longer wildcards beat shorter.
    /// Two different patterns of equal rank never match the same host.
    pub fn rank(&self) -> (u8, usize) {
        match self {
            HostPattern::Exact(h) => (2, h.len()),
            HostPattern::Suffix(s) => (1, s.len()),
        }
    }

    /// True if some host matches both patterns.
    pub fn overlaps(&self, other: &HostPattern) -> bool {
        match (self, other) {
            (HostPattern::Exact(a), HostPattern::Exact(b)) => a == b,
            (HostPattern::Exact(h), p @ HostPattern::Suffix(_))
            | (p @ HostPattern::Suffix(_), HostPattern::Exact(h)) => p.matches(h),
            (HostPattern::Suffix(a), HostPattern::Suffix(b)) => {
                a.ends_with(b.as_str()) || b.ends_with(a.as_str())
            }
        }
    }
}

/// The request host as patterns see it: lower-case, without the port (IPv6 brackets kept).
pub fn normalize_host(host: &str) -> String {
    let h = if let Some(end) = host.find(']') {
        &host[..=end]
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    h.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching_table() {
        let exact = HostPattern::parse("API.example.com").unwrap();
        let wild = HostPattern::parse("*.example.com").unwrap();
        for (host, e, w) in [
            ("api.example.com", true, true),
            ("example.com", false, false),
            ("a.b.example.com", false, true),
            ("badexample.com", false, false),
        ] {
            assert_eq!(exact.matches(host), e, "{host}");
            assert_eq!(wild.matches(host), w, "{host}");
        }
        assert!(exact.rank() > wild.rank());
        assert!(exact.overlaps(&wild));
        assert!(!HostPattern::parse("*.a.com")
            .unwrap()
            .overlaps(&HostPattern::parse("*.b.com").unwrap()));
    }

    #[test]
    fn bad_patterns() {
        for bad in [
            "",
            "*.",
            "a..b",
            "a.com:8080",
            "*a.com",
            "a.*.com",
            "exa mple.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_normalization() {
        assert_eq!(normalize_host("API.Example.com:8443"), "api.example.com");
        assert_eq!(normalize_host("[::1]:8787"), "[::1]");
        assert_eq!(normalize_host("localhost"), "localhost");
    }
}
