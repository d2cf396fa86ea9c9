package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
)

// PlanStore is package plan's durable state as package store keeps it:
// quota usage ([plan.UsageStore], for a plan.Flusher) and per-identity
// overrides. It is optional: [Run] tests it when the backend implements
// it, and [RunInstances] tests it across two handles on one database.
type PlanStore interface {
	plan.UsageStore
	SetOverride(ctx context.Context, id plan.Identity, o plan.Override, at time.Time) error
	DeleteOverride(ctx context.Context, id plan.Identity) (found bool, err error)
	Overrides(ctx context.Context) (plan.OverrideMap, error)
}

var _ PlanStore = (*store.Store)(nil)

// periodStart is a quota period's start as deciders pass it: UTC, whole
// seconds (the store keeps whole seconds).
var periodStart = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func usageOf(t *testing.T, s plan.UsageStore, identity string, p plan.Period, start time.Time) int64 {
	t.Helper()
	n, err := s.Usage(conformance.Context(t), identity, p, start)
	if err != nil {
		t.Fatalf("Usage(%s, %v, %v): %v", identity, p, start, err)
	}
	return n
}

func testPlans(t *testing.T, newBackend func(t *testing.T) Backend) {
	plans := func(t *testing.T) PlanStore { return implements[PlanStore](t, newBackend(t)) }

	t.Run("UsageAddsUp", func(t *testing.T) {
		s := plans(t)
		ctx := conformance.Context(t)
		if n := usageOf(t, s, "user:1", plan.Month, periodStart); n != 0 {
			t.Fatalf("Usage before any AddUsage = %d; want 0", n)
		}
		next := periodStart.AddDate(0, 1, 0)
		batch := []plan.Usage{
			{Identity: "user:1", Period: plan.Month, Start: periodStart, Count: 5},
			{Identity: "user:1", Period: plan.Month, Start: periodStart, Count: 7}, // one key twice in a batch
			{Identity: "user:1", Period: plan.Month, Start: next, Count: 1},
			{Identity: "user:1", Period: plan.Day, Start: periodStart, Count: 2},
			{Identity: "key:abc", Period: plan.Month, Start: periodStart, Count: 3},
			{Identity: "user:2", Period: plan.BillingPeriod, Start: periodStart.Add(13*time.Hour + 7*time.Second), Count: 4},
		}
		if err := s.AddUsage(ctx, batch); err != nil {
			t.Fatalf("AddUsage: %v", err)
		}
		if err := s.AddUsage(ctx, batch[:1]); err != nil {
			t.Fatalf("AddUsage again: %v", err)
		}
		if err := s.AddUsage(ctx, nil); err != nil {
			t.Fatalf("AddUsage(nil): %v", err)
		}
		for _, c := range []struct {
			id    string
			p     plan.Period
			start time.Time
			want  int64
		}{
			{"user:1", plan.Month, periodStart, 17},
			{"user:1", plan.Month, next, 1},
			{"user:1", plan.Day, periodStart, 2},
			{"key:abc", plan.Month, periodStart, 3},
			{"user:2", plan.BillingPeriod, periodStart.Add(13*time.Hour + 7*time.Second), 4},
			{"user:2", plan.BillingPeriod, periodStart, 0},
			{"user:3", plan.Month, periodStart, 0},
			// The same instant in another zone is the same period.
			{"user:1", plan.Month, periodStart.In(time.FixedZone("X", 3600)), 17},
		} {
			if n := usageOf(t, s, c.id, c.p, c.start); n != c.want {
				t.Errorf("Usage(%s, %v, %v) = %d; want %d", c.id, c.p, c.start, n, c.want)
			}
		}
	})

	t.Run("AllOrNothing", func(t *testing.T) {
		s := plans(t)
		err := s.AddUsage(conformance.Context(t), []plan.Usage{
			{Identity: "user:1", Period: plan.Month, Start: periodStart, Count: 5},
			{Identity: "", Period: plan.Month, Start: periodStart, Count: 1},
		})
		if err == nil {
			t.Fatal("AddUsage with an entry without identity succeeded")
		}
		if n := usageOf(t, s, "user:1", plan.Month, periodStart); n != 0 {
			t.Errorf("a failed batch wrote %d units; want none", n)
		}
	})

	t.Run("LargeBatch", func(t *testing.T) {
		s := plans(t)
		var batch []plan.Usage
		for i := range 1000 {
			batch = append(batch, plan.Usage{Identity: fmt.Sprintf("key:%04d", i%450), Period: plan.Day, Start: periodStart, Count: 1})
		}
		if err := s.AddUsage(conformance.Context(t), batch); err != nil {
			t.Fatalf("AddUsage of %d entries: %v", len(batch), err)
		}
		for _, i := range []int{0, 49, 50, 449} {
			want := int64(2)
			if i < 1000-2*450 {
				want = 3
			}
			if n := usageOf(t, s, fmt.Sprintf("key:%04d", i), plan.Day, periodStart); n != want {
				t.Errorf("Usage(key:%04d) = %d; want %d", i, n, want)
			}
		}
	})

	t.Run("ConcurrentAddUsage", func(t *testing.T) {
		s := plans(t)
		concurrentUsage(t, s, s)
	})

	t.Run("Overrides", func(t *testing.T) {
		s := plans(t)
		testOverrides(t, s, s)
	})
}

