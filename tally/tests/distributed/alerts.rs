//! Service tier: two alert evaluators share one Postgres — the application's own, and a second
//! one as another process would run. Whichever asks first holds the evaluator's lease and
//! notifies; and even
//! when the second evaluates without the lease, racing the first, every transition is recorded
//! once and every channel told once.
//! Run with `TALLY_TEST_DATABASE_URL=postgres://… cargo test -- --ignored` (`.ci/run` does).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use common::*;
use serde_json::{json, Value};
use tally::settings::Secret;
use tally_alerting::{Deliverer, Evaluator, RetryPolicy, Sender};
use tally_domain::clock::{Clock, ManualClock};
use tally_domain::store::{AlertQuery, ConfigStore};

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

/// A receiver that accepts everything and keeps the dedup keys it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                let key = headers
                    .get("tally-dedup-key")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                seen.lock().unwrap().push(key);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

/// An evaluator as another process runs it: on `config`, reading `analytics`, its own clock.
fn evaluator(
    config: Arc<dyn ConfigStore>,
    analytics: Arc<dyn tally_domain::store::AnalyticsStore>,
) -> Evaluator {
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(at("2026-03-16T12:00:00Z")));
    Evaluator {
        config: config.clone(),
        analytics,
        clock: clock.clone(),
        deliverer: Deliverer {
            config,
            clock,
            sender: Sender::new(Duration::from_secs(2)),
            retry: RetryPolicy::default(),
            public_url: "http://127.0.0.1:8080".into(),
        },
        interval: Duration::from_millis(50),
    }
}

fn event(id: &str, occurred: &str, status: &str, cost: &str) -> Value {
    json!({
        "event_id": id, "occurred_at": occurred, "feature": "chatbot",
        "model": "gpt-4o", "provider": "openai", "environment": "production",
        "operation": "chat", "status": status, "latency_ms": 100.0,
        "input_tokens": 1, "output_tokens": 1, "cost_usd": cost,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "service tier: needs TALLY_TEST_DATABASE_URL"]
async fn two_evaluators_on_one_postgres_record_and_notify_once() {
    let url = std::env::var("TALLY_TEST_DATABASE_URL").expect("TALLY_TEST_DATABASE_URL");
    let (admin_pool, schema, scoped) = scoped_postgres(&url, "alerts").await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path());
    s.database_url = Some(Secret::new(scoped.clone()));
    s.alert_interval_ms = 50;
    let app = TestApp::start_with(s).await;
    app.clock.set(at("2026-03-16T12:00:00Z"));

    // The second process: its own pool on the same database, the same analytics.
    let pool = tally_storage::config::postgres::connect(&scoped)
        .await
        .unwrap();
    let other: Arc<dyn ConfigStore> = Arc::new(tally_storage::PostgresConfigStore::new(pool));
    let second = evaluator(other.clone(), app.stores.analytics.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Whoever asks first holds the lease; the app's evaluator has been asking since it started.
    assert!(
        !other.hold_evaluator_lease().await.unwrap(),
        "the app holds the lease"
    );

    let (hook, received) = receiver().await;
    let (status, channel) = app
        .send(
            "POST",
            &format!("{API}/notification-channels"),
            Some(json!({"name": "ops", "type": "webhook", "url": hook})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let channel = channel["data"]["id"].clone();
    let (status, _) = app
        .send(
            "POST",
            &format!("{API}/budgets"),
            Some(
                json!({"name": "chat", "scope": "feature", "scope_value": "chatbot",
                          "period": "monthly", "amount_usd": "1", "channels": [channel]}),
            ),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app
        .send(
            "POST",
            &format!("{API}/alert-rules"),
            Some(
                json!({"name": "errors", "metric": "error_rate", "comparator": "gt",
                          "threshold": 10, "window": "1h", "channels": [channel]}),
            ),
        )
        .await;
    assert_eq!(status, 201);

    // The second evaluator races the first: its loop (which waits for the lease) and bare
    // rounds that skip the lease altogether.
    let looping = tokio::spawn(second.run(stopped));
    let racing = {
        let other = other.clone();
        let analytics = app.stores.analytics.clone();
        tokio::spawn(async move {
            let bare = evaluator(other, analytics);
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut recorded = 0;
            while Instant::now() < deadline {
                recorded += bare.evaluate().await.unwrap().len();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            recorded
        })
    };
    // $5 of $1 (80 %, 100 % and the forecast), half the requests failing (> 10 %).
    let (status, _) = app
        .post(&[
            event("x1", "2026-03-16T11:30:00Z", "error", "2.5"),
            event("x2", "2026-03-16T11:31:00Z", "success", "2.5"),
        ])
        .await;
    assert_eq!(status, 200);
    app.wait_projected().await;
    let bare_recorded = racing.await.unwrap();
    let _ = stop.send(true);
    looping.await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    let alerts = loop {
        let alerts = app
            .stores
            .config
            .list_alerts(&AlertQuery::default())
            .await
            .unwrap();
        let delivered = alerts
            .iter()
            .all(|a| a.deliveries.len() == 1 && a.deliveries[0].status.as_str() == "delivered");
        if alerts.len() == 4 && delivered {
            break alerts;
        }
        assert!(Instant::now() < deadline, "{alerts:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Three budget alerts (80 %, 100 %, forecast) and the rule's: each fired once.
    assert!(alerts.iter().all(|a| a.state.as_str() == "firing"));
    let mut keys: Vec<String> = received.lock().unwrap().clone();
    assert_eq!(keys.len(), 4, "one notification per transition: {keys:?}");
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 4);
    let transitions: i64 =
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {schema}.alert_transitions"))
            .fetch_one(&admin_pool)
            .await
            .unwrap();
    assert_eq!(transitions, 4, "every transition recorded once");
    assert!(bare_recorded <= 4, "the racer recorded {bare_recorded}");

    app.stop().await;
    sqlx::raw_sql(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&admin_pool)
        .await
        .unwrap();
}
