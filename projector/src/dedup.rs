//! The dedup memory: fingerprints of event ids seen within the window, with the second each was
//! first seen (log clock).
//!
//! Cost: about 16–32 bytes of memory per distinct event in the window (a 64-bit fingerprint and a
//! 32-bit second in an open-addressing table kept at most 7/8 full), and 12 bytes on disk in the
//! analytics store. 10 million events a day with the default 24 h window is ~300 MB of memory at
//! worst; size the window to the rate (`TALLY_DEDUP_WINDOW_SECS`). Fingerprints are 64-bit XXH3:
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

#[derive(Default)]
pub struct Dedup {
    seen: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    window_s: u32,
    last_evicted_s: u32,
}

impl Dedup {
    pub fn new(window_s: u32, entries: impl IntoIterator<Item = (u64, u32)>) -> Dedup {
        let mut dedup = Dedup {
            seen: HashMap::default(),
            window_s,
            last_evicted_s: 0,
        };
        for (fp, s) in entries {
            let slot = dedup.seen.entry(fp).or_insert(s);
            *slot = (*slot).max(s);
        }
        dedup
    }

    /// Records `fp` as seen at `now_s`; `true` when it is new (not seen within the window).
    pub fn first_sighting(&mut self, fp: u64, now_s: u32) -> bool {
        match self.seen.get_mut(&fp) {
            Some(seen_s) if now_s.saturating_sub(*seen_s) <= self.window_s => false,
            Some(seen_s) => {
                *seen_s = now_s;
                true
            }
            None => {
                self.seen.insert(fp, now_s);
                true
            }
        }
    }

    /// The oldest second that can still make a later event a duplicate.
    pub fn horizon(&self, now_s: u32) -> u32 {
        now_s.saturating_sub(self.window_s)
    }

    /// Forgets expired fingerprints (memory only; semantics do not depend on when this runs).
    pub fn evict(&mut self, now_s: u32) {
        if now_s.saturating_sub(self.last_evicted_s) < 60 {
            return;
        }
        let horizon = self.horizon(now_s);
        self.seen.retain(|_, s| *s >= horizon);
        self.last_evicted_s = now_s;
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
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
        d.evict(1_150);
        assert_eq!(d.len(), 1);
        assert!(d.first_sighting(1, 1_150));
        assert!(!d.first_sighting(2, 1_150));
    }
}
