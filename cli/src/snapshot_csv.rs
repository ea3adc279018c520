//! Registry snapshots from CSV: one row per subscription (consumers, applications and plans are
//! taken from the rows), and optionally one row per credential in a second file.
//!
//! **Subscriptions file** (a header row, then one row per subscription; columns in any order):
//!
//! | column | required | meaning |
//! |---|---|---|
//! | `subscription_id` | yes | unique id |
//! | `application_id` | yes | the subscribed application |
//! | `consumer_id` | yes | the application's consumer |
//! | `api` | yes | the API's name |
//! | `versions` | yes | space-separated versions, `*` for all |
//! | `environment` | yes | e.g. `production` |
//! | `plan_id` | yes | the plan |
//! | `status` | yes | `active`, `suspended` or `expired` |
//! | `consumer_name` | no | default: the consumer id |
//! | `consumer_status` | no | `active` (default) or `suspended` |
//! | `application_name` | no | default: the application id |
//! | `plan_tier` | no | default: the plan id |
//! | `rate_plan` | no | default: the plan id |
//! | `valid_from`, `valid_until` | no | unix seconds |
//! | `scopes` | no | space-separated |
//! | `ip_allow`, `ip_deny` | no | space-separated CIDRs |
//! | `canary_group` | no | |
//! | `pii_access`, `priority` | no | `true` / `false` (default) |
//! | `metadata` | no | `key=value` pairs separated by `;` |
//!
//! A consumer, application or plan named on several rows must be described the same way on
//! each (name, status, consumer, tier, rate plan).
//!
//! **Credentials file** (`--credentials`): `kind` (`api_key` or `certificate`), `key` (64
//! lowercase hex: SHA-256 of the API key or the certificate's fingerprint), `consumer_id`,
//! `status` (`active`, `revoked`, `suspended`) required; `application_id`, `expires_at` (unix
//! seconds), `scopes` (space-separated), `environment` optional.
//!
//! Problems are reported as `<file>:<line>:<column>: message` (the header is line 1); the
//! snapshot's own rules ([`snapshot::validate`]) are checked afterwards and reported at the line
//! that defined the offending record.

use edgegate_core::config::{ConfigError, ConfigErrors};
use edgegate_core::snapshot::{
    self, Application, Cidr, Consumer, ConsumerStatus, Credential, Plan, SnapshotDoc, Subscription,
    SubscriptionFlags,
};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, HashMap};

/// The CSV columns, for `snapshot build --help`.
pub const CSV_HELP: &str = "\
CSV input (a header row, then one row per subscription; columns in any order):
  required: subscription_id, application_id, consumer_id, api, versions (space-separated,
            * for all), environment, plan_id, status (active|suspended|expired)
  optional: consumer_name, consumer_status (active|suspended), application_name, plan_tier,
            rate_plan, valid_from, valid_until (unix seconds), scopes, ip_allow, ip_deny
            (space-separated), canary_group, pii_access, priority (true|false),
            metadata (key=value;key=value)
  Consumers, applications and plans are taken from the rows. --credentials FILE: kind
  (api_key|certificate), key (SHA-256 hex), consumer_id, status (active|revoked|suspended);
  optional application_id, expires_at, scopes, environment. CSV needs --snapshot-version.";

const SUBSCRIPTION_COLUMNS: &[(&str, bool)] = &[
    ("subscription_id", true),
    ("application_id", true),
    ("consumer_id", true),
    ("api", true),
    ("versions", true),
    ("environment", true),
    ("plan_id", true),
    ("status", true),
    ("consumer_name", false),
    ("consumer_status", false),
    ("application_name", false),
    ("plan_tier", false),
    ("rate_plan", false),
    ("valid_from", false),
    ("valid_until", false),
    ("scopes", false),
    ("ip_allow", false),
    ("ip_deny", false),
    ("canary_group", false),
    ("pii_access", false),
    ("priority", false),
    ("metadata", false),
];

const CREDENTIAL_COLUMNS: &[(&str, bool)] = &[
    ("kind", true),
    ("key", true),
    ("consumer_id", true),
    ("status", true),
    ("application_id", false),
    ("expires_at", false),
    ("scopes", false),
    ("environment", false),
];

/// What [`parse`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvProgress {
    /// Rows read up to this byte of the current file (files in order: subscriptions, then
    /// credentials).
    Read(u64),
    /// Every row is read; the snapshot's rules are being checked.
    Checking,
}

/// One CSV input: its name in messages and its text.
#[derive(Debug, Clone, Copy)]
pub struct CsvInput<'a> {
    /// How the file is named in messages (its path as given).
    pub name: &'a str,
    /// The file's text.
    pub text: &'a str,
}

