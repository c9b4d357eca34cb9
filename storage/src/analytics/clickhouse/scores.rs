//! The scores table `tally_scores` (see the module docs of [`super`]): insert every copy read,
//! and the join of the first copy of each score with the experiment's counted events.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};
use tally_domain::store::{RawScore, ScoreQuery, ScoredEvent, StoreResult};
use tally_schemas::ScoreValue;

use crate::failure::{seam, Result};

pub(super) const SCORES_TABLE: &str = "tally_scores";

#[derive(Debug, Row, Serialize)]
struct ScoreRow<'a> {
    /// Days since the Unix epoch (ClickHouse `Date`).
    received_day: u16,
    event_id: &'a str,
    score_id: &'a str,
    log_partition: i32,
    log_offset: i64,
    position: u32,
    name: &'a str,
    number: i64,
    is_label: u8,
    label: &'a str,
    received_at_ms: i64,
}

/// Inserts `scores` (of `partition`) in one `INSERT`.
pub(super) async fn insert(client: &Client, partition: i32, scores: &[RawScore]) -> Result<()> {
    if scores.is_empty() {
        return Ok(());
    }
    let mut insert = client.insert::<ScoreRow<'_>>(SCORES_TABLE).await?;
    for r in scores {
        let s = &r.score;
        let (number, label) = match &s.value {
            ScoreValue::Micros(m) => (*m, None),
            ScoreValue::Label(l) => (0, Some(l.as_str())),
        };
        insert
            .write(&ScoreRow {
                received_day: super::events::date_of_us(r.received_at_ms.saturating_mul(1000)),
                event_id: &s.event_id,
                score_id: &s.score_id,
                log_partition: partition,
                log_offset: r.offset,
                position: r.position,
                name: &s.name,
                number,
                is_label: u8::from(label.is_some()),
                label: label.unwrap_or(""),
                received_at_ms: r.received_at_ms,
            })
            .await?;
    }
    insert.end().await?;
    Ok(())
}

#[derive(Debug, Row, Deserialize)]
struct Joined {
    variant: String,
    name: String,
    number: i64,
    is_label: u8,
    label: String,
}

/// The first copy of each score of an event `q` selects, with the event's variant (the
/// smallest, for an event counted more than once). Names given to computed columns never
/// shadow a column (ClickHouse 18.16 mis-answers that).
pub(super) async fn query(client: &Client, q: &ScoreQuery) -> StoreResult<Vec<ScoredEvent>> {
    seam(async || -> Result<Vec<ScoredEvent>> {
        if q.experiment_ids.is_empty() {
            return Ok(Vec::new());
        }
        let environment = if q.environment.is_some() {
            " AND environment = ?"
        } else {
            ""
        };
        let ids = vec!["?"; q.experiment_ids.len()].join(", ");
        let events = format!(
            "SELECT event_id AS joined_event, min(variant) AS arm FROM {events} \
             WHERE feature = ? AND experiment_id IN ({ids}) AND occurred_at_us >= ? AND occurred_at_us < ?{environment} \
             GROUP BY event_id",
            events = super::events::EVENTS_TABLE,
        );
        // The first copy of every score that has any copy naming one of these events (the
        // first copy decides which event a score grades, as in the embedded store).
        let first = "(log_partition, log_offset, position)";
        let sql = format!(
            "SELECT arm, score_name, score_number, score_is_label, score_label FROM ({events}) AS scored_events \
             ALL INNER JOIN (\
               SELECT argMin(event_id, {first}) AS joined_event, argMin(name, {first}) AS score_name, \
                      argMin(number, {first}) AS score_number, argMin(is_label, {first}) AS score_is_label, \
                      argMin(label, {first}) AS score_label \
               FROM {SCORES_TABLE} WHERE score_id IN (\
                 SELECT score_id FROM {SCORES_TABLE} WHERE event_id IN (SELECT joined_event FROM ({events}))\
               ) GROUP BY score_id\
             ) AS first_scores USING joined_event"
        );
        let mut query = client.query(&sql);
        for _ in 0..2 {
            query = query.bind(q.feature.as_str());
            for id in &q.experiment_ids {
                query = query.bind(id.as_str());
            }
            query = query.bind(q.from_us).bind(q.to_us);
            if let Some(env) = q.environment {
                query = query.bind(env.as_str());
            }
        }
        let rows = query.fetch_all::<Joined>().await?;
        Ok(rows
            .into_iter()
            .map(|r| ScoredEvent {
                variant: r.variant,
                name: r.name,
                value: if r.is_label != 0 {
                    ScoreValue::Label(r.label)
                } else {
                    ScoreValue::Micros(r.number)
                },
            })
            .collect())
    })
    .await
}
