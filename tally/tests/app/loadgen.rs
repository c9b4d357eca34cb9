//! `tally loadgen`'s freshness probe against a feature that already has events: it waits for
//! the load's own events on top of those, not for the load's total.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use tally::loadgen::{run, IdStyle, LoadgenArgs};

fn args(target: &str, feature: &str) -> LoadgenArgs {
    LoadgenArgs {
        target: target.to_string(),
        key: ADMIN_KEY.to_string(),
        // 20 requests of 100 events, one every 10 ms: the load lasts about 0.2 s, ten of the
        // probe's 20-ms polls.
        rate: 10_000,
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
        // Every acknowledgement gets a freshness sample once the count covers it; before the
        // fix, the second round took the first round's 2,000 events for its own and stopped
        // at its first poll, with a sample for only the acks recorded by then.
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
