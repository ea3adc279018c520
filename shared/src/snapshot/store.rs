//! The isolate's snapshot cache: reads the Registry snapshot from the key-value store,
//! decodes each new one once, re-checks on an interval, and never activates a snapshot that
//! fails to join or decode (the previous one keeps serving).
//!
//! Keys: [`MANIFEST_KEY`] holds the [`ShardManifest`] (JSON) of the current snapshot; its
//! shards are at [`ShardManifest::shard_key`]`(`[`SHARD_PREFIX`]`, i)`. The Registry sync
//! writes the shards first and the manifest last; shards are content-addressed, so a new
//! snapshot never overwrites one an isolate may be reading.
//!
//! Two modes, chosen per request by the config it runs on ([`SnapshotStore::current_for`]):
//! a config that embeds a manifest (`"snapshot"` in the document) gets exactly that snapshot
//! and [`MANIFEST_KEY`] is not read; a config without one gets the snapshot [`MANIFEST_KEY`]
//! names. The store keeps the snapshot that was active before the current one, so a request
//! that started on the previous config version still finds the snapshot that version names.
//!
//! Where every request runs in a fresh instance ([`Instances::reuses_instances`] false: Spin)
//! the store keeps its "last good" state in [`SERVING_KEY`] (see [`SnapshotMarker`]), as the
//! config store does: activations and rejections are logged when they differ from it, and a
//! manifest that names a snapshot that cannot be loaded falls back to the marker's snapshot.
//! Where instances are reused (Workers) the marker is never read nor written.

use super::{decode, join, read_shards, ShardManifest, ShardReadError, Snapshot};
use crate::access_log::event_line;
use crate::config_store::refresh_due;
use crate::platform::{Clock, Instances, Kv, Log};
use crate::single_flight::SingleFlight;
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;

/// The key of the current snapshot's manifest.
pub const MANIFEST_KEY: &str = "snapshot:manifest";
/// The prefix of shard keys (`snapshot:<sha256>:<i>`).
pub const SHARD_PREFIX: &str = "snapshot";
/// The key of the fresh-instance marker ([`SnapshotMarker`], JSON): written and read only where
/// instances are not reused.
pub const SERVING_KEY: &str = "snapshot:serving";
/// How long a cold isolate's requests wait for the first load (polling every 10 ms).
const FIRST_LOAD_WAIT_TICKS: u32 = 500;

/// What a refresh found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRefresh {
    /// The manifest names the snapshot already active (by SHA-256).
    Unchanged(String),
    /// A new snapshot decoded and is active; holds its version.
    Activated(String),
    /// The manifest names a snapshot that does not join or decode; the previous one keeps
    /// serving and this one is not tried again. Holds the SHA-256.
    Rejected(String),
    /// A shard the manifest lists is not in the store yet (eventual consistency); tried
    /// again at the next refresh.
    Missing(String),
    /// No manifest yet.
    NoManifest,
    /// The store could not be read, or the manifest is not valid JSON.
    StoreError(String),
}

/// What the fresh instances of a host that does not reuse instances remember between
/// requests about the snapshot, stored as JSON under [`SERVING_KEY`]: the snapshot last
/// activated (its manifest, so an unloadable new one falls back to it, and its version, the
/// `previous` of the next `snapshot_activated`) and the SHA-256 of the snapshot last rejected
/// (so `snapshot_rejected` is logged once per snapshot, not once per request). Concurrent
/// requests that see the same change write the same value.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotMarker {
    /// The manifest of the snapshot last activated; `None` before the first.
    #[serde(default)]
    pub manifest: Option<ShardManifest>,
    /// That snapshot's version.
    #[serde(default)]
    pub version: Option<String>,
    /// The SHA-256 of the snapshot last rejected (did not join or decode); cleared by the
    /// next activation.
    #[serde(default)]
    pub rejected: Option<String>,
}

