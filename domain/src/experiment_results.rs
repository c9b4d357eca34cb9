//! An experiment's results: each variant's numbers with their intervals, each variant compared
//! with the control (the first variant), a sample-ratio-mismatch check, and a verdict in plain
//! words per metric. The input is one merged [`Rollup`] per variant and the exact sums of the
//! scores joined to its events ([`crate::experiment_scores`]), so the results are a pure
//! function of rollup rows and stored scores — equal in both modes, and rebuilt exactly by a
//! replay.
//!
//! The metrics and their tests:
//! - **error rate** (errors and timeouts per request): Wilson interval; two-proportion z-test;
//!   the relative difference's interval is Katz's log risk-ratio interval.
//! - **latency**: p50/p95 from the sketch, and the mean of ln(latency in ms) with its t
//!   interval, from the sketch's buckets (each value within 1 %); Welch's t-test on the
//!   logarithms, so a difference is a ratio of geometric means ("12 % faster"), robust to the
//!   long tail of latencies.
//! - **cost per request** (over priced requests; exact to the pico-dollar): t interval from the
//!   exact sums of costs and squared costs; Welch's t-test; the relative difference's interval
//!   takes the control's mean as known.
//! - **numeric scores** (each score's name): the mean with its t interval, from exact sums in
//!   millionths; Welch's t-test; counted in scores rather than requests. Label scores are
//!   summarized (shares with Wilson intervals), not tested.
//!
//! A difference is called only when p < 0.05 and both groups have at least
//! [`MIN_REQUESTS`]; otherwise the verdict says how many more requests per variant an 80 %-power
//! test would need at the observed rates, or that no difference was detected when that is more
//! than ten times what there is.

use schemars::JsonSchema;
use serde::Serialize;
use tally_schemas::Pico;

use crate::experiment_scores::{summaries, NumberSums, ScoreSummary, ScoreSums};
use crate::measures::{pct, priced_requests};
use crate::rollup::Rollup;
use crate::statistics::{
    chi_square_fit, sample_size_means, sample_size_proportions, two_proportions, welch, wilson,
    z_two_sided, Interval, Moments, Test, CONFIDENCE,
};

/// Fewest requests (for a score: scores) per group before a difference is called.
pub const MIN_REQUESTS: u64 = 30;

/// Below this p-value the observed split is called a sample-ratio mismatch (the customary
/// threshold: a mismatch is a bug to find, not a result to weigh).
pub const SRM_P_VALUE: f64 = 0.001;

/// One variant as configured, with its traffic in the window.
#[derive(Debug, Clone)]
pub struct VariantTraffic<'a> {
    pub name: &'a str,
    /// The configured share; `None` for a variant events name but the experiment has not.
    pub traffic_percent: Option<u32>,
    pub rollup: &'a Rollup,
    /// The scores joined to the variant's events (`None`: none).
    pub scores: Option<&'a ScoreSums>,
}

/// `[low, high]`.
pub type Bounds = [f64; 2];

fn bounds(i: Interval, scale: f64) -> Bounds {
    [i.low * scale, i.high * scale]
}

/// The log-latency summary of a variant.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct LogLatency {
    /// Requests with a measured (non-zero) latency.
    pub n: u64,
    /// Mean of ln(latency in ms).
    pub mean_ln_ms: f64,
    pub mean_ln_ms_interval: Option<Bounds>,
    /// exp(mean of ln): the geometric mean latency, ms.
    pub geometric_mean_ms: f64,
    pub geometric_mean_ms_interval: Option<Bounds>,
}

/// One variant's numbers in the window.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct VariantSummary {
    pub variant: String,
    /// Whether the experiment has this variant (events may name others).
    pub known: bool,
    pub traffic_percent: Option<u32>,
    pub requests: u64,
    /// This variant's share of the experiment's requests, 0–100.
    pub share_of_requests: f64,
    /// Errors and timeouts.
    pub failures: u64,
    /// 0–100.
    pub error_rate: f64,
    /// Wilson interval of the error rate, 0–100.
    pub error_rate_interval: Option<Bounds>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub log_latency: Option<LogLatency>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub priced_requests: u64,
    pub unpriced_requests: u64,
    /// Exact cost of the priced requests, decimal US dollars.
    pub total_cost_usd: String,
    /// Cost per priced request, decimal US dollars rounded to the pico-dollar.
    pub cost_per_request_usd: Option<String>,
    /// Cost per priced request, US dollars (display).
    pub cost_per_request: Option<f64>,
    pub cost_per_request_interval: Option<Bounds>,
    /// Estimated distinct users (HyperLogLog).
    pub unique_users: u64,
    /// Each score's count and mean (numbers) or label shares, with their intervals.
    pub scores: Vec<ScoreSummary>,
}

