//! Binary form of an event-log record (and of the drill-down's chunks of counted events):
//! the record's events, or its scores.
//!
//! The first byte is a format version so old logs stay readable when the event type or its
//! encoding changes. Formats 1 and 2 are the events, postcard-encoded row by row and
//! LZ4-compressed: 1 the event before `error_message` (read into today's event with no
//! message), 2 today's event. Format 4, what is written now, is today's event in columns,
//! zstd-compressed ([`columns`]): about a third of format 2's bytes on the load generator's
//! events. A record of scores (`POST /v1/scores`) is format 3: the record's scores,
//! postcard-encoded, LZ4-compressed. A log record holds events or scores, never both
//! ([`decode_record`]). Format 5 is not a log record: it is a drill-down chunk that points
//! into the embedded log instead of copying its events ([`refs`]); the next version of the
//! event or its encoding must take format 6.
//!
//! Reading never trusts a record: a size field the compressed block cannot hold, or content
//! above [`MAX_PLAIN_BYTES`], is refused as corrupt before anything is allocated for it.

use serde::Deserialize;
use tally_schemas::event::{Cost, Operation, Status};
use tally_schemas::{Environment, Score, UsageEvent};

use crate::store::StoreError;

const FORMAT_V1: u8 = 1;

const FORMAT_V2: u8 = 2;

const FORMAT_SCORES_V1: u8 = 3;

const FORMAT_COLUMNS: u8 = 4;

const FORMAT_REFS: u8 = 5;

mod columns;
mod refs;

pub use refs::{EventRef, RefRow, RefSheet};

/// A usage event as format 1 stored it (postcard is positional: the fields, in this order).
#[derive(Deserialize)]
struct EventV1 {
    event_id: String,
    occurred_at_us: i64,
    feature: String,
    model: String,
    provider: String,
    environment: Environment,
    operation: Operation,
    status: Status,
    error_type: Option<String>,
    latency_us: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cost: Cost,
    user_id: Option<String>,
    prompt_id: Option<String>,
    prompt_version: Option<String>,
    experiment_id: Option<String>,
    variant: Option<String>,
    attributes: Vec<(String, String)>,
}

impl From<EventV1> for UsageEvent {
    fn from(e: EventV1) -> UsageEvent {
        UsageEvent {
            event_id: e.event_id,
            occurred_at_us: e.occurred_at_us,
            feature: e.feature,
            model: e.model,
            provider: e.provider,
            environment: e.environment,
            operation: e.operation,
            status: e.status,
            error_type: e.error_type,
            error_message: None,
            error_message_truncated: false,
            latency_us: e.latency_us,
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cached_input_tokens: e.cached_input_tokens,
            cost: e.cost,
            user_id: e.user_id,
            prompt_id: e.prompt_id,
            prompt_version: e.prompt_version,
            experiment_id: e.experiment_id,
            variant: e.variant,
            attributes: e.attributes,
        }
    }
}

/// The most a record's content may decompress to. A record holds one accepted request
/// (ingest reads at most 10 MiB of JSON, which encodes smaller), so this is far above any
/// real record, and a corrupt size field cannot make a reader allocate gigabytes.
pub const MAX_PLAIN_BYTES: usize = 64 * 1024 * 1024;

/// LZ4 turns one byte of a block into at most 255 (a run-length byte), so a size field
/// claiming more than this per compressed byte is corrupt whatever the data.
const LZ4_MAX_RATIO: usize = 255;

fn corrupt(e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("log record: {e}"))
}

/// Decompresses a size-prefixed LZ4 block after checking that its size field is plausible.
fn unpack(compressed: &[u8]) -> Result<Vec<u8>, StoreError> {
    let (size, block) = lz4_flex::block::uncompressed_size(compressed).map_err(|e| corrupt(&e))?;
    if size > MAX_PLAIN_BYTES || size > block.len().saturating_mul(LZ4_MAX_RATIO) + 16 {
        return Err(corrupt(&format!(
            "content size {size} is impossible for {} compressed bytes",
            block.len()
        )));
    }
    lz4_flex::block::decompress(block, size).map_err(|e| corrupt(&e))
}

