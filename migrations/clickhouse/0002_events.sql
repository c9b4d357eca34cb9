-- Raw usage events as counted by the projector (duplicates excluded), for drill-down and
-- replay. Dashboards never read this table; they read tally_projection.
-- One partition per UTC day of occurred_at: retention drops whole partitions.
-- A re-insert of the same events (a projector that crashed between this insert and its
-- projection commit) has the same sorting key and is collapsed by ReplacingMergeTree; read
-- with FINAL for exact counts.
CREATE TABLE IF NOT EXISTS tally_events (
    occurred_day        Date,
    feature             String,
    occurred_at_us      Int64,
    event_id            String,
    model               String,
    provider            String,
    environment         String,
    operation           String,
    status              String,
    error_type          String,
    latency_us          UInt64,
    input_tokens        UInt64,
    output_tokens       UInt64,
    cached_input_tokens UInt64,
    cost_source         String,
    cost_pico           Int64,
    user_id             String,
    prompt_id           String,
    prompt_version      String,
    experiment_id       String,
    variant             String,
    attributes          String,
    log_partition       Int32,
    log_offset          Int64,
    received_at_ms      Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(occurred_day)
ORDER BY (feature, occurred_at_us, event_id)
