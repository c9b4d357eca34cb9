//! The analytics-store suites: [`analytics_store`] (commits, fencing, dedup memory, scans,
//! retention, reset), [`log_bindings`] (the log a store's checkpoints belong to, and
//! adoption) and [`older_rollup_keeps_its_numbers`] (an upgraded store). Each starts from an empty
//! store and panics with a description on the first deviation.

use futures::TryStreamExt;
use tally_domain::store::{AnalyticsStore, StoreError};
use tally_schemas::{Environment, UsageEvent};

use crate::t;

/// After an upgrade that added the prompt dimensions, then the experiment dimensions and the
/// sum of squared costs, `store` holds the one day row written in an older layout (7 requests,
/// 1 error, 123 pico-dollars), now with empty prompt and experiment dimensions (the prompt ones
/// as `prompt` says when the older layout had them) and no squared costs.
pub async fn older_rollup_keeps_its_numbers(
    store: &dyn AnalyticsStore,
    with_sketches: bool,
    prompt: (&str, &str),
) {
    use tally_domain::rollup::Resolution;
    use tally_domain::store::ScanRequest;
    let rows = store
        .scan(ScanRequest::everything(&[Resolution::Day], with_sketches))
        .await
        .expect("scan");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(
        (
            row.key.dims.prompt_id.as_str(),
            row.key.dims.prompt_version.as_str(),
            row.key.dims.experiment_id.as_str(),
            row.key.dims.variant.as_str(),
            row.rollup.requests,
            row.rollup.errors,
            row.rollup.cost.0,
            row.rollup.cost_squares
        ),
        (prompt.0, prompt.1, "", "", 7, 1, 123, 0)
    );
}

/// A stored rollup row as the upgrade tests see it: resolution, bucket, requests, encoded
/// latency sketch, encoded user sketch.
pub type SketchedRow = (tally_domain::rollup::Resolution, i64, u64, Vec<u8>, Vec<u8>);

/// After an upgrade of rows that kept their sketches inline: `rows` read back with the same sums
/// and the same sketches.
pub async fn inline_sketches_survive(store: &dyn AnalyticsStore, rows: &[SketchedRow]) {
    use tally_domain::rollup::Resolution;
    use tally_domain::store::ScanRequest;
    let all = [Resolution::Minute, Resolution::Hour, Resolution::Day];
    let read: Vec<_> = store
        .scan(ScanRequest::everything(&all, true))
        .await
        .expect("scan")
        .into_iter()
        .map(|r| {
            (
                r.key.resolution,
                r.key.bucket,
                r.rollup.requests,
                r.rollup.encode_latency(),
                r.rollup.encode_users(),
            )
        })
        .collect();
    let mut want = rows.to_vec();
    let mut got = read;
    want.sort_by_key(|r| (r.0.seconds(), r.1));
    got.sort_by_key(|r| (r.0.seconds(), r.1));
    assert_eq!(got, want, "sums and sketches after the upgrade");
    let sums = store
        .scan(ScanRequest::everything(&all, false))
        .await
        .expect("scan without sketches");
    assert_eq!(
        sums.iter().map(|r| r.rollup.requests).sum::<u64>(),
        rows.iter().map(|r| r.2).sum::<u64>()
    );
}

