//! The scheduled run ("tick"): what the Workers cron does every minute, in one place, so every
//! host runs the same steps — and, for hosts without a scheduler (Spin's HTTP trigger), a lazy
//! tick that requests start at most once per interval, one at a time across instances.
//!
//! [`Gateway::scheduled_run`] is the run itself: re-read the config pointer and the emergency
//! overrides, run the Registry sync (when it is configured; a pending backoff skips it), make
//! the active config's snapshot current, and prefetch the keys of every identity provider.
//! A failed sync does not stop the rest: the prefetch runs for the config that serves.
//!
//! [`Gateway::tick_if_due`] is the lazy tick: it runs [`Gateway::scheduled_run`] when the last
//! tick started at least [`TickSettings::interval_ms`] ago and no other tick holds the lease
//! ([`TICK_LEASE_KEY`], a [`TickLease`] in key-value: owner id and expiry). The lease is
//! written before the work and read back to check that this instance won; its expiry bounds a
//! run that crashed or was killed. Key-value has no compare-and-set: two instances that read
//! the same free lease and write theirs within the store's read-after-write window can both
//! run. That is harmless: the sync is idempotent (the Registry's ETag, the content-addressed
//! version, and the pointer written last), and the prefetch only fills a cache.

use super::{RegistryError, SettingsError};
use crate::access_log::event_line;
use crate::config_store::RefreshOutcome;
use crate::pipeline::Gateway;
use crate::platform::Platform;
use crate::snapshot::SnapshotRefresh;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The KV key of the lazy tick's lease ([`TickLease`], JSON).
pub const TICK_LEASE_KEY: &str = "registry:tick-lease";
/// The lazy tick's interval in seconds (default 60, like the Workers cron; `0`: no lazy tick,
/// for deployments that run the tick from a scheduler instead).
pub const INTERVAL_VAR: &str = "EDGEGATE_SYNC_INTERVAL_S";
/// The default interval: the Workers cron runs every minute.
pub const DEFAULT_INTERVAL_S: u64 = 60;
/// The longest interval [`INTERVAL_VAR`] may set (a day).
pub const MAX_INTERVAL_S: u64 = 86_400;
/// A tick's lease lasts at least this much longer than the Registry timeout: the rest of the
/// run (KV writes, snapshot, JWKS fetches) must fit in it.
const LEASE_MARGIN_MS: u64 = 60_000;
/// The Registry timeout assumed for the lease when the sync is off or misconfigured.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// How often the lazy tick runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickSettings {
    /// At most one tick starts per this many ms; `0`: the lazy tick is off.
    pub interval_ms: u64,
}

impl Default for TickSettings {
    fn default() -> Self {
        TickSettings {
            interval_ms: DEFAULT_INTERVAL_S * 1_000,
        }
    }
}

impl TickSettings {
    /// Reads [`INTERVAL_VAR`] through `var` (unset or empty: [`DEFAULT_INTERVAL_S`]).
    ///
    /// Errors: a value that is not a whole number of seconds in `0..=`[`MAX_INTERVAL_S`].
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<TickSettings, SettingsError> {
        let Some(text) = var(INTERVAL_VAR)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
        else {
            return Ok(TickSettings::default());
        };
        let seconds = text
            .parse::<u64>()
            .ok()
            .filter(|s| *s <= MAX_INTERVAL_S)
            .ok_or_else(|| SettingsError {
                variable: INTERVAL_VAR,
                message: format!(
                    "`{text}` is not a number of seconds in 0..={MAX_INTERVAL_S} (0: no lazy tick)"
                ),
            })?;
        Ok(TickSettings {
            interval_ms: seconds * 1_000,
        })
    }

    /// How long a tick's lease holds off other ticks (`registry_timeout_ms`: the sync's
    /// whole-exchange timeout): the interval, or the timeout plus a minute for the rest of
    /// the run, whichever is longer. A run that dies keeps the lease until then.
    pub fn lease_ms(&self, registry_timeout_ms: u64) -> u64 {
        self.interval_ms
            .max(registry_timeout_ms.saturating_add(LEASE_MARGIN_MS))
    }
}

/// The lazy tick's lease, stored at [`TICK_LEASE_KEY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickLease {
    /// The holder's random id (hex).
    pub owner: String,
    /// When its tick started (unix ms); the next one is due an interval later.
    pub started_ms: u64,
    /// Until when the lease holds off other ticks if the holder does not finish (unix ms).
    pub expires_ms: u64,
    /// When the holder finished (unix ms): the lease is free from then on.
    pub finished_ms: Option<u64>,
}

