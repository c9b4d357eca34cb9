//! Delivering transitions at least once: the outbox of pending deliveries lives in the
//! configuration store (written with the transition, so it survives a restart), and each round
//! the lease holder sends what is due. A failed attempt is retried after an exponential backoff
//! with jitter ([`tally_domain::alerting::alerts::backoff`]) until `max_attempts`, then the
//! delivery is `failed`. Every attempt — status code, error, time — is kept with the delivery.
//! A retry sends the same body with the same `dedup_key`, so receivers can drop repeats (a
//! crash between sending and recording the attempt repeats a send; it never loses one).

use std::sync::Arc;

use chrono::Duration;
use rand::Rng;
use tally_domain::alerting::alerts::backoff;
use tally_domain::alerting::{Attempt, Delivery, DeliveryStatus};
use tally_domain::clock::Clock;
use tally_domain::config::Channel;
use tally_domain::store::{AlertQuery, ConfigStore, StoreResult};
use tracing::{info_span, warn, Instrument};

use crate::notify::{self, Sender};

/// How deliveries are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all (the first included) before a delivery is `failed`.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 12,
            base: Duration::seconds(2),
            cap: Duration::minutes(10),
        }
    }
}

/// Describes the delivery counter to the metrics recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        "tally_notifications_total",
        "Notification attempts by channel type and outcome (delivered, retrying, gave_up)."
    );
}

#[derive(Clone)]
pub struct Deliverer {
    pub config: Arc<dyn ConfigStore>,
    pub clock: Arc<dyn Clock>,
    pub sender: Sender,
    pub retry: RetryPolicy,
    /// The console's address, for links in notifications.
    pub public_url: String,
}

impl Deliverer {
    /// Sends every delivery due now; returns how many were attempted.
    pub async fn deliver_due(&self) -> StoreResult<usize> {
        let due = self.config.due_deliveries(self.clock.now(), 100).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let channels = self.config.list_channels().await?;
        for delivery in &due {
            self.deliver(delivery, channels.iter().find(|c| c.id == delivery.channel_id))
                .instrument(info_span!("notify", channel = %delivery.channel_id, dedup_key = %delivery.dedup_key))
                .await?;
        }
        Ok(due.len())
    }

    async fn deliver(&self, delivery: &Delivery, channel: Option<&Channel>) -> StoreResult<()> {
        let now = self.clock.now();
        let alert = self
            .config
            .list_alerts(&AlertQuery {
                id: Some(delivery.alert_id),
                ..AlertQuery::default()
            })
            .await?
            .into_iter()
            .next();
        let (attempt, kind) = match (channel, alert) {
            (Some(channel), Some(alert)) => {
                let body = notify::body(
                    channel.spec.channel_type,
                    &alert,
                    delivery.transition,
                    &delivery.dedup_key,
                    &self.public_url,
                );
                let attempt = self
                    .sender
                    .send(channel, &body, &delivery.dedup_key, now)
                    .await;
                (attempt, channel.spec.channel_type.as_str())
            }
            (None, _) => {
                let gone = Attempt {
                    at: now,
                    status_code: None,
                    error: Some("the notification channel was deleted".into()),
                };
                return self
                    .config
                    .record_attempt(delivery.id, gone, DeliveryStatus::Failed, None)
                    .await;
            }
            (_, None) => return Ok(()),
        };
        let tries = u32::try_from(delivery.attempts.len()).unwrap_or(u32::MAX) + 1;
        let (status, next, outcome) = if attempt.error.is_none() {
            (DeliveryStatus::Delivered, None, "delivered")
        } else if tries >= self.retry.max_attempts {
            warn!(tries, error = ?attempt.error, "notification given up");
            (DeliveryStatus::Failed, None, "gave_up")
        } else {
            let jitter = rand::thread_rng().gen_range(0.0..1.0);
            let wait = backoff(tries, self.retry.base, self.retry.cap, jitter);
            (DeliveryStatus::Pending, Some(now + wait), "retrying")
        };
        metrics::counter!("tally_notifications_total", "channel_type" => kind, "outcome" => outcome)
            .increment(1);
        self.config
            .record_attempt(delivery.id, attempt, status, next)
            .await
    }
}
