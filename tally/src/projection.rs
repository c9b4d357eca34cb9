//! Operator commands on the projection as a whole: `tally rebuild` (replay the log into an
//! emptied store), `tally rebuild --start-clean` (the same, also when the store's checkpoints
//! belong to another log or it holds retired logs' counts) and `tally adopt-topic` (project
//! another log into the same rollups). Each is recorded in the audit log before it is carried
//! out, by the local actor `cli`.
//!
//! They run while no projector writes the store: embedded stores are locked by the running
//! server; in distributed mode stop the projectors for a rebuild. An adoption may run while the
//! projectors refuse to read (they all do until it is done): they take it up at their next
//! check.

use std::collections::BTreeMap;

use anyhow::Context;
use chrono::Utc;
use serde_json::json;
use tally_domain::audit::Change;
use tally_domain::log_binding::Adoption;
use tally_projector::RebuildReport;

use crate::progress::{grouped, Progress};
use crate::settings::Settings;
use crate::startup::{dedup_filter_files, projector_config};
use crate::stores::Stores;

fn change() -> Change {
    Change::local("cli", Utc::now())
}

/// Replays the log into the emptied store; refused when that would drop counts of another log
/// ([`tally_projector::rebuild`]). With `start_clean`, drops them on purpose.
pub async fn rebuild(
    stores: &Stores,
    settings: &Settings,
    start_clean: bool,
) -> anyhow::Result<RebuildReport> {
    let log = stores.log.clone();
    let analytics = stores.analytics.clone();
    if !start_clean {
        tally_projector::guard_rebuild(log.as_ref(), analytics.as_ref()).await?;
    }
    let bindings = analytics.bindings().await?;
    let identity = log.describe().await?.identity;
    let action = if start_clean {
        "projection.start_clean"
    } else {
        "projection.rebuild"
    };
    stores
        .config
        .record_operation(change().entry(
            action,
            format!("log:{}", identity.name),
            Some(&json!({ "bindings": bindings })),
            Some(&json!({ "log": identity })),
        ))
        .await
        .context("recording the rebuild in the audit log")?;
    stores.refresh_pricing().await?;
    let mut config = projector_config(settings, stores);
    config.dedup_files = dedup_filter_files(settings)?;
    // Progress is counted in log records (the log knows how many there are; a record holds one
    // accepted batch of events).
    let described = log.describe().await?;
    let low: BTreeMap<i32, i64> = described
        .partitions
        .iter()
        .map(|(p, w)| (*p, w.low))
        .collect();
    let total: u64 = described
        .partitions
        .values()
        .map(|w| (w.high - w.low).max(0) as u64)
        .sum();
    let mut progress = Progress::new("rebuild", "log records", total);
    let mut last = (0, String::new());
    let report = tally_projector::start_clean_watching(log, analytics, config, |status| {
        let done: u64 = low
            .iter()
            .map(|(p, low)| (status.position.next_offset(*p) - low).max(0) as u64)
            .sum();
        let note = format!(
            "{} events, {} duplicates",
            grouped(status.events_applied),
            grouped(status.duplicates_dropped)
        );
        progress.set(done, &note);
        last = (done, note);
    })
    .await;
    progress.finish(last.0, &last.1);
    Ok(report?)
}

/// Adopts the log as it is now: the store keeps everything it counted, and the projectors
/// project the adopted log from its beginning (see [`tally_domain::log_binding`]).
pub async fn adopt_topic(stores: &Stores, settings: &Settings) -> anyhow::Result<Adoption> {
    let plan =
        tally_projector::plan_adoption(stores.log.as_ref(), stores.analytics.as_ref()).await?;
    stores
        .config
        .record_operation(change().entry(
            "projection.adopt_log",
            format!("log:{}", plan.adopted.log.name),
            Some(&json!({
                "log": plan.retired_log,
                "epoch": plan.retired_epoch,
                "position": plan.retired_position,
            })),
            Some(&json!({
                "log": plan.adopted.log,
                "epoch": plan.adopted.epoch,
                "dedup_from": plan.dedup_from,
            })),
        ))
        .await
        .context("recording the adoption in the audit log")?;
    stores
        .analytics
        .adopt(&plan, settings.dedup_window_secs)
        .await
        .context(
            "adopting the log (recorded in the audit log; running the command again completes it)",
        )?;
    Ok(plan)
}
