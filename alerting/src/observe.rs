//! What the evaluator looks at: an alert rule's metric over its window, and a budget's
//! thresholds and forecast in its current period — each read with the same rollup scans and
//! arithmetic as the dashboards ([`tally_domain::measures`], [`BudgetStatus::read`]), so an
//! alert's value is the number the dashboard shows for the same window.
//!
//! Each watched condition has a key; at most one unresolved alert exists per key. A rule has one
//! (`rule:<id>`); a budget one per threshold and one for its forecast, in each period
//! (`budget:<id>:<period start>:<threshold|forecast>`), so crossing a threshold raises one alert
//! per period and the next period starts afresh.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use tally_domain::alerting::alerts::Observation;
use tally_domain::alerting::{Alert, AlertKind, AlertState, BudgetStatus};
use tally_domain::config::{AlertMetric, AlertRule, Budget, Severity};
use tally_domain::measures::{error_rate, priced_requests, usd_per};
use tally_domain::rollup::Rollup;
use tally_domain::store::{AnalyticsStore, Filter, ScanRequest, StoreResult};
use tally_domain::window::Window;
use tally_schemas::Pico;
use uuid::Uuid;

/// One watched condition as observed now, with the alert to open if it starts holding.
#[derive(Debug, Clone)]
pub struct Watched {
    pub seen: Observation,
    pub template: Alert,
    pub channels: Vec<Uuid>,
}

/// `metric` of the summed rows `r` over a window of `minutes`.
pub fn metric_value(metric: AlertMetric, r: &Rollup, minutes: i64) -> f64 {
    match metric {
        AlertMetric::ErrorRate => error_rate(r),
        AlertMetric::LatencyP95Ms => r.latency.quantile_ms(0.95).unwrap_or(0.0),
        AlertMetric::LatencyP99Ms => r.latency.quantile_ms(0.99).unwrap_or(0.0),
        AlertMetric::CostPerRequestUsd => usd_per(r.cost, priced_requests(r)),
        AlertMetric::SpendUsd => r.cost.to_usd_f64_micro_rounded(),
        AlertMetric::RequestsPerMinute => r.requests as f64 / minutes.max(1) as f64,
    }
}

/// Dollars to the cent, for the one line people read (the exact figures are the alert's
/// value and the budget's status).
fn cents(exact: &str) -> String {
    format!("{:.2}", exact.parse::<f64>().unwrap_or(0.0))
}

/// A new alert of `kind` under `key`; its labels, threshold and summary are the caller's.
fn template(
    kind: AlertKind,
    key: String,
    name: &str,
    severity: Severity,
    now: DateTime<Utc>,
) -> Alert {
    Alert {
        id: Uuid::now_v7(),
        kind,
        rule_id: None,
        budget_id: None,
        key,
        name: name.to_string(),
        state: AlertState::Pending,
        severity,
        labels: BTreeMap::new(),
        value: 0.0,
        threshold: 0.0,
        summary: String::new(),
        started_at: now,
        firing_at: None,
        resolved_at: None,
        acknowledged_by: None,
        acknowledged_at: None,
        updated_at: now,
        deliveries: Vec::new(),
    }
}

/// The rule's condition at `now`: fewer than `min_requests` requests in the window is no data
/// (the condition does not hold).
pub async fn rule(
    analytics: &dyn AnalyticsStore,
    rule: &AlertRule,
    now: DateTime<Utc>,
) -> StoreResult<Watched> {
    let spec = &rule.spec;
    let filter = Filter {
        feature: spec.scope.feature.clone(),
        model: spec.scope.model.clone(),
        provider: spec.scope.provider.clone(),
        environment: spec.scope.environment,
        ..Filter::default()
    };
    let window = Window::last(spec.window.duration(), now);
    let latency = matches!(
        spec.metric,
        AlertMetric::LatencyP95Ms | AlertMetric::LatencyP99Ms
    );
    let rows = analytics
        .scan(ScanRequest {
            filter,
            spans: window.spans(),
            with_sketches: latency,
        })
        .await?;
    let mut total = Rollup::default();
    for row in &rows {
        if latency {
            total.merge(&row.rollup);
        } else {
            total.merge_sums(&row.rollup);
        }
    }
    let value = metric_value(spec.metric, &total, window.minutes());
    let enough = total.requests >= spec.min_requests;
    let mut labels = BTreeMap::from([
        ("rule".to_string(), spec.name.clone()),
        ("metric".to_string(), spec.metric.to_string()),
        ("window".to_string(), spec.window.to_string()),
    ]);
    let scope = [
        ("feature", spec.scope.feature.clone()),
        ("model", spec.scope.model.clone()),
        ("provider", spec.scope.provider.clone()),
        (
            "environment",
            spec.scope.environment.map(|e| e.as_str().to_string()),
        ),
    ];
    let mut scope_words = Vec::new();
    for (name, value) in scope {
        if let Some(v) = value {
            scope_words.push(format!("{name}={v}"));
            labels.insert(name.to_string(), v);
        }
    }
    let comparator = match spec.comparator {
        tally_domain::config::Comparator::Gt => ">",
        tally_domain::config::Comparator::Lt => "<",
    };
    let summary = format!(
        "{} is {:.2} ({} {}) over the last {} for {} ({} requests)",
        spec.metric,
        value,
        comparator,
        spec.threshold,
        spec.window,
        if scope_words.is_empty() {
            "all traffic".to_string()
        } else {
            scope_words.join(", ")
        },
        total.requests
    );
    let key = format!("rule:{}", rule.id);
    Ok(Watched {
        seen: Observation {
            key: key.clone(),
            holds: enough && spec.comparator.holds(value, spec.threshold),
            value,
            threshold: spec.threshold,
            hold_for: Duration::seconds(i64::try_from(spec.for_seconds).unwrap_or(i64::MAX)),
        },
        template: Alert {
            rule_id: Some(rule.id),
            labels,
            threshold: spec.threshold,
            summary,
            ..template(AlertKind::Rule, key, &spec.name, spec.severity, now)
        },
        channels: spec.channels.clone(),
    })
}

