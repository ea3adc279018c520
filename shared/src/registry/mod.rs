//! Registry sync: fetch the Registry's signed bundle, verify and compile it completely, store
//! it in KV under its content hash, then move the pointer in one write; keep the last N
//! versions; keep serving the last good version through any failure.
//!
//! | function | runs | does |
//! |---|---|---|
//! | [`sync`] | on the cron (and "sync now" in the admin API, with `force`) | fetch → verify → compile → store → activate → retain |
//! | [`activate`] | admin API | moves the pointer to a stored version (compiled first) |
//! | [`rollback`] | admin API | [`activate`]s the version active before the current one |
//! | [`history`] | admin API | the stored versions, newest activation first |
//! | [`status`] | admin API, health | the last sync's result, ETag, failures, backoff |
//! | `Gateway::scheduled_run` | the Workers cron; on Spin the lazy tick (`Gateway::tick_if_due`) | config and overrides re-read → [`sync`] → snapshot → JWKS prefetch (see below) |
//!
//! The isolate runs them through [`crate::pipeline::Gateway`]'s `sync_registry`,
//! `activate_version` and `rollback_version`, which apply its compile rules and serve the new
//! version in that isolate at once.
//!
//! ## The scheduled run
//!
//! One implementation of what a scheduled run does (`tick.rs`): the Workers cron calls
//! `Gateway::scheduled_run`; Spin, whose HTTP trigger has no scheduler, calls
//! `Gateway::tick_if_due` after each response, which runs it at most once per
//! [`TickSettings::interval_ms`] and one at a time across instances ([`TICK_LEASE_KEY`]).
//!
//! KV keys (besides the config store's `config:active` / `config:version:<id>` and the
//! snapshot shards `snapshot:<sha256>:<i>`): [`HISTORY_KEY`] ([`History`]), [`STATUS_KEY`]
//! ([`SyncStatus`]) and, where the lazy tick runs, [`TICK_LEASE_KEY`] ([`TickLease`]). Every
//! result and error is serde-serialisable for the admin API; errors carry a stable code
//! ([`RegistryError::code`]).
//!
//! Workers KV allows one write per second per key and propagates writes eventually (up to
//! 60 s): the sync writes what the pointer refers to (shards, version document) before the
//! pointer, so an isolate that sees the new pointer finds the version in all but the rarest
//! cases; the config store retries a version it cannot find yet.

mod activate;
mod check;
mod error;
mod history;
mod isolate;
mod settings;
mod status;
mod stored;
mod sync;
mod tick;

pub use activate::{activate, history, rollback, status, Activation};
pub use error::RegistryError;
pub use history::{History, HistoryEntry, Retention, Source};
pub use settings::{RegistrySettings, SettingsError};
pub use status::{StatusError, SyncResult, SyncStatus};
pub use sync::{record_settings_error, sync, SyncOutcome};
pub use tick::{
    NotDue, TickDecision, TickLease, TickReport, TickSettings, DEFAULT_INTERVAL_S, INTERVAL_VAR,
    MAX_INTERVAL_S, TICK_LEASE_KEY,
};

/// The KV key of the version history ([`History`], JSON).
pub const HISTORY_KEY: &str = "config:history";
/// The KV key of the sync status ([`SyncStatus`], JSON).
pub const STATUS_KEY: &str = "registry:status";
/// The largest bundle the sync reads (bytes); a larger answer is `registry_unreachable`
/// (the body is not read past this).
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
