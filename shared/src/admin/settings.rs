//! Where the admin API answers, how often a client may call it, and which config paths it
//! reserves.

use crate::config::spec::ConfigDocument;
use crate::config::{ConfigError, ConfigErrors};
use crate::ratelimit::{Algorithm, FailureMode, RateKey, RateLimit, RateMode};
use crate::route::{normalize_host, HostPattern, PathTemplate, Segment};

/// The default path prefix of the admin API.
pub const DEFAULT_PREFIX: &str = "/__edgegate/admin";
/// The Worker secret holding the admin bearer token. Unset (or shorter than
/// [`MIN_TOKEN_BYTES`]): the admin API is off and its paths answer 404.
pub const TOKEN_SECRET: &str = "EDGEGATE_ADMIN_TOKEN";
/// The shortest token accepted; a shorter one leaves the admin API off.
pub const MIN_TOKEN_BYTES: usize = 16;
/// Admin calls per client address per minute, by default.
pub const DEFAULT_CALLS_PER_MINUTE: u64 = 60;

/// Where a request to the admin API is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminMatch {
    /// A path under the prefix: the rest of the path (`/health`; empty for the prefix
    /// itself).
    Endpoint(String),
    /// A path on the admin host outside the prefix: answered 404 by the admin API, never
    /// routed.
    Outside,
}

/// The admin API's deployment settings (Worker vars `EDGEGATE_ADMIN_PREFIX`,
/// `EDGEGATE_ADMIN_HOST`, `EDGEGATE_ADMIN_RATE_LIMIT`).
///
/// - Path mode (no host): requests whose normalized path is the prefix or below it, on any
///   host, go to the admin API before routing. A config with a route whose paths fall under
///   the prefix is refused when it is loaded ([`AdminSettings::check_config`]).
/// - Host mode (`EDGEGATE_ADMIN_HOST`): every request to that host goes to the admin API
///   (endpoints under the prefix, which may then be `/`), never to a route; other hosts are
///   routed as usual, the prefix included. A config whose routes or environments name the
///   admin host is refused.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    prefix: String,
    segments: Vec<String>,
    host: Option<String>,
    limit: RateLimit,
}

impl Default for AdminSettings {
    fn default() -> Self {
        AdminSettings::from_vars(|_| None).0
    }
}

