//! What the fuzz targets run: each feeds untrusted bytes to the parser the product uses and
//! checks what comes back against properties that hold for every input (not against the
//! parser's own answers), so a target fails on a wrong answer as well as on a panic.
//!
//! Every target runs under [`Capped`], an allocator that aborts the run when one allocation,
//! or all live allocations together, exceed the limits below: a hostile body of at most
//! `MAX_INPUT` bytes must never make a parser claim memory out of proportion to it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use tally_domain::codec;
use tally_domain::hll::Hll;
use tally_domain::sketch::{LatencySketch, LatencyTotal};
use tally_query_api::listing::{ListQuery, ListSpec};
use tally_query_api::params::{
    filter_params, group_by_param, joined, limit_param, window_params, GroupKey, Params,
};
use tally_schemas::score::validate_score;
use tally_schemas::validate::{parse_items, BodyFormat};
use tally_schemas::{parse_batch, Limits};

/// The largest single allocation any target may make: the log codec's content limit, which is
/// also above ingest's 10 MiB body limit.
pub const MAX_ONE_ALLOCATION: usize = codec::MAX_PLAIN_BYTES;

/// The most that may be allocated at once while one input is handled.
pub const MAX_LIVE: usize = 256 * 1024 * 1024;

/// A global allocator that aborts on an allocation over the limits (a finding, like a panic).
pub struct Capped;

static LIVE: AtomicUsize = AtomicUsize::new(0);

fn admit(size: usize) {
    let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
    if size > MAX_ONE_ALLOCATION || live > MAX_LIVE {
        // No allocation here: write a fixed message and abort, which libFuzzer reports.
        let msg = b"tally-fuzz: allocation over the limit\n";
        // SAFETY: writing a static buffer to stderr.
        unsafe { libc_write(2, msg.as_ptr(), msg.len()) };
        std::process::abort();
    }
}

