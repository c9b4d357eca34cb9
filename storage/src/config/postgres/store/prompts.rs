//! Prompts and their versions, on Postgres ([`PromptStore`]).

use super::*;
use tally_domain::store::PromptStore;

#[async_trait]
impl PromptStore for PostgresConfigStore {
    #[instrument(name = "postgres.create_prompt", skip_all, fields(prompt = %spec.name), err)]
    async fn create_prompt(
        &self,
        spec: PromptSpec,
        change: &Change,
    ) -> StoreResult<(Prompt, PromptVersion)> {
        seam(async || -> Result<(Prompt, PromptVersion)> {
            let mut tx = self.pool.begin().await?;
            let taken: Option<Uuid> = sqlx::query_scalar("SELECT id FROM ai_prompts WHERE name = $1")
                .bind(&spec.name)
                .fetch_optional(&mut *tx)
                .await?;
            if taken.is_some() {
                return Err(rules::name_taken("prompt", &spec.name).into());
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
            insert_audit(&mut tx, &prompt_created(change, &prompt, &version)).await?;
            tx.commit().await?;
            Ok((prompt, version))
        })
        .await
    }

    async fn list_prompts(&self) -> StoreResult<Vec<Prompt>> {
        seam(async || -> Result<Vec<Prompt>> {
            all(
                sqlx::query(&format!("{PROMPT_SELECT} ORDER BY p.name"))
                    .fetch_all(&self.pool)
                    .await?,
                prompt_row,
            )
        })
        .await
    }

    #[instrument(name = "postgres.add_prompt_version", skip_all, err)]
    async fn add_prompt_version(
        &self,
        prompt: Uuid,
        content: PromptContent,
        change: &Change,
    ) -> StoreResult<(PromptVersion, bool)> {
        seam(async || -> Result<(PromptVersion, bool)> {
            let mut tx = self.pool.begin().await?;
            let feature_id: Option<Uuid> =
                sqlx::query_scalar("SELECT feature_id FROM ai_prompts WHERE id = $1 FOR UPDATE")
                    .bind(prompt)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| missing::prompt(prompt))?;
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
            commit_audited(tx, change, "create", None, Some(&version)).await?;
            Ok((version, true))
        })
        .await
    }

    async fn prompt_versions(&self, prompt: Uuid) -> StoreResult<Vec<PromptVersion>> {
        seam(async || -> Result<Vec<PromptVersion>> {
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
                return Err(missing::prompt(prompt).into());
            }
            Ok(rows)
        })
        .await
    }

    #[instrument(name = "postgres.set_prompt_status", skip_all, err)]
    async fn set_prompt_status(
        &self,
        prompt: Uuid,
        version: i32,
        status: PromptStatus,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        seam(async || -> Result<PromptVersion> {
            let mut tx = self.pool.begin().await?;
            lock_prompt(&mut tx, prompt).await?;
            let current = prompt_version(&mut tx, prompt, version).await?;
            rules::status_settable(&current, status)?;
            sqlx::query("UPDATE ai_prompt_versions SET status = $2 WHERE id = $1")
                .bind(current.id)
                .bind(status.as_str())
                .execute(&mut *tx)
                .await?;
            let updated = prompt_version(&mut tx, prompt, version).await?;
            if let Some(entry) = changed(change, "status", &current, &updated) {
                insert_audit(&mut tx, &entry).await?;
                tx.commit().await?;
            }
            Ok(updated)
        })
        .await
    }

    #[instrument(name = "postgres.activate_prompt_version", skip_all, err)]
    async fn activate_prompt_version(
        &self,
        prompt: Uuid,
        version: i32,
        change: &Change,
    ) -> StoreResult<PromptVersion> {
        seam(async || -> Result<PromptVersion> {
            let mut tx = self.pool.begin().await?;
            lock_prompt(&mut tx, prompt).await?;
            let current = prompt_version(&mut tx, prompt, version).await?;
            let feature_id: Option<Uuid> =
                sqlx::query_scalar("SELECT feature_id FROM ai_prompts WHERE id = $1")
                    .bind(prompt)
                    .fetch_one(&mut *tx)
                    .await?;
            let feature_id = rules::activatable(&current, feature_id)?;
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
            if let Some(entry) = changed(change, "activate", &current, &updated) {
                insert_audit(&mut tx, &entry).await?;
                tx.commit().await?;
            }
            Ok(updated)
        })
        .await
    }
}

/// Locks the prompt's row: changes to its versions queue behind this transaction.
async fn lock_prompt(tx: &mut Tx, prompt: Uuid) -> Result<()> {
    sqlx::query("SELECT id FROM ai_prompts WHERE id = $1 FOR UPDATE")
        .bind(prompt)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| missing::prompt(prompt))?;
    Ok(())
}

async fn insert_version(
    tx: &mut Tx,
    prompt: Uuid,
    version: i32,
    content: &PromptContent,
    feature_id: Option<Uuid>,
) -> Result<()> {
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

async fn prompt_version(tx: &mut Tx, prompt: Uuid, version: i32) -> Result<PromptVersion> {
    let row = sqlx::query(&format!(
        "{VERSION_SELECT} WHERE prompt_id = $1 AND version = $2"
    ))
    .bind(prompt)
    .bind(version)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| missing::prompt_version(prompt, version))?;
    version_row(&row)
}

const PROMPT_SELECT: &str = "SELECT p.id, p.name, p.description, f.name AS feature, p.tags,
    (SELECT MAX(v.version) FROM ai_prompt_versions v WHERE v.prompt_id = p.id) AS latest_version,
    (SELECT v.version FROM ai_prompt_versions v WHERE v.prompt_id = p.id AND v.is_active) AS active_version,
    p.created_at, p.updated_at
    FROM ai_prompts p LEFT JOIN ai_features f ON f.id = p.feature_id";

fn prompt_row(r: &PgRow) -> Result<Prompt> {
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

fn version_row(r: &PgRow) -> Result<PromptVersion> {
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
