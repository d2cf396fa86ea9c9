package billing

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
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

type entitlement struct {
	ok      bool
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
	for _, p := range opts.PriceIDs {
		s.sold[p] = true
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
//	POST     WebhookPath      /webhooks/stripe    [Service.WebhookHandler]
//	GET,POST DevCheckoutPath  /billing/dev-checkout [Service.DevCheckoutHandler], in dev mode only
func (s *Service) Register(mux *http.ServeMux) {
	mux.Handle("POST "+s.opts.SignupPath, s.CheckoutHandler())
	mux.Handle("GET "+s.opts.SuccessPath, s.SuccessHandler())
	mux.Handle(s.opts.PortalPath, s.PortalHandler())
	mux.Handle("POST "+s.opts.WebhookPath, s.WebhookHandler())
	if s.opts.DevMode {
		mux.Handle(s.opts.DevCheckoutPath, s.DevCheckoutHandler())
	}
}

// Entitled reports whether the user may use the API now: whether one of
// their subscriptions to a price sold ([Options.PriceID], [Options.PriceIDs])
// is active or trialing, or past_due for less than [Options.PastDueGrace].
// A subscription to any other price grants nothing; a dev subscription
// ([Subscription.Dev]) grants only in dev mode, until its period ends. Answers are cached for [Options.CacheTTL]; an
// error means the store failed (fail closed: do not serve).
func (s *Service) Entitled(ctx context.Context, userID int64) (bool, error) {
	now := s.opts.Now()
	s.cacheMu.Lock()
	e, ok := s.cache[userID]
	s.cacheMu.Unlock()
	if ok && now.Before(e.expires) {
		s.stats.cacheHits.Add(1)
		return e.ok, nil
	}
	s.stats.cacheMisses.Add(1)
	subs, err := s.store.Subscriptions(ctx, userID)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	entitled := false
	for _, sub := range subs {
		if s.grants(sub, now) {
			entitled = true
			break
		}
	}
	s.cacheMu.Lock()
	if len(s.cache) >= maxCached {
		clear(s.cache)
	}
	s.cache[userID] = entitlement{ok: entitled, expires: now.Add(s.opts.CacheTTL)}
	s.cacheMu.Unlock()
	return entitled, nil
}

func (s *Service) forget(userID int64) {
	s.cacheMu.Lock()
	delete(s.cache, userID)
	s.cacheMu.Unlock()
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

	WebhooksApplied   uint64 // events that changed state (or were recorded)
	WebhooksDuplicate uint64 // redeliveries of applied events
	WebhooksIgnored   uint64 // events of types this package does not handle
	WebhooksInvalid   uint64 // refused with 400: signature, timestamp, version, payload, size
	WebhooksFailed    uint64 // answered 5xx for Stripe to retry: the store failed

	Pruned      uint64 // event ids and checkout sessions deleted by pruning
	PruneErrors uint64 // prunings that failed

	EntitledCacheHits   uint64
	EntitledCacheMisses uint64
}

type counters struct {
	checkouts, checkoutErrors, linksSent, linkErrors, successRefused, portals, portalErrors, devCheckouts atomic.Uint64
	limited, crossOrigin                                                                                  atomic.Uint64
	applied, duplicate, ignored, invalid, failed                                                          atomic.Uint64
	cacheHits, cacheMisses                                                                                atomic.Uint64
	pruned, pruneErrors                                                                                   atomic.Uint64
}

// Stats returns the service's counters.
func (s *Service) Stats() Stats {
	c := &s.stats
	return Stats{
		CheckoutsCreated: c.checkouts.Load(), CheckoutErrors: c.checkoutErrors.Load(),
		SignInLinksSent: c.linksSent.Load(), SignInLinkErrors: c.linkErrors.Load(), SuccessRefused: c.successRefused.Load(),
		RateLimited: c.limited.Load(), CrossOrigin: c.crossOrigin.Load(),
		PortalSessions: c.portals.Load(), PortalErrors: c.portalErrors.Load(), DevCheckouts: c.devCheckouts.Load(),
		WebhooksApplied: c.applied.Load(), WebhooksDuplicate: c.duplicate.Load(), WebhooksIgnored: c.ignored.Load(),
		WebhooksInvalid: c.invalid.Load(), WebhooksFailed: c.failed.Load(),
		EntitledCacheHits: c.cacheHits.Load(), EntitledCacheMisses: c.cacheMisses.Load(),
		Pruned: c.pruned.Load(), PruneErrors: c.pruneErrors.Load(),
	}
}
