package app_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/internal/testkit/syncbuf"
	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
)

// backend selects the database a test server runs on.
type backend string

const (
	sqliteDB   backend = "sqlite"
	postgresDB backend = "postgres"
)

// databaseURL returns a fresh database of the backend for one test.
func databaseURL(t testing.TB, b backend) string {
	t.Helper()
	if b == postgresDB {
		return testdb.PostgresDSN(t)
	}
	return t.TempDir() + "/favoritesapi.db"
}

// runID tells this run of the tests from earlier ones in a shared Redis.
var runID = rand.Text()[:10]

// testServer is a FavoritesAPI served in-process on loopback.
type testServer struct {
	*app.Server
	URL  string
	Mail *mailbox
	Logs *syncbuf.Buffer
}

// startServer starts FavoritesAPI on a fresh database of the backend, in
// dev billing mode unless cfg says otherwise, with emails caught by a
// mailbox and logs kept at debug level.
func startServer(t testing.TB, b backend, cfg app.Config, mods ...func(*app.Options)) *testServer {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = databaseURL(t, b)
	}
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://" + ts.Listener.Addr().String()
	}
	logs := &syncbuf.Buffer{}
	mail := &mailbox{}
	opts := app.Options{
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Stderr: logs,
		// Redis outlives a test run: each run of a test (-count=2 runs
		// it twice in one process) counts its own limits, while the
		// instances of one test, which share its database, share them.
		RedisPrefix: fmt.Sprintf("favoritesapi-test:%s:%s:%.6x:", runID, t.Name(), sha256.Sum256([]byte(cfg.DatabaseURL))),
	}
	if cfg.SMTPURL == "" {
		opts.Mailer = mail
	}
	for _, m := range mods {
		m(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv, err := app.New(ctx, cfg, opts)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	t.Cleanup(func() {
		ts.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("closing the server: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return &testServer{Server: srv, URL: ts.URL, Mail: mail, Logs: logs}
}

// mailbox is a magiclink.Mailer that keeps the messages.
type mailbox struct {
	mu   sync.Mutex
	msgs []magiclink.Message
}

func (m *mailbox) Send(_ context.Context, msg magiclink.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *mailbox) count(to string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, msg := range m.msgs {
		if strings.Contains(msg.To, to) {
			n++
		}
	}
	return n
}

var loginLink = regexp.MustCompile(`https?://[^\s"<>]+/login/verify\?token=[A-Za-z0-9_-]+`)

// waitMail waits for the n-th (1-based) email to the address and returns
// its text.
func (m *mailbox) waitMail(t testing.TB, to string, n int) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		seen := 0
		for _, msg := range m.msgs {
			if strings.Contains(msg.To, to) {
				if seen++; seen == n {
					m.mu.Unlock()
					return msg.Text
				}
			}
		}
		m.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no email #%d to %s within 10s", n, to)
	return ""
}

// waitLink waits for the n-th (1-based) email to the address and returns
// the login link in it.
func (m *mailbox) waitLink(t testing.TB, to string, n int) string {
	t.Helper()
	text := m.waitMail(t, to, n)
	link := loginLink.FindString(text)
	if link == "" {
		t.Fatalf("email to %s has no login link:\n%s", to, text)
	}
	return link
}

// browser is an HTTP client with a cookie jar that does not follow
// redirects, so tests see each step.
func browser(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Jar:     jar,
		Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// page is a fetched HTML page.
type page struct {
	status   int
	location string
	header   http.Header
	body     string
	url      string
}

func get(t testing.TB, c *http.Client, u string) page {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return readPage(t, resp)
}

func postForm(t testing.TB, c *http.Client, u string, form url.Values) page {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	return readPage(t, resp)
}

func readPage(t testing.TB, resp *http.Response) page {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", resp.Request.URL, err)
	}
	return page{status: resp.StatusCode, location: resp.Header.Get("Location"), header: resp.Header, body: string(b), url: resp.Request.URL.String()}
}

// resolve returns the absolute form of ref relative to base.
func resolve(t testing.TB, base, ref string) string {
	t.Helper()
	b, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	r, err := url.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	return b.ResolveReference(r).String()
}

var (
	formRe  = regexp.MustCompile(`(?s)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`<(?:input|button)\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`([a-zA-Z-]+)="([^"]*)"`)
)

func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2])
	}
	return m
}

