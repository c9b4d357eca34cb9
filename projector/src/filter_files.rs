//! Where the dedup memory's sealed filters live: files the projector writes once and maps
//! read-only, so they are not on its heap. The kernel pages a filter in as lookups touch it
//! and, as its pages are written back (synced before mapping), may drop them again under
//! memory pressure and read them back on the next lookup: the dedup memory's heap stays
//! bounded by the open set however many ids the window holds, and what the filters add is
//! page cache the kernel can reclaim.
//!
//! Nor do the filters stay in the process's resident memory: a batch probes the filters part by
//! part, and lets each file's pages go once its probes are done ([`SummaryBody::release`],
//! `MADV_DONTNEED`: the pages leave the process's page tables and stay in the page cache, so the
//! next batch maps them back without reading the disk). The process's resident set then holds
//! the file being probed, not every filter of the window; the price is mapping the pages back,
//! batch after batch.
//!
//! That price is paid per page mapped, so filters are packed into files the kernel can map with
//! huge pages ([`HUGE_PAGE`], 2 MiB): the parts given to [`FilterFiles::place_all`] together
//! share files of up to a huge page (a few parts of a merged run), and a file whose padding to
//! a whole number of huge pages costs at most a third of its bytes is padded and written a huge
//! page at a time. Where the kernel keeps such a file's page cache in huge pages (Linux maps
//! regular files' large folios with one page-table entry per 2 MiB on file systems that have
//! them, ext4 since 6.16 and XFS), a batch's probes fault once per 2 MiB instead of once per
//! 64 KiB (the kernel's fault-around), and letting a file go clears a few entries instead of
//! hundreds. Elsewhere the same files map with small pages, as before. Packing is only layout:
//! each body's bytes are compared with its summary's before use.
//!
//! Each file is created already deleted (`O_TMPFILE` where the file system has it; elsewhere
//! `tempfile` creates and unlinks it at once, so only a crash between the two leaves a `.tmp*`
//! file; nothing removes those, since the directory may be shared), and nothing is ever read
//! back from a previous run: the store holds every summary, and a start maps them again. A file
//! is synced before it is mapped: pages the kernel drops are then read back from what was
//! written (a failed writeback could otherwise hand back stale bytes, and a filter miss would
//! count a duplicate). A disk that fails a read back kills the process (`SIGBUS`), as it would
//! fail the stores on the same disk. A file's disk space and page cache are freed when the last
//! summary mapped from it is dropped.
//!
//! Invariants:
//! - A mapped body holds exactly the bytes of the summary it replaces
//!   ([`GenerationSummary::with_body`] compares them), so a mapping never changes an answer.
//! - [`FilterFiles::place_all`] gives the summaries back in the order given; the bodies in a
//!   file start on 64-byte boundaries and do not overlap.
//! - When a file cannot be written or mapped (disk full, no such directory), its summaries stay
//!   on the heap and the failure is counted and logged: dedup stays exact, only its memory
//!   grows.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tally_domain::dedup::{GenerationSummary, SummaryBody};
use tracing::warn;

use crate::metrics as m;

/// The pages the kernel maps at once for a file's huge folios (x86-64 and arm64 with 4 KiB
/// base pages): what a file of packed filters holds at most, unless one filter is larger.
pub const HUGE_PAGE: usize = 2 << 20;

/// Where bodies start within a file: cache-line aligned (a body must be 8-byte aligned).
const BODY_ALIGN: usize = 64;

