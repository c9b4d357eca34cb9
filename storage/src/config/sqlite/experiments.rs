//! Experiments and their transitions, on SQLite ([`ExperimentStore`]).

use super::*;
use tally_domain::store::ExperimentStore;

#[async_trait]
impl ExperimentStore for SqliteConfigStore {
    async fn create_experiment(
        &self,
        spec: ExperimentSpec,
        change: &Change,
    ) -> StoreResult<Experiment> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let feature_id = feature_id(&tx, &spec.feature)?;
            let id = Uuid::now_v7().to_string();
            tx.execute(
                "INSERT INTO ai_experiments (id, name, description, feature_id, experiment_type, variants, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'draft', ?7, ?7)",
                params![id, spec.name, spec.description, feature_id, spec.experiment_type.as_str(), json_text(&spec.variants)?, ts(change.at)],
            )?;
            let created = tx.query_row(&format!("{EXPERIMENT_SELECT} WHERE e.id = ?1"), params![id], experiment_row)?;
            insert_audit(&tx, &change.on("create", None, Some(&created)))?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn list_experiments(&self) -> StoreResult<Vec<Experiment>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "{EXPERIMENT_SELECT} ORDER BY e.created_at DESC, e.rowid DESC"
            ))?;
            let rows = stmt
                .query_map([], experiment_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn transition_experiment(
        &self,
        id: Uuid,
        to: ExperimentStatus,
        change: &Change,
    ) -> StoreResult<Experiment> {
        let change = change.clone();
        let at = change.at;
        self.with(move |c| {
            let tx = c.transaction()?;
            let current = tx
                .query_row(&format!("{EXPERIMENT_SELECT} WHERE e.id = ?1"), params![id.to_string()], experiment_row)
                .optional()?
                .ok_or_else(|| missing::experiment(id))?;
            let (started, ended) = current.moved_to(to, at)?;
            tx.execute(
                "UPDATE ai_experiments SET status = ?2, start_date = ?3, end_date = ?4, updated_at = ?5 WHERE id = ?1",
                params![id.to_string(), to.as_str(), started.map(ts), ended.map(ts), ts(at)],
            )?;
            let updated = tx.query_row(&format!("{EXPERIMENT_SELECT} WHERE e.id = ?1"), params![id.to_string()], experiment_row)?;
            insert_audit(&tx, &change.on("status", Some(&current), Some(&updated)))?;
            tx.commit()?;
            Ok(updated)
        })
        .await
    }
}

const EXPERIMENT_SELECT: &str = "SELECT e.id, e.name, e.description, f.name, e.experiment_type, e.variants, e.status, e.start_date, e.end_date, e.created_at, e.updated_at FROM ai_experiments e JOIN ai_features f ON f.id = e.feature_id";

fn experiment_row(r: &Row) -> rusqlite::Result<Experiment> {
    let kind: String = r.get(4)?;
    let status: String = r.get(6)?;
    let started: Option<String> = r.get(7)?;
    let ended: Option<String> = r.get(8)?;
    Ok(Experiment {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        spec: ExperimentSpec {
            name: r.get(1)?,
            description: r.get(2)?,
            feature: r.get(3)?,
            experiment_type: ExperimentType::parse(&kind)
                .ok_or_else(|| conversion("experiment type"))?,
            variants: json_column(&r.get::<_, String>(5)?, "experiment variants")?,
        },
        status: ExperimentStatus::parse(&status).ok_or_else(|| conversion("experiment status"))?,
        started_at: started.as_deref().map(parse_ts).transpose()?,
        ended_at: ended.as_deref().map(parse_ts).transpose()?,
        created_at: parse_ts(&r.get::<_, String>(9)?)?,
        updated_at: parse_ts(&r.get::<_, String>(10)?)?,
    })
}
