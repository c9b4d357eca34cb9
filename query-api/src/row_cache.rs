//! Closed buckets' rows kept between reads: a dashboard asked again (a console refreshing, the
//! next user opening the same page) reads from the store only the buckets whose rows changed,
//! and takes the rest as they were handed over last time — the rows themselves (for a
//! [`RowFold`]) or the store's sums of them ([`BucketSums`]).
//!
//! Invariants:
//! - Exact: a kept bucket holds exactly what the store handed over for it (rows: keys, sums
//!   and sketches byte for byte as stored; sums: the bucket's [`BucketSums`], or none), and
//!   the caller gets it as it gets what is read now (rows through the same [`RowFold::add`])
//!   — never a second way of computing a number.
//! - Never stale: a bucket is kept with the store's [`RowVersions`] version taken before it
//!   was read, and used only while that is still the bucket's version; a store without row
//!   versions (written by other processes: the distributed store) keeps nothing here. The
//!   embedded store's versions see every change Tally makes (the data directory's lock keeps
//!   other Tally processes out); a file changed by hand under a running server is not seen.
//! - Only closed buckets (ended by the clock) are kept, only rows read with their sketches,
//!   and a read is kept only when it succeeded as a whole.
//! - Bounded: at most `TALLY_QUERY_CACHE_MIB` of rows (their bytes as counted by
//!   [`Bucket::weight`]); the least useful buckets leave first. 0 turns it off.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};
use quick_cache::sync::Cache;
use quick_cache::Weighter;
use tally_domain::rollup::{Resolution, Rollup, RollupKey};
use tally_domain::store::{
    BucketSums, Filter, RowFold, RowSketches, RowVersions, ScannedRow, Span, StoreResult, SumsOf,
};

/// The default bound of the kept rows, MiB (`TALLY_QUERY_CACHE_MIB`).
pub const DEFAULT_MIB: u64 = 32;

/// Spans of more buckets than this are read whole, never kept (a custom window of years).
const MOST_BUCKETS_PER_SPAN: i64 = 2_000;

/// The kept rows of closed buckets (see the module's invariants).
pub struct RowCache {
    buckets: Option<Cache<BucketKey, Arc<Bucket>, ByBytes>>,
}

/// What was read of a bucket: its rows with their sketches, or the store's sums of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Read {
    Rows,
    Sums(SumsOf),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct BucketKey {
    filter: Filter,
    read: Read,
    resolution: Resolution,
    bucket: i64,
}

/// What the store handed over for one bucket, and the version it was read at.
pub struct Bucket {
    version: u64,
    resolution: Resolution,
    bucket: i64,
    kept: Kept,
    bytes: u64,
}

enum Kept {
    Rows(Vec<KeptRow>),
    /// The bucket's sums; `None`: it has no rows.
    Sums(Option<Rollup>),
}

struct KeptRow {
    key: RollupKey,
    /// The row's sums (its sketches are in the two fields below).
    rollup: Rollup,
    /// The sketches as stored ([`LatencySketch::encode`](tally_domain::sketch::LatencySketch::encode),
    /// [`Hll::encode`](tally_domain::hll::Hll::encode)).
    latency: Box<[u8]>,
    users: Box<[u8]>,
}

impl KeptRow {
    fn of(row: &ScannedRow<'_>) -> KeptRow {
        let mut rollup = row.rollup.clone();
        let (latency, users) = match row.sketches {
            RowSketches::Encoded { latency, users } => (latency.into(), users.into()),
            // A store that hands sketches over decoded: kept as it would have stored them.
            RowSketches::InRollup => {
                let (mut latency, mut users) = (Vec::new(), Vec::new());
                std::mem::take(&mut rollup.latency).encode(&mut latency);
                std::mem::take(&mut rollup.users).encode(&mut users);
                (latency.into(), users.into())
            }
        };
        KeptRow {
            key: row.key.clone(),
            rollup,
            latency,
            users,
        }
    }

