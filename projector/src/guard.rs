//! The check a projector makes before it reads anything: do the analytics store's checkpoints
//! belong to the log it is given? ([`tally_domain::log_binding`] has the rule.) Every session
//! passes through [`admit`] (the first, each one after a rebalance or a failure) and so does a
//! rebuild ([`guard_rebuild`]); an adoption is planned here ([`plan_adoption`]) and carried out
//! by the store. All three judge by one [`assess`]ment.
//!
//! Invariant: a projector whose checkpoints do not fit its log reads nothing. It reports the
//! mismatch (status, `tally_projector_checkpoint_mismatch`, the log) and checks again from time
//! to time, so an operator's way out (an adoption, a start from scratch, the right topic back)
//! takes effect without a restart.

use chrono::Utc;
use tally_domain::log_binding::{
    self, Adoption, AdoptionRefused, Anchor, LogBinding, LogDescription, Mismatch, Verdict,
};
use tally_domain::store::{
    AnalyticsStore, EventLog, Partitions, ProjectorState, RecordAt, StoreError,
};
use tracing::info;

/// The store and the log as they are now, and the verdict on them.
struct Assessment {
    log: LogDescription,
    bindings: Vec<LogBinding>,
    /// Every partition's checkpoint of the current epoch (no dedup memory).
    checkpoints: ProjectorState,
    verdict: Verdict,
}

impl Assessment {
    fn current(&self) -> Option<&LogBinding> {
        self.bindings.last()
    }
}

/// Judges every partition's checkpoint, not only those a projector owns: the verdict is the
/// store's, the same for every projector of a group (and one that owns nothing yet, before
/// its group assigns it partitions, still names every stored offset when it refuses). Where
/// topic ids cannot be compared, the record each checkpoint projected last is compared with
/// the one the log holds at that offset now ([`log_binding::anchors_to_compare`]).
async fn assess(log: &dyn EventLog, store: &dyn AnalyticsStore) -> Result<Assessment, StoreError> {
    let description = log.describe().await?;
    let bindings = store.bindings().await?;
    let checkpoints = store.checkpoints(&Partitions::All).await?;
    let position = checkpoints.position();
    let current = bindings.last();
    let mut verdict = log_binding::check(current, &position.0, &description);
    if !matches!(verdict, Verdict::Refuse(_)) {
        let anchors: Vec<Anchor> = checkpoints
            .partitions
            .iter()
            .filter(|(_, s)| s.next_offset > 0)
            .map(|(p, s)| Anchor {
                partition: *p,
                offset: s.next_offset - 1,
                fingerprint: s.anchor,
            })
            .collect();
        for anchor in log_binding::anchors_to_compare(current, &anchors, &description) {
            let found = match log.fingerprint_at(anchor.partition, anchor.offset).await? {
                RecordAt::Fingerprint(found) => Some(found),
                RecordAt::Missing => None,
                RecordAt::Unknown => continue,
            };
            if let Some(mismatch) =
                log_binding::compare_anchor(current, &position.0, &description, anchor, found)
            {
                verdict = Verdict::Refuse(mismatch);
                break;
            }
        }
    }
    Ok(Assessment {
        log: description,
        bindings,
        checkpoints,
        verdict,
    })
}

/// What the store and the log said, and what follows from it.
pub(crate) enum Admission {
    /// Read under this binding.
    Admitted(LogBinding),
    Refused(Mismatch),
}

/// Checks the store's checkpoints against the log ([`assess`]), binding the store first when
/// nothing is bound yet (or recording the id of its log when it was bound without one).
pub(crate) async fn admit(
    log: &dyn EventLog,
    store: &dyn AnalyticsStore,
) -> Result<Admission, StoreError> {
    // A bind or a learned id is checked once more, as stored.
    for _ in 0..3 {
        let assessment = assess(log, store).await?;
        let current = assessment.current().cloned();
        match (assessment.verdict, current) {
            (Verdict::Refuse(mismatch), _) => return Ok(Admission::Refused(mismatch)),
            (Verdict::Resume, Some(binding)) => return Ok(Admission::Admitted(binding)),
            (Verdict::LearnId, Some(binding)) => {
                let learned = LogBinding {
                    log: assessment.log.identity,
                    ..binding
                };
                let bound = store.bind(learned).await?;
                info!(log = %bound.log, epoch = bound.epoch, "recorded the id of the analytics store's log");
            }
            (Verdict::Bind | Verdict::Resume | Verdict::LearnId, _) => {
                let first = LogBinding {
                    epoch: 0,
                    log: assessment.log.identity,
                    bound_at: Utc::now(),
                    retired: None,
                };
                let bound = store.bind(first).await?;
                info!(log = %bound.log, epoch = bound.epoch, "bound the analytics store to its log");
            }
        }
    }
    Err(StoreError::Conflict(
        "the analytics store's binding keeps changing; is another projector binding it to another log?".into(),
    ))
}

