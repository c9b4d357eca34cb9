//! Sealed generations of the dedup memory: what a store keeps of one, and the summary the
//! projector holds in memory to tell which stored block may hold a fingerprint.
//!
//! A partition's dedup memory is an exact *open* set of recent fingerprints (in memory) plus
//! *sealed* generations. Sealing sorts the open set's entries by fingerprint and stores them as
//! blocks of [`BLOCK_ENTRIES`] entries (the dedup chunk format: sorted fingerprints' deltas and
//! seconds, bit-packed, about 8 bytes an entry); the projector keeps
//! only a [`GenerationSummary`]: a binary fuse filter with 16-bit fingerprints over the
//! generation's event fingerprints (≈ 18 bits, 2.25 bytes per entry) and the first fingerprint of
//! each block (8 bytes per 1,024 entries). Both may be moved off the heap ([`SummaryBody`]:
//! the projector maps them from files) without changing an answer.
//!
//! Every sealed generation is probed for every event, so the projector merges runs of them
//! ([`Placement`]): a merged *run* is stored as parts, each a generation over one contiguous
//! range of fingerprints, so that a lookup probes one part per run and no part is larger than
//! a bounded filter build ([`split_range`], [`merge_entries`]).
//!
//! Invariants:
//! - The filter has no false negatives: a fingerprint in the generation is always reported as
//!   possibly present, with the one block that holds it when it is there.
//! - A filter hit is never a duplicate on its own: the projector reads the block and looks the
//!   fingerprint up exactly (false positives, ≈ 1 in 65,536 per generation, cost one block read).
//! - A merged run holds every entry of the runs it replaces that is still within the window
//!   when merged, with the newest second each was seen; its parts tile the fingerprint space.
//! - Decoding a summary from storage validates its shape before any lookup, so corrupt bytes are
//!   a [`StoreError::Corrupt`], never an out-of-bounds read.

use std::sync::Arc;

use xorf::{BinaryFuse16, BinaryFuse16Ref, DmaSerializable, Filter, FilterRef};

use crate::error::StoreError;

/// Entries per stored block of a sealed generation.
pub const BLOCK_ENTRIES: usize = 1024;

/// Entries per part of a merged run (at most; the seal cap when smaller): one merge step's work
/// in a commit, and the largest filter a merge builds at once.
pub const PART_ENTRIES: usize = 262_144;

/// Summary format versions (first byte of [`GenerationSummary::encode`]): a generation sealed
/// from the open set, and a part of a merged run (then followed by its [`Placement`]).
const FORMAT_V1: u8 = 1;
const FORMAT_PART: u8 = 2;
/// xorf's binary fuse descriptor: seed (u64), segment length, its mask and the segment count
/// length (u32 each), little-endian.
const DESCRIPTOR_LEN: usize = 20;

/// Where a part of a merged run sits: the run, the fingerprints `lo..=hi` it covers, and the
/// runs the whole run replaces. A generation sealed from the open set has none: it is a run of
/// one part over every fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub run: u64,
    pub lo: u64,
    pub hi: u64,
    pub replaces: Vec<u64>,
}

/// Where a summary's filter and block index live. The projector may move them off its heap
/// (a read-only mapped file, which the kernel pages in on demand and may drop under memory
/// pressure) without the summary changing: [`GenerationSummary::with_body`].
///
/// The bytes are the layout [`GenerationSummary::body_bytes`] hands out: the filter's 16-bit
/// fingerprints, zeros to the next multiple of 8 bytes, then the block index's 64-bit first
/// fingerprints, both in the machine's byte order; they start 8-byte aligned.
pub trait SummaryBody: Send + Sync {
    /// The same bytes on every call (they are checked once, by
    /// [`GenerationSummary::with_body`]).
    fn bytes(&self) -> &[u8];
    /// Whether the bytes are on the process's heap (counted by
    /// [`GenerationSummary::memory_bytes`]) rather than mapped from a file.
    fn on_heap(&self) -> bool;
    /// Lets the process's memory go of the bytes until they are next read: a mapped body's
    /// pages leave the process (they stay in the page cache, and the next read maps them
    /// again). The bytes do not change. Nothing, for a body on the heap.
    fn release(&self) {}
    /// What [`Self::release`] lets go of, when bodies share it (several mapped from one file):
    /// bodies with the same unit are released together. `None`: this body alone.
    fn release_unit(&self) -> Option<usize> {
        None
    }
}

