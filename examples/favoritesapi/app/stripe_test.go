package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/apikit/apikit/ratelimit"
	"github.com/stripe/stripe-go/v76/webhook"
)

const webhookSecret = "whsec_favoritesapi_test"

// stripeSender signs events as Stripe does and posts them to the server's
// webhook endpoint.
type stripeSender struct {
	t    *testing.T
	url  string
	seq  atomic.Int64
	base time.Time
}

// send posts an event of the type with the object as its data, created
// seq seconds after the sender's base time, and returns the status.
func (s *stripeSender) send(typ string, object map[string]any) int {
	s.t.Helper()
	n := s.seq.Add(1)
	payload, err := json.Marshal(map[string]any{
		"id":          fmt.Sprintf("evt_favoritesapi_%d_%d", s.base.UnixNano(), n),
		"object":      "event",
		"api_version": "2023-10-16",
		"created":     s.base.Unix() + n,
		"type":        typ,
		"livemode":    false,
		"data":        map[string]any{"object": object},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: payload, Secret: webhookSecret})
	req, err := http.NewRequest(http.MethodPost, s.url+"/webhooks/stripe", strings.NewReader(string(signed.Payload)))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signed.Header)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("posting %s: %v", typ, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestStripeFlow runs sign-up with real Stripe objects: Checkout and the
// portal against stripe-mock, the subscription's life through signed
// webhooks, sign-in by email, and the API following the subscription.
func TestStripeFlow(t *testing.T) {
	mock := stripemock.Start(t)
	s := startServer(t, sqliteDB, app.Config{
		StripeSecretKey:     "sk_test_favoritesapi",
		StripeWebhookSecret: webhookSecret,
		StripePriceID:       "price_favoritesapi",
		StripeProPriceID:    "price_favoritesapi_pro",
		StripeAPIURL:        mock,
		// Polling /v1/me below must not be limited on any plan.
		RateLimit: ratelimit.MustParseLimit("100/s"),
	})
	if strings.Contains(get(t, browser(t), s.URL+"/").body, "DEV MODE") {
		t.Error("the landing page says DEV MODE with a Stripe key configured")
	}
	const email = "stripe-buyer@example.com"
	c := browser(t)
	p := postForm(t, c, s.URL+"/signup", url.Values{"email": {email}})
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "https://") {
		t.Fatalf("POST /signup = %d to %q, want 303 to Stripe Checkout:\n%s", p.status, p.location, p.body)
	}
	ctx := context.Background()
	if _, found, err := s.Store().UserByEmail(ctx, email); err != nil || found {
		t.Fatalf("sign-up created the user before Checkout completed (%v)", err)
	}

	// Stripe reports the completed checkout, then the subscription.
	stripe := &stripeSender{t: t, url: s.URL, base: time.Now().Add(-time.Minute)}
	const customerID, subscriptionID = "cus_favoritesapi", "sub_favoritesapi"
	periodEnd := time.Now().Add(30 * 24 * time.Hour).Unix()
	price := "price_favoritesapi"
	subscription := func(status string) map[string]any {
		return map[string]any{
			"id": subscriptionID, "object": "subscription", "customer": customerID, "status": status,
			"current_period_end": periodEnd, "cancel_at_period_end": false,
			"items": map[string]any{"object": "list", "data": []any{map[string]any{
				"id": "si_favoritesapi", "object": "subscription_item",
				"price": map[string]any{"id": price, "object": "price"},
			}}},
		}
	}
	if st := stripe.send("checkout.session.completed", map[string]any{
		"id": "cs_favoritesapi", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"customer": customerID, "subscription": subscriptionID,
		"customer_details": map[string]any{"email": email},
		"metadata":         map[string]any{"apikit_signup_email": email}, // as billing's sign-up sets it
	}); st != 200 {
		t.Fatalf("checkout.session.completed: %d", st)
	}
	userID, found, err := s.Store().UserByEmail(ctx, email)
	if err != nil || !found {
		t.Fatalf("the completed checkout did not create the user: %v", err)
	}
	if st := stripe.send("customer.subscription.created", subscription("active")); st != 200 {
		t.Fatalf("customer.subscription.created: %d", st)
	}

	// The buyer signs in by email and creates a key.
	web := signIn(t, s, email)
	token := createKey(t, s, web, "stripe key")
	if r := call(t, s.URL, token, "GET", "/v1/me", ""); r.status != 200 || !strings.Contains(string(r.body), `"status":"active"`) ||
		!strings.Contains(string(r.body), `"name":"hobby"`) {
		t.Fatalf("GET /v1/me with an active subscription to STRIPE_PRICE_ID: %d %s, want the hobby plan", r.status, r.body)
	}
	if tok := token; !strings.HasPrefix(tok, "fav_test_") {
		t.Errorf("a test Stripe key issues %q, want fav_test_ keys", tok[:9])
	}

	// The portal is a Stripe Billing Portal session.
	dash := get(t, web, s.URL+"/app")
	p = submit(t, web, dash, "/billing/portal", nil)
	if p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "https://") {
		t.Errorf("portal = %d to %q, want 303 to Stripe", p.status, p.location)
	}

	// An upgrade in the portal: Stripe changes the price, and the webhook
	// brings it; the pro price selects the pro plan.
	price = "price_favoritesapi_pro"
	if st := stripe.send("customer.subscription.updated", subscription("active")); st != 200 {
		t.Fatalf("customer.subscription.updated to pro: %d", st)
	}
	waitPlan(t, s.URL, token, "pro", "after the upgrade to STRIPE_PRO_PRICE_ID")

	// Payment fails: still entitled within the grace period.
	if st := stripe.send("customer.subscription.updated", subscription("past_due")); st != 200 {
		t.Fatalf("customer.subscription.updated: %d", st)
	}
	waitPlan(t, s.URL, token, "pro", "past_due within the grace period")

	// The subscription ends: the key falls back to the free plan.
	if st := stripe.send("customer.subscription.deleted", subscription("canceled")); st != 200 {
		t.Fatalf("customer.subscription.deleted: %d", st)
	}
	waitPlan(t, s.URL, token, "free", "after the subscription was deleted")
	// Neither a late update (older than the deletion) nor a newer one
	// brings it back: deletion is final. The stored state is read
	// directly, since the API answers from a short entitlement cache.
	ended := func(why string) {
		t.Helper()
		sub, found, err := s.Billing().Subscription(ctx, userID)
		if err != nil || !found || !sub.Ended || sub.Status != "canceled" {
			t.Errorf("%s: subscription %+v (found %v, %v), want it ended and canceled", why, sub, found, err)
		}
	}
	ended("after customer.subscription.deleted")
	for _, shift := range []time.Duration{-time.Hour, 2 * time.Hour} {
		stripe.base = stripe.base.Add(shift)
		if st := stripe.send("customer.subscription.updated", subscription("active")); st != 200 {
			t.Fatalf("update after deletion: %d", st)
		}
		ended(fmt.Sprintf("after an update %v from the deletion", shift))
	}

	// A forged event changes nothing.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/webhooks/stripe", strings.NewReader(`{"id":"evt_forged","type":"customer.subscription.created"}`))
	req.Header.Set("Stripe-Signature", "t=1,v1=00")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("forged webhook: %d, want 400", resp.StatusCode)
	}
	ended("after a forged event")
}

// waitPlan polls GET /v1/me until it answers 200 on the named plan, for
// changes that reach the API through the short entitlement cache.
func waitPlan(t *testing.T, base, token, plan string, why string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := call(t, base, token, "GET", "/v1/me", "")
		var me meBody
		if r.status == 200 {
			r.json(t, &me)
			if me.Plan.Name == plan {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET /v1/me = %d %s, want 200 on plan %s", why, r.status, r.body, plan)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signIn signs the user in through the login form and the emailed link,
// in a new browser, and returns the browser.
func signIn(t testing.TB, s *testServer, email string) *http.Client {
	t.Helper()
	c := browser(t)
	signInWith(t, s, c, email)
	return c
}
