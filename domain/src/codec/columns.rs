//! Format 4 of an events record: the events turned into columns, then zstd-compressed.
//!
//! A record holds one accepted request (the log) or up to 512 events of one feature, day,
//! outcome and hour (the drill-down's chunks), so neighbouring events share most of their
//! fields. Columns put like values next to each other; the repeated labels (feature, model,
//! provider, environment, operation, status), users and prompt/experiment contexts become
//! small indexes into per-record dictionaries; times are deltas from the previous event and
//! latencies are stored divided by their common factor (clients mostly send whole
//! milliseconds); event ids that are canonical lowercase UUIDs — what most clients send —
//! take their 16 bytes instead of 36 characters. What this saves on realistic traffic is
//! measured in the performance log (`benches/PERFORMANCE-LOG.md`, Disk per event).
//!
//! Invariant: [`decode`] of [`encode`] gives back exactly the events encoded, field for
//! field (a property test checks it on arbitrary events). Decoding never trusts a record:
//! every column must have one entry per event, every index must name an entry of its
//! dictionary, a latency that would overflow is refused (times are deltas taken and added
//! back with wrapping arithmetic, so every time round-trips), and the content size is
//! bounded by [`super::MAX_PLAIN_BYTES`] before anything is allocated for it.

use std::borrow::Borrow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tally_schemas::event::{Cost, Operation, Status};
use tally_schemas::{Environment, UsageEvent};

use super::{corrupt, MAX_PLAIN_BYTES};
use crate::store::StoreError;

/// zstd's level 1: the fastest, and on these columns within a byte per event of level 9.
const LEVEL: i32 = 1;

type Contexts = (
    Option<zstd::bulk::Compressor<'static>>,
    Option<zstd::bulk::Decompressor<'static>>,
);

thread_local! {
    /// zstd's working state, made once per thread that encodes or decodes records rather than
    /// once per record.
    static CONTEXTS: std::cell::RefCell<Contexts> = const { std::cell::RefCell::new((None, None)) };
}

/// The labels every event carries, stored once per record and named by index.
///
/// The columns borrow their text: from the events when encoding, from the decompressed record
/// when decoding, so that only the events built from them allocate.
#[derive(Serialize, Deserialize)]
struct Labels<'a> {
    feature: &'a str,
    model: &'a str,
    provider: &'a str,
    environment: Environment,
    operation: Operation,
    status: Status,
}

/// What a call ran under besides its labels; mostly the same for a whole record.
#[derive(Serialize, Deserialize)]
struct Context<'a> {
    #[serde(borrow)]
    prompt_id: Option<&'a str>,
    #[serde(borrow)]
    prompt_version: Option<&'a str>,
    #[serde(borrow)]
    experiment_id: Option<&'a str>,
    #[serde(borrow)]
    variant: Option<&'a str>,
    #[serde(borrow)]
    attributes: Vec<(&'a str, &'a str)>,
}

#[derive(Serialize, Deserialize)]
enum Ids<'a> {
    /// Every id is a canonical lowercase UUID: 16 bytes each.
    Uuids(Vec<u8>),
    #[serde(borrow)]
    Text(Vec<&'a str>),
}

#[derive(Serialize, Deserialize)]
struct Columns<'a> {
    #[serde(borrow)]
    ids: Ids<'a>,
    /// The first event's `occurred_at_us`; each next one is the previous plus its delta ×
    /// `at_step`.
    at_first: i64,
    at_step: i64,
    at_deltas: Vec<i64>,
    #[serde(borrow)]
    labels: Vec<Labels<'a>>,
    labels_of: Vec<u32>,
    #[serde(borrow)]
    error_type: Vec<Option<&'a str>>,
    #[serde(borrow)]
    error_message: Vec<Option<&'a str>>,
    error_message_truncated: Vec<bool>,
    latency_step: u64,
    latency: Vec<u64>,
    input_tokens: Vec<u64>,
    output_tokens: Vec<u64>,
    cached_input_tokens: Vec<u64>,
    cost: Vec<Cost>,
    /// Index + 1 into `users`; 0 for an event without a user.
    #[serde(borrow)]
    users: Vec<&'a str>,
    user_of: Vec<u32>,
    #[serde(borrow)]
    contexts: Vec<Context<'a>>,
    context_of: Vec<u32>,
}

