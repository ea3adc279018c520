//! `edgegate import-openapi <spec.(json|yaml)> [--out config.json]`: an OpenAPI 3.0 / 3.1
//! document → an edgegate config with one API.
//!
//! What maps (the generated config is compiled with the gateway's compiler before it is
//! written; warnings go to stderr, one line each, `warning: <JSON pointer>: message`):
//!
//! - **paths and methods** → one route per operation (`name` from `operationId`, else
//!   `<method>-<path>`), path templates as they are (`/pets/{petId}`). A segment that mixes
//!   text and parameters (`{name}.{ext}`) becomes one whole-segment parameter (warned); a
//!   trailing `/` is dropped (warned); `HEAD` beside `GET` is left out (GET answers HEAD).
//! - **`servers`** → the API's backend pool, one instance per server (variables substituted
//!   with their defaults; relative URLs cannot be backends and are warned). `servers` of a path
//!   or operation → a pool of their own for those routes. `--backend URL` (repeatable)
//!   replaces the document's servers.
//! - **`securitySchemes` + `security`** → identity providers and each route's `auth` policy;
//!   OAuth2 / OpenID Connect scopes → `authorization.scopes.required` (see [`security`]).
//! - **`x-edgegate-*` extensions** (root = the API, path item, operation; the most specific
//!   wins per policy section):
//!   - `x-edgegate-api-name`, `x-edgegate-base-path` (root): the API's name (default: the
//!     title, lower-case, `-` for other characters) and base path (default `/<name>`).
//!   - `x-edgegate-version` (root): serve the API under this version segment
//!     (`/<base>/<version>/…`).
//!   - `x-edgegate-rate-limits`: a list of edgegate rate limits (`rate_limits`).
//!   - `x-edgegate-authorization`: an edgegate `authorization` section (its `scopes` replace
//!     the ones taken from `security`).
//!   - `x-edgegate-timeout-ms`: `upstream.timeout_ms`.
//!   - `x-edgegate-policies`: any edgegate `policies` object (its sections win over the
//!     above).
//!   - `x-edgegate-route-name`, `x-edgegate-upstream-path` (operation): the route's name and
//!     upstream path; `x-edgegate-ignore: true` (operation): leave it out.
//!   - `x-edgegate-weight` (server): the instance's weight.
//!   - on security schemes: `x-edgegate-issuer`, `x-edgegate-jwks-uri`,
//!     `x-edgegate-discovery-url`, `x-edgegate-audiences`, `x-edgegate-algorithms`,
//!     `x-edgegate-certificates` (mutualTLS: `[{"fingerprint_sha256"|"subject_dn", "consumer"}]`).
//!
//!   Other `x-edgegate-*` members are warned; other vendors' `x-` members are ignored.
//! - Not mapped (warned): request validation (parameters and bodies pass to the backend as
//!   they are), `callbacks`, `webhooks`, security schemes edgegate cannot enforce (see
//!   [`security`]).

pub mod paths;
pub mod security;
pub mod servers;
pub mod yaml;

use paths::{slug, slug_keep_case, template};
use servers::instances;

use crate::error::{read_text, CliError};
use crate::Outcome;
use edgegate_core::config::{ConfigError, ConfigErrors};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The arguments of `import-openapi`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The OpenAPI document (JSON, or YAML for `.yaml` / `.yml` files).
    pub spec: PathBuf,
    /// Write the config here (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// The API's name (default: `x-edgegate-api-name`, else from `info.title`).
    #[arg(long)]
    pub name: Option<String>,
    /// The API's base path (default: `x-edgegate-base-path`, else `/<name>`).
    #[arg(long)]
    pub base_path: Option<String>,
    /// A backend URL instead of the document's `servers` (repeat for several).
    #[arg(long = "backend", value_name = "URL")]
    pub backends: Vec<String>,
}

/// Warnings for stderr, each at a JSON pointer into the OpenAPI document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Warnings(pub Vec<(String, String)>);

impl Warnings {
    /// Adds a warning at `at` (a JSON pointer such as `#/paths/~1pets/get`).
    pub fn push(&mut self, at: &str, message: String) {
        self.0.push((at.to_string(), message));
    }

