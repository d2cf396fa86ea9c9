package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"
)

// ErrInvalidCost is returned (wrapped) by AllowN when n is less than 1 or
// more than the limit's burst: such a request could never be allowed, so
// no decision, and no Retry-After, would be true.
var ErrInvalidCost = errors.New("ratelimit: cost must be between 1 and the limit's burst")

// ErrUnavailable is wrapped by the errors of a limiter whose backend cannot
// decide, such as a Redis limiter that fails closed while Redis is down. The
// [Middleware] answers such errors with 503 Service Unavailable.
var ErrUnavailable = errors.New("ratelimit: limiter unavailable")

// Limiter decides whether an event for a key may happen now under a limit.
//
// Implementations use the generic cell rate algorithm (GCRA), which is a
// token bucket: a key starts with [Limit.BurstSize] events available, each
// event uses some, and they come back at Count per Period. Every
// implementation in this module gives the same [Decision] for the same
// sequence of calls at the same times under one limit, so they can replace
// one another.
//
// The limit is passed on every call, not fixed per key: a key's state
// carries over when its limit changes, for example when a customer changes
// plan. How it carries over differs: [Memory] keeps the units available,
// Redis the time until the bucket is full (after 3 of "5/h", a change to
// "50/h" leaves 2 units in Memory and 20 in Redis); both agree for an empty
// or a full bucket.
//
// Implementations are safe for concurrent use.
type Limiter interface {
	// Allow is AllowN(ctx, key, limit, 1).
	Allow(ctx context.Context, key string, limit Limit) (Decision, error)
	// AllowN reports whether an event of cost n (a weighted request) may
	// happen now for key under limit, and if so uses n of the key's quota;
	// a refused event uses none. It returns an error wrapping
	// ErrInvalidLimit or ErrInvalidCost for arguments that can never be
	// allowed, and one wrapping ErrUnavailable (or another error) when the
	// backend cannot decide.
	AllowN(ctx context.Context, key string, limit Limit, n int) (Decision, error)
}

// Decision is a limiter's answer for one event, a plain value that is safe
// to copy and share. The zero Decision refuses, with nothing remaining.
type Decision struct {
	// Allowed reports whether the event may happen; if so, its cost has
	// been taken from the key's quota.
	Allowed bool
	// Limit is the limit the decision was made under.
	Limit Limit
	// Remaining is the number of events of cost 1 that would be allowed
	// right after this one: whole units left in the bucket, never negative.
	Remaining int
	// ResetAfter is the time until the key's bucket is full again (Remaining
	// back to the burst), if nothing else happens.
	ResetAfter time.Duration
	// RetryAfter is, for a refused event, the time until the same event
	// would be allowed; 0 for an allowed one.
	RetryAfter time.Duration
}

// RetryAfterSeconds returns RetryAfter in whole seconds, rounded up, and at
// least 1 for a refused event: the value of a Retry-After header.
func (d Decision) RetryAfterSeconds() int64 {
	if d.Allowed {
		return 0
	}
	return max(1, ceilSeconds(d.RetryAfter))
}

// ceilSeconds rounds d up to whole seconds.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// Stats is a snapshot of a limiter's counters since it was created, a
// plain value. The zero Stats is a limiter that has decided nothing.
type Stats struct {
	// Allowed and Limited count the decisions the limiter made.
	Allowed, Limited uint64
	// Errors counts calls that returned an error or failed open: invalid
	// arguments, and backend failures.
	Errors uint64
	// FailedOpen counts the backend failures that were answered with an
	// allowing decision (a subset of Errors).
	FailedOpen uint64
	// Keys is the number of keys whose state the limiter holds in memory
	// (0 for limiters that keep state elsewhere).
	Keys int
	// Expired counts keys forgotten because their bucket had refilled, which
	// loses nothing: a full bucket is the same as no state.
	Expired uint64
	// Overflowed counts new keys refused because the limiter held as many
	// keys as it may and none of them had refilled (see
	// [MemoryOptions].MaxKeys); they are counted in Limited too. A limiter
	// never forgets a key before its bucket has refilled.
	Overflowed uint64
	// Fallbacks counts decisions a [Fallback] limiter made with its
	// fallback because its primary failed (counted in Allowed or Limited
	// too).
	Fallbacks uint64
}

// Decide returns the [Decision] for an event of cost n when the key has
// available units of quota (possibly fractional; clamped to 0..burst) under
// limit: the arithmetic every [Limiter] in this module shares, so that they
// agree to the nanosecond. Remaining is rounded down and durations up, so
// that waiting RetryAfter is always enough. It is for implementations of
// Limiter; it does not check its arguments (see [CheckCost]).
func Decide(limit Limit, available float64, n int) Decision {
	burst := float64(limit.BurstSize())
	tokens := min(max(available, 0), burst)
	d := Decision{Limit: limit}
	if float64(n) <= tokens {
		d.Allowed = true
		tokens -= float64(n)
	} else {
		d.RetryAfter = limit.durationOf(float64(n) - tokens)
	}
	// The epsilon absorbs float rounding just below a whole unit.
	d.Remaining = int(math.Floor(tokens + 1e-9))
	d.ResetAfter = limit.durationOf(burst - tokens)
	return d
}

// CheckCost returns the error a [Limiter] must return from AllowN, before
// doing any work, for a limit or cost that can never be allowed: one
// wrapping [ErrInvalidLimit] or [ErrInvalidCost]; otherwise nil.
func CheckCost(limit Limit, n int) error {
	if !limit.valid() {
		return limit.Validate()
	}
	if n < 1 || n > limit.BurstSize() {
		return fmt.Errorf("%w: cost %d, burst %d", ErrInvalidCost, n, limit.BurstSize())
	}
	return nil
}
