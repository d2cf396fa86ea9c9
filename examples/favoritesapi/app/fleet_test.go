package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/bustest"
	"github.com/apikit/apikit/internal/testkit/faultproxy"
	"github.com/apikit/apikit/internal/testkit/stripemock"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/ratelimit"
)

// fleetBound is the target: a change made through one instance is in
// force on every other within it.
const fleetBound = time.Second

// startFleet starts n instances on one PostgreSQL database with the
// default cache TTLs (30 s for keys, 10 s for plans), so that only the
// invalidation bus can make a change reach the others sooner. They share
// an invalidation channel of the test's own.
func startFleet(t *testing.T, n int, cfg app.Config, mods ...func(*app.Options)) []*testServer {
	t.Helper()
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = testdb.PostgresDSN(t)
	}
	if cfg.Invalidation == "redis" && cfg.RedisURL == "" {
		cfg.RedisURL = testenv.Redis(t)
	}
	channel := bustest.Channel()
	mods = append([]func(*app.Options){func(o *app.Options) { o.InvalidationChannel = channel }}, mods...)
	fleet := make([]*testServer, n)
	for i := range fleet {
		fleet[i] = startServer(t, postgresDB, cfg, mods...)
	}
	for _, s := range fleet { // every instance listens before the test changes anything
		waitMetric(t, s, "apikit_invalidation_subscribed", 1)
	}
	return fleet
}

// waitMetric waits until the server's /metrics reports the value.
func waitMetric(t *testing.T, s *testServer, name string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metric(t, s, name)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d, want %d", name, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func metric(t *testing.T, s *testServer, name string) int {
	t.Helper()
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// until polls every server in others until done holds for it, and returns
// how long the slowest took; it fails the test past 5 s.
func until(t *testing.T, others []*testServer, done func(*testServer) bool) time.Duration {
	t.Helper()
	start := time.Now()
	pending := slices.Clone(others)
	var slowest time.Duration
	for len(pending) > 0 {
		pending = slices.DeleteFunc(pending, func(s *testServer) bool {
			if !done(s) {
				return false
			}
			slowest = max(slowest, time.Since(start))
			return true
		})
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%d of %d instances still not there after %v", len(pending), len(others), time.Since(start))
		}
		time.Sleep(time.Millisecond)
	}
	return slowest
}

// status returns the status of GET /v1/me with the token, from the client
// address given (through a trusted proxy's X-Forwarded-For), if any.
func status(t *testing.T, s *testServer, token string, client ...string) int {
	return call(t, s.URL, token, "GET", "/v1/me", "", forwarded(client)...).status
}

func forwarded(client []string) []string {
	if len(client) == 0 {
		return nil
	}
	return []string{"X-Forwarded-For", client[0]}
}

func planOf(t *testing.T, s *testServer, token string, client ...string) string {
	r := call(t, s.URL, token, "GET", "/v1/me", "", forwarded(client)...)
	if r.status != 200 {
		return fmt.Sprint(r.status)
	}
	var me meBody
	r.json(t, &me)
	return me.Plan.Name
}

