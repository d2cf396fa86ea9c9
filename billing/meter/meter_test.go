package meter_test

import (
	"context"
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
