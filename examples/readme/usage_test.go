package readme_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/billing/meter/stripemeter"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/usage"
)

// The README's "Usage and usage-based billing" section: the meter between
// the key and the plan, GET /v1/usage, quota alerts and the Stripe meter
// reporter, as FavoritesAPI wires them.
func Example_usage() {
	ctx := context.Background()
	st, done := openStore()
	defer done()
	verifier := apikey.NewVerifier(st, apikey.VerifierOptions{})
	defer verifier.Close()
	authn := apikey.Middleware(verifier, apikey.MiddlewareOptions{})
	limit := plan.Middleware(plan.NewMemory(plan.MemoryOptions{}), plan.MiddlewareOptions{
		Request: func(r *http.Request) (plan.Request, error) { return plan.Request{}, nil },
	})
	api := http.NewServeMux()
	mailer := magiclink.NewConsoleMailer(os.Stderr)
	mux := http.NewServeMux()

	requests := usage.NewMeter(st, usage.Options{}) // counts in memory, written every 10 s and on Close
	defer requests.Close(ctx)                       // before the store closes: nothing counted is lost
	alerts := usage.NewAlerts(st, usage.AlertOptions{
		Send: func(ctx context.Context, a usage.Alert) error { // in the background, never on a request's path
			id, _ := strconv.ParseInt(a.UserID, 10, 64)
			email, _, err := st.UserEmail(ctx, id)
			if err != nil {
				return err // the claim is released: a later request alerts again
			}
			return mailer.Send(ctx, magiclink.Message{From: "noreply@example.com", To: email, Subject: a.Subject, Text: a.Body})
		},
	})
	defer alerts.Close()
	count := requests.Middleware(usage.MiddlewareOptions{
		Identity: func(r *http.Request) (keyID, userID string, ok bool) {
			p, ok := apikey.PrincipalFrom(r.Context())
			return p.KeyID, strconv.FormatInt(p.UserID, 10), ok
		},
	})
	// Inside the plan's middleware: usage counts exactly the cost the plan
	// spent, and the alerts see the quota.
	report := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d, ok := plan.DecisionFrom(r.Context()); ok {
				usage.SetCost(r.Context(), int64(d.Cost))
				if q, ok := d.Quota(); ok {
					p, _ := apikey.PrincipalFrom(r.Context())
					alerts.Observe(strconv.FormatInt(p.UserID, 10), d.PeriodStart, d.PeriodEnd, q.Quota.Count-q.Remaining, q.Quota.Count)
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	api.Handle("GET /v1/usage", usage.NewHandler(st, usage.HandlerOptions{
		User: func(r *http.Request) (string, bool) {
			p, ok := apikey.PrincipalFrom(r.Context())
			return strconv.FormatInt(p.UserID, 10), ok
		},
	}))
	mux.Handle("/v1/", authn(count(limit(report(api))))) // the meter before the plan: its 429s are counted too

	// The pro plan's usage, billed through a Stripe meter by an outbox.
	sender, err := stripemeter.New(stripemeter.Options{Key: os.Getenv("STRIPE_SECRET_KEY")})
	if err != nil {
		log.Fatal(err)
	}
	reporter := meter.NewReporter(st, meter.Options{
		Backend: sender,
		Customers: func(ctx context.Context) ([]meter.Customer, error) { // the metered plan's subscribers
			subs, err := st.SubscriptionsWithPrices(ctx, []string{"price_pro"})
			var out []meter.Customer
			for _, s := range subs {
				if s.Entitling(time.Now(), 72*time.Hour) {
					out = append(out, meter.Customer{UserID: strconv.FormatInt(s.UserID, 10), CustomerID: s.CustomerID, EventName: "api_requests"})
				}
			}
			return out, err
		},
	})
	reporter.Start() // every 30 s: closed hours become meter events, sent with retries
	defer reporter.Close()
	// And hourly: usage.Retention{}.Apply(ctx, st, time.Now()), st.PruneAlerts, st.PruneMeterEvents.
}
