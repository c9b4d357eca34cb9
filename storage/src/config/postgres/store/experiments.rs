//! Experiments and their transitions, on Postgres ([`ExperimentStore`]).

use super::*;
use tally_domain::store::ExperimentStore;

#[async_trait]
impl ExperimentStore for PostgresConfigStore {
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
}
