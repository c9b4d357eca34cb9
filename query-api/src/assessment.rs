//! Health verdicts from recent events: a feature's status and a provider's health score, each
//! with the reasons that produced it.
//!
//! Both read rollups only. "Recent" is the last 15 minutes unless the caller names another
//! range; a provider's latency is compared with its own baseline, the 24 hours before the recent
//! window.
//!
//! Feature status: `unhealthy` at an error rate (errors and timeouts) of 25 % or more,
//! `degraded` at 5 % or more or when p95 latency exceeds 10 s, else `healthy`; `idle` without
//! events. A feature configured `inactive` or `maintenance` reports that status, with the
//! numbers still shown.
//!
//! Provider score, 0–100: 100, less twice the error percentage (at most 50), less three times
//! the timeout percentage (at most 30), less 20 per unit the recent p95 exceeds 1.5× the
//! baseline p95 (at most 20). `healthy` from 90, `degraded` from 60, else `unhealthy`; no recent
//! events: no score, `idle`.

use serde::Serialize;
use tally_domain::rollup::Rollup;

use crate::aggregate::pct;

/// The numbers a verdict rests on.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct Signals {
    pub requests: u64,
    pub errors: u64,
    pub timeouts: u64,
    /// Errors and timeouts, percent of requests.
    pub error_rate: f64,
    pub timeout_rate: f64,
    pub latency_p95_ms: Option<f64>,
}