/// The budget's conditions at `now`: one per threshold, and the forecast passing the amount.
/// Budget alerts fire as soon as their condition holds.
pub async fn budget(
    analytics: &dyn AnalyticsStore,
    budget: &Budget,
    now: DateTime<Utc>,
) -> StoreResult<Vec<Watched>> {
    let status = BudgetStatus::read(analytics, budget, now).await?;
    let period_key = format!(
        "budget:{}:{}",
        budget.id,
        status.period_start.with_timezone(&Utc).timestamp()
    );
    let base_labels = BTreeMap::from([
        ("budget".to_string(), budget.spec.name.clone()),
        ("budget_id".to_string(), budget.id.to_string()),
        ("scope".to_string(), budget.spec.scope.to_string()),
        ("period".to_string(), budget.spec.period.to_string()),
        ("period_start".to_string(), status.period_start.to_rfc3339()),
    ]);
    let scope = match &budget.spec.scope_value {
        Some(v) => format!("{} {v}", budget.spec.scope),
        None => "all spending".to_string(),
    };
    let percent = status.utilization * 100.0;
    let mut out = Vec::new();
    for t in &budget.spec.thresholds_percent {
        let key = format!("{period_key}:threshold:{t}");
        let mut labels = base_labels.clone();
        labels.insert("threshold_percent".into(), t.to_string());
        let summary = format!(
            "Budget {} ({scope}, {}) is at {percent:.1}% of ${}: ${} spent since {} (threshold {t}%)",
            budget.spec.name,
            budget.spec.period,
            cents(&status.amount_usd),
            cents(&status.spend_usd),
            status.period_start.format("%Y-%m-%d %H:%M %:z")
        );
        out.push(Watched {
            seen: Observation {
                key: key.clone(),
                holds: status.thresholds_crossed.contains(t),
                value: percent,
                threshold: f64::from(*t),
                hold_for: Duration::zero(),
            },
            template: Alert {
                budget_id: Some(budget.id),
                labels,
                threshold: f64::from(*t),
                summary,
                ..template(
                    AlertKind::Budget,
                    key,
                    &budget.spec.name,
                    if *t >= 100 {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    now,
                )
            },
            channels: budget.spec.channels.clone(),
        });
    }
    let exact = |text: &str| Pico::parse_usd(text).unwrap_or(Pico(0));
    let over = exact(&status.forecast_usd) > exact(&status.amount_usd);
    let forecast: f64 = status.forecast_usd.parse().unwrap_or(0.0);
    let amount: f64 = status.amount_usd.parse().unwrap_or(0.0);
    let key = format!("{period_key}:forecast");
    let mut labels = base_labels;
    labels.insert("threshold_percent".into(), "forecast".into());
    let summary = format!(
        "Budget {} ({scope}, {}) is forecast to spend ${} by {}, over its ${}: ${} spent so far",
        budget.spec.name,
        budget.spec.period,
        cents(&status.forecast_usd),
        status.period_end.format("%Y-%m-%d %H:%M %:z"),
        cents(&status.amount_usd),
        cents(&status.spend_usd)
    );
    out.push(Watched {
        seen: Observation {
            key: key.clone(),
            holds: over,
            value: forecast,
            threshold: amount,
            hold_for: Duration::zero(),
        },
        template: Alert {
            budget_id: Some(budget.id),
            labels,
            threshold: amount,
            summary,
            ..template(
                AlertKind::Budget,
                key,
                &budget.spec.name,
                Severity::Warning,
                now,
            )
        },
        channels: budget.spec.channels.clone(),
    });
    Ok(out)
}
