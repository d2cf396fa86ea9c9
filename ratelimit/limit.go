package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Bounds of a valid [Limit]. They keep every count exact in float64 (which
// both the in-memory token bucket and the Redis script use) and every period
// representable, with room to spare.
const (
	// MaxCount is the largest Count or Burst a Limit may have.
	MaxCount = 1_000_000_000
	// MaxPeriod is the longest Period a Limit may have.
	MaxPeriod = 366 * 24 * time.Hour
)

// ErrInvalidLimit is wrapped by the errors of [ParseLimit] and
// [Limit.Validate], and returned by limiters given an invalid [Limit].
var ErrInvalidLimit = errors.New("ratelimit: invalid limit")

// Limit is a rate: Count events per Period, with bursts of up to Burst
// events at once. A key starts with Burst events available; each event uses
// one, and they come back one every Period/Count, up to Burst again. So
// "100/min" allows 100 requests at once, then one every 600 ms; "100/min
// burst 10" allows only 10 at once, with the same long-run rate.
//
// Period must be a whole number of seconds, from one second to [MaxPeriod]:
// the RateLimit-Policy header states windows in seconds. Count must be from
// 1 to [MaxCount]. Burst 0 means Count; otherwise it must be from 1 to
// [MaxCount].
//
// The zero Limit is invalid: limiters reject it with [ErrInvalidLimit].
// Limit is a small comparable value; it is safe to copy and to share.
type Limit struct {
	Count  int
	Period time.Duration
	Burst  int
}

// PerSecond returns a Limit of n events per second with a burst of n.
func PerSecond(n int) Limit { return Limit{Count: n, Period: time.Second} }

// PerMinute returns a Limit of n events per minute with a burst of n.
func PerMinute(n int) Limit { return Limit{Count: n, Period: time.Minute} }

// PerHour returns a Limit of n events per hour with a burst of n.
func PerHour(n int) Limit { return Limit{Count: n, Period: time.Hour} }

// BurstSize returns the number of events a full bucket holds: Burst, or
// Count when Burst is 0.
func (l Limit) BurstSize() int {
	if l.Burst == 0 {
		return l.Count
	}
	return l.Burst
}

// Validate reports why l is not a usable limit, wrapping [ErrInvalidLimit],
// or returns nil.
func (l Limit) Validate() error {
	switch {
	case l.Count < 1 || l.Count > MaxCount:
		return fmt.Errorf("%w: count %d is not between 1 and %d", ErrInvalidLimit, l.Count, MaxCount)
	case l.Period < time.Second || l.Period > MaxPeriod:
		return fmt.Errorf("%w: period %v is not between 1s and %v", ErrInvalidLimit, l.Period, MaxPeriod)
	case l.Period%time.Second != 0:
		return fmt.Errorf("%w: period %v is not a whole number of seconds", ErrInvalidLimit, l.Period)
	case l.Burst < 0 || l.Burst > MaxCount:
		return fmt.Errorf("%w: burst %d is not between 0 (meaning the count) and %d", ErrInvalidLimit, l.Burst, MaxCount)
	}
	return nil
}

// valid is Validate without the error value, for hot paths.
func (l Limit) valid() bool {
	return l.Count >= 1 && l.Count <= MaxCount &&
		l.Period >= time.Second && l.Period <= MaxPeriod && l.Period%time.Second == 0 &&
		l.Burst >= 0 && l.Burst <= MaxCount
}

// Interval returns the time in which one event's worth of quota comes back:
// Period/Count.
func (l Limit) Interval() time.Duration {
	if l.Count <= 0 {
		return 0
	}
	return l.Period / time.Duration(l.Count)
}

// durationOf returns how long tokens take to come back at l's rate, rounded
// up to the nanosecond so that waiting that long is always enough.
func (l Limit) durationOf(tokens float64) time.Duration {
	if tokens <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(tokens * float64(l.Period) / float64(l.Count)))
}

