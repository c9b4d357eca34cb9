//! Binary form of an event-log record: the record's events, postcard-encoded, LZ4-compressed.
//!
//! The first byte is a format version so old logs stay readable when the event type grows.

use tally_schemas::UsageEvent;

use crate::store::StoreError;

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
