//! Spending budgets, on SQLite ([`BudgetStore`]).

use super::alerts;
use super::*;
use tally_domain::store::BudgetStore;

#[async_trait]
impl BudgetStore for SqliteConfigStore {
    async fn create_budget(&self, spec: BudgetSpec, change: &Change) -> StoreResult<Budget> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            alerts::channels_exist(&tx, &spec.channels)?;
            let id = Uuid::now_v7().to_string();
            tx.execute(
                "INSERT INTO ai_spending_budgets (id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at, channels)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
                params![id, spec.name, spec.scope.as_str(), spec.scope_value, spec.period.as_str(), spec.time_zone, spec.amount_micros, json_text(&spec.thresholds_percent)?, spec.is_active, ts(change.at), json_text(&spec.channels)?],
            )?;
            let budget = tx.query_row(&format!("{BUDGET_SELECT} WHERE id = ?1"), params![id], budget_row)?;
            insert_audit(&tx, &change.on("create", None, Some(&budget)))?;
            tx.commit()?;
            Ok(budget)
        })
        .await
    }

    async fn update_budget(
        &self,
        id: Uuid,
        spec: BudgetSpec,
        change: &Change,
    ) -> StoreResult<Budget> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = budget(&tx, id)?;
            alerts::channels_exist(&tx, &spec.channels)?;
            tx.execute(
                "UPDATE ai_spending_budgets SET name = ?2, scope = ?3, scope_value = ?4, period_type = ?5, time_zone = ?6, amount_micros = ?7, thresholds = ?8, is_active = ?9, updated_at = ?10, channels = ?11 WHERE id = ?1",
                params![id.to_string(), spec.name, spec.scope.as_str(), spec.scope_value, spec.period.as_str(), spec.time_zone, spec.amount_micros, json_text(&spec.thresholds_percent)?, spec.is_active, ts(change.at), json_text(&spec.channels)?],
            )?;
            let after = budget(&tx, id)?;
            match change.upserted(Some(&before), &after) {
                Some(entry) => {
                    insert_audit(&tx, &entry)?;
                    tx.commit()?;
                    Ok(after)
                }
                None => Ok(before),
            }
        })
        .await
    }

    async fn delete_budget(&self, id: Uuid, change: &Change) -> StoreResult<Budget> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = budget(&tx, id)?;
            tx.execute(
                "DELETE FROM ai_spending_budgets WHERE id = ?1",
                params![id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&before), None))?;
            tx.commit()?;
            Ok(before)
        })
        .await
    }

    async fn list_budgets(&self) -> StoreResult<Vec<Budget>> {
        self.with(|c| {
            let mut stmt =
                c.prepare(&format!("{BUDGET_SELECT} ORDER BY name, created_at, rowid"))?;
            let rows = stmt
                .query_map([], budget_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}
