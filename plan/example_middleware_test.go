package plan_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// The middleware behind an authentication middleware: the plan comes from
// the user's subscription, a POST costs 5, an export is charged by the
// items it returned, and GET /v1/me shows the quota.
func ExampleMiddleware() {
	catalog := plan.MustCatalog(
		plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(50)}, Quota: plan.Quota{Count: 100, Period: plan.Day}},
	)
	now := time.Date(2026, time.March, 10, 13, 0, 0, 0, time.UTC) // 11 hours to the daily refill
	decider := plan.NewMemory(plan.MemoryOptions{Now: func() time.Time { return now }})

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/favorites", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /v1/export", func(w http.ResponseWriter, r *http.Request) {
		items := 12 // what the export wrote
		plan.SetCost(r.Context(), items)
	})
	mux.HandleFunc("GET /v1/me", func(w http.ResponseWriter, r *http.Request) {
		d, _ := plan.DecisionFrom(r.Context())
		q, _ := d.Quota()
		json.NewEncoder(w).Encode(map[string]any{"plan": d.Plan, "quota_remaining": q.Remaining})
	})

	api := plan.Middleware(decider, plan.MiddlewareOptions{
		Request: func(r *http.Request) (plan.Request, error) {
			// In an application: apikey.PrincipalFrom(r.Context()) and the
			// plan the user's subscription selects (billing).
			user := r.Header.Get("X-Demo-User")
			p, ok := catalog.Free()
			if user == "" || !ok {
				return plan.Request{}, &plan.StatusError{Status: http.StatusForbidden, Code: "no_plan", Detail: "No plan covers this key."}
			}
			return plan.Request{Plan: p, User: user}, nil
		},
		Cost: func(r *http.Request) int {
			if r.Method == http.MethodPost {
				return 5
			}
			return 1
		},
		Deferred: func(r *http.Request) bool { return r.URL.Path == "/v1/export" },
	})(mux)

	for _, call := range []struct{ method, path string }{
		{"POST", "/v1/favorites"}, {"GET", "/v1/export"}, {"GET", "/v1/me"},
	} {
		r := httptest.NewRequest(call.method, call.path, nil)
		r.Header.Set("X-Demo-User", "ada")
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		line := fmt.Sprint(call.method, " ", call.path, " ", w.Code, " ", w.Header().Get("RateLimit"), " ", w.Body.String())
		fmt.Println(strings.TrimSpace(line))
	}
	// Output:
	// POST /v1/favorites 201 "50/s";r=45;t=1, "100/day";r=95;t=39600
	// GET /v1/export 200 "50/s";r=45;t=1, "100/day";r=95;t=39600
	// GET /v1/me 200 "50/s";r=32;t=1, "100/day";r=82;t=39600 {"plan":"free","quota_remaining":82}
}

// A dashboard shows a user's budgets without spending any.
func ExampleMemory_Peek() {
	m := plan.NewMemory(plan.MemoryOptions{})
	hobby := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}, Quota: plan.Quota{Count: 10_000, Period: plan.Month}}
	ctx := context.Background()
	for range 3 {
		m.Decide(ctx, plan.Request{Plan: hobby, User: "ada", Cost: 2})
	}
	d, _ := m.Peek(ctx, plan.Request{Plan: hobby, User: "ada"})
	q, _ := d.Quota()
	fmt.Println(d.Plan, "used", q.Quota.Count-q.Remaining, "of", q.Quota, "until", d.PeriodEnd.Format(time.DateOnly) != "")
	// Output: hobby used 6 of 10000/month until true
}
