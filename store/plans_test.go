package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
)

// Deleting a user deletes the overrides and quota usage of the user and of
// their keys, and nobody else's.
func TestDeleteUserDeletesPlanState(t *testing.T) {
	freshBackends(t, func(t *testing.T, open func() *store.Store) {
		ctx := context.Background()
		st := open()
		if _, err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
		var users []int64
		for _, email := range []string{"ada@example.com", "grace@example.com"} {
			id, _, err := st.CreateUser(ctx, email, now)
			if err != nil {
				t.Fatal(err)
			}
			users = append(users, id)
		}
		ids := []plan.Identity{
			{Budget: plan.PerUser, ID: "1"}, {Budget: plan.PerKey, ID: "keyofadaxxxx"},
			{Budget: plan.PerUser, ID: "2"}, {Budget: plan.PerKey, ID: "keyofgracexx"},
		}
		for i, k := range []string{"keyofadaxxxx", "keyofgracexx"} {
			if err := st.CreateKey(ctx, apikey.Key{ID: k, UserID: users[i], Prefix: "t", SecretHash: make([]byte, 32),
				CreatedAt: now, UpdatedAt: now}, 10); err != nil {
				t.Fatal(err)
			}
		}
		month := plan.Month
		start, _ := month.Bounds(now, time.Time{})
		var batch []plan.Usage
		for _, id := range ids {
			if err := st.SetOverride(ctx, id, plan.Override{Limits: []ratelimit.Limit{ratelimit.PerSecond(5)}}, now); err != nil {
				t.Fatal(err)
			}
			batch = append(batch, plan.Usage{Identity: id.String(), Period: month, Start: start, Count: 3})
		}
		if err := st.AddUsage(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if found, err := st.DeleteUser(ctx, users[0], store.DeleteUserOptions{}); err != nil || !found {
			t.Fatalf("DeleteUser = %v, %v", found, err)
		}
		ov, err := st.Overrides(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			_, has := ov[id]
			n, err := st.Usage(ctx, id.String(), month, start)
			if err != nil {
				t.Fatal(err)
			}
			if kept := i >= 2; has != kept || (n == 3) != kept {
				t.Errorf("%v after deleting user 1: override %v, usage %d; want kept = %v", id, has, n, kept)
			}
		}
	})
}

func TestPruneUsage(t *testing.T) {
	freshBackends(t, func(t *testing.T, open func() *store.Store) {
		ctx := context.Background()
		st := open()
		if _, err := st.Migrate(ctx, store.Plans); err != nil {
			t.Fatal(err)
		}
		jan := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		feb := jan.AddDate(0, 1, 0)
		if err := st.AddUsage(ctx, []plan.Usage{
			{Identity: "user:1", Period: plan.Month, Start: jan, Count: 1},
			{Identity: "user:1", Period: plan.Month, Start: feb, Count: 2},
		}); err != nil {
			t.Fatal(err)
		}
		if n, err := st.PruneUsage(ctx, feb); err != nil || n != 1 {
			t.Errorf("PruneUsage = %d, %v; want 1", n, err)
		}
		if n, _ := st.Usage(ctx, "user:1", plan.Month, feb); n != 2 {
			t.Errorf("February's usage after pruning January = %d; want 2", n)
		}
	})
}

// The cache serves overrides set by another process after its next reload,
// and keeps the last ones while the store fails.
func TestOverrideCache(t *testing.T) {
	freshBackends(t, func(t *testing.T, open func() *store.Store) {
		ctx := context.Background()
		st := open()
		if _, err := st.Migrate(ctx, store.Plans); err != nil {
			t.Fatal(err)
		}
		ada := plan.Identity{Budget: plan.PerUser, ID: "1"}
		if err := st.SetOverride(ctx, ada, plan.Override{Limits: []ratelimit.Limit{ratelimit.PerSecond(5)}}, time.Now()); err != nil {
			t.Fatal(err)
		}
		c, err := st.OverrideCache(ctx, 20*time.Millisecond, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if o, ok := c.Override(ada); !ok || o.Limits[0] != ratelimit.PerSecond(5) {
			t.Fatalf("Override(ada) = %+v, %v", o, ok)
		}
		if allocs := testing.AllocsPerRun(100, func() { c.Override(ada) }); allocs != 0 {
			t.Errorf("Override allocates %v times", allocs)
		}
		// Another process changes the table.
		grace := plan.Identity{Budget: plan.PerKey, ID: "k"}
		if err := st.SetOverride(ctx, grace, plan.Override{Quota: &plan.Quota{}}, time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, err := st.DeleteOverride(ctx, ada); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, hasAda := c.Override(ada)
			_, hasGrace := c.Override(grace)
			if !hasAda && hasGrace {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the cache did not reload the overrides")
			}
			time.Sleep(5 * time.Millisecond)
		}
		// The store failing: the last overrides stay.
		c.Close()
		st.Close()
		if err := c.Reload(ctx); err == nil {
			t.Error("Reload on a closed store succeeded")
		}
		if _, ok := c.Override(grace); !ok || c.Len() != 1 {
			t.Error("a failed reload dropped the overrides")
		}
	})
}
