package billing

import (
	"context"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
)

// blockingStore holds the first Subscriptions read until released, so that
// a change can be applied while the read is in flight.
type blockingStore struct {
	Store
	entered, release chan struct{}
}

func (b *blockingStore) Subscriptions(ctx context.Context, userID int64) ([]Subscription, error) {
	subs, err := b.Store.Subscriptions(ctx, userID)
	if b.entered != nil {
		close(b.entered)
		<-b.release
		b.entered = nil
	}
	return subs, err
}

// A change applied while the entitlement was being read must not be
// hidden by caching the read: the next request sees the change.
func TestEntitlementCacheRace(t *testing.T) {
	ctx := context.Background()
	st := testdb.SQLite(t)
	bs := &blockingStore{Store: st, entered: make(chan struct{}), release: make(chan struct{})}
	s, err := New(bs, nil, Options{
		DevMode: true, PriceID: "price_test", BaseURL: "http://localhost:8080", CacheTTL: time.Hour,
		SendSignInLink: func(context.Context, string) error { return nil },
		CurrentUser:    func(context.Context) (int64, bool) { return 0, false },
	})
	if err != nil {
		t.Fatal(err)
	}
	uid, _, err := st.CreateUser(ctx, "race@example.com", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	stale := make(chan bool)
	go func() {
		ok, _ := s.Entitled(ctx, uid) // reads "no subscription", then waits
		stale <- ok
	}()
	<-bs.entered
	now := time.Now().UTC().Truncate(time.Second)
	ch := Change{UserID: uid, CustomerID: "cus_dev_1", Mode: WriteIfNewer, Subscription: Subscription{
		CustomerID: "cus_dev_1", SubscriptionID: "sub_dev_1", Status: "active", PriceID: "price_test",
		CurrentPeriodEnd: now.Add(24 * time.Hour), EventCreated: now,
	}}
	if _, err := st.ApplyEvent(ctx, Event{ID: "evt_race", Type: "customer.subscription.created", Created: now, ReceivedAt: now}, ch); err != nil {
		t.Fatal(err)
	}
	s.Forget(uid) // what applying a change through the Service does
	close(bs.release)
	if <-stale {
		t.Fatal("the racing read saw the subscription; the test did not race")
	}
	if ok, err := s.Entitled(ctx, uid); err != nil || !ok {
		t.Errorf("Entitled after the change = %v, %v; want true: the racing read was cached", ok, err)
	}
}
