//! The embedded configuration store (SQLite, `config.db`), schema in
//! `migrations/sqlite/config.sql`. Writes are transactions; deploy deactivates the previous
//! assignment and activates the new one atomically (a partial unique index enforces one active
//! assignment per feature and environment).

mod alerts;
mod audit;
mod budgets;
mod catalog;
mod deployments;
mod experiments;
mod keys;
mod prompts;
mod test_cases;
mod test_runs;

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};
use tally_schemas::Environment;
use uuid::Uuid;

use crate::failure::{seam_sync, Failure, Result};
use crate::sqlite::{blocking, open};
use crate::upsert::Write;
use tally_domain::access::{ApiKey, ApiKeySpec, Role};
use tally_domain::audit::{changed, price_added, prompt_created, repriced, Audited, Change};
use tally_domain::config::{
    rollback_target, Assignment, AuditEntry, AuditSpec, Budget, BudgetPeriod, BudgetScope,
    BudgetSpec, DeploySpec, Experiment, ExperimentSpec, ExperimentStatus, ExperimentType, Feature,
    FeatureSpec, FeatureStatus, Model, ModelPrice, ModelSpec, ModelStatus, ModelType, PriceSpec,
    Prompt, PromptContent, PromptSpec, PromptStatus, PromptVersion, Provider, ProviderSpec,
    ProviderStatus, ProviderType, Reprice, RepriceSpec,
};
use tally_domain::rules::{self, missing};
use tally_domain::store::StoreResult;

const SCHEMA: &str = include_str!("../../../../migrations/sqlite/config.sql");

pub struct SqliteConfigStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteConfigStore {
    pub fn open(dir: &Path) -> StoreResult<SqliteConfigStore> {
        seam_sync(|| -> Result<SqliteConfigStore> {
            let conn = open(&dir.join("config.db"), 2)?;
            conn.execute_batch(SCHEMA)?;
            upgrade(&conn)?;
            Ok(SqliteConfigStore {
                conn: Arc::new(Mutex::new(conn)),
            })
        })
    }

    /// A create or upsert of a named row, audited (see [`write_audited`]).
    async fn write_named<S, T>(
        &self,
        change: &Change,
        mode: Write,
        spec: S,
        read: fn(&Connection, &S) -> Result<Option<T>>,
        write: fn(&Connection, &S, Write) -> Result<T>,
    ) -> StoreResult<T>
    where
        S: Send + 'static,
        T: Audited + Send + 'static,
    {
        let change = change.clone();
        self.with(move |c| {
            write_audited(
                c,
                &change,
                mode,
                |c| read(c, &spec),
                |c| write(c, &spec, mode),
            )
        })
        .await
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| Failure::Backend("config lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
    }
}

/// Columns added after a table was first created (`CREATE TABLE IF NOT EXISTS` leaves an
/// older table as it was).
fn upgrade(conn: &Connection) -> Result<()> {
    let has_channels: bool = conn.query_row(
        "SELECT COUNT(*) > 0 FROM pragma_table_info('ai_spending_budgets') WHERE name = 'channels'",
        [],
        |r| r.get(0),
    )?;
    if !has_channels {
        conn.execute_batch(
            "ALTER TABLE ai_spending_budgets ADD COLUMN channels TEXT NOT NULL DEFAULT '[]'",
        )?;
    }
    Ok(())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn parse_uuid(text: &str) -> rusqlite::Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn conversion(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Text,
        format!("invalid stored {what}").into(),
    )
}

fn budget(c: &Connection, id: Uuid) -> Result<Budget> {
    c.query_row(
        &format!("{BUDGET_SELECT} WHERE id = ?1"),
        params![id.to_string()],
        budget_row,
    )
    .optional()?
    .ok_or_else(|| missing::budget(id).into())
}

/// Appends an audit entry, in the caller's transaction.
fn insert_audit(c: &Connection, spec: &AuditSpec) -> Result<()> {
    let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    c.execute(
        "INSERT INTO audit_log (id, at, actor, actor_key_id, action, resource, before, after) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            Uuid::now_v7().to_string(),
            ts(spec.at),
            spec.actor,
            spec.actor_key_id.map(|k| k.to_string()),
            spec.action,
            spec.resource,
            json(&spec.before),
            json(&spec.after)
        ],
    )?;
    Ok(())
}

/// A create or upsert of a named row with its audit entry, in one transaction: `read` finds
/// the row as it was, `write` writes it. An upsert that changes nothing is rolled back (the
/// row keeps its `updated_at`) and returns the row as it was.
fn write_audited<T: Audited>(
    c: &mut Connection,
    change: &Change,
    mode: Write,
    read: impl FnOnce(&Connection) -> Result<Option<T>>,
    write: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let tx = c.transaction()?;
    let before = read(&tx)?;
    let after = write(&tx)?;
    match mode.audit(change, before.as_ref(), &after) {
        Some(entry) => {
            insert_audit(&tx, &entry)?;
            tx.commit()?;
            Ok(after)
        }
        None => Ok(before.unwrap_or(after)),
    }
}

fn model_id(conn: &Connection, provider: &str, model: &str) -> Result<String> {
    conn.query_row(
        "SELECT m.id FROM ai_models m JOIN ai_providers p ON p.id = m.provider_id WHERE p.name = ?1 AND m.name = ?2",
        params![provider, model],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| missing::model_named(provider, model).into())
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Failure::Backend(e.to_string()))
}

fn json_column<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|_| conversion(what))
}

fn feature_id(conn: &Connection, name: &str) -> Result<String> {
    conn.query_row(
        "SELECT id FROM ai_features WHERE name = ?1",
        params![name],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| missing::feature(name).into())
}

const BUDGET_SELECT: &str = "SELECT id, name, scope, scope_value, period_type, time_zone, amount_micros, thresholds, is_active, created_at, updated_at, channels FROM ai_spending_budgets";

fn budget_row(r: &Row) -> rusqlite::Result<Budget> {
    let scope: String = r.get(2)?;
    let period: String = r.get(4)?;
    Ok(Budget {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        spec: BudgetSpec {
            name: r.get(1)?,
            scope: BudgetScope::parse(&scope).ok_or_else(|| conversion("budget scope"))?,
            scope_value: r.get(3)?,
            period: BudgetPeriod::parse(&period).ok_or_else(|| conversion("budget period"))?,
            time_zone: r.get(5)?,
            amount_micros: r.get(6)?,
            thresholds_percent: json_column(&r.get::<_, String>(7)?, "budget thresholds")?,
            is_active: r.get(8)?,
            channels: json_column(&r.get::<_, String>(11)?, "budget channels")?,
        },
        created_at: parse_ts(&r.get::<_, String>(9)?)?,
        updated_at: parse_ts(&r.get::<_, String>(10)?)?,
    })
}
