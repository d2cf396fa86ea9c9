// Package subscription holds billing's stored state, Stripe subscriptions,
// the customers they belong to and the webhook events applied, and the
// [Store] contract that keeps it, without importing Stripe's client. Package
// billing re-exports every name here through type aliases (billing.Store is
// [Store], billing.Subscription is [Subscription], …), so applications
// use those; this package exists so that a store (package store, or one of
// your own) can implement billing's contract without linking stripe-go.
package subscription

import (
	"context"
	"strings"
	"time"
)

// Store is the storage a billing.Service needs: users, the links between users and
// Stripe customers, subscription state, the ids of applied webhook events and
// consumed Checkout sessions. Package store implements it for SQLite and
// PostgreSQL, and package store/storetest is its conformance suite.
//
// Every method is safe for concurrent use. found == false with a nil error
// means "not there"; errors are for system failures only.
type Store interface {
	// CreateUser returns the id of the user with the email (compared
	// case-insensitively), creating the user at the given time if there is
	// none; created tells which. Concurrent calls for one email create one
	// user.
	CreateUser(ctx context.Context, email string, at time.Time) (id int64, created bool, err error)
	// UserByEmail finds a user by email, case-insensitively.
	UserByEmail(ctx context.Context, email string) (id int64, found bool, err error)
	// UserEmail returns a user's email address.
	UserEmail(ctx context.Context, id int64) (email string, found bool, err error)

	// ApplyEvent applies one webhook event's change exactly once, and
	// stamps the rows it writes with ev.ReceivedAt. In one
	// transaction it records ev.ID and then makes ch; if ev.ID was recorded
	// before, it changes nothing and returns Applied.Duplicate. If it fails,
	// nothing is recorded and nothing changed, so a redelivery applies the
	// event afresh. Concurrent calls with one event id apply it once; the
	// others wait for it and report Duplicate (or apply it if it failed).
	//
	// The change is, in this order:
	//   - if ch.UserID and ch.CustomerID are set, link the customer to the
	//     user, unless the customer is already linked (the first link wins);
	//   - if ch.Subscription.SubscriptionID is set, write the subscription
	//     row as ch.Mode says ([WriteIfNewer], [WriteIfAbsent],
	//     [WriteTerminal], [WriteCurrent]); ch.Subscription.UserID is ignored, since a
	//     subscription belongs to the user its customer is linked to.
	//
	// Applied.Previous is the subscription row before the change, with the
	// UserID its customer was linked to before the change (PreviousFound
	// tells whether there was a row); Applied.Current is the row after the
	// change (CurrentFound), with the UserID its customer is linked to after
	// it, so that the caller need not read it again; Applied.Written tells
	// whether the row was written, and Applied.UserID is the user its
	// customer (or ch.CustomerID) is linked to after the change, 0 if none.
	ApplyEvent(ctx context.Context, ev Event, ch Change) (Applied, error)

	// Subscriptions returns the subscriptions of all customers linked to
	// the user, newest event first (rows of equal EventCreated by
	// SubscriptionID), with UserID set. None is an empty slice.
	Subscriptions(ctx context.Context, userID int64) ([]Subscription, error)
	// SubscriptionByID returns one subscription; its UserID is 0 while its
	// customer is linked to no user.
	SubscriptionByID(ctx context.Context, subscriptionID string) (Subscription, bool, error)
	// Customers returns the ids of the Stripe customers linked to the
	// user, most recently linked first.
	Customers(ctx context.Context, userID int64) ([]string, error)

	// ConsumeCheckoutSession marks a Checkout session as used to sign its
	// user in, at the given time. It reports true only to the first call
	// for a session id, however many run concurrently.
	ConsumeCheckoutSession(ctx context.Context, sessionID string, userID int64, at time.Time) (bool, error)

	// PruneBilling deletes the webhook events received and the checkout
	// sessions consumed before the given time, and returns how many rows it
	// deleted. A pruned event id is no longer recognised as a duplicate.
	PruneBilling(ctx context.Context, before time.Time) (int64, error)
}

// Event is the record of one applied Stripe webhook event.
type Event struct {
	ID         string    // "evt_…"
	Type       string    // "customer.subscription.updated"
	Created    time.Time // the event's created time (whole seconds)
	ReceivedAt time.Time
}

// WriteMode says how [Store.ApplyEvent] writes a subscription row.
type WriteMode int