/// A body built or decoded in memory: 64-bit words, so its bytes start 8-byte aligned.
struct HeapBody(Vec<u64>);

impl SummaryBody for HeapBody {
    fn bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
    fn on_heap(&self) -> bool {
        true
    }
}

/// The three filter slots xorf's binary fuse filter reads for `key`, and the 16-bit
/// fingerprint their values XOR to when `key` is in the filter (xorf's `contains`: murmur3's
/// 64-bit finalizer of `key` plus the seed, then its `hash_of_hash`; the descriptor as
/// [`DESCRIPTOR_LEN`] says). Only [`GenerationSummary::prefetch`] uses it: answers come from
/// xorf itself, so were a new xorf to place keys otherwise, prefetching would cost time and
/// change nothing (a test checks that the two agree).
fn filter_slots(descriptor: &[u8; DESCRIPTOR_LEN], key: u64) -> ([u32; 3], u16) {
    let word = |at: usize| descriptor_word(descriptor, at);
    let seed = u64::from(word(0)) | (u64::from(word(4)) << 32);
    let (segment_length, mask, count_length) = (word(8), word(12), word(16));
    let mut hash = key.wrapping_add(seed);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    let h0 = ((u128::from(hash) * u128::from(count_length)) >> 64) as u32;
    let h1 = h0.wrapping_add(segment_length);
    let h2 = h1.wrapping_add(segment_length);
    let slots = [
        h0,
        h1 ^ ((hash >> 18) as u32 & mask),
        h2 ^ (hash as u32 & mask),
    ];
    (slots, (hash ^ (hash >> 32)) as u16)
}

/// The little-endian 32-bit word at byte `at` of a filter descriptor ([`DESCRIPTOR_LEN`]).
fn descriptor_word(descriptor: &[u8; DESCRIPTOR_LEN], at: usize) -> u32 {
    u32::from_le_bytes([
        descriptor[at],
        descriptor[at + 1],
        descriptor[at + 2],
        descriptor[at + 3],
    ])
}

/// A hint to load the cache line that holds `bytes[at]` into every cache level; nothing when
/// `at` is past the end, or off x86-64.
#[allow(unsafe_code)] // an intrinsic; see the SAFETY note
fn prefetch_line(bytes: &[u8], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(byte) = bytes.get(at) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 processor has. It is a hint:
        // it loads nothing into the program, cannot fault (an address whose page is not
        // mapped is dropped), and this one points into `bytes`.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(byte).cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (bytes, at);
}

/// Byte length of a body with `fingerprints` filter slots and `index` blocks.
fn body_len(fingerprints: usize, index: usize) -> usize {
    fingerprints * 2 + pad_to_8(fingerprints * 2) + index * 8
}

fn pad_to_8(n: usize) -> usize {
    (8 - n % 8) % 8
}

/// What the projector keeps of one sealed generation.
#[derive(Clone)]
pub struct GenerationSummary {
    descriptor: [u8; DESCRIPTOR_LEN],
    /// Filter slots: 0 for a part of a merged run that holds no entry (no filter).
    fingerprints: usize,
    /// Blocks: the first event fingerprint of each, ascending.
    index: usize,
    body: Arc<dyn SummaryBody>,
    placement: Option<Placement>,
}

impl std::fmt::Debug for GenerationSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationSummary")
            .field("fingerprints", &self.fingerprints)
            .field("blocks", &self.index)
            .field("on_heap", &self.body.on_heap())
            .field("placement", &self.placement)
            .finish()
    }
}

impl PartialEq for GenerationSummary {
    fn eq(&self, other: &Self) -> bool {
        self.descriptor == other.descriptor
            && self.fingerprints == other.fingerprints
            && self.index == other.index
            && self.body.bytes() == other.body.bytes()
            && self.placement == other.placement
    }
}

