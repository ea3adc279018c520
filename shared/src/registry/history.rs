//! The version history (`config:history`): which versions are stored, in the order they were
//! last activated, and where each came from.

use super::{RegistryError, HISTORY_KEY};
use crate::config_store::version_key;
use crate::platform::Kv;
use crate::snapshot::{ShardManifest, SHARD_PREFIX};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// What activated a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The Registry sync (cron or "sync now").
    Sync,
    /// An operator's activation through the admin API.
    Activate,
    /// A rollback through the admin API.
    Rollback,
    /// The operator CLI's `push`.
    Push,
}

/// One stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version id (content hash of the bundle's signed part).
    pub id: String,
    /// The Registry's label of the release.
    pub label: String,
    /// When the Registry built the bundle (unix ms).
    pub created_at_ms: u64,
    /// When it was stored in KV (unix ms).
    pub stored_at_ms: u64,
    /// When it was last activated (unix ms).
    pub activated_at_ms: u64,
    /// What last activated it.
    pub source: Source,
    /// The key whose signature verified (`None`: accepted unsigned).
    pub key_id: Option<String>,
    /// The snapshot its config embeds (retention keeps the shards of retained versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<ShardManifest>,
}

/// What retention deletes once the pointer names the version that was just activated (see
/// [`History::retention`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    /// The removed versions' documents (`config:version:<id>`).
    pub documents: Vec<String>,
    /// The shards (`snapshot:<sha256>:<i>`) of the removed versions' snapshots that no version
    /// left in the history, nor the legacy `snapshot:manifest`, names; each snapshot once.
    pub shards: Vec<String>,
}

/// The stored versions, newest activation first (so the first entry is the version the
/// pointer was last moved to, the second the one active before it). Each id appears once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The entries, newest activation first.
    pub entries: Vec<HistoryEntry>,
}

impl History {
    /// Reads the history from KV; an absent key is an empty history.
    ///
    /// Errors: `store_failed` when the store cannot be read or the value is not a history.
    pub async fn load<P: Kv>(p: &P) -> Result<History, RegistryError> {
        super::stored::load(p, HISTORY_KEY).await
    }

    /// Writes the history to KV (one write).
    ///
    /// Errors: `store_failed`.
    pub async fn save<P: Kv>(&self, p: &P) -> Result<(), RegistryError> {
        super::stored::save(p, HISTORY_KEY, self).await
    }

    /// The entry of version `id`.
    pub fn get(&self, id: &str) -> Option<&HistoryEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    /// Records an activation: `entry` moves to the front (replacing an entry with its id,
    /// whose `stored_at_ms` is kept), with `activated_at_ms` and `source` set.
    pub fn activated(&mut self, mut entry: HistoryEntry, at_ms: u64, source: Source) {
        if let Some(pos) = self.entries.iter().position(|e| e.id == entry.id) {
            let old = self.entries.remove(pos);
            entry.stored_at_ms = old.stored_at_ms;
        }
        entry.activated_at_ms = at_ms;
        entry.source = source;
        self.entries.insert(0, entry);
    }

    /// The version to roll back to from `current`: the most recently activated other one.
    pub fn previous(&self, current: Option<&str>) -> Option<&HistoryEntry> {
        self.entries.iter().find(|e| Some(e.id.as_str()) != current)
    }

    /// Checks that a version's snapshot `manifest` can be stored beside the stored versions.
    /// Shard keys name a snapshot by its SHA-256 only, so the same snapshot split another way
    /// would overwrite the shards a stored version reads. Runs in the Registry sync and the
    /// CLI's `push` before any shard is written.
    ///
    /// Errors: `snapshot_invalid`, naming the stored version and its split.
    pub fn check_split(&self, manifest: &ShardManifest) -> Result<(), RegistryError> {
        let other = self.entries.iter().find_map(|e| {
            e.snapshot
                .as_ref()
                .filter(|s| s.sha256 == manifest.sha256 && *s != manifest)
                .map(|s| (e.id.as_str(), s.shards))
        });
        match other {
            None => Ok(()),
            Some((id, shards)) => Err(RegistryError::new(
                "snapshot_invalid",
                format!(
                    "snapshot {} is stored split into {shards} shard(s) by version {id}; this \
                     bundle splits it into {} (build it with the same shard size)",
                    manifest.sha256, manifest.shards
                ),
            )),
        }
    }