pub(super) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Times as (the first, their deltas' common step, each next one's delta from the previous
/// in steps); a step above `i64::MAX` only comes from deltas that wrapped, which are then
/// stored as they are (step 1).
pub(super) fn time_deltas(times: impl Iterator<Item = i64> + Clone) -> (i64, i64, Vec<i64>) {
    let mut all = times.clone();
    let first = all.next().unwrap_or(0);
    let raw: Vec<i64> = times.zip(all).map(|(a, b)| b.wrapping_sub(a)).collect();
    let step = raw.iter().fold(0, |g, d| gcd(g, d.unsigned_abs())).max(1);
    let step = i64::try_from(step).unwrap_or(1);
    (first, step, raw.iter().map(|d| d / step).collect())
}

impl<'a, V: From<&'a str>> Dictionary<&'a str, V> {
    /// A user column's entry for `user`: its index + 1 in this dictionary of users, 0 for none.
    pub(super) fn intern_user(&mut self, user: Option<&'a str>) -> u32 {
        user.map_or(0, |u| self.intern(u, || V::from(u)) + 1)
    }
}

/// The user a user column's entry names: `k` is an index + 1 into `users`, 0 for none.
pub(super) fn user_at<S: AsRef<str>>(users: &[S], k: u32) -> Result<Option<String>, StoreError> {
    match k {
        0 => Ok(None),
        k => users
            .get(k as usize - 1)
            .map(|u| Some(u.as_ref().to_owned()))
            .ok_or_else(|| corrupt(&"user index")),
    }
}

/// The 16 bytes of `id` when it is a UUID written the canonical way (lowercase, hyphenated),
/// so that writing the bytes back gives the same text.
fn canonical_uuid(id: &str) -> Option<[u8; 16]> {
    if id.len() != 36 {
        return None;
    }
    let u = uuid::Uuid::try_parse(id).ok()?;
    let mut buf = [0u8; 36];
    (u.hyphenated().encode_lower(&mut buf) == id).then(|| *u.as_bytes())
}

/// A per-record dictionary: values in first-seen order, found by a borrowed key.
pub(super) struct Dictionary<K, V> {
    pub(super) values: Vec<V>,
    /// foldhash: the keys are the record's own labels, not chosen by an attacker who could
    /// aim at collisions beyond one request's events; SipHash was 6 % of the server's CPU.
    index: HashMap<K, u32, foldhash::fast::RandomState>,
}

impl<K, V> Default for Dictionary<K, V> {
    fn default() -> Self {
        Dictionary {
            values: Vec::new(),
            index: HashMap::default(),
        }
    }
}

impl<K: Eq + std::hash::Hash, V> Dictionary<K, V> {
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// The index of `key`'s value, adding `value()` when the key is new.
    pub(super) fn intern(&mut self, key: K, value: impl FnOnce() -> V) -> u32 {
        let next = self.values.len() as u32;
        let i = *self.index.entry(key).or_insert(next);
        if i == next {
            self.values.push(value());
        }
        i
    }
}

