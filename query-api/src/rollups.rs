//! Reading rollup rows: the one way a route asks the analytics store for the rows of a window
//! (never raw events), so every number on every route comes from the same rows, either handed
//! over one by one ([`scan`]) or summed per bucket by the store ([`bucket_sums`]).
//!
//! A chart's window that ends now is read with today's row in place of today's hour and minute
//! rows (with day steps; with shorter steps, the current hour's row in place of its minute rows)
//! whenever they hold the same events ([`scan_stepped_into`], [`by_coarser_rows`]): one row per
//! combination of dimensions instead of up to 82 (or 59), with the same numbers. A chart's rows
//! are folded into its totals as the store reads them ([`RowFold`]); where the store hands the
//! sketches over as stored (the embedded store), they are added straight from the bytes,
//! except the few rows a plan may still drop (one per combination of dimensions and any
//! probe's), which are decoded and held until it is settled. The rows of closed buckets are
//! kept between reads where the store says when they change ([`crate::row_cache`]): only the
//! buckets changed since are read again.

use std::any::Any;

use tally_domain::rollup::RollupRow;
use tally_domain::store::{
    BucketSums, Filter, RowFold, ScanRequest, ScannedRow, Span, StoreResult, SumsOf,
};

use crate::row_cache::{Keeping, Read, RowCache};
use tally_domain::window::{by_coarser_rows, CoarserRowsPlan, Window};
use tally_http::http::ApiError;

use crate::state::QueryState;

/// The rows matching `filter` in `spans`, with their sketches when `with_sketches`.
pub async fn scan(
    state: &QueryState,
    filter: &Filter,
    spans: Vec<Span>,
    with_sketches: bool,
) -> Result<Vec<RollupRow>, ApiError> {
    read(state, filter, spans, with_sketches).await
}

/// The rows of `window` for a chart of `step` seconds ([`Window::stepped_spans`]: no row crosses
/// a step), the window's end read from the widest rows that hold exactly its events, handed to
/// `fold` as they are read (with their sketches as stored when the store keeps them so, for
/// [`ScannedRow::add_to`]); `fold` comes back with each of the window's events in exactly one
/// row.
pub async fn scan_stepped_into<F: RowFold>(
    state: &QueryState,
    filter: &Filter,
    window: &Window,
    step: i64,
    with_sketches: bool,
    fold: F,
) -> Result<F, ApiError> {
    let spans = window.stepped_spans(step);
    // One clock reading for the plan and the kept rows: a bucket the plan may drop is never
    // one the clock has ended, so it is always read.
    let now_s = state.clock.now().timestamp();
    let Some(plan) = by_coarser_rows(&spans, now_s, step) else {
        return read_into(state, filter, spans, with_sketches, now_s, fold).await;
    };
    // The coarse rows and the probes' rows wait until the plan is settled; the rest are folded.
    let read = Holding {
        fold,
        plan,
        held: Vec::new(),
    };
    let Holding {
        mut fold,
        plan,
        mut held,
    } = read_into(
        state,
        filter,
        read.plan.spans.clone(),
        with_sketches,
        now_s,
        read,
    )
    .await?;
    // Events stamped ahead of the clock in the coarse rows: the finer rows take their place.
    let trailing = plan
        .settle(&mut held, |r| (r.key.resolution, r.key.bucket))
        .map(<[Span]>::to_vec);
    for row in held {
        fold.add(row.into())?;
    }
    match trailing {
        Some(trailing) => read_into(state, filter, trailing, with_sketches, now_s, fold).await,
        None => Ok(fold),
    }
}

/// A fold whose rows that a [`CoarserRowsPlan`] may drop are held back (decoded: one per
/// combination of dimensions, and the probes' rare rows).
struct Holding<F> {
    fold: F,
    plan: CoarserRowsPlan,
    held: Vec<RollupRow>,
}

impl<F: RowFold> RowFold for Holding<F> {
    fn add(&mut self, row: ScannedRow<'_>) -> StoreResult<()> {
        if self.plan.may_drop(row.key.resolution, row.key.bucket) {
            self.held.push(row.into_row()?);
            Ok(())
        } else {
            self.fold.add(row)
        }
    }
}

/// The rows of `spans` handed to `fold`: the buckets ended by `now_s` kept from earlier reads
/// of the same rows, unchanged since, from [`RowCache`]; the rest from the store (and kept).
async fn read_into<F: RowFold>(
    state: &QueryState,
    filter: &Filter,
    spans: Vec<Span>,
    with_sketches: bool,
    now_s: i64,
    mut fold: F,
) -> Result<F, ApiError> {
    let versions = if with_sketches {
        state.analytics.row_versions()
    } else {
        None
    };
    let mut plan = state
        .row_cache
        .plan(filter, Read::Rows, &spans, now_s, versions);
    RowCache::fold_kept(&plan, &mut fold)?;
    if plan.to_read.is_empty() {
        return Ok(fold);
    }
    let request = ScanRequest {
        filter: filter.clone(),
        spans: std::mem::take(&mut plan.to_read),
        with_sketches,
    };
    let keeping = RowCache::keeping(plan, fold);
    let back: Box<dyn Any> = state
        .analytics
        .scan_into(request, Box::new(keeping))
        .await?;
    let keeping = back
        .downcast::<Keeping<F>>()
        .map_err(|_| ApiError::internal("the analytics store handed back another fold"))?;
    Ok(state.row_cache.kept(filter, *keeping))
}

async fn read(
    state: &QueryState,
    filter: &Filter,
    spans: Vec<Span>,
    with_sketches: bool,
) -> Result<Vec<RollupRow>, ApiError> {
    Ok(state
        .analytics
        .scan(ScanRequest {
            filter: filter.clone(),
            spans,
            with_sketches,
        })
        .await?)
}

/// The sums of the rows matching `filter` in `spans`, one per bucket (every dimension merged),
/// ordered by resolution and bucket: for totals and time series that need neither sketches
/// nor dimensions. The closed buckets' sums kept from earlier reads, unchanged since, come
/// from [`RowCache`]; the rest from the store (and kept).
pub async fn bucket_sums(
    state: &QueryState,
    filter: &Filter,
    spans: &[Span],
    sums: SumsOf,
) -> Result<Vec<BucketSums>, ApiError> {
    let now_s = state.clock.now().timestamp();
    let versions = state.analytics.row_versions();
    let mut plan = state
        .row_cache
        .plan(filter, Read::Sums(sums), spans, now_s, versions);
    let mut out = RowCache::kept_sums(&plan);
    if !plan.to_read.is_empty() {
        let to_read = std::mem::take(&mut plan.to_read);
        let read = state.analytics.bucket_sums(filter, &to_read, sums).await?;
        state.row_cache.keep_sums(filter, plan, &read);
        out.extend(read);
    }
    out.sort_unstable_by_key(|b| (b.resolution, b.bucket));
    // Spans that overlap name a bucket twice; the store answers it once.
    out.dedup_by_key(|b| (b.resolution, b.bucket));
    Ok(out)
}
