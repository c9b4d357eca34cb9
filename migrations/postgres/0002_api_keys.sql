-- API keys: the SHA-256 of the secret, never the secret (core/src/access.rs).
CREATE TABLE IF NOT EXISTS api_keys (
    id         UUID PRIMARY KEY,
    seq        BIGSERIAL NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('platform_admin', 'viewer', 'finance', 'ingest')),
    key_hash   TEXT NOT NULL UNIQUE,
    prefix     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ
);
