package billing

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/billing/subscription"
	"github.com/stripe/stripe-go/v76"
)

// Dev-mode subscriptions are recognisable by their ids, which no Stripe
// object can have (Stripe's ids have no second underscore): subscriptions
// "sub_dev_…", customers "cus_dev_…", Checkout sessions "cs_dev_…".
//
// A dev subscription lasts [DevSubscriptionPeriod] from its dev checkout
// and is not renewed; it entitles only while the [Service] runs in dev
// mode, so that once billing runs with a real Stripe key, every
// subscription given away in development grants nothing.
const (
	DevSubscriptionPrefix = subscription.DevPrefix
	DevSubscriptionPeriod = 30 * 24 * time.Hour
)

// devSession is a dev-mode checkout in progress: the address, and the
// signed-in user buying for it (0 for a pending sign-up). It lives in
// memory only, at most maxDevSession of them, each for devSessionTTL.
type devSession struct {
	userID  int64
	email   string
	priceID string // the price to subscribe to: Options.PriceID or a plan's
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
// the checkout through the same path as a checkout.session.completed
// webhook (a paid session, a dev subscription: see [DevSubscriptionPrefix]),
// and then, like [Service.SuccessHandler], goes to [Options.AppPath] if the
// browser is signed in as the buyer, or else sends a sign-in link
// ([Options.SendSignInLink]) and says where it went. It never signs anyone
// in. Each dev session completes once, within an hour; completions are
// limited per client ([Options.Limiter]). Outside dev mode it answers 404.
// It refuses cross-origin requests itself (403), whatever router mounts it.
func (s *Service) DevCheckoutHandler() http.Handler { return s.protect(s.serveDevCheckout) }

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
		planName := ""
		if s.opts.Plans != nil {
			if p, ok := s.opts.Plans.ForPrice(d.priceID); ok {
				planName = p.Name
			}
		}
		s.render(w, http.StatusOK, "devcheckout", map[string]any{
			"Title": "DEV MODE — no payment taken", "Email": d.email, "Session": token,
			"Plan": planName, "Price": d.priceID,
			"Action": s.opts.DevCheckoutPath, "CancelURL": s.opts.CancelURL,
		})
	case http.MethodPost:
		if !s.allow(w, r, "dev-checkout:") {
			return
		}
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
		uid, err := s.completeDevCheckout(r.Context(), token, d)
		if err != nil {
			s.opts.Logger.Error("billing: completing a dev checkout", "err", err)
			s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
			return
		}
		s.stats.devCheckouts.Add(1)
		s.afterCheckout(w, r, token, uid)
	default:
		w.Header().Set("Allow", "GET, POST")
		s.fail(w, r, http.StatusMethodNotAllowed, ErrBadRequest)
	}
}

// completeDevCheckout applies the checkout.session.completed event that
// Stripe would send for the dev session, marked as apikit marks its own
// sessions, through the webhook's path; it returns the buyer's user id.
func (s *Service) completeDevCheckout(ctx context.Context, token string, d devSession) (int64, error) {
	suffix := strings.TrimPrefix(token, "cs_dev_")
	cs := &stripe.CheckoutSession{
		ID: token, Mode: stripe.CheckoutSessionModeSubscription, Status: stripe.CheckoutSessionStatusComplete,
		PaymentStatus: stripe.CheckoutSessionPaymentStatusPaid, Created: s.opts.Now().Unix(),
		Subscription: &stripe.Subscription{ID: DevSubscriptionPrefix + suffix},
		Metadata:     map[string]string{metaSignupEmail: d.email},
	}
	if d.userID != 0 {
		id := strconv.FormatInt(d.userID, 10)
		cs.Metadata = map[string]string{metaUserID: id}
		cs.ClientReferenceID = id
		cs.Customer = &stripe.Customer{ID: "cus_dev_" + id}
	} else {
		cs.Customer = &stripe.Customer{ID: "cus_dev_" + suffix}
	}
	if d.priceID != "" {
		cs.Metadata[metaPriceID] = d.priceID
	}
	ch, uid, err := s.checkoutChange(ctx, cs)
	if err != nil {
		return 0, err
	}
	if uid == 0 {
		return 0, fmt.Errorf("the user of dev checkout %s is gone", token)
	}
	now := s.opts.Now()
	_, err = s.apply(ctx, "", Event{ID: "evt_dev_" + suffix, Type: "checkout.session.completed", Created: now, ReceivedAt: now}, ch)
	return uid, err
}
