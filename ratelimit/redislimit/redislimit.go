// Package redislimit is a [ratelimit.Limiter] that keeps its state in
// Redis, so that every instance of a server fleet enforces one combined
// limit per key.
//
// It runs the generic cell rate algorithm (GCRA) as a Lua script in Redis
// (github.com/go-redis/redis_rate/v10): one round trip per decision, atomic
// in Redis, with Redis's clock, and with one small string per key that
// expires when the key's bucket has refilled. Its decisions agree with
// [ratelimit.Memory]'s for the same sequence of events.
//
// [Local] is the same budget decided locally: each instance admits from
// its own view of a key's bucket and syncs with Redis in the background,
// one pipelined round trip per sync interval for all its keys, with a
// bounded overshoot documented there. Both kinds share the keys' state,
// so a fleet can mix them.
//
// Both work with a Redis Cluster (a *redis.ClusterClient, or any
// [redis.UniversalClient]): every script reads and writes one key.
//
// It is a package of its own so that programs that import package
// ratelimit for its in-memory limiter do not compile or link the Redis
// client.
package redislimit

import (
	"context"
	"log/slog"
	"math"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/internal/redisdeadline"
	"github.com/apikit/apikit/ratelimit"
	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Defaults of [Options].
const (
	// DefaultPrefix starts every key the Limiter writes (after the "rate:"
	// that redis_rate adds).
	DefaultPrefix = "apikit:"
	// DefaultTimeout bounds each decision.
	DefaultTimeout = 100 * time.Millisecond
)

// Options configures [New]. The zero value gives the defaults: keys under
// [DefaultPrefix], decisions bounded by [DefaultTimeout], failing open, and
// silent.
type Options struct {
	// Prefix starts every Redis key the limiter writes, after redis_rate's
	// own "rate:", so that several applications can share one Redis:
	// the state of key k is at "rate:" + Prefix + k. "" means
	// [DefaultPrefix].
	Prefix string
	// Timeout bounds each decision, including waiting for a connection;
	// 0 means [DefaultTimeout]. A decision that takes longer fails (see
	// FailClosed). Give the client ContextTimeoutEnabled: it then gives up
	// at the decision's deadline by itself, and the decision runs on the
	// caller's goroutine. A client without it (go-redis then waits for its
	// ReadTimeout, 3 s by default) costs a goroutine per decision, which
	// waits for it in the background; the bound holds either way.
	Timeout time.Duration
	// FailClosed chooses what a decision is when Redis fails or times out.
	// false (fail open, the default): the event is allowed, as if the key's
	// bucket were full, and the failure is counted in [ratelimit.Stats] and
	// logged. true (fail closed): AllowN returns an error wrapping
	// [ratelimit.ErrUnavailable], which the middleware answers with 503.
	//
	// Failing open is the default because a rate limiter protects the API
	// from overload by a few clients, while refusing every request whenever
	// Redis blips is a full outage for all of them; authentication still
	// applies either way. Choose FailClosed when the limit guards something
	// costly per request (paid upstream calls, login attempts), and wrap
	// the Limiter in [ratelimit.Fallback] to keep such a limit enforced in
	// memory while Redis is down, rather than refusing everyone.
	FailClosed bool
	// Logger receives a warning when Redis fails, at most one a second with
	// the number of failures so far; nil means no logging.
	Logger *slog.Logger
	// Trace, if set, is called as each Redis round trip starts, with its
	// name, and the function it returns when the round trip ends, with its
	// error: the Redis error (or context.DeadlineExceeded at the timeout)
	// whatever FailClosed then makes of it, so that a trace shows the
	// decisions that failed open. Names: "redislimit.allow" (an exact
	// decision, of [Limiter] or [Local]) and "redislimit.sync" (a [Local]
	// sync of every key used since the previous one). It lets a tracer,
	// such as OpenTelemetry's, time the round trips without this package
	// depending on one; the context it returns is the one the command is
	// sent with. The name carries no key. nil costs nothing.
	Trace func(ctx context.Context, name string) (context.Context, func(error))
}

// Names of the round trips given to [Options].Trace.
const (
	TraceAllow = "redislimit.allow"
	TraceSync  = "redislimit.sync"
)

// Limiter is a [ratelimit.Limiter] over Redis. Two Limiters (in one process
// or many) with the same Redis and Prefix share each key's quota. A
// Limiter must be created with [New]; it is safe for concurrent use.
type Limiter struct {
	rl     *redis_rate.Limiter
	prefix string
	direct bool // the client honours context deadlines
	trace  func(ctx context.Context, name string) (context.Context, func(error))

	allowed, limited atomic.Uint64
	failure
}

var _ ratelimit.Limiter = (*Limiter)(nil)

// New returns a Limiter that keeps its state in the Redis that client
// reaches: a *redis.Client, *redis.ClusterClient or *redis.Ring. Every
// Lua-capable Redis (2.6 or newer, or a compatible server) will do. New
// panics, with a message starting "ratelimit: ", if client is nil or
// opts.Timeout is negative.
func New(client redis.UniversalClient, opts Options) *Limiter {
	if client == nil {
		panic("ratelimit: redislimit.New needs a Redis client")
	}
	if opts.Timeout < 0 {
		panic("ratelimit: redislimit.Options.Timeout must not be negative")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	l := &Limiter{
		rl:     redis_rate.NewLimiter(client),
		prefix: opts.Prefix,
		direct: redisdeadline.Honoured(client),
		trace:  opts.Trace,
	}
	l.timeout, l.failClosed, l.log = opts.Timeout, opts.FailClosed, opts.Logger
	return l
}

// Allow is AllowN(ctx, key, limit, 1).
func (l *Limiter) Allow(ctx context.Context, key string, limit ratelimit.Limit) (ratelimit.Decision, error) {
	return l.AllowN(ctx, key, limit, 1)
}

// AllowN implements [ratelimit.Limiter] with one Redis round trip. It
// returns within Options.Timeout, or sooner if ctx ends; see
// Options.FailClosed for what it returns when Redis does not answer in
// time. Times come from Redis's clock, so the servers' clocks do not
// matter.
func (l *Limiter) AllowN(ctx context.Context, key string, limit ratelimit.Limit, n int) (ratelimit.Decision, error) {
	if err := ratelimit.CheckCost(limit, n); err != nil {
		l.errors.Add(1)
		return ratelimit.Decision{}, err
	}
	res, err := l.run(ctx, key, limit, n)
	if err != nil {
		return l.fail(ctx, key, limit, n, err)
	}
	return l.decide(limit, n, res), nil
}

// decide recovers the units the key had from the time its bucket needs to
// be full again, and decides with the arithmetic Memory uses, so that both
// limiters round alike. Redis's verdict stands, as Redis acted on it.
func (l *Limiter) decide(limit ratelimit.Limit, n int, res *redis_rate.Result) ratelimit.Decision {
	interval := float64(limit.Period) / float64(limit.Count) // nanoseconds a unit
	available := float64(limit.BurstSize()) - float64(res.ResetAfter)/interval
	if res.Allowed > 0 {
		available += float64(n)
	}
	// The script computes in float64 seconds since 2017 from Redis's
	// microsecond clock, so its times carry about a tenth of a microsecond
	// of noise: snap to a whole unit what is within 2µs of one.
	if whole := math.Round(available); math.Abs(available-whole)*interval < float64(2*time.Microsecond) {
		available = whole
	}
	if res.Allowed > 0 {
		l.allowed.Add(1)
		available = max(available, float64(n))
	} else {
		l.limited.Add(1)
		available = min(available, math.Nextafter(float64(n), 0))
	}
	return ratelimit.Decide(limit, available, n)
}

// run runs the GCRA script within the timeout, inside Options.Trace if
// there is one.
func (l *Limiter) run(ctx context.Context, key string, limit ratelimit.Limit, n int) (*redis_rate.Result, error) {
	if l.trace == nil {
		return l.runTimeout(ctx, key, limit, n)
	}
	ctx, end := l.trace(ctx, TraceAllow)
	res, err := l.runTimeout(ctx, key, limit, n)
	end(err)
	return res, err
}

// runTimeout runs the GCRA script within the timeout. A client that
// honours context deadlines (ContextTimeoutEnabled) is trusted to return
// at the deadline; for another, the command runs on a goroutine of its
// own, so that the decision still ends at the timeout.
func (l *Limiter) runTimeout(ctx context.Context, key string, limit ratelimit.Limit, n int) (*redis_rate.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	rl := redis_rate.Limit{Rate: limit.Count, Burst: limit.BurstSize(), Period: limit.Period}
	if l.direct {
		return l.rl.AllowN(ctx, l.prefix+key, rl, n)
	}
	return redisdeadline.Wait(ctx, func() (*redis_rate.Result, error) {
		return l.rl.AllowN(ctx, l.prefix+key, rl, n)
	})
}

// Stats returns a snapshot of l's counters. Keys, Expired and Overflowed are
// 0: the state is in Redis, where each key expires once its bucket has
// refilled.
func (l *Limiter) Stats() ratelimit.Stats {
	return ratelimit.Stats{
		Allowed:    l.allowed.Load(),
		Limited:    l.limited.Load(),
		Errors:     l.errors.Load(),
		FailedOpen: l.failedOpen.Load(),
	}
}
