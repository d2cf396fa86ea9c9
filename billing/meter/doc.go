// Package meter bills usage through Stripe Billing Meters, each unit
// exactly once, through a durable outbox.
//
// The usage is package usage's hourly cost per user (usage_hourly). For
// the users on a metered plan ([Options].Customers: their Stripe customer
// and the meter's event name), a [Reporter] turns each closed hour into a
// meter event in the outbox ([Store], table meter_events), and sends the
// events in the background with retries, exponential backoff and bounded
// concurrency, through a [Backend]: package billing/meter/stripemeter,
// which calls POST /v1/billing/meter_events with stripe-go.
//
// # Exactly once
//
//   - An event's [Identifier] is derived from (customer, meter event
//     name, hour, seq) and is the outbox's primary key: whatever the
//     number of instances enqueueing, a slice's usage is enqueued once.
//     Usage counted after its hour was reported (a late flush) is
//     enqueued as the slice's next event (seq 2, 3…), for the difference
//     only; never more than was counted.
//   - Stripe deduplicates events by identifier (for at least 24 hours),
//     and the sender uses it as the idempotency key too: an event sent
//     twice — a crash between the send and the mark, or a lease that ran
//     out — is billed once, as long as the resend happens within that
//     window (the lease is a minute by default).
//   - An event Stripe rejects (a 4xx other than 401, 403, 409 and 429) is
//     kept as [Rejected] with Stripe's error, listed by
//     [Store].MeterEvents, and sent again only after
//     [Store].RequeueMeterEvent.
//
// What is not billed: usage not yet written by a usage.Meter when its
// process crashed (at most one flush interval), and usage written more
// than Lookback (48 hours) after its hour. The event's timestamp is the
// hour's last second, so an hour that straddles the start or end of a
// billing period counts in the period containing its end.
//
// The package links no Stripe client, so that package store can keep the
// outbox for programs that do not bill; package billing/meter/metertest
// is the outbox's conformance suite.
//
// # Stripe set-up
//
// Create a meter (Billing → Meters) with an event name, such as
// "api_requests", aggregation "sum", and the default payload keys
// (stripe_customer_id, value); a price on it (usage-based, per unit, or
// per package of units); and subscribe the metered plan's customers to
// that price. The meter's event name is what Options.Customers returns
// for each customer.
package meter
