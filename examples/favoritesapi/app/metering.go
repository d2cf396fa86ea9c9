package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/billing/meter/stripemeter"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/usage"
)

// MeterEventName is the event name of the Stripe Billing Meter that the
// metered plans' usage is reported to: create the meter with it.
const MeterEventName = "api_requests"

// pastDueGrace is how long a past_due subscription stays entitled, for
// billing and for the meter's list of metered customers alike.
const pastDueGrace = 72 * time.Hour

// Housekeeping of the usage tables: how often, and how long alert claims
// and sent meter events are kept.
const (
	housekeepingEvery  = time.Hour
	alertsKeptFor      = 93 * 24 * time.Hour
	meterEventsKeptFor = 7 * 24 * time.Hour
)

// startMetering builds the usage meter (counts per key, user and hour,
// written in batches), the quota alerts (mailed in the background), and,
// with a Stripe key, the reporter that bills the metered plans' usage
// through Stripe's meter events.
func (s *Server) startMetering(opts Options, mailer magiclink.Mailer) error {
	s.meter = usage.NewMeter(s.store, usage.Options{
		FlushInterval: opts.UsageFlushInterval,
		Now:           opts.Now,
		Logger:        s.logger,
	})
	s.alerts = usage.NewAlerts(s.store, usage.AlertOptions{
		Send:   func(ctx context.Context, a usage.Alert) error { return s.sendAlert(ctx, mailer, a) },
		Logger: s.logger,
	})
	if s.cfg.DevBilling() {
		s.logger.Warn("usage billing in DEV MODE: no STRIPE_SECRET_KEY, so the metered plans' usage is counted and charted but not reported to Stripe")
		return nil
	}
	sender, err := stripemeter.New(stripemeter.Options{Key: s.cfg.StripeSecretKey, URL: s.cfg.StripeAPIURL, HTTPClient: opts.HTTPClient})
	if err != nil {
		return fmt.Errorf("stripe meter events: %w", err)
	}
	s.reporter = meter.NewReporter(s.store, meter.Options{
		Customers: s.meteredCustomers,
		Backend:   sender,
		Interval:  max(opts.MeterInterval, 0),
		Now:       opts.Now,
		Logger:    s.logger,
	})
	if opts.MeterInterval >= 0 {
		s.reporter.Start()
	}
	return nil
}

// meteredCustomers lists the users on a metered plan now, with their
// Stripe customer and the meter's event name: those whose entitling
// subscription is to a metered plan's price.
func (s *Server) meteredCustomers(ctx context.Context) ([]meter.Customer, error) {
	var prices []string
	for _, p := range s.plans.Plans() {
		if p.Metered {
			prices = append(prices, p.Prices...)
		}
	}
	if len(prices) == 0 {
		return nil, nil
	}
	subs, err := s.store.SubscriptionsWithPrices(ctx, prices)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []meter.Customer
	for _, sub := range subs {
		if sub.Entitling(now, pastDueGrace) && !sub.Dev() {
			out = append(out, meter.Customer{
				UserID: strconv.FormatInt(sub.UserID, 10), CustomerID: sub.CustomerID, EventName: s.meterEvent(sub.PriceID),
			})
		}
	}
	return out, nil
}

// meterEvent is the event name of the meter that bills a subscription to
// price: the metered plan's MeterEvent, or MeterEventName if it names none.
func (s *Server) meterEvent(price string) string {
	if p, ok := s.plans.ForPrice(price); ok {
		return p.MeterEventOr(MeterEventName)
	}
	return MeterEventName
}

// sendAlert mails a quota alert to the account's address, from the
// alerts' background goroutine (never on a request's path), through the
// mailer the sign-in links use.
func (s *Server) sendAlert(ctx context.Context, mailer magiclink.Mailer, a usage.Alert) error {
	id, err := strconv.ParseInt(a.UserID, 10, 64)
	if err != nil {
		return err
	}
	email, found, err := s.store.UserEmail(ctx, id)
	if err != nil {
		return err
	}
	if !found {
		return nil // the account was deleted meanwhile
	}
	s.logger.Info("quota alert", "user", id, "threshold", a.Threshold, "used", a.Used, "limit", a.Limit)
	return mailer.Send(ctx, magiclink.Message{
		From: s.cfg.MailFrom, To: email, Subject: a.Subject,
		Text: a.Body + "\n\nSee your usage and change your plan at " + s.cfg.BaseURL + "/app.\n",
	})
}

// principalIdentity is who made an API request, for the meter: the key
// and its user, from apikey's principal.
func principalIdentity(r *http.Request) (keyID, userID string, ok bool) {
	p, ok := apikey.PrincipalFrom(r.Context())
	if !ok {
		return "", "", false
	}
	return p.KeyID, strconv.FormatInt(p.UserID, 10), true
}

// meterCost is the cost the meter records when no decision reported one
// (a request the plan middleware answered itself): the plan's cost.
func meterCost(r *http.Request) int64 { return int64(requestCost(r)) }

