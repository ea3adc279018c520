//! `securitySchemes` and `security` requirements → identity providers and `auth` policies.
//!
//! | OpenAPI scheme | edgegate |
//! |---|---|
//! | `http` + `bearer` | `jwt`, provider from `x-edgegate-issuer` + `x-edgegate-jwks-uri` or `x-edgegate-discovery-url` |
//! | `oauth2` | `jwt`, provider as above; the requirement's scopes → `authorization.scopes.required` |
//! | `openIdConnect` | `jwt`, provider with `discovery_url` = `openIdConnectUrl`, issuer from it (or `x-edgegate-issuer`); scopes as above |
//! | `apiKey` in `header` / `query` | `api_key` with that header / query parameter |
//! | `mutualTLS` | `mtls` with the certificates in `x-edgegate-certificates` |
//! | `http` basic/digest, `apiKey` in a cookie, `mutualTLS` without certificates | not mapped |
//!
//! A JWT scheme without provider extensions gets a placeholder provider on a `.invalid` host:
//! the config compiles, every token is refused until the operator fills it in (fails closed),
//! and a warning says so. An alternative of a requirement that edgegate cannot enforce (an
//! unmapped scheme, or several schemes required together) is dropped — the remaining
//! alternatives are stricter, never weaker; an operation with no enforceable alternative is
//! left out of the config.

use super::{pointer, Warnings};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// How one security scheme is enforced.
#[derive(Debug, Clone, PartialEq)]
pub enum Scheme {
    /// A JWT from `provider`.
    Jwt {
        /// The identity provider's name in the config.
        provider: String,
        /// `x-edgegate-audiences`.
        audiences: Vec<String>,
        /// `x-edgegate-algorithms` (else the gateway's default).
        algorithms: Vec<String>,
        /// Whether the requirement's scope list means OAuth2 scopes (oauth2, openIdConnect).
        scoped: bool,
    },
    /// An API key in this header or query parameter.
    ApiKey {
        /// The header, if `in: header`.
        header: Option<String>,
        /// The query parameter, if `in: query`.
        query: Option<String>,
    },
    /// A client certificate from this list.
    Mtls(Value),
    /// Not enforceable; why.
    Unsupported(String),
}

/// The mapped schemes and the identity providers they need.
#[derive(Debug, Default)]
pub struct Schemes {
    /// By scheme name.
    pub schemes: BTreeMap<String, Scheme>,
    /// `identity_providers` of the config.
    pub providers: Map<String, Value>,
}

fn text_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// A provider name from a scheme name: `[A-Za-z0-9._-]`, at most 64 characters.
fn provider_name(scheme: &str) -> String {
    let name: String = scheme
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "provider".into()
    } else {
        name
    }
}

/// Reads `components.securitySchemes` (`$ref`s resolved by `resolve`).
pub fn schemes(
    spec: &Value,
    resolve: &dyn Fn(&Value) -> Result<Value, String>,
    warnings: &mut Warnings,
) -> Schemes {
    let mut out = Schemes::default();
    let Some(defs) = spec
        .pointer("/components/securitySchemes")
        .and_then(Value::as_object)
    else {
        return out;
    };
    for (name, raw) in defs {
        let at = format!("#/components/securitySchemes/{}", pointer(name));
        let def = match resolve(raw) {
            Ok(d) => d,
            Err(e) => {
                warnings.push(&at, e.clone());
                out.schemes.insert(name.clone(), Scheme::Unsupported(e));
                continue;
            }
        };
        for key in def.as_object().into_iter().flat_map(|o| o.keys()) {
            if key.starts_with("x-edgegate-")
                && ![
                    "x-edgegate-issuer",
                    "x-edgegate-jwks-uri",
                    "x-edgegate-discovery-url",
                    "x-edgegate-audiences",
                    "x-edgegate-algorithms",
                    "x-edgegate-certificates",
                ]
                .contains(&key.as_str())
            {
                warnings.push(&at, format!("unknown extension `{key}` ignored"));
            }
        }
        let kind = def.get("type").and_then(Value::as_str).unwrap_or_default();
        let scheme = match kind {
            "http" => {
                let http = def
                    .get("scheme")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                if http == "bearer" {
                    jwt(name, &def, &at, false, &mut out.providers, warnings)
                } else {
                    Scheme::Unsupported(format!("HTTP `{http}` authentication"))
                }
            }
            "oauth2" => jwt(name, &def, &at, true, &mut out.providers, warnings),
            "openIdConnect" => jwt(name, &def, &at, true, &mut out.providers, warnings),
            "apiKey" => {
                let param = def.get("name").and_then(Value::as_str).unwrap_or_default();
                match def.get("in").and_then(Value::as_str) {
                    _ if param.is_empty() => Scheme::Unsupported("an apiKey without `name`".into()),
                    Some("header") => Scheme::ApiKey {
                        header: Some(param.to_ascii_lowercase()),
                        query: None,
                    },
                    Some("query") => Scheme::ApiKey {
                        header: None,
                        query: Some(param.to_string()),
                    },
                    Some(other) => Scheme::Unsupported(format!("an API key in `{other}`")),
                    None => Scheme::Unsupported("an apiKey without `in`".into()),
                }
            }
            "mutualTLS" => match def.get("x-edgegate-certificates") {
                Some(certs @ Value::Array(_)) => Scheme::Mtls(certs.clone()),
                _ => Scheme::Unsupported(
                    "mutualTLS without `x-edgegate-certificates` (which certificates, as whom)"
                        .into(),
                ),
            },
            other => Scheme::Unsupported(format!("security scheme type `{other}`")),
        };
        if let Scheme::Unsupported(why) = &scheme {
            warnings.push(&at, format!("cannot be enforced by edgegate: {why}"));
        }
        out.schemes.insert(name.clone(), scheme);
    }
    out
}

