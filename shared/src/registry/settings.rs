//! The sync's deployment settings, read from named variables (Worker vars and secrets; Spin
//! variables).

use crate::bundle::PublicKeyEntry;
use std::fmt;

/// The Registry's URL (unset: sync off).
pub const URL_VAR: &str = "EDGEGATE_REGISTRY_URL";
/// The bearer token (a secret).
pub const TOKEN_VAR: &str = "EDGEGATE_REGISTRY_TOKEN";
/// Comma-separated public keys `ed25519:<base64url>` (two during a rotation).
pub const KEYS_VAR: &str = "EDGEGATE_REGISTRY_KEYS";
/// `true` to accept unsigned bundles (default `false`).
pub const ALLOW_UNSIGNED_VAR: &str = "EDGEGATE_REGISTRY_ALLOW_UNSIGNED";
/// How many versions to keep (default 10).
pub const KEEP_VAR: &str = "EDGEGATE_KEEP_VERSIONS";
/// The fetch timeout in ms (default 10000).
pub const TIMEOUT_VAR: &str = "EDGEGATE_REGISTRY_TIMEOUT_MS";
/// The first backoff after a failed sync in ms (default 60000, one cron tick); it doubles
/// with each further failure, up to 32 times this.
pub const BACKOFF_VAR: &str = "EDGEGATE_REGISTRY_BACKOFF_MS";

/// The most versions [`KEEP_VAR`] may keep (each is a KV value; retention lists them).
pub const MAX_KEEP: usize = 100;

/// How the sync reaches and trusts the Registry.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// The bundle's URL (https, or http to a loopback host for local runs).
    pub url: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
    /// The keys a bundle's signature must verify with (one of them).
    pub keys: Vec<PublicKeyEntry>,
    /// Accept unsigned bundles (only when explicitly configured).
    pub allow_unsigned: bool,
    /// Versions kept in KV, the active one included (1..=[`MAX_KEEP`]).
    pub keep_versions: usize,
    /// Give up on the Registry after this long (whole exchange).
    pub timeout_ms: u64,
    /// The first backoff after a failure; doubles per consecutive failure.
    pub backoff_ms: u64,
}

/// The token never appears in debug output or logs.
impl fmt::Debug for RegistrySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrySettings")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "keys",
                &self.keys.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
            )
            .field("allow_unsigned", &self.allow_unsigned)
            .field("keep_versions", &self.keep_versions)
            .field("timeout_ms", &self.timeout_ms)
            .field("backoff_ms", &self.backoff_ms)
            .finish()
    }
}

/// Settings that cannot be used: which variable and why. The sync does not run with them
/// (it never falls back to an unsigned or otherwise weaker sync).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// The variable's name.
    pub variable: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for SettingsError {}

impl From<SettingsError> for super::RegistryError {
    fn from(e: SettingsError) -> Self {
        super::RegistryError::new("settings_invalid", e.to_string())
    }
}

fn err(variable: &'static str, message: impl Into<String>) -> SettingsError {
    SettingsError {
        variable,
        message: message.into(),
    }
}

