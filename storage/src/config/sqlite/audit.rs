//! The audit trail, on SQLite ([`AuditTrail`]).

use super::*;
use tally_domain::store::{AuditQuery, AuditTrail};

#[async_trait]
impl AuditTrail for SqliteConfigStore {
    async fn record_operation(&self, entry: AuditSpec) -> StoreResult<()> {
        self.with(move |c| insert_audit(c, &entry)).await
    }

    async fn list_audit(&self, query: &AuditQuery) -> StoreResult<Vec<AuditEntry>> {
        let q = query.clone();
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{AUDIT_SELECT} WHERE (?1 IS NULL OR at < ?1) AND (?3 IS NULL OR actor = ?3) \
                 AND (?4 IS NULL OR action = ?4) \
                 AND (?5 IS NULL OR resource = ?5 OR substr(resource, 1, length(?5) + 1) = ?5 || ':') \
                 AND (?6 IS NULL OR (at, rowid) < (SELECT at, rowid FROM audit_log WHERE id = ?6)) \
                 ORDER BY at DESC, rowid DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(
                    params![
                        q.before.map(ts),
                        q.limit,
                        q.actor,
                        q.action,
                        q.resource,
                        q.before_entry.map(|id| id.to_string())
                    ],
                    audit_row,
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

const AUDIT_SELECT: &str =
    "SELECT id, at, actor, actor_key_id, action, resource, before, after FROM audit_log";

fn audit_row(r: &Row) -> rusqlite::Result<AuditEntry> {
    let key: Option<String> = r.get(3)?;
    let json = |text: Option<String>| -> rusqlite::Result<Option<serde_json::Value>> {
        text.map(|t| json_column(&t, "audit state")).transpose()
    };
    Ok(AuditEntry {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        at: parse_ts(&r.get::<_, String>(1)?)?,
        actor: r.get(2)?,
        actor_key_id: key.as_deref().map(parse_uuid).transpose()?,
        action: r.get(4)?,
        resource: r.get(5)?,
        before: json(r.get(6)?)?,
        after: json(r.get(7)?)?,
    })
}
