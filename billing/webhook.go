package billing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/apikit/apikit/internal/emailaddr"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/webhook"
)

// MaxWebhookBytes caps a webhook request body; larger ones are refused
// with 413 (Stripe's events are a few kilobytes).
const MaxWebhookBytes = 64 << 10

// WebhookTolerance is how old a webhook's signed timestamp may be.
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
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, r, http.StatusMethodNotAllowed, ErrBadRequest)
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
	ev, err := webhook.ConstructEventWithOptions(payload, header, s.opts.WebhookSecret, webhook.ConstructEventOptions{
		Tolerance:                WebhookTolerance,
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
	return ev, nil
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
		ch, err = s.checkoutChange(ctx, ev)
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
	a, err := s.store.ApplyEvent(ctx, Event{ID: ev.ID, Type: string(ev.Type), Created: created, ReceivedAt: s.opts.Now()}, ch)
	if err != nil {
		return 0, err
	}
	if a.Duplicate {
		return eventDuplicate, nil
	}
	s.afterApply(ctx, ch, a)
	if ev.Type == "invoice.payment_failed" && a.UserID != 0 && s.opts.OnPaymentFailed != nil {
		s.opts.OnPaymentFailed(ctx, a.UserID)
	}
	return eventApplied, nil
}

// checkoutChange links the session's customer to its user, found by
// client_reference_id or else by the customer's email (creating the user,
// who has paid), and writes the provisional subscription state.
func (s *Service) checkoutChange(ctx context.Context, ev stripe.Event) (Change, error) {
	var cs stripe.CheckoutSession
	if err := json.Unmarshal(ev.Data.Raw, &cs); err != nil {
		return Change{}, nil // recorded, ignored: not a session we can read
	}
	if cs.Mode != stripe.CheckoutSessionModeSubscription || cs.Customer == nil || cs.Customer.ID == "" {
		return Change{}, nil
	}
	uid, err := s.sessionUser(ctx, &cs)
	if err != nil {
		return Change{}, err
	}
	if uid == 0 {
		s.opts.Logger.Warn("billing: completed checkout matches no user", "event", ev.ID, "session", cs.ID)
		return Change{}, nil
	}
	return s.provisional(uid, &cs), nil
}

// sessionUser finds the user a Checkout session belongs to; 0 if none.
func (s *Service) sessionUser(ctx context.Context, cs *stripe.CheckoutSession) (int64, error) {
	if id, err := strconv.ParseInt(cs.ClientReferenceID, 10, 64); err == nil && id > 0 {
		_, found, err := s.store.UserEmail(ctx, id)
		if err != nil {
			return 0, err
		}
		if found {
			return id, nil
		}
	}
	email := cs.CustomerEmail
	if cs.CustomerDetails != nil && cs.CustomerDetails.Email != "" {
		email = cs.CustomerDetails.Email
	}
	email, err := emailaddr.Normalize(email)
	if err != nil {
		return 0, nil
	}
	id, _, err := s.store.EnsureUser(ctx, email)
	return id, err
}

// provisional is the Change of a completed Checkout session: the link, and
// the subscription's state as far as the session tells it, written only if
// no subscription event has written the row yet.
func (s *Service) provisional(uid int64, cs *stripe.CheckoutSession) Change {
	ch := Change{UserID: uid, CustomerID: cs.Customer.ID}
	if cs.Subscription == nil || cs.Subscription.ID == "" || cs.Status != stripe.CheckoutSessionStatusComplete {
		return ch
	}
	status := "incomplete"
	switch cs.PaymentStatus {
	case stripe.CheckoutSessionPaymentStatusPaid:
		status = "active"
	case stripe.CheckoutSessionPaymentStatusNoPaymentRequired:
		status = "trialing"
	}
	ch.Subscription = Subscription{
		CustomerID: cs.Customer.ID, SubscriptionID: cs.Subscription.ID, Status: status, PriceID: s.opts.PriceID,
	}
	ch.Mode = WriteIfAbsent
	return ch
}

// subscriptionChange writes the subscription's state if the event is
// newer than the stored one; a deletion is terminal.
func (s *Service) subscriptionChange(ctx context.Context, ev stripe.Event, created time.Time) (Change, error) {
	var sub stripe.Subscription
	if err := json.Unmarshal(ev.Data.Raw, &sub); err != nil || sub.ID == "" || sub.Customer == nil || sub.Customer.ID == "" {
		return Change{}, nil // recorded, ignored
	}
	ch := Change{
		CustomerID: sub.Customer.ID,
		Subscription: Subscription{
			CustomerID: sub.Customer.ID, SubscriptionID: sub.ID, Status: string(sub.Status),
			CancelAtPeriodEnd: sub.CancelAtPeriodEnd, EventCreated: created,
		},
	}
	if sub.CurrentPeriodStart > 0 {
		ch.Subscription.CurrentPeriodStart = time.Unix(sub.CurrentPeriodStart, 0).UTC()
	}
	if sub.CurrentPeriodEnd > 0 {
		ch.Subscription.CurrentPeriodEnd = time.Unix(sub.CurrentPeriodEnd, 0).UTC()
	}
	if sub.Items != nil && len(sub.Items.Data) > 0 && sub.Items.Data[0].Price != nil {
		ch.Subscription.PriceID = sub.Items.Data[0].Price.ID
	}
	if ev.Type == "customer.subscription.deleted" {
		ch.Mode = WriteTerminal
		if ch.Subscription.Status == "" {
			ch.Subscription.Status = "canceled"
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

// afterApply drops the user's cached entitlement and runs the callbacks.
func (s *Service) afterApply(ctx context.Context, ch Change, a Applied) {
	uid := a.UserID
	if uid == 0 {
		return
	}
	s.forget(uid)
	if ch.Subscription.SubscriptionID == "" {
		return
	}
	linkedNow := a.PreviousFound && a.Previous.UserID != uid
	if !a.Written && !linkedNow {
		return
	}
	after, found, err := s.store.SubscriptionByID(ctx, ch.Subscription.SubscriptionID)
	if err != nil || !found {
		s.opts.Logger.Warn("billing: reading a subscription after applying an event", "subscription", ch.Subscription.SubscriptionID, "err", err)
		return
	}
	if s.opts.OnChange != nil {
		s.opts.OnChange(ctx, uid, after)
	}
	was := a.PreviousFound && a.Previous.UserID == uid && !a.Previous.Ended &&
		(a.Previous.Status == "active" || a.Previous.Status == "trialing")
	is := !after.Ended && (after.Status == "active" || after.Status == "trialing")
	if !was && is && s.opts.OnActivated != nil {
		s.opts.OnActivated(ctx, uid)
	}
	if ch.Mode == WriteTerminal && a.Written && s.opts.OnCanceled != nil {
		s.opts.OnCanceled(ctx, uid)
	}
}
