-- The projection table (ClickHouse 18.16 … 25.x). One row per (kind, key), newest version wins.
--   kind 0: a rollup row (full merged state of one key), kind 1: the projector checkpoint,
--   kind 2: a chunk of dedup fingerprints (bucket = newest second in the chunk).
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
ORDER BY (kind, resolution, feature, bucket, model, provider, environment)
