package billing_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// testCatalog is the example's three plans: free, hobby (the harness's
// default price "price_test", and an older price) and pro.
func testCatalog() *plan.Catalog {
	return plan.MustCatalog(
		plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)}, Quota: plan.Quota{Count: 100, Period: plan.Day}},
		plan.Plan{Name: "hobby", Prices: []string{"price_test", "price_hobby_2024"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(10)},
			Quota: plan.Quota{Count: 10_000, Period: plan.Month}},
		plan.Plan{Name: "pro", Prices: []string{"price_pro"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(100)}, Metered: true},
	)
}

// subWithPrice is a subscription object for price, anchored at anchor.
func subWithPrice(id, customer, status, price string, userID int64, anchor time.Time) map[string]any {
	o := subObject(id, customer, status, userID)
	o["items"] = map[string]any{"object": "list", "data": []any{map[string]any{
		"id": "si_1", "object": "subscription_item", "price": map[string]any{"id": price, "object": "price"},
	}}}
	o["billing_cycle_anchor"] = anchor.Unix()
	return o
}

func planName(t *testing.T, svc *billing.Service, uid int64) string {
	t.Helper()
	cp, err := svc.Plan(context.Background(), uid)
	if err != nil {
		t.Fatalf("Plan(%d): %v", uid, err)
	}
	return cp.Plan.Name
}

func TestPlanOptions(t *testing.T) {
	st := sqliteStore(t)
	base := billing.Options{BaseURL: "http://127.0.0.1:8080", WebhookSecret: secret,
		SendSignInLink: func(context.Context, string) error { return nil },
		CurrentUser:    func(context.Context) (int64, bool) { return 0, false }}
	_, client := newStripeFake(t)

	// PriceID defaults to the first paid plan's first price.
	o := base
	o.Plans = testCatalog()
	if _, err := billing.New(st, client, o); err != nil {
		t.Errorf("New with Plans and no PriceID: %v", err)
	}
	// A price sold outside every plan is refused, named.
	o.PriceIDs = []string{"price_orphan"}
	if _, err := billing.New(st, client, o); err == nil || !strings.Contains(err.Error(), `"price_orphan"`) {
		t.Errorf("New with a price of no plan = %v; want an error naming it", err)
	}
	// Only a free plan and no price: nothing to sell with Stripe.
	o = base
	o.Plans = plan.MustCatalog(plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)}})
	if _, err := billing.New(st, client, o); err == nil {
		t.Error("New with Stripe, no PriceID and no paid plan succeeded")
	}
	o.DevMode = true
	if _, err := billing.New(st, nil, o); err != nil {
		t.Errorf("dev mode with only a free plan: %v", err)
	}
}