/// A record of `format`: the format byte, then `content` postcard-encoded and LZ4-compressed.
fn pack(format: u8, content: &impl serde::Serialize) -> Result<Vec<u8>, StoreError> {
    let plain =
        postcard::to_stdvec(content).map_err(|e| StoreError::Backend(format!("encode: {e}")))?;
    let mut out = Vec::with_capacity(plain.len() / 3 + 8);
    out.push(format);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
    Ok(out)
}

/// The content of a record after its format byte.
fn unpack_as<T: serde::de::DeserializeOwned>(rest: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(&unpack(rest)?).map_err(|e| corrupt(&e))
}

/// A record of `events` (owned, or borrowed: `&[&UsageEvent]`) in the format written now.
pub fn encode_events<E: std::borrow::Borrow<UsageEvent>>(
    events: &[E],
) -> Result<Vec<u8>, StoreError> {
    let frame = columns::encode(events)?;
    let mut out = Vec::with_capacity(frame.len() + 1);
    out.push(FORMAT_COLUMNS);
    out.extend_from_slice(&frame);
    Ok(out)
}

pub fn decode_events(bytes: &[u8]) -> Result<Vec<UsageEvent>, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_COLUMNS, rest)) => columns::decode(rest),
        Some((&FORMAT_V2, rest)) => unpack_as(rest),
        Some((&FORMAT_V1, rest)) => {
            let old: Vec<EventV1> = unpack_as(rest)?;
            Ok(old.into_iter().map(UsageEvent::from).collect())
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "unknown log record format {v}"
        ))),
        None => Err(StoreError::Corrupt("empty log record".into())),
    }
}

/// The events at `indexes` of a log record of events, each with its index (indexes it does
/// not hold are left out). Format 4 builds only those events; older formats are read whole.
pub fn decode_events_at(
    bytes: &[u8],
    indexes: &[u32],
) -> Result<Vec<(u32, UsageEvent)>, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_COLUMNS, rest)) => columns::decode_at(rest, indexes),
        _ => {
            let mut events: Vec<Option<UsageEvent>> =
                decode_events(bytes)?.into_iter().map(Some).collect();
            Ok(indexes
                .iter()
                .filter_map(|&i| Some((i, events.get_mut(i as usize)?.take()?)))
                .collect())
        }
    }
}

/// A drill-down chunk of the events of `rows` (in the order given, read into `sheet`) as
/// references into the log whose id is `log_id` (format 5, see [`refs`]).
pub fn encode_ref_rows(
    log_id: &str,
    sheet: &RefSheet<'_>,
    rows: &[RefRow<'_>],
) -> Result<Vec<u8>, StoreError> {
    let frame = refs::encode_rows(log_id, sheet, rows)?;
    let mut out = Vec::with_capacity(frame.len() + 1);
    out.push(FORMAT_REFS);
    out.extend_from_slice(&frame);
    Ok(out)
}

/// A drill-down chunk's references and the id of the log they point into; `None` when the
/// chunk holds its events themselves ([`decode_events`] reads it).
pub fn decode_event_refs(bytes: &[u8]) -> Result<Option<(String, Vec<EventRef>)>, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_REFS, rest)) => refs::decode(rest).map(Some),
        _ => Ok(None),
    }
}

pub fn encode_scores(scores: &[Score]) -> Result<Vec<u8>, StoreError> {
    pack(FORMAT_SCORES_V1, &scores)
}

/// A log record's content: its events, or its scores.
pub fn decode_record(bytes: &[u8]) -> Result<(Vec<UsageEvent>, Vec<Score>), StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_SCORES_V1, rest)) => Ok((Vec::new(), unpack_as(rest)?)),
        _ => Ok((decode_events(bytes)?, Vec::new())),
    }
}