    /// Records the activation of `entry` by `source` at `at_ms` ([`History::activated`]) and
    /// applies the retention rule ([`History::retain_newest`]: the newest `keep` entries,
    /// always `entry`); returns the removed entries (see [`History::retention`] for what to
    /// delete). The one rule of the Registry sync and the operator CLI's `push`, applied
    /// before the history is written (KV takes one write per second per key).
    pub fn record_activation(
        &mut self,
        entry: HistoryEntry,
        at_ms: u64,
        source: Source,
        keep: usize,
    ) -> Vec<HistoryEntry> {
        let id = entry.id.clone();
        self.activated(entry, at_ms, source);
        self.retain_newest(keep, Some(&id))
    }

    /// What to delete after `removed` left this history: their documents, and the shards of
    /// their snapshots that no remaining entry and not `legacy` (the `snapshot:manifest` an
    /// operator uploaded by hand; shards are content-addressed, so it may name the same ones)
    /// still name. Pure: the caller deletes, after the pointer write.
    pub fn retention(&self, removed: &[HistoryEntry], legacy: Option<&ShardManifest>) -> Retention {
        let mut referenced: HashSet<&str> = self
            .entries
            .iter()
            .filter_map(|e| e.snapshot.as_ref().map(|m| m.sha256.as_str()))
            .chain(legacy.map(|m| m.sha256.as_str()))
            .collect();
        let documents = removed.iter().map(|e| version_key(&e.id)).collect();
        let mut shards = Vec::new();
        for m in removed.iter().filter_map(|e| e.snapshot.as_ref()) {
            if referenced.insert(m.sha256.as_str()) {
                shards.extend((0..m.shards).map(|i| m.shard_key(SHARD_PREFIX, i)));
            }
        }
        Retention { documents, shards }
    }

    /// Keeps the first `keep` entries (and always the `active` one); returns the removed ones.
    pub fn retain_newest(&mut self, keep: usize, active: Option<&str>) -> Vec<HistoryEntry> {
        let mut kept = Vec::new();
        let mut removed = Vec::new();
        for e in self.entries.drain(..) {
            if kept.len() < keep || Some(e.id.as_str()) == active {
                kept.push(e);
            } else {
                removed.push(e);
            }
        }
        self.entries = kept;
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str) -> HistoryEntry {
        HistoryEntry {
            id: id.into(),
            label: format!("label {id}"),
            created_at_ms: 1,
            stored_at_ms: 10,
            activated_at_ms: 0,
            source: Source::Sync,
            key_id: None,
            snapshot: None,
        }
    }

    fn ids(h: &History) -> Vec<&str> {
        h.entries.iter().map(|e| e.id.as_str()).collect()
    }

    #[test]
    fn activation_order_previous_and_retention() {
        let mut h = History::default();
        for (i, id) in ["a", "b", "c"].iter().enumerate() {
            h.activated(entry(id), 100 + i as u64, Source::Sync);
        }
        assert_eq!(ids(&h), ["c", "b", "a"]);
        assert_eq!(h.previous(Some("c")).map(|e| e.id.as_str()), Some("b"));
        let mut again = entry("a");
        again.stored_at_ms = 999;
        h.activated(again, 200, Source::Rollback);
        assert_eq!(
            ids(&h),
            ["a", "c", "b"],
            "distinct, newest activation first"
        );
        let a = h.get("a").expect("a");
        assert_eq!(
            (a.stored_at_ms, a.activated_at_ms, a.source),
            (10, 200, Source::Rollback)
        );
        assert_eq!(h.previous(Some("a")).map(|e| e.id.as_str()), Some("c"));
        assert_eq!(h.previous(Some("zzz")).map(|e| e.id.as_str()), Some("a"));

        let removed = h.clone().retain_newest(2, Some("a"));
        assert_eq!(
            removed.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["b"]
        );
        // The active version is kept even past the limit (the pointer was moved elsewhere).
        let mut h2 = h.clone();
        let removed = h2.retain_newest(1, Some("b"));
        assert_eq!(ids(&h2), ["a", "b"]);
        assert_eq!(removed.len(), 1);
        let json = serde_json::to_value(&h).expect("json");
        assert_eq!(json["entries"][0]["source"], "rollback");
    }

