//! The rows the ClickHouse analytics store writes, and how rollups, checkpoints and log
//! bindings are encoded in them: one `tally_projection` row shape (kinds: legacy rollup,
//! checkpoint, dedup chunk, binding, sealed dedup generation and its blocks) and one
//! `tally_rollups` row shape.

use clickhouse::Row;
use serde::{Deserialize, Serialize};
use tally_domain::hll::Hll;
use tally_domain::log_binding::LogBinding;
use tally_domain::rollup::{Dims, Resolution, Rollup, RollupKey};
use tally_domain::sketch::LatencySketch;
use tally_domain::store::PartitionState;
use tally_schemas::{Environment, Pico};

use crate::failure::{Failure, Result};

/// Rollup rows of the first schema lived in [`TABLE`](super::store::TABLE) with this kind; `migrate` moves them.
pub(super) const KIND_LEGACY_ROLLUP: u8 = 0;

pub(super) const KIND_CHECKPOINT: u8 = 1;

pub(super) const KIND_DEDUP: u8 = 2;

/// A sealed dedup generation: `feature` names it (`gen-` and its id in hex), `bucket` is its
/// newest entry's second, `requests` its entry count, `version` the `next_offset` of the
/// commit that sealed it, `payload` its summary.
pub(super) const KIND_DEDUP_GENERATION: u8 = 4;
/// The `resolution` of a sealed generation's row: sealed from the open set, or a part of a
/// merged run ([`tally_domain::dedup::Placement`]).
pub(super) const GENERATION_SEALED: u32 = 0;
pub(super) const GENERATION_MERGED: u32 = 1;

/// A block of a sealed dedup generation: `feature` names the generation, `resolution` is the
/// block number, `bucket` the generation's newest second, `payload` the entries.
pub(super) const KIND_DEDUP_BLOCK: u8 = 5;

/// The `feature` value that names a sealed dedup generation.
pub(super) fn generation_name(id: u64) -> String {
    format!("gen-{id:016x}")
}

/// The generation id a `feature` value names.
pub(super) fn generation_id(name: &str) -> Result<u64> {
    name.strip_prefix("gen-")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .ok_or_else(|| Failure::Corrupt(format!("dedup generation name {name:?}")))
}

/// A log binding (payload: the [`LogBinding`] as JSON; `log_epoch` its epoch). `version` is
/// its revision (bound, then id learned, then retired) in the high bits, and in the low bits
/// the earlier binding wins: ClickHouse has no compare-and-set, so when projectors given
/// different logs bind an empty store at once, every reader settles on the same row (the first
/// bound), and the others, checking again after their bind, refuse.
pub(super) const KIND_BINDING: u8 = 3;

pub(super) const BINDING_BOUND: u64 = 1;

pub(super) const BINDING_ID_LEARNED: u64 = 2;

pub(super) const BINDING_RETIRED: u64 = 3;

/// A checkpoint or dedup chunk in [`TABLE`](super::store::TABLE) (the rollup columns are left empty).
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
pub(super) struct ProjectionRow {
    pub(super) kind: u8,
    pub(super) resolution: u32,
    pub(super) feature: String,
    pub(super) bucket: i64,
    pub(super) model: String,
    pub(super) provider: String,
    pub(super) environment: String,
    pub(super) log_partition: i32,
    pub(super) log_epoch: u32,
    pub(super) version: u64,
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) timeouts: u64,
    pub(super) latency_sum_us: u64,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) cached_input_tokens: u64,
    pub(super) cost_pico: String,
    pub(super) unpriced: u64,
    #[serde(with = "serde_bytes")]
    pub(super) latency: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub(super) users: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub(super) payload: Vec<u8>,
}

pub(super) const COLUMNS: &str = "kind, resolution, feature, bucket, model, provider, environment, log_partition, log_epoch, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, unpriced";

/// A sealed dedup generation's name and summary ([`KIND_DEDUP_GENERATION`]).
#[derive(Debug, Clone, Row, Deserialize)]
pub(super) struct SummaryRow {
    pub(super) feature: String,
    #[serde(with = "serde_bytes")]
    pub(super) payload: Vec<u8>,
}

/// A row of [`ROLLUPS`]: one key's merged state from one log partition's records before
/// offset `version`.
#[derive(Debug, Clone, Default, Row, Serialize, Deserialize)]
pub(super) struct RollupDbRow {
    /// UTC day of `bucket`, in days since the Unix epoch (ClickHouse `Date`).
    pub(super) day: u16,
    pub(super) resolution: u32,
    pub(super) feature: String,
    pub(super) bucket: i64,
    pub(super) model: String,
    pub(super) provider: String,
    pub(super) environment: String,
    pub(super) prompt_id: String,
    pub(super) prompt_version: String,
    pub(super) experiment_id: String,
    pub(super) variant: String,
    pub(super) log_partition: i32,
    /// The epoch of the log binding whose partition this row belongs to.
    pub(super) log_epoch: u32,
    pub(super) version: u64,
    pub(super) requests: u64,
    pub(super) errors: u64,
    pub(super) timeouts: u64,
    pub(super) latency_sum_us: u64,
    pub(super) input_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) cached_input_tokens: u64,
    pub(super) cost_pico: String,
    /// [`Rollup::cost_squares`] in decimal (empty in rows written before it was kept: 0).
    pub(super) cost_squares: String,
    pub(super) unpriced: u64,
    #[serde(with = "serde_bytes")]
    pub(super) latency: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub(super) users: Vec<u8>,
}

pub(super) const ROLLUP_COLUMNS: &str = "day, resolution, feature, bucket, model, provider, environment, prompt_id, prompt_version, experiment_id, variant, log_partition, log_epoch, version, requests, errors, timeouts, latency_sum_us, input_tokens, output_tokens, cached_input_tokens, cost_pico, cost_squares, unpriced";

