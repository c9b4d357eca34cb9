//! Alerts: what an alert rule or a budget raised, its lifecycle, and the deliveries of its
//! transitions to notification channels.
//!
//! Lifecycle (Prometheus alerting semantics): an alert opens `pending` when its condition starts
//! to hold, turns `firing` once the condition has held for the rule's `for_seconds` (at once when
//! that is 0, and always at once for budgets), and `resolved` when the condition stops holding
//! (a pending alert that never fired resolves without ever being delivered). A resolved alert is
//! final: the condition holding again opens a new alert. At most one unresolved alert exists per
//! [`Alert::key`].
//!
//! Entering `firing` and resolving after having fired are delivered to the alert's channels:
//! one delivery per channel per transition, carrying the transition's `dedup_key`
//! (`<alert id>:<state>`), so a receiver can drop repeats of an at-least-once delivery.

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

pub use crate::config::{
    Alert, AlertKind, AlertState, Attempt, Delivery, DeliveryStatus, Transition,
};

/// What an evaluation found for one watched condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub key: String,
    /// Whether the condition holds (false when there is no data).
    pub holds: bool,
    pub value: f64,
    pub threshold: f64,
    /// How long the condition must hold before firing.
    pub hold_for: Duration,
}

/// The new state of `current` (the unresolved alert with the observation's key, if any)
/// given what was observed at `now`, or `None` when nothing changes.
pub fn next_state(
    current: Option<&Alert>,
    seen: &Observation,
    now: DateTime<Utc>,
) -> Option<AlertState> {
    match (current.map(|a| (a.state, a.started_at)), seen.holds) {
        (None, false) => None,
        (None, true) if seen.hold_for <= Duration::zero() => Some(AlertState::Firing),
        (None, true) => Some(AlertState::Pending),
        (Some((AlertState::Pending, started)), true) if now - started >= seen.hold_for => {
            Some(AlertState::Firing)
        }
        (Some((AlertState::Pending | AlertState::Firing, _)), false) => Some(AlertState::Resolved),
        _ => None,
    }
}

/// The transition of `current` into `state` (a new alert from `template` when there is no
/// current one), delivered to `channels` when it is one people are told about.
pub fn transition(
    current: Option<&Alert>,
    template: Alert,
    state: AlertState,
    value: f64,
    now: DateTime<Utc>,
    channels: &[Uuid],
) -> Transition {
    let from = current.map(|a| a.state);
    let mut alert = current.cloned().unwrap_or(Alert {
        started_at: now,
        ..template
    });
    alert.deliveries.clear();
    alert.state = state;
    alert.value = value;
    alert.updated_at = now;
    match state {
        AlertState::Firing => alert.firing_at = Some(now),
        AlertState::Resolved => alert.resolved_at = Some(now),
        AlertState::Pending => {}
    }
    let told = state == AlertState::Firing
        || (state == AlertState::Resolved && from == Some(AlertState::Firing));
    Transition {
        alert,
        from,
        deliver_to: if told { channels.to_vec() } else { Vec::new() },
    }
}

/// The wait before retry number `attempt` (1 for the first retry): 2^(attempt−1) × `base`,
/// at most `cap`, less up to a fifth of it at random (`jitter` in [0, 1)), so that receivers
/// coming back are not hit by every sender at once.
pub fn backoff(attempt: u32, base: Duration, cap: Duration, jitter: f64) -> Duration {
    let doubled = base
        .checked_mul(1_i32 << attempt.saturating_sub(1).min(20))
        .unwrap_or(cap);
    let wait = doubled.min(cap);
    let spared = (wait.num_milliseconds() as f64 * jitter.clamp(0.0, 1.0) / 5.0) as i64;
    wait - Duration::milliseconds(spared)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::Severity;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_775_000_000 + minute * 60, 0).expect("instant")
    }

    fn seen(holds: bool, hold_for_minutes: i64) -> Observation {
        Observation {
            key: "k".into(),
            holds,
            value: 7.0,
            threshold: 5.0,
            hold_for: Duration::minutes(hold_for_minutes),
        }
    }

    fn template() -> Alert {
        Alert {
            id: Uuid::from_u128(1),
            kind: AlertKind::Rule,
            rule_id: Some(Uuid::from_u128(2)),
            budget_id: None,
            key: "k".into(),
            name: "errors".into(),
            state: AlertState::Pending,
            severity: Severity::Critical,
            labels: BTreeMap::new(),
            value: 0.0,
            threshold: 5.0,
            summary: String::new(),
            started_at: at(0),
            firing_at: None,
            resolved_at: None,
            acknowledged_by: None,
            acknowledged_at: None,
            updated_at: at(0),
            deliveries: vec![],
        }
    }

    /// Runs observations (minute, holds) through the lifecycle, as the evaluator does.
    fn run(hold_for: i64, rounds: &[(i64, bool)]) -> Vec<(i64, AlertState, usize)> {
        let mut current: Option<Alert> = None;
        let mut out = Vec::new();
        let channel = [Uuid::from_u128(9)];
        for (minute, holds) in rounds {
            let s = seen(*holds, hold_for);
            if let Some(state) = next_state(current.as_ref(), &s, at(*minute)) {
                let t = transition(
                    current.as_ref(),
                    template(),
                    state,
                    7.0,
                    at(*minute),
                    &channel,
                );
                out.push((*minute, state, t.deliver_to.len()));
                current = (state != AlertState::Resolved).then_some(t.alert);
            }
        }
        out
    }

    #[test]
    fn an_alert_is_pending_for_its_hold_time_then_fires_then_resolves() {
        // for = 3 minutes: holds from minute 0, fires at minute 3, stops at minute 5.
        let got = run(
            3,
            &[
                (0, true),
                (1, true),
                (2, true),
                (3, true),
                (4, true),
                (5, false),
                (6, false),
            ],
        );
        assert_eq!(
            got,
            vec![
                (0, AlertState::Pending, 0),
                (3, AlertState::Firing, 1),
                (5, AlertState::Resolved, 1),
            ]
        );
    }

    #[test]
    fn a_pending_alert_that_stops_holding_resolves_untold() {
        let got = run(5, &[(0, true), (2, true), (3, false), (4, true)]);
        assert_eq!(
            got,
            vec![
                (0, AlertState::Pending, 0),
                (3, AlertState::Resolved, 0),
                // Holding again opens a new alert, pending from the start.
                (4, AlertState::Pending, 0),
            ]
        );
    }

    #[test]
    fn no_hold_time_fires_at_once() {
        let got = run(0, &[(0, false), (1, true), (2, true), (3, false)]);
        assert_eq!(
            got,
            vec![(1, AlertState::Firing, 1), (3, AlertState::Resolved, 1)]
        );
    }

    #[test]
    fn retries_back_off_exponentially_up_to_a_cap_with_jitter_below() {
        let base = Duration::seconds(1);
        let cap = Duration::seconds(60);
        let waits: Vec<i64> = (1..=8)
            .map(|n| backoff(n, base, cap, 0.0).num_seconds())
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60]);
        // The most jitter takes a fifth off.
        assert_eq!(backoff(3, base, cap, 0.999_999).num_milliseconds(), 3_201);
        assert_eq!(backoff(60, base, cap, 0.0), cap);
    }
}