/// A JWT scheme and its provider (added to `providers`).
fn jwt(
    name: &str,
    def: &Value,
    at: &str,
    scoped: bool,
    providers: &mut Map<String, Value>,
    warnings: &mut Warnings,
) -> Scheme {
    let ext = |k: &str| def.get(k).and_then(Value::as_str).map(str::to_string);
    let provider = provider_name(name);
    let mut spec = Map::new();
    let oidc = def
        .get("openIdConnectUrl")
        .and_then(Value::as_str)
        .map(str::to_string);
    let discovery = ext("x-edgegate-discovery-url").or(oidc);
    let jwks = ext("x-edgegate-jwks-uri");
    let issuer = ext("x-edgegate-issuer").or_else(|| {
        discovery.as_deref().and_then(|d| {
            d.strip_suffix("/.well-known/openid-configuration")
                .map(str::to_string)
        })
    });
    match (issuer, jwks, discovery) {
        (Some(issuer), Some(jwks), _) => {
            spec.insert("issuer".into(), json!(issuer));
            spec.insert("jwks_uri".into(), json!(jwks));
        }
        (Some(issuer), None, Some(discovery)) => {
            spec.insert("issuer".into(), json!(issuer));
            spec.insert("discovery_url".into(), json!(discovery));
        }
        (issuer, _, discovery) => {
            let label: String = provider
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let host = format!("https://{}.issuer.invalid", label.trim_matches('-'));
            let why = match (issuer.is_some(), discovery.is_some()) {
                (false, true) => "the issuer cannot be told from the discovery URL: set `x-edgegate-issuer`",
                (true, false) => "no key source: set `x-edgegate-jwks-uri` or `x-edgegate-discovery-url`",
                _ => "no token issuer: set `x-edgegate-issuer` and `x-edgegate-jwks-uri` (or `x-edgegate-discovery-url`)",
            };
            warnings.push(
                at,
                format!("{why}; identity provider `{provider}` is a placeholder on {host} that refuses every token until it is filled in"),
            );
            spec.insert(
                "issuer".into(),
                json!(issuer.unwrap_or_else(|| format!("{host}/"))),
            );
            spec.insert(
                "jwks_uri".into(),
                json!(format!("{host}/.well-known/jwks.json")),
            );
        }
    }
    providers.insert(provider.clone(), Value::Object(spec));
    Scheme::Jwt {
        provider,
        audiences: text_list(def.get("x-edgegate-audiences")),
        algorithms: text_list(def.get("x-edgegate-algorithms")),
        scoped,
    }
}

/// What one operation's requirement becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirement {
    /// No security: no `auth` section (anonymous).
    None,
    /// Enforced with this `auth` policy and these required scopes (empty: no scope rule).
    Auth {
        /// The `auth` policy section.
        auth: Value,
        /// OAuth2 scopes every caller needs.
        scopes: Vec<String>,
    },
    /// Nothing in it can be enforced: leave the operation out.
    Unenforceable,
}

