package app

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/apikit/apikit/apikey/secretscan"
	"github.com/apikit/apikit/plan"
	"github.com/apikit/apikit/ratelimit"
)

// EnvHelp documents the environment variables [ConfigFromEnv] reads; the
// favoritesapi command prints it for -h.
const EnvHelp = `Environment:
  ADDR                   listen address (default localhost:8080)
  BASE_URL               public URL of the service, used in emails and Stripe
                         redirects (default http:// + ADDR)
  DATABASE_URL           SQLite file or postgres:// URL (default favoritesapi.db)
  SMTP_URL               smtp://user:pass@host:587 or smtps://…; unset: emails are
                         printed to stderr
  MAIL_FROM              sender address (default FavoritesAPI <noreply@ + BASE_URL host>)
  STRIPE_SECRET_KEY      sk_test_… or sk_live_…; unset: billing runs in dev mode
                         (no payment taken; BASE_URL must then be on localhost)
  STRIPE_WEBHOOK_SECRET  whsec_… of the webhook endpoint BASE_URL/webhooks/stripe
  STRIPE_PRICE_ID        price_… of the hobby plan's subscription
  STRIPE_PRO_PRICE_ID    price_… of the pro plan's subscription: a usage-based price
                         on the Stripe meter whose event name is api_requests
                         (unset with a Stripe key: no pro plan)
  STRIPE_API_URL         Stripe API base URL, e.g. a local stripe-mock (default Stripe)
  REDIS_URL              redis://host:6379/0 for plan budgets and limits shared by
                         several instances; unset: in memory, per instance
  INVALIDATION           how instances tell each other of revoked keys and changed
                         plans: postgres (LISTEN/NOTIFY; the default with a postgres://
                         DATABASE_URL), redis (pub/sub on REDIS_URL) or none (the
                         default on SQLite, one process)
  INVALIDATION_URL       with INVALIDATION=postgres, a postgres:// URL for the one
                         listening connection, which needs a session: set it when
                         DATABASE_URL goes through a pooler in transaction mode
                         (default DATABASE_URL)
  PLANS_FILE             JSON file of plans that replaces the built-in free, hobby and
                         pro plans; "favoritesapi plans" prints the plans in force
                         in that format
  RATE_LIMIT             replaces the first rate limit of every plan (default: the
                         plans' own), e.g. 50/15m, 10/s
  TRUSTED_PROXIES        comma-separated CIDRs of the reverse proxies in front of the
                         service (e.g. 10.0.0.0/8); only their X-Forwarded-For is
                         believed when limiting per client (default: none)
  METRICS_ADDR           listen address of /metrics and /debug/pprof/ (default
                         127.0.0.1:9090; "off" disables it); never the public listener
  OTEL_EXPORTER_OTLP_ENDPOINT
                         OpenTelemetry collector (OTLP/HTTP, e.g. http://127.0.0.1:4318):
                         traces requests, store and Redis calls, Stripe calls and mail;
                         with the other standard OTEL_* variables (OTEL_TRACES_EXPORTER,
                         OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER, …); default: no tracing
  ACCOUNT_DELETE_AT_PERIOD_END
                         true: a deleted account's subscription runs to the end of
                         the period paid for (default false: canceled at once)
  GITHUB_KEYS_URL        where GitHub's secret scanning public keys are fetched from, to
                         check the signatures of POST /github/secret-scanning (default
                         GitHub's own; tests and staging point it at a key server of theirs)
  AUDIT_RETENTION        how long the security log keeps events, as a number of days
                         ("90d") or a Go duration (default 365d)
  KEY_PREFIX             API key prefix (default fav); keys are <prefix>_live_… or
                         <prefix>_test_… (test with a test Stripe key or in dev mode)
`

// Config is FavoritesAPI's configuration. [ConfigFromEnv] fills it from the
// environment; tests and the load tool fill it directly.
type Config struct {
	Addr                string
	BaseURL             string
	DatabaseURL         string
	SMTPURL             string
	MailFrom            string
	StripeSecretKey     string
	StripeWebhookSecret string
	StripePriceID       string
	StripeProPriceID    string
	StripeAPIURL        string
	RedisURL            string
	// Invalidation is the bus that carries revocations and plan changes
	// between instances: "postgres", "redis" or "none" (INVALIDATION;
	// default postgres with a PostgreSQL DatabaseURL, none on SQLite).
	Invalidation string
	// InvalidationURL is where the postgres bus listens
	// (INVALIDATION_URL; default DatabaseURL).
	InvalidationURL string
	// PlansFile is the plan file PLANS_FILE names; ConfigFromEnv reads it
	// into Plans.
	PlansFile string
	// Plans are the plans customers may buy; nil means FavoritesAPI's
	// built-in free, hobby and pro plans ([BuiltinPlans]).
	Plans *plan.Catalog
	// RateLimit, if set, replaces the first rate limit of every plan
	// (RATE_LIMIT, as the single per-key limit of earlier versions was
	// set).
	RateLimit      ratelimit.Limit
	KeyPrefix      string
	TrustedProxies []netip.Prefix
	MetricsAddr    string
	// AccountDeleteAtPeriodEnd lets the subscription of a deleted account
	// run to the end of the period paid for (ACCOUNT_DELETE_AT_PERIOD_END
	// = true); by default it is canceled at once.
	AccountDeleteAtPeriodEnd bool
	// GitHubKeysURL is where GitHub's secret scanning keys are fetched
	// from (GITHUB_KEYS_URL; default secretscan.DefaultKeysURL).
	GitHubKeysURL string
	// AuditRetention is how long the security log keeps events
	// (AUDIT_RETENTION; default DefaultAuditRetention).
	AuditRetention time.Duration
}

