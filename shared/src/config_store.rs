//! The isolate's config cache: reads the active config from the key-value store, compiles
//! each version once, re-checks the pointer on an interval, and never activates a config
//! that fails to compile.
//!
//! Keys: [`POINTER_KEY`] holds the id of the active version; the version's document is at
//! [`version_key`]`(id)`. Switching config is one write of the pointer; rollback is moving it
//! back.
//!
//! Where every request runs in a fresh instance ([`Instances::reuses_instances`] false: Spin)
//! nothing stays in memory between requests, so the store keeps its "last good" state in one
//! more key, [`SERVING_KEY`] (see [`ServingMarker`]): the version it last activated and the
//! version it last rejected. A request reads it right after the pointer (one extra read) and
//! writes it only when the version changes or a new version is rejected. Where instances are
//! reused (Workers) the marker is never read nor written.

use crate::access_log::event_line;
use crate::config::{compile_for_with, Capabilities, CompiledConfig, ConfigErrors, Validation};
use crate::platform::{ClientCertificates, Clock, Instances, Kv, Log};
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;

/// Whether a store last checked at `checked_at` (unix ms; None: never) is due to check again
/// at `now`, every `interval_ms`. A clock that went backwards makes it due (the check is
/// cheap; waiting for the clock to catch up could take arbitrarily long). Shared by the
/// isolate's config and snapshot stores.
pub(crate) fn refresh_due(checked_at: Option<u64>, now: u64, interval_ms: u64) -> bool {
    match checked_at {
        None => true,
        Some(t) => now < t || now - t >= interval_ms,
    }
}

/// The key whose value is the id of the active config version.
pub const POINTER_KEY: &str = "config:active";

/// The key of a config version's document.
pub fn version_key(id: &str) -> String {
    format!("config:version:{id}")
}

/// The key of the fresh-instance marker ([`ServingMarker`], JSON): written and read only where
/// instances are not reused.
pub const SERVING_KEY: &str = "config:serving";

/// What the fresh instances of a host that does not reuse instances remember between
/// requests, stored as JSON under [`SERVING_KEY`]: the version last activated (the "last good"
/// version a bad pointer falls back to, and the `previous` of the next `config_activated`) and
/// the version last rejected (so `config_rejected` is logged once per rejected version, not
/// once per request). Concurrent requests that see the same change write the same value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServingMarker {
    /// The version last activated; `None` before the first.
    #[serde(default)]
    pub version: Option<String>,
    /// The version the pointer named when it was last rejected (did not compile); cleared by
    /// the next activation.
    #[serde(default)]
    pub rejected: Option<String>,
}

/// The marker as stored: [`ServingMarker`] and the SHA-256 (hex) of the text of its version
/// that compiled with full validation, so that later requests recompile that same text
/// without repeating the checks ([`Validation::PreviouslyValidated`]); other text under the
/// same version id is validated again.
#[derive(Debug, Clone, Default, serde::Deserialize)]
struct StoredMarker {
    #[serde(flatten)]
    marker: ServingMarker,
    #[serde(default)]
    validated: Option<String>,
}

/// The hex SHA-256 of a config text, as [`StoredMarker::validated`] records it.
fn text_digest(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ServingMarker {
    /// Reads the marker. An absent key, an unreadable store or a value that is not a marker
    /// all read as the empty marker (the request then behaves as a first activation: it may
    /// log `config_activated` with `previous: null` once more, and has no version to fall
    /// back to); a store error is logged as `config_store_error`.
    pub async fn read<P: Kv + Clock + Log>(p: &P) -> ServingMarker {
        StoredMarker::read(p).await.marker
    }
}

impl StoredMarker {
    async fn read<P: Kv + Clock + Log>(p: &P) -> StoredMarker {
        match p.get_text(SERVING_KEY).await {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_default(),
            Ok(None) => StoredMarker::default(),
            Err(e) => {
                p.log_line(&event_line(
                    "config_store_error",
                    p.now_ms(),
                    json!({"key": SERVING_KEY, "error": e.0}),
                ));
                StoredMarker::default()
            }
        }
    }

    /// Whether `text` is the text of `version` this marker records as validated.
    fn validated(&self, version: &str, text: &str) -> bool {
        self.marker.version.as_deref() == Some(version)
            && self.validated.as_deref() == Some(text_digest(text).as_str())
    }

    /// Writes the marker. A failed write is logged (`config_store_error`) and otherwise
    /// ignored: the request is served all the same, and the next one writes again.
    async fn write<P: Kv + Clock + Log>(&self, p: &P) {
        let text = json!({
            "version": self.marker.version,
            "rejected": self.marker.rejected,
            "validated": self.validated,
        })
        .to_string();
        if let Err(e) = p.put_text(SERVING_KEY, &text).await {
            p.log_line(&event_line(
                "config_store_error",
                p.now_ms(),
                json!({"key": SERVING_KEY, "error": e.0}),
            ));
        }
    }
}

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The pointer names the version already active.
    Unchanged(String),
    /// A new version compiled and is now active.
    Activated(String),
    /// The pointer names a version that does not compile; the previous config (if any) keeps
    /// serving and the version is not compiled again. Holds the version and the number of
    /// errors (0 when it was rejected before).
    Rejected(String, usize),
    /// The pointer names a version whose document is not (yet) in the store; the previous
    /// config keeps serving and the next refresh tries again.
    Missing(String),
    /// No pointer key yet.
    NoPointer,
    /// The store could not be read; the previous config keeps serving.
    StoreError(String),
}

