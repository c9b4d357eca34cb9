//! The counted events of the embedded store, for the drill-down (`GET /events`): written in
//! the projector's commit (so exactly the events the rollups counted, once each, priced as
//! counted), read newest first.
//!
//! Layout: `event_chunks`, one row per chunk of at most [`CHUNK`] events and [`CHUNK_BYTES`]
//! encoded bytes (four to a page) of one feature, one UTC day and one outcome (failed or not)
//! from one commit, the events sorted newest first and
//! stored with the log's record codec (events in columns, zstd-compressed), with the chunk's newest and oldest
//! `occurred_at`. Writing is one row per chunk (cheap beside the rollups); a query walks the
//! chunks of its feature (or all) from the newest down — only failed chunks when only failures
//! are asked for, the usual drill-down from an error-rate chart — decodes only what it reads,
//! and stops once no chunk left can hold an event newer than the oldest it would return.
//! A chunk covers at most an hour of `occurred_at`, so a window's query reads only the index
//! entries of chunks whose newest event lies in the window or the hour after it; the indexes
//! carry both ends of every chunk (and its feature and outcome), so chunks are only read to
//! be decoded. Retention deletes whole days.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, Transaction};
use tally_domain::drilldown::{newest_first, EventQuery};
use tally_domain::store::RawEvent;
use tally_schemas::UsageEvent;

use crate::codec::{decode_events, encode_events};
use crate::failure::Result;

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

/// Writes the counted events of a commit as chunks (inside the commit's transaction).
pub(super) fn write<'a>(
    tx: &Transaction,
    raw: impl IntoIterator<Item = &'a RawEvent>,
) -> Result<()> {
    let mut groups: BTreeMap<(&str, i64, bool), Vec<&UsageEvent>> = BTreeMap::new();
    for r in raw {
        let day = r.event.occurred_at_us.div_euclid(86_400_000_000);
        groups
            .entry((r.event.feature.as_str(), day, r.event.is_failure()))
            .or_default()
            .push(&r.event);
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO event_chunks (feature, day, newest_us, oldest_us, events, failed, payload) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for ((feature, day, failed), mut events) in groups {
        events.sort_by(|a, b| newest_first(a, b));
        // Cut where a chunk would hold CHUNK events or span SPAN_US.
        let mut chunks: Vec<&[&UsageEvent]> = Vec::new();
        let mut start = 0;
        for i in 1..=events.len() {
            let full = i - start == CHUNK;
            let spans = i < events.len()
                && events[start].occurred_at_us - events[i].occurred_at_us >= SPAN_US;
            if i == events.len() || full || spans {
                chunks.push(&events[start..i]);
                start = i;
            }
        }
        let mut fitted = Vec::new();
        for chunk in chunks {
            fit(chunk, &mut fitted)?;
        }
        for (chunk, payload) in fitted {
            insert.execute(params![
                feature,
                day,
                chunk[0].occurred_at_us,
                chunk[chunk.len() - 1].occurred_at_us,
                chunk.len() as i64,
                failed,
                payload,
            ])?;
        }
    }
    Ok(())
}

/// `events` encoded as one chunk, or cut into consecutive chunks of at most [`CHUNK_BYTES`].
fn fit<'e, 'a>(
    events: &'e [&'a UsageEvent],
    out: &mut Vec<(&'e [&'a UsageEvent], Vec<u8>)>,
) -> Result<()> {
    let payload = encode_events(events)?;
    if payload.len() <= CHUNK_BYTES || events.len() == 1 {
        out.push((events, payload));
        return Ok(());
    }
    // Cut into as many equal parts as the size asks for (a tenth to spare); a part that is
    // still too big is cut again.
    let parts = (payload.len() * 11 / 10)
        .div_ceil(CHUNK_BYTES)
        .clamp(2, events.len());
    let per = events.len().div_ceil(parts);
    for part in events.chunks(per) {
        fit(part, out)?;
    }
    Ok(())
}

/// The events `q` asks for, newest first.
pub(super) fn query(conn: &Connection, q: &EventQuery) -> Result<Vec<UsageEvent>> {
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
    let mut kept: Vec<UsageEvent> = Vec::new();
    while let Some(row) = rows.next()? {
        let newest: i64 = row.get(0)?;
        // Every chunk left is at most this new: done once the page is full and the oldest
        // event kept is newer than all of them.
        if kept.len() >= q.limit && kept.last().is_some_and(|e| e.occurred_at_us > newest) {
            break;
        }
        let payload: Vec<u8> = row.get(1)?;
        let events = decode_events(&payload)?;
        let before = kept.len();
        kept.extend(events.into_iter().filter(|e| q.admits(e)));
        if kept.len() > before {
            // Two copies of one event (the same id and time re-sent after the dedup window,
            // counted twice) are listed once, as ClickHouse's `tally_events` collapses them.
            kept.sort_by(newest_first);
            kept.dedup_by(|b, a| {
                (a.feature.as_str(), a.occurred_at_us, a.event_id.as_str())
                    == (b.feature.as_str(), b.occurred_at_us, b.event_id.as_str())
            });
            kept.truncate(q.limit);
        }
    }
    Ok(kept)
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

    fn raw(id: &str, us: i64) -> RawEvent {
        RawEvent {
            event: UsageEvent {
                event_id: id.into(),
                occurred_at_us: us,
                ..UsageEvent::example()
            },
            offset: 0,
            received_at_ms: 0,
        }
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
            write(&tx, &batch).expect("write");
            tx.commit().expect("commit");
        }
        let ids = |q: &EventQuery| -> Vec<String> {
            query(&conn, q)
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
        let mut batch: Vec<RawEvent> = (0..3_000u64)
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
        batch[17].event.error_message = Some(noise);
        let tx = conn.transaction().expect("tx");
        write(&tx, &batch).expect("write");
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
        let mut want: Vec<&UsageEvent> = batch.iter().map(|r| &r.event).collect();
        want.sort_by(|a, b| newest_first(a, b));
        let got = query(&conn, &everything(5_000)).expect("query");
        assert_eq!(got.iter().collect::<Vec<_>>(), want);
    }
}
