package plan

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/apikit/apikit/ratelimit"
)

// QuotaExceededType is the problem type of a response refused because the
// quota is spent ([WriteRefused]). It is a URI reference relative to the
// API's own address (RFC 9457, section 3.1.1); an application that
// documents its problem types at an absolute URI sets
// [Problem].Type before writing.
const QuotaExceededType = "/problems/quota-exceeded"

// Header names, in the canonical form net/http uses as map keys, as
// package ratelimit writes them.
const (
	headerPolicy     = "Ratelimit-Policy"
	headerRateLimit  = "Ratelimit"
	headerLimit      = "X-Ratelimit-Limit"
	headerRemaining  = "X-Ratelimit-Remaining"
	headerReset      = "X-Ratelimit-Reset"
	headerRetryAfter = "Retry-After"
)

// WriteHeaders sets the rate limit headers of d on h, as
// [ratelimit.Middleware] does for one limit, listing every policy of the
// plan (draft-ietf-httpapi-ratelimit-headers-10 allows several), one field
// line per policy, in the order of [Decision.Policies]:
//
//	RateLimit-Policy: "10/s";q=10;w=1
//	RateLimit-Policy: "10000/month";q=10000;w=2592000
//	RateLimit: "10/s";r=9;t=1
//	RateLimit: "10000/month";r=9876;t=1234567
//	X-RateLimit-Limit: 10
//	X-RateLimit-Remaining: 9
//	X-RateLimit-Reset: 1767225601
//
// q is the policy's [Policy.Count], w its [Policy.Window] in seconds, r its
// Remaining and t the seconds (rounded up) until it is whole again or, for
// a policy that refused the request, until it would admit it. The
// X-RateLimit-* fields describe the policy closest to exhaustion
// ([Decision.Closest]), with the reset as a Unix time. A refused request
// also gets Retry-After: d.RetryAfterSeconds(). Headers already set by an
// outer limiter are kept, as ratelimit's middleware keeps them.
func (d *Decision) WriteHeaders(h http.Header) {
	// Every value is a substring of one string, and every field's values
	// a part of one slice: two allocations, whatever the policies.
	n := int(d.n)
	closest := d.closest()
	at := d.At
	if at.IsZero() {
		at = time.Now()
	}
	var stack [1024]byte
	b := stack[:0]
	var ends [2*maxPolicies + 4]int // the end in b of each value
	nv := 0
	for i := 0; i < n; i++ {
		p := &d.policies[i]
		b = appendPolicyName(b, p)
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, p.Count(), 10)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, max(1, ceilSeconds(p.Window)), 10)
		ends[nv], nv = len(b), nv+1
	}
	var closestT int64
	for i := 0; i < n; i++ {
		p := &d.policies[i]
		t := ceilSeconds(p.Reset)
		if p.RetryAfter > 0 {
			t = max(1, ceilSeconds(p.RetryAfter))
		}
		if i == closest {
			closestT = t
		}
		b = appendPolicyName(b, p)
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, p.Remaining, 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, t, 10)
		ends[nv], nv = len(b), nv+1
	}
	xrl := false
	if closest >= 0 {
		p := &d.policies[closest]
		if old := h[headerRemaining]; len(old) == 0 || moreThan(old[0], p.Remaining) {
			xrl = true
			reset := at.Unix() + closestT
			if at.Nanosecond() != 0 {
				reset++
			}
			b = strconv.AppendInt(b, p.Count(), 10)
			ends[nv], nv = len(b), nv+1
			b = strconv.AppendInt(b, p.Remaining, 10)
			ends[nv], nv = len(b), nv+1
			b = strconv.AppendInt(b, reset, 10)
			ends[nv], nv = len(b), nv+1
		}
	}
	retry := false
	if !d.Allowed && n > 0 {
		ra := d.RetryAfterSeconds()
		if old := h[headerRetryAfter]; len(old) == 0 || !moreThan(old[0], ra) {
			retry = true
			b = strconv.AppendInt(b, ra, 10)
			ends[nv], nv = len(b), nv+1
		}
	}
	if nv == 0 {
		return
	}
	all := string(b)
	vals := make([]string, nv)
	for i, start := 0, 0; i < nv; i++ {
		vals[i], start = all[start:ends[i]], ends[i]
	}
	addValues(h, headerPolicy, vals[:n:n])
	addValues(h, headerRateLimit, vals[n:2*n:2*n])
	i := 2 * n
	if xrl {
		h[headerLimit], h[headerRemaining], h[headerReset] = vals[i:i+1:i+1], vals[i+1:i+2:i+2], vals[i+2:i+3:i+3]
		i += 3
	}
	if retry {
		h[headerRetryAfter] = vals[i : i+1 : i+1]
	}
}

