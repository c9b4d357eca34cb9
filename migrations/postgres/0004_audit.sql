-- Every configuration change: who, what, before/after, when.
CREATE TABLE IF NOT EXISTS audit_log (
    id           UUID PRIMARY KEY,
    seq          BIGSERIAL NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    actor        TEXT NOT NULL,
    actor_key_id UUID,
    action       TEXT NOT NULL,
    resource     TEXT NOT NULL,
    before       JSONB,
    after        JSONB
);
CREATE INDEX IF NOT EXISTS audit_log_at ON audit_log (at);
