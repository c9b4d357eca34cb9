//! Mergeable latency summary: a log-bucketed histogram (the DDSketch mapping) with a relative
//! accuracy of 1%.
//!
//! A latency `x` microseconds (x ≥ 1) falls in bucket `i = ceil(ln x / ln γ)` with
//! `γ = (1 + α) / (1 − α)`, `α = 0.01`; zero latencies have their own counter. Every value in
//! bucket `i` lies in `(γ^(i−1), γ^i]`, and the bucket's representative `2γ^i / (γ + 1)` is within
//! `α` of each of them, so any quantile is reported within 1% of the true value at that rank.
//! Buckets are stored sparsely (index, count); merging is adding counts, so it is exact,
//! associative and commutative — rollups at any resolution and in any order agree.

use crate::statistics::Moments;
use crate::varint;

/// Relative accuracy of every reported quantile.
pub const RELATIVE_ACCURACY: f64 = 0.01;

fn gamma() -> f64 {
    (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY)
}

/// Bucket index of a latency in microseconds (≥ 1).
fn index_of(latency_us: u64) -> u16 {
    let idx = ((latency_us as f64).ln() / gamma().ln()).ceil();
    idx.clamp(0.0, f64::from(u16::MAX)) as u16
}

/// Representative value (microseconds) of a bucket.
fn value_of(index: u16) -> f64 {
    let g = gamma();
    2.0 * g.powi(i32::from(index)) / (g + 1.0)
}

/// A sparse log-bucketed latency histogram.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LatencySketch {
    zeros: u64,
    /// Sorted by bucket index, no duplicates, no zero counts.
    buckets: Vec<(u16, u64)>,
}