impl Eq for GenerationSummary {}

impl GenerationSummary {
    /// The summary of a generation whose entries' fingerprints are `sorted` (ascending, no
    /// repeats), stored in blocks of [`BLOCK_ENTRIES`]. `None` when the filter cannot be built
    /// (no keys, or a repeated one).
    pub fn build(sorted: &[u64]) -> Option<GenerationSummary> {
        if sorted.is_empty() || sorted.windows(2).any(|w| w[0] >= w[1]) {
            return None;
        }
        let filter = BinaryFuse16::try_from(sorted).ok()?;
        let mut descriptor = [0u8; DESCRIPTOR_LEN];
        filter.dma_copy_descriptor_to(&mut descriptor);
        let index: Vec<u64> = sorted.iter().step_by(BLOCK_ENTRIES).copied().collect();
        Some(GenerationSummary::on_heap(
            descriptor,
            &filter.fingerprints,
            &index,
            None,
        ))
    }

    /// A summary whose body is on the heap, laid out as [`SummaryBody`] says.
    fn on_heap(
        descriptor: [u8; DESCRIPTOR_LEN],
        fingerprints: &[u16],
        index: &[u64],
        placement: Option<Placement>,
    ) -> GenerationSummary {
        let mut words = vec![0u64; body_len(fingerprints.len(), index.len()) / 8];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let (filter, rest) = bytes.split_at_mut(fingerprints.len() * 2);
        filter.copy_from_slice(bytemuck::cast_slice(fingerprints));
        let at = pad_to_8(fingerprints.len() * 2);
        rest[at..].copy_from_slice(bytemuck::cast_slice(index));
        GenerationSummary {
            descriptor,
            fingerprints: fingerprints.len(),
            index: index.len(),
            body: Arc::new(HeapBody(words)),
            placement,
        }
    }

    /// The filter's fingerprints.
    fn filter(&self) -> &[u16] {
        bytemuck::cast_slice(&self.body.bytes()[..self.fingerprints * 2])
    }

    /// The first fingerprint of each block.
    fn index(&self) -> &[u64] {
        let start = self.fingerprints * 2 + pad_to_8(self.fingerprints * 2);
        bytemuck::cast_slice(&self.body.bytes()[start..start + self.index * 8])
    }

    /// The filter and block index, to be moved elsewhere ([`SummaryBody`]).
    pub fn body_bytes(&self) -> &[u8] {
        self.body.bytes()
    }

    /// The same summary with its filter and block index in `body`, which must hold exactly
    /// [`GenerationSummary::body_bytes`], 8-byte aligned. Refused (the summary given back
    /// unchanged) otherwise.
    pub fn with_body(
        self,
        body: Arc<dyn SummaryBody>,
    ) -> Result<GenerationSummary, GenerationSummary> {
        let fits = body.bytes().len() == self.body.bytes().len()
            && (body.bytes().as_ptr() as usize).is_multiple_of(8)
            && body.bytes() == self.body.bytes();
        if fits {
            Ok(GenerationSummary { body, ..self })
        } else {
            Err(self)
        }
    }

    /// The summary of a part of a merged run: over `sorted` (ascending, no repeats, all within
    /// `placement`'s range), possibly none.
    pub fn part(sorted: &[u64], placement: Placement) -> Option<GenerationSummary> {
        if placement.lo > placement.hi
            || sorted
                .iter()
                .any(|fp| !(placement.lo..=placement.hi).contains(fp))
        {
            return None;
        }
        let mut summary = if sorted.is_empty() {
            GenerationSummary::on_heap([0; DESCRIPTOR_LEN], &[], &[], None)
        } else {
            GenerationSummary::build(sorted)?
        };
        summary.placement = Some(placement);
        Some(summary)
    }

    /// The run and range this generation is a part of (`None`: a seal of the open set).
    pub fn placement(&self) -> Option<&Placement> {
        self.placement.as_ref()
    }

