package billing_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/store"
)

// The webhook's signature tolerance runs on Options.Now, both ways: a
// service whose clock is a day behind the real one accepts what is signed
// at its now, and refuses what is signed at the real now (a day ahead) or
// more than the tolerance before its now.
func TestWebhookToleranceUsesOptionsNow(t *testing.T) {
	st := sqliteStore(t)
	now := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	h := newHarness(t, st, nil, billing.Options{DevMode: true, Now: func() time.Time { return now }})
	uid := mustUser(t, st, "clock@example.org")
	payload := event{"evt_clock", "customer.subscription.created", now.Unix(), subObject("sub_1", "cus_1", "active", uid)}.payload()
	for name, tc := range map[string]struct {
		at   time.Time
		want int
	}{
		"RealNowIsTheFuture": {time.Now(), http.StatusBadRequest},
		"TooOld":             {now.Add(-billing.WebhookTolerance - time.Minute), http.StatusBadRequest},
	} {
		if w := h.do(signedAt(payload, tc.at, secret)); w.Code != tc.want {
			t.Errorf("%s: %d; want %d", name, w.Code, tc.want)
		}
	}
	// A fresh t= item put in front of an old signature does not make it
	// fresh: stripe-go verifies one of them, and both must be in time.
	old := signedAt(payload, now.Add(-time.Hour), secret)
	old.Header.Set("Stripe-Signature", "t="+strconv.FormatInt(now.Unix(), 10)+","+old.Header.Get("Stripe-Signature"))
	if w := h.do(old); w.Code != http.StatusBadRequest {
		t.Errorf("an old signature behind a fresh t=: %d; want 400", w.Code)
	}
	if w := h.do(signedAt(payload, now.Add(-time.Minute), secret)); w.Code != http.StatusOK {
		t.Errorf("signed at the service's now: %d; want 200", w.Code)
	}
}

// The Service prunes in the background every PruneInterval, as magiclink
// cleans up, and Close stops it.
func TestPruneInterval(t *testing.T) {
	st := sqliteStore(t)
	now := time.Now()
	svc, err := billing.New(st, nil, billing.Options{
		DevMode: true, BaseURL: "http://127.0.0.1:8080", PruneInterval: 10 * time.Millisecond,
		SendSignInLink: func(context.Context, string) error { return nil },
		CurrentUser:    func(context.Context) (int64, bool) { return 0, false },
		Now:            func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, id := range []string{"evt_old1", "evt_old2"} {
		if _, err := st.ApplyEvent(ctx, billing.Event{ID: id, Type: "x", ReceivedAt: now.Add(-40 * 24 * time.Hour)}, billing.Change{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for svc.Stats().Pruned < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("Stats after 10s: %+v; want 2 rows pruned", svc.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := svc.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := svc.Close(ctx); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	// A pruned event id is new again.
	if a, err := st.ApplyEvent(ctx, billing.Event{ID: "evt_old1", Type: "x", ReceivedAt: now}, billing.Change{}); err != nil || a.Duplicate {
		t.Errorf("ApplyEvent(pruned id) = %+v, %v; want applied afresh", a, err)
	}
}

var _ billing.Store = (*store.Store)(nil)