#[derive(Default)]
struct State {
    active: Option<Rc<CompiledConfig>>,
    checked_at: Option<u64>,
    rejected: Option<String>,
}

/// The config cache of one isolate. Requests take an `Rc` of the active config and run
/// entirely on it, even if a newer version is activated while they are in flight.
pub struct ConfigStore {
    refresh_ms: u64,
    state: RefCell<State>,
    admin: Option<crate::admin::AdminSettings>,
}

impl ConfigStore {
    /// Compiles `text` as version `version` exactly as this store activates it: for the
    /// platform's capabilities, and refusing routes under the admin API's reserved paths. The
    /// one rule every path to activation uses (refresh, the Registry sync, activate and roll
    /// back, the admin API's validate). Never activates anything.
    ///
    /// Errors: every config error with its JSON path.
    pub fn compile<P: ClientCertificates>(
        &self,
        p: &P,
        text: &str,
        version: &str,
    ) -> Result<CompiledConfig, ConfigErrors> {
        self.compile_with(p, text, version, Validation::Full)
    }

    /// [`Self::compile`] with the given [`Validation`]: [`Validation::PreviouslyValidated`]
    /// only where this store recompiles text it validated before (fresh instances).
    fn compile_with<P: ClientCertificates>(
        &self,
        p: &P,
        text: &str,
        version: &str,
        validation: Validation,
    ) -> Result<CompiledConfig, ConfigErrors> {
        let caps = Capabilities {
            client_certificates: p.supports_client_certificates(),
        };
        let config = compile_for_with(text, version, caps, validation)?;
        match &self.admin {
            Some(admin) => admin.check_config(text).map(|()| config),
            None => Ok(config),
        }
    }

    /// A store that re-reads the pointer at most every `refresh_ms`.
    pub fn new(refresh_ms: u64) -> Self {
        ConfigStore {
            refresh_ms,
            state: RefCell::new(State::default()),
            admin: None,
        }
    }

    /// This store refusing configs whose routes reach the admin API's paths
    /// ([`crate::admin::AdminSettings::check_config`]).
    pub fn with_admin(mut self, admin: crate::admin::AdminSettings) -> Self {
        self.admin = Some(admin);
        self
    }

    /// The active config, refreshing first when the interval has passed. `None` when no
    /// valid config has ever been loaded (the caller answers 503 `no_config`).
    ///
    /// While a config is active, one request per interval does the refresh and the others
    /// keep using the active one without waiting. Where instances are not reused
    /// ([`Instances::reuses_instances`] false) the refresh reads the marker too, and falls
    /// back to its last good version (see [`ServingMarker`]).
    pub async fn current<P: Kv + Clock + Log + ClientCertificates + Instances>(
        &self,
        p: &P,
    ) -> Option<Rc<CompiledConfig>> {
        let now = p.now_ms();
        let (active, due) = {
            let s = self.state.borrow();
            (
                s.active.clone(),
                refresh_due(s.checked_at, now, self.refresh_ms),
            )
        };
        if !due {
            return active;
        }
        if active.is_some() {
            self.state.borrow_mut().checked_at = Some(now);
        }
        self.refresh(p).await;
        self.state.borrow().active.clone()
    }

    /// The active config without refreshing.
    pub fn active(&self) -> Option<Rc<CompiledConfig>> {
        self.state.borrow().active.clone()
    }

    /// Reads the pointer now and activates the version it names if that compiles. Logs an
    /// event for every change and every rejection (once per rejected version). Where
    /// instances are not reused, "change" and "once" are judged against [`SERVING_KEY`]
    /// (see [`ServingMarker`]), which this then updates.
    pub async fn refresh<P: Kv + Clock + Log + ClientCertificates + Instances>(
        &self,
        p: &P,
    ) -> RefreshOutcome {
        let outcome = self.refresh_inner(p).await;
        self.state.borrow_mut().checked_at = Some(p.now_ms());
        outcome
    }

