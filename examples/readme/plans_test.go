package readme_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// The README's "Plans and quotas" section: FavoritesAPI's plans, sold by
// billing, decided per request by plan's middleware.
func Example_plans() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	login, err := magiclink.New(st, magiclink.Options{BaseURL: "http://localhost:8080", Mailer: magiclink.NewConsoleMailer(os.Stderr), AllowSignup: true})
	if err != nil {
		log.Fatal(err)
	}
	defer login.Close(ctx)
	currentUser := func(ctx context.Context) (int64, bool) {
		u, ok := magiclink.UserFrom(ctx)
		return u.ID, ok
	}
	verifier := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer verifier.Close()
	authn := apikey.Middleware(verifier, apikey.MiddlewareOptions{})
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux := http.NewServeMux()

	catalog := plan.MustCatalog(
		plan.Plan{Name: "free", Limits: []ratelimit.Limit{ratelimit.MustParseLimit("1/s burst 5")}, // room for one write
			Quota: plan.Quota{Count: 100, Period: plan.Day}}, // no price: users without a subscription
		plan.Plan{Name: "hobby", Prices: []string{"price_hobby"}, // STRIPE_PRICE_ID
			Limits: []ratelimit.Limit{ratelimit.PerSecond(10)}, Quota: plan.Quota{Count: 10_000, Period: plan.Month}},
		plan.Plan{Name: "pro", Prices: []string{"price_pro"}, // STRIPE_PRO_PRICE_ID
			Limits: []ratelimit.Limit{ratelimit.PerSecond(100)}, Metered: true}, // no quota: billed by usage
	)
	bill, err := billing.New(st, nil, billing.Options{
		Plans:          catalog, // a subscription's price selects its plan; sign-up and /billing/plan take a plan's name
		DevMode:        true,    // or a Stripe client, WebhookSecret and the rest, as above
		BaseURL:        "http://localhost:8080",
		SendSignInLink: login.SendLink,
		CurrentUser:    currentUser,
	})
	if err != nil {
		log.Fatal(err)
	}
	bill.Register(mux)                                  // POST /billing/plan: the dashboard's upgrade and downgrade buttons
	usage := plan.NewFlusher(st, plan.FlusherOptions{}) // quota usage, written to the database every 10 s and on Close
	defer usage.Close(ctx)
	decider := plan.NewMemory(plan.MemoryOptions{Usage: usage}) // or redisplan.New(redisClient, redisplan.Options{Usage: usage})
	limit := plan.Middleware(decider, plan.MiddlewareOptions{
		Request: func(r *http.Request) (plan.Request, error) {
			p, _ := apikey.PrincipalFrom(r.Context())
			cp, err := bill.Plan(r.Context(), p.UserID) // the free plan without a subscription
			if errors.Is(err, billing.ErrNoPlan) {
				return plan.Request{}, &plan.StatusError{Status: http.StatusForbidden, Code: "no_plan", Detail: "Subscribe to use the API."}
			}
			if err != nil {
				return plan.Request{}, err // 503
			}
			// The plan's budget is the user's (all their keys share it) or
			// each key's, as the plan says.
			return plan.Request{Plan: cp.Plan, User: strconv.FormatInt(p.UserID, 10), Key: p.KeyID, Anchor: cp.Anchor}, nil
		},
		Cost: func(r *http.Request) int {
			if r.Method == http.MethodPost {
				return 5 // a write spends 5 of every limit and of the quota
			}
			return 1
		},
	})
	mux.Handle("/v1/", authn(limit(api))) // one decision per request, after the key is verified

	// A user without a subscription, on the free plan.
	userID, _, _ := st.CreateUser(ctx, "ada@example.com", time.Now())
	_, token, _ := apikey.NewManager(st, apikey.ManagerOptions{}).Issue(ctx, userID, apikey.IssueOptions{Name: "k"})
	r := httptest.NewRequest("GET", "/v1/favorites", nil)
	r.Header.Set("Authorization", "Bearer "+token.Reveal())
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	fmt.Println(w.Code, strings.Join(w.Header().Values("RateLimit-Policy"), ", "))
	// Output: 200 "1/s burst 5";q=1;w=1, "100/day";q=100;w=86400
}
