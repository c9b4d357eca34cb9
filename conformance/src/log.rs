//! The event-log suite: [`event_log`], against an empty log (the embedded SQLite log; a Kafka
//! topic on librdkafka's mock cluster and on a real broker). It checks the contract the
//! projector relies on, whatever the log groups into one record (an append for SQLite, a
//! message for Kafka): every appended event is read back once and intact, in offset order per
//! partition, from any position; `end` and `describe` agree with what was read; a record's
//! fingerprint is stable, and a log that can fetch one record says the same of it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tally_domain::store::{EventLog, LogPosition, LogRecord, RecordAt};
use tally_schemas::UsageEvent;

/// Events of the suite: unique ids, content that differs per event, `occurred_at` in the
/// minutes before now (so logs that apply event rules at read time accept them).
fn events(from: u64, n: u64) -> Vec<UsageEvent> {
    let now_us = chrono::Utc::now().timestamp_micros();
    (from..from + n)
        .map(|i| UsageEvent {
            event_id: format!("log-conformance-{i}"),
            occurred_at_us: now_us - (i as i64 + 1) * 1_000_000,
            input_tokens: i * 3,
            output_tokens: i,
            latency_us: 1_000 + i,
            user_id: Some(format!("user-{}", i % 7)),
            ..UsageEvent::example()
        })
        .collect()
}

/// Reads from `from` until `want` events arrived (or 60 s passed), `max_events` at a time.
async fn read_events(
    log: &dyn EventLog,
    from: &LogPosition,
    want: usize,
    max_events: usize,
) -> Vec<LogRecord> {
    let mut position = from.clone();
    let mut records: Vec<LogRecord> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while records.iter().map(|r| r.events.len()).sum::<usize>() < want {
        assert!(
            Instant::now() < deadline,
            "read {} of {want} events from {from:?}",
            records.iter().map(|r| r.events.len()).sum::<usize>()
        );
        let read = log
            .read(&position, max_events, Duration::from_millis(200))
            .await
            .expect("read");
        for record in read {
            assert!(
                record.offset >= position.next_offset(record.partition),
                "a record before the position asked for: {} at {}",
                record.partition,
                record.offset
            );
            position.advance(&record);
            records.push(record);
        }
    }
    records
}

fn by_id(records: &[LogRecord]) -> Vec<UsageEvent> {
    let mut events: Vec<UsageEvent> = records.iter().flat_map(|r| r.events.clone()).collect();
    events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    events
}

