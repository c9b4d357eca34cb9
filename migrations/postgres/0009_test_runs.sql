-- Test runs: each run one JSON document (its plan and the calls' outcomes,
-- domain/src/config/test_runs.rs) and its summary (what listings read), replaced as calls
-- complete. Not audited: runs are operations, traced by the usage events their calls record.
CREATE TABLE IF NOT EXISTS ai_test_runs (
    id         UUID PRIMARY KEY,
    prompt_id  UUID,
    created_at TIMESTAMPTZ NOT NULL,
    run        JSONB NOT NULL,
    summary    JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS test_runs_by_prompt ON ai_test_runs (prompt_id, created_at);
CREATE INDEX IF NOT EXISTS test_runs_by_time ON ai_test_runs (created_at);
