package billing

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apikit/apikit/plan"
)

// Service is sign-up through Stripe Checkout, the Stripe webhook, the
// customer portal and the entitlement check. It is safe for concurrent use.
type Service struct {
	store  Store
	client *Client
	opts   Options
	cop    *http.CrossOriginProtection

	cacheMu sync.Mutex
	cache   map[int64]entitlement
	// gen counts forgets: an answer read while one happened is not cached.
	gen atomic.Uint64
	// Entries loaded before distrust (unix nanoseconds) are served for at
	// most Options.FallbackTTL; see ShortenTTL.
	distrust atomic.Int64

	devMu       sync.Mutex
	devSessions map[string]devSession

	sold map[string]bool // Options.PriceID and PriceIDs

	stats counters

	// The pruner (prune.go).
	stop      chan struct{}
	pruner    sync.WaitGroup
	baseCtx   context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// entitlement is what one read of a user's subscriptions says, cached
// for Options.CacheTTL: whether they are entitled and their plan.
type entitlement struct {
	ok      bool
	plan    CurrentPlan
	hasPlan bool
	loaded  time.Time // when the store was asked
	expires time.Time
}

// maxCached bounds the entitlement cache; past it the cache is emptied.
const maxCached = 100_000

// New returns a Service over the store. c may be nil only in dev mode.
// Unless [Options.PruneInterval] is negative, the Service prunes old rows
// in the background until [Service.Close].
func New(st Store, c *Client, opts Options) (*Service, error) {
	if st == nil {
		return nil, optionsError("New needs a Store")
	}
	opts, err := opts.withDefaults(c)
	if err != nil {
		return nil, err
	}
	if opts.DevMode {
		c = nil
	}
	s := &Service{
		store: st, client: c, opts: opts,
		cop:         http.NewCrossOriginProtection(),
		cache:       make(map[int64]entitlement),
		devSessions: make(map[string]devSession),
		sold:        make(map[string]bool),
	}
	s.distrust.Store(math.MinInt64)
	for _, p := range opts.PriceIDs {
		s.sold[p] = true
	}
	if opts.Plans != nil {
		for _, p := range opts.Plans.Plans() {
			for _, price := range p.Prices {
				s.sold[price] = true
			}
		}
	}
	s.startPruner()
	s.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.stats.crossOrigin.Add(1)
		s.fail(w, r, http.StatusForbidden, ErrCrossOrigin)
	}))
	return s, nil
}

// DevMode reports whether the service runs without Stripe
// ([Options.DevMode]).
func (s *Service) DevMode() bool { return s.opts.DevMode }

// Register adds the service's routes to mux:
//
//	POST     SignupPath       /signup             [Service.CheckoutHandler]
//	GET      SuccessPath      /billing/success    [Service.SuccessHandler]
//	GET,POST PortalPath       /billing/portal     [Service.PortalHandler]
//	POST     ChangePlanPath   /billing/plan       [Service.ChangePlanHandler]
//	POST     WebhookPath      /webhooks/stripe    [Service.WebhookHandler]
//	GET,POST DevCheckoutPath  /billing/dev-checkout [Service.DevCheckoutHandler], in dev mode only
func (s *Service) Register(mux *http.ServeMux) {
	mux.Handle("POST "+s.opts.SignupPath, s.CheckoutHandler())
	mux.Handle("GET "+s.opts.SuccessPath, s.SuccessHandler())
	mux.Handle(s.opts.PortalPath, s.PortalHandler())
	mux.Handle("POST "+s.opts.ChangePlanPath, s.ChangePlanHandler())
	mux.Handle("POST "+s.opts.WebhookPath, s.WebhookHandler())
	if s.opts.DevMode {
		mux.Handle(s.opts.DevCheckoutPath, s.DevCheckoutHandler())
	}
}

// Entitled reports whether the user may use the API now: whether one of
// their subscriptions to a price sold ([Options.PriceID], [Options.PriceIDs],
// the prices of [Options.Plans]) is active or trialing, or past_due for
// less than [Options.PastDueGrace]. A subscription to any other price
// grants nothing; a dev subscription ([Subscription.Dev]) grants only in
// dev mode, until its period ends. A user on the free plan has no
// entitling subscription, so is not Entitled: with plans, ask
// [Service.Plan]. Answers are cached for [Options.CacheTTL]; an error
// means the store failed (fail closed: do not serve).
func (s *Service) Entitled(ctx context.Context, userID int64) (bool, error) {
	e, err := s.entitlement(ctx, userID)
	return e.ok, err
}

// CurrentPlan is the plan a user's requests are decided against now.
type CurrentPlan struct {
	// Plan is the catalog's plan for the price of the user's entitling
	// subscription, or the free plan.
	Plan *plan.Plan
	// Anchor is the subscription's billing-period anchor (Stripe's
	// billing_cycle_anchor, else the start of its current period), for
	// quotas per plan.BillingPeriod: plan.Request.Anchor. The zero time
	// for the free plan (such quotas are then monthly).
	Anchor time.Time
	// Status is the subscription's status ("active", "trialing",
	// "past_due"), "" for the free plan.
	Status string
}

