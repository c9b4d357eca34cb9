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

use std::borrow::Cow;
use std::cmp::Ordering;

use serde::{Deserialize, Serialize};
use tally_schemas::event::{Cost, Status};
use tally_schemas::{Environment, UsageEvent};

use super::columns::{compress, decompress, time_deltas, user_at, Dictionary};
use super::{corrupt, MAX_PLAIN_BYTES};
use crate::short_text::ShortText;
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
struct Labels<'a> {
    feature: Cow<'a, str>,
    model: Cow<'a, str>,
    provider: Cow<'a, str>,
    environment: Environment,
    status: Status,
}

#[derive(Serialize, Deserialize)]
struct Context<'a> {
    prompt_id: Option<Cow<'a, str>>,
    prompt_version: Option<Cow<'a, str>>,
    experiment_id: Option<Cow<'a, str>>,
    variant: Option<Cow<'a, str>>,
}

/// The chunk's columns: borrowed from a [`RefSheet`] when encoding, owned when decoded
/// (`Cow` writes exactly as the `String` it stands for).
#[derive(Serialize, Deserialize)]
struct Columns<'a> {
    log_id: Cow<'a, str>,
    at_first: i64,
    at_step: i64,
    at_deltas: Vec<i64>,
    labels: Vec<Labels<'a>>,
    labels_of: Vec<u32>,
    /// Index + 1 into `users`; 0 for an event without a user.
    users: Vec<Cow<'a, str>>,
    user_of: Vec<u32>,
    contexts: Vec<Context<'a>>,
    context_of: Vec<u32>,
    /// The first event's record offset; each next one is the previous plus its delta.
    record_first: i64,
    record_deltas: Vec<i64>,
    index: Vec<u32>,
    /// (position in the chunk, cost counted) of the events whose cost is not the log's.
    repriced: Vec<(u32, Cost)>,
}

type LabelsKey<'a> = (
    ShortText<'a>,
    ShortText<'a>,
    ShortText<'a>,
    Environment,
    Status,
);
type ContextKey<'a> = (
    Option<ShortText<'a>>,
    Option<ShortText<'a>>,
    Option<ShortText<'a>>,
    Option<ShortText<'a>>,
);

/// A commit's counted events read once, in the order they sit in memory, for the chunks cut
/// from them: each distinct labels, user and context interned once, each event reduced to a
/// [`RefRow`]. A chunk visits its events sorted by time — far from their order in memory, each
/// a few cache misses away at a projector batch's size — so encoding it from the rows and the
/// sheet's few shared strings ([`encode_rows`]) reads a fraction of the memory that walking the
/// events again would.
#[derive(Default)]
pub struct RefSheet<'a> {
    labels: Dictionary<LabelsKey<'a>, LabelsKey<'a>>,
    users: Dictionary<ShortText<'a>, &'a str>,
    contexts: Dictionary<ContextKey<'a>, ContextKey<'a>>,
}

/// A counted event as a drill-down chunk needs it (see [`RefSheet`]).
#[derive(Debug, Clone, Copy)]
pub struct RefRow<'a> {
    /// The event the row was read from.
    pub event: &'a UsageEvent,
    /// Its `occurred_at`.
    pub at_us: i64,
    /// The id's first 16 bytes, big-endian, zero-padded: of two ids whose prefixes differ,
    /// the one with the greater prefix is the greater id.
    id_prefix: u128,
    /// Index into the sheet's labels, users (+ 1; 0 for none) and contexts.
    labels: u32,
    user: u32,
    context: u32,
    offset: i64,
    index: u32,
    /// The cost counted, when it is not the log's.
    repriced: Option<Cost>,
}

