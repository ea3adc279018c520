//! What a version must pass before its pointer write: the config compiles exactly as the
//! isolates' config store will compile it, and its snapshot joins and decodes.

use super::RegistryError;
use crate::config::CompiledConfig;
use crate::config_store::ConfigStore;
use crate::platform::{ClientCertificates, Kv};
use crate::snapshot::{decode, join, ShardManifest, ShardReadError};

/// Compiles `text` as version `id` exactly as the isolates' config stores will
/// ([`ConfigStore::compile`]: platform capabilities, the admin API's reserved paths).
///
/// Errors: `config_invalid` with every error.
pub(super) fn compile<P: ClientCertificates>(
    p: &P,
    rules: &ConfigStore,
    id: &str,
    text: &str,
) -> Result<CompiledConfig, RegistryError> {
    rules
        .compile(p, text, id)
        .map_err(|e| RegistryError::config(id, e))
}

/// Checks that `shards` are the snapshot `manifest` names (count, length, SHA-256) and that
/// it decodes. `None` / no shards must go together.
///
/// Errors: `snapshot_invalid`.
pub(super) fn snapshot<B: AsRef<[u8]>>(
    manifest: Option<&ShardManifest>,
    shards: &[B],
) -> Result<(), RegistryError> {
    let invalid = |m: String| RegistryError::new("snapshot_invalid", m);
    match manifest {
        None if shards.is_empty() => Ok(()),
        None => Err(invalid(format!(
            "{} snapshot shard(s) but the config names no snapshot",
            shards.len()
        ))),
        Some(m) => {
            let bytes = join(m, shards).map_err(|e| invalid(format!("{}: {e}", m.sha256)))?;
            decode(&bytes)
                .map(drop)
                .map_err(|e| invalid(format!("{}: {e}", m.sha256)))
        }
    }
}

/// Reads the shards of `manifest` from KV (for versions stored earlier).
///
/// Errors: `snapshot_invalid` when a shard is missing, `store_failed` when KV fails.
pub(super) async fn read_shards<P: Kv>(
    p: &P,
    manifest: &ShardManifest,
) -> Result<Vec<Vec<u8>>, RegistryError> {
    crate::snapshot::read_shards(p, manifest)
        .await
        .map_err(|e| match e {
            ShardReadError::Missing(key) => RegistryError::new(
                "snapshot_invalid",
                format!("shard {key} is not in the store"),
            ),
            ShardReadError::Store(key, e) => RegistryError::store(&key, e),
        })
}
