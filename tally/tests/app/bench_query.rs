//! `tally bench-query`: it times whole answers and, when asked, writes each request's start
//! and latency so that slow requests can be placed in time.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use tally::loadgen::{bench_query, BenchQueryArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_query_writes_one_line_per_timed_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start(dir.path()).await;
    let out = dir.path().join("samples.txt");
    let report = bench_query(BenchQueryArgs {
        url: app.url(&format!("{API}/overview")),
        key: ADMIN_KEY.to_string(),
        requests: 7,
        concurrency: 1,
        console: false,
        samples_out: Some(out.clone()),
    })
    .await
    .unwrap();
    assert_eq!(report.samples, 7);

    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<(f64, f64)> = text
        .lines()
        .map(|l| {
            let (start, ms) = l.split_once(' ').unwrap();
            (start.parse().unwrap(), ms.parse().unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 7);
    // One connection: each request starts after the previous one has been answered (the file
    // has three decimals).
    for pair in lines.windows(2) {
        assert!(pair[1].0 >= pair[0].0 + pair[0].1 - 0.002, "{pair:?}");
    }
    let longest = lines.iter().map(|l| l.1).fold(0.0, f64::max);
    assert!(lines.iter().all(|l| l.1 > 0.0));
    assert!(
        (report.max - longest).abs() < 0.001,
        "{} {longest}",
        report.max
    );
    app.stop().await;
}
