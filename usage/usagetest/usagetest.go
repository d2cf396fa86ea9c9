// Package usagetest is the conformance suite of package usage's stores:
// what [usage.Store], [usage.Maintainer] and [usage.AlertStore] mean,
// written as tests. Package store/storetest runs it on every backend of
// this module; run it on a store of your own:
//
//	func TestUsageStore(t *testing.T) {
//		usagetest.Run(t, func(t *testing.T) usagetest.Backend { return newMigratedStore(t) })
//	}
package usagetest

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/usage"
)

// Backend is a store with everything package usage needs.
type Backend interface {
	usage.Store
	usage.Maintainer
	usage.AlertStore
}

// Hour0 is the hour the tests count in: a Tuesday, 10:00 UTC.
var Hour0 = time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)

var batchSeq struct {
	sync.Mutex
	n int
}

// batch returns a batch with a fresh id.
func batch(counts ...usage.Count) usage.Batch {
	batchSeq.Lock()
	defer batchSeq.Unlock()
	batchSeq.n++
	return usage.Batch{ID: fmt.Sprintf("test-%d-%d", time.Now().UnixNano(), batchSeq.n), At: Hour0, Counts: counts}
}

func count(user, key string, start time.Time, ok, limited, cost int64) usage.Count {
	return usage.Count{UserID: user, KeyID: key, Start: start, Counts: usage.Counts{OK: ok, Limited: limited, Cost: cost}}
}

func add(t testing.TB, s usage.Store, b usage.Batch) {
	t.Helper()
	if err := s.AddCounts(conformance.Context(t), b); err != nil {
		t.Fatalf("AddCounts: %v", err)
	}
}

func read(t testing.TB, s usage.Store, q usage.Query) []usage.Count {
	t.Helper()
	got, err := s.Counts(conformance.Context(t), q)
	if err != nil {
		t.Fatalf("Counts(%+v): %v", q, err)
	}
	return got
}

func total(cs []usage.Count) usage.Counts {
	var c usage.Counts
	for _, x := range cs {
		c.Add(x.Counts)
	}
	return c
}

