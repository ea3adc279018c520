//! `edgegate diff <a.json> <b.json> [--json] [--exit-code]`: what changes when config `b`
//! replaces config `a` (either may also be a bundle, `.egb`: its config is compared).
//!
//! Both documents are read with the gateway's own types, so defaults are filled in first: a
//! field left out and the same field at its default are no difference. Compared, by name:
//! APIs (their own fields: base path, versions, environments, pool), routes (`<api>/<route>`,
//! without their policies), policies (each section — `upstream`, `auth`, `authorization`,
//! `rate_limits`, `mint_token` — at each level: `gateway`, `api <name>`, `route <api>/<name>`),
//! pools, identity providers, gateway settings and any other top-level field (e.g. the embedded
//! `snapshot` manifest). A changed item lists each changed field with its old and new value.

use crate::error::{CliError, EXIT_DIFFERENT};
use crate::Outcome;
use edgegate_core::config::spec::ConfigDocument;
use edgegate_core::config::{ConfigError, ConfigErrors};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The arguments of `diff`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// The config before.
    pub a: PathBuf,
    /// The config after.
    pub b: PathBuf,
    /// Print the differences as JSON.
    #[arg(long)]
    pub json: bool,
    /// Exit with 3 when the configs differ (0 when they do not).
    #[arg(long)]
    pub exit_code: bool,
}

/// One changed field of an item: its path inside the item, the old and the new value (absent:
/// the field is not there).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// Dotted path inside the item (`instances`, `jwt.audiences`).
    pub path: String,
    /// The value in `a`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The value in `b`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

/// An item present in both configs whose content differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changed {
    /// The item's name.
    pub name: String,
    /// What differs.
    pub changes: Vec<FieldChange>,
}

/// The differences of one kind of item.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Section {
    /// Items only in `b`.
    pub added: Vec<String>,
    /// Items only in `a`.
    pub removed: Vec<String>,
    /// Items in both that differ.
    pub changed: Vec<Changed>,
}

impl Section {
    fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Every difference, by kind of item, in a fixed order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigDiff {
    /// APIs' own fields.
    pub apis: Section,
    /// Routes (`<api>/<route>`), without their policies.
    pub routes: Section,
    /// Policy sections by level (`gateway: auth`, `api users: rate_limits`, …).
    pub policies: Section,
    /// Backend pools.
    pub pools: Section,
    /// Identity providers.
    pub identity_providers: Section,
    /// Gateway settings other than policies (one item, `gateway`).
    pub gateway: Section,
    /// Any other top-level field (e.g. `snapshot`).
    pub other: Section,
}

impl ConfigDiff {
    /// True when nothing differs.
    pub fn is_empty(&self) -> bool {
        self.sections().iter().all(|(_, s)| s.is_empty())
    }

    fn sections(&self) -> [(&'static str, &Section); 7] {
        [
            ("apis", &self.apis),
            ("routes", &self.routes),
            ("policies", &self.policies),
            ("pools", &self.pools),
            ("identity_providers", &self.identity_providers),
            ("gateway", &self.gateway),
            ("other", &self.other),
        ]
    }

    /// The human-readable form: per kind, `+ added`, `- removed`, `~ changed` with each field's
    /// `old → new`; `no differences` when there are none.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "no differences\n".to_string();
        }
        let mut out = String::new();
        for (name, s) in self.sections() {
            if s.is_empty() {
                continue;
            }
            let counts: Vec<String> = [
                (s.added.len(), "added"),
                (s.removed.len(), "removed"),
                (s.changed.len(), "changed"),
            ]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
            let _ = writeln!(out, "{name}: {}", counts.join(", "));
            for a in &s.added {
                let _ = writeln!(out, "  + {a}");
            }
            for r in &s.removed {
                let _ = writeln!(out, "  - {r}");
            }
            for c in &s.changed {
                let _ = writeln!(out, "  ~ {}", c.name);
                for f in &c.changes {
                    let _ = writeln!(
                        out,
                        "      {}: {} → {}",
                        f.path,
                        short(f.before.as_ref()),
                        short(f.after.as_ref())
                    );
                }
            }
        }
        out
    }
}

