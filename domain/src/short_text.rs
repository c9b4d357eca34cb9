//! Borrowed short strings as hash-map keys, compared without a call into the C library.
//!
//! Comparing two `&str`s calls `memcmp`. The fold looks up every event by a key of seven such
//! strings (feature, model, provider, prompt, version, experiment, variant — a few to a few dozen
//! bytes each), so a batch of 1,000 events makes about 7,000 calls; on some x86-64 machines
//! glibc picks an AVX-512 `memcmp` that is several times slower than the comparison itself for
//! strings this short (measured: the fold took 0.6–0.7 ms per 1,000 events with it, 9 % of the
//! server's CPU at full load). [`same_bytes`] compares with a few word loads inlined into the
//! caller instead.
//!
//! Invariant: [`same_bytes`]`(a, b) == (a == b)` for all byte strings, and [`ShortText`] hashes
//! exactly as the `str` it wraps, so a map keyed by it finds what a map keyed by `&str` finds.

use std::hash::{Hash, Hasher};

/// A borrowed string whose equality is [`same_bytes`].
#[derive(Debug, Clone, Copy)]
pub struct ShortText<'a>(pub &'a str);

impl PartialEq for ShortText<'_> {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        same_bytes(self.0.as_bytes(), other.0.as_bytes())
    }
}

impl Eq for ShortText<'_> {}

impl Hash for ShortText<'_> {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// `a == b`, by loads of 1, 2, 4 or 8 bytes (the last load of a string overlapping the one
/// before it) rather than a call to `memcmp`.
#[inline]
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1 => a[0] == b[0],
        2..=3 => u16_at(a, 0) == u16_at(b, 0) && u16_at(a, n - 2) == u16_at(b, n - 2),
        4..=7 => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        _ => {
            let mut at = 0;
            while at + 8 <= n {
                if u64_at(a, at) != u64_at(b, at) {
                    return false;
                }
                at += 8;
            }
            at == n || u64_at(a, n - 8) == u64_at(b, n - 8)
        }
    }
}

#[inline(always)]
fn u16_at(s: &[u8], at: usize) -> u16 {
    let mut word = [0; 2];
    word.copy_from_slice(&s[at..at + 2]);
    u16::from_ne_bytes(word)
}

#[inline(always)]
fn u32_at(s: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&s[at..at + 4]);
    u32::from_ne_bytes(word)
}

#[inline(always)]
fn u64_at(s: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::hash::BuildHasher;

    #[test]
    fn every_single_byte_difference_at_every_length_is_seen() {
        for n in 0..=40 {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "length {n}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!same_bytes(&a, &b), "length {n}, byte {at}");
            }
            let mut longer = a.clone();
            longer.push(b'a');
            assert!(!same_bytes(&a, &longer), "length {n} against {}", n + 1);
        }
    }

    proptest! {
        #[test]
        fn same_bytes_is_equality(
            a in proptest::collection::vec(prop_oneof![Just(b'x'), Just(b'y')], 0..40),
            b in proptest::collection::vec(prop_oneof![Just(b'x'), Just(b'y')], 0..40),
        ) {
            prop_assert_eq!(same_bytes(&a, &b), a == b);
        }

        #[test]
        fn a_short_text_hashes_as_its_str(s in ".{0,40}") {
            let state = foldhash::fast::RandomState::default();
            prop_assert_eq!(state.hash_one(ShortText(&s)), state.hash_one(s.as_str()));
        }
    }
}
