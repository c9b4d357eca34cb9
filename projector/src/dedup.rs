//! The dedup memory of one log partition: which event fingerprints were seen within the window,
//! and when (log clock).
//!
//! Two tiers ([`tally_domain::dedup`]):
//! - the **open set**, exact and in memory: a hash table of 64-bit fingerprint → second, about
//!   20–30 bytes per entry (16-byte slots kept between 7/16 and 7/8 full), persisted as 12-byte
//!   chunks with each commit;
//! - **sealed generations**: when the open set reaches its cap, the commit seals it. Its entries
//!   go to the store sorted, in blocks of 1,024 (12 bytes per entry on disk); memory keeps a
//!   binary fuse filter (≈ 2.25 bytes per entry) and the first fingerprint of each block.
//!   A generation is forgotten whole once its newest entry leaves the window.
//!
//! Exactness: a fingerprint the open set holds within the window is a duplicate. Otherwise each
//! sealed generation whose filter reports it names the one block that would hold it; the
//! projector reads those blocks (one batched store read per commit, [`Suspects`]) and only a
//! fingerprint found there, seen within the window, is a duplicate. A false positive of the
//! filter (≈ 1 in 65,536 per generation) costs a block read and nothing else.
//!
//! Fingerprints are 64-bit XXH3: the chance that two different ids collide among n in the
//! window is about n²/2⁶⁵ (3 × 10⁻⁶ at 10 million).

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use tally_domain::dedup::{find_in_block, GenerationSummary};
use tally_domain::store::{DedupGeneration, DedupSeal, StoreError};

/// Fingerprints are already uniform; hashing them again is wasted work.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type Shard = HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>;

/// Shards are picked by fingerprint bits 32..40, which the hash table itself never looks at
/// (it uses the low bits for position and the top 7 for tags), so every shard stays uniform.
const SHARDS: usize = 256;

fn shard_of(fp: u64) -> usize {
    ((fp >> 32) & (SHARDS as u64 - 1)) as usize
}

/// A sealed generation as the projector holds it.
struct Sealed {
    /// Opaque to the projector: the name stores keep it under.
    id: u64,
    max_seen_s: u32,
    entries: u64,
    summary: GenerationSummary,
}

/// The dedup memory: the open set, split into 256 independently growing shards (no single
/// rehash ever copies the whole set, which would double peak memory and stall the projector;
/// expiry sweeps one shard per call), and the sealed generations, oldest first.
pub struct Dedup {
    shards: Vec<Shard>,
    window_s: u32,
    next_sweep: usize,
    open_len: usize,
    sealed: Vec<Sealed>,
    /// Open entries that make the next commit seal them; `None`: never (the store keeps no
    /// sealed generations).
    seal_at: Option<usize>,
}

impl Dedup {
    /// An empty memory.
    pub fn empty(window_s: u32, seal_at: Option<usize>) -> Dedup {
        Dedup {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            window_s,
            next_sweep: 0,
            open_len: 0,
            sealed: Vec::new(),
            seal_at,
        }
    }

    /// The memory as stored: the open set's `entries` and the sealed `generations`.
    pub fn new(
        window_s: u32,
        seal_at: Option<usize>,
        entries: impl IntoIterator<Item = (u64, u32)>,
        generations: Vec<DedupGeneration>,
    ) -> Result<Dedup, StoreError> {
        let mut dedup = Dedup::empty(window_s, seal_at);
        for (fp, s) in entries {
            let shard = &mut dedup.shards[shard_of(fp)];
            match shard.get_mut(&fp) {
                Some(slot) => *slot = (*slot).max(s),
                None => {
                    shard.insert(fp, s);
                    dedup.open_len += 1;
                }
            }
        }
        for g in generations {
            dedup.sealed.push(Sealed {
                id: g.id,
                max_seen_s: g.max_seen_s,
                entries: g.entries,
                summary: GenerationSummary::decode(&g.summary)?,
            });
        }
        Ok(dedup)
    }

    /// Records `fp` as seen at `now_s`; `true` when it is new (not seen within the window).
    /// `sealed_seen` is the newest second the sealed generations hold for `fp`, as read from
    /// their blocks ([`Suspects::resolve`]); `None` when no block holds it.
    pub fn first_sighting(&mut self, fp: u64, now_s: u32, sealed_seen: Option<u32>) -> bool {
        let window_s = self.window_s;
        let within = |seen_s: u32| now_s.saturating_sub(seen_s) <= window_s;
        let shard = &mut self.shards[shard_of(fp)];
        match shard.get_mut(&fp) {
            Some(seen_s) if within(*seen_s) => false,
            _ if sealed_seen.is_some_and(within) => false,
            Some(seen_s) => {
                *seen_s = now_s;
                true
            }
            None => {
                shard.insert(fp, now_s);
                self.open_len += 1;
                true
            }
        }
    }

