//! Helpers of the topic-change tests: settings on a Kafka topic, what the API must count for
//! the events sent, and the projector's refusal as `/readyz` and `/metrics` report it.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::Value;
use tally::Stores;
use tally_domain::store::Partitions;

use super::*;

pub fn kafka(dir: &std::path::Path, brokers: &str, topic: &str, group: &str) -> tally::Settings {
    let mut s = kafka_settings(dir, brokers, topic);
    s.kafka_group = group.to_string();
    s
}

/// What the API must answer for `events` (each distinct id counted once): requests, input
/// tokens and the exact cost as text.
pub fn expected(events: &[&Sent]) -> (u64, u64, String) {
    let mut seen = HashSet::new();
    let distinct: Vec<&&Sent> = events.iter().filter(|e| seen.insert(&e.id)).collect();
    (
        distinct.len() as u64,
        distinct.iter().map(|e| e.input).sum(),
        usd_text(distinct.iter().filter_map(|e| e.expected_pico()).sum()),
    )
}

pub async fn counted(app: &TestApp) -> (u64, u64, String) {
    let usage = app
        .data(&format!(
            "{API}/analytics/usage?time_range=7d&group_by=feature"
        ))
        .await;
    let spending = app
        .data(&format!("{API}/analytics/spending?time_range=7d"))
        .await;
    (
        usage["totals"]["requests"].as_u64().unwrap(),
        usage["totals"]["input_tokens"].as_u64().unwrap(),
        spending["total_cost_usd"].as_str().unwrap().to_string(),
    )
}

/// Sends `events` in batches; every batch must be acknowledged.
pub async fn send(app: &TestApp, events: &[Sent]) {
    let payload: Vec<Value> = events.iter().map(Sent::json).collect();
    for chunk in payload.chunks(400) {
        let (status, body) = app.post(chunk).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Waits until the projector refuses, and returns `/readyz`'s body.
pub async fn refusal(app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = app.get("/readyz").await;
        if body["pipeline"]["checkpoint_mismatch"].is_string() {
            assert_eq!(status, 503, "a refusing projector is not ready: {body}");
            assert_eq!(body["status"], "not_ready", "{body}");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the projector never refused: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The message must name both logs, the stored and current offsets and the ways out.
pub fn assert_names(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
}

/// The analytics store's checkpoints: per partition, the next offset to read.
pub async fn stored_offsets(stores: &Stores) -> BTreeMap<i32, i64> {
    stores
        .analytics
        .checkpoints(&Partitions::All)
        .await
        .unwrap()
        .position()
        .0
}

/// Fails a test that stalls (a Kafka call or a consumer's close that never returns) with the
/// stage it was in, instead of hanging the whole test run: after `limit` it prints the stage
/// and exits the test process with a failure (in `tests/app/`, the other modules' tests end
/// with it, and the run fails). Dropping it disarms it.
pub struct Watchdog {
    stage: std::sync::Arc<std::sync::Mutex<&'static str>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Watchdog {
    pub fn new(test: &'static str, limit: Duration) -> Self {
        let stage = std::sync::Arc::new(std::sync::Mutex::new("starting"));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (stage.clone(), done.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if d.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Written to the process's stderr itself: `eprintln!` in a test's thread is
            // captured by the harness, and the exit below would take the capture with it.
            let stage = *s.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(
                std::io::stderr().lock(),
                "{test}: stalled for {limit:?} at stage {stage:?}"
            );
            std::process::exit(101);
        });
        Self { stage, done }
    }

    pub fn stage(&self, name: &'static str) {
        eprintln!("stage: {name}");
        *self.stage.lock().unwrap_or_else(|p| p.into_inner()) = name;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
