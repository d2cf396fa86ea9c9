package billing_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/stripe/stripe-go/v76/webhook"
)

func TestWebhook(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		h := newHarness(t, st, nil, billing.Options{DevMode: true})
		uid := mustUser(t, st, "buyer@example.com")
		now := time.Now().Unix()

		t.Run("CheckoutThenSubscription", func(t *testing.T) {
			if code := h.send(event{"evt_cs", "checkout.session.completed", now, checkoutObject(uid, "cus_1", "sub_1", "buyer@example.com")}); code != 200 {
				t.Fatalf("checkout.session.completed = %d", code)
			}
			if ok, err := h.svc.Entitled(ctx, uid); !ok || err != nil {
				t.Fatalf("Entitled after a paid checkout = %v, %v", ok, err)
			}
			if code := h.send(event{"evt_c", "customer.subscription.created", now + 1, subObject("sub_1", "cus_1", "trialing", uid)}); code != 200 {
				t.Fatalf("customer.subscription.created = %d", code)
			}
			s, ok, err := h.svc.Subscription(ctx, uid)
			if err != nil || !ok || s.Status != "trialing" || s.CustomerID != "cus_1" || s.PriceID != "price_test" ||
				s.EventCreated.Unix() != now+1 || s.CurrentPeriodEnd.Year() != 2030 || s.UserID != uid {
				t.Fatalf("Subscription = %+v, %v, %v", s, ok, err)
			}
			if n := h.activated.Load(); n != 1 {
				t.Errorf("OnActivated called %d times; want 1 (trialing after provisional active is no new activation)", n)
			}
		})

		t.Run("Duplicate", func(t *testing.T) {
			before := h.changeCount()
			e := event{"evt_dup", "customer.subscription.updated", now + 2, subObject("sub_1", "cus_1", "active", uid)}
			for range 3 {
				if code := h.send(e); code != 200 {
					t.Fatalf("delivery = %d", code)
				}
			}
			if n := h.changeCount() - before; n != 1 {
				t.Errorf("3 deliveries of one event: %d changes; want 1", n)
			}
			e = event{"evt_conc", "customer.subscription.updated", now + 3, subObject("sub_1", "cus_1", "past_due", uid)}
			before = h.changeCount()
			dup := h.svc.Stats().WebhooksDuplicate
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					if code := h.send(e); code != 200 {
						t.Errorf("concurrent delivery = %d", code)
					}
				})
			}
			wg.Wait()
			if n := h.changeCount() - before; n != 1 {
				t.Errorf("20 concurrent deliveries: %d changes; want 1", n)
			}
			if d := h.svc.Stats().WebhooksDuplicate - dup; d != 19 {
				t.Errorf("%d duplicates counted; want 19", d)
			}
		})

		t.Run("OutOfOrder", func(t *testing.T) {
			if code := h.send(event{"evt_old", "customer.subscription.updated", now - 100, subObject("sub_1", "cus_1", "active", uid)}); code != 200 {
				t.Fatalf("old event = %d", code)
			}
			if s, _, _ := h.svc.Subscription(ctx, uid); s.Status != "past_due" {
				t.Errorf("an older event overwrote the state: %s", s.Status)
			}
			// past_due within the grace period is entitled.
			if ok, _ := h.svc.Entitled(ctx, uid); !ok {
				t.Error("past_due within the grace period is not entitled")
			}
		})

		t.Run("DeletedIsTerminal", func(t *testing.T) {
			if code := h.send(event{"evt_del", "customer.subscription.deleted", now + 10, subObject("sub_1", "cus_1", "canceled", uid)}); code != 200 {
				t.Fatal(code)
			}
			if code := h.send(event{"evt_late", "customer.subscription.updated", now + 20, subObject("sub_1", "cus_1", "active", uid)}); code != 200 {
				t.Fatal(code)
			}
			s, _, _ := h.svc.Subscription(ctx, uid)
			if !s.Ended || s.Status != "canceled" {
				t.Errorf("after deletion and a later update: %+v", s)
			}
			if ok, _ := h.svc.Entitled(ctx, uid); ok {
				t.Error("entitled after deletion")
			}
			if h.canceled.Load() != 1 {
				t.Errorf("OnCanceled called %d times", h.canceled.Load())
			}
		})

		t.Run("PaymentFailed", func(t *testing.T) {
			inv := map[string]any{"id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1"}
			if code := h.send(event{"evt_inv", "invoice.payment_failed", now + 30, inv}); code != 200 {
				t.Fatal(code)
			}
			if h.failed.Load() != 1 {
				t.Errorf("OnPaymentFailed called %d times", h.failed.Load())
			}
		})

		t.Run("Unknown", func(t *testing.T) {
			before := h.svc.Stats().WebhooksIgnored
			if code := h.send(event{"evt_unknown", "product.created", now, map[string]any{"id": "prod_1", "object": "product"}}); code != 200 {
				t.Errorf("unknown type = %d; want 200", code)
			}
			if h.svc.Stats().WebhooksIgnored != before+1 {
				t.Error("unknown type not counted as ignored")
			}
		})
	})
}

