//! Bucket sums summed inside SQLite ([`AnalyticsStore::bucket_sums`]): one row per bucket
//! leaves the database instead of one per dimension combination, and no dimension text is
//! copied out. Money columns are 16-byte little-endian integers, which SQLite's `sum` cannot
//! add; two aggregate functions registered on every reader connection add them exactly, the
//! way [`Rollup::merge_sums`] does (`i128` cost, saturating `u128` sum of squares).
//!
//! [`AnalyticsStore::bucket_sums`]: tally_domain::store::AnalyticsStore::bucket_sums

use std::collections::BTreeMap;

use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::Connection;
use tally_domain::rollup::{Resolution, Rollup};
use tally_domain::store::{BucketSums, Filter, Span, SumsOf};
use tally_schemas::Pico;

use super::{blob_16, filter_sql};
use crate::failure::Result;

/// Registers the money aggregates on `conn`.
pub(super) fn register(conn: &Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_aggregate_function("tally_sum_i128", 1, flags, SumI128)?;
    conn.create_aggregate_function("tally_sum_u128_saturating", 1, flags, SumU128Saturating)?;
    Ok(())
}

fn le_16(ctx: &Context<'_>) -> rusqlite::Result<[u8; 16]> {
    let blob = ctx.get_raw(0).as_blob()?;
    blob.try_into()
        .map_err(|_| rusqlite::Error::UserFunctionError("a money column is not 16 bytes".into()))
}

struct SumI128;

impl Aggregate<i128, Vec<u8>> for SumI128 {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<i128> {
        Ok(0)
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut i128) -> rusqlite::Result<()> {
        *acc += i128::from_le_bytes(le_16(ctx)?);
        Ok(())
    }
    fn finalize(&self, _: &mut Context<'_>, acc: Option<i128>) -> rusqlite::Result<Vec<u8>> {
        Ok(acc.unwrap_or(0).to_le_bytes().to_vec())
    }
}

struct SumU128Saturating;

impl Aggregate<u128, Vec<u8>> for SumU128Saturating {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<u128> {
        Ok(0)
    }
    fn step(&self, ctx: &mut Context<'_>, acc: &mut u128) -> rusqlite::Result<()> {
        *acc = acc.saturating_add(u128::from_le_bytes(le_16(ctx)?));
        Ok(())
    }
    fn finalize(&self, _: &mut Context<'_>, acc: Option<u128>) -> rusqlite::Result<Vec<u8>> {
        Ok(acc.unwrap_or(0).to_le_bytes().to_vec())
    }
}

/// A summed column: its SQL, and the sum it fills in.
#[derive(Clone, Copy)]
enum Column {
    Requests,
    Errors,
    Timeouts,
    LatencySum,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    Cost,
    CostSquares,
    Unpriced,
}

impl Column {
    fn sql(self) -> &'static str {
        match self {
            Column::Requests => "sum(requests)",
            Column::Errors => "sum(errors)",
            Column::Timeouts => "sum(timeouts)",
            Column::LatencySum => "sum(latency_sum_us)",
            Column::InputTokens => "sum(input_tokens)",
            Column::OutputTokens => "sum(output_tokens)",
            Column::CachedInputTokens => "sum(cached_input_tokens)",
            Column::Cost => "tally_sum_i128(cost_pico)",
            Column::CostSquares => "tally_sum_u128_saturating(cost_squares)",
            Column::Unpriced => "sum(unpriced)",
        }
    }

    /// Reads column `i` of `row` into its place in `r`.
    fn read(self, r: &mut Rollup, row: &rusqlite::Row<'_>, i: usize) -> Result<()> {
        let count = || -> Result<u64> { Ok(row.get::<_, i64>(i)? as u64) };
        match self {
            Column::Requests => r.requests = count()?,
            Column::Errors => r.errors = count()?,
            Column::Timeouts => r.timeouts = count()?,
            Column::LatencySum => r.latency_sum_us = count()?,
            Column::InputTokens => r.input_tokens = count()?,
            Column::OutputTokens => r.output_tokens = count()?,
            Column::CachedInputTokens => r.cached_input_tokens = count()?,
            Column::Cost => r.cost = Pico(i128::from_le_bytes(blob_16(row, i, "cost")?)),
            Column::CostSquares => {
                r.cost_squares = u128::from_le_bytes(blob_16(row, i, "cost_squares")?);
            }
            Column::Unpriced => r.unpriced = count()?,
        }
        Ok(())
    }

    /// The columns `sums` reads: SQLite pays per column read, so no more than asked.
    fn of(sums: SumsOf) -> &'static [Column] {
        match sums {
            SumsOf::Requests => &[Column::Requests],
            SumsOf::Money => &[
                Column::Requests,
                Column::Cost,
                Column::CostSquares,
                Column::Unpriced,
            ],
            SumsOf::All => &[
                Column::Requests,
                Column::Cost,
                Column::CostSquares,
                Column::Unpriced,
                Column::Errors,
                Column::Timeouts,
                Column::LatencySum,
                Column::InputTokens,
                Column::OutputTokens,
                Column::CachedInputTokens,
            ],
        }
    }
}

/// The `sums` of the rows matching `filter` in `spans`, one per resolution and bucket.
pub(super) fn bucket_sums(
    conn: &Connection,
    filter: &Filter,
    spans: &[Span],
    sums: SumsOf,
) -> Result<Vec<BucketSums>> {
    let columns = Column::of(sums);
    let (conditions, values) = filter_sql(filter, 4);
    let select: Vec<&str> = columns.iter().map(|c| c.sql()).collect();
    let sql = format!(
        "SELECT bucket, {} FROM rollups
         WHERE resolution = ?1 AND bucket >= ?2 AND bucket < ?3{conditions}
         GROUP BY bucket",
        select.join(", ")
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut merged: BTreeMap<(Resolution, i64), Rollup> = BTreeMap::new();
    for span in spans.iter().filter(|s| s.from < s.to) {
        let mut params: Vec<rusqlite::types::Value> = vec![
            span.resolution.seconds().into(),
            span.from.into(),
            span.to.into(),
        ];
        params.extend(values.iter().cloned());
        let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
        while let Some(row) = rows.next()? {
            let mut bucket = Rollup::default();
            for (i, column) in columns.iter().enumerate() {
                column.read(&mut bucket, row, i + 1)?;
            }
            merged
                .entry((span.resolution, row.get(0)?))
                .or_default()
                .merge_sums(&bucket);
        }
    }
    Ok(merged
        .into_iter()
        .map(|((resolution, bucket), sums)| BucketSums {
            resolution,
            bucket,
            sums,
        })
        .collect())
}
