package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/usage"
	"github.com/redis/go-redis/v9"
	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// unlimited is a limit no load from one machine reaches, so that the
// limiter does all its work and never refuses.
var unlimited = ratelimit.MustParseLimit("1000000/s")

// target is a scenario ready to attack.
type target struct {
	targeter vegeta.Targeter
	ok       uint16 // the status a served request answers
	close    func()
	post     vegeta.Targeter // favorites scenarios: a POST /v1/favorites
}

// scenario builds one stack and serves it on loopback.
type scenario struct {
	name  string
	needs string // why it cannot run, if it cannot
	start func(ctx context.Context, o options, dir string) (*target, error)
}

func scenarios(o options) []scenario {
	pgNeeds, redisNeeds, remoteNeeds := "", "", ""
	if o.pgURL == "" {
		pgNeeds = "needs -postgres or DATABASE_URL"
	}
	if o.redisURL == "" {
		redisNeeds = "needs -redis or REDIS_URL"
	}
	if o.url == "" || o.key == "" {
		remoteNeeds = "needs -url and -key"
	}
	return []scenario{
		{name: "bare", start: startBare},
		{name: "bare+headers", start: startBareHeaders},
		{name: "auth", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startMiddleware(ctx, dir, nil, 1)
		}},
		{name: "auth+limit", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startMiddleware(ctx, dir, limitMiddleware(ratelimit.NewMemory(ratelimit.MemoryOptions{})), 1)
		}},
		{name: "auth+plan", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startMiddleware(ctx, dir, planMiddleware(plan.NewMemory(plan.MemoryOptions{})), 1)
		}},
		{name: "auth+plan+metering", start: startMetered},
		{name: "auth+limit+redis", needs: redisNeeds, start: func(ctx context.Context, o options, dir string) (*target, error) {
			ropts, err := redis.ParseURL(o.redisURL)
			if err != nil {
				return nil, err
			}
			rdb := redis.NewClient(ropts)
			t, err := startMiddleware(ctx, dir, limitMiddleware(redislimit.New(rdb, redislimit.Options{Prefix: "apikit-load:" + rand8() + ":"})), 1)
			if err != nil {
				rdb.Close()
				return nil, err
			}
			inner := t.close
			t.close = func() { inner(); rdb.Close() }
			return t, nil
		}},
		{name: "auth+limit+redis-local", needs: redisNeeds, start: func(ctx context.Context, o options, dir string) (*target, error) {
			ropts, err := redis.ParseURL(o.redisURL)
			if err != nil {
				return nil, err
			}
			ropts.ContextTimeoutEnabled = true
			rdb := redis.NewClient(ropts)
			l := redislimit.NewLocal(rdb, redislimit.LocalOptions{Options: redislimit.Options{Prefix: "apikit-load:" + rand8() + ":"}})
			t, err := startMiddleware(ctx, dir, limitMiddleware(l), 1)
			if err != nil {
				l.Close(ctx)
				rdb.Close()
				return nil, err
			}
			inner := t.close
			t.close = func() { inner(); l.Close(context.Background()); rdb.Close() }
			return t, nil
		}},
		{name: "many-keys", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startMiddleware(ctx, dir, limitMiddleware(ratelimit.NewMemory(ratelimit.MemoryOptions{})), o.manyKeys)
		}},
		{name: "favorites-read", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavorites(ctx, filepath.Join(dir, "favorites.db"), false)
		}},
		{name: "favorites-write", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavorites(ctx, filepath.Join(dir, "favorites-write.db"), true)
		}},
		{name: "favorites-read-pg", needs: pgNeeds, start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavorites(ctx, o.pgURL, false)
		}},
		{name: "favorites-write-pg", needs: pgNeeds, start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavorites(ctx, o.pgURL, true)
		}},
		{name: "favorites-read-raw", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavoritesRaw(ctx, filepath.Join(dir, "favorites-raw.db"), false)
		}},
		{name: "favorites-write-raw", start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavoritesRaw(ctx, filepath.Join(dir, "favorites-write-raw.db"), true)
		}},
		{name: "favorites-read-pg-raw", needs: pgNeeds, start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavoritesRaw(ctx, o.pgURL, false)
		}},
		{name: "favorites-write-pg-raw", needs: pgNeeds, start: func(ctx context.Context, o options, dir string) (*target, error) {
			return startFavoritesRaw(ctx, o.pgURL, true)
		}},
		{name: "remote", needs: remoteNeeds, start: func(ctx context.Context, o options, dir string) (*target, error) {
			return &target{targeter: get(o.url+"/v1/me", o.key), ok: http.StatusOK, close: func() {}}, nil
		}},
	}
}