/// Whether a projector reading under `binding`, at `position` of its owned partitions, may go
/// on: `Some(why)` when the store was bound to another log meanwhile (an adoption), or the log
/// changed under it (a topic deleted and created again while it ran). Checked from time to
/// time while a session runs; cheap (no record is fetched).
pub(crate) async fn still_fits(
    log: &dyn EventLog,
    store: &dyn AnalyticsStore,
    binding: &LogBinding,
    position: &std::collections::BTreeMap<i32, i64>,
) -> Result<Option<String>, StoreError> {
    if let Some(current) = store.bindings().await?.pop() {
        if current.epoch != binding.epoch || current.log.name != binding.log.name {
            return Ok(Some(format!(
                "the analytics store is bound to log {} (epoch {}), not to {} (epoch {})",
                current.log, current.epoch, binding.log, binding.epoch
            )));
        }
    }
    let description = log.describe().await?;
    Ok(
        match log_binding::check(Some(binding), position, &description) {
            Verdict::Refuse(mismatch) => Some(mismatch.to_string()),
            Verdict::Resume | Verdict::Bind | Verdict::LearnId => None,
        },
    )
}

/// Why an adoption cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum AdoptionError {
    #[error(transparent)]
    Refused(#[from] AdoptionRefused),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Plans the adoption of the log as it is now by the store (every partition of its current
/// epoch is retired): what [`AnalyticsStore::adopt`] then carries out. Only a log the store's
/// checkpoints do not fit can be adopted.
pub async fn plan_adoption(
    log: &dyn EventLog,
    store: &dyn AnalyticsStore,
) -> Result<Adoption, AdoptionError> {
    let a = assess(log, store).await?;
    Ok(log_binding::plan_adoption(
        &a.verdict,
        a.current(),
        &a.checkpoints.position().0,
        &a.log,
        Utc::now(),
    )?)
}

/// Drops everything the store holds and binds it to `log` as it is now, at the epoch after its
/// last one: a projector still running under an earlier epoch is refused at its next commit.
pub(crate) async fn reset_and_bind(
    log: &dyn EventLog,
    store: &dyn AnalyticsStore,
) -> Result<(), StoreError> {
    let next = store.bindings().await?.last().map_or(0, |b| b.epoch + 1);
    let identity = log.describe().await?.identity;
    store.reset().await?;
    let bound = store
        .bind(LogBinding {
            epoch: next,
            log: identity,
            bound_at: Utc::now(),
            retired: None,
        })
        .await?;
    info!(log = %bound.log, epoch = bound.epoch, "emptied the analytics store and bound it to its log");
    Ok(())
}

/// A rebuild replays the log into an emptied store: refused (`Conflict`, saying why and what
/// to do) when the store's checkpoints do not fit the log, or when it also holds what retired
/// logs counted — the replay would silently drop those counts. Starting clean
/// ([`crate::start_clean`]) is the explicit way to drop them.
pub async fn guard_rebuild(
    log: &dyn EventLog,
    store: &dyn AnalyticsStore,
) -> Result<(), StoreError> {
    let a = assess(log, store).await?;
    let retired: Vec<String> = a
        .bindings
        .iter()
        .filter(|b| b.retired.is_some())
        .map(|b| b.log.to_string())
        .collect();
    if !retired.is_empty() {
        return Err(StoreError::Conflict(format!(
            "the analytics store also holds what retired logs counted ({}): a rebuild replays only the current log and would drop those counts. `tally rebuild --start-clean` drops them on purpose.",
            retired.join(", ")
        )));
    }
    match a.verdict {
        Verdict::Refuse(mismatch) => Err(StoreError::Conflict(mismatch.to_string())),
        Verdict::Resume | Verdict::Bind | Verdict::LearnId => Ok(()),
    }
}
