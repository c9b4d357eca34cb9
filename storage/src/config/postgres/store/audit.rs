//! The audit trail, on Postgres ([`AuditTrail`]).

use super::*;
use tally_domain::store::{AuditQuery, AuditTrail};

#[async_trait]
impl AuditTrail for PostgresConfigStore {
    #[instrument(name = "postgres.record_operation", skip_all, err)]
    async fn record_operation(&self, entry: AuditSpec) -> StoreResult<()> {
        seam(async || -> Result<()> {
            let mut tx = self.pool.begin().await?;
            insert_audit(&mut tx, &entry).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        seam(async || -> Result<Vec<AuditEntry>> {
            all(
                sqlx::query(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE ($1::timestamptz IS NULL OR at < $1) \
                     AND ($3::text IS NULL OR actor = $3) AND ($4::text IS NULL OR action = $4) \
                     AND ($5::text IS NULL OR resource = $5 OR left(resource, length($5) + 1) = $5 || ':') \
                     AND ($6::uuid IS NULL OR (at, seq) < (SELECT at, seq FROM audit_log WHERE id = $6)) \
                     ORDER BY at DESC, seq DESC LIMIT $2"
                ))
                .bind(query.before)
                .bind(i64::from(query.limit))
                .bind(&query.actor)
                .bind(&query.action)
                .bind(&query.resource)
                .bind(query.before_entry)
                .fetch_all(&self.pool)
                .await?,
                audit_row,
            )
        })
        .await
    }
}

const AUDIT_COLUMNS: &str = "id, at, actor, actor_key_id, action, resource, before, after";

fn audit_row(r: &PgRow) -> Result<AuditEntry> {
    Ok(AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        actor: r.try_get("actor")?,
        actor_key_id: r.try_get("actor_key_id")?,
        action: r.try_get("action")?,
        resource: r.try_get("resource")?,
        before: r.try_get("before")?,
        after: r.try_get("after")?,
    })
}
