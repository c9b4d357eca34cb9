-- Test cases of prompts: the prompt's variables and a check on the output (expected: a JSON
-- string or a JSON Schema object; NULL for the none check). domain/src/config/test_cases.rs.
CREATE TABLE IF NOT EXISTS ai_test_cases (
    id          UUID PRIMARY KEY,
    seq         BIGSERIAL NOT NULL,
    name        TEXT NOT NULL,
    description TEXT,
    prompt_id   UUID NOT NULL REFERENCES ai_prompts(id) ON DELETE CASCADE,
    variables   JSONB NOT NULL,
    check_kind  TEXT NOT NULL CHECK (check_kind IN ('exact', 'contains', 'regex', 'json_schema', 'none')),
    expected    JSONB,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS test_cases_by_prompt ON ai_test_cases (prompt_id);
