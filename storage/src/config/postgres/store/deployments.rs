//! Assignments of models to features per environment, with their history, on Postgres ([`DeploymentStore`]).

use super::*;
use tally_domain::store::DeploymentStore;

#[async_trait]
impl DeploymentStore for PostgresConfigStore {
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

/// The feature's id, its row locked until the transaction ends.
async fn feature_id_for_update(tx: &mut Tx, name: &str) -> Result<Uuid> {
    sqlx::query_scalar("SELECT id FROM ai_features WHERE name = $1 FOR UPDATE")
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::feature(name).into())
}