    /// One `warning: <at>: <message>` line each.
    pub fn render(&self) -> String {
        self.0
            .iter()
            .map(|(at, m)| format!("warning: {at}: {m}\n"))
            .collect()
    }
}

/// A JSON-pointer token (`~` → `~0`, `/` → `~1`).
pub fn pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The result of an import.
#[derive(Debug, Clone)]
pub struct Import {
    /// The edgegate config.
    pub config: Value,
    /// What could not be mapped.
    pub warnings: Warnings,
    /// For each route of the config, in order, the operation it came from (a JSON pointer).
    pub origins: Vec<String>,
}

/// Options of [`convert`] that do not come from the document.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The API's name.
    pub name: Option<String>,
    /// The API's base path.
    pub base_path: Option<String>,
    /// Backends replacing the document's servers.
    pub backends: Vec<String>,
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const OPERATION_EXTENSIONS: [&str; 8] = [
    "x-edgegate-rate-limits",
    "x-edgegate-authorization",
    "x-edgegate-timeout-ms",
    "x-edgegate-policies",
    "x-edgegate-route-name",
    "x-edgegate-upstream-path",
    "x-edgegate-ignore",
    "x-edgegate-weight",
];

const ROOT_EXTENSIONS: [&str; 7] = [
    "x-edgegate-api-name",
    "x-edgegate-base-path",
    "x-edgegate-version",
    "x-edgegate-rate-limits",
    "x-edgegate-authorization",
    "x-edgegate-timeout-ms",
    "x-edgegate-policies",
];

/// Parses the document's text: JSON when it starts with `{`, else YAML.
///
/// Errors: a message (with a position) when it is neither.
pub fn parse(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
    } else {
        yaml::to_json(text)
    }
}

/// Follows local `$ref`s (`#/components/...`) from `v`, at most 32 hops.
fn resolve(root: &Value, v: &Value) -> Result<Value, String> {
    let mut cur = v;
    for _ in 0..32 {
        let Some(r) = cur.get("$ref").and_then(Value::as_str) else {
            return Ok(cur.clone());
        };
        let Some(path) = r.strip_prefix('#') else {
            return Err(format!(
                "`$ref: {r}` points outside the document (not supported)"
            ));
        };
        cur = root
            .pointer(path)
            .ok_or_else(|| format!("`$ref: {r}` points nowhere"))?;
    }
    Err("a `$ref` chain longer than 32 (a cycle?)".into())
}

/// Policies of one level from its extensions; `scopes` from `security` are added to the
/// `authorization` section unless the extensions set scopes themselves.
fn level_policies(node: &Value, at: &str, warnings: &mut Warnings) -> Map<String, Value> {
    let mut p = Map::new();
    if let Some(limits) = node.get("x-edgegate-rate-limits") {
        p.insert("rate_limits".into(), limits.clone());
    }
    if let Some(authz) = node.get("x-edgegate-authorization") {
        p.insert("authorization".into(), authz.clone());
    }
    if let Some(t) = node.get("x-edgegate-timeout-ms") {
        p.insert("upstream".into(), json!({ "timeout_ms": t }));
    }
    match node.get("x-edgegate-policies") {
        Some(Value::Object(extra)) => {
            for (k, v) in extra {
                p.insert(k.clone(), v.clone());
            }
        }
        Some(_) => warnings.push(at, "`x-edgegate-policies` is not an object; ignored".into()),
        None => {}
    }
    p
}

fn unknown_extensions(node: &Value, at: &str, known: &[&str], warnings: &mut Warnings) {
    for key in node.as_object().into_iter().flat_map(|o| o.keys()) {
        if key.starts_with("x-edgegate-") && !known.contains(&key.as_str()) {
            warnings.push(at, format!("unknown extension `{key}` ignored"));
        }
    }
}

