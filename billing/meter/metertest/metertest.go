// Package metertest is the conformance suite of package billing/meter's
// outbox: what [meter.Store] means, written as tests. Package
// store/storetest runs it on every backend of this module. The suite also
// needs to write usage, so a backend is a [usage.Store] too.
package metertest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/usage"
)

// Backend is an outbox that also keeps usage counts.
type Backend interface {
	meter.Store
	usage.Store
}

// Slice0 is the hour the tests bill.
var Slice0 = time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)

// Event returns a pending event of customer's seq-th event in slice.
func Event(customer string, slice time.Time, seq int, value int64) meter.Event {
	return meter.Event{
		Identifier: meter.Identifier(customer, "api_requests", slice, seq),
		UserID:     "u-" + customer, CustomerID: customer, EventName: "api_requests",
		Slice: slice, Seq: seq, Value: value, Timestamp: slice.Add(time.Hour - time.Second),
		State: meter.Pending, NextAttempt: slice.Add(time.Hour), CreatedAt: slice.Add(time.Hour),
	}
}

// claim leases the events due at now until leaseUntil; an error fails
// the test, so that a failing store cannot pass for one with nothing due.
func claim(t *testing.T, s meter.Store, now, leaseUntil time.Time, limit int) []meter.Event {
	t.Helper()
	got, err := s.ClaimMeterEvents(conformance.Context(t), now, leaseUntil, limit)
	if err != nil {
		t.Fatalf("ClaimMeterEvents(%v, %v, %d): %v", now, leaseUntil, limit, err)
	}
	return got
}

