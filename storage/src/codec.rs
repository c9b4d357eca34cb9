//! Binary form of an event-log record: the record's events, postcard-encoded, LZ4-compressed.
//!
//! The first byte is a format version so old logs stay readable when the event type grows.

use tally_schemas::UsageEvent;

use tally_domain::store::StoreError;

const FORMAT_V1: u8 = 1;

pub fn encode_events(events: &[UsageEvent]) -> Result<Vec<u8>, StoreError> {
    let plain =
        postcard::to_stdvec(events).map_err(|e| StoreError::Backend(format!("encode: {e}")))?;
    let mut out = Vec::with_capacity(plain.len() / 3 + 8);
    out.push(FORMAT_V1);
    out.extend_from_slice(&lz4_flex::compress_prepend_size(&plain));
    Ok(out)
}

pub fn decode_events(bytes: &[u8]) -> Result<Vec<UsageEvent>, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => {
            let plain = lz4_flex::decompress_size_prepended(rest)
                .map_err(|e| StoreError::Corrupt(format!("log record: {e}")))?;
            postcard::from_bytes(&plain)
                .map_err(|e| StoreError::Corrupt(format!("log record: {e}")))
        }
        Some((v, _)) => Err(StoreError::Corrupt(format!(
            "unknown log record format {v}"
        ))),
        None => Err(StoreError::Corrupt("empty log record".into())),
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
