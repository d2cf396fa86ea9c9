package plan

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
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
	closest := d.closest()
	at := d.At
	if at.IsZero() {
		at = time.Now()
	}
	for i := range d.Policies() {
		p := &d.policies[i]
		name := strconv.Quote(p.Name()) // names are printable ASCII without '"' or '\'
		t := ceilSeconds(p.Reset)
		if p.RetryAfter > 0 {
			t = max(1, ceilSeconds(p.RetryAfter))
		}
		window := max(1, ceilSeconds(p.Window))
		h[headerPolicy] = append(h[headerPolicy], name+";q="+strconv.FormatInt(p.Count(), 10)+";w="+strconv.FormatInt(window, 10))
		h[headerRateLimit] = append(h[headerRateLimit], name+";r="+strconv.FormatInt(p.Remaining, 10)+";t="+strconv.FormatInt(t, 10))
		if i == closest {
			if old := h[headerRemaining]; len(old) == 0 || moreThan(old[0], p.Remaining) {
				reset := at.Unix() + t
				if at.Nanosecond() != 0 {
					reset++
				}
				h[headerLimit] = []string{strconv.FormatInt(p.Count(), 10)}
				h[headerRemaining] = []string{strconv.FormatInt(p.Remaining, 10)}
				h[headerReset] = []string{strconv.FormatInt(reset, 10)}
			}
		}
	}
	if !d.Allowed && d.n > 0 {
		ra := d.RetryAfterSeconds()
		if old := h[headerRetryAfter]; len(old) == 0 || !moreThan(old[0], ra) {
			h[headerRetryAfter] = []string{strconv.FormatInt(ra, 10)}
		}
	}
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