// Run runs the suite; newBackend returns a fresh, migrated, empty store
// for each subtest.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	due := Slice0.Add(2 * time.Hour)

	t.Run("EnqueueOnce", func(t *testing.T) {
		s := newBackend(t)
		evs := []meter.Event{Event("cus_a", Slice0, 1, 5), Event("cus_b", Slice0, 1, 7)}
		if n, err := s.EnqueueMeterEvents(conformance.Context(t), evs); err != nil || n != 2 {
			t.Fatalf("EnqueueMeterEvents = %d, %v; want 2", n, err)
		}
		// Again, and a different value under the same (customer, meter,
		// slice, seq): nothing is added.
		again := Event("cus_a", Slice0, 1, 99)
		if n, err := s.EnqueueMeterEvents(conformance.Context(t), append(evs, again)); err != nil || n != 0 {
			t.Fatalf("EnqueueMeterEvents again = %d, %v; want 0", n, err)
		}
		billed, err := s.BilledMeterUsage(conformance.Context(t), Slice0, Slice0.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]meter.Billed{}
		for _, b := range billed {
			got[b.CustomerID] = b
		}
		if len(got) != 2 || got["cus_a"].Value != 5 || got["cus_a"].Events != 1 || got["cus_b"].Value != 7 {
			t.Errorf("BilledMeterUsage = %+v", billed)
		}
		if n, err := s.EnqueueMeterEvents(conformance.Context(t), []meter.Event{{Identifier: "x"}}); err == nil {
			t.Errorf("EnqueueMeterEvents of an invalid event = %d, nil; want an error", n)
		}
	})

	t.Run("ClaimExclusive", func(t *testing.T) {
		s := newBackend(t)
		var evs []meter.Event
		for i := range 20 {
			evs = append(evs, Event(fmt.Sprintf("cus_%02d", i), Slice0, 1, 1))
		}
		if _, err := s.EnqueueMeterEvents(conformance.Context(t), evs); err != nil {
			t.Fatal(err)
		}
		var (
			mu   sync.Mutex
			seen = map[string]int{}
		)
		conformance.Together(4, func(int) {
			got, err := s.ClaimMeterEvents(conformance.Context(t), due, due.Add(time.Minute), 20)
			if err != nil {
				t.Errorf("ClaimMeterEvents: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, e := range got {
				seen[e.Identifier]++
				if e.Attempts != 1 || e.State != meter.Pending {
					t.Errorf("claimed %+v; want attempts 1, pending", e)
				}
			}
		})
		if len(seen) != 20 {
			t.Errorf("4 concurrent claimers leased %d distinct events; want 20", len(seen))
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("event %s leased %d times at once", id, n)
			}
		}
		if got := claim(t, s, due, due.Add(time.Minute), 20); len(got) != 0 {
			t.Errorf("claimed %d leased events", len(got))
		}
		// After the lease, they are due again.
		if got := claim(t, s, due.Add(time.Minute), due.Add(2*time.Minute), 20); len(got) != 20 || got[0].Attempts != 2 {
			t.Errorf("after the lease: claimed %d; want 20 with attempts 2", len(got))
		}
		// Not yet due.
		if _, err := s.EnqueueMeterEvents(conformance.Context(t), []meter.Event{Event("cus_late", Slice0.Add(5*time.Hour), 1, 1)}); err != nil {
			t.Fatal(err)
		}
		if got := claim(t, s, due.Add(2*time.Minute), due.Add(3*time.Minute), 50); len(got) != 20 {
			t.Errorf("claimed %d; want the 20 due, not the later one", len(got))
		}
	})

	t.Run("Outcomes", func(t *testing.T) {
		s := newBackend(t)
		a, b, c := Event("cus_a", Slice0, 1, 1), Event("cus_b", Slice0, 1, 2), Event("cus_c", Slice0, 1, 3)
		if _, err := s.EnqueueMeterEvents(conformance.Context(t), []meter.Event{a, b, c}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ClaimMeterEvents(conformance.Context(t), due, due.Add(time.Minute), 10); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkMeterEventSent(conformance.Context(t), a.Identifier, due); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkMeterEventFailed(conformance.Context(t), b.Identifier, meter.Failure{Error: "stripe: 400 invalid customer", Permanent: true, NextAttempt: due}); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkMeterEventFailed(conformance.Context(t), c.Identifier, meter.Failure{Error: "connection refused", NextAttempt: due.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		// A failure recorded after another sender marked it sent keeps it sent.
		if err := s.MarkMeterEventFailed(conformance.Context(t), a.Identifier, meter.Failure{Error: "late", NextAttempt: due}); err != nil {
			t.Fatal(err)
		}
		for state, want := range map[meter.State]string{meter.Sent: a.Identifier, meter.Rejected: b.Identifier, meter.Pending: c.Identifier} {
			got, err := s.MeterEvents(conformance.Context(t), state, 10)
			if err != nil || len(got) != 1 || got[0].Identifier != want {
				t.Errorf("MeterEvents(%s) = %+v, %v; want %s", state, got, err, want)
				continue
			}
			switch state {
			case meter.Rejected:
				if got[0].LastError != "stripe: 400 invalid customer" {
					t.Errorf("rejected event's error = %q", got[0].LastError)
				}
			case meter.Sent:
				if !got[0].SentAt.Equal(due) || got[0].Value != 1 || got[0].CustomerID != "cus_a" || !got[0].Slice.Equal(Slice0) {
					t.Errorf("sent event = %+v", got[0])
				}
			}
		}
		if got := claim(t, s, due.Add(30*time.Minute), due.Add(31*time.Minute), 10); len(got) != 0 {
			t.Errorf("claimed %d before the failed event's next attempt", len(got))
		}
		if got := claim(t, s, due.Add(time.Hour), due.Add(61*time.Minute), 10); len(got) != 1 || got[0].Identifier != c.Identifier {
			t.Errorf("at the next attempt: claimed %+v; want the failed one", got)
		}
		if ok, err := s.RequeueMeterEvent(conformance.Context(t), b.Identifier, due); err != nil || !ok {
			t.Errorf("RequeueMeterEvent(rejected) = %v, %v", ok, err)
		}
		if ok, err := s.RequeueMeterEvent(conformance.Context(t), a.Identifier, due); err != nil || ok {
			t.Errorf("RequeueMeterEvent(sent) = %v, %v; want false", ok, err)
		}
		if err := s.MarkMeterEventSent(conformance.Context(t), "mev_missing", due); err == nil {
			t.Error("MarkMeterEventSent of a missing event succeeded")
		}
	})

	t.Run("HourlyCost", func(t *testing.T) {
		s := newBackend(t)
		err := s.AddCounts(conformance.Context(t), usage.Batch{ID: "hc-1", At: Slice0, Counts: []usage.Count{
			{UserID: "1", KeyID: "a", Start: Slice0, Counts: usage.Counts{OK: 3, Cost: 3}},
			{UserID: "1", KeyID: "b", Start: Slice0, Counts: usage.Counts{OK: 1, Cost: 5}},
			{UserID: "1", KeyID: "a", Start: Slice0.Add(time.Hour), Counts: usage.Counts{OK: 1, Cost: 1}},
			{UserID: "1", KeyID: "a", Start: Slice0.Add(2 * time.Hour), Counts: usage.Counts{Limited: 4}}, // no cost
			{UserID: "2", KeyID: "c", Start: Slice0, Counts: usage.Counts{OK: 9, Cost: 9}},
			{UserID: "3", KeyID: "d", Start: Slice0, Counts: usage.Counts{OK: 9, Cost: 9}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.HourlyCost(conformance.Context(t), []string{"1", "2"}, Slice0, Slice0.Add(3*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int64{"1@10": 8, "1@11": 1, "2@10": 9}
		if len(got) != len(want) {
			t.Errorf("HourlyCost = %+v; want %v", got, want)
		}
		for _, c := range got {
			if k := fmt.Sprintf("%s@%d", c.UserID, c.Slice.Hour()); want[k] != c.Cost {
				t.Errorf("HourlyCost has %s = %d; want %d", k, c.Cost, want[k])
			}
		}
	})
}
