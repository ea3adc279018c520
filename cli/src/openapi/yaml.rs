//! YAML text → [`serde_json::Value`], for OpenAPI documents written in YAML.
//!
//! Parsed with `yaml-rust2` (YAML 1.2 core schema). Mapping keys that are not strings (`200:`
//! for a response code, `true:`) become their text, as OpenAPI means them; anchors and aliases
//! are expanded. Floats that JSON cannot hold (`.inf`, `.nan`) are refused.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// Parses one YAML document.
///
/// Errors: a message with the line and column of a syntax error, more or fewer than one
/// document, or a value JSON cannot hold.
pub fn to_json(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML: {e}"))?;
    match docs.as_slice() {
        [doc] => convert(doc, "$"),
        [] => Err("the YAML text holds no document".into()),
        _ => Err(format!(
            "the YAML text holds {} documents (expected one)",
            docs.len()
        )),
    }
}

fn convert(y: &Yaml, path: &str) -> Result<Value, String> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => {
            let f = y
                .as_f64()
                .ok_or_else(|| format!("{path}: `{text}` is not a number"))?;
            Value::Number(
                Number::from_f64(f).ok_or_else(|| format!("{path}: `{text}` has no JSON form"))?,
            )
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (k, v) in hash {
                let key =
                    key_text(k).ok_or_else(|| format!("{path}: a mapping key is not a scalar"))?;
                let value = convert(v, &format!("{path}.{key}"))?;
                map.insert(key, value);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(format!("{path}: an unresolved alias or invalid value"))
        }
    })
}

fn key_text(k: &Yaml) -> Option<String> {
    match k {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        Yaml::Null => Some("null".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::to_json;
    use serde_json::json;

    #[test]
    fn yaml_maps_to_json_as_openapi_means_it() {
        let cases = [
            (
                "a: 1\nb: [x, 'y', \"z\"]\n",
                json!({"a": 1, "b": ["x", "y", "z"]}),
            ),
            (
                "responses:\n  200: {description: ok}\n  '404': {description: no}\n",
                json!({"responses": {"200": {"description": "ok"}, "404": {"description": "no"}}}),
            ),
            (
                "x: &a {k: v}\ny: *a\n",
                json!({"x": {"k": "v"}, "y": {"k": "v"}}),
            ),
            (
                "f: 1.5\nt: true\nn: ~\n",
                json!({"f": 1.5, "t": true, "n": null}),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(to_json(text).expect(text), want, "{text}");
        }
        for bad in ["a: [1, 2", "", "--- a\n--- b\n", "x: .inf\n"] {
            assert!(to_json(bad).is_err(), "{bad:?} is refused");
        }
    }
}
