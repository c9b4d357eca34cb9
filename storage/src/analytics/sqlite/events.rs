//! The counted events of the embedded store, for the drill-down (`GET /events`): written in
//! the projector's commit (so exactly the events the rollups counted, once each, priced as
//! counted), read newest first.
//!
//! Layout: `event_chunks`, one row per chunk of at most [`CHUNK`] events and [`CHUNK_BYTES`]
//! encoded bytes (four to a page) of one feature, one UTC day and one outcome (failed or not)
//! from one commit, the events sorted newest first, with the chunk's newest and oldest
//! `occurred_at`. Beside the embedded log (the store opened with its id), a chunk holds
//! *references* into the log (format 5, `codec::encode_ref_rows`): per event the fields the
//! filters read, its record offset and position, and the counted cost where it is not the
//! log's — the log already keeps every event, so the drill-down need not keep a second copy.
//! Otherwise (the log is Kafka, or a chunk written before) it holds the events themselves,
//! in the log's record codec. Writing is one row per chunk (cheap beside the rollups); a query
//! walks the chunks of its feature (or all) from the newest down — only failed chunks when
//! only failures are asked for, the usual drill-down from an error-rate chart — decodes only
//! what it reads, and stops once no chunk left can hold an event newer than the oldest it
//! would return. References that may belong to the answer (filters and time match; the id,
//! which orders events of one microsecond, is in the log) are read from their log records
//! only once they could make the page, newest first, and only the events asked for are built.
//! A chunk covers at most an hour of `occurred_at`, so a window's query reads only the index
//! entries of chunks whose newest event lies in the window or the hour after it; the indexes
//! carry both ends of every chunk (and its feature and outcome), so chunks are only read to
//! be decoded. Retention deletes whole days; the log keeps its records at least as long
//! (`tally::retention`), so a reference finds its record unless its day is being deleted. A
//! chunk that points into another log than the attached one (the store adopted another log
//! file) is skipped: the events it counted are in the rollups, no longer in a log.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tally_domain::codec::{EventRef, RefRow, RefSheet};
use tally_domain::drilldown::{newest_first, EventQuery};
use tally_domain::store::RawEvent;
use tally_schemas::UsageEvent;

use crate::codec::{
    decode_event_refs, decode_events, decode_events_at, encode_events, encode_ref_rows,
};
use crate::failure::{Failure, Result};

/// The schema name the embedded log's file is attached as on the readers' connections.
pub(super) const LOG_SCHEMA: &str = "event_log";

/// Most events in one chunk.
pub(super) const CHUNK: usize = 512;

/// Most encoded bytes in one chunk (unless it is a single event): four rows fit one 16 KiB page.
/// SQLite keeps a row whole in its page when it can, so chunks of 5–8 KiB left every page a
/// third to a half empty (measured: 3,155 MB of pages for 1,704 MB of chunks at 100 M events).
const CHUNK_BYTES: usize = 3_900;

/// The longest stretch of `occurred_at` one chunk covers (an hour, in µs): a query for a
/// window ending at `to` need not look at chunks whose newest event is an hour or more past it.
const SPAN_US: i64 = 3_600_000_000;

