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

use crate::failure::{seam_sync, Failure, Result};
use crate::sqlite::{blocking, open};
use crate::upsert::Write;
use tally_domain::access::{ApiKey, ApiKeySpec, Role};
use tally_domain::audit::{changed, price_added, prompt_created, repriced, Audited, Change};
use tally_domain::config::{
    rollback_target, Assignment, AuditEntry, AuditSpec, Budget, BudgetPeriod, BudgetScope,
    BudgetSpec, DeploySpec, Experiment, ExperimentSpec, ExperimentStatus, ExperimentType, Feature,
    FeatureSpec, FeatureStatus, Model, ModelPrice, ModelSpec, PriceSpec, Prompt, PromptContent,
    PromptSpec, PromptStatus, PromptVersion, Provider, ProviderSpec, Reprice, RepriceSpec,
};
use tally_domain::rules::{self, missing};
use tally_domain::store::{ConfigStore, StoreResult};

const SCHEMA: &str = include_str!("../../../migrations/sqlite/config.sql");

pub struct SqliteConfigStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteConfigStore {
    pub fn open(dir: &Path) -> StoreResult<SqliteConfigStore> {
        seam_sync(|| -> Result<SqliteConfigStore> {
            let conn = open(&dir.join("config.db"), 2)?;
            conn.execute_batch(SCHEMA)?;
            Ok(SqliteConfigStore {
                conn: Arc::new(Mutex::new(conn)),
            })
        })
    }

    /// A create or upsert of a named row, audited (see [`write_audited`]).
    async fn write_named<S, T>(
        &self,
        change: &Change,
        mode: Write,
        spec: S,
        read: fn(&Connection, &S) -> Result<Option<T>>,
        write: fn(&Connection, &S, Write) -> Result<T>,
    ) -> StoreResult<T>
    where
        S: Send + 'static,
        T: Audited + Send + 'static,
    {
        let change = change.clone();
        self.with(move |c| {
            write_audited(
                c,
                &change,
                mode,
                |c| read(c, &spec),
                |c| write(c, &spec, mode),
            )
        })
        .await
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Failure::Backend("config lock poisoned".into()))?;
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

const FEATURE_SELECT: &str = "SELECT id, name, display_name, description, status, config, created_at, updated_at FROM ai_features";
const PROVIDER_SELECT: &str = "SELECT id, name, type, status, base_url, api_key_env, created_at, updated_at FROM ai_providers";

fn put_feature(c: &Connection, spec: &FeatureSpec, mode: Write) -> Result<Feature> {
    let sql = format!(
        "INSERT INTO ai_features (id, name, display_name, description, status, config, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (name) {}",
        mode.on_conflict(&["display_name", "description", "status", "config", "updated_at"])
    );
    let written = c.execute(
        &sql,
        params![
            Uuid::new_v4().to_string(),
            spec.name,
            spec.display_name,
            spec.description,
            spec.status.as_str(),
            spec.config.to_string(),
            ts(Utc::now())
        ],
    )?;
    if written == 0 {
        return Err(rules::name_taken("feature", &spec.name).into());
    }
    Ok(c.query_row(
        &format!("{FEATURE_SELECT} WHERE name = ?1"),
        params![spec.name],
        feature_row,
    )?)
}

fn put_provider(c: &Connection, spec: &ProviderSpec, mode: Write) -> Result<Provider> {
    let sql = format!(
        "INSERT INTO ai_providers (id, name, type, status, base_url, api_key_env, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (name) {}",
        mode.on_conflict(&["type", "status", "base_url", "api_key_env", "updated_at"])
    );
    let written = c.execute(
        &sql,
        params![
            Uuid::new_v4().to_string(),
            spec.name,
            spec.provider_type,
            spec.status,
            spec.base_url,
            spec.api_key_env,
            ts(Utc::now())
        ],
    )?;
    if written == 0 {
        return Err(rules::name_taken("provider", &spec.name).into());
    }
    Ok(c.query_row(
        &format!("{PROVIDER_SELECT} WHERE name = ?1"),
        params![spec.name],
        provider_row,
    )?)
}

fn put_model(c: &Connection, spec: &ModelSpec, mode: Write) -> Result<Model> {
    let provider_id: String = c
        .query_row(
            "SELECT id FROM ai_providers WHERE name = ?1",
            params![spec.provider],
            |r| r.get(0),
        )
        .optional()?
        .ok_or_else(|| missing::provider(&spec.provider))?;
    let sql = format!(
        "INSERT INTO ai_models (id, name, provider_id, model_type, version, capabilities, status, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) ON CONFLICT (provider_id, name) {}",
        mode.on_conflict(&["model_type", "version", "capabilities", "status", "updated_at"])
    );
    let written = c.execute(
        &sql,
        params![
            Uuid::new_v4().to_string(),
            spec.name,
            provider_id,
            spec.model_type,
            spec.version,
            json_text(&spec.capabilities)?,
            spec.status,
            ts(Utc::now())
        ],
    )?;
    if written == 0 {
        return Err(rules::name_taken("model", &format!("{}/{}", spec.provider, spec.name)).into());
    }
    Ok(c.query_row(
        &format!("{MODEL_SELECT} WHERE p.name = ?1 AND m.name = ?2"),
        params![spec.provider, spec.name],
        model_row,
    )?)
}

/// Deactivates the active assignment of (feature, environment) and inserts the new one, in
/// the caller's transaction; returns both.
fn deploy_in(
    tx: &Connection,
    spec: &DeploySpec,
    change: &Change,
) -> Result<(Option<Assignment>, Assignment)> {
    let feature_id = feature_id(tx, &spec.feature)?;
    let model_id = model_id(tx, &spec.provider, &spec.model)?;
    let env = spec.environment.as_str();
    let before = tx
        .query_row(
            &format!("{ASSIGNMENT_SELECT} WHERE a.feature_id = ?1 AND a.environment = ?2 AND a.is_active = 1"),
            params![feature_id, env],
            assignment_row,
        )
        .optional()?;
    let at = ts(change.at);
    tx.execute(
        "UPDATE feature_model_assignments SET is_active = 0, deactivated_at = ?3 WHERE feature_id = ?1 AND environment = ?2 AND is_active = 1",
        params![feature_id, env, at],
    )?;
    let id = Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO feature_model_assignments (id, feature_id, model_id, environment, is_active, assigned_at, assigned_by) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
        params![id, feature_id, model_id, env, at, change.actor.name],
    )?;
    let after = tx.query_row(
        &format!("{ASSIGNMENT_SELECT} WHERE a.id = ?1"),
        params![id],
        assignment_row,
    )?;
    Ok((before, after))
}

