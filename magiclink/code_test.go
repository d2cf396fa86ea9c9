package magiclink_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/internal/testkit/testdb"
	"github.com/apikit/apikit/magiclink"
)

var codeLine = regexp.MustCompile(`(?m)^([0-9]{8})\r?$`)

// askCode posts /login from c and returns the link and the code of the
// email that follows.
func (h *harness) askCode(c *http.Client, email string) (link, code string) {
	h.t.Helper()
	if r := postForm(h.t, c, h.http.URL+"/login", url.Values{"email": {email}}); r.status != http.StatusOK {
		h.t.Fatalf("POST /login = %d:\n%s", r.status, r.body)
	} else if !strings.Contains(r.body, `action="/login/code"`) {
		h.t.Fatalf("the sent page has no code form:\n%s", r.body)
	}
	m := h.smtp.WaitMessage(h.t, email)
	link = linkRe.FindString(m.Text)
	cm := codeLine.FindStringSubmatch(m.Text)
	if link == "" || cm == nil {
		h.t.Fatalf("the email has no link or no code:\n%s", m.Text)
	}
	return link, cm[1]
}

var linkRe = regexp.MustCompile(`https?://[^\s"<>]+/login/verify\?token=[A-Za-z0-9_-]+`)

func (h *harness) postCode(c *http.Client, code string, hdr ...string) response {
	h.t.Helper()
	return postForm(h.t, c, h.http.URL+"/login/code", url.Values{"code": {code}}, hdr...)
}

func wrongCode(code string) string {
	if code == "00000000" {
		return "11111111"
	}
	return "00000000"
}

func TestCodeSignsInTheAskingBrowser(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	laptop, phone := browser(t), browser(t)
	_, code := h.askCode(laptop, "ada@example.com")
	// The code alone, in a browser that did not ask, is refused.
	if r := h.postCode(phone, code); r.status != http.StatusBadRequest || h.sessionCookie(phone) != nil {
		t.Fatalf("code in another browser = %d, want 400 and no session:\n%s", r.status, r.body)
	}
	r := h.postCode(laptop, strings.Join([]string{code[:4], code[4:]}, " "))
	if r.status != http.StatusSeeOther || h.sessionCookie(laptop) == nil {
		t.Fatalf("code in the asking browser = %d, want 303 and a session:\n%s", r.status, r.body)
	}
	if got := do(t, laptop, "GET", h.http.URL+"/app", nil); got.status != http.StatusOK || !strings.Contains(got.body, "ada@example.com") {
		t.Fatalf("GET /app after the code = %d %s", got.status, got.body)
	}
	// Spent: the same code again, and the link, fail.
	if r := h.postCode(laptop, code); r.status != http.StatusBadRequest {
		t.Fatalf("the code twice = %d, want 400", r.status)
	}
	if strings.Contains(h.logs.String(), code) {
		t.Fatal("the code appears in the logs")
	}
}

func TestCodeJSON(t *testing.T) {
	h := newHarness(t, setup{})
	id := h.user("ada@example.com")
	c := browser(t)
	_, code := h.askCode(c, "ada@example.com")
	r := do(t, c, "POST", h.http.URL+"/login/code", strings.NewReader(`{"code":"`+code+`"}`), "Content-Type", "application/json")
	var body struct {
		UserID int64  `json:"user_id"`
		Email  string `json:"email"`
	}
	if r.status != http.StatusOK || json.Unmarshal([]byte(r.body), &body) != nil || body.UserID != id || body.Email != "ada@example.com" {
		t.Fatalf("JSON code = %d %s", r.status, r.body)
	}
	r = do(t, c, "POST", h.http.URL+"/login/code", strings.NewReader(`{"code":"`+code+`"}`), "Content-Type", "application/json")
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, `"invalid_code"`) {
		t.Fatalf("spent JSON code = %d %s, want 400 invalid_code", r.status, r.body)
	}
}

func TestFiveWrongCodesVoidTheSignIn(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	c := browser(t)
	link, code := h.askCode(c, "ada@example.com")
	for i := 1; i <= magiclink.MaxCodeAttempts; i++ {
		r := h.postCode(c, wrongCode(code))
		if r.status != http.StatusBadRequest {
			t.Fatalf("wrong code %d = %d, want 400", i, r.status)
		}
		if i == magiclink.MaxCodeAttempts && !strings.Contains(r.body, "void") {
			t.Fatalf("the last wrong code does not say the sign-in is void:\n%s", r.body)
		}
	}
	if r := h.postCode(c, code); r.status != http.StatusBadRequest || h.sessionCookie(c) != nil {
		t.Fatalf("the right code after 5 wrong ones = %d, want 400", r.status)
	}
	h.confirm(c, link, http.StatusBadRequest) // the link is void too
}

