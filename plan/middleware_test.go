package plan_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
	"github.com/apikit/apikit/ratelimit"
)

var mwStart = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// mwPlan has two limits and a quota, per user.
var mwPlan = &plan.Plan{
	Name:   "hobby",
	Limits: []ratelimit.Limit{ratelimit.PerSecond(10), ratelimit.PerHour(1000)},
	Quota:  plan.Quota{Count: 20, Period: plan.Day},
}

// userRequest decides every request under p for the user in the X-User
// header; requests without one are refused with 403.
func userRequest(p *plan.Plan) func(*http.Request) (plan.Request, error) {
	return func(r *http.Request) (plan.Request, error) {
		u := r.Header.Get("X-User")
		if u == "" {
			return plan.Request{}, &plan.StatusError{Status: http.StatusForbidden, Code: "no_plan", Detail: "No plan."}
		}
		return plan.Request{Plan: p, User: u}, nil
	}
}

func serveMW(h http.Handler, user, method string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/v1/things", nil)
	if user != "" {
		r.Header.Set("X-User", user)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// quotaUsed peeks at the user's quota.
func quotaUsed(t *testing.T, d plan.Decider, p *plan.Plan, user string) int64 {
	t.Helper()
	dec, err := d.Peek(context.Background(), plan.Request{Plan: p, User: user})
	if err != nil {
		t.Fatal(err)
	}
	q, ok := dec.Quota()
	if !ok {
		t.Fatal("no quota")
	}
	return q.Quota.Count - q.Remaining
}

func TestMiddleware(t *testing.T) {
	clock := plantest.NewClock(mwStart)
	m := plan.NewMemory(plan.MemoryOptions{Now: clock.Now})
	var seen *plan.Decision
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := plan.DecisionFrom(r.Context())
		if !ok {
			t.Error("DecisionFrom: no decision in the handler")
		}
		seen = d
		// The headers are set before the handler writes.
		if w.Header().Get("X-Ratelimit-Remaining") == "" {
			t.Error("no X-RateLimit-Remaining before the handler wrote")
		}
		w.Write([]byte("ok"))
	})
	h := plan.Middleware(m, plan.MiddlewareOptions{
		Request: userRequest(mwPlan),
		Cost: func(r *http.Request) int {
			if r.Method == http.MethodPost {
				return 5
			}
			return 1
		},
	})(handler)

	rec := serveMW(h, "u1", "GET")
	if rec.Code != 200 || rec.Body.String() != "ok" {
		t.Fatalf("GET: %d %q", rec.Code, rec.Body)
	}
	wantHeaders := map[string][]string{
		"Ratelimit-Policy":      {`"10/s";q=10;w=1, "1000/h";q=1000;w=3600, "20/day";q=20;w=86400`},
		"Ratelimit":             {`"10/s";r=9;t=1, "1000/h";r=999;t=4, "20/day";r=19;t=43200`},
		"X-Ratelimit-Limit":     {"10"},
		"X-Ratelimit-Remaining": {"9"},
		"X-Ratelimit-Reset":     {fmt.Sprint(mwStart.Unix() + 1)},
	}
	for k, v := range wantHeaders {
		if got := rec.Header()[k]; strings.Join(got, "|") != strings.Join(v, "|") {
			t.Errorf("%s = %q; want %q", k, got, v)
		}
	}
	if seen == nil || !seen.Allowed || seen.Plan != "hobby" || seen.Cost != 1 {
		t.Errorf("DecisionFrom = %+v", seen)
	}

	// A POST costs 5, from every limit and the quota.
	rec = serveMW(h, "u1", "POST")
	if rec.Code != 200 || seen.Cost != 5 {
		t.Fatalf("POST: %d, cost %d", rec.Code, seen.Cost)
	}
	if got := quotaUsed(t, m, mwPlan, "u1"); got != 6 {
		t.Errorf("quota used = %d; want 6", got)
	}
	if got := rec.Header()["Ratelimit"][0]; got != `"10/s";r=4;t=1, "1000/h";r=994;t=22, "20/day";r=14;t=43200` {
		t.Errorf("RateLimit after a POST = %q", got)
	}

	// Refused by the 10/s limit: 429 rate_limited, the handler not run.
	serveMW(h, "u1", "GET")
	serveMW(h, "u1", "GET")
	serveMW(h, "u1", "GET")
	serveMW(h, "u1", "GET")
	seen = nil
	rec = serveMW(h, "u1", "GET")
	if rec.Code != http.StatusTooManyRequests || seen != nil {
		t.Fatalf("over the limit: %d, handler ran: %v", rec.Code, seen != nil)
	}
	var p plan.Problem
	json.Unmarshal(rec.Body.Bytes(), &p)
	if p.Code != "rate_limited" || rec.Header().Get("Retry-After") != "1" || rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Errorf("rate limited: %+v %v", p, rec.Header())
	}

	// The quota: 20 a day; 10 used; two POSTs a second apart spend it.
	clock.Advance(time.Second)
	serveMW(h, "u1", "POST")
	clock.Advance(time.Second)
	serveMW(h, "u1", "POST")
	clock.Advance(time.Second)
	rec = serveMW(h, "u1", "GET")
	json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != 429 || p.Type != plan.QuotaExceededType || p.Plan != "hobby" || rec.Header().Get("Retry-After") != fmt.Sprint(12*3600-3) {
		t.Errorf("quota spent: %d %+v Retry-After %s", rec.Code, p, rec.Header().Get("Retry-After"))
	}

	// Another user has a budget of their own.
	if rec := serveMW(h, "u2", "GET"); rec.Code != 200 {
		t.Errorf("u2: %d", rec.Code)
	}
	// No user: the Request func's 403.
	rec = serveMW(h, "", "GET")
	json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != http.StatusForbidden || p.Code != "no_plan" {
		t.Errorf("no user: %d %+v", rec.Code, p)
	}
}

