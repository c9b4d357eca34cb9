//! What the query handlers share.

use std::sync::Arc;

use serde::Serialize;
use tally_domain::clock::Clock;
use tally_domain::recording::Recorder;
use tally_domain::store::{AnalyticsStore, ConfigStore};

/// A snapshot of the pipeline, for readiness and overviews.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct PipelineStatus {
    /// The projector has loaded its checkpoint and is running.
    pub ready: bool,
    pub events_in_log: u64,
    pub events_projected: u64,
    pub duplicates_dropped: u64,
    pub lag_events: u64,
    pub last_error: Option<String>,
    /// Set while the projector refuses to read because the analytics store's checkpoints
    /// belong to another log: why, and the ways out.
    pub checkpoint_mismatch: Option<String>,
}

pub type PipelineProbe = Arc<dyn Fn() -> PipelineStatus + Send + Sync>;

/// Drops the projection and starts projecting the log again; resolves once the replay began.
pub type Replayer = Arc<
    dyn Fn() -> futures::future::BoxFuture<'static, Result<(), tally_domain::store::StoreError>>
        + Send
        + Sync,
>;

#[derive(Clone)]
pub struct QueryState {
    pub analytics: Arc<dyn AnalyticsStore>,
    pub config: Arc<dyn ConfigStore>,
    /// How prompt tests record their calls: priced and appended to the event log exactly as
    /// `POST /v1/events` records events (this process never reads the log).
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
    pub pipeline: PipelineProbe,
    /// Turns true when the server begins shutting down: long-lived answers (event streams)
    /// end then, so the graceful shutdown completes.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// Reprice requests as the projector of this process sees them (reloaded after a new one).
    pub reprices: Arc<tally_domain::pricing::RepriceCache>,
    /// Present when this process runs the only projector of its store (the embedded log):
    /// a reprice request then replays the log at once. Otherwise `tally rebuild` applies it.
    pub replay: Option<Replayer>,
    /// Sends test notifications (`POST /notification-channels/{id}/test`).
    pub notifier: tally_alerting::Sender,
    /// The console's public address, for links in notifications.
    pub public_url: String,
    /// The rows of closed buckets kept between dashboard reads (`TALLY_QUERY_CACHE_MIB`).
    pub row_cache: Arc<crate::row_cache::RowCache>,
}
