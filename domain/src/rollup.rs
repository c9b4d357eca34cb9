//! Rollups: what the projector folds events into and the query API reads.
//!
//! A rollup row is keyed by (resolution, bucket start, feature, model, provider, environment,
//! prompt id, prompt version, experiment id, variant); the prompt and experiment fields are empty
//! for events that name none, so per-prompt-version and per-variant metrics come from the same
//! rows as everything else.
//! Buckets are UTC-aligned: minutes, hours and days; besides them, running totals since the
//! projection began ([`Resolution::Total`], without the prompt and experiment fields) feed the Prometheus
//! counters without re-summing days of rows. Every event contributes to exactly one row
//! per resolution, chosen by its `occurred_at` (not by when it arrived), so late and out-of-order
//! events land where they belong. All fields are sums, maxima of sketch registers or bucket
//! counts: merging rows is exact, associative and commutative, which is what makes replay equal
//! live projection and lets coarse rows be built from fine ones.

use std::collections::{BTreeMap, HashMap};

use tally_schemas::event::{Cost, Status};
use tally_schemas::{Environment, Pico, UsageEvent};

use crate::hll::Hll;
use crate::short_text::ShortText;
use crate::sketch::{LatencySketch, LatencyTotal};

/// Bucket width of a rollup row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Minute,
    Hour,
    Day,
    /// Running totals since the projection began: one row per (feature, model, provider,
    /// environment), prompt and experiment fields empty, in the single bucket [`TOTAL_BUCKET`]. Retention never
    /// drops them (their bucket lies beyond any retention horizon), so what they count only ever
    /// grows — the source of the Prometheus counters.
    Total,
}

/// The one bucket of [`Resolution::Total`] rows: 2100-01-01T00:00:00Z, never older than a
/// retention horizon, and a day every supported ClickHouse names correctly in its day
/// partitions (18.16's calendar ends in 2105; a 16-bit `Date` in 2149).
pub const TOTAL_BUCKET: i64 = 4_102_444_800;

impl Resolution {
    /// The time-bucketed resolutions: every event lies in exactly one row of each.
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];
    /// Every kind of row a store keeps: the time buckets and the running totals.
    pub const STORED: [Resolution; 4] = [
        Resolution::Minute,
        Resolution::Hour,
        Resolution::Day,
        Resolution::Total,
    ];

    /// Width in seconds (also the stored code of the resolution); 0 for the running totals.
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Minute => 60,
            Resolution::Hour => 3_600,
            Resolution::Day => 86_400,
            Resolution::Total => 0,
        }
    }

    pub fn from_seconds(seconds: i64) -> Option<Resolution> {
        Self::STORED.into_iter().find(|r| r.seconds() == seconds)
    }

    /// Start (Unix seconds) of the bucket holding `ts` ([`TOTAL_BUCKET`] for the totals).
    pub fn bucket_of(self, ts: i64) -> i64 {
        match self {
            Resolution::Total => TOTAL_BUCKET,
            r => ts.div_euclid(r.seconds()) * r.seconds(),
        }
    }
}

/// The dimensions of a rollup row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dims {
    pub feature: String,
    pub model: String,
    pub provider: String,
    pub environment: Environment,
    /// The event's `prompt_id`, empty when it named none.
    pub prompt_id: String,
    /// The event's `prompt_version`, empty when it named none.
    pub prompt_version: String,
    /// The event's `experiment_id`, empty when it named none.
    pub experiment_id: String,
    /// The event's `variant`, empty when it named none.
    pub variant: String,
}

/// Identity of a rollup row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub resolution: Resolution,
    /// Bucket start, Unix seconds (UTC).
    pub bucket: i64,
    pub dims: Dims,
}

/// The measures of one rollup row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Sum of latencies in microseconds (for the mean).
    pub latency_sum_us: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// Exact cost of the priced requests.
    pub cost: Pico,
    /// Requests whose model had no price at `occurred_at` and no reported cost.
    pub unpriced: u64,
    /// Sum over the priced requests of each one's cost squared (pico-dollars²): with `cost`
    /// it gives the variance of cost per request. Saturates instead of wrapping (a sum past
    /// 3.4·10³⁸ would need 10¹⁴ one-dollar requests in one row).
    pub cost_squares: u128,
    pub latency: LatencySketch,
    pub users: Hll,
}

