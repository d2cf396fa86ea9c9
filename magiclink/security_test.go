package magiclink_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
)

// newService returns a Service over SQLite that discards its mail.
func newService(t *testing.T, opts magiclink.Options) *magiclink.Service {
	t.Helper()
	opts.BaseURL = "https://example.com"
	if opts.Mailer == nil {
		opts.Mailer = magiclink.NewConsoleMailer(io.Discard)
	}
	svc, err := magiclink.New(testdb.SQLite(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	return svc
}

func post(h http.Handler, path string, body url.Values, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "https://example.com"+path, strings.NewReader(body.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestEveryHandlerRefusesCrossOriginPosts mounts every exported handler on
// go-chi/chi and as a bare http.Handler, without Register and without any
// middleware: each must refuse cross-site POSTs itself.
func TestEveryHandlerRefusesCrossOriginPosts(t *testing.T) {
	svc := newService(t, magiclink.Options{})
	handlers := map[string]http.Handler{
		"/login":        svc.RequestHandler(),
		"/login/verify": svc.VerifyHandler(),
		"/logout":       svc.LogoutHandler(),
	}
	chiEach := chi.NewRouter()
	chiEach.Get("/login", svc.LoginPageHandler().ServeHTTP)
	chiEach.Post("/login", svc.RequestHandler().ServeHTTP)
	chiEach.Handle("/login/verify", svc.VerifyHandler())
	chiEach.Post("/logout", svc.LogoutHandler().ServeHTTP)
	chiMount := chi.NewRouter()
	chiMount.Mount("/login", svc.Handler())
	chiMount.Handle("/logout", svc.Handler())
	mounts := map[string]func(path string) http.Handler{
		"chi/each":  func(string) http.Handler { return chiEach },
		"chi/Mount": func(string) http.Handler { return chiMount },
		"bare":      func(path string) http.Handler { return handlers[path] },
		"Handler":   func(string) http.Handler { return svc.Handler() },
	}
	form := url.Values{"email": {"ada@example.com"}, "token": {strings.Repeat("x", 43)}}
	for name, mount := range mounts {
		for path := range handlers {
			h := mount(path)
			for _, hdr := range [][]string{
				{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"},
				{"Sec-Fetch-Site", "same-site", "Origin", "https://evil.example.com"},
				{"Origin", "https://evil.example"},
			} {
				if w := post(h, path, form, hdr...); w.Code != http.StatusForbidden {
					t.Errorf("%s: POST %s with %q = %d, want 403", name, path, hdr, w.Code)
				}
			}
			for _, hdr := range [][]string{
				{"Sec-Fetch-Site", "same-origin", "Origin", "https://example.com"},
				{"Origin", "https://example.com"},
				{}, // not a browser
			} {
				if w := post(h, path, form, hdr...); w.Code == http.StatusForbidden {
					t.Errorf("%s: same-origin POST %s with %q = 403: %s", name, path, hdr, w.Body)
				}
			}
		}
	}
	if st := svc.Stats(); st.CrossOrigin == 0 {
		t.Errorf("Stats().CrossOrigin = 0")
	}
}

// TestHandlerOnChi: Handler mounted with chi serves the whole flow's
// routes, and refuses what it does not serve through the ErrorHandler.
func TestHandlerOnChi(t *testing.T) {
	svc := newService(t, magiclink.Options{})
	r := chi.NewRouter()
	r.Mount("/login", svc.Handler())
	r.Handle("/logout", svc.Handler())
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", "https://example.com"+path, nil))
		return w
	}
	if w := get("/login"); w.Code != 200 || !strings.Contains(w.Body.String(), "<form") {
		t.Errorf("GET /login = %d:\n%s", w.Code, w.Body)
	}
	if w := get("/login/verify?token=" + strings.Repeat("A", 43)); w.Code != 200 {
		t.Errorf("GET /login/verify = %d", w.Code)
	}
	if w := get("/login/elsewhere"); w.Code != 404 {
		t.Errorf("GET /login/elsewhere = %d, want 404", w.Code)
	}
	if w := get("/logout"); w.Code != 405 || w.Header().Get("Allow") != "POST" {
		t.Errorf("GET /logout = %d, Allow %q; want 405, POST", w.Code, w.Header().Get("Allow"))
	}
	if w := post(r, "/login", url.Values{"email": {"ada@example.com"}}, "Sec-Fetch-Site", "same-origin"); w.Code != 200 {
		t.Errorf("POST /login = %d:\n%s", w.Code, w.Body)
	}
	if w := post(r, "/logout", nil, "Sec-Fetch-Site", "same-origin"); w.Code != 303 {
		t.Errorf("POST /logout = %d", w.Code)
	}
}

// TestErrorHandler: an application's ErrorHandler renders every refusal,
// the cross-origin 403 included, with the sentinel, status and headers.
func TestErrorHandler(t *testing.T) {
	var mu sync.Mutex
	var got []error
	svc := newService(t, magiclink.Options{
		SendLimiter: magiclink.NewMemoryLimiter(1, time.Hour, nil),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			mu.Lock()
			got = append(got, err)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/vnd.app+json")
			w.WriteHeader(magiclink.StatusCode(err))
			var e *magiclink.Error
			errors.As(err, &e)
			json.NewEncoder(w).Encode(map[string]string{"app_error": e.Code})
		},
	})
	h := svc.Handler()
	app := svc.RequireUser(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	same := []string{"Sec-Fetch-Site", "same-origin"}
	tests := []struct {
		name     string
		do       func() *httptest.ResponseRecorder
		sentinel error
		status   int
		header   string // that must be set
	}{
		{"CrossOrigin", func() *httptest.ResponseRecorder {
			return post(h, "/logout", nil, "Sec-Fetch-Site", "cross-site")
		}, magiclink.ErrCrossOrigin, 403, ""},
		{"Method", func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("PUT", "/login/verify", nil))
			return w
		}, magiclink.ErrMethodNotAllowed, 405, "Allow"},
		{"InvalidEmail", func() *httptest.ResponseRecorder {
			return post(h, "/login", url.Values{"email": {"not an address"}}, same...)
		}, magiclink.ErrInvalidEmail, 400, ""},
		{"FirstLink", func() *httptest.ResponseRecorder { // not a refusal
			return post(h, "/login", url.Values{"email": {"ada@example.com"}}, same...)
		}, nil, 200, ""},
		{"RateLimited", func() *httptest.ResponseRecorder {
			return post(h, "/login", url.Values{"email": {"ada@example.com"}}, same...)
		}, magiclink.ErrRateLimited, 429, "Retry-After"},
		{"InvalidToken", func() *httptest.ResponseRecorder {
			return post(h, "/login/verify", url.Values{"token": {strings.Repeat("x", 43)}}, same...)
		}, magiclink.ErrInvalidToken, 400, ""},
		{"NotFound", func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", "/nowhere", nil))
			return w
		}, magiclink.ErrNotFound, 404, ""},
		{"Unauthenticated", func() *httptest.ResponseRecorder {
			w := httptest.NewRecorder()
			app.ServeHTTP(w, httptest.NewRequest("GET", "/app", nil))
			return w
		}, magiclink.ErrUnauthenticated, 401, ""},
	}
	for _, tt := range tests {
		mu.Lock()
		got = nil
		mu.Unlock()
		w := tt.do()
		if w.Code != tt.status {
			t.Errorf("%s: status %d, want %d: %s", tt.name, w.Code, tt.status, w.Body)
		}
		if tt.sentinel == nil {
			if len(got) != 0 {
				t.Errorf("%s: ErrorHandler called with %v", tt.name, got)
			}
			continue
		}
		if len(got) != 1 || !errors.Is(got[0], tt.sentinel) {
			t.Errorf("%s: ErrorHandler got %v; want one error wrapping %v", tt.name, got, tt.sentinel)
			continue
		}
		if w.Header().Get("Content-Type") != "application/vnd.app+json" {
			t.Errorf("%s: not rendered by the application: %q", tt.name, w.Header().Get("Content-Type"))
		}
		if tt.header != "" && w.Header().Get(tt.header) == "" {
			t.Errorf("%s: %s not set before the ErrorHandler", tt.name, tt.header)
		}
		var e *magiclink.Error
		if errors.As(got[0], &e) && tt.status == 429 && e.RetryAfter <= 0 {
			t.Errorf("%s: RetryAfter %v", tt.name, e.RetryAfter)
		}
	}
}

// clientHeader keys clients by a header, so that one test can be many
// clients.
func clientHeader(r *http.Request) string { return r.Header.Get("X-Client") }

// TestVerifyCountsFailuresPerClient: only failed attempts spend a client's
// verification budget; a client over it is refused before its token is
// looked up, and other clients are not affected.
func TestVerifyCountsFailuresPerClient(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) {
		o.VerifyLimiter = magiclink.NewMemoryLimiter(2, time.Hour, o.Now)
		o.VerifyBlock = time.Minute
		o.ClientKey = clientHeader
	}})
	h.user("ada@example.com")
	verify := func(client, token string) response {
		return postForm(t, browser(t), h.http.URL+"/login/verify", url.Values{"token": {token}}, "X-Client", client)
	}
	linkToken := func() string {
		if r := postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {"ada@example.com"}}); r.status != 200 {
			t.Fatalf("POST /login = %d", r.status)
		}
		u, _ := url.Parse(h.smtp.WaitLink(t, "ada@example.com"))
		return u.Query().Get("token")
	}
	// Successes spend nothing: three sign-ins from one client with a
	// budget of two.
	for i := range 3 {
		if r := verify("office", linkToken()); r.status != http.StatusSeeOther {
			t.Fatalf("sign-in %d from one client: %d, want 303", i+1, r.status)
		}
	}
	// Two failures are within the budget; the third is one too many.
	for i := range 3 {
		want := http.StatusBadRequest
		if i == 2 {
			want = http.StatusTooManyRequests
		}
		if r := verify("office", strings.Repeat("x", 43)); r.status != want {
			t.Fatalf("failure %d: %d, want %d", i+1, r.status, want)
		}
	}
	// Blocked: even a valid token is refused, before it is looked up.
	token := linkToken()
	r := verify("office", token)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "60" {
		t.Fatalf("blocked client: %d, Retry-After %q; want 429, 60", r.status, r.header.Get("Retry-After"))
	}
	// Another client (another person behind the same proxy) is not
	// affected, and the token was not spent by the refused attempt.
	if r := verify("home", token); r.status != http.StatusSeeOther {
		t.Fatalf("another client with the unspent token: %d, want 303:\n%s", r.status, r.body)
	}
	// After the block, the limiter is asked again.
	h.clock.Advance(61 * time.Second)
	if r := verify("office", strings.Repeat("x", 43)); r.status != http.StatusTooManyRequests {
		t.Fatalf("failure after the block with an empty budget: %d, want 429", r.status)
	}
	if st := h.svc.Stats(); st.VerifyLimited != 3 || st.VerifySucceeded != 4 {
		t.Errorf("Stats() = %+v; want 3 limited, 4 succeeded", st)
	}
}