// TestFleetEvents makes each kind of change through instance A, on
// PostgreSQL LISTEN/NOTIFY and on Redis pub/sub, and checks that instance
// B, which had the old state cached for 30 s (keys) or 10 s (plans), serves
// the new one within a second: a key revoked and a key rolled on the
// dashboard, a key revoked through the Manager (as the CLI does), and a
// plan changed on /billing/plan. Sessions are not cached (each request
// reads its session from the database), so sign-out takes effect
// everywhere at once without the bus.
func TestFleetEvents(t *testing.T) {
	for _, bus := range []string{"postgres", "redis"} {
		t.Run(bus, func(t *testing.T) {
			fleet := startFleet(t, 2, app.Config{Invalidation: bus})
			a, b := fleet[0], fleet[1]
			c := newCustomer(t, a, fmt.Sprintf("fleet-events-%s-%d@example.com", bus, time.Now().UnixNano()))
			tok, _ := apikey.Parse(c.token)
			if st := status(t, b, c.token); st != 200 {
				t.Fatalf("B before any change: %d", st)
			}

			// Rolled on A's dashboard: B accepts the new token at once
			// (without the bus, a cached key refuses a new secret for 5 s).
			p := postForm(t, c.web, a.URL+"/app/keys/"+tok.ID+"/roll", nil)
			m := newKeyRe.FindStringSubmatch(p.body)
			if p.status != 200 || m == nil {
				t.Fatalf("roll: %d", p.status)
			}
			rolled := m[1]
			d := until(t, []*testServer{b}, func(s *testServer) bool { return status(t, s, rolled) == 200 })
			t.Logf("rolled on A: B accepts the new token after %v", d)

			// Revoked on A's dashboard: B refuses both tokens.
			if p := postForm(t, c.web, a.URL+"/app/keys/"+tok.ID+"/revoke", nil); p.status != http.StatusSeeOther {
				t.Fatalf("revoke: %d", p.status)
			}
			d = until(t, []*testServer{b}, func(s *testServer) bool {
				return status(t, s, rolled) == 401 && status(t, s, c.token) == 401
			})
			t.Logf("revoked on A's dashboard: B refuses after %v", d)
			if d > fleetBound {
				t.Errorf("B refused a key revoked on A after %v, want within %v", d, fleetBound)
			}

			// Revoked through the Manager, as the CLI does.
			other := createKey(t, a, c.web, "second")
			otok, _ := apikey.Parse(other)
			if st := status(t, b, other); st != 200 {
				t.Fatalf("B, second key: %d", st)
			}
			if err := a.Keys().Revoke(context.Background(), otok.ID); err != nil {
				t.Fatal(err)
			}
			if d := until(t, []*testServer{b}, func(s *testServer) bool { return status(t, s, other) == 401 }); d > fleetBound {
				t.Errorf("B refused a key revoked through A's Manager after %v", d)
			}

			// A plan change on A's /billing/plan (dev mode: at once).
			third := createKey(t, a, c.web, "third")
			if got := planOf(t, b, third); got != "hobby" {
				t.Fatalf("B: plan %s, want hobby", got)
			}
			down := submit(t, c.web, get(t, c.web, a.URL+"/app"), "/billing/plan", url.Values{"plan": {"free"}})
			if down.status >= 400 {
				t.Fatalf("POST /billing/plan: %d", down.status)
			}
			d = until(t, []*testServer{b}, func(s *testServer) bool { return planOf(t, s, third) == "free" })
			t.Logf("plan changed on A: B serves it after %v", d)
			if d > fleetBound {
				t.Errorf("B served the new plan after %v, want within %v", d, fleetBound)
			}
			if n := metric(t, b, "apikit_invalidation_events"); n < 4 {
				t.Errorf("B counted %d invalidation events, want at least 4", n)
			}
		})
	}
}

