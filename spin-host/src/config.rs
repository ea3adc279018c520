//! The host's command line: what to run, where to listen, and what the component may reach.
//!
//! ```text
//! edgegate-spin-host --component app.wasm [--listen 127.0.0.1:0] [--admin-listen 127.0.0.1:0]
//!     [--kv-store NAME]... [--kv-dir DIR] [--kv-put STORE:KEY=VALUE]... [--kv-put-file STORE:KEY=PATH]...
//!     [--variable NAME=VALUE]... [--allowed-outbound-hosts URL]... [--redis redis://127.0.0.1:6379]
//!     [--compile-cache DIR|off]
//! ```
//!
//! Every flag may also be written `--flag=value`. Repeatable flags add up; a comma-separated
//! value of `--kv-store` or `--allowed-outbound-hosts` is split, as in spin.toml lists.

use crate::outbound::AllowedHosts;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything the host needs to run one component, parsed from the command line.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The spin-sdk component (`wasm32-wasip2`, exports `wasi:http/incoming-handler`).
    pub component: PathBuf,
    /// Where the component is served (port 0: any free port; the bound one is printed).
    pub listen: SocketAddr,
    /// Where the admin endpoint (key-value seeding and inspection) is served.
    pub admin_listen: SocketAddr,
    /// Key-value store labels the component may open (spin.toml `key_value_stores`).
    pub kv_stores: Vec<String>,
    /// When set, every store is kept in `<dir>/<label>.json` and reloaded at start.
    pub kv_dir: Option<PathBuf>,
    /// Values put into stores before the first request: (store, key, value).
    pub kv_seed: Vec<(String, String, Vec<u8>)>,
    /// Application variables (spin.toml `[variables]`), by lower-case name.
    pub variables: BTreeMap<String, String>,
    /// Outbound destinations the component may reach (spin.toml `allowed_outbound_hosts`).
    pub allowed_outbound_hosts: AllowedHosts,
    /// The Redis address a test points the component at; it is also allowed as an outbound
    /// host, as `spin up` requires `redis://…` in `allowed_outbound_hosts`.
    pub redis: Option<String>,
    /// Where the compiled component is cached ([`crate::compile`]); None: not cached.
    pub compile_cache: Option<PathBuf>,
}

/// The usage text printed for `--help` and after a command-line error.
pub const USAGE: &str = "usage: edgegate-spin-host --component FILE.wasm [--listen ADDR] \
[--admin-listen ADDR] [--kv-store NAME]... [--kv-dir DIR] [--kv-put STORE:KEY=VALUE]... \
[--kv-put-file STORE:KEY=PATH]... [--variable NAME=VALUE]... [--allowed-outbound-hosts URL]... \
[--redis redis://HOST:PORT] [--compile-cache DIR|off]";

