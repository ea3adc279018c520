//! Spin application variables (`fermyon:spin/variables@2.0.0`): a fixed map given at start.

use std::collections::BTreeMap;

/// Checks a variable name the way Spin does: lower-case ASCII letters, digits and single
/// underscores, starting with a letter and ending with a letter or digit.
///
/// Returns the reason when the name is not valid.
pub fn validate_name(name: &str) -> Result<(), String> {
    let bytes = name.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err("must not be empty".into());
    };
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Err(format!(
            "invalid character {c:?}: lower-case letters, digits and _ only"
        ));
    }
    if !first.is_ascii_lowercase() {
        return Err("must start with a lower-case letter".into());
    }
    if !last.is_ascii_alphanumeric() {
        return Err("must end with a letter or digit".into());
    }
    if name.contains("__") {
        return Err("must not contain consecutive underscores".into());
    }
    Ok(())
}

/// What `variables.get` answers, before it is turned into the WIT types.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    /// The variable's value.
    Value(&'a str),
    /// The name breaks Spin's rules (the message says how).
    InvalidName(String),
    /// No such variable was given to the host.
    Undefined(String),
}

/// Looks `name` up in `vars`.
pub fn lookup<'a>(vars: &'a BTreeMap<String, String>, name: &str) -> Lookup<'a> {
    if let Err(e) = validate_name(name) {
        return Lookup::InvalidName(format!("{name:?}: {e}"));
    }
    match vars.get(name) {
        Some(v) => Lookup::Value(v),
        None => Lookup::Undefined(format!("no variable for {name:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_spin_rules() {
        for ok in ["a", "api_key", "k2", "a_b_c"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "1a", "a_", "a__b", "a-b", "_a"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let vars = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(lookup(&vars, "a"), Lookup::Value("1"));
        assert!(matches!(lookup(&vars, "b"), Lookup::Undefined(_)));
        assert!(matches!(lookup(&vars, "B"), Lookup::InvalidName(_)));
    }
}
