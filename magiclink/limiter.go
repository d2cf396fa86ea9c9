package magiclink

import (
	"context"
	"time"

	"github.com/apikit/apikit/internal/memlimit"
)

// Limiter decides whether an action identified by key may happen now. It
// must be safe for concurrent use. An error is treated as a refusal (fail
// closed) and logged. Applications back it with package ratelimit to share
// limits between instances; [NewMemoryLimiter] is the default.
type Limiter interface {
	Allow(ctx context.Context, key string) (bool, error)
}

// LimiterFunc adapts a function to a [Limiter].
type LimiterFunc func(ctx context.Context, key string) (bool, error)

// Allow calls f.
func (f LimiterFunc) Allow(ctx context.Context, key string) (bool, error) { return f(ctx, key) }

// MemoryLimiter is an in-process [Limiter]: each key may act n times per
// period, refilled continuously (a token bucket of n). It is safe for
// concurrent use; limits are per process, so use a shared limiter when
// several instances serve one site.
//
// It remembers at most 100,000 keys. A key whose bucket has refilled
// carries no information and is forgotten when room is needed; a key that
// has spent part of its budget is never forgotten early, so that nobody
// can reset an address's or a client's limit by filling the limiter with
// new keys. When it holds 100,000 keys none of which has refilled, a new
// key is refused (fail closed) and counted ([MemoryLimiter.Overflowed]).
type MemoryLimiter struct{ l *memlimit.Limiter }

const memoryLimiterMaxKeys = 100_000

// NewMemoryLimiter returns a [MemoryLimiter] allowing n actions per period
// per key. now is the clock (nil for time.Now).
func NewMemoryLimiter(n int, per time.Duration, now func() time.Time) *MemoryLimiter {
	return &MemoryLimiter{memlimit.New("magiclink", n, per, now, memoryLimiterMaxKeys, memlimit.Refuse)}
}

// Allow implements [Limiter]; it never fails.
func (m *MemoryLimiter) Allow(_ context.Context, key string) (bool, error) {
	return m.l.Allow(key), nil
}

// Overflowed returns how many times a new key was refused because the
// limiter was full of keys that had not refilled.
func (m *MemoryLimiter) Overflowed() uint64 { return m.l.Overflowed() }
