//! Mergeable unique-user counting: HyperLogLog with 2^14 registers (standard error 0.81%).
//!
//! Users are hashed with XXH3-64 (stable across releases and machines, so sketches written by
//! one process merge with those of another). The first 14 bits pick a register, the rank of the
//! remaining 50 bits is stored. Small sketches are kept sparse as the sorted set of full 64-bit
//! hashes, which counts exactly (up to 2,048 distinct users per sketch, the size of the dense
//! form); beyond that they become 16,384 registers. Whether a sketch is sparse depends only on
//! how many distinct users it holds, so merging in any order gives the same sketch: merging is
//! exact, associative, commutative and idempotent. The estimate uses Ertl's improved raw estimator
//! ("New cardinality estimation algorithms for HyperLogLog sketches", 2017), which is unbiased
//! from one user to billions without empirical correction tables.

use xxhash_rust::xxh3::xxh3_64;

use crate::varint;

const P: u32 = 14;
const M: usize = 1 << P;
const Q: u32 = 64 - P;
/// Above this many distinct hashes the dense form is smaller.
const SPARSE_LIMIT: usize = 2048;

/// A HyperLogLog sketch of user ids.
#[derive(Debug, Clone)]
pub enum Hll {
    /// Sorted, distinct 64-bit hashes (exact).
    Sparse(Vec<u64>),
    /// One rank per register.
    Dense(Box<[u8]>),
}

impl Default for Hll {
    fn default() -> Self {
        Hll::Sparse(Vec::new())
    }
}

fn split(hash: u64) -> (usize, u8) {
    let register = (hash >> Q) as usize;
    let rest = hash << P;
    let rank = if rest == 0 {
        Q + 1
    } else {
        rest.leading_zeros() + 1
    };
    (register, rank.min(Q + 1) as u8)
}

fn set_max(regs: &mut [u8], hash: u64) {
    let (register, rank) = split(hash);
    regs[register] = regs[register].max(rank);
}

