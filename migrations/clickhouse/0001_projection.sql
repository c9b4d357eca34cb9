-- The projection table (ClickHouse 18.16 … 25.x). One row per (kind, key, log partition);
-- version = the partition's next offset after the commit that wrote the row; newest wins.
--   kind 0: a rollup row (full merged state of one key from one log partition),
--   kind 1: a partition's checkpoint, kind 2: a chunk of a partition's dedup fingerprints
--   (bucket = newest second in the chunk).
-- Not partitioned on purpose: an INSERT below max_insert_block_size into one partition is
-- atomic, which is what makes a commit (rollups + checkpoint + dedup) all-or-nothing.
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
