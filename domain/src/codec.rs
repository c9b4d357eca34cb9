//! Binary form of an event-log record: the record's events (or scores), postcard-encoded,
//! LZ4-compressed.
//!
//! The first byte is a format version so old logs stay readable when the event type grows:
//! version 1 is the event before `error_message` (read into today's event with no message),
//! version 2 today's event; events are always written in the newest event version. A record
//! of scores (`POST /v1/scores`) is format 3: the record's scores, postcard-encoded,
//! LZ4-compressed. A log record holds events or scores, never both ([`decode_record`]); the
//! next version of the event must take format 4.
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

pub fn encode_events(events: &[UsageEvent]) -> Result<Vec<u8>, StoreError> {
    pack(FORMAT_V2, &events)
}

pub fn decode_events(bytes: &[u8]) -> Result<Vec<UsageEvent>, StoreError> {
    match bytes.split_first() {
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

/// Binary form of a dedup chunk, shared by every analytics store: per entry an 8-byte
/// fingerprint and the 4-byte second it was first seen, little-endian (12 bytes per event).
pub fn encode_dedup_chunk(entries: &[(u64, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 12);
    for (fp, s) in entries {
        out.extend_from_slice(&fp.to_le_bytes());
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Appends the entries of a chunk seen at or after `since_s` to `out`.
pub fn decode_dedup_chunk(
    bytes: &[u8],
    since_s: u32,
    out: &mut Vec<(u64, u32)>,
) -> Result<(), StoreError> {
    if !bytes.len().is_multiple_of(12) {
        return Err(StoreError::Corrupt("dedup chunk length".into()));
    }
    for c in bytes.chunks_exact(12) {
        let fp = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let s = u32::from_le_bytes([c[8], c[9], c[10], c[11]]);
        if s >= since_s {
            out.push((fp, s));
        }
    }
    Ok(())
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
        assert_eq!(record[0], FORMAT_V2);
        assert_eq!(decode_events(&record).expect("decode"), vec![now]);
    }
}
