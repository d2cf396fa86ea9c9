package billing

import (
	"context"
	"time"
)

// Kinds of [AuditEvent]. They have the values of package audit's kinds
// (audit.SubscriptionChanged, audit.PlanChanged, audit.CheckoutCompleted,
// audit.PlanChangeRequested), so that an audit hook can pass them on as
// they are.
const (
	// EventSubscriptionChanged: a subscription of the user was created,
	// changed, canceled or linked to the user.
	EventSubscriptionChanged = "billing.subscription_changed"
	// EventPlanChanged: the plan a subscription grants the user changed
	// (a subscription starting or ending counts: from or to the free
	// plan).
	EventPlanChanged = "billing.plan_changed"
	// EventCheckoutCompleted: Stripe reported a completed Checkout of
	// apikit's for the user (the webhook's checkout.session.completed), or
	// a dev checkout was completed. The success page, which records the
	// same Checkout provisionally, reports only the subscription change it
	// writes, so that each Checkout is reported once.
	EventCheckoutCompleted = "billing.checkout_completed"
	// EventPlanChangeRequested: the signed-in user asked
	// [Service.ChangePlanHandler] for a plan and was sent to Stripe
	// Checkout or the Billing Portal, where the change is made (and later
	// reported by webhook).
	EventPlanChangeRequested = "billing.plan_change_requested"
)

// Actors an [AuditEvent] may name. Their values are those of package
// audit's actor kinds.
const (
	// ActorStripe is Stripe: changes applied from webhooks and from the
	// Checkout sessions read on the success page.
	ActorStripe = "stripe"
	// ActorUser is the signed-in user, through ChangePlanHandler.
	ActorUser = "user"
)

// AuditEvent is a change to a user's billing, reported to [Options.Audit].
// It never holds a secret: Stripe ids of customers, subscriptions, prices
// and events, statuses and plan names.
type AuditEvent struct {
	// Kind is one of EventSubscriptionChanged, EventPlanChanged, … .
	Kind string
	// UserID is the user concerned; never 0 (changes to customers linked
	// to no user are not reported).
	UserID int64
	// At is when the change was applied.
	At time.Time
	// Actor is [ActorStripe] for changes from webhooks and the success
	// page, [ActorUser] for ChangePlanHandler (the dev-mode change
	// included), and empty when the caller's context says who acted
	// ([Service.CancelSubscriptions], the dev checkout).
	Actor string
	// Detail holds a few facts, keyed by lowercase words:
	//   - "subscription", "customer", "price", "plan" (when Options.Plans
	//     is set): the subscription concerned;
	//   - "change": "created", "updated", "canceled" or "linked", "status"
	//     and "previous_status" when it changed, "cancel_at_period_end":
	//     "true" (EventSubscriptionChanged);
	//   - "from" and "to": plan names, or price ids without Options.Plans
	//     ("free", or the free plan's name, for none) (EventPlanChanged);
	//   - "plan" and "via": "checkout" or "portal"
	//     (EventPlanChangeRequested);
	//   - "event": the Stripe event's id, and "event_type" its type
	//     (events applied from webhooks).
	Detail map[string]string
}

// audit reports e to Options.Audit, if set. A failure is logged and
// changes nothing: the change is stored, and the webhook is answered as
// it would be without an audit log (Stripe must not retry an applied
// event because the audit store is down).
func (s *Service) audit(ctx context.Context, e AuditEvent) {
	if s.opts.Audit == nil || e.UserID == 0 {
		return
	}
	if e.At.IsZero() {
		e.At = s.opts.Now()
	}
	if err := s.opts.Audit(ctx, e); err != nil {
		s.stats.auditErrors.Add(1)
		s.opts.Logger.ErrorContext(ctx, "billing: audit hook failed", "event", e.Kind, "user", e.UserID, "err", err)
	}
}

// auditApplied reports what apply did: a completed checkout, the
// subscription's change and a change of the plan it grants.
func (s *Service) auditApplied(ctx context.Context, actor string, ev Event, ch Change, a Applied, linkedNow bool) {
	if s.opts.Audit == nil || a.UserID == 0 {
		return
	}
	uid, now := a.UserID, s.opts.Now()
	stripeEvent := func(d map[string]string) map[string]string {
		if actor == ActorStripe && ev.Type != checkoutSuccessPage {
			d["event"], d["event_type"] = ev.ID, ev.Type
		}
		return d
	}
	if ev.Type == "checkout.session.completed" {
		d := map[string]string{"customer": ch.CustomerID}
		if sub := ch.Subscription; sub.SubscriptionID != "" {
			s.subDetail(d, sub)
		}
		s.audit(ctx, AuditEvent{Kind: EventCheckoutCompleted, UserID: uid, At: now, Actor: actor, Detail: stripeEvent(d)})
	}
	if ch.Subscription.SubscriptionID == "" || !a.CurrentFound || (!a.Written && !linkedNow) {
		return
	}
	cur := a.Current
	was := a.PreviousFound && a.Previous.UserID == uid
	d := s.subDetail(map[string]string{"customer": cur.CustomerID}, cur)
	switch {
	case cur.Ended && !(was && a.Previous.Ended):
		d["change"] = "canceled"
	case !a.PreviousFound:
		d["change"] = "created"
	case !was:
		d["change"] = "linked"
	default:
		d["change"] = "updated"
	}
	d["status"] = cur.Status
	if a.PreviousFound && a.Previous.Status != cur.Status {
		d["previous_status"] = a.Previous.Status
	}
	if cur.CancelAtPeriodEnd && !cur.Ended {
		d["cancel_at_period_end"] = "true"
	}
	s.audit(ctx, AuditEvent{Kind: EventSubscriptionChanged, UserID: uid, At: now, Actor: actor, Detail: stripeEvent(d)})

	from := s.grantedPlan(a.Previous, was && s.grants(a.Previous, now))
	to := s.grantedPlan(cur, s.grants(cur, now))
	if from != to {
		s.audit(ctx, AuditEvent{Kind: EventPlanChanged, UserID: uid, At: now, Actor: actor,
			Detail: stripeEvent(map[string]string{"from": from, "to": to, "subscription": cur.SubscriptionID})})
	}
}

// subDetail adds the subscription's id, price and plan to d.
func (s *Service) subDetail(d map[string]string, sub Subscription) map[string]string {
	d["subscription"] = sub.SubscriptionID
	if sub.PriceID != "" {
		d["price"] = sub.PriceID
	}
	if p, ok := s.planOf(sub); ok {
		d["plan"] = p.Name
	}
	return d
}

// grantedPlan names what sub grants: its plan's name (its price without
// Plans) if granted, else the free plan's name, or "free".
func (s *Service) grantedPlan(sub Subscription, granted bool) string {
	if granted {
		if p, ok := s.planOf(sub); ok {
			return p.Name
		}
		if sub.PriceID != "" {
			return sub.PriceID
		}
		return "paid"
	}
	if s.opts.Plans != nil {
		if p, ok := s.opts.Plans.Free(); ok {
			return p.Name
		}
	}
	return "free"
}