impl<'a> RefSheet<'a> {
    /// `raw`'s row, its labels, user and context interned in this sheet.
    pub fn row(&mut self, raw: RawEvent<'a>) -> RefRow<'a> {
        let e = raw.event;
        let labels: LabelsKey = (
            ShortText(&e.feature),
            ShortText(&e.model),
            ShortText(&e.provider),
            e.environment,
            e.status,
        );
        let context: ContextKey = (
            e.prompt_id.as_deref().map(ShortText),
            e.prompt_version.as_deref().map(ShortText),
            e.experiment_id.as_deref().map(ShortText),
            e.variant.as_deref().map(ShortText),
        );
        RefRow {
            event: e,
            at_us: e.occurred_at_us,
            id_prefix: id_prefix(&e.event_id),
            labels: self.labels.intern(labels, || labels),
            user: e
                .user_id
                .as_deref()
                .map_or(0, |u| self.users.intern(ShortText(u), || u) + 1),
            context: self.contexts.intern(context, || context),
            offset: raw.offset,
            index: raw.index,
            repriced: (!raw.cost_as_logged).then_some(e.cost),
        }
    }
}

impl RefRow<'_> {
    /// The order of [`crate::drilldown::newest_first`]: newest first, then by id (descending);
    /// the ids are compared whole only when their first 16 bytes are the same.
    pub fn newest_first(&self, other: &RefRow<'_>) -> Ordering {
        (other.at_us, other.id_prefix)
            .cmp(&(self.at_us, self.id_prefix))
            .then_with(|| crate::drilldown::newest_first(self.event, other.event))
    }
}

fn id_prefix(id: &str) -> u128 {
    let mut bytes = [0u8; 16];
    let n = id.len().min(16);
    bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
    u128::from_be_bytes(bytes)
}

/// The chunk's content after its format byte: `events` (in the order given, read into a sheet
/// of their own) as references into the log `log_id`.
#[cfg(test)]
fn encode<'a>(
    log_id: &str,
    events: impl IntoIterator<Item = RawEvent<'a>>,
) -> Result<Vec<u8>, StoreError> {
    let mut sheet = RefSheet::default();
    let rows: Vec<RefRow> = events.into_iter().map(|e| sheet.row(e)).collect();
    encode_rows(log_id, &sheet, &rows)
}

