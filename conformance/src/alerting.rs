//! The alerting part of the configuration-store suite: channels and the rules that guard them,
//! alert rules, budgets naming channels, and alerts — transitions recorded once (the basis of
//! "two evaluators never notify twice"), deliveries queued per channel, attempts, filters and
//! acknowledgement.

use std::collections::BTreeMap;

use chrono::Duration;
use tally_domain::alerting::{
    Alert, AlertKind, AlertState, Attempt, Delivery, DeliveryStatus, Transition,
};
use tally_domain::audit::Change;
use tally_domain::config::{
    AlertMetric, AlertRuleSpec, BudgetPeriod, BudgetScope, BudgetSpec, ChannelSpec, ChannelType,
    Comparator, RuleScope, RuleWindow, Severity,
};
use tally_domain::store::{AlertQuery, ConfigStore, StoreError};
use tally_schemas::Environment;
use uuid::Uuid;

use crate::t;

fn by(day: u32) -> Change {
    Change::local("tester", t(day))
}

fn hook(name: &str) -> ChannelSpec {
    ChannelSpec {
        name: name.into(),
        channel_type: ChannelType::Webhook,
        url: format!("https://hooks.example.com/{name}"),
        secret_env: Some("HOOK_SECRET".into()),
    }
}

fn rule(channels: Vec<Uuid>) -> AlertRuleSpec {
    AlertRuleSpec {
        name: "chat errors".into(),
        metric: AlertMetric::ErrorRate,
        scope: RuleScope {
            feature: Some("chatbot".into()),
            environment: Some(Environment::Production),
            ..RuleScope::default()
        },
        comparator: Comparator::Gt,
        threshold: 5.5,
        window: RuleWindow::FiveMinutes,
        min_requests: 20,
        for_seconds: 120,
        severity: Severity::Critical,
        channels,
    }
}

