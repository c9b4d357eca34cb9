//! The embedded configuration store (SQLite, `config.db`), schema in
//! `migrations/sqlite/config.sql`. Writes are transactions; deploy deactivates the previous
//! assignment and activates the new one atomically (a partial unique index enforces one active
//! assignment per feature and environment).

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use tally_schemas::Environment;
use uuid::Uuid;

use crate::access::{ApiKey, ApiKeySpec, Role};
use crate::config::{
    Assignment, DeploySpec, Feature, FeatureSpec, FeatureStatus, Model, ModelPrice, ModelSpec,
    PriceSpec, Provider, ProviderSpec,
};
use crate::embedded::{blocking, open};
use crate::store::{ConfigStore, StoreError, StoreResult};

const SCHEMA: &str = include_str!("../../../migrations/sqlite/config.sql");

pub struct SqliteConfigStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteConfigStore {
    pub fn open(dir: &Path) -> StoreResult<SqliteConfigStore> {
        let conn = open(&dir.join("config.db"), 2)?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteConfigStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("config lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn parse_uuid(text: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn conversion(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("invalid stored {what}").into(),
    )
}

fn feature_row(r: &Row) -> rusqlite::Result<Feature> {
    let status: String = r.get(4)?;
    let config: String = r.get(5)?;
    Ok(Feature {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        display_name: r.get(2)?,
        description: r.get(3)?,
        status: FeatureStatus::parse(&status).ok_or_else(|| conversion("feature status"))?,
        config: serde_json::from_str(&config).map_err(|_| conversion("feature config"))?,
        created_at: parse_ts(&r.get::<_, String>(6)?)?,
        updated_at: parse_ts(&r.get::<_, String>(7)?)?,
    })
}

fn provider_row(r: &Row) -> rusqlite::Result<Provider> {
    Ok(Provider {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        provider_type: r.get(2)?,
        status: r.get(3)?,
        base_url: r.get(4)?,
        api_key_env: r.get(5)?,
        created_at: parse_ts(&r.get::<_, String>(6)?)?,
        updated_at: parse_ts(&r.get::<_, String>(7)?)?,
    })
}

const MODEL_SELECT: &str = "SELECT m.id, m.name, p.name, m.model_type, m.version, m.capabilities, m.status, m.created_at, m.updated_at FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id";

fn model_row(r: &Row) -> rusqlite::Result<Model> {
    let caps: String = r.get(5)?;
    Ok(Model {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        provider: r.get(2)?,
        model_type: r.get(3)?,
        version: r.get(4)?,
        capabilities: serde_json::from_str(&caps).map_err(|_| conversion("capabilities"))?,
        status: r.get(6)?,
        created_at: parse_ts(&r.get::<_, String>(7)?)?,
        updated_at: parse_ts(&r.get::<_, String>(8)?)?,
    })
}

const PRICE_SELECT: &str = "SELECT x.id, p.name, m.name, x.effective_from, x.input_per_mtok_micros, x.output_per_mtok_micros, x.cached_input_per_mtok_micros, x.created_at FROM ai_model_prices x JOIN ai_models m ON m.id = x.model_id JOIN ai_providers p ON p.id = m.provider_id";

fn price_row(r: &Row) -> rusqlite::Result<ModelPrice> {
    Ok(ModelPrice {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        provider: r.get(1)?,
        model: r.get(2)?,
        effective_from: parse_ts(&r.get::<_, String>(3)?)?,
        input_per_mtok_micros: r.get(4)?,
        output_per_mtok_micros: r.get(5)?,
        cached_input_per_mtok_micros: r.get(6)?,
        created_at: parse_ts(&r.get::<_, String>(7)?)?,
    })
}

const ASSIGNMENT_SELECT: &str = "SELECT a.id, f.name, a.environment, p.name, m.name, a.is_active, a.assigned_at, a.assigned_by FROM feature_model_assignments a JOIN ai_features f ON f.id = a.feature_id JOIN ai_models m ON m.id = a.model_id JOIN ai_providers p ON p.id = m.provider_id";

fn assignment_row(r: &Row) -> rusqlite::Result<Assignment> {
    let env: String = r.get(2)?;
    Ok(Assignment {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        feature: r.get(1)?,
        environment: Environment::parse(&env).ok_or_else(|| conversion("environment"))?,
        provider: r.get(3)?,
        model: r.get(4)?,
        is_active: r.get(5)?,
        assigned_at: parse_ts(&r.get::<_, String>(6)?)?,
        assigned_by: r.get(7)?,
    })
}

fn model_id(conn: &Connection, provider: &str, model: &str) -> StoreResult<String> {
    conn.query_row(
        "SELECT m.id FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id WHERE p.name = ?1 AND m.name = ?2",
        params![provider, model],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::not_found(format!("model {provider}/{model}")))
}

#[async_trait]
impl ConfigStore for SqliteConfigStore {
    async fn list_features(&self) -> StoreResult<Vec<Feature>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id, name, display_name, description, status, config, created_at, updated_at FROM ai_features ORDER BY name")?;
            let rows = stmt.query_map([], feature_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_feature(&self, spec: FeatureSpec) -> StoreResult<Feature> {
        self.with(move |c| {
            let now = ts(Utc::now());
            c.execute(
                "INSERT INTO ai_features (id, name, display_name, description, status, config, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (name) DO UPDATE SET display_name = excluded.display_name, description = excluded.description,
                     status = excluded.status, config = excluded.config, updated_at = excluded.updated_at",
                params![Uuid::new_v4().to_string(), spec.name, spec.display_name, spec.description, spec.status.as_str(), spec.config.to_string(), now],
            )?;
            Ok(c.query_row(
                "SELECT id, name, display_name, description, status, config, created_at, updated_at FROM ai_features WHERE name = ?1",
                params![spec.name],
                feature_row,
            )?)
        })
        .await
    }

    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT id, name, type, status, base_url, api_key_env, created_at, updated_at FROM ai_providers ORDER BY name")?;
            let rows = stmt.query_map([], provider_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_provider(&self, spec: ProviderSpec) -> StoreResult<Provider> {
        self.with(move |c| {
            let now = ts(Utc::now());
            c.execute(
                "INSERT INTO ai_providers (id, name, type, status, base_url, api_key_env, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (name) DO UPDATE SET type = excluded.type, status = excluded.status, base_url = excluded.base_url,
                     api_key_env = excluded.api_key_env, updated_at = excluded.updated_at",
                params![Uuid::new_v4().to_string(), spec.name, spec.provider_type, spec.status, spec.base_url, spec.api_key_env, now],
            )?;
            Ok(c.query_row(
                "SELECT id, name, type, status, base_url, api_key_env, created_at, updated_at FROM ai_providers WHERE name = ?1",
                params![spec.name],
                provider_row,
            )?)
        })
        .await
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{MODEL_SELECT} ORDER BY p.name, m.name"))?;
            let rows = stmt
                .query_map([], model_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_model(&self, spec: ModelSpec) -> StoreResult<Model> {
        self.with(move |c| {
            let provider_id: String = c
                .query_row("SELECT id FROM ai_providers WHERE name = ?1", params![spec.provider], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::not_found(format!("provider {}", spec.provider)))?;
            let now = ts(Utc::now());
            let caps = serde_json::to_string(&spec.capabilities).map_err(|e| StoreError::Backend(e.to_string()))?;
            c.execute(
                "INSERT INTO ai_models (id, name, provider_id, model_type, version, capabilities, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
                 ON CONFLICT (provider_id, name) DO UPDATE SET model_type = excluded.model_type, version = excluded.version,
                     capabilities = excluded.capabilities, status = excluded.status, updated_at = excluded.updated_at",
                params![Uuid::new_v4().to_string(), spec.name, provider_id, spec.model_type, spec.version, caps, spec.status, now],
            )?;
            Ok(c.query_row(&format!("{MODEL_SELECT} WHERE p.name = ?1 AND m.name = ?2"), params![spec.provider, spec.name], model_row)?)
        })
        .await
    }

    async fn add_price(&self, spec: PriceSpec) -> StoreResult<ModelPrice> {
        self.with(move |c| {
            let model_id = model_id(c, &spec.provider, &spec.model)?;
            let id = Uuid::new_v4().to_string();
            let inserted = c.execute(
                "INSERT INTO ai_model_prices (id, model_id, effective_from, input_per_mtok_micros, output_per_mtok_micros, cached_input_per_mtok_micros, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (model_id, effective_from) DO NOTHING",
                params![id, model_id, ts(spec.effective_from), spec.input_per_mtok_micros, spec.output_per_mtok_micros, spec.cached_input_per_mtok_micros, ts(Utc::now())],
            )?;
            if inserted == 0 {
                return Err(StoreError::Conflict(format!(
                    "model {}/{} already has a price effective from {}",
                    spec.provider, spec.model, ts(spec.effective_from)
                )));
            }
            Ok(c.query_row(&format!("{PRICE_SELECT} WHERE x.id = ?1"), params![id], price_row)?)
        })
        .await
    }

    async fn list_prices(&self) -> StoreResult<Vec<ModelPrice>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{PRICE_SELECT} ORDER BY p.name, m.name, x.effective_from"
            ))?;
            let rows = stmt
                .query_map([], price_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn deploy(&self, spec: DeploySpec) -> StoreResult<Assignment> {
        self.with(move |c| {
            let tx = c.transaction()?;
            let feature_id: String = tx
                .query_row("SELECT id FROM ai_features WHERE name = ?1", params![spec.feature], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::not_found(format!("feature {}", spec.feature)))?;
            let model_id = model_id(&tx, &spec.provider, &spec.model)?;
            let at = ts(spec.at);
            tx.execute(
                "UPDATE feature_model_assignments SET is_active = 0, deactivated_at = ?3 WHERE feature_id = ?1 AND environment = ?2 AND is_active = 1",
                params![feature_id, spec.environment.as_str(), at],
            )?;
            let id = Uuid::new_v4().to_string();
            tx.execute(
                "INSERT INTO feature_model_assignments (id, feature_id, model_id, environment, is_active, assigned_at, assigned_by) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
                params![id, feature_id, model_id, spec.environment.as_str(), at, spec.assigned_by],
            )?;
            let assignment = tx.query_row(&format!("{ASSIGNMENT_SELECT} WHERE a.id = ?1"), params![id], assignment_row)?;
            tx.commit()?;
            Ok(assignment)
        })
        .await
    }

    async fn active_assignments(&self) -> StoreResult<Vec<Assignment>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{ASSIGNMENT_SELECT} WHERE a.is_active = 1 ORDER BY f.name, a.environment"
            ))?;
            let rows = stmt
                .query_map([], assignment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn assignment_history(
        &self,
        feature: &str,
        environment: Option<Environment>,
    ) -> StoreResult<Vec<Assignment>> {
        let feature = feature.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{ASSIGNMENT_SELECT} WHERE f.name = ?1 AND (?2 IS NULL OR a.environment = ?2) ORDER BY a.assigned_at DESC, a.rowid DESC"
            ))?;
            let rows = stmt
                .query_map(params![feature, environment.map(Environment::as_str)], assignment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_api_key(&self, spec: ApiKeySpec) -> StoreResult<ApiKey> {
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
                return Err(StoreError::Conflict("an API key with this secret exists".into()));
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

    async fn revoke_api_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<ApiKey> {
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id.to_string(), ts(at)],
            )?;
            let key = tx
                .query_row(
                    &format!("{API_KEY_SELECT} WHERE id = ?1"),
                    params![id.to_string()],
                    api_key_row,
                )
                .optional()?
                .ok_or_else(|| StoreError::not_found(format!("API key {id}")))?;
            tx.commit()?;
            Ok(key)
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
