//! The Registry snapshot as JSON: what the Registry delivers, before it is encoded
//! ([`super::codec`]) and indexed ([`super::Snapshot`]).
//!
//! Every struct denies unknown fields: a snapshot is produced by our own sync job, so an
//! unknown member is a version skew to be refused, not ignored. [`from_json`] parses a document
//! and checks the rules serde cannot express (unique ids, references that resolve, CIDRs,
//! validity windows), reporting each problem with its JSON path.

use crate::auth::CredentialStatus;
use crate::config::{ConfigError, ConfigErrors};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The most entries one list of a record may hold (versions, scopes, metadata, each CIDR list):
/// the index stores list lengths in 16 bits.
pub const MAX_LIST_LEN: usize = u16::MAX as usize;

/// A whole Registry snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDoc {
    /// The Registry's name for this snapshot (e.g. a timestamp or sequence number); logged with
    /// every decision taken from it.
    pub version: String,
    /// The API consumers (organisations or people).
    #[serde(default)]
    pub consumers: Vec<Consumer>,
    /// The consumers' applications.
    #[serde(default)]
    pub applications: Vec<Application>,
    /// API keys and client certificates.
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Plans that subscriptions refer to.
    #[serde(default)]
    pub plans: Vec<Plan>,
    /// Which application may call which API, where and how.
    #[serde(default)]
    pub subscriptions: Vec<Subscription>,
}

/// Whether a consumer may call anything at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerStatus {
    /// In good standing.
    Active,
    /// Blocked for now (e.g. unpaid).
    Suspended,
}

/// An API consumer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Unique among consumers.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Whether it may call anything.
    pub status: ConsumerStatus,
}

/// An application of a consumer; subscriptions and credentials belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Unique among applications.
    pub id: String,
    /// The owning consumer.
    pub consumer_id: String,
    /// Display name.
    pub name: String,
}

/// What kind of secret a credential record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// An API key, keyed by the hex SHA-256 of the key (as [`crate::auth::credential_key`]).
    ApiKey,
    /// A client certificate, keyed by the hex SHA-256 fingerprint of its DER.
    Certificate,
}

/// A credential record: the fields of [`crate::auth::CredentialRecord`] plus its kind
/// and key, so the snapshot can later replace the per-key store reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// API key or certificate.
    pub kind: CredentialKind,
    /// 64 lowercase hex digits: SHA-256 of the API key, or the certificate's SHA-256
    /// fingerprint. Unique per kind.
    pub key: String,
    /// The consumer it belongs to.
    pub consumer_id: String,
    /// The application it was issued to.
    #[serde(default)]
    pub application_id: Option<String>,
    /// Whether it may be used.
    pub status: CredentialStatus,
    /// Unix seconds after which it is expired.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Scopes granted with it.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The environment it is for (`production`, `sandbox`, ...), for environment isolation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
}

/// A plan: a tier and the rate plan the rate limiter applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Unique among plans.
    pub id: String,
    /// Commercial tier, e.g. `free`, `gold`.
    pub tier: String,
    /// The rate plan's name, resolved by the rate limiter.
    pub rate_plan: String,
}

/// Whether a subscription grants access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Grants access (within its validity window).
    Active,
    /// Withdrawn for now.
    Suspended,
    /// Ended.
    Expired,
}

/// Feature flags of a subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionFlags {
    /// The canary group its requests are steered to, if any.
    #[serde(default)]
    pub canary_group: Option<String>,
    /// Whether it may receive personal data.
    #[serde(default)]
    pub pii_access: bool,
    /// A priority subscription: rate limits do not apply to it.
    #[serde(default)]
    pub priority: bool,
}

/// An application's subscription to an API in one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Unique among subscriptions.
    pub id: String,
    /// The subscribed application.
    pub application_id: String,
    /// The API's name.
    pub api: String,
    /// The API versions covered; `["*"]` covers all. Never empty.
    pub versions: Vec<String>,
    /// The environment, e.g. `production`, `sandbox`.
    pub environment: String,
    /// The plan it is billed and limited under.
    pub plan_id: String,
    /// Whether it grants access.
    pub status: SubscriptionStatus,
    /// Unix seconds from which it is valid.
    #[serde(default)]
    pub valid_from: Option<i64>,
    /// Unix seconds from which it is no longer valid.
    #[serde(default)]
    pub valid_until: Option<i64>,
    /// Scopes it grants.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// When not empty, only these client networks may use it.
    #[serde(default)]
    pub ip_allow: Vec<Cidr>,
    /// Client networks that may never use it (checked before `ip_allow`).
    #[serde(default)]
    pub ip_deny: Vec<Cidr>,
    /// Feature flags.
    #[serde(default)]
    pub flags: SubscriptionFlags,
    /// Free-form data passed along (e.g. to the backend or the access log).
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

