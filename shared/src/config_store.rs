//! The isolate's config cache: reads the active config from the key-value store, compiles
//! each version once, re-checks the pointer on an interval, and never activates a config
//! that fails to compile.
//!
//! Keys: [`POINTER_KEY`] holds the id of the active version; the version's document is at
//! [`version_key`]`(id)`. Switching config is one write of the pointer; rollback is moving it
//! back.

use crate::access_log::event_line;
use crate::config::{compile_for, Capabilities, CompiledConfig};
use crate::platform::{ClientCertificates, Clock, Kv, Log};
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
    /// keep using the active one without waiting.
    pub async fn current<P: Kv + Clock + Log + ClientCertificates>(
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
    /// event for every change and every rejection (once per rejected version).
    pub async fn refresh<P: Kv + Clock + Log + ClientCertificates>(&self, p: &P) -> RefreshOutcome {
        let outcome = self.refresh_inner(p).await;
        self.state.borrow_mut().checked_at = Some(p.now_ms());
        outcome
    }

    async fn refresh_inner<P: Kv + Clock + Log + ClientCertificates>(
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
        {
            let s = self.state.borrow();
            if s.active.as_ref().is_some_and(|a| a.version() == pointer) {
                return RefreshOutcome::Unchanged(pointer);
            }
            if s.rejected.as_deref() == Some(pointer.as_str()) {
                return RefreshOutcome::Rejected(pointer, 0);
            }
        }
        let key = version_key(&pointer);
        let text = match p.get_text(&key).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                // KV is eventually consistent per key: a location can see the pointer before
                // the document. Not remembered as rejected, so the next refresh reads it again.
                p.log_line(&event_line(
                    "config_version_missing",
                    p.now_ms(),
                    json!({"version": pointer, "key": key, "serving": self.active_version()}),
                ));
                return RefreshOutcome::Missing(pointer);
            }
            Err(e) => {
                p.log_line(&event_line(
                    "config_store_error",
                    p.now_ms(),
                    json!({"key": key, "error": e.0}),
                ));
                return RefreshOutcome::StoreError(e.0);
            }
        };
        // Requests that started together on a cold isolate all read the document; the first
        // to get here compiles it (compiling is synchronous), the others find it active.
        if self.active_version().as_deref() == Some(pointer.as_str()) {
            return RefreshOutcome::Unchanged(pointer);
        }
        let caps = Capabilities {
            client_certificates: p.supports_client_certificates(),
        };
        let compiled = compile_for(&text, &pointer, caps).and_then(|cfg| match &self.admin {
            Some(admin) => admin.check_config(&text).map(|()| cfg),
            None => Ok(cfg),
        });
        match compiled {
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

    fn active_version(&self) -> Option<String> {
        self.state
            .borrow()
            .active
            .as_ref()
            .map(|a| a.version().to_string())
    }
}