/// Runs every analytics-store check against `store`, which must be empty.
pub async fn analytics_store(store: &dyn AnalyticsStore) {
    use tally_domain::rollup::{fold, Resolution};
    use tally_domain::store::{
        Filter, LogPosition, PartitionCommit, PartitionState, Partitions, ProjectionCommit,
        ScanRequest, Span, StoreError, SumsOf,
    };

    let state = store
        .load_state(3600, &Partitions::All)
        .await
        .expect("load");
    assert!(
        state.partitions.is_empty(),
        "an empty store starts at the beginning"
    );

    let base = 1_767_225_600; // 2026-01-01T00:00:00Z
                              // Every fourth event of the first batch happened the day before (for retention below).
    let first: Vec<UsageEvent> = (0..50)
        .map(|i| {
            sample_event(
                i,
                base + i64::from(i) * 7 - if i % 4 == 0 { 86_400 } else { 0 },
                "chatbot",
                Environment::Production,
            )
        })
        .collect();
    let second: Vec<UsageEvent> = (50..80)
        .map(|i| {
            sample_event(
                i,
                base + i64::from(i) * 7,
                if i % 2 == 0 { "chatbot" } else { "search" },
                Environment::Staging,
            )
        })
        .collect();
    // The second batch is split over log partitions 0 and 3, so rows of one key come from
    // both partitions and must be merged by the store.
    let (second_p3, second_p0): (Vec<UsageEvent>, Vec<UsageEvent>) = second
        .iter()
        .cloned()
        .partition(|e| e.output_tokens % 5 < 2);
    let part =
        |events: &[UsageEvent], base_offset: i64, seen_s: u32, horizon: u32, applied: u64| {
            PartitionCommit {
                base_offset,
                deltas: fold(events),
                dedup_new: events
                    .iter()
                    .map(|e| (tally_domain::event_fingerprint(&e.event_id), seen_s))
                    .collect(),
                dedup_horizon_s: horizon,
                seals: Vec::new(),
                merged: Vec::new(),
                retired: Vec::new(),
                state: PartitionState {
                    next_offset: base_offset + events.len() as i64,
                    last_received_ms: i64::from(seen_s) * 1000,
                    events_applied: applied,
                    duplicates_dropped: 1,
                    anchor: 1_000 + base_offset as u64 + events.len() as u64,
                    dedup: Vec::new(),
                    generations: Vec::new(),
                },
                raw: events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        tally_domain::store::RawRecord::logged(
                            base_offset + i as i64,
                            i64::from(seen_s) * 1000,
                            vec![e.clone()],
                        )
                    })
                    .collect(),
                scores: Vec::new(),
            }
        };
    let commit1 = ProjectionCommit {
        epoch: 0,
        partitions: [(0, part(&first, 0, 10_000, 0, 50))].into_iter().collect(),
    };
    store.commit(commit1.clone()).await.expect("commit 1");
    let commit2 = ProjectionCommit {
        epoch: 0,
        partitions: [
            (
                0,
                part(&second_p0, 50, 20_000, 15_000, 50 + second_p0.len() as u64),
            ),
            (
                3,
                part(&second_p3, 0, 20_000, 15_000, second_p3.len() as u64),
            ),
        ]
        .into_iter()
        .collect(),
    };
    store.commit(commit2.clone()).await.expect("commit 2");

    // A commit built on a stale checkpoint (another projector moved the partition) is refused
    // and changes nothing.
    let refused = store.commit(commit1).await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "stale base offset must be refused, got {refused:?}"
    );
    let refused = store.commit(commit2).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))));

    let state = store
        .load_state(5_000, &Partitions::All)
        .await
        .expect("load");
    assert_eq!(
        state.position(),
        LogPosition(
            [
                (0, 50 + second_p0.len() as i64),
                (3, second_p3.len() as i64)
            ]
            .into_iter()
            .collect()
        )
    );
    let p0 = &state.partitions[&0];
    assert_eq!(
        (
            p0.last_received_ms,
            p0.events_applied,
            p0.duplicates_dropped,
            p0.anchor
        ),
        (
            20_000_000,
            50 + second_p0.len() as u64,
            1,
            1_000 + 50 + second_p0.len() as u64
        )
    );
    assert_eq!(state.events_applied(), 80);
    let fingerprints = |events: &[UsageEvent]| {
        let mut v: Vec<u64> = events
            .iter()
            .map(|e| tally_domain::event_fingerprint(&e.event_id))
            .collect();
        v.sort_unstable();
        v
    };
    for (partition, events) in [(0, &second_p0), (3, &second_p3)] {
        let mut seen: Vec<u64> = state.partitions[&partition]
            .dedup
            .iter()
            .map(|(fp, _)| *fp)
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            fingerprints(events),
            "partition {partition}: only its fingerprints inside the window come back"
        );
    }
    let only3 = store
        .load_state(5_000, &Partitions::Only([3].into_iter().collect()))
        .await
        .expect("load");
    assert_eq!(
        only3.partitions.keys().copied().collect::<Vec<_>>(),
        vec![3]
    );

    let everything = |with_sketches| ScanRequest::everything(&Resolution::STORED, with_sketches);
    let mut expected = fold(&first);
    tally_domain::rollup::apply(&mut expected, fold(&second));
    let rows = store.scan(everything(true)).await.expect("scan");
    let got: std::collections::BTreeMap<_, _> =
        rows.into_iter().map(|r| (r.key, r.rollup)).collect();
    assert_eq!(got, expected, "commits merge into the stored rows exactly");

    let sums_only = store.scan(everything(false)).await.expect("scan");
    assert!(
        sums_only
            .iter()
            .all(|r| r.rollup.latency.is_empty() && r.rollup.users.is_empty()),
        "no sketches unless asked"
    );
    let total: u64 = sums_only
        .iter()
        .filter(|r| r.key.resolution == Resolution::Hour)
        .map(|r| r.rollup.requests)
        .sum();
    assert_eq!(total, 80);

    let filtered = store
        .scan(ScanRequest {
            filter: Filter {
                feature: Some("chatbot".into()),
                environment: Some(Environment::Staging),
                ..Filter::default()
            },
            spans: vec![Span {
                resolution: Resolution::Minute,
                from: base + 60,
                to: base + 540,
            }],
            with_sketches: false,
        })
        .await
        .expect("scan");
    let want = second
        .iter()
        .filter(|e| {
            e.feature == "chatbot" && (base + 60..base + 540).contains(&e.occurred_at_secs())
        })
        .count();
    assert_eq!(
        filtered.iter().map(|r| r.rollup.requests).sum::<u64>(),
        want as u64
    );
    assert!(filtered.iter().all(|r| r.key.dims.feature == "chatbot"
        && r.key.resolution == Resolution::Minute
        && r.key.bucket >= base + 60
        && r.key.bucket < base + 540));

    // Bucket sums: per resolution and bucket, every dimension merged, summed by the store. The
    // expected sums come from the events themselves.
    let stored = [Resolution::Minute, Resolution::Hour, Resolution::Day];
    let spans: Vec<Span> = stored
        .iter()
        .map(|&resolution| Span {
            resolution,
            from: base - 86_400,
            to: base + 86_400,
        })
        .collect();
    type Sums = (u64, u64, u64, u64, u64, i128, u128, u64);
    for filter in [
        Filter::default(),
        Filter {
            feature: Some("chatbot".into()),
            ..Filter::default()
        },
    ] {
        let mut want: std::collections::BTreeMap<(Resolution, i64), Sums> = Default::default();
        for e in first
            .iter()
            .chain(&second)
            .filter(|e| filter.feature.as_ref().is_none_or(|f| *f == e.feature))
        {
            for resolution in stored {
                let width = resolution.seconds();
                let bucket = e.occurred_at_secs().div_euclid(width) * width;
                let w = want.entry((resolution, bucket)).or_default();
                w.0 += 1;
                w.1 += u64::from(e.status == tally_schemas::event::Status::Error);
                w.2 += e.latency_us;
                w.3 += e.input_tokens;
                w.4 += e.output_tokens;
                if let Some(p) = e.cost.picos() {
                    w.5 += i128::from(p);
                    w.6 += u128::from(p.unsigned_abs()).pow(2);
                } else {
                    w.7 += 1;
                }
            }
        }
        // Each choice of sums fills in those and leaves the others zero.
        type Expected = fn(Sums) -> Sums;
        let choices: [(SumsOf, Expected); 3] = [
            (SumsOf::Requests, |w| (w.0, 0, 0, 0, 0, 0, 0, 0)),
            (SumsOf::Money, |w| (w.0, 0, 0, 0, 0, w.5, w.6, w.7)),
            (SumsOf::All, |w| w),
        ];
        for (which, expected) in choices {
            let got: Vec<((Resolution, i64), Sums)> = store
                .bucket_sums(&filter, &spans, which)
                .await
                .expect("bucket sums")
                .into_iter()
                .map(|b| {
                    let r = &b.sums;
                    assert!(r.latency.is_empty() && r.users.is_empty(), "no sketches");
                    (
                        (b.resolution, b.bucket),
                        (
                            r.requests,
                            r.errors,
                            r.latency_sum_us,
                            r.input_tokens,
                            r.output_tokens,
                            r.cost.0,
                            r.cost_squares,
                            r.unpriced,
                        ),
                    )
                })
                .collect();
            assert_eq!(
                got,
                want.iter()
                    .map(|(k, w)| (*k, expected(*w)))
                    .collect::<Vec<_>>(),
                "{which:?} bucket sums of {filter:?}, in resolution and bucket order"
            );
        }
    }

    // Rows keep the prompt dimensions, and a scan filters by them.
    // The day rows of both days the batches cover that match `filter`.
    let days = |filter: Filter| {
        store.scan(ScanRequest {
            filter,
            spans: vec![Span {
                resolution: Resolution::Day,
                from: base - 86_400,
                to: base + 86_400,
            }],
            with_sketches: false,
        })
    };
    let version_2 = days(Filter {
        prompt_id: Some("greeter".into()),
        prompt_version: Some("2".into()),
        ..Filter::default()
    })
    .await
    .expect("scan");
    let want = first
        .iter()
        .chain(&second)
        .filter(|e| e.prompt_version.as_deref() == Some("2"))
        .count();
    assert!(want > 0);
    assert_eq!(
        version_2.iter().map(|r| r.rollup.requests).sum::<u64>(),
        want as u64
    );
    assert!(version_2
        .iter()
        .all(|r| r.key.dims.prompt_id == "greeter" && r.key.dims.prompt_version == "2"));

    // Rows keep the experiment dimensions and the sum of squared costs, and a scan filters by
    // them.
    let variant_b = days(Filter {
        experiment_id: Some("checkout-test".into()),
        variant: Some("b".into()),
        ..Filter::default()
    })
    .await
    .expect("scan");
    let in_b: Vec<&UsageEvent> = first
        .iter()
        .chain(&second)
        .filter(|e| e.variant.as_deref() == Some("b"))
        .collect();
    assert!(!in_b.is_empty());
    assert_eq!(
        variant_b.iter().map(|r| r.rollup.requests).sum::<u64>(),
        in_b.len() as u64
    );
    let squares: u128 = in_b
        .iter()
        .filter_map(|e| e.cost.picos())
        .map(|p| (p as u128) * (p as u128))
        .sum();
    assert!(squares > 0);
    assert_eq!(
        variant_b
            .iter()
            .map(|r| r.rollup.cost_squares)
            .sum::<u128>(),
        squares,
        "the sum of squared costs of variant b"
    );
    assert!(variant_b
        .iter()
        .all(|r| r.key.dims.experiment_id == "checkout-test" && r.key.dims.variant == "b"));

    // The drill-down returns exactly the counted events, newest first, in pages.
    let counted: Vec<UsageEvent> = first.iter().chain(&second).cloned().collect();
    drilldown_returns_the_counted_events(store, &counted).await;

    // Retention works in whole UTC days: a cutoff two minutes into 2026-01-01 removes every
    // row of 2025-12-31 (all resolutions) and nothing of 2026-01-01.
    let before = store.scan(everything(false)).await.expect("scan").len();
    store.prune(base + 120).await.expect("prune");
    let after = store.scan(everything(false)).await.expect("scan");
    let gone = expected.keys().filter(|k| k.bucket < base).count();
    assert!(gone > 0 && gone < before);
    assert_eq!(
        after.len(),
        before - gone,
        "prune drops exactly the rows of the days that ended before the cutoff"
    );
    assert!(after.iter().all(|r| r.key.bucket >= base));
    // The drill-down drops the same days.
    let kept = store
        .events(&tally_domain::drilldown::EventQuery {
            filter: Default::default(),
            from_us: 0,
            to_us: i64::MAX,
            after: None,
            limit: 1000,
        })
        .await
        .expect("events");
    assert_eq!(
        kept,
        newest_first(
            first
                .iter()
                .chain(&second)
                .filter(|e| e.occurred_at_secs() >= base)
                .cloned()
        ),
        "retention drops the raw events of the same days"
    );
    let requests_left: u64 = after
        .iter()
        .filter(|r| r.key.resolution == Resolution::Day)
        .map(|r| r.rollup.requests)
        .sum();
    assert_eq!(
        requests_left,
        80 - 13,
        "13 of the first batch were on the day before"
    );

    store.reset().await.expect("reset");
    assert!(store
        .scan(everything(false))
        .await
        .expect("scan")
        .is_empty());
    assert!(store
        .load_state(3600, &Partitions::All)
        .await
        .expect("load")
        .partitions
        .is_empty());

    scores_join_their_events(store).await;
}

