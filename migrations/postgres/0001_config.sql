-- Configuration store (Postgres). Logically identical to migrations/sqlite/config.sql.
CREATE TABLE IF NOT EXISTS ai_features (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    description  TEXT,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'maintenance')),
    config       JSONB NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS ai_providers (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL CHECK (type IN ('openai', 'google', 'anthropic', 'custom')),
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'error')),
    base_url    TEXT,
    api_key_env TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS ai_models (
    id           UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    provider_id  UUID NOT NULL REFERENCES ai_providers(id) ON DELETE CASCADE,
    model_type   TEXT NOT NULL CHECK (model_type IN ('llm', 'vision', 'embedding', 'custom')),
    version      TEXT,
    capabilities JSONB NOT NULL DEFAULT '[]',
    status       TEXT NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'beta', 'deprecated', 'unavailable')),
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (provider_id, name)
);

-- Effective-dated prices in micro-dollars per million tokens.
CREATE TABLE IF NOT EXISTS ai_model_prices (
    id                           UUID PRIMARY KEY,
    model_id                     UUID NOT NULL REFERENCES ai_models(id) ON DELETE CASCADE,
    effective_from               TIMESTAMPTZ NOT NULL,
    input_per_mtok_micros        BIGINT NOT NULL CHECK (input_per_mtok_micros >= 0),
    output_per_mtok_micros       BIGINT NOT NULL CHECK (output_per_mtok_micros >= 0),
    cached_input_per_mtok_micros BIGINT CHECK (cached_input_per_mtok_micros >= 0),
    created_at                   TIMESTAMPTZ NOT NULL,
    UNIQUE (model_id, effective_from)
);

-- Every assignment ever made; at most one active per (feature, environment).
CREATE TABLE IF NOT EXISTS feature_model_assignments (
    id             UUID PRIMARY KEY,
    seq            BIGSERIAL NOT NULL,
    feature_id     UUID NOT NULL REFERENCES ai_features(id) ON DELETE CASCADE,
    model_id       UUID NOT NULL REFERENCES ai_models(id) ON DELETE CASCADE,
    environment    TEXT NOT NULL CHECK (environment IN ('development', 'staging', 'production')),
    is_active      BOOLEAN NOT NULL,
    assigned_at    TIMESTAMPTZ NOT NULL,
    assigned_by    TEXT,
    deactivated_at TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_assignment
    ON feature_model_assignments (feature_id, environment) WHERE is_active;
CREATE INDEX IF NOT EXISTS assignments_history
    ON feature_model_assignments (feature_id, environment, assigned_at);