// reportDecision sits inside the plan middleware: it tells the meter the
// cost the plan's decision spent, and the alerts what is used of the
// quota, so that usage counts exactly what enforcement charged.
func (s *Server) reportDecision(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if d, ok := plan.DecisionFrom(ctx); ok {
			usage.SetCost(ctx, int64(d.Cost))
			if q, ok := d.Quota(); ok && !d.FailedOpen {
				if p, ok := apikey.PrincipalFrom(ctx); ok {
					used := max(0, q.Quota.Count-q.Remaining)
					s.alerts.Observe(strconv.FormatInt(p.UserID, 10), d.PeriodStart, d.PeriodEnd, used, q.Quota.Count)
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// usageHandler serves GET /v1/usage: the caller's own usage, with the
// plan and the quota of the request's decision.
func (s *Server) usageHandler() http.Handler {
	return usage.NewHandler(s.store, usage.HandlerOptions{
		User: func(r *http.Request) (string, bool) {
			_, user, ok := principalIdentity(r)
			return user, ok
		},
		Quota:  s.usageQuota,
		Now:    s.now,
		Logger: s.logger,
	})
}

// usageQuota is the plan and quota GET /v1/usage reports: from the
// request's own decision (which GET /v1/usage spent 1 of).
func (s *Server) usageQuota(r *http.Request, _ string) (usage.Quota, error) {
	d, ok := plan.DecisionFrom(r.Context())
	if !ok {
		return usage.Quota{}, errors.New("no plan decision for the request")
	}
	q := usage.Quota{Plan: d.Plan}
	if pol, ok := d.Quota(); ok {
		q.PeriodStart, q.PeriodEnd = d.PeriodStart, d.PeriodEnd
		q.Limit = pol.Quota.Count
		q.Used = max(0, pol.Quota.Count-pol.Remaining)
	}
	return q, nil
}

// housekeep keeps the usage tables bounded, every housekeepingEvery
// until stop is closed: hourly counts rolled up into days after 30 days
// and days deleted after 400, alert claims of past periods and sent meter
// events deleted. Every instance may run it: the store's operations are
// safe concurrently.
func (s *Server) housekeep(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(housekeepingEvery)
	defer t.Stop()
	for {
		s.housekeepOnce(context.Background())
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// housekeepOnce runs one round of housekeeping.
func (s *Server) housekeepOnce(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	now := s.now()
	rolled, pruned, err := usage.Retention{}.Apply(ctx, s.store, now)
	if err != nil {
		s.logger.Warn("usage retention", "error", err)
	} else if rolled+pruned > 0 {
		s.logger.Info("usage retention", "rolled_up", rolled, "pruned", pruned)
	}
	if _, err := s.store.PruneAlerts(ctx, now.Add(-alertsKeptFor)); err != nil {
		s.logger.Warn("pruning quota alert claims", "error", err)
	}
	if _, err := s.store.PruneMeterEvents(ctx, now.Add(-meterEventsKeptFor)); err != nil {
		s.logger.Warn("pruning sent meter events", "error", err)
	}
	s.pruneAudit(ctx)
}

// Metering returns the server's usage meter.
func (s *Server) Metering() *usage.Meter { return s.meter }

// MeterReporter returns the reporter that bills the metered plans' usage
// through Stripe; nil in dev mode.
func (s *Server) MeterReporter() *meter.Reporter { return s.reporter }

// Alerts returns the server's quota alerts.
func (s *Server) Alerts() *usage.Alerts { return s.alerts }

// ErrNoSuchUser is returned by [Server.UsageReport] for an address no
// account has.
var ErrNoSuchUser = errors.New("no user has that email address")

// UsageReport returns the usage of the account with the email address as
// GET /v1/usage would answer its keys, for the operator CLI: query holds
// the same parameters (from, to, granularity, key_id; default the
// current period by the day), and the quota is the plan's as the decider
// knows it now, without spending any of it.
func (s *Server) UsageReport(ctx context.Context, email string, query url.Values) (usage.Response, error) {
	userID, found, err := s.store.UserByEmail(ctx, email)
	if err != nil {
		return usage.Response{}, err
	}
	if !found {
		return usage.Response{}, ErrNoSuchUser
	}
	user := strconv.FormatInt(userID, 10)
	var q usage.Quota // no period: Report takes the calendar month
	cp, err := s.userPlan(ctx, userID)
	if err != nil {
		return usage.Response{}, err
	}
	if cp.Plan != nil {
		q.Plan = cp.Plan.Name
		d, err := s.decider.Peek(ctx, plan.Request{Plan: cp.Plan, User: user, Anchor: cp.Anchor})
		if err != nil {
			return usage.Response{}, err
		}
		if pol, ok := d.Quota(); ok && cp.Plan.Budget == plan.PerUser {
			q.PeriodStart, q.PeriodEnd = d.PeriodStart.UTC(), d.PeriodEnd.UTC()
			q.Limit, q.Used = pol.Quota.Count, max(0, pol.Quota.Count-pol.Remaining)
		}
	}
	return usage.Report(ctx, s.store, user, query, q, usage.ReportOptions{Now: s.now()})
}