func TestWebhookRefused(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, nil, billing.Options{DevMode: true})
	uid := mustUser(t, st, "r@example.com")
	payload := event{"evt_1", "customer.subscription.created", time.Now().Unix(), subObject("sub_1", "cus_1", "active", uid)}.payload()

	stale := signedAt(payload, time.Now().Add(-6*time.Minute), secret)
	wrong := signedAt(payload, time.Now(), "whsec_other")
	unsigned := signed(payload)
	unsigned.Header.Del("Stripe-Signature")
	garbage := signed(payload)
	garbage.Header.Set("Stripe-Signature", "t=1,v1=00")
	tampered := signed(payload)
	tampered.Body = http.NoBody
	version := signed([]byte(strings.Replace(string(payload), "2023-10-16", "2024-04-10", 1)))
	for name, r := range map[string]*http.Request{
		"StaleTimestamp": stale, "WrongSecret": wrong, "Unsigned": unsigned, "Garbage": garbage,
		"Tampered": tampered, "APIVersion": version,
	} {
		t.Run(name, func(t *testing.T) {
			if w := h.do(r); w.Code != http.StatusBadRequest {
				t.Errorf("= %d %s; want 400", w.Code, w.Body)
			}
		})
	}
	t.Run("TooLarge", func(t *testing.T) {
		big := append([]byte(`{"pad":"`), make([]byte, billing.MaxWebhookBytes)...)
		if w := h.do(signed(big)); w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("= %d; want 413", w.Code)
		}
	})
	if n := h.changeCount(); n != 0 {
		t.Errorf("refused webhooks made %d changes", n)
	}
	if subs, err := st.Subscriptions(context.Background(), uid); err != nil || len(subs) != 0 {
		t.Errorf("refused webhooks stored %v, %v", subs, err)
	}
	t.Run("IgnoreAPIVersionMismatch", func(t *testing.T) {
		h := newHarness(t, st, nil, billing.Options{DevMode: true, IgnoreAPIVersionMismatch: true})
		if w := h.do(signed([]byte(strings.Replace(string(payload), "2023-10-16", "2024-04-10", 1)))); w.Code != 200 {
			t.Errorf("= %d; want 200 with IgnoreAPIVersionMismatch", w.Code)
		}
	})
}

func TestWebhookStoreFailure(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		fs := &failingStore{Store: st}
		h := newHarness(t, fs, nil, billing.Options{DevMode: true})
		uid := mustUser(t, st, "f@example.com")
		e := event{"evt_1", "customer.subscription.created", time.Now().Unix(), subObject("sub_1", "cus_1", "active", uid)}
		fs.fail.Store(true)
		if code := h.send(e); code < 500 {
			t.Fatalf("with the store down = %d; want 5xx", code)
		}
		fs.fail.Store(false)
		if code := h.send(e); code != 200 {
			t.Fatalf("retry = %d", code)
		}
		if ok, _ := h.svc.Entitled(context.Background(), uid); !ok {
			t.Error("the retried event was not applied")
		}
		if s := h.svc.Stats(); s.WebhooksFailed != 1 || s.WebhooksApplied != 1 || s.WebhooksDuplicate != 0 {
			t.Errorf("stats %+v; want 1 failed, 1 applied, 0 duplicates", s)
		}
	})
}

