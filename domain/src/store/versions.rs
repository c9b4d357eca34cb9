//! Row versions: a number per (resolution, bucket) of an analytics store that moves whenever
//! anything may have changed that bucket's rows, so that a reader can keep what it read of a
//! closed bucket and know, before using it again, whether it is still what the store holds.
//!
//! Invariants:
//! - A store bumps a bucket's version *after* the change to its rows is visible to new reads
//!   (after the commit), and bumps even when the change failed part way. A reader takes the
//!   version *before* it starts reading. So a copy is labelled with a version no newer than
//!   its data: if the rows changed after the version was taken, the version has moved on and
//!   the copy is never used. A stale copy can be dropped needlessly, never used.
//! - Versions never repeat: every bump takes a new number from one counter.
//! - Memory is bounded: the book remembers at most [`RowVersions::REMEMBERED`] buckets; when it
//!   would remember more, it forgets them all and raises its floor (the version of every bucket
//!   it does not list), which makes every earlier copy stale at once.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::rollup::Resolution;

/// The version book of one analytics store (see the module's invariants).
#[derive(Debug, Default)]
pub struct RowVersions {
    book: Mutex<Book>,
}

#[derive(Debug, Default)]
struct Book {
    /// The last number handed out.
    counter: u64,
    /// The version of every bucket not in `touched`.
    floor: u64,
    touched: HashMap<(Resolution, i64), u64>,
}

impl RowVersions {
    /// How many buckets the book lists before it forgets them all (a few MB at most).
    pub const REMEMBERED: usize = 1 << 16;

    pub fn new() -> RowVersions {
        RowVersions::default()
    }

    /// The current version of the rows of `resolution` in the bucket starting at `bucket`.
    pub fn version(&self, resolution: Resolution, bucket: i64) -> u64 {
        let book = self.lock();
        book.touched
            .get(&(resolution, bucket))
            .copied()
            .unwrap_or(book.floor)
    }

    /// A change to the rows of these buckets is now visible to new reads.
    pub fn touch(&self, buckets: impl IntoIterator<Item = (Resolution, i64)>) {
        let mut book = self.lock();
        book.counter += 1;
        let version = book.counter;
        for at in buckets {
            if book.touched.len() >= Self::REMEMBERED && !book.touched.contains_key(&at) {
                book.touched.clear();
                book.floor = version;
            }
            book.touched.insert(at, version);
        }
    }

    /// A change to rows of any bucket (a retention pass, a reset) is now visible to new reads:
    /// every version moves.
    pub fn touch_all(&self) {
        let mut book = self.lock();
        book.counter += 1;
        book.floor = book.counter;
        book.touched.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        // The book holds only numbers; a panic elsewhere cannot leave it half-changed.
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::Resolution::{Day, Hour, Minute};

    #[test]
    fn a_touch_moves_only_its_buckets() {
        let v = RowVersions::new();
        let (day, hour) = (v.version(Day, 86_400), v.version(Hour, 3_600));
        v.touch([(Day, 86_400), (Minute, 60)]);
        assert_ne!(v.version(Day, 86_400), day);
        assert_eq!(v.version(Hour, 3_600), hour);
        // The same bucket start at another resolution is another bucket.
        assert_eq!(v.version(Day, 172_800), day);
        let once = v.version(Minute, 60);
        v.touch([(Minute, 60)]);
        assert_ne!(v.version(Minute, 60), once);
    }

    #[test]
    fn touching_everything_moves_every_version_and_none_comes_back() {
        let v = RowVersions::new();
        v.touch([(Day, 0)]);
        let seen: Vec<u64> = [(Day, 0), (Day, 86_400), (Hour, 0)]
            .iter()
            .map(|&(r, b)| v.version(r, b))
            .collect();
        v.touch_all();
        for (&(r, b), old) in [(Day, 0), (Day, 86_400), (Hour, 0)].iter().zip(&seen) {
            assert_ne!(v.version(r, b), *old, "{r:?} {b}");
        }
        // A later touch never hands out a number used before.
        v.touch([(Day, 0)]);
        assert!(!seen.contains(&v.version(Day, 0)));
    }

    #[test]
    fn a_full_book_forgets_its_buckets_by_making_every_copy_stale() {
        let v = RowVersions::new();
        let first = v.version(Minute, 0);
        v.touch((0..RowVersions::REMEMBERED as i64).map(|i| (Minute, i * 60)));
        let listed = v.version(Minute, 60);
        let never_touched = v.version(Hour, 0);
        assert_eq!(
            never_touched, first,
            "a bucket nobody touched keeps its version"
        );
        // One bucket more than the book lists: everything read before is stale.
        v.touch([(Day, 0)]);
        assert_ne!(v.version(Minute, 60), listed);
        assert_ne!(v.version(Hour, 0), never_touched);
        assert_eq!(v.lock().touched.len(), 1);
    }
}
