package plan_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// FavoritesAPI's plans, declared in Go.
func ExampleNewCatalog() {
	catalog, err := plan.NewCatalog(
		plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)},
			Quota: plan.Quota{Count: 100, Period: plan.Day}},
		plan.Plan{Name: "hobby", Prices: []string{"price_hobby"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(10)},
			Quota: plan.Quota{Count: 10_000, Period: plan.Month}},
		plan.Plan{Name: "pro", Prices: []string{"price_pro"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(100)},
			Metered: true, MeterEvent: "api_requests"},
	)
	if err != nil {
		panic(err)
	}
	free, _ := catalog.Free()
	pro, _ := catalog.ForPrice("price_pro")
	fmt.Println(free.Name, free.Quota, pro.Name, pro.Limits[0], pro.Metered, pro.MeterEventOr("default_meter"))
	// Output: free 100/day pro 100/s true api_requests
}

func ExampleReadCatalog() {
	catalog, err := plan.ReadCatalog(strings.NewReader(`{"plans": [
		{"name": "free", "prices": [], "limits": ["1/s"], "quota": "100/day", "budget": "user", "scopes": [], "metered": false}
	]}`))
	if err != nil {
		panic(err)
	}
	catalog.WriteTo(os.Stdout)

	_, err = plan.ReadCatalog(strings.NewReader(`{"plans": [{"name": "free", "limits": ["1/s"], "quota": "100/week"}]}`))
	fmt.Println(err)
	// Output:
	// {
	//   "plans": [
	//     {
	//       "name": "free",
	//       "prices": [],
	//       "limits": [
	//         "1/s"
	//       ],
	//       "quota": "100/day",
	//       "budget": "user",
	//       "scopes": [],
	//       "metered": false
	//     }
	//   ]
	// }
	// plan: invalid plan: plans[0].quota (plan "free"): "100/week": unknown period "week"; want N/day, N/month or N/period, such as "100/day"
}

func ExampleParseQuota() {
	q, _ := plan.ParseQuota("10000/month")
	fmt.Println(q.Count, q.Period)
	// Output: 10000 month
}

// A subscription anchored on January 31 refills on the last day of shorter
// months, as Stripe bills it.
func ExamplePeriod_Bounds() {
	anchor := time.Date(2024, time.January, 31, 9, 0, 0, 0, time.UTC)
	start, end := plan.BillingPeriod.Bounds(time.Date(2024, time.March, 1, 0, 0, 0, 0, time.UTC), anchor)
	fmt.Println(start.Format(time.DateTime), "->", end.Format(time.DateTime))
	// Output: 2024-02-29 09:00:00 -> 2024-03-31 09:00:00
}

// Two limits and a quota, decided together; three keys of one user share
// the user's budget.
func ExampleMemory() {
	now := time.Date(2025, time.May, 31, 23, 0, 0, 0, time.UTC)
	m := plan.NewMemory(plan.MemoryOptions{Now: func() time.Time { return now }})
	free := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(5), ratelimit.PerHour(100)},
		Quota: plan.Quota{Count: 3, Period: plan.Day}}
	for _, key := range []string{"key1", "key2", "key3", "key1"} {
		d, _ := m.Decide(context.Background(), plan.Request{Plan: free, User: "ada", Key: key})
		q, _ := d.Quota()
		fmt.Println(key, d.Allowed, d.Refusal, q.Remaining, d.RetryAfter)
	}
	// Output:
	// key1 true  2 0s
	// key2 true  1 0s
	// key3 true  0 0s
	// key1 false quota_exceeded 0 1h0m0s
}

// A request whose cost is known only after its handler ran.
func ExampleMemory_Charge() {
	m := plan.NewMemory(plan.MemoryOptions{})
	p := &plan.Plan{Name: "pro", Limits: []ratelimit.Limit{ratelimit.PerMinute(100)}, Quota: plan.Quota{Count: 1000, Period: plan.Month}}
	ctx := context.Background()
	req := plan.Request{Plan: p, User: "ada", Deferred: true}
	if d, _ := m.Decide(ctx, req); d.Allowed {
		items := 25 // the handler exported 25 items
		req.Deferred, req.Cost = false, items
		d, _ = m.Charge(ctx, req)
		q, _ := d.Quota()
		fmt.Println(d.Policies()[0].Remaining, q.Remaining)
	}
	// Output: 75 975
}

