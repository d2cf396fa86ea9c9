package plan_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
	"github.com/apikit/apikit/ratelimit"
)

func TestWriteHeaders(t *testing.T) {
	ctx := context.Background()
	at := time.Date(2025, 5, 31, 23, 59, 0, 0, time.UTC)
	clock := plantest.NewClock(at)
	m := plan.NewMemory(plan.MemoryOptions{Now: clock.Now})
	p := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.PerSecond(10), ratelimit.PerHour(1000)}, Quota: plan.Quota{Count: 3, Period: plan.Month}}

	d, _ := m.Decide(ctx, plan.Request{Plan: p, User: "u", Cost: 2})
	h := http.Header{}
	d.WriteHeaders(h)
	want := http.Header{
		// Every policy, on one field line (a Structured Field List).
		"Ratelimit-Policy": {`"10/s";q=10;w=1, "1000/h";q=1000;w=3600, "3/month";q=3;w=2678400`},
		// Every policy's state, in the same order, on one line.
		"Ratelimit":             {`"10/s";r=8;t=1, "1000/h";r=998;t=8, "3/month";r=1;t=60`},
		"X-Ratelimit-Limit":     {"3"},
		"X-Ratelimit-Remaining": {"1"},
		// The quota is closest to exhaustion: it resets at midnight, in 60s.
		"X-Ratelimit-Reset": {"1748736000"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("headers =\n%v\nwant\n%v", h, want)
	}

	d, _ = m.Decide(ctx, plan.Request{Plan: p, User: "u", Cost: 2})
	if d.Refusal != plan.QuotaExceeded {
		t.Fatalf("refusal = %v", d.Refusal)
	}
	rec := httptest.NewRecorder()
	d.WriteHeaders(rec.Header())
	plan.WriteRefused(rec, &d)
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "60" || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("response %d %v", rec.Code, rec.Header())
	}
	var body plan.Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != plan.QuotaExceededType || body.Plan != "hobby" || body.RetryAfter != 60 || body.Code != "quota_exceeded" || body.Status != 429 {
		t.Errorf("problem = %+v", body)
	}

	// A rate limit refusal: the ordinary rate_limited problem.
	q := &plan.Plan{Name: "tight", Limits: []ratelimit.Limit{ratelimit.PerMinute(1)}}
	m.Decide(ctx, plan.Request{Plan: q, User: "v"})
	d, _ = m.Decide(ctx, plan.Request{Plan: q, User: "v"})
	if pr := plan.RefusedProblem(&d); pr.Type != "about:blank" || pr.Code != "rate_limited" || pr.RetryAfter != 60 {
		t.Errorf("problem = %+v", pr)
	}
}

// TestWriteHeadersAfterRatelimit: headers of an outer ratelimit middleware
// are kept, and X-RateLimit-* describe the tighter of the two.
func TestWriteHeadersAfterRatelimit(t *testing.T) {
	outer := ratelimit.Middleware(ratelimit.NewMemory(ratelimit.MemoryOptions{}), ratelimit.MiddlewareOptions{
		KeyFunc: func(*http.Request) (string, error) { return "ip", nil },
		Limit:   ratelimit.PerMinute(1000), Policy: "per-ip",
	})
	m := plan.NewMemory(plan.MemoryOptions{})
	p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(5)}}
	h := outer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, err := m.Decide(r.Context(), plan.Request{Plan: p, User: "u"})
		if err != nil {
			t.Fatal(err)
		}
		d.WriteHeaders(w.Header())
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if got := rec.Header()["Ratelimit-Policy"]; len(got) != 2 || got[0] != `"per-ip";q=1000;w=60` || got[1] != `"5/s";q=5;w=1` {
		t.Errorf("RateLimit-Policy = %q", got)
	}
	if got := rec.Header().Get("X-Ratelimit-Remaining"); got != "4" {
		t.Errorf("X-RateLimit-Remaining = %s; want 4 (the plan's, the tighter)", got)
	}
}

// TestPolicyNames: the names in the headers are the limits' and quotas'
// String, which WriteHeaders writes without calling them.
func TestPolicyNames(t *testing.T) {
	for _, s := range []string{"1/s", "10/s", "100/min", "50/15min", "1000/h", "5/2h", "100/d", "7/3d", "100/min burst 20", "1000000000/90s"} {
		l := ratelimit.MustParseLimit(s)
		p := &plan.Plan{Name: "p", Limits: []ratelimit.Limit{l}, Quota: plan.Quota{Count: 12345, Period: plan.BillingPeriod}}
		d, err := plan.NewMemory(plan.MemoryOptions{}).Peek(context.Background(), plan.Request{Plan: p, User: "u"})
		if err != nil {
			t.Fatal(err)
		}
		h := http.Header{}
		d.WriteHeaders(h)
		pols := strings.Split(h.Get("Ratelimit-Policy"), ", ")
		if want := `"` + l.String() + `";`; len(pols) != 2 || !strings.HasPrefix(pols[0], want) {
			t.Errorf("%s: RateLimit-Policy %q; want it to start with %s", s, pols, want)
		}
		if want := `"12345/period";`; len(pols) < 2 || !strings.HasPrefix(pols[1], want) {
			t.Errorf("quota: %q", pols)
		}
	}
}
