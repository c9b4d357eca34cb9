//! API keys, on Postgres ([`KeyStore`]).

use super::*;
use tally_domain::store::KeyStore;

#[async_trait]
impl KeyStore for PostgresConfigStore {
    #[instrument(name = "postgres.create_api_key", skip_all, err)]
    async fn create_api_key(&self, spec: ApiKeySpec, change: &Change) -> StoreResult<ApiKey> {
        seam(async || -> Result<ApiKey> {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(&format!(
                "INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {API_KEY_COLUMNS}"
            ))
            .bind(Uuid::now_v7())
            .bind(&spec.name)
            .bind(spec.role.as_str())
            .bind(&spec.hash)
            .bind(&spec.prefix)
            .bind(spec.created_at)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| match Failure::from(e) {
                Failure::Conflict(_) => rules::secret_taken().into(),
                other => other,
            })?;
            let key = api_key_row(&row)?;
            commit_audited(tx, change, "create", None, Some(&key)).await?;
            Ok(key)
        })
        .await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        seam(async || -> Result<Vec<ApiKey>> {
            let rows = sqlx::query(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, seq"
            ))
            .fetch_all(&self.pool)
            .await?;
            all(rows, api_key_row)
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        seam(async || -> Result<Option<ApiKey>> {
            let row = sqlx::query(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
            ))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
            row.as_ref().map(api_key_row).transpose()
        })
        .await
    }

    #[instrument(name = "postgres.revoke_api_key", skip_all, err)]
    async fn revoke_api_key(&self, id: Uuid, change: &Change) -> StoreResult<(ApiKey, bool)> {
        seam(async || -> Result<(ApiKey, bool)> {
            let mut tx = self.pool.begin().await?;
            let revoked = sqlx::query(&format!(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {API_KEY_COLUMNS}"
            ))
            .bind(id)
            .bind(change.at)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = revoked {
                let key = api_key_row(&row)?;
                let before = ApiKey {
                    revoked_at: None,
                    ..key.clone()
                };
                commit_audited(tx, change, "revoke", Some(&before), Some(&key)).await?;
                return Ok((key, true));
            }
            drop(tx);
            let row = sqlx::query(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| missing::api_key(id))?;
            Ok((api_key_row(&row)?, false))
        })
        .await
    }
}

const API_KEY_COLUMNS: &str = "id, name, role, prefix, created_at, revoked_at";

fn api_key_row(r: &PgRow) -> Result<ApiKey> {
    let role: String = r.try_get("role")?;
    Ok(ApiKey {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        role: Role::parse(&role).ok_or_else(|| corrupt("API key role"))?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}
