//! The raw events table `tally_events` (see the module docs of [`super`]): insert, the
//! drill-down read (newest first, [`tally_domain::drilldown`]), count, and retention by
//! dropping whole day partitions (shared with the rollup table).

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tally_domain::drilldown::EventQuery;
use tally_schemas::event::{Cost, Operation, Status};
use tally_schemas::{Environment, UsageEvent};

use crate::failure::{seam, Failure, Result};
use tally_domain::store::{RawRecord, StoreResult};

pub(super) const EVENTS_TABLE: &str = "tally_events";

#[derive(Debug, Row, Serialize)]
struct EventRow<'a> {
    /// Days since the Unix epoch (ClickHouse `Date`).
    occurred_day: u16,
    feature: &'a str,
    occurred_at_us: i64,
    event_id: &'a str,
    model: &'a str,
    provider: &'a str,
    environment: &'a str,
    operation: String,
    status: String,
    error_type: &'a str,
    error_message: &'a str,
    error_message_truncated: u8,
    latency_us: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cost_source: &'static str,
    cost_pico: i64,
    user_id: &'a str,
    prompt_id: &'a str,
    prompt_version: &'a str,
    experiment_id: &'a str,
    variant: &'a str,
    attributes: String,
    log_partition: i32,
    log_offset: i64,
    received_at_ms: i64,
}

/// The ClickHouse `Date` (days since the Unix epoch, clamped to its range) of the instant
/// `us` (Unix microseconds).
pub(super) fn date_of_us(us: i64) -> u16 {
    us.div_euclid(86_400_000_000).clamp(0, i64::from(u16::MAX)) as u16
}

/// The lowercase name serde gives a unit enum variant.
fn label<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Inserts the events of `records` (of `partition`) in one `INSERT`.
pub async fn insert(client: &Client, partition: i32, records: &[RawRecord]) -> StoreResult<()> {
    seam(async || -> Result<()> {
        if records.iter().all(|r| r.events().is_empty()) {
            return Ok(());
        }
        let mut insert = client.insert::<EventRow<'_>>(EVENTS_TABLE).await?;
        for raw in records.iter().flat_map(RawRecord::raw_events) {
            let e = raw.event;
            let (cost_source, cost_pico) = match e.cost {
                Cost::Reported(p) => ("reported", p),
                Cost::Computed(p) => ("computed", p),
                Cost::Unpriced | Cost::Pending => ("unpriced", 0),
            };
            insert
                .write(&EventRow {
                    occurred_day: date_of_us(e.occurred_at_us),
                    feature: &e.feature,
                    occurred_at_us: e.occurred_at_us,
                    event_id: &e.event_id,
                    model: &e.model,
                    provider: &e.provider,
                    environment: e.environment.as_str(),
                    operation: label(&e.operation),
                    status: label(&e.status),
                    error_type: e.error_type.as_deref().unwrap_or(""),
                    error_message: e.error_message.as_deref().unwrap_or(""),
                    error_message_truncated: u8::from(e.error_message_truncated),
                    latency_us: e.latency_us,
                    input_tokens: e.input_tokens,
                    output_tokens: e.output_tokens,
                    cached_input_tokens: e.cached_input_tokens,
                    cost_source,
                    cost_pico,
                    user_id: e.user_id.as_deref().unwrap_or(""),
                    prompt_id: e.prompt_id.as_deref().unwrap_or(""),
                    prompt_version: e.prompt_version.as_deref().unwrap_or(""),
                    experiment_id: e.experiment_id.as_deref().unwrap_or(""),
                    variant: e.variant.as_deref().unwrap_or(""),
                    attributes: serde_json::to_string(
                        &e.attributes
                            .iter()
                            .cloned()
                            .collect::<std::collections::BTreeMap<_, _>>(),
                    )
                    .unwrap_or_default(),
                    log_partition: partition,
                    log_offset: raw.offset,
                    received_at_ms: raw.received_at_ms,
                })
                .await?;
        }
        insert.end().await?;
        Ok(())
    })
    .await
}

/// A stored event as the drill-down reads it back.
#[derive(Debug, Row, Deserialize)]
struct StoredEvent {
    feature: String,
    occurred_at_us: i64,
    event_id: String,
    model: String,
    provider: String,
    environment: String,
    operation: String,
    status: String,
    error_type: String,
    error_message: String,
    error_message_truncated: u8,
    latency_us: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cost_source: String,
    cost_pico: i64,
    user_id: String,
    prompt_id: String,
    prompt_version: String,
    experiment_id: String,
    variant: String,
    attributes: String,
}

const STORED_COLUMNS: &str = "feature, occurred_at_us, event_id, model, provider, environment, operation, status, error_type, error_message, error_message_truncated, latency_us, input_tokens, output_tokens, cached_input_tokens, cost_source, cost_pico, user_id, prompt_id, prompt_version, experiment_id, variant, attributes";

