//! Test cases of prompts, on Postgres ([`TestCaseStore`]).

use super::*;
use tally_domain::config::{CheckKind, TestCase, TestCaseSpec};
use tally_domain::store::TestCaseStore;

const TEST_CASE_SELECT: &str = "SELECT t.id, t.name, t.description, t.prompt_id, t.variables, t.check_kind, t.expected, f.name AS feature, t.created_at, t.updated_at FROM ai_test_cases t JOIN ai_prompts p ON p.id = t.prompt_id LEFT JOIN ai_features f ON f.id = p.feature_id";

fn test_case_row(r: &PgRow) -> Result<TestCase> {
    let check: String = r.try_get("check_kind")?;
    Ok(TestCase {
        id: r.try_get("id")?,
        spec: TestCaseSpec {
            name: r.try_get("name")?,
            description: r.try_get("description")?,
            prompt_id: r.try_get("prompt_id")?,
            variables: r
                .try_get::<Json<std::collections::BTreeMap<String, String>>, _>("variables")?
                .0,
            check: CheckKind::parse(&check).ok_or_else(|| corrupt("test case check"))?,
            expected: r
                .try_get::<Option<Json<serde_json::Value>>, _>("expected")?
                .map(|j| j.0),
        },
        feature: r.try_get("feature")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn test_case(tx: &mut Tx, id: Uuid) -> Result<TestCase> {
    let row = sqlx::query(&format!("{TEST_CASE_SELECT} WHERE t.id = $1"))
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::test_case(id))?;
    test_case_row(&row)
}

/// `NotFound` unless the prompt exists.
async fn prompt_exists(tx: &mut Tx, id: Uuid) -> Result<()> {
    sqlx::query_scalar::<_, i32>("SELECT 1 FROM ai_prompts WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::prompt(id))?;
    Ok(())
}

const INSERT: &str = "INSERT INTO ai_test_cases (id, name, description, prompt_id, variables, check_kind, expected, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)";

const UPDATE: &str = "UPDATE ai_test_cases SET name = $2, description = $3, prompt_id = $4, variables = $5, check_kind = $6, expected = $7, updated_at = $8 WHERE id = $1";

/// Runs `sql` ([`INSERT`] or [`UPDATE`]: the same parameters) for the case `id` at `at`.
async fn save(
    tx: &mut Tx,
    sql: &str,
    id: Uuid,
    spec: &TestCaseSpec,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(sql)
        .bind(id)
        .bind(&spec.name)
        .bind(&spec.description)
        .bind(spec.prompt_id)
        .bind(Json(&spec.variables))
        .bind(spec.check.as_str())
        .bind(spec.expected.as_ref().map(Json))
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[async_trait]
impl TestCaseStore for PostgresConfigStore {
    async fn list_test_cases(&self) -> StoreResult<Vec<TestCase>> {
        seam(async || -> Result<Vec<TestCase>> {
            all(
                sqlx::query(&format!("{TEST_CASE_SELECT} ORDER BY t.created_at, t.seq"))
                    .fetch_all(&self.pool)
                    .await?,
                test_case_row,
            )
        })
        .await
    }

    #[instrument(name = "postgres.create_test_case", skip_all, err)]
    async fn create_test_case(&self, spec: TestCaseSpec, change: &Change) -> StoreResult<TestCase> {
        seam(async || -> Result<TestCase> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            prompt_exists(&mut tx, spec.prompt_id).await?;
            let id = Uuid::now_v7();
            save(&mut tx, INSERT, id, &spec, change.at).await?;
            let created = test_case(&mut tx, id).await?;
            commit_audited(tx, change, "create", None, Some(&created)).await?;
            Ok(created)
        })
        .await
    }

    #[instrument(name = "postgres.update_test_case", skip_all, err)]
    async fn update_test_case(
        &self,
        id: Uuid,
        spec: TestCaseSpec,
        change: &Change,
    ) -> StoreResult<TestCase> {
        seam(async || -> Result<TestCase> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT id FROM ai_test_cases WHERE id = $1 FOR UPDATE")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let before = test_case(&mut tx, id).await?;
            prompt_exists(&mut tx, spec.prompt_id).await?;
            save(&mut tx, UPDATE, id, &spec, change.at).await?;
            let after = test_case(&mut tx, id).await?;
            commit_audited(tx, change, "update", Some(&before), Some(&after)).await?;
            Ok(after)
        })
        .await
    }

    #[instrument(name = "postgres.delete_test_case", skip_all, err)]
    async fn delete_test_case(&self, id: Uuid, change: &Change) -> StoreResult<TestCase> {
        seam(async || -> Result<TestCase> {
            let mut tx = self.pool.begin().await?;
            let before = test_case(&mut tx, id).await?;
            sqlx::query("DELETE FROM ai_test_cases WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&before), None).await?;
            Ok(before)
        })
        .await
    }
}
