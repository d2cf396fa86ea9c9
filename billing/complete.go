package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/stripe/stripe-go/v76"
)

// This file is the one path by which a completed Checkout becomes state:
// the webhook's checkout.session.completed, the success page and the dev
// checkout all find the user with checkoutUser, write checkoutChange
// through apply, and (in a browser) end in afterCheckout.

// SuccessMaxAge is how long after its creation a Checkout session is still
// accepted on the success page.
const SuccessMaxAge = 24 * time.Hour

// SuccessHandler returns the page Stripe Checkout returns to (GET, with
// ?session_id=cs_…). It retrieves the session from Stripe and checks that
// it is complete, in subscription mode, at most [SuccessMaxAge] old and was
// created by apikit; it finds or creates the account from apikit's own
// marks on the session (never from the email typed into Checkout), records
// the session's provisional subscription state (the webhook may not have
// arrived yet), and then:
//
//   - if the browser is signed in as that user, answers 303 to
//     [Options.AppPath];
//   - otherwise it calls [Options.SendSignInLink] with the account's address,
//     once per Checkout session (a replayed success URL sends nothing more),
//     and shows a page saying "We sent a sign-in link to a•••@example.org"
//     (JSON clients get {"status": "sign_in_link_sent", "email": …}).
//
// It never signs anyone in: paying, or knowing a session id, proves
// nothing about an address. Visits are limited per client
// ([Options.Limiter], since each costs a Stripe API call).
func (s *Service) SuccessHandler() http.Handler { return s.protect(s.serveSuccess) }

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
	// Each visit costs a Stripe API call: limited per client like sign-up.
	if !s.allow(w, r, "success:") {
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
	ch, uid, err := s.checkoutChange(ctx, cs)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	if uid == 0 {
		refuse("session not created by apikit")
		return
	}
	ev := Event{ID: cs.ID, Type: checkoutSuccessPage, Created: time.Unix(cs.Created, 0), ReceivedAt: now}
	if _, err := s.apply(ctx, ActorStripe, ev, ch); err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	s.afterCheckout(w, r, cs.ID, uid)
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

// afterCheckout ends a completed Checkout (or dev checkout) in the
// browser: straight to the app for the buyer already signed in, else a
// sign-in link to the account's address, sent once per session.
func (s *Service) afterCheckout(w http.ResponseWriter, r *http.Request, sessionID string, uid int64) {
	ctx := r.Context()
	if cur, ok := s.opts.CurrentUser(ctx); ok && cur == uid {
		s.redirect(w, r, s.opts.AppPath)
		return
	}
	email, found, err := s.store.UserEmail(ctx, uid)
	if err == nil && !found {
		err = errors.New("the user of a completed checkout is gone")
	}
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	first, err := s.store.ConsumeCheckoutSession(ctx, sessionID, uid, s.opts.Now())
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	sent := true
	if first {
		if err := s.opts.SendSignInLink(ctx, email); err != nil {
			sent = false
			s.stats.linkErrors.Add(1)
			s.opts.Logger.Warn("billing: sending a sign-in link after checkout", "user", uid, "err", err)
		} else {
			s.stats.linksSent.Add(1)
		}
	}
	s.linkSent(w, r, email, sent, false)
}

// linkSent shows where a sign-in link went (masked), or that it could not
// be sent: after a checkout, or for a free sign-up.
func (s *Service) linkSent(w http.ResponseWriter, r *http.Request, email string, sent, free bool) {
	masked := emailaddr.Mask(email)
	w.Header().Set("Cache-Control", "no-store")
	if isJSON(r) {
		status := "sign_in_link_sent"
		if !sent {
			status = "sign_in_link_failed"
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"status": status, "email": masked, "sign_in_url": s.opts.SignInURL})
		return
	}
	s.render(w, http.StatusOK, "linksent", map[string]any{
		"Title": "Check your email", "Email": masked, "Sent": sent, "Free": free, "SignInURL": s.opts.SignInURL,
	})
}

