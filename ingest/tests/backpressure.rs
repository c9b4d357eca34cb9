//! Backpressure answers are explicit: 429 + Retry-After when the projector is behind, and
//! nothing is appended; while the oldest unprojected event has waited too long, requests wait
//! for the projector before they append.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tally_domain::access::Role;
use tally_domain::clock::SystemClock;
use tally_domain::pricing::PriceCache;
use tally_domain::recording::Recorder;
use tally_domain::store::EventLog;
use tally_domain::store::KeyStore;
use tally_http::auth::Gate;
use tally_ingest::{router, Backlog, IngestConfig, IngestState};
use tally_storage::{SqliteConfigStore, SqliteEventLog};
use tower::ServiceExt;

/// The ingest router over `state`, checking keys against a config store in `dir`, and an
/// `ingest` key for it.
async fn app(dir: &std::path::Path, state: IngestState) -> (axum::Router, String) {
    let config = Arc::new(SqliteConfigStore::open(dir).unwrap());
    let (secret, spec) = tally_domain::access::new_key("test", Role::Ingest, chrono::Utc::now());
    let change = tally_domain::audit::Change::local("test", chrono::Utc::now());
    config.create_api_key(spec, &change).await.unwrap();
    (
        router(state, Gate::new(config)).0,
        format!("Bearer {secret}"),
    )
}

fn body() -> String {
    let at = chrono::Utc::now().to_rfc3339();
    format!(
        r#"[{{"event_id":"a","occurred_at":"{at}","feature":"f","model":"m","provider":"p","environment":"staging","operation":"other","status":"success","latency_ms":1,"input_tokens":1,"output_tokens":1}}]"#
    )
}

#[tokio::test]
async fn projection_backlog_answers_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteEventLog::open(dir.path(), 8).unwrap());
    let lag = Arc::new(AtomicU64::new(1_000));
    let probe = lag.clone();
    let config = IngestConfig {
        max_lag_events: 500,
        ..IngestConfig::default()
    };
    let state = IngestState::new(
        Recorder::new(log.clone(), Arc::new(PriceCache::default())),
        Arc::new(SystemClock),
        config,
        Arc::new(move || Backlog {
            in_log: 1_000,
            unprojected: probe.load(Ordering::SeqCst),
            projecting: true,
        }),
    );
    let (app, key) = app(dir.path(), state).await;

    let response = app.clone().oneshot(post(&key)).await.unwrap();
    assert_backlog_refusal(response, "2").await;
    assert_eq!(
        log.appended_events(),
        0,
        "nothing is appended when refusing"
    );

    lag.store(0, Ordering::SeqCst);
    let response = app.oneshot(post(&key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(log.appended_events(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_large_upload_still_gets_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SqliteEventLog::open(dir.path(), 8).unwrap());
    let config = IngestConfig {
        max_lag_events: 0,
        ..IngestConfig::default()
    };
    let state = IngestState::new(
        Recorder::new(log, Arc::new(PriceCache::default())),
        Arc::new(SystemClock),
        config,
        Arc::new(|| Backlog {
            in_log: 1,
            unprojected: 1,
            projecting: true,
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (app, key) = app(dir.path(), state).await;
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let big = format!(
        "[{}]",
        vec![body().trim_matches(|c| c == '[' || c == ']').to_string(); 20_000].join(",")
    );
    assert!(big.len() > 3_000_000, "{}", big.len());
    for _ in 0..5 {
        let response = client
            .post(format!("http://{addr}/v1/events"))
            .header("content-type", "application/json")
            .header("authorization", &key)
            .body(big.clone())
            .send()
            .await;
        let response = response.expect("the refusal arrives as an HTTP answer, not a reset");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    }
}

/// A log whose projector has counted the first `projected` events (and runs while
/// `projecting`).
fn paced(
    dir: &std::path::Path,
    projected: Arc<AtomicU64>,
    projecting: Arc<AtomicBool>,
) -> (Arc<SqliteEventLog>, IngestState) {
    let log = Arc::new(SqliteEventLog::open(dir, 8).unwrap());
    let config = IngestConfig {
        max_lag: Duration::from_millis(50),
        max_wait: Duration::from_millis(300),
        ..IngestConfig::default()
    };
    let probe_log = log.clone();
    let state = IngestState::new(
        Recorder::new(log.clone(), Arc::new(PriceCache::default())),
        Arc::new(SystemClock),
        config,
        Arc::new(move || {
            let in_log = probe_log.appended_events();
            Backlog {
                in_log,
                unprojected: in_log.saturating_sub(projected.load(Ordering::SeqCst)),
                projecting: projecting.load(Ordering::SeqCst),
            }
        }),
    );
    (log, state)
}

/// A `429` for the projection backlog, with `Retry-After: retry_after`.
async fn assert_backlog_refusal(response: axum::response::Response, retry_after: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], retry_after);
    let json: serde_json::Value = serde_json::from_slice(
        &axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["error"]["code"], "projection_backlog");
}

fn post(key: &str) -> Request<Body> {
    Request::post("/v1/events")
        .header("content-type", "application/json")
        .header("authorization", key)
        .body(Body::from(body()))
        .unwrap()
}

#[tokio::test]
async fn a_projector_that_stalls_gets_refusals_once_its_oldest_event_waited_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let projected = Arc::new(AtomicU64::new(0));
    let (log, state) = paced(
        dir.path(),
        projected.clone(),
        Arc::new(AtomicBool::new(true)),
    );
    let (app, key) = app(dir.path(), state).await;

    // Nothing waits yet: the first batch is appended at once.
    let response = app.clone().oneshot(post(&key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(log.appended_events(), 1);

    // The projector never counts it; once it has waited past 50 ms, a request waits 300 ms
    // for the projector, then is refused, and nothing of it is appended.
    tokio::time::sleep(Duration::from_millis(80)).await;
    let response = app.clone().oneshot(post(&key)).await.unwrap();
    assert_backlog_refusal(response, "1").await;
    assert_eq!(
        log.appended_events(),
        1,
        "a refused request appends nothing"
    );

    // The projector catches up: the next request is appended at once.
    projected.store(1, Ordering::SeqCst);
    let response = app.oneshot(post(&key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(log.appended_events(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_the_projector_and_is_appended_after_it_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let projected = Arc::new(AtomicU64::new(0));
    let (log, state) = paced(
        dir.path(),
        projected.clone(),
        Arc::new(AtomicBool::new(true)),
    );
    let (app, key) = app(dir.path(), state).await;
    let response = app.clone().oneshot(post(&key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(80)).await;

    // The projector counts the first event 100 ms after the second request arrives: the
    // request is appended, after that and not before.
    let catch_up = {
        let log = log.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let before = log.appended_events();
            projected.store(1, Ordering::SeqCst);
            before
        })
    };
    let response = app.oneshot(post(&key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        catch_up.await.unwrap(),
        1,
        "the second batch waited for the projector"
    );
    assert_eq!(log.appended_events(), 2);
}

#[tokio::test]
async fn a_projector_that_is_not_running_does_not_hold_ingest_back() {
    let dir = tempfile::tempdir().unwrap();
    let projecting = Arc::new(AtomicBool::new(true));
    let (log, state) = paced(dir.path(), Arc::new(AtomicU64::new(0)), projecting.clone());
    let (app, key) = app(dir.path(), state).await;
    let response = app.clone().oneshot(post(&key)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(80)).await;

    // Stopped (say, refusing a log that is not its own): the events wait in the log.
    projecting.store(false, Ordering::SeqCst);
    for expected in 2..=4 {
        let response = app.clone().oneshot(post(&key)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(log.appended_events(), expected);
    }
}