    async fn refresh_inner<P: Kv + Clock + Log + ClientCertificates + Instances>(
        &self,
        p: &P,
    ) -> RefreshOutcome {
        if !p.reuses_instances() {
            return self.refresh_fresh(p).await;
        }
        let pointer = match p.get_text(POINTER_KEY).await {
            Ok(Some(v)) => v.trim().to_string(),
            Ok(None) => return RefreshOutcome::NoPointer,
            Err(e) => {
                p.log_line(&event_line(
                    "config_store_error",
                    p.now_ms(),
                    json!({"key": POINTER_KEY, "error": e.0}),
                ));
                return RefreshOutcome::StoreError(e.0);
            }
        };
        {
            let s = self.state.borrow();
            if s.active.as_ref().is_some_and(|a| a.version() == pointer) {
                return RefreshOutcome::Unchanged(pointer);
            }
            if s.rejected.as_deref() == Some(pointer.as_str()) {
                return RefreshOutcome::Rejected(pointer, 0);
            }
        }
        let text = match read_version(p, &pointer).await {
            Ok(t) => t,
            Err(unreadable) => return self.unreadable(p, pointer, unreadable),
        };
        // Requests that started together on a cold isolate all read the document; the first
        // to get here compiles it (compiling is synchronous), the others find it active.
        if self.active_version().as_deref() == Some(pointer.as_str()) {
            return RefreshOutcome::Unchanged(pointer);
        }
        match self.compile(p, &text, &pointer) {
            Ok(cfg) => {
                let mut s = self.state.borrow_mut();
                let previous = s.active.as_ref().map(|a| a.version().to_string());
                s.active = Some(Rc::new(cfg));
                s.rejected = None;
                drop(s);
                p.log_line(&event_line(
                    "config_activated",
                    p.now_ms(),
                    json!({"version": pointer, "previous": previous}),
                ));
                RefreshOutcome::Activated(pointer)
            }
            Err(errors) => {
                let n = errors.0.len();
                let shown: Vec<_> = errors.0.iter().take(50).collect();
                p.log_line(&event_line("config_rejected", p.now_ms(), json!({
                    "version": pointer, "error_count": n, "errors": shown, "serving": self.active_version(),
                })));
                self.state.borrow_mut().rejected = Some(pointer.clone());
                RefreshOutcome::Rejected(pointer, n)
            }
        }
    }

    /// [`Self::refresh`] where instances are not reused: the same outcomes and events, with
    /// the "last good" state read from and written to [`SERVING_KEY`] instead of memory.
    ///
    /// Reads the pointer and the marker; when the pointer names the marker's version, compiles
    /// it without logging. A new version that compiles is activated, logged as
    /// `config_activated` (`previous`: the marker's version) and recorded in the marker. A
    /// version that does not compile is logged as `config_rejected` once (the marker records
    /// it, and later requests do not read it again) and a missing one as
    /// `config_version_missing` (every request, as it is read again until it appears); both
    /// then serve the marker's version, compiled quietly (if that fails too, nothing is active
    /// and the caller answers 503 `no_config`).
    async fn refresh_fresh<P: Kv + Clock + Log + ClientCertificates>(
        &self,
        p: &P,
    ) -> RefreshOutcome {
        let pointer = match p.get_text(POINTER_KEY).await {
            Ok(Some(v)) => v.trim().to_string(),
            Ok(None) => return RefreshOutcome::NoPointer,
            Err(e) => {
                p.log_line(&event_line(
                    "config_store_error",
                    p.now_ms(),
                    json!({"key": POINTER_KEY, "error": e.0}),
                ));
                return RefreshOutcome::StoreError(e.0);
            }
        };
        if self.active_version().as_deref() == Some(pointer.as_str()) {
            return RefreshOutcome::Unchanged(pointer);
        }
        let stored = StoredMarker::read(p).await;
        let marker = stored.marker.clone();
        if marker.rejected.as_deref() == Some(pointer.as_str()) {
            self.serve_marker(p, &stored).await;
            return RefreshOutcome::Rejected(pointer, 0);
        }
        let text = match read_version(p, &pointer).await {
            Ok(t) => t,
            Err(unreadable) => {
                // The marker's version serves meanwhile (the missing line names it).
                self.serve_marker(p, &stored).await;
                return self.unreadable(p, pointer, unreadable);
            }
        };
        if self.active_version().as_deref() == Some(pointer.as_str()) {
            return RefreshOutcome::Unchanged(pointer);
        }
        // The text the marker records as validated (this version's last good text) is compiled
        // without repeating the checks; anything else (a new version, or other text under
        // this id) gets every check.
        let known = stored.validated(&pointer, &text);
        let validation = if known {
            Validation::PreviouslyValidated
        } else {
            Validation::Full
        };
        match self.compile_with(p, &text, &pointer, validation) {
            Ok(cfg) => {
                let in_memory = {
                    let mut s = self.state.borrow_mut();
                    s.rejected = None;
                    s.active
                        .replace(Rc::new(cfg))
                        .map(|a| a.version().to_string())
                };
                if marker.version.as_deref() == Some(pointer.as_str()) {
                    // The steady state: no log, no write. (A rejection the marker records
                    // stays recorded, as in memory where instances are reused.) The first
                    // full compile of this text records its digest, once.
                    if !known {
                        StoredMarker {
                            marker,
                            validated: Some(text_digest(&text)),
                        }
                        .write(p)
                        .await;
                    }
                    return RefreshOutcome::Unchanged(pointer);
                }
                let previous = marker.version.or(in_memory);
                p.log_line(&event_line(
                    "config_activated",
                    p.now_ms(),
                    json!({"version": pointer, "previous": previous}),
                ));
                StoredMarker {
                    marker: ServingMarker {
                        version: Some(pointer.clone()),
                        rejected: None,
                    },
                    validated: Some(text_digest(&text)),
                }
                .write(p)
                .await;
                RefreshOutcome::Activated(pointer)
            }
            Err(errors) => {
                self.serve_marker(p, &stored).await;
                let n = errors.0.len();
                let shown: Vec<_> = errors.0.iter().take(50).collect();
                p.log_line(&event_line("config_rejected", p.now_ms(), json!({
                    "version": pointer, "error_count": n, "errors": shown, "serving": self.active_version(),
                })));
                self.state.borrow_mut().rejected = Some(pointer.clone());
                StoredMarker {
                    marker: ServingMarker {
                        version: marker.version,
                        rejected: Some(pointer.clone()),
                    },
                    validated: stored.validated,
                }
                .write(p)
                .await;
                RefreshOutcome::Rejected(pointer, n)
            }
        }
    }