// TestFleetListenerCut cuts instance B's listening connection through a
// fault proxy mid-test (its pool is untouched): a key revoked on A while
// B cannot hear it is refused by B within the fallback TTL (1 s) plus the
// time to notice the cut, far within the 30 s key cache TTL; keys not
// revoked keep working; when the proxy is back, B listens again and a
// revocation reaches it within a second.
func TestFleetListenerCut(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	proxy := faultproxy.Start(t, hostOf(t, dsn))
	cfg := app.Config{DatabaseURL: dsn, Invalidation: "postgres", RateLimit: ratelimit.MustParseLimit("1000/s")}
	channel := bustest.Channel()
	ch := func(o *app.Options) { o.InvalidationChannel = channel }
	a := startServer(t, postgresDB, cfg, ch)
	cfg.InvalidationURL = throughProxy(t, dsn, proxy)
	b := startServer(t, postgresDB, cfg, ch)
	waitMetric(t, a, "apikit_invalidation_subscribed", 1)
	waitMetric(t, b, "apikit_invalidation_subscribed", 1)
	c := newCustomer(t, a, fmt.Sprintf("fleet-cut-%d@example.com", time.Now().UnixNano()))
	keep := createKey(t, a, c.web, "kept")
	for _, tok := range []string{c.token, keep} {
		if st := status(t, b, tok); st != 200 {
			t.Fatalf("B before the cut: %d", st)
		}
	}

	proxy.Down()
	waitMetric(t, b, "apikit_invalidation_degraded", 1)
	tok, _ := apikey.Parse(c.token)
	cut := time.Now()
	if err := a.Keys().Revoke(context.Background(), tok.ID); err != nil {
		t.Fatal(err)
	}
	d := until(t, []*testServer{b}, func(s *testServer) bool { return status(t, s, c.token) == 401 })
	t.Logf("listener down: B refused a key revoked on A after %v", d)
	if d > 1500*time.Millisecond {
		t.Errorf("with its listener down, B refused a revoked key after %v, want within the 1 s fallback TTL", d)
	}
	// Kept keys are read again each second, never refused.
	for time.Since(cut) < 2500*time.Millisecond {
		if st := status(t, b, keep); st == 401 || st >= 500 {
			t.Fatalf("B, a key not revoked, while the listener is down: %d", st)
		}
		time.Sleep(100 * time.Millisecond)
	}

	proxy.Up()
	waitMetric(t, b, "apikit_invalidation_degraded", 0)
	ktok, _ := apikey.Parse(keep)
	if st := status(t, b, keep); st != 200 {
		t.Fatalf("B after reconnecting: %d", st)
	}
	if err := a.Keys().Revoke(context.Background(), ktok.ID); err != nil {
		t.Fatal(err)
	}
	d = until(t, []*testServer{b}, func(s *testServer) bool { return status(t, s, keep) == 401 })
	t.Logf("listener back: B refused a key revoked on A after %v", d)
	if d > fleetBound {
		t.Errorf("after reconnecting, B refused a revoked key after %v, want within %v", d, fleetBound)
	}
	if n := metric(t, b, "apikit_invalidation_connects"); n != 2 {
		t.Errorf("B connected %d times, want 2", n)
	}
}

// fleetTrials is how many changes TestFleetTimings measures per case
// (FLEET_TRIALS overrides it).
func fleetTrials() int {
	if n, err := strconv.Atoi(os.Getenv("FLEET_TRIALS")); err == nil && n > 0 {
		return n
	}
	return 100
}

