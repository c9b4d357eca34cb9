//! The sealed dedup generations a session resumes with. The store lists them with the
//! checkpoints ([`ProjectorState`], without their summaries) and streams their summaries
//! ([`AnalyticsStore::dedup_summaries`]); they are decoded and mapped ([`load_summaries`]) a few
//! MB at a time (a batch is on the heap twice while it is decoded: encoded and decoded), off the
//! runtime, so a start never holds the window's encoded summaries on its heap at once (about 2.3
//! bytes per id: some 414 MB at 180 M ids).
//!
//! Invariants:
//! - Every listed generation of an owned partition is loaded with its own summary, or the load
//!   reports the one it could not find ([`Loaded::Forgotten`]): a store forgets a generation
//!   once a merge that replaces it completes or it leaves the window, and ClickHouse deletes
//!   its rows later, by a mutation that may land between the listing and the fetch; listing
//!   again then leaves it out. It is never dropped silently: the memory would miss its ids
//!   and count their duplicates.
//! - At most `batch_bytes` of encoded summaries (plus the one that crosses it) wait to be
//!   decoded at a time; copies of a summary the store hands over twice are dropped at once.

use std::collections::{BTreeMap, HashMap};

use futures::TryStreamExt;
use tally_domain::dedup::GenerationSummary;
use tally_domain::store::{
    AnalyticsStore, DedupGeneration, Partitions, ProjectorState, StoreError,
};

use crate::dedup::load_summaries;
use crate::filter_files::FilterFiles;

/// Encoded summaries decoded together: about two seals' worth at the default cap (2 M ids,
/// ~4.6 MB each) or fifteen parts of merged runs.
pub(crate) const BATCH_BYTES: usize = 10 << 20;

/// Per owned partition, its sealed generations with their summaries as loaded.
pub(crate) type Sealed = BTreeMap<i32, Vec<(DedupGeneration, GenerationSummary)>>;

/// What [`load`] found.
pub(crate) enum Loaded {
    Sealed(Sealed),
    /// A listed generation whose summary the store no longer holds: list again.
    Forgotten {
        partition: i32,
        id: u64,
    },
    /// The runtime shut down meanwhile.
    Shutdown,
}

/// The summaries of the sealed generations `state` lists for the `owned` partitions, mapped
/// from files in `files` (or on the heap), decoded `batch_bytes` at a time.
pub(crate) async fn load(
    store: &dyn AnalyticsStore,
    state: &ProjectorState,
    owned: &Partitions,
    files: Option<&FilterFiles>,
    batch_bytes: usize,
) -> Result<Loaded, StoreError> {
    let mut sealed = Sealed::new();
    for (partition, ps) in &state.partitions {
        if !owned.contains(*partition) || ps.generations.is_empty() {
            continue;
        }
        let mut summaries: Vec<Option<GenerationSummary>> =
            ps.generations.iter().map(|_| None).collect();
        let ids: Vec<u64> = ps.generations.iter().map(|g| g.id).collect();
        let at: HashMap<u64, usize> = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut waiting: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut waiting_bytes = 0;
        let mut stream = store.dedup_summaries(*partition, &ids);
        loop {
            let next = stream.try_next().await?;
            let end = next.is_none();
            if let Some((id, bytes)) = next {
                let Some(&i) = at.get(&id) else {
                    return Err(StoreError::Backend(format!(
                        "the store handed over dedup generation {id:016x} of partition {partition}, which was not asked for"
                    )));
                };
                if summaries[i].is_none() && !waiting.iter().any(|(j, _)| *j == i) {
                    waiting_bytes += bytes.len();
                    waiting.push((i, bytes));
                }
            }
            if waiting_bytes >= batch_bytes || (end && !waiting.is_empty()) {
                waiting_bytes = 0;
                let Some(decoded) = decode(std::mem::take(&mut waiting), files).await? else {
                    return Ok(Loaded::Shutdown);
                };
                for (i, summary) in decoded {
                    summaries[i] = Some(summary);
                }
            }
            if end {
                break;
            }
        }
        let mut loaded = Vec::with_capacity(summaries.len());
        for (g, summary) in ps.generations.iter().zip(summaries) {
            match summary {
                Some(summary) => loaded.push((*g, summary)),
                None => {
                    return Ok(Loaded::Forgotten {
                        partition: *partition,
                        id: g.id,
                    })
                }
            }
        }
        sealed.insert(*partition, loaded);
    }
    Ok(Loaded::Sealed(sealed))
}

