package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/usage"
)

// Deleting a user deletes their usage counts and alert claims, and
// nobody else's; the meter event outbox is kept as billing history.
func TestDeleteUserDeletesUsage(t *testing.T) {
	freshBackends(t, func(t *testing.T, open func() *store.Store) {
		ctx := context.Background()
		st := open()
		if _, err := st.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		now := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
		var users []string
		for _, email := range []string{"ada@example.com", "grace@example.com"} {
			id, _, err := st.CreateUser(ctx, email, now)
			if err != nil {
				t.Fatal(err)
			}
			users = append(users, strconv.FormatInt(id, 10))
		}
		var counts []usage.Count
		for _, u := range users {
			counts = append(counts, usage.Count{UserID: u, KeyID: "k" + u, Start: now, Counts: usage.Counts{OK: 1, Cost: 1}})
			if _, err := st.ClaimAlert(ctx, u, now, 80); err != nil {
				t.Fatal(err)
			}
		}
		if err := st.AddCounts(ctx, usage.Batch{ID: "b", At: now, Counts: counts}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.RollupCounts(ctx, now.AddDate(0, 0, 1)); err != nil {
			t.Fatal(err)
		}
		if err := st.AddCounts(ctx, usage.Batch{ID: "b2", At: now, Counts: counts}); err != nil {
			t.Fatal(err)
		}
		ev := meter.Event{Identifier: meter.Identifier("cus_1", "api", now, 1), UserID: users[0], CustomerID: "cus_1", EventName: "api",
			Slice: now, Seq: 1, Value: 1, Timestamp: now, NextAttempt: now, CreatedAt: now}
		if _, err := st.EnqueueMeterEvents(ctx, []meter.Event{ev}); err != nil {
			t.Fatal(err)
		}
		id, _ := strconv.ParseInt(users[0], 10, 64)
		if found, err := st.DeleteUser(ctx, id, store.DeleteUserOptions{}); err != nil || !found {
			t.Fatalf("DeleteUser = %v, %v", found, err)
		}
		for i, u := range users {
			got, err := st.Counts(ctx, usage.Query{UserID: u, From: now.AddDate(0, 0, -1), To: now.AddDate(0, 0, 2), Granularity: usage.Day})
			if err != nil {
				t.Fatal(err)
			}
			claimed, err := st.ClaimAlert(ctx, u, now, 80)
			if err != nil {
				t.Fatal(err)
			}
			if kept := i == 1; (len(got) > 0) != kept || claimed == kept {
				t.Errorf("user %s after deleting user %s: counts %+v, alert claimable %v; want kept = %v", u, users[0], got, claimed, kept)
			}
		}
		if evs, err := st.MeterEvents(ctx, meter.Pending, 10); err != nil || len(evs) != 1 {
			t.Errorf("meter events after DeleteUser = %v, %v; want the pending one kept", evs, err)
		}
	})
}
