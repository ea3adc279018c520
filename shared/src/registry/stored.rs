//! The Registry's JSON records in KV (`config:history`, `registry:status`): one way to read
//! and write them.

use super::RegistryError;
use crate::platform::Kv;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Reads the JSON record at `key`; an absent key is `T::default()`.
///
/// Errors: `store_failed` when the store cannot be read or the value does not parse.
pub(super) async fn load<P: Kv, T: DeserializeOwned + Default>(
    p: &P,
    key: &str,
) -> Result<T, RegistryError> {
    match p.get_text(key).await {
        Ok(None) => Ok(T::default()),
        Ok(Some(text)) => serde_json::from_str(&text)
            .map_err(|e| RegistryError::new("store_failed", format!("{key} does not parse: {e}"))),
        Err(e) => Err(RegistryError::store(key, e)),
    }
}

/// Writes `value` as JSON at `key` (one write).
///
/// Errors: `store_failed`.
pub(super) async fn save<P: Kv, T: Serialize>(
    p: &P,
    key: &str,
    value: &T,
) -> Result<(), RegistryError> {
    // Serialising plain structs of strings, numbers and options cannot fail.
    let text = serde_json::to_string(value).unwrap_or_default();
    p.put_text(key, &text)
        .await
        .map_err(|e| RegistryError::store(key, e))
}