impl Rollup {
    /// Folds one priced event in.
    pub fn add_event(&mut self, e: &UsageEvent) {
        self.requests += 1;
        match e.status {
            Status::Success => {}
            Status::Error => self.errors += 1,
            Status::Timeout => self.timeouts += 1,
        }
        self.latency_sum_us += e.latency_us;
        self.input_tokens += e.input_tokens;
        self.output_tokens += e.output_tokens;
        self.cached_input_tokens += e.cached_input_tokens;
        match e.cost {
            Cost::Reported(p) | Cost::Computed(p) => {
                self.cost += Pico(i128::from(p));
                let square = i128::from(p).unsigned_abs().pow(2);
                self.cost_squares = self.cost_squares.saturating_add(square);
            }
            Cost::Unpriced | Cost::Pending => self.unpriced += 1,
        }
        self.latency.insert(e.latency_us);
        if let Some(user) = &e.user_id {
            self.users.insert(user);
        }
    }

    /// Adds `other` into `self` (sums, histogram counts, register maxima).
    pub fn merge(&mut self, other: &Rollup) {
        self.merge_sums(other);
        self.latency.merge(&other.latency);
        self.users.merge(&other.users);
    }

    /// Adds only the plain sums (for queries that need no percentiles or unique users).
    pub fn merge_sums(&mut self, other: &Rollup) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.latency_sum_us += other.latency_sum_us;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cost += other.cost;
        self.cost_squares = self.cost_squares.saturating_add(other.cost_squares);
        self.unpriced += other.unpriced;
    }

    pub fn failures(&self) -> u64 {
        self.errors + self.timeouts
    }

    /// The latency sketch and user sketch in one blob each.
    pub fn encode_latency(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.latency.encode(&mut out);
        out
    }

    pub fn encode_users(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.users.encode(&mut out);
        out
    }
}

/// Many rollups merged into one, as [`Rollup::merge`] of each would, but with the latency counts
/// summed in a dense array ([`LatencyTotal`]) instead of sorted lists merged one at a time: the
/// way to merge the hundreds of rows behind a dashboard answer.
#[derive(Debug, Clone, Default)]
pub struct RollupTotal {
    /// Everything but the latency sketch, merged as rows come.
    rest: Rollup,
    latency: LatencyTotal,
}

impl RollupTotal {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, rollup: &Rollup) {
        self.rest.merge_sums(rollup);
        self.rest.users.merge(&rollup.users);
        self.latency.add(&rollup.latency);
    }

    /// Adds a row whose sketches are still encoded ([`LatencySketch::encode`], [`Hll::encode`];
    /// `sums`' own sketches are ignored) straight from the bytes: the same total as `add` of the
    /// decoded row. `Err` names the sketch that does not decode; the total then holds part of
    /// the row and is to be discarded.
    pub fn add_encoded(
        &mut self,
        sums: &Rollup,
        latency: &[u8],
        users: &[u8],
    ) -> Result<(), &'static str> {
        self.rest.merge_sums(sums);
        self.latency
            .add_encoded(&mut &*latency)
            .ok_or("latency sketch")?;
        self.rest
            .users
            .merge_encoded(&mut &*users)
            .ok_or("user sketch")?;
        Ok(())
    }

    /// The merged rollup.
    pub fn rollup(self) -> Rollup {
        Rollup {
            latency: self.latency.sketch(),
            ..self.rest
        }
    }
}

/// One stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupRow {
    pub key: RollupKey,
    pub rollup: Rollup,
}