pub(super) const TABLE: &str = "
CREATE TABLE IF NOT EXISTS event_chunks (
    id        INTEGER PRIMARY KEY,
    feature   TEXT NOT NULL,
    day       INTEGER NOT NULL,
    newest_us INTEGER NOT NULL,
    oldest_us INTEGER NOT NULL,
    events    INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    payload   BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS event_chunks_by_feature ON event_chunks (feature, newest_us, oldest_us);
CREATE INDEX IF NOT EXISTS event_chunks_by_feature_outcome ON event_chunks (feature, failed, newest_us, oldest_us);
CREATE INDEX IF NOT EXISTS event_chunks_by_time ON event_chunks (newest_us, oldest_us);
CREATE INDEX IF NOT EXISTS event_chunks_by_outcome ON event_chunks (failed, newest_us, oldest_us);
";

/// Writes the counted events of a commit as chunks (inside the commit's transaction): as
/// references into the log `log_id` when given, else as the events themselves.
pub(super) fn write<'a>(
    tx: &Transaction,
    raw: impl IntoIterator<Item = RawEvent<'a>>,
    log_id: Option<&str>,
) -> Result<()> {
    // Each event read once, in the order it sits in memory, into a small row (`RefSheet`):
    // sorting and encoding then move and read rows, not the events.
    let mut sheet = RefSheet::default();
    let mut groups: BTreeMap<(&str, i64, bool), Vec<RefRow>> = BTreeMap::new();
    for r in raw {
        let day = r.event.occurred_at_us.div_euclid(86_400_000_000);
        groups
            .entry((r.event.feature.as_str(), day, r.event.is_failure()))
            .or_default()
            .push(sheet.row(r));
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO event_chunks (feature, day, newest_us, oldest_us, events, failed, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let encode = |chunk: &[RefRow]| -> Result<Vec<u8>> {
        Ok(match log_id {
            Some(log_id) => encode_ref_rows(log_id, &sheet, chunk)?,
            None => encode_events(&chunk.iter().map(|r| r.event).collect::<Vec<_>>())?,
        })
    };
    // Bytes and events encoded so far (an average, so one large event does not cut the next
    // chunks small).
    let mut encoded = (0usize, 0usize);
    for ((feature, day, failed), mut rows) in groups {
        // A total order on distinct events (time, then id), so the unstable sort is as
        // deterministic as a stable one.
        rows.sort_unstable_by(RefRow::newest_first);
        // Cut where a chunk would hold CHUNK events or span SPAN_US.
        let mut chunks: Vec<&[RefRow]> = Vec::new();
        let mut start = 0;
        for i in 1..=rows.len() {
            let full = i - start == CHUNK;
            let spans = i < rows.len() && rows[start].at_us - rows[i].at_us >= SPAN_US;
            if i == rows.len() || full || spans {
                chunks.push(&rows[start..i]);
                start = i;
            }
        }
        let mut fitted = Vec::new();
        for chunk in chunks {
            // Cut as the bytes per event encoded so far say it will need, so that most events
            // are encoded once (a chunk of 512 references is ~5 KB).
            let parts = match encoded {
                (_, 0) => 1,
                (bytes, events) => (chunk.len() * bytes * 11 / 10)
                    .div_ceil(events)
                    .div_ceil(CHUNK_BYTES),
            };
            let per = chunk.len().div_ceil(parts.clamp(1, chunk.len()));
            for part in chunk.chunks(per) {
                fit(part, &encode, &mut fitted, &mut encoded)?;
            }
        }
        for (chunk, payload) in fitted {
            insert.execute(params![
                feature,
                day,
                chunk[0].at_us,
                chunk[chunk.len() - 1].at_us,
                chunk.len() as i64,
                failed,
                payload,
            ])?;
        }
    }
    Ok(())
}

/// `rows` encoded as one chunk, or cut into consecutive chunks of at most [`CHUNK_BYTES`];
/// `encoded` adds the bytes and events of every encoding.
fn fit<'e, 'a>(
    rows: &'e [RefRow<'a>],
    encode: &impl Fn(&[RefRow]) -> Result<Vec<u8>>,
    out: &mut Vec<(&'e [RefRow<'a>], Vec<u8>)>,
    encoded: &mut (usize, usize),
) -> Result<()> {
    let payload = encode(rows)?;
    encoded.0 += payload.len();
    encoded.1 += rows.len();
    if payload.len() <= CHUNK_BYTES || rows.len() == 1 {
        out.push((rows, payload));
        return Ok(());
    }
    // Cut into as many equal parts as the size asks for (a tenth to spare); a part that is
    // still too big is cut again.
    let parts = (payload.len() * 11 / 10)
        .div_ceil(CHUNK_BYTES)
        .clamp(2, rows.len());
    let per = rows.len().div_ceil(parts);
    for part in rows.chunks(per) {
        fit(part, encode, out, encoded)?;
    }
    Ok(())
}