extern "C" {
    #[link_name = "write"]
    fn libc_write(fd: i32, buf: *const u8, count: usize) -> isize;
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        admit(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        admit(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

/// The instant every target takes as "now" (window rules depend on it).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

/// A body for `POST /v1/events` and `POST /v1/scores`: parsed as both. Every item is either
/// accepted or rejected, exactly once, under its own index; accepted events lie in the time
/// window the limits allow.
pub fn batch(body: &[u8], format: BodyFormat) {
    let limits = Limits::default();
    if let Ok(parsed) = parse_batch(body, format, &limits, now()) {
        let mut indexes: Vec<usize> = parsed.events.iter().map(|(i, _)| *i).collect();
        indexes.extend(parsed.errors.iter().map(|e| e.index));
        let n = indexes.len();
        indexes.sort_unstable();
        indexes.dedup();
        assert_eq!(indexes.len(), n, "an item answered twice");
        assert!(n <= limits.max_events, "more items than the limit");
        assert_eq!(
            indexes.last().map(|i| i + 1),
            Some(n),
            "an item not answered"
        );
        let oldest = (now() - limits.retention).timestamp_micros();
        let newest = (now() + limits.max_future_skew).timestamp_micros();
        for (_, event) in &parsed.events {
            assert!(
                (oldest..=newest).contains(&event.occurred_at_us),
                "accepted an event outside the window"
            );
            assert!(
                !event.event_id.is_empty(),
                "accepted an event without an id"
            );
        }
    }
    let _ = parse_items(body, format, limits.max_events, "score", validate_score);
}

/// Bytes read back from storage. Whatever decodes re-encodes to something that decodes to the
/// same value (events picked from a record are the record's); a dedup chunk in the raw format decodes only when whole, and a packed one
/// re-encodes to the same entries (sorted, without repeats); a sealed generation's summary that
/// decodes answers lookups; sketches added into totals from their bytes are refused exactly when
/// decoding refuses them.
pub fn stored(bytes: &[u8]) {
    if let Ok((events, scores)) = codec::decode_record(bytes) {
        if scores.is_empty() {
            let again = codec::encode_events(&events).expect("encode decoded events");
            assert_eq!(codec::decode_events(&again).expect("decode"), events);
        }
    }
    // A drill-down chunk of references into the log decodes or is refused; events picked from
    // a record by index are those of the whole record.
    let _ = codec::decode_event_refs(bytes);
    if let Ok(all) = codec::decode_events(bytes) {
        let last = (all.len() as u32).saturating_sub(1);
        let picked = codec::decode_events_at(bytes, &[0, 1, last, u32::MAX])
            .expect("picking events of a record that decodes");
        for (i, e) in picked {
            assert_eq!(all.get(i as usize), Some(&e));
        }
    }
    let mut entries = Vec::new();
    match codec::decode_dedup_chunk(bytes, 0, &mut entries) {
        Ok(()) => {
            if bytes.len().is_multiple_of(12) {
                assert_eq!(entries.len() * 12, bytes.len());
            }
            let mut again = Vec::new();
            codec::decode_dedup_chunk(&codec::encode_dedup_chunk(&entries), 0, &mut again)
                .expect("decode what was encoded");
            entries.sort_unstable();
            entries.dedup();
            assert_eq!(again, entries);
        }
        Err(_) => assert!(!bytes.len().is_multiple_of(12)),
    }
    // Stored sketches added straight into totals (as dashboards read them) are refused exactly
    // when decoding refuses them, and add what the decoded sketch adds.
    let latency = LatencySketch::decode(&mut &bytes[..]);
    let mut total = LatencyTotal::new();
    assert_eq!(
        total.add_encoded(&mut &bytes[..]).is_some(),
        latency.is_some()
    );
    if let Some(sketch) = &latency {
        let mut decoded = LatencyTotal::new();
        decoded.add(sketch);
        assert_eq!(total.sketch(), decoded.sketch());
    }
    let users = Hll::decode(&mut &bytes[..]);
    let mut merged = Hll::new();
    assert_eq!(merged.merge_encoded(&mut &bytes[..]).is_some(), users.is_some());
    if let Some(users) = &users {
        assert_eq!(&merged, users);
    }
    if let Some(sketch) = latency {
        let mut out = Vec::new();
        sketch.encode(&mut out);
        assert_eq!(LatencySketch::decode(&mut &out[..]), Some(sketch.clone()));
        if sketch.count() > 0 {
            let p50 = sketch
                .quantile_ms(0.5)
                .expect("a quantile of a non-empty sketch");
            let p99 = sketch
                .quantile_ms(0.99)
                .expect("a quantile of a non-empty sketch");
            assert!(p50 <= p99, "p50 {p50} above p99 {p99}");
        }
    }
    if let Ok(summary) = tally_domain::dedup::GenerationSummary::decode(bytes) {
        // A shape that passed validation answers lookups without reading out of bounds.
        let _ = summary.block_of(u64::from_le_bytes(
            bytes
                .get(..8)
                .map_or([0; 8], |b| b.try_into().unwrap_or([0; 8])),
        ));
        let _ = summary.block_of(0);
        assert_eq!(
            tally_domain::dedup::GenerationSummary::decode(&summary.encode()).ok(),
            Some(summary)
        );
    }
    if let Some(hll) = Hll::decode(&mut &bytes[..]) {
        let mut out = Vec::new();
        hll.encode(&mut out);
        let again = Hll::decode(&mut &out[..]).expect("re-encoded HLL decodes");
        assert_eq!(again.estimate(), hll.estimate());
    }
}

const LISTING: ListSpec = ListSpec {
    filters: &[
        ("status", "status", &["active", "archived"]),
        ("owner", "owner", &[]),
    ],
    sorts: &["name", "-created_at", "updated_at"],
};

/// A query string for the dashboards (window, filters, grouping, limit) and the listings. A
/// window that is accepted is non-empty and minute-aligned; a grouping holds each key once.
pub fn query(query: &[u8]) {
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(query) else {
        return;
    };
    let map: HashMap<String, String> = pairs.into_iter().collect();
    let declared = joined([
        window_params(),
        filter_params(),
        vec![group_by_param(&GroupKey::ALL), limit_param(1000)],
    ]);
    if let Ok(params) = Params::new(map.clone(), &declared) {
        if let Ok((window, _)) = params.window(now(), "24h") {
            assert!(window.from < window.to, "empty window accepted");
            assert_eq!(window.from % 60, 0);
            assert_eq!(window.to % 60, 0);
        }
        let _ = params.filter();
        if let Ok(keys) = params.group_by(&GroupKey::ALL, &[]) {
            for (i, k) in keys.iter().enumerate() {
                assert!(!keys[..i].contains(k), "a grouping key twice");
            }
        }
        if let Ok(limit) = params.limit(100, 1000) {
            assert!((1..=1000).contains(&limit));
        }
    }
    let _ = ListQuery::parse(map, &LISTING);
}
