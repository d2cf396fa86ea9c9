package magiclink_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/store"
)

// withChanges is the real store, which implements EmailChangeStore.
func withChanges(st *store.Store) magiclink.Store { return st }

// changeToken follows an email-change link as a browser does and returns
// the token of its confirmation form, checking that the page changed
// nothing.
func (h *harness) changeToken(c *http.Client, link string, userID int64, email string) string {
	h.t.Helper()
	page := do(h.t, c, "GET", link, nil)
	m := tokenInput.FindStringSubmatch(page.body)
	if page.status != http.StatusOK || m == nil || !strings.Contains(page.body, `action="/login/email/verify"`) {
		h.t.Fatalf("GET %s = %d, no confirmation form:\n%s", link, page.status, page.body)
	}
	h.wantEmail(userID, email)
	return m[1]
}

func (h *harness) wantEmail(userID int64, want string) {
	h.t.Helper()
	got, _, err := h.store.UserEmail(context.Background(), userID)
	if err != nil || got != want {
		h.t.Fatalf("the user's address is %q (%v), want %q", got, err, want)
	}
}

// The whole change: the link goes to the new address, the GET changes
// nothing, the POST changes the address and tells the old one (masked new
// address, no link), the link works once, and the new address signs in.
func TestEmailChange(t *testing.T) {
	h := newHarness(t, setup{wrap: withChanges})
	id := h.user("ada@example.com")
	if err := h.svc.RequestEmailChange(t.Context(), id, " Ada.Lovelace@Example.ORG "); err != nil {
		t.Fatal(err)
	}
	link := h.smtp.WaitLink(t, "ada.lovelace@example.org")
	if !strings.Contains(link, "/login/email/verify?token=") {
		t.Fatalf("link %s", link)
	}
	phone := browser(t) // another device, not signed in: the link is the proof
	token := h.changeToken(phone, link, id, "ada@example.com")
	r := postForm(t, phone, h.http.URL+"/login/email/verify", url.Values{"token": {token}})
	if r.status != http.StatusOK || !strings.Contains(r.body, "ada.lovelace@example.org") {
		t.Fatalf("POST = %d:\n%s", r.status, r.body)
	}
	h.wantEmail(id, "ada.lovelace@example.org")
	if h.sessionCookie(phone) != nil {
		t.Error("confirming the change signed the browser in")
	}

	notice := h.smtp.WaitMessage(t, "ada@example.com")
	if !strings.Contains(notice.Text, "changed to a•••@example.org") {
		t.Errorf("notice to the old address:\n%s", notice.Text)
	}
	if strings.Contains(notice.Text, "token=") || strings.Contains(notice.Text, "lovelace") {
		t.Errorf("the notice carries a link or the full new address:\n%s", notice.Text)
	}

	again := postForm(t, browser(t), h.http.URL+"/login/email/verify", url.Values{"token": {token}})
	if again.status != http.StatusBadRequest || !strings.Contains(again.body, "Ask for the change again") {
		t.Errorf("second use = %d:\n%s", again.status, again.body)
	}
	h.signIn(browser(t), "ada.lovelace@example.org")
	st := h.svc.Stats()
	if st.EmailChangesRequested != 1 || st.EmailChangesConfirmed != 1 || st.EmailChangesTaken != 0 {
		t.Errorf("stats %+v", st)
	}
}

