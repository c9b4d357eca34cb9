//! kill -9 during ingest: after a restart every acknowledged event is counted exactly once.
//!
//! Each batch carries its own feature name, so per-feature counts show per-batch outcomes: an
//! acknowledged batch must count fully, an unacknowledged one fully or not at all (a record is
//! atomic). Re-sending everything afterwards must change nothing for batches already counted.
//! The dedup memory seals a generation every 1,000 ids, so kills land around seals too and the
//! re-sent ids are mostly found through sealed generations' stored blocks.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{client_with_key, ADMIN_KEY};
use serde_json::{json, Value};

const BATCHES: usize = 240;
const PER_BATCH: usize = 200;

fn start(dir: &std::path::Path) -> (Child, String) {
    let mut child = common::tally_command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("TALLY_LOG", "warn")
        .env("TALLY_DEDUP_OPEN_ENTRIES", "1000")
        .env("TALLY_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(base.starts_with("http://"), "unexpected banner: {line}");
    (child, base)
}

fn batch(i: usize) -> Vec<Value> {
    let at = chrono::Utc::now().to_rfc3339();
    (0..PER_BATCH)
        .map(|j| json!({"event_id": format!("crash-{i}-{j}"), "occurred_at": at, "feature": format!("crash-{i:03}"),
            "model": "m", "provider": "p", "environment": "production", "operation": "chat", "status": "success",
            "latency_ms": 5, "input_tokens": 1, "output_tokens": 1}))
        .collect()
}

async fn counts(client: &reqwest::Client, base: &str) -> BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready: Value = client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["status"] == "ready" && ready["pipeline"]["lag_events"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no catch-up: {ready}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list: Value = client
        .get(format!(
            "{base}/api/platform/ai-management/features?time_range=1h"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["metrics"]["total_requests"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_ingest_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = start(dir.path());
    let client = client_with_key(ADMIN_KEY);
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..4 {
        let (client, base, acked, next) =
            (client.clone(), base.clone(), acked.clone(), next.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= BATCHES {
                    return;
                }
                let sent = client
                    .post(format!("{base}/v1/events"))
                    .json(&batch(i))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        acked.lock().unwrap().insert(i);
                    }
                    _ => return, // the server is gone
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < BATCHES / 3 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let acked: HashSet<usize> = acked.lock().unwrap().clone();
    assert!(
        acked.len() < BATCHES,
        "the kill should interrupt the stream"
    );

    let (mut child, base) = start(dir.path());
    let after_crash = counts(&client, &base).await;
    for i in 0..BATCHES {
        let n = after_crash
            .get(&format!("crash-{i:03}"))
            .copied()
            .unwrap_or(0);
        if acked.contains(&i) {
            assert_eq!(
                n, PER_BATCH as u64,
                "acknowledged batch {i} must be counted exactly once"
            );
        } else {
            assert!(
                n == 0 || n == PER_BATCH as u64,
                "batch {i} partially counted: {n}"
            );
        }
    }
    // Clients retry everything they did not see acknowledged (and here, everything): no change
    // for what was already counted, and the rest arrives exactly once.
    for i in 0..BATCHES {
        let r = client
            .post(format!("{base}/v1/events"))
            .json(&batch(i))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let after_retry = counts(&client, &base).await;
    for i in 0..BATCHES {
        assert_eq!(
            after_retry.get(&format!("crash-{i:03}")).copied(),
            Some(PER_BATCH as u64),
            "batch {i}"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
