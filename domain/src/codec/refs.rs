//! Format 5: a drill-down chunk that points into the embedded log instead of copying events.
//!
//! The drill-down must find a feature's events by time, outcome and the filters of
//! [`crate::drilldown::EventFilter`], and show each event whole. A copy of every counted event
//! costs as much disk as the log itself (a random event id alone is 16 bytes no codec
//! shrinks), so when the log is the embedded one, a chunk keeps per event only what a query
//! filters and orders by — time, labels, status, user, prompt/experiment context — plus where
//! the event sits in the log (record offset and position) and, for the few events whose cost
//! the projector set or corrected, the cost it counted. Showing an event reads it back from
//! its log record ([`EventRef::resolve`]).
//!
//! Layout after the format byte: one zstd frame ([`super::columns::compress`]) of the columns
//! below, postcard-encoded: the id of the log the offsets belong to (`log_meta.log_id` of the
//! embedded log, so a chunk is never resolved against another log file), times as deltas of
//! their common step, labels, users and contexts as per-chunk dictionaries, record offsets as
//! deltas from the previous event's, positions, and the sparse costs.
//!
//! Invariants: [`decode`] of [`encode`] gives back, per event, the fields the filters read,
//! exactly, and its log spot; decoding never trusts a chunk (every column one entry per event,
//! every index inside its dictionary, the content bounded before it is allocated).

use serde::{Deserialize, Serialize};
use tally_schemas::event::{Cost, Status};
use tally_schemas::{Environment, UsageEvent};

use super::columns::{compress, decompress, time_deltas, user_at, Dictionary};
use super::{corrupt, MAX_PLAIN_BYTES};
use crate::store::{RawEvent, StoreError};

/// A counted event as a chunk of format 5 holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRef {
    /// The event with the fields the drill-down filters and orders by (`occurred_at_us`,
    /// feature, model, provider, environment, status, user, prompt id and version, experiment,
    /// variant); the others are left at [`UsageEvent::example`]'s values and its `event_id`
    /// is empty. For matching only: the event shown is the log's ([`EventRef::resolve`]).
    pub stub: UsageEvent,
    /// The log record's offset.
    pub record: i64,
    /// The event's position among the record's events.
    pub index: u32,
    /// The cost the projector counted, when it is not the one the log holds.
    pub repriced: Option<Cost>,
}

impl EventRef {
    /// The counted event, given the event its log record holds at `index`: that event with
    /// the cost counted. `None` when it is not the one the chunk was written from (its time,
    /// feature or status differ: the record is another).
    pub fn resolve(&self, found: UsageEvent) -> Option<UsageEvent> {
        let stub = &self.stub;
        if (found.occurred_at_us, found.feature.as_str(), found.status)
            != (stub.occurred_at_us, stub.feature.as_str(), stub.status)
        {
            return None;
        }
        let mut event = found;
        if let Some(cost) = self.repriced {
            event.cost = cost;
        }
        Some(event)
    }
}

#[derive(Serialize, Deserialize)]
struct Labels {
    feature: String,
    model: String,
    provider: String,
    environment: Environment,
    status: Status,
}