/// The chunk's content after its format byte: the events of `rows` (in the order given, read
/// into `sheet`) as references into the log `log_id`.
pub(super) fn encode_rows(
    log_id: &str,
    sheet: &RefSheet<'_>,
    rows: &[RefRow<'_>],
) -> Result<Vec<u8>, StoreError> {
    let (at_first, at_step, at_deltas) = time_deltas(rows.iter().map(|r| r.at_us));
    // The chunk's own dictionaries: the sheet's indexes it uses, in first-use order.
    let mut labels: Dictionary<u32, u32> = Dictionary::new();
    let mut users: Dictionary<u32, u32> = Dictionary::new();
    let mut contexts: Dictionary<u32, u32> = Dictionary::new();
    let labels_of = rows
        .iter()
        .map(|r| labels.intern(r.labels, || r.labels))
        .collect();
    let user_of = rows
        .iter()
        .map(|r| match r.user {
            0 => 0,
            u => users.intern(u, || u - 1) + 1,
        })
        .collect();
    let context_of = rows
        .iter()
        .map(|r| contexts.intern(r.context, || r.context))
        .collect();
    fn text(t: ShortText<'_>) -> Cow<'_, str> {
        Cow::Borrowed(t.0)
    }
    compress(&Columns {
        log_id: Cow::Borrowed(log_id),
        at_first,
        at_step,
        at_deltas,
        labels: labels
            .values
            .iter()
            .map(|&i| {
                let (feature, model, provider, environment, status) =
                    sheet.labels.values[i as usize];
                Labels {
                    feature: text(feature),
                    model: text(model),
                    provider: text(provider),
                    environment,
                    status,
                }
            })
            .collect(),
        labels_of,
        users: users
            .values
            .iter()
            .map(|&i| Cow::Borrowed(sheet.users.values[i as usize]))
            .collect(),
        user_of,
        contexts: contexts
            .values
            .iter()
            .map(|&i| {
                let (prompt_id, prompt_version, experiment_id, variant) =
                    sheet.contexts.values[i as usize];
                Context {
                    prompt_id: prompt_id.map(text),
                    prompt_version: prompt_version.map(text),
                    experiment_id: experiment_id.map(text),
                    variant: variant.map(text),
                }
            })
            .collect(),
        context_of,
        record_first: rows.first().map_or(0, |r| r.offset),
        record_deltas: rows
            .windows(2)
            .map(|w| w[1].offset.wrapping_sub(w[0].offset))
            .collect(),
        index: rows.iter().map(|r| r.index).collect(),
        repriced: rows
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Some((i as u32, r.repriced?)))
            .collect(),
    })
}

fn owned(s: &Option<Cow<'_, str>>) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

fn text_len<S: AsRef<str>>(s: &Option<S>) -> usize {
    s.as_ref().map_or(0, |s| s.as_ref().len())
}

/// The log id and the references of a chunk's content (after its format byte).
pub(super) fn decode(frame: &[u8]) -> Result<(String, Vec<EventRef>), StoreError> {
    let c: Columns<'static> = decompress(frame)?;
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
                feature: labels.feature.to_string(),
                model: labels.model.to_string(),
                provider: labels.provider.to_string(),
                environment: labels.environment,
                status: labels.status,
                user_id,
                prompt_id: owned(&context.prompt_id),
                prompt_version: owned(&context.prompt_version),
                experiment_id: owned(&context.experiment_id),
                variant: owned(&context.variant),
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
    Ok((c.log_id.into_owned(), out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z0-9-]{1,12}", "\\PC{0,8}"]
    }

    /// A counted event as its own (the projector's commits hold them in records).
    #[derive(Debug, Clone)]
    struct Counted {
        event: UsageEvent,
        offset: i64,
        index: u32,
        cost_as_logged: bool,
    }

    impl Counted {
        fn view(&self) -> RawEvent<'_> {
            RawEvent {
                event: &self.event,
                offset: self.offset,
                index: self.index,
                received_at_ms: 0,
                cost_as_logged: self.cost_as_logged,
            }
        }
    }

    fn views(events: &[Counted]) -> impl Iterator<Item = RawEvent<'_>> {
        events.iter().map(Counted::view)
    }

    fn raw() -> impl Strategy<Value = Counted> {
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
                    Counted {
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
            let bytes = encode("log-1", views(&events)).expect("encode");
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

        /// Rows order events exactly as `drilldown::newest_first` does, ids sharing their
        /// first 16 bytes (or shorter than 16, or one a prefix of the other) included.
        #[test]
        fn rows_order_as_the_drill_down_does(
            events in proptest::collection::vec(
                (0i64..4, prop_oneof![
                    "[a-c]{0,20}",
                    "0123456789abcdef[a-c\\x00]{0,3}",
                    "\\PC{0,18}",
                ]),
                0..40,
            )
        ) {
            let raws: Vec<Counted> = events
                .into_iter()
                .map(|(at, id)| Counted {
                    event: UsageEvent { event_id: id, occurred_at_us: at, ..UsageEvent::example() },
                    offset: 0,
                    index: 0,
                    cost_as_logged: true,
                })
                .collect();
            let mut sheet = RefSheet::default();
            let rows: Vec<RefRow> = views(&raws).map(|r| sheet.row(r)).collect();
            for a in &rows {
                for b in &rows {
                    prop_assert_eq!(
                        a.newest_first(b),
                        crate::drilldown::newest_first(a.event, b.event)
                    );
                }
            }
        }

        /// A chunk encoded from rows read into a sheet shared with other events is the chunk
        /// its events make on their own, byte for byte.
        #[test]
        fn rows_of_a_shared_sheet_encode_as_their_events_alone(
            events in proptest::collection::vec(raw(), 1..60),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut sheet = RefSheet::default();
            let rows: Vec<RefRow> = views(&events).map(|r| sheet.row(r)).collect();
            let from = cut.index(events.len());
            let alone = encode("log-1", views(&events[from..])).expect("encode");
            let shared = encode_rows("log-1", &sheet, &rows[from..]).expect("encode rows");
            prop_assert_eq!(alone, shared);
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
        let counted = Counted {
            event: UsageEvent {
                cost: Cost::Computed(9),
                ..logged("b", 20)
            },
            offset: 3,
            index: 1,
            cost_as_logged: false,
        };
        let (_, refs) = decode(&encode("l", [counted.view()]).expect("encode")).expect("decode");
        let got = refs[0].resolve(logged("b", 20)).expect("found");
        assert_eq!((got.event_id.as_str(), got.cost), ("b", Cost::Computed(9)));
        // Another event where the reference points (another time) is not it.
        assert_eq!(refs[0].resolve(logged("c", 21)), None);
    }
}
