package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/examples/favoritesapi/app"
	"github.com/apikit/apikit/ratelimit"
)

// TestAPI runs the API suite on SQLite and on PostgreSQL.
func TestAPI(t *testing.T) {
	for _, b := range []backend{sqliteDB, postgresDB} {
		t.Run(string(b), func(t *testing.T) {
			if b == postgresDB {
				databaseURL(t, b) // skips, or fails in CI, without PostgreSQL
			}
			t.Parallel()
			testAPI(t, b)
		})
	}
}

type favorite struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Tags      []string  `json:"tags"`
	CreatedAt time.Time `json:"created_at"`
}

type favoriteList struct {
	Favorites  []favorite `json:"favorites"`
	NextCursor *string    `json:"next_cursor"`
}

func testAPI(t *testing.T, b backend) {
	s := startServer(t, b, app.Config{RateLimit: ratelimit.MustParseLimit("10000/min")})
	ada := newCustomer(t, s, "ada@example.com")
	bob := newCustomer(t, s, "bob@example.com")

	t.Run("Me", func(t *testing.T) {
		r := ada.call(t, "GET", "/v1/me", "")
		if r.status != 200 {
			t.Fatalf("GET /v1/me = %d %s", r.status, r.body)
		}
		var me meBody
		r.json(t, &me)
		tok, _ := apikey.Parse(ada.token)
		if me.User.Email != "ada@example.com" || me.Key.ID != tok.ID || me.Key.Name != "test key" ||
			me.Plan.Status != "active" || me.RateLimit.Limit != 10000 || me.RateLimit.PeriodSeconds != 60 {
			t.Errorf("GET /v1/me = %s", r.body)
		}
		// The hobby plan, with RATE_LIMIT for its first limit, and what is
		// left of it after this request.
		if p := me.Plan; p.Name != "hobby" || p.Budget != "user" || p.Metered || len(p.Limits) != 1 ||
			p.Limits[0].Name != "10000/min" || p.Limits[0].Remaining != 9999 || p.Quota == nil ||
			p.Quota.Name != "10000/month" || p.Quota.Period != "month" || p.Quota.Used != 1 || p.Quota.Remaining != 9999 ||
			!p.Quota.ResetsAt.After(time.Now()) {
			t.Errorf("GET /v1/me plan = %+v", p)
		}
		for _, h := range []string{"RateLimit-Policy", "RateLimit", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} {
			if r.header.Get(h) == "" {
				t.Errorf("GET /v1/me has no %s header", h)
			}
		}
		if got, want := items(r.header, "RateLimit-Policy"), []string{`"10000/min";q=10000;w=60`, `"10000/month";q=10000;w=`}; len(got) != 2 ||
			got[0] != want[0] || !strings.HasPrefix(got[1], want[1]) {
			t.Errorf("RateLimit-Policy %q, want %q", got, want)
		}
	})

	t.Run("CreateGetDelete", func(t *testing.T) {
		r := ada.call(t, "POST", "/v1/favorites", `{"name":"Go spec","url":"https://go.dev/ref/spec","tags":["go","spec"]}`)
		if r.status != 201 {
			t.Fatalf("POST /v1/favorites = %d %s", r.status, r.body)
		}
		var f favorite
		r.json(t, &f)
		if loc := r.header.Get("Location"); loc != "/v1/favorites/"+f.ID {
			t.Errorf("Location = %q, want /v1/favorites/%s", loc, f.ID)
		}
		if f.Name != "Go spec" || f.URL != "https://go.dev/ref/spec" || strings.Join(f.Tags, ",") != "go,spec" || time.Since(f.CreatedAt) > time.Minute {
			t.Errorf("created %+v", f)
		}
		r = ada.call(t, "GET", "/v1/favorites/"+f.ID, "")
		var got favorite
		r.json(t, &got)
		if r.status != 200 || got.ID != f.ID || !got.CreatedAt.Equal(f.CreatedAt) {
			t.Errorf("GET = %d %s", r.status, r.body)
		}
		// Another user's favorite does not exist for them: 404, not 403.
		if r := bob.call(t, "GET", "/v1/favorites/"+f.ID, ""); r.status != 404 {
			t.Errorf("bob GET ada's favorite = %d, want 404", r.status)
		}
		if r := bob.call(t, "DELETE", "/v1/favorites/"+f.ID, ""); r.status != 404 {
			t.Errorf("bob DELETE ada's favorite = %d, want 404", r.status)
		}
		if r := ada.call(t, "DELETE", "/v1/favorites/"+f.ID, ""); r.status != 204 || len(r.body) != 0 {
			t.Errorf("DELETE = %d %q, want 204 and no body", r.status, r.body)
		}
		if r := ada.call(t, "DELETE", "/v1/favorites/"+f.ID, ""); r.status != 404 {
			t.Errorf("second DELETE = %d, want 404", r.status)
		}
		if r := ada.call(t, "GET", "/v1/favorites/"+f.ID, ""); r.status != 404 {
			t.Errorf("GET deleted = %d, want 404", r.status)
		}
		r = ada.call(t, "POST", "/v1/favorites", `{"name":"no tags","url":"http://example.com/"}`)
		r.json(t, &f)
		if r.status != 201 || f.Tags == nil || len(f.Tags) != 0 || !strings.Contains(string(r.body), `"tags":[]`) {
			t.Errorf("favorite without tags: %d %s, want tags []", r.status, r.body)
		}
	})

	t.Run("Validation", func(t *testing.T) {
		long := strings.Repeat("x", 201)
		tags11 := `["a","b","c","d","e","f","g","h","i","j","k"]`
		for _, tc := range []struct {
			body, field string
		}{
			{`{"url":"https://a.example"}`, "name"},
			{`{"name":"","url":"https://a.example"}`, "name"},
			{`{"name":"   ","url":"https://a.example"}`, "name"},
			{`{"name":"` + long + `","url":"https://a.example"}`, "name"},
			{`{"name":"a\u0000b","url":"https://a.example"}`, "name"},
			{`{"name":"ok"}`, "url"},
			{`{"name":"ok","url":"/relative"}`, "url"},
			{`{"name":"ok","url":"javascript:alert(1)"}`, "url"},
			{`{"name":"ok","url":"ftp://a.example/x"}`, "url"},
			{`{"name":"ok","url":"https://user:pw@a.example/"}`, "url"},
			{`{"name":"ok","url":"https://a.example","tags":` + tags11 + `}`, "tags"},
			{`{"name":"ok","url":"https://a.example","tags":[""]}`, "tags[0]"},
			{`{"name":"ok","url":"https://a.example","tags":["ok","` + strings.Repeat("t", 51) + `"]}`, "tags[1]"},
			{`{"name":42,"url":"https://a.example"}`, "name"},
			{`{"name":"ok","url":"https://a.example","tags":"go"}`, "tags"},
		} {
			r := ada.call(t, "POST", "/v1/favorites", tc.body)
			if r.status != 422 {
				t.Errorf("POST %s = %d, want 422", tc.body, r.status)
				continue
			}
			p := r.problem(t)
			params, _ := p["invalid-params"].([]any)
			if len(params) == 0 || params[0].(map[string]any)["name"] != tc.field {
				t.Errorf("POST %s: problem %v, want invalid-params naming %q", tc.body, p, tc.field)
			}
		}
		for _, tc := range []struct {
			body   string
			ctype  string
			status int
		}{
			{`{"name":`, "", 400},
			{`not json`, "", 400},
			{`{"name":"a","url":"https://a.example"} {}`, "", 400},
			{`{"name":"a","url":"https://a.example","extra":1}`, "", 400},
			{`[]`, "", 400},
			{`{"name":"a","url":"https://a.example"}`, "text/plain", 415},
			{`{"name":"` + strings.Repeat("a", 70<<10) + `"}`, "", 413},
		} {
			hdr := []string{}
			if tc.ctype != "" {
				hdr = []string{"Content-Type", tc.ctype}
			}
			r := ada.call(t, "POST", "/v1/favorites", tc.body, hdr...)
			if r.status != tc.status {
				t.Errorf("POST %.40q (%s) = %d %s, want %d", tc.body, tc.ctype, r.status, r.body, tc.status)
				continue
			}
			r.problem(t)
		}
	})

	t.Run("Pagination", func(t *testing.T) {
		c := newCustomer(t, s, "pages@example.com")
		const n = 25
		for i := range n {
			if r := c.call(t, "POST", "/v1/favorites", fmt.Sprintf(`{"name":"fav %d","url":"https://example.com/%d"}`, i, i)); r.status != 201 {
				t.Fatalf("POST = %d %s", r.status, r.body)
			}
		}
		// Walk pages of 10 while more favorites are inserted concurrently:
		// the walk sees each original favorite exactly once, newest first.
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range 10 {
				c.call(t, "POST", "/v1/favorites", fmt.Sprintf(`{"name":"new %d","url":"https://example.com/new"}`, i))
			}
		})
		var seen []string
		cursor := ""
		for pages := 0; ; pages++ {
			path := "/v1/favorites?limit=10"
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			r := c.call(t, "GET", path, "")
			if r.status != 200 {
				t.Fatalf("GET %s = %d %s", path, r.status, r.body)
			}
			var l favoriteList
			r.json(t, &l)
			for _, f := range l.Favorites {
				seen = append(seen, f.Name)
			}
			if l.NextCursor == nil {
				break
			}
			cursor = *l.NextCursor
			if pages == 0 {
				wg.Wait() // the inserts land between the first page and the rest
			}
		}
		var originals []string
		for _, name := range seen {
			if strings.HasPrefix(name, "fav ") {
				originals = append(originals, name)
			}
		}
		if len(originals) != n {
			t.Fatalf("walk saw %d original favorites, want %d: %v", len(originals), n, seen)
		}
		for i, name := range originals {
			if want := fmt.Sprintf("fav %d", n-1-i); name != want {
				t.Fatalf("walk order %v: position %d is %q, want %q", originals, i, name, want)
			}
		}
		var l favoriteList
		c.call(t, "GET", "/v1/favorites", "").json(t, &l)
		if len(l.Favorites) != 20 {
			t.Errorf("default page has %d favorites, want 20", len(l.Favorites))
		}
		for _, q := range []string{"limit=0", "limit=101", "limit=x", "limit=", "cursor=nope", "cursor=c1.AAAA", "cursor="} {
			r := c.call(t, "GET", "/v1/favorites?"+q, "")
			if r.status != 400 {
				t.Errorf("GET ?%s = %d, want 400", q, r.status)
				continue
			}
			r.problem(t)
		}
		// Bob's list never shows Ada's favorites.
		bob.call(t, "GET", "/v1/favorites?limit=100", "").json(t, &l)
		for _, f := range l.Favorites {
			if strings.HasPrefix(f.Name, "fav ") || f.Name == "Go spec" {
				t.Errorf("bob's list has %q", f.Name)
			}
		}
	})

	t.Run("Auth", func(t *testing.T) {
		cases := []struct {
			name      string
			hdr       []string
			path      string
			status    int
			challenge string
		}{
			{"missing", nil, "/v1/me", 401, `Bearer realm="favoritesapi"`},
			{"malformed", []string{"Authorization", "Bearer nope"}, "/v1/me", 401, `error="invalid_token"`},
			{"wrong secret", []string{"Authorization", "Bearer " + tamper(ada.token)}, "/v1/me", 401, `error="invalid_token"`},
			{"X-API-Key", []string{"X-API-Key", ada.token}, "/v1/me", 200, ""},
			{"query token", nil, "/v1/me?api_key=" + ada.token, 400, ""},
			{"basic scheme", []string{"Authorization", "Basic " + ada.token}, "/v1/me", 401, ""},
		}
		for _, tc := range cases {
			r := call(t, s.URL, "", "GET", tc.path, "", tc.hdr...)
			if r.status != tc.status {
				t.Errorf("%s: status %d %s, want %d", tc.name, r.status, r.body, tc.status)
			}
			if tc.challenge != "" && !strings.Contains(r.header.Get("WWW-Authenticate"), tc.challenge) {
				t.Errorf("%s: WWW-Authenticate %q, want %s", tc.name, r.header.Get("WWW-Authenticate"), tc.challenge)
			}
			if tc.status != 200 {
				r.problem(t)
			}
		}
		if r := ada.call(t, "DELETE", "/v1/me", ""); r.status != 405 || !strings.Contains(r.header.Get("Allow"), "GET") {
			t.Errorf("DELETE /v1/me = %d Allow %q, want 405 with GET allowed", r.status, r.header.Get("Allow"))
		}
		if r := ada.call(t, "GET", "/v1/nothing", ""); r.status != 404 {
			t.Errorf("GET /v1/nothing = %d, want 404", r.status)
		}
	})

	t.Run("Unsubscribed", func(t *testing.T) {
		// A user who never subscribed holds a valid key (issued by
		// support): they are on the free plan.
		r := call(t, s.URL, supportKey(t, s, "nosub@example.com"), "GET", "/v1/me", "")
		var me struct{ Plan struct{ Name, Status string } }
		if r.json(t, &me); r.status != 200 || me.Plan.Name != "free" || me.Plan.Status != "none" {
			t.Fatalf("unsubscribed key: %d %s, want 200 on the free plan", r.status, r.body)
		}
	})

	t.Run("Revoked", func(t *testing.T) {
		c := newCustomer(t, s, "revoke@example.com")
		tok, _ := apikey.Parse(c.token)
		if r := c.call(t, "GET", "/v1/me", ""); r.status != 200 {
			t.Fatalf("before revoking: %d", r.status)
		}
		if err := s.Keys().Revoke(context.Background(), tok.ID); err != nil {
			t.Fatal(err)
		}
		r := c.call(t, "GET", "/v1/me", "")
		if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), "invalid_token") {
			t.Errorf("revoked key: %d %q, want 401 invalid_token", r.status, r.header.Get("WWW-Authenticate"))
		}
	})
}

