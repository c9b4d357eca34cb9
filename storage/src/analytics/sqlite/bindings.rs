//! Log bindings in `analytics.db`: the epochs of the logs this store has projected, binding a log,
//! and adopting another one (checkpoints of the next epoch start where the adopted log stands).

use rusqlite::{params, Connection};
use tally_domain::log_binding::{Adoption, LogBinding, LogIdentity, Retirement};
use tally_domain::store::{PartitionState, Partitions};

use super::load_state;
use crate::failure::{Failure, Result};

/// The epoch of the newest binding (0 when there is none: checkpoints from before bindings).
pub(super) fn current_epoch(conn: &Connection) -> Result<u32> {
    let epoch: i64 = conn.query_row(
        "SELECT COALESCE(MAX(epoch), 0) FROM log_bindings",
        [],
        |r| r.get(0),
    )?;
    u32::try_from(epoch).map_err(|_| Failure::Corrupt(format!("log binding epoch {epoch}")))
}

pub(super) fn millis(at: chrono::DateTime<chrono::Utc>) -> i64 {
    at.timestamp_millis()
}

pub(super) fn time_of(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub(super) fn bindings(conn: &Connection) -> Result<Vec<LogBinding>> {
    let mut stmt = conn.prepare(
        "SELECT epoch, log_name, log_id, bound_at_ms, retired_at_ms, retired_position FROM log_bindings ORDER BY epoch",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let retired = match (r.get::<_, Option<i64>>(4)?, r.get::<_, Option<String>>(5)?) {
            (Some(at), Some(position)) => Some(Retirement {
                at: time_of(at),
                position: serde_json::from_str(&position)
                    .map_err(|e| Failure::Corrupt(format!("retired position: {e}")))?,
            }),
            _ => None,
        };
        out.push(LogBinding {
            epoch: r.get(0)?,
            log: LogIdentity {
                name: r.get(1)?,
                id: r.get(2)?,
            },
            bound_at: time_of(r.get(3)?),
            retired,
        });
    }
    Ok(out)
}

pub(super) fn insert_binding(conn: &Connection, b: &LogBinding) -> Result<()> {
    conn.execute(
        "INSERT INTO log_bindings (epoch, log_name, log_id, bound_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![b.epoch, b.log.name, b.log.id, millis(b.bound_at)],
    )?;
    Ok(())
}

pub(super) fn bind(conn: &mut Connection, binding: &LogBinding) -> Result<LogBinding> {
    let tx = conn.transaction()?;
    match bindings(&tx)?.pop() {
        None => insert_binding(&tx, binding)?,
        Some(current)
            if current.epoch == binding.epoch
                && current.log.name == binding.log.name
                && current.log.id.is_none() =>
        {
            tx.execute(
                "UPDATE log_bindings SET log_id = ?1 WHERE epoch = ?2",
                params![binding.log.id, current.epoch],
            )?;
        }
        _ => {}
    }
    let current = bindings(&tx)?.pop();
    tx.commit()?;
    current.ok_or_else(|| Failure::Conflict("the store has no binding".into()))
}

/// Entries per dedup chunk written by an adoption.
pub(super) const ADOPTED_CHUNK: usize = 1 << 20;

pub(super) fn adopt(conn: &mut Connection, a: &Adoption, window_s: u32) -> Result<()> {
    let tx = conn.transaction()?;
    let epoch = current_epoch(&tx)?;
    if epoch != a.retired_epoch {
        return Err(Failure::Conflict(format!(
            "the store is at epoch {epoch}, not {}: it changed since the adoption was planned",
            a.retired_epoch
        )));
    }
    let mut stored = load_state(&tx, Some(window_s), &Partitions::All)?;
    // The sealed generations' entries join the open ones: an adoption hands the whole
    // dedup memory over as chunks (the new partitions' projector seals them again).
    for (partition, ps) in &mut stored.partitions {
        let since_s = ((ps.last_received_ms / 1000) as u32).saturating_sub(window_s);
        super::sealed_entries(&tx, *partition, since_s, &mut ps.dedup)?;
    }
    if stored.position().0 != a.retired_position {
        return Err(Failure::Conflict(
            "the checkpoints moved since the adoption was planned (is a projector still reading the old log?)".into(),
        ));
    }
    tx.execute_batch("DELETE FROM projector_partitions; DELETE FROM dedup_chunks; DELETE FROM dedup_blocks; DELETE FROM dedup_generations; DELETE FROM dedup_doomed;")?;
    for (partition, sources) in &a.dedup_from {
        let from: Vec<&PartitionState> = sources
            .iter()
            .filter_map(|p| stored.partitions.get(p))
            .collect();
        let clock = from.iter().map(|s| s.last_received_ms).max().unwrap_or(0);
        let mut entries: Vec<(u64, u32)> =
            from.iter().flat_map(|s| s.dedup.iter().copied()).collect();
        // An id remembered by several sources is kept with its latest sighting.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by_key(|(fp, _)| *fp);
        for chunk in entries.chunks(ADOPTED_CHUNK) {
            let max_seen = chunk.iter().map(|(_, s)| *s).max().unwrap_or(0);
            tx.execute(
                "INSERT INTO dedup_chunks (max_seen_s, entries, log_partition) VALUES (?1, ?2, ?3)",
                params![max_seen, crate::codec::encode_dedup_chunk(chunk), partition],
            )?;
        }
        tx.execute(
            "INSERT INTO projector_partitions VALUES (?1, ?2, ?3, 0, 0, 0)",
            params![
                partition,
                a.start.get(partition).copied().unwrap_or(0),
                clock
            ],
        )?;
    }
    let position =
        serde_json::to_string(&a.retired_position).map_err(|e| Failure::Backend(e.to_string()))?;
    if bindings(&tx)?.is_empty() {
        insert_binding(
            &tx,
            &LogBinding {
                epoch: a.retired_epoch,
                log: a.retired_log.clone(),
                bound_at: chrono::DateTime::UNIX_EPOCH,
                retired: None,
            },
        )?;
    }
    tx.execute(
        "UPDATE log_bindings SET retired_at_ms = ?1, retired_position = ?2 WHERE epoch = ?3",
        params![millis(a.adopted.bound_at), position, a.retired_epoch],
    )?;
    insert_binding(&tx, &a.adopted)?;
    tx.commit()?;
    Ok(())
}