impl SnapshotMarker {
    /// Reads the marker. An absent key, an unreadable store or a value that is not a marker
    /// all read as the empty marker (the request then behaves as a first activation, with no
    /// snapshot to fall back to); a store error is logged as `snapshot_store_error`.
    pub async fn read<P: Kv + Clock + Log>(p: &P) -> SnapshotMarker {
        match p.get_text(SERVING_KEY).await {
            Ok(Some(text)) => serde_json::from_str(&text).unwrap_or_default(),
            Ok(None) => SnapshotMarker::default(),
            Err(e) => {
                store_error(p, SERVING_KEY, e.0);
                SnapshotMarker::default()
            }
        }
    }

    /// Writes the marker. A failed write is logged (`snapshot_store_error`) and otherwise
    /// ignored: the request is served all the same.
    async fn write<P: Kv + Clock + Log>(&self, p: &P) {
        let text = json!({
            "manifest": self.manifest, "version": self.version, "rejected": self.rejected,
        })
        .to_string();
        if let Err(e) = p.put_text(SERVING_KEY, &text).await {
            store_error(p, SERVING_KEY, e.0);
        }
    }
}

#[derive(Default)]
struct State {
    active: Option<Rc<Snapshot>>,
    active_sha: Option<String>,
    /// The snapshot active before `active`, with its SHA-256 (pinned configs of the previous
    /// version still use it).
    previous: Option<(String, Rc<Snapshot>)>,
    checked_at: Option<u64>,
    rejected: Option<String>,
    /// The last load attempt of a pinned snapshot that is not active: (sha256, at ms).
    pinned_attempt: Option<(String, u64)>,
}

impl State {
    /// The loaded snapshot with this SHA-256 (active or previous).
    fn lookup(&self, sha: &str) -> Option<Rc<Snapshot>> {
        if self.active_sha.as_deref() == Some(sha) {
            return self.active.clone();
        }
        self.previous
            .as_ref()
            .filter(|(s, _)| s == sha)
            .map(|(_, snap)| snap.clone())
    }
}

/// The snapshot cache of one isolate. Requests take an `Rc` of the active snapshot.
pub struct SnapshotStore {
    refresh_ms: u64,
    state: RefCell<State>,
    first_load: SingleFlight,
}

impl SnapshotStore {
    /// A store that re-reads the manifest at most every `refresh_ms`.
    pub fn new(refresh_ms: u64) -> Self {
        SnapshotStore {
            refresh_ms,
            state: RefCell::new(State::default()),
            first_load: SingleFlight::new(),
        }
    }

