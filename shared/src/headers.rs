//! An ordered header list and the proxy's header hygiene.
//!
//! Names are stored lower-case (HTTP field names are case-insensitive), values as received.
//! [`HeaderList`] keeps repeated fields as separate entries so `set-cookie` survives.

/// An ordered list of HTTP header fields with lower-case names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderList {
    entries: Vec<(String, String)>,
}

impl HeaderList {
    /// An empty list.
    pub fn new() -> Self {
        HeaderList::default()
    }

    /// Builds a list from `(name, value)` pairs; names are lower-cased.
    pub fn from_pairs<N: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Self {
        let mut list = HeaderList::new();
        for (name, value) in pairs {
            list.append(name.as_ref(), value);
        }
        list
    }

    /// The first value of `name` (case-insensitive), if any.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Adds a field after the existing ones.
    pub fn append(&mut self, name: &str, value: impl Into<String>) {
        self.entries.push((name.to_ascii_lowercase(), value.into()));
    }

    /// Replaces every field named `name` with one field.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every field named `name`.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// Removes every field whose name satisfies `pred` (given the lower-case name).
    pub fn remove_where(&mut self, mut pred: impl FnMut(&str) -> bool) {
        self.entries.retain(|(n, _)| !pred(n));
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Read access to a header map the host owns (a JS `Headers` object on Workers): the core
/// reads the few fields it needs instead of copying every field across the host boundary.
pub trait HeaderRead {
    /// The value of `name` (case-insensitive), repeated fields joined with `, `.
    fn get_header(&self, name: &str) -> Option<String>;
}

impl HeaderRead for HeaderList {
    fn get_header(&self, name: &str) -> Option<String> {
        let mut values = self.get_all(name);
        let first = values.next()?;
        Some(values.fold(first.to_string(), |acc, v| acc + ", " + v))
    }
}

/// Changes to a header map the host owns: every field named in `remove` goes, then each
/// `set` replaces (or adds) its field. Hosts apply them to their own copy of the map, so
/// untouched fields never cross the host boundary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    remove: Vec<String>,
    set: Vec<(String, String)>,
}

impl HeaderEdits {
    /// No changes.
    pub fn new() -> Self {
        HeaderEdits::default()
    }

    /// Removes every field named `name` (lower-case).
    pub fn remove(&mut self, name: &str) {
        let name = name.to_ascii_lowercase();
        if !self.remove.contains(&name) {
            self.remove.push(name);
        }
    }

    /// Replaces the field `name` with one field of `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        self.set.retain(|(n, _)| *n != name);
        self.set.push((name, value.into()));
    }

    /// The names removed (lower-case).
    pub fn removals(&self) -> &[String] {
        &self.remove
    }

    /// The fields set, in order.
    pub fn sets(&self) -> &[(String, String)] {
        &self.set
    }

    /// The edited copy of `base` (what the fake platform and tests look at).
    pub fn apply(&self, base: &HeaderList) -> HeaderList {
        let mut out = base.clone();
        out.remove_where(|n| self.remove.iter().any(|r| r == n));
        for (n, v) in &self.set {
            out.set(n, v.clone());
        }
        out
    }
}

/// Hop-by-hop fields (RFC 9110 §7.6.1, plus the legacy ones proxies still see): they describe
/// one connection and are never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes the hop-by-hop fields and every field that `Connection` names.
pub fn remove_hop_by_hop(headers: &mut HeaderList) {
    let is_hop = hop_by_hop_in(headers);
    headers.remove_where(is_hop);
}

/// The same as [`remove_hop_by_hop`], as edits to a map the host owns whose fields the core
/// has not read (a backend response): every hop-by-hop name, and the names `connection` (the
/// map's `Connection` value) lists.
pub fn hop_by_hop_edits(edits: &mut HeaderEdits, connection: Option<&str>) {
    for n in HOP_BY_HOP {
        edits.remove(n);
    }
    for n in connection_named(connection) {
        edits.remove(&n);
    }
}

/// A predicate for the hop-by-hop fields of a list the core has read: true for the fixed
/// names and for those its `Connection` field lists.
pub fn hop_by_hop_in(headers: &HeaderList) -> impl Fn(&str) -> bool {
    let named = connection_named(headers.get_header("connection").as_deref());
    move |n: &str| HOP_BY_HOP.contains(&n) || named.iter().any(|t| t == n)
}

/// The field names a `Connection` value lists (lower-case).
fn connection_named(connection: Option<&str>) -> Vec<String> {
    connection
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// True for a field a client must never be able to set on the way to the backend, because
/// backends trust the gateway to set it (or the edge platform owns it).
///
/// `extra` is the config's `gateway.strip_request_headers` list (lower-case).
pub fn is_spoofable(name: &str, extra: &[String]) -> bool {
    name.starts_with("x-edgegate-")
        || name.starts_with("x-forwarded-")
        || name.starts_with("cf-")
        || matches!(
            name,
            "forwarded" | "x-real-ip" | "true-client-ip" | "x-client-ip" | "x-cluster-client-ip"
        )
        || extra.iter().any(|e| e == name)
}

/// What the gateway knows about the client connection, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct ClientHop<'a> {
    /// The client's address as the platform reports it (`CF-Connecting-IP` on Workers).
    pub client_ip: Option<&'a str>,
    /// `http` or `https`, as the client spoke to the gateway.
    pub proto: &'a str,
    /// The `Host` the client asked for.
    pub host: &'a str,
}