impl AdminSettings {
    /// Settings from deployment variables (`get(name)`). Never fails: an invalid value is
    /// replaced by its default and described in the returned list (log it).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> (AdminSettings, Vec<String>) {
        let mut problems = Vec::new();
        let host = get("EDGEGATE_ADMIN_HOST")
            .map(|h| normalize_host(h.trim()))
            .filter(|h| !h.is_empty());
        let raw_prefix = get("EDGEGATE_ADMIN_PREFIX");
        let mut segments = match raw_prefix.as_deref().map(str::trim) {
            None => None,
            Some(p) => match prefix_segments(p) {
                Ok(s) if s.is_empty() && host.is_none() => {
                    problems.push(format!(
                        "EDGEGATE_ADMIN_PREFIX {p:?}: the root is only allowed with EDGEGATE_ADMIN_HOST; using {DEFAULT_PREFIX}"
                    ));
                    None
                }
                Ok(s) => Some(s),
                Err(e) => {
                    problems.push(format!(
                        "EDGEGATE_ADMIN_PREFIX {p:?}: {e}; using {DEFAULT_PREFIX}"
                    ));
                    None
                }
            },
        };
        let segments = segments
            .take()
            .unwrap_or_else(|| prefix_segments(DEFAULT_PREFIX).unwrap_or_default());
        let per_minute = match get("EDGEGATE_ADMIN_RATE_LIMIT") {
            None => DEFAULT_CALLS_PER_MINUTE,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if (1..=100_000).contains(&n) => n,
                _ => {
                    problems.push(format!(
                        "EDGEGATE_ADMIN_RATE_LIMIT {v:?} is not a number of calls per minute in 1..=100000; using {DEFAULT_CALLS_PER_MINUTE}"
                    ));
                    DEFAULT_CALLS_PER_MINUTE
                }
            },
        };
        let prefix = segments.iter().map(|s| format!("/{s}")).collect();
        let settings = AdminSettings {
            prefix,
            segments,
            host,
            limit: admin_limit(per_minute),
        };
        (settings, problems)
    }

    /// The path prefix (`/__edgegate/admin`; empty for the root in host mode).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The admin host, in host mode.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The per-client limit on admin calls (exact, one counter per address:
    /// `rl|admin|admin|ip|<address>`).
    pub fn rate_limit(&self) -> &RateLimit {
        &self.limit
    }

    /// Whether a request (its `Host` and raw path) is for the admin API, decided on the
    /// normalized path (so `%61dmin` cannot dodge it). A path that does not normalize is not
    /// an admin request: the pipeline answers it 400 `invalid_path`.
    pub fn matches(&self, host: &str, raw_path: &str) -> Option<AdminMatch> {
        if let Some(admin_host) = &self.host {
            if normalize_host(host) != *admin_host {
                return None;
            }
        }
        let path = match crate::path::normalize(raw_path, false) {
            Ok(p) => p,
            Err(_) if self.host.is_some() => return Some(AdminMatch::Outside),
            Err(_) => return None,
        };
        let rest = if self.prefix.is_empty() {
            Some(path.as_ref())
        } else {
            path.strip_prefix(self.prefix.as_str())
                .filter(|r| r.is_empty() || r.starts_with('/'))
        };
        match rest {
            Some(r) => Some(AdminMatch::Endpoint(r.to_string())),
            None if self.host.is_some() => Some(AdminMatch::Outside),
            None => None,
        }
    }

    /// The config must leave the admin API's paths alone: in path mode no route may match
    /// a path under the prefix (a literal, parameter or wildcard segment that fits); in host
    /// mode no route host or environment host may match the admin host. Runs wherever a
    /// config is compiled for activation or validation (after [`crate::config::compile_for`]
    /// succeeded).
    ///
    /// Errors: one per offending base path, route or host, with its JSON path. A document
    /// that does not parse is left to the compiler (no error here).
    pub fn check_config(&self, text: &str) -> Result<(), ConfigErrors> {
        let Ok(doc) = serde_json::from_str::<ConfigDocument>(text) else {
            return Ok(());
        };
        let mut errors = Vec::new();
        match &self.host {
            Some(host) => self.check_hosts(&doc, host, &mut errors),
            None => self.check_paths(&doc, &mut errors),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    fn check_paths(&self, doc: &ConfigDocument, errors: &mut Vec<ConfigError>) {
        let why = |what: &str| {
            format!(
                "{what} under the admin API prefix {} (EDGEGATE_ADMIN_PREFIX), which is never routed: move it, or give the admin API another prefix or its own host (EDGEGATE_ADMIN_HOST)",
                self.prefix
            )
        };
        for (ai, api) in doc.apis.iter().enumerate() {
            let Ok(base) = PathTemplate::parse(&api.base_path) else {
                continue;
            };
            if covers(&self.segments, base.segments(), true) {
                errors.push(ConfigError::new(
                    format!("$.apis[{ai}].base_path"),
                    why(&format!("the base path {:?} is", api.base_path)),
                ));
                continue;
            }
            for (ri, r) in api.routes.iter().enumerate() {
                let Ok(tpl) = PathTemplate::parse(&r.path) else {
                    continue;
                };
                let versions: Vec<Option<&str>> = if api.versions.is_empty() {
                    vec![None]
                } else {
                    match &r.versions {
                        Some(list) => list.iter().map(|v| Some(v.as_str())).collect(),
                        None => api.versions.iter().map(|v| Some(v.name.as_str())).collect(),
                    }
                };
                let hit = versions.iter().find(|v| {
                    let mut full: Vec<Segment> = base.segments().to_vec();
                    if let Some(v) = v {
                        full.push(Segment::Literal((*v).to_string()));
                    }
                    full.extend(tpl.segments().iter().cloned());
                    covers(&self.segments, &full, false)
                });
                if let Some(v) = hit {
                    let shown = format!(
                        "{}{}{}",
                        api.base_path.trim_end_matches('/'),
                        v.map(|v| format!("/{v}")).unwrap_or_default(),
                        r.path
                    );
                    errors.push(ConfigError::new(
                        format!("$.apis[{ai}].routes[{ri}].path"),
                        why(&format!("the route's paths ({shown}) fall")),
                    ));
                }
            }
        }
    }

    fn check_hosts(&self, doc: &ConfigDocument, host: &str, errors: &mut Vec<ConfigError>) {
        let why = format!(
            "names the admin API's host {host} (EDGEGATE_ADMIN_HOST), whose requests are never routed"
        );
        let hits = |pattern: &str| HostPattern::parse(pattern).is_ok_and(|p| p.matches(host));
        for (ai, api) in doc.apis.iter().enumerate() {
            for (ei, env) in api.environments.iter().enumerate() {
                for (hi, h) in env.hosts.iter().enumerate() {
                    if hits(h) {
                        errors.push(ConfigError::new(
                            format!("$.apis[{ai}].environments[{ei}].hosts[{hi}]"),
                            format!("{h:?} {why}"),
                        ));
                    }
                }
            }
            for (ri, r) in api.routes.iter().enumerate() {
                if let Some(h) = r.host.as_deref().filter(|h| hits(h)) {
                    errors.push(ConfigError::new(
                        format!("$.apis[{ai}].routes[{ri}].host"),
                        format!("{h:?} {why}"),
                    ));
                }
            }
        }
    }
}

/// The admin limit: a sliding window of `per_minute` calls per client address, exact (one
/// atomic counter call per admin request), failing open (the token still guards the API).
fn admin_limit(per_minute: u64) -> RateLimit {
    RateLimit {
        name: "admin".into(),
        scope: "admin".into(),
        key: RateKey::Ip,
        algorithm: Algorithm::SlidingWindow {
            limit: per_minute,
            window_ms: 60_000,
        },
        plans: Vec::new(),
        mode: RateMode::Exact,
        on_error: FailureMode::Open,
        shards: 1,
        lease: 1,
        queue_ms: 0,
    }
}

/// The segments of a prefix: `/` or empty is the root; otherwise `/a/b` with
/// characters allowed in a path and no dot segments.
fn prefix_segments(p: &str) -> Result<Vec<String>, String> {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if !trimmed.starts_with('/') {
        return Err("must start with '/'".into());
    }
    let tpl = PathTemplate::parse(trimmed)?;
    let mut out = Vec::new();
    for s in tpl.segments() {
        match s {
            Segment::Literal(l) if l != "." && l != ".." && !l.contains('%') => out.push(l.clone()),
            _ => return Err(format!("segment {s:?} is not a plain literal")),
        }
    }
    Ok(out)
}

/// True if a template (of segments) matches some path that is `prefix` or lies below it.
/// `base_only`: the segments are a base path that more segments follow, so a base path
/// that is the prefix or below it covers, and a shorter one does not decide (its routes
/// are checked).
fn covers(prefix: &[String], template: &[Segment], base_only: bool) -> bool {
    for (i, want) in prefix.iter().enumerate() {
        match template.get(i) {
            None => return false,
            Some(Segment::Wildcard(_)) => return !base_only,
            Some(Segment::Param(_)) => {
                if base_only {
                    return false;
                }
            }
            Some(Segment::Literal(l)) => {
                if l != want {
                    return false;
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> AdminSettings {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (s, problems) =
            AdminSettings::from_vars(|n| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()));
        assert!(problems.is_empty(), "{problems:?}");
        s
    }

    #[test]
    fn matching_table() {
        let path = settings(&[]);
        let host = settings(&[
            ("EDGEGATE_ADMIN_HOST", "Admin.Example.com"),
            ("EDGEGATE_ADMIN_PREFIX", "/"),
        ]);
        let ep = |s: &str| Some(AdminMatch::Endpoint(s.to_string()));
        let table: Vec<(&AdminSettings, &str, &str, Option<AdminMatch>)> = vec![
            (
                &path,
                "api.example.com",
                "/__edgegate/admin/health",
                ep("/health"),
            ),
            (&path, "x", "/__edgegate/admin", ep("")),
            (&path, "x", "/__edgegate/%61dmin/health", ep("/health")),
            (&path, "x", "/__edgegate/administrator", None),
            (&path, "x", "/users/1", None),
            (&path, "x", "/__edgegate/admin/../x", None),
            (&host, "admin.example.com:443", "/health", ep("/health")),
            (&host, "api.example.com", "/health", None),
            (
                &host,
                "admin.example.com",
                "/a/../b",
                Some(AdminMatch::Outside),
            ),
        ];
        for (s, h, p, want) in table {
            assert_eq!(s.matches(h, p), want, "{h} {p}");
        }
        let mut custom = settings(&[("EDGEGATE_ADMIN_PREFIX", "/ops/")]);
        assert_eq!(custom.prefix(), "/ops");
        assert_eq!(custom.matches("h", "/ops/health"), ep("/health"));
        custom = AdminSettings::from_vars(|n| (n == "EDGEGATE_ADMIN_PREFIX").then(|| "/".into())).0;
        assert_eq!(custom.prefix(), DEFAULT_PREFIX, "root needs a host");
    }

    #[test]
    fn reserved_paths_table() {
        let s = settings(&[]);
        let doc = |base: &str, versions: &str, path: &str| {
            format!(
                r#"{{"pools":{{"p":{{"instances":[{{"url":"http://b:1"}}]}}}},
                "apis":[{{"name":"a","base_path":"{base}",{versions}
                "routes":[{{"name":"r","path":"{path}"}}]}}]}}"#
            )
        };
        let unversioned = r#""pool":"p","#;
        let versioned = r#""versions":[{"name":"__edgegate","pool":"p"}],"#;
        let table = [
            ("/", unversioned, "/users/{id}", None),
            (
                "/",
                unversioned,
                "/{*rest}",
                Some("$.apis[0].routes[0].path"),
            ),
            (
                "/",
                unversioned,
                "/{a}/{b}",
                Some("$.apis[0].routes[0].path"),
            ),
            ("/", unversioned, "/{a}", None),
            (
                "/",
                unversioned,
                "/__edgegate/admin/x",
                Some("$.apis[0].routes[0].path"),
            ),
            ("/", unversioned, "/__edgegate/other", None),
            (
                "/__edgegate",
                unversioned,
                "/admin",
                Some("$.apis[0].routes[0].path"),
            ),
            (
                "/__edgegate/admin",
                unversioned,
                "/x",
                Some("$.apis[0].base_path"),
            ),
            (
                "/",
                versioned,
                "/admin/{*x}",
                Some("$.apis[0].routes[0].path"),
            ),
            ("/", versioned, "/other", None),
        ];
        for (base, versions, path, want) in table {
            let text = doc(base, versions, path);
            crate::config::compile(&text, "v").expect("valid config");
            let got = s.check_config(&text).err().map(|e| e.0[0].path.clone());
            assert_eq!(got.as_deref(), want, "{base} {path}");
        }
        let hosted = settings(&[("EDGEGATE_ADMIN_HOST", "admin.example.com")]);
        let text = doc("/", unversioned, "/{*rest}");
        assert!(
            hosted.check_config(&text).is_ok(),
            "host mode leaves paths alone"
        );
        let with_host = text.replace(
            r#""path":"/{*rest}""#,
            r#""path":"/x","host":"*.example.com""#,
        );
        let errs = hosted.check_config(&with_host).expect_err("host conflict");
        assert_eq!(errs.0[0].path, "$.apis[0].routes[0].host");
    }
}
