package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/apikit/apikit/billing/subscription"

	"github.com/apikit/apikit/billing/meter/metertest"
	"github.com/apikit/apikit/internal/testkit/conformance"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/usage"
	"github.com/apikit/apikit/usage/usagetest"
)

// UsageStore is packages usage's and billing/meter's durable state as
// package store keeps it: usage counts, quota alert claims and the meter
// event outbox. It is optional: [Run] tests it (with usagetest and
// metertest) when the backend implements it.
type UsageStore interface {
	usagetest.Backend
	metertest.Backend
}

// PricedSubscriptions finds the live subscriptions to some prices, for
// billing/meter's reporter. It is optional: [Run] tests it when the
// backend implements it.
type PricedSubscriptions interface {
	SubscriptionsWithPrices(ctx context.Context, priceIDs []string) ([]subscription.Subscription, error)
}

var (
	_ UsageStore          = (*store.Store)(nil)
	_ PricedSubscriptions = (*store.Store)(nil)
)

func testUsage(t *testing.T, newBackend func(t *testing.T) Backend) {
	t.Run("Counts", func(t *testing.T) {
		usagetest.Run(t, func(t *testing.T) usagetest.Backend { return implements[UsageStore](t, newBackend(t)) })
	})
	t.Run("MeterOutbox", func(t *testing.T) {
		metertest.Run(t, func(t *testing.T) metertest.Backend { return implements[UsageStore](t, newBackend(t)) })
	})
	t.Run("SubscriptionsWithPrices", func(t *testing.T) {
		b := newBackend(t)
		s := implements[PricedSubscriptions](t, b)
		ctx := conformance.Context(t)
		t0 := epoch.Truncate(time.Second)
		for i, c := range []struct {
			email, price string
			ended, link  bool
		}{
			{"pro@example.com", "price_pro", false, true},
			{"hobby@example.com", "price_hobby", false, true},
			{"gone@example.com", "price_pro", true, true},
			{"", "price_pro", false, false}, // not linked to a user
		} {
			var uid int64
			if c.link {
				uid = mustUser(t, b, c.email)
			}
			sub := subscription.Subscription{CustomerID: fmt.Sprint("cus_", i), SubscriptionID: fmt.Sprint("sub_", i),
				Status: "active", PriceID: c.price, EventCreated: t0, CurrentPeriodStart: t0, CurrentPeriodEnd: t0.AddDate(0, 1, 0), Ended: c.ended}
			typ, mode := "customer.subscription.updated", subscription.WriteIfNewer
			if c.ended {
				sub.Status, typ, mode = "canceled", "customer.subscription.deleted", subscription.WriteTerminal
			}
			if _, err := b.ApplyEvent(ctx, subscription.Event{ID: fmt.Sprint("evt_", i), Type: typ, Created: t0, ReceivedAt: epoch},
				subscription.Change{UserID: uid, CustomerID: sub.CustomerID, Subscription: sub, Mode: mode}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.SubscriptionsWithPrices(ctx, []string{"price_pro", "price_other"})
		if err != nil || len(got) != 1 || got[0].CustomerID != "cus_0" || got[0].UserID == 0 {
			t.Errorf("SubscriptionsWithPrices = %+v, %v; want the active, linked pro subscription", got, err)
		}
		if got, err := s.SubscriptionsWithPrices(ctx, nil); err != nil || len(got) != 0 {
			t.Errorf("SubscriptionsWithPrices(nil) = %+v, %v", got, err)
		}
	})
}

// BenchmarkFlush10k measures the flush of 10,000 active keys' counters
// into s, a new hour each iteration so that every upsert inserts: one
// batch, one statement per 500 rows. Run with -bench Flush10k -benchtime
// 1x -count 5 for medians.
func BenchmarkFlush10k(b *testing.B, s usage.Store) {
	hour := usagetest.Hour0
	for b.Loop() {
		d := usagetest.Flush10k(b, s, hour)
		b.ReportMetric(float64(d.Milliseconds()), "ms/flush")
		hour = hour.Add(time.Hour)
	}
}

// BenchmarkFlush10kUpdate is [BenchmarkFlush10k] when every counter
// exists already: the upserts update.
func BenchmarkFlush10kUpdate(b *testing.B, s usage.Store) {
	usagetest.Flush10k(b, s, usagetest.Hour0)
	for b.Loop() {
		d := usagetest.Flush10k(b, s, usagetest.Hour0)
		b.ReportMetric(float64(d.Milliseconds()), "ms/flush")
	}
}
