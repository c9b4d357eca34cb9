-- Requests to price a model's past events again (POST /models/{id}/reprice): immutable;
-- `prices` is the model's price table when the request was made. Names, not ids: a request
-- stays meaningful for replays whatever happens to the model's row.
CREATE TABLE IF NOT EXISTS model_reprices (
    id           UUID PRIMARY KEY,
    seq          BIGSERIAL NOT NULL,
    provider     TEXT NOT NULL,
    model        TEXT NOT NULL,
    from_at      TIMESTAMPTZ NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL,
    requested_by TEXT,
    prices       JSONB NOT NULL,
    CHECK (from_at < requested_at)
);
