// Package fakeclock is the settable clock of apikit's tests: pass
// [Clock.Now] as a package's Now option, then move time with
// [Clock.Advance] or [Clock.Set] instead of sleeping.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a time source that moves only when told. It is safe for
// concurrent use: a test may advance it while the code under test reads
// it from other goroutines. The zero Clock reads the zero time; use [New].
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New returns a Clock that reads start until it is moved.
func New(start time.Time) *Clock { return &Clock{t: start} }

// Now returns the clock's current time. Its method value (c.Now) fits
// every Now option of apikit.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d (backward if d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}
