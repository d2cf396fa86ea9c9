package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing"
)

// Provision creates a customer with an active dev-mode subscription and
// an API key, and returns the key's token: what the sign-up page, the
// dev checkout and the dashboard do, in one call, for load tests and
// demos. The subscription is to the first paid plan without a quota (pro,
// of the built-in plans), or else the first paid plan, so that a load
// test is limited by rate alone. It works only while billing runs in dev
// mode, so that it can never hand out a paid plan for free.
func (s *Server) Provision(ctx context.Context, email, keyName string) (string, error) {
	if !s.cfg.DevBilling() {
		return "", errors.New("app: Provision needs billing in dev mode (no STRIPE_SECRET_KEY)")
	}
	// The operator vouches for the address, so the account starts proven:
	// signing in later does not end sessions as a first proof would.
	now := s.now().UTC().Truncate(time.Second)
	uid, _, _, err := s.store.ConfirmEmail(ctx, email, true, now)
	if err != nil {
		return "", err
	}
	var price string
	for _, p := range s.plans.Plans() {
		if !p.IsFree() && (price == "" || p.Quota.IsZero()) {
			price = p.Prices[0]
			if p.Quota.IsZero() {
				break
			}
		}
	}
	customer := fmt.Sprintf("cus_dev_%d", uid)
	_, err = s.store.ApplyEvent(ctx,
		billing.Event{ID: fmt.Sprintf("evt_dev_provision_%d_%d", uid, now.UnixNano()), Type: "customer.subscription.created", Created: now, ReceivedAt: now},
		billing.Change{UserID: uid, CustomerID: customer, Mode: billing.WriteIfNewer, Subscription: billing.Subscription{
			CustomerID: customer, SubscriptionID: fmt.Sprintf("sub_dev_%d", uid), Status: "active", PriceID: price,
			CurrentPeriodEnd: now.AddDate(0, 1, 0), EventCreated: now,
		}})
	if err != nil {
		return "", fmt.Errorf("activating the subscription: %w", err)
	}
	_, tok, err := s.keys.Issue(ctx, uid, apikey.IssueOptions{Name: keyName})
	if err != nil {
		return "", err
	}
	return tok.Reveal(), nil
}
