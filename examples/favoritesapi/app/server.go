// Package app is FavoritesAPI: a complete API business assembled from
// apikit's packages. The favoritesapi command serves it; tests, the load
// tool and other programs build it with [New] and serve [Server.Handler].
//
// The parts and where they come from:
//
//   - API keys (package apikey): issued on the dashboard, verified by the
//     bearer middleware in front of /v1/, with a cache and batched
//     last-used writes;
//   - plans (package plan): free, hobby and pro, or those of PLANS_FILE;
//     each API request is decided against its plan's rate limits and
//     quota in one step, per user, in memory or in Redis (plan/redisplan),
//     with quota usage kept in the database;
//   - rate limits (package ratelimit): per client, on what strangers can
//     call (sign-in, sign-up, key look-ups);
//   - passwordless sign-in (package magiclink): /login, /login/verify,
//     /logout and the session that guards /app;
//   - billing (package billing): /signup through Stripe Checkout (or the
//     dev checkout), the webhook, the customer portal, and Entitled, which
//     decides whether a key may call the API;
//   - storage (packages store/sqlite and store/postgres): apikit's tables
//     and the application's own favorites table, in one database.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/apikit/apikit/apikey"
	"github.com/apikit/apikit/apikey/secretscan"
	"github.com/apikit/apikit/audit"
	"github.com/apikit/apikit/billing"
	"github.com/apikit/apikit/billing/meter"
	"github.com/apikit/apikit/invalidate"
	"github.com/apikit/apikit/magiclink"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/plan/redisplan"
	"github.com/apikit/apikit/ratelimit"
	"github.com/apikit/apikit/ratelimit/redislimit"
	"github.com/apikit/apikit/store"
	"github.com/apikit/apikit/store/postgres"
	"github.com/apikit/apikit/store/sqlite"
	"github.com/apikit/apikit/usage"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// RollGrace is how long a rolled key's old token keeps working.
const RollGrace = 24 * time.Hour

// Options are the parts of a [Server] that are not configuration: where
// its output goes, and replacements for tests.
type Options struct {
	// Logger receives the server's logs (default: text to Stderr at info).
	Logger *slog.Logger
	// Stderr is where emails are printed when no SMTP_URL is configured
	// (default os.Stderr).
	Stderr io.Writer
	// Mailer, if set, sends the login emails instead of SMTP_URL or the
	// console.
	Mailer magiclink.Mailer
	// HTTPClient, if set, is used for calls to Stripe.
	HTTPClient *http.Client
	// KeyCacheTTL is how long a verified key is served from memory before
	// the database is asked again, and so how long a key revoked on another
	// instance keeps working here (default 30 seconds; see
	// apikey.VerifierOptions.CacheTTL).
	KeyCacheTTL time.Duration
	// RedisPrefix starts every key the server writes to Redis (default
	// "favoritesapi:"); tests give each run its own.
	RedisPrefix string
	// RedisTimeout bounds each rate-limit decision made in Redis; past it
	// the request is served (fail open) and the failure logged (default
	// 100 ms; see redisplan.Options.Timeout).
	RedisTimeout time.Duration
	// InvalidationChannel is the channel of the invalidation bus
	// (default "favoritesapi_invalidate"); tests give each their own, as
	// NOTIFY and pub/sub channels are shared database- or server-wide.
	InvalidationChannel string
	// OverrideRefresh is how often the server reads the per-user and
	// per-key plan overrides from the database, and so how long an
	// override set by the operator CLI takes to apply (default
	// [DefaultOverrideRefresh]).
	OverrideRefresh time.Duration
	// UsageFlushInterval is how often quota usage and the request counts
	// of the usage meter are written to the database, and so the most a
	// crash loses and how soon a request shows in GET /v1/usage (default
	// 10 seconds, plan.DefaultFlushInterval and
	// usage.DefaultFlushInterval; a graceful shutdown loses nothing).
	UsageFlushInterval time.Duration
	// MeterInterval is how often the metered plans' usage is reported to
	// Stripe as meter events (default meter.DefaultInterval, 30 s); a
	// negative interval starts no background reporting, for tests that
	// call [Server.MeterReporter]'s Enqueue and Send themselves.
	MeterInterval time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// ExpiryInterval is how often the server looks for keys about to
	// expire and rolled keys whose grace period ended, to mail their
	// owners (default 1 hour, apikey.ExpiryOptions.Interval).
	ExpiryInterval time.Duration
	// TracerProvider, if set, traces the service with OpenTelemetry: a
	// span per request (otelhttp), and within it the key store's queries,
	// the plans' and limits' decisions, Redis commands, the favorites
	// queries, Stripe calls and the handling of queued emails. Nil, the
	// default, traces nothing. The favoritesapi command builds one from
	// the OTEL_* variables.
	TracerProvider trace.TracerProvider
}

