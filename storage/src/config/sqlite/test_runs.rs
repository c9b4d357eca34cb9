//! Test runs, on SQLite ([`TestRunStore`]): one JSON document per run.

use super::*;
use tally_domain::config::TestRun;
use tally_domain::store::TestRunStore;

fn run_column(r: &Row) -> rusqlite::Result<TestRun> {
    json_column(&r.get::<_, String>(0)?, "test run")
}

#[async_trait]
impl TestRunStore for SqliteConfigStore {
    async fn create_test_run(&self, run: &TestRun) -> StoreResult<()> {
        let (id, prompt, at, doc) = (
            run.id.to_string(),
            run.prompt_id.map(|p| p.to_string()),
            ts(run.created_at),
            json_text(run),
        );
        self.with(move |c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO ai_test_runs (id, prompt_id, created_at, run) VALUES (?1, ?2, ?3, ?4)",
                params![id, prompt, at, doc?],
            )?;
            if inserted == 0 {
                return Err(Failure::Conflict(format!("test run {id} exists")));
            }
            Ok(())
        })
        .await
    }

    async fn save_test_run(&self, run: &TestRun) -> StoreResult<()> {
        let (id, doc) = (run.id.to_string(), json_text(run));
        self.with(move |c| {
            let updated = c.execute(
                "UPDATE ai_test_runs SET run = ?2 WHERE id = ?1",
                params![id, doc?],
            )?;
            if updated == 0 {
                return Err(missing::test_run(&id).into());
            }
            Ok(())
        })
        .await
    }

    async fn test_run(&self, id: Uuid) -> StoreResult<Option<TestRun>> {
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT run FROM ai_test_runs WHERE id = ?1",
                params![id.to_string()],
                run_column,
            )
            .optional()?)
        })
        .await
    }

    async fn list_test_runs(
        &self,
        prompt_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<TestRun>> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT run FROM ai_test_runs WHERE ?1 IS NULL OR prompt_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![prompt_id.map(|p| p.to_string()), limit], run_column)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}