impl Hll {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, user_id: &str) {
        self.insert_hash(xxh3_64(user_id.as_bytes()));
    }

    pub fn insert_hash(&mut self, hash: u64) {
        match self {
            Hll::Dense(regs) => set_max(regs, hash),
            Hll::Sparse(hashes) => {
                if let Err(pos) = hashes.binary_search(&hash) {
                    hashes.insert(pos, hash);
                    if hashes.len() > SPARSE_LIMIT {
                        self.densify();
                    }
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Hll::Sparse(hashes) = self {
            let mut regs = vec![0u8; M].into_boxed_slice();
            for &h in hashes.iter() {
                set_max(&mut regs, h);
            }
            *self = Hll::Dense(regs);
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Hll::Sparse(h) => h.is_empty(),
            Hll::Dense(r) => r.iter().all(|&x| x == 0),
        }
    }

    /// Union of `self` and `other`.
    pub fn merge(&mut self, other: &Hll) {
        match (&mut *self, other) {
            (Hll::Sparse(mine), Hll::Sparse(theirs)) => {
                if mine.is_empty() {
                    mine.clone_from(theirs);
                    return;
                }
                // Rows of one population mostly hold the same users: equal sets compare as
                // memory, far faster than the element walk of the subset test.
                if mine == theirs || is_sorted_subset(theirs.iter().copied(), mine) {
                    return;
                }
                let mut union = Vec::with_capacity(mine.len() + theirs.len());
                let (mut i, mut j) = (0, 0);
                while i < mine.len() || j < theirs.len() {
                    let next = match (mine.get(i), theirs.get(j)) {
                        (Some(&a), Some(&b)) if a == b => {
                            i += 1;
                            j += 1;
                            a
                        }
                        (Some(&a), Some(&b)) if a < b => {
                            i += 1;
                            a
                        }
                        (Some(_), Some(&b)) | (None, Some(&b)) => {
                            j += 1;
                            b
                        }
                        (Some(&a), None) => {
                            i += 1;
                            a
                        }
                        (None, None) => break,
                    };
                    union.push(next);
                }
                *mine = union;
                if mine.len() > SPARSE_LIMIT {
                    self.densify();
                }
            }
            (Hll::Dense(regs), Hll::Sparse(theirs)) => {
                for &h in theirs {
                    set_max(regs, h);
                }
            }
            (_, Hll::Dense(theirs)) => {
                self.densify();
                if let Hll::Dense(mine) = self {
                    for (a, &b) in mine.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(b);
                    }
                }
            }
        }
    }

    /// Estimated number of distinct users (exact while sparse), rounded to an integer.
    pub fn estimate(&self) -> u64 {
        let regs = match self {
            Hll::Sparse(hashes) => return hashes.len() as u64,
            Hll::Dense(regs) => regs,
        };
        let mut histogram = [0u32; (Q + 2) as usize];
        for &rank in regs.iter() {
            histogram[usize::from(rank)] += 1;
        }
        if histogram[0] as usize == M {
            return 0;
        }
        ertl_estimate(&histogram).round() as u64
    }

    /// Binary form: tag 2 + count + 8-byte little-endian hashes, or tag 1 + registers. (Random
    /// 64-bit hashes do not shrink under delta coding, and fixed width decodes ~10× faster.)
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Hll::Sparse(hashes) => {
                out.push(2);
                varint::put(out, hashes.len() as u64);
                out.reserve(hashes.len() * 8);
                for &h in hashes {
                    out.extend_from_slice(&h.to_le_bytes());
                }
            }
            Hll::Dense(regs) => {
                out.push(1);
                out.extend_from_slice(regs);
            }
        }
    }

    /// Unites `self` with an encoded sketch ([`Hll::encode`]), without decoding it into a
    /// sketch of its own when it adds nothing to a sparse `self` or `self` is dense: the same
    /// sketch as `merge(&Hll::decode(input)?)`. `None` exactly when `decode` would refuse it;
    /// `self` may then hold part of it and is to be discarded.
    pub fn merge_encoded(&mut self, input: &mut &[u8]) -> Option<()> {
        let (&tag, rest) = input.split_first()?;
        match tag {
            2 => {
                let mut body = rest;
                let len = usize::try_from(varint::get(&mut body)?).ok()?;
                if len > SPARSE_LIMIT || body.len() < len * 8 {
                    return None;
                }
                let (raw, after) = body.split_at(len * 8);
                *input = after;
                if let Hll::Sparse(mine) = self {
                    // Rows of one population mostly hold the same users: equal sets compare as
                    // memory (and equal to a valid sketch, `raw` is one).
                    if cfg!(target_endian = "little")
                        && bytemuck::cast_slice::<u64, u8>(mine) == raw
                    {
                        return Some(());
                    }
                }
                let hash_at = |i: usize| {
                    let at = i * 8;
                    u64::from_le_bytes(raw[at..at + 8].try_into().expect("8 bytes"))
                };
                if (1..len).any(|i| hash_at(i - 1) >= hash_at(i)) {
                    return None;
                }
                let theirs = (0..len).map(hash_at);
                match self {
                    Hll::Sparse(mine) if is_sorted_subset(theirs.clone(), mine) => {}
                    Hll::Dense(regs) => theirs.for_each(|h| set_max(regs, h)),
                    Hll::Sparse(_) => self.merge(&Hll::Sparse(theirs.collect())),
                }
                Some(())
            }
            1 => {
                let regs = rest.get(..M)?;
                if regs.iter().any(|&rank| u32::from(rank) > Q + 1) {
                    return None;
                }
                self.densify();
                if let Hll::Dense(mine) = self {
                    for (a, &b) in mine.iter_mut().zip(regs) {
                        *a = (*a).max(b);
                    }
                }
                *input = &rest[M..];
                Some(())
            }
            _ => {
                let other = Hll::decode(input)?;
                self.merge(&other);
                Some(())
            }
        }
    }

    pub fn decode(input: &mut &[u8]) -> Option<Hll> {
        let (&tag, rest) = input.split_first()?;
        *input = rest;
        match tag {
            0 => {
                let len = usize::try_from(varint::get(input)?).ok()?;
                if len > SPARSE_LIMIT {
                    return None;
                }
                let mut hashes = Vec::with_capacity(len);
                // Hashes are distinct: a repeated one would be counted twice.
                let mut prev = None;
                for _ in 0..len {
                    let hash = varint::get_increasing(input, prev)?;
                    prev = Some(hash);
                    hashes.push(hash);
                }
                Some(Hll::Sparse(hashes))
            }
            2 => {
                let len = usize::try_from(varint::get(input)?).ok()?;
                if len > SPARSE_LIMIT || input.len() < len * 8 {
                    return None;
                }
                let (bytes, rest) = input.split_at(len * 8);
                *input = rest;
                let hashes: Vec<u64> = bytes
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect();
                if hashes.windows(2).any(|w| w[0] >= w[1]) {
                    return None;
                }
                Some(Hll::Sparse(hashes))
            }
            1 => {
                if input.len() < M {
                    return None;
                }
                let (regs, rest) = input.split_at(M);
                if regs.iter().any(|&rank| u32::from(rank) > Q + 1) {
                    // No hash has a rank above Q + 1 (see `split`).
                    return None;
                }
                *input = rest;
                Some(Hll::Dense(regs.to_vec().into_boxed_slice()))
            }
            _ => None,
        }
    }
}