    fn scanned(&self) -> ScannedRow<'_> {
        ScannedRow {
            key: self.key.clone(),
            rollup: self.rollup.clone(),
            sketches: RowSketches::Encoded {
                latency: &self.latency,
                users: &self.users,
            },
        }
    }

    /// The row's bytes, roughly: itself, its strings, its sketches.
    fn bytes(&self) -> u64 {
        let d = &self.key.dims;
        let strings: usize = [
            &d.feature,
            &d.model,
            &d.provider,
            &d.prompt_id,
            &d.prompt_version,
            &d.experiment_id,
            &d.variant,
        ]
        .iter()
        .map(|s| s.len())
        .sum();
        (std::mem::size_of::<KeptRow>() + strings + self.latency.len() + self.users.len()) as u64
    }
}

impl Bucket {
    /// What the bucket weighs against the bound: its rows and its key's share.
    fn weight(&self) -> u64 {
        self.bytes + std::mem::size_of::<BucketKey>() as u64 + 64
    }
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<BucketKey, Arc<Bucket>> for ByBytes {
    fn weight(&self, _key: &BucketKey, bucket: &Arc<Bucket>) -> u64 {
        bucket.weight()
    }
}

/// What [`RowCache::plan`] found for a read: the kept buckets to fold, the spans still to
/// read, and the buckets of those spans to keep once read (with their versions).
pub struct Plan {
    read: Read,
    pub kept: Vec<Arc<Bucket>>,
    pub to_read: Vec<Span>,
    to_keep: HashMap<(Resolution, i64), u64>,
}

impl RowCache {
    /// A cache of at most `mib` MiB of rows; 0: none kept.
    pub fn new(mib: u64) -> RowCache {
        describe_counter!(
            "tally_query_cached_buckets_total",
            "Closed buckets a dashboard read needed, by whether their rows were kept from an earlier read (hit) or read from the store (miss)"
        );
        describe_gauge!(
            "tally_query_cache_bytes",
            Unit::Bytes,
            "Bytes of rows the query API keeps for closed buckets (bounded by TALLY_QUERY_CACHE_MIB)"
        );
        let bytes = mib.saturating_mul(1 << 20);
        RowCache {
            // About 2 KB a row and three rows a bucket: the estimate only sizes the tables.
            buckets: (bytes > 0).then(|| {
                Cache::with_weighter((bytes / 6_000).clamp(16, 1 << 20) as usize, bytes, ByBytes)
            }),
        }
    }

    /// Splits `spans` into the buckets kept at their current `versions` and the spans to read;
    /// the closed buckets among those (ended at `now_s`) are to be kept once read
    /// ([`RowCache::keeping`]).
    pub fn plan(
        &self,
        filter: &Filter,
        read: Read,
        spans: &[Span],
        now_s: i64,
        versions: Option<&RowVersions>,
    ) -> Plan {
        let mut plan = Plan {
            read,
            kept: Vec::new(),
            to_read: Vec::new(),
            to_keep: HashMap::new(),
        };
        let (Some(cache), Some(versions)) = (&self.buckets, versions) else {
            plan.to_read = spans.to_vec();
            return plan;
        };
        let (mut hits, mut misses) = (0u64, 0u64);
        for span in spans {
            let width = span.resolution.seconds();
            // The first bucket starting in the span (rows start on their resolution's grid).
            let first = if width > 0 {
                span.from + (width - span.from.rem_euclid(width)) % width
            } else {
                span.to
            };
            if width == 0
                || span.from >= span.to
                || (span.to - first) / width > MOST_BUCKETS_PER_SPAN
            {
                plan.to_read.push(*span);
                continue;
            }
            // One key per span (the filter copied once), moved from bucket to bucket.
            let mut key = BucketKey {
                filter: filter.clone(),
                read,
                resolution: span.resolution,
                bucket: first,
            };
            let mut bucket = first;
            while bucket < span.to {
                let version =
                    (bucket + width <= now_s).then(|| versions.version(span.resolution, bucket));
                key.bucket = bucket;
                let kept = version
                    .and_then(|version| cache.get(&key).filter(|kept| kept.version == version));
                match (kept, version) {
                    (Some(kept), _) => {
                        hits += 1;
                        plan.kept.push(kept);
                    }
                    (None, version) => {
                        if let Some(version) = version {
                            misses += 1;
                            plan.to_keep.insert((span.resolution, bucket), version);
                        }
                        read_bucket(&mut plan.to_read, span, bucket, width);
                    }
                }
                bucket += width;
            }
        }
        counter!("tally_query_cached_buckets_total", "outcome" => "hit").increment(hits);
        counter!("tally_query_cached_buckets_total", "outcome" => "miss").increment(misses);
        plan
    }

