//! The dedup memory: fingerprints of event ids seen within the window, with the second each was
//! first seen (log clock).
//!
//! Cost: about 20–30 bytes of memory per distinct event in the window (a 64-bit fingerprint and a
//! 32-bit second in 16-byte slots of hash tables kept between 7/16 and 7/8 full), and 12 bytes on
//! disk in the analytics store. 10 million events a day with the default 24 h window is
//! ~250–300 MB of memory; size the window to the rate (`TALLY_DEDUP_WINDOW_SECS`). Fingerprints are 64-bit XXH3:
//! the chance that two different ids collide among n in the window is about n²/2⁶⁵
//! (3 × 10⁻⁶ at 10 million).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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

/// The dedup memory, split into 256 independently growing shards: no single rehash ever copies
/// the whole window (which would double peak memory and stall the projector), and expiry sweeps
/// one shard per call.
pub struct Dedup {
    shards: Vec<Shard>,
    window_s: u32,
    next_sweep: usize,
    len: usize,
}

impl Dedup {
    pub fn new(window_s: u32, entries: impl IntoIterator<Item = (u64, u32)>) -> Dedup {
        let mut dedup = Dedup {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            window_s,
            next_sweep: 0,
            len: 0,
        };
        for (fp, s) in entries {
            let shard = &mut dedup.shards[shard_of(fp)];
            match shard.get_mut(&fp) {
                Some(slot) => *slot = (*slot).max(s),
                None => {
                    shard.insert(fp, s);
                    dedup.len += 1;
                }
            }
        }
        dedup
    }

    /// Records `fp` as seen at `now_s`; `true` when it is new (not seen within the window).
    pub fn first_sighting(&mut self, fp: u64, now_s: u32) -> bool {
        let shard = &mut self.shards[shard_of(fp)];
        match shard.get_mut(&fp) {
            Some(seen_s) if now_s.saturating_sub(*seen_s) <= self.window_s => false,
            Some(seen_s) => {
                *seen_s = now_s;
                true
            }
            None => {
                shard.insert(fp, now_s);
                self.len += 1;
                true
            }
        }
    }

    /// The oldest second that can still make a later event a duplicate.
    pub fn horizon(&self, now_s: u32) -> u32 {
        now_s.saturating_sub(self.window_s)
    }

    /// Forgets expired fingerprints in the next `shards` shards (memory only; answers do not
    /// depend on when, or whether, this runs).
    pub fn evict(&mut self, now_s: u32, shards: usize) {
        let horizon = self.horizon(now_s);
        for _ in 0..shards.min(SHARDS) {
            let shard = &mut self.shards[self.next_sweep];
            let before = shard.len();
            shard.retain(|_, s| *s >= horizon);
            if shard.len() * 4 < shard.capacity() && shard.capacity() > 1024 {
                shard.shrink_to_fit();
            }
            self.len -= before - shard.len();
            self.next_sweep = (self.next_sweep + 1) % SHARDS;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_window_count_once() {
        let mut d = Dedup::new(100, []);
        assert!(d.first_sighting(7, 1_000));
        assert!(!d.first_sighting(7, 1_050));
        assert!(!d.first_sighting(7, 1_100));
        assert!(
            d.first_sighting(7, 1_101),
            "outside the window it is a new event"
        );
        assert!(!d.first_sighting(7, 1_150));
    }

    #[test]
    fn eviction_does_not_change_answers() {
        let mut d = Dedup::new(100, [(1, 1_000), (2, 1_090)]);
        d.evict(1_150, SHARDS);
        assert_eq!(d.len(), 1);
        assert!(d.first_sighting(1, 1_150));
        assert!(!d.first_sighting(2, 1_150));
    }
}
