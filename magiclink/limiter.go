package magiclink

import (
	"context"
	"sync"
	"time"

	"golang.org/x/time/rate"
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
type MemoryLimiter struct {
	n          int
	per        time.Duration
	now        func() time.Time
	mu         sync.Mutex
	keys       map[string]*rate.Limiter
	max        int
	nextSweep  time.Time
	overflowed uint64
}

const memoryLimiterMaxKeys = 100_000

// NewMemoryLimiter returns a [MemoryLimiter] allowing n actions per period
// per key. now is the clock (nil for time.Now).
func NewMemoryLimiter(n int, per time.Duration, now func() time.Time) *MemoryLimiter {
	if n <= 0 || per <= 0 {
		panic("magiclink: NewMemoryLimiter needs a positive count and period")
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryLimiter{n: n, per: per, now: now, keys: make(map[string]*rate.Limiter), max: memoryLimiterMaxKeys}
}

// Allow implements [Limiter]; it never fails.
func (m *MemoryLimiter) Allow(_ context.Context, key string) (bool, error) {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.keys[key]
	if l == nil {
		if len(m.keys) >= m.max && !now.Before(m.nextSweep) {
			// At most once a second, so that a flood of new keys at a
			// full limiter costs one sweep a second, not one per key.
			m.sweep(now)
			m.nextSweep = now.Add(time.Second)
		}
		if len(m.keys) >= m.max {
			m.overflowed++
			return false, nil
		}
		l = rate.NewLimiter(rate.Every(m.per/time.Duration(m.n)), m.n)
		m.keys[key] = l
	}
	return l.AllowN(now, 1), nil
}

// Overflowed returns how many times a new key was refused because the
// limiter was full of keys that had not refilled.
func (m *MemoryLimiter) Overflowed() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.overflowed
}

// sweep forgets keys whose bucket is full again: they are as good as new.
func (m *MemoryLimiter) sweep(now time.Time) {
	for k, l := range m.keys {
		if l.TokensAt(now) >= float64(m.n) {
			delete(m.keys, k)
		}
	}
}