fn budget(c: &Connection, id: Uuid) -> Result<Budget> {
    c.query_row(
        &format!("{BUDGET_SELECT} WHERE id = ?1"),
        params![id.to_string()],
        budget_row,
    )
    .optional()?
    .ok_or_else(|| missing::budget(id).into())
}

/// Appends an audit entry, in the caller's transaction.
fn insert_audit(c: &Connection, spec: &AuditSpec) -> Result<()> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    c.execute(
        "INSERT INTO audit_log (id, at, actor, actor_key_id, action, resource, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            Uuid::now_v7().to_string(),
            ts(spec.at),
            spec.actor,
            spec.actor_key_id.map(|k| k.to_string()),
            spec.action,
            spec.resource,
            json(&spec.before),
            json(&spec.after)
        ],
    )?;
    Ok(())
}

/// A create or upsert of a named row with its audit entry, in one transaction: `read` finds
/// the row as it was, `write` writes it. An upsert that changes nothing is rolled back (the
/// row keeps its `updated_at`) and returns the row as it was.
fn write_audited<T: Audited>(
    c: &mut Connection,
    change: &Change,
    mode: Write,
    read: impl FnOnce(&Connection) -> Result<Option<T>>,
    write: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = c.transaction()?;
    let before = read(&tx)?;
    let after = write(&tx)?;
    match mode.audit(change, before.as_ref(), &after) {
        Some(entry) => {
            insert_audit(&tx, &entry)?;
            tx.commit()?;
            Ok(after)
        }
        None => Ok(before.unwrap_or(after)),
    }
}

