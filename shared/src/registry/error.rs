//! The one error type of the Registry functions, with stable codes.

use crate::bundle::BundleError;
use crate::config::{ConfigError, ConfigErrors};
use crate::platform::PlatformError;
use serde::Serialize;
use std::fmt;

/// Why a sync, activation or rollback did not happen. The last good version keeps serving in
/// every case. Serialises as `{"code", "message", "errors"?}` for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegistryError {
    /// Stable code: `settings_invalid`, `registry_unreachable` (connection, timeout, oversized
    /// body), `registry_status` (an answer other than 200/304), `bundle_malformed`,
    /// `bundle_unsigned`, `bundle_unknown_key`, `bundle_bad_signature`, `bundle_bad_key`,
    /// `config_invalid`, `snapshot_invalid`, `store_failed` (KV read or write),
    /// `version_unknown` (not in the history), `version_missing` (in the history, document
    /// gone), `no_previous_version` (nothing to roll back to).
    pub code: &'static str,
    /// Detail for the operator (never a token or key).
    pub message: String,
    /// For `config_invalid`: every error with its JSON path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ConfigError>,
}

impl RegistryError {
    /// An error with this code and message.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        RegistryError {
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// A KV failure on `key`.
    pub fn store(key: &str, e: PlatformError) -> Self {
        RegistryError::new("store_failed", format!("{key}: {e}"))
    }

    /// A config that does not compile: the count in the message, every error in `errors`.
    pub fn config(version: &str, errors: ConfigErrors) -> Self {
        let first = errors.0.first().map(|e| e.to_string()).unwrap_or_default();
        RegistryError {
            code: "config_invalid",
            message: format!(
                "version {version}: {} config error(s), first: {first}",
                errors.0.len()
            ),
            errors: errors.0,
        }
    }
}

impl From<BundleError> for RegistryError {
    fn from(e: BundleError) -> Self {
        RegistryError::new(e.code(), e.to_string())
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RegistryError {}
