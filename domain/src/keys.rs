//! Issuing API keys: the one path by which a key is made, whether by the API, the CLI or the
//! bootstrap key at start-up. The name is checked here; the secret is drawn and hashed by
//! [`crate::access`]; the store keeps the key and its audit entry together.

use serde::Serialize;

use crate::access::{new_key, ApiKey, Role};
use crate::audit::Change;
use crate::error::{StoreError, StoreResult};
use crate::store::ConfigStore;

/// A key as created: the stored key plus its secret in `key`, shown this once.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    pub key: String,
}

/// Creates a key named `name` (1 to 100 characters) with a fresh random secret, made at
/// `change.at` and audited as `change.actor`'s.
pub async fn create_key(
    config: &dyn ConfigStore,
    name: &str,
    role: Role,
    change: &Change,
) -> StoreResult<CreatedKey> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(StoreError::invalid("name", "must be 1 to 100 characters"));
    }
    let (secret, spec) = new_key(name, role, change.at);
    let api_key = config.create_api_key(spec, change).await?;
    Ok(CreatedKey {
        api_key,
        key: secret,
    })
}