const (
	// WriteIfNewer writes the row unless it has ended or holds a newer
	// event: it is written when there is no row, when the stored
	// EventCreated is before the new one, or, when they are equal (Stripe's
	// created times have whole seconds, and customer.subscription.created
	// and .updated often share one), when the new status's
	// [StatusPrecedence] is not below the stored one's (equal precedence:
	// the later delivery wins).
	WriteIfNewer WriteMode = iota
	// WriteIfAbsent writes the row only if there is none: the provisional
	// state from a completed Checkout, which any subscription event
	// replaces (its EventCreated is the zero time).
	WriteIfAbsent
	// WriteTerminal ends the subscription: unless the row has already
	// ended, it is written with Ended set, whatever EventCreated it held,
	// so that the ended state is the deletion's alone, whatever order
	// events came in. No later write changes an ended row.
	WriteTerminal
	// WriteCurrent writes a state read from the Stripe API after the event
	// arrived, to settle a tie: like WriteIfNewer, but on equal
	// EventCreated it is written whatever the stored status, since it is
	// newer than every event of that second.
	WriteCurrent
)

// StatusPrecedence ranks Stripe subscription statuses by how late they come
// in a subscription's life, to settle events of equal created time when
// the Stripe API cannot be asked (dev mode, or the API failed): incomplete
// 0, trialing 1, active 2, past_due and paused 3, unpaid 4, canceled and
// incomplete_expired 5; any other status 0. Of two states stamped with the
// same second, the later in life wins, so a paid subscription whose
// "created" (incomplete) and "updated" (active) events tie is never left
// incomplete.
func StatusPrecedence(status string) int {
	switch status {
	case "trialing":
		return 1
	case "active":
		return 2
	case "past_due", "paused":
		return 3
	case "unpaid":
		return 4
	case "canceled", "incomplete_expired":
		return 5
	}
	return 0
}

// Change is what one webhook event changes; see [Store.ApplyEvent]. The
// zero Change records the event and changes nothing else.
type Change struct {
	UserID       int64
	CustomerID   string
	Subscription Subscription
	Mode         WriteMode
}

// Applied reports what [Store.ApplyEvent] did.
type Applied struct {
	Duplicate     bool
	Written       bool
	Previous      Subscription
	PreviousFound bool
	Current       Subscription
	CurrentFound  bool
	UserID        int64
}

// Subscription is a user's Stripe subscription as the newest applied
// webhook event described it.
type Subscription struct {
	UserID         int64  // 0 while the customer is linked to no user
	CustomerID     string // "cus_…"
	SubscriptionID string // "sub_…"
	Status         string // Stripe's: active, trialing, past_due, canceled, unpaid, incomplete, …
	PriceID        string // the first item's price
	// CurrentPeriodStart is when the current period began: for a
	// past_due subscription, when the renewal payment that failed was due.
	CurrentPeriodStart time.Time
	CurrentPeriodEnd   time.Time
	// BillingCycleAnchor is Stripe's billing_cycle_anchor: the instant
	// whose day and time of month the billing periods start at, where
	// quotas per billing period refill. The zero time when the event did
	// not carry it (the provisional state from a completed Checkout).
	BillingCycleAnchor time.Time
	CancelAtPeriodEnd  bool
	// Ended is set once customer.subscription.deleted has been applied;
	// an ended subscription never changes again.
	Ended bool
	// EventCreated is the created time of the event the state came from;
	// the zero time for the provisional state from a completed Checkout.
	EventCreated time.Time
	UpdatedAt    time.Time
}

// Entitling reports whether the status lets its user use the API at the
// time now, given the grace period for past_due subscriptions: active and
// trialing do; past_due does until grace after the current period began
// (when the failed renewal was due; a property of the subscription, not of
// the order events arrived in); an ended subscription never does, nor a
// dev subscription ([Subscription.Dev]) past its CurrentPeriodEnd. Which
// prices entitle is the billing.Service's business (billing's Service.Entitled).
func (s Subscription) Entitling(now time.Time, grace time.Duration) bool {
	if s.Ended || (s.Dev() && !now.Before(s.CurrentPeriodEnd)) {
		return false
	}
	switch s.Status {
	case "active", "trialing":
		return true
	case "past_due":
		since := s.CurrentPeriodStart
		if since.IsZero() {
			since = s.EventCreated
		}
		return !since.IsZero() && now.Before(since.Add(grace))
	}
	return false
}

// DevPrefix starts the id of every dev-mode subscription ("sub_dev_…"),
// which no Stripe object can have (Stripe's ids have no second underscore).
const DevPrefix = "sub_dev_"

// Anchor returns the subscription's billing-period anchor: its
// BillingCycleAnchor, else its CurrentPeriodStart (a dev subscription's
// start), else the zero time.
func (s Subscription) Anchor() time.Time {
	if !s.BillingCycleAnchor.IsZero() {
		return s.BillingCycleAnchor
	}
	return s.CurrentPeriodStart
}

// Dev reports whether the subscription was granted by billing's dev mode,
// without payment (its id starts with [DevPrefix]).
func (s Subscription) Dev() bool { return strings.HasPrefix(s.SubscriptionID, DevPrefix) }