/// Folds events (already deduplicated and priced) into one delta per row at every resolution.
///
/// Events are grouped per minute with borrowed keys (one hash lookup per event); hour and day
/// deltas are merged from the minute deltas, which is exact because merging is.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a UsageEvent>) -> BTreeMap<RollupKey, Rollup> {
    // The strings are compared inline (`short_text`): one lookup compares seven of them.
    type MinuteKey<'e> = (
        i64,
        ShortText<'e>,
        ShortText<'e>,
        ShortText<'e>,
        Environment,
        ShortText<'e>,
        ShortText<'e>,
        ShortText<'e>,
        ShortText<'e>,
    );
    let mut minutes: HashMap<MinuteKey<'a>, Rollup, foldhash::fast::RandomState> =
        HashMap::default();
    let text = |s: Option<&'a String>| ShortText(s.map_or("", String::as_str));
    for e in events {
        let minute = Resolution::Minute.bucket_of(e.occurred_at_secs());
        minutes
            .entry((
                minute,
                ShortText(&e.feature),
                ShortText(&e.model),
                ShortText(&e.provider),
                e.environment,
                text(e.prompt_id.as_ref()),
                text(e.prompt_version.as_ref()),
                text(e.experiment_id.as_ref()),
                text(e.variant.as_ref()),
            ))
            .or_default()
            .add_event(e);
    }
    let mut out = BTreeMap::new();
    for (
        (
            minute,
            ShortText(feature),
            ShortText(model),
            ShortText(provider),
            environment,
            ShortText(prompt_id),
            ShortText(prompt_version),
            ShortText(experiment_id),
            ShortText(variant),
        ),
        rollup,
    ) in minutes
    {
        let dims = Dims {
            feature: feature.to_string(),
            model: model.to_string(),
            provider: provider.to_string(),
            environment,
            prompt_id: prompt_id.to_string(),
            prompt_version: prompt_version.to_string(),
            experiment_id: experiment_id.to_string(),
            variant: variant.to_string(),
        };
        for resolution in [Resolution::Hour, Resolution::Day] {
            let key = RollupKey {
                resolution,
                bucket: resolution.bucket_of(minute),
                dims: dims.clone(),
            };
            out.entry(key)
                .or_insert_with(Rollup::default)
                .merge(&rollup);
        }
        let totals = RollupKey {
            resolution: Resolution::Total,
            bucket: TOTAL_BUCKET,
            dims: Dims {
                prompt_id: String::new(),
                prompt_version: String::new(),
                experiment_id: String::new(),
                variant: String::new(),
                ..dims.clone()
            },
        };
        out.entry(totals)
            .or_insert_with(Rollup::default)
            .merge(&rollup);
        out.insert(
            RollupKey {
                resolution: Resolution::Minute,
                bucket: minute,
                dims,
            },
            rollup,
        );
    }
    out
}

/// Merges `deltas` into `into` (used by stores and tests to apply a fold result).
pub fn apply(into: &mut BTreeMap<RollupKey, Rollup>, deltas: BTreeMap<RollupKey, Rollup>) {
    for (key, delta) in deltas {
        match into.get_mut(&key) {
            Some(existing) => existing.merge(&delta),
            None => {
                into.insert(key, delta);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tally_schemas::event::Operation;

    fn event(i: u64, second: i64, feature: u8, status: u8) -> UsageEvent {
        UsageEvent {
            event_id: format!("e{i}"),
            occurred_at_us: second * 1_000_000 + 123,
            feature: format!("f{feature}"),
            model: "m".into(),
            provider: "p".into(),
            environment: Environment::Staging,
            operation: Operation::Chat,
            status: [Status::Success, Status::Error, Status::Timeout][usize::from(status % 3)],
            latency_us: i * 977 % 5_000_000,
            input_tokens: i % 101,
            output_tokens: i % 7,
            cached_input_tokens: 0,
            cost: if i.is_multiple_of(5) {
                Cost::Unpriced
            } else {
                Cost::Computed(i as i64 * 31)
            },
            user_id: Some(format!("u{}", i % 17)),
            ..UsageEvent::example()
        }
    }

    proptest! {
        #[test]
        fn folding_is_order_independent(specs in prop::collection::vec((0i64..7200, 0u8..3, 0u8..3), 1..200), seed in any::<u64>()) {
            let events: Vec<UsageEvent> = specs.iter().enumerate().map(|(i, &(s, f, st))| event(i as u64, s, f, st)).collect();
            let mut shuffled = events.clone();
            // deterministic Fisher–Yates from the seed
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let a = fold(&events);
            let b = fold(&shuffled);
            prop_assert_eq!(&a, &b);
            // split folds merged equal the whole fold
            let (left, right) = shuffled.split_at(shuffled.len() / 2);
            let mut merged = fold(left);
            apply(&mut merged, fold(right));
            prop_assert_eq!(&merged, &a);
            // every event lands once per resolution
            for res in Resolution::ALL {
                let n: u64 = a.iter().filter(|(k, _)| k.resolution == res).map(|(_, r)| r.requests).sum();
                prop_assert_eq!(n, events.len() as u64);
            }
        }

        #[test]
        fn a_rollup_total_equals_the_events_folded_together(specs in prop::collection::vec((0i64..7200, 0u8..3, 0u8..3), 1..200)) {
            let events: Vec<UsageEvent> = specs.iter().enumerate().map(|(i, &(s, f, st))| event(i as u64, s, f, st)).collect();
            // Every minute row of every feature, added up, is every event in one rollup.
            let mut total = RollupTotal::new();
            for (key, rollup) in fold(&events) {
                if key.resolution == Resolution::Minute {
                    total.add(&rollup);
                }
            }
            let mut direct = Rollup::default();
            events.iter().for_each(|e| direct.add_event(e));
            prop_assert_eq!(total.rollup(), direct);
        }
    }
}
