-- Notification channels, alert rules, the alerts they raise, every transition and the
-- deliveries of transitions to channels (the outbox). Budgets name channels too.
ALTER TABLE ai_spending_budgets ADD COLUMN IF NOT EXISTS channels JSONB NOT NULL DEFAULT '[]';

CREATE TABLE IF NOT EXISTS notification_channels (
    id           UUID PRIMARY KEY,
    seq          BIGSERIAL NOT NULL,
    name         TEXT NOT NULL,
    channel_type TEXT NOT NULL CHECK (channel_type IN ('webhook', 'slack')),
    url          TEXT NOT NULL,
    secret_env   TEXT,
    created_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS alert_rules (
    id           UUID PRIMARY KEY,
    seq          BIGSERIAL NOT NULL,
    name         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    scope        JSONB NOT NULL,
    comparator   TEXT NOT NULL CHECK (comparator IN ('gt', 'lt')),
    threshold    DOUBLE PRECISION NOT NULL,
    window_name  TEXT NOT NULL,
    min_requests BIGINT NOT NULL,
    for_seconds  BIGINT NOT NULL,
    severity     TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    channels     JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE TABLE IF NOT EXISTS alerts (
    id              UUID PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('rule', 'budget')),
    rule_id         UUID,
    budget_id       UUID,
    alert_key       TEXT NOT NULL,
    name            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    severity        TEXT NOT NULL,
    labels          JSONB NOT NULL,
    value           DOUBLE PRECISION NOT NULL,
    threshold       DOUBLE PRECISION NOT NULL,
    summary         TEXT NOT NULL,
    started_at      TIMESTAMPTZ NOT NULL,
    firing_at       TIMESTAMPTZ,
    resolved_at     TIMESTAMPTZ,
    acknowledged_by TEXT,
    acknowledged_at TIMESTAMPTZ,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS one_open_alert_per_key ON alerts (alert_key) WHERE state <> 'resolved';
CREATE INDEX IF NOT EXISTS alerts_by_update ON alerts (updated_at);

CREATE TABLE IF NOT EXISTS alert_transitions (
    alert_id UUID NOT NULL REFERENCES alerts(id),
    state    TEXT NOT NULL,
    value    DOUBLE PRECISION NOT NULL,
    at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (alert_id, state)
);

CREATE TABLE IF NOT EXISTS alert_deliveries (
    id              UUID PRIMARY KEY,
    seq             BIGSERIAL NOT NULL,
    alert_id        UUID NOT NULL REFERENCES alerts(id),
    channel_id      UUID NOT NULL,
    transition      TEXT NOT NULL,
    dedup_key       TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        JSONB NOT NULL,
    next_attempt_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (dedup_key, channel_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON alert_deliveries (status, next_attempt_at);
