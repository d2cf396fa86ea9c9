package meter_test

import (
	"context"
	"strings"
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

// Start and Close run and stop the loop; Close without Start returns.
func TestReporterLoop(t *testing.T) {
	r := meter.NewReporter(nopStore{}, meter.Options{
		Customers: func(context.Context) ([]meter.Customer, error) { return nil, nil },
		Backend:   nopBackend{}, Interval: time.Millisecond,
	})
	r.Start()
	time.Sleep(5 * time.Millisecond)
	r.Close()
	r.Close()
	meter.NewReporter(nopStore{}, meter.Options{Customers: func(context.Context) ([]meter.Customer, error) { return nil, nil }, Backend: nopBackend{}}).Close()
}

type nopBackend struct{}

func (nopBackend) Send(context.Context, meter.Event) error { return nil }

type nopStore struct{ meter.Store }

func (nopStore) ClaimMeterEvents(context.Context, time.Time, time.Time, int) ([]meter.Event, error) {
	return nil, nil
}