// TestPlanFollowsSubscriptions: the plan is the entitling subscription's
// price's, else the free plan; upgrades, downgrades and cancellations by
// webhook are served at once by the instance that applied them and
// within CacheTTL by every other one.
func TestPlanFollowsSubscriptions(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		clock := fakeclock.New(time.Now())
		_, client := newStripeFake(t)
		h := newHarness(t, st, client, billing.Options{Plans: testCatalog(), Now: clock.Now, CacheTTL: 10 * time.Second})
		other := newHarness(t, st, client, billing.Options{Plans: testCatalog(), Now: clock.Now, CacheTTL: 10 * time.Second})
		uid := mustUser(t, st, "plans@example.org")

		cp, err := h.svc.Plan(ctx, uid)
		if err != nil || cp.Plan.Name != "free" || !cp.Anchor.IsZero() || cp.Status != "" {
			t.Fatalf("Plan without a subscription = %+v, %v; want free, no anchor, no status", cp, err)
		}
		if ok, _ := h.svc.Entitled(ctx, uid); ok {
			t.Error("a user on the free plan is Entitled")
		}
		if got := planName(t, other.svc, uid); got != "free" {
			t.Fatalf("other instance: %s", got)
		}

		anchor := time.Date(2026, 1, 31, 9, 30, 0, 0, time.UTC)
		now := clock.Now().Unix()
		if c := h.send(event{"evt_1", "customer.subscription.created", now, subWithPrice("sub_1", "cus_1", "active", "price_test", uid, anchor)}); c != 200 {
			t.Fatal(c)
		}
		cp, err = h.svc.Plan(ctx, uid)
		if err != nil || cp.Plan.Name != "hobby" || !cp.Anchor.Equal(anchor) || cp.Status != "active" {
			t.Fatalf("Plan after subscribing = %+v, %v; want hobby, anchored at %v, active", cp, err, anchor)
		}
		// Upgrade: a later event with the pro price.
		if c := h.send(event{"evt_2", "customer.subscription.updated", now + 1, subWithPrice("sub_1", "cus_1", "active", "price_pro", uid, anchor)}); c != 200 {
			t.Fatal(c)
		}
		if got := planName(t, h.svc, uid); got != "pro" {
			t.Errorf("after the upgrade, this instance serves %s; want pro at once", got)
		}
		if got := planName(t, other.svc, uid); got != "free" {
			t.Errorf("the other instance serves %s within CacheTTL; want its cached free", got)
		}
		clock.Advance(10 * time.Second)
		if got := planName(t, other.svc, uid); got != "pro" {
			t.Errorf("the other instance serves %s after CacheTTL; want pro", got)
		}
		// Downgrade to an older hobby price, then cancel.
		if c := h.send(event{"evt_3", "customer.subscription.updated", now + 2, subWithPrice("sub_1", "cus_1", "active", "price_hobby_2024", uid, anchor)}); c != 200 {
			t.Fatal(c)
		}
		if got := planName(t, h.svc, uid); got != "hobby" {
			t.Errorf("after the downgrade: %s; want hobby", got)
		}
		if c := h.send(event{"evt_4", "customer.subscription.deleted", now + 3, subWithPrice("sub_1", "cus_1", "canceled", "price_hobby_2024", uid, anchor)}); c != 200 {
			t.Fatal(c)
		}
		if got := planName(t, h.svc, uid); got != "free" {
			t.Errorf("after cancelling: %s; want free", got)
		}

		// Another product's subscription grants no plan.
		foreign := mustUser(t, st, "foreign@example.org")
		if c := h.send(event{"evt_5", "customer.subscription.created", now, subWithPrice("sub_2", "cus_2", "active", "price_other_product", foreign, anchor)}); c != 200 {
			t.Fatal(c)
		}
		if got := planName(t, h.svc, foreign); got != "free" {
			t.Errorf("a subscription to another product gives %s; want free", got)
		}
	})
}

func TestNoPlan(t *testing.T) {
	st := sqliteStore(t)
	uid := mustUser(t, st, "noplan@example.org")
	paidOnly := plan.MustCatalog(plan.Plan{Name: "pro", Prices: []string{"price_test"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(5)}})
	_, client := newStripeFake(t)
	for name, opts := range map[string]billing.Options{"NoFreePlan": {Plans: paidOnly}, "NoCatalog": {}} {
		h := newHarness(t, st, client, opts)
		_, err := h.svc.Plan(context.Background(), uid)
		if !errors.Is(err, billing.ErrNoPlan) || billing.StatusCode(err) != http.StatusForbidden || billing.ErrorCode(err) != "no_plan" {
			t.Errorf("%s: Plan = %v (status %d); want ErrNoPlan, 403", name, err, billing.StatusCode(err))
		}
	}
	// The store failing is 503, not 403.
	fs := &failingSubs{Store: st}
	fs.fail = true
	h := newHarness(t, fs, client, billing.Options{Plans: testCatalog()})
	if _, err := h.svc.Plan(context.Background(), uid); !errors.Is(err, billing.ErrUnavailable) || billing.StatusCode(err) != http.StatusServiceUnavailable {
		t.Errorf("Plan with the store down = %v; want ErrUnavailable (503)", err)
	}
}

// failingSubs fails Subscriptions while fail is set.
type failingSubs struct {
	billing.Store
	fail bool
}

func (f *failingSubs) Subscriptions(ctx context.Context, userID int64) ([]billing.Subscription, error) {
	if f.fail {
		return nil, errors.New("store down")
	}
	return f.Store.Subscriptions(ctx, userID)
}

