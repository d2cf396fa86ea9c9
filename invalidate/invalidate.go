// Package invalidate tells every instance of a service that something it
// may have cached changed: a key (revoked, rolled, deactivated, renamed),
// a user (plan, subscription, account), or a user's sessions. An instance
// that changes something publishes an [Event] after the change commits;
// every other instance drops what the event names when it arrives, so a
// change reaches the whole fleet in milliseconds instead of a cache TTL.
//
// A [Bus] is the interface; [Nop] is the bus of a single instance (it
// sends nothing: the instance that changes something already drops its own
// cache entries), and [Hub] is a bus over a [Transport]: package
// invalidate/pgbus over PostgreSQL LISTEN/NOTIFY, invalidate/redisbus over
// Redis pub/sub.
//
// # Failure
//
// Messages are fire and forget, so a Hub watches its subscription: a lost
// connection is noticed at once (reset, closed) or within two
// [Options.PingInterval]s (silent), and re-established with backoff. While
// it is down, the Hub calls the subscribers' Degraded(true): caches then
// serve what they hold for a short fallback TTL only (see
// apikey.Verifier.ShortenTTL and billing.Service.ShortenTTL). When it is
// back, Degraded(false): what the caches read from the store from then on
// is served for the full TTL again, while what they read before (and may
// have missed a message about) keeps the short one. A missed message so
// costs at most the fallback TTL, never more than the cache TTL that bounds
// everything without a bus.
//
// # Bounds
//
// Messages carry only key ids and user ids, never secrets or addresses.
// Events waiting to be sent are kept in a set (duplicates merge); when it
// holds [Options.MaxPending] of them it collapses into one [Everything]
// event (counted in [Stats].Overflows), so a flood of changes costs bounded
// memory and only makes the invalidation coarser. Received messages are
// applied as they are read, with no queue in between.
package invalidate

import (
	"context"
	"strconv"
	"sync/atomic"
)

// Kind says what an [Event] names.
type Kind byte

const (
	// KeyChanged: the key with the id Event.ID was revoked, rolled,
	// deactivated, activated or renamed.
	KeyChanged Kind = 'k'
	// UserChanged: what is known about the user Event.ID changed: their
	// subscription, entitlement or plan, their overrides, or the account
	// itself (deleted with its keys). Drop everything cached about them.
	UserChanged Kind = 'u'
	// SessionsRevoked: every browser session of the user Event.ID was
	// ended (sign-out everywhere).
	SessionsRevoked Kind = 's'
	// Everything: drop every cached entry. Sent when events were
	// collapsed under a flood.
	Everything Kind = '*'
)

// Event names what changed: a kind and an id (a key id, or a user id in
// decimal). It never carries a secret.
type Event struct {
	Kind Kind
	ID   string
}

// Key is the event "the key id changed".
func Key(id string) Event { return Event{Kind: KeyChanged, ID: id} }

// User is the event "what is known about the user changed".
func User(id int64) Event { return Event{Kind: UserChanged, ID: strconv.FormatInt(id, 10)} }

// Sessions is the event "the user's sessions were revoked".
func Sessions(id int64) Event { return Event{Kind: SessionsRevoked, ID: strconv.FormatInt(id, 10)} }

// UserID returns the user id of a UserChanged or SessionsRevoked event.
func (e Event) UserID() (int64, bool) {
	if e.Kind != UserChanged && e.Kind != SessionsRevoked {
		return 0, false
	}
	id, err := strconv.ParseInt(e.ID, 10, 64)
	return id, err == nil && id > 0
}

// Handler receives what a [Bus] learns. Both fields may be nil.
type Handler struct {
	// Event is called, on the bus's receiving goroutine, for each event
	// published by another process. It must be quick (drop cache
	// entries); it must not block.
	Event func(Event)
	// Degraded is called with true when the subscription is down (also
	// at Subscribe, before it is first established), and with false when
	// it is (re-)established (also at Subscribe if it is up). See the
	// package documentation.
	Degraded func(down bool)
}

// A Bus carries invalidation events between the instances of a service.
type Bus interface {
	// Publish queues events for every other instance and returns at once;
	// call it after the change they describe has committed.
	Publish(events ...Event)
	// Subscribe registers h for the events other instances publish and
	// for the state of the subscription (h.Degraded is called before
	// Subscribe returns).
	Subscribe(h Handler)
	// Stats returns the bus's counters.
	Stats() Stats
	// Close sends what is queued (until ctx is done) and stops.
	Close(ctx context.Context) error
}

// Stats is a snapshot of a bus's counters. Counters are since the bus was
// created; Subscribed, Degraded and Pending are current.
type Stats struct {
	Published  uint64 // events handed to Publish
	Coalesced  uint64 // events merged with an identical one already waiting
	Overflows  uint64 // times the waiting events were collapsed into one Everything
	Sent       uint64 // messages sent (each carries one or more events)
	SendErrors uint64 // failed sends (retried with backoff)
	Received   uint64 // messages received from other instances
	Events     uint64 // events received from other instances and handed to the subscribers
	Invalid    uint64 // received messages or events that could not be read (ignored)

	Connects    uint64 // subscriptions established (the first one included)
	Disconnects uint64 // subscriptions lost
	Subscribed  int    // 1 while the subscription is up
	Degraded    int    // 1 while subscribers are told it is down
	Pending     int    // events waiting to be sent
}

// Nop is the bus of a single instance: Publish counts and drops, and
// subscribers are never degraded. The zero value is ready to use.
type Nop struct{ published atomic.Uint64 }

// Publish counts the events and drops them.
func (n *Nop) Publish(events ...Event) { n.published.Add(uint64(len(events))) }

// Subscribe does nothing: no event ever arrives, and caches keep their
// TTL.
func (n *Nop) Subscribe(Handler) {}

// Stats returns the count of published events.
func (n *Nop) Stats() Stats { return Stats{Published: n.published.Load(), Subscribed: 1} }

// Close does nothing.
func (n *Nop) Close(context.Context) error { return nil }