fn find_feature(c: &Connection, name: &str) -> Result<Option<Feature>> {
    Ok(c.query_row(
        &format!("{FEATURE_SELECT} WHERE name = ?1"),
        params![name],
        feature_row,
    )
    .optional()?)
}

fn find_provider(c: &Connection, name: &str) -> Result<Option<Provider>> {
    Ok(c.query_row(
        &format!("{PROVIDER_SELECT} WHERE name = ?1"),
        params![name],
        provider_row,
    )
    .optional()?)
}

fn find_model(c: &Connection, provider: &str, name: &str) -> Result<Option<Model>> {
    Ok(c.query_row(
        &format!("{MODEL_SELECT} WHERE p.name = ?1 AND m.name = ?2"),
        params![provider, name],
        model_row,
    )
    .optional()?)
}

fn model_id(conn: &Connection, provider: &str, model: &str) -> Result<String> {
    conn.query_row(
        "SELECT m.id FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id WHERE p.name = ?1 AND m.name = ?2",
        params![provider, model],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| missing::model_named(provider, model).into())
}

#[async_trait]
impl ConfigStore for SqliteConfigStore {
    async fn list_features(&self) -> StoreResult<Vec<Feature>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{FEATURE_SELECT} ORDER BY name"))?;
            let rows = stmt
                .query_map([], feature_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        let find = |c: &Connection, s: &FeatureSpec| find_feature(c, &s.name);
        self.write_named(change, Write::Upsert, spec, find, put_feature)
            .await
    }