// serve serves h on a loopback port until the returned func is called.
func serve(h http.Handler) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// okHandler is the API handler of the middleware scenarios: as trivial as
// the bare one, so that the difference is the middleware.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"ok":true}`+"\n")
})

func startBare(ctx context.Context, o options, dir string) (*target, error) {
	base, stop, err := serve(okHandler)
	if err != nil {
		return nil, err
	}
	return &target{targeter: get(base+"/v1/me", ""), ok: http.StatusOK, close: stop}, nil
}

// startBareHeaders serves okHandler with the five rate limit header
// fields that auth+plan's responses carry, constant: what the wire
// contract alone costs (writing them, and parsing them in the client).
func startBareHeaders(ctx context.Context, o options, dir string) (*target, error) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Ratelimit-Policy"] = planHeaders[0:1:1]
		hd["Ratelimit"] = planHeaders[1:2:2]
		hd["X-Ratelimit-Limit"] = planHeaders[2:3:3]
		hd["X-Ratelimit-Remaining"] = planHeaders[3:4:4]
		hd["X-Ratelimit-Reset"] = planHeaders[4:5:5]
		okHandler(w, r)
	})
	base, stop, err := serve(h)
	if err != nil {
		return nil, err
	}
	return &target{targeter: get(base+"/v1/me", ""), ok: http.StatusOK, close: stop}, nil
}

// planHeaders are values of the length auth+plan sends.
var planHeaders = []string{
	`"1000000/s";q=1000000;w=1, "1000000000/h";q=1000000000;w=3600, "1000000000000/month";q=1000000000000;w=2592000`,
	`"1000000/s";r=999999;t=1, "1000000000/h";r=999999999;t=1, "1000000000000/month";r=999999999999;t=91960`,
	"1000000", "999999", "1795991242",
}

// limitMiddleware limits each key to unlimited with limiter.
func limitMiddleware(limiter ratelimit.Limiter) func(http.Handler) http.Handler {
	return ratelimit.Middleware(limiter, ratelimit.MiddlewareOptions{
		KeyFunc: func(r *http.Request) (string, error) {
			p, _ := apikey.PrincipalFrom(r.Context())
			return p.KeyID, nil
		},
		Limit: unlimited, Policy: "per-key",
	})
}

// loadPlan has two limits and a quota, as a paid plan does, all out of
// reach of one machine's load, per user.
var loadPlan = &plan.Plan{
	Name:   "load",
	Limits: []ratelimit.Limit{unlimited, ratelimit.MustParseLimit("1000000000/h")},
	Quota:  plan.Quota{Count: plan.MaxQuota, Period: plan.Month},
}

// planMiddleware decides every request under loadPlan for the key's user,
// with the plan middleware as an application wires it (without the
// example's plan selection from subscriptions).
func planMiddleware(d plan.Decider) func(http.Handler) http.Handler {
	return plan.Middleware(d, plan.MiddlewareOptions{
		Request: func(r *http.Request) (plan.Request, error) {
			p, ok := apikey.PrincipalFrom(r.Context())
			if !ok {
				return plan.Request{}, &plan.StatusError{Status: http.StatusUnauthorized, Code: "unauthorized"}
			}
			return plan.Request{Plan: loadPlan, User: strconv.FormatInt(p.UserID, 10), Key: p.KeyID}, nil
		},
	})
}

// startMetered serves okHandler as the FavoritesAPI example wires a
// metered, planned API: the key middleware, the usage meter (counting
// into the SQLite store, flushed every 10 s), the plan middleware (two
// limits and a quota, in memory) and a middleware that reports the
// plan's cost to the meter.
func startMetered(ctx context.Context, o options, dir string) (*target, error) {
	var meter *usage.Meter
	t, err := startMiddlewareStore(ctx, dir, func(st *store.Store) func(http.Handler) http.Handler {
		meter = usage.NewMeter(st, usage.Options{FlushInterval: 10 * time.Second})
		count := meter.Middleware(usage.MiddlewareOptions{Identity: func(r *http.Request) (string, string, bool) {
			p, ok := apikey.PrincipalFrom(r.Context())
			return p.KeyID, strconv.FormatInt(p.UserID, 10), ok
		}})
		limit := planMiddleware(plan.NewMemory(plan.MemoryOptions{}))
		return func(h http.Handler) http.Handler { return count(limit(reportCost(h))) }
	}, 1)
	if err != nil {
		return nil, err
	}
	inner := t.close
	t.close = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		meter.Close(ctx)
		inner()
	}
	return t, nil
}

// reportCost tells the meter what the plan's decision spent, as the
// example does.
func reportCost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, ok := plan.DecisionFrom(r.Context()); ok {
			usage.SetCost(r.Context(), int64(d.Cost))
		}
		next.ServeHTTP(w, r)
	})
}

