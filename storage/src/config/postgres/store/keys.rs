//! API keys, on Postgres ([`KeyStore`]).

use super::*;
use tally_domain::sessions::Session;
use tally_domain::store::{KeyStore, SessionStore};

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
            // Lock the active admin keys (and the target) first: two admins revoking each
            // other's keys at once must not both see the other one still active.
            let admins: Vec<Uuid> = sqlx::query_scalar(
                "SELECT id FROM api_keys WHERE (role = 'platform_admin' AND revoked_at IS NULL) OR id = $1 ORDER BY id FOR UPDATE",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            let row = sqlx::query(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| missing::api_key(id))?;
            let current = api_key_row(&row)?;
            let active_admins = admins.len() as i64 - i64::from(!is_active_admin(&current));
            rules::revocable(&current, active_admins)?;
            sqlx::query("DELETE FROM console_sessions WHERE key_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if current.revoked_at.is_some() {
                tx.commit().await?;
                return Ok((current, false));
            }
            let row = sqlx::query(&format!(
                "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 RETURNING {API_KEY_COLUMNS}"
            ))
            .bind(id)
            .bind(change.at)
            .fetch_one(&mut *tx)
            .await?;
            let key = api_key_row(&row)?;
            commit_audited(tx, change, "revoke", Some(&current), Some(&key)).await?;
            Ok((key, true))
        })
        .await
    }
}

fn is_active_admin(key: &ApiKey) -> bool {
    key.role == Role::PlatformAdmin && key.revoked_at.is_none()
}

#[async_trait]
impl SessionStore for PostgresConfigStore {
    async fn create_session(&self, hash: &str, session: &Session) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let inserted = sqlx::query(
                "INSERT INTO console_sessions (token_hash, key_id, csrf, created_at, expires_at) \
                 SELECT $1, id, $3, $4, $5 FROM api_keys WHERE id = $2",
            )
            .bind(hash)
            .bind(session.key_id)
            .bind(&session.csrf)
            .bind(session.created_at)
            .bind(session.expires_at)
            .execute(&self.pool)
            .await?;
            if inserted.rows_affected() == 0 {
                return Err(missing::api_key(session.key_id).into());
            }
            Ok(())
        })
        .await
    }

    async fn session_by_hash(&self, hash: &str) -> StoreResult<Option<(Session, ApiKey)>> {
        seam(async || -> Result<Option<(Session, ApiKey)>> {
            let row = sqlx::query(
                "SELECT s.csrf, s.created_at AS session_created, s.expires_at, k.id, k.name, k.role, k.prefix, k.created_at, k.revoked_at \
                 FROM console_sessions s JOIN api_keys k ON k.id = s.key_id WHERE s.token_hash = $1",
            )
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else { return Ok(None) };
            let key = api_key_row(&row)?;
            let session = Session {
                key_id: key.id,
                csrf: row.try_get("csrf")?,
                created_at: row.try_get("session_created")?,
                expires_at: row.try_get("expires_at")?,
            };
            Ok(Some((session, key)))
        })
        .await
    }

    async fn delete_session(&self, hash: &str) -> StoreResult<()> {
        seam(async || -> Result<()> {
            sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
                .bind(hash)
                .execute(&self.pool)
                .await?;
            Ok(())
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        seam(async || -> Result<u64> {
            let done = sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
                .bind(now)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
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