// Run runs the suite; newBackend returns a fresh, migrated, empty store
// for each subtest and arranges its cleanup.
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("AddsUp", func(t *testing.T) {
		s := newBackend(t)
		add(t, s, batch(
			count("1", "k1", Hour0, 3, 1, 5),
			count("1", "k1", Hour0, 2, 0, 2), // one row twice in a batch
			count("1", "k2", Hour0, 1, 0, 1),
			count("1", "k1", Hour0.Add(time.Hour), 1, 0, 1),
			count("2", "k3", Hour0, 7, 0, 7),
		))
		add(t, s, batch(count("1", "k1", Hour0, 1, 0, 1)))
		got := read(t, s, usage.Query{UserID: "1", From: Hour0, To: Hour0.Add(24 * time.Hour), Granularity: usage.Hour})
		want := []usage.Count{
			count("1", "k1", Hour0, 6, 1, 8),
			count("1", "k1", Hour0.Add(time.Hour), 1, 0, 1),
			count("1", "k2", Hour0, 1, 0, 1),
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Counts = %+v\nwant %+v", got, want)
		}
		day := read(t, s, usage.Query{UserID: "1", From: usage.Day.Truncate(Hour0), To: usage.Day.Truncate(Hour0).Add(24 * time.Hour), Granularity: usage.Day})
		want = []usage.Count{
			count("1", "k1", usage.Day.Truncate(Hour0), 7, 1, 9),
			count("1", "k2", usage.Day.Truncate(Hour0), 1, 0, 1),
		}
		if !reflect.DeepEqual(day, want) {
			t.Errorf("Counts by day = %+v\nwant %+v", day, want)
		}
	})

	t.Run("OddIDs", func(t *testing.T) {
		s := newBackend(t)
		odd := []string{`a"b`, `c\d`, "e,f", "{g}", "NULL", "ü 🙂", " "}
		var cs []usage.Count
		for i, id := range odd {
			cs = append(cs, count(id, id+"-key", Hour0, int64(i+1), 0, 1))
		}
		add(t, s, batch(cs...))
		for i, id := range odd {
			got := read(t, s, usage.Query{UserID: id, From: Hour0, To: Hour0.Add(time.Hour), Granularity: usage.Hour})
			if len(got) != 1 || got[0].KeyID != id+"-key" || got[0].OK != int64(i+1) {
				t.Errorf("user %q: %+v", id, got)
			}
		}
	})

	t.Run("BatchOnce", func(t *testing.T) {
		s := newBackend(t)
		b := batch(count("1", "k1", Hour0, 1, 0, 3))
		add(t, s, b)
		add(t, s, b) // a retry after an ambiguous failure
		got := total(read(t, s, usage.Query{UserID: "1", From: Hour0, To: Hour0.Add(time.Hour), Granularity: usage.Hour}))
		if got != (usage.Counts{OK: 1, Cost: 3}) {
			t.Errorf("after writing one batch twice: %+v; want it counted once", got)
		}
	})

	t.Run("AllOrNothing", func(t *testing.T) {
		s := newBackend(t)
		err := s.AddCounts(conformance.Context(t), batch(count("1", "k1", Hour0, 1, 0, 1), count("", "k1", Hour0, 1, 0, 1)))
		if err == nil {
			t.Fatal("AddCounts with a count without a user succeeded")
		}
		if got := read(t, s, usage.Query{UserID: "1", From: Hour0, To: Hour0.Add(time.Hour), Granularity: usage.Hour}); len(got) != 0 {
			t.Errorf("a failed batch wrote %+v", got)
		}
	})

	t.Run("KeyFilter", func(t *testing.T) {
		s := newBackend(t)
		add(t, s, batch(count("1", "k1", Hour0, 1, 0, 1), count("1", "k2", Hour0, 2, 0, 2), count("2", "other", Hour0, 5, 0, 5)))
		q := usage.Query{UserID: "1", KeyID: "k2", From: Hour0, To: Hour0.Add(time.Hour), Granularity: usage.Hour}
		if got := read(t, s, q); len(got) != 1 || got[0].KeyID != "k2" || got[0].OK != 2 {
			t.Errorf("Counts of k2 = %+v", got)
		}
		q.KeyID = "other" // another user's key reads like a missing one
		if got := read(t, s, q); len(got) != 0 {
			t.Errorf("Counts of another user's key = %+v; want none", got)
		}
		q.KeyID = "missing"
		if got := read(t, s, q); len(got) != 0 {
			t.Errorf("Counts of a missing key = %+v; want none", got)
		}
	})

	t.Run("Range", func(t *testing.T) {
		s := newBackend(t)
		add(t, s, batch(count("1", "k", Hour0.Add(-time.Hour), 1, 0, 1), count("1", "k", Hour0, 2, 0, 2), count("1", "k", Hour0.Add(time.Hour), 4, 0, 4)))
		got := total(read(t, s, usage.Query{UserID: "1", From: Hour0, To: Hour0.Add(time.Hour), Granularity: usage.Hour}))
		if got.OK != 2 {
			t.Errorf("[from, to) counted %d requests; want 2 (from included, to excluded)", got.OK)
		}
	})

	t.Run("Rollup", func(t *testing.T) {
		s := newBackend(t)
		day := usage.Day.Truncate(Hour0)
		var counts []usage.Count
		for h := range 24 {
			counts = append(counts, count("1", "k", day.Add(time.Duration(h)*time.Hour), 1, 0, 2))
		}
		counts = append(counts, count("1", "k", day.Add(24*time.Hour), 5, 0, 5), count("2", "k2", day.Add(-24*time.Hour), 3, 0, 3))
		add(t, s, batch(counts...))
		q := usage.Query{UserID: "1", From: day.Add(-48 * time.Hour), To: day.Add(48 * time.Hour), Granularity: usage.Day}
		before := read(t, s, q)
		// Two instances roll up at once: each hour moves once.
		moved := make([]int64, 2)
		errs := make([]error, 2)
		conformance.Together(2, func(i int) { moved[i], errs[i] = s.RollupCounts(conformance.Context(t), day.Add(24*time.Hour)) })
		for _, err := range errs {
			if err != nil {
				t.Fatalf("RollupCounts: %v", err)
			}
		}
		if moved[0]+moved[1] != 25 {
			t.Errorf("RollupCounts moved %d and %d rows; want 25 in all", moved[0], moved[1])
		}
		if after := read(t, s, q); !reflect.DeepEqual(after, before) {
			t.Errorf("by day after rollup = %+v\nbefore %+v", after, before)
		}
		hourly := read(t, s, usage.Query{UserID: "1", From: day, To: day.Add(48 * time.Hour), Granularity: usage.Hour})
		want := []usage.Count{count("1", "k", day, 24, 0, 48), count("1", "k", day.Add(24*time.Hour), 5, 0, 5)}
		if !reflect.DeepEqual(hourly, want) {
			t.Errorf("by the hour after rollup = %+v\nwant the day as one point: %+v", hourly, want)
		}
		// Late counts of a rolled-up day add up too.
		add(t, s, batch(count("1", "k", day.Add(3*time.Hour), 1, 0, 1)))
		if _, err := s.RollupCounts(conformance.Context(t), day.Add(24*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if got := total(read(t, s, q)); got.OK != 30 {
			t.Errorf("after a late count and a second rollup: %d requests; want 30", got.OK)
		}
		// Retention deletes old days.
		if _, err := s.PruneCounts(conformance.Context(t), day, day); err != nil {
			t.Fatal(err)
		}
		if got := read(t, s, usage.Query{UserID: "2", From: day.Add(-48 * time.Hour), To: day, Granularity: usage.Day}); len(got) != 0 {
			t.Errorf("after PruneCounts, days before it remain: %+v", got)
		}
		if got := total(read(t, s, q)); got.OK != 30 {
			t.Errorf("PruneCounts deleted later days: %d requests; want 30", got.OK)
		}
	})

	t.Run("Retention", func(t *testing.T) {
		s := newBackend(t)
		now := Hour0
		add(t, s, batch(count("1", "k", now.Add(-40*24*time.Hour), 1, 0, 1), count("1", "k", now.Add(-2*time.Hour), 1, 0, 1)))
		rolled, pruned, err := usage.Retention{HourlyFor: 30 * 24 * time.Hour, DailyFor: 35 * 24 * time.Hour}.Apply(conformance.Context(t), s, now)
		if err != nil || rolled != 1 || pruned < 1 {
			t.Fatalf("Retention.Apply = %d rolled, %d pruned, %v; want the 40-day-old hour rolled up and its day pruned", rolled, pruned, err)
		}
		got := total(read(t, s, usage.Query{UserID: "1", From: now.Add(-400 * 24 * time.Hour), To: now, Granularity: usage.Day}))
		if got.OK != 1 {
			t.Errorf("after retention: %d requests; want 1 (the recent hour)", got.OK)
		}
	})

	t.Run("AlertClaims", func(t *testing.T) {
		s := newBackend(t)
		period := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		won := conformance.Winners(t, 16, func(int) (bool, error) { return s.ClaimAlert(conformance.Context(t), "1", period, 80) })
		if won != 1 {
			t.Errorf("16 concurrent claims of one alert: %d won; want 1", won)
		}
		for _, c := range []struct {
			user      string
			period    time.Time
			threshold int
		}{{"1", period, 100}, {"2", period, 80}, {"1", period.AddDate(0, 1, 0), 80}} {
			if ok, err := s.ClaimAlert(conformance.Context(t), c.user, c.period, c.threshold); err != nil || !ok {
				t.Errorf("ClaimAlert(%+v) = %v, %v; want a new claim", c, ok, err)
			}
		}
		if err := s.ReleaseAlert(conformance.Context(t), "1", period, 80); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.ClaimAlert(conformance.Context(t), "1", period, 80); err != nil || !ok {
			t.Errorf("ClaimAlert after ReleaseAlert = %v, %v; want claimed again", ok, err)
		}
	})
}

// RunInstances runs the tests that need two handles on one database, as
// two instances of a service have. newPair returns two separately opened
// stores on one fresh, migrated, empty database.
func RunInstances(t *testing.T, newPair func(t *testing.T) (Backend, Backend)) {
	t.Run("AddsUp", func(t *testing.T) {
		a, b := newPair(t)
		const writers, batches, users = 4, 10, 6
		conformance.Together(writers, func(w int) {
			s := a
			if w%2 == 1 {
				s = b
			}
			for i := range batches {
				var cs []usage.Count
				for u := range users { // overlapping rows, in different orders
					u = (u + w + i) % users
					cs = append(cs, count(fmt.Sprint(u), "k", Hour0, 1, 0, int64(u+1)))
				}
				if err := s.AddCounts(conformance.Context(t), batch(cs...)); err != nil {
					t.Errorf("AddCounts: %v", err)
					return
				}
			}
		})
		for u := range users {
			for _, s := range []Backend{a, b} {
				got := total(read(t, s, usage.Query{UserID: fmt.Sprint(u), From: Hour0, To: Hour0.Add(time.Hour), Granularity: usage.Hour}))
				if got.OK != writers*batches || got.Cost != int64(writers*batches*(u+1)) {
					t.Errorf("user %d: %+v; want %d requests costing %d", u, got, writers*batches, writers*batches*(u+1))
				}
			}
		}
	})
	t.Run("AlertClaims", func(t *testing.T) {
		a, b := newPair(t)
		period := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
		won := conformance.Winners(t, 8, func(i int) (bool, error) {
			return []Backend{a, b}[i%2].ClaimAlert(conformance.Context(t), "1", period, 100)
		})
		if won != 1 {
			t.Errorf("claims through two instances: %d won; want 1", won)
		}
	})
}

// Flush10k writes the counters of 10,000 active keys (one user each) as
// one batch, as a Meter's flush does, and returns how long it took. The
// store's tests report its median over several runs.
func Flush10k(tb testing.TB, s usage.Store, hour time.Time) time.Duration {
	tb.Helper()
	cs := make([]usage.Count, 10_000)
	for i := range cs {
		cs[i] = count(fmt.Sprintf("u%05d", i), fmt.Sprintf("key%09d", i), hour, 10, 1, 12)
	}
	b := batch(cs...)
	start := time.Now()
	if err := s.AddCounts(conformance.Context(tb), b); err != nil {
		tb.Fatalf("AddCounts of 10,000 counters: %v", err)
	}
	return time.Since(start)
}
