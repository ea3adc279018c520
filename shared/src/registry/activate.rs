//! Operator actions on stored versions: [`activate`], [`rollback`], and the read-only
//! [`history`] and [`status`].

use super::history::{History, Source};
use super::status::SyncStatus;
use super::{check, RegistryError};
use crate::access_log::event_line;
use crate::config_store::{version_key, ConfigStore, POINTER_KEY};
use crate::platform::{ClientCertificates, Clock, Kv, Log};
use serde::Serialize;
use serde_json::json;

/// What an activation did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Activation {
    /// The version now active.
    pub version: String,
    /// The version active before (`None`: no pointer). Equal to `version` when it was already
    /// active (nothing was written).
    pub previous: Option<String>,
    /// Why it was activated.
    pub source: Source,
    /// When the pointer was written (unix ms).
    pub activated_at_ms: u64,
}

/// Activates stored version `id` (admin API: activate; [`rollback`]). Only versions in the
/// history can be activated, and only after their config compiles for this platform and
/// their snapshot's shards (if any) join and decode, by `rules` (the isolate's config store:
/// [`ConfigStore::compile`]). Writes the history, then the pointer
/// (one write activates config and snapshot). Logs `registry_activated`. The calling
/// isolate should refresh its config store right after; other isolates follow within their
/// refresh interval (KV propagation: up to 60 s elsewhere).
///
/// Errors: `version_unknown` (not in the history), `version_missing` (its document is gone),
/// `config_invalid`, `snapshot_invalid`, `store_failed`.
pub async fn activate<P>(
    p: &P,
    rules: &ConfigStore,
    id: &str,
    source: Source,
) -> Result<Activation, RegistryError>
where
    P: Kv + Clock + Log + ClientCertificates,
{
    let mut history = History::load(p).await?;
    let entry = history
        .get(id)
        .cloned()
        .ok_or_else(|| RegistryError::new("version_unknown", format!("no stored version {id}")))?;
    let current = p
        .get_text(POINTER_KEY)
        .await
        .map_err(|e| RegistryError::store(POINTER_KEY, e))?
        .map(|v| v.trim().to_string());
    let key = version_key(id);
    let text = p
        .get_text(&key)
        .await
        .map_err(|e| RegistryError::store(&key, e))?
        .ok_or_else(|| {
            RegistryError::new("version_missing", format!("{key} is not in the store"))
        })?;
    let manifest = check::compile(p, rules, id, &text)?
        .snapshot_manifest()
        .cloned();
    if let Some(m) = &manifest {
        let shards = check::read_shards(p, m).await?;
        check::snapshot(Some(m), &shards)?;
    }
    if current.as_deref() == Some(id) {
        return Ok(Activation {
            version: id.to_string(),
            previous: current,
            source,
            activated_at_ms: entry.activated_at_ms,
        });
    }
    let now = p.now_ms();
    let before = history.clone();
    history.activated(entry, now, source);
    history.save(p).await?;
    if let Err(e) = p.put_text(POINTER_KEY, id).await {
        // Not activated: put the history back as it was (best effort, as the sync does), so
        // it keeps naming the active version first.
        let _ = before.save(p).await;
        return Err(RegistryError::store(POINTER_KEY, e));
    }
    let activated_at_ms = p.now_ms();
    p.log_line(&event_line(
        "registry_activated",
        activated_at_ms,
        json!({"version": id, "previous": current, "source": source}),
    ));
    Ok(Activation {
        version: id.to_string(),
        previous: current,
        source,
        activated_at_ms,
    })
}

/// Rolls back to the version active before the current one (the next entry of the history
/// after the pointer's version) with [`activate`]. Rolling back twice returns to where it
/// started. The Registry sync does not undo a rollback until the Registry serves a new bundle
/// (its answer stays 304).
///
/// Errors: `no_previous_version`, and those of [`activate`].
pub async fn rollback<P>(p: &P, rules: &ConfigStore) -> Result<Activation, RegistryError>
where
    P: Kv + Clock + Log + ClientCertificates,
{
    let history = History::load(p).await?;
    let current = p
        .get_text(POINTER_KEY)
        .await
        .map_err(|e| RegistryError::store(POINTER_KEY, e))?
        .map(|v| v.trim().to_string());
    let target = history
        .previous(current.as_deref())
        .map(|e| e.id.clone())
        .ok_or_else(|| {
            RegistryError::new("no_previous_version", "the history has no other version")
        })?;
    activate(p, rules, &target, Source::Rollback).await
}

/// The version history, newest activation first (admin API).
///
/// Errors: `store_failed`.
pub async fn history<P: Kv>(p: &P) -> Result<History, RegistryError> {
    History::load(p).await
}

/// The sync status (admin API, health).
///
/// Errors: `store_failed`.
pub async fn status<P: Kv>(p: &P) -> Result<SyncStatus, RegistryError> {
    SyncStatus::load(p).await
}