/// Scores are kept once per `score_id` (the first copy in the log) and join the counted events
/// of the experiment asked for, whichever reached the log first.
async fn scores_join_their_events(store: &dyn AnalyticsStore) {
    use tally_domain::rollup::fold;
    use tally_domain::store::{
        PartitionCommit, PartitionState, ProjectionCommit, RawRecord, RawScore, ScoreQuery,
        ScoredEvent,
    };
    use tally_schemas::{Score, ScoreValue};

    let base = 1_767_225_600; // 2026-01-01T00:00:00Z
    let event =
        |id: &str, minute: i64, feature: &str, experiment: &str, variant: &str| UsageEvent {
            event_id: id.into(),
            occurred_at_us: (base + minute * 60) * 1_000_000,
            feature: feature.into(),
            experiment_id: Some(experiment.into()),
            variant: Some(variant.into()),
            ..UsageEvent::example()
        };
    let number =
        |id: &str, event: &str, name: &str, value: i64| Score::number(id, event, name, value);
    let label = |id: &str, event: &str, name: &str, label: &str| Score {
        score_id: id.into(),
        event_id: event.into(),
        name: name.into(),
        value: ScoreValue::Label(label.into()),
    };
    // Offset 0 holds scores, offset 1 events (one commit); offset 2 both kinds (another).
    let commit =
        |base_offset: i64, next: i64, events: Vec<(i64, UsageEvent)>, scores: Vec<(i64, Score)>| {
            let counted: Vec<UsageEvent> = events.iter().map(|(_, e)| e.clone()).collect();
            ProjectionCommit {
                epoch: 0,
                partitions: [(
                    0,
                    PartitionCommit {
                        base_offset,
                        deltas: fold(&counted),
                        dedup_new: Vec::new(),
                        dedup_horizon_s: 0,
                        seals: Vec::new(),
                        merged: Vec::new(),
                        retired: Vec::new(),
                        state: PartitionState {
                            next_offset: next,
                            last_received_ms: (base + 3_600) * 1000,
                            events_applied: counted.len() as u64,
                            ..PartitionState::default()
                        },
                        raw: events
                            .into_iter()
                            .map(|(offset, event)| {
                                RawRecord::logged(offset, (base + 3_600) * 1000, vec![event])
                            })
                            .collect(),
                        scores: scores
                            .into_iter()
                            .enumerate()
                            .map(|(i, (offset, score))| RawScore {
                                score,
                                offset,
                                position: i as u32,
                                received_at_ms: (base + 3_600) * 1000,
                            })
                            .collect(),
                    },
                )]
                .into_iter()
                .collect(),
            }
        };
    let staging = UsageEvent {
        environment: Environment::Staging,
        ..event("e2", 2, "chat", "x", "b")
    };
    store
        .commit(commit(
            0,
            2,
            vec![
                (1, event("e1", 1, "chat", "x", "a")),
                (1, staging),
                (1, event("e3", 3, "chat", "x", "b")),
                (1, event("e4", 4, "chat", "y", "a")),
                (1, event("e5", -5, "chat", "x", "a")),
                (1, event("e6", 6, "search", "x", "a")),
                (1, event("e9", 9, "chat", "x-by-name", "b")),
            ],
            vec![
                (0, number("s1", "e1", "helpfulness", 4_000_000)),
                (0, number("s2", "e2", "helpfulness", 2_000_000)),
                (0, label("s3", "late", "thumbs", "up")),
                (0, number("s1", "e1", "helpfulness", 9_000_000)),
                (0, number("s4", "e4", "helpfulness", 1_000_000)),
                (0, number("s5", "e5", "helpfulness", 1_000_000)),
                (0, number("s6", "e6", "helpfulness", 1_000_000)),
                // A score id used again for another event: its first copy (of e4, another
                // experiment's) decides, so it counts nowhere here.
                (0, number("s8", "e4", "helpfulness", 1_000_000)),
                (0, number("s8", "e1", "helpfulness", 5_000_000)),
            ],
        ))
        .await
        .expect("first commit");
    let query = |environment| ScoreQuery {
        experiment_ids: vec!["x".into(), "x-by-name".into()],
        feature: "chat".into(),
        environment,
        from_us: base * 1_000_000,
        to_us: (base + 3_600) * 1_000_000,
    };
    let sorted = |mut v: Vec<ScoredEvent>| {
        v.sort();
        v
    };
    let scored = |variant: &str, name: &str, value: ScoreValue| ScoredEvent {
        variant: variant.into(),
        name: name.into(),
        value,
    };
    // s1's first copy counts; s3 waits for its event; s4 (another experiment), s5 (before the
    // window) and s6 (another feature) are not the experiment's.
    assert_eq!(
        sorted(store.experiment_scores(&query(None)).await.expect("scores")),
        vec![
            scored("a", "helpfulness", ScoreValue::Micros(4_000_000)),
            scored("b", "helpfulness", ScoreValue::Micros(2_000_000)),
        ]
    );
    // The event s3 was waiting for arrives; s1 is sent again, and e3 gets a label.
    store
        .commit(commit(
            2,
            3,
            vec![(2, event("late", 7, "chat", "x", "a"))],
            vec![
                (2, number("s1", "e1", "helpfulness", 7_000_000)),
                (2, label("s7", "e3", "thumbs", "down")),
                (2, number("s9", "e9", "helpfulness", 3_000_000)),
            ],
        ))
        .await
        .expect("second commit");
    assert_eq!(
        sorted(store.experiment_scores(&query(None)).await.expect("scores")),
        vec![
            scored("a", "helpfulness", ScoreValue::Micros(4_000_000)),
            scored("a", "thumbs", ScoreValue::Label("up".into())),
            scored("b", "helpfulness", ScoreValue::Micros(2_000_000)),
            scored("b", "helpfulness", ScoreValue::Micros(3_000_000)),
            scored("b", "thumbs", ScoreValue::Label("down".into())),
        ],
        "a score joins its event when the event arrives later; a copy sent again counts once; the experiment's events count under either of its names"
    );
    // e2 happened in staging.
    assert_eq!(
        sorted(
            store
                .experiment_scores(&query(Some(Environment::Production)))
                .await
                .expect("scores")
        ),
        vec![
            scored("a", "helpfulness", ScoreValue::Micros(4_000_000)),
            scored("a", "thumbs", ScoreValue::Label("up".into())),
            scored("b", "helpfulness", ScoreValue::Micros(3_000_000)),
            scored("b", "thumbs", ScoreValue::Label("down".into())),
        ]
    );
    // Retention past every day drops the events and scores.
    store.prune(base + 2 * 86_400).await.expect("prune");
    assert!(store
        .experiment_scores(&query(None))
        .await
        .expect("scores")
        .is_empty());
    store.reset().await.expect("reset");
}