// Server is a running FavoritesAPI: its store, components and routes.
type Server struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time

	store     *store.Store
	favs      *favorites
	verifier  *apikey.Verifier
	keys      *apikey.Manager
	plans     *plan.Catalog
	decider   plan.Decider         // the API's plans: rate limits and quota, one decision per request
	usage     *plan.Flusher        // quota usage, written to the database in batches
	overrides *store.OverrideCache // per-user and per-key overrides of the plans
	abuse     ratelimit.Limiter    // per-client and per-address limits of what strangers can call
	redis     *redis.Client
	bus       invalidate.Bus // revocations and plan changes, to and from the other instances
	login     *magiclink.Service
	billing   *billing.Service
	handler   http.Handler
	pages     pageSet
	metrics   *metrics
	meter     *usage.Meter     // requests per key, user and hour, written in batches
	alerts    *usage.Alerts    // quota alerts at 80 % and 100 %, mailed in the background
	reporter  *meter.Reporter  // the metered plans' usage, billed through Stripe; nil in dev mode
	audit     *audit.Log       // the security log: keys, sign-ins, billing, account changes
	mailer    magiclink.Mailer // sign-in links, quota alerts and key notices
	// secretScan is GitHub's secret scanning endpoint.
	secretScan *secretscan.Handler
	// stopExpiry stops the expiry notifier and waits for it.
	stopExpiry func()

	stopHousekeeping chan struct{}
	housekeepingDone chan struct{}

	// tracerProvider and tracer are set when the service is traced.
	tracerProvider trace.TracerProvider
	tracer         trace.Tracer

	// clientKey names the client a request comes from, for every
	// per-client limit: its address, or with TRUSTED_PROXIES the address
	// those proxies report.
	clientKey func(*http.Request) string
	// clientIP is the client's address as clientKey finds it, for the
	// security log and the keys' allowed networks.
	clientIP func(*http.Request) netip.Addr

	reloadMu               sync.Mutex // overrides reloaded on invalidations
	reloading, reloadAgain bool

	closeOnce sync.Once
	closeErr  error
}

// Open opens the database that DatabaseURL names: PostgreSQL for a
// postgres:// or postgresql:// URL, otherwise a SQLite file.
func Open(ctx context.Context, databaseURL string) (*store.Store, error) {
	return openTraced(ctx, databaseURL, nil)
}

// openTraced is [Open] with a span around each store operation (trace
// may be nil).
func openTraced(ctx context.Context, databaseURL string, trace store.Trace) (*store.Store, error) {
	if strings.HasPrefix(databaseURL, "postgres://") || strings.HasPrefix(databaseURL, "postgresql://") {
		return postgres.OpenWith(ctx, databaseURL, postgres.Options{Trace: trace})
	}
	return sqlite.OpenWith(ctx, databaseURL, sqlite.Options{Trace: trace})
}

// transactionPooled reports whether databaseURL is a PostgreSQL URL for a
// pooler in transaction mode, which sets lib/pq's binary_parameters (see
// postgres.Options.TransactionPooling): prepared statements would not
// survive the pooler's switching of server connections.
func transactionPooled(databaseURL string) bool {
	u, err := url.Parse(databaseURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return false
	}
	return u.Query().Get("binary_parameters") == "yes"
}

// Migrate applies apikit's migrations and FavoritesAPI's own to the
// database, returning those it applied.
func Migrate(ctx context.Context, st *store.Store) ([]store.Migration, error) {
	return migrate(ctx, st)
}

