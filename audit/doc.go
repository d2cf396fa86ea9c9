// Package audit keeps an append-only log of security events — keys issued,
// rolled, revoked, expired or reported leaked; sign-ins, sign-outs and
// sign-in links; subscription, plan and email changes; account deletion —
// each with who acted ([Actor]), when, from which address and user agent,
// and which key it concerned.
//
// # Never a secret
//
// An [Event] has no field for a token, a password, a session id or a hash,
// and the free-form [Event.Detail] is a small map of short strings meant for
// facts such as a key's name or the URL where a leaked key was found. To
// make a mistake harder still, [Options.IsSecret] is applied to every word
// of every detail value and of the user agent, and each word it recognises
// (an API key, say: pass a function that calls apikey.Parse) is replaced
// by "[redacted]" before the event is stored.
//
// # Synchronous appends
//
// [Log.Append] writes the event to the store before it returns; there is
// no queue in memory. A security event that was acknowledged is durable,
// a crash loses none, and the caller learns of a failure (and can decide:
// apikit's components log it and keep the change, since undoing a
// revocation because its audit entry failed would be worse). The cost is
// one insert on requests that change security state, which are rare next
// to the API traffic, and never on the verification path.
//
// # Who and where
//
// The components that report events (package apikey's Manager, the
// application's sign-in handlers, its billing webhook) do not know the
// request; the request's [Source] — actor, client address, user agent —
// travels in its context. [Middleware] puts the address and user agent
// there for every request (with a client-address function that knows the
// trusted proxies), [WithActor] adds the signed-in user or the operator,
// and [Log.Append] fills an event's empty fields from it.
//
// # Reading and retention
//
// [Log.List] pages through one user's events, newest first (a dashboard's
// "Security activity"), [Log.Export] writes them all as JSON lines (an
// operator's export), and [Log.Prune] deletes events older than
// [Options.Retention]. Stores implement [Store]; package audittest has the
// conformance suite and a store in memory.
package audit
