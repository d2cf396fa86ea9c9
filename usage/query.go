package usage

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Limits of [ParseQuery] unless [QueryLimits] say otherwise.
const (
	// DefaultMaxRange is the longest range a query may ask for.
	DefaultMaxRange = 400 * 24 * time.Hour
	// DefaultMaxPoints is the most points per key a query may ask for:
	// 100 days by the hour.
	DefaultMaxPoints = 2400
	// maxKeyID is the longest key id a query may name.
	maxKeyID = 128
)

// QueryLimits bound what [ParseQuery] accepts. The zero value gives the
// defaults.
type QueryLimits struct {
	// MaxRange is the longest range; 0 means [DefaultMaxRange].
	MaxRange time.Duration
	// MaxPoints is the most points per key (range / granularity); 0
	// means [DefaultMaxPoints].
	MaxPoints int
}

// ParamError is an invalid query parameter: its Name and the Reason,
// both safe to show to the client.
type ParamError struct {
	Name, Reason string
}

func (e *ParamError) Error() string { return "usage: query parameter " + e.Name + ": " + e.Reason }

// ErrInvalidQuery is wrapped by every error of [ParseQuery].
var ErrInvalidQuery = errors.New("usage: invalid query")

// queryErrors is the error of ParseQuery: every invalid parameter.
type queryErrors []*ParamError

func (e queryErrors) Error() string {
	var parts []string
	for _, p := range e {
		parts = append(parts, p.Name+": "+p.Reason)
	}
	return "usage: invalid query: " + strings.Join(parts, "; ")
}

func (e queryErrors) Unwrap() []error {
	errs := []error{ErrInvalidQuery}
	for _, p := range e {
		errs = append(errs, p)
	}
	return errs
}

// ParseQuery parses the parameters of GET /v1/usage for userID:
//
//   - from, to: the range [from, to), each an RFC 3339 time
//     ("2026-03-01T00:00:00Z") or a date ("2026-03-01", midnight UTC);
//     from is rounded down and to up to whole points. Both default to
//     defFrom and defTo (the current period); to must be after from.
//   - granularity: "hour" or "day" (the default).
//   - key_id: one of the user's keys; absent means all of them.
//
// Each parameter may appear once. The range may not exceed lim.MaxRange
// nor make more than lim.MaxPoints points. Its error wraps
// [ErrInvalidQuery] and every [*ParamError] (errors.As finds the first).
func ParseQuery(v url.Values, userID string, defFrom, defTo time.Time, lim QueryLimits) (Query, error) {
	if lim.MaxRange <= 0 {
		lim.MaxRange = DefaultMaxRange
	}
	if lim.MaxPoints <= 0 {
		lim.MaxPoints = DefaultMaxPoints
	}
	var errs queryErrors
	bad := func(name, reason string) { errs = append(errs, &ParamError{name, reason}) }
	one := func(name string) (string, bool) {
		vs, ok := v[name]
		if !ok {
			return "", false
		}
		if len(vs) != 1 {
			bad(name, "given more than once")
			return "", false
		}
		return vs[0], true
	}
	for name := range v {
		switch name {
		case "from", "to", "granularity", "key_id":
		default:
			if len(errs) < 8 {
				bad(clip(name), "unknown parameter (want from, to, granularity or key_id)")
			}
		}
	}
	q := Query{UserID: userID, Granularity: Day, From: defFrom, To: defTo}
	if s, ok := one("granularity"); ok {
		switch s {
		case "hour":
			q.Granularity = Hour
		case "day":
			q.Granularity = Day
		default:
			bad("granularity", `want "hour" or "day"`)
		}
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if s, ok := one(p.name); ok {
			t, err := parseTime(s)
			if err != nil {
				bad(p.name, err.Error())
				continue
			}
			*p.t = t
		}
	}
	if s, ok := one("key_id"); ok {
		if s == "" || len(s) > maxKeyID || strings.ContainsFunc(s, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '-')
		}) {
			bad("key_id", fmt.Sprintf("want a key id: 1 to %d letters, digits, '_' or '-'", maxKeyID))
		} else {
			q.KeyID = s
		}
	}
	if len(errs) > 0 {
		return Query{}, errs
	}
	q.From = q.Granularity.Truncate(q.From)
	if t := q.Granularity.Truncate(q.To); t.Before(q.To) {
		q.To = t.Add(q.Granularity.Duration())
	} else {
		q.To = t
	}
	switch {
	case !q.To.After(q.From):
		bad("to", "must be after from")
	case q.To.Sub(q.From) > lim.MaxRange:
		bad("to", fmt.Sprintf("the range is longer than %d days", lim.MaxRange/(24*time.Hour)))
	case q.To.Sub(q.From)/q.Granularity.Duration() > time.Duration(lim.MaxPoints):
		bad("granularity", fmt.Sprintf("the range has more than %d points by the %s: ask by the day or for a shorter range", lim.MaxPoints, q.Granularity))
	}
	if len(errs) > 0 {
		return Query{}, errs
	}
	return q, nil
}

// minTime and maxTime bound the times a query may name.
var (
	minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t, err = time.Parse(time.DateOnly, s)
	}
	if err != nil {
		return time.Time{}, errors.New(`want an RFC 3339 time ("2026-03-01T00:00:00Z") or a date ("2026-03-01")`)
	}
	if t.Before(minTime) || !t.Before(maxTime) {
		return time.Time{}, errors.New("out of range (years 2000 to 2199)")
	}
	return t.UTC(), nil
}

// clip shortens an unknown parameter's name for an error message.
func clip(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