// blockingMailer holds every Send until released.
type blockingMailer struct {
	started chan struct{}
	release chan struct{}
}

func (b *blockingMailer) Send(ctx context.Context, m magiclink.Message) error {
	b.started <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// TestMailQueueNotFillableByOneClient: a client gets at most
// QueuePerClient places in the queue, and at most SendClientLimiter links;
// a full queue answers alike for every address.
func TestMailQueueNotFillableByOneClient(t *testing.T) {
	mailer := &blockingMailer{started: make(chan struct{}, 10), release: make(chan struct{})}
	svc := newService(t, magiclink.Options{
		Mailer: mailer, Workers: 1, QueueSize: 4, QueuePerClient: 2, AllowSignup: true,
		ClientKey: clientHeader,
	})
	defer close(mailer.release)
	h := svc.Handler()
	ask := func(client, email string) *httptest.ResponseRecorder {
		return post(h, "/login", url.Values{"email": {email}}, "X-Client", client, "Accept", "application/json")
	}
	if w := ask("a", "a0@example.com"); w.Code != 202 {
		t.Fatalf("first request: %d", w.Code)
	}
	<-mailer.started // the worker holds it; the queue is empty
	for i := 1; i <= 2; i++ {
		if w := ask("a", fmt.Sprintf("a%d@example.com", i)); w.Code != 202 {
			t.Fatalf("client a, request %d: %d", i+1, w.Code)
		}
	}
	w := ask("a", "a3@example.com")
	if w.Code != 429 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("client a over its share of the queue: %d, Retry-After %q; want 429", w.Code, w.Header().Get("Retry-After"))
	}
	for i := range 2 {
		if w := ask("b", fmt.Sprintf("b%d@example.com", i)); w.Code != 202 {
			t.Fatalf("client b, request %d: %d", i+1, w.Code)
		}
	}
	// The queue is full (4): every address gets the same answer.
	full1, full2 := ask("c", "ada@example.com"), ask("d", "nobody@example.com")
	if full1.Code != 503 || full1.Code != full2.Code || full1.Body.String() != full2.Body.String() ||
		headerString(full1.Header()) != headerString(full2.Header()) {
		t.Fatalf("full queue: %d %v %s / %d %v %s; want the same 503", full1.Code, full1.Header(), full1.Body, full2.Code, full2.Header(), full2.Body)
	}
	if st := svc.Stats(); st.ClientLimited != 1 || st.MailDropped != 2 {
		t.Errorf("Stats() = %+v; want 1 client-limited, 2 dropped", st)
	}
}

