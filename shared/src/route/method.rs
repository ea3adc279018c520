//! Method sets as bit masks.

/// The standard methods a route may name, in the order used for `Allow`.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT",
];

/// A set of request methods. `ANY` also matches extension methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MethodSet(u16);

impl MethodSet {
    const ANY_BIT: u16 = 1 << 15;
    /// Every method, including extension methods.
    pub const ANY: MethodSet = MethodSet(Self::ANY_BIT | 0x1ff);
    /// The empty set.
    pub const EMPTY: MethodSet = MethodSet(0);

    /// Parses a config method list. Empty or `["*"]` is ANY; `GET` brings `HEAD` with it.
    /// Errors name the method that is not one of the nine standard methods, or a repeat.
    pub fn parse(methods: &[String]) -> Result<MethodSet, String> {
        if methods.is_empty() || (methods.len() == 1 && methods[0] == "*") {
            return Ok(MethodSet::ANY);
        }
        let mut set = MethodSet::EMPTY;
        for m in methods {
            let bit = Self::bit(m).ok_or_else(|| {
                format!("{m:?} is not a method (use upper-case GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE, CONNECT or \"*\" alone)")
            })?;
            if set.0 & bit != 0 {
                return Err(format!("{m:?} is listed twice"));
            }
            set.0 |= bit;
        }
        if set.0 & 1 != 0 {
            set.0 |= 2; // GET serves HEAD
        }
        Ok(set)
    }

    fn bit(method: &str) -> Option<u16> {
        METHODS.iter().position(|m| *m == method).map(|i| 1 << i)
    }

    /// True if the request method is in the set.
    pub fn contains(self, method: &str) -> bool {
        match Self::bit(method) {
            Some(b) => self.0 & b != 0,
            None => self.0 & Self::ANY_BIT != 0,
        }
    }

    /// True if some method is in both sets.
    pub fn overlaps(self, other: MethodSet) -> bool {
        self.0 & other.0 != 0
    }

    /// The union.
    pub fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    /// The `Allow` header value: the standard methods in the set, comma-separated.
    pub fn allow_header(self) -> String {
        METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, m)| *m)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ms: &[&str]) -> MethodSet {
        MethodSet::parse(&ms.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn table() {
        let get = set(&["GET"]);
        assert!(get.contains("GET") && get.contains("HEAD") && !get.contains("POST"));
        assert_eq!(get.allow_header(), "GET, HEAD");
        assert!(set(&["*"]).contains("PROPFIND"));
        assert!(set(&[]).contains("DELETE"));
        assert!(!get.contains("PROPFIND"));
        assert!(get.overlaps(set(&["HEAD"])));
        assert!(!get.overlaps(set(&["POST", "PUT"])));
        assert_eq!(set(&["POST"]).union(get).allow_header(), "GET, HEAD, POST");
        for bad in [&["get"][..], &["GET", "GET"], &["FOO"], &["*", "GET"]] {
            let v: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
            assert!(MethodSet::parse(&v).is_err(), "{bad:?}");
        }
    }
}
