-- Projector bookkeeping (ClickHouse 18.16 … 25.x). One row per (kind, key, log partition);
-- version = the partition's next offset after the commit that wrote the row; newest wins.
--   kind 1: a partition's checkpoint, kind 2: a chunk of a partition's dedup fingerprints
--   (bucket = newest second in the chunk), kind 3: a log binding (the topic the checkpoints
--   of an epoch belong to; version = its revision). `tally migrate` adds log_epoch after
--   log_partition and to the sorting key (core/src/clickhouse/mod.rs, add_later_columns).
--   Kind 0 (rollup rows) was used before rollups moved to tally_rollups (0003); `tally
--   migrate` moves any such rows over.
-- Not partitioned on purpose: a commit's checkpoint and dedup chunk are one small INSERT into
-- one partition, which ClickHouse applies atomically.
CREATE TABLE IF NOT EXISTS tally_projection (
    kind                UInt8,
    resolution          UInt32,
    feature             String,
    bucket              Int64,
    model               String,
    provider            String,
    environment         String,
    log_partition       Int32,
    version             UInt64,
    requests            UInt64,
    errors              UInt64,
    timeouts            UInt64,
    latency_sum_us      UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cost_pico           String,
    unpriced            UInt64,
    latency             String,
    users               String,
    payload             String
) ENGINE = ReplacingMergeTree(version)
ORDER BY (kind, resolution, feature, bucket, model, provider, environment, log_partition)