// === CIDR ===

/// An IPv4 or IPv6 network: an address whose host bits are zero, and a prefix length.
///
/// Written `192.0.2.0/24`, `2001:db8::/32`; a bare address is a single host (`/32`, `/128`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The address part is not an IPv4 or IPv6 address.
    BadAddress,
    /// The prefix is not a decimal number within the family's bit length.
    BadPrefix,
    /// Bits beyond the prefix are set (ambiguous: `10.0.0.1/8`).
    HostBitsSet,
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CidrError::BadAddress => "not an IPv4 or IPv6 address",
            CidrError::BadPrefix => "prefix length missing or out of range",
            CidrError::HostBitsSet => "bits beyond the prefix length are set",
        })
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The network of `addr` with `prefix` bits.
    ///
    /// Errors: `BadPrefix` beyond 32 (IPv4) / 128 (IPv6); `HostBitsSet` if `addr` has bits
    /// beyond the prefix.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(CidrError::BadPrefix);
        }
        let c = Cidr { addr, prefix };
        if c.bits() & !c.mask() != 0 {
            return Err(CidrError::HostBitsSet);
        }
        Ok(c)
    }

    /// The network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this network. An IPv4 address never matches an IPv6 network and
    /// the reverse (IPv4-mapped IPv6 addresses are not unmapped: the platform reports the
    /// client's address as it connected).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                let probe = Cidr {
                    addr: ip,
                    prefix: self.prefix,
                };
                probe.bits() & self.mask() == self.bits()
            }
            _ => false,
        }
    }

    /// The address left-aligned in 128 bits (IPv4 in the top 32).
    fn bits(&self) -> u128 {
        match self.addr {
            IpAddr::V4(a) => (u32::from(a) as u128) << 96,
            IpAddr::V6(a) => u128::from(a),
        }
    }

    /// `prefix` leading one bits, left-aligned like [`Cidr::bits`].
    fn mask(&self) -> u128 {
        match self.prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        }
    }

    /// The address bytes: 4 for IPv4, 16 for IPv6.
    pub(crate) fn octets(&self) -> ([u8; 16], usize) {
        let mut out = [0u8; 16];
        match self.addr {
            IpAddr::V4(a) => {
                out[..4].copy_from_slice(&a.octets());
                (out, 4)
            }
            IpAddr::V6(a) => (a.octets(), 16),
        }
    }

    /// Rebuilds from [`Cidr::octets`]' form; `v6` selects the family.
    pub(crate) fn from_octets(v6: bool, bytes: [u8; 16], prefix: u8) -> Result<Cidr, CidrError> {
        let addr = if v6 {
            IpAddr::V6(Ipv6Addr::from(bytes))
        } else {
            IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
        };
        Cidr::new(addr, prefix)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// Parses `addr/prefix` or a bare address (a host network).
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| CidrError::BadAddress)?;
        let prefix = match prefix {
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            // `u8::from_str` accepts a leading `+`; a prefix is plain digits, at most three.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| CidrError::BadPrefix)?
            }
            Some(_) => return Err(CidrError::BadPrefix),
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format!("CIDR `{s}`: {e}")))
    }
}

// === parsing and validation ===

/// Parses a snapshot document and checks it.
///
/// Runs where a snapshot is built (the Registry sync, tests), not per request. Errors: every
/// problem, each with its JSON path (`$.subscriptions[3].plan_id`): not JSON, a structural
/// error (serde: unknown field, wrong type, bad CIDR; only the first is reported), or every
/// rule of [`validate`] that fails.
pub fn from_json(text: &str) -> Result<SnapshotDoc, ConfigErrors> {
    let mut de = serde_json::Deserializer::from_str(text);
    let doc: SnapshotDoc = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let path = match path.as_str() {
            // `?`: the error is not inside any value (e.g. the text ends early).
            "." | "" | "?" => "$".to_string(),
            p if p.starts_with('[') => format!("${p}"),
            p => format!("$.{p}"),
        };
        ConfigErrors(vec![ConfigError::new(path, e.inner().to_string())])
    })?;
    de.end()
        .map_err(|e| ConfigErrors(vec![ConfigError::new("$", e.to_string())]))?;
    validate(&doc)?;
    Ok(doc)
}