// startMiddleware serves okHandler behind the key middleware (and mw, if
// not nil), with n keys issued on a SQLite store; requests rotate through
// the keys.
func startMiddleware(ctx context.Context, dir string, mw func(http.Handler) http.Handler, n int) (*target, error) {
	return startMiddlewareStore(ctx, dir, func(*store.Store) func(http.Handler) http.Handler { return mw }, n)
}

// startMiddlewareStore is startMiddleware with middleware built on the
// store.
func startMiddlewareStore(ctx context.Context, dir string, build func(*store.Store) func(http.Handler) http.Handler, n int) (*target, error) {
	st, err := sqlite.Open(ctx, filepath.Join(dir, fmt.Sprintf("keys-%d-%s.db", n, rand8())))
	if err != nil {
		return nil, err
	}
	mw := build(st)
	if _, err := st.Migrate(ctx); err != nil {
		st.Close()
		return nil, err
	}
	tokens, err := issueKeys(ctx, st, n)
	if err != nil {
		st.Close()
		return nil, err
	}
	v := apikey.NewVerifier(st, apikey.VerifierOptions{})
	h := http.Handler(okHandler)
	if mw != nil {
		h = mw(h)
	}
	h = apikey.Middleware(v, apikey.MiddlewareOptions{})(h)
	base, stop, err := serve(h)
	if err != nil {
		v.Close()
		st.Close()
		return nil, err
	}
	return &target{targeter: rotate(base+"/v1/me", tokens), ok: http.StatusOK, close: func() {
		stop()
		v.Close()
		st.Close()
	}}, nil
}

// issueKeys issues n keys to one user, several at a time.
func issueKeys(ctx context.Context, st *store.Store, n int) ([]string, error) {
	uid, _, err := st.CreateUser(ctx, "load@example.com", time.Now())
	if err != nil {
		return nil, err
	}
	m := apikey.NewManager(st, apikey.ManagerOptions{Prefix: "load"})
	tokens := make([]string, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				_, tok, err := m.Issue(ctx, uid, apikey.IssueOptions{Name: "load"})
				if err != nil {
					errs <- err
					return
				}
				tokens[i] = tok.Reveal()
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, fmt.Errorf("issuing keys: %w", err)
	}
	return tokens, nil
}

// startFavorites serves the full FavoritesAPI on the database, with one
// subscribed customer holding 100 favorites.
func startFavorites(ctx context.Context, databaseURL string, write bool) (*target, error) {
	srv, err := app.New(ctx, app.Config{DatabaseURL: databaseURL, RateLimit: unlimited}, app.Options{
		Logger: slog.New(slog.DiscardHandler), Stderr: io.Discard,
	})
	if err != nil {
		return nil, err
	}
	tok, err := srv.Provision(ctx, fmt.Sprintf("load-%s@example.com", rand8()), "load")
	if err != nil {
		srv.Close(ctx)
		return nil, err
	}
	base, stop, err := serve(srv.Handler())
	if err != nil {
		srv.Close(ctx)
		return nil, err
	}
	closeAll := func() {
		stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Close(ctx)
	}
	body := []byte(`{"name":"The Go spec","url":"https://go.dev/ref/spec","tags":["go","reference"]}`)
	post := func(t *vegeta.Target) error {
		*t = vegeta.Target{Method: http.MethodPost, URL: base + "/v1/favorites", Body: body,
			Header: http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"}}}
		return nil
	}
	if write {
		return &target{targeter: post, ok: http.StatusCreated, close: closeAll, post: post}, nil
	}
	for range 100 {
		var t vegeta.Target
		post(&t)
		req, _ := t.Request()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			closeAll()
			return nil, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			closeAll()
			return nil, fmt.Errorf("seeding favorites: %s", resp.Status)
		}
	}
	return &target{targeter: get(base+"/v1/favorites?limit=20", tok), ok: http.StatusOK, close: closeAll, post: post}, nil
}

func get(url, token string) vegeta.Targeter {
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return func(t *vegeta.Target) error {
		*t = vegeta.Target{Method: http.MethodGet, URL: url, Header: h}
		return nil
	}
}

// rotate targets url with each token in turn.
func rotate(url string, tokens []string) vegeta.Targeter {
	headers := make([]http.Header, len(tokens))
	for i, tok := range tokens {
		headers[i] = http.Header{"Authorization": {"Bearer " + tok}}
	}
	var i atomic.Uint64
	return func(t *vegeta.Target) error {
		*t = vegeta.Target{Method: http.MethodGet, URL: url, Header: headers[(i.Add(1)-1)%uint64(len(headers))]}
		return nil
	}
}

func rand8() string { return strings.ToLower(rand.Text()[:8]) }
