//! Turning a request body into validated events.
//!
//! A body is a JSON array of events (or of scores, [`crate::score`]) or NDJSON (one per line). The body as a whole is
//! rejected only when it cannot be split into events at all (not JSON, not an array, too many
//! events); otherwise every event is judged on its own and the good ones are kept, so one bad
//! event never costs a client the rest of its batch. Each rejection names the event's index
//! (0-based position in the batch), the field and the reason.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::{Cost, UsageEvent};
use crate::money::Pico;
use crate::wire::UsageEventV1;

/// Bounds applied to every batch.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most events in one request.
    pub max_events: usize,
    /// Events older than this (relative to `now`) are rejected.
    pub retention: Duration,
    /// Events further than this in the future are rejected.
    pub max_future_skew: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events: 10_000,
            retention: Duration::days(90),
            max_future_skew: Duration::minutes(5),
        }
    }
}

/// Body format, chosen by Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    JsonArray,
    Ndjson,
}

/// Why a whole body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is not valid JSON: {0}")]
    Malformed(String),
    #[error("request body must be a JSON array of objects (or NDJSON with Content-Type application/x-ndjson)")]
    NotAnArray,
    #[error("request body holds {count} items; at most {max} are accepted per request")]
    TooManyEvents { count: usize, max: usize },
    #[error("request body holds nothing: send at least one item")]
    Empty,
    #[error("request body is not UTF-8")]
    NotUtf8,
}

/// One rejected event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct EventError {
    pub index: usize,
    /// The offending field (`null` when the event as a whole is unreadable).
    pub field: Option<String>,
    pub reason: String,
}

/// The outcome of parsing a body: events that passed and the rejections.
#[derive(Debug, Default)]
pub struct BatchParse {
    /// Accepted events with the batch index they came from; cost is `Reported` or `Pending`.
    pub events: Vec<(usize, UsageEvent)>,
    pub errors: Vec<EventError>,
}

/// Parses and validates a body. `now` is injected so window rules are testable.
pub fn parse_batch(
    body: &[u8],
    format: BodyFormat,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<BatchParse, BodyError> {
    let parsed = parse_items(body, format, limits.max_events, "usage event v1", |wire| {
        validate(wire, limits, now)
    })?;
    Ok(BatchParse {
        events: parsed.accepted,
        errors: parsed.errors,
    })
}

/// Splits a body into its items (a JSON array or NDJSON), parses each as `W` (unknown fields
/// are named as not fields of `kind`) and validates it with `check`: the accepted items with
/// their batch index, and one error per rejected item. The body as a whole is refused only
/// when it cannot be split (not UTF-8, not JSON, not an array, empty, more than `max` items).
pub fn parse_items<W: serde::de::DeserializeOwned, T>(
    body: &[u8],
    format: BodyFormat,
    max: usize,
    kind: &str,
    check: impl Fn(W) -> Result<T, FieldError>,
) -> Result<Parsed<T>, BodyError> {
    let text = std::str::from_utf8(body).map_err(|_| BodyError::NotUtf8)?;
    if matches!(format, BodyFormat::JsonArray) {
        // Fast path: an array whose every item reads as `W` is read in one pass (splitting
        // first was a seventh of the time). Any other body is split below, where each item
        // that does not read is named with its index and field; the outcome is the same.
        if let Ok(wires) = serde_json::from_str::<Vec<Object<W>>>(text) {
            return checked(wires.into_iter().map(|o| Ok(o.0)), max, check);
        }
    }
    let items: Vec<Result<&str, String>> = match format {
        BodyFormat::JsonArray => split_array(text)?,
        BodyFormat::Ndjson => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(Ok)
            .collect(),
    };
    let items = items.into_iter().enumerate().map(|(index, item)| {
        item.map_err(|reason| EventError {
            index,
            field: None,
            reason,
        })
        .and_then(|raw| parse_one::<W>(raw, index, kind))
    });
    checked(items, max, check)
}

/// An item read only from a JSON object (serde's derived structs also read arrays of their
/// fields in order, which the API does not accept).
struct Object<W>(W);

impl<'de, W: serde::Deserialize<'de>> serde::Deserialize<'de> for Object<W> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields<W>(std::marker::PhantomData<W>);
        impl<'de, W: serde::Deserialize<'de>> serde::de::Visitor<'de> for Fields<W> {
            type Value = Object<W>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Object<W>, A::Error> {
                W::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Object)
            }
        }
        d.deserialize_map(Fields(std::marker::PhantomData))
    }
}

