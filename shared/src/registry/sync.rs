//! [`sync`]: one Registry sync, from the fetch to the retention of old versions.

use super::history::{History, HistoryEntry, Source};
use super::status::{SyncResult, SyncStatus};
use super::{check, RegistryError, RegistrySettings, MAX_BUNDLE_BYTES};
use crate::access_log::event_line;
use crate::bundle;
use crate::config_store::{version_key, ConfigStore, POINTER_KEY};
use crate::platform::{ClientCertificates, Clock, Crypto, Http, HttpRequest, Kv, Log};
use crate::snapshot::{ShardManifest, MANIFEST_KEY, SHARD_PREFIX};
use serde::Serialize;
use serde_json::json;

/// What a sync did (the admin API returns it as JSON, tagged by `result`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum SyncOutcome {
    /// A new version was verified, compiled, stored and activated.
    Activated {
        /// The new active version.
        version: String,
        /// The Registry's label.
        label: String,
        /// The version active before (if any).
        previous: Option<String>,
        /// The key whose signature verified (`None`: accepted unsigned).
        key_id: Option<String>,
        /// Versions deleted by retention.
        removed: Vec<String>,
        /// When the pointer was written (unix ms).
        activated_at_ms: u64,
    },
    /// The Registry answered 304 Not Modified.
    NotModified,
    /// The Registry served the version that is already active.
    Unchanged {
        /// The active version.
        version: String,
    },
    /// Not attempted: a backoff after failures is pending (only unforced syncs).
    Skipped {
        /// When the next unforced attempt may run (unix ms).
        next_attempt_ms: u64,
    },
}

/// Runs one Registry sync. Called by the cron (`force` false: a pending backoff skips it) and
/// by the admin API's "sync now" (`force` true: ignores the backoff).
///
/// `rules` is the isolate's config store: the bundle's config must pass its
/// [`ConfigStore::compile`], as every isolate will compile it.
///
/// Steps: `GET settings.url` with `Authorization: Bearer` and `If-None-Match` (the last ETag);
/// 304 → [`SyncOutcome::NotModified`]. Otherwise the bundle is decoded, its signature verified
/// with the configured keys, its config compiled exactly as the isolates will compile it, its
/// snapshot joined and decoded (it must be the one the config's `snapshot` manifest names).
/// Then the writes, in this order: the snapshot shards (always: identical bytes are safe to
/// rewrite; the same snapshot split differently than a stored version is `snapshot_invalid`,
/// as its keys would collide), `config:version:<id>`, `config:history` (with retention applied), and last the
/// pointer `config:active` — one write that activates config and snapshot together. Then the
/// versions beyond `settings.keep_versions` are deleted, with the shards no retained version
/// (nor `snapshot:manifest`) references.
///
/// Every outcome is recorded in `registry:status` and logged (`registry_sync`, or
/// `registry_sync_failed` with the error's code).
///
/// Errors: a [`RegistryError`] (see its codes); the last good version keeps serving, and the
/// next unforced attempt waits for the backoff (`settings.backoff_ms`, doubling).
pub async fn sync<P>(
    p: &P,
    rules: &ConfigStore,
    settings: &RegistrySettings,
    force: bool,
) -> Result<SyncOutcome, RegistryError>
where
    P: Kv + Http + Crypto + Clock + Log + ClientCertificates,
{
    let started = p.now_ms();
    let mut status = match SyncStatus::load(p).await {
        Ok(s) => s,
        Err(e) => {
            // A status that cannot be read must not stop syncing; it is rewritten below.
            p.log_line(&event_line(
                "registry_status_unreadable",
                started,
                json!({"code": e.code, "error": e.message}),
            ));
            SyncStatus::default()
        }
    };
    if !force && !status.due(started) {
        let next = status.next_attempt_ms.unwrap_or(started);
        p.log_line(&event_line(
            "registry_sync_skipped",
            started,
            json!({"next_attempt_ms": next, "consecutive_failures": status.consecutive_failures}),
        ));
        return Ok(SyncOutcome::Skipped {
            next_attempt_ms: next,
        });
    }
    let result = attempt(p, rules, settings, &status).await;
    let now = p.now_ms();
    match &result {
        Ok((outcome, etag)) => {
            let (kind, version) = match outcome {
                SyncOutcome::Activated { version, .. } => {
                    (SyncResult::Activated, Some(version.clone()))
                }
                SyncOutcome::Unchanged { version } => {
                    (SyncResult::Unchanged, Some(version.clone()))
                }
                _ => (SyncResult::NotModified, None),
            };
            let etag = match outcome {
                SyncOutcome::NotModified => status.etag.clone(),
                _ => etag.clone(),
            };
            status.succeeded(now, kind, version, etag);
            let mut fields = serde_json::to_value(outcome).unwrap_or_default();
            fields["ms"] = json!(now.saturating_sub(started));
            fields["forced"] = json!(force);
            p.log_line(&event_line("registry_sync", now, fields));
        }
        Err(e) => {
            status.failed(now, e, settings.backoff_ms);
            let serving = p.get_text(POINTER_KEY).await.ok().flatten();
            p.log_line(&event_line(
                "registry_sync_failed",
                now,
                json!({
                    "code": e.code, "error": e.message, "config_errors": e.errors.len(),
                    "serving": serving, "consecutive_failures": status.consecutive_failures,
                    "next_attempt_ms": status.next_attempt_ms, "forced": force,
                }),
            ));
        }
    }
    if let Err(e) = status.save(p).await {
        p.log_line(&event_line(
            "registry_status_unwritable",
            p.now_ms(),
            json!({"code": e.code, "error": e.message}),
        ));
    }
    result.map(|(outcome, _)| outcome)
}