func TestSendLimitedPerClient(t *testing.T) {
	svc := newService(t, magiclink.Options{ClientKey: clientHeader, AllowSignup: true})
	h := svc.Handler()
	ask := func(client, email string) int {
		return post(h, "/login", url.Values{"email": {email}}, "X-Client", client).Code
	}
	// One client, 30 addresses an hour (the default), whatever the
	// addresses; the refused request spends no address's budget.
	for i := range 31 {
		want := 200
		if i == 30 {
			want = 429
		}
		if code := ask("sprayer", fmt.Sprintf("victim%d@example.com", i)); code != want {
			t.Fatalf("request %d from one client: %d, want %d", i+1, code, want)
		}
	}
	if code := ask("victim", "victim30@example.com"); code != 200 {
		t.Fatalf("the address's owner, from elsewhere: %d", code)
	}
	// An address never verified (sign-up) is limited like any other: 5 an
	// hour, from any number of clients.
	for i := range 6 {
		want := 200
		if i == 5 {
			want = 429
		}
		if code := ask(fmt.Sprint("client", i), "new@example.com"); code != want {
			t.Fatalf("sign-up link %d: %d, want %d", i+1, code, want)
		}
	}
}

func TestSendLink(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	ctx := context.Background()
	if err := h.svc.SendLink(ctx, "Ada@Example.com"); err != nil {
		t.Fatal(err)
	}
	link := h.smtp.WaitLink(t, "ada@example.com")
	c := browser(t)
	h.confirm(c, link, http.StatusSeeOther)
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
		t.Fatalf("after the link SendLink sent: GET /app = %d", r.status)
	}
	// The same per-address limit as POST /login: 5 an hour.
	for range 4 {
		if err := h.svc.SendLink(ctx, "ada@example.com"); err != nil {
			t.Fatal(err)
		}
	}
	err := h.svc.SendLink(ctx, "ada@example.com")
	var e *magiclink.Error
	if !errors.Is(err, magiclink.ErrRateLimited) || magiclink.StatusCode(err) != 429 || !errors.As(err, &e) || e.RetryAfter <= 0 {
		t.Fatalf("sixth link: %v; want ErrRateLimited with a RetryAfter", err)
	}
	if err := h.svc.SendLink(ctx, "not an address"); !errors.Is(err, magiclink.ErrInvalidEmail) {
		t.Fatalf("SendLink(not an address) = %v", err)
	}
	h.closed = true
	if err := h.svc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.SendLink(ctx, "grace@example.com"); !errors.Is(err, magiclink.ErrClosed) {
		t.Fatalf("SendLink after Close = %v; want ErrClosed", err)
	}
}

