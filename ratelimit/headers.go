package ratelimit

import (
	"net/http"
	"strconv"
	"time"
)

// policy is what the headers of one named limit need, formatted once.
type policy struct {
	name   string
	prefix string // of the limiter's keys: the name and ":"
	header string // RateLimit-Policy value
	item   string // start of the RateLimit value: the quoted name and ";r="
	limit  string // X-RateLimit-Limit value
}

func newPolicy(name string, l Limit) *policy {
	if name == "" {
		name = l.String()
	}
	q := sfString(name)
	count := strconv.Itoa(l.Count)
	return &policy{
		name:   name,
		prefix: name + ":",
		header: q + ";q=" + count + ";w=" + strconv.FormatInt(int64(l.Period/time.Second), 10),
		item:   q + ";r=",
		limit:  count,
	}
}

// sfString returns s as a Structured Field String (RFC 9651, section
// 3.3.3); s must be printable ASCII.
func sfString(s string) string {
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return string(append(b, '"'))
}

// setHeaders sets the limit headers of d on h. When an outer middleware
// has set them already (a global limit around a per-key one), the
// RateLimit-Policy and RateLimit lists get one more field line each, as
// the draft allows; the single-valued X-RateLimit fields and Retry-After
// describe the most restrictive of the limits.
func (p *policy) setHeaders(h http.Header, d Decision, now time.Time) {
	t := ceilSeconds(d.ResetAfter)
	if !d.Allowed {
		t = d.RetryAfterSeconds()
	}
	reset := now.Unix() + t
	if now.Nanosecond() != 0 {
		reset++ // round the moment up, like t
	}
	// All the numbers in one string: the RateLimit value, which contains
	// the remaining units and t, followed by the reset time.
	var buf [96]byte
	b := append(buf[:0], p.item...)
	b = strconv.AppendInt(b, int64(d.Remaining), 10)
	remainingEnd := len(b)
	b = append(b, ";t="...)
	tStart := len(b)
	b = strconv.AppendInt(b, t, 10)
	rlEnd := len(b)
	b = strconv.AppendInt(b, reset, 10)
	all := string(b)
	// One allocation for all the header values; the capacities make an
	// append to any of them copy rather than overwrite the next.
	v := make([]string, 6)
	v[0], v[1], v[2] = p.header, all[:rlEnd], p.limit
	v[3], v[4], v[5] = all[len(p.item):remainingEnd], all[rlEnd:], all[tStart:rlEnd]
	add(h, headerPolicy, v[0:1:1])
	add(h, headerRateLimit, v[1:2:2])
	if old := h[headerRemaining]; len(old) == 0 || moreThan(old[0], d.Remaining) {
		h[headerLimit] = v[2:3:3]
		h[headerRemaining] = v[3:4:4]
		h[headerReset] = v[4:5:5]
	}
	if !d.Allowed {
		if old := h[headerRetryAfter]; len(old) == 0 || !moreThan(old[0], int(t)) {
			h[headerRetryAfter] = v[5:6:6]
		}
	}
}

// add adds the field lines in v to h[key].
func add(h http.Header, key string, v []string) {
	if old := h[key]; len(old) > 0 {
		v = append(old, v...)
	}
	h[key] = v
}

// moreThan reports whether the integer in s is more than n; a value that
// is not an integer counts as more, so that it is replaced.
func moreThan(s string, n int) bool {
	i, err := strconv.Atoi(s)
	return err != nil || i > n
}