// TestWebhookShuffled delivers 1,000 events for several subscriptions in
// order to one store and shuffled, with 10% delivered twice, to another:
// both end in the same state (issue 7).
func TestWebhookShuffled(t *testing.T) {
	backends(t, func(t *testing.T, st2 billing.Store) {
		st1 := sqliteStore(t)
		rng := rand.New(rand.NewPCG(1, 2))
		var users [2][3]int64
		for i := range 3 {
			users[0][i] = mustUser(t, st1, fmt.Sprintf("u%d@example.com", i))
			users[1][i] = mustUser(t, st2, fmt.Sprintf("u%d@example.com", i))
		}
		statuses := []string{"incomplete", "trialing", "active", "past_due", "unpaid", "active"}
		base := time.Now().Unix() - 100_000
		type gen struct {
			e   event
			sub int
		}
		var events []gen
		deleted := map[int]bool{} // Stripe deletes a subscription once
		for i := range 1000 {
			sub := rng.IntN(6)
			typ := "customer.subscription.updated"
			switch {
			case i < 6:
				sub, typ = i, "customer.subscription.created"
			case rng.IntN(50) == 0 && sub < 3 && !deleted[sub]:
				deleted[sub] = true
				typ = "customer.subscription.deleted"
			case rng.IntN(20) == 0:
				typ = "checkout.session.completed"
			}
			events = append(events, gen{event{ID: fmt.Sprintf("evt_%04d", i), Type: typ, Created: base + int64(i)}, sub})
		}
		object := func(g gen, store int) map[string]any {
			uid := users[store][g.sub%3]
			id, cus := fmt.Sprintf("sub_%d", g.sub), fmt.Sprintf("cus_%d", g.sub)
			if g.e.Type == "checkout.session.completed" {
				return checkoutObject(uid, cus, id, fmt.Sprintf("u%d@example.com", g.sub%3))
			}
			status := statuses[rng.IntN(len(statuses))]
			if g.e.Type == "customer.subscription.deleted" {
				status = "canceled"
			}
			return subObject(id, cus, status, uid)
		}
		h1 := newHarness(t, st1, nil, billing.Options{DevMode: true})
		h2 := newHarness(t, st2, nil, billing.Options{DevMode: true})
		var payloads [2][][]byte
		for _, g := range events {
			// The same object for both stores, but each with its own user ids.
			state := rng.Int()
			for s := range 2 {
				rng = rand.New(rand.NewPCG(uint64(state), 0))
				e := g.e
				e.Object = object(g, s)
				payloads[s] = append(payloads[s], e.payload())
			}
		}
		for _, p := range payloads[0] {
			if w := h1.do(signed(p)); w.Code != 200 {
				t.Fatalf("in order: %d", w.Code)
			}
		}
		shuffled := append([][]byte(nil), payloads[1]...)
		for _, p := range payloads[1] {
			if rng.IntN(10) == 0 {
				shuffled = append(shuffled, p)
			}
		}
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, p := range shuffled {
			if w := h2.do(signed(p)); w.Code != 200 {
				t.Fatalf("shuffled: %d", w.Code)
			}
		}
		ctx := context.Background()
		for i := range 3 {
			a, err1 := st1.Subscriptions(ctx, users[0][i])
			b, err2 := st2.Subscriptions(ctx, users[1][i])
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if len(a) == 0 {
				t.Fatalf("user %d has no subscriptions", i)
			}
			for j := range a {
				a[j].UserID, a[j].UpdatedAt = 0, time.Time{}
			}
			for j := range b {
				b[j].UserID, b[j].UpdatedAt = 0, time.Time{}
			}
			if !reflect.DeepEqual(a, b) {
				t.Errorf("user %d: in order\n%+v\nshuffled\n%+v", i, a, b)
			}
		}
		if s := h2.svc.Stats(); s.WebhooksDuplicate != uint64(len(shuffled)-1000) {
			t.Errorf("%d duplicates; want %d", s.WebhooksDuplicate, len(shuffled)-1000)
		}
	})
}

// FuzzWebhook feeds arbitrary bodies and signature headers to the handler:
// it never panics, and nothing changes without a valid signature.
func FuzzWebhook(f *testing.F) {
	st := sqliteStore(f)
	h := newHarness(f, st, nil, billing.Options{DevMode: true})
	uid := mustUser(f, st, "fuzz@example.com")
	valid := event{"evt_seed", "customer.subscription.created", time.Now().Unix(), subObject("sub_1", "cus_1", "active", uid)}.payload()
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: valid, Secret: secret})
	f.Add(valid, sp.Header)
	f.Add(valid, "t=1,v1=00")
	f.Add([]byte(`{"id":"evt_1","type":"customer.subscription.created","data":{"object":{}}}`), "")
	f.Add([]byte("not json"), "t=abc,v1=zz,v0=00")
	f.Add([]byte(`{}`), strings.Repeat("v1=", 100))
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		before := h.changeCount()
		applied := h.svc.Stats().WebhooksApplied
		r := signed(body)
		r.Header.Set("Stripe-Signature", header)
		w := h.do(r)
		if webhook.ValidatePayload(body, header, secret) == nil {
			return // a genuinely signed payload may change state
		}
		if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("unsigned input answered %d", w.Code)
		}
		if h.changeCount() != before || h.svc.Stats().WebhooksApplied != applied {
			t.Error("an input without a valid signature changed state")
		}
	})
}
