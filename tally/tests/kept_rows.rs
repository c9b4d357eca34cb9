//! The query API keeps the rows of closed buckets between dashboard reads
//! (`query-api/src/row_cache.rs`): answers from kept rows equal answers read afresh, and a
//! late event, a retention pass or a restart never leaves a kept row in place of what the
//! store holds. Counts are checked against the events sent. A test binary of its own (not one of
//! `app/`'s modules), so the cache's counters on `/metrics` are this test's alone.
#![allow(clippy::unwrap_used)]

mod common;

use chrono::{DateTime, Duration, Timelike, Utc};
use common::*;
use serde_json::{json, Value};

/// The dashboards that read closed buckets through the query API's kept rows
/// (`query-api/src/row_cache.rs`).
fn kept_rows_paths() -> Vec<String> {
    let mut paths = Vec::new();
    for range in ["1h", "24h", "7d", "30d"] {
        paths.push(format!("{API}/features/chatbot/metrics?time_range={range}"));
        paths.push(format!(
            "{API}/features/chatbot/metrics?time_range={range}&environment=production"
        ));
    }
    paths
}

async fn kept_rows_answers(app: &TestApp) -> Vec<Value> {
    let mut out = Vec::new();
    for path in kept_rows_paths() {
        out.push(app.data(&path).await);
    }
    out
}

/// Closed buckets this process's dashboards took from kept rows (`/metrics`).
async fn kept_bucket_hits(app: &TestApp) -> u64 {
    app.metric("tally_query_cached_buckets_total{outcome=\"hit\"}")
        .await
        .map_or(0, |line| {
            line.split_whitespace()
                .last()
                .unwrap()
                .parse::<f64>()
                .unwrap() as u64
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_rows_of_closed_buckets_never_outlive_a_change() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    seed_config(&app.stores).await;
    let events = corpus(3000, 31);
    send_with_duplicates(&app, &events, 500).await;
    app.wait_projected().await;

    // Asked twice: the second answers come from kept rows, and are the same.
    let first = kept_rows_answers(&app).await;
    let hits = kept_bucket_hits(&app).await;
    let again = kept_rows_answers(&app).await;
    assert!(
        kept_bucket_hits(&app).await > hits,
        "the second pass read kept buckets"
    );
    assert_same_answers(&json!(first), &json!(again));

    // Late events into closed buckets of every resolution the answers read: a day, an hour
    // and a minute, all long ended by the clock.
    let late: Vec<Sent> = [
        Duration::days(3) + Duration::hours(2),
        Duration::hours(5) + Duration::minutes(7),
        Duration::minutes(10),
        Duration::days(20),
    ]
    .iter()
    .enumerate()
    .map(|(i, back)| Sent {
        id: format!("late-{i}"),
        at: now() - *back,
        feature: "chatbot".into(),
        environment: "production".into(),
        ..events[0].clone()
    })
    .collect();
    send_with_duplicates(&app, &late, 500).await;
    app.wait_projected().await;
    let after = kept_rows_answers(&app).await;
    // The windows end at the start of the clock's next minute.
    let end = now().with_second(0).unwrap() + Duration::minutes(1);
    let chatbot = |from: DateTime<Utc>, env: Option<&str>| {
        events
            .iter()
            .chain(&late)
            .filter(|e| e.feature == "chatbot" && e.at >= from && e.at < end)
            .filter(|e| env.is_none_or(|env| e.environment == env))
            .count()
    };
    let windows = [
        Duration::hours(1),
        Duration::hours(24),
        Duration::days(7),
        Duration::days(30),
    ];
    for (i, len) in windows.iter().enumerate() {
        for (j, env) in [None, Some("production")].into_iter().enumerate() {
            let answer = &after[i * 2 + j];
            assert_eq!(
                answer["usage"]["total_requests"],
                chatbot(end - *len, env),
                "{len} {env:?}"
            );
        }
    }
    let hits = kept_bucket_hits(&app).await;
    app.stop().await;

    // The same store read afresh (nothing kept) answers the same.
    let app = TestApp::start(dir.path()).await;
    let fresh = kept_rows_answers(&app).await;
    assert_same_answers(&json!(after), &json!(fresh));
    assert!(hits > 0);

    // A retention pass drops whole days: the kept rows of those days go with them.
    let consumed = app
        .stores
        .analytics
        .load_state(0, &tally_domain::store::Partitions::All)
        .await
        .unwrap()
        .position();
    let kept = kept_rows_answers(&app).await;
    tally::retention::prune_once(&app.stores, now(), Duration::days(2), &consumed)
        .await
        .unwrap();
    let pruned = kept_rows_answers(&app).await;
    assert_ne!(
        kept[7]["usage"], pruned[7]["usage"],
        "the pruned days are gone"
    );
    let first_kept_day = (now() - Duration::days(2))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    assert_eq!(
        pruned[7]["usage"]["total_requests"],
        events
            .iter()
            .chain(&late)
            .filter(|e| e.feature == "chatbot" && e.environment == "production")
            .filter(|e| e.at >= first_kept_day.max(end - Duration::days(30)) && e.at < end)
            .count()
    );
    app.stop().await;
}
