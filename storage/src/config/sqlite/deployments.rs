//! Assignments of models to features per environment, with their history, on SQLite ([`DeploymentStore`]).

use super::*;
use tally_domain::store::DeploymentStore;

#[async_trait]
impl DeploymentStore for SqliteConfigStore {
    async fn deploy(&self, spec: DeploySpec, change: &Change) -> StoreResult<Assignment> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let (before, after) = deploy_in(&tx, &spec, &change)?;
            insert_audit(&tx, &change.on("create", before.as_ref(), Some(&after)))?;
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    async fn rollback(
        &self,
        feature: &str,
        environment: Environment,
        change: &Change,
    ) -> StoreResult<Assignment> {
        let feature = feature.to_string();
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            feature_id(&tx, &feature)?;
            let history = {
                let mut stmt = tx.prepare(&format!(
                    "{ASSIGNMENT_SELECT} WHERE f.name = ?1 AND a.environment = ?2 ORDER BY a.assigned_at DESC, a.rowid DESC"
                ))?;
                let rows = stmt
                    .query_map(params![feature, environment.as_str()], assignment_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                rows
            };
            let spec = rollback_target(&feature, environment, &history)?;
            let (before, after) = deploy_in(&tx, &spec, &change)?;
            insert_audit(&tx, &change.on("rollback", before.as_ref(), Some(&after)))?;
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    async fn active_assignments(&self) -> StoreResult<Vec<Assignment>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{ASSIGNMENT_SELECT} WHERE a.is_active = 1 ORDER BY f.name, a.environment"
            ))?;
            let rows = stmt
                .query_map([], assignment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn assignment_history(
        &self,
        feature: Option<&str>,
        environment: Option<Environment>,
    ) -> StoreResult<Vec<Assignment>> {
        let feature = feature.map(str::to_string);
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{ASSIGNMENT_SELECT} WHERE (?1 IS NULL OR f.name = ?1) AND (?2 IS NULL OR a.environment = ?2) ORDER BY a.assigned_at DESC, a.rowid DESC"
            ))?;
            let rows = stmt
                .query_map(params![feature, environment.map(Environment::as_str)], assignment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

const ASSIGNMENT_SELECT: &str = "SELECT a.id, f.name, a.environment, p.name, m.name, a.is_active, a.assigned_at, a.assigned_by FROM feature_model_assignments a JOIN ai_features f ON f.id = a.feature_id JOIN ai_models m ON m.id = a.model_id JOIN ai_providers p ON p.id = m.provider_id";

fn assignment_row(r: &Row) -> rusqlite::Result<Assignment> {
    let env: String = r.get(2)?;
    Ok(Assignment {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        feature: r.get(1)?,
        environment: Environment::parse(&env).ok_or_else(|| conversion("environment"))?,
        provider: r.get(3)?,
        model: r.get(4)?,
        is_active: r.get(5)?,
        assigned_at: parse_ts(&r.get::<_, String>(6)?)?,
        assigned_by: r.get(7)?,
    })
}

/// Deactivates the active assignment of (feature, environment) and inserts the new one, in
/// the caller's transaction; returns both.
fn deploy_in(
    tx: &Connection,
    spec: &DeploySpec,
    change: &Change,
) -> Result<(Option<Assignment>, Assignment)> {
    let feature_id = feature_id(tx, &spec.feature)?;
    let model_id = model_id(tx, &spec.provider, &spec.model)?;
    let env = spec.environment.as_str();
    let before = tx
        .query_row(
            &format!("{ASSIGNMENT_SELECT} WHERE a.feature_id = ?1 AND a.environment = ?2 AND a.is_active = 1"),
            params![feature_id, env],
            assignment_row,
        )
        .optional()?;
    let at = ts(change.at);
    tx.execute(
        "UPDATE feature_model_assignments SET is_active = 0, deactivated_at = ?3 WHERE feature_id = ?1 AND environment = ?2 AND is_active = 1",
        params![feature_id, env, at],
    )?;
    let id = Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO feature_model_assignments (id, feature_id, model_id, environment, is_active, assigned_at, assigned_by) VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6)",
        params![id, feature_id, model_id, env, at, change.actor.name],
    )?;
    let after = tx.query_row(
        &format!("{ASSIGNMENT_SELECT} WHERE a.id = ?1"),
        params![id],
        assignment_row,
    )?;
    Ok((before, after))
}
