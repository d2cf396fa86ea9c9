// Package memlimit is the in-process, per-key token bucket behind the
// default limiters of packages magiclink and billing: n actions per period
// for each key, refilled evenly, with a bound on the keys it tracks that a
// flood of new keys cannot use to reset a key's spent budget.
package memlimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Full says what a Limiter does with a new key when it tracks MaxKeys keys,
// none of which has refilled.
type Full int

const (
	// Refuse refuses the new key (fail closed) and counts it.
	Refuse Full = iota
	// Share lets every such new key draw on one shared bucket of n per
	// period, so that a flood of new keys limits itself.
	Share
)

// Limiter is safe for concurrent use.
type Limiter struct {
	n       int
	per     time.Duration
	now     func() time.Time
	maxKeys int
	full    Full

	mu         sync.Mutex
	keys       map[string]*rate.Limiter
	shared     *rate.Limiter
	nextSweep  time.Time
	overflowed uint64
}

// New returns a Limiter of n actions per period per key that tracks at most
// maxKeys keys. now is the clock (nil: time.Now). It panics if n, per or
// maxKeys is not positive; pkg names the caller in the message.
func New(pkg string, n int, per time.Duration, now func() time.Time, maxKeys int, full Full) *Limiter {
	if n <= 0 || per <= 0 || maxKeys <= 0 {
		panic(pkg + ": NewMemoryLimiter needs a positive count and period")
	}
	if now == nil {
		now = time.Now
	}
	return &Limiter{n: n, per: per, now: now, maxKeys: maxKeys, full: full,
		keys: make(map[string]*rate.Limiter), shared: rate.NewLimiter(rate.Every(per/time.Duration(n)), n)}
}

// Allow reports whether key may act now, and if so spends one action.
func (m *Limiter) Allow(key string) bool {
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.keys[key]
	if l == nil {
		if len(m.keys) >= m.maxKeys && !now.Before(m.nextSweep) {
			// At most once a second, so that a flood of new keys at a
			// full limiter costs one sweep a second, not one per key.
			m.sweep(now)
			m.nextSweep = now.Add(time.Second)
		}
		if len(m.keys) >= m.maxKeys {
			m.overflowed++
			return m.full == Share && m.shared.AllowN(now, 1)
		}
		l = rate.NewLimiter(rate.Every(m.per/time.Duration(m.n)), m.n)
		m.keys[key] = l
	}
	return l.AllowN(now, 1)
}

// Overflowed returns how many new keys arrived while the limiter was full
// of keys that had not refilled.
func (m *Limiter) Overflowed() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.overflowed
}

// sweep forgets keys whose bucket is full again: they are as good as new.
func (m *Limiter) sweep(now time.Time) {
	for k, l := range m.keys {
		if l.TokensAt(now) >= float64(m.n) {
			delete(m.keys, k)
		}
	}
}