/// Fetch, check, store, activate. Returns the outcome and the answer's ETag.
async fn attempt<P>(
    p: &P,
    rules: &ConfigStore,
    settings: &RegistrySettings,
    status: &SyncStatus,
) -> Result<(SyncOutcome, Option<String>), RegistryError>
where
    P: Kv + Http + Crypto + Clock + Log + ClientCertificates,
{
    let mut headers = vec![("accept".to_string(), "application/octet-stream".to_string())];
    if let Some(token) = &settings.token {
        headers.push(("authorization".into(), format!("Bearer {token}")));
    }
    if let Some(etag) = &status.etag {
        headers.push(("if-none-match".into(), etag.clone()));
    }
    let req = HttpRequest {
        method: "GET".into(),
        url: settings.url.clone(),
        headers,
        body: None,
        timeout_ms: settings.timeout_ms,
    };
    let resp = p
        .fetch_buffered(&req, MAX_BUNDLE_BYTES)
        .await
        .map_err(|e| RegistryError::new("registry_unreachable", e.0))?;
    let etag = resp.headers.get("etag").map(str::to_string);
    match resp.status {
        304 => return Ok((SyncOutcome::NotModified, None)),
        200 => {}
        s => {
            return Err(RegistryError::new(
                "registry_status",
                format!("the Registry answered {s}"),
            ))
        }
    }
    let decoded = bundle::decode(&resp.body)?;
    let verified = bundle::verify(p, &decoded, &settings.keys, settings.allow_unsigned).await?;
    let id = decoded.version_id();
    let current = p
        .get_text(POINTER_KEY)
        .await
        .map_err(|e| RegistryError::store(POINTER_KEY, e))?
        .map(|v| v.trim().to_string());
    if current.as_deref() == Some(id.as_str()) {
        return Ok((SyncOutcome::Unchanged { version: id }, etag));
    }
    let manifest = check::compile(p, rules, &id, decoded.config)?
        .snapshot_manifest()
        .cloned();
    check::snapshot(manifest.as_ref(), &decoded.shards)?;

    let mut history = match History::load(p).await {
        Ok(h) => h,
        Err(e) => {
            // Syncing must not depend on the history being readable: start a new one (the
            // versions it listed are no longer deleted by retention).
            p.log_line(&event_line(
                "registry_history_reset",
                p.now_ms(),
                json!({"code": e.code, "error": e.message}),
            ));
            History::default()
        }
    };
    if let Some(m) = &manifest {
        history.check_split(m)?;
        // Written even when a stored version has the same snapshot: the history read here
        // may be stale (KV is eventually consistent), and retention may have deleted shards
        // it still lists; rewriting identical bytes is safe.
        for (i, shard) in decoded.shards.iter().enumerate() {
            let key = m.shard_key(SHARD_PREFIX, i as u32);
            p.put_bytes(&key, shard)
                .await
                .map_err(|e| RegistryError::store(&key, e))?;
        }
    }
    let key = version_key(&id);
    p.put_text(&key, decoded.config)
        .await
        .map_err(|e| RegistryError::store(&key, e))?;
    let before = history.clone();
    let now = p.now_ms();
    // Retention is applied to the history before it is written: KV takes one write per
    // second per key, so the history is written once per sync.
    let removed = history.record_activation(
        HistoryEntry {
            id: id.clone(),
            label: decoded.header.label.clone(),
            created_at_ms: decoded.header.created_at_ms,
            stored_at_ms: now,
            activated_at_ms: now,
            source: Source::Sync,
            key_id: verified.key_id.clone(),
            snapshot: manifest,
        },
        now,
        Source::Sync,
        settings.keep_versions,
    );
    history.save(p).await?;
    if let Err(e) = p.put_text(POINTER_KEY, &id).await {
        // Not activated: put the history back as it was (best effort; logged by the caller).
        let _ = before.save(p).await;
        return Err(RegistryError::store(POINTER_KEY, e));
    }
    let activated_at_ms = p.now_ms();
    delete_removed(p, &history, &removed).await;
    Ok((
        SyncOutcome::Activated {
            version: id,
            label: decoded.header.label,
            previous: current,
            key_id: verified.key_id,
            removed: removed.into_iter().map(|e| e.id).collect(),
            activated_at_ms,
        },
        etag,
    ))
}