fn sample_event(i: u32, at_s: i64, feature: &str, environment: Environment) -> UsageEvent {
    use tally_schemas::event::{Cost, Operation, Status};
    UsageEvent {
        event_id: format!("conformance-{i}"),
        occurred_at_us: at_s * 1_000_000,
        feature: feature.into(),
        model: if i.is_multiple_of(3) {
            "gpt-4o".into()
        } else {
            "claude".into()
        },
        provider: if i.is_multiple_of(3) {
            "openai".into()
        } else {
            "anthropic".into()
        },
        environment,
        operation: Operation::Chat,
        status: if i.is_multiple_of(10) {
            Status::Error
        } else {
            Status::Success
        },
        error_message: i
            .is_multiple_of(10)
            .then(|| format!("upstream refused request {i}\nretry later")),
        error_message_truncated: i.is_multiple_of(20),
        latency_us: u64::from(i) * 12_345,
        input_tokens: u64::from(i) * 10,
        output_tokens: u64::from(i),
        cached_input_tokens: u64::from(i),
        cost: if i.is_multiple_of(7) {
            Cost::Unpriced
        } else {
            Cost::Computed(i64::from(i) * 1_000_003)
        },
        user_id: Some(format!("user-{}", i % 9)),
        // Every fifth names no prompt; the rest one of two versions.
        prompt_id: (!i.is_multiple_of(5)).then(|| "greeter".to_string()),
        prompt_version: (!i.is_multiple_of(5)).then(|| (1 + i % 2).to_string()),
        // Every third is in an experiment, in one of two variants.
        experiment_id: i.is_multiple_of(3).then(|| "checkout-test".to_string()),
        variant: i
            .is_multiple_of(3)
            .then(|| ["control", "b"][(i / 3 % 2) as usize].to_string()),
        ..UsageEvent::example()
    }
}

