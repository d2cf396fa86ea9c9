// Package stripemeter sends package billing/meter's events to Stripe's
// Billing Meter API (POST /v1/billing/meter_events, stripe-go's
// billing/meterevent) as a [meter.Backend]. It is a package of its own so
// that the outbox, and the store that keeps it, link no Stripe client.
package stripemeter

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/apikit/apikit/billing/meter"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/billing/meterevent"
)

// Options configures [New]. Key is required.
type Options struct {
	// Key is the Stripe secret key, sk_… or rk_… (a restricted key needs
	// write access to billing meter events).
	Key string
	// URL is the base URL of the API, such as a stripe-mock server's;
	// empty means Stripe.
	URL string
	// HTTPClient sends the requests; nil means stripe-go's default.
	HTTPClient *http.Client
	// Backend, if set, replaces the backend built from URL and
	// HTTPClient: for tests that inject failures.
	Backend stripe.Backend
	// CustomerKey and ValueKey are the payload keys of the meter's
	// customer mapping and value settings; empty means Stripe's defaults,
	// "stripe_customer_id" and "value".
	CustomerKey, ValueKey string
}

// Sender is a [meter.Backend] over the Stripe API. It is safe for
// concurrent use.
type Sender struct {
	c                     meterevent.Client
	customerKey, valueKey string
}

var _ meter.Backend = (*Sender)(nil)

// New returns a Sender with the key.
func New(opts Options) (*Sender, error) {
	key := strings.TrimSpace(opts.Key)
	if !strings.HasPrefix(key, "sk_") && !strings.HasPrefix(key, "rk_") {
		return nil, errors.New("stripemeter: Options.Key must be a Stripe secret key (sk_… or rk_…)")
	}
	b := opts.Backend
	if b == nil {
		cfg := &stripe.BackendConfig{
			HTTPClient: opts.HTTPClient,
			// The outbox retries with its own backoff; stripe-go's
			// retries would only hold a sender longer.
			MaxNetworkRetries: stripe.Int64(0),
			LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		}
		if opts.URL != "" {
			u, err := url.Parse(opts.URL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return nil, fmt.Errorf("stripemeter: Options.URL %q is not an absolute http(s) URL", opts.URL)
			}
			cfg.URL = stripe.String(strings.TrimRight(opts.URL, "/"))
		}
		b = stripe.GetBackendWithConfig(stripe.APIBackend, cfg)
	}
	s := &Sender{c: meterevent.Client{B: b, Key: key}, customerKey: opts.CustomerKey, valueKey: opts.ValueKey}
	if s.customerKey == "" {
		s.customerKey = "stripe_customer_id"
	}
	if s.valueKey == "" {
		s.valueKey = "value"
	}
	return s, nil
}

// Send implements [meter.Backend]: it creates the meter event with the
// event's identifier, timestamp and value, sending the identifier as the
// idempotency key too, so that a resend gets Stripe's first answer. A
// 4xx answer is a rejection ([meter.ErrRejected]) except 401 and 403
// (the key, not the event, is wrong: fix it and the events go through),
// 409 (an idempotent request still in flight) and 429, which are retried
// like network errors and 5xx.
func (s *Sender) Send(ctx context.Context, e meter.Event) error {
	p := &stripe.BillingMeterEventParams{
		EventName:  stripe.String(e.EventName),
		Identifier: stripe.String(e.Identifier),
		Payload:    map[string]string{s.customerKey: e.CustomerID, s.valueKey: strconv.FormatInt(e.Value, 10)},
		Timestamp:  stripe.Int64(e.Timestamp.Unix()),
	}
	p.Context = ctx
	p.IdempotencyKey = stripe.String(e.Identifier)
	_, err := s.c.New(p)
	if err == nil {
		return nil
	}
	var se *stripe.Error
	if errors.As(err, &se) && rejected(se.HTTPStatusCode) {
		return fmt.Errorf("%w: stripe answered %d %s: %s", meter.ErrRejected, se.HTTPStatusCode, se.Code, se.Msg)
	}
	return fmt.Errorf("stripemeter: %w", err)
}

// rejected reports whether an answer with the status refuses the event
// for good.
func rejected(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusForbidden, http.StatusConflict, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}
