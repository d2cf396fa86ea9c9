package billing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
)

// Sign up in dev mode: no Stripe account, a local "no payment taken" page
// whose form completes the checkout. Nobody is signed in by paying: the
// account is created when the checkout completes, a sign-in link goes to
// its address, and the page says where.
func Example_devMode() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	svc, err := billing.New(st, nil, billing.Options{
		BaseURL: "http://localhost:8080",
		DevMode: true,
		SendSignInLink: func(ctx context.Context, email string) error {
			fmt.Println("sign-in link to", email)
			return nil // the application queues a magic link here
		},
		CurrentUser: func(ctx context.Context) (int64, bool) { return 0, false },
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)

	post := func(path string, form url.Values) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("Accept", "application/json")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	w := post("/signup", url.Values{"email": {"ada@example.com"}})
	var next struct{ URL string }
	_ = json.Unmarshal(w.Body.Bytes(), &next)
	page, _ := url.Parse(next.URL)
	fmt.Println(w.Code, page.Path)
	_, found, _ := st.UserByEmail(ctx, "ada@example.com")
	fmt.Println("user before checkout:", found)

	w = post(page.Path, url.Values{"session": {page.Query().Get("session")}})
	fmt.Print(w.Code, " ", w.Body.String())

	id, _, _ := st.UserByEmail(ctx, "ada@example.com")
	ok, err := svc.Entitled(ctx, id)
	fmt.Println("entitled:", ok, err)
	// Output:
	// 200 /billing/dev-checkout
	// user before checkout: false
	// sign-in link to ada@example.com
	// 200 {"email":"a•••@example.com","sign_in_url":"/login","status":"sign_in_link_sent"}
	// entitled: true <nil>
}

// Limit sign-ups per client with your own limiter (here a function; in
// production, one over package ratelimit shared between instances), keyed
// by a client key your trusted proxy sets.
func ExampleLimiterFunc() {
	seen := map[string]int{}
	opts := billing.Options{
		Limiter: billing.LimiterFunc(func(ctx context.Context, key string) (bool, error) {
			seen[key]++
			return seen[key] <= 2, nil
		}),
		ClientKey: func(r *http.Request) string { return r.Header.Get("X-Real-IP") },
	}
	for range 3 {
		ok, _ := opts.Limiter.Allow(context.Background(), "signup:192.0.2.1")
		fmt.Println(ok)
	}
	// Output:
	// true
	// true
	// false
}

// Entitle the current price and an older one; a subscription to any other
// price of the same Stripe account grants nothing.
func ExampleOptions_priceIDs() {
	opts := billing.Options{
		PriceID:  "price_2025_monthly",                                // sent to Checkout
		PriceIDs: []string{"price_2024_monthly", "price_2025_yearly"}, // also entitle
	}
	fmt.Println(len(opts.PriceIDs) + 1)
	// Output: 3
}

// Connect to Stripe (or stripe-mock) with a client of its own: the global
// stripe.Key is never used.
func ExampleNewClient() {
	c, err := billing.NewClient(billing.ClientOptions{
		Key: "sk_test_123",
		URL: "http://127.0.0.1:12111", // stripe-mock; leave empty for Stripe
	})
	fmt.Println(c.Live(), err)
	// Output: false <nil>
}

// Time every call to Stripe with a tracer of your choice: Trace is called
// as each call starts, and its function when the call ends. With
// OpenTelemetry, start a client span in Trace and end it in the function
// returned (see the favoritesapi example).
func ExampleClientOptions_trace() {
	c, err := billing.NewClient(billing.ClientOptions{
		Key: "sk_test_123",
		Trace: func(ctx context.Context, name string) (context.Context, func(error)) {
			start := time.Now()
			return ctx, func(err error) {
				slog.InfoContext(ctx, "stripe call", "name", name, "took", time.Since(start), "failed", err != nil)
			}
		},
	})
	fmt.Println(c.Live(), err)
	// Output: false <nil>
}