/// `events` sorted newest first (ties: the greater id first), by this suite, not the store.
fn newest_first(events: impl IntoIterator<Item = UsageEvent>) -> Vec<UsageEvent> {
    let mut sorted: Vec<UsageEvent> = events.into_iter().collect();
    sorted.sort_by_key(|e| std::cmp::Reverse((e.occurred_at_us, e.event_id.clone())));
    sorted
}

/// Every page of `query` (pages of `limit`, each after the last event of the one before).
async fn all_pages(
    store: &dyn AnalyticsStore,
    mut query: tally_domain::drilldown::EventQuery,
) -> Vec<UsageEvent> {
    let mut out: Vec<UsageEvent> = Vec::new();
    loop {
        query.after = out.last().map(tally_domain::drilldown::Cursor::of);
        let page = store.events(&query).await.expect("events");
        assert!(page.len() <= query.limit, "a page holds at most its limit");
        let done = page.len() < query.limit;
        out.extend(page);
        if done {
            return out;
        }
    }
}

/// The drill-down against `counted` (every event the store counted): each filter, the window,
/// and paging without gaps or repeats.
async fn drilldown_returns_the_counted_events(store: &dyn AnalyticsStore, counted: &[UsageEvent]) {
    use tally_domain::drilldown::{EventFilter, EventQuery, StatusFilter};
    let everything = EventQuery {
        filter: EventFilter::default(),
        from_us: 0,
        to_us: i64::MAX,
        after: None,
        limit: 7,
    };
    assert_eq!(
        all_pages(store, everything.clone()).await,
        newest_first(counted.iter().cloned()),
        "every counted event once, newest first"
    );
    let chatbot_errors = EventQuery {
        filter: EventFilter {
            feature: Some("chatbot".into()),
            status: Some(StatusFilter::Failed),
            ..EventFilter::default()
        },
        limit: 2,
        ..everything.clone()
    };
    let want = newest_first(
        counted
            .iter()
            .filter(|e| e.feature == "chatbot" && e.status != tally_schemas::event::Status::Success)
            .cloned(),
    );
    assert!(want.len() > 2, "several pages");
    assert!(want.iter().all(|e| e.error_message.is_some()));
    assert_eq!(all_pages(store, chatbot_errors).await, want);
    // A window, a variant and a user.
    let (from_us, to_us) = (counted[10].occurred_at_us, counted[45].occurred_at_us);
    let narrowed = EventQuery {
        filter: EventFilter {
            environment: Some(Environment::Production),
            experiment_id: Some("checkout-test".into()),
            variant: Some("control".into()),
            ..EventFilter::default()
        },
        from_us,
        to_us,
        limit: 3,
        ..everything.clone()
    };
    let want = newest_first(
        counted
            .iter()
            .filter(|e| {
                e.environment == Environment::Production
                    && e.variant.as_deref() == Some("control")
                    && (from_us..to_us).contains(&e.occurred_at_us)
            })
            .cloned(),
    );
    assert!(!want.is_empty());
    assert_eq!(all_pages(store, narrowed).await, want);
    let user = EventQuery {
        filter: EventFilter {
            user_id: Some("user-3".into()),
            model: Some(counted[0].model.clone()),
            provider: Some(counted[0].provider.clone()),
            ..EventFilter::default()
        },
        limit: 100,
        ..everything.clone()
    };
    // An empty value asks for the events that named none.
    let no_prompt = EventQuery {
        filter: EventFilter {
            prompt_id: Some(String::new()),
            ..EventFilter::default()
        },
        limit: 100,
        ..everything
    };
    let want = newest_first(counted.iter().filter(|e| e.prompt_id.is_none()).cloned());
    assert!(!want.is_empty());
    assert_eq!(store.events(&no_prompt).await.expect("events"), want);
    let want = newest_first(
        counted
            .iter()
            .filter(|e| {
                e.user_id.as_deref() == Some("user-3")
                    && e.model == counted[0].model
                    && e.provider == counted[0].provider
            })
            .cloned(),
    );
    assert!(!want.is_empty());
    assert_eq!(store.events(&user).await.expect("events"), want);
}