    async fn create_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        let find = |c: &Connection, s: &FeatureSpec| find_feature(c, &s.name);
        self.write_named(change, Write::Create, spec, find, put_feature)
            .await
    }

    async fn delete_feature(&self, name: &str, change: &Change) -> StoreResult<Feature> {
        let name = name.to_string();
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let feature = find_feature(&tx, &name)?.ok_or_else(|| missing::feature(&name))?;
            let id = feature.id.to_string();
            let refs: i64 = tx.query_row(
                "SELECT (SELECT COUNT(*) FROM feature_model_assignments WHERE feature_id = ?1)
                      + (SELECT COUNT(*) FROM ai_prompts WHERE feature_id = ?1)
                      + (SELECT COUNT(*) FROM ai_experiments WHERE feature_id = ?1)",
                params![id],
                |r| r.get(0),
            )?;
            rules::feature_deletable(&name, refs)?;
            tx.execute("DELETE FROM ai_features WHERE id = ?1", params![id])?;
            insert_audit(&tx, &change.on("delete", Some(&feature), None))?;
            tx.commit()?;
            Ok(feature)
        })
        .await
    }

    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{PROVIDER_SELECT} ORDER BY name"))?;
            let rows = stmt
                .query_map([], provider_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn upsert_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        let find = |c: &Connection, s: &ProviderSpec| find_provider(c, &s.name);
        self.write_named(change, Write::Upsert, spec, find, put_provider)
            .await
    }

    async fn create_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        let find = |c: &Connection, s: &ProviderSpec| find_provider(c, &s.name);
        self.write_named(change, Write::Create, spec, find, put_provider)
            .await
    }

    async fn delete_provider(&self, name: &str, change: &Change) -> StoreResult<Provider> {
        let name = name.to_string();
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let provider = find_provider(&tx, &name)?.ok_or_else(|| missing::provider(&name))?;
            let models: i64 = tx.query_row(
                "SELECT COUNT(*) FROM ai_models WHERE provider_id = ?1",
                params![provider.id.to_string()],
                |r| r.get(0),
            )?;
            rules::provider_deletable(&name, models)?;
            tx.execute(
                "DELETE FROM ai_providers WHERE id = ?1",
                params![provider.id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&provider), None))?;
            tx.commit()?;
            Ok(provider)
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

    async fn upsert_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        let find = |c: &Connection, s: &ModelSpec| find_model(c, &s.provider, &s.name);
        self.write_named(change, Write::Upsert, spec, find, put_model)
            .await
    }

    async fn create_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        let find = |c: &Connection, s: &ModelSpec| find_model(c, &s.provider, &s.name);
        self.write_named(change, Write::Create, spec, find, put_model)
            .await
    }

    async fn delete_model(&self, id: Uuid, change: &Change) -> StoreResult<Model> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let model = tx
                .query_row(
                    &format!("{MODEL_SELECT} WHERE m.id = ?1"),
                    params![id.to_string()],
                    model_row,
                )
                .optional()?
                .ok_or_else(|| missing::model(id))?;
            let deployments: i64 = tx.query_row(
                "SELECT COUNT(*) FROM feature_model_assignments WHERE model_id = ?1",
                params![id.to_string()],
                |r| r.get(0),
            )?;
            rules::model_deletable(&model, deployments)?;
            tx.execute(
                "DELETE FROM ai_models WHERE id = ?1",
                params![id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&model), None))?;
            tx.commit()?;
            Ok(model)
        })
        .await
    }

    async fn add_price(&self, spec: PriceSpec, change: &Change) -> StoreResult<ModelPrice> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let model_id = model_id(&tx, &spec.provider, &spec.model)?;
            let id = Uuid::new_v4().to_string();
            let inserted = tx.execute(
                "INSERT INTO ai_model_prices (id, model_id, effective_from, input_per_mtok_micros, output_per_mtok_micros, cached_input_per_mtok_micros, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (model_id, effective_from) DO NOTHING",
                params![id, model_id, ts(spec.effective_from), spec.input_per_mtok_micros, spec.output_per_mtok_micros, spec.cached_input_per_mtok_micros, ts(Utc::now())],
            )?;
            if inserted == 0 {
                return Err(rules::price_taken(&spec.provider, &spec.model, spec.effective_from).into());
            }
            let price = tx.query_row(&format!("{PRICE_SELECT} WHERE x.id = ?1"), params![id], price_row)?;
            insert_audit(&tx, &price_added(&change, &model_id, &price))?;
            tx.commit()?;
            Ok(price)
        })
        .await
    }

    async fn add_reprice(&self, spec: RepriceSpec, change: &Change) -> StoreResult<Reprice> {
        spec.check()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let model_id = model_id(&tx, &spec.provider, &spec.model)?;
            let id = Uuid::new_v4();
            tx.execute(
                "INSERT INTO model_reprices (id, provider, model, from_at, requested_at, requested_by, prices) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id.to_string(),
                    spec.provider,
                    spec.model,
                    ts(spec.from),
                    ts(spec.requested_at),
                    spec.requested_by,
                    json_text(&spec.prices)?
                ],
            )?;
            let reprice = Reprice { id, spec };
            insert_audit(&tx, &repriced(&change, &model_id, &reprice))?;
            tx.commit()?;
            Ok(reprice)
        })
        .await
    }

    async fn list_reprices(&self) -> StoreResult<Vec<Reprice>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT id, provider, model, from_at, requested_at, requested_by, prices FROM model_reprices",
            )?;
            let mut rows = stmt
                .query_map([], |r| {
                    Ok(Reprice {
                        id: parse_uuid(&r.get::<_, String>(0)?)?,
                        spec: RepriceSpec {
                            provider: r.get(1)?,
                            model: r.get(2)?,
                            from: parse_ts(&r.get::<_, String>(3)?)?,
                            requested_at: parse_ts(&r.get::<_, String>(4)?)?,
                            requested_by: r.get(5)?,
                            prices: json_column(&r.get::<_, String>(6)?, "reprice prices")?,
                        },
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.sort_by_key(|r| (r.spec.requested_at, r.id));
            Ok(rows)
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

    async fn deploy(&self, spec: DeploySpec, change: &Change) -> StoreResult<Assignment> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let (before, after) = deploy_in(&tx, &spec, &change)?;
            insert_audit(&tx, &change.on("create", before.as_ref(), Some(&after)))?;
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    async fn rollback(
        &self,
        feature: &str,
        environment: Environment,
        change: &Change,
    ) -> StoreResult<Assignment> {
        let feature = feature.to_string();
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            feature_id(&tx, &feature)?;
            let history = {
                let mut stmt = tx.prepare(&format!(
                    "{ASSIGNMENT_SELECT} WHERE f.name = ?1 AND a.environment = ?2 ORDER BY a.assigned_at DESC, a.rowid DESC"
                ))?;
                let rows = stmt
                    .query_map(params![feature, environment.as_str()], assignment_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                rows
            };
            let spec = rollback_target(&feature, environment, &history)?;
            let (before, after) = deploy_in(&tx, &spec, &change)?;
            insert_audit(&tx, &change.on("rollback", before.as_ref(), Some(&after)))?;
            tx.commit()?;
            Ok(after)
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
        feature: Option<&str>,
        environment: Option<Environment>,
    ) -> StoreResult<Vec<Assignment>> {
        let feature = feature.map(str::to_string);
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{ASSIGNMENT_SELECT} WHERE (?1 IS NULL OR f.name = ?1) AND (?2 IS NULL OR a.environment = ?2) ORDER BY a.assigned_at DESC, a.rowid DESC"
            ))?;
            let rows = stmt
                .query_map(params![feature, environment.map(Environment::as_str)], assignment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_prompt(
        &self,
        spec: PromptSpec,
        change: &Change,
    ) -> StoreResult<(Prompt, PromptVersion)> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let taken: Option<String> = tx
                .query_row("SELECT id FROM ai_prompts WHERE name = ?1", params![spec.name], |r| r.get(0))
                .optional()?;
            if taken.is_some() {
                return Err(rules::name_taken("prompt", &spec.name).into());
            }
            let feature_id = spec.feature.as_deref().map(|f| feature_id(&tx, f)).transpose()?;
            let id = Uuid::now_v7().to_string();
            let at = ts(spec.content.at);
            tx.execute(
                "INSERT INTO ai_prompts (id, name, description, feature_id, tags, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![id, spec.name, spec.description, feature_id, json_text(&spec.tags)?, at],
            )?;
            insert_version(&tx, &id, 1, &spec.content, feature_id.as_deref())?;
            let prompt = tx.query_row(&format!("{PROMPT_SELECT} WHERE p.id = ?1"), params![id], prompt_row)?;
            let version = tx.query_row(&format!("{VERSION_SELECT} WHERE prompt_id = ?1 AND version = 1"), params![id], version_row)?;
            insert_audit(&tx, &prompt_created(&change, &prompt, &version))?;
            tx.commit()?;
            Ok((prompt, version))
        })
        .await
    }

    async fn list_prompts(&self) -> StoreResult<Vec<Prompt>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{PROMPT_SELECT} ORDER BY p.name"))?;
            let rows = stmt
                .query_map([], prompt_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_prompt_version(
        &self,
        prompt: Uuid,
        content: PromptContent,
        change: &Change,
    ) -> StoreResult<(PromptVersion, bool)> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let id = prompt.to_string();
            let feature_id: Option<String> = tx
                .query_row(
                    "SELECT feature_id FROM ai_prompts WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| missing::prompt(prompt))?;
            let latest = tx.query_row(
                &format!("{VERSION_SELECT} WHERE prompt_id = ?1 ORDER BY version DESC LIMIT 1"),
                params![id],
                version_row,
            )?;
            if latest.content == content.content && latest.variables == content.variables {
                return Ok((latest, false));
            }
            let next = latest.version + 1;
            insert_version(&tx, &id, next, &content, feature_id.as_deref())?;
            tx.execute(
                "UPDATE ai_prompts SET updated_at = ?2 WHERE id = ?1",
                params![id, ts(content.at)],
            )?;
            let version = tx.query_row(
                &format!("{VERSION_SELECT} WHERE prompt_id = ?1 AND version = ?2"),
                params![id, next],
                version_row,
            )?;
            insert_audit(&tx, &change.on("create", None, Some(&version)))?;
            tx.commit()?;
            Ok((version, true))
        })
        .await
    }

    async fn prompt_versions(&self, prompt: Uuid) -> StoreResult<Vec<PromptVersion>> {
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{VERSION_SELECT} WHERE prompt_id = ?1 ORDER BY version"
            ))?;
            let rows = stmt
                .query_map(params![prompt.to_string()], version_row)?
                .collect::<Result<Vec<_>, _>>()?;
            if rows.is_empty() {
                return Err(missing::prompt(prompt).into());
            }
            Ok(rows)
        })
        .await
    }

    async fn set_prompt_status(
        &self,
        prompt: Uuid,
        version: i32,
        status: PromptStatus,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = prompt_version(&tx, prompt, version)?;
            rules::status_settable(&current, status)?;
            tx.execute(
                "UPDATE ai_prompt_versions SET status = ?2 WHERE id = ?1",
                params![current.id.to_string(), status.as_str()],
            )?;
            let updated = prompt_version(&tx, prompt, version)?;
            if let Some(entry) = changed(&change, "status", &current, &updated) {
                insert_audit(&tx, &entry)?;
                tx.commit()?;
            }
            Ok(updated)
        })
        .await
    }

    async fn activate_prompt_version(
        &self,
        prompt: Uuid,
        version: i32,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = prompt_version(&tx, prompt, version)?;
            let feature_id: Option<String> = tx.query_row(
                "SELECT feature_id FROM ai_prompts WHERE id = ?1",
                params![prompt.to_string()],
                |r| r.get(0),
            )?;
            let feature_id = rules::activatable(&current, feature_id)?;
            tx.execute(
                "UPDATE ai_prompt_versions SET is_active = 0 WHERE feature_id = ?1 AND is_active = 1",
                params![feature_id],
            )?;
            tx.execute(
                "UPDATE ai_prompt_versions SET is_active = 1, feature_id = ?2 WHERE id = ?1",
                params![current.id.to_string(), feature_id],
            )?;
            let updated = prompt_version(&tx, prompt, version)?;
            if let Some(entry) = changed(&change, "activate", &current, &updated) {
                insert_audit(&tx, &entry)?;
                tx.commit()?;
            }
            Ok(updated)
        })
        .await
    }

    async fn create_budget(&self, spec: BudgetSpec, change: &Change) -> StoreResult<Budget> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let id = Uuid::now_v7().to_string();
            tx.execute(
                "INSERT INTO ai_spending_budgets (id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
                params![id, spec.name, spec.scope.as_str(), spec.scope_value, spec.period.as_str(), spec.time_zone, spec.amount_micros, json_text(&spec.thresholds_percent)?, spec.is_active, ts(change.at)],
            )?;
            let budget = tx.query_row(&format!("{BUDGET_SELECT} WHERE id = ?1"), params![id], budget_row)?;
            insert_audit(&tx, &change.on("create", None, Some(&budget)))?;
            tx.commit()?;
            Ok(budget)
        })
        .await
    }

    async fn update_budget(
        &self,
        id: Uuid,
        spec: BudgetSpec,
        change: &Change,
    ) -> StoreResult<Budget> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = budget(&tx, id)?;
            tx.execute(
                "UPDATE ai_spending_budgets SET name = ?2, scope = ?3, scope_value = ?4, period_type = ?5, time_zone = ?6, amount_micros = ?7, thresholds = ?8, is_active = ?9, updated_at = ?10 WHERE id = ?1",
                params![id.to_string(), spec.name, spec.scope.as_str(), spec.scope_value, spec.period.as_str(), spec.time_zone, spec.amount_micros, json_text(&spec.thresholds_percent)?, spec.is_active, ts(change.at)],
            )?;
            let after = budget(&tx, id)?;
            match change.upserted(Some(&before), &after) {
                Some(entry) => {
                    insert_audit(&tx, &entry)?;
                    tx.commit()?;
                    Ok(after)
                }
                None => Ok(before),
            }
        })
        .await
    }

    async fn delete_budget(&self, id: Uuid, change: &Change) -> StoreResult<Budget> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = budget(&tx, id)?;
            tx.execute(
                "DELETE FROM ai_spending_budgets WHERE id = ?1",
                params![id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&before), None))?;
            tx.commit()?;
            Ok(before)
        })
        .await
    }

    async fn list_budgets(&self) -> StoreResult<Vec<Budget>> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("{BUDGET_SELECT} ORDER BY name, created_at, rowid"))?;
            let rows = stmt
                .query_map([], budget_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_experiment(
        &self,
        spec: ExperimentSpec,
        change: &Change,
    ) -> StoreResult<Experiment> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let feature_id = feature_id(&tx, &spec.feature)?;
            let id = Uuid::now_v7().to_string();
            tx.execute(
                "INSERT INTO ai_experiments (id, name, description, feature_id, experiment_type, variants, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'draft', ?7, ?7)",
                params![id, spec.name, spec.description, feature_id, spec.experiment_type.as_str(), json_text(&spec.variants)?, ts(change.at)],
            )?;
            let created = tx.query_row(&format!("{EXPERIMENT_SELECT} WHERE e.id = ?1"), params![id], experiment_row)?;
            insert_audit(&tx, &change.on("create", None, Some(&created)))?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn list_experiments(&self) -> StoreResult<Vec<Experiment>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{EXPERIMENT_SELECT} ORDER BY e.created_at DESC, e.rowid DESC"
            ))?;
            let rows = stmt
                .query_map([], experiment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn transition_experiment(
        &self,
        id: Uuid,
        to: ExperimentStatus,
        change: &Change,
    ) -> StoreResult<Experiment> {
        let change = change.clone();
        let at = change.at;
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = tx
                .query_row(&format!("{EXPERIMENT_SELECT} WHERE e.id = ?1"), params![id.to_string()], experiment_row)
                .optional()?
                .ok_or_else(|| missing::experiment(id))?;
            let (started, ended) = current.moved_to(to, at)?;
            tx.execute(
                "UPDATE ai_experiments SET status = ?2, start_date = ?3, end_date = ?4, updated_at = ?5 WHERE id = ?1",
                params![id.to_string(), to.as_str(), started.map(ts), ended.map(ts), ts(at)],
            )?;
            let updated = tx.query_row(&format!("{EXPERIMENT_SELECT} WHERE e.id = ?1"), params![id.to_string()], experiment_row)?;
            insert_audit(&tx, &change.on("status", Some(&current), Some(&updated)))?;
            tx.commit()?;
            Ok(updated)
        })
        .await
    }

    async fn record_operation(&self, entry: AuditSpec) -> StoreResult<()> {
        self.with(move |c| insert_audit(c, &entry)).await
    }

    async fn list_audit(
        &self,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<AuditEntry>> {
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{AUDIT_SELECT} WHERE (?1 IS NULL OR at < ?1) ORDER BY at DESC, rowid DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![before.map(ts), limit], audit_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

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

fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Failure::Backend(e.to_string()))
}

