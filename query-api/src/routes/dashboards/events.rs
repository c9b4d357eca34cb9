//! `GET /events`: drill-down to the raw usage events behind a number — the counted events of
//! a window (each once, priced as counted), newest first, filtered on their fields and paged
//! with a cursor. Served by the analytics store (the embedded store's event chunks, or
//! ClickHouse's `tally_events`), so both modes answer the same pages.
//!
//! The cursor is the last event of a page (its `occurred_at` and id), opaque to clients; a
//! page continues exactly after it, so paging never skips or repeats an event.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::{Query, State};
use axum::response::IntoResponse;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use tally_domain::drilldown::{Cursor, EventFilter, EventQuery, StatusFilter};
use tally_domain::window::named_range;
use tally_http::auth::Access;
use tally_http::http::ApiError;
use tally_http::route::{Param, Route, Routes};
use tally_schemas::event::{Cost, Operation, Status};
use tally_schemas::{Environment, Pico, UsageEvent};

use crate::params::{environment_param, joined, limit_param, window_params, Params};
use crate::routes::API_BASE;
use crate::state::QueryState;

/// Most events in one page.
const MAX_LIMIT: usize = 1000;

static PARAMS: LazyLock<Vec<Param>> = LazyLock::new(|| {
    joined([
        vec![
            Param::text("feature"),
            Param::text("model"),
            Param::text("provider"),
            environment_param(),
            Param::one_of("status", &StatusFilter::NAMES).describe("failed: errors and timeouts"),
            Param::text("prompt_id"),
            Param::text("experiment_id"),
            Param::text("variant"),
            Param::text("user_id"),
            limit_param(MAX_LIMIT as u64).describe("Events per page (default 100)"),
            Param::text("cursor").describe("The next_cursor of the previous page"),
        ],
        window_params(),
    ])
});

pub fn routes(r: Routes<QueryState>) -> Routes<QueryState> {
    r.serve(
        Route::get(
            format!("{API_BASE}/events"),
            Access::ReadMetrics,
            "The counted usage events of a window, newest first, filtered and paged (drill-down)",
            events,
        )
        .query(PARAMS.clone())
        .returns::<EventPage>(200),
    )
}

/// One usage event as the drill-down shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct EventView {
    pub event_id: String,
    pub occurred_at: String,
    pub feature: String,
    pub model: String,
    pub provider: String,
    pub environment: Environment,
    pub operation: Operation,
    pub status: Status,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    pub error_message_truncated: bool,
    pub latency_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Exact cost, decimal US dollars (`None`: unpriced).
    pub cost_usd: Option<String>,
    /// `reported` (sent by the client), `computed` (from the model's price) or `unpriced`.
    pub cost_source: &'static str,
    pub user_id: Option<String>,
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
    pub experiment_id: Option<String>,
    pub variant: Option<String>,
    pub attributes: serde_json::Map<String, Value>,
}

impl From<UsageEvent> for EventView {
    fn from(e: UsageEvent) -> EventView {
        let (cost_usd, cost_source) = match e.cost {
            Cost::Reported(p) => (Some(Pico(i128::from(p)).to_decimal_string()), "reported"),
            Cost::Computed(p) => (Some(Pico(i128::from(p)).to_decimal_string()), "computed"),
            Cost::Unpriced | Cost::Pending => (None, "unpriced"),
        };
        EventView {
            occurred_at: DateTime::from_timestamp_micros(e.occurred_at_us)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
                .unwrap_or_default(),
            event_id: e.event_id,
            feature: e.feature,
            model: e.model,
            provider: e.provider,
            environment: e.environment,
            operation: e.operation,
            status: e.status,
            error_type: e.error_type,
            error_message: e.error_message,
            error_message_truncated: e.error_message_truncated,
            latency_ms: e.latency_us as f64 / 1000.0,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: e.cached_input_tokens,
            cost_usd,
            cost_source,
            user_id: e.user_id,
            prompt_id: e.prompt_id,
            prompt_version: e.prompt_version,
            experiment_id: e.experiment_id,
            variant: e.variant,
            attributes: e
                .attributes
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PageInfo {
    pub limit: usize,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Bounds {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct EventPage {
    pub data: Vec<EventView>,
    pub pagination: PageInfo,
    /// The window searched: `occurred_at` from (inclusive) to (exclusive).
    pub window: Bounds,
}

fn encode_cursor(c: &Cursor) -> String {
    hex::encode(format!("{}:{}", c.occurred_at_us, c.event_id))
}

fn decode_cursor(text: &str) -> Result<Cursor, ApiError> {
    let bad = || ApiError::bad_param("cursor", "is not a cursor this API gave out");
    let plain = String::from_utf8(hex::decode(text).map_err(|_| bad())?).map_err(|_| bad())?;
    let (at, id) = plain.split_once(':').ok_or_else(bad)?;
    Ok(Cursor {
        occurred_at_us: at.parse().map_err(|_| bad())?,
        event_id: id.to_string(),
    })
}

async fn events(
    State(state): State<QueryState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let params = Params::new(q, &PARAMS)?;
    let now = state.clock.now();
    // Exact instants (not widened to minutes): a drill-down shows what a window held.
    let named = params.get("time_range").or_else(|| params.get("timeRange"));
    let (from, to) = (params.instant("from")?, params.instant("to")?);
    let (from, to) = match (named, from, to) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(ApiError::bad_param(
                "time_range",
                "use either time_range or from/to, not both",
            ))
        }
        (None, None, Some(_)) => {
            return Err(ApiError::bad_param("from", "is required when to is given"))
        }
        (None, Some(from), to) => (from, to.unwrap_or(now)),
        (name, None, None) => {
            let name = name.unwrap_or("24h");
            let range = named_range(name).ok_or_else(|| {
                ApiError::bad_param("time_range", "must be one of 5m, 15m, 1h, 24h, 7d, 30d")
            })?;
            (now - range, now)
        }
    };
    if from >= to {
        return Err(ApiError::bad_param("from", "must be earlier than to"));
    }
    let filter = params.filter()?;
    let limit = params.limit(100, MAX_LIMIT)?;
    let query = EventQuery {
        filter: EventFilter {
            feature: filter.feature,
            model: filter.model,
            provider: filter.provider,
            environment: filter.environment,
            status: params.word("status", &StatusFilter::NAMES, StatusFilter::parse)?,
            prompt_id: filter.prompt_id,
            experiment_id: filter.experiment_id,
            variant: filter.variant,
            user_id: params.get("user_id").map(str::to_string),
        },
        from_us: from.timestamp_micros(),
        to_us: to.timestamp_micros(),
        after: params.get("cursor").map(decode_cursor).transpose()?,
        // One more than asked: whether a next page exists.
        limit: limit + 1,
    };
    let mut found = state.analytics.events(&query).await?;
    let more = found.len() > limit;
    found.truncate(limit);
    let next_cursor = more
        .then(|| found.last().map(|e| encode_cursor(&Cursor::of(e))))
        .flatten();
    Ok(axum::Json(EventPage {
        data: found.into_iter().map(EventView::from).collect(),
        pagination: PageInfo { limit, next_cursor },
        window: Bounds { from, to },
    }))
}
