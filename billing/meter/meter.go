package meter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"time"
)

// State is where an [Event] is in the outbox.
type State string

const (
	// Pending events wait to be sent (again).
	Pending State = "pending"
	// Sent events were accepted by Stripe.
	Sent State = "sent"
	// Rejected events were refused by Stripe for good (the [Backend]
	// returned [ErrRejected]): they are kept with the error, listed by [Store].MeterEvents,
	// and sent again only when [Store].RequeueMeterEvent says so.
	Rejected State = "rejected"
)

// Event is one meter event in the outbox: the usage of one customer on
// one meter in one slice (an hour), or a later addition to it.
type Event struct {
	// Identifier is Stripe's meter event identifier and the outbox's
	// primary key: [Identifier] of (CustomerID, EventName, Slice, Seq).
	Identifier string
	UserID     string // the user whose usage it is
	CustomerID string // Stripe's customer, "cus_…"
	EventName  string // the meter's event name
	// Slice is the start of the hour the usage was counted in, UTC.
	Slice time.Time
	// Seq is 1 for the slice's first event, and 2, 3… for usage counted
	// after the slice was first reported (a late flush).
	Seq int
	// Value is the units to bill: the cost spent in the slice.
	Value int64
	// Timestamp is the event's time for Stripe: the slice's last second.
	Timestamp time.Time

	State       State
	Attempts    int       // sends tried
	NextAttempt time.Time // when a Pending event is due
	LastError   string    // the last failure, kept for Rejected events
	CreatedAt   time.Time
	SentAt      time.Time // when Stripe accepted it; zero before
}

// Identifier returns the meter event identifier of the seq-th event of
// (customerID, eventName) in the slice starting at slice: "mev_" and 32
// hex digits of a SHA-256 over the four, so that every instance, and
// every retry, derives the same one, and Stripe deduplicates resends.
func Identifier(customerID, eventName string, slice time.Time, seq int) string {
	h := sha256.New()
	for _, s := range []string{customerID, eventName, strconv.FormatInt(slice.Unix(), 10), strconv.Itoa(seq)} {
		h.Write([]byte(strconv.Itoa(len(s))))
		h.Write([]byte{':'})
		h.Write([]byte(s))
	}
	return "mev_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// SliceCost is a user's cost in one hour, from the usage counts.
type SliceCost struct {
	UserID string
	Slice  time.Time
	Cost   int64
}

// Billed is what the outbox holds for one (customer, meter, slice): the
// number of events and the sum of their values.
type Billed struct {
	CustomerID, EventName string
	Slice                 time.Time
	Events                int
	Value                 int64
}

// Failure is a failed send, for [Store].MarkMeterEventFailed.
type Failure struct {
	// Error is the failure, kept in LastError.
	Error string
	// Permanent marks a rejection: the event becomes Rejected.
	Permanent bool
	// NextAttempt is when a not permanent failure is retried.
	NextAttempt time.Time
}

// ErrNotFound is returned for an identifier the outbox does not hold.
var ErrNotFound = errors.New("meter: no such event")

// Store is the durable outbox of meter events, and the usage it is built
// from. Package store implements it (table meter_events, migrated with
// store.Usage, and usage_hourly); package billing/meter/metertest is its
// conformance suite. Implementations must be safe for concurrent use by
// several processes.
type Store interface {
	// HourlyCost returns, for each of the given users and each hour in
	// [from, to) in which they spent any cost, the sum of the cost over
	// their keys, from the hourly usage counts (usage.Store).
	HourlyCost(ctx context.Context, userIDs []string, from, to time.Time) ([]SliceCost, error)
	// BilledMeterUsage returns what the outbox holds, in any state, per
	// (customer, event name, slice) for slices in [from, to).
	BilledMeterUsage(ctx context.Context, from, to time.Time) ([]Billed, error)
	// EnqueueMeterEvents inserts the events as Pending, due at
	// NextAttempt, skipping any whose Identifier or (CustomerID,
	// EventName, Slice, Seq) is held already, and returns how many it
	// inserted.
	EnqueueMeterEvents(ctx context.Context, events []Event) (int, error)
	// ClaimMeterEvents leases up to limit Pending events due at now and
	// not leased (or whose lease ended), until leaseUntil, counting an
	// attempt for each, and returns them, oldest due first. An event is
	// leased to one caller at a time.
	ClaimMeterEvents(ctx context.Context, now, leaseUntil time.Time, limit int) ([]Event, error)
	// MarkMeterEventSent marks the event Sent at the given time (from any
	// state but Sent), ending its lease. ErrNotFound if there is none.
	MarkMeterEventSent(ctx context.Context, identifier string, at time.Time) error
	// MarkMeterEventFailed records a failed send of a Pending event:
	// Rejected if f.Permanent, else Pending again, due at f.NextAttempt;
	// the lease ends. An event Sent meanwhile stays Sent. ErrNotFound if
	// there is none.
	MarkMeterEventFailed(ctx context.Context, identifier string, f Failure) error
	// MeterEvents returns up to limit events in the given state, newest
	// slice first.
	MeterEvents(ctx context.Context, state State, limit int) ([]Event, error)
	// RequeueMeterEvent makes a Rejected event Pending again, due at the
	// given time, and reports whether it was Rejected.
	RequeueMeterEvent(ctx context.Context, identifier string, at time.Time) (bool, error)
}
