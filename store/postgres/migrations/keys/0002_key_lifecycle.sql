-- Key attributes (apikey.AttributeStore): metadata is a compact JSON object
-- as given (NULL: none); tags and allowed_cidrs are space-separated, in the
-- order given ('' : none).
ALTER TABLE api_keys
    ADD COLUMN metadata TEXT,
    ADD COLUMN tags TEXT NOT NULL DEFAULT '',
    ADD COLUMN allowed_cidrs TEXT NOT NULL DEFAULT '';

-- The windows apikey.ExpiryNotifier reads (store.KeysExpiring,
-- store.KeysGraceEnding): live keys by expiry, rolled keys by the end of
-- the previous secret's grace period.
CREATE INDEX api_keys_expiring ON api_keys (expires_at, id)
    WHERE revoked_at IS NULL AND expires_at IS NOT NULL;
CREATE INDEX api_keys_grace_ending ON api_keys (previous_expires_at, id)
    WHERE revoked_at IS NULL AND previous_secret_hash IS NOT NULL;

-- Notices claimed (sent, or being sent) about a key: one per kind and due
-- time, so that two instances never send one twice. due and claimed_at are
-- Unix microseconds, as in the SQLite schema.
CREATE TABLE api_key_notices (
    key_id     TEXT NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    due        BIGINT NOT NULL,
    claimed_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, kind, due)
);
CREATE INDEX api_key_notices_claimed_at ON api_key_notices (claimed_at);
