// Package billing is sign-up through Stripe Checkout, Stripe's webhooks,
// per-user subscription state, the customer portal and the entitlement
// check that API middleware asks ([Service.Entitled]).
//
// # Flow
//
// The landing page's form POSTs an email to [Service.CheckoutHandler], which
// creates nothing: it sends the browser to a subscription-mode Checkout
// session. For the signed-in owner of the address, the session names their
// user (client_reference_id and apikit_user_id metadata) and reuses their
// Stripe customer; for anyone else it is a pending sign-up that names only
// the address (apikit_signup_email metadata, and customer_email, which
// Checkout shows read-only) and expires after [CheckoutExpiry]. Stripe
// returns the buyer to [Service.SuccessHandler], which retrieves the
// session, finds or creates the account from apikit's marks, records the
// subscription and — never signing anyone in — either sends the browser
// already signed in as the buyer to the app, or calls
// [Options.SendSignInLink] once per session and says where the link went.
// Stripe reports the purchase and every later change to
// [Service.WebhookHandler]. [Service.PortalHandler] opens Stripe's Billing
// Portal for the signed-in user, and [Service.ChangePlanHandler] moves them
// to another plan (see Plans). [Service.Register] mounts all of them on a
// ServeMux; each handler also works alone on any router.
//
// A [Client] wraps stripe-go's client.API with its own key and base URL
// (stripe-mock in tests); the package never touches the global stripe.Key.
//
// # Webhooks
//
// The endpoint must be pinned to API version 2023-10-16, the version
// stripe-go v76 decodes: events of other versions are refused with 400
// unless [Options.IgnoreAPIVersionMismatch] is set. Signatures are checked
// on the raw body (at most [MaxWebhookBytes]) with a 5-minute tolerance
// ([WebhookTolerance]) either way: stripe-go refuses only old timestamps,
// and this package also refuses timestamps too far in the future.
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
// that is recorded but changes nothing. Events of the same second (Stripe
// sends customer.subscription.created, incomplete, and .updated, active,
// within one) are a tie: with a Stripe client the subscription is read
// again from the API and that state is written ([WriteCurrent]); in dev
// mode, or when the API fails, the state later in a subscription's life
// wins ([StatusPrecedence]), so a paid subscription is never left
// incomplete. customer.subscription.created, .updated and .deleted carry
// the whole subscription object, so the newest one alone determines the
// state, whatever order they came in. customer.subscription.deleted is
// terminal: the subscription never changes again, whatever arrives later.
//
// We compare created times rather than re-fetching the subscription from
// Stripe on each event: it needs no API call on the webhook path but for
// ties (so
// handlers answer quickly and work while Stripe's API is slow), it works in
// dev mode and against the stateless stripe-mock, and since every
// subscription event carries the full object, "newest event wins" converges
// to the same state as in-order delivery.
//
// checkout.session.completed links the session's customer to its user and
// writes a provisional state (active if paid) only if no subscription event
// has written one yet; any subscription event replaces it. The user comes
// only from what apikit put on the session: the apikit_user_id metadata
// (with a matching client_reference_id), or the apikit_signup_email
// metadata of a pending sign-up, whose user is then found or created —
// unverified, with no session and no key. A session without them (another
// product of the same Stripe account), and the email the buyer typed into
// Checkout, link nothing and create nobody. invoice.paid and
// invoice.payment_failed change no stored state — Stripe reports the
// resulting status change in customer.subscription.updated with the whole
// object, and applying the invoice's partial view would make the result
// depend on delivery order — but payment_failed calls
// [Options.OnPaymentFailed].
//
// # Entitlement
//
// A user is entitled while one of their subscriptions to a price this
// service sells ([Options.PriceID], [Options.PriceIDs], the prices of
// [Options.Plans]) is active or trialing, or past_due for less than
// [Options.PastDueGrace] since it became past_due; subscriptions to other
// prices grant nothing.
// [Service.Entitled] caches answers for [Options.CacheTTL].
//
// # Plans
//
// With [Options.Plans] (a plan.Catalog: names, prices, limits, quotas; see
// package plan) billing sells plans. Every price of every plan entitles,
// and [Options.PriceID] defaults to the first paid plan's first price.
// [Service.Plan] returns a user's [CurrentPlan]: the plan of the price of
// their entitling subscription (with its billing-cycle anchor, where
// quotas per billing period refill, and its status), else the catalog's
// free plan, else [ErrNoPlan] (403). It is cached and invalidated with
// [Service.Entitled]: a change applied by this Service (webhook, checkout,
// dev plan change) is served on the user's next request, a change applied
// by another instance within [Options.CacheTTL].
//
// The sign-up form takes an optional "plan": a paid plan goes to Checkout
// for its first price (the session carries the price, so the provisional
// state of a completed Checkout has the right plan before Stripe's
// subscription event), and the free plan skips Checkout: a sign-in link
// goes to the address and nothing is created until it is used. Signed-in
// users change plans through [Service.ChangePlanHandler]: in dev mode at
// once, with Stripe through Checkout (a first paid subscription) or the
// Billing Portal (upgrades, downgrades and cancellation, which the webhook
// then reports with the new price).
//
// # Accounts
//
// After a verified email change, [Service.UpdateCustomerEmail] sets the
// new address on every Stripe customer linked to the user, so that receipts
// and the portal follow the account; it is webhook-safe, since no event
// (customer.updated included) ever links or creates an account from an
// address. Before an account is deleted, [Service.CancelSubscriptions]
// cancels its subscriptions, at once or at the end of the period, and
// writes the result at once (the webhook confirms it later), so a deleted
// account is not served as paid in the meantime.
//
// # Dev mode
//
// With [Options.DevMode] there is no Stripe: sign-up leads to a local page
// labelled "DEV MODE — no payment taken" ([Service.DevCheckoutHandler])
// whose form drives the same state change as a completed checkout webhook,
// and ends like the success page (a sign-in link, or the app). Every paid
// plan is offered, and the page names the plan; plan changes apply at once. Pending dev
// checkouts live in memory, bounded in number and for an hour. The
// subscriptions it grants are marked by their ids ([DevSubscriptionPrefix],
// [Subscription.Dev]), last [DevSubscriptionPeriod] without renewal, and
// entitle only in dev mode: once billing runs with a Stripe key they grant
// nothing. [New] refuses dev mode with a live key, and on a BaseURL that is
// not loopback unless [Options.DevModeAnyHost] is set.
//
// # Security notes
//
// No browser is signed in by this package: paying, or knowing a Checkout
// session id, proves nothing about an address, so a completed Checkout
// sends a sign-in link to the account's address ([Options.SendSignInLink])
// unless the browser is signed in as that user already. Sign-up creates no
// user and no stored state before Checkout completes (nor does a free
// sign-up, which only sends a link), so a flood of sign-ups leaves the
// users table unchanged. A plan change acts on the signed-in user only:
// nothing in its request names a user. Sign-ups, dev checkouts and plan
// changes are limited per client ([Options.Limiter], [Options.ClientKey]; 429 with
// Retry-After, failing closed). Every browser-facing handler refuses
// cross-origin requests itself ([http.CrossOriginProtection]; 403 through
// [Options.ErrorHandler]), whatever router mounts it; the webhook, which
// Stripe calls server to server, is authenticated by its signature
// instead. An address with an entitling subscription is sent to sign in
// rather than to a second Checkout, which tells whoever typed it that the
// address is subscribed. Applied event ids are kept for
// [Options.EventRetention]; call [Service.Prune] periodically.
//
// # Observability
//
// [Service.Stats] counts checkouts, portal sessions and webhook events by
// result; [ClientOptions].Trace is called around each call to Stripe, so
// that a tracer such as OpenTelemetry's can time them without this package
// depending on one.
//
// # Audit trail
//
// [Options.Audit] is told of every change to a user's subscriptions and
// plan that the Service applies ([AuditEvent]), of completed Checkouts,
// and of plan changes asked for through [Service.ChangePlanHandler], with
// who made them ([ActorStripe] for webhooks, [ActorUser] for the
// signed-in user's plan changes) and the request's context, so that an
// audit log (package audit) records where they came from. The kinds and
// actors have the values of package audit's; this package does not import
// it. Events hold Stripe ids, statuses and plan names, never a secret. A
// failing hook is logged and counted ([Stats].AuditErrors) and changes
// nothing: an applied webhook is still answered 200.
package billing
