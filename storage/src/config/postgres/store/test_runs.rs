//! Test runs, on Postgres ([`TestRunStore`]): one JSONB document per run.

use super::*;
use tally_domain::config::TestRun;
use tally_domain::store::TestRunStore;

fn run_row(r: &PgRow) -> Result<TestRun> {
    Ok(r.try_get::<Json<TestRun>, _>("run")?.0)
}

#[async_trait]
impl TestRunStore for PostgresConfigStore {
    async fn create_test_run(&self, run: &TestRun) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let inserted = sqlx::query(
                "INSERT INTO ai_test_runs (id, prompt_id, created_at, run) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(run.id)
            .bind(run.prompt_id)
            .bind(run.created_at)
            .bind(Json(run))
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
            let updated = sqlx::query("UPDATE ai_test_runs SET run = $2 WHERE id = $1")
                .bind(run.id)
                .bind(Json(run))
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
                .as_ref()
                .map(run_row)
                .transpose()
        })
        .await
    }

    async fn list_test_runs(
        &self,
        prompt_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<TestRun>> {
        seam(async || -> Result<Vec<TestRun>> {
            let rows = sqlx::query(
                "SELECT run FROM ai_test_runs WHERE $1::uuid IS NULL OR prompt_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
            )
            .bind(prompt_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            all(rows, run_row)
        })
        .await
    }
}
