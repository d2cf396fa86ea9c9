package billing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// ClientOptions configures a [Client].
type ClientOptions struct {
	// Key is the Stripe secret key, sk_test_… or sk_live_… (or a
	// restricted key, rk_…). Required.
	Key string
	// URL is the base URL of the Stripe API, such as a stripe-mock
	// server's "http://127.0.0.1:12111". Empty means Stripe itself.
	URL string
	// HTTPClient sends the requests (default: stripe-go's, with an
	// 80-second timeout).
	HTTPClient *http.Client
	// MaxNetworkRetries is how many times a request that failed for a
	// network reason, or with a status Stripe marks retryable, is retried,
	// with Stripe's idempotency keys (default 2; negative means none).
	MaxNetworkRetries int64
	// Trace, if set, is called as each call to Stripe starts, with the
	// call's name ("stripe.checkout.sessions.create",
	// "stripe.subscriptions.get", …), and the function it returns when
	// the call ends (retries included), with its error. It lets a tracer,
	// such as OpenTelemetry's, time the calls without this package
	// depending on one; the context it returns is the one the call is made
	// with. The name carries no ids, addresses or keys.
	Trace func(ctx context.Context, name string) (context.Context, func(error))
}

// Client talks to the Stripe API through stripe-go's client.API, with its
// own key and backend: it never reads or sets the package-level stripe.Key,
// so several Clients (say, test and live) can live in one process. A Client
// is safe for concurrent use.
type Client struct {
	api   *client.API
	live  bool
	trace func(ctx context.Context, name string) (context.Context, func(error))
}

// NewClient returns a Client for the key.
func NewClient(opts ClientOptions) (*Client, error) {
	key := strings.TrimSpace(opts.Key)
	if !strings.HasPrefix(key, "sk_") && !strings.HasPrefix(key, "rk_") {
		return nil, errors.New("billing: ClientOptions.Key must be a Stripe secret key (sk_… or rk_…)")
	}
	cfg := &stripe.BackendConfig{
		HTTPClient: opts.HTTPClient,
		// stripe-go logs to stderr by default; apikit is silent, and
		// reports failures through Options.Logger.
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	}
	switch {
	case opts.MaxNetworkRetries < 0:
		cfg.MaxNetworkRetries = stripe.Int64(0)
	case opts.MaxNetworkRetries > 0:
		cfg.MaxNetworkRetries = stripe.Int64(opts.MaxNetworkRetries)
	}
	if opts.URL != "" {
		u, err := url.Parse(opts.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("billing: ClientOptions.URL %q is not an absolute http(s) URL", opts.URL)
		}
		cfg.URL = stripe.String(strings.TrimRight(opts.URL, "/"))
	}
	api := &client.API{}
	api.Init(key, &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	})
	return &Client{
		api:   api,
		live:  strings.HasPrefix(key, "sk_live_") || strings.HasPrefix(key, "rk_live_"),
		trace: opts.Trace,
	}, nil
}

// call runs one Stripe call named name with ctx (inside ClientOptions.Trace
// if there is one).
func call[T any](c *Client, ctx context.Context, name string, f func(ctx context.Context) (T, error)) (T, error) {
	if c.trace == nil {
		return f(ctx)
	}
	ctx, end := c.trace(ctx, name)
	v, err := f(ctx)
	end(err)
	return v, err
}

// Live reports whether the client's key is a live-mode key, which moves
// real money.
func (c *Client) Live() bool { return c != nil && c.live }

// API returns the underlying stripe-go client, for calls this package does
// not make.
func (c *Client) API() *client.API { return c.api }

// checkoutRequest is what a Checkout Session is created from: either for
// a signed-in user buying for their own address (UserID set, CustomerID
// when they have one), or a pending sign-up (UserID 0), which names only
// the address and exists nowhere but on the session until it completes.
type checkoutRequest struct {
	UserID     int64
	Email      string
	CustomerID string
	PriceID    string
	SuccessURL string
	CancelURL  string
	ExpiresAt  time.Time
}