// New opens and migrates the database and assembles the service. Call
// [Server.Close] when done with it, after the HTTP server has shut down.
func New(ctx context.Context, cfg Config, opts Options) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(opts.Stderr, nil))
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{cfg: cfg, logger: opts.Logger, now: opts.Now, plans: cfg.Plans}
	if opts.TracerProvider != nil {
		s.tracerProvider = opts.TracerProvider
		s.tracer = opts.TracerProvider.Tracer(tracerName)
	}
	s.clientKey = ratelimit.ClientKey(ratelimit.IPKeyOptions{TrustedProxies: cfg.TrustedProxies})
	s.clientIP = clientIPFunc(cfg.TrustedProxies)
	ok := false
	defer func() {
		if !ok {
			s.Close(context.Background())
		}
	}()

	if s.store, err = openTraced(ctx, cfg.DatabaseURL, s.traceHook(trace.SpanKindClient)); err != nil {
		return nil, fmt.Errorf("opening the database: %w", err)
	}
	applied, err := migrate(ctx, s.store)
	if err != nil {
		return nil, fmt.Errorf("migrating the database: %w", err)
	}
	for _, m := range applied {
		s.logger.Info("applied migration", "scope", m.Scope, "name", m.Name)
	}
	if s.favs, err = newFavorites(ctx, s.store.DB(), !transactionPooled(cfg.DatabaseURL)); err != nil {
		return nil, err
	}
	s.audit = NewAuditLog(s.store, cfg.AuditRetention, opts.Now)

	// A server accepts the keys of its own environment only: live keys with
	// a live Stripe key, test keys otherwise (test Stripe key, dev mode), so
	// that a key issued by a free dev or test deployment never opens the
	// paid one.
	s.verifier = apikey.NewVerifier(s.store, apikey.VerifierOptions{
		Prefixes: []string{cfg.KeyEnvPrefix()},
		CacheTTL: opts.KeyCacheTTL,
		Logger:   s.logger,
		Now:      opts.Now,
		Trace:    s.traceHook(trace.SpanKindInternal),
	})
	if s.bus, err = openBus(ctx, cfg, s.store, s.logger, opts.InvalidationChannel); err != nil {
		return nil, err
	}
	s.keys = apikey.NewManager(s.store, apikey.ManagerOptions{
		Trace:          s.traceHook(trace.SpanKindInternal),
		Prefix:         cfg.KeyEnvPrefix(),
		Verifier:       s.verifier,
		MaxKeysPerUser: maxKeysPerUser,
		Now:            opts.Now,
		// Every change to a key (dashboard, API, CLI through this same
		// code) reaches the other instances' verifiers.
		OnChange: func(id string) { s.bus.Publish(invalidate.Key(id)) },
		// … and the security log: who issued, rolled or revoked it.
		Audit:  KeyAudit(s.audit),
		Logger: s.logger,
	})

	// Quota usage survives restarts and lost Redis data: it is written to
	// the database in batches and read back when a counter is missing.
	s.usage = plan.NewFlusher(s.store, plan.FlusherOptions{
		Interval: opts.UsageFlushInterval, Logger: s.logger, Trace: s.traceHook(trace.SpanKindInternal),
	})
	// Negotiated limits and quotas (the override command), read from the
	// database now and every OverrideRefresh.
	if s.overrides, err = s.store.OverrideCache(ctx, cmp.Or(opts.OverrideRefresh, DefaultOverrideRefresh), s.logger); err != nil {
		return nil, fmt.Errorf("reading plan overrides: %w", err)
	}
	if cfg.RedisURL != "" {
		ropts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		// Every Redis call gives up at its context's deadline (the
		// deciders' 100 ms), not at the client's 3 s read timeout.
		ropts.ContextTimeoutEnabled = true
		s.redis = redis.NewClient(ropts)
		if s.tracer != nil {
			s.redis.AddHook(redisTracing{s})
		}
		prefix := cmp.Or(opts.RedisPrefix, "favoritesapi:")
		// Every instance decides in one Redis, so a user's budget is one
		// budget whichever instance serves their keys.
		s.decider = redisplan.New(s.redis, redisplan.Options{
			Prefix: prefix + "plan:", Timeout: opts.RedisTimeout, Logger: s.logger,
			Overrides: s.overrides, Usage: s.usage, Trace: s.traceHook(trace.SpanKindClient),
		})
		// The limits that guard sign-in, sign-up and key lookups must hold
		// while Redis is down: they fail closed in Redis, and then decide
		// from memory instead (per instance), logged and counted.
		s.abuse = ratelimit.Fallback(
			redislimit.New(s.redis, redislimit.Options{
				Prefix: prefix + "abuse:", Timeout: opts.RedisTimeout, FailClosed: true, Logger: s.logger,
				Trace: s.traceHook(trace.SpanKindClient),
			}),
			ratelimit.NewMemory(ratelimit.MemoryOptions{Now: opts.Now}),
			ratelimit.FallbackOptions{Logger: s.logger})
	} else {
		s.decider = plan.NewMemory(plan.MemoryOptions{Now: opts.Now, Overrides: s.overrides, Usage: s.usage})
		s.abuse = ratelimit.NewMemory(ratelimit.MemoryOptions{Now: opts.Now})
	}

	mailer := opts.Mailer
	switch {
	case mailer != nil:
	case cfg.SMTPURL != "":
		if mailer, err = magiclink.NewSMTPMailer(cfg.SMTPURL, magiclink.SMTPOptions{}); err != nil {
			return nil, fmt.Errorf("SMTP_URL: %w", err)
		}
	default:
		mailer = magiclink.NewConsoleMailer(opts.Stderr)
	}
	// The sign-in pages are magiclink's, restyled to match the site.
	signinPages, err := signinFrame(cfg.DevBilling())
	if err != nil {
		return nil, err
	}
	if s.login, err = magiclink.New(s.store, magiclink.Options{
		ClientKey: s.clientKey,
		Templates: signinPages,
		BaseURL:   cfg.BaseURL,
		Mailer:    mailer,
		From:      cfg.MailFrom,
		AppName:   "FavoritesAPI",
		// With a free plan, signing up is asking for a sign-in link: the
		// account is created when the link is used.
		AllowSignup:       hasFree(cfg.Plans),
		SendLimiter:       s.abuseLimiter("login-mail", ratelimit.PerHour(5)),
		SendClientLimiter: s.abuseLimiter("login-mail-client", ratelimit.PerHour(30)),
		VerifyLimiter:     s.abuseLimiter("login-verify", ratelimit.PerMinute(20)),
		AfterLoginPath:    "/app",
		Trace:             s.traceHook(trace.SpanKindInternal),
		// A confirmed email change follows the account to Stripe, so that
		// receipts and the portal use the new address.
		OnEmailChanged: s.emailChanged,
		// Sign-ins, sign-outs, links requested and email changes go to
		// the security log.
		Audit:  loginAudit(s.audit),
		Logger: s.logger,
		Now:    opts.Now,
	}); err != nil {
		return nil, err // magiclink's errors name the package
	}

	var stripe *billing.Client
	if !cfg.DevBilling() {
		if stripe, err = billing.NewClient(billing.ClientOptions{
			Key: cfg.StripeSecretKey, URL: cfg.StripeAPIURL, HTTPClient: opts.HTTPClient,
			Trace: s.traceHook(trace.SpanKindClient),
		}); err != nil {
			return nil, fmt.Errorf("stripe: %w", err)
		}
	} else {
		s.logger.Warn("billing in DEV MODE: no STRIPE_SECRET_KEY, so sign-ups are completed on a local page and no payment is taken")
	}
	if s.billing, err = billing.New(s.store, stripe, billing.Options{
		PriceID: cfg.StripePriceID,
		// Every paid plan's price entitles, and selects the plan.
		Plans:         cfg.Plans,
		BaseURL:       cfg.BaseURL,
		WebhookSecret: cfg.StripeWebhookSecret,
		DevMode:       cfg.DevBilling(),
		// A completed checkout proves nothing about the address: billing
		// asks for a sign-in link to it, through magiclink's limits.
		SendSignInLink: s.login.SendLink,
		// Sign-ups, dev checkouts and success-page visits, per client.
		Limiter:   billing.LimiterFunc(s.abuseLimiter("billing", ratelimit.PerHour(20))),
		ClientKey: s.clientKey,
		CurrentUser: func(ctx context.Context) (int64, bool) {
			u, ok := magiclink.UserFrom(ctx)
			return u.ID, ok
		},
		AppPath: "/app",
		OnCanceled: func(ctx context.Context, userID int64) {
			s.logger.Info("subscription canceled", "user", userID)
		},
		// Plan and subscription changes (webhooks, checkouts, plan
		// changes) reach the other instances' entitlement caches.
		OnForget:     func(userID int64) { s.bus.Publish(invalidate.User(userID)) },
		PastDueGrace: pastDueGrace,
		// Subscription and plan changes go to the security log.
		Audit:  billingAudit(s.audit),
		Logger: s.logger,
		Now:    opts.Now,
	}); err != nil {
		return nil, err // billing's errors name the package
	}

	// Every API request counted per key for GET /v1/usage and the
	// dashboard's charts, quota alerts, and the metered plans' usage
	// billed through Stripe; the tables kept bounded.
	if err := s.startMetering(opts, mailer); err != nil {
		return nil, err
	}
	// Keys' owners are warned before their keys expire, and told when a
	// key of theirs was found in public (and revoked).
	s.mailer = mailer
	s.startExpiry(opts.ExpiryInterval)
	s.secretScan = s.newSecretScan()
	s.stopHousekeeping, s.housekeepingDone = make(chan struct{}), make(chan struct{})
	go s.housekeep(s.stopHousekeeping, s.housekeepingDone)

	// What the other instances change, dropped here on receipt; while the
	// bus is down, cached keys and plans are served for 1 s only.
	s.bus.Subscribe(invalidate.Handler{Event: s.invalidated, Degraded: s.degraded})

	// The collectors read the components' own Stats, so they are built
	// before the components are wrapped for tracing.
	s.metrics = s.newMetrics()
	if s.tracer != nil {
		s.decider = tracedDecider{Decider: s.decider, s: s}
		s.abuse = tracedLimiter{Limiter: s.abuse, s: s}
	}

	if s.handler, err = s.routes(); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Handler returns the service's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// HTTPServer returns an http.Server for the service with the timeouts and
