//! Notification channels, alert rules, alerts and their deliveries, on SQLite ([`AlertStore`]).
//!
//! One process opens the embedded store, so it is always the evaluator. A transition is one
//! transaction: the alert row (inserted, or updated only while still in the state the evaluator
//! saw), its transition row and its deliveries; the partial unique index on `alert_key` keeps
//! one unresolved alert per key.

use std::collections::BTreeMap;

use super::*;
use tally_domain::alerting::{
    Alert, AlertKind, AlertState, Attempt, Delivery, DeliveryStatus, Transition,
};
use tally_domain::config::{
    AlertMetric, AlertRule, AlertRuleSpec, Channel, ChannelSpec, ChannelType, Comparator,
    RuleWindow, Severity,
};
use tally_domain::store::{AlertQuery, AlertStore};

/// Every channel in `ids` exists (`Invalid` naming `channels` otherwise).
pub(super) fn channels_exist(c: &Connection, ids: &[Uuid]) -> Result<()> {
    rules::channels_exist(ids, |id| {
        c.query_row(
            "SELECT COUNT(*) > 0 FROM notification_channels WHERE id = ?1",
            params![id.to_string()],
            |r| r.get::<_, bool>(0),
        )
    })??;
    Ok(())
}

const CHANNEL_SELECT: &str =
    "SELECT id, name, channel_type, url, secret_env, created_at FROM notification_channels";

fn channel_row(r: &Row) -> rusqlite::Result<Channel> {
    let kind: String = r.get(2)?;
    Ok(Channel {
        id: parse_uuid(&r.get::<_, String>(0)?)?,
        spec: ChannelSpec {
            name: r.get(1)?,
            channel_type: ChannelType::parse(&kind).ok_or_else(|| conversion("channel type"))?,
            url: r.get(3)?,
            secret_env: r.get(4)?,
        },
        created_at: parse_ts(&r.get::<_, String>(5)?)?,
    })
}

fn channel(c: &Connection, id: Uuid) -> Result<Channel> {
    c.query_row(
        &format!("{CHANNEL_SELECT} WHERE id = ?1"),
        params![id.to_string()],
        channel_row,
    )
    .optional()?
    .ok_or_else(|| missing::channel(id).into())
}

const RULE_SELECT: &str = "SELECT id, name, metric, scope, comparator, threshold, window_name, min_requests, for_seconds, severity, channels, created_at, updated_at FROM alert_rules";

fn rule_row(r: &Row) -> rusqlite::Result<AlertRule> {
    let word = |i: usize| r.get::<_, String>(i);
    Ok(AlertRule {
        id: parse_uuid(&word(0)?)?,
        spec: AlertRuleSpec {
            name: r.get(1)?,
            metric: AlertMetric::parse(&word(2)?).ok_or_else(|| conversion("rule metric"))?,
            scope: json_column(&word(3)?, "rule scope")?,
            comparator: Comparator::parse(&word(4)?)
                .ok_or_else(|| conversion("rule comparator"))?,
            threshold: r.get(5)?,
            window: RuleWindow::parse(&word(6)?).ok_or_else(|| conversion("rule window"))?,
            min_requests: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
            for_seconds: u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
            severity: Severity::parse(&word(9)?).ok_or_else(|| conversion("rule severity"))?,
            channels: json_column(&word(10)?, "rule channels")?,
        },
        created_at: parse_ts(&word(11)?)?,
        updated_at: parse_ts(&word(12)?)?,
    })
}

fn rule(c: &Connection, id: Uuid) -> Result<AlertRule> {
    c.query_row(
        &format!("{RULE_SELECT} WHERE id = ?1"),
        params![id.to_string()],
        rule_row,
    )
    .optional()?
    .ok_or_else(|| missing::alert_rule(id).into())
}

fn write_rule(c: &Connection, id: Uuid, spec: &AlertRuleSpec, at: DateTime<Utc>) -> Result<()> {
    c.execute(
        "INSERT INTO alert_rules (id, name, metric, scope, comparator, threshold, window_name, min_requests, for_seconds, severity, channels, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12)
         ON CONFLICT (id) DO UPDATE SET name = ?2, metric = ?3, scope = ?4, comparator = ?5, threshold = ?6, window_name = ?7, min_requests = ?8, for_seconds = ?9, severity = ?10, channels = ?11, updated_at = ?12",
        params![
            id.to_string(),
            spec.name,
            spec.metric.as_str(),
            json_text(&spec.scope)?,
            spec.comparator.as_str(),
            spec.threshold,
            spec.window.as_str(),
            i64::try_from(spec.min_requests).unwrap_or(i64::MAX),
            i64::try_from(spec.for_seconds).unwrap_or(i64::MAX),
            spec.severity.as_str(),
            json_text(&spec.channels)?,
            ts(at)
        ],
    )?;
    Ok(())
}