/// Builds a snapshot named `version` from a subscriptions CSV and an optional credentials CSV.
/// `progress` hears the byte offset reached in the current file after each row, then that the
/// snapshot's rules are being checked (for a progress bar).
///
/// Errors: every problem found, each at `<file>:<line>[:<column>]` — malformed CSV, a missing
/// or unknown column, a bad value, records that disagree between rows, and every rule of
/// [`snapshot::validate`].
pub fn parse(
    version: &str,
    subscriptions: CsvInput<'_>,
    credentials: Option<CsvInput<'_>>,
    progress: &mut dyn FnMut(CsvProgress),
) -> Result<SnapshotDoc, ConfigErrors> {
    let mut cx = Ctx::default();
    let mut doc = SnapshotDoc {
        version: version.to_string(),
        consumers: Vec::new(),
        applications: Vec::new(),
        credentials: Vec::new(),
        plans: Vec::new(),
        subscriptions: Vec::new(),
    };
    let mut lines = Lines::default();
    let mut consumers: HashMap<String, usize> = HashMap::new();
    let mut apps: HashMap<String, usize> = HashMap::new();
    let mut plans: HashMap<String, usize> = HashMap::new();

    let mut sub_rows = rows(subscriptions, SUBSCRIPTION_COLUMNS);
    for row in sub_rows.by_ref() {
        progress(CsvProgress::Read(row.byte));
        let mut r = RowCx {
            row: &row,
            cx: &mut cx,
        };
        let consumer_id = r.text("consumer_id");
        let consumer = Consumer {
            name: r.opt("consumer_name").unwrap_or(&consumer_id).to_string(),
            status: r
                .parsed::<ConsumerStatus>("consumer_status")
                .unwrap_or(ConsumerStatus::Active),
            id: consumer_id,
        };
        let app_id = r.text("application_id");
        let app = Application {
            name: r.opt("application_name").unwrap_or(&app_id).to_string(),
            consumer_id: consumer.id.clone(),
            id: app_id,
        };
        let plan_id = r.text("plan_id");
        let plan = Plan {
            tier: r.opt("plan_tier").unwrap_or(&plan_id).to_string(),
            rate_plan: r.opt("rate_plan").unwrap_or(&plan_id).to_string(),
            id: plan_id,
        };
        let status = r.parsed("status");
        let sub = status.map(|status| Subscription {
            id: r.text("subscription_id"),
            application_id: app.id.clone(),
            api: r.text("api"),
            versions: r.list("versions"),
            environment: r.text("environment"),
            plan_id: plan.id.clone(),
            status,
            valid_from: r.parsed("valid_from"),
            valid_until: r.parsed("valid_until"),
            scopes: r.list("scopes"),
            ip_allow: r.cidrs("ip_allow"),
            ip_deny: r.cidrs("ip_deny"),
            flags: SubscriptionFlags {
                canary_group: r.opt("canary_group").map(str::to_string),
                pii_access: r.parsed("pii_access").unwrap_or(false),
                priority: r.parsed("priority").unwrap_or(false),
            },
            metadata: r.metadata("metadata"),
        });
        let line = row.line;
        r.record(
            &mut consumers,
            &mut doc.consumers,
            &mut lines.consumers,
            consumer,
            |c| &c.id,
        );
        r.record(
            &mut apps,
            &mut doc.applications,
            &mut lines.applications,
            app,
            |a| &a.id,
        );
        r.record(&mut plans, &mut doc.plans, &mut lines.plans, plan, |p| {
            &p.id
        });
        if let Some(sub) = sub {
            doc.subscriptions.push(sub);
            lines.subscriptions.push(line);
        }
    }
    cx.errors.append(&mut sub_rows.errors);
    if let Some(input) = credentials {
        progress(CsvProgress::Read(subscriptions.text.len() as u64));
        let mut cred_rows = rows(input, CREDENTIAL_COLUMNS);
        for row in cred_rows.by_ref() {
            progress(CsvProgress::Read(row.byte));
            let mut r = RowCx {
                row: &row,
                cx: &mut cx,
            };
            let (kind, status) = (r.parsed("kind"), r.parsed("status"));
            let cred = kind.zip(status).map(|(kind, status)| Credential {
                kind,
                key: r.text("key"),
                consumer_id: r.text("consumer_id"),
                application_id: r.opt("application_id").map(str::to_string),
                status,
                expires_at: r.parsed("expires_at"),
                scopes: r.list("scopes"),
                environment: r.opt("environment").map(str::to_string),
            });
            if let Some(cred) = cred {
                doc.credentials.push(cred);
                lines.credentials.push(row.line);
            }
        }
        cx.errors.append(&mut cred_rows.errors);
    }
    if !cx.errors.is_empty() {
        return Err(ConfigErrors(cx.errors));
    }
    progress(CsvProgress::Checking);
    snapshot::validate(&doc).map_err(|ConfigErrors(errors)| {
        ConfigErrors(
            errors
                .into_iter()
                .map(|e| lines.locate(e, subscriptions.name, credentials.map(|c| c.name)))
                .collect(),
        )
    })?;
    Ok(doc)
}