/// Runs every check against `log`, which must be empty.
pub async fn event_log(log: &dyn EventLog) {
    let empty = log.describe().await.expect("describe");
    assert!(
        empty.partitions.values().all(|w| w.low == w.high),
        "an empty log: {empty:?}"
    );
    assert!(!empty.identity.name.is_empty());

    // 120 events in 12 appends of 10.
    let mut sent = events(0, 120);
    for batch in sent.chunks(10) {
        log.append(batch.to_vec()).await.expect("append");
    }
    assert_eq!(log.appended_events(), 120);

    // Every event once and intact, each partition in offset order.
    let records = read_events(log, &LogPosition::default(), 120, 1_000).await;
    sent.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(by_id(&records), sent, "every event read back once, intact");
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in &records {
        offsets.entry(r.partition).or_default().push(r.offset);
    }
    for (partition, list) in &offsets {
        assert!(
            list.windows(2).all(|w| w[0] < w[1]),
            "partition {partition} read out of order: {list:?}"
        );
    }

    // `end` and `describe` agree with what was read.
    let end = log.end().await.expect("end");
    let read_to: BTreeMap<i32, i64> = offsets
        .iter()
        .map(|(p, list)| (*p, list.last().copied().unwrap_or(-1) + 1))
        .collect();
    assert_eq!(
        end.0, read_to,
        "end is the offset after each partition's newest record"
    );
    let described = log.describe().await.expect("describe");
    assert_eq!(described.identity, empty.identity, "the identity is stable");
    for (partition, next) in &read_to {
        let w = described.partitions[partition];
        assert!(
            w.low <= offsets[partition][0] && w.high == *next,
            "partition {partition}: watermarks {w:?}, records up to {next}"
        );
    }

    // A small batch size still hands out whole records, at least one.
    let few = log
        .read(&LogPosition::default(), 1, Duration::from_secs(5))
        .await
        .expect("read");
    let few = if few.is_empty() {
        read_events(log, &LogPosition::default(), 1, 1).await
    } else {
        few
    };
    assert!(!few.is_empty() && few.iter().all(|r| !r.events.is_empty()));

    // From a position inside the log: only what lies after it, and the same records (the same
    // fingerprints) as the first time.
    let first: BTreeMap<(i32, i64), &LogRecord> = records
        .iter()
        .map(|r| ((r.partition, r.offset), r))
        .collect();
    let middle = LogPosition(
        read_to
            .iter()
            .map(|(p, next)| (*p, offsets[p][0] + (next - offsets[p][0]) / 2))
            .collect(),
    );
    let after: usize = records
        .iter()
        .filter(|r| r.offset >= middle.next_offset(r.partition))
        .map(|r| r.events.len())
        .sum();
    let again = read_events(log, &middle, after, 1_000).await;
    for r in &again {
        let before = first
            .get(&(r.partition, r.offset))
            .expect("a record read before");
        assert_eq!(
            (r.fingerprint, &r.events),
            (before.fingerprint, &before.events),
            "partition {} offset {}: the same record again",
            r.partition,
            r.offset
        );
    }
    let fingerprints: std::collections::BTreeSet<u64> =
        records.iter().map(|r| r.fingerprint).collect();
    assert_eq!(
        fingerprints.len(),
        records.len(),
        "different records, different fingerprints"
    );

    // A log that fetches single records says the same of them.
    for r in records.iter().take(5) {
        match log
            .fingerprint_at(r.partition, r.offset)
            .await
            .expect("fingerprint_at")
        {
            RecordAt::Fingerprint(f) => assert_eq!(f, r.fingerprint),
            RecordAt::Unknown => {}
            RecordAt::Missing => panic!("record {} {} reported missing", r.partition, r.offset),
        }
    }

    // Nothing new: a read waits about as long as asked and returns nothing.
    let started = Instant::now();
    let nothing = log
        .read(&end, 100, Duration::from_millis(300))
        .await
        .expect("read");
    assert!(nothing.is_empty(), "nothing after the end: {nothing:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // Appends after a reader caught up reach it.
    let late = events(1_000, 10);
    log.append(late.clone()).await.expect("append");
    let new = read_events(log, &end, 10, 1_000).await;
    let mut late = late;
    late.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(by_id(&new), late);

    // Scores are records of their own, read back intact and in order; they do not count as
    // appended events.
    let before_scores = log.end().await.expect("end");
    let scores = vec![
        tally_schemas::Score::number("s1", "e1", "helpfulness", -2_500_000),
        tally_schemas::Score {
            score_id: "s2".into(),
            event_id: "e1".into(),
            name: "thumbs".into(),
            value: tally_schemas::ScoreValue::Label("up".into()),
        },
    ];
    log.append_scores(scores.clone())
        .await
        .expect("append scores");
    assert_eq!(log.appended_events(), 130);
    let mut position = before_scores.clone();
    let mut read_back = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_back.len() < scores.len() {
        assert!(
            Instant::now() < deadline,
            "read {read_back:?} of the scores"
        );
        for record in log
            .read(&position, 100, Duration::from_millis(200))
            .await
            .expect("read")
        {
            assert!(
                record.events.is_empty(),
                "a record of scores holds no events"
            );
            position.advance(&record);
            read_back.extend(record.scores);
        }
    }
    read_back.sort_by(|a, b| a.score_id.cmp(&b.score_id));
    assert_eq!(read_back, scores, "every score read back once, intact");
}
