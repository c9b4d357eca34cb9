//! The configuration store on Postgres; behaviour identical to the SQLite store (the
//! conformance suite in [`crate::conformance`] runs against both).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use tally_schemas::Environment;
use tracing::instrument;
use uuid::Uuid;

use crate::access::{ApiKey, ApiKeySpec, Role};
use crate::config::{
    Assignment, AuditEntry, AuditSpec, Budget, BudgetPeriod, BudgetScope, BudgetSpec, DeploySpec,
    Experiment, ExperimentSpec, ExperimentStatus, ExperimentType, Feature, FeatureSpec,
    FeatureStatus, Model, ModelPrice, ModelSpec, PriceSpec, Prompt, PromptContent, PromptSpec,
    PromptStatus, PromptVersion, Provider, ProviderSpec, Reprice, RepriceSpec,
};
use crate::store::{ConfigStore, StoreError, StoreResult};
use crate::upsert::{taken, Write};
use sqlx::types::Json;

pub struct PostgresConfigStore {
    pool: PgPool,
}

impl PostgresConfigStore {
    /// Wraps a pool whose database has been migrated ([`super::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        PostgresConfigStore { pool }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("stored {what} is invalid"))
}

fn feature_row(r: &PgRow) -> StoreResult<Feature> {
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

fn provider_row(r: &PgRow) -> StoreResult<Provider> {
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

fn model_row(r: &PgRow) -> StoreResult<Model> {
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

fn price_row(r: &PgRow) -> StoreResult<ModelPrice> {
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

fn assignment_row(r: &PgRow) -> StoreResult<Assignment> {
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

fn all<T>(rows: Vec<PgRow>, f: fn(&PgRow) -> StoreResult<T>) -> StoreResult<Vec<T>> {
    rows.iter().map(f).collect()
}

/// Postgres keeps microseconds; so does the SQLite store's text format.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_default()
}

async fn write_feature(pool: &PgPool, spec: &FeatureSpec, mode: Write) -> StoreResult<Feature> {
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
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| taken("feature", &spec.name))?;
    feature_row(&row)
}

async fn write_provider(pool: &PgPool, spec: &ProviderSpec, mode: Write) -> StoreResult<Provider> {
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
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| taken("provider", &spec.name))?;
    provider_row(&row)
}

async fn write_model(pool: &PgPool, spec: &ModelSpec, mode: Write) -> StoreResult<Model> {
    let provider_id: Uuid = sqlx::query_scalar("SELECT id FROM ai_providers WHERE name = $1")
        .bind(&spec.provider)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("provider {}", spec.provider)))?;
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
    .execute(pool)
    .await?;
    if written.rows_affected() == 0 {
        return Err(taken("model", &format!("{}/{}", spec.provider, spec.name)));
    }
    let row = sqlx::query(&format!("{MODEL_SELECT} WHERE p.name = $1 AND m.name = $2"))
        .bind(&spec.provider)
        .bind(&spec.name)
        .fetch_one(pool)
        .await?;
    model_row(&row)
}

async fn model_id(conn: &mut sqlx::PgConnection, provider: &str, model: &str) -> StoreResult<Uuid> {
    sqlx::query_scalar("SELECT m.id FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id WHERE p.name = $1 AND m.name = $2")
        .bind(provider)
        .bind(model)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("model {provider}/{model}")))
}

