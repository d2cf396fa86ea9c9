package billing

import "github.com/apikit/apikit/billing/subscription"

// The state billing keeps and its storage contract live in package
// billing/subscription, which imports no Stripe code, so that a store can
// implement them without linking stripe-go. These aliases are the names to
// use: billing.Store is subscription.Store, and so on.
type (
	// Store is the storage a [Service] needs; see [subscription.Store] for
	// the contract. Package store implements it for SQLite and PostgreSQL,
	// and package store/storetest is its conformance suite.
	Store = subscription.Store
	// Subscription is a user's Stripe subscription as the newest applied
	// webhook event described it; see [subscription.Subscription].
	Subscription = subscription.Subscription
	// Event is the record of one applied webhook event.
	Event = subscription.Event
	// Change is what one webhook event changes; see [subscription.Store].
	Change = subscription.Change
	// Applied reports what [Store.ApplyEvent] did.
	Applied = subscription.Applied
	// WriteMode says how [Store.ApplyEvent] writes a subscription row.
	WriteMode = subscription.WriteMode
)

// The write modes of [Store.ApplyEvent]; see [subscription.WriteIfNewer]
// and its siblings.
const (
	WriteIfNewer  = subscription.WriteIfNewer
	WriteIfAbsent = subscription.WriteIfAbsent
	WriteTerminal = subscription.WriteTerminal
	WriteCurrent  = subscription.WriteCurrent
)

// StatusPrecedence ranks Stripe subscription statuses by how late they come
// in a subscription's life; see [subscription.StatusPrecedence].
func StatusPrecedence(status string) int { return subscription.StatusPrecedence(status) }