/// A value in one line, at most 100 characters.
fn short(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(none)".into();
    };
    let text = v.to_string();
    if text.chars().count() <= 100 {
        text
    } else {
        let cut: String = text.chars().take(99).collect();
        format!("{cut}…")
    }
}

/// Reads a config (a JSON document, or the config of a bundle) with the gateway's types
/// (defaults filled in) and back as JSON.
///
/// Errors: [`CliError::Io`]; [`CliError::Refused`] for a malformed bundle;
/// [`CliError::Invalid`] when it does not have the config's shape, each problem's path
/// prefixed with the file.
pub fn load(path: &Path) -> Result<Value, CliError> {
    let raw = std::fs::read(path).map_err(CliError::io(path, "reading"))?;
    // A bundle (`EGB1…`): compare its config.
    let text = if raw.starts_with(b"EGB1") {
        edgegate_core::bundle::decode(&raw)
            .map_err(|e| CliError::Refused(format!("{}: {e}", path.display())))?
            .config
            .to_string()
    } else {
        String::from_utf8(raw).map_err(|e| {
            CliError::invalid(
                format!("{}:$", path.display()),
                format!("not UTF-8 text: {e}"),
            )
        })?
    };
    let prefix = |errors: ConfigErrors| {
        CliError::Invalid(ConfigErrors(
            errors
                .0
                .into_iter()
                .map(|e| ConfigError::new(format!("{}:{}", path.display(), e.path), e.message))
                .collect(),
        ))
    };
    // The embedded snapshot manifest is compared as it is (a core without the `snapshot`
    // field would refuse it).
    let parsed = serde_json::from_str::<Value>(&text).and_then(|mut value| {
        let snapshot = value.as_object_mut().and_then(|o| o.remove("snapshot"));
        let doc = serde_json::from_value::<ConfigDocument>(value)?;
        let mut out = serde_json::to_value(&doc)?;
        if let (Some(snapshot), Some(o)) = (snapshot, out.as_object_mut()) {
            o.insert("snapshot".into(), snapshot);
        }
        Ok(out)
    });
    match parsed {
        Ok(value) => Ok(value),
        // The compiler reports every structural problem with its path.
        Err(first) => Err(prefix(
            edgegate_core::config::compile(&text, "diff")
                .err()
                .unwrap_or_else(|| ConfigErrors(vec![ConfigError::new("$", first.to_string())])),
        )),
    }
}

/// Compares two configs (as [`load`] returns them).
pub fn diff(a: &Value, b: &Value) -> ConfigDiff {
    let (a_items, b_items) = (Items::of(a), Items::of(b));
    ConfigDiff {
        apis: compare(&a_items.apis, &b_items.apis),
        routes: compare(&a_items.routes, &b_items.routes),
        policies: compare(&a_items.policies, &b_items.policies),
        pools: compare(&a_items.pools, &b_items.pools),
        identity_providers: compare(&a_items.providers, &b_items.providers),
        gateway: compare(&a_items.gateway, &b_items.gateway),
        other: compare(&a_items.other, &b_items.other),
    }
}

/// A config cut into named items, per kind.
#[derive(Default)]
struct Items {
    apis: BTreeMap<String, Value>,
    routes: BTreeMap<String, Value>,
    policies: BTreeMap<String, Value>,
    pools: BTreeMap<String, Value>,
    providers: BTreeMap<String, Value>,
    gateway: BTreeMap<String, Value>,
    other: BTreeMap<String, Value>,
}

impl Items {
    fn of(doc: &Value) -> Items {
        let mut items = Items::default();
        let Some(top) = doc.as_object() else {
            return items;
        };
        for (key, value) in top {
            match key.as_str() {
                "$schema" => {}
                "pools" => items.pools = named_map(value),
                "identity_providers" => items.providers = named_map(value),
                "gateway" => {
                    let mut gateway = value.clone();
                    let policies = take(&mut gateway, "policies");
                    items.policy_sections("gateway", &policies);
                    items.gateway.insert("gateway".into(), gateway);
                }
                "apis" => {
                    for api in value.as_array().into_iter().flatten() {
                        let mut api = api.clone();
                        let name = str_field(&api, "name");
                        let routes = take(&mut api, "routes");
                        let policies = take(&mut api, "policies");
                        items.policy_sections(&format!("api {name}"), &policies);
                        for route in routes.as_array().into_iter().flatten() {
                            let mut route = route.clone();
                            let route_name = format!("{name}/{}", str_field(&route, "name"));
                            let policies = take(&mut route, "policies");
                            items.policy_sections(&format!("route {route_name}"), &policies);
                            items.routes.insert(route_name, route);
                        }
                        items.apis.insert(name, api);
                    }
                }
                other => {
                    items.other.insert(other.to_string(), value.clone());
                }
            }
        }
        items
    }