// submit finds the first POST form on p whose action contains
// actionPart, fills its named inputs with their values (then with fill),
// and submits it as a browser would.
func submit(t testing.TB, c *http.Client, p page, actionPart string, fill url.Values) page {
	t.Helper()
	forms := formRe.FindAllStringSubmatch(p.body, -1)
	// An exact action wins over one that merely contains actionPart.
	slices.SortStableFunc(forms, func(a, b []string) int {
		ea, eb := attrs(a[1])["action"] == actionPart, attrs(b[1])["action"] == actionPart
		switch {
		case ea && !eb:
			return -1
		case eb && !ea:
			return 1
		}
		return 0
	})
	for _, f := range forms {
		fa := attrs(f[1])
		if !strings.EqualFold(fa["method"], "post") || !strings.Contains(fa["action"], actionPart) {
			continue
		}
		form := url.Values{}
		for _, in := range inputRe.FindAllStringSubmatch(f[2], -1) {
			ia := attrs(in[1])
			if ia["name"] != "" && ia["type"] != "submit" && !strings.HasPrefix(in[0], "<button") {
				form.Set(ia["name"], ia["value"])
			}
		}
		for k, v := range fill {
			form[k] = v
		}
		return postForm(t, c, resolve(t, p.url, fa["action"]), form)
	}
	t.Fatalf("no POST form with action containing %q on %s:\n%s", actionPart, p.url, p.body)
	return page{}
}

// signUp subscribes a new customer to the hobby plan through the landing
// page's form and the dev checkout, and returns their signed-in browser.
func signUp(t testing.TB, s *testServer, email string) *http.Client {
	t.Helper()
	return signUpPlan(t, s, email, "hobby")
}

// signUpPlan subscribes a new customer to a paid plan through the landing
// page's form and the dev checkout, and returns their signed-in browser.
func signUpPlan(t testing.TB, s *testServer, email, plan string) *http.Client {
	t.Helper()
	c := browser(t)
	landing := get(t, c, s.URL+"/")
	p := submit(t, c, landing, "/signup", url.Values{"email": {email}, "plan": {plan}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("POST /signup = %d, want 303:\n%s", p.status, p.body)
	}
	checkout := get(t, c, resolve(t, s.URL, p.location))
	if checkout.status != http.StatusOK || !strings.Contains(checkout.body, "no payment") {
		t.Fatalf("dev checkout page = %d:\n%s", checkout.status, checkout.body)
	}
	before := s.Mail.count(email)
	p = submit(t, c, checkout, "dev-checkout", nil)
	if p.status != http.StatusOK || !strings.Contains(p.body, "We sent a sign-in link to") {
		t.Fatalf("completing dev checkout = %d to %q, want 200 and a page that says a link was sent:\n%s", p.status, p.location, p.body)
	}
	// Paying proves nothing about the address: the link the checkout
	// emailed to it does.
	followLink(t, c, s.Mail.waitLink(t, email, before+1))
	return c
}

var newKeyRe = regexp.MustCompile(`id="new-key">([^<]+)<`)

// createKey creates a key on the dashboard and returns its token, read
// from the #new-key element.
func createKey(t testing.TB, s *testServer, c *http.Client, name string) string {
	t.Helper()
	dash := get(t, c, s.URL+"/app")
	if dash.status != http.StatusOK {
		t.Fatalf("GET /app = %d, want 200", dash.status)
	}
	p := submit(t, c, dash, "/app/keys", url.Values{"name": {name}})
	m := newKeyRe.FindStringSubmatch(p.body)
	if p.status != http.StatusOK || m == nil {
		t.Fatalf("creating a key = %d, no #new-key:\n%s", p.status, p.body)
	}
	return html.UnescapeString(m[1])
}

// customer is a subscribed user with a signed-in browser and a key.
type customer struct {
	email  string
	web    *http.Client
	token  string
	server *testServer
}

func newCustomer(t testing.TB, s *testServer, email string) *customer {
	t.Helper()
	c := signUp(t, s, email)
	return &customer{email: email, web: c, token: createKey(t, s, c, "test key"), server: s}
}

// apiResponse is a decoded API response.
type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

func (r apiResponse) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decoding %s: %v", r.body, err)
	}
}

// problem decodes a problem document, checking its media type.
func (r apiResponse) problem(t testing.TB) map[string]any {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json (body %s)", ct, r.body)
	}
	var p map[string]any
	r.json(t, &p)
	return p
}

// call makes an API request with the token as a bearer credential (none
// if token is empty).
func call(t testing.TB, base, token, method, path string, body string, hdr ...string) apiResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return apiResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *customer) call(t testing.TB, method, path, body string, hdr ...string) apiResponse {
	t.Helper()
	return call(t, c.server.URL, c.token, method, path, body, hdr...)
}

// meBody is the body of GET /v1/me.
type meBody struct {
	User struct{ Email string }
	Key  struct{ ID, Name string }
	Plan struct {
		Name, Status, Budget string
		Metered              bool
		Limits               []struct {
			Name          string
			Limit         int
			PeriodSeconds int64 `json:"period_seconds"`
			Remaining     int64
		}
		Quota *struct {
			Name, Period           string
			Limit, Used, Remaining int64
			ResetsAt               time.Time `json:"resets_at"`
		}
	}
	// The contract's field names.
	RateLimit struct {
		Limit         int   `json:"limit"`
		PeriodSeconds int64 `json:"period_seconds"`
	} `json:"rate_limit"`
}
