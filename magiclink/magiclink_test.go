package magiclink_test

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/store"
)

func TestSignInThroughEmailedLink(t *testing.T) {
	for _, backend := range []struct {
		name string
		open func(testing.TB) *store.Store
	}{{"SQLite", testdb.SQLite}, {"PostgreSQL", testdb.Postgres}} {
		t.Run(backend.name, func(t *testing.T) {
			h := newHarness(t, setup{open: backend.open})
			ada := h.user("ada@example.com")
			c := browser(t)

			login := do(t, c, "GET", h.http.URL+"/login", nil)
			if login.status != 200 || !strings.Contains(login.body, `name="email"`) || strings.Contains(login.body, "<script") {
				t.Fatalf("GET /login = %d:\n%s", login.status, login.body)
			}
			r := postForm(t, c, h.http.URL+"/login", url.Values{"email": {"  Ada@Example.com "}})
			if r.status != 200 || !strings.Contains(r.body, "Check your email") {
				t.Fatalf("POST /login = %d:\n%s", r.status, r.body)
			}
			link := h.smtp.WaitLink(t, "ada@example.com")
			if !strings.HasPrefix(link, h.http.URL+"/login/verify?token=") {
				t.Errorf("link %q is not built from BaseURL", link)
			}

			// The email: a MIME multipart/alternative message with the
			// link in both parts, and the headers a mail server expects.
			msg := h.smtp.Messages()[0]
			if msg.ParseErr != nil {
				t.Fatalf("the email does not parse as MIME: %v\n%s", msg.ParseErr, msg.Data)
			}
			if msg.ContentType != "multipart/alternative" {
				t.Errorf("Content-Type %q, want multipart/alternative", msg.ContentType)
			}
			if !strings.Contains(msg.HTML, `href="`+link+`"`) {
				t.Errorf("the HTML part has no link to %s:\n%s", link, msg.HTML)
			}
			if msg.From != "login@example.com" || len(msg.To) != 1 || msg.To[0] != "ada@example.com" {
				t.Errorf("envelope from %q to %q", msg.From, msg.To)
			}
			if d, err := msg.Header.Date(); err != nil || d.IsZero() {
				t.Errorf("Date header %q: %v", msg.Header.Get("Date"), err)
			}
			if id := msg.Header.Get("Message-Id"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@example.com>") {
				t.Errorf("Message-ID %q", id)
			}
			if from, err := msg.Header.AddressList("From"); err != nil || from[0].Name != "FavoritesAPI" {
				t.Errorf("From header %q: %v", msg.Header.Get("From"), err)
			}
			if subj := msg.Header.Get("Subject"); subj != "FavoritesAPI: your sign-in link" {
				t.Errorf("Subject %q", subj)
			}

			// Following the link only shows a button.
			page := do(t, c, "GET", link, nil)
			if page.status != 200 || page.header.Get("Referrer-Policy") != "no-referrer" ||
				strings.Contains(page.body, "<script") || !strings.Contains(page.body, `action="/login/verify"`) {
				t.Fatalf("GET link = %d, Referrer-Policy %q:\n%s", page.status, page.header.Get("Referrer-Policy"), page.body)
			}
			if h.sessionCookie(c) != nil {
				t.Fatal("GET on the link set a session cookie; only the POST may sign in")
			}
			r = h.confirm(c, link, http.StatusSeeOther)
			if loc := r.header.Get("Location"); loc != "/app" {
				t.Errorf("after sign-in Location = %q, want /app", loc)
			}
			checkSessionCookie(t, r.header)
			if app := do(t, c, "GET", h.http.URL+"/app", nil); app.status != 200 || app.body != "hello ada@example.com (user "+itoa(ada)+")" {
				t.Errorf("GET /app signed in = %d %q", app.status, app.body)
			}
			if home := do(t, c, "GET", h.http.URL+"/", nil); home.body != "signed in as ada@example.com" {
				t.Errorf("LoadUser: %q", home.body)
			}

			// The link works once.
			again := h.confirm(browser(t), link, http.StatusBadRequest)
			if !strings.Contains(again.body, `href="/login"`) || !strings.Contains(again.body, "does not work") {
				t.Errorf("a used link's page does not offer a new link:\n%s", again.body)
			}
			// The mail arrived before its sender counted it: wait for the count.
			st := h.waitStats(func(s magiclink.Stats) bool { return s.MailSent == 1 })
			if st.MailSent != 1 || st.VerifySucceeded != 1 || st.VerifyFailed != 1 || st.SessionsCreated != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func checkSessionCookie(t *testing.T, h http.Header) {
	t.Helper()
	cookies := (&http.Response{Header: h}).Cookies()
	if len(cookies) != 1 {
		t.Fatalf("Set-Cookie %q; want one cookie", h.Values("Set-Cookie"))
	}
	ck := cookies[0]
	if ck.Name != "__Host-session" || !ck.HttpOnly || !ck.Secure || ck.SameSite != http.SameSiteLaxMode ||
		ck.Path != "/" || ck.Domain != "" || len(ck.Value) != 43 {
		t.Errorf("session cookie %q; want __Host-session, HttpOnly, Secure, SameSite=Lax, Path=/, no Domain, 43 chars", h.Get("Set-Cookie"))
	}
	if ck.MaxAge < int((10*24*time.Hour-time.Minute)/time.Second) {
		t.Errorf("session cookie Max-Age %d, want 10 days", ck.MaxAge)
	}
}

func TestNoEnumeration(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	compare := func(t *testing.T, send func(email string) response) {
		// Addresses of equal length, so that the pages, which show the
		// address, have equal lengths too.
		known, unknown := send("ada@example.com"), send("eve@example.com")
		if known.status != unknown.status {
			t.Errorf("status %d for a known address, %d for an unknown one", known.status, unknown.status)
		}
		mask := func(s string) string {
			return strings.NewReplacer("ada@example.com", "X", "eve@example.com", "X").Replace(s)
		}
		if mask(known.body) != mask(unknown.body) {
			t.Errorf("bodies differ apart from the address:\n%s\n---\n%s", known.body, unknown.body)
		}
		known.header.Del("Date")
		unknown.header.Del("Date")
		// The login cookie holds a fresh random nonce either way.
		nonce := regexp.MustCompile(`login=[A-Za-z0-9_-]{43}`)
		kh := nonce.ReplaceAllString(headerString(known.header), "login=…")
		uh := nonce.ReplaceAllString(headerString(unknown.header), "login=…")
		if kh != uh {
			t.Errorf("headers differ:\n%s\n---\n%s", kh, uh)
		}
	}
	t.Run("Form", func(t *testing.T) {
		compare(t, func(email string) response {
			return postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {email}})
		})
	})
	t.Run("JSON", func(t *testing.T) {
		compare(t, func(email string) response {
			r := do(t, browser(t), "POST", h.http.URL+"/login", strings.NewReader(`{"email":"`+email+`"}`), "Content-Type", "application/json")
			if r.status != http.StatusAccepted {
				t.Errorf("JSON POST /login = %d %s", r.status, r.body)
			}
			return r
		})
	})
	st := h.waitStats(func(s magiclink.Stats) bool { return s.MailSent+s.NoAccount == 4 })
	if st.MailSent != 2 || st.NoAccount != 2 {
		t.Errorf("stats %+v; want 2 emails to Ada and none to the unknown address", st)
	}
	for _, m := range h.smtp.Messages() {
		if m.To[0] != "ada@example.com" {
			t.Errorf("an email went to %v", m.To)
		}
	}
}

func headerString(h http.Header) string {
	var b strings.Builder
	_ = h.Write(&b)
	return b.String()
}

func TestSignupOption(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.AllowSignup = true }})
	c := browser(t)
	h.signIn(c, "new@example.com")
	if id, found, err := h.store.UserByEmail(t.Context(), "new@example.com"); err != nil || !found || id == 0 {
		t.Errorf("AllowSignup did not create the account: %d %v %v", id, found, err)
	}
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
		t.Errorf("GET /app = %d", r.status)
	}
}

