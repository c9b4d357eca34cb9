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

use anyhow::Context;
use chrono::Utc;
use serde_json::json;
use tally_domain::audit::Change;
use tally_domain::log_binding::Adoption;
use tally_projector::RebuildReport;

use crate::settings::Settings;
use crate::startup::projector_config;
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
    let config = projector_config(settings, stores);
    Ok(tally_projector::start_clean(log, analytics, config).await?)
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