/// Checks the items read (in batch order) that are not already refused; refuses the body
/// when there are none or more than `max`.
fn checked<W, T>(
    items: impl ExactSizeIterator<Item = Result<W, EventError>>,
    max: usize,
    check: impl Fn(W) -> Result<T, FieldError>,
) -> Result<Parsed<T>, BodyError> {
    if items.len() == 0 {
        return Err(BodyError::Empty);
    }
    if items.len() > max {
        return Err(BodyError::TooManyEvents {
            count: items.len(),
            max,
        });
    }
    let mut accepted = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.enumerate() {
        match item.and_then(|wire| check(wire).map_err(|e| e.at(index))) {
            Ok(item) => accepted.push((index, item)),
            Err(err) => errors.push(err),
        }
    }
    Ok(Parsed { accepted, errors })
}

/// What [`parse_items`] made of a body: the accepted items with their batch index, and one
/// error per rejected item.
#[derive(Debug)]
pub struct Parsed<T> {
    pub accepted: Vec<(usize, T)>,
    pub errors: Vec<EventError>,
}

fn split_array(text: &str) -> Result<Vec<Result<&str, String>>, BodyError> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('[') {
        // Distinguish "valid JSON of the wrong shape" from "not JSON".
        return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
            Ok(_) => Err(BodyError::NotAnArray),
            Err(e) => Err(BodyError::Malformed(e.to_string())),
        };
    }
    let raws: Vec<&RawValue> =
        serde_json::from_str(text).map_err(|e| BodyError::Malformed(e.to_string()))?;
    Ok(raws.into_iter().map(|r| Ok(r.get())).collect())
}

fn parse_one<W: serde::de::DeserializeOwned>(
    raw: &str,
    index: usize,
    kind: &str,
) -> Result<W, EventError> {
    if !raw.trim_start().starts_with('{') {
        return Err(EventError {
            index,
            field: None,
            reason: "must be a JSON object".to_string(),
        });
    }
    // Fast path: most events are fine. Only a failed event is parsed again with path tracking,
    // which is what names the offending field.
    if let Ok(event) = serde_json::from_str(raw) {
        return Ok(event);
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let reason = strip_position(&err.inner().to_string());
        let (field, reason) = match missing_field(&reason) {
            Some(name) => (Some(name.to_string()), "is required".to_string()),
            None => match unknown_field(&reason) {
                Some(name) => (Some(name.to_string()), format!("is not a field of {kind}")),
                None if path == "." => (None, reason),
                None => (Some(path), reason),
            },
        };
        EventError {
            index,
            field,
            reason,
        }
    })
}

/// serde_json appends " at line L column C"; the position inside one event is noise here.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(pos) => message[..pos].to_string(),
        None => message.to_string(),
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// A field-level rule violation, before the batch index is known.
#[derive(Debug)]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        FieldError {
            field,
            reason: reason.into(),
        }
    }

    fn at(self, index: usize) -> EventError {
        EventError {
            index,
            field: Some(self.field.to_string()),
            reason: self.reason,
        }
    }
}

/// Longest accepted `latency_ms`: one day.
const MAX_LATENCY_MS: f64 = 86_400_000.0;
/// Largest accepted token count per field.
const MAX_TOKENS: u64 = 1_000_000_000;
const MAX_ATTRIBUTES: usize = 32;

