//! Prompts and their versions, on SQLite ([`PromptStore`]).

use super::*;
use tally_domain::store::PromptStore;

#[async_trait]
impl PromptStore for SqliteConfigStore {
    async fn create_prompt(
        &self,
        spec: PromptSpec,
        change: &Change,
    ) -> StoreResult<(Prompt, PromptVersion)> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let taken: Option<String> = tx
                .query_row("SELECT id FROM ai_prompts WHERE name = ?1", params![spec.name], |r| r.get(0))
                .optional()?;
            if taken.is_some() {
                return Err(rules::name_taken("prompt", &spec.name).into());
            }
            let feature_id = spec.feature.as_deref().map(|f| feature_id(&tx, f)).transpose()?;
            let id = Uuid::now_v7().to_string();
            let at = ts(spec.content.at);
            tx.execute(
                "INSERT INTO ai_prompts (id, name, description, feature_id, tags, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![id, spec.name, spec.description, feature_id, json_text(&spec.tags)?, at],
            )?;
            insert_version(&tx, &id, 1, &spec.content, feature_id.as_deref())?;
            let prompt = tx.query_row(&format!("{PROMPT_SELECT} WHERE p.id = ?1"), params![id], prompt_row)?;
            let version = tx.query_row(&format!("{VERSION_SELECT} WHERE prompt_id = ?1 AND version = 1"), params![id], version_row)?;
            insert_audit(&tx, &prompt_created(&change, &prompt, &version))?;
            tx.commit()?;
            Ok((prompt, version))
        })
        .await
    }

    async fn list_prompts(&self) -> StoreResult<Vec<Prompt>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{PROMPT_SELECT} ORDER BY p.name"))?;
            let rows = stmt
                .query_map([], prompt_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_prompt_version(
        &self,
        prompt: Uuid,
        content: PromptContent,
        change: &Change,
    ) -> StoreResult<(PromptVersion, bool)> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let id = prompt.to_string();
            let feature_id: Option<String> = tx
                .query_row(
                    "SELECT feature_id FROM ai_prompts WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| missing::prompt(prompt))?;
            let latest = tx.query_row(
                &format!("{VERSION_SELECT} WHERE prompt_id = ?1 ORDER BY version DESC LIMIT 1"),
                params![id],
                version_row,
            )?;
            if latest.content == content.content && latest.variables == content.variables {
                return Ok((latest, false));
            }
            let next = latest.version + 1;
            insert_version(&tx, &id, next, &content, feature_id.as_deref())?;
            tx.execute(
                "UPDATE ai_prompts SET updated_at = ?2 WHERE id = ?1",
                params![id, ts(content.at)],
            )?;
            let version = tx.query_row(
                &format!("{VERSION_SELECT} WHERE prompt_id = ?1 AND version = ?2"),
                params![id, next],
                version_row,
            )?;
            insert_audit(&tx, &change.on("create", None, Some(&version)))?;
            tx.commit()?;
            Ok((version, true))
        })
        .await
    }

    async fn prompt_versions(&self, prompt: Uuid) -> StoreResult<Vec<PromptVersion>> {
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{VERSION_SELECT} WHERE prompt_id = ?1 ORDER BY version"
            ))?;
            let rows = stmt
                .query_map(params![prompt.to_string()], version_row)?
                .collect::<Result<Vec<_>, _>>()?;
            if rows.is_empty() {
                return Err(missing::prompt(prompt).into());
            }
            Ok(rows)
        })
        .await
    }

    async fn set_prompt_status(
        &self,
        prompt: Uuid,
        version: i32,
        status: PromptStatus,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = prompt_version(&tx, prompt, version)?;
            rules::status_settable(&current, status)?;
            tx.execute(
                "UPDATE ai_prompt_versions SET status = ?2 WHERE id = ?1",
                params![current.id.to_string(), status.as_str()],
            )?;
            let updated = prompt_version(&tx, prompt, version)?;
            if let Some(entry) = changed(&change, "status", &current, &updated) {
                insert_audit(&tx, &entry)?;
                tx.commit()?;
            }
            Ok(updated)
        })
        .await
    }

    async fn activate_prompt_version(
        &self,
        prompt: Uuid,
        version: i32,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = prompt_version(&tx, prompt, version)?;
            let feature_id: Option<String> = tx.query_row(
                "SELECT feature_id FROM ai_prompts WHERE id = ?1",
                params![prompt.to_string()],
                |r| r.get(0),
            )?;
            let feature_id = rules::activatable(&current, feature_id)?;
            tx.execute(
                "UPDATE ai_prompt_versions SET is_active = 0 WHERE feature_id = ?1 AND is_active = 1",
                params![feature_id],
            )?;
            tx.execute(
                "UPDATE ai_prompt_versions SET is_active = 1, feature_id = ?2 WHERE id = ?1",
                params![current.id.to_string(), feature_id],
            )?;
            let updated = prompt_version(&tx, prompt, version)?;
            if let Some(entry) = changed(&change, "activate", &current, &updated) {
                insert_audit(&tx, &entry)?;
                tx.commit()?;
            }
            Ok(updated)
        })
        .await
    }
}

