// Package billing is sign-up through Stripe Checkout, Stripe's webhooks,
// per-user subscription state, the customer portal and the entitlement
// check that API middleware asks ([Service.Entitled]).
//
// # Flow
//
// The landing page's form POSTs an email to [Service.CheckoutHandler], which
// finds or creates the user and sends the browser to a subscription-mode
// Checkout session (client_reference_id is the user id; the subscription's
// metadata carries it too). Stripe returns the buyer to
// [Service.SuccessHandler], which retrieves the session, records its state,
// consumes its id and signs the user in through [Options.SignIn]. Stripe
// reports the purchase and every later change to [Service.WebhookHandler].
// [Service.PortalHandler] opens Stripe's Billing Portal for the signed-in
// user. [Service.Register] mounts all of them on a ServeMux.
//
// A [Client] wraps stripe-go's client.API with its own key and base URL
// (stripe-mock in tests); the package never touches the global stripe.Key.
//
// # Webhooks
//
// The endpoint must be pinned to API version 2023-10-16, the version
// stripe-go v76 decodes: events of other versions are refused with 400
// unless [Options.IgnoreAPIVersionMismatch] is set. Signatures are checked
// on the raw body (at most [MaxWebhookBytes]) with a 5-minute tolerance.
//
// Each event is applied exactly once: its id is recorded in the same
// transaction that applies it ([Store.ApplyEvent]). A redelivery, even a
// concurrent one, finds the id and changes nothing (200). If the store
// fails, the handler answers 500 and nothing is recorded, so Stripe's retry
// applies the event. Unhandled event types are answered 200 and not
// recorded.
//
// # Ordering
//
// Stripe does not deliver events in order, so each subscription keeps the
// created time of the event its state came from, and an event older than
// that is recorded but changes nothing (events of the same second apply in
// arrival order). customer.subscription.created, .updated and .deleted carry
// the whole subscription object, so the newest one alone determines the
// state, whatever order they came in. customer.subscription.deleted is
// terminal: the subscription never changes again, whatever arrives later.
//
// We compare created times rather than re-fetching the subscription from
// Stripe on each event: it needs no API call on the webhook path (so
// handlers answer quickly and work while Stripe's API is slow), it works in
// dev mode and against the stateless stripe-mock, and since every
// subscription event carries the full object, "newest event wins" converges
// to the same state as in-order delivery.
//
// checkout.session.completed links the session's customer to its user (by
// client_reference_id, else by the customer's email) and writes a
// provisional state (active if paid) only if no subscription event has
// written one yet; any subscription event replaces it. invoice.paid and
// invoice.payment_failed change no stored state — Stripe reports the
// resulting status change in customer.subscription.updated with the whole
// object, and applying the invoice's partial view would make the result
// depend on delivery order — but payment_failed calls
// [Options.OnPaymentFailed].
//
// # Entitlement
//
// A user is entitled while one of their subscriptions is active or
// trialing, or past_due for less than [Options.PastDueGrace] since it
// became past_due. [Service.Entitled] caches answers for [Options.CacheTTL].
//
// # Dev mode
//
// With [Options.DevMode] there is no Stripe: sign-up leads to a local page
// labelled "DEV MODE — no payment taken" ([Service.DevCheckoutHandler])
// whose form drives the same state change as a completed checkout webhook.
// [New] refuses dev mode with a live key, and on a BaseURL that is not
// loopback unless [Options.DevModeAnyHost] is set.
//
// # Security notes
//
// The success page (and dev checkout) signs in only a user created by that
// sign-up, or the user already signed in; anyone else who pays for an
// existing address is sent to sign in by email, so paying is never a way
// into someone else's account. An address with an entitling subscription is
// sent to sign in rather than to a second Checkout, which tells whoever
// typed it that the address is subscribed. Checkout session ids sign in
// once and only within [SuccessMaxAge]. Applied event ids are kept for
// [Options.EventRetention]; call [Service.Prune] periodically.
package billing