// tamper changes one character of the secret and recomputes nothing, so
// the checksum no longer matches.
func tamper(token string) string {
	b := []byte(token)
	i := len(b) - 10
	if b[i] == 'a' {
		b[i] = 'b'
	} else {
		b[i] = 'a'
	}
	return string(b)
}

func TestRateLimit(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{RateLimit: ratelimit.MustParseLimit("5/min")})
	c := newCustomer(t, s, "busy@example.com")
	other := newCustomer(t, s, "calm@example.com")
	for i := range 5 {
		r := c.call(t, "GET", "/v1/favorites", "")
		if r.status != 200 {
			t.Fatalf("request %d: %d %s", i+1, r.status, r.body)
		}
		if got := r.header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(4-i) {
			t.Errorf("request %d: X-RateLimit-Remaining %q, want %d", i+1, got, 4-i)
		}
	}
	r := c.call(t, "GET", "/v1/favorites", "")
	if r.status != 429 {
		t.Fatalf("6th request: %d, want 429", r.status)
	}
	if ra, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Errorf("Retry-After %q, want 1..60 seconds", r.header.Get("Retry-After"))
	}
	if p := r.problem(t); p["status"] != float64(429) {
		t.Errorf("problem %v", p)
	}
	if got := items(r.header, "RateLimit-Policy"); len(got) == 0 || got[0] != `"5/min";q=5;w=60` {
		t.Errorf("RateLimit-Policy %q", got)
	}
	if p := r.problem(t); p["code"] != "rate_limited" || p["plan"] != "hobby" {
		t.Errorf("problem %v, want code rate_limited on plan hobby", p)
	}
	// The limit is the user's: another customer is unaffected.
	if r := other.call(t, "GET", "/v1/me", ""); r.status != 200 {
		t.Errorf("another key: %d, want 200", r.status)
	}
}