impl LatencySketch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn count(&self) -> u64 {
        self.zeros + self.buckets.iter().map(|(_, c)| c).sum::<u64>()
    }

    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Records one latency in microseconds.
    pub fn insert(&mut self, latency_us: u64) {
        self.insert_n(latency_us, 1);
    }

    fn insert_n(&mut self, latency_us: u64, n: u64) {
        if latency_us == 0 {
            self.zeros += n;
            return;
        }
        self.add_bucket(index_of(latency_us), n);
    }

    fn add_bucket(&mut self, index: u16, n: u64) {
        match self.buckets.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(pos) => self.buckets[pos].1 += n,
            Err(pos) => self.buckets.insert(pos, (index, n)),
        }
    }

    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &LatencySketch) {
        self.zeros += other.zeros;
        if self.buckets.is_empty() {
            self.buckets.clone_from(&other.buckets);
            return;
        }
        if self.add_in_place(other) {
            return;
        }
        let mut merged = Vec::with_capacity(self.buckets.len() + other.buckets.len());
        let (mut a, mut b) = (
            self.buckets.iter().peekable(),
            other.buckets.iter().peekable(),
        );
        loop {
            match (a.peek(), b.peek()) {
                (Some(&&(ia, ca)), Some(&&(ib, cb))) => {
                    if ia == ib {
                        merged.push((ia, ca + cb));
                        a.next();
                        b.next();
                    } else if ia < ib {
                        merged.push((ia, ca));
                        a.next();
                    } else {
                        merged.push((ib, cb));
                        b.next();
                    }
                }
                (Some(&&x), None) => {
                    merged.push(x);
                    a.next();
                }
                (None, Some(&&x)) => {
                    merged.push(x);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.buckets = merged;
    }

    /// Adds `other`'s counts without allocating when all its buckets already exist here (the
    /// common case when merging many rows of one population); `false` (and no change) otherwise.
    fn add_in_place(&mut self, other: &LatencySketch) -> bool {
        // Two walks, the first only checking, so that a `false` leaves `self` unchanged
        // without a buffer of positions.
        let mut j = 0;
        for &(index, _) in &other.buckets {
            while j < self.buckets.len() && self.buckets[j].0 < index {
                j += 1;
            }
            if j == self.buckets.len() || self.buckets[j].0 != index {
                return false;
            }
        }
        let mut j = 0;
        for &(index, count) in &other.buckets {
            while self.buckets[j].0 < index {
                j += 1;
            }
            self.buckets[j].1 += count;
        }
        true
    }

    /// The latency in milliseconds at quantile `q` (0..=1), using the nearest-rank definition:
    /// the value of rank `max(1, ceil(q·n))` in ascending order. `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        if rank <= self.zeros {
            return Some(0.0);
        }
        let mut seen = self.zeros;
        for &(index, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return Some(value_of(index) / 1000.0);
            }
        }
        self.buckets.last().map(|&(i, _)| value_of(i) / 1000.0)
    }

    /// Count, mean and sample variance of ln(latency in ms) over the non-zero latencies (a zero
    /// is an unmeasured latency, and has no logarithm). Each latency is taken as its bucket's
    /// representative, which is within 1 % of it: within ±0.01 of its logarithm. Computed from
    /// the integer counts in bucket order, so equal sketches give bit-identical moments.
    pub fn log_ms_moments(&self) -> Moments {
        let n: u64 = self.buckets.iter().map(|(_, c)| c).sum();
        let ln_ms = |index: u16| (value_of(index) / 1000.0).ln();
        if n == 0 {
            return Moments {
                n,
                mean: 0.0,
                variance: 0.0,
            };
        }
        let mean = self
            .buckets
            .iter()
            .map(|&(i, c)| c as f64 * ln_ms(i))
            .sum::<f64>()
            / n as f64;
        let variance = if n < 2 {
            0.0
        } else {
            self.buckets
                .iter()
                .map(|&(i, c)| c as f64 * (ln_ms(i) - mean).powi(2))
                .sum::<f64>()
                / (n - 1) as f64
        };
        Moments { n, mean, variance }
    }

    /// Cumulative counts at each of `bounds_us` (ascending, microseconds): how many latencies
    /// are at most each bound, as a histogram with those upper bounds reports them. A bucket is
    /// counted under a bound when its representative value is, so a latency within 2% of a
    /// bound may be counted on the other side of it (the sketch's resolution); counts are
    /// otherwise exact.
    pub fn cumulative_counts(&self, bounds_us: &[f64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds_us.len());
        let mut seen = self.zeros;
        let mut next = self.buckets.iter().peekable();
        for bound in bounds_us {
            while let Some(&&(index, count)) = next.peek() {
                if value_of(index) > *bound {
                    break;
                }
                seen += count;
                next.next();
            }
            out.push(seen);
        }
        out
    }

    /// Compact binary form: zeros, bucket count, then (index delta, count) varints.
    pub fn encode(&self, out: &mut Vec<u8>) {
        varint::put(out, self.zeros);
        varint::put(out, self.buckets.len() as u64);
        let mut prev = 0u16;
        for &(index, count) in &self.buckets {
            varint::put(out, u64::from(index - prev));
            varint::put(out, count);
            prev = index;
        }
    }

    pub fn decode(input: &mut &[u8]) -> Option<LatencySketch> {
        let mut buckets = Vec::new();
        let zeros = each_encoded(input, |len, index, count| {
            if buckets.is_empty() {
                buckets.reserve(len.min(4096));
            }
            buckets.push((index, count));
        })?;
        Some(LatencySketch { zeros, buckets })
    }
}

/// Walks an encoded sketch ([`LatencySketch::encode`]): `bucket` gets the number of buckets and
/// every (index, count) in order; returns the zeros. `None` for a corrupt sketch (indexes not
/// strictly increasing or past `u16`, a total count past `u64`, input cut short), possibly after
/// some buckets were handed over — whoever adds them discards the result.
fn each_encoded(input: &mut &[u8], mut bucket: impl FnMut(usize, u16, u64)) -> Option<u64> {
    let zeros = varint::get(input)?;
    // The total count must fit in a u64 (`count` and merges add them up).
    let mut total = zeros;
    let len = usize::try_from(varint::get(input)?).ok()?;
    // Bucket indexes strictly increase: a repeated one is a corrupt sketch.
    let mut prev = None;
    for _ in 0..len {
        let at = varint::get_increasing(input, prev)?;
        prev = Some(at);
        let index = u16::try_from(at).ok()?;
        let count = varint::get(input)?;
        total = total.checked_add(count)?;
        bucket(len, index, count);
    }
    Some(zeros)
}

/// Many sketches added together at the cost of their buckets alone: counts are summed in a
/// dense array indexed by bucket (sized by the highest index seen: ~1,100 entries reach an
/// hour, and no latency in microseconds that fits a u64 goes past 2,218), and the sparse sketch is built once at the end. [`LatencySketch::merge`] of the same
/// sketches one by one walks the growing sorted list for each, which is what a dashboard
/// merging hundreds of rows paid for. The result has the same counts in the same buckets.
#[derive(Debug, Clone, Default)]
pub struct LatencyTotal {
    zeros: u64,
    counts: Vec<u64>,
}

