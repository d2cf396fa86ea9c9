package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/apikit/apikit/internal/loopback"
	"github.com/apikit/apikit/plan"
)

// Options configures a [Service]. Zero values of optional fields are the
// documented defaults.
type Options struct {
	// PriceID is the Stripe price that sign-up subscribes to ("price_…")
	// when the form names no plan. Required unless DevMode is set or Plans
	// has a paid plan, whose first price is then the default. It always
	// entitles.
	PriceID string
	// PriceIDs are further prices whose subscriptions entitle (older
	// prices, other intervals). A subscription to any price not listed here,
	// nor in PriceID, nor in a plan of Plans — another product of the same
	// Stripe account — grants nothing: [Service.Entitled] is false for it
	// and [Service.Subscription] ignores it.
	PriceIDs []string
	// Plans, if set, are the plans this service sells (see package plan):
	// every price of every plan entitles, sign-up and [Service.ChangePlanHandler]
	// take a plan by name, and [Service.Plan] tells which plan a user's
	// requests are decided against: the plan of the price of their
	// entitling subscription, else the catalog's free plan. PriceID and
	// PriceIDs, when set, must each be a price of one of the plans, so that
	// every entitling subscription has a plan ([New] says which price has
	// none).
	Plans *plan.Catalog
	// BaseURL is the application's absolute origin, such as
	// "https://favorites.example". Success and cancel URLs are built from
	// it, never from the request's Host header. Required.
	BaseURL string
	// WebhookSecret is the webhook endpoint's signing secret ("whsec_…").
	// Required unless DevMode is set; without it every webhook is refused.
	WebhookSecret string
	// IgnoreAPIVersionMismatch accepts webhook events whose api_version is
	// not stripe-go v76's (2023-10-16). Leave it false and pin the webhook
	// endpoint to 2023-10-16 in the Stripe dashboard: objects of other
	// versions may decode wrongly.
	IgnoreAPIVersionMismatch bool

	// SendSignInLink sends a sign-in link to the address, which proves it
	// (with magiclink: queue a login email, through its per-address
	// limiter). Billing never signs anyone in: after a completed Checkout
	// (or dev checkout) whose browser is not signed in as the buyer, it
	// calls SendSignInLink once per Checkout session with the account's
	// address and shows a page that says where the link went. Required.
	SendSignInLink func(ctx context.Context, email string) error
	// CurrentUser returns the signed-in user, if any, for the portal, for
	// sign-ups by signed-in users and to send a signed-in buyer straight to
	// AppPath after Checkout. Required.
	CurrentUser func(ctx context.Context) (userID int64, ok bool)

	// Limiter limits sign-ups (POST SignupPath), dev checkout completions,
	// success-page visits and plan changes per client, keyed by ClientKey
	// with a "signup:", "dev-checkout:", "success:" or "plan:" prefix (default: in memory,
	// 20 per hour for each key, [NewMemoryLimiter]). A refusal or an error (fail closed, logged)
	// answers 429 with Retry-After.
	Limiter Limiter
	// ClientKey returns the key a request's client is limited by (default:
	// the host of RemoteAddr). Behind a reverse proxy, derive it from the
	// forwarding header your trusted proxies set.
	ClientKey func(r *http.Request) string

	// SuccessPath is where Stripe Checkout returns after payment
	// (default "/billing/success").
	SuccessPath string
	// DevCheckoutPath is the dev-mode checkout page (default
	// "/billing/dev-checkout").
	DevCheckoutPath string
	// PortalPath is the billing portal route (default "/billing/portal").
	PortalPath string
	// SignupPath is the sign-up route (default "/signup").
	SignupPath string
	// ChangePlanPath is the plan-change route, [Service.ChangePlanHandler]
	// (default "/billing/plan").
	ChangePlanPath string
	// WebhookPath is the Stripe webhook route (default "/webhooks/stripe").
	WebhookPath string
	// AppPath is where signed-in users go (default "/app"); it is also the
	// portal's return page.
	AppPath string
	// CancelURL is where Checkout's back link goes (default BaseURL+"/").
	CancelURL string
	// SignInURL is the sign-in page, where users go when they must sign in
	// by email before continuing (default "/login").
	SignInURL string

	// PastDueGrace is how long a past_due subscription stays entitled after
	// it became past_due (default 72 hours).
	PastDueGrace time.Duration
	// CacheTTL is how long [Service.Entitled] and [Service.Plan] answer
	// from memory (default 10 seconds). Changes applied by this Service (a
	// webhook, a dev checkout or plan change) take effect at once; changes
	// applied by another instance within CacheTTL.
	CacheTTL time.Duration
	// FallbackTTL is how long an entitlement is served from memory while
	// changes applied by other instances may go unheard (between
	// [Service.ShortenTTL] and [Service.RestoreTTL], and afterwards for
	// answers read before RestoreTTL): default 1 second, at most CacheTTL.
	FallbackTTL time.Duration
	// OnForget, if set, is called with the user's id after this Service
	// applied a change to the user's subscriptions (a webhook, a checkout,
	// a dev plan change), once the change is stored, and dropped its own
	// cached entitlement. Publish it to the other instances (package
	// invalidate: invalidate.User(id)) so that they call [Service.Forget].
	// It must not block.
	OnForget func(userID int64)
	// EventRetention is how long applied webhook event ids are kept for
	// duplicate detection by [Service.Prune] (default 30 days, well past
	// Stripe's 3 days of retries).
	EventRetention time.Duration
	// PruneInterval is how often the Service runs [Service.Prune] in the
	// background, as magiclink's CleanupInterval does its cleanup (default
	// 24 hours; negative disables it, for an application that prunes on
	// its own schedule). [Service.Close] stops it.
	PruneInterval time.Duration

	// DevMode runs without Stripe, for local development: sign-up leads to
	// a local page labelled "DEV MODE — no payment taken" whose form
	// completes the checkout. New refuses DevMode together with a live
	// Stripe key, and, unless DevModeAnyHost is set, with a BaseURL that is
	// not on the loopback interface (localhost, 127.0.0.1, [::1]).
	DevMode        bool
	DevModeAnyHost bool

	// Callbacks, called after a change is committed, on the request's
	// goroutine: keep them short, or hand the work off. OnActivated: the
	// user became entitled through an active or trialing subscription.
	// OnCanceled: a subscription of the user was deleted. OnPaymentFailed:
	// invoice.payment_failed for a customer of the user. OnChange: any
	// stored subscription state of the user changed.
	OnActivated, OnCanceled, OnPaymentFailed func(ctx context.Context, userID int64)
	OnChange                                 func(ctx context.Context, userID int64, s Subscription)

	// Audit, if set, is told of every change to a user's subscriptions and
	// plan that this Service applies ([AuditEvent]: from webhooks, the
	// success page, the dev checkout, ChangePlanHandler and
	// CancelSubscriptions), of completed Checkouts, and of plan changes
	// requested through ChangePlanHandler. Duplicate events and changes
	// that wrote nothing are not reported; neither are changes to
	// customers linked to no user. It is called after the change was
	// stored, on the request's goroutine, with the request's (or the
	// caller's) context, so that an audit log finds the client's address
	// there (package audit: audit.Middleware); a webhook's is Stripe's.
	// An error from it is logged and counted ([Stats].AuditErrors) and
	// changes nothing: the webhook is still answered 200, because the
	// event is applied and recorded, and Stripe's retry would be a
	// duplicate that is reported to no one. Wire it to an audit log that
	// writes synchronously.
	Audit func(ctx context.Context, e AuditEvent) error

	// ErrorHandler writes every refusal of every handler, the
	// cross-origin 403s and the 429s included (default: an HTML page for
	// browsers, an RFC 9457 problem for JSON clients, with [ErrorCode] and
	// [PublicMessage]). err matches this package's sentinel errors; status
	// is the response status, usually [StatusCode](err) (405 for a wrong
	// method, 413 for a webhook body too large). Headers such as Allow and
	// Retry-After are set before it is called.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
	// Logger receives failures and notable events (default: discard).
	// Secrets, signatures and session ids are never logged.
	Logger *slog.Logger
	// Now returns the current time (default time.Now), for everything
	// time-dependent, the webhook signature's 5-minute tolerance included.
	Now func() time.Time
}

