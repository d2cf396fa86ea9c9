package billing

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/apikit/apikit/internal/emailaddr"
)

// maxFormBytes caps sign-up and dev-checkout request bodies.
const maxFormBytes = 4 << 10

// CheckoutHandler returns the sign-up endpoint (POST). It takes an email
// from a form field or a JSON body {"email": "…"} and answers 303 See Other
// to a Stripe Checkout session for [Options.PriceID] (JSON clients get
// {"url": "…"} instead). In dev mode the session is the local
// [Service.DevCheckoutHandler] page.
//
// Sign-up creates no user and no other stored state, and signs in nobody.
// If the browser is signed in ([Options.CurrentUser]) and the address is
// that user's own, the Checkout is that user's (client_reference_id is the
// user id, and their Stripe customer is reused). Otherwise it is a pending
// sign-up: the normalised address travels only on the Checkout session
// (apikit's metadata and customer_email, which Checkout shows read-only),
// and the session expires after [CheckoutExpiry]; the account is found or
// created when the Checkout completes (see [Service.SuccessHandler]).
//
// An address with an entitling subscription is not sent to Checkout again:
// to [Options.AppPath] if its user is signed in, else to
// [Options.SignInURL]. That tells whoever types an address that it has a
// subscription; the alternative, a second subscription, is worse.
//
// Each client may sign up [Options.Limiter] times (429 past it). The
// handler refuses cross-origin requests itself (403, through
// [Options.ErrorHandler]), whatever router mounts it.
func (s *Service) CheckoutHandler() http.Handler { return s.protect(s.serveCheckout) }

func (s *Service) serveCheckout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, r, http.StatusMethodNotAllowed, ErrBadRequest)
		return
	}
	if !s.allow(w, r, "signup:") {
		return
	}
	ctx := r.Context()
	email, err := readEmail(w, r)
	if err != nil {
		s.fail(w, r, StatusCode(err), err)
		return
	}
	unavailable := func(what string, err error) {
		s.stats.checkoutErrors.Add(1)
		s.opts.Logger.Error("billing: sign-up: "+what, "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	// The signed-in user buys for themselves only with their own address.
	var self int64
	if cur, ok := s.opts.CurrentUser(ctx); ok {
		own, found, err := s.store.UserEmail(ctx, cur)
		if err != nil {
			unavailable("reading the signed-in user", err)
			return
		}
		if found && strings.EqualFold(own, email) {
			self = cur
		}
	}
	// Who holds the address, if anyone: read only, nothing is created.
	holder := self
	if holder == 0 {
		if holder, _, err = s.store.UserByEmail(ctx, email); err != nil {
			unavailable("finding the user", err)
			return
		}
	}
	var subs []Subscription
	if holder != 0 {
		if subs, err = s.store.Subscriptions(ctx, holder); err != nil {
			unavailable("reading subscriptions", err)
			return
		}
	}
	if sub, ok := s.primary(subs); ok && s.grants(sub, s.opts.Now()) {
		if self != 0 {
			s.redirect(w, r, s.opts.AppPath)
		} else {
			s.redirect(w, r, s.opts.SignInURL)
		}
		return
	}

	if s.opts.DevMode {
		token, err := s.newDevSession(devSession{userID: self, email: email})
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
		UserID: self, Email: email, PriceID: s.opts.PriceID,
		SuccessURL: s.opts.BaseURL + s.opts.SuccessPath + "?session_id={CHECKOUT_SESSION_ID}",
		CancelURL:  s.opts.CancelURL,
		ExpiresAt:  s.opts.Now().Add(CheckoutExpiry),
	}
	if self != 0 {
		// Only the signed-in owner reuses the Stripe customer (and so its
		// saved details); a pending sign-up gets a customer of its own.
		if sub, ok := s.primary(subs); ok {
			req.CustomerID = sub.CustomerID
		} else if cs, err := s.store.Customers(ctx, self); err == nil && len(cs) > 0 {
			req.CustomerID = cs[0]
		}
	}
	cs, err := s.client.createCheckout(ctx, req)
	if err != nil || cs.URL == "" {
		s.stats.checkoutErrors.Add(1)
		s.opts.Logger.Error("billing: creating a Checkout session", append([]any{"user", self}, stripeErrorSummary(err)...)...)
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
