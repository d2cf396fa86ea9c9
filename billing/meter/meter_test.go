package meter_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/billing/meter"
)

func TestIdentifier(t *testing.T) {
	h := time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for _, c := range [][4]any{
		{"cus_1", "api", h, 1}, {"cus_1", "api", h, 2}, {"cus_1", "api", h.Add(time.Hour), 1},
		{"cus_2", "api", h, 1}, {"cus_1", "api2", h, 1},
		{"cus_1a", "pi", h, 1}, // no ambiguity between the parts
	} {
		id := meter.Identifier(c[0].(string), c[1].(string), c[2].(time.Time), c[3].(int))
		if seen[id] || !strings.HasPrefix(id, "mev_") || len(id) > 100 {
			t.Errorf("Identifier%v = %q: duplicate or malformed", c, id)
		}
		seen[id] = true
	}
	if meter.Identifier("cus_1", "api", h, 1) != meter.Identifier("cus_1", "api", h.In(time.FixedZone("X", 3600)), 1) {
		t.Error("the same instant in another zone gives another identifier")
	}
}

func TestNewReporterPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.HasPrefix(r.(string), "meter: ") {
			t.Errorf("panic = %v", r)
		}
	}()
	meter.NewReporter(nil, meter.Options{})
}

// Start runs a pass every Interval until Close, which stops it: no pass
// after Close returned. Close without Start returns and runs nothing.
func TestReporterLoop(t *testing.T) {
	var passes atomic.Int64
	customers := func(context.Context) ([]meter.Customer, error) { passes.Add(1); return nil, nil }
	r := meter.NewReporter(nopStore{}, meter.Options{Customers: customers, Backend: nopBackend{}, Interval: time.Millisecond})
	r.Start()
	r.Start() // does nothing
	deadline := time.Now().Add(10 * time.Second)
	for passes.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	r.Close()
	r.Close()
	n := passes.Load()
	if n < 3 {
		t.Fatalf("%d passes in 10 s at an Interval of 1 ms", n)
	}
	time.Sleep(10 * time.Millisecond)
	if m := passes.Load(); m != n {
		t.Errorf("%d passes after Close returned", m-n)
	}

	passes.Store(0)
	meter.NewReporter(nopStore{}, meter.Options{Customers: customers, Backend: nopBackend{}}).Close()
	if n := passes.Load(); n != 0 {
		t.Errorf("Close without Start ran %d passes", n)
	}
}

type nopBackend struct{}

func (nopBackend) Send(context.Context, meter.Event) error { return nil }

type nopStore struct{ meter.Store }

func (nopStore) ClaimMeterEvents(context.Context, time.Time, time.Time, int) ([]meter.Event, error) {
	return nil, nil
}

// costStore is an outbox with nothing billed yet, over fixed costs,
// keeping what is enqueued.
type costStore struct {
	meter.Store
	costs    []meter.SliceCost
	enqueued []meter.Event
}

func (s *costStore) BilledMeterUsage(context.Context, time.Time, time.Time) ([]meter.Billed, error) {
	return nil, nil
}

func (s *costStore) HourlyCost(_ context.Context, users []string, _, _ time.Time) ([]meter.SliceCost, error) {
	var out []meter.SliceCost
	for _, c := range s.costs {
		if slices.Contains(users, c.UserID) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (s *costStore) EnqueueMeterEvents(_ context.Context, es []meter.Event) (int, error) {
	s.enqueued = append(s.enqueued, es...)
	return len(es), nil
}

// A customer that Options.Customers returns without its Stripe customer
// is named in the error, and the other customers are billed all the same:
// one bad row must not leave every hour unbilled until it falls out of
// Lookback.
func TestEnqueueSkipsMalformedCustomer(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 30, 0, 0, time.UTC)
	hour := time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)
	st := &costStore{costs: []meter.SliceCost{{UserID: "1", Slice: hour, Cost: 7}, {UserID: "2", Slice: hour, Cost: 5}}}
	r := meter.NewReporter(st, meter.Options{
		Customers: func(context.Context) ([]meter.Customer, error) {
			return []meter.Customer{{UserID: "1", EventName: "api"}, {UserID: "2", CustomerID: "cus_2", EventName: "api"}}, nil
		},
		Backend: nopBackend{},
		Now:     func() time.Time { return now },
	})
	n, err := r.Enqueue(context.Background())
	if err == nil || !strings.Contains(err.Error(), `UserID:1 `) {
		t.Errorf("Enqueue error = %v; want one naming user 1", err)
	}
	if n != 1 || len(st.enqueued) != 1 || st.enqueued[0].CustomerID != "cus_2" || st.enqueued[0].Value != 5 {
		t.Errorf("Enqueue = %d, enqueued %+v; want user 2's 5 units", n, st.enqueued)
	}
}
