// Package usage counts what every API key uses, durably, and shows it:
// requests per key, user and hour by outcome (2xx, 4xx, 429, 5xx) and
// their cost, for charts (package usage/chart), for GET /v1/usage, for
// quota alerts, and for usage-based billing (package billing/meter reads
// the same counts). It imports no other apikit feature: the application
// says who made a request and what it cost through small functions.
//
// # Counting
//
// A [Meter] counts in memory: [Meter.Record] takes a striped lock and
// allocates nothing for a counter it holds (about 50 ns). Its
// [Meter.Middleware] records every authenticated request after its
// handler ran, with the status the handler wrote and the cost the
// application reports. Counts are written to a [Store] in batches, with
// additive upserts so that several instances add up, every
// FlushInterval (10 s by default) and at [Meter.Close]. Each batch has an
// id the store records in the same transaction, so a batch retried after
// an ambiguous failure counts once. What a crash loses is what was not
// written: at most one interval. Memory is bounded by MaxCounters.
//
// # Reading
//
// [NewHandler] serves GET /v1/usage: the caller's own user's usage over a
// range, by hour or day, per key, with totals, the plan and the quota.
// [ParseQuery] parses its parameters (and an operator tool's).
//
// # Keeping
//
// [Retention] rolls hourly counts older than HourlyFor (30 days) up into
// daily counts and deletes days older than DailyFor (400 days), through
// the store's [Maintainer] methods; run it periodically.
//
// # Alerting
//
// [Alerts] sends a message when a user crosses 80 % and 100 % of their
// quota (the thresholds and the wording are options), once per user,
// period and threshold across a fleet ([AlertStore] claims), from a
// background goroutine: requests only report what they see, with
// [Alerts.Observe].
//
// Package store implements Store, Maintainer and AlertStore on SQLite and
// PostgreSQL (migrate store.Usage); package usage/usagetest is their
// conformance suite.
package usage