func TestCrossOriginPostsRefused(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	c := browser(t)
	h.signIn(c, "ada@example.com")
	for _, path := range []string{"/login", "/login/verify", "/logout"} {
		for _, hdr := range [][]string{
			{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"},
			{"Origin", "https://evil.example"},
		} {
			r := postForm(t, c, h.http.URL+path, url.Values{"email": {"ada@example.com"}, "token": {"x"}}, hdr...)
			if r.status != http.StatusForbidden {
				t.Errorf("POST %s with %q = %d, want 403", path, hdr, r.status)
			}
		}
		// A same-origin browser post goes through.
		r := postForm(t, browser(t), h.http.URL+path, url.Values{"email": {"grace@example.com"}}, "Sec-Fetch-Site", "same-origin", "Origin", h.http.URL)
		if r.status == http.StatusForbidden {
			t.Errorf("same-origin POST %s = 403", path)
		}
	}
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
		t.Errorf("the cross-origin POST /logout signed Ada out: GET /app = %d", r.status)
	}
}

func TestExpiry(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.IdleTimeout = 2 * time.Hour }})
	h.user("ada@example.com")

	t.Run("Link", func(t *testing.T) {
		c := browser(t)
		postForm(t, c, h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
		link := h.smtp.WaitLink(t, "ada@example.com")
		h.clock.Advance(15 * time.Minute)
		r := h.confirm(c, link, http.StatusBadRequest)
		if !strings.Contains(r.body, `href="/login"`) {
			t.Errorf("the expired link's page has no way to ask for a new one:\n%s", r.body)
		}
	})

	t.Run("NewerLinkReplacesOlder", func(t *testing.T) {
		c := browser(t)
		postForm(t, c, h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
		first := h.smtp.WaitLink(t, "ada@example.com")
		postForm(t, c, h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
		second := h.smtp.WaitLink(t, "ada@example.com")
		h.confirm(c, first, http.StatusBadRequest)
		h.confirm(c, second, http.StatusSeeOther)
	})

	t.Run("SessionAbsolute", func(t *testing.T) {
		c := browser(t)
		h.signIn(c, "ada@example.com")
		// Activity every hour (within the idle timeout) does not extend
		// the ten days.
		for elapsed := time.Hour; elapsed < 10*24*time.Hour; elapsed += time.Hour {
			h.clock.Advance(time.Hour)
			if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
				t.Fatalf("after %v: GET /app = %d", elapsed, r.status)
			}
		}
		h.clock.Advance(time.Hour)
		r := do(t, c, "GET", h.http.URL+"/app", nil)
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
			t.Errorf("after 10 days: GET /app = %d to %q, want 303 /login", r.status, r.header.Get("Location"))
		}
	})

	t.Run("Idle", func(t *testing.T) {
		c := browser(t)
		h.signIn(c, "ada@example.com")
		h.clock.Advance(90 * time.Minute)
		if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
			t.Fatalf("after 90 idle minutes: %d", r.status)
		}
		h.clock.Advance(90 * time.Minute) // 90 minutes since the last use
		if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
			t.Fatalf("90 minutes after the last use: %d; activity must push the idle timeout", r.status)
		}
		h.clock.Advance(2 * time.Hour)
		if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != http.StatusSeeOther {
			t.Errorf("after 2 idle hours: %d, want 303", r.status)
		}
	})
}

