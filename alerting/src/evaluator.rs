//! The evaluator: each round, while this process holds the evaluator's lease
//! ([`AlertStore::hold_evaluator_lease`]), observes every alert rule and active budget
//! ([`crate::observe`]), moves their alerts through the lifecycle
//! ([`tally_domain::alerting::alerts::next_state`]) and records each transition with its
//! deliveries; then delivers what is due ([`crate::delivery`]).
//!
//! Where it runs: inside the one process in embedded mode; in distributed mode in every
//! projector process, of which exactly one — the lease holder — evaluates and delivers (a
//! Postgres advisory lock, released when its holder dies; see the Postgres store). Transitions
//! are recorded only from the state the evaluator saw, so even two evaluators overlapping during
//! a fail-over record (and notify) each transition once.
//!
//! Alerts whose rule or budget is gone or inactive, or whose budget period has ended, are
//! resolved (told to their channels if they had fired).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Utc};
use tally_domain::alerting::alerts::{next_state, transition, Observation};
use tally_domain::alerting::{Alert, AlertState, Transition};
use tally_domain::clock::Clock;
use tally_domain::store::{AlertQuery, AnalyticsStore, ConfigStore, StoreResult};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::delivery::Deliverer;
use crate::observe::{self, Watched};

pub struct Evaluator {
    pub config: Arc<dyn ConfigStore>,
    pub analytics: Arc<dyn AnalyticsStore>,
    pub clock: Arc<dyn Clock>,
    pub deliverer: Deliverer,
    /// Time between rounds.
    pub interval: StdDuration,
}

impl Evaluator {
    /// Evaluates and delivers every `interval` until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        crate::delivery::describe_metrics();
        let mut leading = false;
        loop {
            match self.config.hold_evaluator_lease().await {
                Ok(lead) => {
                    if lead != leading {
                        info!(leading = lead, "alert evaluator lease");
                        leading = lead;
                    }
                    if lead {
                        if let Err(e) = self.evaluate().await {
                            warn!(error = %e, "alert evaluation failed; retrying next round");
                        }
                        if let Err(e) = self.deliverer.deliver_due().await {
                            warn!(error = %e, "notification delivery failed; retrying next round");
                        }
                    }
                }
                Err(e) => warn!(error = %e, "cannot ask for the evaluator lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One round: observes everything watched and records the transitions that follow.
    /// Returns the transitions this evaluator recorded.
    pub async fn evaluate(&self) -> StoreResult<Vec<Transition>> {
        let now = self.clock.now();
        let open = self
            .config
            .list_alerts(&AlertQuery {
                states: vec![AlertState::Pending, AlertState::Firing],
                ..AlertQuery::default()
            })
            .await?;
        let mut watched: Vec<Watched> = Vec::new();
        let rules = self.config.list_alert_rules().await?;
        let budgets = self.config.list_budgets().await?;
        for rule in &rules {
            watched.push(observe::rule(self.analytics.as_ref(), rule, now).await?);
        }
        for budget in &budgets {
            if budget.spec.is_active {
                watched.extend(observe::budget(self.analytics.as_ref(), budget, now).await?);
            }
        }
        let mut recorded = Vec::new();
        let keys: HashSet<&str> = watched.iter().map(|w| w.seen.key.as_str()).collect();
        for w in &watched {
            let current = open.iter().find(|a| a.key == w.seen.key);
            if let Some(t) = self.step(current, w, now) {
                if self.config.record_transition(&t).await? {
                    recorded.push(t);
                }
            }
        }
        // Nothing watches these any more: their condition cannot hold.
        for orphan in open.iter().filter(|a| !keys.contains(a.key.as_str())) {
            // Told where its rule or budget (if it still exists) sends its alerts.
            let channels = rules
                .iter()
                .find(|r| Some(r.id) == orphan.rule_id)
                .map(|r| r.spec.channels.clone())
                .or_else(|| {
                    budgets
                        .iter()
                        .find(|b| Some(b.id) == orphan.budget_id)
                        .map(|b| b.spec.channels.clone())
                })
                .unwrap_or_default();
            let t = transition(
                Some(orphan),
                orphan.clone(),
                AlertState::Resolved,
                orphan.value,
                now,
                &channels,
            );
            if self.config.record_transition(&t).await? {
                recorded.push(t);
            }
        }
        Ok(recorded)
    }

    fn step(&self, current: Option<&Alert>, w: &Watched, now: DateTime<Utc>) -> Option<Transition> {
        let seen: &Observation = &w.seen;
        let state = next_state(current, seen, now)?;
        Some(transition(
            current,
            w.template.clone(),
            state,
            seen.value,
            now,
            &w.channels,
        ))
    }
}