// ConfigFromEnv reads the variables listed in [EnvHelp] through getenv
// (os.Getenv in the command) and applies the defaults.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Addr:                getenv("ADDR"),
		BaseURL:             getenv("BASE_URL"),
		DatabaseURL:         getenv("DATABASE_URL"),
		SMTPURL:             getenv("SMTP_URL"),
		MailFrom:            getenv("MAIL_FROM"),
		StripeSecretKey:     getenv("STRIPE_SECRET_KEY"),
		StripeWebhookSecret: getenv("STRIPE_WEBHOOK_SECRET"),
		StripePriceID:       getenv("STRIPE_PRICE_ID"),
		StripeProPriceID:    getenv("STRIPE_PRO_PRICE_ID"),
		PlansFile:           getenv("PLANS_FILE"),
		StripeAPIURL:        getenv("STRIPE_API_URL"),
		RedisURL:            getenv("REDIS_URL"),
		Invalidation:        getenv("INVALIDATION"),
		InvalidationURL:     getenv("INVALIDATION_URL"),
		KeyPrefix:           getenv("KEY_PREFIX"),
		MetricsAddr:         getenv("METRICS_ADDR"),
		GitHubKeysURL:       getenv("GITHUB_KEYS_URL"),
	}
	if v := getenv("AUDIT_RETENTION"); v != "" {
		d, err := parseRetention(v)
		if err != nil {
			return Config{}, fmt.Errorf("AUDIT_RETENTION: %w", err)
		}
		c.AuditRetention = d
	}
	if v := getenv("ACCOUNT_DELETE_AT_PERIOD_END"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return Config{}, fmt.Errorf("ACCOUNT_DELETE_AT_PERIOD_END %q: want true or false", v)
		}
		c.AccountDeleteAtPeriodEnd = b
	}
	proxies, err := ratelimit.ParseTrustedProxies(getenv("TRUSTED_PROXIES"))
	if err != nil {
		return Config{}, fmt.Errorf("TRUSTED_PROXIES: %w", err)
	}
	c.TrustedProxies = proxies
	if v := getenv("RATE_LIMIT"); v != "" {
		l, err := ratelimit.ParseLimit(v)
		if err != nil {
			return Config{}, fmt.Errorf("RATE_LIMIT: %w", err)
		}
		c.RateLimit = l
	}
	if c.PlansFile != "" {
		plans, err := plan.LoadFile(c.PlansFile)
		if err != nil {
			return Config{}, fmt.Errorf("PLANS_FILE: %w", err)
		}
		c.Plans = plans
	}
	return c.withDefaults()
}