fn invalid_field<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
    match r {
        Err(StoreError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Runs every alerting check against `store` (which may hold other resources, no channels,
/// rules or alerts).
pub async fn alerting(store: &dyn ConfigStore) {
    let (ops, finance) = channels(store).await;
    rules(store, ops, finance).await;
    alerts(store, ops, finance).await;
}

async fn channels(store: &dyn ConfigStore) -> (Uuid, Uuid) {
    let ops = store
        .create_channel(hook("ops"), &by(1))
        .await
        .expect("create");
    assert_eq!(ops.spec, hook("ops"));
    assert_eq!(ops.created_at, t(1));
    let slack = ChannelSpec {
        name: "finance".into(),
        channel_type: ChannelType::Slack,
        url: "https://hooks.slack.com/services/T/B/X".into(),
        secret_env: None,
    };
    let finance = store.create_channel(slack, &by(2)).await.expect("create");
    let bad = ChannelSpec {
        url: "ftp://nope".into(),
        ..hook("bad")
    };
    assert_eq!(
        invalid_field(store.create_channel(bad, &by(2)).await),
        "url"
    );
    let names: Vec<String> = store
        .list_channels()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.spec.name)
        .collect();
    assert_eq!(names, vec!["finance", "ops"]);
    (ops.id, finance.id)
}

async fn rules(store: &dyn ConfigStore, ops: Uuid, finance: Uuid) {
    let ghost = Uuid::from_u128(7);
    assert_eq!(
        invalid_field(
            store
                .create_alert_rule(rule(vec![ops, ghost]), &by(3))
                .await
        ),
        "channels"
    );
    let created = store
        .create_alert_rule(rule(vec![ops]), &by(3))
        .await
        .expect("create");
    assert_eq!(created.spec, rule(vec![ops]));
    assert_eq!((created.created_at, created.updated_at), (t(3), t(3)));
    let mut changed = rule(vec![ops, finance]);
    changed.threshold = 2.25;
    changed.window = RuleWindow::Hour;
    let updated = store
        .update_alert_rule(created.id, changed.clone(), &by(4))
        .await
        .expect("update");
    assert_eq!(updated.spec, changed);
    assert_eq!((updated.created_at, updated.updated_at), (t(3), t(4)));
    assert!(matches!(
        store
            .update_alert_rule(ghost, changed.clone(), &by(4))
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store.list_alert_rules().await.expect("list"),
        vec![updated.clone()]
    );

    // A channel named by a rule or a budget cannot go.
    assert!(matches!(
        store.delete_channel(finance, &by(5)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .update_alert_rule(created.id, rule(vec![ops]), &by(5))
        .await
        .expect("update");
    let budget = BudgetSpec {
        name: "finance watch".into(),
        scope: BudgetScope::Global,
        scope_value: None,
        period: BudgetPeriod::Monthly,
        time_zone: "UTC".into(),
        amount_micros: 1_000_000,
        thresholds_percent: vec![80, 100],
        is_active: true,
        channels: vec![finance],
    };
    assert_eq!(
        invalid_field(
            store
                .create_budget(
                    BudgetSpec {
                        channels: vec![ghost],
                        ..budget.clone()
                    },
                    &by(5)
                )
                .await
        ),
        "channels"
    );
    let watched = store.create_budget(budget, &by(5)).await.expect("budget");
    assert_eq!(watched.spec.channels, vec![finance]);
    assert!(matches!(
        store.delete_channel(finance, &by(5)).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .delete_budget(watched.id, &by(6))
        .await
        .expect("delete");
    let gone = store.delete_channel(finance, &by(6)).await.expect("delete");
    assert_eq!(gone.id, finance);
    assert!(matches!(
        store.delete_channel(finance, &by(6)).await,
        Err(StoreError::NotFound { .. })
    ));
    let recreated = store
        .create_channel(
            ChannelSpec {
                name: "finance".into(),
                ..hook("finance")
            },
            &by(6),
        )
        .await
        .expect("create");
    // The rule deleted; its channel free again.
    store
        .delete_alert_rule(created.id, &by(7))
        .await
        .expect("delete");
    assert!(store.list_alert_rules().await.expect("list").is_empty());
    store
        .delete_channel(recreated.id, &by(7))
        .await
        .expect("delete");
}

fn raised(key: &str, state: AlertState, minute: i64) -> Alert {
    let at = t(10) + Duration::minutes(minute);
    Alert {
        id: Uuid::now_v7(),
        kind: AlertKind::Rule,
        rule_id: Some(Uuid::from_u128(42)),
        budget_id: None,
        key: key.into(),
        name: "chat errors".into(),
        state,
        severity: Severity::Critical,
        labels: BTreeMap::from([("feature".to_string(), "chatbot".to_string())]),
        value: 9.5,
        threshold: 5.5,
        summary: "error_rate 9.5 > 5.5".into(),
        started_at: at,
        firing_at: (state == AlertState::Firing).then_some(at),
        resolved_at: None,
        acknowledged_by: None,
        acknowledged_at: None,
        updated_at: at,
        deliveries: vec![],
    }
}

async fn alerts(store: &dyn ConfigStore, ops: Uuid, _finance: Uuid) {
    let pending = raised("rule:42", AlertState::Pending, 0);
    let opened = Transition {
        alert: pending.clone(),
        from: None,
        deliver_to: vec![],
    };
    assert!(store.record_transition(&opened).await.expect("open"));
    // A second evaluator opening the same key at the same time records nothing.
    let rival = Transition {
        alert: raised("rule:42", AlertState::Pending, 0),
        from: None,
        deliver_to: vec![],
    };
    assert!(!store.record_transition(&rival).await.expect("rival"));

    let mut firing = pending.clone();
    firing.state = AlertState::Firing;
    firing.value = 12.0;
    firing.firing_at = Some(t(10) + Duration::minutes(2));
    firing.updated_at = t(10) + Duration::minutes(2);
    let fire = Transition {
        alert: firing.clone(),
        from: Some(AlertState::Pending),
        deliver_to: vec![ops],
    };
    assert!(store.record_transition(&fire).await.expect("fire"));
    // The same transition again (a second evaluator, a retry): not recorded, not queued twice.
    assert!(!store.record_transition(&fire).await.expect("again"));

    let listed = store
        .list_alerts(&AlertQuery::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    let got = &listed[0];
    assert_eq!(got.state, AlertState::Firing);
    assert_eq!(got.value, 12.0);
    assert_eq!(got.started_at, pending.started_at);
    assert_eq!(got.firing_at, firing.firing_at);
    assert_eq!(got.labels, pending.labels);
    assert_eq!(got.deliveries.len(), 1);
    let delivery = &got.deliveries[0];
    assert_eq!(delivery.channel_id, ops);
    assert_eq!(delivery.transition, AlertState::Firing);
    assert_eq!(delivery.dedup_key, format!("{}:firing", pending.id));
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(delivery.next_attempt_at, Some(firing.updated_at));

    // Due once its time has come; a failed attempt puts it off, a success ends it.
    let before = store
        .due_deliveries(firing.updated_at - Duration::seconds(1), 10)
        .await
        .expect("due");
    assert!(before.is_empty());
    let due = store
        .due_deliveries(firing.updated_at, 10)
        .await
        .expect("due");
    assert_eq!(due.len(), 1);
    let failed = Attempt {
        at: firing.updated_at,
        status_code: Some(503),
        error: Some("service unavailable".into()),
    };
    let retry_at = firing.updated_at + Duration::seconds(30);
    store
        .record_attempt(
            due[0].id,
            failed.clone(),
            DeliveryStatus::Pending,
            Some(retry_at),
        )
        .await
        .expect("attempt");
    assert!(store
        .due_deliveries(retry_at - Duration::seconds(1), 10)
        .await
        .expect("due")
        .is_empty());
    let ok = Attempt {
        at: retry_at,
        status_code: Some(204),
        error: None,
    };
    store
        .record_attempt(due[0].id, ok.clone(), DeliveryStatus::Delivered, None)
        .await
        .expect("attempt");
    // An attempt reported after the end changes nothing.
    store
        .record_attempt(due[0].id, failed.clone(), DeliveryStatus::Failed, None)
        .await
        .expect("late attempt");
    let after: Vec<Delivery> = store
        .list_alerts(&AlertQuery::default())
        .await
        .expect("list")
        .remove(0)
        .deliveries;
    assert_eq!(after[0].status, DeliveryStatus::Delivered);
    assert_eq!(after[0].attempts, vec![failed, ok]);
    assert!(store
        .due_deliveries(retry_at + Duration::days(1), 10)
        .await
        .expect("due")
        .is_empty());

    // Resolving; then the key is free for a new alert.
    let mut resolved = firing.clone();
    resolved.state = AlertState::Resolved;
    resolved.resolved_at = Some(t(10) + Duration::minutes(9));
    resolved.updated_at = t(10) + Duration::minutes(9);
    assert!(store
        .record_transition(&Transition {
            alert: resolved.clone(),
            from: Some(AlertState::Firing),
            deliver_to: vec![ops],
        })
        .await
        .expect("resolve"));
    let reopened = raised("rule:42", AlertState::Firing, 20);
    assert!(store
        .record_transition(&Transition {
            alert: reopened.clone(),
            from: None,
            deliver_to: vec![],
        })
        .await
        .expect("reopen"));
    let budget_alert = Alert {
        kind: AlertKind::Budget,
        rule_id: None,
        budget_id: Some(Uuid::from_u128(43)),
        severity: Severity::Warning,
        ..raised("budget:43:80", AlertState::Firing, 30)
    };
    assert!(store
        .record_transition(&Transition {
            alert: budget_alert.clone(),
            from: None,
            deliver_to: vec![],
        })
        .await
        .expect("budget alert"));

    // Newest first; filters by state, severity, kind, time and count.
    let ids = |alerts: Vec<Alert>| alerts.into_iter().map(|a| a.id).collect::<Vec<_>>();
    let all = store
        .list_alerts(&AlertQuery::default())
        .await
        .expect("list");
    assert_eq!(ids(all), vec![budget_alert.id, reopened.id, pending.id]);
    let query = |q: AlertQuery| async move { ids(store.list_alerts(&q).await.expect("list")) };
    assert_eq!(
        query(AlertQuery {
            states: vec![AlertState::Pending, AlertState::Firing],
            ..AlertQuery::default()
        })
        .await,
        vec![budget_alert.id, reopened.id]
    );
    assert_eq!(
        query(AlertQuery {
            severity: Some(Severity::Critical),
            ..AlertQuery::default()
        })
        .await,
        vec![reopened.id, pending.id]
    );
    assert_eq!(
        query(AlertQuery {
            kind: Some(AlertKind::Budget),
            ..AlertQuery::default()
        })
        .await,
        vec![budget_alert.id]
    );
    assert_eq!(
        query(AlertQuery {
            since: Some(t(10) + Duration::minutes(20)),
            ..AlertQuery::default()
        })
        .await,
        vec![budget_alert.id, reopened.id]
    );
    assert_eq!(
        query(AlertQuery {
            limit: Some(1),
            ..AlertQuery::default()
        })
        .await,
        vec![budget_alert.id]
    );
    assert_eq!(
        query(AlertQuery {
            id: Some(pending.id),
            ..AlertQuery::default()
        })
        .await,
        vec![pending.id]
    );
    let resolved_one = store
        .list_alerts(&AlertQuery {
            states: vec![AlertState::Resolved],
            ..AlertQuery::default()
        })
        .await
        .expect("list")
        .remove(0);
    assert_eq!(resolved_one.resolved_at, resolved.resolved_at);
    assert_eq!(resolved_one.deliveries.len(), 2);

    // Acknowledged once: the first acknowledgement stays.
    let acked = store
        .acknowledge_alert(reopened.id, &by(11))
        .await
        .expect("ack");
    assert_eq!(acked.acknowledged_by.as_deref(), Some("tester"));
    assert_eq!(acked.acknowledged_at, Some(t(11)));
    let again = store
        .acknowledge_alert(reopened.id, &Change::local("someone else", t(12)))
        .await
        .expect("ack");
    assert_eq!(again.acknowledged_by.as_deref(), Some("tester"));
    assert!(matches!(
        store.acknowledge_alert(Uuid::from_u128(9), &by(12)).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.hold_evaluator_lease().await.expect("lease"));
}