/// The bytes a body of `len` bytes takes in a file: up to where the next one starts.
pub fn slot_len(len: usize) -> usize {
    len.next_multiple_of(BODY_ALIGN)
}

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
        files.map_file(&[&[0u8; 8]])?;
        Ok(files)
    }

    /// `summary` with its filter and block index mapped from a file of its own, or as it was
    /// when they could not be (see the module's invariants).
    pub fn place(&self, summary: GenerationSummary) -> GenerationSummary {
        let mut placed = self.place_all(vec![summary]);
        placed.pop().expect("one summary in, one out")
    }

    /// `summaries`, in the same order, with their bodies mapped from files, packed: each file
    /// holds a run of consecutive ones of up to [`HUGE_PAGE`] bytes together (one larger than
    /// that alone). Give the parts of one run in order, so that a run's probes move from file
    /// to file. Summaries without a body (parts that hold no entry) stay as they are.
    pub fn place_all(&self, summaries: Vec<GenerationSummary>) -> Vec<GenerationSummary> {
        let mut placed = Vec::with_capacity(summaries.len());
        let mut group: Vec<GenerationSummary> = Vec::new();
        let mut group_len = 0;
        for summary in summaries {
            let len = slot_len(summary.body_bytes().len());
            if !group.is_empty() && group_len + len > HUGE_PAGE {
                placed.extend(self.place_group(std::mem::take(&mut group)));
                group_len = 0;
            }
            group_len += len;
            group.push(summary);
        }
        placed.extend(self.place_group(group));
        placed
    }

    /// `group`, in order, with its bodies mapped from one file (those without a body as they
    /// are); as it was, when the file cannot be written or mapped.
    fn place_group(&self, group: Vec<GenerationSummary>) -> Vec<GenerationSummary> {
        let bodies: Vec<&[u8]> = group
            .iter()
            .map(GenerationSummary::body_bytes)
            .filter(|body| !body.is_empty())
            .collect();
        if bodies.is_empty() {
            return group;
        }
        let (file, offsets) = match self.map_file(&bodies) {
            Ok((file, offsets)) => (Arc::new(file), offsets),
            Err(e) => {
                metrics::counter!(m::DEDUP_MAP_FAILURES).increment(bodies.len() as u64);
                warn!(dir = %self.dir.display(), error = %e,
                    "could not map dedup filters from a file; kept in memory");
                return group;
            }
        };
        let mut offsets = offsets.into_iter();
        let mut placed = Vec::with_capacity(group.len());
        for summary in group {
            let len = summary.body_bytes().len();
            if len == 0 {
                placed.push(summary);
                continue;
            }
            let at = offsets.next().expect("map_file gives an offset per body");
            let body = MappedBody {
                file: file.clone(),
                at,
                len,
            };
            match summary.with_body(Arc::new(body)) {
                Ok(mapped) => placed.push(mapped),
                Err(kept) => {
                    metrics::counter!(m::DEDUP_MAP_FAILURES).increment(1);
                    warn!("a mapped dedup filter did not read back as written; kept in memory");
                    placed.push(kept);
                }
            }
        }
        // Comparing the bytes read every page in.
        file.release();
        placed
    }

    /// A file holding `bodies` one after another (each from a multiple of [`BODY_ALIGN`]: their
    /// offsets are returned with it), padded with zeros to whole huge pages when that costs at
    /// most a third of its bytes, written a huge page at a time (so that the page cache can
    /// hold it in huge folios), synced and mapped.
    #[allow(unsafe_code)] // mapping a file is unsafe in Rust's terms; see the SAFETY note
    fn map_file(&self, bodies: &[&[u8]]) -> std::io::Result<(MappedFile, Vec<usize>)> {
        let content: usize = bodies.iter().map(|b| slot_len(b.len())).sum();
        let padded = content.next_multiple_of(HUGE_PAGE);
        let len = if (padded - content) * 3 <= content {
            padded
        } else {
            content
        };
        let mut file = tempfile::tempfile_in(&self.dir)?;
        let mut chunk: Vec<u8> = Vec::with_capacity(len.min(HUGE_PAGE));
        let mut offsets = Vec::with_capacity(bodies.len());
        let mut at = 0;
        let zeros = [0u8; BODY_ALIGN];
        for body in bodies {
            let slot = slot_len(body.len());
            offsets.push(at);
            at += slot;
            write_through(&mut file, &mut chunk, body)?;
            write_through(&mut file, &mut chunk, &zeros[..slot - body.len()])?;
        }
        // The padding: the rest of the last huge page, or nothing (the chunk then holds the
        // file's last bytes).
        chunk.resize(chunk.len() + (len - at), 0);
        file.write_all(&chunk)?;
        file.sync_data()?;
        // SAFETY: a mapping is sound while nothing changes or truncates the file. This one has
        // no name (or lost it before this line), Tally never writes it again, and only a
        // process of the same user reaching into this one's descriptors (`/proc/<pid>/fd`)
        // could. The bytes are compared with the summaries' before they are used
        // (`GenerationSummary::with_body`).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        // Pages the kernel dropped come back a huge page at a time: lookups land anywhere in
        // a filter, and a batch's land almost everywhere. Only advice: a kernel without huge
        // pages maps the same bytes with small ones.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok((MappedFile(map), offsets))
    }
}

