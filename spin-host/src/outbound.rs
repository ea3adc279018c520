//! `allowed_outbound_hosts`: which destinations a component may reach, as `spin up` enforces
//! it for outbound HTTP (`wasi:http/outgoing-handler`) and Redis.
//!
//! Patterns follow spin.toml: `scheme://host[:port]`, where
//! - scheme is a name (`http`, `https`, `redis`) or `*`;
//! - host is a name or IP literal (compared case-insensitively), `*`, or `*.suffix`
//!   (any name ending in `.suffix`, not `suffix` itself);
//! - port is a number, `*`, or an inclusive range `A..B`; when omitted, the scheme's default
//!   port (http 80, https 443, redis 6379); a `*` scheme needs an explicit port.
//!
//! A denied HTTP request fails with `error-code.HTTP-request-denied`, the error Spin gives.
//! An allowed one is sent by [`crate::send`] (http; https only with the `https` feature).

use std::future::Future;
use std::sync::Arc;
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

/// The parsed `allowed_outbound_hosts` list. Empty: nothing is allowed (Spin's default).
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq)]
struct Pattern {
    scheme: Option<String>,
    host: HostPattern,
    ports: (u16, u16),
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Suffix(String),
    Exact(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses every pattern; the error names the first that is not `scheme://host[:port]`.
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p).map_err(|e| format!("{p:?}: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Self { patterns })
    }

    /// Whether `scheme://host:port` may be reached. `port` None means the scheme's default.
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let scheme = scheme.to_ascii_lowercase();
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let Some(port) = port.or_else(|| default_port(&scheme)) else {
            return false;
        };
        self.patterns.iter().any(|p| {
            p.scheme.as_deref().is_none_or(|s| s == scheme)
                && port >= p.ports.0
                && port <= p.ports.1
                && match &p.host {
                    HostPattern::Any => true,
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Suffix(s) => {
                        host.len() > s.len() + 1
                            && host.ends_with(s.as_str())
                            && host.as_bytes()[host.len() - s.len() - 1] == b'.'
                    }
                }
        })
    }

    /// Whether a URL string (`redis://host:port`, `http://host/…`) may be reached; false for
    /// anything that does not parse as `scheme://authority`.
    pub fn allows_url(&self, url: &str) -> bool {
        let Some((scheme, rest)) = url.split_once("://") else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit('@').next().unwrap_or_default();
        match split_host_port(authority) {
            Ok((host, port)) => {
                let port = match port {
                    Some(p) => match p.parse::<u16>() {
                        Ok(p) => Some(p),
                        Err(_) => return false,
                    },
                    None => None,
                };
                !host.is_empty() && self.allows(scheme, host, port)
            }
            Err(_) => false,
        }
    }
}

/// `host`, `host:port`, `[v6]`, `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unclosed [".to_string())?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("junk after ]: {after:?}")),
        };
    }
    Ok(match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

impl Pattern {
    fn parse(s: &str) -> Result<Self, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| "expected scheme://host[:port]".to_string())?;
        if rest.contains(['/', '?', '#', '@']) {
            return Err("only scheme://host[:port], no path".to_string());
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_host_port(rest)?;
        let host = host.to_ascii_lowercase();
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            HostPattern::Suffix(suffix.to_string())
        } else if host.is_empty() || host.contains('*') {
            return Err(format!("bad host {host:?}"));
        } else {
            HostPattern::Exact(host)
        };
        let ports = match port {
            Some("*") => (0, u16::MAX),
            Some(p) => match p.split_once("..") {
                Some((a, b)) => (parse_port(a)?, parse_port(b)?),
                None => {
                    let p = parse_port(p)?;
                    (p, p)
                }
            },
            None => {
                let p = default_port(&scheme).ok_or_else(|| {
                    format!("scheme {scheme:?} has no default port: give one or *")
                })?;
                (p, p)
            }
        };
        Ok(Self {
            scheme: (scheme != "*").then_some(scheme),
            host,
            ports,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse().map_err(|_| format!("bad port {p:?}"))
}

/// The `wasi:http` hooks of one request: outbound requests go out only to allowed hosts.
pub struct OutboundHooks {
    /// The host's allow list, shared by every request.
    pub allowed: Arc<AllowedHosts>,
}

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_string();
        let host = uri.host().unwrap_or_default().to_string();
        let port = uri.port_u16();
        if !self.allowed.allows(&scheme, &host, port) {
            eprintln!(
                "[edgegate-spin-host] outbound request to {scheme}://{host}{} denied: \
                 not in allowed_outbound_hosts",
                port.map(|p| format!(":{p}")).unwrap_or_default()
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        match scheme.as_str() {
            "http" => Box::new(crate::send::send_http(request, options)),
            #[cfg(feature = "https")]
            "https" => {
                let default: &mut dyn WasiHttpHooks = Default::default();
                default.send_request(request, options, fut)
            }
            _ => {
                let _ = fut;
                let why = format!(
                    "outbound {scheme}:// is not supported by this build of edgegate-spin-host \
                     (http only; build it with --features https for https)"
                );
                eprintln!("[edgegate-spin-host] {why}");
                Box::new(async move { Err(wasmtime_wasi_http::Error::InternalError(Some(why))) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(p: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_default_ports_and_wildcards() {
        let h = hosts(&[
            "https://idp.example.com",
            "http://127.0.0.1:8080",
            "http://*.svc.local:*",
            "*://localhost:9000..9002",
        ]);
        assert!(h.allows("https", "IDP.example.com", None));
        assert!(h.allows("https", "idp.example.com", Some(443)));
        assert!(!h.allows("https", "idp.example.com", Some(8443)));
        assert!(!h.allows("http", "idp.example.com", None));
        assert!(h.allows("http", "127.0.0.1", Some(8080)));
        assert!(!h.allows("http", "127.0.0.1", Some(8081)));
        assert!(h.allows("http", "a.svc.local", Some(1)));
        assert!(!h.allows("http", "svc.local", Some(1)));
        assert!(!h.allows("http", "evilsvc.local", Some(1)));
        assert!(h.allows("redis", "localhost", Some(9001)));
        assert!(!h.allows("redis", "localhost", Some(9003)));
        assert!(!AllowedHosts::default().allows("http", "127.0.0.1", Some(80)));
    }

    #[test]
    fn urls_and_bad_patterns() {
        let h = hosts(&["redis://127.0.0.1:6379", "http://[::1]:80"]);
        assert!(h.allows_url("redis://127.0.0.1:6379"));
        assert!(h.allows_url("redis://127.0.0.1"));
        assert!(!h.allows_url("redis://127.0.0.2:6379"));
        assert!(h.allows_url("http://[::1]/x"));
        assert!(!h.allows_url("127.0.0.1:6379"));
        for bad in [
            "127.0.0.1",
            "http://a/b",
            "*://x",
            "http://a:x",
            "http://a*b",
        ] {
            assert!(
                AllowedHosts::parse(&[bad.to_string()]).is_err(),
                "{bad} should fail"
            );
        }
    }
}
