package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// MaxWebhookBytes caps a webhook request body; larger ones are refused
// with 413 (Stripe's events are a few kilobytes).
const MaxWebhookBytes = 64 << 10

// WebhookTolerance is how far a webhook's signed timestamp may be from
// now, in the past or in the future.
const WebhookTolerance = 5 * time.Minute

// WebhookHandler returns the Stripe webhook endpoint. It verifies the
// signature on the raw body, applies each event exactly once (see the
// package documentation) and answers:
//
//   - 200 for an applied, duplicate or ignored (unhandled type) event;
//   - 400 for a bad signature, stale timestamp, wrong API version or
//     malformed payload, and 413 for a body over [MaxWebhookBytes] —
//     nothing is changed or recorded;
//   - 500 when the store failed: the event is not recorded, so Stripe's
//     retry applies it.
//
// It is not wrapped in cross-origin protection: Stripe sends no Origin,
// and the signature is the authentication.
func (s *Service) WebhookHandler() http.Handler {
	return http.HandlerFunc(s.serveWebhook)
}

func (s *Service) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if !s.method(w, r, http.MethodPost) {
		return
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBytes))
	if err != nil {
		s.stats.invalid.Add(1)
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body over %d bytes", ErrBadRequest, MaxWebhookBytes))
			return
		}
		s.fail(w, r, http.StatusBadRequest, fmt.Errorf("%w: reading body: %w", ErrBadRequest, err))
		return
	}
	ev, err := s.verify(payload, r.Header.Get("Stripe-Signature"))
	if err != nil {
		s.stats.invalid.Add(1)
		s.opts.Logger.Warn("billing: webhook refused", "err", err)
		s.fail(w, r, http.StatusBadRequest, err)
		return
	}
	status, err := s.handleEvent(r.Context(), ev)
	if err != nil {
		s.stats.failed.Add(1)
		s.opts.Logger.Error("billing: webhook event not applied; Stripe will retry it",
			"event", ev.ID, "type", ev.Type, "err", err)
		s.fail(w, r, http.StatusInternalServerError, fmt.Errorf("%w: %w", ErrUnavailable, err))
		return
	}
	switch status {
	case eventApplied:
		s.stats.applied.Add(1)
	case eventDuplicate:
		s.stats.duplicate.Add(1)
	case eventIgnored:
		s.stats.ignored.Add(1)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = io.WriteString(w, `{"received":true}`+"\n")
}

// verify checks the signature and decodes the event. An event whose
// signature is valid but whose api_version differs is refused unless
// IgnoreAPIVersionMismatch is set.
func (s *Service) verify(payload []byte, header string) (stripe.Event, error) {
	if s.opts.WebhookSecret == "" {
		return stripe.Event{}, fmt.Errorf("%w: no webhook secret configured", ErrInvalidSignature)
	}
	// The timestamp is checked below, against Options.Now, both ways.
	ev, err := webhook.ConstructEventWithOptions(payload, header, s.opts.WebhookSecret, webhook.ConstructEventOptions{
		IgnoreTolerance:          true,
		IgnoreAPIVersionMismatch: s.opts.IgnoreAPIVersionMismatch,
	})
	switch {
	case errors.Is(err, webhook.ErrNotSigned), errors.Is(err, webhook.ErrInvalidHeader),
		errors.Is(err, webhook.ErrNoValidSignature), errors.Is(err, webhook.ErrTooOld):
		return ev, fmt.Errorf("%w: %w", ErrInvalidSignature, err)
	case err != nil && ev.APIVersion != "" && ev.APIVersion != stripe.APIVersion:
		return ev, fmt.Errorf("%w: event API version %s, want %s: pin the webhook endpoint to %s",
			ErrInvalidSignature, ev.APIVersion, stripe.APIVersion, stripe.APIVersion)
	case err != nil:
		return ev, fmt.Errorf("%w: malformed event", ErrInvalidSignature)
	case ev.ID == "" || ev.Type == "" || ev.Data == nil:
		return ev, fmt.Errorf("%w: event without id, type or data", ErrInvalidSignature)
	}
	// A signed timestamp too far in the past (a replay) or in the future
	// (a clock skewed, or an event signed ahead to be replayed later) is
	// refused.
	now := s.opts.Now()
	switch earliest, latest, ok := signatureTime(header); {
	case !ok || latest.After(now.Add(WebhookTolerance)):
		return ev, fmt.Errorf("%w: timestamp in the future", ErrInvalidSignature)
	case earliest.Before(now.Add(-WebhookTolerance)):
		return ev, fmt.Errorf("%w: %w", ErrInvalidSignature, webhook.ErrTooOld)
	}
	return ev, nil
}

// signatureTime returns the earliest and the latest of the t= timestamps
// of a Stripe-Signature header ("t=1700000000,v1=…,v0=…"), so that the
// timestamp stripe-go verified the signature with, whichever it is, lies
// between them; ok is false when there is none or one is not a number.
func signatureTime(header string) (earliest, latest time.Time, ok bool) {
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, item := range strings.Split(header, ",") {
		k, v, found := strings.Cut(item, "=")
		if !found || k != "t" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, time.Time{}, false
		}
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi == math.MinInt64 {
		return time.Time{}, time.Time{}, false
	}
	return time.Unix(lo, 0), time.Unix(hi, 0), true
}

