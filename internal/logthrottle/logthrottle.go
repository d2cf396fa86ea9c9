// Package logthrottle keeps a failing dependency from flooding the log:
// the limiters of ratelimit, redislimit and redisplan warn about a failed
// decision at most once a second, however many fail, with the key that
// failed cut to a length fit for a log line.
package logthrottle

import (
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Throttle admits at most one warning a second. The zero value is ready
// to use; a Throttle is safe for concurrent use.
type Throttle struct {
	last atomic.Int64 // unix nanoseconds of the last warning admitted
}

// Allow reports whether a warning may be logged now; if so, the next one
// may not be for a second.
func (t *Throttle) Allow() bool {
	now := time.Now().UnixNano()
	last := t.last.Load()
	return now-last >= int64(time.Second) && t.last.CompareAndSwap(last, now)
}

// MaxKey is how many bytes of a key [Key] keeps.
const MaxKey = 48

// Key returns key cut to at most [MaxKey] bytes, on a character
// boundary, with "…" when it was cut.
func Key(key string) string {
	if len(key) <= MaxKey {
		return key
	}
	n := MaxKey
	for n > 0 && !utf8.RuneStart(key[n]) {
		n--
	}
	return key[:n] + "…"
}