fn columns<E: Borrow<UsageEvent>>(events: &[E]) -> Columns<'_> {
    let events: Vec<&UsageEvent> = events.iter().map(Borrow::borrow).collect();
    let uuids: Option<Vec<[u8; 16]>> = events.iter().map(|e| canonical_uuid(&e.event_id)).collect();
    let ids = match uuids {
        Some(u) if !u.is_empty() => Ids::Uuids(u.concat()),
        _ => Ids::Text(events.iter().map(|e| e.event_id.as_str()).collect()),
    };
    let (at_first, at_step, at_deltas) = time_deltas(events.iter().map(|e| e.occurred_at_us));
    let latency_step = events.iter().fold(0, |g, e| gcd(g, e.latency_us)).max(1);
    let mut labels = Dictionary::new();
    let mut users: Dictionary<&str, &str> = Dictionary::new();
    let mut contexts = Dictionary::new();
    let mut labels_of = Vec::with_capacity(events.len());
    let mut user_of = Vec::with_capacity(events.len());
    let mut context_of = Vec::with_capacity(events.len());
    for e in &events {
        let key = (
            e.feature.as_str(),
            e.model.as_str(),
            e.provider.as_str(),
            e.environment,
            e.operation,
            e.status,
        );
        labels_of.push(labels.intern(key, || Labels {
            feature: &e.feature,
            model: &e.model,
            provider: &e.provider,
            environment: e.environment,
            operation: e.operation,
            status: e.status,
        }));
        user_of.push(users.intern_user(e.user_id.as_deref()));
        let key = (
            e.prompt_id.as_deref(),
            e.prompt_version.as_deref(),
            e.experiment_id.as_deref(),
            e.variant.as_deref(),
            e.attributes.as_slice(),
        );
        context_of.push(contexts.intern(key, || {
            Context {
                prompt_id: e.prompt_id.as_deref(),
                prompt_version: e.prompt_version.as_deref(),
                experiment_id: e.experiment_id.as_deref(),
                variant: e.variant.as_deref(),
                attributes: e
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            }
        }));
    }
    Columns {
        ids,
        at_first,
        at_step,
        at_deltas,
        labels: labels.values,
        labels_of,
        error_type: events.iter().map(|e| e.error_type.as_deref()).collect(),
        error_message: events.iter().map(|e| e.error_message.as_deref()).collect(),
        error_message_truncated: events.iter().map(|e| e.error_message_truncated).collect(),
        latency_step,
        latency: events.iter().map(|e| e.latency_us / latency_step).collect(),
        input_tokens: events.iter().map(|e| e.input_tokens).collect(),
        output_tokens: events.iter().map(|e| e.output_tokens).collect(),
        cached_input_tokens: events.iter().map(|e| e.cached_input_tokens).collect(),
        cost: events.iter().map(|e| e.cost).collect(),
        users: users.values,
        user_of,
        contexts: contexts.values,
        context_of,
    }
}

/// The record's content after its format byte: the columns, postcard-encoded, as one zstd
/// frame that states its content size.
pub(super) fn encode<E: Borrow<UsageEvent>>(events: &[E]) -> Result<Vec<u8>, StoreError> {
    compress(&columns(events))
}

pub(super) fn decode(frame: &[u8]) -> Result<Vec<UsageEvent>, StoreError> {
    let plain = unzstd(frame)?;
    rows(postcard::from_bytes(&plain).map_err(|e| corrupt(&e))?)
}

/// `content` postcard-encoded, as one zstd frame that states its content size.
pub(super) fn compress(content: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    let plain =
        postcard::to_stdvec(content).map_err(|e| StoreError::Backend(format!("encode: {e}")))?;
    CONTEXTS
        .with(|c| {
            let mut c = c.borrow_mut();
            let compressor = match &mut c.0 {
                Some(compressor) => compressor,
                slot => slot.insert(zstd::bulk::Compressor::new(LEVEL)?),
            };
            compressor.compress(&plain)
        })
        .map_err(|e| StoreError::Backend(format!("zstd: {e}")))
}

/// The content of a [`compress`]ed frame.
pub(super) fn decompress<T: serde::de::DeserializeOwned>(frame: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(&unzstd(frame)?).map_err(|e| corrupt(&e))
}