/// Why a tick may not start now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "tick", rename_all = "snake_case")]
pub enum NotDue {
    /// The last tick started less than an interval ago.
    Early {
        /// When the next tick is due (unix ms).
        due_ms: u64,
    },
    /// Another tick holds a live lease.
    Busy {
        /// Until when (unix ms), unless it finishes earlier.
        until_ms: u64,
    },
}

impl TickLease {
    /// Whether a tick may start at `now_ms` with `interval_ms` between ticks: only if the lease
    /// is free (finished, or expired) and the last tick started at least an interval ago.
    pub fn check(&self, now_ms: u64, interval_ms: u64) -> Result<(), NotDue> {
        if self.finished_ms.is_none() && now_ms < self.expires_ms {
            return Err(NotDue::Busy {
                until_ms: self.expires_ms,
            });
        }
        let due_ms = self.started_ms.saturating_add(interval_ms);
        if now_ms < due_ms {
            return Err(NotDue::Early { due_ms });
        }
        Ok(())
    }
}

/// What one scheduled run did (the fields of the Workers cron's `config_check` line).
#[derive(Debug, Clone, PartialEq)]
pub struct TickReport {
    /// The config pointer's re-read.
    pub config: RefreshOutcome,
    /// Whether the emergency overrides could be read.
    pub control_reachable: bool,
    /// The sync's outcome as JSON (`{"result": "off"}`, `{"result": "failed", "code": …}`, or
    /// the [`super::SyncOutcome`]).
    pub registry: Value,
    /// The snapshot refresh.
    pub snapshot: SnapshotRefresh,
    /// JWKS keys fetched by the prefetch.
    pub jwks_keys: usize,
}

impl TickReport {
    /// The report as log fields: `outcome`, `snapshot`, `jwks_keys`, `control_reachable`,
    /// `registry`.
    pub fn fields(&self) -> Value {
        json!({
            "outcome": format!("{:?}", self.config),
            "snapshot": format!("{:?}", self.snapshot),
            "jwks_keys": self.jwks_keys,
            "control_reachable": self.control_reachable,
            "registry": self.registry,
        })
    }
}

/// What [`Gateway::tick_if_due`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum TickDecision {
    /// Nothing to do: the lazy tick is off, or no sync is configured and the config has no
    /// identity provider (no key-value read was made).
    Idle,
    /// Not due (see [`NotDue`]).
    NotDue(NotDue),
    /// Another instance wrote the lease between this one's read and its read-back.
    Lost,
    /// The lease could not be read or written: no tick (the next request tries again).
    StoreFailed(RegistryError),
    /// This instance held the lease and ran the tick.
    Ran(TickReport),
}

impl Gateway {
    /// One scheduled run, as the Workers cron does it every minute: re-read the config pointer
    /// and the emergency overrides; run the Registry sync unforced (an activation is served
    /// here at once); make the active config's snapshot current; prefetch the keys of every
    /// identity provider of the active config. A sync that fails, is off, or is backing off
    /// does not stop the rest.
    pub async fn scheduled_run<P: Platform>(&self, p: &P) -> TickReport {
        let mut config = self.config_store().refresh(p).await;
        let control_reachable = self.control().refresh(p).await;
        let registry = match self.sync_registry(p, false).await {
            Ok(sync) => {
                if let super::SyncOutcome::Activated { version, .. } = &sync {
                    config = RefreshOutcome::Activated(version.clone());
                }
                serde_json::to_value(sync).unwrap_or_default()
            }
            Err(e) if e.code == "registry_off" => json!({"result": "off"}),
            Err(e) => json!({"result": "failed", "code": e.code}),
        };
        let manifest = self
            .config_store()
            .active()
            .and_then(|c| c.snapshot_manifest().cloned());
        let snapshot = self
            .snapshot_store()
            .refresh_for(p, manifest.as_ref())
            .await;
        let jwks_keys = match self.config_store().active() {
            Some(config) => self.authenticator().prefetch(p, &config).await,
            None => 0,
        };
        TickReport {
            config,
            control_reachable,
            registry,
            snapshot,
            jwks_keys,
        }
    }

