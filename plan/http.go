package plan

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unsafe"

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
// [ratelimit.Middleware] does for one limit: RateLimit-Policy lists every
// policy of the plan (draft-ietf-httpapi-ratelimit-headers-10 allows
// several), in the order of [Decision.Policies], on one field line;
// RateLimit gives every policy's state in the same order, on one line; and
// the X-RateLimit-* fields describe the policy closest to exhaustion
// ([Decision.Closest]), the one a client must pace itself by:
//
//	RateLimit-Policy: "10/s";q=10;w=1, "10000/month";q=10000;w=2592000
//	RateLimit: "10/s";r=9;t=1, "10000/month";r=9990;t=1209600
//	X-RateLimit-Limit: 10
//	X-RateLimit-Remaining: 9
//	X-RateLimit-Reset: 1767225601
//
// q is the policy's [Policy.Count], w its [Policy.Window] in seconds, r its
// Remaining and t the seconds (rounded up) until it is whole again or, if
// it refused the request, until it would admit it; X-RateLimit-Reset is
// that moment as a Unix time. Every policy's state is in the Decision
// ([Decision.Policies]), for a GET /v1/me. A refused request also gets
// Retry-After: d.RetryAfterSeconds(). Headers already set by an outer
// limiter are kept, as ratelimit's middleware keeps them: their
// RateLimit-Policy and RateLimit field lines come first, and the
// X-RateLimit-* fields and Retry-After describe the tighter of the two.
func (d *Decision) WriteHeaders(h http.Header) {
	if d.n == 0 {
		return
	}
	var ph policyHeaders
	ph.format(d)
	var stack [256]byte
	vals := (*[numHeaderValues]string)(make([]string, numHeaderValues))
	d.writeHeaders(h, &ph, vals, stack[:0], false)
}

// policyHeaders are the parts of the headers of a set of policies that
// do not change from one decision to the next, formatted once. Every part
// is a substring of policy.
type policyHeaders struct {
	policy string              // the RateLimit-Policy value
	names  [maxPolicies]string // each policy's name, quoted
	counts [maxPolicies]string // each policy's q, for X-RateLimit-Limit
}

// format sets ph to the headers of d's policies.
func (ph *policyHeaders) format(d *Decision) {
	var stack [256]byte
	b := stack[:0]
	var ends [maxPolicies][3]int // name start, name end, count end
	for i := 0; i < int(d.n); i++ {
		p := &d.policies[i]
		if i > 0 {
			b = append(b, ", "...)
		}
		ends[i][0] = len(b)
		b = appendPolicyName(b, p)
		ends[i][1] = len(b)
		b = append(b, ";q="...)
		b = strconv.AppendInt(b, p.Count(), 10)
		ends[i][2] = len(b)
		b = append(b, ";w="...)
		b = strconv.AppendInt(b, max(1, ceilSeconds(p.Window)), 10)
	}
	ph.policy = string(b)
	for i := 0; i < int(d.n); i++ {
		e := ends[i]
		ph.names[i] = ph.policy[e[0]:e[1]]
		ph.counts[i] = ph.policy[e[1]+len(";q=") : e[2]]
	}
}

// policyKey identifies the policyHeaders of a Decision: its limits, and
// its quota with the length of the quota's current period.
type policyKey struct {
	limits [MaxLimits]ratelimit.Limit
	quota  Quota
	window time.Duration
}

// key returns the policyKey of d's policies.
func (d *Decision) key() policyKey {
	var k policyKey
	for i := 0; i < int(d.n); i++ {
		p := &d.policies[i]
		if p.IsQuota() {
			k.quota, k.window = p.Quota, p.Window
		} else if i < MaxLimits {
			k.limits[i] = p.Limit
		}
	}
	return k
}

// The values writeHeaders sets, in their order in its vals.
const (
	valPolicy = iota
	valRateLimit
	valLimit
	valRemaining
	valReset
	valRetryAfter
	numHeaderValues
)

// writeHeaders sets the headers of d on h, with the policy parts of ph,
// formatting the numbers into buf. vals holds the field values, so that
// h's slices of them are its parts. With inPlace, buf's bytes become the
// values' without a copy: buf must then be memory that nothing writes
// again, and that may live as long as h.
func (d *Decision) writeHeaders(h http.Header, ph *policyHeaders, vals *[numHeaderValues]string, buf []byte, inPlace bool) {
	closest := d.closest()
	at := d.At
	if at.IsZero() {
		at = time.Now()
	}
	// The RateLimit value lists every policy's remaining units and t, in
	// the order of RateLimit-Policy; X-RateLimit-* and the reset time that
	// follows it in b are the closest policy's.
	b := buf
	var remStart, remEnd int
	var closestT int64
	for i := 0; i < int(d.n); i++ {
		p := &d.policies[i]
		t := ceilSeconds(p.Reset)
		if p.RetryAfter > 0 {
			t = max(1, ceilSeconds(p.RetryAfter))
		}
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, ph.names[i]...)
		b = append(b, ";r="...)
		if i == closest {
			remStart, closestT = len(b), t
		}
		b = strconv.AppendInt(b, p.Remaining, 10)
		if i == closest {
			remEnd = len(b)
		}
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, t, 10)
	}
	p := &d.policies[closest]
	reset := at.Unix() + closestT
	if at.Nanosecond() != 0 {
		reset++ // round the moment up, like t
	}
	rlEnd := len(b)
	b = strconv.AppendInt(b, reset, 10)
	resetEnd, ra := len(b), int64(0)
	if !d.Allowed {
		ra = d.RetryAfterSeconds()
		b = strconv.AppendInt(b, ra, 10)
	}
	var all string
	if inPlace {
		all = unsafe.String(unsafe.SliceData(b), len(b))
	} else {
		all = string(b)
	}
	vals[valPolicy], vals[valRateLimit], vals[valLimit] = ph.policy, all[:rlEnd], ph.counts[closest]
	vals[valRemaining], vals[valReset], vals[valRetryAfter] = all[remStart:remEnd], all[rlEnd:resetEnd], all[resetEnd:]
	// The capacities make an append to any of them copy rather than
	// overwrite the next.
	addValues(h, headerPolicy, vals[valPolicy:valPolicy+1:valPolicy+1])
	addValues(h, headerRateLimit, vals[valRateLimit:valRateLimit+1:valRateLimit+1])
	if old := h[headerRemaining]; len(old) == 0 || moreThan(old[0], p.Remaining) {
		h[headerLimit] = vals[valLimit : valLimit+1 : valLimit+1]
		h[headerRemaining] = vals[valRemaining : valRemaining+1 : valRemaining+1]
		h[headerReset] = vals[valReset : valReset+1 : valReset+1]
	}
	if !d.Allowed {
		if old := h[headerRetryAfter]; len(old) == 0 || !moreThan(old[0], ra) {
			h[headerRetryAfter] = vals[valRetryAfter : valRetryAfter+1 : valRetryAfter+1]
		}
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
		b = p.Limit.Append(b)
	}
	return append(b, '"')
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