// addValues adds vals to the values of the field key of h, using vals
// itself if h has none.
func addValues(h http.Header, key string, vals []string) {
	if len(vals) == 0 {
		return
	}
	if old := h[key]; len(old) > 0 {
		vals = append(old, vals...)
	}
	h[key] = vals
}

// appendPolicyName appends the policy's name, quoted, as in the
// RateLimit headers: "10/s", "10000/month". Names are printable ASCII
// without '"' or '\', so quoting is adding quotes.
func appendPolicyName(b []byte, p *Policy) []byte {
	b = append(b, '"')
	if p.IsQuota() {
		b = strconv.AppendInt(b, p.Quota.Count, 10)
		b = append(b, '/')
		b = append(b, p.Quota.Period.String()...)
	} else {
		b = appendLimit(b, p.Limit)
	}
	return append(b, '"')
}

// appendLimit appends l in the syntax of [ratelimit.Limit.String], without
// allocating, for a valid l.
func appendLimit(b []byte, l ratelimit.Limit) []byte {
	if !validLimit(l) {
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

// moreThan reports whether the integer in s is more than n; a value that
// is not an integer counts as more, so that it is replaced.
func moreThan(s string, n int64) bool {
	i, err := strconv.ParseInt(s, 10, 64)
	return err != nil || i > n
}

// Problem is the RFC 9457 problem document of a refused request, in the
// shape of every apikit error, with the plan's name and the seconds to
// wait as extension members.
type Problem struct {
	Type       string `json:"type"`
	Title      string `json:"title"`
	Status     int    `json:"status"`
	Detail     string `json:"detail,omitempty"`
	Code       string `json:"code,omitempty"`
	Plan       string `json:"plan,omitempty"`
	RetryAfter int64  `json:"retry_after,omitempty"`
}

// RefusedProblem returns the problem document for a refused decision:
// for a spent quota, type [QuotaExceededType], code "quota_exceeded", the
// plan, and the wait until the next refill; for a rate limit, type
// "about:blank" and code "rate_limited", as [ratelimit.WriteLimited]
// answers.
func RefusedProblem(d *Decision) Problem {
	p := Problem{
		Type:       "about:blank",
		Title:      http.StatusText(http.StatusTooManyRequests),
		Status:     http.StatusTooManyRequests,
		Code:       d.Refusal.String(),
		Plan:       d.Plan,
		RetryAfter: d.RetryAfterSeconds(),
	}
	if q, _ := d.Quota(); d.Refusal == QuotaExceeded {
		p.Type, p.Title = QuotaExceededType, "Quota exceeded"
		p.Detail = fmt.Sprintf("The %s quota of plan %s is used up; it refills at %s.", q.Name(), d.Plan, d.PeriodEnd.Format(time.RFC3339))
	} else {
		p.Code = RateLimited.String()
		p.Detail = fmt.Sprintf("Rate limit exceeded; retry in %d s.", p.RetryAfter)
	}
	return p
}

// Write sends p as an application/problem+json response with status
// p.Status, keeping the headers already set on w.
func (p Problem) Write(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	body, _ := json.Marshal(p)
	_, _ = w.Write(append(body, '\n'))
}

// WriteRefused answers a refused request with its [RefusedProblem] and
// status 429. Call [Decision.WriteHeaders] first, as for every response:
// it sets Retry-After.
func WriteRefused(w http.ResponseWriter, d *Decision) {
	RefusedProblem(d).Write(w)
}
