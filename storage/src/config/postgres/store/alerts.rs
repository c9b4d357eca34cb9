//! Notification channels, alert rules, alerts and their deliveries, on Postgres
//! ([`AlertStore`]).
//!
//! **One evaluator.** Several processes share this store, and exactly one of them may evaluate
//! rules and deliver notifications. It is elected with a session-level advisory lock
//! (`pg_try_advisory_lock`) taken on a connection the holder keeps for as long as it lives:
//! when the holder dies its session ends, Postgres releases the lock, and the next process that
//! asks takes over (fail-over within one evaluation interval). The holder checks its connection
//! each time it asks; a broken one means the lease is lost. Transitions are also written
//! conditionally (only from the state the evaluator saw; a partial unique index keeps one
//! unresolved alert per key), so even two evaluators overlapping during a fail-over record each
//! transition — and queue its deliveries — once.

use std::collections::BTreeMap;

use super::*;
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use tally_domain::alerting::{
    Alert, AlertKind, AlertState, Attempt, Delivery, DeliveryStatus, Transition,
};
use tally_domain::config::{
    AlertMetric, AlertRule, AlertRuleSpec, Channel, ChannelSpec, ChannelType, Comparator,
    RuleWindow, Severity,
};
use tally_domain::store::{AlertQuery, AlertStore};

/// Advisory-lock key of the evaluator's lease ("alerts" in ASCII).
const EVALUATOR_LOCK: i64 = 0x616c_6572_7473;

/// The connection holding the evaluator's lease, while this process holds it.
pub type Lease = tokio::sync::Mutex<Option<PoolConnection<Postgres>>>;

/// Every channel in `ids` exists (`Invalid` naming `channels` otherwise).
pub(super) async fn channels_exist(tx: &mut Tx, ids: &[Uuid]) -> Result<()> {
    let known: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM notification_channels WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?;
    rules::channels_exist(ids, |id| Ok::<bool, Failure>(known.contains(id)))??;
    Ok(())
}

const CHANNEL_COLUMNS: &str = "id, name, channel_type, url, secret_env, created_at";

fn channel_row(r: &PgRow) -> Result<Channel> {
    let kind: String = r.try_get("channel_type")?;
    Ok(Channel {
        id: r.try_get("id")?,
        spec: ChannelSpec {
            name: r.try_get("name")?,
            channel_type: ChannelType::parse(&kind).ok_or_else(|| corrupt("channel type"))?,
            url: r.try_get("url")?,
            secret_env: r.try_get("secret_env")?,
        },
        created_at: r.try_get("created_at")?,
    })
}

const RULE_COLUMNS: &str = "id, name, metric, scope, comparator, threshold, window_name, min_requests, for_seconds, severity, channels, created_at, updated_at";

