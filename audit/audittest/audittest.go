// Package audittest is the conformance suite of [audit.Store], and has a
// [MemoryStore] for tests. A store runs the suite with
//
//	func TestAuditConformance(t *testing.T) {
//		audittest.Run(t, func(t *testing.T) audit.Store { return newStore(t) })
//	}
//
// where newStore returns a fresh, migrated, empty store and arranges its
// cleanup with t.Cleanup.
package audittest

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/audit"
)

// MemoryStore is an [audit.Store] in memory, safe for concurrent use. Use
// [NewMemoryStore]; the zero value works too.
type MemoryStore struct {
	mu     sync.Mutex
	events []audit.Event
	nextID int64
	fail   error
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Fail makes every later call fail with err; Fail(nil) heals the store.
func (s *MemoryStore) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func clone(e audit.Event) audit.Event {
	e.Detail = maps.Clone(e.Detail)
	if len(e.Detail) == 0 {
		e.Detail = nil
	}
	return e
}

// AppendAuditEvent implements [audit.Store].
func (s *MemoryStore) AppendAuditEvent(_ context.Context, e audit.Event) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	s.nextID++
	e = clone(e)
	e.ID, e.Time = s.nextID, e.Time.UTC().Truncate(time.Microsecond)
	s.events = append(s.events, e)
	return e.ID, nil
}

// AuditEventsByUser implements [audit.Store].
func (s *MemoryStore) AuditEventsByUser(_ context.Context, userID, beforeID int64, limit int) ([]audit.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []audit.Event
	for i := len(s.events) - 1; i >= 0 && len(out) < limit; i-- {
		e := s.events[i]
		if e.UserID == userID && (beforeID <= 0 || e.ID < beforeID) {
			out = append(out, clone(e))
		}
	}
	return out, nil
}

// AuditEvents implements [audit.Store].
func (s *MemoryStore) AuditEvents(_ context.Context, afterID int64, limit int) ([]audit.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return nil, s.fail
	}
	var out []audit.Event
	for _, e := range s.events {
		if e.ID > afterID && len(out) < limit {
			out = append(out, clone(e))
		}
	}
	return out, nil
}

// PruneAuditEvents implements [audit.Store].
func (s *MemoryStore) PruneAuditEvents(_ context.Context, t time.Time) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	n := len(s.events)
	s.events = slices.DeleteFunc(s.events, func(e audit.Event) bool { return e.Time.Before(t) })
	return int64(n - len(s.events)), nil
}

// epoch is a microsecond-aligned instant the suite builds times from.
var epoch = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Run runs the conformance suite: round trip of every field, order and
// paging of both queries, unique increasing ids under concurrent appends,
// and pruning.
func Run(t *testing.T, open func(t *testing.T) audit.Store) {
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, open(t)) })
	t.Run("ByUserNewestFirst", func(t *testing.T) { testByUser(t, open(t)) })
	t.Run("AllOldestFirst", func(t *testing.T) { testAll(t, open(t)) })
	t.Run("ConcurrentAppends", func(t *testing.T) { testConcurrent(t, open(t)) })
	t.Run("Prune", func(t *testing.T) { testPrune(t, open(t)) })
}

func mustAppend(t *testing.T, s audit.Store, e audit.Event) int64 {
	t.Helper()
	id, err := s.AppendAuditEvent(ctxFor(t), e)
	if err != nil {
		t.Fatalf("AppendAuditEvent: %v", err)
	}
	if id <= 0 {
		t.Fatalf("AppendAuditEvent returned id %d, want positive", id)
	}
	return id
}