// concurrentUsage adds usage through a and b at once, in batches that
// overlap in different orders (which deadlocks a store that does not
// write in a fixed order), and checks that every unit counted.
func concurrentUsage(t *testing.T, a, b PlanStore) {
	t.Helper()
	const (
		workers = 6
		batches = 15
		ids     = 8
	)
	errs := make(chan error, workers*batches)
	conformance.Together(workers, func(w int) {
		s := a
		if w%2 == 1 {
			s = b
		}
		r := rand.New(rand.NewPCG(uint64(w), 1))
		for range batches {
			batch := make([]plan.Usage, 0, ids)
			for _, i := range r.Perm(ids) {
				batch = append(batch, plan.Usage{Identity: fmt.Sprintf("user:%d", i), Period: plan.Month, Start: periodStart, Count: int64(i + 1)})
			}
			if err := s.AddUsage(context.Background(), batch); err != nil {
				errs <- err
				return
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Errorf("concurrent AddUsage: %v", err)
	}
	for i := range ids {
		want := int64(workers * batches * (i + 1))
		for _, s := range []PlanStore{a, b} {
			if n := usageOf(t, s, fmt.Sprintf("user:%d", i), plan.Month, periodStart); n != want {
				t.Errorf("Usage(user:%d) = %d; want %d: additions were lost or doubled", i, n, want)
			}
		}
	}
}

// testOverrides sets overrides through w and reads them through r.
func testOverrides(t *testing.T, w, r PlanStore) {
	t.Helper()
	ctx := conformance.Context(t)
	load := func() plan.OverrideMap {
		t.Helper()
		m, err := r.Overrides(ctx)
		if err != nil {
			t.Fatalf("Overrides: %v", err)
		}
		return m
	}
	if m := load(); len(m) != 0 {
		t.Fatalf("Overrides of an empty store = %v; want none", m)
	}
	q := plan.Quota{Count: 50_000, Period: plan.BillingPeriod}
	user := plan.Identity{Budget: plan.PerUser, ID: "42"}
	key := plan.Identity{Budget: plan.PerKey, ID: "4tQ2x9LmZpB7"}
	onlyLimits := plan.Identity{Budget: plan.PerKey, ID: "only:limits"} // ids may hold ':'
	want := plan.OverrideMap{
		user:       {Limits: []ratelimit.Limit{ratelimit.MustParseLimit("50/s"), ratelimit.MustParseLimit("100/min burst 20")}, Quota: &q},
		key:        {Quota: &plan.Quota{}}, // no quota at all
		onlyLimits: {Limits: []ratelimit.Limit{ratelimit.PerHour(7)}},
	}
	for id, o := range want {
		if err := w.SetOverride(ctx, id, o, epoch); err != nil {
			t.Fatalf("SetOverride(%v): %v", id, err)
		}
	}
	if got := load(); !reflect.DeepEqual(got, want) {
		t.Errorf("Overrides = %v; want %v", got, want)
	}
	// Setting again replaces the whole override.
	want[user] = plan.Override{Quota: &plan.Quota{Count: 10, Period: plan.Day}}
	if err := w.SetOverride(ctx, user, want[user], epoch.Add(time.Minute)); err != nil {
		t.Fatalf("SetOverride(replace): %v", err)
	}
	if got := load(); !reflect.DeepEqual(got, want) {
		t.Errorf("after replacing: Overrides = %v; want %v", got, want)
	}
	// Invalid overrides and identities are refused and change nothing.
	for name, c := range map[string]struct {
		id plan.Identity
		o  plan.Override
	}{
		"NoLimits":      {user, plan.Override{Limits: []ratelimit.Limit{}}},
		"ZeroLimit":     {user, plan.Override{Limits: []ratelimit.Limit{{}}}},
		"BadQuota":      {user, plan.Override{Quota: &plan.Quota{Count: -1, Period: plan.Day}}},
		"EmptyID":       {plan.Identity{Budget: plan.PerUser}, plan.Override{}},
		"UnknownBudget": {plan.Identity{Budget: 7, ID: "1"}, plan.Override{}},
	} {
		if err := w.SetOverride(ctx, c.id, c.o, epoch); err == nil {
			t.Errorf("SetOverride %s succeeded; want an error", name)
		}
	}
	if got := load(); !reflect.DeepEqual(got, want) {
		t.Errorf("after refused SetOverrides: Overrides = %v; want %v", got, want)
	}
	if found, err := w.DeleteOverride(ctx, key); err != nil || !found {
		t.Errorf("DeleteOverride = %v, %v; want found", found, err)
	}
	if found, err := w.DeleteOverride(ctx, key); err != nil || found {
		t.Errorf("DeleteOverride again = %v, %v; want not found", found, err)
	}
	delete(want, key)
	if got := load(); !reflect.DeepEqual(got, want) {
		t.Errorf("after DeleteOverride: Overrides = %v; want %v", got, want)
	}
}

// RunInstances runs the tests that need two handles on one database, as
// two instances of a service have: usage added through both adds up, and
// overrides set through one are read through the other. newPair must
// return two separately opened stores (each with its own connection pool)
// on one fresh, migrated, empty database, and arrange their cleanup.
func RunInstances(t *testing.T, newPair func(t *testing.T) (PlanStore, PlanStore)) {
	t.Run("UsageAddsUp", func(t *testing.T) {
		a, b := newPair(t)
		concurrentUsage(t, a, b)
	})
	t.Run("Overrides", func(t *testing.T) {
		a, b := newPair(t)
		testOverrides(t, a, b)
	})
}