impl RegistrySettings {
    /// Reads the settings through `var` (a variable's value, `None` if unset; empty values
    /// count as unset). Runs on every cron tick (cheap).
    ///
    /// Returns `Ok(None)` when [`URL_VAR`] is unset: sync is off.
    ///
    /// Errors: a URL that is not https (plain http only to localhost / 127.0.0.1 / [::1], so a
    /// token never crosses a network in clear), a key that does not parse, no key while
    /// unsigned bundles are not allowed, [`ALLOW_UNSIGNED_VAR`] other than `true`/`false`,
    /// numbers out of range.
    pub fn from_vars(
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<RegistrySettings>, SettingsError> {
        let get = |name: &str| {
            var(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(url) = get(URL_VAR) else {
            return Ok(None);
        };
        check_url(&url)?;
        let allow_unsigned = match get(ALLOW_UNSIGNED_VAR).map(|v| v.to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "false" => false,
            Some(v) if v == "true" => true,
            Some(v) => {
                return Err(err(
                    ALLOW_UNSIGNED_VAR,
                    format!("`{v}` is not true or false"),
                ))
            }
        };
        let mut keys = Vec::new();
        for (i, text) in get(KEYS_VAR)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .enumerate()
        {
            let key = PublicKeyEntry::parse(text)
                .map_err(|e| err(KEYS_VAR, format!("key {}: {e}", i + 1)))?;
            if !keys.iter().any(|k: &PublicKeyEntry| k.key_id == key.key_id) {
                keys.push(key);
            }
        }
        if keys.is_empty() && !allow_unsigned {
            return Err(err(
                KEYS_VAR,
                format!("no public key: set at least one `ed25519:<base64url>` key (or {ALLOW_UNSIGNED_VAR}=true to accept unsigned bundles)"),
            ));
        }
        let number = |name: &'static str, default: u64, min: u64, max: u64| match get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| err(name, format!("`{v}` is not a number in {min}..={max}"))),
        };
        Ok(Some(RegistrySettings {
            url,
            token: get(TOKEN_VAR),
            keys,
            allow_unsigned,
            keep_versions: number(KEEP_VAR, 10, 2, MAX_KEEP as u64)? as usize,
            timeout_ms: number(TIMEOUT_VAR, 10_000, 1, 600_000)?,
            backoff_ms: number(BACKOFF_VAR, 60_000, 1, 86_400_000)?,
        }))
    }
}

fn check_url(url: &str) -> Result<(), SettingsError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| err(URL_VAR, "not an absolute URL"))?;
    if !crate::auth::is_unambiguous_url(url) {
        return Err(err(
            URL_VAR,
            "no user info, backslashes, spaces or control characters (URL parsers disagree on them; the token goes to this URL)",
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(err(URL_VAR, "no host"));
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => Ok(()),
        "http" if crate::auth::is_loopback_http(url) => Ok(()),
        "http" => Err(err(
            URL_VAR,
            "plain http is allowed only to localhost (the bearer token would travel in clear)",
        )),
        other => Err(err(URL_VAR, format!("unsupported scheme `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY_A: &str = "ed25519:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE";
    const KEY_B: &str = "ed25519:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI";

    fn parse(vars: &[(&str, &str)]) -> Result<Option<RegistrySettings>, SettingsError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RegistrySettings::from_vars(|n| map.get(n).cloned())
    }

    #[test]
    fn settings_table() {
        let url = (URL_VAR, "https://registry.example/bundle");
        // (vars, Ok(keys, allow_unsigned, keep) | Err(variable))
        type Want = Result<(usize, bool, usize), &'static str>;
        let both = format!("{KEY_A}, {KEY_B}");
        let twice = format!("{KEY_A},{KEY_A}");
        let cases: Vec<(Vec<(&str, &str)>, Want)> = vec![
            (vec![(KEYS_VAR, KEY_A), url], Ok((1, false, 10))),
            (
                vec![(KEYS_VAR, &both), url, (KEEP_VAR, "3")],
                Ok((2, false, 3)),
            ),
            (vec![(KEYS_VAR, &twice), url], Ok((1, false, 10))),
            (vec![url, (ALLOW_UNSIGNED_VAR, "TRUE")], Ok((0, true, 10))),
            (vec![url], Err(KEYS_VAR)),
            (vec![url, (KEYS_VAR, " , ")], Err(KEYS_VAR)),
            (vec![url, (ALLOW_UNSIGNED_VAR, "false")], Err(KEYS_VAR)),
            (
                vec![url, (KEYS_VAR, KEY_A), (ALLOW_UNSIGNED_VAR, "yes")],
                Err(ALLOW_UNSIGNED_VAR),
            ),
            (vec![url, (KEYS_VAR, "ed25519:short")], Err(KEYS_VAR)),
            (vec![url, (KEYS_VAR, KEY_A), (KEEP_VAR, "0")], Err(KEEP_VAR)),
            // The previous version must stay: isolates elsewhere may still read it.
            (vec![url, (KEYS_VAR, KEY_A), (KEEP_VAR, "1")], Err(KEEP_VAR)),
            (
                vec![url, (KEYS_VAR, KEY_A), (KEEP_VAR, "ten")],
                Err(KEEP_VAR),
            ),
            (
                vec![url, (KEYS_VAR, KEY_A), (TIMEOUT_VAR, "0")],
                Err(TIMEOUT_VAR),
            ),
            (
                vec![(URL_VAR, "http://registry.example/b"), (KEYS_VAR, KEY_A)],
                Err(URL_VAR),
            ),
            (
                vec![
                    (URL_VAR, "http://evil.example\\@localhost/b"),
                    (KEYS_VAR, KEY_A),
                ],
                Err(URL_VAR),
            ),
            (
                vec![
                    (URL_VAR, "https://user:pw@registry.example/b"),
                    (KEYS_VAR, KEY_A),
                ],
                Err(URL_VAR),
            ),
            (
                vec![
                    (URL_VAR, "http://localhost@evil.example/b"),
                    (KEYS_VAR, KEY_A),
                ],
                Err(URL_VAR),
            ),
            (
                vec![(URL_VAR, "http://127.0.0.1:8080/b"), (KEYS_VAR, KEY_A)],
                Ok((1, false, 10)),
            ),
            (
                vec![(URL_VAR, "http://[::1]:8080/b"), (KEYS_VAR, KEY_A)],
                Ok((1, false, 10)),
            ),
            (
                vec![
                    (URL_VAR, "http://localhost.evil.example/b"),
                    (KEYS_VAR, KEY_A),
                ],
                Err(URL_VAR),
            ),
            (
                vec![
                    (URL_VAR, "http://127.0.0.1@evil.example/b"),
                    (KEYS_VAR, KEY_A),
                ],
                Err(URL_VAR),
            ),
            (
                vec![(URL_VAR, "ftp://registry.example/b"), (KEYS_VAR, KEY_A)],
                Err(URL_VAR),
            ),
            (
                vec![(URL_VAR, "registry.example"), (KEYS_VAR, KEY_A)],
                Err(URL_VAR),
            ),
        ];
        for (vars, want) in cases {
            match (parse(&vars), want) {
                (Ok(Some(s)), Ok((keys, unsigned, keep))) => {
                    assert_eq!(
                        (s.keys.len(), s.allow_unsigned, s.keep_versions),
                        (keys, unsigned, keep),
                        "{vars:?}"
                    );
                }
                (Err(e), Err(var)) => assert_eq!(e.variable, var, "{vars:?}: {e}"),
                (got, want) => panic!("{vars:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(parse(&[]).ok(), Some(None), "no URL: sync off");
        assert_eq!(parse(&[(URL_VAR, "  ")]).ok(), Some(None));
    }

    #[test]
    fn the_token_is_never_printed() {
        let s = parse(&[
            (URL_VAR, "https://r.example/b"),
            (KEYS_VAR, KEY_A),
            (TOKEN_VAR, "s3cret-token"),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(s.token.as_deref(), Some("s3cret-token"));
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