func testRoundTrip(t *testing.T, s audit.Store) {
	full := audit.Event{Time: epoch, Kind: audit.KeyLeaked, UserID: 7,
		Actor: audit.Actor{Kind: audit.ActorGitHub, ID: "secret-scanning"}, IP: netip.MustParseAddr("2001:db8::7"),
		UserAgent: "GitHub-Hookshot/abc ✓", KeyID: "4tQ2x9LmZpB7",
		Detail: map[string]string{"url": "https://github.com/o/r/blob/main/.env", "source": "content"}}
	bare := audit.Event{Time: epoch.Add(time.Second), Kind: audit.SignOut, UserID: 7, Actor: audit.Actor{Kind: audit.ActorUser}}
	v4 := audit.Event{Time: epoch.Add(2 * time.Second), Kind: audit.SignIn, UserID: 7,
		Actor: audit.Actor{Kind: audit.ActorUser, ID: "7"}, IP: netip.MustParseAddr("203.0.113.9"), Detail: map[string]string{}}
	var want []audit.Event
	for _, e := range []audit.Event{full, bare, v4} {
		e.ID = mustAppend(t, s, e)
		if len(e.Detail) == 0 {
			e.Detail = nil
		}
		want = append(want, e)
	}
	got, err := s.AuditEvents(ctxFor(t), 0, 10)
	if err != nil || len(got) != len(want) {
		t.Fatalf("AuditEvents = %d events, %v; want %d", len(got), err, len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if !g.Time.Equal(w.Time) || g.Time.Location() != time.UTC {
			t.Errorf("event %d: time %v, want %v in UTC", i, g.Time, w.Time)
		}
		g.Time, w.Time = time.Time{}, time.Time{}
		if g.IP != w.IP || g.ID != w.ID || g.Kind != w.Kind || g.UserID != w.UserID || g.Actor != w.Actor ||
			g.UserAgent != w.UserAgent || g.KeyID != w.KeyID || !maps.Equal(g.Detail, w.Detail) || (g.Detail == nil) != (w.Detail == nil) {
			t.Errorf("event %d round trip:\n got  %+v\n want %+v", i, g, w)
		}
	}
}

func testByUser(t *testing.T, s audit.Store) {
	ctx := ctxFor(t)
	var ada []int64
	for i := range 5 {
		ada = append(ada, mustAppend(t, s, audit.Event{Time: epoch.Add(time.Duration(i) * time.Minute), Kind: audit.SignIn, UserID: 1, Actor: audit.Actor{Kind: audit.ActorUser}}))
		mustAppend(t, s, audit.Event{Time: epoch, Kind: audit.SignIn, UserID: 2, Actor: audit.Actor{Kind: audit.ActorUser}})
	}
	ids := func(es []audit.Event, err error) []int64 {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		var out []int64
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	rev := slices.Clone(ada)
	slices.Reverse(rev)
	if got := ids(s.AuditEventsByUser(ctx, 1, 0, 10)); !slices.Equal(got, rev) {
		t.Errorf("all of user 1 = %v, want %v", got, rev)
	}
	if got := ids(s.AuditEventsByUser(ctx, 1, 0, 2)); !slices.Equal(got, rev[:2]) {
		t.Errorf("first page = %v, want %v", got, rev[:2])
	}
	if got := ids(s.AuditEventsByUser(ctx, 1, rev[1], 2)); !slices.Equal(got, rev[2:4]) {
		t.Errorf("second page = %v, want %v", got, rev[2:4])
	}
	if got := ids(s.AuditEventsByUser(ctx, 3, 0, 10)); len(got) != 0 {
		t.Errorf("unknown user = %v, want none", got)
	}
}

func testAll(t *testing.T, s audit.Store) {
	ctx := ctxFor(t)
	var all []int64
	for i := range 7 {
		all = append(all, mustAppend(t, s, audit.Event{Time: epoch, Kind: audit.PlanChanged, UserID: int64(i%3 + 1), Actor: audit.Actor{Kind: audit.ActorStripe}}))
	}
	var got []int64
	var after int64
	for {
		page, err := s.AuditEvents(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page {
			got = append(got, e.ID)
		}
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1].ID
	}
	if !slices.Equal(got, all) {
		t.Errorf("paged export = %v, want %v", got, all)
	}
}

func testConcurrent(t *testing.T, s audit.Store) {
	var mu sync.Mutex
	var ids []int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5 {
				id, err := s.AppendAuditEvent(ctxFor(t), audit.Event{Time: epoch, Kind: audit.SignIn, UserID: 1, Actor: audit.Actor{Kind: audit.ActorUser}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(ids)
	if len(slices.Compact(slices.Clone(ids))) != 40 {
		t.Errorf("40 concurrent appends got %d distinct ids", len(slices.Compact(ids)))
	}
	page, err := s.AuditEvents(ctxFor(t), 0, 100)
	if err != nil || len(page) != 40 {
		t.Fatalf("AuditEvents = %d, %v; want 40", len(page), err)
	}
	if !slices.IsSortedFunc(page, func(a, b audit.Event) int { return int(a.ID - b.ID) }) {
		t.Error("AuditEvents is not in id order")
	}
}

func testPrune(t *testing.T, s audit.Store) {
	ctx := ctxFor(t)
	for i := range 4 {
		mustAppend(t, s, audit.Event{Time: epoch.Add(time.Duration(i) * time.Hour), Kind: audit.SignIn, UserID: 1, Actor: audit.Actor{Kind: audit.ActorUser}})
	}
	n, err := s.PruneAuditEvents(ctx, epoch.Add(2*time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("PruneAuditEvents = %d, %v; want 2", n, err)
	}
	left, err := s.AuditEvents(ctx, 0, 10)
	if err != nil || len(left) != 2 || !left[0].Time.Equal(epoch.Add(2*time.Hour)) {
		t.Errorf("after pruning: %+v, %v; want the 2 newest", left, err)
	}
	if n, err := s.PruneAuditEvents(ctx, epoch.Add(2*time.Hour)); err != nil || n != 0 {
		t.Errorf("pruning again = %d, %v; want 0", n, err)
	}
}
