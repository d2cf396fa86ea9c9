package usage

import (
	"context"
	"fmt"
	"time"
)

// Outcome is the class of a response's status code, as usage counts it.
type Outcome uint8

const (
	// OK is a response below 400: 2xx, and also 1xx and 3xx.
	OK Outcome = iota
	// ClientError is a 4xx response other than 429.
	ClientError
	// Limited is a 429 response: refused by a rate limit or a quota.
	Limited
	// ServerError is a 5xx response, or a handler that panicked.
	ServerError
)

// OutcomeOf classifies an HTTP status code.
func OutcomeOf(status int) Outcome {
	switch {
	case status == 429:
		return Limited
	case status >= 500:
		return ServerError
	case status >= 400:
		return ClientError
	}
	return OK
}

// String returns "ok", "client_error", "rate_limited" or "server_error",
// the names of the JSON fields of [Counts].
func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case ClientError:
		return "client_error"
	case Limited:
		return "rate_limited"
	case ServerError:
		return "server_error"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Counts are the requests of one key in one hour or day, by outcome, and
// the cost they spent. The zero Counts is no usage.
type Counts struct {
	OK          int64 `json:"ok"`
	ClientError int64 `json:"client_error"`
	Limited     int64 `json:"rate_limited"`
	ServerError int64 `json:"server_error"`
	// Cost is the sum of the requests' costs (see [MiddlewareOptions].Cost).
	Cost int64 `json:"cost"`
}

// Requests returns the number of requests, whatever their outcome.
func (c Counts) Requests() int64 { return c.OK + c.ClientError + c.Limited + c.ServerError }

// Add adds d to c.
func (c *Counts) Add(d Counts) {
	c.OK += d.OK
	c.ClientError += d.ClientError
	c.Limited += d.Limited
	c.ServerError += d.ServerError
	c.Cost += d.Cost
}

// IsZero reports whether c counts nothing.
func (c Counts) IsZero() bool { return c == Counts{} }

// add counts one request of outcome o that cost cost.
func (c *Counts) add(o Outcome, cost int64) {
	switch o {
	case OK:
		c.OK++
	case ClientError:
		c.ClientError++
	case Limited:
		c.Limited++
	default:
		c.ServerError++
	}
	c.Cost += cost
}

// Count is the usage of one API key of one user in one hour (as a
// [Meter] writes it) or one day (as [Store].Counts may read it).
type Count struct {
	UserID string
	KeyID  string
	// Start is the start of the hour or day, in UTC.
	Start time.Time
	Counts
}

// Batch is what one flush of a [Meter] writes: hourly counts and an id
// that makes writing it again harmless.
type Batch struct {
	// ID identifies the batch: random, unique, at most 64 bytes. A store
	// applies a batch id once; a retry of a batch whose first write was
	// committed but reported as failed is a no-op.
	ID string
	// At is when the batch was made; the store keeps its id until
	// [Maintainer].PruneCounts deletes the ids of batches made before a
	// time.
	At time.Time
	// Counts are hourly: each Start is a whole hour in UTC. One (UserID,
	// KeyID, Start) may appear several times; the store adds them up.
	Counts []Count
}

// Granularity is the width of the points of a usage series.
type Granularity uint8

const (
	// Hour makes one point per hour.
	Hour Granularity = iota + 1
	// Day makes one point per UTC day.
	Day
)

// String returns "hour" or "day", as in the query of GET /v1/usage.
func (g Granularity) String() string {
	switch g {
	case Hour:
		return "hour"
	case Day:
		return "day"
	}
	return fmt.Sprintf("Granularity(%d)", uint8(g))
}

// Duration returns the width of a point: an hour or 24 hours.
func (g Granularity) Duration() time.Duration {
	if g == Hour {
		return time.Hour
	}
	return 24 * time.Hour
}

// Truncate returns the start of the point that contains t, in UTC.
func (g Granularity) Truncate(t time.Time) time.Time {
	return t.UTC().Truncate(g.Duration())
}

// Query selects a user's usage for [Store].Counts.
type Query struct {
	// UserID is the user whose keys' usage is read. Required.
	UserID string
	// KeyID, if not empty, restricts the result to one key of the user's.
	// A key of another user's yields nothing, as a missing one does.
	KeyID string
	// From and To bound the range [From, To); both are whole units of
	// Granularity in UTC.
	From, To time.Time
	// Granularity is Hour or Day.
	Granularity Granularity
}

// Store keeps usage counts durably. The store packages implement it
// (package store, over SQLite or PostgreSQL, with tables usage_hourly,
// usage_daily and usage_batches); package usage/usagetest is its
// conformance suite. Implementations must be safe for concurrent use, and
// several processes may share one store: counts add up.
type Store interface {
	// AddCounts adds the batch's counts to the stored hourly totals of
	// their (UserID, KeyID, Start), creating the totals that do not
	// exist yet (additive upserts), all in one transaction together with
	// a record of batch.ID. A batch whose ID the store has recorded
	// already changes nothing and returns nil: that is what makes a
	// retry after an ambiguous failure (committed, but the connection
	// dropped before the answer) count once.
	AddCounts(ctx context.Context, batch Batch) error
	// Counts returns q.UserID's usage in [q.From, q.To) as one Count per
	// key and point of q.Granularity that has any usage, ordered by KeyID
	// then Start. Hours already rolled up into a day (see [Maintainer])
	// are read at Hour granularity as one point at the day's start, so
	// that totals stay right. No usage is an empty result and a nil
	// error.
	Counts(ctx context.Context, q Query) ([]Count, error)
}

// Maintainer is the housekeeping of a [Store]: package store implements
// it; [Retention].Apply calls it.
type Maintainer interface {
	// RollupCounts moves the hourly counts of hours before the given time
	// (a UTC midnight) into daily counts, adding them up, and returns how
	// many hourly rows it moved. Concurrent calls move each row once.
	RollupCounts(ctx context.Context, before time.Time) (int64, error)
	// PruneCounts deletes the daily counts of days before the given
	// time, and the records of batches written before batchesBefore (see
	// [Store].AddCounts), and returns how many rows it deleted.
	PruneCounts(ctx context.Context, before, batchesBefore time.Time) (int64, error)
}

// AlertStore records which quota alerts were sent, so that each is sent
// once per user, period and threshold however many instances observe it.
type AlertStore interface {
	// ClaimAlert records the alert (userID, periodStart, threshold) and
	// reports true if it was not recorded before: the caller then sends
	// it. Concurrent claims of one alert return true exactly once.
	ClaimAlert(ctx context.Context, userID string, periodStart time.Time, threshold int) (bool, error)
	// ReleaseAlert deletes the record, so that a claim whose sending
	// failed can be claimed again.
	ReleaseAlert(ctx context.Context, userID string, periodStart time.Time, threshold int) error
}
