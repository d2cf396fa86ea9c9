-- API keys (package apikey). id is the public key id from the token; only
-- hashes of secrets are stored.
CREATE TABLE api_keys (
    id                   TEXT PRIMARY KEY,
    user_id              BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                 TEXT NOT NULL DEFAULT '',
    prefix               TEXT NOT NULL,
    secret_hash          BYTEA NOT NULL,
    previous_secret_hash BYTEA,
    previous_expires_at  TIMESTAMPTZ,
    scopes               TEXT NOT NULL DEFAULT '',
    is_active            BOOLEAN NOT NULL DEFAULT TRUE,
    created_at           TIMESTAMPTZ NOT NULL,
    updated_at           TIMESTAMPTZ NOT NULL,
    last_used_at         TIMESTAMPTZ,
    expires_at           TIMESTAMPTZ,
    revoked_at           TIMESTAMPTZ
);
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);