func TestMiddlewareErrors(t *testing.T) {
	m := plan.NewMemory(plan.MemoryOptions{})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("handler ran") })
	for _, tt := range []struct {
		name   string
		req    func(*http.Request) (plan.Request, error)
		d      plan.Decider
		status int
		code   string
	}{
		{"RequestError", func(*http.Request) (plan.Request, error) { return plan.Request{}, errors.New("store down") }, m, 503, "plan_unavailable"},
		{"StatusError", func(*http.Request) (plan.Request, error) {
			return plan.Request{}, fmt.Errorf("wrapped: %w", &plan.StatusError{Status: 402, Code: "payment_required", Detail: "Pay."})
		}, m, 402, "payment_required"},
		{"NoPlan", func(*http.Request) (plan.Request, error) { return plan.Request{User: "u"}, nil }, m, 500, "plan_error"},
		{"CostTooHigh", func(*http.Request) (plan.Request, error) { return plan.Request{Plan: mwPlan, User: "u", Cost: 11}, nil }, m, 500, "plan_error"},
		{"Unavailable", func(*http.Request) (plan.Request, error) { return plan.Request{Plan: mwPlan, User: "u"}, nil }, failing{}, 503, "plan_unavailable"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := plan.Middleware(tt.d, plan.MiddlewareOptions{Request: tt.req, Logger: slog.New(slog.NewTextHandler(&logs, nil))})(ok)
			rec := serveMW(h, "u", "GET")
			var p plan.Problem
			json.Unmarshal(rec.Body.Bytes(), &p)
			if rec.Code != tt.status || p.Code != tt.code {
				t.Errorf("%d %+v; want %d %s", rec.Code, p, tt.status, tt.code)
			}
			if strings.Contains(rec.Body.String(), "store down") {
				t.Errorf("the error's text reached the client: %s", rec.Body)
			}
			if tt.name != "StatusError" && !strings.Contains(logs.String(), "no decision") {
				t.Errorf("not logged: %q", logs.String())
			}
		})
	}

	// OnError and OnRefused replace the defaults.
	tight := &plan.Plan{Name: "tight", Limits: []ratelimit.Limit{ratelimit.PerMinute(1)}}
	h := plan.Middleware(m, plan.MiddlewareOptions{
		Request: userRequest(tight),
		OnError: func(w http.ResponseWriter, r *http.Request, err error) { w.WriteHeader(418) },
		OnRefused: func(w http.ResponseWriter, r *http.Request, d *plan.Decision) {
			if d.Refusal != plan.RateLimited || w.Header().Get("Retry-After") == "" {
				t.Errorf("OnRefused: %+v %v", d, w.Header())
			}
			w.WriteHeader(420)
		},
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	if rec := serveMW(h, "", "GET"); rec.Code != 418 {
		t.Errorf("OnError: %d", rec.Code)
	}
	serveMW(h, "v", "GET")
	if rec := serveMW(h, "v", "GET"); rec.Code != 420 {
		t.Errorf("OnRefused: %d", rec.Code)
	}
}

// failing is a Decider whose backend is down.
type failing struct{}

func (failing) Decide(context.Context, plan.Request) (plan.Decision, error) {
	return plan.Decision{}, plan.ErrUnavailable
}
func (failing) Charge(context.Context, plan.Request) (plan.Decision, error) {
	return plan.Decision{}, plan.ErrUnavailable
}
func (failing) Peek(context.Context, plan.Request) (plan.Decision, error) {
	return plan.Decision{}, plan.ErrUnavailable
}

// recording is a Decider that records its charges, and fails them if
// told to.
type recording struct {
	plan.Decider
	charges []plan.Request
	ctxErrs []error
	fail    error
}

func (r *recording) Charge(ctx context.Context, req plan.Request) (plan.Decision, error) {
	r.charges = append(r.charges, req)
	r.ctxErrs = append(r.ctxErrs, ctx.Err())
	if r.fail != nil {
		return plan.Decision{}, r.fail
	}
	return r.Decider.Charge(ctx, req)
}

func TestMiddlewareDeferred(t *testing.T) {
	clock := plantest.NewClock(mwStart)
	m := plan.NewMemory(plan.MemoryOptions{Now: clock.Now})
	rec := &recording{Decider: m}
	var setCost = -1 // -1: the handler does not call SetCost
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := plan.DecisionFrom(r.Context())
		if !d.Allowed || d.Cost != 1 {
			t.Errorf("deferred decision: %+v", d)
		}
		if setCost >= 0 {
			plan.SetCost(r.Context(), setCost)
		}
	})
	h := plan.Middleware(rec, plan.MiddlewareOptions{
		Request:  userRequest(mwPlan),
		Deferred: func(r *http.Request) bool { return r.Method == http.MethodPost },
	})(handler)

	// The handler's cost is charged after it ran; headers show the state
	// before the charge.
	setCost = 7
	w := serveMW(h, "u", "POST")
	if w.Code != 200 || !strings.HasPrefix(w.Header()["Ratelimit"][0], `"10/s";r=10;t=0, `) {
		t.Errorf("deferred: %d %q", w.Code, w.Header()["Ratelimit"])
	}
	if got := quotaUsed(t, m, mwPlan, "u"); got != 7 {
		t.Errorf("quota used = %d; want 7", got)
	}
	// Without SetCost, the request's cost (1).
	setCost = -1
	serveMW(h, "u", "POST")
	if got := quotaUsed(t, m, mwPlan, "u"); got != 8 {
		t.Errorf("quota used = %d; want 8", got)
	}
	// SetCost(0): free.
	setCost = 0
	serveMW(h, "u", "POST")
	if got := quotaUsed(t, m, mwPlan, "u"); got != 8 {
		t.Errorf("quota used = %d; want 8", got)
	}
	// A cost larger than the limit's burst and what is left of the quota
	// is charged in full: the quota is overdrawn, the next request waits.
	clock.Advance(time.Minute)
	setCost = 13
	if w := serveMW(h, "u", "POST"); w.Code != 200 {
		t.Fatalf("deferred with 12 left: %d", w.Code)
	}
	if got := quotaUsed(t, m, mwPlan, "u"); got != 20 {
		// Remaining is clamped at 0 in the decision; 21 were used.
		t.Errorf("quota used = %d; want 20 (all)", got)
	}
	if w := serveMW(h, "u", "POST"); w.Code != 429 || !strings.Contains(w.Body.String(), "quota") {
		t.Errorf("after overdrawing: %d %s", w.Code, w.Body)
	}
	// Not deferred: SetCost with a higher cost charges the difference,
	// a lower one refunds nothing.
	rec.charges = nil
	setCost = 4
	serveMW(h, "v", "GET")
	setCost = 0
	serveMW(h, "v", "GET")
	if len(rec.charges) != 1 || rec.charges[0].Cost != 3 || rec.charges[0].Deferred {
		t.Errorf("charges = %+v; want one of 3", rec.charges)
	}
	if got := quotaUsed(t, m, mwPlan, "v"); got != 5 {
		t.Errorf("quota used = %d; want 5", got)
	}
}