/// `batch` decoded and mapped off the runtime; `None` when the runtime shuts down meanwhile.
async fn decode(
    batch: Vec<(usize, Vec<u8>)>,
    files: Option<&FilterFiles>,
) -> Result<Option<Vec<(usize, GenerationSummary)>>, StoreError> {
    let files = files.cloned();
    let decoded = tokio::task::spawn_blocking(move || {
        let encoded: Vec<&[u8]> = batch.iter().map(|(_, bytes)| bytes.as_slice()).collect();
        let summaries = load_summaries(&encoded, files.as_ref())?;
        Ok::<_, StoreError>(batch.iter().map(|(i, _)| *i).zip(summaries).collect())
    })
    .await;
    match decoded {
        Ok(decoded) => decoded.map(Some),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use tally_domain::store::{DedupSeal, PartitionCommit, PartitionState, ProjectionCommit};
    use tally_storage::analytics::SqliteAnalyticsStore;

    use super::*;

    /// A generation named `id` of `entries` ids from `first`, seen at second 1,000.
    fn seal(id: u64, first: u64, entries: u64) -> DedupSeal {
        let mut keys: Vec<u64> = (first..first + entries)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        keys.sort_unstable();
        DedupSeal {
            generation: DedupGeneration {
                id,
                max_seen_s: 1_000,
                entries,
            },
            summary: GenerationSummary::build(&keys).expect("summary").encode(),
            entries: keys.iter().map(|k| (*k, 1_000)).collect(),
        }
    }

    /// Partition 0 moved from `base` by one record, sealing `seals` and retiring `retired`.
    fn commit(base: i64, seals: Vec<DedupSeal>, retired: Vec<u64>) -> ProjectionCommit {
        let partition = PartitionCommit {
            base_offset: base,
            merged: seals,
            retired,
            state: PartitionState {
                next_offset: base + 1,
                last_received_ms: 1_000_000,
                ..PartitionState::default()
            },
            ..PartitionCommit::default()
        };
        ProjectionCommit {
            epoch: 0,
            partitions: [(0, partition)].into_iter().collect(),
        }
    }

    /// A store holding five generations of 100 to 900 ids (ids 1–5), and their seals.
    async fn five() -> (tempfile::TempDir, SqliteAnalyticsStore, Vec<DedupSeal>) {
        let dir = tempfile::tempdir().expect("dir");
        let store = SqliteAnalyticsStore::open(dir.path()).expect("store");
        let seals: Vec<DedupSeal> = (1..=5u64)
            .map(|g| seal(g, g * 10_000, g * 200 - 100))
            .collect();
        store
            .commit(commit(0, seals.clone(), Vec::new()))
            .await
            .expect("sealed");
        (dir, store, seals)
    }

    /// What the store lists for a start (a day's window).
    async fn listed(store: &SqliteAnalyticsStore) -> ProjectorState {
        store
            .load_state(86_400, &Partitions::All)
            .await
            .expect("listed")
    }

    #[tokio::test]
    async fn every_listed_generation_comes_with_its_own_summary_whatever_the_batch() {
        let (_dir, store, seals) = five().await;
        let state = listed(&store).await;
        // One summary per batch, two or three, and all at once.
        for batch_bytes in [1, 600, usize::MAX] {
            let Loaded::Sealed(sealed) = load(&store, &state, &Partitions::All, None, batch_bytes)
                .await
                .expect("loaded")
            else {
                panic!("every listed generation is held");
            };
            let mut got: Vec<(u64, u64, Vec<u8>)> = sealed[&0]
                .iter()
                .map(|(g, s)| (g.id, g.entries, s.encode()))
                .collect();
            got.sort();
            let want: Vec<(u64, u64, Vec<u8>)> = seals
                .iter()
                .map(|s| (s.generation.id, s.generation.entries, s.summary.clone()))
                .collect();
            assert_eq!(got, want, "batches of {batch_bytes} bytes");
        }
        // Partitions not owned load nothing.
        let Loaded::Sealed(none) = load(
            &store,
            &state,
            &Partitions::Only([1].into_iter().collect()),
            None,
            1,
        )
        .await
        .expect("loaded") else {
            panic!("nothing to find");
        };
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn a_generation_forgotten_after_the_listing_is_reported_not_skipped() {
        let (_dir, store, _) = five().await;
        let state = listed(&store).await;
        // Generation 4 is retired between the listing and the fetch.
        store
            .commit(commit(1, Vec::new(), vec![4]))
            .await
            .expect("retired");
        match load(&store, &state, &Partitions::All, None, 1).await {
            Ok(Loaded::Forgotten { partition, id }) => assert_eq!((partition, id), (0, 4)),
            Ok(Loaded::Sealed(_)) => panic!("loaded without generation 4"),
            Ok(Loaded::Shutdown) => panic!("shut down"),
            Err(err) => panic!("{err}"),
        }
        // Listed again, it is left out.
        let state = listed(&store).await;
        let Ok(Loaded::Sealed(sealed)) = load(&store, &state, &Partitions::All, None, 1).await
        else {
            panic!("the others load");
        };
        let mut ids: Vec<u64> = sealed[&0].iter().map(|(g, _)| g.id).collect();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2, 3, 5]);
    }
}