/// Whether every element of sorted `small` is in sorted `big`.
fn is_sorted_subset(small: impl ExactSizeIterator<Item = u64>, big: &[u64]) -> bool {
    if small.len() > big.len() {
        return false;
    }
    let mut j = 0;
    for x in small {
        while j < big.len() && big[j] < x {
            j += 1;
        }
        if j == big.len() || big[j] != x {
            return false;
        }
        j += 1;
    }
    true
}

impl PartialEq for Hll {
    fn eq(&self, other: &Hll) -> bool {
        match (self, other) {
            (Hll::Sparse(a), Hll::Sparse(b)) => a == b,
            (Hll::Dense(a), Hll::Dense(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Hll {}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if z == previous {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if z == previous {
            return z / 3.0;
        }
    }
}

fn ertl_estimate(histogram: &[u32]) -> f64 {
    let m = M as f64;
    let q = Q as usize;
    let mut z = m * tau(1.0 - f64::from(histogram[q + 1]) / m);
    for k in (1..=q).rev() {
        z = 0.5 * (z + f64::from(histogram[k]));
    }
    z += m * sigma(f64::from(histogram[0]) / m);
    let alpha_inf = 1.0 / (2.0 * std::f64::consts::LN_2);
    alpha_inf * m * m / z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_sparse_sketch_with_a_repeated_hash_is_refused() {
        // Found by the log_record fuzz target: legacy tag 0, two hashes, deltas 2 then 0.
        assert!(Hll::decode(&mut &[0u8, 2, 2, 0][..]).is_none());
        let decoded = Hll::decode(&mut &[0u8, 2, 2, 1][..]).expect("hashes 2 and 3");
        assert_eq!(decoded.estimate(), 2);
    }

    #[test]
    fn a_stored_dense_sketch_with_an_impossible_rank_is_refused() {
        // Found by the log_record fuzz target: a register of rank 64 (at most Q + 1 = 51).
        let mut bytes = vec![1u8];
        bytes.extend(std::iter::repeat_n(0u8, M));
        bytes[1] = 64;
        assert!(Hll::decode(&mut &bytes[..]).is_none());
        bytes[1] = 51;
        assert!(Hll::decode(&mut &bytes[..]).is_some());
    }
    use proptest::prelude::*;

    #[test]
    fn estimates_within_two_percent_across_scales() {
        for &n in &[1u64, 10, 300, 5_000, 50_000, 400_000] {
            let mut h = Hll::new();
            for i in 0..n {
                h.insert(&format!("user-{i}"));
            }
            let est = h.estimate() as f64;
            let err = (est - n as f64).abs() / n as f64;
            assert!(err <= 0.02, "n={n} est={est} err={err}");
        }
    }

    #[test]
    fn small_sets_are_counted_exactly() {
        for n in [1u64, 2, 22, 500, 2048] {
            let mut h = Hll::new();
            for i in 0..n {
                h.insert(&format!("u{i}"));
            }
            assert_eq!(h.estimate(), n);
        }
    }

    #[test]
    fn duplicates_do_not_count() {
        let mut h = Hll::new();
        for _ in 0..1000 {
            h.insert("same-user");
        }
        assert_eq!(h.estimate(), 1);
        assert_eq!(Hll::new().estimate(), 0);
    }

    /// A sketch of users `lo..lo + n` in one of the three stored forms: fixed-width sparse
    /// (tag 2) or dense (tag 1) as `encode` writes them, or the legacy delta-coded sparse form
    /// (tag 0) older stores hold.
    fn stored(lo: u64, n: u64, legacy: bool) -> (Hll, Vec<u8>) {
        let mut h = Hll::new();
        for i in lo..lo + n {
            h.insert(&i.to_string());
        }
        let mut bytes = Vec::new();
        match (&h, legacy) {
            (Hll::Sparse(hashes), true) => {
                bytes.push(0);
                varint::put(&mut bytes, hashes.len() as u64);
                let mut prev = 0;
                for &x in hashes {
                    varint::put(&mut bytes, x - prev);
                    prev = x;
                }
            }
            _ => h.encode(&mut bytes),
        }
        (h, bytes)
    }

    proptest! {
        #[test]
        fn merging_stored_bytes_equals_merging_decoded_sketches(
            parts in proptest::collection::vec((
                prop_oneof![0u64..3000, Just(0), Just(100)],
                prop_oneof![0u64..2600, Just(40), Just(500)],
                any::<bool>(),
            ), 1..8),
        ) {
            // Users drawn from 0..5600, so rows hold equal sets, subsets, overlaps, sets of one
            // size but different users, and sets past the sparse limit; the reference merges the
            // sketches `insert` built.
            let mut expected = Hll::new();
            let mut from_bytes = Hll::new();
            for &(lo, n, legacy) in &parts {
                let (sketch, bytes) = stored(lo, n, legacy);
                let mut again = sketch.clone();
                prop_assert!(again.merge_encoded(&mut bytes.as_slice()).is_some());
                prop_assert_eq!(&again, &sketch, "a sketch merged with its own bytes is unchanged");
                expected.merge(&sketch);
                let mut input = bytes.as_slice();
                prop_assert!(from_bytes.merge_encoded(&mut input).is_some());
                prop_assert!(input.is_empty(), "every byte of the sketch read");
            }
            prop_assert_eq!(&from_bytes, &expected);
            prop_assert_eq!(from_bytes.estimate(), expected.estimate());
        }

        #[test]
        fn merging_stored_bytes_refuses_exactly_what_decoding_refuses(
            lo in 0u64..3000,
            n in 0u64..2600,
            legacy in any::<bool>(),
            into in 0u64..3000,
            cut in any::<proptest::sample::Index>(),
            at in any::<proptest::sample::Index>(),
            value in any::<u8>(),
        ) {
            let (sketch, mut bytes) = stored(lo, n, legacy);
            // One byte changed (a tag, a length, a rank past Q + 1), or in the fixed-width form
            // one hash written over the next (repeated, or out of order), and maybe cut short.
            let i = at.index(bytes.len());
            match &sketch {
                Hll::Sparse(hashes) if !legacy && hashes.len() > 1 && value < 64 => {
                    let start = bytes.len() - hashes.len() * 8;
                    let h = at.index(hashes.len() - 1);
                    let over = if value < 32 { hashes[h] } else { hashes[h + 1].saturating_add(1) };
                    let at = start + (h + usize::from(value < 32)) * 8;
                    bytes[at..at + 8].copy_from_slice(&over.to_le_bytes());
                }
                _ => bytes[i] = value,
            }
            let bytes = &bytes[..cut.index(bytes.len() + 1)];
            let decodes = Hll::decode(&mut &*bytes).is_some();
            for mut acc in [Hll::new(), stored(into, 100, false).0, stored(into, 2500, false).0] {
                prop_assert_eq!(acc.merge_encoded(&mut &*bytes).is_some(), decodes);
            }
        }

        #[test]
        fn merge_is_associative_commutative_and_round_trips(a in 0u64..6000, b in 0u64..6000, c in 0u64..6000) {
            let make = |lo: u64, n: u64| { let mut h = Hll::new(); for i in lo..lo + n { h.insert(&i.to_string()); } h };
            let (ha, hb, hc) = (make(0, a), make(3000, b), make(7000, c));
            let mut left = ha.clone(); left.merge(&hb); left.merge(&hc);
            let mut bc = hb.clone(); bc.merge(&hc);
            let mut right = hc.clone(); right.merge(&bc); right.merge(&ha);
            prop_assert_eq!(&left, &right);
            prop_assert_eq!(left.estimate(), right.estimate());
            let mut buf = Vec::new();
            left.encode(&mut buf);
            let back = Hll::decode(&mut buf.as_slice()).expect("decodes");
            prop_assert_eq!(back.estimate(), left.estimate());
        }
    }
}
