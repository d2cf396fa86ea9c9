package app_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/faultproxy"
	"github.com/apikit/apikit/internal/testkit/smtptest"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/internal/testkit/testenv"
	"github.com/apikit/apikit/ratelimit"
)

// throughProxy returns the URL with its host replaced by the proxy's.
func throughProxy(t testing.TB, rawURL string, p *faultproxy.Proxy) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = p.Addr()
	return u.String()
}

func hostOf(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

// TestPostgresOutage stops PostgreSQL (connections cut, new ones refused)
// while customers write favorites, then restarts it: while it is down the
// API answers 503 problems and never 200 for a key it cannot verify; it
// recovers without a restart; and every write it acknowledged is there.
func TestPostgresOutage(t *testing.T) {
	dsn := testdb.PostgresDSN(t)
	pg := faultproxy.Start(t, hostOf(t, dsn))
	s := startServer(t, postgresDB, app.Config{
		DatabaseURL: throughProxy(t, dsn, pg),
		RateLimit:   ratelimit.MustParseLimit("100000/min"),
	}, func(o *app.Options) { o.KeyCacheTTL = time.Second })
	// The writer subscribes to a plan without a quota (Provision): the
	// writes here must not run into hobby's 10,000 units a month.
	wtok, err := s.Provision(t.Context(), "writer@example.com", "writer")
	if err != nil {
		t.Fatal(err)
	}
	writer := &customer{email: "writer@example.com", token: wtok, server: s}
	cold := newCustomer(t, s, "cold@example.com") // its key is never verified before the outage

	var (
		mu    sync.Mutex
		acked []string
	)
	var statuses sync.Map // status → *atomic.Int64
	count := func(status int) {
		v, _ := statuses.LoadOrStore(status, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := writer.call(t, "POST", "/v1/favorites", fmt.Sprintf(`{"name":"w%d-%d","url":"https://example.com/%d"}`, w, i, i))
				count(r.status)
				switch r.status {
				case 201:
					var f favorite
					r.json(t, &f)
					mu.Lock()
					acked = append(acked, f.ID)
					mu.Unlock()
				case 503:
					r.problem(t)
				default:
					t.Errorf("write during the run: %d %s", r.status, r.body)
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	pg.Down()
	down := time.Now()
	// Past the key cache TTL, nothing can be verified: 503, never 200.
	time.Sleep(1500 * time.Millisecond)
	for _, c := range []*customer{writer, cold} {
		r := c.call(t, "GET", "/v1/favorites", "")
		if r.status != 503 {
			t.Errorf("%s during the outage: %d %s, want 503", c.email, r.status, r.body)
		} else {
			r.problem(t)
		}
	}
	if r := call(t, s.URL, "", "GET", "/healthz", ""); r.status != 503 {
		t.Errorf("/healthz during the outage: %d, want 503", r.status)
	}
	pg.Up()
	t.Logf("PostgreSQL was down for %v", time.Since(down).Round(time.Millisecond))

	// It recovers without a restart.
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := cold.call(t, "GET", "/v1/favorites", "")
		if r.status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not recovered 30s after PostgreSQL came back: %d %s", r.status, r.body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	// No acknowledged write is lost.
	have := map[string]bool{}
	cursor := ""
	for {
		path := "/v1/favorites?limit=100"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var l favoriteList
		r := writer.call(t, "GET", path, "")
		if r.status != 200 {
			t.Fatalf("listing after recovery: %d %s", r.status, r.body)
		}
		r.json(t, &l)
		for _, f := range l.Favorites {
			have[f.ID] = true
		}
		if l.NextCursor == nil {
			break
		}
		cursor = *l.NextCursor
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range acked {
		if !have[id] {
			t.Errorf("acknowledged favorite %s is missing after the outage", id)
		}
	}
	summary := []string{}
	statuses.Range(func(k, v any) bool {
		summary = append(summary, fmt.Sprintf("%d×%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	t.Logf("writes: %d acknowledged, all present; statuses %v", len(acked), summary)
	if v, ok := statuses.Load(503); !ok || v.(*atomic.Int64).Load() == 0 {
		t.Error("no write was refused with 503 during the outage")
	}
}

// TestRedisOutage cuts Redis under the shared limiter: the default policy
// fails open (requests are served, the failure counted and logged), and
// no request waits much beyond the limiter's timeout, also when Redis is
// slow rather than gone.
func TestRedisOutage(t *testing.T) {
	redisURL := testenv.Redis(t)
	rp := faultproxy.Start(t, hostOf(t, redisURL))
	s := startServer(t, sqliteDB, app.Config{RedisURL: throughProxy(t, redisURL, rp)})
	c := newCustomer(t, s, "redis@example.com")
	if r := c.call(t, "GET", "/v1/me", ""); r.status != 200 || r.header.Get("X-RateLimit-Remaining") == "" {
		t.Fatalf("with Redis up: %d", r.status)
	}
	check := func(phase string) {
		t.Helper()
		for range 5 {
			start := time.Now()
			r := c.call(t, "GET", "/v1/me", "")
			if d := time.Since(start); d > time.Second {
				t.Errorf("%s: a request took %v", phase, d)
			}
			if r.status != 200 {
				t.Errorf("%s: %d %s, want 200 (fail open)", phase, r.status, r.body)
			}
		}
	}
	rp.Down()
	check("Redis down")
	// The dashboard works without Redis; it leaves out the quota used.
	if p := get(t, c.web, s.URL+"/app"); p.status != http.StatusOK || !strings.Contains(p.body, `id="plan-name">hobby<`) || strings.Contains(p.body, `id="quota-used"`) {
		t.Errorf("the dashboard with Redis down: %d\n%s", p.status, p.body)
	}
	// The limits on what strangers can call do not switch off: sign-in
	// mail to one address is still limited (5 an hour), from memory.
	statuses := map[int]int{}
	for range 7 {
		statuses[postForm(t, browser(t), s.URL+"/login", url.Values{"email": {"flood@example.com"}}).status]++
	}
	if statuses[http.StatusTooManyRequests] < 2 {
		t.Errorf("7 sign-in requests for one address with Redis down: %v; want the 6th and 7th refused with 429", statuses)
	}
	rp.Up()
	rp.SetDelay(2 * time.Second)
	check("Redis slow")
	rp.SetDelay(0)
	// Failing open is counted and logged.
	m := metrics(t, s)
	var failedOpen int
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, "apikit_plan_failed_open "); ok {
			failedOpen, _ = strconv.Atoi(v)
		}
	}
	if failedOpen < 10 {
		t.Errorf("apikit_plan_failed_open = %d after 10 requests with Redis down or slow:\n%s", failedOpen, m)
	}
	if !strings.Contains(s.Logs.String(), "failing open") {
		t.Errorf("failing open was not logged:\n%s", s.Logs.String())
	}
	// Deciding the abuse limits from memory is counted too.
	if !regexp.MustCompile(`apikit_abuse_limits_fallbacks [1-9]`).MatchString(m) {
		t.Errorf("no fallback decisions counted with Redis down:\n%s", m)
	}
}

// TestGracefulShutdownUnderLoad shuts the HTTP server down while clients
// keep writing: every request the server accepted (its handler started)
// completes and its response reaches the client; the only failures are
// connections the server never served (refused after it stopped
// listening, or closed unread when the listener closed).
func TestGracefulShutdownUnderLoad(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{RateLimit: ratelimit.MustParseLimit("100000/min")})
	// Provision subscribes to a plan without a quota: the load here must
	// not run into one (hobby's 10,000 a month is 2,000 writes).
	tok, err := s.Provision(t.Context(), "shutdown@example.com", "load")
	if err != nil {
		t.Fatal(err)
	}
	c := &customer{email: "shutdown@example.com", token: tok, server: s}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := s.HTTPServer()
	var started, finished atomic.Int64
	inner := hs.Handler
	hs.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		inner.ServeHTTP(w, r)
		finished.Add(1)
	})
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	base := "http://" + ln.Addr().String()

	var answered, unserved atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", base+"/v1/favorites", strings.NewReader(`{"name":"x","url":"https://example.com"}`))
				req.Header.Set("Authorization", "Bearer "+c.token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				switch {
				case err == nil:
					resp.Body.Close()
					if resp.StatusCode != 201 {
						t.Errorf("during shutdown: %d", resp.StatusCode)
					}
					answered.Add(1)
				case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF):
					unserved.Add(1)
					time.Sleep(time.Millisecond)
				default:
					t.Errorf("a request failed: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err := <-served; err != http.ErrServerClosed {
		t.Errorf("Serve returned %v", err)
	}
	t.Logf("%d requests accepted and answered; %d connection attempts not served after shutdown began", answered.Load(), unserved.Load())
	if started.Load() != finished.Load() {
		t.Errorf("%d requests started but %d finished: shutdown cut requests short", started.Load(), finished.Load())
	}
	if answered.Load() != finished.Load() {
		t.Errorf("the server finished %d requests but clients got %d answers", finished.Load(), answered.Load())
	}
	if answered.Load() == 0 {
		t.Error("no request was served")
	}
}

// TestSMTPDownOrSlow takes the mail server away, then makes it slow:
// sign-in requests answer at once either way (mail goes through a queue),
// the email is retried and arrives once the server is back, and closing
// the server drains the queue.
func TestSMTPDownOrSlow(t *testing.T) {
	mail := smtptest.Start(t)
	proxy := faultproxy.Start(t, mail.Addr())
	s := startServer(t, sqliteDB, app.Config{SMTPURL: "smtp://" + proxy.Addr()})
	if _, err := s.Provision(context.Background(), "mail@example.com", "k"); err != nil {
		t.Fatal(err)
	}

	login := func(phase string) {
		t.Helper()
		start := time.Now()
		p := postForm(t, browser(t), s.URL+"/login", url.Values{"email": {"mail@example.com"}})
		// Sending synchronously through the slow server would take
		// seconds (every chunk of the conversation waits 300 ms).
		if d := time.Since(start); p.status != http.StatusOK || d > 2*time.Second {
			t.Errorf("%s: POST /login = %d after %v, want 200 at once", phase, p.status, d)
		}
	}
	proxy.Down()
	login("SMTP down")
	time.Sleep(300 * time.Millisecond) // the first attempt fails
	proxy.Up()
	if link := mail.WaitLink(t, "mail@example.com"); !strings.Contains(link, "/login/verify?token=") {
		t.Errorf("the retried email has no link: %q", link)
	}

	proxy.SetDelay(300 * time.Millisecond) // every chunk of the SMTP conversation waits
	login("SMTP slow")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close with a slow SMTP server: %v", err)
	}
	if link := mail.WaitLink(t, "mail@example.com"); link == "" {
		t.Error("Close did not drain the email queued while SMTP was slow")
	}
}