// An address that belongs to another account: the request answers as for
// any address (no enumeration to the requester), the link is sent, and
// only its follower is refused, clearly; nothing changes and nobody is
// notified.
func TestEmailChangeTaken(t *testing.T) {
	h := newHarness(t, setup{wrap: withChanges})
	ada, grace := h.user("ada@example.com"), h.user("grace@example.com")
	if err := h.svc.RequestEmailChange(t.Context(), ada, "grace@example.com"); err != nil {
		t.Fatalf("a taken address answered differently: %v", err)
	}
	c := browser(t)
	token := h.changeToken(c, h.smtp.WaitLink(t, "grace@example.com"), ada, "ada@example.com")
	r := postForm(t, c, h.http.URL+"/login/email/verify", url.Values{"token": {token}})
	if r.status != http.StatusConflict || !strings.Contains(r.body, "Address not changed") ||
		!strings.Contains(r.body, "belongs to another account") {
		t.Fatalf("POST = %d:\n%s", r.status, r.body)
	}
	h.wantEmail(ada, "ada@example.com")
	h.wantEmail(grace, "grace@example.com")

	// JSON clients get the problem document; the token is spent either way.
	if err := h.svc.RequestEmailChange(t.Context(), ada, "grace@example.com"); err != nil {
		t.Fatal(err)
	}
	token = h.changeToken(c, h.smtp.WaitLink(t, "grace@example.com"), ada, "ada@example.com")
	j := do(t, c, "POST", h.http.URL+"/login/email/verify", strings.NewReader(`{"token":"`+token+`"}`), "Content-Type", "application/json")
	if j.status != http.StatusConflict || !strings.Contains(j.body, `"code":"email_taken"`) {
		t.Fatalf("JSON POST = %d:\n%s", j.status, j.body)
	}
	if n := len(h.smtp.Messages()); n != 2 {
		t.Errorf("%d messages sent, want the 2 links and no notice", n)
	}
	if st := h.svc.Stats(); st.EmailChangesTaken != 2 || st.EmailChangesConfirmed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestEmailChangeRefusals(t *testing.T) {
	h := newHarness(t, setup{wrap: withChanges})
	id := h.user("ada@example.com")
	ctx := t.Context()
	t.Run("ErrInvalidEmail", func(t *testing.T) {
		for _, addr := range []string{"not an address", "ADA@example.com"} {
			err := h.svc.RequestEmailChange(ctx, id, addr)
			if !errors.Is(err, magiclink.ErrInvalidEmail) || magiclink.StatusCode(err) != http.StatusBadRequest {
				t.Errorf("%q: %v", addr, err)
			}
		}
	})
	t.Run("ErrUnknownUser", func(t *testing.T) {
		if err := h.svc.RequestEmailChange(ctx, id+1000, "x@example.org"); !errors.Is(err, magiclink.ErrUnknownUser) {
			t.Errorf("got %v", err)
		}
	})
	t.Run("ErrRateLimited", func(t *testing.T) {
		// SendLimiter's default, 5 an hour, per user whatever the address.
		for i := range 6 {
			err := h.svc.RequestEmailChange(ctx, id, fmt.Sprintf("ada%d@example.org", i))
			if (err == nil) != (i < 5) || (i == 5 && !errors.Is(err, magiclink.ErrRateLimited)) {
				t.Errorf("request %d: %v", i+1, err)
			}
		}
	})
	t.Run("InvalidToken", func(t *testing.T) {
		c := browser(t)
		bad := strings.Repeat("A", 43)
		if r := do(t, c, "GET", h.http.URL+"/login/email/verify?token=short", nil); r.status != http.StatusBadRequest {
			t.Errorf("GET malformed = %d", r.status)
		}
		if r := postForm(t, c, h.http.URL+"/login/email/verify", url.Values{"token": {bad}}); r.status != http.StatusBadRequest {
			t.Errorf("POST unknown = %d", r.status)
		}
	})
	t.Run("CrossOrigin", func(t *testing.T) {
		r := postForm(t, browser(t), h.http.URL+"/login/email/verify", url.Values{"token": {strings.Repeat("A", 43)}},
			"Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		if r.status != http.StatusForbidden {
			t.Errorf("cross-origin POST = %d", r.status)
		}
	})
}

// Expired links are refused, and asking again voids the earlier link.
func TestEmailChangeExpiry(t *testing.T) {
	h := newHarness(t, setup{wrap: withChanges})
	id := h.user("ada@example.com")
	c := browser(t)
	if err := h.svc.RequestEmailChange(t.Context(), id, "ada@example.org"); err != nil {
		t.Fatal(err)
	}
	first := h.changeToken(c, h.smtp.WaitLink(t, "ada@example.org"), id, "ada@example.com")
	if err := h.svc.RequestEmailChange(t.Context(), id, "ada@example.org"); err != nil {
		t.Fatal(err)
	}
	second := h.changeToken(c, h.smtp.WaitLink(t, "ada@example.org"), id, "ada@example.com")
	if r := postForm(t, c, h.http.URL+"/login/email/verify", url.Values{"token": {first}}); r.status != http.StatusBadRequest {
		t.Errorf("replaced link = %d", r.status)
	}
	h.clock.Advance(15 * time.Minute)
	if r := postForm(t, c, h.http.URL+"/login/email/verify", url.Values{"token": {second}}); r.status != http.StatusBadRequest {
		t.Errorf("expired link = %d", r.status)
	}
	h.wantEmail(id, "ada@example.com")
}

// Without an EmailChangeStore, RequestEmailChange says so and links are
// invalid.
func TestEmailChangeUnsupported(t *testing.T) {
	// A store that has only magiclink.Store's methods.
	h := newHarness(t, setup{wrap: func(st *store.Store) magiclink.Store { return struct{ magiclink.Store }{st} }})
	id := h.user("ada@example.com")
	if err := h.svc.RequestEmailChange(t.Context(), id, "ada@example.org"); !errors.Is(err, magiclink.ErrEmailChangeUnsupported) {
		t.Fatalf("got %v", err)
	}
	r := postForm(t, browser(t), h.http.URL+"/login/email/verify", url.Values{"token": {strings.Repeat("A", 43)}})
	if r.status != http.StatusBadRequest {
		t.Errorf("POST = %d", r.status)
	}
}

// Handler serves the email-change link under a chi mount of /login.
func TestEmailChangeOnChi(t *testing.T) {
	h := newHarness(t, setup{wrap: withChanges})
	r := chi.NewRouter()
	r.Mount("/login", h.svc.Handler())
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/login/email/verify?token="+strings.Repeat("A", 43), nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "Confirm the new address") {
		t.Fatalf("GET = %d:\n%s", rec.Code, rec.Body)
	}
}