    /// Whether any sealed generation is held (lookups then go through [`Suspects`]).
    pub fn has_sealed(&self) -> bool {
        !self.sealed.is_empty()
    }

    /// The stored blocks `(generation, block)` that may hold `fp` among generations that can
    /// still hold an entry within the window at `now_s` or later.
    pub fn suspects(&self, fp: u64, now_s: u32, out: &mut Vec<(u64, u32)>) {
        let horizon = self.horizon(now_s);
        for g in &self.sealed {
            if g.max_seen_s >= horizon {
                if let Some(block) = g.summary.block_of(fp) {
                    out.push((g.id, block));
                }
            }
        }
    }

    /// The oldest second that can still make a later event a duplicate.
    pub fn horizon(&self, now_s: u32) -> u32 {
        now_s.saturating_sub(self.window_s)
    }

    /// Forgets expired fingerprints: the open set's in the next `shards` shards, and every
    /// sealed generation wholly before the horizon (memory only; answers do not depend on
    /// when, or whether, this runs).
    pub fn evict(&mut self, now_s: u32, shards: usize) {
        let horizon = self.horizon(now_s);
        for _ in 0..shards.min(SHARDS) {
            let shard = &mut self.shards[self.next_sweep];
            let before = shard.len();
            shard.retain(|_, s| *s >= horizon);
            if shard.len() * 4 < shard.capacity() && shard.capacity() > 1024 {
                shard.shrink_to_fit();
            }
            self.open_len -= before - shard.len();
            self.next_sweep = (self.next_sweep + 1) % SHARDS;
        }
        self.sealed.retain(|g| g.max_seen_s >= horizon);
    }

    /// Seals the open set when it has reached its cap: its entries within the window at
    /// `now_s`, sorted by fingerprint, become new generations of at most the cap each (one,
    /// unless a loaded or adopted open set was larger), their summaries kept here and their
    /// entries returned for the store; the open set starts empty. `salt` (the partition's
    /// position) makes each seal's name unique even when the same ids are sealed again later.
    pub fn seal_if_full(&mut self, now_s: u32, salt: i64) -> Vec<DedupSeal> {
        let Some(cap) = self.seal_at.map(|cap| cap.max(1)) else {
            return Vec::new();
        };
        if self.open_len < cap {
            return Vec::new();
        }
        let horizon = self.horizon(now_s);
        // Each shard is freed as soon as it is copied out: the peak is the open set plus
        // one shard, then the entries (16 bytes each) plus one generation's filter build.
        let mut entries: Vec<(u64, u32)> = Vec::with_capacity(self.open_len);
        for shard in &mut self.shards {
            entries.extend(
                std::mem::take(shard)
                    .into_iter()
                    .filter(|(_, s)| *s >= horizon),
            );
        }
        self.open_len = 0;
        entries.sort_unstable_by_key(|(fp, _)| *fp);
        let mut built = Vec::new();
        for part in (0..entries.len().div_ceil(cap)).rev() {
            let part = if part == 0 {
                std::mem::take(&mut entries)
            } else {
                entries.split_off(part * cap)
            };
            let fps: Vec<u64> = part.iter().map(|(fp, _)| *fp).collect();
            let summary = GenerationSummary::build(&fps);
            built.push((part, summary));
        }
        if built.iter().any(|(_, summary)| summary.is_none()) {
            // Not buildable (xorf refuses repeated keys, which a set cannot hold): nothing
            // is sealed, everything stays open.
            for (fp, s) in built.into_iter().flat_map(|(part, _)| part) {
                self.shards[shard_of(fp)].insert(fp, s);
                self.open_len += 1;
            }
            return Vec::new();
        }
        let mut seals = Vec::with_capacity(built.len());
        for (part, summary) in built {
            let Some(summary) = summary else { continue };
            let encoded = summary.encode();
            let max_seen_s = part.iter().map(|(_, s)| *s).max().unwrap_or(0);
            // Named by content, salt and newest second: seals by different projectors (a
            // fenced one racing the next), or of the same ids a window apart, never share a
            // name in the store.
            let mut named = encoded.clone();
            named.extend_from_slice(&salt.to_le_bytes());
            named.extend_from_slice(&max_seen_s.to_le_bytes());
            let id = xxhash_rust::xxh3::xxh3_64(&named);
            self.sealed.push(Sealed {
                id,
                max_seen_s,
                entries: part.len() as u64,
                summary,
            });
            seals.push(DedupSeal {
                generation: DedupGeneration {
                    id,
                    max_seen_s,
                    entries: part.len() as u64,
                    summary: encoded,
                },
                entries: part,
            });
        }
        seals
    }