fn insert_version(
    conn: &Connection,
    prompt_id: &str,
    version: i32,
    content: &PromptContent,
    feature_id: Option<&str>,
) -> Result<()> {
    conn.execute(
        "INSERT INTO ai_prompt_versions (id, prompt_id, version, content, variables, status, is_active, feature_id, created_by, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, 'draft', 0, ?6, ?7, ?8)",
        params![
            Uuid::now_v7().to_string(),
            prompt_id,
            version,
            content.content,
            json_text(&content.variables)?,
            feature_id,
            content.created_by,
            ts(content.at)
        ],
    )?;
    Ok(())
}

fn prompt_version(conn: &Connection, prompt: Uuid, version: i32) -> Result<PromptVersion> {
    conn.query_row(
        &format!("{VERSION_SELECT} WHERE prompt_id = ?1 AND version = ?2"),
        params![prompt.to_string(), version],
        version_row,
    )
    .optional()?
    .ok_or_else(|| missing::prompt_version(prompt, version).into())
}

const PROMPT_SELECT: &str = "SELECT p.id, p.name, p.description, f.name, p.tags,
    (SELECT MAX(v.version) FROM ai_prompt_versions v WHERE v.prompt_id = p.id),
    (SELECT v.version FROM ai_prompt_versions v WHERE v.prompt_id = p.id AND v.is_active = 1),
    p.created_at, p.updated_at
    FROM ai_prompts p LEFT JOIN ai_features f ON f.id = p.feature_id";

fn prompt_row(r: &Row) -> rusqlite::Result<Prompt> {
    Ok(Prompt {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        name: r.get(1)?,
        description: r.get(2)?,
        feature: r.get(3)?,
        tags: json_column(&r.get::<_, String>(4)?, "prompt tags")?,
        latest_version: r.get(5)?,
        active_version: r.get(6)?,
        created_at: parse_ts(&r.get::<_, String>(7)?)?,
        updated_at: parse_ts(&r.get::<_, String>(8)?)?,
    })
}

const VERSION_SELECT: &str = "SELECT id, prompt_id, version, content, variables, status, is_active, created_by, created_at FROM ai_prompt_versions";

fn version_row(r: &Row) -> rusqlite::Result<PromptVersion> {
    let status: String = r.get(5)?;
    Ok(PromptVersion {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        prompt_id: parse_uuid(&r.get::<_, String>(1)?)?,
        version: r.get(2)?,
        content: r.get(3)?,
        variables: json_column(&r.get::<_, String>(4)?, "prompt variables")?,
        status: PromptStatus::parse(&status).ok_or_else(|| conversion("prompt status"))?,
        is_active: r.get(6)?,
        created_by: r.get(7)?,
        created_at: parse_ts(&r.get::<_, String>(8)?)?,
    })
}
