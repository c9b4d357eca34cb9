//! Where the dedup memory's sealed filters live: files the projector writes once and maps
//! read-only, so they are not on its heap. The kernel pages a filter in as lookups touch it
//! and, as its pages are written back (synced before mapping), may drop them again under
//! memory pressure and read them back on the next lookup: the dedup memory's heap stays
//! bounded by the open set however many ids the window holds, and what the filters add is
//! page cache the kernel can reclaim.
//!
//! Nor do the filters stay in the process's resident memory: a batch probes the filters part by
//! part, and lets each part's pages go once its probes are done ([`SummaryBody::release`],
//! `MADV_DONTNEED`: the pages leave the process's page tables and stay in the page cache, so the
//! next batch maps them back without reading the disk). The process's resident set then holds
//! the part being probed, not every filter of the window; the price is mapping the pages back,
//! batch after batch.
//!
//! Each file is created already deleted (`O_TMPFILE` where the file system has it; elsewhere
//! `tempfile` creates and unlinks it at once, so only a crash between the two leaves a `.tmp*`
//! file; nothing removes those, since the directory may be shared), and nothing is ever read
//! back from a previous run: the store holds every summary, and a start maps them again. A file is synced before it is mapped: pages the kernel drops are
//! then read back from what was written (a failed writeback could otherwise hand back stale
//! bytes, and a filter miss would count a duplicate). A disk that fails a read back kills the
//! process (`SIGBUS`), as it would fail the stores on the same disk.
//!
//! Invariants:
//! - A mapped body holds exactly the bytes of the summary it replaces
//!   ([`GenerationSummary::with_body`] compares them), so a mapping never changes an answer.
//! - When a file cannot be written or mapped (disk full, no such directory), the summary stays
//!   on the heap and the failure is counted and logged: dedup stays exact, only its memory
//!   grows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tally_domain::dedup::{GenerationSummary, SummaryBody};
use tracing::warn;

use crate::metrics as m;

/// The directory the filters are mapped from.
#[derive(Debug, Clone)]
pub struct FilterFiles {
    dir: PathBuf,
}

impl FilterFiles {
    /// Filters mapped from files in `dir`, which is created if missing; refused when a file
    /// cannot be created and mapped there.
    pub fn new(dir: &Path) -> std::io::Result<FilterFiles> {
        std::fs::create_dir_all(dir)?;
        let files = FilterFiles {
            dir: dir.to_path_buf(),
        };
        files.map_bytes(&[0u8; 8])?;
        Ok(files)
    }

    /// `summary` with its filter and block index mapped from a file, or as it was when they
    /// could not be (see the module's invariants).
    pub fn place(&self, summary: GenerationSummary) -> GenerationSummary {
        if summary.body_bytes().is_empty() {
            return summary;
        }
        match self.map_bytes(summary.body_bytes()) {
            Ok(body) => match summary.with_body(Arc::new(body)) {
                Ok(mapped) => {
                    // Comparing the bytes read every page in.
                    mapped.release();
                    mapped
                }
                Err(kept) => {
                    metrics::counter!(m::DEDUP_MAP_FAILURES).increment(1);
                    warn!("a mapped dedup filter did not read back as written; kept in memory");
                    kept
                }
            },
            Err(e) => {
                metrics::counter!(m::DEDUP_MAP_FAILURES).increment(1);
                warn!(dir = %self.dir.display(), error = %e,
                    "could not map a dedup filter from a file; kept in memory");
                summary
            }
        }
    }

    #[allow(unsafe_code)] // mapping a file is unsafe in Rust's terms; see the SAFETY note
    fn map_bytes(&self, bytes: &[u8]) -> std::io::Result<MappedBody> {
        let mut file = tempfile::tempfile_in(&self.dir)?;
        file.write_all(bytes)?;
        file.sync_data()?;
        // SAFETY: a mapping is sound while nothing changes or truncates the file. This one has
        // no name (or lost it before this line), Tally never writes it again, and only a
        // process of the same user reaching into this one's descriptors (`/proc/<pid>/fd`)
        // could. The bytes are compared with the summary's before they are used
        // (`GenerationSummary::with_body`).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        // Lookups land anywhere in a filter: reading ahead would only fetch pages not needed.
        // Only advice: a kernel that refuses it maps the same bytes.
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Random);
        Ok(MappedBody(map))
    }
}

/// A summary's body mapped from its file (page-aligned, so 8-byte aligned).
struct MappedBody(memmap2::Mmap);

impl SummaryBody for MappedBody {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
    fn on_heap(&self) -> bool {
        false
    }
    #[allow(unsafe_code)] // see the SAFETY note
    fn release(&self) {
        // SAFETY: `MADV_DONTNEED` on a shared (`Mmap::map`: `MAP_SHARED`) read-only mapping of
        // a file only unmaps its pages: they stay in the page cache (or on disk), and the next
        // read maps the same bytes again. It drops data only from private mappings' copied
        // pages; this one has none, and nothing writes the file (see `map_bytes`).
        #[cfg(unix)]
        let _ = unsafe { self.0.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;

    /// The kibibytes of the process's memory the mapping that holds `at` has resident, from
    /// the kernel's own account (`/proc/self/smaps`).
    pub(crate) fn resident_kib(at: *const u8) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
        let addr = at as usize;
        let mut inside = false;
        for line in smaps.lines() {
            let range = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = range.split_once('-') {
                if let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
                {
                    inside = (lo..hi).contains(&addr);
                    continue;
                }
            }
            if inside {
                if let Some(kib) = line.strip_prefix("Rss:") {
                    let kib = kib.trim().trim_end_matches("kB").trim();
                    return kib.parse().expect("a number of kB");
                }
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn a_released_filter_leaves_the_process_and_answers_the_same_when_read_again() {
        let dir = tempfile::tempdir().expect("dir");
        let files = FilterFiles::new(dir.path()).expect("a usable directory");
        // 200,000 distinct fingerprints: a filter of about 450 KB, over a hundred pages.
        let mut sorted: Vec<u64> = (1..=200_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        sorted.sort_unstable();
        let heap = GenerationSummary::build(&sorted).expect("built");
        let body_kib = (heap.body_bytes().len() / 1024) as u64;
        assert!(body_kib > 400, "{body_kib} KiB");
        let mapped = files.place(heap.clone());
        assert_eq!(mapped.mapped_bytes(), heap.body_bytes().len());
        let at = mapped.body_bytes().as_ptr();
        // Placing it compared every byte, then let the pages go.
        assert_eq!(resident_kib(at), 0);
        let blocks = |s: &GenerationSummary| -> Vec<Option<u32>> {
            sorted.iter().map(|fp| s.block_of(*fp)).collect()
        };
        let want = blocks(&heap);
        // The members are spread over the whole filter: probing them maps most of it back.
        assert_eq!(blocks(&mapped), want);
        let probed = resident_kib(at);
        assert!(probed * 2 > body_kib, "{probed} of {body_kib} KiB resident");
        mapped.release();
        assert_eq!(resident_kib(at), 0);
        assert_eq!(blocks(&mapped), want);
        assert_eq!(mapped, heap);
    }
}