    /// The block that would hold `fp`, when the filter says it may be in the generation.
    pub fn block_of(&self, fp: u64) -> Option<u32> {
        if self.index == 0 {
            return None;
        }
        let filter = BinaryFuse16Ref::from_dma(
            &self.descriptor,
            &self.body.bytes()[..self.fingerprints * 2],
        );
        if !filter.contains(&fp) {
            return None;
        }
        let block = self
            .index()
            .partition_point(|first| *first <= fp)
            .checked_sub(1)?;
        u32::try_from(block).ok()
    }

    /// Asks the processor to start loading the filter lines [`Self::block_of`] reads for `fp`,
    /// without waiting for them. Probes of a batch hinted some fingerprints ahead then overlap
    /// their cache misses (three random lines per probe) instead of taking them one after
    /// another. Only a hint: it changes no answer and reads nothing, and a line whose page is
    /// not mapped is skipped, never faulted in.
    pub fn prefetch(&self, fp: u64) {
        if self.index == 0 {
            return;
        }
        let filter = &self.body.bytes()[..self.fingerprints * 2];
        let (slots, _) = filter_slots(&self.descriptor, fp);
        for slot in slots {
            prefetch_line(filter, slot as usize * 2);
        }
    }

    /// Lets the process's memory go of a body held elsewhere until it is next read
    /// ([`SummaryBody::release`]); answers do not change.
    pub fn release(&self) {
        self.body.release();
    }

    /// Whether releasing this summary also releases `other`'s body, and the other way round
    /// (their bodies share pages: [`SummaryBody::release_unit`]).
    pub fn released_with(&self, other: &GenerationSummary) -> bool {
        self.body
            .release_unit()
            .is_some_and(|unit| other.body.release_unit() == Some(unit))
    }

    /// Bytes held on the heap.
    pub fn memory_bytes(&self) -> usize {
        DESCRIPTOR_LEN
            + if self.body.on_heap() {
                self.body.bytes().len()
            } else {
                0
            }
    }

    /// Bytes of the filter and block index held outside the heap ([`SummaryBody`]).
    pub fn mapped_bytes(&self) -> usize {
        if self.body.on_heap() {
            0
        } else {
            self.body.bytes().len()
        }
    }

    pub fn blocks(&self) -> usize {
        self.index
    }

