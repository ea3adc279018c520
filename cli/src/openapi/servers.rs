//! OpenAPI `servers` → pool instances.

use super::{pointer, Warnings};
use serde_json::{json, Map, Value};

/// Server objects → pool instances.
pub fn instances(servers: &Value, at: &str, warnings: &mut Warnings) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for (i, server) in servers.as_array().into_iter().flatten().enumerate() {
        let at = format!("{at}/{i}");
        let Some(template) = server.get("url").and_then(Value::as_str) else {
            warnings.push(&at, "a server without `url`; skipped".into());
            continue;
        };
        let mut url = String::new();
        let mut rest = template;
        let mut ok = true;
        while let Some(open) = rest.find('{') {
            url.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                ok = false;
                break;
            };
            let var = &rest[open + 1..open + close];
            let def = server.pointer(&format!("/variables/{}", pointer(var)));
            match def.and_then(|d| d.get("default")).and_then(Value::as_str) {
                Some(value) => {
                    let others: Vec<&str> = def
                        .and_then(|d| d.get("enum"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .filter(|v| *v != value)
                        .collect();
                    if !others.is_empty() {
                        warnings.push(
                            &format!("{at}/variables/{}", pointer(var)),
                            format!(
                                "uses the default `{value}`; the other values ({}) are not mapped",
                                others.join(", ")
                            ),
                        );
                    }
                    url.push_str(value);
                }
                None => {
                    warnings.push(
                        &at,
                        format!("variable `{var}` has no default; server skipped"),
                    );
                    ok = false;
                    break;
                }
            }
            rest = &rest[open + close + 1..];
        }
        if !ok {
            continue;
        }
        url.push_str(rest);
        let url = url.trim_end_matches('/').to_string();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            warnings.push(
                &at,
                format!("`{template}` is not an absolute http(s) URL and cannot be a backend (use --backend); skipped"),
            );
            continue;
        }
        if url.contains(['?', '#']) {
            warnings.push(&at, format!("`{url}` has a query or fragment; skipped"));
            continue;
        }
        let mut instance = Map::new();
        instance.insert("url".into(), json!(url));
        match server.get("x-edgegate-weight") {
            None => {}
            Some(w) if w.as_u64().is_some() => {
                instance.insert("weight".into(), w.clone());
            }
            Some(w) => warnings.push(
                &at,
                format!("`x-edgegate-weight: {w}` is not a whole number; ignored"),
            ),
        }
        let instance = Value::Object(instance);
        if out.iter().any(|i| i["url"] == instance["url"]) {
            warnings.push(&at, format!("`{url}` repeats an earlier server; skipped"));
            continue;
        }
        out.push(instance);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings_of(f: impl FnOnce(&mut Warnings)) -> Vec<String> {
        let mut w = Warnings::default();
        f(&mut w);
        w.0.into_iter().map(|(_, m)| m).collect()
    }

    #[test]
    fn servers_become_instances() {
        let servers = json!([
            {"url": "https://{env}.example.com:{port}/v1/", "variables": {
                "env": {"default": "api", "enum": ["api", "sandbox"]}, "port": {"default": "8443"}}},
            {"url": "https://b.example.com", "x-edgegate-weight": 5},
            {"url": "https://b.example.com"},
            {"url": "/relative"},
            {"url": "https://{missing}.example.com"},
            {"url": "https://q.example.com/?x=1"},
            {"description": "no url"}
        ]);
        let mut got = Vec::new();
        let w = warnings_of(|w| got = instances(&servers, "#/servers", w));
        assert_eq!(
            got,
            vec![
                json!({"url": "https://api.example.com:8443/v1"}),
                json!({"url": "https://b.example.com", "weight": 5}),
            ]
        );
        assert_eq!(w.len(), 6, "{w:#?}");
    }
}
