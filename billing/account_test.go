package billing_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/internal/testkit/stripemock"
)

// recorder is an http.RoundTripper that records the Stripe API calls
// ("METHOD /path" and the form body) before sending them on.
type recorder struct {
	mu    sync.Mutex
	calls []string
	forms []url.Values
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var form url.Values
	if r.Body != nil {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		r.Body.Close()
		form, _ = url.ParseQuery(string(b))
		r.Body = io.NopCloser(strings.NewReader(string(b)))
	}
	rec.mu.Lock()
	rec.calls = append(rec.calls, r.Method+" "+r.URL.Path)
	rec.forms = append(rec.forms, form)
	rec.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

// take returns the calls recorded since the last take, sorted, with their
// forms keyed by call.
func (rec *recorder) take() ([]string, map[string]url.Values) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	calls, forms := rec.calls, map[string]url.Values{}
	for i, c := range calls {
		forms[c] = rec.forms[i]
	}
	rec.calls, rec.forms = nil, nil
	slices.Sort(calls)
	return calls, forms
}

func recordingClient(t *testing.T, base string) (*billing.Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	c, err := billing.NewClient(billing.ClientOptions{Key: "sk_test_billing", URL: base, MaxNetworkRetries: -1,
		HTTPClient: &http.Client{Transport: rec, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// TestAccountStripeMock (issue 16 §3, §4): against stripe-mock, an email
// change updates every customer of the user and nobody else's; a later
// customer.updated event changes nothing; account deletion cancels the
// user's subscriptions at period end (still entitled) or at once (not
// entitled, before any webhook), and no one else's.
func TestAccountStripeMock(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		c, rec := recordingClient(t, stripemock.Start(t))
		var forgotten atomic.Int64
		h := newHarness(t, st, c, billing.Options{OnForget: func(int64) { forgotten.Add(1) }})
		ada, bob := mustUser(t, st, "ada@example.com"), mustUser(t, st, "bob@example.com")
		now := time.Now().Unix()
		for i, e := range []event{
			{"evt_a1", "customer.subscription.created", now, subObject("sub_a1", "cus_a1", "active", ada)},
			{"evt_a2", "customer.subscription.created", now, subObject("sub_a2", "cus_a2", "active", ada)},
			{"evt_a3", "customer.subscription.created", now, subObject("sub_a3", "cus_a2", "canceled", ada)},
			{"evt_b1", "customer.subscription.created", now, subObject("sub_b1", "cus_b1", "active", bob)},
		} {
			if code := h.send(e); code != 200 {
				t.Fatalf("event %d = %d", i, code)
			}
		}
		if calls, _ := rec.take(); len(calls) != 0 {
			t.Fatalf("setup called Stripe: %v", calls)
		}

		// Change email: both of ada's customers, nobody else's.
		if err := h.svc.UpdateCustomerEmail(ctx, ada, " Ada.New@Example.com "); err != nil {
			t.Fatalf("UpdateCustomerEmail: %v", err)
		}
		calls, forms := rec.take()
		if want := []string{"POST /v1/customers/cus_a1", "POST /v1/customers/cus_a2"}; !slices.Equal(calls, want) {
			t.Fatalf("calls = %v; want %v", calls, want)
		}
		for c, f := range forms {
			if f.Get("email") != "ada.new@example.com" {
				t.Errorf("%s: email = %q", c, f.Get("email"))
			}
		}
		if email, _, _ := st.UserEmail(ctx, ada); email != "ada@example.com" {
			t.Errorf("UpdateCustomerEmail changed the user's row: %q", email)
		}
		if err := h.svc.UpdateCustomerEmail(ctx, ada, "not an address"); !errors.Is(err, billing.ErrInvalidEmail) {
			t.Errorf("invalid address: %v; want ErrInvalidEmail", err)
		}
		if calls, _ := rec.take(); len(calls) != 0 {
			t.Errorf("an invalid address called Stripe: %v", calls)
		}

		// Webhook-safe: customer.updated, naming another account's address
		// or a new one, links, creates or changes nothing.
		for i, email := range []string{"bob@example.com", "mallory@example.com"} {
			code := h.send(event{fmt.Sprintf("evt_cu%d", i), "customer.updated", now, map[string]any{
				"id": "cus_a1", "object": "customer", "email": email,
				"metadata": map[string]any{"apikit_user_id": fmt.Sprint(bob)},
			}})
			if code != 200 {
				t.Fatalf("customer.updated = %d", code)
			}
		}
		if _, found, _ := st.UserByEmail(ctx, "mallory@example.com"); found {
			t.Error("customer.updated created a user")
		}
		if cs, _ := st.Customers(ctx, bob); !slices.Equal(cs, []string{"cus_b1"}) {
			t.Errorf("bob's customers after customer.updated: %v", cs)
		}
		if cs, _ := st.Customers(ctx, ada); len(cs) != 2 {
			t.Errorf("ada's customers after customer.updated: %v", cs)
		}

		// Delete at period end: still entitled, cancel_at_period_end set.
		if err := h.svc.CancelSubscriptions(ctx, ada, true); err != nil {
			t.Fatalf("CancelSubscriptions(at period end): %v", err)
		}
		calls, forms = rec.take()
		if want := []string{"POST /v1/subscriptions/sub_a1", "POST /v1/subscriptions/sub_a2"}; !slices.Equal(calls, want) {
			t.Fatalf("calls = %v; want %v", calls, want)
		}
		for c, f := range forms {
			if f.Get("cancel_at_period_end") != "true" {
				t.Errorf("%s: form %v", c, f)
			}
		}
		subs, _ := st.Subscriptions(ctx, ada)
		for _, s := range subs {
			if s.SubscriptionID != "sub_a3" && (!s.CancelAtPeriodEnd || s.Ended || s.Status != "active") {
				t.Errorf("after cancel at period end: %+v", s)
			}
		}
		if ok, err := h.svc.Entitled(ctx, ada); !ok || err != nil {
			t.Errorf("Entitled after cancel at period end = %v, %v; want true", ok, err)
		}
		// Asked again: nothing to do.
		if err := h.svc.CancelSubscriptions(ctx, ada, true); err != nil {
			t.Fatal(err)
		}
		if calls, _ := rec.take(); len(calls) != 0 {
			t.Errorf("a second cancel at period end called Stripe: %v", calls)
		}

		// Delete at once: not entitled before any webhook; bob untouched.
		f0 := forgotten.Load()
		if err := h.svc.CancelSubscriptions(ctx, ada, false); err != nil {
			t.Fatalf("CancelSubscriptions(now): %v", err)
		}
		calls, _ = rec.take()
		if want := []string{"DELETE /v1/subscriptions/sub_a1", "DELETE /v1/subscriptions/sub_a2"}; !slices.Equal(calls, want) {
			t.Fatalf("calls = %v; want %v", calls, want)
		}
		if forgotten.Load() == f0 {
			t.Error("OnForget not called")
		}
		if ok, err := h.svc.Entitled(ctx, ada); ok || err != nil {
			t.Errorf("Entitled after cancel = %v, %v; want false", ok, err)
		}
		subs, _ = st.Subscriptions(ctx, ada)
		for _, s := range subs {
			if !s.Ended && s.SubscriptionID != "sub_a3" || s.Status != "canceled" {
				t.Errorf("after cancel: %+v", s)
			}
		}
		if h.canceled.Load() == 0 {
			t.Error("OnCanceled not called")
		}
		if ok, _ := h.svc.Entitled(ctx, bob); !ok {
			t.Error("bob lost his subscription")
		}
		// A late event from before the cancellation revives nothing.
		h.send(event{"evt_late", "customer.subscription.updated", now + 1, subObject("sub_a1", "cus_a1", "active", ada)})
		if ok, _ := h.svc.Entitled(ctx, ada); ok {
			t.Error("a late event revived a canceled subscription")
		}
		if err := h.svc.CancelSubscriptions(ctx, ada, false); err != nil {
			t.Fatal(err)
		}
		if calls, _ := rec.take(); len(calls) != 0 {
			t.Errorf("cancelling again called Stripe: %v", calls)
		}
	})
}

// failingStripe answers every request with the status and a Stripe error.
func failingStripe(t *testing.T, status int, calls *atomic.Int64) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, `{"error":{"type":"invalid_request_error","code":"resource_missing","message":"boom"}}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestAccountNoCustomer: a user with no customer needs no Stripe call.
func TestAccountNoCustomer(t *testing.T) {
	st := sqliteStore(t)
	var calls atomic.Int64
	h := newHarness(t, st, mockClient(t, failingStripe(t, 500, &calls)), billing.Options{})
	uid := mustUser(t, st, "ada@example.com")
	if err := h.svc.UpdateCustomerEmail(context.Background(), uid, "new@example.com"); err != nil {
		t.Error(err)
	}
	if err := h.svc.CancelSubscriptions(context.Background(), uid, false); err != nil {
		t.Error(err)
	}
	if err := h.svc.CancelSubscriptions(context.Background(), 9999, true); err != nil {
		t.Error(err)
	}
	if calls.Load() != 0 {
		t.Errorf("%d Stripe calls for a user with no customer", calls.Load())
	}
}

// TestAccountStripeError: Stripe refuses → the error wraps ErrStripe and
// nothing is written; Stripe has no such object (404) → a customer is
// skipped, a subscription recorded as ended.
func TestAccountStripeError(t *testing.T) {
	ctx := context.Background()
	for _, status := range []int{http.StatusBadRequest, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			st := sqliteStore(t)
			var calls atomic.Int64
			h := newHarness(t, st, mockClient(t, failingStripe(t, status, &calls)), billing.Options{})
			uid := mustUser(t, st, "ada@example.com")
			h.send(event{"evt_1", "customer.subscription.created", time.Now().Unix(), subObject("sub_1", "cus_1", "active", uid)})
			before, _ := st.Subscriptions(ctx, uid)
			changes := h.changeCount()
			if err := h.svc.UpdateCustomerEmail(ctx, uid, "new@example.com"); !errors.Is(err, billing.ErrStripe) {
				t.Errorf("UpdateCustomerEmail = %v; want ErrStripe", err)
			}
			for _, atEnd := range []bool{true, false} {
				if err := h.svc.CancelSubscriptions(ctx, uid, atEnd); !errors.Is(err, billing.ErrStripe) {
					t.Errorf("CancelSubscriptions(%v) = %v; want ErrStripe", atEnd, err)
				}
			}
			if calls.Load() != 3 {
				t.Errorf("%d Stripe calls; want 3", calls.Load())
			}
			after, _ := st.Subscriptions(ctx, uid)
			if !slices.Equal(before, after) || h.changeCount() != changes {
				t.Errorf("a refused cancellation wrote:\n%+v\n%+v", before, after)
			}
			if ok, _ := h.svc.Entitled(ctx, uid); !ok {
				t.Error("not entitled after a refused cancellation")
			}
		})
	}
	t.Run("404", func(t *testing.T) {
		st := sqliteStore(t)
		var calls atomic.Int64
		h := newHarness(t, st, mockClient(t, failingStripe(t, http.StatusNotFound, &calls)), billing.Options{})
		uid := mustUser(t, st, "ada@example.com")
		h.send(event{"evt_1", "customer.subscription.created", time.Now().Unix(), subObject("sub_1", "cus_1", "active", uid)})
		if err := h.svc.UpdateCustomerEmail(ctx, uid, "new@example.com"); err != nil {
			t.Errorf("UpdateCustomerEmail of a deleted customer = %v", err)
		}
		if err := h.svc.CancelSubscriptions(ctx, uid, true); err != nil {
			t.Errorf("CancelSubscriptions of a missing subscription = %v", err)
		}
		sub, _, _ := st.SubscriptionByID(ctx, "sub_1")
		if !sub.Ended {
			t.Errorf("a subscription Stripe does not have is not ended: %+v", sub)
		}
	})
}

// TestAccountDevMode: in dev mode cancellation is applied at once through
// the webhook's path (the cache is dropped, OnForget called); at period
// end keeps the plan; the email update does nothing.
func TestAccountDevMode(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		clock := fakeclock.New(time.Now()) // frozen: no cache entry expires
		var forgotten atomic.Int64
		h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog(), Now: clock.Now,
			CacheTTL: time.Hour, OnForget: func(int64) { forgotten.Add(1) }})
		ada, bob := mustUser(t, st, "ada@example.com"), mustUser(t, st, "bob@example.com")
		for _, uid := range []int64{ada, bob} {
			id := fmt.Sprint(uid)
			if w := devComplete(h, devSignUp(t, h, map[int64]string{ada: "ada@example.com", bob: "bob@example.com"}[uid], id), id); w.Code != http.StatusSeeOther {
				t.Fatalf("dev checkout = %d", w.Code)
			}
		}
		// A real subscription in a dev-mode database is left alone.
		carol := mustUser(t, st, "carol@example.com")
		h.send(event{"evt_real", "customer.subscription.created", clock.Now().Unix(), subObject("sub_real", "cus_real", "active", carol)})
		if err := h.svc.CancelSubscriptions(ctx, carol, false); err != nil {
			t.Fatal(err)
		}
		if sub, _, _ := st.SubscriptionByID(ctx, "sub_real"); sub.Ended || sub.Status != "active" || sub.UserID != carol {
			t.Errorf("dev mode touched a real subscription: %+v", sub)
		}
		if planName(t, h.svc, ada) != "hobby" {
			t.Fatal("ada is not on hobby")
		}

		if err := h.svc.UpdateCustomerEmail(ctx, ada, "new@example.com"); err != nil {
			t.Errorf("UpdateCustomerEmail in dev mode = %v", err)
		}
		if email, _, _ := st.UserEmail(ctx, ada); email != "ada@example.com" {
			t.Errorf("UpdateCustomerEmail changed the user's row: %q", email)
		}

		f0 := forgotten.Load()
		if err := h.svc.CancelSubscriptions(ctx, ada, true); err != nil {
			t.Fatal(err)
		}
		dev := func() billing.Subscription {
			subs, _ := st.Subscriptions(ctx, ada)
			for _, s := range subs {
				if s.Dev() {
					return s
				}
			}
			t.Fatal("no dev subscription")
			return billing.Subscription{}
		}
		if s := dev(); !s.CancelAtPeriodEnd || s.Ended {
			t.Errorf("after cancel at period end: %+v", s)
		}
		if ok, _ := h.svc.Entitled(ctx, ada); !ok || planName(t, h.svc, ada) != "hobby" {
			t.Error("cancel at period end ended the plan at once")
		}
		if forgotten.Load() == f0 {
			t.Error("OnForget not called")
		}

		if err := h.svc.CancelSubscriptions(ctx, ada, false); err != nil {
			t.Fatal(err)
		}
		if s := dev(); !s.Ended || s.Status != "canceled" {
			t.Errorf("after cancel: %+v", s)
		}
		// The cache was dropped: served at once, with the clock frozen.
		if ok, _ := h.svc.Entitled(ctx, ada); ok || planName(t, h.svc, ada) != "free" {
			t.Errorf("after cancel: entitled %v, plan %s; want false, free", ok, planName(t, h.svc, ada))
		}
		if planName(t, h.svc, bob) != "hobby" {
			t.Error("bob lost his plan")
		}
	})
}