/// A [`compress`]ed frame's postcard bytes, its size checked against [`MAX_PLAIN_BYTES`]
/// before anything is allocated for it.
fn unzstd(frame: &[u8]) -> Result<Vec<u8>, StoreError> {
    let size = match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size <= MAX_PLAIN_BYTES as u64 => size as usize,
        Ok(Some(size)) => return Err(corrupt(&format!("content size {size} is above the limit"))),
        Ok(None) => return Err(corrupt(&"zstd frame without a content size")),
        Err(_) => return Err(corrupt(&"not a zstd frame")),
    };
    CONTEXTS
        .with(|c| {
            let mut c = c.borrow_mut();
            let decompressor = match &mut c.1 {
                Some(decompressor) => decompressor,
                slot => slot.insert(zstd::bulk::Decompressor::new()?),
            };
            decompressor.decompress(frame, size)
        })
        .map_err(|e| corrupt(&e))
}

/// The most memory a record's events may take once decoded (their structs and strings). A
/// real record is one request (10,000 events and 10 MiB of JSON by default) or a drill-down
/// chunk; a record whose few bytes of dictionary indexes would expand past this is corrupt.
const MAX_DECODED_BYTES: usize = 4 * MAX_PLAIN_BYTES;

fn text_len<S: AsRef<str>>(s: &Option<S>) -> usize {
    s.as_ref().map_or(0, |s| s.as_ref().len())
}