/// Binary form of a dedup chunk or block, shared by every analytics store: its entries (an
/// event's 8-byte fingerprint and the second it was last seen), sorted, the fingerprints as
/// deltas from the previous one and the seconds as offsets from the chunk's earliest, each
/// bit-packed at the width its largest value needs. A sealed block of 1,024 sorted entries takes
/// about 8 bytes an entry instead of 12.
///
/// Layout: the tag byte [`DEDUP_PACKED`], the entry count (u32), the first fingerprint (u64),
/// the delta width in bits (u8), the earliest second (u32), the offset width (u8), all
/// little-endian; then the deltas and the offsets, least significant bit first; then one zero
/// byte if the length would otherwise be a multiple of 12. Chunks written before this format
/// are the raw entries, 12 bytes each (fingerprint, second; little-endian): a length that is a
/// multiple of 12 is that format, any other length this one. An empty chunk is empty in both.
pub fn encode_dedup_chunk(entries: &[(u64, u32)]) -> Vec<u8> {
    let mut sorted = entries.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let (Some(&(first, _)), Some(min_s)) = (sorted.first(), sorted.iter().map(|e| e.1).min())
    else {
        return Vec::new();
    };
    let width = |max: u64| (u64::BITS - max.leading_zeros()) as u8;
    let fp_bits = width(
        sorted
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .max()
            .unwrap_or(0),
    );
    let s_bits = width(
        sorted
            .iter()
            .map(|e| u64::from(e.1 - min_s))
            .max()
            .unwrap_or(0),
    );
    let mut out = Vec::with_capacity(19 + sorted.len() * usize::from(fp_bits + s_bits) / 8 + 2);
    out.push(DEDUP_PACKED);
    out.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    out.extend_from_slice(&first.to_le_bytes());
    out.push(fp_bits);
    out.extend_from_slice(&min_s.to_le_bytes());
    out.push(s_bits);
    let mut bits = BitWriter::new(out);
    for w in sorted.windows(2) {
        bits.push(w[1].0 - w[0].0, fp_bits);
    }
    for e in &sorted {
        bits.push(u64::from(e.1 - min_s), s_bits);
    }
    let mut out = bits.finish();
    if out.len().is_multiple_of(12) {
        out.push(0);
    }
    out
}

/// The first byte of a packed dedup chunk ([`encode_dedup_chunk`]).
const DEDUP_PACKED: u8 = 0xD2;
const DEDUP_HEADER: usize = 19;