// Plan returns the user's current plan: the plan of the price of their
// entitling subscription (the newest one, if several entitle; see
// [Service.Entitled] for which do), found with [plan.Catalog.ForPrice],
// else the catalog's free plan; an error wrapping [ErrNoPlan] (403) if
// neither, and always without [Options.Plans]. A dev subscription whose
// price is in no plan (one given away before plans were configured) has
// the plan of [Options.PriceID].
//
// Answers are cached with [Service.Entitled]'s, from the same read of the
// store, for [Options.CacheTTL], and dropped when this Service applies a
// change to the user's subscriptions (a webhook, a checkout, a dev plan
// change). So a plan change — upgrade, downgrade, cancellation — is
// served on the user's next request by the instance that received it,
// and on every other instance within CacheTTL. An error wrapping
// [ErrUnavailable] means the store failed (503; fail closed).
func (s *Service) Plan(ctx context.Context, userID int64) (CurrentPlan, error) {
	e, err := s.entitlement(ctx, userID)
	if err != nil {
		return CurrentPlan{}, err
	}
	if !e.hasPlan {
		if s.opts.Plans == nil {
			return CurrentPlan{}, fmt.Errorf("%w: Options.Plans is not set", ErrNoPlan)
		}
		return CurrentPlan{}, ErrNoPlan
	}
	return e.plan, nil
}

