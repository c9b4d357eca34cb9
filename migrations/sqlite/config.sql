-- Embedded configuration store (SQLite). Kept logically identical to migrations/postgres.
-- Timestamps are RFC 3339 UTC text with microseconds, which sorts chronologically.
CREATE TABLE IF NOT EXISTS ai_features (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    description  TEXT,
    status       TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'maintenance')),
    config       TEXT NOT NULL DEFAULT '{}',
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS ai_providers (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    type        TEXT NOT NULL CHECK (type IN ('openai', 'google', 'anthropic', 'custom')),
    status      TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'error')),
    base_url    TEXT,
    api_key_env TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS ai_models (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    provider_id  TEXT NOT NULL REFERENCES ai_providers(id) ON DELETE CASCADE,
    model_type   TEXT NOT NULL CHECK (model_type IN ('llm', 'vision', 'embedding', 'custom')),
    version      TEXT,
    capabilities TEXT NOT NULL DEFAULT '[]',
    status       TEXT NOT NULL DEFAULT 'available' CHECK (status IN ('available', 'beta', 'deprecated', 'unavailable')),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    UNIQUE (provider_id, name)
);

-- Effective-dated prices in micro-dollars per million tokens.
CREATE TABLE IF NOT EXISTS ai_model_prices (
    id                           TEXT PRIMARY KEY,
    model_id                     TEXT NOT NULL REFERENCES ai_models(id) ON DELETE CASCADE,
    effective_from               TEXT NOT NULL,
    input_per_mtok_micros        INTEGER NOT NULL CHECK (input_per_mtok_micros >= 0),
    output_per_mtok_micros       INTEGER NOT NULL CHECK (output_per_mtok_micros >= 0),
    cached_input_per_mtok_micros INTEGER CHECK (cached_input_per_mtok_micros >= 0),
    created_at                   TEXT NOT NULL,
    UNIQUE (model_id, effective_from)
);

-- Every assignment ever made; at most one active per (feature, environment).
CREATE TABLE IF NOT EXISTS feature_model_assignments (
    id             TEXT PRIMARY KEY,
    feature_id     TEXT NOT NULL REFERENCES ai_features(id) ON DELETE CASCADE,
    model_id       TEXT NOT NULL REFERENCES ai_models(id) ON DELETE CASCADE,
    environment    TEXT NOT NULL CHECK (environment IN ('development', 'staging', 'production')),
    is_active      INTEGER NOT NULL,
    assigned_at    TEXT NOT NULL,
    assigned_by    TEXT,
    deactivated_at TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_assignment
    ON feature_model_assignments (feature_id, environment) WHERE is_active = 1;
CREATE INDEX IF NOT EXISTS assignments_history
    ON feature_model_assignments (feature_id, environment, assigned_at);

-- API keys: the SHA-256 of the secret, never the secret (core/src/access.rs).
CREATE TABLE IF NOT EXISTS api_keys (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('platform_admin', 'viewer', 'finance', 'ingest')),
    key_hash   TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);

