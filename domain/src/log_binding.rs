//! Which log a projection was read from, and the rule that decides whether a projector may
//! resume from its checkpoints on the log it is given now. No I/O: the projector asks the log
//! to describe itself and the analytics store for its bindings, and this module decides.
//!
//! **Why.** A checkpoint is a per-partition offset, and an offset means something only in the
//! log that produced it. A projector given another topic (a configuration change), or the same
//! topic deleted and created again (a cluster migration, a retention accident, a restore), would
//! otherwise seek every partition to offsets of a log that no longer exists: it would skip
//! whatever lies below them, or count again what it had counted, and say nothing.
//!
//! **Bindings.** An analytics store is *bound* to the log its checkpoints belong to: a
//! [`LogIdentity`] (the topic's name, and its id where the broker reports one). The first
//! projector binds an empty store (epoch 0). Each adoption of another log retires the current
//! binding, keeping everything it counted, and binds the adopted log as the next epoch; the
//! checkpoints then belong to the adopted log and start at its beginning.
//!
//! **The rule** ([`check`]): a projector resumes only when the store is bound to the same log
//! (same name, and same id when both are known) and no stored offset lies beyond the end of its
//! partition (the high watermark). Otherwise it refuses with a [`Mismatch`] that names the stored
//! log and offsets, the current ones, and the ways out; it never consumes on a guess.
//!
//! **Identity without an id.** Brokers before Kafka 2.8 report no topic id. Then each
//! checkpoint's *anchor* stands in for it: the fingerprint of the last record projected
//! (message key, timestamp and value), compared with the record the log now holds at that
//! offset ([`anchors_to_compare`]). A recreated topic starts again at offset 0, so at that
//! offset it holds another record (an event id is unique, and so is its key) or none: a
//! partition where the store had projected more than the new topic holds fails the
//! high-watermark rule, and one where the new topic already holds more fails the anchor. What
//! passes both is the same record at the same offset: a faithful copy, from which resuming is
//! right. Where the record was deleted by retention the anchor cannot be compared; that is the
//! one case an id alone can tell.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What identifies a log. For a Kafka topic: its name and its id (KIP-516), which changes
/// when the topic is deleted and created again; for the embedded log: `embedded` and the id
/// written when its file was created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogIdentity {
    pub name: String,
    /// `None` where the broker reports no id.
    pub id: Option<String>,
}

impl fmt::Display for LogIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "\"{}\" (id {id})", self.name),
            None => write!(f, "\"{}\" (no id reported)", self.name),
        }
    }
}

/// One partition's offsets as the log holds them now: records `low..high` are readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermarks {
    pub low: i64,
    pub high: i64,
}

/// A log as it is now: its identity and, for every partition, its watermarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDescription {
    pub identity: LogIdentity,
    pub partitions: BTreeMap<i32, Watermarks>,
}

/// A log an analytics store has projected. Epochs number a store's logs in the order they were
/// bound; the newest binding is the one its checkpoints belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogBinding {
    pub epoch: u32,
    pub log: LogIdentity,
    pub bound_at: DateTime<Utc>,
    /// When another log was adopted: the time, and each partition's next offset then (what
    /// this log's projection holds).
    pub retired: Option<Retirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retirement {
    pub at: DateTime<Utc>,
    pub position: BTreeMap<i32, i64>,
}

/// Checkpoints written before bindings were recorded belong to a log whose identity was never
/// stored; when such a store adopts another log, this stands for the one it retires.
pub fn unrecorded() -> LogIdentity {
    LogIdentity {
        name: "(not recorded)".into(),
        id: None,
    }
}

/// What a projector may do with its checkpoints on the log it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The checkpoints belong to this log: resume from them.
    Resume,
    /// Nothing is bound yet (an empty store, or checkpoints written before bindings were
    /// recorded, none beyond the log's end): bind this log, then resume.
    Bind,
    /// The store is bound to this log, recorded without an id, and the broker now reports
    /// one: record it, then resume.
    LearnId,
    /// Do not read: the checkpoints belong to another log, or lie beyond this one's end.
    Refuse(Mismatch),
}

