//! The ingest routes. See the crate docs for the delivery contract.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use tally_domain::clock::Clock;
use tally_domain::recording::Recorder;
use tally_http::auth::{Access, Gate};
use tally_http::http::{data, ApiError};
use tally_http::route::{Route, RouteInfo, Routes};
use tally_schemas::score::validate_score;
use tally_schemas::validate::{
    parse_batch, parse_items, BatchParse, BodyError, BodyFormat, EventError, Limits,
};

use tokio::sync::{Semaphore, SemaphorePermit};
use tracing::instrument;

use crate::metrics as m;
use crate::pacing::{AppendMarks, Backlog};

/// Tells ingest how far behind the projector is.
pub type LagProbe = Arc<dyn Fn() -> Backlog + Send + Sync>;

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    pub max_lag_events: u64,
    /// While the oldest unprojected event has been in the log longer than this, requests wait
    /// before they append (see [`crate::pacing`]); zero turns pacing off.
    pub max_lag: Duration,
    /// How long a request waits for the projector before it is refused with `429`.
    pub max_wait: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            limits: Limits::default(),
            max_body_bytes: 10 * 1024 * 1024,
            max_in_flight: 32,
            max_lag_events: 5_000_000,
            max_lag: Duration::from_millis(250),
            max_wait: Duration::from_secs(1),
        }
    }
}

#[derive(Clone)]
pub struct IngestState {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    config: IngestConfig,
    in_flight: Semaphore,
    lag: LagProbe,
    marks: AppendMarks,
}

impl IngestState {
    pub fn new(
        recorder: Recorder,
        clock: Arc<dyn Clock>,
        config: IngestConfig,
        lag: LagProbe,
    ) -> IngestState {
        m::describe();
        let in_flight = Semaphore::new(config.max_in_flight.max(1));
        IngestState {
            inner: Arc::new(Inner {
                recorder,
                clock,
                config,
                in_flight,
                lag,
                marks: AppendMarks::default(),
            }),
        }
    }
}

/// `POST /v1/events` and `POST /v1/scores` (keys with the `ingest` or `platform_admin` role)
/// and their schemas (any key); see [`tally_http::route`].
pub fn router(state: IngestState, gate: Gate) -> (Router, Vec<RouteInfo>) {
    Routes::new(gate)
    .serve(
        Route::post(
            "/v1/events",
            Access::Ingest,
            "Send usage events: a JSON array (or NDJSON, one event per line); answered once every accepted event is durable; rejected events are listed with their field and reason",
            post_events,
        )
        .accepts::<Vec<tally_schemas::wire::UsageEventV1>>()
        .returns::<tally_http::http::Data<IngestSummary>>(200),
    )
    .serve(
        Route::post(
            "/v1/scores",
            Access::Ingest,
            "Send scores (user feedback or an evaluator's grade) for usage events: a JSON array (or NDJSON), each with a score_id (sending it again counts once), the event_id it grades, a name and a value (number) or label (category); answered once every accepted score is durable",
            post_scores,
        )
        .accepts::<Vec<tally_schemas::ScoreV1>>()
        .returns::<tally_http::http::Data<IngestSummary>>(200),
    )
    .serve(
        Route::get(
            "/v1/schema/score",
            Access::AnyKey,
            "The JSON Schema of a score",
            score_schema,
        )
        .returns::<serde_json::Value>(200),
    )
    .serve(
        Route::get(
            "/v1/schema/usage-event",
            Access::AnyKey,
            "The JSON Schema of a usage event",
            schema,
        )
        .returns::<serde_json::Value>(200),
    )
    .finish(state)
}

async fn schema() -> impl IntoResponse {
    axum::Json(tally_schemas::wire::usage_event_json_schema())
}

async fn score_schema() -> impl IntoResponse {
    axum::Json(tally_schemas::score::score_json_schema())
}

/// What became of a batch: events (or scores) accepted (durable before this answer) and
/// rejected.
#[derive(Debug, Serialize, schemars::JsonSchema)]
struct IngestSummary {
    accepted: usize,
    rejected: usize,
    errors: Vec<EventError>,
}

/// `POST /v1/events`: admit → parse (validate and price) → append → answer.
#[instrument(name = "ingest.post_events", skip_all)]
async fn post_events(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    take_events(&state, &headers, body)
        .await
        .inspect_err(log_refusal)
}

async fn take_events(
    state: &IngestState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let inner = &state.inner;
    let (_permit, body) = admit(inner, body).await?;
    let parsed = parse(inner, headers, body).await?;
    let recorder = &inner.recorder;
    settle(
        inner,
        parsed.events,
        parsed.errors,
        &EVENTS,
        started,
        |events| recorder.append(events),
    )
    .await
}