// TestMiddlewareDeferredCharge: a deferred request is charged even if the
// client went away or the handler panicked, and a failed charge is logged.
func TestMiddlewareDeferredCharge(t *testing.T) {
	m := plan.NewMemory(plan.MemoryOptions{})
	rec := &recording{Decider: m}
	var logs bytes.Buffer
	h := plan.Middleware(rec, plan.MiddlewareOptions{
		// The Request func may mark the request deferred itself.
		Request: func(r *http.Request) (plan.Request, error) {
			return plan.Request{Plan: mwPlan, User: "u", Deferred: true}, nil
		},
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	served := h(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plan.SetCost(r.Context(), 3)
		cancel() // the client went away
	}))
	served.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil).WithContext(ctx))
	if len(rec.charges) != 1 || rec.charges[0].Cost != 3 || rec.ctxErrs[0] != nil {
		t.Errorf("charges %+v, context errors %v; want one of 3, not canceled", rec.charges, rec.ctxErrs)
	}

	panicking := h(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plan.SetCost(r.Context(), 2)
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v", v)
			}
		}()
		panicking.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	}()
	if len(rec.charges) != 2 || rec.charges[1].Cost != 2 {
		t.Errorf("charges after a panic: %+v", rec.charges)
	}

	rec.fail = plan.ErrUnavailable
	served.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "usage is lost") {
		t.Errorf("a failed charge was not logged: %q", logs.String())
	}
}