/// Appends the entries of a chunk seen at or after `since_s` to `out`.
pub fn decode_dedup_chunk(
    bytes: &[u8],
    since_s: u32,
    out: &mut Vec<(u64, u32)>,
) -> Result<(), StoreError> {
    let bad = |why: &str| StoreError::Corrupt(format!("dedup chunk: {why}"));
    if bytes.len().is_multiple_of(12) {
        for c in bytes.chunks_exact(12) {
            let fp = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let s = u32::from_le_bytes([c[8], c[9], c[10], c[11]]);
            if s >= since_s {
                out.push((fp, s));
            }
        }
        return Ok(());
    }
    if bytes.len() < DEDUP_HEADER || bytes[0] != DEDUP_PACKED {
        return Err(bad("unknown format"));
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let n = u64::from(u32_at(1));
    let mut first = [0u8; 8];
    first.copy_from_slice(&bytes[5..13]);
    let first = u64::from_le_bytes(first);
    let (fp_bits, min_s, s_bits) = (bytes[13], u32_at(14), bytes[18]);
    if n == 0 || fp_bits > 64 || s_bits > 32 || (n > 1 && fp_bits == 0 && s_bits == 0) {
        return Err(bad("header"));
    }
    let payload = (n - 1) * u64::from(fp_bits) + n * u64::from(s_bits);
    let len = DEDUP_HEADER as u64 + payload.div_ceil(8);
    let padded = if len.is_multiple_of(12) { len + 1 } else { len };
    if bytes.len() as u64 != padded {
        return Err(bad("length"));
    }
    let mut bits = BitReader::new(&bytes[DEDUP_HEADER..]);
    let mut fps = Vec::with_capacity(n as usize);
    let mut fp = first;
    fps.push(fp);
    for _ in 1..n {
        fp = fp
            .checked_add(bits.take(fp_bits))
            .ok_or_else(|| bad("fingerprint out of range"))?;
        fps.push(fp);
    }
    // As written: strictly ascending (fingerprint, second), and nothing but zeros after.
    let mut previous: Option<(u64, u32)> = None;
    for fp in fps {
        let s = u64::from(min_s) + bits.take(s_bits);
        let s = u32::try_from(s).map_err(|_| bad("second out of range"))?;
        if previous.is_some_and(|p| p >= (fp, s)) {
            return Err(bad("entries out of order"));
        }
        previous = Some((fp, s));
        if s >= since_s {
            out.push((fp, s));
        }
    }
    if !bits.rest_is_zero() {
        return Err(bad("bits after the entries"));
    }
    Ok(())
}

/// Writes values of up to 64 bits, least significant bit first.
struct BitWriter {
    out: Vec<u8>,
    acc: u128,
    held: u32,
}

impl BitWriter {
    fn new(out: Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            held: 0,
        }
    }

    /// `value` must fit in `bits`. Bits are gathered and written out 64 at a time.
    fn push(&mut self, value: u64, bits: u8) {
        if bits == 0 {
            return;
        }
        self.acc |= u128::from(value) << self.held;
        self.held += u32::from(bits);
        if self.held >= 64 {
            self.out.extend_from_slice(&(self.acc as u64).to_le_bytes());
            self.acc >>= 64;
            self.held -= 64;
        }
    }

    fn finish(mut self) -> Vec<u8> {
        let bytes = self.held.div_ceil(8) as usize;
        self.out.extend_from_slice(&self.acc.to_le_bytes()[..bytes]);
        self.out
    }
}