func TestLoadUserThenRequireUser(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	c := browser(t)
	h.signIn(c, "ada@example.com")
	both := h.svc.LoadUser(h.svc.RequireUser(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := magiclink.UserFrom(r.Context())
		w.Write([]byte(u.Email))
	})))
	before := h.svc.Stats().SessionsLoaded
	req := httptest.NewRequest("GET", "/app", nil)
	req.AddCookie(h.sessionCookie(c))
	rec := httptest.NewRecorder()
	both.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.String() != "ada@example.com" {
		t.Errorf("LoadUser(RequireUser) = %d %q", rec.Code, rec.Body)
	}
	if n := h.svc.Stats().SessionsLoaded - before; n != 1 {
		t.Errorf("%d session lookups, want 1", n)
	}
	rec = httptest.NewRecorder()
	both.ServeHTTP(rec, httptest.NewRequest("GET", "/app", nil))
	if rec.Code != http.StatusSeeOther {
		t.Errorf("signed out: %d, want 303", rec.Code)
	}
	// A user put in the context by other means is not trusted by RequireUser.
	rec = httptest.NewRecorder()
	h.svc.RequireUser(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("GET", "/app", nil).WithContext(
		magiclink.NewContext(t.Context(), magiclink.User{ID: 1})))
	if rec.Code != http.StatusSeeOther {
		t.Errorf("RequireUser trusted a context user: %d", rec.Code)
	}
}