func TestLinkAndCodeAreExclusive(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	t.Run("LinkFirst", func(t *testing.T) {
		c := browser(t)
		link, code := h.askCode(c, "ada@example.com")
		h.confirm(browser(t), link, http.StatusSeeOther)
		if r := h.postCode(c, code); r.status != http.StatusBadRequest || h.sessionCookie(c) != nil {
			t.Fatalf("the code after the link = %d, want 400", r.status)
		}
	})
	t.Run("CodeFirst", func(t *testing.T) {
		c := browser(t)
		link, code := h.askCode(c, "ada@example.com")
		if r := h.postCode(c, code); r.status != http.StatusSeeOther {
			t.Fatalf("code = %d", r.status)
		}
		h.confirm(browser(t), link, http.StatusBadRequest)
	})
}

func TestCodeFailuresCountPerClient(t *testing.T) {
	h := newHarness(t, setup{options: func(o *magiclink.Options) {
		o.VerifyLimiter = magiclink.NewMemoryLimiter(3, time.Minute, nil)
	}})
	c := browser(t)
	var last response
	for range 4 {
		last = h.postCode(c, "12345678")
	}
	if last.status != http.StatusTooManyRequests {
		t.Fatalf("the 4th failed code = %d, want 429", last.status)
	}
}

func TestCodeRefusals(t *testing.T) {
	h := newHarness(t, setup{})
	c := browser(t)
	if r := do(t, c, "GET", h.http.URL+"/login/code", nil); r.status != http.StatusMethodNotAllowed {
		t.Fatalf("GET /login/code = %d, want 405", r.status)
	}
	if r := h.postCode(c, "12345678", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); r.status != http.StatusForbidden {
		t.Fatalf("cross-origin code = %d, want 403", r.status)
	}
	// Handler mounts it as well.
	rec := httptest.NewRecorder()
	h.svc.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/login/code", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("Handler GET /login/code = %d, want 405", rec.Code)
	}
}

// SendLink's email (no browser asked) carries no code.
func TestSendLinkHasNoCode(t *testing.T) {
	h := newHarness(t, setup{})
	h.user("ada@example.com")
	if err := h.svc.SendLink(context.Background(), "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	m := h.smtp.WaitMessage(t, "ada@example.com")
	if codeLine.MatchString(m.Text) || strings.Contains(m.Text, "code") {
		t.Fatalf("SendLink's email has a code:\n%s", m.Text)
	}
}

// FuzzLoginCode posts arbitrary bodies, with and without a login cookie,
// to POST /login/code: the answer is always a deliberate 400, 413 or 429,
// never a sign-in and never a 5xx.
func FuzzLoginCode(f *testing.F) {
	for _, seed := range []struct {
		ct, body, cookie string
	}{
		{"application/x-www-form-urlencoded", "code=12345678", ""},
		{"application/x-www-form-urlencoded", "code=1234+5678", strings.Repeat("A", 43)},
		{"application/x-www-form-urlencoded", "code=%ff%fe&code=1", "x"},
		{"application/json", `{"code":"12345678"}`, strings.Repeat("A", 43)},
		{"application/json", `{"code":12345678}`, ""},
		{"application/json", `{"code":"１２３４５６７８"}`, ""},
		{"text/plain", "12345678", ""},
	} {
		f.Add(seed.ct, seed.body, seed.cookie)
	}
	svc, err := magiclink.New(testdb.SQLite(f), magiclink.Options{
		BaseURL:       "https://api.example.com",
		Mailer:        magiclink.MailerFunc(func(context.Context, magiclink.Message) error { return nil }),
		VerifyLimiter: magiclink.LimiterFunc(func(context.Context, string) (bool, error) { return true, nil }),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = svc.Close(context.Background()) })
	h := svc.CodeHandler()
	f.Fuzz(func(t *testing.T, contentType, body, cookie string) {
		req := httptest.NewRequest("POST", "/login/code", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "__Host-login", Value: url.QueryEscape(cookie)})
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		default:
			t.Fatalf("status %d for %q %q (cookie %q):\n%s", rec.Code, contentType, body, cookie, rec.Body)
		}
		for _, c := range rec.Result().Cookies() {
			if c.Name == "__Host-session" && c.MaxAge > 0 {
				t.Fatal("a session was started")
			}
		}
	})
}
