//! Finds repeated object keys in JSON text, with the JSON path of each repeat.
//!
//! Runs before the document is read into a `serde_json::Value` (which keeps only the last
//! value of a repeated key and so would hide half of an ambiguous document).

use super::error::ConfigError;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Every repeated key in `text`, as `$.path.key: repeated key`. Returns nothing for text that
/// is not JSON (the JSON parser reports that).
pub fn repeated_keys(text: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let _ = Walker {
        path: "$".to_string(),
        errors: &mut errors,
    }
    .deserialize(&mut de);
    errors
}

struct Walker<'a> {
    path: String,
    errors: &'a mut Vec<ConfigError>,
}

impl<'de> DeserializeSeed<'de> for Walker<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walker<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = format!("{}.{}", self.path, key);
            if !seen.insert(key.clone()) {
                self.errors.push(ConfigError::new(
                    &path,
                    format!("duplicate key `{key}`: each key may appear once in an object"),
                ));
            }
            map.next_value_seed(Walker {
                path,
                errors: &mut *self.errors,
            })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Walker {
                path: format!("{}[{i}]", self.path),
                errors: &mut *self.errors,
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_found_with_their_paths() {
        let errs = repeated_keys(r#"{"a": 1, "b": [{"x": 1, "x": 2}], "a": 3}"#);
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["$.b[0].x", "$.a"]);
        assert!(repeated_keys(r#"{"a": {"a": {"a": 1}}}"#).is_empty());
        assert!(repeated_keys("not json").is_empty());
    }
}
