-- Prompts and their immutable, numbered versions. At most one active version per feature
-- (feature_id is copied onto the version for that index).
CREATE TABLE IF NOT EXISTS ai_prompts (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    feature_id  UUID REFERENCES ai_features(id) ON DELETE SET NULL,
    tags        JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ai_prompt_versions (
    id         UUID PRIMARY KEY,
    prompt_id  UUID NOT NULL REFERENCES ai_prompts(id) ON DELETE CASCADE,
    version    INT NOT NULL,
    content    TEXT NOT NULL,
    variables  JSONB NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('draft', 'review', 'approved', 'archived')),
    is_active  BOOLEAN NOT NULL,
    feature_id UUID,
    created_by TEXT,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (prompt_id, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_prompt_version
    ON ai_prompt_versions (feature_id) WHERE is_active;

-- Spending budgets: amount in micro-dollars per period, in the budget's time zone.
CREATE TABLE IF NOT EXISTS ai_spending_budgets (
    id            UUID PRIMARY KEY,
    seq           BIGSERIAL NOT NULL,
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('global', 'feature', 'provider', 'model', 'environment')),
    scope_value   TEXT,
    period_type   TEXT NOT NULL CHECK (period_type IN ('daily', 'weekly', 'monthly', 'quarterly')),
    time_zone     TEXT NOT NULL,
    amount_micros BIGINT NOT NULL CHECK (amount_micros > 0),
    thresholds    JSONB NOT NULL,
    is_active     BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

-- A/B experiments; variants (name, traffic_percent, config) as JSON.
CREATE TABLE IF NOT EXISTS ai_experiments (
    id              UUID PRIMARY KEY,
    seq             BIGSERIAL NOT NULL,
    name            TEXT NOT NULL,
    description     TEXT,
    feature_id      UUID NOT NULL REFERENCES ai_features(id) ON DELETE CASCADE,
    experiment_type TEXT NOT NULL CHECK (experiment_type IN ('model_comparison', 'prompt_testing', 'parameter_tuning')),
    variants        JSONB NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'running', 'completed', 'cancelled')),
    start_date      TIMESTAMPTZ,
    end_date        TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