// limits a server on the internet needs: slow or oversized requests are cut
// off rather than holding a connection.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Addr:              s.cfg.Addr,
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
}

// MaxHeaderBytes caps a request's header block; larger ones get 431.
const MaxHeaderBytes = 32 << 10

// Config returns the configuration the server runs with, defaults applied.
func (s *Server) Config() Config { return s.cfg }

// Store returns the server's store.
func (s *Server) Store() *store.Store { return s.store }

// Keys returns the server's API key manager.
func (s *Server) Keys() *apikey.Manager { return s.keys }

// Billing returns the server's billing service.
func (s *Server) Billing() *billing.Service { return s.billing }

// Close stops the background work (housekeeping, meter events, quota
// alerts after those queued), flushes batched writes (keys' last-used
// times, quota usage, the usage meter's counts) and the mail queue,
// bounded by ctx, and closes the store and Redis. Call it after the HTTP
// server has stopped accepting requests.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.stopExpiry != nil {
			s.stopExpiry()
		}
		if s.stopHousekeeping != nil {
			close(s.stopHousekeeping)
			<-s.housekeepingDone
		}
		if s.reporter != nil {
			// Events leased and not marked are sent again after their
			// lease, with the same identifier: billed once.
			s.reporter.Close()
		}
		if s.alerts != nil {
			// The alerts already observed are sent, within ctx: a mail
			// server that is down must not hold the shutdown (an alert not
			// sent is observed again after the restart).
			drained := make(chan struct{})
			go func() { s.alerts.Drain(); close(drained) }()
			select {
			case <-drained:
			case <-ctx.Done():
			}
			s.alerts.Close()
		}
		if s.billing != nil {
			errs = append(errs, s.billing.Close(ctx))
		}
		if s.bus != nil {
			// What was changed here reaches the others before the pool closes.
			errs = append(errs, s.bus.Close(ctx))
		}
		if s.login != nil {
			errs = append(errs, s.login.Close(ctx))
		}
		if s.verifier != nil {
			errs = append(errs, s.verifier.Flush(ctx), s.verifier.Close())
		}
		if s.overrides != nil {
			s.overrides.Close()
		}
		if s.usage != nil {
			// The quota used since the last batch: nothing is lost.
			errs = append(errs, s.usage.Close(ctx))
		}
		if s.meter != nil {
			// The requests counted since the last batch, before the store
			// closes.
			errs = append(errs, s.meter.Close(ctx))
		}
		if s.redis != nil {
			errs = append(errs, s.redis.Close())
		}
		if s.favs != nil {
			errs = append(errs, s.favs.close())
		}
		if s.store != nil {
			errs = append(errs, s.store.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// planStatus is the user's subscription status as the API reports it:
// Stripe's status, or "none" before any purchase.
func (s *Server) planStatus(ctx context.Context, userID int64) (string, error) {
	sub, found, err := s.billing.Subscription(ctx, userID)
	if err != nil {
		return "", fmt.Errorf("reading subscription of user %d: %w", userID, err)
	}
	if !found {
		return "none", nil
	}
	return sub.Status, nil
}

// abuseLimiter is one named limit of what strangers can call, on the
// server's abuse limiter (shared through Redis when there is one), in the
// Allow(ctx, key) shape that magiclink, billing and apikey take.
func (s *Server) abuseLimiter(name string, limit ratelimit.Limit) magiclink.LimiterFunc {
	return func(ctx context.Context, key string) (bool, error) {
		d, err := s.abuse.Allow(ctx, name+":"+key, limit)
		return d.Allowed, err
	}
}
