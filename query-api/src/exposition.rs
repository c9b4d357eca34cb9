//! The business metrics Prometheus scrapes, in its text exposition format: traffic, latency,
//! tokens and money per (feature, model, provider, environment), budgets, and firing alerts.
//!
//! **Where the numbers come from.** Counters are read from the analytics store's running totals
//! ([`Resolution::Total`] rows), which the projector commits together with the rollups, exactly
//! once, and which retention never drops. So a counter never goes backwards — not across
//! restarts, not when retention deletes old days — and every query-api replica serves the same
//! values; a scrape reads one row per label set, never days of rollups. (`tally rebuild` starts
//! the totals again from the log, which Prometheus sees as a counter reset.) Budget gauges come
//! from [`BudgetStatus::read`], the figures of `/analytics/budgets`; `tally_alerts_firing` from
//! the stored alerts.
//!
//! **Latency histogram.** `tally_request_duration_seconds` uses the OpenTelemetry GenAI
//! `gen_ai.client.operation.duration` boundaries, re-bucketed from the latency sketch: a request
//! within 2% of a boundary may be counted in the neighbouring bucket; `_sum` and `_count` are
//! exact.
//!
//! **Bounded labels.** Label values are feature, model, provider and environment names (never
//! user ids), at most [`MAX_LABEL_SETS`] sets: the first in (feature, model, provider,
//! environment) order are exported as they are, and the rest are summed into one set whose
//! labels are all [`OVERFLOW`]. Since label sets are only ever added, a set that leaves the
//! exported ones moves wholly into the overflow set, so no series ever decreases.

use std::collections::BTreeMap;
use std::fmt::Write;

use tally_domain::alerting::{AlertKind, AlertState, BudgetStatus};
use tally_domain::config::Severity;
use tally_domain::rollup::{Resolution, Rollup, TOTAL_BUCKET};
use tally_domain::store::{AlertQuery, Filter, ScanRequest, Span, StoreResult};

use crate::state::QueryState;

/// Most (feature, model, provider, environment) label sets exported.
pub const MAX_LABEL_SETS: usize = 1_000;
/// The label value of the set that sums everything past [`MAX_LABEL_SETS`].
pub const OVERFLOW: &str = "_other";
/// Upper bounds (seconds) of `tally_request_duration_seconds`: OpenTelemetry's GenAI
/// `gen_ai.client.operation.duration` advice.
pub const DURATION_BOUNDS_S: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

type LabelSet = [String; 4];

/// A budget gauge: its name, help, and value of a status.
type Gauge = (&'static str, &'static str, fn(&BudgetStatus) -> String);

/// The running totals per label set, capped.
async fn totals(state: &QueryState) -> StoreResult<BTreeMap<LabelSet, Rollup>> {
    let rows = state
        .analytics
        .scan(ScanRequest {
            filter: Filter::default(),
            spans: vec![Span {
                resolution: Resolution::Total,
                from: TOTAL_BUCKET,
                to: TOTAL_BUCKET + 1,
            }],
            with_sketches: true,
        })
        .await?;
    let mut sets: BTreeMap<LabelSet, Rollup> = BTreeMap::new();
    for row in rows {
        let d = &row.key.dims;
        let set = [
            d.feature.clone(),
            d.model.clone(),
            d.provider.clone(),
            d.environment.as_str().to_string(),
        ];
        sets.entry(set).or_default().merge(&row.rollup);
    }
    if sets.len() > MAX_LABEL_SETS {
        let overflow_sets = sets.split_off(
            &sets
                .keys()
                .nth(MAX_LABEL_SETS - 1)
                .cloned()
                .unwrap_or_default(),
        );
        let mut rest = Rollup::default();
        overflow_sets.values().for_each(|r| rest.merge(r));
        sets.insert(std::array::from_fn(|_| OVERFLOW.to_string()), rest);
    }
    Ok(sets)
}

/// A label value with `\`, `"` and newlines escaped.
fn escaped(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains(['\\', '"', '\n']) {
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
            .into()
    } else {
        value.into()
    }
}