/// The unit enum variant serde names `text`.
fn word<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| Failure::Corrupt(format!("{what} {text}")))
}

fn optional(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl StoredEvent {
    fn into_event(self) -> Result<UsageEvent> {
        let cost = match self.cost_source.as_str() {
            "reported" => Cost::Reported(self.cost_pico),
            "computed" => Cost::Computed(self.cost_pico),
            "unpriced" => Cost::Unpriced,
            other => return Err(Failure::Corrupt(format!("cost source {other}"))),
        };
        let attributes: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&self.attributes)
                .map_err(|_| Failure::Corrupt("attributes".into()))?;
        Ok(UsageEvent {
            event_id: self.event_id,
            occurred_at_us: self.occurred_at_us,
            feature: self.feature,
            model: self.model,
            provider: self.provider,
            environment: Environment::parse(&self.environment)
                .ok_or_else(|| Failure::Corrupt(format!("environment {}", self.environment)))?,
            operation: word::<Operation>(&self.operation, "operation")?,
            status: word::<Status>(&self.status, "status")?,
            error_type: optional(self.error_type),
            error_message: optional(self.error_message),
            error_message_truncated: self.error_message_truncated != 0,
            latency_us: self.latency_us,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            cost,
            user_id: optional(self.user_id),
            prompt_id: optional(self.prompt_id),
            prompt_version: optional(self.prompt_version),
            experiment_id: optional(self.experiment_id),
            variant: optional(self.variant),
            attributes: attributes.into_iter().collect(),
        })
    }
}

/// The events `q` asks for, newest first (re-inserts collapsed by `FINAL`).
pub async fn query(client: &Client, q: &EventQuery) -> StoreResult<Vec<UsageEvent>> {
    seam(async || -> Result<Vec<UsageEvent>> {
        let f = &q.filter;
        let mut conditions = vec!["occurred_at_us >= ?".to_string(), "occurred_at_us < ?".to_string()];
        let mut texts: Vec<&str> = Vec::new();
        for (column, value) in [
            ("feature", &f.feature),
            ("model", &f.model),
            ("provider", &f.provider),
            ("prompt_id", &f.prompt_id),
            ("experiment_id", &f.experiment_id),
            ("variant", &f.variant),
            ("user_id", &f.user_id),
        ] {
            if let Some(v) = value {
                conditions.push(format!("{column} = ?"));
                texts.push(v);
            }
        }
        if let Some(env) = f.environment {
            conditions.push("environment = ?".into());
            texts.push(env.as_str());
        }
        if let Some(status) = f.status {
            let words: Vec<String> = status.words().iter().map(|w| format!("'{w}'")).collect();
            conditions.push(format!("status IN ({})", words.join(", ")));
        }
        if q.after.is_some() {
            conditions.push("(occurred_at_us < ? OR (occurred_at_us = ? AND event_id < ?))".into());
        }
        let sql = format!(
            "SELECT {STORED_COLUMNS} FROM {EVENTS_TABLE} FINAL WHERE {} ORDER BY occurred_at_us DESC, event_id DESC LIMIT {}",
            conditions.join(" AND "),
            q.limit
        );
        let mut query = client.query(&sql).bind(q.from_us).bind(q.to_us);
        for text in texts {
            query = query.bind(text);
        }
        if let Some(c) = &q.after {
            query = query
                .bind(c.occurred_at_us)
                .bind(c.occurred_at_us)
                .bind(c.event_id.as_str());
        }
        query
            .fetch_all::<StoredEvent>()
            .await?
            .into_iter()
            .map(StoredEvent::into_event)
            .collect()
    })
    .await
}

/// Distinct events stored (re-inserts collapsed), for drill-down totals and tests.
pub async fn count(client: &Client) -> StoreResult<u64> {
    seam(async || -> Result<u64> {
        let sql = format!("SELECT count() FROM {EVENTS_TABLE} FINAL");
        Ok(client.query(&sql).fetch_one::<u64>().await?)
    })
    .await
}

/// Drops every day partition of `table` (partitioned by `toYYYYMMDD` of a UTC day) that ended
/// at or before `before_s`; returns partitions dropped.
pub(super) async fn drop_days_before(client: &Client, table: &str, before_s: i64) -> Result<u64> {
    let sql = format!("SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() AND table = '{table}' AND active");
    let partitions = client.query(&sql).fetch_all::<String>().await?;
    let mut dropped = 0;
    for p in partitions {
        let Ok(day) = chrono::NaiveDate::parse_from_str(p.trim_matches('\''), "%Y%m%d") else {
            continue;
        };
        let end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc().timestamp());
        if end.is_some_and(|end| end <= before_s) {
            let sql = format!(
                "ALTER TABLE {table} DROP PARTITION {}",
                day.format("%Y%m%d")
            );
            client.query(&sql).execute().await?;
            dropped += 1;
        }
    }
    Ok(dropped)
}
