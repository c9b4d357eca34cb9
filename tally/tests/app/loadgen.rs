//! `tally loadgen`'s freshness probe against a feature that already has events: it waits for
//! the load's own events on top of those, not for the load's total.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};

use crate::common;

use common::*;
use tally::loadgen::{run, IdStyle, LoadgenArgs};

fn args(target: &str, feature: &str) -> LoadgenArgs {
    LoadgenArgs {
        target: target.to_string(),
        key: ADMIN_KEY.to_string(),
        // 20 requests of 100 events, one every 100 ms: the load lasts about 2 s, a hundred of
        // the probe's 20-ms polls, so the first poll comes long before the last ack.
        rate: 1_000,
        duration: 1,
        batch_size: 100,
        concurrency: 2,
        spread_days: 0,
        feature: Some(feature.to_string()),
        total: Some(2_000),
        server_pid: None,
        no_freshness: false,
        query_every_ms: 0,
        slice_secs: 0,
        ids: IdStyle::Sequential,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_load_on_the_same_feature_is_timed_for_each_of_its_acks() {
    let dir = tempfile::tempdir().unwrap();
    // The load generator stamps events with the real time: the server runs on the real clock.
    let app = tally::Application::build(settings(dir.path()))
        .await
        .unwrap();
    let target = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    for round in 1..=2u64 {
        let report = run(args(&target, "loadgen-twice")).await.unwrap();
        assert_eq!(report.events_acked, 2_000, "round {round}");
        assert_eq!(report.requests, 20, "round {round}");
        assert_eq!(report.failed_requests, 0, "round {round}");
        // Every acknowledgement gets a freshness sample once the count covers it (how long
        // each took is checked against a server whose delay is known, below).
        let freshness = report.freshness_ms.expect("probed");
        assert_eq!(freshness.samples, 20, "round {round}");
        let metrics = reqwest::Client::new()
            .get(format!(
                "{target}/api/platform/ai-management/features/loadgen-twice/metrics?time_range=30d"
            ))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        assert_eq!(
            metrics["data"]["usage"]["total_requests"].as_u64(),
            Some(2_000 * round),
            "round {round}"
        );
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// Events a stand-in server has accepted: when each batch becomes countable, and its size.
#[derive(Clone, Default)]
struct Accepted(Arc<Mutex<Vec<(Instant, u64)>>>);

/// What the stand-in server counts for the feature before any load.
const EARLIER_EVENTS: u64 = 5_000;
/// How long after accepting a batch the stand-in server counts it.
const COUNT_DELAY: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_ack_is_fresh_only_once_the_server_counts_it_on_top_of_earlier_events() {
    // A stand-in for the server whose freshness is known: it answers each batch at once,
    // counts it COUNT_DELAY later, and counts EARLIER_EVENTS of the feature from before.
    let accepted = Accepted::default();
    let app =
        Router::new()
            .route(
                "/v1/events",
                post(
                    |State(accepted): State<Accepted>,
                     Json(events): Json<Vec<serde_json::Value>>| async move {
                        let countable = Instant::now() + COUNT_DELAY;
                        accepted
                            .0
                            .lock()
                            .unwrap()
                            .push((countable, events.len() as u64));
                        Json(serde_json::json!({ "accepted": events.len() }))
                    },
                ),
            )
            .route(
                "/api/platform/ai-management/features/{feature}/metrics",
                get(|State(accepted): State<Accepted>| async move {
                    let now = Instant::now();
                    let counted: u64 = accepted
                        .0
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|(countable, _)| *countable <= now)
                        .map(|(_, n)| n)
                        .sum();
                    Json(serde_json::json!({
                        "data": { "usage": { "total_requests": EARLIER_EVENTS + counted } }
                    }))
                }),
            )
            .with_state(accepted.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let report = run(args(&target, "seen-before")).await.unwrap();
    assert_eq!(report.events_acked, 2_000);
    let freshness = report.freshness_ms.expect("probed");
    assert_eq!(freshness.samples, 20);
    // Each ack was counted 300 ms after the server answered it, so none can have been seen
    // sooner than that less the answer's way back to the sender (a few milliseconds here).
    // Taking the earlier 5,000 events for the load's own would call every ack seen at the
    // first poll after it, within 20 ms.
    let answer_way_back_ms = 50.0;
    assert!(
        freshness.p50 >= COUNT_DELAY.as_millis() as f64 - answer_way_back_ms,
        "p50 {} ms",
        freshness.p50
    );
    let accepted_events: u64 = accepted.0.lock().unwrap().iter().map(|(_, n)| n).sum();
    assert_eq!(accepted_events, 2_000);
    server.abort();
}