// TestFleetTimings measures, on two and four instances on one PostgreSQL,
// how long after a change made through instance A every other instance
// serves it: a key revoked through A's Manager (refused with 401), and a
// subscription cancelled by a Stripe webhook posted to A (served on the
// free plan). Each trial first makes every instance cache the old state.
// It reports p50, p99 and the maximum, and fails if p99 exceeds 1 s.
func TestFleetTimings(t *testing.T) {
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("%d instances", n), func(t *testing.T) {
			mock := stripemock.Start(t)
			fleet := startFleet(t, n, app.Config{
				Invalidation:        "postgres",
				StripeSecretKey:     "sk_test_favoritesapi",
				StripeWebhookSecret: webhookSecret,
				StripePriceID:       "price_favoritesapi",
				StripeAPIURL:        mock,
				RateLimit:           ratelimit.MustParseLimit("1000/s"),
				// Each trial comes from a client address of its own, so
				// that the per-client limit on key look-ups (60 a minute)
				// never answers 429 where the test waits for 401.
				TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
			})
			a, others := fleet[0], fleet[1:]
			ctx := context.Background()
			trials := fleetTrials()

			revoke := make([]time.Duration, 0, trials)
			for i := range trials {
				uid, _, err := a.Store().CreateUser(ctx, fmt.Sprintf("timing-%d-%d-%d@example.com", n, i, time.Now().UnixNano()), time.Now())
				if err != nil {
					t.Fatal(err)
				}
				k, tok, err := a.Keys().Issue(ctx, uid, apikey.IssueOptions{Name: "timing"})
				if err != nil {
					t.Fatal(err)
				}
				token, client := tok.Reveal(), fmt.Sprintf("10.%d.%d.%d", n, i/250, i%250+1)
				for _, s := range fleet {
					if st := status(t, s, token, client); st != 200 {
						t.Fatalf("trial %d: a new key answered %d", i, st)
					}
				}
				if err := a.Keys().Revoke(ctx, k.ID); err != nil {
					t.Fatal(err)
				}
				revoke = append(revoke, until(t, others, func(s *testServer) bool { return status(t, s, token, client) == 401 }))
			}
			report(t, fmt.Sprintf("key revoked through A, refused by the %d others", n-1), revoke)

			stripe := &stripeSender{t: t, url: a.URL, base: time.Now().Add(-time.Hour)}
			cancel := make([]time.Duration, 0, trials)
			for i := range trials {
				suffix := fmt.Sprintf("%d_%d_%d", n, i, time.Now().UnixNano())
				email := "timing-cancel-" + suffix + "@example.com"
				customer, sub := "cus_t"+suffix, "sub_t"+suffix
				if st := stripe.send("checkout.session.completed", map[string]any{
					"id": "cs_t" + suffix, "object": "checkout.session", "mode": "subscription", "status": "complete",
					"customer": customer, "subscription": sub,
					"customer_details": map[string]any{"email": email},
					"metadata":         map[string]any{"apikit_signup_email": email},
				}); st != 200 {
					t.Fatalf("checkout.session.completed: %d", st)
				}
				object := func(status string) map[string]any {
					return map[string]any{
						"id": sub, "object": "subscription", "customer": customer, "status": status,
						"current_period_end": time.Now().Add(30 * 24 * time.Hour).Unix(), "cancel_at_period_end": false,
						"items": map[string]any{"object": "list", "data": []any{map[string]any{
							"id": "si_t" + suffix, "object": "subscription_item",
							"price": map[string]any{"id": "price_favoritesapi", "object": "price"},
						}}},
					}
				}
				if st := stripe.send("customer.subscription.created", object("active")); st != 200 {
					t.Fatalf("customer.subscription.created: %d", st)
				}
				uid, found, err := a.Store().UserByEmail(ctx, email)
				if err != nil || !found {
					t.Fatalf("no user after checkout: %v", err)
				}
				_, tok, err := a.Keys().Issue(ctx, uid, apikey.IssueOptions{Name: "timing"})
				if err != nil {
					t.Fatal(err)
				}
				token, client := tok.Reveal(), fmt.Sprintf("10.%d.%d.%d", 100+n, i/250, i%250+1)
				until(t, fleet, func(s *testServer) bool { return planOf(t, s, token, client) == "hobby" })
				if st := stripe.send("customer.subscription.deleted", object("canceled")); st != 200 {
					t.Fatalf("customer.subscription.deleted: %d", st)
				}
				cancel = append(cancel, until(t, others, func(s *testServer) bool { return planOf(t, s, token, client) == "free" }))
			}
			report(t, fmt.Sprintf("subscription cancelled by a webhook to A, served by the %d others", n-1), cancel)
		})
	}
}

// report logs p50, p99 and the maximum of the samples, and fails the test
// if p99 exceeds fleetBound.
func report(t *testing.T, what string, d []time.Duration) {
	t.Helper()
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	t.Logf("%s: %d trials, p50 %v, p99 %v, max %v", what, len(d), q(0.50).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), d[len(d)-1].Round(10*time.Microsecond))
	if q(0.99) > fleetBound {
		t.Errorf("%s: p99 %v, want within %v", what, q(0.99), fleetBound)
	}
}
