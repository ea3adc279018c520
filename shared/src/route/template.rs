//! Path templates: `/users/{id}/files/{*rest}`.

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// Matches exactly this (raw, still percent-encoded) segment.
    Literal(String),
    /// `{name}`: matches any one non-empty segment.
    Param(String),
    /// `{*name}`: matches the rest of the path, possibly empty. Only last.
    Wildcard(String),
}

/// A parsed path template. Built at config compile time; never fails at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
}

impl PathTemplate {
    /// Parses a template. `what` names the field for error messages.
    ///
    /// Errors: not starting with `/`, an empty segment (`//`), a `{` that does not span a
    /// whole segment, a bad parameter name, a repeated name, a wildcard that is not last, or
    /// characters not allowed in a path. `/` alone is the empty template.
    pub fn parse(template: &str) -> Result<PathTemplate, String> {
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| format!("must start with '/': {template:?}"))?;
        let mut segments = Vec::new();
        if rest.is_empty() {
            return Ok(PathTemplate { segments });
        }
        let parts: Vec<&str> = rest.split('/').collect();
        for (i, part) in parts.iter().enumerate() {
            let seg = parse_segment(part)?;
            if matches!(seg, Segment::Wildcard(_)) && i + 1 != parts.len() {
                return Err(format!("the wildcard {part:?} must be the last segment"));
            }
            if let Segment::Param(n) | Segment::Wildcard(n) = &seg {
                if segments
                    .iter()
                    .any(|s| matches!(s, Segment::Param(m) | Segment::Wildcard(m) if m == n))
                {
                    return Err(format!("parameter {n:?} appears twice"));
                }
            }
            segments.push(seg);
        }
        Ok(PathTemplate { segments })
    }

    /// The segments in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The names of the parameters (and the wildcard), in order.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Wildcard(n) => Some(n.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// True if this template contains only literal segments.
    pub fn is_literal(&self) -> bool {
        self.segments
            .iter()
            .all(|s| matches!(s, Segment::Literal(_)))
    }

    /// Renders the template with `value(name)` for each parameter. Used for upstream paths.
    /// A wildcard whose value is empty leaves no trailing segment.
    pub fn render<'a>(&self, value: impl Fn(&str) -> &'a str) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => {
                    out.push('/');
                    out.push_str(l);
                }
                Segment::Param(n) => {
                    out.push('/');
                    out.push_str(value(n));
                }
                Segment::Wildcard(n) => {
                    let v = value(n);
                    if !v.is_empty() {
                        out.push('/');
                        out.push_str(v);
                    }
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }
}

fn parse_segment(part: &str) -> Result<Segment, String> {
    if part.is_empty() {
        return Err("empty segment ('//' or a trailing '/')".to_string());
    }
    if let Some(inner) = part.strip_prefix('{') {
        let inner = inner
            .strip_suffix('}')
            .ok_or_else(|| format!("{part:?}: a parameter must span the whole segment"))?;
        let (wild, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if !is_identifier(name) {
            return Err(format!(
                "{part:?}: parameter names are letters, digits and '_', not starting with a digit"
            ));
        }
        return Ok(if wild {
            Segment::Wildcard(name.to_string())
        } else {
            Segment::Param(name.to_string())
        });
    }
    if part.contains(['{', '}']) {
        return Err(format!("{part:?}: a parameter must span the whole segment"));
    }
    if part == "." || part == ".." {
        return Err(format!("{part:?}: dot segments are not allowed"));
    }
    if let Some(c) = part.chars().find(|c| !is_pchar(*c)) {
        return Err(format!(
            "{part:?}: character {c:?} is not allowed in a path"
        ));
    }
    Ok(Segment::Literal(part.to_string()))
}

/// `[A-Za-z_][A-Za-z0-9_]*`
pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// RFC 3986 `pchar` (with `%` for percent-encodings).
pub(crate) fn is_pchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@%".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let lit = |s: &str| Segment::Literal(s.into());
        let par = |s: &str| Segment::Param(s.into());
        let wild = |s: &str| Segment::Wildcard(s.into());
        let ok: &[(&str, Vec<Segment>)] = &[
            ("/", vec![]),
            ("/users", vec![lit("users")]),
            ("/users/{id}", vec![lit("users"), par("id")]),
            ("/files/{*rest}", vec![lit("files"), wild("rest")]),
            ("/{a}/{b}/x", vec![par("a"), par("b"), lit("x")]),
            ("/v1:batch", vec![lit("v1:batch")]),
        ];
        for (t, segs) in ok {
            assert_eq!(
                PathTemplate::parse(t).unwrap().segments(),
                segs.as_slice(),
                "{t}"
            );
        }
        for bad in [
            "users",
            "/users/",
            "//x",
            "/users/{id",
            "/users/x{id}",
            "/{*rest}/x",
            "/{1a}",
            "/{a}/{a}",
            "/a b",
            "/..",
            "/{}",
        ] {
            assert!(PathTemplate::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn render_substitutes_params() {
        let t = PathTemplate::parse("/accounts/{id}/{*rest}").unwrap();
        let v = |n: &str| if n == "id" { "42" } else { "a/b" };
        assert_eq!(t.render(v), "/accounts/42/a/b");
        let v = |n: &str| if n == "id" { "42" } else { "" };
        assert_eq!(t.render(v), "/accounts/42");
        assert_eq!(PathTemplate::parse("/").unwrap().render(|_| ""), "/");
    }
}