fn rule_row(r: &PgRow) -> Result<AlertRule> {
    let word = |name: &str| r.try_get::<String, _>(name);
    Ok(AlertRule {
        id: r.try_get("id")?,
        spec: AlertRuleSpec {
            name: r.try_get("name")?,
            metric: AlertMetric::parse(&word("metric")?).ok_or_else(|| corrupt("rule metric"))?,
            scope: r.try_get::<Json<_>, _>("scope")?.0,
            comparator: Comparator::parse(&word("comparator")?)
                .ok_or_else(|| corrupt("rule comparator"))?,
            threshold: r.try_get("threshold")?,
            window: RuleWindow::parse(&word("window_name")?)
                .ok_or_else(|| corrupt("rule window"))?,
            min_requests: u64::try_from(r.try_get::<i64, _>("min_requests")?).unwrap_or(0),
            for_seconds: u64::try_from(r.try_get::<i64, _>("for_seconds")?).unwrap_or(0),
            severity: Severity::parse(&word("severity")?)
                .ok_or_else(|| corrupt("rule severity"))?,
            channels: r.try_get::<Json<Vec<Uuid>>, _>("channels")?.0,
        },
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn rule(tx: &mut Tx, id: Uuid) -> Result<AlertRule> {
    let row = sqlx::query(&format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| missing::alert_rule(id))?;
    rule_row(&row)
}

async fn write_rule(
    tx: &mut Tx,
    id: Uuid,
    spec: &AlertRuleSpec,
    at: DateTime<Utc>,
) -> Result<AlertRule> {
    let row = sqlx::query(&format!(
        "INSERT INTO alert_rules (id, name, metric, scope, comparator, threshold, window_name, min_requests, for_seconds, severity, channels, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
         ON CONFLICT (id) DO UPDATE SET name = $2, metric = $3, scope = $4, comparator = $5, threshold = $6, window_name = $7, min_requests = $8, for_seconds = $9, severity = $10, channels = $11, updated_at = $12
         RETURNING {RULE_COLUMNS}"
    ))
    .bind(id)
    .bind(&spec.name)
    .bind(spec.metric.as_str())
    .bind(Json(&spec.scope))
    .bind(spec.comparator.as_str())
    .bind(spec.threshold)
    .bind(spec.window.as_str())
    .bind(i64::try_from(spec.min_requests).unwrap_or(i64::MAX))
    .bind(i64::try_from(spec.for_seconds).unwrap_or(i64::MAX))
    .bind(spec.severity.as_str())
    .bind(Json(&spec.channels))
    .bind(at)
    .fetch_one(&mut **tx)
    .await?;
    rule_row(&row)
}

const ALERT_COLUMNS: &str = "id, kind, rule_id, budget_id, alert_key, name, state, severity, labels, value, threshold, summary, started_at, firing_at, resolved_at, acknowledged_by, acknowledged_at, updated_at";

fn alert_row(r: &PgRow) -> Result<Alert> {
    let word = |name: &str| r.try_get::<String, _>(name);
    Ok(Alert {
        id: r.try_get("id")?,
        kind: AlertKind::parse(&word("kind")?).ok_or_else(|| corrupt("alert kind"))?,
        rule_id: r.try_get("rule_id")?,
        budget_id: r.try_get("budget_id")?,
        key: r.try_get("alert_key")?,
        name: r.try_get("name")?,
        state: AlertState::parse(&word("state")?).ok_or_else(|| corrupt("alert state"))?,
        severity: Severity::parse(&word("severity")?).ok_or_else(|| corrupt("alert severity"))?,
        labels: r.try_get::<Json<BTreeMap<String, String>>, _>("labels")?.0,
        value: r.try_get("value")?,
        threshold: r.try_get("threshold")?,
        summary: r.try_get("summary")?,
        started_at: r.try_get("started_at")?,
        firing_at: r.try_get("firing_at")?,
        resolved_at: r.try_get("resolved_at")?,
        acknowledged_by: r.try_get("acknowledged_by")?,
        acknowledged_at: r.try_get("acknowledged_at")?,
        updated_at: r.try_get("updated_at")?,
        deliveries: Vec::new(),
    })
}

const DELIVERY_COLUMNS: &str = "id, alert_id, channel_id, transition, dedup_key, status, attempts, next_attempt_at, created_at";

fn delivery_row(r: &PgRow) -> Result<Delivery> {
    let word = |name: &str| r.try_get::<String, _>(name);
    Ok(Delivery {
        id: r.try_get("id")?,
        alert_id: r.try_get("alert_id")?,
        channel_id: r.try_get("channel_id")?,
        transition: AlertState::parse(&word("transition")?)
            .ok_or_else(|| corrupt("delivery transition"))?,
        dedup_key: r.try_get("dedup_key")?,
        status: DeliveryStatus::parse(&word("status")?)
            .ok_or_else(|| corrupt("delivery status"))?,
        attempts: r.try_get::<Json<Vec<Attempt>>, _>("attempts")?.0,
        next_attempt_at: r.try_get("next_attempt_at")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Fills in each alert's deliveries, oldest first.
async fn with_deliveries<'e>(
    db: impl sqlx::PgExecutor<'e>,
    mut alerts: Vec<Alert>,
) -> Result<Vec<Alert>> {
    let ids: Vec<Uuid> = alerts.iter().map(|a| a.id).collect();
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries WHERE alert_id = ANY($1) ORDER BY created_at, seq"
    ))
    .bind(&ids)
    .fetch_all(db)
    .await?;
    let mut by_alert: BTreeMap<Uuid, Vec<Delivery>> = BTreeMap::new();
    for row in &rows {
        let d = delivery_row(row)?;
        by_alert.entry(d.alert_id).or_default().push(d);
    }
    for alert in &mut alerts {
        alert.deliveries = by_alert.remove(&alert.id).unwrap_or_default();
    }
    Ok(alerts)
}

async fn alert(tx: &mut Tx, id: Uuid) -> Result<Alert> {
    let row = sqlx::query(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| missing::alert(id))?;
    let found = alert_row(&row)?;
    Ok(with_deliveries(&mut **tx, vec![found]).await?.remove(0))
}

#[async_trait]
impl AlertStore for PostgresConfigStore {
    async fn list_channels(&self) -> StoreResult<Vec<Channel>> {
        seam(async || -> Result<Vec<Channel>> {
            all(
                sqlx::query(&format!(
                    "SELECT {CHANNEL_COLUMNS} FROM notification_channels ORDER BY name, created_at, seq"
                ))
                .fetch_all(&self.pool)
                .await?,
                channel_row,
            )
        })
        .await
    }

    #[instrument(name = "postgres.create_channel", skip_all, err)]
    async fn create_channel(&self, spec: ChannelSpec, change: &Change) -> StoreResult<Channel> {
        seam(async || -> Result<Channel> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(&format!(
                "INSERT INTO notification_channels (id, name, channel_type, url, secret_env, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING {CHANNEL_COLUMNS}"
            ))
            .bind(Uuid::now_v7())
            .bind(&spec.name)
            .bind(spec.channel_type.as_str())
            .bind(&spec.url)
            .bind(&spec.secret_env)
            .bind(change.at)
            .fetch_one(&mut *tx)
            .await?;
            let created = channel_row(&row)?;
            commit_audited(tx, change, "create", None, Some(&created)).await?;
            Ok(created)
        })
        .await
    }

    #[instrument(name = "postgres.delete_channel", skip_all, err)]
    async fn delete_channel(&self, id: Uuid, change: &Change) -> StoreResult<Channel> {
        seam(async || -> Result<Channel> {
            let mut tx = self.pool.begin().await?;
            let row = sqlx::query(&format!(
                "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = $1 FOR UPDATE"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| missing::channel(id))?;
            let before = channel_row(&row)?;
            let users: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM alert_rules WHERE channels ? $1)
                      + (SELECT COUNT(*) FROM ai_spending_budgets WHERE channels ? $1)",
            )
            .bind(id.to_string())
            .fetch_one(&mut *tx)
            .await?;
            rules::channel_deletable(id, users)?;
            sqlx::query("DELETE FROM notification_channels WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&before), None).await?;
            Ok(before)
        })
        .await
    }

    async fn list_alert_rules(&self) -> StoreResult<Vec<AlertRule>> {
        seam(async || -> Result<Vec<AlertRule>> {
            all(
                sqlx::query(&format!(
                    "SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY name, created_at, seq"
                ))
                .fetch_all(&self.pool)
                .await?,
                rule_row,
            )
        })
        .await
    }

    #[instrument(name = "postgres.create_alert_rule", skip_all, err)]
    async fn create_alert_rule(
        &self,
        spec: AlertRuleSpec,
        change: &Change,
    ) -> StoreResult<AlertRule> {
        seam(async || -> Result<AlertRule> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            channels_exist(&mut tx, &spec.channels).await?;
            let created = write_rule(&mut tx, Uuid::now_v7(), &spec, change.at).await?;
            commit_audited(tx, change, "create", None, Some(&created)).await?;
            Ok(created)
        })
        .await
    }

    #[instrument(name = "postgres.update_alert_rule", skip_all, err)]
    async fn update_alert_rule(
        &self,
        id: Uuid,
        spec: AlertRuleSpec,
        change: &Change,
    ) -> StoreResult<AlertRule> {
        seam(async || -> Result<AlertRule> {
            spec.validate()?;
            let mut tx = self.pool.begin().await?;
            let before = rule(&mut tx, id).await?;
            channels_exist(&mut tx, &spec.channels).await?;
            let after = write_rule(&mut tx, id, &spec, change.at).await?;
            finish_write(tx, change, Write::Upsert, Some(before), after).await
        })
        .await
    }

    #[instrument(name = "postgres.delete_alert_rule", skip_all, err)]
    async fn delete_alert_rule(&self, id: Uuid, change: &Change) -> StoreResult<AlertRule> {
        seam(async || -> Result<AlertRule> {
            let mut tx = self.pool.begin().await?;
            let before = rule(&mut tx, id).await?;
            sqlx::query("DELETE FROM alert_rules WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            commit_audited(tx, change, "delete", Some(&before), None).await?;
            Ok(before)
        })
        .await
    }

    #[instrument(name = "postgres.record_transition", skip_all, err)]
    async fn record_transition(&self, t: &Transition) -> StoreResult<bool> {
        seam(async || -> Result<bool> {
            let mut tx = self.pool.begin().await?;
            let a = &t.alert;
            let written = match t.from {
                None => sqlx::query(
                    "INSERT INTO alerts (id, kind, rule_id, budget_id, alert_key, name, state, severity, labels, value, threshold, summary, started_at, firing_at, resolved_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
                     ON CONFLICT DO NOTHING",
                )
                .bind(a.id)
                .bind(a.kind.as_str())
                .bind(a.rule_id)
                .bind(a.budget_id)
                .bind(&a.key)
                .bind(&a.name)
                .bind(a.state.as_str())
                .bind(a.severity.as_str())
                .bind(Json(&a.labels))
                .bind(a.value)
                .bind(a.threshold)
                .bind(&a.summary)
                .bind(a.started_at)
                .bind(a.firing_at)
                .bind(a.resolved_at)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Some(from) => sqlx::query(
                    "UPDATE alerts SET state = $2, value = $3, firing_at = $4, resolved_at = $5, updated_at = $6
                     WHERE id = $1 AND state = $7",
                )
                .bind(a.id)
                .bind(a.state.as_str())
                .bind(a.value)
                .bind(a.firing_at)
                .bind(a.resolved_at)
                .bind(a.updated_at)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if written == 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO alert_transitions (alert_id, state, value, at) VALUES ($1, $2, $3, $4)",
            )
            .bind(a.id)
            .bind(a.state.as_str())
            .bind(a.value)
            .bind(a.updated_at)
            .execute(&mut *tx)
            .await?;
            let dedup_key = Delivery::dedup_key(a.id, a.state);
            for channel in &t.deliver_to {
                sqlx::query(
                    "INSERT INTO alert_deliveries (id, alert_id, channel_id, transition, dedup_key, status, attempts, next_attempt_at, created_at)
                     VALUES ($1, $2, $3, $4, $5, 'pending', '[]', $6, $6) ON CONFLICT DO NOTHING",
                )
                .bind(Uuid::now_v7())
                .bind(a.id)
                .bind(channel)
                .bind(a.state.as_str())
                .bind(&dedup_key)
                .bind(a.updated_at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Vec<Alert>> {
        seam(async || -> Result<Vec<Alert>> {
            let states: Vec<&str> = query.states.iter().map(|s| s.as_str()).collect();
            let rows = sqlx::query(&format!(
                "SELECT {ALERT_COLUMNS} FROM alerts
                 WHERE (cardinality($1::text[]) = 0 OR state = ANY($1))
                   AND ($2::text IS NULL OR severity = $2)
                   AND ($3::text IS NULL OR kind = $3)
                   AND ($4::timestamptz IS NULL OR updated_at >= $4)
                   AND ($6::uuid IS NULL OR id = $6)
                 ORDER BY updated_at DESC, id DESC
                 LIMIT $5"
            ))
            .bind(&states)
            .bind(query.severity.map(|s| s.as_str()))
            .bind(query.kind.map(|k| k.as_str()))
            .bind(query.since)
            .bind(query.limit.map(i64::from))
            .bind(query.id)
            .fetch_all(&self.pool)
            .await?;
            let alerts = all(rows, alert_row)?;
            with_deliveries(&self.pool, alerts).await
        })
        .await
    }

    #[instrument(name = "postgres.acknowledge_alert", skip_all, err)]
    async fn acknowledge_alert(&self, id: Uuid, change: &Change) -> StoreResult<Alert> {
        seam(async || -> Result<Alert> {
            let mut tx = self.pool.begin().await?;
            let before = alert(&mut tx, id).await?;
            if before.acknowledged_at.is_some() {
                return Ok(before);
            }
            sqlx::query(
                "UPDATE alerts SET acknowledged_by = $2, acknowledged_at = $3 WHERE id = $1",
            )
            .bind(id)
            .bind(&change.actor.name)
            .bind(change.at)
            .execute(&mut *tx)
            .await?;
            let after = alert(&mut tx, id).await?;
            commit_audited(tx, change, "acknowledge", Some(&before), Some(&after)).await?;
            Ok(after)
        })
        .await
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Delivery>> {
        seam(async || -> Result<Vec<Delivery>> {
            all(
                sqlx::query(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM alert_deliveries
                     WHERE status = 'pending' AND next_attempt_at <= $1
                     ORDER BY next_attempt_at, seq LIMIT $2"
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?,
                delivery_row,
            )
        })
        .await
    }

    async fn record_attempt(
        &self,
        id: Uuid,
        attempt: Attempt,
        status: DeliveryStatus,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> StoreResult<()> {
        seam(async || -> Result<()> {
            sqlx::query(
                "UPDATE alert_deliveries
                 SET status = $2, attempts = attempts || $3, next_attempt_at = $4
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(Json(vec![&attempt]))
            .bind(next_attempt_at)
            .execute(&self.pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn hold_evaluator_lease(&self) -> StoreResult<bool> {
        seam(async || -> Result<bool> {
            let mut held = self.lease.lock().await;
            if let Some(conn) = held.as_mut() {
                // Still ours while the session that took the lock is alive.
                if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                    return Ok(true);
                }
                *held = None;
            }
            let mut conn = self.pool.acquire().await?;
            let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(EVALUATOR_LOCK)
                .fetch_one(&mut *conn)
                .await?;
            if got {
                *held = Some(conn);
            }
            Ok(got)
        })
        .await
    }
}
