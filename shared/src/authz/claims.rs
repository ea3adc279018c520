//! A path to a claim inside a token's claim set (`roles`, `realm_access.roles`).

use serde_json::{Map, Value};
use std::fmt;

/// A dot-separated path of object members. Built at config compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    text: String,
    parts: Vec<String>,
}

impl ClaimPath {
    /// Parses `a.b.c`. Errors (at compile time): an empty path or an empty member name.
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        let parts: Vec<String> = text.split('.').map(str::to_string).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!(
                "{text:?} is not a claim path (member names separated by '.')"
            ));
        }
        Ok(ClaimPath {
            text: text.to_string(),
            parts,
        })
    }

    /// The value at the path, if every member along it exists.
    pub fn get<'a>(&self, claims: &'a Map<String, Value>) -> Option<&'a Value> {
        let (first, rest) = self.parts.split_first()?;
        let mut v = claims.get(first)?;
        for part in rest {
            v = v.as_object()?.get(part)?;
        }
        Some(v)
    }

    /// The strings at the path: an array's string elements, or a string split on spaces.
    /// Anything else (absent, a number, an object) gives none.
    pub fn strings(&self, claims: &Map<String, Value>) -> Vec<String> {
        match self.get(claims) {
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_string).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for ClaimPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_nested_members_and_read_arrays_or_strings() {
        let claims = json!({
            "roles": ["admin", 7, "viewer"],
            "scope": "a  b",
            "realm_access": {"roles": ["r1"]},
            "n": 5,
        });
        let claims = claims.as_object().expect("object");
        let table: &[(&str, &[&str])] = &[
            ("roles", &["admin", "viewer"]),
            ("scope", &["a", "b"]),
            ("realm_access.roles", &["r1"]),
            ("realm_access.missing", &[]),
            ("roles.x", &[]),
            ("n", &[]),
            ("absent", &[]),
        ];
        for (path, want) in table {
            let p = ClaimPath::parse(path).expect("path");
            assert_eq!(p.strings(claims), *want, "{path}");
        }
        for bad in ["", ".", "a..b", "a."] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?}");
        }
    }
}
