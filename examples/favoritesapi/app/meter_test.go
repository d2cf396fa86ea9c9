package app_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/usage"
)

// TestMeteredBilling: a pro customer's calls through the API become
// Stripe meter events (sent to stripe-mock) whose values add up to the
// cost counted, with identifiers derived from (customer, meter, hour,
// seq); a second pass, and a second instance on the same database,
// enqueue and send nothing more, so that every unit is billed once.
func TestMeteredBilling(t *testing.T) {
	mock := stripemock.Start(t)
	clock := fakeclock.New(time.Now())
	cfg := app.Config{
		StripeSecretKey:     "sk_test_favoritesapi",
		StripeWebhookSecret: webhookSecret,
		StripePriceID:       "price_favoritesapi",
		StripeProPriceID:    "price_favoritesapi_pro",
		StripeAPIURL:        mock,
		RateLimit:           ratelimit.MustParseLimit("1000/s"),
	}
	manual := func(o *app.Options) { o.Now, o.MeterInterval = clock.Now, -1 }
	s := startServer(t, sqliteDB, cfg, fastUsage, manual)
	ctx := context.Background()

	// A pro subscription, as Stripe's webhooks report it.
	const email, customerID = "metered@example.com", "cus_favoritesapi_metered"
	stripe := &stripeSender{t: t, url: s.URL, base: time.Now().Add(-time.Minute)}
	if st := stripe.send("checkout.session.completed", map[string]any{
		"id": "cs_metered", "object": "checkout.session", "mode": "subscription", "status": "complete",
		"customer": customerID, "subscription": "sub_metered",
		"customer_details": map[string]any{"email": email},
		"metadata":         map[string]any{"apikit_signup_email": email},
	}); st != 200 {
		t.Fatalf("checkout.session.completed: %d", st)
	}
	if st := stripe.send("customer.subscription.created", map[string]any{
		"id": "sub_metered", "object": "subscription", "customer": customerID, "status": "active",
		"current_period_end": time.Now().Add(30 * 24 * time.Hour).Unix(), "cancel_at_period_end": false,
		"items": map[string]any{"object": "list", "data": []any{map[string]any{
			"id": "si_metered", "object": "subscription_item",
			"price": map[string]any{"id": "price_favoritesapi_pro", "object": "price"},
		}}},
	}); st != 200 {
		t.Fatalf("customer.subscription.created: %d", st)
	}
	userID, found, err := s.Store().UserByEmail(ctx, email)
	if err != nil || !found {
		t.Fatalf("the checkout did not create the user: %v", err)
	}
	_, tok, err := s.Keys().Issue(ctx, userID, apikey.IssueOptions{Name: "metered"})
	if err != nil {
		t.Fatal(err)
	}
	token := tok.Reveal()
	waitPlan(t, s.URL, token, "pro", "the pro subscription")
	for range 4 {
		call(t, s.URL, token, "GET", "/v1/favorites", "")
	}
	if r := call(t, s.URL, token, "POST", "/v1/favorites", `{"name":"Example","url":"https://example.com/"}`); r.status != 201 {
		t.Fatalf("POST /v1/favorites: %d %s", r.status, r.body)
	}
	if err := s.Metering().Flush(ctx); err != nil {
		t.Fatal(err)
	}
	start := usage.Hour.Truncate(clock.Now()).Add(-time.Hour)
	counts, err := s.Store().Counts(ctx, usage.Query{UserID: strconv.FormatInt(userID, 10), From: start, To: start.Add(3 * time.Hour), Granularity: usage.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var counted int64
	for _, c := range counts {
		counted += c.Cost
	}
	if counted < 4+5 {
		t.Fatalf("counted cost %d, want at least 9 (4 reads and a write)", counted)
	}

	// Nothing is reported before the hour is over and settled.
	rep := s.MeterReporter()
	if rep == nil {
		t.Fatal("no meter reporter with a Stripe key")
	}
	if n, err := rep.Enqueue(ctx); err != nil || n != 0 {
		t.Fatalf("Enqueue within the hour = %d, %v; want nothing yet", n, err)
	}
	clock.Advance(2 * time.Hour)
	n, err := rep.Enqueue(ctx)
	if err != nil || n < 1 {
		t.Fatalf("Enqueue after the hour = %d, %v; want the hour's event", n, err)
	}
	res, err := rep.Send(ctx)
	if err != nil || res.Sent != n || res.Failed+res.Rejected != 0 {
		t.Fatalf("Send = %+v, %v; want %d sent to stripe-mock", res, err, n)
	}
	sent := sentEvents(t, s)
	var billed int64
	for _, e := range sent {
		billed += e.Value
		if e.CustomerID != customerID || e.EventName != app.MeterEventName || e.UserID != strconv.FormatInt(userID, 10) ||
			e.Identifier != meter.Identifier(customerID, app.MeterEventName, e.Slice, e.Seq) || e.SentAt.IsZero() {
			t.Errorf("sent event %+v", e)
		}
	}
	if billed != counted || len(sent) != n {
		t.Fatalf("%d events billing %d units, want %d events billing the %d counted", len(sent), billed, n, counted)
	}

	// A second pass finds nothing to add or send.
	if n, err := rep.Enqueue(ctx); err != nil || n != 0 {
		t.Errorf("a second Enqueue = %d, %v; want 0", n, err)
	}
	if res, err := rep.Send(ctx); err != nil || res != (meter.SendResult{}) {
		t.Errorf("a second Send = %+v, %v; want nothing", res, err)
	}
	// Neither does a second instance on the same database (a restart, or
	// the fleet): the identifiers are the same, so nothing is billed twice.
	cfg.DatabaseURL = s.Config().DatabaseURL
	s2 := startServer(t, sqliteDB, cfg, manual)
	if n, err := s2.MeterReporter().Enqueue(ctx); err != nil || n != 0 {
		t.Errorf("Enqueue on a second instance = %d, %v; want 0", n, err)
	}
	again := sentEvents(t, s2)
	if len(again) != len(sent) {
		t.Fatalf("the outbox holds %d sent events after the second instance, want %d", len(again), len(sent))
	}
	for i := range again {
		if again[i].Identifier != sent[i].Identifier || again[i].Value != sent[i].Value {
			t.Errorf("event %d: %s (%d) after, %s (%d) before", i, again[i].Identifier, again[i].Value, sent[i].Identifier, sent[i].Value)
		}
	}
}

func sentEvents(t *testing.T, s *testServer) []meter.Event {
	t.Helper()
	events, err := s.Store().MeterEvents(context.Background(), meter.Sent, 100)
	if err != nil {
		t.Fatal(err)
	}
	return events
}
