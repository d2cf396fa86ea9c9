package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// Dev-mode stand-ins for the Stripe prices of the paid plans, used when
// STRIPE_PRICE_ID or STRIPE_PRO_PRICE_ID is unset: dev mode takes no
// payment, but a plan with no price would be a second free plan.
const (
	devHobbyPrice = "price_dev_hobby"
	devProPrice   = "price_dev_pro"
)

// Costs of API requests: what each spends from its plan's limits and
// quota. A write costs more than a read.
const (
	costRead  = 1
	costWrite = 5
)

// BuiltinPlans returns FavoritesAPI's plans: free (no subscription: 100
// requests a day, 1 a second), hobby (hobbyPrice: 10,000 requests a month,
// 10 a second) and pro (proPrice: 100 a second, no quota, usage billed by
// the unit). Each budget is the user's, shared by all their keys, so that
// more keys do not buy more requests. Without proPrice there is no pro
// plan.
func BuiltinPlans(hobbyPrice, proPrice string) *plan.Catalog {
	plans := []plan.Plan{
		{
			Name: "free",
			// 1 a second, with room for one write (which costs 5) at once.
			Limits: []ratelimit.Limit{{Count: 1, Period: time.Second, Burst: costWrite}},
			Quota:  plan.Quota{Count: 100, Period: plan.Day},
			Budget: plan.PerUser,
		},
		{
			Name:   "hobby",
			Prices: []string{hobbyPrice},
			Limits: []ratelimit.Limit{ratelimit.PerSecond(10)},
			Quota:  plan.Quota{Count: 10_000, Period: plan.Month},
			Budget: plan.PerUser,
		},
	}
	if proPrice != "" {
		plans = append(plans, plan.Plan{
			Name:       "pro",
			Prices:     []string{proPrice},
			Limits:     []ratelimit.Limit{ratelimit.PerSecond(100)},
			Budget:     plan.PerUser,
			Metered:    true,
			MeterEvent: MeterEventName,
		})
	}
	return plan.MustCatalog(plans...)
}

// hobbyPrice is the price of the built-in hobby plan: STRIPE_PRICE_ID, or
// in dev mode a stand-in.
func (c Config) hobbyPrice() string {
	if c.StripePriceID == "" && c.DevBilling() {
		return devHobbyPrice
	}
	return c.StripePriceID
}

// proPrice is the price of the built-in pro plan: STRIPE_PRO_PRICE_ID, or
// in dev mode (which offers every plan) a stand-in; "" means no pro plan.
func (c Config) proPrice() string {
	if c.StripeProPriceID == "" && c.DevBilling() {
		return devProPrice
	}
	return c.StripeProPriceID
}

// withFirstLimit returns the plans of c with limit as the first rate limit
// of each: RATE_LIMIT, kept from the days of one limit per key.
func withFirstLimit(c *plan.Catalog, limit ratelimit.Limit) (*plan.Catalog, error) {
	var plans []plan.Plan
	for _, p := range c.Plans() {
		q := *p
		q.Limits = append([]ratelimit.Limit{limit}, p.Limits[1:]...)
		plans = append(plans, q)
	}
	return plan.NewCatalog(plans...)
}

// affordable checks that every plan can admit the dearest request at all:
// a request whose cost exceeds a limit's burst, or the quota, can never be
// admitted (plan.ErrInvalidRequest), so such a plan would answer every
// write with an error. It names the plan and the limit.
func affordable(c *plan.Catalog) error {
	for _, p := range c.Plans() {
		for _, l := range p.Limits {
			if burst := cmp.Or(l.Burst, l.Count); burst < costWrite {
				return fmt.Errorf("plan %q: limit %s admits at most %d at once, but saving a favorite costs %d: give it a burst of at least %d, such as \"%d/%s burst %d\"",
					p.Name, l, burst, costWrite, costWrite, l.Count, strings.TrimPrefix(ratelimit.Limit{Count: 1, Period: l.Period}.String(), "1/"), costWrite)
			}
		}
		if !p.Quota.IsZero() && p.Quota.Count < costWrite {
			return fmt.Errorf("plan %q: quota %s is less than the %d that saving a favorite costs", p.Name, p.Quota, costWrite)
		}
	}
	return nil
}

