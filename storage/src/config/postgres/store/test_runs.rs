//! Test runs, on Postgres ([`TestRunStore`]): one JSONB document per run, and its summary
//! beside it for listings.

use super::*;
use tally_domain::config::{TestRun, TestRunSummary};
use tally_domain::store::TestRunStore;

#[async_trait]
impl TestRunStore for PostgresConfigStore {
    async fn create_test_run(&self, run: &TestRun) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let inserted = sqlx::query(
                "INSERT INTO ai_test_runs (id, prompt_id, created_at, run, summary) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(run.id)
            .bind(run.prompt_id)
            .bind(run.created_at)
            .bind(Json(run))
            .bind(Json(run.summary()))
            .execute(&self.pool)
            .await?
            .rows_affected();
            if inserted == 0 {
                return Err(Failure::Conflict(format!("test run {} exists", run.id)));
            }
            Ok(())
        })
        .await
    }

    async fn save_test_run(&self, run: &TestRun) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let updated =
                sqlx::query("UPDATE ai_test_runs SET run = $2, summary = $3 WHERE id = $1")
                    .bind(run.id)
                    .bind(Json(run))
                    .bind(Json(run.summary()))
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
            if updated == 0 {
                return Err(missing::test_run(run.id).into());
            }
            Ok(())
        })
        .await
    }

    async fn test_run(&self, id: Uuid) -> StoreResult<Option<TestRun>> {
        seam(async || -> Result<Option<TestRun>> {
            sqlx::query("SELECT run FROM ai_test_runs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .map(|r| Ok(r.try_get::<Json<TestRun>, _>("run")?.0))
                .transpose()
        })
        .await
    }

    async fn list_test_runs(
        &self,
        prompt_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<TestRunSummary>> {
        seam(async || -> Result<Vec<TestRunSummary>> {
            let rows = sqlx::query(
                "SELECT summary FROM ai_test_runs WHERE $1::uuid IS NULL OR prompt_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(prompt_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| Ok(r.try_get::<Json<TestRunSummary>, _>("summary")?.0))
                .collect()
        })
        .await
    }
}