fn json_column<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|_| conversion(what))
}

fn feature_id(conn: &Connection, name: &str) -> Result<String> {
    conn.query_row(
        "SELECT id FROM ai_features WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| missing::feature(name).into())
}

fn insert_version(
    conn: &Connection,
    prompt_id: &str,
    version: i32,
    content: &PromptContent,
    feature_id: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO ai_prompt_versions (id, prompt_id, version, content, variables, status, is_active, feature_id, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'draft', 0, ?6, ?7, ?8)",
        params![
            Uuid::now_v7().to_string(),
            prompt_id,
            version,
            content.content,
            json_text(&content.variables)?,
            feature_id,
            content.created_by,
            ts(content.at)
        ],
    )?;
    Ok(())
}

fn prompt_version(conn: &Connection, prompt: Uuid, version: i32) -> Result<PromptVersion> {
    conn.query_row(
        &format!("{VERSION_SELECT} WHERE prompt_id = ?1 AND version = ?2"),
        params![prompt.to_string(), version],
        version_row,
    )
    .optional()?
    .ok_or_else(|| missing::prompt_version(prompt, version).into())
}

const PROMPT_SELECT: &str = "SELECT p.id, p.name, p.description, f.name, p.tags,
    (SELECT MAX(v.version) FROM ai_prompt_versions v WHERE v.prompt_id = p.id),
    (SELECT v.version FROM ai_prompt_versions v WHERE v.prompt_id = p.id AND v.is_active = 1),
    p.created_at, p.updated_at
    FROM ai_prompts p LEFT JOIN ai_features f ON f.id = p.feature_id";