/// Appends `bytes` to `chunk`, writing it to `file` each time it holds a whole huge page.
fn write_through(
    file: &mut std::fs::File,
    chunk: &mut Vec<u8>,
    mut bytes: &[u8],
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let take = bytes.len().min(HUGE_PAGE - chunk.len());
        chunk.extend_from_slice(&bytes[..take]);
        bytes = &bytes[take..];
        if chunk.len() == HUGE_PAGE {
            file.write_all(chunk)?;
            chunk.clear();
        }
    }
    Ok(())
}

/// A file of packed filter bodies, mapped whole (a huge-page multiple, or larger than a huge
/// page, is placed at a huge-page-aligned address by the kernel).
struct MappedFile(memmap2::Mmap);

impl MappedFile {
    #[allow(unsafe_code)] // see the SAFETY note
    fn release(&self) {
        // SAFETY: `MADV_DONTNEED` on a shared (`Mmap::map`: `MAP_SHARED`) read-only mapping of
        // a file only unmaps its pages: they stay in the page cache (or on disk), and the next
        // read maps the same bytes again. It drops data only from private mappings' copied
        // pages; this one has none, and nothing writes the file (see `map_file`).
        #[cfg(unix)]
        let _ = unsafe { self.0.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
    }
}

/// A summary's body: `len` bytes at `at` (a multiple of [`BODY_ALIGN`]) of a mapped file.
struct MappedBody {
    file: Arc<MappedFile>,
    at: usize,
    len: usize,
}

impl SummaryBody for MappedBody {
    fn bytes(&self) -> &[u8] {
        &self.file.0[self.at..self.at + self.len]
    }
    fn on_heap(&self) -> bool {
        false
    }
    /// Lets the whole file go: the bodies packed with this one map their pages back on their
    /// next read, as this one does.
    fn release(&self) {
        self.file.release();
    }
    fn release_unit(&self) -> Option<usize> {
        Some(Arc::as_ptr(&self.file) as usize)
    }
}

#[cfg(all(test, target_os = "linux"))]
pub(crate) mod tests {
    use super::*;
    use tally_domain::dedup::Placement;

    /// The kibibytes of the process's memory the mapping that holds `at` has resident, from
    /// the kernel's own account (`/proc/self/smaps`).
    pub(crate) fn resident_kib(at: *const u8) -> u64 {
        smaps_kib(at, "Rss:")
    }

    /// The kibibytes the mapping that holds `at` spans.
    fn mapping_kib(at: *const u8) -> u64 {
        smaps_kib(at, "Size:")
    }