func TestMiddlewareOutside(t *testing.T) {
	plan.SetCost(context.Background(), 5) // does nothing
	if d, ok := plan.DecisionFrom(context.Background()); ok || d != nil {
		t.Errorf("DecisionFrom outside the middleware = %v, %v", d, ok)
	}
	for name, f := range map[string]func(){
		"NilDecider": func() { plan.Middleware(nil, plan.MiddlewareOptions{Request: userRequest(mwPlan)}) },
		"NilRequest": func() { plan.Middleware(plan.NewMemory(plan.MemoryOptions{}), plan.MiddlewareOptions{}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if v, _ := recover().(string); !strings.HasPrefix(v, "plan: ") {
					t.Errorf("panic %q", v)
				}
			}()
			f()
		})
	}
}

// TestMiddlewareContext: values and cancellation of the request's context
// reach the handler through the middleware's.
func TestMiddlewareContext(t *testing.T) {
	type key struct{}
	m := plan.NewMemory(plan.MemoryOptions{})
	h := plan.Middleware(m, plan.MiddlewareOptions{Request: userRequest(mwPlan)})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Value(key{}) != "v" {
			t.Error("a value of the outer context is lost")
		}
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
			t.Error("cancellation did not reach the handler")
		}
	}))
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), key{}, "v"))
	r := httptest.NewRequest("GET", "/", nil).WithContext(ctx)
	r.Header.Set("X-User", "u")
	go cancel()
	h.ServeHTTP(httptest.NewRecorder(), r)
}

// headerWriter is a ResponseWriter that allocates nothing once its header
// map has grown.
type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *headerWriter) WriteHeader(int)             {}

// maxMiddlewareAllocs is what the middleware may allocate per admitted
// request: its state (which is also the handler's context, and holds the
// header values) and the request copy of WithContext.
const maxMiddlewareAllocs = 2

func TestMiddlewareAllocs(t *testing.T) {
	m := plan.NewMemory(plan.MemoryOptions{})
	h := plan.Middleware(m, plan.MiddlewareOptions{
		Request: func(*http.Request) (plan.Request, error) { return plan.Request{Plan: benchPlan, User: "u1"}, nil },
	})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := &headerWriter{h: make(http.Header, 8)}
	r := httptest.NewRequest("GET", "/", nil)
	allocs := testing.AllocsPerRun(1000, func() {
		clear(w.h)
		h.ServeHTTP(w, r)
	})
	if allocs > maxMiddlewareAllocs {
		t.Errorf("%.1f allocations per request; want at most %d", allocs, maxMiddlewareAllocs)
	}
	t.Logf("%.1f allocations per request", allocs)
}