/// A partition's checkpoint row in [`TABLE`](super::store::TABLE).
pub(super) fn checkpoint_row(
    partition: i32,
    epoch: u32,
    state: &PartitionState,
) -> Result<ProjectionRow> {
    Ok(ProjectionRow {
        kind: KIND_CHECKPOINT,
        log_partition: partition,
        log_epoch: epoch,
        version: u64::try_from(state.next_offset)
            .map_err(|_| Failure::invalid("offset", "is negative"))?,
        cost_pico: "0".into(),
        payload: serde_json::to_vec(state).map_err(|e| Failure::Backend(e.to_string()))?,
        ..ProjectionRow::default()
    })
}

/// A binding's row in [`TABLE`](super::store::TABLE), at `revision` (see [`KIND_BINDING`] for its version).
pub(super) fn binding_row(binding: &LogBinding, revision: u64) -> Result<ProjectionRow> {
    const LOW: u64 = (1 << 48) - 1;
    let bound_ms = u64::try_from(binding.bound_at.timestamp_millis()).unwrap_or(0);
    Ok(ProjectionRow {
        kind: KIND_BINDING,
        log_epoch: binding.epoch,
        version: (revision << 48) | (LOW - bound_ms.min(LOW)),
        cost_pico: "0".into(),
        payload: serde_json::to_vec(binding).map_err(|e| Failure::Backend(e.to_string()))?,
        ..ProjectionRow::default()
    })
}

pub(super) fn decode(row: RollupDbRow, with_sketches: bool) -> Result<(RollupKey, Rollup)> {
    let resolution = Resolution::from_seconds(i64::from(row.resolution))
        .ok_or_else(|| Failure::Corrupt(format!("resolution {}", row.resolution)))?;
    let environment = Environment::parse(&row.environment)
        .ok_or_else(|| Failure::Corrupt(format!("environment {}", row.environment)))?;
    let cost: i128 = row
        .cost_pico
        .parse()
        .map_err(|_| Failure::Corrupt("cost".into()))?;
    let cost_squares: u128 = match row.cost_squares.as_str() {
        "" => 0,
        text => text
            .parse()
            .map_err(|_| Failure::Corrupt("cost_squares".into()))?,
    };
    let mut rollup = Rollup {
        requests: row.requests,
        errors: row.errors,
        timeouts: row.timeouts,
        latency_sum_us: row.latency_sum_us,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cached_input_tokens: row.cached_input_tokens,
        cost: Pico(cost),
        cost_squares,
        unpriced: row.unpriced,
        ..Rollup::default()
    };
    if with_sketches {
        rollup.latency = LatencySketch::decode(&mut row.latency.as_slice())
            .ok_or_else(|| Failure::Corrupt("latency sketch".into()))?;
        rollup.users = Hll::decode(&mut row.users.as_slice())
            .ok_or_else(|| Failure::Corrupt("user sketch".into()))?;
    }
    let key = RollupKey {
        resolution,
        bucket: row.bucket,
        dims: Dims {
            feature: row.feature,
            model: row.model,
            provider: row.provider,
            environment,
            prompt_id: row.prompt_id,
            prompt_version: row.prompt_version,
            experiment_id: row.experiment_id,
            variant: row.variant,
        },
    };
    Ok((key, rollup))
}

/// A rollup row of the first schema, as a row of [`ROLLUPS`] (same columns, plus its day).
pub(super) fn from_legacy(row: ProjectionRow) -> RollupDbRow {
    RollupDbRow {
        day: day_of(row.bucket),
        resolution: row.resolution,
        feature: row.feature,
        bucket: row.bucket,
        model: row.model,
        provider: row.provider,
        environment: row.environment,
        prompt_id: String::new(),
        prompt_version: String::new(),
        experiment_id: String::new(),
        variant: String::new(),
        log_partition: row.log_partition,
        log_epoch: 0,
        version: row.version,
        requests: row.requests,
        errors: row.errors,
        timeouts: row.timeouts,
        latency_sum_us: row.latency_sum_us,
        input_tokens: row.input_tokens,
        output_tokens: row.output_tokens,
        cached_input_tokens: row.cached_input_tokens,
        cost_pico: row.cost_pico,
        cost_squares: String::new(),
        unpriced: row.unpriced,
        latency: row.latency,
        users: row.users,
    }
}

/// Days since the Unix epoch of the UTC day holding `bucket` (ClickHouse `Date`).
pub(super) fn day_of(bucket: i64) -> u16 {
    bucket.div_euclid(86_400).clamp(0, i64::from(u16::MAX)) as u16
}

pub(super) fn encode(
    key: &RollupKey,
    r: &Rollup,
    partition: i32,
    epoch: u32,
    version: u64,
) -> RollupDbRow {
    RollupDbRow {
        day: day_of(key.bucket),
        resolution: key.resolution.seconds() as u32,
        feature: key.dims.feature.clone(),
        bucket: key.bucket,
        model: key.dims.model.clone(),
        provider: key.dims.provider.clone(),
        environment: key.dims.environment.as_str().to_string(),
        prompt_id: key.dims.prompt_id.clone(),
        prompt_version: key.dims.prompt_version.clone(),
        experiment_id: key.dims.experiment_id.clone(),
        variant: key.dims.variant.clone(),
        log_partition: partition,
        log_epoch: epoch,
        version,
        requests: r.requests,
        errors: r.errors,
        timeouts: r.timeouts,
        latency_sum_us: r.latency_sum_us,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_input_tokens,
        cost_pico: r.cost.0.to_string(),
        cost_squares: r.cost_squares.to_string(),
        unpriced: r.unpriced,
        latency: r.encode_latency(),
        users: r.encode_users(),
    }
}