/// The line of each record, by table, for messages.
#[derive(Default)]
struct Lines {
    consumers: Vec<u64>,
    applications: Vec<u64>,
    plans: Vec<u64>,
    subscriptions: Vec<u64>,
    credentials: Vec<u64>,
}

impl Lines {
    /// `$.subscriptions[3].plan_id: …` → `subs.csv:5:plan_id: …`.
    fn locate(&self, e: ConfigError, subs: &str, creds: Option<&str>) -> ConfigError {
        let Some(rest) = e.path.strip_prefix("$.") else {
            return e;
        };
        let Some((table, rest)) = rest.split_once('[') else {
            return e;
        };
        let Some((index, field)) = rest.split_once(']') else {
            return e;
        };
        let (lines, file) = match table {
            "consumers" => (&self.consumers, subs),
            "applications" => (&self.applications, subs),
            "plans" => (&self.plans, subs),
            "subscriptions" => (&self.subscriptions, subs),
            "credentials" => (&self.credentials, creds.unwrap_or(subs)),
            _ => return e,
        };
        let Some(line) = index.parse::<usize>().ok().and_then(|i| lines.get(i)) else {
            return e;
        };
        let column = field.trim_start_matches('.');
        let column = match (table, column) {
            (_, "") => String::new(),
            ("subscriptions", "id") => ":subscription_id".into(),
            ("subscriptions" | "credentials", c) => format!(":{c}"),
            ("consumers", "id") => ":consumer_id".into(),
            ("applications", "id") => ":application_id".into(),
            ("plans", "id") => ":plan_id".into(),
            (_, c) => format!(" ({table} {c})"),
        };
        ConfigError::new(format!("{file}:{line}{column}"), e.message)
    }
}

#[derive(Default)]
struct Ctx {
    errors: Vec<ConfigError>,
}

/// One data row: its file, line and the cells by column name (empty cells left out).
struct Row {
    file: String,
    line: u64,
    byte: u64,
    cells: HashMap<&'static str, String>,
}

/// The data rows of one CSV input, read as they are consumed (so a progress bar follows the
/// work); problems go to `errors`.
struct Rows<'a> {
    reader: Option<csv::Reader<&'a [u8]>>,
    header: Vec<Option<&'static str>>,
    name: &'a str,
    errors: Vec<ConfigError>,
}

/// Opens `input`, checking its header against `columns` (name, required). With a bad header
/// the rows are not read (only the header's problems are reported).
fn rows<'a>(input: CsvInput<'a>, columns: &'static [(&'static str, bool)]) -> Rows<'a> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .trim(csv::Trim::All)
        .from_reader(input.text.as_bytes());
    let at = |line: u64| format!("{}:{line}", input.name);
    let mut errors = Vec::new();
    let header: Vec<Option<&'static str>> = match reader.headers() {
        Ok(h) => h
            .iter()
            .map(|name| {
                let known = columns.iter().find(|(c, _)| *c == name).map(|(c, _)| *c);
                if known.is_none() {
                    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
                    errors.push(ConfigError::new(
                        at(1),
                        format!("unknown column `{name}` (columns: {})", names.join(", ")),
                    ));
                }
                known
            })
            .collect(),
        Err(e) => {
            errors.push(ConfigError::new(at(1), format!("not CSV: {e}")));
            Vec::new()
        }
    };
    if !header.is_empty() {
        for (name, required) in columns {
            if *required && !header.contains(&Some(*name)) {
                errors.push(ConfigError::new(at(1), format!("missing column `{name}`")));
            }
        }
        for (i, name) in header.iter().enumerate() {
            if let Some(n) = name.filter(|_| header[..i].contains(name)) {
                errors.push(ConfigError::new(at(1), format!("column `{n}` repeats")));
            }
        }
    }
    Rows {
        reader: errors.is_empty().then_some(reader),
        header,
        name: input.name,
        errors,
    }
}