/// The events `q` asks for, newest first. `log_id` is the id of the log attached as
/// [`LOG_SCHEMA`], if any: references into it are read from it.
pub(super) fn query(
    conn: &Connection,
    q: &EventQuery,
    log_id: Option<&str>,
) -> Result<Vec<UsageEvent>> {
    let upper = match &q.after {
        Some(c) => q.to_us.min(c.occurred_at_us.saturating_add(1)),
        None => q.to_us,
    };
    let mut sql = String::from(
        "SELECT newest_us, payload FROM event_chunks WHERE newest_us >= ?1 AND newest_us < ?2 AND oldest_us < ?3",
    );
    let mut values: Vec<rusqlite::types::Value> = vec![
        q.from_us.into(),
        upper.saturating_add(SPAN_US).into(),
        upper.into(),
    ];
    if let Some(feature) = &q.filter.feature {
        sql.push_str(" AND feature = ?4");
        values.push(feature.clone().into());
    }
    match q.filter.status {
        Some(s) if s.only_failures() => sql.push_str(" AND failed = 1"),
        Some(_) => sql.push_str(" AND failed = 0"),
        None => {}
    }
    // Newest first; of chunks equally new, the later written first (see below).
    sql.push_str(" ORDER BY newest_us DESC, id DESC");
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(values))?;
    // `kept`: events of the answer so far (newest first, at most `limit`); `pending`:
    // references that may belong to it, not yet read from the log.
    let mut kept: Vec<UsageEvent> = Vec::new();
    let mut pending: Vec<EventRef> = Vec::new();
    let mut elsewhere = 0usize;
    while let Some(row) = rows.next()? {
        let newest: i64 = row.get(0)?;
        // Every chunk left is at most this new: done once the page is full and its oldest
        // event is newer than all of them. The pending references are read first (newest
        // first, no more than the page needs): an event counted twice is listed once.
        if full_before(q, &kept, &pending, newest) {
            resolve(conn, &mut pending, q, &mut kept)?;
            if full_before(q, &kept, &pending, newest) {
                break;
            }
        }
        let payload: Vec<u8> = row.get(1)?;
        match decode_event_refs(&payload)? {
            Some((chunk_log, refs)) if Some(chunk_log.as_str()) == log_id => {
                pending.extend(refs.into_iter().filter(|r| q.may_admit(&r.stub)));
            }
            Some((_, refs)) => elsewhere += refs.len(),
            None => {
                let before = kept.len();
                kept.extend(decode_events(&payload)?.into_iter().filter(|e| q.admits(e)));
                if kept.len() > before {
                    tidy(&mut kept, q.limit);
                }
            }
        }
    }
    resolve(conn, &mut pending, q, &mut kept)?;
    if elsewhere > 0 {
        tracing::warn!(
            events = elsewhere,
            "drill-down chunks point into another event log than this data directory's (it was replaced and adopted): their events are counted but cannot be listed"
        );
    }
    Ok(kept)
}

/// Whether a reference that may belong surely does: its filters and time matched, so only
/// an event at the cursor's own time can still be excluded (by its id).
fn surely(q: &EventQuery, r: &EventRef) -> bool {
    q.after
        .as_ref()
        .is_none_or(|c| r.stub.occurred_at_us < c.occurred_at_us)
}

/// Whether the answer looks full with events newer than `newest`: counting the pending
/// references that surely belong as if they were read. It may be wrong only one way — an
/// event counted twice is listed once — so a `true` is confirmed by reading them.
fn full_before(q: &EventQuery, kept: &[UsageEvent], pending: &[EventRef], newest: i64) -> bool {
    let mut times: Vec<i64> = kept
        .iter()
        .map(|e| e.occurred_at_us)
        .chain(
            pending
                .iter()
                .filter(|r| surely(q, r))
                .map(|r| r.stub.occurred_at_us),
        )
        .collect();
    if times.len() < q.limit {
        return false;
    }
    let (_, &mut nth, _) = times.select_nth_unstable_by(q.limit - 1, |a, b| b.cmp(a));
    nth > newest
}

