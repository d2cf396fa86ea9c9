package magiclink_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apikit/apikit/magiclink"
)

// signInAs signs c in by code, with the given User-Agent.
func (h *harness) signInAs(c *http.Client, email, userAgent string) {
	h.t.Helper()
	_, code := h.askCode(c, email)
	if r := h.postCode(c, code, "User-Agent", userAgent); r.status != http.StatusSeeOther {
		h.t.Fatalf("code = %d:\n%s", r.status, r.body)
	}
}

// requestOf returns a request carrying c's cookies.
func (h *harness) requestOf(c *http.Client) *http.Request {
	r := httptest.NewRequest("GET", "/account", nil)
	u, _ := url.Parse(h.http.URL)
	for _, ck := range c.Jar.Cookies(u) {
		r.AddCookie(ck)
	}
	return r
}

var refRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestSessionsListAndEnd(t *testing.T) {
	h := newHarness(t, setup{})
	ada := h.user("ada@example.com")
	bob := h.user("bob@example.com")
	laptop, phone, tablet := browser(t), browser(t), browser(t)
	h.signInAs(laptop, "ada@example.com", "Laptop/1.0")
	signedIn := h.clock.Now()
	h.clock.Advance(time.Minute)
	h.signInAs(phone, "ada@example.com", "  Phone/2.0  "+strings.Repeat("x", 300))
	ctx := context.Background()

	got, err := h.svc.Sessions(ctx, h.requestOf(laptop), ada)
	if err != nil || len(got) != 2 {
		t.Fatalf("Sessions = %+v, %v; want 2", got, err)
	}
	if !strings.HasPrefix(got[0].UserAgent, "Phone/2.0") || len(got[0].UserAgent) != 256 || got[0].Current {
		t.Errorf("newest = %+v, want the phone's, capped at 256, not current", got[0])
	}
	if got[1].UserAgent != "Laptop/1.0" || got[1].IP != "127.0.0.1" || !got[1].Current || !got[1].CreatedAt.Equal(signedIn) {
		t.Errorf("oldest = %+v, want the laptop's, current", got[1])
	}
	for _, s := range got {
		if !refRe.MatchString(s.Ref) || strings.Contains(h.sessionCookie(laptop).Value+h.sessionCookie(phone).Value, s.Ref) {
			t.Errorf("ref %q is not an opaque 32-hex name", s.Ref)
		}
	}
	// SignedInAt is the session's start.
	var u magiclink.User
	h.svc.RequireUser(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { u, _ = magiclink.UserFrom(r.Context()) })).
		ServeHTTP(httptest.NewRecorder(), h.requestOf(laptop))
	if u.ID != ada || !u.SignedInAt.Equal(signedIn) {
		t.Errorf("User = %+v, want SignedInAt %v", u, signedIn)
	}

	// Only the owner ends a session by its ref.
	if found, err := h.svc.EndSession(ctx, bob, got[0].Ref); err != nil || found {
		t.Fatalf("bob ending ada's session: %v, %v", found, err)
	}
	if found, err := h.svc.EndSession(ctx, ada, "not-a-ref"); err != nil || found {
		t.Fatalf("unknown ref: %v, %v", found, err)
	}
	if found, err := h.svc.EndSession(ctx, ada, got[0].Ref); err != nil || !found {
		t.Fatalf("EndSession: %v, %v", found, err)
	}
	if r := do(t, phone, "GET", h.http.URL+"/app", nil); r.status != http.StatusSeeOther {
		t.Fatalf("the ended session still works: %d", r.status)
	}

	h.signInAs(phone, "ada@example.com", "Phone/2.0")
	h.signInAs(tablet, "ada@example.com", "Tablet/3.0")
	if n, err := h.svc.EndOtherSessions(ctx, h.requestOf(laptop), ada); err != nil || n != 2 {
		t.Fatalf("EndOtherSessions = %d, %v; want 2", n, err)
	}
	for name, c := range map[string]*http.Client{"phone": phone, "tablet": tablet} {
		if r := do(t, c, "GET", h.http.URL+"/app", nil); r.status != http.StatusSeeOther {
			t.Errorf("%s still signed in: %d", name, r.status)
		}
	}
	if r := do(t, laptop, "GET", h.http.URL+"/app", nil); r.status != http.StatusOK {
		t.Fatalf("the current session was ended: %d", r.status)
	}
	// Expired sessions are not listed.
	h.clock.Advance(11 * 24 * time.Hour)
	if got, err := h.svc.Sessions(ctx, nil, ada); err != nil || len(got) != 0 {
		t.Fatalf("Sessions after expiry = %+v, %v", got, err)
	}
}

func TestOnEmailChanged(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	h := newHarness(t, setup{wrap: withChanges, options: func(o *magiclink.Options) {
		o.OnEmailChanged = func(_ context.Context, userID int64, oldEmail, newEmail string) {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, oldEmail+" -> "+newEmail)
		}
	}})
	id := h.user("ada@example.com")
	if err := h.svc.RequestEmailChange(t.Context(), id, "ada@example.org"); err != nil {
		t.Fatal(err)
	}
	c := browser(t)
	token := h.changeToken(c, h.smtp.WaitLink(t, "ada@example.org"), id, "ada@example.com")
	if r := postForm(t, c, h.http.URL+"/login/email/verify", url.Values{"token": {token}}); r.status != http.StatusOK {
		t.Fatalf("confirm = %d", r.status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 || calls[0] != "ada@example.com -> ada@example.org" {
		t.Fatalf("OnEmailChanged calls = %q", calls)
	}
}

// ClearSessionCookie expires the cookie the Service sets, by its name and
// with its attributes, for applications that end a session themselves.
func TestClearSessionCookie(t *testing.T) {
	h := newHarness(t, setup{})
	rec := httptest.NewRecorder()
	h.svc.ClearSessionCookie(rec)
	cs := rec.Result().Cookies()
	if len(cs) != 1 {
		t.Fatalf("cookies %v, want one", cs)
	}
	c := cs[0]
	if c.Name != "__Host-session" || c.Value != "" || c.MaxAge >= 0 || c.Path != "/" || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie %+v: want __Host-session expired, Secure, HttpOnly, SameSite=Lax, Path=/", c)
	}
}