/// Converts a parsed OpenAPI document.
///
/// Errors: [`CliError::Refused`] for a document that is not OpenAPI 3.0/3.1 or has no usable
/// server (and no `--backend`), or an API name that cannot be made.
pub fn convert(spec: &Value, opts: &Options) -> Result<Import, CliError> {
    let refused = |m: String| CliError::Refused(m);
    let version = spec.get("openapi").and_then(Value::as_str);
    match version {
        Some(v) if v.starts_with("3.0") || v.starts_with("3.1") => {}
        Some(v) => {
            return Err(refused(format!(
                "OpenAPI {v} is not supported (3.0 and 3.1 are)"
            )))
        }
        None if spec.get("swagger").is_some() => {
            return Err(refused(
                "Swagger 2.0 is not supported: convert it to OpenAPI 3 first".into(),
            ))
        }
        None => {
            return Err(refused(
                "not an OpenAPI document (no `openapi` version field)".into(),
            ))
        }
    }
    let mut warnings = Warnings::default();
    unknown_extensions(spec, "#", &ROOT_EXTENSIONS, &mut warnings);
    let ext_str = |k: &str| spec.get(k).and_then(Value::as_str).map(str::to_string);
    let name = opts
        .name
        .clone()
        .or_else(|| ext_str("x-edgegate-api-name"))
        .unwrap_or_else(|| {
            slug(
                spec.pointer("/info/title")
                    .and_then(Value::as_str)
                    .unwrap_or("api"),
            )
        });
    if name.is_empty() {
        return Err(refused(
            "cannot make an API name from `info.title`: pass --name".into(),
        ));
    }
    let base_path = opts
        .base_path
        .clone()
        .or_else(|| ext_str("x-edgegate-base-path"))
        .unwrap_or_else(|| format!("/{name}"));

    // Pools: the document's servers (or --backend), then each distinct path/operation list.
    let mut pools = Map::new();
    let root_instances = if opts.backends.is_empty() {
        instances(
            spec.get("servers").unwrap_or(&Value::Null),
            "#/servers",
            &mut warnings,
        )
    } else {
        opts.backends.iter().map(|u| json!({ "url": u })).collect()
    };
    if root_instances.is_empty() {
        return Err(refused(format!(
            "no usable server URL in `servers` (absolute http(s) URLs): pass --backend <URL>\n{}",
            warnings.render().trim_end()
        )));
    }
    pools.insert(name.clone(), json!({ "instances": root_instances }));
    let mut extra_pools: BTreeMap<String, String> = BTreeMap::new(); // instances JSON → pool

    let resolver = |v: &Value| resolve(spec, v);
    let schemes = security::schemes(spec, &resolver, &mut warnings);
    let root_security = spec.get("security");

    let mut routes = Vec::new();
    let mut origins = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut unvalidated = 0usize;
    for (path, item) in spec
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let path_at = format!("#/paths/{}", pointer(path));
        let item = match resolve(spec, item) {
            Ok(i) => i,
            Err(e) => {
                warnings.push(&path_at, format!("{e}; skipped"));
                continue;
            }
        };
        unknown_extensions(&item, &path_at, &OPERATION_EXTENSIONS, &mut warnings);
        let route_path = template(path, &path_at, &mut warnings);
        let path_policies = level_policies(&item, &path_at, &mut warnings);
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let at = format!("{path_at}/{method}");
            if op.get("x-edgegate-ignore") == Some(&Value::Bool(true)) {
                continue;
            }
            if method == "head" && item.get("get").is_some() {
                warnings.push(&at, "left out: the GET route answers HEAD too".into());
                continue;
            }
            unknown_extensions(op, &at, &OPERATION_EXTENSIONS, &mut warnings);
            if op.get("callbacks").is_some() {
                warnings.push(&at, "`callbacks` are not mapped (the gateway routes requests to the API, not from it)".into());
            }
            if op.get("parameters").is_some()
                || item.get("parameters").is_some()
                || op.get("requestBody").is_some()
            {
                unvalidated += 1;
            }

            // Security: the operation's own, else the document's.
            let requirement = match op.get("security").or(root_security) {
                None => security::Requirement::None,
                Some(list) => {
                    let sec_at = if op.get("security").is_some() {
                        format!("{at}/security")
                    } else {
                        "#/security".to_string()
                    };
                    security::requirement(list, &schemes, &sec_at, &mut warnings)
                }
            };
            let mut policies = path_policies.clone();
            for (k, v) in level_policies(op, &at, &mut warnings) {
                policies.insert(k, v);
            }
            match requirement {
                security::Requirement::Unenforceable => {
                    warnings.push(&at, "left out: none of its security requirements can be enforced (it would otherwise be open)".into());
                    continue;
                }
                security::Requirement::None => {}
                security::Requirement::Auth { auth, scopes } => {
                    policies.entry("auth").or_insert(auth);
                    if !scopes.is_empty() {
                        let authz = policies.entry("authorization").or_insert_with(|| json!({}));
                        if let Some(authz) = authz.as_object_mut() {
                            authz
                                .entry("scopes")
                                .or_insert_with(|| json!({ "required": scopes }));
                        }
                    }
                }
            }

            let mut route = Map::new();
            let base_name = op
                .get("x-edgegate-route-name")
                .or_else(|| op.get("operationId"))
                .and_then(Value::as_str)
                .map(slug_keep_case)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| slug(&format!("{method}-{path}")));
            let mut route_name = base_name.clone();
            let mut n = 2;
            while names.contains(&route_name) {
                route_name = format!("{base_name}-{n}");
                n += 1;
            }
            names.push(route_name.clone());
            route.insert("name".into(), json!(route_name));
            route.insert("methods".into(), json!([method.to_ascii_uppercase()]));
            route.insert("path".into(), json!(route_path));
            if let Some(up) = op.get("x-edgegate-upstream-path") {
                route.insert("upstream_path".into(), up.clone());
            }
            let servers = op
                .get("servers")
                .map(|s| (s, format!("{at}/servers")))
                .or_else(|| {
                    item.get("servers")
                        .map(|s| (s, format!("{path_at}/servers")))
                });
            if let Some((servers, servers_at)) = servers {
                if opts.backends.is_empty() {
                    let list = instances(servers, &servers_at, &mut warnings);
                    if list.is_empty() {
                        warnings.push(
                            &servers_at,
                            "no usable server: the route uses the API's pool".into(),
                        );
                    } else if Value::Array(list.clone()) != pools[&name]["instances"] {
                        let key = Value::Array(list.clone()).to_string();
                        let next = format!("{name}-{}", extra_pools.len() + 2);
                        let pool = extra_pools.entry(key).or_insert(next).clone();
                        pools.insert(pool.clone(), json!({ "instances": list }));
                        route.insert("pool".into(), json!(pool));
                    }
                }
            }
            if !policies.is_empty() {
                route.insert("policies".into(), Value::Object(policies));
            }
            routes.push(Value::Object(route));
            origins.push(at);
        }
    }
    if let Some(hooks) = spec.get("webhooks").and_then(Value::as_object) {
        if !hooks.is_empty() {
            let names: Vec<&str> = hooks.keys().map(String::as_str).collect();
            warnings.push(
                "#/webhooks",
                format!(
                    "not mapped (requests from the API, not to it): {}",
                    names.join(", ")
                ),
            );
        }
    }
    if unvalidated > 0 {
        warnings.push(
            "#/paths",
            format!("{unvalidated} operations declare parameters or request bodies: edgegate does not validate them; they reach the backend as sent"),
        );
    }

    let mut api = Map::new();
    api.insert("name".into(), json!(name));
    api.insert("base_path".into(), json!(base_path));
    match spec.get("x-edgegate-version").and_then(Value::as_str) {
        Some(v) => {
            api.insert("versions".into(), json!([{ "name": v, "pool": name }]));
        }
        None => {
            api.insert("pool".into(), json!(name));
        }
    }
    let api_policies = level_policies(spec, "#", &mut warnings);
    if !api_policies.is_empty() {
        api.insert("policies".into(), Value::Object(api_policies));
    }
    api.insert("routes".into(), Value::Array(routes));

    let mut config = Map::new();
    config.insert("pools".into(), Value::Object(pools));
    if !schemes.providers.is_empty() {
        config.insert(
            "identity_providers".into(),
            Value::Object(schemes.providers),
        );
    }
    config.insert("apis".into(), json!([Value::Object(api)]));
    Ok(Import {
        config: Value::Object(config),
        warnings,
        origins,
    })
}

