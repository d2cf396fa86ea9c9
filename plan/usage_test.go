package plan_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/plantest"
	"github.com/apikit/apikit/ratelimit"
)

func TestFlusher(t *testing.T) {
	ctx := context.Background()
	day := time.Date(2025, 5, 1, 0, 0, 0, 0, time.UTC)
	u1 := plan.Identity{Budget: plan.PerUser, ID: "1"}

	t.Run("CloseFlushesEverything", func(t *testing.T) {
		store := plantest.NewUsageStore()
		f := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 1000 {
					f.Record(u1, plan.Day, day, 1)
				}
			})
		}
		wg.Wait()
		if err := f.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := store.Total("user:1", plan.Day, day); n != 8000 {
			t.Errorf("stored %d; want 8000", n)
		}
		if st := f.Stats(); st.Pending != 0 || st.Written != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("Periodic", func(t *testing.T) {
		store := plantest.NewUsageStore()
		f := plan.NewFlusher(store, plan.FlusherOptions{Interval: 10 * time.Millisecond})
		defer f.Close(ctx)
		f.Record(u1, plan.Month, day, 3)
		deadline := time.Now().Add(5 * time.Second)
		for store.Total("user:1", plan.Month, day) != 3 {
			if time.Now().After(deadline) {
				t.Fatal("usage not written within 5s at a 10ms interval")
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	t.Run("FailureKeepsUsage", func(t *testing.T) {
		store := plantest.NewUsageStore()
		f := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		f.Record(u1, plan.Day, day, 5)
		store.Fail(errors.New("down"))
		if err := f.Flush(ctx); err == nil {
			t.Fatal("Flush succeeded with the store down")
		}
		store.Fail(nil)
		// Restore counts what is pending locally, so nothing is given back.
		if n, err := f.Restore(ctx, u1, plan.Day, day); err != nil || n != 5 {
			t.Errorf("Restore = %d, %v; want 5 (pending)", n, err)
		}
		f.Record(u1, plan.Day, day, 2)
		if err := f.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if n := store.Total("user:1", plan.Day, day); n != 7 {
			t.Errorf("stored %d; want 7", n)
		}
		if n, err := f.Restore(ctx, u1, plan.Day, day); err != nil || n != 7 {
			t.Errorf("Restore after Close = %d, %v; want 7 (stored)", n, err)
		}
	})
	t.Run("CloseGivesUpWithContext", func(t *testing.T) {
		store := plantest.NewUsageStore()
		f := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
		f.Record(u1, plan.Day, day, 1)
		store.Fail(errors.New("down"))
		cctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		defer cancel()
		if err := f.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Close = %v; want the context's error", err)
		}
	})
}

// TestRestartMidPeriod: a Memory decider restarted mid-period (a new
// Memory and Flusher over the same store) does not give a fresh quota, and
// an identity forgotten to make room is restored, not reset.
func TestRestartMidPeriod(t *testing.T) {
	ctx := context.Background()
	clock := plantest.NewClock(time.Date(2025, 5, 10, 12, 0, 0, 0, time.UTC))
	store := plantest.NewUsageStore()
	p := &plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}, Quota: plan.Quota{Count: 3, Period: plan.Month}}
	f := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
	m := plan.NewMemory(plan.MemoryOptions{Now: clock.Now, Usage: f, MaxIdentities: 1, Shards: 1})
	for range 2 {
		if d, err := m.Decide(ctx, plan.Request{Plan: p, User: "a"}); err != nil || !d.Allowed {
			t.Fatal(d, err)
		}
	}
	// One identity fits: once a's limit has refilled, b takes its place,
	// and a's quota must come back from the Flusher (still pending).
	clock.Advance(time.Minute)
	if d, err := m.Decide(ctx, plan.Request{Plan: p, User: "b"}); err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	if st := m.Stats(); st.Expired != 1 || st.Identities != 1 {
		t.Fatalf("stats = %+v; want a forgotten", st)
	}
	clock.Advance(time.Minute)
	d, err := m.Decide(ctx, plan.Request{Plan: p, User: "a"})
	if err != nil || !d.Allowed {
		t.Fatal(d, err)
	}
	if q, _ := d.Quota(); q.Remaining != 0 {
		t.Errorf("a's quota remaining = %d after 3 of 3", q.Remaining)
	}
	if err := f.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Restart.
	f2 := plan.NewFlusher(store, plan.FlusherOptions{Interval: time.Hour})
	defer f2.Close(ctx)
	m2 := plan.NewMemory(plan.MemoryOptions{Now: clock.Now, Usage: f2})
	if d, err := m2.Decide(ctx, plan.Request{Plan: p, User: "a"}); err != nil || d.Refusal != plan.QuotaExceeded {
		t.Errorf("after the restart: %+v, %v; want QuotaExceeded", d, err)
	}
}