/// One metric of a variant against the control.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MetricComparison {
    /// `error_rate`, `latency`, `cost_per_request` or `score` (a numeric score's mean).
    pub metric: &'static str,
    /// The score's name, for `score`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
    /// The test: `two_proportion_z`, `welch_t_log_latency` or `welch_t`.
    pub test: &'static str,
    /// The control's value: error rate in percent, geometric mean latency in ms, cost per
    /// request in US dollars.
    pub control: Option<f64>,
    /// The variant's value, in the same unit.
    pub value: Option<f64>,
    /// (value − control) / control, in percent.
    pub relative_difference: Option<f64>,
    /// Its interval at 95 %, in percent.
    pub relative_difference_interval: Option<Bounds>,
    pub statistic: Option<f64>,
    pub degrees_of_freedom: Option<f64>,
    pub p_value: Option<f64>,
    /// p < 0.05 with at least [`MIN_REQUESTS`] in each group.
    pub significant: bool,
    /// Requests (for a score: scores) per variant an 80 %-power test would need at the
    /// observed rates, beyond the smaller group's (when not significant and within ten times
    /// what there is).
    pub more_requests_needed: Option<u64>,
    pub verdict: String,
}

/// A variant against the control.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Comparison {
    pub variant: String,
    pub control: String,
    pub metrics: Vec<MetricComparison>,
}

/// Whether the observed split matches the configured traffic shares.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SampleRatio {
    /// Requests naming a variant the experiment does not have (or none), left out of the split.
    pub unknown_variant_requests: u64,
    pub chi_square: Option<f64>,
    pub degrees_of_freedom: Option<f64>,
    pub p_value: Option<f64>,
    /// p < [`SRM_P_VALUE`].
    pub mismatch: bool,
    pub verdict: String,
}

/// Everything the results route answers besides the window.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Analysis {
    pub confidence_level: f64,
    /// Configured variants first (the first is the control), then variants only events name.
    pub variants: Vec<VariantSummary>,
    /// Each configured variant after the first against the first.
    pub comparisons: Vec<Comparison>,
    pub sample_ratio: SampleRatio,
}

/// The cost moments of a rollup, in US dollars per priced request.
fn cost_moments(r: &Rollup) -> Moments {
    let m = Moments::from_sums(priced_requests(r), r.cost.0, r.cost_squares);
    Moments {
        n: m.n,
        mean: m.mean / 1e12,
        variance: m.variance / 1e24,
    }
}

/// Exact cost per priced request, rounded half away from zero to the pico-dollar.
fn cost_per_request(r: &Rollup) -> Option<Pico> {
    let n = i128::from(priced_requests(r));
    if n == 0 {
        return None;
    }
    let c = r.cost.0;
    let q = c / n;
    let rem = c % n;
    let round = if 2 * rem.abs() >= n { c.signum() } else { 0 };
    Some(Pico(q + round))
}

fn summarize(v: &VariantTraffic<'_>, all_requests: u64) -> VariantSummary {
    let r = v.rollup;
    let log = r.latency.log_ms_moments();
    let log_latency = (log.n > 0).then(|| {
        let interval = log.mean_interval();
        LogLatency {
            n: log.n,
            mean_ln_ms: log.mean,
            mean_ln_ms_interval: interval.map(|i| [i.low, i.high]),
            geometric_mean_ms: log.mean.exp(),
            geometric_mean_ms_interval: interval.map(|i| [i.low.exp(), i.high.exp()]),
        }
    });
    let cost = cost_moments(r);
    VariantSummary {
        variant: v.name.to_string(),
        known: v.traffic_percent.is_some(),
        traffic_percent: v.traffic_percent,
        requests: r.requests,
        share_of_requests: pct(r.requests, all_requests),
        failures: r.failures(),
        error_rate: pct(r.failures(), r.requests),
        error_rate_interval: wilson(r.failures(), r.requests).map(|i| bounds(i, 100.0)),
        latency_p50_ms: r.latency.quantile_ms(0.50),
        latency_p95_ms: r.latency.quantile_ms(0.95),
        log_latency,
        input_tokens: r.input_tokens,
        output_tokens: r.output_tokens,
        cached_input_tokens: r.cached_input_tokens,
        priced_requests: priced_requests(r),
        unpriced_requests: r.unpriced,
        total_cost_usd: r.cost.to_decimal_string(),
        cost_per_request_usd: cost_per_request(r).map(Pico::to_decimal_string),
        cost_per_request: (cost.n > 0).then_some(cost.mean),
        cost_per_request_interval: cost.mean_interval().map(|i| bounds(i, 1.0)),
        unique_users: r.users.estimate(),
        scores: v.scores.map(summaries).unwrap_or_default(),
    }
}

