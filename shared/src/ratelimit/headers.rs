//! The response header fields that advertise rate limits: the IETF `RateLimit-Policy` and
//! `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-10: Structured Field lists, RFC
//! 9651, of policy-name strings with integer parameters), the legacy `X-RateLimit-*` trio and
//! `Retry-After`. Serialised with the `sfv` crate; built once per response.
//!
//! Policy names become structured-field strings, which hold printable ASCII only (0x20–0x7E;
//! `"` and `\` are escaped). Config compilation should refuse other names with
//! [`validate_policy_name`]; the field builders never fail and replace any other character
//! by `_` ([`sanitize_policy_name`]), so a bad name cannot break or inject into a header.
//! Integers above the structured-field maximum (999,999,999,999,999) are sent as that
//! maximum.

use std::borrow::Cow;
use std::fmt;

use sfv::{key_ref, Integer, KeyRef, ListSerializer, StringRef};

use super::Decision;

/// `RateLimit-Policy`: the quota policies (quota and window per named policy).
pub const RATELIMIT_POLICY: &str = "ratelimit-policy";
/// `RateLimit`: the current state of each policy (remaining, seconds to reset).
pub const RATELIMIT: &str = "ratelimit";
/// Legacy `X-RateLimit-Limit`: the limit of the most restrictive policy.
pub const X_RATELIMIT_LIMIT: &str = "x-ratelimit-limit";
/// Legacy `X-RateLimit-Remaining`: what the most restrictive policy has left.
pub const X_RATELIMIT_REMAINING: &str = "x-ratelimit-remaining";
/// Legacy `X-RateLimit-Reset`: seconds until the most restrictive policy resets.
pub const X_RATELIMIT_RESET: &str = "x-ratelimit-reset";
/// `Retry-After` (RFC 9110), in delay-seconds.
pub const RETRY_AFTER: &str = "retry-after";

/// Why a policy name cannot be sent as a structured-field string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidPolicyName {
    /// The name is empty.
    Empty,
    /// The character at this byte offset is not printable ASCII.
    Char {
        /// Byte offset of the character in the name.
        offset: usize,
        /// The character.
        ch: char,
    },
}

impl fmt::Display for InvalidPolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidPolicyName::Empty => f.write_str("rate-limit policy name is empty"),
            InvalidPolicyName::Char { offset, ch } => write!(
                f,
                "rate-limit policy name has {ch:?} at byte {offset}: only printable ASCII \
                 (space to ~) can be sent in a RateLimit header"
            ),
        }
    }
}

impl std::error::Error for InvalidPolicyName {}

/// Checks that `name` can be sent as is: non-empty printable ASCII (0x20–0x7E). Run at config
/// compile time; returns the first offending character.
pub fn validate_policy_name(name: &str) -> Result<(), InvalidPolicyName> {
    if name.is_empty() {
        return Err(InvalidPolicyName::Empty);
    }
    match name.char_indices().find(|(_, c)| !is_sf_string_char(*c)) {
        Some((offset, ch)) => Err(InvalidPolicyName::Char { offset, ch }),
        None => Ok(()),
    }
}

/// `name` with every character outside printable ASCII replaced by `_` (borrowed when there
/// is none). The field builders apply it to every name; it never fails.
pub fn sanitize_policy_name(name: &str) -> Cow<'_, str> {
    if name.chars().all(is_sf_string_char) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(
            name.chars()
                .map(|c| if is_sf_string_char(c) { c } else { '_' })
                .collect(),
        )
    }
}

fn is_sf_string_char(c: char) -> bool {
    matches!(c, ' '..='~')
}

/// The `RateLimit-Policy` field value for `(name, quota q, window w in seconds)` policies, in
/// the given order: `"burst";q=100;w=60, "daily";q=1000;w=86400`. An empty slice gives ""
/// (send no field: an empty list is not serialised). Never fails (see the module doc for
/// names and large numbers).
pub fn ratelimit_policy_field(policies: &[(&str, u64, u64)]) -> String {
    list(policies, key_ref("q"), key_ref("w"))
}

/// The `RateLimit` field value for one policy: `"name";r=42;t=17` (`r` remaining, `t`
/// seconds until reset; see [`reset_seconds`]). Never fails.
pub fn ratelimit_field(name: &str, remaining: u64, reset_s: u64) -> String {
    ratelimit_list_field(&[(name, remaining, reset_s)])
}

/// The `RateLimit` field value for several policies `(name, remaining, reset seconds)`, in
/// the given order; "" for an empty slice (send no field). Never fails.
pub fn ratelimit_list_field(items: &[(&str, u64, u64)]) -> String {
    list(items, key_ref("r"), key_ref("t"))
}

/// The `RateLimit` field value for one policy's [`Decision`]: its `remaining` and its
/// `reset_ms` in whole seconds rounded up.
pub fn ratelimit_field_for(name: &str, decision: &Decision) -> String {
    ratelimit_field(name, decision.remaining, reset_seconds(decision.reset_ms))
}

/// Milliseconds as the whole seconds the header fields carry, rounded up (so a client that
/// waits that long is never early): 0 → 0, 1 → 1, 1000 → 1, 1001 → 2.
pub fn reset_seconds(ms: u64) -> u64 {
    ms.div_ceil(1000)
}

/// The legacy `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds until reset, rounded
/// up) `(name, value)` pairs for a decision, normally the
/// [`most_restrictive`](super::most_restrictive) one. Never fails.
pub fn legacy_fields(decision: &Decision) -> [(&'static str, String); 3] {
    [
        (X_RATELIMIT_LIMIT, decision.limit.to_string()),
        (X_RATELIMIT_REMAINING, decision.remaining.to_string()),
        (
            X_RATELIMIT_RESET,
            reset_seconds(decision.reset_ms).to_string(),
        ),
    ]
}

/// The `Retry-After` value (delay-seconds, rounded up) for a denied decision; `None` when it
/// was allowed or can never be admitted (then send no `Retry-After`).
pub fn retry_after_value(decision: &Decision) -> Option<String> {
    match decision.retry_after_ms {
        Some(ms) if !decision.allowed => Some(reset_seconds(ms).to_string()),
        _ => None,
    }
}

fn list(items: &[(&str, u64, u64)], first: &KeyRef, second: &KeyRef) -> String {
    let mut ser = ListSerializer::new();
    for (name, x, y) in items {
        let name = sanitize_policy_name(name);
        // Sanitised names always validate; the fallback only keeps this total.
        let name = StringRef::from_str(&name).unwrap_or(StringRef::EMPTY);
        _ = ser
            .bare_item(name)
            .parameter(first, integer(*x))
            .parameter(second, integer(*y));
    }
    ser.finish().unwrap_or_default()
}

fn integer(n: u64) -> Integer {
    Integer::try_from(n).unwrap_or(Integer::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_seconds_round_up() {
        for (ms, s) in [
            (0, 0),
            (1, 1),
            (999, 1),
            (1000, 1),
            (1001, 2),
            (u64::MAX, 18_446_744_073_709_552),
        ] {
            assert_eq!(reset_seconds(ms), s, "{ms}");
        }
    }
}
