//! `GET /events/stream`: Server-Sent Events for live dashboards.
//!
//! Every `interval` seconds (default 5, 1–60) the stream recomputes, from rollups, each
//! feature's numbers over the last 15 minutes (or `time_range`), optionally narrowed to
//! `feature` and `environment`, and sends:
//! - `feature_metrics` for every feature whose numbers changed since the last tick (all of them
//!   on the first tick): requests, errors, timeouts, error rate, latency percentiles, cost and
//!   the status of [`crate::assessment::feature_status`];
//! - `alert` when a feature's status enters `degraded` or `unhealthy` (`state: firing`, also
//!   sent on the first tick for features already there) or leaves them (`state: resolved`),
//!   with the reasons.
//! - `alert` for every transition an alert rule's or a budget's alert makes while the stream is
//!   open (the stored alert as `GET /analytics/alerts` lists it, without its deliveries; it has
//!   a `kind` of `rule` or `budget`), narrowed by `feature` and `environment` when given.
//!
//! Each event carries an increasing `id`. Idle connections get keep-alive comments. A process
//! serves at most [`MAX_STREAMS`] streams at once; one more is a `503`. Streams end when the
//! server begins shutting down (clients reconnect), so a graceful shutdown never waits on them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures::stream::{self, StreamExt};
use serde::Serialize;
use tally_domain::alerting::AlertState;
use tally_domain::rollup::Rollup;
use tally_domain::store::{AlertQuery, Filter};
use tally_http::auth::Access;
use tally_http::http::ApiError;
use tally_http::route::{Param, Route, Routes};

use crate::assessment::{feature_status, Signals};
use crate::params::{environment_param, joined, range_params, refuse_unknown, Params};
use crate::rollups::scan;
use crate::routes::API_BASE;
use crate::state::QueryState;
use tally_domain::window::Window;

/// Streams one process serves at once.
pub const MAX_STREAMS: usize = 64;

static OPEN_STREAMS: AtomicUsize = AtomicUsize::new(0);

/// A stream follows the present: a named range (each tick looks back that far), no `from`/`to`.
static STREAM: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        vec![
            Param::text("feature"),
            environment_param(),
            Param::integer("interval", 1, Some(60)).describe("Seconds between updates (default 5)"),
        ],
        range_params(),
    ])
});

/// The names a stream request may carry: its own and the window's (`from`/`to` to refuse them).
static STREAM_OR_WINDOW: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        STREAM.clone(),
        vec![Param::instant("from"), Param::instant("to")],
    ])
});

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/events/stream"),
            Access::ReadMetrics,
            "Server-Sent Events: feature_metrics updates and alert state changes",
            stream_events,
        )
        .query(STREAM.clone())
        .media("text/event-stream"),
    )
}

/// One feature's numbers in a `feature_metrics` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct FeatureUpdate {
    feature: String,
    status: &'static str,
    #[serde(flatten)]
    signals: Signals,
    latency_p50_ms: Option<f64>,
    latency_p99_ms: Option<f64>,
    cost_usd: String,
    unpriced_requests: u64,
}

#[derive(Debug, Serialize)]
struct Alert<'a> {
    feature: &'a str,
    /// `firing` or `resolved`.
    state: &'static str,
    status: &'static str,
    previous_status: Option<&'static str>,
    reasons: &'a [String],
    at: chrono::DateTime<chrono::Utc>,
}

/// Counts an open stream until dropped.
struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        OPEN_STREAMS.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Watch {
    state: QueryState,
    filter: Filter,
    range: chrono::Duration,
    interval: Duration,
    last: BTreeMap<String, FeatureUpdate>,
    next_id: u64,
    first: bool,
    /// Stored alert transitions already sent (alert id, state), and when the stream began.
    told: HashSet<(uuid::Uuid, AlertState)>,
    since: chrono::DateTime<chrono::Utc>,
    _slot: Slot,
}

fn alerting(status: &str) -> bool {
    matches!(status, "degraded" | "unhealthy")
}

