//! Scores and the experiment events they join, in the embedded store (written in the projector's
//! commit, read by an experiment's results).
//!
//! Layout: `scores`, one row per `score_id` (the first copy in the log: later copies are
//! ignored), indexed by `event_id`; `experiment_events`, one row per counted event that named
//! an experiment — its arm (experiment, feature, environment and variant, interned in
//! `experiment_arms`), `occurred_at` and `event_id`: about 50 bytes per experiment event,
//! nothing for the others. The join happens when results are asked for, so a score that
//! arrived before its event joins it once the event is counted, and the order in which a
//! score and its event reach the log never matters. Retention deletes experiment events by
//! day, like the event chunks, and scores by the day they were received.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use tally_domain::store::{RawEvent, RawScore, ScoreQuery, ScoredEvent};
use tally_schemas::ScoreValue;

use crate::failure::Result;

pub(super) const TABLE: &str = "
CREATE TABLE IF NOT EXISTS scores (
    score_id    TEXT PRIMARY KEY,
    event_id    TEXT NOT NULL,
    name        TEXT NOT NULL,
    number      INTEGER,
    label       TEXT,
    received_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS scores_by_event ON scores (event_id);
CREATE INDEX IF NOT EXISTS scores_by_received ON scores (received_ms);
CREATE TABLE IF NOT EXISTS experiment_arms (
    id            INTEGER PRIMARY KEY,
    experiment_id TEXT NOT NULL,
    feature       TEXT NOT NULL,
    environment   TEXT NOT NULL,
    variant       TEXT NOT NULL,
    UNIQUE (experiment_id, feature, environment, variant)
);
CREATE TABLE IF NOT EXISTS experiment_events (
    arm         INTEGER NOT NULL,
    occurred_us INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (arm, occurred_us, event_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS experiment_events_by_time ON experiment_events (occurred_us);
";

/// Writes a commit's scores (first copy of each id wins) and its counted experiment events
/// (inside the commit's transaction).
pub(super) fn write<'a>(
    tx: &Transaction,
    raw: impl IntoIterator<Item = RawEvent<'a>>,
    scores: impl IntoIterator<Item = &'a RawScore>,
) -> Result<()> {
    let mut arms: HashMap<(&str, &str, &str, &str), i64> = HashMap::new();
    let mut find_arm = tx.prepare_cached(
        "SELECT id FROM experiment_arms WHERE experiment_id = ?1 AND feature = ?2 AND environment = ?3 AND variant = ?4",
    )?;
    let mut new_arm = tx.prepare_cached(
        "INSERT INTO experiment_arms (experiment_id, feature, environment, variant) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut event = tx.prepare_cached(
        "INSERT OR IGNORE INTO experiment_events (arm, occurred_us, event_id) VALUES (?1, ?2, ?3)",
    )?;
    for r in raw {
        let e = r.event;
        let Some(experiment) = e.experiment_id.as_deref() else {
            continue;
        };
        let key = (
            experiment,
            e.feature.as_str(),
            e.environment.as_str(),
            e.variant.as_deref().unwrap_or(""),
        );
        let arm = match arms.get(&key) {
            Some(id) => *id,
            None => {
                let id = match find_arm
                    .query_row(params![key.0, key.1, key.2, key.3], |r| r.get(0))
                    .optional()?
                {
                    Some(id) => id,
                    None => {
                        new_arm.execute(params![key.0, key.1, key.2, key.3])?;
                        tx.last_insert_rowid()
                    }
                };
                arms.insert(key, id);
                id
            }
        };
        event.execute(params![arm, e.occurred_at_us, e.event_id])?;
    }
    let mut score = tx.prepare_cached(
        "INSERT OR IGNORE INTO scores (score_id, event_id, name, number, label, received_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for r in scores {
        let s = &r.score;
        let (number, label) = match &s.value {
            ScoreValue::Micros(m) => (Some(*m), None),
            ScoreValue::Label(l) => (None, Some(l.as_str())),
        };
        score.execute(params![
            s.score_id,
            s.event_id,
            s.name,
            number,
            label,
            r.received_at_ms
        ])?;
    }
    Ok(())
}

/// The scores joined to the experiment events `q` selects.
pub(super) fn query(conn: &Connection, q: &ScoreQuery) -> Result<Vec<ScoredEvent>> {
    if q.experiment_ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<rusqlite::types::Value> =
        vec![q.feature.clone().into(), q.from_us.into(), q.to_us.into()];
    let mut sql = String::from(
        "SELECT e.variant, s.name, s.number, s.label FROM (
             SELECT x.event_id AS event_id, MIN(a.variant) AS variant
             FROM experiment_arms a JOIN experiment_events x ON x.arm = a.id
             WHERE a.feature = ? AND x.occurred_us >= ? AND x.occurred_us < ?",
    );
    sql.push_str(" AND a.experiment_id IN (");
    for (i, id) in q.experiment_ids.iter().enumerate() {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
        values.push(id.clone().into());
    }
    sql.push(')');
    if let Some(env) = q.environment {
        sql.push_str(" AND a.environment = ?");
        values.push(env.as_str().to_string().into());
    }
    sql.push_str(" GROUP BY x.event_id) e JOIN scores s ON s.event_id = e.event_id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(values), |r| {
        let number: Option<i64> = r.get(2)?;
        let label: Option<String> = r.get(3)?;
        Ok(ScoredEvent {
            variant: r.get(0)?,
            name: r.get(1)?,
            value: match number {
                Some(m) => ScoreValue::Micros(m),
                None => ScoreValue::Label(label.unwrap_or_default()),
            },
        })
    })?;
    Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
}

/// Retention, one bounded step: at most `limit` experiment events of the UTC days before
/// `first_kept_day_s`, and at most `limit` scores received before it (both through their time
/// index). Returns the larger of the two counts: fewer than `limit` means nothing is left.
pub(super) fn prune_step(conn: &Connection, first_kept_day_s: i64, limit: usize) -> Result<usize> {
    let events = conn.execute(
        "DELETE FROM experiment_events WHERE (arm, occurred_us, event_id) IN
             (SELECT arm, occurred_us, event_id FROM experiment_events WHERE occurred_us < ?1 LIMIT ?2)",
        params![first_kept_day_s.saturating_mul(1_000_000), limit as i64],
    )?;
    let scores = conn.execute(
        "DELETE FROM scores WHERE rowid IN
             (SELECT rowid FROM scores WHERE received_ms < ?1 LIMIT ?2)",
        params![first_kept_day_s.saturating_mul(1_000), limit as i64],
    )?;
    Ok(events.max(scores))
}