// TestSignupPlans: the sign-up form's plan picks the Checkout's price; the
// free plan sends a sign-in link instead and creates nothing; an unknown
// plan is a 400 that names it.
func TestSignupPlans(t *testing.T) {
	st := sqliteStore(t)
	ctx := context.Background()
	fake, client := newStripeFake(t)
	h := newHarness(t, st, client, billing.Options{Plans: testCatalog()})

	for _, c := range []struct{ plan, price string }{{"pro", "price_pro"}, {"hobby", "price_test"}, {"", "price_test"}} {
		w := h.do(form("/signup", url.Values{"email": {"buyer@example.org"}, "plan": {c.plan}}))
		if w.Code != http.StatusSeeOther {
			t.Fatalf("sign-up for %q = %d %s", c.plan, w.Code, w.Body)
		}
		got := fake.lastCreated(t)
		if got.Get("line_items[0][price]") != c.price || got.Get("metadata[apikit_price_id]") != c.price {
			t.Errorf("sign-up for %q: Checkout for price %q (metadata %q); want %q", c.plan, got.Get("line_items[0][price]"),
				got.Get("metadata[apikit_price_id]"), c.price)
		}
	}

	// JSON names the plan too.
	r := httptest.NewRequest(http.MethodPost, "/signup", strings.NewReader(`{"email":"json@example.org","plan":"pro"}`))
	r.Header.Set("Content-Type", "application/json")
	if w := h.do(r); w.Code != http.StatusOK || fake.lastCreated(t).Get("line_items[0][price]") != "price_pro" {
		t.Errorf("JSON sign-up for pro = %d %s", w.Code, w.Body)
	}

	// Unknown plans: 400, named, for browsers and JSON clients.
	w := h.do(form("/signup", url.Values{"email": {"buyer@example.org"}, "plan": {"platinum"}}))
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "platinum") {
		t.Errorf("unknown plan = %d:\n%s", w.Code, w.Body)
	}
	r = httptest.NewRequest(http.MethodPost, "/signup", strings.NewReader(`{"email":"json@example.org","plan":"<b>gold</b>"}`))
	r.Header.Set("Content-Type", "application/json")
	w = h.do(r)
	var prob struct{ Code, Detail string }
	if w.Code != http.StatusBadRequest || json.Unmarshal(w.Body.Bytes(), &prob) != nil || prob.Code != "unknown_plan" ||
		!strings.Contains(prob.Detail, `"<b>gold</b>"`) {
		t.Errorf("unknown plan (JSON) = %d %s", w.Code, w.Body)
	}

	// The free plan: no Checkout, a link, nothing created.
	fake.mu.Lock()
	checkouts := len(fake.created)
	fake.mu.Unlock()
	w = h.do(form("/signup", url.Values{"email": {"Free@Example.org"}, "plan": {"free"}}))
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "f•••@example.org") || strings.Contains(w.Body.String(), "subscription is in place") {
		t.Errorf("free sign-up = %d:\n%s", w.Code, w.Body)
	}
	if l := h.sentLinks(); len(l) != 1 || l[0] != "free@example.org" {
		t.Errorf("links sent = %v; want one to free@example.org", l)
	}
	if _, found, _ := st.UserByEmail(ctx, "free@example.org"); found {
		t.Error("a free sign-up created the user; the sign-in link does that when used")
	}
	r = httptest.NewRequest(http.MethodPost, "/signup", strings.NewReader(`{"email":"free2@example.org","plan":"free"}`))
	r.Header.Set("Content-Type", "application/json")
	var sent struct{ Status, Email string }
	if w := h.do(r); w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &sent) != nil || sent.Status != "sign_in_link_sent" || sent.Email != "f•••@example.org" {
		t.Errorf("JSON free sign-up = %d %s", w.Code, w.Body)
	}
	fake.mu.Lock()
	if len(fake.created) != checkouts {
		t.Error("a free sign-up created a Checkout session")
	}
	fake.mu.Unlock()
	// A browser signed in with the address goes to the app.
	uid := mustUser(t, st, "member@example.org")
	r = form("/signup", url.Values{"email": {"member@example.org"}, "plan": {"free"}})
	r.Header.Set("X-Test-User", fmt.Sprint(uid))
	if w := h.do(r); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app" {
		t.Errorf("free sign-up while signed in = %d to %q", w.Code, w.Header().Get("Location"))
	}
	if s := h.svc.Stats(); s.FreeSignups != 2 || s.SignInLinksSent != 2 {
		t.Errorf("Stats: FreeSignups %d, SignInLinksSent %d; want 2, 2", s.FreeSignups, s.SignInLinksSent)
	}

	// A plan without a catalog is unknown.
	bare := newHarness(t, st, client, billing.Options{})
	if w := bare.do(form("/signup", url.Values{"email": {"buyer@example.org"}, "plan": {"pro"}})); w.Code != http.StatusBadRequest {
		t.Errorf("a plan without Options.Plans = %d; want 400", w.Code)
	}
}