/// Sorts the answer newest first, lists an event counted twice once and cuts it to `limit`.
fn tidy(kept: &mut Vec<UsageEvent>, limit: usize) {
    // Two copies of one event (the same id and time re-sent after the dedup window, counted
    // twice) are listed once, as ClickHouse's `tally_events` collapses them.
    kept.sort_by(newest_first);
    kept.dedup_by(|b, a| {
        (a.feature.as_str(), a.occurred_at_us, a.event_id.as_str())
            == (b.feature.as_str(), b.occurred_at_us, b.event_id.as_str())
    });
    kept.truncate(limit);
}

/// Reads the pending references' events from their log records into `kept`, those the query
/// admits: newest first, `limit` (and any as new as the last of them) at a time, until the
/// answer is full with events newer than every reference left, which are then dropped. A
/// record is read once per batch. A record retention has deleted is skipped (its day is being
/// deleted from the chunks too); a record that holds another event where a reference points is
/// refused as corruption.
fn resolve(
    conn: &Connection,
    pending: &mut Vec<EventRef>,
    q: &EventQuery,
    kept: &mut Vec<UsageEvent>,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    pending.sort_by_key(|r| std::cmp::Reverse(r.stub.occurred_at_us));
    let mut read = conn.prepare_cached(&format!(
        "SELECT payload FROM {LOG_SCHEMA}.log WHERE record_offset = ?1"
    ))?;
    while let Some(first) = pending.first() {
        let newest = first.stub.occurred_at_us;
        if kept.len() >= q.limit && kept.last().is_some_and(|e| e.occurred_at_us > newest) {
            pending.clear();
            break;
        }
        let mut end = q.limit.min(pending.len());
        while end < pending.len()
            && pending[end].stub.occurred_at_us == pending[end - 1].stub.occurred_at_us
        {
            end += 1;
        }
        let mut batch: Vec<EventRef> = pending.drain(..end).collect();
        batch.sort_by_key(|r| (r.record, r.index));
        for refs in batch.chunk_by(|a, b| a.record == b.record) {
            let record = refs[0].record;
            let Some(payload) = read
                .query_row(params![record], |r| r.get::<_, Vec<u8>>(0))
                .optional()?
            else {
                continue;
            };
            let indexes: Vec<u32> = refs.iter().map(|r| r.index).collect();
            let mut found = decode_events_at(&payload, &indexes)?.into_iter().peekable();
            for r in refs {
                let event = found
                    .next_if(|(i, _)| *i == r.index)
                    .and_then(|(_, e)| r.resolve(e))
                    .ok_or_else(|| {
                    Failure::Corrupt(format!(
                        "the drill-down points at event {} of log record {record}, which holds another event: the log file is not the one the drill-down was written from (`tally rebuild` derives it again)",
                        r.index
                    ))
                })?;
                if q.admits(&event) {
                    kept.push(event);
                }
            }
        }
        tidy(kept, q.limit);
    }
    Ok(())
}