/// `p = 0.003`, or `p < 0.001`.
pub fn p_text(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

/// What the test and the group sizes allow one to say.
struct Reading {
    significant: bool,
    more_requests_needed: Option<u64>,
    /// Said when significant.
    called: String,
    verdict: String,
}

impl Reading {
    /// When a t-test is undefined because neither group varies at all, yet the groups are
    /// large enough and their means differ, the difference is certain: call it.
    fn when_alike(&mut self, variant: &str, untested: bool, a: &Moments, b: &Moments) {
        if untested && a.n.min(b.n) >= MIN_REQUESTS && a.mean != b.mean {
            self.significant = true;
            self.more_requests_needed = None;
            self.verdict = format!("variant {variant} {} (every one alike)", self.called);
        }
    }
}

fn read(
    variant: &str,
    test: Option<&Test>,
    smaller_group: u64,
    required: Option<u64>,
    called: String,
    unit: &str,
) -> Reading {
    let not_yet = |more: u64| {
        format!(
            "not enough data yet: about {more} more {unit} per variant for 80% power at the observed rates"
        )
    };
    let Some(test) = test else {
        let verdict = if smaller_group < MIN_REQUESTS {
            not_yet(MIN_REQUESTS - smaller_group)
        } else {
            "no difference detected".to_string()
        };
        return Reading {
            significant: false,
            more_requests_needed: (smaller_group < MIN_REQUESTS)
                .then(|| MIN_REQUESTS - smaller_group),
            called,
            verdict,
        };
    };
    let p = test.p_value;
    if p < 1.0 - CONFIDENCE && smaller_group >= MIN_REQUESTS {
        return Reading {
            significant: true,
            more_requests_needed: None,
            verdict: format!("variant {variant} {called}, {}", p_text(p)),
            called,
        };
    }
    // The sample an 80 %-power test needs at the observed rates, when it is within ten times
    // what there is (beyond that the difference is too small to matter here).
    let reachable = required
        .filter(|&n| n <= smaller_group.max(MIN_REQUESTS).saturating_mul(10))
        .map(|n| n.max(MIN_REQUESTS));
    let needed = match reachable {
        Some(n) => n.saturating_sub(smaller_group),
        None => MIN_REQUESTS.saturating_sub(smaller_group),
    };
    if needed > 0 {
        Reading {
            significant: false,
            more_requests_needed: Some(needed),
            verdict: not_yet(needed),
            called,
        }
    } else {
        Reading {
            significant: false,
            more_requests_needed: None,
            verdict: format!("no difference detected ({})", p_text(p)),
            called,
        }
    }
}

fn percent_word(relative: f64) -> String {
    format!("{:.0}%", relative.abs() * 100.0)
}

fn compare_error_rate(variant: &str, a: &Rollup, b: &Rollup) -> MetricComparison {
    let (k1, n1, k2, n2) = (a.failures(), a.requests, b.failures(), b.requests);
    let test = two_proportions(k1, n1, k2, n2);
    let (p1, p2) = (
        (n1 > 0).then(|| k1 as f64 / n1 as f64),
        (n2 > 0).then(|| k2 as f64 / n2 as f64),
    );
    let relative = match (p1, p2) {
        (Some(p1), Some(p2)) if p1 > 0.0 => Some(p2 / p1 - 1.0),
        _ => None,
    };
    // Katz: ln(RR) ± z·√(1/k2 − 1/n2 + 1/k1 − 1/n1).
    let interval = (k1 > 0 && k2 > 0).then(|| {
        let rr = (k2 as f64 / n2 as f64) / (k1 as f64 / n1 as f64);
        let se = (1.0 / k2 as f64 - 1.0 / n2 as f64 + 1.0 / k1 as f64 - 1.0 / n1 as f64).sqrt();
        let z = z_two_sided();
        [
            ((rr.ln() - z * se).exp() - 1.0) * 100.0,
            ((rr.ln() + z * se).exp() - 1.0) * 100.0,
        ]
    });
    let required = match (p1, p2) {
        (Some(p1), Some(p2)) => sample_size_proportions(p1, p2),
        _ => None,
    };
    let called = match (p1, p2) {
        (Some(p1), Some(p2)) => format!(
            "fails {}: {:.2}% of requests against {:.2}%",
            if p2 < p1 { "less often" } else { "more often" },
            p2 * 100.0,
            p1 * 100.0
        ),
        _ => String::new(),
    };
    let mut reading = read(
        variant,
        test.as_ref(),
        n1.min(n2),
        required,
        called,
        "requests",
    );
    if test.is_none() && n1.min(n2) >= MIN_REQUESTS && k1 + k2 == 0 {
        reading.verdict = "no difference detected: no failures in either variant".into();
    }
    MetricComparison {
        metric: "error_rate",
        score: None,
        test: "two_proportion_z",
        control: p1.map(|p| p * 100.0),
        value: p2.map(|p| p * 100.0),
        relative_difference: relative.map(|r| r * 100.0),
        relative_difference_interval: interval,
        statistic: test.map(|t| t.statistic),
        degrees_of_freedom: None,
        p_value: test.map(|t| t.p_value),
        significant: reading.significant,
        more_requests_needed: reading.more_requests_needed,
        verdict: reading.verdict,
    }
}

/// How a Welch comparison of two means is shown: the metric's name, its test's name, how a
/// group's mean is written in the metric's unit, the relative difference of the variant (a
/// fraction) and how an interval of the difference of means becomes one of it (in percent).
struct MeansView {
    metric: &'static str,
    score: Option<String>,
    /// What the groups count: `requests` or `scores`.
    unit: &'static str,
    test: &'static str,
    shown: fn(f64) -> f64,
    relative: Option<f64>,
    interval: Box<dyn Fn(Interval) -> Bounds>,
    called: String,
}

fn compare_means(variant: &str, ma: &Moments, mb: &Moments, view: MeansView) -> MetricComparison {
    let tested = welch(ma, mb);
    let required = sample_size_means(ma.variance, mb.variance, mb.mean - ma.mean);
    let mut reading = read(
        variant,
        tested.as_ref().map(|(t, _)| t),
        ma.n.min(mb.n),
        required,
        view.called,
        view.unit,
    );
    reading.when_alike(variant, tested.is_none(), ma, mb);
    MetricComparison {
        metric: view.metric,
        score: view.score,
        test: view.test,
        control: (ma.n > 0).then(|| (view.shown)(ma.mean)),
        value: (mb.n > 0).then(|| (view.shown)(mb.mean)),
        relative_difference: view.relative.map(|r| r * 100.0),
        relative_difference_interval: tested
            .filter(|_| view.relative.is_some())
            .map(|(_, i)| (view.interval)(i)),
        statistic: tested.map(|(t, _)| t.statistic),
        degrees_of_freedom: tested.and_then(|(t, _)| t.df),
        p_value: tested.map(|(t, _)| t.p_value),
        significant: reading.significant,
        more_requests_needed: reading.more_requests_needed,
        verdict: reading.verdict,
    }
}

fn compare_latency(variant: &str, a: &Rollup, b: &Rollup) -> MetricComparison {
    let (ma, mb) = (a.latency.log_ms_moments(), b.latency.log_ms_moments());
    // A difference of mean logarithms is a ratio of geometric means.
    let ratio = (mb.mean - ma.mean).exp() - 1.0;
    let view = MeansView {
        metric: "latency",
        score: None,
        unit: "requests",
        test: "welch_t_log_latency",
        shown: f64::exp,
        relative: (ma.n > 0 && mb.n > 0).then_some(ratio),
        interval: Box::new(|i| [(i.low.exp() - 1.0) * 100.0, (i.high.exp() - 1.0) * 100.0]),
        called: format!(
            "is {} {}",
            percent_word(ratio),
            if ratio < 0.0 { "faster" } else { "slower" }
        ),
    };
    compare_means(variant, &ma, &mb, view)
}

fn compare_cost(variant: &str, a: &Rollup, b: &Rollup) -> MetricComparison {
    let (ma, mb) = (cost_moments(a), cost_moments(b));
    let relative = (ma.n > 0 && mb.n > 0 && ma.mean != 0.0).then(|| mb.mean / ma.mean - 1.0);
    let control = ma.mean;
    let difference = mb.mean - ma.mean;
    // Against a control that costs nothing, the difference is said in dollars.
    let called = match relative {
        Some(r) => format!(
            "costs {} {} per request",
            percent_word(r),
            if r < 0.0 { "less" } else { "more" }
        ),
        None => format!(
            "costs ${:.6} {} per request",
            difference.abs(),
            if difference < 0.0 { "less" } else { "more" }
        ),
    };
    let view = MeansView {
        metric: "cost_per_request",
        score: None,
        unit: "requests",
        test: "welch_t",
        shown: |m| m,
        relative,
        // Relative to the control's mean, taken as known.
        interval: Box::new(move |i| [i.low / control * 100.0, i.high / control * 100.0]),
        called,
    };
    compare_means(variant, &ma, &mb, view)
}

/// A numeric score's mean, the variant's against the control's (Welch's t-test; the relative
/// difference's interval takes the control's mean as known).
fn compare_score(variant: &str, name: &str, a: NumberSums, b: NumberSums) -> MetricComparison {
    let (ma, mb) = (a.moments(), b.moments());
    let relative = (ma.n > 0 && mb.n > 0 && ma.mean != 0.0).then(|| mb.mean / ma.mean - 1.0);
    let control = ma.mean;
    let difference = mb.mean - ma.mean;
    let called = match relative {
        Some(r) if control > 0.0 => format!(
            "scores {} {} on {name}",
            percent_word(r),
            if r < 0.0 { "lower" } else { "higher" }
        ),
        _ => format!(
            "scores {:.3} {} on {name}",
            difference.abs(),
            if difference < 0.0 { "lower" } else { "higher" }
        ),
    };
    let view = MeansView {
        metric: "score",
        score: Some(name.to_string()),
        unit: "scores",
        test: "welch_t",
        shown: |m| m,
        relative: relative.filter(|_| control > 0.0),
        interval: Box::new(move |i| [i.low / control * 100.0, i.high / control * 100.0]),
        called,
    };
    compare_means(variant, &ma, &mb, view)
}

/// The numeric scores either group has, compared by name.
fn compare_scores(
    variant: &str,
    a: Option<&ScoreSums>,
    b: Option<&ScoreSums>,
) -> Vec<MetricComparison> {
    let numbers = |s: Option<&ScoreSums>| s.map(|s| s.numbers.clone()).unwrap_or_default();
    let (na, nb) = (numbers(a), numbers(b));
    let names: std::collections::BTreeSet<&String> = na.keys().chain(nb.keys()).collect();
    names
        .into_iter()
        .map(|name| {
            let get = |m: &std::collections::BTreeMap<String, NumberSums>| {
                m.get(name).copied().unwrap_or_default()
            };
            compare_score(variant, name, get(&na), get(&nb))
        })
        .collect()
}

/// The split check over every variant: traffic to a variant configured with 0 % is a mismatch;
/// requests naming a variant the experiment does not have (misspelt, or none) are counted and
/// said.
fn sample_ratio(variants: &[VariantTraffic<'_>]) -> SampleRatio {
    let with_share: Vec<&VariantTraffic<'_>> = variants
        .iter()
        .filter(|v| v.traffic_percent.unwrap_or(0) > 0)
        .collect();
    let stray: u64 = variants
        .iter()
        .filter(|v| v.traffic_percent == Some(0))
        .map(|v| v.rollup.requests)
        .sum();
    let unknown: u64 = variants
        .iter()
        .filter(|v| v.traffic_percent.is_none())
        .map(|v| v.rollup.requests)
        .sum();
    let observed: Vec<u64> = with_share.iter().map(|v| v.rollup.requests).collect();
    let shares: Vec<f64> = with_share
        .iter()
        .map(|v| f64::from(v.traffic_percent.unwrap_or(0)))
        .collect();
    let total: u64 = observed.iter().sum();
    let test = chi_square_fit(&observed, &shares);
    let split = |values: Vec<String>| values.join("/");
    let observed_text = split(
        observed
            .iter()
            .map(|&o| format!("{:.1}%", pct(o, total)))
            .collect(),
    );
    let configured_text = split(
        with_share
            .iter()
            .map(|v| format!("{}%", v.traffic_percent.unwrap_or(0)))
            .collect(),
    );
    let mismatch = stray > 0 || test.is_some_and(|t| t.p_value < SRM_P_VALUE);
    let mut verdict = if stray > 0 {
        format!("sample ratio mismatch: {stray} requests went to variants configured with 0% of the traffic")
    } else {
        match test {
            None if with_share.len() < 2 => {
                "no split to check: fewer than two variants share the traffic".to_string()
            }
            None => "not enough data yet: no requests in the experiment's variants".to_string(),
            Some(t) if mismatch => format!(
                "sample ratio mismatch: observed {observed_text} against the configured {configured_text} ({}); the assignment or the logging is biased, so the comparisons cannot be trusted",
                p_text(t.p_value)
            ),
            Some(t) => format!(
                "the observed split {observed_text} matches the configured {configured_text} ({})",
                p_text(t.p_value)
            ),
        }
    };
    if unknown > 0 {
        verdict.push_str(&format!(
            "; {unknown} requests named a variant the experiment does not have (left out of the split)"
        ));
    }
    SampleRatio {
        unknown_variant_requests: unknown,
        chi_square: test.map(|t| t.statistic),
        degrees_of_freedom: test.and_then(|t| t.df),
        p_value: test.map(|t| t.p_value),
        mismatch,
        verdict,
    }
}

/// The analysis of `variants`: configured ones (with a `traffic_percent`) first, the first of
/// them the control; then any that only events name.
pub fn analyse(variants: &[VariantTraffic<'_>]) -> Analysis {
    let all_requests: u64 = variants.iter().map(|v| v.rollup.requests).sum();
    let configured: Vec<&VariantTraffic<'_>> = variants
        .iter()
        .filter(|v| v.traffic_percent.is_some())
        .collect();
    let comparisons = match configured.split_first() {
        Some((control, rest)) => rest
            .iter()
            .map(|v| Comparison {
                variant: v.name.to_string(),
                control: control.name.to_string(),
                metrics: [
                    compare_error_rate(v.name, control.rollup, v.rollup),
                    compare_latency(v.name, control.rollup, v.rollup),
                    compare_cost(v.name, control.rollup, v.rollup),
                ]
                .into_iter()
                .chain(compare_scores(v.name, control.scores, v.scores))
                .collect(),
            })
            .collect(),
        None => Vec::new(),
    };
    Analysis {
        confidence_level: CONFIDENCE,
        variants: variants
            .iter()
            .map(|v| summarize(v, all_requests))
            .collect(),
        comparisons,
        sample_ratio: sample_ratio(variants),
    }
}

#[cfg(test)]
mod tests {
    //! Expected values are computed by hand from the events each test builds (the working is
    //! in the comments), never by the code under test.
    use super::*;
    use tally_schemas::event::{Cost, Status};
    use tally_schemas::UsageEvent;

    /// `n` requests, the first `failures` of them failed, latencies cycling through
    /// `latencies_ms`, costs cycling through `costs` (pico-dollars), users cycling over 50.
    fn rollup(n: u64, failures: u64, latencies_ms: &[u64], costs: &[i64]) -> Rollup {
        let mut r = Rollup::default();
        for i in 0..n {
            r.add_event(&UsageEvent {
                status: if i < failures {
                    Status::Error
                } else {
                    Status::Success
                },
                latency_us: latencies_ms[i as usize % latencies_ms.len()] * 1000,
                cost: Cost::Computed(costs[i as usize % costs.len()]),
                user_id: Some(format!("u{}", i % 50)),
                ..UsageEvent::example()
            });
        }
        r
    }

    fn traffic<'a>(name: &'a str, percent: u32, rollup: &'a Rollup) -> VariantTraffic<'a> {
        VariantTraffic {
            name,
            traffic_percent: Some(percent),
            rollup,
            scores: None,
        }
    }

    #[test]
    fn a_clear_winner_is_called_on_every_metric() {
        // Control: 1000 requests, 50 failed, 180 or 220 ms, 900 or 1100 pico-dollars.
        // Variant b: 1000 requests, 20 failed, 90 or 110 ms, 700 or 900 pico-dollars.
        let a = rollup(1000, 50, &[180, 220], &[900, 1100]);
        let b = rollup(1000, 20, &[90, 110], &[700, 900]);
        let results = analyse(&[traffic("control", 50, &a), traffic("b", 50, &b)]);
        let [error, latency, cost] = &results.comparisons[0].metrics[..] else {
            panic!("three metrics")
        };
        // Error rate: pooled 70/2000 = 0.035, se = √(0.035·0.965·2/1000) = 0.0082189,
        // z = −0.03/se = −3.65013, p = 0.00026.
        assert!((error.statistic.expect("statistic") + 3.65013).abs() < 1e-4);
        assert!((error.p_value.expect("p_value") - 0.00026).abs() < 1e-5);
        assert!(error.significant);
        assert_eq!(
            error.verdict,
            "variant b fails less often: 2.00% of requests against 5.00%, p < 0.001"
        );
        // Katz: RR = 0.4, se(ln RR) = √(1/20 − 1/1000 + 1/50 − 1/1000) = 0.26077,
        // exp(ln 0.4 ∓ 1.95996·0.26077) − 1 = −76.01 % and −33.32 %.
        let [low, high] = error
            .relative_difference_interval
            .expect("relative_difference_interval");
        assert!((low + 76.006).abs() < 0.01 && (high + 33.315).abs() < 0.01);
        assert!((error.relative_difference.expect("relative_difference") + 60.0).abs() < 1e-9);
        // Latency: b's geometric mean √(90·110) is half of √(180·220); the sketch keeps each
        // latency within 1 %.
        let ratio = latency.relative_difference.expect("relative_difference");
        assert!((ratio + 50.0).abs() <= 1.5, "{ratio}");
        assert!(latency.significant);
        assert!(
            latency.verdict.starts_with("variant b is ")
                && latency.verdict.ends_with("% faster, p < 0.001"),
            "{}",
            latency.verdict
        );
        // Cost: means 1000 and 800 pico-dollars, −20 % exactly; each group's variance is
        // 1000·100²/999, so t = −200/√(2·10010.01/1000) = −44.70.
        assert!((cost.relative_difference.expect("relative_difference") + 20.0).abs() < 1e-9);
        assert!((cost.statistic.expect("statistic") + 44.70).abs() < 0.01);
        assert_eq!(
            cost.verdict,
            "variant b costs 20% less per request, p < 0.001"
        );
        // Per variant: exact cost per request, Wilson interval of 50/1000.
        let control = &results.variants[0];
        assert_eq!(control.cost_per_request_usd.as_deref(), Some("0.000000001"));
        assert_eq!(control.total_cost_usd, "0.000001");
        assert_eq!(control.error_rate, 5.0);
        let [low, high] = control.error_rate_interval.expect("error_rate_interval");
        // Wilson, 50/1000: centre (0.05 + 1.920729/1000)/1.0038415 = 0.0517220, half-width
        // 1.959964/1.0038415·√(0.0000475 + 0.00000096036) = 0.0135918.
        assert!((low - 3.81303).abs() < 1e-4 && (high - 6.53138).abs() < 1e-4);
        assert_eq!(control.unique_users, 50);
        // The split is exactly as configured: χ² = 0, p = 1.
        assert_eq!(results.sample_ratio.chi_square, Some(0.0));
        assert!(!results.sample_ratio.mismatch);
        assert_eq!(
            results.sample_ratio.verdict,
            "the observed split 50.0%/50.0% matches the configured 50%/50% (p = 1.000)"
        );
    }

    #[test]
    fn a_numeric_score_is_compared_with_the_control() {
        // Control: 40 scores alternating 3 and 4 (mean 3.5, each 0.5 from it, so
        // s² = 40·0.25/39 = 0.256410); variant b: 40 alternating 4 and 5 (mean 4.5, the same
        // s²). Welch: se = √(2·0.256410/40) = 0.113228, t = 1/se = 8.83176 with 78 degrees of
        // freedom (equal sizes and variances), p < 0.001; b's mean is 4.5/3.5 − 1 = 28.57 %
        // higher. A label score is summarized but not tested.
        let r = rollup(40, 0, &[100], &[1000]);
        let mut a = ScoreSums::default();
        let mut b = ScoreSums::default();
        for i in 0..40 {
            a.add(
                "helpfulness",
                &tally_schemas::ScoreValue::Micros(3_000_000 + (i % 2) * 1_000_000),
            );
            b.add(
                "helpfulness",
                &tally_schemas::ScoreValue::Micros(4_000_000 + (i % 2) * 1_000_000),
            );
        }
        b.add("thumbs", &tally_schemas::ScoreValue::Label("up".into()));
        let with = |name, scores| VariantTraffic {
            name,
            traffic_percent: Some(50),
            rollup: &r,
            scores: Some(scores),
        };
        let results = analyse(&[with("control", &a), with("b", &b)]);
        let score = &results.comparisons[0].metrics[3];
        assert_eq!(results.comparisons[0].metrics.len(), 4);
        assert_eq!(
            (score.metric, score.score.as_deref()),
            ("score", Some("helpfulness"))
        );
        assert!((score.statistic.expect("t") - 8.83176).abs() < 1e-4);
        assert!((score.degrees_of_freedom.expect("df") - 78.0).abs() < 1e-9);
        assert!((score.relative_difference.expect("relative") - 28.5714).abs() < 1e-3);
        assert_eq!(
            score.verdict,
            "variant b scores 29% higher on helpfulness, p < 0.001"
        );
        let b_scores = &results.variants[1].scores;
        assert_eq!(b_scores.len(), 2);
        assert_eq!(
            (b_scores[1].name.as_str(), b_scores[1].count),
            ("thumbs", 1)
        );
    }

    #[test]
    fn a_small_difference_needs_more_requests() {
        // 30/500 against 45/500 failed: z = 1.80090, p = 0.0717 (not significant). An
        // 80 %-power test of 6 % against 9 % needs
        // (1.95996·√(2·0.075·0.925) + 0.84162·√(0.06·0.94 + 0.09·0.91))² / 0.03² = 1208.86,
        // so 1209 per variant: 709 more than the 500 there are.
        let a = rollup(500, 30, &[100, 300], &[1000]);
        let b = rollup(500, 45, &[100, 300], &[1000]);
        let results = analyse(&[traffic("control", 50, &a), traffic("b", 50, &b)]);
        let error = &results.comparisons[0].metrics[0];
        assert!(!error.significant);
        assert_eq!(error.more_requests_needed, Some(709));
        assert_eq!(
            error.verdict,
            "not enough data yet: about 709 more requests per variant for 80% power at the observed rates"
        );
        // Same latencies and costs in both: nothing to detect.
        let latency = &results.comparisons[0].metrics[1];
        assert_eq!(latency.relative_difference, Some(0.0));
        assert!(
            latency
                .verdict
                .starts_with("no difference detected (p = 1.000"),
            "{}",
            latency.verdict
        );
        let cost = &results.comparisons[0].metrics[2];
        assert_eq!(cost.verdict, "no difference detected");
    }

    #[test]
    fn a_skewed_split_is_a_sample_ratio_mismatch() {
        // 600 and 400 against 50/50: χ² = 100²/500 · 2 = 40 with 1 df, p ≈ 2.5·10⁻¹⁰.
        let a = rollup(600, 0, &[100], &[1]);
        let b = rollup(400, 0, &[100], &[1]);
        let results = analyse(&[traffic("control", 50, &a), traffic("b", 50, &b)]);
        let srm = &results.sample_ratio;
        assert!((srm.chi_square.expect("chi_square") - 40.0).abs() < 1e-9);
        assert!(srm.mismatch);
        assert!(srm.verdict.starts_with(
            "sample ratio mismatch: observed 60.0%/40.0% against the configured 50%/50% (p < 0.001)"
        ));
        // 600/400 against 60/40 is right on.
        let results = analyse(&[traffic("control", 60, &a), traffic("b", 40, &b)]);
        assert!(!results.sample_ratio.mismatch);
        // No failures anywhere: nothing to compare.
        assert_eq!(
            results.comparisons[0].metrics[0].verdict,
            "no difference detected: no failures in either variant"
        );
    }

    #[test]
    fn unknown_variants_are_counted_and_a_free_control_is_compared_in_dollars() {
        // Control costs nothing; b costs 1 or 3 micro-dollars ($0.000002 on average).
        let a = rollup(100, 0, &[100, 120], &[0]);
        let b = rollup(100, 0, &[100, 120], &[1_000_000, 3_000_000]);
        let typo = rollup(7, 0, &[100], &[0]);
        let results = analyse(&[
            traffic("control", 50, &a),
            traffic("b", 50, &b),
            VariantTraffic {
                name: "B",
                traffic_percent: None,
                rollup: &typo,
                scores: None,
            },
        ]);
        let cost = &results.comparisons[0].metrics[2];
        assert_eq!(cost.relative_difference, None);
        assert_eq!(
            cost.verdict,
            "variant b costs $0.000002 more per request, p < 0.001"
        );
        let srm = &results.sample_ratio;
        assert_eq!(srm.unknown_variant_requests, 7);
        assert!(!srm.mismatch, "100/100 against 50/50");
        assert!(
            srm.verdict.ends_with(
                "; 7 requests named a variant the experiment does not have (left out of the split)"
            ),
            "{}",
            srm.verdict
        );
        assert_eq!(results.variants[2].variant, "B");
        assert!(!results.variants[2].known);
    }

    #[test]
    fn few_requests_are_never_called() {
        // 10 requests each, all of b failed: p is tiny, but 10 < 30 per group.
        let a = rollup(10, 0, &[100], &[1]);
        let b = rollup(10, 10, &[1000], &[1]);
        let results = analyse(&[traffic("control", 50, &a), traffic("b", 50, &b)]);
        for metric in &results.comparisons[0].metrics {
            assert!(!metric.significant, "{}", metric.verdict);
            assert!(
                metric.verdict.starts_with("not enough data yet"),
                "{}",
                metric.verdict
            );
        }
        // And an experiment without traffic says so.
        let empty = Rollup::default();
        let results = analyse(&[traffic("control", 50, &empty), traffic("b", 50, &empty)]);
        assert_eq!(
            results.sample_ratio.verdict,
            "not enough data yet: no requests in the experiment's variants"
        );
        assert_eq!(
            results.comparisons[0].metrics[0].verdict,
            "not enough data yet: about 30 more requests per variant for 80% power at the observed rates"
        );
    }
}
