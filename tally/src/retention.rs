//! Retention: what is older than the retention window is deleted, hourly by default
//! (`retention_interval_secs`).
//!
//! Ingest already refuses events older than the window; this keeps the disk bounded. Rollup
//! rows and counted events go a whole UTC day at a time, once the day ended before the cutoff
//! (so ClickHouse can drop day partitions). Log records go only once the projector has
//! consumed them (and the newest record always stays, it carries the log head across
//! restarts), and only once received before that day (less ingest's future skew): the embedded
//! drill-down reads the events it lists from their records ([`log_cutoff_ms`]). A rebuild
//! afterwards replays what is retained and equals the retained rollups. The stores delete in
//! bounded steps where the data is large (the embedded log, counted events, scores), so a pass
//! never holds up ingest or the projector for its whole length.
//!
//! Each pass is measured: `tally_retention_passes_total{outcome}`, its duration in the
//! `tally_retention_pass_seconds` histogram, and the last one's in
//! `tally_retention_last_pass_seconds` (what `tally loadgen --slice-secs` reports per slice).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tally_domain::store::{LogPosition, StoreResult};
use tracing::{info, warn};

use crate::stores::Stores;

pub const PASSES: &str = "tally_retention_passes_total";
pub const PASS_SECONDS: &str = "tally_retention_pass_seconds";
pub const LAST_PASS_SECONDS: &str = "tally_retention_last_pass_seconds";

/// What one pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub log_records: u64,
    pub rollup_rows: u64,
}

/// Deletes everything older than `now - retention` that may go.
pub async fn prune_once(
    stores: &Stores,
    now: DateTime<Utc>,
    retention: chrono::Duration,
    consumed: &LogPosition,
) -> StoreResult<Pruned> {
    let cutoff = now - retention;
    let rollup_rows = stores.analytics.prune(cutoff.timestamp()).await?;
    let log_records = stores.log.prune(log_cutoff_ms(cutoff), consumed).await?;
    Ok(Pruned {
        log_records,
        rollup_rows,
    })
}

/// Where the log's retention cuts: before the UTC day of `cutoff`, whose counted events the
/// analytics store keeps (it deletes whole days), less the future skew ingest accepts. The
/// embedded drill-down reads those events from their log records, and a record holds events
/// at most that far ahead of its receipt, so no record goes while an event it holds is listed.
pub fn log_cutoff_ms(cutoff: DateTime<Utc>) -> i64 {
    let day_start_ms = cutoff.timestamp().div_euclid(86_400) * 86_400_000;
    let skew_ms = tally_schemas::validate::Limits::default()
        .max_future_skew
        .num_milliseconds();
    cutoff.timestamp_millis().min(day_start_ms - skew_ms)
}

/// Runs [`prune_once`] every `every` until `stop` turns true.
pub async fn run(
    stores: Stores,
    clock: std::sync::Arc<dyn tally_domain::clock::Clock>,
    retention: chrono::Duration,
    status: tokio::sync::watch::Receiver<tally_projector::ProjectorStatus>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    metrics::describe_counter!(PASSES, "Retention passes by outcome (ok, failed).");
    metrics::describe_histogram!(PASS_SECONDS, "Duration of one retention pass.");
    metrics::describe_gauge!(LAST_PASS_SECONDS, "Duration of the latest retention pass.");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let consumed = status.borrow().position.clone();
        let started = std::time::Instant::now();
        // Shutdown does not wait for a pass: every step of it is its own transaction, so a
        // pass dropped between two steps leaves nothing half done (the next pass goes on).
        let pass = tokio::select! {
            pass = prune_once(&stores, clock.now(), retention, &consumed) => pass,
            _ = stop.changed() => return,
        };
        let seconds = started.elapsed().as_secs_f64();
        metrics::histogram!(PASS_SECONDS).record(seconds);
        metrics::gauge!(LAST_PASS_SECONDS).set(seconds);
        let outcome = if pass.is_ok() { "ok" } else { "failed" };
        metrics::counter!(PASSES, "outcome" => outcome).increment(1);
        match pass {
            Ok(p) if p.log_records + p.rollup_rows > 0 => {
                info!(
                    log_records = p.log_records,
                    rollup_rows = p.rollup_rows,
                    seconds,
                    "retention pruned old data"
                )
            }
            Ok(_) => {}
            Err(err) => warn!(error = %err, "retention pass failed; retrying at the next pass"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("a time")
    }

    #[test]
    fn the_log_keeps_the_cutoffs_whole_day_and_five_minutes_before_it() {
        let ms = |text| at(text).timestamp_millis();
        assert_eq!(
            log_cutoff_ms(at("2026-03-10T15:00:00Z")),
            ms("2026-03-09T23:55:00Z")
        );
        assert_eq!(
            log_cutoff_ms(at("2026-03-10T00:00:00Z")),
            ms("2026-03-09T23:55:00Z")
        );
        assert_eq!(
            log_cutoff_ms(at("1969-12-31T12:00:00Z")),
            ms("1969-12-30T23:55:00Z")
        );
    }
}
