//! The server keeps ingesting and answering when its log output cannot be written: standard
//! output and standard error both on a full disk (`/dev/full` answers every write with ENOSPC).
//!
//! Before log writes were made infallible, the first log line that failed was reported on
//! standard error, that report failed too, and the thread that logged panicked — at start-up the
//! whole process, under load the event log's writer thread, after which every append was refused.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::fs::OpenOptions;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{client_with_key, ADMIN_KEY, API};
use serde_json::{json, Value};

const BATCHES: usize = 5;
const PER_BATCH: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_log_output_stops_nothing() {
    let full = || {
        OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
    };
    // The banner with the address cannot be read back, so the port is chosen here.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::tally_command()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        // Every request and every projector step logs a line or more.
        .env("TALLY_LOG", "debug")
        .env("TALLY_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY)
        .stdout(Stdio::from(full()))
        .stderr(Stdio::from(full()))
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = client_with_key(ADMIN_KEY);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited with its output on a full disk: {status}");
        }
        let ready = client.get(format!("{base}/readyz")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let at = chrono::Utc::now().to_rfc3339();
    for i in 0..BATCHES {
        let batch: Vec<Value> = (0..PER_BATCH)
            .map(|j| {
                json!({"event_id": format!("full-{i}-{j}"), "occurred_at": at, "feature": "full-disk",
                "model": "m", "provider": "p", "environment": "production", "operation": "chat",
                "status": "success", "latency_ms": 5, "input_tokens": 1, "output_tokens": 1})
            })
            .collect();
        let r = client
            .post(format!("{base}/v1/events"))
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "batch {i}: {}", r.status());
    }

    let sent = (BATCHES * PER_BATCH) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m: Value = client
            .get(format!(
                "{base}{API}/features/full-disk/metrics?time_range=1h"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if m["data"]["realtime"]["total_requests"].as_u64() == Some(sent) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{sent} events sent, the metrics say {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The lines were written and lost, not left unwritten.
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lost: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tally_log_lines_lost_total "))
        .expect("tally_log_lines_lost_total on /metrics")
        .trim()
        .parse()
        .unwrap();
    assert!(lost >= 1.0, "no lost log line counted: {lost}");
    assert!(child.try_wait().unwrap().is_none(), "the server exited");
    child.kill().unwrap();
    child.wait().unwrap();
}