fn prompt_row(r: &Row) -> rusqlite::Result<Prompt> {
    Ok(Prompt {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        description: r.get(2)?,
        feature: r.get(3)?,
        tags: json_column(&r.get::<_, String>(4)?, "prompt tags")?,
        latest_version: r.get(5)?,
        active_version: r.get(6)?,
        created_at: parse_ts(&r.get::<_, String>(7)?)?,
        updated_at: parse_ts(&r.get::<_, String>(8)?)?,
    })
}

const VERSION_SELECT: &str = "SELECT id, prompt_id, version, content, variables, status, is_active, created_by, created_at FROM ai_prompt_versions";

fn version_row(r: &Row) -> rusqlite::Result<PromptVersion> {
    let status: String = r.get(5)?;
    Ok(PromptVersion {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        prompt_id: parse_uuid(&r.get::<_, String>(1)?)?,
        version: r.get(2)?,
        content: r.get(3)?,
        variables: json_column(&r.get::<_, String>(4)?, "prompt variables")?,
        status: PromptStatus::parse(&status).ok_or_else(|| conversion("prompt status"))?,
        is_active: r.get(6)?,
        created_by: r.get(7)?,
        created_at: parse_ts(&r.get::<_, String>(8)?)?,
    })
}

const BUDGET_SELECT: &str = "SELECT id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at FROM ai_spending_budgets";