/// Applies the schema v1 rules to one parsed event.
pub fn validate(
    wire: UsageEventV1,
    limits: &Limits,
    now: DateTime<Utc>,
) -> Result<UsageEvent, FieldError> {
    if let Some(v) = wire.schema_version {
        if v != 1 {
            return Err(FieldError::new(
                "schema_version",
                format!("version {v} is not supported; this server reads version 1"),
            ));
        }
    }
    check_text("event_id", &wire.event_id, 128)?;
    if wire.occurred_at > now + limits.max_future_skew {
        return Err(FieldError::new(
            "occurred_at",
            format!(
                "is more than {} minutes in the future",
                limits.max_future_skew.num_minutes()
            ),
        ));
    }
    if wire.occurred_at < now - limits.retention {
        return Err(FieldError::new(
            "occurred_at",
            format!(
                "is older than the retention window ({} days)",
                limits.retention.num_days()
            ),
        ));
    }
    check_slug("feature", &wire.feature)?;
    check_slug("model", &wire.model)?;
    check_slug("provider", &wire.provider)?;
    if !wire.latency_ms.is_finite() || wire.latency_ms < 0.0 {
        return Err(FieldError::new(
            "latency_ms",
            "must be a non-negative number",
        ));
    }
    if wire.latency_ms > MAX_LATENCY_MS {
        return Err(FieldError::new(
            "latency_ms",
            "must be at most 86400000 (one day)",
        ));
    }
    for (field, value) in [
        ("input_tokens", wire.input_tokens),
        ("output_tokens", wire.output_tokens),
    ] {
        if value > MAX_TOKENS {
            return Err(FieldError::new(field, "must be at most 1000000000"));
        }
    }
    let cached = wire.cached_input_tokens.unwrap_or(0);
    if cached > wire.input_tokens {
        return Err(FieldError::new(
            "cached_input_tokens",
            "must not exceed input_tokens (cached tokens are counted inside input_tokens)",
        ));
    }
    let cost = match &wire.cost_usd {
        None => Cost::Pending,
        Some(raw) => {
            let text = raw
                .decimal_text()
                .map_err(|r| FieldError::new("cost_usd", r))?;
            let pico =
                Pico::parse_usd(&text).map_err(|e| FieldError::new("cost_usd", e.to_string()))?;
            Cost::Reported(
                i64::try_from(pico.0).map_err(|_| FieldError::new("cost_usd", "is too large"))?,
            )
        }
    };
    check_opt("error_type", wire.error_type.as_deref(), 128)?;
    let (error_message, cut) = match wire.error_message {
        // An empty message is no message.
        Some(text) if !text.is_empty() => {
            let (kept, cut) = truncate_message(text);
            (Some(kept), cut)
        }
        _ => (None, false),
    };
    check_opt("user_id", wire.user_id.as_deref(), 256)?;
    check_opt("prompt_id", wire.prompt_id.as_deref(), 128)?;
    check_opt(
        "prompt_version",
        wire.prompt_version.as_ref().map(|v| v.0.as_str()),
        64,
    )?;
    check_opt("experiment_id", wire.experiment_id.as_deref(), 128)?;
    check_opt("variant", wire.variant.as_deref(), 128)?;
    let attributes = check_attributes(wire.attributes.unwrap_or_default())?;
    Ok(UsageEvent {
        event_id: wire.event_id,
        occurred_at_us: wire.occurred_at.timestamp_micros(),
        feature: wire.feature,
        model: wire.model,
        provider: wire.provider,
        environment: wire.environment,
        operation: wire.operation,
        status: wire.status,
        error_type: wire.error_type,
        error_message,
        error_message_truncated: cut || wire.error_message_truncated == Some(true),
        latency_us: (wire.latency_ms * 1000.0).round() as u64,
        input_tokens: wire.input_tokens,
        output_tokens: wire.output_tokens,
        cached_input_tokens: cached,
        cost,
        user_id: wire.user_id,
        prompt_id: wire.prompt_id,
        prompt_version: wire.prompt_version.map(|v| v.0),
        experiment_id: wire.experiment_id,
        variant: wire.variant,
        attributes,
    })
}

