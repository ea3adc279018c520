//! Header and query predicates of a route.

use crate::headers::HeaderList;

/// Where a predicate looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A request header (name compared case-insensitively; stored lower-case).
    Header,
    /// A query parameter (name compared exactly, after form-decoding).
    Query,
}

/// What a predicate requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Condition {
    /// The first value equals this exactly.
    Equals(String),
    /// The field is present (any value).
    Present,
    /// The field is absent.
    Absent,
}

/// One compiled predicate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Predicate {
    /// Header or query.
    pub source: Source,
    /// Field name (lower-case for headers).
    pub name: String,
    /// The requirement.
    pub condition: Condition,
}

impl Predicate {
    /// True if the request satisfies this predicate.
    pub fn holds(&self, headers: &HeaderList, query: &QueryView<'_>) -> bool {
        let value = match self.source {
            Source::Header => headers.get(&self.name).map(std::borrow::Cow::Borrowed),
            Source::Query => query.get(&self.name),
        };
        match (&self.condition, value) {
            (Condition::Equals(want), Some(v)) => *want == *v,
            (Condition::Present, Some(_)) | (Condition::Absent, None) => true,
            _ => false,
        }
    }

    /// True if no request can satisfy both (same field, contradictory conditions).
    pub fn excludes(&self, other: &Predicate) -> bool {
        if self.source != other.source || self.name != other.name {
            return false;
        }
        use Condition::*;
        matches!(
            (&self.condition, &other.condition),
            (Equals(a), Equals(b)) if a != b
        ) || matches!(
            (&self.condition, &other.condition),
            (Absent, Equals(_)) | (Equals(_), Absent) | (Absent, Present) | (Present, Absent)
        )
    }
}

/// True if no request can satisfy both predicate sets.
pub fn sets_exclude(a: &[Predicate], b: &[Predicate]) -> bool {
    a.iter().any(|p| b.iter().any(|q| p.excludes(q)))
}

/// True if `a` is a strict subset of `b` (so `b` is more specific and wins).
pub fn strict_subset(a: &[Predicate], b: &[Predicate]) -> bool {
    a.len() < b.len() && a.iter().all(|p| b.contains(p))
}

/// A lazily decoded view of a raw query string.
#[derive(Debug, Clone, Copy)]
pub struct QueryView<'a> {
    raw: &'a str,
}

impl<'a> QueryView<'a> {
    /// A view of the raw query (without `?`).
    pub fn new(raw: &'a str) -> Self {
        QueryView { raw }
    }

    /// The first value of parameter `name` (form-decoded: `+` is space, `%XX` bytes). A
    /// parameter without `=` has the empty value. Undecodable input compares raw.
    pub fn get(&self, name: &str) -> Option<std::borrow::Cow<'a, str>> {
        self.raw
            .split('&')
            .filter(|p| !p.is_empty())
            .find_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (form_decode(k) == name).then(|| form_decode(v))
            })
    }
}

/// The raw query without any `name` parameter (names compared form-decoded), `None` when
/// nothing is left. Used to keep credentials passed in the query from reaching backends.
pub fn without_param(raw: &str, name: &str) -> Option<String> {
    let kept: Vec<&str> = raw
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| form_decode(pair.split_once('=').map_or(*pair, |(k, _)| k)) != name)
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// `application/x-www-form-urlencoded` decoding of one component.
pub fn form_decode(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['+', '%']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => std::borrow::Cow::Owned(s),
        Err(_) => std::borrow::Cow::Borrowed(s),
    }
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(source: Source, name: &str, c: Condition) -> Predicate {
        Predicate {
            source,
            name: name.into(),
            condition: c,
        }
    }

    #[test]
    fn query_decoding() {
        let q = QueryView::new("a=1&b=hello+world&c=%41%42&d&e=%zz&a=2");
        assert_eq!(q.get("a").as_deref(), Some("1"));
        assert_eq!(q.get("b").as_deref(), Some("hello world"));
        assert_eq!(q.get("c").as_deref(), Some("AB"));
        assert_eq!(q.get("d").as_deref(), Some(""));
        assert_eq!(q.get("e").as_deref(), Some("%zz"));
        assert_eq!(q.get("z"), None);
        assert_eq!(form_decode("%4"), "%4");
        assert_eq!(form_decode("%"), "%");
    }

    #[test]
    fn parameters_are_removed_by_decoded_name() {
        assert_eq!(
            without_param("a=1&api_key=s&b=2", "api_key").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(
            without_param("api%5Fkey=s&api_key&b", "api_key").as_deref(),
            Some("b")
        );
        assert_eq!(without_param("api_key=s", "api_key"), None);
    }

    #[test]
    fn holds_table() {
        let h = HeaderList::from_pairs([("X-Tenant", "acme")]);
        let q = QueryView::new("beta=1");
        use Condition::*;
        for (p, expect) in [
            (
                pred(Source::Header, "x-tenant", Equals("acme".into())),
                true,
            ),
            (
                pred(Source::Header, "x-tenant", Equals("ACME".into())),
                false,
            ),
            (pred(Source::Header, "x-tenant", Present), true),
            (pred(Source::Header, "x-other", Absent), true),
            (pred(Source::Header, "x-other", Present), false),
            (pred(Source::Query, "beta", Equals("1".into())), true),
            (pred(Source::Query, "beta", Absent), false),
        ] {
            assert_eq!(p.holds(&h, &q), expect, "{p:?}");
        }
    }

    #[test]
    fn exclusion_and_subsets() {
        use Condition::*;
        let a = pred(Source::Header, "x", Equals("1".into()));
        let b = pred(Source::Header, "x", Equals("2".into()));
        let c = pred(Source::Header, "x", Present);
        let d = pred(Source::Query, "x", Equals("2".into()));
        assert!(a.excludes(&b));
        assert!(!a.excludes(&c));
        assert!(!b.excludes(&d));
        assert!(pred(Source::Header, "x", Absent).excludes(&c));
        assert!(strict_subset(
            std::slice::from_ref(&a),
            &[a.clone(), d.clone()]
        ));
        assert!(!strict_subset(
            std::slice::from_ref(&a),
            std::slice::from_ref(&a)
        ));
        assert!(sets_exclude(&[a, d.clone()], &[b]));
    }
}