func optionsError(format string, args ...any) error {
	return fmt.Errorf("billing: "+format, args...)
}

func (o Options) withDefaults(c *Client) (Options, error) {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.SuccessPath, "/billing/success")
	def(&o.DevCheckoutPath, "/billing/dev-checkout")
	def(&o.PortalPath, "/billing/portal")
	def(&o.SignupPath, "/signup")
	def(&o.ChangePlanPath, "/billing/plan")
	def(&o.WebhookPath, "/webhooks/stripe")
	def(&o.AppPath, "/app")
	def(&o.SignInURL, "/login")
	for _, p := range []string{o.SuccessPath, o.DevCheckoutPath, o.PortalPath, o.SignupPath, o.ChangePlanPath, o.WebhookPath, o.AppPath} {
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
			return o, optionsError("path %q must start with a single /", p)
		}
	}
	u, err := url.Parse(o.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return o, optionsError("BaseURL %q must be an absolute http(s) origin, such as https://example.com", o.BaseURL)
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
	def(&o.CancelURL, o.BaseURL+"/")
	if o.SendSignInLink == nil || o.CurrentUser == nil {
		return o, optionsError("Options.SendSignInLink and Options.CurrentUser are required")
	}
	if o.PastDueGrace <= 0 {
		o.PastDueGrace = 72 * time.Hour
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = 10 * time.Second
	}
	if o.FallbackTTL <= 0 {
		o.FallbackTTL = time.Second
	}
	o.FallbackTTL = min(o.FallbackTTL, o.CacheTTL)
	if o.EventRetention <= 0 {
		o.EventRetention = 30 * 24 * time.Hour
	}
	if o.PruneInterval == 0 {
		o.PruneInterval = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Limiter == nil {
		o.Limiter = NewMemoryLimiter(20, time.Hour, o.Now)
	}
	if o.ClientKey == nil {
		o.ClientKey = remoteHost
	}
	o.PriceIDs = append([]string(nil), o.PriceIDs...)
	if o.PriceID != "" {
		o.PriceIDs = append(o.PriceIDs, o.PriceID)
	}
	if o.Plans != nil {
		for _, p := range o.PriceIDs {
			if _, ok := o.Plans.ForPrice(p); !ok {
				return o, optionsError("price %q (Options.PriceID or PriceIDs) is the price of no plan in Options.Plans: add it to a plan's prices, so that its subscribers have a plan", p)
			}
		}
		if o.PriceID == "" {
			if p, ok := firstPaid(o.Plans); ok {
				o.PriceID = p.Prices[0]
			}
		}
	}
	if o.DevMode {
		if c.Live() {
			return o, errors.New("billing: DevMode with a live Stripe key (sk_live_…) is refused: dev mode takes no payment")
		}
		if !o.DevModeAnyHost && !loopback.Host(u.Hostname()) {
			return o, optionsError("DevMode with BaseURL %q: dev mode gives subscriptions away, so it runs only on localhost unless DevModeAnyHost is set", o.BaseURL)
		}
		return o, nil
	}
	if c == nil {
		return o, optionsError("a Client is required unless DevMode is set")
	}
	if o.PriceID == "" {
		return o, optionsError("Options.PriceID (or a paid plan in Options.Plans) is required")
	}
	if o.WebhookSecret == "" {
		return o, optionsError("Options.WebhookSecret is required")
	}
	return o, nil
}

// remoteHost is the default ClientKey: the IP address of the peer.
func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// firstPaid returns the first plan of c that has a price.
func firstPaid(c *plan.Catalog) (*plan.Plan, bool) {
	for _, p := range c.Plans() {
		if !p.IsFree() {
			return p, true
		}
	}
	return nil, false
}
