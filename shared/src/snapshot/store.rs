//! The isolate's snapshot cache: reads the Registry snapshot from the key-value store,
//! decodes each new one once, re-checks on an interval, and never activates a snapshot that
//! fails to join or decode (the previous one keeps serving).
//!
//! Keys: [`MANIFEST_KEY`] holds the [`ShardManifest`] (JSON) of the current snapshot; its
//! shards are at [`ShardManifest::shard_key`]`(`[`SHARD_PREFIX`]`, i)`. The Registry sync
//! writes the shards first and the manifest last; shards are content-addressed, so a new
//! snapshot never overwrites one an isolate may be reading.

use super::{decode, join, ShardManifest, Snapshot};
use crate::access_log::event_line;
use crate::config_store::refresh_due;
use crate::platform::{Clock, Kv, Log};
use crate::single_flight::SingleFlight;
use serde_json::json;
use std::cell::RefCell;
use std::rc::Rc;

/// The key of the current snapshot's manifest.
pub const MANIFEST_KEY: &str = "snapshot:manifest";
/// The prefix of shard keys (`snapshot:<sha256>:<i>`).
pub const SHARD_PREFIX: &str = "snapshot";
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

#[derive(Default)]
struct State {
    active: Option<Rc<Snapshot>>,
    active_sha: Option<String>,
    checked_at: Option<u64>,
    rejected: Option<String>,
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
    pub async fn current<P: Kv + Clock + Log>(&self, p: &P) -> Option<Rc<Snapshot>> {
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

    /// The active snapshot without refreshing.
    pub fn active(&self) -> Option<Rc<Snapshot>> {
        self.state.borrow().active.clone()
    }

    /// Reads the manifest now and activates the snapshot it names if it joins and decodes.
    /// Logs an event for every activation and every rejection (once per snapshot).
    pub async fn refresh<P: Kv + Clock + Log>(&self, p: &P) -> SnapshotRefresh {
        let outcome = self.refresh_inner(p).await;
        self.state.borrow_mut().checked_at = Some(p.now_ms());
        outcome
    }

    async fn refresh_inner<P: Kv + Clock + Log>(&self, p: &P) -> SnapshotRefresh {
        let store_error = |key: &str, error: String| {
            p.log_line(&event_line(
                "snapshot_store_error",
                p.now_ms(),
                json!({"key": key, "error": error}),
            ));
            SnapshotRefresh::StoreError(error)
        };
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
        let mut shards = Vec::with_capacity(manifest.shards.min(64) as usize);
        for i in 0..manifest.shards {
            let key = manifest.shard_key(SHARD_PREFIX, i);
            match p.get_bytes(&key).await {
                Ok(Some(b)) => shards.push(b),
                Ok(None) => {
                    p.log_line(&event_line(
                        "snapshot_shard_missing",
                        p.now_ms(),
                        json!({"sha256": sha, "key": key}),
                    ));
                    return SnapshotRefresh::Missing(sha);
                }
                Err(e) => return store_error(&key, e.0),
            }
        }
        if self.state.borrow().active_sha.as_deref() == Some(sha.as_str()) {
            return SnapshotRefresh::Unchanged(sha);
        }
        let decoded = join(&manifest, &shards).and_then(|bytes| {
            drop(shards);
            decode(&bytes)
        });
        match decoded {
            Ok(snapshot) => {
                let version = snapshot.version().to_string();
                let len = snapshot.len();
                let memory = snapshot.memory_bytes();
                let mut s = self.state.borrow_mut();
                let previous = s.active.as_ref().map(|a| a.version().to_string());
                s.active = Some(Rc::new(snapshot));
                s.active_sha = Some(sha.clone());
                s.rejected = None;
                drop(s);
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
                let serving = self.active().map(|a| a.version().to_string());
                p.log_line(&event_line(
                    "snapshot_rejected",
                    p.now_ms(),
                    json!({"sha256": sha, "error": e.to_string(), "serving": serving}),
                ));
                self.state.borrow_mut().rejected = Some(sha.clone());
                SnapshotRefresh::Rejected(sha)
            }
        }
    }
}