/// Compiles the generated config with the gateway's compiler; errors point back at the
/// operations they came from.
///
/// Errors: [`CliError::Invalid`] (e.g. an `x-edgegate-policies` value the gateway refuses).
pub fn check(import: &Import) -> Result<String, CliError> {
    let text = serde_json::to_string_pretty(&import.config)
        .map_err(|e| CliError::SelfCheck(format!("config JSON: {e}")))?;
    edgegate_core::config::compile(&text, "import").map_err(|ConfigErrors(errors)| {
        CliError::Invalid(ConfigErrors(
            errors
                .into_iter()
                .map(|e| {
                    let origin = e
                        .path
                        .strip_prefix("$.apis[0].routes[")
                        .and_then(|r| r.split(']').next())
                        .and_then(|i| i.parse::<usize>().ok())
                        .and_then(|i| import.origins.get(i));
                    match origin {
                        Some(o) => ConfigError::new(e.path, format!("{} (from {o})", e.message)),
                        None => e,
                    }
                })
                .collect(),
        ))
    })?;
    Ok(text + "\n")
}

/// Runs `import-openapi`: the config on stdout (or in `--out`, with a summary line on stdout),
/// warnings on stderr.
///
/// Errors: [`CliError::Io`]; [`CliError::Invalid`] when the document is not JSON/YAML or the
/// generated config does not compile (nothing written); [`CliError::Refused`] (see
/// [`convert`]).
pub fn run(args: &ImportArgs) -> Result<Outcome, CliError> {
    let text = read_text(&args.spec)?;
    let spec = parse(&text).map_err(|e| CliError::invalid("$", e))?;
    let import = convert(
        &spec,
        &Options {
            name: args.name.clone(),
            base_path: args.base_path.clone(),
            backends: args.backends.clone(),
        },
    )?;
    let config = check(&import)?;
    let stderr = import.warnings.render();
    match &args.out {
        None => Ok(Outcome {
            stdout: config,
            stderr,
            code: 0,
        }),
        Some(out) => {
            std::fs::write(out, &config).map_err(CliError::io(out, "writing"))?;
            Ok(Outcome {
                stdout: format!(
                    "{}: {} routes, {} warnings",
                    out.display(),
                    import.origins.len(),
                    import.warnings.0.len()
                ),
                stderr,
                code: 0,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_refusals() {
        for (doc, ok) in [
            (
                json!({"openapi": "3.0.3", "servers": [{"url": "https://a.example"}]}),
                true,
            ),
            (
                json!({"openapi": "3.1.1", "servers": [{"url": "https://a.example"}]}),
                true,
            ),
            (
                json!({"openapi": "3.2.0", "servers": [{"url": "https://a.example"}]}),
                false,
            ),
            (json!({"swagger": "2.0"}), false),
            (json!({"info": {}}), false),
            (
                json!({"openapi": "3.0.0", "servers": [{"url": "/v1"}]}),
                false,
            ),
        ] {
            assert_eq!(convert(&doc, &Options::default()).is_ok(), ok, "{doc}");
        }
        let backends = Options {
            backends: vec!["https://b.example".into()],
            ..Options::default()
        };
        let doc = json!({"openapi": "3.0.0", "servers": [{"url": "/v1"}]});
        let import = convert(&doc, &backends).expect("with --backend");
        assert_eq!(
            import.config["pools"]["api"]["instances"],
            json!([{"url": "https://b.example"}])
        );
    }

    #[test]
    fn json_text_reads_the_same_as_yaml() {
        let text = r#"{"openapi": "3.1.0", "paths": {"/a": {"get": {"responses": {"200": {"description": "ok"}}}}}, "n": [1, 2.5, true, null]}"#;
        assert_eq!(
            yaml::to_json(text).expect("JSON is YAML"),
            serde_json::from_str::<Value>(text).expect("json")
        );
        assert_eq!(parse(text), parse(&format!("\n{text}")));
    }
}