// units maps the period units ParseLimit accepts to their length.
var units = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// ParseLimit parses a limit written as
//
//	COUNT "/" [N] UNIT [ "burst" BURST ]
//
// where COUNT, N and BURST are decimal integers and UNIT is one of s, sec,
// second(s), m, min, minute(s), h, hr, hour(s), d, day(s) (lower case).
// Examples: "100/min", "100/m", "100/1m", "50/15m", "10/s", "10/sec",
// "1000/h", "5/hour", "100/day", "100/min burst 20". Spaces are allowed
// around the parts but not inside "15m". A day is 24 hours.
//
// Errors wrap [ErrInvalidLimit] and say what is wrong. The result satisfies
// [Limit.Validate], and [Limit.String] turns it back into an equal Limit.
func ParseLimit(s string) (Limit, error) {
	fail := func(why string) (Limit, error) {
		return Limit{}, fmt.Errorf("%w %q: %s (want e.g. \"100/min\", \"50/15m\" or \"100/min burst 20\")", ErrInvalidLimit, s, why)
	}
	count, rest, ok := strings.Cut(s, "/")
	if !ok {
		return fail("no \"/\" between the count and the period")
	}
	var l Limit
	var err error
	if l.Count, err = parseInt(strings.TrimSpace(count)); err != nil {
		return fail("count: " + err.Error())
	}
	fields := strings.Fields(rest)
	switch {
	case len(fields) == 0:
		return fail("no period after \"/\"")
	case len(fields) == 3 && fields[1] == "burst":
		if l.Burst, err = parseInt(fields[2]); err != nil {
			return fail("burst: " + err.Error())
		}
		if l.Burst == 0 {
			return fail("burst must be at least 1")
		}
	case len(fields) != 1:
		return fail("unexpected " + strconv.Quote(strings.Join(fields[1:], " ")) + " after the period")
	}
	period := fields[0]
	i := strings.IndexFunc(period, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		return fail("period " + strconv.Quote(period) + " has no unit")
	}
	unit, ok := units[period[i:]]
	if !ok {
		return fail("unknown period unit " + strconv.Quote(period[i:]) + "; units are s, m or min, h, d or day")
	}
	n := 1
	if i > 0 {
		if n, err = parseInt(period[:i]); err != nil {
			return fail("period: " + err.Error())
		}
	}
	if n < 1 || time.Duration(n) > MaxPeriod/unit {
		return fail("period " + strconv.Quote(period) + " is not between 1s and 366d")
	}
	l.Period = time.Duration(n) * unit
	if err := l.Validate(); err != nil {
		return fail(strings.TrimPrefix(err.Error(), ErrInvalidLimit.Error()+": "))
	}
	return l, nil
}

// parseInt parses a plain decimal integer: digits only, no sign.
func parseInt(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing number")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a whole number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > MaxCount {
		return 0, fmt.Errorf("%s is larger than %d", s, MaxCount)
	}
	return n, nil
}

// MustParseLimit is like [ParseLimit] but panics if s is invalid. It is for
// limits written in the program's source.
func MustParseLimit(s string) Limit {
	l, err := ParseLimit(s)
	if err != nil {
		panic(err)
	}
	return l
}

// String returns l in the syntax of [ParseLimit], using the largest of the
// units d, h, min and s that divides the period: "100/min", "50/15min",
// "100/d", "100/min burst 20". Burst is written whenever it is not 0, so
// that ParseLimit(l.String()) == l for every valid l. An invalid l is
// written with Go's duration syntax, which ParseLimit rejects.
func (l Limit) String() string {
	if l.Period <= 0 || l.Period%time.Second != 0 {
		return fmt.Sprintf("%d/%v", l.Count, l.Period)
	}
	return string(l.Append(nil))
}

// Append appends [Limit.String] to b, without allocating when b has room,
// for the hot paths that write a limit into every response's headers.
func (l Limit) Append(b []byte) []byte {
	if l.Period <= 0 || l.Period%time.Second != 0 {
		return append(b, l.String()...)
	}
	b = strconv.AppendInt(b, int64(l.Count), 10)
	b = append(b, '/')
	unit, name := time.Second, "s"
	switch {
	case l.Period%(24*time.Hour) == 0:
		unit, name = 24*time.Hour, "d"
	case l.Period%time.Hour == 0:
		unit, name = time.Hour, "h"
	case l.Period%time.Minute == 0:
		unit, name = time.Minute, "min"
	}
	if n := l.Period / unit; n != 1 {
		b = strconv.AppendInt(b, int64(n), 10)
	}
	b = append(b, name...)
	if l.Burst != 0 {
		b = append(b, " burst "...)
		b = strconv.AppendInt(b, int64(l.Burst), 10)
	}
	return b
}

// MarshalText implements [encoding.TextMarshaler] with [Limit.String], so
// that limits read well in JSON and configuration files.
func (l Limit) MarshalText() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return []byte(l.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler] with [ParseLimit], so
// that a Limit can be a JSON string or a flag (see flag.TextVar).
func (l *Limit) UnmarshalText(text []byte) error {
	v, err := ParseLimit(string(text))
	if err != nil {
		return err
	}
	*l = v
	return nil
}