pub fn check_text(field: &'static str, value: &str, max_chars: usize) -> Result<(), FieldError> {
    if value.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if value.chars().count() > max_chars {
        return Err(FieldError::new(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// The most of an `error_message` kept, in bytes of UTF-8.
pub const ERROR_MESSAGE_BYTES: usize = 1024;

/// `text` cut to at most [`ERROR_MESSAGE_BYTES`] bytes at a character boundary, and whether
/// it was cut.
pub fn truncate_message(mut text: String) -> (String, bool) {
    if text.len() <= ERROR_MESSAGE_BYTES {
        return (text, false);
    }
    let mut end = ERROR_MESSAGE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    (text, true)
}

fn check_opt(field: &'static str, value: Option<&str>, max_chars: usize) -> Result<(), FieldError> {
    value.map_or(Ok(()), |v| check_text(field, v, max_chars))
}

/// Slugs: 1–128 characters of `a-z 0-9 - _ . : /`, starting with a letter or digit (as the
/// contract states it: [`crate::wire::SLUG_PATTERN`]).
pub fn check_slug(field: &'static str, value: &str) -> Result<(), FieldError> {
    if value.is_empty() || value.len() > 128 {
        return Err(FieldError::new(field, "must be 1 to 128 characters"));
    }
    // Every character allowed is ASCII, so a byte outside the set (a UTF-8 lead or
    // continuation byte included) is a character outside it.
    let first_ok = matches!(value.as_bytes()[0], b'a'..=b'z' | b'0'..=b'9');
    let ok_byte = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b':' | b'/');
    if !first_ok || !value.bytes().all(ok_byte) {
        return Err(FieldError::new(
            field,
            "must be a slug: lowercase letters, digits and - _ . : /, starting with a letter or digit",
        ));
    }
    Ok(())
}

fn check_attributes(
    map: std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, FieldError> {
    if map.len() > MAX_ATTRIBUTES {
        return Err(FieldError::new(
            "attributes",
            format!("must have at most {MAX_ATTRIBUTES} entries"),
        ));
    }
    for (k, v) in &map {
        if k.is_empty() || k.chars().count() > 64 {
            return Err(FieldError::new(
                "attributes",
                "keys must be 1 to 64 characters",
            ));
        }
        if v.chars().count() > 512 {
            return Err(FieldError::new(
                "attributes",
                "values must be at most 512 characters",
            ));
        }
    }
    Ok(map.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Environment, Status};
    use proptest::prelude::*;

    proptest! {
        /// The documented slug pattern and the server's check agree on every string.
        #[test]
        fn the_slug_pattern_is_check_slug(
            text in prop_oneof!["[a-zA-Z0-9._:/ -]{0,130}", "[a-z0-9-]{0,3}\\PC{0,3}[a-z0-9-]{0,3}"]
        ) {
            let documented = regex::Regex::new(crate::wire::SLUG_PATTERN).expect("a regex");
            prop_assert_eq!(documented.is_match(&text), check_slug("name", &text).is_ok());
        }

        /// The documented text fields' pattern refuses exactly the control characters.
        #[test]
        fn the_text_pattern_refuses_control_characters(c in any::<char>()) {
            let documented = crate::wire::tests_support::no_control();
            prop_assert_eq!(documented.is_match(&c.to_string()), !c.is_control());
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T12:00:00Z")
            .map(|d| d.with_timezone(&Utc))
            .expect("valid")
    }

    fn good() -> serde_json::Value {
        serde_json::json!({
            "event_id": "e-1", "occurred_at": "2026-03-01T11:59:00Z", "feature": "chatbot",
            "model": "gpt-4o", "provider": "openai", "environment": "production",
            "operation": "chat", "status": "success", "latency_ms": 812.5,
            "input_tokens": 1200, "output_tokens": 300, "cached_input_tokens": 200
        })
    }

    fn parse(events: &[serde_json::Value]) -> BatchParse {
        let body = serde_json::to_vec(events).expect("json");
        parse_batch(&body, BodyFormat::JsonArray, &Limits::default(), now()).expect("body ok")
    }

    fn one_error(
        mut event: serde_json::Value,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> EventError {
        edit(&mut event);
        let out = parse(&[event]);
        assert!(out.events.is_empty(), "expected rejection");
        out.errors.into_iter().next().expect("one error")
    }

    #[test]
    fn accepts_a_good_event() {
        let out = parse(&[good()]);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let (_, e) = &out.events[0];
        assert_eq!(e.latency_us, 812_500);
        assert_eq!(e.cached_input_tokens, 200);
        assert_eq!(e.environment, Environment::Production);
        assert_eq!(e.status, Status::Success);
        assert_eq!(e.cost, Cost::Pending);
        assert_eq!(e.occurred_at_us, now().timestamp_micros() - 60_000_000);
    }

    #[test]
    fn error_messages_are_kept_to_one_kibibyte_at_a_character_boundary() {
        let with = |message: &str, flag: Option<bool>| {
            let mut e = good();
            e["status"] = serde_json::json!("error");
            e["error_message"] = serde_json::json!(message);
            if let Some(flag) = flag {
                e["error_message_truncated"] = serde_json::json!(flag);
            }
            let out = parse(&[e]);
            assert!(out.errors.is_empty(), "{:?}", out.errors);
            let (_, event) = out.events.into_iter().next().expect("one event");
            (
                event.error_message.expect("a message"),
                event.error_message_truncated,
            )
        };
        // Exactly 1024 bytes, with a newline: kept whole.
        let exact = format!("line one\n{}", "x".repeat(1015));
        assert_eq!(exact.len(), 1024);
        assert_eq!(with(&exact, None), (exact.clone(), false));
        // 600 two-byte characters (1200 bytes): the first 512 (1024 bytes) are kept.
        let (kept, cut) = with(&"é".repeat(600), None);
        assert_eq!((kept, cut), ("é".repeat(512), true));
        // A three-byte character straddling byte 1024 is left out whole: 1023 + 3 bytes.
        let (kept, cut) = with(&format!("{}€tail", "a".repeat(1023)), None);
        assert_eq!((kept.len(), cut), (1023, true));
        // A sender that already cut its message says so, and that is kept.
        assert_eq!(with("short", Some(true)), ("short".to_string(), true));
        assert_eq!(with("short", Some(false)), ("short".to_string(), false));
    }

    #[test]
    fn keeps_cost_exactly_from_number_or_string() {
        let mut a = good();
        a["cost_usd"] = serde_json::from_str("0.1000000000015").expect("num");
        let out = parse(&[a]);
        assert_eq!(out.errors[0].field.as_deref(), Some("cost_usd"));
        let mut b = good();
        b["cost_usd"] = serde_json::json!("0.123456789012");
        let mut c = good();
        c["cost_usd"] = serde_json::from_str("0.30000000000000004").unwrap_or_default();
        let body = r#"[{"event_id":"x","occurred_at":"2026-03-01T11:59:00Z","feature":"f","model":"m","provider":"p","environment":"staging","operation":"chat","status":"error","latency_ms":1,"input_tokens":0,"output_tokens":0,"cost_usd":0.1}]"#;
        let out = parse_batch(
            body.as_bytes(),
            BodyFormat::JsonArray,
            &Limits::default(),
            now(),
        )
        .expect("ok");
        assert_eq!(out.events[0].1.cost, Cost::Reported(100_000_000_000));
        let out = parse(&[b]);
        assert_eq!(out.events[0].1.cost, Cost::Reported(123_456_789_012));
        let _ = c;
    }

    #[test]
    fn names_the_field_and_reason() {
        let e = one_error(good(), |v| {
            v.as_object_mut().map(|o| o.remove("feature"));
        });
        assert_eq!(
            (e.field.as_deref(), e.reason.as_str()),
            (Some("feature"), "is required")
        );
        let e = one_error(good(), |v| v["environment"] = "prod".into());
        assert_eq!(e.field.as_deref(), Some("environment"));
        assert!(e.reason.contains("unknown variant"), "{}", e.reason);
        let e = one_error(good(), |v| v["input_tokens"] = (-3).into());
        assert_eq!(e.field.as_deref(), Some("input_tokens"));
        let e = one_error(good(), |v| v["latencyMs"] = 3.into());
        assert_eq!(e.field.as_deref(), Some("latencyMs"));
        let e = one_error(good(), |v| v["cached_input_tokens"] = 5000.into());
        assert_eq!(e.field.as_deref(), Some("cached_input_tokens"));
        let e = one_error(good(), |v| v["model"] = "GPT 4".into());
        assert_eq!(e.field.as_deref(), Some("model"));
        let e = one_error(good(), |v| v["event_id"] = "x".repeat(129).into());
        assert_eq!(e.field.as_deref(), Some("event_id"));
        let e = one_error(good(), |v| v["cost_usd"] = "-0.5".into());
        assert_eq!(
            (e.field.as_deref(), e.reason.as_str()),
            (Some("cost_usd"), "must not be negative")
        );
    }

    #[test]
    fn enforces_the_time_window() {
        let e = one_error(good(), |v| v["occurred_at"] = "2026-03-01T12:06:00Z".into());
        assert!(e.reason.contains("future"), "{}", e.reason);
        let e = one_error(good(), |v| v["occurred_at"] = "2025-11-01T12:00:00Z".into());
        assert!(e.reason.contains("retention"), "{}", e.reason);
        let ok = parse(&[{
            let mut g = good();
            g["occurred_at"] = "2026-03-01T12:04:59Z".into();
            g
        }]);
        assert_eq!(ok.events.len(), 1);
    }

    #[test]
    fn mixed_batches_keep_the_good_events() {
        let mut bad = good();
        bad["status"] = "weird".into();
        let out = parse(&[good(), bad, good()]);
        assert_eq!(
            out.events.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(out.errors.len(), 1);
        assert_eq!(out.errors[0].index, 1);
    }

    #[test]
    fn ndjson_and_body_errors() {
        let line = serde_json::to_string(&good()).expect("json");
        let body = format!("{line}\n\n{{not json\n{line}\n");
        let out = parse_batch(
            body.as_bytes(),
            BodyFormat::Ndjson,
            &Limits::default(),
            now(),
        )
        .expect("ok");
        assert_eq!(out.events.len(), 2);
        assert_eq!(out.errors[0].index, 1);
        assert!(matches!(
            parse_batch(
                b"{\"a\":1}",
                BodyFormat::JsonArray,
                &Limits::default(),
                now()
            ),
            Err(BodyError::NotAnArray)
        ));
        assert!(matches!(
            parse_batch(b"[1,", BodyFormat::JsonArray, &Limits::default(), now()),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            parse_batch(b"[]", BodyFormat::JsonArray, &Limits::default(), now()),
            Err(BodyError::Empty)
        ));
        let limits = Limits {
            max_events: 1,
            ..Limits::default()
        };
        let body = serde_json::to_vec(&[good(), good()]).expect("json");
        assert!(matches!(
            parse_batch(&body, BodyFormat::JsonArray, &limits, now()),
            Err(BodyError::TooManyEvents { count: 2, max: 1 })
        ));
        let out = parse_batch(
            b"[1, {\"event_id\": 3}]",
            BodyFormat::JsonArray,
            &Limits::default(),
            now(),
        )
        .expect("ok");
        assert_eq!(out.errors.len(), 2);
        assert_eq!(out.errors[0].reason, "must be a JSON object");
    }

    /// serde's derived struct also reads an array of its fields in order; an event sent that
    /// way is refused, whether the rest of the batch is fine (read in one pass) or not.
    #[test]
    fn an_event_as_an_array_of_its_fields_is_refused() {
        let positional = serde_json::json!([
            null,
            "e-2",
            "2026-03-01T11:59:00Z",
            "chatbot",
            "gpt-4o",
            "openai",
            "production",
            "chat",
            "success",
            null,
            null,
            null,
            812.5,
            1200,
            300
        ]);
        assert!(
            serde_json::from_value::<UsageEventV1>(positional.clone()).is_ok(),
            "the derived struct reads it"
        );
        let out = parse(&[good(), positional.clone()]);
        assert_eq!(out.events.len(), 1);
        assert_eq!(
            out.errors,
            vec![EventError {
                index: 1,
                field: None,
                reason: "must be a JSON object".into()
            }]
        );
        let mut bad = good();
        bad["latency_ms"] = serde_json::json!(-1);
        let out = parse(&[positional, good(), bad]);
        assert_eq!(out.events.iter().map(|e| e.0).collect::<Vec<_>>(), vec![1]);
        assert_eq!(
            out.errors.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(out.errors[0].reason, "must be a JSON object");
    }
}
