package billing

import (
	"context"
	"time"

	"github.com/apikit/apikit/internal/memlimit"
)

// Limiter decides whether an action identified by key may happen now; it
// has the shape of magiclink's, so one implementation (say, over package
// ratelimit, to share limits between instances) serves both. It must be
// safe for concurrent use. An error is treated as a refusal (fail closed)
// and logged.
type Limiter interface {
	Allow(ctx context.Context, key string) (bool, error)
}

// LimiterFunc adapts a function to a [Limiter].
type LimiterFunc func(ctx context.Context, key string) (bool, error)

// Allow calls f.
func (f LimiterFunc) Allow(ctx context.Context, key string) (bool, error) { return f(ctx, key) }

// MemoryLimiterMaxKeys bounds the keys a [MemoryLimiter] tracks.
const MemoryLimiterMaxKeys = 50_000

// MemoryLimiter is an in-process [Limiter]: a token bucket of n actions per
// period for each key, at most [MemoryLimiterMaxKeys] keys. Filling it with
// new keys cannot reset the budget of a key it holds: when it is full it
// forgets only keys whose bucket has refilled (they are as good as new),
// and while it is still full every further new key shares one overflow
// bucket of n per period, so a flood of new keys limits itself.
type MemoryLimiter struct{ l *memlimit.Limiter }

// NewMemoryLimiter returns a limiter of n actions per period for each key
// (a burst of n, refilled evenly). now is the clock (nil: time.Now).
func NewMemoryLimiter(n int, per time.Duration, now func() time.Time) *MemoryLimiter {
	return &MemoryLimiter{memlimit.New("billing", n, per, now, MemoryLimiterMaxKeys, memlimit.Share)}
}

// Allow implements [Limiter]; it never fails.
func (m *MemoryLimiter) Allow(_ context.Context, key string) (bool, error) {
	return m.l.Allow(key), nil
}
