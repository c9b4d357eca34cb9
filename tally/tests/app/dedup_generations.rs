//! The dedup memory with sealed generations (a small open-set cap, so a few thousand events
//! seal many of them, and merge them into runs): duplicates are counted once whether the first
//! copy is still in the open set or sealed in the store behind a filter, in a generation or a
//! merged run, re-sending everything changes nothing, and a rebuild from the log gives the same
//! numbers. Expected values come from the events sent.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::topics::{counted, expected, send};
use common::*;
use futures::TryStreamExt;
use tally_domain::store::Partitions;

const OPEN_ENTRIES: usize = 100;

fn sealing(dir: &std::path::Path) -> tally::Settings {
    let mut s = settings(dir);
    s.dedup_open_entries = OPEN_ENTRIES;
    s.projector_batch_events = 50;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_generations_count_every_event_once_live_and_in_replay() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::start_with(sealing(dir.path())).await;
    seed_config(&app.stores).await;
    let events = corpus(3_000, 17);
    let all: Vec<&Sent> = events.iter().collect();
    let want = expected(&all);
    assert_eq!(want.0, 3_000, "the corpus ids are distinct");

    // Every 7th event twice: 429 duplicates, most of them within one batch of their first copy.
    send_with_duplicates(&app, &events, 250).await;
    let sent = sent_with_duplicates(events.len());
    app.wait_consumed(sent).await;
    assert_eq!(counted(&app).await, want);

    // Everything again, in another order: each one is a duplicate, most of them known only
    // through a sealed generation's block.
    let mut again = events.clone();
    again.reverse();
    send(&app, &again).await;
    app.wait_consumed(sent + 3_000).await;
    assert_eq!(counted(&app).await, want, "re-sent events count nothing");

    // Seals hold at most the cap (100), so the 3,000 ids made at least 30 of them; runs of
    // four merge, so far fewer are loaded, and every distinct id is held once.
    let window = app.stores.analytics.as_ref();
    let state = window.load_state(86_400, &Partitions::All).await.unwrap();
    let p0 = state.partitions[&0].clone();
    let ids: Vec<u64> = p0.generations.iter().map(|g| g.id).collect();
    let summaries: std::collections::HashMap<u64, Vec<u8>> =
        window.dedup_summaries(0, &ids).try_collect().await.unwrap();
    let loaded: Vec<_> = p0
        .generations
        .iter()
        .map(|g| {
            (
                *g,
                tally_projector::load_summary(&summaries[&g.id], None).unwrap(),
            )
        })
        .collect();
    let merged = loaded
        .iter()
        .filter(|(_, s)| s.placement().is_some())
        .count();
    assert!(
        merged > 0,
        "no merged run among {} generations",
        p0.generations.len()
    );
    let dedup = tally_projector::Dedup::new(86_400, Some(OPEN_ENTRIES), p0.dedup.clone(), loaded);
    assert_eq!(
        dedup.len(),
        3_000,
        "every distinct id is remembered once: sealed or open"
    );
    assert!(
        dedup.runs() < 15,
        "30 seals or more merge into fewer runs: {}",
        dedup.runs()
    );
    app.stop().await;

    // Replay from the log: the same decisions.
    let report = rebuild_offline(&sealing(dir.path())).await;
    assert_eq!(report.events_applied, 3_000);
    assert_eq!(report.duplicates_dropped, sent - 3_000 + 3_000);
    let app = TestApp::start_with(sealing(dir.path())).await;
    app.wait_projected().await;
    assert_eq!(counted(&app).await, want, "after the rebuild");

    // A restart resumes with the sealed generations from the store: still duplicates.
    send(&app, &events[..500]).await;
    app.wait_consumed(sent + 3_500).await;
    assert_eq!(counted(&app).await, want, "after a restart");
    app.stop().await;
}