func TestLogout(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	c := browser(t)
	h.signIn(c, "ada@example.com")
	old := h.sessionCookie(c)
	r := postForm(t, c, h.http.URL+"/logout", nil)
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		t.Fatalf("POST /logout = %d to %q", r.status, r.header.Get("Location"))
	}
	if h.sessionCookie(c) != nil {
		t.Error("the cookie was not cleared")
	}
	// The old cookie, replayed, no longer works: the session is gone.
	replay := browser(t)
	u, _ := url.Parse(h.http.URL)
	replay.Jar.SetCookies(u, []*http.Cookie{{Name: old.Name, Value: old.Value, Path: "/", Secure: true}})
	if r := do(t, replay, "GET", h.http.URL+"/app", nil); r.status != http.StatusSeeOther {
		t.Errorf("GET /app with the logged-out cookie = %d, want 303", r.status)
	}
	if r := do(t, replay, "GET", h.http.URL+"/app", nil, "Accept", "application/json"); r.status != http.StatusUnauthorized ||
		r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("JSON GET /app with the logged-out cookie = %d %s, want a 401 problem", r.status, r.header.Get("Content-Type"))
	}
}

func TestRevokeSessions(t *testing.T) {
	h := newHarness(t, setup{})
	ada := h.user("ada@example.com")
	h.user("grace@example.com")
	laptop, phone, grace := browser(t), browser(t), browser(t)
	h.signIn(laptop, "ada@example.com")
	h.signIn(phone, "ada@example.com")
	h.signIn(grace, "grace@example.com")
	if err := h.svc.RevokeSessions(t.Context(), ada); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*http.Client{"laptop": laptop, "phone": phone} {
		if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != http.StatusSeeOther {
			t.Errorf("Ada's %s after RevokeSessions: %d, want 303", name, r.status)
		}
	}
	if r := do(t, grace, "GET", h.http.URL+"/app", nil); r.status != 200 {
		t.Errorf("Grace after Ada's RevokeSessions: %d, want 200", r.status)
	}
	if st := h.svc.Stats(); st.SessionsRevoked != 2 {
		t.Errorf("SessionsRevoked = %d, want 2", st.SessionsRevoked)
	}
}

func TestSessionFixation(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	c := browser(t)
	u, _ := url.Parse(h.http.URL)
	planted := strings.Repeat("A", 43)
	c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-session", Value: planted, Path: "/", Secure: true}})
	h.signIn(c, "ada@example.com")
	if got := h.sessionCookie(c); got == nil || got.Value == planted {
		t.Fatalf("after sign-in the cookie is %v; want a new session id", got)
	}
	// A signed-in browser that signs in again gets a new id, and the old
	// session ends.
	before := h.sessionCookie(c).Value
	h.signIn(c, "ada@example.com")
	if h.sessionCookie(c).Value == before {
		t.Error("signing in again kept the session id")
	}
	stale := browser(t)
	stale.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-session", Value: before, Path: "/", Secure: true}})
	if r := do(t, stale, "GET", h.http.URL+"/app", nil); r.status != http.StatusSeeOther {
		t.Errorf("the replaced session still works: %d", r.status)
	}
}

func TestConcurrentRedemptionThroughHandlers(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) {
		o.VerifyLimiter = magiclink.LimiterFunc(func(context.Context, string) (bool, error) { return true, nil })
	}})
	h.user("ada@example.com")
	postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
	link := h.smtp.WaitLink(t, "ada@example.com")
	token := link[strings.Index(link, "token=")+6:]
	const n = 30
	var (
		wg      sync.WaitGroup
		signins atomic.Int32
	)
	for range n {
		wg.Go(func() {
			r := postForm(t, browser(t), h.http.URL+"/login/verify", url.Values{"token": {token}})
			switch r.status {
			case http.StatusSeeOther:
				signins.Add(1)
			case http.StatusBadRequest:
			default:
				t.Errorf("POST /login/verify = %d", r.status)
			}
		})
	}
	wg.Wait()
	if got := signins.Load(); got != 1 {
		t.Errorf("%d of %d concurrent redemptions signed in; want 1", got, n)
	}
}