/// Sets `X-Forwarded-For/-Proto/-Host` and `Forwarded` (RFC 7239) for the backend.
///
/// `prior_for` is the chain of earlier hops: the client's own `X-Forwarded-For` when config
/// trusts it (`gateway.trust_forwarded`), else empty; `prior_forwarded` likewise for
/// `Forwarded`. Run after the client's copies have been stripped.
pub fn set_forwarding(
    headers: &mut HeaderEdits,
    hop: ClientHop<'_>,
    prior_for: Option<&str>,
    prior_forwarded: Option<&str>,
) {
    let ip = hop.client_ip.unwrap_or("unknown");
    let xff = match prior_for {
        Some(p) if !p.trim().is_empty() => format!("{}, {}", p.trim(), ip),
        _ => ip.to_string(),
    };
    headers.set("x-forwarded-for", xff);
    headers.set("x-forwarded-proto", hop.proto);
    headers.set("x-forwarded-host", hop.host);

    let for_value = if ip.contains(':') {
        format!("\"[{ip}]\"")
    } else {
        forwarded_value(ip)
    };
    let element = format!(
        "for={};host={};proto={}",
        for_value,
        forwarded_value(hop.host),
        forwarded_value(hop.proto)
    );
    let forwarded = match prior_forwarded {
        Some(p) if !p.trim().is_empty() => format!("{}, {}", p.trim(), element),
        _ => element,
    };
    headers.set("forwarded", forwarded);
}

/// A `Forwarded` parameter value: a token as it is, anything else as a quoted string.
fn forwarded_value(v: &str) -> String {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !v.is_empty() && v.chars().all(is_tchar) {
        v.to_string()
    } else {
        let escaped: String = v
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("\"{escaped}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_fields_are_removed() {
        let mut h = HeaderList::from_pairs([
            ("Connection", "close, X-Secret-Hop"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "h2c"),
            ("X-Secret-Hop", "1"),
            ("TE", "trailers"),
            ("Accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut h);
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("accept", "*/*")]);
    }

    #[test]
    fn spoofable_table() {
        let extra = vec!["x-user-id".to_string()];
        for (name, expect) in [
            ("x-edgegate-consumer", true),
            ("x-forwarded-for", true),
            ("x-forwarded-prefix", true),
            ("forwarded", true),
            ("x-real-ip", true),
            ("true-client-ip", true),
            ("cf-connecting-ip", true),
            ("x-user-id", true),
            ("authorization", false),
            ("x-request-id", false),
            ("traceparent", false),
        ] {
            assert_eq!(is_spoofable(name, &extra), expect, "{name}");
        }
    }

    #[test]
    fn forwarding_headers_ipv4_and_ipv6() {
        let mut e = HeaderEdits::new();
        let hop = ClientHop {
            client_ip: Some("203.0.113.9"),
            proto: "https",
            host: "api.example.com",
        };
        set_forwarding(&mut e, hop, None, None);
        let h = e.apply(&HeaderList::new());
        assert_eq!(h.get("x-forwarded-for"), Some("203.0.113.9"));
        assert_eq!(h.get("x-forwarded-proto"), Some("https"));
        assert_eq!(h.get("x-forwarded-host"), Some("api.example.com"));
        assert_eq!(
            h.get("forwarded"),
            Some("for=203.0.113.9;host=api.example.com;proto=https")
        );

        let mut e = HeaderEdits::new();
        let hop = ClientHop {
            client_ip: Some("2001:db8::1"),
            proto: "http",
            host: "localhost:8787",
        };
        set_forwarding(&mut e, hop, Some("198.51.100.1"), Some("for=198.51.100.1"));
        let h = e.apply(&HeaderList::new());
        assert_eq!(h.get("x-forwarded-for"), Some("198.51.100.1, 2001:db8::1"));
        assert_eq!(
            h.get("forwarded"),
            Some("for=198.51.100.1, for=\"[2001:db8::1]\";host=\"localhost:8787\";proto=http")
        );
    }

    #[test]
    fn edits_remove_then_set_and_read_joins_repeats() {
        let base = HeaderList::from_pairs([
            ("A", "1"),
            ("B", "2"),
            ("b", "3"),
            ("Connection", "x-hop"),
            ("X-Hop", "y"),
        ]);
        let mut e = HeaderEdits::new();
        e.remove("b");
        e.set("C", "4");
        e.set("c", "5");
        hop_by_hop_edits(&mut e, base.get_header("connection").as_deref());
        let out = e.apply(&base);
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![("a", "1"), ("c", "5")]);
        assert_eq!(base.get_header("b").as_deref(), Some("2, 3"));
        assert_eq!(base.get_header("z"), None);
    }

    #[test]
    fn set_replaces_every_copy_and_get_all_keeps_order() {
        let mut h = HeaderList::from_pairs([("Set-Cookie", "a=1"), ("set-cookie", "b=2")]);
        assert_eq!(
            h.get_all("set-cookie").collect::<Vec<_>>(),
            vec!["a=1", "b=2"]
        );
        h.set("SET-COOKIE", "c=3");
        assert_eq!(h.get_all("set-cookie").collect::<Vec<_>>(), vec!["c=3"]);
    }
}
