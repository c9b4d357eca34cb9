-- Rollup rows (ClickHouse 18.16 … 25.x): one row per (rollup key, log partition) holding the
-- key's full merged state from that partition's records before offset `version`; the newest
-- version wins (read with FINAL). Every row is correct on its own, so an insert that lands
-- only partly is harmless: the checkpoint (in tally_projection, written last) tells how far
-- every row is complete, and rows ahead of it are recognised by their version.
-- One partition per UTC day of the bucket: retention drops whole partitions.
-- `tally migrate` then adds the prompt dimensions (prompt_id, prompt_version after
-- environment) and the log epoch (log_epoch after log_partition), each appended to the sorting
-- key: core/src/clickhouse/mod.rs, add_later_columns.
CREATE TABLE IF NOT EXISTS tally_rollups (
    day                 Date,
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
    users               String
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMMDD(day)
ORDER BY (resolution, feature, bucket, model, provider, environment, log_partition)