// checkoutUser finds the user a completed Checkout session belongs to, from
// what apikit put on it and nothing else: the apikit_user_id metadata (a
// signed-in buyer; client_reference_id, when set, must agree), or the
// apikit_signup_email metadata of a pending sign-up, whose user it finds or
// creates, unverified. 0 for a session apikit did not create (another
// product of the same Stripe account), or whose user is gone.
func (s *Service) checkoutUser(ctx context.Context, cs *stripe.CheckoutSession) (int64, error) {
	if v, ok := cs.Metadata[metaUserID]; ok {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 || (cs.ClientReferenceID != "" && cs.ClientReferenceID != v) {
			return 0, nil
		}
		_, found, err := s.store.UserEmail(ctx, id)
		if err != nil || !found {
			return 0, err
		}
		return id, nil
	}
	if v, ok := cs.Metadata[metaSignupEmail]; ok {
		email, err := emailaddr.Normalize(v)
		if err != nil {
			return 0, nil
		}
		id, _, err := s.store.CreateUser(ctx, email, s.opts.Now())
		return id, err
	}
	return 0, nil
}

// checkoutChange is the Change of a completed Checkout session: the link of
// its customer to its user, and the subscription's state as far as the
// session tells it, written only if no subscription event has written the
// row yet. uid is 0 (and the Change empty) for a session that is not
// apikit's or not a subscription.
func (s *Service) checkoutChange(ctx context.Context, cs *stripe.CheckoutSession) (ch Change, uid int64, err error) {
	if cs.Mode != stripe.CheckoutSessionModeSubscription || cs.Customer == nil || cs.Customer.ID == "" {
		return Change{}, 0, nil
	}
	if uid, err = s.checkoutUser(ctx, cs); err != nil || uid == 0 {
		return Change{}, 0, err
	}
	ch = Change{UserID: uid, CustomerID: cs.Customer.ID}
	if cs.Subscription == nil || cs.Subscription.ID == "" || cs.Status != stripe.CheckoutSessionStatusComplete {
		return ch, uid, nil
	}
	status := "incomplete"
	switch cs.PaymentStatus {
	case stripe.CheckoutSessionPaymentStatusPaid:
		status = "active"
	case stripe.CheckoutSessionPaymentStatusNoPaymentRequired:
		status = "trialing"
	}
	price := s.opts.PriceID
	if p := cs.Metadata[metaPriceID]; s.sold[p] {
		price = p
	}
	ch.Subscription = Subscription{
		CustomerID: cs.Customer.ID, SubscriptionID: cs.Subscription.ID, Status: status, PriceID: price,
	}
	if strings.HasPrefix(cs.Subscription.ID, DevSubscriptionPrefix) {
		start := s.opts.Now().UTC().Truncate(time.Second)
		ch.Subscription.CurrentPeriodStart, ch.Subscription.CurrentPeriodEnd = start, start.Add(DevSubscriptionPeriod)
		ch.Subscription.BillingCycleAnchor = start
	}
	ch.Mode = WriteIfAbsent
	return ch, uid, nil
}

// checkoutSuccessPage is the type of the Event the success page applies
// (its id is the Checkout session's).
const checkoutSuccessPage = "checkout.session.success_page"

// apply applies an event's change and, unless it was a duplicate, drops
// the user's cached entitlement, runs the callbacks and reports the change
// to Options.Audit as made by actor (ActorStripe, ActorUser, or "" for the
// context's).
func (s *Service) apply(ctx context.Context, actor string, ev Event, ch Change) (Applied, error) {
	a, err := s.store.ApplyEvent(ctx, ev, ch)
	if err != nil || a.Duplicate {
		return a, err
	}
	s.afterApply(ctx, actor, ev, ch, a)
	return a, nil
}

// afterApply drops the user's cached entitlement, runs the callbacks and
// reports to Options.Audit, from the row ApplyEvent returned (nothing is
// read again).
func (s *Service) afterApply(ctx context.Context, actor string, ev Event, ch Change, a Applied) {
	uid := a.UserID
	if uid == 0 {
		return
	}
	s.forget(uid)
	linkedNow := a.PreviousFound && a.Previous.UserID != uid
	defer s.auditApplied(ctx, actor, ev, ch, a, linkedNow)
	if ch.Subscription.SubscriptionID == "" || !a.CurrentFound {
		return
	}
	if !a.Written && !linkedNow {
		return
	}
	after := a.Current
	if s.opts.OnChange != nil {
		s.opts.OnChange(ctx, uid, after)
	}
	was := a.PreviousFound && a.Previous.UserID == uid && !a.Previous.Ended &&
		(a.Previous.Status == "active" || a.Previous.Status == "trialing")
	is := !after.Ended && (after.Status == "active" || after.Status == "trialing")
	if !was && is && s.opts.OnActivated != nil {
		s.opts.OnActivated(ctx, uid)
	}
	if ch.Mode == WriteTerminal && a.Written && s.opts.OnCanceled != nil {
		s.opts.OnCanceled(ctx, uid)
	}
}
