package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/store"
)

// An export that follows the log by id while events are appended (as a
// shipper to a SIEM would, resuming after the last id it wrote) misses
// none: ids become visible in order.
func TestAuditCursorMissesNothing(t *testing.T) {
	backends(t, func(t *testing.T, st *store.Store) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		const writers, each = 8, 40
		var wg sync.WaitGroup
		done := make(chan struct{})
		for range writers {
			wg.Go(func() {
				for range each {
					if _, err := st.AppendAuditEvent(ctx, audit.Event{Time: time.Now(), Kind: audit.SignIn, UserID: 1,
						Actor: audit.Actor{Kind: audit.ActorUser}}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		go func() { wg.Wait(); close(done) }()
		seen := map[int64]bool{}
		var after int64
		tail := func() {
			for {
				page, err := st.AuditEvents(ctx, after, 7)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range page {
					seen[e.ID] = true
					after = e.ID
				}
				if len(page) < 7 {
					return
				}
			}
		}
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
			}
			tail()
		}
		tail()
		all, err := st.AuditEvents(ctx, 0, writers*each+1)
		if err != nil || len(all) != writers*each {
			t.Fatalf("AuditEvents = %d events, %v; want %d", len(all), err, writers*each)
		}
		missed := 0
		for _, e := range all {
			if !seen[e.ID] {
				missed++
			}
		}
		if missed > 0 {
			t.Errorf("the cursor missed %d of %d events appended while it read", missed, len(all))
		}
	})
}
