-- Usage metering (package usage) and usage-based billing (package
-- billing/meter). Counts per user, API key and hour, written in batches by
-- usage.Meter with additive upserts, so that every instance's counts add
-- up; hours older than the retention are rolled up into days. user_id and
-- key_id are the application's ids as text (key_id '' for requests without
-- a key); hour and day are Unix seconds (UTC) of the hour's or day's start.
-- There is no foreign key: usage outlives keys, and a user's rows are
-- deleted with the user by store.DeleteUser.
CREATE TABLE usage_hourly (
    user_id      TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    hour         BIGINT NOT NULL,
    ok           BIGINT NOT NULL,
    client_error BIGINT NOT NULL,
    rate_limited BIGINT NOT NULL,
    server_error BIGINT NOT NULL,
    cost         BIGINT NOT NULL,
    PRIMARY KEY (user_id, hour, key_id)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

CREATE TABLE usage_daily (
    user_id      TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    day          BIGINT NOT NULL,
    ok           BIGINT NOT NULL,
    client_error BIGINT NOT NULL,
    rate_limited BIGINT NOT NULL,
    server_error BIGINT NOT NULL,
    cost         BIGINT NOT NULL,
    PRIMARY KEY (user_id, day, key_id)
);
CREATE INDEX usage_daily_day ON usage_daily (day);

-- The ids of the batches applied to usage_hourly: a batch retried after an
-- ambiguous failure (committed, but the answer lost) is applied once.
-- applied_at is when the batch was made, in Unix seconds.
CREATE TABLE usage_batches (
    batch_id   TEXT PRIMARY KEY,
    applied_at BIGINT NOT NULL
);
CREATE INDEX usage_batches_applied_at ON usage_batches (applied_at);

-- Quota alerts claimed (sent, or being sent): one per user, quota period
-- (its start in Unix seconds) and threshold (percent).
CREATE TABLE usage_alerts (
    user_id      TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    threshold    INTEGER NOT NULL,
    PRIMARY KEY (user_id, period_start, threshold)
);

-- The outbox of Stripe meter events (package billing/meter). identifier
-- is derived from (customer_id, event_name, slice, seq), which is unique
-- too, so that no instance can enqueue a slice's usage twice. slice is
-- the hour's start, event_time the time sent to Stripe, both Unix
-- seconds, as are next_attempt, lease_until (0: not leased), created_at
-- and sent_at (0: not sent). state is pending, sent or rejected.
CREATE TABLE meter_events (
    identifier   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    customer_id  TEXT NOT NULL,
    event_name   TEXT NOT NULL,
    slice        BIGINT NOT NULL,
    seq          INTEGER NOT NULL,
    value        BIGINT NOT NULL,
    event_time   BIGINT NOT NULL,
    state        TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    lease_until  BIGINT NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    sent_at      BIGINT NOT NULL DEFAULT 0,
    UNIQUE (customer_id, event_name, slice, seq)
);
CREATE INDEX meter_events_due ON meter_events (state, next_attempt);
CREATE INDEX meter_events_slice ON meter_events (slice);