// describeLimits writes a plan's limits for people: "10/s and 1000/h".
func describeLimits(limits []ratelimit.Limit) string {
	s := make([]string, len(limits))
	for i, l := range limits {
		s[i] = l.String()
	}
	return strings.Join(s, " and ")
}

// planView is a plan as the landing page and the dashboard show it.
type planView struct {
	Name    string
	Limits  string // "10/s"
	Quota   string // "10,000 requests a month", or "" for none
	Metered bool
	Free    bool
}

func viewPlan(p *plan.Plan) planView {
	v := planView{Name: p.Name, Limits: describeLimits(p.Limits), Metered: p.Metered, Free: p.IsFree()}
	if !p.Quota.IsZero() {
		v.Quota = describeQuota(p.Quota)
	}
	return v
}

// describeQuota writes a quota for people: "10,000 requests a month".
func describeQuota(q plan.Quota) string {
	per := map[plan.Period]string{plan.Day: "a day", plan.Month: "a month", plan.BillingPeriod: "a billing period"}[q.Period]
	return thousands(q.Count) + " requests " + per
}

// thousands writes n with commas: 10000 is "10,000".
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// requestCost is what an API request spends: 5 for saving a favorite, 1
// for everything else.
func requestCost(r *http.Request) int {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/favorites" {
		return costWrite
	}
	return costRead
}

// DefaultOverrideRefresh is how often a server reads the plan overrides
// again, and so how long one set by the operator CLI takes to apply on
// every instance.
const DefaultOverrideRefresh = 10 * time.Second

// currentPlan is a user's plan and what decides its quota periods.
type currentPlan struct {
	Plan   *plan.Plan // nil: no plan, so no API
	Anchor time.Time  // the subscription's billing cycle anchor, if any
}

// userPlan returns the plan that userID's requests are decided under
// (billing decides, from its short entitlement cache): the plan of their
// entitling subscription's price, or else the free plan, if there is one.
func (s *Server) userPlan(ctx context.Context, userID int64) (currentPlan, error) {
	cp, err := s.billing.Plan(ctx, userID)
	if errors.Is(err, billing.ErrNoPlan) {
		return currentPlan{}, nil
	}
	if err != nil {
		return currentPlan{}, fmt.Errorf("reading the plan of user %d: %w", userID, err)
	}
	return currentPlan{Plan: cp.Plan, Anchor: cp.Anchor}, nil
}

// planRequest is the decision request of an API call, for
// plan.Middleware: the plan of the key's user (the free plan without a
// subscription), whose budget is the user's or the key's as the plan
// says, and the subscription's anchor for quotas per billing period.
func (s *Server) planRequest(r *http.Request) (plan.Request, error) {
	ctx := r.Context()
	p, _ := apikey.PrincipalFrom(ctx)
	cp, err := s.userPlan(ctx, p.UserID)
	if err != nil {
		return plan.Request{}, err // 503
	}
	if cp.Plan == nil {
		return plan.Request{}, &plan.StatusError{Status: http.StatusForbidden, Code: "forbidden", Detail: s.noPlanDetail()}
	}
	return plan.Request{Plan: cp.Plan, User: strconv.FormatInt(p.UserID, 10), Key: p.KeyID, Anchor: cp.Anchor}, nil
}

// noPlanDetail says why a key whose owner has no plan is refused.
func (s *Server) noPlanDetail() string {
	return "The subscription of this account is not active. Renew it at " + s.cfg.BaseURL + "/app."
}

// quotaUsage returns what a user has used of their plan's quota this
// period, without spending any of it; nil if the plan has no quota, if
// its budgets are per key (each key then has its own), or if the decider
// cannot say (Redis down: the dashboard works without it).
func (s *Server) quotaUsage(ctx context.Context, userID int64, cp currentPlan) *quotaState {
	if cp.Plan.Quota.IsZero() || cp.Plan.Budget != plan.PerUser {
		return nil
	}
	d, err := s.decider.Peek(ctx, plan.Request{Plan: cp.Plan, User: strconv.FormatInt(userID, 10), Anchor: cp.Anchor})
	if err != nil || d.FailedOpen {
		s.logger.Warn("reading the quota used for the dashboard", "user", userID, "error", err)
		return nil
	}
	st := newPlanState(cp.Plan, "", &d)
	return st.Quota
}

// hasFree reports whether c has a free plan.
func hasFree(c *plan.Catalog) bool {
	_, ok := c.Free()
	return ok
}