/// Logs a request answered with an error, at debug level: backpressure (429, 503) and bad input
/// are the client's to act on, and `tally_ingest_requests_total{outcome}` counts them (a loaded
/// server pushing back must not fill its log with errors). Server failures were already logged
/// as errors where they became an answer ([`ApiError::internal`], storage unavailable).
fn log_refusal(err: &ApiError) {
    tracing::debug!(error = ?err, "ingest request answered with an error");
}

/// `POST /v1/scores`: admit → parse (validate) → append → answer, like events.
#[instrument(name = "ingest.post_scores", skip_all)]
async fn post_scores(
    State(state): State<IngestState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    take_scores(&state, &headers, body)
        .await
        .inspect_err(log_refusal)
}

async fn take_scores(
    state: &IngestState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let inner = &state.inner;
    let (_permit, body) = admit(inner, body).await?;
    let max = inner.config.limits.max_events;
    let parsed = read_and_parse(inner, headers, body, move |bytes, format| {
        parse_items(bytes, format, max, "score", validate_score)
    })
    .await?;
    let recorder = &inner.recorder;
    settle(
        inner,
        parsed.accepted,
        parsed.errors,
        &SCORES,
        started,
        |scores| recorder.append_scores(scores),
    )
    .await
}

/// What a batch route takes: the word for its items and the counters of its outcomes.
struct Items {
    noun: &'static str,
    accepted: &'static str,
    rejected: &'static str,
}

const EVENTS: Items = Items {
    noun: "events",
    accepted: m::EVENTS_ACCEPTED,
    rejected: m::EVENTS_REJECTED,
};

const SCORES: Items = Items {
    noun: "scores",
    accepted: m::SCORES_ACCEPTED,
    rejected: m::SCORES_REJECTED,
};

/// Counts the rejected items, appends the accepted ones with `append` once the projector is
/// close enough behind ([`pace`]; durable before the answer; a failure counted and answered as
/// the store's error) and answers the batch's summary, or `422` when nothing was accepted.
async fn settle<T, F, Fut>(
    inner: &Inner,
    accepted: Vec<(usize, T)>,
    errors: Vec<EventError>,
    items: &Items,
    started: Instant,
    append: F,
) -> Result<Response, ApiError>
where
    F: FnOnce(Vec<T>) -> Fut,
    Fut: std::future::Future<
        Output = tally_domain::store::StoreResult<tally_domain::store::AppendReceipt>,
    >,
{
    let accepted: Vec<T> = accepted.into_iter().map(|(_, item)| item).collect();
    let summary = IngestSummary {
        accepted: accepted.len(),
        rejected: errors.len(),
        errors,
    };
    // Rejections are counted with the answer that reports them: a request refused or failed
    // as a whole is sent again, and its rejections would be counted twice.
    if accepted.is_empty() {
        metrics::counter!(items.rejected).increment(summary.rejected as u64);
        m::request("rejected");
        return Ok(all_rejected(summary, items.noun));
    }
    pace(inner).await?;
    let appended = append(accepted).await;
    if !inner.config.max_lag.is_zero() {
        inner.marks.note((inner.lag)().in_log, Instant::now());
    }
    appended.map_err(|err| {
        m::request("failed");
        ApiError::from(err)
    })?;
    metrics::histogram!(m::APPEND_SECONDS).record(started.elapsed().as_secs_f64());
    metrics::counter!(items.accepted).increment(summary.accepted as u64);
    metrics::counter!(items.rejected).increment(summary.rejected as u64);
    m::request("accepted");
    Ok((StatusCode::OK, data(summary)).into_response())
}

/// Takes one of the in-flight slots, or refuses the request: `503` when every slot is taken,
/// `429` while the projector is too far behind. A refused body is drained (with the slot
/// still held, so draining counts against the limit) before the answer.
async fn admit(inner: &Inner, body: Body) -> Result<(SemaphorePermit<'_>, Body), ApiError> {
    let Ok(permit) = inner.in_flight.try_acquire() else {
        let full = ApiError::unavailable("too many ingest requests in flight; retry shortly", 1);
        return Err(refuse(inner, body, "overloaded", full).await);
    };
    if (inner.lag)().unprojected > inner.config.max_lag_events {
        let behind = projection_backlog(
            2,
            format!(
                "the projector is more than {} events behind; retry shortly",
                inner.config.max_lag_events
            ),
        );
        return Err(refuse(inner, body, "backlog", behind).await);
    }
    Ok((permit, body))
}

