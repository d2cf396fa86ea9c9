package magiclink_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/fakeclock"
	"github.com/apikit/apikit/internal/testkit/faultproxy"
	"github.com/apikit/apikit/internal/testkit/smtptest"
	"github.com/apikit/apikit/internal/testkit/syncbuf"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/store"
)

// newClock returns the fake clock of this package's tests.
func newClock() *fakeclock.Clock {
	return fakeclock.New(time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC))
}

// harness is a Service over a real store, mailing through a real SMTP
// server, served by a real HTTP server with a protected /app.
type harness struct {
	t     testing.TB
	store *store.Store
	smtp  *smtptest.Server
	svc   *magiclink.Service
	http  *httptest.Server
	clock *fakeclock.Clock
	logs  *syncbuf.Buffer
	proxy *faultproxy.Proxy // between the mailer and the SMTP server, if setup.faulty

	// closed is set by tests that close the service themselves.
	closed bool
}

type setup struct {
	open    func(testing.TB) *store.Store // default testdb.SQLite
	smtp    smtptest.Options
	options func(*magiclink.Options)
	faulty  bool // route SMTP through a faultproxy.Proxy
	mailer  func(magiclink.Mailer) magiclink.Mailer
	wrap    func(*store.Store) magiclink.Store // the Store the Service uses, over the real one
	handler func(http.Handler) http.Handler    // middleware around the routes, if set
}

func newHarness(t testing.TB, s setup) *harness {
	t.Helper()
	if s.open == nil {
		s.open = testdb.SQLite
	}
	h := &harness{t: t, store: s.open(t), smtp: smtptest.Start(t, s.smtp), clock: newClock(), logs: &syncbuf.Buffer{}}
	smtpURL := h.smtp.URL()
	if s.faulty {
		h.proxy = faultproxy.Start(t, h.smtp.Addr())
		smtpURL = strings.Replace(smtpURL, h.smtp.Addr(), h.proxy.Addr(), 1)
	}
	var mailer magiclink.Mailer
	mailer, err := magiclink.NewSMTPMailer(smtpURL, magiclink.SMTPOptions{TLSConfig: h.smtp.ClientTLSConfig(), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if s.mailer != nil {
		mailer = s.mailer(mailer)
	}
	h.http = httptest.NewUnstartedServer(nil)
	opts := magiclink.Options{
		BaseURL:      "http://" + h.http.Listener.Addr().String(),
		Mailer:       mailer,
		From:         "FavoritesAPI <login@example.com>",
		AppName:      "FavoritesAPI",
		RetryBackoff: 10 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Now:          h.clock.Now,
	}
	if s.options != nil {
		s.options(&opts)
	}
	var st magiclink.Store = h.store
	if s.wrap != nil {
		st = s.wrap(h.store)
	}
	h.svc, err = magiclink.New(st, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if h.closed {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.svc.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	mux := http.NewServeMux()
	h.svc.Register(mux)
	mux.Handle("GET /app", h.svc.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := magiclink.UserFrom(r.Context())
		fmt.Fprintf(w, "hello %s (user %d)", u.Email, u.ID)
	})))
	mux.Handle("GET /{$}", h.svc.LoadUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := magiclink.UserFrom(r.Context()); ok {
			fmt.Fprintf(w, "signed in as %s", u.Email)
			return
		}
		fmt.Fprint(w, "signed out")
	})))
	h.http.Config.Handler = mux
	if s.handler != nil {
		h.http.Config.Handler = s.handler(mux)
	}
	h.http.Start()
	t.Cleanup(h.http.Close)
	return h
}

func (h *harness) user(email string) int64 {
	h.t.Helper()
	id, _, err := h.store.CreateUser(context.Background(), email, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

// browser returns a client with a cookie jar that does not follow
// redirects.
func browser(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, c *http.Client, method, u string, body io.Reader, hdr ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

func postForm(t testing.TB, c *http.Client, u string, form url.Values, hdr ...string) response {
	t.Helper()
	return do(t, c, "POST", u, strings.NewReader(form.Encode()), append([]string{"Content-Type", "application/x-www-form-urlencoded"}, hdr...)...)
}

var tokenInput = regexp.MustCompile(`<input type="hidden" name="token" value="([A-Za-z0-9_-]+)">`)

// signIn requests a link for email through the handlers, waits for the
// email over SMTP, follows the link and presses the button. It returns
// the link.
func (h *harness) signIn(c *http.Client, email string) string {
	h.t.Helper()
	if r := postForm(h.t, c, h.http.URL+"/login", url.Values{"email": {email}}); r.status != http.StatusOK {
		h.t.Fatalf("POST /login = %d:\n%s", r.status, r.body)
	}
	link := h.smtp.WaitLink(h.t, email)
	h.confirm(c, link, http.StatusSeeOther)
	return link
}

// confirm follows a link as a browser does (GET, then the form's POST)
// and checks the POST's status.
func (h *harness) confirm(c *http.Client, link string, want int) response {
	h.t.Helper()
	page := do(h.t, c, "GET", link, nil)
	m := tokenInput.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || m == nil {
		h.t.Fatalf("GET %s = %d, no token form:\n%s", link, page.status, page.body)
	}
	r := postForm(h.t, c, h.http.URL+"/login/verify", url.Values{"token": {m[1]}})
	if r.status != want {
		h.t.Fatalf("POST /login/verify = %d, want %d:\n%s", r.status, want, r.body)
	}
	return r
}

func (h *harness) sessionCookie(c *http.Client) *http.Cookie {
	u, _ := url.Parse(h.http.URL)
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "__Host-session" || ck.Name == "session" {
			return ck
		}
	}
	return nil
}

// waitStats waits until cond holds for the service's stats.
func (h *harness) waitStats(cond func(magiclink.Stats) bool) magiclink.Stats {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := h.svc.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("stats never reached the expected state: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