    /// The blocks that may hold fingerprints in `lo..=hi`.
    pub fn blocks_between(&self, lo: u64, hi: u64) -> std::ops::Range<u32> {
        if self.index == 0 || lo > hi {
            return 0..0;
        }
        let index = self.index();
        let first = index.partition_point(|f| *f <= lo).saturating_sub(1);
        let end = index.partition_point(|f| *f <= hi).max(first);
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        to_u32(first)..to_u32(end)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + DESCRIPTOR_LEN + 8 + self.fingerprints * 2 + self.index * 8 + 36,
        );
        out.push(if self.placement.is_some() {
            FORMAT_PART
        } else {
            FORMAT_V1
        });
        out.extend_from_slice(&self.descriptor);
        out.extend_from_slice(&(self.fingerprints as u32).to_le_bytes());
        for f in self.filter() {
            out.extend_from_slice(&f.to_le_bytes());
        }
        out.extend_from_slice(&(self.index as u32).to_le_bytes());
        for first in self.index() {
            out.extend_from_slice(&first.to_le_bytes());
        }
        if let Some(p) = &self.placement {
            for word in [p.run, p.lo, p.hi] {
                out.extend_from_slice(&word.to_le_bytes());
            }
            out.extend_from_slice(&(p.replaces.len() as u32).to_le_bytes());
            for run in &p.replaces {
                out.extend_from_slice(&run.to_le_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<GenerationSummary, StoreError> {
        let corrupt = |why: &str| StoreError::Corrupt(format!("dedup generation summary: {why}"));
        let mut r = Reader(bytes);
        let format = r.take(1).ok_or_else(|| corrupt("empty"))?[0];
        if format != FORMAT_V1 && format != FORMAT_PART {
            return Err(corrupt("unknown format"));
        }
        let mut descriptor = [0u8; DESCRIPTOR_LEN];
        descriptor.copy_from_slice(r.take(DESCRIPTOR_LEN).ok_or_else(|| corrupt("short"))?);
        let fingerprints: Vec<u16> = r
            .array::<2>()
            .ok_or_else(|| corrupt("fingerprints cut short"))?
            .map(u16::from_le_bytes)
            .collect();
        let index: Vec<u64> = r
            .array::<8>()
            .ok_or_else(|| corrupt("index cut short"))?
            .map(u64::from_le_bytes)
            .collect();
        let placement = if format == FORMAT_PART {
            let mut word = || {
                r.take(8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            };
            let (run, lo, hi) = match (word(), word(), word()) {
                (Some(run), Some(lo), Some(hi)) => (run, lo, hi),
                _ => return Err(corrupt("placement cut short")),
            };
            let replaces: Vec<u64> = r
                .array::<8>()
                .ok_or_else(|| corrupt("replaced runs cut short"))?
                .map(u64::from_le_bytes)
                .collect();
            if lo > hi
                || index.first().is_some_and(|first| *first < lo)
                || index.last().is_some_and(|last| *last > hi)
            {
                return Err(corrupt("part range"));
            }
            Some(Placement {
                run,
                lo,
                hi,
                replaces,
            })
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        if placement.is_some() && index.is_empty() && fingerprints.is_empty() {
            // A part that holds no entry.
            return Ok(GenerationSummary::on_heap(
                descriptor,
                &fingerprints,
                &index,
                placement,
            ));
        }
        if index.is_empty() || index.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("block index not ascending"));
        }
        // Every index the filter's lookup computes stays below `segment_count_length + 2 ×
        // segment_length` when the segment length is a power of two, the mask is one less and
        // the segment count length is a non-zero multiple of it (the lookup maps a hash into
        // `[0, segment_count_length)`, which must not be empty): require exactly that shape.
        let word = |at: usize| descriptor_word(&descriptor, at) as usize;
        let (length, mask, count_length) = (word(8), word(12), word(16));
        let shaped = length.is_power_of_two()
            && mask == length - 1
            && count_length >= length
            && count_length.is_multiple_of(length)
            && count_length
                .checked_add(2 * length)
                .is_some_and(|want| want == fingerprints.len());
        if !shaped {
            return Err(corrupt("filter shape"));
        }
        Ok(GenerationSummary::on_heap(
            descriptor,
            &fingerprints,
            &index,
            placement,
        ))
    }
}

/// `parts` ranges of equal width that tile the fingerprint space, in order.
pub fn split_range(parts: usize) -> Vec<(u64, u64)> {
    let parts = parts.max(1) as u128;
    let start = |i: u128| ((i << 64) / parts) as u64;
    (0..parts)
        .map(|i| {
            let hi = if i + 1 == parts {
                u64::MAX
            } else {
                start(i + 1) - 1
            };
            (start(i), hi)
        })
        .collect()
}

/// The entries of `blocks` with a fingerprint in `lo..=hi` seen at or after `horizon_s`,
/// sorted by fingerprint, each once with the newest second it was seen.
///
/// A merge passes each input's blocks in fingerprint order, one input after another: a few
/// sorted runs, which the stable sort finds and merges instead of sorting the entries afresh
/// (its scratch space, up to half the entries, is held only while it sorts); any order gives
/// the same result.
pub fn merge_entries<'a>(
    blocks: impl IntoIterator<Item = &'a [(u64, u32)]>,
    lo: u64,
    hi: u64,
    horizon_s: u32,
) -> Vec<(u64, u32)> {
    let read: Vec<&[(u64, u32)]> = blocks.into_iter().collect();
    let mut out: Vec<(u64, u32)> = Vec::with_capacity(read.iter().map(|b| b.len()).sum());
    out.extend(
        read.iter()
            .flat_map(|b| b.iter())
            .filter(|(fp, s)| (lo..=hi).contains(fp) && *s >= horizon_s),
    );
    // Newest first within a fingerprint, so the kept one is the newest.
    out.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    out.dedup_by_key(|(fp, _)| *fp);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// A `u32` count, then that many `N`-byte items.
    fn array<const N: usize>(&mut self) -> Option<impl Iterator<Item = [u8; N]> + 'a> {
        let n = self.u32()? as usize;
        let bytes = self.take(n.checked_mul(N)?)?;
        Some(
            bytes
                .chunks_exact(N)
                .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N])),
        )
    }
}