    fn policy_sections(&mut self, level: &str, policies: &Value) {
        for (section, value) in policies.as_object().into_iter().flatten() {
            let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
            if !empty {
                self.policies
                    .insert(format!("{level}: {section}"), value.clone());
            }
        }
    }
}

fn take(v: &mut Value, key: &str) -> Value {
    v.as_object_mut()
        .and_then(|o| o.remove(key))
        .unwrap_or(Value::Null)
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn named_map(v: &Value) -> BTreeMap<String, Value> {
    v.as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn compare(a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Section {
    let mut s = Section::default();
    for (name, av) in a {
        match b.get(name) {
            None => s.removed.push(name.clone()),
            Some(bv) if av != bv => {
                let mut changes = Vec::new();
                fields("", av, bv, &mut changes);
                s.changed.push(Changed {
                    name: name.clone(),
                    changes,
                });
            }
            Some(_) => {}
        }
    }
    s.added = b.keys().filter(|k| !a.contains_key(*k)).cloned().collect();
    s
}

/// The leaf differences of two values: objects member by member, lists of the same named items
/// item by item ([`same_items`]), anything else as a whole.
fn fields(path: &str, a: &Value, b: &Value, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Value::Object(ao), Value::Object(bo)) => {
            let keys: std::collections::BTreeSet<&String> = ao.keys().chain(bo.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (member(ao, k), member(bo, k)) {
                    (Some(x), Some(y)) if x != y => fields(&sub, x, y, out),
                    (Some(_), Some(_)) | (None, None) => {}
                    (x, y) => out.push(FieldChange {
                        path: sub,
                        before: x.cloned(),
                        after: y.cloned(),
                    }),
                }
            }
        }
        (Value::Array(aa), Value::Array(ba)) if same_items(aa, ba) => {
            for (i, (x, y)) in aa.iter().zip(ba).enumerate() {
                if x != y {
                    fields(&format!("{path}[{i}]"), x, y, out);
                }
            }
        }
        _ if a != b => out.push(FieldChange {
            path: if path.is_empty() {
                "(value)".into()
            } else {
                path.into()
            },
            before: Some(a.clone()),
            after: Some(b.clone()),
        }),
        _ => {}
    }
}

/// Whether two lists hold the same items in the same places (same length, and each pair has
/// the same `name` or `url`): then they are compared item by item; otherwise as a whole.
fn same_items(a: &[Value], b: &[Value]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            let id = |v: &Value| v.get("name").or_else(|| v.get("url")).cloned();
            id(x).is_some() && id(x) == id(y)
        })
}

/// A member, treating `null` as absent.
fn member<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    o.get(k).filter(|v| !v.is_null())
}

/// Runs `diff`: the differences on stdout (human or `--json`); exit code 0, or with
/// `--exit-code` [`EXIT_DIFFERENT`] when they differ.
///
/// Errors: [`CliError::Io`]; [`CliError::Invalid`] when either file is not a config.
pub fn run(args: &DiffArgs) -> Result<Outcome, CliError> {
    let (a, b) = (load(&args.a)?, load(&args.b)?);
    let d = diff(&a, &b);
    let stdout = if args.json {
        serde_json::to_string_pretty(&d)
            .map_err(|e| CliError::SelfCheck(format!("diff JSON: {e}")))?
    } else {
        d.render()
    };
    Ok(Outcome {
        stdout,
        stderr: String::new(),
        code: if args.exit_code && !d.is_empty() {
            EXIT_DIFFERENT
        } else {
            0
        },
    })
}