/// Reads what [`BitWriter`] wrote; the caller has checked that enough bytes are there.
struct BitReader<'a> {
    bytes: &'a [u8],
    next: usize,
    acc: u128,
    held: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader {
            bytes,
            next: 0,
            acc: 0,
            held: 0,
        }
    }

    /// Whether every bit after those taken is zero.
    fn rest_is_zero(&self) -> bool {
        self.acc == 0
            && self.bytes[self.next.min(self.bytes.len())..]
                .iter()
                .all(|&b| b == 0)
    }

    fn take(&mut self, bits: u8) -> u64 {
        if bits == 0 {
            return 0;
        }
        if self.held < u32::from(bits) {
            // The next 64 bits at once (zeros past the end).
            let mut word = [0u8; 8];
            let rest = &self.bytes[self.next.min(self.bytes.len())..];
            let n = rest.len().min(8);
            word[..n].copy_from_slice(&rest[..n]);
            self.acc |= u128::from(u64::from_le_bytes(word)) << self.held;
            self.next += 8;
            self.held += 64;
        }
        let value = (self.acc & ((1u128 << bits) - 1)) as u64;
        self.acc >>= bits;
        self.held -= u32::from(bits);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_size_field_beyond_what_the_block_can_hold_is_refused_before_allocating() {
        // Format 2, size field 0xFFFF_FFFF (4 GiB), one byte of block.
        let record = [FORMAT_V2, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];
        let err = decode_events(&record).expect_err("a 4 GiB claim from one byte");
        assert!(err.to_string().contains("impossible"), "{err}");
        // 300 zero bytes compress to a handful; the true size passes the check.
        let plain = vec![0u8; 300];
        let mut packed = vec![FORMAT_V2];
        packed.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
        assert_eq!(unpack(&packed[1..]).expect("a true size"), plain);
    }

    /// A record as format 1 wrote it, built by hand here: postcard of the old field list.
    #[test]
    fn format_1_records_read_as_events_without_a_message() {
        #[derive(serde::Serialize)]
        struct Old<'a> {
            event_id: &'a str,
            occurred_at_us: i64,
            feature: &'a str,
            model: &'a str,
            provider: &'a str,
            environment: Environment,
            operation: Operation,
            status: Status,
            error_type: Option<&'a str>,
            latency_us: u64,
            input_tokens: u64,
            output_tokens: u64,
            cached_input_tokens: u64,
            cost: Cost,
            user_id: Option<&'a str>,
            prompt_id: Option<&'a str>,
            prompt_version: Option<&'a str>,
            experiment_id: Option<&'a str>,
            variant: Option<&'a str>,
            attributes: Vec<(&'a str, &'a str)>,
        }
        let old = vec![Old {
            event_id: "e1",
            occurred_at_us: 1_767_225_600_000_000,
            feature: "chatbot",
            model: "gpt-4o",
            provider: "openai",
            environment: Environment::Staging,
            operation: Operation::Chat,
            status: Status::Error,
            error_type: Some("rate_limit"),
            latency_us: 1234,
            input_tokens: 10,
            output_tokens: 2,
            cached_input_tokens: 1,
            cost: Cost::Computed(99),
            user_id: Some("u"),
            prompt_id: None,
            prompt_version: None,
            experiment_id: Some("x"),
            variant: Some("b"),
            attributes: vec![("k", "v")],
        }];
        let plain = postcard::to_stdvec(&old).expect("encode");
        let mut record = vec![FORMAT_V1];
        record.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
        let events = decode_events(&record).expect("decode");
        assert_eq!(
            events,
            vec![UsageEvent {
                event_id: "e1".into(),
                occurred_at_us: 1_767_225_600_000_000,
                feature: "chatbot".into(),
                model: "gpt-4o".into(),
                provider: "openai".into(),
                environment: Environment::Staging,
                operation: Operation::Chat,
                status: Status::Error,
                error_type: Some("rate_limit".into()),
                error_message: None,
                error_message_truncated: false,
                latency_us: 1234,
                input_tokens: 10,
                output_tokens: 2,
                cached_input_tokens: 1,
                cost: Cost::Computed(99),
                user_id: Some("u".into()),
                prompt_id: None,
                prompt_version: None,
                experiment_id: Some("x".into()),
                variant: Some("b".into()),
                attributes: vec![("k".into(), "v".into())],
            }]
        );
        // Today's records carry the message.
        let now = UsageEvent {
            error_message: Some("quota exceeded".into()),
            error_message_truncated: true,
            ..events[0].clone()
        };
        let record = encode_events(std::slice::from_ref(&now)).expect("encode");
        assert_eq!(record[0], FORMAT_COLUMNS);
        assert_eq!(decode_events(&record).expect("decode"), vec![now.clone()]);
        // Format 2 records, written before the columns, read as they were written.
        let record = pack(FORMAT_V2, &vec![now.clone()]).expect("encode");
        assert_eq!(decode_events(&record).expect("decode"), vec![now]);
    }

    proptest::proptest! {
        #[test]
        fn dedup_chunks_read_back_their_entries_sorted(
            entries in proptest::collection::vec((proptest::prelude::any::<u64>(), 0u32..200_000), 0..300),
            repeat in 0usize..300,
            since in 0u32..200_000,
        ) {
            let mut entries = entries;
            if let Some(&e) = entries.get(repeat) {
                entries.push(e);
                entries.push((e.0, e.1 / 2));
            }
            let bytes = encode_dedup_chunk(&entries);
            proptest::prop_assert!(!bytes.len().is_multiple_of(12) || bytes.is_empty());
            let mut want: Vec<(u64, u32)> = entries.iter().copied().filter(|e| e.1 >= since).collect();
            want.sort_unstable();
            want.dedup();
            let mut got = Vec::new();
            decode_dedup_chunk(&bytes, since, &mut got).expect("decode");
            proptest::prop_assert_eq!(got, want);
        }
    }

    /// The bit layout, worked by hand: fingerprints 10, 13, 20 (deltas 3 and 7: 3 bits each)
    /// seen at 100, 101, 103 (offsets 0, 1, 3: 2 bits each). Bits 0–2 hold 3, bits 3–5 hold 7,
    /// bits 6–7 hold 0, bits 8–9 hold 1 and bits 10–11 hold 3: bytes 0b0011_1011, 0b0000_1101.
    #[test]
    fn a_dedup_chunk_lays_its_bits_out_least_significant_first() {
        let mut want = vec![
            0xD2, 3, 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 3, 100, 0, 0, 0, 2,
        ];
        want.extend_from_slice(&[0x3B, 0x0D]);
        assert_eq!(encode_dedup_chunk(&[(13, 101), (10, 100), (20, 103)]), want);
    }

    proptest::proptest! {
        /// Entries of any widths (fingerprint gaps and second spreads drawn at every scale)
        /// pack exactly as setting each value's bits one by one, least significant first, from
        /// bit 0 of the first byte after the header, with widths taken from the largest gap
        /// and offset, and one zero byte of padding when the length is a multiple of 12.
        #[test]
        fn dedup_chunk_bits_are_each_values_bits_in_order(
            gap_bits in 0u32..=50,
            gaps in proptest::collection::vec(proptest::prelude::any::<u64>(), 1..200),
            second_bits in 0u32..=31,
            seconds in proptest::collection::vec(proptest::prelude::any::<u32>(), 200),
            first in 0u64..(1 << 50),
        ) {
            let mut fp = first;
            let entries: Vec<(u64, u32)> = gaps
                .iter()
                .zip(&seconds)
                .map(|(gap, s)| {
                    fp += 1 + (gap & ((1u64 << gap_bits) - 1));
                    (fp, 1_000 + (s & ((1u32 << second_bits) - 1)))
                })
                .collect();
            let bytes = encode_dedup_chunk(&entries);
            let width = |max: u64| (64 - max.leading_zeros()) as u8;
            let fp_bits = width(entries.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap_or(0));
            let min_s = entries.iter().map(|e| e.1).min().expect("entries");
            let s_bits = width(entries.iter().map(|e| u64::from(e.1 - min_s)).max().unwrap_or(0));
            proptest::prop_assert_eq!((bytes[13], bytes[18]), (fp_bits, s_bits));
            let mut values: Vec<(u64, u8)> =
                entries.windows(2).map(|w| (w[1].0 - w[0].0, fp_bits)).collect();
            values.extend(entries.iter().map(|e| (u64::from(e.1 - min_s), s_bits)));
            let bits: usize = values.iter().map(|(_, w)| usize::from(*w)).sum();
            let mut payload = vec![0u8; bits.div_ceil(8)];
            if (19 + payload.len()).is_multiple_of(12) {
                payload.push(0);
            }
            let mut at = 0usize;
            for (value, width) in values {
                for bit in 0..usize::from(width) {
                    if value >> bit & 1 == 1 {
                        payload[(at + bit) / 8] |= 1 << ((at + bit) % 8);
                    }
                }
                at += usize::from(width);
            }
            proptest::prop_assert_eq!(&bytes[19..], &payload[..]);
        }
    }

    /// A set bit after the last entry is refused, also when the reader has read it ahead as
    /// part of a later 64-bit word: 40 fingerprints 5 apart in one second are 39 × 3 bits,
    /// 15 bytes, the last with 3 bits unused.
    #[test]
    fn a_set_bit_after_a_long_chunks_entries_is_refused() {
        let entries: Vec<(u64, u32)> = (0..40u64).map(|i| (i * 5, 7)).collect();
        let mut bytes = encode_dedup_chunk(&entries);
        assert_eq!(bytes.len(), 19 + 15);
        let mut got = Vec::new();
        decode_dedup_chunk(&bytes, 0, &mut got).expect("decode");
        assert_eq!(got, entries);
        *bytes.last_mut().expect("bytes") |= 0x80;
        assert!(decode_dedup_chunk(&bytes, 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_sorted_block_packs_to_about_eight_bytes_an_entry_and_raw_chunks_still_read() {
        // 1,024 consecutive fingerprints of a generation of 500,000 (evenly spread, as hashes
        // are), seen within a day: deltas of ~2^64 / 500,000 (3.7 · 10^13) need 46 bits, seconds 17.
        let step = u64::MAX / 500_000;
        let entries: Vec<(u64, u32)> = (0..1024u64)
            .map(|i| {
                (
                    i * step + (i * 7919) % 1000,
                    1_000_000 + (i * 97 % 86_400) as u32,
                )
            })
            .collect();
        let bytes = encode_dedup_chunk(&entries);
        assert_eq!(bytes[13], 46, "delta width");
        assert_eq!(bytes[18], 17, "offset width");
        assert_eq!(bytes.len(), 19 + (1023 * 46 + 1024 * 17usize).div_ceil(8));
        assert!(bytes.len() < 1024 * 8, "{}", bytes.len());
        let mut got = Vec::new();
        decode_dedup_chunk(&bytes, 0, &mut got).expect("decode");
        assert_eq!(got, entries);
        // The format before: 12 raw bytes an entry, in any order.
        let mut raw = Vec::new();
        for (fp, s) in [(9u64, 5u32), (3, 7)] {
            raw.extend_from_slice(&fp.to_le_bytes());
            raw.extend_from_slice(&s.to_le_bytes());
        }
        let mut got = Vec::new();
        decode_dedup_chunk(&raw, 6, &mut got).expect("decode");
        assert_eq!(got, vec![(3, 7)]);
        // Lies about the count, the widths or the length are refused.
        let one = encode_dedup_chunk(&[(1, 1), (2, 2)]);
        for (at, value) in [(1, 9u8), (13, 65), (18, 33)] {
            let mut bad = one.clone();
            bad[at] = value;
            assert!(
                decode_dedup_chunk(&bad, 0, &mut Vec::new()).is_err(),
                "byte {at} = {value}"
            );
        }
        let mut longer = one.clone();
        longer.push(0);
        assert!(decode_dedup_chunk(&longer, 0, &mut Vec::new()).is_err());
        // Bits the encoder leaves zero (unused high bits, the padding byte) must be zero.
        let mut high = one.clone();
        *high.last_mut().expect("bytes") |= 0x80;
        assert!(decode_dedup_chunk(&high, 0, &mut Vec::new()).is_err());
        // Two entries one 2^35 apart in the same second: a 36-bit delta, 5 bytes after the
        // 19-byte header, 24 in all, so one zero byte of padding.
        let mut padded = encode_dedup_chunk(&[(0, 7), (1 << 35, 7)]);
        assert_eq!(padded.len(), 25);
        let mut got = Vec::new();
        decode_dedup_chunk(&padded, 0, &mut got).expect("decode");
        assert_eq!(got, vec![(0, 7), (1 << 35, 7)]);
        padded[24] = 1;
        assert!(decode_dedup_chunk(&padded, 0, &mut Vec::new()).is_err());
        // widths 0 and 0 for more than one entry would claim entries from no bytes
        let mut zero = encode_dedup_chunk(&[(5, 5)]);
        zero[1] = 2;
        assert!(decode_dedup_chunk(&zero, 0, &mut Vec::new()).is_err());
    }
}