/// Maps a `security` requirement list (OR of ANDs) at `at`.
pub fn requirement(
    list: &Value,
    schemes: &Schemes,
    at: &str,
    warnings: &mut Warnings,
) -> Requirement {
    let Some(alternatives) = list.as_array() else {
        warnings.push(at, "`security` is not a list; ignored".to_string());
        return Requirement::Unenforceable;
    };
    if alternatives.is_empty() {
        return Requirement::None;
    }
    let mut accept: Vec<&'static str> = Vec::new();
    let mut anonymous = false;
    let (mut providers, mut audiences, mut algorithms) = (Vec::new(), Vec::new(), Vec::new());
    let mut api_key: Option<(Option<String>, Option<String>)> = None;
    let mut mtls: Option<Value> = None;
    let mut scopes: Vec<String> = Vec::new();
    let mut unscoped_alternative = false;
    let add = |m: &'static str, accept: &mut Vec<&'static str>| {
        if !accept.contains(&m) {
            accept.push(m);
        }
    };
    for (i, alt) in alternatives.iter().enumerate() {
        let alt_at = format!("{at}/{i}");
        let Some(alt) = alt.as_object() else {
            warnings.push(&alt_at, "not an object; ignored".to_string());
            continue;
        };
        if alt.is_empty() {
            anonymous = true;
            unscoped_alternative = true;
            continue;
        }
        if alt.len() > 1 {
            let names: Vec<&str> = alt.keys().map(String::as_str).collect();
            warnings.push(
                &alt_at,
                format!("requires {} together, which edgegate cannot enforce; this alternative is dropped", names.join(" + ")),
            );
            continue;
        }
        let Some((name, wanted)) = alt.iter().next() else {
            continue;
        };
        match schemes.schemes.get(name) {
            None => warnings.push(
                &alt_at,
                format!("no security scheme `{name}`; this alternative is dropped"),
            ),
            Some(Scheme::Unsupported(_)) => warnings.push(
                &alt_at,
                format!("scheme `{name}` cannot be enforced; this alternative is dropped"),
            ),
            Some(Scheme::Jwt {
                provider,
                audiences: aud,
                algorithms: algs,
                scoped,
            }) => {
                add("jwt", &mut accept);
                for (list, items) in [
                    (&mut providers, std::slice::from_ref(provider)),
                    (&mut audiences, aud.as_slice()),
                    (&mut algorithms, algs.as_slice()),
                ] {
                    for item in items {
                        if !list.contains(item) {
                            list.push(item.clone());
                        }
                    }
                }
                let wanted = text_list(Some(wanted));
                if *scoped && !wanted.is_empty() {
                    for s in wanted {
                        if !scopes.contains(&s) {
                            scopes.push(s);
                        }
                    }
                } else {
                    unscoped_alternative = true;
                }
            }
            Some(Scheme::ApiKey { header, query }) => {
                add("api_key", &mut accept);
                let (h, q) = api_key.get_or_insert((None, None));
                if let (Some(_), Some(new)) = (&h, header) {
                    if h.as_ref() != Some(new) {
                        warnings.push(
                            &alt_at,
                            format!(
                                "a second API-key header `{new}`: edgegate reads one; `{}` is kept",
                                h.clone().unwrap_or_default()
                            ),
                        );
                    }
                }
                if h.is_none() {
                    *h = header.clone();
                }
                if q.is_none() {
                    *q = query.clone();
                }
                unscoped_alternative = true;
            }
            Some(Scheme::Mtls(certs)) => {
                add("mtls", &mut accept);
                mtls.get_or_insert_with(|| certs.clone());
                unscoped_alternative = true;
            }
        }
    }
    if accept.is_empty() && !anonymous {
        return Requirement::Unenforceable;
    }
    if anonymous {
        accept.push("anonymous");
    }
    if !scopes.is_empty() && unscoped_alternative {
        warnings.push(
            at,
            format!("the scopes {} apply to every accepted method here (edgegate has one scope rule per route), also to the alternatives that did not ask for them", scopes.join(" ")),
        );
    }
    let mut auth = Map::new();
    auth.insert("accept".into(), json!(accept));
    if !providers.is_empty() {
        let mut jwt = Map::new();
        jwt.insert("providers".into(), json!(providers));
        if !audiences.is_empty() {
            jwt.insert("audiences".into(), json!(audiences));
        }
        if !algorithms.is_empty() {
            jwt.insert("algorithms".into(), json!(algorithms));
        }
        auth.insert("jwt".into(), Value::Object(jwt));
    }
    if let Some((header, query)) = api_key {
        let mut key = Map::new();
        if let Some(h) = header {
            key.insert("header".into(), json!(h));
        }
        if let Some(q) = query {
            key.insert("query".into(), json!(q));
        }
        auth.insert("api_key".into(), Value::Object(key));
    }
    if let Some(certs) = mtls {
        auth.insert("mtls".into(), json!({ "certificates": certs }));
    }
    Requirement::Auth {
        auth: Value::Object(auth),
        scopes,
    }
}
