//! Spending budgets, on Postgres ([`BudgetStore`]).

use super::alerts;
use super::*;
use tally_domain::store::BudgetStore;

#[async_trait]
impl BudgetStore for PostgresConfigStore {
    #[instrument(name = "postgres.create_budget", skip_all, err)]
    async fn create_budget(&self, spec: BudgetSpec, change: &Change) -> StoreResult<Budget> {
        seam(async || -> Result<Budget> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            alerts::channels_exist(&mut tx, &spec.channels).await?;
            let row = sqlx::query(&format!(
                "INSERT INTO ai_spending_budgets (id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at, channels)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11) RETURNING {BUDGET_COLUMNS}"
            ))
            .bind(Uuid::now_v7())
            .bind(&spec.name)
            .bind(spec.scope.as_str())
            .bind(&spec.scope_value)
            .bind(spec.period.as_str())
            .bind(&spec.time_zone)
            .bind(spec.amount_micros)
            .bind(Json(&spec.thresholds_percent))
            .bind(spec.is_active)
            .bind(change.at)
            .bind(Json(&spec.channels))
            .fetch_one(&mut *tx)
            .await?;
            let created = budget_row(&row)?;
            commit_audited(tx, change, "create", None, Some(&created)).await?;
            Ok(created)
        })
        .await
    }

    #[instrument(name = "postgres.update_budget", skip_all, err)]
    async fn update_budget(
        &self,
        id: Uuid,
        spec: BudgetSpec,
        change: &Change,
    ) -> StoreResult<Budget> {
        seam(async || -> Result<Budget> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            let before = budget(&mut tx, id).await?;
            alerts::channels_exist(&mut tx, &spec.channels).await?;
            let row = sqlx::query(&format!(
                "UPDATE ai_spending_budgets SET name = $2, scope = $3, scope_value = $4, period_type = $5, time_zone = $6, amount_micros = $7, thresholds = $8, is_active = $9, updated_at = $10, channels = $11
                 WHERE id = $1 RETURNING {BUDGET_COLUMNS}"
            ))
            .bind(id)
            .bind(&spec.name)
            .bind(spec.scope.as_str())
            .bind(&spec.scope_value)
            .bind(spec.period.as_str())
            .bind(&spec.time_zone)
            .bind(spec.amount_micros)
            .bind(Json(&spec.thresholds_percent))
            .bind(spec.is_active)
            .bind(change.at)
            .bind(Json(&spec.channels))
            .fetch_one(&mut *tx)
            .await?;
            let after = budget_row(&row)?;
            finish_write(tx, change, Write::Upsert, Some(before), after).await
        })
        .await
    }

    #[instrument(name = "postgres.delete_budget", skip_all, err)]
    async fn delete_budget(&self, id: Uuid, change: &Change) -> StoreResult<Budget> {
        seam(async || -> Result<Budget> {
            let mut tx = self.pool.begin().await?;
            let before = budget(&mut tx, id).await?;
            sqlx::query("DELETE FROM ai_spending_budgets WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&before), None).await?;
            Ok(before)
        })
        .await
    }

    async fn list_budgets(&self) -> StoreResult<Vec<Budget>> {
        seam(async || -> Result<Vec<Budget>> {
            all(
                sqlx::query(&format!(
                    "SELECT {BUDGET_COLUMNS} FROM ai_spending_budgets ORDER BY name, created_at, seq"
                ))
                .fetch_all(&self.pool)
                .await?,
                budget_row,
            )
        })
        .await
    }
}