// Metadata keys that apikit sets on the Checkout Sessions it creates and on
// their subscriptions. Only these (and client_reference_id, which apikit
// sets together with metaUserID) ever tie a purchase to a user: never the
// email the buyer typed into Checkout.
const (
	metaUserID      = "apikit_user_id"
	metaSignupEmail = "apikit_signup_email"
	// metaPriceID is the price the session sells, so that the provisional
	// state of a completed Checkout has the right plan before Stripe's
	// subscription event arrives. It is trusted only if it is a price
	// the service sells.
	metaPriceID = "apikit_price_id"
)

// CheckoutExpiry is how long a Checkout session created by sign-up stays
// open (Stripe allows 30 minutes to 24 hours). A pending sign-up lives
// only on its Checkout session: nothing is stored until it completes, and
// an abandoned one expires.
const CheckoutExpiry = time.Hour

func (c *Client) createCheckout(ctx context.Context, r checkoutRequest) (*stripe.CheckoutSession, error) {
	meta := map[string]string{}
	if r.UserID > 0 {
		meta[metaUserID] = strconv.FormatInt(r.UserID, 10)
	} else {
		meta[metaSignupEmail] = r.Email
	}
	p := &stripe.CheckoutSessionParams{
		Mode:       stripe.String(string(stripe.CheckoutSessionModeSubscription)),
		LineItems:  []*stripe.CheckoutSessionLineItemParams{{Price: stripe.String(r.PriceID), Quantity: stripe.Int64(1)}},
		SuccessURL: stripe.String(r.SuccessURL),
		CancelURL:  stripe.String(r.CancelURL),
		ExpiresAt:  stripe.Int64(r.ExpiresAt.Unix()),
		SubscriptionData: &stripe.CheckoutSessionSubscriptionDataParams{
			Metadata: meta,
		},
	}
	for k, v := range meta {
		p.AddMetadata(k, v)
	}
	p.AddMetadata(metaPriceID, r.PriceID)
	if r.UserID > 0 {
		p.ClientReferenceID = stripe.String(strconv.FormatInt(r.UserID, 10))
	}
	switch {
	case r.CustomerID != "":
		p.Customer = stripe.String(r.CustomerID)
	case r.Email != "":
		// Checkout shows customer_email read-only.
		p.CustomerEmail = stripe.String(r.Email)
	}
	return call(c, ctx, "stripe.checkout.sessions.create", func(ctx context.Context) (*stripe.CheckoutSession, error) {
		p.Context = ctx
		return c.api.CheckoutSessions.New(p)
	})
}

func (c *Client) checkoutSession(ctx context.Context, id string) (*stripe.CheckoutSession, error) {
	return call(c, ctx, "stripe.checkout.sessions.get", func(ctx context.Context) (*stripe.CheckoutSession, error) {
		p := &stripe.CheckoutSessionParams{}
		p.Context = ctx
		return c.api.CheckoutSessions.Get(id, p)
	})
}

func (c *Client) subscription(ctx context.Context, id string) (*stripe.Subscription, error) {
	return call(c, ctx, "stripe.subscriptions.get", func(ctx context.Context) (*stripe.Subscription, error) {
		p := &stripe.SubscriptionParams{}
		p.Context = ctx
		return c.api.Subscriptions.Get(id, p)
	})
}

func (c *Client) createPortal(ctx context.Context, customerID, returnURL string) (*stripe.BillingPortalSession, error) {
	p := &stripe.BillingPortalSessionParams{
		Customer:  stripe.String(customerID),
		ReturnURL: stripe.String(returnURL),
	}
	return call(c, ctx, "stripe.billing_portal.sessions.create", func(ctx context.Context) (*stripe.BillingPortalSession, error) {
		p.Context = ctx
		return c.api.BillingPortalSessions.New(p)
	})
}

// stripeErrorSummary describes a Stripe API error for logs: its type, code,
// status and request id, never the request's parameters or the key.
func stripeErrorSummary(err error) []any {
	var se *stripe.Error
	if errors.As(err, &se) {
		return []any{"stripe_type", se.Type, "stripe_code", se.Code, "stripe_status", se.HTTPStatusCode,
			"stripe_request_id", se.RequestID, "stripe_message", se.Msg}
	}
	return []any{"err", err.Error()}
}
