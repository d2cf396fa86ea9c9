package billing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/go-chi/chi/v5"
)

// stripeFake is a minimal Stripe API on loopback: it records the Checkout
// Sessions created and answers retrievals from its maps.
type stripeFake struct {
	mu       sync.Mutex
	created  []url.Values
	sessions map[string]map[string]any
	subs     map[string]map[string]any
	subReads atomic.Int64
	failSubs atomic.Bool
}

func newStripeFake(t *testing.T) (*stripeFake, *billing.Client) {
	f := &stripeFake{sessions: map[string]map[string]any{}, subs: map[string]map[string]any{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		f.mu.Lock()
		defer f.mu.Unlock()
		notFound := func() {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"type":"invalid_request_error","message":"No such object"}}`)
		}
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/checkout/sessions":
			_ = r.ParseForm()
			f.created = append(f.created, r.PostForm)
			id := fmt.Sprintf("cs_test_fake%d", len(f.created))
			_ = json.NewEncoder(w).Encode(map[string]any{"id": id, "object": "checkout.session", "url": "https://checkout.test/pay/" + id})
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/checkout/sessions/"):
			cs, ok := f.sessions[strings.TrimPrefix(r.URL.Path, "/v1/checkout/sessions/")]
			if !ok {
				notFound()
				return
			}
			_ = json.NewEncoder(w).Encode(cs)
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/subscriptions/"):
			f.subReads.Add(1)
			if f.failSubs.Load() {
				w.WriteHeader(http.StatusInternalServerError)
				fmt.Fprint(w, `{"error":{"type":"api_error","message":"boom"}}`)
				return
			}
			sub, ok := f.subs[strings.TrimPrefix(r.URL.Path, "/v1/subscriptions/")]
			if !ok {
				notFound()
				return
			}
			_ = json.NewEncoder(w).Encode(sub)
		default:
			notFound()
		}
	}))
	t.Cleanup(srv.Close)
	return f, mockClient(t, srv.URL)
}

func (f *stripeFake) lastCreated(t *testing.T) url.Values {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.created) == 0 {
		t.Fatal("no Checkout session was created")
	}
	return f.created[len(f.created)-1]
}

// from sets the request's client address.
func from(r *http.Request, ip string) *http.Request {
	r.RemoteAddr = ip + ":40000"
	return r
}

// TestSignupCreatesNothing (issue 11 §1): POST /signup stores no user and
// no other state; an anonymous sign-up is a pending reference that lives
// only on the Checkout session (apikit's metadata, customer_email) and
// expires; a signed-in user buying for their own address buys as
// themselves, with their customer.
func TestSignupCreatesNothing(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		fake, client := newStripeFake(t)
		h := newHarness(t, st, client, billing.Options{})
		start := time.Now()
		// A flood of sign-ups for random addresses, from many clients.
		for i := range 60 {
			r := from(form("/signup", url.Values{"email": {fmt.Sprintf("Flood%d@Example.org", i)}}), fmt.Sprintf("192.0.2.%d", i))
			if w := h.do(r); w.Code != http.StatusSeeOther {
				t.Fatalf("sign-up %d = %d %s", i, w.Code, w.Body)
			}
		}
		for i := range 60 {
			if _, found, err := st.UserByEmail(ctx, fmt.Sprintf("flood%d@example.org", i)); found || err != nil {
				t.Fatalf("sign-up created user flood%d (%v)", i, err)
			}
		}
		p := fake.lastCreated(t)
		exp, _ := strconv.ParseInt(p.Get("expires_at"), 10, 64)
		if p.Get("metadata[apikit_signup_email]") != "flood59@example.org" || p.Get("customer_email") != "flood59@example.org" ||
			p.Get("subscription_data[metadata][apikit_signup_email]") != "flood59@example.org" ||
			p.Has("client_reference_id") || p.Has("metadata[apikit_user_id]") || p.Has("customer") {
			t.Errorf("pending sign-up's Checkout parameters: %v", p)
		}
		if d := time.Unix(exp, 0).Sub(start); d < 30*time.Minute || d > 24*time.Hour {
			t.Errorf("Checkout expires in %v; want between Stripe's 30 minutes and 24 hours", d)
		}

		// The signed-in owner of the address buys as themselves.
		uid := mustUser(t, st, "owner@example.org")
		if code := h.send(event{"evt_own", "checkout.session.completed", time.Now().Unix(), checkoutObject(uid, "cus_own", "sub_own", "owner@example.org")}); code != 200 {
			t.Fatal(code)
		}
		if code := h.send(event{"evt_own_del", "customer.subscription.deleted", time.Now().Unix(), subObject("sub_own", "cus_own", "canceled", uid)}); code != 200 {
			t.Fatal(code)
		}
		r := form("/signup", url.Values{"email": {"Owner@Example.org"}})
		r.Header.Set("X-Test-User", fmt.Sprint(uid))
		if w := h.do(r); w.Code != http.StatusSeeOther {
			t.Fatalf("signed-in sign-up = %d %s", w.Code, w.Body)
		}
		p = fake.lastCreated(t)
		if p.Get("client_reference_id") != fmt.Sprint(uid) || p.Get("metadata[apikit_user_id]") != fmt.Sprint(uid) ||
			p.Get("customer") != "cus_own" || p.Has("metadata[apikit_signup_email]") {
			t.Errorf("signed-in owner's Checkout parameters: %v", p)
		}
		// Signed in, but for someone else's address: a pending sign-up.
		r = form("/signup", url.Values{"email": {"someone@example.org"}})
		r.Header.Set("X-Test-User", fmt.Sprint(uid))
		if w := h.do(r); w.Code != http.StatusSeeOther {
			t.Fatalf("sign-up for another address = %d", w.Code)
		}
		if p = fake.lastCreated(t); p.Has("client_reference_id") || p.Has("customer") || p.Get("metadata[apikit_signup_email]") != "someone@example.org" {
			t.Errorf("another address's Checkout parameters: %v", p)
		}
	})
}

// TestParkedCheckoutTakeover is the attack of issue 11 §1: an attacker
// starts a sign-up for the victim's address, parks it until the victim has
// an account, then completes it in their own browser. They get no session
// and no way in: the link goes to the victim's address.
func TestParkedCheckoutTakeover(t *testing.T) {
	check := func(t *testing.T, h *harness, w *httptest.ResponseRecorder) {
		t.Helper()
		if w.Code != http.StatusOK || w.Header().Get("Location") != "" || w.Header().Get("Set-Cookie") != "" ||
			!strings.Contains(w.Body.String(), "v•••@example.org") || strings.Contains(w.Body.String(), "victim@") {
			t.Fatalf("attacker's completion = %d to %q, cookie %q:\n%s", w.Code, w.Header().Get("Location"), w.Header().Get("Set-Cookie"), w.Body)
		}
		if l := h.sentLinks(); len(l) != 1 || l[0] != "victim@example.org" {
			t.Errorf("links: %v; want one to the victim", l)
		}
	}
	t.Run("DevMode", func(t *testing.T) {
		st := sqliteStore(t)
		h := newHarness(t, st, nil, billing.Options{DevMode: true})
		token := devSignUp(t, h, "victim@example.org", "")
		victim := mustUser(t, st, "victim@example.org") // the victim signs up and in by email meanwhile
		// The attacker's browser is signed in to an account of their own:
		// still no way into the victim's.
		attacker := mustUser(t, st, "attacker@example.org")
		w := devComplete(h, token, fmt.Sprint(attacker))
		check(t, h, w)
		if ok, _ := h.svc.Entitled(context.Background(), victim); !ok {
			t.Error("the paid sign-up did not subscribe the address it named")
		}
	})
	t.Run("Stripe", func(t *testing.T) {
		st := sqliteStore(t)
		fake, client := newStripeFake(t)
		h := newHarness(t, st, client, billing.Options{})
		if w := h.do(form("/signup", url.Values{"email": {"victim@example.org"}})); w.Code != http.StatusSeeOther {
			t.Fatal(w.Code)
		}
		p := fake.lastCreated(t)
		mustUser(t, st, "victim@example.org")
		fake.mu.Lock()
		fake.sessions["cs_test_parked"] = map[string]any{
			"id": "cs_test_parked", "object": "checkout.session", "mode": "subscription", "status": "complete",
			"payment_status": "paid", "created": time.Now().Unix(), "customer": "cus_attacker", "subscription": "sub_attacker",
			"customer_details": map[string]any{"email": "attacker@example.org"},
			"metadata":         map[string]any{"apikit_signup_email": p.Get("metadata[apikit_signup_email]")},
		}
		fake.mu.Unlock()
		get := func() *httptest.ResponseRecorder {
			r := httptest.NewRequest(http.MethodGet, "/billing/success?session_id=cs_test_parked", nil)
			r.Header.Set("Accept", "text/html")
			return h.do(r)
		}
		check(t, h, get())
		// The success URL is no bearer link: replaying it sends nothing more.
		if w := get(); w.Code != http.StatusOK || w.Header().Get("Set-Cookie") != "" || len(h.sentLinks()) != 1 {
			t.Errorf("replay = %d, links %v", w.Code, h.sentLinks())
		}
	})
}

// TestWebhookCheckoutMarks (issue 11 §2): checkout.session.completed
// creates or links a user only through apikit's own marks, never from
// customer_details.email alone.
func TestWebhookCheckoutMarks(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		h := newHarness(t, st, nil, billing.Options{DevMode: true})
		existing := mustUser(t, st, "existing@example.org")
		now := time.Now().Unix()
		session := func(id string, meta map[string]any, ref string, email string) map[string]any {
			cs := checkoutObject(0, "cus_"+id, "sub_"+id, email)
			cs["id"] = "cs_test_" + id
			cs["metadata"] = meta
			cs["client_reference_id"] = ref
			return cs
		}
		for _, c := range []struct {
			name string
			cs   map[string]any
		}{
			{"EmailOnly", session("email", map[string]any{}, "", "existing@example.org")},
			{"NewEmailOnly", session("newemail", map[string]any{}, "", "fresh@example.org")},
			{"ReferenceOnly", session("ref", map[string]any{}, fmt.Sprint(existing), "existing@example.org")},
			{"ReferenceMismatch", session("mismatch", map[string]any{"apikit_user_id": "999999"}, fmt.Sprint(existing), "existing@example.org")},
		} {
			if code := h.send(event{"evt_" + c.name, "checkout.session.completed", now, c.cs}); code != 200 {
				t.Fatalf("%s = %d", c.name, code)
			}
		}
		if cs, _ := st.Customers(ctx, existing); len(cs) != 0 {
			t.Errorf("customers linked to an existing user without apikit's marks: %v", cs)
		}
		if ok, _ := h.svc.Entitled(ctx, existing); ok {
			t.Error("entitled through a session apikit did not create")
		}
		if _, found, _ := st.UserByEmail(ctx, "fresh@example.org"); found {
			t.Error("a user was created from customer_details.email")
		}
		// A pending sign-up completes: the user is created from apikit's
		// metadata (unverified, with nothing but the address), and linked.
		cs := session("pending", map[string]any{"apikit_signup_email": "Pending@Example.org"}, "", "typed-in-checkout@example.org")
		if code := h.send(event{"evt_pending", "checkout.session.completed", now, cs}); code != 200 {
			t.Fatal(code)
		}
		uid, found, err := st.UserByEmail(ctx, "pending@example.org")
		if err != nil || !found {
			t.Fatalf("pending sign-up's user not created: %v", err)
		}
		if cs, _ := st.Customers(ctx, uid); len(cs) != 1 || cs[0] != "cus_pending" {
			t.Errorf("pending sign-up's customers = %v", cs)
		}
		if ok, _ := h.svc.Entitled(ctx, uid); !ok {
			t.Error("pending sign-up's user not entitled after a paid checkout")
		}
		if _, found, _ := st.UserByEmail(ctx, "typed-in-checkout@example.org"); found {
			t.Error("a user was created from the address typed into Checkout")
		}
	})
}

// subFor is a subscription object for the given price.
func subFor(id, customer, status, price string, userID int64) map[string]any {
	o := subObject(id, customer, status, userID)
	o["items"].(map[string]any)["data"].([]any)[0].(map[string]any)["price"].(map[string]any)["id"] = price
	return o
}

// TestForeignPrice (issue 11 §2): only subscriptions to the prices sold
// entitle; any other product of the same Stripe account grants nothing.
func TestForeignPrice(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		h := newHarness(t, st, nil, billing.Options{DevMode: true, PriceIDs: []string{"price_legacy"}})
		uid := mustUser(t, st, "foreign@example.org")
		now := time.Now().Unix()
		if code := h.send(event{"evt_f", "customer.subscription.created", now, subFor("sub_f", "cus_f", "active", "price_other_product", uid)}); code != 200 {
			t.Fatal(code)
		}
		if ok, err := h.svc.Entitled(ctx, uid); ok || err != nil {
			t.Errorf("Entitled through a foreign price = %v, %v", ok, err)
		}
		if s, found, _ := h.svc.Subscription(ctx, uid); found {
			t.Errorf("Subscription returned a foreign price's: %+v", s)
		}
		// The same user signing up again is not told they are subscribed.
		if w := h.do(from(form("/signup", url.Values{"email": {"foreign@example.org"}}), "192.0.2.9")); w.Code != http.StatusSeeOther || w.Header().Get("Location") == "/login" {
			t.Errorf("sign-up with only a foreign subscription = %d to %q", w.Code, w.Header().Get("Location"))
		}
		if code := h.send(event{"evt_l", "customer.subscription.created", now, subFor("sub_l", "cus_f", "active", "price_legacy", uid)}); code != 200 {
			t.Fatal(code)
		}
		if ok, _ := h.svc.Entitled(ctx, uid); !ok {
			t.Error("a price in PriceIDs does not entitle")
		}
		if s, _, _ := h.svc.Subscription(ctx, uid); s.SubscriptionID != "sub_l" {
			t.Errorf("Subscription = %s; want sub_l", s.SubscriptionID)
		}
	})
}

// TestTies (issue 11 §2): customer.subscription.created (incomplete) and
// .updated (active) with equal created times, in either order, never leave
// a paid subscription incomplete: settled by re-reading the subscription
// from Stripe when a client is configured, by status precedence in dev
// mode or when the API fails.
func TestTies(t *testing.T) {
	orders := [][2]string{{"incomplete", "active"}, {"active", "incomplete"}}
	run := func(t *testing.T, h *harness, st billing.Store, first, second, want string) {
		t.Helper()
		uid := mustUser(t, st, "tie@example.org")
		now := time.Now().Unix()
		h.send(event{"evt_1", "customer.subscription.created", now, subObject("sub_t", "cus_t", first, uid)})
		h.send(event{"evt_2", "customer.subscription.updated", now, subObject("sub_t", "cus_t", second, uid)})
		// The stored row: stripe-mock's re-read carries a fixture price.
		s, ok, err := st.SubscriptionByID(context.Background(), "sub_t")
		if err != nil || !ok || s.Status != want {
			t.Errorf("%s then %s in one second: %+v, %v; want %s", first, second, s, err, want)
		}
	}
	for _, o := range orders {
		t.Run("DevMode/"+o[0]+"First", func(t *testing.T) {
			backends(t, func(t *testing.T, st billing.Store) {
				run(t, newHarness(t, st, nil, billing.Options{DevMode: true}), st, o[0], o[1], "active")
			})
		})
		t.Run("APIFails/"+o[0]+"First", func(t *testing.T) {
			fake, client := newStripeFake(t)
			fake.failSubs.Store(true)
			st := sqliteStore(t)
			run(t, newHarness(t, st, client, billing.Options{}), st, o[0], o[1], "active")
			if fake.subReads.Load() == 0 {
				t.Error("the tie was not re-read from the API")
			}
		})
		t.Run("StripeMock/"+o[0]+"First", func(t *testing.T) {
			st := sqliteStore(t)
			run(t, newHarness(t, st, mockClient(t, stripemock.Start(t)), billing.Options{}), st, o[0], o[1], "active")
		})
	}
	// Where precedence alone would be wrong (a past_due subscription paid
	// within the same second), the state read from Stripe wins, both ways.
	for _, o := range [][2]string{{"active", "past_due"}, {"past_due", "active"}} {
		t.Run("ReRead/"+o[0]+"First", func(t *testing.T) {
			backends(t, func(t *testing.T, st billing.Store) {
				fake, client := newStripeFake(t)
				uid := mustUser(t, st, "tie@example.org")
				fake.subs["sub_t"] = subObject("sub_t", "cus_t", "active", uid)
				h := newHarness(t, st, client, billing.Options{})
				now := time.Now().Unix()
				h.send(event{"evt_1", "customer.subscription.updated", now, subObject("sub_t", "cus_t", o[0], uid)})
				h.send(event{"evt_2", "customer.subscription.updated", now, subObject("sub_t", "cus_t", o[1], uid)})
				if s, _, _ := h.svc.Subscription(context.Background(), uid); s.Status != "active" || fake.subReads.Load() != 1 {
					t.Errorf("%s then %s: %s after %d reads; want active after 1", o[0], o[1], s.Status, fake.subReads.Load())
				}
			})
		})
	}
}

// TestDevSubscriptions (issue 11 §2): dev checkouts grant dev
// subscriptions, which are marked, expire, and grant nothing once billing
// runs with a real Stripe key.
func TestDevSubscriptions(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		var clock atomic.Int64
		clock.Store(time.Now().Unix())
		now := func() time.Time { return time.Unix(clock.Load(), 0) }
		h := newHarness(t, st, nil, billing.Options{DevMode: true, Now: now})
		if w := devComplete(h, devSignUp(t, h, "devsub@example.org", ""), ""); w.Code != http.StatusOK {
			t.Fatal(w.Code)
		}
		uid, _, _ := st.UserByEmail(ctx, "devsub@example.org")
		s, ok, _ := h.svc.Subscription(ctx, uid)
		if !ok || !s.Dev() || !strings.HasPrefix(s.SubscriptionID, billing.DevSubscriptionPrefix) ||
			s.CurrentPeriodEnd.Sub(now()) != billing.DevSubscriptionPeriod {
			t.Fatalf("dev subscription = %+v", s)
		}
		if ok, _ := h.svc.Entitled(ctx, uid); !ok {
			t.Fatal("a fresh dev subscription does not entitle in dev mode")
		}
		_, client := newStripeFake(t)
		real := newHarness(t, st, client, billing.Options{Now: now})
		if ok, _ := real.svc.Entitled(ctx, uid); ok {
			t.Error("a dev subscription entitles with a real Stripe key")
		}
		if _, found, _ := real.svc.Subscription(ctx, uid); found {
			t.Error("a dev subscription is the main subscription with a real Stripe key")
		}
		clock.Add(int64(billing.DevSubscriptionPeriod/time.Second) + 1)
		if ok, _ := h.svc.Entitled(ctx, uid); ok {
			t.Error("a dev subscription still entitles after its period ended")
		}
	})
}

// TestWebhookFutureTimestamp (issue 11 §5): stripe-go checks only that a
// signature is not too old; one signed too far in the future is refused.
func TestWebhookFutureTimestamp(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, nil, billing.Options{DevMode: true})
	uid := mustUser(t, st, "future@example.org")
	payload := event{"evt_future", "customer.subscription.created", time.Now().Unix(), subObject("sub_1", "cus_1", "active", uid)}.payload()
	if w := h.do(signedAt(payload, time.Now().Add(billing.WebhookTolerance+time.Minute), secret)); w.Code != http.StatusBadRequest {
		t.Errorf("signed %v ahead = %d; want 400", billing.WebhookTolerance+time.Minute, w.Code)
	}
	if ok, _ := h.svc.Entitled(context.Background(), uid); ok {
		t.Error("an event signed in the future was applied")
	}
	if w := h.do(signedAt(payload, time.Now().Add(time.Minute), secret)); w.Code != http.StatusOK {
		t.Errorf("signed a minute ahead (within tolerance) = %d; want 200", w.Code)
	}
}

// TestCrossOriginEveryHandler (issue 11 §4): every exported browser-facing
// handler refuses cross-origin POSTs itself, mounted on chi or used bare,
// through Options.ErrorHandler; the webhook (server to server) is exempt.
func TestCrossOriginEveryHandler(t *testing.T) {
	st := sqliteStore(t)
	var refused []error
	var mu sync.Mutex
	opts := billing.Options{DevMode: true, ErrorHandler: func(w http.ResponseWriter, r *http.Request, status int, err error) {
		mu.Lock()
		refused = append(refused, err)
		mu.Unlock()
		w.WriteHeader(status)
	}}
	svc := newHarness(t, st, nil, opts).svc
	handlers := map[string]http.Handler{
		"/signup": svc.CheckoutHandler(), "/billing/success": svc.SuccessHandler(),
		"/billing/portal": svc.PortalHandler(), "/billing/dev-checkout": svc.DevCheckoutHandler(),
		"/billing/plan": svc.ChangePlanHandler(),
	}
	chiRouter := chi.NewRouter()
	for path, hd := range handlers {
		chiRouter.Handle(path, hd)
	}
	chiRouter.Handle("/webhooks/stripe", svc.WebhookHandler())
	attacks := map[string]func(r *http.Request){
		"SecFetchSite": func(r *http.Request) { r.Header.Set("Sec-Fetch-Site", "cross-site") },
		"Origin":       func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") },
	}
	for path, hd := range handlers {
		for router, h := range map[string]http.Handler{"chi": chiRouter, "bare": hd} {
			for name, attack := range attacks {
				t.Run(router+path+"/"+name, func(t *testing.T) {
					r := form(path, url.Values{"email": {"x@example.org"}, "session": {"cs_dev_x"}})
					r.Host = "127.0.0.1:8080"
					attack(r)
					mu.Lock()
					before := len(refused)
					mu.Unlock()
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					mu.Lock()
					defer mu.Unlock()
					if w.Code != http.StatusForbidden || len(refused) != before+1 || !errors.Is(refused[before], billing.ErrCrossOrigin) {
						t.Errorf("cross-site POST = %d, ErrorHandler saw %v", w.Code, refused[before:])
					}
				})
			}
		}
	}
	r := signed([]byte(`{}`))
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	w := httptest.NewRecorder()
	chiRouter.ServeHTTP(w, r)
	if w.Code == http.StatusForbidden {
		t.Error("the webhook refused a request for its origin; Stripe sends none")
	}
	if _, found, _ := st.UserByEmail(context.Background(), "x@example.org"); found {
		t.Error("a refused request created a user")
	}
	if n := svc.Stats().CrossOrigin; n != uint64(len(handlers)*4) {
		t.Errorf("Stats().CrossOrigin = %d; want %d", n, len(handlers)*4)
	}
}

// TestLimits (issue 11 §3): sign-ups and dev checkouts are limited per
// client (Options.Limiter, Options.ClientKey); a refusal or a failing
// limiter answers 429 with Retry-After through Options.ErrorHandler.
func TestLimits(t *testing.T) {
	st := sqliteStore(t)
	var keys []string
	var failing atomic.Bool
	var mu sync.Mutex
	var statuses []int
	h := newHarness(t, st, nil, billing.Options{
		DevMode: true,
		Limiter: billing.LimiterFunc(func(ctx context.Context, key string) (bool, error) {
			if failing.Load() {
				return true, errors.New("limiter down")
			}
			mu.Lock()
			defer mu.Unlock()
			keys = append(keys, key)
			n := 0
			for _, k := range keys {
				if k == key {
					n++
				}
			}
			return n <= 2, nil
		}),
		ClientKey: func(r *http.Request) string { return r.Header.Get("X-Client") },
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, status int, err error) {
			mu.Lock()
			statuses = append(statuses, status)
			mu.Unlock()
			if !errors.Is(err, billing.ErrRateLimited) && status == 429 {
				t.Errorf("429 with %v", err)
			}
			w.WriteHeader(status)
		},
	})
	signup := func(client string) *httptest.ResponseRecorder {
		r := form("/signup", url.Values{"email": {"limited@example.org"}})
		r.Header.Set("X-Client", client)
		return h.do(r)
	}
	for i := range 2 {
		if w := signup("a"); w.Code != http.StatusSeeOther {
			t.Fatalf("sign-up %d = %d", i, w.Code)
		}
	}
	if w := signup("a"); w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Errorf("third sign-up of one client = %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := signup("b"); w.Code != http.StatusSeeOther {
		t.Errorf("another client = %d", w.Code)
	}
	token := devSignUp(t, h, "limited@example.org", "")
	for i := range 3 {
		r := form("/billing/dev-checkout", url.Values{"session": {token}})
		r.Header.Set("X-Client", "c")
		w := h.do(r)
		if want := []int{http.StatusOK, http.StatusGone, http.StatusTooManyRequests}[i]; w.Code != want {
			t.Errorf("dev checkout %d = %d; want %d", i, w.Code, want)
		}
	}
	mu.Lock()
	if keys[0] != "signup:a" || !strings.HasPrefix(keys[len(keys)-1], "dev-checkout:c") {
		t.Errorf("limiter keys %v", keys)
	}
	mu.Unlock()
	failing.Store(true)
	if w := signup("d"); w.Code != http.StatusTooManyRequests {
		t.Errorf("with the limiter failing = %d; want 429 (fail closed)", w.Code)
	}
	if s := h.svc.Stats(); s.RateLimited != 3 {
		t.Errorf("Stats().RateLimited = %d; want 3", s.RateLimited)
	}

	// The default: in memory, per RemoteAddr host.
	h = newHarness(t, st, nil, billing.Options{DevMode: true})
	code := 0
	for i := range 21 {
		code = h.do(from(form("/signup", url.Values{"email": {fmt.Sprintf("d%d@example.org", i)}}), "198.51.100.7")).Code
	}
	if code != http.StatusTooManyRequests {
		t.Errorf("21st sign-up from one address with the default limiter = %d", code)
	}
}

// TestMemoryLimiter: filling the limiter with new keys cannot reset the
// budget of a key it holds; new keys past the bound share one budget.
func TestMemoryLimiter(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	l := billing.NewMemoryLimiter(2, time.Hour, func() time.Time { return now })
	for range 2 {
		if ok, _ := l.Allow(ctx, "victim"); !ok {
			t.Fatal("refused within budget")
		}
	}
	if ok, _ := l.Allow(ctx, "victim"); ok {
		t.Fatal("allowed past budget")
	}
	for i := range billing.MemoryLimiterMaxKeys + 10 {
		_, _ = l.Allow(ctx, "flood"+strconv.Itoa(i))
	}
	if ok, _ := l.Allow(ctx, "victim"); ok {
		t.Error("a flood of new keys reset an existing key's budget")
	}
	allowed := 0
	for i := range 10 {
		if ok, _ := l.Allow(ctx, "late"+strconv.Itoa(i)); ok {
			allowed++
		}
	}
	if allowed > 2 {
		t.Errorf("%d new keys allowed past the bound; want at most the shared budget of 2", allowed)
	}
}

// TestSuccessLimited: the success page, which calls Stripe on each visit,
// is limited per client too.
func TestSuccessLimited(t *testing.T) {
	st := sqliteStore(t)
	_, client := newStripeFake(t)
	var keys []string
	h := newHarness(t, st, client, billing.Options{Limiter: billing.LimiterFunc(func(_ context.Context, key string) (bool, error) {
		keys = append(keys, key)
		return false, nil
	})})
	w := h.do(from(httptest.NewRequest(http.MethodGet, "/billing/success?session_id=cs_test_x", nil), "203.0.113.5"))
	if w.Code != http.StatusTooManyRequests || len(keys) != 1 || keys[0] != "success:203.0.113.5" {
		t.Errorf("limited success page = %d, keys %v", w.Code, keys)
	}
}
