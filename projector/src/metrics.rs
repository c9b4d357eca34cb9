//! The projector's metrics. Labels are bounded (none carry user data).

pub const EVENTS_APPLIED: &str = "tally_projector_events_applied_total";
pub const DUPLICATES: &str = "tally_projector_duplicates_total";
pub const COMMITS: &str = "tally_projector_commits_total";
pub const COMMIT_FAILURES: &str = "tally_projector_commit_failures_total";
pub const COMMIT_SECONDS: &str = "tally_projector_commit_seconds";
pub const LAG_EVENTS: &str = "tally_projector_lag_events";
pub const DEDUP_ENTRIES: &str = "tally_projector_dedup_entries";
pub const DEDUP_MEMORY_BYTES: &str = "tally_projector_dedup_memory_bytes";
pub const DEDUP_BLOCK_READS: &str = "tally_projector_dedup_block_reads_total";
pub const DEDUP_MAPPED_BYTES: &str = "tally_projector_dedup_mapped_bytes";
pub const DEDUP_MAP_FAILURES: &str = "tally_projector_dedup_map_failures_total";
pub const DEDUP_RUNS: &str = "tally_projector_dedup_runs";
pub const DEDUP_MERGES: &str = "tally_projector_dedup_merges_total";
pub const DEDUP_MERGE_BLOCK_READS: &str = "tally_projector_dedup_merge_block_reads_total";
pub const REBALANCES: &str = "tally_projector_rebalances_total";
pub const FENCED: &str = "tally_projector_fenced_total";
pub const CHECKPOINT_MISMATCH: &str = "tally_projector_checkpoint_mismatch";

pub fn describe() {
    metrics::describe_counter!(
        EVENTS_APPLIED,
        "Events folded into rollups (duplicates excluded)."
    );
    metrics::describe_counter!(
        DUPLICATES,
        "Events dropped as duplicates of an event id seen within the dedup window."
    );
    metrics::describe_counter!(COMMITS, "Atomic rollup + checkpoint commits.");
    metrics::describe_counter!(
        COMMIT_FAILURES,
        "Commits that failed and were retried from the last checkpoint."
    );
    metrics::describe_histogram!(
        COMMIT_SECONDS,
        "Duration of one commit to the analytics store."
    );
    metrics::describe_counter!(
        REBALANCES,
        "Partition ownership changes that made the projector reload its checkpoints."
    );
    metrics::describe_counter!(
        FENCED,
        "Commits refused because another projector had moved the partition."
    );
    metrics::describe_gauge!(LAG_EVENTS, "Events in the log not yet projected.");
    metrics::describe_gauge!(
        CHECKPOINT_MISMATCH,
        "1 while the projector refuses to read because the analytics store's checkpoints belong to another log (or lie beyond its end); 0 otherwise."
    );
    metrics::describe_gauge!(
        DEDUP_ENTRIES,
        "Event-id fingerprints within the dedup window: the open set's and the sealed generations'."
    );
    metrics::describe_gauge!(
        DEDUP_MEMORY_BYTES,
        "Bytes of heap the dedup memory holds: the open set's hash tables, and the sealed generations' filters and block indexes when they are not mapped from files."
    );
    metrics::describe_gauge!(
        DEDUP_MAPPED_BYTES,
        "Bytes of the sealed dedup generations' filters and block indexes mapped from files (page cache the kernel may reclaim, not heap)."
    );
    metrics::describe_counter!(
        DEDUP_MAP_FAILURES,
        "Sealed dedup filters that could not be mapped from a file and stayed on the heap."
    );
    metrics::describe_gauge!(
        DEDUP_RUNS,
        "Sealed dedup runs held over the owned partitions: each event is probed against one filter per run of its partition."
    );
    metrics::describe_counter!(
        DEDUP_MERGES,
        "Merges of sealed dedup runs completed (four runs of a size class replaced by one)."
    );
    metrics::describe_counter!(
        DEDUP_MERGE_BLOCK_READS,
        "Stored blocks of sealed dedup runs read by merges."
    );
    metrics::describe_counter!(
        DEDUP_BLOCK_READS,
        "Stored blocks of sealed dedup generations read to settle a filter hit (a duplicate, or a false positive of the filter)."
    );
}
