package meter_test

import (
	"context"
	"fmt"
	"time"

	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/usage"
)

func ExampleIdentifier() {
	hour := time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)
	a := meter.Identifier("cus_123", "api_requests", hour, 1)
	b := meter.Identifier("cus_123", "api_requests", hour, 1)
	c := meter.Identifier("cus_123", "api_requests", hour, 2)
	fmt.Println(a == b, a == c, len(a))
	// Output: true false 36
}

// printBackend is a meter.Backend that prints what it would send.
type printBackend struct{}

func (printBackend) Send(_ context.Context, e meter.Event) error {
	fmt.Println(e.CustomerID, e.EventName, e.Value, e.Timestamp.Format(time.RFC3339))
	return nil
}

// The reporter bills the hours a metered customer used, once each. In an
// application, Backend is a stripemeter.Sender and Customers lists the
// subscribers of the metered plan; Start runs it in the background.
func ExampleReporter() {
	ctx := context.Background()
	st, _ := sqlite.Open(ctx, ":memory:")
	defer st.Close()
	st.Migrate(ctx, store.Usage)
	hour := time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)
	st.AddCounts(ctx, usage.Batch{ID: "b1", At: hour, Counts: []usage.Count{ // written by a usage.Meter
		{UserID: "42", KeyID: "keyA", Start: hour, Counts: usage.Counts{OK: 10, Cost: 14}},
		{UserID: "42", KeyID: "keyB", Start: hour, Counts: usage.Counts{OK: 3, Cost: 3}},
		{UserID: "7", KeyID: "keyC", Start: hour, Counts: usage.Counts{OK: 9, Cost: 9}}, // not metered
	}})
	now := hour.Add(time.Hour + 5*time.Minute)
	r := meter.NewReporter(st, meter.Options{
		Customers: func(context.Context) ([]meter.Customer, error) {
			return []meter.Customer{{UserID: "42", CustomerID: "cus_123", EventName: "api_requests"}}, nil
		},
		Backend: printBackend{},
		Now:     func() time.Time { return now },
	})
	for range 2 { // a second pass finds nothing new
		n, _ := r.Enqueue(ctx)
		res, _ := r.Send(ctx)
		fmt.Println(n, "enqueued,", res.Sent, "sent")
	}
	// Output:
	// cus_123 api_requests 17 2026-03-10T10:59:59Z
	// 1 enqueued, 1 sent
	// 0 enqueued, 0 sent
}