func TestPeek(t *testing.T) {
	ctx := context.Background()
	m := plan.NewMemory(plan.MemoryOptions{})
	req := plan.Request{Plan: mwPlan, User: "u", Cost: 5}
	d, err := m.Peek(ctx, req)
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	if st := m.Stats(); st.Identities != 0 || st.Allowed != 0 {
		t.Errorf("a Peek of an identity not held: %+v", st)
	}
	wantRemaining := func(d plan.Decision, limit, quota int64) {
		t.Helper()
		q, _ := d.Quota()
		if d.Policies()[0].Remaining != limit || q.Remaining != quota {
			t.Errorf("remaining %d and %d; want %d and %d", d.Policies()[0].Remaining, q.Remaining, limit, quota)
		}
	}
	wantRemaining(d, 10, 20)
	m.Decide(ctx, req)
	d, _ = m.Peek(ctx, req)
	wantRemaining(d, 5, 15)
	d, _ = m.Peek(ctx, req)
	wantRemaining(d, 5, 15)
	m.Decide(ctx, req)
	d, _ = m.Peek(ctx, req)
	if d.Allowed || d.Refusal != plan.RateLimited {
		t.Errorf("Peek with nothing left: %+v", d)
	}
	if st := m.Stats(); st.Allowed != 2 || st.Limited != 0 {
		t.Errorf("stats count Peeks: %+v", st)
	}
}

// TestMiddlewarePolicyCache: the headers' constant parts are cached per
// set of policies, so requests under different plans, overrides and
// quota periods of different lengths through one middleware each get
// their own.
func TestMiddlewarePolicyCache(t *testing.T) {
	clock := plantest.NewClock(time.Date(2026, 2, 27, 12, 0, 0, 0, time.UTC))
	free := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)}, Quota: plan.Quota{Count: 100, Period: plan.Month}}
	pro := &plan.Plan{Name: "pro", Limits: []ratelimit.Limit{ratelimit.PerSecond(100), ratelimit.PerHour(1000)}}
	vip := plan.Override{Limits: []ratelimit.Limit{ratelimit.PerSecond(5)}}
	m := plan.NewMemory(plan.MemoryOptions{Now: clock.Now, Overrides: plan.OverrideMap{{Budget: plan.PerUser, ID: "vip"}: vip}})
	h := plan.Middleware(m, plan.MiddlewareOptions{
		Request: func(r *http.Request) (plan.Request, error) {
			p := free
			if r.Method == http.MethodPost {
				p = pro
			}
			return plan.Request{Plan: p, User: r.Header.Get("X-User")}, nil
		},
	})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	check := func(user, method, policy, rl string) {
		t.Helper()
		rec := serveMW(h, user, method)
		if got := rec.Header()["Ratelimit-Policy"]; len(got) != 1 || got[0] != policy {
			t.Errorf("%s %s: RateLimit-Policy %q; want %q", user, method, got, policy)
		}
		if got := rec.Header()["Ratelimit"]; len(got) != 1 || !strings.HasPrefix(got[0], rl+", ") {
			t.Errorf("%s %s: RateLimit %q; want it to start with %q", user, method, got, rl)
		}
	}
	for range 2 {
		check("a", "GET", `"1/s";q=1;w=1, "100/month";q=100;w=2419200`, `"1/s";r=0;t=1`)
		check("b", "POST", `"100/s";q=100;w=1, "1000/h";q=1000;w=3600`, `"100/s";r=99;t=1`)
		check("vip", "GET", `"5/s";q=5;w=1, "100/month";q=100;w=2419200`, `"5/s";r=4;t=1`)
		clock.Advance(time.Second)
	}
	// March has 31 days: w changes with the period.
	clock.Advance(48 * time.Hour)
	check("a", "GET", `"1/s";q=1;w=1, "100/month";q=100;w=2678400`, `"1/s";r=0;t=1`)
	// A refusal: Retry-After, from the cached parts too.
	rec := serveMW(h, "a", "GET")
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "1" || rec.Header().Get("X-Ratelimit-Limit") != "1" {
		t.Errorf("refused: %d %v", rec.Code, rec.Header())
	}
}
