//! The configuration store on Postgres; behaviour identical to the SQLite store (the
//! conformance suite in `tally-conformance` runs against both).

mod alerts;
mod audit;
mod budgets;
mod catalog;
mod deployments;
mod experiments;
mod keys;
mod prompts;
mod test_cases;
mod test_runs;

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
    FeatureSpec, FeatureStatus, Model, ModelPrice, ModelSpec, ModelStatus, ModelType, PriceSpec,
    Prompt, PromptContent, PromptSpec, PromptStatus, PromptVersion, Provider, ProviderSpec,
    ProviderStatus, ProviderType, Reprice, RepriceSpec,
};
use tally_domain::rules::{self, missing};
use tally_domain::store::StoreResult;

pub struct PostgresConfigStore {
    pool: PgPool,
    /// The evaluator's lease, while this process holds it ([`alerts`]).
    lease: alerts::Lease,
}

impl PostgresConfigStore {
    /// Wraps a pool whose database has been migrated ([`super::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        PostgresConfigStore {
            pool,
            lease: alerts::Lease::default(),
        }
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

/// A text column holding one of an enum's words.
fn word<T>(r: &PgRow, column: &'static str, parse: fn(&str) -> Option<T>) -> Result<T> {
    let text: String = r.try_get(column)?;
    parse(&text).ok_or_else(|| corrupt(column))
}

fn provider_row(r: &PgRow) -> Result<Provider> {
    Ok(Provider {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        provider_type: word(r, "type", ProviderType::parse)?,
        status: word(r, "status", ProviderStatus::parse)?,
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
        model_type: word(r, "model_type", ModelType::parse)?,
        version: r.try_get("version")?,
        capabilities: serde_json::from_value(caps).map_err(|_| corrupt("capabilities"))?,
        status: word(r, "status", ModelStatus::parse)?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
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
    .bind(spec.provider_type.as_str())
    .bind(spec.status.as_str())
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
    .bind(spec.model_type.as_str())
    .bind(&spec.version)
    .bind(serde_json::json!(spec.capabilities))
    .bind(spec.status.as_str())
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

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

async fn feature_id(tx: &mut Tx, name: &str) -> Result<Uuid> {
    sqlx::query_scalar("SELECT id FROM ai_features WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::feature(name).into())
}

async fn experiment(tx: &mut Tx, id: Uuid) -> Result<Experiment> {
    let row = sqlx::query(&format!("{EXPERIMENT_SELECT} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::experiment(id))?;
    experiment_row(&row)
}

const BUDGET_COLUMNS: &str = "id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at, channels";

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
            channels: r.try_get::<Json<Vec<Uuid>>, _>("channels")?.0,
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