/// Why the checkpoints cannot be used on the log a projector is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The store is bound to a log of another name.
    OtherLog,
    /// Same name, another id: the topic was deleted and created again.
    Recreated,
    /// The store recorded an id and the broker reports none (another, older cluster).
    IdNotReported,
    /// A stored offset lies beyond the end of its partition: the log lost records the store
    /// had projected (recreated without an id to tell, truncated, or an unclean leader
    /// election), or the partition no longer exists.
    BeyondEnd {
        partition: i32,
        stored: i64,
        high: Option<i64>,
    },
    /// The record the store projected last in a partition is not the one the log holds at
    /// that offset now: the topic was recreated (and no id says so).
    RecordsDiffer { partition: i32, offset: i64 },
}

/// A refusal, with everything an operator needs to decide what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub reason: Reason,
    /// The log the store is bound to (`None`: checkpoints from before bindings were recorded).
    pub stored: Option<LogIdentity>,
    /// The stored next offset of each checked partition.
    pub stored_position: BTreeMap<i32, i64>,
    pub current: LogDescription,
}

fn offsets(position: &BTreeMap<i32, i64>) -> String {
    if position.is_empty() {
        return "none".into();
    }
    position
        .iter()
        .map(|(p, o)| format!("{p}:{o}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ends(partitions: &BTreeMap<i32, Watermarks>) -> String {
    if partitions.is_empty() {
        return "no partitions".into();
    }
    partitions
        .iter()
        .map(|(p, w)| format!("{p}:{}..{}", w.low, w.high))
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let current = &self.current.identity;
        let stored = self
            .stored
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "an unrecorded log".into());
        match &self.reason {
            Reason::OtherLog => write!(
                f,
                "the analytics store's checkpoints belong to log {stored}, not to {current}"
            )?,
            Reason::Recreated => write!(
                f,
                "log \"{}\" was recreated: the analytics store's checkpoints belong to {stored}, the log is now {current}",
                current.name
            )?,
            Reason::IdNotReported => write!(
                f,
                "the analytics store's checkpoints belong to {stored}, and the broker reports no id for {current}: it cannot be the same topic"
            )?,
            Reason::BeyondEnd {
                partition,
                stored: offset,
                high,
            } => {
                let end = high.map_or("the partition does not exist".to_string(), |h| {
                    format!("its end is {h}")
                });
                write!(
                    f,
                    "the analytics store has projected log {current} up to offset {offset} in partition {partition}, but {end}: the log no longer holds what was projected (recreated, truncated, or an unclean leader election)"
                )?
            }
            Reason::RecordsDiffer { partition, offset } => write!(
                f,
                "log {current} holds another record at offset {offset} of partition {partition} than the one the analytics store projected there: it was recreated"
            )?,
        }
        write!(
            f,
            ". Stored offsets: {}; the log's offsets now: {}. Not consuming: resuming would skip or count again events without saying so. ",
            offsets(&self.stored_position),
            ends(&self.current.partitions),
        )?;
        let same_log = self
            .stored
            .as_ref()
            .is_some_and(|s| s.id.is_some() && s == current);
        if same_log {
            write!(
                f,
                "Ways out: `tally adopt-topic` accepts the loss: every partition goes on from the lower of its checkpoint and the log's end, and what was counted stays counted; `tally rebuild --start-clean` drops every projection and projects {current} alone from what it still holds."
            )
        } else {
            write!(
                f,
                "Ways out: `tally adopt-topic` projects {current} from its beginning into the same rollups, keeping what was counted before (ids seen in both are deduplicated within the dedup window); `tally rebuild --start-clean` drops every projection and projects {current} alone; or point the projector back at the log it was reading."
            )
        }
    }
}

