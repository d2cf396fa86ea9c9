-- API keys (package apikey). id is the public key id from the token; only
-- hashes of secrets are stored.
CREATE TABLE api_keys (
    id                   TEXT PRIMARY KEY,
    user_id              INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name                 TEXT NOT NULL DEFAULT '',
    prefix               TEXT NOT NULL,
    secret_hash          BLOB NOT NULL,
    previous_secret_hash BLOB,
    previous_expires_at  TIMESTAMP,
    scopes               TEXT NOT NULL DEFAULT '',
    is_active            BOOLEAN NOT NULL DEFAULT TRUE,
    created_at           TIMESTAMP NOT NULL,
    updated_at           TIMESTAMP NOT NULL,
    last_used_at         TIMESTAMP,
    expires_at           TIMESTAMP,
    revoked_at           TIMESTAMP
) WITHOUT ROWID;
CREATE INDEX api_keys_user_id ON api_keys (user_id, created_at);
