//! The sync status (`registry:status`): what the last attempt did, the Registry's ETag, and
//! when the next cron tick may try again after failures.

use super::{RegistryError, STATUS_KEY};
use crate::platform::Kv;
use serde::{Deserialize, Serialize};

/// Cron ticks are not exact: an attempt this much before `next_attempt_ms` counts as due.
const TICK_SLACK_MS: u64 = 5_000;
/// The backoff stops doubling after this many failures (32 × the base).
const MAX_DOUBLINGS: u32 = 5;

/// What the last sync attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncResult {
    /// A new version was stored and activated.
    Activated,
    /// The Registry answered 304: nothing new.
    NotModified,
    /// The Registry served the version that is already active.
    Unchanged,
    /// It failed; `error` says why. The last good version serves.
    Failed,
}

/// An error as the status records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusError {
    /// Stable code ([`RegistryError::code`]).
    pub code: String,
    /// Detail.
    pub message: String,
}

/// The sync status, stored at [`STATUS_KEY`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncStatus {
    /// When the last attempt ran (unix ms).
    pub last_attempt_ms: Option<u64>,
    /// When the last attempt that did not fail ran (unix ms).
    pub last_success_ms: Option<u64>,
    /// What the last attempt did.
    pub result: Option<SyncResult>,
    /// The last attempt's error (`None` after a success).
    pub error: Option<StatusError>,
    /// The version the Registry last served successfully.
    pub version: Option<String>,
    /// The ETag of that answer (sent as `If-None-Match`).
    pub etag: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// No unforced attempt before this (unix ms); `None`: the next tick.
    pub next_attempt_ms: Option<u64>,
}

impl SyncStatus {
    /// Reads the status; an absent key is a fresh status.
    ///
    /// Errors: `store_failed` when the store cannot be read or the value does not parse.
    pub async fn load<P: Kv>(p: &P) -> Result<SyncStatus, RegistryError> {
        super::stored::load(p, STATUS_KEY).await
    }

    /// Writes the status (one write).
    ///
    /// Errors: `store_failed`.
    pub async fn save<P: Kv>(&self, p: &P) -> Result<(), RegistryError> {
        super::stored::save(p, STATUS_KEY, self).await
    }

    /// True if an unforced attempt may run at `now_ms` (no backoff pending).
    pub fn due(&self, now_ms: u64) -> bool {
        self.next_attempt_ms
            .is_none_or(|at| now_ms.saturating_add(TICK_SLACK_MS) >= at)
    }

    /// Records a success at `now_ms`: failures and backoff cleared. `etag` is the answer's
    /// (pass the stored one for a 304; `None` clears it: a 200 without an ETag).
    pub fn succeeded(
        &mut self,
        now_ms: u64,
        result: SyncResult,
        version: Option<String>,
        etag: Option<String>,
    ) {
        self.last_attempt_ms = Some(now_ms);
        self.last_success_ms = Some(now_ms);
        self.result = Some(result);
        self.error = None;
        if version.is_some() {
            self.version = version;
        }
        self.etag = etag;
        self.consecutive_failures = 0;
        self.next_attempt_ms = None;
    }

    /// Records a failure at `now_ms` and schedules the next unforced attempt: `backoff_ms`
    /// after the first failure, doubling with each further one (at most 32 × `backoff_ms`).
    pub fn failed(&mut self, now_ms: u64, error: &RegistryError, backoff_ms: u64) {
        self.last_attempt_ms = Some(now_ms);
        self.result = Some(SyncResult::Failed);
        self.error = Some(StatusError {
            code: error.code.to_string(),
            message: error.message.clone(),
        });
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        let doublings = (self.consecutive_failures - 1).min(MAX_DOUBLINGS);
        self.next_attempt_ms =
            Some(now_ms.saturating_add(backoff_ms.saturating_mul(1 << doublings)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_success_clears_it() {
        let mut s = SyncStatus::default();
        assert!(s.due(0));
        let e = RegistryError::new("registry_unreachable", "refused");
        let mut t = 1_000_000;
        let mut waits = Vec::new();
        for _ in 0..8 {
            s.failed(t, &e, 60_000);
            let next = s.next_attempt_ms.expect("scheduled");
            waits.push((next - t) / 60_000);
            assert!(!s.due(t + 1_000));
            assert!(s.due(next - 4_000), "a tick slightly early counts");
            t = next;
        }
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32, 32]);
        assert_eq!(s.consecutive_failures, 8);
        s.succeeded(t, SyncResult::NotModified, None, Some("\"e1\"".into()));
        assert_eq!(
            (s.consecutive_failures, s.next_attempt_ms, s.error.clone()),
            (0, None, None)
        );
        assert_eq!(s.etag.as_deref(), Some("\"e1\""));
    }
}
