package billing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/stripe/stripe-go/v76"
)

// This file is what billing does for account self-service: an email
// change follows the account to Stripe, and an account deletion cancels
// its subscriptions.

// devCustomerPrefix starts the ids of the customers dev mode invents,
// which Stripe has never heard of.
const devCustomerPrefix = "cus_dev_"

// UpdateCustomerEmail sets the email of every Stripe customer linked to
// the user (after a verified email change), so that receipts and the
// portal follow the account. In dev mode it does nothing. It does not
// touch the user's row (the email change already did).
//
// Webhook-safe: billing never links or creates accounts from a customer's
// email, so a later customer.updated event changes nothing (the webhook
// ignores that event type; only apikit's own marks on a Checkout session
// or subscription tie a purchase to a user).
//
// Every linked customer is tried, even after one fails; a customer Stripe
// no longer has (404, deleted) is skipped, since it sends no receipts. The
// returned error wraps [ErrInvalidEmail] for an invalid address (nothing
// is sent), [ErrUnavailable] when the store failed, and [ErrStripe] for
// every customer Stripe refused or could not be reached for; the call is
// idempotent, so the caller may retry it.
func (s *Service) UpdateCustomerEmail(ctx context.Context, userID int64, email string) error {
	if s.opts.DevMode {
		return nil
	}
	addr, err := emailaddr.Normalize(email)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEmail, err)
	}
	customers, err := s.store.Customers(ctx, userID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var errs []error
	for _, id := range customers {
		if strings.HasPrefix(id, devCustomerPrefix) {
			continue // given away in dev mode: not Stripe's
		}
		err := s.client.updateCustomerEmail(ctx, id, addr)
		switch {
		case err == nil:
		case stripeNotFound(err):
			s.opts.Logger.Warn("billing: updating a customer's email: Stripe has no such customer; skipped",
				"user", userID, "customer", id)
		default:
			s.opts.Logger.Error("billing: updating a customer's email",
				append([]any{"user", userID, "customer", id}, stripeErrorSummary(err)...)...)
			errs = append(errs, fmt.Errorf("%w: updating customer %s: %w", ErrStripe, id, err))
		}
	}
	return errors.Join(errs...)
}

