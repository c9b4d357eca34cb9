//! One Kafka message per usage event (or per score): the headers that carry its schema and its
//! cost, reading a message back into an event or a score, and a message's fingerprint. A
//! message without a schema header is a usage event (what applications producing straight to
//! the topic send); scores always carry `tally-schema: score/1`.

use rdkafka::message::{Header, Message, OwnedHeaders};
use tally_domain::store::{StoreError, StoreResult};
use tally_schemas::event::Cost;
use tally_schemas::{Limits, Score, ScoreV1, UsageEvent, UsageEventV1};

pub(super) const COST_HEADER: &str = "tally-cost";

pub(super) const SCHEMA_HEADER: &str = "tally-schema";

pub(super) const SCHEMA_VALUE: &str = "usage-event/1";

pub(super) const SCORE_SCHEMA_VALUE: &str = "score/1";

/// A message's [`LogRecord::fingerprint`]: its key, timestamp and value. Another message at
/// the same offset (a recreated topic) differs in one of them unless it is a faithful copy.
pub(super) fn fingerprint<M: Message>(m: &M) -> u64 {
    let mut hash = xxhash_rust::xxh3::Xxh3::new();
    for part in [m.key(), m.payload()] {
        let bytes = part.unwrap_or_default();
        hash.update(&(bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    hash.update(&m.timestamp().to_millis().unwrap_or(0).to_le_bytes());
    hash.digest()
}

/// The message for one event: its value and headers.
pub(super) fn encode_message(event: &UsageEvent) -> StoreResult<(Vec<u8>, OwnedHeaders)> {
    let value = serde_json::to_vec(&UsageEventV1::from(event))
        .map_err(|e| StoreError::Backend(format!("encode event: {e}")))?;
    let cost = match event.cost {
        Cost::Computed(p) => Some(format!("computed:{p}")),
        Cost::Unpriced => Some("unpriced".to_string()),
        Cost::Reported(_) | Cost::Pending => None,
    };
    let mut headers = OwnedHeaders::new().insert(Header {
        key: SCHEMA_HEADER,
        value: Some(SCHEMA_VALUE),
    });
    if let Some(cost) = &cost {
        headers = headers.insert(Header {
            key: COST_HEADER,
            value: Some(cost.as_str()),
        });
    }
    Ok((value, headers))
}

/// The event in one message, or why it is not one.
pub fn decode_message(
    value: Option<&[u8]>,
    cost_header: Option<&[u8]>,
    timestamp_ms: i64,
    limits: &Limits,
) -> Result<UsageEvent, String> {
    let value = value.ok_or("empty message")?;
    let wire: UsageEventV1 = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    let at = chrono::DateTime::from_timestamp_millis(timestamp_ms).ok_or("bad timestamp")?;
    let mut event = tally_schemas::validate::validate(wire, limits, at)
        .map_err(|e| format!("{}: {}", e.field, e.reason))?;
    if event.cost == Cost::Pending {
        match cost_header.map(std::str::from_utf8) {
            None => {}
            Some(Ok("unpriced")) => event.cost = Cost::Unpriced,
            Some(Ok(text)) => {
                let picos = text
                    .strip_prefix("computed:")
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| format!("{COST_HEADER} header {text:?} is not understood"))?;
                event.cost = Cost::Computed(picos);
            }
            Some(Err(_)) => return Err(format!("{COST_HEADER} header is not UTF-8")),
        }
    }
    Ok(event)
}

/// The message for one score: its value (the score's JSON) and headers.
pub(super) fn encode_score_message(score: &Score) -> StoreResult<(Vec<u8>, OwnedHeaders)> {
    let value = serde_json::to_vec(&ScoreV1::from(score))
        .map_err(|e| StoreError::Backend(format!("encode score: {e}")))?;
    let headers = OwnedHeaders::new().insert(Header {
        key: SCHEMA_HEADER,
        value: Some(SCORE_SCHEMA_VALUE),
    });
    Ok((value, headers))
}

/// The score in one message, or why it is not one.
pub fn decode_score_message(value: Option<&[u8]>) -> Result<Score, String> {
    let value = value.ok_or("empty message")?;
    let wire: ScoreV1 = serde_json::from_slice(value).map_err(|e| e.to_string())?;
    tally_schemas::score::validate_score(wire).map_err(|e| format!("{}: {}", e.field, e.reason))
}
