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
	"github.com/apikit/apikit/internal/testkit/stripemock"
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
	if _, found, err := st.UserByEmail(context.Background(), "new@example.com"); err != nil || found {
		t.Fatalf("sign-up created a user before Checkout completed (found %v, %v)", found, err)
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

	// stripe-mock's session fixture is not complete: refused, no link sent.
	if w := h.do(httptest.NewRequest(http.MethodGet, "/billing/success?session_id=cs_test_123", nil)); w.Code != http.StatusGone {
		t.Errorf("success with an incomplete session = %d", w.Code)
	}
	if w := h.do(httptest.NewRequest(http.MethodGet, "/billing/success?session_id=../../v1/customers", nil)); w.Code != http.StatusGone {
		t.Errorf("success with a malformed id = %d", w.Code)
	}
	if l := h.sentLinks(); len(l) != 0 {
		t.Errorf("links sent for refused sessions: %v", l)
	}

	// Portal: needs a signed-in user with a customer.
	uid := mustUser(t, st, "new@example.com")
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

// TestSuccess: the success page creates no session; it sends a sign-in
// link to the account's address once per Checkout session and says where,
// or goes to the app for the browser already signed in as the buyer.
func TestSuccess(t *testing.T) {
	st := sqliteStore(t)
	uid := mustUser(t, st, "paid@example.com")
	session := func(meta map[string]any) map[string]any {
		cs := checkoutObject(uid, "cus_9", "sub_9", "paid@example.com")
		cs["created"] = time.Now().Unix()
		cs["metadata"] = meta
		return cs
	}
	get := func(h *harness, user string, accept string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/billing/success?session_id=cs_test_sub_9", nil)
		if user != "" {
			r.Header.Set("X-Test-User", user)
		}
		r.Header.Set("Accept", accept)
		return h.do(r)
	}
	h := newHarness(t, st, mockClient(t, fakeStripe(t, session(map[string]any{"apikit_user_id": fmt.Sprint(uid)}), 200)), billing.Options{})
	w := get(h, "", "text/html")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "We sent a sign-in link to <strong>p•••@example.com</strong>") ||
		w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("success = %d, cookie %q:\n%s", w.Code, w.Header().Get("Set-Cookie"), w.Body)
	}
	if l := h.sentLinks(); len(l) != 1 || l[0] != "paid@example.com" {
		t.Fatalf("links sent: %v; want one to paid@example.com", l)
	}
	if ok, _ := h.svc.Entitled(context.Background(), uid); !ok {
		t.Error("not entitled after the success page (before any webhook)")
	}
	// A replayed success URL sends nothing more.
	w = get(h, "", "application/json")
	var body struct{ Status, Email string }
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &body) != nil || body.Email != "p•••@example.com" || len(h.sentLinks()) != 1 {
		t.Errorf("replay = %d %s, links %v; want the page again and no new link", w.Code, w.Body, h.sentLinks())
	}
	// The buyer already signed in goes straight to the app.
	if w := get(h, fmt.Sprint(uid), "text/html"); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app" {
		t.Errorf("signed-in buyer = %d to %q", w.Code, w.Header().Get("Location"))
	}
	// Someone else signed in is not the buyer: a link, not the app.
	other := mustUser(t, st, "other@example.com")
	if w := get(h, fmt.Sprint(other), "text/html"); w.Code != http.StatusOK || w.Header().Get("Location") != "" {
		t.Errorf("another user's browser = %d to %q", w.Code, w.Header().Get("Location"))
	}

	// A session apikit did not create (no apikit metadata: another product
	// of the same account, or only the buyer's email) is refused: nothing
	// linked, no user, no link.
	foreign := session(map[string]any{})
	foreign["customer_details"] = map[string]any{"email": "stranger@example.com"}
	h2 := newHarness(t, st, mockClient(t, fakeStripe(t, foreign, 200)), billing.Options{})
	if w := get(h2, "", "text/html"); w.Code != http.StatusGone || len(h2.sentLinks()) != 0 {
		t.Errorf("foreign session = %d, links %v", w.Code, h2.sentLinks())
	}
	if _, found, _ := st.UserByEmail(context.Background(), "stranger@example.com"); found {
		t.Error("a user was created from customer_details.email")
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

// devSignUp posts /signup in dev mode and returns the dev session token.
func devSignUp(t *testing.T, h *harness, email, user string) string {
	t.Helper()
	r := form("/signup", url.Values{"email": {email}})
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	w := h.do(r)
	loc := w.Header().Get("Location")
	if w.Code != http.StatusSeeOther || !strings.HasPrefix(loc, "/billing/dev-checkout?session=") {
		t.Fatalf("dev sign-up = %d to %q", w.Code, loc)
	}
	u, _ := url.Parse(loc)
	return u.Query().Get("session")
}

func devComplete(h *harness, token, user string) *httptest.ResponseRecorder {
	r := form("/billing/dev-checkout", url.Values{"session": {token}})
	if user != "" {
		r.Header.Set("X-Test-User", user)
	}
	return h.do(r)
}

func TestDevMode(t *testing.T) {
	st := sqliteStore(t)
	h := newHarness(t, st, nil, billing.Options{DevMode: true})
	token := devSignUp(t, h, "dev@example.com", "")
	if _, found, _ := st.UserByEmail(context.Background(), "dev@example.com"); found {
		t.Fatal("dev sign-up created the user before the checkout completed")
	}
	w := h.do(httptest.NewRequest(http.MethodGet, "/billing/dev-checkout?session="+token, nil))
	page := w.Body.String()
	if w.Code != 200 || !strings.Contains(page, "DEV MODE — no payment taken") || strings.Contains(page, "<script") ||
		!strings.Contains(page, `<form method="post"`) {
		t.Fatalf("dev checkout page = %d:\n%s", w.Code, page)
	}
	w = devComplete(h, token, "")
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "d•••@example.com") || w.Header().Get("Set-Cookie") != "" {
		t.Fatalf("dev checkout = %d to %q:\n%s", w.Code, w.Header().Get("Location"), w.Body)
	}
	if l := h.sentLinks(); len(l) != 1 || l[0] != "dev@example.com" {
		t.Fatalf("links sent: %v", l)
	}
	uid, found, _ := st.UserByEmail(context.Background(), "dev@example.com")
	if ok, _ := h.svc.Entitled(context.Background(), uid); !found || !ok || h.activated.Load() != 1 {
		t.Errorf("after dev checkout: user %v, entitled %v, activated %d", found, ok, h.activated.Load())
	}
	if w := devComplete(h, token, ""); w.Code != http.StatusGone || len(h.sentLinks()) != 1 {
		t.Errorf("replayed dev checkout = %d, links %v", w.Code, h.sentLinks())
	}
	// A signed-in user buying for their own address goes to the app.
	self := mustUser(t, st, "self@example.com")
	token = devSignUp(t, h, "self@example.com", fmt.Sprint(self))
	if w := devComplete(h, token, fmt.Sprint(self)); w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/app" || len(h.sentLinks()) != 1 {
		t.Errorf("signed-in dev checkout = %d to %q, links %v", w.Code, w.Header().Get("Location"), h.sentLinks())
	}

	live, _ := billing.NewClient(billing.ClientOptions{Key: "sk_live_x"})
	base := billing.Options{BaseURL: "http://localhost:8080", DevMode: true,
		SendSignInLink: func(context.Context, string) error { return nil },
		CurrentUser:    func(context.Context) (int64, bool) { return 0, false }}
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
