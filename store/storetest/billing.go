package storetest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/billing/subscription"
	"github.com/apikit/apikit/internal/testkit/conformance"
)

// BillingStore is the subscription and webhook-event part of a store, as
// package billing declares it (in package billing/subscription).
type BillingStore interface {
	ApplyEvent(ctx context.Context, ev subscription.Event, ch subscription.Change) (subscription.Applied, error)
	Subscriptions(ctx context.Context, userID int64) ([]subscription.Subscription, error)
	SubscriptionByID(ctx context.Context, subscriptionID string) (subscription.Subscription, bool, error)
	Customers(ctx context.Context, userID int64) ([]string, error)
	ConsumeCheckoutSession(ctx context.Context, sessionID string, userID int64, at time.Time) (bool, error)
	PruneBilling(ctx context.Context, before time.Time) (int64, error)
}

var _ subscription.Store = Backend(nil)

func testBilling(t *testing.T, newBackend func(t *testing.T) Backend) {
	ev := func(id string, created time.Time) subscription.Event {
		return subscription.Event{ID: id, Type: "customer.subscription.updated", Created: created, ReceivedAt: epoch}
	}
	sub := func(status string, created time.Time) subscription.Subscription {
		return subscription.Subscription{
			CustomerID: "cus_1", SubscriptionID: "sub_1", Status: status, PriceID: "price_1",
			CurrentPeriodStart: epoch.Truncate(time.Second),
			CurrentPeriodEnd:   epoch.Add(30 * 24 * time.Hour).Truncate(time.Second), EventCreated: created,
			BillingCycleAnchor: epoch.Add(-45 * 24 * time.Hour).Truncate(time.Second),
		}
	}
	apply := func(t *testing.T, b Backend, e subscription.Event, ch subscription.Change) subscription.Applied {
		t.Helper()
		a, err := b.ApplyEvent(conformance.Context(t), e, ch)
		if err != nil {
			t.Fatalf("ApplyEvent(%s): %v", e.ID, err)
		}
		return a
	}
	get := func(t *testing.T, b Backend, id string) subscription.Subscription {
		t.Helper()
		s, ok, err := b.SubscriptionByID(conformance.Context(t), id)
		if err != nil || !ok {
			t.Fatalf("SubscriptionByID(%s) = %v, %v", id, ok, err)
		}
		return s
	}
	t0 := epoch.Truncate(time.Second)

	t.Run("LinkAndSubscribe", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		uid := mustUser(t, b, "buyer@example.com")
		if subs, err := b.Subscriptions(ctx, uid); err != nil || len(subs) != 0 {
			t.Fatalf("Subscriptions before any event = %v, %v; want none", subs, err)
		}
		if _, ok, err := b.SubscriptionByID(ctx, "sub_1"); ok || err != nil {
			t.Fatalf("SubscriptionByID(unknown) = %v, %v; want not found", ok, err)
		}
		a := apply(t, b, ev("evt_1", t0), subscription.Change{UserID: uid, CustomerID: "cus_1",
			Subscription: sub("active", t0), Mode: subscription.WriteIfNewer})
		if a.Duplicate || !a.Written || a.PreviousFound || a.UserID != uid {
			t.Fatalf("first ApplyEvent = %+v; want written, no previous, user %d", a, uid)
		}
		subs, err := b.Subscriptions(ctx, uid)
		if err != nil || len(subs) != 1 {
			t.Fatalf("Subscriptions = %v, %v; want one", subs, err)
		}
		s := subs[0]
		want := sub("active", t0)
		if s.UserID != uid || s.CustomerID != want.CustomerID || s.SubscriptionID != want.SubscriptionID ||
			s.Status != "active" || s.PriceID != want.PriceID || !s.CurrentPeriodEnd.Equal(want.CurrentPeriodEnd) ||
			!s.CurrentPeriodStart.Equal(want.CurrentPeriodStart) || !s.BillingCycleAnchor.Equal(want.BillingCycleAnchor) ||
			s.CancelAtPeriodEnd || s.Ended || !s.EventCreated.Equal(t0) || s.UpdatedAt.IsZero() ||
			s.CurrentPeriodEnd.Location() != time.UTC || s.EventCreated.Location() != time.UTC {
			t.Errorf("stored %+v; want %+v for user %d, in UTC", s, want, uid)
		}
		if cs, err := b.Customers(ctx, uid); err != nil || len(cs) != 1 || cs[0] != "cus_1" {
			t.Errorf("Customers = %v, %v; want [cus_1]", cs, err)
		}
		// A link to another user does not move the customer.
		other := mustUser(t, b, "other@example.com")
		a = apply(t, b, ev("evt_2", t0), subscription.Change{UserID: other, CustomerID: "cus_1"})
		if a.UserID != uid || a.Written {
			t.Errorf("relinking = %+v; want the first link (user %d) kept, nothing written", a, uid)
		}
		if cs, err := b.Customers(ctx, other); err != nil || len(cs) != 0 {
			t.Errorf("Customers(other) = %v, %v; want none", cs, err)
		}
	})

	t.Run("Duplicate", func(t *testing.T) {
		b := newBackend(t)
		uid := mustUser(t, b, "dup@example.com")
		ch := subscription.Change{UserID: uid, CustomerID: "cus_1", Subscription: sub("active", t0)}
		apply(t, b, ev("evt_1", t0), ch)
		ch.Subscription = sub("canceled", t0.Add(time.Second))
		if a := apply(t, b, ev("evt_1", t0), ch); !a.Duplicate || a.Written {
			t.Fatalf("redelivery = %+v; want Duplicate and nothing written", a)
		}
		if s := get(t, b, "sub_1"); s.Status != "active" {
			t.Errorf("a duplicate event changed the status to %q", s.Status)
		}
	})

	t.Run("ConcurrentDuplicates", func(t *testing.T) {
		b := newBackend(t)
		uid := mustUser(t, b, "race@example.com")
		const n = 20
		var mu sync.Mutex
		written, dups := 0, 0
		conformance.Together(n, func(i int) {
			ch := subscription.Change{UserID: uid, CustomerID: "cus_1",
				Subscription: sub(fmt.Sprint("status_", i), t0)}
			a, err := b.ApplyEvent(conformance.Context(t), ev("evt_same", t0), ch)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				t.Errorf("ApplyEvent: %v", err)
			case a.Duplicate:
				dups++
			case a.Written:
				written++
			}
		})
		if written != 1 || dups != n-1 {
			t.Errorf("%d concurrent deliveries of one event: %d applied, %d duplicates; want 1 and %d", n, written, dups, n-1)
		}
	})

	t.Run("ConcurrentEvents", func(t *testing.T) {
		// Distinct events for one subscription, concurrently: the newest
		// wins whatever the interleaving, and every event is recorded.
		b := newBackend(t)
		uid := mustUser(t, b, "many@example.com")
		const n = 20
		conformance.Together(n, func(i int) {
			created := t0.Add(time.Duration(i) * time.Second)
			_, err := b.ApplyEvent(conformance.Context(t), ev(fmt.Sprint("evt_", i), created), subscription.Change{
				UserID: uid, CustomerID: "cus_1", Subscription: sub(fmt.Sprint("status_", i), created)})
			if err != nil {
				t.Errorf("ApplyEvent: %v", err)
			}
		})
		if s := get(t, b, "sub_1"); s.Status != fmt.Sprint("status_", n-1) || !s.EventCreated.Equal(t0.Add((n-1)*time.Second)) {
			t.Errorf("after %d concurrent events: %s at %v; want the newest, status_%d", n, s.Status, s.EventCreated, n-1)
		}
		for i := range n {
			if a := apply(t, b, ev(fmt.Sprint("evt_", i), t0), subscription.Change{}); !a.Duplicate {
				t.Errorf("evt_%d was not recorded", i)
			}
		}
	})

	t.Run("OutOfOrder", func(t *testing.T) {
		b := newBackend(t)
		uid := mustUser(t, b, "order@example.com")
		link := func(s subscription.Subscription) subscription.Change {
			return subscription.Change{UserID: uid, CustomerID: "cus_1", Subscription: s}
		}
		apply(t, b, ev("evt_new", t0.Add(time.Minute)), link(sub("past_due", t0.Add(time.Minute))))
		a := apply(t, b, ev("evt_old", t0), link(sub("active", t0)))
		if a.Written || !a.PreviousFound || a.Previous.Status != "past_due" {
			t.Errorf("older event = %+v; want not written, previous past_due", a)
		}
		if s := get(t, b, "sub_1"); s.Status != "past_due" {
			t.Errorf("after an older event: %s; want past_due", s.Status)
		}
		// An event of the same second applies (the later delivery wins).
		same := sub("past_due", t0.Add(time.Minute))
		same.CancelAtPeriodEnd = true
		if a := apply(t, b, ev("evt_same_second", t0.Add(time.Minute)), link(same)); !a.Written {
			t.Errorf("an event of the same second was not applied: %+v", a)
		}
		if a := apply(t, b, ev("evt_later", t0.Add(2*time.Minute)), link(sub("past_due", t0.Add(2*time.Minute)))); !a.Written {
			t.Errorf("a newer event was not applied: %+v", a)
		}
		if s := get(t, b, "sub_1"); s.CancelAtPeriodEnd || !s.EventCreated.Equal(t0.Add(2*time.Minute)) {
			t.Errorf("after a newer event: cancel %v at %v; want false at %v", s.CancelAtPeriodEnd, s.EventCreated, t0.Add(2*time.Minute))
		}
	})

	// Ties: customer.subscription.created (incomplete) and .updated
	// (active) share a second and arrive in either order; the paid state
	// must win both ways (StatusPrecedence), and a state read from Stripe
	// (WriteCurrent) wins a tie whatever its status.
	t.Run("Ties", func(t *testing.T) {
		for _, order := range [][2]string{{"incomplete", "active"}, {"active", "incomplete"}} {
			t.Run(order[0]+"First", func(t *testing.T) {
				b := newBackend(t)
				uid := mustUser(t, b, "tie@example.com")
				link := func(s subscription.Subscription) subscription.Change {
					return subscription.Change{UserID: uid, CustomerID: "cus_1", Subscription: s}
				}
				apply(t, b, ev("evt_a", t0), link(sub(order[0], t0)))
				a := apply(t, b, ev("evt_b", t0), link(sub(order[1], t0)))
				if s := get(t, b, "sub_1"); s.Status != "active" {
					t.Fatalf("after %s then %s in one second: %s; want active", order[0], order[1], s.Status)
				}
				if a.Current.Status != "active" || !a.CurrentFound || a.Current.UserID != uid {
					t.Errorf("Applied.Current = %+v (found %v); want the active row of user %d", a.Current, a.CurrentFound, uid)
				}
				// A state read from the API wins a tie, even a lower one.
				a = apply(t, b, ev("evt_reread", t0), subscription.Change{CustomerID: "cus_1", Subscription: sub("incomplete", t0), Mode: subscription.WriteCurrent})
				if !a.Written || get(t, b, "sub_1").Status != "incomplete" {
					t.Errorf("WriteCurrent on a tie = %+v; want written", a)
				}
				// ...but not an older event's.
				a = apply(t, b, ev("evt_reread_old", t0.Add(-time.Second)), subscription.Change{CustomerID: "cus_1", Subscription: sub("active", t0.Add(-time.Second)), Mode: subscription.WriteCurrent})
				if a.Written || a.Current.Status != "incomplete" {
					t.Errorf("WriteCurrent of an older event = %+v; want not written, current incomplete", a)
				}
			})
		}
	})

	t.Run("AppliedCurrent", func(t *testing.T) {
		b := newBackend(t)
		uid := mustUser(t, b, "current@example.com")
		want := sub("trialing", t0)
		want.CancelAtPeriodEnd = true
		a := apply(t, b, ev("evt_1", t0), subscription.Change{UserID: uid, CustomerID: "cus_1", Subscription: want})
		got := get(t, b, "sub_1")
		if !a.CurrentFound || !reflect.DeepEqual(a.Current, got) {
			t.Errorf("Applied.Current = %+v; want the stored row %+v", a.Current, got)
		}
		// Not written: Current is the stored row, unchanged.
		a = apply(t, b, ev("evt_old", t0.Add(-time.Minute)), subscription.Change{CustomerID: "cus_1", Subscription: sub("active", t0.Add(-time.Minute))})
		if a.Written || !a.CurrentFound || !reflect.DeepEqual(a.Current, got) {
			t.Errorf("Applied.Current of an older event = %+v; want the stored row", a)
		}
		// No subscription in the change: nothing current.
		if a := apply(t, b, ev("evt_none", t0), subscription.Change{CustomerID: "cus_1"}); a.CurrentFound {
			t.Errorf("Applied.Current without a subscription = %+v", a)
		}
	})

	t.Run("Terminal", func(t *testing.T) {
		b := newBackend(t)
		uid := mustUser(t, b, "end@example.com")
		link := func(s subscription.Subscription, m subscription.WriteMode) subscription.Change {
			return subscription.Change{UserID: uid, CustomerID: "cus_1", Subscription: s, Mode: m}
		}
		apply(t, b, ev("evt_1", t0.Add(time.Hour)), link(sub("active", t0.Add(time.Hour)), subscription.WriteIfNewer))
		// A deletion older than the stored state still ends it.
		a := apply(t, b, ev("evt_del", t0), link(sub("canceled", t0), subscription.WriteTerminal))
		if !a.Written || a.Previous.Status != "active" {
			t.Errorf("deletion = %+v; want written over active", a)
		}
		s := get(t, b, "sub_1")
		if !s.Ended || s.Status != "canceled" || !s.EventCreated.Equal(t0) {
			t.Errorf("after deletion: %+v; want ended, canceled, at the deletion's EventCreated", s)
		}
		for i, m := range []subscription.WriteMode{subscription.WriteIfNewer, subscription.WriteTerminal, subscription.WriteIfAbsent} {
			if a := apply(t, b, ev(fmt.Sprint("evt_late_", i), t0.Add(48*time.Hour)), link(sub("active", t0.Add(48*time.Hour)), m)); a.Written {
				t.Errorf("mode %d wrote over an ended subscription", m)
			}
		}
		if s := get(t, b, "sub_1"); !s.Ended || s.Status != "canceled" {
			t.Errorf("an ended subscription changed: %+v", s)
		}
		// A deletion may come first of all.
		a = apply(t, b, ev("evt_del2", t0), subscription.Change{CustomerID: "cus_1",
			Subscription: subscription.Subscription{CustomerID: "cus_1", SubscriptionID: "sub_2", Status: "canceled", EventCreated: t0},
			Mode:         subscription.WriteTerminal})
		if !a.Written || a.PreviousFound || a.UserID != uid {
			t.Errorf("first-event deletion = %+v; want written for user %d", a, uid)
		}
		if s := get(t, b, "sub_2"); !s.Ended {
			t.Errorf("sub_2 not ended: %+v", s)
		}
	})

	t.Run("Provisional", func(t *testing.T) {
		b := newBackend(t)
		uid := mustUser(t, b, "prov@example.com")
		prov := sub("active", time.Time{})
		a := apply(t, b, ev("evt_checkout", t0), subscription.Change{UserID: uid, CustomerID: "cus_1", Subscription: prov, Mode: subscription.WriteIfAbsent})
		if !a.Written {
			t.Fatalf("provisional write = %+v; want written", a)
		}
		if s := get(t, b, "sub_1"); !s.EventCreated.IsZero() || s.Status != "active" {
			t.Errorf("provisional row %+v; want active with zero EventCreated", s)
		}
		// Any subscription event replaces it, however old …
		apply(t, b, ev("evt_old", t0.Add(-time.Hour)), subscription.Change{Subscription: sub("incomplete", t0.Add(-time.Hour))})
		if s := get(t, b, "sub_1"); s.Status != "incomplete" {
			t.Errorf("a subscription event did not replace the provisional row: %+v", s)
		}
		// … and a provisional write never replaces a row.
		if a := apply(t, b, ev("evt_checkout2", t0), subscription.Change{Subscription: prov, Mode: subscription.WriteIfAbsent}); a.Written {
			t.Errorf("a provisional write replaced a row: %+v", a)
		}
	})

	t.Run("UnlinkedCustomer", func(t *testing.T) {
		// A subscription event may precede the checkout event that links
		// its customer; the row waits, and belongs to the user once linked.
		b := newBackend(t)
		ctx := conformance.Context(t)
		a := apply(t, b, ev("evt_sub", t0), subscription.Change{Subscription: sub("active", t0)})
		if !a.Written || a.UserID != 0 {
			t.Errorf("unlinked subscription = %+v; want written, user 0", a)
		}
		if s := get(t, b, "sub_1"); s.UserID != 0 {
			t.Errorf("unlinked subscription has user %d", s.UserID)
		}
		uid := mustUser(t, b, "late@example.com")
		a = apply(t, b, ev("evt_checkout", t0.Add(time.Second)), subscription.Change{UserID: uid, CustomerID: "cus_1"})
		if a.UserID != uid {
			t.Errorf("link = %+v; want user %d", a, uid)
		}
		if subs, err := b.Subscriptions(ctx, uid); err != nil || len(subs) != 1 || subs[0].UserID != uid {
			t.Errorf("Subscriptions after linking = %+v, %v", subs, err)
		}
	})

	t.Run("SeveralSubscriptions", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		uid := mustUser(t, b, "two@example.com")
		s1, s2 := sub("canceled", t0), sub("active", t0.Add(time.Hour))
		s2.CustomerID, s2.SubscriptionID = "cus_2", "sub_2"
		apply(t, b, ev("evt_1", t0), subscription.Change{UserID: uid, CustomerID: "cus_1", Subscription: s1, Mode: subscription.WriteTerminal})
		apply(t, b, ev("evt_2", t0.Add(time.Hour)), subscription.Change{UserID: uid, CustomerID: "cus_2", Subscription: s2})
		subs, err := b.Subscriptions(ctx, uid)
		if err != nil || len(subs) != 2 || subs[0].SubscriptionID != "sub_2" || subs[1].SubscriptionID != "sub_1" {
			t.Errorf("Subscriptions = %+v, %v; want sub_2 then sub_1", subs, err)
		}
		if cs, err := b.Customers(ctx, uid); err != nil || len(cs) != 2 {
			t.Errorf("Customers = %v, %v; want two", cs, err)
		}
		other := mustUser(t, b, "nobody@example.com")
		if subs, err := b.Subscriptions(ctx, other); err != nil || len(subs) != 0 {
			t.Errorf("Subscriptions(other user) = %v, %v; want none", subs, err)
		}
	})

	t.Run("ConsumeCheckoutSession", func(t *testing.T) {
		b := newBackend(t)
		uid := mustUser(t, b, "success@example.com")
		const n = 20
		won := conformance.Winners(t, n, func(int) (bool, error) {
			return b.ConsumeCheckoutSession(conformance.Context(t), "cs_test_1", uid, epoch)
		})
		if won != 1 {
			t.Errorf("%d concurrent consumptions of one session succeeded %d times; want 1", n, won)
		}
		if ok, err := b.ConsumeCheckoutSession(conformance.Context(t), "cs_test_2", uid, epoch); !ok || err != nil {
			t.Errorf("another session = %v, %v; want consumed", ok, err)
		}
	})

	t.Run("PruneBilling", func(t *testing.T) {
		b := newBackend(t)
		ctx := conformance.Context(t)
		uid := mustUser(t, b, "prune@example.com")
		old := subscription.Event{ID: "evt_old", Type: "x", Created: t0, ReceivedAt: epoch.Add(-48 * time.Hour)}
		recent := subscription.Event{ID: "evt_recent", Type: "x", Created: t0, ReceivedAt: epoch}
		apply(t, b, old, subscription.Change{})
		apply(t, b, recent, subscription.Change{})
		if _, err := b.ConsumeCheckoutSession(ctx, "cs_old", uid, epoch.Add(-48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ConsumeCheckoutSession(ctx, "cs_recent", uid, epoch); err != nil {
			t.Fatal(err)
		}
		n, err := b.PruneBilling(ctx, epoch.Add(-time.Hour))
		if err != nil || n != 2 {
			t.Fatalf("PruneBilling = %d, %v; want 2", n, err)
		}
		if a := apply(t, b, old, subscription.Change{}); a.Duplicate {
			t.Error("a pruned event is still a duplicate")
		}
		if a := apply(t, b, recent, subscription.Change{}); !a.Duplicate {
			t.Error("a recent event was pruned")
		}
		if ok, err := b.ConsumeCheckoutSession(ctx, "cs_recent", uid, epoch); err != nil || ok {
			t.Errorf("ConsumeCheckoutSession(recent) = %v, %v; want false, nil: a recent checkout session was pruned", ok, err)
		}
	})
}
