//! The configuration store on Postgres; behaviour identical to the SQLite store (the
//! conformance suite in `tally-conformance` runs against both).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tally_schemas::Environment;
use tracing::instrument;
use uuid::Uuid;

use crate::failure::{seam, Failure, Result};
use crate::upsert::Write;
use sqlx::types::Json;
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

pub struct PostgresConfigStore {
    pool: PgPool,
}

impl PostgresConfigStore {
    /// Wraps a pool whose database has been migrated ([`super::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        PostgresConfigStore { pool }
    }

    async fn write_feature(
        &self,
        spec: FeatureSpec,
        change: &Change,
        mode: Write,
    ) -> Result<Feature> {
        let mut tx = self.pool.begin().await?;
        let before = find_feature(&mut tx, &spec.name).await?;
        let after = put_feature(&mut tx, &spec, mode).await?;
        finish_write(tx, change, mode, before, after).await
    }

    async fn write_provider(
        &self,
        spec: ProviderSpec,
        change: &Change,
        mode: Write,
    ) -> Result<Provider> {
        let mut tx = self.pool.begin().await?;
        let before = find_provider(&mut tx, &spec.name).await?;
        let after = put_provider(&mut tx, &spec, mode).await?;
        finish_write(tx, change, mode, before, after).await
    }

    async fn write_model(&self, spec: ModelSpec, change: &Change, mode: Write) -> Result<Model> {
        let mut tx = self.pool.begin().await?;
        let before = find_model(&mut tx, &spec.provider, &spec.name).await?;
        let after = put_model(&mut tx, &spec, mode).await?;
        finish_write(tx, change, mode, before, after).await
    }
}

fn corrupt(what: &str) -> Failure {
    Failure::Corrupt(format!("stored {what} is invalid"))
}