impl HostConfig {
    /// Parses the arguments after the program name.
    ///
    /// Errors name the offending flag or value; nothing is opened or read except the files
    /// named by `--kv-put-file`. With no `--kv-store`, the store `default` is allowed, as in
    /// a spin.toml that lists `key_value_stores = ["default"]`.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Self, String> {
        let mut component = None;
        let mut listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut admin_listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let mut kv_stores = Vec::new();
        let mut kv_dir = None;
        let mut kv_seed = Vec::new();
        let mut variables = BTreeMap::new();
        let mut allowed = Vec::new();
        let mut redis = None;
        let mut compile_cache = crate::compile::default_cache_dir();

        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.to_string());
            }
            let mut value = || -> Result<String, String> {
                match inline.clone() {
                    Some(v) => Ok(v),
                    None => args.next().ok_or_else(|| format!("{flag} needs a value")),
                }
            };
            match flag.as_str() {
                "--component" => component = Some(PathBuf::from(value()?)),
                "--listen" => listen = parse_addr(&flag, &value()?)?,
                "--admin-listen" => admin_listen = parse_addr(&flag, &value()?)?,
                "--kv-store" => kv_stores.extend(split_list(&value()?)),
                "--kv-dir" => kv_dir = Some(PathBuf::from(value()?)),
                "--kv-put" => {
                    let (store, key, v) = parse_seed(&flag, &value()?)?;
                    kv_seed.push((store, key, v.into_bytes()));
                }
                "--kv-put-file" => {
                    let (store, key, path) = parse_seed(&flag, &value()?)?;
                    let bytes = std::fs::read(&path)
                        .map_err(|e| format!("{flag}: cannot read {path}: {e}"))?;
                    kv_seed.push((store, key, bytes));
                }
                "--variable" | "--variables" => {
                    let v = value()?;
                    let (name, val) = v
                        .split_once('=')
                        .ok_or_else(|| format!("{flag} {v:?}: expected NAME=VALUE"))?;
                    crate::variables::validate_name(name)
                        .map_err(|e| format!("{flag} {name:?}: {e}"))?;
                    variables.insert(name.to_string(), val.to_string());
                }
                "--allowed-outbound-hosts" | "--allowed-outbound-host" => {
                    allowed.extend(split_list(&value()?))
                }
                "--redis" => redis = Some(value()?),
                "--compile-cache" => {
                    let v = value()?;
                    compile_cache = (v != "off").then(|| PathBuf::from(v));
                }
                other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
            }
        }
        let component = component.ok_or_else(|| format!("--component is required\n{USAGE}"))?;
        if kv_stores.is_empty() {
            kv_stores.push("default".to_string());
        }
        if let Some(r) = &redis {
            allowed.push(r.clone());
        }
        let allowed_outbound_hosts =
            AllowedHosts::parse(&allowed).map_err(|e| format!("--allowed-outbound-hosts: {e}"))?;
        Ok(Self {
            component,
            listen,
            admin_listen,
            kv_stores,
            kv_dir,
            kv_seed,
            variables,
            allowed_outbound_hosts,
            redis,
            compile_cache,
        })
    }
}

fn parse_addr(flag: &str, v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|e| format!("{flag} {v:?}: not an address like 127.0.0.1:0 ({e})"))
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// `STORE:KEY=VALUE` → (store, key, value). The key may contain `:` (the first one splits).
fn parse_seed(flag: &str, v: &str) -> Result<(String, String, String), String> {
    let (target, value) = v
        .split_once('=')
        .ok_or_else(|| format!("{flag} {v:?}: expected STORE:KEY=VALUE"))?;
    let (store, key) = target
        .split_once(':')
        .ok_or_else(|| format!("{flag} {v:?}: expected STORE:KEY=VALUE"))?;
    if store.is_empty() || key.is_empty() {
        return Err(format!("{flag} {v:?}: empty store or key"));
    }
    Ok((store.to_string(), key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_every_flag() {
        let c = HostConfig::parse(args(&[
            "--component",
            "x.wasm",
            "--listen=127.0.0.1:8080",
            "--kv-store",
            "default,config",
            "--kv-put",
            "config:config:active=v1",
            "--variable",
            "api_key=s3cret=x",
            "--allowed-outbound-hosts",
            "http://127.0.0.1:*",
            "--redis",
            "redis://127.0.0.1:6379",
        ]))
        .unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert_eq!(c.kv_stores, ["default", "config"]);
        assert_eq!(
            c.kv_seed,
            [("config".into(), "config:active".into(), b"v1".to_vec())]
        );
        assert_eq!(c.variables["api_key"], "s3cret=x");
        assert!(c
            .allowed_outbound_hosts
            .allows("redis", "127.0.0.1", Some(6379)));
    }

    #[test]
    fn refuses_bad_input() {
        assert!(HostConfig::parse(args(&["--listen", "1"])).is_err());
        assert!(HostConfig::parse(args(&["--component", "x", "--variable", "Bad=1"])).is_err());
        assert!(HostConfig::parse(args(&["--component", "x", "--kv-put", "nokey"])).is_err());
        assert!(HostConfig::parse(args(&["--component", "x", "--bogus"])).is_err());
        assert_eq!(
            HostConfig::parse(args(&["--component", "x"]))
                .unwrap()
                .kv_stores,
            ["default"]
        );
    }
}
