-- Scores (POST /v1/scores) as the projector read them from the log, every copy: the first of
-- each score_id in the log (the smallest (log_partition, log_offset, position)) is the one
-- that counts, chosen when read. A re-insert of the same rows (a projector that crashed
-- before its checkpoint) repeats a copy, which changes nothing. Scores join the counted events
-- of tally_events by event_id when an experiment's results are read, so a score may arrive
-- before its event. One partition per UTC day of receipt: retention drops whole partitions.
CREATE TABLE IF NOT EXISTS tally_scores (
    received_day   Date,
    event_id       String,
    score_id       String,
    log_partition  Int32,
    log_offset     Int64,
    position       UInt32,
    name           String,
    number         Int64,
    is_label       UInt8,
    label          String,
    received_at_ms Int64
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMMDD(received_day)
ORDER BY (event_id, score_id, log_partition, log_offset, position)