/// The label set as `feature="…",model="…",provider="…",environment="…"`, written once per set.
fn labels(set: &LabelSet) -> String {
    let [feature, model, provider, environment] = set.each_ref().map(|v| escaped(v));
    format!(
        "feature=\"{feature}\",model=\"{model}\",provider=\"{provider}\",environment=\"{environment}\""
    )
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The running totals of one label set, with its labels written out once.
struct Series {
    labels: String,
    totals: Rollup,
}

fn traffic(out: &mut String, series: &[Series]) {
    header(
        out,
        "tally_requests_total",
        "counter",
        "AI requests counted, by feature, model, provider, environment and status.",
    );
    for Series { labels, totals: r } in series {
        let success = r.requests - r.failures();
        for (status, n) in [
            ("success", success),
            ("error", r.errors),
            ("timeout", r.timeouts),
        ] {
            let _ = writeln!(
                out,
                "tally_requests_total{{{labels},status=\"{status}\"}} {n}"
            );
        }
    }
    header(
        out,
        "tally_request_duration_seconds",
        "histogram",
        "Latency of AI requests (OpenTelemetry GenAI operation-duration buckets).",
    );
    let bounds_us: Vec<f64> = DURATION_BOUNDS_S.iter().map(|s| s * 1e6).collect();
    for Series { labels, totals: r } in series {
        let name = "tally_request_duration_seconds";
        for (bound, count) in DURATION_BOUNDS_S
            .iter()
            .zip(r.latency.cumulative_counts(&bounds_us))
        {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", r.requests);
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            r.latency_sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", r.requests);
    }
}

fn usage(out: &mut String, series: &[Series]) {
    header(
        out,
        "tally_tokens_total",
        "counter",
        "Tokens of AI requests, by type (input, output, cached_input).",
    );
    for Series { labels, totals: r } in series {
        for (kind, n) in [
            ("input", r.input_tokens),
            ("output", r.output_tokens),
            ("cached_input", r.cached_input_tokens),
        ] {
            let _ = writeln!(out, "tally_tokens_total{{{labels},type=\"{kind}\"}} {n}");
        }
    }
    header(
        out,
        "tally_cost_usd_total",
        "counter",
        "Cost of the priced AI requests, US dollars.",
    );
    for Series { labels, totals: r } in series {
        let _ = writeln!(
            out,
            "tally_cost_usd_total{{{labels}}} {}",
            r.cost.to_decimal_string()
        );
    }
    header(
        out,
        "tally_unpriced_requests_total",
        "counter",
        "AI requests whose cost is unknown (no price at the time and none reported).",
    );
    for Series { labels, totals: r } in series {
        let _ = writeln!(
            out,
            "tally_unpriced_requests_total{{{labels}}} {}",
            r.unpriced
        );
    }
}

async fn budgets(out: &mut String, state: &QueryState) -> StoreResult<()> {
    let now = state.clock.now();
    let mut statuses = Vec::new();
    for budget in state.config.list_budgets().await? {
        if budget.spec.is_active {
            statuses.push(BudgetStatus::read(state.analytics.as_ref(), &budget, now).await?);
        }
    }
    let gauges: [Gauge; 3] = [
        (
            "tally_budget_spend_usd",
            "Spending of each active budget's current period, US dollars.",
            |s| s.spend_usd.clone(),
        ),
        (
            "tally_budget_limit_usd",
            "Amount of each active budget per period, US dollars.",
            |s| s.amount_usd.clone(),
        ),
        (
            "tally_budget_utilization_ratio",
            "Spend divided by amount of each active budget's current period.",
            |s| s.utilization.to_string(),
        ),
    ];
    for (name, help, value) in gauges {
        header(out, name, "gauge", help);
        for s in &statuses {
            let id = s.budget_id.to_string();
            let _ = writeln!(
                out,
                "{name}{{budget=\"{}\",budget_id=\"{id}\",period=\"{}\"}} {}",
                escaped(&s.name),
                s.period,
                value(s)
            );
        }
    }
    Ok(())
}

async fn alerts(out: &mut String, state: &QueryState) -> StoreResult<()> {
    let firing = state
        .config
        .list_alerts(&AlertQuery {
            states: vec![AlertState::Firing],
            ..AlertQuery::default()
        })
        .await?;
    header(
        out,
        "tally_alerts_firing",
        "gauge",
        "Alerts of rules and budgets firing now, by severity and kind.",
    );
    for severity in Severity::ALL {
        for kind in AlertKind::ALL {
            let n = firing
                .iter()
                .filter(|a| a.severity == *severity && a.kind == *kind)
                .count();
            let _ = writeln!(
                out,
                "tally_alerts_firing{{severity=\"{severity}\",kind=\"{kind}\"}} {n}"
            );
        }
    }
    Ok(())
}

/// Every business metric, in the text exposition format.
pub async fn render(state: &QueryState) -> StoreResult<String> {
    let series: Vec<Series> = totals(state)
        .await?
        .into_iter()
        .map(|(set, totals)| Series {
            labels: labels(&set),
            totals,
        })
        .collect();
    let mut out = String::with_capacity(4096 * (series.len() + 1));
    traffic(&mut out, &series);
    usage(&mut out, &series);
    budgets(&mut out, state).await?;
    alerts(&mut out, state).await?;
    Ok(out)
}