func TestRequestValidation(t *testing.T) {
	h := newHarness(t, setup{})
	for _, email := range []string{"", "ada", "ada@example.com\r\nBcc: x@evil.example", "Ada <ada@example.com>", "аda@example.com", "ada@exa\x00mple.com"} {
		r := postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {email}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "This is not an email address") || !strings.Contains(r.body, `name="email"`) {
			t.Errorf("form email=%q: %d\n%s", email, r.status, r.body)
		}
		body, _ := json.Marshal(map[string]string{"email": email})
		r = do(t, browser(t), "POST", h.http.URL+"/login", strings.NewReader(string(body)), "Content-Type", "application/json")
		var p struct {
			Status        int
			Code          string
			InvalidParams []struct{ Name, Reason string } `json:"invalid-params"`
		}
		if err := json.Unmarshal([]byte(r.body), &p); err != nil || r.status != 400 || p.Code != "invalid_email" ||
			len(p.InvalidParams) != 1 || p.InvalidParams[0].Name != "email" {
			t.Errorf("JSON email=%q: %d %s", email, r.status, r.body)
		}
	}
	r := postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {strings.Repeat("a", 1<<20) + "@example.com"}})
	if r.status != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MB email: %d, want 413", r.status)
	}
	r = do(t, browser(t), "POST", h.http.URL+"/login", strings.NewReader(`{"email":`), "Content-Type", "application/json")
	if r.status != http.StatusBadRequest || r.header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("malformed JSON: %d %s", r.status, r.header.Get("Content-Type"))
	}
	if st := h.svc.Stats(); st.MailQueued != 0 {
		t.Errorf("invalid requests queued %d emails", st.MailQueued)
	}
	// Garbage tokens are refused without a store lookup.
	if r := do(t, browser(t), "GET", h.http.URL+"/login/verify?token=short", nil); r.status != http.StatusBadRequest {
		t.Errorf("GET with a malformed token = %d, want 400", r.status)
	}
}

func TestRateLimits(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	for _, email := range []string{"ada@example.com", "nobody@example.com"} {
		for i := 1; i <= 6; i++ {
			r := postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {email}})
			want := http.StatusOK
			if i == 6 {
				want = http.StatusTooManyRequests
			}
			if r.status != want {
				t.Errorf("request %d for %s: %d, want %d", i, email, r.status, want)
			}
		}
	}
	c := browser(t)
	for i := 1; i <= 21; i++ {
		r := postForm(t, c, h.http.URL+"/login/verify", url.Values{"token": {strings.Repeat("x", 43)}})
		want := http.StatusBadRequest
		if i == 21 {
			want = http.StatusTooManyRequests
		}
		if r.status != want {
			t.Fatalf("verification %d: %d, want %d", i, r.status, want)
		}
	}
}

func TestSignInDirectly(t *testing.T) {
	h := newHarness(t, setup{})
	ada := h.user("ada@example.com")
	rec := httptest.NewRecorder()
	if err := h.svc.SignIn(t.Context(), rec, ada); err != nil {
		t.Fatal(err)
	}
	checkSessionCookie(t, rec.Header())
	c := browser(t)
	u, _ := url.Parse(h.http.URL)
	c.Jar.SetCookies(u, rec.Result().Cookies())
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
		t.Errorf("GET /app with SignIn's cookie = %d", r.status)
	}
	if err := h.svc.SignIn(t.Context(), httptest.NewRecorder(), 999999); !errors.Is(err, magiclink.ErrUnknownUser) {
		t.Errorf("SignIn(unknown user) = %v, want ErrUnknownUser", err)
	}
}

func TestInsecureCookies(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.InsecureCookies = true }})
	h.user("ada@example.com")
	c := browser(t)
	h.signIn(c, "ada@example.com")
	ck := h.sessionCookie(c)
	if ck == nil || ck.Name != "session" {
		t.Fatalf("cookie %v, want one named session", ck)
	}
	if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != 200 {
		t.Errorf("GET /app = %d", r.status)
	}
}