func ExampleOverrideMap() {
	quota := plan.Quota{Count: 1_000_000, Period: plan.Month}
	m := plan.NewMemory(plan.MemoryOptions{Overrides: plan.OverrideMap{
		{Budget: plan.PerUser, ID: "bigcustomer"}: {Limits: []ratelimit.Limit{ratelimit.PerSecond(500)}, Quota: &quota},
	}})
	hobby := &plan.Plan{Name: "hobby", Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}, Quota: plan.Quota{Count: 10_000, Period: plan.Month}}
	d, _ := m.Decide(context.Background(), plan.Request{Plan: hobby, User: "bigcustomer"})
	for _, p := range d.Policies() {
		fmt.Println(p.Name(), p.Remaining)
	}
	// Output:
	// 500/s 499
	// 1000000/month 999999
}

func ExampleDecision_WriteHeaders() {
	now := time.Date(2025, time.May, 31, 23, 59, 0, 0, time.UTC)
	m := plan.NewMemory(plan.MemoryOptions{Now: func() time.Time { return now }})
	free := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)}, Quota: plan.Quota{Count: 100, Period: plan.Day}}
	d, _ := m.Decide(context.Background(), plan.Request{Plan: free, User: "ada"})
	w := httptest.NewRecorder()
	d.WriteHeaders(w.Header())
	for _, k := range []string{"Ratelimit-Policy", "Ratelimit", "X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Reset"} {
		fmt.Println(k+":", strings.Join(w.Header()[k], ", "))
	}
	// Output:
	// Ratelimit-Policy: "1/s";q=1;w=1, "100/day";q=100;w=86400
	// Ratelimit: "1/s";r=0;t=1, "100/day";r=99;t=60
	// X-Ratelimit-Limit: 1
	// X-Ratelimit-Remaining: 0
	// X-Ratelimit-Reset: 1748735941
}

func ExampleWriteRefused() {
	now := time.Date(2025, time.May, 31, 23, 59, 0, 0, time.UTC)
	m := plan.NewMemory(plan.MemoryOptions{Now: func() time.Time { return now }})
	free := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}, Quota: plan.Quota{Count: 1, Period: plan.Day}}
	m.Decide(context.Background(), plan.Request{Plan: free, User: "ada"})
	d, _ := m.Decide(context.Background(), plan.Request{Plan: free, User: "ada"})
	w := httptest.NewRecorder()
	d.WriteHeaders(w.Header())
	if !d.Allowed {
		plan.WriteRefused(w, &d)
	}
	fmt.Println(w.Code, w.Header().Get("Retry-After"))
	fmt.Print(w.Body.String())
	// Output:
	// 429 60
	// {"type":"/problems/quota-exceeded","title":"Quota exceeded","status":429,"detail":"The 1/day quota of plan free is used up; it refills at 2025-06-01T00:00:00Z.","code":"quota_exceeded","plan":"free","retry_after":60}
}

// Quota usage batched to a store, flushed on shutdown.
func ExampleFlusher() {
	store := newPrintingStore()
	flusher := plan.NewFlusher(store, plan.FlusherOptions{Interval: 10 * time.Second})
	now := time.Date(2025, time.May, 10, 12, 0, 0, 0, time.UTC)
	m := plan.NewMemory(plan.MemoryOptions{Usage: flusher, Now: func() time.Time { return now }})
	p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}, Quota: plan.Quota{Count: 100, Period: plan.Day}}
	for range 3 {
		m.Decide(context.Background(), plan.Request{Plan: p, User: "ada", Cost: 2})
	}
	flusher.Close(context.Background()) // at shutdown: nothing is lost
	// Output:
	// restore user:ada day 2025-05-10: 0
	// add user:ada day 2025-05-10: +6
}

type printingStore struct{}

func newPrintingStore() printingStore { return printingStore{} }

func (printingStore) AddUsage(_ context.Context, batch []plan.Usage) error {
	for _, u := range batch {
		fmt.Printf("add %s %s %s: +%d\n", u.Identity, u.Period, u.Start.Format(time.DateOnly), u.Count)
	}
	return nil
}

func (printingStore) Usage(_ context.Context, id string, p plan.Period, start time.Time) (int64, error) {
	fmt.Printf("restore %s %s %s: 0\n", id, p, start.Format(time.DateOnly))
	return 0, nil
}

// FlusherOptions.Trace times every call to the store with any tracer;
// with OpenTelemetry, start a span and end it, recording the error.
func ExampleFlusherOptions_trace() {
	flusher := plan.NewFlusher(newPrintingStore(), plan.FlusherOptions{
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			fmt.Println("start", name)
			return ctx, func(err error) { fmt.Println("end", name, err) }
		},
	})
	day := time.Date(2025, time.May, 10, 0, 0, 0, 0, time.UTC)
	flusher.Record(plan.Identity{Budget: plan.PerUser, ID: "ada"}, plan.Day, day, 1)
	flusher.Close(context.Background())
	// Output:
	// start plan.flush
	// add user:ada day 2025-05-10: +1
	// end plan.flush <nil>
}
