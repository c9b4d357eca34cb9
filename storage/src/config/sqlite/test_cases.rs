//! Test cases of prompts, on SQLite ([`TestCaseStore`]).

use super::*;
use tally_domain::config::{CheckKind, TestCase, TestCaseSpec};
use tally_domain::store::TestCaseStore;

const TEST_CASE_SELECT: &str = "SELECT t.id, t.name, t.description, t.prompt_id, t.variables, t.check_kind, t.expected, f.name, t.created_at, t.updated_at FROM ai_test_cases t JOIN ai_prompts p ON p.id = t.prompt_id LEFT JOIN ai_features f ON f.id = p.feature_id";

fn test_case_row(r: &Row) -> rusqlite::Result<TestCase> {
    let check: String = r.get(5)?;
    let expected: Option<String> = r.get(6)?;
    Ok(TestCase {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        spec: TestCaseSpec {
            name: r.get(1)?,
            description: r.get(2)?,
            prompt_id: parse_uuid(&r.get::<_, String>(3)?)?,
            variables: json_column(&r.get::<_, String>(4)?, "test case variables")?,
            check: CheckKind::parse(&check).ok_or_else(|| conversion("test case check"))?,
            expected: expected
                .as_deref()
                .map(|text| json_column(text, "test case expectation"))
                .transpose()?,
        },
        feature: r.get(7)?,
        created_at: parse_ts(&r.get::<_, String>(8)?)?,
        updated_at: parse_ts(&r.get::<_, String>(9)?)?,
    })
}

fn test_case(c: &Connection, id: &str) -> Result<Option<TestCase>> {
    Ok(c.query_row(
        &format!("{TEST_CASE_SELECT} WHERE t.id = ?1"),
        params![id],
        test_case_row,
    )
    .optional()?)
}

/// `NotFound` unless the prompt exists.
fn prompt_exists(c: &Connection, id: Uuid) -> Result<()> {
    c.query_row(
        "SELECT 1 FROM ai_prompts WHERE id = ?1",
        params![id.to_string()],
        |_| Ok(()),
    )
    .optional()?
    .ok_or_else(|| missing::prompt(id))?;
    Ok(())
}

const INSERT: &str = "INSERT INTO ai_test_cases (id, name, description, prompt_id, variables, check_kind, expected, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)";

const UPDATE: &str = "UPDATE ai_test_cases SET name = ?2, description = ?3, prompt_id = ?4, variables = ?5, check_kind = ?6, expected = ?7, updated_at = ?8 WHERE id = ?1";

/// Runs `sql` ([`INSERT`] or [`UPDATE`]: the same parameters) for the case `id` at `at`.
fn save(c: &Connection, sql: &str, id: &str, spec: &TestCaseSpec, at: DateTime<Utc>) -> Result<()> {
    let expected = spec.expected.as_ref().map(json_text).transpose()?;
    c.execute(
        sql,
        params![
            id,
            spec.name,
            spec.description,
            spec.prompt_id.to_string(),
            json_text(&spec.variables)?,
            spec.check.as_str(),
            expected,
            ts(at)
        ],
    )?;
    Ok(())
}

#[async_trait]
impl TestCaseStore for SqliteConfigStore {
    async fn list_test_cases(&self) -> StoreResult<Vec<TestCase>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{TEST_CASE_SELECT} ORDER BY t.created_at, t.rowid"
            ))?;
            let rows = stmt
                .query_map([], test_case_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_test_case(&self, spec: TestCaseSpec, change: &Change) -> StoreResult<TestCase> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            prompt_exists(&tx, spec.prompt_id)?;
            let id = Uuid::now_v7().to_string();
            save(&tx, INSERT, &id, &spec, change.at)?;
            let created = test_case(&tx, &id)?.ok_or_else(|| missing::test_case(&id))?;
            insert_audit(&tx, &change.on("create", None, Some(&created)))?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn update_test_case(
        &self,
        id: Uuid,
        spec: TestCaseSpec,
        change: &Change,
    ) -> StoreResult<TestCase> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let key = id.to_string();
            let before = test_case(&tx, &key)?.ok_or_else(|| missing::test_case(id))?;
            prompt_exists(&tx, spec.prompt_id)?;
            save(&tx, UPDATE, &key, &spec, change.at)?;
            let after = test_case(&tx, &key)?.ok_or_else(|| missing::test_case(id))?;
            insert_audit(&tx, &change.on("update", Some(&before), Some(&after)))?;
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    async fn delete_test_case(&self, id: Uuid, change: &Change) -> StoreResult<TestCase> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let key = id.to_string();
            let before = test_case(&tx, &key)?.ok_or_else(|| missing::test_case(id))?;
            tx.execute("DELETE FROM ai_test_cases WHERE id = ?1", params![key])?;
            insert_audit(&tx, &change.on("delete", Some(&before), None))?;
            tx.commit()?;
            Ok(before)
        })
        .await
    }
}