/// `429` with `Retry-After`: the projector is too far behind, as `message` says.
fn projection_backlog(retry_after_s: u32, message: String) -> ApiError {
    ApiError {
        retry_after_s: Some(retry_after_s),
        ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "projection_backlog", message)
    }
}

/// Waits while the oldest unprojected event has been in the log longer than `max_lag`
/// ([`crate::pacing`]); `429` when it still has after `max_wait`. The time waited is
/// `tally_ingest_pacing_seconds`.
async fn pace(inner: &Inner) -> Result<(), ApiError> {
    const POLL: Duration = Duration::from_millis(2);
    let config = &inner.config;
    if config.max_lag.is_zero() {
        return Ok(());
    }
    let started = Instant::now();
    let mut polled = false;
    loop {
        let now = Instant::now();
        let waited = now - started;
        if inner.marks.waited((inner.lag)(), now) <= config.max_lag {
            if polled {
                metrics::histogram!(m::PACING_SECONDS).record(waited.as_secs_f64());
            }
            return Ok(());
        }
        if waited >= config.max_wait {
            metrics::histogram!(m::PACING_SECONDS).record(waited.as_secs_f64());
            m::request("backlog");
            return Err(projection_backlog(
                1,
                format!(
                    "waited {} ms for the projector: the oldest event it has not counted yet has waited more than {} ms; retry shortly",
                    waited.as_millis(),
                    config.max_lag.as_millis()
                ),
            ));
        }
        tokio::time::sleep(POLL).await;
        polled = true;
    }
}

/// Counts a refusal as `outcome` and drains the body; answers `error`.
async fn refuse(inner: &Inner, body: Body, outcome: &'static str, error: ApiError) -> ApiError {
    m::request(outcome);
    drain(body, inner.config.max_body_bytes).await;
    error
}

/// Reads the body (at most `max_body_bytes`), validates its events and prices the accepted ones,
/// off the async runtime.
async fn parse(inner: &Inner, headers: &HeaderMap, body: Body) -> Result<BatchParse, ApiError> {
    let limits = inner.config.limits.clone();
    let now = inner.clock.now();
    let recorder = inner.recorder.clone();
    read_and_parse(inner, headers, body, move |bytes, format| {
        parse_batch(bytes, format, &limits, now).map(|mut batch| {
            recorder.price(batch.events.iter_mut().map(|(_, event)| event));
            batch
        })
    })
    .await
}

/// Reads the body (its format from `Content-Type`, at most `max_body_bytes`) and parses it
/// with `parse` off the async runtime; a body that cannot be split into items is refused.
async fn read_and_parse<T: Send + 'static>(
    inner: &Inner,
    headers: &HeaderMap,
    body: Body,
    parse: impl FnOnce(&[u8], BodyFormat) -> Result<T, BodyError> + Send + 'static,
) -> Result<T, ApiError> {
    let format = body_format(headers)?;
    let bytes = read_body(body, headers, inner.config.max_body_bytes).await?;
    tokio::task::spawn_blocking(move || parse(&bytes, format))
        .await
        .map_err(ApiError::internal)?
        .map_err(body_error)
}

/// Reads and discards a refused request's body (at most `max` bytes, nothing kept), so the
/// client receives the refusal instead of a connection reset in the middle of its upload.
async fn drain(body: Body, max: usize) {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len();
        if seen > max {
            return;
        }
    }
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyFormat::JsonArray);
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" | "" => Ok(BodyFormat::JsonArray),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl" | "application/x-jsonlines" => Ok(BodyFormat::Ndjson),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type {other} is not accepted; send application/json (a JSON array) or application/x-ndjson"),
        )
        .with_field("Content-Type")),
    }
}

async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        m::request("too_large");
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body exceeds {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    match axum::body::to_bytes(body, max).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(err) if is_length_limit(&err) => Err(too_large()),
        Err(err) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            format!("could not read request body: {err}"),
        )),
    }
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.to_string().contains("length limit") {
            return true;
        }
        source = e.source();
    }
    false
}

fn body_error(err: BodyError) -> ApiError {
    m::request("bad_body");
    match err {
        BodyError::TooManyEvents { .. } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            err.to_string(),
        ),
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", other.to_string()),
    }
}

/// 422 with the usual error envelope plus the per-item reasons (`what`: events or scores).
fn all_rejected(summary: IngestSummary, what: &str) -> Response {
    let first = summary.errors.first();
    let body = serde_json::json!({
        "error": {
            "code": format!("all_{what}_rejected"),
            "message": format!("all {} {what} were rejected; see data.errors", summary.rejected),
            "field": first.and_then(|e| e.field.clone()),
        },
        "data": summary,
    });
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}