    /// The active snapshot, refreshing first when the interval has passed; None while none
    /// has ever loaded. Runs per request that needs it. A cold isolate's concurrent requests
    /// share one load; with a snapshot active, one request per interval re-reads the manifest
    /// (and loads a new snapshot, if any) while the others keep using the active one.
    pub async fn current<P: Kv + Clock + Log + Instances>(&self, p: &P) -> Option<Rc<Snapshot>> {
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
            self.refresh(p).await;
        } else {
            self.first_load
                .run(
                    async {
                        self.refresh(p).await;
                    },
                    || p.sleep_ms(10),
                    FIRST_LOAD_WAIT_TICKS,
                )
                .await;
        }
        self.active()
    }

    /// The snapshot for a request on a config that embeds `pinned` (see
    /// [`crate::config::CompiledConfig::snapshot_manifest`]); with `None`, [`Self::current`].
    ///
    /// Runs per request that needs the snapshot. A pinned snapshot that is loaded (active or
    /// the previous one) is returned without I/O; one that is not is loaded now (the cold
    /// requests of an isolate share the load) and becomes active. While it cannot be loaded
    /// (a shard not yet visible, a store error) it is tried again at most once per refresh
    /// interval and the answer is `None` (the caller answers 503 `snapshot_unavailable`):
    /// a request never runs on another snapshot than its config names. A snapshot that does
    /// not join or decode is rejected once and never tried again.
    pub async fn current_for<P: Kv + Clock + Log + Instances>(
        &self,
        p: &P,
        pinned: Option<&ShardManifest>,
    ) -> Option<Rc<Snapshot>> {
        let Some(manifest) = pinned else {
            return self.current(p).await;
        };
        let sha = manifest.sha256.as_str();
        let due = {
            let s = self.state.borrow();
            if let Some(found) = s.lookup(sha) {
                return Some(found);
            }
            if s.rejected.as_deref() == Some(sha) {
                return None;
            }
            match &s.pinned_attempt {
                Some((tried, at)) if tried == sha => {
                    refresh_due(Some(*at), p.now_ms(), self.refresh_ms)
                }
                _ => true,
            }
        };
        if due {
            self.first_load
                .run(
                    async {
                        if self.state.borrow().lookup(sha).is_none() {
                            self.load_pinned(p, manifest).await;
                        }
                    },
                    || p.sleep_ms(10),
                    FIRST_LOAD_WAIT_TICKS,
                )
                .await;
        }
        self.state.borrow().lookup(sha)
    }

    /// Makes the snapshot of a config current now (the cron, and after an activation): with
    /// `pinned`, loads that snapshot unless it is already loaded; without, [`Self::refresh`].
    pub async fn refresh_for<P: Kv + Clock + Log + Instances>(
        &self,
        p: &P,
        pinned: Option<&ShardManifest>,
    ) -> SnapshotRefresh {
        let Some(manifest) = pinned else {
            return self.refresh(p).await;
        };
        if self.state.borrow().lookup(&manifest.sha256).is_some() {
            return SnapshotRefresh::Unchanged(manifest.sha256.clone());
        }
        if self.state.borrow().rejected.as_deref() == Some(manifest.sha256.as_str()) {
            return SnapshotRefresh::Rejected(manifest.sha256.clone());
        }
        self.load_pinned(p, manifest).await
    }

    /// Loads the snapshot a config pins. Where instances are not reused, reads the marker
    /// first: a snapshot it records as rejected is not read again (as in memory where
    /// instances are reused), and the load is logged against it. Never falls back to another
    /// snapshot (a request runs on the one its config names or on none).
    async fn load_pinned<P: Kv + Clock + Log + Instances>(
        &self,
        p: &P,
        manifest: &ShardManifest,
    ) -> SnapshotRefresh {
        if p.reuses_instances() {
            return self.load(p, manifest, None).await;
        }
        let marker = SnapshotMarker::read(p).await;
        if marker.rejected.as_deref() == Some(manifest.sha256.as_str()) {
            self.state.borrow_mut().rejected = marker.rejected;
            return SnapshotRefresh::Rejected(manifest.sha256.clone());
        }
        self.load(p, manifest, Some(&marker)).await
    }

    /// The active snapshot without refreshing.
    pub fn active(&self) -> Option<Rc<Snapshot>> {
        self.state.borrow().active.clone()
    }

    /// Reads the manifest now and activates the snapshot it names if it joins and decodes.
    /// Logs an event for every activation and every rejection (once per snapshot).
    pub async fn refresh<P: Kv + Clock + Log + Instances>(&self, p: &P) -> SnapshotRefresh {
        let outcome = self.refresh_inner(p).await;
        self.state.borrow_mut().checked_at = Some(p.now_ms());
        outcome
    }

    async fn refresh_inner<P: Kv + Clock + Log + Instances>(&self, p: &P) -> SnapshotRefresh {
        if !p.reuses_instances() {
            return self.refresh_fresh(p).await;
        }
        let store_error = |key: &str, error: String| store_error(p, key, error);
        let manifest: ShardManifest = match p.get_text(MANIFEST_KEY).await {
            Ok(None) => return SnapshotRefresh::NoManifest,
            Ok(Some(text)) => match serde_json::from_str(&text) {
                Ok(m) => m,
                Err(e) => return store_error(MANIFEST_KEY, format!("manifest: {e}")),
            },
            Err(e) => return store_error(MANIFEST_KEY, e.0),
        };
        let sha = manifest.sha256.clone();
        {
            let s = self.state.borrow();
            if s.active_sha.as_deref() == Some(sha.as_str()) {
                return SnapshotRefresh::Unchanged(sha);
            }
            if s.rejected.as_deref() == Some(sha.as_str()) {
                return SnapshotRefresh::Rejected(sha);
            }
        }
        self.load(p, &manifest, None).await
    }

    /// [`Self::refresh`] where instances are not reused: the same outcomes and events, with
    /// the "last good" state read from and written to [`SERVING_KEY`] instead of memory.
    ///
    /// Reads the manifest and the marker. A snapshot that loads is activated, logged as
    /// `snapshot_activated` only when it is not the marker's (`previous`: the marker's
    /// version) and then recorded in the marker. A snapshot that does not join or decode is
    /// logged as `snapshot_rejected` once (the marker records it, and later requests do not
    /// read it again); a missing shard is logged as today (every request, as it is read again
    /// until it appears). In both cases, and when the manifest cannot be read, the marker's
    /// snapshot is loaded quietly and serves; when that fails too, none is active.
    async fn refresh_fresh<P: Kv + Clock + Log>(&self, p: &P) -> SnapshotRefresh {
        let text = match p.get_text(MANIFEST_KEY).await {
            Ok(None) => return SnapshotRefresh::NoManifest,
            Ok(Some(text)) => Ok(text),
            Err(e) => Err(e.0),
        };
        let parsed = text.and_then(|t| {
            serde_json::from_str::<ShardManifest>(&t).map_err(|e| format!("manifest: {e}"))
        });
        if let Ok(m) = &parsed {
            if self.state.borrow().active_sha.as_deref() == Some(m.sha256.as_str()) {
                return SnapshotRefresh::Unchanged(m.sha256.clone());
            }
        }
        let marker = SnapshotMarker::read(p).await;
        let outcome = match parsed {
            Err(error) => store_error(p, MANIFEST_KEY, error),
            Ok(m) if marker.rejected.as_deref() == Some(m.sha256.as_str()) => {
                SnapshotRefresh::Rejected(m.sha256)
            }
            Ok(m) => self.load(p, &m, Some(&marker)).await,
        };
        if !matches!(
            outcome,
            SnapshotRefresh::Activated(_) | SnapshotRefresh::Unchanged(_)
        ) {
            self.serve_marker(p, &marker).await;
        }
        outcome
    }

    /// Where instances are not reused: makes the marker's snapshot (the last good one)
    /// active, unless one is active already, without logging an activation. Nothing becomes
    /// active when the marker names none or its snapshot cannot be loaded (a store error is
    /// logged as `snapshot_store_error`).
    async fn serve_marker<P: Kv + Clock + Log>(&self, p: &P, marker: &SnapshotMarker) {
        let Some(manifest) = &marker.manifest else {
            return;
        };
        if self.state.borrow().active.is_some() {
            return;
        }
        let shards = match read_shards(p, manifest).await {
            Ok(shards) => shards,
            Err(ShardReadError::Missing(_)) => return,
            Err(ShardReadError::Store(key, e)) => {
                store_error(p, &key, e.0);
                return;
            }
        };
        let decoded = join(manifest, &shards).and_then(|bytes| {
            drop(shards);
            decode(&bytes)
        });
        if let Ok(snapshot) = decoded {
            if self.state.borrow().active.is_none() {
                self.install(snapshot, manifest.sha256.clone());
            }
        }
    }

    /// Makes `snapshot` (SHA-256 `sha`) active; the active one becomes the previous one.
    /// Returns the version of the snapshot it replaces, if any.
    fn install(&self, snapshot: Snapshot, sha: String) -> Option<String> {
        let mut s = self.state.borrow_mut();
        let previous = s.active.as_ref().map(|a| a.version().to_string());
        // The previous snapshot stays loaded for requests of the previous config.
        let before = s.active_sha.take().zip(s.active.take());
        if before.is_some() {
            s.previous = before;
        }
        s.active = Some(Rc::new(snapshot));
        s.active_sha = Some(sha);
        s.rejected = None;
        s.pinned_attempt = None;
        previous
    }

    /// Reads the shards `manifest` lists, joins and decodes them, and makes the snapshot
    /// active (the active one becomes the previous one). Logs as [`Self::refresh`]; with a
    /// `marker` (instances not reused), logs against it and updates it (see
    /// [`Self::refresh_fresh`]).
    async fn load<P: Kv + Clock + Log>(
        &self,
        p: &P,
        manifest: &ShardManifest,
        marker: Option<&SnapshotMarker>,
    ) -> SnapshotRefresh {
        let sha = manifest.sha256.clone();
        self.state.borrow_mut().pinned_attempt = Some((sha.clone(), p.now_ms()));
        let shards = match read_shards(p, manifest).await {
            Ok(shards) => shards,
            Err(ShardReadError::Missing(key)) => {
                p.log_line(&event_line(
                    "snapshot_shard_missing",
                    p.now_ms(),
                    json!({"sha256": sha, "key": key}),
                ));
                return SnapshotRefresh::Missing(sha);
            }
            Err(ShardReadError::Store(key, e)) => return store_error(p, &key, e.0),
        };
        if self.state.borrow().lookup(&sha).is_some() {
            return SnapshotRefresh::Unchanged(sha);
        }
        let decoded = join(manifest, &shards).and_then(|bytes| {
            drop(shards);
            decode(&bytes)
        });
        match decoded {
            Ok(snapshot) => {
                let version = snapshot.version().to_string();
                let len = snapshot.len();
                let memory = snapshot.memory_bytes();
                let mut previous = self.install(snapshot, sha.clone());
                if let Some(marker) = marker {
                    let marked = marker.manifest.as_ref().map(|m| m.sha256.as_str());
                    if marked == Some(sha.as_str()) {
                        // The steady state: no log, no write.
                        return SnapshotRefresh::Unchanged(sha);
                    }
                    previous = marker.version.clone().or(previous);
                    SnapshotMarker {
                        manifest: Some(manifest.clone()),
                        version: Some(version.clone()),
                        rejected: None,
                    }
                    .write(p)
                    .await;
                }
                p.log_line(&event_line(
                    "snapshot_activated",
                    p.now_ms(),
                    json!({
                        "version": version, "sha256": sha, "previous": previous,
                        "subscriptions": len.subscriptions, "credentials": len.credentials,
                        "memory_bytes": memory,
                    }),
                ));
                SnapshotRefresh::Activated(version)
            }
            Err(e) => {
                self.state.borrow_mut().rejected = Some(sha.clone());
                let serving = match marker {
                    None => self.active().map(|a| a.version().to_string()),
                    // A fresh instance serves the marker's snapshot (loaded after this).
                    Some(marker) if marker.rejected.as_deref() != Some(sha.as_str()) => {
                        SnapshotMarker {
                            rejected: Some(sha.clone()),
                            ..marker.clone()
                        }
                        .write(p)
                        .await;
                        marker.version.clone()
                    }
                    // Already logged by an earlier request.
                    Some(_) => return SnapshotRefresh::Rejected(sha),
                };
                p.log_line(&event_line(
                    "snapshot_rejected",
                    p.now_ms(),
                    json!({"sha256": sha, "error": e.to_string(), "serving": serving}),
                ));
                SnapshotRefresh::Rejected(sha)
            }
        }
    }
}

/// Logs `snapshot_store_error` and says so.
fn store_error<P: Clock + Log>(p: &P, key: &str, error: String) -> SnapshotRefresh {
    p.log_line(&event_line(
        "snapshot_store_error",
        p.now_ms(),
        json!({"key": key, "error": error}),
    ));
    SnapshotRefresh::StoreError(error)
}