fn rows(c: Columns) -> Result<Vec<UsageEvent>, StoreError> {
    Ok(rows_where(c, |_| true)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// The events at `indexes` of a record's content (after its format byte), each with its index;
/// indexes the record does not hold are left out. Only those events are built: what showing a
/// few events of a large record costs.
pub(super) fn decode_at(
    frame: &[u8],
    indexes: &[u32],
) -> Result<Vec<(u32, UsageEvent)>, StoreError> {
    let plain = unzstd(frame)?;
    let c: Columns = postcard::from_bytes(&plain).map_err(|e| corrupt(&e))?;
    let mut wanted = vec![false; c.labels_of.len()];
    for &i in indexes {
        if let Some(w) = wanted.get_mut(i as usize) {
            *w = true;
        }
    }
    rows_where(c, |i| wanted[i])
}

/// The events `keep` picks by index, each with its index. Every column is checked whole, the
/// events not kept included, so a record is refused or read alike whatever is picked.
fn rows_where(
    c: Columns,
    keep: impl Fn(usize) -> bool,
) -> Result<Vec<(u32, UsageEvent)>, StoreError> {
    let n = c.labels_of.len();
    let event_size = std::mem::size_of::<UsageEvent>();
    if n.saturating_mul(event_size) > MAX_PLAIN_BYTES {
        return Err(corrupt(&format!("{n} events are more than a record holds")));
    }
    let ids_len = match &c.ids {
        Ids::Text(ids) => ids.len(),
        Ids::Uuids(bytes) if bytes.len() != n.saturating_mul(16) => {
            return Err(corrupt(&"uuid column length"))
        }
        Ids::Uuids(_) => n,
    };
    let deltas = if n == 0 { 0 } else { n - 1 };
    let lengths = [
        ids_len,
        c.error_type.len(),
        c.error_message.len(),
        c.error_message_truncated.len(),
        c.latency.len(),
        c.input_tokens.len(),
        c.output_tokens.len(),
        c.cached_input_tokens.len(),
        c.cost.len(),
        c.user_of.len(),
        c.context_of.len(),
    ];
    if lengths.iter().any(|&l| l != n) || c.at_deltas.len() != deltas {
        return Err(corrupt(&"columns of unequal length"));
    }
    if c.at_step < 1 || c.latency_step < 1 {
        return Err(corrupt(&"a step below 1"));
    }
    // What each dictionary entry adds to every event that names it.
    let label_bytes: Vec<usize> = c
        .labels
        .iter()
        .map(|l| l.feature.len() + l.model.len() + l.provider.len())
        .collect();
    let context_bytes: Vec<usize> = c
        .contexts
        .iter()
        .map(|x| {
            text_len(&x.prompt_id)
                + text_len(&x.prompt_version)
                + text_len(&x.experiment_id)
                + text_len(&x.variant)
                + x.attributes
                    .iter()
                    .map(|(k, v)| std::mem::size_of::<(String, String)>() + k.len() + v.len())
                    .sum::<usize>()
        })
        .collect();
    let Columns {
        ids,
        error_type,
        error_message,
        ..
    } = c;
    let (uuids, text_ids) = match ids {
        Ids::Uuids(bytes) => (Some(bytes), Vec::new()),
        Ids::Text(ids) => (None, ids),
    };
    let mut budget = MAX_DECODED_BYTES;
    let mut at = c.at_first;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i > 0 {
            at = at.wrapping_add(c.at_deltas[i - 1].wrapping_mul(c.at_step));
        }
        let (li, ci) = (c.labels_of[i] as usize, c.context_of[i] as usize);
        let (Some(labels), Some(context)) = (c.labels.get(li), c.contexts.get(ci)) else {
            return Err(corrupt(&"labels or context index"));
        };
        let user_id = user_at(&c.users, c.user_of[i])?;
        let latency_us = c.latency[i]
            .checked_mul(c.latency_step)
            .ok_or_else(|| corrupt(&"latency out of range"))?;
        if !keep(i) {
            continue;
        }
        let event_id = match &uuids {
            Some(bytes) => {
                let mut u = [0u8; 16];
                u.copy_from_slice(&bytes[16 * i..16 * i + 16]);
                uuid::Uuid::from_bytes(u).hyphenated().to_string()
            }
            None => text_ids[i].to_owned(),
        };
        let error_type = error_type[i].map(str::to_owned);
        let error_message = error_message[i].map(str::to_owned);
        let size = event_size
            + event_id.len()
            + text_len(&error_type)
            + text_len(&error_message)
            + label_bytes[li]
            + context_bytes[ci]
            + text_len(&user_id);
        budget = budget
            .checked_sub(size)
            .ok_or_else(|| corrupt(&"the events decode to more than a record may hold"))?;
        out.push((
            i as u32,
            UsageEvent {
                event_id,
                occurred_at_us: at,
                feature: labels.feature.to_owned(),
                model: labels.model.to_owned(),
                provider: labels.provider.to_owned(),
                environment: labels.environment,
                operation: labels.operation,
                status: labels.status,
                error_type,
                error_message,
                error_message_truncated: c.error_message_truncated[i],
                latency_us,
                input_tokens: c.input_tokens[i],
                output_tokens: c.output_tokens[i],
                cached_input_tokens: c.cached_input_tokens[i],
                cost: c.cost[i],
                user_id,
                prompt_id: context.prompt_id.map(str::to_owned),
                prompt_version: context.prompt_version.map(str::to_owned),
                experiment_id: context.experiment_id.map(str::to_owned),
                variant: context.variant.map(str::to_owned),
                attributes: context
                    .attributes
                    .iter()
                    .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(events: &[UsageEvent]) -> Vec<u8> {
        encode(events).expect("encode")
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(String::new()),
            "[a-z]{1,3}",
            "\\PC{0,12}",
            // canonical UUIDs, and UUIDs that are not written the canonical way
            any::<u128>().prop_map(|u| uuid::Uuid::from_u128(u).to_string()),
            any::<u128>().prop_map(|u| uuid::Uuid::from_u128(u).to_string().to_uppercase()),
            any::<u128>().prop_map(|u| uuid::Uuid::from_u128(u).simple().to_string()),
        ]
    }

    fn cost() -> impl Strategy<Value = Cost> {
        prop_oneof![
            any::<i64>().prop_map(Cost::Reported),
            any::<i64>().prop_map(Cost::Computed),
            Just(Cost::Unpriced),
        ]
    }

    prop_compose! {
        fn event()(
            event_id in text(),
            occurred_at_us in prop_oneof![any::<i64>(), 1_700_000_000_000_000i64..1_700_000_100_000_000],
            labels in (0usize..3, 0usize..3, 0usize..3, 0usize..3),
            error in (proptest::option::of(text()), proptest::option::of(text()), any::<bool>()),
            latency_us in prop_oneof![any::<u64>(), (0u64..5000).prop_map(|ms| ms * 1000), Just(0u64)],
            tokens in (any::<u64>(), 0u64..4000, 0u64..100),
            cost in cost(),
            user_id in proptest::option::of(prop_oneof!["u[0-9]", text()]),
            context in (proptest::option::of("p[0-2]"), proptest::option::of(text()), proptest::option::of("x"), proptest::option::of(text())),
            attributes in proptest::collection::vec((text(), text()), 0..3),
        ) -> UsageEvent {
            UsageEvent {
                event_id,
                occurred_at_us,
                feature: ["chatbot", "search", ""][labels.0].into(),
                model: ["gpt-4o", "claude", "m"][labels.1].into(),
                provider: ["openai", "anthropic", "p"][labels.2].into(),
                environment: Environment::ALL[labels.3],
                operation: [Operation::Chat, Operation::Embedding, Operation::Chat][labels.1],
                status: [Status::Success, Status::Error, Status::Timeout][labels.0],
                error_type: error.0,
                error_message: error.1,
                error_message_truncated: error.2,
                latency_us,
                input_tokens: tokens.0,
                output_tokens: tokens.1,
                cached_input_tokens: tokens.2,
                cost,
                user_id,
                prompt_id: context.0,
                prompt_version: context.1,
                experiment_id: context.2,
                variant: context.3,
                attributes,
            }
        }
    }

    proptest! {
        #[test]
        fn every_event_reads_back_exactly(events in proptest::collection::vec(event(), 0..60)) {
            prop_assert_eq!(decode(&record(&events)).expect("decode"), events);
        }

        /// Picking events by index gives exactly those of the whole decode, in index order;
        /// indexes beyond the record are left out.
        #[test]
        fn picked_events_are_those_of_the_whole_record(
            events in proptest::collection::vec(event(), 0..40),
            picks in proptest::collection::btree_set(0u32..50, 0..10),
        ) {
            let picks: Vec<u32> = picks.into_iter().collect();
            let want: Vec<(u32, UsageEvent)> = picks
                .iter()
                .filter(|&&i| (i as usize) < events.len())
                .map(|&i| (i, events[i as usize].clone()))
                .collect();
            prop_assert_eq!(decode_at(&record(&events), &picks).expect("decode"), want);
        }
    }

    #[test]
    fn canonical_uuids_take_sixteen_bytes_and_others_stay_text() {
        let id = "0190f3c4-7b1e-7cc2-9a3f-5d1e2b3c4d5e";
        assert_eq!(
            canonical_uuid(id).map(|b| b[..4].to_vec()),
            Some(vec![0x01, 0x90, 0xf3, 0xc4])
        );
        for other in [
            "0190F3C4-7B1E-7CC2-9A3F-5D1E2B3C4D5E",
            "0190f3c47b1e7cc29a3f5d1e2b3c4d5e",
            "{0190f3c4-7b1e-7cc2-9a3f-5d1e2b3c4d5e}",
            "urn:uuid:0190f3c4-7b1e-7cc2-9a3f-5d1e2b3c4d5e",
            "not-a-uuid",
        ] {
            assert_eq!(canonical_uuid(other), None, "{other}");
        }
        // A thousand UUID-named events: the ids alone are 16 bytes each, and the record is
        // less than the 36 characters an id takes as text (plus everything else).
        let events: Vec<UsageEvent> = (0..1000u128)
            .map(|i| UsageEvent {
                event_id: uuid::Uuid::from_u128(
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
                )
                .to_string(),
                ..UsageEvent::example()
            })
            .collect();
        let bytes = record(&events).len();
        assert!((16_000..20_000).contains(&bytes), "{bytes} bytes");
        assert_eq!(decode(&record(&events)).expect("decode"), events);
    }

    #[test]
    fn times_and_latencies_keep_their_common_factor_out() {
        let events: Vec<UsageEvent> = [
            (5_000_000i64, 3_000u64),
            (5_002_000, 12_000),
            (4_999_000, 0),
        ]
        .iter()
        .map(|&(at, lat)| UsageEvent {
            occurred_at_us: at,
            latency_us: lat,
            ..UsageEvent::example()
        })
        .collect();
        let c = columns(&events);
        // deltas +2,000 and −3,000 µs: gcd 1,000; latencies 3,000, 12,000, 0: gcd 3,000.
        assert_eq!(
            (c.at_first, c.at_step, c.at_deltas.clone()),
            (5_000_000, 1_000, vec![2, -3])
        );
        assert_eq!((c.latency_step, c.latency.clone()), (3_000, vec![1, 4, 0]));
        assert_eq!(c.labels.len(), 1);
        assert_eq!(decode(&record(&events)).expect("decode"), events);
    }

    #[test]
    fn a_record_that_lies_is_refused() {
        let events = vec![UsageEvent::example(), UsageEvent::example()];
        let tamper = |f: &dyn Fn(&mut Columns)| {
            let mut c = columns(&events);
            f(&mut c);
            let plain = postcard::to_stdvec(&c).expect("encode");
            decode(&zstd::bulk::compress(&plain, 1).expect("zstd"))
        };
        assert!(tamper(&|_| ()).is_ok());
        let refused = [
            tamper(&|c| c.cost.pop().map(drop).unwrap_or(())),
            tamper(&|c| c.at_deltas.push(1)),
            tamper(&|c| c.labels_of[1] = 7),
            tamper(&|c| c.user_of[0] = 3),
            tamper(&|c| c.context_of[0] = 1),
            tamper(&|c| c.latency_step = 0),
            tamper(&|c| {
                c.latency_step = u64::MAX;
                c.latency[0] = 2;
            }),
            tamper(&|c| c.ids = Ids::Uuids(vec![0; 17])),
        ];
        for (i, r) in refused.iter().enumerate() {
            assert!(matches!(r, Err(StoreError::Corrupt(_))), "case {i}: {r:?}");
        }
        // A megabyte of attributes named by 300 events decodes to 300 MiB: refused, as are
        // more events than a record holds, whatever their columns take.
        let big = [UsageEvent {
            attributes: vec![("k".into(), "v".repeat(1 << 20))],
            ..UsageEvent::example()
        }];
        let mut c = columns(&big);
        let copies = |v: &mut Vec<Option<&str>>| v.resize(300, None);
        match &mut c.ids {
            Ids::Text(ids) => ids.resize(300, "e"),
            Ids::Uuids(_) => unreachable!("the example's id is not a UUID"),
        }
        c.at_deltas.resize(299, 0);
        c.labels_of.resize(300, 0);
        copies(&mut c.error_type);
        copies(&mut c.error_message);
        c.error_message_truncated.resize(300, false);
        for v in [
            &mut c.latency,
            &mut c.input_tokens,
            &mut c.output_tokens,
            &mut c.cached_input_tokens,
        ] {
            v.resize(300, 0);
        }
        c.cost.resize(300, Cost::Unpriced);
        c.user_of.resize(300, 0);
        c.context_of.resize(300, 0);
        let many = rows(c);
        assert!(
            matches!(&many, Err(StoreError::Corrupt(m)) if m.contains("more than a record may hold")),
            "{many:?}"
        );
        let one = [UsageEvent::example()];
        let mut c = columns(&one);
        c.labels_of
            .resize(MAX_PLAIN_BYTES / std::mem::size_of::<UsageEvent>() + 1, 0);
        let err = rows(c).expect_err("too many events");
        assert!(
            err.to_string().contains("more than a record holds"),
            "{err}"
        );
        // A frame that claims more content than any record may hold.
        let big = zstd::bulk::compress(&vec![0u8; MAX_PLAIN_BYTES + 1], 1).expect("zstd");
        let err = decode(&big).expect_err("above the limit");
        assert!(err.to_string().contains("above the limit"), "{err}");
        assert!(decode(b"not zstd").is_err());
    }
}
