package usage_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/usage"
)

var t0 = time.Date(2026, 3, 10, 10, 30, 0, 0, time.UTC)

func newMeter(t *testing.T, s usage.Store, opts usage.Options) *usage.Meter {
	t.Helper()
	if opts.FlushInterval == 0 {
		opts.FlushInterval = time.Hour // tests flush by hand
	}
	m := usage.NewMeter(s, opts)
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func TestOutcomeOf(t *testing.T) {
	for status, want := range map[int]usage.Outcome{
		100: usage.OK, 200: usage.OK, 204: usage.OK, 304: usage.OK, 400: usage.ClientError, 404: usage.ClientError,
		429: usage.Limited, 500: usage.ServerError, 503: usage.ServerError,
	} {
		if got := usage.OutcomeOf(status); got != want {
			t.Errorf("OutcomeOf(%d) = %v; want %v", status, got, want)
		}
	}
}

func TestMeterCountsByHourAndOutcome(t *testing.T) {
	s := newMemStore()
	m := newMeter(t, s, usage.Options{})
	m.Record(t0, "1", "k1", usage.OK, 5)
	m.Record(t0.Add(10*time.Minute), "1", "k1", usage.Limited, 0)
	m.Record(t0.Add(40*time.Minute), "1", "k1", usage.OK, 1) // the next hour
	m.Record(t0, "1", "k2", usage.ServerError, 1)
	m.Record(t0, "2", "k3", usage.ClientError, 1)
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Counts(context.Background(), usage.Query{UserID: "1", KeyID: "k1", From: t0.Truncate(time.Hour), To: t0.Add(2 * time.Hour), Granularity: usage.Hour})
	if len(got) != 2 {
		t.Fatalf("k1 has %d hours; want 2: %+v", len(got), got)
	}
	for _, c := range got {
		switch c.Start {
		case time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC):
			if c.Counts != (usage.Counts{OK: 1, Limited: 1, Cost: 5}) {
				t.Errorf("10:00 = %+v", c.Counts)
			}
		case time.Date(2026, 3, 10, 11, 0, 0, 0, time.UTC):
			if c.Counts != (usage.Counts{OK: 1, Cost: 1}) {
				t.Errorf("11:00 = %+v", c.Counts)
			}
		default:
			t.Errorf("unexpected hour %v", c.Start)
		}
	}
	if st := m.Stats(); st.Pending != 0 || st.Written != 4 || st.Flushes != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

// A failed write keeps the counts; a write the store applied but
// reported as failed is retried under the same batch id and counted once.
func TestMeterRetriesWithoutDoubleCounting(t *testing.T) {
	for _, ambiguous := range []bool{false, true} {
		t.Run(fmt.Sprint("ambiguous=", ambiguous), func(t *testing.T) {
			s := newMemStore()
			m := newMeter(t, s, usage.Options{})
			m.Record(t0, "1", "k", usage.OK, 2)
			s.setFail(errDown, ambiguous)
			if err := m.Flush(context.Background()); err == nil {
				t.Fatal("Flush with the store down succeeded")
			}
			m.Record(t0, "1", "k", usage.OK, 3) // recorded meanwhile
			if err := m.Flush(context.Background()); err == nil {
				t.Fatal("second Flush with the store down succeeded")
			}
			s.setFail(nil, false)
			if err := m.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := s.total("1"); got != (usage.Counts{OK: 2, Cost: 5}) {
				t.Errorf("after recovery: %+v; want 2 requests costing 5, each once", got)
			}
			if st := m.Stats(); st.Pending != 0 || st.Failures != 2 {
				t.Errorf("Stats = %+v", st)
			}
		})
	}
}

func TestMeterCloseWritesEverything(t *testing.T) {
	s := newMemStore()
	m := usage.NewMeter(s, usage.Options{FlushInterval: time.Hour})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 1000 {
				m.Record(t0, "1", fmt.Sprintf("k%d", (g*1000+i)%37), usage.OK, 1)
			}
		})
	}
	wg.Wait()
	if err := m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.total("1"); got.OK != 4000 || got.Cost != 4000 {
		t.Errorf("after Close: %+v; want 4000 requests", got)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Errorf("Close again: %v", err)
	}
}

func TestMeterCloseIsBounded(t *testing.T) {
	s := newMemStore()
	s.setFail(errDown, false)
	m := usage.NewMeter(s, usage.Options{FlushInterval: time.Hour})
	m.Record(t0, "1", "k", usage.OK, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := m.Close(ctx); err == nil {
		t.Fatal("Close with the store down succeeded")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v; want it bounded by its context", d)
	}
}

// A flood of distinct keys is bounded: the meter writes early at half its
// counters and drops, counting them, beyond them all.
func TestMeterBoundsMemory(t *testing.T) {
	s := newMemStore()
	s.setFail(errDown, false) // nothing can be written: memory must stay bounded
	m := newMeter(t, s, usage.Options{MaxCounters: 100})
	for i := range 250 {
		m.Record(t0, "1", fmt.Sprintf("k%d", i), usage.OK, 1)
	}
	m.Record(t0, "1", "k0", usage.OK, 1) // counted if its counter is still held
	m.Record(t0, "", "k0", usage.OK, 1)  // no user: not counted
	st := m.Stats()
	if st.Pending != 100 || st.Dropped < 151 {
		t.Errorf("Stats = %+v; want 100 pending and at least 151 dropped", st)
	}
	s.setFail(nil, false)
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Every request was either written or counted as dropped.
	if got := s.total("1"); got.OK+int64(m.Stats().Dropped) != 252 {
		t.Errorf("written %d requests and dropped %d; want 252 in all", got.OK, m.Stats().Dropped)
	}
}

func TestMeterFlushesPeriodically(t *testing.T) {
	s := newMemStore()
	m := usage.NewMeter(s, usage.Options{FlushInterval: 20 * time.Millisecond})
	defer m.Close(context.Background())
	m.Record(time.Now(), "1", "k", usage.OK, 1)
	deadline := time.Now().Add(5 * time.Second)
	for s.total("1").OK != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the periodic flush did not write within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNewMeterPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"NilStore":   func() { usage.NewMeter(nil, usage.Options{}) },
		"Negative":   func() { usage.NewMeter(newMemStore(), usage.Options{FlushInterval: -1}) },
		"NoIdentity": func() { newMeter(t, newMemStore(), usage.Options{}).Middleware(usage.MiddlewareOptions{}) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil {
					t.Error("no panic")
				}
			}()
			f()
		})
	}
}

// Requests without a key (sessions) are counted per user, each user on
// its own counter, concurrently.
func TestMeterCountsKeylessPerUser(t *testing.T) {
	s := newMemStore()
	m := newMeter(t, s, usage.Options{})
	var wg sync.WaitGroup
	for u := range 8 {
		wg.Go(func() {
			for range 100 {
				m.Record(t0, fmt.Sprint(u+1), "", usage.OK, 1)
			}
		})
	}
	wg.Wait()
	if err := m.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	for u := range 8 {
		if got := s.total(fmt.Sprint(u + 1)); got != (usage.Counts{OK: 100, Cost: 100}) {
			t.Errorf("user %d: %+v; want 100 requests of cost 1", u+1, got)
		}
	}
}