    /// Entries held: the open set's and the sealed generations'.
    pub fn len(&self) -> usize {
        self.open_len
            + self
                .sealed
                .iter()
                .map(|g| g.entries as usize)
                .sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of memory held (hash table slots counted at capacity, with their control bytes).
    pub fn memory_bytes(&self) -> usize {
        let open: usize = self.shards.iter().map(|s| s.capacity() * 17).sum();
        open + self
            .sealed
            .iter()
            .map(|g| g.summary.memory_bytes())
            .sum::<usize>()
    }
}

/// The fingerprints of a batch that sealed generations may hold, per partition, and the blocks
/// to read to settle them.
#[derive(Default)]
pub struct Suspects {
    /// Per partition, per suspected fingerprint, the blocks that may hold it.
    pub by_partition: BTreeMap<i32, HashMap<u64, Vec<(u64, u32)>>>,
}

impl Suspects {
    /// The distinct blocks to read for `partition`.
    pub fn blocks(&self, partition: i32) -> Vec<(u64, u32)> {
        let mut wanted: Vec<(u64, u32)> = self
            .by_partition
            .get(&partition)
            .into_iter()
            .flat_map(|m| m.values().flatten().copied())
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    /// Settles `partition`'s suspects against the blocks read (`blocks[i]` is `wanted[i]`):
    /// the newest second each fingerprint is stored with, for those that are there.
    pub fn resolve(
        &self,
        partition: i32,
        wanted: &[(u64, u32)],
        blocks: &[Vec<(u64, u32)>],
    ) -> HashMap<u64, u32> {
        let read: HashMap<(u64, u32), &Vec<(u64, u32)>> =
            wanted.iter().copied().zip(blocks.iter()).collect();
        let mut seen = HashMap::new();
        for (fp, places) in self.by_partition.get(&partition).into_iter().flatten() {
            let newest = places
                .iter()
                .filter_map(|place| read.get(place))
                .filter_map(|block| find_in_block(block, *fp))
                .max();
            if let Some(s) = newest {
                seen.insert(*fp, s);
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(window_s: u32, entries: &[(u64, u32)]) -> Dedup {
        Dedup::new(window_s, None, entries.iter().copied(), Vec::new()).expect("valid")
    }

    #[test]
    fn duplicates_within_the_window_count_once() {
        let mut d = open(100, &[]);
        assert!(d.first_sighting(7, 1_000, None));
        assert!(!d.first_sighting(7, 1_050, None));
        assert!(!d.first_sighting(7, 1_100, None));
        assert!(
            d.first_sighting(7, 1_101, None),
            "outside the window it is a new event"
        );
        assert!(!d.first_sighting(7, 1_150, None));
    }

    #[test]
    fn eviction_does_not_change_answers() {
        let mut d = open(100, &[(1, 1_000), (2, 1_090)]);
        d.evict(1_150, SHARDS);
        assert_eq!(d.len(), 1);
        assert!(d.first_sighting(1, 1_150, None));
        assert!(!d.first_sighting(2, 1_150, None));
    }

    /// Seals 3,000 fingerprints (odd multiples of a constant) seen at second 1,000.
    fn sealed(window_s: u32) -> (Dedup, DedupSeal, Vec<u64>) {
        let fps: Vec<u64> = (0..3_000u64)
            .map(|i| (2 * i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut d = Dedup::new(window_s, Some(3_000), Vec::new(), Vec::new()).expect("valid");
        for fp in &fps {
            assert!(d.first_sighting(*fp, 1_000, None));
        }
        let mut seals = d.seal_if_full(1_000, 7);
        assert_eq!(
            seals.len(),
            1,
            "3,000 open entries reach the cap: one generation"
        );
        (d, seals.remove(0), fps)
    }

    /// What the projector does: the suspects' blocks read from the seal, then the sighting.
    fn sighting(d: &mut Dedup, seal: &DedupSeal, fp: u64, now_s: u32) -> bool {
        let mut places = Vec::new();
        d.suspects(fp, now_s, &mut places);
        let mut suspects = Suspects::default();
        suspects
            .by_partition
            .entry(0)
            .or_default()
            .insert(fp, places);
        let wanted = suspects.blocks(0);
        let blocks: Vec<Vec<(u64, u32)>> = wanted
            .iter()
            .map(|(_, b)| seal.blocks().nth(*b as usize).unwrap_or_default().to_vec())
            .collect();
        let seen = suspects.resolve(0, &wanted, &blocks);
        d.first_sighting(fp, now_s, seen.get(&fp).copied())
    }

    #[test]
    fn a_sealed_generation_keeps_its_entries_exactly() {
        let (mut d, seal, fps) = sealed(100);
        assert_eq!(seal.generation.entries, 3_000);
        assert_eq!(seal.blocks().count(), 3, "blocks of 1,024");
        assert!(seal.entries.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(d.len(), 3_000, "all of them now sealed");
        for fp in &fps[1..] {
            assert!(!sighting(&mut d, &seal, *fp, 1_050), "a duplicate");
        }
        assert!(
            sighting(&mut d, &seal, fps[1], 1_101),
            "outside the window it is new again"
        );
    }

    #[test]
    fn a_filter_false_positive_is_not_a_duplicate() {
        let (mut d, seal, fps) = sealed(100);
        let members: std::collections::HashSet<u64> = fps.iter().copied().collect();
        // Even multiples are never members; search them for ones the filter reports anyway
        // (about 1 in 65,536).
        let mut found = 0;
        for i in 1..2_000_000u64 {
            let fp = (2 * i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            assert!(!members.contains(&fp));
            let mut places = Vec::new();
            d.suspects(fp, 1_050, &mut places);
            if places.is_empty() {
                continue;
            }
            found += 1;
            assert!(
                sighting(&mut d, &seal, fp, 1_050),
                "a filter hit the block does not confirm is a new event"
            );
            assert!(
                !sighting(&mut d, &seal, fp, 1_051),
                "and is remembered as one"
            );
        }
        assert!(found > 0, "two million probes found no false positive");
    }

    #[test]
    fn generations_expire_whole_once_their_newest_entry_leaves_the_window() {
        let (mut d, seal, fps) = sealed(100);
        let stored = seal.generation.clone();
        d.evict(1_100, SHARDS);
        assert!(
            d.has_sealed(),
            "its newest entry is still within the window"
        );
        d.evict(1_101, SHARDS);
        assert!(!d.has_sealed());
        assert!(d.first_sighting(fps[0], 1_101, None));
        // Loaded back from the store, it answers as before sealing.
        let mut back = Dedup::new(100, Some(3_000), Vec::new(), vec![stored]).expect("valid");
        assert!(!sighting(&mut back, &seal, fps[7], 1_020));
    }

    #[test]
    fn an_open_set_loaded_beyond_the_cap_seals_into_generations_of_the_cap() {
        // 2,500 ids loaded as open chunks (an adoption, or a store from before sealing) with
        // a cap of 1,000: three generations of 1,000, 1,000 and 500 ids, together exact.
        let entries: Vec<(u64, u32)> = (1..=2_500u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1_000))
            .collect();
        let mut d = Dedup::new(100, Some(1_000), entries.clone(), Vec::new()).expect("valid");
        let seals = d.seal_if_full(1_000, 1);
        let mut sizes: Vec<u64> = seals.iter().map(|s| s.generation.entries).collect();
        sizes.sort_unstable();
        assert_eq!(sizes, [500, 1_000, 1_000]);
        let mut ids: Vec<u64> = seals.iter().map(|s| s.generation.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 3, "each generation has its own name");
        let mut all: Vec<(u64, u32)> = seals.iter().flat_map(|s| s.entries.clone()).collect();
        all.sort_unstable();
        let mut want = entries;
        want.sort_unstable();
        assert_eq!(all, want, "every id sealed once");
        for seal in &seals {
            for (fp, _) in seal.entries.iter().step_by(97) {
                assert!(!sighting(&mut d, seal, *fp, 1_050));
            }
        }
        assert_eq!(d.len(), 2_500);
    }

    #[test]
    fn the_same_ids_sealed_again_get_another_name() {
        let (_, first, fps) = sealed(100);
        let mut d = Dedup::new(100, Some(3_000), Vec::new(), Vec::new()).expect("valid");
        for fp in &fps {
            assert!(d.first_sighting(*fp, 1_000, None));
        }
        let again = d.seal_if_full(1_000, 8);
        assert_ne!(again[0].generation.id, first.generation.id);
        assert_eq!(again[0].generation.summary, first.generation.summary);
    }

    #[test]
    fn without_a_cap_nothing_is_sealed() {
        let mut d = open(100, &[(1, 1_000), (2, 1_000)]);
        assert!(d.seal_if_full(1_000, 0).is_empty());
    }
}