// TestMemoryLimiterFloodKeepsBudgets: filling the limiter with new keys
// does not reset an address's spent budget; newcomers are refused instead.
func TestMemoryLimiterFloodKeepsBudgets(t *testing.T) {
	c := newClock()
	l := magiclink.NewMemoryLimiter(5, time.Hour, c.Now)
	ctx := context.Background()
	for range 4 {
		l.Allow(ctx, "ada@example.com")
	}
	const flood = 100_010
	refused := 0
	for i := range flood {
		if ok, _ := l.Allow(ctx, fmt.Sprintf("stranger%d@example.com", i)); !ok {
			refused++
		}
	}
	if refused < 10 || l.Overflowed() != uint64(refused) {
		t.Fatalf("%d of %d new keys refused, Overflowed %d; want the ones past the capacity", refused, flood, l.Overflowed())
	}
	if ok, _ := l.Allow(ctx, "ada@example.com"); !ok {
		t.Fatal("ada's last link was refused")
	}
	if ok, _ := l.Allow(ctx, "ada@example.com"); ok {
		t.Fatal("the flood reset ada's budget")
	}
	// Once the strangers' buckets have refilled, they make room.
	c.Advance(time.Hour)
	if ok, _ := l.Allow(ctx, "newcomer@example.com"); !ok {
		t.Fatal("a new key was refused after the others had refilled")
	}
}
