package magiclink

import (
	"sync"
	"time"
)

// maxBlocked bounds the clients blocked at once by VerifyLimiter.
const maxBlocked = 100_000

// blockList holds the clients whose failed sign-in attempts VerifyLimiter
// refused, and until when they are refused without a lookup.
type blockList struct {
	mu        sync.Mutex
	until     map[string]time.Time
	max       int
	nextSweep time.Time
}

// blocked returns how long the client is still blocked at now (0 if not).
func (b *blockList) blocked(client string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.until[client]
	if !ok {
		return 0
	}
	if !now.Before(until) {
		delete(b.until, client)
		return 0
	}
	return until.Sub(now)
}

// block blocks the client from now until the given time. It reports false
// if it could not, because the list is full of blocks that have not ended.
func (b *blockList) block(client string, now, until time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.until[client]; !ok && len(b.until) >= b.max && !now.Before(b.nextSweep) {
		// At most once a second: a flood costs one sweep a second.
		for k, u := range b.until {
			if !now.Before(u) {
				delete(b.until, k)
			}
		}
		b.nextSweep = now.Add(time.Second)
	}
	if _, ok := b.until[client]; !ok && len(b.until) >= b.max {
		return false
	}
	b.until[client] = until
	return true
}
