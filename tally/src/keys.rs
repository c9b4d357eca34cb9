//! API keys from the command line (`tally keys create|list|revoke`) and the bootstrap admin key
//! (`TALLY_BOOTSTRAP_ADMIN_KEY`).
//!
//! Keys live in the configuration store (SQLite in the data directory, or Postgres). A secret is
//! printed once, when its key is created, and never stored: see `tally_domain::access`.

use chrono::{DateTime, Utc};
use tally_domain::access::{self, ApiKey, Role};
use tally_domain::audit::Change;
use tally_domain::keys::{self, CreatedKey};
use tally_domain::store::{ConfigStore, StoreError, StoreResult};
use tracing::{info, warn};
use uuid::Uuid;

/// Creates a key with a fresh random secret (audited as done by `cli`).
pub async fn create(
    config: &dyn ConfigStore,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> StoreResult<CreatedKey> {
    keys::create_key(config, name, role, &Change::local("cli", now)).await
}

/// Revokes the key `id` (audited as done by `cli`).
pub async fn revoke(config: &dyn ConfigStore, id: Uuid, now: DateTime<Utc>) -> StoreResult<ApiKey> {
    let (key, _) = config
        .revoke_api_key(id, &Change::local("cli", now))
        .await?;
    Ok(key)
}

/// Makes sure a `platform_admin` key with `secret` exists; returns it when it was created now.
/// A key with that secret that was revoked stays revoked. Idempotent, also across processes
/// starting at once (the second insert of the same secret is a conflict, and ignored).
pub async fn ensure_bootstrap_admin(
    config: &dyn ConfigStore,
    secret: &str,
    now: DateTime<Utc>,
) -> StoreResult<Option<ApiKey>> {
    if let Some(existing) = config.api_key_by_hash(&access::hash(secret)).await? {
        if existing.revoked_at.is_some() {
            warn!(id = %existing.id, "TALLY_BOOTSTRAP_ADMIN_KEY is a revoked key; it stays revoked");
        }
        return Ok(None);
    }
    let spec = access::spec_for(secret, "bootstrap admin", Role::PlatformAdmin, now);
    match config
        .create_api_key(spec, &Change::local("bootstrap", now))
        .await
    {
        Ok(key) => {
            info!(id = %key.id, prefix = %key.prefix, "created the bootstrap platform_admin API key");
            Ok(Some(key))
        }
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
