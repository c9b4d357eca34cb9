//! The dedup memory of one log partition: which event fingerprints were seen within the window,
//! and when (log clock).
//!
//! Two tiers ([`tally_domain::dedup`]):
//! - the **open set**, exact and in memory: a hash table of 64-bit fingerprint → second, about
//!   20–30 bytes per entry (16-byte slots kept between 7/16 and 7/8 full), persisted as packed
//!   chunks with each commit (`tally_domain::codec::encode_dedup_chunk`);
//! - **sealed generations**: when the open set reaches its cap, the commit seals it. Its entries
//!   go to the store sorted, in blocks of 1,024 (about 8 bytes per entry on disk, packed); the
//!   projector keeps a binary fuse filter (≈ 2.25 bytes per entry) and the first fingerprint of
//!   each block, mapped from a deleted file when it has [`FilterFiles`] (page cache the kernel
//!   may reclaim, and let go by the process after each batch's probes; the heap then holds
//!   only the open set, a few bytes per generation, and per merge in progress the parts it
//!   wrote that wait to fill a file, under 2 MiB).
//!   A generation is forgotten whole once its newest entry leaves the window.
//! - **merged runs**: every sealed run is probed for every event, so runs are merged, four of
//!   a size class at a time (a seal is class 0; class k holds up to the cap × 4ᵏ entries; runs
//!   of class 4 are not merged further, so no run outlives its oldest entries by more than
//!   256 seals' time). A merge advances part by part with the commits, as far as their events
//!   pay for ([`MERGE_WORK_PER_EVENT`] entries each, twice the long-run need; smallest class
//!   first), so a large merge spreads over the load instead of slowing every commit until it
//!   completes. A part's fingerprint range is read from the input runs' blocks, merged (newest
//!   second per fingerprint, entries before the horizon dropped) and written with the commit
//!   as a generation of its own; the commit
//!   that writes the last part also retires the inputs, and the projector swaps them for the
//!   merged run at that moment. A lookup probes one part per run, so the probes per event
//!   grow with the logarithm of the ids held, not with their number. A merge whose input leaves
//!   the window before it completes is dropped (its parts retired); a run whose parts do not
//!   tile the fingerprint space when loaded (a merge cut short by a crash) is ignored until it
//!   expires, and a loaded run that another names as replaced is ignored and retired.
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
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use std::collections::HashSet;

use tally_domain::dedup::{
    find_in_block, merge_entries, split_range, GenerationSummary, Placement, PART_ENTRIES,
};
use tally_domain::store::{DedupGeneration, DedupSeal, StoreError};

use crate::filter_files::{slot_len, FilterFiles, HUGE_PAGE};

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

/// Runs merged at once.
pub const MERGE_FAN_IN: usize = 4;

/// Merge work (entries read and written again) a commit earns for each event it folds. Each id
/// is written again at most four times ([`TOP_CLASS`]), so this is twice what merging needs in
/// the long run, while a commit's share of merge work stays in proportion to its events: a
/// large merge no longer takes over the projector's commits until it completes.
pub const MERGE_WORK_PER_EVENT: u64 = 8;

/// Merge work carried over from commit to commit at most (four parts' worth). Earned work
/// that no merge in progress needs is not saved up beyond this.
const MERGE_CREDIT_CAP: u64 = 4 * PART_ENTRIES as u64;

/// How many fingerprints ahead a batch's probes ask for their filter lines
/// ([`Dedup::suspects_in_order`]): enough for the cache misses of that many probes (three
/// random lines each) to overlap, few enough that the lines are still cached when probed.
const PROBES_AHEAD: usize = 16;

/// Size classes that merge: a run of this class or above (more than the cap × 4⁴ entries) stays
/// as it is until it expires.
const TOP_CLASS: u32 = 4;

/// One stored generation of a sealed run: it covers the fingerprints `lo..=hi`.
struct Part {
    /// Opaque to the projector: the name stores keep it under.
    id: u64,
    lo: u64,
    hi: u64,
    entries: u64,
    summary: GenerationSummary,
}

/// A sealed run: a generation sealed from the open set (one part over every fingerprint), or
/// the merge of several runs (parts sorted by `lo`, tiling the fingerprint space).
struct Run {
    id: u64,
    max_seen_s: u32,
    parts: Vec<Part>,
}

impl Run {
    fn entries(&self) -> u64 {
        // Saturating: the counts come from the store.
        self.parts
            .iter()
            .fold(0u64, |sum, p| sum.saturating_add(p.entries))
    }

    /// The index of the part that covers `fp`.
    fn part_at(&self, fp: u64) -> usize {
        self.parts.partition_point(|p| p.lo <= fp).saturating_sub(1)
    }

    /// Whether part `at` covers `fp`.
    fn covers(&self, at: usize, fp: u64) -> bool {
        self.parts[at].lo <= fp && self.parts.get(at + 1).is_none_or(|next| fp < next.lo)
    }

    fn memory_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| p.summary.memory_bytes() + std::mem::size_of::<Part>())
            .sum()
    }
}

/// A merge in progress: `done` holds the parts written so far, for `ranges[..done.len()]`.
struct Merge {
    id: u64,
    class: u32,
    /// The runs merged, oldest first.
    inputs: Vec<u64>,
    max_seen_s: u32,
    ranges: Vec<(u64, u64)>,
    /// What a range costs in merge work: the entries merged over the ranges.
    range_work: u64,
    done: Vec<Part>,
    /// `done[..placed]` are mapped from files (when the memory has them); the rest wait on
    /// the heap to be packed into one file ([`Merge::place_done`]).
    placed: usize,
}

impl Merge {
    /// Maps the parts written since the last placement from files, packed together, once
    /// another part like the last would not fit in their file ([`HUGE_PAGE`]) or the merge is
    /// `complete`. Parts are not probed before the merge completes, so where they wait does not
    /// change an answer; at most a file's worth waits on the heap.
    fn place_done(&mut self, files: Option<&FilterFiles>, complete: bool) {
        let Some(files) = files else {
            self.placed = self.done.len();
            return;
        };
        let waiting = &self.done[self.placed..];
        let len = |p: &Part| slot_len(p.summary.body_bytes().len());
        let bytes: usize = waiting.iter().map(len).sum();
        let last = waiting.last().map_or(0, len);
        if waiting.is_empty() || (!complete && bytes + last <= HUGE_PAGE) {
            return;
        }
        let placed = files.place_all(waiting.iter().map(|p| p.summary.clone()).collect());
        for (part, summary) in self.done[self.placed..].iter_mut().zip(placed) {
            part.summary = summary;
        }
        self.placed = self.done.len();
    }
}

/// The size class of a run of `entries` when seals hold up to `cap`: 0 up to the cap, k up to
/// the cap × 4ᵏ, [`TOP_CLASS`] beyond.
fn class(entries: u64, cap: u64) -> u32 {
    let mut bound = cap.max(1);
    let mut k = 0;
    while entries > bound && k < TOP_CLASS {
        bound = bound.saturating_mul(MERGE_FAN_IN as u64);
        k += 1;
    }
    k
}