func TestTemplateOverrides(t *testing.T) {
	custom := template.Must(template.New("email.txt").Parse(`Sign in to {{.AppName}} & friends: {{.Link}}`))
	template.Must(custom.New("login.html").Parse(`<!doctype html><title>custom</title><form method="post" action="{{.LoginPath}}"><input name="email"></form>`))
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.Templates = custom }})
	h.user("ada@example.com")
	if r := do(t, browser(t), "GET", h.http.URL+"/login", nil); !strings.Contains(r.body, "<title>custom</title>") {
		t.Errorf("login page not overridden:\n%s", r.body)
	}
	postForm(t, browser(t), h.http.URL+"/login", url.Values{"email": {"ada@example.com"}})
	link := h.smtp.WaitLink(t, "ada@example.com")
	msg := h.smtp.Messages()[0]
	if want := "Sign in to FavoritesAPI & friends: " + link; msg.Text != want {
		t.Errorf("text part %q, want %q (unescaped)", msg.Text, want)
	}
	if !strings.Contains(msg.HTML, link) {
		t.Error("the default HTML part was not kept")
	}
}

// TestTemplateFrameOverride redefines only "head" and "foot": every
// default page keeps its content inside the new frame.
func TestTemplateFrameOverride(t *testing.T) {
	frame := template.Must(template.New("head").Parse(`<!doctype html><title>{{.Title}} · site</title><link rel="stylesheet" href="/site.css"><main>`))
	template.Must(frame.New("foot").Parse(`</main><footer>site footer</footer>`))
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.Templates = frame }})
	r := do(t, browser(t), "GET", h.http.URL+"/login", nil)
	for _, want := range []string{`href="/site.css"`, "site footer", `name="email"`, "Email me a sign-in link"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("login page has no %q:\n%s", want, r.body)
		}
	}
	if strings.Contains(r.body, "<style>") {
		t.Errorf("the default head is still there:\n%s", r.body)
	}
}

func TestOptionsValidation(t *testing.T) {
	st := testdb.SQLite(t)
	mailer := magiclink.NewConsoleMailer(&strings.Builder{})
	for name, o := range map[string]magiclink.Options{
		"NoBaseURL":      {Mailer: mailer},
		"NoMailer":       {BaseURL: "https://example.com"},
		"RelativeBase":   {BaseURL: "example.com", Mailer: mailer},
		"BaseWithQuery":  {BaseURL: "https://example.com/?a=b", Mailer: mailer},
		"BadFrom":        {BaseURL: "https://example.com", Mailer: mailer, From: "not an address"},
		"FromWithCRLF":   {BaseURL: "https://example.com", Mailer: mailer, From: "a@example.com\r\nBcc: b@example.com"},
		"RemoteLoginURL": {BaseURL: "https://example.com", Mailer: mailer, LoginPath: "//evil.example/login"},
		"BrokenTemplate": {BaseURL: "https://example.com", Mailer: mailer,
			Templates: template.Must(template.New("login.html").Parse(`{{template "undefined" .}}`))},
	} {
		if _, err := magiclink.New(st, o); !errors.Is(err, magiclink.ErrInvalidOptions) {
			t.Errorf("%s: New = %v, want ErrInvalidOptions", name, err)
		}
	}
}

func TestMemoryLimiter(t *testing.T) {
	c := newClock()
	l := magiclink.NewMemoryLimiter(5, time.Hour, c.Now)
	for i := range 7 {
		ok, err := l.Allow(t.Context(), "ada@example.com")
		if err != nil || ok != (i < 5) {
			t.Errorf("attempt %d: %v, %v", i+1, ok, err)
		}
	}
	if ok, _ := l.Allow(t.Context(), "grace@example.com"); !ok {
		t.Error("another key was limited")
	}
	c.Advance(12 * time.Minute) // one more allowed per 12 minutes
	if ok, _ := l.Allow(t.Context(), "ada@example.com"); !ok {
		t.Error("not refilled after 12 minutes")
	}
	if ok, _ := l.Allow(t.Context(), "ada@example.com"); ok {
		t.Error("refilled more than one")
	}
}

func TestCleanupDeletesExpiredRows(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) { o.CleanupInterval = 10 * time.Millisecond }})
	h.user("ada@example.com")
	c := browser(t)
	h.signIn(c, "ada@example.com")
	count := func() (n int) {
		if err := h.store.DB().Get(&n, `SELECT (SELECT COUNT(*) FROM sessions) + (SELECT COUNT(*) FROM login_tokens)`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The used token goes at once; the session stays until it expires.
	deadline := time.Now().Add(10 * time.Second)
	for count() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows left, want the session alone", count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.clock.Advance(10 * 24 * time.Hour)
	for count() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d rows left after the session expired", count())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