// Free sign-ups are limited per client like the others.
func TestFreeSignupLimited(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog(),
		Limiter: billing.NewMemoryLimiter(2, time.Hour, nil)})
	for i, want := range []int{200, 200, 429} {
		if w := h.do(from(form("/signup", url.Values{"email": {fmt.Sprintf("f%d@example.org", i)}, "plan": {"free"}}), "198.51.100.9")); w.Code != want {
			t.Errorf("free sign-up %d = %d; want %d", i, w.Code, want)
		}
	}
	if l := h.sentLinks(); len(l) != 2 {
		t.Errorf("links sent = %v; want 2", l)
	}
}

// TestDevSignupPlans: dev mode offers every paid plan; the dev checkout
// page names it, and completing it puts the user on it.
func TestDevSignupPlans(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog()})
	for _, name := range []string{"pro", "hobby"} {
		email := name + "@example.org"
		w := h.do(form("/signup", url.Values{"email": {email}, "plan": {name}}))
		loc, _ := url.Parse(w.Header().Get("Location"))
		token := loc.Query().Get("session")
		page := h.do(httptest.NewRequest(http.MethodGet, "/billing/dev-checkout?session="+token, nil)).Body.String()
		if !strings.Contains(page, "<strong>"+name+"</strong> plan") {
			t.Errorf("the dev checkout page for %s does not name the plan:\n%s", name, page)
		}
		if w := devComplete(h, token, ""); w.Code != http.StatusOK {
			t.Fatalf("dev checkout = %d", w.Code)
		}
		uid, _, _ := st.UserByEmail(context.Background(), email)
		cp, err := h.svc.Plan(context.Background(), uid)
		if err != nil || cp.Plan.Name != name || cp.Anchor.IsZero() || cp.Status != "active" {
			t.Errorf("after a dev checkout for %s: %+v, %v", name, cp, err)
		}
	}
}

// TestCheckoutProvisionalPlan: a completed Checkout's provisional state
// has the plan the session sold (apikit_price_id), before Stripe's
// subscription event; a price the service does not sell is ignored.
func TestCheckoutProvisionalPlan(t *testing.T) {
	st := sqliteStore(t)
	_, client := newStripeFake(t)
	h := newHarness(t, st, client, billing.Options{Plans: testCatalog()})
	for i, c := range []struct{ price, want string }{{"price_pro", "pro"}, {"price_not_sold", "hobby"}} {
		uid := mustUser(t, st, fmt.Sprintf("prov%d@example.org", i))
		o := checkoutObject(uid, fmt.Sprintf("cus_p%d", i), fmt.Sprintf("sub_p%d", i), "x@example.org")
		o["metadata"].(map[string]any)["apikit_price_id"] = c.price
		if code := h.send(event{fmt.Sprintf("evt_p%d", i), "checkout.session.completed", time.Now().Unix(), o}); code != 200 {
			t.Fatal(code)
		}
		if got := planName(t, h.svc, uid); got != c.want {
			t.Errorf("provisional plan for metadata price %s = %s; want %s", c.price, got, c.want)
		}
	}
}

// session is a browser: its own cookie jar, signed in as one user.
type session struct {
	c   *http.Client
	srv string
}

