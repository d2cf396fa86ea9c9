package billing

import (
	"fmt"
	"net/http"
)

// PortalHandler returns the customer-portal endpoint (POST): for the
// signed-in user ([Options.CurrentUser]) it creates a Stripe Billing Portal
// session that returns to [Options.AppPath], and answers 303 to it. Without
// a signed-in user browsers go to [Options.SignInURL] and JSON clients get
// 401; a user who never completed a checkout gets 404. Each client may
// open it [Options.Limiter] times ("portal:"), and it refuses cross-origin
// requests itself (403), whatever router mounts it.
func (s *Service) PortalHandler() http.Handler { return s.protect(s.servePortal) }

func (s *Service) servePortal(w http.ResponseWriter, r *http.Request) {
	// POST only: each visit creates a Stripe portal session, and a GET
	// could be sent by any site's link (cross-origin protection covers
	// only unsafe methods).
	if !s.method(w, r, http.MethodPost) || !s.allow(w, r, "portal:") {
		return
	}
	ctx := r.Context()
	uid, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	if s.opts.DevMode {
		s.render(w, http.StatusOK, "devportal", map[string]any{"Title": "DEV MODE — no billing portal", "AppURL": s.opts.AppPath})
		return
	}
	subs, err := s.store.Subscriptions(ctx, uid)
	if err != nil {
		s.stats.portalErrors.Add(1)
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	s.portal(w, r, uid, subs)
}

// portal answers 303 to a new Billing Portal session for the user's
// Stripe customer (of their main subscription, else the newest linked),
// and reports whether it did (else it answered with an error).
func (s *Service) portal(w http.ResponseWriter, r *http.Request, uid int64, subs []Subscription) bool {
	ctx := r.Context()
	customer := ""
	if sub, ok := s.primary(subs); ok {
		customer = sub.CustomerID
	} else {
		cs, err := s.store.Customers(ctx, uid)
		if err != nil {
			s.stats.portalErrors.Add(1)
			s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
			return false
		}
		if len(cs) > 0 {
			customer = cs[0]
		}
	}
	if customer == "" {
		s.fail(w, r, http.StatusNotFound, ErrNoCustomer)
		return false
	}
	ps, err := s.client.createPortal(ctx, customer, s.opts.BaseURL+s.opts.AppPath)
	if err != nil || ps.URL == "" {
		s.stats.portalErrors.Add(1)
		s.opts.Logger.Error("billing: creating a portal session", append([]any{"user", uid}, stripeErrorSummary(err)...)...)
		s.fail(w, r, http.StatusBadGateway, ErrStripe)
		return false
	}
	s.stats.portals.Add(1)
	s.redirect(w, r, ps.URL)
	return true
}
