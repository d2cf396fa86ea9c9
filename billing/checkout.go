package billing

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/apikit/apikit/plan"
)

// maxFormBytes caps sign-up and dev-checkout request bodies.
const maxFormBytes = 4 << 10

// CheckoutHandler returns the sign-up endpoint (POST). It takes an email,
// and optionally the name of a plan of [Options.Plans], from form fields
// "email" and "plan" or a JSON body {"email": "…", "plan": "…"}, and
// answers 303 See Other to a Stripe Checkout session for the plan's first
// price, or [Options.PriceID] without a plan (JSON clients get {"url": "…"}
// instead). In dev mode the session is the local
// [Service.DevCheckoutHandler] page, which names the plan; every paid plan
// is offered. A plan the catalog does not have is refused with 400
// ([ErrUnknownPlan], naming it).
//
// The free plan (the catalog's plan without prices) needs no Checkout: the
// handler calls [Options.SendSignInLink] with the address and shows the
// page that says "We sent a sign-in link to a•••@example.org" (JSON
// clients get {"status": "sign_in_link_sent", …}), or, for a browser
// signed in with that address already, goes to [Options.AppPath]. It
// creates nothing: the account is created when the link is used (with
// magiclink, set its AllowSignup), and the page is the same whether the
// address has an account or not.
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
// subscription; the alternative, a second subscription, is worse. Changing
// plans is [Service.ChangePlanHandler]'s.
//
// Each client may sign up [Options.Limiter] times (429 past it), the free
// plan included. The handler refuses cross-origin requests itself (403,
// through [Options.ErrorHandler]), whatever router mounts it.
func (s *Service) CheckoutHandler() http.Handler { return s.protect(s.serveCheckout) }

func (s *Service) serveCheckout(w http.ResponseWriter, r *http.Request) {
	if !s.method(w, r, http.MethodPost) {
		return
	}
	if !s.allow(w, r, "signup:") {
		return
	}
	ctx := r.Context()
	form, err := readSignup(w, r)
	if err != nil {
		s.fail(w, r, StatusCode(err), err)
		return
	}
	email := form.Email
	if strings.TrimSpace(email) == "" {
		s.fail(w, r, http.StatusBadRequest, ErrInvalidEmail)
		return
	}
	if email, err = emailaddr.Normalize(email); err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("%w: %w", ErrInvalidEmail, err))
		return
	}
	chosen, err := s.signupPlan(form.Plan)
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
	if chosen != nil && chosen.IsFree() {
		s.signupFree(w, r, email, self)
		return
	}
	price := s.opts.PriceID
	if chosen != nil {
		price = chosen.Prices[0]
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
	s.checkout(w, r, self, email, price, subs)
}

// checkout sends the browser to a Checkout session (or, in dev mode, the
// dev checkout page) for price: the signed-in user self's own (0: a
// pending sign-up for email), reusing their Stripe customer. It reports
// whether it did (else it answered with an error).
func (s *Service) checkout(w http.ResponseWriter, r *http.Request, self int64, email, price string, subs []Subscription) bool {
	ctx := r.Context()
	if s.opts.DevMode {
		token, err := s.newDevSession(devSession{userID: self, email: email, priceID: price})
		if err != nil {
			s.stats.checkoutErrors.Add(1)
			s.fail(w, r, http.StatusServiceUnavailable, err)
			return false
		}
		s.stats.checkouts.Add(1)
		s.redirect(w, r, s.opts.DevCheckoutPath+"?session="+url.QueryEscape(token))
		return true
	}
	req := checkoutRequest{
		UserID: self, Email: email, PriceID: price,
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
		return false
	}
	s.stats.checkouts.Add(1)
	s.redirect(w, r, cs.URL)
	return true
}

// signupFree answers a sign-up for the free plan: no Checkout, a sign-in
// link to the address (the account is created when it is used), or the
// app for a browser signed in with that address already.
func (s *Service) signupFree(w http.ResponseWriter, r *http.Request, email string, self int64) {
	if self != 0 {
		s.redirect(w, r, s.opts.AppPath)
		return
	}
	s.stats.freeSignups.Add(1)
	sent := true
	if err := s.opts.SendSignInLink(r.Context(), email); err != nil {
		sent = false
		s.stats.linkErrors.Add(1)
		s.opts.Logger.Warn("billing: sending a sign-in link for a free sign-up", "err", err)
	} else {
		s.stats.linksSent.Add(1)
	}
	s.linkSent(w, r, email, sent, true)
}

// signupPlan returns the plan a sign-up names: nil for none (the default
// price, or the free plan when nothing is sold), or an error wrapping
// [ErrUnknownPlan].
func (s *Service) signupPlan(name string) (*plan.Plan, error) {
	if name == "" {
		if s.opts.PriceID == "" && s.opts.Plans != nil {
			if free, ok := s.opts.Plans.Free(); ok {
				return free, nil
			}
		}
		return nil, nil
	}
	return s.lookupPlan(name)
}

// lookupPlan finds a plan of Options.Plans by name.
func (s *Service) lookupPlan(name string) (*plan.Plan, error) {
	if s.opts.Plans != nil {
		if p, ok := s.opts.Plans.Plan(name); ok {
			return p, nil
		}
	}
	return nil, &unknownPlanError{name: name}
}

// signupForm is the body of a sign-up or plan change.
type signupForm struct {
	Email string `json:"email"`
	Plan  string `json:"plan"`
}

// readSignup reads a sign-up or plan-change body: form fields or JSON.
func readSignup(w http.ResponseWriter, r *http.Request) (signupForm, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	var f signupForm
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/json" {
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			return f, fmt.Errorf("%w: the body is not a JSON object with an email", ErrBadRequest)
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return f, fmt.Errorf("%w: unreadable form", ErrBadRequest)
		}
		f.Email, f.Plan = r.PostForm.Get("email"), r.PostForm.Get("plan")
	}
	f.Plan = strings.TrimSpace(f.Plan)
	return f, nil
}
