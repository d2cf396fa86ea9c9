package billing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/plan"
)

// ChangePlanHandler returns the plan-change endpoint (POST), for the
// dashboard's upgrade and downgrade buttons: the signed-in user
// ([Options.CurrentUser]) asks for the plan named by the form field "plan"
// (or a JSON body {"plan": "…"}), one of [Options.Plans] (else 400,
// [ErrUnknownPlan]). It only ever changes the signed-in user's own plan:
// nothing in the request names a user.
//
// In dev mode the change is made at once, through the same path as a
// webhook (so [Service.Plan] serves it on the user's next request): the
// user's dev subscription is switched to the plan's first price (a new dev
// subscription, [DevSubscriptionPeriod] long, if they have none), and the
// free plan cancels it. Then it answers 303 to [Options.AppPath].
//
// With Stripe, a user without an entitling subscription who asks for a
// paid plan goes to a Checkout for it (as their own signed-in purchase,
// with their address); a user with one goes to the Stripe Billing Portal,
// where Stripe changes or cancels the subscription (configure the portal
// to allow switching between the plans' prices), and the webhook then
// brings the new price. Asking for the plan one is on already goes back
// to AppPath.
//
// [Options.Audit] hears of the change: in dev mode, of the subscription
// and plan changed (actor [ActorUser]); with Stripe, of the request
// (EventPlanChangeRequested, once the user is sent to Checkout or the
// portal), and then of the change itself from the webhook (actor
// [ActorStripe]).
//
// Without a signed-in user browsers go to [Options.SignInURL] and JSON
// clients get 401. Requests are limited per client ([Options.Limiter],
// "plan:"), and the handler refuses cross-origin requests itself (403),
// whatever router mounts it.
func (s *Service) ChangePlanHandler() http.Handler { return s.protect(s.serveChangePlan) }

func (s *Service) serveChangePlan(w http.ResponseWriter, r *http.Request) {
	if !s.method(w, r, http.MethodPost) {
		return
	}
	if !s.allow(w, r, "plan:") {
		return
	}
	ctx := r.Context()
	uid, ok := s.signedIn(w, r)
	if !ok {
		return
	}
	form, err := readSignup(w, r)
	if err != nil {
		s.fail(w, r, StatusCode(err), err)
		return
	}
	target, err := s.lookupPlan(form.Plan)
	if err != nil {
		s.fail(w, r, StatusCode(err), err)
		return
	}
	subs, err := s.store.Subscriptions(ctx, uid)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	now := s.opts.Now()
	if s.opts.DevMode {
		if err := s.changeDevPlan(ctx, uid, target, subs, now); err != nil {
			s.opts.Logger.Error("billing: changing a dev plan", "user", uid, "err", err)
			s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
			return
		}
		s.stats.planChanges.Add(1)
		s.redirect(w, r, s.opts.AppPath)
		return
	}

	current, entitled := s.primary(subs)
	entitled = entitled && s.grants(current, now)
	switch {
	case !entitled && target.IsFree():
		s.redirect(w, r, s.opts.AppPath) // on the free plan already
		return
	case entitled && s.samePlan(current, target):
		s.redirect(w, r, s.opts.AppPath)
		return
	case !entitled:
		email, found, err := s.store.UserEmail(ctx, uid)
		if err == nil && !found {
			err = errors.New("the signed-in user is gone")
		}
		if err != nil {
			s.fail(w, r, http.StatusServiceUnavailable, fmt.Errorf("%w: %w", ErrUnavailable, err))
			return
		}
		s.stats.planChanges.Add(1)
		if s.checkout(w, r, uid, email, target.Prices[0], subs) {
			s.auditRequested(ctx, uid, target, "checkout")
		}
		return
	}
	s.stats.planChanges.Add(1)
	if s.portal(w, r, uid, subs) {
		s.auditRequested(ctx, uid, target, "portal")
	}
}

// auditRequested reports a plan change the user asked for and was sent to
// Stripe (via: "checkout" or "portal") to make.
func (s *Service) auditRequested(ctx context.Context, uid int64, target *plan.Plan, via string) {
	s.audit(ctx, AuditEvent{Kind: EventPlanChangeRequested, UserID: uid, Actor: ActorUser,
		Detail: map[string]string{"plan": target.Name, "via": via}})
}

// samePlan reports whether sub's price grants plan p.
func (s *Service) samePlan(sub Subscription, p *plan.Plan) bool {
	cur, ok := s.planOf(sub)
	return ok && cur.Name == p.Name
}

// changeDevPlan moves the user to the plan in dev mode, at once: the free
// plan cancels their entitling dev subscriptions; a paid plan switches the
// newest one to the plan's first price, or creates one. Every change goes
// through apply, as a webhook's would.
func (s *Service) changeDevPlan(ctx context.Context, uid int64, target *plan.Plan, subs []Subscription, now time.Time) error {
	var current []Subscription
	for _, sub := range subs {
		if sub.Dev() && s.grants(sub, now) {
			current = append(current, sub)
		}
	}
	at := now.UTC().Truncate(time.Second)
	ev := func(typ string) Event {
		return Event{ID: "evt_dev_" + rand.Text(), Type: typ, Created: at, ReceivedAt: now}
	}
	if target.IsFree() {
		for _, sub := range current {
			sub.Status, sub.EventCreated, sub.CancelAtPeriodEnd = "canceled", at, false
			if _, err := s.apply(ctx, ActorUser, ev("customer.subscription.deleted"), Change{CustomerID: sub.CustomerID, Subscription: sub, Mode: WriteTerminal}); err != nil {
				return err
			}
		}
		return nil
	}
	price := target.Prices[0]
	if len(current) > 0 {
		sub := current[0]
		if s.samePlan(sub, target) {
			return nil
		}
		sub.PriceID, sub.EventCreated = price, at
		// WriteCurrent: the change is authoritative even within the second
		// of the subscription's previous event.
		_, err := s.apply(ctx, ActorUser, ev("customer.subscription.updated"), Change{CustomerID: sub.CustomerID, Subscription: sub, Mode: WriteCurrent})
		return err
	}
	customer := "cus_dev_" + strconv.FormatInt(uid, 10)
	if cs, err := s.store.Customers(ctx, uid); err != nil {
		return err
	} else if len(cs) > 0 && strings.HasPrefix(cs[0], "cus_dev_") {
		customer = cs[0]
	}
	sub := Subscription{
		CustomerID: customer, SubscriptionID: DevSubscriptionPrefix + rand.Text(), Status: "active", PriceID: price,
		CurrentPeriodStart: at, CurrentPeriodEnd: at.Add(DevSubscriptionPeriod), BillingCycleAnchor: at, EventCreated: at,
	}
	_, err := s.apply(ctx, ActorUser, ev("customer.subscription.created"), Change{UserID: uid, CustomerID: customer, Subscription: sub})
	return err
}