// Sell plans: every price of every plan entitles, sign-up and the plan
// change endpoint take a plan by name, and Service.Plan says which plan a
// user's API requests are decided against (with package plan's deciders).
// Here, in dev mode: a user starts on the free plan, upgrades to pro with
// one POST, and the very next Plan call serves pro.
func ExampleService_Plan() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys, store.Login, store.Billing, store.Plans); err != nil {
		log.Fatal(err)
	}
	plans := plan.MustCatalog(
		plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)},
			Quota: plan.Quota{Count: 100, Period: plan.Day}},
		plan.Plan{Name: "hobby", Prices: []string{"price_hobby"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(10)},
			Quota: plan.Quota{Count: 10_000, Period: plan.Month}},
		plan.Plan{Name: "pro", Prices: []string{"price_pro"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(100)}, Metered: true},
	)
	ada, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	svc, err := billing.New(st, nil, billing.Options{
		BaseURL: "http://localhost:8080",
		DevMode: true,
		Plans:   plans, // PriceID defaults to hobby's price
		SendSignInLink: func(ctx context.Context, email string) error {
			return nil
		},
		// The application's session middleware says who is signed in;
		// here, always ada.
		CurrentUser: func(ctx context.Context) (int64, bool) { return ada, true },
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)

	cur, err := svc.Plan(ctx, ada)
	fmt.Println(cur.Plan.Name, cur.Status == "", err)

	r := httptest.NewRequest(http.MethodPost, "/billing/plan", strings.NewReader("plan=pro"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	fmt.Println(w.Code, w.Header().Get("Location"))

	cur, err = svc.Plan(ctx, ada)
	fmt.Println(cur.Plan.Name, cur.Status, cur.Plan.Limits, err)
	// A request is then decided against it:
	//   decider.Decide(ctx, plan.Request{Plan: cur.Plan, Anchor: cur.Anchor, User: …, Key: …, Cost: …})
	// Output:
	// free true <nil>
	// 303 /app
	// pro active [100/s] <nil>
}

// Delete an account's billing, in dev mode: cancelling at the end of the
// period keeps the paid plan until then; cancelling at once ends it on the
// next request. (Before deleting the account's row, the application calls
// CancelSubscriptions; after a verified email change, UpdateCustomerEmail,
// which in dev mode does nothing.)
func ExampleService_CancelSubscriptions() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys, store.Login, store.Billing, store.Plans); err != nil {
		log.Fatal(err)
	}
	plans := plan.MustCatalog(
		plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)}},
		plan.Plan{Name: "pro", Prices: []string{"price_pro"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(100)}},
	)
	ada, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	svc, err := billing.New(st, nil, billing.Options{
		BaseURL: "http://localhost:8080",
		DevMode: true,
		Plans:   plans,
		SendSignInLink: func(ctx context.Context, email string) error {
			return nil
		},
		CurrentUser: func(ctx context.Context) (int64, bool) { return ada, true },
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	r := httptest.NewRequest(http.MethodPost, "/billing/plan", strings.NewReader("plan=pro"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mux.ServeHTTP(httptest.NewRecorder(), r)

	show := func(when string) {
		ok, _ := svc.Entitled(ctx, ada)
		cur, _ := svc.Plan(ctx, ada)
		sub, _, _ := svc.Subscription(ctx, ada)
		fmt.Printf("%s: entitled %v, plan %s, cancel at period end %v, ended %v\n",
			when, ok, cur.Plan.Name, sub.CancelAtPeriodEnd, sub.Ended)
	}
	show("subscribed")
	if err := svc.UpdateCustomerEmail(ctx, ada, "ada@example.org"); err != nil {
		log.Fatal(err)
	}
	if err := svc.CancelSubscriptions(ctx, ada, true); err != nil {
		log.Fatal(err)
	}
	show("at period end")
	if err := svc.CancelSubscriptions(ctx, ada, false); err != nil {
		log.Fatal(err)
	}
	show("at once")
	// Output:
	// subscribed: entitled true, plan pro, cancel at period end false, ended false
	// at period end: entitled true, plan pro, cancel at period end true, ended false
	// at once: entitled false, plan free, cancel at period end false, ended true
}

// Keep an audit trail of subscription and plan changes: Audit is told of
// each change the Service applies, with who made it (Stripe, through a
// webhook, or the signed-in user) and the request's context. With package
// audit, convert each event to an audit.Event (see the favoritesapi
// example): the kinds and actors have audit's values.
func ExampleOptions_audit() {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, ":memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Migrate(ctx, store.Keys, store.Login, store.Billing, store.Plans); err != nil {
		log.Fatal(err)
	}
	plans := plan.MustCatalog(
		plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.PerSecond(1)}},
		plan.Plan{Name: "pro", Prices: []string{"price_pro"}, Limits: []ratelimit.Limit{ratelimit.PerSecond(100)}},
	)
	ada, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	svc, err := billing.New(st, nil, billing.Options{
		BaseURL:        "http://localhost:8080",
		DevMode:        true,
		Plans:          plans,
		SendSignInLink: func(ctx context.Context, email string) error { return nil },
		CurrentUser:    func(ctx context.Context) (int64, bool) { return ada, true },
		Audit: func(ctx context.Context, e billing.AuditEvent) error {
			// Append it to the audit log here.
			if e.Kind == billing.EventPlanChanged {
				fmt.Println(e.Kind, e.Actor, e.UserID == ada, e.Detail["from"], "->", e.Detail["to"])
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	r := httptest.NewRequest(http.MethodPost, "/billing/plan", strings.NewReader("plan=pro"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	mux.ServeHTTP(httptest.NewRecorder(), r)
	// Output: billing.plan_changed user true free -> pro
}
