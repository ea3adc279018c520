//! OpenAPI paths and names → edgegate route templates and names.

use super::Warnings;

/// A name: `[A-Za-z0-9._-]`, other characters as `-`, runs of `-` folded, at most 64.
pub fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || "._".contains(c) {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(64).collect();
    out.trim_end_matches('-').to_string()
}

/// A route name from an `operationId`: like [`slug`] but keeping case.
pub fn slug_keep_case(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() || "._".contains(c) {
            c
        } else {
            '-'
        };
        if !(c == '-' && (out.is_empty() || out.ends_with('-'))) {
            out.push(c);
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(64).collect();
    out.trim_end_matches('-').to_string()
}

/// An OpenAPI path → an edgegate path template (with warnings for what changes).
pub fn template(path: &str, at: &str, warnings: &mut Warnings) -> String {
    let mut trimmed = path;
    if path.len() > 1 && path.ends_with('/') {
        trimmed = path.trim_end_matches('/');
        warnings.push(
            at,
            "the trailing `/` is dropped (edgegate paths have none)".into(),
        );
    }
    let mut used: Vec<String> = Vec::new();
    let mut segments = Vec::new();
    for seg in trimmed.split('/').skip(1) {
        if !seg.contains('{') {
            segments.push(seg.to_string());
            continue;
        }
        let whole = seg.starts_with('{') && seg.ends_with('}') && seg.matches('{').count() == 1;
        let raw = seg
            .split('{')
            .nth(1)
            .and_then(|s| s.split('}').next())
            .unwrap_or("param");
        let mut name: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            name.insert(0, '_');
        }
        while used.contains(&name) {
            name.push('_');
        }
        if !whole {
            warnings.push(
                at,
                format!("segment `{seg}` mixes text and parameters; it is routed as the whole-segment parameter `{{{name}}}` (any value)"),
            );
        }
        used.push(name.clone());
        segments.push(format!("{{{name}}}"));
    }
    format!("/{}", segments.join("/"))
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
    fn path_templates() {
        for (path, want, warns) in [
            ("/pets", "/pets", 0),
            ("/", "/", 0),
            ("/pets/{petId}", "/pets/{petId}", 0),
            (
                "/pets/{pet-id}/photos/{1st}",
                "/pets/{pet_id}/photos/{_1st}",
                0,
            ),
            ("/files/{name}.{ext}", "/files/{name}", 1),
            ("/v{version}/items/", "/{version}/items", 2),
            ("/a/{id}/b/{id}", "/a/{id}/b/{id_}", 0),
        ] {
            let mut got = String::new();
            let w = warnings_of(|w| got = template(path, "#", w));
            assert_eq!(got, want, "{path}");
            assert_eq!(w.len(), warns, "{path}: {w:?}");
            assert!(
                edgegate_core::route::PathTemplate::parse(&got).is_ok(),
                "{got} is a gateway template"
            );
        }
    }

    #[test]
    fn names() {
        for (title, want) in [
            (
                "Swagger Petstore - OpenAPI 3.0",
                "swagger-petstore-openapi-3.0",
            ),
            ("  Orders API ", "orders-api"),
            ("Ünïcode ✓ API", "n-code-api"),
            ("---", ""),
        ] {
            assert_eq!(slug(title), want, "{title}");
        }
        assert_eq!(slug_keep_case("getPetById"), "getPetById");
        assert_eq!(slug_keep_case("pets/list all"), "pets-list-all");
        assert_eq!(slug(&"x".repeat(100)).len(), 64);
    }
}
