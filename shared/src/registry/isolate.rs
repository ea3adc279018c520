//! The Registry operations as an isolate runs them: the cron and the admin API call these
//! [`Gateway`] methods, which apply the isolate's compile rules and make the isolate serve
//! the new version at once (other isolates follow within their refresh interval).

use super::{activate, rollback, sync, Activation, RegistryError, Source, SyncOutcome};
use crate::pipeline::Gateway;
use crate::platform::{ClientCertificates, Clock, Crypto, Http, Instances, Kv, Log};

impl Gateway {
    /// Runs the Registry sync with this gateway's settings (`force`: the admin API's "sync
    /// now", ignoring a pending backoff) and, when it activates a version, refreshes this
    /// isolate's config and snapshot.
    ///
    /// Errors: `registry_off` when no Registry URL is set; `settings_invalid` when the
    /// variables are invalid (recorded in the sync status); any [`sync`] error.
    pub async fn sync_registry<P>(&self, p: &P, force: bool) -> Result<SyncOutcome, RegistryError>
    where
        P: Kv + Http + Crypto + Clock + Log + ClientCertificates + Instances,
    {
        let settings = match self.registry_settings() {
            Ok(Some(s)) => s,
            Ok(None) => {
                return Err(RegistryError::new(
                    "registry_off",
                    "Registry sync is off (EDGEGATE_REGISTRY_URL is not set)",
                ))
            }
            Err(e) => {
                super::record_settings_error(p, e).await;
                return Err(RegistryError::from(e.clone()));
            }
        };
        let outcome = sync(p, self.config_store(), settings, force).await?;
        if matches!(outcome, SyncOutcome::Activated { .. }) {
            self.serve_pointer(p).await;
        }
        Ok(outcome)
    }

    /// Activates stored version `id` ([`activate`]) and serves it in this isolate at once.
    ///
    /// Errors: those of [`activate`].
    pub async fn activate_version<P>(&self, p: &P, id: &str) -> Result<Activation, RegistryError>
    where
        P: Kv + Clock + Log + ClientCertificates + Instances,
    {
        let a = activate(p, self.config_store(), id, Source::Activate).await?;
        self.serve_pointer(p).await;
        Ok(a)
    }

    /// Rolls back to the version active before the current one ([`rollback`]) and serves it
    /// in this isolate at once.
    ///
    /// Errors: those of [`rollback`].
    pub async fn rollback_version<P>(&self, p: &P) -> Result<Activation, RegistryError>
    where
        P: Kv + Clock + Log + ClientCertificates + Instances,
    {
        let a = rollback(p, self.config_store()).await?;
        self.serve_pointer(p).await;
        Ok(a)
    }

    /// Re-reads the pointer now and loads the snapshot the active config names.
    async fn serve_pointer<P: Kv + Clock + Log + ClientCertificates + Instances>(&self, p: &P) {
        self.config_store().refresh(p).await;
        let manifest = self
            .config_store()
            .active()
            .and_then(|c| c.snapshot_manifest().cloned());
        self.snapshot_store()
            .refresh_for(p, manifest.as_ref())
            .await;
    }
}