    fn with_snapshot(id: &str, sha: &str, shards: u32) -> HistoryEntry {
        HistoryEntry {
            snapshot: Some(ShardManifest {
                shards,
                len: 10,
                sha256: sha.into(),
            }),
            ..entry(id)
        }
    }

    #[test]
    fn record_activation_and_retention_delete_only_unreferenced_shards() {
        // (name, versions activated in order as (id, snapshot sha), keep, legacy sha,
        //  kept ids, deleted documents, deleted shards)
        type Row = (
            &'static str,
            Vec<(&'static str, &'static str)>,
            usize,
            Option<&'static str>,
            Vec<&'static str>,
            Vec<&'static str>,
            Vec<&'static str>,
        );
        let rows: Vec<Row> = vec![
            (
                "under the limit",
                vec![("a", "s1"), ("b", "s2")],
                2,
                None,
                vec!["b", "a"],
                vec![],
                vec![],
            ),
            (
                "the oldest goes with its shards",
                vec![("a", "s1"), ("b", "s2"), ("c", "s3")],
                2,
                None,
                vec!["c", "b"],
                vec!["config:version:a"],
                vec!["snapshot:s1:0", "snapshot:s1:1"],
            ),
            (
                "shards a kept version names stay",
                vec![("a", "s1"), ("b", "s1"), ("c", "s2")],
                2,
                None,
                vec!["c", "b"],
                vec!["config:version:a"],
                vec![],
            ),
            (
                "shards snapshot:manifest names stay",
                vec![("a", "s1"), ("b", "s2"), ("c", "s3")],
                2,
                Some("s1"),
                vec!["c", "b"],
                vec!["config:version:a"],
                vec![],
            ),
            (
                "two removed versions sharing a snapshot: its shards once",
                vec![("a", "s1"), ("b", "s1"), ("c", "s2")],
                1,
                None,
                vec!["c"],
                vec!["config:version:a", "config:version:b"],
                vec!["snapshot:s1:0", "snapshot:s1:1"],
            ),
            (
                "re-activating a listed version moves it to the front",
                vec![("a", "s1"), ("b", "s2"), ("a", "s1"), ("c", "s3")],
                2,
                None,
                vec!["c", "a"],
                vec!["config:version:b"],
                vec!["snapshot:s2:0", "snapshot:s2:1"],
            ),
        ];
        for (name, versions, keep, legacy, kept, documents, shards) in rows {
            let legacy = legacy.map(|sha| with_snapshot("legacy", sha, 2).snapshot.expect("m"));
            let mut h = History::default();
            let mut deleted = Retention::default();
            // Each activation deletes what its retention names, as the sync and push do.
            for (i, (id, sha)) in versions.into_iter().enumerate() {
                let removed = h.record_activation(
                    with_snapshot(id, sha, 2),
                    100 + i as u64,
                    Source::Push,
                    keep,
                );
                let r = h.retention(&removed, legacy.as_ref());
                deleted.documents.extend(r.documents);
                deleted.shards.extend(r.shards);
            }
            assert_eq!(ids(&h), kept, "{name}");
            assert_eq!(deleted.documents, documents, "{name}");
            assert_eq!(deleted.shards, shards, "{name}");
        }
        // Removed together, two versions naming one snapshot: its shards are listed once.
        let removed = [with_snapshot("x", "s9", 1), with_snapshot("y", "s9", 1)];
        let r = History::default().retention(&removed, None);
        assert_eq!(
            (r.documents.len(), r.shards),
            (2, vec!["snapshot:s9:0".to_string()])
        );
    }
}