/// Retention, one bounded step: deletes at most `limit` chunks of the UTC days before the one
/// starting at `first_kept_day_s`; fewer than `limit` means none is left.
pub(super) fn prune_step(conn: &Connection, first_kept_day_s: i64, limit: usize) -> Result<usize> {
    // A chunk holds one day's events, so its newest event lies in its day: the time index
    // finds the chunks of the days before the first kept one without reading the table.
    Ok(conn.execute(
        "DELETE FROM event_chunks WHERE id IN
             (SELECT id FROM event_chunks WHERE newest_us < ?1 LIMIT ?2)",
        params![first_kept_day_s.saturating_mul(1_000_000), limit as i64],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_domain::drilldown::{Cursor, EventFilter};
    use tally_domain::store::RawRecord;

    fn raw(id: &str, us: i64) -> UsageEvent {
        UsageEvent {
            event_id: id.into(),
            occurred_at_us: us,
            ..UsageEvent::example()
        }
    }

    /// Each event counted alone, from a record of its own at offset 0.
    fn alone(events: &[UsageEvent]) -> Vec<RawRecord> {
        events
            .iter()
            .map(|e| RawRecord::logged(0, 0, vec![e.clone()]))
            .collect()
    }

    fn write_all(tx: &Transaction, records: &[RawRecord], log_id: Option<&str>) {
        write(tx, records.iter().flat_map(RawRecord::raw_events), log_id).expect("write");
    }

    fn everything(limit: usize) -> EventQuery {
        EventQuery {
            filter: EventFilter::default(),
            from_us: 0,
            to_us: i64::MAX,
            after: None,
            limit,
        }
    }

    #[test]
    fn an_event_counted_twice_is_listed_once_and_wild_cursors_are_harmless() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(TABLE).expect("schema");
        // Two commits count "a" (sent again after the dedup window): two chunks hold it.
        for batch in [
            vec![raw("a", 10), raw("b", 20)],
            vec![raw("a", 10), raw("c", 5)],
        ] {
            let tx = conn.transaction().expect("tx");
            write_all(&tx, &alone(&batch), None);
            tx.commit().expect("commit");
        }
        let ids = |q: &EventQuery| -> Vec<String> {
            query(&conn, q, None)
                .expect("query")
                .into_iter()
                .map(|e| e.event_id)
                .collect()
        };
        assert_eq!(ids(&everything(10)), ["b", "a", "c"]);
        assert_eq!(ids(&everything(2)), ["b", "a"]);
        // A cursor from the far future or past (a client may send any) does not overflow.
        let mut q = everything(10);
        q.after = Some(Cursor {
            occurred_at_us: i64::MAX,
            event_id: "z".into(),
        });
        assert_eq!(ids(&q), ["b", "a", "c"]);
        q.after = Some(Cursor {
            occurred_at_us: i64::MIN,
            event_id: String::new(),
        });
        assert!(ids(&q).is_empty());
    }

    #[test]
    fn chunks_stay_within_their_byte_size_and_hold_every_event_once() {
        let mut conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(TABLE).expect("schema");
        // 3,000 events of one hour with random-looking UUIDs (≈ 30 encoded bytes each: far
        // more than one chunk's bytes), and one whose message alone is larger than a chunk.
        let mut batch: Vec<UsageEvent> = (0..3_000u64)
            .map(|i| {
                let id = uuid::Uuid::from_u128(
                    u128::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                );
                raw(
                    &id.to_string(),
                    1_000_000_000 + (i as i64 * 7_919) % 3_000_000,
                )
            })
            .collect();
        // 6,000 characters that do not compress (a xorshift's digits).
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise: String = (0..6_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'0' + (x % 64) as u8)
            })
            .collect();
        batch[17].error_message = Some(noise);
        let tx = conn.transaction().expect("tx");
        write_all(&tx, &alone(&batch), None);
        tx.commit().expect("commit");
        let sizes: Vec<(i64, usize)> = conn
            .prepare("SELECT events, length(payload) FROM event_chunks")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("query")
            .collect::<std::result::Result<_, _>>()
            .expect("rows");
        assert_eq!(sizes.iter().map(|s| s.0).sum::<i64>(), 3_000);
        assert!(
            sizes.len() >= 3_000 * 16 / CHUNK_BYTES,
            "{} chunks",
            sizes.len()
        );
        for &(events, bytes) in &sizes {
            assert!(
                bytes <= CHUNK_BYTES || events == 1,
                "{events} events in {bytes} bytes"
            );
        }
        assert!(sizes
            .iter()
            .any(|&(events, bytes)| events == 1 && bytes > CHUNK_BYTES));
        let mut want: Vec<&UsageEvent> = batch.iter().collect();
        want.sort_by(|a, b| newest_first(a, b));
        let got = query(&conn, &everything(5_000), None).expect("query");
        assert_eq!(got.iter().collect::<Vec<_>>(), want);
    }

    /// A store's connection with an (in-memory) log attached as the embedded one is.
    fn beside_a_log() -> Connection {
        let conn = Connection::open_in_memory().expect("open");
        conn.execute_batch(TABLE).expect("schema");
        conn.execute_batch(&format!(
            "ATTACH DATABASE ':memory:' AS {LOG_SCHEMA};
             CREATE TABLE {LOG_SCHEMA}.log (record_offset INTEGER PRIMARY KEY, payload BLOB NOT NULL);"
        ))
        .expect("log");
        conn
    }

    fn append(conn: &Connection, record: i64, events: &[UsageEvent]) {
        conn.execute(
            &format!("INSERT INTO {LOG_SCHEMA}.log (record_offset, payload) VALUES (?1, ?2)"),
            params![record, encode_events(events).expect("encode")],
        )
        .expect("append");
    }

    fn commit(conn: &mut Connection, counted: &[RawRecord], log_id: Option<&str>) {
        let tx = conn.transaction().expect("tx");
        write_all(&tx, counted, log_id);
        tx.commit().expect("commit");
    }

    /// Every page of `q` (each after the previous one's last event) until one comes back empty.
    fn all_pages(conn: &Connection, q: &EventQuery, log_id: Option<&str>) -> Vec<Vec<UsageEvent>> {
        let mut pages = Vec::new();
        let mut q = q.clone();
        loop {
            let page = query(conn, &q, log_id).expect("query");
            if page.is_empty() {
                return pages;
            }
            q.after = page.last().map(tally_domain::drilldown::Cursor::of);
            pages.push(page);
        }
    }

    proptest::proptest! {
        /// Paging through any query gives exactly the counted events it admits, newest first,
        /// each once, in full pages — whether the chunks point into the log or copy the
        /// events. The expectation is worked out from the events sent, without the chunks:
        /// filter, sort by (time, id) descending. Times fall in a few microseconds, so pages
        /// end inside runs of events of the same time (told apart by their ids, in the log).
        #[test]
        fn pages_hold_exactly_the_admitted_counted_events_newest_first(
            events in proptest::collection::vec(
                (0i64..12, 0u8..2, 0u8..3, proptest::bool::weighted(0.8), 0u32..1_000),
                1..90,
            ),
            record_sizes in proptest::collection::vec(1usize..9, 1..40),
            commits in 1usize..4,
            again in proptest::option::of(0usize..90),
            (feature, status, limit, from, to) in (
                proptest::option::of(0u8..2),
                proptest::option::of(0u8..4),
                1usize..7,
                0i64..4,
                6i64..14,
            ),
        ) {
            use tally_domain::drilldown::StatusFilter;
            use tally_schemas::event::{Cost, Status};
            let features = ["f", "g"];
            let logged: Vec<UsageEvent> = events
                .iter()
                .enumerate()
                .map(|(i, &(at, f, st, _, salt))| UsageEvent {
                    // Ids that do not follow the order sent.
                    event_id: format!("{:03}-{i}", salt),
                    occurred_at_us: 1_000_000_000 + at,
                    feature: features[f as usize].into(),
                    status: [Status::Success, Status::Error, Status::Timeout][st as usize],
                    cost: Cost::Computed(i as i64),
                    ..UsageEvent::example()
                })
                .collect();
            // The log's records, and what the projector counted of each (some events are
            // duplicates it skipped; the others it priced anew); one counted event may come
            // again in a later record and be counted twice (re-sent after the dedup window).
            let mut records: Vec<Vec<UsageEvent>> = Vec::new();
            let mut counted: Vec<RawRecord> = Vec::new();
            let mut next = 0;
            for size in record_sizes.iter().cycle() {
                if next == logged.len() {
                    break;
                }
                let end = (next + size).min(logged.len());
                counted.push(RawRecord::judged(
                    records.len() as i64,
                    0,
                    logged[next..end].to_vec(),
                    |e| {
                        let i: usize = e.event_id.rsplit('-').next()?.parse().ok()?;
                        events[i].3.then(|| {
                            e.cost = Cost::Computed(7_000 + i as i64);
                            false
                        })
                    },
                ));
                records.push(logged[next..end].to_vec());
                next = end;
            }
            let all: Vec<UsageEvent> = counted.iter().flat_map(|r| r.events().to_vec()).collect();
            proptest::prop_assert_eq!(all.len(), events.iter().filter(|e| e.3).count());
            if let Some(c) = again.and_then(|i| all.get(i % all.len().max(1)).cloned()) {
                // Counted the same both times (which copy a store lists is not specified).
                let copy = logged.iter().find(|e| e.event_id == c.event_id).expect("logged").clone();
                counted.push(RawRecord::judged(records.len() as i64, 0, vec![copy.clone()], |e| {
                    e.cost = c.cost;
                    Some(false)
                }));
                records.push(vec![copy]);
            }
            let q = EventQuery {
                filter: EventFilter {
                    feature: feature.map(|f| features[f as usize].to_string()),
                    status: status.map(|s| [StatusFilter::Success, StatusFilter::Error, StatusFilter::Timeout, StatusFilter::Failed][s as usize]),
                    ..EventFilter::default()
                },
                from_us: 1_000_000_000 + from,
                to_us: 1_000_000_000 + to,
                after: None,
                limit,
            };
            let mut want: Vec<UsageEvent> = counted
                .iter()
                .flat_map(|r| r.events().to_vec())
                .filter(|e| q.admits(e))
                .collect();
            want.sort_by(newest_first);
            want.dedup_by(|b, a| a.event_id == b.event_id);
            for log_id in [Some("the-log"), None] {
                let mut conn = beside_a_log();
                for (offset, events) in records.iter().enumerate() {
                    append(&conn, offset as i64, events);
                }
                let per = counted.len().div_ceil(commits).max(1);
                for part in counted.chunks(per) {
                    commit(&mut conn, part, log_id);
                }
                let pages = all_pages(&conn, &q, log_id);
                let got: Vec<UsageEvent> = pages.concat();
                proptest::prop_assert_eq!(&got, &want, "{:?}", log_id);
                for page in pages.iter().rev().skip(1) {
                    proptest::prop_assert_eq!(
                        page.len(),
                        limit,
                        "{:?}: pages of {:?}",
                        log_id,
                        pages.iter().map(|p| p.iter().map(|e| (e.occurred_at_us - 1_000_000_000, e.event_id.clone())).collect::<Vec<_>>()).collect::<Vec<_>>()
                    );
                }
            }
        }
    }

    #[test]
    fn references_read_the_log_and_skip_what_it_no_longer_holds() {
        let mut conn = beside_a_log();
        let a = |id: &str, us: i64| UsageEvent {
            event_id: id.into(),
            occurred_at_us: us,
            ..UsageEvent::example()
        };
        append(&conn, 0, &[a("a", 10), a("b", 20)]);
        append(&conn, 1, &[a("c", 30)]);
        commit(
            &mut conn,
            &[
                // "b" was a duplicate when record 0 was read.
                RawRecord::judged(0, 0, vec![a("a", 10), a("b", 20)], |e| {
                    (e.event_id == "a").then_some(true)
                }),
                RawRecord::logged(1, 0, vec![a("c", 30)]),
            ],
            Some("log-1"),
        );
        let ids = |conn: &Connection, log_id| -> Vec<String> {
            query(conn, &everything(10), log_id)
                .expect("query")
                .into_iter()
                .map(|e| e.event_id)
                .collect()
        };
        assert_eq!(ids(&conn, Some("log-1")), ["c", "a"]);
        // Chunks of another log (the store adopted a new log file) are not read from this one.
        assert!(ids(&conn, Some("log-2")).is_empty());
        assert!(ids(&conn, None).is_empty());
        // A record retention deleted: its event is no longer listed, the others are.
        conn.execute(
            &format!("DELETE FROM {LOG_SCHEMA}.log WHERE record_offset = 1"),
            [],
        )
        .expect("delete");
        assert_eq!(ids(&conn, Some("log-1")), ["a"]);
        // A log whose record 0 holds other events than were counted from it is refused.
        conn.execute(&format!("DELETE FROM {LOG_SCHEMA}.log"), [])
            .expect("delete");
        append(&conn, 0, &[a("x", 11)]);
        let err = query(&conn, &everything(10), Some("log-1")).expect_err("refused");
        assert!(err.to_string().contains("log record 0"), "{err}");
    }
}