-- Prompts and their immutable, numbered versions. At most one active version per feature
-- (feature_id is copied onto the version for that index).
CREATE TABLE IF NOT EXISTS ai_prompts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    feature_id  TEXT REFERENCES ai_features(id) ON DELETE SET NULL,
    tags        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ai_prompt_versions (
    id         TEXT PRIMARY KEY,
    prompt_id  TEXT NOT NULL REFERENCES ai_prompts(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    content    TEXT NOT NULL,
    variables  TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('draft', 'review', 'approved', 'archived')),
    is_active  INTEGER NOT NULL,
    feature_id TEXT,
    created_by TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (prompt_id, version)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_active_prompt_version
    ON ai_prompt_versions (feature_id) WHERE is_active = 1;

-- Spending budgets: amount in micro-dollars per period, in the budget's time zone.
CREATE TABLE IF NOT EXISTS ai_spending_budgets (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    scope         TEXT NOT NULL CHECK (scope IN ('global', 'feature', 'provider', 'model', 'environment')),
    scope_value   TEXT,
    period_type   TEXT NOT NULL CHECK (period_type IN ('daily', 'weekly', 'monthly', 'quarterly')),
    time_zone     TEXT NOT NULL,
    amount_micros INTEGER NOT NULL CHECK (amount_micros > 0),
    thresholds    TEXT NOT NULL,
    is_active     INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- A/B experiments; variants (name, traffic_percent, config) as JSON.
CREATE TABLE IF NOT EXISTS ai_experiments (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    description     TEXT,
    feature_id      TEXT NOT NULL REFERENCES ai_features(id) ON DELETE CASCADE,
    experiment_type TEXT NOT NULL CHECK (experiment_type IN ('model_comparison', 'prompt_testing', 'parameter_tuning')),
    variants        TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('draft', 'running', 'completed', 'cancelled')),
    start_date      TEXT,
    end_date        TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

-- Test cases of prompts: the prompt's variables (JSON object) and a check on the output
-- (expected: JSON text, a string or a JSON Schema object; absent for the none check).
CREATE TABLE IF NOT EXISTS ai_test_cases (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    description TEXT,
    prompt_id   TEXT NOT NULL REFERENCES ai_prompts(id) ON DELETE CASCADE,
    variables   TEXT NOT NULL,
    check_kind  TEXT NOT NULL CHECK (check_kind IN ('exact', 'contains', 'regex', 'json_schema', 'none')),
    expected    TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);

-- Every configuration change: who, what, before/after (JSON), when.
CREATE TABLE IF NOT EXISTS audit_log (
    id           TEXT PRIMARY KEY,
    at           TEXT NOT NULL,
    actor        TEXT NOT NULL,
    actor_key_id TEXT,
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    before       TEXT,
    after        TEXT
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);

-- Requests to price a model's past events again (POST /models/{id}/reprice): immutable;
-- `prices` is the model's price table when the request was made (JSON).
CREATE TABLE IF NOT EXISTS model_reprices (
    id           TEXT PRIMARY KEY,
    provider     TEXT NOT NULL,
    model        TEXT NOT NULL,
    from_at      TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    requested_by TEXT,
    prices       TEXT NOT NULL
);

-- Where alerts are told: webhooks (optionally signed) and Slack incoming webhooks.
CREATE TABLE IF NOT EXISTS notification_channels (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    channel_type TEXT NOT NULL CHECK (channel_type IN ('webhook', 'slack')),
    url          TEXT NOT NULL,
    secret_env   TEXT,
    created_at   TEXT NOT NULL
);

-- Alert rules: a metric of a scope (JSON) compared with a threshold over a window; the
-- channels they notify as a JSON array of channel ids.
CREATE TABLE IF NOT EXISTS alert_rules (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    scope        TEXT NOT NULL,
    comparator   TEXT NOT NULL CHECK (comparator IN ('gt', 'lt')),
    threshold    REAL NOT NULL,
    window_name  TEXT NOT NULL,
    min_requests INTEGER NOT NULL,
    for_seconds  INTEGER NOT NULL,
    severity     TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    channels     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- Alerts raised by rules and budgets; at most one unresolved alert per key.
CREATE TABLE IF NOT EXISTS alerts (
    id              TEXT PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('rule', 'budget')),
    rule_id         TEXT,
    budget_id       TEXT,
    alert_key       TEXT NOT NULL,
    name            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity        TEXT NOT NULL,
    labels          TEXT NOT NULL,
    value           REAL NOT NULL,
    threshold       REAL NOT NULL,
    summary         TEXT NOT NULL,
    started_at      TEXT NOT NULL,
    firing_at       TEXT,
    resolved_at     TEXT,
    acknowledged_by TEXT,
    acknowledged_at TEXT,
    updated_at      TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_alert_per_key ON alerts (alert_key) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_update ON alerts (updated_at);

-- Every transition of every alert: the state entered, the value then, when.
CREATE TABLE IF NOT EXISTS alert_transitions (
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    state    TEXT NOT NULL,
    value    REAL NOT NULL,
    at       TEXT NOT NULL,
    PRIMARY KEY (alert_id, state)
);

-- Transitions on their way to channels (the outbox): every attempt kept as JSON.
CREATE TABLE IF NOT EXISTS alert_deliveries (
    id              TEXT PRIMARY KEY,
    alert_id        TEXT NOT NULL REFERENCES alerts(id),
    channel_id      TEXT NOT NULL,
    transition      TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        TEXT NOT NULL,
    next_attempt_at TEXT,
    created_at      TEXT NOT NULL,
    UNIQUE (dedup_key, channel_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON alert_deliveries (status, next_attempt_at);

-- Console sessions: the SHA-256 of the cookie's token, never the token (domain/src/sessions.rs).
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL REFERENCES api_keys(id),
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_key ON console_sessions (key_id);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON console_sessions (expires_at);

-- Test runs: each run one JSON document (its plan and the calls' outcomes,
-- domain/src/config/test_runs.rs) and its summary (what listings read), replaced as calls
-- complete.
CREATE TABLE IF NOT EXISTS ai_test_runs (
    id         TEXT PRIMARY KEY,
    prompt_id  TEXT,
    created_at TEXT NOT NULL,
    run        TEXT NOT NULL,
    summary    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS test_runs_by_time ON ai_test_runs (created_at);