#[async_trait]
impl ConfigStore for PostgresConfigStore {
    async fn list_features(&self) -> StoreResult<Vec<Feature>> {
        all(
            sqlx::query("SELECT * FROM ai_features ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
            feature_row,
        )
    }

    #[instrument(name = "config.upsert_feature", skip_all, fields(feature = %spec.name), err)]
    async fn upsert_feature(&self, spec: FeatureSpec) -> StoreResult<Feature> {
        write_feature(&self.pool, &spec, Write::Upsert).await
    }

    #[instrument(name = "config.create_feature", skip_all, fields(feature = %spec.name), err)]
    async fn create_feature(&self, spec: FeatureSpec) -> StoreResult<Feature> {
        write_feature(&self.pool, &spec, Write::Create).await
    }

    #[instrument(name = "config.delete_feature", skip(self), err)]
    async fn delete_feature(&self, name: &str) -> StoreResult<Feature> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM ai_features WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("feature {name}")))?;
        let feature = feature_row(&row)?;
        let refs: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM feature_model_assignments WHERE feature_id = $1)
                  + (SELECT COUNT(*) FROM ai_prompts WHERE feature_id = $1)
                  + (SELECT COUNT(*) FROM ai_experiments WHERE feature_id = $1)",
        )
        .bind(feature.id)
        .fetch_one(&mut *tx)
        .await?;
        if refs > 0 {
            return Err(StoreError::Conflict(format!(
                "feature {name} has deployments, prompts or experiments; set its status to inactive instead"
            )));
        }
        sqlx::query("DELETE FROM ai_features WHERE id = $1")
            .bind(feature.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(feature)
    }

    async fn list_providers(&self) -> StoreResult<Vec<Provider>> {
        all(
            sqlx::query("SELECT * FROM ai_providers ORDER BY name")
                .fetch_all(&self.pool)
                .await?,
            provider_row,
        )
    }

    async fn upsert_provider(&self, spec: ProviderSpec) -> StoreResult<Provider> {
        write_provider(&self.pool, &spec, Write::Upsert).await
    }

    async fn create_provider(&self, spec: ProviderSpec) -> StoreResult<Provider> {
        write_provider(&self.pool, &spec, Write::Create).await
    }

    #[instrument(name = "config.delete_provider", skip(self), err)]
    async fn delete_provider(&self, name: &str) -> StoreResult<Provider> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM ai_providers WHERE name = $1 FOR UPDATE")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("provider {name}")))?;
        let provider = provider_row(&row)?;
        let models: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ai_models WHERE provider_id = $1")
                .bind(provider.id)
                .fetch_one(&mut *tx)
                .await?;
        if models > 0 {
            return Err(StoreError::Conflict(format!(
                "provider {name} has {models} model(s); delete them first or set its status to inactive"
            )));
        }
        sqlx::query("DELETE FROM ai_providers WHERE id = $1")
            .bind(provider.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(provider)
    }

    async fn list_models(&self) -> StoreResult<Vec<Model>> {
        all(
            sqlx::query(&format!("{MODEL_SELECT} ORDER BY p.name, m.name"))
                .fetch_all(&self.pool)
                .await?,
            model_row,
        )
    }

    async fn upsert_model(&self, spec: ModelSpec) -> StoreResult<Model> {
        write_model(&self.pool, &spec, Write::Upsert).await
    }

    async fn create_model(&self, spec: ModelSpec) -> StoreResult<Model> {
        write_model(&self.pool, &spec, Write::Create).await
    }

    #[instrument(name = "config.delete_model", skip(self), err)]
    async fn delete_model(&self, id: Uuid) -> StoreResult<Model> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT id FROM ai_models WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("model {id}")))?;
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
        if deployments > 0 {
            return Err(StoreError::Conflict(format!(
                "model {}/{} has been deployed; set its status to deprecated or unavailable instead",
                model.provider, model.name
            )));
        }
        sqlx::query("DELETE FROM ai_models WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(model)
    }

    async fn add_price(&self, spec: PriceSpec) -> StoreResult<ModelPrice> {
        let mut conn = self.pool.acquire().await?;
        let model_id = model_id(&mut conn, &spec.provider, &spec.model).await?;
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
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "model {}/{} already has a price effective from {}",
                spec.provider,
                spec.model,
                spec.effective_from.to_rfc3339()
            )));
        }
        let row = sqlx::query(&format!("{PRICE_SELECT} WHERE x.id = $1"))
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
        price_row(&row)
    }

    async fn add_reprice(&self, spec: RepriceSpec) -> StoreResult<Reprice> {
        spec.check()?;
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
        .execute(&self.pool)
        .await?;
        Ok(spec.into_reprice(id))
    }

    async fn list_reprices(&self) -> StoreResult<Vec<Reprice>> {
        let mut rows = all(
            sqlx::query(
                "SELECT id, provider, model, from_at, requested_at, requested_by, prices FROM model_reprices",
            )
            .fetch_all(&self.pool)
            .await?,
            |r| {
                Ok(Reprice {
                    id: r.try_get("id")?,
                    provider: r.try_get("provider")?,
                    model: r.try_get("model")?,
                    from: r.try_get("from_at")?,
                    requested_at: r.try_get("requested_at")?,
                    requested_by: r.try_get("requested_by")?,
                    prices: r.try_get::<Json<Vec<ModelPrice>>, _>("prices")?.0,
                })
            },
        )?;
        rows.sort_by_key(|r| (r.requested_at, r.id));
        Ok(rows)
    }

    async fn list_prices(&self) -> StoreResult<Vec<ModelPrice>> {
        all(
            sqlx::query(&format!(
                "{PRICE_SELECT} ORDER BY p.name, m.name, x.effective_from"
            ))
            .fetch_all(&self.pool)
            .await?,
            price_row,
        )
    }

    #[instrument(name = "config.deploy", skip_all, fields(feature = %spec.feature, environment = spec.environment.as_str()), err)]
    async fn deploy(&self, spec: DeploySpec) -> StoreResult<Assignment> {
        let mut tx = self.pool.begin().await?;
        let feature_id: Uuid = sqlx::query_scalar("SELECT id FROM ai_features WHERE name = $1")
            .bind(&spec.feature)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("feature {}", spec.feature)))?;
        let model_id = model_id(&mut tx, &spec.provider, &spec.model).await?;
        sqlx::query("UPDATE feature_model_assignments SET is_active = FALSE, deactivated_at = $3 WHERE feature_id = $1 AND environment = $2 AND is_active")
            .bind(feature_id)
            .bind(spec.environment.as_str())
            .bind(spec.at)
            .execute(&mut *tx)
            .await?;
        let id = Uuid::new_v4();
        sqlx::query("INSERT INTO feature_model_assignments (id, feature_id, model_id, environment, is_active, assigned_at, assigned_by) VALUES ($1, $2, $3, $4, TRUE, $5, $6)")
            .bind(id)
            .bind(feature_id)
            .bind(model_id)
            .bind(spec.environment.as_str())
            .bind(spec.at)
            .bind(&spec.assigned_by)
            .execute(&mut *tx)
            .await?;
        let row = sqlx::query(&format!("{ASSIGNMENT_SELECT} WHERE a.id = $1"))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        assignment_row(&row)
    }

    async fn active_assignments(&self) -> StoreResult<Vec<Assignment>> {
        all(
            sqlx::query(&format!(
                "{ASSIGNMENT_SELECT} WHERE a.is_active ORDER BY f.name, a.environment"
            ))
            .fetch_all(&self.pool)
            .await?,
            assignment_row,
        )
    }

    async fn assignment_history(
        &self,
        feature: Option<&str>,
        environment: Option<Environment>,
    ) -> StoreResult<Vec<Assignment>> {
        let rows = sqlx::query(&format!(
            "{ASSIGNMENT_SELECT} WHERE ($1::text IS NULL OR f.name = $1) AND ($2::text IS NULL OR a.environment = $2) ORDER BY a.assigned_at DESC, a.seq DESC"
        ))
        .bind(feature)
        .bind(environment.map(Environment::as_str))
        .fetch_all(&self.pool)
        .await?;
        all(rows, assignment_row)
    }

    #[instrument(name = "postgres.create_prompt", skip_all, fields(prompt = %spec.name), err)]
    async fn create_prompt(&self, spec: PromptSpec) -> StoreResult<(Prompt, PromptVersion)> {
        let mut tx = self.pool.begin().await?;
        let taken: Option<Uuid> = sqlx::query_scalar("SELECT id FROM ai_prompts WHERE name = $1")
            .bind(&spec.name)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            return Err(StoreError::Conflict(format!(
                "a prompt named {} exists",
                spec.name
            )));
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
        tx.commit().await?;
        Ok((prompt, version))
    }

    async fn list_prompts(&self) -> StoreResult<Vec<Prompt>> {
        all(
            sqlx::query(&format!("{PROMPT_SELECT} ORDER BY p.name"))
                .fetch_all(&self.pool)
                .await?,
            prompt_row,
        )
    }

    #[instrument(name = "postgres.add_prompt_version", skip_all, err)]
    async fn add_prompt_version(
        &self,
        prompt: Uuid,
        content: PromptContent,
    ) -> StoreResult<(PromptVersion, bool)> {
        let mut tx = self.pool.begin().await?;
        let feature_id: Option<Uuid> =
            sqlx::query_scalar("SELECT feature_id FROM ai_prompts WHERE id = $1 FOR UPDATE")
                .bind(prompt)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("prompt {prompt}")))?;
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
        tx.commit().await?;
        Ok((version, true))
    }

    async fn prompt_versions(&self, prompt: Uuid) -> StoreResult<Vec<PromptVersion>> {
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
            return Err(StoreError::not_found(format!("prompt {prompt}")));
        }
        Ok(rows)
    }

    #[instrument(name = "postgres.set_prompt_status", skip_all, err)]
    async fn set_prompt_status(
        &self,
        prompt: Uuid,
        version: i32,
        status: PromptStatus,
    ) -> StoreResult<PromptVersion> {
        let mut tx = self.pool.begin().await?;
        let current = prompt_version(&mut tx, prompt, version).await?;
        if current.is_active && status != PromptStatus::Approved {
            return Err(StoreError::Conflict(
                "the active version must stay approved: activate another version first".into(),
            ));
        }
        sqlx::query("UPDATE ai_prompt_versions SET status = $2 WHERE id = $1")
            .bind(current.id)
            .bind(status.as_str())
            .execute(&mut *tx)
            .await?;
        let updated = prompt_version(&mut tx, prompt, version).await?;
        tx.commit().await?;
        Ok(updated)
    }

    #[instrument(name = "postgres.activate_prompt_version", skip_all, err)]
    async fn activate_prompt_version(
        &self,
        prompt: Uuid,
        version: i32,
    ) -> StoreResult<PromptVersion> {
        let mut tx = self.pool.begin().await?;
        let current = prompt_version(&mut tx, prompt, version).await?;
        let feature_id: Option<Uuid> =
            sqlx::query_scalar("SELECT feature_id FROM ai_prompts WHERE id = $1")
                .bind(prompt)
                .fetch_one(&mut *tx)
                .await?;
        let feature_id = feature_id
            .ok_or_else(|| StoreError::invalid("feature", "the prompt belongs to no feature"))?;
        if current.status != PromptStatus::Approved {
            return Err(StoreError::Conflict(format!(
                "only an approved version can be active; version {version} is {}",
                current.status.as_str()
            )));
        }
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
        tx.commit().await?;
        Ok(updated)
    }

    #[instrument(name = "postgres.create_budget", skip_all, err)]
    async fn create_budget(&self, spec: BudgetSpec, at: DateTime<Utc>) -> StoreResult<Budget> {
        spec.validate()?;
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
        .bind(at)
        .fetch_one(&self.pool)
        .await?;
        budget_row(&row)
    }

    #[instrument(name = "postgres.update_budget", skip_all, err)]
    async fn update_budget(
        &self,
        id: Uuid,
        spec: BudgetSpec,
        at: DateTime<Utc>,
    ) -> StoreResult<Budget> {
        spec.validate()?;
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
        .bind(at)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("budget {id}")))?;
        budget_row(&row)
    }

    #[instrument(name = "postgres.delete_budget", skip_all, err)]
    async fn delete_budget(&self, id: Uuid) -> StoreResult<()> {
        let deleted = sqlx::query("DELETE FROM ai_spending_budgets WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::not_found(format!("budget {id}")));
        }
        Ok(())
    }

    async fn list_budgets(&self) -> StoreResult<Vec<Budget>> {
        all(
            sqlx::query(&format!(
                "SELECT {BUDGET_COLUMNS} FROM ai_spending_budgets ORDER BY name, created_at, seq"
            ))
            .fetch_all(&self.pool)
            .await?,
            budget_row,
        )
    }

    #[instrument(name = "postgres.create_experiment", skip_all, err)]
    async fn create_experiment(
        &self,
        spec: ExperimentSpec,
        at: DateTime<Utc>,
    ) -> StoreResult<Experiment> {
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
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let experiment = experiment(&mut tx, id).await?;
        tx.commit().await?;
        Ok(experiment)
    }

    async fn list_experiments(&self) -> StoreResult<Vec<Experiment>> {
        all(
            sqlx::query(&format!(
                "{EXPERIMENT_SELECT} ORDER BY e.created_at DESC, e.seq DESC"
            ))
            .fetch_all(&self.pool)
            .await?,
            experiment_row,
        )
    }

    #[instrument(name = "postgres.transition_experiment", skip_all, err)]
    async fn transition_experiment(
        &self,
        id: Uuid,
        to: ExperimentStatus,
        at: DateTime<Utc>,
    ) -> StoreResult<Experiment> {
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
        tx.commit().await?;
        Ok(updated)
    }

    #[instrument(name = "postgres.record_audit", skip_all, fields(action = %spec.action), err)]
    async fn record_audit(&self, spec: AuditSpec) -> StoreResult<AuditEntry> {
        let row = sqlx::query(&format!(
            "INSERT INTO audit_log (id, at, actor, actor_key_id, action, resource, before, after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {AUDIT_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(spec.at)
        .bind(&spec.actor)
        .bind(spec.actor_key_id)
        .bind(&spec.action)
        .bind(&spec.resource)
        .bind(&spec.before)
        .bind(&spec.after)
        .fetch_one(&self.pool)
        .await?;
        audit_row(&row)
    }

    async fn list_audit(
        &self,
        limit: u32,
        before: Option<DateTime<Utc>>,
    ) -> StoreResult<Vec<AuditEntry>> {
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
    }

    #[instrument(name = "postgres.create_api_key", skip_all, err)]
    async fn create_api_key(&self, spec: ApiKeySpec) -> StoreResult<ApiKey> {
        let row = sqlx::query(&format!(
            "INSERT INTO api_keys (id, name, role, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(Uuid::now_v7())
        .bind(&spec.name)
        .bind(spec.role.as_str())
        .bind(&spec.hash)
        .bind(&spec.prefix)
        .bind(spec.created_at)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict("an API key with this secret exists".into())
            }
            other => other,
        })?;
        api_key_row(&row)
    }

    async fn list_api_keys(&self) -> StoreResult<Vec<ApiKey>> {
        let rows = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, seq"
        ))
        .fetch_all(&self.pool)
        .await?;
        all(rows, api_key_row)
    }

    async fn api_key_by_hash(&self, hash: &str) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
        ))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_key_row).transpose()
    }

    #[instrument(name = "postgres.revoke_api_key", skip_all, err)]
    async fn revoke_api_key(&self, id: Uuid, at: DateTime<Utc>) -> StoreResult<(ApiKey, bool)> {
        let revoked = sqlx::query(&format!(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(id)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = revoked {
            return Ok((api_key_row(&row)?, true));
        }
        let row = sqlx::query(&format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("API key {id}")))?;
        Ok((api_key_row(&row)?, false))
    }
}