#[derive(Serialize, Deserialize)]
struct Context {
    prompt_id: Option<String>,
    prompt_version: Option<String>,
    experiment_id: Option<String>,
    variant: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Columns {
    log_id: String,
    at_first: i64,
    at_step: i64,
    at_deltas: Vec<i64>,
    labels: Vec<Labels>,
    labels_of: Vec<u32>,
    /// Index + 1 into `users`; 0 for an event without a user.
    users: Vec<String>,
    user_of: Vec<u32>,
    contexts: Vec<Context>,
    context_of: Vec<u32>,
    /// The first event's record offset; each next one is the previous plus its delta.
    record_first: i64,
    record_deltas: Vec<i64>,
    index: Vec<u32>,
    /// (position in the chunk, cost counted) of the events whose cost is not the log's.
    repriced: Vec<(u32, Cost)>,
}

/// The chunk's content after its format byte: `events` (in the order given) as references
/// into the log `log_id`.
pub(super) fn encode<E: std::borrow::Borrow<RawEvent>>(
    log_id: &str,
    events: &[E],
) -> Result<Vec<u8>, StoreError> {
    let events: Vec<&RawEvent> = events.iter().map(std::borrow::Borrow::borrow).collect();
    let (at_first, at_step, at_deltas) = time_deltas(events.iter().map(|r| r.event.occurred_at_us));
    let mut labels = Dictionary::new();
    let mut users: Dictionary<&str, String> = Dictionary::new();
    let mut contexts = Dictionary::new();
    let mut labels_of = Vec::with_capacity(events.len());
    let mut user_of = Vec::with_capacity(events.len());
    let mut context_of = Vec::with_capacity(events.len());
    let mut repriced = Vec::new();
    for (i, r) in events.iter().enumerate() {
        let e = &r.event;
        let key = (
            e.feature.as_str(),
            e.model.as_str(),
            e.provider.as_str(),
            e.environment,
            e.status,
        );
        labels_of.push(labels.intern(key, || Labels {
            feature: e.feature.clone(),
            model: e.model.clone(),
            provider: e.provider.clone(),
            environment: e.environment,
            status: e.status,
        }));
        user_of.push(users.intern_user(e.user_id.as_deref()));
        let key = (
            e.prompt_id.as_deref(),
            e.prompt_version.as_deref(),
            e.experiment_id.as_deref(),
            e.variant.as_deref(),
        );
        context_of.push(contexts.intern(key, || Context {
            prompt_id: e.prompt_id.clone(),
            prompt_version: e.prompt_version.clone(),
            experiment_id: e.experiment_id.clone(),
            variant: e.variant.clone(),
        }));
        if !r.cost_as_logged {
            repriced.push((i as u32, e.cost));
        }
    }
    compress(&Columns {
        log_id: log_id.to_owned(),
        at_first,
        at_step,
        at_deltas,
        labels: labels.values,
        labels_of,
        users: users.values,
        user_of,
        contexts: contexts.values,
        context_of,
        record_first: events.first().map_or(0, |r| r.offset),
        record_deltas: events
            .windows(2)
            .map(|w| w[1].offset.wrapping_sub(w[0].offset))
            .collect(),
        index: events.iter().map(|r| r.index).collect(),
        repriced,
    })
}

fn text_len(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

/// The log id and the references of a chunk's content (after its format byte).
pub(super) fn decode(frame: &[u8]) -> Result<(String, Vec<EventRef>), StoreError> {
    let c: Columns = decompress(frame)?;
    let n = c.labels_of.len();
    let deltas = n.saturating_sub(1);
    if [c.user_of.len(), c.context_of.len(), c.index.len()]
        .iter()
        .any(|&l| l != n)
        || c.at_deltas.len() != deltas
        || c.record_deltas.len() != deltas
    {
        return Err(corrupt(&"reference columns of unequal length"));
    }
    if c.at_step < 1 {
        return Err(corrupt(&"a step below 1"));
    }
    // The strings the events would share out of the dictionaries, bounded like a record's.
    let mut budget = 4 * MAX_PLAIN_BYTES;
    let mut at = c.at_first;
    let mut record = c.record_first;
    let mut out = Vec::with_capacity(n.min(MAX_PLAIN_BYTES / std::mem::size_of::<EventRef>()));
    for i in 0..n {
        if i > 0 {
            at = at.wrapping_add(c.at_deltas[i - 1].wrapping_mul(c.at_step));
            record = record.wrapping_add(c.record_deltas[i - 1]);
        }
        let (Some(labels), Some(context)) = (
            c.labels.get(c.labels_of[i] as usize),
            c.contexts.get(c.context_of[i] as usize),
        ) else {
            return Err(corrupt(&"labels or context index"));
        };
        let user_id = user_at(&c.users, c.user_of[i])?;
        let size = std::mem::size_of::<EventRef>()
            + labels.feature.len()
            + labels.model.len()
            + labels.provider.len()
            + text_len(&user_id)
            + text_len(&context.prompt_id)
            + text_len(&context.prompt_version)
            + text_len(&context.experiment_id)
            + text_len(&context.variant);
        budget = budget
            .checked_sub(size)
            .ok_or_else(|| corrupt(&"the references decode to more than a chunk may hold"))?;
        out.push(EventRef {
            stub: UsageEvent {
                event_id: String::new(),
                occurred_at_us: at,
                feature: labels.feature.clone(),
                model: labels.model.clone(),
                provider: labels.provider.clone(),
                environment: labels.environment,
                status: labels.status,
                user_id,
                prompt_id: context.prompt_id.clone(),
                prompt_version: context.prompt_version.clone(),
                experiment_id: context.experiment_id.clone(),
                variant: context.variant.clone(),
                ..UsageEvent::example()
            },
            record,
            index: c.index[i],
            repriced: None,
        });
    }
    for (i, cost) in c.repriced {
        out.get_mut(i as usize)
            .ok_or_else(|| corrupt(&"repriced position"))?
            .repriced = Some(cost);
    }
    Ok((c.log_id, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9-]{1,12}", "\\PC{0,8}"]
    }

    fn raw() -> impl Strategy<Value = RawEvent> {
        (
            (any::<i64>(), text(), text(), 0u8..3, 0u8..3),
            (
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
                proptest::option::of(text()),
            ),
            (
                proptest::option::of(text()),
                any::<i64>(),
                any::<u32>(),
                any::<bool>(),
                any::<i64>(),
            ),
        )
            .prop_map(
                |(
                    (at, model, feature, env, status),
                    (user_id, prompt_id, experiment_id, variant),
                    (prompt_version, offset, index, as_logged, pico),
                )| {
                    RawEvent {
                        event: UsageEvent {
                            event_id: "not kept".into(),
                            occurred_at_us: at,
                            feature,
                            model,
                            provider: "p".into(),
                            environment: [
                                Environment::Production,
                                Environment::Staging,
                                Environment::Development,
                            ][env as usize],
                            status: [Status::Success, Status::Error, Status::Timeout]
                                [status as usize],
                            user_id,
                            prompt_id,
                            prompt_version,
                            experiment_id,
                            variant,
                            latency_us: 7,
                            cost: Cost::Computed(pico),
                            ..UsageEvent::example()
                        },
                        offset,
                        index,
                        received_at_ms: 0,
                        cost_as_logged: as_logged,
                    }
                },
            )
    }

    proptest! {
        /// Every filtered field, the spot and the counted cost (only when it is not the log's)
        /// come back exactly, whatever the values (times and offsets anywhere in i64).
        #[test]
        fn references_round_trip(events in proptest::collection::vec(raw(), 0..60)) {
            let bytes = encode("log-1", &events).expect("encode");
            let (log_id, refs) = decode(&bytes).expect("decode");
            prop_assert_eq!(log_id, "log-1");
            prop_assert_eq!(refs.len(), events.len());
            for (r, e) in refs.iter().zip(&events) {
                let want = UsageEvent {
                    event_id: String::new(),
                    occurred_at_us: e.event.occurred_at_us,
                    feature: e.event.feature.clone(),
                    model: e.event.model.clone(),
                    provider: e.event.provider.clone(),
                    environment: e.event.environment,
                    status: e.event.status,
                    user_id: e.event.user_id.clone(),
                    prompt_id: e.event.prompt_id.clone(),
                    prompt_version: e.event.prompt_version.clone(),
                    experiment_id: e.event.experiment_id.clone(),
                    variant: e.event.variant.clone(),
                    ..UsageEvent::example()
                };
                prop_assert_eq!(&r.stub, &want);
                prop_assert_eq!((r.record, r.index), (e.offset, e.index));
                let repriced = (!e.cost_as_logged).then_some(e.event.cost);
                prop_assert_eq!(r.repriced, repriced);
            }
        }

        /// Whatever the bytes, decoding answers (an error or references) without panicking.
        #[test]
        fn any_bytes_decode_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn resolving_takes_the_logs_event_with_the_counted_cost_and_checks_the_spot() {
        let logged = |id: &str, at: i64| UsageEvent {
            event_id: id.into(),
            occurred_at_us: at,
            cost: Cost::Computed(5),
            ..UsageEvent::example()
        };
        let counted = RawEvent {
            event: UsageEvent {
                cost: Cost::Computed(9),
                ..logged("b", 20)
            },
            offset: 3,
            index: 1,
            received_at_ms: 0,
            cost_as_logged: false,
        };
        let (_, refs) = decode(&encode("l", &[&counted]).expect("encode")).expect("decode");
        let got = refs[0].resolve(logged("b", 20)).expect("found");
        assert_eq!((got.event_id.as_str(), got.cost), ("b", Cost::Computed(9)));
        // Another event where the reference points (another time) is not it.
        assert_eq!(refs[0].resolve(logged("c", 21)), None);
    }
}