// entitlement returns the user's cached entitlement, reading their
// subscriptions on a miss.
func (s *Service) entitlement(ctx context.Context, userID int64) (entitlement, error) {
	now := s.opts.Now()
	s.cacheMu.Lock()
	e, ok := s.cache[userID]
	s.cacheMu.Unlock()
	if ok && now.Before(e.expires) &&
		(e.loaded.UnixNano() >= s.distrust.Load() || now.Sub(e.loaded) < s.opts.FallbackTTL) {
		s.stats.cacheHits.Add(1)
		return e, nil
	}
	s.stats.cacheMisses.Add(1)
	gen := s.gen.Load()
	subs, err := s.store.Subscriptions(ctx, userID)
	if err != nil {
		return entitlement{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	e = s.entitle(subs, now)
	e.loaded = now
	e.expires = now.Add(s.opts.CacheTTL)
	s.cacheMu.Lock()
	// An answer read while the user's entitlement was forgotten may
	// predate the change: serve it, but do not cache it.
	if s.gen.Load() == gen {
		if len(s.cache) >= maxCached {
			clear(s.cache)
		}
		s.cache[userID] = e
	}
	s.cacheMu.Unlock()
	return e, nil
}

// entitle computes a user's entitlement and plan from their subscriptions
// (newest first).
func (s *Service) entitle(subs []Subscription, now time.Time) entitlement {
	var e entitlement
	for _, sub := range subs {
		if !s.grants(sub, now) {
			continue
		}
		e.ok = true
		if p, ok := s.planOf(sub); ok {
			e.plan = CurrentPlan{Plan: p, Anchor: sub.Anchor(), Status: sub.Status}
			e.hasPlan = true
			return e
		}
	}
	if s.opts.Plans != nil {
		if free, ok := s.opts.Plans.Free(); ok {
			e.plan, e.hasPlan = CurrentPlan{Plan: free}, true
		}
	}
	return e
}

// planOf returns the plan a subscription's price grants.
func (s *Service) planOf(sub Subscription) (*plan.Plan, bool) {
	if s.opts.Plans == nil {
		return nil, false
	}
	if p, ok := s.opts.Plans.ForPrice(sub.PriceID); ok {
		return p, true
	}
	if sub.Dev() {
		return s.opts.Plans.ForPrice(s.opts.PriceID)
	}
	return nil, false
}

// Forget drops the user's cached entitlement and plan, so that the next
// [Service.Entitled] or [Service.Plan] reads the store. The Service calls
// it itself for every change it applies (and then [Options.OnForget]);
// call it when another instance reports a change (package invalidate).
func (s *Service) Forget(userID int64) {
	s.cacheMu.Lock()
	s.gen.Add(1)
	delete(s.cache, userID)
	s.cacheMu.Unlock()
}

// ForgetAll drops every cached entitlement and plan.
func (s *Service) ForgetAll() {
	s.cacheMu.Lock()
	s.gen.Add(1)
	clear(s.cache)
	s.cacheMu.Unlock()
}

// ShortenTTL makes every cached entitlement, and every one read from now
// on, be served for at most [Options.FallbackTTL] after it was read, until
// [Service.RestoreTTL]: for while changes applied by other instances may go
// unheard (an invalidation bus lost its subscription).
func (s *Service) ShortenTTL() { s.distrust.Store(math.MaxInt64) }

// RestoreTTL ends [Service.ShortenTTL]: entitlements read from now on are
// served for CacheTTL again; those read before keep the FallbackTTL, since
// a change to them may have gone unheard.
func (s *Service) RestoreTTL() { s.distrust.Store(s.opts.Now().UnixNano()) }

func (s *Service) forget(userID int64) {
	s.Forget(userID)
	if s.opts.OnForget != nil {
		s.opts.OnForget(userID)
	}
}

// Subscription returns the user's main subscription among those this
// service sold (see [Service.Entitled]): the newest one that entitles them,
// else the newest one. found is false for a user who has no such
// subscription.
func (s *Service) Subscription(ctx context.Context, userID int64) (Subscription, bool, error) {
	subs, err := s.store.Subscriptions(ctx, userID)
	if err != nil {
		return Subscription{}, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	sub, ok := s.primary(subs)
	return sub, ok, nil
}

func (s *Service) primary(subs []Subscription) (Subscription, bool) {
	now := s.opts.Now()
	var newest Subscription
	found := false
	for _, sub := range subs {
		if !s.counts(sub) {
			continue
		}
		if sub.Entitling(now, s.opts.PastDueGrace) {
			return sub, true
		}
		if !found {
			newest, found = sub, true
		}
	}
	return newest, found
}

// counts reports whether the subscription is one this service sold: to a
// configured price, or, in dev mode only, a dev subscription.
func (s *Service) counts(sub Subscription) bool {
	if sub.Dev() {
		return s.opts.DevMode
	}
	return s.sold[sub.PriceID]
}

// grants reports whether the subscription entitles its user now.
func (s *Service) grants(sub Subscription, now time.Time) bool {
	return s.counts(sub) && sub.Entitling(now, s.opts.PastDueGrace)
}

// Stats is a snapshot of what a [Service] has done since it started.
type Stats struct {
	CheckoutsCreated uint64 // Checkout sessions created (or dev checkouts started)
	CheckoutErrors   uint64 // sign-ups that failed on Stripe or the store
	SignInLinksSent  uint64 // sign-in links sent after a completed checkout
	SignInLinkErrors uint64 // Options.SendSignInLink failed
	SuccessRefused   uint64 // success pages refused: incomplete, unknown or foreign sessions
	RateLimited      uint64 // sign-ups and dev checkouts refused by Options.Limiter
	CrossOrigin      uint64 // cross-origin requests refused
	PortalSessions   uint64
	PortalErrors     uint64
	DevCheckouts     uint64 // dev-mode checkouts completed
	PlanChanges      uint64 // plan changes answered: applied (dev mode), or sent to Checkout or the portal
	FreeSignups      uint64 // sign-ups for the free plan (a sign-in link, no Checkout)

	WebhooksApplied   uint64 // events that changed state (or were recorded)
	WebhooksDuplicate uint64 // redeliveries of applied events
	WebhooksIgnored   uint64 // events of types this package does not handle
	WebhooksInvalid   uint64 // refused with 400: signature, timestamp, version, payload, size
	WebhooksFailed    uint64 // answered 5xx for Stripe to retry: the store failed

	Pruned      uint64 // event ids and checkout sessions deleted by pruning
	PruneErrors uint64 // prunings that failed
	AuditErrors uint64 // calls of Options.Audit that returned an error

	EntitledCacheHits   uint64
	EntitledCacheMisses uint64
}

type counters struct {
	checkouts, checkoutErrors, linksSent, linkErrors, successRefused, portals, portalErrors, devCheckouts atomic.Uint64
	limited, crossOrigin, planChanges, freeSignups                                                        atomic.Uint64
	applied, duplicate, ignored, invalid, failed                                                          atomic.Uint64
	cacheHits, cacheMisses                                                                                atomic.Uint64
	pruned, pruneErrors, auditErrors                                                                      atomic.Uint64
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	c := &s.stats
	return Stats{
		CheckoutsCreated: c.checkouts.Load(), CheckoutErrors: c.checkoutErrors.Load(),
		SignInLinksSent: c.linksSent.Load(), SignInLinkErrors: c.linkErrors.Load(), SuccessRefused: c.successRefused.Load(),
		RateLimited: c.limited.Load(), CrossOrigin: c.crossOrigin.Load(),
		PortalSessions: c.portals.Load(), PortalErrors: c.portalErrors.Load(), DevCheckouts: c.devCheckouts.Load(),
		PlanChanges: c.planChanges.Load(), FreeSignups: c.freeSignups.Load(),
		WebhooksApplied: c.applied.Load(), WebhooksDuplicate: c.duplicate.Load(), WebhooksIgnored: c.ignored.Load(),
		WebhooksInvalid: c.invalid.Load(), WebhooksFailed: c.failed.Load(),
		EntitledCacheHits: c.cacheHits.Load(), EntitledCacheMisses: c.cacheMisses.Load(),
		Pruned: c.pruned.Load(), PruneErrors: c.pruneErrors.Load(), AuditErrors: c.auditErrors.Load(),
	}
}