/// The seen-second of `fp` in a block's entries (sorted by fingerprint), if it is there.
pub fn find_in_block(block: &[(u64, u32)], fp: u64) -> Option<u32> {
    block
        .binary_search_by_key(&fp, |(f, _)| *f)
        .ok()
        .map(|i| block[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn keys(n: u64, step: u64) -> Vec<u64> {
        (1..=n).map(|i| i.wrapping_mul(step)).collect::<Vec<_>>()
    }

    /// `n` keys, sorted, and the summary of a generation of them.
    fn built(n: u64, step: u64) -> (Vec<u64>, GenerationSummary) {
        let mut sorted = keys(n, step);
        sorted.sort_unstable();
        let summary = GenerationSummary::build(&sorted).expect("built");
        (sorted, summary)
    }

    #[test]
    fn the_lines_prefetched_are_the_ones_the_filter_reads() {
        // A binary fuse filter holds a key when the values at its three slots XOR to its
        // fingerprint: for every member, slots or fingerprint computed otherwise than xorf
        // does would match about 1 time in 65,536.
        let (sorted, summary) = built(20_000, 0x2545_F491_4F6C_DD1D);
        let filter = summary.filter();
        for fp in &sorted {
            let (slots, fingerprint) = filter_slots(&summary.descriptor, *fp);
            let xor = slots
                .iter()
                .fold(fingerprint, |acc, slot| acc ^ filter[*slot as usize]);
            assert_eq!(xor, 0, "{fp:#x}");
            summary.prefetch(*fp);
        }
        // Hints change nothing, for members and others alike, nor does one for an empty part.
        for (i, fp) in sorted.iter().enumerate() {
            assert_eq!(summary.block_of(*fp), Some((i / BLOCK_ENTRIES) as u32));
        }
        let empty = GenerationSummary::part(
            &[],
            Placement {
                run: 1,
                lo: 0,
                hi: u64::MAX,
                replaces: Vec::new(),
            },
        )
        .expect("an empty part");
        empty.prefetch(7);
        assert_eq!(empty.block_of(7), None);
    }

    #[test]
    fn every_member_is_found_in_the_block_that_holds_it() {
        let (sorted, summary) = built(5_000, 0x9E37_79B9_7F4A_7C15);
        assert_eq!(summary.blocks(), 5, "5,000 entries in blocks of 1,024");
        for (i, fp) in sorted.iter().enumerate() {
            assert_eq!(summary.block_of(*fp), Some((i / BLOCK_ENTRIES) as u32));
        }
    }

    #[test]
    fn non_members_are_rarely_suspected() {
        let (sorted, summary) = built(100_000, 0x9E37_79B9_7F4A_7C15);
        let members: std::collections::HashSet<u64> = sorted.iter().copied().collect();
        let probes = (0..1_000_000u64)
            .map(|i| i.wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x5555)
            .filter(|k| !members.contains(k));
        let hits = probes.filter(|k| summary.block_of(*k).is_some()).count();
        // 16-bit fingerprints: about 1 in 65,536, so ~15 of a million; far below 100.
        assert!(hits < 100, "{hits} false positives in a million");
        // ≈ 18 bits per entry plus the block index.
        let per_entry = summary.memory_bytes() as f64 / 100_000.0;
        assert!(per_entry < 2.5, "{per_entry} bytes per entry");
    }

    #[test]
    fn a_summary_reads_back_as_written_and_corrupt_ones_are_refused() {
        let (_, summary) = built(3_000, 0x2545_F491_4F6C_DD1D);
        let bytes = summary.encode();
        assert_eq!(GenerationSummary::decode(&bytes).expect("valid"), summary);
        for cut in [0, 1, 10, 25, bytes.len() - 1] {
            assert!(
                GenerationSummary::decode(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        // A segment length that is not a power of two, and a mask that lets an index escape.
        let mut bad = bytes.clone();
        bad[1 + 8] ^= 0x01;
        assert!(GenerationSummary::decode(&bad).is_err());
        let mut bad = bytes.clone();
        bad[1 + 12..1 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(GenerationSummary::decode(&bad).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(GenerationSummary::decode(&longer).is_err());
        // No segment at all (length 1, mask 0, count length 0, two fingerprints): a lookup
        // would index past the fingerprints.
        let mut empty = vec![1u8];
        empty.extend_from_slice(&7u64.to_le_bytes());
        for word in [1u32, 0, 0, 2] {
            empty.extend_from_slice(&word.to_le_bytes());
        }
        empty.extend_from_slice(&[0, 0, 0, 0]);
        empty.extend_from_slice(&1u32.to_le_bytes());
        empty.extend_from_slice(&5u64.to_le_bytes());
        assert!(GenerationSummary::decode(&empty).is_err());
    }

    /// A body held elsewhere than the heap, as an adapter would (here: words of its own).
    struct Elsewhere(Vec<u64>);

    impl SummaryBody for Elsewhere {
        fn bytes(&self) -> &[u8] {
            bytemuck::cast_slice(&self.0)
        }
        fn on_heap(&self) -> bool {
            false
        }
    }

    fn elsewhere(bytes: &[u8]) -> Arc<Elsewhere> {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Arc::new(Elsewhere(words))
    }

    #[test]
    fn a_body_moved_elsewhere_answers_the_same_and_is_not_counted_as_heap() {
        let (sorted, summary) = built(5_000, 0x9E37_79B9_7F4A_7C15);
        let heap = summary.memory_bytes();
        let len = summary.body_bytes().len();
        // 5,000 entries: at least 16 bits each in the filter, and 5 blocks' first fingerprints.
        assert!(len >= 5_000 * 2 + 5 * 8, "{len}");
        let moved = summary
            .clone()
            .with_body(elsewhere(summary.body_bytes()))
            .expect("the same bytes");
        assert_eq!(moved, summary);
        assert_eq!(moved.mapped_bytes(), len);
        assert_eq!(moved.memory_bytes(), heap - len);
        for (i, fp) in sorted.iter().enumerate() {
            assert_eq!(moved.block_of(*fp), Some((i / BLOCK_ENTRIES) as u32));
        }
        assert_eq!(moved.encode(), summary.encode());
        // Other bytes, or fewer, are refused and the summary comes back as it was.
        let mut other = summary.body_bytes().to_vec();
        other[3] ^= 1;
        let back = summary
            .clone()
            .with_body(elsewhere(&other))
            .expect_err("refused");
        assert_eq!(back.mapped_bytes(), 0);
        let short = &summary.body_bytes()[..len - 8];
        assert!(summary.clone().with_body(elsewhere(short)).is_err());
    }

    #[test]
    fn nothing_or_repeats_build_no_summary() {
        assert!(GenerationSummary::build(&[]).is_none());
        assert!(GenerationSummary::build(&[3, 3, 4]).is_none());
    }

    #[test]
    fn equal_ranges_tile_the_fingerprint_space() {
        assert_eq!(split_range(1), vec![(0, u64::MAX)]);
        assert_eq!(
            split_range(4),
            vec![
                (0, 0x3FFF_FFFF_FFFF_FFFF),
                (0x4000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF),
                (0x8000_0000_0000_0000, 0xBFFF_FFFF_FFFF_FFFF),
                (0xC000_0000_0000_0000, u64::MAX),
            ]
        );
        let ranges = split_range(7);
        assert_eq!(ranges.len(), 7);
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[6].1, u64::MAX);
        for w in ranges.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0);
        }
    }

    #[test]
    fn merging_keeps_each_fingerprint_in_range_once_with_its_newest_second() {
        let a = [(5, 100), (10, 50), (20, 70), (90, 80)];
        let b = [(10, 60), (15, 40), (20, 65), (30, 90)];
        let merged = merge_entries([&a[..], &b[..]], 10, 30, 45);
        // 5 and 90 are out of range; 15 was last seen before the horizon (45); 10 and 20 keep
        // their newest seconds.
        assert_eq!(merged, vec![(10, 60), (20, 70), (30, 90)]);
    }

    proptest::proptest! {
        /// Inputs as a merge passes them (each a run of sorted, distinct fingerprints, cut
        /// into blocks), or with the blocks in reverse order: the same entries as keeping, per
        /// fingerprint in range, the newest second at or after the horizon.
        #[test]
        fn merging_sorted_runs_keeps_each_fingerprint_once_with_its_newest_second(
            inputs in proptest::collection::vec(
                proptest::collection::btree_map(0u64..2_000, 0u32..100, 0..300),
                1..5,
            ),
            block in 1usize..40,
            lo in 0u64..1_000,
            width in 0u64..1_500,
            horizon in 0u32..100,
            reversed in proptest::bool::ANY,
        ) {
            let hi = lo + width;
            let mut expected: BTreeMap<u64, u32> = BTreeMap::new();
            for input in &inputs {
                for (&fp, &s) in input {
                    if (lo..=hi).contains(&fp) && s >= horizon {
                        let newest = expected.entry(fp).or_insert(s);
                        *newest = (*newest).max(s);
                    }
                }
            }
            let runs: Vec<Vec<(u64, u32)>> = inputs
                .iter()
                .map(|input| input.iter().map(|(fp, s)| (*fp, *s)).collect())
                .collect();
            let mut blocks: Vec<&[(u64, u32)]> =
                runs.iter().flat_map(|run| run.chunks(block)).collect();
            if reversed {
                blocks.reverse();
            }
            let merged = merge_entries(blocks, lo, hi, horizon);
            let want: Vec<(u64, u32)> = expected.into_iter().collect();
            proptest::prop_assert_eq!(merged, want);
        }
    }

    #[test]
    fn a_part_reads_back_with_its_placement_and_finds_blocks_by_range() {
        let sorted: Vec<u64> = (0..3_000u64).map(|i| 1_000 + i * 7).collect();
        let placement = Placement {
            run: 42,
            lo: 1_000,
            hi: 30_000,
            replaces: vec![7, 8, 9, 10],
        };
        let part = GenerationSummary::part(&sorted, placement.clone()).expect("built");
        let bytes = part.encode();
        assert_eq!(bytes[0], FORMAT_PART);
        let back = GenerationSummary::decode(&bytes).expect("valid");
        assert_eq!(back, part);
        assert_eq!(back.placement(), Some(&placement));
        // Blocks start at 1,000, 8,168 and 15,336 (1,024 entries of 7 apart).
        assert_eq!(part.blocks_between(0, 999), 0..0);
        assert_eq!(part.blocks_between(1_000, 8_167), 0..1);
        assert_eq!(part.blocks_between(8_000, 8_168), 0..2);
        assert_eq!(part.blocks_between(9_000, 9_001), 1..2);
        assert_eq!(part.blocks_between(15_336, u64::MAX), 2..3);
        for cut in [bytes.len() - 1, bytes.len() - 9, bytes.len() - 30] {
            assert!(
                GenerationSummary::decode(&bytes[..cut]).is_err(),
                "cut {cut}"
            );
        }
        // Keys outside the range make no part; an empty part holds nothing.
        assert!(GenerationSummary::part(&[5], placement.clone()).is_none());
        let empty = GenerationSummary::part(&[], placement.clone()).expect("empty part");
        let back = GenerationSummary::decode(&empty.encode()).expect("valid");
        assert_eq!(back.block_of(1_000), None);
        assert_eq!(back.blocks_between(0, u64::MAX), 0..0);
        assert_eq!(back.placement(), Some(&placement));
        // A part whose blocks start outside its range is refused.
        let narrower = Placement {
            lo: 2_000,
            ..placement
        };
        let mut bytes = part.encode();
        let at = bytes.len() - 8 * 4 - 4 - 8 * 2;
        bytes[at..at + 8].copy_from_slice(&narrower.lo.to_le_bytes());
        assert!(GenerationSummary::decode(&bytes).is_err());
    }

    #[test]
    fn blocks_are_searched_exactly() {
        let block = [(10, 1), (20, 2), (30, 3)];
        assert_eq!(find_in_block(&block, 20), Some(2));
        assert_eq!(find_in_block(&block, 25), None);
    }
}
