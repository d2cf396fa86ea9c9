package billing

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/apikit/apikit/internal/problem"
	"github.com/stripe/stripe-go/v76"
)

//go:embed templates/*.html
var templateFS embed.FS

var pages = template.Must(template.ParseFS(templateFS, "templates/*.html"))

// maxFormBytes caps sign-up and dev-checkout request bodies.
const maxFormBytes = 4 << 10

// SuccessMaxAge is how long after its creation a Checkout session may
// still sign its user in on the success page.
const SuccessMaxAge = 24 * time.Hour

// CheckoutHandler returns the sign-up endpoint (POST). It takes an email
// from a form field or a JSON body {"email": "…"}, finds or creates the
// user and answers 303 See Other to a Stripe Checkout session for
// [Options.PriceID] (JSON clients get {"url": "…"} instead). In dev mode the
// session is the local [Service.DevCheckoutHandler] page.
//
// A user who already has an entitling subscription is not sent to Checkout
// again: they go to [Options.AppPath] if signed in, else to
// [Options.SignInURL]. That reveals to whoever types an address that it has
// a subscription; the alternative, a second subscription, is worse.
//
// It is wrapped in [http.CrossOriginProtection].
func (s *Service) CheckoutHandler() http.Handler {
	return s.cop.Handler(http.HandlerFunc(s.serveCheckout))
}