/// Decides whether checkpoints at `position` (next offset per partition) of a store bound to
/// `bound` (its current binding; `None` when nothing was ever bound) may be used on `log`.
pub fn check(
    bound: Option<&LogBinding>,
    position: &BTreeMap<i32, i64>,
    log: &LogDescription,
) -> Verdict {
    let refuse = |reason| {
        Verdict::Refuse(Mismatch {
            reason,
            stored: bound.map(|b| b.log.clone()),
            stored_position: position.clone(),
            current: log.clone(),
        })
    };
    let current = &log.identity;
    if let Some(b) = bound {
        if b.log.name != current.name {
            return refuse(Reason::OtherLog);
        }
        match (&b.log.id, &current.id) {
            (Some(stored), Some(now)) if stored != now => return refuse(Reason::Recreated),
            (Some(_), None) => return refuse(Reason::IdNotReported),
            _ => {}
        }
    }
    for (&partition, &stored) in position {
        let high = log.partitions.get(&partition).map(|w| w.high);
        if stored > high.unwrap_or(0) {
            return refuse(Reason::BeyondEnd {
                partition,
                stored,
                high,
            });
        }
    }
    match bound {
        None => Verdict::Bind,
        Some(b) if b.log.id.is_none() && current.id.is_some() => Verdict::LearnId,
        Some(_) => Verdict::Resume,
    }
}

/// What a checkpoint knows of the last record it projected: its offset and fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub partition: i32,
    pub offset: i64,
    /// 0: not known (checkpoints written before anchors were kept).
    pub fingerprint: u64,
}

/// The anchors to compare with the log's records before resuming: none where topic ids were
/// compared ([`check`]), else every known anchor whose record the log still holds.
pub fn anchors_to_compare(
    bound: Option<&LogBinding>,
    anchors: &[Anchor],
    log: &LogDescription,
) -> Vec<Anchor> {
    let ids_compared = bound.and_then(|b| b.log.id.as_ref()).is_some() && log.identity.id.is_some();
    if ids_compared {
        return Vec::new();
    }
    anchors
        .iter()
        .filter(|a| {
            a.fingerprint != 0
                && log
                    .partitions
                    .get(&a.partition)
                    .is_some_and(|w| w.low <= a.offset && a.offset < w.high)
        })
        .copied()
        .collect()
}

/// The refusal when the log holds `found` (another fingerprint, or no record) where `anchor`
/// was projected; `None` when it is the same record.
pub fn compare_anchor(
    bound: Option<&LogBinding>,
    position: &BTreeMap<i32, i64>,
    log: &LogDescription,
    anchor: Anchor,
    found: Option<u64>,
) -> Option<Mismatch> {
    (found != Some(anchor.fingerprint)).then(|| Mismatch {
        reason: Reason::RecordsDiffer {
            partition: anchor.partition,
            offset: anchor.offset,
        },
        stored: bound.map(|b| b.log.clone()),
        stored_position: position.clone(),
        current: log.clone(),
    })
}

/// How a store moves from its current log to another one: the current binding is retired
/// (everything it counted stays), the adopted log is bound as the next epoch, and every one of
/// its partitions starts at offset 0 with the dedup memory of the retired partitions it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Adoption {
    /// The epoch retired (0 for checkpoints from before bindings were recorded).
    pub retired_epoch: u32,
    /// The retired log, as bound (or [`unrecorded`]).
    pub retired_log: LogIdentity,
    /// Every partition's next offset in the retired epoch.
    pub retired_position: BTreeMap<i32, i64>,
    pub adopted: LogBinding,
    /// Where each partition of the adopted log starts: at its beginning (0), unless the
    /// adopted log is the retired one itself (same id) that lost records: then at the lower of
    /// its checkpoint and the log's end, so what it still holds is not counted twice.
    pub start: BTreeMap<i32, i64>,
    /// For each partition of the adopted log, the retired partitions whose dedup memory it
    /// starts with.
    pub dedup_from: BTreeMap<i32, Vec<i32>>,
}

/// Why a store cannot adopt a log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptionRefused {
    #[error("the analytics store's checkpoints fit {0}: a projector resumes on it by itself; nothing to adopt")]
    Resumable(LogIdentity),
    #[error("the analytics store has projected nothing yet: a projector binds it to {0} when it starts; nothing to adopt")]
    NothingProjected(LogIdentity),
}