impl Watch {
    /// One tick's events (possibly none).
    async fn tick(&mut self) -> Vec<Event> {
        if !self.first {
            tokio::time::sleep(self.interval).await;
        }
        let now = self.state.clock.now();
        let window = Window::last(self.range, now);
        let rows = match scan(&self.state, &self.filter, window.spans(), true).await {
            Ok(rows) => rows,
            Err(err) => {
                return vec![Event::default()
                    .event("error")
                    .data(format!("{{\"message\":{:?}}}", err.message))]
            }
        };
        let configured: HashMap<String, &'static str> =
            match self.state.config.list_features().await {
                Ok(features) => features
                    .into_iter()
                    .map(|f| (f.name, f.status.as_str()))
                    .collect(),
                Err(_) => HashMap::new(),
            };
        let mut by_feature: BTreeMap<String, Rollup> = BTreeMap::new();
        for row in &rows {
            by_feature
                .entry(row.key.dims.feature.clone())
                .or_default()
                .merge(&row.rollup);
        }
        // Features that had traffic and now have none still get their (idle) update.
        for name in self.last.keys() {
            by_feature.entry(name.clone()).or_default();
        }
        let mut events = Vec::new();
        for (name, rollup) in by_feature {
            let verdict = feature_status(&rollup, configured.get(&name).copied());
            let update = FeatureUpdate {
                feature: name.clone(),
                status: verdict.status,
                signals: Signals::of(&rollup),
                latency_p50_ms: rollup.latency.quantile_ms(0.50),
                latency_p99_ms: rollup.latency.quantile_ms(0.99),
                cost_usd: rollup.cost.to_decimal_string(),
                unpriced_requests: rollup.unpriced,
            };
            let previous = self.last.get(&name).map(|u| u.status);
            if previous.is_none() || self.last.get(&name) != Some(&update) {
                events.push(self.event("feature_metrics", &update));
            }
            let was = previous.is_some_and(alerting);
            let is = alerting(update.status);
            if is != was {
                let alert = Alert {
                    feature: &name,
                    state: if is { "firing" } else { "resolved" },
                    status: update.status,
                    previous_status: previous,
                    reasons: &verdict.reasons,
                    at: now,
                };
                events.push(self.event("alert", &alert));
            }
            self.last.insert(name, update);
        }
        self.stored_alerts(&mut events).await;
        self.first = false;
        events
    }

    /// The transitions of stored alerts since the stream began that it has not sent yet.
    async fn stored_alerts(&mut self, events: &mut Vec<Event>) {
        let query = AlertQuery {
            since: Some(self.since),
            limit: Some(1000),
            ..AlertQuery::default()
        };
        let Ok(mut alerts) = self.state.config.list_alerts(&query).await else {
            return;
        };
        alerts.reverse();
        for mut alert in alerts {
            let label = |name: &str| alert.labels.get(name).map(String::as_str);
            let wanted = self
                .filter
                .feature
                .as_deref()
                .is_none_or(|f| label("feature") == Some(f))
                && self
                    .filter
                    .environment
                    .is_none_or(|e| label("environment") == Some(e.as_str()));
            if wanted && self.told.insert((alert.id, alert.state)) {
                alert.deliveries.clear();
                events.push(self.event("alert", &alert));
            }
        }
    }

    fn event<T: Serialize>(&mut self, kind: &str, payload: &T) -> Event {
        self.next_id += 1;
        Event::default()
            .event(kind)
            .id(self.next_id.to_string())
            .json_data(payload)
            .unwrap_or_else(|_| Event::default().event("error"))
    }
}

async fn stream_events(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    // `from`/`to` are known here (and refused below, with the reason), not unknown.
    refuse_unknown(&q, &STREAM_OR_WINDOW)?;
    if q.contains_key("from") || q.contains_key("to") {
        return Err(ApiError::bad_param(
            "from",
            "a stream follows the present; use time_range",
        ));
    }
    let params = Params::new(q, &STREAM)?;
    // The window's length; each tick then looks back that far from its own now.
    let (window, _) = params.window(state.clock.now(), "15m")?;
    let range = chrono::Duration::seconds(window.len_s());
    let interval = params
        .get("interval")
        .map(|i| {
            i.parse::<u64>()
                .ok()
                .filter(|s| (1..=60).contains(s))
                .ok_or_else(|| {
                    ApiError::bad_param("interval", "must be whole seconds from 1 to 60")
                })
        })
        .transpose()?
        .unwrap_or(5);
    let filter = params.filter()?;
    if OPEN_STREAMS.fetch_add(1, Ordering::SeqCst) >= MAX_STREAMS {
        OPEN_STREAMS.fetch_sub(1, Ordering::SeqCst);
        return Err(ApiError::unavailable(
            format!("this process already serves {MAX_STREAMS} streams; retry later"),
            5,
        ));
    }
    let state_now = state.clock.now();
    let watch = Watch {
        filter,
        state,
        range,
        interval: Duration::from_secs(interval),
        last: BTreeMap::new(),
        next_id: 0,
        first: true,
        told: HashSet::new(),
        since: state_now,
        _slot: Slot,
    };
    let mut closing = watch.state.closing.clone();
    let closed = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    let events = stream::unfold(watch, |mut watch| async move {
        let batch = watch.tick().await;
        Some((
            stream::iter(batch.into_iter().map(Ok::<Event, std::convert::Infallible>)),
            watch,
        ))
    })
    .flatten()
    .take_until(closed);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