/// What advancing a merge by one range did.
enum Advance {
    Wrote(DedupSeal),
    /// The last part: the merge is complete.
    Completed(DedupSeal),
    /// An input is gone, or the part could not be built: the merge is dropped.
    Dropped,
    /// Its blocks were not read for this commit.
    Unread,
}

/// The stored blocks a merge step reads, and what they hold (`(generation, block)` → entries).
pub type MergeBlocks = HashMap<(u64, u32), Vec<(u64, u32)>>;

/// What a commit stores of the merges: parts written, and generations to delete.
#[derive(Default)]
pub struct MergeWork {
    pub parts: Vec<DedupSeal>,
    pub retired: Vec<u64>,
}

/// The dedup memory: the open set, split into 256 independently growing shards (no single
/// rehash ever copies the whole set, which would double peak memory and stall the projector;
/// expiry sweeps one shard per call), the sealed runs and the merges in progress.
pub struct Dedup {
    shards: Vec<Shard>,
    window_s: u32,
    next_sweep: usize,
    open_len: usize,
    /// Oldest first (by newest entry).
    runs: Vec<Run>,
    merges: Vec<Merge>,
    /// Stored generations to delete with the next commit.
    retire: Vec<u64>,
    /// Open entries that make the next commit seal them; `None`: never (the store keeps no
    /// sealed generations).
    seal_at: Option<usize>,
    /// Where sealed summaries are mapped from; `None`: they stay on the heap.
    files: Option<FilterFiles>,
    /// Merge work earned and not yet spent ([`MERGE_WORK_PER_EVENT`]).
    merge_credit: u64,
}

/// A stored summary ([`DedupSeal::summary`]) decoded, and mapped from a file when there are
/// `files`; `Corrupt` when the bytes are not a summary.
pub fn load_summary(
    encoded: &[u8],
    files: Option<&FilterFiles>,
) -> Result<GenerationSummary, StoreError> {
    Ok(place(files, GenerationSummary::decode(encoded)?))
}

/// [`load_summary`] for several stored summaries, in the same order; mapped, the parts of each
/// merged run among them are packed into files that hold that run's parts only, in fingerprint
/// order ([`FilterFiles::place_all`]).
pub fn load_summaries(
    encoded: &[&[u8]],
    files: Option<&FilterFiles>,
) -> Result<Vec<GenerationSummary>, StoreError> {
    let decoded = encoded
        .iter()
        .map(|bytes| GenerationSummary::decode(bytes))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let Some(files) = files else {
        return Ok(decoded);
    };
    // By run, then range: a generation sealed from the open set is a run of its own.
    let run_of: Vec<Option<u64>> = decoded
        .iter()
        .map(|s| s.placement().map(|p| p.run))
        .collect();
    let mut order: Vec<usize> = (0..decoded.len()).collect();
    order.sort_by_key(|&i| {
        decoded[i]
            .placement()
            .map_or((1, i as u64, 0), |p| (0, p.run, p.lo))
    });
    let mut slots: Vec<Option<GenerationSummary>> = decoded.into_iter().map(Some).collect();
    // Each run's parts (a seal alone) go to files of their own: a file is freed when all
    // that it holds is gone, which for one run's parts is at once.
    for run in order.chunk_by(|&i, &j| run_of[i].is_some() && run_of[i] == run_of[j]) {
        let summaries: Vec<GenerationSummary> =
            run.iter().filter_map(|&i| slots[i].take()).collect();
        for (&i, summary) in run.iter().zip(files.place_all(summaries)) {
            slots[i] = Some(summary);
        }
    }
    Ok(slots.into_iter().flatten().collect())
}

/// `summary`, mapped from a file when there are `files`.
fn place(files: Option<&FilterFiles>, summary: GenerationSummary) -> GenerationSummary {
    match files {
        Some(files) => files.place(summary),
        None => summary,
    }
}

impl Dedup {
    /// An empty memory.
    pub fn empty(window_s: u32, seal_at: Option<usize>) -> Dedup {
        Dedup {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            window_s,
            next_sweep: 0,
            open_len: 0,
            runs: Vec::new(),
            merges: Vec::new(),
            retire: Vec::new(),
            seal_at,
            files: None,
            merge_credit: 0,
        }
    }

    /// The same memory with its sealed summaries mapped from files in `files` from now on,
    /// its runs' included (merges in progress, which only a running memory has, are not).
    pub fn with_files(mut self, files: Option<FilterFiles>) -> Dedup {
        if let Some(files) = &files {
            for run in &mut self.runs {
                let summaries = run.parts.iter().map(|p| p.summary.clone()).collect();
                for (part, summary) in run.parts.iter_mut().zip(files.place_all(summaries)) {
                    part.summary = summary;
                }
            }
        }
        self.files = files;
        self
    }

    /// The memory as stored: the open set's `entries` and the sealed `generations` with their
    /// summaries ([`load_summary`]); those sealed from now on stay on the heap.
    pub fn new(
        window_s: u32,
        seal_at: Option<usize>,
        entries: impl IntoIterator<Item = (u64, u32)>,
        generations: Vec<(DedupGeneration, GenerationSummary)>,
    ) -> Dedup {
        Dedup::load(window_s, seal_at, entries, generations, None)
    }

    /// [`Dedup::new`], with the summaries sealed from now on mapped from files in `files` (the
    /// loaded ones are as given: [`load_summaries`] maps a batch as it decodes it, so that a
    /// start never holds them all on the heap).
    pub fn load(
        window_s: u32,
        seal_at: Option<usize>,
        entries: impl IntoIterator<Item = (u64, u32)>,
        generations: Vec<(DedupGeneration, GenerationSummary)>,
        files: Option<FilterFiles>,
    ) -> Dedup {
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
        // Parts of merged runs, by run: (newest second, parts, runs replaced).
        let mut merged: BTreeMap<u64, (u32, Vec<Part>, Vec<u64>)> = BTreeMap::new();
        for (g, summary) in generations {
            match summary.placement().cloned() {
                None => dedup.runs.push(Run {
                    id: g.id,
                    max_seen_s: g.max_seen_s,
                    parts: vec![Part {
                        id: g.id,
                        lo: 0,
                        hi: u64::MAX,
                        entries: g.entries,
                        summary,
                    }],
                }),
                Some(Placement {
                    run,
                    lo,
                    hi,
                    replaces,
                }) => {
                    let entry = merged.entry(run).or_insert((0, Vec::new(), replaces));
                    entry.0 = entry.0.max(g.max_seen_s);
                    entry.1.push(Part {
                        id: g.id,
                        lo,
                        hi,
                        entries: g.entries,
                        summary,
                    });
                }
            }
        }
        let mut replaced = HashSet::new();
        for (id, (max_seen_s, mut parts, replaces)) in merged {
            parts.sort_by_key(|p| p.lo);
            let tiles = parts.first().is_some_and(|p| p.lo == 0)
                && parts.last().is_some_and(|p| p.hi == u64::MAX)
                && parts
                    .windows(2)
                    .all(|w| w[0].hi.checked_add(1) == Some(w[1].lo));
            if tiles {
                replaced.extend(replaces);
                dedup.runs.push(Run {
                    id,
                    max_seen_s,
                    parts,
                });
            }
            // Otherwise a merge cut short (its inputs are still stored and loaded), or one
            // whose writer was fenced off mid-way and may still be finishing it: ignored, and
            // left to expire with its newest entry. Deleting it could race with that writer
            // completing it and retiring the inputs.
        }
        let mut kept = Vec::with_capacity(dedup.runs.len());
        for run in std::mem::take(&mut dedup.runs) {
            if replaced.contains(&run.id) {
                dedup.retire.extend(run.parts.iter().map(|p| p.id));
            } else {
                kept.push(run);
            }
        }
        kept.sort_by_key(|r| r.max_seen_s);
        dedup.runs = kept;
        dedup.files = files;
        dedup
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
        !self.runs.is_empty()
    }

