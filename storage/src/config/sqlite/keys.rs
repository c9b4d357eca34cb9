//! API keys, on SQLite ([`KeyStore`]).

use super::*;
use tally_domain::sessions::Session;
use tally_domain::store::{KeyStore, SessionStore};

#[async_trait]
impl KeyStore for SqliteConfigStore {
    async fn create_api_key(&self, spec: ApiKeySpec, change: &Change) -> StoreResult<ApiKey> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let taken: Option<String> = tx
                .query_row(
                    "SELECT id FROM api_keys WHERE key_hash = ?1",
                    params![spec.hash],
                    |r| r.get(0),
                )
                .optional()?;
            if taken.is_some() {
                return Err(rules::secret_taken().into());
            }
            let key = ApiKey {
                id: Uuid::now_v7(),
                name: spec.name,
                role: spec.role,
                prefix: spec.prefix,
                created_at: spec.created_at,
                revoked_at: None,
            };
            tx.execute(
                "INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.id.to_string(),
                    key.name,
                    key.role.as_str(),
                    spec.hash,
                    key.prefix,
                    ts(key.created_at)
                ],
            )?;
            insert_audit(&tx, &change.on("create", None, Some(&key)))?;
            tx.commit()?;
            Ok(key)
        })
        .await
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{API_KEY_SELECT} ORDER BY created_at, rowid"))?;
            let rows = stmt
                .query_map([], api_key_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let hash = hash.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                &format!("{API_KEY_SELECT} WHERE key_hash = ?1"),
                params![hash],
                api_key_row,
            )
            .optional()?)
        })
        .await
    }

    async fn revoke_api_key(&self, id: Uuid, change: &Change) -> StoreResult<(ApiKey, bool)> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = tx
                .query_row(
                    &format!("{API_KEY_SELECT} WHERE id = ?1"),
                    params![id.to_string()],
                    api_key_row,
                )
                .optional()?
                .ok_or_else(|| missing::api_key(id))?;
            let admins: i64 = tx.query_row(
                "SELECT COUNT(*) FROM api_keys WHERE role = 'platform_admin' AND revoked_at IS NULL",
                [],
                |r| r.get(0),
            )?;
            rules::revocable(&current, admins)?;
            let revoked = tx.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id.to_string(), ts(change.at)],
            )?;
            tx.execute(
                "DELETE FROM console_sessions WHERE key_id = ?1",
                params![id.to_string()],
            )?;
            let key = tx.query_row(
                &format!("{API_KEY_SELECT} WHERE id = ?1"),
                params![id.to_string()],
                api_key_row,
            )?;
            if revoked == 1 {
                let before = ApiKey {
                    revoked_at: None,
                    ..key.clone()
                };
                insert_audit(&tx, &change.on("revoke", Some(&before), Some(&key)))?;
            }
            tx.commit()?;
            Ok((key, revoked == 1))
        })
        .await
    }
}

#[async_trait]
impl SessionStore for SqliteConfigStore {
    async fn create_session(&self, hash: &str, session: &Session) -> StoreResult<()> {
        let (hash, session) = (hash.to_string(), session.clone());
        self.with(move |c| {
            let key: Option<String> = c
                .query_row(
                    "SELECT id FROM api_keys WHERE id = ?1",
                    params![session.key_id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            if key.is_none() {
                return Err(missing::api_key(session.key_id).into());
            }
            c.execute(
                "INSERT INTO console_sessions (token_hash, key_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    hash,
                    session.key_id.to_string(),
                    session.csrf,
                    ts(session.created_at),
                    ts(session.expires_at)
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session_by_hash(&self, hash: &str) -> StoreResult<Option<(Session, ApiKey)>> {
        let hash = hash.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT s.csrf, s.created_at, s.expires_at, k.id, k.name, k.role, k.prefix, k.created_at, k.revoked_at \
                 FROM console_sessions s JOIN api_keys k ON k.id = s.key_id WHERE s.token_hash = ?1",
                params![hash],
                |r| {
                    let key = ApiKey {
                        id: parse_uuid(&r.get::<_, String>(3)?)?,
                        name: r.get(4)?,
                        role: Role::parse(&r.get::<_, String>(5)?)
                            .ok_or_else(|| conversion("API key role"))?,
                        prefix: r.get(6)?,
                        created_at: parse_ts(&r.get::<_, String>(7)?)?,
                        revoked_at: r
                            .get::<_, Option<String>>(8)?
                            .as_deref()
                            .map(parse_ts)
                            .transpose()?,
                    };
                    let session = Session {
                        key_id: key.id,
                        csrf: r.get(0)?,
                        created_at: parse_ts(&r.get::<_, String>(1)?)?,
                        expires_at: parse_ts(&r.get::<_, String>(2)?)?,
                    };
                    Ok((session, key))
                },
            )
            .optional()?)
        })
        .await
    }

    async fn delete_session(&self, hash: &str) -> StoreResult<()> {
        let hash = hash.to_string();
        self.with(move |c| {
            c.execute(
                "DELETE FROM console_sessions WHERE token_hash = ?1",
                params![hash],
            )?;
            Ok(())
        })
        .await
    }

    async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        self.with(move |c| {
            Ok(c.execute(
                "DELETE FROM console_sessions WHERE expires_at < ?1",
                params![ts(now)],
            )? as u64)
        })
        .await
    }
}

const API_KEY_SELECT: &str = "SELECT id, name, role, prefix, created_at, revoked_at FROM api_keys";

fn api_key_row(r: &Row) -> rusqlite::Result<ApiKey> {
    let role: String = r.get(2)?;
    let revoked: Option<String> = r.get(5)?;
    Ok(ApiKey {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        role: Role::parse(&role).ok_or_else(|| conversion("API key role"))?,
        prefix: r.get(3)?,
        created_at: parse_ts(&r.get::<_, String>(4)?)?,
        revoked_at: revoked.as_deref().map(parse_ts).transpose()?,
    })
}
