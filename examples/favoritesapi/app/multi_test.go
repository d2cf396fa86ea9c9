package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/ratelimit"
)

// TestTwoInstances runs two FavoritesAPI servers on one PostgreSQL and one
// Redis, as a deployment behind a load balancer does: favorites written
// through one are read through the other; the combined rate of three keys
// of one user across both never exceeds the user's limit by more than one
// burst, and every instance sees the same quota used; and a key revoked
// through one is refused by the other within the key cache TTL.
func TestTwoInstances(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	redisURL := testenv.Redis(t)
	const ttl = 2 * time.Second
	limit := ratelimit.MustParseLimit("40/min")
	cfg := app.Config{DatabaseURL: dsn, RedisURL: redisURL, RateLimit: limit}
	withTTL := func(o *app.Options) {
		o.KeyCacheTTL = ttl
		// A generous limiter timeout: on a loaded CI machine a decision
		// that fails open would let requests through uncounted, and this
		// test is about the shared budget, not the timeout.
		o.RedisTimeout = 2 * time.Second
	}
	a := startServer(t, postgresDB, cfg, withTTL)
	b := startServer(t, postgresDB, cfg, withTTL)
	c := newCustomer(t, a, fmt.Sprintf("fleet-%d@example.com", time.Now().UnixNano()))
	// Three keys of one user on the hobby plan, whose budget is the user's.
	tokens := []string{c.token, createKey(t, a, c.web, "second"), createKey(t, b, c.web, "third")}

	// Written through A, read through B: 5 + 1 spent.
	r := call(t, a.URL, c.token, "POST", "/v1/favorites", `{"name":"shared","url":"https://example.com/shared"}`)
	if r.status != 201 {
		t.Fatalf("POST through A: %d %s", r.status, r.body)
	}
	var f favorite
	r.json(t, &f)
	if r := call(t, b.URL, tokens[1], "GET", "/v1/favorites/"+f.ID, ""); r.status != 200 {
		t.Fatalf("GET through B of a favorite written through A: %d %s", r.status, r.body)
	}
	const spent = 5 + 1

	// The combined rate across both instances and the three keys: 200
	// requests at once, alternating instances and keys; at most limit +
	// one burst may pass (the six units spent above and the refill during
	// the run are well inside that).
	var allowed, limited atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 { // 16 clients, 200 requests
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > 200 {
					return
				}
				base := a.URL
				if i%2 == 1 {
					base = b.URL
				}
				switch r := call(t, base, tokens[i%3], "GET", "/v1/me", ""); r.status {
				case 200:
					allowed.Add(1)
				case 429:
					limited.Add(1)
				default:
					t.Errorf("GET /v1/me: %d %s", r.status, r.body)
				}
			}
		})
	}
	wg.Wait()
	for _, s := range []*testServer{a, b} {
		if strings.Contains(s.Logs.String(), "failing open") {
			t.Errorf("the Redis decider failed open during the run, so the count proves nothing:\n%s", s.Logs.String())
		}
	}
	t.Logf("three keys of one user across two instances: %d allowed, %d limited (limit %s)", allowed.Load(), limited.Load(), limit)
	if max := int64(limit.Count + limit.BurstSize()); allowed.Load() > max {
		t.Errorf("%d requests allowed across both instances, more than the limit plus one burst (%d)", allowed.Load(), max)
	}
	if allowed.Load() < int64(limit.BurstSize())-spent-2 {
		t.Errorf("only %d requests allowed; the shared limit should let a burst of %d (less %d spent) through", allowed.Load(), limit.BurstSize(), spent)
	}
	// One quota, whichever instance and key asks: a refused request
	// spends nothing, so each reports exactly what was admitted.
	wantQuota := fmt.Sprintf(`"10000/month";r=%d;`, 10000-spent-allowed.Load())
	for i, s := range []*testServer{a, b} {
		r := call(t, s.URL, tokens[i], "GET", "/v1/me", "")
		if r.status == 200 {
			wantQuota = fmt.Sprintf(`"10000/month";r=%d;`, 10000-spent-allowed.Load()-1)
			allowed.Add(1)
		}
		if got := items(r.header, "RateLimit"); len(got) != 2 || !strings.HasPrefix(got[1], wantQuota) {
			t.Errorf("instance %d: RateLimit %q, want the quota as %s…", i, got, wantQuota)
		}
	}

	// Revoked through A, refused by B within the TTL. Use another
	// customer's key, so that the budget spent above does not mask the
	// answer.
	other := newCustomer(t, a, fmt.Sprintf("fleet-other-%d@example.com", time.Now().UnixNano()))
	token := other.token
	tok, _ := apikey.Parse(token)
	if r := call(t, b.URL, token, "GET", "/v1/me", ""); r.status != 200 {
		t.Fatalf("B before revoking: %d", r.status)
	}
	if err := a.Keys().Revoke(context.Background(), tok.ID); err != nil {
		t.Fatal(err)
	}
	if r := call(t, a.URL, token, "GET", "/v1/me", ""); r.status != 401 {
		t.Errorf("A right after revoking: %d, want 401", r.status)
	}
	revoked := time.Now()
	for {
		r := call(t, b.URL, token, "GET", "/v1/me", "")
		if r.status == 401 {
			t.Logf("B refused the revoked key after %v (TTL %v)", time.Since(revoked).Round(time.Millisecond), ttl)
			break
		}
		if time.Since(revoked) > ttl+time.Second {
			t.Fatalf("B still answers %d for a key revoked %v ago through A (TTL %v)", r.status, time.Since(revoked), ttl)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
