package billing

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
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
type MemoryLimiter struct {
	n   int
	per time.Duration
	now func() time.Time

	mu       sync.Mutex
	keys     map[string]*rate.Limiter
	overflow *rate.Limiter
	swept    time.Time
}

// NewMemoryLimiter returns a limiter of n actions per period for each key
// (a burst of n, refilled evenly). now is the clock (nil: time.Now).
func NewMemoryLimiter(n int, per time.Duration, now func() time.Time) *MemoryLimiter {
	if n <= 0 || per <= 0 {
		panic("billing: NewMemoryLimiter needs a positive count and period")
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryLimiter{n: n, per: per, now: now, keys: make(map[string]*rate.Limiter),
		overflow: rate.NewLimiter(rate.Every(per/time.Duration(n)), n)}
}

// Allow implements [Limiter]; it never fails.
func (m *MemoryLimiter) Allow(_ context.Context, key string) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.keys[key]
	if l == nil {
		// Sweep at most once a second, so that a flood of new keys
		// against a full map costs no more than a map lookup each.
		if len(m.keys) >= MemoryLimiterMaxKeys && now.Sub(m.swept) >= time.Second {
			m.swept = now
			for k, b := range m.keys {
				if b.TokensAt(now) >= float64(m.n) {
					delete(m.keys, k)
				}
			}
		}
		if len(m.keys) >= MemoryLimiterMaxKeys {
			return m.overflow.AllowN(now, 1), nil
		}
		l = rate.NewLimiter(rate.Every(m.per/time.Duration(m.n)), m.n)
		m.keys[key] = l
	}
	return l.AllowN(now, 1), nil
}