/// Log bindings and adoption, against an empty store: a store binds once and learns an id,
/// commits land only in the current epoch, an adoption keeps the rollups and starts every
/// adopted partition at offset 0 with the dedup memory it names, and reset forgets it all.
pub async fn log_bindings(store: &dyn AnalyticsStore) {
    use std::collections::BTreeMap;

    use tally_domain::log_binding::{check, LogBinding, LogDescription, LogIdentity, Watermarks};
    use tally_domain::rollup::{fold, Resolution};
    use tally_domain::store::{
        LogPosition, PartitionCommit, PartitionState, Partitions, ProjectionCommit, ScanRequest,
    };

    let identity = |name: &str, id: Option<&str>| LogIdentity {
        name: name.into(),
        id: id.map(String::from),
    };
    let binding = |epoch: u32, log: LogIdentity| LogBinding {
        epoch,
        log,
        bound_at: t(1),
        retired: None,
    };
    let plan_adoption =
        |bound: Option<&LogBinding>, position: &BTreeMap<i32, i64>, log: &LogDescription, at| {
            tally_domain::log_binding::plan_adoption(
                &check(bound, position, log),
                bound,
                position,
                log,
                at,
            )
        };
    let described = |log: LogIdentity, partitions: i32| LogDescription {
        identity: log,
        partitions: (0..partitions)
            .map(|p| (p, Watermarks { low: 0, high: 1000 }))
            .collect(),
    };
    assert!(store.bindings().await.expect("bindings").is_empty());
    assert_eq!(
        store
            .checkpoints(&Partitions::All)
            .await
            .expect("checkpoints")
            .position(),
        LogPosition::default()
    );

    let unnamed = identity("usage-a", None);
    let a = identity("usage-a", Some("A1"));
    for (bound, stored, why) in [
        (unnamed.clone(), unnamed.clone(), "the first binding sticks"),
        (
            identity("usage-b", Some("B")),
            unnamed,
            "another log does not replace it",
        ),
        (a.clone(), a.clone(), "an id is learned"),
        (
            identity("usage-a", Some("A2")),
            a.clone(),
            "a recorded id is never overwritten",
        ),
    ] {
        assert_eq!(
            store.bind(binding(0, bound)).await.expect("bind"),
            binding(0, stored),
            "{why}"
        );
    }

    // Epoch 0: partition 0 gets events 0..20 (clock 10,000 s), partition 1 events 20..30
    // (clock 12,000 s).
    let base = 1_767_225_600;
    let events: Vec<UsageEvent> = (0..40)
        .map(|i| {
            sample_event(
                i,
                base + i64::from(i) * 60,
                "chatbot",
                Environment::Production,
            )
        })
        .collect();
    let fps = |events: &[UsageEvent], seen_s: u32| -> Vec<(u64, u32)> {
        events
            .iter()
            .map(|e| (tally_domain::event_fingerprint(&e.event_id), seen_s))
            .collect()
    };
    let part = |events: &[UsageEvent], base_offset: i64, seen_s: u32| PartitionCommit {
        base_offset,
        deltas: fold(events),
        dedup_new: fps(events, seen_s),
        dedup_horizon_s: 0,
        seals: Vec::new(),
        merged: Vec::new(),
        retired: Vec::new(),
        state: PartitionState {
            next_offset: base_offset + events.len() as i64,
            last_received_ms: i64::from(seen_s) * 1000,
            events_applied: events.len() as u64,
            duplicates_dropped: 0,
            anchor: 77,
            dedup: Vec::new(),
            generations: Vec::new(),
        },
        raw: Vec::new(),
        scores: Vec::new(),
    };
    let (p0, p1, later) = (&events[..20], &events[20..30], &events[30..]);
    store
        .commit(ProjectionCommit {
            epoch: 0,
            partitions: [(0, part(p0, 0, 10_000)), (1, part(p1, 0, 12_000))]
                .into_iter()
                .collect(),
        })
        .await
        .expect("commit in epoch 0");
    let retired_position: BTreeMap<i32, i64> = [(0, 20), (1, 10)].into_iter().collect();
    assert_eq!(
        store
            .checkpoints(&Partitions::All)
            .await
            .expect("checkpoints")
            .position()
            .0,
        retired_position
    );

    // Adopt usage-b (same two partitions: each keeps its namesake's dedup memory).
    let b = identity("usage-b", Some("B1"));
    let plan = plan_adoption(
        Some(&binding(0, a.clone())),
        &retired_position,
        &described(b.clone(), 2),
        t(2),
    )
    .expect("adoptable");
    let mut stale = plan.clone();
    stale.retired_epoch = 7;
    assert!(
        matches!(
            store.adopt(&stale, 3600).await,
            Err(StoreError::Conflict(_))
        ),
        "an adoption planned on another epoch is refused"
    );
    let mut moved = plan.clone();
    moved.retired_position.insert(0, 19);
    assert!(
        matches!(
            store.adopt(&moved, 3600).await,
            Err(StoreError::Conflict(_))
        ),
        "an adoption planned on other checkpoints is refused"
    );
    assert_eq!(store.bindings().await.expect("bindings").len(), 1);
    store.adopt(&plan, 3600).await.expect("adopt");

    let bindings = store.bindings().await.expect("bindings");
    assert_eq!(bindings.len(), 2, "{bindings:?}");
    assert_eq!(
        (
            bindings[0].epoch,
            &bindings[0].log,
            bindings[0].retired.as_ref().map(|r| (&r.position, r.at))
        ),
        (0, &a, Some((&retired_position, t(2))))
    );
    assert_eq!(
        bindings[1],
        LogBinding {
            bound_at: t(2),
            ..binding(1, b.clone())
        }
    );
    let state = store
        .load_state(3600, &Partitions::All)
        .await
        .expect("load");
    assert_eq!(state.epoch, 1);
    assert_eq!(
        state.position().0,
        [(0, 0), (1, 0)].into_iter().collect::<BTreeMap<_, _>>(),
        "every adopted partition starts at its beginning"
    );
    let sorted = |mut v: Vec<(u64, u32)>| {
        v.sort_unstable();
        v
    };
    for (partition, events, clock) in [(0, p0, 10_000u32), (1, p1, 12_000)] {
        let s = &state.partitions[&partition];
        assert_eq!(
            (
                s.last_received_ms,
                s.events_applied,
                s.duplicates_dropped,
                s.anchor
            ),
            (i64::from(clock) * 1000, 0, 0, 0),
            "no record of the adopted log is known yet"
        );
        assert_eq!(
            sorted(s.dedup.clone()),
            sorted(fps(events, clock)),
            "partition {partition} keeps its namesake's fingerprints"
        );
    }

    // Commits of the retired epoch are refused; the adopted one's add to the same rollups.
    let refused = store
        .commit(ProjectionCommit {
            epoch: 0,
            partitions: [(0, part(later, 20, 13_000))].into_iter().collect(),
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Conflict(_))),
        "a commit of the retired epoch is refused, got {refused:?}"
    );
    store
        .commit(ProjectionCommit {
            epoch: 1,
            partitions: [(0, part(later, 0, 13_000))].into_iter().collect(),
        })
        .await
        .expect("commit in epoch 1");
    let rows: BTreeMap<_, _> = store
        .scan(ScanRequest::everything(&Resolution::STORED, true))
        .await
        .expect("scan")
        .into_iter()
        .map(|r| (r.key, r.rollup))
        .collect();
    assert_eq!(
        rows,
        fold(&events),
        "the retired log's counts stay and the adopted log's are added"
    );

    // A third log with three partitions: each starts with every partition's fingerprints.
    let c = identity("usage-c", Some("C1"));
    let position_b: BTreeMap<i32, i64> = [(0, 10), (1, 0)].into_iter().collect();
    let mut plan = plan_adoption(
        Some(&binding(1, b.clone())),
        &position_b,
        &described(c.clone(), 3),
        t(3),
    )
    .expect("adoptable");
    // A partition may start past its beginning (a topic that lost records goes on from its
    // end).
    plan.start.insert(2, 7);
    store.adopt(&plan, 3600).await.expect("adopt");
    let state = store
        .load_state(3600, &Partitions::All)
        .await
        .expect("load");
    assert_eq!(state.epoch, 2);
    assert_eq!(
        state.position().0,
        [(0, 0), (1, 0), (2, 7)]
            .into_iter()
            .collect::<BTreeMap<_, _>>()
    );
    let mut everything: Vec<(u64, u32)> = fps(p0, 10_000);
    everything.extend(fps(p1, 12_000));
    everything.extend(fps(later, 13_000));
    for partition in 0..3 {
        let s = &state.partitions[&partition];
        assert_eq!(s.last_received_ms, 13_000_000, "the latest source clock");
        assert_eq!(sorted(s.dedup.clone()), sorted(everything.clone()));
    }
    assert_eq!(
        store
            .load_state(3600, &Partitions::Only([2].into_iter().collect()))
            .await
            .expect("load")
            .partitions
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![2]
    );

    store.reset().await.expect("reset");
    assert!(store.bindings().await.expect("bindings").is_empty());
    assert_eq!(
        store
            .load_state(3600, &Partitions::All)
            .await
            .expect("load")
            .epoch,
        0
    );
    // A store started from scratch is bound again at the next epoch, so that a projector
    // still holding an earlier one is refused.
    assert_eq!(
        store.bind(binding(3, c.clone())).await.expect("bind"),
        binding(3, c.clone())
    );
    assert_eq!(
        store
            .load_state(3600, &Partitions::All)
            .await
            .expect("load")
            .epoch,
        3
    );
    let stale = store
        .commit(ProjectionCommit {
            epoch: 2,
            partitions: [(0, part(later, 0, 13_000))].into_iter().collect(),
        })
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    store.reset().await.expect("reset");
}