fn budget_row(r: &Row) -> rusqlite::Result<Budget> {
    let scope: String = r.get(2)?;
    let period: String = r.get(4)?;
    Ok(Budget {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        spec: BudgetSpec {
            name: r.get(1)?,
            scope: BudgetScope::parse(&scope).ok_or_else(|| conversion("budget scope"))?,
            scope_value: r.get(3)?,
            period: BudgetPeriod::parse(&period).ok_or_else(|| conversion("budget period"))?,
            time_zone: r.get(5)?,
            amount_micros: r.get(6)?,
            thresholds_percent: json_column(&r.get::<_, String>(7)?, "budget thresholds")?,
            is_active: r.get(8)?,
        },
        created_at: parse_ts(&r.get::<_, String>(9)?)?,
        updated_at: parse_ts(&r.get::<_, String>(10)?)?,
    })
}

const EXPERIMENT_SELECT: &str = "SELECT e.id, e.name, e.description, f.name, e.experiment_type, e.variants, e.status, e.start_date, e.end_date, e.created_at, e.updated_at FROM ai_experiments e JOIN ai_features f ON f.id = e.feature_id";

fn experiment_row(r: &Row) -> rusqlite::Result<Experiment> {
    let kind: String = r.get(4)?;
    let status: String = r.get(6)?;
    let started: Option<String> = r.get(7)?;
    let ended: Option<String> = r.get(8)?;
    Ok(Experiment {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        spec: ExperimentSpec {
            name: r.get(1)?,
            description: r.get(2)?,
            feature: r.get(3)?,
            experiment_type: ExperimentType::parse(&kind)
                .ok_or_else(|| conversion("experiment type"))?,
            variants: json_column(&r.get::<_, String>(5)?, "experiment variants")?,
        },
        status: ExperimentStatus::parse(&status).ok_or_else(|| conversion("experiment status"))?,
        started_at: started.as_deref().map(parse_ts).transpose()?,
        ended_at: ended.as_deref().map(parse_ts).transpose()?,
        created_at: parse_ts(&r.get::<_, String>(9)?)?,
        updated_at: parse_ts(&r.get::<_, String>(10)?)?,
    })
}

const AUDIT_SELECT: &str =
    "SELECT id, at, actor, actor_key_id, action, resource, before, after FROM audit_log";

fn audit_row(r: &Row) -> rusqlite::Result<AuditEntry> {
    let key: Option<String> = r.get(3)?;
    let json = |text: Option<String>| -> rusqlite::Result<Option<serde_json::Value>> {
        text.map(|t| json_column(&t, "audit state")).transpose()
    };
    Ok(AuditEntry {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        at: parse_ts(&r.get::<_, String>(1)?)?,
        actor: r.get(2)?,
        actor_key_id: key.as_deref().map(parse_uuid).transpose()?,
        action: r.get(4)?,
        resource: r.get(5)?,
        before: json(r.get(6)?)?,
        after: json(r.get(7)?)?,
    })
}