impl Iterator for Rows<'_> {
    type Item = Row;

    fn next(&mut self) -> Option<Row> {
        let reader = self.reader.as_mut()?;
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => {
                    self.reader = None;
                    return None;
                }
                Ok(true) => {
                    let position = record.position();
                    let cells = self
                        .header
                        .iter()
                        .zip(record.iter())
                        .filter_map(|(name, v)| {
                            name.filter(|_| !v.is_empty()).map(|n| (n, v.to_string()))
                        })
                        .collect();
                    return Some(Row {
                        file: self.name.to_string(),
                        line: position.map_or(0, |p| p.line()),
                        byte: position.map_or(0, |p| p.byte()),
                        cells,
                    });
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let message = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => format!("{len} fields; the header has {expected_len}"),
                        _ => e.to_string(),
                    };
                    self.errors
                        .push(ConfigError::new(format!("{}:{line}", self.name), message));
                    // A row of the wrong length does not stop the others from being checked;
                    // any other error (bad UTF-8) ends the file.
                    if !matches!(e.kind(), csv::ErrorKind::UnequalLengths { .. }) {
                        self.reader = None;
                        return None;
                    }
                }
            }
        }
    }
}

/// Whether `column` is required (in either file's table).
fn required(column: &str) -> bool {
    SUBSCRIPTION_COLUMNS
        .iter()
        .chain(CREDENTIAL_COLUMNS)
        .any(|(c, req)| *c == column && *req)
}

/// A row being read: each accessor records its own problems.
struct RowCx<'r, 'c> {
    row: &'r Row,
    cx: &'c mut Ctx,
}

impl RowCx<'_, '_> {
    fn err(&mut self, column: &str, message: String) {
        self.cx.errors.push(ConfigError::new(
            format!("{}:{}:{column}", self.row.file, self.row.line),
            message,
        ));
    }

    fn opt(&self, column: &str) -> Option<&str> {
        self.row.cells.get(column).map(String::as_str)
    }

    /// A required text column (empty: an error, and an empty string).
    fn text(&mut self, column: &str) -> String {
        match self.opt(column) {
            Some(v) => v.to_string(),
            None => {
                self.err(column, "empty".into());
                String::new()
            }
        }
    }

    /// A space-separated list (empty cell: empty list; an error for a required column).
    fn list(&mut self, column: &str) -> Vec<String> {
        let items: Vec<String> = self
            .opt(column)
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        if items.is_empty() && required(column) {
            self.err(column, "empty".into());
        }
        items
    }

    /// A value parsed as the JSON string (enums) or JSON number/bool it spells; None when the
    /// cell is empty (a required column's emptiness is reported) or bad (reported).
    fn parsed<T: DeserializeOwned>(&mut self, column: &str) -> Option<T> {
        let Some(v) = self.opt(column).map(str::to_string) else {
            if required(column) {
                self.err(column, "empty".into());
            }
            return None;
        };
        let as_string = serde_json::Value::String(v.clone());
        let as_json = serde_json::from_str::<serde_json::Value>(&v).ok();
        match serde_json::from_value::<T>(as_string) {
            Ok(t) => Some(t),
            Err(first) => match as_json.map(serde_json::from_value::<T>) {
                Some(Ok(t)) => Some(t),
                _ => {
                    self.err(column, format!("`{v}`: {first}"));
                    None
                }
            },
        }
    }

    fn cidrs(&mut self, column: &str) -> Vec<Cidr> {
        let mut out = Vec::new();
        for item in self.list(column) {
            match item.parse::<Cidr>() {
                Ok(c) => out.push(c),
                Err(e) => self.err(column, format!("CIDR `{item}`: {e}")),
            }
        }
        out
    }

    fn metadata(&mut self, column: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(v) = self.opt(column).map(str::to_string) else {
            return out;
        };
        for pair in v.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, val)) if !k.trim().is_empty() => {
                    if out
                        .insert(k.trim().to_string(), val.trim().to_string())
                        .is_some()
                    {
                        self.err(column, format!("key `{}` repeats", k.trim()));
                    }
                }
                _ => self.err(column, format!("`{pair}` is not `key=value`")),
            }
        }
        out
    }

    /// Adds `item` to `table` unless a record of the same id is there; a repeated id must
    /// describe the same record.
    fn record<T: PartialEq + std::fmt::Debug>(
        &mut self,
        index: &mut HashMap<String, usize>,
        table: &mut Vec<T>,
        lines: &mut Vec<u64>,
        item: T,
        id: impl Fn(&T) -> &String,
    ) {
        let key = id(&item).clone();
        if key.is_empty() {
            return;
        }
        match index.get(&key) {
            Some(&i) => {
                if table[i] != item {
                    let first = lines[i];
                    self.cx.errors.push(ConfigError::new(
                        format!("{}:{}", self.row.file, self.row.line),
                        format!(
                            "`{key}` is described differently on line {first}: {:?} vs {:?}",
                            table[i], item
                        ),
                    ));
                }
            }
            None => {
                index.insert(key, table.len());
                table.push(item);
                lines.push(self.row.line);
            }
        }
    }
}