    /// Folds the kept rows of `plan` (of a [`Read::Rows`]) into `fold`.
    pub fn fold_kept<F: RowFold>(plan: &Plan, fold: &mut F) -> StoreResult<()> {
        for bucket in &plan.kept {
            if let Kept::Rows(rows) = &bucket.kept {
                for row in rows {
                    fold.add(row.scanned())?;
                }
            }
        }
        Ok(())
    }

    /// The kept sums of `plan` (of a [`Read::Sums`]), one per bucket that has rows.
    pub fn kept_sums(plan: &Plan) -> Vec<BucketSums> {
        plan.kept
            .iter()
            .filter_map(|b| match &b.kept {
                Kept::Sums(Some(sums)) => Some(BucketSums {
                    resolution: b.resolution,
                    bucket: b.bucket,
                    sums: sums.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Keeps the sums of the buckets `plan` keeps, from the store's answer `read` to its
    /// spans (which succeeded).
    pub fn keep_sums(&self, filter: &Filter, plan: Plan, read: &[BucketSums]) {
        let by_bucket: HashMap<(Resolution, i64), &Rollup> = read
            .iter()
            .map(|b| ((b.resolution, b.bucket), &b.sums))
            .collect();
        let (kind, to_keep) = (plan.read, plan.to_keep);
        self.keep(
            filter,
            kind,
            to_keep.into_iter().map(|(at, version)| {
                let sums = by_bucket.get(&at).map(|&s| s.clone());
                (at, version, Kept::Sums(sums))
            }),
        );
    }

    fn keep(
        &self,
        filter: &Filter,
        read: Read,
        buckets: impl Iterator<Item = ((Resolution, i64), u64, Kept)>,
    ) {
        let Some(cache) = &self.buckets else {
            return;
        };
        for ((resolution, bucket), version, kept) in buckets {
            let bytes = match &kept {
                Kept::Rows(rows) => rows.iter().map(KeptRow::bytes).sum(),
                Kept::Sums(_) => std::mem::size_of::<Rollup>() as u64,
            };
            let key = BucketKey {
                filter: filter.clone(),
                read,
                resolution,
                bucket,
            };
            cache.insert(
                key,
                Arc::new(Bucket {
                    version,
                    resolution,
                    bucket,
                    kept,
                    bytes,
                }),
            );
        }
        gauge!("tally_query_cache_bytes").set(cache.weight() as f64);
    }

    /// `fold`, wrapped to copy the rows of the buckets `plan` keeps as they pass.
    pub fn keeping<F: RowFold>(plan: Plan, fold: F) -> Keeping<F> {
        Keeping {
            fold,
            read: plan
                .to_keep
                .into_iter()
                .map(|(at, version)| (at, (version, Vec::new())))
                .collect(),
        }
    }

    /// Keeps the buckets `keeping` copied (of `filter`'s read, which succeeded) and hands back
    /// the fold.
    pub fn kept<F: RowFold>(&self, filter: &Filter, keeping: Keeping<F>) -> F {
        self.keep(
            filter,
            Read::Rows,
            keeping
                .read
                .into_iter()
                .map(|(at, (version, rows))| (at, version, Kept::Rows(rows))),
        );
        keeping.fold
    }
}

/// Adds `bucket` of `span` to the spans to read, joined to the last one when it follows it.
fn read_bucket(to_read: &mut Vec<Span>, span: &Span, bucket: i64, width: i64) {
    match to_read.last_mut() {
        Some(last) if last.resolution == span.resolution && last.to == bucket => {
            last.to = (bucket + width).min(span.to);
        }
        _ => to_read.push(Span {
            resolution: span.resolution,
            from: bucket,
            to: (bucket + width).min(span.to),
        }),
    }
}

/// A fold that copies the rows of the buckets being kept ([`RowCache::keeping`]).
pub struct Keeping<F> {
    fold: F,
    read: HashMap<(Resolution, i64), (u64, Vec<KeptRow>)>,
}

impl<F: RowFold> RowFold for Keeping<F> {
    fn add(&mut self, row: ScannedRow<'_>) -> StoreResult<()> {
        if let Some((_, rows)) = self.read.get_mut(&(row.key.resolution, row.key.bucket)) {
            rows.push(KeptRow::of(&row));
        }
        self.fold.add(row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_domain::hll::Hll;
    use tally_domain::rollup::Dims;
    use tally_domain::sketch::LatencySketch;

    const DAY: i64 = 86_400;

    /// The rows a fold was handed: bucket, requests and the sketches' bytes.
    #[derive(Default)]
    struct Seen(Vec<(i64, u64, Vec<u8>, Vec<u8>)>);

    impl RowFold for Seen {
        fn add(&mut self, row: ScannedRow<'_>) -> StoreResult<()> {
            let RowSketches::Encoded { latency, users } = row.sketches else {
                panic!("kept rows come back as stored");
            };
            self.0.push((
                row.key.bucket,
                row.rollup.requests,
                latency.to_vec(),
                users.to_vec(),
            ));
            Ok(())
        }
    }

    fn sketches(bucket: i64) -> (Vec<u8>, Vec<u8>) {
        let (mut latency, mut users) = (LatencySketch::new(), Hll::new());
        latency.insert(1_000 + bucket as u64);
        users.insert(&format!("user-{bucket}"));
        let (mut l, mut u) = (Vec::new(), Vec::new());
        latency.encode(&mut l);
        users.encode(&mut u);
        (l, u)
    }

    /// Hands `fold` one row of `requests` in each of `buckets` (day rows of feature `f`).
    fn read_rows<F: RowFold>(fold: &mut F, buckets: &[(i64, u64)]) {
        for &(bucket, requests) in buckets {
            let (latency, users) = sketches(bucket);
            let row = ScannedRow {
                key: RollupKey {
                    resolution: Resolution::Day,
                    bucket,
                    dims: Dims {
                        feature: "f".into(),
                        model: "m".into(),
                        provider: "p".into(),
                        environment: tally_schemas::Environment::Production,
                        prompt_id: String::new(),
                        prompt_version: String::new(),
                        experiment_id: String::new(),
                        variant: String::new(),
                    },
                },
                rollup: Rollup {
                    requests,
                    ..Rollup::default()
                },
                sketches: RowSketches::Encoded {
                    latency: &latency,
                    users: &users,
                },
            };
            fold.add(row).expect("folded");
        }
    }

    fn filter() -> Filter {
        Filter {
            feature: Some("f".into()),
            ..Filter::default()
        }
    }

    fn days(from: i64, to: i64) -> Span {
        Span {
            resolution: Resolution::Day,
            from: from * DAY,
            to: to * DAY,
        }
    }

    #[test]
    fn kept_buckets_are_used_until_their_version_moves() {
        let (cache, versions) = (RowCache::new(1), RowVersions::new());
        let spans = [days(0, 5)];
        let now = 10 * DAY;
        let first = cache.plan(&filter(), Read::Rows, &spans, now, Some(&versions));
        assert!(first.kept.is_empty());
        assert_eq!(first.to_read, spans);
        // Read: rows in two of the five days; all five are kept, three of them empty.
        let mut keeping = RowCache::keeping(first, Seen::default());
        read_rows(&mut keeping, &[(0, 3), (2 * DAY, 5)]);
        let read = cache.kept(&filter(), keeping);

        let second = cache.plan(&filter(), Read::Rows, &spans, now, Some(&versions));
        assert_eq!(second.kept.len(), 5);
        assert!(second.to_read.is_empty());
        let mut again = Seen::default();
        RowCache::fold_kept(&second, &mut again).expect("folded");
        again.0.sort();
        assert_eq!(again.0, read.0, "the same rows, byte for byte");

        // A change to one day: that day alone is read again.
        versions.touch([(Resolution::Day, 2 * DAY)]);
        let third = cache.plan(&filter(), Read::Rows, &spans, now, Some(&versions));
        assert_eq!(third.kept.len(), 4);
        assert_eq!(third.to_read, [days(2, 3)]);
        // Another filter's rows are other rows; without versions nothing is kept or used.
        let other = Filter {
            model: Some("m".into()),
            ..filter()
        };
        assert!(cache
            .plan(&other, Read::Rows, &spans, now, Some(&versions))
            .kept
            .is_empty());
        let unversioned = cache.plan(&filter(), Read::Rows, &spans, now, None);
        assert!(unversioned.kept.is_empty());
        assert_eq!(unversioned.to_read, spans);
        // Everything moved (a retention pass): everything is read again.
        versions.touch_all();
        assert_eq!(
            cache
                .plan(&filter(), Read::Rows, &spans, now, Some(&versions))
                .to_read,
            spans
        );
    }

    #[test]
    fn rows_changed_while_they_were_read_are_kept_under_the_version_before_the_change() {
        let (cache, versions) = (RowCache::new(1), RowVersions::new());
        let spans = [days(0, 2)];
        let plan = cache.plan(&filter(), Read::Rows, &spans, 10 * DAY, Some(&versions));
        // A commit lands while the read runs (its rows may or may not be in what is read).
        versions.touch([(Resolution::Day, DAY)]);
        let mut keeping = RowCache::keeping(plan, Seen::default());
        read_rows(&mut keeping, &[(0, 1), (DAY, 1)]);
        cache.kept(&filter(), keeping);
        let plan = cache.plan(&filter(), Read::Rows, &spans, 10 * DAY, Some(&versions));
        assert_eq!(plan.kept.len(), 1);
        assert_eq!(
            plan.to_read,
            [days(1, 2)],
            "read again, never taken as kept"
        );
    }

    #[test]
    fn spans_without_a_grid_or_of_too_many_buckets_are_read_whole() {
        let (cache, versions) = (RowCache::new(1), RowVersions::new());
        let now = 10_000 * DAY;
        let totals = Span {
            resolution: Resolution::Total,
            from: 0,
            to: i64::MAX / 2,
        };
        let years = days(0, 3_000);
        for _ in 0..2 {
            let plan = cache.plan(
                &filter(),
                Read::Rows,
                &[totals, years],
                now,
                Some(&versions),
            );
            assert_eq!(plan.to_read, [totals, years]);
            assert!(plan.kept.is_empty());
            cache.kept(&filter(), RowCache::keeping(plan, Seen::default()));
        }
        // A span starting between two buckets begins with the next bucket.
        let unaligned = Span {
            resolution: Resolution::Minute,
            from: 90,
            to: 300,
        };
        let plan = cache.plan(&filter(), Read::Rows, &[unaligned], now, Some(&versions));
        assert_eq!(
            plan.to_read,
            [Span {
                resolution: Resolution::Minute,
                from: 120,
                to: 300,
            }]
        );
        cache.kept(&filter(), RowCache::keeping(plan, Seen::default()));
        let plan = cache.plan(&filter(), Read::Rows, &[unaligned], now, Some(&versions));
        assert_eq!(plan.kept.len(), 3, "minutes 120, 180 and 240");
        assert!(plan.to_read.is_empty());
    }

    #[test]
    fn a_bucket_the_clock_has_not_ended_is_never_kept() {
        let (cache, versions) = (RowCache::new(1), RowVersions::new());
        let spans = [days(0, 3)];
        let now = 2 * DAY + 60;
        for _ in 0..2 {
            let plan = cache.plan(&filter(), Read::Rows, &spans, now, Some(&versions));
            let mut keeping = RowCache::keeping(plan, Seen::default());
            read_rows(&mut keeping, &[(0, 1), (2 * DAY, 1)]);
            cache.kept(&filter(), keeping);
        }
        let plan = cache.plan(&filter(), Read::Rows, &spans, now, Some(&versions));
        assert_eq!(plan.kept.len(), 2);
        assert_eq!(plan.to_read, [days(2, 3)]);
    }

    #[test]
    fn missing_buckets_are_read_as_few_spans() {
        let (cache, versions) = (RowCache::new(1), RowVersions::new());
        let now = 100 * DAY;
        let plan = cache.plan(&filter(), Read::Rows, &[days(0, 6)], now, Some(&versions));
        cache.kept(&filter(), RowCache::keeping(plan, Seen::default()));
        versions.touch([(Resolution::Day, DAY), (Resolution::Day, 2 * DAY)]);
        versions.touch([(Resolution::Day, 4 * DAY)]);
        let plan = cache.plan(
            &filter(),
            Read::Rows,
            &[days(0, 6), days(7, 9)],
            now,
            Some(&versions),
        );
        assert_eq!(plan.to_read, [days(1, 3), days(4, 5), days(7, 9)]);
        assert_eq!(plan.kept.len(), 3);
    }

    #[test]
    fn kept_sums_come_back_as_the_store_answered_and_apart_from_rows() {
        let (cache, versions) = (RowCache::new(1), RowVersions::new());
        let spans = [days(0, 3)];
        let read = Read::Sums(SumsOf::Requests);
        let plan = cache.plan(&filter(), read, &spans, 10 * DAY, Some(&versions));
        assert_eq!(plan.to_read, spans);
        // The store's answer: the middle day has no rows.
        let answer: Vec<BucketSums> = [(0, 4), (2 * DAY, 9)]
            .map(|(bucket, requests)| BucketSums {
                resolution: Resolution::Day,
                bucket,
                sums: Rollup {
                    requests,
                    ..Rollup::default()
                },
            })
            .into();
        cache.keep_sums(&filter(), plan, &answer);
        let plan = cache.plan(&filter(), read, &spans, 10 * DAY, Some(&versions));
        assert!(plan.to_read.is_empty());
        let mut kept = RowCache::kept_sums(&plan);
        kept.sort_by_key(|b| b.bucket);
        assert_eq!(kept, answer);
        // Other sums, or the rows, of the same buckets are other reads.
        for other in [Read::Sums(SumsOf::Money), Read::Rows] {
            let plan = cache.plan(&filter(), other, &spans, 10 * DAY, Some(&versions));
            assert_eq!(plan.to_read, spans, "{other:?}");
        }
    }

    #[test]
    fn a_cache_of_no_bytes_keeps_nothing() {
        let (cache, versions) = (RowCache::new(0), RowVersions::new());
        let spans = [days(0, 2)];
        let plan = cache.plan(&filter(), Read::Rows, &spans, 10 * DAY, Some(&versions));
        let mut keeping = RowCache::keeping(plan, Seen::default());
        read_rows(&mut keeping, &[(0, 1)]);
        assert_eq!(cache.kept(&filter(), keeping).0.len(), 1);
        let plan = cache.plan(&filter(), Read::Rows, &spans, 10 * DAY, Some(&versions));
        assert!(plan.kept.is_empty());
        assert_eq!(plan.to_read, spans);
    }
}