// CancelSubscriptions cancels every active subscription the user holds
// among those billing sold: at once, or at the end of the current period
// (cancel_at_period_end) when atPeriodEnd is true. Dev-mode subscriptions
// are ended through the same apply path as the webhook (so caches are
// invalidated, [Options.OnForget] called). Real ones through the Stripe
// API; the resulting state is written provisionally (like the success page
// does) so the account is not served as paid after deletion even before
// the webhook arrives.
//
// "Active" means every subscription that has not ended (canceled,
// incomplete_expired, or a deletion applied): trialing, active, past_due,
// unpaid, paused, incomplete. atPeriodEnd applies to those that entitle
// the user now ([Subscription.Entitling]); one that does not (unpaid, or
// past_due beyond [Options.PastDueGrace], incomplete) has no paid period
// left to keep and is canceled at once. Subscriptions already set to
// cancel at period end are left alone when atPeriodEnd is true, and
// canceled at once when it is false.
//
// An immediate cancellation is written as final ([WriteTerminal]: no later
// event revives it, and the deletion webhook that follows changes nothing);
// a cancellation at period end sets CancelAtPeriodEnd on the stored row,
// stamped with its previous event time, so that Stripe's next event for
// the subscription replaces it. In dev mode, subscriptions that are not
// dev subscriptions cannot be reached (there is no Stripe client) and are
// left alone, with a warning in the log.
//
// Each subscription is handled even after another failed; the returned
// error wraps [ErrStripe] for each one Stripe refused or could not be
// reached for (its row is not written), and [ErrUnavailable] when the
// store failed. A subscription Stripe does not have (404) charges nobody
// and is recorded as ended. The call is idempotent, so the caller may retry it.
func (s *Service) CancelSubscriptions(ctx context.Context, userID int64, atPeriodEnd bool) error {
	subs, err := s.store.Subscriptions(ctx, userID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	now := s.opts.Now()
	at := now.UTC().Truncate(time.Second)
	var errs []error
	for _, sub := range subs {
		if !s.counts(sub) {
			continue
		}
		if sub.Ended || sub.Status == "canceled" || sub.Status == "incomplete_expired" {
			continue
		}
		if s.opts.DevMode && !sub.Dev() {
			s.opts.Logger.Warn("billing: dev mode cannot cancel a Stripe subscription; left alone",
				"user", userID, "subscription", sub.SubscriptionID)
			continue
		}
		atEnd := atPeriodEnd && sub.Entitling(now, s.opts.PastDueGrace)
		if atEnd && sub.CancelAtPeriodEnd {
			continue // already
		}
		if err := s.cancelOne(ctx, sub, atEnd, now, at); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// cancelOne cancels one subscription, at Stripe unless it is a dev one,
// and applies the resulting state.
func (s *Service) cancelOne(ctx context.Context, sub Subscription, atEnd bool, now, at time.Time) error {
	prefix := "evt_apikit_cancel_"
	if sub.Dev() {
		prefix = "evt_dev_"
	} else {
		var err error
		if atEnd {
			err = s.client.cancelAtPeriodEnd(ctx, sub.SubscriptionID)
		} else {
			err = s.client.cancelSubscription(ctx, sub.SubscriptionID)
		}
		if stripeNotFound(err) {
			// Stripe has no such subscription: it charges nobody, so it
			// is recorded as ended.
			s.opts.Logger.Warn("billing: canceling a subscription: Stripe has no such subscription; recorded as ended",
				"subscription", sub.SubscriptionID)
			atEnd, err = false, nil
		}
		if err != nil {
			s.opts.Logger.Error("billing: canceling a subscription",
				append([]any{"subscription", sub.SubscriptionID, "at_period_end", atEnd}, stripeErrorSummary(err)...)...)
			return fmt.Errorf("%w: canceling subscription %s: %w", ErrStripe, sub.SubscriptionID, err)
		}
	}
	ev := Event{ID: prefix + rand.Text(), ReceivedAt: now}
	var ch Change
	if atEnd {
		// Stamped with the row's own event time (WriteCurrent writes on a
		// tie): any later event from Stripe, the one for this very change
		// included, replaces it, and no clock skew between us and Stripe
		// can hide one.
		sub.CancelAtPeriodEnd = true
		if sub.Dev() {
			sub.EventCreated = at // dev mode has no other clock
		}
		ev.Type, ev.Created = "customer.subscription.updated", sub.EventCreated
		ch = Change{CustomerID: sub.CustomerID, Subscription: sub, Mode: WriteCurrent}
	} else {
		sub.Status, sub.CancelAtPeriodEnd, sub.EventCreated = "canceled", false, at
		ev.Type, ev.Created = "customer.subscription.deleted", at
		ch = Change{CustomerID: sub.CustomerID, Subscription: sub, Mode: WriteTerminal}
	}
	if _, err := s.apply(ctx, "", ev, ch); err != nil {
		return fmt.Errorf("%w: recording the cancellation of %s: %w", ErrUnavailable, sub.SubscriptionID, err)
	}
	return nil
}

func (c *Client) updateCustomerEmail(ctx context.Context, customerID, email string) error {
	_, err := call(c, ctx, "stripe.customers.update", func(ctx context.Context) (*stripe.Customer, error) {
		p := &stripe.CustomerParams{Email: stripe.String(email)}
		p.Context = ctx
		return c.api.Customers.Update(customerID, p)
	})
	return err
}

func (c *Client) cancelSubscription(ctx context.Context, id string) error {
	_, err := call(c, ctx, "stripe.subscriptions.cancel", func(ctx context.Context) (*stripe.Subscription, error) {
		p := &stripe.SubscriptionCancelParams{}
		p.Context = ctx
		return c.api.Subscriptions.Cancel(id, p)
	})
	return err
}

func (c *Client) cancelAtPeriodEnd(ctx context.Context, id string) error {
	_, err := call(c, ctx, "stripe.subscriptions.update", func(ctx context.Context) (*stripe.Subscription, error) {
		p := &stripe.SubscriptionParams{CancelAtPeriodEnd: stripe.Bool(true)}
		p.Context = ctx
		return c.api.Subscriptions.Update(id, p)
	})
	return err
}

// stripeNotFound reports whether Stripe answered 404: no such object.
func stripeNotFound(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && se.HTTPStatusCode == http.StatusNotFound
}
