package billing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/internal/stripemock"
)

func form(path string, v url.Values) *http.Request {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(v.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "text/html")
	return r
}

func mockClient(t *testing.T, base string) *billing.Client {
	t.Helper()
	c, err := billing.NewClient(billing.ClientOptions{Key: "sk_test_billing", URL: base, MaxNetworkRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestStripeMock runs Checkout creation, session retrieval and the portal
// against a real stripe-mock, which checks our request parameters.
func TestStripeMock(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, mockClient(t, stripemock.Start(t)), billing.Options{})

	w := h.do(form("/signup", url.Values{"email": {"New@Example.com"}}))
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "https://") {
		t.Fatalf("POST /signup = %d to %q:\n%s", w.Code, w.Header().Get("Location"), w.Body)
	}
	uid, found, err := st.UserByEmail(context.Background(), "new@example.com")
	if err != nil || !found {
		t.Fatalf("sign-up did not create the user: %v", err)
	}
	r := httptest.NewRequest(http.MethodPost, "/signup", strings.NewReader(`{"email":"json@example.com"}`))
	r.Header.Set("Content-Type", "application/json")
	w = h.do(r)
	var body struct{ URL string }
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &body) != nil || !strings.HasPrefix(body.URL, "https://") {
		t.Errorf("JSON sign-up = %d %s", w.Code, w.Body)
	}
	if w := h.do(form("/signup", url.Values{"email": {"not an address"}})); w.Code != http.StatusBadRequest {
		t.Errorf("invalid email = %d", w.Code)
	}

	// stripe-mock's session fixture is not complete: refused, nothing signed in.
	if w := h.do(httptest.NewRequest(http.MethodGet, "/billing/success?session_id=cs_test_123", nil)); w.Code != http.StatusGone {
		t.Errorf("success with an incomplete session = %d", w.Code)
	}
	if w := h.do(httptest.NewRequest(http.MethodGet, "/billing/success?session_id=../../v1/customers", nil)); w.Code != http.StatusGone {
		t.Errorf("success with a malformed id = %d", w.Code)
	}

	// Portal: needs a signed-in user with a customer.
	r = httptest.NewRequest(http.MethodPost, "/billing/portal", nil)
	r.Header.Set("Accept", "application/json")
	if w := h.do(r); w.Code != http.StatusUnauthorized {
		t.Errorf("portal without a user = %d", w.Code)
	}
	r = httptest.NewRequest(http.MethodPost, "/billing/portal", nil)
	r.Header.Set("X-Test-User", fmt.Sprint(uid))
	if w := h.do(r); w.Code != http.StatusNotFound {
		t.Errorf("portal without a customer = %d", w.Code)
	}
	if code := h.send(event{"evt_1", "customer.subscription.created", time.Now().Unix(), subObject("sub_1", "cus_1", "active", uid)}); code != 200 {
		t.Fatal(code)
	}
	r = httptest.NewRequest(http.MethodPost, "/billing/portal", nil)
	r.Header.Set("X-Test-User", fmt.Sprint(uid))
	if w := h.do(r); w.Code != http.StatusSeeOther || !strings.HasPrefix(w.Header().Get("Location"), "https://") {
		t.Errorf("portal = %d to %q: %s", w.Code, w.Header().Get("Location"), w.Body)
	}
	// An address with a live subscription is sent to sign in, not to a second Checkout.
	if w := h.do(form("/signup", url.Values{"email": {"new@example.com"}})); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Errorf("sign-up of a subscriber = %d to %q", w.Code, w.Header().Get("Location"))
	}
	// Cross-origin form posts are refused.
	r = form("/signup", url.Values{"email": {"x@example.com"}})
	r.Header.Set("Sec-Fetch-Site", "cross-site")
	if w := h.do(r); w.Code != http.StatusForbidden {
		t.Errorf("cross-site sign-up = %d", w.Code)
	}
}