fn feature_row(r: &PgRow) -> Result<Feature> {
    let status: String = r.try_get("status")?;
    Ok(Feature {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        display_name: r.try_get("display_name")?,
        description: r.try_get("description")?,
        status: FeatureStatus::parse(&status).ok_or_else(|| corrupt("feature status"))?,
        config: r.try_get("config")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn provider_row(r: &PgRow) -> Result<Provider> {
    Ok(Provider {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        provider_type: r.try_get("type")?,
        status: r.try_get("status")?,
        base_url: r.try_get("base_url")?,
        api_key_env: r.try_get("api_key_env")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const MODEL_SELECT: &str = "SELECT m.id, m.name, p.name AS provider, m.model_type, m.version, m.capabilities, m.status, m.created_at, m.updated_at FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id";

fn model_row(r: &PgRow) -> Result<Model> {
    let caps: serde_json::Value = r.try_get("capabilities")?;
    Ok(Model {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        provider: r.try_get("provider")?,
        model_type: r.try_get("model_type")?,
        version: r.try_get("version")?,
        capabilities: serde_json::from_value(caps).map_err(|_| corrupt("capabilities"))?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const PRICE_SELECT: &str = "SELECT x.id, p.name AS provider, m.name AS model, x.effective_from, x.input_per_mtok_micros, x.output_per_mtok_micros, x.cached_input_per_mtok_micros, x.created_at FROM ai_model_prices x JOIN ai_models m ON m.id = x.model_id JOIN ai_providers p ON p.id = m.provider_id";

fn price_row(r: &PgRow) -> Result<ModelPrice> {
    Ok(ModelPrice {
        id: r.try_get("id")?,
        provider: r.try_get("provider")?,
        model: r.try_get("model")?,
        effective_from: r.try_get("effective_from")?,
        input_per_mtok_micros: r.try_get("input_per_mtok_micros")?,
        output_per_mtok_micros: r.try_get("output_per_mtok_micros")?,
        cached_input_per_mtok_micros: r.try_get("cached_input_per_mtok_micros")?,
        created_at: r.try_get("created_at")?,
    })
}

const ASSIGNMENT_SELECT: &str = "SELECT a.id, f.name AS feature, a.environment, p.name AS provider, m.name AS model, a.is_active, a.assigned_at, a.assigned_by FROM feature_model_assignments a JOIN ai_features f ON f.id = a.feature_id JOIN ai_models m ON m.id = a.model_id JOIN ai_providers p ON p.id = m.provider_id";

fn assignment_row(r: &PgRow) -> Result<Assignment> {
    let env: String = r.try_get("environment")?;
    Ok(Assignment {
        id: r.try_get("id")?,
        feature: r.try_get("feature")?,
        environment: Environment::parse(&env).ok_or_else(|| corrupt("environment"))?,
        provider: r.try_get("provider")?,
        model: r.try_get("model")?,
        is_active: r.try_get("is_active")?,
        assigned_at: r.try_get("assigned_at")?,
        assigned_by: r.try_get("assigned_by")?,
    })
}

fn all<T>(rows: Vec<PgRow>, f: fn(&PgRow) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

/// Postgres keeps microseconds; so does the SQLite store's text format.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default()
}

async fn put_feature(tx: &mut Tx, spec: &FeatureSpec, mode: Write) -> Result<Feature> {
    let row = sqlx::query(&format!(
        "INSERT INTO ai_features (id, name, display_name, description, status, config, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) {} RETURNING *",
        mode.on_conflict(&["display_name", "description", "status", "config", "updated_at"])
    ))
    .bind(Uuid::new_v4())
    .bind(&spec.name)
    .bind(&spec.display_name)
    .bind(&spec.description)
    .bind(spec.status.as_str())
    .bind(&spec.config)
    .bind(now())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| rules::name_taken("feature", &spec.name))?;
    feature_row(&row)
}

async fn put_provider(tx: &mut Tx, spec: &ProviderSpec, mode: Write) -> Result<Provider> {
    let row = sqlx::query(&format!(
        "INSERT INTO ai_providers (id, name, type, status, base_url, api_key_env, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) {} RETURNING *",
        mode.on_conflict(&["type", "status", "base_url", "api_key_env", "updated_at"])
    ))
    .bind(Uuid::new_v4())
    .bind(&spec.name)
    .bind(&spec.provider_type)
    .bind(&spec.status)
    .bind(&spec.base_url)
    .bind(&spec.api_key_env)
    .bind(now())
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| rules::name_taken("provider", &spec.name))?;
    provider_row(&row)
}

async fn put_model(tx: &mut Tx, spec: &ModelSpec, mode: Write) -> Result<Model> {
    let provider_id: Uuid = sqlx::query_scalar("SELECT id FROM ai_providers WHERE name = $1")
        .bind(&spec.provider)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::provider(&spec.provider))?;
    let written = sqlx::query(&format!(
        "INSERT INTO ai_models (id, name, provider_id, model_type, version, capabilities, status, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (provider_id, name) {}",
        mode.on_conflict(&["model_type", "version", "capabilities", "status", "updated_at"])
    ))
    .bind(Uuid::new_v4())
    .bind(&spec.name)
    .bind(provider_id)
    .bind(&spec.model_type)
    .bind(&spec.version)
    .bind(serde_json::json!(spec.capabilities))
    .bind(&spec.status)
    .bind(now())
    .execute(&mut **tx)
    .await?;
    if written.rows_affected() == 0 {
        return Err(rules::name_taken("model", &format!("{}/{}", spec.provider, spec.name)).into());
    }
    find_model(tx, &spec.provider, &spec.name)
        .await?
        .ok_or_else(|| Failure::Backend("a written model is gone".into()))
}

async fn find_feature(tx: &mut Tx, name: &str) -> Result<Option<Feature>> {
    sqlx::query("SELECT * FROM ai_features WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(feature_row)
        .transpose()
}

async fn find_provider(tx: &mut Tx, name: &str) -> Result<Option<Provider>> {
    sqlx::query("SELECT * FROM ai_providers WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(provider_row)
        .transpose()
}

async fn find_model(tx: &mut Tx, provider: &str, name: &str) -> Result<Option<Model>> {
    sqlx::query(&format!(
        "{MODEL_SELECT} WHERE p.name = $1 AND m.name = $2 FOR UPDATE OF m"
    ))
    .bind(provider)
    .bind(name)
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(model_row)
    .transpose()
}

/// Appends an audit entry, in the caller's transaction.
async fn insert_audit(tx: &mut Tx, spec: &AuditSpec) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor, actor_key_id, action, resource, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(spec.at)
    .bind(&spec.actor)
    .bind(spec.actor_key_id)
    .bind(&spec.action)
    .bind(&spec.resource)
    .bind(&spec.before)
    .bind(&spec.after)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends a create or upsert that turned `before` into `after`: commits it with its audit entry,
/// or rolls back an upsert that changed nothing (the row keeps its `updated_at`) and returns
/// the row as it was.
async fn finish_write<T: Audited>(
    mut tx: Tx,
    change: &Change,
    mode: Write,
    before: Option<T>,
    after: T,
) -> Result<T> {
    match mode.audit(change, before.as_ref(), &after) {
        Some(entry) => {
            insert_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(after)
        }
        None => Ok(before.unwrap_or(after)),
    }
}

/// Audits `verb` on a resource and commits.
async fn commit_audited<T: Audited>(
    mut tx: Tx,
    change: &Change,
    verb: &str,
    before: Option<&T>,
    after: Option<&T>,
) -> Result<()> {
    insert_audit(&mut tx, &change.on(verb, before, after)).await?;
    tx.commit().await?;
    Ok(())
}

/// Deactivates the active assignment of (feature, environment) and inserts the new one, in
/// the caller's transaction; returns both.
async fn deploy_in(
    tx: &mut Tx,
    spec: &DeploySpec,
    change: &Change,
) -> Result<(Option<Assignment>, Assignment)> {
    let feature_id: Uuid =
        sqlx::query_scalar("SELECT id FROM ai_features WHERE name = $1 FOR UPDATE")
            .bind(&spec.feature)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| missing::feature(&spec.feature))?;
    let model_id = model_id(tx, &spec.provider, &spec.model).await?;
    let before = sqlx::query(&format!(
        "{ASSIGNMENT_SELECT} WHERE a.feature_id = $1 AND a.environment = $2 AND a.is_active"
    ))
    .bind(feature_id)
    .bind(spec.environment.as_str())
    .fetch_optional(&mut **tx)
    .await?
    .as_ref()
    .map(assignment_row)
    .transpose()?;
    sqlx::query("UPDATE feature_model_assignments SET is_active = FALSE, deactivated_at = $3 WHERE feature_id = $1 AND environment = $2 AND is_active")
        .bind(feature_id)
        .bind(spec.environment.as_str())
        .bind(change.at)
        .execute(&mut **tx)
        .await?;
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO feature_model_assignments (id, feature_id, model_id, environment, is_active, assigned_at, assigned_by) VALUES ($1, $2, $3, $4, TRUE, $5, $6)")
        .bind(id)
        .bind(feature_id)
        .bind(model_id)
        .bind(spec.environment.as_str())
        .bind(change.at)
        .bind(&change.actor.name)
        .execute(&mut **tx)
        .await?;
    let row = sqlx::query(&format!("{ASSIGNMENT_SELECT} WHERE a.id = $1"))
        .bind(id)
        .fetch_one(&mut **tx)
        .await?;
    Ok((before, assignment_row(&row)?))
}

async fn budget(tx: &mut Tx, id: Uuid) -> Result<Budget> {
    let row = sqlx::query(&format!(
        "SELECT {BUDGET_COLUMNS} FROM ai_spending_budgets WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| missing::budget(id))?;
    budget_row(&row)
}

async fn model_id(tx: &mut Tx, provider: &str, model: &str) -> Result<Uuid> {
    sqlx::query_scalar("SELECT m.id FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id WHERE p.name = $1 AND m.name = $2")
        .bind(provider)
        .bind(model)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::model_named(provider, model).into())
}

#[async_trait]
impl ConfigStore for PostgresConfigStore {
    async fn list_features(&self) -> StoreResult<Vec<Feature>> {
        seam(async || -> Result<Vec<Feature>> {
            all(
                sqlx::query("SELECT * FROM ai_features ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?,
                feature_row,
            )
        })
        .await
    }

    #[instrument(name = "config.upsert_feature", skip_all, fields(feature = %spec.name), err)]
    async fn upsert_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        seam(async || -> Result<Feature> { self.write_feature(spec, change, Write::Upsert).await })
            .await
    }

    #[instrument(name = "config.create_feature", skip_all, fields(feature = %spec.name), err)]
    async fn create_feature(&self, spec: FeatureSpec, change: &Change) -> StoreResult<Feature> {
        seam(async || -> Result<Feature> { self.write_feature(spec, change, Write::Create).await })
            .await
    }

    #[instrument(name = "config.delete_feature", skip(self, change), err)]
    async fn delete_feature(&self, name: &str, change: &Change) -> StoreResult<Feature> {
        seam(async || -> Result<Feature> {
            let mut tx = self.pool.begin().await?;
            let feature = find_feature(&mut tx, name)
                .await?
                .ok_or_else(|| missing::feature(name))?;
            let refs: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM feature_model_assignments WHERE feature_id = $1)
                      + (SELECT COUNT(*) FROM ai_prompts WHERE feature_id = $1)
                      + (SELECT COUNT(*) FROM ai_experiments WHERE feature_id = $1)",
            )
            .bind(feature.id)
            .fetch_one(&mut *tx)
            .await?;
            rules::feature_deletable(name, refs)?;
            sqlx::query("DELETE FROM ai_features WHERE id = $1")
                .bind(feature.id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&feature), None).await?;
            Ok(feature)
        })
        .await
    }

    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        seam(async || -> Result<Vec<Provider>> {
            all(
                sqlx::query("SELECT * FROM ai_providers ORDER BY name")
                    .fetch_all(&self.pool)
                    .await?,
                provider_row,
            )
        })
        .await
    }

    #[instrument(name = "config.upsert_provider", skip_all, fields(provider = %spec.name), err)]
    async fn upsert_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        seam(async || -> Result<Provider> {
            self.write_provider(spec, change, Write::Upsert).await
        })
        .await
    }

    #[instrument(name = "config.create_provider", skip_all, fields(provider = %spec.name), err)]
    async fn create_provider(&self, spec: ProviderSpec, change: &Change) -> StoreResult<Provider> {
        seam(async || -> Result<Provider> {
            self.write_provider(spec, change, Write::Create).await
        })
        .await
    }

    #[instrument(name = "config.delete_provider", skip(self, change), err)]
    async fn delete_provider(&self, name: &str, change: &Change) -> StoreResult<Provider> {
        seam(async || -> Result<Provider> {
            let mut tx = self.pool.begin().await?;
            let provider = find_provider(&mut tx, name)
                .await?
                .ok_or_else(|| missing::provider(name))?;
            let models: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM ai_models WHERE provider_id = $1")
                    .bind(provider.id)
                    .fetch_one(&mut *tx)
                    .await?;
            rules::provider_deletable(name, models)?;
            sqlx::query("DELETE FROM ai_providers WHERE id = $1")
                .bind(provider.id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&provider), None).await?;
            Ok(provider)
        })
        .await
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        seam(async || -> Result<Vec<Model>> {
            all(
                sqlx::query(&format!("{MODEL_SELECT} ORDER BY p.name, m.name"))
                    .fetch_all(&self.pool)
                    .await?,
                model_row,
            )
        })
        .await
    }

    #[instrument(name = "config.upsert_model", skip_all, fields(model = %spec.name), err)]
    async fn upsert_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        seam(async || -> Result<Model> { self.write_model(spec, change, Write::Upsert).await })
            .await
    }

    #[instrument(name = "config.create_model", skip_all, fields(model = %spec.name), err)]
    async fn create_model(&self, spec: ModelSpec, change: &Change) -> StoreResult<Model> {
        seam(async || -> Result<Model> { self.write_model(spec, change, Write::Create).await })
            .await
    }

    #[instrument(name = "config.delete_model", skip(self, change), err)]
    async fn delete_model(&self, id: Uuid, change: &Change) -> StoreResult<Model> {
        seam(async || -> Result<Model> {
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT id FROM ai_models WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| missing::model(id))?;
            let row = sqlx::query(&format!("{MODEL_SELECT} WHERE m.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let model = model_row(&row)?;
            let deployments: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM feature_model_assignments WHERE model_id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            rules::model_deletable(&model, deployments)?;
            sqlx::query("DELETE FROM ai_models WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&model), None).await?;
            Ok(model)
        })
        .await
    }

    #[instrument(name = "config.add_price", skip_all, fields(model = %spec.model), err)]
    async fn add_price(&self, spec: PriceSpec, change: &Change) -> StoreResult<ModelPrice> {
        seam(async || -> Result<ModelPrice> {
            let mut tx = self.pool.begin().await?;
            let model_id = model_id(&mut tx, &spec.provider, &spec.model).await?;
            let id = Uuid::new_v4();
            let inserted = sqlx::query(
                "INSERT INTO ai_model_prices (id, model_id, effective_from, input_per_mtok_micros, output_per_mtok_micros, cached_input_per_mtok_micros, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (model_id, effective_from) DO NOTHING",
            )
            .bind(id)
            .bind(model_id)
            .bind(spec.effective_from)
            .bind(spec.input_per_mtok_micros)
            .bind(spec.output_per_mtok_micros)
            .bind(spec.cached_input_per_mtok_micros)
            .bind(now())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(rules::price_taken(&spec.provider, &spec.model, spec.effective_from).into());
            }
            let row = sqlx::query(&format!("{PRICE_SELECT} WHERE x.id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let price = price_row(&row)?;
            let entry = price_added(change, model_id, &price);
            insert_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(price)
        })
        .await
    }

    #[instrument(name = "config.add_reprice", skip_all, fields(model = %spec.model), err)]
    async fn add_reprice(&self, spec: RepriceSpec, change: &Change) -> StoreResult<Reprice> {
        seam(async || -> Result<Reprice> {
            spec.check()?;
            let mut tx = self.pool.begin().await?;
            let model_id = model_id(&mut tx, &spec.provider, &spec.model).await?;
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO model_reprices (id, provider, model, from_at, requested_at, requested_by, prices) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(id)
            .bind(&spec.provider)
            .bind(&spec.model)
            .bind(spec.from)
            .bind(spec.requested_at)
            .bind(&spec.requested_by)
            .bind(Json(&spec.prices))
            .execute(&mut *tx)
            .await?;
            let reprice = Reprice { id, spec };
            let entry = repriced(change, model_id, &reprice);
            insert_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(reprice)
        })
        .await
    }

    async fn list_reprices(&self) -> StoreResult<Vec<Reprice>> {
        seam(async || -> Result<Vec<Reprice>> {
            let mut rows = all(
                sqlx::query(
                    "SELECT id, provider, model, from_at, requested_at, requested_by, prices FROM model_reprices",
                )
                .fetch_all(&self.pool)
                .await?,
                |r| {
                    Ok(Reprice {
                        id: r.try_get("id")?,
                        spec: RepriceSpec {
                            provider: r.try_get("provider")?,
                            model: r.try_get("model")?,
                            from: r.try_get("from_at")?,
                            requested_at: r.try_get("requested_at")?,
                            requested_by: r.try_get("requested_by")?,
                            prices: r.try_get::<Json<Vec<ModelPrice>>, _>("prices")?.0,
                        },
                    })
                },
            )?;
            rows.sort_by_key(|r| (r.spec.requested_at, r.id));
            Ok(rows)
        })
        .await
    }

    async fn list_prices(&self) -> StoreResult<Vec<ModelPrice>> {
        seam(async || -> Result<Vec<ModelPrice>> {
            all(
                sqlx::query(&format!(
                    "{PRICE_SELECT} ORDER BY p.name, m.name, x.effective_from"
                ))
                .fetch_all(&self.pool)
                .await?,
                price_row,
            )
        })
        .await
    }

    #[instrument(name = "config.deploy", skip_all, fields(feature = %spec.feature, environment = spec.environment.as_str()), err)]
    async fn deploy(&self, spec: DeploySpec, change: &Change) -> StoreResult<Assignment> {
        seam(async || -> Result<Assignment> {
            let mut tx = self.pool.begin().await?;
            let (before, after) = deploy_in(&mut tx, &spec, change).await?;
            commit_audited(tx, change, "create", before.as_ref(), Some(&after)).await?;
            Ok(after)
        })
        .await
    }

    #[instrument(name = "config.rollback", skip(self, change), fields(environment = environment.as_str()), err)]
    async fn rollback(
        &self,
        feature: &str,
        environment: Environment,
        change: &Change,
    ) -> StoreResult<Assignment> {
        seam(async || -> Result<Assignment> {
            let mut tx = self.pool.begin().await?;
            // Locks the feature: concurrent deploys and rollbacks of it queue behind this one.
            feature_id_for_update(&mut tx, feature).await?;
            let history = all(
                sqlx::query(&format!(
                    "{ASSIGNMENT_SELECT} WHERE f.name = $1 AND a.environment = $2 ORDER BY a.assigned_at DESC, a.seq DESC"
                ))
                .bind(feature)
                .bind(environment.as_str())
                .fetch_all(&mut *tx)
                .await?,
                assignment_row,
            )?;
            let spec = rollback_target(feature, environment, &history)?;
            let (before, after) = deploy_in(&mut tx, &spec, change).await?;
            commit_audited(tx, change, "rollback", before.as_ref(), Some(&after)).await?;
            Ok(after)
        })
        .await
    }

    async fn active_assignments(&self) -> StoreResult<Vec<Assignment>> {
        seam(async || -> Result<Vec<Assignment>> {
            all(
                sqlx::query(&format!(
                    "{ASSIGNMENT_SELECT} WHERE a.is_active ORDER BY f.name, a.environment"
                ))
                .fetch_all(&self.pool)
                .await?,
                assignment_row,
            )
        })
        .await
    }

    async fn assignment_history(
        &self,
        feature: Option<&str>,
        environment: Option<Environment>,
    ) -> StoreResult<Vec<Assignment>> {
        seam(async || -> Result<Vec<Assignment>> {
            let rows = sqlx::query(&format!(
                "{ASSIGNMENT_SELECT} WHERE ($1::text IS NULL OR f.name = $1) AND ($2::text IS NULL OR a.environment = $2) ORDER BY a.assigned_at DESC, a.seq DESC"
            ))
            .bind(feature)
            .bind(environment.map(Environment::as_str))
            .fetch_all(&self.pool)
            .await?;
            all(rows, assignment_row)
        })
        .await
    }

    #[instrument(name = "postgres.create_prompt", skip_all, fields(prompt = %spec.name), err)]
    async fn create_prompt(
        &self,
        spec: PromptSpec,
        change: &Change,
    ) -> StoreResult<(Prompt, PromptVersion)> {
        seam(async || -> Result<(Prompt, PromptVersion)> {
            let mut tx = self.pool.begin().await?;
            let taken: Option<Uuid> = sqlx::query_scalar("SELECT id FROM ai_prompts WHERE name = $1")
                .bind(&spec.name)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Err(rules::name_taken("prompt", &spec.name).into());
            }
            let feature_id = match &spec.feature {
                Some(f) => Some(feature_id(&mut tx, f).await?),
                None => None,
            };
            let id = Uuid::now_v7();
            sqlx::query("INSERT INTO ai_prompts (id, name, description, feature_id, tags, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)")
                .bind(id)
                .bind(&spec.name)
                .bind(&spec.description)
                .bind(feature_id)
                .bind(Json(&spec.tags))
                .bind(spec.content.at)
                .execute(&mut *tx)
                .await?;
            insert_version(&mut tx, id, 1, &spec.content, feature_id).await?;
            let prompt = prompt_row(
                &sqlx::query(&format!("{PROMPT_SELECT} WHERE p.id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?,
            )?;
            let version = prompt_version(&mut tx, id, 1).await?;
            insert_audit(&mut tx, &prompt_created(change, &prompt, &version)).await?;
            tx.commit().await?;
            Ok((prompt, version))
        })
        .await
    }

    async fn list_prompts(&self) -> StoreResult<Vec<Prompt>> {
        seam(async || -> Result<Vec<Prompt>> {
            all(
                sqlx::query(&format!("{PROMPT_SELECT} ORDER BY p.name"))
                    .fetch_all(&self.pool)
                    .await?,
                prompt_row,
            )
        })
        .await
    }

    #[instrument(name = "postgres.add_prompt_version", skip_all, err)]
    async fn add_prompt_version(
        &self,
        prompt: Uuid,
        content: PromptContent,
        change: &Change,
    ) -> StoreResult<(PromptVersion, bool)> {
        seam(async || -> Result<(PromptVersion, bool)> {
            let mut tx = self.pool.begin().await?;
            let feature_id: Option<Uuid> =
                sqlx::query_scalar("SELECT feature_id FROM ai_prompts WHERE id = $1 FOR UPDATE")
                    .bind(prompt)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| missing::prompt(prompt))?;
            let latest = version_row(
                &sqlx::query(&format!(
                    "{VERSION_SELECT} WHERE prompt_id = $1 ORDER BY version DESC LIMIT 1"
                ))
                .bind(prompt)
                .fetch_one(&mut *tx)
                .await?,
            )?;
            if latest.content == content.content && latest.variables == content.variables {
                return Ok((latest, false));
            }
            let next = latest.version + 1;
            insert_version(&mut tx, prompt, next, &content, feature_id).await?;
            sqlx::query("UPDATE ai_prompts SET updated_at = $2 WHERE id = $1")
                .bind(prompt)
                .bind(content.at)
                .execute(&mut *tx)
                .await?;
            let version = prompt_version(&mut tx, prompt, next).await?;
            commit_audited(tx, change, "create", None, Some(&version)).await?;
            Ok((version, true))
        })
        .await
    }

    async fn prompt_versions(&self, prompt: Uuid) -> StoreResult<Vec<PromptVersion>> {
        seam(async || -> Result<Vec<PromptVersion>> {
            let rows = all(
                sqlx::query(&format!(
                    "{VERSION_SELECT} WHERE prompt_id = $1 ORDER BY version"
                ))
                .bind(prompt)
                .fetch_all(&self.pool)
                .await?,
                version_row,
            )?;
            if rows.is_empty() {
                return Err(missing::prompt(prompt).into());
            }
            Ok(rows)
        })
        .await
    }

    #[instrument(name = "postgres.set_prompt_status", skip_all, err)]
    async fn set_prompt_status(
        &self,
        prompt: Uuid,
        version: i32,
        status: PromptStatus,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        seam(async || -> Result<PromptVersion> {
            let mut tx = self.pool.begin().await?;
            lock_prompt(&mut tx, prompt).await?;
            let current = prompt_version(&mut tx, prompt, version).await?;
            rules::status_settable(&current, status)?;
            sqlx::query("UPDATE ai_prompt_versions SET status = $2 WHERE id = $1")
                .bind(current.id)
                .bind(status.as_str())
                .execute(&mut *tx)
                .await?;
            let updated = prompt_version(&mut tx, prompt, version).await?;
            if let Some(entry) = changed(change, "status", &current, &updated) {
                insert_audit(&mut tx, &entry).await?;
                tx.commit().await?;
            }
            Ok(updated)
        })
        .await
    }

    #[instrument(name = "postgres.activate_prompt_version", skip_all, err)]
    async fn activate_prompt_version(
        &self,
        prompt: Uuid,
        version: i32,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        seam(async || -> Result<PromptVersion> {
            let mut tx = self.pool.begin().await?;
            lock_prompt(&mut tx, prompt).await?;
            let current = prompt_version(&mut tx, prompt, version).await?;
            let feature_id: Option<Uuid> =
                sqlx::query_scalar("SELECT feature_id FROM ai_prompts WHERE id = $1")
                    .bind(prompt)
                    .fetch_one(&mut *tx)
                    .await?;
            let feature_id = rules::activatable(&current, feature_id)?;
            sqlx::query(
                "UPDATE ai_prompt_versions SET is_active = false WHERE feature_id = $1 AND is_active",
            )
            .bind(feature_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE ai_prompt_versions SET is_active = true, feature_id = $2 WHERE id = $1",
            )
            .bind(current.id)
            .bind(feature_id)
            .execute(&mut *tx)
            .await?;
            let updated = prompt_version(&mut tx, prompt, version).await?;
            if let Some(entry) = changed(change, "activate", &current, &updated) {
                insert_audit(&mut tx, &entry).await?;
                tx.commit().await?;
            }
            Ok(updated)
        })
        .await
    }

    #[instrument(name = "postgres.create_budget", skip_all, err)]
    async fn create_budget(&self, spec: BudgetSpec, change: &Change) -> StoreResult<Budget> {
        seam(async || -> Result<Budget> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(&format!(
                "INSERT INTO ai_spending_budgets (id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING {BUDGET_COLUMNS}"
            ))
            .bind(Uuid::now_v7())
            .bind(&spec.name)
            .bind(spec.scope.as_str())
            .bind(&spec.scope_value)
            .bind(spec.period.as_str())
            .bind(&spec.time_zone)
            .bind(spec.amount_micros)
            .bind(Json(&spec.thresholds_percent))
            .bind(spec.is_active)
            .bind(change.at)
            .fetch_one(&mut *tx)
            .await?;
            let created = budget_row(&row)?;
            commit_audited(tx, change, "create", None, Some(&created)).await?;
            Ok(created)
        })
        .await
    }

    #[instrument(name = "postgres.update_budget", skip_all, err)]
    async fn update_budget(
        &self,
        id: Uuid,
        spec: BudgetSpec,
        change: &Change,
    ) -> StoreResult<Budget> {
        seam(async || -> Result<Budget> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            let before = budget(&mut tx, id).await?;
            let row = sqlx::query(&format!(
                "UPDATE ai_spending_budgets SET name = $2, scope = $3, scope_value = $4, period_type = $5, time_zone = $6, amount_micros = $7, thresholds = $8, is_active = $9, updated_at = $10
                 WHERE id = $1 RETURNING {BUDGET_COLUMNS}"
            ))
            .bind(id)
            .bind(&spec.name)
            .bind(spec.scope.as_str())
            .bind(&spec.scope_value)
            .bind(spec.period.as_str())
            .bind(&spec.time_zone)
            .bind(spec.amount_micros)
            .bind(Json(&spec.thresholds_percent))
            .bind(spec.is_active)
            .bind(change.at)
            .fetch_one(&mut *tx)
            .await?;
            let after = budget_row(&row)?;
            finish_write(tx, change, Write::Upsert, Some(before), after).await
        })
        .await
    }

    #[instrument(name = "postgres.delete_budget", skip_all, err)]
    async fn delete_budget(&self, id: Uuid, change: &Change) -> StoreResult<Budget> {
        seam(async || -> Result<Budget> {
            let mut tx = self.pool.begin().await?;
            let before = budget(&mut tx, id).await?;
            sqlx::query("DELETE FROM ai_spending_budgets WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&before), None).await?;
            Ok(before)
        })
        .await
    }

    async fn list_budgets(&self) -> StoreResult<Vec<Budget>> {
        seam(async || -> Result<Vec<Budget>> {
            all(
                sqlx::query(&format!(
                    "SELECT {BUDGET_COLUMNS} FROM ai_spending_budgets ORDER BY name, created_at, seq"
                ))
                .fetch_all(&self.pool)
                .await?,
                budget_row,
            )
        })
        .await
    }

    #[instrument(name = "postgres.create_experiment", skip_all, err)]
    async fn create_experiment(
        &self,
        spec: ExperimentSpec,
        change: &Change,
    ) -> StoreResult<Experiment> {
        seam(async || -> Result<Experiment> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            let feature_id = feature_id(&mut tx, &spec.feature).await?;
            let id = Uuid::now_v7();
            sqlx::query(
                "INSERT INTO ai_experiments (id, name, description, feature_id, experiment_type, variants, status, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $7)",
            )
            .bind(id)
            .bind(&spec.name)
            .bind(&spec.description)
            .bind(feature_id)
            .bind(spec.experiment_type.as_str())
            .bind(Json(&spec.variants))
            .bind(change.at)
            .execute(&mut *tx)
            .await?;
            let experiment = experiment(&mut tx, id).await?;
            commit_audited(tx, change, "create", None, Some(&experiment)).await?;
            Ok(experiment)
        })
        .await
    }

    async fn list_experiments(&self) -> StoreResult<Vec<Experiment>> {
        seam(async || -> Result<Vec<Experiment>> {
            all(
                sqlx::query(&format!(
                    "{EXPERIMENT_SELECT} ORDER BY e.created_at DESC, e.seq DESC"
                ))
                .fetch_all(&self.pool)
                .await?,
                experiment_row,
            )
        })
        .await
    }

    #[instrument(name = "postgres.transition_experiment", skip_all, err)]
    async fn transition_experiment(
        &self,
        id: Uuid,
        to: ExperimentStatus,
        change: &Change,
    ) -> StoreResult<Experiment> {
        seam(async || -> Result<Experiment> {
            let at = change.at;
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT id FROM ai_experiments WHERE id = $1 FOR UPDATE")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let current = experiment(&mut tx, id).await?;
            let (started, ended) = current.moved_to(to, at)?;
            sqlx::query("UPDATE ai_experiments SET status = $2, start_date = $3, end_date = $4, updated_at = $5 WHERE id = $1")
                .bind(id)
                .bind(to.as_str())
                .bind(started)
                .bind(ended)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            let updated = experiment(&mut tx, id).await?;
            commit_audited(tx, change, "status", Some(&current), Some(&updated)).await?;
            Ok(updated)
        })
        .await
    }

    #[instrument(name = "postgres.record_operation", skip_all, err)]
    async fn record_operation(&self, entry: AuditSpec) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let mut tx = self.pool.begin().await?;
            insert_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn list_audit(
        &self,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<AuditEntry>> {
        seam(async || -> Result<Vec<AuditEntry>> {
            all(
                sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE ($1::timestamptz IS NULL OR at < $1) ORDER BY at DESC, seq DESC LIMIT $2"
                ))
                .bind(before)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?,
                audit_row,
            )
        })
        .await
    }

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

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

/// The feature's id, its row locked until the transaction ends.
async fn feature_id_for_update(tx: &mut Tx, name: &str) -> Result<Uuid> {
    sqlx::query_scalar("SELECT id FROM ai_features WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::feature(name).into())
}

/// Locks the prompt's row: changes to its versions queue behind this transaction.
async fn lock_prompt(tx: &mut Tx, prompt: Uuid) -> Result<()> {
    sqlx::query("SELECT id FROM ai_prompts WHERE id = $1 FOR UPDATE")
        .bind(prompt)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::prompt(prompt))?;
    Ok(())
}

async fn feature_id(tx: &mut Tx, name: &str) -> Result<Uuid> {
    sqlx::query_scalar("SELECT id FROM ai_features WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::feature(name).into())
}

async fn insert_version(
    tx: &mut Tx,
    prompt: Uuid,
    version: i32,
    content: &PromptContent,
    feature_id: Option<Uuid>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO ai_prompt_versions (id, prompt_id, version, content, variables, status, is_active, feature_id, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, 'draft', false, $6, $7, $8)",
    )
    .bind(Uuid::now_v7())
    .bind(prompt)
    .bind(version)
    .bind(&content.content)
    .bind(Json(&content.variables))
    .bind(feature_id)
    .bind(&content.created_by)
    .bind(content.at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn prompt_version(tx: &mut Tx, prompt: Uuid, version: i32) -> Result<PromptVersion> {
    let row = sqlx::query(&format!(
        "{VERSION_SELECT} WHERE prompt_id = $1 AND version = $2"
    ))
    .bind(prompt)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| missing::prompt_version(prompt, version))?;
    version_row(&row)
}

async fn experiment(tx: &mut Tx, id: Uuid) -> Result<Experiment> {
    let row = sqlx::query(&format!("{EXPERIMENT_SELECT} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::experiment(id))?;
    experiment_row(&row)
}

const PROMPT_SELECT: &str = "SELECT p.id, p.name, p.description, f.name AS feature, p.tags,
    (SELECT MAX(v.version) FROM ai_prompt_versions v WHERE v.prompt_id = p.id) AS latest_version,
    (SELECT v.version FROM ai_prompt_versions v WHERE v.prompt_id = p.id AND v.is_active) AS active_version,
    p.created_at, p.updated_at
    FROM ai_prompts p LEFT JOIN ai_features f ON f.id = p.feature_id";

fn prompt_row(r: &PgRow) -> Result<Prompt> {
    Ok(Prompt {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        feature: r.try_get("feature")?,
        tags: r.try_get::<Json<Vec<String>>, _>("tags")?.0,
        latest_version: r.try_get("latest_version")?,
        active_version: r.try_get("active_version")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const VERSION_SELECT: &str = "SELECT id, prompt_id, version, content, variables, status, is_active, created_by, created_at FROM ai_prompt_versions";

fn version_row(r: &PgRow) -> Result<PromptVersion> {
    let status: String = r.try_get("status")?;
    Ok(PromptVersion {
        id: r.try_get("id")?,
        prompt_id: r.try_get("prompt_id")?,
        version: r.try_get("version")?,
        content: r.try_get("content")?,
        variables: r.try_get::<Json<Vec<String>>, _>("variables")?.0,
        status: PromptStatus::parse(&status).ok_or_else(|| corrupt("prompt status"))?,
        is_active: r.try_get("is_active")?,
        created_by: r.try_get("created_by")?,
        created_at: r.try_get("created_at")?,
    })
}

const BUDGET_COLUMNS: &str = "id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at";

fn budget_row(r: &PgRow) -> Result<Budget> {
    let scope: String = r.try_get("scope")?;
    let period: String = r.try_get("period_type")?;
    Ok(Budget {
        id: r.try_get("id")?,
        spec: BudgetSpec {
            name: r.try_get("name")?,
            scope: BudgetScope::parse(&scope).ok_or_else(|| corrupt("budget scope"))?,
            scope_value: r.try_get("scope_value")?,
            period: BudgetPeriod::parse(&period).ok_or_else(|| corrupt("budget period"))?,
            time_zone: r.try_get("time_zone")?,
            amount_micros: r.try_get("amount_micros")?,
            thresholds_percent: r.try_get::<Json<Vec<u32>>, _>("thresholds")?.0,
            is_active: r.try_get("is_active")?,
        },
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const EXPERIMENT_SELECT: &str = "SELECT e.id, e.name, e.description, f.name AS feature, e.experiment_type, e.variants, e.status, e.start_date, e.end_date, e.created_at, e.updated_at FROM ai_experiments e JOIN ai_features f ON f.id = e.feature_id";

fn experiment_row(r: &PgRow) -> Result<Experiment> {
    let kind: String = r.try_get("experiment_type")?;
    let status: String = r.try_get("status")?;
    Ok(Experiment {
        id: r.try_get("id")?,
        spec: ExperimentSpec {
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            feature: r.try_get("feature")?,
            experiment_type: ExperimentType::parse(&kind)
                .ok_or_else(|| corrupt("experiment type"))?,
            variants: r
                .try_get::<Json<Vec<tally_domain::config::Variant>>, _>("variants")?
                .0,
        },
        status: ExperimentStatus::parse(&status).ok_or_else(|| corrupt("experiment status"))?,
        started_at: r.try_get("start_date")?,
        ended_at: r.try_get("end_date")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const AUDIT_COLUMNS: &str = "id, at, actor, actor_key_id, action, resource, before, after";

fn audit_row(r: &PgRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        actor_key_id: r.try_get("actor_key_id")?,
        action: r.try_get("action")?,
        resource: r.try_get("resource")?,
        before: r.try_get("before")?,
        after: r.try_get("after")?,
    })
}