impl LatencyTotal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every count of `sketch`.
    pub fn add(&mut self, sketch: &LatencySketch) {
        self.zeros += sketch.zeros;
        if let Some(&(last, _)) = sketch.buckets.last() {
            let needed = usize::from(last) + 1;
            if self.counts.len() < needed {
                self.counts.resize(needed, 0);
            }
        }
        for &(index, count) in &sketch.buckets {
            self.counts[usize::from(index)] += count;
        }
    }

    /// Adds every count of an encoded sketch ([`LatencySketch::encode`]) without decoding it
    /// into a sketch first: the same counts as `add(&LatencySketch::decode(input)?)`. `None`
    /// exactly when `decode` would refuse it; the total then holds part of it and is to be
    /// discarded.
    pub fn add_encoded(&mut self, input: &mut &[u8]) -> Option<()> {
        let counts = &mut self.counts;
        self.zeros += each_encoded(input, |_, index, count| {
            let at = usize::from(index);
            if at >= counts.len() {
                counts.resize(at + 1, 0);
            }
            counts[at] += count;
        })?;
        Some(())
    }

    /// The sketch of everything added (buckets without a count left out).
    pub fn sketch(&self) -> LatencySketch {
        LatencySketch {
            zeros: self.zeros,
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, &count)| count > 0)
                .map(|(index, &count)| (index as u16, count))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_sketch_with_a_repeated_or_overflowing_index_is_refused() {
        // zeros 0, two buckets: index 5 (count 1), then delta 0 (index 5 again).
        assert!(LatencySketch::decode(&mut &[0u8, 2, 5, 1, 0, 1][..]).is_none());
        // Index 5, then a delta of u64::MAX: the running index would overflow.
        let mut bytes = vec![0u8, 2, 5, 1];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        bytes.push(1);
        assert!(LatencySketch::decode(&mut &bytes[..]).is_none());
        // Counts whose total overflows (1 zero, then u64::MAX in bucket 5).
        let mut bytes = vec![1u8, 1, 5];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(LatencySketch::decode(&mut &bytes[..]).is_none());
        let ok = LatencySketch::decode(&mut &[0u8, 2, 5, 1, 1, 3][..]).expect("indexes 5, 6");
        assert_eq!(ok.count(), 4);
    }

    #[test]
    fn cumulative_counts_follow_the_bounds() {
        let mut s = LatencySketch::new();
        // 0 µs, 5 ms, 15 ms ×2, 90 ms, 3 s (bounds 10 ms, 20 ms, 80 ms, 160 ms, 2.56 s).
        for us in [0, 5_000, 15_000, 15_000, 90_000, 3_000_000] {
            s.insert(us);
        }
        let bounds = [10_000.0, 20_000.0, 80_000.0, 160_000.0, 2_560_000.0];
        assert_eq!(s.cumulative_counts(&bounds), vec![2, 4, 4, 5, 5]);
        assert_eq!(LatencySketch::new().cumulative_counts(&bounds), vec![0; 5]);
    }
    use proptest::prelude::*;

    fn exact_nearest_rank(values: &mut [u64], q: f64) -> f64 {
        values.sort_unstable();
        let rank = ((q * values.len() as f64).ceil() as usize).max(1);
        values[rank - 1] as f64 / 1000.0
    }

    proptest! {
        #[test]
        fn quantiles_within_one_percent(values in proptest::collection::vec(0u64..5_000_000_000, 1..400), q in 0.0f64..=1.0) {
            let mut s = LatencySketch::new();
            for &v in &values { s.insert(v); }
            let mut sorted = values.clone();
            let truth = exact_nearest_rank(&mut sorted, q);
            let est = s.quantile_ms(q).expect("non-empty");
            prop_assert!((est - truth).abs() <= truth * RELATIVE_ACCURACY + 1e-9, "est {est} truth {truth}");
        }

        #[test]
        fn log_moments_within_the_sketch_accuracy(values in proptest::collection::vec(1u64..5_000_000_000, 2..300)) {
            let mut s = LatencySketch::new();
            for &v in &values { s.insert(v); }
            s.insert(0);
            // The exact moments of ln(ms), computed directly from the values.
            let logs: Vec<f64> = values.iter().map(|&v| (v as f64 / 1000.0).ln()).collect();
            let n = logs.len() as f64;
            let mean = logs.iter().sum::<f64>() / n;
            let var = logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0);
            let m = s.log_ms_moments();
            prop_assert_eq!(m.n, values.len() as u64, "the zero is left out");
            // Each logarithm moves by at most ln(1.01) < 0.01: the mean by as much, the
            // standard deviation by at most that much again.
            prop_assert!((m.mean - mean).abs() <= 0.01, "mean {} vs {}", m.mean, mean);
            prop_assert!((m.variance.sqrt() - var.sqrt()).abs() <= 0.01 * (n / (n - 1.0)).sqrt() + 1e-9, "sd {} vs {}", m.variance.sqrt(), var.sqrt());
        }

        #[test]
        fn a_total_of_stored_bytes_counts_what_the_values_do(parts in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(0u64), 1u64..50_000_000], 0..60), 0..12)) {
            let mut total = LatencyTotal::new();
            for values in &parts {
                let mut s = LatencySketch::new();
                values.iter().for_each(|&v| s.insert(v));
                let mut bytes = Vec::new();
                s.encode(&mut bytes);
                let mut input = bytes.as_slice();
                prop_assert!(total.add_encoded(&mut input).is_some());
                prop_assert!(input.is_empty(), "every byte of the sketch read");
            }
            let mut direct = LatencySketch::new();
            parts.iter().flatten().for_each(|&v| direct.insert(v));
            prop_assert_eq!(total.sketch(), direct);
        }

        #[test]
        fn adding_stored_bytes_refuses_exactly_what_decoding_refuses(
            values in proptest::collection::vec(prop_oneof![Just(0u64), 1u64..50_000_000], 0..40),
            at in any::<proptest::sample::Index>(),
            value in any::<u8>(),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut s = LatencySketch::new();
            values.iter().for_each(|&v| s.insert(v));
            let mut bytes = Vec::new();
            s.encode(&mut bytes);
            // One byte changed (a repeated index, a count past u64 in total, a continuation
            // byte running past the end) and maybe cut short.
            let i = at.index(bytes.len());
            bytes[i] = value;
            let bytes = &bytes[..cut.index(bytes.len() + 1)];
            let decodes = LatencySketch::decode(&mut &*bytes).is_some();
            prop_assert_eq!(LatencyTotal::new().add_encoded(&mut &*bytes).is_some(), decodes);
        }

        #[test]
        fn a_total_equals_merging_one_by_one(parts in proptest::collection::vec(proptest::collection::vec(prop_oneof![Just(0u64), 1u64..50_000_000], 0..60), 0..12)) {
            let sketches: Vec<LatencySketch> = parts.iter().map(|values| {
                let mut s = LatencySketch::new();
                values.iter().for_each(|&v| s.insert(v));
                s
            }).collect();
            let mut one_by_one = LatencySketch::new();
            let mut total = LatencyTotal::new();
            for s in &sketches {
                one_by_one.merge(s);
                total.add(s);
            }
            // And against the values themselves, counted into one sketch.
            let mut direct = LatencySketch::new();
            parts.iter().flatten().for_each(|&v| direct.insert(v));
            prop_assert_eq!(&total.sketch(), &one_by_one);
            prop_assert_eq!(total.sketch(), direct);
        }

        #[test]
        fn merge_is_order_independent(a in proptest::collection::vec(0u64..10_000_000, 0..100), b in proptest::collection::vec(0u64..10_000_000, 0..100)) {
            let mut whole = LatencySketch::new();
            for &v in a.iter().chain(&b) { whole.insert(v); }
            let (mut sa, mut sb) = (LatencySketch::new(), LatencySketch::new());
            for &v in &a { sa.insert(v); }
            for &v in &b { sb.insert(v); }
            let mut ab = sa.clone(); ab.merge(&sb);
            let mut ba = sb.clone(); ba.merge(&sa);
            prop_assert_eq!(&ab, &whole);
            prop_assert_eq!(&ba, &whole);
            // Merging values whose buckets all exist already (the in-place path).
            let mut twice = LatencySketch::new();
            for &v in a.iter().chain(&a[..a.len() / 2]) { twice.insert(v); }
            let mut half = LatencySketch::new();
            for &v in &a[..a.len() / 2] { half.insert(v); }
            let mut again = sa.clone(); again.merge(&half);
            prop_assert_eq!(&again, &twice);
            let mut buf = Vec::new();
            whole.encode(&mut buf);
            let decoded = LatencySketch::decode(&mut buf.as_slice()).expect("decodes");
            prop_assert_eq!(decoded, whole);
        }
    }
}