func TestHealthz(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	r := call(t, s.URL, "", "GET", "/healthz", "")
	var body map[string]string
	r.json(t, &body)
	if r.status != 200 || body["status"] != "ok" {
		t.Errorf("GET /healthz = %d %s", r.status, r.body)
	}
	s.Store().Close()
	if r := call(t, s.URL, "", "GET", "/healthz", ""); r.status != 503 {
		t.Errorf("GET /healthz with the database closed = %d, want 503", r.status)
	}
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	r := call(t, s.URL, "", "GET", "/openapi.json", "")
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	r.json(t, &doc)
	if r.status != 200 || !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("GET /openapi.json = %d, openapi %q", r.status, doc.OpenAPI)
	}
	c := newCustomer(t, s, "spec@example.com")
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			m := strings.ToUpper(method)
			documented[m+" "+path] = true
			concrete := strings.ReplaceAll(path, "{id}", "0123456789abcdef")
			// Every documented operation exists: with a key it is neither
			// 404-for-the-route nor 405; without one it asks for a key.
			if r := call(t, s.URL, "", m, concrete, ""); r.status != 401 {
				t.Errorf("%s %s without a key = %d, want 401", m, path, r.status)
			}
			r := c.call(t, m, concrete, "")
			if r.status == 405 || (r.status == 404 && !strings.Contains(path, "{id}")) {
				t.Errorf("%s %s = %d: documented but not served", m, path, r.status)
			}
		}
	}
	// Every served API route is documented.
	for _, route := range []string{"GET /v1/me", "POST /v1/favorites", "GET /v1/favorites", "GET /v1/favorites/{id}", "DELETE /v1/favorites/{id}", "GET /v1/usage"} {
		if !documented[route] {
			t.Errorf("route %s is not in openapi.json", route)
		}
	}
	if len(documented) != 6 {
		t.Errorf("openapi.json documents %d operations, the API serves 6: %v", len(documented), documented)
	}
}