    /// The `field` (in kB) of the mapping that holds `at`, in `/proc/self/smaps`.
    fn smaps_kib(at: *const u8, field: &str) -> u64 {
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
            if let Some(value) = line.strip_prefix(field).filter(|_| inside) {
                return value
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .expect("a number of kB");
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    /// A summary of 200,000 distinct fingerprints drawn with `salt`.
    fn summary_of_200k(salt: u64) -> (GenerationSummary, Vec<u64>) {
        let mut sorted: Vec<u64> = (1..=200_000u64)
            .map(|i| (i ^ (salt << 40)).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        sorted.sort_unstable();
        (GenerationSummary::build(&sorted).expect("built"), sorted)
    }

    #[test]
    fn filters_placed_together_share_files_of_a_huge_page_and_go_together() {
        let dir = tempfile::tempdir().expect("dir");
        let files = FilterFiles::new(dir.path()).expect("a usable directory");
        let built: Vec<(GenerationSummary, Vec<u64>)> = (0..5).map(summary_of_200k).collect();
        // Between 420 and 520 KB each: four fit in 2 MiB (2,097,152 bytes), five do not.
        for (heap, _) in &built {
            let len = heap.body_bytes().len();
            assert!((420_000..=520_000).contains(&len), "{len} bytes");
        }
        let placed = files.place_all(built.iter().map(|(s, _)| s.clone()).collect());
        assert_eq!(placed.len(), 5);
        for ((heap, fps), mapped) in built.iter().zip(&placed) {
            assert_eq!(mapped, heap, "in order, the same bytes");
            assert_eq!(mapped.mapped_bytes(), heap.body_bytes().len());
            for fp in fps.iter().step_by(97) {
                assert_eq!(mapped.block_of(*fp), heap.block_of(*fp));
            }
        }
        let together: Vec<bool> = placed
            .windows(2)
            .map(|w| w[0].released_with(&w[1]))
            .collect();
        assert_eq!(
            together,
            [true, true, true, false],
            "four in one file, the fifth alone"
        );
        assert!(!placed[0].released_with(&placed[4]));
        // The four (about 1.9 MB) are padded to a whole huge page; the fifth alone would be
        // padded by more than a third of its bytes, so its file is its own size (in pages).
        let at = |i: usize| placed[i].body_bytes().as_ptr();
        assert_eq!(mapping_kib(at(0)), 2_048);
        assert_eq!(mapping_kib(at(3)), 2_048);
        let fifth_kib = placed[4].body_bytes().len().div_ceil(4_096) as u64 * 4;
        assert_eq!(mapping_kib(at(4)), fifth_kib);
        // Probing the first maps its pages; letting the fourth go lets the whole file go.
        for fp in &built[0].1 {
            assert!(placed[0].block_of(*fp).is_some());
        }
        assert!(resident_kib(at(0)) > 0);
        placed[3].release();
        assert_eq!(resident_kib(at(0)), 0);
        assert_eq!(placed[0], built[0].0, "and reads the same again");
        // The files were deleted as they were created.
        assert_eq!(std::fs::read_dir(dir.path()).expect("listed").count(), 0);
    }

    #[test]
    fn summaries_without_a_body_keep_their_place() {
        let dir = tempfile::tempdir().expect("dir");
        let files = FilterFiles::new(dir.path()).expect("a usable directory");
        let (a, _) = summary_of_200k(1);
        let (b, _) = summary_of_200k(2);
        // A part of a merged run whose range kept no entry: no filter, no index.
        let placement = Placement {
            run: 1,
            lo: 0,
            hi: 9,
            replaces: Vec::new(),
        };
        let empty = GenerationSummary::part(&[], placement).expect("a part without entries");
        assert!(empty.body_bytes().is_empty());
        let orders = [
            vec![a.clone(), empty.clone(), b.clone()],
            vec![a.clone(), empty.clone()],
            vec![empty.clone(), a.clone()],
            vec![empty.clone(), empty.clone()],
        ];
        for given in orders {
            let placed = files.place_all(given.clone());
            assert_eq!(placed, given, "the same summaries in the same order");
            for summary in &placed {
                assert_eq!(summary.mapped_bytes(), summary.body_bytes().len());
            }
        }
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