/// Checks the rules serde cannot: ids unique (credentials: per kind and key), every reference
/// resolves (application → consumer, credential → consumer and application, subscription →
/// application and plan), credential keys are 64 lowercase hex digits, `versions` is not
/// empty, validity times are unix seconds from 1970 to 2106 (the index keeps them in 32 bits)
/// and `valid_from < valid_until` when both are set, and no list exceeds
/// [`MAX_LIST_LEN`].
///
/// Errors: all failures, each with its JSON path.
pub fn validate(doc: &SnapshotDoc) -> Result<(), ConfigErrors> {
    let mut errors = Vec::new();
    let mut err = |path: String, msg: String| errors.push(ConfigError::new(path, msg));

    fn unique<'a>(
        ids: impl Iterator<Item = &'a str>,
        what: &str,
        err: &mut impl FnMut(String, String),
    ) -> HashMap<&'a str, usize> {
        let mut seen = HashMap::new();
        for (i, id) in ids.enumerate() {
            if let Some(first) = seen.insert(id, i) {
                seen.insert(id, first);
                err(
                    format!("$.{what}[{i}].id"),
                    format!("`{id}` repeats {what}[{first}]"),
                );
            }
        }
        seen
    }
    let consumers = unique(
        doc.consumers.iter().map(|c| c.id.as_str()),
        "consumers",
        &mut err,
    );
    let apps = unique(
        doc.applications.iter().map(|a| a.id.as_str()),
        "applications",
        &mut err,
    );
    let plans = unique(doc.plans.iter().map(|p| p.id.as_str()), "plans", &mut err);
    unique(
        doc.subscriptions.iter().map(|s| s.id.as_str()),
        "subscriptions",
        &mut err,
    );

    let list = |path: String, len: usize, err: &mut dyn FnMut(String, String)| {
        if len > MAX_LIST_LEN {
            err(path, format!("{len} entries (at most {MAX_LIST_LEN})"));
        }
    };
    for (i, a) in doc.applications.iter().enumerate() {
        if !consumers.contains_key(a.consumer_id.as_str()) {
            err(
                format!("$.applications[{i}].consumer_id"),
                format!("no consumer `{}`", a.consumer_id),
            );
        }
    }
    let mut keys = HashMap::new();
    for (i, c) in doc.credentials.iter().enumerate() {
        if c.key.len() != 64
            || !c
                .key
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            err(
                format!("$.credentials[{i}].key"),
                "not 64 lowercase hex digits (a SHA-256)".into(),
            );
        }
        if let Some(first) = keys.insert((c.kind, c.key.as_str()), i) {
            err(
                format!("$.credentials[{i}].key"),
                format!("repeats credentials[{first}]"),
            );
        }
        if !consumers.contains_key(c.consumer_id.as_str()) {
            err(
                format!("$.credentials[{i}].consumer_id"),
                format!("no consumer `{}`", c.consumer_id),
            );
        }
        if let Some(a) = &c.application_id {
            match apps.get(a.as_str()) {
                None => err(
                    format!("$.credentials[{i}].application_id"),
                    format!("no application `{a}`"),
                ),
                Some(&ai) if doc.applications[ai].consumer_id != c.consumer_id => err(
                    format!("$.credentials[{i}].application_id"),
                    format!("application `{a}` belongs to another consumer"),
                ),
                Some(_) => {}
            }
        }
        list(
            format!("$.credentials[{i}].scopes"),
            c.scopes.len(),
            &mut err,
        );
    }
    for (i, s) in doc.subscriptions.iter().enumerate() {
        if !apps.contains_key(s.application_id.as_str()) {
            err(
                format!("$.subscriptions[{i}].application_id"),
                format!("no application `{}`", s.application_id),
            );
        }
        if !plans.contains_key(s.plan_id.as_str()) {
            err(
                format!("$.subscriptions[{i}].plan_id"),
                format!("no plan `{}`", s.plan_id),
            );
        }
        if s.versions.is_empty() {
            err(
                format!("$.subscriptions[{i}].versions"),
                "empty (use [\"*\"] for all versions)".into(),
            );
        }
        for (name, t) in [("valid_from", s.valid_from), ("valid_until", s.valid_until)] {
            if t.is_some_and(|t| u32::try_from(t).is_err()) {
                err(
                    format!("$.subscriptions[{i}].{name}"),
                    "outside 0..=4294967295 (unix seconds, 1970 to 2106)".into(),
                );
            }
        }
        if let (Some(from), Some(until)) = (s.valid_from, s.valid_until) {
            if from >= until {
                err(
                    format!("$.subscriptions[{i}].valid_until"),
                    format!("{until} is not after valid_from {from}"),
                );
            }
        }
        for (name, len) in [
            ("versions", s.versions.len()),
            ("scopes", s.scopes.len()),
            ("ip_allow", s.ip_allow.len()),
            ("ip_deny", s.ip_deny.len()),
            ("metadata", s.metadata.len()),
        ] {
            list(format!("$.subscriptions[{i}].{name}"), len, &mut err);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigErrors(errors))
    }
}