// newSessionServer mounts the service behind a cookie login: GET
// /test-login?user=N sets a session cookie for user N, as magiclink would
// after a link was used.
func newSessionServer(t *testing.T, h *harness) string {
	var mu sync.Mutex
	sessions := map[string]int64{}
	mux := http.NewServeMux()
	h.svc.Register(mux)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/test-login" {
			id, _ := strconv.ParseInt(r.URL.Query().Get("user"), 10, 64)
			sid := fmt.Sprintf("s%d-%d", id, time.Now().UnixNano())
			mu.Lock()
			sessions[sid] = id
			mu.Unlock()
			http.SetCookie(w, &http.Cookie{Name: "sid", Value: sid, Path: "/", HttpOnly: true})
			return
		}
		if c, err := r.Cookie("sid"); err == nil {
			mu.Lock()
			id, ok := sessions[c.Value]
			mu.Unlock()
			if ok {
				r = r.WithContext(context.WithValue(r.Context(), userKey{}, id))
			}
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func signIn(t *testing.T, srv string, uid int64) *session {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if uid != 0 {
		resp, err := c.Get(fmt.Sprintf("%s/test-login?user=%d", srv, uid))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	return &session{c: c, srv: srv}
}

func (s *session) post(t *testing.T, path string, v url.Values, hdr ...string) *http.Response {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, s.srv+path, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "text/html")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.c.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestChangePlanDev: in dev mode a plan change is applied at once, to the
// signed-in user's own subscription only (two browsers, two cookie jars),
// and served on the next request without waiting for the cache.
func TestChangePlanDev(t *testing.T) {
	backends(t, func(t *testing.T, st billing.Store) {
		ctx := context.Background()
		clock := fakeclock.New(time.Now()) // frozen: no cache entry expires
		h := newHarness(t, st, nil, billing.Options{DevMode: true, Plans: testCatalog(), Now: clock.Now, CacheTTL: time.Hour})
		srv := newSessionServer(t, h)
		ada, grace := mustUser(t, st, "ada@example.org"), mustUser(t, st, "grace@example.org")
		a, g := signIn(t, srv, ada), signIn(t, srv, grace)
		if planName(t, h.svc, ada) != "free" || planName(t, h.svc, grace) != "free" {
			t.Fatal("users start on free")
		}

		change := func(s *session, name string, extra ...string) *http.Response {
			t.Helper()
			v := url.Values{"plan": {name}}
			for i := 0; i+1 < len(extra); i += 2 {
				v.Set(extra[i], extra[i+1])
			}
			return s.post(t, "/billing/plan", v)
		}
		for _, c := range []struct {
			who        *session
			plan       string
			ada, grace string
		}{
			{a, "hobby", "hobby", "free"}, // a new dev subscription
			{g, "pro", "hobby", "pro"},
			{a, "pro", "pro", "pro"}, // the same subscription, a new price
			{a, "pro", "pro", "pro"}, // no change
			{a, "free", "free", "pro"},
			{a, "hobby", "hobby", "pro"}, // subscribing again after cancelling
		} {
			resp := change(c.who, c.plan)
			if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app" {
				t.Fatalf("change to %s = %d to %q", c.plan, resp.StatusCode, resp.Header.Get("Location"))
			}
			if got := planName(t, h.svc, ada); got != c.ada {
				t.Errorf("after a change to %s: ada on %s; want %s", c.plan, got, c.ada)
			}
			if got := planName(t, h.svc, grace); got != c.grace {
				t.Errorf("after a change to %s: grace on %s; want %s", c.plan, got, c.grace)
			}
		}
		subs, _ := st.Subscriptions(ctx, ada)
		entitling := 0
		for _, s := range subs {
			if s.Entitling(clock.Now(), time.Hour) {
				entitling++
			}
		}
		if entitling != 1 {
			t.Errorf("ada has %d entitling subscriptions; want 1: %+v", entitling, subs)
		}

		// Nothing in the request picks the user: fields naming another
		// user change only one's own plan.
		resp := change(a, "free", "user_id", strconv.FormatInt(grace, 10), "user", strconv.FormatInt(grace, 10), "email", "grace@example.org")
		if resp.StatusCode != http.StatusSeeOther || planName(t, h.svc, ada) != "free" || planName(t, h.svc, grace) != "pro" {
			t.Errorf("a change naming another user: %d, ada %s, grace %s; want ada free, grace pro",
				resp.StatusCode, planName(t, h.svc, ada), planName(t, h.svc, grace))
		}

		// Refusals change nothing.
		anon := signIn(t, srv, 0)
		if resp := change(anon, "free"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("signed out (browser) = %d to %q; want 303 to /login", resp.StatusCode, resp.Header.Get("Location"))
		}
		r, _ := http.NewRequest(http.MethodPost, srv+"/billing/plan", strings.NewReader(`{"plan":"free"}`))
		r.Header.Set("Content-Type", "application/json")
		if resp, err := anon.c.Do(r); err != nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("signed out (JSON) = %v, %v; want 401", resp.StatusCode, err)
		}
		if resp := g.post(t, "/billing/plan", url.Values{"plan": {"free"}}, "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-origin change = %d; want 403", resp.StatusCode)
		}
		if resp := change(g, "platinum"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("unknown plan = %d; want 400", resp.StatusCode)
		}
		if resp, err := g.c.Get(srv + "/billing/plan"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET = %v, %v; want 405", resp.StatusCode, err)
		}
		if got := planName(t, h.svc, grace); got != "pro" {
			t.Errorf("refused requests changed grace's plan to %s", got)
		}
		// JSON clients are answered with the URL.
		r, _ = http.NewRequest(http.MethodPost, srv+"/billing/plan", strings.NewReader(`{"plan":"hobby"}`))
		r.Header.Set("Content-Type", "application/json")
		resp, err := g.c.Do(r)
		var body struct{ URL string }
		if err != nil || resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&body) != nil || body.URL != "/app" || planName(t, h.svc, grace) != "hobby" {
			t.Errorf("JSON change = %v %v %+v, grace on %s", resp.StatusCode, err, body, planName(t, h.svc, grace))
		}
	})
}