/// Plans the adoption of `log` by a store whose current binding is `bound` with checkpoints at
/// `position` (every partition of the current epoch), given the `verdict` on them ([`check`],
/// and [`compare_anchor`] where ids cannot be compared). Only a log the store could not resume
/// on can be adopted.
///
/// Dedup memory: copies of one event land in one partition because producers key messages by
/// event id. When both logs have the same partitions, the same producers put an id seen in
/// both into partitions of the same number, so each adopted partition starts with the
/// memory of its namesake. Otherwise an id may move to any partition, and each adopted
/// partition starts with the memory of every retired one (more memory, for one window).
pub fn plan_adoption(
    verdict: &Verdict,
    bound: Option<&LogBinding>,
    position: &BTreeMap<i32, i64>,
    log: &LogDescription,
    at: DateTime<Utc>,
) -> Result<Adoption, AdoptionRefused> {
    if bound.is_none() && position.is_empty() {
        return Err(AdoptionRefused::NothingProjected(log.identity.clone()));
    }
    if !matches!(verdict, Verdict::Refuse(_)) {
        return Err(AdoptionRefused::Resumable(log.identity.clone()));
    }
    let retired: Vec<i32> = position.keys().copied().collect();
    let adopted: Vec<i32> = log.partitions.keys().copied().collect();
    let same_log = bound.is_some_and(|b| b.log.id.is_some() && b.log == log.identity);
    let start = log
        .partitions
        .iter()
        .map(|(p, w)| {
            let at = if same_log {
                position.get(p).copied().unwrap_or(0).min(w.high)
            } else {
                0
            };
            (*p, at)
        })
        .collect();
    let dedup_from = adopted
        .iter()
        .map(|&p| {
            let sources = if retired == adopted {
                vec![p]
            } else {
                retired.clone()
            };
            (p, sources)
        })
        .collect();
    let retired_epoch = bound.map_or(0, |b| b.epoch);
    Ok(Adoption {
        retired_epoch,
        retired_log: bound.map_or_else(unrecorded, |b| b.log.clone()),
        retired_position: position.clone(),
        adopted: LogBinding {
            epoch: retired_epoch + 1,
            log: log.identity.clone(),
            bound_at: at,
            retired: None,
        },
        start,
        dedup_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(name: &str, id: Option<&str>) -> LogIdentity {
        LogIdentity {
            name: name.into(),
            id: id.map(String::from),
        }
    }

    fn log(identity: LogIdentity, highs: &[i64]) -> LogDescription {
        LogDescription {
            identity,
            partitions: highs
                .iter()
                .enumerate()
                .map(|(p, &high)| (p as i32, Watermarks { low: 0, high }))
                .collect(),
        }
    }

    fn bound(identity: LogIdentity) -> LogBinding {
        LogBinding {
            epoch: 3,
            log: identity,
            bound_at: DateTime::<Utc>::UNIX_EPOCH,
            retired: None,
        }
    }

    fn at(offsets: &[i64]) -> BTreeMap<i32, i64> {
        offsets
            .iter()
            .enumerate()
            .map(|(p, &o)| (p as i32, o))
            .collect()
    }

    /// [`plan_adoption`] given [`check`]'s verdict.
    fn plan(
        bound: Option<&LogBinding>,
        position: &BTreeMap<i32, i64>,
        log: &LogDescription,
        at: DateTime<Utc>,
    ) -> Result<Adoption, AdoptionRefused> {
        plan_adoption(&check(bound, position, log), bound, position, log, at)
    }

    fn reason(v: Verdict) -> Reason {
        match v {
            Verdict::Refuse(m) => m.reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn the_same_log_resumes_and_another_is_refused() {
        let a = id("usage-a", Some("AAA"));
        let b = bound(a.clone());
        let position = at(&[1000, 1000]);
        assert_eq!(
            check(Some(&b), &position, &log(a.clone(), &[1000, 1017])),
            Verdict::Resume
        );
        // The scenario: another topic with more messages than the stored offsets.
        assert_eq!(
            reason(check(
                Some(&b),
                &position,
                &log(id("usage-b", Some("BBB")), &[1017, 1017])
            )),
            Reason::OtherLog
        );
        // Recreated with the same name: a new id, whatever the offsets say.
        assert_eq!(
            reason(check(
                Some(&b),
                &position,
                &log(id("usage-a", Some("CCC")), &[5000, 5000])
            )),
            Reason::Recreated
        );
        assert_eq!(
            reason(check(
                Some(&b),
                &position,
                &log(id("usage-a", None), &[5000, 5000])
            )),
            Reason::IdNotReported
        );
    }

    #[test]
    fn offsets_beyond_the_end_are_refused_even_without_an_id() {
        let a = id("usage", None);
        let b = bound(a.clone());
        assert_eq!(
            reason(check(
                Some(&b),
                &at(&[10, 600]),
                &log(a.clone(), &[10, 599])
            )),
            Reason::BeyondEnd {
                partition: 1,
                stored: 600,
                high: Some(599)
            }
        );
        // A partition that no longer exists, with projected offsets in it.
        assert_eq!(
            reason(check(Some(&b), &at(&[0, 0, 7]), &log(a.clone(), &[10, 10]))),
            Reason::BeyondEnd {
                partition: 2,
                stored: 7,
                high: None
            }
        );
        // Exactly at the end, and a new empty partition, are fine.
        assert_eq!(
            check(Some(&b), &at(&[10, 599]), &log(a, &[10, 599, 0])),
            Verdict::Resume
        );
    }

    #[test]
    fn unbound_stores_are_bound_when_their_checkpoints_fit_and_ids_are_learned() {
        let a = id("usage", Some("AAA"));
        assert_eq!(
            check(None, &BTreeMap::new(), &log(a.clone(), &[])),
            Verdict::Bind
        );
        assert_eq!(
            check(None, &at(&[5, 5]), &log(a.clone(), &[5, 9])),
            Verdict::Bind
        );
        assert_eq!(
            reason(check(None, &at(&[5, 50]), &log(a.clone(), &[5, 9]))),
            Reason::BeyondEnd {
                partition: 1,
                stored: 50,
                high: Some(9)
            }
        );
        let without_id = bound(id("usage", None));
        assert_eq!(
            check(Some(&without_id), &at(&[5]), &log(a, &[5])),
            Verdict::LearnId
        );
    }

    #[test]
    fn without_ids_the_last_projected_records_are_compared() {
        let anchors = [
            Anchor {
                partition: 0,
                offset: 9,
                fingerprint: 111,
            },
            Anchor {
                partition: 1,
                offset: 4,
                fingerprint: 222,
            },
            // Not known (an older checkpoint), and deleted by retention.
            Anchor {
                partition: 2,
                offset: 4,
                fingerprint: 0,
            },
            Anchor {
                partition: 3,
                offset: 4,
                fingerprint: 333,
            },
        ];
        let mut now = log(id("usage", None), &[20, 20, 20, 20]);
        now.partitions.insert(3, Watermarks { low: 5, high: 20 });
        let without_id = bound(id("usage", None));
        let compared: Vec<i32> = anchors_to_compare(Some(&without_id), &anchors, &now)
            .iter()
            .map(|a| a.partition)
            .collect();
        assert_eq!(compared, vec![0, 1]);
        // A store that recorded an id, on a broker that reports none (refused by `check`
        // anyway), and the reverse: compared too.
        assert_eq!(
            anchors_to_compare(Some(&bound(id("usage", Some("A")))), &anchors, &now).len(),
            2
        );
        let mut with_id = log(id("usage", Some("A")), &[20, 20, 20, 20]);
        with_id
            .partitions
            .insert(3, Watermarks { low: 5, high: 20 });
        assert_eq!(
            anchors_to_compare(Some(&without_id), &anchors, &with_id).len(),
            2,
            "an id being learned is checked against the records first"
        );
        assert!(
            anchors_to_compare(Some(&bound(id("usage", Some("A")))), &anchors, &with_id).is_empty()
        );

        let position = at(&[10, 5, 5, 5]);
        assert_eq!(
            compare_anchor(Some(&without_id), &position, &now, anchors[0], Some(111)),
            None,
            "the same record: resume"
        );
        for found in [Some(112), None] {
            let m = compare_anchor(Some(&without_id), &position, &now, anchors[0], found)
                .expect("refused");
            assert_eq!(
                m.reason,
                Reason::RecordsDiffer {
                    partition: 0,
                    offset: 9
                }
            );
            assert!(m.to_string().contains("it was recreated"), "{m}");
        }
    }

    #[test]
    fn a_refusal_names_both_logs_their_offsets_and_the_ways_out() {
        let b = bound(id("usage-a", Some("AAA")));
        let Verdict::Refuse(m) = check(
            Some(&b),
            &at(&[1000, 1000]),
            &log(id("usage-b", Some("BBB")), &[1017, 1017]),
        ) else {
            panic!("refused")
        };
        let text = m.to_string();
        for part in [
            "\"usage-a\" (id AAA)",
            "\"usage-b\" (id BBB)",
            "0:1000 1:1000",
            "0:0..1017 1:0..1017",
            "tally adopt-topic",
            "tally rebuild --start-clean",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }

    #[test]
    fn adoption_carries_dedup_memory_by_partition_number_or_to_every_partition() {
        let b = bound(id("usage-a", Some("AAA")));
        let same = plan(
            Some(&b),
            &at(&[1000, 1000, 1000]),
            &log(id("usage-b", Some("BBB")), &[5, 5, 5]),
            DateTime::<Utc>::UNIX_EPOCH,
        )
        .expect("adoptable");
        assert_eq!((same.retired_epoch, same.adopted.epoch), (3, 4));
        assert_eq!(same.adopted.log, id("usage-b", Some("BBB")));
        assert_eq!(
            same.dedup_from,
            [(0, vec![0]), (1, vec![1]), (2, vec![2])]
                .into_iter()
                .collect()
        );
        let fewer = plan(
            Some(&b),
            &at(&[1000, 1000, 1000]),
            &log(id("usage-b", Some("BBB")), &[5, 5]),
            DateTime::<Utc>::UNIX_EPOCH,
        )
        .expect("adoptable");
        assert_eq!(
            fewer.dedup_from,
            [(0, vec![0, 1, 2]), (1, vec![0, 1, 2])]
                .into_iter()
                .collect()
        );
        // Checkpoints from before bindings were recorded retire as epoch 0.
        let legacy = plan(
            None,
            &at(&[50]),
            &log(id("usage", Some("NEW")), &[3]),
            DateTime::<Utc>::UNIX_EPOCH,
        )
        .expect("adoptable");
        assert_eq!(
            (
                legacy.retired_epoch,
                legacy.adopted.epoch,
                legacy.retired_log
            ),
            (0, 1, unrecorded())
        );
    }

    #[test]
    fn the_same_topic_that_lost_records_goes_on_from_its_end() {
        let a = id("usage", Some("AAA"));
        let stored = at(&[100, 60, 0]);
        let truncated = log(a.clone(), &[80, 70, 5]);
        let verdict = check(Some(&bound(a.clone())), &stored, &truncated);
        let Verdict::Refuse(m) = &verdict else {
            panic!("refused: {verdict:?}")
        };
        assert!(
            m.to_string().contains("accepts the loss"),
            "the ways out fit a truncated topic: {m}"
        );
        let same = plan_adoption(
            &verdict,
            Some(&bound(a.clone())),
            &stored,
            &truncated,
            DateTime::<Utc>::UNIX_EPOCH,
        )
        .expect("adoptable");
        assert_eq!(same.start, at(&[80, 60, 0]));
        // Another topic, or the same name without ids to prove it the same: from the start.
        let other = plan(
            Some(&bound(id("usage", None))),
            &stored,
            &log(id("usage", None), &[80, 70, 5]),
            DateTime::<Utc>::UNIX_EPOCH,
        )
        .expect("adoptable");
        assert_eq!(other.start, at(&[0, 0, 0]));
    }

    #[test]
    fn only_a_refused_log_can_be_adopted() {
        let a = id("usage-a", Some("AAA"));
        assert_eq!(
            plan(
                Some(&bound(a.clone())),
                &at(&[10]),
                &log(a.clone(), &[10]),
                DateTime::<Utc>::UNIX_EPOCH
            ),
            Err(AdoptionRefused::Resumable(a.clone()))
        );
        assert_eq!(
            plan(
                None,
                &BTreeMap::new(),
                &log(a.clone(), &[10]),
                DateTime::<Utc>::UNIX_EPOCH
            ),
            Err(AdoptionRefused::NothingProjected(a))
        );
    }
}