const ALERT_SELECT: &str = "SELECT id, kind, rule_id, budget_id, alert_key, name, state, severity, labels, value, threshold, summary, started_at, firing_at, resolved_at, acknowledged_by, acknowledged_at, updated_at FROM alerts";

fn alert_row(r: &Row) -> rusqlite::Result<Alert> {
    let text = |i: usize| r.get::<_, String>(i);
    let instant = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        r.get::<_, Option<String>>(i)?
            .map(|t| parse_ts(&t))
            .transpose()
    };
    let id_at = |i: usize| -> rusqlite::Result<Option<Uuid>> {
        r.get::<_, Option<String>>(i)?
            .map(|t| parse_uuid(&t))
            .transpose()
    };
    Ok(Alert {
        id: parse_uuid(&text(0)?)?,
        kind: AlertKind::parse(&text(1)?).ok_or_else(|| conversion("alert kind"))?,
        rule_id: id_at(2)?,
        budget_id: id_at(3)?,
        key: text(4)?,
        name: text(5)?,
        state: AlertState::parse(&text(6)?).ok_or_else(|| conversion("alert state"))?,
        severity: Severity::parse(&text(7)?).ok_or_else(|| conversion("alert severity"))?,
        labels: json_column::<BTreeMap<String, String>>(&text(8)?, "alert labels")?,
        value: r.get(9)?,
        threshold: r.get(10)?,
        summary: text(11)?,
        started_at: parse_ts(&text(12)?)?,
        firing_at: instant(13)?,
        resolved_at: instant(14)?,
        acknowledged_by: r.get(15)?,
        acknowledged_at: instant(16)?,
        updated_at: parse_ts(&text(17)?)?,
        deliveries: Vec::new(),
    })
}

const DELIVERY_SELECT: &str = "SELECT id, alert_id, channel_id, transition, dedup_key, status, attempts, next_attempt_at, created_at FROM alert_deliveries";

fn delivery_row(r: &Row) -> rusqlite::Result<Delivery> {
    let text = |i: usize| r.get::<_, String>(i);
    Ok(Delivery {
        id: parse_uuid(&text(0)?)?,
        alert_id: parse_uuid(&text(1)?)?,
        channel_id: parse_uuid(&text(2)?)?,
        transition: AlertState::parse(&text(3)?).ok_or_else(|| conversion("transition"))?,
        dedup_key: text(4)?,
        status: DeliveryStatus::parse(&text(5)?).ok_or_else(|| conversion("delivery status"))?,
        attempts: json_column::<Vec<Attempt>>(&text(6)?, "delivery attempts")?,
        next_attempt_at: r
            .get::<_, Option<String>>(7)?
            .map(|t| parse_ts(&t))
            .transpose()?,
        created_at: parse_ts(&text(8)?)?,
    })
}

/// Fills in each alert's deliveries, oldest first.
fn with_deliveries(c: &Connection, mut alerts: Vec<Alert>) -> Result<Vec<Alert>> {
    let mut stmt = c.prepare(&format!(
        "{DELIVERY_SELECT} WHERE alert_id = ?1 ORDER BY created_at, rowid"
    ))?;
    for alert in &mut alerts {
        alert.deliveries = stmt
            .query_map(params![alert.id.to_string()], delivery_row)?
            .collect::<Result<Vec<_>, _>>()?;
    }
    Ok(alerts)
}

