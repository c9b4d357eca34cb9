-- Console sessions: the SHA-256 of the cookie's token, never the token (domain/src/sessions.rs).
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY,
    key_id     UUID NOT NULL REFERENCES api_keys(id),
    csrf       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_key ON console_sessions (key_id);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON console_sessions (expires_at);