/// Deletes what [`History::retention`] names for the `removed` versions: their documents,
/// and the shards that no version left in `history`, nor `snapshot:manifest`, references.
/// Failures are logged and left for a later sync's retention to miss (harmless: only space);
/// when `snapshot:manifest` cannot be read, no shard is deleted.
async fn delete_removed<P: Kv + Clock + Log>(p: &P, history: &History, removed: &[HistoryEntry]) {
    if removed.is_empty() {
        return;
    }
    let fail = |key: &str, error: String| {
        p.log_line(&event_line(
            "registry_retention_failed",
            p.now_ms(),
            json!({"key": key, "error": error}),
        ));
    };
    // Shards are content-addressed: the manually uploaded snapshot may be one of them.
    let legacy: Result<Option<ShardManifest>, String> = match p.get_text(MANIFEST_KEY).await {
        Ok(text) => Ok(text.and_then(|t| serde_json::from_str(&t).ok())),
        Err(err) => Err(err.0),
    };
    let retention = history.retention(removed, legacy.as_ref().ok().and_then(Option::as_ref));
    let mut keys = retention.documents;
    match legacy {
        Ok(_) => keys.extend(retention.shards),
        Err(err) => fail(MANIFEST_KEY, format!("not read, no shard deleted: {err}")),
    }
    for key in keys {
        if let Err(err) = p.delete(&key).await {
            fail(&key, err.0);
        }
    }
}

/// Records settings that cannot be used (the cron found [`RegistrySettings::from_vars`]
/// failing): logs `registry_sync_failed` with code `settings_invalid` and stores it in the
/// status, so health shows why nothing syncs. No backoff: the settings change only with a
/// deployment. Never fails (a status that cannot be written is logged).
pub async fn record_settings_error<P: Kv + Clock + Log>(p: &P, error: &super::SettingsError) {
    let e = RegistryError::from(error.clone());
    let now = p.now_ms();
    p.log_line(&event_line(
        "registry_sync_failed",
        now,
        json!({"code": e.code, "error": e.message}),
    ));
    let mut status = SyncStatus::load(p).await.unwrap_or_default();
    status.failed(now, &e, 0);
    status.next_attempt_ms = None;
    if let Err(e) = status.save(p).await {
        p.log_line(&event_line(
            "registry_status_unwritable",
            p.now_ms(),
            json!({"code": e.code, "error": e.message}),
        ));
    }
}