const API_KEY_COLUMNS: &str = "id, name, role, prefix, created_at, revoked_at";

fn api_key_row(r: &PgRow) -> StoreResult<ApiKey> {
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

async fn feature_id(tx: &mut Tx, name: &str) -> StoreResult<Uuid> {
    sqlx::query_scalar("SELECT id FROM ai_features WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("feature {name}")))
}

async fn insert_version(
    tx: &mut Tx,
    prompt: Uuid,
    version: i32,
    content: &PromptContent,
    feature_id: Option<Uuid>,
) -> StoreResult<()> {
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

async fn prompt_version(tx: &mut Tx, prompt: Uuid, version: i32) -> StoreResult<PromptVersion> {
    let row = sqlx::query(&format!(
        "{VERSION_SELECT} WHERE prompt_id = $1 AND version = $2"
    ))
    .bind(prompt)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| StoreError::not_found(format!("prompt {prompt} version {version}")))?;
    version_row(&row)
}

async fn experiment(tx: &mut Tx, id: Uuid) -> StoreResult<Experiment> {
    let row = sqlx::query(&format!("{EXPERIMENT_SELECT} WHERE e.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::not_found(format!("experiment {id}")))?;
    experiment_row(&row)
}

const PROMPT_SELECT: &str = "SELECT p.id, p.name, p.description, f.name AS feature, p.tags,
    (SELECT MAX(v.version) FROM ai_prompt_versions v WHERE v.prompt_id = p.id) AS latest_version,
    (SELECT v.version FROM ai_prompt_versions v WHERE v.prompt_id = p.id AND v.is_active) AS active_version,
    p.created_at, p.updated_at
    FROM ai_prompts p LEFT JOIN ai_features f ON f.id = p.feature_id";

fn prompt_row(r: &PgRow) -> StoreResult<Prompt> {
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

fn version_row(r: &PgRow) -> StoreResult<PromptVersion> {
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

fn budget_row(r: &PgRow) -> StoreResult<Budget> {
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

fn experiment_row(r: &PgRow) -> StoreResult<Experiment> {
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
                .try_get::<Json<Vec<crate::config::Variant>>, _>("variants")?
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

fn audit_row(r: &PgRow) -> StoreResult<AuditEntry> {
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