func (s *Service) serveCheckout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, r, http.StatusMethodNotAllowed, ErrBadRequest)
		return
	}
	ctx := r.Context()
	email, err := readEmail(w, r)
	if err != nil {
		s.fail(w, r, StatusCode(err), err)
		return
	}
	uid, created, err := s.store.EnsureUser(ctx, email)
	if err != nil {
		s.stats.checkoutErrors.Add(1)
		s.opts.Logger.Error("billing: sign-up: storing the user", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	cur, signedIn := s.opts.CurrentUser(ctx)
	self := signedIn && cur == uid
	subs, err := s.store.Subscriptions(ctx, uid)
	if err != nil {
		s.stats.checkoutErrors.Add(1)
		s.opts.Logger.Error("billing: sign-up: reading subscriptions", "user", uid, "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	if sub, ok := s.primary(subs); ok && sub.Entitling(s.opts.Now(), s.opts.PastDueGrace) {
		if self {
			s.redirect(w, r, s.opts.AppPath)
		} else {
			s.redirect(w, r, s.opts.SignInURL)
		}
		return
	}
	// The success page signs in only a user this sign-up created, or the
	// user who is signed in already: otherwise anyone could pay for (or, in
	// dev mode, click through) a checkout for someone else's address and
	// be signed in to their account.
	signIn := created || self

	if s.opts.DevMode {
		token, err := s.newDevSession(devSession{userID: uid, email: email, signIn: signIn})
		if err != nil {
			s.stats.checkoutErrors.Add(1)
			s.fail(w, r, http.StatusServiceUnavailable, err)
			return
		}
		s.stats.checkouts.Add(1)
		s.redirect(w, r, s.opts.DevCheckoutPath+"?session="+url.QueryEscape(token))
		return
	}
	req := checkoutRequest{
		UserID: uid, Email: email, PriceID: s.opts.PriceID, SignIn: signIn,
		SuccessURL: s.opts.BaseURL + s.opts.SuccessPath + "?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:  s.opts.CancelURL,
	}
	if self {
		// Only the signed-in owner reuses the Stripe customer (and so its
		// saved details); an anonymous sign-up gets a customer of its own.
		if sub, ok := s.primary(subs); ok {
			req.CustomerID = sub.CustomerID
		} else if cs, err := s.store.Customers(ctx, uid); err == nil && len(cs) > 0 {
			req.CustomerID = cs[0]
		}
	}
	cs, err := s.client.createCheckout(ctx, req)
	if err != nil || cs.URL == "" {
		s.stats.checkoutErrors.Add(1)
		s.opts.Logger.Error("billing: creating a Checkout session", append([]any{"user", uid}, stripeErrorSummary(err)...)...)
		s.fail(w, r, http.StatusBadGateway, ErrStripe)
		return
	}
	s.stats.checkouts.Add(1)
	s.redirect(w, r, cs.URL)
}

// readEmail reads and validates the sign-up email.
func readEmail(w http.ResponseWriter, r *http.Request) (string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	var raw string
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		var body struct {
			Email string `json:"email"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			return "", fmt.Errorf("%w: the body is not a JSON object with an email", ErrBadRequest)
		}
		raw = body.Email
	} else {
		if err := r.ParseForm(); err != nil {
			return "", fmt.Errorf("%w: unreadable form", ErrBadRequest)
		}
		raw = r.PostForm.Get("email")
	}
	if strings.TrimSpace(raw) == "" {
		return "", ErrInvalidEmail
	}
	email, err := emailaddr.Normalize(raw)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidEmail, err)
	}
	return email, nil
}

// SuccessHandler returns the page Stripe Checkout returns to (GET, with
// ?session_id=cs_…). It retrieves the session from Stripe and checks that
// it is complete, in subscription mode, at most [SuccessMaxAge] old and
// belongs to a known user; it records the session's provisional
// subscription state (the webhook may not have arrived yet), consumes the
// session id — each signs in once, replays get 410 Gone — and then signs
// the user in with [Options.SignIn] and answers 303 to [Options.AppPath].
// Users the sign-up did not create (see [Service.CheckoutHandler]) are sent
// to [Options.SignInURL] instead.
func (s *Service) SuccessHandler() http.Handler {
	return http.HandlerFunc(s.serveSuccess)
}

func (s *Service) serveSuccess(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	refuse := func(why string) {
		s.stats.successRefused.Add(1)
		s.opts.Logger.Info("billing: success page refused", "reason", why)
		s.fail(w, r, http.StatusGone, ErrCheckoutInvalid)
	}
	id := r.URL.Query().Get("session_id")
	if s.opts.DevMode || !validSessionID(id) {
		refuse("no valid session id")
		return
	}
	cs, err := s.client.checkoutSession(ctx, id)
	if err != nil {
		var se *stripe.Error
		if errors.As(err, &se) && se.HTTPStatusCode == http.StatusNotFound {
			refuse("unknown session")
			return
		}
		s.opts.Logger.Error("billing: retrieving a Checkout session", stripeErrorSummary(err)...)
		s.fail(w, r, http.StatusBadGateway, ErrStripe)
		return
	}
	now := s.opts.Now()
	switch {
	case cs.Status != stripe.CheckoutSessionStatusComplete:
		refuse("session not complete")
		return
	case cs.Mode != stripe.CheckoutSessionModeSubscription:
		refuse("not a subscription session")
		return
	case now.Sub(time.Unix(cs.Created, 0)) > SuccessMaxAge:
		refuse("session too old")
		return
	}
	uid, err := strconv.ParseInt(cs.ClientReferenceID, 10, 64)
	if err != nil || uid <= 0 {
		refuse("session of no user")
		return
	}
	if _, found, err := s.store.UserEmail(ctx, uid); err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	} else if !found {
		refuse("session of an unknown user")
		return
	}
	if cs.Customer != nil && cs.Customer.ID != "" {
		ev := Event{ID: cs.ID, Type: "checkout.session.success_page", Created: time.Unix(cs.Created, 0), ReceivedAt: now}
		ch := s.provisional(uid, cs)
		a, err := s.store.ApplyEvent(ctx, ev, ch)
		if err != nil {
			s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
			return
		}
		if !a.Duplicate {
			s.afterApply(ctx, ch, a)
		}
	}
	if cs.Metadata[metaSignIn] != "1" {
		s.redirect(w, r, s.opts.SignInURL)
		return
	}
	ok, err := s.store.ConsumeCheckoutSession(ctx, cs.ID, uid, now)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	if !ok {
		refuse("session already used")
		return
	}
	s.signIn(w, r, uid)
}

func (s *Service) signIn(w http.ResponseWriter, r *http.Request, uid int64) {
	if err := s.opts.SignIn(r.Context(), w, uid); err != nil {
		s.opts.Logger.Error("billing: signing in after checkout", "user", uid, "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	s.stats.signIns.Add(1)
	s.redirect(w, r, s.opts.AppPath)
}

func validSessionID(id string) bool {
	if !strings.HasPrefix(id, "cs_") || len(id) > 255 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// PortalHandler returns the customer-portal endpoint (GET or POST): for the
// signed-in user ([Options.CurrentUser]) it creates a Stripe Billing Portal
// session that returns to [Options.AppPath], and answers 303 to it. Without
// a signed-in user browsers go to [Options.SignInURL] and JSON clients get
// 401; a user who never completed a checkout gets 404. It is wrapped in
// [http.CrossOriginProtection].
func (s *Service) PortalHandler() http.Handler {
	return s.cop.Handler(http.HandlerFunc(s.servePortal))
}

func (s *Service) servePortal(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, POST")
		s.fail(w, r, http.StatusMethodNotAllowed, ErrBadRequest)
		return
	}
	ctx := r.Context()
	uid, ok := s.opts.CurrentUser(ctx)
	if !ok {
		if isJSON(r) || !acceptsHTML(r) {
			s.fail(w, r, http.StatusUnauthorized, ErrNotSignedIn)
			return
		}
		s.redirect(w, r, s.opts.SignInURL)
		return
	}
	if s.opts.DevMode {
		s.render(w, http.StatusOK, "devportal", map[string]any{"Title": "DEV MODE — no billing portal", "AppURL": s.opts.AppPath})
		return
	}
	customer := ""
	subs, err := s.store.Subscriptions(ctx, uid)
	if err == nil {
		if sub, ok := s.primary(subs); ok {
			customer = sub.CustomerID
		} else {
			var cs []string
			if cs, err = s.store.Customers(ctx, uid); err == nil && len(cs) > 0 {
				customer = cs[0]
			}
		}
	}
	if err != nil {
		s.stats.portalErrors.Add(1)
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	if customer == "" {
		s.fail(w, r, http.StatusNotFound, ErrNoCustomer)
		return
	}
	ps, err := s.client.createPortal(ctx, customer, s.opts.BaseURL+s.opts.AppPath)
	if err != nil || ps.URL == "" {
		s.stats.portalErrors.Add(1)
		s.opts.Logger.Error("billing: creating a portal session", append([]any{"user", uid}, stripeErrorSummary(err)...)...)
		s.fail(w, r, http.StatusBadGateway, ErrStripe)
		return
	}
	s.stats.portals.Add(1)
	s.redirect(w, r, ps.URL)
}

// devSession is a dev-mode checkout in progress.
type devSession struct {
	userID  int64
	email   string
	signIn  bool
	expires time.Time
}

const (
	devSessionTTL = time.Hour
	maxDevSession = 10_000
)

func (s *Service) newDevSession(d devSession) (string, error) {
	now := s.opts.Now()
	d.expires = now.Add(devSessionTTL)
	token := "cs_dev_" + rand.Text()
	s.devMu.Lock()
	defer s.devMu.Unlock()
	if len(s.devSessions) >= maxDevSession {
		for k, v := range s.devSessions {
			if !now.Before(v.expires) {
				delete(s.devSessions, k)
			}
		}
		if len(s.devSessions) >= maxDevSession {
			return "", fmt.Errorf("%w: too many dev checkouts in progress", ErrUnavailable)
		}
	}
	s.devSessions[token] = d
	return token, nil
}

// devSession returns the dev session for token, removing it if take.
func (s *Service) devSession(token string, take bool) (devSession, bool) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	d, ok := s.devSessions[token]
	if !ok || !s.opts.Now().Before(d.expires) {
		delete(s.devSessions, token)
		return devSession{}, false
	}
	if take {
		delete(s.devSessions, token)
	}
	return d, true
}

// DevCheckoutHandler returns the dev-mode checkout page. GET shows a page
// labelled "DEV MODE — no payment taken" with a form; its POST completes
// the checkout by driving the same state change as a
// checkout.session.completed webhook (a paid session), then signs the user
// in and answers 303 to [Options.AppPath] (or to [Options.SignInURL], as the
// success page would). Each dev session completes once, within an hour.
// Outside dev mode it answers 404. It is wrapped in
// [http.CrossOriginProtection].
func (s *Service) DevCheckoutHandler() http.Handler {
	return s.cop.Handler(http.HandlerFunc(s.serveDevCheckout))
}

func (s *Service) serveDevCheckout(w http.ResponseWriter, r *http.Request) {
	if !s.opts.DevMode {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		token := r.URL.Query().Get("session")
		d, ok := s.devSession(token, false)
		if !ok {
			s.fail(w, r, http.StatusGone, ErrCheckoutInvalid)
			return
		}
		s.render(w, http.StatusOK, "devcheckout", map[string]any{
			"Title": "DEV MODE — no payment taken", "Email": d.email, "Session": token,
			"Action": s.opts.DevCheckoutPath, "CancelURL": s.opts.CancelURL,
		})
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			s.fail(w, r, http.StatusBadRequest, ErrBadRequest)
			return
		}
		token := r.PostForm.Get("session")
		d, ok := s.devSession(token, true)
		if !ok {
			s.fail(w, r, http.StatusGone, ErrCheckoutInvalid)
			return
		}
		if err := s.completeDevCheckout(r.Context(), token, d); err != nil {
			s.opts.Logger.Error("billing: completing a dev checkout", "user", d.userID, "err", err)
			s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
			return
		}
		s.stats.devCheckouts.Add(1)
		if !d.signIn {
			s.redirect(w, r, s.opts.SignInURL)
			return
		}
		s.signIn(w, r, d.userID)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.fail(w, r, http.StatusMethodNotAllowed, ErrBadRequest)
	}
}

// completeDevCheckout feeds a synthetic checkout.session.completed event
// through the webhook's own code path.
func (s *Service) completeDevCheckout(ctx context.Context, token string, d devSession) error {
	now := s.opts.Now()
	suffix := strings.TrimPrefix(token, "cs_dev_")
	raw, err := json.Marshal(map[string]any{
		"id": token, "object": "checkout.session", "mode": "subscription", "status": "complete",
		"payment_status": "paid", "client_reference_id": strconv.FormatInt(d.userID, 10),
		"customer": "cus_dev_" + strconv.FormatInt(d.userID, 10), "subscription": "sub_dev_" + suffix,
		"customer_details": map[string]any{"email": d.email},
	})
	if err != nil {
		return err
	}
	_, err = s.handleEvent(ctx, stripe.Event{
		ID: "evt_dev_" + suffix, Type: "checkout.session.completed", Created: now.Unix(),
		Data: &stripe.EventData{Raw: raw},
	})
	return err
}

// redirect answers 303 See Other to target, or {"url": target} to JSON
// clients.
func (s *Service) redirect(w http.ResponseWriter, r *http.Request, target string) {
	w.Header().Set("Cache-Control", "no-store")
	if isJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"url": target})
		return
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// fail writes an error response through Options.ErrorHandler, or as an
// HTML page for browsers and a problem document for everyone else.
func (s *Service) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if s.opts.ErrorHandler != nil {
		s.opts.ErrorHandler(w, r, status, err)
		return
	}
	if !isJSON(r) && acceptsHTML(r) {
		s.render(w, status, "error", map[string]any{
			"Title": http.StatusText(status), "Message": publicMessage(err), "HomeURL": s.opts.CancelURL,
		})
		return
	}
	problem.Write(w, problem.New(status, errorCode(err), publicMessage(err)))
}

func (s *Service) render(w http.ResponseWriter, status int, name string, data any) {
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		s.opts.Logger.Error("billing: rendering a page", "page", name, "err", err)
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func isJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json" || (strings.Contains(r.Header.Get("Accept"), "application/json") && !acceptsHTML(r))
}

func acceptsHTML(r *http.Request) bool { return strings.Contains(r.Header.Get("Accept"), "text/html") }