// TestChangePlanStripe: with Stripe, a user without a subscription gets a
// Checkout for the plan (stripe-mock checks the parameters), a subscriber
// the customer portal; asking for one's current plan changes nothing.
func TestChangePlanStripe(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, mockClient(t, stripemock.Start(t)), billing.Options{Plans: testCatalog()})
	srv := newSessionServer(t, h)
	ada := mustUser(t, st, "ada@example.org")
	a := signIn(t, srv, ada)
	if resp := a.post(t, "/billing/plan", url.Values{"plan": {"free"}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app" {
		t.Errorf("free while on free = %d to %q; want /app", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp := a.post(t, "/billing/plan", url.Values{"plan": {"pro"}})
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Fatalf("pro without a subscription = %d to %q; want Checkout", resp.StatusCode, resp.Header.Get("Location"))
	}
	if c := h.send(event{"evt_1", "customer.subscription.created", time.Now().Unix(),
		subWithPrice("sub_1", "cus_1", "active", "price_pro", ada, time.Now())}); c != 200 {
		t.Fatal(c)
	}
	if resp := a.post(t, "/billing/plan", url.Values{"plan": {"pro"}}); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/app" {
		t.Errorf("pro while on pro = %d to %q; want /app", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, name := range []string{"hobby", "free"} {
		resp := a.post(t, "/billing/plan", url.Values{"plan": {name}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
			t.Errorf("%s as a subscriber = %d to %q; want the portal", name, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if s := h.svc.Stats(); s.PortalSessions != 2 || s.PlanChanges != 3 {
		t.Errorf("Stats: PortalSessions %d, PlanChanges %d; want 2, 3", s.PortalSessions, s.PlanChanges)
	}
	if got := planName(t, h.svc, ada); got != "pro" {
		t.Errorf("the portal changed the plan before any webhook: %s", got)
	}
}

// The Checkout of a plan change is the signed-in user's own purchase.
func TestChangePlanCheckoutIsOwn(t *testing.T) {
	st := sqliteStore(t)
	fake, client := newStripeFake(t)
	h := newHarness(t, st, client, billing.Options{Plans: testCatalog()})
	srv := newSessionServer(t, h)
	ada := mustUser(t, st, "ada@example.org")
	mustUser(t, st, "grace@example.org")
	resp := signIn(t, srv, ada).post(t, "/billing/plan", url.Values{"plan": {"pro"}, "email": {"grace@example.org"}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatal(resp.StatusCode)
	}
	got := fake.lastCreated(t)
	if got.Get("client_reference_id") != fmt.Sprint(ada) || got.Get("metadata[apikit_user_id]") != fmt.Sprint(ada) ||
		got.Get("customer_email") != "ada@example.org" || got.Get("line_items[0][price]") != "price_pro" {
		t.Errorf("plan-change Checkout = %v; want ada's own, for price_pro", got)
	}
}