impl Signals {
    pub fn of(r: &Rollup) -> Signals {
        Signals {
            requests: r.requests,
            errors: r.errors,
            timeouts: r.timeouts,
            error_rate: pct(r.failures(), r.requests),
            timeout_rate: pct(r.timeouts, r.requests),
            latency_p95_ms: r.latency.quantile_ms(0.95),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct FeatureVerdict {
    pub status: &'static str,
    pub reasons: Vec<String>,
}

/// A feature's status from its recent rollup and its configured status.
pub fn feature_status(recent: &Rollup, configured: Option<&str>) -> FeatureVerdict {
    let s = Signals::of(recent);
    let mut reasons = Vec::new();
    let measured = if s.requests == 0 {
        reasons.push("no events in the window".to_string());
        "idle"
    } else {
        let p95 = s.latency_p95_ms.unwrap_or(0.0);
        if s.error_rate >= 25.0 {
            reasons.push(format!("error rate {:.1}% is at least 25%", s.error_rate));
        } else if s.error_rate >= 5.0 {
            reasons.push(format!("error rate {:.1}% is at least 5%", s.error_rate));
        }
        if p95 > 10_000.0 {
            reasons.push(format!("p95 latency {p95:.0} ms exceeds 10000 ms"));
        }
        if s.error_rate >= 25.0 {
            "unhealthy"
        } else if reasons.is_empty() {
            "healthy"
        } else {
            "degraded"
        }
    };
    match configured {
        Some(c @ ("inactive" | "maintenance")) => {
            reasons.insert(0, format!("the feature is configured {c}"));
            FeatureVerdict {
                status: if c == "inactive" {
                    "inactive"
                } else {
                    "maintenance"
                },
                reasons,
            }
        }
        _ => FeatureVerdict {
            status: measured,
            reasons,
        },
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct ProviderVerdict {
    pub status: &'static str,
    /// 0–100; absent without recent events.
    pub score: Option<u32>,
    pub reasons: Vec<String>,
}

/// A provider's score from its recent rollup and its baseline (see the module docs).
pub fn provider_health(recent: &Rollup, baseline: &Rollup) -> ProviderVerdict {
    let s = Signals::of(recent);
    if s.requests == 0 {
        return ProviderVerdict {
            status: "idle",
            score: None,
            reasons: vec!["no events in the window".to_string()],
        };
    }
    let mut score = 100.0;
    let mut reasons = Vec::new();
    let error_pct = pct(s.errors, s.requests);
    let error_penalty = (error_pct * 2.0).min(50.0);
    if error_penalty > 0.0 {
        score -= error_penalty;
        reasons.push(format!(
            "error rate {error_pct:.1}% costs {error_penalty:.1} points"
        ));
    }
    let timeout_penalty = (s.timeout_rate * 3.0).min(30.0);
    if timeout_penalty > 0.0 {
        score -= timeout_penalty;
        reasons.push(format!(
            "timeout rate {:.1}% costs {timeout_penalty:.1} points",
            s.timeout_rate
        ));
    }
    match (s.latency_p95_ms, baseline.latency.quantile_ms(0.95)) {
        (Some(now), Some(base)) if base > 0.0 => {
            let ratio = now / base;
            let penalty = ((ratio - 1.5) * 20.0).clamp(0.0, 20.0);
            if penalty > 0.0 {
                score -= penalty;
                reasons.push(format!(
                    "p95 latency {now:.0} ms is {ratio:.2}x its baseline {base:.0} ms, costing {penalty:.1} points"
                ));
            }
        }
        _ => reasons
            .push("no baseline latency to compare with (no events in the 24 h before)".into()),
    }
    let score = score.clamp(0.0, 100.0).round() as u32;
    let status = if score >= 90 {
        "healthy"
    } else if score >= 60 {
        "degraded"
    } else {
        "unhealthy"
    };
    ProviderVerdict {
        status,
        score: Some(score),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_schemas::event::Status;
    use tally_schemas::UsageEvent;

    /// `n` events, `errors` and `timeouts` of them failed, each taking `latency_ms`.
    fn rollup(n: u64, errors: u64, timeouts: u64, latency_ms: u64) -> Rollup {
        let mut r = Rollup::default();
        for i in 0..n {
            let mut e = UsageEvent::example();
            e.event_id = format!("e{i}");
            e.latency_us = latency_ms * 1000;
            e.status = if i < errors {
                Status::Error
            } else if i < errors + timeouts {
                Status::Timeout
            } else {
                Status::Success
            };
            r.add_event(&e);
        }
        r
    }

    #[test]
    fn feature_status_follows_the_thresholds() {
        assert_eq!(
            feature_status(&rollup(100, 0, 0, 100), Some("active")).status,
            "healthy"
        );
        let v = feature_status(&rollup(100, 3, 2, 100), Some("active"));
        assert_eq!(v.status, "degraded", "5 of 100 failed");
        assert!(v.reasons[0].contains("5.0%"), "{v:?}");
        assert_eq!(
            feature_status(&rollup(100, 20, 5, 100), None).status,
            "unhealthy"
        );
        assert_eq!(
            feature_status(&rollup(100, 0, 0, 12_000), None).status,
            "degraded"
        );
        assert_eq!(feature_status(&Rollup::default(), None).status, "idle");
        let v = feature_status(&rollup(10, 0, 0, 100), Some("maintenance"));
        assert_eq!(v.status, "maintenance");
        assert_eq!(v.reasons[0], "the feature is configured maintenance");
    }

    #[test]
    fn provider_score_is_the_documented_formula() {
        let base = rollup(100, 0, 0, 100);
        let clean = provider_health(&rollup(50, 0, 0, 100), &base);
        assert_eq!((clean.score, clean.status), (Some(100), "healthy"));
        assert!(clean.reasons.is_empty(), "{clean:?}");
        // 10 % errors → −20; 5 % timeouts → −15; p95 at 3× baseline → −20 (capped): 45.
        let bad = provider_health(&rollup(100, 10, 5, 300), &base);
        assert_eq!((bad.score, bad.status), (Some(45), "unhealthy"), "{bad:?}");
        assert_eq!(bad.reasons.len(), 3);
        // 2 % errors → −4; p95 at 2× → −10: 86.
        let slow = provider_health(&rollup(100, 2, 0, 200), &base);
        assert_eq!(
            (slow.score, slow.status),
            (Some(86), "degraded"),
            "{slow:?}"
        );
        let idle = provider_health(&Rollup::default(), &base);
        assert_eq!((idle.score, idle.status), (None, "idle"));
        let fresh = provider_health(&rollup(10, 0, 0, 100), &Rollup::default());
        assert_eq!(fresh.score, Some(100));
        assert!(fresh.reasons[0].contains("no baseline"), "{fresh:?}");
    }
}
