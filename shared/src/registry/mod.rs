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
//!
//! The isolate runs them through [`crate::pipeline::Gateway`]'s `sync_registry`,
//! `activate_version` and `rollback_version`, which apply its compile rules and serve the new
//! version in that isolate at once.
//!
//! KV keys (besides the config store's `config:active` / `config:version:<id>` and the
//! snapshot shards `snapshot:<sha256>:<i>`): [`HISTORY_KEY`] ([`History`]) and [`STATUS_KEY`]
//! ([`SyncStatus`]). Every result and error is serde-serialisable for the admin API; errors
//! carry a stable code ([`RegistryError::code`]).
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

pub use activate::{activate, history, rollback, status, Activation};
pub use error::RegistryError;
pub use history::{History, HistoryEntry, Retention, Source};
pub use settings::{RegistrySettings, SettingsError};
pub use status::{StatusError, SyncResult, SyncStatus};
pub use sync::{record_settings_error, sync, SyncOutcome};

/// The KV key of the version history ([`History`], JSON).
pub const HISTORY_KEY: &str = "config:history";
/// The KV key of the sync status ([`SyncStatus`], JSON).
pub const STATUS_KEY: &str = "registry:status";
/// The largest bundle the sync reads (bytes); a larger answer is `registry_unreachable`
/// (the body is not read past this).
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024 * 1024;