type eventStatus int

const (
	eventApplied eventStatus = iota
	eventDuplicate
	eventIgnored
)

// handleEvent turns an event into a Change, applies it and runs the
// callbacks. An error means nothing was recorded.
func (s *Service) handleEvent(ctx context.Context, ev stripe.Event) (eventStatus, error) {
	created := time.Unix(ev.Created, 0).UTC()
	var (
		ch  Change
		err error
	)
	switch ev.Type {
	case "checkout.session.completed":
		var cs stripe.CheckoutSession
		if json.Unmarshal(ev.Data.Raw, &cs) == nil { // else recorded, ignored
			var uid int64
			if ch, uid, err = s.checkoutChange(ctx, &cs); err == nil && uid == 0 {
				s.opts.Logger.Info("billing: completed checkout not created by apikit; ignored", "event", ev.ID)
			}
		}
	case "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted":
		ch, err = s.subscriptionChange(ctx, ev, created)
	case "invoice.paid", "invoice.payment_failed":
		var inv stripe.Invoice
		if err := json.Unmarshal(ev.Data.Raw, &inv); err == nil && inv.Customer != nil {
			ch.CustomerID = inv.Customer.ID
		}
	default:
		return eventIgnored, nil
	}
	if err != nil {
		return 0, err
	}
	a, err := s.apply(ctx, ActorStripe, Event{ID: ev.ID, Type: string(ev.Type), Created: created, ReceivedAt: s.opts.Now()}, ch)
	if err != nil {
		return 0, err
	}
	if a.Duplicate {
		return eventDuplicate, nil
	}
	if ev.Type == "invoice.payment_failed" && a.UserID != 0 && s.opts.OnPaymentFailed != nil {
		s.opts.OnPaymentFailed(ctx, a.UserID)
	}
	return eventApplied, nil
}

// subscriptionChange writes the subscription's state if the event is
// newer than the stored one; a deletion is terminal. When the stored state
// came from an event of the same second (Stripe's created times have whole
// seconds) and a Stripe client is configured, the subscription is read
// again from the API and that state is written ([WriteCurrent]); in dev
// mode, or when the API fails, the store settles the tie by
// [StatusPrecedence].
func (s *Service) subscriptionChange(ctx context.Context, ev stripe.Event, created time.Time) (Change, error) {
	var sub stripe.Subscription
	if err := json.Unmarshal(ev.Data.Raw, &sub); err != nil || sub.ID == "" || sub.Customer == nil || sub.Customer.ID == "" {
		return Change{}, nil // recorded, ignored
	}
	ch := Change{CustomerID: sub.Customer.ID, Subscription: subscriptionState(&sub, created)}
	if ev.Type == "customer.subscription.deleted" {
		ch.Mode = WriteTerminal
		if ch.Subscription.Status == "" {
			ch.Subscription.Status = "canceled"
		}
	} else if s.client != nil {
		prev, found, err := s.store.SubscriptionByID(ctx, sub.ID)
		if err != nil {
			return Change{}, err
		}
		if found && !prev.Ended && prev.EventCreated.Equal(created) {
			cur, err := s.client.subscription(ctx, sub.ID)
			if err == nil && cur.ID == sub.ID {
				ch.Subscription = subscriptionState(cur, created)
				ch.Subscription.CustomerID = sub.Customer.ID
				ch.Mode = WriteCurrent
			} else {
				args := []any{"event", ev.ID, "subscription", sub.ID}
				if err != nil {
					args = append(args, stripeErrorSummary(err)...)
				}
				s.opts.Logger.Warn("billing: events of one second; re-reading the subscription failed, settling by status precedence", args...)
			}
		}
	}
	// Subscriptions created by our Checkout carry the user id, so they are
	// linked even when they arrive before the checkout event.
	if id, err := strconv.ParseInt(sub.Metadata[metaUserID], 10, 64); err == nil && id > 0 {
		_, found, err := s.store.UserEmail(ctx, id)
		if err != nil {
			return Change{}, err
		}
		if found {
			ch.UserID = id
		}
	}
	return ch, nil
}

// subscriptionState is the stored state of a Stripe subscription object.
func subscriptionState(sub *stripe.Subscription, created time.Time) Subscription {
	st := Subscription{
		SubscriptionID: sub.ID, Status: string(sub.Status),
		CancelAtPeriodEnd: sub.CancelAtPeriodEnd, EventCreated: created,
	}
	if sub.Customer != nil {
		st.CustomerID = sub.Customer.ID
	}
	if sub.CurrentPeriodStart > 0 {
		st.CurrentPeriodStart = time.Unix(sub.CurrentPeriodStart, 0).UTC()
	}
	if sub.CurrentPeriodEnd > 0 {
		st.CurrentPeriodEnd = time.Unix(sub.CurrentPeriodEnd, 0).UTC()
	}
	if sub.BillingCycleAnchor > 0 {
		st.BillingCycleAnchor = time.Unix(sub.BillingCycleAnchor, 0).UTC()
	}
	if sub.Items != nil && len(sub.Items.Data) > 0 && sub.Items.Data[0].Price != nil {
		st.PriceID = sub.Items.Data[0].Price.ID
	}
	return st
}
