//! Test runs, on SQLite ([`TestRunStore`]): one JSON document per run, and its summary beside
//! it for listings.

use super::*;
use tally_domain::config::{TestRun, TestRunSummary};
use tally_domain::store::TestRunStore;

#[async_trait]
impl TestRunStore for SqliteConfigStore {
    async fn create_test_run(&self, run: &TestRun) -> StoreResult<()> {
        let (id, prompt, at) = (
            run.id.to_string(),
            run.prompt_id.map(|p| p.to_string()),
            ts(run.created_at),
        );
        let docs = json_text(run).and_then(|r| Ok((r, json_text(&run.summary())?)));
        self.with(move |c| {
            let (doc, summary) = docs?;
            let inserted = c.execute(
                "INSERT OR IGNORE INTO ai_test_runs (id, prompt_id, created_at, run, summary) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, prompt, at, doc, summary],
            )?;
            if inserted == 0 {
                return Err(Failure::Conflict(format!("test run {id} exists")));
            }
            Ok(())
        })
        .await
    }

    async fn save_test_run(&self, run: &TestRun) -> StoreResult<()> {
        let id = run.id.to_string();
        let docs = json_text(run).and_then(|r| Ok((r, json_text(&run.summary())?)));
        self.with(move |c| {
            let (doc, summary) = docs?;
            let updated = c.execute(
                "UPDATE ai_test_runs SET run = ?2, summary = ?3 WHERE id = ?1",
                params![id, doc, summary],
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
                |r| json_column(&r.get::<_, String>(0)?, "test run"),
            )
            .optional()?)
        })
        .await
    }

    async fn list_test_runs(
        &self,
        prompt_id: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<TestRunSummary>> {
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT summary FROM ai_test_runs WHERE ?1 IS NULL OR prompt_id = ?1 ORDER BY created_at DESC, rowid DESC LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![prompt_id.map(|p| p.to_string()), limit], |r| {
                    json_column(&r.get::<_, String>(0)?, "test run summary")
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}
