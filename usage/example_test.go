package usage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/usage"
)

// A service counts its API's requests per key, behind authentication and
// in front of its limits, and serves GET /v1/usage from the same counts.
func Example() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		panic(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Usage); err != nil {
		panic(err)
	}
	now := time.Date(2026, 3, 10, 13, 5, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	meter := usage.NewMeter(st, usage.Options{Now: clock})
	defer meter.Close(ctx)

	// In an application: apikey.PrincipalFrom(r.Context()).
	who := func(r *http.Request) (keyID, userID string, ok bool) {
		return r.Header.Get("X-Demo-Key"), "42", r.Header.Get("X-Demo-Key") != ""
	}
	api := http.NewServeMux()
	api.HandleFunc("POST /v1/favorites", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	api.HandleFunc("GET /v1/favorites", func(w http.ResponseWriter, r *http.Request) {})
	api.Handle("GET /v1/usage", usage.NewHandler(st, usage.HandlerOptions{
		User: func(r *http.Request) (string, bool) { _, user, ok := who(r); return user, ok },
		Now:  clock,
	}))
	// The same costs as the plan's: a POST costs 5, a read 1.
	handler := meter.Middleware(usage.MiddlewareOptions{
		Identity: who,
		Cost: func(r *http.Request) int64 {
			if r.Method == http.MethodPost {
				return 5
			}
			return 1
		},
	})(api)

	call := func(method, path, key string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.Header.Set("X-Demo-Key", key)
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)
		return w
	}
	call("POST", "/v1/favorites", "keyA")
	call("GET", "/v1/favorites", "keyA")
	call("GET", "/v1/favorites", "keyB")
	call("GET", "/v1/nothing", "keyB")
	meter.Flush(ctx) // every 10 s by default

	var resp usage.Response
	json.NewDecoder(call("GET", "/v1/usage?granularity=hour&from=2026-03-10&to=2026-03-11", "keyA").Body).Decode(&resp)
	fmt.Println("total:", resp.Totals.Requests, "requests, cost", resp.Totals.Cost)
	for _, k := range resp.Keys {
		p := k.Series[0]
		fmt.Println(k.KeyID, p.Start.Format(time.TimeOnly), "ok", p.OK, "client errors", p.ClientError, "cost", p.Cost)
	}
	// Output:
	// total: 4 requests, cost 8
	// keyA 13:00:00 ok 2 client errors 0 cost 6
	// keyB 13:00:00 ok 1 client errors 1 cost 2
}

// A middleware inside the plan's reports the cost the plan spent, so that
// usage counts exactly what enforcement charged.
func ExampleSetCost() {
	meter := usage.NewMeter(newMemStore(), usage.Options{})
	defer meter.Close(context.Background())
	reportCost := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// In an application: d, ok := plan.DecisionFrom(r.Context());
			// usage.SetCost(r.Context(), int64(d.Cost)).
			usage.SetCost(r.Context(), 3)
			next.ServeHTTP(w, r)
		})
	}
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	h = meter.Middleware(usage.MiddlewareOptions{Identity: identity})(reportCost(h))
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("X-Key", "k")
	r.Header.Set("X-User", "42")
	h.ServeHTTP(httptest.NewRecorder(), r)
	fmt.Println(meter.Stats().Pending, "counter")
	// Output: 1 counter
}

func ExampleParseQuery() {
	periodStart := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	v, _ := url.ParseQuery("from=2026-03-10T08:30:00Z&to=2026-03-11&granularity=hour")
	q, err := usage.ParseQuery(v, "42", periodStart, periodStart.AddDate(0, 1, 0), usage.QueryLimits{})
	fmt.Println(q.From.Format(time.RFC3339), q.To.Format(time.RFC3339), q.Granularity, err)

	v, _ = url.ParseQuery("granularity=minute&from=yesterday")
	_, err = usage.ParseQuery(v, "42", periodStart, periodStart.AddDate(0, 1, 0), usage.QueryLimits{})
	fmt.Println(err)
	// Output:
	// 2026-03-10T08:00:00Z 2026-03-11T00:00:00Z hour <nil>
	// usage: invalid query: granularity: want "hour" or "day"; from: want an RFC 3339 time ("2026-03-01T00:00:00Z") or a date ("2026-03-01")
}

// Quota alerts at 80 % and 100 %, once per period across instances; the
// send is the application's mailer.
func ExampleAlerts() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	st.Migrate(ctx, store.Usage)
	alerts := usage.NewAlerts(st, usage.AlertOptions{
		Send: func(ctx context.Context, a usage.Alert) error {
			fmt.Printf("to user %s: %s\n", a.UserID, a.Subject)
			return nil
		},
	})
	defer alerts.Close()
	start := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for _, used := range []int64{700, 810, 820, 1000, 1001} {
		alerts.Observe("42", start, start.AddDate(0, 1, 0), used, 1000) // on every request: never waits
		alerts.Drain()                                                  // in a test: handle what is queued now
	}
	// Output:
	// to user 42: You have used 80% of your API quota
	// to user 42: You have used all of your API quota
}

func ExampleRetention_Apply() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	st.Migrate(ctx, store.Usage)
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	st.AddCounts(ctx, usage.Batch{ID: "b1", At: now, Counts: []usage.Count{
		{UserID: "42", KeyID: "k", Start: now.AddDate(0, 0, -45), Counts: usage.Counts{OK: 3}},
		{UserID: "42", KeyID: "k", Start: now.Add(-time.Hour), Counts: usage.Counts{OK: 1}},
	}})
	rolled, pruned, err := usage.Retention{}.Apply(ctx, st, now) // hours kept 30 days, days 400
	fmt.Println(rolled, pruned, err)
	// Output: 1 0 <nil>
}

// An operator tool prints the same numbers as GET /v1/usage with Report.
func ExampleReport() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	st.Migrate(ctx, store.Usage)
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	st.AddCounts(ctx, usage.Batch{ID: "b1", At: now, Counts: []usage.Count{
		{UserID: "42", KeyID: "k1", Start: now.Add(-time.Hour), Counts: usage.Counts{OK: 3, Cost: 7}},
		{UserID: "42", KeyID: "k2", Start: now.AddDate(0, 0, -2), Counts: usage.Counts{Limited: 1, Cost: 1}},
	}})
	quota := usage.Quota{Plan: "hobby", Limit: 10_000, Used: 8} // from the application's plan decider
	resp, err := usage.Report(ctx, st, "42", url.Values{"granularity": {"day"}}, quota, usage.ReportOptions{Now: now})
	if err != nil {
		panic(err)
	}
	fmt.Println(resp.Plan, resp.From.Format(time.DateOnly), resp.To.Format(time.DateOnly), resp.Totals.Requests, resp.Totals.Cost, resp.Quota.Remaining)
	for _, k := range resp.Keys {
		fmt.Println(k.KeyID, k.Totals.Requests, len(k.Series))
	}
	_, err = usage.Report(ctx, st, "42", url.Values{"granularity": {"week"}}, quota, usage.ReportOptions{Now: now})
	fmt.Println(errors.Is(err, usage.ErrInvalidQuery))
	// Output:
	// hobby 2026-03-01 2026-04-01 4 8 9992
	// k1 3 1
	// k2 1 1
	// true
}
