//! API keys, on SQLite ([`KeyStore`]).

use super::*;
use tally_domain::store::KeyStore;

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
            let revoked = tx.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id.to_string(), ts(change.at)],
            )?;
            let key = tx
                .query_row(
                    &format!("{API_KEY_SELECT} WHERE id = ?1"),
                    params![id.to_string()],
                    api_key_row,
                )
                .optional()?
                .ok_or_else(|| missing::api_key(id))?;
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