func TestSecurityHeaders(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	r := call(t, s.URL, "", "GET", "/", "")
	for h, want := range map[string]string{
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
	} {
		if got := r.header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `action="/signup"`) {
		t.Errorf("landing page: %d", r.status)
	}
	// Plain http (local development): no HSTS, which would pin localhost.
	if got := r.header.Get("Strict-Transport-Security"); got != "" {
		t.Errorf("Strict-Transport-Security = %q over http; want none", got)
	}
	// An https BASE_URL: every response tells browsers to stay on https.
	tls := startServer(t, sqliteDB, app.Config{BaseURL: "https://localhost:8443"})
	for _, path := range []string{"/", "/v1/me", "/static/style.css"} {
		r := call(t, tls.URL, "", "GET", path, "")
		if got := r.header.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=") {
			t.Errorf("GET %s with an https BASE_URL: Strict-Transport-Security = %q, want max-age=…", path, got)
		}
	}
}

// TestStaticServesOnlyStatic asks for the templates beside the static
// folder and for folder listings, in the encodings that slip past naive
// path checks: only the static files are served.
func TestStaticServesOnlyStatic(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	if r := call(t, s.URL, "", "GET", "/static/style.css", ""); r.status != http.StatusOK {
		t.Fatalf("GET /static/style.css = %d, want 200", r.status)
	}
	for _, path := range []string{
		"/static/", "/static", "/static/..%2ftemplates/layout.html", "/static/..%2Ftemplates%2Flayout.html",
		"/static/%2e%2e/templates/layout.html", "/static/%2e%2e%2ftemplates%2flayout.html",
		"/static/..%5ctemplates%5clayout.html", "/static/templates/layout.html", "/static/static/style.css",
		"/static//templates/layout.html", "/templates/layout.html", "/static/.%2e/templates/",
	} {
		r := call(t, s.URL, "", "GET", path, "")
		body := string(r.body)
		if r.status == http.StatusOK || strings.Contains(body, "{{") || strings.Contains(body, "<pre>") {
			t.Errorf("GET %s = %d; want no file and no listing:\n%.200s", path, r.status, body)
		}
	}
}

