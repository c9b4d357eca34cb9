//! The raw events table `tally_events` (see the module docs of [`super`]): insert,
//! count, and retention by dropping whole day partitions (shared with the rollup table).

use clickhouse::{Client, Row};
use serde::Serialize;
use tally_schemas::event::Cost;

use crate::failure::{seam, Result};
use tally_domain::store::{RawEvent, StoreResult};

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

/// The lowercase name serde gives a unit enum variant.
fn label<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Inserts `events` (of `partition`) in one `INSERT`.
pub async fn insert(client: &Client, partition: i32, events: &[RawEvent]) -> StoreResult<()> {
    seam(async || -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut insert = client.insert::<EventRow<'_>>(EVENTS_TABLE).await?;
        for raw in events {
            let e = &raw.event;
            let (cost_source, cost_pico) = match e.cost {
                Cost::Reported(p) => ("reported", p),
                Cost::Computed(p) => ("computed", p),
                Cost::Unpriced | Cost::Pending => ("unpriced", 0),
            };
            let day = e
                .occurred_at_us
                .div_euclid(86_400_000_000)
                .clamp(0, i64::from(u16::MAX));
            insert
                .write(&EventRow {
                    occurred_day: day as u16,
                    feature: &e.feature,
                    occurred_at_us: e.occurred_at_us,
                    event_id: &e.event_id,
                    model: &e.model,
                    provider: &e.provider,
                    environment: e.environment.as_str(),
                    operation: label(&e.operation),
                    status: label(&e.status),
                    error_type: e.error_type.as_deref().unwrap_or(""),
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
