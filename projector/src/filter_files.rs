//! Where the dedup memory's sealed filters live: files the projector writes once and maps
//! read-only, so they are not on its heap. The kernel pages a filter in as lookups touch it
//! and, as its pages are written back (synced before mapping), may drop them again under
//! memory pressure and read them back on the next lookup: the dedup memory's heap stays
//! bounded by the open set however many ids the window holds, and what the filters add is
//! page cache the kernel can reclaim.
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
            Ok(body) => summary.with_body(Arc::new(body)).unwrap_or_else(|kept| {
                metrics::counter!(m::DEDUP_MAP_FAILURES).increment(1);
                warn!("a mapped dedup filter did not read back as written; kept in memory");
                kept
            }),
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
}