    /// Sealed runs held: the filters each event is probed against.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The stored blocks `(generation, block)` that may hold `fp` among runs that can still
    /// hold an entry within the window at `now_s` or later: at most one per run.
    pub fn suspects(&self, fp: u64, now_s: u32, out: &mut Vec<(u64, u32)>) {
        self.suspects_in_order(&[fp], now_s, |_, place| out.push(place));
    }

    /// [`Self::suspects`] for many fingerprints at once: `found(i, place)` for each block that
    /// may hold `fps[i]`, run after run (so at most once per run for each `i`).
    ///
    /// Fastest with `fps` ascending. The filters are then probed run by run in fingerprint
    /// order instead of event by event: a merged run's parts are fingerprint ranges, so each
    /// part's filter is read in one burst while its lines and pages are cached, where event by
    /// event every lookup missed the CPU caches and the TLB in every run (measured in
    /// `benches/PERFORMANCE-LOG.md`). Any order gives the same places: a fingerprint the
    /// current part does not cover looks its part up.
    ///
    /// Each probe asks for its filter lines [`PROBES_AHEAD`] fingerprints before it is made,
    /// so that the probes' cache misses overlap.
    ///
    /// Each part's filter is let go once the probes move on from it
    /// ([`GenerationSummary::release`]; parts packed in one file, once they move on from the
    /// file): a mapped filter then leaves the process's resident memory, which holds one file
    /// at a time instead of every filter of the window.
    pub fn suspects_in_order(
        &self,
        fps: &[u64],
        now_s: u32,
        mut found: impl FnMut(usize, (u64, u32)),
    ) {
        let horizon = self.horizon(now_s);
        for run in self.runs.iter().filter(|run| run.max_seen_s >= horizon) {
            // The part that covers the fingerprint PROBES_AHEAD places after the one probed,
            // whose filter lines are asked for now ([`GenerationSummary::prefetch`]). In a
            // file the probes have not reached yet the pages are not mapped, and the hints
            // are dropped: a file's first probes wait for their lines as before.
            let mut ahead: Option<usize> = None;
            let mut hint = |fp: u64| {
                let at = match ahead {
                    Some(at) if run.covers(at, fp) => at,
                    _ => run.part_at(fp),
                };
                ahead = Some(at);
                run.parts[at].summary.prefetch(fp);
            };
            fps.iter().take(PROBES_AHEAD).for_each(|fp| hint(*fp));
            let mut probed: Option<usize> = None;
            for (i, &fp) in fps.iter().enumerate() {
                if let Some(later) = fps.get(i + PROBES_AHEAD) {
                    hint(*later);
                }
                let at = match probed {
                    Some(at) if run.covers(at, fp) => at,
                    _ => {
                        let at = run.part_at(fp);
                        if let Some(left) = probed {
                            let (done, next) = (&run.parts[left].summary, &run.parts[at].summary);
                            // Parts packed in one file go together, once the probes leave it.
                            if !done.released_with(next) {
                                done.release();
                            }
                        }
                        at
                    }
                };
                probed = Some(at);
                let part = &run.parts[at];
                if let Some(block) = part.summary.block_of(fp) {
                    found(i, (part.id, block));
                }
            }
            if let Some(done) = probed {
                run.parts[done].summary.release();
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
        self.runs.retain(|r| r.max_seen_s >= horizon);
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
            let summary = place(self.files.as_ref(), summary);
            let max_seen_s = part.iter().map(|(_, s)| *s).max().unwrap_or(0);
            // Named by content, salt and newest second: seals by different projectors (a
            // fenced one racing the next), or of the same ids a window apart, never share a
            // name in the store.
            let mut named = encoded.clone();
            named.extend_from_slice(&salt.to_le_bytes());
            named.extend_from_slice(&max_seen_s.to_le_bytes());
            let id = xxhash_rust::xxh3::xxh3_64(&named);
            self.runs.push(Run {
                id,
                max_seen_s,
                parts: vec![Part {
                    id,
                    lo: 0,
                    hi: u64::MAX,
                    entries: part.len() as u64,
                    summary,
                }],
            });
            seals.push(DedupSeal {
                generation: DedupGeneration {
                    id,
                    max_seen_s,
                    entries: part.len() as u64,
                },
                summary: encoded,
                entries: part,
            });
        }
        seals
    }

    /// Starts merging runs where [`MERGE_FAN_IN`] runs of one size class follow each other
    /// (oldest first), none of them is being merged and none leaves the window within its last
    /// eighth at `now_s`: at most one merge per class at a time. `salt` (the partition's
    /// position) goes into the merged run's name.
    pub fn plan_merges(&mut self, now_s: u32, salt: i64) {
        let Some(cap) = self.seal_at.map(|cap| cap.max(1) as u64) else {
            return;
        };
        // Runs that leave the window within its last eighth are not merged: a long merge
        // could lose an input to expiry before it completes, and they go soon anyway.
        let leaving = now_s.saturating_sub(self.window_s - self.window_s / 8);
        let busy: HashSet<u64> = self.merges.iter().flat_map(|m| m.inputs.clone()).collect();
        let mut classes: HashSet<u32> = self.merges.iter().map(|m| m.class).collect();
        let part_entries = PART_ENTRIES.min(cap as usize).max(1) as u64;
        let mut streak: Vec<usize> = Vec::new();
        let mut started = Vec::new();
        for (i, run) in self.runs.iter().enumerate() {
            let c = class(run.entries(), cap);
            if busy.contains(&run.id)
                || c >= TOP_CLASS
                || classes.contains(&c)
                || run.max_seen_s < leaving
            {
                streak.clear();
                continue;
            }
            if streak
                .first()
                .is_some_and(|&j| class(self.runs[j].entries(), cap) != c)
            {
                streak.clear();
            }
            streak.push(i);
            if streak.len() < MERGE_FAN_IN {
                continue;
            }
            let inputs: Vec<&Run> = streak.iter().map(|&j| &self.runs[j]).collect();
            let total = inputs
                .iter()
                .fold(0u64, |sum, r| sum.saturating_add(r.entries()));
            // Named at random (with what it merges): two projectors racing over a partition
            // never write parts under one run's name.
            let ids: Vec<u64> = inputs.iter().map(|r| r.id).collect();
            let id = std::collections::hash_map::RandomState::new().hash_one((&ids, salt));
            let ranges = split_range(total.div_ceil(part_entries).max(1) as usize);
            started.push(Merge {
                id,
                class: c,
                inputs: inputs.iter().map(|r| r.id).collect(),
                max_seen_s: inputs.iter().map(|r| r.max_seen_s).max().unwrap_or(0),
                range_work: total.div_ceil(ranges.len() as u64).max(1),
                ranges,
                done: Vec::new(),
                placed: 0,
            });
            classes.insert(c);
            streak.clear();
        }
        self.merges.extend(started);
        // Merge work goes to the smallest runs first: they are merged soonest for the least
        // work, and each merge saves a probe per event all the same.
        self.merges.sort_by_key(|m| m.class);
    }

    /// The ranges each merge in progress (in order) advances by in a commit that folds
    /// `events`: as many as the credit with what these events earn pays for, smallest class
    /// first, at most [`Self::ranges_per_step`] each. Credit at its cap pays for one range
    /// whatever it costs, so no merge waits for ever.
    fn paced_ranges(&self, events: u64) -> Vec<usize> {
        let per_step = self.ranges_per_step();
        let mut credit = self
            .merge_credit
            .saturating_add(events.saturating_mul(MERGE_WORK_PER_EVENT));
        self.merges
            .iter()
            .map(|m| {
                let left = m.ranges.len() - m.done.len();
                let mut n = 0;
                while n < per_step.min(left)
                    && (credit >= m.range_work || credit >= MERGE_CREDIT_CAP)
                {
                    credit = credit.saturating_sub(m.range_work);
                    n += 1;
                }
                n
            })
            .collect()
    }

    /// Ranges a merge advances by in one commit: about [`PART_ENTRIES`] entries' work.
    fn ranges_per_step(&self) -> usize {
        let cap = self.seal_at.unwrap_or(PART_ENTRIES).max(1);
        (PART_ENTRIES / PART_ENTRIES.min(cap)).max(1)
    }

    /// The blocks that range `at` of `merge` reads: those of its inputs' parts that may hold
    /// fingerprints of the range. `None` when an input is gone or wholly before `horizon`.
    fn range_blocks(&self, merge: &Merge, at: usize, horizon: u32) -> Option<Vec<(u64, u32)>> {
        let (lo, hi) = merge.ranges[at];
        let mut wanted = Vec::new();
        for input in &merge.inputs {
            let run = self
                .runs
                .iter()
                .find(|r| r.id == *input && r.max_seen_s >= horizon)?;
            for part in &run.parts {
                if part.hi < lo || part.lo > hi {
                    continue;
                }
                let blocks = part
                    .summary
                    .blocks_between(lo.max(part.lo), hi.min(part.hi));
                wanted.extend(blocks.map(|b| (part.id, b)));
            }
        }
        Some(wanted)
    }

    /// The stored blocks the merges in progress read for their next step at `now_s`, in a
    /// commit that folds `events` (the work they pay for, [`MERGE_WORK_PER_EVENT`]).
    pub fn merge_reads(&self, now_s: u32, events: u64) -> Vec<(u64, u32)> {
        let horizon = self.horizon(now_s);
        let paced = self.paced_ranges(events);
        let mut wanted: Vec<(u64, u32)> = self
            .merges
            .iter()
            .zip(paced)
            .flat_map(|(m, n)| {
                (m.done.len()..m.ranges.len())
                    .take(n)
                    .map(move |at| (m, at))
            })
            .filter_map(|(m, at)| self.range_blocks(m, at, horizon))
            .flatten()
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    /// Advances the merges in progress by the ranges a commit folding `events` pays for (one
    /// part, several when parts are small, or none), from the blocks `read` (a merge whose
    /// blocks were not read waits for the next commit): the parts to store, and the stored
    /// generations to delete with them. A merge whose last part this is replaces its inputs
    /// here, as the commit carrying that part retires them in the store.
    pub fn merge_step(&mut self, now_s: u32, read: &MergeBlocks, events: u64) -> MergeWork {
        let horizon = self.horizon(now_s);
        let paced = self.paced_ranges(events);
        let mut credit = self
            .merge_credit
            .saturating_add(events.saturating_mul(MERGE_WORK_PER_EVENT));
        let mut parts = Vec::new();
        let mut i = 0;
        'merges: for ranges in paced {
            let work = self.merges[i].range_work;
            if ranges == 0 {
                // Unpaid this time; but one whose input left the window goes at once.
                let at = self.merges[i].done.len();
                if self.range_blocks(&self.merges[i], at, horizon).is_none() {
                    let dropped = self.merges.remove(i);
                    self.retire.extend(dropped.done.iter().map(|p| p.id));
                } else {
                    i += 1;
                }
                continue;
            }
            for _ in 0..ranges {
                match self.advance(i, horizon, read) {
                    Advance::Wrote(part) => {
                        credit = credit.saturating_sub(work);
                        parts.push(part);
                    }
                    Advance::Completed(part) => {
                        credit = credit.saturating_sub(work);
                        parts.push(part);
                        let complete = self.merges.remove(i);
                        self.install(complete);
                        continue 'merges;
                    }
                    Advance::Dropped => {
                        let dropped = self.merges.remove(i);
                        self.retire.extend(dropped.done.iter().map(|p| p.id));
                        continue 'merges;
                    }
                    Advance::Unread => break,
                }
            }
            i += 1;
        }
        self.merge_credit = credit.min(MERGE_CREDIT_CAP);
        MergeWork {
            parts,
            retired: std::mem::take(&mut self.retire),
        }
    }

    /// Writes the next part of merge `i` from the blocks `read`.
    fn advance(&mut self, i: usize, horizon: u32, read: &MergeBlocks) -> Advance {
        let at = self.merges[i].done.len();
        let Some(wanted) = self.range_blocks(&self.merges[i], at, horizon) else {
            // An input left the window meanwhile: what was written goes.
            return Advance::Dropped;
        };
        let blocks: Option<Vec<&[(u64, u32)]>> = wanted
            .iter()
            .map(|place| read.get(place).map(Vec::as_slice))
            .collect();
        let Some(blocks) = blocks else {
            return Advance::Unread;
        };
        let merge = &mut self.merges[i];
        let (lo, hi) = merge.ranges[at];
        let entries = merge_entries(blocks, lo, hi, horizon);
        let fps: Vec<u64> = entries.iter().map(|(fp, _)| *fp).collect();
        let placement = Placement {
            run: merge.id,
            lo,
            hi,
            replaces: merge.inputs.clone(),
        };
        let Some(summary) = GenerationSummary::part(&fps, placement) else {
            // The filter could not be built: the inputs stay as they are.
            return Advance::Dropped;
        };
        let mut named = merge.id.to_le_bytes().to_vec();
        named.extend_from_slice(&(at as u64).to_le_bytes());
        let id = xxhash_rust::xxh3::xxh3_64(&named);
        let count = entries.len() as u64;
        let part = DedupSeal {
            generation: DedupGeneration {
                id,
                max_seen_s: merge.max_seen_s,
                entries: count,
            },
            summary: summary.encode(),
            entries,
        };
        merge.done.push(Part {
            id,
            lo,
            hi,
            entries: count,
            summary,
        });
        let complete = merge.done.len() == merge.ranges.len();
        merge.place_done(self.files.as_ref(), complete);
        if complete {
            Advance::Completed(part)
        } else {
            Advance::Wrote(part)
        }
    }

    /// Puts a completed merge in place of its inputs (where the oldest was), and retires them.
    fn install(&mut self, merge: Merge) {
        let at = self
            .runs
            .iter()
            .position(|r| merge.inputs.contains(&r.id))
            .unwrap_or(self.runs.len());
        let mut kept = Vec::with_capacity(self.runs.len());
        for run in std::mem::take(&mut self.runs) {
            if merge.inputs.contains(&run.id) {
                self.retire.extend(run.parts.iter().map(|p| p.id));
            } else {
                kept.push(run);
            }
        }
        self.runs = kept;
        self.runs.insert(
            at.min(self.runs.len()),
            Run {
                id: merge.id,
                max_seen_s: merge.max_seen_s,
                parts: merge.done,
            },
        );
        metrics::counter!(crate::metrics::DEDUP_MERGES).increment(1);
    }

    /// Entries held: the open set's and the sealed runs'.
    pub fn len(&self) -> usize {
        self.runs.iter().fold(self.open_len, |sum, r| {
            sum.saturating_add(usize::try_from(r.entries()).unwrap_or(usize::MAX))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of heap held (hash table slots counted at capacity, with their control bytes; the
    /// summaries' filters and indexes only when they are not mapped from files).
    pub fn memory_bytes(&self) -> usize {
        let open: usize = self.shards.iter().map(|s| s.capacity() * 17).sum();
        let merging: usize = self
            .merges
            .iter()
            .flat_map(|m| &m.done)
            .map(|p| p.summary.memory_bytes())
            .sum();
        open + merging + self.runs.iter().map(Run::memory_bytes).sum::<usize>()
    }

    /// Bytes of sealed summaries mapped from files.
    pub fn mapped_bytes(&self) -> usize {
        let runs = self.runs.iter().flat_map(|r| &r.parts);
        let merging = self.merges.iter().flat_map(|m| &m.done);
        runs.chain(merging).map(|p| p.summary.mapped_bytes()).sum()
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
        Dedup::new(window_s, None, entries.iter().copied(), Vec::new())
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

    /// A stored generation as a start loads it: listed, its summary decoded (on the heap).
    fn loaded(seal: &DedupSeal) -> (DedupGeneration, GenerationSummary) {
        let summary = load_summary(&seal.summary, None).expect("a stored summary");
        (seal.generation, summary)
    }

    /// Seals 3,000 fingerprints (odd multiples of a constant) seen at second 1,000.
    fn sealed(window_s: u32) -> (Dedup, DedupSeal, Vec<u64>) {
        sealed_with(window_s, None)
    }

    fn sealed_with(window_s: u32, files: Option<FilterFiles>) -> (Dedup, DedupSeal, Vec<u64>) {
        let fps: Vec<u64> = (0..3_000u64)
            .map(|i| (2 * i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut d = Dedup::new(window_s, Some(3_000), Vec::new(), Vec::new()).with_files(files);
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

    /// The blocks each of `probes` is suspected in, in order.
    fn suspected(d: &Dedup, probes: &[u64]) -> Vec<Vec<(u64, u32)>> {
        probes
            .iter()
            .map(|fp| {
                let mut places = Vec::new();
                d.suspects(*fp, 1_050, &mut places);
                places
            })
            .collect()
    }

    #[test]
    fn filters_mapped_from_files_answer_like_filters_on_the_heap() {
        let dir = tempfile::tempdir().expect("dir");
        let files = FilterFiles::new(dir.path()).expect("a usable directory");
        let (heap, seal, fps) = sealed(100);
        // Mapped as sealed, and mapped when loaded from the store.
        let (mut at_seal, _, _) = sealed_with(100, Some(files.clone()));
        let loaded = Dedup::load(
            100,
            Some(3_000),
            Vec::new(),
            vec![(
                seal.generation,
                load_summary(&seal.summary, Some(&files)).expect("a stored summary"),
            )],
            Some(files),
        );
        // Members, and 200,000 non-members (even multiples): about 3 filter false positives.
        let mut probes = fps.clone();
        probes.extend((1..200_000u64).map(|i| (2 * i).wrapping_mul(0x9E37_79B9_7F4A_7C15)));
        let want = suspected(&heap, &probes);
        assert!(
            want[..3_000].iter().all(|p| p.len() == 1),
            "every member suspected"
        );
        assert_eq!(suspected(&at_seal, &probes), want);
        assert_eq!(suspected(&loaded, &probes), want);
        for d in [&at_seal, &loaded] {
            // 16 bits per filter slot at least: 3,000 entries take more than 6,000 bytes, and
            // what is mapped is exactly what the heap no longer holds.
            assert_eq!(heap.mapped_bytes(), 0);
            assert!(
                d.mapped_bytes() > 6_000,
                "{} bytes mapped",
                d.mapped_bytes()
            );
            assert_eq!(d.memory_bytes() + d.mapped_bytes(), heap.memory_bytes());
        }
        assert!(!sighting(&mut at_seal, &seal, fps[5], 1_050), "a duplicate");
        // The files were deleted as they were created.
        assert_eq!(std::fs::read_dir(dir.path()).expect("listed").count(), 0);
    }

    #[test]
    fn a_filter_that_cannot_be_mapped_stays_on_the_heap_and_exact() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("a-file");
        std::fs::write(&file, b"x").expect("written");
        assert!(
            FilterFiles::new(&file.join("below")).is_err(),
            "no directory can be made below a file"
        );
        let gone = dir.path().join("gone");
        let files = FilterFiles::new(&gone).expect("usable at first");
        std::fs::remove_dir(&gone).expect("removed");
        let (mut d, seal, fps) = sealed_with(100, Some(files));
        assert_eq!(d.mapped_bytes(), 0);
        let (heap, _, _) = sealed(100);
        assert_eq!(d.memory_bytes(), heap.memory_bytes());
        for fp in &fps[..100] {
            assert!(!sighting(&mut d, &seal, *fp, 1_050), "a duplicate");
        }
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
        let stored = loaded(&seal);
        d.evict(1_100, SHARDS);
        assert!(
            d.has_sealed(),
            "its newest entry is still within the window"
        );
        d.evict(1_101, SHARDS);
        assert!(!d.has_sealed());
        assert!(d.first_sighting(fps[0], 1_101, None));
        // Loaded back from the store, it answers as before sealing.
        let mut back = Dedup::new(100, Some(3_000), Vec::new(), vec![stored]);
        assert!(!sighting(&mut back, &seal, fps[7], 1_020));
    }

    #[test]
    fn an_open_set_loaded_beyond_the_cap_seals_into_generations_of_the_cap() {
        // 2,500 ids loaded as open chunks (an adoption, or a store from before sealing) with
        // a cap of 1,000: three generations of 1,000, 1,000 and 500 ids, together exact.
        let entries: Vec<(u64, u32)> = (1..=2_500u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1_000))
            .collect();
        let mut d = Dedup::new(100, Some(1_000), entries.clone(), Vec::new());
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
        let mut d = Dedup::new(100, Some(3_000), Vec::new(), Vec::new());
        for fp in &fps {
            assert!(d.first_sighting(*fp, 1_000, None));
        }
        let again = d.seal_if_full(1_000, 8);
        assert_ne!(again[0].generation.id, first.generation.id);
        assert_eq!(again[0].summary, first.summary);
    }

    /// Stored generations as a store keeps them: summaries and blocks, by id.
    #[derive(Default)]
    struct Stored {
        generations: BTreeMap<u64, DedupSeal>,
        blocks: HashMap<(u64, u32), Vec<(u64, u32)>>,
    }

    impl Stored {
        fn write(&mut self, seals: &[DedupSeal]) {
            for seal in seals {
                let id = seal.generation.id;
                for (b, entries) in seal.blocks().enumerate() {
                    self.blocks.insert((id, b as u32), entries.to_vec());
                }
                self.generations.insert(
                    id,
                    DedupSeal {
                        entries: Vec::new(),
                        ..seal.clone()
                    },
                );
            }
        }
        fn retire(&mut self, ids: &[u64]) {
            for id in ids {
                self.generations.remove(id);
                self.blocks.retain(|(g, _), _| g != id);
            }
        }
        fn read(&self, wanted: &[(u64, u32)]) -> MergeBlocks {
            wanted
                .iter()
                .map(|place| (*place, self.blocks[place].clone()))
                .collect()
        }
        /// The newest second the stored blocks that `d` suspects hold for `fp`.
        fn seen(&self, d: &Dedup, fp: u64, now_s: u32) -> Option<u32> {
            let mut places = Vec::new();
            d.suspects(fp, now_s, &mut places);
            places
                .iter()
                .filter_map(|place| self.blocks.get(place))
                .filter_map(|block| find_in_block(block, fp))
                .max()
        }
        fn loaded(&self, window_s: u32, cap: usize) -> Dedup {
            let generations = self.generations.values().map(loaded).collect();
            Dedup::new(window_s, Some(cap), Vec::new(), generations)
        }
    }

    fn fp(i: u64) -> u64 {
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    /// Sights ids `from..to` at `now_s`, then seals (the cap is reached) into `store`.
    fn seal_ids(d: &mut Dedup, store: &mut Stored, ids: impl IntoIterator<Item = u64>, now_s: u32) {
        for i in ids {
            let seen = store.seen(d, fp(i), now_s);
            d.first_sighting(fp(i), now_s, seen);
        }
        let seals = d.seal_if_full(now_s, i64::from(now_s));
        assert!(!seals.is_empty(), "the cap was reached");
        store.write(&seals);
    }

    /// Commits merge steps until no merge is left; the number of steps.
    fn merge_all(d: &mut Dedup, store: &mut Stored, now_s: u32) -> usize {
        let mut steps = 0;
        while !d.merges.is_empty() {
            let read = store.read(&d.merge_reads(now_s, u64::MAX));
            let work = d.merge_step(now_s, &read, u64::MAX);
            store.write(&work.parts);
            store.retire(&work.retired);
            steps += 1;
            assert!(steps < 1_000, "merges never finish");
        }
        steps
    }

    /// Four seals of 1,000 ids each (cap 1,000), the g-th at second 1,000 + `step_s` × g.
    fn four_seals(window_s: u32, step_s: u32) -> (Dedup, Stored) {
        let mut d = Dedup::empty(window_s, Some(1_000));
        let mut store = Stored::default();
        for g in 0..4u64 {
            let ids = g * 1_000..(g + 1) * 1_000;
            seal_ids(&mut d, &mut store, ids, 1_000 + step_s * g as u32);
        }
        (d, store)
    }

    #[test]
    fn size_classes_grow_fourfold() {
        assert_eq!(class(1, 1_000), 0);
        assert_eq!(class(1_000, 1_000), 0);
        assert_eq!(class(1_001, 1_000), 1);
        assert_eq!(class(4_000, 1_000), 1);
        assert_eq!(class(4_001, 1_000), 2);
        assert_eq!(class(16_001, 1_000), 3);
        assert_eq!(class(64_001, 1_000), 4);
        assert_eq!(class(u64::MAX, 1_000), TOP_CLASS);
    }

    #[test]
    fn four_runs_merge_into_one_that_answers_exactly() {
        let (window_s, cap) = (10_000, 1_000);
        let (mut d, mut store) = four_seals(window_s, 1);
        assert_eq!(d.runs(), 4);
        d.plan_merges(1_003, 1);
        assert_eq!(d.merges.len(), 1, "four runs of class 0");
        // 4,000 entries in parts of at most the cap (1,000): four ranges, small enough to be
        // written by one commit.
        assert_eq!(merge_all(&mut d, &mut store, 1_010), 1);
        assert_eq!(d.runs(), 1);
        assert_eq!(d.len(), 4_000);
        assert_eq!(
            store.generations.len(),
            4,
            "the four parts of the merged run; the inputs were retired with the last"
        );
        let mut stored: Vec<(u64, u32)> = store.blocks.values().flatten().copied().collect();
        stored.sort_unstable();
        let mut want: Vec<(u64, u32)> = (0..4_000u64)
            .map(|i| (fp(i), 1_000 + (i / 1_000) as u32))
            .collect();
        want.sort_unstable();
        assert_eq!(
            stored, want,
            "every entry once, with the second it was seen"
        );
        for d in [&mut d, &mut store.loaded(window_s, cap)] {
            assert_eq!(d.runs(), 1);
            for i in (0..4_000).step_by(3) {
                let seen = store.seen(d, fp(i), 2_000);
                assert!(
                    !d.first_sighting(fp(i), 2_000, seen),
                    "id {i} is a duplicate"
                );
            }
            for i in 4_000..204_000 {
                let seen = store.seen(d, fp(i), 2_000);
                assert_eq!(seen, None, "id {i} was never seen");
            }
        }
    }

    #[test]
    fn probing_a_batch_finds_each_fingerprint_in_the_part_whose_range_holds_it() {
        // Members on both sides of every boundary of a merged run's four parts (the quarters
        // of the fingerprint space; checked below), and the ends of the space.
        let edges = [
            0,
            (1 << 62) - 1,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            (3 << 62) - 1,
            3 << 62,
            u64::MAX,
        ];
        let members: Vec<u64> = edges.into_iter().chain((1..3_993).map(fp)).collect();
        let mut d = Dedup::empty(10_000, Some(1_000));
        let mut store = Stored::default();
        for (g, seal) in members.chunks(1_000).enumerate() {
            let now_s = 1_000 + g as u32;
            for &f in seal {
                let seen = store.seen(&d, f, now_s);
                d.first_sighting(f, now_s, seen);
            }
            store.write(&d.seal_if_full(now_s, i64::from(now_s)));
        }
        d.plan_merges(1_003, 1);
        merge_all(&mut d, &mut store, 1_010);
        // Two seals beside the merged run.
        for g in 5..7u64 {
            seal_ids(&mut d, &mut store, g * 1_000..(g + 1) * 1_000, 1_020);
        }
        assert_eq!(d.runs(), 3);
        let los: Vec<u64> = d.runs[0].parts.iter().map(|p| p.lo).collect();
        assert_eq!(
            los,
            [0, 1 << 62, 1 << 63, 3 << 62],
            "the merged run's parts"
        );
        let held: std::collections::HashSet<u64> = members
            .iter()
            .copied()
            .chain((5_000..7_000).map(fp))
            .collect();
        let mut fps: Vec<u64> = held
            .iter()
            .copied()
            .chain((10_000..210_000).map(fp))
            .collect();
        fps.sort_unstable();
        // Expected: in each run, the part whose range holds the fingerprint, found by scanning.
        let mut want: Vec<(u64, (u64, u32))> = Vec::new();
        for &f in &fps {
            for run in &d.runs {
                let part = run
                    .parts
                    .iter()
                    .find(|p| p.lo <= f && f <= p.hi)
                    .expect("the parts tile the space");
                if let Some(block) = part.summary.block_of(f) {
                    want.push((f, (part.id, block)));
                }
            }
        }
        want.sort_unstable();
        let probed = |fps: &[u64]| {
            let mut got: Vec<(u64, (u64, u32))> = Vec::new();
            d.suspects_in_order(fps, 1_030, |i, place| got.push((fps[i], place)));
            got.sort_unstable();
            got
        };
        assert_eq!(probed(&fps), want, "ascending");
        let mut descending = fps.clone();
        descending.reverse();
        assert_eq!(probed(&descending), want, "any order gives the same places");
        // Every id held is suspected in the block that stores it.
        for f in &held {
            assert!(
                want.iter()
                    .filter(|(g, _)| g == f)
                    .any(|(_, place)| store.blocks[place].iter().any(|(g, _)| g == f)),
                "{f:#x} suspected where it is stored"
            );
        }
        // Mapped from files, the batch finds the same places, and every part it read has left
        // the process's memory once probed.
        #[cfg(target_os = "linux")]
        {
            let dir = tempfile::tempdir().expect("dir");
            let d = d.with_files(Some(FilterFiles::new(dir.path()).expect("usable")));
            let mut got: Vec<(u64, (u64, u32))> = Vec::new();
            d.suspects_in_order(&fps, 1_030, |i, place| got.push((fps[i], place)));
            got.sort_unstable();
            assert_eq!(got, want);
            let parts: Vec<&Part> = d.runs.iter().flat_map(|run| &run.parts).collect();
            assert_eq!(parts.len(), 6);
            for part in parts {
                assert!(part.summary.mapped_bytes() > 0);
                let at = part.summary.body_bytes().as_ptr();
                assert_eq!(crate::filter_files::tests::resident_kib(at), 0);
            }
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn loaded_summaries_keep_their_order_and_share_files_only_within_a_run() {
        let dir = tempfile::tempdir().expect("dir");
        let files = FilterFiles::new(dir.path()).expect("usable");
        // Two runs of two parts each (halves of the fingerprint space), a part that kept no
        // entry, and a seal: small enough that all would fit in one file.
        let half = u64::MAX / 2;
        let part = |run: u64, lo: u64, hi: u64, ids: std::ops::Range<u64>| {
            let mut fps: Vec<u64> = ids.map(fp).filter(|f| (lo..=hi).contains(f)).collect();
            fps.sort_unstable();
            let placement = Placement {
                run,
                lo,
                hi,
                replaces: Vec::new(),
            };
            GenerationSummary::part(&fps, placement).expect("a part")
        };
        let mut seal_fps: Vec<u64> = (5_000..6_000).map(fp).collect();
        seal_fps.sort_unstable();
        let given = [
            part(2, half + 1, u64::MAX, 0..1_000),
            part(1, 0, half, 1_000..2_000),
            GenerationSummary::build(&seal_fps).expect("a seal"),
            part(2, 0, half, 0..1_000),
            part(1, half + 1, u64::MAX, 1_000..2_000),
            part(3, 0, u64::MAX, 0..0),
        ];
        let stored: Vec<Vec<u8>> = given.iter().map(GenerationSummary::encode).collect();
        let encoded: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
        let loaded = load_summaries(&encoded, Some(&files)).expect("loaded");
        assert_eq!(loaded, given, "the same summaries in the same order");
        assert!(loaded[..5].iter().all(|s| s.mapped_bytes() > 0));
        assert!(loaded[5].body_bytes().is_empty());
        let together = |a: usize, b: usize| loaded[a].released_with(&loaded[b]);
        assert!(together(0, 3), "run 2's parts");
        assert!(together(1, 4), "run 1's parts");
        for (a, b) in [(0, 1), (0, 2), (1, 2), (3, 4), (2, 4)] {
            assert!(!together(a, b), "{a} and {b} are of different runs");
        }
        assert_eq!(load_summaries(&encoded, None).expect("decoded"), given);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_merge_packs_its_parts_into_files_as_they_fill_one() {
        let dir = tempfile::tempdir().expect("dir");
        let files = FilterFiles::new(dir.path()).expect("usable");
        // Parts of 200,000 entries: filters of 420–520 KB, so four fit in a huge page's file
        // (2,097,152 bytes) and a fifth does not.
        let part = |i: u64| {
            let mut fps: Vec<u64> = (1..=200_000u64).map(|j| fp(j + i * 1_000_000)).collect();
            fps.sort_unstable();
            let summary = GenerationSummary::build(&fps).expect("built");
            let len = summary.body_bytes().len();
            assert!((420_000..=520_000).contains(&len), "{len} bytes");
            Part {
                id: i,
                lo: i,
                hi: i,
                entries: 200_000,
                summary,
            }
        };
        let mut merge = Merge {
            id: 9,
            class: 0,
            inputs: Vec::new(),
            max_seen_s: 0,
            ranges: vec![(0, 0); 6],
            range_work: 1,
            done: Vec::new(),
            placed: 0,
        };
        let mut placed_after = Vec::new();
        for i in 0..6 {
            merge.done.push(part(i));
            merge.place_done(Some(&files), i == 5);
            placed_after.push(merge.placed);
        }
        // Three wait (a fourth still fits), the fourth fills the file, the fifth waits, and
        // the sixth completes the merge.
        assert_eq!(placed_after, [0, 0, 0, 4, 4, 6]);
        let summaries: Vec<&GenerationSummary> = merge.done.iter().map(|p| &p.summary).collect();
        assert!(summaries
            .iter()
            .all(|s| s.mapped_bytes() > 0 && s.memory_bytes() < 100));
        let together: Vec<bool> = summaries
            .windows(2)
            .map(|w| w[0].released_with(w[1]))
            .collect();
        assert_eq!(together, [true, true, true, false, true]);
        // Without files, nothing waits.
        let mut heap_merge = Merge {
            done: vec![part(7)],
            placed: 0,
            ..merge
        };
        heap_merge.place_done(None, false);
        assert_eq!(heap_merge.placed, 1);
    }

    #[test]
    fn merges_advance_only_by_the_work_their_commits_events_pay_for() {
        let (mut d, mut store) = four_seals(10_000, 1);
        d.plan_merges(1_003, 1);
        // 4,000 entries in four ranges of 1,000: a range costs 1,000 entries of work, and
        // each folded event earns 8.
        let mut commit = |d: &mut Dedup, events: u64| {
            let wanted = d.merge_reads(1_010, events);
            let work = d.merge_step(1_010, &store.read(&wanted), events);
            store.write(&work.parts);
            store.retire(&work.retired);
            (wanted.is_empty(), work.parts.len())
        };
        assert_eq!(commit(&mut d, 0), (true, 0), "no events, no merge work");
        assert_eq!(
            commit(&mut d, 124),
            (true, 0),
            "992 earned, short of a range"
        );
        assert_eq!(
            commit(&mut d, 1),
            (false, 1),
            "1,000 earned in all: one range"
        );
        assert_eq!(d.runs(), 4, "the inputs stay until the last range");
        assert_eq!(
            commit(&mut d, 374),
            (false, 2),
            "2,992: two ranges, 992 kept"
        );
        assert_eq!(commit(&mut d, 1), (false, 1), "the last range");
        assert!(d.merges.is_empty());
        assert_eq!(d.runs(), 1);
        assert_eq!(d.len(), 4_000);
        assert_eq!(store.generations.len(), 4, "the merged run's four parts");
    }

    #[test]
    fn merges_drop_what_left_the_window_and_keep_the_newest_second() {
        let (window_s, cap) = (100, 1_000);
        let mut d = Dedup::empty(window_s, Some(cap));
        let mut store = Stored::default();
        // Run 1: ids 0..500 seen at 1,000 and 500..1,000 at 1,050.
        for i in 0..500 {
            assert!(d.first_sighting(fp(i), 1_000, None));
        }
        assert!(d.seal_if_full(1_000, 0).is_empty(), "half the cap");
        seal_ids(&mut d, &mut store, 500..1_000, 1_050);
        // Runs 2 and 3; run 4 holds id 7 again, sighted after the window let it go.
        seal_ids(&mut d, &mut store, 1_000..2_000, 1_060);
        seal_ids(&mut d, &mut store, 2_000..3_000, 1_070);
        seal_ids(&mut d, &mut store, (3_000..3_999).chain([7]), 1_101);
        d.plan_merges(1_101, 1);
        // Merged at 1,110: the horizon is 1,010, so ids 0..500 (seen at 1,000) are dropped,
        // except id 7, seen again at 1,101.
        merge_all(&mut d, &mut store, 1_110);
        assert_eq!(d.runs(), 1);
        assert_eq!(d.len(), 3_500);
        assert_eq!(store.seen(&d, fp(7), 1_110), Some(1_101));
        assert_eq!(store.seen(&d, fp(8), 1_110), None);
        assert_eq!(store.seen(&d, fp(600), 1_110), Some(1_050));
    }

    #[test]
    fn a_merge_cut_short_is_ignored_on_load() {
        let (window_s, cap) = (10_000, 1_000);
        let (mut d, mut store) = four_seals(window_s, 0);
        let inputs: Vec<u64> = store.generations.keys().copied().collect();
        d.plan_merges(1_000, 1);
        let read = store.read(&d.merge_reads(1_000, u64::MAX));
        for _ in 0..2 {
            let Advance::Wrote(part) = d.advance(0, d.horizon(1_000), &read) else {
                panic!("a part of four");
            };
            store.write(&[part]);
        }
        // The process stops here: two parts of four stored, the inputs still there.
        let mut back = store.loaded(window_s, cap);
        assert_eq!(
            back.runs(),
            4,
            "the inputs answer; the half-merged run does not"
        );
        assert_eq!(back.len(), 4_000);
        assert!(
            back.merge_step(1_000, &MergeBlocks::new(), u64::MAX)
                .retired
                .is_empty(),
            "the parts written are left to expire (their writer may be finishing them)"
        );
        for i in (0..4_000).step_by(7) {
            assert!(store.seen(&back, fp(i), 1_000).is_some());
        }
        // The half-merged run expires with the inputs' newest entry.
        back.evict(1_000 + window_s + 1, SHARDS);
        assert_eq!(back.runs(), 0);
        // Finished meanwhile, with the inputs still stored (as ClickHouse keeps them until
        // its deletion runs): the merged run alone is loaded, and the inputs are retired.
        let input_generations: Vec<DedupSeal> = store
            .generations
            .values()
            .filter(|g| inputs.contains(&g.generation.id))
            .cloned()
            .collect();
        merge_all(&mut d, &mut store, 1_000);
        let mut both: Vec<DedupSeal> = store.generations.values().cloned().collect();
        assert_eq!(both.len(), 4, "the merged run's parts");
        both.extend(input_generations);
        let both = both.iter().map(loaded).collect();
        let mut back = Dedup::new(window_s, Some(cap), Vec::new(), both);
        assert_eq!(back.runs(), 1);
        assert_eq!(back.len(), 4_000);
        let mut retired = back
            .merge_step(1_000, &MergeBlocks::new(), u64::MAX)
            .retired;
        retired.sort_unstable();
        assert_eq!(retired, inputs);
    }

    #[test]
    fn a_merge_whose_input_leaves_the_window_is_dropped() {
        let (mut d, store) = four_seals(100, 10);
        // At 1,090 the oldest run (newest entry at 1,000) is in the window's last eighth
        // (it leaves after 1,100): not merged, so there is no streak of four.
        d.plan_merges(1_090, 1);
        assert!(d.merges.is_empty());
        d.plan_merges(1_030, 1);
        assert_eq!(d.merges.len(), 1);
        let read = store.read(&d.merge_reads(1_030, u64::MAX));
        let Advance::Wrote(first) = d.advance(0, d.horizon(1_030), &read) else {
            panic!("a part of four");
        };
        // At 1,101 the oldest run (newest entry at 1,000) has left the window.
        d.evict(1_101, SHARDS);
        assert_eq!(d.runs(), 3);
        let read = store.read(&d.merge_reads(1_101, u64::MAX));
        assert!(
            read.is_empty(),
            "nothing to read for a merge that cannot finish"
        );
        let dropped = d.merge_step(1_101, &read, u64::MAX);
        assert!(dropped.parts.is_empty());
        assert_eq!(dropped.retired, vec![first.generation.id]);
        assert_eq!(d.runs(), 3, "the other inputs stay as they were");
        assert_eq!(d.len(), 3_000);
    }

    #[test]
    fn runs_merge_by_class_so_probes_grow_with_the_log_of_the_ids() {
        let (window_s, cap) = (1_000_000, 100);
        let mut d = Dedup::empty(window_s, Some(cap));
        let mut store = Stored::default();
        // 64 seals of 100 ids: 4 × 16 → 16 runs of class 1 → 4 of class 2 → 1 of class 3.
        for g in 0..64u64 {
            seal_ids(&mut d, &mut store, g * 100..(g + 1) * 100, 1_000 + g as u32);
            // Each commit plans: a completed merge may complete a streak of the next class.
            loop {
                d.plan_merges(1_000 + g as u32, i64::try_from(g).unwrap_or(0));
                if merge_all(&mut d, &mut store, 1_000 + g as u32) == 0 {
                    break;
                }
            }
        }
        assert_eq!(d.runs(), 1);
        assert_eq!(d.len(), 6_400);
        let back = store.loaded(window_s, cap);
        assert_eq!(back.runs(), 1);
        for i in (0..6_400).step_by(11) {
            assert_eq!(
                store.seen(&back, fp(i), 2_000),
                Some(1_000 + (i / 100) as u32)
            );
        }
    }

    #[test]
    fn without_a_cap_nothing_is_sealed() {
        let mut d = open(100, &[(1, 1_000), (2, 1_000)]);
        assert!(d.seal_if_full(1_000, 0).is_empty());
    }
}