// withDefaults fills in defaults and checks the configuration.
func (c Config) withDefaults() (Config, error) {
	c.Addr = cmp.Or(c.Addr, "localhost:8080")
	c.BaseURL = strings.TrimRight(cmp.Or(c.BaseURL, "http://"+c.Addr), "/")
	c.DatabaseURL = cmp.Or(c.DatabaseURL, "favoritesapi.db")
	c.KeyPrefix = cmp.Or(c.KeyPrefix, "fav")
	c.MetricsAddr = cmp.Or(c.MetricsAddr, "127.0.0.1:9090")
	c.GitHubKeysURL = cmp.Or(c.GitHubKeysURL, secretscan.DefaultKeysURL)
	if c.AuditRetention <= 0 {
		c.AuditRetention = DefaultAuditRetention
	}
	if k, err := url.Parse(c.GitHubKeysURL); err != nil || (k.Scheme != "http" && k.Scheme != "https") || k.Host == "" {
		return Config{}, fmt.Errorf("GITHUB_KEYS_URL %q must be an http(s) URL", c.GitHubKeysURL)
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("BASE_URL %q must be an http(s) URL without query, such as https://api.example.com", c.BaseURL)
	}
	if c.MailFrom == "" {
		c.MailFrom = "FavoritesAPI <noreply@" + mailDomain(u.Hostname()) + ">"
	}
	if c.StripeSecretKey == "" && !loopbackHost(u.Hostname()) {
		return Config{}, fmt.Errorf("without STRIPE_SECRET_KEY billing runs in dev mode, which gives subscriptions away, "+
			"so it serves only a BASE_URL on localhost (not %q): set STRIPE_SECRET_KEY, STRIPE_PRICE_ID and STRIPE_WEBHOOK_SECRET", c.BaseURL)
	}
	if c.StripeSecretKey == "" && !loopbackAddr(c.Addr) {
		// BASE_URL says where links point, not who can connect: a listener
		// on every interface would give subscriptions to the whole network.
		return Config{}, fmt.Errorf("without STRIPE_SECRET_KEY billing runs in dev mode, which gives subscriptions away, "+
			"so it listens only on a loopback address (ADDR %q is reachable from other machines): "+
			"use ADDR=localhost:8080, or set STRIPE_SECRET_KEY, STRIPE_PRICE_ID and STRIPE_WEBHOOK_SECRET", c.Addr)
	}
	if c.StripeSecretKey != "" {
		if c.StripePriceID == "" && c.Plans == nil {
			return Config{}, fmt.Errorf("STRIPE_PRICE_ID is required with STRIPE_SECRET_KEY (or a PLANS_FILE with prices)")
		}
		if c.StripeWebhookSecret == "" {
			return Config{}, fmt.Errorf("STRIPE_WEBHOOK_SECRET is required with STRIPE_SECRET_KEY")
		}
	}
	postgresURL := func(u string) bool {
		return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
	}
	if c.Invalidation == "" {
		c.Invalidation = "none"
		if postgresURL(c.DatabaseURL) {
			c.Invalidation = "postgres"
		}
	}
	switch c.Invalidation {
	case "none":
	case "postgres":
		c.InvalidationURL = cmp.Or(c.InvalidationURL, c.DatabaseURL)
		if !postgresURL(c.InvalidationURL) {
			return Config{}, fmt.Errorf("INVALIDATION=postgres needs a postgres:// DATABASE_URL (or INVALIDATION_URL)")
		}
	case "redis":
		if c.RedisURL == "" {
			return Config{}, fmt.Errorf("INVALIDATION=redis needs REDIS_URL")
		}
	default:
		return Config{}, fmt.Errorf("INVALIDATION %q: want postgres, redis or none", c.Invalidation)
	}
	if c.Plans == nil {
		c.Plans = BuiltinPlans(c.hobbyPrice(), c.proPrice())
	}
	if c.RateLimit != (ratelimit.Limit{}) {
		plans, err := withFirstLimit(c.Plans, c.RateLimit)
		if err != nil {
			return Config{}, fmt.Errorf("RATE_LIMIT %s: %w", c.RateLimit, err)
		}
		c.Plans = plans
	}
	if err := affordable(c.Plans); err != nil {
		return Config{}, err
	}
	return c, nil
}

// loopbackHost reports whether a host name or address stays on this
// machine: "localhost", a name under ".localhost" (RFC 6761), or an address
// in 127.0.0.0/8 or ::1.
func loopbackHost(host string) bool {
	h := strings.ToLower(host)
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	return err == nil && ip.IsLoopback()
}

// loopbackAddr reports whether a listen address such as "localhost:8080"
// accepts connections only from this machine. An empty host (":8080")
// listens on every interface.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && host != "" && loopbackHost(host)
}

// mailDomain returns a domain for the default sender: the service's host,
// or localhost.localdomain for a loopback address, which has no mail
// domain of its own.
func mailDomain(host string) string {
	if host == "localhost" || strings.Count(host, ".") == 3 || strings.Contains(host, ":") || !strings.Contains(host, ".") {
		return "localhost.localdomain"
	}
	return host
}

// DevBilling reports whether billing runs in dev mode (no Stripe key).
func (c Config) DevBilling() bool { return c.StripeSecretKey == "" }

// LiveKeys reports whether issued keys are live keys: only with a live
// Stripe key. Test Stripe keys and dev mode issue test keys.
func (c Config) LiveKeys() bool {
	return strings.HasPrefix(c.StripeSecretKey, "sk_live_") || strings.HasPrefix(c.StripeSecretKey, "rk_live_")
}

// KeyEnvPrefix returns the prefix of issued keys, such as "fav_live".
func (c Config) KeyEnvPrefix() string {
	if c.LiveKeys() {
		return c.KeyPrefix + "_live"
	}
	return c.KeyPrefix + "_test"
}

// parseRetention reads a retention: a number of days such as "90d", or a
// Go duration such as "2160h"; at least a day.
func parseRetention(v string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days > 100*366 {
			return 0, fmt.Errorf("%q: want a number of days such as 365d, or a duration such as 8760h", v)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			return 0, fmt.Errorf("%q: want a number of days such as 365d, or a duration such as 8760h", v)
		}
	}
	if d < 24*time.Hour {
		return 0, fmt.Errorf("%q: keep events at least a day", v)
	}
	return d, nil
}