func TestMetrics(t *testing.T) {
	s := startServer(t, sqliteDB, app.Config{})
	c := newCustomer(t, s, "metrics@example.com")
	// The limiter also counts sign-in decisions and the first lookup of a
	// key: compare before and after a call with a key already verified.
	c.call(t, "GET", "/v1/me", "")
	allowed := regexp.MustCompile(`apikit_plan_allowed (\d+)\n`)
	before := allowed.FindStringSubmatch(metrics(t, s))
	c.call(t, "GET", "/v1/me", "")
	call(t, s.URL, "fav_test_nope", "GET", "/v1/me", "")
	body := metrics(t, s)
	if after := allowed.FindStringSubmatch(body); before == nil || after == nil || mustAtoi(t, after[1])-mustAtoi(t, before[1]) != 1 {
		t.Errorf("apikit_plan_allowed went from %v to %v; want one more for one API call", before, after)
	}
	for _, want := range []string{"apikit_keys_verified 2\n", "apikit_keys_malformed 1\n", "apikit_plan_quota_exceeded 0\n", "apikit_plan_usage_pending "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, c.token) {
		t.Error("/metrics shows a token")
	}
	// Whoever reads the metrics must not learn which addresses have accounts.
	if strings.Contains(body, "no_account") {
		t.Errorf("/metrics counts sign-in requests for unknown addresses:\n%s", body)
	}
	// Not on the public handler, from anywhere.
	for _, h := range [][]string{nil, {"X-Forwarded-For", "203.0.113.9"}, {"Forwarded", "for=203.0.113.9"}, {"X-Real-IP", "203.0.113.9"}} {
		if r := call(t, s.URL, "", "GET", "/metrics", "", h...); r.status != http.StatusNotFound {
			t.Errorf("GET /metrics on the public handler with %v: %d, want 404", h, r.status)
		}
	}
}

// metrics returns what the server's metrics listener would serve.
func metrics(t testing.TB, s *testServer) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics on the metrics handler: %d", rec.Code)
	}
	return rec.Body.String()
}

func mustAtoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// supportKey creates a user who never subscribed and issues them a key,
// as support would, and returns its token.
func supportKey(t testing.TB, s *testServer, email string) string {
	t.Helper()
	ctx := context.Background()
	uid, _, err := s.Store().CreateUser(ctx, email, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, tok, err := s.Keys().Issue(ctx, uid, apikey.IssueOptions{Name: "support"})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Reveal()
}