/// Sealed dedup generations ([`AnalyticsStore::seals_dedup`]): a seal replaces the open
/// chunks before it, its blocks read back as written; a merged part is stored like a seal but
/// leaves the open chunks (and what later loads take as open) alone, and a retired generation
/// is deleted (a store may keep it a while, as its replacement names it); a generation is no
/// longer loaded once the window passes its newest entry, and reset forgets it. A store that
/// does not seal refuses block reads.
pub async fn sealed_dedup(store: &dyn AnalyticsStore) {
    use tally_domain::dedup::{GenerationSummary, Placement};
    use tally_domain::store::{
        DedupGeneration, DedupSeal, PartitionCommit, PartitionState, Partitions, ProjectionCommit,
    };

    if !store.seals_dedup() {
        assert!(store.dedup_blocks(0, &[(1, 0)]).await.is_err());
        return;
    }
    let fp = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let merging = |base: i64,
                   new: Vec<(u64, u32)>,
                   seals: Vec<DedupSeal>,
                   horizon: u32,
                   merged: Vec<DedupSeal>,
                   retired: Vec<u64>| {
        let seen_s = new.iter().map(|(_, s)| *s).max().unwrap_or(horizon);
        ProjectionCommit {
            epoch: 0,
            partitions: [(
                0,
                PartitionCommit {
                    base_offset: base,
                    dedup_horizon_s: horizon,
                    state: PartitionState {
                        next_offset: base + new.len().max(1) as i64,
                        last_received_ms: i64::from(seen_s) * 1000,
                        events_applied: 0,
                        ..PartitionState::default()
                    },
                    dedup_new: new,
                    seals,
                    merged,
                    retired,
                    ..PartitionCommit::default()
                },
            )]
            .into_iter()
            .collect(),
        }
    };
    let commit = |base: i64, new: Vec<(u64, u32)>, seals: Vec<DedupSeal>, horizon: u32| {
        merging(base, new, seals, horizon, Vec::new(), Vec::new())
    };
    // What the store hands over, each summary once (a store may send equal copies).
    let summaries = |partition: i32, ids: Vec<u64>| async move {
        let mut got: Vec<(u64, Vec<u8>)> = store
            .dedup_summaries(partition, &ids)
            .try_collect()
            .await
            .expect("summaries");
        got.sort();
        got.dedup();
        got
    };
    let load = || async {
        let state = store
            .load_state(86_400, &Partitions::All)
            .await
            .expect("load");
        let p0 = state.partitions.get(&0).cloned().unwrap_or_default();
        let mut open = p0.dedup.clone();
        open.sort_unstable();
        (open, p0.generations)
    };

    // 1,024 ids in an open chunk, then two more sealed together with them: two blocks
    // (1,024 entries and 2).
    let first: Vec<(u64, u32)> = (1..=1_024).map(|i| (fp(i), 1_000)).collect();
    store
        .commit(commit(0, first.clone(), Vec::new(), 0))
        .await
        .expect("commit 1");
    let second: Vec<(u64, u32)> = (1_025..=1_026).map(|i| (fp(i), 1_100)).collect();
    let mut sealed: Vec<(u64, u32)> = first.iter().chain(&second).copied().collect();
    sealed.sort_unstable();
    let keys: Vec<u64> = sealed.iter().map(|(f, _)| *f).collect();
    let generation = DedupGeneration {
        id: 0xDEAD_BEEF_0000_0001,
        max_seen_s: 1_100,
        entries: 1_026,
    };
    let summary = GenerationSummary::build(&keys).expect("summary").encode();
    let seal = DedupSeal {
        generation,
        summary: summary.clone(),
        entries: sealed.clone(),
    };
    let blocks: Vec<Vec<(u64, u32)>> = seal.blocks().map(<[_]>::to_vec).collect();
    assert_eq!(blocks.len(), 2);
    store
        .commit(commit(1_024, second, vec![seal.clone()], 0))
        .await
        .expect("commit 2 seals");
    store
        .commit(commit(1_026, vec![(fp(6_000), 1_200)], Vec::new(), 0))
        .await
        .expect("commit 3");
    assert_eq!(
        load().await,
        (vec![(fp(6_000), 1_200)], vec![generation]),
        "the seal replaced the open chunks before it"
    );
    let id = generation.id;
    assert_eq!(
        summaries(0, vec![0xDEAD_BEEF_0000_0099, id]).await,
        vec![(id, summary.clone())],
        "a listed generation's summary, as sealed; none for a generation never sealed"
    );
    assert!(
        summaries(1, vec![id]).await.is_empty(),
        "nor for another partition's"
    );
    // Asked among thousands of names (a store may cut the names into several queries).
    let mut many: Vec<u64> = (1..=5_000u64).map(|i| 0xABCD_0000_0000_0000 + i).collect();
    many.push(id);
    assert_eq!(
        summaries(0, many).await,
        vec![(id, summary.clone())],
        "the one held among 5,001 names"
    );
    assert_eq!(
        store
            .dedup_blocks(0, &[(id, 1), (id, 0)])
            .await
            .expect("blocks"),
        vec![blocks[1].clone(), blocks[0].clone()],
        "blocks in the order asked"
    );
    assert!(store.dedup_blocks(0, &[(id, 2)]).await.is_err());
    assert!(store.dedup_blocks(1, &[(id, 0)]).await.is_err());

    // A merged run of one part holding the same entries replaces the generation.
    let placement = Placement {
        run: 0xDEAD_BEEF_0000_0002,
        lo: 0,
        hi: u64::MAX,
        replaces: vec![id],
    };
    let part = DedupGeneration {
        id: 0xDEAD_BEEF_0000_0003,
        max_seen_s: 1_100,
        entries: 1_026,
    };
    let part_summary = GenerationSummary::part(&keys, placement)
        .expect("part")
        .encode();
    let part_seal = DedupSeal {
        generation: part,
        summary: part_summary.clone(),
        entries: sealed.clone(),
    };
    store
        .commit(merging(
            1_027,
            vec![(fp(6_001), 1_250)],
            Vec::new(),
            0,
            vec![part_seal],
            vec![id],
        ))
        .await
        .expect("commit 3 merges");
    let (open, generations) = load().await;
    let mut want_open = vec![(fp(6_000), 1_200), (fp(6_001), 1_250)];
    want_open.sort_unstable();
    assert_eq!(
        open, want_open,
        "a merged part is not a seal: the open chunks stay open"
    );
    assert!(generations.contains(&part), "{generations:?}");
    assert!(
        generations.iter().all(|g| *g == part || *g == generation),
        "only the part, and the retired generation until it is deleted: {generations:?}"
    );
    assert_eq!(
        store
            .dedup_blocks(0, &[(part.id, 0), (part.id, 1)])
            .await
            .expect("the part's blocks"),
        blocks
    );
    assert_eq!(
        summaries(0, vec![part.id]).await,
        vec![(part.id, part_summary)],
        "a merged part's summary, as written"
    );

    // A day later the window has passed everything before: the generation is not loaded
    // any more (a store may keep its rows a while; loads never return it).
    store
        .commit(commit(
            1_028,
            vec![(fp(7_000), 100_000)],
            Vec::new(),
            100_000 - 86_400,
        ))
        .await
        .expect("commit 4");
    assert_eq!(
        load().await,
        (vec![(fp(7_000), 100_000)], Vec::new()),
        "the generation and the open chunk before the window expired"
    );

    store.reset().await.expect("reset");
    assert_eq!(load().await, (Vec::new(), Vec::new()));
}
