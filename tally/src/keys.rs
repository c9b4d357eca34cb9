//! API keys from the command line (`tally keys create|list|revoke`) and the bootstrap admin key
//! (`TALLY_BOOTSTRAP_ADMIN_KEY`).
//!
//! Keys live in the configuration store (SQLite in the data directory, or Postgres). A secret is
//! printed once, when its key is created, and never stored: see `tally_core::access`.

use chrono::{DateTime, Utc};
use tally_core::access::{self, ApiKey, CreatedKey, Role};
use tally_core::config::AuditSpec;
use tally_core::store::{ConfigStore, StoreError, StoreResult};
use tracing::{info, warn};
use uuid::Uuid;

/// Creates a key with a fresh random secret (audited as done by `cli`).
pub async fn create(
    config: &dyn ConfigStore,
    name: &str,
    role: Role,
    now: DateTime<Utc>,
) -> StoreResult<CreatedKey> {
    let created = access::create_key(config, name, role, now).await?;
    audit(
        config,
        "api_key.create",
        &created.api_key,
        None,
        Some(&created.api_key),
        now,
    )
    .await;
    Ok(created)
}

/// Revokes the key `id` (audited as done by `cli`).
pub async fn revoke(config: &dyn ConfigStore, id: Uuid, now: DateTime<Utc>) -> StoreResult<ApiKey> {
    let before = config
        .list_api_keys()
        .await?
        .into_iter()
        .find(|k| k.id == id);
    let revoked = config.revoke_api_key(id, now).await?;
    if before.as_ref() != Some(&revoked) {
        audit(
            config,
            "api_key.revoke",
            &revoked,
            before.as_ref(),
            Some(&revoked),
            now,
        )
        .await;
    }
    Ok(revoked)
}

/// Records a change made from the command line; a failure is logged (the change stands).
async fn audit(
    config: &dyn ConfigStore,
    action: &str,
    key: &ApiKey,
    before: Option<&ApiKey>,
    after: Option<&ApiKey>,
    now: DateTime<Utc>,
) {
    let spec = AuditSpec {
        at: now,
        actor: "cli".into(),
        actor_key_id: None,
        action: action.into(),
        resource: format!("api_key:{}", key.id),
        before: before.and_then(|k| serde_json::to_value(k).ok()),
        after: after.and_then(|k| serde_json::to_value(k).ok()),
    };
    if let Err(err) = config.record_audit(spec).await {
        warn!(error = %err, action, "the change was made but its audit record failed");
    }
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
    match config.create_api_key(spec).await {
        Ok(key) => {
            info!(id = %key.id, prefix = %key.prefix, "created the bootstrap platform_admin API key");
            let spec = AuditSpec {
                at: now,
                actor: "bootstrap".into(),
                actor_key_id: None,
                action: "api_key.create".into(),
                resource: format!("api_key:{}", key.id),
                before: None,
                after: serde_json::to_value(&key).ok(),
            };
            if let Err(err) = config.record_audit(spec).await {
                warn!(error = %err, "the bootstrap key was created but its audit record failed");
            }
            Ok(Some(key))
        }
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
