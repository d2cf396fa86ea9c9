-- Plans and quotas (package plan). Quota usage per budget and period,
-- written in batches by plan.Flusher with additive upserts, so that every
-- instance's usage adds up. identity is plan.Identity.String ("user:42",
-- "key:4tQ2x9LmZpB7"); period is plan.Period.String ("day", "month",
-- "period"); period_start is the period's start in Unix seconds (UTC).
-- There is no foreign key: an identity may be a key id or a user id.
CREATE TABLE plan_usage (
    identity     TEXT NOT NULL,
    period       TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    PRIMARY KEY (identity, period, period_start)
) WITHOUT ROWID;
CREATE INDEX plan_usage_period_start ON plan_usage (period_start);

-- Per-identity overrides of a plan's limits or quota (plan.Override).
-- limits is a JSON array of limits in ratelimit.ParseLimit syntax, NULL to
-- keep the plan's; quota is in plan.ParseQuota syntax, '' to remove the
-- plan's quota, NULL to keep it.
CREATE TABLE plan_overrides (
    identity   TEXT PRIMARY KEY,
    limits     TEXT,
    quota      TEXT,
    updated_at TIMESTAMP NOT NULL
) WITHOUT ROWID;