    /// The lazy tick, for hosts without a scheduler: runs [`Gateway::scheduled_run`] when it
    /// is due and this instance wins the lease (see the module doc), then frees the lease.
    /// Call it after the response is sent: it waits for the Registry and the identity
    /// providers (each bounded by its own timeout).
    ///
    /// Idle (no key-value access) when `settings.interval_ms` is 0, or when the sync is off
    /// and the active config has no identity provider. Logs `config_check` when it ran, the line the Workers
    /// cron logs (the [`TickReport::fields`], `"trigger": "tick"`, `ms`, `lease_freed`), `registry_tick_lost` and `registry_tick_store_failed`.
    pub async fn tick_if_due<P: Platform>(&self, p: &P, settings: &TickSettings) -> TickDecision {
        let timeout_ms = match self.registry_settings() {
            Ok(Some(s)) => Some(s.timeout_ms),
            Ok(None) => None,
            Err(_) => Some(DEFAULT_TIMEOUT_MS),
        };
        let has_providers = self
            .config_store()
            .active()
            .is_some_and(|c| !c.identity_providers().is_empty());
        if settings.interval_ms == 0 || (timeout_ms.is_none() && !has_providers) {
            return TickDecision::Idle;
        }
        let lease = match super::stored::load::<P, TickLease>(p, TICK_LEASE_KEY).await {
            Ok(l) => l,
            Err(e) => return self.tick_store_failed(p, e),
        };
        let now = p.now_ms();
        if let Err(why) = lease.check(now, settings.interval_ms) {
            return TickDecision::NotDue(why);
        }
        let mut id = [0u8; 16];
        p.fill(&mut id);
        let mine = TickLease {
            owner: id.iter().map(|b| format!("{b:02x}")).collect(),
            started_ms: now,
            expires_ms: now
                .saturating_add(settings.lease_ms(timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS))),
            finished_ms: None,
        };
        if let Err(e) = super::stored::save(p, TICK_LEASE_KEY, &mine).await {
            return self.tick_store_failed(p, e);
        }
        match super::stored::load::<P, TickLease>(p, TICK_LEASE_KEY).await {
            Ok(back) if back.owner == mine.owner => {}
            Ok(back) => {
                p.log_line(&event_line(
                    "registry_tick_lost",
                    p.now_ms(),
                    json!({"started_ms": back.started_ms}),
                ));
                return TickDecision::Lost;
            }
            Err(e) => return self.tick_store_failed(p, e),
        }
        let report = self.scheduled_run(p).await;
        let finished = p.now_ms();
        let done = TickLease {
            finished_ms: Some(finished),
            ..mine
        };
        // A lease that cannot be freed expires on its own.
        let freed = super::stored::save(p, TICK_LEASE_KEY, &done).await.is_ok();
        let mut fields = report.fields();
        if let Some(map) = fields.as_object_mut() {
            map.insert("trigger".into(), json!("tick"));
            map.insert("ms".into(), json!(finished.saturating_sub(now)));
            map.insert("lease_freed".into(), json!(freed));
        }
        p.log_line(&event_line("config_check", finished, fields));
        TickDecision::Ran(report)
    }

    fn tick_store_failed<P: Platform>(&self, p: &P, e: RegistryError) -> TickDecision {
        p.log_line(&event_line(
            "registry_tick_store_failed",
            p.now_ms(),
            json!({"code": e.code, "error": e.message}),
        ));
        TickDecision::StoreFailed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: Option<&str>) -> Result<TickSettings, SettingsError> {
        TickSettings::from_vars(|n| (n == INTERVAL_VAR).then(|| v.map(String::from)).flatten())
    }

    #[test]
    fn interval_setting() {
        assert_eq!(vars(None).map(|s| s.interval_ms), Ok(60_000));
        assert_eq!(vars(Some(" ")).map(|s| s.interval_ms), Ok(60_000));
        assert_eq!(vars(Some("300")).map(|s| s.interval_ms), Ok(300_000));
        assert_eq!(vars(Some("0")).map(|s| s.interval_ms), Ok(0));
        for bad in ["-1", "1.5", "ten", "86401"] {
            assert_eq!(
                vars(Some(bad)).map_err(|e| e.variable),
                Err(INTERVAL_VAR),
                "{bad}"
            );
        }
    }

    #[test]
    fn lease_outlives_the_sync_timeout() {
        let s = TickSettings::default();
        assert_eq!(s.lease_ms(10_000), 70_000);
        let long = TickSettings {
            interval_ms: 600_000,
        };
        assert_eq!(long.lease_ms(10_000), 600_000);
    }

    #[test]
    fn a_tick_is_due_after_the_interval_when_the_lease_is_free() {
        let fresh = TickLease::default();
        assert_eq!(fresh.check(1_700_000_000_000, 60_000), Ok(()), "never ran");
        let running = TickLease {
            owner: "a".into(),
            started_ms: 1_000,
            expires_ms: 71_000,
            finished_ms: None,
        };
        assert_eq!(
            running.check(61_000, 60_000),
            Err(NotDue::Busy { until_ms: 71_000 })
        );
        assert_eq!(running.check(71_000, 60_000), Ok(()), "expired");
        let done = TickLease {
            finished_ms: Some(3_000),
            ..running
        };
        assert_eq!(
            done.check(30_000, 60_000),
            Err(NotDue::Early { due_ms: 61_000 })
        );
        assert_eq!(done.check(61_000, 60_000), Ok(()));
    }
}
