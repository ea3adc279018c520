//! The version history (`config:history`): which versions are stored, in the order they were
//! last activated, and where each came from.

use super::{RegistryError, HISTORY_KEY};
use crate::platform::Kv;
use crate::snapshot::ShardManifest;
use serde::{Deserialize, Serialize};

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
        match p.get_text(HISTORY_KEY).await {
            Ok(None) => Ok(History::default()),
            Ok(Some(text)) => serde_json::from_str(&text).map_err(|e| {
                RegistryError::new("store_failed", format!("{HISTORY_KEY} does not parse: {e}"))
            }),
            Err(e) => Err(RegistryError::store(HISTORY_KEY, e)),
        }
    }

    /// Writes the history to KV (one write).
    ///
    /// Errors: `store_failed`.
    pub async fn save<P: Kv>(&self, p: &P) -> Result<(), RegistryError> {
        let text = serde_json::to_string(self).unwrap_or_default();
        p.put_text(HISTORY_KEY, &text)
            .await
            .map_err(|e| RegistryError::store(HISTORY_KEY, e))
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
}