// fakeStripe answers checkout session retrievals with the given session.
func fakeStripe(t *testing.T, session map[string]any, status int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if status != 200 {
			fmt.Fprint(w, `{"error":{"type":"api_error","message":"boom"}}`)
			return
		}
		_ = json.NewEncoder(w).Encode(session)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestSuccess(t *testing.T) {
	st := sqliteStore(t)
	uid := mustUser(t, st, "paid@example.com")
	session := func(signIn string) map[string]any {
		cs := checkoutObject(uid, "cus_9", "sub_9", "paid@example.com")
		cs["created"] = time.Now().Unix()
		cs["metadata"] = map[string]any{"apikit_sign_in": signIn}
		return cs
	}
	h := newHarness(t, st, mockClient(t, fakeStripe(t, session("1"), 200)), billing.Options{})
	get := func(h *harness) *httptest.ResponseRecorder {
		return h.do(httptest.NewRequest(http.MethodGet, "/billing/success?session_id=cs_test_sub_9", nil))
	}
	if w := get(h); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app" || len(h.signedIn) != 1 || h.signedIn[0] != uid {
		t.Fatalf("success = %d to %q, signed in %v", w.Code, w.Header().Get("Location"), h.signedIn)
	}
	if ok, _ := h.svc.Entitled(context.Background(), uid); !ok {
		t.Error("not entitled after the success page (before any webhook)")
	}
	if w := get(h); w.Code != http.StatusGone || len(h.signedIn) != 1 {
		t.Errorf("replay = %d, signed in %v; want 410 and no new sign-in", w.Code, h.signedIn)
	}
	// A checkout for an address the sign-up did not create does not sign in.
	h2 := newHarness(t, st, mockClient(t, fakeStripe(t, session("0"), 200)), billing.Options{})
	if w := get(h2); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" || len(h2.signedIn) != 0 {
		t.Errorf("success for an existing user = %d to %q, signed in %v", w.Code, w.Header().Get("Location"), h2.signedIn)
	}
}

func TestStripeError(t *testing.T) {
	var logs bytes.Buffer
	st := sqliteStore(t)
	h := newHarness(t, st, mockClient(t, fakeStripe(t, nil, 500)), billing.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	r := form("/signup", url.Values{"email": {"e@example.com"}})
	r.Header.Set("Accept", "application/json")
	w := h.do(r)
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Header().Get("Content-Type"), "problem+json") {
		t.Errorf("Stripe failure = %d %s", w.Code, w.Header().Get("Content-Type"))
	}
	if strings.Contains(logs.String(), "sk_test_billing") || !strings.Contains(logs.String(), "Checkout") {
		t.Errorf("logs: %s", logs.String())
	}
}

func TestDevMode(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, nil, billing.Options{DevMode: true})
	w := h.do(form("/signup", url.Values{"email": {"dev@example.com"}}))
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/billing/dev-checkout?session=") {
		t.Fatalf("dev sign-up = %d to %q", w.Code, loc)
	}
	w = h.do(httptest.NewRequest(http.MethodGet, loc, nil))
	page := w.Body.String()
	if w.Code != 200 || !strings.Contains(page, "DEV MODE — no payment taken") || strings.Contains(page, "<script") ||
		!strings.Contains(page, `<form method="post"`) {
		t.Fatalf("dev checkout page = %d:\n%s", w.Code, page)
	}
	u, _ := url.Parse(loc)
	post := form("/billing/dev-checkout", url.Values{"session": {u.Query().Get("session")}})
	if w := h.do(post); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app" || len(h.signedIn) != 1 {
		t.Fatalf("dev checkout = %d to %q, signed in %v", w.Code, w.Header().Get("Location"), h.signedIn)
	}
	uid, _, _ := st.UserByEmail(context.Background(), "dev@example.com")
	if ok, _ := h.svc.Entitled(context.Background(), uid); !ok || h.activated.Load() != 1 {
		t.Errorf("after dev checkout: entitled %v, activated %d", ok, h.activated.Load())
	}
	post = form("/billing/dev-checkout", url.Values{"session": {u.Query().Get("session")}})
	if w := h.do(post); w.Code != http.StatusGone {
		t.Errorf("replayed dev checkout = %d", w.Code)
	}

	live, _ := billing.NewClient(billing.ClientOptions{Key: "sk_live_x"})
	base := billing.Options{BaseURL: "http://localhost:8080", DevMode: true,
		SignIn:      func(context.Context, http.ResponseWriter, int64) error { return nil },
		CurrentUser: func(context.Context) (int64, bool) { return 0, false }}
	if _, err := billing.New(st, live, base); err == nil {
		t.Error("DevMode with a live key was accepted")
	}
	base.BaseURL = "https://favorites.example"
	if _, err := billing.New(st, nil, base); err == nil {
		t.Error("DevMode on a public host was accepted")
	}
	base.DevModeAnyHost = true
	if _, err := billing.New(st, nil, base); err != nil {
		t.Errorf("DevModeAnyHost: %v", err)
	}
	base.DevMode = false
	if _, err := billing.New(st, nil, base); err == nil {
		t.Error("no client outside dev mode was accepted")
	}
}