    /// Where instances are not reused: makes the marker's version (the last good one) active,
    /// unless a version is active already, without logging an activation. Nothing becomes
    /// active when the marker names none or its version cannot be read or compiled (a store
    /// error is logged as `config_store_error`).
    async fn serve_marker<P: Kv + Clock + Log + ClientCertificates>(
        &self,
        p: &P,
        stored: &StoredMarker,
    ) {
        let Some(version) = stored.marker.version.as_deref() else {
            return;
        };
        if self.state.borrow().active.is_some() {
            return;
        }
        let key = version_key(version);
        let text = match p.get_text(&key).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(e) => {
                p.log_line(&event_line(
                    "config_store_error",
                    p.now_ms(),
                    json!({"key": key, "error": e.0}),
                ));
                return;
            }
        };
        let validation = if stored.validated(version, &text) {
            Validation::PreviouslyValidated
        } else {
            Validation::Full
        };
        if let Ok(cfg) = self.compile_with(p, &text, version, validation) {
            let mut s = self.state.borrow_mut();
            if s.active.is_none() {
                s.active = Some(Rc::new(cfg));
            }
        }
    }

    /// Logs why the pointer's version document could not be read and says what the refresh
    /// did: `config_version_missing` (with the version serving meanwhile) or
    /// `config_store_error`. A missing document is not remembered as rejected: KV is eventually
    /// consistent per key (a location can see the pointer before the document), so the next
    /// refresh reads it again.
    fn unreadable<P: Clock + Log>(
        &self,
        p: &P,
        pointer: String,
        unreadable: Unreadable,
    ) -> RefreshOutcome {
        match unreadable {
            Unreadable::Missing(key) => {
                p.log_line(&event_line(
                    "config_version_missing",
                    p.now_ms(),
                    json!({"version": pointer, "key": key, "serving": self.active_version()}),
                ));
                RefreshOutcome::Missing(pointer)
            }
            Unreadable::StoreError(key, error) => {
                p.log_line(&event_line(
                    "config_store_error",
                    p.now_ms(),
                    json!({"key": key, "error": error}),
                ));
                RefreshOutcome::StoreError(error)
            }
        }
    }

    fn active_version(&self) -> Option<String> {
        self.state
            .borrow()
            .active
            .as_ref()
            .map(|a| a.version().to_string())
    }
}

/// Why a version's document could not be read: (its key) it is not in the store, or (its
/// key, the error) the store failed.
enum Unreadable {
    Missing(String),
    StoreError(String, String),
}

/// The text of version `version` (`config:version:<id>`). Errors: [`Unreadable`].
async fn read_version<P: Kv>(p: &P, version: &str) -> Result<String, Unreadable> {
    let key = version_key(version);
    match p.get_text(&key).await {
        Ok(Some(text)) => Ok(text),
        Ok(None) => Err(Unreadable::Missing(key)),
        Err(e) => Err(Unreadable::StoreError(key, e.0)),
    }
}