fn alert(c: &Connection, id: Uuid) -> Result<Alert> {
    let found = c
        .query_row(
            &format!("{ALERT_SELECT} WHERE id = ?1"),
            params![id.to_string()],
            alert_row,
        )
        .optional()?
        .ok_or_else(|| Failure::from(missing::alert(id)))?;
    Ok(with_deliveries(c, vec![found])?.remove(0))
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

#[async_trait]
impl AlertStore for SqliteConfigStore {
    async fn list_channels(&self) -> StoreResult<Vec<Channel>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{CHANNEL_SELECT} ORDER BY name, created_at"))?;
            let rows = stmt
                .query_map([], channel_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_channel(&self, spec: ChannelSpec, change: &Change) -> StoreResult<Channel> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let id = Uuid::now_v7();
            tx.execute(
                "INSERT INTO notification_channels (id, name, channel_type, url, secret_env, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id.to_string(), spec.name, spec.channel_type.as_str(), spec.url, spec.secret_env, ts(change.at)],
            )?;
            let created = channel(&tx, id)?;
            insert_audit(&tx, &change.on("create", None, Some(&created)))?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn delete_channel(&self, id: Uuid, change: &Change) -> StoreResult<Channel> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = channel(&tx, id)?;
            let users: i64 = tx.query_row(
                "SELECT (SELECT COUNT(*) FROM alert_rules WHERE EXISTS (SELECT 1 FROM json_each(alert_rules.channels) WHERE value = ?1))
                      + (SELECT COUNT(*) FROM ai_spending_budgets WHERE EXISTS (SELECT 1 FROM json_each(ai_spending_budgets.channels) WHERE value = ?1))",
                params![id.to_string()],
                |r| r.get(0),
            )?;
            rules::channel_deletable(id, users)?;
            tx.execute(
                "DELETE FROM notification_channels WHERE id = ?1",
                params![id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&before), None))?;
            tx.commit()?;
            Ok(before)
        })
        .await
    }

    async fn list_alert_rules(&self) -> StoreResult<Vec<AlertRule>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!("{RULE_SELECT} ORDER BY name, created_at, rowid"))?;
            let rows = stmt
                .query_map([], rule_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_alert_rule(
        &self,
        spec: AlertRuleSpec,
        change: &Change,
    ) -> StoreResult<AlertRule> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            channels_exist(&tx, &spec.channels)?;
            let id = Uuid::now_v7();
            write_rule(&tx, id, &spec, change.at)?;
            let created = rule(&tx, id)?;
            insert_audit(&tx, &change.on("create", None, Some(&created)))?;
            tx.commit()?;
            Ok(created)
        })
        .await
    }

    async fn update_alert_rule(
        &self,
        id: Uuid,
        spec: AlertRuleSpec,
        change: &Change,
    ) -> StoreResult<AlertRule> {
        spec.validate()?;
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = rule(&tx, id)?;
            channels_exist(&tx, &spec.channels)?;
            write_rule(&tx, id, &spec, change.at)?;
            let after = rule(&tx, id)?;
            match change.upserted(Some(&before), &after) {
                Some(entry) => {
                    insert_audit(&tx, &entry)?;
                    tx.commit()?;
                    Ok(after)
                }
                None => Ok(before),
            }
        })
        .await
    }

    async fn delete_alert_rule(&self, id: Uuid, change: &Change) -> StoreResult<AlertRule> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = rule(&tx, id)?;
            tx.execute(
                "DELETE FROM alert_rules WHERE id = ?1",
                params![id.to_string()],
            )?;
            insert_audit(&tx, &change.on("delete", Some(&before), None))?;
            tx.commit()?;
            Ok(before)
        })
        .await
    }

    async fn record_transition(&self, t: &Transition) -> StoreResult<bool> {
        let t = t.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let a = &t.alert;
            let written = match t.from {
                None => tx.execute(
                    "INSERT INTO alerts (id, kind, rule_id, budget_id, alert_key, name, state, severity, labels, value, threshold, summary, started_at, firing_at, resolved_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)
                     ON CONFLICT DO NOTHING",
                    params![
                        a.id.to_string(), a.kind.as_str(), a.rule_id.map(|i| i.to_string()),
                        a.budget_id.map(|i| i.to_string()), a.key, a.name, a.state.as_str(),
                        a.severity.as_str(), json_text(&a.labels)?, a.value, a.threshold, a.summary,
                        ts(a.started_at), opt_ts(a.firing_at), opt_ts(a.resolved_at), ts(a.updated_at)
                    ],
                )?,
                Some(from) => tx.execute(
                    "UPDATE alerts SET state = ?2, value = ?3, firing_at = ?4, resolved_at = ?5, updated_at = ?6
                     WHERE id = ?1 AND state = ?7",
                    params![
                        a.id.to_string(), a.state.as_str(), a.value, opt_ts(a.firing_at),
                        opt_ts(a.resolved_at), ts(a.updated_at), from.as_str()
                    ],
                )?,
            };
            if written == 0 {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO alert_transitions (alert_id, state, value, at) VALUES (?1, ?2, ?3, ?4)",
                params![a.id.to_string(), a.state.as_str(), a.value, ts(a.updated_at)],
            )?;
            let dedup_key = Delivery::dedup_key(a.id, a.state);
            for channel in &t.deliver_to {
                tx.execute(
                    "INSERT INTO alert_deliveries (id, alert_id, channel_id, transition, dedup_key, status, attempts, next_attempt_at, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', '[]', ?6, ?6) ON CONFLICT DO NOTHING",
                    params![
                        Uuid::now_v7().to_string(), a.id.to_string(), channel.to_string(),
                        a.state.as_str(), dedup_key, ts(a.updated_at)
                    ],
                )?;
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn list_alerts(&self, query: &AlertQuery) -> StoreResult<Vec<Alert>> {
        let query = query.clone();
        self.with(move |c| {
            let mut sql = format!("{ALERT_SELECT} WHERE 1 = 1");
            let mut args: Vec<String> = Vec::new();
            if let Some(id) = query.id {
                args.push(id.to_string());
                sql.push_str(&format!(" AND id = ?{}", args.len()));
            }
            if !query.states.is_empty() {
                let marks: Vec<String> = query
                    .states
                    .iter()
                    .map(|s| {
                        args.push(s.as_str().to_string());
                        format!("?{}", args.len())
                    })
                    .collect();
                sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
            }
            if let Some(s) = query.severity {
                args.push(s.as_str().to_string());
                sql.push_str(&format!(" AND severity = ?{}", args.len()));
            }
            if let Some(k) = query.kind {
                args.push(k.as_str().to_string());
                sql.push_str(&format!(" AND kind = ?{}", args.len()));
            }
            if let Some(t) = query.since {
                args.push(ts(t));
                sql.push_str(&format!(" AND updated_at >= ?{}", args.len()));
            }
            sql.push_str(" ORDER BY updated_at DESC, id DESC");
            if let Some(limit) = query.limit {
                sql.push_str(&format!(" LIMIT {limit}"));
            }
            let alerts = {
                let mut stmt = c.prepare(&sql)?;
                let rows = stmt
                    .query_map(rusqlite::params_from_iter(args.iter()), alert_row)?
                    .collect::<Result<Vec<_>, _>>()?;
                rows
            };
            with_deliveries(c, alerts)
        })
        .await
    }

    async fn acknowledge_alert(&self, id: Uuid, change: &Change) -> StoreResult<Alert> {
        let change = change.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = alert(&tx, id)?;
            if before.acknowledged_at.is_some() {
                return Ok(before);
            }
            tx.execute(
                "UPDATE alerts SET acknowledged_by = ?2, acknowledged_at = ?3 WHERE id = ?1",
                params![id.to_string(), change.actor.name, ts(change.at)],
            )?;
            let after = alert(&tx, id)?;
            insert_audit(&tx, &change.on("acknowledge", Some(&before), Some(&after)))?;
            tx.commit()?;
            Ok(after)
        })
        .await
    }

    async fn due_deliveries(&self, now: DateTime<Utc>, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.with(move |c| {
            let mut stmt = c.prepare(&format!(
                "{DELIVERY_SELECT} WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, rowid LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![ts(now), limit], delivery_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
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
        self.with(move |c| {
            let tx = c.transaction()?;
            let current: Option<(String, String)> = tx
                .query_row(
                    "SELECT status, attempts FROM alert_deliveries WHERE id = ?1",
                    params![id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((state, attempts)) = current else {
                return Ok(());
            };
            if state != DeliveryStatus::Pending.as_str() {
                return Ok(());
            }
            let mut attempts: Vec<Attempt> = json_column(&attempts, "delivery attempts")?;
            attempts.push(attempt);
            tx.execute(
                "UPDATE alert_deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4 WHERE id = ?1",
                params![id.to_string(), status.as_str(), json_text(&attempts)?, opt_ts(next_attempt_at)],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn hold_evaluator_lease(&self) -> StoreResult<bool> {
        Ok(true)
    }
}
